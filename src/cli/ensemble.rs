//! `lrlab ensemble`: SGDR snapshot ensembles.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct EnsembleArgs {
    /// A run folder (with snapshots/) or a sweep folder.
    dir: PathBuf,
    /// Use only the last M snapshots (of each run) [default: all].
    #[arg(long, value_name = "M")]
    last: Option<usize>,
    /// Ensembles across the runs of each grid point (runs that differ only in train.seed):
    /// N runs x their last M snapshots, SGDR's Table 2 [default: each run alone].
    #[arg(long)]
    across_seeds: bool,
    /// Evaluate on this device (auto, cpu, cuda, cuda:N) [default: the run's train.device].
    #[arg(long)]
    device: Option<lrlab::config::DeviceSpec>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// `lrlab ensemble`: evaluate, write each run's ensemble.csv, print the tables.
pub fn run(a: EnsembleArgs) -> anyhow::Result<u8> {
    use lrlab::train::ensemble as ens;
    let args = ens::EnsembleArgs {
        dir: a.dir,
        last: a.last,
        device: a.device,
        progress: !a.quiet,
    };
    if a.across_seeds {
        for p in ens::ensemble_across_seeds(&args)? {
            print!("{}", ens::seeds_table(&p));
        }
        println!("  -> {}", args.dir.join(ens::ACROSS_SEEDS_CSV).display());
        return Ok(0);
    }
    for r in ens::ensemble_dir(&args)? {
        print!("{}", ens::table(&r));
        println!("  -> {}", r.run.join(ens::csv_name(args.last)).display());
    }
    Ok(0)
}
