//! The sweep spec: a TOML file naming a base run, the axes that vary (`[grid]`, `[[zip]]`,
//! `seeds`), the target accuracy collect reports on (`[target]`) and the papers' numbers
//! for `lrlab report` (`[report]`).
//!
//! ```toml
//! name = "fashion-wd"                    # optional; default: the file name without .toml
//! base = "fashion_lenet_1cycle.toml"     # a run config, relative to this file
//! seeds = [0, 1, 2]                      # repeat every point; sets train.seed
//!
//! [grid]                                 # cartesian product; keys are quoted dotted paths
//! "optim.weight_decay" = [1e-4, 5e-4]
//!
//! [grid.schedule]                        # a table: named variants (the name is the label)
//! one_cycle = { kind = "one_cycle", max_lr = 0.05 }
//! sgdr = { kind = "sgdr", lr_max = 0.05, t_0 = 1, t_mult = 2 }
//!
//! [[zip]]                                # paired lists, varied together
//! "optim.momentum" = [0.9, 0.95]
//! "optim.nesterov" = [false, true]
//!
//! [[zip]]                                # tables in a list are named by their `name` key
//! schedule = [{ name = "one_cycle", kind = "one_cycle", max_lr = 0.1 },
//!             { name = "step", kind = "step", lr = 0.02, milestones = [12, 18] }]
//! "train.epochs" = [6, 24]
//!
//! [target]                               # collect reports the first epoch reaching it
//! test_acc = 0.85                        # every run (a fraction, like epochs.csv's test_acc)
//! [target.point]                         # grid points: param=value conditions, first match
//! "schedule=sgdr" = 0.9
//!
//! [report]                               # read by `lrlab report` (see report::paper)
//! title = "SGDR on Fashion-MNIST"
//! [report.paper]
//! "schedule=sgdr" = { test_error = 4.03, source = "Loshchilov & Hutter 2017, Table 1" }
//! ```
//!
//! Instead of a file, the base may be given inline: `[base.data]`, `[base.train]`, ...
//! Parsing checks the spec's own shape; [`super::plan`] validates every expanded run config.

use crate::error::input_error;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// The tables of a run config, the only first components an axis key may have.
pub const RUN_TABLES: [&str; 6] = ["data", "model", "optim", "train", "lr_find", "schedule"];

const TOP_KEYS: [&str; 7] = ["name", "base", "seeds", "grid", "zip", "target", "report"];

/// A parsed sweep spec.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The spec file, as given.
    pub path: PathBuf,
    /// The spec's text (copied into the sweep folder as `sweep.toml`).
    pub text: String,
    /// The sweep's name: `name`, or the file stem.
    pub name: String,
    /// The base run config table (unvalidated; every expanded run is validated).
    pub base: toml::Table,
    /// `[grid]` axes, sorted by key.
    pub grid: Vec<Axis>,
    /// `[[zip]]` groups in file order; the axes of a group have equally many values.
    pub zips: Vec<Vec<Axis>>,
    /// `seeds`, if given.
    pub seeds: Option<Vec<u64>>,
    /// `[target]`.
    pub target: Targets,
    /// `[report]`, checked here and read by `lrlab report`.
    pub report: crate::report::paper::ReportSpec,
}

/// One varied key and its values.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    /// Dotted key into the run config: `optim.weight_decay`, `schedule`.
    pub key: String,
    /// The values in sweep order, each with the label used in run names and CSV columns.
    pub values: Vec<AxisValue>,
}

/// One value of an axis.
#[derive(Clone, Debug, PartialEq)]
pub struct AxisValue {
    /// The variant name, or the value written compactly (`0.0005`, `30+60`, `true`).
    pub label: String,
    /// The TOML value set at the axis key.
    pub value: toml::Value,
}

/// The `[target]` table: the test accuracy whose first reaching epoch `collect` reports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Targets {
    /// `test_acc`: for every run not matched by a point.
    pub test_acc: Option<f64>,
    /// `[target.point]` entries in file order; a run takes the first whose conditions it
    /// meets.
    pub points: Vec<TargetPoint>,
}

/// One `[target.point]` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetPoint {
    /// The key as written: `"schedule=sgdr, optim.weight_decay=5e-4"`.
    pub key: String,
    /// Its conditions, matched as `[report.paper]` keys are ([`crate::report::paper::matches`]).
    pub conditions: Vec<(String, String)>,
    /// The target accuracy (fraction).
    pub test_acc: f64,
}

impl Spec {
    /// Read and check a spec file. Errors are input errors that start with the file name.
    pub fn load(path: &Path) -> Result<Spec> {
        let text = std::fs::read(path)
            .map_err(|e| input_error(format!("{}: cannot read: {e}", path.display())))?;
        let text = String::from_utf8(text)
            .map_err(|_| input_error(format!("{}: not valid UTF-8 text", path.display())))?;
        Spec::parse(path, &text)
    }

    /// Check a spec's text; `path` names it in messages and anchors a relative `base`.
    pub fn parse(path: &Path, text: &str) -> Result<Spec> {
        let p = path.display().to_string();
        let err = |msg: String| input_error(format!("{p}: {msg}"));
        let table = text
            .parse::<toml::Table>()
            .map_err(|e| err(format!("invalid TOML: {}", e.to_string().trim())))?;
        if let Some(k) = table.keys().find(|k| !TOP_KEYS.contains(&k.as_str())) {
            return Err(err(format!(
                "unknown key `{k}`{}: expected name, base, seeds, [grid], [[zip]], [target] or \
                 [report]",
                crate::util::did_you_mean(k, TOP_KEYS)
            )));
        }
        let name = match table.get("name") {
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "sweep".into()),
            Some(toml::Value::String(s))
                if !s.trim().is_empty() && !s.chars().any(char::is_control) =>
            {
                s.clone()
            }
            Some(v) => {
                return Err(err(format!(
                    "name = {v}: must be a non-empty string without control characters"
                )))
            }
        };
        let base = match table.get("base") {
            None => {
                return Err(err(
                    "missing `base`: give a run config file (base = \"run.toml\") or inline \
                     tables ([base.data], [base.train], ...)"
                        .into(),
                ))
            }
            Some(toml::Value::String(f)) => read_base(path, f).map_err(err)?,
            Some(toml::Value::Table(t)) => t.clone(),
            Some(v) => {
                return Err(err(format!(
                    "base = {v}: expected a file name or a table of run config tables"
                )))
            }
        };
        let seeds = match table.get("seeds") {
            None => None,
            Some(v) => Some(parse_seeds(v).map_err(err)?),
        };
        let grid = match table.get("grid") {
            None => Vec::new(),
            Some(toml::Value::Table(t)) => {
                let mut axes = Vec::new();
                for (k, v) in t {
                    axes.push(parse_axis(&format!("grid.\"{k}\""), k, v, true).map_err(err)?);
                }
                axes
            }
            Some(v) => {
                return Err(err(format!(
                    "`grid` must be a table, found {}",
                    v.type_str()
                )))
            }
        };
        let zips = match table.get("zip") {
            None => Vec::new(),
            Some(toml::Value::Array(groups)) => {
                let mut out = Vec::new();
                for (i, g) in groups.iter().enumerate() {
                    out.push(parse_zip(i, g).map_err(err)?);
                }
                out
            }
            Some(v) => {
                return Err(err(format!(
                    "`zip` must be an array of tables ([[zip]]), found {}",
                    v.type_str()
                )))
            }
        };
        let target = match table.get("target") {
            None => Targets::default(),
            Some(toml::Value::Table(t)) => parse_target(t).map_err(err)?,
            Some(v) => {
                return Err(err(format!(
                    "`target` must be a table, found {}",
                    v.type_str()
                )))
            }
        };
        // `lrlab report` reads [report]; its errors name the file already.
        let report = crate::report::paper::parse(path, &table)?;
        let spec = Spec {
            path: path.to_path_buf(),
            text: text.to_string(),
            name,
            base,
            grid,
            zips,
            seeds,
            target,
            report,
        };
        spec.check_axes().map_err(err)?;
        Ok(spec)
    }

    /// Every axis of the grid and the zip groups.
    pub fn axes(&self) -> impl Iterator<Item = &Axis> {
        self.grid.iter().chain(self.zips.iter().flatten())
    }

    /// No key varied twice, `train.seed` not both an axis and `seeds`, something varies.
    fn check_axes(&self) -> std::result::Result<(), String> {
        let mut seen: Vec<&str> = Vec::new();
        for a in self.axes() {
            if seen.contains(&a.key.as_str()) {
                return Err(format!(
                    "axis `{}` is given twice (in [grid] and/or [[zip]] groups)",
                    a.key
                ));
            }
            seen.push(&a.key);
        }
        if self.seeds.is_some() && seen.contains(&"train.seed") {
            return Err("axis `train.seed` and `seeds` both set the seed; keep one of them".into());
        }
        if seen.is_empty() && self.seeds.is_none() {
            return Err(
                "empty grid: the spec varies nothing; add axes to [grid] or [[zip]], or seeds"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Read the base run config file, relative to the spec's folder.
fn read_base(spec: &Path, file: &str) -> std::result::Result<toml::Table, String> {
    let dir = spec.parent().unwrap_or(Path::new(""));
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("base = {file:?}: cannot read {}: {e}", path.display()))?;
    text.parse::<toml::Table>()
        .map_err(|e| format!("base = {file:?}: invalid TOML: {}", e.to_string().trim()))
}

fn parse_seeds(v: &toml::Value) -> std::result::Result<Vec<u64>, String> {
    let bad = || format!("seeds = {v}: expected a non-empty list of distinct integers >= 0");
    let list = v.as_array().ok_or_else(bad)?;
    let mut seeds = Vec::new();
    for s in list {
        match s.as_integer() {
            Some(i) if i >= 0 && !seeds.contains(&(i as u64)) => seeds.push(i as u64),
            _ => return Err(bad()),
        }
    }
    if seeds.is_empty() {
        return Err(bad());
    }
    Ok(seeds)
}

/// Check an axis key's shape: dotted, first component a run config table.
fn check_key(at: &str, key: &str) -> std::result::Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.trim().is_empty() || p.trim() != *p) {
        return Err(format!(
            "{at}: `{key}` is not a dotted key like \"optim.weight_decay\""
        ));
    }
    if !RUN_TABLES.contains(&parts[0]) {
        return Err(format!(
            "{at}: unknown table `{}` in axis `{key}`{}: expected data, model, optim, train, \
             lr_find or schedule",
            parts[0],
            crate::util::did_you_mean(parts[0], RUN_TABLES)
        ));
    }
    Ok(())
}

/// A `[grid]` entry: a list of values, or a table of named variants. `unique`: no two
/// values may share a label (a zip list may repeat values; its pairs must differ).
fn parse_axis(
    at: &str,
    key: &str,
    v: &toml::Value,
    unique: bool,
) -> std::result::Result<Axis, String> {
    check_key(at, key)?;
    let values = match v {
        toml::Value::Array(list) => list_values(at, list)?,
        toml::Value::Table(t) => {
            let mut values = Vec::new();
            for (name, value) in t {
                // `optim.weight_decay = [...]` unquoted under [grid] is TOML for a table
                // `optim` holding `weight_decay`: catch it rather than replace [optim].
                if !key.contains('.') && !value.is_table() {
                    return Err(format!(
                        "{at}: variant `{name}` of axis `{key}` is not a table (found {}), but \
                         [{key}] is a table; to vary one key, quote it: \"{key}.{name}\" = [...]",
                        value.type_str()
                    ));
                }
                values.push(AxisValue {
                    label: name.clone(),
                    value: value.clone(),
                });
            }
            values
        }
        other => {
            return Err(format!(
                "{at}: expected a list of values or a table of named variants, found {} {other}",
                other.type_str()
            ))
        }
    };
    if values.is_empty() {
        return Err(format!("{at}: axis `{key}` has no values"));
    }
    for (i, a) in values.iter().enumerate().filter(|_| unique) {
        if let Some(b) = values[..i].iter().find(|b| b.label == a.label) {
            return Err(format!(
                "{at}: values {} and {} of axis `{key}` have the same label `{}`",
                b.value, a.value, a.label
            ));
        }
    }
    Ok(Axis {
        key: key.to_string(),
        values,
    })
}

/// Values of a list axis, labelled by their compact form. A table in a list is labelled by
/// its `name` key, which is removed from the value (so a `[[zip]]` can pair whole tables,
/// e.g. a schedule with the run length it needs).
fn list_values(at: &str, list: &[toml::Value]) -> std::result::Result<Vec<AxisValue>, String> {
    list.iter()
        .map(|v| {
            if let toml::Value::Table(t) = v {
                if let Some(name) = t.get("name") {
                    let name = name.as_str().filter(|n| !n.is_empty()).ok_or_else(|| {
                        format!("{at}: `name` of the table {v} must be a non-empty string")
                    })?;
                    let mut t = t.clone();
                    t.remove("name");
                    return Ok(AxisValue {
                        label: name.to_string(),
                        value: toml::Value::Table(t),
                    });
                }
            }
            Ok(AxisValue {
                label: label(v).map_err(|why| format!("{at}: {why}"))?,
                value: v.clone(),
            })
        })
        .collect()
}

/// The compact label of a value: strings as they are, numbers in their shortest exact form
/// (`0.0005`, `1e-5`), lists joined by `+`. Tables have no label: they need a name.
pub fn label(v: &toml::Value) -> std::result::Result<String, String> {
    Ok(match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => format!("{f:?}"),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(a) => {
            if a.is_empty() {
                "empty".to_string()
            } else {
                a.iter()
                    .map(label)
                    .collect::<std::result::Result<Vec<_>, _>>()?
                    .join("+")
            }
        }
        toml::Value::Table(_) => {
            return Err(format!(
                "the table {v} in a list has no name; give it a `name = \"...\"` key, or \
                 write the axis as a table of named variants: [grid.KEY] name1 = {{...}}"
            ))
        }
    })
}

/// One `[[zip]]` group: lists of equal length, paired by position.
fn parse_zip(i: usize, g: &toml::Value) -> std::result::Result<Vec<Axis>, String> {
    let at = format!("zip[{i}]");
    let t = g
        .as_table()
        .ok_or_else(|| format!("{at}: expected a table of lists, found {}", g.type_str()))?;
    if t.is_empty() {
        return Err(format!("{at}: empty group"));
    }
    let mut axes = Vec::new();
    for (k, v) in t {
        let at = format!("{at}.\"{k}\"");
        let list = v.as_array().ok_or_else(|| {
            format!(
                "{at}: expected a list (zip pairs lists by position), found {}",
                v.type_str()
            )
        })?;
        let axis = parse_axis(&at, k, &toml::Value::Array(list.clone()), false)?;
        axes.push(axis);
    }
    let n = axes[0].values.len();
    if let Some(a) = axes.iter().find(|a| a.values.len() != n) {
        return Err(format!(
            "{at}: lists of different lengths: `{}` has {n} values, `{}` has {}",
            axes[0].key,
            a.key,
            a.values.len()
        ));
    }
    Ok(axes)
}

/// `[target]`: `test_acc` and `[target.point]`.
fn parse_target(t: &toml::Table) -> std::result::Result<Targets, String> {
    let frac = |at: &str, v: &toml::Value| -> std::result::Result<f64, String> {
        match v.as_float().or(v.as_integer().map(|i| i as f64)) {
            Some(x) if x > 0.0 && x <= 1.0 => Ok(x),
            _ => Err(format!(
                "{at} = {v}: must be a test accuracy in (0, 1], a fraction like epochs.csv's \
                 test_acc (0.93 for 93%)"
            )),
        }
    };
    let mut out = Targets::default();
    for (k, v) in t {
        match k.as_str() {
            "test_acc" => out.test_acc = Some(frac("target.test_acc", v)?),
            "point" => {
                let points = v.as_table().ok_or_else(|| {
                    "target.point: expected a table of \"param=value, ...\" = accuracy".to_string()
                })?;
                for (key, v) in points {
                    let at = format!("target.point.\"{key}\"");
                    let conditions = crate::report::paper::conditions(key).ok_or_else(|| {
                        format!("{at}: the key must be param=value pairs joined by commas")
                    })?;
                    out.points.push(TargetPoint {
                        key: key.clone(),
                        conditions,
                        test_acc: frac(&at, v)?,
                    });
                }
            }
            other => {
                return Err(format!(
                    "target: unknown key `{other}`{}: expected test_acc or [target.point]",
                    crate::util::did_you_mean(other, ["test_acc", "point"])
                ))
            }
        }
    }
    Ok(out)
}
