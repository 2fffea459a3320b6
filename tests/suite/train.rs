//! The training loop end to end, through the binary: learning on real data, the schedule
//! actually applied, exact resume after SIGTERM and SIGKILL, divergence, and bad configs.

use crate::common;

use common::{cmd as lrlab, ok, without_time, write, OutputWithin};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

/// A quick run on synthetic 1x28x28 data with LeNet (about a second per epoch).
fn synthetic(epochs: u64, schedule: &str) -> String {
    format!(
        r#"
[data]
dataset = "synthetic"
shape = [1, 28, 28]
size = 1024
test_size = 256

[model]
arch = "lenet"

[train]
epochs = {epochs}
batch_size = 64
threads = 1
seed = 3

[schedule]
{schedule}
"#
    )
}

fn run(args: &[&str]) -> Output {
    lrlab()
        .args(args)
        .output_within(common::DEADLINE_S)
        .unwrap()
}

/// `lrlab train CFG --out OUT --quiet`.
fn train_quiet(cfg: &Path, out: &Path) -> Output {
    run(&[
        "train",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ])
}

fn status(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("status.json")).unwrap()).unwrap()
}

fn no_temp_files(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !name.ends_with(".tmp") && !name.starts_with(".lrlab-tmp"),
            "temporary file left: {name}"
        );
    }
}

#[test]
fn steps_csv_holds_the_schedule_values() {
    let t = tempfile::tempdir().unwrap();
    let sched = "kind = \"one_cycle\"\nmax_lr = 0.02\n";
    let cfg = write(t.path(), "run.toml", &synthetic(2, sched));
    let out = t.path().join("run");
    // A momentum the one_cycle schedule overrides: a warning, and the steps keep the
    // schedule's momentum (compared with `lrlab schedule` below).
    let first = run(&[
        "train",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
        "--set",
        "optim.momentum=0.95",
    ]);
    ok(&first);
    let err = String::from_utf8_lossy(&first.stderr);
    assert!(
        err.contains(
            "warning: optim.momentum = 0.95 is not used: the one_cycle schedule sets the \
             momentum of every step (0.85"
        ),
        "{err}"
    );
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["momentum_from"], "schedule");
    // The same schedule rendered by `lrlab schedule` for 2 epochs of 16 steps.
    let spec = write(t.path(), "s.toml", sched);
    let r = run(&[
        "schedule",
        spec.to_str().unwrap(),
        "--epochs",
        "2",
        "--steps-per-epoch",
        "16",
    ]);
    ok(&r);
    let rendered = String::from_utf8(r.stdout).unwrap();
    let steps = std::fs::read_to_string(out.join("steps.csv")).unwrap();
    let a: Vec<String> = rendered
        .lines()
        .skip(1)
        .map(|l| l.split(',').take(4).collect::<Vec<_>>().join(","))
        .collect();
    let b: Vec<String> = steps
        .lines()
        .skip(1)
        .map(|l| l.split(',').take(4).collect::<Vec<_>>().join(","))
        .collect();
    assert_eq!(a.len(), 32);
    assert_eq!(
        a, b,
        "step,epoch,lr,momentum of steps.csv differ from `lrlab schedule`"
    );
    assert_eq!(status(&out)["status"], "done");
    let epochs = std::fs::read_to_string(out.join("epochs.csv")).unwrap();
    assert_eq!(epochs.lines().count(), 3, "{epochs}");
    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    for key in [
        "[data]",
        "[model]",
        "[optim]",
        "[train]",
        "[schedule]",
        "momentum_convention",
        "wd_scope",
    ] {
        assert!(
            config.contains(key),
            "resolved config lacks {key}:\n{config}"
        );
    }
    no_temp_files(&out);
    // A finished run is not run again.
    let again = run(&[
        "train",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
        "--set",
        "optim.momentum=0.95",
    ]);
    ok(&again);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a finished run"));
}

/// Train the reference run, then the same run interrupted by `signal` once its progress
/// passes `after`, resumed; the CSVs must be identical (time columns aside), the Hessian-free
/// LR estimate's (`train.hf_lr_every = hf_every`, iterates `hf_stride` apart) included.
fn interrupted_equals_uninterrupted(signal: i32, wait_for: &str, hf_every: u64, hf_stride: u64) {
    interrupted_equals_uninterrupted_with(
        signal,
        wait_for,
        (hf_every, hf_stride),
        "kind = \"sgdr\"\nlr_max = 0.01\nlr_min = 0.0\nt_0 = 1\nt_mult = 2\n",
    );
}

/// [`interrupted_equals_uninterrupted`] with the schedule table `schedule`.
fn interrupted_equals_uninterrupted_with(
    signal: i32,
    wait_for: &str,
    (hf_every, hf_stride): (u64, u64),
    schedule: &str,
) -> std::path::PathBuf {
    let t = tempfile::tempdir().unwrap();
    let cfg = write(
        t.path(),
        "run.toml",
        &synthetic(6, schedule).replace(
            "seed = 3\n",
            &format!("seed = 3\nhf_lr_every = {hf_every}\nhf_lr_stride = {hf_stride}\n"),
        ),
    );
    let cfg = cfg.to_str().unwrap();
    let reference = t.path().join("ref");
    ok(&run(&[
        "train",
        cfg,
        "--out",
        reference.to_str().unwrap(),
        "--quiet",
    ]));

    // The signal must land while the run trains. On a loaded machine the run can end between
    // the moment this test sees it ready and the signal: that round proves nothing and is
    // tried again in a fresh folder (never counted as a pass).
    let mut round = 0;
    let resumed = loop {
        assert!(round < 5, "the run ended before the signal in 5 rounds");
        let resumed = t.path().join(format!("resumed{round}"));
        round += 1;
        let mut child = lrlab()
            .args(["train", cfg, "--out", resumed.to_str().unwrap(), "--quiet"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        loop {
            let ready = match wait_for {
                "checkpoint" => resumed.join("checkpoint.safetensors").exists(),
                _ => std::fs::read_to_string(resumed.join("steps.csv"))
                    .map(|s| s.lines().count() > 24)
                    .unwrap_or(false),
            };
            if ready || start.elapsed() > Duration::from_secs(120) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(child.id() as i32, signal) };
        let code = child.wait().unwrap();
        if code.success() && status(&resumed)["status"] == "done" {
            continue;
        }
        if signal == libc::SIGTERM {
            assert_eq!(
                code.code(),
                Some(3),
                "SIGTERM should end the run with status 3 (interrupted)"
            );
            assert_eq!(status(&resumed)["status"], "interrupted");
        }
        break resumed;
    };
    ok(&run(&[
        "train",
        cfg,
        "--out",
        resumed.to_str().unwrap(),
        "--quiet",
    ]));
    for f in ["steps.csv", "epochs.csv"] {
        assert_eq!(
            without_time(&reference.join(f)),
            without_time(&resumed.join(f)),
            "{f} differs after resume"
        );
    }
    let hf = std::fs::read_to_string(reference.join("hf_lr.csv")).unwrap();
    assert_eq!(
        hf.lines().count() as u64,
        1 + (1..=6 * 16 - 2 * hf_stride)
            .filter(|s| s % hf_every == 0)
            .count() as u64,
        "one row per window"
    );
    for f in ["hf_lr.csv", "hf_lr_layers.csv"] {
        assert_eq!(
            std::fs::read_to_string(reference.join(f)).unwrap(),
            std::fs::read_to_string(resumed.join(f)).unwrap(),
            "{f} differs after resume"
        );
    }
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(resumed.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["attempts"], 2);
    no_temp_files(&resumed);
    let kept = t.keep();
    kept.join("ref")
}

#[test]
fn sigterm_mid_epoch_resumes_exactly() {
    interrupted_equals_uninterrupted(libc::SIGTERM, "steps", 2, 1);
}

#[test]
fn a_plateau_run_killed_mid_epoch_resumes_exactly() {
    // ReduceLROnPlateau on the training loss, halving whenever an epoch does not beat the best
    // by 10 (never after the first): the LR changes at every epoch end from the second on. The
    // kill lands after the first checkpoint, so the resumed attempt continues right only if it
    // replays the logged losses (without epoch 1's, epoch 2 would count as an improvement).
    let reference = interrupted_equals_uninterrupted_with(
        libc::SIGKILL,
        "checkpoint",
        (3, 1),
        "kind = \"plateau\"\nlr = 0.01\nmetric = \"train_loss\"\nfactor = 0.5\npatience = 0\n\
         threshold = 10\nthreshold_mode = \"abs\"\n",
    );
    let steps = std::fs::read_to_string(reference.join("steps.csv")).unwrap();
    let mut lrs: Vec<String> = steps
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(2).unwrap().to_string())
        .collect();
    lrs.dedup();
    assert_eq!(
        lrs,
        ["0.01", "0.005", "0.0025", "0.00125", "0.000625"],
        "epochs 1-2 at 0.01, then halved after each epoch"
    );
    let _ = std::fs::remove_dir_all(reference.parent().unwrap());
}

/// `train.checkpoint_every = 5` (steps; 16 steps per epoch): a SIGKILL between two mid-epoch
/// checkpoints loses only the steps since the last one, the resumed run starts mid-epoch, and
/// its CSVs equal an uninterrupted run's, which equal a run without mid-epoch checkpoints.
#[test]
fn a_sigkill_between_mid_epoch_checkpoints_resumes_exactly() {
    let t = tempfile::tempdir().unwrap();
    let text = synthetic(3, "kind = \"cosine\"\nlr_max = 0.01\n")
        .replace("seed = 3\n", "seed = 3\ncheckpoint_every = 5\n");
    let cfg = write(t.path(), "run.toml", &text);
    let cfg = cfg.to_str().unwrap();
    let reference = t.path().join("ref");
    ok(&run(&[
        "train",
        cfg,
        "--out",
        reference.to_str().unwrap(),
        "--quiet",
    ]));
    let plain = t.path().join("plain");
    ok(&run(&[
        "train",
        cfg,
        "--out",
        plain.to_str().unwrap(),
        "--quiet",
        "--set",
        "train.checkpoint_every=0",
    ]));
    for f in ["steps.csv", "epochs.csv"] {
        assert_eq!(
            without_time(&reference.join(f)),
            without_time(&plain.join(f)),
            "{f}: mid-epoch checkpoints changed the training"
        );
    }
    let mut round = 0;
    let (resumed, from) = loop {
        assert!(round < 5, "no kill landed mid-epoch in 5 rounds");
        let resumed = t.path().join(format!("killed{round}"));
        round += 1;
        let mut child = lrlab()
            .args(["train", cfg, "--out", resumed.to_str().unwrap(), "--quiet"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        // Past the checkpoint after step 20 (epoch 2, batch 4), before the next at 25.
        while !std::fs::read_to_string(resumed.join("steps.csv"))
            .map(|s| s.lines().count() > 22)
            .unwrap_or(false)
            && start.elapsed() < Duration::from_secs(120)
            && child.try_wait().unwrap().is_none()
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        child.wait().unwrap();
        let r = lrlab()
            .args(["train", cfg, "--out", resumed.to_str().unwrap()])
            .output_within(common::DEADLINE_S)
            .unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let err = String::from_utf8_lossy(&r.stderr).into_owned();
        let from: Option<u64> = err
            .split("resuming from step ")
            .nth(1)
            .and_then(|x| x.split_whitespace().next())
            .and_then(|x| x.parse().ok());
        match from {
            Some(n) if n % 16 != 0 => break (resumed, n),
            _ => continue,
        }
    };
    assert_eq!(
        from % 5,
        0,
        "resumed from step {from}: not a checkpoint of every 5 steps"
    );
    for f in ["steps.csv", "epochs.csv"] {
        assert_eq!(
            without_time(&reference.join(f)),
            without_time(&resumed.join(f)),
            "{f} differs after a kill and a resume from step {from}"
        );
    }
    no_temp_files(&resumed);
}

#[test]
fn sigkill_resumes_exactly() {
    interrupted_equals_uninterrupted(libc::SIGKILL, "checkpoint", 1, 3);
}

#[test]
fn divergence_is_a_result() {
    let t = tempfile::tempdir().unwrap();
    let cfg = write(
        t.path(),
        "run.toml",
        &synthetic(2, "kind = \"constant\"\nlr = 1000.0\n"),
    );
    let out = t.path().join("run");
    let r = train_quiet(&cfg, &out);
    ok(&r);
    let s = status(&out);
    assert_eq!(s["status"], "diverged", "{s}");
    assert!(s["reason"].as_str().unwrap().contains("train.diverge_loss"));
}

#[test]
fn bad_configs_are_rejected_before_anything_is_written() {
    let t = tempfile::tempdir().unwrap();
    let good = synthetic(1, "kind = \"constant\"\nlr = 0.01\n");
    let cases: Vec<(String, Vec<&str>, &str)> = vec![
        (
            good.replace("epochs = 1", "epochs = 1\nepoch = 2"),
            vec![],
            "train.epoch = 2: unknown key; did you mean epochs?",
        ),
        (
            good.replace("arch = \"lenet\"", "arch = \"lenet5\""),
            vec![],
            "lenet5",
        ),
        (good.replace("lr = 0.01", "lr = -1.0"), vec![], "lr"),
        (
            good.clone(),
            vec!["--set", "optim.momentum=1.5"],
            "optim.momentum = 1.5",
        ),
        (
            good.clone(),
            vec!["--set", "train.device=gpu"],
            "train.device",
        ),
        (good.replace("[schedule]", "[shedule]"), vec![], "shedule"),
        (
            good.clone(),
            vec!["--set", "nope.x=1"],
            "unknown table `nope`",
        ),
        (
            good.replace("batch_size = 64", "batch_size = 0"),
            vec![],
            "train.batch_size = 0",
        ),
        ("this is not toml".into(), vec![], "invalid TOML"),
        (
            good.clone(),
            vec!["--set", "train.precision=\"bf16\""],
            "needs a CUDA device",
        ),
    ];
    for (i, (text, extra, expect)) in cases.iter().enumerate() {
        let cfg = write(t.path(), &format!("bad{i}.toml"), text);
        let out = t.path().join(format!("out{i}"));
        let mut args = vec![
            "train",
            cfg.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ];
        args.extend(extra);
        let r = run(&args);
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(
            r.status.code(),
            Some(2),
            "case {i}: expected exit 2, got {}: {err}",
            r.status
        );
        assert!(
            err.contains(expect),
            "case {i}: message should mention {expect:?}: {err}"
        );
        if extra.is_empty() {
            assert!(
                err.contains(&format!("bad{i}.toml")),
                "case {i}: message should name the file: {err}"
            );
        }
        assert!(!out.exists(), "case {i}: output folder was created");
    }
}

/// The bytes of every file under `dir`, by relative path.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// A folder lrlab did not create is refused before anything is written into it (the issue:
/// with the user's own steps.csv and status.json in --out, lrlab wrote config.toml, meta.json
/// and .lock, and replaced status.json); a foreign config.toml is "not an lrlab run config".
#[test]
fn a_folder_lrlab_did_not_create_is_not_written_into() {
    let t = tempfile::tempdir().unwrap();
    let cfg = write(
        t.path(),
        "run.toml",
        &synthetic(1, "kind = \"one_cycle\"\nmax_lr = \"auto\"\n"),
    );
    let out = t.path().join("mine");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("steps.csv"), "step,loss\n0,2.3\n").unwrap();
    std::fs::write(out.join("status.json"), "{\"state\": \"mine\"}\n").unwrap();
    let before = tree(&out);
    let r = train_quiet(&cfg, &out);
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{err}");
    assert!(
        err.contains("not an lrlab run folder (it holds status.json, steps.csv")
            || err.contains("not an lrlab run folder (it holds steps.csv"),
        "{err}"
    );
    assert_eq!(tree(&out), before, "nothing written");
    // A config.toml of someone else's.
    let other = t.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(
        other.join("config.toml"),
        "lr = 0.1\n[model]\nname = \"resnet\"\n",
    )
    .unwrap();
    let before = tree(&other);
    let cfg = write(
        t.path(),
        "plain.toml",
        &synthetic(1, "kind = \"constant\"\nlr = 0.01\n"),
    );
    let r = train_quiet(&cfg, &other);
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{err}");
    assert!(err.contains("not an lrlab run config"), "{err}");
    assert!(!err.contains("differences"), "{err}");
    assert_eq!(tree(&other), before, "nothing written");
    // lrlab's own folder, and a sweep's planned one (config.toml only), are accepted.
    let planned = t.path().join("planned");
    std::fs::create_dir(&planned).unwrap();
    std::fs::copy(&cfg, planned.join("config.toml")).unwrap();
    ok(&train_quiet(&cfg, &planned));
    ok(&train_quiet(&cfg, &planned));
}

#[test]
fn a_different_config_cannot_reuse_a_run_folder() {
    let t = tempfile::tempdir().unwrap();
    let cfg = write(
        t.path(),
        "run.toml",
        &synthetic(1, "kind = \"constant\"\nlr = 0.01\n"),
    );
    let out = t.path().join("run");
    ok(&train_quiet(&cfg, &out));
    let r = run(&[
        "train",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
        "--set",
        "train.seed=9",
    ]);
    assert_eq!(r.status.code(), Some(2));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("different config (train.seed: 3 → 9)"),
        "{err}"
    );

    // A whole table from one --set replaces the file's: no leftover `lr` for the cosine.
    let other = t.path().join("other");
    ok(&run(&[
        "train",
        cfg.to_str().unwrap(),
        "--out",
        other.to_str().unwrap(),
        "--quiet",
        "--set",
        "schedule={kind = \"cosine\", lr_max = 0.05}",
    ]));
    let config: toml::Table = std::fs::read_to_string(other.join("config.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let expected: toml::Table = "kind = \"cosine\"\nlr_max = 0.05".parse().unwrap();
    assert_eq!(config["schedule"].as_table(), Some(&expected));
}

#[test]
fn loss_falls_on_real_fashion_mnist() {
    let dir = Path::new("/usr/share/datasets/fashion-mnist");
    if !dir.join("train-images-idx3-ubyte.gz").exists() {
        eprintln!("note: Debian's Fashion-MNIST is not installed; skipping");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let cfg = write(
        t.path(),
        "run.toml",
        r#"
[data]
dataset = "fashion-mnist"
train_subset = 2000
val_split = 1000

[model]
arch = "lenet"

[train]
epochs = 2
batch_size = 64
seed = 0

[schedule]
kind = "one_cycle"
max_lr = 0.02
"#,
    );
    let out = t.path().join("run");
    let o = train_quiet(&cfg, &out);
    ok(&o);
    // Evaluated on the validation split: the lines and the report name it, not "test".
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("done: val_acc "), "{err}");
    ok(&run(&["report", out.to_str().unwrap()]));
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("| final validation accuracy (%) |"),
        "{report}"
    );
    assert!(!report.contains("final test"), "{report}");
    let steps = std::fs::read_to_string(out.join("steps.csv")).unwrap();
    let losses: Vec<f64> = steps
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(4).unwrap().parse().unwrap())
        .collect();
    let first: f64 = losses[..5].iter().sum::<f64>() / 5.0;
    let last: f64 = losses[losses.len() - 5..].iter().sum::<f64>() / 5.0;
    assert!(
        last < 0.5 * first,
        "training loss did not fall: {first} -> {last}"
    );
    let epochs = std::fs::read_to_string(out.join("epochs.csv")).unwrap();
    let last_row: Vec<&str> = epochs.lines().last().unwrap().split(',').collect();
    let acc: f64 = last_row[6].parse().unwrap();
    assert!(acc > 0.6, "validation accuracy {acc} after 2 epochs");
    let meta = std::fs::read_to_string(out.join("meta.json")).unwrap();
    assert!(meta.contains("\"eval_split\": \"val\""), "{meta}");
}

#[test]
fn the_hf_lr_estimate_changes_nothing_in_the_training() {
    let t = tempfile::tempdir().unwrap();
    let sched = "kind = \"one_cycle\"\nmax_lr = 0.05\n";
    // resnet20: batch norm, whose running statistics the curvature's forward pass must not
    // move (they would change the evaluation in epochs.csv).
    let base = synthetic(2, sched).replace("arch = \"lenet\"", "arch = \"resnet20\"");
    let plain = write(t.path(), "plain.toml", &base);
    let with = write(
        t.path(),
        "hf.toml",
        &base.replace(
            "seed = 3\n",
            "seed = 3\nhf_lr_every = 3\nhf_lr_blobs = \"caffe\"\n",
        ),
    );
    let (a, b) = (t.path().join("plain"), t.path().join("hf"));
    ok(&train_quiet(&plain, &a));
    ok(&train_quiet(&with, &b));
    for f in ["steps.csv", "epochs.csv"] {
        assert_eq!(
            without_time(&a.join(f)),
            without_time(&b.join(f)),
            "{f} differs"
        );
    }
    assert!(!a.join("hf_lr.csv").exists(), "off by default");
    // One row per window start 3, 6, ..., 30 (the authors' start at 1; a window needs its step
    // and the next: 32 steps), positive finite estimates, the LR of steps.csv, and the authors'
    // moving average, of the trainable sums and of the Caffe blobs' (batch norm's
    // accumulators too).
    let steps = std::fs::read_to_string(b.join("steps.csv")).unwrap();
    let lr_of: Vec<&str> = steps
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(2).unwrap())
        .collect();
    let hf = std::fs::read_to_string(b.join("hf_lr.csv")).unwrap();
    let mut lines = hf.lines();
    assert_eq!(
        lines.next(),
        Some("step,epoch,lr,hf_lr,hf_lr_ema,curvature_lr,hf_lr_caffe,hf_lr_caffe_ema")
    );
    let (mut ema, mut ema_caffe) = (0.1, 0.1);
    let mut starts = Vec::new();
    for l in lines {
        let f: Vec<&str> = l.split(',').collect();
        let step: usize = f[0].parse().unwrap();
        starts.push(step);
        assert_eq!(f[2], lr_of[step], "the window's LR is its first step's");
        let (raw, avg): (f64, f64) = (f[3].parse().unwrap(), f[4].parse().unwrap());
        assert!(raw.is_finite() && raw > 0.0, "{l}");
        assert!(f[5].parse::<f64>().unwrap().is_finite(), "{l}: curvature");
        ema = 0.1 * raw + 0.9 * ema;
        assert!(
            (avg - ema).abs() <= 1e-12 * ema,
            "{l}: moving average {ema}"
        );
        let (caffe, caffe_avg): (f64, f64) = (f[6].parse().unwrap(), f[7].parse().unwrap());
        assert!(caffe.is_finite() && caffe > 0.0 && caffe != raw, "{l}");
        ema_caffe = 0.1 * caffe + 0.9 * ema_caffe;
        assert!((caffe_avg - ema_caffe).abs() <= 1e-12 * ema_caffe, "{l}");
    }
    assert_eq!(starts, (3..31).step_by(3).collect::<Vec<_>>());
    // Per layer, every window: resnet20's 19 convolutions, 19 batch norms and the classifier.
    let layers = std::fs::read_to_string(b.join("hf_lr_layers.csv")).unwrap();
    assert_eq!(
        layers.lines().next(),
        Some("step,layer,hf_lr,curvature_lr,hf_lr_caffe")
    );
    let rows: Vec<Vec<&str>> = layers
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), starts.len() * 39, "{layers}");
    let names: Vec<&str> = rows[..39].iter().map(|r| r[1]).collect();
    assert!(
        names.contains(&"layer3.2.bn2") && names.contains(&"linear"),
        "{names:?}"
    );
    assert!(
        rows.iter().all(|r| r[2].parse::<f64>().unwrap() > 0.0),
        "{layers}"
    );
    // config.toml records the setting; a run without it writes no such key (ids unchanged).
    assert!(std::fs::read_to_string(b.join("config.toml"))
        .unwrap()
        .contains("hf_lr_every = 3\nhf_lr_blobs = \"caffe\""));
    assert!(!std::fs::read_to_string(a.join("config.toml"))
        .unwrap()
        .contains("hf_lr_every"));
}

/// Copy the folder `from` into `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// A run folder written by lrlab 0.1.0 before meta.json had its format marker (committed
/// with the tests) still reads through the typed records, is recognised as lrlab's, is not
/// trained again, and reports its numbers; a new run folder carries the marker.
#[test]
fn a_run_folder_from_before_the_format_marker_still_reads() {
    use lrlab::run::{self, Meta, State, Status};
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/run_folder_v0");
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("old");
    copy_dir(&fixture, &dir);
    let meta = Meta::read(&dir).unwrap().unwrap();
    assert!(meta.is_lrlab() && meta.format.is_none() && meta.format_version == 0);
    assert_eq!((meta.epochs, meta.completions), (Some(2), Some(1)));
    assert_eq!(Status::read(&dir).unwrap().status, State::Done);
    let rows = run::read_epochs(&dir.join(run::EPOCHS)).unwrap();
    assert_eq!(rows.last().unwrap().test_acc, Some(1.0));
    assert_eq!(run::read_steps(&dir.join(run::STEPS)).unwrap().len(), 4);
    assert_eq!(
        run::find_runs(t.path()).unwrap(),
        std::slice::from_ref(&dir)
    );
    let before = std::fs::read(dir.join(run::META)).unwrap();
    let o = run(&[
        "train",
        dir.join("config.toml").to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing to do"));
    assert_eq!(std::fs::read(dir.join(run::META)).unwrap(), before);
    ok(&run(&["report", dir.to_str().unwrap()]));
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    for want in [
        "| final test accuracy (%) | 100.00 (epoch 2) |",
        "| final test loss | 0.0103 |",
        "| steps_per_epoch | 8 |",
        "| lrlab_version | 0.1.0 |",
    ] {
        assert!(md.contains(want), "{want} not in\n{md}");
    }
    // Written now: the marker and its version.
    let cfg = write(
        t.path(),
        "new.toml",
        &synthetic(1, "kind = \"constant\"\nlr = 0.01"),
    );
    let new = t.path().join("new");
    ok(&train_quiet(&cfg, &new));
    let m = Meta::read(&new).unwrap().unwrap();
    assert_eq!(m.format.as_deref(), Some(run::FORMAT));
    assert_eq!(m.format_version, run::FORMAT_VERSION);
    assert_eq!(
        (m.attempts, m.world_size, m.epochs),
        (Some(1), Some(1), Some(1))
    );
}
