//! `kind = "step"`.

use super::keys::Keys;
use super::{Curve, RunLength};
use anyhow::Result;

/// Step decay at milestones, PyTorch `MultiStepLR` semantics (the ResNet paper's schedule:
/// He et al. 2016, lr 0.1 divided by 10 at fixed epochs):
///
/// `lr(k) = lr · gamma^n(k)`, `n(k) = #{ i : step k has reached milestones[i] }`,
///
/// or, with `values = [v0, v1, ...]` in place of `lr` and `gamma`, `lr(k) = values[n(k)]`
/// (Keras `PiecewiseConstantDecay`, any values).
///
/// Keys: `lr` (> 0) and `gamma` (> 0, default 0.1), or `values` (each > 0, one more than the
/// milestones); `milestones` (epochs, fractional allowed, each > 0, non-decreasing; step `k`
/// reaches milestone `m` when `k / steps_per_epoch >= m`) or `milestone_steps` (integer
/// steps, each >= 1; step `k` reaches `m` when `k >= m`). The milestones are a multiset as
/// in PyTorch: a milestone given twice multiplies by `gamma²` there (`[2, 2, 5]` gives ×0.01
/// at epoch 2); with `values` they must increase strictly. Milestones past the run are
/// allowed and have no effect. With integer milestones this equals `MultiStepLR` stepped
/// once per epoch.
///
/// Other libraries' milestones: Keras `PiecewiseConstantDecay(boundaries, values)` switches
/// after its boundary step (`step > b`): `milestone_steps = [b + 1, ...]`. timm's
/// `MultiStepLRScheduler(decay_t)` decays one epoch early (at `t = m − 1`, kept by timm for
/// compatibility): `milestones = [m − 1, ...]`; timm's `StepLRScheduler(decay_t = d)`:
/// `milestones = [d, 2d, ...]`.
#[derive(Clone, Debug)]
pub struct MultiStep {
    lr: f64,
    gamma: f64,
    /// The LR at each level, when given as values.
    values: Option<Vec<f64>>,
    /// First step of each milestone, non-decreasing.
    starts: Vec<u64>,
}

impl MultiStep {
    /// The keys of this family (besides `kind` and the warmup keys).
    pub(crate) const KEYS: &'static [&'static str] =
        &["lr", "milestones", "milestone_steps", "gamma", "values"];

    pub(crate) fn from_keys(keys: &mut Keys, len: RunLength) -> Result<Self> {
        keys.at_most_one(&["milestones", "milestone_steps"])?;
        let epochs = keys.f64_list("milestones")?;
        let steps = keys.f64_list("milestone_steps")?;
        let (key, starts) = match (epochs, steps) {
            (None, None) => return Err(keys.missing("milestones")),
            (Some(m), _) => {
                keys.ensure(
                    m.iter().all(|&m| m > 0.0),
                    "milestones",
                    "every milestone must be > 0 (epochs)",
                )?;
                (
                    "milestones",
                    m.iter().map(|&m| len.first_step_at(m)).collect(),
                )
            }
            (None, Some(s)) => {
                keys.ensure(
                    s.iter()
                        .all(|&m| m >= 1.0 && m.fract() == 0.0 && m < 1.8e19),
                    "milestone_steps",
                    "every milestone must be a whole number of steps >= 1",
                )?;
                (
                    "milestone_steps",
                    s.iter().map(|&m| m as u64).collect::<Vec<u64>>(),
                )
            }
        };
        let values = keys.f64_list("values")?;
        let (lr, gamma) = match &values {
            Some(v) => {
                keys.forbid("lr", "give either values or lr (with gamma)")?;
                keys.forbid("gamma", "give either values or gamma (with lr)")?;
                keys.ensure(
                    v.len() == starts.len() + 1,
                    "values",
                    format_args!(
                        "needs one value more than {key} ({} milestones, so {} values; found {})",
                        starts.len(),
                        starts.len() + 1,
                        v.len()
                    ),
                )?;
                keys.ensure(
                    v.iter().all(|&x| x > 0.0 && x.is_finite()),
                    "values",
                    "every value must be a finite LR > 0",
                )?;
                keys.ensure(
                    starts.windows(2).all(|w| w[0] < w[1]),
                    key,
                    "must increase strictly with values (each milestone moves to the next value)",
                )?;
                (v[0], 1.0)
            }
            None => {
                keys.ensure(
                    starts.windows(2).all(|w| w[0] <= w[1]),
                    key,
                    "must be non-decreasing (a repeated milestone decays twice, as in PyTorch \
                     MultiStepLR)",
                )?;
                (keys.lr("lr")?, keys.positive("gamma", 0.1)?)
            }
        };
        Ok(MultiStep {
            lr,
            gamma,
            values,
            starts,
        })
    }
}

impl Curve for MultiStep {
    fn lr(&self, k: u64) -> f64 {
        let n = self.starts.partition_point(|&s| s <= k);
        match &self.values {
            Some(v) => v[n],
            None => self.lr * self.gamma.powi(n as i32),
        }
    }
}
