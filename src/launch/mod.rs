//! What `lrlab train` does around the training loop: load the config file, resolve `"auto"`
//! schedule values with a range test ([`crate::lr_find`]), then train ([`crate::train`]).
//! It sits above both, so that the loop never calls the range test that runs it.

use crate::config::RunConfig;
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
    let name = args.config.display().to_string();
    let resolved = crate::lr_find::resolve_auto(&cfg, &out, args.progress)
        .map_err(|e| crate::config::blame(&name, &args.overrides, e))?;
    let (cfg, lr_find) = match resolved {
        Some((c, chosen)) => (c, Some(chosen)),
        None => (cfg, None),
    };
    let opts = RunOptions {
        progress: args.progress,
        verbose: true,
        lr_find,
    };
    // Bad values found while setting up (schedule, data files) name the config, or the
    // --set that gave the value.
    let outcome =
        run(&cfg, &out, &opts).map_err(|e| crate::config::blame(&name, &args.overrides, e))?;
    Ok((out, outcome))
}
