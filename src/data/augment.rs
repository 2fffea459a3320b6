//! Flips and padded random crops on `u8` CHW images (pure Rust: runs on loader workers).
//!
//! [`Augment::CropFlip`] follows torchvision's `RandomCrop(size, padding=pad)` followed by
//! `RandomHorizontalFlip()`: pad every side by `pad` pixels (zeros, or a reflection that
//! does not repeat the edge, like `torch.nn.ReflectionPad2d`), take the `H x W` window at
//! offsets `oy, ox` drawn uniformly from `0..=2*pad` (both ends included, as torchvision;
//! tch's own `random_crop` never draws `2*pad`), then mirror it left-right with
//! probability 1/2.
//!
//! Draw order from the example's generator (part of the resume contract): `CropFlip` draws
//! `oy`, then `ox`, then the flip bit; `Flip` draws the flip bit only; cutout draws after
//! them (its row, then its column), so a run without cutout draws what it always drew.
//!
//! Cutout (DeVries & Taylor 2017) zeroes a square of the image after normalising, i.e. sets it
//! to the mean pixel, as both reference implementations do (DeVries & Taylor mask the
//! normalised tensor; the DAWNBench ResNet-9 code cuts out of pre-normalised data): the loader
//! applies it with the same mask as `PadMode::Mean`.

use super::rng::below;
use super::{Augment, PadMode};
use rand_chacha::ChaCha8Rng;

/// The augmentation the loader applies to fetched examples of one split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AugmentSpec {
    /// Which augmentation.
    pub augment: Augment,
    /// Padding of [`Augment::CropFlip`], in pixels per side.
    pub pad: usize,
    /// Padding mode of [`Augment::CropFlip`].
    pub pad_mode: PadMode,
    /// Cutout after the crop and flip (training only), if any.
    pub cutout: Option<Cutout>,
}

/// Where a cutout square may fall.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CutoutMode {
    /// DeVries & Taylor's: the centre is uniform over the image and the square is clipped at
    /// the border (`y0 = max(cy − L/2, 0)`, `y1 = min(cy + L/2, H)`, `L/2` rounded down).
    #[default]
    Center,
    /// The DAWNBench ResNet-9's (Page): the `L x L` square lies wholly inside the image, its
    /// corner uniform over `0..=H − L`.
    Inside,
}

impl CutoutMode {
    /// The name used in configs.
    pub fn name(self) -> &'static str {
        match self {
            CutoutMode::Center => "center",
            CutoutMode::Inside => "inside",
        }
    }
}

/// A cutout of `size x size` pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cutout {
    /// Side of the square, pixels (>= 1).
    pub size: usize,
    /// Where it may fall.
    pub mode: CutoutMode,
}

/// Draw the cutout's rows `y0..y1` and columns `x0..x1` in an `H x W` image: the row first,
/// then the column.
pub fn draw_cutout(
    rng: &mut ChaCha8Rng,
    (h, w): (usize, usize),
    cut: Cutout,
) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
    let l = cut.size;
    match cut.mode {
        CutoutMode::Center => {
            let cy = below(rng, h as u64) as usize;
            let cx = below(rng, w as u64) as usize;
            (
                cy.saturating_sub(l / 2)..(cy + l / 2).min(h),
                cx.saturating_sub(l / 2)..(cx + l / 2).min(w),
            )
        }
        CutoutMode::Inside => {
            let y0 = below(rng, (h - l.min(h) + 1) as u64) as usize;
            let x0 = below(rng, (w - l.min(w) + 1) as u64) as usize;
            (y0..(y0 + l).min(h), x0..(x0 + l).min(w))
        }
    }
}

/// Set to 1 the rows `ys` and columns `xs` of the `H x W` mask `out`.
pub fn mark(w: usize, ys: std::ops::Range<usize>, xs: std::ops::Range<usize>, out: &mut [u8]) {
    for y in ys {
        out[y * w + xs.start..y * w + xs.end].fill(1);
    }
}

impl AugmentSpec {
    /// No augmentation (evaluation).
    pub const NONE: AugmentSpec = AugmentSpec {
        augment: Augment::None,
        pad: 0,
        pad_mode: PadMode::Zero,
        cutout: None,
    };
}

/// Draw the flip bit (probability 1/2).
pub fn draw_flip(rng: &mut ChaCha8Rng) -> bool {
    below(rng, 2) == 1
}

/// Draw `(oy, ox, flip)` for [`crop_flip`]: offsets uniform in `0..=2*pad`, then the flip.
pub fn draw_crop_flip(rng: &mut ChaCha8Rng, pad: usize) -> (usize, usize, bool) {
    let span = 2 * pad as u64 + 1;
    let oy = below(rng, span) as usize;
    let ox = below(rng, span) as usize;
    (oy, ox, draw_flip(rng))
}

/// Source coordinate of padded coordinate `p` (`0..len + 2*pad`), or `None` for a zero.
fn source_coord(p: usize, pad: usize, len: usize, mode: PadMode) -> Option<usize> {
    let i = p as isize - pad as isize;
    let n = len as isize;
    if (0..n).contains(&i) {
        return Some(i as usize);
    }
    match mode {
        PadMode::Zero | PadMode::Mean => None,
        // ReflectionPad2d: -1 -> 1, n -> n-2 (the edge is not repeated); needs pad < len.
        PadMode::Reflect => {
            let r = if i < 0 { -i } else { 2 * (n - 1) - i };
            Some(r.clamp(0, n - 1) as usize)
        }
    }
}

/// Write into `out` the `H x W` window at offsets `(oy, ox)` of `src` padded by `pad`,
/// mirrored left-right when `flip`. `shape` is `(C, H, W)`; both buffers are CHW `u8`.
#[allow(clippy::too_many_arguments)]
pub fn crop_flip(
    src: &[u8],
    shape: (usize, usize, usize),
    pad: usize,
    mode: PadMode,
    oy: usize,
    ox: usize,
    flip: bool,
    out: &mut [u8],
) {
    let (c, h, w) = shape;
    assert_eq!(src.len(), c * h * w);
    assert_eq!(out.len(), c * h * w);
    let cols: Vec<Option<usize>> = (0..w)
        .map(|x| {
            let x = if flip { w - 1 - x } else { x };
            source_coord(ox + x, pad, w, mode)
        })
        .collect();
    for ch in 0..c {
        for y in 0..h {
            let dst = &mut out[(ch * h + y) * w..(ch * h + y + 1) * w];
            match source_coord(oy + y, pad, h, mode) {
                None => dst.fill(0),
                Some(sy) => {
                    let row = &src[(ch * h + sy) * w..(ch * h + sy + 1) * w];
                    for (d, col) in dst.iter_mut().zip(&cols) {
                        *d = col.map_or(0, |sx| row[sx]);
                    }
                }
            }
        }
    }
}

/// Mirror every row of a CHW image left-right, in place.
pub fn flip_in_place(buf: &mut [u8], shape: (usize, usize, usize)) {
    let w = shape.2;
    for row in buf.chunks_exact_mut(w) {
        row.reverse();
    }
}

/// Apply `spec` (only its `Flip` and `CropFlip` cases; others leave `buf` as it is) to the
/// CHW image in `buf`, drawing from `rng`. `scratch` is reused between calls. Returns the
/// crop `(oy, ox, flip)` of a `CropFlip`. `mirror`, when given, is the flip (`data.mirrors`:
/// the epoch's mirrored half), for every augmentation, `None` included; a crop is drawn as
/// without it.
pub fn apply(
    spec: &AugmentSpec,
    rng: &mut ChaCha8Rng,
    buf: &mut [u8],
    shape: (usize, usize, usize),
    scratch: &mut Vec<u8>,
    mirror: Option<bool>,
) -> Option<(usize, usize, bool)> {
    match spec.augment {
        Augment::Flip => {
            if mirror.unwrap_or_else(|| draw_flip(rng)) {
                flip_in_place(buf, shape);
            }
            None
        }
        Augment::CropFlip => {
            let (oy, ox, drawn) = draw_crop_flip(rng, spec.pad);
            let flip = mirror.unwrap_or(drawn);
            scratch.clear();
            scratch.extend_from_slice(buf);
            crop_flip(scratch, shape, spec.pad, spec.pad_mode, oy, ox, flip, buf);
            Some((oy, ox, flip))
        }
        Augment::None | Augment::RandomResizedCrop => {
            if mirror == Some(true) {
                flip_in_place(buf, shape);
            }
            None
        }
    }
}

/// [`super::Source::fetch`]'s augmentation for a source stored at its training size (arrays,
/// npz, synthetic data) with `buf` already holding the image: `Flip` and `CropFlip` with pad 4
/// and zeros (the loader asks such sources for `None` and applies the configured pad itself);
/// `RandomResizedCrop` needs full-size images and is refused, naming `what` the source holds.
pub fn apply_stored(
    augment: Augment,
    rng: &mut ChaCha8Rng,
    buf: &mut [u8],
    shape: (usize, usize, usize),
    what: &str,
) -> anyhow::Result<bool> {
    if augment == Augment::RandomResizedCrop {
        anyhow::bail!("random_resized_crop needs full-size images, not {what}");
    }
    let spec = AugmentSpec {
        augment,
        pad: 4,
        pad_mode: PadMode::Zero,
        cutout: None,
    };
    apply(&spec, rng, buf, shape, &mut Vec::new(), None);
    Ok(true)
}

/// Write into `out` (`H x W`) 1 where the crop `(oy, ox, flip)` of an image padded by `pad`
/// reads padding and 0 where it reads the image (the mask of `PadMode::Mean`).
pub fn pad_mask(
    hw: (usize, usize),
    pad: usize,
    (oy, ox, flip): (usize, usize, bool),
    out: &mut [u8],
) {
    let (h, w) = hw;
    for y in 0..h {
        let row_pad = source_coord(oy + y, pad, h, PadMode::Zero).is_none();
        for x in 0..w {
            let xs = if flip { w - 1 - x } else { x };
            let col_pad = source_coord(ox + xs, pad, w, PadMode::Zero).is_none();
            out[y * w + x] = u8::from(row_pad || col_pad);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_coordinates_match_reflection_pad() {
        // ReflectionPad2d(2) of [a b c d] is [c b a b c d c b].
        let got: Vec<_> = (0..8)
            .map(|p| source_coord(p, 2, 4, PadMode::Reflect).unwrap())
            .collect();
        assert_eq!(got, vec![2, 1, 0, 1, 2, 3, 2, 1]);
        assert_eq!(source_coord(1, 2, 4, PadMode::Zero), None);
    }

    #[test]
    fn centered_unflipped_crop_is_identity() {
        let src: Vec<u8> = (0..2 * 3 * 4).map(|v| v as u8).collect();
        let mut out = vec![0; src.len()];
        crop_flip(&src, (2, 3, 4), 4, PadMode::Zero, 4, 4, false, &mut out);
        assert_eq!(out, src);
        crop_flip(&src, (2, 3, 4), 0, PadMode::Zero, 0, 0, true, &mut out);
        let mut flipped = src.clone();
        flip_in_place(&mut flipped, (2, 3, 4));
        assert_eq!(out, flipped);
        assert_eq!(&flipped[..4], &[3, 2, 1, 0]);
    }
}
