//! `lrlab schedule`: render a schedule spec to CSV and a figure.

use anyhow::{Context, Result};
use lrlab::bail_input;
use lrlab::schedule::spec_file::{load_spec, record_metrics, rows, to_csv};
use lrlab::schedule::{RunLength, Schedule};
use lrlab::util::{fmt_f64, write_atomic};
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ScheduleArgs {
    /// Schedule spec: the schedule keys at top level or in [schedule] (a run config works).
    spec: PathBuf,
    /// Number of epochs [default: `epochs` in the spec's [preview] table].
    #[arg(long)]
    epochs: Option<u64>,
    /// Optimizer steps per epoch [default: `steps_per_epoch` in the spec's [preview] table].
    #[arg(long)]
    steps_per_epoch: Option<u64>,
    /// Optimizer momentum, reported for schedules that do not cycle momentum.
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// Write the CSV here (atomically) instead of standard output.
    #[arg(short = 'o', long = "out")]
    out: Option<PathBuf>,
    /// Also draw LR and momentum against epoch into this figure (.svg or .png).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// For kind = "plateau": the evaluations it follows, a CSV with `epoch` and any of
    /// test_loss, test_acc, train_loss, train_acc (a run's epochs.csv works).
    #[arg(long, value_name = "FILE.csv")]
    metrics: Option<PathBuf>,
    /// Override a key, in TOML value syntax: --set schedule.max_lr=0.5, --set
    /// preview.epochs=30 (in a run config any table.key, as for train).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Logarithmic LR axis in the --plot figure (zeros are drawn at the smallest LR).
    #[arg(long)]
    log_y: bool,
}

/// Render the spec.
pub fn run(a: ScheduleArgs) -> anyhow::Result<u8> {
    // A run config gives its own length, unless both flags do.
    let run = match (a.epochs, a.steps_per_epoch) {
        (Some(_), Some(_)) => None,
        _ => lrlab::launch::run_length_of(&a.spec, &a.set)?,
    };
    let args = RenderArgs {
        spec: a.spec,
        epochs: a.epochs,
        steps_per_epoch: a.steps_per_epoch,
        momentum: a.momentum,
        out: a.out,
        plot: a.plot,
        run,
        metrics: a.metrics,
        set: a.set,
        log_y: a.log_y,
    };
    render(&args)?;
    Ok(0)
}

/// Arguments of `lrlab schedule`.
#[derive(Clone, Debug)]
struct RenderArgs {
    /// The spec file (TOML).
    spec: PathBuf,
    /// Number of epochs; `None`: `preview.epochs` of the spec.
    epochs: Option<u64>,
    /// Optimizer steps per epoch; `None`: `preview.steps_per_epoch` of the spec.
    steps_per_epoch: Option<u64>,
    /// The optimizer's momentum, reported for families that do not cycle it.
    momentum: f64,
    /// CSV output (written atomically); `None`: standard output.
    out: Option<PathBuf>,
    /// Figure of LR and momentum against epoch (`.svg` or `.png`).
    plot: Option<PathBuf>,
    /// The run length of the spec when it is a run config (epochs or total steps, and steps
    /// per epoch, from its data and batch size), used where neither a flag nor `[preview]`
    /// gives one.
    run: Option<RunLength>,
    /// Evaluations for a metric-driven schedule (`plateau`): a CSV with `epoch` and any of
    /// `test_loss`, `test_acc`, `train_loss`, `train_acc` (a run's `epochs.csv` works).
    metrics: Option<PathBuf>,
    /// `--set` overrides (`schedule.max_lr=0.5`, `preview.epochs=30`; in a run config any
    /// `table.key`), applied to the spec before it is read.
    set: Vec<String>,
    /// Logarithmic LR axis in the figure.
    log_y: bool,
}

/// `lrlab schedule`: validate everything, then write the CSV (to `out` or standard output)
/// and the figure. Nothing is written when the input is bad.
fn render(args: &RenderArgs) -> Result<()> {
    let spec = load_spec(&args.spec, &args.set)?;
    if !(args.momentum.is_finite() && (0.0..1.0).contains(&args.momentum)) {
        bail_input!("--momentum {}: must be in [0, 1)", fmt_f64(args.momentum));
    }
    let given = (
        args.epochs.or(spec.epochs),
        args.steps_per_epoch.or(spec.steps_per_epoch),
    );
    let len = match (args.run, given) {
        // A run config with nothing given: exactly the run's length.
        (Some(run), (None, None)) => run,
        (run, _) => {
            let epochs = pick(
                args.epochs,
                spec.epochs
                    .or(run.map(|r| r.total_steps.div_ceil(r.steps_per_epoch))),
                "--epochs",
                "epochs",
            )?;
            let steps = pick(
                args.steps_per_epoch,
                spec.steps_per_epoch.or(run.map(|r| r.steps_per_epoch)),
                "--steps-per-epoch",
                "steps_per_epoch",
            )?;
            RunLength::from_epochs(epochs, steps)?
        }
    };
    let (epochs, steps) = (
        len.total_steps.div_ceil(len.steps_per_epoch),
        len.steps_per_epoch,
    );
    let mut schedule = Schedule::from_table(&spec.schedule, len)
        .with_context(|| args.spec.display().to_string())?;
    match (&args.metrics, schedule.uses_metrics()) {
        (Some(m), true) => {
            record_metrics(m, &mut schedule, len.steps_per_epoch)?;
        }
        (None, true) if !spec.metrics.is_empty() => {
            // Epoch e's evaluation acts from the step that ends it.
            for (e, m) in spec.metrics.iter().enumerate() {
                schedule.record_eval((e as u64 + 1) * len.steps_per_epoch, m);
            }
        }
        (Some(m), false) => bail_input!(
            "--metrics {}: kind = \"{}\" does not follow evaluations (only plateau does)",
            m.display(),
            schedule.kind()
        ),
        (None, true) => lrlab::util::warn_once(
            "lrlab: a plateau schedule without --metrics FILE.csv: printing its base, with no \
             reductions",
        ),
        (None, false) if !spec.metrics.is_empty() => bail_input!(
            "{}: [preview.metrics] is given, but kind = \"{}\" does not follow evaluations (only \
             plateau does)",
            args.spec.display(),
            schedule.kind()
        ),
        (None, false) => {}
    }
    let rows = rows(&schedule, args.momentum).with_context(|| args.spec.display().to_string())?;
    let csv = to_csv(&rows);
    let figure = match &args.plot {
        None => None,
        Some(path) => {
            let format = lrlab::report::chart::FigureFormat::of(path)?;
            let name = args
                .spec
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let plural =
                |n: u64, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
            let title = format!(
                "{} ({}, {} x {} per epoch)",
                spec.title.as_deref().unwrap_or(&name),
                schedule.kind(),
                plural(epochs, "epoch"),
                plural(steps, "step")
            );
            let points: Vec<(f64, f64, f64)> =
                rows.iter().map(|r| (r.epoch, r.lr, r.momentum)).collect();
            let fig = lrlab::report::figures::schedule_plot(&title, &points, args.log_y)?;
            Some(lrlab::report::chart::bytes(&fig, format)?)
        }
    };
    match &args.out {
        Some(path) => write_atomic(path, csv.as_bytes())?,
        None => {
            let mut out = std::io::stdout().lock();
            match out.write_all(csv.as_bytes()).and_then(|_| out.flush()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    return Err(e).context("cannot write to standard output")
                }
                _ => {}
            }
        }
    }
    if let (Some(path), Some(bytes)) = (&args.plot, figure) {
        write_atomic(path, &bytes)?;
    }
    Ok(())
}

/// A run-length value from its flag, else from `[preview]`, else an input error naming both.
fn pick(flag: Option<u64>, preview: Option<u64>, flag_name: &str, key: &str) -> Result<u64> {
    match (flag, preview) {
        (Some(0), _) => bail_input!("{flag_name} 0: must be >= 1"),
        (Some(v), _) | (None, Some(v)) => Ok(v),
        (None, None) => bail_input!(
            "missing {flag_name}: give the flag or `{key}` in the spec's [preview] table"
        ),
    }
}
