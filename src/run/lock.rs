//! Holding a run folder: one writing process at a time.

use super::{Meta, META, SNAPSHOTS};
use crate::util::remove_stale_temporaries;
use anyhow::{Context, Result};
use fs2::FileExt;
use std::path::Path;

/// The lock file of a run folder.
pub const LOCK: &str = ".lock";

/// A run folder held for writing; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct RunLock {
    _file: std::fs::File,
}

impl RunLock {
    /// Create `out` if needed and hold it: an input error when another lrlab process holds
    /// it. Then the temporary files a kill during an atomic write left behind are removed
    /// (with the lock held no other writer exists, so any such file is stale), and a folder
    /// without `meta.json` gets the marker ([`Meta::marker`]) first, so that whatever is
    /// written next, a later command recognises the folder as lrlab's.
    pub fn acquire(out: &Path) -> Result<RunLock> {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(out.join(LOCK))
            .with_context(|| format!("cannot create a lock file in {}", out.display()))?;
        if file.try_lock_exclusive().is_err() {
            crate::bail_input!("{} is in use by another lrlab process", out.display());
        }
        remove_stale_temporaries(out)?;
        remove_stale_temporaries(&out.join(SNAPSHOTS))?;
        if !out.join(META).exists() {
            Meta::marker().write(out)?;
        }
        Ok(RunLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_folder_is_refused_to_a_second_holder_until_released() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("run");
        let held = RunLock::acquire(&out).unwrap();
        assert!(Meta::read(&out).unwrap().unwrap().is_lrlab());
        let e = format!("{:#}", RunLock::acquire(&out).unwrap_err());
        assert!(e.contains("in use by another lrlab process"), "{e}");
        drop(held);
        RunLock::acquire(&out).unwrap();
    }
}
