//! `lrlab hf-lr`: a short training of a run config only to produce the curve of the
//! super-convergence paper's Hessian-free estimates of the optimal learning rate
//! ([`crate::train::hf_lr`]), as the authors did on iterations 1–297 of their ResNet-56 run.
//!
//! The schedule keeps the config's whole length (a ramp over 5 000 iterations stays that
//! ramp), and the training stops after `--steps`. Nothing is checkpointed: the files are
//! written at the end, atomically, or not at all (Ctrl-C exits 3 and writes nothing).

use crate::config::RunConfig;
use crate::run::STEPS_HEADER;
use crate::train::hf_lr::{Estimate, Tracker};
use crate::train::setup::Setup;
use crate::train::step::Stepper;
use crate::util::{fmt_f64, write_atomic};
use anyhow::{Context, Result};
use std::path::Path;

/// What `lrlab hf-lr` measured.
pub struct HfLrResult {
    /// One estimate per window, in step order.
    pub estimates: Vec<Estimate>,
    /// The layers of the per-layer values.
    pub layers: Vec<String>,
    /// Per step: `(step, lr, momentum, loss)`.
    pub steps: Vec<(u64, f64, f64, f64)>,
    /// Optimizer steps per epoch of the config (the epoch columns).
    pub steps_per_epoch: u64,
    /// Steps of the config's whole run (the schedule's length).
    pub run_steps: u64,
    /// Why the training stopped before `steps`, if it did (a non-finite loss).
    pub stopped: Option<String>,
}

/// Train `cfg` for `steps` steps of its schedule, measuring the estimates every `every` steps
/// (windows of iterates `train.hf_lr_stride` apart, over `train.hf_lr_blobs`). Errors name the
/// flags (`--steps`, `--every`).
pub fn run(cfg: &RunConfig, steps: u64, every: u64, progress: bool) -> Result<HfLrResult> {
    if every == 0 {
        crate::bail_input!("--every 0: must be >= 1 (a window every this many steps)");
    }
    let stride = cfg.train.hf_lr_stride;
    if steps < every + 2 * stride {
        crate::bail_input!(
            "--steps {steps}: must be >= {} (the first window opens at step {every} and spans \
             {} steps, iterates {stride} apart)",
            every + 2 * stride,
            2 * stride
        );
    }
    crate::train::stop::flag()?;
    let setup = Setup::new(cfg)?;
    if steps > setup.total_steps {
        crate::bail_input!(
            "--steps {steps}: the config's run has only {} steps (train.epochs or train.steps)",
            setup.total_steps
        );
    }
    let mut stepper = Stepper::new(cfg, &setup, None)?;
    let mut cfg_every = cfg.clone();
    cfg_every.train.hf_lr_every = every;
    let mut tracker = Tracker::for_config(&stepper.vs, &cfg_every).expect("every >= 1");
    let params = tracker.params();
    let bar = crate::train::setup::progress_bar(progress, steps, 0);
    let mut out = HfLrResult {
        estimates: Vec::new(),
        layers: tracker.layers().to_vec(),
        steps: Vec::new(),
        steps_per_epoch: setup.steps_per_epoch,
        run_steps: setup.total_steps,
        stopped: None,
    };
    let mut step = 0u64;
    for batch in setup.data.train.endless().take(steps as usize) {
        crate::train::stop::check(bar.as_ref())?;
        let batch = batch?;
        let lr = setup.schedule.lr(step);
        let momentum = setup.schedule.momentum_or(step, cfg.optim.momentum);
        if tracker.opens_window(step) {
            let (total, layers) = stepper.curvature(&params, &batch, step)?;
            tracker.set_curvature(step, total, &layers);
        }
        let (loss, _) = stepper.step(&batch, step, lr, momentum)?;
        let l = f64::try_from(&loss).context("reading the loss")?;
        out.steps.push((step, lr, momentum, l));
        out.estimates
            .extend(tracker.after_step(step, |s| setup.schedule.lr(s)));
        step += 1;
        if let Some(b) = &bar {
            b.set_position(step);
            let last = out.estimates.last().map_or(f64::NAN, |e| e.hf_lr_ema);
            b.set_message(format!("lr {lr:.3} loss {l:.4} estimate (avg) {last:.3}"));
        }
        if !l.is_finite() {
            out.stopped = Some(format!(
                "the loss became non-finite at step {} (lr {lr})",
                step - 1
            ));
            break;
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(out)
}

/// Write `hf_lr.csv`, `hf_lr_layers.csv`, `steps.csv`, `config.toml` and `meta.json` into
/// `out` (each atomically).
pub fn write(out: &Path, cfg: &RunConfig, every: u64, r: &HfLrResult) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let caffe = cfg.train.hf_lr_blobs == crate::config::HfBlobs::Caffe;
    let mut hf = format!("{}\n", crate::train::hf_lr::header(caffe));
    let mut layers = format!("{}\n", crate::train::hf_lr::layers_header(caffe));
    for e in &r.estimates {
        hf.push_str(&e.fields(r.steps_per_epoch).join(","));
        hf.push('\n');
        for row in e.layer_fields(&r.layers) {
            layers.push_str(&row.join(","));
            layers.push('\n');
        }
    }
    // steps.csv as a training writes it; no clock column is worth keeping here.
    let mut steps = format!("{STEPS_HEADER}\n");
    for (s, lr, m, loss) in &r.steps {
        steps.push_str(&format!(
            "{s},{},{},{},{},\n",
            fmt_f64(*s as f64 / r.steps_per_epoch as f64),
            fmt_f64(*lr),
            fmt_f64(*m),
            fmt_f64(*loss)
        ));
    }
    let mut config = cfg.clone();
    config.train.hf_lr_every = every;
    let meta = crate::run::Meta {
        libtorch_version: Some(crate::train::device::libtorch_version()),
        hf_lr: Some(crate::run::HfLrMeta {
            steps_run: r.steps.len() as u64,
            run_steps: r.run_steps,
            every,
            stride: cfg.train.hf_lr_stride,
            windows: r.estimates.len() as u64,
            stopped: r.stopped.clone(),
        }),
        ..crate::run::Meta::marker()
    };
    write_atomic(&out.join(crate::run::CONFIG), config.to_toml()?.as_bytes())?;
    write_atomic(&out.join(crate::run::STEPS), steps.as_bytes())?;
    write_atomic(&out.join(crate::run::HF_LR_LAYERS), layers.as_bytes())?;
    meta.write(out)?;
    // Last: hf_lr.csv is what marks the folder as an hf-lr folder for `lrlab plot`.
    write_atomic(&out.join(crate::run::HF_LR), hf.as_bytes())
}
