//! He et al. (2016) CIFAR ResNets of depth 6n+2 (ResNet-20/32/44/56/110), as implemented by
//! akamaster/pytorch_resnet_cifar10.
//!
//! Stem conv3×3(in→16) + BN + ReLU; three stages of n BasicBlocks (16, 32, 64 channels; stride
//! 2 entering stages 2 and 3); global average pooling; `linear`. BasicBlock:
//! relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)). Where the shape changes the shortcut is
//! - **A** (the paper's CIFAR choice, default): x subsampled with the stride, channels
//!   zero-padded (half the new channels before, half after, as akamaster's `F.pad`); no
//!   parameters;
//! - **B**: 1×1 conv (stride) + BN (`shortcut.0`, `shortcut.1`).
//!
//! Init (akamaster `_weights_init`): `kaiming_normal_` (fan_in, ReLU gain) on every conv and
//! the linear weight; linear bias PyTorch default U(±1/√64); BN γ 1, β 0 (`zero_init_residual`
//! sets each block's `bn2` γ to 0). Convs have no bias.
//! Variables: `conv1`, `bn1`, `layer{1,2,3}.{i}.{conv1,bn1,conv2,bn2}`, `linear` (akamaster's).
//! Parameters (10 classes): ResNet-20 269,722 (A) / 272,474 (B); ResNet-56 853,018;
//! ResNet-110 1,727,962.
//!
//! Not this network: the super-convergence Caffe ResNet-56 ([`super::resnet_caffe`]).

use super::init::{self, BiasInit, ConvSpec, WeightInit};
use super::Shortcut;
use tch::{nn, Tensor};

/// Stage widths.
const WIDTHS: [i64; 3] = [16, 32, 64];

/// The shortcut of a block whose shape changes.
#[derive(Debug)]
enum Projection {
    /// Option A: subsample and zero-pad `before`/`after` channels.
    Pad { before: i64, after: i64 },
    /// Option B: 1×1 conv + BN.
    Conv(Box<(nn::Conv2D, init::Bn)>),
}

/// A BasicBlock.
#[derive(Debug)]
struct BasicBlock {
    conv1: nn::Conv2D,
    bn1: init::Bn,
    conv2: nn::Conv2D,
    bn2: init::Bn,
    stride: i64,
    /// None: identity shortcut.
    projection: Option<Projection>,
}

impl BasicBlock {
    fn new(p: &nn::Path, c_in: i64, c_out: i64, stride: i64, opts: &Options) -> Self {
        let conv = ConvSpec::same(3, WeightInit::KaimingNormalFanIn);
        let gamma2 = if opts.zero_init_residual { 0.0 } else { 1.0 };
        // Created in the reference's order: conv1, bn1, conv2, bn2, shortcut.
        let conv1 = init::conv2d(&(p / "conv1"), c_in, c_out, conv.stride(stride));
        let bn1 = init::batch_norm(&(p / "bn1"), c_out, opts.bn_momentum, 1.0);
        let conv2 = init::conv2d(&(p / "conv2"), c_out, c_out, conv);
        let bn2 = init::batch_norm(&(p / "bn2"), c_out, opts.bn_momentum, gamma2);
        let projection = (stride != 1 || c_in != c_out).then(|| match opts.shortcut {
            Shortcut::A => {
                let extra = c_out - c_in;
                Projection::Pad {
                    before: extra / 2,
                    after: extra - extra / 2,
                }
            }
            Shortcut::B => {
                let q = p / "shortcut";
                Projection::Conv(Box::new((
                    init::conv2d(
                        &(&q / 0),
                        c_in,
                        c_out,
                        ConvSpec::same(1, WeightInit::KaimingNormalFanIn).stride(stride),
                    ),
                    init::batch_norm(&(&q / 1), c_out, opts.bn_momentum, 1.0),
                )))
            }
        });
        BasicBlock {
            conv1,
            bn1,
            conv2,
            bn2,
            stride,
            projection,
        }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = xs
            .apply(&self.conv1)
            .apply_t(&self.bn1, train)
            .relu()
            .apply(&self.conv2)
            .apply_t(&self.bn2, train);
        let sc = match &self.projection {
            None => xs.shallow_clone(),
            Some(Projection::Pad { before, after }) => xs
                .slice(2, 0, None, self.stride)
                .slice(3, 0, None, self.stride)
                .constant_pad_nd([0, 0, 0, 0, *before, *after]),
            Some(Projection::Conv(proj)) => xs.apply(&proj.0).apply_t(&proj.1, train),
        };
        (ys + sc).relu()
    }
}

/// Build options shared by every block.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Shortcut where the shape changes.
    pub shortcut: Shortcut,
    /// BN running-average momentum (torch convention).
    pub bn_momentum: f64,
    /// Start each block's last BN γ at 0.
    pub zero_init_residual: bool,
}

/// A CIFAR ResNet of depth 6n+2.
#[derive(Debug)]
pub struct ResNetCifar {
    conv1: nn::Conv2D,
    bn1: init::Bn,
    blocks: Vec<BasicBlock>,
    linear: nn::Linear,
}

impl ResNetCifar {
    /// Build a ResNet-`depth` (depth = 6n+2, n ≥ 1; the caller checks) under `p`.
    pub fn new(p: &nn::Path, depth: i64, in_channels: i64, classes: i64, opts: Options) -> Self {
        let n = (depth - 2) / 6;
        let conv1 = init::conv2d(
            &(p / "conv1"),
            in_channels,
            WIDTHS[0],
            ConvSpec::same(3, WeightInit::KaimingNormalFanIn),
        );
        let bn1 = init::batch_norm(&(p / "bn1"), WIDTHS[0], opts.bn_momentum, 1.0);
        let mut blocks = Vec::new();
        let mut c_in = WIDTHS[0];
        for (stage, &c_out) in WIDTHS.iter().enumerate() {
            let q = p / format!("layer{}", stage + 1);
            for i in 0..n {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                blocks.push(BasicBlock::new(&(&q / i), c_in, c_out, stride, &opts));
                c_in = c_out;
            }
        }
        ResNetCifar {
            conv1,
            bn1,
            blocks,
            linear: init::linear(
                &(p / "linear"),
                WIDTHS[2],
                classes,
                WeightInit::KaimingNormalFanIn,
                BiasInit::TorchDefault,
            ),
        }
    }
}

impl nn::ModuleT for ResNetCifar {
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
