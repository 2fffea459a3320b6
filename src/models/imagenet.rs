//! torchvision's ImageNet ResNet-18/34/50 (`torchvision/models/resnet.py`; ResNet-50 is
//! "v1.5", stride in the 3×3 conv).
//!
//! Stem conv7×7/2 pad 3 (in→64) + BN + ReLU + maxpool 3/2 pad 1; four stages (64, 128, 256,
//! 512 planes; stride 2 entering stages 2–4) of BasicBlocks (18: 2-2-2-2, 34: 3-4-6-3) or
//! Bottlenecks (50: 3-4-6-3, expansion 4); adaptive average pooling; `fc`. Projections
//! (`downsample.0` conv1×1 stride s, `downsample.1` BN) wherever the shape changes.
//!
//! Init (torchvision): convs kaiming_normal fan_out ReLU, no bias; BN γ 1, β 0
//! (`zero_init_residual`: each block's last BN γ 0); `fc` PyTorch default (weight and bias
//! U(±1/√fan_in)).
//! Variables: torchvision's names (`conv1`, `bn1`, `layer1.0.conv1`, …, `fc`), so torchvision
//! weights exported to safetensors load by name.
//! Parameters (1000 classes): 11,689,512 / 21,797,672 / 25,557,032.

use super::init::{self, BiasInit, ConvSpec, WeightInit};
use tch::{nn, Tensor};

/// Weight rule of every convolution.
const CONV_INIT: WeightInit = WeightInit::KaimingNormalFanOut;

/// Build options of a torchvision ResNet.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// BN running-average momentum (torch convention).
    pub bn_momentum: f64,
    /// Start each block's last BN γ at 0.
    pub zero_init_residual: bool,
}

/// Block type and per-stage counts.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Basic,
    Bottleneck,
}

impl Kind {
    fn expansion(self) -> i64 {
        match self {
            Kind::Basic => 1,
            Kind::Bottleneck => 4,
        }
    }
}

/// A BasicBlock or Bottleneck: convs and BNs in order, the last BN closing the branch.
#[derive(Debug)]
struct Block {
    layers: Vec<(nn::Conv2D, init::Bn)>,
    downsample: Option<(nn::Conv2D, init::Bn)>,
}

impl Block {
    fn new(p: &nn::Path, kind: Kind, c_in: i64, planes: i64, stride: i64, opts: &Options) -> Self {
        let c_out = planes * kind.expansion();
        // (in, out, kernel, stride) of each conv, as in torchvision.
        let convs = match kind {
            Kind::Basic => vec![(c_in, planes, 3, stride), (planes, planes, 3, 1)],
            Kind::Bottleneck => vec![
                (c_in, planes, 1, 1),
                (planes, planes, 3, stride),
                (planes, c_out, 1, 1),
            ],
        };
        let last = convs.len();
        let layers = convs
            .into_iter()
            .enumerate()
            .map(|(i, (ci, co, k, s))| {
                let gamma = if opts.zero_init_residual && i + 1 == last {
                    0.0
                } else {
                    1.0
                };
                (
                    init::conv2d(
                        &(p / format!("conv{}", i + 1)),
                        ci,
                        co,
                        ConvSpec::same(k, CONV_INIT).stride(s),
                    ),
                    init::batch_norm(&(p / format!("bn{}", i + 1)), co, opts.bn_momentum, gamma),
                )
            })
            .collect();
        let downsample = (stride != 1 || c_in != c_out).then(|| {
            let q = p / "downsample";
            (
                init::conv2d(
                    &(&q / 0),
                    c_in,
                    c_out,
                    ConvSpec::same(1, CONV_INIT).stride(stride),
                ),
                init::batch_norm(&(&q / 1), c_out, opts.bn_momentum, 1.0),
            )
        });
        Block { layers, downsample }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let last = self.layers.len() - 1;
        let mut y = xs.shallow_clone();
        for (i, (conv, bn)) in self.layers.iter().enumerate() {
            y = y.apply(conv).apply_t(bn, train);
            if i < last {
                y = y.relu();
            }
        }
        let sc = match &self.downsample {
            Some((conv, bn)) => xs.apply(conv).apply_t(bn, train),
            None => xs.shallow_clone(),
        };
        (y + sc).relu()
    }
}

/// A torchvision ResNet.
#[derive(Debug)]
pub struct ResNet {
    conv1: nn::Conv2D,
    bn1: init::Bn,
    blocks: Vec<Block>,
    fc: nn::Linear,
}

impl ResNet {
    /// Build ResNet-`depth` (18, 34 or 50; other depths panic, the caller checks) under `p`.
    pub fn new(p: &nn::Path, depth: i64, in_channels: i64, classes: i64, opts: Options) -> Self {
        let (kind, counts) = match depth {
            18 => (Kind::Basic, [2, 2, 2, 2]),
            34 => (Kind::Basic, [3, 4, 6, 3]),
            50 => (Kind::Bottleneck, [3, 4, 6, 3]),
            _ => panic!("torchvision ResNet depth {depth} is not 18, 34 or 50"),
        };
        let stem = ConvSpec {
            k: 7,
            stride: 2,
            padding: 3,
            weight: CONV_INIT,
            bias: BiasInit::None,
        };
        let conv1 = init::conv2d(&(p / "conv1"), in_channels, 64, stem);
        let bn1 = init::batch_norm(&(p / "bn1"), 64, opts.bn_momentum, 1.0);
        let mut blocks = Vec::new();
        let mut c_in = 64;
        for (stage, (&planes, &count)) in [64, 128, 256, 512].iter().zip(&counts).enumerate() {
            let q = p / format!("layer{}", stage + 1);
            for i in 0..count {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                blocks.push(Block::new(&(&q / i), kind, c_in, planes, stride, &opts));
                c_in = planes * kind.expansion();
            }
        }
        ResNet {
            conv1,
            bn1,
            blocks,
            fc: init::linear(
                &(p / "fc"),
                c_in,
                classes,
                WeightInit::TorchDefault,
                BiasInit::TorchDefault,
            ),
        }
    }
}

impl nn::ModuleT for ResNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = xs
            .apply(&self.conv1)
            .apply_t(&self.bn1, train)
            .relu()
            .max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        for b in &self.blocks {
            x = b.forward_t(&x, train);
        }
        x.adaptive_avg_pool2d([1, 1]).flatten(1, -1).apply(&self.fc)
    }
}
