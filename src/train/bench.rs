//! `lrlab bench train`: training images/s on synthetic data, the whole step as the loop
//! runs it (schedule evaluated, LR and momentum set, forward, backward, lrlab's optimizer).
//! `bench/train_pytorch.py` does the same steps in PyTorch eager for comparison.

use super::device::{resolve_device, set_threads};
use super::optim::Optimizer;
use super::sync::GradSync;
use crate::config::OptimConfig;
use crate::dist::Group;
use crate::models::{self, ModelConfig};
use anyhow::Result;
use serde::Serialize;
use std::time::Instant;
use tch::{nn::VarStore, Kind, Reduction, Tensor};

/// Options of `lrlab bench train`.
#[derive(Clone, Debug)]
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
    pub device: String,
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

/// Run the benchmark; in a rank of `group`, on this rank's share of each batch, with the
/// gradients averaged over the ranks as the training loop averages them.
pub fn bench_train(a: &BenchTrainArgs, group: Option<&Group>) -> Result<BenchTrainResult> {
    let device = resolve_device(&a.device)?;
    let threads = set_threads(a.threads);
    tch::manual_seed(0);
    let vs = VarStore::new(device);
    let cfg = ModelConfig {
        arch: a.model.clone(),
        ..ModelConfig::default()
    };
    let model = models::build(&vs.root(), &cfg, 3, a.classes, a.size)?;
    // The step runs as the training loop runs it: channels-last; on CUDA bf16 autocast.
    models::weights_to_channels_last(&vs);
    let cuda = device.is_cuda();
    if cuda {
        tch::Cuda::cudnn_set_benchmark(true);
        super::device::set_autocast_bf16()?;
    }
    let mut opt = Optimizer::new(&vs, &OptimConfig::default())?;
    let world = group.map_or(1, |g| g.world());
    super::trainer::check_split(
        &format!("--batch {}", a.batch),
        a.batch,
        world,
        &format!("--nproc {world}"),
    )?;
    let sync = match group {
        Some(g) => {
            // Every rank starts from rank 0's weights, as in training.
            super::trainer::broadcast_vars(g, &vs, |_| true)?;
            GradSync::Ranks(g)
        }
        None => GradSync::Local,
    };
    let bucket = (a.bucket_mb * (1 << 20) as f64) as usize;
    let b = (a.batch / world) as i64;
    let x = Tensor::randn([b, 3, a.size, a.size], (Kind::Float, device));
    let x = crate::util::channels_last(&x);
    let y = Tensor::randint(a.classes, [b], (Kind::Int64, device));
    let mut step = |k: u64| -> Result<Tensor> {
        let lr = 0.1 * (1.0 - k as f64 / 10000.0);
        let logits = tch::autocast(cuda, || model.net.forward_t(&x, true));
        let loss = logits.cross_entropy_loss::<Tensor>(&y, None, Reduction::Mean, -100, 0.0);
        opt.zero_grad();
        let synced = sync.backward(&loss, b as usize, || opt.grads(), false, bucket)?;
        opt.step(lr, 0.9);
        Ok(synced.loss)
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
