//! The `[lr_find]` table: settings of the LR range test (also taken by `lrlab find-lr` from its
//! flags); the test itself is [`crate::lr_find`].

use super::names::{FindConvention, RampMode};
use anyhow::Result;
use serde::{Deserialize, Serialize};

super::names::named_enum! {
    /// What the range test watches.
    pub enum Metric {
        /// Training loss at every step (fastai, pytorch-lr-finder).
        Loss = "loss",
        /// Held-out accuracy every `eval_every` steps (Smith's original test).
        Accuracy = "accuracy",
    }
}

super::names::named_enum! {
    /// `lr_find.rule`: the suggestion that replaces `"auto"` for `max_lr`/`lr_max`.
    pub enum AutoRule {
        /// fastai's default: the long valley before the minimum.
        Valley = "valley",
        /// The steepest fall of the smoothed loss.
        Steepest = "steepest",
        /// A tenth of the minimum's learning rate.
        MinimumDiv10 = "minimum_div10",
        /// Smith's upper bound of a cyclical range.
        ClrMax = "clr_max",
    }
}

/// Settings of a range test (also the `[lr_find]` table of a run config, used when a
/// schedule value is `"auto"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FindConfig {
    /// First learning rate. Default 1e-7.
    pub start_lr: f64,
    /// Last learning rate (reached at the last step). Default 10.
    pub end_lr: f64,
    /// Number of steps; 0 = `epochs` epochs. Default 100.
    pub steps: u64,
    /// Length in epochs when `steps` is 0 (Smith used several epochs). Default 0.
    pub epochs: f64,
    /// `exp` (geometric ramp, default) or `linear` (Smith's).
    pub mode: RampMode,
    /// Smoothing factor β of the bias-corrected moving average. Default 0.98.
    pub beta: f64,
    /// Stop when the smoothed loss exceeds this many times its best; 0 = never. Default 4.
    pub stop_factor: f64,
    /// `loss` (default) or `accuracy`.
    pub metric: Metric,
    /// With `metric = "accuracy"`: evaluate every this many steps. Default 20.
    pub eval_every: u64,
    /// With `metric = "accuracy"`: evaluation batches per point (0 = the whole split).
    /// Default 10.
    pub eval_batches: usize,
    /// Points trimmed at the start before reading the steepest fall. Default 10.
    pub skip_start: usize,
    /// Points trimmed at the end before reading the steepest fall. Default 5.
    pub skip_end: usize,
    /// Rule whose value replaces `"auto"` for `max_lr`/`lr_max`: `valley` (default),
    /// `steepest`, `minimum_div10` or `clr_max`. `base_lr = "auto"` uses `clr_base`.
    pub rule: AutoRule,
    /// Train an `"auto"` run even when the test flags its suggestion (no edge found, the
    /// suggestion at the end of the range or past the blow-up). Default false.
    pub allow_edge: bool,
    /// `"lr_finder"` (default: pytorch-lr-finder's ramp, `end_lr` reached at the last step,
    /// the test stopped at a non-finite loss) or `"fastai"` (fastai's `LRFinder` exactly:
    /// `lr_k = start·(end/start)^(k/num_it)`, so `end_lr` is never reached, and a NaN loss
    /// does not stop the test: it goes on to `num_it` and the rules read the curve up to the
    /// first NaN). Left out of the written config at its default.
    #[serde(skip_serializing_if = "is_default_convention")]
    pub convention: FindConvention,
}

fn is_default_convention(c: &FindConvention) -> bool {
    *c == FindConvention::LrFinder
}

impl Default for FindConfig {
    fn default() -> Self {
        FindConfig {
            start_lr: 1e-7,
            end_lr: 10.0,
            steps: 100,
            epochs: 0.0,
            mode: RampMode::Exp,
            beta: 0.98,
            stop_factor: 4.0,
            metric: Metric::Loss,
            eval_every: 20,
            eval_batches: 10,
            skip_start: 10,
            skip_end: 5,
            rule: AutoRule::Valley,
            allow_edge: false,
            convention: FindConvention::LrFinder,
        }
    }
}

impl FindConfig {
    /// Check the range and options; errors name the option and value.
    pub fn validate(&self) -> Result<()> {
        let exp = self.mode == RampMode::Exp;
        if self.convention == FindConvention::Fastai && !exp {
            crate::bail_input!(
                "lr_find.convention = \"fastai\" with lr_find.mode = \"{}\": fastai's ramp is \
                 exponential (mode = \"exp\")",
                self.mode
            );
        }
        let min_start = if exp { "> 0" } else { ">= 0" };
        if !self.start_lr.is_finite() || self.start_lr < 0.0 || (exp && self.start_lr == 0.0) {
            crate::bail_input!(
                "lr_find.start_lr = {}: must be {min_start} with mode \"{}\"",
                self.start_lr,
                self.mode
            );
        }
        if !self.end_lr.is_finite() || self.end_lr <= self.start_lr {
            crate::bail_input!(
                "lr_find.end_lr = {}: must be greater than lr_find.start_lr = {}",
                self.end_lr,
                self.start_lr
            );
        }
        if self.steps == 0 && self.epochs <= 0.0 {
            crate::bail_input!(
                "lr_find.steps = 0 and lr_find.epochs = {}: give a length",
                self.epochs
            );
        }
        if !(0.0..1.0).contains(&self.beta) {
            crate::bail_input!("lr_find.beta = {}: must be in [0, 1)", self.beta);
        }
        if self.stop_factor < 0.0 || (self.stop_factor > 0.0 && self.stop_factor <= 1.0) {
            crate::bail_input!(
                "lr_find.stop_factor = {}: must be 0 (never stop) or > 1",
                self.stop_factor
            );
        }
        if self.metric == Metric::Accuracy && self.eval_every == 0 {
            crate::bail_input!("lr_find.eval_every = 0: must be >= 1");
        }
        if self.steps > 0 {
            self.check_steps(self.steps)?;
        }
        Ok(())
    }

    /// Refuse a test of `steps` steps too short for the rule's trimming.
    pub fn check_steps(&self, steps: u64) -> Result<()> {
        let need = min_steps(self.rule.name(), self.skip_start, self.skip_end);
        if (steps as usize) < need {
            let what = if self.steps > 0 {
                format!("lr_find.steps = {steps}")
            } else {
                format!("lr_find.epochs = {} ({steps} steps)", self.epochs)
            };
            crate::bail_input!(
                "{what}: too few steps for lr_find.rule = {:?}, which trims the ends of \
                 the curve and needs at least {need} steps to read 5 points (100 or more is usual)",
                self.rule.name()
            );
        }
        Ok(())
    }
}

/// Smallest number of steps for which `rule` reads at least 5 points of the curve, with the
/// trimming of `skip_start`/`skip_end` (steepest) or fastai's (valley, minimum_div10).
pub fn min_steps(rule: &str, skip_start: usize, skip_end: usize) -> usize {
    let readable = |n: usize| -> usize {
        match rule {
            "steepest" => n.saturating_sub(skip_start + skip_end + 1),
            "valley" | "minimum_div10" => n.saturating_sub(5).saturating_sub(n / 10),
            _ => n.saturating_sub(skip_start.min(n / 4)),
        }
    };
    (1..100_000).find(|&n| readable(n) >= 5).unwrap_or(100_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_steps_follow_each_rules_trimming() {
        // fastai's window: points n/10 .. n-5.
        assert_eq!(min_steps("valley", 10, 5), 11);
        assert_eq!(min_steps("minimum_div10", 10, 5), 11);
        // steepest: skip_start + skip_end trimmed, pairs of points.
        assert_eq!(min_steps("steepest", 10, 5), 21);
        // clr: at most a quarter trimmed at the start.
        assert_eq!(min_steps("clr_max", 10, 5), 6);
        let fc = FindConfig {
            steps: 3,
            ..FindConfig::default()
        };
        let e = fc.validate().unwrap_err().to_string();
        assert!(
            e.contains("lr_find.steps = 3") && e.contains("at least 11"),
            "{e}"
        );
    }
}
