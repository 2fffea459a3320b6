//! `kind = "cosine"`.

use super::keys::Keys;
use super::{Curve, RunLength};
use anyhow::Result;
use std::f64::consts::PI;

/// One half-cosine over `T` steps (Loshchilov & Hutter's annealing without restarts; PyTorch
/// `CosineAnnealingLR` with `T_max` = `T`, stepped per batch; `T` is the run's steps `N`
/// unless `t_max` says otherwise):
///
/// `lr(k) = lr_min + (lr_max − lr_min) · (1 + cos(π · min(k, T) / T)) / 2`.
///
/// Step `T − 1` is one step short of `lr_min`. Past `T` the conventions differ:
/// - `lrlab` (default), `timm`, `keras`: `lr_min` is held (timm's `CosineLRScheduler` with one
///   cycle and Keras `CosineDecay` clamp the step; a decay that climbs back is rarely wanted);
/// - `pytorch`: the cosine goes on, rising back to `lr_max` at `2T` (period `2T`), as
///   `CosineAnnealingLR` stepped past `T_max` does. Needed to reproduce a PyTorch curve whose
///   `T_max` is shorter than its run.
///
/// With timm's `k_decay` = `κ` the phase is `π · t^κ / T^κ` (κ > 1 holds the LR high for
/// longer, κ < 1 drops it sooner; Zhang & Li, *k-decay*, 2020), in timm's order of operations.
///
/// Keys: `lr_max` (> 0), `lr_min` (0 <= lr_min <= lr_max, default 0), `t_max` (epochs,
/// fractional allowed) or `t_max_steps` (default: the whole run), `k_decay` (> 0, default 1),
/// `convention` (`lrlab` | `pytorch` | `timm` | `keras`; only the past-`T` rule differs).
#[derive(Clone, Debug)]
pub struct Cosine {
    lr_max: f64,
    lr_min: f64,
    /// `T`, in steps (>= 1).
    period: u64,
    /// PyTorch's convention: the cosine continues past `T`.
    continues: bool,
    k_decay: f64,
}

impl Cosine {
    /// The keys of this family (besides `kind` and the warmup keys).
    pub(crate) const KEYS: &'static [&'static str] = &[
        "lr_max",
        "lr_min",
        "t_max",
        "t_max_steps",
        "k_decay",
        "convention",
    ];

    pub(crate) fn from_keys(keys: &mut Keys, len: RunLength) -> Result<Self> {
        let lr_max = keys.lr("lr_max")?;
        let lr_min = keys.lr_floor("lr_min", 0.0, "lr_max", lr_max)?;
        let k_decay = keys.positive("k_decay", 1.0)?;
        keys.at_most_one(&["t_max", "t_max_steps"])?;
        let t_max = keys.f64("t_max")?;
        let t_max_steps = keys.u64("t_max_steps")?;
        let period = match (t_max, t_max_steps) {
            (Some(e), _) => {
                keys.ensure(
                    e > 0.0 && len.first_step_at(e) >= 1,
                    "t_max",
                    format_args!(
                        "must span at least one step (epochs > 0; {} steps per epoch)",
                        len.steps_per_epoch
                    ),
                )?;
                len.first_step_at(e)
            }
            (None, Some(s)) => {
                keys.ensure(s >= 1, "t_max_steps", "must be >= 1")?;
                s
            }
            (None, None) => len.total_steps,
        };
        let continues =
            keys.choice("convention", &["lrlab", "pytorch", "timm", "keras"])? == Some("pytorch");
        keys.ensure(
            !continues || k_decay == 1.0,
            "k_decay",
            "is timm's, and timm holds lr_min past t_max: drop convention = \"pytorch\"",
        )?;
        Ok(Cosine {
            lr_max,
            lr_min,
            period,
            continues,
            k_decay,
        })
    }
}

impl Curve for Cosine {
    fn lr(&self, k: u64) -> f64 {
        let t = if self.continues {
            // cos has period 2T: reduce exactly in integers so a long run keeps full precision.
            (k % (2 * self.period)) as f64
        } else {
            k.min(self.period) as f64
        };
        let n = self.period as f64;
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
