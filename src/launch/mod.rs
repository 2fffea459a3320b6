//! What `lrlab train` does around the training loop: load the config file, resolve `"auto"`
//! schedule values with a range test ([`crate::lr_find`]), then train ([`crate::train`]).
//! It sits above both, so that the loop never calls the range test that runs it.

use crate::config::RunConfig;
use crate::train::setup::default_out;
use crate::train::trainer::{run, Outcome, RunOptions};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `lrlab train CONFIG [--set k=v]... [--out DIR]`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TrainArgs {
    /// The run config file.
    pub config: PathBuf,
    /// `table.key=value` overrides.
    pub overrides: Vec<String>,
    /// Run folder; default `out/<config stem>`.
    pub out: Option<PathBuf>,
    /// Progress bar and per-epoch lines.
    pub progress: bool,
    /// Resume a checkpoint written over another number of processes.
    #[serde(default)]
    pub allow_resize: bool,
}

/// Load a config file, resolve `"auto"` schedule values with a range test, and train. In a
/// rank of a multi-process run (`WORLD_SIZE` > 1 in the environment, as `lrlab train --nproc`
/// or torchrun set it), rank 0 runs the range test (unless the launcher did) and the others
/// wait for its choice, all before joining the group.
pub fn train_file(args: &TrainArgs) -> Result<Trained> {
    // Before anything slow (the rendezvous, the range test, the data): a signal from now on
    // is an orderly stop, never death by the signal.
    crate::train::stop::flag()?;
    let cfg = RunConfig::load(&args.config, &args.overrides)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out(&args.config, ""));
    let name = args.config.display().to_string();
    let rendezvous = rendezvous_from_env(cfg.train.dist_timeout)?;
    let rank = rendezvous.as_ref().map_or(0, |r| r.rank);
    // "auto" values are resolved before the ranks join, so that no collective timeout bounds
    // the range test: rank 0 runs it (or `--nproc`'s launcher did) and keeps the choice in
    // the run folder; the other ranks wait for it, then read it.
    if rank != 0 {
        crate::lr_find::wait_for_choice(&cfg, &out, rank)?;
    }
    // Before the range test writes lr_find/ into it.
    crate::run::check_run_folder(&out)?;
    let launched = std::env::var("LRLAB_LAUNCHED").is_ok_and(|v| v == "1");
    let resolved = crate::lr_find::resolve_auto(&cfg, &out, args.progress && !launched)
        .map_err(|e| crate::config::blame(&name, &args.overrides, e))?;
    let group = match rendezvous {
        Some(r) => Some(std::rc::Rc::new(crate::distributed::Group::join(&r)?)),
        None => None,
    };
    let (cfg, lr_find) = match resolved {
        Some((c, chosen)) => (c, Some(chosen)),
        None => (cfg, None),
    };
    let opts = RunOptions {
        progress: args.progress,
        verbose: true,
        lr_find,
        group,
        allow_resize: args.allow_resize,
    };
    // Bad values found while setting up (schedule, data files) name the config, or the
    // --set that gave the value.
    let outcome =
        run(&cfg, &out, &opts).map_err(|e| crate::config::blame(&name, &args.overrides, e))?;
    Ok(Trained { out, outcome, rank })
}

/// What [`train_file`] did.
#[derive(Debug)]
pub struct Trained {
    /// The run folder.
    pub out: PathBuf,
    /// How the run ended.
    pub outcome: Outcome,
    /// This process's rank (0 alone); rank 0 speaks for a multi-process run.
    pub rank: usize,
}

/// The rendezvous of a rank from the environment (see [`rendezvous_from`]).
pub fn rendezvous_from_env(timeout_s: f64) -> Result<Option<crate::distributed::Rendezvous>> {
    rendezvous_from(|k| std::env::var(k).ok(), timeout_s)
}

/// The rendezvous of a rank from the variables `env` gives: torchrun's (`RANK`,
/// `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`; `LRLAB_LISTEN_FD` from lrlab's own launcher),
/// or else, in a task of an `srun` step of several tasks, Slurm's ([`slurm_rendezvous`]).
/// None for a single process.
pub fn rendezvous_from(
    env: impl Fn(&str) -> Option<String>,
    timeout_s: f64,
) -> Result<Option<crate::distributed::Rendezvous>> {
    let var = |k: &str| env(k).filter(|v| !v.is_empty());
    if var("WORLD_SIZE").is_none() {
        if let Some(r) = slurm_rendezvous(&var, timeout_s)? {
            return Ok(Some(r));
        }
    }
    let world: usize = match var("WORLD_SIZE") {
        None if var("RANK").is_some_and(|r| r.trim() != "0") => crate::bail_input!(
            "RANK = {:?} without WORLD_SIZE: a single process is rank 0; unset RANK (left over \
             from another launch?) or set RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT",
            var("RANK").unwrap_or_default()
        ),
        None => return Ok(None),
        Some(w) => w.parse().map_err(|_| {
            crate::input_error(format!(
                "WORLD_SIZE = {w:?}: expected a number of processes"
            ))
        })?,
    };
    if world == 0 {
        crate::bail_input!("WORLD_SIZE = 0: expected a number of processes, at least 1");
    }
    if world == 1 {
        // One process: a RANK other than 0 is a leftover of another launch, and would make
        // this process think another rank speaks for it.
        if let Some(r) = var("RANK").filter(|r| r.trim() != "0") {
            crate::bail_input!(
                "RANK = {r:?} with WORLD_SIZE = 1: a single process is rank 0; unset RANK and \
                 WORLD_SIZE (left over from another launch?) or set them consistently"
            );
        }
        return Ok(None);
    }
    let need = |k: &str| {
        var(k).ok_or_else(|| {
            crate::input_error(format!(
                "WORLD_SIZE = {world} but {k} is not set: a rank of a multi-process run needs \
                 RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT (torchrun sets them; so does \
                 `lrlab train --nproc N`)"
            ))
        })
    };
    let rank_s = need("RANK")?;
    let rank: usize = rank_s.parse().ok().filter(|r| *r < world).ok_or_else(|| {
        crate::input_error(format!("RANK = {rank_s:?}: expected 0 to {}", world - 1))
    })?;
    let addr = need("MASTER_ADDR")?;
    let port = master_port(&need("MASTER_PORT")?)?;
    let listen_fd = var("LRLAB_LISTEN_FD").and_then(|f| f.parse::<i32>().ok());
    Ok(Some(crate::distributed::Rendezvous {
        rank,
        world,
        addr,
        port,
        listen_fd: if rank == 0 { listen_fd } else { None },
        timeout: std::time::Duration::from_secs_f64(timeout_s),
    }))
}

/// The rendezvous of a task of an `srun` step of several tasks (`SLURM_STEP_ID` and
/// `SLURM_STEP_NUM_TASKS` > 1; a batch script's own process, where only the job's
/// `SLURM_NTASKS` is set, stays a single process): rank `SLURM_PROCID`, world
/// `SLURM_STEP_NUM_TASKS`, rank 0's store on the step's first node (`SLURM_STEP_NODELIST`, else
/// `SLURM_JOB_NODELIST`) at a port derived from the job and step ids, so that every task
/// computes the same one and concurrent steps of a job do not collide. `MASTER_ADDR` and
/// `MASTER_PORT`, when set, win.
fn slurm_rendezvous(
    var: &impl Fn(&str) -> Option<String>,
    timeout_s: f64,
) -> Result<Option<crate::distributed::Rendezvous>> {
    let Some(step) = var("SLURM_STEP_ID") else {
        return Ok(None);
    };
    let number =
        |k: &str| -> Result<Option<u64>> {
            match var(k) {
                None => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| {
                    crate::input_error(format!("{k} = {v:?}: expected a whole number"))
                }),
            }
        };
    let world = number("SLURM_STEP_NUM_TASKS")?.unwrap_or(1) as usize;
    if world <= 1 {
        return Ok(None);
    }
    let need = |k: &str| {
        var(k).ok_or_else(|| {
            crate::input_error(format!(
                "a task of an srun step of {world} tasks without {k}: expected Slurm to set it \
                 (or set RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT yourself)"
            ))
        })
    };
    let rank_s = need("SLURM_PROCID")?;
    let rank: usize = rank_s
        .trim()
        .parse()
        .ok()
        .filter(|r| *r < world)
        .ok_or_else(|| {
            crate::input_error(format!(
                "SLURM_PROCID = {rank_s:?}: expected 0 to {}",
                world - 1
            ))
        })?;
    let addr = match var("MASTER_ADDR") {
        Some(a) => a,
        None => {
            let list = var("SLURM_STEP_NODELIST")
                .or_else(|| var("SLURM_JOB_NODELIST"))
                .ok_or_else(|| {
                    crate::input_error(
                        "an srun step without SLURM_STEP_NODELIST or SLURM_JOB_NODELIST: cannot \
                         tell where rank 0 runs; set MASTER_ADDR",
                    )
                })?;
            first_host(&list).ok_or_else(|| {
                crate::input_error(format!(
                    "SLURM_STEP_NODELIST = {list:?}: expected a Slurm host list; set MASTER_ADDR"
                ))
            })?
        }
    };
    let port = match var("MASTER_PORT") {
        Some(p) => master_port(&p)?,
        None => {
            let job = number("SLURM_JOB_ID")?.unwrap_or(0);
            // The batch step's id is not a number ("batch"); steps are numbered from 0.
            let step: u64 = step.trim().parse().unwrap_or(0);
            slurm_port(job, step)
        }
    };
    Ok(Some(crate::distributed::Rendezvous {
        rank,
        world,
        addr,
        port,
        listen_fd: None,
        timeout: std::time::Duration::from_secs_f64(timeout_s),
    }))
}

/// `MASTER_PORT`'s value as a port number.
fn master_port(s: &str) -> Result<u16> {
    s.parse()
        .map_err(|_| crate::input_error(format!("MASTER_PORT = {s:?}: expected a port number")))
}

/// The rendezvous port of step `step` of Slurm job `job`: below the usual ephemeral range
/// (32768 and up), so that no outgoing connection has taken it.
pub fn slurm_port(job: u64, step: u64) -> u16 {
    (15_000 + (job.wrapping_mul(31).wrapping_add(step)) % 15_000) as u16
}

/// The first host of a Slurm host list: `node[07-09,12],gpu1` gives `node07`, `a,b` gives
/// `a`, `rack1-n[3]-ib` gives `rack1-n3-ib`. None for an empty or malformed list.
pub fn first_host(list: &str) -> Option<String> {
    let list = list.trim();
    // The first entry ends at the first comma outside brackets.
    let mut depth = 0;
    let mut end = list.len();
    for (i, c) in list.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    let entry = &list[..end];
    let host = match entry.split_once('[') {
        None => entry.to_string(),
        Some((prefix, rest)) => {
            let (ranges, suffix) = rest.split_once(']')?;
            // The first number of the first range, its zero padding kept.
            let first = ranges.split([',', '-']).next()?.trim();
            if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            format!("{prefix}{first}{suffix}")
        }
    };
    (!host.is_empty() && !host.contains(['[', ']'])).then_some(host)
}

/// `lrlab train --nproc N`: start N ranks of this same command on this machine and wait for
/// them (see [`spawn_ranks`]). Returns the exit status for the command: 0, 3 (interrupted),
/// or the first failing rank's.
pub fn launch_ranks(args: &TrainArgs, nproc: usize, quiet: bool) -> Result<u8> {
    // First: a stop from here on is orderly (exit 3), even before any rank has started.
    crate::train::stop::flag()?;
    // Bad input is refused before anything starts.
    let cfg = RunConfig::load(&args.config, &args.overrides)?;
    crate::train::setup::check_batch_split(&cfg, nproc, &format!("--nproc {nproc}"))?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out(&args.config, ""));
    crate::train::trainer::check_checkpoint_world(&out, nproc, args.allow_resize)?;
    // The range test of "auto" values runs here, once, on every core, before any rank
    // starts; the ranks read its choice from the run folder.
    crate::run::check_run_folder(&out)?;
    let name = args.config.display().to_string();
    let blame = |e| crate::config::blame(&name, &args.overrides, e);
    let resolved = crate::lr_find::resolve_auto(&cfg, &out, !quiet).map_err(blame)?;
    // The data, the schedule and the split of the last batch are checked here, once: an
    // error found by every rank would be printed by every rank.
    {
        let cfg = resolved.map_or_else(|| cfg.clone(), |(c, _)| c);
        let setup = crate::train::setup::Setup::new(&cfg).map_err(blame)?;
        crate::train::setup::check_world(&cfg, setup.data.train.len(), nproc).map_err(blame)?;
        crate::train::setup::check_world_device(setup.device, nproc).map_err(blame)?;
    }
    let cores = crate::train::device::available_cores();
    if nproc > cores {
        eprintln!(
            "warning: --nproc {nproc} on {cores} cores: each process holds its own copy of the \
             model, the optimizer and the data, so memory grows {nproc}-fold while the steps \
             get no faster"
        );
    }
    if !quiet {
        let (threads, why) = match cfg.train.threads {
            0 => rank_threads(nproc),
            t => (t, "train.threads".to_string()),
        };
        eprintln!(
            "{nproc} processes x {threads} thread{} each ({why})",
            if threads == 1 { "" } else { "s" }
        );
    }
    let task = |rank| {
        RankTask::Train(TrainArgs {
            config: args.config.clone(),
            overrides: args.overrides.clone(),
            out: Some(out.clone()),
            progress: !quiet && rank == 0,
            allow_resize: args.allow_resize,
        })
    };
    let (code, _) = spawn_ranks(task, nproc, false)?;
    Ok(code)
}

/// The threads of each of `nproc` local ranks when `train.threads = 0`, and why:
/// `OMP_NUM_THREADS` when the user set it (as under torchrun), else an equal share of the
/// cores.
fn rank_threads(nproc: usize) -> (usize, String) {
    match crate::train::device::omp_threads() {
        Some(n) => (n, format!("OMP_NUM_THREADS={n}")),
        None => {
            let cores = crate::train::device::available_cores();
            ((cores / nproc).max(1), format!("a share of {cores} cores"))
        }
    }
}

/// What each rank of a multi-process launch runs. The launcher hands it to the ranks as
/// data (`lrlab rank JSON`), so no command line is rebuilt from parsed flags.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RankTask {
    /// `lrlab train`.
    Train(TrainArgs),
    /// `lrlab bench train`.
    BenchTrain(crate::train::bench::BenchTrainArgs),
}

/// Start `nproc` ranks of this program, rank `r` running `task(r)`, with the torchrun
/// variables, and wait for them. The launcher binds the rendezvous port itself and hands the
/// socket to rank 0 (no other program can take the port meanwhile), gives each rank its
/// share of the cores, forwards a stop (SIGTERM/SIGINT: every rank then checkpoints at the
/// same step and exits 3; a second stop kills them), and ends every rank as soon as one
/// fails. The other ranks' standard output is dropped (it would repeat rank 0's); rank 0's is
/// returned when `capture`, else shown. Returns the exit status (0, 3 when interrupted, or
/// the first failing rank's) and rank 0's captured output.
pub fn spawn_ranks(
    task: impl Fn(usize) -> RankTask,
    nproc: usize,
    capture: bool,
) -> Result<(u8, String)> {
    use crate::supervise::{Exit, Supervisor};
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::process::{Command, Stdio};
    let stop = crate::train::stop::flag()?;
    if stop.load(std::sync::atomic::Ordering::SeqCst) {
        // Stopped before any rank started (during the checks or the range test): nothing to
        // stop but this process.
        return Ok((3, String::new()));
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let (threads, _) = rank_threads(nproc);
    let exe = std::env::current_exe()?;
    let mut ranks = Supervisor::new(stop);
    for rank in 0..nproc {
        let task = serde_json::to_string(&task(rank)).map_err(|e| {
            crate::input_error(format!(
                "cannot hand the command to the ranks ({e}): are the paths UTF-8?"
            ))
        })?;
        let mut c = Command::new(&exe);
        c.arg("rank")
            .arg(task)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", nproc.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .env("LRLAB_RANK_THREADS", threads.to_string())
            // The launcher ran the checks and the range test: the ranks need not say them.
            .env("LRLAB_LAUNCHED", "1");
        // Rank 0 inherits the bound socket; the others do not get it.
        let inherit = if rank == 0 {
            c.env("LRLAB_LISTEN_FD", listener.as_raw_fd().to_string());
            if capture {
                c.stdout(Stdio::piped());
            }
            vec![listener.as_raw_fd()]
        } else {
            c.env_remove("LRLAB_LISTEN_FD");
            c.stdout(Stdio::null());
            vec![]
        };
        match crate::supervise::spawn(&mut c, &inherit) {
            Ok(ch) => ranks.add(ch, rank),
            Err(e) => {
                ranks.kill();
                anyhow::bail!("cannot start rank {rank} ({}): {e}", exe.display());
            }
        }
    }
    drop(listener);
    // Rank 0's output is read on a thread, so that a full pipe never blocks it.
    let reader = ranks
        .children()
        .next()
        .and_then(|(c, _)| c.take_stdout())
        .map(|mut o| {
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = o.read_to_string(&mut s);
                s
            })
        });
    let mut stopped = false;
    let mut failed: Option<(usize, i32)> = None;
    // A rank died of SIGINT/SIGTERM: a stop that reached it before it had installed its
    // handlers, which it does before anything else, so it had done nothing. The others are
    // at most waiting for it in the rendezvous: they are ended, and the run counts as
    // stopped (exit 3), not failed.
    let mut stopped_early = false;
    while !ranks.is_empty() {
        ranks.forward_stop();
        for (rank, exit) in ranks.reap()? {
            let code = match exit {
                Exit::Signal(libc::SIGINT | libc::SIGTERM) if failed.is_none() => {
                    stopped_early = true;
                    3
                }
                Exit::Signal(libc::SIGKILL) if stopped_early => 3,
                e => e.shell_code(),
            };
            stopped |= code == 3;
            if code != 0 && code != 3 && failed.is_none() {
                failed = Some((rank, code));
                eprintln!(
                    "lrlab: rank {rank} of {nproc} exited with status {code}; ending the others"
                );
            }
        }
        if failed.is_some() || stopped_early {
            ranks.kill();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = reader
        .map(|r| r.join().unwrap_or_default())
        .unwrap_or_default();
    let code = match failed {
        Some((_, code)) => code.clamp(1, 255) as u8,
        None if stopped => 3,
        None => 0,
    };
    Ok((code, output))
}

/// For `lrlab schedule RUN.toml`: the run's length as its training would see it (steps per
/// epoch from its data, `train_subset`, `val_split`, batch size and `drop_last`; epochs or
/// `train.steps`), or `None` when the file is not a run config (it has neither `[data]` nor
/// `[train]`, or has a `[preview]` table or a `--set preview.KEY`). `overrides` are the
/// command's `--set`s. Opening the data is what makes the count exact.
pub fn run_length_of(
    path: &std::path::Path,
    overrides: &[String],
) -> Result<Option<crate::schedule::RunLength>> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(None); // the schedule command reports the unreadable file itself
    };
    let Ok(doc) = text.parse::<toml::Table>() else {
        return Ok(None);
    };
    // A [preview] table is the spec's own choice of length, and wins.
    let preview_set = overrides
        .iter()
        .any(|o| o.trim_start().starts_with("preview"));
    if doc.contains_key("preview")
        || preview_set
        || (!doc.contains_key("data") && !doc.contains_key("train"))
    {
        return Ok(None);
    }
    let cfg = RunConfig::load(path, overrides)?;
    let name = path.display().to_string();
    let (_, k) = crate::train::setup::open_data(&cfg, tch::Device::Cpu)
        .map_err(|e| crate::config::blame(&name, overrides, e))?;
    let total = crate::train::setup::total_steps(&cfg, k);
    Ok(Some(crate::schedule::RunLength {
        steps_per_epoch: k,
        total_steps: total,
    }))
}

#[cfg(test)]
mod tests;
