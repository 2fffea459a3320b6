//! Recognising run folders: the one rule for finding them, and the check that lrlab writes
//! only into folders it made.

use super::{CONFIG, EPOCHS, META, SNAPSHOTS, STATUS};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Whether `dir` is a run folder: it has a curve (`epochs.csv`, written when training
/// starts), or a resolved config with snapshots to evaluate. The one rule every command that
/// looks for runs uses.
pub fn is_run(dir: &Path) -> bool {
    dir.join(EPOCHS).is_file() || (dir.join(CONFIG).is_file() && dir.join(SNAPSHOTS).is_dir())
}

/// The run folders of `root`: itself when it is one ([`is_run`]), else those below it, at
/// most three levels down, in path order; a run's own subfolders are not searched, nor hidden
/// folders or `figures`. Empty when there is none; an error only when `root` cannot be
/// listed.
pub fn find_runs(root: &Path) -> Result<Vec<PathBuf>> {
    if is_run(root) {
        return Ok(vec![root.to_path_buf()]);
    }
    let mut found = Vec::new();
    let mut stack = vec![(root.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        if depth >= 3 {
            continue;
        }
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if dir == root => {
                crate::bail_input!("{}: cannot list: {e}", dir.display())
            }
            Err(_) => continue,
        };
        for entry in entries.flatten() {
            let p = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if !p.is_dir() || name.starts_with('.') || name == "figures" {
                continue;
            }
            if is_run(&p) {
                found.push(p);
            } else {
                stack.push((p, depth + 1));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Entries lrlab may have written in a run folder before its `meta.json`: the planned or
/// resolved config and the sweep runner's log and attempt records (a sweep writes them
/// first), the lock, the range test of `"auto"` values, a failure's `status.json`.
const BEFORE_META: [&str; 8] = [
    CONFIG,
    SNAPSHOTS,
    "config.auto.toml",
    "train.log",
    "attempts.jsonl",
    super::LOCK,
    "lr_find",
    STATUS,
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
    let meta = out.join(META);
    if meta.exists() {
        let ours = super::Meta::read_ok(out).is_some_and(|m| m.is_lrlab());
        if !ours {
            crate::bail_input!(
                "{}: not an lrlab run folder ({} has no lrlab marker); lrlab writes nothing \
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
    let config = out.join(CONFIG);
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
    if out.join(STATUS).exists() && super::Status::read(out).is_none() {
        crate::bail_input!(
            "{}: not an lrlab status file; lrlab writes nothing into a folder it did not \
             create: use another --out",
            out.join(STATUS).display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_found_by_one_rule_at_most_three_levels_down() {
        let t = tempfile::tempdir().unwrap();
        let mk = |rel: &str, files: &[&str]| {
            let d = t.path().join(rel);
            std::fs::create_dir_all(&d).unwrap();
            for f in files {
                if *f == SNAPSHOTS {
                    std::fs::create_dir_all(d.join(f)).unwrap();
                } else {
                    std::fs::write(d.join(f), "").unwrap();
                }
            }
        };
        mk("a", &[CONFIG, EPOCHS]);
        mk("a/inner", &[EPOCHS]); // inside a run: not searched
        mk("b/c", &[EPOCHS]); // a curve without its config still reads
        mk("d", &[CONFIG, SNAPSHOTS]); // snapshots to evaluate
        mk("e", &[CONFIG]); // planned, never started
        mk("f/g/h/i", &[EPOCHS]); // four levels down
        mk(".hidden", &[EPOCHS]);
        mk("figures/x", &[EPOCHS]);
        let got: Vec<String> = find_runs(t.path())
            .unwrap()
            .iter()
            .map(|p| p.strip_prefix(t.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(got, ["a", "b/c", "d"]);
        assert_eq!(
            find_runs(&t.path().join("a")).unwrap(),
            [t.path().join("a")]
        );
        assert!(find_runs(&t.path().join("e")).unwrap().is_empty());
        assert!(find_runs(&t.path().join("missing")).is_err());
    }
}
