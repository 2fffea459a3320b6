//! The `lrlab` command line: parse arguments, call the library, map errors to exit codes
//! (0 success, 1 failure, 2 bad input, 3 training interrupted by a signal).

use clap::{Parser, Subcommand};
use lrlab::train::trainer::Outcome;
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
        /// Number of epochs [default: `epochs` in the spec's [preview] table].
        #[arg(long)]
        epochs: Option<u64>,
        /// Optimizer steps per epoch [default: `steps_per_epoch` in the spec's [preview] table].
        #[arg(long)]
        steps_per_epoch: Option<u64>,
        /// Optimizer momentum, reported for schedules that do not cycle momentum.
        #[arg(long, default_value_t = 0.9)]
        momentum: f64,
        /// Write the CSV here (atomically) instead of standard output.
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
        /// Also draw LR and momentum against epoch into this figure (.svg or .png).
        #[arg(long)]
        plot: Option<PathBuf>,
        /// For kind = "plateau": the evaluations it follows, a CSV with `epoch` and any of
        /// test_loss, test_acc, train_loss, train_acc (a run's epochs.csv works).
        #[arg(long, value_name = "FILE.csv")]
        metrics: Option<PathBuf>,
        /// Override a key, in TOML value syntax: --set schedule.max_lr=0.5, --set
        /// preview.epochs=30 (in a run config any table.key, as for train).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Logarithmic LR axis in the --plot figure (zeros are drawn at the smallest LR).
        #[arg(long)]
        log_y: bool,
    },
    /// Print every model with its trainable parameter count and the input the count assumes, as CSV (model,params,input).
    Models {
        /// Classes, channels and image side of this dataset's runs (mnist, fashion-mnist,
        /// cifar10, cifar100, imagenet, imagenet16/32/64, synthetic); the flags below win.
        #[arg(long)]
        dataset: Option<String>,
        /// Number of classes [default: 10].
        #[arg(long)]
        classes: Option<i64>,
        /// Input channels [default: 3].
        #[arg(long)]
        in_channels: Option<i64>,
        /// Image side [default: 224 for the ImageNet models, 32 for the others].
        #[arg(long)]
        size: Option<i64>,
        /// Instead, print this model's trainable parameters as CSV (name,shape,numel): the
        /// names [[optim.group]] patterns select.
        #[arg(long, value_name = "ARCH")]
        params: Option<String>,
    },
    /// Train one run: `lrlab train RUN.toml [--set table.key=value]... [--out DIR]`.
    ///
    /// Running it again with the same --out resumes from the last checkpoint; a finished
    /// run is not run again.
    Train {
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
    },
    /// The LR range test: train while the learning rate ramps up, then suggest learning rates.
    FindLr(FindLrArgs),
    /// The super-convergence paper's Hessian-free estimates of the optimal learning rate
    /// along the first steps of a run (a short training, only for the curve).
    ///
    /// The schedule keeps the config's whole length; the training stops after --steps.
    /// Writes hf_lr.csv, hf_lr_layers.csv, steps.csv, config.toml, meta.json and the figure
    /// (figures/hf_lr.svg and .png) into the output folder.
    HfLr(HfLrArgs),
    /// Run a sweep spec's grid of runs (locally or as Slurm arrays); `sweep status DIR`.
    Sweep(lrlab::sweep::cli::SweepCommand),
    /// Write summary.csv, curves.csv and summary_by_point.csv of a sweep folder.
    Collect {
        /// The sweep folder.
        dir: PathBuf,
    },
    /// Draw the figures of a run, sweep, range-test or hf-lr folder as SVG and PNG.
    ///
    /// DIR is recognised by its files: epochs.csv (a run), lr_find.csv (a range test),
    /// hf_lr.csv (lrlab hf-lr), or run folders / summary.csv / curves.csv (a sweep). Figures
    /// go to DIR/figures.
    Plot(PlotArgs),
    /// Write DIR/report.md (tables, figures, the papers' numbers) and its figures.
    ///
    /// For a sweep, the [report] table of DIR/sweep.toml can give a title and the papers'
    /// numbers: [report.paper] "param=value, ..." = { test_error = 4.03, source = "..." }
    /// (or test_acc, in percent; optional epoch = N and note = "...").
    Report(ReportArgs),
    /// Evaluate a run's SGDR snapshots alone and as ensembles of the last M (softmax average).
    ///
    /// DIR is a run folder trained with train.snapshots = "restarts", or a sweep folder (every
    /// run in it with snapshots). Writes <run>/ensemble.csv and prints a table per run.
    Ensemble(EnsembleArgs),
    /// Measure lrlab's own components.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(clap::Args)]
struct HfLrArgs {
    /// Run config (data, model, optimizer, seed and schedule are used).
    config: PathBuf,
    /// Override a key of the run config: --set train.batch_size=256.
    #[arg(long = "set", value_name = "TABLE.KEY=VALUE")]
    set: Vec<String>,
    /// Steps to train (the authors' curve: iterations 1-297 of their run).
    #[arg(long, default_value_t = 300)]
    steps: u64,
    /// A window every this many steps, from step 1 on; 1 = the authors' curve.
    #[arg(long, default_value_t = 1)]
    every: u64,
    /// Spacing of a window's three iterates [default: the config's train.hf_lr_stride, 1];
    /// 10 with --every 10 = the authors' L2TermComputation4.py.
    #[arg(long)]
    stride: Option<u64>,
    /// Sum over the trainable parameters only, or also log the sum over every Caffe blob
    /// (batch norm's accumulators) as the authors' script did [default: the config's
    /// train.hf_lr_blobs, trainable].
    #[arg(long, value_parser = ["trainable", "caffe"])]
    blobs: Option<String>,
    /// Output folder [default: out/<config stem>-hf_lr].
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(clap::Args)]
struct FindLrArgs {
    /// Run config (its data, model, optimizer and seed are used; its schedule is not).
    config: PathBuf,
    /// Override a key of the run config: --set data.train_subset=5000.
    #[arg(long = "set", value_name = "TABLE.KEY=VALUE")]
    set: Vec<String>,
    /// First learning rate [default: the config's lr_find.start_lr, else 1e-7].
    #[arg(long)]
    start_lr: Option<f64>,
    /// Last learning rate, reached at the last step [default: 10].
    #[arg(long)]
    end_lr: Option<f64>,
    /// Number of steps [default: 100].
    #[arg(long, conflicts_with = "epochs")]
    steps: Option<u64>,
    /// Length in epochs instead of steps.
    #[arg(long)]
    epochs: Option<f64>,
    /// Ramp: exp (geometric) or linear (Smith's).
    #[arg(long)]
    mode: Option<lrlab::config::RampMode>,
    /// What to watch: loss, or held-out accuracy (Smith's original test).
    #[arg(long)]
    metric: Option<String>,
    /// Smoothing factor of the loss moving average [default: 0.98].
    #[arg(long)]
    beta: Option<f64>,
    /// Stop when the smoothed loss exceeds this many times its best; 0 = never [default: 4].
    #[arg(long)]
    stop_factor: Option<f64>,
    /// lr_finder (end_lr reached at the last step; a non-finite loss stops the test) or
    /// fastai (fastai's LRFinder: lr_k = start·(end/start)^(k/steps), on past a NaN)
    /// [default: the config's lr_find.convention, lr_finder].
    #[arg(long)]
    convention: Option<lrlab::config::FindConvention>,
    /// Output folder [default: out/<config stem>-lr_find].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also draw the curve with the suggestions marked (figures/lr_find.svg and .png).
    #[arg(long)]
    plot: bool,
}

#[derive(clap::Args)]
struct EnsembleArgs {
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
    device: Option<String>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// `lrlab ensemble`: evaluate, write each run's ensemble.csv, print the tables.
fn ensemble(a: EnsembleArgs) -> anyhow::Result<()> {
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
        return Ok(());
    }
    for r in ens::ensemble_dir(&args)? {
        print!("{}", ens::table(&r));
        println!("  -> {}", r.run.join(ens::csv_name(args.last)).display());
    }
    Ok(())
}

#[derive(clap::Args)]
struct FigureArgs {
    /// Logarithmic y axes for error and loss.
    #[arg(long)]
    log_y: bool,
    /// Band around a mean over seeds: minmax, std (mean ± 1 std) or none.
    #[arg(long, default_value = "minmax", value_parser = ["minmax", "std", "none"])]
    band: String,
}

impl FigureArgs {
    fn options(&self) -> lrlab::report::FigureOptions {
        use lrlab::report::BandKind;
        lrlab::report::FigureOptions {
            log_y: self.log_y,
            band: match self.band.as_str() {
                "std" => BandKind::Std,
                "none" => BandKind::None,
                _ => BandKind::MinMax,
            },
        }
    }
}

#[derive(clap::Args)]
struct PlotArgs {
    /// A run, sweep or range-test folder.
    dir: PathBuf,
    #[command(flatten)]
    figure: FigureArgs,
    /// Write the figures here instead of DIR/figures.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ReportArgs {
    /// A run, sweep or range-test folder.
    dir: PathBuf,
    #[command(flatten)]
    figure: FigureArgs,
}

/// Print written paths, one per line.
fn print_paths(paths: &[PathBuf]) {
    for p in paths {
        println!("{}", p.display());
    }
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Training images per second on synthetic data (prints JSON with --json).
    Train(BenchTrainArgs),
    /// Images per second of the training data loader (augmentation, tensors on the CPU).
    Data(lrlab::data::bench::DataBenchArgs),
    /// Nanoseconds per training step of each schedule family's lr(k) and momentum(k).
    Schedule(BenchScheduleArgs),
}

#[derive(clap::Args)]
struct BenchScheduleArgs {
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
struct BenchTrainArgs {
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
    device: String,
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

/// `lrlab models`: one CSV row per model; a model that cannot take the input gets an empty
/// count and a note on stderr.
fn models(
    dataset: Option<String>,
    classes: Option<i64>,
    in_channels: Option<i64>,
    size: Option<i64>,
    params: Option<String>,
) -> anyhow::Result<()> {
    let from_data = match dataset {
        None => None,
        Some(d) => {
            let name: lrlab::data::DatasetName =
                toml::Value::String(d.clone()).try_into().map_err(|_| {
                    let all: Vec<&str> = lrlab::data::DatasetName::ALL
                        .iter()
                        .map(|n| n.as_str())
                        .collect();
                    lrlab::input_error(format!(
                        "--dataset {d:?}: expected one of {}",
                        all.join(", ")
                    ))
                })?;
            Some(name.input())
        }
    };
    let classes = classes.or(from_data.map(|d| d.0)).unwrap_or(10);
    let in_channels = in_channels.or(from_data.map(|d| d.1)).unwrap_or(3);
    let size = size.or(from_data.map(|d| d.2));
    if let Some(arch) = params {
        println!("name,shape,numel");
        for (name, shape) in lrlab::models::param_names(&arch, classes, in_channels, size)? {
            let dims: Vec<String> = shape.iter().map(i64::to_string).collect();
            println!(
                "{name},{},{}",
                dims.join("x"),
                shape.iter().product::<i64>()
            );
        }
        return Ok(());
    }
    let rows = lrlab::models::param_table(classes, in_channels, size)?;
    // The input each count assumes: classes and a CxHxW image.
    println!("model,params,input");
    for (name, side, count) in rows {
        let input = format!("{classes} classes {in_channels}x{side}x{side}");
        match count {
            Ok(n) => println!("{name},{n},{input}"),
            Err(why) => {
                println!("{name},,{input}");
                eprintln!("note: {why}");
            }
        }
    }
    Ok(())
}

/// `lrlab train`: returns the exit status for the outcome.
fn train(
    config: PathBuf,
    set: Vec<String>,
    out: Option<PathBuf>,
    quiet: bool,
) -> anyhow::Result<u8> {
    let args = lrlab::launch::TrainArgs {
        config,
        overrides: set,
        out,
        progress: !quiet,
    };
    let (out, outcome) = lrlab::launch::train_file(&args)?;
    // In a multi-process run rank 0 speaks for every rank.
    let rank = std::env::var("RANK").unwrap_or_default();
    if !rank.is_empty() && rank != "0" {
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

/// `lrlab find-lr`: run the range test, write its files, print the suggestions.
fn find_lr(a: FindLrArgs) -> anyhow::Result<()> {
    let cfg = lrlab::config::RunConfig::load(&a.config, &a.set)?;
    // The config's own [lr_find] first, so its errors name its keys.
    cfg.lr_find
        .validate()
        .map_err(|e| lrlab::input_error(format!("{}: {e}", a.config.display())))?;
    let mut fc = cfg.lr_find.clone();
    if let Some(x) = a.start_lr {
        fc.start_lr = x;
    }
    if let Some(x) = a.end_lr {
        fc.end_lr = x;
    }
    if let Some(x) = a.steps {
        fc.steps = x;
    }
    if let Some(x) = a.epochs {
        fc.steps = 0;
        fc.epochs = x;
    }
    if let Some(x) = a.mode {
        fc.mode = x;
    }
    if let Some(x) = a.metric {
        fc.metric = match x.as_str() {
            "loss" => lrlab::config::Metric::Loss,
            "accuracy" => lrlab::config::Metric::Accuracy,
            _ => lrlab::bail_input!("--metric {x:?}: expected loss or accuracy"),
        };
    }
    if let Some(x) = a.beta {
        fc.beta = x;
    }
    if let Some(x) = a.stop_factor {
        fc.stop_factor = x;
    }
    if let Some(x) = a.convention {
        fc.convention = x;
    }
    // What is wrong now came from a flag: name the flag.
    fc.validate().map_err(|e| {
        let mut msg = e.to_string();
        for key in [
            "start_lr",
            "end_lr",
            "steps",
            "epochs",
            "mode",
            "beta",
            "stop_factor",
            "convention",
        ] {
            msg = msg.replace(
                &format!("lr_find.{key}"),
                &format!("--{}", key.replace('_', "-")),
            );
        }
        lrlab::input_error(msg)
    })?;
    let out = a
        .out
        .unwrap_or_else(|| lrlab::train::setup::default_out(&a.config, "-lr_find"));
    let r = lrlab::lr_find::range_test(&cfg, &fc, true)?;
    lrlab::lr_find::write(&out, &fc, &r, None)?;
    if let Some(why) = &r.stopped {
        eprintln!("stopped early: {why}");
    }
    println!("rule,lr");
    for s in &r.suggestions {
        println!("{},{}", s.rule, s.lr);
    }
    // A doubtful value is said where it is printed, with the fix.
    let doubts: Vec<String> = if r.no_edge {
        r.doubt(&fc.rule, &fc).into_iter().collect()
    } else {
        r.suggestions
            .iter()
            .filter_map(|s| r.doubt(&s.rule, &fc))
            .collect()
    };
    for d in doubts {
        eprintln!("warning: {d}");
    }
    if a.plot {
        let opts = lrlab::report::FigureOptions::default();
        for p in lrlab::report::plot_dir(&out, None, opts)? {
            eprintln!("{}", p.display());
        }
    }
    eprintln!(
        "{} steps; curve and suggestions in {}",
        r.lr.len(),
        out.display()
    );
    Ok(())
}

fn hf_lr(a: HfLrArgs) -> anyhow::Result<()> {
    let mut set = a.set.clone();
    if let Some(k) = a.stride {
        set.push(format!("train.hf_lr_stride={k}"));
    }
    if let Some(b) = &a.blobs {
        set.push(format!("train.hf_lr_blobs=\"{b}\""));
    }
    let cfg = lrlab::config::RunConfig::load(&a.config, &set)?;
    let out = a
        .out
        .unwrap_or_else(|| lrlab::train::setup::default_out(&a.config, "-hf_lr"));
    let r = lrlab::lr_find::hessian_free::run(&cfg, a.steps, a.every, true)?;
    lrlab::lr_find::hessian_free::write(&out, &cfg, a.every, &r)?;
    if let Some(why) = &r.stopped {
        eprintln!("stopped early: {why}");
    }
    let paths = lrlab::report::plot_dir(&out, None, lrlab::report::FigureOptions::default())?;
    let caffe = cfg.train.hf_lr_blobs == lrlab::config::HfBlobs::Caffe;
    println!(
        "{}",
        lrlab::train::hf_lr::header(caffe).replacen(",epoch", "", 1)
    );
    for e in &r.estimates {
        let mut f = e.fields(r.steps_per_epoch);
        f.remove(1);
        println!("{}", f.join(","));
    }
    for p in paths {
        eprintln!("{}", p.display());
    }
    eprintln!(
        "{} steps, {} windows; estimates in {}",
        r.steps.len(),
        r.estimates.len(),
        out.display()
    );
    Ok(())
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
        device: a.device.clone(),
        size: a.size,
        classes: a.classes,
        bucket_mb: a.bucket_mb,
    };
    // A rank started by the launcher below (or by torchrun).
    if let Some(r) = lrlab::launch::rendezvous_from_env(60.0)? {
        let group = lrlab::dist::Group::join(&r)?;
        let r = lrlab::train::bench::bench_train(&args, Some(&group))?;
        if group.rank() == 0 {
            println!("{}", serde_json::to_string(&r)?);
        }
        return Ok(());
    }
    let nproc = a.nproc as usize;
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
    let mut argv: Vec<std::ffi::OsString> = vec!["bench".into(), "train".into()];
    for (k, v) in [
        ("--model", a.model.clone()),
        ("--batch", a.batch.to_string()),
        ("--steps", a.steps.to_string()),
        ("--warmup", a.warmup.to_string()),
        ("--threads", a.threads.to_string()),
        ("--device", a.device.clone()),
        ("--size", a.size.to_string()),
        ("--classes", a.classes.to_string()),
        ("--bucket-mb", a.bucket_mb.to_string()),
    ] {
        argv.push(k.into());
        argv.push(v.into());
    }
    let (code, output) = lrlab::launch::spawn_ranks(&argv, nproc, |_| false, true)?;
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

/// `lrlab bench train --overhead`: the harness share of a CPU training step.
fn bench_overhead(a: BenchTrainArgs) -> anyhow::Result<()> {
    if !matches!(a.device.as_str(), "auto" | "cpu") {
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

fn main() -> ExitCode {
    lrlab::train::device::keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info => {
            print!("{}", lrlab::train::device::info_text());
            Ok(0)
        }
        Command::Schedule {
            spec,
            epochs,
            steps_per_epoch,
            momentum,
            out,
            plot,
            metrics,
            set,
            log_y,
        } => {
            // A run config gives its own length, unless both flags do.
            let run = match (epochs, steps_per_epoch) {
                (Some(_), Some(_)) => Ok(None),
                _ => lrlab::launch::run_length_of(&spec, &set),
            };
            run.and_then(|run| {
                let args = lrlab::schedule::cli::RenderArgs {
                    spec,
                    epochs,
                    steps_per_epoch,
                    momentum,
                    out,
                    plot,
                    run,
                    metrics,
                    set,
                    log_y,
                };
                lrlab::schedule::cli::render(&args).map(|_| 0)
            })
        }
        Command::Models {
            dataset,
            classes,
            in_channels,
            size,
            params,
        } => models(dataset, classes, in_channels, size, params).map(|_| 0),
        Command::Train {
            config,
            set,
            out,
            quiet,
            nproc,
        } if nproc > 1 => {
            let args = lrlab::launch::TrainArgs {
                config,
                overrides: set,
                out,
                progress: !quiet,
            };
            lrlab::launch::launch_ranks(&args, nproc as usize, quiet)
        }
        Command::Train {
            config,
            set,
            out,
            quiet,
            ..
        } => train(config, set, out, quiet),
        Command::FindLr(a) => find_lr(a).map(|_| 0),
        Command::HfLr(a) => hf_lr(a).map(|_| 0),
        Command::Sweep(c) => lrlab::sweep::cli::sweep_main(c),
        Command::Collect { dir } => lrlab::sweep::cli::collect_main(&dir),
        Command::Plot(a) => lrlab::report::plot_dir(&a.dir, a.out.as_deref(), a.figure.options())
            .map(|p| print_paths(&p))
            .map(|_| 0),
        Command::Report(a) => lrlab::report::report_dir(&a.dir, a.figure.options())
            .map(|p| print_paths(&p))
            .map(|_| 0),
        Command::Ensemble(a) => ensemble(a).map(|_| 0),
        Command::Bench {
            command: BenchCommand::Train(a),
        } => bench_train(a).map(|_| 0),
        Command::Bench {
            command: BenchCommand::Data(a),
        } => bench_data(&a).map(|_| 0),
        Command::Bench {
            command: BenchCommand::Schedule(a),
        } => bench_schedule(&a).map(|_| 0),
    };
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
