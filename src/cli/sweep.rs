//! `lrlab sweep` and `lrlab collect`: a spec's grid of runs, locally or as Slurm arrays, its
//! status, and the sweep's summaries.

use anyhow::{Context, Result};
use lrlab::sweep::devices::{check_config_devices, concurrency, parse_devices, slots, Devices};
use lrlab::sweep::local::{run_local, LocalOptions};
use lrlab::sweep::manifest::{freeze, Manifest, MANIFEST};
use lrlab::sweep::plan::{self, Plan};
use lrlab::sweep::slurm::{self, SlurmOptions};
use lrlab::sweep::status::{status_text, table};
use lrlab::train::device::available_cores;
use lrlab::util::sanitize;
use std::path::{Path, PathBuf};

/// `lrlab sweep`: a spec's runs, locally or on Slurm; `status` and (hidden) `run-index`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SweepCommand {
    /// `status` or `run-index`; without one, run a spec.
    #[command(subcommand)]
    pub command: Option<SweepSub>,
    /// Running a spec.
    #[command(flatten)]
    pub args: SweepArgs,
}

/// Subcommands of `lrlab sweep`.
#[derive(Debug, clap::Subcommand)]
pub enum SweepSub {
    /// Print one row per run of a sweep: status, epoch, step, best test accuracy.
    Status {
        /// The sweep folder, or the spec (its folder is out/<name>, or --out).
        dir: PathBuf,
        /// The folder of a spec swept with --out.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run the run(s) of one Slurm array task of a frozen sweep folder (used by the scripts).
    #[command(hide = true)]
    RunIndex {
        /// The sweep folder.
        dir: PathBuf,
        /// Task number: the run index when one run per task.
        index: usize,
        /// Runs per task: the task runs indices INDEX×N .. INDEX×N+N−1.
        #[arg(long, default_value_t = 1)]
        runs_per_task: usize,
        /// Run a failed run again.
        #[arg(long)]
        retry_failed: bool,
        /// Processes per run: each run is an srun step of that many tasks.
        #[arg(long, default_value_t = 1)]
        ranks_per_run: usize,
    },
}

/// Options of `lrlab sweep SPEC`.
#[derive(Debug, clap::Args)]
pub struct SweepArgs {
    /// Sweep spec (TOML), or an existing sweep folder to continue.
    #[arg(required = true)]
    pub spec: Option<PathBuf>,
    /// Sweep folder [default: out/<the spec's name>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// List the runs (index, id, name, varied values) and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Devices: `cpu`, `cuda` (every GPU) or a list `cuda:0,cuda:1` [default: every GPU,
    /// else the CPU].
    #[arg(long, conflicts_with = "slurm")]
    pub devices: Option<String>,
    /// Runs at once per GPU [default: 1]; on the CPU, runs at once when --jobs is not given.
    #[arg(long, conflicts_with = "slurm")]
    pub per_device: Option<usize>,
    /// Runs at once, at most [default: one per device token].
    #[arg(long, conflicts_with = "slurm")]
    pub jobs: Option<usize>,
    /// Run failed runs again.
    #[arg(long)]
    pub retry_failed: bool,
    /// Stop at the first failure (running runs stop at a checkpoint).
    #[arg(long, conflicts_with = "slurm")]
    pub fail_fast: bool,
    /// No progress bars (plain lines).
    #[arg(long)]
    pub quiet: bool,
    /// Write Slurm job-array scripts into DIR/slurm/ instead of running locally.
    #[arg(long)]
    pub slurm: bool,
    /// Slurm partition.
    #[arg(long, requires = "slurm")]
    pub partition: Option<String>,
    /// Generic resources per task, e.g. gpu:1.
    #[arg(long, requires = "slurm")]
    pub gres: Option<String>,
    /// Time limit per task, e.g. 04:00:00.
    #[arg(long, requires = "slurm")]
    pub time: Option<String>,
    /// CPUs per task (runs with train.threads or data.workers = 0 use that many).
    #[arg(long, requires = "slurm")]
    pub cpus_per_task: Option<u32>,
    /// Memory per task, e.g. 16G.
    #[arg(long, requires = "slurm")]
    pub mem: Option<String>,
    /// At most this many tasks at once (`--array=...%N`).
    #[arg(long, requires = "slurm")]
    pub array_parallel: Option<usize>,
    /// Runs per array task, one after the other.
    #[arg(long, requires = "slurm", default_value_t = 1)]
    pub runs_per_task: usize,
    /// Seconds before the time limit when Slurm signals the task to checkpoint.
    #[arg(long, requires = "slurm", default_value_t = 120)]
    pub signal_lead: u32,
    /// Largest array size [default: MaxArraySize from `scontrol show config`, else 1001].
    #[arg(long, requires = "slurm")]
    pub max_array_size: Option<usize>,
    /// Another sbatch option for the scripts, e.g. --sbatch=--account=abc (repeatable).
    #[arg(long = "sbatch", requires = "slurm", allow_hyphen_values = true)]
    pub sbatch: Vec<String>,
    /// Submit the scripts with sbatch.
    #[arg(long, requires = "slurm")]
    pub submit: bool,
    /// Only the runs that are not finished (and failed ones with --retry-failed).
    #[arg(long, requires = "slurm")]
    pub only_missing: bool,
    /// Processes per run: each array task gets this many Slurm tasks (--ntasks) and runs each
    /// of its runs as an srun step over them, one run over several processes.
    #[arg(long, requires = "slurm", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub ranks_per_run: u64,
}

/// Run `lrlab sweep ...`; returns the exit status.
pub fn sweep(cmd: SweepCommand) -> Result<u8> {
    match cmd.command {
        Some(SweepSub::Status { dir, out }) => {
            let dir = match out {
                Some(o) => o,
                // A spec file: the folder `lrlab sweep SPEC` writes.
                None if dir.is_file() => {
                    PathBuf::from("out").join(sanitize(&plan::load(&dir)?.spec.name))
                }
                None => dir,
            };
            print!("{}", status_text(&dir)?);
            Ok(0)
        }
        Some(SweepSub::RunIndex {
            dir,
            index,
            runs_per_task,
            retry_failed,
            ranks_per_run,
        }) => {
            let exe = std::env::current_exe().context("cannot find the lrlab binary")?;
            slurm::run_index(
                &dir,
                index,
                runs_per_task,
                retry_failed,
                &exe,
                ranks_per_run,
            )
        }
        None => run_spec(cmd.args),
    }
}

/// A spec planned, or a sweep folder already frozen.
enum Source {
    Plan(Box<Plan>),
    Folder(Manifest),
}

fn run_spec(a: SweepArgs) -> Result<u8> {
    let spec = a.spec.clone().expect("clap requires SPEC");
    let (source, out) = if spec.is_dir() && spec.join(MANIFEST).exists() {
        if let Some(o) = &a.out {
            if o != &spec {
                lrlab::bail_input!(
                    "--out {}: {} is a sweep folder already; continue it without --out",
                    o.display(),
                    spec.display()
                );
            }
        }
        (Source::Folder(Manifest::load(&spec)?), spec.clone())
    } else {
        let p = plan::load(&spec)?;
        let out = a
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from("out").join(sanitize(&p.spec.name)));
        (Source::Plan(Box::new(p)), out)
    };

    let program = std::env::current_exe().context("cannot find the lrlab binary")?;
    let abs_out =
        std::path::absolute(&out).with_context(|| format!("cannot resolve {}", out.display()))?;
    // Everything that can be refused is checked before the folder is written.
    let mut local = None;
    let mut slurm_opts = None;
    if a.slurm {
        let o = SlurmOptions {
            partition: a.partition.clone(),
            gres: a.gres.clone(),
            time: a.time.clone(),
            cpus_per_task: a.cpus_per_task,
            mem: a.mem.clone(),
            array_parallel: a.array_parallel,
            runs_per_task: a.runs_per_task,
            signal_lead: a.signal_lead,
            max_array_size: a.max_array_size,
            extra: a.sbatch.clone(),
            submit: a.submit,
            only_missing: a.only_missing,
            retry_failed: a.retry_failed,
            program: program.clone(),
            ranks_per_run: a.ranks_per_run as usize,
        };
        o.validate(&abs_out)?;
        if o.ranks_per_run > 1 {
            check_ranks(&source, o.ranks_per_run)?;
        }
        slurm_opts = Some(o);
    } else {
        local = Some(local_options(&a, &source, program)?);
    }

    if a.dry_run {
        // Every decision of the real run, nothing written: the options were checked above,
        // and the manifest is the one freezing would write (the folder's indices kept, a
        // changed run refused).
        let m = match source {
            Source::Plan(p) => lrlab::sweep::manifest::preview(&abs_out, &p)?,
            Source::Folder(m) => m,
        };
        print!("{}", dry_run_text(&m, &out));
        return Ok(0);
    }

    let m = match source {
        Source::Plan(p) => freeze(&abs_out, &p)?,
        Source::Folder(m) => m,
    };

    if let Some(o) = slurm_opts {
        return slurm_main(&abs_out, &m, &o);
    }
    let opts = local.expect("set above");
    eprintln!(
        "sweep {}: {} runs in {}, {} at a time on {}",
        m.name,
        m.runs.len(),
        out.display(),
        opts.jobs,
        opts.slots
            .iter()
            .take(opts.jobs)
            .map(|s| s.label.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
            .join(",")
    );
    let report = run_local(&abs_out, &m, &opts)?;
    let c = lrlab::sweep::collect::collect(&abs_out)?;
    // The per-point table, read back from what collect wrote.
    if let Ok(text) = std::fs::read_to_string(&c.files[2]) {
        if let Ok(table) = lrlab::sweep::collect::points_text(&text) {
            eprint!("\n{table}");
            match lrlab::report::claims_lines(&abs_out) {
                Ok(lines) => {
                    for l in lines {
                        eprintln!("{l}");
                    }
                }
                Err(e) => eprintln!("(the claims could not be judged: {e:#})"),
            }
            eprintln!();
        }
    }
    eprintln!(
        "{} runs: {} done, {} diverged, {} failed, {} unfinished; {} started now; results in {}",
        m.runs.len(),
        report.done,
        report.diverged,
        report.failed,
        report.unfinished,
        report.launched,
        c.files[0].display()
    );
    if report.stopped {
        eprintln!("interrupted: run the same command again to resume");
    }
    Ok(report.exit_code())
}

/// Every run's batch must split over `ranks` processes (`--ranks-per-run`).
fn check_ranks(source: &Source, ranks: usize) -> Result<()> {
    let configs: Vec<(&str, &str)> = match source {
        Source::Plan(p) => p.runs.iter().map(|r| (&*r.name, &*r.config)).collect(),
        Source::Folder(m) => m.runs.iter().map(|r| (&*r.name, &*r.config)).collect(),
    };
    for (name, text) in configs {
        let cfg = lrlab::config::RunConfig::from_toml_str(text)?;
        lrlab::train::setup::check_batch_split(&cfg, ranks, &format!("--ranks-per-run {ranks}"))
            .map_err(|e| lrlab::input_error(format!("run `{name}`: {e}")))?;
    }
    Ok(())
}

/// The device pool and concurrency for a local sweep (input errors for bad devices).
fn local_options(a: &SweepArgs, source: &Source, program: PathBuf) -> Result<LocalOptions> {
    if a.jobs == Some(0) {
        lrlab::bail_input!("--jobs 0: must be >= 1");
    }
    if a.per_device == Some(0) {
        lrlab::bail_input!("--per-device 0: must be >= 1");
    }
    let (origin, configs): (String, Vec<(String, String)>) = match source {
        Source::Plan(p) => (
            p.spec.path.display().to_string(),
            p.runs
                .iter()
                .map(|r| (r.name.clone(), r.config.clone()))
                .collect(),
        ),
        Source::Folder(m) => (
            m.spec.clone(),
            m.runs
                .iter()
                .map(|r| (r.name.clone(), r.config.clone()))
                .collect(),
        ),
    };
    let parsed: Vec<(String, lrlab::config::RunConfig)> = configs
        .iter()
        .filter_map(|(n, c)| {
            lrlab::config::RunConfig::from_toml_str(c)
                .ok()
                .map(|c| (n.clone(), c))
        })
        .collect();
    let gpus = || tch::Cuda::device_count().max(0) as usize;
    if a.devices.is_none() {
        // Without --devices, a GPU the configs name must exist.
        let named: Vec<(String, lrlab::config::DeviceSpec)> = parsed
            .iter()
            .map(|(n, c)| (n.clone(), c.train.device))
            .collect();
        check_config_devices(&origin, &named, gpus())?;
    }
    let parsed: Vec<lrlab::config::RunConfig> = parsed.into_iter().map(|(_, c)| c).collect();
    let devices = match &a.devices {
        Some(d) => parse_devices(d, gpus())?,
        None if parsed
            .iter()
            .all(|c| c.train.device == lrlab::config::DeviceSpec::Cpu) =>
        {
            Devices::Cpu
        }
        None => match gpus() {
            0 => Devices::Cpu,
            n => Devices::Cuda((0..n).collect()),
        },
    };
    let cpu = devices == Devices::Cpu;
    let per_device = a.per_device.unwrap_or(1);
    let cpu_jobs = a.jobs.unwrap_or(per_device);
    let visible = std::env::var("CUDA_VISIBLE_DEVICES").ok();
    let pool = slots(&devices, per_device, cpu_jobs, visible.as_deref());
    let fixed = parsed.iter().map(|c| c.train.threads).max().unwrap_or(0);
    let (jobs, threads, note) = concurrency(pool.len(), a.jobs, available_cores(), fixed, cpu);
    if let Some(n) = note {
        eprintln!("note: {n}");
    }
    Ok(LocalOptions {
        slots: pool,
        jobs,
        threads,
        retry_failed: a.retry_failed,
        fail_fast: a.fail_fast,
        program,
        progress: !a.quiet,
    })
}

fn slurm_main(sweep: &Path, m: &Manifest, o: &SlurmOptions) -> Result<u8> {
    let tasks = slurm::tasks_to_submit(sweep, m, o);
    if tasks.is_empty() {
        eprintln!("nothing to submit: every run of {} is finished", m.name);
        return Ok(0);
    }
    let cap = o.max_array_size.unwrap_or_else(slurm::max_array_size);
    let scripts = slurm::write_scripts(sweep, m, o, &tasks, cap)?;
    for s in &scripts {
        eprintln!("{}: --array={}", s.path.display(), s.array);
    }
    if o.submit {
        let ids = slurm::submit(sweep, &scripts)?;
        println!("{}", ids.join("\n"));
        eprintln!(
            "submitted {} array job(s); `lrlab sweep status {}` shows progress",
            ids.len(),
            sweep.display()
        );
    } else {
        eprintln!("submit with: sbatch FILE (or run again with --submit)");
    }
    Ok(0)
}

/// The `--dry-run` listing: the manifest's runs as the real run numbers them.
fn dry_run_text(m: &Manifest, out: &Path) -> String {
    let mut rows = vec![["index", "id", "name"].map(String::from).to_vec()];
    rows[0].extend(m.varied.iter().cloned());
    for r in &m.runs {
        let mut row = vec![r.index.to_string(), r.id.clone(), r.name.clone()];
        row.extend(r.label_values(&m.varied));
        rows.push(row);
    }
    format!(
        "sweep {}: {} runs, folder {}\n{}",
        m.name,
        m.runs.len(),
        out.display(),
        table(&rows)
    )
}

/// Run `lrlab collect DIR`; exit status 1 when a run failed.
fn collect_main(dir: &Path) -> Result<u8> {
    let c = lrlab::sweep::collect::collect(dir)?;
    for f in &c.files {
        println!("{}", f.display());
    }
    eprintln!(
        "{} runs: {} done, {} diverged, {} failed, {} not finished",
        c.runs,
        c.done,
        c.diverged,
        c.failed,
        c.runs - c.done - c.diverged - c.failed
    );
    Ok(if c.failed > 0 { 1 } else { 0 })
}

#[derive(clap::Args)]
pub struct CollectArgs {
    /// The sweep folder.
    dir: PathBuf,
}

/// `lrlab collect`.
pub fn collect(a: CollectArgs) -> Result<u8> {
    collect_main(&a.dir)
}
