//! Sweeps: a grid of runs from one spec, run locally in parallel child processes or as Slurm
//! job arrays, resumable, and collected into CSV tables.
//!
//! - `spec.rs`: the sweep spec (base run, `[grid]`, `[[zip]]`, `seeds`, `[target]`, `[report]`).
//! - `plan.rs`: expansion into runs with readable names and config-hash ids; validation.
//! - `manifest.rs`: the frozen sweep folder (`sweep.toml`, `manifest.json`, `runs.csv`).
//! - `exec.rs`: one run: state, claim lock, config file, child process, outcome.
//! - `devices.rs`: the device token pool and CPU thread sharing.
//! - `local.rs` + `progress.rs`: the local executor and its display.
//! - `slurm.rs`: sbatch array scripts and the task side (`sweep run-index`).
//! - `collect.rs`: `summary.csv`, `curves.csv`, `summary_by_point.csv`.
//! - `status.rs`: the `sweep status` table.
//!
//! Layout of a sweep folder:
//! ```text
//! SWEEP/sweep.toml  manifest.json  runs.csv  summary.csv  curves.csv  summary_by_point.csv
//! SWEEP/.locks/<id>.lock           claim of a run (held while it trains)
//! SWEEP/slurm/array-<k>.sbatch  %A_%a.out  jobs.json
//! SWEEP/<run name>/config.toml  status.json  epochs.csv  steps.csv  meta.json
//!                  checkpoint.safetensors  train.log  attempts.jsonl
//! ```

pub mod collect;
pub mod devices;
pub mod exec;
pub mod local;
pub mod manifest;
pub mod plan;
pub mod progress;
pub mod slurm;
pub mod spec;
pub mod status;
