//! Caffe's LeNet (`examples/mnist/lenet_train_test.prototxt`), the MNIST network of the
//! super-convergence and "disciplined approach" papers.
//!
//! conv5×5-20 → maxpool 2/2 → conv5×5-50 → maxpool 2/2 → ip1 500 → ReLU → ip2 classes.
//! There is no nonlinearity after the convolutions (as in the prototxt). Pooling uses Caffe's
//! ceil rounding, which changes nothing for 28×28 (24 → 12, 8 → 4) or 32×32 inputs.
//!
//! Init (prototxt): every weight `xavier` (U(±√(3/fan_in))), every bias 0.
//! Variables: `conv1`, `conv2`, `ip1`, `ip2` (the Caffe layer names), each `weight` + `bias`.
//! Parameters for MNIST (1×28×28, 10 classes): 431,080.

use super::caffe_cifar::caffe_pool_size;
use super::init::{self, BiasInit, ConvSpec, WeightInit};
use anyhow::Result;
use tch::{nn, Tensor};

/// The Caffe LeNet.
#[derive(Debug)]
pub struct LeNet {
    conv1: nn::Conv2D,
    conv2: nn::Conv2D,
    ip1: nn::Linear,
    ip2: nn::Linear,
}

impl LeNet {
    /// Build under `p` for `in_channels`×`size`×`size` inputs and `classes` outputs.
    /// Errors when `size` is too small for two 5×5 convolutions and two 2×2 poolings (< 15).
    pub fn new(p: &nn::Path, in_channels: i64, classes: i64, size: i64) -> Result<Self> {
        let Some(s) = spatial(size) else {
            let min = super::min_size(spatial);
            crate::bail_input!(
                "image size {size} is too small for lenet: two 5x5 convolutions and two 2x2 \
                 poolings need at least {min}x{min} inputs"
            );
        };
        let conv = ConvSpec {
            k: 5,
            stride: 1,
            padding: 0,
            weight: WeightInit::CaffeXavier,
            bias: BiasInit::Zero,
        };
        Ok(LeNet {
            conv1: init::conv2d(&(p / "conv1"), in_channels, 20, conv),
            conv2: init::conv2d(&(p / "conv2"), 20, 50, conv),
            ip1: init::linear(
                &(p / "ip1"),
                50 * s * s,
                500,
                WeightInit::CaffeXavier,
                BiasInit::Zero,
            ),
            ip2: init::linear(
                &(p / "ip2"),
                500,
                classes,
                WeightInit::CaffeXavier,
                BiasInit::Zero,
            ),
        })
    }
}

/// Side of the last feature map for `size`×`size` inputs.
fn spatial(size: i64) -> Option<i64> {
    conv_valid(size, 5)
        .and_then(|s| caffe_pool_size(s, 2, 2, 0))
        .and_then(|s| conv_valid(s, 5))
        .and_then(|s| caffe_pool_size(s, 2, 2, 0))
}

/// Output size of a valid (unpadded) k×k convolution with stride 1, None when it is empty.
fn conv_valid(size: i64, k: i64) -> Option<i64> {
    (size >= k).then(|| size - k + 1)
}

impl nn::ModuleT for LeNet {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        xs.apply(&self.conv1)
            .max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], true)
            .apply(&self.conv2)
            .max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], true)
            .flatten(1, -1)
            .apply(&self.ip1)
            .relu()
            .apply(&self.ip2)
    }
}
