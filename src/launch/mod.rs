//! What `lrlab train` does around the training loop: load the config file, resolve `"auto"`
//! schedule values with a range test ([`crate::lr_find`]), then train ([`crate::train`]).
//! It sits above both, so that the loop never calls the range test that runs it.

use crate::config::RunConfig;
use crate::error::input_error;
use crate::train::trainer::{default_out, run, Outcome, RunOptions};
use anyhow::Result;
use std::path::PathBuf;

/// `lrlab train CONFIG [--set k=v]... [--out DIR]`.
#[derive(Clone, Debug, Default)]
pub struct TrainArgs {
    /// The run config file.
    pub config: PathBuf,
    /// `table.key=value` overrides.
    pub overrides: Vec<String>,
    /// Run folder; default `out/<config stem>`.
    pub out: Option<PathBuf>,
    /// Progress bar and per-epoch lines.
    pub progress: bool,
}

/// Load a config file, resolve `"auto"` schedule values with a range test, and train.
pub fn train_file(args: &TrainArgs) -> Result<(PathBuf, Outcome)> {
    let cfg = RunConfig::load(&args.config, &args.overrides)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out(&args.config, ""));
    let (cfg, lr_find) = match crate::lr_find::resolve_auto(&cfg, &out, args.progress)? {
        Some((c, chosen)) => (c, Some(chosen)),
        None => (cfg, None),
    };
    let opts = RunOptions {
        progress: args.progress,
        verbose: true,
        lr_find,
    };
    let outcome = run(&cfg, &out, &opts).map_err(|e| {
        // Bad values found while setting up (schedule, data files) still name the config.
        let name = args.config.display().to_string();
        if crate::error::is_input_error(&e) && !format!("{e:#}").contains(&name) {
            input_error(format!("{name}: {e:#}"))
        } else {
            e
        }
    })?;
    Ok((out, outcome))
}
