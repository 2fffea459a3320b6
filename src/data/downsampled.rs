//! Downsampled ImageNet (Chrabaszcz, Loshchilov & Hutter 2017, arXiv 1707.08819): the 1000
//! ILSVRC classes box-downsampled to 16x16, 32x32 or 64x64, SGDR's third dataset (§4.5).
//!
//! The official release is numpy archives: `train_data_batch_1.npz` .. `train_data_batch_10.npz`
//! (in that order) and `val_data.npz`, each with `data` (uint8, one row of `3·S·S` values per
//! image, channel-major: all red, then green, then blue, rows top to bottom: CHW) and `labels`
//! (1-based, 1..=1000); training files may also carry `mean`, which is not used. The folder
//! may hold the files or the extracted archives' folders (`Imagenet32_train_npz/`,
//! `Imagenet32_val_npz/`, likewise for 16 and 64).
//!
//! The 64x64 training set is about 12 GiB, so nothing is loaded whole: a `data` member stored
//! uncompressed (`np.savez`, the release's format) is memory-mapped and each example is read
//! from the page cache when the loader asks for it. A member compressed with deflate
//! (`np.savez_compressed`) cannot be mapped; it is inflated into memory once, with a note
//! saying how much, and saving the file with `np.savez` avoids it.

use super::augment;
use super::{Augment, Source, Splits};
use crate::error::input_error;
use anyhow::Result;
use rand_chacha::ChaCha8Rng;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Classes of the release; labels in the files are `1..=CLASSES`.
pub const CLASSES: usize = 1000;

/// Number of training files of the release.
pub const TRAIN_FILES: usize = 10;

/// Open the training and validation splits of the `side`x`side` release in `dir`.
pub fn open(dir: &Path, side: usize) -> Result<Splits> {
    let find = |sub: &str, probe: &str| -> PathBuf {
        let inner = dir.join(format!("Imagenet{side}_{sub}_npz"));
        if !dir.join(probe).exists() && inner.join(probe).exists() {
            inner
        } else {
            dir.to_path_buf()
        }
    };
    let train_dir = find("train", "train_data_batch_1.npz");
    let val_dir = find("val", "val_data.npz");
    let train: Vec<PathBuf> = (1..=TRAIN_FILES)
        .map(|i| train_dir.join(format!("train_data_batch_{i}.npz")))
        .collect();
    Ok(Splits {
        train: Arc::new(NpzSource::open(&train, side)?),
        test: Arc::new(NpzSource::open(&[val_dir.join("val_data.npz")], side)?),
        num_classes: CLASSES as i64,
        mean_std: None,
        location: dir.display().to_string(),
    })
}

/// The bytes of one file's `data` rows: mapped from disk, or inflated into memory.
enum Rows {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Rows {
    fn bytes(&self) -> &[u8] {
        match self {
            Rows::Mapped(m) => m,
            Rows::Owned(v) => v,
        }
    }
}

/// One file's rows: `count` images of `row` bytes starting at byte `offset` of `rows`.
struct Chunk {
    rows: Rows,
    offset: usize,
    count: usize,
}

/// Examples of one or more npz files, concatenated in order, read on demand.
pub struct NpzSource {
    chunks: Vec<Chunk>,
    /// Index of each chunk's first example (non-decreasing, starts at 0).
    starts: Vec<usize>,
    /// 0-based class of every example.
    labels: Vec<u16>,
    side: usize,
}

impl NpzSource {
    /// Read the headers and labels of `paths` and map (or inflate) their `data`; every check of
    /// the format happens here, so a bad file is refused before training starts.
    pub fn open(paths: &[PathBuf], side: usize) -> Result<NpzSource> {
        let mut source = NpzSource {
            chunks: Vec::new(),
            starts: Vec::new(),
            labels: Vec::new(),
            side,
        };
        for path in paths {
            let (chunk, labels) = read_file(path, side)?;
            source.starts.push(source.labels.len());
            source.labels.extend(labels);
            source.chunks.push(chunk);
        }
        Ok(source)
    }

    fn row_bytes(&self) -> usize {
        3 * self.side * self.side
    }

    /// The CHW bytes of example `index`.
    pub fn image(&self, index: usize) -> &[u8] {
        let c = self.starts.partition_point(|&s| s <= index) - 1;
        let chunk = &self.chunks[c];
        let n = self.row_bytes();
        let at = chunk.offset + (index - self.starts[c]) * n;
        &chunk.rows.bytes()[at..at + n]
    }
}

impl Source for NpzSource {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn label(&self, index: usize) -> i64 {
        self.labels[index] as i64
    }

    fn shape(&self) -> (usize, usize, usize) {
        (3, self.side, self.side)
    }

    /// Copies the image; like an in-memory array (the loader applies its own pad and crop).
    fn fetch(
        &self,
        index: usize,
        augment: Augment,
        rng: &mut ChaCha8Rng,
        out: &mut [u8],
    ) -> Result<bool> {
        out.copy_from_slice(self.image(index));
        augment::apply_stored(augment, rng, out, self.shape(), "downsampled ones")
    }
}

/// What a Downsampled ImageNet file holds, for error messages.
const FORMAT: &str = "a Downsampled ImageNet npz file with `data` (uint8 rows of 3·S·S) and \
                      `labels` (1..1000)";

/// Read one npz file: its mapped (or inflated) `data` rows and its 0-based labels.
fn read_file(path: &Path, side: usize) -> Result<(Chunk, Vec<u16>)> {
    let name = path.display().to_string();
    let bad = |why: String| input_error(format!("{name}: {why}"));
    let file = File::open(path).map_err(|e| {
        bad(if e.kind() == std::io::ErrorKind::NotFound {
            format!("missing ({FORMAT})")
        } else {
            format!("cannot read: {e}")
        })
    })?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(&file)).map_err(|e| {
        bad(format!(
            "not a readable npz archive ({e}): truncated, or not {FORMAT}?"
        ))
    })?;
    let keys: Vec<String> = zip
        .file_names()
        .map(|n| n.trim_end_matches(".npy").to_string())
        .collect();
    let missing = |key: &str| {
        bad(format!(
            "no `{key}` array (the archive holds: {}); expected {FORMAT}",
            keys.join(", ")
        ))
    };

    // Labels: any integer type numpy may have saved a Python list as.
    let labels = {
        let member = zip.by_name("labels.npy").map_err(|_| missing("labels"))?;
        let npy = npyz::NpyFile::new(member).map_err(|e| bad(format!("labels: {e}")))?;
        let shape = npy.shape().to_vec();
        if shape.len() != 1 {
            return Err(bad(format!(
                "labels: shape {shape:?}, expected one dimension (one label per image)"
            )));
        }
        let values = read_ints(npy).map_err(|e| bad(format!("labels: {e}")))?;
        let mut labels = Vec::with_capacity(values.len());
        for (i, &v) in values.iter().enumerate() {
            if !(1..=CLASSES as i64).contains(&v) {
                return Err(bad(format!(
                    "labels: label {v} of image {i} is out of range 1..={CLASSES} (the \
                     release's labels are 1-based)"
                )));
            }
            labels.push((v - 1) as u16);
        }
        labels
    };

    // Data: check the header, then map the rows or inflate them.
    let row = 3 * side * side;
    let (stored, start, size) = {
        let member = zip.by_name("data.npy").map_err(|_| missing("data"))?;
        (
            member.compression() == zip::CompressionMethod::Stored,
            member.data_start(),
            member.size(),
        )
    };
    let check = |header: &npyz::NpyHeader| -> Result<usize> {
        let dtype = header.dtype().descr();
        let shape = header.shape().to_vec();
        if !matches!(dtype.as_str(), "'|u1'" | "'<u1'" | "'>u1'") {
            return Err(bad(format!("data: dtype {dtype}, expected uint8 pixels")));
        }
        let rows = match shape.as_slice() {
            [n, w] if *w as usize == row => *n as usize,
            [n, 3, h, w] if *h as usize == side && *w as usize == side => *n as usize,
            _ => {
                return Err(bad(format!(
                    "data: shape {shape:?}, expected rows of 3·{side}·{side} = {row} values \
                     (is this the {side}x{side} release?)"
                )))
            }
        };
        if header.order() != npyz::Order::C {
            return Err(bad("data: Fortran order, expected C order rows".into()));
        }
        if rows != labels.len() {
            return Err(bad(format!(
                "data has {rows} images but labels has {}: they must match",
                labels.len()
            )));
        }
        Ok(rows)
    };
    let chunk = match (stored, start) {
        (true, Some(start)) => {
            // SAFETY: the map is read-only and the file is not written while training reads
            // it; a file truncated under a running job is the same hazard as for any reader.
            let map = unsafe { memmap2::Mmap::map(&file) }
                .map_err(|e| bad(format!("cannot map it: {e}")))?;
            let end = start.saturating_add(size);
            if end > map.len() as u64 {
                return Err(bad(format!(
                    "data: the member ends at byte {end}, past the file's {} bytes (truncated?)",
                    map.len()
                )));
            }
            let member = &map[start as usize..end as usize];
            let mut rest = member;
            let header =
                npyz::NpyHeader::from_reader(&mut rest).map_err(|e| bad(format!("data: {e}")))?;
            let count = check(&header)?;
            if (rest.len() as u64) < (count as u64) * row as u64 {
                return Err(bad(format!(
                    "data: {} bytes of pixels for {count} images of {row}: truncated",
                    rest.len()
                )));
            }
            let offset = start as usize + (member.len() - rest.len());
            Chunk {
                rows: Rows::Mapped(map),
                offset,
                count,
            }
        }
        _ => {
            let member = zip.by_name("data.npy").map_err(|_| missing("data"))?;
            let npy = npyz::NpyFile::new(member).map_err(|e| bad(format!("data: {e}")))?;
            let count = check(npy.header())?;
            let mib = (count * row) as f64 / (1024.0 * 1024.0);
            crate::util::warn_once(&format!(
                "lrlab: {name}: `data` is compressed, so it is inflated into memory ({mib:.0} \
                 MiB); saved uncompressed (np.savez) it would be mapped from disk instead"
            ));
            let mut bytes = vec![0u8; count * row];
            npy.into_inner()
                .read_exact(&mut bytes)
                .map_err(|e| bad(format!("data: {e} (truncated?)")))?;
            Chunk {
                rows: Rows::Owned(bytes),
                offset: 0,
                count,
            }
        }
    };
    debug_assert_eq!(chunk.count, labels.len());
    Ok((chunk, labels))
}

/// An integer array's values as `i64`, whatever integer type it was saved as.
fn read_ints<R: Read>(npy: npyz::NpyFile<R>) -> std::io::Result<Vec<i64>> {
    macro_rules! try_as {
        ($npy:expr, $($t:ty),*) => {{
            let npy = $npy;
            $(
                let npy = match npy.try_data::<$t>() {
                    Ok(r) => return r.map(|v| v.map(|x| x as i64)).collect(),
                    Err(npy) => npy,
                };
            )*
            npy
        }};
    }
    let npy = try_as!(npy, i64, i32, i16, u8, u16, u32, u64, i8);
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("dtype {}, expected integers", npy.dtype().descr()),
    ))
}
