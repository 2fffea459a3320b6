//! David Page's ResNet-9, the DAWNBench 2018 CIFAR-10 network (davidcpage/cifar10-fast,
//! `dawn.py`).
//!
//! conv_bn(c) = conv3×3 (no bias) → BN → ReLU. prep: conv_bn(64); layer1: conv_bn(128) →
//! maxpool 2 → + residual; layer2: conv_bn(256) → maxpool 2; layer3: conv_bn(512) → maxpool 2
//! → + residual; max pooling; `linear` (no bias) → ×0.125. residual(x) = x + res2(res1(x)),
//! res1 and res2 conv_bn(c, c). The reference's final `MaxPool2d(4)` is global for 32×32
//! inputs; this pools globally at every size (at least 8×8).
//!
//! Init: PyTorch defaults (conv and linear weights U(±1/√fan_in)); BN γ 1, β 0 (the
//! reference sets them explicitly; `zero_init_residual` starts each residual's `res2` γ at 0,
//! making both residuals identities at step 0).
//! Variables: `prep`, `layer{1,2,3}`, `layer{1,3}.residual.{res1,res2}`, each with `conv` and
//! `bn`; `linear`. Parameters (10 classes): 6,573,120.

use super::init::{self, BiasInit, ConvSpec, WeightInit};
use anyhow::Result;
use tch::{nn, Tensor};

/// Output scale of the classifier (`Mul(weight)` in the reference).
pub const OUTPUT_SCALE: f64 = 0.125;

/// conv3×3 → BN → ReLU.
#[derive(Debug)]
struct ConvBn {
    conv: nn::Conv2D,
    bn: init::Bn,
}

impl ConvBn {
    fn new(p: &nn::Path, c_in: i64, c_out: i64, bn_momentum: f64, gamma: f64) -> Self {
        ConvBn {
            conv: init::conv2d(
                &(p / "conv"),
                c_in,
                c_out,
                ConvSpec::same(3, WeightInit::TorchDefault),
            ),
            bn: init::batch_norm(&(p / "bn"), c_out, bn_momentum, gamma),
        }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        xs.apply(&self.conv).apply_t(&self.bn, train).relu()
    }
}

/// conv_bn → maxpool 2, optionally followed by a residual pair.
#[derive(Debug)]
struct Layer {
    conv_bn: ConvBn,
    residual: Option<(ConvBn, ConvBn)>,
}

impl Layer {
    fn new(p: &nn::Path, c_in: i64, c_out: i64, residual: bool, opts: &Options) -> Self {
        let conv_bn = ConvBn::new(p, c_in, c_out, opts.bn_momentum, 1.0);
        let residual = residual.then(|| {
            let q = p / "residual";
            let gamma2 = if opts.zero_init_residual { 0.0 } else { 1.0 };
            (
                ConvBn::new(&(&q / "res1"), c_out, c_out, opts.bn_momentum, 1.0),
                ConvBn::new(&(&q / "res2"), c_out, c_out, opts.bn_momentum, gamma2),
            )
        });
        Layer { conv_bn, residual }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let x = self
            .conv_bn
            .forward_t(xs, train)
            .max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
        match &self.residual {
            Some((res1, res2)) => {
                let r = res2.forward_t(&res1.forward_t(&x, train), train);
                x + r
            }
            None => x,
        }
    }
}

/// Build options of a ResNet-9.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// BN running-average momentum (torch convention).
    pub bn_momentum: f64,
    /// Start each residual's last BN γ at 0.
    pub zero_init_residual: bool,
}

/// Page's ResNet-9.
#[derive(Debug)]
pub struct ResNet9 {
    prep: ConvBn,
    layers: [Layer; 3],
    linear: nn::Linear,
}

impl ResNet9 {
    /// Build under `p`. Errors when `size` < 8 (three 2×2 poolings).
    pub fn new(
        p: &nn::Path,
        in_channels: i64,
        classes: i64,
        size: i64,
        opts: Options,
    ) -> Result<Self> {
        if size < 8 {
            crate::bail_input!(
                "image size {size} is too small for resnet9: three 2x2 max-poolings need at \
                 least 8x8 inputs"
            );
        }
        Ok(ResNet9 {
            prep: ConvBn::new(&(p / "prep"), in_channels, 64, opts.bn_momentum, 1.0),
            layers: [
                Layer::new(&(p / "layer1"), 64, 128, true, &opts),
                Layer::new(&(p / "layer2"), 128, 256, false, &opts),
                Layer::new(&(p / "layer3"), 256, 512, true, &opts),
            ],
            linear: init::linear(
                &(p / "linear"),
                512,
                classes,
                WeightInit::TorchDefault,
                BiasInit::None,
            ),
        })
    }
}

impl nn::ModuleT for ResNet9 {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = self.prep.forward_t(xs, train);
        for layer in &self.layers {
            x = layer.forward_t(&x, train);
        }
        let (pooled, _) = x.adaptive_max_pool2d([1, 1]);
        pooled.flatten(1, -1).apply(&self.linear) * OUTPUT_SCALE
    }
}
