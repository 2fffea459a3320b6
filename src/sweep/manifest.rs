//! The frozen sweep folder: `sweep.toml` (the spec), `manifest.json` (every run: index, name,
//! id, labels, overrides, target accuracy and the resolved config) and `runs.csv` (the same
//! without the configs), written once and extended, never renumbered.
//!
//! Planning a spec again into an existing folder keeps every existing run at its index and
//! appends the new ones (a grid grown by a value); a run that disappeared or whose config
//! changed is an input error, since its folder holds results of another config.

use super::plan::{Plan, PlannedRun};
use crate::error::input_error;
use crate::util::write_atomic;
use anyhow::{Context, Result};
use fs2::FileExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Version of the `manifest.json` layout.
pub const FORMAT: u32 = 1;
/// The manifest's file name.
pub const MANIFEST: &str = "manifest.json";
/// Folder of the claim locks.
pub const LOCKS: &str = ".locks";

/// `manifest.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// The sweep's name.
    pub name: String,
    /// The spec file the runs were planned from, as given.
    pub spec: String,
    /// The varied keys: the label columns of `runs.csv` and `summary.csv`.
    pub varied: Vec<String>,
    /// Every run, by index.
    pub runs: Vec<ManifestRun>,
}

/// One run of the manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestRun {
    /// Index (Slurm array task id when one run per task).
    pub index: usize,
    /// Folder name inside the sweep folder.
    pub name: String,
    /// Hash of the resolved config.
    pub id: String,
    /// Varied key → label.
    pub labels: BTreeMap<String, String>,
    /// Dotted key → value set on the base.
    pub overrides: BTreeMap<String, serde_json::Value>,
    /// The test accuracy whose first reaching epoch collect reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_acc: Option<f64>,
    /// The resolved run config (TOML).
    pub config: String,
}

impl ManifestRun {
    fn from_plan(index: usize, r: &PlannedRun) -> Result<ManifestRun> {
        let mut overrides = BTreeMap::new();
        for (k, v) in &r.overrides {
            overrides.insert(k.clone(), serde_json::to_value(v)?);
        }
        Ok(ManifestRun {
            index,
            name: r.name.clone(),
            id: r.id.clone(),
            labels: r.labels.iter().cloned().collect(),
            overrides,
            target_acc: r.target_acc,
            config: r.config.clone(),
        })
    }

    /// The run's folder.
    pub fn dir(&self, sweep: &Path) -> PathBuf {
        sweep.join(&self.name)
    }

    /// Labels in the manifest's column order.
    pub fn label_values(&self, varied: &[String]) -> Vec<String> {
        varied
            .iter()
            .map(|k| self.labels.get(k).cloned().unwrap_or_default())
            .collect()
    }
}

impl Manifest {
    /// Read `DIR/manifest.json`.
    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            input_error(format!(
                "{}: cannot read: {e} (is {} a sweep folder?)",
                path.display(),
                dir.display()
            ))
        })?;
        let m: Manifest = serde_json::from_str(&text)
            .map_err(|e| input_error(format!("{}: not a sweep manifest: {e}", path.display())))?;
        if m.format != FORMAT {
            crate::bail_input!(
                "{}: manifest format {} is not supported (expected {FORMAT})",
                path.display(),
                m.format
            );
        }
        // Run names and ids become paths inside the sweep folder: an edited manifest must not
        // point elsewhere.
        for r in &m.runs {
            if r.name.is_empty() || crate::util::sanitize(&r.name) != r.name {
                crate::bail_input!(
                    "{}: run {} has the name {:?}, which is not a safe folder name \
                     (letters, digits, . _ , = + - @; no `..`, no leading `.` or `-`)",
                    path.display(),
                    r.index,
                    r.name
                );
            }
            if r.id.is_empty() || !r.id.chars().all(|c| c.is_ascii_hexdigit()) {
                crate::bail_input!(
                    "{}: run {} has the id {:?}; expected hex digits",
                    path.display(),
                    r.index,
                    r.id
                );
            }
        }
        Ok(m)
    }

    /// The run at `index`, or an input error.
    pub fn run(&self, index: usize) -> Result<&ManifestRun> {
        self.runs.get(index).ok_or_else(|| {
            input_error(format!(
                "run index {index}: the sweep {} has runs 0..{}",
                self.name,
                self.runs.len().saturating_sub(1)
            ))
        })
    }
}

/// An exclusive lock on `DIR/.locks/sweep.lock`, held while the sweep folder's own files
/// (manifest, `runs.csv`, `sweep.toml`, the collected CSVs) are written. Taking it also
/// removes the temporary files that a kill during such a write left behind.
pub fn lock_sweep(dir: &Path) -> Result<std::fs::File> {
    let locks = dir.join(LOCKS);
    std::fs::create_dir_all(&locks)
        .with_context(|| format!("cannot create {}", locks.display()))?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(locks.join("sweep.lock"))
        .with_context(|| format!("cannot open a lock file in {}", locks.display()))?;
    f.lock_exclusive()
        .with_context(|| format!("cannot lock {}", locks.display()))?;
    crate::util::remove_stale_temporaries(dir)?;
    Ok(f)
}

/// Merge a plan into the existing manifest (if any): existing runs keep their index, new ones
/// are appended. Pure; the errors name the spec.
pub fn merge(old: Option<&Manifest>, plan: &Plan) -> Result<Manifest> {
    let spec = plan.spec.path.display().to_string();
    let mut runs = Vec::new();
    if let Some(old) = old {
        if old.varied != plan.varied {
            crate::bail_input!(
                "{spec}: the sweep folder was planned with the varied keys [{}], the spec now \
                 varies [{}]; use another --out",
                old.varied.join(", "),
                plan.varied.join(", ")
            );
        }
        for r in &old.runs {
            match plan.runs.iter().find(|p| p.name == r.name) {
                None => crate::bail_input!(
                    "{spec}: the sweep folder has run `{}` (index {}), which the spec no longer \
                     contains; use another --out",
                    r.name,
                    r.index
                ),
                Some(p) if p.id != r.id && !crate::config::same_config(&r.config, &p.config) => {
                    crate::bail_input!(
                        "{spec}: run `{}` now has a different config (id {} → {}){}; its \
                         folder holds results of the old one; use another --out",
                        r.name,
                        r.id,
                        p.id,
                        crate::config::differences_clause(&r.config, &p.config, 5)
                    )
                }
                Some(p) => {
                    // The target may be edited; the run keeps its index and id (an id is
                    // fixed when a run is first planned, even if a newer lrlab writes the
                    // same config differently).
                    let mut m = ManifestRun::from_plan(r.index, p)?;
                    m.id.clone_from(&r.id);
                    runs.push(m);
                }
            }
        }
    }
    for p in &plan.runs {
        if !runs.iter().any(|r: &ManifestRun| r.name == p.name) {
            let index = runs.len();
            runs.push(ManifestRun::from_plan(index, p)?);
        }
    }
    Ok(Manifest {
        format: FORMAT,
        name: plan.spec.name.clone(),
        spec: spec.clone(),
        varied: plan.varied.clone(),
        runs,
    })
}

/// The manifest [`freeze`] would write for `plan` into `dir`, with the same checks against
/// an existing sweep folder, writing nothing (`--dry-run`).
pub fn preview(dir: &Path, plan: &Plan) -> Result<Manifest> {
    let old = if dir.join(MANIFEST).exists() {
        Some(Manifest::load(dir)?)
    } else {
        None
    };
    merge(old.as_ref(), plan)
}

/// Write (or extend) the sweep folder for a plan: `sweep.toml`, `manifest.json`, `runs.csv`
/// and every run's `config.toml` that does not exist yet. Safe against a second runner doing
/// the same at the same time.
pub fn freeze(dir: &Path, plan: &Plan) -> Result<Manifest> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let _lock = lock_sweep(dir)?;
    let old = if dir.join(MANIFEST).exists() {
        Some(Manifest::load(dir)?)
    } else {
        None
    };
    let m = merge(old.as_ref(), plan)?;
    if old.as_ref() != Some(&m) {
        let json = serde_json::to_string_pretty(&m)?;
        write_atomic(&dir.join(MANIFEST), format!("{json}\n").as_bytes())?;
        write_atomic(&dir.join("runs.csv"), runs_csv(&m)?.as_bytes())?;
    }
    let spec_copy = dir.join("sweep.toml");
    if std::fs::read_to_string(&spec_copy).ok().as_deref() != Some(plan.spec.text.as_str()) {
        write_atomic(&spec_copy, plan.spec.text.as_bytes())?;
    }
    for r in &m.runs {
        write_planned_config(dir, r)?;
    }
    Ok(m)
}

/// `runs.csv`: `index,name,id`, one column per varied key (labels), `overrides` (the values
/// set, as inline TOML).
pub fn runs_csv(m: &Manifest) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["index".to_string(), "name".into(), "id".into()];
    header.extend(m.varied.iter().cloned());
    header.push("overrides".into());
    w.write_record(&header)?;
    for r in &m.runs {
        let mut row = vec![r.index.to_string(), r.name.clone(), r.id.clone()];
        row.extend(r.label_values(&m.varied));
        let o: Vec<String> = r
            .overrides
            .iter()
            .map(|(k, v)| format!("{k}={}", inline(v)))
            .collect();
        row.push(o.join(" "));
        w.write_record(&row)?;
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}

/// A JSON value written compactly as TOML would (`{kind = "sgdr", t_0 = 1}`).
fn inline(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(o) => {
            let parts: Vec<String> = o
                .iter()
                .map(|(k, v)| format!("{k} = {}", inline(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        serde_json::Value::Array(a) => {
            format!("[{}]", a.iter().map(inline).collect::<Vec<_>>().join(", "))
        }
        other => other.to_string(),
    }
}

/// The config file of a run whose schedule has `"auto"` values: `lrlab train` resolves them
/// with a range test and writes the resolved `config.toml` itself.
pub const AUTO_CONFIG: &str = "config.auto.toml";

/// The file (in the run folder) that the child trains from.
pub fn config_file(run: &ManifestRun) -> &'static str {
    let auto = run
        .config
        .parse::<toml::Table>()
        .ok()
        .and_then(|t| t.get("schedule").and_then(|s| s.as_table()).cloned())
        .map(|s| !crate::lr_find::auto_keys(&s).is_empty())
        .unwrap_or(false);
    if auto {
        AUTO_CONFIG
    } else {
        crate::run::CONFIG
    }
}

/// Write the run's planned config into its folder unless a config is there already.
pub fn write_planned_config(sweep: &Path, run: &ManifestRun) -> Result<()> {
    let dir = run.dir(sweep);
    let path = dir.join(config_file(run));
    if !path.exists() {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        write_atomic(&path, run.config.as_bytes())?;
    }
    Ok(())
}
