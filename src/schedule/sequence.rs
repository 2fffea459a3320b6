//! `kind = "sequence"`: schedules one after another.

use super::keys::Keys;
use super::{Curve, RunLength, Schedule};
use anyhow::Result;

/// Child schedules switched at milestones, PyTorch `SequentialLR` semantics: child `i` is
/// active from milestone `i − 1` (step 0 for the first) to milestone `i`, restarts at its own
/// step 0 there, and is built for a run as long as its segment:
///
/// `lr(k) = child_i.lr(k − b_i)` for `b_i <= k < b_{i+1}`, `b_0 = 0`,
/// `b_i` = the first step whose epoch is `>= milestones[i − 1]`.
///
/// Keys: `milestones` (epochs, strictly increasing, each > 0 and inside the run, so every child
/// has at least one step), `schedules` (an array of tables, one more than the milestones; each
/// is a full schedule table with its own `kind` and keys, reported as
/// `schedule.schedules[i].KEY`). Momentum comes from the active child (`None` where it leaves
/// momentum to the optimizer); cycle ends are the children's, shifted to their segment.
#[derive(Clone, Debug)]
pub struct Sequence {
    /// First step of each child; `starts[0] = 0`.
    starts: Vec<u64>,
    children: Vec<Schedule>,
}

impl Sequence {
    /// The keys of this family (besides `kind` and the warmup keys).
    pub(crate) const KEYS: &'static [&'static str] = &["milestones", "schedules"];

    pub(crate) fn from_keys(keys: &mut Keys, len: RunLength) -> Result<Self> {
        let milestones = keys
            .f64_list("milestones")?
            .ok_or_else(|| keys.missing("milestones"))?;
        let tables = keys
            .tables("schedules")?
            .ok_or_else(|| keys.missing("schedules"))?;
        keys.ensure(
            !tables.is_empty(),
            "schedules",
            "must hold at least one schedule table",
        )?;
        keys.ensure(
            milestones.len() + 1 == tables.len(),
            "milestones",
            format_args!(
                "needs one milestone fewer than there are schedules ({} schedules)",
                tables.len()
            ),
        )?;
        keys.ensure(
            milestones.iter().all(|&m| m > 0.0),
            "milestones",
            "every milestone must be > 0 (epochs)",
        )?;
        keys.ensure(
            milestones.windows(2).all(|w| w[0] < w[1]),
            "milestones",
            "must be strictly increasing",
        )?;
        let mut starts = vec![0u64];
        for &m in &milestones {
            let s = len.first_step_at(m);
            keys.ensure(
                s > *starts.last().expect("non-empty"),
                "milestones",
                format_args!(
                    "milestone {m} (step {s}) leaves the previous schedule no step \
                     ({} steps per epoch)",
                    len.steps_per_epoch
                ),
            )?;
            keys.ensure(
                s < len.total_steps,
                "milestones",
                format_args!(
                    "milestone {m} (step {s}) must fall inside the run (total_steps = {})",
                    len.total_steps
                ),
            )?;
            starts.push(s);
        }
        let mut children = Vec::with_capacity(tables.len());
        for (i, table) in tables.iter().enumerate() {
            let end = starts.get(i + 1).copied().unwrap_or(len.total_steps);
            let child_len = RunLength {
                steps_per_epoch: len.steps_per_epoch,
                total_steps: end - starts[i],
            };
            let path = format!("{}.schedules[{i}]", keys.path());
            children.push(Schedule::build(table, &path, child_len)?);
        }
        Ok(Sequence { starts, children })
    }

    /// The active child of step `k` and its first step.
    fn child(&self, k: u64) -> (&Schedule, u64) {
        let i = self.starts.partition_point(|&s| s <= k) - 1;
        (&self.children[i], self.starts[i])
    }
}

impl Curve for Sequence {
    fn lr(&self, k: u64) -> f64 {
        let (child, start) = self.child(k);
        child.lr(k - start)
    }

    fn momentum(&self, k: u64) -> Option<f64> {
        let (child, start) = self.child(k);
        child.momentum(k - start)
    }

    fn cycle_ends(&self) -> Vec<u64> {
        self.children
            .iter()
            .zip(&self.starts)
            .flat_map(|(child, &start)| child.cycle_ends().into_iter().map(move |e| e + start))
            .collect()
    }
}
