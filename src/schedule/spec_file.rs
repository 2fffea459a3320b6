//! Schedule spec files (what `lrlab schedule SPEC.toml` renders) and their rows: the spec
//! holds the schedule keys at top level or in a `[schedule]` table (so a full run
//! config works, and gives the run's length from its data and batch size), plus an optional
//! `[preview]` table with `epochs` and `steps_per_epoch` used when the flags are not given.

use super::keys::Keys;
use super::Schedule;
use crate::bail_input;
use crate::error::input_error;
use crate::util::fmt_f64;
use anyhow::{Context, Result};
use std::path::Path;
use toml::{Table, Value};

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
