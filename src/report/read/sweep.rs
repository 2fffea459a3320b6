//! A sweep folder as the report reads it: its run folders, or the sweep's own tables
//! (`summary.csv`, `curves.csv`) when the runs are not there.

use super::*;

/// A sweep folder's runs and tables.
pub(super) fn load_sweep(dir: &Path, run_dirs: &[PathBuf]) -> Result<Input> {
    let read_opt = |name: &str| -> Result<Option<Table>> {
        let p = dir.join(name);
        if p.is_file() {
            Table::read(&p).map(Some)
        } else {
            Ok(None)
        }
    };
    let summary = read_opt("summary.csv")?;
    let curves = match read_opt(CURVES[0])? {
        Some(t) => Some(t),
        None => read_opt(CURVES[1])?,
    };
    let by_point = read_opt("summary_by_point.csv")?;
    let spec = read_text(&dir.join("sweep.toml"))?;
    let summary_params = summary.as_ref().map(|t| table_params(t, false));
    let curves_params = curves.as_ref().map(|t| table_params(t, true));

    let mut runs = Vec::new();
    for d in run_dirs {
        let rel = d.strip_prefix(dir).unwrap_or(d);
        let name = rel.to_string_lossy().into_owned();
        runs.push(Run::load(d, name)?);
    }
    if runs.is_empty() {
        if let Some(t) = &curves {
            runs = runs_from_curves(t)?;
        } else if let Some(t) = &summary {
            // Only the table: runs without curves, so that the report can still list them.
            let name = name_col(t);
            runs = t
                .rows
                .iter()
                .map(|row| Run {
                    name: row[name].clone(),
                    ..Run::default()
                })
                .collect();
        }
    }
    let mut all_matched = !runs.is_empty();
    for run in &mut runs {
        let keys = run_keys(run);
        let mut matched = false;
        for (table, params) in [(&summary, &summary_params), (&curves, &curves_params)] {
            let (Some(t), Some(params)) = (table, params) else {
                continue;
            };
            let cols = name_cols(t);
            let hit = |row: &Vec<String>| cols.iter().any(|&c| keys.contains(&row[c]));
            if let Some(r) = t.rows.iter().position(hit) {
                if run.params.is_empty() {
                    run.params = params
                        .iter()
                        .map(|&c| (t.header[c].clone(), t.rows[r][c].clone()))
                        .collect();
                }
                if run.status.is_none() {
                    run.status = t.col("status").map(|c| t.rows[r][c].clone());
                }
                matched = true;
            }
        }
        all_matched &= matched;
    }
    Ok(Input::Sweep(Sweep {
        dir: dir.to_path_buf(),
        runs,
        summary,
        by_point,
        spec,
        params_from_tables: all_matched,
    }))
}

/// The names a run may go by in the sweep's tables: its relative path, its folder name,
/// and the `name`/`run`/`run_id`/`id` of its `meta.json`.
fn run_keys(run: &Run) -> Vec<String> {
    let mut keys = vec![run.name.clone()];
    if let Some(last) = Path::new(&run.name).file_name() {
        let last = last.to_string_lossy().into_owned();
        // `0003-a1b2c3` may be listed by its id alone.
        if let Some((idx, id)) = last.split_once(['-', '_']) {
            if !idx.is_empty() && idx.chars().all(|c| c.is_ascii_digit()) {
                keys.push(id.to_string());
            }
        }
        keys.push(last);
    }
    if let Some(meta) = &run.meta {
        for k in ["name", "run", "run_id", "id"] {
            if let Some(v) = meta.other.get(k).and_then(|v| v.as_str()) {
                keys.push(v.to_string());
            }
        }
    }
    keys
}

/// The sweep's long-format curves file, under the names it may have.
pub(super) const CURVES: [&str; 2] = ["curves.csv", "curves_long.csv"];

/// Column names that name a run in the sweep's tables.
const NAME_COLUMNS: [&str; 7] = ["run", "run_id", "name", "run_name", "id", "dir", "path"];

/// The columns naming the run (the first column when none has a known name).
fn name_cols(t: &Table) -> Vec<usize> {
    let cols: Vec<usize> = NAME_COLUMNS.iter().filter_map(|n| t.col(n)).collect();
    if cols.is_empty() {
        vec![0]
    } else {
        cols
    }
}

/// The column a run is called by: the first of `run`, `run_id`, `name`, `run_name`, `id`,
/// `dir`, `path`, else the first column.
pub fn name_col(t: &Table) -> usize {
    name_cols(t)[0]
}

/// The grid-parameter columns of a sweep table: those after the run-name columns and before
/// `epoch` (curves) or before `status` / the first result column (summary).
fn table_params(t: &Table, curves: bool) -> Vec<usize> {
    let start = name_cols(t).into_iter().max().unwrap_or(0) + 1;
    let is_end = |h: &str| {
        if curves {
            h == "epoch"
        } else {
            h == "status"
                || ["final", "best", "epochs", "wall", "test_", "train_", "time"]
                    .iter()
                    .any(|p| h.starts_with(p))
        }
    };
    (start..t.header.len())
        .take_while(|&c| !is_end(&t.header[c]))
        .collect()
}

/// Runs from a long-format `curves.csv` (one row per run and epoch), in order of first
/// appearance.
fn runs_from_curves(t: &Table) -> Result<Vec<Run>> {
    let col = name_col(t);
    let mut order: Vec<String> = Vec::new();
    let mut rows: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (r, row) in t.rows.iter().enumerate() {
        let name = row[col].clone();
        if !rows.contains_key(&name) {
            order.push(name.clone());
        }
        rows.entry(name).or_default().push(r);
    }
    order
        .into_iter()
        .map(|name| {
            let rs = &rows[&name];
            Ok(Run {
                epochs: epoch_rows(t, rs)?,
                name,
                ..Run::default()
            })
        })
        .collect()
}
