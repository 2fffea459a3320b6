//! `lrlab report`: the `report.md` of a run, a sweep (tables with the right numbers, the
//! papers' values from `sweep.toml`) and a range test, bad `[report]` tables, and one
//! end-to-end run of the real binary on a tiny synthetic training run.

use crate::report_common;

use report_common::*;
use std::path::Path;

fn report(dir: &Path) -> String {
    let r = lrlab(&["report", s(dir)]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let printed = String::from_utf8(r.stdout).unwrap();
    let md = dir.join("report.md");
    assert_eq!(printed.lines().last().map(Path::new), Some(md.as_path()));
    std::fs::read_to_string(md).unwrap()
}

/// Every `(figures/x.png)` link of a report points to a file that exists, and the SVG too.
fn assert_links(dir: &Path, md: &str) -> usize {
    let mut n = 0;
    for part in md.split("](").skip(1) {
        let link = &part[..part.find(')').unwrap()];
        assert!(dir.join(link).is_file(), "broken link {link}");
        n += 1;
    }
    n
}

#[test]
fn run_report_has_final_metrics_figures_and_config() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run1");
    let config =
        "[train]\nepochs = 3\nseed = 1\n\n[schedule]\nkind = \"one_cycle\"\nmax_lr = 0.05\n";
    run_folder(&run, &rows_ending_at(0.86), 0.05, "done", Some(config));
    let md = report(&run);
    for needle in [
        "# Run run1",
        "Status: **done**",
        "| epochs completed | 3 |",
        "| final test accuracy (%) | 86.00 (epoch 3) |",
        "| final test error (%) | 14.00 |",
        "| best test accuracy (%) | 86.00 (epoch 3) |",
        "| final training loss | 0.5000 |",
        "| training time | 30.0 s |",
        "| device | cpu |",
        "```toml\n[train]\nepochs = 3\nseed = 1\n\n[schedule]\nkind = \"one_cycle\"\nmax_lr = 0.05\n```",
    ] {
        assert!(md.contains(needle), "report.md lacks {needle:?}:\n{md}");
    }
    // Two figures, each as PNG and SVG.
    assert_eq!(assert_links(&run, &md), 4);
}

#[test]
fn sweep_report_has_point_and_run_tables_with_paper_values() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sw");
    two_point_sweep(&dir);
    write(
        &dir.join("sweep.toml"),
        r#"
name = "demo"
[grid]
lr = [0.1, 0.2]

[report]
title = "Demo: two learning rates"

[report.paper]
"lr=0.1" = { test_error = 14.0, source = "Paper T1" }
"lr=0.2" = { test_acc = 75.0, epoch = 2, source = "Paper T2", note = "at epoch 2" }
"lr=0.3" = { test_error = 9.5, source = "Paper T3" }
"#,
    );
    let md = report(&dir);
    for needle in [
        "# Demo: two learning rates",
        "4 runs in 2 grid points (4 done).",
        "| point | runs (done) | final test acc (%) | best test acc (%) | paper | reproduced | Δ (reproduced − paper) | source |",
        // Errors 20 and 10: mean 15, sample std 7.07; paper 14 → +1.
        "| lr=0.1 | 2 (2) | 85.00 ± 7.07 | 85.00 ± 7.07 | test error 14.00 | 15.00 ± 7.07 | +1.00 | Paper T1 |",
        // At epoch 2 the accuracies are 0.60 and 0.64.
        "| lr=0.2 | 2 (2) | 72.00 ± 2.83 | 72.00 ± 2.83 | test acc 75.00, epoch 2 | 62.00 ± 2.83 | -13.00 | Paper T2 (at epoch 2) |",
        "- `lr=0.3`: test error 9.50 (Paper T3)",
        "| lr=0.1,seed=1 | done | 80.00 | 80.00 (3) | 3 | 30.0 s |",
        "| lr=0.2,seed=2 | done | 74.00 | 74.00 (3) | 3 | 30.0 s |",
    ] {
        assert!(md.contains(needle), "report.md lacks {needle:?}:\n{md}");
    }
    assert_eq!(assert_links(&dir, &md), 4);
}

#[test]
fn sweep_report_shows_summary_csv_when_present() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sw");
    let names = ["0000-a1f3", "0001-9c2e"];
    let mut summary = String::from("run,schedule,seed,status,final_test_acc\n");
    for (i, name) in names.iter().enumerate() {
        let acc = 0.8 + 0.02 * i as f64;
        run_folder(&dir.join(name), &rows_ending_at(acc), 0.1, "done", None);
        summary.push_str(&format!("{name},sgdr,{},done,{acc}\n", i + 1));
    }
    write(&dir.join("summary.csv"), &summary);
    write(
        &dir.join("summary_by_point.csv"),
        "schedule,n,final_test_acc_mean,final_test_acc_std\nsgdr,2,0.81,0.0141421356\n",
    );
    write(
        &dir.join("sweep.toml"),
        "name = \"sgdr short\"\n[report.paper]\n\"schedule=sgdr\" = { test_error = 4.03, source = \"SGDR Table 1\" }\n",
    );
    let md = report(&dir);
    for needle in [
        // Without a [report] title, the spec's name.
        "# sgdr short\n",
        "From summary.csv.",
        "| run | schedule | seed | status | final_test_acc |",
        "| 0000-a1f3 | sgdr | 1 | done | 0.8 |",
        "| schedule | n | final_test_acc_mean | final_test_acc_std |",
        "| sgdr | 2 | 0.81 | 0.0141421 |",
        // 0.8 + 0.02 is 0.8200000000000001 in the file.
        "| 0001-9c2e | sgdr | 2 | done | 0.82 |",
        // One point (the seeds of schedule=sgdr), named after the sweep folder.
        "| sw | 2 (2) | 81.00 ± 1.41 | 81.00 ± 1.41 | test error 4.03 | 19.00 ± 1.41 | +14.97 | SGDR Table 1 |",
    ] {
        assert!(md.contains(needle), "report.md lacks {needle:?}:\n{md}");
    }
}

#[test]
fn range_test_report_lists_the_suggestions() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("find");
    range_folder(&dir, false);
    let md = report(&dir);
    for needle in [
        "# LR range test find",
        "60 steps, learning rate 1.00e-6 to 1.00e0",
        "Stopped early: smoothed loss exceeded 4 x its best.",
        "| valley | 1.00e-3 | fastai valley |",
        "| steepest | 2.00e-4 | steepest fall |",
        "(figures/lr_find.png)",
    ] {
        assert!(md.contains(needle), "report.md lacks {needle:?}:\n{md}");
    }
    assert_eq!(assert_links(&dir, &md), 2);
}

#[test]
fn bad_report_table_exits_2_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sw");
    two_point_sweep(&dir);
    for (spec, needle) in [
        (
            "[report.paper]\n\"lr=0.1\" = { test_eror = 4.0 }\n",
            "sweep.toml: report.paper.\"lr=0.1\": unknown key `test_eror`",
        ),
        (
            "[report.paper]\n\"lr=0.1\" = { test_error = 104.0 }\n",
            "test_error = 104: must be a percentage in [0, 100]",
        ),
        ("[report]\ntitel = \"x\"\n", "unknown key report.titel"),
        ("[report\n", "sweep.toml: invalid TOML"),
    ] {
        write(&dir.join("sweep.toml"), spec);
        let r = lrlab(&["report", s(&dir)]);
        assert_eq!(r.status.code(), Some(2), "{spec}");
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(err.contains(needle), "{err}");
        assert!(!dir.join("report.md").exists());
        assert!(!dir.join("figures").exists());
    }
}

#[test]
fn end_to_end_on_a_real_synthetic_run() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("tiny.toml");
    write(
        &cfg,
        "[data]\ndataset = \"synthetic\"\nshape = [1, 28, 28]\nsize = 256\ntest_size = 64\n\
         [model]\narch = \"lenet\"\n\
         [train]\nepochs = 2\nbatch_size = 64\nthreads = 1\nseed = 3\n\
         [schedule]\nkind = \"constant\"\nlr = 0.01\n",
    );
    let run = tmp.path().join("run");
    let r = lrlab(&["train", s(&cfg), "--out", s(&run), "--quiet"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let md = report(&run);
    // The report's final accuracy is the last epochs.csv row's.
    let epochs = std::fs::read_to_string(run.join("epochs.csv")).unwrap();
    let last: Vec<&str> = epochs.lines().last().unwrap().split(',').collect();
    let acc: f64 = last[6].parse().unwrap();
    let needle = format!("| final test accuracy (%) | {:.2} (epoch 2) |", 100.0 * acc);
    assert!(md.contains(&needle), "report.md lacks {needle:?}:\n{md}");
    assert!(md.contains("Status: **done**"));
    assert!(md.contains("dataset = \"synthetic\""));
    let figs = run.join("figures");
    let texts = assert_figure(&figs, "curves");
    assert!(texts.iter().any(|t| t == "error (%)"));
    let texts = assert_figure(&figs, "schedule");
    assert!(texts.iter().any(|t| t == "learning rate"));
}
