//! Small helpers shared by several modules: atomic writes, float formatting, safe names
//! ([`names`]), tensor layouts ([`layout`]), suggestions for misspelt keys ([`spelling`]).

pub mod layout;
pub mod names;
pub mod spelling;

pub use layout::channels_last;
pub use names::{hex_sha256, sanitize, MAX_NAME};
pub use spelling::did_you_mean;

use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

/// Write `bytes` to `path` atomically: a temporary file in the same folder, fsync, rename.
/// A reader (or a crash) sees either the old file or the complete new one, never a part.
///
/// A symlink is written through: the file it names is replaced (the rename happens in the
/// target's folder) and the link stays. A path that exists and is not a regular file (a
/// device such as `/dev/null`, a FIFO) is written to directly, as a shell redirection would:
/// renaming over it would replace the device with a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let path = &resolve_links(path)?;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.is_dir() {
            anyhow::bail!("cannot write {}: it is a directory", path.display());
        }
        if !meta.is_file() {
            return std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(path)
                .and_then(|mut f| f.write_all(bytes).and_then(|_| f.flush()))
                .with_context(|| format!("cannot write {}", path.display()));
        }
    }
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

/// The path a chain of symlinks at `path` ends at (the path itself when it is no link). The
/// end may not exist yet (a dangling link names the file to create). Relative targets are
/// taken from the link's folder, as the kernel does.
pub fn resolve_links(path: &Path) -> Result<std::path::PathBuf> {
    let mut p = path.to_path_buf();
    // The kernel's own limit on links followed in one lookup.
    for _ in 0..40 {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&p)
                    .with_context(|| format!("cannot read the link {}", p.display()))?;
                p = match p.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            _ => return Ok(p),
        }
    }
    anyhow::bail!(
        "cannot write {}: too many levels of symbolic links",
        path.display()
    )
}

/// The leaves of a TOML table with their dotted keys (`optim.momentum`), nested tables
/// walked depth first, in key order.
pub fn flatten_toml(t: &toml::Table) -> Vec<(String, &toml::Value)> {
    fn walk<'a>(prefix: &str, t: &'a toml::Table, out: &mut Vec<(String, &'a toml::Value)>) {
        for (k, v) in t {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(inner) => walk(&key, inner, out),
                _ => out.push((key, v)),
            }
        }
    }
    let mut out = Vec::new();
    walk("", t, &mut out);
    out
}

/// Parse a `--set` value as TOML (`0.1`, `true`, `"x"`, `[1, 2]`, `{kind = "cosine"}`); a
/// bare word that is not valid TOML becomes a string (`data.dataset=cifar10`).
pub fn parse_toml_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or(toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

/// Set the dotted key `parts` (`["optim", "momentum"]`) of `table` to `value`, making the
/// missing tables on the way; `Err(part)` when a part on the way is not a table.
pub fn set_dotted<'a>(
    table: &mut toml::Table,
    parts: &[&'a str],
    value: toml::Value,
) -> std::result::Result<(), &'a str> {
    let Some((last, path)) = parts.split_last() else {
        return Ok(());
    };
    let mut cur = table;
    for p in path {
        let entry = cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(p),
        };
    }
    cur.insert(last.to_string(), value);
    Ok(())
}

/// Print `line` on stderr unless this process printed it already: a config is parsed more
/// than once (plan, run, resume), and its warnings should be read once.
pub fn warn_once(line: &str) {
    static SEEN: std::sync::Mutex<std::collections::BTreeSet<String>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if seen.insert(line.to_string()) {
        eprintln!("{line}");
    }
}

/// Format an f64 with the shortest representation that parses back to the same value
/// (Rust's `Display` for f64 has this property), so CSVs keep full precision.
pub fn fmt_f64(x: f64) -> String {
    format!("{x}")
}

/// Three significant digits, for numbers in messages (`0.0300`, `2.20`, `1230`).
pub fn short3(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let digits = (2 - x.abs().log10().floor() as i32).max(0) as usize;
    format!("{x:.digits$}")
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

/// Whether `name` is a temporary file of an atomic write ([`write_atomic`], the checkpoint's
/// and the snapshots' own), which a kill can leave behind.
pub fn is_temporary(name: &str) -> bool {
    name.starts_with(".lrlab-tmp-")
        || ((name.starts_with(".checkpoint-") || name.starts_with(".snapshot-"))
            && name.ends_with(".tmp"))
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
        if is_temporary(&name) {
            std::fs::remove_file(e.path())
                .with_context(|| format!("cannot remove the stale {}", e.path().display()))?;
        }
    }
    Ok(())
}

/// The median of `xs` (the mean of the two middle values for an even count); None when
/// empty.
pub fn median(mut xs: Vec<f64>) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    Some(if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    #[test]
    fn a_symlink_is_written_through_and_stays_a_link() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("data").join("target.csv");
        std::fs::create_dir(target.parent().unwrap()).unwrap();
        std::fs::write(&target, "old").unwrap();
        // A relative link, taken from the link's folder.
        let link = d.path().join("link.csv");
        std::os::unix::fs::symlink("data/target.csv", &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        // A link through a link, and a dangling one (its target is created).
        let link2 = d.path().join("link2.csv");
        std::os::unix::fs::symlink(&link, &link2).unwrap();
        write_atomic(&link2, b"newer").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "newer");
        let dangling = d.path().join("dangling.csv");
        std::os::unix::fs::symlink(d.path().join("made.csv"), &dangling).unwrap();
        write_atomic(&dangling, b"made").unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("made.csv")).unwrap(),
            "made"
        );
        assert!(std::fs::symlink_metadata(&dangling)
            .unwrap()
            .file_type()
            .is_symlink());
        // A loop is an error, not a hang.
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::os::unix::fs::symlink(&b, &a).unwrap();
        std::os::unix::fs::symlink(&a, &b).unwrap();
        let e = write_atomic(&a, b"x").unwrap_err().to_string();
        assert!(e.contains("too many levels"), "{e}");
    }

    #[test]
    fn a_fifo_is_written_to_and_stays_a_fifo() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("pipe");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string; mkfifo only creates the node.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(&fifo).unwrap())
        };
        write_atomic(&fifo, b"through the pipe").unwrap();
        assert_eq!(reader.join().unwrap(), b"through the pipe");
        let ft = std::fs::symlink_metadata(&fifo).unwrap().file_type();
        assert!(ft.is_fifo());
        let leftovers = std::fs::read_dir(d.path()).unwrap().count();
        assert_eq!(leftovers, 1, "a temporary file was left beside the FIFO");
    }

    #[test]
    fn a_character_device_is_written_to_and_stays_a_device() {
        let d = tempfile::tempdir().unwrap();
        let dev = d.path().join("null");
        let c = std::ffi::CString::new(dev.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string; makes a node for the null device (1, 3) in a temp folder.
        let made = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
        // Making a device needs privileges; without them /dev/null itself is the test (which
        // an unprivileged process could not have replaced anyway).
        let dev = if made == 0 {
            dev
        } else {
            Path::new("/dev/null").to_path_buf()
        };
        write_atomic(&dev, &[7u8; 4096]).unwrap();
        let m = std::fs::symlink_metadata(&dev).unwrap();
        assert!(
            m.file_type().is_char_device(),
            "{} was replaced",
            dev.display()
        );
        assert_eq!(m.len(), 0);
    }

    #[test]
    fn a_directory_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let e = write_atomic(d.path(), b"x").unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
    }
}
