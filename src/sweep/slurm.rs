//! The Slurm executor: sbatch job-array scripts over a frozen sweep folder, and the task side
//! (`lrlab sweep run-index DIR INDEX`).
//!
//! Each array task runs `lrlab sweep run-index SWEEP OFFSET+SLURM_ARRAY_TASK_ID`, which claims
//! the run with the same lock as the local executor, trains it in a child process and exits
//! with the child's verdict (3: interrupted at a checkpoint). The script runs it in the
//! background so that its traps run at once: on SIGUSR1 (`--signal=B:USR1@<s>`, the time
//! limit's warning) or SIGTERM (preemption, scancel) it passes SIGTERM on, waits for the
//! checkpoint, then `scontrol requeue <array job id>_<task id>` and exits; the requeued task
//! resumes. (Not `$SLURM_JOB_ID`: one task's job id is the array's id, and requeueing that
//! requeues every task of the array.)
//!
//! Array indices must stay below `MaxArraySize` (read from `scontrol show config`, else
//! 1001): larger sweeps are split into several arrays whose task ids are offsets. The sweep
//! folder must be on a file system that every node sees.
//!
//! Quoting: the script body uses POSIX single quotes; `#SBATCH` lines are parsed by sbatch,
//! not by a shell, so their values are double-quoted with `"` and `\` escaped, and `%` in the
//! output path is doubled (it starts a file name pattern). sbatch cannot carry a newline, and
//! slurmd drops `\` from output paths: such values are refused.

use super::exec::{self, ExecKeys, Launch, RunState};
use super::manifest::Manifest;
use crate::error::input_error;
use crate::run::State;
use crate::supervise::Supervisor;
use crate::util::sanitize;
use crate::util::write_atomic;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// `MaxArraySize` when `scontrol` cannot tell (Slurm's default).
pub const DEFAULT_MAX_ARRAY_SIZE: usize = 1001;

/// Options of the Slurm executor.
#[derive(Clone, Debug)]
pub struct SlurmOptions {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--gres`, e.g. `gpu:1` (Slurm then sets `CUDA_VISIBLE_DEVICES` per task).
    pub gres: Option<String>,
    /// `--time`, e.g. `04:00:00`.
    pub time: Option<String>,
    /// `--cpus-per-task`; runs whose config says `train.threads = 0` (or `data.workers = 0`)
    /// use that many threads (loader workers).
    pub cpus_per_task: Option<u32>,
    /// `--mem`, e.g. `16G`.
    pub mem: Option<String>,
    /// At most this many tasks at once (`--array=...%N`).
    pub array_parallel: Option<usize>,
    /// Runs per array task, run one after the other (for sites that punish short jobs).
    pub runs_per_task: usize,
    /// Seconds before the time limit at which Slurm sends SIGUSR1 (`--signal=B:USR1@<s>`).
    pub signal_lead: u32,
    /// `MaxArraySize`; `None` reads it from `scontrol show config`.
    pub max_array_size: Option<usize>,
    /// More sbatch options, one per `#SBATCH` line (`--account=abc`).
    pub extra: Vec<String>,
    /// Submit the scripts with sbatch.
    pub submit: bool,
    /// Only the runs that are not finished (nor failed, without `retry_failed`).
    pub only_missing: bool,
    /// Tasks run failed runs again.
    pub retry_failed: bool,
    /// The lrlab binary the tasks run (absolute path on the shared file system).
    pub program: PathBuf,
    /// Processes per run (`--ntasks`; more than one: each run is `srun`'s step of that many
    /// ranks, one run over several processes).
    pub ranks_per_run: usize,
}

/// One written array script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArrayScript {
    /// The script file.
    pub path: PathBuf,
    /// The `--array` value (task ids, throttle).
    pub array: String,
    /// Added to `SLURM_ARRAY_TASK_ID` to get the task number.
    pub offset: usize,
    /// Task numbers (run indices when one run per task) covered.
    pub tasks: Vec<usize>,
}

/// POSIX shell quoting: `'...'`, with `'` written as `'\''`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Quoting for a value on an `#SBATCH` line: `"..."` with `"` and `\` escaped.
pub fn sbatch_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// An `--sbatch` option split into its name and, if it has one, the separator (`=` or a
/// space) and the value: `--account=abc`, `-A abc`, `--exclusive`.
fn split_extra(e: &str) -> (&str, Option<(char, &str)>) {
    match e.find(|c: char| c == '=' || c.is_whitespace()) {
        Some(i) => {
            let sep = e[i..].chars().next().expect("found above");
            let value = &e[i + sep.len_utf8()..];
            let value = if sep == '=' {
                value
            } else {
                value.trim_start()
            };
            (&e[..i], Some((sep, value)))
        }
        None => (e, None),
    }
}

/// Indices as a Slurm list: sorted, runs of consecutive ids as ranges (`0-3,7,12-15`).
pub fn compress(ids: &[usize]) -> String {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j + 1 < ids.len() && ids[j + 1] == ids[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            ids[i].to_string()
        } else {
            format!("{}-{}", ids[i], ids[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

/// `MaxArraySize` of the cluster from `scontrol show config` text.
pub fn parse_max_array_size(config: &str) -> Option<usize> {
    config.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == "MaxArraySize").then(|| v.trim().parse().ok())?
    })
}

/// `MaxArraySize` of the cluster, or [`DEFAULT_MAX_ARRAY_SIZE`] when `scontrol` cannot say.
pub fn max_array_size() -> usize {
    std::process::Command::new("scontrol")
        .args(["show", "config"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| parse_max_array_size(&String::from_utf8_lossy(&o.stdout)))
        .filter(|&n| n > 0)
        .unwrap_or(DEFAULT_MAX_ARRAY_SIZE)
}

fn check_line(what: &str, v: &str) -> Result<()> {
    if v.chars().any(|c| c.is_control()) {
        crate::bail_input!("{what} {v:?}: must not contain a newline or control character");
    }
    Ok(())
}

impl SlurmOptions {
    /// Check the values before anything is written; `sweep` is the absolute sweep folder.
    pub fn validate(&self, sweep: &Path) -> Result<()> {
        if self.runs_per_task == 0 {
            crate::bail_input!("--runs-per-task 0: must be >= 1");
        }
        if self.array_parallel == Some(0) {
            crate::bail_input!("--array-parallel 0: must be >= 1");
        }
        if self.max_array_size == Some(0) {
            crate::bail_input!("--max-array-size 0: must be >= 1");
        }
        for (what, v) in [
            ("--partition", &self.partition),
            ("--gres", &self.gres),
            ("--time", &self.time),
            ("--mem", &self.mem),
        ] {
            if let Some(v) = v {
                check_line(what, v)?;
                if v.is_empty() {
                    crate::bail_input!("{what}: empty value");
                }
            }
        }
        for e in &self.extra {
            check_line("--sbatch", e)?;
            let (name, _) = split_extra(e);
            let ok_name = name.starts_with('-')
                && name.len() > 1
                && name.chars().all(|c| c == '-' || c.is_ascii_alphanumeric());
            if !ok_name {
                crate::bail_input!(
                    "--sbatch {e:?}: expected an sbatch option like --account=abc \
                     (the option's name: `-`, letters, digits)"
                );
            }
        }
        let s = sweep.to_string_lossy();
        check_line("sweep folder", &s)?;
        if s.contains('\\') {
            crate::bail_input!(
                "sweep folder {s:?}: Slurm drops `\\` from output paths; use a folder without one"
            );
        }
        check_line("lrlab binary", &self.program.to_string_lossy())?;
        Ok(())
    }
}

/// The task numbers to submit: every task, or with `only_missing` those holding a run that
/// is not finished, not running elsewhere, and not failed (unless `retry_failed`).
pub fn tasks_to_submit(sweep: &Path, m: &Manifest, o: &SlurmOptions) -> Vec<usize> {
    let per = o.runs_per_task.max(1);
    let mut tasks: Vec<usize> = m
        .runs
        .iter()
        .filter(|r| {
            if !o.only_missing {
                return true;
            }
            let (state, _) = exec::run_state(sweep, r);
            !(state.finished()
                || state == RunState::Running
                || (state == RunState::Failed && !o.retry_failed))
        })
        .map(|r| r.index / per)
        .collect();
    tasks.dedup();
    tasks
}

/// Write the array scripts into `SWEEP/slurm/` (replacing earlier ones) for `tasks`, split
/// so that every task id stays below `max_array_size`.
pub fn write_scripts(
    sweep: &Path,
    m: &Manifest,
    o: &SlurmOptions,
    tasks: &[usize],
    max_array_size: usize,
) -> Result<Vec<ArrayScript>> {
    let dir = sweep.join("slurm");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for e in std::fs::read_dir(&dir)?.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("array-") && n.ends_with(".sbatch") {
            std::fs::remove_file(e.path())?;
        }
    }
    let cap = max_array_size.max(1);
    let mut chunks: Vec<(usize, Vec<usize>)> = Vec::new();
    for &t in tasks {
        let c = t / cap;
        match chunks.last_mut() {
            Some((k, v)) if *k == c => v.push(t),
            _ => chunks.push((c, vec![t])),
        }
    }
    let n = chunks.len();
    let mut out = Vec::new();
    for (i, (c, ts)) in chunks.into_iter().enumerate() {
        let offset = c * cap;
        let ids: Vec<usize> = ts.iter().map(|t| t - offset).collect();
        let mut array = compress(&ids);
        if let Some(p) = o.array_parallel {
            array.push_str(&format!("%{p}"));
        }
        let path = dir.join(format!("array-{c}.sbatch"));
        let text = render_script(sweep, m, o, &array, offset, (i, n));
        write_atomic(&path, text.as_bytes())?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        out.push(ArrayScript {
            path,
            array,
            offset,
            tasks: ts,
        });
    }
    Ok(out)
}

/// The text of one array script.
pub fn render_script(
    sweep: &Path,
    m: &Manifest,
    o: &SlurmOptions,
    array: &str,
    offset: usize,
    (chunk, chunks): (usize, usize),
) -> String {
    let sw = sweep.to_string_lossy();
    let output = format!("{}/slurm/%A_%a.out", sw.replace('%', "%%"));
    let mut s = String::from("#!/bin/bash\n");
    // Comment lines: a newline in a value would end the comment and start a command.
    let comment = |v: &str| {
        v.chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect::<String>()
    };
    s.push_str(&format!(
        "# lrlab sweep {}: Slurm job array {} of {chunks} over the runs in\n# {}\n",
        comment(&m.name),
        chunk + 1,
        comment(&sw)
    ));
    s.push_str(
        "# Submit with `sbatch FILE`; resubmit what is unfinished with\n\
         # `lrlab sweep SPEC --slurm --only-missing --submit`.\n",
    );
    let mut opt = |k: &str, v: &str| s.push_str(&format!("#SBATCH --{k}={}\n", sbatch_quote(v)));
    opt("job-name", &format!("lrlab-{}", sanitize(&m.name)));
    opt("array", array);
    opt("output", &output);
    opt("open-mode", "append");
    opt("signal", &format!("B:USR1@{}", o.signal_lead));
    if let Some(v) = &o.partition {
        opt("partition", v);
    }
    if let Some(v) = &o.gres {
        opt("gres", v);
    }
    if let Some(v) = &o.time {
        opt("time", v);
    }
    if let Some(v) = o.cpus_per_task {
        opt("cpus-per-task", &v.to_string());
    }
    if let Some(v) = &o.mem {
        opt("mem", v);
    }
    if o.ranks_per_run > 1 {
        opt("ntasks", &o.ranks_per_run.to_string());
    }
    s.push_str("#SBATCH --requeue\n");
    for e in &o.extra {
        match split_extra(e) {
            (k, Some(('=', v))) => s.push_str(&format!("#SBATCH {k}={}\n", sbatch_quote(v))),
            (k, Some((_, v))) => s.push_str(&format!("#SBATCH {k} {}\n", sbatch_quote(v))),
            (k, None) => s.push_str(&format!("#SBATCH {k}\n")),
        }
    }
    let mut args = format!("--runs-per-task {}", o.runs_per_task.max(1));
    if o.ranks_per_run > 1 {
        args.push_str(&format!(" --ranks-per-run {}", o.ranks_per_run));
    }
    if o.retry_failed {
        args.push_str(" --retry-failed");
    }
    s.push_str(&format!(
        r#"set -u
lrlab={lrlab}
sweep={sweep}
task=$(({offset} + SLURM_ARRAY_TASK_ID))
child=
stop=0
# USR1 (the time limit's warning) or TERM (preemption, scancel): the run checkpoints.
trap 'stop=1; [ -z "$child" ] || kill -TERM "$child" 2>/dev/null' USR1 TERM INT
"$lrlab" sweep run-index "$sweep" "$task" {args} &
child=$!
[ "$stop" = 0 ] || kill -TERM "$child" 2>/dev/null
rc=0
while :; do
  wait "$child"; rc=$?
  # A trap makes wait return early (> 128) while the run may still be checkpointing.
  if [ "$rc" -gt 128 ] && kill -0 "$child" 2>/dev/null; then continue; fi
  break
done
if [ "$rc" -eq 3 ] || {{ [ "$stop" = 1 ] && [ "$rc" -gt 128 ]; }}; then
  # The task as ARRAYJOB_TASK: a bare $SLURM_JOB_ID that equals the array's id names the
  # whole array, and would requeue every task.
  me=${{SLURM_ARRAY_JOB_ID:+${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}}}
  me=${{me:-$SLURM_JOB_ID}}
  echo "lrlab: task $task stopped at a checkpoint; requeueing job $me" >&2
  scontrol requeue "$me"
  exit 0
fi
exit "$rc"
"#,
        lrlab = shell_quote(&o.program.to_string_lossy()),
        sweep = shell_quote(&sw),
    ));
    s
}

/// Submit the scripts with `sbatch --parsable`, recording each job in `SWEEP/slurm/jobs.json`.
/// Returns the job ids. A rejected submission is an error (with sbatch's message).
pub fn submit(sweep: &Path, scripts: &[ArrayScript]) -> Result<Vec<String>> {
    let jobs_path = sweep.join("slurm").join("jobs.json");
    let mut jobs: Vec<serde_json::Value> = std::fs::read_to_string(&jobs_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let mut ids = Vec::new();
    for s in scripts {
        let out = std::process::Command::new("sbatch")
            .arg("--parsable")
            .arg(&s.path)
            .output()
            .context("cannot run sbatch (is Slurm installed here?)")?;
        if !out.status.success() {
            anyhow::bail!(
                "sbatch {} failed ({}): {}",
                s.path.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let id = text.trim().split(';').next().unwrap_or("").to_string();
        if id.is_empty() {
            anyhow::bail!("sbatch {} printed no job id", s.path.display());
        }
        jobs.push(serde_json::json!({
            "job_id": id,
            "script": s.path,
            "array": s.array,
            "offset": s.offset,
            "submitted": crate::util::now(),
        }));
        let text = serde_json::to_string_pretty(&jobs)?;
        write_atomic(&jobs_path, format!("{text}\n").as_bytes())?;
        ids.push(id);
    }
    Ok(ids)
}

/// The runs of task `task`: indices `task × per .. task × per + per`, within the sweep.
pub fn task_runs(task: usize, per: usize, runs: usize) -> std::ops::Range<usize> {
    let per = per.max(1);
    let start = task.saturating_mul(per).min(runs);
    start..(start + per).min(runs)
}

/// `lrlab sweep run-index DIR TASK`: run the run(s) of one array task. Exit status 0 when
/// they are finished (or held by another runner), 1 when one failed, 3 when stopped at a
/// checkpoint by SIGUSR1, SIGTERM or SIGINT (the script then requeues the task). With
/// `ranks` > 1 each run is an `srun` step of that many tasks (one run over several processes).
pub fn run_index(
    sweep: &Path,
    task: usize,
    runs_per_task: usize,
    retry_failed: bool,
    program: &Path,
    ranks: usize,
) -> Result<u8> {
    let m = Manifest::load(sweep)?;
    let range = task_runs(task, runs_per_task, m.runs.len());
    if range.is_empty() {
        return Err(input_error(format!(
            "task {task}: the sweep {} has {} runs ({} per task)",
            m.name,
            m.runs.len(),
            runs_per_task.max(1)
        )));
    }
    let stop = crate::train::stop::on_signals(&[
        signal_hook::consts::SIGUSR1,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])?;
    let mut code = 0u8;
    let mut stopped = false;
    for i in range {
        if stopped || stop.load(Ordering::SeqCst) {
            return Ok(3);
        }
        let run = &m.runs[i];
        let Some(claim) = exec::try_claim(sweep, &run.id)? else {
            eprintln!(
                "run {i} ({}) is held by another runner; leaving it",
                run.name
            );
            continue;
        };
        let state = RunState::from_status(crate::run::Status::read(&run.dir(sweep)).as_ref());
        if state.finished() {
            eprintln!("run {i} ({}) is {}", run.name, state.as_str());
            continue;
        }
        if state == RunState::Failed && !retry_failed {
            eprintln!(
                "run {i} ({}) failed earlier; not retried without --retry-failed",
                run.name
            );
            code = 1;
            continue;
        }
        let plan = crate::config::RunConfig::from_toml_str(&run.config)?;
        // Slurm shows the task only its own GPUs: the first is cuda:0. Automatic threads and
        // loader workers take the task's CPUs, not the node's.
        let device = plan
            .train
            .device
            .is_cuda()
            .then_some(crate::config::DeviceSpec::Cuda(Some(0)));
        let cpus = std::env::var("SLURM_CPUS_PER_TASK")
            .ok()
            .and_then(|v| v.parse().ok());
        let keys = ExecKeys::share(&plan, device, cpus);
        let visible = std::env::var("CUDA_VISIBLE_DEVICES").ok();
        let launch = Launch {
            program: program.to_path_buf(),
            cuda_visible: None,
            device: visible
                .map(|v| format!("gpu {v}"))
                .unwrap_or_else(|| "slurm".into()),
            runner: "slurm",
            ranks,
        };
        eprintln!("run {i} ({}): start on {}", run.name, launch.device);
        let mut child = Supervisor::new(Arc::clone(&stop));
        let (c, a) = exec::start(sweep, run, claim, &launch, &keys)?;
        child.add(c, a);
        let f = loop {
            // Slurm's signals (preemption, scancel, the time limit's warning) ask for a
            // checkpoint: only the first is forwarded, and Slurm itself kills after its grace.
            if !child.terminating() && child.forward_stop().is_some() {
                continue;
            }
            if let Some((a, exit)) = child.reap()?.pop() {
                break a.finish(exit, child.terminating())?;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        stopped = child.terminating();
        let why = if f.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", f.reason)
        };
        eprintln!("run {i} ({}): {}{why}", run.name, f.outcome.name());
        match f.outcome {
            State::Interrupted | State::Running => return Ok(3),
            State::Failed => code = 1,
            State::Done | State::Diverged => {}
        }
    }
    Ok(code)
}
