//! Bilinear resampling of 8-bit images, bit-compatible with PIL's `Image.resize(...,
//! BILINEAR)` (which torchvision uses for PIL images): the same triangle filter widened by the
//! scale factor when downscaling (antialiasing), the same coefficients rounded to 22-bit fixed
//! point, two passes with an 8-bit intermediate image, in Pillow's order (vertical first
//! when the height shrinks by more than twice as many pixels as the width; Pillow releases
//! before that rule always went horizontal first, which differs by 1 in some pixels).
//! Checked bit-exact against Pillow 13.0 on RGB and grey images, crops and center crops.
//!
//! Two things make it cheaper than resizing then cropping: the source region is read in place
//! (no crop copy), and only the requested window of the output is computed (evaluation's
//! center crop of the resized image), each output pixel with exactly the arithmetic it would
//! get in the full resize. On x86-64 with AVX2 (detected at run time) the horizontal pass
//! uses explicit SIMD and the vertical pass 8-lane vectors; results are the same.

use std::ops::Range;

/// Fixed-point precision of the weights (PIL's `PRECISION_BITS` for 8-bit images).
const PRECISION_BITS: u32 = 32 - 8 - 2;
/// Rounding offset added before the final shift.
const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// A rectangle in pixels: left column, top row, width, height.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    /// Left column.
    pub x: usize,
    /// Top row.
    pub y: usize,
    /// Width in pixels.
    pub w: usize,
    /// Height in pixels.
    pub h: usize,
}

/// An 8-bit image in HWC order (interleaved channels).
#[derive(Clone, Copy, Debug)]
pub struct Image<'a> {
    /// `width * height * channels` bytes.
    pub pixels: &'a [u8],
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// 1 (grey, replicated to three output planes) or 3 (RGB).
    pub channels: usize,
}

/// Resampling weights along one axis: for each output index of a range, the first source
/// index, the number of taps and their fixed-point weights.
struct Coeffs {
    /// First output index held.
    lo: usize,
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
}

impl Coeffs {
    /// PIL's `precompute_coeffs` for the bilinear filter (support 1) over a source of
    /// `in_size` pixels and an output of `out_size` pixels, then `normalize_coeffs_8bpc`,
    /// for the output indices `outputs` only: the evaluation resize of a very thin image has
    /// millions of output rows, of which the center crop keeps a few hundred.
    fn bilinear(in_size: usize, out_size: usize, outputs: Range<usize>) -> Coeffs {
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = filterscale; // the triangle filter's support is 1
        let ksize = support.ceil() as usize * 2 + 1;
        let ss = 1.0 / filterscale;
        let mut bounds = Vec::with_capacity(outputs.len());
        let mut weights = vec![0i32; outputs.len() * ksize];
        let mut k = vec![0f64; ksize];
        for (xx, row) in outputs.clone().zip(weights.chunks_exact_mut(ksize)) {
            let center = (xx as f64 + 0.5) * scale;
            // C casts truncate toward zero; negative values are clamped to 0 anyway.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let n = xmax.saturating_sub(xmin);
            let mut ww = 0.0;
            for (x, kx) in k.iter_mut().enumerate().take(n) {
                let t = ((x + xmin) as f64 - center + 0.5) * ss;
                let w = (1.0 - t.abs()).max(0.0);
                *kx = w;
                ww += w;
            }
            for (dst, &w) in row.iter_mut().zip(&k[..n]) {
                let w = if ww != 0.0 { w / ww } else { w };
                let f = w * (1u32 << PRECISION_BITS) as f64;
                *dst = if w < 0.0 {
                    (f - 0.5) as i32
                } else {
                    (f + 0.5) as i32
                };
            }
            bounds.push((xmin, n));
        }
        Coeffs {
            lo: outputs.start,
            ksize,
            bounds,
            weights,
        }
    }

    /// First source index and weights of output index `i` (within the range computed).
    #[inline]
    fn taps(&self, i: usize) -> (usize, &[i32]) {
        let j = i - self.lo;
        let (first, n) = self.bounds[j];
        (first, &self.weights[j * self.ksize..j * self.ksize + n])
    }
}

/// PIL's `clip8`: drop the fixed-point fraction and saturate to 0..=255.
#[inline(always)]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Horizontal taps of the window's columns, each with the same count `k`: a column's first
/// source pixel moves left where needed so that it reads exactly `k` pixels of the row, and
/// the extra taps get weight 0 (which changes no sum). Fixed-length taps let the kernels
/// unroll with no data-dependent branches. Columns are stored in output order, already
/// mirrored when the window is flipped.
struct FixedTaps {
    k: usize,
    /// First source pixel of each output column.
    starts: Vec<usize>,
    /// `k` weights per output column.
    weights: Vec<i32>,
}

impl FixedTaps {
    fn new(c: &Coeffs, in_size: usize, x0: usize, n: usize, flip: bool) -> FixedTaps {
        let k = c.ksize.min(in_size);
        let mut starts = Vec::with_capacity(n);
        let mut weights = vec![0i32; n * k];
        for (j, dst) in weights.chunks_exact_mut(k).enumerate() {
            let col = if flip { x0 + n - 1 - j } else { x0 + j };
            let (first, w) = c.taps(col);
            let start = first.min(in_size - k);
            dst[first - start..first - start + w.len()].copy_from_slice(w);
            starts.push(start);
        }
        FixedTaps { k, starts, weights }
    }
}

/// Resample the region `src` of `img` to `out_w` x `out_h` pixels (bilinear, antialiased when
/// downscaling, exactly as PIL resizes the cropped region), keep the `win` part of that
/// output, mirror it left-right when `flip`, and write it to `out` as three planes (CHW, RGB;
/// a grey image is replicated into all three).
///
/// # Panics
/// When a rectangle lies outside its image, a size is zero, or `out` does not hold
/// `3 * win.w * win.h` bytes: all are bugs of the caller.
pub fn resample_to_chw(
    img: Image<'_>,
    src: Rect,
    out_w: usize,
    out_h: usize,
    win: Rect,
    flip: bool,
    out: &mut [u8],
) {
    let c = img.channels;
    assert!(c == 1 || c == 3, "channels must be 1 or 3, not {c}");
    assert_eq!(
        img.pixels.len(),
        img.width * img.height * c,
        "image buffer size"
    );
    assert!(src.w > 0 && src.h > 0 && src.x + src.w <= img.width && src.y + src.h <= img.height);
    assert!(win.w > 0 && win.h > 0 && win.x + win.w <= out_w && win.y + win.h <= out_h);
    assert_eq!(out.len(), 3 * win.w * win.h, "output buffer size");
    let job = Job {
        img,
        src,
        out_w,
        out_h,
        hc: Coeffs::bilinear(src.w, out_w, win.x..win.x + win.w),
        vc: Coeffs::bilinear(src.h, out_h, win.y..win.y + win.h),
        win,
        flip,
    };
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe { run_avx2(&job, out) };
        return;
    }
    job.run::<false>(out);
}

/// The same code compiled for AVX2 (8 lanes of 32-bit multiplies in the vertical pass) with
/// the explicit SIMD kernel for the horizontal pass.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_avx2(job: &Job<'_>, out: &mut [u8]) {
    job.run::<true>(out);
}

/// One resampling with its coefficients.
struct Job<'a> {
    img: Image<'a>,
    src: Rect,
    out_w: usize,
    out_h: usize,
    hc: Coeffs,
    vc: Coeffs,
    win: Rect,
    flip: bool,
}

impl Job<'_> {
    /// Both passes; `SIMD` selects the x86 kernel for the RGB horizontal pass, which only
    /// [`run_avx2`] may do.
    ///
    /// The pass order follows Pillow (13.0 checked): vertical first when the height shrinks
    /// by more than twice as many pixels as the width, horizontal first otherwise. The
    /// order changes the 8-bit rounding of the intermediate image, so it must match for
    /// identical results.
    #[inline(always)]
    fn run<const SIMD: bool>(&self, out: &mut [u8]) {
        let (src, win) = (self.src, self.win);
        let shrink_h = src.h as i64 - self.out_h as i64;
        let shrink_w = src.w as i64 - self.out_w as i64;
        let taps = FixedTaps::new(&self.hc, src.w, win.x, win.w, self.flip);
        if shrink_h > 0 && shrink_h > 2 * shrink_w {
            self.vertical_first::<SIMD>(taps, out);
        } else {
            self.horizontal_first::<SIMD>(&taps, out);
        }
        if self.img.channels == 1 {
            let plane = win.w * win.h;
            let (grey, rest) = out.split_at_mut(plane);
            rest[..plane].copy_from_slice(grey);
            rest[plane..].copy_from_slice(grey);
        }
    }

    /// Horizontal pass over the source rows the window needs into planar rows, then the
    /// vertical pass plane by plane into `out`.
    #[inline(always)]
    fn horizontal_first<const SIMD: bool>(&self, taps: &FixedTaps, out: &mut [u8]) {
        let Job {
            img, src, win, vc, ..
        } = self;
        let c = img.channels;
        let plane = win.w * win.h;
        // Source rows (relative to src.y) that the window's output rows read.
        let y_first = vc.taps(win.y).0;
        let (last_first, last_taps) = vc.taps(win.y + win.h - 1);
        let rows = last_first + last_taps.len() - y_first;

        let stride = rows * win.w;
        let mut tmp = vec![0u8; c * stride];
        let row_bytes = img.width * c;
        // Each row is copied with one spare byte, so that the RGB kernels can read a pixel as
        // four bytes (the fourth is ignored) and work on 4-lane vectors.
        let mut line = vec![0u8; src.w * c + 1];
        for r in 0..rows {
            let start = (src.y + y_first + r) * row_bytes + src.x * c;
            line[..src.w * c].copy_from_slice(&img.pixels[start..start + src.w * c]);
            horizontal_row::<SIMD>(c, &line, taps, &mut tmp[r * win.w..], stride);
        }

        let mut acc = vec![0i32; win.w];
        for ch in 0..c {
            let tplane = &tmp[ch * stride..(ch + 1) * stride];
            let oplane = &mut out[ch * plane..(ch + 1) * plane];
            for (i, orow) in oplane.chunks_exact_mut(win.w).enumerate() {
                let (first, k) = vc.taps(win.y + i);
                let first = first - y_first;
                weighted_rows(
                    k,
                    |t| &tplane[(first + t) * win.w..][..win.w],
                    &mut acc,
                    orow,
                );
            }
        }
    }

    /// Vertical pass over the source columns the window needs (interleaved), then the
    /// horizontal pass row by row straight into the output planes.
    #[inline(always)]
    fn vertical_first<const SIMD: bool>(&self, mut taps: FixedTaps, out: &mut [u8]) {
        let Job {
            img, src, win, vc, ..
        } = self;
        let c = img.channels;
        let plane = win.w * win.h;
        let x_lo = taps.starts.iter().copied().min().unwrap_or(0);
        let x_hi = taps.starts.iter().copied().max().unwrap_or(0) + taps.k;
        taps.starts.iter_mut().for_each(|s| *s -= x_lo);
        let row_len = (x_hi - x_lo) * c;
        let row_bytes = img.width * c;
        let col0 = (src.x + x_lo) * c;

        // One spare byte at the end for the 4-byte reads of the RGB kernels.
        let mut tmp = vec![0u8; win.h * row_len + 1];
        let mut acc = vec![0i32; row_len];
        for (i, trow) in tmp.chunks_exact_mut(row_len).enumerate() {
            let (first, k) = vc.taps(win.y + i);
            let row = |t: usize| &img.pixels[(src.y + first + t) * row_bytes + col0..][..row_len];
            weighted_rows(k, row, &mut acc, trow);
        }
        for i in 0..win.h {
            let line = &tmp[i * row_len..(i + 1) * row_len + 1];
            horizontal_row::<SIMD>(c, line, &taps, &mut out[i * win.w..], plane);
        }
    }
}

/// `dst[x] = clip8(HALF + sum_t k[t] * row(t)[x])`: one output row of a vertical pass, a
/// weighted sum of whole rows, which the compiler vectorises.
#[inline(always)]
fn weighted_rows<'a>(k: &[i32], row: impl Fn(usize) -> &'a [u8], acc: &mut [i32], dst: &mut [u8]) {
    acc.fill(HALF);
    for (t, &w) in k.iter().enumerate() {
        for (a, &s) in acc.iter_mut().zip(row(t)) {
            *a += i32::from(s) * w;
        }
    }
    for (o, &a) in dst.iter_mut().zip(acc.iter()) {
        *o = clip8(a);
    }
}

/// One row of a horizontal pass with the best kernel for `c` channels and the tap count:
/// channel `ch` of output column `j` goes to `dst[ch * stride + j]`. `line` holds one byte
/// more than its pixels.
#[inline(always)]
fn horizontal_row<const SIMD: bool>(
    c: usize,
    line: &[u8],
    taps: &FixedTaps,
    dst: &mut [u8],
    stride: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if SIMD && c == 3 {
        // SAFETY: SIMD is true only in `run_avx2`, which requires AVX2.
        unsafe {
            match taps.k {
                3 => x86::horizontal_rgb::<3>(line, taps, dst, stride),
                5 => x86::horizontal_rgb::<5>(line, taps, dst, stride),
                7 => x86::horizontal_rgb::<7>(line, taps, dst, stride),
                k => x86::horizontal_rgb_any(k, line, taps, dst, stride),
            }
        }
        return;
    }
    match (c, taps.k) {
        (3, 3) => horizontal_rgb::<3>(line, taps, dst, stride),
        (3, 5) => horizontal_rgb::<5>(line, taps, dst, stride),
        (3, 7) => horizontal_rgb::<7>(line, taps, dst, stride),
        (3, 9) => horizontal_rgb::<9>(line, taps, dst, stride),
        (3, _) => horizontal_any::<3>(line, taps, dst, stride),
        _ => horizontal_any::<1>(line, taps, dst, stride),
    }
}

/// One row of the horizontal pass for RGB with `K` taps per column: channel `ch` of output
/// column `j` goes to `dst[ch * stride + j]`. `line` holds one byte more than the pixels, so
/// each tap reads four bytes and the arithmetic runs on 4-lane vectors.
#[inline(always)]
fn horizontal_rgb<const K: usize>(line: &[u8], taps: &FixedTaps, dst: &mut [u8], stride: usize) {
    for (j, (&start, w)) in taps
        .starts
        .iter()
        .zip(taps.weights.chunks_exact(K))
        .enumerate()
    {
        let px = &line[start * 3..start * 3 + K * 3 + 1];
        let mut acc = [HALF; 4];
        for t in 0..K {
            let p = &px[t * 3..t * 3 + 4];
            for ch in 0..4 {
                acc[ch] += i32::from(p[ch]) * w[t];
            }
        }
        let v = acc.map(clip8);
        dst[j] = v[0];
        dst[stride + j] = v[1];
        dst[2 * stride + j] = v[2];
    }
}

/// [`horizontal_rgb`] for any tap count (large downscaling factors, tiny sources, grey images).
#[inline(always)]
fn horizontal_any<const C: usize>(line: &[u8], taps: &FixedTaps, dst: &mut [u8], stride: usize) {
    let k = taps.k;
    for (j, (&start, w)) in taps
        .starts
        .iter()
        .zip(taps.weights.chunks_exact(k))
        .enumerate()
    {
        let px = &line[start * C..(start + k) * C];
        let mut acc = [HALF; C];
        for (p, &wt) in px.chunks_exact(C).zip(w) {
            for ch in 0..C {
                acc[ch] += i32::from(p[ch]) * wt;
            }
        }
        for ch in 0..C {
            dst[ch * stride + j] = clip8(acc[ch]);
        }
    }
}

/// Explicit SIMD for the RGB horizontal pass (LLVM does not vectorise it by itself): each
/// output pixel is a 4-lane vector (R, G, B, ignored), one 32-bit multiply-add per tap.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{FixedTaps, HALF, PRECISION_BITS};
    use std::arch::x86_64::*;

    /// Same contract and results as [`super::horizontal_rgb`] (`K` taps per column).
    ///
    /// # Safety
    /// The CPU must support AVX2 (SSE4.1 would do; the caller checks AVX2).
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn horizontal_rgb<const K: usize>(
        line: &[u8],
        taps: &FixedTaps,
        dst: &mut [u8],
        stride: usize,
    ) {
        horizontal_rgb_any(K, line, taps, dst, stride);
    }

    /// [`horizontal_rgb`] for a tap count `k` known at run time only (`taps.k == k`).
    ///
    /// # Safety
    /// The CPU must support AVX2 (SSE4.1 would do; the caller checks AVX2).
    #[inline(always)]
    pub(super) unsafe fn horizontal_rgb_any(
        k: usize,
        line: &[u8],
        taps: &FixedTaps,
        dst: &mut [u8],
        stride: usize,
    ) {
        assert!(taps.k == k && dst.len() >= 2 * stride + taps.starts.len());
        for (j, (&start, w)) in taps
            .starts
            .iter()
            .zip(taps.weights.chunks_exact(k))
            .enumerate()
        {
            // Four bytes per tap from the first pixel's byte on: in bounds by the line's
            // spare byte.
            let px = &line[start * 3..start * 3 + k * 3 + 1];
            let mut acc = _mm_set1_epi32(HALF);
            for (t, &wt) in w.iter().enumerate() {
                let p = px.as_ptr().add(t * 3).cast::<i32>().read_unaligned();
                let p = _mm_cvtepu8_epi32(_mm_cvtsi32_si128(p));
                acc = _mm_add_epi32(acc, _mm_mullo_epi32(p, _mm_set1_epi32(wt)));
            }
            // clip8: shift out the fraction, saturate to 0..=255 (i32 -> i16 -> u8).
            let v = _mm_srai_epi32::<{ PRECISION_BITS as i32 }>(acc);
            let v = _mm_packus_epi16(_mm_packs_epi32(v, v), _mm_setzero_si128());
            let rgb = _mm_cvtsi128_si32(v).to_le_bytes();
            *dst.get_unchecked_mut(j) = rgb[0];
            *dst.get_unchecked_mut(stride + j) = rgb[1];
            *dst.get_unchecked_mut(2 * stride + j) = rgb[2];
        }
    }
}

#[cfg(test)]
mod tests;
