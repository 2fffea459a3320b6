//! Expansion of a spec into runs: the cartesian product of the `[grid]` axes, the `[[zip]]`
//! groups and the seeds, each run with a readable folder name and an id that is a hash of its
//! fully resolved config.
//!
//! Order (the run index): seeds outermost, then the grid axes in key order, then the zip
//! groups in file order; the last one varies fastest. Values keep the order they are written
//! in (named variants: alphabetical, as TOML tables are read). The same spec always gives the
//! same runs, names and ids.
//!
//! A run's overrides are applied to the base shallowest key first, so an axis
//! `"schedule.max_lr"` changes a key inside each variant of an axis `schedule`.

use super::spec::{AxisValue, Spec, RUN_TABLES};
use crate::config::RunConfig;
use crate::error::input_error;
use crate::schedule::{RunLength, Schedule};
use crate::util::{hex_sha256, sanitize};
use anyhow::Result;
use std::path::Path;

/// Most runs one sweep may plan (each is validated and listed in the manifest).
pub const MAX_RUNS: usize = 100_000;

/// The label key of the `seeds` axis (it sets `train.seed`).
pub const SEED: &str = "seed";

/// A spec expanded into runs.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The spec it came from.
    pub spec: Spec,
    /// The varied keys, in column order: axis keys sorted, then `seed` when `seeds` is set.
    pub varied: Vec<String>,
    /// The runs, in index order.
    pub runs: Vec<PlannedRun>,
}

/// One run of a plan.
#[derive(Clone, Debug)]
pub struct PlannedRun {
    /// Position in the expansion (0-based).
    pub index: usize,
    /// Folder name: `key=label,...`, sanitised.
    pub name: String,
    /// First 16 hex digits of the SHA-256 of [`PlannedRun::config`].
    pub id: String,
    /// Label of each varied key, in [`Plan::varied`] order.
    pub labels: Vec<(String, String)>,
    /// The values set on the base, `(dotted key, value)`, in the order applied.
    pub overrides: Vec<(String, toml::Value)>,
    /// The resolved run config (`RunConfig::to_toml`).
    pub config: String,
    /// The test accuracy whose first reaching epoch collect reports (`[target]`).
    pub target_acc: Option<f64>,
}

/// Read a spec file and expand it.
pub fn load(path: &Path) -> Result<Plan> {
    expand(Spec::load(path)?)
}

/// One choice in one dimension: the assignments it makes.
#[derive(Clone)]
struct Assign {
    /// Column / name key (`seed` for seeds).
    label_key: String,
    /// Dotted key set in the run config.
    set_key: String,
    value: AxisValue,
}

/// Expand a spec: every combination, validated, named and hashed. Errors are input errors
/// naming the spec file and the axis or run.
pub fn expand(spec: Spec) -> Result<Plan> {
    let p = spec.path.display().to_string();
    let err = |msg: String| input_error(format!("{p}: {msg}"));
    for axis in spec.axes() {
        check_axis_key(&spec.base, &axis.key, &axis.values[0].value).map_err(&err)?;
    }

    let mut dims: Vec<Vec<Vec<Assign>>> = Vec::new();
    if let Some(seeds) = &spec.seeds {
        dims.push(
            seeds
                .iter()
                .map(|&s| {
                    vec![Assign {
                        label_key: SEED.into(),
                        set_key: "train.seed".into(),
                        value: AxisValue {
                            label: s.to_string(),
                            value: toml::Value::Integer(s as i64),
                        },
                    }]
                })
                .collect(),
        );
    }
    for axis in &spec.grid {
        dims.push(
            axis.values
                .iter()
                .map(|v| vec![assign(&axis.key, v)])
                .collect(),
        );
    }
    for group in &spec.zips {
        let n = group[0].values.len();
        dims.push(
            (0..n)
                .map(|i| group.iter().map(|a| assign(&a.key, &a.values[i])).collect())
                .collect(),
        );
    }
    let mut varied: Vec<String> = spec.axes().map(|a| a.key.clone()).collect();
    varied.sort();
    if spec.seeds.is_some() {
        varied.push(SEED.into());
    }

    let total = dims
        .iter()
        .try_fold(1usize, |n, d| n.checked_mul(d.len()))
        .filter(|&n| n <= MAX_RUNS)
        .ok_or_else(|| {
            let sizes: Vec<String> = dims.iter().map(|d| d.len().to_string()).collect();
            err(format!(
                "the grid has {} runs, more than {MAX_RUNS}; split the sweep",
                sizes.join(" x ")
            ))
        })?;
    let mut runs: Vec<PlannedRun> = Vec::with_capacity(total);
    let mut odometer = vec![0usize; dims.len()];
    for index in 0..total {
        let assigns: Vec<Assign> = dims
            .iter()
            .zip(&odometer)
            .flat_map(|(d, &i)| d[i].iter().cloned())
            .collect();
        let labels: Vec<(String, String)> = varied
            .iter()
            .map(|k| {
                let a = assigns
                    .iter()
                    .find(|a| &a.label_key == k)
                    .expect("every key");
                (k.clone(), a.value.label.clone())
            })
            .collect();
        let raw = raw_name(&labels);
        let mut overrides: Vec<(String, toml::Value)> = assigns
            .iter()
            .map(|a| (a.set_key.clone(), a.value.value.clone()))
            .collect();
        overrides.sort_by(|a, b| depth(&a.0).cmp(&depth(&b.0)).then(a.0.cmp(&b.0)));
        let mut table = spec.base.clone();
        for (k, v) in &overrides {
            set_key(&mut table, k, v.clone()).map_err(|e| err(format!("run `{raw}`: {e}")))?;
        }
        let cfg = validate(table).map_err(|e| err(format!("run `{raw}`: {e:#}")))?;
        let config = cfg.to_toml()?;
        runs.push(PlannedRun {
            index,
            name: sanitize(&raw),
            id: config_id(&config),
            labels,
            overrides,
            config,
            target_acc: None,
        });
        // Advance the odometer: the last dimension fastest.
        for d in (0..dims.len()).rev() {
            odometer[d] += 1;
            if odometer[d] < dims[d].len() {
                break;
            }
            odometer[d] = 0;
        }
    }
    check_unique(&runs).map_err(&err)?;
    resolve_targets(&spec, &varied, &mut runs).map_err(&err)?;
    check_report_points(&spec, &varied, &runs).map_err(&err)?;
    Ok(Plan { spec, varied, runs })
}

fn assign(key: &str, v: &AxisValue) -> Assign {
    Assign {
        label_key: key.to_string(),
        set_key: key.to_string(),
        value: v.clone(),
    }
}

fn depth(key: &str) -> usize {
    key.matches('.').count()
}

/// `key=label,key=label`: the run name before sanitising.
pub fn raw_name(labels: &[(String, String)]) -> String {
    labels
        .iter()
        .map(|(k, l)| format!("{k}={l}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A run's id: the first 16 hex digits of the SHA-256 of its resolved config text.
pub fn config_id(config_toml: &str) -> String {
    hex_sha256(config_toml.as_bytes())[..16].to_string()
}

/// Set a dotted key in a TOML table, creating intermediate tables.
pub fn set_key(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<()> {
    let parts: Vec<&str> = key.split('.').collect();
    let mut cur = table;
    for (i, p) in parts[..parts.len() - 1].iter().enumerate() {
        let entry = cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = match entry {
            toml::Value::Table(t) => t,
            other => crate::bail_input!(
                "axis `{key}`: `{}` is a {}, not a table",
                parts[..=i].join("."),
                other.type_str()
            ),
        };
    }
    cur.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

/// An axis key must name a field: `[schedule]` is free-form (its keys are checked per run by
/// the schedule), the other tables are flat structs whose fields are known.
fn check_axis_key(
    base: &toml::Table,
    key: &str,
    first: &toml::Value,
) -> std::result::Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    debug_assert!(RUN_TABLES.contains(&parts[0]));
    if parts[0] == "schedule" || parts.len() == 1 {
        return Ok(());
    }
    if parts.len() > 2 {
        return Err(format!(
            "axis `{key}`: [{}] has no nested tables; expected {}.KEY",
            parts[0], parts[0]
        ));
    }
    let mut probe = base.clone();
    set_key(&mut probe, key, first.clone()).map_err(|e| e.to_string())?;
    // Only an unknown-field error is about the key; others are checked per run.
    if let Err(e) = RunConfig::from_table(probe) {
        let msg = e.to_string();
        if msg.starts_with(&format!("{key} = ")) && msg.contains(": unknown key") {
            return Err(format!(
                "axis `{key}` names no key of the run config: {msg}"
            ));
        }
    }
    Ok(())
}

/// Build a run config from a table and check everything that can be checked without data:
/// every table's values, the model, and the schedule (against nominal run lengths).
pub fn validate(table: toml::Table) -> Result<RunConfig> {
    // from_table checks every table but the schedule, which needs the run length.
    let cfg = RunConfig::from_table(table)?;
    check_schedule(&cfg)?;
    Ok(cfg)
}

/// The schedule's keys and values, checked with nominal run lengths (the real one needs the
/// data). Only an error that every nominal length gives is reported, so a schedule valid for
/// the real length is never rejected here; `"auto"` values get placeholders.
fn check_schedule(cfg: &RunConfig) -> Result<()> {
    let mut table = cfg.schedule.clone();
    let auto = crate::lr_find::auto_keys(&table);
    if !auto.is_empty() {
        cfg.lr_find.validate()?;
    }
    for k in auto {
        let v = if k == "base_lr" { 1e-12 } else { 1.0 };
        table.insert(k, toml::Value::Float(v));
    }
    let mut first = None;
    for steps_per_epoch in [1000u64, 1, 100_000] {
        let total_steps = if cfg.train.steps > 0 {
            cfg.train.steps
        } else {
            cfg.train.epochs.saturating_mul(steps_per_epoch)
        };
        let len = RunLength {
            steps_per_epoch,
            total_steps: total_steps.max(1),
        };
        match Schedule::from_table(&table, len) {
            Ok(_) => return Ok(()),
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    Err(first.expect("at least one length was tried"))
}

/// Distinct folder names and distinct ids.
fn check_unique(runs: &[PlannedRun]) -> std::result::Result<(), String> {
    let mut by_name = std::collections::HashMap::new();
    let mut by_id = std::collections::HashMap::new();
    for r in runs {
        // Compared without case: on a case-insensitive file system `A` and `a` are one folder.
        let folder = r.name.to_lowercase();
        if let Some(&j) = by_name.get(&folder) {
            let o: &PlannedRun = &runs[j];
            return Err(format!(
                "runs `{}` and `{}` get the same folder name `{}` (`{}` ignoring case); make \
                 the values or variant names distinct",
                raw_name(&o.labels),
                raw_name(&r.labels),
                o.name,
                r.name
            ));
        }
        if let Some(&j) = by_id.get(&r.id) {
            let o: &PlannedRun = &runs[j];
            return Err(format!(
                "runs `{}` and `{}` have the same resolved config (id {}); the axis values \
                 that differ between them change nothing",
                raw_name(&o.labels),
                raw_name(&r.labels),
                r.id
            ));
        }
        by_name.insert(folder, r.index);
        by_id.insert(r.id.clone(), r.index);
    }
    Ok(())
}

/// The `[report]` entries that name grid points, checked before any run: the reference and
/// each side of each claim must select exactly one grid point (the runs' labels but the seed),
/// as the report reads them, and a claim's `epoch` must be one that every run of both sides
/// has. Without this a misspelt point or an epoch past the runs' end shows up hours later as
/// an empty column or "has no result yet".
fn check_report_points(
    spec: &Spec,
    varied: &[String],
    runs: &[PlannedRun],
) -> std::result::Result<(), String> {
    use crate::report::paper::{matches, PointRef};
    let mut points: Vec<Vec<(String, String)>> = Vec::new();
    for r in runs {
        let p: Vec<(String, String)> = r
            .labels
            .iter()
            .filter(|(k, _)| !crate::report::group::is_seed(k))
            .cloned()
            .collect();
        if !points.contains(&p) {
            points.push(p);
        }
    }
    let one = |what: &str, side: &PointRef| -> std::result::Result<(), String> {
        let found: Vec<&Vec<(String, String)>> =
            points.iter().filter(|p| matches(&side.1, p)).collect();
        let label = |p: &Vec<(String, String)>| {
            p.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match found.len() {
            1 => Ok(()),
            0 => Err(format!(
                "{what} = \"{}\" matches no grid point (the varied keys are {}; the points are {})",
                side.0,
                varied.join(", "),
                points.iter().map(label).collect::<Vec<_>>().join("; ")
            )),
            n => Err(format!(
                "{what} = \"{}\" matches {n} grid points ({}); name one",
                side.0,
                found.into_iter().map(label).collect::<Vec<_>>().join("; ")
            )),
        }
    };
    if let Some(r) = &spec.report.reference {
        one("report.reference", r)?;
    }
    for (i, c) in spec.report.claims.iter().enumerate() {
        let at = format!("report.claim #{} (\"{}\")", i + 1, c.text);
        one(&format!("{at}: a"), &c.a)?;
        one(&format!("{at}: b"), &c.b)?;
        let Some(epoch) = c.epoch else { continue };
        for side in [&c.a, &c.b] {
            for r in runs.iter().filter(|r| matches(&side.1, &r.labels)) {
                // Runs given in steps have their epochs only once the data is read.
                let Ok(cfg) = crate::config::RunConfig::from_toml_str(&r.config) else {
                    continue;
                };
                if cfg.train.steps == 0 && (cfg.train.epochs as f64) < epoch {
                    return Err(format!(
                        "{at}: epoch = {epoch}, but run {} of \"{}\" has {} epochs",
                        r.name, side.0, cfg.train.epochs
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Each run's target: the first `[target.point]` whose conditions its labels meet, else
/// `target.test_acc`. Every point, and every `[report.paper]` key, must match some run (a
/// misspelt key or value would silently match none).
fn resolve_targets(
    spec: &Spec,
    varied: &[String],
    runs: &mut [PlannedRun],
) -> std::result::Result<(), String> {
    let t = &spec.target;
    for p in &t.points {
        if !runs
            .iter()
            .any(|r| crate::report::paper::matches(&p.conditions, &r.labels))
        {
            return Err(format!(
                "target.point.\"{}\" matches no run (the varied keys are {})",
                p.key,
                varied.join(", ")
            ));
        }
    }
    // The same for the papers' numbers of [report.paper]: a key that matches no run would
    // never be compared with anything.
    for p in &spec.report.paper {
        if !runs
            .iter()
            .any(|r| crate::report::paper::matches(&p.conditions, &r.labels))
        {
            return Err(format!(
                "report.paper.\"{}\" matches no run (the varied keys are {})",
                p.key,
                varied.join(", ")
            ));
        }
    }
    for r in runs.iter_mut() {
        r.target_acc = t
            .points
            .iter()
            .find(|p| crate::report::paper::matches(&p.conditions, &r.labels))
            .map(|p| p.test_acc)
            .or(t.test_acc);
    }
    Ok(())
}
