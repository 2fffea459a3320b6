//! Figures and reports drawn from the run folders' CSVs.
//!
//! - [`plot_dir`] (`lrlab plot DIR`): recognise DIR as a run, a sweep, a range-test or an
//!   hf-lr folder
//!   ([`read`]) and write its figures ([`figures`]) as SVG and PNG into `DIR/figures/`.
//! - [`report_dir`] (`lrlab report DIR`): the same figures plus `DIR/report.md`
//!   ([`markdown`]), with the papers' numbers from the `[report]` table of the sweep's
//!   `sweep.toml` beside the reproduced ones ([`paper`]).
//!
//! Everything is read and drawn in memory first; files are written (atomically) only when
//! all of it succeeded, so bad input leaves nothing behind.

pub mod chart;
pub mod figures;
pub mod font;
pub mod group;
pub mod markdown;
pub mod paper;
pub mod plot;
pub mod read;
pub mod table;

use anyhow::Result;
pub use figures::FigureOptions;
pub use group::BandKind;
use read::Input;
use std::path::{Path, PathBuf};

/// Rendered figures: `(file name, bytes)` plus `(stem, caption)` for the report.
struct Rendered {
    files: Vec<(String, Vec<u8>)>,
    refs: Vec<markdown::FigureRef>,
}

fn add(r: &mut Rendered, fig: Option<chart::Figure>, stem: &str, caption: &str) -> Result<()> {
    if let Some(fig) = fig {
        r.files.extend(chart::render_both(&fig, stem)?);
        r.refs.push((stem.to_string(), caption.to_string()));
    }
    Ok(())
}

/// The Hessian-free estimates' figure, when there are rows.
fn add_hf_lr(r: &mut Rendered, name: &str, rows: &[read::HfRow]) -> Result<()> {
    let title = format!("{name}: Hessian-free estimates of the optimal learning rate");
    add(
        r,
        figures::hf_lr(&title, rows),
        "hf_lr",
        "Hessian-free estimates of the optimal learning rate beside the learning rate in use, against the iteration (log scale)",
    )
}

/// Grid points of a sweep (one point per run folder for a lone run).
fn sweep_points(sw: &read::Sweep, name: &str) -> Vec<group::Point> {
    group::points(&sw.runs, name, sw.params_from_tables)
}

fn render(input: &Input, name: &str, opts: FigureOptions) -> Result<Rendered> {
    let mut r = Rendered {
        files: Vec::new(),
        refs: Vec::new(),
    };
    match input {
        Input::Run(run) => {
            let runs = std::slice::from_ref(run.as_ref());
            let points = vec![group::Point {
                label: run.name.clone(),
                params: Vec::new(),
                runs: vec![0],
            }];
            let title = format!("{name}: error and loss against epoch");
            add(
                &mut r,
                figures::curves(&title, &points, runs, opts),
                "curves",
                "Error and loss against epoch",
            )?;
            let sched = vec![(run.name.clone(), run.schedule()?)];
            let title = format!("{name}: learning rate and momentum");
            add(
                &mut r,
                figures::schedule(&title, &sched),
                "schedule",
                "Learning rate and momentum against epoch",
            )?;
            add_hf_lr(&mut r, name, &run.hf_lr)?;
        }
        Input::HfLr(hf) => add_hf_lr(&mut r, name, &hf.rows)?,
        Input::RangeTest(rt) => {
            let title = format!("LR range test {name}: loss against learning rate");
            let fig = figures::range_test(&title, rt, opts.log_y);
            add(
                &mut r,
                Some(fig),
                "lr_find",
                "Range test: loss against learning rate, suggestions marked",
            )?;
        }
        Input::Sweep(sw) => {
            let points = sweep_points(sw, name);
            let title = format!("{name}: test error and training loss");
            add(
                &mut r,
                figures::curves(&title, &points, &sw.runs, opts),
                "curves",
                "Test error and training loss against epoch, one line per grid point",
            )?;
            // One schedule per point: the seeds share it.
            let mut sched = Vec::new();
            for p in &points {
                let mut rows = Vec::new();
                for &i in &p.runs {
                    rows = sw.runs[i].schedule()?;
                    if !rows.is_empty() {
                        break;
                    }
                }
                sched.push((p.label.clone(), rows));
            }
            let title = format!("{name}: learning rate and momentum");
            add(
                &mut r,
                figures::schedule(&title, &sched),
                "schedule",
                "Learning rate and momentum against epoch, one line per grid point",
            )?;
        }
    }
    Ok(r)
}

/// `lrlab plot DIR`: write the figures of `dir` (SVG and PNG) into `out` (default
/// `DIR/figures`); returns the paths written.
pub fn plot_dir(dir: &Path, out: Option<&Path>, opts: FigureOptions) -> Result<Vec<PathBuf>> {
    let input = read::load(dir)?;
    let name = read::folder_name(dir);
    let r = render(&input, &name, opts)?;
    if r.files.is_empty() {
        crate::bail_input!(
            "{}: nothing to draw yet (no epoch rows and no steps); expected {}",
            dir.display(),
            read::EXPECTED
        );
    }
    let out = out.map_or_else(|| dir.join("figures"), Path::to_path_buf);
    chart::write_all(&out, &r.files)
}

/// `lrlab report DIR`: write the figures into `DIR/figures` and `DIR/report.md`; returns
/// the paths written (the report last).
pub fn report_dir(dir: &Path, opts: FigureOptions) -> Result<Vec<PathBuf>> {
    let input = read::load(dir)?;
    let name = read::folder_name(dir);
    // The spec is checked before anything is drawn or written.
    let mut spec = match &input {
        Input::Sweep(sw) => match &sw.spec {
            Some((path, text)) => paper::parse_text(path, text)?,
            None => paper::ReportSpec::default(),
        },
        _ => paper::ReportSpec::default(),
    };
    // Without a [report] title, a sweep's report is titled with the spec's `name`.
    if let (None, Input::Sweep(sw)) = (&spec.title, &input) {
        spec.title = sw
            .spec
            .as_ref()
            .and_then(|(_, text)| text.parse::<toml::Table>().ok())
            .and_then(|t| t.get("name").and_then(|n| n.as_str()).map(String::from));
    }
    let r = render(&input, &name, opts)?;
    let text = match &input {
        Input::Run(run) => markdown::run_report(run, &r.refs),
        Input::RangeTest(rt) => markdown::range_report(rt, &name, &r.refs),
        Input::HfLr(hf) => markdown::hf_report(hf, &name, &r.refs),
        Input::Sweep(sw) => {
            let points = sweep_points(sw, &name);
            markdown::sweep_report(sw, &name, &points, &spec, &r.refs)
        }
    };
    let mut written = if r.files.is_empty() {
        Vec::new()
    } else {
        chart::write_all(&dir.join("figures"), &r.files)?
    };
    let path = dir.join("report.md");
    crate::util::write_atomic(&path, text.as_bytes())?;
    written.push(path);
    Ok(written)
}
