//! Tensor memory layouts. tch has no memory-format argument, so channels-last (NHWC) strides
//! are made by hand; the loader (input batches) and the models (conv weights) both use it.

use tch::Tensor;

/// A copy of the NCHW tensor `xs` with channels-last strides `[C·H·W, 1, W·C, C]`.
pub fn channels_last(xs: &Tensor) -> Tensor {
    xs.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}
