//! Run configuration: one TOML file with tables `[data]`, `[model]`, `[optim]`, `[train]` and
//! `[schedule]`, plus `--set table.key=value` overrides in TOML value syntax.
//!
//! Every table but `[schedule]` deserializes into a struct that rejects unknown keys and fills
//! every default, so the `config.toml` written into a run folder is fully resolved and
//! reproduces the run on its own. The `[schedule]` table is validated by
//! [`crate::schedule::Schedule::from_table`], which needs the run length.

pub mod lr_find;
pub mod names;
pub mod optim;

pub use lr_find::{AutoRule, FindConfig, Metric};
pub use names::{DeviceSpec, FindConvention, Precision, RampMode, Snapshots};
pub use optim::{MomentumConvention, OptimConfig, OptimKind, ParamGroup, WdScope};

use crate::data::DataConfig;
use crate::error::input_error;
use crate::models::ModelConfig;
use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The `[train]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Number of epochs. Default 10.
    pub epochs: u64,
    /// Total optimizer steps instead of epochs (the super-convergence paper counts
    /// iterations); 0 = `epochs × steps_per_epoch`. Default 0.
    pub steps: u64,
    /// Training batch size. Default 128.
    pub batch_size: usize,
    /// Evaluation batch size; 0 = twice the training batch. Default 0.
    pub eval_batch_size: usize,
    /// Seed of everything random: initial weights, data order, augmentation, dropout.
    pub seed: u64,
    /// `auto` (CUDA when available, else CPU), `cpu`, `cuda` or `cuda:N`.
    pub device: DeviceSpec,
    /// Intra-op CPU threads; 0 = all available cores. Default 0.
    pub threads: usize,
    /// Evaluate every this many epochs (the last epoch is always evaluated). Default 1.
    pub eval_every: u64,
    /// Write a `steps.csv` row every this many steps. Default 1.
    pub log_every: u64,
    /// Label smoothing of the cross-entropy loss. Default 0.
    pub label_smoothing: f64,
    /// Clip the global gradient L2 norm to this value; 0 = no clipping. Default 0.
    pub grad_clip: f64,
    /// A training loss above this (or non-finite) ends the run as `diverged`. Default 100.
    pub diverge_loss: f64,
    /// `auto` (bf16 autocast on CUDA, fp32 on CPU), `fp32` or `bf16`.
    pub precision: Precision,
    /// Keep a copy of the weights at the end of every schedule cycle (`restarts`, for SGDR
    /// snapshot ensembles) or not (`none`). Default `none`.
    pub snapshots: Snapshots,
    /// Log the super-convergence paper's Hessian-free estimate of the optimal learning rate
    /// every this many steps into `hf_lr.csv` ([`crate::train::hf_lr`]); 0 = off. It never
    /// changes the training. Default 0 (and then left out of the written config, so that run
    /// ids stay as they were).
    #[serde(skip_serializing_if = "is_zero")]
    pub hf_lr_every: u64,
    /// Spacing of the estimate's three iterates θ_s, θ_{s+k}, θ_{s+2k}: 1 = consecutive (the
    /// authors' `L2TermComputation3.py`), 10 = their `L2TermComputation4.py`. Default 1 (and
    /// then left out of the written config).
    #[serde(skip_serializing_if = "is_one")]
    pub hf_lr_stride: u64,
    /// What the estimate's sums run over: `"trainable"` (the parameters) or `"caffe"` (also
    /// every blob pycaffe's `net.params` holds: each batch-norm layer's mean and variance
    /// accumulators and scale factor, reconstructed from torch's running statistics), logged
    /// beside the trainable one as `hf_lr_caffe`. Default `"trainable"` (and then left out of
    /// the written config).
    #[serde(skip_serializing_if = "HfBlobs::is_default")]
    pub hf_lr_blobs: HfBlobs,
    /// Seconds a rank of a multi-process run waits for the others (rendezvous, each
    /// collective) before it fails naming what did not happen. Default 300 (and then left out
    /// of the written config).
    #[serde(skip_serializing_if = "is_default_dist_timeout")]
    pub dist_timeout: f64,
    /// Checkpoints inside an epoch, so that a SIGKILL, an OOM or a hard preemption loses at
    /// most this much: every this many steps (a whole number; 0 = at epoch ends only) or this
    /// much wall time (`"15m"`, `"90s"`, `"2h"`). They never change the training. Default
    /// `"15m"` (and then left out of the written config).
    #[serde(skip_serializing_if = "Every::is_default")]
    pub checkpoint_every: Every,
}

/// `train.checkpoint_every`: a number of steps or a wall-clock duration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Every {
    /// Every this many steps (0 = off).
    Steps(u64),
    /// Every this much wall time: a number and a unit, `s`, `m` or `h` (`"15m"`).
    Duration(String),
}

impl Default for Every {
    fn default() -> Self {
        Every::Duration("15m".into())
    }
}

impl Every {
    fn is_default(&self) -> bool {
        *self == Every::default()
    }

    /// The duration in seconds (`None` for a number of steps, or text that is not a
    /// duration).
    pub fn seconds(&self) -> Option<f64> {
        let Every::Duration(d) = self else {
            return None;
        };
        let d = d.trim();
        let unit = match d.chars().last()? {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            _ => return None,
        };
        let x: f64 = d[..d.len() - 1].trim().parse().ok()?;
        (x.is_finite() && x > 0.0).then_some(x * unit)
    }
}

fn is_default_dist_timeout(x: &f64) -> bool {
    *x == DEFAULT_DIST_TIMEOUT
}

/// Default of `train.dist_timeout`, seconds.
pub const DEFAULT_DIST_TIMEOUT: f64 = 300.0;

fn is_zero(x: &u64) -> bool {
    *x == 0
}

fn is_one(x: &u64) -> bool {
    *x == 1
}

/// `train.hf_lr_blobs`: what the Hessian-free estimate's sums run over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HfBlobs {
    /// The trainable parameters.
    #[default]
    Trainable,
    /// The trainable parameters and, logged beside, every Caffe blob (batch norm's three
    /// accumulators too), as the authors' script summed them.
    Caffe,
}

impl HfBlobs {
    fn is_default(&self) -> bool {
        *self == HfBlobs::Trainable
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 10,
            steps: 0,
            batch_size: 128,
            eval_batch_size: 0,
            seed: 0,
            device: DeviceSpec::Auto,
            threads: 0,
            eval_every: 1,
            log_every: 1,
            label_smoothing: 0.0,
            grad_clip: 0.0,
            diverge_loss: 100.0,
            precision: Precision::Auto,
            snapshots: Snapshots::None,
            hf_lr_every: 0,
            hf_lr_stride: 1,
            hf_lr_blobs: HfBlobs::Trainable,
            dist_timeout: DEFAULT_DIST_TIMEOUT,
            checkpoint_every: Every::default(),
        }
    }
}

impl TrainConfig {
    /// Check value ranges; errors name the key.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 && self.steps == 0 {
            crate::bail_input!("train.epochs = 0: must be >= 1 (or set train.steps)");
        }
        if self.batch_size == 0 {
            crate::bail_input!("train.batch_size = 0: must be >= 1");
        }
        if self.eval_every == 0 {
            crate::bail_input!("train.eval_every = 0: must be >= 1");
        }
        if self.log_every == 0 {
            crate::bail_input!("train.log_every = 0: must be >= 1");
        }
        if let Every::Duration(d) = &self.checkpoint_every {
            if self.checkpoint_every.seconds().is_none() {
                crate::bail_input!(
                    "train.checkpoint_every = {d:?}: expected a number of steps (a whole number \
                     >= 0) or a duration like \"15m\", \"90s\" or \"2h\""
                );
            }
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            crate::bail_input!(
                "train.label_smoothing = {}: must be in [0, 1)",
                self.label_smoothing
            );
        }
        if self.grad_clip.is_nan() || self.grad_clip < 0.0 {
            crate::bail_input!("train.grad_clip = {}: must be >= 0", self.grad_clip);
        }
        if self.diverge_loss.is_nan() || self.diverge_loss <= 0.0 {
            crate::bail_input!("train.diverge_loss = {}: must be > 0", self.diverge_loss);
        }
        // Below a second a busy machine fails healthy collectives; above a day nothing is
        // waiting any more (and the C++ side counts milliseconds in a 64-bit integer).
        if self.hf_lr_stride == 0 {
            crate::bail_input!(
                "train.hf_lr_stride = 0: must be >= 1 (the spacing of the three iterates)"
            );
        }
        if !(self.dist_timeout.is_finite() && (1.0..=86_400.0).contains(&self.dist_timeout)) {
            crate::bail_input!(
                "train.dist_timeout = {}: must be a number of seconds from 1 to 86400 (a day)",
                self.dist_timeout
            );
        }
        Ok(())
    }
}

/// A whole run: every table resolved.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunConfig {
    /// `[data]`: dataset, path, subset, augmentation, normalisation.
    pub data: DataConfig,
    /// `[model]`: architecture and its options.
    pub model: ModelConfig,
    /// `[optim]`: optimizer and its hyper-parameters.
    pub optim: OptimConfig,
    /// `[train]`: epochs, batch, seed, device, logging.
    pub train: TrainConfig,
    /// `[lr_find]`: the range test run first when a schedule value is `"auto"`.
    pub lr_find: FindConfig,
    /// `[schedule]`: the learning-rate/momentum schedule, kept as written (validated when the
    /// run length is known).
    pub schedule: toml::Table,
}

const TABLES: [&str; 6] = ["data", "model", "optim", "train", "lr_find", "schedule"];

impl RunConfig {
    /// Read a run config file and apply `--set` overrides (`table.key=value`).
    pub fn load(path: &Path, overrides: &[String]) -> Result<RunConfig> {
        let bytes = std::fs::read(path)
            .map_err(|e| input_error(format!("{}: cannot read: {e}", path.display())))?;
        Self::parse(&path.display().to_string(), &bytes, overrides)
    }

    /// Parse a run config file's bytes (UTF-8 TOML), apply `--set` overrides and validate
    /// every table but `[schedule]`; `name` names the file in messages.
    pub fn parse(name: &str, bytes: &[u8], overrides: &[String]) -> Result<RunConfig> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            input_error(format!(
                "{name}: not valid UTF-8 text (bad byte at offset {})",
                e.valid_up_to()
            ))
        })?;
        let mut table: toml::Table = text
            .parse()
            .map_err(|e| input_error(format!("{name}: invalid TOML: {e}")))?;
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        Self::from_table(table).map_err(|e| blame(name, overrides, e))
    }

    /// Build from a parsed TOML document.
    pub fn from_table(mut table: toml::Table) -> Result<RunConfig> {
        if let Some(k) = table.keys().find(|k| !TABLES.contains(&k.as_str())) {
            let hint = crate::util::did_you_mean(k, TABLES);
            crate::bail_input!(
                "unknown table or key `{k}`{hint} (expected the tables [data], [model], [optim], \
                 [train], [lr_find], [schedule])"
            );
        }
        let schedule = match table.remove("schedule") {
            Some(toml::Value::Table(t)) => t,
            Some(v) => crate::bail_input!("`schedule` must be a table, found {}", v.type_str()),
            None => {
                crate::bail_input!("missing table [schedule]: a run needs a learning-rate schedule")
            }
        };
        let cfg = RunConfig {
            data: section(&mut table, "data")?,
            model: section(&mut table, "model")?,
            optim: section(&mut table, "optim")?,
            train: section(&mut table, "train")?,
            lr_find: section(&mut table, "lr_find")?,
            schedule,
        };
        cfg.data.validate()?;
        cfg.model.validate()?;
        cfg.optim.validate()?;
        cfg.train.validate()?;
        let (b, g) = (cfg.train.batch_size, cfg.model.ghost_batch);
        if g > 0 && b % g != 0 {
            crate::bail_input!(
                "model.ghost_batch = {g}: train.batch_size = {b} is not a whole number of ghost \
                 batches; use a ghost batch that divides the batch size"
            );
        }
        Ok(cfg)
    }

    /// Parse a resolved config text (a run folder's `config.toml`, a manifest's entry).
    pub fn from_toml_str(text: &str) -> Result<RunConfig> {
        let table: toml::Table = text.parse().context("invalid TOML")?;
        Self::from_table(table)
    }

    /// The resolved config as TOML text (what `config.toml` of a run holds): the dataset's
    /// folder and augmentation written out, and the `[data]` keys that do not apply to the
    /// dataset left out ([`crate::data::DataConfig::unused_keys`]; parsing fills them back
    /// with their defaults, so the text parses to the same run).
    pub fn to_toml(&self) -> Result<String> {
        let mut c = self.clone();
        c.data = self.data.resolved();
        let text = toml::to_string(&c).context("cannot serialize the run config")?;
        let unused = c.data.unused_keys();
        let mut out = String::with_capacity(text.len());
        let mut in_data = false;
        for line in text.lines() {
            if line.starts_with('[') {
                in_data = line == "[data]";
            } else if in_data {
                let key = line.split('=').next().unwrap_or("").trim();
                if unused.contains(&key) {
                    continue;
                }
            }
            out.push_str(line);
            out.push('\n');
        }
        Ok(out)
    }
}

fn section<T: DeserializeOwned + Default>(table: &mut toml::Table, name: &str) -> Result<T> {
    match table.remove(name) {
        None => Ok(T::default()),
        Some(toml::Value::Table(t)) => T::deserialize(toml::Value::Table(t.clone())).map_err(|e| {
            // One line: the deserializer puts "in `key`" on a line of its own.
            let msg = e.to_string().trim().replace('\n', " ");
            if let Some((key, valid)) = crate::util::spelling::serde_unknown_field(&msg) {
                return unknown_key(name, &key, t.get(&key), &valid);
            }
            let msg = crate::util::spelling::plain_types(&msg);
            // "... in `key`": name the key and its value first, as the checks after
            // parsing do (`train.device = "gpu": expected ...`).
            let keyed = msg.strip_suffix('`').and_then(|m| m.rsplit_once(" in `"));
            match keyed.and_then(|(why, key)| Some((why, key, t.get(key)?))) {
                Some((why, key, value)) => input_error(format!("{name}.{key} = {value}: {why}")),
                None => input_error(format!("[{name}]: {msg}")),
            }
        }),
        Some(v) => crate::bail_input!("`{name}` must be a table, found {}", v.type_str()),
    }
}

/// `TABLE.KEY = VALUE: unknown key; did you mean X? (known keys: ...)`, worded as for
/// schedules.
fn unknown_key(
    table: &str,
    key: &str,
    value: Option<&toml::Value>,
    valid: &[String],
) -> anyhow::Error {
    let rule = crate::util::spelling::unknown_key_rule(key, "", valid.iter().map(String::as_str));
    let value = value.map(|v| format!(" = {v}")).unwrap_or_default();
    input_error(format!("{table}.{key}{value}: {rule}"))
}

/// Name the source of an input error about a run config: the `--set` that wrote the key the
/// message names (the last such `--set`, as the last one wins), else the file `name`. An
/// unknown schedule key after `--set schedule.kind=...` comes with the way to replace the
/// whole table. Other errors pass unchanged.
pub fn blame(name: &str, overrides: &[String], e: anyhow::Error) -> anyhow::Error {
    if !crate::error::is_input_error(&e) {
        return e;
    }
    let msg = format!("{e:#}");
    let kind_set = overrides.iter().find(|o| {
        let key = o.split('=').next().unwrap_or("").trim();
        ["schedule.kind", "schedule.type", "schedule.family"].contains(&key)
    });
    let hint = match kind_set {
        Some(o) if msg.contains("unknown key for kind") => format!(
            "; `--set {o}` changes only the kind and keeps the file's other schedule keys: \
             give the whole table instead, e.g. --set 'schedule={{kind = \"cosine\", lr_max = \
             0.05}}'"
        ),
        _ => String::new(),
    };
    let names = |key: &str| {
        let serde_form = match key.split_once('.') {
            // serde's own wording: "[train]: invalid value ... for key `epochs`".
            Some((t, k)) => msg.contains(&format!("[{t}]")) && msg.contains(&format!("`{k}`")),
            // A whole table given by one --set: any of its keys.
            None => msg.contains(&format!("{key}.")) || msg.contains(&format!("[{key}]")),
        };
        serde_form || msg.contains(&format!("{key} =")) || msg.contains(&format!("{key}:"))
    };
    let source = overrides.iter().rev().find(|o| {
        let key = o.split('=').next().unwrap_or("").trim();
        !key.is_empty() && names(key)
    });
    match source {
        Some(o) => input_error(format!("--set {o:?}: {msg}{hint}")),
        None if msg.starts_with(name) => input_error(format!("{msg}{hint}")),
        None => input_error(format!("{name}: {msg}{hint}")),
    }
}

/// Apply one `table.key=value` override; the value is TOML (`0.1`, `true`, `"x"`,
/// `[1, 2]`), and a bare word that is not TOML is taken as a string (`data.dataset=cifar10`).
pub fn apply_override(table: &mut toml::Table, spec: &str) -> Result<()> {
    let (key, raw) = spec
        .split_once('=')
        .ok_or_else(|| input_error(format!("--set {spec:?}: expected table.key=value")))?;
    let key = key.trim();
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        crate::bail_input!("--set {spec:?}: the key must be dotted, like optim.momentum");
    }
    if parts.len() == 1 {
        // A whole table: `--set 'schedule={kind = "cosine", lr_max = 0.05}'` replaces it.
        if !TABLES.contains(&key) {
            crate::bail_input!(
                "--set {spec:?}: expected table.key=value (like optim.momentum=0.9) or a whole \
                 table (like schedule={{kind = \"cosine\", lr_max = 0.05}})"
            );
        }
        match crate::util::parse_toml_value(raw.trim()) {
            toml::Value::Table(t) => {
                table.insert(key.to_string(), toml::Value::Table(t));
                return Ok(());
            }
            v => crate::bail_input!(
                "--set {spec:?}: `{key}` is a table; give an inline table, like \
                 {key}={{kind = \"cosine\", lr_max = 0.05}}, found {}",
                v.type_str()
            ),
        }
    }
    if !TABLES.contains(&parts[0]) {
        crate::bail_input!(
            "--set {spec:?}: unknown table `{}`{}; expected data, model, optim, train, lr_find or \
             schedule",
            parts[0],
            crate::util::did_you_mean(parts[0], TABLES)
        );
    }
    let value = crate::util::parse_toml_value(raw.trim());
    crate::util::set_dotted(table, &parts, value)
        .map_err(|p| input_error(format!("--set {spec:?}: `{p}` is not a table")))
}

/// True when the config text `old` (a run's `config.toml`, a manifest entry, perhaps written
/// by an older lrlab) is the run `new` (the text [`RunConfig::to_toml`] writes now): equal, or
/// equal once parsed and written again.
pub fn same_config(old: &str, new: &str) -> bool {
    old == new
        || RunConfig::from_toml_str(old)
            .and_then(|c| c.to_toml())
            .is_ok_and(|t| t == new)
}

/// The keys in which two config texts differ, as `table.key: OLD → NEW` (`(none)` for a key
/// one side lacks), in key order: what a "different config" error shows so that the user
/// sees which edit or `--set` caused it. Texts that do not parse are compared whole.
pub fn differences(old: &str, new: &str) -> Vec<String> {
    let flat = |t: &toml::Table| -> std::collections::BTreeMap<String, String> {
        crate::util::flatten_toml(t)
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect()
    };
    let (Ok(a), Ok(b)) = (old.parse::<toml::Table>(), new.parse::<toml::Table>()) else {
        return vec!["(the stored config does not parse)".to_string()];
    };
    let (fa, fb) = (flat(&a), flat(&b));
    let keys: std::collections::BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
    let none = "(none)".to_string();
    keys.into_iter()
        .filter(|k| fa.get(*k) != fb.get(*k))
        .map(|k| {
            format!(
                "{k}: {} → {}",
                fa.get(k).unwrap_or(&none),
                fb.get(k).unwrap_or(&none)
            )
        })
        .collect()
}

/// [`differences`] as one clause for an error message: `(schedule.lr_max: 0.03 → 0.04; ...)`,
/// at most `max` keys named.
pub fn differences_clause(old: &str, new: &str, max: usize) -> String {
    let d = differences(old, new);
    if d.is_empty() {
        return String::new();
    }
    let more = d.len().saturating_sub(max);
    let mut s = d.into_iter().take(max).collect::<Vec<_>>().join("; ");
    if more > 0 {
        s.push_str(&format!("; and {more} more"));
    }
    format!(" ({s})")
}

#[cfg(test)]
mod tests;
