//! PreActResNet-18 of kuangliu/pytorch-cifar (`models/preact_resnet.py`), after He et al.,
//! "Identity Mappings in Deep Residual Networks".
//!
//! Stem conv3×3(in→64); four stages of two PreActBlocks (64, 128, 256, 512 channels; stride 2
//! entering stages 2–4); average pooling; `linear`. PreActBlock:
//! o = relu(bn1(x)); out = conv2(relu(bn2(conv1(o)))) + (proj ? conv1×1(o) : x), the projection
//! (`shortcut.0`, no BN) wherever the width or stride changes. As in the reference there is
//! no BN/ReLU after the last block. The reference pools with `avg_pool2d(4)`, which is global
//! for 32×32 inputs; this pools globally at every size.
//!
//! Init: PyTorch defaults (conv weights U(±1/√fan_in), no conv bias; linear weight and bias
//! U(±1/√512); BN γ 1, β 0).
//! Variables: `conv1`, `layer{1..4}.{i}.{bn1,conv1,bn2,conv2,shortcut.0}`, `linear`.
//! Parameters (10 classes): 11,171,146.

use super::init::{self, BiasInit, ConvSpec, WeightInit};
use tch::{nn, Tensor};

/// Stage widths.
const WIDTHS: [i64; 4] = [64, 128, 256, 512];
/// Blocks per stage.
const BLOCKS: i64 = 2;

/// A pre-activation basic block.
#[derive(Debug)]
struct PreActBlock {
    bn1: init::Bn,
    conv1: nn::Conv2D,
    bn2: init::Bn,
    conv2: nn::Conv2D,
    shortcut: Option<nn::Conv2D>,
}

impl PreActBlock {
    fn new(p: &nn::Path, c_in: i64, c_out: i64, stride: i64, bn_momentum: f64) -> Self {
        let conv = ConvSpec::same(3, WeightInit::TorchDefault);
        PreActBlock {
            bn1: init::batch_norm(&(p / "bn1"), c_in, bn_momentum, 1.0),
            conv1: init::conv2d(&(p / "conv1"), c_in, c_out, conv.stride(stride)),
            bn2: init::batch_norm(&(p / "bn2"), c_out, bn_momentum, 1.0),
            conv2: init::conv2d(&(p / "conv2"), c_out, c_out, conv),
            shortcut: (stride != 1 || c_in != c_out).then(|| {
                init::conv2d(
                    &(p / "shortcut" / 0),
                    c_in,
                    c_out,
                    ConvSpec::same(1, WeightInit::TorchDefault).stride(stride),
                )
            }),
        }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let o = xs.apply_t(&self.bn1, train).relu();
        let y = o
            .apply(&self.conv1)
            .apply_t(&self.bn2, train)
            .relu()
            .apply(&self.conv2);
        match &self.shortcut {
            Some(conv) => y + o.apply(conv),
            None => y + xs,
        }
    }
}

/// kuangliu's PreActResNet-18.
#[derive(Debug)]
pub struct PreActResNet18 {
    conv1: nn::Conv2D,
    blocks: Vec<PreActBlock>,
    linear: nn::Linear,
}

impl PreActResNet18 {
    /// Build under `p`.
    pub fn new(p: &nn::Path, in_channels: i64, classes: i64, bn_momentum: f64) -> Self {
        let conv1 = init::conv2d(
            &(p / "conv1"),
            in_channels,
            WIDTHS[0],
            ConvSpec::same(3, WeightInit::TorchDefault),
        );
        let mut blocks = Vec::new();
        let mut c_in = WIDTHS[0];
        for (stage, &c_out) in WIDTHS.iter().enumerate() {
            let q = p / format!("layer{}", stage + 1);
            for i in 0..BLOCKS {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                blocks.push(PreActBlock::new(
                    &(&q / i),
                    c_in,
                    c_out,
                    stride,
                    bn_momentum,
                ));
                c_in = c_out;
            }
        }
        PreActResNet18 {
            conv1,
            blocks,
            linear: init::linear(
                &(p / "linear"),
                c_in,
                classes,
                WeightInit::TorchDefault,
                BiasInit::TorchDefault,
            ),
        }
    }
}

impl nn::ModuleT for PreActResNet18 {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = xs.apply(&self.conv1);
        for b in &self.blocks {
            x = b.forward_t(&x, train);
        }
        x.adaptive_avg_pool2d([1, 1])
            .flatten(1, -1)
            .apply(&self.linear)
    }
}
