//! Small helpers shared by several modules: atomic writes, float formatting, safe names
//! ([`names`]), tensor layouts ([`layout`]).

pub mod layout;
pub mod names;

pub use layout::channels_last;
pub use names::{hex_sha256, sanitize, MAX_NAME};

use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

/// Write `bytes` to `path` atomically: a temporary file in the same folder, fsync, rename.
/// A reader (or a crash) sees either the old file or the complete new one, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".lrlab-tmp-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|_| set_default_mode(tmp.as_file()))
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Format an f64 with the shortest representation that parses back to the same value
/// (Rust's `Display` for f64 has this property), so CSVs keep full precision.
pub fn fmt_f64(x: f64) -> String {
    format!("{x}")
}

/// Give a file created by `tempfile` (mode 0600) the mode an ordinary file would get:
/// 0666 less the process umask.
pub fn set_default_mode(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: umask only swaps the process mask; it is restored at once.
    let mask = unsafe {
        let m = libc::umask(0o022);
        libc::umask(m);
        m
    };
    file.set_permissions(std::fs::Permissions::from_mode(0o666 & !(mask as u32)))
}

/// Delete the temporary files that a kill during an atomic write leaves behind
/// (`.lrlab-tmp-*` of [`write_atomic`], `.checkpoint-*.tmp`, `.snapshot-*.tmp`) in `dir`, if it
/// exists. Call it only while holding the lock that every writer of `dir` holds: then no
/// such file belongs to a live writer.
pub fn remove_stale_temporaries(dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let stale = name.starts_with(".lrlab-tmp-")
            || ((name.starts_with(".checkpoint-") || name.starts_with(".snapshot-"))
                && name.ends_with(".tmp"));
        if stale {
            std::fs::remove_file(e.path())
                .with_context(|| format!("cannot remove the stale {}", e.path().display()))?;
        }
    }
    Ok(())
}
