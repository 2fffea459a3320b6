//! MNIST and Fashion-MNIST in the IDX format (LeCun et al.), gzipped or raw.
//!
//! A folder holds `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
//! `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte`, each optionally ending in `.gz`
//! (gzip is recognised by its content, not the name). Images: magic `0x00000803`, then
//! big-endian `u32` count, rows, columns, then `count*rows*cols` pixel bytes. Labels: magic
//! `0x00000801`, count, then one byte per label.
//!
//! The header's sizes are checked against the file's length before anything is allocated:
//! exactly for raw files, and against deflate's maximum ratio (1032:1) for gzipped ones.

use super::array::ArraySource;
use super::Splits;
use crate::error::input_error;
use anyhow::Result;
use flate2::read::GzDecoder;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Magic number of an IDX file of unsigned bytes with 3 dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with 1 dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// Classes of MNIST and Fashion-MNIST.
pub const NUM_CLASSES: u16 = 10;
/// Deflate cannot expand data by more than about 1032:1; a header promising more data than
/// that from a gzip file of this size is corrupt.
const MAX_GZIP_RATIO: u64 = 1032;
/// Largest buffer allocated up front from a header's sizes (64 MiB, more than MNIST's
/// training images); beyond it the buffer grows with the data read.
const MAX_PREALLOC: usize = 64 << 20;

/// Open both splits of an IDX dataset in `dir` (10 classes, one channel).
pub fn open(dir: &Path) -> Result<Splits> {
    let train = read_split(dir, "train")?;
    let test = read_split(dir, "t10k")?;
    if train.image(0).len() != test.image(0).len() {
        return Err(input_error(format!(
            "{}: train and t10k images have different sizes ({:?} vs {:?})",
            dir.display(),
            super::Source::shape(&train),
            super::Source::shape(&test)
        )));
    }
    Ok(Splits {
        train: Arc::new(train),
        test: Arc::new(test),
        num_classes: NUM_CLASSES as i64,
        mean_std: None,
        location: dir.display().to_string(),
    })
}

/// Read `<prefix>-images-idx3-ubyte[.gz]` and `<prefix>-labels-idx1-ubyte[.gz]` from `dir`.
pub fn read_split(dir: &Path, prefix: &str) -> Result<ArraySource> {
    let images_path = find(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels_path = find(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let images = read_idx(&images_path, IMAGES_MAGIC, "IDX images", 3)?;
    let labels = read_idx(&labels_path, LABELS_MAGIC, "IDX labels", 1)?;
    check_split(
        &images_path.display().to_string(),
        images,
        &labels_path.display().to_string(),
        labels,
    )
}

/// Parse an images file and a labels file given as bytes (raw or gzipped) into a split;
/// `images_name` and `labels_name` name them in messages. Creates no tensors.
pub fn parse_split(
    images_name: &str,
    images: &[u8],
    labels_name: &str,
    labels: &[u8],
) -> Result<ArraySource> {
    let i = parse_idx(images_name, images, IMAGES_MAGIC, "IDX images", 3)?;
    let l = parse_idx(labels_name, labels, LABELS_MAGIC, "IDX labels", 1)?;
    check_split(images_name, i, labels_name, l)
}

/// Square images, one label per image, every label a class.
fn check_split(
    images_name: &str,
    (dims, pixels): (Vec<usize>, Vec<u8>),
    labels_name: &str,
    (ldims, labels): (Vec<usize>, Vec<u8>),
) -> Result<ArraySource> {
    let (rows, cols) = (dims[1], dims[2]);
    if rows != cols {
        return Err(input_error(format!(
            "{images_name}: images are {rows}x{cols}; only square images are supported"
        )));
    }
    if ldims[0] != dims[0] {
        return Err(input_error(format!(
            "{labels_name}: {} labels, but {images_name} holds {} images",
            ldims[0], dims[0]
        )));
    }
    if let Some(i) = labels.iter().position(|&l| l as u16 >= NUM_CLASSES) {
        return Err(input_error(format!(
            "{labels_name}: label {} of example {i} is out of range 0..{NUM_CLASSES}",
            labels[i]
        )));
    }
    let labels = labels.into_iter().map(u16::from).collect();
    Ok(ArraySource::new(pixels, labels, (1, rows, cols)))
}

/// `dir/stem` or `dir/stem.gz`, whichever exists (the raw file wins).
fn find(dir: &Path, stem: &str) -> Result<PathBuf> {
    let raw = dir.join(stem);
    let gz = dir.join(format!("{stem}.gz"));
    if raw.is_file() {
        Ok(raw)
    } else if gz.is_file() {
        Ok(gz)
    } else {
        Err(input_error(format!(
            "{}: missing (neither {stem} nor {stem}.gz is in {})",
            raw.display(),
            dir.display()
        )))
    }
}

/// Read as many bytes as `buf` holds, fewer only at the end of the stream.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Read an IDX file of unsigned bytes with `ndims` dimensions: its dimensions and data.
pub fn read_idx(
    path: &Path,
    magic: u32,
    what: &str,
    ndims: usize,
) -> Result<(Vec<usize>, Vec<u8>)> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|e| input_error(format!("{name}: cannot open: {e}")))?;
    let file_len = file
        .metadata()
        .map_err(|e| input_error(format!("{name}: cannot read: {e}")))?
        .len();
    decode(&name, BufReader::new(file), file_len, magic, what, ndims)
}

/// Parse the bytes of an IDX file (raw or gzipped) of unsigned bytes with `ndims`
/// dimensions; `name` names it in messages. The header is checked against `bytes.len()`
/// exactly as [`read_idx`] checks it against the file's length.
pub fn parse_idx(
    name: &str,
    bytes: &[u8],
    magic: u32,
    what: &str,
    ndims: usize,
) -> Result<(Vec<usize>, Vec<u8>)> {
    decode(name, bytes, bytes.len() as u64, magic, what, ndims)
}

/// Decode an IDX stream of `file_len` stored bytes.
fn decode(
    name: &str,
    mut reader: impl BufRead,
    file_len: u64,
    magic: u32,
    what: &str,
    ndims: usize,
) -> Result<(Vec<usize>, Vec<u8>)> {
    let bad = |msg: String| input_error(format!("{name}: {msg}"));
    let head = reader
        .fill_buf()
        .map_err(|e| bad(format!("cannot read: {e}")))?;
    let gzipped = head.starts_with(&[0x1f, 0x8b]);
    let mut r: Box<dyn Read + '_> = if gzipped {
        Box::new(GzDecoder::new(reader))
    } else {
        Box::new(reader)
    };
    let io = |e: std::io::Error| {
        if gzipped {
            bad(format!("truncated or corrupt gzip data: {e}"))
        } else {
            bad(format!("cannot read: {e}"))
        }
    };

    let header_len = 4 + 4 * ndims;
    let mut header = vec![0u8; header_len];
    let got = read_full(&mut r, &mut header).map_err(io)?;
    if got < 4 {
        return Err(bad(format!(
            "truncated: {got} bytes, too short for an IDX magic number"
        )));
    }
    let found = u32::from_be_bytes(header[..4].try_into().unwrap());
    if found != magic {
        return Err(bad(format!(
            "wrong magic number 0x{found:08x}, expected 0x{magic:08x} ({what})"
        )));
    }
    if got < header_len {
        return Err(bad(format!(
            "truncated: {got} bytes, shorter than the {header_len}-byte header of {what}"
        )));
    }
    let dims: Vec<usize> = header[4..]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes(b.try_into().unwrap()) as usize)
        .collect();
    let shown = dims
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x");
    if dims.contains(&0) {
        return Err(bad(format!("header dimensions {shown}: no data")));
    }
    // u64 products cannot overflow: three u32 factors need at most 96 bits, so use u128.
    let payload = dims.iter().map(|&d| d as u128).product::<u128>();
    let stored = if gzipped { "gzip file of" } else { "file of" };
    let limit = if gzipped {
        file_len as u128 * MAX_GZIP_RATIO as u128
    } else {
        file_len.saturating_sub(header_len as u64) as u128
    };
    if payload > limit {
        return Err(bad(format!(
            "truncated or corrupt: header dimensions {shown} need {payload} data bytes, \
             more than a {stored} {file_len} bytes can hold"
        )));
    }
    if !gzipped && payload < limit {
        return Err(bad(format!(
            "wrong size: header dimensions {shown} need {} bytes, the file has {file_len}",
            payload + header_len as u128
        )));
    }
    let payload = payload as usize;
    // A gzip header may still promise up to 1032 times the file's size: grow the buffer as
    // data actually arrives rather than trusting the header with one large allocation.
    let mut data = Vec::with_capacity(payload.min(MAX_PREALLOC));
    r.take(payload as u64 + 1)
        .read_to_end(&mut data)
        .map_err(io)?;
    if data.len() < payload {
        return Err(bad(format!(
            "truncated: header dimensions {shown} need {payload} data bytes, the file holds {}",
            data.len()
        )));
    }
    if data.len() > payload {
        return Err(bad(format!(
            "wrong size: more data than the header dimensions {shown} ({payload} bytes) say"
        )));
    }
    Ok((dims, data))
}
