//! The training loop of one attempt at a run: for every optimizer step `k`, evaluate the
//! schedule at `k` and step ([`super::step::Stepper`]); log; at epoch ends evaluate, append
//! `epochs.csv` and checkpoint atomically; a stop or a divergence ends the attempt with its
//! state recorded. [`super::trainer`] prepares the attempt (folder, checkpoint, `meta.json`).

use super::checkpoint::{self, Progress};
use super::eval::{evaluate, Metrics};
use super::hf_lr;
use super::logs::{flush, Logs, PendingRow};
use super::setup::Setup;
use super::step::Stepper;
use crate::config::RunConfig;
use crate::models;
use crate::run::{self as run_dir, EpochRow, Meta, State, Status};
use crate::schedule::plateau::EvalMetrics;
use anyhow::Result;
use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;
use tch::{Kind, Tensor};

/// How a call to [`super::trainer::run`] ended.
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
    pub group: Option<std::rc::Rc<crate::distributed::Group>>,
    /// Resume a checkpoint written over another number of processes (`--allow-resize`).
    pub allow_resize: bool,
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
pub(super) struct Loop<'a> {
    pub(super) cfg: &'a RunConfig,
    pub(super) setup: Setup,
    pub(super) out: &'a Path,
    pub(super) opts: &'a RunOptions,
    pub(super) group: Option<&'a crate::distributed::Group>,
    /// This process writes the run folder (one process, or rank 0).
    pub(super) writer: bool,
    /// The model, its optimizer and the gradient synchronisation: the step.
    pub(super) stepper: Stepper<'a>,
    /// The Hessian-free LR estimate, when `train.hf_lr_every` is set.
    pub(super) hf: Option<hf_lr::Tracker>,
    pub(super) logs: Logs,
    pub(super) bar: Option<indicatif::ProgressBar>,
    /// Steps trained but not yet logged: their losses are read in one device sync.
    pub(super) pending: Vec<PendingRow>,
    /// Steps after which SGDR snapshots are saved (`train.snapshots = "restarts"`).
    pub(super) snapshot_steps: HashSet<u64>,
    pub(super) attempt_start: Instant,
    /// When the last checkpoint was written (for `train.checkpoint_every` as a duration).
    pub(super) last_checkpoint: Instant,
    pub(super) meta: Meta,
    /// `meta.json`'s `completions` before this attempt.
    pub(super) completions: u64,
    pub(super) resumed_from: u64,
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

impl Loop<'_> {
    /// Wall-clock seconds of training: earlier attempts' plus this one's.
    fn elapsed(&self, p: &Progress) -> f64 {
        p.elapsed + self.attempt_start.elapsed().as_secs_f64()
    }

    /// The epochs from `progress` on, until the run ends, diverges or is stopped.
    pub(super) fn run(&mut self, mut progress: Progress) -> Result<Outcome> {
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
                    optim_steps: self.stepper.optim.steps,
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
                optim_steps: self.stepper.optim.steps,
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
        let mut s = self.stepper.optim.state();
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
            stepper,
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
                    let (total, layers) = stepper.curvature(&h.params(), &batch, s)?;
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
            let (loss, logits) = stepper.step(&batch, s, lr, momentum)?;
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
                    &out.join(crate::run::SNAPSHOTS)
                        .join(format!("step{:08}.safetensors", *step)),
                    &stepper.vs,
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
        let (vs, cfg, setup) = (&self.stepper.vs, self.cfg, &self.setup);
        let saved = models::eval_bn_stats(vs, &cfg.model, step);
        let m = match self.group {
            None => tch::autocast(setup.bf16, || {
                evaluate(self.stepper.model.net.as_ref(), &setup.data.eval)
            }),
            Some(g) => {
                g.broadcast_vars(vs, |v| !v.requires_grad())?;
                tch::autocast(setup.bf16, || {
                    super::eval::evaluate_sharded(
                        self.stepper.model.net.as_ref(),
                        &setup.data.eval,
                        g,
                    )
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
            checkpoint::save(self.out, &self.stepper.vs, &self.state(), progress)?;
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
