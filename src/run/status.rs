//! `status.json`: the state of a run.

use super::STATUS;
use crate::util::write_atomic;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Where a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Training (or killed while training: a later attempt resumes it).
    Running,
    /// Trained to its last step.
    Done,
    /// Stopped by a non-finite or too large loss (`train.diverge_loss`); final.
    Diverged,
    /// Stopped by an error; a later attempt resumes it.
    Failed,
    /// Stopped by a signal after writing its checkpoint; a later attempt resumes it.
    Interrupted,
}

impl State {
    /// The name written in `status.json`.
    pub fn name(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Done => "done",
            State::Diverged => "diverged",
            State::Failed => "failed",
            State::Interrupted => "interrupted",
        }
    }

    /// Whether the run is over for good (done or diverged): running it again changes nothing.
    pub fn is_final(self) -> bool {
        matches!(self, State::Done | State::Diverged)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The state of a run, as written to `status.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Where the run stands.
    pub status: State,
    /// Why the run is in this state (empty while running or when done).
    #[serde(default)]
    pub reason: String,
    /// Completed epochs.
    pub epoch: u64,
    /// Completed optimizer steps.
    pub step: u64,
    /// When this was written (seconds since the Unix epoch).
    pub updated: f64,
    /// For a finished run with evaluations: whether it learned
    /// ([`crate::run::learned`]); when false, `reason` says why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learned: Option<bool>,
}

impl Status {
    /// A status written now.
    pub fn new(status: State, reason: &str, epoch: u64, step: u64) -> Status {
        Status {
            status,
            reason: reason.into(),
            epoch,
            step,
            updated: crate::util::now(),
            learned: None,
        }
    }

    /// Read `status.json` of a run folder, if present and readable.
    pub fn read(dir: &Path) -> Option<Status> {
        let text = std::fs::read_to_string(dir.join(STATUS)).ok()?;
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
        write_atomic(&dir.join(STATUS), format!("{text}\n").as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_files_of_every_state_round_trip_and_read_as_before() {
        let t = tempfile::tempdir().unwrap();
        for s in [
            State::Running,
            State::Done,
            State::Diverged,
            State::Failed,
            State::Interrupted,
        ] {
            let st = Status::new(s, "why", 3, 30);
            st.write(t.path()).unwrap();
            assert_eq!(Status::read(t.path()), Some(st));
        }
        // A file written by earlier lrlab (the state as a string).
        std::fs::write(
            t.path().join(STATUS),
            r#"{"status": "done", "reason": "", "epoch": 7, "step": 553, "updated": 1.5, "learned": true}"#,
        )
        .unwrap();
        let s = Status::read(t.path()).unwrap();
        assert_eq!((s.status, s.epoch, s.learned), (State::Done, 7, Some(true)));
        assert!(s.status.is_final() && !State::Interrupted.is_final());
    }
}
