//! What the local executor shows: on a terminal an overall bar (runs finished of all, running,
//! failed, ETA) and one line per running run (its epoch and step from `status.json`);
//! otherwise plain lines, one per start and end.

use super::exec::{Active, Finished};
use crate::run::State;
use crate::run::Status;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::path::Path;

/// Counts shown in the overall bar.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    /// Runs in the sweep.
    pub total: usize,
    /// Done or diverged.
    pub finished: usize,
    /// Failed.
    pub failed: usize,
    /// Running now (by this runner).
    pub running: usize,
}

/// The display.
pub struct Progress {
    multi: Option<MultiProgress>,
    overall: Option<ProgressBar>,
    bars: HashMap<usize, ProgressBar>,
}

impl Progress {
    /// Bars when `tty` (stderr is a terminal and progress is wanted), plain lines otherwise.
    pub fn new(tty: bool, c: Counts) -> Progress {
        if !tty {
            return Progress {
                multi: None,
                overall: None,
                bars: HashMap::new(),
            };
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let bar = multi.add(ProgressBar::new(c.total as u64));
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} runs {msg} [{elapsed} < {eta}]")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_position((c.finished + c.failed) as u64);
        bar.reset_eta();
        let p = Progress {
            multi: Some(multi),
            overall: Some(bar),
            bars: HashMap::new(),
        };
        p.counts(c);
        p
    }

    /// Print a line above the bars (or to stderr).
    pub fn line(&self, msg: impl AsRef<str>) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(msg.as_ref());
            }
            None => eprintln!("{}", msg.as_ref()),
        }
    }

    /// Update the overall bar.
    pub fn counts(&self, c: Counts) {
        if let Some(b) = &self.overall {
            b.set_message(format!(
                "({} done, {} running, {} failed)",
                c.finished, c.running, c.failed
            ));
            b.set_position((c.finished + c.failed) as u64);
        }
    }

    /// A run started.
    pub fn started(&mut self, a: &Active, c: Counts) {
        let name = &a.run.name;
        match &self.multi {
            Some(m) => {
                let bar = m.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("  {spinner} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_message(format!("{name} [{}] starting", a.device));
                self.bars.insert(a.run.index, bar);
            }
            None => eprintln!(
                "[{}/{}] start {name} on {} (pid {})",
                c.finished + c.failed,
                c.total,
                a.device,
                a.pid()
            ),
        }
        self.counts(c);
    }

    /// A run ended.
    pub fn finished(&mut self, a: &Active, f: &Finished, c: Counts) {
        if let Some(bar) = self.bars.remove(&a.run.index) {
            bar.finish_and_clear();
            if let Some(m) = &self.multi {
                m.remove(&bar);
            }
        }
        let what = match f.outcome {
            State::Done if f.reason.is_empty() => "done".to_string(),
            State::Done => format!("done, but it {}", f.reason),
            State::Diverged => format!("diverged: {}", f.reason),
            State::Interrupted | State::Running => {
                "interrupted (checkpoint kept; run again to resume)".into()
            }
            State::Failed => format!("FAILED: {}", f.reason),
        };
        self.line(format!(
            "[{}/{}] {} {what} ({:.1} s)",
            c.finished + c.failed,
            c.total,
            a.run.name,
            f.secs
        ));
        self.counts(c);
    }

    /// Refresh the per-run lines from the runs' `status.json` and `meta.json`.
    pub fn tick(&self, sweep: &Path, active: &[&Active]) {
        for a in active {
            let Some(bar) = self.bars.get(&a.run.index) else {
                continue;
            };
            let dir = a.run.dir(sweep);
            let epochs = crate::run::Meta::read_ok(&dir).and_then(|m| m.epochs);
            let msg = match Status::read(&dir) {
                Some(s) if s.status == crate::run::State::Running => format!(
                    "{} [{}] epoch {}/{} step {}",
                    a.run.name,
                    a.device,
                    s.epoch,
                    epochs.map(|e| e.to_string()).unwrap_or_else(|| "?".into()),
                    s.step
                ),
                _ => format!("{} [{}] starting", a.run.name, a.device),
            };
            bar.set_message(msg);
            bar.tick();
        }
    }

    /// Remove the bars.
    pub fn clear(&mut self) {
        for (_, b) in self.bars.drain() {
            b.finish_and_clear();
        }
        if let Some(b) = &self.overall {
            b.finish_and_clear();
        }
    }
}
