//! Ensembles across seeds (`lrlab ensemble --across-seeds`): the runs of one sweep point that
//! differ only in their seed, N runs × the last M snapshots of each averaged together, as
//! SGDR's Table 2 compares them with single runs.

use super::*;

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
        let scorer = Scorer::open(run, args.device)?;
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
