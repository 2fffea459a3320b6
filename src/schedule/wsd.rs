//! `kind = "wsd"`: warmup-stable-decay.

use super::keys::Keys;
use super::{Curve, RunLength};
use anyhow::Result;
use std::f64::consts::PI;

/// The decay phase's shape: a factor going from 1 to 0 as the decay progresses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DecayShape {
    /// `1 − √x` (timm's default; Hägele et al. 2024, arXiv 2405.18392).
    OneMinusSqrt,
    /// `1 − x` (the trapezoidal schedule).
    Linear,
    /// `(1 + cos πx) / 2`.
    Cosine,
    /// `1 − x^p` (`decay_power`; 0.5 is `1-sqrt`, 1 is `linear`).
    Power(f64),
    /// `(r^x − r) / (1 − r)` (`decay_ratio` r): exponential, normalised to reach 0.
    Exp(f64),
}

impl DecayShape {
    fn factor(self, x: f64) -> f64 {
        match self {
            DecayShape::OneMinusSqrt => 1.0 - x.sqrt(),
            DecayShape::Linear => 1.0 - x,
            DecayShape::Cosine => 0.5 * (1.0 + (PI * x).cos()),
            DecayShape::Power(p) => 1.0 - x.powf(p),
            DecayShape::Exp(r) => (r.powf(x) - r) / (1.0 - r),
        }
    }
}

/// Warmup-stable-decay (MiniCPM, Hu et al. 2024, arXiv 2404.06395), timm `WSDLRScheduler`
/// with the constant stable function: the LR holds at `lr`, then decays to `lr_min` over the
/// last `D` steps of the run:
///
/// `lr(k) = lr` for `k <= N − D`, else `lr_min + (lr − lr_min) · decay(min((k − (N − D)) / D, 1))`.
///
/// As in timm, `lr_min` is reached at step `N`, one past the run. The warmup is the generic
/// warmup keys (`warmup_steps` / `warmup_epochs`, prefix by default, as timm's WSD always is).
/// Keys: `lr` (> 0), `lr_min` (0 <= lr_min <= lr, default 0), the decay length as one of
/// `decay_steps` (integer), `decay_epochs` or `decay_pct` (fraction of the run, default 0.2),
/// with `0 < D <= N`; `decay_shape` = `1-sqrt` (default) | `linear` | `cosine` | `power` |
/// `exp`, `decay_power` (> 0, default 0.5, `power` only), `decay_ratio` (in (0, 1), default 0.1,
/// `exp` only).
#[derive(Clone, Debug)]
pub struct Wsd {
    lr: f64,
    lr_min: f64,
    decay_len: f64,
    shape: DecayShape,
    total: u64,
}

impl Wsd {
    /// The keys of this family (besides `kind` and the warmup keys).
    pub(crate) const KEYS: &'static [&'static str] = &[
        "lr",
        "lr_min",
        "decay_steps",
        "decay_epochs",
        "decay_pct",
        "decay_shape",
        "decay_power",
        "decay_ratio",
    ];

    pub(crate) fn from_keys(keys: &mut Keys, len: RunLength) -> Result<Self> {
        let lr = keys.lr("lr")?;
        let lr_min = keys.lr_floor("lr_min", 0.0, "lr", lr)?;
        let n = len.total_steps as f64;
        keys.at_most_one(&["decay_steps", "decay_epochs", "decay_pct"])?;
        let steps = keys.u64("decay_steps")?;
        let epochs = keys.f64("decay_epochs")?;
        let pct = keys.f64("decay_pct")?;
        let (key, decay_len) = match (steps, epochs, pct) {
            (Some(s), _, _) => ("decay_steps", s as f64),
            (None, Some(e), _) => ("decay_epochs", len.steps(e)),
            (None, None, Some(p)) => {
                keys.ensure(p > 0.0 && p <= 1.0, "decay_pct", "must be in (0, 1]")?;
                ("decay_pct", p * n)
            }
            (None, None, None) => ("decay_pct", 0.2 * n),
        };
        keys.ensure(
            decay_len > 0.0 && decay_len <= n,
            key,
            format_args!(
                "the decay must last more than 0 and at most total_steps = {} steps (got {} steps)",
                len.total_steps,
                crate::util::fmt_f64(decay_len)
            ),
        )?;
        let shape = match keys
            .choice(
                "decay_shape",
                &["1-sqrt", "linear", "cosine", "power", "exp"],
            )?
            .unwrap_or("1-sqrt")
        {
            "1-sqrt" => DecayShape::OneMinusSqrt,
            "linear" => DecayShape::Linear,
            "cosine" => DecayShape::Cosine,
            "power" => DecayShape::Power(keys.positive("decay_power", 0.5)?),
            _ => {
                let r = keys.f64("decay_ratio")?.unwrap_or(0.1);
                keys.ensure(r > 0.0 && r < 1.0, "decay_ratio", "must be in (0, 1)")?;
                DecayShape::Exp(r)
            }
        };
        if !matches!(shape, DecayShape::Power(_)) {
            let why = "only used with decay_shape = \"power\"";
            keys.forbid_unless("decay_power", 0.5.into(), why)?;
        }
        if !matches!(shape, DecayShape::Exp(_)) {
            let why = "only used with decay_shape = \"exp\"";
            keys.forbid_unless("decay_ratio", 0.1.into(), why)?;
        }
        Ok(Wsd {
            lr,
            lr_min,
            decay_len,
            shape,
            total: len.total_steps,
        })
    }
}

impl Curve for Wsd {
    fn lr(&self, k: u64) -> f64 {
        let t_decay = k as f64 - (self.total as f64 - self.decay_len);
        if t_decay <= 0.0 {
            return self.lr;
        }
        let frac = (t_decay / self.decay_len).min(1.0);
        self.lr_min + (self.lr - self.lr_min) * self.shape.factor(frac)
    }
}
