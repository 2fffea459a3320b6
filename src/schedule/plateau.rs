//! `kind = "plateau"`.

use super::keys::Keys;
use super::{Curve, RunLength, Schedule};
use anyhow::Result;

/// The metrics of one evaluation, as `epochs.csv` logs them (`None`: not measured then).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EvalMetrics {
    /// Mean test (or validation) loss.
    pub test_loss: Option<f64>,
    /// Test (or validation) accuracy, a fraction.
    pub test_acc: Option<f64>,
    /// Mean training loss of the epoch.
    pub train_loss: Option<f64>,
    /// Training accuracy of the epoch.
    pub train_acc: Option<f64>,
}

/// PyTorch's `ReduceLROnPlateau` as a pure function of the step and the evaluations logged
/// before it: the learning rate of step `k` is the base schedule's times the reductions that
/// the evaluations recorded at steps `<= k` (an epoch's evaluation is recorded at the step that
/// ends the epoch, so it acts from the next epoch on, as `scheduler.step(val_loss)` after each
/// epoch does) have triggered. Nothing but the metrics is remembered: a resumed run replays
/// its `epochs.csv`.
///
/// The replay is PyTorch 2.13's `step(metric)`: a value better than the best so far (`mode =
/// "min"`: below `best · (1 − threshold)` with `threshold_mode = "rel"`, below `best −
/// threshold` with `"abs"`; `"max"` mirrored) resets the count of bad evaluations, another adds
/// one; during a cooldown the count stays 0; once it exceeds `patience` the LR becomes
/// `max(lr · factor, min_lr)`, unless that changes it by `eps` or less, and a cooldown of
/// `cooldown` evaluations starts. With a varying base schedule the reductions multiply it (and
/// `min_lr` bounds the product), judged at the evaluation's step.
///
/// Keys: `lr` (a constant base) or `base` (any schedule table); `metric` (`test_loss`,
/// default, `test_acc`, `train_loss`, `train_acc`; the test values are the validation split's
/// when the run has one); `mode` (`min` or `max`, default: `max` for accuracies, `min` for
/// losses), `factor` (in (0, 1), default 0.1), `patience` (default 10), `threshold` (default
/// 1e-4), `threshold_mode` (`rel`, default, or `abs`), `cooldown` (default 0), `min_lr`
/// (default 0), `eps` (default 1e-8): PyTorch's names and defaults.
#[derive(Clone, Debug)]
pub struct Plateau {
    base: Box<Schedule>,
    metric: &'static str,
    max: bool,
    factor: f64,
    patience: u64,
    threshold: f64,
    relative: bool,
    cooldown: u64,
    min_lr: f64,
    eps: f64,
    /// `(step, value)` of every evaluation recorded so far, in step order.
    history: Vec<(u64, f64)>,
}

impl Plateau {
    /// The keys of this family (besides `kind` and the warmup keys).
    pub(crate) const KEYS: &'static [&'static str] = &[
        "lr",
        "base",
        "metric",
        "mode",
        "factor",
        "patience",
        "threshold",
        "threshold_mode",
        "cooldown",
        "min_lr",
        "eps",
    ];

    pub(crate) fn from_keys(keys: &mut Keys, len: RunLength) -> Result<Self> {
        let base = match (keys.has("lr"), keys.table("base")?) {
            (true, Some(_)) => {
                return Err(keys.bad("base", "give lr (a constant base) or base, not both"))
            }
            (false, Some(t)) => Schedule::build(t, &format!("{}.base", keys.path()), len)?,
            (_, None) => {
                let lr = keys.lr("lr")?;
                let mut t = toml::Table::new();
                t.insert("kind".into(), "constant".into());
                t.insert("lr".into(), lr.into());
                Schedule::build(&t, &format!("{}.base", keys.path()), len)?
            }
        };
        let metric = keys
            .choice(
                "metric",
                &["test_loss", "test_acc", "train_loss", "train_acc"],
            )?
            .unwrap_or("test_loss");
        let max = match keys.choice("mode", &["min", "max"])? {
            Some(m) => m == "max",
            None => metric.ends_with("_acc"),
        };
        let factor = keys.f64("factor")?.unwrap_or(0.1);
        keys.ensure(factor > 0.0 && factor < 1.0, "factor", "must be in (0, 1)")?;
        let patience = keys.u64("patience")?.unwrap_or(10);
        let threshold = keys.f64("threshold")?.unwrap_or(1e-4);
        keys.ensure(threshold >= 0.0, "threshold", "must be >= 0")?;
        let relative = keys.choice("threshold_mode", &["rel", "abs"])? != Some("abs");
        let cooldown = keys.u64("cooldown")?.unwrap_or(0);
        let min_lr = keys.f64("min_lr")?.unwrap_or(0.0);
        keys.ensure(min_lr >= 0.0, "min_lr", "must be >= 0")?;
        let eps = keys.f64("eps")?.unwrap_or(1e-8);
        keys.ensure(eps >= 0.0, "eps", "must be >= 0")?;
        Ok(Plateau {
            base: Box::new(base),
            metric,
            max,
            factor,
            patience,
            threshold,
            relative,
            cooldown,
            min_lr,
            eps,
            history: Vec::new(),
        })
    }

    /// Record the evaluation made after step `step` − 1 (it acts from step `step` on). Values
    /// of other metrics, and evaluations without this metric, are ignored.
    pub(crate) fn record(&mut self, step: u64, m: &EvalMetrics) {
        let v = match self.metric {
            "test_loss" => m.test_loss,
            "test_acc" => m.test_acc,
            "train_loss" => m.train_loss,
            _ => m.train_acc,
        };
        if let Some(v) = v {
            let at = self.history.partition_point(|&(s, _)| s <= step);
            self.history.insert(at, (step, v));
        }
    }

    /// PyTorch's `_is_better`.
    fn better(&self, a: f64, best: f64) -> bool {
        match (self.max, self.relative) {
            (false, true) => a < best * (1.0 - self.threshold),
            (false, false) => a < best - self.threshold,
            (true, true) => a > best * (self.threshold + 1.0),
            (true, false) => a > best + self.threshold,
        }
    }

    /// The multiplier of the base schedule at step `k`: the replay of the evaluations
    /// recorded at steps `<= k`.
    fn multiplier(&self, k: u64) -> f64 {
        let mut best = if self.max {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        };
        let (mut bad, mut cooldown, mut m) = (0u64, 0u64, 1.0f64);
        for &(step, v) in self.history.iter().take_while(|(s, _)| *s <= k) {
            if self.better(v, best) {
                best = v;
                bad = 0;
            } else {
                bad += 1;
            }
            if cooldown > 0 {
                cooldown -= 1;
                bad = 0;
            }
            if bad > self.patience {
                let base = self.base.lr(step);
                let old = (base * m).max(self.min_lr);
                let new = (base * m * self.factor).max(self.min_lr);
                if old - new > self.eps {
                    m *= self.factor;
                }
                cooldown = self.cooldown;
                bad = 0;
            }
        }
        m
    }
}

impl Curve for Plateau {
    fn lr(&self, k: u64) -> f64 {
        let m = self.multiplier(k);
        if m == 1.0 {
            return self.base.lr(k);
        }
        (self.base.lr(k) * m).max(self.min_lr)
    }

    fn momentum(&self, k: u64) -> Option<f64> {
        self.base.momentum(k)
    }

    fn cycle_ends(&self) -> Vec<u64> {
        self.base.cycle_ends()
    }
}
