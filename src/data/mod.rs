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
use std::sync::Arc;

pub mod array;
pub mod augment;
pub mod bench;
pub mod cifar;
pub mod config;
pub mod downsampled;
pub mod idx;
pub mod loader;
pub mod open;
pub mod rng;
pub mod stats;
pub mod subset;
pub mod synthetic;

pub use config::{describe, DataConfig, DatasetName, Labels, Normalize};
pub use loader::{Batch, BatchIter, Loader, LoaderOptions};
pub use open::{load, open, Data};

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

impl Augment {
    /// The name used in configs.
    pub fn name(self) -> &'static str {
        match self {
            Augment::None => "none",
            Augment::Flip => "flip",
            Augment::CropFlip => "crop_flip",
            Augment::RandomResizedCrop => "random_resized_crop",
        }
    }
}

/// Padding used by [`Augment::CropFlip`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PadMode {
    /// Zero padding (torchvision `RandomCrop(32, padding=4)`, SGDR).
    Zero,
    /// Reflection padding (the WRN code, fastai).
    Reflect,
    /// Zero padding after normalisation: the border reads as the mean pixel (SGDR_WRNs.py
    /// subtracts the mean, then pads with zeros).
    Mean,
}

impl PadMode {
    /// The name used in configs.
    pub fn name(self) -> &'static str {
        match self {
            PadMode::Zero => "zero",
            PadMode::Reflect => "reflect",
            PadMode::Mean => "mean",
        }
    }
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
    /// its `C*H*W` bytes in CHW order into `out`.
    ///
    /// The loader asks only for `Augment::None` (evaluation, and training before its own
    /// flips and padded crops, which it applies to the fetched bytes with the configured
    /// `pad` and `pad_mode`) and for `Augment::RandomResizedCrop` (training on full-size
    /// images, where the source crops and flips while decoding). `None` means the split's
    /// plain example (ImageNet: the evaluation center crop). Returns `Ok(false)` when the example is
    /// unreadable and must be skipped (a corrupt JPEG); the loader counts and reports it once.
    fn fetch(
        &self,
        index: usize,
        augment: Augment,
        rng: &mut ChaCha8Rng,
        out: &mut [u8],
    ) -> anyhow::Result<bool>;
}

/// Both splits of an opened dataset, as a dataset reader returns them.
pub struct Splits {
    /// The training split (validation splits and subsets are taken from it).
    pub train: Arc<dyn Source>,
    /// The test split (ILSVRC: the validation images).
    pub test: Arc<dyn Source>,
    /// Number of classes; labels are in `0..num_classes`.
    pub num_classes: i64,
    /// Standard per-channel mean and std on the `[0, 1]` scale for `normalize = "mean_std"`,
    /// when computing them from the training split is too costly (ImageNet); `None`: compute.
    pub mean_std: Option<(Vec<f64>, Vec<f64>)>,
    /// Where the data came from, for logs (a folder, or a description).
    pub location: String,
}
