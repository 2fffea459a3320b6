//! `lrlab bench train --overhead`: the share of a CPU training step spent in the harness
//! rather than in the math. The step is the training loop's ([`Stepper::step`]), on a fixed
//! synthetic batch, with each part of the loop around it timed by the wall clock (libtorch's
//! CPU ops are synchronous, so a section's clock is its cost):
//!
//! - `schedule`: `lr(k)`, `momentum(k)` of a 1cycle schedule (it cycles momentum too);
//! - `math`: the step: the per-step torch seed, forward, loss, zero_grad, backward, the
//!   optimizer update (which takes the learning rate and momentum as arguments: setting them
//!   costs nothing more);
//! - `bookkeeping`: the epoch's loss and accuracy sums, the pending log row, the clock;
//! - `logging`: the flush the CPU loop does every step: read the loss, divergence check, one
//!   `steps.csv` row (to a file in a temporary folder), the stop-flag check.
//!
//! The real loop is not instrumented; this copy of the loop around its step is, and reports
//! each section's share of the whole step.

use super::device::set_threads;
use crate::run::{CsvLog, StepRow, STEPS_HEADER};
use crate::schedule::{RunLength, Schedule};
use anyhow::Result;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Options of the overhead measurement (CPU only).
#[derive(Clone, Debug)]
pub struct OverheadArgs {
    /// Architecture name (`resnet20`, ...).
    pub model: String,
    /// Batch size.
    pub batch: usize,
    /// Timed steps.
    pub steps: u64,
    /// Untimed warm-up steps.
    pub warmup: u64,
    /// CPU threads (0 = all available cores).
    pub threads: usize,
    /// Input side.
    pub size: i64,
    /// Classes.
    pub classes: i64,
}

/// Microseconds per step of each section, and the harness share.
#[derive(Clone, Debug, Serialize)]
pub struct OverheadResult {
    /// Always `lrlab`.
    pub r#impl: &'static str,
    /// Architecture.
    pub model: String,
    /// Batch size.
    pub batch: usize,
    /// Timed steps.
    pub steps: u64,
    /// CPU threads.
    pub threads: usize,
    /// Schedule evaluation, µs/step.
    pub schedule_us: f64,
    /// The step: seed, forward, backward and optimizer update, µs/step.
    pub math_us: f64,
    /// Metric sums and the pending row, µs/step.
    pub bookkeeping_us: f64,
    /// Loss read-back, divergence check, CSV row, stop flag, µs/step.
    pub logging_us: f64,
    /// Whole step, µs.
    pub step_us: f64,
    /// `(schedule + bookkeeping + logging) / step`, in percent.
    pub overhead_pct: f64,
    /// Training throughput of the timed steps.
    pub images_per_sec: f64,
}

/// Run the measurement on the CPU.
pub fn bench_overhead(a: &OverheadArgs) -> Result<OverheadResult> {
    if a.steps == 0 {
        crate::bail_input!("--steps 0: must be at least 1");
    }
    let threads = set_threads(a.threads);
    let device = Device::Cpu;
    let mut stepper = super::bench::stepper_of(&a.model, a.size, a.classes, device, false, None)?;
    let total = a.warmup + a.steps;
    if total > 200 * 391 {
        crate::bail_input!("--warmup + --steps = {total}: at most 78200 for --overhead");
    }
    // A CIFAR-length 1cycle run (the benchmark's steps are its first ones): the schedule's
    // cost does not depend on where in the run a step is, and a few steps are no valid run.
    let table: toml::Table = "kind = \"one_cycle\"\nmax_lr = 0.4".parse()?;
    let schedule = Schedule::from_table(&table, RunLength::from_epochs(200, 391)?)?;
    let dir = tempfile::tempdir()?;
    let mut log = CsvLog::open(&dir.path().join(crate::run::STEPS), STEPS_HEADER, 0)?;
    let stop = AtomicBool::new(false);
    let b = a.batch as i64;
    let batch = crate::data::Batch {
        images: crate::util::channels_last(&Tensor::randn(
            [b, 3, a.size, a.size],
            (Kind::Float, device),
        )),
        labels: Tensor::randint(a.classes, [b], (Kind::Int64, device)),
        index: 0,
        part: (0, a.batch),
    };
    let y = &batch.labels;
    let mut loss_sum = Tensor::from(0.0).to_kind(Kind::Double);
    let mut correct = Tensor::from(0.0).to_kind(Kind::Double);
    let mut seen = 0u64;
    let mut pending: Vec<(u64, f64, f64, f64, Tensor, f64)> = Vec::new();
    let start = Instant::now();
    // Seconds per section over the timed steps: schedule, math, bookkeeping, logging.
    let mut secs = [0f64; 4];
    let mut whole = 0f64;
    for step in 0..total {
        let t0 = Instant::now();
        let lr = schedule.lr(step);
        let momentum = schedule.momentum_or(step, 0.9);
        let t1 = Instant::now();
        let (loss, logits) = stepper.step(&batch, step, lr, momentum)?;
        let t2 = Instant::now();
        let n = y.size()[0];
        loss_sum += loss.to_kind(Kind::Double) * n as f64;
        correct += logits.argmax(1, false).eq_tensor(y).sum(Kind::Double);
        seen += n as u64;
        pending.push((
            step,
            step as f64,
            lr,
            momentum,
            loss,
            start.elapsed().as_secs_f64(),
        ));
        let t3 = Instant::now();
        let losses: Vec<f64> = Vec::<f64>::try_from(
            Tensor::stack(
                &pending
                    .iter()
                    .map(|r| r.4.to_kind(Kind::Double))
                    .collect::<Vec<_>>(),
                0,
            )
            .to_device(Device::Cpu),
        )?;
        for (r, loss) in pending.iter().zip(losses) {
            let row = StepRow {
                step: r.0,
                epoch: r.1,
                lr: r.2,
                momentum: r.3,
                loss,
                time_s: Some(r.5),
            };
            log.row(&row.fields())?;
            anyhow::ensure!(loss.is_finite(), "the loss diverged at step {}", r.0);
        }
        pending.clear();
        let _ = stop.load(Ordering::SeqCst);
        let t4 = Instant::now();
        if step >= a.warmup {
            for (s, (from, to)) in secs
                .iter_mut()
                .zip([(t0, t1), (t1, t2), (t2, t3), (t3, t4)])
            {
                *s += (to - from).as_secs_f64();
            }
            whole += (t4 - t0).as_secs_f64();
        }
    }
    log.sync()?;
    anyhow::ensure!(seen > 0 && f64::try_from(&correct)? >= 0.0);
    let us = |s: f64| s * 1e6 / a.steps as f64;
    let harness = secs[0] + secs[2] + secs[3];
    Ok(OverheadResult {
        r#impl: "lrlab",
        model: a.model.clone(),
        batch: a.batch,
        steps: a.steps,
        threads,
        schedule_us: us(secs[0]),
        math_us: us(secs[1]),
        bookkeeping_us: us(secs[2]),
        logging_us: us(secs[3]),
        step_us: us(whole),
        overhead_pct: 100.0 * harness / whole,
        images_per_sec: a.batch as f64 * a.steps as f64 / whole,
    })
}

impl OverheadResult {
    /// One line for people.
    pub fn sentence(&self) -> String {
        format!(
            "{} batch {} ({} threads): step {:.0} µs = math {:.0} + schedule {:.1} + \
             bookkeeping {:.1} + logging {:.1}; harness {:.3}% of the step",
            self.model,
            self.batch,
            self.threads,
            self.step_us,
            self.math_us,
            self.schedule_us,
            self.bookkeeping_us,
            self.logging_us,
            self.overhead_pct
        )
    }
}
