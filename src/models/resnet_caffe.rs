//! The super-convergence authors' Caffe CIFAR ResNets (lnsmith54/super-convergence:
//! `Resnet56Cifar.prototxt`, and the `arch.prototxt` their training logs print), which differ
//! from He et al.'s option A ([`super::resnet_cifar`]):
//!
//! - every convolution has a bias (Caffe's `constant` filler: 0), weights `msra`
//!   (N(0, 2/fan_in));
//! - the first block of stages 2 and 3 keeps its input width (16→16, 32→32) with a stride-2
//!   first convolution; its shortcut is a 3×3 average pooling with stride 2 (Caffe's rounding
//!   up: 32 → 16 → 8; a window over the border divides by the pixels inside), and the
//!   zero channels that widen the stage are concatenated after the sum and its ReLU, so the
//!   next block's identity shortcut carries them;
//! - each convolution is followed by Caffe's BatchNorm + Scale (γ 1, β 0: torch's batch
//!   norm with its affine parameters);
//! - global 8×8 average pooling and `FC_final`, Xavier-initialised (U(±√(3/fan_in))), bias 0.
//!
//! Per-blob multipliers (conv biases lr_mult 2 / decay_mult 0 in the logs' net, the
//! classifier's bias lr_mult 2 with Caffe's default decay_mult 1) belong to the optimizer
//! (`bias_lr_mult`, `bias_decay_mult`, `[[optim.group]]`), not to this module.
//!
//! Variables (lrlab's names for the prototxt's layers): `conv1` + `bn1` (`conv`,
//! `batchNorm_conv`/`scale_conv`), `layer{1,2,3}.{i}.{conv1,bn1,conv2,bn2}` (`Conv16_{i+1}`,
//! `Conv16_{i+1}_b`; `resblk32`, `resblk32_b`, `resblk32_{i}`, …), `linear` (`FC_final`).
//! Parameters of ResNet-56 for CIFAR-10: 808,682 (hand count in `tests/models.rs`).

use super::init::{self, BiasInit, ConvSpec, WeightInit};
use tch::{nn, Tensor};

/// Stage widths.
const WIDTHS: [i64; 3] = [16, 32, 64];

/// A block: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), then zero channels.
#[derive(Debug)]
struct Block {
    conv1: nn::Conv2D,
    bn1: init::Bn,
    conv2: nn::Conv2D,
    bn2: init::Bn,
    /// Stride 2 and the average-pooling shortcut (first block of stages 2 and 3).
    down: bool,
    /// Zero channels concatenated after the block's ReLU (to the next stage's width).
    widen: i64,
}

impl Block {
    fn new(p: &nn::Path, c: i64, down: bool, widen: i64, opts: &Options) -> Self {
        let conv = ConvSpec::same(3, WeightInit::KaimingNormalFanIn).bias(BiasInit::Zero);
        let gamma2 = if opts.zero_init_residual { 0.0 } else { 1.0 };
        let stride = if down { 2 } else { 1 };
        Block {
            conv1: init::conv2d(&(p / "conv1"), c, c, conv.stride(stride)),
            bn1: init::batch_norm(&(p / "bn1"), c, opts.bn_momentum, 1.0),
            conv2: init::conv2d(&(p / "conv2"), c, c, conv),
            bn2: init::batch_norm(&(p / "bn2"), c, opts.bn_momentum, gamma2),
            down,
            widen,
        }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = xs
            .apply(&self.conv1)
            .apply_t(&self.bn1, train)
            .relu()
            .apply(&self.conv2)
            .apply_t(&self.bn2, train);
        let sc = if self.down {
            // Caffe's AVE pooling: output size rounded up, a window over the border averaged
            // over the pixels inside (no padding here, so count_include_pad changes nothing).
            xs.avg_pool2d([3, 3], [2, 2], [0, 0], true, true, None::<i64>)
        } else {
            xs.shallow_clone()
        };
        let out = (ys + sc).relu();
        if self.widen > 0 {
            out.constant_pad_nd([0, 0, 0, 0, 0, self.widen])
        } else {
            out
        }
    }
}

/// Build options.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// BN running-average momentum (torch convention; Caffe's fraction is 1 − it).
    pub bn_momentum: f64,
    /// Start each block's last BN γ at 0.
    pub zero_init_residual: bool,
}

/// The authors' Caffe CIFAR ResNet of depth 6n+2.
#[derive(Debug)]
pub struct ResNetCaffe {
    conv1: nn::Conv2D,
    bn1: init::Bn,
    blocks: Vec<Block>,
    linear: nn::Linear,
}

impl ResNetCaffe {
    /// Build a ResNet-`depth` (depth = 6n+2, n ≥ 1; the caller checks) under `p`.
    pub fn new(p: &nn::Path, depth: i64, in_channels: i64, classes: i64, opts: Options) -> Self {
        let n = (depth - 2) / 6;
        let conv1 = init::conv2d(
            &(p / "conv1"),
            in_channels,
            WIDTHS[0],
            ConvSpec::same(3, WeightInit::KaimingNormalFanIn).bias(BiasInit::Zero),
        );
        let bn1 = init::batch_norm(&(p / "bn1"), WIDTHS[0], opts.bn_momentum, 1.0);
        let mut blocks = Vec::new();
        for (stage, &c) in WIDTHS.iter().enumerate() {
            let q = p / format!("layer{}", stage + 1);
            // A stage after the first starts at the previous width, which its first block
            // keeps (downsampling); the zeros that widen it come after that block.
            let c_in = if stage == 0 { c } else { WIDTHS[stage - 1] };
            for i in 0..n {
                let first = stage > 0 && i == 0;
                let width = if first { c_in } else { c };
                let widen = if first { c - c_in } else { 0 };
                blocks.push(Block::new(&(&q / i), width, first, widen, &opts));
            }
        }
        ResNetCaffe {
            conv1,
            bn1,
            blocks,
            linear: init::linear(
                &(p / "linear"),
                WIDTHS[2],
                classes,
                WeightInit::CaffeXavier,
                BiasInit::Zero,
            ),
        }
    }
}

impl nn::ModuleT for ResNetCaffe {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = xs.apply(&self.conv1).apply_t(&self.bn1, train).relu();
        for b in &self.blocks {
            x = b.forward_t(&x, train);
        }
        x.adaptive_avg_pool2d([1, 1])
            .flatten(1, -1)
            .apply(&self.linear)
    }
}
