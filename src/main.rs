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
    /// Print the trainable parameter count of every model as CSV (model,params).
    Models {
        /// Number of classes.
        #[arg(long, default_value_t = 10)]
        classes: i64,
        /// Input channels.
        #[arg(long, default_value_t = 3)]
        in_channels: i64,
        /// Image side [default: 224 for the ImageNet models, 32 for the others].
        #[arg(long)]
        size: Option<i64>,
    },
}

/// `lrlab models`: one CSV row per model; a model that cannot take the input gets an empty
/// count and a note on stderr.
fn models(classes: i64, in_channels: i64, size: Option<i64>) -> anyhow::Result<()> {
    let rows = lrlab::models::param_table(classes, in_channels, size)?;
    println!("model,params");
    for (name, count) in rows {
        match count {
            Ok(n) => println!("{name},{n}"),
            Err(why) => {
                println!("{name},");
                eprintln!("note: {why}");
            }
        }
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
        Command::Models {
            classes,
            in_channels,
            size,
        } => models(classes, in_channels, size),
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
