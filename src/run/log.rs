//! Append-only CSV logs of a run folder (`steps.csv`, `epochs.csv`, `hf_lr.csv`, ...).
//!
//! Rows are appended as training goes and made durable (flushed and synced) before each
//! checkpoint. On resume, every row past the checkpoint, and a torn last line left by a kill,
//! is cut, so the files end up byte-identical to an uninterrupted run's (time columns aside).

use crate::util::write_atomic;
use anyhow::{Context, Result};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

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
