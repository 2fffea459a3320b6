//! The files of a run folder other than the checkpoint: `steps.csv`, `epochs.csv`,
//! `status.json` and `meta.json`.
//!
//! CSV rows are appended as training goes and made durable (flushed and synced) before each
//! checkpoint. On resume, every row past the checkpoint, and a torn last line left by a kill,
//! is cut, so the files end up byte-identical to an uninterrupted run's (time columns aside).

use crate::util::{fmt_f64, write_atomic};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
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

/// The state of a run, as written to `status.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// `running`, `done`, `diverged`, `failed` or `interrupted`.
    pub status: String,
    /// Why the run is in this state (empty while running or when done).
    #[serde(default)]
    pub reason: String,
    /// Completed epochs.
    pub epoch: u64,
    /// Completed optimizer steps.
    pub step: u64,
    /// When this was written (seconds since the Unix epoch).
    pub updated: f64,
}

impl Status {
    /// A status written now.
    pub fn new(status: &str, reason: &str, epoch: u64, step: u64) -> Status {
        Status {
            status: status.into(),
            reason: reason.into(),
            epoch,
            step,
            updated: now(),
        }
    }

    /// Read `status.json` of a run folder, if present and readable.
    pub fn read(dir: &Path) -> Option<Status> {
        let text = std::fs::read_to_string(dir.join("status.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Write `status.json` atomically when `write` (rank 0 of a multi-process run, or the one
    /// process).
    pub fn write_if(&self, write: bool, dir: &Path) -> Result<()> {
        if write {
            self.write(dir)
        } else {
            Ok(())
        }
    }

    /// Write `status.json` atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        write_atomic(&dir.join("status.json"), format!("{text}\n").as_bytes())
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// This machine's host name.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
