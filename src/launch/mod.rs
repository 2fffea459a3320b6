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

/// For `lrlab schedule RUN.toml`: the run's length as its training would see it (steps per
/// epoch from its data, `train_subset`, `val_split`, batch size and `drop_last`; epochs or
/// `train.steps`), or `None` when the file is not a run config (it has neither `[data]` nor
/// `[train]`, or has a `[preview]` table). Opening the data is what makes the count exact.
pub fn run_length_of(path: &std::path::Path) -> Result<Option<crate::schedule::RunLength>> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(None); // the schedule command reports the unreadable file itself
    };
    let Ok(doc) = text.parse::<toml::Table>() else {
        return Ok(None);
    };
    // A [preview] table is the spec's own choice of length, and wins.
    if doc.contains_key("preview") || (!doc.contains_key("data") && !doc.contains_key("train")) {
        return Ok(None);
    }
    let cfg = RunConfig::load(path, &[])?;
    let name = path.display().to_string();
    let (_, k) = crate::train::trainer::open_data(&cfg, tch::Device::Cpu)
        .map_err(|e| crate::config::blame(&name, &[], e))?;
    let total = crate::train::trainer::total_steps(&cfg, k);
    Ok(Some(crate::schedule::RunLength {
        steps_per_epoch: k,
        total_steps: total,
    }))
}
