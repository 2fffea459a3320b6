//! The `lrlab` command line: parse arguments, dispatch to the subcommand ([`cli`]), map
//! errors to exit codes (0 success, 1 failure, 2 bad input, 3 training interrupted by a
//! signal).

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    lrlab::train::device::keep_freed_memory();
    let result = cli::run(cli::Cli::parse());
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) if lrlab::train::stop::is_interrupted(&e) => {
            // A range test (find-lr, or the one of an "auto" run) writes its files at the end.
            eprintln!(
                "interrupted before anything was written; run the same command to start again"
            );
            ExitCode::from(3)
        }
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
