//! Reading the folders `lrlab plot` and `lrlab report` draw from, recognised by their files:
//!
//! - a **run** folder: `epochs.csv` (plus `steps.csv`, `config.toml`, `meta.json`,
//!   `status.json` when present);
//! - a **range-test** folder: `lr_find.csv` (plus `accuracy.csv`, `suggestion.json`);
//! - a **sweep** folder: run folders below it (up to three levels down), and/or the sweep's
//!   `summary.csv`, `curves.csv` (or `curves_long.csv`), `summary_by_point.csv`, `sweep.toml`.
//!
//! Everything is read before anything is drawn, so bad input writes nothing. A file that is
//! present but malformed is an input error naming the file (and the line, for CSV).

use super::table::Table;
use crate::error::input_error;
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One row of `epochs.csv` (or of a run's rows in a sweep's `curves.csv`); absent or empty
/// cells are `None` (test columns are empty on epochs without evaluation).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EpochRow {
    /// Epoch number (1-based, completed epochs).
    pub epoch: f64,
    /// Learning rate at the epoch's last step.
    pub lr: Option<f64>,
    /// Mean training loss over the epoch.
    pub train_loss: Option<f64>,
    /// Training accuracy (fraction).
    pub train_acc: Option<f64>,
    /// Test loss.
    pub test_loss: Option<f64>,
    /// Test accuracy (fraction).
    pub test_acc: Option<f64>,
    /// Test top-5 accuracy (fraction).
    pub test_top5: Option<f64>,
    /// Seconds since the run started.
    pub time_s: Option<f64>,
    /// Training throughput.
    pub images_per_sec: Option<f64>,
}

/// Rows `rows` of a table with the `epochs.csv` columns (`epoch` required, the rest optional).
pub fn epoch_rows(t: &Table, rows: &[usize]) -> Result<Vec<EpochRow>> {
    let epoch = t.need("epoch")?;
    // In a sweep's curves.csv the epochs.csv columns follow the grid parameters, which may
    // share a name (`lr`): look from `epoch` on.
    let col = |name: &str| {
        t.header[epoch..]
            .iter()
            .position(|h| h == name)
            .map(|i| i + epoch)
    };
    let (lr, tl, ta, vl, va, v5, ts, ips) = (
        col("lr"),
        col("train_loss"),
        col("train_acc"),
        col("test_loss"),
        col("test_acc"),
        col("test_top5"),
        col("time_s"),
        col("images_per_sec"),
    );
    let get = |r: usize, c: Option<usize>| -> Result<Option<f64>> {
        match c {
            Some(c) => t.num(r, c),
            None => Ok(None),
        }
    };
    rows.iter()
        .map(|&r| {
            let e = t.num(r, epoch)?.ok_or_else(|| {
                input_error(format!(
                    "{}: line {}: empty `epoch`",
                    t.path.display(),
                    t.lines[r]
                ))
            })?;
            Ok(EpochRow {
                epoch: e,
                lr: get(r, lr)?,
                train_loss: get(r, tl)?,
                train_acc: get(r, ta)?,
                test_loss: get(r, vl)?,
                test_acc: get(r, va)?,
                test_top5: get(r, v5)?,
                time_s: get(r, ts)?,
                images_per_sec: get(r, ips)?,
            })
        })
        .collect()
}

/// The schedule as the optimizer saw it: `(epoch, lr, momentum)` from `steps.csv`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScheduleRow {
    /// Fractional epoch.
    pub epoch: f64,
    /// Learning rate.
    pub lr: f64,
    /// Momentum (or β1), when recorded.
    pub momentum: Option<f64>,
}

/// Read the `epoch`, `lr` and `momentum` columns of a `steps.csv`, streaming (it can hold
/// hundreds of thousands of rows).
pub fn read_steps(path: &Path) -> Result<Vec<ScheduleRow>> {
    let file = std::fs::File::open(path)
        .map_err(|e| input_error(format!("{}: cannot read: {e}", path.display())))?;
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(std::io::BufReader::new(file));
    let bad =
        |line: u64, what: String| input_error(format!("{}: line {line}: {what}", path.display()));
    let header = rdr
        .headers()
        .map_err(|e| bad(1, format!("not valid CSV: {e}")))?
        .clone();
    let find = |n: &str| header.iter().position(|h| h.trim() == n);
    let (Some(ce), Some(cl)) = (find("epoch"), find("lr")) else {
        return Err(bad(
            1,
            format!(
                "expected the columns step,epoch,lr,momentum,loss,time_s, found {}",
                header.iter().collect::<Vec<_>>().join(",")
            ),
        ));
    };
    let cm = find("momentum");
    let mut out = Vec::new();
    let mut rec = csv::StringRecord::new();
    loop {
        match rdr.read_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                return Err(bad(line, format!("not valid CSV: {e}")));
            }
        }
        let line = rec.position().map_or(0, |p| p.line());
        if rec.len() == 1 && rec[0].trim().is_empty() {
            continue;
        }
        if rec.len() != header.len() {
            return Err(bad(
                line,
                format!("{} fields, expected {}", rec.len(), header.len()),
            ));
        }
        let num = |c: usize| -> Result<Option<f64>> {
            let s = rec[c].trim();
            if s.is_empty() {
                return Ok(None);
            }
            s.parse::<f64>().map(Some).map_err(|_| {
                bad(
                    line,
                    format!("column `{}`: {s:?} is not a number", header[c].trim()),
                )
            })
        };
        if let (Some(epoch), Some(lr)) = (num(ce)?, num(cl)?) {
            let momentum = match cm {
                Some(c) => num(c)?,
                None => None,
            };
            out.push(ScheduleRow {
                epoch,
                lr,
                momentum,
            });
        }
    }
    Ok(out)
}

/// One row of `hf_lr.csv`: the Hessian-free LR estimates of the window at `step`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HfRow {
    /// The window's first step.
    pub step: f64,
    /// The learning rate in use at that step.
    pub lr: f64,
    /// The paper's finite-difference estimate.
    pub hf_lr: Option<f64>,
    /// Its moving average.
    pub hf_lr_ema: Option<f64>,
    /// gᵀg / gᵀHg.
    pub curvature_lr: Option<f64>,
    /// The estimate over every Caffe blob (`train.hf_lr_blobs = "caffe"`).
    pub hf_lr_caffe: Option<f64>,
    /// Its moving average.
    pub hf_lr_caffe_ema: Option<f64>,
}

/// Read `hf_lr.csv` (`train.hf_lr_every`, `lrlab hf-lr`); None when the folder has none.
pub fn read_hf_lr(dir: &Path) -> Result<Option<Vec<HfRow>>> {
    let path = dir.join(crate::run::HF_LR);
    if !path.is_file() {
        return Ok(None);
    }
    let t = Table::read(&path)?;
    let (step, lr) = (t.need("step")?, t.need("lr")?);
    let (raw, ema, curv) = (t.col("hf_lr"), t.col("hf_lr_ema"), t.col("curvature_lr"));
    let (caffe, caffe_ema) = (t.col("hf_lr_caffe"), t.col("hf_lr_caffe_ema"));
    let get = |r: usize, c: Option<usize>| -> Result<Option<f64>> {
        match c {
            Some(c) => t.num(r, c),
            None => Ok(None),
        }
    };
    let mut out = Vec::with_capacity(t.rows.len());
    for r in 0..t.rows.len() {
        let missing = |what: &str| {
            input_error(format!(
                "{}: line {}: empty `{what}`",
                path.display(),
                t.lines[r]
            ))
        };
        out.push(HfRow {
            step: t.num(r, step)?.ok_or_else(|| missing("step"))?,
            lr: t.num(r, lr)?.ok_or_else(|| missing("lr"))?,
            hf_lr: get(r, raw)?,
            hf_lr_ema: get(r, ema)?,
            curvature_lr: get(r, curv)?,
            hf_lr_caffe: get(r, caffe)?,
            hf_lr_caffe_ema: get(r, caffe_ema)?,
        });
    }
    Ok(Some(out))
}

/// A folder of `lrlab hf-lr`: the estimates of a short training, without epochs.
#[derive(Clone, Debug)]
pub struct HfLrRun {
    /// Rows of `hf_lr.csv`.
    pub rows: Vec<HfRow>,
}

/// One training run: its name, its grid parameters (when a sweep table gives them), status
/// and per-epoch rows.
#[derive(Clone, Debug, Default)]
pub struct Run {
    /// Name: the folder's path relative to the sweep (or the folder name of a lone run), or
    /// the name in the sweep's tables.
    pub name: String,
    /// The run folder, when there is one.
    pub dir: Option<PathBuf>,
    /// Grid parameters `(column, value)` from the sweep's `summary.csv`/`curves.csv`.
    pub params: Vec<(String, String)>,
    /// `done`, `diverged`, `failed`, `running`, `interrupted`, or `None` when unknown.
    pub status: Option<String>,
    /// Why the run ended the way it did (from `status.json`).
    pub reason: String,
    /// Rows of `epochs.csv`.
    pub epochs: Vec<EpochRow>,
    /// The resolved `config.toml`, when present.
    pub config: Option<toml::Table>,
    /// The text of `config.toml`, as written.
    pub config_text: Option<String>,
    /// `meta.json`, when present.
    pub meta: Option<crate::run::Meta>,
    /// Rows of `hf_lr.csv`, when the run logged the Hessian-free estimates.
    pub hf_lr: Vec<HfRow>,
}

impl Run {
    /// Read a run folder; `name` labels it.
    pub fn load(dir: &Path, name: String) -> Result<Run> {
        let epochs_path = dir.join(crate::run::EPOCHS);
        let t = Table::read(&epochs_path)?;
        let rows: Vec<usize> = (0..t.rows.len()).collect();
        let epochs = epoch_rows(&t, &rows)?;
        let (status, reason) = match read_json(&dir.join(crate::run::STATUS))? {
            Some(v) => (
                v.get("status").and_then(|s| s.as_str()).map(str::to_string),
                v.get("reason")
                    .and_then(|s| s.as_str())
                    .unwrap_or_default()
                    .to_string(),
            ),
            None => (None, String::new()),
        };
        let config_text = read_text(&dir.join(crate::run::CONFIG))?;
        let config = match &config_text {
            Some((p, text)) => Some(text.parse::<toml::Table>().map_err(|e| {
                input_error(format!(
                    "{}: invalid TOML: {}",
                    p.display(),
                    e.to_string().trim()
                ))
            })?),
            None => None,
        };
        Ok(Run {
            name,
            dir: Some(dir.to_path_buf()),
            params: Vec::new(),
            status,
            reason,
            epochs,
            config,
            config_text: config_text.map(|(_, t)| t),
            meta: crate::run::Meta::read(dir)?,
            hf_lr: read_hf_lr(dir)?.unwrap_or_default(),
        })
    }

    /// The schedule actually used: `steps.csv` when the folder has it, else the LR at each
    /// epoch end from `epochs.csv` (no momentum). Empty when neither holds an LR.
    pub fn schedule(&self) -> Result<Vec<ScheduleRow>> {
        if let Some(dir) = &self.dir {
            let p = dir.join(crate::run::STEPS);
            if p.is_file() {
                return read_steps(&p);
            }
        }
        Ok(self
            .epochs
            .iter()
            .filter_map(|e| {
                e.lr.map(|lr| ScheduleRow {
                    epoch: e.epoch,
                    lr,
                    momentum: None,
                })
            })
            .collect())
    }

    /// `(epoch, test accuracy)` of the last evaluated epoch.
    pub fn final_test(&self) -> Option<(f64, f64)> {
        self.epochs
            .iter()
            .rev()
            .find_map(|e| e.test_acc.map(|a| (e.epoch, a)))
    }

    /// `(epoch, test accuracy)` of the best evaluated epoch (the first, on ties).
    pub fn best_test(&self) -> Option<(f64, f64)> {
        self.epochs
            .iter()
            .filter_map(|e| e.test_acc.map(|a| (e.epoch, a)))
            .fold(None, |best: Option<(f64, f64)>, (e, a)| match best {
                Some((_, b)) if b >= a => best,
                _ => Some((e, a)),
            })
    }

    /// Test accuracy at `epoch`, when that epoch was evaluated.
    pub fn test_at(&self, epoch: f64) -> Option<f64> {
        self.epochs
            .iter()
            .find(|e| e.epoch == epoch)
            .and_then(|e| e.test_acc)
    }

    /// Completed epochs (the last row's epoch).
    pub fn epochs_done(&self) -> Option<f64> {
        self.epochs.last().map(|e| e.epoch)
    }

    /// Training wall time in seconds: the last row's `time_s`.
    pub fn wall_s(&self) -> Option<f64> {
        self.epochs.last().and_then(|e| e.time_s)
    }
}

/// The range test's curve, accuracy points and suggestions.
#[derive(Clone, Debug, Default)]
pub struct RangeTest {
    /// The folder.
    pub dir: PathBuf,
    /// Learning rate at each step.
    pub lr: Vec<f64>,
    /// Raw loss at each step.
    pub loss: Vec<f64>,
    /// Smoothed loss at each step (`None` when the file has no such column).
    pub smoothed: Option<Vec<f64>>,
    /// `(lr, accuracy)` from `accuracy.csv`.
    pub accuracy: Vec<(f64, f64)>,
    /// The suggestions of `suggestion.json`.
    pub suggestions: Vec<Suggested>,
    /// Why the test stopped early, if it did.
    pub stopped: Option<String>,
    /// What was watched (`loss` or `accuracy`), from `suggestion.json`.
    pub metric: Option<crate::config::Metric>,
    /// The rule whose suggestion filled a run's `"auto"` values (`rule_for_auto`), if any.
    pub chosen_rule: Option<String>,
}

/// One suggested learning rate.
#[derive(Clone, Debug, PartialEq)]
pub struct Suggested {
    /// Rule name.
    pub rule: String,
    /// The learning rate.
    pub lr: f64,
    /// How the rule read the curve.
    pub how: String,
}

impl RangeTest {
    /// Read a range-test folder.
    pub fn load(dir: &Path) -> Result<RangeTest> {
        let t = Table::read(&dir.join("lr_find.csv"))?;
        let (lr, loss) = (t.need("lr")?, t.need("loss")?);
        let sm = t.col("smoothed_loss");
        let mut rt = RangeTest {
            dir: dir.to_path_buf(),
            smoothed: sm.map(|_| Vec::new()),
            ..RangeTest::default()
        };
        for r in 0..t.rows.len() {
            let Some(x) = t.num(r, lr)? else { continue };
            rt.lr.push(x);
            rt.loss.push(t.num(r, loss)?.unwrap_or(f64::NAN));
            if let (Some(c), Some(v)) = (sm, rt.smoothed.as_mut()) {
                v.push(t.num(r, c)?.unwrap_or(f64::NAN));
            }
        }
        let acc = dir.join("accuracy.csv");
        if acc.is_file() {
            let t = Table::read(&acc)?;
            let (lr, a) = (t.need("lr")?, t.need("accuracy")?);
            for r in 0..t.rows.len() {
                if let (Some(x), Some(y)) = (t.num(r, lr)?, t.num(r, a)?) {
                    rt.accuracy.push((x, y));
                }
            }
        }
        if let Some(f) = crate::lr_find::SuggestionFile::read(dir)? {
            rt.stopped = f.stopped;
            rt.metric = f.metric;
            rt.chosen_rule = f.rule_for_auto;
            rt.suggestions = f
                .suggestions
                .into_iter()
                .map(|s| Suggested {
                    rule: s.rule,
                    lr: s.lr,
                    how: s.how,
                })
                .collect();
        }
        Ok(rt)
    }
}

/// A sweep: its runs and the sweep-level files.
#[derive(Clone, Debug, Default)]
pub struct Sweep {
    /// The folder.
    pub dir: PathBuf,
    /// The runs, from run folders (in path order) or, without run folders, from `curves.csv`.
    pub runs: Vec<Run>,
    /// `summary.csv`, when present.
    pub summary: Option<Table>,
    /// `summary_by_point.csv`, when present.
    pub by_point: Option<Table>,
    /// `sweep.toml`, when present: `(path, text)` (parsed by `report`, which needs it).
    pub spec: Option<(PathBuf, String)>,
    /// True when every run's grid parameters came from `summary.csv`/`curves.csv`.
    pub params_from_tables: bool,
}

/// What a folder holds.
#[derive(Clone, Debug)]
pub enum Input {
    /// A training run folder.
    Run(Box<Run>),
    /// A range-test folder.
    RangeTest(RangeTest),
    /// A sweep folder.
    Sweep(Sweep),
    /// An `lrlab hf-lr` folder.
    HfLr(HfLrRun),
}

/// What a recognisable folder must hold, for error messages.
pub const EXPECTED: &str = "a run folder (epochs.csv), a range-test folder (lr_find.csv), an hf-lr folder (hf_lr.csv) or a sweep folder (run folders with epochs.csv, or summary.csv/curves.csv)";

/// Recognise and read `dir`.
pub fn load(dir: &Path) -> Result<Input> {
    if !dir.is_dir() {
        let what = if dir.exists() {
            "is not a folder"
        } else {
            "does not exist"
        };
        crate::bail_input!("{}: {what}; expected {EXPECTED}", dir.display());
    }
    if dir.join(crate::run::EPOCHS).is_file() {
        let name = folder_name(dir);
        return Ok(Input::Run(Box::new(Run::load(dir, name)?)));
    }
    if dir.join("lr_find.csv").is_file() {
        return Ok(Input::RangeTest(RangeTest::load(dir)?));
    }
    if let Some(rows) = read_hf_lr(dir)? {
        return Ok(Input::HfLr(HfLrRun { rows }));
    }
    let run_dirs = find_runs(dir)?;
    let tables = ["summary.csv", CURVES[0], CURVES[1]];
    if run_dirs.is_empty() && !tables.iter().any(|t| dir.join(t).is_file()) {
        crate::bail_input!(
            "{}: no epochs.csv, lr_find.csv, hf_lr.csv, summary.csv, curves.csv or run folders with epochs.csv found; expected {EXPECTED}",
            dir.display()
        );
    }
    load_sweep(dir, &run_dirs)
}

/// The last component of a path, for labels.
pub fn folder_name(dir: &Path) -> String {
    let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    abs.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

use crate::run::find_runs;

mod sweep;
pub use sweep::name_col;
use sweep::{load_sweep, CURVES};

fn read_text(path: &Path) -> Result<Option<(PathBuf, String)>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| input_error(format!("{}: cannot read: {e}", path.display())))?;
    Ok(Some((path.to_path_buf(), text)))
}

fn read_json(path: &Path) -> Result<Option<serde_json::Value>> {
    match read_text(path)? {
        None => Ok(None),
        Some((p, text)) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| input_error(format!("{}: invalid JSON: {e}", p.display()))),
    }
}
