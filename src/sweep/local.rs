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
use crate::supervise::{Stop, Supervisor};
use anyhow::Result;
use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
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
    let mut runner = Runner::new(sweep, m, opts, stop_flag()?);
    loop {
        runner.forward_stop();
        runner.reap()?;
        runner.start_ready()?;
        if runner.is_over() {
            break;
        }
        runner.tick();
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(runner.finish())
}

/// One invocation of the local executor: its queue, its free device tokens and its children.
struct Runner<'a> {
    sweep: &'a Path,
    m: &'a Manifest,
    opts: &'a LocalOptions,
    /// Runs to try, in order.
    queue: VecDeque<usize>,
    /// Runs another runner holds; tried again every second.
    elsewhere: Vec<usize>,
    /// Runs seen held elsewhere: a failure there is that runner's, not retried here.
    seen_elsewhere: HashSet<usize>,
    free: VecDeque<Slot>,
    children: Supervisor<(Active, Slot)>,
    counts: Counts,
    progress: Progress,
    report: LocalReport,
    /// Runs that could not even start (they have no failed status.json of their own).
    start_failures: usize,
    last_poll: Instant,
    last_tick: Instant,
    waiting_said: bool,
}

impl<'a> Runner<'a> {
    /// Queue the runs left to do and say which failed ones are not retried.
    fn new(
        sweep: &'a Path,
        m: &'a Manifest,
        opts: &'a LocalOptions,
        stop: Arc<AtomicBool>,
    ) -> Runner<'a> {
        use std::io::IsTerminal;
        let mut counts = Counts {
            total: m.runs.len(),
            ..Counts::default()
        };
        let mut queue = VecDeque::new();
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
        let progress = Progress::new(opts.progress && std::io::stderr().is_terminal(), counts);
        if !skipped_failed.is_empty() {
            progress.line(format!(
                "{} failed run(s) not retried (--retry-failed retries them): {}",
                skipped_failed.len(),
                skipped_failed.join(" ")
            ));
        }
        Runner {
            sweep,
            m,
            opts,
            queue,
            elsewhere: Vec::new(),
            seen_elsewhere: HashSet::new(),
            free: opts.slots.iter().take(opts.jobs.max(1)).cloned().collect(),
            children: Supervisor::new(stop),
            counts,
            progress,
            report: LocalReport::default(),
            start_failures: 0,
            last_poll: Instant::now(),
            last_tick: Instant::now(),
            waiting_said: false,
        }
    }

    /// A signal: the first stops the running runs at a checkpoint, a second kills them.
    fn forward_stop(&mut self) {
        let was = self.children.terminating();
        if self.children.forward_stop() == Some(Stop::Terminate) && !was {
            self.report.stopped = true;
            self.progress.line(format!(
                "stopping: {} running run(s) checkpoint and stop; a second signal kills them",
                self.children.len()
            ));
        }
    }

    /// Record the runs whose children have exited and free their device tokens.
    fn reap(&mut self) -> Result<()> {
        for ((a, slot), exit) in self.children.reap()? {
            self.free.push_back(slot);
            let stopping = self.children.terminating();
            let f = a.finish(exit, stopping)?;
            match f.outcome {
                State::Done | State::Diverged => self.counts.finished += 1,
                State::Failed => self.counts.failed += 1,
                State::Interrupted | State::Running => {}
            }
            self.counts.running = self.children.len();
            self.progress.finished(&a, &f, self.counts);
            if f.outcome == State::Failed && self.opts.fail_fast && !stopping {
                self.report.failed_fast = true;
                self.progress.line(format!(
                    "--fail-fast: stopping after the failure of {}",
                    a.run.name
                ));
                self.children.terminate();
            }
        }
        Ok(())
    }

    /// Start queued runs while device tokens are free (none once stopping).
    fn start_ready(&mut self) -> Result<()> {
        if !self.elsewhere.is_empty() && self.last_poll.elapsed() >= Duration::from_secs(1) {
            self.queue.extend(self.elsewhere.drain(..));
            self.last_poll = Instant::now();
        }
        while !self.children.terminating() && !self.free.is_empty() {
            let Some(i) = self.queue.pop_front() else {
                break;
            };
            let run = &self.m.runs[i];
            let Some(claim) = exec::try_claim(self.sweep, &run.id)? else {
                self.seen_elsewhere.insert(i);
                self.elsewhere.push(i);
                continue;
            };
            // Read the state again under the claim: another runner may have finished it.
            let state = RunState::from_status(Status::read(&run.dir(self.sweep)).as_ref());
            if state.finished() {
                self.counts.finished += 1;
                continue;
            }
            if state == RunState::Failed
                && (!self.opts.retry_failed || self.seen_elsewhere.contains(&i))
            {
                self.counts.failed += 1;
                continue;
            }
            let slot = self.free.pop_front().expect("checked above");
            let keys = match crate::config::RunConfig::from_toml_str(&run.config) {
                Ok(plan) => ExecKeys::share(&plan, Some(slot.device), Some(self.opts.threads)),
                Err(_) => ExecKeys::default(),
            };
            let launch = Launch {
                program: self.opts.program.clone(),
                cuda_visible: Some(slot.cuda_visible.clone()),
                device: slot.label.clone(),
                runner: "local",
                ranks: 1,
            };
            match exec::start(self.sweep, run, claim, &launch, &keys) {
                Ok((child, a)) => {
                    self.report.launched += 1;
                    self.counts.running = self.children.len() + 1;
                    self.progress.started(&a, self.counts);
                    self.children.add(child, (a, slot));
                }
                Err(e) => {
                    self.free.push_back(slot);
                    self.counts.failed += 1;
                    self.start_failures += 1;
                    self.progress
                        .line(format!("{} FAILED to start: {e:#}", run.name));
                    if self.opts.fail_fast {
                        self.report.failed_fast = true;
                        self.children.terminate();
                    }
                }
            }
        }
        Ok(())
    }

    /// Nothing running and nothing left to start (or stopping).
    fn is_over(&mut self) -> bool {
        let idle = self.children.is_empty();
        if idle
            && (self.children.terminating() || (self.queue.is_empty() && self.elsewhere.is_empty()))
        {
            return true;
        }
        if idle && self.queue.is_empty() && !self.waiting_said {
            self.waiting_said = true;
            self.progress.line(format!(
                "waiting for {} run(s) held by another runner",
                self.elsewhere.len()
            ));
        }
        false
    }

    /// Refresh the progress lines, twice a second.
    fn tick(&mut self) {
        if self.last_tick.elapsed() >= Duration::from_millis(500) {
            let active: Vec<&Active> = self.children.tags().map(|(a, _)| a).collect();
            self.progress.tick(self.sweep, &active);
            self.last_tick = Instant::now();
        }
    }

    /// Where every run of the sweep stands now.
    fn finish(mut self) -> LocalReport {
        self.progress.clear();
        let mut report = self.report.clone();
        for r in &self.m.runs {
            match RunState::from_status(Status::read(&r.dir(self.sweep)).as_ref()) {
                RunState::Done => report.done += 1,
                RunState::Diverged => report.diverged += 1,
                RunState::Failed => report.failed += 1,
                _ => report.unfinished += 1,
            }
        }
        report.failed += self.start_failures;
        report.unfinished = report.unfinished.saturating_sub(self.start_failures);
        report
    }
}
