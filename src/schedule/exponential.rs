//! `kind = "exponential"`.

use super::keys::Keys;
use super::{Curve, RunLength};
use anyhow::Result;

/// Exponential decay per epoch, PyTorch `ExponentialLR` stepped once per epoch:
///
/// `lr(k) = lr · gamma^⌊k / steps_per_epoch⌋` (`staircase = true`, the default), or
/// `lr(k) = lr · gamma^(k / steps_per_epoch)` (`staircase = false`, Keras `ExponentialDecay`
/// with `decay_steps` = one epoch).
///
/// Keys: `lr` (> 0), `gamma` (> 0, per epoch), `staircase` (bool, default true).
#[derive(Clone, Debug)]
pub struct Exponential {
    lr: f64,
    gamma: f64,
    staircase: bool,
    steps_per_epoch: u64,
}

impl Exponential {
    /// The keys of this family (besides `kind` and the warmup keys).
    pub(crate) const KEYS: &'static [&'static str] = &["lr", "gamma", "staircase"];

    pub(crate) fn from_keys(keys: &mut Keys, len: RunLength) -> Result<Self> {
        let lr = keys.lr("lr")?;
        let gamma = keys.req_f64("gamma")?;
        keys.ensure(gamma > 0.0, "gamma", "must be > 0")?;
        let staircase = keys.bool("staircase")?.unwrap_or(true);
        Ok(Exponential {
            lr,
            gamma,
            staircase,
            steps_per_epoch: len.steps_per_epoch,
        })
    }
}

impl Curve for Exponential {
    fn lr(&self, k: u64) -> f64 {
        let e = if self.staircase {
            (k / self.steps_per_epoch) as f64
        } else {
            k as f64 / self.steps_per_epoch as f64
        };
        self.lr * self.gamma.powf(e)
    }
}
