//! JPEG decoding to interleaved 8-bit pixels with `zune-jpeg` (pure Rust, SIMD colour
//! conversion and IDCT selected at run time).
//!
//! The decoder runs in its lenient mode, so files with small deviations from the standard
//! (extra bytes between markers, odd APP segments) decode as they do with PIL. Truncated files
//! are rejected before decoding, as PIL rejects them ("image file is truncated"); zune-jpeg alone
//! would fill the missing rows silently.

use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

/// A decoded image: `height` rows of `width` pixels of `channels` interleaved bytes
/// (3 = RGB, 1 = grey).
#[derive(Debug, Clone)]
pub struct Decoded {
    /// Pixels in HWC order, `width * height * channels` bytes.
    pub pixels: Vec<u8>,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
}

/// Width and height from the JPEG headers, without decoding the image.
pub fn dimensions(bytes: &[u8]) -> Result<(usize, usize), String> {
    let mut dec = JpegDecoder::new_with_options(bytes, options());
    dec.decode_headers().map_err(|e| format!("{e:?}"))?;
    dec.dimensions()
        .ok_or_else(|| "no frame header".to_string())
}

/// Decode a JPEG file's bytes to RGB (YCbCr, RGB, CMYK and YCCK inputs) or grey (grey inputs,
/// left to the caller to replicate, which is cheaper after resizing).
/// The error is a short description meant for a log line.
pub fn decode(bytes: &[u8]) -> Result<Decoded, String> {
    if bytes.starts_with(b"\x89PNG") {
        return Err("PNG data; only JPEG is decoded".to_string());
    }
    if bytes.len() < 4 || bytes[0] != 0xFF || bytes[1] != 0xD8 {
        return Err("not a JPEG file (no start-of-image marker)".to_string());
    }
    if is_truncated(bytes) {
        return Err("truncated JPEG (no end-of-image marker after the last scan)".to_string());
    }
    let mut dec = JpegDecoder::new_with_options(bytes, options());
    dec.decode_headers().map_err(|e| format!("{e:?}"))?;
    let (width, height) = dec.dimensions().ok_or("no frame header")?;
    let channels = match dec.get_output_colorspace() {
        Some(ColorSpace::RGB) => 3,
        Some(ColorSpace::Luma) => 1,
        other => return Err(format!("unsupported colour space {other:?}")),
    };
    if width == 0 || height == 0 {
        return Err("image has zero width or height".to_string());
    }
    // Every 8x8 block of a scan codes its DC coefficient in at least one bit, so a header
    // claiming more blocks than the file has bits is corrupt. Checked before decoding, this
    // bounds the pixel buffer by the file's size (at most 1536 bytes per byte of file).
    let blocks = width.div_ceil(8) as u64 * height.div_ceil(8) as u64;
    if blocks > 8 * bytes.len() as u64 {
        return Err(format!(
            "header claims {width}x{height} pixels, more than a {}-byte JPEG can code \
             (at least one bit per 8x8 block)",
            bytes.len()
        ));
    }
    let components = dec.info().map_or(0, |i| usize::from(i.components));
    check_sampling(bytes, width, height, components)?;
    let pixels = dec.decode().map_err(|e| format!("{e:?}"))?;
    if pixels.len() != width * height * channels {
        return Err(format!(
            "decoder returned {} bytes for a {width}x{height}x{channels} image",
            pixels.len()
        ));
    }
    Ok(Decoded {
        pixels,
        width,
        height,
        channels,
    })
}

/// Reject chroma subsampling where a later component is sampled more finely than the first
/// (in either direction): zune-jpeg 0.4 panics on some of these layouts (upsampler length
/// assertions), and no ordinary encoder writes them (4:4:4, 4:2:2, 4:2:0, 4:4:0 and 4:1:1 all
/// give the first component the largest factors). zune-jpeg does not expose the factors, so
/// they are read from the frame header (SOF0-SOF2) that agrees with what zune-jpeg parsed
/// (length, precision, size, component count): the one met walking the marker segments, or
/// else every one found in the bytes; such a match by chance in other data is practically
/// impossible, and would only reject the file.
fn check_sampling(
    bytes: &[u8],
    width: usize,
    height: usize,
    components: usize,
) -> Result<(), String> {
    // The marker segments before the first scan, walked by their lengths: the frame header
    // is among them, and the entropy-coded data (most of the file) is never read. Files the
    // walk cannot follow (bytes between segments, which the lenient decoder accepts) are
    // scanned byte by byte instead.
    let mut p = 2;
    while let (Some(&0xFF), Some(&m)) = (bytes.get(p), bytes.get(p + 1)) {
        if m == 0xFF {
            p += 1; // fill byte
            continue;
        }
        if m == 0xDA {
            break;
        }
        let Some(seg) = bytes.get(p + 2..p + 4) else {
            break;
        };
        if let Some(verdict) = sampling_at(bytes, p + 1, width, height, components) {
            return verdict;
        }
        p += 2 + usize::from(u16::from_be_bytes([seg[0], seg[1]]));
    }
    let mut found = false;
    for p in 0..bytes.len() {
        match sampling_at(bytes, p, width, height, components) {
            Some(Ok(())) => found = true,
            Some(err) => return err,
            None => {}
        }
    }
    if found {
        Ok(())
    } else {
        Err("frame header not found".to_string())
    }
}

/// The verdict on the frame header whose marker byte (SOF0-SOF2) is at `bytes[p]`, or None
/// when there is none there that agrees with what zune-jpeg parsed.
fn sampling_at(
    bytes: &[u8],
    p: usize,
    width: usize,
    height: usize,
    components: usize,
) -> Option<Result<(), String>> {
    let len = 8 + 3 * components;
    let h = bytes.get(p + 1..p + 1 + len)?;
    let be16 = |i: usize| usize::from(u16::from_be_bytes([h[i], h[i + 1]]));
    if !(0xC0..=0xC2).contains(&bytes[p])
        || be16(0) != len
        || h[2] != 8
        || be16(3) != height
        || be16(5) != width
        || usize::from(h[7]) != components
    {
        return None;
    }
    let factors: Vec<(u8, u8)> = h[8..]
        .chunks_exact(3)
        .map(|c| (c[1] >> 4, c[1] & 15))
        .collect();
    let &(h0, v0) = factors.first()?;
    if let Some(k) = factors.iter().position(|&(hk, vk)| hk > h0 || vk > v0) {
        let (hk, vk) = factors[k];
        return Some(Err(format!(
            "unsupported chroma subsampling: component {} is sampled {hk}x{vk}, \
             more finely than the first ({h0}x{v0})",
            k + 1
        )));
    }
    Some(Ok(()))
}

fn options() -> DecoderOptions {
    DecoderOptions::new_fast()
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_max_width(1 << 15)
        .set_max_height(1 << 15)
}

/// True when the data ends inside a scan: no end-of-image marker (FF D9), or a start-of-scan
/// marker (FF DA) after the last one. Entropy-coded data stuffs every FF byte with a 00 (or
/// uses FF D0-D7 restart markers), so neither pair occurs inside a scan; an end-of-image marker
/// of an embedded EXIF thumbnail comes before the first scan. Only the bytes after the last
/// end-of-image marker are searched, so the check costs little for complete files. Trailing
/// bytes after that marker are allowed, as decoders ignore them.
pub fn is_truncated(bytes: &[u8]) -> bool {
    let is_marker = |w: &[u8], m: u8| w[0] == 0xFF && w[1] == m;
    match bytes.windows(2).rposition(|w| is_marker(w, 0xD9)) {
        None => true,
        Some(eoi) => bytes[eoi..].windows(2).any(|w| is_marker(w, 0xDA)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame header (SOF0) of a 7x5 image with three components sampled as given.
    fn sof(factors: [u8; 3]) -> Vec<u8> {
        let mut b = vec![0xFF, 0xD8, 0xFF, 0xC0, 0, 17, 8, 0, 5, 0, 7, 3];
        for (id, f) in (1..).zip(factors) {
            b.extend_from_slice(&[id, f, u8::from(id > 1)]);
        }
        b
    }

    #[test]
    fn chroma_sampled_more_finely_than_luma_is_rejected() {
        for ok in [
            [0x11; 3],
            [0x22, 0x11, 0x11],
            [0x21, 0x11, 0x11],
            [0x41, 0x11, 0x11],
        ] {
            assert_eq!(check_sampling(&sof(ok), 7, 5, 3), Ok(()), "{ok:x?}");
        }
        let err = check_sampling(&sof([0x22, 0x11, 0x14]), 7, 5, 3).unwrap_err();
        assert!(err.contains("component 3 is sampled 1x4"), "{err}");
        let err = check_sampling(&sof([0x11, 0x21, 0x11]), 7, 5, 3).unwrap_err();
        assert!(err.contains("component 2 is sampled 2x1"), "{err}");
        // The segments are walked: a bad header inside an APP1 segment (an EXIF thumbnail's,
        // say) before the real one is not read.
        let decoy = sof([0x11, 0x21, 0x11]);
        let mut walked = vec![0xFF, 0xD8, 0xFF, 0xE1, 0, (2 + decoy.len()) as u8];
        walked.extend_from_slice(&decoy);
        walked.extend_from_slice(&sof([0x22, 0x11, 0x11])[2..]);
        assert_eq!(check_sampling(&walked, 7, 5, 3), Ok(()));
        // Only a header agreeing with the parsed size and component count is read.
        assert!(check_sampling(&sof([0x11, 0x21, 0x11]), 7, 6, 3)
            .is_err_and(|e| e == "frame header not found"));
    }

    #[test]
    fn truncation_is_judged_from_the_last_scan() {
        // SOI, SOS, data, EOI: complete.
        assert!(!is_truncated(&[0xFF, 0xD8, 0xFF, 0xDA, 1, 2, 0xFF, 0xD9]));
        // Cut inside the scan.
        assert!(is_truncated(&[0xFF, 0xD8, 0xFF, 0xDA, 1, 2, 0xFF, 0x00]));
        // A thumbnail's EOI before the scan does not count.
        assert!(is_truncated(&[0xFF, 0xD8, 0xFF, 0xD9, 0xFF, 0xDA, 1, 2]));
        // Trailing garbage after EOI is fine.
        assert!(!is_truncated(&[
            0xFF, 0xD8, 0xFF, 0xDA, 1, 0xFF, 0xD9, 7, 7
        ]));
    }
}
