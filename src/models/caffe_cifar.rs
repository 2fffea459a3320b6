//! Caffe's "CIFAR-10 full" network (`examples/cifar10/cifar10_full_train_test.prototxt`), the
//! network of the CLR paper's Table 1.
//!
//! conv5×5-32 pad 2 → maxpool 3/2 → ReLU → LRN → conv5×5-32 pad 2 → ReLU → avepool 3/2 → LRN →
//! conv5×5-64 pad 2 → ReLU → avepool 3/2 → ip1 (classes). LRN is Caffe's `WITHIN_CHANNEL`
//! normalisation with `local_size` 3, α 5e-5, β 0.75 (see [`lrn_within_channel`]). Caffe
//! rounds pooling output sizes up (32 → 16 → 8 → 4, so ip1 sees 64·4·4 = 1024 inputs); an
//! average window that hangs over the border divides by the number of pixels inside it.
//!
//! Init (prototxt): conv1 N(0, 1e-4²), conv2, conv3 and ip1 N(0, 0.01²), every bias 0.
//! Variables: `conv1`, `conv2`, `conv3`, `ip1`, each `weight` + `bias`.
//! Parameters for CIFAR-10: 89,578. The prototxt's per-layer `lr_mult`/`decay_mult` (biases
//! ×2 learning rate; ip1 weight decay ×250) belong to the optimizer, not to this module.

use super::init::{self, BiasInit, ConvSpec, WeightInit};
use anyhow::Result;
use tch::{nn, Tensor};

/// LRN window (pixels per side).
const LRN_SIZE: i64 = 3;
/// LRN scale α.
const LRN_ALPHA: f64 = 5e-5;
/// LRN exponent β.
const LRN_BETA: f64 = 0.75;

/// The CLR paper's Caffe CIFAR-10 network.
#[derive(Debug)]
pub struct CaffeCifar {
    conv1: nn::Conv2D,
    conv2: nn::Conv2D,
    conv3: nn::Conv2D,
    ip1: nn::Linear,
}

impl CaffeCifar {
    /// Build under `p` for `in_channels`×`size`×`size` inputs and `classes` outputs.
    /// Errors when `size` is too small for three 3/2 poolings (< 12).
    pub fn new(p: &nn::Path, in_channels: i64, classes: i64, size: i64) -> Result<Self> {
        let Some(s) = spatial(size) else {
            let min = super::min_size(spatial);
            crate::bail_input!(
                "image size {size} is too small for caffe_cifar: three 3x3 poolings with \
                 stride 2 need at least {min}x{min} inputs"
            );
        };
        let conv = |std| ConvSpec {
            k: 5,
            stride: 1,
            padding: 2,
            weight: WeightInit::Gaussian(std),
            bias: BiasInit::Zero,
        };
        Ok(CaffeCifar {
            conv1: init::conv2d(&(p / "conv1"), in_channels, 32, conv(1e-4)),
            conv2: init::conv2d(&(p / "conv2"), 32, 32, conv(0.01)),
            conv3: init::conv2d(&(p / "conv3"), 32, 64, conv(0.01)),
            ip1: init::linear(
                &(p / "ip1"),
                64 * s * s,
                classes,
                WeightInit::Gaussian(0.01),
                BiasInit::Zero,
            ),
        })
    }
}

/// Side of the last feature map for `size`×`size` inputs (the 5×5 pad-2 convolutions keep
/// the size; each pooling is 3/2 with Caffe rounding).
fn spatial(size: i64) -> Option<i64> {
    caffe_pool_size(size, 3, 2, 0)
        .and_then(|s| caffe_pool_size(s, 3, 2, 0))
        .and_then(|s| caffe_pool_size(s, 3, 2, 0))
}

/// Caffe's pooling output size (`PoolingLayer::Reshape`): ceil((size + 2·pad − k)/stride) + 1,
/// minus one when the last window would start in the right padding. PyTorch's `ceil_mode=true`
/// uses the same rule. None when the window does not fit the padded input.
pub(crate) fn caffe_pool_size(size: i64, k: i64, stride: i64, pad: i64) -> Option<i64> {
    if size + 2 * pad < k {
        return None;
    }
    let mut out = (size + 2 * pad - k + stride - 1) / stride + 1;
    if pad > 0 && (out - 1) * stride >= size + pad {
        out -= 1;
    }
    Some(out)
}

/// Caffe's `LRN` with `norm_region: WITHIN_CHANNEL`:
/// y = x · (1 + α/n² · Σ x²)^(−β), the sum over the n×n window around each pixel (zero-padded
/// by (n−1)/2). Caffe builds it as square → average pooling (n, stride 1, the padded window
/// always counts n² pixels) → power(shift 1, scale α, power −β) → product, which is what this
/// computes.
pub fn lrn_within_channel(xs: &Tensor, size: i64, alpha: f64, beta: f64) -> Tensor {
    let pad = (size - 1) / 2;
    let mean_sq = xs
        .square()
        .avg_pool2d([size, size], [1, 1], [pad, pad], false, true, None);
    xs * (mean_sq * alpha + 1.0).pow_tensor_scalar(-beta)
}

/// Caffe average pooling k=3, stride 2, ceil rounding, no padding.
fn ave_pool(xs: &Tensor) -> Tensor {
    xs.avg_pool2d([3, 3], [2, 2], [0, 0], true, true, None)
}

impl nn::ModuleT for CaffeCifar {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        let x = xs
            .apply(&self.conv1)
            .max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], true)
            .relu();
        let x = lrn_within_channel(&x, LRN_SIZE, LRN_ALPHA, LRN_BETA);
        let x = ave_pool(&x.apply(&self.conv2).relu());
        let x = lrn_within_channel(&x, LRN_SIZE, LRN_ALPHA, LRN_BETA);
        ave_pool(&x.apply(&self.conv3).relu())
            .flatten(1, -1)
            .apply(&self.ip1)
    }
}
