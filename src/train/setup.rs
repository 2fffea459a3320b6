//! What a run needs besides its model and step: the device, the data, the schedule and the
//! run length ([`Setup`]), the checks that a batch splits over the processes of a run, the
//! default output folder and the progress bar.

use super::device::{resolve_device, set_threads};
use crate::config::RunConfig;
use crate::data::{self, Data};
use crate::error::input_error;
use crate::schedule::{RunLength, Schedule};
use crate::util::fmt_f64;
use anyhow::Result;
use std::path::{Path, PathBuf};
use tch::Device;

/// What a run needs besides the model: device, data, schedule and the run length. Shared by
/// the training loop and the LR range test.
pub struct Setup {
    /// The device tensors live on.
    pub device: Device,
    /// libtorch intra-op threads in use.
    pub threads: usize,
    /// Forward passes run under bf16 autocast (CUDA only).
    pub bf16: bool,
    /// Training and evaluation loaders.
    pub data: Data,
    /// Optimizer steps per epoch.
    pub steps_per_epoch: u64,
    /// Optimizer steps of the whole run.
    pub total_steps: u64,
    /// The learning-rate/momentum schedule.
    pub schedule: Schedule,
}

impl Setup {
    /// Resolve the device, open the data and build the schedule from a config.
    pub fn new(cfg: &RunConfig) -> Result<Setup> {
        Setup::with_length(cfg, |k| total_steps(cfg, k))
    }

    /// Like [`Setup::new`], with the run length given by `total(steps_per_epoch)`.
    pub fn with_length(cfg: &RunConfig, total: impl FnOnce(u64) -> u64) -> Result<Setup> {
        let device = resolve_device(cfg.train.device)?;
        let bf16 = super::device::use_bf16(cfg.train.precision, device)?;
        let threads = set_threads(cfg.train.threads);
        let (data, steps_per_epoch) = open_data(cfg, device)?;
        let total_steps = total(steps_per_epoch);
        let schedule = Schedule::from_table(
            &cfg.schedule,
            RunLength {
                steps_per_epoch,
                total_steps,
            },
        )?;
        warn_unused_momentum(cfg, &schedule);
        Ok(Setup {
            device,
            threads,
            bf16,
            data,
            steps_per_epoch,
            total_steps,
            schedule,
        })
    }

    /// Number of epochs the loop visits (the last one may be partial with `train.steps`).
    pub fn epochs(&self) -> u64 {
        self.total_steps.div_ceil(self.steps_per_epoch)
    }
}

/// Open a run's data on `device` with its batch sizes, and count its optimizer steps per
/// epoch as the loop batches them (at least 1, else an input error).
pub fn open_data(cfg: &RunConfig, device: Device) -> Result<(Data, u64)> {
    let tc = &cfg.train;
    let bs = tc.batch_size;
    let eval_bs = if tc.eval_batch_size == 0 {
        2 * bs
    } else {
        tc.eval_batch_size
    };
    let data = data::load(&cfg.data, bs, eval_bs, tc.seed, device)?;
    let steps_per_epoch = data.train.batches_per_epoch() as u64;
    if steps_per_epoch == 0 {
        crate::bail_input!(
            "train.batch_size = {bs}: the training split has only {} examples (no full batch)",
            data.train.len()
        );
    }
    Ok((data, steps_per_epoch))
}

/// The run's optimizer steps for `steps_per_epoch`: `train.steps`, else `train.epochs` epochs.
pub fn total_steps(cfg: &RunConfig, steps_per_epoch: u64) -> u64 {
    if cfg.train.steps > 0 {
        cfg.train.steps
    } else {
        cfg.train.epochs * steps_per_epoch
    }
}

/// A schedule that cycles momentum sets every step's momentum, so `optim.momentum` is not
/// used: say so when it was changed from its default (a `--set optim.momentum=...` that would
/// otherwise change nothing without a word).
fn warn_unused_momentum(cfg: &RunConfig, schedule: &Schedule) {
    let default = crate::config::OptimConfig::default().momentum;
    if schedule.momentum(0).is_none() || cfg.optim.momentum == default {
        return;
    }
    let n = schedule.run_length().total_steps;
    let (lo, hi) = (0..n)
        .filter_map(|k| schedule.momentum(k))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), m| {
            (a.min(m), b.max(m))
        });
    crate::util::warn_once(&format!(
        "warning: optim.momentum = {} is not used: the {} schedule sets the momentum of every \
         step ({} to {}, recorded in steps.csv); set the schedule's momentum keys instead",
        fmt_f64(cfg.optim.momentum),
        schedule.kind(),
        short(lo),
        short(hi)
    ));
}

/// At most 4 decimals, trailing zeros trimmed (`0.85`, not `0.8500786592491092`).
pub(crate) fn short(x: f64) -> String {
    let s = format!("{x:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The batch size must be a multiple of the number of processes `world` that split each
/// batch; `how` names what asked for them (`--nproc 2`, or `a run over 2 processes`).
pub fn check_batch_split(cfg: &RunConfig, world: usize, how: &str) -> Result<()> {
    let b = cfg.train.batch_size;
    check_split(&format!("train.batch_size = {b}"), b, world, how)?;
    let g = cfg.model.ghost_batch;
    if g > 0 && (b / world) % g != 0 {
        return Err(input_error(format!(
            "model.ghost_batch = {g}: {how} gives each process {} examples of every batch, not a \
             whole number of ghost batches",
            b / world
        )));
    }
    Ok(())
}

/// The batch size `batch` (given as `what`, e.g. `--batch 64`) must be a multiple of the
/// `world` processes that `how` asks to split it over.
pub fn check_split(what: &str, batch: usize, world: usize, how: &str) -> Result<()> {
    if batch % world != 0 {
        return Err(input_error(format!(
            "{what}: {how} splits each batch over {world} processes; use a batch size that \
             {world} divides"
        )));
    }
    Ok(())
}

/// A run over `world` > 1 processes trains on CPUs: this build's collectives are Gloo's, and
/// its ranks would all take the same GPU (NCCL and one GPU per local rank are not built
/// yet). Refused with what to set, rather than run untested.
pub fn check_world_device(device: tch::Device, world: usize) -> Result<()> {
    if world > 1 && device.is_cuda() {
        return Err(input_error(format!(
            "train.device resolves to {} for a run over {world} processes: multi-process \
             training in this build runs on CPUs (Gloo; NCCL for GPUs is not built yet, see \
             `lrlab info`); set train.device = \"cpu\", or train on the GPU in one process",
            crate::train::device::device_name(device)
        )));
    }
    Ok(())
}

/// A run over `world` processes splits every batch over them: the batch size must be a
/// multiple of `world`, and an epoch's last batch must leave no rank without examples.
pub fn check_world(cfg: &RunConfig, train_examples: usize, world: usize) -> Result<()> {
    check_batch_split(cfg, world, &format!("a run over {world} processes"))?;
    let b = cfg.train.batch_size;
    let last = train_examples % b;
    if !cfg.data.drop_last && last > 0 && last < world {
        return Err(input_error(format!(
            "the last batch of an epoch holds {last} of the {train_examples} training examples, \
             fewer than the {world} processes: set data.drop_last = true"
        )));
    }
    Ok(())
}

/// The default output folder of a command on CONFIG: `out/<config file stem><suffix>`
/// (`lrlab train`: no suffix; `lrlab find-lr`: `-lr_find`), made a safe folder name
/// ([`crate::util::sanitize`]) so that it stays inside `out/`.
pub fn default_out(config: &Path, suffix: &str) -> PathBuf {
    let stem = config
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
    PathBuf::from("out").join(crate::util::sanitize(&format!("{stem}{suffix}")))
}

/// A progress bar over `total` steps, drawn only when enabled and stderr is a terminal.
pub fn progress_bar(enabled: bool, total: u64, pos: u64) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !enabled || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps {msg} [{elapsed_precise} < {eta}] {per_sec}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_position(pos);
    Some(bar)
}

#[cfg(test)]
mod tests {
    #[test]
    fn several_processes_on_a_gpu_are_refused_until_nccl() {
        use tch::Device;
        super::check_world_device(Device::Cpu, 4).unwrap();
        super::check_world_device(Device::Cuda(0), 1).unwrap();
        let e = super::check_world_device(Device::Cuda(0), 2).unwrap_err();
        assert!(crate::is_input_error(&e));
        assert!(e.to_string().contains("train.device = \"cpu\""), "{e}");
    }
}
