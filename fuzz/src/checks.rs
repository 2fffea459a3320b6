//! What each fuzz target checks, shared with `tests/fuzz_regressions.rs` (stable Rust) so
//! that every committed input is replayed by the ordinary test suite.
//!
//! Each function parses arbitrary bytes with a parser of lrlab, panics if the parser panics
//! or if an error is not an input error (the binary would exit 1 instead of 2), and returns
//! whether the input was accepted. (The JPEG decoder returns a message for the skip log
//! instead of an input error: a bad image is skipped, not fatal.)
#![allow(dead_code)]

use lrlab::data::cifar::{parse_batch, Cifar100Labels, CifarFormat};
use lrlab::data::idx::{parse_idx, parse_split, IMAGES_MAGIC, LABELS_MAGIC};
use lrlab::data::imagenet::{eval_geometry, random_resized_crop_box, render};
use lrlab::data::jpeg;
use lrlab::data::resize::Image;
use lrlab::data::Augment;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::Path;

/// An error must be an input error that names the file.
fn input_err(e: &anyhow::Error, name: &str) {
    let msg = format!("{e:#}");
    assert!(lrlab::is_input_error(e), "not an input error: {msg}");
    assert!(msg.contains(name), "{msg:?} does not name {name}");
}

fn accepted<T>(r: anyhow::Result<T>, name: &str) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            input_err(&e, name);
            None
        }
    }
}

/// IDX: the bytes as an images file, as a labels file, and split in two (at a position
/// given by the first two bytes) as an images and a labels file.
pub fn idx(data: &[u8]) -> bool {
    let images = accepted(
        parse_idx("images", data, IMAGES_MAGIC, "IDX images", 3),
        "images",
    );
    if let Some((dims, pixels)) = &images {
        assert_eq!(dims.len(), 3);
        assert_eq!(pixels.len(), dims.iter().product::<usize>());
    }
    let labels = accepted(
        parse_idx("labels", data, LABELS_MAGIC, "IDX labels", 1),
        "labels",
    );
    if let Some((dims, l)) = &labels {
        assert_eq!(l.len(), dims[0]);
    }
    let mut any = images.is_some() || labels.is_some();
    if data.len() >= 2 {
        let at = (u16::from_le_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
        let (a, b) = data[2..].split_at(at);
        if let Some(s) = accepted(parse_split("a-images", a, "b-labels", b), "-") {
            assert!(s.labels().iter().all(|&l| l < 10));
            any = true;
        }
    }
    any
}

/// CIFAR: the bytes as one CIFAR-10 batch and as a CIFAR-100 file (fine and coarse labels).
pub fn cifar(data: &[u8]) -> bool {
    let mut any = false;
    for (format, classes) in [
        (CifarFormat::Cifar10, 10),
        (CifarFormat::Cifar100(Cifar100Labels::Fine), 100),
        (CifarFormat::Cifar100(Cifar100Labels::Coarse), 20),
    ] {
        if let Some((pixels, labels)) =
            accepted(parse_batch("batch.bin", data, format), "batch.bin")
        {
            assert_eq!(pixels.len(), labels.len() * 3072);
            assert!(!labels.is_empty() && labels.iter().all(|&l| l < classes));
            any = true;
        }
    }
    any
}

/// A run config: parsed and validated, its schedule built for a few run lengths, and the
/// resolved config (what `config.toml` of a run holds) parsed back to the same config.
pub fn run_config(data: &[u8]) -> bool {
    let Some(cfg) = accepted(
        lrlab::config::RunConfig::parse("run.toml", data, &[]),
        "run.toml",
    ) else {
        return false;
    };
    for (steps_per_epoch, total_steps) in [(1, 1), (7, 100), (1000, 123_457)] {
        let len = lrlab::schedule::RunLength {
            steps_per_epoch,
            total_steps,
        };
        if let Ok(s) = lrlab::schedule::Schedule::from_table(&cfg.schedule, len) {
            for k in [0, total_steps / 2, total_steps - 1] {
                let _ = (s.lr(k), s.momentum(k));
            }
        }
    }
    let text = cfg.to_toml().expect("a parsed config serializes");
    let again = lrlab::config::RunConfig::parse("config.toml", text.as_bytes(), &[])
        .unwrap_or_else(|e| panic!("the resolved config does not parse back: {e:#}\n{text}"));
    assert_eq!(
        again.to_toml().unwrap(),
        text,
        "the resolved config changed"
    );
    true
}

/// Most runs a fuzzed sweep is expanded into (expansion validates every run).
const MAX_FUZZ_RUNS: usize = 64;

/// A sweep spec: parsed, and expanded into runs when the grid is small.
pub fn sweep_spec(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    // A folder that does not exist: a relative `base` file is never found.
    let path = Path::new("/nonexistent-lrlab-fuzz/spec.toml");
    let Some(spec) = accepted(lrlab::sweep::spec::Spec::parse(path, text), "spec.toml") else {
        return false;
    };
    let runs = spec
        .axes()
        .map(|a| a.values.len())
        .chain(spec.seeds.as_ref().map(|s| s.len()))
        .try_fold(1usize, |n, k| n.checked_mul(k))
        .filter(|&n| n <= MAX_FUZZ_RUNS);
    if runs.is_none() {
        return true;
    }
    if let Some(plan) = accepted(lrlab::sweep::plan::expand(spec), "spec.toml") {
        for r in &plan.runs {
            assert_eq!(lrlab::util::sanitize(&r.name), r.name);
            assert!(!r.name.contains('/') && !r.name.starts_with('.'));
        }
    }
    true
}

/// Output sizes of the ImageNet crops: the usual 224 and an odd one whose evaluation resize
/// (`size * 8 / 7` = 8) leaves an uneven margin to centre.
const CROP_SIZES: [usize; 2] = [224, 7];

/// A JPEG file: decoded (never a panic; an image whose buffer, channels and size agree with
/// `jpeg::dimensions`, or a non-empty message), then cut and resized by the ImageNet
/// pipeline (training, evaluation and flipped evaluation crops, fixed seed) at each of
/// [`CROP_SIZES`], and the random-resized-crop box drawn for several seeds.
pub fn jpeg(data: &[u8]) -> bool {
    let img = match jpeg::decode(data) {
        Ok(img) => img,
        Err(msg) => {
            assert!(!msg.is_empty(), "empty error message");
            return false;
        }
    };
    assert!(
        img.channels == 1 || img.channels == 3,
        "{} channels",
        img.channels
    );
    assert!(img.width > 0 && img.height > 0);
    assert_eq!(img.pixels.len(), img.width * img.height * img.channels);
    assert_eq!(jpeg::dimensions(data), Ok((img.width, img.height)));
    assert!(!jpeg::is_truncated(data), "a truncated file decoded");

    let (width, height) = (img.width, img.height);
    for seed in 0..16 {
        let b = random_resized_crop_box(width, height, &mut ChaCha8Rng::seed_from_u64(seed));
        assert!(
            b.w > 0 && b.h > 0 && b.x + b.w <= width && b.y + b.h <= height,
            "crop {b:?} outside a {width}x{height} image"
        );
    }
    let view = Image {
        pixels: &img.pixels,
        width,
        height,
        channels: img.channels,
    };
    for size in CROP_SIZES {
        let (w, h, win) = eval_geometry(width, height, size);
        assert_eq!(
            w.min(h),
            size * 8 / 7,
            "{width}x{height} resized to {w}x{h}"
        );
        assert!(
            win.w == size && win.h == size && win.x + size <= w && win.y + size <= h,
            "window {win:?} of {w}x{h}"
        );
        for augment in [Augment::RandomResizedCrop, Augment::None, Augment::Flip] {
            let mut out = vec![0u8; 3 * size * size];
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            render(view, size, augment, &mut rng, &mut out)
                .unwrap_or_else(|e| panic!("{augment:?} at {size}: {e:#}"));
            if img.channels == 1 {
                // A grey image is replicated into all three planes.
                let plane = size * size;
                assert_eq!(out[..plane], out[plane..2 * plane]);
                assert_eq!(out[..plane], out[2 * plane..]);
            }
        }
    }
    true
}
