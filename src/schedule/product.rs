//! `kind = "product"`.

use super::keys::Keys;
use super::{Curve, RunLength, Schedule};
use anyhow::Result;

/// The product of child schedules, PyTorch's `ChainedScheduler` in closed form: every child is
/// built for the whole run and `lr(k) = Π child_i.lr(k)`. One child carries the base learning
/// rate; the others are factors (`lr = 1`), e.g. a `factor` warmup times a `cosine`:
///
/// ```toml
/// kind = "product"
/// schedules = [
///   { kind = "factor", lr = 1.0, start_factor = 0.1, total_iters = 500 },
///   { kind = "cosine", lr_max = 0.1 },
/// ]
/// ```
///
/// PyTorch multiplies each scheduler's step-to-step ratio into the current LR; for the
/// multiplicative families (factors, exponential and step decays, cosines to 0) that is the
/// product of their closed forms up to rounding. Momentum comes from the first child that
/// sets it; cycle ends are every child's.
///
/// Keys: `schedules` (an array of at least two tables, each a full schedule reported as
/// `schedule.schedules[i].KEY`).
#[derive(Clone, Debug)]
pub struct Product {
    children: Vec<Schedule>,
}

impl Product {
    /// The keys of this family (besides `kind` and the warmup keys).
    pub(crate) const KEYS: &'static [&'static str] = &["schedules"];

    pub(crate) fn from_keys(keys: &mut Keys, len: RunLength) -> Result<Self> {
        let tables = keys
            .tables("schedules")?
            .ok_or_else(|| keys.missing("schedules"))?;
        keys.ensure(
            tables.len() >= 2,
            "schedules",
            "must hold at least two schedule tables to multiply",
        )?;
        let children = tables
            .iter()
            .enumerate()
            .map(|(i, t)| Schedule::build(t, &format!("{}.schedules[{i}]", keys.path()), len))
            .collect::<Result<Vec<_>>>()?;
        Ok(Product { children })
    }
}

impl Product {
    /// Hand an evaluation to the children ([`Schedule::record_eval`]).
    pub(crate) fn record_eval(&mut self, step: u64, m: &super::plateau::EvalMetrics) {
        for c in &mut self.children {
            c.record_eval(step, m);
        }
    }

    /// Whether a child follows the logged evaluations.
    pub(crate) fn uses_metrics(&self) -> bool {
        self.children.iter().any(Schedule::uses_metrics)
    }
}

impl Curve for Product {
    fn lr(&self, k: u64) -> f64 {
        self.children.iter().map(|c| c.lr(k)).product()
    }

    fn momentum(&self, k: u64) -> Option<f64> {
        self.children.iter().find_map(|c| c.momentum(k))
    }

    fn cycle_ends(&self) -> Vec<u64> {
        let mut ends: Vec<u64> = self.children.iter().flat_map(|c| c.cycle_ends()).collect();
        ends.sort_unstable();
        ends.dedup();
        ends
    }
}
