//! The command line: one module per subcommand, each owning its clap types, the mapping from
//! its flags to the library's options, and what it prints. [`run`] dispatches.

mod bench;
mod ensemble;
mod find_lr;
mod hf_lr;
mod models;
mod report;
mod schedule;
mod sweep;
mod train;

use clap::{Parser, Subcommand};

/// Learning-rate schedule research on libtorch: schedules, training, range tests, sweeps.
#[derive(Parser)]
#[command(name = "lrlab", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Print libtorch and device information.
    Info,
    /// Render a learning-rate schedule spec to CSV (step,epoch,lr,momentum) and an SVG figure.
    Schedule(schedule::ScheduleArgs),
    /// Print every model with its trainable parameter count and the input the count assumes, as CSV (model,params,input).
    Models(models::ModelsArgs),
    /// Train one run: `lrlab train RUN.toml [--set table.key=value]... [--out DIR]`.
    ///
    /// Running it again with the same --out resumes from the last checkpoint; a finished
    /// run is not run again.
    Train(train::TrainArgs),
    /// The LR range test: train while the learning rate ramps up, then suggest learning rates.
    FindLr(find_lr::FindLrArgs),
    /// The super-convergence paper's Hessian-free estimates of the optimal learning rate
    /// along the first steps of a run (a short training, only for the curve).
    ///
    /// The schedule keeps the config's whole length; the training stops after --steps.
    /// Writes hf_lr.csv, hf_lr_layers.csv, steps.csv, config.toml, meta.json and the figure
    /// (figures/hf_lr.svg and .png) into the output folder.
    HfLr(hf_lr::HfLrArgs),
    /// Run a sweep spec's grid of runs (locally or as Slurm arrays); `sweep status DIR`.
    Sweep(sweep::SweepCommand),
    /// Write summary.csv, curves.csv and summary_by_point.csv of a sweep folder.
    Collect(sweep::CollectArgs),
    /// Draw the figures of a run, sweep, range-test or hf-lr folder as SVG and PNG.
    ///
    /// DIR is recognised by its files: epochs.csv (a run), lr_find.csv (a range test),
    /// hf_lr.csv (lrlab hf-lr), or run folders / summary.csv / curves.csv (a sweep). Figures
    /// go to DIR/figures.
    Plot(report::PlotArgs),
    /// Write DIR/report.md (tables, figures, the papers' numbers) and its figures.
    ///
    /// For a sweep, the [report] table of DIR/sweep.toml can give a title and the papers'
    /// numbers: [report.paper] "param=value, ..." = { test_error = 4.03, source = "..." }
    /// (or test_acc, in percent; optional epoch = N and note = "...").
    Report(report::ReportArgs),
    /// Evaluate a run's SGDR snapshots alone and as ensembles of the last M (softmax average).
    ///
    /// DIR is a run folder trained with train.snapshots = "restarts", or a sweep folder (every
    /// run in it with snapshots). Writes <run>/ensemble.csv and prints a table per run.
    Ensemble(ensemble::EnsembleArgs),
    /// Measure lrlab's own components.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
    /// One rank of a multi-process launch (started by lrlab itself): TASK is the typed
    /// command as JSON.
    #[command(hide = true)]
    Rank { task: String },
}

/// A rank started by [`lrlab::launch::spawn_ranks`].
fn rank(task: &str) -> anyhow::Result<u8> {
    let task: lrlab::launch::RankTask = serde_json::from_str(task).map_err(|e| {
        lrlab::input_error(format!(
            "lrlab rank: {e}: expected the task its launcher hands it (this command is not \
             for people; use lrlab train --nproc N)"
        ))
    })?;
    match task {
        lrlab::launch::RankTask::Train(args) => train::train_here(&args),
        lrlab::launch::RankTask::BenchTrain(args) => bench::bench_rank(&args).map(|()| 0),
    }
}

/// Run the command; its exit status on success.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Info => {
            print!("{}", lrlab::train::device::info_text());
            Ok(0)
        }
        Command::Schedule(a) => schedule::run(a),
        Command::Models(a) => models::run(a),
        Command::Train(a) => train::run(a),
        Command::FindLr(a) => find_lr::run(a),
        Command::HfLr(a) => hf_lr::run(a),
        Command::Sweep(c) => sweep::sweep(c),
        Command::Collect(a) => sweep::collect(a),
        Command::Plot(a) => report::plot(a),
        Command::Report(a) => report::report(a),
        Command::Ensemble(a) => ensemble::run(a),
        Command::Bench { command } => bench::run(command),
        Command::Rank { task } => rank(&task),
    }
}
