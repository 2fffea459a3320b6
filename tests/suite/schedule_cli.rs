//! `lrlab schedule`: the CSV it writes (header, one row per step, full precision, the library's
//! values), where it takes the run length from, and bad input (exit status 2, a message naming
//! the key and the value, nothing written).

use crate::common;
use common::OutputWithin;

use lrlab::schedule::{RunLength, Schedule};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn lrlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lrlab"))
        .args(args)
        .output_within(common::DEADLINE_S)
        .expect("run lrlab")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Rows of a rendered CSV: (step, epoch, lr, momentum), after checking the header.
fn parse(csv: &str) -> Vec<(u64, f64, f64, f64)> {
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("step,epoch,lr,momentum"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 4, "{l}");
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
            )
        })
        .collect()
}

/// The library's schedule for the same table and run length.
fn library(spec: &str, epochs: u64, k: u64) -> Schedule {
    let table: toml::Table = spec.parse().unwrap();
    Schedule::from_table(&table, RunLength::from_epochs(epochs, k).unwrap()).unwrap()
}

const SGDR: &str = "kind = \"sgdr\"\nlr_max = 0.05\nlr_min = 1e-4\nt_0 = 1\nt_mult = 2\n";
const CLR: &str =
    "kind = \"clr\"\nbase_lr = 0.001\nmax_lr = 0.006\nstep_size = 5\nmode = \"triangular2\"\n";

#[test]
fn csv_has_one_row_per_step_with_the_librarys_values() {
    let dir = tempfile::tempdir().unwrap();
    for (spec, cycled) in [(SGDR, false), (CLR, true)] {
        let f = write(dir.path(), "spec.toml", spec);
        let out = dir.path().join("out.csv");
        let r = lrlab(&[
            "schedule",
            s(&f),
            "--epochs",
            "6",
            "--steps-per-epoch",
            "7",
            "--momentum",
            "0.85",
            "-o",
            s(&out),
        ]);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let rows = parse(&std::fs::read_to_string(&out).unwrap());
        assert_eq!(rows.len(), 6 * 7);
        let lib = library(spec, 6, 7);
        for (i, &(step, epoch, lr, m)) in rows.iter().enumerate() {
            assert_eq!(step, i as u64);
            assert_eq!(epoch, i as f64 / 7.0);
            // Shortest round-trip formatting: the parsed values are the library's bits.
            assert_eq!(lr, lib.lr(step), "step {step}");
            assert_eq!(m, lib.momentum(step).unwrap_or(0.85), "step {step}");
        }
        assert_eq!(rows.iter().any(|r| r.3 != 0.85), cycled);
    }
}

#[test]
fn stdout_preview_table_and_run_configs() {
    let dir = tempfile::tempdir().unwrap();
    // Top-level keys plus [preview]: no flags needed; output to stdout.
    let f = write(
        dir.path(),
        "a.toml",
        &format!("# SGDR demo\n{SGDR}\n[preview]\nepochs = 3\nsteps_per_epoch = 4\n"),
    );
    let r = lrlab(&["schedule", s(&f)]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let stdout = String::from_utf8(r.stdout).unwrap();
    assert_eq!(parse(&stdout).len(), 12);
    // Flags override the preview.
    let r = lrlab(&["schedule", s(&f), "--epochs", "5"]);
    assert_eq!(parse(&String::from_utf8(r.stdout).unwrap()).len(), 20);
    // A full run config: [schedule] is used, the other tables are ignored.
    let g = write(
        dir.path(),
        "run.toml",
        &format!(
            "seed = 3\n[data]\nname = \"cifar10\"\n[model]\narch = \"wrn\"\n[optim]\nmomentum = 0.9\n\
             [train]\nepochs = 3\n[schedule]\n{SGDR}\n[preview]\nepochs = 3\nsteps_per_epoch = 4\n"
        ),
    );
    let r = lrlab(&["schedule", s(&g)]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(String::from_utf8(r.stdout).unwrap(), stdout);
}

#[test]
fn plot_writes_an_svg_with_both_panels() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "clr.toml",
        &format!("# CLR triangular2 demo\n{CLR}"),
    );
    let svg = dir.path().join("fig.svg");
    let out = dir.path().join("clr.csv");
    let r = lrlab(&[
        "schedule",
        s(&f),
        "--epochs",
        "4",
        "--steps-per-epoch",
        "10",
        "-o",
        s(&out),
        "--plot",
        s(&svg),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg"));
    for needle in [
        "CLR triangular2 demo",
        "learning rate",
        "momentum",
        "epoch",
        "<polyline",
    ] {
        assert!(text.contains(needle), "figure lacks {needle}");
    }
    assert!(out.exists());

    // The extension names the format: a .png file gets a PNG (it got SVG text before), of
    // the figure's size; another extension is refused before anything is written.
    let png = dir.path().join("fig.PNG");
    let r = lrlab(&[
        "schedule",
        s(&f),
        "--epochs",
        "4",
        "--steps-per-epoch",
        "10",
        "--plot",
        s(&png),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    // IHDR: width and height, big-endian, at bytes 16..24.
    let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    // The size of every lrlab figure.
    use lrlab::report::chart::{HEIGHT, WIDTH};
    assert_eq!((w, h), (WIDTH, HEIGHT));
    let pdf = dir.path().join("fig.pdf");
    let csv = dir.path().join("other.csv");
    let r = lrlab(&[
        "schedule",
        s(&f),
        "--epochs",
        "4",
        "--steps-per-epoch",
        "10",
        "-o",
        s(&csv),
        "--plot",
        s(&pdf),
    ]);
    assert_eq!(r.status.code(), Some(2));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("fig.pdf: a figure is written as .svg or .png"),
        "{err}"
    );
    assert!(!pdf.exists() && !csv.exists());
}

/// Bad input: exit status 2, the message names the file, key and value, nothing is written
/// (not even over an existing output file).
#[test]
fn bad_input_exits_2_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[&str], &str)] = &[
        ("kind = 'sgdr'\nlr_max = 0.1\nt_0 = 10\nt_mult = 0.5", &[], "schedule.t_mult = 0.5: must be >= 1"),
        ("kind = 'constant'\nlr = 0", &[], "schedule.lr = 0: must be > 0"),
        (
            "kind = 'sgdr'\nlr_max = 0.1\nlr_min = 0.5\nt_0 = 1",
            &[],
            "schedule.lr_min = 0.5: must be <= schedule.lr_max (0.1)",
        ),
        ("kind = 'sgdr'\nlr_max = 0.1\nt_0 = 0", &[], "schedule.t_0 = 0: must be > 0"),
        ("kind = 'one_cycle'\nmax_lr = 1\npct_start = 1.5", &[], "schedule.pct_start = 1.5: must be in (0, 1)"),
        (
            "kind = 'clr'\nbase_lr = 0.1\nmax_lr = 1\nstep_size = 0",
            &[],
            "schedule.step_size = 0: must be >= 1",
        ),
        (
            "kind = 'step'\nlr = 0.1\nmilestones = [3, 1]",
            &[],
            "schedule.milestones = [3, 1]: must be non-decreasing",
        ),
        (
            "kind = 'clr'\nbase_lr = 0.1\nmax_lr = 1\nstep_size = 2\nmode = 'square'",
            &[],
            "schedule.mode = \"square\": must be one of",
        ),
        ("kind = 'cosine'\nlr_max = 1\nt_0 = 3", &[], "schedule.t_0 = 3: unknown key for kind = \"cosine\""),
        ("kind = 'sgdr'\nlr_max = 1", &[], "schedule.t_0: missing"),
        ("kind = 'cosine'\nlr_max = 'high'", &[], "schedule.lr_max = \"high\": must be a number"),
        (
            "kind = 'sequence'\nmilestones = [1]\nschedules = [{kind = 'constant', lr = 1}, {kind = 'cosine', lr_max = 0}]",
            &[],
            "schedule.schedules[1].lr_max = 0: must be > 0",
        ),
        ("kind = 'constant'\nlr = 1", &["--epochs", "0"], "--epochs 0: must be >= 1"),
        ("kind = 'constant'\nlr = 1", &["--steps-per-epoch", "0"], "--steps-per-epoch 0: must be >= 1"),
        ("kind = 'constant'\nlr = 1", &["--momentum", "1.5"], "--momentum 1.5: must be in [0, 1)"),
        ("kind = 'constant'\nlr = 1\n[preview]\nepochs = 0", &[], "preview.epochs = 0: must be >= 1"),
        ("kind = 'constant'\nlr = 1\n[preview]\nepoch = 2", &[], "preview.epoch = 2: unknown key"),
        ("kind = 'constant'\nlr = = 1", &[], "invalid TOML"),
    ];
    // Each run loads libtorch (about a second): run the cases side by side.
    std::thread::scope(|scope| {
        for (i, (spec, extra, want)) in cases.iter().enumerate() {
            let dir = dir.path();
            scope.spawn(move || {
                let f = write(dir, &format!("bad{i}.toml"), spec);
                let out = dir.join(format!("bad{i}.csv"));
                let svg = dir.join(format!("bad{i}.svg"));
                let mut args = vec!["schedule", s(&f), "-o", s(&out), "--plot", s(&svg)];
                let has = |flag: &str| extra.contains(&flag);
                if !has("--epochs") {
                    args.extend(["--epochs", "4"]);
                }
                if !has("--steps-per-epoch") {
                    args.extend(["--steps-per-epoch", "5"]);
                }
                args.extend(extra.iter());
                let r = lrlab(&args);
                let stderr = String::from_utf8_lossy(&r.stderr);
                assert_eq!(r.status.code(), Some(2), "case {i} ({want}): {stderr}");
                assert!(
                    stderr.contains(want),
                    "case {i}: expected `{want}` in: {stderr}"
                );
                if want.starts_with("schedule.") || want.starts_with("preview.") {
                    assert!(
                        stderr.contains(&format!("bad{i}.toml")),
                        "case {i}: file not named: {stderr}"
                    );
                }
                assert!(!out.exists() && !svg.exists(), "case {i}: output written");
            });
        }
    });
    // An existing output file is left untouched.
    let out = write(dir.path(), "keep.csv", "old\n");
    let f = write(dir.path(), "bad.toml", "kind = 'constant'\nlr = -1");
    let r = lrlab(&[
        "schedule",
        s(&f),
        "--epochs",
        "2",
        "--steps-per-epoch",
        "2",
        "-o",
        s(&out),
    ]);
    assert_eq!(r.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "old\n");
    // Nothing left behind in the folder (no temporary files either).
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".toml"))
        .collect();
    assert_eq!(names, vec!["keep.csv".to_string()]);
}

#[test]
fn missing_run_length_and_files_are_input_errors() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "c.toml", "kind = 'constant'\nlr = 1");
    let r = lrlab(&["schedule", s(&f), "--steps-per-epoch", "3"]);
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("missing --epochs"));
    let r = lrlab(&["schedule", s(&f), "--from-spec"]);
    assert_eq!(r.status.code(), Some(2));
    let r = lrlab(&[
        "schedule",
        s(&dir.path().join("nope.toml")),
        "--epochs",
        "1",
        "--steps-per-epoch",
        "1",
    ]);
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("nope.toml"));
    // Top-level schedule keys and a [schedule] table at once are ambiguous.
    let g = write(
        dir.path(),
        "both.toml",
        "kind = 'constant'\nlr = 1\n[schedule]\nkind = 'constant'\nlr = 2",
    );
    let r = lrlab(&["schedule", s(&g), "--epochs", "1", "--steps-per-epoch", "1"]);
    assert_eq!(r.status.code(), Some(2));
}

/// The issue a PyTorch user hit: CyclicLR's default `gamma = 1.0` written out in triangular
/// mode. It changes nothing, so it is accepted with one warning line, and the CSV is the one
/// without the key; a value that would be ignored is still refused.
#[test]
fn a_neutral_value_is_accepted_with_one_warning() {
    let dir = tempfile::tempdir().unwrap();
    let with = write(
        dir.path(),
        "with.toml",
        "kind = \"clr\"\nbase_lr = 0.01\nmax_lr = 0.1\nstep_size = 3\nmode = \"triangular\"\ngamma = 1.0\n",
    );
    let without = write(
        dir.path(),
        "without.toml",
        "kind = \"clr\"\nbase_lr = 0.01\nmax_lr = 0.1\nstep_size = 3\nmode = \"triangular\"\n",
    );
    let (a, b) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
    let len = ["--epochs", "2", "--steps-per-epoch", "3"];
    let r = lrlab(&[&["schedule", s(&with), "-o", s(&a)][..], &len].concat());
    assert!(r.status.success(), "{r:?}");
    let err = String::from_utf8_lossy(&r.stderr);
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(
        warnings,
        ["warning: schedule.gamma = 1.0: only used with mode = \"exp_range\"; accepted, as this value changes nothing"],
        "{err}"
    );
    let r = lrlab(&[&["schedule", s(&without), "-o", s(&b)][..], &len].concat());
    assert!(r.status.success(), "{r:?}");
    assert!(!String::from_utf8_lossy(&r.stderr).contains("warning"));
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());

    let ignored = write(
        dir.path(),
        "ignored.toml",
        "kind = \"clr\"\nbase_lr = 0.01\nmax_lr = 0.1\nstep_size = 3\nmode = \"triangular\"\ngamma = 0.99\n",
    );
    let c = dir.path().join("c.csv");
    let r = lrlab(&[&["schedule", s(&ignored), "-o", s(&c)][..], &len].concat());
    assert_eq!(r.status.code(), Some(2), "{r:?}");
    assert!(String::from_utf8_lossy(&r.stderr).contains("schedule.gamma = 0.99"));
    assert!(!c.exists());
}

/// `lrlab schedule RUN.toml` without length flags renders the run's own length: steps per
/// epoch from its data and batch size (as training counts them, `drop_last` included), and
/// its epochs or `train.steps`. A flag still wins.
#[test]
fn a_run_config_gives_its_own_length() {
    let dir = tempfile::tempdir().unwrap();
    let run = |train: &str, data: &str| {
        format!(
            "[data]\ndataset = \"synthetic\"\nshape = [1, 8, 8]\nsize = 100\ntest_size = 10\n{data}\n\
             [train]\nbatch_size = 32\n{train}\n[schedule]\nkind = \"cosine\"\nlr_max = 0.1\n"
        )
    };
    let rows = |text: &str, extra: &[&str]| -> usize {
        let f = write(dir.path(), "run.toml", text);
        let r = lrlab(&[&["schedule", s(&f)][..], extra].concat());
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let out = String::from_utf8(r.stdout).unwrap();
        parse(&out).len()
    };
    // 100 examples in batches of 32: 4 steps an epoch (the last partial), 3 with drop_last.
    assert_eq!(rows(&run("epochs = 2", ""), &[]), 8);
    assert_eq!(rows(&run("epochs = 2", "drop_last = true"), &[]), 6);
    assert_eq!(rows(&run("steps = 7", ""), &[]), 7);
    assert_eq!(rows(&run("epochs = 2", ""), &["--epochs", "5"]), 20);
    assert_eq!(
        rows(&run("epochs = 2", ""), &["--steps-per-epoch", "10"]),
        20
    );
    // The epoch column follows the data's steps per epoch.
    let f = write(dir.path(), "run.toml", &run("epochs = 2", ""));
    let out = String::from_utf8(lrlab(&["schedule", s(&f)]).stdout).unwrap();
    assert_eq!(parse(&out)[5].1, 1.25);
}

#[test]
fn plateau_follows_the_metrics_file() {
    let t = tempfile::tempdir().unwrap();
    let spec = write(
        t.path(),
        "plateau.toml",
        "kind = \"plateau\"\nlr = 0.1\nfactor = 0.5\npatience = 1\n[preview]\nepochs = 6\nsteps_per_epoch = 2\n",
    );
    // A run's epochs.csv layout: epoch 3 is the second bad evaluation in a row (patience 1):
    // the LR halves from the step that ends epoch 3 (step 6) on; epoch 4 improves.
    let metrics = write(
        t.path(),
        "epochs.csv",
        "epoch,step,lr,train_loss,train_acc,test_loss,test_acc,test_top5,time_s,images_per_sec\n\
         1,2,0.1,2,0.1,1.0,0.2,,1,1\n2,4,0.1,2,0.1,1.0,0.2,,1,1\n3,6,0.1,2,0.1,1.0,0.2,,1,1\n\
         4,8,0.1,2,0.1,0.5,0.2,,1,1\n5,10,0.1,2,0.1,0.5,0.2,,1,1\n",
    );
    let o = lrlab(&["schedule", s(&spec), "--metrics", s(&metrics)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = parse(&String::from_utf8(o.stdout).unwrap());
    let lrs: Vec<f64> = rows.iter().map(|r| r.2).collect();
    assert_eq!(
        lrs,
        [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05]
    );
    // Bad input: a file without the columns, or metrics for a schedule that ignores them.
    let bad = write(t.path(), "bad.csv", "x,y\n1,2\n");
    let o = lrlab(&["schedule", s(&spec), "--metrics", s(&bad)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr)
        .contains("bad.csv: expected a CSV with an `epoch` column"));
    let cos = write(
        t.path(),
        "cos.toml",
        "kind = \"cosine\"\nlr_max = 0.1\n[preview]\nepochs = 2\nsteps_per_epoch = 2\n",
    );
    let o = lrlab(&["schedule", s(&cos), "--metrics", s(&metrics)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("only plateau does"));
    // The same evaluations inline in the spec ([preview.metrics], one value per epoch) give the
    // same LRs; the flag wins over them.
    let inline = write(
        t.path(),
        "inline.toml",
        "kind = \"plateau\"\nlr = 0.1\nfactor = 0.5\npatience = 1\n[preview]\nepochs = 6\n\
         steps_per_epoch = 2\n[preview.metrics]\ntest_loss = [1.0, 1.0, 1.0, 0.5, 0.5]\n",
    );
    let o = lrlab(&["schedule", s(&inline)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let inline_lrs: Vec<f64> = parse(&String::from_utf8(o.stdout).unwrap())
        .iter()
        .map(|r| r.2)
        .collect();
    assert_eq!(inline_lrs, lrs);
    let flat = write(
        t.path(),
        "flat.csv",
        "epoch,step,test_loss\n1,2,1.0\n2,4,0.9\n3,6,0.8\n4,8,0.7\n5,10,0.6\n",
    );
    let o = lrlab(&["schedule", s(&inline), "--metrics", s(&flat)]);
    assert!(parse(&String::from_utf8(o.stdout).unwrap())
        .iter()
        .all(|r| r.2 == 0.1));
}

#[test]
fn set_overrides_the_spec_as_train_does() {
    let dir = tempfile::tempdir().unwrap();
    let preview = "[preview]\nepochs = 3\nsteps_per_epoch = 4\n";
    // A bare spec: `schedule.KEY` and a bare `KEY` both set the top-level schedule key.
    let bare = write(dir.path(), "bare.toml", &format!("{SGDR}\n{preview}"));
    let changed = SGDR.replace("lr_max = 0.05", "lr_max = 0.2");
    let want = write(dir.path(), "want.toml", &format!("{changed}\n{preview}"));
    let expected = String::from_utf8(lrlab(&["schedule", s(&want)]).stdout).unwrap();
    for set in ["schedule.lr_max=0.2", "lr_max=0.2"] {
        let r = lrlab(&["schedule", s(&bare), "--set", set]);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        assert_eq!(
            String::from_utf8(r.stdout).unwrap(),
            expected,
            "--set {set}"
        );
    }
    // preview.KEY sets the length.
    let r = lrlab(&["schedule", s(&bare), "--set", "preview.epochs=5"]);
    assert_eq!(parse(&String::from_utf8(r.stdout).unwrap()).len(), 20);
    // A run config: the run's own tables, the length included.
    let run = write(
        dir.path(),
        "run.toml",
        "[data]\ndataset = \"synthetic\"\nshape = [1, 8, 8]\nsize = 100\ntest_size = 10\n\
         [train]\nbatch_size = 32\nepochs = 2\n[schedule]\nkind = \"cosine\"\nlr_max = 0.1\n",
    );
    let r = lrlab(&[
        "schedule",
        s(&run),
        "--set",
        "train.epochs=3",
        "--set",
        "schedule.lr_max=0.4",
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let rows = parse(&String::from_utf8(r.stdout).unwrap());
    assert_eq!(rows.len(), 12);
    assert_eq!(rows[0].2, 0.4);
    // A key the spec cannot take is an input error naming it; nothing is written.
    let out = dir.path().join("x.csv");
    let r = lrlab(&["schedule", s(&bare), "--set", "optim.lr=1", "-o", s(&out)]);
    assert_eq!(r.status.code(), Some(2));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("--set \"optim.lr=1\""), "{err}");
    assert!(!out.exists());
    // --log-y: a log LR axis in the figure.
    let svg = dir.path().join("s.svg");
    let r = lrlab(&["schedule", s(&bare), "--plot", s(&svg), "--log-y"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("log scale"));
}
