//! `kind = "factor"`.

use super::keys::Keys;
use super::{Curve, RunLength};
use anyhow::Result;

/// A base learning rate times a factor that changes over the first `total_iters` intervals,
/// PyTorch's `LinearLR` and `ConstantLR` in their closed forms. With `t` the number of
/// intervals completed before step `k` (`t = k`, or `⌊k / steps_per_epoch⌋` when stepped per
/// epoch) and `T = total_iters`:
///
/// - `mode = "linear"` (`LinearLR`): `lr · (start_factor + (end_factor − start_factor) ·
///   min(t, T) / T)`;
/// - `mode = "constant"` (`ConstantLR(factor = start_factor)`): `lr · start_factor` while
///   `t < T`, then `lr · end_factor`.
///
/// Keys: `lr` (> 0; 1 makes it a pure factor for a [`super::product::Product`]),
/// `start_factor` (> 0 for linear, as PyTorch requires; >= 0 for constant), `end_factor`
/// (>= 0, default 1), `total_iters` (>= 1 intervals, PyTorch's default 5), `mode`
/// (`linear`, default, or `constant`), `interval` (`step`, default: PyTorch stepped after
/// every update; or `epoch`: stepped after each epoch's last update).
#[derive(Clone, Debug)]
pub struct Factor {
    lr: f64,
    start: f64,
    end: f64,
    total: u64,
    constant: bool,
    /// Steps per interval: 1, or the epoch's steps.
    per: u64,
}

impl Factor {
    /// The keys of this family (besides `kind` and the warmup keys).
    pub(crate) const KEYS: &'static [&'static str] = &[
        "lr",
        "start_factor",
        "end_factor",
        "total_iters",
        "mode",
        "interval",
    ];

    pub(crate) fn from_keys(keys: &mut Keys, len: RunLength) -> Result<Self> {
        let lr = keys.lr("lr")?;
        let constant = keys.choice("mode", &["linear", "constant"])? == Some("constant");
        let start = keys.req_f64("start_factor")?;
        if constant {
            keys.ensure(start >= 0.0, "start_factor", "must be >= 0")?;
        } else {
            keys.ensure(
                start > 0.0,
                "start_factor",
                "must be > 0 (as in PyTorch's LinearLR)",
            )?;
        }
        let end = keys.f64("end_factor")?.unwrap_or(1.0);
        keys.ensure(end >= 0.0, "end_factor", "must be >= 0")?;
        let total = keys.u64("total_iters")?.unwrap_or(5);
        keys.ensure(total >= 1, "total_iters", "must be >= 1")?;
        let per = match keys.choice("interval", &["step", "epoch"])? {
            Some("epoch") => len.steps_per_epoch,
            _ => 1,
        };
        Ok(Factor {
            lr,
            start,
            end,
            total,
            constant,
            per,
        })
    }
}

impl Curve for Factor {
    fn lr(&self, k: u64) -> f64 {
        let t = k / self.per;
        let f = if self.constant {
            if t < self.total {
                self.start
            } else {
                self.end
            }
        } else {
            // PyTorch's closed form, in its order of operations.
            self.start + (self.end - self.start) * t.min(self.total) as f64 / self.total as f64
        };
        self.lr * f
    }
}
