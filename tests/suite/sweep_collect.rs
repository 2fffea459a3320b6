//! `lrlab collect` and `lrlab sweep status` on a sweep folder whose run folders are written
//! by the test (no training): per-run summaries, the target epoch, and the
//! mean and sample standard deviation over seeds per grid point.

use crate::common;
use common as fx;

use fx::{field, lrlab, read_csv, s, text, write, BASE};
use lrlab::run::EPOCHS_HEADER;
use lrlab::run::{State, Status};
use lrlab::sweep::collect::mean_std;
use std::path::Path;

const SPEC: &str = r#"
base = "base.toml"
seeds = [0, 1, 2]
[grid.schedule]
a = { kind = "constant", lr = 0.1 }
b = { kind = "constant", lr = 0.2 }
[target]
test_acc = 0.6
[target.point]
"schedule=b, seed=2" = 0.1
[report.paper]
"schedule=b" = { test_acc = 75, source = "Table 9" }
"#;

/// Write a finished (or not) run folder: test accuracies per epoch.
fn fake_run(dir: &Path, status: &str, accs: &[f64], reason: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let mut csv = format!("{EPOCHS_HEADER}\n");
    for (i, a) in accs.iter().enumerate() {
        let e = i + 1;
        csv.push_str(&format!(
            "{e},{},0.1,{},0.5,{},{a},1,{}.5,100.0\n",
            e * 10,
            1.0 / e as f64,
            2.0 / e as f64,
            e * 3
        ));
    }
    std::fs::write(dir.join("epochs.csv"), csv).unwrap();
    std::fs::write(
        dir.join("meta.json"),
        format!("{{\"epochs\": {}}}", accs.len().max(3)),
    )
    .unwrap();
    Status {
        status: serde_json::from_str::<State>(&format!("\"{status}\"")).unwrap(),
        reason: reason.into(),
        epoch: accs.len() as u64,
        step: accs.len() as u64 * 10,
        updated: 0.0,
        learned: None,
    }
    .write(dir)
    .unwrap();
}

#[test]
fn mean_and_std_are_the_sample_statistics() {
    assert_eq!(mean_std(&[]), (None, None));
    assert_eq!(mean_std(&[0.25]), (Some(0.25), None));
    let (m, sd) = mean_std(&[0.5, 0.7, 0.9]);
    assert!((m.unwrap() - 0.7).abs() < 1e-15);
    assert!(
        (sd.unwrap() - 0.2).abs() < 1e-15,
        "sqrt(((-0.2)^2 + 0 + 0.2^2) / 2) = 0.2"
    );
}

#[test]
fn collect_writes_summaries_and_statistics_per_point() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "base.toml", BASE);
    let spec = write(dir.path(), "spec.toml", SPEC);
    let sweep = dir.path().join("sweep");
    let plan = lrlab::sweep::plan::load(&spec).unwrap();
    let m = lrlab::sweep::manifest::freeze(&sweep, &plan).unwrap();
    let run = |sched: &str, seed: u32| sweep.join(format!("schedule={sched},seed={seed}"));
    // Point a: three done runs. Point b: two done, one failed.
    fake_run(&run("a", 0), "done", &[0.3, 0.5, 0.5], "");
    fake_run(&run("a", 1), "done", &[0.4, 0.7, 0.6], "");
    fake_run(&run("a", 2), "done", &[0.6, 0.9, 0.8], "");
    fake_run(&run("b", 0), "done", &[0.2, 0.4, 0.65], "");
    fake_run(&run("b", 1), "done", &[0.7, 0.3, 0.45], "");
    fake_run(&run("b", 2), "failed", &[0.1], "out of memory");
    assert_eq!(m.runs.len(), 6);

    let o = lrlab(&["collect", s(&sweep)]);
    assert_eq!(o.status.code(), Some(1), "a run failed: {}", text(&o));

    let (h, rows) = read_csv(&sweep.join("summary.csv"));
    assert_eq!(rows.len(), 6);
    let row = |name: &str| rows.iter().find(|r| field(&h, r, "name") == name).unwrap();
    let r = row("schedule=a,seed=1");
    assert_eq!(field(&h, r, "schedule"), "a");
    assert_eq!(field(&h, r, "seed"), "1");
    assert_eq!(field(&h, r, "status"), "done");
    assert_eq!(field(&h, r, "epochs"), "3");
    assert_eq!(field(&h, r, "final_test_acc"), "0.6");
    assert_eq!(field(&h, r, "best_test_acc"), "0.7");
    assert_eq!(field(&h, r, "best_epoch"), "2");
    assert_eq!(field(&h, r, "epoch_to_target"), "2");
    assert_eq!(field(&h, r, "final_test_loss"), "0.6666666666666666");
    assert_eq!(field(&h, r, "final_train_loss"), "0.3333333333333333");
    assert_eq!(field(&h, r, "wall_s"), "9.5");
    let r = row("schedule=a,seed=0");
    assert_eq!(field(&h, r, "epoch_to_target"), "", "0.6 is never reached");
    let r = row("schedule=b,seed=1");
    assert_eq!(field(&h, r, "best_epoch"), "1");
    assert_eq!(field(&h, r, "epoch_to_target"), "1");
    let r = row("schedule=b,seed=2");
    assert_eq!(field(&h, r, "status"), "failed");
    assert_eq!(field(&h, r, "target_acc"), "0.1");
    assert_eq!(field(&h, r, "epoch_to_target"), "1");
    assert_eq!(field(&h, r, "reason"), "out of memory");

    let (h, rows) = read_csv(&sweep.join("summary_by_point.csv"));
    assert_eq!(h[0], "schedule");
    assert!(!h.contains(&"seed".to_string()));
    assert_eq!(rows.len(), 2);
    let num = |r: &[String], c: &str| field(&h, r, c).parse::<f64>().unwrap();
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
    let a = &rows[0];
    assert_eq!(field(&h, a, "schedule"), "a");
    assert_eq!(
        ["runs", "done", "diverged", "failed"].map(|c| field(&h, a, c)),
        ["3", "3", "0", "0"]
    );
    // final 0.5, 0.6, 0.8: mean 0.6333..., sample std sqrt(((−0.1333)² + (−0.0333)² + 0.1667²)/2)
    let fm: f64 = (0.5 + 0.6 + 0.8) / 3.0;
    let fs = (((0.5 - fm).powi(2) + (0.6 - fm).powi(2) + (0.8 - fm).powi(2)) / 2.0).sqrt();
    assert!(close(num(a, "final_test_acc_mean"), fm));
    assert!(close(num(a, "final_test_acc_std"), fs));
    // best 0.5, 0.7, 0.9: mean 0.7, std 0.2.
    assert!(close(num(a, "best_test_acc_mean"), 0.7));
    assert!(close(num(a, "best_test_acc_std"), 0.2));
    assert!(close(num(a, "best_epoch_mean"), (2.0 + 2.0 + 2.0) / 3.0));
    // Target 0.6: seed 1 at epoch 2, seed 2 at epoch 1, seed 0 never.
    assert_eq!(field(&h, a, "reached_target"), "2");
    assert!(close(num(a, "epoch_to_target_mean"), 1.5));
    assert!(close(num(a, "epoch_to_target_std"), 0.5f64.sqrt()));
    assert!(close(num(a, "wall_s_mean"), 9.5));
    assert_eq!(field(&h, a, "target_acc"), "0.6");

    let b = &rows[1];
    assert_eq!(
        ["runs", "done", "diverged", "failed"].map(|c| field(&h, b, c)),
        ["3", "2", "0", "1"]
    );
    // Only the done runs count: final 0.65 and 0.45.
    assert!(close(num(b, "final_test_acc_mean"), 0.55));
    assert!(close(num(b, "final_test_acc_std"), (0.02f64).sqrt()));
    // The failed run has its own target, so the point has none in common; the done runs
    // reach 0.6 at epochs 3 and 1.
    assert_eq!(field(&h, b, "target_acc"), "");
    assert_eq!(field(&h, b, "reached_target"), "2");
    assert!(close(num(b, "epoch_to_target_mean"), 2.0));

    // curves.csv: 3 + 3 + 3 + 3 + 3 + 1 rows.
    let (ch, crows) = read_csv(&sweep.join("curves.csv"));
    assert_eq!(crows.len(), 16);
    assert_eq!(
        ch[..4],
        ["index", "name", "schedule", "seed"].map(String::from)
    );

    // sweep status: one row per run.
    let o = lrlab(&["sweep", "status", s(&sweep)]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    let line = |name: &str| {
        out.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("{name} in\n{out}"))
            .split_whitespace()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        line("schedule=a,seed=2")[2..6],
        ["done", "3/3", "30", "0.9000"]
    );
    assert_eq!(
        line("schedule=b,seed=2")[2..],
        ["failed", "1/3", "10", "0.1000", "out", "of", "memory"]
    );
    assert!(
        out.trim_end().ends_with(
            "6 runs: 5 done, 0 diverged, 0 running, 1 failed, 0 interrupted, 0 stale, 0 pending"
        ),
        "{out}"
    );
}

#[test]
fn status_of_a_fresh_sweep_shows_pending_runs() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "base.toml", BASE);
    let spec = write(dir.path(), "spec.toml", SPEC);
    let sweep = dir.path().join("sweep");
    let plan = lrlab::sweep::plan::load(&spec).unwrap();
    lrlab::sweep::manifest::freeze(&sweep, &plan).unwrap();
    // A run that a runner holds shows as running; one whose runner died shows as stale.
    let held = &plan.runs[0];
    let claim = lrlab::sweep::exec::try_claim(&sweep, &held.id)
        .unwrap()
        .unwrap();
    fake_run(&sweep.join(&plan.runs[1].name), "running", &[0.4], "");
    let text = lrlab::sweep::status::status_text(&sweep).unwrap();
    let state = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap()
            .to_string()
    };
    assert_eq!(state(&held.name), "running");
    assert_eq!(state(&plan.runs[1].name), "stale");
    assert_eq!(state(&plan.runs[2].name), "pending");
    assert!(lrlab::sweep::exec::try_claim(&sweep, &held.id)
        .unwrap()
        .is_none());
    drop(claim);
    // Released. A process that another test of this binary forks at the wrong moment holds a
    // copy of the claim's descriptor until its exec closes it, so allow a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while lrlab::sweep::exec::try_claim(&sweep, &held.id)
        .unwrap()
        .is_none()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the claim was not released"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn the_reference_point_gives_time_to_accuracy_and_the_claims_are_judged() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "base.toml", BASE);
    let spec = write(
        dir.path(),
        "spec.toml",
        r#"
base = "base.toml"
seeds = [0, 1]
[grid.schedule]
a = { kind = "constant", lr = 0.1 }
b = { kind = "constant", lr = 0.2 }
[report]
reference = "schedule=b"
[[report.claim]]
text = "a reaches b"
a = "schedule=a"
b = "schedule=b"
margin = -5
[[report.claim]]
text = "a beats b early"
a = "schedule=a"
b = "schedule=b"
epoch = 1
"#,
    );
    let sweep = dir.path().join("sweep");
    let plan = lrlab::sweep::plan::load(&spec).unwrap();
    lrlab::sweep::manifest::freeze(&sweep, &plan).unwrap();
    let run = |sched: &str, seed: u32| sweep.join(format!("schedule={sched},seed={seed}"));
    fake_run(&run("a", 0), "done", &[0.5, 0.7, 0.9], "");
    fake_run(&run("a", 1), "done", &[0.6, 0.8, 0.8], "");
    fake_run(&run("b", 0), "done", &[0.2, 0.6, 0.8], "");
    fake_run(&run("b", 1), "done", &[0.3, 0.5, 0.9], "");
    // Run b/1 chose a value with a range test of 2.5 s: its own column, and part of its time
    // to the reference (9.5 + 2.5).
    std::fs::create_dir_all(run("b", 1).join("lr_find")).unwrap();
    std::fs::write(
        run("b", 1).join("lr_find/suggestion.json"),
        "{\"seconds\": 2.5, \"rule_for_auto\": \"clr_max\", \"chosen\": {\"max_lr\": 0.3}, \
         \"suggestions\": [{\"rule\": \"clr_max\", \"lr\": 0.3}, {\"rule\": \"valley\", \"lr\": 0.05}]}\n",
    )
    .unwrap();
    let o = lrlab(&["collect", s(&sweep)]);
    assert!(o.status.success(), "{}", text(&o));
    let (hs, runs) = read_csv(&sweep.join("summary.csv"));
    let rt: Vec<&str> = runs.iter().map(|r| field(&hs, r, "range_test_s")).collect();
    assert_eq!(rt, ["", "", "", "2.5"]);
    let (h, rows) = read_csv(&sweep.join("summary_by_point.csv"));
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
    let num = |r: &[String], c: &str| field(&h, r, c).parse::<f64>().unwrap();
    // The reference: b's mean final accuracy, 0.85. Point a: seed 0 reaches it at epoch 3
    // (time_s 9.5), seed 1 never; point b: seed 1 at epoch 3 (9.5 s and its 2.5 s range
    // test), seed 0 never.
    for r in &rows {
        assert!(close(num(r, "reference_acc"), 0.85));
        assert_eq!(field(&h, r, "reached_reference"), "1");
        assert!(close(num(r, "epoch_to_reference_mean"), 3.0));
        let with_test = if field(&h, r, "schedule") == "b" {
            12.0
        } else {
            9.5
        };
        assert!(close(num(r, "time_to_reference_s_mean"), with_test));
    }
    // The claims: a's final 85.0% vs b's 85.0% (at most 5 points below: holds); at epoch 1
    // 55.0% vs 25.0% (holds). Each side 2 seeds of sd 7.07: Welch's df = 2, t = 4.3027,
    // half-width 4.3027 x 7.0711 = 30.42.
    let o = lrlab(&["report", s(&sweep)]);
    assert!(o.status.success(), "{}", text(&o));
    let md = std::fs::read_to_string(sweep.join("report.md")).unwrap();
    // The range test's line names its seed and stands in its own section, not among the
    // claims.
    let line = "range test for schedule=b, seed 1: max_lr = 0.300 (rule clr_max); the other \
                rules: valley 0.0500";
    let (at, ranges, claims) = (
        md.find(line).unwrap_or_else(|| panic!("{md}")),
        md.find("## Range tests").unwrap_or_else(|| panic!("{md}")),
        md.find("## Claims").unwrap_or_else(|| panic!("{md}")),
    );
    assert!(ranges < at && at < claims, "{md}");
    assert!(
        md.contains(
            "- a reaches b (85.00% ± 7.07 vs 85.00% ± 7.07, n = 2 vs 2, +0.00 points, 95% CI of \
             the difference [-30.42, +30.42]; holds if at most 5 points below): holds"
        ),
        "{md}"
    );
    assert!(
        md.contains(
            "- a beats b early (at epoch 1: 55.00% ± 7.07 vs 25.00% ± 7.07, n = 2 vs 2, +30.00 \
             points, 95% CI of the difference [-0.42, +60.42]; holds if at least equal): holds"
        ),
        "{md}"
    );
    // A bad claim is an input error naming the file and the entry.
    let bad = std::fs::read_to_string(sweep.join("sweep.toml"))
        .unwrap()
        .replace("margin = -5", "margin = \"five\"");
    std::fs::write(sweep.join("sweep.toml"), bad).unwrap();
    let o = lrlab(&["report", s(&sweep)]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("report.claim #1: margin must be a number"),
        "{}",
        text(&o)
    );
}
