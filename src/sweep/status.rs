//! `lrlab sweep status DIR`: one row per run (index, name, status, epoch, step, best test
//! accuracy, and why a run failed), read from the run folders at any time, whichever runner
//! (local or Slurm) runs them.

use super::collect::{summarize, RunSummary};
use super::exec::RunState;
use super::manifest::Manifest;
use anyhow::Result;
use std::path::Path;

/// Columns padded to their widest cell; the last column is not padded.
pub fn table(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let width: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 < r.len() {
                line.push_str(&format!("{c:<w$}  ", w = width[i]));
            } else {
                line.push_str(c);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The status table of a sweep folder, and a closing line with the counts.
pub fn status_text(sweep: &Path) -> Result<String> {
    let m = Manifest::load(sweep)?;
    let sums = summarize(sweep, &m)?;
    Ok(render(&m, &sums))
}

/// Render the table for summaries already read.
pub fn render(m: &Manifest, sums: &[RunSummary]) -> String {
    let mut rows = vec![[
        "index", "name", "status", "epoch", "step", "best_acc", "note",
    ]
    .map(String::from)
    .to_vec()];
    for s in sums {
        let epoch = s.status.as_ref().map(|st| st.epoch);
        let epoch = match (epoch, s.total_epochs) {
            (Some(e), Some(t)) => format!("{e}/{t}"),
            (Some(e), None) => e.to_string(),
            _ => "-".into(),
        };
        let note = match s.state {
            RunState::Failed
            | RunState::Diverged
            | RunState::Interrupted
            | RunState::Stale
            | RunState::Done => s
                .status
                .as_ref()
                .map(|st| one_line(&st.reason, 80))
                .unwrap_or_default(),
            _ => String::new(),
        };
        rows.push(vec![
            s.run.index.to_string(),
            s.run.name.clone(),
            s.state.as_str().to_string(),
            epoch,
            s.status
                .as_ref()
                .map(|st| st.step.to_string())
                .unwrap_or_else(|| "-".into()),
            s.best_test_acc
                .map(|a| format!("{a:.4}"))
                .unwrap_or_else(|| "-".into()),
            note,
        ]);
    }
    let mut out = table(&rows);
    let count = |st: RunState| sums.iter().filter(|s| s.state == st).count();
    out.push_str(&format!(
        "{}: {} runs: {} done, {} diverged, {} running, {} failed, {} interrupted, {} stale, {} pending\n",
        m.name,
        sums.len(),
        count(RunState::Done),
        count(RunState::Diverged),
        count(RunState::Running),
        count(RunState::Failed),
        count(RunState::Interrupted),
        count(RunState::Stale),
        count(RunState::Pending),
    ));
    out
}

/// The first line of `s`, cut to `max` characters.
fn one_line(s: &str, max: usize) -> String {
    let l = s.lines().next().unwrap_or("");
    if l.chars().count() > max {
        format!("{}…", l.chars().take(max).collect::<String>())
    } else {
        l.to_string()
    }
}
