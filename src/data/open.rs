//! Opening a dataset from its config and building the training and evaluation loaders.

use super::augment::AugmentSpec;
use super::config::{DataConfig, DatasetName, Labels};
use super::loader::{Loader, LoaderOptions};
use super::synthetic::SyntheticSource;
use super::{cifar, idx, rng, stats, subset, Augment, PadMode, Splits};
use crate::error::input_error;
use anyhow::Result;
use std::path::PathBuf;
use std::sync::Arc;

/// A dataset ready for training: loaders and the facts a model needs.
pub struct Data {
    /// Training examples (after `val_split` and `train_subset`): shuffled and augmented.
    pub train: Loader,
    /// Evaluation examples: the validation split when `val_split > 0`, else the test set.
    pub eval: Loader,
    /// Number of classes.
    pub num_classes: i64,
    /// Image channels.
    pub in_channels: i64,
    /// Image height and width (equal).
    pub image_size: i64,
    /// `"test"` or `"val"`: what `eval` holds.
    pub eval_name: &'static str,
}

/// The dataset folder named by the config, checked to exist.
fn folder(cfg: &DataConfig) -> Result<PathBuf> {
    let dir = cfg.path().ok_or_else(|| {
        input_error(format!(
            "data.path: required for dataset {} (the folder holding its files)",
            cfg.dataset
        ))
    })?;
    if !dir.is_dir() {
        let hint = if cfg.dataset == DatasetName::FashionMnist && cfg.path.is_none() {
            " (the default; install Debian's dataset-fashion-mnist package or set data.path)"
        } else {
            ""
        };
        return Err(input_error(format!(
            "data.path = {}: no such folder{hint}",
            dir.display()
        )));
    }
    Ok(dir)
}

/// Open both splits of the configured dataset. `seed` fixes synthetic data.
pub fn open(cfg: &DataConfig, seed: u64) -> Result<Splits> {
    cfg.validate()?;
    match cfg.dataset {
        DatasetName::Mnist | DatasetName::FashionMnist => idx::open(&folder(cfg)?),
        DatasetName::Cifar10 => cifar::open_cifar10(&folder(cfg)?),
        DatasetName::Cifar100 => {
            let labels = match cfg.labels {
                Labels::Fine => cifar::Cifar100Labels::Fine,
                Labels::Coarse => cifar::Cifar100Labels::Coarse,
            };
            cifar::open_cifar100(&folder(cfg)?, labels)
        }
        DatasetName::Synthetic => {
            let [c, h, w] = cfg.shape;
            let shape = (c, h, w);
            Ok(Splits {
                train: Arc::new(SyntheticSource::new(cfg.size, cfg.classes, shape, seed, 0)),
                test: Arc::new(SyntheticSource::new(
                    cfg.test_size,
                    cfg.classes,
                    shape,
                    seed,
                    1,
                )),
                num_classes: cfg.classes as i64,
                mean_std: None,
                location: "generated".into(),
            })
        }
        DatasetName::Imagenet => {
            let dir = folder(cfg)?;
            let (train, val, classes) = super::imagenet::open(&dir, cfg.image_size)?;
            Ok(Splits {
                train: Arc::new(train),
                test: Arc::new(val),
                num_classes: classes as i64,
                // torchvision's constants: computing them would decode the whole train set.
                mean_std: Some((vec![0.485, 0.456, 0.406], vec![0.229, 0.224, 0.225])),
                location: dir.display().to_string(),
            })
        }
        DatasetName::Imagenet16 | DatasetName::Imagenet32 | DatasetName::Imagenet64 => {
            let side = cfg
                .dataset
                .downsampled_side()
                .expect("a downsampled variant");
            super::downsampled::open(&folder(cfg)?, side)
        }
    }
}

/// Open the dataset, take the validation split and the training subset, compute the
/// normalisation and build both loaders. Randomness (split, subset, order, augmentation,
/// synthetic pixels) comes from `seed` only.
pub fn load(
    cfg: &DataConfig,
    batch_size: usize,
    eval_batch_size: usize,
    seed: u64,
    device: tch::Device,
) -> Result<Data> {
    if batch_size == 0 || eval_batch_size == 0 {
        return Err(input_error(format!(
            "batch size {batch_size}, evaluation batch size {eval_batch_size}: must be at least 1"
        )));
    }
    let splits = open(cfg, seed)?;
    let (c, h, w) = splits.train.shape();
    if h != w {
        return Err(input_error(format!(
            "{}: images are {h}x{w}; only square images are supported",
            splits.location
        )));
    }
    let train = splits.train.clone();
    let n = train.len();
    let all: Vec<usize> = (0..n).collect();
    let (eval_source, eval_indices, train_indices, eval_name) = if cfg.val_split > 0 {
        if cfg.val_split >= n {
            return Err(input_error(format!(
                "data.val_split = {}: must be less than the {n} training examples",
                cfg.val_split
            )));
        }
        let (val, rest) = subset::stratified_split(
            &*train,
            &all,
            splits.num_classes,
            cfg.val_split,
            &[seed, rng::VAL_SPLIT],
            "data.val_split",
        )?;
        (train.clone(), val, rest, "val")
    } else {
        let test = splits.test.clone();
        let idx = (0..test.len()).collect();
        (test, idx, all, "test")
    };
    if cfg.train_subset > 0 && (cfg.train_subset as i64) < splits.num_classes {
        return Err(input_error(format!(
            "data.train_subset = {}: fewer images than the {} classes; a stratified subset \
             needs at least one image of each class",
            cfg.train_subset, splits.num_classes
        )));
    }
    let train_indices = if cfg.train_subset > 0 {
        subset::stratified_split(
            &*train,
            &train_indices,
            splits.num_classes,
            cfg.train_subset,
            &[seed, rng::SUBSET],
            "data.train_subset",
        )?
        .0
    } else {
        train_indices
    };
    if cfg.drop_last && train_indices.len() < batch_size {
        return Err(input_error(format!(
            "data.drop_last = true with batch size {batch_size} > {} training examples: \
             no batch per epoch",
            train_indices.len()
        )));
    }
    if cfg.cutout > h.min(w) {
        return Err(input_error(format!(
            "data.cutout = {}: must be at most the image side {h}",
            cfg.cutout
        )));
    }
    let augment = AugmentSpec {
        augment: cfg.augment(),
        pad: cfg.pad,
        pad_mode: cfg.pad_mode,
        cutout: (cfg.cutout > 0).then_some(super::augment::Cutout {
            size: cfg.cutout,
            mode: cfg.cutout_mode,
        }),
    };
    if augment.augment == Augment::CropFlip
        && augment.pad_mode == PadMode::Reflect
        && augment.pad >= h.min(w)
    {
        return Err(input_error(format!(
            "data.pad = {}: reflect padding needs pad < image size {h}",
            cfg.pad
        )));
    }
    let (std_mean, std_std) = match splits.mean_std {
        Some((m, s)) => (Some(m), Some(s)),
        None => (None, None),
    };
    let stats = stats::compute(
        cfg.normalize,
        &*train,
        &train_indices,
        cfg.mean.clone().or(std_mean),
        cfg.std.clone().or(std_std),
    )?;
    if !cfg.drop_last && train_indices.len() < batch_size {
        // One short batch per epoch would silently make every "epoch" a single step.
        return Err(input_error(format!(
            "train.batch_size = {batch_size} is larger than the {} training images{}: every \
             epoch would be one step of {} images; use a batch size of at most {}",
            train_indices.len(),
            if cfg.train_subset > 0 || cfg.val_split > 0 {
                " (after data.train_subset and data.val_split)"
            } else {
                ""
            },
            train_indices.len(),
            train_indices.len()
        )));
    }
    let workers = cfg.worker_count();
    let train_loader = Loader::new(
        train,
        train_indices,
        LoaderOptions {
            batch_size,
            drop_last: cfg.drop_last,
            mirrors: cfg.mirrors,
            train: true,
            augment,
            seed,
            workers,
            prefetch: cfg.prefetch,
            name: "train",
            input_scale: cfg.input_scale,
        },
        stats.clone(),
        device,
    )?;
    let eval_loader = Loader::new(
        eval_source,
        eval_indices,
        LoaderOptions {
            batch_size: eval_batch_size,
            drop_last: false,
            mirrors: false,
            train: false,
            augment: AugmentSpec::NONE,
            seed,
            workers,
            prefetch: cfg.prefetch,
            name: eval_name,
            input_scale: cfg.input_scale,
        },
        stats,
        device,
    )?;
    Ok(Data {
        train: train_loader,
        eval: eval_loader,
        num_classes: splits.num_classes,
        in_channels: c as i64,
        image_size: h as i64,
        eval_name,
    })
}
