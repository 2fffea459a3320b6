//! lrlab: a reproduction harness for learning-rate schedule research on libtorch.
//!
//! - [`schedule`] — pure, closed-form learning-rate and momentum schedules (no libtorch).
//! - [`data`] — datasets in their official formats and a seeded, prefetching loader.
//! - [`models`] — the papers' networks with PyTorch/torchvision initialisation.
//! - [`train`] — the training loop, the exact optimizer, checkpoints and resume.
//! - [`config`] — run configuration (TOML + `--set` overrides).
//! - [`launch`] — `lrlab train`: the config file, the range test for `"auto"` values, the loop.
//! - [`report`] — figures drawn from the CSVs.
//! - [`sweep`] — grids of runs, local or on Slurm, resumable, collected into CSVs.
//! - [`util`] — small shared helpers (atomic writes, float formatting).

pub mod config;
pub mod data;
pub mod distributed;
pub mod error;
pub mod launch;
pub mod lr_find;
pub mod models;
pub mod report;
pub mod run;
pub mod schedule;
mod shim;
pub mod supervise;
pub mod sweep;
pub mod train;
pub mod util;

pub use error::{input_error, is_input_error, InputError};
