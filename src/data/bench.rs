//! `lrlab bench data`: throughput of the training loader (augmentation, normalisation,
//! tensors on the CPU), in images per second.

use super::config::{parse_augment, DataConfig, DatasetName};
use crate::error::input_error;
use anyhow::Result;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// Options of `lrlab bench data`.
#[derive(Clone, Debug)]
pub struct DataBenchArgs {
    /// Dataset: mnist, fashion-mnist, cifar10, cifar100, synthetic.
    pub dataset: String,
    /// Dataset folder (default: the dataset's, if it has one).
    pub path: Option<PathBuf>,
    /// Images per batch.
    pub batch: usize,
    /// Batches to time (after one untimed warm-up batch); epochs wrap around.
    pub batches: usize,
    /// Loader worker threads (0: automatic).
    pub workers: usize,
    /// Augmentation: none, flip, crop_flip, random_resized_crop (default: the dataset's).
    pub augment: Option<String>,
    /// Synthetic image shape as C,H,W (default 3,32,32).
    pub shape: Option<String>,
    /// libtorch threads of the consuming thread (which converts and normalises batches;
    /// in a run, the training thread).
    pub threads: i32,
    /// Seed of the data order and augmentation.
    pub seed: u64,
    /// Print one JSON object instead of a sentence.
    pub json: bool,
}

/// What `lrlab bench data` measured.
#[derive(Clone, Debug, Serialize)]
pub struct DataBenchResult {
    /// Dataset name.
    pub dataset: String,
    /// Augmentation name.
    pub augment: String,
    /// Images per batch.
    pub batch: usize,
    /// Batches timed.
    pub batches: usize,
    /// Loader worker threads.
    pub workers: usize,
    /// Images delivered in the timed batches.
    pub images: u64,
    /// Seconds for the timed batches.
    pub seconds: f64,
    /// `images / seconds`.
    pub images_per_sec: f64,
}

impl DataBenchResult {
    /// One line for people.
    pub fn sentence(&self) -> String {
        format!(
            "{}: {} batches of {} ({} images) in {:.3} s: {:.0} images/s \
             ({} workers, augment {})",
            self.dataset,
            self.batches,
            self.batch,
            self.images,
            self.seconds,
            self.images_per_sec,
            self.workers,
            self.augment
        )
    }
}

/// The `[data]` config the benchmark runs.
pub fn bench_config(args: &DataBenchArgs) -> Result<DataConfig> {
    let mut cfg = DataConfig {
        dataset: args.dataset.parse::<DatasetName>()?,
        path: args.path.clone(),
        workers: args.workers,
        ..DataConfig::default()
    };
    if let Some(a) = &args.augment {
        cfg.augment = Some(parse_augment(a)?);
    }
    if let Some(s) = &args.shape {
        let dims: Vec<usize> = s
            .split(',')
            .map(|d| d.trim().parse::<usize>())
            .collect::<Result<_, _>>()
            .map_err(|_| input_error(format!("--shape {s:?}: expected C,H,W")))?;
        cfg.shape = dims
            .try_into()
            .map_err(|_| input_error(format!("--shape {s:?}: expected C,H,W")))?;
    }
    Ok(cfg)
}

/// Time `args.batches` training batches (tensors on the CPU) after one warm-up batch.
pub fn bench_data(args: &DataBenchArgs) -> Result<DataBenchResult> {
    if args.batches == 0 {
        return Err(input_error("--batches 0: must be at least 1"));
    }
    if args.threads < 1 {
        return Err(input_error(format!(
            "--threads {}: must be at least 1",
            args.threads
        )));
    }
    let cfg = bench_config(args)?;
    tch::set_num_threads(args.threads);
    let data = super::load(&cfg, args.batch, args.batch, args.seed, tch::Device::Cpu)?;
    let per_epoch = data.train.batches_per_epoch();
    let mut epoch = 0u64;
    let mut iter = data.train.epoch(epoch, 0);
    let mut next = || -> Result<super::Batch> {
        loop {
            if let Some(b) = iter.next() {
                return b;
            }
            epoch += 1;
            iter = data.train.epoch(epoch, 0);
            anyhow::ensure!(per_epoch > 0, "the training loader has no batch");
        }
    };
    next()?;
    let t0 = Instant::now();
    let mut images = 0u64;
    for _ in 0..args.batches {
        images += next()?.labels.size()[0] as u64;
    }
    let seconds = t0.elapsed().as_secs_f64();
    Ok(DataBenchResult {
        dataset: cfg.dataset.to_string(),
        augment: cfg.augment().name().to_string(),
        batch: args.batch,
        batches: args.batches,
        workers: cfg.worker_count(),
        images,
        seconds,
        images_per_sec: images as f64 / seconds,
    })
}
