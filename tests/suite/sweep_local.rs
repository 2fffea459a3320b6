//! The local executor on tiny synthetic runs: a sweep of 4 runs two at a time and its
//! summary.csv / curves.csv, resume (nothing runs twice; a stopped run resumes from its
//! checkpoint to the same curve; a failed run is retried only with --retry-failed), two
//! runners on one folder, and GPU tokens (with a stand-in for `lrlab train`).

use crate::common;
use crate::fixtures as data_fixtures;
use common as fx;

use fx::{attempts, bin, field, lrlab, meta, read_csv, s, status, text, write, BASE};
use std::path::Path;
use std::process::Command;

const FOUR: &str = r#"
base = "base.toml"
seeds = [0, 1]
[grid]
"optim.weight_decay" = [0.0, 5e-4]
[target]
test_acc = 0.5
"#;

/// Intervals [started, ended] of all attempts in a sweep, with their device ids.
fn intervals(sweep: &Path, names: &[String]) -> Vec<(f64, f64, String)> {
    names
        .iter()
        .flat_map(|n| attempts(&sweep.join(n)))
        .map(|a| {
            (
                a["started"].as_f64().unwrap(),
                a["ended"].as_f64().unwrap(),
                a["cuda_visible_devices"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The largest number of intervals that overlap at one time.
fn max_overlap(iv: &[(f64, f64, String)]) -> usize {
    iv.iter()
        .map(|(t, _, _)| iv.iter().filter(|(a, b, _)| a <= t && t < b).count())
        .max()
        .unwrap_or(0)
}

#[test]
fn four_runs_two_at_a_time_collect_and_resume_without_rerunning() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "base.toml", BASE);
    let spec = write(dir.path(), "spec.toml", FOUR);
    let sweep = dir.path().join("sweep");
    let o = lrlab(&[
        "sweep",
        s(&spec),
        "--out",
        s(&sweep),
        "--jobs",
        "2",
        "--devices",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", text(&o));

    let m = lrlab::sweep::manifest::Manifest::load(&sweep).unwrap();
    let names: Vec<String> = m.runs.iter().map(|r| r.name.clone()).collect();
    assert_eq!(names.len(), 4);
    for n in &names {
        let run = sweep.join(n);
        assert_eq!(status(&run), "done", "{n}");
        let a = attempts(&run);
        assert_eq!(a.len(), 1, "{n}");
        assert_eq!(a[0]["device"], "cpu");
        assert_eq!(
            a[0]["cuda_visible_devices"], "",
            "GPUs are hidden from CPU runs"
        );
        // train verified the config.toml the sweep wrote: it is the planned run, on the CPU
        // with its share of the cores for the loader (the base fixes threads = 1).
        let parse = |t: &str| lrlab::config::RunConfig::from_toml_str(t).unwrap();
        let cfg = parse(&std::fs::read_to_string(run.join("config.toml")).unwrap());
        let planned = parse(&m.runs.iter().find(|r| &r.name == n).unwrap().config);
        assert!(lrlab::sweep::exec::same_run(&cfg, &planned));
        assert_eq!(
            (
                planned.train.device.to_string().as_str(),
                planned.data.workers
            ),
            ("auto", 0)
        );
        assert_eq!(
            (cfg.train.device.to_string().as_str(), cfg.train.threads),
            ("cpu", 1)
        );
        assert!(cfg.data.workers >= 1);
    }
    let iv = intervals(&sweep, &names);
    assert!(
        max_overlap(&iv) <= 2,
        "more than --jobs 2 runs at once: {iv:?}"
    );

    // summary.csv: one row per run, values taken from the run's epochs.csv.
    let (h, rows) = read_csv(&sweep.join("summary.csv"));
    assert_eq!(rows.len(), 4);
    for row in &rows {
        let name = field(&h, row, "name");
        let curve = read_csv(&sweep.join(name).join("epochs.csv"));
        let accs: Vec<f64> = curve
            .1
            .iter()
            .map(|r| field(&curve.0, r, "test_acc").parse().unwrap())
            .collect();
        let best = accs.iter().cloned().fold(f64::MIN, f64::max);
        let best_epoch = accs.iter().position(|&a| a == best).unwrap() + 1;
        let reach = accs
            .iter()
            .position(|&a| a >= 0.5)
            .map(|i| (i + 1).to_string());
        assert_eq!(field(&h, row, "status"), "done");
        assert_eq!(field(&h, row, "epochs"), "2");
        assert_eq!(
            field(&h, row, "final_test_acc").parse::<f64>().unwrap(),
            accs[1]
        );
        assert_eq!(
            field(&h, row, "best_test_acc").parse::<f64>().unwrap(),
            best
        );
        assert_eq!(field(&h, row, "best_epoch"), best_epoch.to_string());
        assert_eq!(field(&h, row, "target_acc"), "0.5");
        assert_eq!(field(&h, row, "epoch_to_target"), reach.unwrap_or_default());
        let last = curve.1.last().unwrap();
        let time = |v: &str| v.parse::<f64>().unwrap();
        assert_eq!(
            time(field(&h, row, "wall_s")),
            time(field(&curve.0, last, "time_s"))
        );
        assert_eq!(field(&h, row, "attempts"), "1");
        let r = m.runs.iter().find(|r| r.name == name).unwrap();
        assert_eq!(
            field(&h, row, "optim.weight_decay"),
            r.labels["optim.weight_decay"]
        );
        assert_eq!(field(&h, row, "seed"), r.labels["seed"]);
    }

    // curves.csv: every epochs.csv row, in long format with the run's labels.
    let (ch, crows) = read_csv(&sweep.join("curves.csv"));
    assert_eq!(
        ch[..4],
        ["index", "name", "optim.weight_decay", "seed"].map(String::from)
    );
    assert_eq!(ch[4..].join(","), lrlab::run::EPOCHS_HEADER);
    assert_eq!(crows.len(), 8);
    for r in &m.runs {
        let want: Vec<String> = std::fs::read_to_string(sweep.join(&r.name).join("epochs.csv"))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| {
                format!(
                    "{},{},{},{},{l}",
                    r.index, r.name, r.labels["optim.weight_decay"], r.labels["seed"]
                )
            })
            .collect();
        let got: Vec<String> = crows
            .iter()
            .filter(|c| c[1] == r.name)
            .map(|c| c.join(","))
            .collect();
        assert_eq!(got, want);
    }
    let (bh, brows) = read_csv(&sweep.join("summary_by_point.csv"));
    assert_eq!(brows.len(), 2);
    assert!(brows.iter().all(|r| field(&bh, r, "runs") == "2"));
    // The sweep ended by printing the same per-point numbers, in percent.
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("point") && err.contains("final test acc %"),
        "{err}"
    );
    for r in &brows {
        let wd = field(&bh, r, "optim.weight_decay");
        let mean: f64 = field(&bh, r, "final_test_acc_mean").parse().unwrap();
        let line = err
            .lines()
            .find(|l| l.starts_with(&format!("optim.weight_decay={wd} ")))
            .unwrap_or_else(|| panic!("no line for weight_decay {wd}: {err}"));
        assert!(line.contains("2 (2)"), "{line}");
        assert!(line.contains(&format!("{:.2} ± ", 100.0 * mean)), "{line}");
    }
    // `sweep status` takes the spec (with its --out) as well as the folder.
    let by_folder = lrlab(&["sweep", "status", s(&sweep)]);
    let by_spec = lrlab(&["sweep", "status", s(&spec), "--out", s(&sweep)]);
    assert!(by_spec.status.success(), "{}", text(&by_spec));
    assert_eq!(by_folder.stdout, by_spec.stdout);

    // The same command again runs nothing.
    let o = lrlab(&[
        "sweep",
        s(&spec),
        "--out",
        s(&sweep),
        "--jobs",
        "2",
        "--devices",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("0 started now"),
        "{}",
        text(&o)
    );
    for n in &names {
        assert_eq!(attempts(&sweep.join(n)).len(), 1);
        assert_eq!(meta(&sweep.join(n))["attempts"], 1);
    }
    // The folder alone continues the sweep too.
    let o = lrlab(&["sweep", s(&sweep)]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("0 started now"));
}

#[test]
fn a_stopped_sweep_resumes_from_the_checkpoint_to_the_same_curve() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "base.toml",
        &BASE.replace("epochs = 2", "epochs = 8"),
    );
    let spec = write(
        dir.path(),
        "spec.toml",
        "base = \"base.toml\"\nseeds = [3]\n",
    );
    let sweep = dir.path().join("sweep");
    let run = sweep.join("seed=3");
    let child = Command::new(bin())
        .args(["sweep", s(&spec), "--out", s(&sweep), "--devices", "cpu"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    fx::wait_for(300, "the first epoch", || {
        lrlab::run::Status::read(&run).is_some_and(|st| st.epoch >= 1)
    });
    // SIGTERM to the sweep: it passes it on; the run checkpoints and stops.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert_eq!(status(&run), "interrupted");
    let stopped_at = lrlab::run::Status::read(&run).unwrap().step;
    assert!(
        stopped_at > 0 && stopped_at < 64,
        "stopped at step {stopped_at}"
    );

    let o = lrlab(&["sweep", s(&spec), "--out", s(&sweep), "--devices", "cpu"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(status(&run), "done");
    let m = meta(&run);
    assert_eq!(m["attempts"], 2);
    assert_eq!(m["resumed_from_step"], stopped_at);
    let a = attempts(&run);
    assert_eq!(a.len(), 2);
    assert_eq!(
        (a[0]["outcome"].as_str(), a[1]["outcome"].as_str()),
        (Some("interrupted"), Some("done"))
    );

    // The same config trained without interruption gives the same curve.
    let reference = dir.path().join("reference");
    let o = lrlab(&[
        "train",
        s(&run.join("config.toml")),
        "--out",
        s(&reference),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(fx::curve(&run), fx::curve(&reference));
    assert_eq!(fx::curve(&run).len(), 9);
}

#[test]
fn a_failed_run_is_retried_only_with_retry_failed() {
    let dir = tempfile::tempdir().unwrap();
    let mnist = dir.path().join("mnist");
    write(dir.path(), "base.toml", BASE);
    let spec = write(
        dir.path(),
        "spec.toml",
        &format!(
            r#"
base = "base.toml"
[grid.data]
mnist = {{ dataset = "mnist", path = "{}" }}
synthetic = {{ dataset = "synthetic", shape = [1, 28, 28], size = 256, test_size = 64 }}
"#,
            s(&mnist)
        ),
    );
    let sweep = dir.path().join("sweep");
    let failing = sweep.join("data=mnist");
    let synthetic = sweep.join("data=synthetic");
    let args = [
        "sweep",
        s(&spec),
        "--out",
        s(&sweep),
        "--devices",
        "cpu",
        "--jobs",
        "1",
    ];
    // The MNIST folder does not exist yet: that run (the first) fails; --fail-fast stops
    // there, before the other starts.
    let mut fail_fast = args.to_vec();
    fail_fast.push("--fail-fast");
    let o = lrlab(&fail_fast);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(status(&failing), "failed");
    assert_eq!(status(&synthetic), "", "not started");
    assert!(attempts(&synthetic).is_empty());
    let (h, rows) = read_csv(&sweep.join("summary.csv"));
    let row = |name: &str| {
        rows.iter()
            .find(|r| field(&h, r, "name") == name)
            .unwrap()
            .clone()
    };
    assert_eq!(field(&h, &row("data=mnist"), "status"), "failed");
    assert!(field(&h, &row("data=mnist"), "reason").contains(s(&mnist)));
    assert_eq!(field(&h, &row("data=synthetic"), "status"), "pending");

    // Without --fail-fast the other run finishes; without --retry-failed the failed one is
    // not run again, and the exit status still says failure.
    let o = lrlab(&args);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not retried"),
        "{}",
        text(&o)
    );
    assert_eq!(status(&synthetic), "done");
    assert_eq!(attempts(&failing).len(), 1);
    let st = lrlab(&["sweep", "status", s(&sweep)]);
    let table = String::from_utf8_lossy(&st.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.contains("data=mnist") && l.contains("failed")),
        "{table}"
    );

    // With the data in place, --retry-failed runs it again and it finishes.
    std::fs::create_dir_all(&mnist).unwrap();
    data_fixtures::write_mnist(&mnist, false, 128, 64);
    let mut retry = args.to_vec();
    retry.push("--retry-failed");
    let o = lrlab(&retry);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(status(&failing), "done");
    assert_eq!(attempts(&failing).len(), 2);
    assert_eq!(attempts(&synthetic).len(), 1);
}

#[test]
fn two_runners_on_one_folder_never_run_the_same_run() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "base.toml", BASE);
    let spec = write(dir.path(), "spec.toml", FOUR);
    let sweep = dir.path().join("sweep");
    let start = || {
        Command::new(bin())
            .args([
                "sweep",
                s(&spec),
                "--out",
                s(&sweep),
                "--devices",
                "cpu",
                "--jobs",
                "1",
            ])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (start(), start());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", text(&a));
    assert!(b.status.success(), "{}", text(&b));
    let m = lrlab::sweep::manifest::Manifest::load(&sweep).unwrap();
    assert_eq!(m.runs.len(), 4);
    for r in &m.runs {
        let run = sweep.join(&r.name);
        assert_eq!(status(&run), "done");
        assert_eq!(attempts(&run).len(), 1, "{} ran twice", r.name);
        assert_eq!(meta(&run)["attempts"], 1, "{} trained twice", r.name);
    }
    let started = |o: &std::process::Output| {
        String::from_utf8_lossy(&o.stderr)
            .lines()
            .filter(|l| l.contains("] start "))
            .count()
    };
    assert_eq!(started(&a) + started(&b), 4);
}

/// A stand-in for `lrlab train CONFIG --out DIR --quiet` that records the GPU it was given.
const FAKE_TRAIN: &str = r#"#!/bin/sh
out="$4"
printf '%s' "$CUDA_VISIBLE_DEVICES" > "$out/gpu"
sleep 1
printf '{"status":"done","reason":"","epoch":1,"step":1,"updated":0}\n' > "$out/status.json"
"#;

#[test]
fn gpu_tokens_pin_each_child_to_its_own_device() {
    use lrlab::sweep::devices::{parse_devices, slots};
    use lrlab::sweep::local::{run_local, LocalOptions};
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "base.toml", BASE);
    let spec = write(
        dir.path(),
        "spec.toml",
        "base = \"base.toml\"\nseeds = [0, 1, 2, 3, 4, 5]\n",
    );
    let fake = write(dir.path(), "fake-lrlab", FAKE_TRAIN);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sweep = dir.path().join("sweep");
    let plan = lrlab::sweep::plan::load(&spec).unwrap();
    let m = lrlab::sweep::manifest::freeze(&sweep, &plan).unwrap();
    // The runner itself sees physical GPUs 6 and 7 as cuda:0 and cuda:1.
    let devices = parse_devices("cuda:0,cuda:1", 2).unwrap();
    let opts = LocalOptions {
        slots: slots(&devices, 1, 0, Some("6,7")),
        jobs: 2,
        threads: 1,
        retry_failed: false,
        fail_fast: false,
        program: fake,
        progress: false,
    };
    let report = run_local(&sweep, &m, &opts).unwrap();
    assert_eq!(
        (report.launched, report.done, report.exit_code()),
        (6, 6, 0)
    );
    let names: Vec<String> = m.runs.iter().map(|r| r.name.clone()).collect();
    for n in &names {
        let run = sweep.join(n);
        let gpu = std::fs::read_to_string(run.join("gpu")).unwrap();
        assert!(
            gpu == "6" || gpu == "7",
            "{n}: CUDA_VISIBLE_DEVICES={gpu:?}"
        );
        let a = attempts(&run);
        assert_eq!(a[0]["cuda_visible_devices"], gpu.as_str());
        assert_eq!(a[0]["device"], if gpu == "6" { "cuda:0" } else { "cuda:1" });
        let cfg = std::fs::read_to_string(run.join("config.toml")).unwrap();
        assert!(
            cfg.contains("device = \"cuda:0\""),
            "inside, the run sees one GPU: cuda:0"
        );
    }
    // Runs that overlap in time hold different GPUs.
    let iv = intervals(&sweep, &names);
    for (i, x) in iv.iter().enumerate() {
        for y in &iv[i + 1..] {
            if x.0 < y.1 && y.0 < x.1 {
                assert_ne!(x.2, y.2, "two runs on one GPU at once: {x:?} {y:?}");
            }
        }
    }
    assert!(max_overlap(&iv) <= 2);
}

#[test]
fn a_run_whose_attempt_cannot_be_recorded_does_not_stop_the_sweep() {
    // The runner appends to RUN/attempts.jsonl after each run; when that fails (here a folder
    // stands in its way, as a full disk would), the sweep warns and runs the other runs.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "base.toml", BASE);
    let spec = write(
        dir.path(),
        "spec.toml",
        "base = \"base.toml\"\nseeds = [0, 1]\n",
    );
    let sweep = dir.path().join("sweep");
    std::fs::create_dir_all(sweep.join("seed=0/attempts.jsonl")).unwrap();
    let o = lrlab(&[
        "sweep",
        s(&spec),
        "--out",
        s(&sweep),
        "--devices",
        "cpu",
        "--jobs",
        "1",
        "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("warning: seed=0: attempt not recorded: cannot open")
            && err.contains("attempts.jsonl"),
        "{err}"
    );
    assert_eq!(status(&sweep.join("seed=0")), "done");
    assert_eq!(status(&sweep.join("seed=1")), "done");
    assert_eq!(attempts(&sweep.join("seed=1")).len(), 1);
}

/// A sweep started in an environment with a rendezvous (under torchrun, or a shell left with
/// WORLD_SIZE) trains each run in one process: the variables do not reach the runs. Before,
/// every run waited for a peer that never came.
#[test]
fn inherited_rendezvous_variables_do_not_reach_the_runs() {
    use fx::OutputWithin;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "base.toml", BASE);
    let spec = write(
        dir.path(),
        "spec.toml",
        "base = \"base.toml\"\n[grid]\n\"optim.weight_decay\" = [0.0, 5e-4]\n",
    );
    let sweep = dir.path().join("sweep");
    let o = Command::new(bin())
        .args(["sweep", s(&spec), "--out", s(&sweep), "--jobs", "2"])
        .args(["--devices", "cpu"])
        .env("WORLD_SIZE", "2")
        .env("RANK", "0")
        .env("LOCAL_RANK", "0")
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", "1")
        .output_within(fx::DEADLINE_S)
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let (h, rows) = read_csv(&sweep.join("summary.csv"));
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(field(&h, r, "status"), "done", "{}", text(&o));
    }
}
