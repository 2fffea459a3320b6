//! The `[lr_find]` table: settings of the LR range test (also taken by `lrlab find-lr` from its
//! flags); the test itself is [`crate::lr_find`].

use anyhow::Result;
use serde::{Deserialize, Serialize};

/// What the range test watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Training loss at every step (fastai, pytorch-lr-finder).
    Loss,
    /// Held-out accuracy every `eval_every` steps (Smith's original test).
    Accuracy,
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
    pub mode: String,
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
    pub rule: String,
}

impl Default for FindConfig {
    fn default() -> Self {
        FindConfig {
            start_lr: 1e-7,
            end_lr: 10.0,
            steps: 100,
            epochs: 0.0,
            mode: "exp".into(),
            beta: 0.98,
            stop_factor: 4.0,
            metric: Metric::Loss,
            eval_every: 20,
            eval_batches: 10,
            skip_start: 10,
            skip_end: 5,
            rule: "valley".into(),
        }
    }
}

const RULES: [&str; 4] = ["valley", "steepest", "minimum_div10", "clr_max"];

impl FindConfig {
    /// Check the range and options; errors name the option and value.
    pub fn validate(&self) -> Result<()> {
        if self.mode != "exp" && self.mode != "linear" {
            crate::bail_input!(
                "lr_find.mode = {:?}: expected \"exp\" or \"linear\"",
                self.mode
            );
        }
        let min_start = if self.mode == "exp" { "> 0" } else { ">= 0" };
        if !self.start_lr.is_finite()
            || self.start_lr < 0.0
            || (self.mode == "exp" && self.start_lr == 0.0)
        {
            crate::bail_input!(
                "lr_find.start_lr = {}: must be {min_start} with mode {:?}",
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
        if !RULES.contains(&self.rule.as_str()) {
            crate::bail_input!(
                "lr_find.rule = {:?}: expected one of {}",
                self.rule,
                RULES.join(", ")
            );
        }
        Ok(())
    }
}
