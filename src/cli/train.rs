//! `lrlab train`: one run, in this process or over `--nproc` local processes.

use lrlab::train::trainer::Outcome;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Run config (TOML with [data], [model], [optim], [train], [schedule]).
    config: PathBuf,
    /// Override a key, in TOML value syntax: --set optim.momentum=0.95.
    #[arg(long = "set", value_name = "TABLE.KEY=VALUE")]
    set: Vec<String>,
    /// Run folder [default: out/<config file stem>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Train over this many local processes (c10d, Gloo), each with its share of every
    /// batch and of the cores; one run folder, written by rank 0.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1024))]
    nproc: u64,
    /// Resume a run checkpointed over another number of processes: the global batch, the
    /// steps and the data order stay, each process's share of a batch changes.
    #[arg(long)]
    allow_resize: bool,
}

/// `lrlab train`: returns the exit status for the outcome.
pub fn run(a: TrainArgs) -> anyhow::Result<u8> {
    let args = lrlab::launch::TrainArgs {
        config: a.config,
        overrides: a.set,
        out: a.out,
        progress: !a.quiet,
        allow_resize: a.allow_resize,
    };
    if a.nproc > 1 {
        return lrlab::launch::launch_ranks(&args, a.nproc as usize, a.quiet);
    }
    train_here(&args)
}

/// Train in this process (alone, or as one rank of a multi-process run); returns the exit
/// status for the outcome.
pub fn train_here(args: &lrlab::launch::TrainArgs) -> anyhow::Result<u8> {
    let lrlab::launch::Trained { out, outcome, rank } = lrlab::launch::train_file(args)?;
    // In a multi-process run rank 0 speaks for every rank.
    if rank != 0 {
        return Ok(match outcome {
            Outcome::Interrupted => 3,
            _ => 0,
        });
    }
    Ok(match outcome {
        Outcome::Done(m) => {
            let set = lrlab::run::Meta::eval_split(lrlab::run::Meta::read_ok(&out).as_ref());
            let m = m
                .map(|m| format!(": {set}_acc {:.4}, {set}_loss {:.4}", m.acc, m.loss))
                .unwrap_or_default();
            // A run that never learned is finished but not a result: say so on its line.
            let doubt = lrlab::run::Status::read(&out)
                .filter(|s| s.learned == Some(false))
                .map(|s| format!("; WARNING: it {}", s.reason))
                .unwrap_or_default();
            eprintln!("done{m} ({}){doubt}", out.display());
            0
        }
        Outcome::Diverged(why) => {
            eprintln!("diverged: {why} ({})", out.display());
            0
        }
        Outcome::AlreadyFinished(s) => {
            eprintln!(
                "{} already holds a finished run ({s}); nothing to do",
                out.display()
            );
            0
        }
        Outcome::Interrupted => {
            eprintln!(
                "interrupted: checkpoint saved in {}; run the same command to resume",
                out.display()
            );
            3
        }
    })
}
