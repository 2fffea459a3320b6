//! Running one run of a sweep folder, shared by the local executor and Slurm tasks: the run's
//! state, the claim lock, the config file the child reads, the child process
//! (`lrlab train CONFIG --out RUN --quiet`) and what its exit means.
//!
//! A run is claimed with an exclusive lock on `SWEEP/.locks/<id>.lock` for as long as its
//! child lives (the child inherits the lock's file descriptor), so two runners, local or
//! Slurm, never train the same run at once. Every attempt appends one JSON line to
//! `RUN/attempts.jsonl` (runner, host, device, Slurm ids, exit, outcome); the child's output
//! goes to `RUN/train.log`.

use super::manifest::{config_file, ManifestRun, AUTO_CONFIG, LOCKS};
use crate::config::RunConfig;
use crate::run::{State, Status};
use crate::supervise::{Child, Exit};
use crate::util::write_atomic;
use anyhow::{Context, Result};
use fs2::FileExt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The variables of a multi-process rendezvous (torchrun's, lrlab's launcher's, and those of
/// an srun step of several tasks), removed from the environment of a sweep's runs.
pub const RENDEZVOUS_VARS: [&str; 12] = [
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
    "LRLAB_LISTEN_FD",
    "LRLAB_RANK_THREADS",
    "LRLAB_LAUNCHED",
    "SLURM_STEP_ID",
    "SLURM_STEP_NUM_TASKS",
];

/// Where a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Never started.
    Pending,
    /// A runner holds its claim now.
    Running,
    /// `status.json` says running, but no runner holds it (the runner was killed).
    Stale,
    /// Stopped at a checkpoint; the next attempt resumes.
    Interrupted,
    /// Finished all steps.
    Done,
    /// Finished early: the loss diverged (a result).
    Diverged,
    /// Failed (not retried without `--retry-failed`).
    Failed,
}

impl RunState {
    /// The name shown in tables and CSVs.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Pending => "pending",
            RunState::Running => "running",
            RunState::Stale => "stale",
            RunState::Interrupted => "interrupted",
            RunState::Done => "done",
            RunState::Diverged => "diverged",
            RunState::Failed => "failed",
        }
    }

    /// Done or diverged: nothing left to run.
    pub fn finished(self) -> bool {
        matches!(self, RunState::Done | RunState::Diverged)
    }

    /// The state recorded in `status.json` alone (no lock check).
    pub fn from_status(s: Option<&Status>) -> RunState {
        match s.map(|s| s.status) {
            None => RunState::Pending,
            Some(State::Done) => RunState::Done,
            Some(State::Diverged) => RunState::Diverged,
            Some(State::Failed) => RunState::Failed,
            Some(State::Interrupted) => RunState::Interrupted,
            Some(State::Running) => RunState::Stale,
        }
    }
}

/// A run's state from its `status.json`, and whether a runner holds its claim (this probes
/// the lock, so runners must not call it on runs they may claim).
pub fn run_state(sweep: &Path, run: &ManifestRun) -> (RunState, Option<Status>) {
    let status = Status::read(&run.dir(sweep));
    let state = RunState::from_status(status.as_ref());
    let state = if !state.finished() && is_claimed(sweep, &run.id) {
        RunState::Running
    } else {
        state
    };
    (state, status)
}

/// An exclusive claim on a run, released when dropped (and when its child has exited).
#[derive(Debug)]
pub struct Claim {
    file: File,
}

fn lock_path(sweep: &Path, id: &str) -> PathBuf {
    sweep.join(LOCKS).join(format!("{id}.lock"))
}

fn open_lock(sweep: &Path, id: &str) -> Result<File> {
    let path = lock_path(sweep, id);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))
}

/// Claim run `id` without waiting: `None` when another runner holds it.
pub fn try_claim(sweep: &Path, id: &str) -> Result<Option<Claim>> {
    let mut file = open_lock(sweep, id)?;
    if file.try_lock_exclusive().is_err() {
        return Ok(None);
    }
    // Who holds it, for people looking at the folder.
    let who = serde_json::json!({
        "host": crate::util::hostname(),
        "pid": std::process::id(),
        "since": crate::util::now(),
        "slurm_job_id": std::env::var("SLURM_JOB_ID").ok(),
    });
    let _ = file
        .set_len(0)
        .and_then(|_| file.write_all(format!("{who}\n").as_bytes()));
    Ok(Some(Claim { file }))
}

/// True when some runner holds the claim on run `id`.
pub fn is_claimed(sweep: &Path, id: &str) -> bool {
    if !lock_path(sweep, id).exists() {
        return false;
    }
    match open_lock(sweep, id) {
        // Closing the probe's descriptor releases the probe's lock and no other.
        Ok(f) => f.try_lock_exclusive().is_err(),
        Err(_) => false,
    }
}

/// Values of a run config that say where it runs, not what it computes: the executor may
/// set them, and a config differing only in them is the same run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExecKeys {
    /// `train.device` to use.
    pub device: Option<crate::config::DeviceSpec>,
    /// `train.threads` to use.
    pub threads: Option<usize>,
    /// `data.workers` (loader threads) to use; the loader's batches do not depend on it.
    pub workers: Option<usize>,
}

impl ExecKeys {
    /// `cfg` with these values set.
    pub fn apply(&self, cfg: &RunConfig) -> RunConfig {
        let mut c = cfg.clone();
        if let Some(d) = self.device {
            c.train.device = d;
        }
        if let Some(t) = self.threads {
            c.train.threads = t;
        }
        if let Some(w) = self.workers {
            c.data.workers = w;
        }
        c
    }

    /// Keys for a run planned as `plan` that may use `cores` CPU cores: the device, and
    /// `cores` compute threads and loader workers where the plan leaves them automatic (0).
    pub fn share(
        plan: &RunConfig,
        device: Option<crate::config::DeviceSpec>,
        cores: Option<usize>,
    ) -> ExecKeys {
        ExecKeys {
            device,
            threads: cores.filter(|_| plan.train.threads == 0),
            workers: cores.filter(|_| plan.data.workers == 0),
        }
    }
}

/// Make the run's config file hold the planned config with `exec` applied, and return its
/// path. A config that differs from the plan in more than the exec keys is an error.
pub fn prepare_config(sweep: &Path, run: &ManifestRun, exec: &ExecKeys) -> Result<PathBuf> {
    let plan = RunConfig::from_toml_str(&run.config)
        .with_context(|| format!("run {}: the manifest's config is invalid", run.name))?;
    let want = exec.apply(&plan).to_toml()?;
    let dir = run.dir(sweep);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(config_file(run));
    match std::fs::read_to_string(&path) {
        Ok(have) if have == want => {}
        Ok(have) => {
            let same = RunConfig::from_toml_str(&have)
                .ok()
                .map(|c| same_run(&c, &plan))
                .unwrap_or(false);
            if !same {
                crate::bail_input!(
                    "{} differs from the sweep's plan for run {} (edited by hand?); restore \
                     it or delete the run folder",
                    path.display(),
                    run.name
                );
            }
            write_atomic(&path, want.as_bytes())?;
        }
        Err(_) => write_atomic(&path, want.as_bytes())?,
    }
    if path.file_name() == Some(AUTO_CONFIG.as_ref()) {
        // `train` wrote config.toml with the range test's values: keep its exec keys current.
        let resolved = dir.join(crate::run::CONFIG);
        if let Ok(text) = std::fs::read_to_string(&resolved) {
            if let Ok(c) = RunConfig::from_toml_str(&text) {
                let fixed = exec.apply(&c).to_toml()?;
                if fixed != text {
                    write_atomic(&resolved, fixed.as_bytes())?;
                }
            }
        }
    }
    Ok(path)
}

/// Do two configs describe the same run, apart from where it runs?
pub fn same_run(a: &RunConfig, b: &RunConfig) -> bool {
    let keys = ExecKeys {
        device: Some(b.train.device),
        threads: Some(b.train.threads),
        workers: Some(b.data.workers),
    };
    match (keys.apply(a).to_toml(), b.to_toml()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// How to start a run's child.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The lrlab binary.
    pub program: PathBuf,
    /// `CUDA_VISIBLE_DEVICES` for the child (`Some("")` hides every GPU); `None` inherits.
    pub cuda_visible: Option<String>,
    /// The device as people see it (`cuda:1`, `cpu`, `slurm`).
    pub device: String,
    /// `local` or `slurm`, recorded in `attempts.jsonl`.
    pub runner: &'static str,
    /// Processes of the run: more than one starts it as an `srun` step of that many tasks
    /// (inside a Slurm allocation), which find each other from Slurm's variables.
    pub ranks: usize,
}

/// A finished attempt.
#[derive(Clone, Debug)]
pub struct Finished {
    /// How it ended: the run folder's state after it (never `Running`).
    pub outcome: State,
    /// Why (failures and divergence), empty otherwise.
    pub reason: String,
    /// Seconds the child ran.
    pub secs: f64,
}

/// A run whose child is running (the child itself is watched by a
/// [`crate::supervise::Supervisor`]).
#[derive(Debug)]
pub struct Active {
    /// The run.
    pub run: ManifestRun,
    /// The device it runs on.
    pub device: String,
    pid: u32,
    _claim: Claim,
    sweep: PathBuf,
    runner: &'static str,
    cuda_visible: Option<String>,
    threads: usize,
    log_start: u64,
    started: f64,
    clock: std::time::Instant,
}

/// Start run `run` (already claimed) as a child process, for a [`crate::supervise::Supervisor`] to watch.
pub fn start(
    sweep: &Path,
    run: &ManifestRun,
    claim: Claim,
    launch: &Launch,
    exec: &ExecKeys,
) -> Result<(Child, Active)> {
    let config = prepare_config(sweep, run, exec)?;
    let dir = run.dir(sweep);
    let log_path = dir.join("train.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
    let mut cmd = if launch.ranks > 1 {
        // srun forwards SIGUSR1 to every task (each checkpoints at the same step) and
        // ends the step when one task fails.
        let mut c = Command::new("srun");
        c.arg(format!("--ntasks={}", launch.ranks))
            .arg("--kill-on-bad-exit=1")
            .arg(&launch.program);
        c
    } else {
        Command::new(&launch.program)
    };
    cmd.arg("train")
        .arg(&config)
        .arg("--out")
        .arg(&dir)
        .arg("--quiet")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // Each run of a sweep trains in one process of its own: a rendezvous inherited from the
    // runner's environment (the sweep started under torchrun, or in a shell left with
    // WORLD_SIZE) would make every run wait for peers that never come.
    for k in RENDEZVOUS_VARS {
        cmd.env_remove(k);
    }
    if let Some(v) = &launch.cuda_visible {
        cmd.env("CUDA_VISIBLE_DEVICES", v);
    }
    // The child keeps the claim for as long as it lives; if the runner dies, it gets SIGTERM
    // (it checkpoints and stops).
    let lock_fd = {
        use std::os::unix::io::AsRawFd;
        claim.file.as_raw_fd()
    };
    // srun ends its step at once on SIGTERM; SIGUSR1 it forwards to every rank.
    let stop = if launch.ranks > 1 {
        libc::SIGUSR1
    } else {
        libc::SIGTERM
    };
    let child = crate::supervise::spawn_stopped_by(&mut cmd, &[lock_fd], stop)
        .with_context(|| format!("cannot start {}", launch.program.display()))?;
    let threads = RunConfig::from_toml_str(&std::fs::read_to_string(&config)?)
        .map(|c| c.train.threads)
        .unwrap_or(0);
    let active = Active {
        run: run.clone(),
        device: launch.device.clone(),
        pid: child.pid(),
        _claim: claim,
        sweep: sweep.to_path_buf(),
        runner: launch.runner,
        cuda_visible: launch.cuda_visible.clone(),
        threads,
        log_start,
        started: crate::util::now(),
        clock: std::time::Instant::now(),
    };
    Ok((child, active))
}

impl Active {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Seconds since the child started.
    pub fn elapsed(&self) -> f64 {
        self.clock.elapsed().as_secs_f64()
    }

    /// The child has exited with `st`: classify, record, release the claim (on drop).
    /// `stopping`: the runner asked it to stop, so death by a signal is an interruption, not
    /// a failure.
    pub fn finish(&self, st: Exit, stopping: bool) -> Result<Finished> {
        let dir = self.run.dir(&self.sweep);
        let status = Status::read(&dir);
        let recorded = status.as_ref().map(|s| s.status);
        let (outcome, reason) = match (st.code(), st.signal()) {
            (Some(0), _) => match recorded {
                Some(State::Done) => (
                    State::Done,
                    // Finished but never learned: the reason travels with the outcome.
                    status
                        .as_ref()
                        .filter(|s| s.learned == Some(false))
                        .map(|s| s.reason.clone())
                        .unwrap_or_default(),
                ),
                Some(State::Diverged) => (
                    State::Diverged,
                    status
                        .as_ref()
                        .map(|s| s.reason.clone())
                        .unwrap_or_default(),
                ),
                other => (
                    State::Failed,
                    format!(
                        "lrlab train exited 0 but status.json says {:?}",
                        other.map_or("", State::name)
                    ),
                ),
            },
            (Some(3), _) => (State::Interrupted, String::new()),
            (Some(code), _) => {
                let why = self.log_error().unwrap_or_default();
                let reason = if recorded == Some(State::Failed) {
                    status.as_ref().map(|s| s.reason.clone()).unwrap_or(why)
                } else if why.is_empty() {
                    format!("lrlab train exited with status {code}")
                } else {
                    why
                };
                (State::Failed, reason)
            }
            // SIGINT/SIGTERM/SIGHUP are requests to stop (a Ctrl-C reaches the whole
            // process group, maybe before the runner has seen it), not failures.
            (None, Some(sig))
                if stopping || matches!(sig, libc::SIGINT | libc::SIGTERM | libc::SIGHUP) =>
            {
                (
                    State::Interrupted,
                    format!("stopped by signal {sig} before a checkpoint"),
                )
            }
            (None, sig) => (
                State::Failed,
                format!("lrlab train was killed by signal {}", sig.unwrap_or(0)),
            ),
        };
        // Record what `train` could not record itself.
        let keep = match outcome {
            State::Failed => recorded != Some(State::Failed),
            State::Interrupted => recorded != Some(State::Interrupted),
            _ => false,
        };
        // The runner's bookkeeping below may fail (a full disk); the run itself has ended and
        // `train` has recorded what it could, so warn and go on rather than abort every other
        // run of the sweep over a log line.
        let mut unrecorded = Vec::new();
        if keep {
            let written = Status {
                status: outcome,
                reason: reason.clone(),
                epoch: status.as_ref().map(|s| s.epoch).unwrap_or(0),
                step: status.as_ref().map(|s| s.step).unwrap_or(0),
                updated: crate::util::now(),
                learned: None,
            }
            .write(&dir);
            if let Err(e) = written {
                unrecorded.push(format!("{e:#}"));
            }
        }
        let secs = self.elapsed();
        if let Err(e) = self.record_attempt(&dir, st, outcome, &reason) {
            unrecorded.push(format!("{e:#}"));
        }
        for e in &unrecorded {
            eprintln!("warning: {}: attempt not recorded: {e}", self.run.name);
        }
        Ok(Finished {
            outcome,
            reason,
            secs,
        })
    }

    /// The last `error:` line this attempt wrote to `train.log`, else its last line.
    fn log_error(&self) -> Option<String> {
        let path = self.run.dir(&self.sweep).join("train.log");
        let mut f = File::open(path).ok()?;
        let len = f.metadata().ok()?.len();
        let from = self.log_start.max(len.saturating_sub(16 * 1024));
        f.seek(SeekFrom::Start(from)).ok()?;
        let mut text = String::new();
        f.take(16 * 1024).read_to_string(&mut text).ok()?;
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines
            .iter()
            .rev()
            .find(|l| l.starts_with("error:"))
            .or(lines.last())
            .map(|l| l.trim().to_string())
    }

    fn record_attempt(&self, dir: &Path, st: Exit, outcome: State, reason: &str) -> Result<()> {
        let env = |k: &str| std::env::var(k).ok();
        let line = serde_json::json!({
            "runner": self.runner,
            "host": crate::util::hostname(),
            "runner_pid": std::process::id(),
            "pid": self.pid,
            "device": self.device,
            "cuda_visible_devices": self.cuda_visible.clone().or_else(|| env("CUDA_VISIBLE_DEVICES")),
            "threads": self.threads,
            "slurm_job_id": env("SLURM_JOB_ID"),
            "slurm_array_job_id": env("SLURM_ARRAY_JOB_ID"),
            "slurm_array_task_id": env("SLURM_ARRAY_TASK_ID"),
            "slurm_restart_count": env("SLURM_RESTART_COUNT"),
            "started": self.started,
            "ended": crate::util::now(),
            "exit_code": st.code(),
            "signal": st.signal(),
            "outcome": outcome.name(),
            "reason": reason,
        });
        let path = dir.join("attempts.jsonl");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        f.write_all(format!("{line}\n").as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

/// Number of attempts recorded in a run folder's `attempts.jsonl`.
pub fn attempts(run_dir: &Path) -> usize {
    std::fs::read_to_string(run_dir.join("attempts.jsonl"))
        .map(|t| t.lines().filter(|l| !l.trim().is_empty()).count())
        .unwrap_or(0)
}
