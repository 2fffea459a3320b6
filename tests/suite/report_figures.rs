//! `lrlab plot`: the figures of run, sweep and range-test folders written by the tests in the
//! official formats (valid SVG and PNG, axis labels, legends, one mean line per grid point),
//! the options, and bad input (exit status 2, a message naming the folder or file, nothing
//! written).

use crate::report_common;

use lrlab::report::group::BandKind;
use lrlab::report::read::{load, Input};
use lrlab::report::{figures, plot_dir, FigureOptions};
use report_common::*;
use std::path::Path;

#[test]
fn run_folder_gets_curves_and_schedule_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run1");
    run_folder(&run, &rows_ending_at(0.86), 0.05, "done", None);
    let r = lrlab(&["plot", s(&run)]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let printed = String::from_utf8(r.stdout).unwrap();
    let figs = run.join("figures");
    for stem in ["curves", "schedule"] {
        for ext in ["svg", "png"] {
            let p = figs.join(format!("{stem}.{ext}"));
            assert!(
                printed.lines().any(|l| Path::new(l) == p),
                "{p:?} not printed: {printed}"
            );
        }
    }
    let texts = assert_figure(&figs, "curves");
    for label in ["error (%)", "loss", "epoch", "test", "training"] {
        assert!(
            texts.iter().any(|t| t == label),
            "curves: no {label:?} in {texts:?}"
        );
    }
    assert!(
        texts.iter().any(|t| t.contains("run1")),
        "title names the run"
    );
    let texts = assert_figure(&figs, "schedule");
    for label in ["learning rate", "momentum (constant)", "epoch"] {
        assert!(
            texts.iter().any(|t| t == label),
            "schedule: no {label:?} in {texts:?}"
        );
    }
}

#[test]
fn sweep_seeds_are_grouped_into_one_mean_line_per_point() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = tmp.path().join("sw");
    two_point_sweep(&sweep);
    let written = plot_dir(&sweep, None, FigureOptions::default()).unwrap();
    assert_eq!(written.len(), 4);
    let texts = assert_figure(&sweep.join("figures"), "curves");
    let legend: Vec<&String> = texts.iter().filter(|t| t.contains("(n=")).collect();
    assert_eq!(legend, ["lr=0.1 (n=2)", "lr=0.2 (n=2)"], "{texts:?}");
    assert!(!texts.iter().any(|t| t.contains("seed=")), "{texts:?}");
    for label in ["test error (%)", "training loss", "epoch"] {
        assert!(
            texts.iter().any(|t| t == label),
            "no {label:?} in {texts:?}"
        );
    }
    assert!(
        texts.iter().any(|t| t.contains("mean over seeds")),
        "{texts:?}"
    );
    let texts = assert_figure(&sweep.join("figures"), "schedule");
    assert!(texts.iter().any(|t| t == "lr=0.1") && texts.iter().any(|t| t == "lr=0.2"));

    // The mean line and the min–max band are the seeds' mean, lowest and highest.
    let Input::Sweep(sw) = load(&sweep).unwrap() else {
        panic!("not recognised as a sweep")
    };
    let points = lrlab::report::group::points(&sw.runs, "sw", sw.params_from_tables);
    let fig = figures::curves("t", &points, &sw.runs, FigureOptions::default()).unwrap();
    let top = &fig.panels[0];
    assert_eq!(top.lines.len(), 2);
    let last = |i: usize| *top.lines[i].points.last().unwrap();
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    // Final test accuracies 0.80 and 0.90: errors 20 % and 10 %.
    assert!(
        close(last(0).0, 3.0) && close(last(0).1, 15.0),
        "{:?}",
        last(0)
    );
    assert!(close(last(1).1, 28.0), "{:?}", last(1));
    let band = top.bands[0].points.last().unwrap();
    assert!(close(band.1, 10.0) && close(band.2, 20.0), "{band:?}");
    // ±1 std instead: sample std of {10, 20} is 7.071.
    let opts = FigureOptions {
        band: BandKind::Std,
        ..FigureOptions::default()
    };
    let fig = figures::curves("t", &points, &sw.runs, opts).unwrap();
    let band = fig.panels[0].bands[0].points.last().unwrap();
    assert!(close(band.1, 15.0 - 50f64.sqrt()) && close(band.2, 15.0 + 50f64.sqrt()));
}

#[test]
fn summary_parameter_columns_group_runs_with_opaque_names() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = tmp.path().join("sw");
    let names = ["0000-a1f3", "0001-9c2e", "0002-77d0", "0003-e5b1"];
    let kinds = ["cosine", "cosine", "step", "step"];
    // The table lists runs by id only; the folders are `<index>-<id>`.
    let mut summary = String::from("run_id,schedule.kind,train.seed,status,final_test_acc\n");
    for (i, name) in names.iter().enumerate() {
        let acc = 0.8 + 0.02 * i as f64;
        run_folder(
            &sweep.join("runs").join(name),
            &rows_ending_at(acc),
            0.1,
            "done",
            None,
        );
        let id = &name[5..];
        summary.push_str(&format!("{id},{},{},done,{acc}\n", kinds[i], 1 + i % 2));
    }
    write(&sweep.join("summary.csv"), &summary);
    plot_dir(&sweep, None, FigureOptions::default()).unwrap();
    let texts = assert_figure(&sweep.join("figures"), "curves");
    let legend: Vec<&String> = texts.iter().filter(|t| t.contains("(n=")).collect();
    assert_eq!(
        legend,
        ["kind=cosine (n=2)", "kind=step (n=2)"],
        "{texts:?}"
    );
}

#[test]
fn config_files_group_runs_when_no_table_names_them() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = tmp.path().join("sw");
    for (i, (lr, seed)) in [(0.1, 1), (0.1, 2), (0.3, 1)].iter().enumerate() {
        let cfg = format!(
            "[train]\nseed = {seed}\nthreads = 2\n[schedule]\nkind = \"constant\"\nlr = {lr}\n"
        );
        run_folder(
            &sweep.join(format!("r{i}")),
            &rows_ending_at(0.8),
            *lr,
            "done",
            Some(&cfg),
        );
    }
    plot_dir(&sweep, None, FigureOptions::default()).unwrap();
    let texts = assert_figure(&sweep.join("figures"), "curves");
    assert!(texts.iter().any(|t| t == "lr=0.1 (n=2)"), "{texts:?}");
    assert!(texts.iter().any(|t| t == "lr=0.3"), "{texts:?}");
}

#[test]
fn sweep_of_tables_only_is_drawn_from_curves_csv() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = tmp.path().join("sw");
    let mut curves = format!("run,lr,seed,{EPOCHS_HEADER}\n");
    for (run, lr, seed, acc) in [("a", 0.1, 1, 0.8), ("b", 0.1, 2, 0.9), ("c", 0.5, 1, 0.6)] {
        for e in 1..=3 {
            curves.push_str(&format!(
                "{run},{lr},{seed},{e},{},{lr},1.0,0.5,1.0,{},0.99,{},100\n",
                e * 10,
                acc - 0.1 * (3 - e) as f64,
                e as f64 * 5.0
            ));
        }
    }
    write(&sweep.join("curves_long.csv"), &curves);
    plot_dir(&sweep, None, FigureOptions::default()).unwrap();
    let texts = assert_figure(&sweep.join("figures"), "curves");
    assert!(texts.iter().any(|t| t == "lr=0.1 (n=2)"), "{texts:?}");
    assert!(texts.iter().any(|t| t == "lr=0.5"), "{texts:?}");
}

#[test]
fn range_test_figure_marks_the_suggestions() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("find");
    range_folder(&dir, true);
    plot_dir(&dir, None, FigureOptions::default()).unwrap();
    let texts = assert_figure(&dir.join("figures"), "lr_find");
    for label in [
        "learning rate (log scale)",
        "training loss",
        "loss",
        "smoothed loss",
        "held-out accuracy (%)",
        "valley",
        "steepest",
        "valley: 1e-3",
        "steepest: 2e-4",
    ] {
        assert!(
            texts.iter().any(|t| t == label),
            "no {label:?} in {texts:?}"
        );
    }
    // Decades on the LR axis.
    for tick in ["1e-6", "1e-4", "1e-2", "1e0"] {
        assert!(
            texts.iter().any(|t| t == tick),
            "no tick {tick} in {texts:?}"
        );
    }
    // Without accuracy.csv there is one panel.
    let dir2 = tmp.path().join("find2");
    range_folder(&dir2, false);
    plot_dir(&dir2, None, FigureOptions::default()).unwrap();
    let texts = assert_figure(&dir2.join("figures"), "lr_find");
    assert!(!texts.iter().any(|t| t.contains("accuracy")), "{texts:?}");
}

#[test]
fn log_y_and_out_options() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = tmp.path().join("sw");
    two_point_sweep(&sweep);
    let out = tmp.path().join("elsewhere");
    let r = lrlab(&[
        "plot",
        s(&sweep),
        "--log-y",
        "--band",
        "std",
        "--out",
        s(&out),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(
        !sweep.join("figures").exists(),
        "--out must replace DIR/figures"
    );
    let texts = assert_figure(&out, "curves");
    for label in ["test error (%) (log scale)", "training loss (log scale)"] {
        assert!(
            texts.iter().any(|t| t == label),
            "no {label:?} in {texts:?}"
        );
    }
    assert!(
        texts.iter().any(|t| t.contains("± 1 standard deviation")),
        "{texts:?}"
    );
    assert_eq!(files_in(&out).len(), 4);
}

#[test]
fn bad_input_exits_2_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    // Missing folder.
    let missing = tmp.path().join("nope");
    let r = lrlab(&["plot", s(&missing)]);
    assert_eq!(r.status.code(), Some(2));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains(s(&missing)) && err.contains("does not exist"),
        "{err}"
    );
    assert!(
        err.contains("epochs.csv") && err.contains("lr_find.csv"),
        "{err}"
    );
    assert!(!missing.exists());

    // A folder with nothing recognisable.
    let empty = tmp.path().join("empty");
    write(&empty.join("notes.txt"), "hello\n");
    let r = lrlab(&["report", s(&empty)]);
    assert_eq!(r.status.code(), Some(2));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains(s(&empty)) && err.contains("expected a run folder"),
        "{err}"
    );
    assert_eq!(files_in(&empty), vec![empty.join("notes.txt")]);

    // A malformed epochs.csv: the file and the line are named.
    let run = tmp.path().join("run");
    run_folder(&run, &rows_ending_at(0.8), 0.1, "done", None);
    let text = std::fs::read_to_string(run.join("epochs.csv")).unwrap();
    let broken = text.replacen("0.7,", "0.7x,", 1);
    write(&run.join("epochs.csv"), &broken);
    let r = lrlab(&["plot", s(&run)]);
    assert_eq!(r.status.code(), Some(2));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("epochs.csv: line 3, column `train_acc`: \"0.7x\" is not a number"),
        "{err}"
    );
    assert!(!run.join("figures").exists());

    // A row with a missing field in a sweep's run: named too, nothing written for the sweep.
    let sweep = tmp.path().join("sw");
    two_point_sweep(&sweep);
    let bad = sweep.join("lr=0.2,seed=1").join("steps.csv");
    let mut text = std::fs::read_to_string(&bad).unwrap();
    text.push_str("99,3.0\n");
    write(&bad, &text);
    let r = lrlab(&["plot", s(&sweep)]);
    assert_eq!(r.status.code(), Some(2));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("steps.csv: line 14: 2 fields, expected 6"),
        "{err}"
    );
    assert!(!sweep.join("figures").exists());
}

#[test]
fn a_sweep_report_marks_time_to_accuracy_and_draws_its_range_tests() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = tmp.path().join("sw");
    two_point_sweep(&sweep);
    // lr=0.1 ran a range test whose valley suggestion filled its "auto" value.
    let rt = sweep.join("lr=0.1,seed=1/lr_find");
    range_folder(&rt, false);
    let sugg = std::fs::read_to_string(rt.join("suggestion.json")).unwrap();
    std::fs::write(
        rt.join("suggestion.json"),
        sugg.replacen('{', "{\"rule_for_auto\": \"valley\", ", 1),
    )
    .unwrap();
    std::fs::write(
        sweep.join("sweep.toml"),
        "name = \"sw\"\n[report]\nreference = \"lr=0.1\"\n",
    )
    .unwrap();
    let r = lrlab(&["report", s(&sweep)]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let figs = sweep.join("figures");
    let texts = assert_figure(&figs, "lr_find_lr_0.1");
    assert!(
        texts.iter().any(|t| t == "valley: 1e-3 (chosen)"),
        "{texts:?}"
    );
    let texts = assert_figure(&figs, "curves");
    assert!(texts.iter().any(|t| t == "reference: 85.00%"), "{texts:?}");
    let md = std::fs::read_to_string(sweep.join("report.md")).unwrap();
    assert!(md.contains("lr_find_lr_0.1.png"), "{md}");
    assert!(
        md.contains("marks the first epoch at which each point reaches it"),
        "{md}"
    );
    // Seed 2 ran its own range test: both are drawn, each seed's choice in its colour.
    let rt2 = sweep.join("lr=0.1,seed=2/lr_find");
    range_folder(&rt2, false);
    std::fs::copy(rt.join("suggestion.json"), rt2.join("suggestion.json")).unwrap();
    let r = lrlab(&["report", s(&sweep)]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let texts = assert_figure(&figs, "lr_find_lr_0.1");
    for want in ["seed 1: valley 1e-3", "seed 2: valley 1e-3"] {
        assert!(texts.iter().any(|t| t == want), "{want}: {texts:?}");
    }
    let md = std::fs::read_to_string(sweep.join("report.md")).unwrap();
    assert!(
        md.contains("Range tests of lr=0.1, one per seed (2)"),
        "{md}"
    );

    // The marks: lr=0.1's mean accuracy (0.80 and 0.90 at the end) reaches its own final 85%
    // at epoch 3; lr=0.2 (0.70, 0.74) never does.
    let Input::Sweep(sw) = load(&sweep).unwrap() else {
        panic!("not recognised as a sweep")
    };
    let points = lrlab::report::group::points(&sw.runs, "sw", sw.params_from_tables);
    let mut fig = figures::curves("t", &points, &sw.runs, FigureOptions::default()).unwrap();
    figures::mark_reference(&mut fig, &points, &sw.runs, 0.85);
    let top = &fig.panels[0];
    let xs: Vec<f64> = top.marks.iter().map(|m| m.x).collect();
    assert_eq!(xs, [3.0]);
    let line = top.lines.last().unwrap();
    assert!(
        line.points.iter().all(|p| (p.1 - 15.0).abs() < 1e-9),
        "{line:?}"
    );
}
