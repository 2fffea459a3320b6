use super::*;

#[test]
fn identity_scale_has_unit_weights() {
    let c = Coeffs::bilinear(7, 7, 0..7);
    for i in 0..7 {
        let (first, k) = c.taps(i);
        assert_eq!(first, i);
        assert_eq!(k[0], 1 << PRECISION_BITS);
        assert!(k[1..].iter().all(|&w| w == 0));
    }
}

#[test]
fn downscale_by_two_averages_pairs_with_neighbours() {
    // PIL: scale 2, support 2, center 1.0 for output 0: taps at 0,1,2 with weights
    // triangle((x - 1 + 0.5) / 2) = 0.75, 0.75, 0.25 before normalisation.
    let c = Coeffs::bilinear(8, 4, 0..4);
    let (first, k) = c.taps(0);
    assert_eq!(first, 0);
    assert_eq!(k.len(), 3);
    let total = f64::from(1u32 << PRECISION_BITS);
    let expect = [0.75 / 1.75, 0.75 / 1.75, 0.25 / 1.75];
    for (&w, e) in k.iter().zip(expect) {
        assert!((f64::from(w) / total - e).abs() < 1e-6);
    }
}

#[test]
fn coefficients_of_a_range_are_those_of_the_full_axis() {
    // Upscaling (1 to 3 taps) and downscaling (up to 9 taps), ranges at both ends.
    for (in_size, out_size, outputs) in [(5, 40, 0..7), (5, 40, 33..40), (70, 9, 2..6)] {
        let full = Coeffs::bilinear(in_size, out_size, 0..out_size);
        let part = Coeffs::bilinear(in_size, out_size, outputs.clone());
        assert_eq!(part.bounds.len(), outputs.len(), "only the range is held");
        for i in outputs {
            assert_eq!(
                part.taps(i),
                full.taps(i),
                "output {i} of {in_size}->{out_size}"
            );
        }
    }
}

/// One pass of PIL's resampling written plainly, over an HWC image of `w` x `h` pixels
/// with `c` channels, along x (`horizontal`) or y, to `n` pixels along that axis.
fn pass(px: &[u8], (w, h, c): (usize, usize, usize), n: usize, horizontal: bool) -> Vec<u8> {
    let co = Coeffs::bilinear(if horizontal { w } else { h }, n, 0..n);
    let (ow, oh) = if horizontal { (n, h) } else { (w, n) };
    let mut out = vec![0u8; ow * oh * c];
    for y in 0..oh {
        for x in 0..ow {
            let (first, k) = co.taps(if horizontal { x } else { y });
            for ch in 0..c {
                let mut v = HALF;
                for (t, &wt) in k.iter().enumerate() {
                    let (sx, sy) = if horizontal {
                        (first + t, y)
                    } else {
                        (x, first + t)
                    };
                    v += i32::from(px[(sy * w + sx) * c + ch]) * wt;
                }
                out[(y * ow + x) * c + ch] = clip8(v);
            }
        }
    }
    out
}

/// PIL's resize of the region `src` written plainly (HWC passes, full output), as CHW.
fn reference(img: Image<'_>, src: Rect, ow: usize, oh: usize) -> Vec<u8> {
    let c = img.channels;
    let mut crop = Vec::new();
    for y in src.y..src.y + src.h {
        let row = (y * img.width + src.x) * c;
        crop.extend_from_slice(&img.pixels[row..row + src.w * c]);
    }
    let (dh, dw) = (src.h as i64 - oh as i64, src.w as i64 - ow as i64);
    let hwc = if dh > 0 && dh > 2 * dw {
        let v = pass(&crop, (src.w, src.h, c), oh, false);
        pass(&v, (src.w, oh, c), ow, true)
    } else {
        let h = pass(&crop, (src.w, src.h, c), ow, true);
        pass(&h, (ow, src.h, c), oh, false)
    };
    let mut out = vec![0u8; 3 * ow * oh];
    for ch in 0..3 {
        for i in 0..ow * oh {
            out[ch * ow * oh + i] = hwc[i * c + ch.min(c - 1)];
        }
    }
    out
}

#[test]
fn kernels_match_the_plain_two_pass_resampling() {
    let (w, h) = (97, 61);
    for c in [3usize, 1] {
        let pixels: Vec<u8> = (0..w * h * c)
            .map(|i| ((i * 37) ^ (i >> 3)) as u8)
            .collect();
        let img = Image {
            pixels: &pixels,
            width: w,
            height: h,
            channels: c,
        };
        let src = Rect {
            x: 2,
            y: 1,
            w: 90,
            h: 57,
        };
        // Upscaling, 1:1, downscaling by ~1.5, 3, 3.6, 4.5 and 9 (3 to 21 taps), and
        // shapes where the height shrinks most, which Pillow resamples vertically first.
        let sizes = [
            (150, 80),
            (90, 57),
            (60, 38),
            (30, 19),
            (25, 16),
            (20, 13),
            (10, 6),
            (80, 20),
            (120, 25),
            (45, 5),
            (90, 40),
        ];
        for (ow, oh) in sizes {
            let expect = reference(img, src, ow, oh);
            let win = Rect {
                x: 0,
                y: 0,
                w: ow,
                h: oh,
            };
            let job = Job {
                img,
                src,
                out_w: ow,
                out_h: oh,
                hc: Coeffs::bilinear(src.w, ow, 0..ow),
                vc: Coeffs::bilinear(src.h, oh, 0..oh),
                win,
                flip: false,
            };
            let mut portable = vec![0u8; 3 * ow * oh];
            job.run::<false>(&mut portable);
            assert!(portable == expect, "portable code, {c} channels, {ow}x{oh}");
            let mut dispatched = vec![0u8; 3 * ow * oh];
            resample_to_chw(img, src, ow, oh, win, false, &mut dispatched);
            assert!(
                dispatched == expect,
                "dispatched code, {c} channels, {ow}x{oh}"
            );
        }
    }
}

#[test]
fn window_equals_the_same_part_of_the_full_output() {
    let (w, h) = (37, 23);
    let pixels: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
    let img = Image {
        pixels: &pixels,
        width: w,
        height: h,
        channels: 3,
    };
    let src = Rect {
        x: 3,
        y: 2,
        w: 30,
        h: 19,
    };
    // Horizontal-first and vertical-first shapes.
    for (ow, oh) in [(13, 11), (25, 8)] {
        let full_rect = Rect {
            x: 0,
            y: 0,
            w: ow,
            h: oh,
        };
        let mut full = vec![0u8; 3 * ow * oh];
        resample_to_chw(img, src, ow, oh, full_rect, false, &mut full);
        let win = Rect {
            x: 4,
            y: 3,
            w: 6,
            h: 5,
        };
        let mut part = vec![0u8; 3 * win.w * win.h];
        resample_to_chw(img, src, ow, oh, win, false, &mut part);
        for ch in 0..3 {
            for y in 0..win.h {
                for x in 0..win.w {
                    assert_eq!(
                        part[(ch * win.h + y) * win.w + x],
                        full[(ch * oh + y + win.y) * ow + x + win.x]
                    );
                }
            }
        }
        // Mirroring reverses each row.
        let mut flipped = vec![0u8; 3 * ow * oh];
        resample_to_chw(img, src, ow, oh, full_rect, true, &mut flipped);
        for row in 0..3 * oh {
            for x in 0..ow {
                assert_eq!(flipped[row * ow + x], full[row * ow + ow - 1 - x]);
            }
        }
    }
}
