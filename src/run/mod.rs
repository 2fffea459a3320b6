//! The run folder: its files' names and the typed records written into it. Every module that
//! reads or writes a run folder goes through here (the one owner of its layout).
//!
//! A run folder holds `config.toml` (the resolved config), `meta.json` (what ran, where, how
//! long), `status.json` ([`Status`]), `steps.csv` and `epochs.csv` (the curves),
//! `checkpoint.safetensors`, and optional `hf_lr.csv`, `hf_lr_layers.csv`, `snapshots/`,
//! `lr_find/`, `ensemble*.csv`, `report.md` and `figures/`.

mod status;

pub use status::{State, Status};

use anyhow::Result;
use std::path::{Path, PathBuf};

/// The resolved run config.
pub const CONFIG: &str = "config.toml";
/// What ran, where and how long.
pub const META: &str = "meta.json";
/// The run's state ([`Status`]).
pub const STATUS: &str = "status.json";
/// One row per logged optimizer step.
pub const STEPS: &str = "steps.csv";
/// One row per epoch.
pub const EPOCHS: &str = "epochs.csv";
/// Weights, optimizer state and position, for resuming.
pub const CHECKPOINT: &str = "checkpoint.safetensors";
/// The Hessian-free estimates (`train.hf_lr_every`).
pub const HF_LR: &str = "hf_lr.csv";
/// The same per layer.
pub const HF_LR_LAYERS: &str = "hf_lr_layers.csv";
/// Weights at every cycle end (`train.snapshots = "restarts"`).
pub const SNAPSHOTS: &str = "snapshots";

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
