//! Linear warmup, accepted by every family (keys in the same table).

use super::keys::Keys;
use super::{Curve, RunLength};
use anyhow::Result;

/// How the warmup combines with the schedule it precedes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WarmupMode {
    /// The schedule is shifted: it runs over the `N − W` steps after the warmup, from its own
    /// step 0 (timm `warmup_prefix = True`; a PyTorch `SequentialLR` of a warmup and the schedule).
    Prefix,
    /// The warmup replaces the schedule's first `W` values; the schedule keeps its timing.
    Overlay,
    /// timm's non-prefix warmup: as `Overlay`, but the ramp climbs to the schedule's step-0
    /// value (the base LR) and the schedule takes over at its step `W`, below it: a jump.
    Jump,
}

/// A linear warmup over the first `W` steps, in front of any schedule.
///
/// Keys: `warmup_steps` (integer) or `warmup_epochs` (fractional allowed; `W` = the first step
/// whose epoch is `>= warmup_epochs`), `warmup_start_lr` (>= 0), `warmup_mode` = `prefix`
/// (default) | `overlay` | `jump`. A zero length means no warmup. `W` must be shorter than the run
/// (at most the run for `overlay`).
///
/// For `k < W` the LR ramps linearly towards `target`, which is the schedule's value where the
/// warmup hands over: its step 0 (`prefix`) or its step `W` (`overlay`, so the LR is continuous).
/// `jump` is timm's non-prefix warmup (timm#1242): the ramp climbs to the schedule's step 0
/// (the base LR) and the schedule then resumes at its step `W`, below it. From step `W` on the
/// schedule takes over: `f(k − W)` (`prefix`) or `f(k)` (`overlay`, `jump`). `overlay` is the
/// default of the two because a jump down at the end of the warmup is an artefact, not a
/// choice; `jump` is there to reproduce timm's curves.
///
/// The ramp (the "wasted step 0" choice):
/// - `warmup_start_lr = s` given: `lr(k) = s + k · (target − s) / W`, timm's formula (and
///   PyTorch `LinearLR` with `start_factor = s / target`): step 0 runs at exactly `s`. With an
///   explicit `s = 0` this reproduces timm and HF transformers, whose step 0 makes no update.
/// - `warmup_start_lr` omitted: the ramp starts from 0 one step *before* step 0,
///   `lr(k) = target · (k + 1) / (W + 1)`, so no step runs at LR 0 and the last warmup step stays
///   below the target (torchtitan's fix of the HF warmup).
///
/// Momentum is not warmed up: during a `prefix` warmup it is the schedule's step-0 momentum (or
/// `None`), during an `overlay` warmup the schedule's own. Cycle ends move with the schedule.
#[derive(Clone, Debug)]
pub struct Warmup {
    steps: u64,
    start: Option<f64>,
    mode: WarmupMode,
}

impl Warmup {
    /// The warmup keys, which every family takes.
    pub(crate) const KEYS: &'static [&'static str] = &[
        "warmup_steps",
        "warmup_epochs",
        "warmup_start_lr",
        "warmup_mode",
    ];

    pub(crate) fn from_keys(keys: &mut Keys, len: RunLength) -> Result<Option<Warmup>> {
        keys.at_most_one(&["warmup_steps", "warmup_epochs"])?;
        let steps = keys.u64("warmup_steps")?;
        let epochs = keys.f64("warmup_epochs")?;
        let (key, w) = match (steps, epochs) {
            (Some(s), _) => ("warmup_steps", s),
            (None, Some(e)) => {
                keys.ensure(e >= 0.0, "warmup_epochs", "must be >= 0")?;
                ("warmup_epochs", len.first_step_at(e))
            }
            (None, None) => {
                let why = "has no effect without warmup_steps or warmup_epochs";
                keys.forbid("warmup_start_lr", why)?;
                keys.forbid_unless("warmup_mode", "prefix".into(), why)?;
                return Ok(None);
            }
        };
        let start = keys.f64("warmup_start_lr")?;
        if let Some(s) = start {
            keys.ensure(s >= 0.0, "warmup_start_lr", "must be >= 0")?;
        }
        let mode = match keys
            .choice("warmup_mode", &["prefix", "overlay", "jump"])?
            .unwrap_or("prefix")
        {
            "prefix" => WarmupMode::Prefix,
            "jump" => WarmupMode::Jump,
            _ => WarmupMode::Overlay,
        };
        if w == 0 {
            return Ok(None);
        }
        let n = len.total_steps;
        match mode {
            WarmupMode::Prefix => keys.ensure(
                w < n,
                key,
                format_args!(
                    "the warmup ({w} steps) must be shorter than the run ({n} steps): the schedule \
                     runs after it (warmup_mode = \"prefix\")"
                ),
            )?,
            WarmupMode::Overlay | WarmupMode::Jump => keys.ensure(
                w <= n,
                key,
                format_args!("the warmup ({w} steps) must fit in the run ({n} steps)"),
            )?,
        }
        Ok(Some(Warmup {
            steps: w,
            start,
            mode,
        }))
    }

    /// Number of warmup steps `W`.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The run length the wrapped schedule is built for.
    pub(crate) fn inner_length(&self, len: RunLength) -> RunLength {
        match self.mode {
            WarmupMode::Prefix => RunLength {
                steps_per_epoch: len.steps_per_epoch,
                total_steps: len.total_steps - self.steps,
            },
            WarmupMode::Overlay | WarmupMode::Jump => len,
        }
    }

    /// The wrapped schedule's step for run step `k` (0 during a prefix warmup).
    pub(crate) fn inner_step_from(&self, k: u64) -> u64 {
        match self.mode {
            WarmupMode::Prefix => k.saturating_sub(self.steps),
            WarmupMode::Overlay | WarmupMode::Jump => k,
        }
    }

    /// The wrapped schedule's step for run step `k >= W`.
    fn inner_step(&self, k: u64) -> u64 {
        match self.mode {
            WarmupMode::Prefix => k - self.steps,
            WarmupMode::Overlay | WarmupMode::Jump => k,
        }
    }

    pub(crate) fn lr(&self, k: u64, inner: &dyn Curve) -> f64 {
        let w = self.steps;
        if k >= w {
            return inner.lr(self.inner_step(k));
        }
        let target = match self.mode {
            WarmupMode::Jump => inner.lr(0),
            _ => inner.lr(self.inner_step(w)),
        };
        match self.start {
            Some(s) => s + k as f64 * ((target - s) / w as f64),
            None => target * (k + 1) as f64 / (w + 1) as f64,
        }
    }

    pub(crate) fn momentum(&self, k: u64, inner: &dyn Curve) -> Option<f64> {
        match self.mode {
            WarmupMode::Prefix => inner.momentum(k.saturating_sub(self.steps)),
            WarmupMode::Overlay | WarmupMode::Jump => inner.momentum(k),
        }
    }

    pub(crate) fn cycle_ends(&self, inner: &dyn Curve) -> Vec<u64> {
        let shift = match self.mode {
            WarmupMode::Prefix => self.steps,
            WarmupMode::Overlay | WarmupMode::Jump => 0,
        };
        inner.cycle_ends().into_iter().map(|e| e + shift).collect()
    }
}
