//! `kind = "cosine"`.

use super::keys::Keys;
use super::{Curve, RunLength};
use anyhow::Result;
use std::f64::consts::PI;

/// One half-cosine over the whole run, per step (Loshchilov & Hutter's annealing without
/// restarts; PyTorch `CosineAnnealingLR` with `T_max` = the run's steps `N`, stepped per batch):
///
/// `lr(k) = lr_min + (lr_max − lr_min) · (1 + cos(π · min(k, N) / N)) / 2`.
///
/// Step `N − 1` is one step short of `lr_min`; past the run `lr_min` is held (PyTorch's
/// recursion would rise again, with period `2N`). With timm's `k_decay` = `κ` the phase is
/// `π · t^κ / N^κ` (κ > 1 holds the LR high for longer, κ < 1 drops it sooner; Zhang & Li,
/// *k-decay*, 2020), in timm's order of operations.
///
/// Keys: `lr_max` (> 0), `lr_min` (0 <= lr_min <= lr_max, default 0), `k_decay` (> 0,
/// default 1).
#[derive(Clone, Debug)]
pub struct Cosine {
    lr_max: f64,
    lr_min: f64,
    total: u64,
    k_decay: f64,
}

impl Cosine {
    /// The keys of this family (besides `kind` and the warmup keys).
    pub(crate) const KEYS: &'static [&'static str] = &["lr_max", "lr_min", "k_decay"];

    pub(crate) fn from_keys(keys: &mut Keys, len: RunLength) -> Result<Self> {
        let lr_max = keys.lr("lr_max")?;
        let lr_min = keys.lr_floor("lr_min", 0.0, "lr_max", lr_max)?;
        let k_decay = keys.positive("k_decay", 1.0)?;
        Ok(Cosine {
            lr_max,
            lr_min,
            total: len.total_steps,
            k_decay,
        })
    }
}

impl Curve for Cosine {
    fn lr(&self, k: u64) -> f64 {
        let t = k.min(self.total) as f64;
        let n = self.total as f64;
        if self.k_decay != 1.0 {
            // timm's expression.
            let kd = self.k_decay;
            return self.lr_min
                + 0.5 * (self.lr_max - self.lr_min) * (1.0 + (PI * t.powf(kd) / n.powf(kd)).cos());
        }
        // PyTorch's closed form, in its order of operations.
        self.lr_min + (self.lr_max - self.lr_min) * (1.0 + (PI * t / n).cos()) / 2.0
    }
}
