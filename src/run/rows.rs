//! The rows of `steps.csv` and `epochs.csv`: typed, formatted by one function each, read back
//! by the `csv` crate by column name.

use crate::util::fmt_f64;
use anyhow::{Context, Result};
use serde::Deserialize;
use std::path::Path;

/// Header of `steps.csv`.
pub const STEPS_HEADER: &str = "step,epoch,lr,momentum,loss,time_s";
/// Header of `epochs.csv`.
pub const EPOCHS_HEADER: &str =
    "epoch,step,lr,train_loss,train_acc,test_loss,test_acc,test_top5,time_s,images_per_sec";

/// One row of `steps.csv`: a logged optimizer step.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct StepRow {
    /// Optimizer steps before this one (0-based).
    pub step: u64,
    /// Fractional epoch at the step (`step / steps_per_epoch`).
    pub epoch: f64,
    /// Learning rate of the step.
    pub lr: f64,
    /// Momentum (AdamW: beta1) of the step.
    pub momentum: f64,
    /// The batch's training loss.
    pub loss: f64,
    /// Seconds since the run started (empty where no clock is worth keeping).
    pub time_s: Option<f64>,
}

impl StepRow {
    /// The row's fields as written: shortest round-trip floats, milliseconds for the time.
    pub fn fields(&self) -> Vec<String> {
        vec![
            self.step.to_string(),
            fmt_f64(self.epoch),
            fmt_f64(self.lr),
            fmt_f64(self.momentum),
            fmt_f64(self.loss),
            self.time_s.map(|t| format!("{t:.3}")).unwrap_or_default(),
        ]
    }
}

/// One row of `epochs.csv`: a completed epoch. The `test_*` columns hold the evaluated split
/// (the validation split with `data.val_split`, see [`super::Meta::eval_split`]), empty on
/// epochs without an evaluation.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct EpochRow {
    /// Completed epochs (1-based).
    pub epoch: u64,
    /// Completed optimizer steps.
    pub step: u64,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// Mean training loss over the epoch.
    pub train_loss: f64,
    /// Training accuracy over the epoch (fraction).
    pub train_acc: f64,
    /// Evaluation loss.
    pub test_loss: Option<f64>,
    /// Evaluation accuracy (fraction).
    pub test_acc: Option<f64>,
    /// Evaluation top-5 accuracy (fraction).
    pub test_top5: Option<f64>,
    /// Training and evaluation seconds over all attempts.
    pub time_s: f64,
    /// Training throughput of the epoch.
    pub images_per_sec: f64,
}

/// A metric column: empty when absent.
fn opt(x: Option<f64>) -> String {
    x.map(fmt_f64).unwrap_or_default()
}

impl EpochRow {
    /// The row's fields as written: shortest round-trip floats, milliseconds for the time and
    /// a tenth of an image per second for the throughput. Reading a row back and writing it
    /// again gives the same bytes.
    pub fn fields(&self) -> Vec<String> {
        vec![
            self.epoch.to_string(),
            self.step.to_string(),
            fmt_f64(self.lr),
            fmt_f64(self.train_loss),
            fmt_f64(self.train_acc),
            opt(self.test_loss),
            opt(self.test_acc),
            opt(self.test_top5),
            format!("{:.3}", self.time_s),
            format!("{:.1}", self.images_per_sec),
        ]
    }
}

/// Read the rows of a `steps.csv` or `epochs.csv` whose header must be `header` (missing or
/// empty file: no rows). Another header, or a value of the wrong type, is an error naming the
/// file; a last line without its newline (torn by a kill, or still being written) and a row
/// with another field count are left out.
fn read_rows<T: serde::de::DeserializeOwned>(path: &Path, header: &str) -> Result<Vec<T>> {
    let mut text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if let Some(end) = text.rfind('\n') {
        text.truncate(end + 1);
    }
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(false)
        .from_reader(text.as_bytes());
    let mut records = r.records();
    let found = match records.next() {
        None => return Ok(Vec::new()),
        Some(h) => h.with_context(|| format!("cannot read {}", path.display()))?,
    };
    if found.iter().collect::<Vec<_>>().join(",") != header {
        anyhow::bail!(
            "{}: unexpected header {:?}, expected {header:?}",
            path.display(),
            found.iter().collect::<Vec<_>>().join(",")
        );
    }
    let names = csv::StringRecord::from(header.split(',').collect::<Vec<_>>());
    let mut rows = Vec::new();
    for rec in records {
        let rec = rec.with_context(|| format!("cannot read {}", path.display()))?;
        if rec.len() != names.len() {
            continue;
        }
        let line = rec.position().map_or(0, |p| p.line());
        rows.push(
            rec.deserialize(Some(&names))
                .with_context(|| format!("{}: line {line}", path.display()))?,
        );
    }
    Ok(rows)
}

/// The rows of `epochs.csv` at `path` ([`read_rows`]).
pub fn read_epochs(path: &Path) -> Result<Vec<EpochRow>> {
    read_rows(path, EPOCHS_HEADER)
}

/// The rows of `steps.csv` at `path` ([`read_rows`]).
pub fn read_steps(path: &Path) -> Result<Vec<StepRow>> {
    read_rows(path, STEPS_HEADER)
}

/// Whether the run of `epochs.csv` at `path` learned: `None` without an evaluation, else
/// `(false, why)` when its last evaluation is at chance accuracy (at most 1.5/`classes`) or
/// its last test loss is more than 5 times its first (training blew up and never recovered),
/// `(true, "")` otherwise. A run that never learned is finished, but its numbers are not
/// results; it is marked so that it is never listed as fine among good runs.
pub fn learned(path: &Path, classes: usize) -> Result<Option<(bool, String)>> {
    let finite = |x: Option<f64>| x.filter(|x| x.is_finite());
    let evaluated: Vec<(f64, Option<f64>)> = read_epochs(path)?
        .iter()
        .filter_map(|r| finite(r.test_acc).map(|a| (a, finite(r.test_loss))))
        .collect();
    let (Some(first), Some(last)) = (evaluated.first(), evaluated.last()) else {
        return Ok(None);
    };
    let chance = 1.0 / classes.max(1) as f64;
    if classes >= 2 && last.0 <= 1.5 * chance {
        return Ok(Some((
            false,
            format!(
                "did not learn: final test accuracy {:.2}% is chance level for {classes} classes",
                100.0 * last.0
            ),
        )));
    }
    if let (Some(l0), Some(l1)) = (first.1, last.1) {
        if evaluated.len() > 1 && l0 > 0.0 && l1 > 5.0 * l0 {
            return Ok(Some((
                false,
                format!(
                    "did not learn: final test loss {} is {:.0}x its first evaluation's ({})",
                    fmt_f64(l1),
                    l1 / l0,
                    fmt_f64(l0)
                ),
            )));
        }
    }
    Ok(Some((true, String::new())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// The run folder an earlier lrlab wrote, committed with the tests.
    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/run_folder_v0")
    }

    #[test]
    fn rows_read_back_by_name_are_written_again_byte_for_byte() {
        for (name, header) in [
            (crate::run::EPOCHS, EPOCHS_HEADER),
            (crate::run::STEPS, STEPS_HEADER),
        ] {
            let path = fixture().join(name);
            let text = std::fs::read_to_string(&path).unwrap();
            let fields: Vec<Vec<String>> = if name == crate::run::EPOCHS {
                read_epochs(&path)
                    .unwrap()
                    .iter()
                    .map(EpochRow::fields)
                    .collect()
            } else {
                read_steps(&path)
                    .unwrap()
                    .iter()
                    .map(StepRow::fields)
                    .collect()
            };
            let mut again = format!("{header}\n");
            for f in &fields {
                again.push_str(&f.join(","));
                again.push('\n');
            }
            assert!(fields.len() >= 2, "{name}");
            assert_eq!(again, text, "{name}");
        }
        let e = read_epochs(&fixture().join(crate::run::EPOCHS)).unwrap();
        assert_eq!((e[1].epoch, e[1].step, e[1].test_acc), (2, 16, Some(1.0)));
        assert_eq!(e[0].time_s, 0.387);
        // hf-lr's steps.csv has no clock: an empty time reads as None.
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join(crate::run::STEPS);
        std::fs::write(&p, format!("{STEPS_HEADER}\n3,0.5,0.1,0.9,NaN,\n")).unwrap();
        let s = read_steps(&p).unwrap();
        assert!(s[0].loss.is_nan() && s[0].time_s.is_none());
        assert_eq!(s[0].fields().join(","), "3,0.5,0.1,0.9,NaN,");
    }

    #[test]
    fn a_torn_last_line_is_left_out_and_a_bad_value_or_header_named() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join(crate::run::EPOCHS);
        let row = "1,8,0.01,1.6,0.5,0.4,0.9,1,0.387,1403.5\n";
        std::fs::write(&p, format!("{EPOCHS_HEADER}\n{row}2,16,0.01,0.1")).unwrap();
        assert_eq!(read_epochs(&p).unwrap().len(), 1);
        std::fs::write(
            &p,
            format!("{EPOCHS_HEADER}\n{row}x,16,0.01,0.1,1,,,,1.000,2.0\n"),
        )
        .unwrap();
        let e = format!("{:#}", read_epochs(&p).unwrap_err());
        assert!(e.contains("epochs.csv: line 3"), "{e}");
        std::fs::write(&p, "epoch,lr\n1,0.1\n").unwrap();
        let e = format!("{:#}", read_epochs(&p).unwrap_err());
        assert!(e.contains("unexpected header"), "{e}");
        assert!(read_epochs(&t.path().join("missing.csv"))
            .unwrap()
            .is_empty());
    }

    fn epochs_file(rows: &[(f64, f64)]) -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join(crate::run::EPOCHS);
        let mut text = format!("{EPOCHS_HEADER}\n");
        for (e, (loss, acc)) in rows.iter().enumerate() {
            text.push_str(&format!(
                "{},{},0.1,1,0.5,{loss},{acc},,1,1\n",
                e + 1,
                10 * (e + 1)
            ));
        }
        std::fs::write(&path, text).unwrap();
        (t, path)
    }

    #[test]
    fn a_run_at_chance_or_with_its_test_loss_blown_up_did_not_learn() {
        let (_t, p) = epochs_file(&[(2.3, 0.35), (1.0, 0.62), (0.6, 0.81)]);
        assert_eq!(learned(&p, 10).unwrap(), Some((true, String::new())));
        // The run: 10% accuracy after a max_lr of 10.
        let (_t, p) = epochs_file(&[(2.4, 0.1), (3485.0, 0.1)]);
        let (ok, why) = learned(&p, 10).unwrap().unwrap();
        assert!(
            !ok && why.contains("10.00%") && why.contains("chance"),
            "{why}"
        );
        // Accurate enough, but the test loss blew up: 1.5/10 = 15% is still chance.
        let (_t, p) = epochs_file(&[(2.3, 0.3), (40.0, 0.2)]);
        let (ok, why) = learned(&p, 10).unwrap().unwrap();
        assert!(!ok && why.contains("17x"), "{why}");
        // 1000 classes: 0.3% is above 1.5 x chance (0.15%).
        let (_t, p) = epochs_file(&[(6.9, 0.001), (6.0, 0.003)]);
        assert!(learned(&p, 1000).unwrap().unwrap().0);
        let (_t, p) = epochs_file(&[]);
        assert_eq!(learned(&p, 10).unwrap(), None);
    }
}
