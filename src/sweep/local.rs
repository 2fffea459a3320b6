//! The local executor: runs in parallel child processes, one device token each.
//!
//! Each run is claimed ([`exec::try_claim`]) before it starts, so several runners may share a
//! sweep folder: a run held by another runner is polled until released, then counted (or
//! taken over if it was left unfinished). Finished runs (done, diverged) are skipped,
//! interrupted and stale ones resume from their checkpoints, failed ones are retried only
//! with `retry_failed`; a run is attempted at most once per invocation. SIGINT, SIGTERM or
//! SIGHUP stop the sweep: children get SIGTERM (they checkpoint and exit 3), a second signal
//! kills them.

use super::devices::Slot;
use super::exec::{self, Active, ExecKeys, Launch, RunState};
use super::manifest::Manifest;
use super::progress::{Counts, Progress};
use crate::run::State;
use crate::run::Status;
use anyhow::Result;
use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of [`run_local`].
#[derive(Clone, Debug)]
pub struct LocalOptions {
    /// Device tokens; at most `jobs` of them are used.
    pub slots: Vec<Slot>,
    /// Runs at once.
    pub jobs: usize,
    /// `train.threads` and `data.workers` for runs whose config says 0 (automatic): each
    /// run's share of the cores.
    pub threads: usize,
    /// Run failed runs again.
    pub retry_failed: bool,
    /// Stop at the first failure (running runs are interrupted at a checkpoint).
    pub fail_fast: bool,
    /// The lrlab binary the children run.
    pub program: PathBuf,
    /// Draw progress bars when stderr is a terminal.
    pub progress: bool,
}

/// What a local sweep did and where the runs stand afterwards.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalReport {
    /// Children started by this invocation.
    pub launched: usize,
    /// Runs done.
    pub done: usize,
    /// Runs diverged.
    pub diverged: usize,
    /// Runs failed.
    pub failed: usize,
    /// Runs interrupted, stale or never started.
    pub unfinished: usize,
    /// Stopped by a signal.
    pub stopped: bool,
    /// Stopped by `--fail-fast`.
    pub failed_fast: bool,
}

impl LocalReport {
    /// Exit status: 3 when stopped by a signal (run again to resume), 1 when a run failed or
    /// runs were left unfinished, else 0.
    pub fn exit_code(&self) -> u8 {
        if self.stopped {
            3
        } else if self.failed > 0 || self.unfinished > 0 {
            1
        } else {
            0
        }
    }
}

/// Signals that stop the sweep.
fn stop_flag() -> Result<Arc<AtomicBool>> {
    crate::train::stop::on_signals(&[
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])
}

/// Run every unfinished run of a frozen sweep folder.
pub fn run_local(sweep: &Path, m: &Manifest, opts: &LocalOptions) -> Result<LocalReport> {
    use std::io::IsTerminal;
    let stop = stop_flag()?;
    let total = m.runs.len();
    let mut counts = Counts {
        total,
        ..Counts::default()
    };
    let mut queue: VecDeque<usize> = VecDeque::new();
    let mut skipped_failed = Vec::new();
    for r in &m.runs {
        let state = RunState::from_status(Status::read(&r.dir(sweep)).as_ref());
        if state.finished() {
            counts.finished += 1;
        } else if state == RunState::Failed && !opts.retry_failed {
            counts.failed += 1;
            skipped_failed.push(r.name.clone());
        } else {
            queue.push_back(r.index);
        }
    }
    let mut progress = Progress::new(opts.progress && std::io::stderr().is_terminal(), counts);
    if !skipped_failed.is_empty() {
        progress.line(format!(
            "{} failed run(s) not retried (--retry-failed retries them): {}",
            skipped_failed.len(),
            skipped_failed.join(" ")
        ));
    }
    let mut free: VecDeque<Slot> = opts.slots.iter().take(opts.jobs.max(1)).cloned().collect();
    let mut active: Vec<(Active, Slot)> = Vec::new();
    let mut elsewhere: Vec<usize> = Vec::new();
    let mut seen_elsewhere: HashSet<usize> = HashSet::new();
    let mut last_poll = Instant::now();
    let mut waiting_said = false;
    let mut report = LocalReport::default();
    let mut start_failures = 0usize;
    let mut stopping = false;
    let mut last_tick = Instant::now();

    loop {
        if stop.swap(false, Ordering::SeqCst) {
            if !stopping {
                stopping = true;
                report.stopped = true;
                progress.line(format!(
                    "stopping: {} running run(s) checkpoint and stop; a second signal kills them",
                    active.len()
                ));
                for (a, _) in &active {
                    a.signal(libc::SIGTERM);
                }
            } else {
                for (a, _) in &active {
                    a.signal(libc::SIGKILL);
                }
            }
        }

        let mut i = 0;
        while i < active.len() {
            let Some(f) = active[i].0.try_finish(stopping)? else {
                i += 1;
                continue;
            };
            let (a, slot) = active.remove(i);
            free.push_back(slot);
            match f.outcome {
                State::Done | State::Diverged => counts.finished += 1,
                State::Failed => counts.failed += 1,
                State::Interrupted | State::Running => {}
            }
            counts.running = active.len();
            progress.finished(&a, &f, counts);
            if f.outcome == State::Failed && opts.fail_fast && !stopping {
                stopping = true;
                report.failed_fast = true;
                progress.line(format!(
                    "--fail-fast: stopping after the failure of {}",
                    a.run.name
                ));
                for (b, _) in &active {
                    b.signal(libc::SIGTERM);
                }
            }
        }

        if !elsewhere.is_empty() && last_poll.elapsed() >= Duration::from_secs(1) {
            queue.extend(elsewhere.drain(..));
            last_poll = Instant::now();
        }

        while !stopping && !free.is_empty() {
            let Some(i) = queue.pop_front() else { break };
            let run = &m.runs[i];
            let Some(claim) = exec::try_claim(sweep, &run.id)? else {
                seen_elsewhere.insert(i);
                elsewhere.push(i);
                continue;
            };
            // Read the state again under the claim: another runner may have finished it.
            let state = RunState::from_status(Status::read(&run.dir(sweep)).as_ref());
            if state.finished() {
                counts.finished += 1;
                continue;
            }
            if state == RunState::Failed && (!opts.retry_failed || seen_elsewhere.contains(&i)) {
                counts.failed += 1;
                continue;
            }
            let slot = free.pop_front().expect("checked above");
            let keys = match crate::config::RunConfig::from_toml_str(&run.config) {
                Ok(plan) => ExecKeys::share(&plan, Some(slot.device.clone()), Some(opts.threads)),
                Err(_) => ExecKeys::default(),
            };
            let launch = Launch {
                program: opts.program.clone(),
                cuda_visible: Some(slot.cuda_visible.clone()),
                device: slot.label.clone(),
                runner: "local",
            };
            match exec::start(sweep, run, claim, &launch, &keys) {
                Ok(a) => {
                    report.launched += 1;
                    counts.running = active.len() + 1;
                    progress.started(&a, counts);
                    active.push((a, slot));
                }
                Err(e) => {
                    free.push_back(slot);
                    counts.failed += 1;
                    start_failures += 1;
                    progress.line(format!("{} FAILED to start: {e:#}", run.name));
                    if opts.fail_fast {
                        stopping = true;
                        report.failed_fast = true;
                    }
                }
            }
        }

        if active.is_empty() && (stopping || (queue.is_empty() && elsewhere.is_empty())) {
            break;
        }
        if active.is_empty() && queue.is_empty() && !waiting_said {
            waiting_said = true;
            progress.line(format!(
                "waiting for {} run(s) held by another runner",
                elsewhere.len()
            ));
        }
        if last_tick.elapsed() >= Duration::from_millis(500) {
            progress.tick(sweep, &active.iter().map(|(a, _)| a).collect::<Vec<_>>());
            last_tick = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    progress.clear();

    for r in &m.runs {
        match RunState::from_status(Status::read(&r.dir(sweep)).as_ref()) {
            RunState::Done => report.done += 1,
            RunState::Diverged => report.diverged += 1,
            RunState::Failed => report.failed += 1,
            _ => report.unfinished += 1,
        }
    }
    // Runs that could not even start have no failed status.json of their own.
    report.failed += start_failures;
    report.unfinished = report.unfinished.saturating_sub(start_failures);
    Ok(report)
}
