//! The training loop: for every optimizer step `k`, evaluate the schedule at `k`, set the
//! learning rate and momentum, forward, backward, step; log; at epoch ends evaluate, append
//! `epochs.csv` and checkpoint atomically. A run folder is resumed from its checkpoint.

use super::checkpoint::{self, Progress};
use super::device::{device_name, resolve_device, set_threads};
use super::eval::{evaluate, Metrics};
use super::hf_lr;
use super::optim::Optimizer;
use crate::config::RunConfig;
use crate::data::{self, Data};
use crate::error::input_error;
use crate::models;
use crate::run::{self as run_dir, CsvLog, EpochRow, Meta, State, Status, StepRow};
use crate::schedule::plateau::EvalMetrics;
use crate::schedule::{RunLength, Schedule};
use crate::util::{fmt_f64, write_atomic};
use anyhow::{Context, Result};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{nn::VarStore, Device, Kind, Reduction, Tensor};

/// How a call to [`run`] ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// All steps trained; final metrics of the last evaluation.
    Done(Option<Metrics>),
    /// The loss became non-finite or exceeded `train.diverge_loss` (a result, not a crash).
    Diverged(String),
    /// Stopped by SIGTERM, SIGINT or SIGUSR1 at a safe point, checkpointed: run again to resume.
    Interrupted,
    /// The folder already holds a finished run; nothing was done.
    AlreadyFinished(State),
}

/// Options of a training run besides its config.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Show a progress bar (only drawn when stderr is a terminal).
    pub progress: bool,
    /// Print one line per epoch to stderr.
    pub verbose: bool,
    /// Values a range test chose for `"auto"` schedule keys (recorded in `meta.json`).
    pub lr_find: Option<serde_json::Value>,
    /// This process's group when it is one rank of a run over several processes: it trains
    /// its share of every batch, and only rank 0 writes the run folder.
    pub group: Option<std::rc::Rc<crate::dist::Group>>,
}

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
        let device = resolve_device(&cfg.train.device)?;
        let bf16 = super::device::use_bf16(&cfg.train.precision, device)?;
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
fn short(x: f64) -> String {
    let s = format!("{x:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Build the model of a config on `device`, seeded, in the memory format the device prefers.
pub fn build_model(cfg: &RunConfig, setup: &Setup) -> Result<(VarStore, models::Model)> {
    tch::manual_seed(cfg.train.seed as i64);
    let vs = VarStore::new(setup.device);
    let model = models::build(
        &vs.root(),
        &cfg.model,
        setup.data.in_channels,
        setup.data.num_classes,
        setup.data.image_size,
    )?;
    // cuDNN and oneDNN (CPU) both run NHWC convolutions faster: 10-30% per CPU training step
    // here (LeNet, the Caffe net, resnet20/56; `lrlab bench train`). The loader's batches are
    // channels-last too.
    models::weights_to_channels_last(&vs);
    Ok((vs, model))
}

/// The forward pass of step `step` on `batch` (libtorch's generator seeded for the step, under
/// bf16 autocast when `bf16`) and its loss: cross-entropy with the run's label smoothing, in
/// f32. Returns the loss (with its graph) and the logits.
fn step_loss(
    cfg: &RunConfig,
    model: &models::Model,
    batch: &data::Batch,
    bf16: bool,
    step: u64,
) -> (Tensor, Tensor) {
    tch::manual_seed(step_seed(cfg.train.seed, step));
    // A rank's dropout keeps its rows of the whole batch's mask.
    let _part = models::init::BatchPart::set(batch.part);
    let logits = tch::autocast(bf16, || model.net.forward_t(&batch.images, true));
    let loss = logits.to_kind(Kind::Float).cross_entropy_loss::<Tensor>(
        &batch.labels,
        None,
        Reduction::Mean,
        -100,
        cfg.train.label_smoothing,
    );
    (loss, logits)
}

pub use super::sync::GradSync;

/// One optimizer step of run `cfg` at step `step`: libtorch's generator seeded for the step
/// (dropout), the forward pass under bf16 autocast when `bf16`, cross-entropy with the run's
/// label smoothing, backward, the gradient synchronisation `sync` (one process: none), the
/// run's gradient clipping, the update with `lr` and `momentum`. Returns the loss (over
/// several processes: the global batch's mean) and the logits, detached. The range test and
/// `lrlab hf-lr` step with it too, so that what they measure is the run as configured. Fails
/// only when a collective fails (a peer died or timed out).
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    cfg: &RunConfig,
    model: &models::Model,
    optim: &mut Optimizer,
    batch: &data::Batch,
    bf16: bool,
    step: u64,
    lr: f64,
    momentum: f64,
    sync: &GradSync,
) -> Result<(Tensor, Tensor)> {
    let tc = &cfg.train;
    let (loss, logits) = step_loss(cfg, model, batch, bf16, step);
    optim.zero_grad();
    let n = batch.labels.size()[0] as usize;
    let synced = sync.backward(
        &loss,
        n,
        || optim.grads(),
        crate::train::stop::requested(),
        super::sync::BUCKET_BYTES,
    )?;
    // A stop requested on any rank stops every rank after this same step (with a
    // checkpoint): the loop reads the value that travelled, not its own flag.
    if synced.stop {
        crate::train::stop::stop_due();
    }
    if synced.checkpoint {
        crate::train::stop::checkpoint_due();
    }
    let loss = synced.loss;
    if tc.grad_clip > 0.0 {
        optim.clip_grad_norm(tc.grad_clip);
    }
    optim.step(lr, momentum);
    Ok((loss, logits.detach()))
}

/// The curvature along the gradient (gᵀg / gᵀHg, [`hf_lr::curvature`]) of the loss of `batch`
/// at the current weights, for `train.hf_lr_every`: the forward pass as the step's own (train
/// mode, the step's dropout seed, label smoothing) but in fp32, without weight decay (the
/// optimizer's). The batch-norm running statistics this forward pass moves are put back, and
/// no `.grad` is touched, so the training goes on exactly as without it. A rank of a
/// multi-process run measures the global batch's ([`hf_lr::curvature_over`]).
pub fn curvature_at(
    cfg: &RunConfig,
    vs: &VarStore,
    model: &models::Model,
    params: &[(String, Tensor)],
    batch: &data::Batch,
    step: u64,
    sync: &GradSync,
) -> Result<(hf_lr::Terms, Vec<(String, hf_lr::Terms)>)> {
    let buffers: Vec<(String, Tensor)> = tch::no_grad(|| {
        vs.variables()
            .into_iter()
            .filter(|(_, v)| !v.requires_grad())
            .map(|(n, v)| (n, v.copy()))
            .collect()
    });
    let (loss, _) = step_loss(cfg, model, batch, false, step);
    let n = batch.labels.size()[0] as usize;
    let c = match sync {
        GradSync::Local => Ok(hf_lr::curvature(&loss, params)),
        GradSync::Ranks(group) => {
            hf_lr::curvature_over(&loss, params, n, &mut |ts| group.all_reduce_sum(ts))
        }
    };
    models::restore_vars(vs, &buffers);
    c
}

/// Seed of libtorch's generator for step `k`: dropout and any other torch randomness are a
/// function of (seed, step), so a resumed run draws the same numbers.
pub(crate) fn step_seed(seed: u64, step: u64) -> i64 {
    let mut x = seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((x ^ (x >> 31)) >> 1) as i64
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

struct PendingRow {
    step: u64,
    epoch: f64,
    lr: f64,
    momentum: f64,
    loss: Tensor,
    time: f64,
    log: bool,
}

/// Train the run `cfg` in folder `out`, resuming from its checkpoint if there is one.
pub fn run(cfg: &RunConfig, out: &Path, opts: &RunOptions) -> Result<Outcome> {
    let resolved = cfg.to_toml()?;
    // Installed first, so that a stop requested while the data loads still ends in a
    // clean interruption (exit 3) instead of death by the signal; the flag travels in the
    // first step's synchronisation.
    super::stop::flag()?;
    // Everything that can be rejected is checked before the folder is touched.
    let mut setup = Setup::new(cfg)?;
    let writer = opts.group.as_ref().is_none_or(|g| g.rank() == 0);
    if let Some(g) = &opts.group {
        check_world(cfg, setup.data.train.len(), g.world())?;
        if writer && g.world() > 1 && cfg.model.has_batch_norm() {
            // As DDP without SyncBatchNorm: said up front, not only in the README.
            crate::util::warn_once(&format!(
                "note: {} has batch norm: each of the {} processes normalises by its own {} \
                 images of every batch of {} (as DDP without SyncBatchNorm), so the run differs \
                 from one process's, slightly and not only by rounding",
                cfg.model.arch,
                g.world(),
                cfg.train.batch_size / g.world(),
                cfg.train.batch_size
            ));
        }
        setup.data.train = setup.data.train.sharded(g.rank(), g.world());
        setup.data.eval = setup.data.eval.sharded(g.rank(), g.world());
    }
    run_dir::check_run_folder(out)?;
    let config_path = out.join(crate::run::CONFIG);
    if config_path.exists() {
        let old = std::fs::read_to_string(&config_path)
            .with_context(|| format!("cannot read {}", config_path.display()))?;
        if !crate::config::same_config(&old, &resolved) {
            return Err(input_error(format!(
                "{} holds a run with a different config{}; use another --out (or delete the \
                 folder)",
                out.display(),
                crate::config::differences_clause(&old, &resolved, 5)
            )));
        }
        if let Some(s) = Status::read(out) {
            if s.status.is_final() {
                return Ok(Outcome::AlreadyFinished(s.status));
            }
        }
        check_checkpoint_world(out, opts.group.as_ref().map_or(1, |g| g.world()))?;
    }
    if !writer {
        // Rank 0 prepares, locks and writes the folder; the others only read its checkpoint.
        return train_locked(cfg, setup, out, opts);
    }
    // Held, cleaned of stale temporaries, and marked as lrlab's before anything else.
    let lock = run_dir::RunLock::acquire(out)?;
    if !config_path.exists() {
        write_atomic(&config_path, resolved.as_bytes())?;
    }
    let result = train_locked(cfg, setup, out, opts);
    if let Err(e) = &result {
        let prev = Status::read(out);
        let _ = Status {
            status: State::Failed,
            reason: format!("{e:#}"),
            epoch: prev.as_ref().map(|s| s.epoch).unwrap_or(0),
            step: prev.as_ref().map(|s| s.step).unwrap_or(0),
            updated: crate::util::now(),
            learned: None,
        }
        .write(out);
    }
    drop(lock);
    result
}

/// The host of every rank, in rank order (`[this host]` for one process), through the
/// rendezvous store.
fn rank_hosts(group: Option<&crate::dist::Group>) -> Result<Vec<String>> {
    let host = crate::util::hostname();
    let Some(g) = group else {
        return Ok(vec![host]);
    };
    g.store_set(&format!("host/{}", g.rank()), &host)?;
    (0..g.world())
        .map(|r| g.store_get(&format!("host/{r}")))
        .collect()
}

/// Overwrite the variables of `vs` that `keep` selects with rank 0's (in name order, the same
/// on every rank).
pub(crate) fn broadcast_vars(
    g: &crate::dist::Group,
    vs: &VarStore,
    keep: impl Fn(&Tensor) -> bool,
) -> Result<()> {
    let mut vars: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(_, v)| keep(v))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let refs: Vec<&Tensor> = vars.iter().map(|(_, t)| t).collect();
    tch::no_grad(|| g.broadcast(&refs, 0))
}

/// The batch size must be a multiple of the number of processes `world` that split each
/// batch; `how` names what asked for them (`--nproc 2`, or `a run over 2 processes`).
pub fn check_batch_split(cfg: &RunConfig, world: usize, how: &str) -> Result<()> {
    let b = cfg.train.batch_size;
    check_split(&format!("train.batch_size = {b}"), b, world, how)
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

/// A run folder whose checkpoint was written by a run over a different number of processes
/// is refused: resuming it over `world` would change the run (each process keeps its own
/// batch-norm statistics, and each rank's share of a batch would differ). The number comes
/// from `meta.json` (`world_size`, 1 in folders written before it existed); a finished run
/// is not refused (nothing would be trained).
pub fn check_checkpoint_world(out: &Path, world: usize) -> Result<()> {
    if !out.join(checkpoint::CHECKPOINT).exists() {
        return Ok(());
    }
    if Status::read(out).is_some_and(|s| s.status.is_final()) {
        return Ok(());
    }
    let old = Meta::read_ok(out).and_then(|m| m.world_size).unwrap_or(1) as usize;
    if old != world {
        let how = |n: usize| {
            if n == 1 {
                "one process".to_string()
            } else {
                format!("{n} processes")
            }
        };
        let fix = if old == 1 {
            "run it without --nproc".to_string()
        } else {
            format!("run it with --nproc {old}")
        };
        return Err(input_error(format!(
            "{}: its checkpoint was written by a run over {}, and resuming it over {} would \
             change the run (batch-norm statistics are kept per process, and each process's \
             share of a batch would differ): {fix}, or use another --out",
            out.display(),
            how(old),
            how(world)
        )));
    }
    Ok(())
}

/// The run folder's logs, open for appending (on rank 0; the other ranks' rows go nowhere).
struct Logs {
    steps: CsvLog,
    epochs: CsvLog,
    /// `hf_lr.csv` and `hf_lr_layers.csv`, when `train.hf_lr_every` is set.
    hf: Option<(CsvLog, CsvLog)>,
}

impl Logs {
    /// Open the logs of `out`, cut back to what the checkpoint at `progress` holds.
    fn open(
        writer: bool,
        out: &Path,
        progress: &Progress,
        hf: Option<&hf_lr::Tracker>,
    ) -> Result<Logs> {
        let steps = CsvLog::open_if(
            writer,
            &out.join(crate::run::STEPS),
            run_dir::STEPS_HEADER,
            progress.step,
        )?;
        let epochs = CsvLog::open_if(
            writer,
            &out.join(crate::run::EPOCHS),
            run_dir::EPOCHS_HEADER,
            progress.epoch + 1,
        )?;
        // A window's row is written once θ_{s+2k} exists (k the stride): rows up to step
        // P − 2k belong to a checkpoint at step P.
        let hf = match hf {
            Some(h) => {
                let keep = (progress.step + 1).saturating_sub(2 * h.stride());
                Some((
                    CsvLog::open_if(
                        writer,
                        &out.join(crate::run::HF_LR),
                        &hf_lr::header(h.caffe()),
                        keep,
                    )?,
                    CsvLog::open_if(
                        writer,
                        &out.join(crate::run::HF_LR_LAYERS),
                        &hf_lr::layers_header(h.caffe()),
                        keep,
                    )?,
                ))
            }
            None => None,
        };
        Ok(Logs { steps, epochs, hf })
    }

    /// Flush every log to disk (before a checkpoint, so that the rows it covers are there).
    fn sync(&mut self) -> Result<()> {
        self.steps.sync()?;
        self.epochs.sync()?;
        if let Some((log, layers)) = &mut self.hf {
            log.sync()?;
            layers.sync()?;
        }
        Ok(())
    }
}

/// What one pass over (the rest of) an epoch's batches left.
struct EpochRun {
    /// Batches of the epoch trained so far, earlier attempts included.
    batch: u64,
    /// This rank's sums over the epoch's trained examples: loss, correct predictions
    /// (device scalars) and the count.
    loss_sum: Tensor,
    correct: Tensor,
    seen: u64,
    /// Training seconds of the epoch, earlier attempts included (for images/s).
    train_secs: f64,
    /// A stop was requested: the pass ended after the step it was seen at.
    interrupted: bool,
    /// A mid-epoch checkpoint is due (`train.checkpoint_every`): the pass ended after the
    /// step, to be continued from the checkpoint's position.
    checkpoint: bool,
    /// Why the run diverged, when a logged loss did.
    diverged: Option<String>,
}

/// One attempt at a run: what the named parts of the loop share. The parts, in order:
/// [`Loop::train_epoch`] (the steps), [`Loop::epoch_sums`] (over the ranks),
/// [`Loop::evaluate`], [`Loop::end_epoch`] (the epoch's row and checkpoint); a stop or a
/// divergence ends the attempt through [`Loop::interrupt`] or [`Loop::diverge`].
struct Loop<'a> {
    cfg: &'a RunConfig,
    setup: Setup,
    out: &'a Path,
    opts: &'a RunOptions,
    group: Option<&'a crate::dist::Group>,
    /// This process writes the run folder (one process, or rank 0).
    writer: bool,
    sync: GradSync<'a>,
    vs: VarStore,
    model: models::Model,
    optim: Optimizer,
    /// The Hessian-free LR estimate, when `train.hf_lr_every` is set.
    hf: Option<hf_lr::Tracker>,
    logs: Logs,
    bar: Option<indicatif::ProgressBar>,
    /// Steps trained but not yet logged: their losses are read in one device sync.
    pending: Vec<PendingRow>,
    /// Steps after which SGDR snapshots are saved (`train.snapshots = "restarts"`).
    snapshot_steps: HashSet<u64>,
    attempt_start: Instant,
    /// When the last checkpoint was written (for `train.checkpoint_every` as a duration).
    last_checkpoint: Instant,
    meta: Meta,
    /// `meta.json`'s `completions` before this attempt.
    completions: u64,
    resumed_from: u64,
}

fn train_locked(
    cfg: &RunConfig,
    mut setup: Setup,
    out: &Path,
    opts: &RunOptions,
) -> Result<Outcome> {
    let group = opts.group.as_deref();
    let writer = group.is_none_or(|g| g.rank() == 0);
    let (vs, model) = build_model(cfg, &setup)?;
    let mut optim = Optimizer::new(&vs, &cfg.optim)?;
    // The Hessian-free LR estimate reads the weights around the optimizer steps.
    let mut hf = hf_lr::Tracker::for_config(&vs, cfg);
    let progress = restore(out, &vs, &mut optim, &mut hf, writer)?;
    if let Some(p) = progress.as_ref().filter(|_| opts.verbose && writer) {
        eprintln!(
            "resuming from step {} of {} (epoch {}/{}, batch {})",
            p.step,
            setup.total_steps,
            p.epoch + 1,
            setup.epochs(),
            p.batch
        );
    }
    let progress = progress.unwrap_or_default();
    if setup.schedule.uses_metrics() {
        replay_evaluations(out, progress.epoch, &mut setup.schedule)?;
    }
    if let Some(g) = group {
        // Every rank starts from rank 0's weights and buffers, as DDP does.
        broadcast_vars(g, &vs, |_| true)?;
    }
    if setup.device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    if setup.bf16 {
        super::device::set_autocast_bf16()?;
    }
    let meta = start_meta(cfg, &setup, &vs, opts, &progress, out)?;
    if writer {
        meta.write(out)?;
    }
    Status::new(State::Running, "", progress.epoch, progress.step).write_if(writer, out)?;
    let logs = Logs::open(writer, out, &progress, hf.as_ref())?;
    let snapshot_steps: HashSet<u64> = if cfg.train.snapshots == "restarts" {
        let mut steps: HashSet<u64> = setup.schedule.cycle_ends().into_iter().collect();
        // The final model is a snapshot too, so that "the last snapshot" is always it.
        if steps.insert(setup.total_steps) && writer {
            let last = steps
                .iter()
                .filter(|&&s| s < setup.total_steps)
                .max()
                .copied();
            let spe = setup.steps_per_epoch as f64;
            crate::util::warn_once(&format!(
                "warning: train.snapshots = \"restarts\", but the run ends inside a cycle \
                 (step {}, epoch {}; {}): its final model is saved as a snapshot too, and an \
                 ensemble of the last M snapshots includes this mid-cycle model; end the run \
                 at a restart to read the ensembles as the SGDR paper does",
                setup.total_steps,
                short(setup.total_steps as f64 / spe),
                match last {
                    Some(l) => format!(
                        "the last restart is at step {l}, epoch {}",
                        short(l as f64 / spe)
                    ),
                    None => "no cycle ends before it".to_string(),
                }
            ));
        }
        steps
    } else {
        HashSet::new()
    };
    let bar = progress_bar(opts.progress, setup.total_steps, progress.step);
    let mut lp = Loop {
        cfg,
        out,
        opts,
        group,
        writer,
        sync: match group {
            Some(g) => GradSync::Ranks(g),
            None => GradSync::Local,
        },
        vs,
        model,
        optim,
        hf,
        logs,
        bar,
        pending: Vec::new(),
        snapshot_steps,
        attempt_start: Instant::now(),
        last_checkpoint: Instant::now(),
        completions: meta.completions.unwrap_or(0),
        meta,
        resumed_from: progress.step,
        setup,
    };
    lp.run(progress)
}

/// Load the checkpoint of `out` into the weights, the optimizer and the estimate, if there is
/// one, and return where it stands.
fn restore(
    out: &Path,
    vs: &VarStore,
    optim: &mut Optimizer,
    hf: &mut Option<hf_lr::Tracker>,
    writer: bool,
) -> Result<Option<Progress>> {
    let Some(ck) = checkpoint::load(out)? else {
        return Ok(None);
    };
    checkpoint::restore_weights(vs, &ck.tensors)?;
    optim.load_state(&ck.tensors, ck.progress.optim_steps)?;
    if let Some(h) = hf {
        h.load_state(
            &ck.tensors,
            ck.progress.step,
            ck.progress.hf_lr_ema,
            ck.progress.hf_lr_caffe_ema,
        )?;
    }
    Ok(Some(ck.progress.for_rank(writer)))
}

/// An epoch's metrics for [`Schedule::record_eval`]: the training loss and accuracy, and the
/// evaluation's when the epoch had one.
fn eval_metrics(train: (f64, f64), m: Option<Metrics>) -> EvalMetrics {
    EvalMetrics {
        test_loss: m.map(|m| m.loss),
        test_acc: m.map(|m| m.acc),
        train_loss: Some(train.0),
        train_acc: Some(train.1),
    }
}

/// Record the evaluations of the first `epochs` epochs of `out/epochs.csv` (the rows the
/// checkpoint covers) into a metric-driven schedule: resuming replays what the interrupted
/// attempt saw, so the learning rates continue exactly. The values are read back at the
/// precision they were logged with, which round-trips f64.
fn replay_evaluations(out: &Path, epochs: u64, schedule: &mut Schedule) -> Result<()> {
    let path = out.join(crate::run::EPOCHS);
    for r in run_dir::read_epochs(&path)? {
        if r.epoch > epochs {
            break;
        }
        schedule.record_eval(
            r.step,
            &EvalMetrics {
                test_loss: r.test_loss,
                test_acc: r.test_acc,
                train_loss: Some(r.train_loss),
                train_acc: Some(r.train_acc),
            },
        );
    }
    Ok(())
}

/// `meta.json` at the start of an attempt: kept across attempts (`started`, `attempts`,
/// `completions`), the rest describes this one.
fn start_meta(
    cfg: &RunConfig,
    setup: &Setup,
    vs: &VarStore,
    opts: &RunOptions,
    progress: &Progress,
    out: &Path,
) -> Result<Meta> {
    let group = opts.group.as_deref();
    let old = Meta::read_ok(out).unwrap_or_default();
    Ok(Meta {
        libtorch_version: Some(crate::train::device::libtorch_version()),
        device: Some(device_name(setup.device)),
        threads: Some(setup.threads as u64),
        seed: Some(cfg.train.seed),
        host: Some(crate::util::hostname()),
        started: Some(old.started.unwrap_or_else(crate::util::now)),
        finished: None,
        attempts: Some(old.attempts.unwrap_or(0) + 1),
        completions: Some(old.completions.unwrap_or(0)),
        steps_per_epoch: Some(setup.steps_per_epoch),
        total_steps: Some(setup.total_steps),
        epochs: Some(setup.epochs()),
        train_examples: Some(setup.data.train.len() as u64),
        eval_examples: Some(setup.data.eval.len() as u64),
        eval_split: Some(setup.data.eval_name.to_string()),
        data_path: cfg.data.path().map(|p| p.display().to_string()),
        parameters: Some(models::count_params(vs) as u64),
        schedule: Some(setup.schedule.kind().to_string()),
        // Where each step's momentum (AdamW: beta1) came from; the values are in steps.csv.
        momentum_from: Some(
            if setup.schedule.momentum(0).is_some() {
                "schedule"
            } else {
                "optim.momentum"
            }
            .into(),
        ),
        resumed_from_step: Some(progress.step),
        precision: Some(if setup.bf16 { "bf16" } else { "fp32" }.into()),
        lr_find: opts.lr_find.clone(),
        world_size: Some(group.map_or(1, |g| g.world()) as u64),
        backend: Some(if group.is_some() { "gloo" } else { "none" }.into()),
        hosts: rank_hosts(group)?,
        ..Meta::marker()
    })
}

/// Read the pending losses (one device sync), write the logged rows to `log`, and say why
/// the run diverged if a loss did (`diverge_loss`).
fn flush(
    pending: &mut Vec<PendingRow>,
    log: &mut CsvLog,
    diverge_loss: f64,
) -> Result<Option<String>> {
    if pending.is_empty() {
        return Ok(None);
    }
    let losses: Vec<f64> = Vec::<f64>::try_from(
        Tensor::stack(
            &pending
                .iter()
                .map(|r| r.loss.to_kind(Kind::Double))
                .collect::<Vec<_>>(),
            0,
        )
        .to_device(Device::Cpu),
    )?;
    let mut diverged = None;
    for (r, loss) in pending.iter().zip(losses) {
        if r.log {
            let row = StepRow {
                step: r.step,
                epoch: r.epoch,
                lr: r.lr,
                momentum: r.momentum,
                loss,
                time_s: Some(r.time),
            };
            log.row(&row.fields())?;
        }
        if !loss.is_finite() || loss > diverge_loss {
            diverged = Some(format!(
                "training loss {loss} at step {} (lr {}) exceeds train.diverge_loss = {diverge_loss} or is not finite",
                r.step, r.lr
            ));
            break;
        }
    }
    pending.clear();
    Ok(diverged)
}

impl Loop<'_> {
    /// Wall-clock seconds of training: earlier attempts' plus this one's.
    fn elapsed(&self, p: &Progress) -> f64 {
        p.elapsed + self.attempt_start.elapsed().as_secs_f64()
    }

    /// The epochs from `progress` on, until the run ends, diverges or is stopped.
    fn run(&mut self, mut progress: Progress) -> Result<Outcome> {
        let (k, total, epochs) = (
            self.setup.steps_per_epoch,
            self.setup.total_steps,
            self.setup.epochs(),
        );
        let mut step = progress.step;
        let mut last_metrics: Option<Metrics> = None;
        let mut epoch = progress.epoch;
        while epoch < epochs {
            let e = self.train_epoch(epoch, &progress, &mut step)?;
            if let Some(reason) = e.diverged {
                return self.diverge(epoch, step, reason);
            }
            let (loss_sum, correct, seen) = self.epoch_sums(&e)?;
            let epoch_done = e.batch >= k || step >= total;
            if (e.interrupted || e.checkpoint) && !epoch_done {
                let mid = Progress {
                    step,
                    epoch,
                    batch: e.batch,
                    optim_steps: self.optim.steps,
                    epoch_loss_sum: loss_sum,
                    epoch_correct: correct,
                    epoch_seen: seen,
                    elapsed: self.elapsed(&progress),
                    epoch_train_secs: e.train_secs,
                    hf_lr_ema: self.hf_ema(),
                    hf_lr_caffe_ema: self.hf_caffe_ema(),
                };
                if e.interrupted {
                    return self.interrupt(&mid);
                }
                // A mid-epoch checkpoint, then the epoch goes on from it exactly as a
                // resumed attempt would (same data position, the sums carried).
                self.checkpoint(&mid, State::Running, "")?;
                progress = mid.for_rank(self.writer);
                // `elapsed()` adds this attempt's clock: keep the sum where it is.
                progress.elapsed -= self.attempt_start.elapsed().as_secs_f64();
                continue;
            }
            let last = epoch + 1 == epochs;
            let metrics = if (epoch + 1) % self.cfg.train.eval_every == 0 || last {
                Some(self.evaluate(step)?)
            } else {
                None
            };
            if metrics.is_some() {
                last_metrics = metrics;
            }
            let time_now = self.elapsed(&progress);
            progress = Progress {
                step,
                epoch: epoch + 1,
                batch: 0,
                optim_steps: self.optim.steps,
                elapsed: time_now,
                hf_lr_ema: self.hf_ema(),
                hf_lr_caffe_ema: self.hf_caffe_ema(),
                ..Progress::default()
            };
            let train = (loss_sum / seen.max(1) as f64, correct / seen.max(1) as f64);
            // A metric-driven schedule (plateau) reads this epoch's values from the next step
            // on; a resumed run replays them from epochs.csv (`replay_evaluations`).
            self.setup
                .schedule
                .record_eval(step, &eval_metrics(train, metrics));
            self.end_epoch(&progress, train, seen, e.train_secs, metrics)?;
            // `elapsed()` adds this attempt's clock to `progress.elapsed`: keep the sum at
            // time_now.
            progress.elapsed -= self.attempt_start.elapsed().as_secs_f64();
            epoch += 1;
            if e.interrupted {
                // The stop came with the epoch's last step: its checkpoint is the one just
                // written.
                Status::new(State::Interrupted, STOPPED, epoch, step)
                    .write_if(self.writer, self.out)?;
                return Ok(Outcome::Interrupted);
            }
        }
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        self.finish_meta(step)?;
        let mut done = Status::new(State::Done, "", epochs, step);
        if self.writer {
            let verdict = run_dir::learned(
                &self.out.join(crate::run::EPOCHS),
                self.setup.data.num_classes as usize,
            )?;
            if let Some((learned, why)) = verdict {
                done.learned = Some(learned);
                done.reason = why;
            }
        }
        done.write_if(self.writer, self.out)?;
        Ok(Outcome::Done(last_metrics))
    }

    fn hf_ema(&self) -> f64 {
        self.hf.as_ref().map_or(0.0, |h| h.ema.value)
    }

    fn hf_caffe_ema(&self) -> Option<f64> {
        self.hf
            .as_ref()
            .filter(|h| h.caffe())
            .map(|h| h.ema_caffe.value)
    }

    /// What a checkpoint holds beside the weights: the optimizer's state and the estimate's.
    fn state(&self) -> Vec<(String, Tensor)> {
        let mut s = self.optim.state();
        if let Some(h) = &self.hf {
            s.extend(h.state());
        }
        s
    }

    /// Train epoch `epoch` from its batch `progress.batch` (the checkpoint's position) on,
    /// stepping `step`, until its end, the run's last step, a divergence or a stop.
    fn train_epoch(&mut self, epoch: u64, progress: &Progress, step: &mut u64) -> Result<EpochRun> {
        let Loop {
            cfg,
            setup,
            writer,
            sync,
            vs,
            model,
            optim,
            hf,
            logs,
            bar,
            pending,
            snapshot_steps,
            out,
            attempt_start,
            last_checkpoint,
            ..
        } = self;
        let (cfg, out): (&RunConfig, &Path) = (cfg, out);
        let tc = &cfg.train;
        let (k, total, epochs, device) = (
            setup.steps_per_epoch,
            setup.total_steps,
            setup.epochs(),
            setup.device,
        );
        let flush_every = if device.is_cuda() { 50 } else { 1 };
        let first_batch = progress.batch;
        let resumed_mid = first_batch > 0;
        let carried = |x: f64| if resumed_mid { x } else { 0.0 };
        let scalar = |x: f64| Tensor::from(x).to_kind(Kind::Double).to_device(device);
        let mut run = EpochRun {
            batch: first_batch,
            loss_sum: scalar(carried(progress.epoch_loss_sum)),
            correct: scalar(carried(progress.epoch_correct)),
            seen: if resumed_mid { progress.epoch_seen } else { 0 },
            train_secs: 0.0,
            interrupted: false,
            checkpoint: false,
            diverged: None,
        };
        let epoch_start = Instant::now();
        let every = &tc.checkpoint_every;
        for batch in setup.data.train.epoch(epoch, first_batch as usize) {
            if *step >= total {
                break;
            }
            let batch = batch?;
            let s = *step;
            let lr = setup.schedule.lr(s);
            let momentum = setup.schedule.momentum_or(s, cfg.optim.momentum);
            if let Some(h) = hf.as_mut() {
                if h.opens_window(s) {
                    let (total, layers) =
                        curvature_at(cfg, vs, model, &h.params(), &batch, s, sync)?;
                    h.set_curvature(s, total, &layers);
                }
            }
            // A checkpoint after this step (not after an epoch's last, which has its own):
            // every `n` steps, or once the interval has passed on any rank.
            let ends_epoch = run.batch + 1 >= k || s + 1 >= total;
            crate::train::stop::wish_checkpoint(
                !ends_epoch
                    && match every {
                        crate::config::Every::Steps(n) => *n > 0 && (s + 1) % n == 0,
                        crate::config::Every::Duration(_) => every
                            .seconds()
                            .is_some_and(|d| last_checkpoint.elapsed().as_secs_f64() >= d),
                    },
            );
            let (loss, logits) =
                train_step(cfg, model, optim, &batch, setup.bf16, s, lr, momentum, sync)?;
            if let Some(h) = hf.as_mut() {
                let e = h.after_step(s, |t| setup.schedule.lr(t));
                if let (Some(e), Some((log, layers_log))) = (e, logs.hf.as_mut()) {
                    log.row(&e.fields(k))?;
                    for row in e.layer_fields(h.layers()) {
                        layers_log.row(&row)?;
                    }
                }
            }
            let n = batch.labels.size()[0];
            run.loss_sum += loss.to_kind(Kind::Double) * n as f64;
            run.correct += logits
                .argmax(1, false)
                .eq_tensor(&batch.labels)
                .sum(Kind::Double);
            run.seen += n as u64;
            pending.push(PendingRow {
                step: s,
                epoch: s as f64 / k as f64,
                lr,
                momentum,
                loss,
                time: progress.elapsed + attempt_start.elapsed().as_secs_f64(),
                log: s % tc.log_every == 0,
            });
            *step += 1;
            run.batch += 1;
            if *writer && snapshot_steps.contains(&*step) {
                checkpoint::save_weights(
                    &out.join("snapshots")
                        .join(format!("step{:08}.safetensors", *step)),
                    vs,
                )?;
            }
            if pending.len() >= flush_every {
                run.diverged = flush(pending, &mut logs.steps, tc.diverge_loss)?;
                if run.diverged.is_some() {
                    break;
                }
            }
            if let Some(b) = bar.as_ref() {
                b.set_position(*step);
                b.set_message(format!("epoch {}/{epochs} lr {lr:.4}", epoch + 1));
            }
            if crate::train::stop::is_stop_due() {
                run.interrupted = true;
                break;
            }
            if crate::train::stop::take_checkpoint_due() {
                run.checkpoint = true;
                break;
            }
        }
        if run.diverged.is_none() {
            run.diverged = flush(pending, &mut logs.steps, tc.diverge_loss)?;
        }
        let secs_before = if resumed_mid {
            progress.epoch_train_secs
        } else {
            0.0
        };
        run.train_secs = secs_before + epoch_start.elapsed().as_secs_f64();
        Ok(run)
    }

    /// The epoch's loss sum, correct count and example count over every rank (the logged
    /// losses are already the global batches').
    fn epoch_sums(&self, e: &EpochRun) -> Result<(f64, f64, u64)> {
        let seen = match self.group {
            None => e.seen,
            Some(g) => {
                let n = Tensor::from(e.seen as f64)
                    .to_kind(Kind::Double)
                    .to_device(self.setup.device);
                g.all_reduce_sum(&[&e.loss_sum, &e.correct, &n])?;
                n.double_value(&[]) as u64
            }
        };
        Ok((
            f64::try_from(&e.loss_sum)?,
            f64::try_from(&e.correct)?,
            seen,
        ))
    }

    /// Evaluate after step `step` (sharded over the ranks, with rank 0's batch-norm
    /// statistics; with Caffe's bias-corrected statistics for the evaluation only when
    /// `model.bn_stats = "caffe"`: the checkpoint keeps torch's).
    fn evaluate(&self, step: u64) -> Result<Metrics> {
        let (vs, cfg, setup) = (&self.vs, self.cfg, &self.setup);
        let saved = models::eval_bn_stats(vs, &cfg.model, step);
        let m = match self.group {
            None => tch::autocast(setup.bf16, || {
                evaluate(self.model.net.as_ref(), &setup.data.eval)
            }),
            Some(g) => {
                broadcast_vars(g, vs, |v| !v.requires_grad())?;
                tch::autocast(setup.bf16, || {
                    super::eval::evaluate_sharded(self.model.net.as_ref(), &setup.data.eval, g)
                })
            }
        };
        models::restore_vars(vs, &saved);
        m
    }

    /// The end of an epoch at `progress`: its `epochs.csv` row (train loss and accuracy
    /// `train` over `seen` examples in `train_secs`, the evaluation's `metrics` if any), the
    /// logs flushed, the checkpoint, `status.json` and the epoch's line.
    fn end_epoch(
        &mut self,
        progress: &Progress,
        train: (f64, f64),
        seen: u64,
        train_secs: f64,
        metrics: Option<Metrics>,
    ) -> Result<()> {
        let (epoch, step) = (progress.epoch, progress.step);
        let (train_loss, train_acc) = train;
        let images_per_sec = seen as f64 / train_secs.max(1e-9);
        let row = EpochRow {
            epoch,
            step,
            lr: self.setup.schedule.lr(step.saturating_sub(1)),
            train_loss,
            train_acc,
            test_loss: metrics.map(|m| m.loss),
            test_acc: metrics.map(|m| m.acc),
            test_top5: metrics.map(|m| m.top5),
            time_s: progress.elapsed,
            images_per_sec,
        };
        self.logs.epochs.row(&row.fields())?;
        self.checkpoint(progress, State::Running, "")?;
        if self.opts.verbose && self.writer {
            let m = metrics
                // The printed names say which split was evaluated (`val` with data.val_split).
                .map(|m| {
                    let set = self.setup.data.eval_name;
                    format!(" {set}_loss {:.4} {set}_acc {:.4}", m.loss, m.acc)
                })
                .unwrap_or_default();
            let epochs = self.setup.epochs();
            let line = format!(
                "epoch {epoch}/{epochs} step {step} train_loss {train_loss:.4} train_acc {train_acc:.4}{m} ({images_per_sec:.0} img/s)"
            );
            match &self.bar {
                Some(b) => b.println(line),
                None => eprintln!("{line}"),
            }
        }
        Ok(())
    }

    /// The checkpoint at `progress` (an epoch's end, `train.checkpoint_every` inside one, or
    /// a stop): the logs synced first, then the checkpoint, then `status.json` as `status`
    /// with `reason`.
    fn checkpoint(&mut self, progress: &Progress, status: State, reason: &str) -> Result<()> {
        self.logs.sync()?;
        if self.writer {
            checkpoint::save(self.out, &self.vs, &self.state(), progress)?;
        }
        self.last_checkpoint = Instant::now();
        Status::new(status, reason, progress.epoch, progress.step).write_if(self.writer, self.out)
    }

    /// A stop mid-epoch: checkpoint at `progress` (the data position and the epoch's sums
    /// included) and end the attempt as interrupted.
    fn interrupt(&mut self, progress: &Progress) -> Result<Outcome> {
        self.checkpoint(progress, State::Interrupted, STOPPED)?;
        if let Some(b) = &self.bar {
            b.abandon();
        }
        Ok(Outcome::Interrupted)
    }

    /// `meta.json` at the end of the run (done or diverged at `step`).
    fn finish_meta(&mut self, step: u64) -> Result<()> {
        self.meta.finished = Some(crate::util::now());
        self.meta.completions = Some(completed(self.completions, step > self.resumed_from));
        if self.writer {
            self.meta.write(self.out)?;
        }
        Ok(())
    }

    /// A diverged loss ends the run as a result: the logs up to it, `meta.json`'s end and
    /// `status.json` saying why.
    fn diverge(&mut self, epoch: u64, step: u64, reason: String) -> Result<Outcome> {
        self.logs.sync()?;
        if let Some(b) = &self.bar {
            b.abandon();
        }
        self.finish_meta(step)?;
        Status::new(State::Diverged, &reason, epoch, step).write_if(self.writer, self.out)?;
        Ok(Outcome::Diverged(reason))
    }
}

/// `status.json`'s reason for an interrupted run.
const STOPPED: &str = "stopped by a signal; run again to resume";

/// `meta.json`'s `completions` once an attempt has reached the end of the run: the number of
/// attempts that trained the run's last step, so 1 for a run that never trained twice. An
/// attempt that trained nothing (its checkpoint was already the final one: the previous
/// attempt was killed before recording its end) counts only if no end was recorded yet.
fn completed(before: u64, trained: bool) -> u64 {
    if trained || before == 0 {
        before + 1
    } else {
        before
    }
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
