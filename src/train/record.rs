//! The files of a run folder other than the checkpoint: `steps.csv`, `epochs.csv`,
//! `status.json` and `meta.json`.
//!
//! CSV rows are appended as training goes and made durable (flushed and synced) before each
//! checkpoint. On resume, every row past the checkpoint, and a torn last line left by a kill,
//! is cut, so the files end up byte-identical to an uninterrupted run's (time columns aside).

use crate::util::{fmt_f64, write_atomic};
use anyhow::{Context, Result};

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Header of `steps.csv`.
pub const STEPS_HEADER: &str = "step,epoch,lr,momentum,loss,time_s";
/// Header of `hf_lr.csv` (`train.hf_lr_every`): the window's first step, its epoch and LR,
/// the finite-difference estimate, its moving average, and gᵀg / gᵀHg.
pub const HF_LR_HEADER: &str = "step,epoch,lr,hf_lr,hf_lr_ema,curvature_lr";
/// Header of `hf_lr_layers.csv`: the same estimates per layer, one row per layer and window.
pub const HF_LR_LAYERS_HEADER: &str = "step,layer,hf_lr,curvature_lr";
/// Header of `epochs.csv`.
pub const EPOCHS_HEADER: &str =
    "epoch,step,lr,train_loss,train_acc,test_loss,test_acc,test_top5,time_s,images_per_sec";

/// An append-only CSV file whose rows are keyed by an increasing integer in column 1.
///
/// Rows are buffered and written in whole rows; a write that fails (a full disk) is cut back
/// off the file, so an error never leaves a half-written row behind.
pub struct CsvLog {
    path: PathBuf,
    /// None: rows are dropped (a rank of a multi-process run other than rank 0).
    file: Option<File>,
    /// Rows not yet written.
    buf: Vec<u8>,
    /// Length of the file: complete rows only.
    len: u64,
}

/// Rows are written once this many bytes are buffered.
const BUFFER: usize = 8 * 1024;

impl CsvLog {
    /// Open `path` for appending. A missing or empty file gets `header`. Rows whose first
    /// field is `>= keep_below`, and a last line without its newline, are removed first.
    pub fn open(path: &Path, header: &str, keep_below: u64) -> Result<CsvLog> {
        let mut text = String::new();
        if path.exists() {
            text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
        }
        let mut kept = String::with_capacity(text.len());
        kept.push_str(header);
        kept.push('\n');
        let mut lines = text.split_inclusive('\n');
        if let Some(first) = lines.next() {
            if first.trim_end() != header {
                anyhow::bail!(
                    "{}: unexpected header {:?}, expected {header:?}",
                    path.display(),
                    first.trim_end()
                );
            }
        }
        for line in lines {
            if !line.ends_with('\n') {
                break; // torn write from a kill: the row is regenerated after resume
            }
            let key = line.split(',').next().and_then(|k| k.parse::<u64>().ok());
            match key {
                Some(k) if k < keep_below => kept.push_str(line),
                _ => break,
            }
        }
        if kept != text {
            write_atomic(path, kept.as_bytes())?;
        }
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {} for appending", path.display()))?;
        let len = file
            .metadata()
            .with_context(|| format!("cannot read {}", path.display()))?
            .len();
        Ok(CsvLog {
            path: path.to_path_buf(),
            file: Some(file),
            buf: Vec::with_capacity(BUFFER),
            len,
        })
    }

    /// A log that drops its rows: the other ranks of a multi-process run, whose rows rank 0
    /// writes.
    pub fn discard() -> CsvLog {
        CsvLog {
            path: PathBuf::new(),
            file: None,
            buf: Vec::new(),
            len: 0,
        }
    }

    /// `open`, or [`CsvLog::discard`] when `write` is false.
    pub fn open_if(write: bool, path: &Path, header: &str, keep_below: u64) -> Result<CsvLog> {
        if write {
            CsvLog::open(path, header, keep_below)
        } else {
            Ok(CsvLog::discard())
        }
    }

    /// Append one row (fields already formatted).
    pub fn row(&mut self, fields: &[String]) -> Result<()> {
        if self.file.is_none() {
            return Ok(());
        }
        self.buf.extend_from_slice(fields.join(",").as_bytes());
        self.buf.push(b'\n');
        if self.buf.len() >= BUFFER {
            self.write_buffered()?;
        }
        Ok(())
    }

    /// Write the buffered rows; on failure cut the file back to its complete rows.
    fn write_buffered(&mut self) -> Result<()> {
        let Some(file) = &mut self.file else {
            return Ok(());
        };
        if self.buf.is_empty() {
            return Ok(());
        }
        match file.write_all(&self.buf) {
            Ok(()) => {
                self.len += self.buf.len() as u64;
                self.buf.clear();
                Ok(())
            }
            Err(e) => {
                // Best effort: a part of the rows may have reached the file.
                let _ = file.set_len(self.len);
                Err(e).with_context(|| format!("cannot write {}", self.path.display()))
            }
        }
    }

    /// Write buffered rows to the file and sync it to disk.
    pub fn sync(&mut self) -> Result<()> {
        self.write_buffered()?;
        match &self.file {
            Some(f) => f
                .sync_data()
                .with_context(|| format!("cannot write {}", self.path.display())),
            None => Ok(()),
        }
    }
}

/// The position of column `name` in `epochs.csv`.
pub fn epochs_column(name: &str) -> Option<usize> {
    EPOCHS_HEADER.split(',').position(|c| c == name)
}

/// Read `epochs.csv` as fields per row (missing file: no rows). A header other than
/// [`EPOCHS_HEADER`] is an error; a row with another field count (a torn last line) is left
/// out.
pub fn read_epochs(path: &Path) -> Result<Vec<Vec<String>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut lines = text.lines();
    match lines.next() {
        None => return Ok(Vec::new()),
        Some(h) if h == EPOCHS_HEADER => {}
        Some(h) => anyhow::bail!(
            "{}: unexpected header {h:?}, expected {EPOCHS_HEADER:?}",
            path.display()
        ),
    }
    let n = EPOCHS_HEADER.split(',').count();
    Ok(lines
        .map(|l| l.split(',').map(str::to_string).collect::<Vec<_>>())
        .filter(|f| f.len() == n)
        .collect())
}

/// Format an optional metric: empty when absent.
pub fn opt(x: Option<f64>) -> String {
    x.map(fmt_f64).unwrap_or_default()
}

/// Entries lrlab may have written in a run folder before its `meta.json`: the planned or
/// resolved config and the sweep runner's log and attempt records (a sweep writes them
/// first), the lock, the range test of `"auto"` values, a failure's `status.json`.
const BEFORE_META: [&str; 8] = [
    crate::run::CONFIG,
    crate::run::SNAPSHOTS,
    "config.auto.toml",
    "train.log",
    "attempts.jsonl",
    ".lock",
    "lr_find",
    crate::run::STATUS,
];

/// Refuse to write into `out` unless lrlab made it: a folder that does not exist or is empty,
/// one whose `meta.json` carries lrlab's marker (`lrlab_version`), or one that holds only
/// what lrlab writes before `meta.json` ([`BEFORE_META`], with a `config.toml` that is an lrlab
/// run config). Anything else is an input error naming what was found, before anything is
/// written.
pub fn check_run_folder(out: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(out) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            crate::bail_input!("--out {}: is a file, not a folder", out.display())
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", out.display())),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        // A kill during an atomic write leaves a temporary file; lrlab removes those.
        .filter(|n| !crate::util::is_temporary(n))
        .collect();
    names.sort();
    let meta = out.join(crate::run::META);
    if meta.exists() {
        let ours = std::fs::read_to_string(&meta)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|v| v.get("lrlab_version").is_some());
        if !ours {
            crate::bail_input!(
                "{}: not an lrlab run folder ({} has no lrlab_version); lrlab writes nothing \
                 into a folder it did not create: use another --out",
                out.display(),
                meta.display()
            );
        }
        return Ok(());
    }
    let foreign: Vec<&String> = names
        .iter()
        .filter(|n| !BEFORE_META.contains(&n.as_str()))
        .collect();
    if !foreign.is_empty() {
        crate::bail_input!(
            "{}: not an lrlab run folder (it holds {} and no lrlab meta.json); lrlab writes \
             nothing into a folder it did not create: use another --out",
            out.display(),
            foreign
                .iter()
                .take(5)
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let config = out.join(crate::run::CONFIG);
    if let Ok(text) = std::fs::read_to_string(&config) {
        if let Err(e) = crate::config::RunConfig::from_toml_str(&text) {
            crate::bail_input!(
                "{}: not an lrlab run config ({}); lrlab writes nothing into a folder it did \
                 not create: use another --out",
                config.display(),
                format!("{e:#}").lines().next().unwrap_or_default()
            );
        }
    }
    if out.join(crate::run::STATUS).exists() && crate::run::Status::read(out).is_none() {
        crate::bail_input!(
            "{}: not an lrlab status file; lrlab writes nothing into a folder it did not \
             create: use another --out",
            out.join(crate::run::STATUS).display()
        );
    }
    Ok(())
}

/// The split a run folder's evaluations were made on, as `meta.json` records it: `"val"`
/// with `data.val_split > 0`, else `"test"` (also when `meta.json` is missing). The
/// `epochs.csv` columns keep their `test_*` names either way, so every reader reads every
/// run; what is printed names the split.
pub fn eval_split(out: &Path) -> &'static str {
    let meta = std::fs::read_to_string(out.join(crate::run::META)).ok();
    let split = meta
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("eval_split")?.as_str().map(str::to_string));
    match split.as_deref() {
        Some("val") => "val",
        _ => "test",
    }
}

/// Whether the run of `epochs.csv` at `path` learned: `None` without an evaluation, else
/// `(false, why)` when its last evaluation is at chance accuracy (at most 1.5/`classes`) or
/// its last test loss is more than 5 times its first (training blew up and never recovered),
/// `(true, "")` otherwise. A run that never learned is finished, but its numbers are not
/// results; it is marked so that it is never listed as fine among good runs.
pub fn learned(path: &Path, classes: usize) -> Result<Option<(bool, String)>> {
    let rows = read_epochs(path)?;
    let num = |row: &Vec<String>, name: &str| {
        epochs_column(name).and_then(|i| row[i].parse::<f64>().ok().filter(|x| x.is_finite()))
    };
    let evaluated: Vec<(f64, Option<f64>)> = rows
        .iter()
        .filter_map(|r| num(r, "test_acc").map(|a| (a, num(r, "test_loss"))))
        .collect();
    let (Some(first), Some(last)) = (evaluated.first(), evaluated.last()) else {
        return Ok(None);
    };
    let chance = 1.0 / classes.max(1) as f64;
    if classes >= 2 && last.0 <= 1.5 * chance {
        return Ok(Some((
            false,
            format!(
                "did not learn: final test accuracy {:.2}% is chance level for {classes} classes",
                100.0 * last.0
            ),
        )));
    }
    if let (Some(l0), Some(l1)) = (first.1, last.1) {
        if evaluated.len() > 1 && l0 > 0.0 && l1 > 5.0 * l0 {
            return Ok(Some((
                false,
                format!(
                    "did not learn: final test loss {} is {:.0}x its first evaluation's ({})",
                    fmt_f64(l1),
                    l1 / l0,
                    fmt_f64(l0)
                ),
            )));
        }
    }
    Ok(Some((true, String::new())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epochs_file(rows: &[(f64, f64)]) -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join(crate::run::EPOCHS);
        let mut text = format!("{EPOCHS_HEADER}\n");
        for (e, (loss, acc)) in rows.iter().enumerate() {
            text.push_str(&format!(
                "{},{},0.1,1,0.5,{loss},{acc},,1,1\n",
                e + 1,
                10 * (e + 1)
            ));
        }
        std::fs::write(&path, text).unwrap();
        (t, path)
    }

    #[test]
    fn a_run_at_chance_or_with_its_test_loss_blown_up_did_not_learn() {
        let (_t, p) = epochs_file(&[(2.3, 0.35), (1.0, 0.62), (0.6, 0.81)]);
        assert_eq!(learned(&p, 10).unwrap(), Some((true, String::new())));
        // The run: 10% accuracy after a max_lr of 10.
        let (_t, p) = epochs_file(&[(2.4, 0.1), (3485.0, 0.1)]);
        let (ok, why) = learned(&p, 10).unwrap().unwrap();
        assert!(
            !ok && why.contains("10.00%") && why.contains("chance"),
            "{why}"
        );
        // Accurate enough, but the test loss blew up: 1.5/10 = 15% is still chance.
        let (_t, p) = epochs_file(&[(2.3, 0.3), (40.0, 0.2)]);
        let (ok, why) = learned(&p, 10).unwrap().unwrap();
        assert!(!ok && why.contains("17x"), "{why}");
        // 1000 classes: 0.3% is above 1.5 x chance (0.15%).
        let (_t, p) = epochs_file(&[(6.9, 0.001), (6.0, 0.003)]);
        assert!(learned(&p, 1000).unwrap().unwrap().0);
        let (_t, p) = epochs_file(&[]);
        assert_eq!(learned(&p, 10).unwrap(), None);
    }
}
