//! `kind = "lr_range"`: the learning-rate range test ramp.

use super::keys::Keys;
use super::{Curve, RunLength};
use anyhow::Result;

/// The LR range test ramp (Smith 2017, §3.3), pytorch-lr-finder convention: the end LR is
/// reached at the last step. With `n = N − 1`:
///
/// `exp`: `lr(k) = start_lr · (end_lr / start_lr)^(k / n)` (the default);
/// `linear`: `lr(k) = start_lr + (k / n) · (end_lr − start_lr)` (Smith's linear ramp).
///
/// Past the run `end_lr` is held. Keys: `start_lr` (> 0; >= 0 when linear), `end_lr`
/// (> start_lr), `mode`
/// (`exp` | `linear`), `convention` (`lr_finder`, the above; `fastai`: `n = N`, fastai's
/// `LRFinder`, whose last step is one step short of `end_lr`). The run must have at least 2
/// steps.
#[derive(Clone, Debug)]
pub struct LrRange {
    start: f64,
    end: f64,
    exp: bool,
    last: u64,
}

impl LrRange {
    /// The keys of this family (besides `kind` and the warmup keys).
    pub(crate) const KEYS: &'static [&'static str] = &["start_lr", "end_lr", "mode", "convention"];

    pub(crate) fn from_keys(keys: &mut Keys, len: RunLength) -> Result<Self> {
        // Mode first: the linear ramp may start at 0 (Smith's 0 -> 3 test), the geometric may not.
        let exp = keys.choice("mode", &["exp", "linear"])?.unwrap_or("exp") == "exp";
        let fastai = keys
            .choice("convention", &["lr_finder", "fastai"])?
            .unwrap_or("lr_finder")
            == "fastai";
        let start = if exp {
            keys.lr("start_lr")?
        } else {
            let v = keys.req_f64("start_lr")?;
            keys.ensure(v >= 0.0, "start_lr", "must be >= 0 with mode = \"linear\"")?;
            v
        };
        let end = keys.lr("end_lr")?;
        keys.ensure(
            end > start,
            "end_lr",
            format_args!("must be > {} ({start})", keys.name("start_lr")),
        )?;
        if len.total_steps < 2 {
            crate::bail_input!(
                "{}: kind = \"lr_range\" needs a run of at least 2 steps (total_steps = {})",
                keys.path(),
                len.total_steps
            );
        }
        Ok(LrRange {
            start,
            end,
            exp,
            // fastai: pct = train_iter / num_it.
            last: if fastai {
                len.total_steps
            } else {
                len.total_steps - 1
            },
        })
    }
}

impl Curve for LrRange {
    fn lr(&self, k: u64) -> f64 {
        let r = k.min(self.last) as f64 / self.last as f64;
        if self.exp {
            self.start * (self.end / self.start).powf(r)
        } else {
            self.start + r * (self.end - self.start)
        }
    }
}
