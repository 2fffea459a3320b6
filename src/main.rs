//! The `lrlab` command line: parse arguments, call the library, map errors to exit codes.

use clap::{Parser, Subcommand};
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
    /// Measure lrlab's own components.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Images per second of the training data loader (augmentation, tensors on the CPU).
    Data(lrlab::data::bench::DataBenchArgs),
}

/// `lrlab bench data`: print the loader's throughput.
fn bench_data(args: &lrlab::data::bench::DataBenchArgs) -> anyhow::Result<()> {
    let r = lrlab::data::bench::bench_data(args)?;
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!("{}", r.sentence());
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info => {
            println!("cuda available: {}", tch::Cuda::is_available());
            println!("cuda devices: {}", tch::Cuda::device_count());
            Ok(())
        }
        Command::Bench {
            command: BenchCommand::Data(args),
        } => bench_data(&args),
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
