//! Kill anywhere, lose nothing: SIGKILL a sweep (its whole process group, like a preempted
//! node) and single `lrlab train` runs at moments drawn from a seeded generator, resume each
//! time with the same command, and check that the result is the uninterrupted run's: same
//! CSVs (time columns aside), same snapshots, no run trained to its end twice, no temporary
//! file or held lock left. And Ctrl-C (SIGINT to the process group) on a sweep: exit 3, no
//! process left, runs `interrupted`, a second `lrlab sweep` completes them and removes the
//! temporary files that kills inside atomic writes leave (planted there, since random kills
//! seldom land inside such a short write; the torture test prints how many did).
//!
//! (SIGTERM on a single run is `sigterm_mid_epoch_resumes_exactly` in tests/suite/train.rs.)

use crate::common;
use common as fx;
use common::OutputWithin;

use fx::{bin, s, status, text, without_time, write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Four epochs of four steps of LeNet on 28x28 synthetic images (a few seconds), with
/// snapshots at the SGDR restarts so that snapshot writes can be hit too. The model is small
/// in compute but not in parameters (a 3.4 MB checkpoint), so that writing checkpoints takes
/// a good part of the training time and kills land in them.
const BASE: &str = r#"
[data]
dataset = "synthetic"
shape = [1, 28, 28]
size = 256
test_size = 64

[model]
arch = "lenet"

[train]
epochs = 4
batch_size = 64
threads = 1
snapshots = "restarts"

[schedule]
kind = "sgdr"
lr_max = 0.01
lr_min = 0.0
t_0 = 1
t_mult = 2
"#;

/// Three runs, so that with `--jobs 2` one starts after another ends.
const SPEC: &str = "base = \"base.toml\"\nseeds = [0, 1, 2]\n";

/// splitmix64: the kill moments are a function of the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Is `p` the temporary file of an atomic write?
fn is_temporary(p: &Path) -> bool {
    let name = p.file_name().unwrap().to_string_lossy();
    name.starts_with(".lrlab-tmp-")
        || name.starts_with(".checkpoint-")
        || name.starts_with(".snapshot-")
        || name.ends_with(".tmp")
}

/// No temporary file of an atomic write anywhere under `dir`, and no lock file still held.
fn nothing_left_behind(dir: &Path) {
    for p in files(dir) {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!is_temporary(&p), "temporary file left: {}", p.display());
        if name.ends_with(".lock") {
            let f = std::fs::File::open(&p).unwrap();
            use std::os::unix::io::AsRawFd;
            // SAFETY: flock on a descriptor we own; closing it releases our lock.
            let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            assert_eq!(rc, 0, "{} is still locked", p.display());
        }
    }
}

/// `run` (a run folder) finished with the reference run's results, trained to its end once.
fn same_as_reference(run: &Path, reference: &Path) {
    assert_eq!(status(run), "done", "{}", run.display());
    for f in ["steps.csv", "epochs.csv"] {
        assert_eq!(
            without_time(&run.join(f)),
            without_time(&reference.join(f)),
            "{} differs from the uninterrupted run's",
            run.join(f).display()
        );
    }
    let snaps = |d: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(d.join("snapshots"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(snaps(run), snaps(reference));
    for name in snaps(reference) {
        let read = |d: &Path| std::fs::read(d.join("snapshots").join(&name)).unwrap();
        assert!(
            read(run) == read(reference),
            "snapshot {name} of {} differs",
            run.display()
        );
    }
    let meta = fx::meta(run);
    assert_eq!(
        meta["completions"],
        1,
        "{} was trained to its end more than once: {meta}",
        run.display()
    );
    let done = fx::attempts(run)
        .iter()
        .filter(|a| a["outcome"] == "done")
        .count();
    assert!(done <= 1, "{}: {done} attempts ended done", run.display());
}

/// Is any process of process group `pgid` still alive (zombies hold nothing)?
fn group_alive(pgid: i32) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        // pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            return false;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        f.len() > 2 && f[2] == pgid.to_string() && f[0] != "Z" && f[0] != "X"
    })
}

/// Wait until every process of the group is gone (its locks are released then).
fn wait_group_gone(pgid: i32) {
    fx::wait_for(60, "the killed process group to exit", || {
        !group_alive(pgid)
    });
}

/// Start `cmd` as the leader of a new process group, its stderr into `log`.
fn spawn_group(mut cmd: Command, log: &Path) -> Child {
    cmd.process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// SIGKILL invocations of `cmd(folder)` at moments drawn from [0, early) (startup) or
/// [early, span) (training), uniformly, and resume
/// with the same command, until `want` kills have landed on a live process; an invocation
/// that ends before its kill completes the round and `check` judges the folder; the next
/// round starts afresh in a new folder.
fn torture(
    rng: &mut Rng,
    want: usize,
    early: Duration,
    span: Duration,
    work: &Path,
    cmd: impl Fn(&Path) -> Command,
    check: impl Fn(&Path),
) {
    let log = work.join("stderr.log");
    let mut kills = 0;
    let mut round = 0;
    let mut invocations = 0;
    let mut torn = 0;
    while kills < want {
        let out = work.join(format!("round{round}"));
        round += 1;
        loop {
            let mut child = spawn_group(cmd(&out), &log);
            invocations += 1;
            let pgid = child.id() as i32;
            // A quarter of the kills before training starts, the rest while it runs.
            let delay = if rng.unit() < 0.25 {
                early.mul_f64(rng.unit())
            } else {
                early + (span.saturating_sub(early)).mul_f64(rng.unit())
            };
            let start = Instant::now();
            let mut exited = None;
            while kills < want && start.elapsed() < delay {
                exited = child.try_wait().unwrap();
                if exited.is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            if exited.is_none() && kills < want {
                // SAFETY: signalling the process group this test started.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
                let st = child.wait().unwrap();
                wait_group_gone(pgid);
                if st.code().is_none() {
                    kills += 1;
                    if out.exists() && files(&out).iter().any(|p| is_temporary(p)) {
                        torn += 1;
                    }
                    continue;
                }
                exited = Some(st); // it ended on its own just before the kill
            }
            let st = match exited {
                Some(st) => st,
                None => child.wait().unwrap(),
            };
            let err = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(st.success(), "{}: {st}\n{err}", out.display());
            break;
        }
        check(&out);
    }
    eprintln!(
        "{want} kills in {invocations} invocations over {round} round(s), kill moments in \
         [0, {:.1} s) and [{:.1} s, {:.1} s); {torn} kill(s) cut an atomic write short (its \
         temporary file was left)",
        early.as_secs_f64(),
        early.as_secs_f64(),
        span.as_secs_f64()
    );
}

fn sweep_cmd(spec: &Path, out: &Path) -> Command {
    let mut c = Command::new(bin());
    c.args([
        "sweep",
        s(spec),
        "--out",
        s(out),
        "--jobs",
        "2",
        "--devices",
        "cpu",
    ]);
    c
}

/// Run `cmd` to its end: how long until `started()` first held (training began), and in all.
fn timed(mut cmd: Command, started: impl Fn() -> bool) -> (Duration, Duration) {
    let t = Instant::now();
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut early = None;
    loop {
        if early.is_none() && started() {
            early = Some(t.elapsed());
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let span = t.elapsed();
    (early.unwrap_or(span / 2), span)
}

/// The uninterrupted sweep (its runs are the references): when its first run started
/// training, and its wall time.
fn reference_sweep(dir: &Path) -> (PathBuf, PathBuf, Duration, Duration) {
    write(dir, "base.toml", BASE);
    let spec = write(dir, "spec.toml", SPEC);
    let reference = dir.join("reference");
    let (early, span) = timed(sweep_cmd(&spec, &reference), || {
        reference.join("seed=0").join("status.json").exists()
    });
    (spec, reference, early, span)
}

fn run_names(sweep: &Path) -> Vec<String> {
    lrlab::sweep::manifest::Manifest::load(sweep)
        .unwrap()
        .runs
        .iter()
        .map(|r| r.name.clone())
        .collect()
}

#[test]
fn sigkill_at_random_moments_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, reference, sweep_early, sweep_span) = reference_sweep(dir.path());
    let names = run_names(&reference);
    let mut rng = Rng(20261128);

    // (a) The sweep, killed with its children: at startup, while planning, while runs write
    // checkpoints and CSVs, between runs, while collecting (8 kills).
    let work = dir.path().join("sweeps");
    std::fs::create_dir_all(&work).unwrap();
    // Kill moments within the first 3/4 of an uninterrupted sweep's time: resumed
    // invocations start from the checkpoints, so the kills still reach the later phases.
    torture(
        &mut rng,
        8,
        sweep_early,
        sweep_span.mul_f64(0.75),
        &work,
        |out| sweep_cmd(&spec, out),
        |out| {
            assert_eq!(run_names(out), names);
            for n in &names {
                same_as_reference(&out.join(n), &reference.join(n));
            }
            let (h, rows) = fx::read_csv(&out.join("summary.csv"));
            assert_eq!(rows.len(), names.len());
            assert!(rows.iter().all(|r| fx::field(&h, r, "status") == "done"));
            nothing_left_behind(out);
        },
    );

    // (b) A single run (the sweep's first run, trained alone), killed 12 times.
    let config = reference.join(&names[0]).join("config.toml");
    let alone = dir.path().join("alone");
    let mut c = Command::new(bin());
    c.args(["train", s(&config), "--out", s(&alone), "--quiet"]);
    let (run_early, run_span) = timed(c, || alone.join("status.json").exists());
    same_as_reference(&dir.path().join("alone"), &reference.join(&names[0]));
    let work = dir.path().join("runs");
    std::fs::create_dir_all(&work).unwrap();
    torture(
        &mut rng,
        12,
        run_early,
        run_span,
        &work,
        |out| {
            let mut c = Command::new(bin());
            c.args(["train", s(&config), "--out", s(out), "--quiet"]);
            c
        },
        |out| {
            same_as_reference(out, &reference.join(&names[0]));
            nothing_left_behind(out);
        },
    );
}

#[test]
fn ctrl_c_stops_a_sweep_and_a_second_sweep_completes_it() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, reference, _, _) = reference_sweep(dir.path());
    let names = run_names(&reference);
    let sweep = dir.path().join("sweep");
    let log = dir.path().join("stderr.log");
    let mut child = spawn_group(sweep_cmd(&spec, &sweep), &log);
    let pgid = child.id() as i32;
    // Ctrl-C once one of the first two runs has trained an epoch: the third has not started
    // then, so whatever the machine's load delays, a run is still in flight or pending when the
    // signal lands (a run may also finish in between; that is allowed below).
    fx::wait_for(300, "a run's first epoch", || {
        names[..2].iter().any(|n| {
            lrlab::run::Status::read(&sweep.join(n))
                .is_some_and(|st| st.status == lrlab::run::State::Running && st.epoch >= 1)
        })
    });
    // SAFETY: signalling the process group this test started, as a terminal does.
    unsafe { libc::kill(-pgid, libc::SIGINT) };
    let mut code = None;
    fx::wait_for(60, "the sweep to stop after SIGINT", || {
        code = child.try_wait().unwrap();
        code.is_some()
    });
    let err = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code.unwrap().code(), Some(3), "{err}");
    assert!(!group_alive(pgid), "processes of the sweep outlived it");
    assert!(err.contains("interrupted"), "{err}");

    // Runs in flight are interrupted (checkpointed), the unstarted ones pending, and one that
    // ended before the signal landed is done; none failed.
    let table = String::from_utf8(
        Command::new(bin())
            .args(["sweep", "status", s(&sweep)])
            .output_within(common::DEADLINE_S)
            .unwrap()
            .stdout,
    )
    .unwrap();
    let mut interrupted = 0;
    for n in &names {
        let st = status(&sweep.join(n));
        assert!(
            st == "interrupted" || st == "done" || st.is_empty(),
            "{n}: status {st:?} after Ctrl-C\n{table}"
        );
        if st == "interrupted" {
            interrupted += 1;
            assert!(
                table
                    .lines()
                    .any(|l| l.contains(n.as_str()) && l.contains("interrupted")),
                "{table}"
            );
        }
    }
    assert!(interrupted >= 1, "no run was in flight:\n{table}");

    // What a SIGKILL inside an atomic write leaves behind (the random kills above seldom land
    // in one: the writes are short): partial temporary files. The next sweep removes them.
    write(&sweep, ".lrlab-tmp-Ab12Cd", "{\"format\": 1, \"na");
    for n in &names {
        let run = sweep.join(n);
        if status(&run) != "done" {
            write(&run, ".lrlab-tmp-Xy34Zw", "{\"status\": \"runn");
            write(&run, ".checkpoint-Qq56Rr.tmp", "partial");
            write(&run.join("snapshots"), ".snapshot-Ss78Tt.tmp", "partial");
        }
    }

    let o = sweep_cmd(&spec, &sweep)
        .output_within(common::DEADLINE_S)
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    for n in &names {
        same_as_reference(&sweep.join(n), &reference.join(n));
    }
    nothing_left_behind(&sweep);
}
