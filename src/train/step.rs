//! One optimizer step of a run as configured, and the one setup it runs on. Training, the LR
//! range test, `lrlab hf-lr` and `lrlab bench train` all step through a [`Stepper`], so that
//! what the range test and the benchmarks measure is the run's own step: the same model
//! setup, dropout seeding, precision, loss, gradient synchronisation, clipping and update.

use super::device::set_autocast_bf16;
use super::hf_lr;
use super::optim::Optimizer;
use super::setup::Setup;
use crate::config::RunConfig;
use crate::data;
use crate::distributed::Group;
use crate::models;
use anyhow::Result;
use tch::{nn::VarStore, Device, Kind, Reduction, Tensor};

pub use crate::distributed::GradSync;
use crate::distributed::{Reducer, BUCKET_BYTES};

/// What the model is built for: input channels and size, classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Input {
    /// Image channels.
    pub channels: i64,
    /// Image side in pixels.
    pub size: i64,
    /// Classes of the labels.
    pub classes: i64,
}

impl Input {
    /// The input of a run's data.
    pub fn of(data: &data::Data) -> Input {
        Input {
            channels: data.in_channels,
            size: data.image_size,
            classes: data.num_classes,
        }
    }
}

/// Build the model of `cfg` for `input` on `device`, seeded with `train.seed`, in the memory
/// format the device prefers.
pub fn build_model(
    cfg: &RunConfig,
    input: Input,
    device: Device,
) -> Result<(VarStore, models::Model)> {
    tch::manual_seed(cfg.train.seed as i64);
    let vs = VarStore::new(device);
    let model = models::build(
        &vs.root(),
        &cfg.model,
        input.channels,
        input.classes,
        input.size,
    )?;
    // cuDNN and oneDNN (CPU) both run NHWC convolutions faster: 10-30% per CPU training step
    // here (LeNet, the Caffe net, resnet20/56; `lrlab bench train`). The loader's batches are
    // channels-last too.
    models::weights_to_channels_last(&vs);
    Ok((vs, model))
}

/// A run's model, optimizer and gradient synchronisation, stepping as the run does.
pub struct Stepper<'g> {
    /// The model's parameters and buffers.
    pub vs: VarStore,
    /// The network.
    pub model: models::Model,
    /// The optimizer with its state.
    pub optim: Optimizer,
    /// One process, or this rank's share of a run over several.
    pub sync: GradSync<'g>,
    bf16: bool,
    seed: u64,
    label_smoothing: f64,
    grad_clip: f64,
}

impl<'g> Stepper<'g> {
    /// The run `cfg` ready to train on `setup`'s device and data, as one process or as a rank
    /// of `group`.
    pub fn new(cfg: &RunConfig, setup: &Setup, group: Option<&'g Group>) -> Result<Stepper<'g>> {
        Stepper::build(cfg, Input::of(&setup.data), setup.device, setup.bf16, group)
    }

    /// The run `cfg` for `input` on `device` (bf16 autocast when `bf16`), as one process or as
    /// a rank of `group`: the model built and seeded, its optimizer, cuDNN's autotuner on
    /// CUDA. The ranks' weights are not yet made equal ([`Stepper::broadcast`]).
    pub fn build(
        cfg: &RunConfig,
        input: Input,
        device: Device,
        bf16: bool,
        group: Option<&'g Group>,
    ) -> Result<Stepper<'g>> {
        let (vs, model) = build_model(cfg, input, device)?;
        let optim = Optimizer::new(&vs, &cfg.optim)?;
        if device.is_cuda() {
            tch::Cuda::cudnn_set_benchmark(true);
        }
        if bf16 {
            set_autocast_bf16()?;
        }
        Ok(Stepper {
            vs,
            model,
            optim,
            sync: match group {
                Some(g) => GradSync::Ranks(Reducer::new(g, BUCKET_BYTES)),
                None => GradSync::Local,
            },
            bf16,
            seed: cfg.train.seed,
            label_smoothing: cfg.train.label_smoothing,
            grad_clip: cfg.train.grad_clip,
        })
    }

    /// Gradients reduced in buckets of `bytes` (0: one collective per gradient), for the
    /// benchmark's comparison.
    pub fn with_bucket_bytes(mut self, bytes: usize) -> Self {
        if let GradSync::Ranks(r) = &self.sync {
            self.sync = GradSync::Ranks(Reducer::new(r.group(), bytes));
        }
        self
    }

    /// Every rank's weights and buffers made rank 0's, as DDP starts (one process: nothing).
    pub fn broadcast(&self) -> Result<()> {
        match &self.sync {
            GradSync::Local => Ok(()),
            GradSync::Ranks(r) => r.group().broadcast_vars(&self.vs, |_| true),
        }
    }

    /// The forward pass of step `k` on `batch` (libtorch's generator seeded for the step,
    /// under bf16 autocast when `bf16`) and its loss: cross-entropy with the run's label
    /// smoothing, in f32. Returns the loss (with its graph) and the logits.
    fn loss(&self, batch: &data::Batch, k: u64, bf16: bool) -> (Tensor, Tensor) {
        tch::manual_seed(step_seed(self.seed, k));
        // A rank's dropout keeps its rows of the whole batch's mask.
        let _part = models::init::BatchPart::set(batch.part);
        let logits = tch::autocast(bf16, || self.model.net.forward_t(&batch.images, true));
        let loss = logits.to_kind(Kind::Float).cross_entropy_loss::<Tensor>(
            &batch.labels,
            None,
            Reduction::Mean,
            -100,
            self.label_smoothing,
        );
        (loss, logits)
    }

    /// Optimizer step `k` on `batch` with `lr` and `momentum`: the forward pass and loss
    /// ([`Stepper::loss`]), backward, the gradient synchronisation (one process: none), the
    /// run's gradient clipping, the update. Returns the loss (over several processes: the
    /// global batch's mean) and the logits, detached. Fails only when a collective fails (a
    /// peer died or timed out).
    pub fn step(
        &mut self,
        batch: &data::Batch,
        k: u64,
        lr: f64,
        momentum: f64,
    ) -> Result<(Tensor, Tensor)> {
        let (loss, logits) = self.loss(batch, k, self.bf16);
        self.optim.zero_grad();
        let n = batch.labels.size()[0] as usize;
        let optim = &self.optim;
        let synced =
            self.sync
                .backward(&loss, n, || optim.grads(), crate::train::stop::requested())?;
        // A stop requested on any rank stops every rank after this same step (with a
        // checkpoint): the loop reads the value that travelled, not its own flag.
        if synced.stop {
            crate::train::stop::stop_due();
        }
        if synced.checkpoint {
            crate::train::stop::checkpoint_due();
        }
        if self.grad_clip > 0.0 {
            self.optim.clip_grad_norm(self.grad_clip);
        }
        self.optim.step(lr, momentum);
        Ok((synced.loss, logits.detach()))
    }

    /// The curvature along the gradient (gᵀg / gᵀHg, [`hf_lr::curvature`]) of the loss of
    /// `batch` over `params` at the current weights, for the Hessian-free estimate: the
    /// forward pass as step `k`'s own (train mode, the step's dropout seed, label smoothing)
    /// but in fp32, without weight decay (the optimizer's). The batch-norm running statistics
    /// this forward pass moves are put back, and no `.grad` is touched, so the training goes
    /// on exactly as without it. A rank of a multi-process run measures the global batch's
    /// ([`hf_lr::curvature_over`]).
    pub fn curvature(
        &self,
        params: &[(String, Tensor)],
        batch: &data::Batch,
        k: u64,
    ) -> Result<(hf_lr::Terms, Vec<(String, hf_lr::Terms)>)> {
        let buffers: Vec<(String, Tensor)> = tch::no_grad(|| {
            self.vs
                .variables()
                .into_iter()
                .filter(|(_, v)| !v.requires_grad())
                .map(|(n, v)| (n, v.copy()))
                .collect()
        });
        let (loss, _) = self.loss(batch, k, false);
        let n = batch.labels.size()[0] as usize;
        let c = match &self.sync {
            GradSync::Local => Ok(hf_lr::curvature(&loss, params)),
            GradSync::Ranks(r) => {
                hf_lr::curvature_over(&loss, params, n, &mut |ts| r.group().all_reduce_sum(ts))
            }
        };
        models::restore_vars(&self.vs, &buffers);
        c
    }
}

/// Seed of libtorch's generator for step `k`: dropout and any other torch randomness are a
/// function of (seed, step), so a resumed run draws the same numbers.
pub(crate) fn step_seed(seed: u64, step: u64) -> i64 {
    let mut x = seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((x ^ (x >> 31)) >> 1) as i64
}
