//! The training loop, the optimizer with savable state, checkpoints and resume.
//!
//! - `optim.rs`: SGD (PyTorch and Caffe momentum conventions) and AdamW, state savable.
//! - `checkpoint.rs`: weights + optimizer state + progress, written atomically.
//! - `hf_lr.rs`: the super-convergence paper's Hessian-free learning-rate estimate.
//! - `stop.rs`: SIGINT/SIGTERM/SIGUSR1 as a stop at the next safe point.
//! - `device.rs`: device and thread selection.
//! - `ensemble.rs`: snapshot ensembles of a run's cycle-end weights (`lrlab ensemble`).

pub mod bench;
pub mod checkpoint;
pub mod device;
pub mod ensemble;
pub mod eval;
pub mod hf_lr;
mod logs;
pub mod optim;
pub mod overhead;
mod run_loop;
pub mod setup;
pub mod step;
pub mod stop;
pub mod trainer;
