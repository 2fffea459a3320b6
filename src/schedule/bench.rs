//! `lrlab bench schedule`: what a training loop pays per step for its schedule, per family:
//! the learning rate and the momentum of step `k`, as the loop asks for them. lrlab's
//! optimizer takes both as arguments of its update, so there is nothing else to set.
//! `bench/schedule_pytorch.py` times the matching `torch.optim.lr_scheduler` classes.

use super::{RunLength, Schedule};
use anyhow::Result;
use serde::Serialize;
use std::hint::black_box;
use std::time::Instant;

/// Steps per epoch of the benchmark's run length (CIFAR-10 at batch 128).
pub const STEPS_PER_EPOCH: u64 = 391;
/// Epochs of the benchmark's run length.
pub const EPOCHS: u64 = 200;

/// Every benchmarked family: name and its `[schedule]` table (TOML), in the run length
/// [`EPOCHS`] x [`STEPS_PER_EPOCH`]. The names with a PyTorch counterpart match those of
/// `bench/schedule_pytorch.py`, which builds the same curves.
pub const FAMILIES: &[(&str, &str)] = &[
    ("constant", "kind = \"constant\"\nlr = 0.1"),
    (
        "step",
        "kind = \"step\"\nlr = 0.1\nmilestones = [60, 120, 160]\ngamma = 0.2",
    ),
    (
        "exponential",
        "kind = \"exponential\"\nlr = 0.1\ngamma = 0.97\nstaircase = false",
    ),
    ("linear", "kind = \"linear\"\nstart_lr = 0.01\nend_lr = 0.1"),
    ("cosine", "kind = \"cosine\"\nlr_max = 0.1\nlr_min = 0.0"),
    (
        "sgdr",
        "kind = \"sgdr\"\nlr_max = 0.05\nlr_min = 0.0\nt_0 = 10\nt_mult = 2",
    ),
    (
        "clr",
        "kind = \"clr\"\nmode = \"triangular\"\nbase_lr = 0.001\nmax_lr = 0.006\n\
         step_size = 2000\ncycle_momentum = true",
    ),
    (
        "one_cycle",
        "kind = \"one_cycle\"\nconvention = \"pytorch\"\nmax_lr = 0.4",
    ),
    ("polynomial", "kind = \"polynomial\"\nlr = 0.1\npower = 2.0"),
    (
        "warmup_cosine",
        "kind = \"sequence\"\nmilestones = [5]\n\
         [[schedules]]\nkind = \"linear\"\nstart_lr = 0.01\nend_lr = 0.1\n\
         [[schedules]]\nkind = \"cosine\"\nlr_max = 0.1\nlr_min = 0.0",
    ),
    ("tanh", "kind = \"tanh\"\nlr_max = 0.1"),
    ("flat_cosine", "kind = \"flat_cosine\"\nlr = 0.1"),
    (
        "wsd",
        "kind = \"wsd\"\nlr = 0.1\ndecay_pct = 0.2\nwarmup_steps = 1000",
    ),
    (
        "lr_range",
        "kind = \"lr_range\"\nstart_lr = 1e-7\nend_lr = 10.0",
    ),
];

/// One family's cost.
#[derive(Clone, Debug, Serialize)]
pub struct FamilyTiming {
    /// Benchmark name of the family (see [`FAMILIES`]).
    pub family: String,
    /// Nanoseconds per training step: `lr(k)` and `momentum(k)`.
    pub ns_per_step: f64,
}

/// What `lrlab bench schedule` measured.
#[derive(Clone, Debug, Serialize)]
pub struct ScheduleBenchResult {
    /// Always `lrlab`.
    pub r#impl: &'static str,
    /// Steps timed per family.
    pub steps: u64,
    /// One entry per family, in [`FAMILIES`] order.
    pub families: Vec<FamilyTiming>,
}

/// Build the schedule of one [`FAMILIES`] entry in the benchmark's run length.
pub fn build_family(toml_text: &str) -> Result<Schedule> {
    let table: toml::Table = toml_text.parse()?;
    Schedule::from_table(&table, RunLength::from_epochs(EPOCHS, STEPS_PER_EPOCH)?)
}

/// Time `steps` steps of every family (`only`: those whose name is listed, if not empty);
/// step `i` evaluates `k = i mod total_steps`, so every phase of the curve is visited.
pub fn bench_schedules(steps: u64, only: &[String]) -> Result<ScheduleBenchResult> {
    if steps == 0 {
        crate::bail_input!("--steps 0: must be at least 1");
    }
    for name in only {
        if !FAMILIES.iter().any(|(n, _)| n == name) {
            let names: Vec<&str> = FAMILIES.iter().map(|(n, _)| *n).collect();
            crate::bail_input!(
                "--family {name:?}: not a benchmarked family; one of {}",
                names.join(", ")
            );
        }
    }
    let mut families = Vec::new();
    for (name, text) in FAMILIES {
        if !only.is_empty() && !only.iter().any(|n| n == name) {
            continue;
        }
        let schedule = build_family(text)?;
        families.push(FamilyTiming {
            family: name.to_string(),
            ns_per_step: time_family(&schedule, steps),
        });
    }
    Ok(ScheduleBenchResult {
        r#impl: "lrlab",
        steps,
        families,
    })
}

/// Nanoseconds per step of `lr(k)` + `momentum(k)` (defaulting to 0.9 as the trainer does),
/// best of three passes over `steps` steps.
fn time_family(schedule: &Schedule, steps: u64) -> f64 {
    let total = schedule.run_length().total_steps;
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let mut k = 0u64;
        let mut acc = 0.0;
        let t0 = Instant::now();
        for _ in 0..steps {
            // black_box: the loop must not be folded away or hoisted.
            let s = black_box(schedule);
            let lr = s.lr(black_box(k));
            let momentum = s.momentum_or(k, 0.9);
            acc += black_box(lr) + black_box(momentum);
            k += 1;
            if k == total {
                k = 0;
            }
        }
        let ns = t0.elapsed().as_nanos() as f64 / steps as f64;
        black_box(acc);
        best = best.min(ns);
    }
    best
}

impl ScheduleBenchResult {
    /// A plain-text table, one family per line.
    pub fn table(&self) -> String {
        let mut out = format!("family          ns/step ({} steps)\n", self.steps);
        for f in &self.families {
            out.push_str(&format!("{:<15} {:>8.1}\n", f.family, f.ns_per_step));
        }
        out
    }
}
