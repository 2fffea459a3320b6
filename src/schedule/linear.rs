//! `kind = "linear"`.

use super::keys::Keys;
use super::{Curve, RunLength};
use anyhow::Result;

/// A straight line from `start_lr` to `end_lr` over the run, PyTorch `LinearLR` semantics with
/// `total_iters` = the run's steps `N` (absolute LRs instead of factors):
///
/// `lr(k) = start_lr + (end_lr − start_lr) · min(k, N) / N`.
///
/// As in PyTorch the end value is reached at step `N`, one past the run, which makes this the
/// warmup child of a [`super::sequence::Sequence`]: the next child starts at `end_lr`.
/// (For a line that reaches its end at the last step use `kind = "lr_range"`, `mode = "linear"`.)
///
/// Keys: `start_lr`, `end_lr` (both >= 0, not both 0).
#[derive(Clone, Debug)]
pub struct Linear {
    start: f64,
    end: f64,
    total: u64,
}

impl Linear {
    /// The keys of this family (besides `kind` and the warmup keys).
    pub(crate) const KEYS: &'static [&'static str] = &["start_lr", "end_lr"];

    pub(crate) fn from_keys(keys: &mut Keys, len: RunLength) -> Result<Self> {
        let start = keys.req_f64("start_lr")?;
        keys.ensure(start >= 0.0, "start_lr", "must be >= 0")?;
        let end = keys.req_f64("end_lr")?;
        keys.ensure(end >= 0.0, "end_lr", "must be >= 0")?;
        keys.ensure(
            start > 0.0 || end > 0.0,
            "end_lr",
            "start_lr and end_lr cannot both be 0",
        )?;
        Ok(Linear {
            start,
            end,
            total: len.total_steps,
        })
    }
}

impl Curve for Linear {
    fn lr(&self, k: u64) -> f64 {
        let n = self.total as f64;
        self.start + (self.end - self.start) * k.min(self.total) as f64 / n
    }
}
