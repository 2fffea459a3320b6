//! `kind = "flat_cosine"`.

use super::keys::Keys;
use super::{Curve, RunLength};
use anyhow::Result;
use std::f64::consts::PI;

/// Flat, then a cosine to `lr_min`: fastai `fit_flat_cos(n_epoch, lr, div_final, pct_start)`
/// in f64. With the position `p = k / N`:
///
/// `lr(k) = lr` for `p < pct_start`, else
/// `lr + (1 + cos(π (1 − x))) (lr_min − lr) / 2`, `x = (p − pct_start) / (1 − pct_start)`.
///
/// The last step (`p = (N − 1)/N`) does not reach `lr_min`. Keys: `lr` (> 0), `pct_start`
/// (in (0, 1), default 0.75), `lr_min` (0 <= lr_min <= lr, default `lr / 1e5`, fastai's
/// `div_final`).
#[derive(Clone, Debug)]
pub struct FlatCosine {
    lr: f64,
    lr_min: f64,
    pct: f64,
    total: u64,
}

impl FlatCosine {
    /// The keys of this family (besides `kind` and the warmup keys).
    pub(crate) const KEYS: &'static [&'static str] = &["lr", "pct_start", "lr_min"];

    pub(crate) fn from_keys(keys: &mut Keys, len: RunLength) -> Result<Self> {
        let lr = keys.lr("lr")?;
        let pct = keys.fraction("pct_start", 0.75)?;
        let lr_min = keys.lr_floor("lr_min", lr / 1e5, "lr", lr)?;
        Ok(FlatCosine {
            lr,
            lr_min,
            pct,
            total: len.total_steps,
        })
    }
}

impl Curve for FlatCosine {
    fn lr(&self, k: u64) -> f64 {
        let p = k.min(self.total - 1) as f64 / self.total as f64;
        if p < self.pct {
            return self.lr;
        }
        let x = (p - self.pct) / (1.0 - self.pct);
        self.lr + (1.0 + (PI * (1.0 - x)).cos()) * (self.lr_min - self.lr) / 2.0
    }
}
