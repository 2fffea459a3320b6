//! `lrlab collect DIR`: the results of a sweep folder as three CSVs, written atomically.
//!
//! - `summary.csv`: one row per run: `index,name,id`, the varied keys' labels, `status`,
//!   `learned` (`yes`, `no`: finished at chance accuracy or with its test loss blown up, or
//!   empty without an evaluation), `epochs` (completed), `final_test_acc` (last evaluation), `best_test_acc`, `best_epoch`
//!   (first epoch with the best), `target_acc`, `epoch_to_target` (first epoch whose test_acc
//!   reaches target_acc), `final_test_loss`, `final_train_loss`, `wall_s` (the run's time_s:
//!   training and evaluation time over all attempts), `range_test_s` (the range test of a
//!   run with `"auto"` values, not in `wall_s`; counted in the time to the reference),
//!   `attempts`, `reason` (why a run
//!   failed, diverged or did not learn). `lrlab report` puts the papers' numbers beside these.
//! - `curves.csv`: every run's `epochs.csv` rows in long format, prefixed by
//!   `index,name` and the varied keys' labels.
//! - `summary_by_point.csv`: one row per grid point (the varied keys but the seed), with
//!   counts and the mean and sample standard deviation (n − 1) over the point's done runs of
//!   final_test_acc, best_test_acc, best_epoch, epoch_to_target (over the runs reaching it) and
//!   wall_s. A std needs two runs; with fewer it is empty. With `[report] reference = "..."`
//!   in `sweep.toml` (a grid point, e.g. the step schedule at the longest budget), the papers'
//!   time-to-accuracy: `reference_acc` (that point's mean final test accuracy),
//!   `reached_reference` (done runs reaching it), and the mean first epoch and wall time
//!   (`time_s`, seconds of training and evaluation) at which they reach it.

use super::exec::{attempts, run_state, RunState};
use super::manifest::{Manifest, ManifestRun};
use super::plan::SEED;
use crate::report::paper::PointRef;
use crate::run::Status;
use crate::run::{read_epochs, EpochRow, EPOCHS_HEADER};
use crate::util::{fmt_f64, write_atomic};
use anyhow::Result;
use std::path::{Path, PathBuf};

/// The summary of one run.
#[derive(Clone, Debug)]
pub struct RunSummary {
    /// The run.
    pub run: ManifestRun,
    /// Its state.
    pub state: RunState,
    /// `status.json`, if any.
    pub status: Option<Status>,
    /// Epochs the run will have (`meta.json`), once started.
    pub total_epochs: Option<u64>,
    /// Completed epochs (last `epochs.csv` row).
    pub epochs: Option<u64>,
    /// Test accuracy of the last evaluated epoch.
    pub final_test_acc: Option<f64>,
    /// Test loss of the last evaluated epoch.
    pub final_test_loss: Option<f64>,
    /// Training loss of the last epoch.
    pub final_train_loss: Option<f64>,
    /// Best test accuracy.
    pub best_test_acc: Option<f64>,
    /// First epoch with the best test accuracy.
    pub best_epoch: Option<u64>,
    /// First epoch whose test accuracy reaches the run's target.
    pub epoch_to_target: Option<u64>,
    /// `time_s` of the last row: training and evaluation seconds over all attempts.
    pub wall_s: Option<f64>,
    /// Seconds of the range test that chose the run's `"auto"` values
    /// (`lr_find/suggestion.json`), if it had one: not in `wall_s`, which is the training's.
    pub range_test_s: Option<f64>,
    /// `(epoch, test accuracy, time_s)` of every evaluated epoch.
    pub evaluated: Vec<(u64, f64, Option<f64>)>,
    /// Attempts recorded by runners.
    pub attempts: usize,
    /// The `epochs.csv` rows.
    pub rows: Vec<EpochRow>,
}

/// Summarise one run folder.
pub fn summarize_run(sweep: &Path, run: &ManifestRun) -> Result<RunSummary> {
    let dir = run.dir(sweep);
    let (state, status) = run_state(sweep, run);
    let rows = read_epochs(&dir.join(crate::run::EPOCHS))?;
    // (epoch, test_acc, `with` of the row) of every evaluated epoch.
    let evaluated_with = |with: fn(&EpochRow) -> Option<f64>| -> Vec<(u64, f64, Option<f64>)> {
        rows.iter()
            .filter_map(|r| Some((r.epoch, r.test_acc?, with(r))))
            .collect()
    };
    let evaluated = evaluated_with(|r| r.test_loss);
    let timed = evaluated_with(|r| Some(r.time_s));
    let last = evaluated.last();
    let mut best: Option<(u64, f64)> = None;
    for &(e, acc, _) in &evaluated {
        if best.is_none_or(|(_, b)| acc > b) {
            best = Some((e, acc));
        }
    }
    let epoch_to_target = run.target_acc.and_then(|t| {
        evaluated
            .iter()
            .find(|(_, a, _)| *a >= t)
            .map(|(e, _, _)| *e)
    });
    let total_epochs = crate::run::Meta::read_ok(&dir).and_then(|m| m.epochs);
    Ok(RunSummary {
        run: run.clone(),
        state,
        status,
        total_epochs,
        epochs: rows.last().map(|r| r.epoch),
        final_test_acc: last.map(|l| l.1),
        final_test_loss: last.and_then(|l| l.2),
        final_train_loss: rows.last().map(|r| r.train_loss),
        best_test_acc: best.map(|b| b.1),
        best_epoch: best.map(|b| b.0),
        epoch_to_target,
        wall_s: rows.last().map(|r| r.time_s),
        range_test_s: crate::lr_find::SuggestionFile::read(
            &dir.join(crate::lr_find::RUN_RANGE_TEST),
        )
        .ok()
        .flatten()
        .and_then(|s| s.seconds),
        evaluated: timed,
        attempts: attempts(&dir),
        rows,
    })
}

/// Summarise every run of a sweep folder.
pub fn summarize(sweep: &Path, m: &Manifest) -> Result<Vec<RunSummary>> {
    m.runs.iter().map(|r| summarize_run(sweep, r)).collect()
}

/// What [`collect`] wrote.
#[derive(Clone, Debug)]
pub struct CollectReport {
    /// Runs in the sweep.
    pub runs: usize,
    /// Runs done.
    pub done: usize,
    /// Runs diverged.
    pub diverged: usize,
    /// Runs failed.
    pub failed: usize,
    /// The files written.
    pub files: Vec<PathBuf>,
}

fn opt_f(x: Option<f64>) -> String {
    x.map(fmt_f64).unwrap_or_default()
}

fn opt_u(x: Option<u64>) -> String {
    x.map(|x| x.to_string()).unwrap_or_default()
}

/// Mean and sample standard deviation (n − 1); the std needs two values.
pub fn mean_std(xs: &[f64]) -> (Option<f64>, Option<f64>) {
    let n = xs.len();
    if n == 0 {
        return (None, None);
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return (Some(mean), None);
    }
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64;
    (Some(mean), Some(var.sqrt()))
}

fn csv_text(header: &[String], rows: &[Vec<String>]) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header)?;
    for r in rows {
        w.write_record(r)?;
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}

/// Is a varied key the seed (the repeat axis that `summary_by_point` averages over)?
pub fn is_seed_key(k: &str) -> bool {
    k == SEED || k == "train.seed"
}

/// Write `summary.csv`, `curves.csv` and `summary_by_point.csv` into the sweep folder.
pub fn collect(sweep: &Path) -> Result<CollectReport> {
    let m = Manifest::load(sweep)?;
    let _lock = super::manifest::lock_sweep(sweep)?;
    let sums = summarize(sweep, &m)?;
    let files = vec![
        sweep.join("summary.csv"),
        sweep.join("curves.csv"),
        sweep.join("summary_by_point.csv"),
    ];
    write_atomic(&files[0], summary_csv(&m, &sums)?.as_bytes())?;
    write_atomic(&files[1], curves_csv(&m, &sums)?.as_bytes())?;
    let reference = reference_of(sweep)?;
    write_atomic(
        &files[2],
        by_point_csv(&m, &sums, reference.as_ref())?.as_bytes(),
    )?;
    let count = |s: RunState| sums.iter().filter(|r| r.state == s).count();
    Ok(CollectReport {
        runs: sums.len(),
        done: count(RunState::Done),
        diverged: count(RunState::Diverged),
        failed: count(RunState::Failed),
        files,
    })
}

/// The per-point results of `summary_by_point.csv` as an aligned text table for a terminal:
/// the point's varied values, runs (done), and final and best test accuracy in percent,
/// mean ± std over the point's finished runs.
pub fn points_text(by_point_csv: &str) -> Result<String> {
    let mut r = csv::Reader::from_reader(by_point_csv.as_bytes());
    let header: Vec<String> = r.headers()?.iter().map(String::from).collect();
    let col = |name: &str| header.iter().position(|h| h == name);
    let (Some(runs), Some(done)) = (col("runs"), col("done")) else {
        anyhow::bail!("summary_by_point.csv lacks its runs/done columns");
    };
    let pct = |row: &csv::StringRecord, mean: &str, std: &str| -> String {
        let get = |c: Option<usize>| {
            c.and_then(|i| row.get(i))
                .and_then(|v| v.parse::<f64>().ok())
        };
        match (get(col(mean)), get(col(std))) {
            (Some(m), Some(s)) => format!("{:.2} ± {:.2}", 100.0 * m, 100.0 * s),
            (Some(m), None) => format!("{:.2}", 100.0 * m),
            _ => "–".to_string(),
        }
    };
    let mut rows = vec![[
        "point".to_string(),
        "runs (done)".to_string(),
        "final test acc %".to_string(),
        "best test acc %".to_string(),
    ]];
    for row in r.records() {
        let row = row?;
        let point: Vec<String> = (0..runs)
            .map(|i| format!("{}={}", header[i], row.get(i).unwrap_or("")))
            .collect();
        rows.push([
            if point.is_empty() {
                "(all)".to_string()
            } else {
                point.join(" ")
            },
            format!("{} ({})", &row[runs], &row[done]),
            pct(&row, "final_test_acc_mean", "final_test_acc_std"),
            pct(&row, "best_test_acc_mean", "best_test_acc_std"),
        ]);
    }
    let width: Vec<usize> = (0..4)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let cells: Vec<String> = (0..4)
            .map(|c| {
                let pad = width[c] - r[c].chars().count();
                if c == 0 {
                    format!("{}{}", r[c], " ".repeat(pad))
                } else {
                    format!("{}{}", " ".repeat(pad), r[c])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    Ok(out)
}

/// `summary.csv` text.
pub fn summary_csv(m: &Manifest, sums: &[RunSummary]) -> Result<String> {
    let mut header: Vec<String> = ["index", "name", "id"].map(String::from).to_vec();
    header.extend(m.varied.iter().cloned());
    header.extend(
        [
            "status",
            "learned",
            "epochs",
            "final_test_acc",
            "best_test_acc",
            "best_epoch",
            "target_acc",
            "epoch_to_target",
            "final_test_loss",
            "final_train_loss",
            "wall_s",
            "range_test_s",
            "attempts",
            "reason",
        ]
        .map(String::from),
    );
    let rows: Vec<Vec<String>> = sums
        .iter()
        .map(|s| {
            let r = &s.run;
            let mut row = vec![r.index.to_string(), r.name.clone(), r.id.clone()];
            row.extend(r.label_values(&m.varied));
            row.extend([
                s.state.as_str().to_string(),
                match s.status.as_ref().and_then(|st| st.learned) {
                    Some(true) => "yes".into(),
                    Some(false) => "no".into(),
                    None => String::new(),
                },
                opt_u(s.epochs),
                opt_f(s.final_test_acc),
                opt_f(s.best_test_acc),
                opt_u(s.best_epoch),
                opt_f(r.target_acc),
                opt_u(s.epoch_to_target),
                opt_f(s.final_test_loss),
                opt_f(s.final_train_loss),
                opt_f(s.wall_s),
                opt_f(s.range_test_s),
                s.attempts.to_string(),
                match s.state {
                    RunState::Failed | RunState::Diverged | RunState::Done => s
                        .status
                        .as_ref()
                        .map(|st| st.reason.clone())
                        .unwrap_or_default(),
                    _ => String::new(),
                },
            ]);
            row
        })
        .collect();
    csv_text(&header, &rows)
}

/// `curves.csv` text.
pub fn curves_csv(m: &Manifest, sums: &[RunSummary]) -> Result<String> {
    let mut header: Vec<String> = vec!["index".into(), "name".into()];
    header.extend(m.varied.iter().cloned());
    header.extend(EPOCHS_HEADER.split(',').map(String::from));
    let mut rows = Vec::new();
    for s in sums {
        for r in &s.rows {
            let mut row = vec![s.run.index.to_string(), s.run.name.clone()];
            row.extend(s.run.label_values(&m.varied));
            row.extend(r.fields());
            rows.push(row);
        }
    }
    csv_text(&header, &rows)
}

/// `summary_by_point.csv` text.
/// The `[report] reference` point of the sweep's `sweep.toml`: `(as written, conditions)`.
fn reference_of(sweep: &Path) -> Result<Option<PointRef>> {
    let path = sweep.join("sweep.toml");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    Ok(crate::report::paper::parse_text(&path, &text)?.reference)
}

/// First `(epoch, seconds)` at which run `s` reaches test accuracy `acc`: the run's `time_s`
/// then, plus the range test that chose its `"auto"` values (part of what it cost to get
/// there).
fn first_reaching(s: &RunSummary, acc: f64) -> Option<(u64, Option<f64>)> {
    s.evaluated
        .iter()
        .find(|(_, a, _)| *a >= acc)
        .map(|&(e, _, t)| (e, t.map(|t| t + s.range_test_s.unwrap_or(0.0))))
}

/// `summary_by_point.csv` text; `reference` (`[report] reference`) adds the epoch and wall
/// time at which each point first reaches that point's mean final test accuracy.
pub fn by_point_csv(
    m: &Manifest,
    sums: &[RunSummary],
    reference: Option<&PointRef>,
) -> Result<String> {
    let keys: Vec<String> = m
        .varied
        .iter()
        .filter(|k| !is_seed_key(k))
        .cloned()
        .collect();
    let mut points: Vec<(Vec<String>, Vec<&RunSummary>)> = Vec::new();
    for s in sums {
        let labels: Vec<String> = keys
            .iter()
            .map(|k| s.run.labels.get(k).cloned().unwrap_or_default())
            .collect();
        match points.iter_mut().find(|(l, _)| *l == labels) {
            Some((_, v)) => v.push(s),
            None => points.push((labels, vec![s])),
        }
    }
    let mut header = keys.clone();
    header.extend(
        [
            "runs",
            "done",
            "diverged",
            "failed",
            "final_test_acc_mean",
            "final_test_acc_std",
            "best_test_acc_mean",
            "best_test_acc_std",
            "best_epoch_mean",
            "target_acc",
            "reached_target",
            "epoch_to_target_mean",
            "epoch_to_target_std",
            "wall_s_mean",
            "reference_acc",
            "reached_reference",
            "epoch_to_reference_mean",
            "time_to_reference_s_mean",
        ]
        .map(String::from),
    );
    // The reference accuracy: the mean final test accuracy of the done runs of the one point
    // that `reference` selects (none when it selects no point, or several).
    let reference_acc = reference.and_then(|(_, cond)| {
        let matching: Vec<&(Vec<String>, Vec<&RunSummary>)> = points
            .iter()
            .filter(|(labels, _)| {
                let params: Vec<(String, String)> =
                    keys.iter().cloned().zip(labels.iter().cloned()).collect();
                crate::report::paper::matches(cond, &params)
            })
            .collect();
        let [(_, runs)] = matching.as_slice() else {
            return None;
        };
        let finals: Vec<f64> = runs
            .iter()
            .filter(|s| s.state == RunState::Done)
            .filter_map(|s| s.final_test_acc)
            .collect();
        mean_std(&finals).0
    });
    let mut rows = Vec::new();
    for (labels, runs) in &points {
        let done: Vec<&&RunSummary> = runs.iter().filter(|s| s.state == RunState::Done).collect();
        let vals = |f: &dyn Fn(&RunSummary) -> Option<f64>| -> Vec<f64> {
            done.iter().filter_map(|s| f(s)).collect()
        };
        let (fa, fs) = mean_std(&vals(&|s| s.final_test_acc));
        let (ba, bs) = mean_std(&vals(&|s| s.best_test_acc));
        let (be, _) = mean_std(&vals(&|s| s.best_epoch.map(|e| e as f64)));
        let reached = vals(&|s| s.epoch_to_target.map(|e| e as f64));
        let (ta, ts) = mean_std(&reached);
        let (wa, _) = mean_std(&vals(&|s| s.wall_s));
        let count = |st: RunState| runs.iter().filter(|s| s.state == st).count().to_string();
        // The target is the point's when all its runs share it.
        let shared = |f: &dyn Fn(&ManifestRun) -> String| -> String {
            let v = f(&runs[0].run);
            if runs.iter().all(|s| f(&s.run) == v) {
                v
            } else {
                String::new()
            }
        };
        let mut row = labels.clone();
        row.extend([
            runs.len().to_string(),
            count(RunState::Done),
            count(RunState::Diverged),
            count(RunState::Failed),
            opt_f(fa),
            opt_f(fs),
            opt_f(ba),
            opt_f(bs),
            opt_f(be),
            shared(&|r| opt_f(r.target_acc)),
            if runs.iter().any(|s| s.run.target_acc.is_some()) {
                reached.len().to_string()
            } else {
                String::new()
            },
            opt_f(ta),
            opt_f(ts),
            opt_f(wa),
        ]);
        match reference_acc {
            Some(acc) => {
                let hits: Vec<(u64, Option<f64>)> =
                    done.iter().filter_map(|s| first_reaching(s, acc)).collect();
                let epochs: Vec<f64> = hits.iter().map(|h| h.0 as f64).collect();
                let times: Vec<f64> = hits.iter().filter_map(|h| h.1).collect();
                row.extend([
                    fmt_f64(acc),
                    hits.len().to_string(),
                    opt_f(mean_std(&epochs).0),
                    opt_f(mean_std(&times).0),
                ]);
            }
            None => row.extend(std::iter::repeat_n(String::new(), 4)),
        }
        rows.push(row);
    }
    csv_text(&header, &rows)
}
