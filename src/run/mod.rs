//! The run folder: its files' names and the typed records written into it. Every module that
//! reads or writes a run folder goes through here (the one owner of its layout).
//!
//! A run folder holds `config.toml` (the resolved config), `meta.json` (what ran, where, how
//! long), `status.json` ([`Status`]), `steps.csv` and `epochs.csv` (the curves),
//! `checkpoint.safetensors`, and optional `hf_lr.csv`, `hf_lr_layers.csv`, `snapshots/`,
//! `lr_find/`, `ensemble*.csv`, `report.md` and `figures/`.

mod status;

pub use status::{State, Status};

use std::path::Path;

/// The resolved run config.
pub const CONFIG: &str = "config.toml";
/// What ran, where and how long.
pub const META: &str = "meta.json";
/// The run's state ([`Status`]).
pub const STATUS: &str = "status.json";
/// One row per logged optimizer step.
pub const STEPS: &str = "steps.csv";
/// One row per epoch.
pub const EPOCHS: &str = "epochs.csv";
/// Weights, optimizer state and position, for resuming.
pub const CHECKPOINT: &str = "checkpoint.safetensors";
/// The Hessian-free estimates (`train.hf_lr_every`).
pub const HF_LR: &str = "hf_lr.csv";
/// The same per layer.
pub const HF_LR_LAYERS: &str = "hf_lr_layers.csv";
/// Weights at every cycle end (`train.snapshots = "restarts"`).
pub const SNAPSHOTS: &str = "snapshots";

/// Whether `dir` is a run folder: it has a resolved config and a curve (`epochs.csv`), or
/// snapshots to evaluate. The one rule every command that looks for runs uses.
pub fn is_run(dir: &Path) -> bool {
    dir.join(CONFIG).is_file() && (dir.join(EPOCHS).is_file() || dir.join(SNAPSHOTS).is_dir())
}
