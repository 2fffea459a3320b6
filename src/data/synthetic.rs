//! Synthetic images for benchmarks and tests: generated on demand, nothing stored.
//!
//! Example `i` of a split has label `i % classes` (classes exactly balanced) and pixels
//! `noise / 2 + bias[label][channel][row]`, where `noise` is uniform `u8` from a generator
//! keyed by `(seed, split, i)` and `bias` is a per-class value in `0..128` per channel and
//! row drawn from `seed`. The class signal keeps the data learnable (a smoke test's loss
//! can fall); the images are a pure function of `(seed, split, i)`.

use super::rng::{self, keyed};
use super::{Augment, Source};
use rand::RngCore;
use rand_chacha::ChaCha8Rng;

/// One split of synthetic examples.
#[derive(Clone, Debug)]
pub struct SyntheticSource {
    len: usize,
    classes: usize,
    shape: (usize, usize, usize),
    seed: u64,
    split: u64,
    /// `classes x C x H` row biases.
    bias: Vec<u8>,
}

impl SyntheticSource {
    /// `len` examples of `shape = (C, H, W)` in `classes` classes; `split` tells splits
    /// apart (0 train, 1 test); `seed` fixes every pixel.
    pub fn new(
        len: usize,
        classes: usize,
        shape: (usize, usize, usize),
        seed: u64,
        split: u64,
    ) -> Self {
        let mut bias = vec![0u8; classes * shape.0 * shape.1];
        keyed(&[seed, rng::SYNTHETIC, u64::MAX]).fill_bytes(&mut bias);
        for b in &mut bias {
            *b >>= 1;
        }
        SyntheticSource {
            len,
            classes,
            shape,
            seed,
            split,
            bias,
        }
    }
}

impl Source for SyntheticSource {
    fn len(&self) -> usize {
        self.len
    }

    fn label(&self, index: usize) -> i64 {
        (index % self.classes) as i64
    }

    fn shape(&self) -> (usize, usize, usize) {
        self.shape
    }

    fn fetch(
        &self,
        index: usize,
        augment: Augment,
        rng: &mut ChaCha8Rng,
        out: &mut [u8],
    ) -> anyhow::Result<bool> {
        let (c, h, w) = self.shape;
        keyed(&[self.seed, rng::SYNTHETIC, self.split, index as u64]).fill_bytes(out);
        let label = index % self.classes;
        for (r, row) in out.chunks_exact_mut(w).enumerate() {
            let b = self.bias[label * c * h + r];
            for p in row {
                *p = (*p >> 1) + b;
            }
        }
        super::augment::apply_stored(augment, rng, out, self.shape, "synthetic data")
    }
}
