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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info => {
            println!("cuda available: {}", tch::Cuda::is_available());
            println!("cuda devices: {}", tch::Cuda::device_count());
            Ok(())
        }
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
