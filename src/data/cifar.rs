//! CIFAR-10 and CIFAR-100, binary versions (Krizhevsky 2009,
//! <https://www.cs.toronto.edu/~kriz/cifar.html>).
//!
//! CIFAR-10: `data_batch_1.bin` .. `data_batch_5.bin` (train, in that order) and
//! `test_batch.bin`, records of `<label u8><3072 pixel bytes>`. CIFAR-100: `train.bin` and
//! `test.bin`, records of `<coarse u8><fine u8><3072 pixel bytes>`. Pixels are 32x32 CHW
//! (1024 red, 1024 green, 1024 blue, rows top to bottom). The folder may be the extracted
//! archive's parent (`cifar-10-batches-bin/`, `cifar-100-binary/` below it) or that folder.

use super::array::ArraySource;
use super::Splits;
use crate::error::input_error;
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Bytes of one image.
const IMAGE_BYTES: usize = 3 * 32 * 32;

/// Which CIFAR-100 label to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cifar100Labels {
    /// The 100 fine classes (the usual benchmark).
    Fine,
    /// The 20 superclasses.
    Coarse,
}

/// Open CIFAR-10 from `dir` or `dir/cifar-10-batches-bin`.
pub fn open_cifar10(dir: &Path) -> Result<Splits> {
    let dir = level(dir, "cifar-10-batches-bin", "test_batch.bin");
    let train: Vec<PathBuf> = (1..=5)
        .map(|i| dir.join(format!("data_batch_{i}.bin")))
        .collect();
    let layout = CifarFormat::Cifar10.layout();
    Ok(Splits {
        train: Arc::new(read_records(&train, &layout)?),
        test: Arc::new(read_records(&[dir.join("test_batch.bin")], &layout)?),
        num_classes: 10,
        mean_std: None,
        location: dir.display().to_string(),
    })
}

/// Open CIFAR-100 from `dir` or `dir/cifar-100-binary`, with fine or coarse labels.
pub fn open_cifar100(dir: &Path, labels: Cifar100Labels) -> Result<Splits> {
    let dir = level(dir, "cifar-100-binary", "test.bin");
    let num_classes = match labels {
        Cifar100Labels::Coarse => 20,
        Cifar100Labels::Fine => 100,
    };
    let layout = CifarFormat::Cifar100(labels).layout();
    Ok(Splits {
        train: Arc::new(read_records(&[dir.join("train.bin")], &layout)?),
        test: Arc::new(read_records(&[dir.join("test.bin")], &layout)?),
        num_classes,
        mean_std: None,
        location: dir.display().to_string(),
    })
}

/// `dir/sub` when it holds `probe` and `dir` does not, else `dir`.
fn level(dir: &Path, sub: &str, probe: &str) -> PathBuf {
    let inner = dir.join(sub);
    if !dir.join(probe).exists() && inner.join(probe).exists() {
        inner
    } else {
        dir.to_path_buf()
    }
}

/// How a record is laid out.
struct Layout {
    /// Label bytes before the pixels.
    label_bytes: usize,
    /// Which label byte is the class.
    label_at: usize,
    /// Every label byte's valid range `0..n` and name.
    ranges: &'static [(usize, u8, &'static str)],
    /// The format, for error messages.
    what: &'static str,
}

/// The record layout of a CIFAR binary file, for [`parse_batch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CifarFormat {
    /// CIFAR-10 records: `<label><3072 pixel bytes>`.
    Cifar10,
    /// CIFAR-100 records, `<coarse><fine><3072 pixel bytes>`, training on these labels.
    Cifar100(Cifar100Labels),
}

impl CifarFormat {
    fn layout(self) -> Layout {
        match self {
            CifarFormat::Cifar10 => CIFAR10,
            CifarFormat::Cifar100(l) => Layout {
                label_at: if l == Cifar100Labels::Coarse { 0 } else { 1 },
                ..CIFAR100
            },
        }
    }
}

/// Parse the bytes of one CIFAR binary file (`name` names it in messages) into its pixels
/// (CHW, 3072 bytes per image) and labels. Creates no tensors.
pub fn parse_batch(name: &str, bytes: &[u8], format: CifarFormat) -> Result<(Vec<u8>, Vec<u16>)> {
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    parse_records(name, bytes, &format.layout(), &mut pixels, &mut labels)?;
    Ok((pixels, labels))
}

const CIFAR10: Layout = Layout {
    label_bytes: 1,
    label_at: 0,
    ranges: &[(0, 10, "label")],
    what: "CIFAR-10 binary records (<label><3072 pixel bytes>)",
};

const CIFAR100: Layout = Layout {
    label_bytes: 2,
    label_at: 1,
    ranges: &[(0, 20, "coarse label"), (1, 100, "fine label")],
    what: "CIFAR-100 binary records (<coarse><fine><3072 pixel bytes>)",
};

/// Read the records of `paths`, concatenated in order.
fn read_records(paths: &[PathBuf], layout: &Layout) -> Result<ArraySource> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for path in paths {
        let name = path.display().to_string();
        let cannot = |e: std::io::Error| {
            let why = if e.kind() == std::io::ErrorKind::NotFound {
                "missing".to_string()
            } else {
                format!("cannot read: {e}")
            };
            input_error(format!("{name}: {why} ({})", layout.what))
        };
        // The size is checked before the file is read, so a wrong (perhaps huge) file is
        // refused without loading it.
        let len = std::fs::metadata(path).map_err(cannot)?.len();
        check_size(&name, len, layout)?;
        let bytes = std::fs::read(path).map_err(cannot)?;
        parse_records(&name, &bytes, layout, &mut pixels, &mut labels)?;
    }
    Ok(ArraySource::new(pixels, labels, (3, 32, 32)))
}

/// A file of `len` bytes must hold a whole, non-zero number of records.
fn check_size(name: &str, len: u64, layout: &Layout) -> Result<()> {
    let record = (layout.label_bytes + IMAGE_BYTES) as u64;
    if len == 0 || len % record != 0 {
        return Err(input_error(format!(
            "{name}: wrong size {len} bytes: not a whole number of {record}-byte {} \
             (truncated or not this dataset?)",
            layout.what
        )));
    }
    Ok(())
}

/// Append the records of one file's bytes to `pixels` and `labels`.
fn parse_records(
    name: &str,
    bytes: &[u8],
    layout: &Layout,
    pixels: &mut Vec<u8>,
    labels: &mut Vec<u16>,
) -> Result<()> {
    let record = layout.label_bytes + IMAGE_BYTES;
    check_size(name, bytes.len() as u64, layout)?;
    pixels.reserve(bytes.len() / record * IMAGE_BYTES);
    for (i, rec) in bytes.chunks_exact(record).enumerate() {
        for &(at, n, label_name) in layout.ranges {
            if rec[at] >= n {
                return Err(input_error(format!(
                    "{name}: {label_name} {} of record {i} is out of range 0..{n}",
                    rec[at]
                )));
            }
        }
        labels.push(rec[layout.label_at] as u16);
        pixels.extend_from_slice(&rec[layout.label_bytes..]);
    }
    Ok(())
}
