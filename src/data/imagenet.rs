//! ImageNet (ILSVRC) in its folder layout, streamed from disk.
//!
//! Layout: `ROOT/train/<wnid>/*.JPEG` and `ROOT/val/<wnid>/*.JPEG` (the validation images
//! sorted into class folders, as torchvision's `ImageFolder` expects). Classes are the train
//! folder's wnids in sorted order; the validation folder must hold the same wnids. Only files
//! named `*.jpeg` / `*.jpg` (any case) are listed, and only JPEG data is decoded (grey, YCbCr,
//! CMYK and YCCK all become RGB; EXIF orientation is ignored, as torchvision's loader does).
//! A file that does not decode (corrupt, truncated, or the one PNG named `.JPEG` in ILSVRC-2012
//! train) is reported once on stderr and skipped.
//!
//! Nothing but the file names is held in memory. [`Source::fetch`] reads and decodes one file
//! (pure-Rust `zune-jpeg`) and applies the augmentation on the calling worker thread:
//! - [`Augment::RandomResizedCrop`]: torchvision's `RandomResizedCrop(size)` (scale
//!   0.08..1, ratio 3/4..4/3, 10 attempts, then the center-crop fallback) followed by
//!   `RandomHorizontalFlip()`; the crop is resampled straight from the decoded image to
//!   `size` x `size` with PIL's antialiased bilinear filter.
//! - [`Augment::None`] (evaluation): `Resize(size * 8 / 7)` of the shorter side (256 for 224,
//!   truncated for other sizes, e.g. 146 for 128), then `CenterCrop(size)`; only the kept
//!   window is computed.
//! - [`Augment::Flip`]: the evaluation crop, mirrored with probability 1/2.
//! - [`Augment::CropFlip`] (the 32x32 recipe) is an input error.
//!
//! Given the same decoded pixels, the resampling is bit-identical to torchvision's PIL path
//! (Pillow 13.0 checked); zune-jpeg's pixels differ from libjpeg-turbo's by about 0.35 grey
//! levels on average (chroma upsampling and IDCT rounding).

use crate::data::jpeg;
use crate::data::resize::{resample_to_chw, Image, Rect};
use crate::data::{Augment, Source};
use anyhow::{Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// RandomResizedCrop's range of the crop's area as a fraction of the image's.
const SCALE: (f64, f64) = (0.08, 1.0);
/// RandomResizedCrop's range of the crop's aspect ratio (width / height).
const RATIO: (f64, f64) = (3.0 / 4.0, 4.0 / 3.0);

/// One split (train or val) of an ImageNet folder: file names, labels, output size.
pub struct ImageNetSplit {
    /// The split's folder (`ROOT/train` or `ROOT/val`).
    dir: PathBuf,
    /// Class wnids in label order, shared by both splits.
    classes: Arc<Vec<String>>,
    /// All file names concatenated; example `i` is `names[ends[i-1]..ends[i]]`.
    names: String,
    ends: Vec<usize>,
    labels: Vec<u32>,
    /// Output side length in pixels.
    size: usize,
    /// Examples already reported as unreadable, so each is reported once.
    reported: Mutex<HashSet<usize>>,
}

impl fmt::Debug for ImageNetSplit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImageNetSplit")
            .field("dir", &self.dir)
            .field("classes", &self.classes.len())
            .field("len", &self.labels.len())
            .field("size", &self.size)
            .finish()
    }
}

/// Open `root/train` and `root/val` for `size` x `size` outputs.
///
/// Returns the training split, the validation split and the number of classes. Errors
/// ([`InputError`](crate::InputError), naming the path): `size` is 0, a folder is missing,
/// the train folder holds no class folder, a class folder holds no JPEG file, or the val
/// folder's class folders differ from the train folder's.
pub fn open(root: &Path, size: usize) -> Result<(ImageNetSplit, ImageNetSplit, usize)> {
    if size == 0 {
        crate::bail_input!("ImageNet image size = 0: must be >= 1");
    }
    if !root.is_dir() {
        crate::bail_input!("{}: ImageNet folder not found", root.display());
    }
    let train_dir = root.join("train");
    let val_dir = root.join("val");
    let classes = class_folders(&train_dir)?;
    let val_classes = class_folders(&val_dir)?;
    for wnid in &val_classes {
        if classes.binary_search(wnid).is_err() {
            crate::bail_input!(
                "{}: class folder {wnid} is not in {}: val must hold the same classes as train",
                val_dir.display(),
                train_dir.display()
            );
        }
    }
    if let Some(wnid) = classes
        .iter()
        .find(|w| val_classes.binary_search(w).is_err())
    {
        crate::bail_input!(
            "{}: no class folder {wnid} (it is in {}): val must hold the same classes as train",
            val_dir.display(),
            train_dir.display()
        );
    }
    let classes = Arc::new(classes);
    let train = ImageNetSplit::list(train_dir, Arc::clone(&classes), size)?;
    let val = ImageNetSplit::list(val_dir, Arc::clone(&classes), size)?;
    Ok((train, val, classes.len()))
}

/// Sorted names of the class folders in `dir` (hidden entries and plain files are ignored).
fn class_folders(dir: &Path) -> Result<Vec<String>> {
    if !dir.is_dir() {
        crate::bail_input!(
            "{}: folder not found (expected ROOT/train and ROOT/val)",
            dir.display()
        );
    }
    let mut classes = Vec::new();
    let mut loose_images = 0usize;
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let path = entry.path();
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            crate::bail_input!("{}: folder name is not UTF-8", path.display());
        };
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            classes.push(name.to_string());
        } else if is_jpeg_name(name) {
            loose_images += 1;
        }
    }
    if classes.is_empty() {
        if loose_images > 0 {
            crate::bail_input!(
                "{}: holds {loose_images} images but no class folder: sort them into <wnid> \
                 folders (the ILSVRC validation images need their labels for that)",
                dir.display()
            );
        }
        crate::bail_input!(
            "{}: no class folder (expected <wnid>/ folders)",
            dir.display()
        );
    }
    classes.sort();
    Ok(classes)
}

/// True for the file names listed as images: `*.jpeg` or `*.jpg` in any case.
fn is_jpeg_name(name: &str) -> bool {
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => {
            ext.eq_ignore_ascii_case("jpeg") || ext.eq_ignore_ascii_case("jpg")
        }
        _ => false,
    }
}

/// Sorted JPEG file names of one class folder.
fn class_files(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            crate::bail_input!("{}: file name is not UTF-8", entry.path().display());
        };
        if is_jpeg_name(name) && !name.starts_with('.') {
            names.push(name.to_string());
        }
    }
    if names.is_empty() {
        crate::bail_input!("{}: no .JPEG file in this class folder", dir.display());
    }
    names.sort();
    Ok(names)
}

impl ImageNetSplit {
    /// List every class folder of `dir` (in parallel: a million files take a while).
    fn list(dir: PathBuf, classes: Arc<Vec<String>>, size: usize) -> Result<ImageNetSplit> {
        let per_class: Vec<Vec<String>> = classes
            .par_iter()
            .map(|wnid| class_files(&dir.join(wnid)))
            .collect::<Result<_>>()?;
        let total: usize = per_class.iter().map(Vec::len).sum();
        let mut names = String::with_capacity(per_class.iter().flatten().map(String::len).sum());
        let mut ends = Vec::with_capacity(total);
        let mut labels = Vec::with_capacity(total);
        for (label, files) in per_class.iter().enumerate() {
            let label = u32::try_from(label).context("too many classes")?;
            for f in files {
                names.push_str(f);
                ends.push(names.len());
                labels.push(label);
            }
        }
        Ok(ImageNetSplit {
            dir,
            classes,
            names,
            ends,
            labels,
            size,
            reported: Mutex::new(HashSet::new()),
        })
    }

    /// The split's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Class wnids in label order (sorted).
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Output side length in pixels.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Path of example `index`'s file.
    pub fn path(&self, index: usize) -> PathBuf {
        let start = if index == 0 { 0 } else { self.ends[index - 1] };
        let name = &self.names[start..self.ends[index]];
        let wnid = &self.classes[self.labels[index] as usize];
        self.dir.join(wnid).join(name)
    }

    /// Print the skip message for example `index` the first time it fails.
    fn report_unreadable(&self, index: usize, path: &Path, why: &str) {
        let mut seen = self.reported.lock().unwrap_or_else(|e| e.into_inner());
        if seen.insert(index) {
            eprintln!("skipping unreadable image {}: {why}", path.display());
        }
    }
}

impl Source for ImageNetSplit {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn label(&self, index: usize) -> i64 {
        i64::from(self.labels[index])
    }

    fn shape(&self) -> (usize, usize, usize) {
        (3, self.size, self.size)
    }

    /// Read and decode the file, then crop, resize and flip as `augment` says. A file that
    /// is not a decodable JPEG (corrupt, truncated, another format) is reported once and
    /// skipped (`Ok(false)`); a file that cannot be read at all is an error, as that points
    /// to the disk or the folder rather than to one bad image.
    fn fetch(
        &self,
        index: usize,
        augment: Augment,
        rng: &mut ChaCha8Rng,
        out: &mut [u8],
    ) -> Result<bool> {
        let path = self.path(index);
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let img = match jpeg::decode(&bytes) {
            Ok(img) => img,
            Err(why) => {
                self.report_unreadable(index, &path, &why);
                return Ok(false);
            }
        };
        let view = Image {
            pixels: &img.pixels,
            width: img.width,
            height: img.height,
            channels: img.channels,
        };
        render(view, self.size, augment, rng, out)?;
        Ok(true)
    }
}

/// Crop, resize and flip a decoded image as `augment` says into `out`
/// (`3 * size * size` bytes, CHW RGB).
pub fn render(
    img: Image<'_>,
    size: usize,
    augment: Augment,
    rng: &mut ChaCha8Rng,
    out: &mut [u8],
) -> Result<()> {
    anyhow::ensure!(
        out.len() == 3 * size * size,
        "output buffer holds {} bytes, not 3*{size}*{size}",
        out.len()
    );
    let full = Rect {
        x: 0,
        y: 0,
        w: img.width,
        h: img.height,
    };
    match augment {
        Augment::RandomResizedCrop => {
            let crop = random_resized_crop_box(img.width, img.height, rng);
            let flip = rng.gen::<f64>() < 0.5;
            let win = Rect {
                x: 0,
                y: 0,
                w: size,
                h: size,
            };
            resample_to_chw(img, crop, size, size, win, flip, out);
        }
        Augment::None | Augment::Flip => {
            let (w, h, win) = eval_geometry(img.width, img.height, size);
            let flip = augment == Augment::Flip && rng.gen::<f64>() < 0.5;
            resample_to_chw(img, full, w, h, win, flip, out);
        }
        Augment::CropFlip => crate::bail_input!(
            "augment = \"crop_flip\" is for 32x32 datasets, not ImageNet: use \
             \"random_resized_crop\", \"flip\" or \"none\""
        ),
    }
    Ok(())
}

/// torchvision `RandomResizedCrop.get_params` with scale (0.08, 1) and ratio (3/4, 4/3) for a
/// `width` x `height` image: up to 10 draws of an area fraction and a log-uniform aspect
/// ratio until the rounded crop fits, then a random position; failing that, the central crop
/// of the image clamped to the ratio range. Python's round (half to even) is reproduced.
pub fn random_resized_crop_box(width: usize, height: usize, rng: &mut ChaCha8Rng) -> Rect {
    let area = (width * height) as f64;
    let (log_lo, log_hi) = (RATIO.0.ln(), RATIO.1.ln());
    for _ in 0..10 {
        let target_area = area * (SCALE.0 + (SCALE.1 - SCALE.0) * rng.gen::<f64>());
        let aspect = (log_lo + (log_hi - log_lo) * rng.gen::<f64>()).exp();
        let w = (target_area * aspect).sqrt().round_ties_even() as usize;
        let h = (target_area / aspect).sqrt().round_ties_even() as usize;
        if 0 < w && w <= width && 0 < h && h <= height {
            let y = rng.gen_range(0..=height - h);
            let x = rng.gen_range(0..=width - w);
            return Rect { x, y, w, h };
        }
    }
    let in_ratio = width as f64 / height as f64;
    let (w, h) = if in_ratio < RATIO.0 {
        (width, (width as f64 / RATIO.0).round_ties_even() as usize)
    } else if in_ratio > RATIO.1 {
        ((height as f64 * RATIO.1).round_ties_even() as usize, height)
    } else {
        (width, height)
    };
    Rect {
        x: (width - w) / 2,
        y: (height - h) / 2,
        w,
        h,
    }
}

/// Evaluation geometry for a `width` x `height` image: torchvision `Resize(size * 8 / 7)` (the
/// shorter side to that length, the longer one scaled and truncated) then `CenterCrop(size)`
/// (offsets rounded half to even, as Python's round). Returns the resized width and height and
/// the window of the resized image that is kept.
pub fn eval_geometry(width: usize, height: usize, size: usize) -> (usize, usize, Rect) {
    let short = size * 8 / 7; // 256 for 224 (the 0.875 crop ratio)
    let (w, h) = if width <= height {
        (short, short * height / width)
    } else {
        (short * width / height, short)
    };
    let offset = |len: usize| ((len - size) as f64 / 2.0).round_ties_even() as usize;
    let win = Rect {
        x: offset(w),
        y: offset(h),
        w: size,
        h: size,
    };
    (w, h, win)
}

/// Throughput of the training fetch path (read, decode, random-resized-crop, flip to
/// `size`) in images per second over `n` training images spread evenly over the classes, on
/// `threads` threads. The files are read once beforehand so that the page cache, not the
/// disk, serves the timed pass.
pub fn bench_decode(root: &Path, size: usize, n: usize, threads: usize) -> Result<f64> {
    anyhow::ensure!(n > 0 && threads > 0, "n and threads must be positive");
    let (train, _, _) = open(root, size)?;
    let indices: Vec<usize> = (0..n).map(|i| i * train.len() / n).collect();
    for &i in &indices {
        std::fs::read(train.path(i))
            .with_context(|| format!("cannot read {}", train.path(i).display()))?;
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("cannot start the benchmark threads")?;
    let len = 3 * size * size;
    let start = Instant::now();
    pool.install(|| {
        indices.par_iter().try_for_each_init(
            || vec![0u8; len],
            |out, &i| {
                let mut rng = ChaCha8Rng::seed_from_u64(i as u64);
                train
                    .fetch(i, Augment::RandomResizedCrop, &mut rng, out)
                    .map(|_| ())
            },
        )
    })?;
    Ok(n as f64 / start.elapsed().as_secs_f64())
}
