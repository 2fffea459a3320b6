//! `lrlab train`'s run: the folder checked, locked and marked, an attempt prepared (the
//! checkpoint restored, metric-driven schedules replayed, `meta.json` started, the logs cut
//! back to the checkpoint) and handed to the loop ([`super::run_loop`]); a run folder is
//! resumed from its checkpoint. Also the checks of a run over several processes.

use super::checkpoint::{self, Progress};
use super::device::device_name;
use super::hf_lr;
use super::logs::Logs;
use super::run_loop::Loop;
use super::setup::{check_world, check_world_device, progress_bar, short, Setup};
use super::step::Stepper;
use crate::config::RunConfig;
use crate::error::input_error;
use crate::models;
use crate::run::{self as run_dir, Meta, Resize, State, Status};
use crate::schedule::plateau::EvalMetrics;
use crate::schedule::Schedule;
use crate::util::write_atomic;
use anyhow::{Context, Result};
use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;
use tch::nn::VarStore;

pub use super::run_loop::{Outcome, RunOptions};

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
        check_world_device(setup.device, g.world())?;
        if writer && g.world() > 1 && cfg.model.has_batch_norm() {
            // As DDP without SyncBatchNorm: said up front, not only in the README.
            crate::util::warn_once(&format!(
                "note: {} has batch norm: each of the {} processes normalises by its own {} \
                 images of every batch of {} (as DDP without SyncBatchNorm), so the run differs \
                 from one process's, slightly and not only by rounding (model.ghost_batch does \
                 the same in one process)",
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
        let world = opts.group.as_ref().map_or(1, |g| g.world());
        let resized_from = check_checkpoint_world(out, world, opts.allow_resize)?;
        if let Some(old) = resized_from.filter(|_| writer) {
            crate::util::warn_once(&format!(
                "note: {}: resuming over {world} process(es) a run checkpointed over {old} \
                 (--allow-resize): the global batch, the steps and the data order stay; each \
                 process's share of a batch changes{}",
                out.display(),
                // A ghost batch fixes the examples each normalisation sees, whatever the world.
                if cfg.model.has_batch_norm() && cfg.model.ghost_batch == 0 {
                    ", and with it the examples each batch norm normalises over"
                } else {
                    ""
                }
            ));
        }
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
fn rank_hosts(group: Option<&crate::distributed::Group>) -> Result<Vec<String>> {
    let host = crate::util::hostname();
    let Some(g) = group else {
        return Ok(vec![host]);
    };
    g.store_set(&format!("host/{}", g.rank()), &host)?;
    (0..g.world())
        .map(|r| g.store_get(&format!("host/{r}")))
        .collect()
}

/// A run folder whose checkpoint was written by a run over a different number of processes
/// is refused unless `allow_resize`: resuming it over `world` changes how every batch is
/// split (the global batch, the step count and the data order stay; each process's share,
/// and with batch norm the groups its statistics are taken over, change). The number comes
/// from `meta.json` (`world_size`, 1 in folders written before it existed); a finished run
/// is not refused (nothing would be trained). Returns the checkpoint's number when it differs
/// and `allow_resize` lets the run resume.
pub fn check_checkpoint_world(
    out: &Path,
    world: usize,
    allow_resize: bool,
) -> Result<Option<usize>> {
    if !out.join(checkpoint::CHECKPOINT).exists() {
        return Ok(None);
    }
    if Status::read(out).is_some_and(|s| s.status.is_final()) {
        return Ok(None);
    }
    let old = Meta::read_ok(out).and_then(|m| m.world_size).unwrap_or(1) as usize;
    if old != world && !allow_resize {
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
             share of a batch would differ): {fix}, or resume it with --allow-resize (the \
             global batch, the steps and the data order stay), or use another --out",
            out.display(),
            how(old),
            how(world)
        )));
    }
    Ok((old != world).then_some(old))
}

fn train_locked(
    cfg: &RunConfig,
    mut setup: Setup,
    out: &Path,
    opts: &RunOptions,
) -> Result<Outcome> {
    let group = opts.group.as_deref();
    let writer = group.is_none_or(|g| g.rank() == 0);
    let mut stepper = Stepper::new(cfg, &setup, group)?;
    // The Hessian-free LR estimate reads the weights around the optimizer steps.
    let mut hf = hf_lr::Tracker::for_config(&stepper.vs, cfg);
    let progress = restore(out, &mut stepper, &mut hf, writer)?;
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
    // Every rank starts from rank 0's weights and buffers, as DDP does.
    stepper.broadcast()?;
    let meta = start_meta(cfg, &setup, &stepper.vs, opts, &progress, out)?;
    if writer {
        meta.write(out)?;
    }
    Status::new(State::Running, "", progress.epoch, progress.step).write_if(writer, out)?;
    let logs = Logs::open(writer, out, &progress, hf.as_ref())?;
    let snapshot_steps: HashSet<u64> = if cfg.train.snapshots == crate::config::Snapshots::Restarts
    {
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
        stepper,
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
    stepper: &mut Stepper,
    hf: &mut Option<hf_lr::Tracker>,
    writer: bool,
) -> Result<Option<Progress>> {
    let Some(ck) = checkpoint::load(out)? else {
        return Ok(None);
    };
    checkpoint::restore_weights(&stepper.vs, &ck.tensors)?;
    stepper
        .optim
        .load_state(&ck.tensors, ck.progress.optim_steps)?;
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
    let world = group.map_or(1, |g| g.world()) as u64;
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
        world_size: Some(world),
        resizes: {
            // A resume over another number of processes is recorded where it happened.
            let mut r = old.resizes.clone();
            match old.world_size {
                Some(from) if from != world && progress.step > 0 => r.push(Resize {
                    step: progress.step,
                    from,
                    to: world,
                }),
                _ => {}
            }
            r
        },
        backend: Some(group.map_or("none", |g| g.backend().name()).into()),
        hosts: rank_hosts(group)?,
        ..Meta::marker()
    })
}
