//! Small datasets written in the official file formats, for the data tests.
#![allow(dead_code)]

use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::Write;
use std::path::Path;

/// Images (CHW bytes, back to back) and labels of one split.
#[derive(Clone, Debug)]
pub struct Split {
    pub pixels: Vec<u8>,
    pub labels: Vec<u16>,
    pub chw: usize,
}

impl Split {
    pub fn image(&self, i: usize) -> &[u8] {
        &self.pixels[i * self.chw..(i + 1) * self.chw]
    }
}

/// Deterministic pseudo-random bytes (an LCG: fixtures need variety, not quality).
pub fn bytes(n: usize, salt: u64) -> Vec<u8> {
    let mut s = salt
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 56) as u8
        })
        .collect()
}

/// A split of `n` images of `chw` bytes with labels cycling through `classes`.
pub fn split(n: usize, chw: usize, classes: u16, salt: u64) -> Split {
    Split {
        pixels: bytes(n * chw, salt),
        labels: (0..n)
            .map(|i| ((i * 7 + salt as usize) % classes as usize) as u16)
            .collect(),
        chw,
    }
}

/// Write `bytes` to `path`, gzipped when `gz`.
pub fn write(path: &Path, bytes: &[u8], gz: bool) {
    if gz {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(bytes).unwrap();
        std::fs::write(path, e.finish().unwrap()).unwrap();
    } else {
        std::fs::write(path, bytes).unwrap();
    }
}

/// IDX images file contents: magic 0x803, count, rows, cols (big-endian), pixels.
pub fn idx_images(n: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [0x803u32, n, rows, cols] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v.extend_from_slice(pixels);
    v
}

/// IDX labels file contents: magic 0x801, count, labels.
pub fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [0x801u32, labels.len() as u32] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v.extend_from_slice(labels);
    v
}

/// Write an MNIST-style folder (28x28) with `ntrain` / `ntest` examples.
pub fn write_mnist(dir: &Path, gz: bool, ntrain: usize, ntest: usize) -> (Split, Split) {
    let train = split(ntrain, 784, 10, 1);
    let test = split(ntest, 784, 10, 2);
    let ext = if gz { ".gz" } else { "" };
    for (prefix, s) in [("train", &train), ("t10k", &test)] {
        let n = s.labels.len() as u32;
        write(
            &dir.join(format!("{prefix}-images-idx3-ubyte{ext}")),
            &idx_images(n, 28, 28, &s.pixels),
            gz,
        );
        write(
            &dir.join(format!("{prefix}-labels-idx1-ubyte{ext}")),
            &idx_labels(&s.labels.iter().map(|&l| l as u8).collect::<Vec<u8>>()),
            gz,
        );
    }
    (train, test)
}

/// Write CIFAR-10 binary files (`per_batch` train records in each of 5 batches, `ntest`
/// test records) into `dir`, or `dir/cifar-10-batches-bin` when `level`.
pub fn write_cifar10(dir: &Path, level: bool, per_batch: usize, ntest: usize) -> (Split, Split) {
    let dir = if level {
        dir.join("cifar-10-batches-bin")
    } else {
        dir.to_path_buf()
    };
    std::fs::create_dir_all(&dir).unwrap();
    let train = split(5 * per_batch, 3072, 10, 3);
    let test = split(ntest, 3072, 10, 4);
    let records = |s: &Split, range: std::ops::Range<usize>| {
        let mut v = Vec::new();
        for i in range {
            v.push(s.labels[i] as u8);
            v.extend_from_slice(s.image(i));
        }
        v
    };
    for b in 0..5 {
        let r = records(&train, b * per_batch..(b + 1) * per_batch);
        write(&dir.join(format!("data_batch_{}.bin", b + 1)), &r, false);
    }
    write(
        &dir.join("test_batch.bin"),
        &records(&test, 0..ntest),
        false,
    );
    (train, test)
}

/// Write CIFAR-100 binary files into `dir` (or `dir/cifar-100-binary`): returns the
/// (coarse, fine) labelled splits as (train coarse, train fine, test coarse, test fine).
pub fn write_cifar100(dir: &Path, level: bool, ntrain: usize, ntest: usize) -> [Split; 4] {
    let dir = if level {
        dir.join("cifar-100-binary")
    } else {
        dir.to_path_buf()
    };
    std::fs::create_dir_all(&dir).unwrap();
    let mut out = Vec::new();
    for (name, n, salt) in [("train.bin", ntrain, 5u64), ("test.bin", ntest, 6)] {
        let fine = split(n, 3072, 100, salt);
        let coarse = Split {
            labels: fine.labels.iter().map(|&f| (f * 3 + 1) % 20).collect(),
            ..fine.clone()
        };
        let mut v = Vec::new();
        for i in 0..n {
            v.push(coarse.labels[i] as u8);
            v.push(fine.labels[i] as u8);
            v.extend_from_slice(fine.image(i));
        }
        write(&dir.join(name), &v, false);
        out.push(coarse);
        out.push(fine);
    }
    out.try_into().unwrap()
}

/// The batches of `loader`'s epoch `epoch` from `start`: (images flattened, shape, labels).
pub fn batches(
    loader: &lrlab::data::Loader,
    epoch: u64,
    start: usize,
) -> Vec<(Vec<f32>, Vec<i64>, Vec<i64>)> {
    loader
        .epoch(epoch, start)
        .map(|b| {
            let b = b.unwrap();
            assert_eq!(b.images.kind(), tch::Kind::Float);
            assert_eq!(b.labels.kind(), tch::Kind::Int64);
            let shape = b.images.size();
            // Channels-last, as the models' weights (a dimension of size 1 has no stride to
            // speak of: one grey channel is NCHW and NHWC at once).
            let (c, h, w) = (shape[1], shape[2], shape[3]);
            let nhwc = [c * h * w, 1, w * c, c];
            for (d, (&got, &want)) in b.images.stride().iter().zip(&nhwc).enumerate() {
                assert!(
                    shape[d] == 1 || got == want,
                    "batch strides {:?} of shape {shape:?}: not channels-last",
                    b.images.stride()
                );
            }
            let x = Vec::<f32>::try_from(b.images.flatten(0, -1)).unwrap();
            let y = Vec::<i64>::try_from(&b.labels).unwrap();
            (x, shape, y)
        })
        .collect()
}

/// Pixels back from images normalised with `normalize = "none"` (x = p / 255), checking
/// that each value is within float rounding of p / 255.
pub fn to_u8(images: &[f32]) -> Vec<u8> {
    images
        .iter()
        .map(|&x| {
            let p = (x as f64 * 255.0).round();
            assert!((0.0..=255.0).contains(&p), "{x}");
            assert!(
                (x as f64 - p / 255.0).abs() < 1e-6,
                "{x} is not a pixel / 255"
            );
            p as u8
        })
        .collect()
}

/// How a Downsampled ImageNet fixture file is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Npz {
    /// `np.savez`: members stored (the release's format; lrlab maps them).
    Stored,
    /// `np.savez_compressed`: members deflated (lrlab inflates them).
    Deflated,
}

/// One array of an npz fixture.
pub enum Member<'a> {
    /// `u8` values of that shape (`data`, `mean`).
    U8(&'a [u8], Vec<u64>),
    /// One-dimensional `i64` values (`labels`, as numpy saves a Python list).
    I64(&'a [i64]),
}

/// Write an npz archive holding `members` (name without `.npy`).
pub fn write_npz(path: &Path, members: &[(&str, Member)], how: Npz) {
    use npyz::WriterBuilder;
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let method = match how {
        Npz::Stored => zip::CompressionMethod::Stored,
        Npz::Deflated => zip::CompressionMethod::Deflated,
    };
    let opts = zip::write::SimpleFileOptions::default().compression_method(method);
    for (name, m) in members {
        zip.start_file(format!("{name}.npy"), opts).unwrap();
        match m {
            Member::U8(v, shape) => {
                let mut w = npyz::WriteOptions::new()
                    .default_dtype()
                    .shape(shape)
                    .writer(&mut zip)
                    .begin_nd()
                    .unwrap();
                w.extend(v.iter().copied()).unwrap();
                w.finish().unwrap();
            }
            Member::I64(v) => {
                let mut w = npyz::WriteOptions::new()
                    .default_dtype()
                    .shape(&[v.len() as u64])
                    .writer(&mut zip)
                    .begin_nd()
                    .unwrap();
                w.extend(v.iter().copied()).unwrap();
                w.finish().unwrap();
            }
        }
    }
    zip.finish().unwrap();
}

/// Write a Downsampled ImageNet release of side `side` into `dir` (or the release's
/// `Imagenet{S}_train_npz/` and `Imagenet{S}_val_npz/` folders when `level`):
/// `per_file[i]` images in `train_data_batch_{i+1}.npz`, `nval` in `val_data.npz`, file `i`
/// written as `how(i)` (the validation file as `how(10)`). Labels cover 0..1000 (1..=1000
/// in the files). Returns (train, val) with 0-based labels.
pub fn write_downsampled(
    dir: &Path,
    side: usize,
    level: bool,
    per_file: [usize; 10],
    nval: usize,
    how: impl Fn(usize) -> Npz,
) -> (Split, Split) {
    let chw = 3 * side * side;
    let ntrain: usize = per_file.iter().sum();
    let spread = |mut s: Split| {
        // Reach both ends of 0..1000.
        for (i, l) in s.labels.iter_mut().enumerate() {
            *l = if i % 5 == 1 {
                999
            } else {
                (i * 397 % 1000) as u16
            };
        }
        s
    };
    let train = spread(split(ntrain, chw, 1000, 21));
    let val = spread(split(nval, chw, 1000, 22));
    let sub = |what: &str| {
        let d = if level {
            dir.join(format!("Imagenet{side}_{what}_npz"))
        } else {
            dir.to_path_buf()
        };
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    let (train_dir, val_dir) = (sub("train"), sub("val"));
    let write_part = |path: &Path, s: &Split, range: std::ops::Range<usize>, how: Npz| {
        let n = range.len();
        let labels: Vec<i64> = s.labels[range.clone()]
            .iter()
            .map(|&l| l as i64 + 1)
            .collect();
        let px = &s.pixels[range.start * chw..range.end * chw];
        let mean = vec![128u8; chw];
        write_npz(
            path,
            &[
                ("data", Member::U8(px, vec![n as u64, chw as u64])),
                ("labels", Member::I64(&labels)),
                ("mean", Member::U8(&mean, vec![chw as u64])),
            ],
            how,
        );
    };
    let mut at = 0;
    for (i, &n) in per_file.iter().enumerate() {
        let path = train_dir.join(format!("train_data_batch_{}.npz", i + 1));
        write_part(&path, &train, at..at + n, how(i));
        at += n;
    }
    write_part(&val_dir.join("val_data.npz"), &val, 0..nval, how(10));
    (train, val)
}
