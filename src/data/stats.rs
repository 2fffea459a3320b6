//! Normalisation statistics, computed exactly from the training examples.
//!
//! Sums of `u8` pixels and of their squares are accumulated in `u64` (exact), and turned
//! into `f64` means and population standard deviations only at the end, on the `[0, 1]`
//! scale (pixel / 255).

use super::config::Normalize;
use super::rng::keyed;
use super::{Augment, Source};
use anyhow::{Context, Result};
use rayon::prelude::*;

/// What the loader subtracts and divides by after scaling pixels to `[0, 1]`.
#[derive(Clone, Debug, PartialEq)]
pub enum Stats {
    /// Nothing.
    None,
    /// Per-channel `(x - mean[c]) / std[c]`.
    MeanStd {
        /// Channel means on the `[0, 1]` scale.
        mean: Vec<f64>,
        /// Channel standard deviations on the `[0, 1]` scale.
        std: Vec<f64>,
    },
    /// `x - mean_image`, the image in CHW order on the `[0, 1]` scale.
    PixelMean(Vec<f64>),
}

/// Per-channel and per-pixel sums over some examples.
struct Sums {
    channel: Vec<u64>,
    channel_sq: Vec<u64>,
    pixel: Vec<u64>,
}

/// Sum the un-augmented pixels of `indices` (per channel, and per pixel if `per_pixel`).
fn sums(source: &dyn Source, indices: &[usize], per_pixel: bool) -> Result<Sums> {
    let (c, h, w) = source.shape();
    let plane = h * w;
    let empty = || Sums {
        channel: vec![0; c],
        channel_sq: vec![0; c],
        pixel: vec![0; if per_pixel { c * plane } else { 0 }],
    };
    let chunk = 256.max(indices.len() / 64);
    indices
        .par_chunks(chunk)
        .map(|part| -> Result<Sums> {
            let mut s = empty();
            let mut buf = vec![0u8; c * plane];
            let mut rng = keyed(&[0]);
            for &i in part {
                if !source.fetch(i, Augment::None, &mut rng, &mut buf)? {
                    continue;
                }
                for (ch, px) in buf.chunks_exact(plane).enumerate() {
                    s.channel[ch] += px.iter().map(|&p| p as u64).sum::<u64>();
                    s.channel_sq[ch] += px.iter().map(|&p| (p as u64) * (p as u64)).sum::<u64>();
                }
                for (acc, &p) in s.pixel.iter_mut().zip(&buf) {
                    *acc += p as u64;
                }
            }
            Ok(s)
        })
        .try_reduce(empty, |mut a, b| {
            for (x, y) in a.channel.iter_mut().zip(&b.channel) {
                *x += y;
            }
            for (x, y) in a.channel_sq.iter_mut().zip(&b.channel_sq) {
                *x += y;
            }
            for (x, y) in a.pixel.iter_mut().zip(&b.pixel) {
                *x += y;
            }
            Ok(a)
        })
        .context("computing normalisation statistics")
}

/// Per-channel mean and population std of `indices`, on the `[0, 1]` scale.
pub fn mean_std(source: &dyn Source, indices: &[usize]) -> Result<(Vec<f64>, Vec<f64>)> {
    let (_, h, w) = source.shape();
    let s = sums(source, indices, false)?;
    let n = (indices.len() * h * w) as f64;
    let mean: Vec<f64> = s.channel.iter().map(|&v| v as f64 / n / 255.0).collect();
    let std = s
        .channel_sq
        .iter()
        .zip(&mean)
        .map(|(&sq, &m)| (sq as f64 / n / (255.0 * 255.0) - m * m).max(0.0).sqrt())
        .collect();
    Ok((mean, std))
}

/// Per-pixel mean image of `indices` (CHW), on the `[0, 1]` scale.
pub fn pixel_mean(source: &dyn Source, indices: &[usize]) -> Result<Vec<f64>> {
    let s = sums(source, indices, true)?;
    let n = indices.len() as f64;
    Ok(s.pixel.iter().map(|&v| v as f64 / n / 255.0).collect())
}

/// The statistics `normalize` needs. `mean` and `std` (from `data.mean`/`data.std` or the
/// dataset's standard constants) are used when given; missing ones are computed from
/// `indices` of `source`. A computed std of 0 (a constant channel) becomes 1.
pub fn compute(
    normalize: Normalize,
    source: &dyn Source,
    indices: &[usize],
    mean: Option<Vec<f64>>,
    std: Option<Vec<f64>>,
) -> Result<Stats> {
    Ok(match normalize {
        Normalize::None => Stats::None,
        Normalize::MeanStd => match (mean, std) {
            (Some(mean), Some(std)) => Stats::MeanStd { mean, std },
            (m, s) => {
                let (cm, cs) = mean_std(source, indices)?;
                let cs = cs
                    .into_iter()
                    .map(|v| if v > 0.0 { v } else { 1.0 })
                    .collect();
                Stats::MeanStd {
                    mean: m.unwrap_or(cm),
                    std: s.unwrap_or(cs),
                }
            }
        },
        Normalize::PixelMean => Stats::PixelMean(pixel_mean(source, indices)?),
    })
}
