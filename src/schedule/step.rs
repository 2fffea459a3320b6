//! `kind = "step"`.

use super::keys::Keys;
use super::{Curve, RunLength};
use anyhow::Result;

/// Step decay at milestones, PyTorch `MultiStepLR` semantics (the ResNet paper's schedule:
/// He et al. 2016, lr 0.1 divided by 10 at fixed epochs):
///
/// `lr(k) = lr · gamma^n(k)`, `n(k) = #{ i : k / steps_per_epoch >= milestones[i] }`.
///
/// Keys: `lr` (> 0), `milestones` (epochs, fractional allowed, each > 0, non-decreasing),
/// `gamma` (> 0, default 0.1). The milestones are a multiset as in PyTorch: a milestone given
/// twice multiplies by `gamma²` there (`[2, 2, 5]` gives ×0.01 at epoch 2). Milestones past the
/// run are allowed and have no effect. With integer milestones this equals `MultiStepLR`
/// stepped once per epoch.
#[derive(Clone, Debug)]
pub struct MultiStep {
    lr: f64,
    gamma: f64,
    /// First step of each milestone, non-decreasing.
    starts: Vec<u64>,
}

impl MultiStep {
    /// The keys of this family (besides `kind` and the warmup keys).
    pub(crate) const KEYS: &'static [&'static str] = &["lr", "milestones", "gamma"];

    pub(crate) fn from_keys(keys: &mut Keys, len: RunLength) -> Result<Self> {
        let lr = keys.lr("lr")?;
        let milestones = keys
            .f64_list("milestones")?
            .ok_or_else(|| keys.missing("milestones"))?;
        keys.ensure(
            milestones.iter().all(|&m| m > 0.0),
            "milestones",
            "every milestone must be > 0 (epochs)",
        )?;
        keys.ensure(
            milestones.windows(2).all(|w| w[0] <= w[1]),
            "milestones",
            "must be non-decreasing (a repeated milestone decays twice, as in PyTorch MultiStepLR)",
        )?;
        let gamma = keys.positive("gamma", 0.1)?;
        let starts = milestones.iter().map(|&m| len.first_step_at(m)).collect();
        Ok(MultiStep { lr, gamma, starts })
    }
}

impl Curve for MultiStep {
    fn lr(&self, k: u64) -> f64 {
        let n = self.starts.partition_point(|&s| s <= k);
        self.lr * self.gamma.powi(n as i32)
    }
}
