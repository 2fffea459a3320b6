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
    pub device: Option<String>,
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
    if let Some(d) = &args.device {
        crate::config::parse_device(d).map_err(|_| {
            input_error(format!(
                "--device {d:?}: expected \"auto\", \"cpu\", \"cuda\" or \"cuda:N\""
            ))
        })?;
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
        let r = ensemble_run(&run, &snaps, args.device.as_deref(), args.progress)?;
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
    bn: (crate::models::BnStats, f64),
}

impl Scorer {
    /// Rebuild the run in `run`; `device` overrides its `train.device`.
    fn open(run: &Path, device: Option<&str>) -> Result<Scorer> {
        let mut overrides = Vec::new();
        if let Some(d) = device {
            overrides.push(format!("train.device={d:?}"));
        }
        let cfg = RunConfig::load(&run.join(crate::run::CONFIG), &overrides)?;
        let setup = Setup::new(&cfg).with_context(|| format!("{}", run.display()))?;
        // The run's own setup: under bf16 autocast where the run evaluated so.
        let Stepper { vs, model, .. } = Stepper::new(&cfg, &setup, None)?;
        Ok(Scorer {
            setup,
            vs,
            model,
            run: run.to_path_buf(),
            bn: (cfg.model.bn_stats, cfg.model.bn_momentum),
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
        if self.bn.0 == crate::models::BnStats::Caffe {
            // The next snapshot is loaded over these values: nothing to restore.
            crate::models::caffe_bn_stats(&self.vs, self.bn.1, snap.step);
        }
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
    device: Option<&str>,
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

/// File written in the folder given to `lrlab ensemble --across-seeds`.
pub const ACROSS_SEEDS_CSV: &str = "ensemble_across_seeds.csv";
/// Header of `ensemble_across_seeds.csv`: one row per (point, N runs, M snapshots per run);
/// `seeds` lists the runs that went in (`;` within a group, `|` between groups), `members` =
/// N·M, `groups` how many ensembles the metrics summarise: for N = 1 every run (their median,
/// as SGDR's Table 2), for N > 1 the disjoint groups of N consecutive seeds (their mean).
pub const ACROSS_SEEDS_HEADER: &str =
    "point,seeds,runs,snapshots_per_run,members,groups,test_loss,test_acc,test_top5";

/// The uniform softmax average of `runs` runs × the last `per_run` snapshots of each,
/// summarised over `groups` such ensembles.
#[derive(Clone, Debug, PartialEq)]
pub struct SeedRow {
    /// N: runs per ensemble.
    pub runs: usize,
    /// M: the last M snapshots of each run.
    pub per_run: usize,
    /// The ensembles summarised: N = 1, one per run (median); N > 1, the disjoint groups of N
    /// consecutive runs in seed order (mean; runs left over are not used).
    pub groups: usize,
    /// Test loss (NLL of the averaged probabilities), accuracy, top-5: the median (N = 1) or
    /// the mean (N > 1) over the groups, each metric on its own.
    pub metrics: Metrics,
}

/// Median (N = 1) or mean (N > 1) of each metric over the groups' ensembles.
fn summarise(n: usize, ms: &[Metrics]) -> Metrics {
    let of = |f: fn(&Metrics) -> f64| -> f64 {
        let xs: Vec<f64> = ms.iter().map(f).collect();
        if n == 1 {
            crate::util::median(xs).unwrap_or(f64::NAN)
        } else {
            xs.iter().sum::<f64>() / xs.len() as f64
        }
    };
    Metrics {
        loss: of(|m| m.loss),
        acc: of(|m| m.acc),
        top5: of(|m| m.top5),
    }
}

/// The seeds of the ensembles of a row: every run for N = 1, else the complete groups of N.
pub fn row_seeds(seeds: &[u64], r: &SeedRow) -> String {
    let join = |s: &[u64]| -> String { s.iter().map(u64::to_string).collect::<Vec<_>>().join(";") };
    if r.runs == 1 {
        return join(seeds);
    }
    seeds[..r.groups * r.runs]
        .chunks(r.runs)
        .map(join)
        .collect::<Vec<_>>()
        .join("|")
}

/// The ensembles of one grid point: runs whose configs differ only in `train.seed`.
#[derive(Clone, Debug)]
pub struct PointEnsemble {
    /// The runs' folder name without its `seed=` part (the grid point's label).
    pub point: String,
    /// The runs, in seed order.
    pub runs: Vec<PathBuf>,
    /// Their seeds.
    pub seeds: Vec<u64>,
    /// `"test"` or `"val"`.
    pub split: String,
    /// Examples evaluated.
    pub examples: usize,
    /// Rows for N = 1..R and M = 1..K (N outer).
    pub rows: Vec<SeedRow>,
}

/// One run of a grid point: its seed, folder and snapshots.
struct SeedRun {
    seed: u64,
    run: PathBuf,
    snaps: Vec<Snapshot>,
}

/// A run's resolved config without its seed (what makes runs one grid point) and the seed.
fn config_without_seed(run: &Path) -> Result<(toml::Table, u64)> {
    let path = run.join(crate::run::CONFIG);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| input_error(format!("{}: cannot read it: {e}", path.display())))?;
    let mut table: toml::Table = text
        .parse()
        .map_err(|e| input_error(format!("{}: invalid TOML: {e}", path.display())))?;
    let seed = table
        .get_mut("train")
        .and_then(|t| t.as_table_mut())
        .and_then(|t| t.remove("seed"))
        .and_then(|v| v.as_integer())
        .unwrap_or(0);
    Ok((table, seed.max(0) as u64))
}

/// A run folder's name without its `seed=N` part.
fn point_label(run: &Path) -> String {
    let name = run
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let kept: Vec<&str> = name
        .split(',')
        .filter(|p| !p.starts_with("seed=") && !p.starts_with("train.seed="))
        .collect();
    if kept.is_empty() {
        "all".to_string()
    } else {
        kept.join(",")
    }
}

/// `lrlab ensemble DIR --across-seeds`: group the runs of `DIR` by grid point (configs equal
/// but for `train.seed`), and for every point average the softmax outputs of the first N runs
/// (in seed order) × the last M snapshots of each, for every N and M (SGDR's Table 2). Writes
/// `DIR/ensemble_across_seeds.csv`.
pub fn ensemble_across_seeds(args: &EnsembleArgs) -> Result<Vec<PointEnsemble>> {
    if args.last == Some(0) {
        crate::bail_input!("--last 0: must be >= 1 (the number of snapshots per run)");
    }
    let runs = find_runs(&args.dir)?;
    if runs.len() == 1 && runs[0] == args.dir {
        crate::bail_input!(
            "{}: --across-seeds needs a folder of runs (a sweep with several seeds), not one run",
            args.dir.display()
        );
    }
    // Group by config without the seed, keeping the first-seen order of points.
    let mut groups: Vec<(toml::Table, Vec<SeedRun>)> = Vec::new();
    for run in runs {
        let snaps = list_snapshots(&run)?;
        if snaps.is_empty() {
            eprintln!("skipped {}: no snapshots", run.display());
            continue;
        }
        let (key, seed) = config_without_seed(&run)?;
        let member = SeedRun { seed, run, snaps };
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(member),
            None => groups.push((key, vec![member])),
        }
    }
    if groups.is_empty() {
        crate::bail_input!(
            "{}: no run has snapshots; set `train.snapshots = \"restarts\"` and use a schedule with restarts (e.g. kind = \"sgdr\")",
            args.dir.display()
        );
    }
    // Check every point before the first evaluation.
    let mut todo = Vec::new();
    for (key, mut members) in groups {
        if members.len() > 1 {
            check_one_eval_set(&key, &members[0].run)?;
        }
        members.sort_by(|a, b| (a.seed, &a.run).cmp(&(b.seed, &b.run)));
        let fewest = members
            .iter()
            .min_by_key(|m| m.snaps.len())
            .expect("a group has a run");
        check_last(&fewest.run, args.last, &fewest.snaps)?;
        todo.push(members);
    }
    let mut results = Vec::new();
    for members in todo {
        results.push(point_ensemble(&members, args)?);
    }
    // The point's label holds commas: the csv crate quotes it.
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(ACROSS_SEEDS_HEADER.split(','))?;
    for p in &results {
        for r in &p.rows {
            w.write_record([
                p.point.clone(),
                row_seeds(&p.seeds, r),
                r.runs.to_string(),
                r.per_run.to_string(),
                (r.runs * r.per_run).to_string(),
                r.groups.to_string(),
                fmt_f64(r.metrics.loss),
                fmt_f64(r.metrics.acc),
                fmt_f64(r.metrics.top5),
            ])?;
        }
    }
    let text = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    write_atomic(&args.dir.join(ACROSS_SEEDS_CSV), &text)?;
    Ok(results)
}

/// Evaluate one point: for each run in seed order its last K snapshots, newest first. Each
/// run's ensembles of M = 1..K give the N = 1 rows (the median over runs); for every N > 1
/// the sums of the group in progress (N consecutive runs) give one ensemble per complete
/// group, and the row is their mean. Only the open groups' sums are kept.
fn point_ensemble(members: &[SeedRun], args: &EnsembleArgs) -> Result<PointEnsemble> {
    let k = members
        .iter()
        .map(|m| m.snaps.len())
        .min()
        .expect("a point has a run");
    let k = args.last.unwrap_or(k);
    let point = point_label(&members[0].run);
    let runs = members.len();
    // open[n - 2][m][j]: over the runs of the open group of n, the sum of the last m + 1
    // snapshots' probabilities of batch j; labels[j] from the first run, which every run must
    // match. done[n - 1][m]: the metrics of each complete group of n (n = 1: each run).
    let mut open: Vec<Vec<Vec<Tensor>>> = (2..=runs)
        .map(|_| (0..k).map(|_| Vec::new()).collect())
        .collect();
    let mut done: Vec<Vec<Vec<Metrics>>> = (1..=runs)
        .map(|_| (0..k).map(|_| Vec::new()).collect())
        .collect();
    let mut labels: Vec<Tensor> = Vec::new();
    let (mut split, mut examples) = (String::new(), 0);
    for (r, SeedRun { seed, run, snaps }) in members.iter().enumerate() {
        let scorer = Scorer::open(run, args.device.as_deref())?;
        let bar = batches_bar(args.progress, scorer.batches() * k as u64);
        let mut running: Vec<Tensor> = Vec::new();
        let mut run_labels: Vec<Tensor> = Vec::new();
        for (i, snap) in snaps[snaps.len() - k..].iter().rev().enumerate() {
            if let Some(b) = &bar {
                b.set_message(format!(
                    "{point}: seed {seed} ({}/{}), snapshot {}/{k}",
                    r + 1,
                    members.len(),
                    i + 1
                ));
            }
            scorer.score(snap, bar.as_ref(), |j, probs, y| {
                accumulate(&mut running, &mut run_labels, j, probs, y, || {
                    anyhow::anyhow!(
                        "{}: the evaluation batches came in a different order for step {}",
                        run.display(),
                        snap.step
                    )
                })
            })?;
            if i == 0 {
                check_same_examples(&mut labels, &run_labels, run, &members[0].run)?;
            }
            // This run alone with its last i + 1 snapshots; then into every open group.
            done[0][i].push(averaged(&running, &labels, (i + 1) as f64)?);
            for (g, groups) in open.iter_mut().enumerate() {
                let n = g + 2;
                if (r / n + 1) * n > runs {
                    continue; // the runs left over after the last complete group of n
                }
                let total = &mut groups[i];
                if total.is_empty() {
                    total.extend(running.iter().map(Tensor::copy));
                } else {
                    for (t, s) in total.iter_mut().zip(&running) {
                        *t += s;
                    }
                }
                if (r + 1) % n == 0 {
                    done[n - 1][i].push(averaged(total, &labels, (n * (i + 1)) as f64)?);
                    total.clear();
                }
            }
        }
        if let Some(b) = &bar {
            b.finish_and_clear();
        }
        split = scorer.setup.data.eval_name.to_string();
        examples = scorer.setup.data.eval.len();
    }
    let mut rows = Vec::new();
    for (g, per_m) in done.iter().enumerate() {
        for (m, ms) in per_m.iter().enumerate() {
            rows.push(SeedRow {
                runs: g + 1,
                per_run: m + 1,
                groups: ms.len(),
                metrics: summarise(g + 1, ms),
            });
        }
    }
    Ok(PointEnsemble {
        point,
        runs: members.iter().map(|m| m.run.clone()).collect(),
        seeds: members.iter().map(|m| m.seed).collect(),
        split,
        examples,
        rows,
    })
}

/// Runs of one point evaluate the same examples only when the evaluation split does not depend
/// on the seed: refuse synthetic data (drawn from the seed) and a validation split (drawn per
/// seed) before any evaluation.
fn check_one_eval_set(config: &toml::Table, run: &Path) -> Result<()> {
    let data = config.get("data").and_then(|d| d.as_table());
    let get = |k: &str| data.and_then(|d| d.get(k));
    let why = if get("dataset").and_then(|v| v.as_str()) == Some("synthetic") {
        "data.dataset = \"synthetic\" draws its test images from the seed"
    } else if get("val_split").and_then(|v| v.as_integer()).unwrap_or(0) > 0 {
        "data.val_split > 0 draws the validation split from the seed"
    } else {
        return Ok(());
    };
    crate::bail_input!(
        "{}: {why}, so the runs of this point evaluate different examples: ensembles across \
         seeds need one evaluation set, a dataset's test set with data.val_split = 0",
        run.display()
    )
}

/// The first run's evaluation labels start `labels`; every later run must have the same.
fn check_same_examples(
    labels: &mut Vec<Tensor>,
    run_labels: &[Tensor],
    run: &Path,
    first: &Path,
) -> Result<()> {
    if labels.is_empty() {
        labels.extend(run_labels.iter().map(Tensor::shallow_clone));
        return Ok(());
    }
    let same = labels.len() == run_labels.len()
        && labels
            .iter()
            .zip(run_labels)
            .all(|(a, b)| a.size() == b.size() && a.equal(b));
    if !same {
        crate::bail_input!(
            "{}: its evaluation examples differ from those of {} (a validation split, or \
             synthetic data, is drawn per seed): ensembles across seeds need one evaluation \
             set, a dataset's test set with data.val_split = 0",
            run.display(),
            first.display()
        );
    }
    Ok(())
}

/// SGDR Table 2's layout: test error (%) for N runs (rows) × the last M snapshots per run.
pub fn seeds_table(p: &PointEnsemble) -> String {
    let k = p.rows.iter().map(|r| r.per_run).max().unwrap_or(0);
    let seeds: Vec<String> = p.seeds.iter().map(|s| s.to_string()).collect();
    let mut s = format!(
        "{}: {} run(s) (seeds {}), {} split ({} examples)\n  test error % of the softmax \
         average of N runs x their last M snapshots: N = 1 the median over the runs, N > 1 \
         the mean over disjoint groups of N seeds (groups)\n  {:<6}",
        p.point,
        p.runs.len(),
        seeds.join(", "),
        p.split,
        p.examples,
        ""
    );
    for m in 1..=k {
        s.push_str(&format!(" {:>7}", format!("M={m}")));
    }
    s.push('\n');
    for n in 1..=p.runs.len() {
        s.push_str(&format!("  {:<6}", format!("N={n}")));
        let row: Vec<&SeedRow> = p.rows.iter().filter(|r| r.runs == n).collect();
        for r in &row {
            s.push_str(&format!(" {:>7.2}", 100.0 * (1.0 - r.metrics.acc)));
        }
        let groups = row.first().map_or(0, |r| r.groups);
        s.push_str(&match (n, groups) {
            (1, g) => format!("  (median of {g})"),
            (_, 1) => "  (one group: a single draw)".to_string(),
            (_, g) => format!("  (mean of {g} groups)"),
        });
        s.push('\n');
    }
    s
}
