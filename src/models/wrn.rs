//! Wide ResNets (Zagoruyko & Komodakis 2016), WRN-depth-k with depth = 6n+4, pre-activation
//! blocks and optional dropout; WRN-28-10 is the SGDR network.
//!
//! Topology of the official code (`models/wide-resnet.lua`, also `pytorch/resnet.py`): stem
//! conv3×3(in→16); three stages of n blocks with 16k, 32k, 64k channels (stride 2 entering
//! stages 2 and 3); final BN + ReLU; global average pooling; `fc`. Block:
//! o = relu(bn1(x)); y = conv2(dropout(relu(bn2(conv1(o))))); out = y + (proj ? conv1×1(o) : x),
//! with a 1×1 projection (stride s, on the pre-activated o) wherever the width or stride
//! changes, including the first block when k > 1. Convolutions have no bias.
//!
//! Init (official Lua code, `utils.lua`): convs `MSRinit` = N(0, 2/(k·k·out)), i.e.
//! kaiming_normal fan_out; `fc` weight Torch7's default U(±1/√in), bias 0 (`FCinit`);
//! BN γ 1, β 0. Alternatives not followed: the official PyTorch port draws convs and `fc` with
//! kaiming_normal fan_in and BN γ ~ U(0,1) (as did Torch7's BN default); SGDR's Lasagne code
//! (`SGDR_WRNs.py`) uses HeNormal fan_in on 3×3 convs, Glorot-uniform projections, γ 1, and a
//! slightly different net (stem BN+ReLU instead of the first block's pre-activation, a bias
//! on each block's second conv (+4,480 parameters for WRN-28-10), projections taken from the
//! un-activated input).
//!
//! Variables: `conv1`, `layer{1,2,3}.{i}.{bn1,conv1,bn2,conv2,shortcut}`, `bn`, `fc`.
//! Parameters: WRN-28-10 36,479,194 (10 classes) / 36,536,884 (100).

use super::init::{self, BiasInit, ConvSpec, WeightInit};
use tch::{nn, Tensor};

/// Weight rule of every convolution.
const CONV_INIT: WeightInit = WeightInit::KaimingNormalFanOut;

/// A pre-activation wide basic block.
#[derive(Debug)]
struct WideBlock {
    bn1: init::Bn,
    conv1: nn::Conv2D,
    bn2: init::Bn,
    conv2: nn::Conv2D,
    shortcut: Option<nn::Conv2D>,
    dropout: f64,
}

impl WideBlock {
    fn new(p: &nn::Path, c_in: i64, c_out: i64, stride: i64, opts: &Options) -> Self {
        let conv = ConvSpec::same(3, CONV_INIT);
        WideBlock {
            bn1: init::batch_norm(&(p / "bn1"), c_in, opts.bn_momentum, 1.0),
            conv1: init::conv2d(&(p / "conv1"), c_in, c_out, conv.stride(stride)),
            bn2: init::batch_norm(&(p / "bn2"), c_out, opts.bn_momentum, 1.0),
            conv2: init::conv2d(&(p / "conv2"), c_out, c_out, conv),
            shortcut: (stride != 1 || c_in != c_out).then(|| {
                init::conv2d(
                    &(p / "shortcut"),
                    c_in,
                    c_out,
                    ConvSpec::same(1, CONV_INIT).stride(stride),
                )
            }),
            dropout: opts.dropout,
        }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let o = xs.apply_t(&self.bn1, train).relu();
        let mut y = o.apply(&self.conv1).apply_t(&self.bn2, train).relu();
        if self.dropout > 0.0 {
            y = super::init::dropout(&y, self.dropout, train);
        }
        let y = y.apply(&self.conv2);
        match &self.shortcut {
            Some(conv) => y + o.apply(conv),
            None => y + xs,
        }
    }
}

/// Build options of a WRN.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Dropout probability between the two convolutions of each block (0: none).
    pub dropout: f64,
    /// BN running-average momentum (torch convention).
    pub bn_momentum: f64,
}

/// A WRN-depth-k.
#[derive(Debug)]
pub struct Wrn {
    conv1: nn::Conv2D,
    blocks: Vec<WideBlock>,
    bn: init::Bn,
    fc: nn::Linear,
}

impl Wrn {
    /// Build a WRN-`depth`-`k` (depth = 6n+4, n ≥ 1, k ≥ 1; the caller checks) under `p`.
    pub fn new(
        p: &nn::Path,
        depth: i64,
        k: i64,
        in_channels: i64,
        classes: i64,
        opts: Options,
    ) -> Self {
        let n = (depth - 4) / 6;
        let widths = [16 * k, 32 * k, 64 * k];
        let conv1 = init::conv2d(
            &(p / "conv1"),
            in_channels,
            16,
            ConvSpec::same(3, CONV_INIT),
        );
        let mut blocks = Vec::new();
        let mut c_in = 16;
        for (stage, &c_out) in widths.iter().enumerate() {
            let q = p / format!("layer{}", stage + 1);
            for i in 0..n {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                blocks.push(WideBlock::new(&(&q / i), c_in, c_out, stride, &opts));
                c_in = c_out;
            }
        }
        Wrn {
            conv1,
            blocks,
            bn: init::batch_norm(&(p / "bn"), c_in, opts.bn_momentum, 1.0),
            fc: init::linear(
                &(p / "fc"),
                c_in,
                classes,
                WeightInit::TorchDefault,
                BiasInit::Zero,
            ),
        }
    }
}

impl nn::ModuleT for Wrn {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = xs.apply(&self.conv1);
        for b in &self.blocks {
            x = b.forward_t(&x, train);
        }
        x.apply_t(&self.bn, train)
            .relu()
            .adaptive_avg_pool2d([1, 1])
            .flatten(1, -1)
            .apply(&self.fc)
    }
}
