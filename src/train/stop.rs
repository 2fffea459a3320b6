//! Stopping at a safe point: SIGTERM, SIGINT and SIGUSR1 set one process-wide flag that the
//! training loop and the range test poll between steps. A run checkpoints and exits 3; a range
//! test writes nothing and fails with [`Interrupted`] (exit 3 too).

use anyhow::{Context, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Install the handlers (once per process) and return the flag they set. Install it before
/// slow setup, so that a signal during data loading is a clean stop, not death by the signal.
pub fn flag() -> Result<Arc<AtomicBool>> {
    if let Some(f) = FLAG.get() {
        return Ok(Arc::clone(f));
    }
    let flag = on_signals(&[
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGUSR1,
    ])?;
    // Two threads racing here would both register; the loser's handlers set a flag nobody
    // reads, and the winner's flag is the one returned to both.
    Ok(Arc::clone(FLAG.get_or_init(|| flag)))
}

/// A fresh flag that any of `signals` sets (the handlers stay installed for the process).
/// The sweep runners use their own sets of signals through it.
pub fn on_signals(signals: &[i32]) -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for &sig in signals {
        signal_hook::flag::register(sig, Arc::clone(&flag))
            .context("cannot install a signal handler")?;
    }
    Ok(flag)
}

/// Request a stop as a signal would (the ranks of a multi-process run stop together when any
/// of them was signalled). No effect before [`flag`] installed the handlers.
pub fn request() {
    if let Some(f) = FLAG.get() {
        f.store(true, Ordering::SeqCst);
    }
}

/// True once a stop has been requested (false when no handler was installed).
pub fn requested() -> bool {
    FLAG.get().is_some_and(|f| f.load(Ordering::SeqCst))
}

/// Every rank stops after the step just taken: some rank's stop travelled in the step's
/// synchronisation. The training loop reads this, never the local flag: a signal that lands
/// on one rank between the synchronisation and the test would otherwise send that rank alone
/// to the end-of-run collectives while its peers start the next step (a collective mismatch
/// that aborts the run).
static STOP_DUE: AtomicBool = AtomicBool::new(false);

/// Some rank asked to stop: every rank stops after this step (set by the synchronisation).
pub fn stop_due() {
    STOP_DUE.store(true, Ordering::SeqCst);
}

/// Whether every rank stops after the step just taken.
pub fn is_stop_due() -> bool {
    STOP_DUE.load(Ordering::SeqCst)
}

/// This process wants a mid-epoch checkpoint after the coming step (`train.checkpoint_every`);
/// the step's gradient synchronisation tells every rank, so that all of them checkpoint
/// after the same step.
static CHECKPOINT_WISH: AtomicBool = AtomicBool::new(false);
/// Some rank wished one: checkpoint after this step.
static CHECKPOINT_DUE: AtomicBool = AtomicBool::new(false);

/// Wish (or not) for a checkpoint after the coming step.
pub fn wish_checkpoint(wish: bool) {
    CHECKPOINT_WISH.store(wish, Ordering::SeqCst);
}

/// This process's wish for the coming step, cleared (read by the gradient synchronisation).
pub fn take_checkpoint_wish() -> bool {
    CHECKPOINT_WISH.swap(false, Ordering::SeqCst)
}

/// Some rank wished for a checkpoint after this step (set by the synchronisation).
pub fn checkpoint_due() {
    CHECKPOINT_DUE.store(true, Ordering::SeqCst);
}

/// Whether a checkpoint is due after the step just taken, cleared.
pub fn take_checkpoint_due() -> bool {
    CHECKPOINT_DUE.swap(false, Ordering::SeqCst)
}

/// The error of work that a signal stopped before it could finish (a range test): nothing of
/// it was written, and running the same command again starts it afresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted by a signal")
    }
}

impl std::error::Error for Interrupted {}

/// True when the error (or any error it wraps) is [`Interrupted`].
pub fn is_interrupted(err: &anyhow::Error) -> bool {
    err.chain()
        .any(|e| e.downcast_ref::<Interrupted>().is_some())
}

/// For loops that keep nothing to resume (the range test, `lrlab hf-lr`): once a stop was
/// requested, clear the progress bar and end with [`Interrupted`] (exit status 3).
pub fn check(bar: Option<&indicatif::ProgressBar>) -> anyhow::Result<()> {
    if !requested() {
        return Ok(());
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Err(Interrupted.into())
}
