//! `lrlab schedule SPEC.toml`: render a schedule to CSV (`step,epoch,lr,momentum`) and,
//! optionally, an SVG figure.
//!
//! The spec holds the schedule keys at top level or in a `[schedule]` table (so a full run
//! config works, and gives the run's length from its data and batch size), plus an optional
//! `[preview]` table with `epochs` and `steps_per_epoch` used when the flags are not given.

use super::keys::Keys;
use super::{RunLength, Schedule};
use crate::error::input_error;
use crate::util::{fmt_f64, write_atomic};
use crate::{bail_input, report};
use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use toml::{Table, Value};

/// Arguments of `lrlab schedule`.
#[derive(Clone, Debug)]
pub struct RenderArgs {
    /// The spec file (TOML).
    pub spec: PathBuf,
    /// Number of epochs; `None`: `preview.epochs` of the spec.
    pub epochs: Option<u64>,
    /// Optimizer steps per epoch; `None`: `preview.steps_per_epoch` of the spec.
    pub steps_per_epoch: Option<u64>,
    /// The optimizer's momentum, reported for families that do not cycle it.
    pub momentum: f64,
    /// CSV output (written atomically); `None`: standard output.
    pub out: Option<PathBuf>,
    /// Figure of LR and momentum against epoch (`.svg` or `.png`).
    pub plot: Option<PathBuf>,
    /// The run length of the spec when it is a run config (epochs or total steps, and steps
    /// per epoch, from its data and batch size), used where neither a flag nor `[preview]`
    /// gives one.
    pub run: Option<RunLength>,
    /// Evaluations for a metric-driven schedule (`plateau`): a CSV with `epoch` and any of
    /// `test_loss`, `test_acc`, `train_loss`, `train_acc` (a run's `epochs.csv` works).
    pub metrics: Option<PathBuf>,
    /// `--set` overrides (`schedule.max_lr=0.5`, `preview.epochs=30`; in a run config any
    /// `table.key`), applied to the spec before it is read.
    pub set: Vec<String>,
    /// Logarithmic LR axis in the figure.
    pub log_y: bool,
}

/// Record the evaluations of `path` (see [`RenderArgs::metrics`]) into `schedule`: row `e`
/// acts from the step that ends epoch `e` (its `step` column when present).
pub fn record_metrics(path: &Path, schedule: &mut Schedule, steps_per_epoch: u64) -> Result<usize> {
    let f = path.display();
    let mut r = csv::Reader::from_path(path)
        .map_err(|e| crate::error::input_error(format!("--metrics {f}: cannot read it: {e}")))?;
    let header: Vec<String> = r
        .headers()
        .map_err(|e| crate::error::input_error(format!("--metrics {f}: {e}")))?
        .iter()
        .map(String::from)
        .collect();
    let col = |n: &str| header.iter().position(|h| h == n);
    let metric_cols = ["test_loss", "test_acc", "train_loss", "train_acc"];
    if col("epoch").is_none() || metric_cols.iter().all(|c| col(c).is_none()) {
        bail_input!(
            "--metrics {f}: expected a CSV with an `epoch` column and at least one of {} (a \
             run's epochs.csv), found columns {}",
            metric_cols.join(", "),
            header.join(",")
        );
    }
    let mut n = 0;
    for (i, row) in r.records().enumerate() {
        let row = row.map_err(|e| crate::error::input_error(format!("--metrics {f}: {e}")))?;
        let num = |c: &str| -> Result<Option<f64>> {
            match col(c).and_then(|j| row.get(j)).map(str::trim) {
                None | Some("") => Ok(None),
                Some(v) => v.parse::<f64>().map(Some).map_err(|_| {
                    crate::error::input_error(format!(
                        "--metrics {f}: row {}: {c} = {v:?} is not a number",
                        i + 2
                    ))
                }),
            }
        };
        let Some(epoch) = num("epoch")? else {
            bail_input!("--metrics {f}: row {}: empty epoch", i + 2);
        };
        let step = match num("step")? {
            Some(s) => s as u64,
            None => (epoch * steps_per_epoch as f64).round() as u64,
        };
        schedule.record_eval(
            step,
            &super::plateau::EvalMetrics {
                test_loss: num("test_loss")?,
                test_acc: num("test_acc")?,
                train_loss: num("train_loss")?,
                train_acc: num("train_acc")?,
            },
        );
        n += 1;
    }
    Ok(n)
}

/// A schedule spec file, read and split.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The schedule table (`[schedule]`, or the top-level keys).
    pub schedule: Table,
    /// `preview.epochs`.
    pub epochs: Option<u64>,
    /// `preview.steps_per_epoch`.
    pub steps_per_epoch: Option<u64>,
    /// `[preview.metrics]`: the evaluation after each epoch, for a metric-driven schedule
    /// (lists `test_loss`, `test_acc`, `train_loss`, `train_acc`, one value per epoch).
    pub metrics: Vec<super::plateau::EvalMetrics>,
    /// The first comment line of the file, if it starts with one (what the spec reproduces).
    pub title: Option<String>,
}

/// One rendered step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Row {
    /// Optimizer step, from 0.
    pub step: u64,
    /// Fractional epoch, `step / steps_per_epoch`.
    pub epoch: f64,
    /// Learning rate of the step.
    pub lr: f64,
    /// Momentum of the step (the optimizer's where the schedule leaves it alone).
    pub momentum: f64,
}

/// Read a spec file and apply `--set` overrides `set` (see [`set_in_spec`]). Errors are
/// input errors naming the file or the `--set`.
pub fn load_spec(path: &Path, set: &[String]) -> Result<Spec> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| input_error(format!("cannot read {}: {e}", path.display())))?;
    parse_spec(&text, set).with_context(|| path.display().to_string())
}

/// Apply one `--set KEY=VALUE` to a spec document. `schedule.KEY` sets a schedule key
/// wherever the spec keeps them (its `[schedule]` table, or the top level of a bare
/// schedule spec, where a bare `KEY` works too); `preview.KEY` sets the preview length; in a
/// run config (it has `[data]` or `[train]`) any `table.key` may be set, as for `train`.
pub fn set_in_spec(doc: &mut Table, spec: &str) -> Result<()> {
    let (key, raw) = spec
        .split_once('=')
        .ok_or_else(|| input_error(format!("--set {spec:?}: expected KEY=VALUE")))?;
    let mut parts: Vec<&str> = key.trim().split('.').collect();
    if parts.iter().any(|p| p.trim().is_empty()) {
        bail_input!(
            "--set {spec:?}: the key must be a name or a dotted name, like schedule.max_lr"
        );
    }
    let run_config = doc.contains_key("data") || doc.contains_key("train");
    let table_form = matches!(doc.get("schedule"), Some(Value::Table(_)));
    match parts[0] {
        "schedule" if parts.len() == 1 => {}
        "schedule" if !table_form && !run_config => {
            parts.remove(0); // a bare schedule spec keeps its keys at the top level
        }
        "schedule" | "preview" => {}
        _ if run_config && parts.len() > 1 => {}
        _ if parts.len() == 1 && !table_form && !run_config => {}
        other => bail_input!(
            "--set {spec:?}: `{other}` is not a key this spec can take; give schedule.KEY=VALUE \
             (a schedule key) or preview.KEY=VALUE (epochs, steps_per_epoch){}",
            if run_config {
                ""
            } else {
                ", or use the schedule's keys at the spec's top level"
            }
        ),
    }
    let value = crate::util::parse_toml_value(raw.trim());
    crate::util::set_dotted(doc, &parts, value)
        .map_err(|p| input_error(format!("--set {spec:?}: `{p}` is not a table")))
}

/// Parse the text of a spec file (see [`load_spec`]), with `--set` overrides `set`.
pub fn parse_spec(text: &str, set: &[String]) -> Result<Spec> {
    let mut doc: Table = text
        .parse()
        .map_err(|e| input_error(format!("invalid TOML: {e}")))?;
    for s in set {
        set_in_spec(&mut doc, s)?;
    }
    let (epochs, steps_per_epoch, metrics) = match doc.remove("preview") {
        None => (None, None, Vec::new()),
        Some(Value::Table(t)) => {
            let mut keys = Keys::new(&t, "preview");
            let epochs = keys.u64("epochs")?;
            keys.ensure(epochs != Some(0), "epochs", "must be >= 1")?;
            let steps = keys.u64("steps_per_epoch")?;
            keys.ensure(steps != Some(0), "steps_per_epoch", "must be >= 1")?;
            let metrics = match keys.table("metrics")? {
                Some(m) => preview_metrics(m)?,
                None => Vec::new(),
            };
            keys.finish()?;
            (epochs, steps, metrics)
        }
        Some(_) => bail_input!("preview: must be a table ([preview] with epochs, steps_per_epoch)"),
    };
    let schedule = match doc.remove("schedule") {
        Some(Value::Table(t)) => {
            if let Some(k) = ["kind", "type", "family"]
                .iter()
                .find(|k| doc.contains_key(**k))
            {
                bail_input!(
                    "{k}: the spec has both a top-level `{k}` and a [schedule] table; \
                     give the schedule in one place"
                );
            }
            t
        }
        Some(_) => bail_input!("schedule: must be a table ([schedule])"),
        None => doc,
    };
    let title = text
        .lines()
        .next()
        .and_then(|l| l.trim().strip_prefix('#'))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    Ok(Spec {
        schedule,
        epochs,
        steps_per_epoch,
        metrics,
        title,
    })
}

/// The per-epoch lists of `[preview.metrics]`, one [`super::plateau::EvalMetrics`] per epoch.
fn preview_metrics(t: &Table) -> Result<Vec<super::plateau::EvalMetrics>> {
    let mut keys = Keys::new(t, "preview.metrics");
    let names = ["test_loss", "test_acc", "train_loss", "train_acc"];
    let mut lists = Vec::new();
    for n in names {
        lists.push(keys.f64_list(n)?);
    }
    keys.finish()?;
    let given: Vec<usize> = lists.iter().flatten().map(Vec::len).collect();
    if given.is_empty() {
        bail_input!(
            "preview.metrics: give at least one of {} (a list, one value per epoch)",
            names.join(", ")
        );
    }
    if given.iter().any(|&n| n != given[0]) {
        bail_input!("preview.metrics: the lists differ in length ({given:?}): give one value per epoch in each");
    }
    let at = |i: usize, e: usize| lists[i].as_ref().map(|v| v[e]);
    Ok((0..given[0])
        .map(|e| super::plateau::EvalMetrics {
            test_loss: at(0, e),
            test_acc: at(1, e),
            train_loss: at(2, e),
            train_acc: at(3, e),
        })
        .collect())
}

/// Evaluate every step of the run: `momentum` stands in where the schedule leaves momentum to
/// the optimizer. Fails (input error) if the schedule yields a non-finite or negative LR.
pub fn rows(schedule: &Schedule, momentum: f64) -> Result<Vec<Row>> {
    let len = schedule.run_length();
    (0..len.total_steps)
        .map(|k| {
            let lr = schedule.lr(k);
            if !lr.is_finite() || lr < 0.0 {
                bail_input!(
                    "schedule gives lr = {} at step {k}: check its values",
                    fmt_f64(lr)
                );
            }
            Ok(Row {
                step: k,
                epoch: len.epoch(k),
                lr,
                momentum: schedule.momentum_or(k, momentum),
            })
        })
        .collect()
}

/// The CSV text: header `step,epoch,lr,momentum`, shortest round-trip floats.
pub fn to_csv(rows: &[Row]) -> String {
    let mut s = String::with_capacity(32 + rows.len() * 48);
    s.push_str("step,epoch,lr,momentum\n");
    for r in rows {
        s.push_str(&format!(
            "{},{},{},{}\n",
            r.step,
            fmt_f64(r.epoch),
            fmt_f64(r.lr),
            fmt_f64(r.momentum)
        ));
    }
    s
}

/// `lrlab schedule`: validate everything, then write the CSV (to `out` or standard output)
/// and the figure. Nothing is written when the input is bad.
pub fn render(args: &RenderArgs) -> Result<()> {
    let spec = load_spec(&args.spec, &args.set)?;
    if !(args.momentum.is_finite() && (0.0..1.0).contains(&args.momentum)) {
        bail_input!("--momentum {}: must be in [0, 1)", fmt_f64(args.momentum));
    }
    let given = (
        args.epochs.or(spec.epochs),
        args.steps_per_epoch.or(spec.steps_per_epoch),
    );
    let len = match (args.run, given) {
        // A run config with nothing given: exactly the run's length.
        (Some(run), (None, None)) => run,
        (run, _) => {
            let epochs = pick(
                args.epochs,
                spec.epochs
                    .or(run.map(|r| r.total_steps.div_ceil(r.steps_per_epoch))),
                "--epochs",
                "epochs",
            )?;
            let steps = pick(
                args.steps_per_epoch,
                spec.steps_per_epoch.or(run.map(|r| r.steps_per_epoch)),
                "--steps-per-epoch",
                "steps_per_epoch",
            )?;
            RunLength::from_epochs(epochs, steps)?
        }
    };
    let (epochs, steps) = (
        len.total_steps.div_ceil(len.steps_per_epoch),
        len.steps_per_epoch,
    );
    let mut schedule = Schedule::from_table(&spec.schedule, len)
        .with_context(|| args.spec.display().to_string())?;
    match (&args.metrics, schedule.uses_metrics()) {
        (Some(m), true) => {
            record_metrics(m, &mut schedule, len.steps_per_epoch)?;
        }
        (None, true) if !spec.metrics.is_empty() => {
            // Epoch e's evaluation acts from the step that ends it.
            for (e, m) in spec.metrics.iter().enumerate() {
                schedule.record_eval((e as u64 + 1) * len.steps_per_epoch, m);
            }
        }
        (Some(m), false) => bail_input!(
            "--metrics {}: kind = \"{}\" does not follow evaluations (only plateau does)",
            m.display(),
            schedule.kind()
        ),
        (None, true) => crate::util::warn_once(
            "lrlab: a plateau schedule without --metrics FILE.csv: printing its base, with no \
             reductions",
        ),
        (None, false) if !spec.metrics.is_empty() => bail_input!(
            "{}: [preview.metrics] is given, but kind = \"{}\" does not follow evaluations (only \
             plateau does)",
            args.spec.display(),
            schedule.kind()
        ),
        (None, false) => {}
    }
    let rows = rows(&schedule, args.momentum).with_context(|| args.spec.display().to_string())?;
    let csv = to_csv(&rows);
    let figure = match &args.plot {
        None => None,
        Some(path) => {
            let format = report::plot::FigureFormat::of(path)?;
            let name = args
                .spec
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let plural =
                |n: u64, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
            let title = format!(
                "{} ({}, {} x {} per epoch)",
                spec.title.as_deref().unwrap_or(&name),
                schedule.kind(),
                plural(epochs, "epoch"),
                plural(steps, "step")
            );
            let points: Vec<(f64, f64, f64)> =
                rows.iter().map(|r| (r.epoch, r.lr, r.momentum)).collect();
            Some(report::plot::schedule_bytes(
                format, &title, &points, args.log_y,
            )?)
        }
    };
    match &args.out {
        Some(path) => write_atomic(path, csv.as_bytes())?,
        None => {
            let mut out = std::io::stdout().lock();
            match out.write_all(csv.as_bytes()).and_then(|_| out.flush()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    return Err(e).context("cannot write to standard output")
                }
                _ => {}
            }
        }
    }
    if let (Some(path), Some(bytes)) = (&args.plot, figure) {
        write_atomic(path, &bytes)?;
    }
    Ok(())
}

/// A run-length value from its flag, else from `[preview]`, else an input error naming both.
fn pick(flag: Option<u64>, preview: Option<u64>, flag_name: &str, key: &str) -> Result<u64> {
    match (flag, preview) {
        (Some(0), _) => bail_input!("{flag_name} 0: must be >= 1"),
        (Some(v), _) | (None, Some(v)) => Ok(v),
        (None, None) => bail_input!(
            "missing {flag_name}: give the flag or `{key}` in the spec's [preview] table"
        ),
    }
}
