//! `lrlab ensemble` end to end: a short SGDR run with snapshots at its restarts, the rows of
//! `ensemble.csv` against the run's own evaluation and against an ensemble computed here
//! independently, and the input errors.

mod common;

use common::{lrlab, ok};
use lrlab::config::RunConfig;
use lrlab::train::trainer::{build_model, Setup};
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

/// Train the run once into `dir/run`.
fn train(dir: &Path) -> PathBuf {
    let cfg = dir.join("run.toml");
    std::fs::write(&cfg, RUN).unwrap();
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
    let (vs, model) = build_model(&cfg, &setup).unwrap();
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
    let run = train(t.path());
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
    let last2 = read_csv(&run.join("ensemble.csv"));
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
