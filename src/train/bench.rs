//! `lrlab bench train`: training images/s on synthetic data, the whole step as the loop
//! runs it ([`Stepper::step`]: seeding, forward, loss, backward, the gradients' reduction
//! over several processes, lrlab's optimizer), with a decaying LR.
//! `bench/train_pytorch.py` does the same steps in PyTorch eager for comparison.

use super::device::{resolve_device, set_threads};
use super::step::{Input, Stepper};
use crate::config::RunConfig;
use crate::distributed::Group;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::time::Instant;
use tch::{Kind, Tensor};

/// Options of `lrlab bench train`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchTrainArgs {
    /// Architecture name (`resnet20`, ...).
    pub model: String,
    /// Batch size.
    pub batch: usize,
    /// Timed steps.
    pub steps: u64,
    /// Untimed warm-up steps.
    pub warmup: u64,
    /// CPU threads (0 = all available cores).
    pub threads: usize,
    /// `auto`, `cpu`, `cuda`, `cuda:N`.
    pub device: crate::config::DeviceSpec,
    /// Input size (height = width), e.g. 32 for CIFAR, 224 for ImageNet models.
    pub size: i64,
    /// Classes.
    pub classes: i64,
    /// Gradient bucket cap over several processes, in MiB (0: one collective per gradient).
    pub bucket_mb: f64,
}

/// The measurement.
#[derive(Clone, Debug, Serialize)]
pub struct BenchTrainResult {
    /// Always `lrlab`.
    pub r#impl: &'static str,
    /// Architecture.
    pub model: String,
    /// Batch size.
    pub batch: usize,
    /// Timed steps.
    pub steps: u64,
    /// CPU threads.
    pub threads: usize,
    /// Device.
    pub device: String,
    /// Processes the batch is split over (each with `threads` threads).
    pub world_size: usize,
    /// Training throughput (over every process).
    pub images_per_sec: f64,
}

/// The step a benchmark times: a run of `model` with the default optimizer and seed, on
/// `size`x`size` RGB images of `classes` classes.
pub(super) fn stepper_of<'g>(
    model: &str,
    size: i64,
    classes: i64,
    device: tch::Device,
    bf16: bool,
    group: Option<&'g Group>,
) -> Result<Stepper<'g>> {
    let cfg = RunConfig::from_toml_str(&format!(
        "[data]\ndataset = \"synthetic\"\n[model]\narch = {}\n[schedule]\nkind = \"constant\"\nlr = 0.1\n",
        toml::Value::from(model)
    ))?;
    let input = Input {
        channels: 3,
        size,
        classes,
    };
    Stepper::build(&cfg, input, device, bf16, group)
}

/// Run the benchmark; in a rank of `group`, on this rank's share of each batch, with the
/// gradients averaged over the ranks as the training loop averages them.
pub fn bench_train(a: &BenchTrainArgs, group: Option<&Group>) -> Result<BenchTrainResult> {
    let device = resolve_device(a.device)?;
    let threads = set_threads(a.threads);
    let world = group.map_or(1, |g| g.world());
    super::setup::check_split(
        &format!("--batch {}", a.batch),
        a.batch,
        world,
        &format!("--nproc {world}"),
    )?;
    let bucket = (a.bucket_mb * (1 << 20) as f64) as usize;
    // On CUDA in bf16 autocast, as runs there use it.
    let mut stepper = stepper_of(&a.model, a.size, a.classes, device, device.is_cuda(), group)?
        .with_bucket_bytes(bucket);
    // Every rank starts from rank 0's weights, as in training.
    stepper.broadcast()?;
    let b = a.batch / world;
    let x = Tensor::randn([b as i64, 3, a.size, a.size], (Kind::Float, device));
    let batch = crate::data::Batch {
        images: crate::util::channels_last(&x),
        labels: Tensor::randint(a.classes, [b as i64], (Kind::Int64, device)),
        index: 0,
        part: (group.map_or(0, |g| g.rank()) * b, a.batch),
    };
    let mut step = |k: u64| -> Result<Tensor> {
        let lr = 0.1 * (1.0 - k as f64 / 10000.0);
        Ok(stepper.step(&batch, k, lr, 0.9)?.0)
    };
    for k in 0..a.warmup {
        let _ = step(k)?;
    }
    if device.is_cuda() {
        tch::Cuda::synchronize(0);
    }
    let t0 = Instant::now();
    let mut last = None;
    for k in 0..a.steps {
        last = Some(step(a.warmup + k)?);
    }
    if let Some(l) = last {
        let _ = f64::try_from(&l)?;
    }
    if device.is_cuda() {
        tch::Cuda::synchronize(0);
    }
    let dt = t0.elapsed().as_secs_f64();
    Ok(BenchTrainResult {
        r#impl: "lrlab",
        model: a.model.clone(),
        batch: a.batch,
        steps: a.steps,
        threads,
        device: super::device::device_name(device),
        world_size: world,
        images_per_sec: (a.batch as f64 * a.steps as f64) / dt,
    })
}
