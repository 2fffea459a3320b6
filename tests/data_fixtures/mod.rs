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
    pub labels: Vec<u8>,
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
pub fn split(n: usize, chw: usize, classes: u8, salt: u64) -> Split {
    Split {
        pixels: bytes(n * chw, salt),
        labels: (0..n)
            .map(|i| ((i * 7 + salt as usize) % classes as usize) as u8)
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
            &idx_labels(&s.labels),
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
            v.push(s.labels[i]);
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
            v.push(coarse.labels[i]);
            v.push(fine.labels[i]);
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
