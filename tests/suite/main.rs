//! The integration tests that leave libtorch's process-wide state alone (its random
//! generator, its thread count, autocast): they drive the `lrlab` binary, or library code
//! that draws nothing from torch, so they share one test binary (each binary links libtorch:
//! one build instead of nineteen). The tests that set that state in-process (`models`,
//! `optim_golden`, `lr_find`, `ensemble`, `hf_lr_golden`, `runs_specs`, `gpu`) keep a binary,
//! and so a process, each; `dist` re-runs its own binary by test name as the ranks.

#[path = "../common/mod.rs"]
mod common;
#[path = "../data_fixtures/mod.rs"]
mod fixtures;
#[path = "../report_common/mod.rs"]
mod report_common;

mod bad_inputs;
mod bench_schedule;
mod bundle_scripts;
mod data_formats;
mod data_imagenet;
mod data_loader;
mod disk_errors;
mod fuzz_regressions;
mod hf_lr_cli;
mod kill_torture;
mod report_figures;
mod report_markdown;
mod schedule_cli;
mod schedule_golden;
mod sweep_collect;
mod sweep_local;
mod sweep_plan;
mod sweep_slurm;
mod train;
