//! `lrlab bench`: measure lrlab's own components.

use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Training images per second on synthetic data (prints JSON with --json).
    Train(BenchTrainArgs),
    /// Images per second of the training data loader (augmentation, tensors on the CPU).
    Data(DataArgs),
    /// Nanoseconds per training step of each schedule family's lr(k) and momentum(k).
    Schedule(BenchScheduleArgs),
}

#[derive(clap::Args)]
pub struct DataArgs {
    /// Dataset: mnist, fashion-mnist, cifar10, cifar100, synthetic.
    #[arg(long)]
    dataset: String,
    /// Dataset folder (default: the dataset's, if it has one).
    #[arg(long)]
    path: Option<PathBuf>,
    /// Images per batch.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Batches to time (after one untimed warm-up batch); epochs wrap around.
    #[arg(long, default_value_t = 200)]
    batches: usize,
    /// Loader worker threads (0: automatic).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Augmentation: none, flip, crop_flip, random_resized_crop (default: the dataset's).
    #[arg(long)]
    augment: Option<String>,
    /// Synthetic image shape as C,H,W (default 3,32,32).
    #[arg(long)]
    shape: Option<String>,
    /// libtorch threads of the consuming thread (which converts and normalises batches;
    /// in a run, the training thread).
    #[arg(long, default_value_t = 1)]
    threads: i32,
    /// Seed of the data order and augmentation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print one JSON object instead of a sentence.
    #[arg(long)]
    json: bool,
}

impl DataArgs {
    /// The library's options.
    fn options(self) -> lrlab::data::bench::DataBenchArgs {
        lrlab::data::bench::DataBenchArgs {
            dataset: self.dataset,
            path: self.path,
            batch: self.batch,
            batches: self.batches,
            workers: self.workers,
            augment: self.augment,
            shape: self.shape,
            threads: self.threads,
            seed: self.seed,
            json: self.json,
        }
    }
}

#[derive(clap::Args)]
pub struct BenchScheduleArgs {
    /// Steps timed per family (best of three passes).
    #[arg(long, default_value_t = 1_000_000)]
    steps: u64,
    /// Only this family (repeatable) [default: all].
    #[arg(long)]
    family: Vec<String>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct BenchTrainArgs {
    /// Architecture.
    #[arg(long, default_value = "resnet20")]
    model: String,
    /// Batch size.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 20)]
    steps: u64,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// CPU threads (0 = all available cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Device: auto, cpu, cuda, cuda:N.
    #[arg(long, default_value = "auto")]
    device: lrlab::config::DeviceSpec,
    /// Input side (32 for CIFAR models, 224 for ImageNet models).
    #[arg(long, default_value_t = 32)]
    size: i64,
    /// Classes.
    #[arg(long, default_value_t = 10)]
    classes: i64,
    /// Split each batch over this many local processes (c10d, Gloo), each with its share of
    /// the cores, as `lrlab train --nproc` does; prints one process on all the cores beside it.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1024))]
    nproc: u64,
    /// Over several processes: the gradient bucket cap in MiB (0: one collective per
    /// gradient; training uses 25).
    #[arg(long, default_value_t = 25.0)]
    bucket_mb: f64,
    /// Instead: time the harness parts of the CPU training step (schedule, bookkeeping,
    /// logging) against the math, and print their share of the step.
    #[arg(long)]
    overhead: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Run the benchmark asked for.
pub fn run(c: BenchCommand) -> anyhow::Result<u8> {
    match c {
        BenchCommand::Train(a) => bench_train(a)?,
        BenchCommand::Data(a) => bench_data(&a.options())?,
        BenchCommand::Schedule(a) => bench_schedule(&a)?,
    }
    Ok(0)
}

fn bench_train(a: BenchTrainArgs) -> anyhow::Result<()> {
    if a.overhead {
        return bench_overhead(a);
    }
    let args = lrlab::train::bench::BenchTrainArgs {
        model: a.model.clone(),
        batch: a.batch,
        steps: a.steps,
        warmup: a.warmup,
        threads: a.threads,
        device: a.device,
        size: a.size,
        classes: a.classes,
        bucket_mb: a.bucket_mb,
    };
    // A rank started by torchrun.
    if let Some(r) = lrlab::launch::rendezvous_from_env(60.0)? {
        return bench_in_group(&args, &r);
    }
    let nproc = a.nproc as usize;
    lrlab::train::setup::check_world_device(
        lrlab::train::device::resolve_device(args.device)?,
        nproc,
    )?;
    lrlab::train::setup::check_split(
        &format!("--batch {}", a.batch),
        a.batch,
        nproc,
        &format!("--nproc {nproc}"),
    )?;
    let one = lrlab::train::bench::bench_train(&args, None)?;
    if a.nproc == 1 {
        if a.json {
            println!("{}", serde_json::to_string(&one)?);
        } else {
            println!(
                "{} batch {} on {} ({} threads): {:.1} images/s",
                one.model, one.batch, one.device, one.threads, one.images_per_sec
            );
        }
        return Ok(());
    }
    let task = |_| lrlab::launch::RankTask::BenchTrain(args.clone());
    let (code, output) = lrlab::launch::spawn_ranks(task, nproc, true)?;
    if code != 0 {
        anyhow::bail!("the benchmark over {nproc} processes failed (exit status {code})");
    }
    let ranks: serde_json::Value = serde_json::from_str(output.trim())
        .map_err(|e| anyhow::anyhow!("rank 0 printed no result ({e}): {:?}", output.trim()))?;
    let ips = ranks["images_per_sec"].as_f64().unwrap_or(f64::NAN);
    let ratio = ips / one.images_per_sec;
    if a.json {
        println!(
            "{}",
            serde_json::json!({ "ranks": ranks, "one_process": one, "ratio": ratio })
        );
    } else {
        println!(
            "{} batch {} on {}: {nproc} processes × {} threads {:.1} images/s, one process × {} \
             threads {:.1} images/s: {:.2}× (gradient buckets: {})",
            one.model,
            one.batch,
            one.device,
            ranks["threads"],
            ips,
            one.threads,
            one.images_per_sec,
            ratio,
            if a.bucket_mb > 0.0 {
                format!("{} MiB", a.bucket_mb)
            } else {
                "one per gradient".into()
            }
        );
    }
    Ok(())
}

/// One rank of `lrlab bench train --nproc N` (or of torchrun): rank 0 prints the result as
/// JSON for the launcher.
pub fn bench_rank(args: &lrlab::train::bench::BenchTrainArgs) -> anyhow::Result<()> {
    match lrlab::launch::rendezvous_from_env(60.0)? {
        Some(r) => bench_in_group(args, &r),
        None => lrlab::bail_input!("lrlab rank: a rank of bench train needs WORLD_SIZE > 1"),
    }
}

fn bench_in_group(
    args: &lrlab::train::bench::BenchTrainArgs,
    r: &lrlab::distributed::Rendezvous,
) -> anyhow::Result<()> {
    let group = lrlab::distributed::Group::join(r)?;
    let r = lrlab::train::bench::bench_train(args, Some(&group))?;
    if group.rank() == 0 {
        println!("{}", serde_json::to_string(&r)?);
    }
    Ok(())
}

/// `lrlab bench train --overhead`: the harness share of a CPU training step.
fn bench_overhead(a: BenchTrainArgs) -> anyhow::Result<()> {
    use lrlab::config::DeviceSpec;
    if !matches!(a.device, DeviceSpec::Auto | DeviceSpec::Cpu) {
        lrlab::bail_input!(
            "--device {}: --overhead times CPU steps only (wall clocks around asynchronous \
             GPU work would not measure it)",
            a.device
        );
    }
    let args = lrlab::train::overhead::OverheadArgs {
        model: a.model,
        batch: a.batch,
        steps: a.steps,
        warmup: a.warmup,
        threads: a.threads,
        size: a.size,
        classes: a.classes,
    };
    let r = lrlab::train::overhead::bench_overhead(&args)?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!("{}", r.sentence());
    }
    Ok(())
}

/// `lrlab bench schedule`: per-family cost of the schedule per training step.
fn bench_schedule(a: &BenchScheduleArgs) -> anyhow::Result<()> {
    let r = lrlab::schedule::bench::bench_schedules(a.steps, &a.family)?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        print!("{}", r.table());
    }
    Ok(())
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
