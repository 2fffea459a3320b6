//! `kind = "tanh"`.

use super::keys::Keys;
use super::{Curve, RunLength};
use anyhow::Result;

/// Hyperbolic-tangent decay over the run (Hsueh et al. 2019, arXiv 1806.01593), timm
/// `TanhLRScheduler` with one cycle of `t_initial = N` steps:
///
/// `lr(k) = lr_min + (lr_max − lr_min) / 2 · (1 − tanh(lb · (1 − τ) + ub · τ))`, `τ = k / N`,
///
/// and `lr_min` from step `N` on (past the run). With the defaults `lb = −7`, `ub = 3` the LR
/// starts at `lr_max · 0.9999992` and ends near `lr_min + 0.0025 (lr_max − lr_min)`.
/// Keys: `lr_max` (> 0), `lr_min` (0 <= lr_min <= lr_max, default 0), `lb` (default −7),
/// `ub` (default 3), `lb < ub`, `convention` (`lrlab`, default: every step from the formula;
/// `timm`: step 0 at `lr_max`, as timm stepped with `step_update` after each update leaves
/// the first update at the optimizer's base LR; the default keeps the curve one formula).
#[derive(Clone, Debug)]
pub struct Tanh {
    lr_max: f64,
    lr_min: f64,
    lb: f64,
    ub: f64,
    total: u64,
    /// timm's stepping: update 0 runs at the optimizer's base LR, `lr_max`.
    timm_start: bool,
}

impl Tanh {
    /// The keys of this family (besides `kind` and the warmup keys).
    pub(crate) const KEYS: &'static [&'static str] =
        &["lr_max", "lr_min", "lb", "ub", "convention"];

    pub(crate) fn from_keys(keys: &mut Keys, len: RunLength) -> Result<Self> {
        let lr_max = keys.lr("lr_max")?;
        let lr_min = keys.lr_floor("lr_min", 0.0, "lr_max", lr_max)?;
        let lb = keys.f64("lb")?.unwrap_or(-7.0);
        let ub = keys.f64("ub")?.unwrap_or(3.0);
        keys.ensure(
            lb < ub,
            "lb",
            format_args!("must be < {} ({ub})", keys.name("ub")),
        )?;
        let timm_start = keys.choice("convention", &["lrlab", "timm"])? == Some("timm");
        Ok(Tanh {
            timm_start,
            lr_max,
            lr_min,
            lb,
            ub,
            total: len.total_steps,
        })
    }
}

impl Curve for Tanh {
    fn lr(&self, k: u64) -> f64 {
        if k >= self.total {
            return self.lr_min;
        }
        if k == 0 && self.timm_start {
            return self.lr_max;
        }
        let tr = k as f64 / self.total as f64;
        // timm's expression order.
        self.lr_min
            + 0.5
                * (self.lr_max - self.lr_min)
                * (1.0 - (self.lb * (1.0 - tr) + self.ub * tr).tanh())
    }
}
