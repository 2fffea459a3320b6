//! Datasets in their official formats and the batch loader.
//!
//! Every dataset is a [`Source`]: random access to examples as `u8` CHW pixels plus a label.
//! The loader (`loader.rs`) draws the epoch's order and each example's augmentation from
//! `(seed, epoch, index)` alone, so a resumed run sees exactly the batches it would have seen,
//! prepares batches on worker threads ahead of the training step, and turns them into
//! normalised float tensors on the training device.

pub mod imagenet;
pub mod jpeg;
pub mod resize;

use rand_chacha::ChaCha8Rng;

/// How training examples are augmented (evaluation examples never are; ImageNet evaluation
/// uses a center crop).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Augment {
    /// No augmentation.
    None,
    /// Random horizontal flip with probability 1/2.
    Flip,
    /// Pad by 4 pixels (see [`PadMode`]), random 32x32 (input-size) crop, random flip: the
    /// CIFAR recipe of He et al.
    CropFlip,
    /// torchvision's RandomResizedCrop(scale 0.08..1, ratio 3/4..4/3) plus flip (ImageNet).
    RandomResizedCrop,
}

/// Padding used by [`Augment::CropFlip`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PadMode {
    /// Zero padding (torchvision `RandomCrop(32, padding=4)`, SGDR).
    Zero,
    /// Reflection padding (the WRN code, fastai).
    Reflect,
}

/// One split of a dataset with random access to its examples.
///
/// Implementations: in-memory `u8` arrays (IDX, CIFAR, synthetic) and files streamed from
/// disk (ImageNet). They never touch libtorch, so they can run on worker threads.
pub trait Source: Send + Sync {
    /// Number of examples.
    fn len(&self) -> usize;
    /// True when the split holds no example.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Class index of example `index`, in `0..num_classes`.
    fn label(&self, index: usize) -> i64;
    /// Shape `(channels, height, width)` of every example produced by [`Source::fetch`].
    fn shape(&self) -> (usize, usize, usize);
    /// Decode example `index`, apply `augment` drawing randomness from `rng` only, and write
    /// its `C*H*W` bytes in CHW order into `out`. Returns `Ok(false)` when the example is
    /// unreadable and must be skipped (a corrupt JPEG); the loader counts and reports it once.
    fn fetch(
        &self,
        index: usize,
        augment: Augment,
        rng: &mut ChaCha8Rng,
        out: &mut [u8],
    ) -> anyhow::Result<bool>;
}
