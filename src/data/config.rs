//! The `[data]` table of a run config.

pub use super::augment::CutoutMode;
use super::{Augment, PadMode};
use crate::error::input_error;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Debian's `dataset-fashion-mnist` package installs the IDX files here.
pub const FASHION_MNIST_DEFAULT_PATH: &str = "/usr/share/datasets/fashion-mnist";

/// The datasets lrlab reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetName {
    /// MNIST digits, IDX files (no default path).
    Mnist,
    /// Zalando's Fashion-MNIST, IDX files (default: Debian's package folder).
    #[serde(alias = "fashion_mnist")]
    FashionMnist,
    /// CIFAR-10, binary version.
    Cifar10,
    /// CIFAR-100, binary version.
    Cifar100,
    /// Generated images (see `synthetic.rs`).
    Synthetic,
    /// ILSVRC-2012 image folders.
    Imagenet,
    /// Downsampled ImageNet 16x16 (Chrabaszcz, Loshchilov & Hutter 2017), official npz files.
    Imagenet16,
    /// Downsampled ImageNet 32x32 (SGDR's third dataset), official npz files.
    Imagenet32,
    /// Downsampled ImageNet 64x64, official npz files (memory-mapped, never loaded whole).
    Imagenet64,
}

impl DatasetName {
    /// Every dataset, in the order shown to users.
    pub const ALL: [DatasetName; 9] = [
        DatasetName::Mnist,
        DatasetName::FashionMnist,
        DatasetName::Cifar10,
        DatasetName::Cifar100,
        DatasetName::Synthetic,
        DatasetName::Imagenet,
        DatasetName::Imagenet16,
        DatasetName::Imagenet32,
        DatasetName::Imagenet64,
    ];

    /// The name used in configs and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetName::Mnist => "mnist",
            DatasetName::FashionMnist => "fashion-mnist",
            DatasetName::Cifar10 => "cifar10",
            DatasetName::Cifar100 => "cifar100",
            DatasetName::Synthetic => "synthetic",
            DatasetName::Imagenet => "imagenet",
            DatasetName::Imagenet16 => "imagenet16",
            DatasetName::Imagenet32 => "imagenet32",
            DatasetName::Imagenet64 => "imagenet64",
        }
    }

    /// `(classes, channels, side)` of the dataset's images as the models see them
    /// (CIFAR-100 with its fine labels, ImageNet at the default 224 crop, synthetic data at
    /// its default shape).
    pub fn input(self) -> (i64, i64, i64) {
        match self {
            DatasetName::Mnist | DatasetName::FashionMnist => (10, 1, 28),
            DatasetName::Cifar10 | DatasetName::Synthetic => (10, 3, 32),
            DatasetName::Cifar100 => (100, 3, 32),
            DatasetName::Imagenet => (1000, 3, 224),
            DatasetName::Imagenet16 => (1000, 3, 16),
            DatasetName::Imagenet32 => (1000, 3, 32),
            DatasetName::Imagenet64 => (1000, 3, 64),
        }
    }

    /// The side of a Downsampled ImageNet variant's images (`None` for the other datasets).
    pub fn downsampled_side(self) -> Option<usize> {
        match self {
            DatasetName::Imagenet16 => Some(16),
            DatasetName::Imagenet32 => Some(32),
            DatasetName::Imagenet64 => Some(64),
            _ => None,
        }
    }

    /// True for the ImageNet variants (1000 classes): full size and downsampled.
    pub fn is_imagenet(self) -> bool {
        self == DatasetName::Imagenet || self.downsampled_side().is_some()
    }

    /// Augmentation when `data.augment` is not given: none for MNIST-likes and synthetic
    /// data, pad-4 crop + flip for CIFAR and Downsampled ImageNet (SGDR: the CIFAR recipe),
    /// random-resized-crop for ImageNet.
    pub fn default_augment(self) -> Augment {
        match self {
            DatasetName::Mnist | DatasetName::FashionMnist | DatasetName::Synthetic => {
                Augment::None
            }
            DatasetName::Cifar10
            | DatasetName::Cifar100
            | DatasetName::Imagenet16
            | DatasetName::Imagenet32
            | DatasetName::Imagenet64 => Augment::CropFlip,
            DatasetName::Imagenet => Augment::RandomResizedCrop,
        }
    }
}

impl std::fmt::Display for DatasetName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DatasetName {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let s2 = s.replace('_', "-");
        DatasetName::ALL
            .into_iter()
            .find(|d| d.as_str() == s2)
            .ok_or_else(|| {
                let names: Vec<_> = DatasetName::ALL.iter().map(|d| d.as_str()).collect();
                input_error(format!(
                    "dataset {s:?}: unknown, expected one of {}",
                    names.join(", ")
                ))
            })
    }
}

/// Parse an augmentation name (`none`, `flip`, `crop_flip`, `random_resized_crop`).
pub fn parse_augment(s: &str) -> Result<Augment> {
    match s.replace('-', "_").as_str() {
        "none" => Ok(Augment::None),
        "flip" => Ok(Augment::Flip),
        "crop_flip" => Ok(Augment::CropFlip),
        "random_resized_crop" => Ok(Augment::RandomResizedCrop),
        _ => Err(input_error(format!(
            "augment {s:?}: unknown, expected none, flip, crop_flip or random_resized_crop"
        ))),
    }
}

/// Input normalisation, applied on the device after scaling pixels to `[0, 1]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalize {
    /// `(x - mean[c]) / std[c]` per channel. The statistics are computed exactly from the
    /// training examples actually used (after `val_split` and `train_subset`, before
    /// augmentation; population std), which for the full training sets gives the usual
    /// constants (CIFAR-10 mean 0.4914, 0.4822, 0.4465, std 0.2470, 0.2435, 0.2616; MNIST
    /// 0.1307, 0.3081). `data.mean` / `data.std` replace them; ImageNet uses its standard
    /// constants (0.485, 0.456, 0.406 / 0.229, 0.224, 0.225).
    MeanStd,
    /// `x - mean_image`: per-pixel mean of the training examples used (SGDR; the CLR and
    /// super-convergence Caffe nets' mean image).
    PixelMean,
    /// Only the scaling to `[0, 1]`.
    None,
}

impl Normalize {
    /// The name used in configs.
    pub fn name(self) -> &'static str {
        match self {
            Normalize::MeanStd => "mean_std",
            Normalize::PixelMean => "pixel_mean",
            Normalize::None => "none",
        }
    }
}

/// Which CIFAR-100 labels to train on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Labels {
    /// The 100 fine classes.
    Fine,
    /// The 20 coarse superclasses.
    Coarse,
}

/// The `[data]` table: which dataset, how it is split, normalised, augmented and loaded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// `mnist`, `fashion-mnist` (default), `cifar10`, `cifar100`, `synthetic`, `imagenet`,
    /// `imagenet16`, `imagenet32`, `imagenet64`.
    pub dataset: DatasetName,
    /// Folder with the dataset's files. Default for `fashion-mnist`:
    /// `/usr/share/datasets/fashion-mnist` (Debian's package); required for the others
    /// except `synthetic`, which has no files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Train on this many training images, stratified by class and seeded (the limited-data
    /// experiments of super-convergence). 0 (default): all of them.
    pub train_subset: usize,
    /// Hold out this many training images (stratified, seeded) as a validation split that
    /// evaluation uses instead of the test set. 0 (default): evaluate on the test set.
    pub val_split: usize,
    /// `mean_std` (default), `pixel_mean` or `none`; see [`Normalize`].
    pub normalize: Normalize,
    /// Factor on the normalised input (default 1). Caffe's nets read raw 0–255 pixels minus
    /// the mean image (`cifar10_full_train_test.prototxt` has a `mean_file` and no `scale`):
    /// `normalize = "pixel_mean"` with `input_scale = 255` gives exactly that, where the
    /// default feeds them inputs 255 times too small.
    pub input_scale: f64,
    /// Per-channel means replacing the computed ones (`normalize = "mean_std"` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean: Option<Vec<f64>>,
    /// Per-channel standard deviations replacing the computed ones (`mean_std` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub std: Option<Vec<f64>>,
    /// Training augmentation: `none`, `flip`, `crop_flip`, `random_resized_crop` (ImageNet
    /// only). Default per dataset: none for MNIST-likes and synthetic, `crop_flip` for CIFAR
    /// and ImageNet 32x32, `random_resized_crop` for ImageNet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub augment: Option<Augment>,
    /// Padding of `crop_flip`, pixels per side (default 4).
    pub pad: usize,
    /// Padding mode of `crop_flip`: `zero` (default; torchvision), `reflect`, or `mean` (zeros
    /// after normalising: the mean pixel, SGDR's border).
    pub pad_mode: PadMode,
    /// Cutout (DeVries & Taylor 2017): side in pixels of a square set to the mean pixel in
    /// every training image, after the crop and flip, drawn from (seed, epoch, position) like
    /// the other augmentations; 0 (default) = none, and then left out of the written config.
    #[serde(skip_serializing_if = "is_zero")]
    pub cutout: usize,
    /// Where the cutout square falls: `center` (default; DeVries & Taylor, clipped at the
    /// border) or `inside` (the DAWNBench ResNet-9's, wholly inside the image).
    #[serde(skip_serializing_if = "is_default_cutout_mode")]
    pub cutout_mode: CutoutMode,
    /// CIFAR-100 labels: `fine` (default, 100 classes) or `coarse` (20).
    pub labels: Labels,
    /// Synthetic data: number of classes (default 10).
    pub classes: usize,
    /// Synthetic data: training examples (default 2048).
    pub size: usize,
    /// Synthetic data: test examples (default 512).
    pub test_size: usize,
    /// Synthetic data: image shape `[C, H, W]`, `H == W` (default `[3, 32, 32]`).
    pub shape: [usize; 3],
    /// Loader worker threads; 0 (default): one less than the cores, between 1 and 8.
    pub workers: usize,
    /// Batches prepared ahead of the training step, over all workers (default 8; each
    /// worker keeps at least one).
    pub prefetch: usize,
    /// Drop the last partial training batch of each epoch (default false). Evaluation
    /// always sees every example.
    pub drop_last: bool,
    /// An epoch of every training image and its mirror (2N examples shuffled together), as
    /// SGDR's `SGDR_WRNs.py` and the Downsampled ImageNet loader `load_databatch` build their
    /// training set, so that epochs count as those papers' do. The mirror replaces the random
    /// flip of `augment` (crops are still drawn). Default false (and then left out of the
    /// written config).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub mirrors: bool,
    /// ImageNet: side of the training crop and of the evaluation center crop (default 224).
    pub image_size: usize,
}

fn is_zero(x: &usize) -> bool {
    *x == 0
}

fn is_default_cutout_mode(m: &CutoutMode) -> bool {
    *m == CutoutMode::default()
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            dataset: DatasetName::FashionMnist,
            path: None,
            train_subset: 0,
            val_split: 0,
            normalize: Normalize::MeanStd,
            input_scale: 1.0,
            mean: None,
            std: None,
            augment: None,
            pad: 4,
            pad_mode: PadMode::Zero,
            cutout: 0,
            cutout_mode: CutoutMode::Center,
            labels: Labels::Fine,
            classes: 10,
            size: 2048,
            test_size: 512,
            shape: [3, 32, 32],
            workers: 0,
            prefetch: 8,
            drop_last: false,
            mirrors: false,
            image_size: 224,
        }
    }
}

impl DataConfig {
    /// The training augmentation: `augment`, or the dataset's default.
    pub fn augment(&self) -> Augment {
        self.augment
            .unwrap_or_else(|| self.dataset.default_augment())
    }

    /// The dataset folder: `path`, or the dataset's default (Fashion-MNIST only).
    pub fn path(&self) -> Option<PathBuf> {
        self.path.clone().or_else(|| match self.dataset {
            DatasetName::FashionMnist => Some(PathBuf::from(FASHION_MNIST_DEFAULT_PATH)),
            _ => None,
        })
    }

    /// A copy with the defaults that depend on the dataset (`augment`, `path`) written out,
    /// for saving the resolved run config.
    pub fn resolved(&self) -> DataConfig {
        let mut c = self.clone();
        c.augment = Some(self.augment());
        if self.dataset != DatasetName::Synthetic {
            c.path = self.path();
        }
        c
    }

    /// The keys of `[data]` that do nothing for this dataset and augmentation (the synthetic
    /// data's shape for a real dataset, `image_size` outside ImageNet, ...): left out of the
    /// resolved config, which should show what the run used.
    pub fn unused_keys(&self) -> Vec<&'static str> {
        let d = self.dataset;
        let mut out = Vec::new();
        if d != DatasetName::Synthetic {
            out.extend(["classes", "size", "test_size", "shape"]);
        }
        if d != DatasetName::Cifar100 {
            out.push("labels");
        }
        if d != DatasetName::Imagenet {
            out.push("image_size");
        }
        if self.augment() != Augment::CropFlip {
            out.extend(["pad", "pad_mode"]);
        }
        if self.cutout == 0 {
            out.push("cutout_mode");
        }
        out
    }

    /// Number of loader threads: `workers`, or automatic.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            return self.workers;
        }
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        cores.saturating_sub(1).clamp(1, 8)
    }

    /// Check the options that do not need the files; the dataset's own checks come later.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(input_error(msg));
        let d = self.dataset;
        if self.augment() == Augment::RandomResizedCrop && d != DatasetName::Imagenet {
            return bad(format!(
                "data.augment = random_resized_crop: only for imagenet (dataset {d} is \
                 stored at its training size); use crop_flip or flip"
            ));
        }
        if d == DatasetName::Imagenet && self.augment() == Augment::CropFlip {
            return bad(
                "data.augment = crop_flip: not for imagenet (images of many sizes); \
                 use random_resized_crop, flip or none"
                    .to_string(),
            );
        }
        if self.mirrors && self.augment() == Augment::RandomResizedCrop {
            return bad(
                "data.mirrors = true: not with random_resized_crop (its flip is part of the \
                 crop); use it with crop_flip, flip or none"
                    .to_string(),
            );
        }
        if self.image_size == 0 || self.image_size > 1024 {
            return bad(format!(
                "data.image_size = {}: must be in 1..=1024",
                self.image_size
            ));
        }
        if self.pad > 64 {
            return bad(format!("data.pad = {}: must be at most 64", self.pad));
        }
        if self.labels == Labels::Coarse && d != DatasetName::Cifar100 {
            return bad(format!(
                "data.labels = coarse: only for cifar100 (dataset is {d})"
            ));
        }
        if self.prefetch == 0 {
            return bad("data.prefetch = 0: must be at least 1".into());
        }
        if self.workers > 256 {
            return bad(format!(
                "data.workers = {}: must be at most 256",
                self.workers
            ));
        }
        if !(self.input_scale.is_finite() && self.input_scale > 0.0) {
            return bad(format!(
                "data.input_scale = {}: must be a finite number > 0 (255 for Caffe's raw pixels)",
                self.input_scale
            ));
        }
        if (self.mean.is_some() || self.std.is_some()) && self.normalize != Normalize::MeanStd {
            return bad(format!(
                "data.mean / data.std: only with normalize = \"mean_std\" (normalize is {:?})",
                self.normalize.name()
            ));
        }
        if let Some(std) = &self.std {
            if let Some(s) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
                return bad(format!("data.std contains {s}: must be finite and > 0"));
            }
        }
        if let Some(mean) = &self.mean {
            if let Some(m) = mean.iter().find(|m| !m.is_finite()) {
                return bad(format!("data.mean contains {m}: must be finite"));
            }
        }
        if d == DatasetName::Synthetic {
            if self.path.is_some() {
                return bad("data.path: synthetic data has no files; remove the key".into());
            }
            let [c, h, w] = self.shape;
            if c == 0 || h == 0 || h != w || c > 64 || h > 4096 {
                return bad(format!(
                    "data.shape = [{c}, {h}, {w}]: must be [C, H, W] with H == W, \
                     1 <= C <= 64, 1 <= H <= 4096"
                ));
            }
            if self.classes == 0 || self.classes > 65536 {
                return bad(format!(
                    "data.classes = {}: must be in 1..=65536",
                    self.classes
                ));
            }
            if self.size == 0 || self.test_size == 0 {
                return bad(format!(
                    "data.size = {}, data.test_size = {}: both must be at least 1",
                    self.size, self.test_size
                ));
            }
        } else if self.path().is_none() {
            return bad(format!(
                "data.path: required for dataset {d} (the folder holding its files)"
            ));
        }
        Ok(())
    }
}

/// One line for logs: dataset, folder, splits and preprocessing.
pub fn describe(cfg: &DataConfig) -> String {
    let mut s = format!("dataset {}", cfg.dataset);
    match (cfg.dataset, cfg.path()) {
        (DatasetName::Synthetic, _) => {
            let [c, h, w] = cfg.shape;
            s += &format!(
                " ({} train / {} test, {} classes, {c}x{h}x{w})",
                cfg.size, cfg.test_size, cfg.classes
            );
        }
        (_, Some(p)) => s += &format!(" from {}", p.display()),
        (_, None) => {}
    }
    if cfg.dataset == DatasetName::Cifar100 {
        s += match cfg.labels {
            Labels::Fine => ", fine labels",
            Labels::Coarse => ", coarse labels",
        };
    }
    if cfg.train_subset > 0 {
        s += &format!(", train subset {}", cfg.train_subset);
    }
    if cfg.val_split > 0 {
        s += &format!(", validation split {}", cfg.val_split);
    }
    let aug = cfg.augment();
    s += &format!(", augment {}", aug.name());
    if aug == Augment::CropFlip {
        s += &format!(" (pad {}, {})", cfg.pad, cfg.pad_mode.name());
    }
    if cfg.cutout > 0 {
        s += &format!(" + cutout {} ({})", cfg.cutout, cfg.cutout_mode.name());
    }
    s += &format!(", normalize {}", cfg.normalize.name());
    s
}
