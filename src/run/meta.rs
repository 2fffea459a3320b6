//! `meta.json`: what ran, where and how long, and the marker that makes a folder lrlab's.

use super::META;
use crate::util::write_atomic;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The value of [`Meta::format`] in every run folder lrlab writes.
pub const FORMAT: &str = "lrlab-run";
/// The run folder's layout version ([`Meta::format_version`]). Folders written before the
/// marker existed read as version 0; their files have the same layout.
pub const FORMAT_VERSION: u32 = 1;

/// `meta.json` of a run folder (a training run, or an `lrlab hf-lr` folder). Every key is
/// optional so that folders written by any earlier lrlab, and run folders from elsewhere that
/// the report reads, still read; keys lrlab does not know are kept in [`Meta::other`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Meta {
    /// [`FORMAT`] (absent in folders written before the marker).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// [`FORMAT_VERSION`] when written; 0 when absent.
    pub format_version: u32,
    /// The lrlab that wrote the folder (what made a folder lrlab's before [`FORMAT`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lrlab_version: Option<String>,
    /// Its git commit, when built from a checkout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
    /// The libtorch it ran on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub libtorch_version: Option<String>,
    /// `cpu` or `cuda:N`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Intra-op threads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<u64>,
    /// `train.seed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// The host of the last attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// When the first attempt started (seconds since the Unix epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started: Option<f64>,
    /// When an attempt reached the end of the run (done or diverged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished: Option<f64>,
    /// Attempts so far, this one included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u64>,
    /// Attempts that trained the run's last step (1 for a run never trained twice).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completions: Option<u64>,
    /// Optimizer steps per epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps_per_epoch: Option<u64>,
    /// Optimizer steps of the whole run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_steps: Option<u64>,
    /// Epochs of the whole run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs: Option<u64>,
    /// Training examples.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_examples: Option<u64>,
    /// Examples of the evaluated split.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_examples: Option<u64>,
    /// The evaluated split: `"val"` with `data.val_split > 0`, else `"test"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_split: Option<String>,
    /// The data's path, for datasets read from disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_path: Option<String>,
    /// Trainable and buffer elements of the model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<u64>,
    /// The schedule's kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Where each step's momentum came from: `"schedule"` or `"optim.momentum"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub momentum_from: Option<String>,
    /// The step this attempt resumed from (0: from the start).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed_from_step: Option<u64>,
    /// `"fp32"` or `"bf16"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precision: Option<String>,
    /// The values a range test chose for the run's `"auto"` schedule keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr_find: Option<serde_json::Value>,
    /// Processes the run was trained over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub world_size: Option<u64>,
    /// Their collective backend (`"none"` for one process).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// The host of every rank, in rank order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Resumes over another number of processes (`--allow-resize`), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resizes: Vec<Resize>,
    /// An `lrlab hf-lr` folder's run.
    #[serde(flatten)]
    pub hf_lr: Option<HfLrMeta>,
    /// Keys lrlab does not write (a run folder from elsewhere may name itself: `name`, `run`,
    /// `run_id`, `id`).
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// A resume over another number of processes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resize {
    /// The step the run resumed from.
    pub step: u64,
    /// Processes before.
    pub from: u64,
    /// Processes after.
    pub to: u64,
}

/// What `lrlab hf-lr` records of its short training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HfLrMeta {
    /// Optimizer steps trained.
    pub steps_run: u64,
    /// Steps of the configured run.
    pub run_steps: u64,
    /// Steps between estimates.
    pub every: u64,
    /// Steps between the blobs' parameter snapshots (`train.hf_lr_stride`).
    pub stride: u64,
    /// Estimates written.
    pub windows: u64,
    /// Why it stopped before its last step, if it did.
    pub stopped: Option<String>,
}

impl Meta {
    /// A `meta.json` that says only who wrote the folder: the marker, lrlab's version and
    /// commit, libtorch's version.
    pub fn marker() -> Meta {
        Meta {
            format: Some(FORMAT.into()),
            format_version: FORMAT_VERSION,
            lrlab_version: Some(env!("CARGO_PKG_VERSION").into()),
            git_commit: Some(option_env!("LRLAB_GIT_COMMIT").unwrap_or("").into()),
            ..Meta::default()
        }
    }

    /// Whether lrlab wrote it: the marker, or (before the marker existed) `lrlab_version`.
    pub fn is_lrlab(&self) -> bool {
        self.format.as_deref() == Some(FORMAT) || self.lrlab_version.is_some()
    }

    /// `meta.json` of `dir`: `None` when there is none; an input error naming the file when
    /// it is not JSON or a key has the wrong type.
    pub fn read(dir: &Path) -> Result<Option<Meta>> {
        let path = dir.join(META);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => crate::bail_input!("{}: cannot read: {e}", path.display()),
        };
        match serde_json::from_str(&text) {
            Ok(m) => Ok(Some(m)),
            Err(e) => crate::bail_input!("{}: not a run's meta.json: {e}", path.display()),
        }
    }

    /// `meta.json` of `dir` when present and readable: for the readers that fall back to a
    /// default.
    pub fn read_ok(dir: &Path) -> Option<Meta> {
        Meta::read(dir).ok().flatten()
    }

    /// Write `meta.json` into `dir` atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        write_atomic(&dir.join(META), format!("{text}\n").as_bytes())
    }

    /// The split the run's evaluations were made on: `"val"` when recorded so, else
    /// `"test"` (also for folders without it). `epochs.csv`'s columns keep their `test_*`
    /// names either way; what is printed names the split.
    pub fn eval_split(meta: Option<&Meta>) -> &'static str {
        match meta.and_then(|m| m.eval_split.as_deref()) {
            Some("val") => "val",
            _ => "test",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_and_reads_earlier_and_foreign_files() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(Meta::read(t.path()).unwrap(), None);
        let mut m = Meta::marker();
        m.epochs = Some(3);
        m.hosts = vec!["a".into(), "b".into()];
        m.hf_lr = Some(HfLrMeta {
            steps_run: 5,
            run_steps: 10,
            every: 2,
            stride: 1,
            windows: 2,
            stopped: None,
        });
        m.write(t.path()).unwrap();
        let back = Meta::read(t.path()).unwrap().unwrap();
        assert_eq!(back, m);
        assert!(back.is_lrlab() && back.other.is_empty());
        // Before the marker: lrlab_version alone, nulls, keys no longer written.
        std::fs::write(
            t.path().join(META),
            r#"{"lrlab_version": "0.1.0", "finished": null, "epochs": 2, "old_key": 1}"#,
        )
        .unwrap();
        let m = Meta::read(t.path()).unwrap().unwrap();
        assert!(m.is_lrlab() && m.format_version == 0 && m.hf_lr.is_none());
        assert_eq!((m.epochs, m.finished), (Some(2), None));
        assert_eq!(m.other["old_key"], 1);
        // From elsewhere: not lrlab's, its name kept.
        std::fs::write(t.path().join(META), r#"{"run_id": "x7"}"#).unwrap();
        let m = Meta::read(t.path()).unwrap().unwrap();
        assert!(!m.is_lrlab());
        assert_eq!(m.other["run_id"], "x7");
        // A wrong type is an error naming the file.
        std::fs::write(t.path().join(META), r#"{"epochs": "three"}"#).unwrap();
        let e = format!("{:#}", Meta::read(t.path()).unwrap_err());
        assert!(e.contains(META) && e.contains("invalid type"), "{e}");
    }
}
