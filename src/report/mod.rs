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
pub mod claims;
pub mod figures;
pub mod font;
pub mod group;
pub mod markdown;
pub mod paper;
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

/// The `[report]` table of a sweep's `sweep.toml` (checked: bad values are input errors), or
/// an empty one for another folder or a sweep without a spec.
fn report_spec(input: &Input) -> Result<paper::ReportSpec> {
    match input {
        Input::Sweep(sw) => match &sw.spec {
            Some((path, text)) => paper::parse_text(path, text),
            None => Ok(paper::ReportSpec::default()),
        },
        _ => Ok(paper::ReportSpec::default()),
    }
}

fn render(
    input: &Input,
    name: &str,
    spec: &paper::ReportSpec,
    opts: FigureOptions,
) -> Result<Rendered> {
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
            let mut fig = figures::curves(&title, &points, &sw.runs, opts);
            let mut caption =
                "Test error and training loss against epoch, one line per grid point".to_string();
            if let (Some(f), Some((label, acc))) =
                (fig.as_mut(), claims::reference_acc(spec, &points, &sw.runs))
            {
                figures::mark_reference(f, &points, &sw.runs, acc);
                caption.push_str(&format!(
                    "; the dashed grey line is {label}'s final test error, and a dashed vertical \
                     line marks the first epoch at which each point reaches it"
                ));
            }
            add(&mut r, fig, "curves", &caption)?;
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
            // The range tests that chose a point's "auto" values: each seed runs its own, and
            // all of them are drawn (one seed: every rule marked; several: each seed's curve
            // and choice, to show how much the choice moves between seeds).
            for p in &points {
                let mut tests = Vec::new();
                for &i in &p.runs {
                    let run = &sw.runs[i];
                    let Some(dir) = run
                        .dir
                        .as_ref()
                        .map(|d| d.join(crate::lr_find::RUN_RANGE_TEST))
                    else {
                        continue;
                    };
                    if dir.join("lr_find.csv").is_file() {
                        let seed = seed_of(run).unwrap_or_else(|| run.name.clone());
                        tests.push((format!("seed {seed}"), read::RangeTest::load(&dir)?));
                    }
                }
                let title = format!("{name}: range test of {}", p.label);
                let caption = match tests.as_slice() {
                    [] => continue,
                    [(seed, rt)] => format!(
                        "Range test of {} ({seed}): loss against learning rate, every rule's \
                         suggestion marked; the chosen one (rule {}) solid",
                        p.label,
                        rt.chosen_rule.as_deref().unwrap_or("none")
                    ),
                    many => format!(
                        "Range tests of {}, one per seed ({}): smoothed loss against learning \
                         rate, each seed's chosen value marked in its colour",
                        p.label,
                        many.len()
                    ),
                };
                add(
                    &mut r,
                    Some(figures::range_tests(&title, &tests, opts.log_y)),
                    &format!("lr_find_{}", file_stem(&p.label)),
                    &caption,
                )?;
            }
        }
    }
    Ok(r)
}

/// The lines that end a sweep's table: [`range_test_lines`], then [`claim_lines`].
pub fn claims_section(
    sw: &read::Sweep,
    points: &[group::Point],
    spec: &paper::ReportSpec,
) -> Vec<String> {
    let mut lines = range_test_lines(sw, points);
    lines.extend(claim_lines(sw, points, spec));
    lines
}

/// What each run's range test chose for its `"auto"` values and by which rule, one line per
/// run (each names its seed: seeds run their own tests).
pub fn range_test_lines(sw: &read::Sweep, points: &[group::Point]) -> Vec<String> {
    let mut lines = Vec::new();
    for p in points {
        for &i in &p.runs {
            let run = &sw.runs[i];
            let label = match seed_of(run) {
                Some(s) => format!("{}, seed {s}", p.label),
                None => p.label.clone(),
            };
            if let Some(line) = range_test_line(run, &label) {
                lines.push(line);
            }
        }
    }
    lines
}

/// A sweep run's seed: its `seed` grid parameter, else its config's `train.seed`, else the
/// `seed=N` of its folder name.
fn seed_of(run: &read::Run) -> Option<String> {
    run.params
        .iter()
        .find(|(k, _)| group::is_seed(k))
        .map(|(_, v)| v.clone())
        .or_else(|| {
            run.config
                .as_ref()
                .and_then(|c| c.get("train")?.get("seed")?.as_integer())
                .map(|s| s.to_string())
        })
        .or_else(|| {
            group::name_params(&run.name)
                .into_iter()
                .find(|(k, _)| group::is_seed(k))
                .map(|(_, v)| v)
        })
}

/// One line per `[[report.claim]]`, judged on the results.
pub fn claim_lines(
    sw: &read::Sweep,
    points: &[group::Point],
    spec: &paper::ReportSpec,
) -> Vec<String> {
    spec.claims
        .iter()
        .map(|c| claims::judge(c, points, &sw.runs).line)
        .collect()
}

/// "range test (rule clr_max) for POINT: max_lr = 2.2; other rules: ..." for a run whose
/// schedule had `"auto"` values, from its `lr_find/suggestion.json`.
fn range_test_line(run: &read::Run, label: &str) -> Option<String> {
    let s = crate::lr_find::SuggestionFile::read(
        &run.dir.as_ref()?.join(crate::lr_find::RUN_RANGE_TEST),
    )
    .ok()??;
    let rule = s.rule_for_auto.as_deref()?;
    let chosen: Vec<String> = s
        .chosen
        .as_ref()?
        .as_object()?
        .iter()
        .map(|(k, v)| format!("{k} = {}", short(v.as_f64().unwrap_or(f64::NAN))))
        .collect();
    let others: Vec<String> = s
        .suggestions
        .iter()
        .filter(|x| x.rule != rule)
        .map(|x| format!("{} {}", x.rule, short(x.lr)))
        .collect();
    Some(format!(
        "range test for {label}: {} (rule {rule}); the other rules: {}",
        chosen.join(", "),
        others.join(", ")
    ))
}

/// A point's label as part of a file name: letters, digits, `.` and `-`, the rest `_`.
fn file_stem(label: &str) -> String {
    let mut out = String::new();
    for c in label.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
            c
        } else {
            '_'
        };
        if !(c == '_' && out.ends_with('_')) {
            out.push(c);
        }
    }
    out.trim_matches('_').to_string()
}

use crate::util::short3 as short;

/// The claim lines of sweep folder `dir` (see [`claims_section`]); empty for another folder
/// or a sweep without claims or range tests.
pub fn claims_lines(dir: &Path) -> Result<Vec<String>> {
    let input = read::load(dir)?;
    let spec = report_spec(&input)?;
    let Input::Sweep(sw) = input else {
        return Ok(Vec::new());
    };
    let points = sweep_points(&sw, &read::folder_name(dir));
    Ok(claims_section(&sw, &points, &spec))
}

/// `lrlab plot DIR`: write the figures of `dir` (SVG and PNG) into `out` (default
/// `DIR/figures`); returns the paths written.
pub fn plot_dir(dir: &Path, out: Option<&Path>, opts: FigureOptions) -> Result<Vec<PathBuf>> {
    let input = read::load(dir)?;
    let name = read::folder_name(dir);
    let r = render(&input, &name, &report_spec(&input)?, opts)?;
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
    let mut spec = report_spec(&input)?;
    // Without a [report] title, a sweep's report is titled with the spec's `name`.
    if let (None, Input::Sweep(sw)) = (&spec.title, &input) {
        spec.title = sw
            .spec
            .as_ref()
            .and_then(|(_, text)| text.parse::<toml::Table>().ok())
            .and_then(|t| t.get("name").and_then(|n| n.as_str()).map(String::from));
    }
    let r = render(&input, &name, &spec, opts)?;
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
