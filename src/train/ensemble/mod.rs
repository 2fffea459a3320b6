//! Snapshot ensembles (SGDR, Loshchilov & Hutter 2017, Table 2; Huang et al. 2017): the
//! weights saved at the end of every schedule cycle (`train.snapshots = "restarts"`) are
//! evaluated one by one, and the last M of them together, by the uniform average of their
//! softmax outputs. `lrlab ensemble DIR` writes `DIR/ensemble.csv` per run.
//!
//! Every snapshot is evaluated once (newest first) on the run's own evaluation split, rebuilt
//! from its `config.toml` exactly as training built it; the summed probabilities of the
//! snapshots seen so far give the ensemble of the last M at once. Probabilities are summed
//! in float64 on the device: one `examples x classes` float64 buffer per run.

use super::eval::{Metrics, Sums};
use super::setup::{progress_bar, Setup};
use super::step::Stepper;
use crate::config::RunConfig;
use crate::error::input_error;
use crate::util::{fmt_f64, write_atomic};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{nn::VarStore, Kind, Tensor};

/// File written in each run folder.
pub const ENSEMBLE_CSV: &str = "ensemble.csv";

/// The file `lrlab ensemble` writes in a run folder: `ensemble.csv` for all the snapshots,
/// `ensemble_lastM.csv` with `--last M` (its own file: it never replaces the full table).
pub fn csv_name(last: Option<usize>) -> String {
    match last {
        Some(m) => format!("ensemble_last{m}.csv"),
        None => ENSEMBLE_CSV.to_string(),
    }
}
/// Header of `ensemble.csv`. `steps` lists the members' steps, oldest first, separated by `;`;
/// `epoch` is the epoch of the newest member.
pub const ENSEMBLE_HEADER: &str = "kind,members,steps,epoch,test_loss,test_acc,test_top5";
/// Folder of the snapshots inside a run folder.
pub const SNAPSHOTS_DIR: &str = crate::run::SNAPSHOTS;

/// Options of `lrlab ensemble`.
#[derive(Clone, Debug, Default)]
pub struct EnsembleArgs {
    /// A run folder, or a sweep folder holding run folders.
    pub dir: PathBuf,
    /// Use only the last M snapshots of each run (default: all of them).
    pub last: Option<usize>,
    /// Evaluate on this device instead of the run's `train.device`.
    pub device: Option<crate::config::DeviceSpec>,
    /// Show a progress bar (drawn only when stderr is a terminal).
    pub progress: bool,
}

/// One saved snapshot: `<run>/snapshots/stepXXXXXXXX.safetensors`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Optimizer steps completed when it was saved.
    pub step: u64,
    /// Its file.
    pub path: PathBuf,
}

/// What a row of `ensemble.csv` describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowKind {
    /// One snapshot alone.
    Snapshot,
    /// The uniform softmax average of the last `members` snapshots.
    Ensemble,
}

impl RowKind {
    /// The `kind` column's value.
    pub fn name(self) -> &'static str {
        match self {
            RowKind::Snapshot => "snapshot",
            RowKind::Ensemble => "ensemble",
        }
    }
}

/// One row of `ensemble.csv`.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Single snapshot or ensemble.
    pub kind: RowKind,
    /// Number of snapshots averaged (1 for a single snapshot).
    pub members: usize,
    /// Steps of the members, oldest first.
    pub steps: Vec<u64>,
    /// Epoch of the newest member (`step / steps_per_epoch`).
    pub epoch: f64,
    /// Test loss (for an ensemble: the NLL of the averaged probabilities), accuracy, top-5.
    pub metrics: Metrics,
}

/// The result of one run.
#[derive(Clone, Debug)]
pub struct RunEnsemble {
    /// The run folder.
    pub run: PathBuf,
    /// `"test"` or `"val"`: the split evaluated (the one the run evaluated on).
    pub split: String,
    /// Examples evaluated.
    pub examples: usize,
    /// Single snapshots oldest first, then ensembles for M = 1..K.
    pub rows: Vec<Row>,
    /// The run's last step (`status.json`), if recorded: the newest snapshot is the final
    /// model only when it was saved there.
    pub last_step: Option<u64>,
}

/// The snapshots of a run folder, oldest first (temporary files are ignored).
pub fn list_snapshots(run: &Path) -> Result<Vec<Snapshot>> {
    let dir = run.join(SNAPSHOTS_DIR);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for e in entries {
        let e = e.with_context(|| format!("cannot list {}", dir.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let step = name
            .strip_prefix("step")
            .and_then(|s| s.strip_suffix(".safetensors"))
            .and_then(|s| s.parse::<u64>().ok());
        if let Some(step) = step {
            found.push(Snapshot {
                step,
                path: e.path(),
            });
        }
    }
    found.sort_by_key(|s| s.step);
    Ok(found)
}

/// Copy a snapshot's weights (every VarStore variable, BN statistics included) into `vs`.
pub fn load_snapshot(vs: &VarStore, path: &Path) -> Result<()> {
    let list = Tensor::read_safetensors(path)
        .with_context(|| format!("{}: unreadable snapshot", path.display()))?;
    let tensors: BTreeMap<String, Tensor> = list.into_iter().collect();
    let _guard = tch::no_grad_guard();
    for (name, mut var) in vs.variables() {
        let src = tensors
            .get(&name)
            .with_context(|| format!("{}: no weights for {name}", path.display()))?;
        if src.size() != var.size() {
            anyhow::bail!(
                "{}: weights {name} have shape {:?}, the run's model has {:?}",
                path.display(),
                src.size(),
                var.size()
            );
        }
        var.copy_(src);
    }
    Ok(())
}

/// The run folders of `dir`: itself when it is a run, else the runs below it (at most three
/// levels down, hidden folders skipped), in path order.
pub fn find_runs(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        let what = if dir.exists() {
            "is not a folder"
        } else {
            "does not exist"
        };
        crate::bail_input!(
            "{}: {what}; expected a run folder (written by `lrlab train --out`) or a sweep folder",
            dir.display()
        );
    }
    let found = crate::run::find_runs(dir)?;
    if found.is_empty() {
        crate::bail_input!(
            "{}: not a run folder (epochs.csv, or config.toml with snapshots/) and no run folders inside; pass the folder that `lrlab train --out` or `lrlab sweep` wrote",
            dir.display()
        );
    }
    Ok(found)
}

/// The message for a run without snapshots.
fn no_snapshots(run: &Path) -> String {
    format!(
        "{}: no snapshots in {}/; set `train.snapshots = \"restarts\"` in the run config and use a schedule with restarts (e.g. kind = \"sgdr\"), then train it again: the weights are saved at the end of every cycle",
        run.display(),
        SNAPSHOTS_DIR
    )
}

/// Check `--last` against a run's snapshot count.
fn check_last(run: &Path, last: Option<usize>, snaps: &[Snapshot]) -> Result<usize> {
    let k = snaps.len();
    match last {
        None => Ok(k),
        Some(0) => crate::bail_input!("--last 0: must be >= 1 (the number of snapshots to use)"),
        Some(m) if m > k => {
            let steps: Vec<String> = snaps.iter().map(|s| s.step.to_string()).collect();
            crate::bail_input!(
                "--last {m}: {} has only {k} snapshot(s) (steps {}); use --last 1..{k}",
                run.display(),
                steps.join(", ")
            )
        }
        Some(m) => Ok(m),
    }
}

/// `lrlab ensemble DIR`: evaluate the snapshots of every run in `DIR` that has them, write
/// each run's `ensemble.csv`, and return the results. A run folder without snapshots, or a
/// sweep folder where no run has any, is an input error; in a sweep, runs without snapshots
/// are skipped (listed on stderr).
pub fn ensemble_dir(args: &EnsembleArgs) -> Result<Vec<RunEnsemble>> {
    if args.last == Some(0) {
        crate::bail_input!("--last 0: must be >= 1 (the number of snapshots to use)");
    }
    let runs = find_runs(&args.dir)?;
    // Check every run before the first (possibly long) evaluation.
    let mut todo = Vec::new();
    for run in &runs {
        let snaps = list_snapshots(run)?;
        if snaps.is_empty() {
            if run == &args.dir {
                return Err(input_error(no_snapshots(run)));
            }
            eprintln!("skipped {}: no snapshots", run.display());
            continue;
        }
        let m = check_last(run, args.last, &snaps)?;
        todo.push((run.clone(), snaps[snaps.len() - m..].to_vec()));
    }
    if todo.is_empty() {
        crate::bail_input!(
            "{}: none of its {} run folder(s) has snapshots; set `train.snapshots = \"restarts\"` and use a schedule with restarts (e.g. kind = \"sgdr\")",
            args.dir.display(),
            runs.len()
        );
    }
    let mut results = Vec::new();
    for (run, snaps) in todo {
        let r = ensemble_run(&run, &snaps, args.device, args.progress)?;
        write_csv(&r, args.last)?;
        results.push(r);
    }
    Ok(results)
}

/// A run's model and evaluation split, rebuilt from its `config.toml` as training built them,
/// ready to score snapshots.
struct Scorer {
    setup: Setup,
    vs: VarStore,
    model: crate::models::Model,
    run: PathBuf,
    /// `model.bn_stats` and `model.bn_momentum`: evaluation reads the snapshot's batch-norm
    /// statistics as training's evaluation did (Caffe's bias correction after its steps).
    /// The run's model settings: which batch-norm statistics its evaluation read.
    model_cfg: crate::models::ModelConfig,
}

impl Scorer {
    /// Rebuild the run in `run`; `device` overrides its `train.device`.
    fn open(run: &Path, device: Option<crate::config::DeviceSpec>) -> Result<Scorer> {
        let mut cfg = RunConfig::load(&run.join(crate::run::CONFIG), &[])?;
        if let Some(d) = device {
            cfg.train.device = d;
        }
        let setup = Setup::new(&cfg).with_context(|| format!("{}", run.display()))?;
        // The run's own setup: under bf16 autocast where the run evaluated so.
        let Stepper { vs, model, .. } = Stepper::new(&cfg, &setup, None)?;
        Ok(Scorer {
            setup,
            vs,
            model,
            run: run.to_path_buf(),
            model_cfg: cfg.model.clone(),
        })
    }

    fn batches(&self) -> u64 {
        self.setup.data.eval.batches_per_epoch() as u64
    }

    /// Evaluate `snap` on the whole evaluation split: `on_batch(j, probabilities, labels)` for
    /// every batch `j` (float64 softmax outputs), and the snapshot's own metrics.
    fn score(
        &self,
        snap: &Snapshot,
        bar: Option<&indicatif::ProgressBar>,
        mut on_batch: impl FnMut(usize, Tensor, Tensor) -> Result<()>,
    ) -> Result<Metrics> {
        load_snapshot(&self.vs, &snap.path)?;
        // The statistics training's evaluation read at this step; the next snapshot is
        // loaded over them, so nothing is restored.
        crate::models::eval_bn_stats(&self.vs, &self.model_cfg, snap.step);
        let _guard = tch::no_grad_guard();
        let bf16 = self.setup.bf16;
        let mut single = Sums::default();
        let mut n = 0;
        for (j, batch) in self.setup.data.eval.epoch(0, 0).enumerate() {
            let batch = batch?;
            let logits = tch::autocast(bf16, || self.model.net.forward_t(&batch.images, false))
                .to_kind(Kind::Float);
            single.add_logits(&logits, &batch.labels);
            let probs = logits.to_kind(Kind::Double).softmax(1, Kind::Double);
            on_batch(j, probs, batch.labels)?;
            n += 1;
            if let Some(b) = bar {
                b.inc(1);
            }
        }
        if n == 0 {
            anyhow::bail!("{}: the evaluation split is empty", self.run.display());
        }
        single.metrics()
    }
}

/// A progress bar over `len` evaluation batches (`None` when not shown).
fn batches_bar(progress: bool, len: u64) -> Option<indicatif::ProgressBar> {
    let bar = progress_bar(progress, len, 0);
    if let Some(b) = &bar {
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} batches {msg} [{elapsed_precise} < {eta}]",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
    }
    bar
}

/// Add `probs` into the running sums of batch `j` (the first time: start them), checking that
/// the batch holds the labels the sums were started with.
fn accumulate(
    sums: &mut Vec<Tensor>,
    labels: &mut Vec<Tensor>,
    j: usize,
    probs: Tensor,
    y: Tensor,
    mismatch: impl FnOnce() -> anyhow::Error,
) -> Result<()> {
    if j == sums.len() && j == labels.len() {
        sums.push(probs);
        labels.push(y);
        return Ok(());
    }
    let same = labels
        .get(j)
        .is_some_and(|l| l.size() == y.size() && l.equal(&y));
    if !same || j >= sums.len() {
        return Err(mismatch());
    }
    sums[j] += probs;
    Ok(())
}

/// Metrics of the averaged probabilities `sums / count`.
fn averaged(sums: &[Tensor], labels: &[Tensor], count: f64) -> Result<Metrics> {
    let mut ens = Sums::default();
    for (s, y) in sums.iter().zip(labels) {
        ens.add_probs(&(s / count), y);
    }
    ens.metrics()
}

/// Evaluate `snaps` (oldest first) of the run in `run` one by one and as ensembles of the
/// last M = 1..K; `device` overrides the run's `train.device`.
pub fn ensemble_run(
    run: &Path,
    snaps: &[Snapshot],
    device: Option<crate::config::DeviceSpec>,
    progress: bool,
) -> Result<RunEnsemble> {
    if snaps.is_empty() {
        return Err(input_error(no_snapshots(run)));
    }
    let scorer = Scorer::open(run, device)?;
    let k = snaps.len();
    let bar = batches_bar(progress, scorer.batches() * k as u64);
    let mut labels: Vec<Tensor> = Vec::new();
    let mut sums: Vec<Tensor> = Vec::new();
    let mut singles: Vec<Metrics> = Vec::with_capacity(k);
    let mut ensembles: Vec<Metrics> = Vec::with_capacity(k);
    for (i, snap) in snaps.iter().rev().enumerate() {
        if let Some(b) = &bar {
            b.set_message(format!("snapshot {}/{k} (step {})", i + 1, snap.step));
        }
        let single = scorer.score(snap, bar.as_ref(), |j, probs, y| {
            accumulate(&mut sums, &mut labels, j, probs, y, || {
                anyhow::anyhow!(
                    "{}: the evaluation batches came in a different order for step {}",
                    run.display(),
                    snap.step
                )
            })
        })?;
        singles.push(single);
        ensembles.push(averaged(&sums, &labels, (i + 1) as f64)?);
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let setup = &scorer.setup;
    let loader = &setup.data.eval;

    let spe = setup.steps_per_epoch as f64;
    let mut rows = Vec::with_capacity(2 * k);
    for (snap, m) in snaps.iter().zip(singles.iter().rev()) {
        rows.push(Row {
            kind: RowKind::Snapshot,
            members: 1,
            steps: vec![snap.step],
            epoch: snap.step as f64 / spe,
            metrics: *m,
        });
    }
    let newest = snaps[k - 1].step;
    for (i, m) in ensembles.iter().enumerate() {
        rows.push(Row {
            kind: RowKind::Ensemble,
            members: i + 1,
            steps: snaps[k - 1 - i..].iter().map(|s| s.step).collect(),
            epoch: newest as f64 / spe,
            metrics: *m,
        });
    }
    Ok(RunEnsemble {
        run: run.to_path_buf(),
        split: setup.data.eval_name.to_string(),
        examples: loader.len(),
        rows,
        last_step: crate::run::Status::read(run).map(|s| s.step),
    })
}

/// The text of `ensemble.csv` for a run.
pub fn csv_text(r: &RunEnsemble) -> String {
    let mut text = format!("{ENSEMBLE_HEADER}\n");
    for row in &r.rows {
        let steps: Vec<String> = row.steps.iter().map(|s| s.to_string()).collect();
        text.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            row.kind.name(),
            row.members,
            steps.join(";"),
            fmt_f64(row.epoch),
            fmt_f64(row.metrics.loss),
            fmt_f64(row.metrics.acc),
            fmt_f64(row.metrics.top5),
        ));
    }
    text
}

/// Write `<run>/ensemble.csv` (or, with `--last M`, `ensemble_lastM.csv`) atomically; returns its path.
pub fn write_csv(r: &RunEnsemble, last: Option<usize>) -> Result<PathBuf> {
    let path = r.run.join(csv_name(last));
    write_atomic(&path, csv_text(r).as_bytes())?;
    Ok(path)
}

/// A readable table in the paper's terms: N=1 run, M = the last M snapshots averaged; M=1 is
/// the final single model.
pub fn table(r: &RunEnsemble) -> String {
    let mut s = format!(
        "{}: {} snapshot(s), {} split ({} examples)\n",
        r.run.display(),
        r.rows
            .iter()
            .filter(|x| x.kind == RowKind::Snapshot)
            .count(),
        r.split,
        r.examples
    );
    let line = |label: String, row: &Row| {
        format!(
            "  {label:<28} {:>7.2} {:>9.4} {:>9.4} {:>10.4}\n",
            100.0 * (1.0 - row.metrics.acc),
            row.metrics.acc,
            row.metrics.top5,
            row.metrics.loss
        )
    };
    s.push_str(&format!(
        "  {:<28} {:>7} {:>9} {:>9} {:>10}\n",
        "single snapshots", "error%", "acc", "top5", "loss"
    ));
    for row in r.rows.iter().filter(|x| x.kind == RowKind::Snapshot) {
        let label = format!("step {} (epoch {})", row.steps[0], trim(row.epoch));
        s.push_str(&line(label, row));
    }
    s.push_str("  ensembles of the last M (uniform softmax average)\n");
    for row in r.rows.iter().filter(|x| x.kind == RowKind::Ensemble) {
        let note = match (row.members, row.steps.first(), row.steps.last()) {
            // Only a snapshot saved at the run's last step is its final model (a run that
            // ended mid-cycle, trained before final snapshots were saved, has none).
            (1, Some(&s), _) if r.last_step.is_none_or(|l| l == s) => " (final model)".into(),
            (1, Some(&s), _) => format!(
                " (step {s}; not the final model: the run ended at step {})",
                r.last_step.unwrap_or(s)
            ),
            (_, Some(a), Some(b)) => format!(" (steps {a}..{b})"),
            _ => String::new(),
        };
        let label = format!("N=1, M={}{note}", row.members);
        s.push_str(&line(label, row));
    }
    s
}

/// An epoch number without trailing zeros (`3`, `2.5`).
fn trim(x: f64) -> String {
    let t = format!("{x:.3}");
    t.trim_end_matches('0').trim_end_matches('.').to_string()
}

mod seeds;
pub use seeds::*;
