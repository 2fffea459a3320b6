//! Every input kept under `fuzz/regressions/<target>/` (crashes the fuzzers found, and the
//! seed corpus) replayed through the same checks the fuzz targets run, on stable Rust: each
//! gives a value or an input error naming the file, and none panics.

#[path = "../../fuzz/src/checks.rs"]
mod checks;

use std::path::Path;

/// Run `check` on every file of `fuzz/regressions/<target>`; returns (files, accepted).
fn replay(target: &str, check: fn(&[u8]) -> bool) -> (usize, usize) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut accepted = 0;
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let r = std::panic::catch_unwind(|| check(&bytes));
        match r {
            Ok(ok) => accepted += ok as usize,
            Err(_) => panic!("{} panicked", f.display()),
        }
    }
    (files.len(), accepted)
}

#[test]
fn idx_regressions() {
    let (n, ok) = replay("idx", checks::idx);
    assert!(
        n > 0 && ok > 0,
        "{n} files, {ok} accepted: the seeds include valid files"
    );
}

#[test]
fn cifar_regressions() {
    let (n, ok) = replay("cifar", checks::cifar);
    assert!(
        n > 0 && ok > 0,
        "{n} files, {ok} accepted: the seeds include valid files"
    );
}

#[test]
fn run_config_regressions() {
    let (n, ok) = replay("run_config", checks::run_config);
    assert!(
        n > 0 && ok > 0,
        "{n} files, {ok} accepted: the seeds include valid files"
    );
}

#[test]
fn sweep_spec_regressions() {
    let (n, _) = replay("sweep_spec", checks::sweep_spec);
    assert!(n > 0, "no files");
}

#[test]
fn jpeg_regressions() {
    let (n, ok) = replay("jpeg", checks::jpeg);
    assert!(
        n > 0 && ok > 0,
        "{n} files, {ok} accepted: the seeds include valid files"
    );
    // The seeds made by fuzz/make_jpeg_seeds.py: broken files are rejected, the others decode.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/jpeg");
    for e in std::fs::read_dir(&dir).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if let Some(rest) = name.strip_prefix("seed-") {
            let bytes = std::fs::read(dir.join(&name)).unwrap();
            let broken = rest.starts_with("broken-");
            assert_eq!(checks::jpeg(&bytes), !broken, "{name}");
        }
    }
}
