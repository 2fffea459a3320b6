//! The `lrlab` command line: parse arguments, call the library, map errors to exit codes.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Learning-rate schedule research on libtorch: schedules, training, range tests, sweeps.
#[derive(Parser)]
#[command(name = "lrlab", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print libtorch and device information.
    Info,
    /// Render a learning-rate schedule spec to CSV (step,epoch,lr,momentum) and an SVG figure.
    Schedule {
        /// Schedule spec: the schedule keys at top level or in [schedule] (a run config works).
        spec: PathBuf,
        /// Number of epochs (default: `epochs` in the spec's [preview] table).
        #[arg(long)]
        epochs: Option<u64>,
        /// Optimizer steps per epoch (default: `steps_per_epoch` in the spec's [preview] table).
        #[arg(long)]
        steps_per_epoch: Option<u64>,
        /// Take the run length from the spec's [preview] table only.
        #[arg(long, conflicts_with_all = ["epochs", "steps_per_epoch"])]
        from_spec: bool,
        /// Optimizer momentum, reported for schedules that do not cycle momentum.
        #[arg(long, default_value_t = 0.9)]
        momentum: f64,
        /// Write the CSV here (atomically) instead of standard output.
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
        /// Also draw LR and momentum against epoch into this SVG file.
        #[arg(long)]
        plot: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info => {
            println!("cuda available: {}", tch::Cuda::is_available());
            println!("cuda devices: {}", tch::Cuda::device_count());
            Ok(())
        }
        Command::Schedule {
            spec,
            epochs,
            steps_per_epoch,
            from_spec: _,
            momentum,
            out,
            plot,
        } => lrlab::schedule::cli::render(&lrlab::schedule::cli::RenderArgs {
            spec,
            epochs,
            steps_per_epoch,
            momentum,
            out,
            plot,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if lrlab::is_input_error(&e) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
