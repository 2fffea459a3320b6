//! `kind = "polynomial"`.

use super::keys::Keys;
use super::{Curve, RunLength};
use anyhow::Result;

/// Polynomial decay over the run (`N` steps), PyTorch `PolynomialLR` with `total_iters = N`
/// (when `end_lr = 0`) and Keras `PolynomialDecay` without `cycle`:
///
/// `lr(k) = (lr − end_lr) · (1 − min(k, N) / N)^power + end_lr`.
///
/// As in both libraries `end_lr` is reached at step `N`, one past the run. Keys: `lr` (> 0),
/// `end_lr` (0 <= end_lr <= lr, default 0), `power` (> 0, default 1: linear decay).
#[derive(Clone, Debug)]
pub struct Polynomial {
    lr: f64,
    end_lr: f64,
    power: f64,
    total: u64,
}

impl Polynomial {
    /// The keys of this family (besides `kind` and the warmup keys).
    pub(crate) const KEYS: &'static [&'static str] = &["lr", "end_lr", "power"];

    pub(crate) fn from_keys(keys: &mut Keys, len: RunLength) -> Result<Self> {
        let lr = keys.lr("lr")?;
        let end_lr = keys.lr_floor("end_lr", 0.0, "lr", lr)?;
        let power = keys.positive("power", 1.0)?;
        Ok(Polynomial {
            lr,
            end_lr,
            power,
            total: len.total_steps,
        })
    }
}

impl Curve for Polynomial {
    fn lr(&self, k: u64) -> f64 {
        let frac = 1.0 - k.min(self.total) as f64 / self.total as f64;
        (self.lr - self.end_lr) * frac.powf(self.power) + self.end_lr
    }
}
