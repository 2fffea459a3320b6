//! The run folder: its files' names and the typed records written into it. Every module that
//! reads or writes a run folder goes through here (the one owner of its layout).
//!
//! A run folder holds `config.toml` (the resolved config), `meta.json` (what ran, where, how
//! long), `status.json` ([`Status`]), `steps.csv` and `epochs.csv` (the curves),
//! `checkpoint.safetensors`, and optional `hf_lr.csv`, `hf_lr_layers.csv`, `snapshots/`,
//! `lr_find/`, `ensemble*.csv`, `report.md` and `figures/`.

mod folder;
mod lock;
mod log;
mod meta;
mod rows;
mod status;

pub use folder::{check_run_folder, find_runs, is_run};
pub use lock::{RunLock, LOCK};
pub use log::CsvLog;
pub use meta::{HfLrMeta, Meta, Resize, FORMAT, FORMAT_VERSION};
pub use rows::{learned, read_epochs, read_steps, EpochRow, StepRow, EPOCHS_HEADER, STEPS_HEADER};
pub use status::{State, Status};

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
/// Header of `hf_lr.csv` (`train.hf_lr_every`): the window's first step, its epoch and LR,
/// the finite-difference estimate, its moving average, and gᵀg / gᵀHg.
pub const HF_LR_HEADER: &str = "step,epoch,lr,hf_lr,hf_lr_ema,curvature_lr";
/// Header of `hf_lr_layers.csv`: the same estimates per layer, one row per layer and window.
pub const HF_LR_LAYERS_HEADER: &str = "step,layer,hf_lr,curvature_lr";
