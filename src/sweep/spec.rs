//! The sweep spec: a TOML file naming a base run, the axes that vary (`[grid]`, `[[zip]]`,
//! `seeds`) and the values reports compare against (`[report]`).
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
//! [report]                               # defaults for every run ...
//! target_acc = 0.85
//! [[report.point]]                       # ... and per grid point (later entries win)
//! match = { schedule = "sgdr" }
//! paper_acc = 0.9
//! paper_source = "Loshchilov & Hutter 2017, Table 1"
//! ```
//!
//! Instead of a file, the base may be given inline: `[base.data]`, `[base.train]`, ...
//! Parsing checks the spec's own shape; [`super::plan`] validates every expanded run config.

use crate::error::input_error;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The tables of a run config, the only first components an axis key may have.
pub const RUN_TABLES: [&str; 6] = ["data", "model", "optim", "train", "lr_find", "schedule"];

const TOP_KEYS: [&str; 6] = ["name", "base", "seeds", "grid", "zip", "report"];
const VALUE_KEYS: [&str; 3] = ["target_acc", "paper_acc", "paper_source"];

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
    /// `[report]`.
    pub report: ReportSpec,
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

/// Values that collect and reports compare a run against.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportValues {
    /// Accuracy whose first reaching epoch `collect` reports (fraction, in (0, 1]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_acc: Option<f64>,
    /// The accuracy the paper reports for this point (fraction, in [0, 1]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paper_acc: Option<f64>,
    /// Where the paper value comes from (paper, table, figure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paper_source: Option<String>,
}

impl ReportValues {
    /// Overwrite the fields that `other` sets.
    pub fn apply(&mut self, other: &ReportValues) {
        if other.target_acc.is_some() {
            self.target_acc = other.target_acc;
        }
        if other.paper_acc.is_some() {
            self.paper_acc = other.paper_acc;
        }
        if other.paper_source.is_some() {
            self.paper_source.clone_from(&other.paper_source);
        }
    }
}

/// The `[report]` table.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReportSpec {
    /// Values for every run.
    pub defaults: ReportValues,
    /// `[[report.point]]` entries, in file order.
    pub points: Vec<ReportPoint>,
}

/// One `[[report.point]]`: values for the runs whose labels match.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportPoint {
    /// Varied key (`schedule`, `optim.weight_decay`, `seed`) → value or variant name.
    pub matches: Vec<(String, toml::Value)>,
    /// The values these runs get.
    pub values: ReportValues,
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
                "unknown key `{k}`: expected name, base, seeds, [grid], [[zip]] or [report]"
            )));
        }
        let name = match table.get("name") {
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "sweep".into()),
            Some(toml::Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(v) => return Err(err(format!("name = {v}: must be a non-empty string"))),
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
        let report = match table.get("report") {
            None => ReportSpec::default(),
            Some(toml::Value::Table(t)) => parse_report(t).map_err(err)?,
            Some(v) => {
                return Err(err(format!(
                    "`report` must be a table, found {}",
                    v.type_str()
                )))
            }
        };
        let spec = Spec {
            path: path.to_path_buf(),
            text: text.to_string(),
            name,
            base,
            grid,
            zips,
            seeds,
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
            "{at}: unknown table `{}` in axis `{key}`: expected data, model, optim, train, \
             lr_find or schedule",
            parts[0]
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

/// Values of a list axis, labelled by their compact form.
fn list_values(at: &str, list: &[toml::Value]) -> std::result::Result<Vec<AxisValue>, String> {
    list.iter()
        .map(|v| {
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
                "the table {v} in a list has no name; write the axis as a table of named \
                 variants instead: [grid.KEY] name1 = {{...}}, name2 = {{...}}"
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

fn parse_report(t: &toml::Table) -> std::result::Result<ReportSpec, String> {
    if let Some(k) = t
        .keys()
        .find(|k| !VALUE_KEYS.contains(&k.as_str()) && k.as_str() != "point")
    {
        return Err(format!(
            "report: unknown key `{k}`: expected target_acc, paper_acc, paper_source or \
             [[report.point]]"
        ));
    }
    let defaults = report_values("report", t)?;
    let mut points = Vec::new();
    match t.get("point") {
        None => {}
        Some(toml::Value::Array(list)) => {
            for (i, p) in list.iter().enumerate() {
                let at = format!("report.point[{i}]");
                let p = p
                    .as_table()
                    .ok_or_else(|| format!("{at}: expected a table"))?;
                if let Some(k) = p
                    .keys()
                    .find(|k| !VALUE_KEYS.contains(&k.as_str()) && k.as_str() != "match")
                {
                    return Err(format!(
                        "{at}: unknown key `{k}`: expected match, target_acc, paper_acc or \
                         paper_source"
                    ));
                }
                let m = match p.get("match") {
                    Some(toml::Value::Table(m)) if !m.is_empty() => m,
                    _ => {
                        return Err(format!(
                            "{at}: missing `match`: a table of varied keys and values, like \
                             match = {{ schedule = \"sgdr\" }}"
                        ))
                    }
                };
                points.push(ReportPoint {
                    matches: m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                    values: report_values(&at, p)?,
                });
            }
        }
        Some(v) => {
            return Err(format!(
                "report.point: expected [[report.point]] tables, found {}",
                v.type_str()
            ))
        }
    }
    Ok(ReportSpec { defaults, points })
}

fn report_values(at: &str, t: &toml::Table) -> std::result::Result<ReportValues, String> {
    let frac = |key: &str, lo_open: bool| -> std::result::Result<Option<f64>, String> {
        match t.get(key) {
            None => Ok(None),
            Some(v) => {
                let x = v.as_float().or(v.as_integer().map(|i| i as f64));
                match x {
                    Some(x) if (if lo_open { x > 0.0 } else { x >= 0.0 }) && x <= 1.0 => {
                        Ok(Some(x))
                    }
                    _ => Err(format!(
                        "{at}.{key} = {v}: must be a fraction in {}0, 1] (0.93 for 93%)",
                        if lo_open { "(" } else { "[" }
                    )),
                }
            }
        }
    };
    let paper_source = match t.get("paper_source") {
        None => None,
        Some(toml::Value::String(s)) => Some(s.clone()),
        Some(v) => return Err(format!("{at}.paper_source = {v}: must be a string")),
    };
    Ok(ReportValues {
        target_acc: frac("target_acc", true)?,
        paper_acc: frac("paper_acc", false)?,
        paper_source,
    })
}

/// Does a `match` value select an axis value? Variant names and labels compare as text,
/// numbers by value (`5e-4` matches `0.0005`).
pub fn matches(want: &toml::Value, got: &AxisValue) -> bool {
    if let toml::Value::String(s) = want {
        if *s == got.label {
            return true;
        }
    }
    let num = |v: &toml::Value| v.as_float().or(v.as_integer().map(|i| i as f64));
    match (num(want), num(&got.value)) {
        (Some(a), Some(b)) => a == b,
        _ => *want == got.value,
    }
}
