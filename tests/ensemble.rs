//! `lrlab ensemble` end to end: a short SGDR run with snapshots at its restarts, the rows of
//! `ensemble.csv` against the run's own evaluation and against an ensemble computed here
//! independently, and the input errors.

mod common;
#[path = "data_fixtures/mod.rs"]
mod fixtures;

use common::{lrlab, ok};
use lrlab::config::RunConfig;
use lrlab::train::setup::Setup;
use lrlab::train::step::{build_model, Input};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use tch::{Kind, Tensor};

/// Synthetic 1x28x28 data in 20 classes, LeNet, 8 steps per epoch, 7 epochs of SGDR with
/// T0 = 1 epoch and T_mult = 2: restarts after epochs 1 and 3, the last cycle ends at epoch 7,
/// the last step. A small peak LR keeps the snapshots' accuracies apart.
const RUN: &str = r#"
[data]
dataset = "synthetic"
shape = [1, 28, 28]
size = 512
test_size = 256
classes = 20

[model]
arch = "lenet"

[train]
epochs = 7
batch_size = 64
threads = 1
seed = 3
snapshots = "restarts"

[schedule]
kind = "sgdr"
lr_max = 0.001
lr_min = 0.0
t_0 = 1
t_mult = 2
"#;

/// Cycle ends of the run above, in steps: epochs 1, 1 + 2, 1 + 2 + 4 at 8 steps per epoch.
const CYCLE_ENDS: [u64; 3] = [8, 24, 56];

/// Exit status 2 and a message on stderr containing every one of `parts`.
fn input_error(out: &Output, parts: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for p in parts {
        assert!(err.contains(p), "{p:?} not in: {err}");
    }
}

/// A CSV as rows of fields keyed by header name.
fn read_csv(path: &Path) -> Vec<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    lines
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split(',').map(String::from))
                .collect()
        })
        .collect()
}

fn num(row: &BTreeMap<String, String>, key: &str) -> f64 {
    row[key].parse().unwrap()
}

/// Train the run config `text` once into `dir/run`.
fn train(dir: &Path, text: &str) -> PathBuf {
    let cfg = dir.join("run.toml");
    std::fs::write(&cfg, text).unwrap();
    let run = dir.join("run");
    ok(&lrlab(&[
        "train",
        cfg.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--quiet",
    ]));
    run
}

/// Per-example softmax probabilities (float64, `examples x classes`, row-major) and labels of
/// the run's evaluation split under the weights of one snapshot file, computed here: the
/// model is rebuilt from the run's config and the file's tensors copied in by name.
fn probabilities(run: &Path, snapshot: &Path) -> (Vec<f64>, Vec<i64>, usize) {
    let cfg = RunConfig::load(&run.join("config.toml"), &[]).unwrap();
    let setup = Setup::new(&cfg).unwrap();
    let (vs, model) = build_model(&cfg, Input::of(&setup.data), setup.device).unwrap();
    let saved: BTreeMap<String, Tensor> = Tensor::read_safetensors(snapshot)
        .unwrap()
        .into_iter()
        .collect();
    let _guard = tch::no_grad_guard();
    let vars = vs.variables();
    assert_eq!(vars.len(), saved.len(), "snapshot holds other tensors");
    for (name, mut var) in vars {
        var.copy_(&saved[&name]);
    }
    let (mut probs, mut labels) = (Vec::new(), Vec::new());
    for batch in setup.data.eval.epoch(0, 0) {
        let batch = batch.unwrap();
        let logits = model.net.forward_t(&batch.images, false);
        let p = logits.to_kind(Kind::Double).softmax(1, Kind::Double);
        probs.extend(Vec::<f64>::try_from(p.flatten(0, -1)).unwrap());
        labels.extend(Vec::<i64>::try_from(&batch.labels).unwrap());
    }
    let classes = setup.data.num_classes as usize;
    (probs, labels, classes)
}

/// Accuracy and mean NLL of the average of `members`' probabilities, in plain f64.
fn ensemble_metrics(members: &[Vec<f64>], labels: &[i64], classes: usize) -> (f64, f64) {
    let m = members.len() as f64;
    let (mut correct, mut nll) = (0usize, 0.0f64);
    for (i, &y) in labels.iter().enumerate() {
        let avg: Vec<f64> = (0..classes)
            .map(|c| members.iter().map(|p| p[i * classes + c]).sum::<f64>() / m)
            .collect();
        let y = y as usize;
        if (0..classes).all(|c| c == y || avg[c] < avg[y]) {
            correct += 1;
        }
        nll -= avg[y].ln();
    }
    let n = labels.len() as f64;
    (correct as f64 / n, nll / n)
}

#[test]
fn snapshot_ensembles_of_an_sgdr_run() {
    let t = tempfile::tempdir().unwrap();
    let run = train(t.path(), RUN);
    let out = lrlab(&["ensemble", run.to_str().unwrap(), "--quiet"]);
    ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("N=1, M=3"), "{stdout}");
    let rows = read_csv(&run.join("ensemble.csv"));

    // (a) One snapshot row per cycle end of the run, oldest first, at its epoch.
    let singles: Vec<_> = rows.iter().filter(|r| r["kind"] == "snapshot").collect();
    let steps: Vec<u64> = singles
        .iter()
        .map(|r| r["steps"].parse().unwrap())
        .collect();
    assert_eq!(steps, CYCLE_ENDS);
    for r in &singles {
        assert_eq!(r["members"], "1");
        assert_eq!(num(r, "epoch"), num(r, "steps") / 8.0);
    }
    let ensembles: Vec<_> = rows.iter().filter(|r| r["kind"] == "ensemble").collect();
    let members: Vec<&str> = ensembles.iter().map(|r| r["members"].as_str()).collect();
    assert_eq!(members, ["1", "2", "3"]);
    assert_eq!(ensembles[1]["steps"], "24;56");
    assert_eq!(ensembles[2]["steps"], "8;24;56");

    // (b) The last cycle ends at the last step: its snapshot is the final model, whose
    // evaluation the run recorded in the last row of epochs.csv.
    let epochs = read_csv(&run.join("epochs.csv"));
    let last = epochs.last().unwrap();
    assert_eq!(last["step"], "56");
    let final_snap = singles.last().unwrap();
    assert_eq!(num(final_snap, "test_acc"), num(last, "test_acc"));
    assert_eq!(num(final_snap, "test_top5"), num(last, "test_top5"));
    assert!((num(final_snap, "test_loss") - num(last, "test_loss")).abs() < 1e-6);
    // M = 1 is that model again, through the probability path.
    assert_eq!(num(ensembles[0], "test_acc"), num(last, "test_acc"));
    assert!((num(ensembles[0], "test_loss") - num(last, "test_loss")).abs() < 1e-6);

    // (c) The M = 2 and M = 3 ensembles equal an average of softmax outputs computed here.
    let snap = |s: u64| {
        run.join("snapshots")
            .join(format!("step{s:08}.safetensors"))
    };
    let mut probs = Vec::new();
    let mut labels = Vec::new();
    let mut classes = 0;
    for s in CYCLE_ENDS {
        let (p, y, c) = probabilities(&run, &snap(s));
        probs.push(p);
        labels = y;
        classes = c;
    }
    assert_eq!(labels.len(), 256);
    for (m, row) in [(2usize, ensembles[1]), (3, ensembles[2])] {
        let (acc, nll) = ensemble_metrics(&probs[3 - m..], &labels, classes);
        assert_eq!(num(row, "test_acc"), acc, "M={m}");
        assert!(
            (num(row, "test_loss") - nll).abs() < 1e-9,
            "M={m}: {} vs {nll}",
            row["test_loss"]
        );
    }
    // The snapshots differ (the check above would be vacuous otherwise).
    let accs: Vec<f64> = singles.iter().map(|r| num(r, "test_acc")).collect();
    assert!(accs[0] < accs[2], "{accs:?}");

    // --last 2: only the last two snapshots, the same numbers.
    ok(&lrlab(&[
        "ensemble",
        run.to_str().unwrap(),
        "--last",
        "2",
        "--quiet",
    ]));
    // In a file of its own: the full table stays.
    let last2 = read_csv(&run.join("ensemble_last2.csv"));
    assert_eq!(read_csv(&run.join("ensemble.csv")), rows);
    assert_eq!(last2.len(), 4);
    assert_eq!(last2[0], rows[1]);
    assert_eq!(last2[1], rows[2]);
    assert_eq!(last2[2], rows[3]);
    assert_eq!(last2[3], rows[4]);

    // (d) Input errors.
    let bad = lrlab(&["ensemble", run.to_str().unwrap(), "--last", "0"]);
    input_error(&bad, &["--last 0", ">= 1"]);
    let bad = lrlab(&["ensemble", run.to_str().unwrap(), "--last", "4"]);
    input_error(
        &bad,
        &["--last 4", "only 3 snapshot", "8, 24, 56", "--last 1..3"],
    );
    let empty = t.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let bad = lrlab(&["ensemble", empty.to_str().unwrap()]);
    input_error(&bad, &[empty.to_str().unwrap(), "not a run folder"]);
    let bad = lrlab(&["ensemble", t.path().join("missing").to_str().unwrap()]);
    input_error(&bad, &["missing", "does not exist"]);
    // A run folder without snapshots (its files, but not snapshots/).
    let sweep = t.path().join("sweep");
    let plain = sweep.join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    for f in ["config.toml", "epochs.csv", "status.json"] {
        std::fs::copy(run.join(f), plain.join(f)).unwrap();
    }
    let bad = lrlab(&["ensemble", plain.to_str().unwrap()]);
    input_error(
        &bad,
        &[
            plain.to_str().unwrap(),
            "no snapshots",
            "train.snapshots = \"restarts\"",
            "sgdr",
        ],
    );
    let bad = lrlab(&["ensemble", sweep.to_str().unwrap()]);
    input_error(&bad, &[sweep.to_str().unwrap(), "none of its 1 run folder"]);

    // A sweep folder: the runs with snapshots are evaluated, the others skipped.
    std::fs::rename(&run, sweep.join("sgdr")).unwrap();
    let out = lrlab(&["ensemble", sweep.to_str().unwrap(), "--quiet"]);
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("skipped"));
    assert_eq!(read_csv(&sweep.join("sgdr").join("ensemble.csv")), rows);
    assert!(!plain.join("ensemble.csv").exists());
}

/// SGDR T0 = 1, x2 over 5 epochs ends inside its third cycle (the issue's run: the epoch-3
/// snapshot was printed as the final model). Training says so, saves the final model as a
/// snapshot too, and M = 1 is the model the run's last evaluation scored.
#[test]
fn a_run_ending_mid_cycle_keeps_its_final_model() {
    let t = tempfile::tempdir().unwrap();
    let cfg = t.path().join("run.toml");
    std::fs::write(&cfg, RUN.replace("epochs = 7", "epochs = 5")).unwrap();
    let run = t.path().join("run");
    let out = lrlab(&[
        "train",
        cfg.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "ends inside a cycle (step 40, epoch 5; the last restart is at step 24, epoch 3)"
        ),
        "{err}"
    );
    let out = lrlab(&["ensemble", run.to_str().unwrap(), "--quiet"]);
    ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rows = read_csv(&run.join("ensemble.csv"));
    let steps: Vec<&str> = rows
        .iter()
        .filter(|r| r["kind"] == "snapshot")
        .map(|r| r["steps"].as_str())
        .collect();
    assert_eq!(steps, ["8", "24", "40"]);
    let last = read_csv(&run.join("epochs.csv")).pop().unwrap();
    let m1 = rows
        .iter()
        .find(|r| r["kind"] == "ensemble" && r["members"] == "1")
        .unwrap();
    assert_eq!(m1["steps"], "40");
    assert_eq!(num(m1, "test_acc"), num(&last, "test_acc"));
    assert!(stdout.contains("N=1, M=1 (final model)"), "{stdout}");
    // A run trained before final snapshots were saved: its newest snapshot is not called the
    // final model.
    std::fs::remove_file(run.join("snapshots/step00000040.safetensors")).unwrap();
    let out = lrlab(&["ensemble", run.to_str().unwrap(), "--quiet"]);
    ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("N=1, M=1 (step 24; not the final model: the run ended at step 40)"),
        "{stdout}"
    );
}

/// A run on IDX files written here (one test set whatever the seed), 3 epochs of SGDR with
/// T0 = 1 and T_mult = 2: snapshots at the ends of epochs 1 and 3.
fn idx_run(data: &Path) -> String {
    format!(
        r#"
[data]
dataset = "mnist"
path = "{}"
workers = 1

[model]
arch = "lenet"

[train]
epochs = 3
batch_size = 64
threads = 1
seed = 0
snapshots = "restarts"

[schedule]
kind = "sgdr"
lr_max = 0.002
lr_min = 0.0
t_0 = 1
t_mult = 2
"#,
        data.display()
    )
}

#[test]
fn ensembles_across_the_seeds_of_a_sweep() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("mnist");
    std::fs::create_dir(&data).unwrap();
    fixtures::write_mnist(&data, false, 256, 96);
    std::fs::write(t.path().join("run.toml"), idx_run(&data)).unwrap();
    let spec = t.path().join("seeds.toml");
    std::fs::write(
        &spec,
        "name = \"seeds\"\nbase = \"run.toml\"\nseeds = [0, 1, 2]\n[grid]\n\
         \"schedule.lr_max\" = [0.002, 0.004]\n",
    )
    .unwrap();
    let sweep = t.path().join("sweep");
    let mut child = common::cmd()
        .args([
            "sweep",
            spec.to_str().unwrap(),
            "--out",
            sweep.to_str().unwrap(),
        ])
        .args(["--devices", "cpu", "--jobs", "2", "--quiet"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(common::wait_exit(&mut child, 300, "lrlab sweep").success());

    let out = lrlab(&[
        "ensemble",
        sweep.to_str().unwrap(),
        "--across-seeds",
        "--quiet",
    ]);
    ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("N=3") && stdout.contains("M=2"), "{stdout}");
    let rows = read_csv(&sweep.join("ensemble_across_seeds.csv"));
    // Two points x N = 1..3 x M = 1..2, N outer.
    assert_eq!(rows.len(), 12);
    let point = "schedule.lr_max=0.002";
    let mine: Vec<_> = rows.iter().filter(|r| r["point"] == point).collect();
    let nm: Vec<(String, String, String)> = mine
        .iter()
        .map(|r| {
            (
                r["runs"].clone(),
                r["snapshots_per_run"].clone(),
                r["members"].clone(),
            )
        })
        .collect();
    let want: Vec<(String, String, String)> = [(1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2)]
        .iter()
        .map(|&(n, m)| (n.to_string(), m.to_string(), (n * m).to_string()))
        .collect();
    assert_eq!(nm, want);
    assert_eq!(mine[5]["seeds"], "0;1;2");
    // N = 1 summarises every run (the median, as SGDR's Table 2), N = 2 the one full group of
    // two seeds (seed 2 is left over), N = 3 the one group of three.
    let groups: Vec<(&str, &str)> = mine
        .iter()
        .map(|r| (r["seeds"].as_str(), r["groups"].as_str()))
        .collect();
    assert_eq!(
        groups,
        [
            ("0;1;2", "3"),
            ("0;1;2", "3"),
            ("0;1", "1"),
            ("0;1", "1"),
            ("0;1;2", "1"),
            ("0;1;2", "1")
        ]
    );

    // Against softmax averages computed here from the snapshot files.
    let run = |seed: u64| sweep.join(format!("{point},seed={seed}"));
    let snap = |seed: u64, step: u64| {
        run(seed)
            .join("snapshots")
            .join(format!("step{step:08}.safetensors"))
    };
    // 256 images, batch 64: 4 steps per epoch; cycles end at steps 4 and 12.
    let mut probs: BTreeMap<(u64, u64), Vec<f64>> = BTreeMap::new();
    let mut labels = Vec::new();
    let mut classes = 0;
    for seed in 0..3 {
        for step in [4, 12] {
            let (p, y, c) = probabilities(&run(seed), &snap(seed, step));
            if !labels.is_empty() {
                assert_eq!(y, labels, "one test set for every seed");
            }
            probs.insert((seed, step), p);
            labels = y;
            classes = c;
        }
    }
    let of_seeds = |seeds: &[u64], m: usize| {
        let members: Vec<Vec<f64>> = seeds
            .iter()
            .flat_map(|&seed| [12u64, 4][..m].iter().map(move |&s| (seed, s)))
            .map(|key| probs[&key].clone())
            .collect();
        ensemble_metrics(&members, &labels, classes)
    };
    let median3 = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[1]
    };
    for row in &mine {
        let n: u64 = row["runs"].parse().unwrap();
        let m: usize = row["snapshots_per_run"].parse().unwrap();
        let (acc, nll) = if n == 1 {
            let each: Vec<(f64, f64)> = (0..3).map(|s| of_seeds(&[s], m)).collect();
            (
                median3(each.iter().map(|e| e.0).collect()),
                median3(each.iter().map(|e| e.1).collect()),
            )
        } else {
            of_seeds(&(0..n).collect::<Vec<_>>(), m)
        };
        assert_eq!(num(row, "test_acc"), acc, "N={n} M={m}");
        assert!((num(row, "test_loss") - nll).abs() < 1e-9, "N={n} M={m}");
    }
    // N = 1, M = 1 is the median of the runs' final models, as their runs evaluated them.
    let finals: Vec<f64> = (0..3)
        .map(|s| {
            num(
                read_csv(&run(s).join("epochs.csv")).last().unwrap(),
                "test_acc",
            )
        })
        .collect();
    assert_eq!(num(mine[0], "test_acc"), median3(finals));

    // --last 1: M = 1 only, the same numbers.
    ok(&lrlab(&[
        "ensemble",
        sweep.to_str().unwrap(),
        "--across-seeds",
        "--last",
        "1",
        "--quiet",
    ]));
    let last1 = read_csv(&sweep.join("ensemble_across_seeds.csv"));
    assert_eq!(last1.len(), 6);
    assert_eq!(last1[1], rows[2]);

    // Input errors: one run; runs whose evaluation sets differ (synthetic data per seed).
    let bad = lrlab(&["ensemble", run(1).to_str().unwrap(), "--across-seeds"]);
    input_error(&bad, &["--across-seeds needs a folder of runs"]);
    let bad = lrlab(&[
        "ensemble",
        sweep.to_str().unwrap(),
        "--across-seeds",
        "--last",
        "3",
    ]);
    input_error(&bad, &["--last 3", "only 2 snapshot"]);
    let synth = t.path().join("synth");
    for seed in [1, 2] {
        let cfg = t.path().join(format!("s{seed}.toml"));
        std::fs::write(
            &cfg,
            RUN.replace("seed = 3", &format!("seed = {seed}"))
                .replace("epochs = 7", "epochs = 1"),
        )
        .unwrap();
        ok(&lrlab(&[
            "train",
            cfg.to_str().unwrap(),
            "--out",
            synth.join(format!("seed={seed}")).to_str().unwrap(),
            "--quiet",
        ]));
    }
    let bad = lrlab(&["ensemble", synth.to_str().unwrap(), "--across-seeds"]);
    input_error(
        &bad,
        &["draws its test images from the seed", "data.val_split = 0"],
    );
}

#[test]
fn snapshots_of_a_caffe_bn_run_are_read_as_its_evaluation_read_them() {
    // model.bn_stats = "caffe": evaluation reads the running statistics bias-corrected after
    // the steps taken; the snapshot of the last step must score as the run's last evaluation.
    let t = tempfile::tempdir().unwrap();
    let text = RUN
        .replace(
            "arch = \"lenet\"",
            "arch = \"resnet8\"\nbn_stats = \"caffe\"\nbn_momentum = 0.1",
        )
        .replace("epochs = 7", "epochs = 3");
    let run = train(t.path(), &text);
    ok(&lrlab(&["ensemble", run.to_str().unwrap(), "--quiet"]));
    let rows = read_csv(&run.join("ensemble.csv"));
    let last_snap = rows.iter().rfind(|r| r["kind"] == "snapshot").unwrap();
    assert_eq!(last_snap["steps"], "24");
    let epochs = read_csv(&run.join("epochs.csv"));
    let last = epochs.last().unwrap();
    assert_eq!(num(last_snap, "test_acc"), num(last, "test_acc"));
    assert!(
        (num(last_snap, "test_loss") - num(last, "test_loss")).abs() < 1e-6,
        "{} vs {}",
        last_snap["test_loss"],
        last["test_loss"]
    );
}
