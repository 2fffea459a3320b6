//! `lrlab hf-lr`: its estimates are the ones a training of the same config logs with
//! `train.hf_lr_every` (same schedule over the config's whole length, same weights and
//! batches), its folder is drawn and reported, and bad flags write nothing.

use crate::common;

use common::{lrlab, ok, s, write};

/// resnet20 (batch norm) on synthetic 1x28x28 data, a 1cycle over 3 epochs of 16 steps.
const CONFIG: &str = r#"
[data]
dataset = "synthetic"
shape = [1, 28, 28]
size = 1024
test_size = 128

[model]
arch = "resnet20"

[optim]
momentum = 0.9
weight_decay = 1e-4

[train]
epochs = 3
batch_size = 64
threads = 1
seed = 7

[schedule]
kind = "one_cycle"
max_lr = 0.1
"#;

#[test]
fn the_command_gives_the_estimates_a_training_logs() {
    let t = tempfile::tempdir().unwrap();
    let cfg = write(t.path(), "run.toml", CONFIG);
    let hf = t.path().join("hf");
    let o = lrlab(&[
        "hf-lr",
        s(&cfg),
        "--steps",
        "20",
        "--every",
        "2",
        "--stride",
        "2",
        "--blobs",
        "caffe",
        "--out",
        s(&hf),
    ]);
    ok(&o);
    // The training, with the estimates every 2 steps (iterates 2 apart, the Caffe blobs' sum
    // beside) over all of its 48 steps.
    let run = t.path().join("run");
    ok(&lrlab(&[
        "train",
        s(&cfg),
        "--set",
        "train.hf_lr_every=2",
        "--set",
        "train.hf_lr_stride=2",
        "--set",
        "train.hf_lr_blobs=caffe",
        "--out",
        s(&run),
        "--quiet",
    ]));
    let ours = std::fs::read_to_string(hf.join("hf_lr.csv")).unwrap();
    let trained = std::fs::read_to_string(run.join("hf_lr.csv")).unwrap();
    // Windows 2, 4, ..., 16 (from step 1 on, as the authors; a window needs θ_{s+4}: 20
    // steps).
    assert_eq!(ours.lines().count(), 1 + 8, "{ours}");
    assert!(ours.starts_with("step,epoch,lr,hf_lr,hf_lr_ema,curvature_lr,hf_lr_caffe,"));
    let n = ours.lines().count();
    assert_eq!(
        ours.lines().collect::<Vec<_>>(),
        trained.lines().take(n).collect::<Vec<_>>(),
        "hf-lr and a training with hf_lr_every disagree"
    );
    let layers = std::fs::read_to_string(hf.join("hf_lr_layers.csv")).unwrap();
    let trained_layers = std::fs::read_to_string(run.join("hf_lr_layers.csv")).unwrap();
    let m = layers.lines().count();
    assert_eq!(m, 1 + 8 * 39);
    assert_eq!(
        layers.lines().collect::<Vec<_>>(),
        trained_layers.lines().take(m).collect::<Vec<_>>()
    );
    // The schedule kept its whole length: steps.csv's LR is the training's, step for step.
    let lr = |p: &std::path::Path| -> Vec<String> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| l.split(',').take(4).collect::<Vec<_>>().join(","))
            .collect()
    };
    assert_eq!(
        lr(&hf.join("steps.csv")),
        lr(&run.join("steps.csv"))[..21].to_vec()
    );
    // stdout: one line per window; the figure is drawn.
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 1 + 8);
    assert!(hf.join("figures/hf_lr.svg").exists() && hf.join("figures/hf_lr.png").exists());
    let cfg_written = std::fs::read_to_string(hf.join("config.toml")).unwrap();
    assert!(
        cfg_written.contains("hf_lr_every = 2\nhf_lr_stride = 2\nhf_lr_blobs = \"caffe\""),
        "{cfg_written}"
    );

    // The report of the hf-lr folder, and of the run folder, hold the estimates' table.
    ok(&lrlab(&["report", s(&hf)]));
    let report = std::fs::read_to_string(hf.join("report.md")).unwrap();
    assert!(
        report.contains("## Hessian-free estimates of the optimal learning rate")
            && report.contains("| early | 2–4 |")
            && report.contains("every Caffe blob: finite difference (median)")
            && report.contains("figures/hf_lr.png"),
        "{report}"
    );
    ok(&lrlab(&["report", s(&run)]));
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(
        report.contains("| late |") && report.contains("figures/hf_lr.png"),
        "{report}"
    );
}

#[test]
fn bad_flags_are_input_errors_and_write_nothing() {
    let t = tempfile::tempdir().unwrap();
    let cfg = write(t.path(), "run.toml", CONFIG);
    let out = t.path().join("hf");
    for (args, expect) in [
        (vec!["--every", "0"], "--every 0: must be >= 1"),
        (vec!["--steps", "2"], "--steps 2: must be >= 3"),
        (
            vec!["--steps", "20", "--stride", "10"],
            "--steps 20: must be >= 21",
        ),
        (
            vec!["--stride", "0"],
            "train.hf_lr_stride = 0: must be >= 1",
        ),
        (
            vec!["--steps", "49"],
            "--steps 49: the config's run has only 48 steps",
        ),
        (
            vec!["--set", "train.hf_lr_evry=1"],
            "did you mean hf_lr_every?",
        ),
    ] {
        let mut a = vec!["hf-lr", s(&cfg), "--out", s(&out)];
        a.extend(args);
        let o = lrlab(&a);
        assert_eq!(o.status.code(), Some(2), "{a:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(expect), "{a:?}: {err}");
        assert!(!out.exists(), "{a:?} wrote {}", out.display());
    }
}
