//! `kind = "inverse_time"`.

use super::keys::Keys;
use super::{Curve, RunLength};
use anyhow::Result;

/// Inverse-time decay, Keras `InverseTimeDecay` and Caffe's `lr_policy: "inv"` (the policy of
/// Caffe's LeNet and CIFAR-10 solvers, a baseline in Smith's CLR paper):
///
/// `lr(k) = lr / (1 + decay_rate · p(k))^power`, `p(k) = k / D` (or `⌊k / D⌋` with
/// `staircase = true`), `D` the decay interval in steps.
///
/// Keras `InverseTimeDecay(lr, decay_steps, decay_rate, staircase)` is `power = 1` with
/// `decay_steps` = its `decay_steps`; Caffe's `inv` (`base_lr · (1 + gamma · iter)^−power`) is
/// `decay_steps = 1`, `decay_rate` = its `gamma`, `power` = its `power`.
///
/// Keys: `lr` (> 0), `decay_rate` (>= 0), `power` (> 0, default 1), `decay_steps` (an
/// integer, at least 1) or `decay_epochs` (> 0, fractional allowed; default one epoch),
/// `staircase` (bool, default false, as in both libraries).
#[derive(Clone, Debug)]
pub struct InverseTime {
    lr: f64,
    rate: f64,
    power: f64,
    /// `D`, in (possibly fractional) steps.
    interval: f64,
    staircase: bool,
}

impl InverseTime {
    /// The keys of this family (besides `kind` and the warmup keys).
    pub(crate) const KEYS: &'static [&'static str] = &[
        "lr",
        "decay_rate",
        "power",
        "decay_steps",
        "decay_epochs",
        "staircase",
    ];

    pub(crate) fn from_keys(keys: &mut Keys, len: RunLength) -> Result<Self> {
        let lr = keys.lr("lr")?;
        let rate = keys.req_f64("decay_rate")?;
        keys.ensure(rate >= 0.0, "decay_rate", "must be >= 0")?;
        let power = keys.positive("power", 1.0)?;
        keys.at_most_one(&["decay_steps", "decay_epochs"])?;
        let steps = keys.u64("decay_steps")?;
        let epochs = keys.f64("decay_epochs")?;
        let interval = match (steps, epochs) {
            (Some(s), _) => {
                keys.ensure(s >= 1, "decay_steps", "must be >= 1")?;
                s as f64
            }
            (None, Some(e)) => {
                keys.ensure(e > 0.0, "decay_epochs", "must be > 0")?;
                len.steps(e)
            }
            (None, None) => len.steps_per_epoch as f64,
        };
        let staircase = keys.bool("staircase")?.unwrap_or(false);
        Ok(InverseTime {
            lr,
            rate,
            power,
            interval,
            staircase,
        })
    }
}

impl Curve for InverseTime {
    fn lr(&self, k: u64) -> f64 {
        let mut p = k as f64 / self.interval;
        if self.staircase {
            p = p.floor();
        }
        self.lr / (1.0 + self.rate * p).powf(self.power)
    }
}
