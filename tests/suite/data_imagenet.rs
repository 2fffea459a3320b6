//! ImageNet folder source: listing, labels, decoding, evaluation crop, RandomResizedCrop and
//! flip semantics, reproducibility, corrupt files and input errors. Fixtures are small JPEGs
//! written into a temporary ILSVRC layout.

use crate::common;
use common::OutputWithin;

use image::codecs::jpeg::JpegEncoder;
use image::ColorType;
use lrlab::data::imagenet::{self, eval_geometry, random_resized_crop_box, ImageNetSplit};
use lrlab::data::resize::Rect;
use lrlab::data::{Augment, Source};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;

const RED: [u8; 3] = [220, 20, 30];
const BLUE: [u8; 3] = [20, 40, 210];

/// Encode a `w` x `h` image (RGB, or grey from the first channel) as a JPEG at `path`.
fn write_jpeg(path: &Path, w: u32, h: u32, grey: bool, pixel: impl Fn(u32, u32) -> [u8; 3]) {
    let mut buf = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let p = pixel(x, y);
            if grey {
                buf.push(p[0]);
            } else {
                buf.extend_from_slice(&p);
            }
        }
    }
    let mut bytes = Vec::new();
    let colour = if grey { ColorType::L8 } else { ColorType::Rgb8 };
    JpegEncoder::new_with_quality(&mut bytes, 100)
        .encode(&buf, w, h, colour)
        .unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Smooth gradients plus a checker pattern: different crops give different pixels.
fn textured(x: u32, y: u32) -> [u8; 3] {
    let checker = if (x / 7 + y / 5) % 2 == 0 { 40 } else { 0 };
    [
        (x * 2 + checker) as u8,
        (y * 2 + checker) as u8,
        ((x + y) + checker) as u8,
    ]
}

fn split(w: u32) -> impl Fn(u32, u32) -> [u8; 3] {
    move |x, _| if x < w / 2 { RED } else { BLUE }
}

/// Three classes created out of order, a few images each of different sizes, one grey.
fn make_layout(root: &Path) {
    for split_name in ["train", "val"] {
        for (c, wnid) in ["n03000003", "n01000001", "n02000002"].iter().enumerate() {
            let dir = root.join(split_name).join(wnid);
            let n = if split_name == "train" { 2 + c } else { 1 };
            for i in 0..n {
                let (w, h) = (60 + 13 * i as u32, 90 - 11 * c as u32);
                write_jpeg(&dir.join(format!("{wnid}_{i}.JPEG")), w, h, false, textured);
            }
        }
    }
    write_jpeg(
        &root.join("train/n02000002/grey.jpg"),
        70,
        50,
        true,
        |_, _| [77; 3],
    );
    // Not images: ignored.
    std::fs::write(root.join("train/n01000001/notes.txt"), "x").unwrap();
    std::fs::write(root.join("train/LOC_synset_mapping.txt"), "x").unwrap();
}

fn fetch(split: &ImageNetSplit, index: usize, augment: Augment, seed: u64) -> (bool, Vec<u8>) {
    let (c, h, w) = split.shape();
    let mut out = vec![0u8; c * h * w];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let ok = split.fetch(index, augment, &mut rng, &mut out).unwrap();
    (ok, out)
}

fn index_of(split: &ImageNetSplit, name: &str) -> usize {
    (0..split.len())
        .find(|&i| split.path(i).file_name().unwrap() == name)
        .unwrap()
}

#[test]
fn classes_are_sorted_wnids_and_labels_follow_folders() {
    let tmp = tempfile::tempdir().unwrap();
    make_layout(tmp.path());
    let (train, val, n) = imagenet::open(tmp.path(), 32).unwrap();
    assert_eq!(n, 3);
    assert_eq!(train.classes(), ["n01000001", "n02000002", "n03000003"]);
    assert_eq!(val.classes(), train.classes());
    // n03: 2 images, n01: 3, n02: 4 + grey.jpg; val one per class.
    assert_eq!(train.len(), 2 + 3 + 5);
    assert_eq!(val.len(), 3);
    for split in [&train, &val] {
        assert_eq!(split.shape(), (3, 32, 32));
        for i in 0..split.len() {
            let path = split.path(i);
            let wnid = path
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap();
            assert_eq!(split.classes()[split.label(i) as usize], wnid);
            assert!(path.starts_with(tmp.path()));
        }
        // Labels are grouped and ascending.
        let labels: Vec<i64> = (0..split.len()).map(|i| split.label(i)).collect();
        assert!(labels.windows(2).all(|w| w[0] <= w[1]));
    }
    for i in 0..train.len() {
        for augment in [Augment::None, Augment::RandomResizedCrop, Augment::Flip] {
            let (ok, out) = fetch(&train, i, augment, i as u64);
            assert!(ok);
            assert_eq!(out.len(), 3 * 32 * 32);
        }
    }
}

#[test]
fn evaluation_crop_keeps_a_constant_colour_and_grey_becomes_rgb() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let colour = [200, 30, 90];
    write_jpeg(&root.join("train/n1/a.JPEG"), 150, 100, false, |_, _| {
        colour
    });
    write_jpeg(&root.join("train/n1/b.JPEG"), 90, 120, true, |_, _| [77; 3]);
    write_jpeg(&root.join("val/n1/c.JPEG"), 40, 40, false, |_, _| colour);
    let (train, val, _) = imagenet::open(root, 48).unwrap();
    let plane = 48 * 48;
    let (ok, out) = fetch(&train, index_of(&train, "a.JPEG"), Augment::None, 0);
    assert!(ok);
    for (ch, &want) in colour.iter().enumerate() {
        let got = &out[ch * plane..(ch + 1) * plane];
        assert!(got.iter().all(|&v| v.abs_diff(want) <= 2), "channel {ch}");
    }
    let (ok, out) = fetch(&train, index_of(&train, "b.JPEG"), Augment::None, 0);
    assert!(ok);
    assert!(out.iter().all(|&v| v.abs_diff(77) <= 2));
    // Upscaling a small image (40 -> 54 -> crop 48) keeps the colour too.
    let (ok, out) = fetch(&val, 0, Augment::RandomResizedCrop, 3);
    assert!(ok);
    for (ch, &want) in colour.iter().enumerate() {
        assert!(out[ch * plane..(ch + 1) * plane]
            .iter()
            .all(|&v| v.abs_diff(want) <= 2));
    }
}

/// Colour of output column `x` (row `y`) of a CHW image of side `size`.
fn pixel(out: &[u8], size: usize, x: usize, y: usize) -> [u8; 3] {
    let p = size * size;
    [0, 1, 2].map(|ch| out[ch * p + y * size + x])
}

fn near(a: [u8; 3], b: [u8; 3]) -> bool {
    a.iter().zip(b).all(|(&x, y)| x.abs_diff(y) <= 12)
}

#[test]
fn left_right_split_image_keeps_its_sides_and_flips() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (w, h) = (160u32, 120u32);
    write_jpeg(&root.join("train/n1/s.JPEG"), w, h, false, split(w));
    write_jpeg(&root.join("val/n1/s.JPEG"), w, h, false, split(w));
    let size = 32;
    let (train, val, _) = imagenet::open(root, size).unwrap();

    // Evaluation: 160x120 -> 48x36 (short side 36), center crop 32: columns 8..40 of 48;
    // the boundary at 24 lands at output column 16.
    let (_, out) = fetch(&val, 0, Augment::None, 0);
    for y in [0, 15, 31] {
        for x in 0..13 {
            assert!(near(pixel(&out, size, x, y), RED), "x {x} y {y}");
        }
        for x in 19..32 {
            assert!(near(pixel(&out, size, x, y), BLUE), "x {x} y {y}");
        }
    }
    // Flip: either the same image or its mirror, and both happen.
    let mut seen = [false; 2];
    for seed in 0..16 {
        let (_, f) = fetch(&val, 0, Augment::Flip, seed);
        let mirrored = near(pixel(&f, size, 0, 0), BLUE);
        seen[mirrored as usize] = true;
        for y in 0..size {
            for x in 0..size {
                let src_x = if mirrored { size - 1 - x } else { x };
                assert_eq!(pixel(&f, size, x, y), pixel(&out, size, src_x, y));
            }
        }
    }
    assert_eq!(seen, [true, true]);

    // RandomResizedCrop: the crop box and the flip come from the rng in that order; every
    // output column clearly left or right of the boundary has that side's colour.
    let mut flips = [0; 2];
    for seed in 0..24 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let b = random_resized_crop_box(w as usize, h as usize, &mut rng);
        let flip = rng.gen::<f64>() < 0.5;
        flips[flip as usize] += 1;
        let (ok, out) = fetch(&train, 0, Augment::RandomResizedCrop, seed);
        assert!(ok);
        let scale = b.w as f64 / size as f64;
        let margin = 2.0 * scale.max(1.0) + 3.0;
        for x in 0..size {
            let src_col = if flip { size - 1 - x } else { x };
            let sx = b.x as f64 + (src_col as f64 + 0.5) * scale;
            let want = if sx < f64::from(w / 2) - margin {
                RED
            } else if sx > f64::from(w / 2) + margin {
                BLUE
            } else {
                continue;
            };
            for y in [0, size / 2, size - 1] {
                assert!(near(pixel(&out, size, x, y), want), "seed {seed} x {x}");
            }
        }
    }
    assert!(flips[0] > 0 && flips[1] > 0);
}

#[test]
fn random_resized_crop_box_follows_torchvision() {
    let (w, h) = (500usize, 375usize);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut areas = Vec::new();
    for _ in 0..2000 {
        let b = random_resized_crop_box(w, h, &mut rng);
        assert!(b.w > 0 && b.h > 0 && b.x + b.w <= w && b.y + b.h <= h);
        let area = (b.w * b.h) as f64 / (w * h) as f64;
        let ratio = b.w as f64 / b.h as f64;
        // Rounding w and h to integers moves area and ratio slightly off their ranges.
        assert!((0.075..=1.0).contains(&area), "area {area}");
        assert!((0.73..=1.37).contains(&ratio), "ratio {ratio}");
        areas.push(area);
    }
    // Area fractions are spread over the whole range (uniform on 0.08..1 when they fit).
    assert!(areas.iter().any(|&a| a < 0.15) && areas.iter().any(|&a| a > 0.9));
    // No draw fits a 1000x10 image: the fallback crops the center to ratio 4/3
    // (w = round(10 * 4/3) = 13), or 3/4 for the transposed image.
    let b = random_resized_crop_box(1000, 10, &mut rng);
    assert_eq!(
        b,
        Rect {
            x: 493,
            y: 0,
            w: 13,
            h: 10
        }
    );
    let b = random_resized_crop_box(10, 1000, &mut rng);
    assert_eq!(
        b,
        Rect {
            x: 0,
            y: 493,
            w: 10,
            h: 13
        }
    );
}

#[test]
fn evaluation_geometry_follows_torchvision_resize_and_center_crop() {
    // Resize(256) of 500x375: 341x256; CenterCrop(224): left round(58.5) = 58 (half to even).
    let crop = |x, y| Rect {
        x,
        y,
        w: 224,
        h: 224,
    };
    assert_eq!(eval_geometry(500, 375, 224), (341, 256, crop(58, 16)));
    assert_eq!(eval_geometry(375, 500, 224), (256, 341, crop(16, 58)));
    // 343 wide: round(59.5) = 60.
    assert_eq!(eval_geometry(343, 256, 224), (343, 256, crop(60, 16)));
    // Square, and an upscaled small image.
    assert_eq!(eval_geometry(100, 100, 224), (256, 256, crop(16, 16)));
    // size 128: shorter side 146 (128 / 0.875 = 146.3, truncated).
    assert_eq!(
        eval_geometry(300, 200, 128),
        (
            219,
            146,
            Rect {
                x: 46,
                y: 9,
                w: 128,
                h: 128
            }
        )
    );
}

#[test]
fn augmentation_is_reproducible_from_the_seed() {
    let tmp = tempfile::tempdir().unwrap();
    make_layout(tmp.path());
    let (train, _, _) = imagenet::open(tmp.path(), 32).unwrap();
    for i in 0..train.len() {
        let a = fetch(&train, i, Augment::RandomResizedCrop, 5);
        let b = fetch(&train, i, Augment::RandomResizedCrop, 5);
        assert_eq!(a, b);
    }
    let i = index_of(&train, "n01000001_2.JPEG");
    let a = fetch(&train, i, Augment::RandomResizedCrop, 5);
    let c = fetch(&train, i, Augment::RandomResizedCrop, 6);
    assert_ne!(a.1, c.1);
    // Evaluation ignores the rng.
    assert_eq!(
        fetch(&train, i, Augment::None, 1),
        fetch(&train, i, Augment::None, 2)
    );
}

#[test]
fn corrupt_and_truncated_jpegs_are_skipped_not_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write_jpeg(&root.join("train/n1/good.JPEG"), 64, 48, false, textured);
    write_jpeg(&root.join("val/n1/good.JPEG"), 64, 48, false, textured);
    let good = std::fs::read(root.join("train/n1/good.JPEG")).unwrap();
    std::fs::write(root.join("train/n1/cut.JPEG"), &good[..good.len() * 2 / 3]).unwrap();
    std::fs::write(root.join("train/n1/junk.JPEG"), b"this is not a JPEG file").unwrap();
    std::fs::write(root.join("train/n1/empty.JPEG"), b"").unwrap();
    let (train, _, _) = imagenet::open(root, 32).unwrap();
    assert_eq!(train.len(), 4);
    for name in ["cut.JPEG", "junk.JPEG", "empty.JPEG"] {
        for _ in 0..2 {
            let (ok, _) = fetch(
                &train,
                index_of(&train, name),
                Augment::RandomResizedCrop,
                0,
            );
            assert!(!ok, "{name} should be skipped");
        }
    }
    let (ok, _) = fetch(
        &train,
        index_of(&train, "good.JPEG"),
        Augment::RandomResizedCrop,
        0,
    );
    assert!(ok);
    // A file that vanished after listing is an error (the disk, not the image, is at fault).
    std::fs::remove_file(root.join("train/n1/good.JPEG")).unwrap();
    let mut out = vec![0u8; 3 * 32 * 32];
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let i = index_of(&train, "good.JPEG");
    let err = train
        .fetch(i, Augment::None, &mut rng, &mut out)
        .unwrap_err();
    assert!(format!("{err:#}").contains("good.JPEG"));
}

#[test]
fn a_jpeg_header_cannot_claim_more_pixels_than_its_file_can_code() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("a.JPEG");
    write_jpeg(&path, 16, 16, false, textured);
    let small = std::fs::read(&path).unwrap();
    assert!(lrlab::data::jpeg::decode(&small).is_ok());
    // Patch the frame header (SOF0: FF C0, length, precision, height, width) to 30000x30000:
    // decoding it would allocate 2.7 GB; it must be refused from the header.
    let mut big = small.clone();
    let sof = big.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    big[sof + 5..sof + 9].copy_from_slice(&[0x75, 0x30, 0x75, 0x30]);
    let err = lrlab::data::jpeg::decode(&big).unwrap_err();
    assert!(err.contains("header claims 30000x30000 pixels"), "{err}");
    // A legitimately large but highly compressible image is still decoded.
    write_jpeg(&path, 1600, 1200, false, |_, _| [200, 100, 50]);
    let flat = std::fs::read(&path).unwrap();
    let d = lrlab::data::jpeg::decode(&flat).unwrap();
    assert_eq!((d.width, d.height), (1600, 1200));
}

fn input_error_message(root: &Path) -> String {
    let err = imagenet::open(root, 32).unwrap_err();
    assert!(lrlab::is_input_error(&err), "not an input error: {err:#}");
    format!("{err:#}")
}

#[test]
fn missing_or_inconsistent_folders_are_input_errors_naming_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let missing = root.join("nowhere");
    assert!(input_error_message(&missing).contains(&missing.display().to_string()));

    write_jpeg(&root.join("train/n1/a.JPEG"), 40, 30, false, textured);
    let msg = input_error_message(root);
    assert!(
        msg.contains(&root.join("val").display().to_string()),
        "{msg}"
    );

    // Validation images not sorted into class folders.
    write_jpeg(&root.join("val/v1.JPEG"), 40, 30, false, textured);
    let msg = input_error_message(root);
    assert!(msg.contains("no class folder"), "{msg}");

    // An unknown wnid in val, then a train class missing from val.
    write_jpeg(&root.join("val/n9/v.JPEG"), 40, 30, false, textured);
    let msg = input_error_message(root);
    assert!(msg.contains("n9") && msg.contains("val"), "{msg}");
    std::fs::rename(root.join("val/n9"), root.join("val/n1")).unwrap();
    std::fs::create_dir_all(root.join("train/n2")).unwrap();
    write_jpeg(&root.join("train/n2/b.JPEG"), 40, 30, false, textured);
    let msg = input_error_message(root);
    assert!(msg.contains("n2"), "{msg}");

    // A class folder without images.
    std::fs::create_dir_all(root.join("val/n2")).unwrap();
    let msg = input_error_message(root);
    assert!(
        msg.contains(&root.join("val/n2").display().to_string()),
        "{msg}"
    );
    write_jpeg(&root.join("val/n2/c.JPEG"), 40, 30, false, textured);
    assert!(imagenet::open(root, 32).is_ok());

    // A train folder without class folders.
    let empty = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(empty.path().join("train")).unwrap();
    std::fs::create_dir_all(empty.path().join("val")).unwrap();
    let msg = input_error_message(empty.path());
    assert!(
        msg.contains(&empty.path().join("train").display().to_string()),
        "{msg}"
    );

    // Size 0.
    let err = imagenet::open(root, 0).unwrap_err();
    assert!(lrlab::is_input_error(&err));
}

#[test]
fn benchmark_runs_the_fetch_path() {
    let tmp = tempfile::tempdir().unwrap();
    make_layout(tmp.path());
    let rate = imagenet::bench_decode(tmp.path(), 32, 6, 2).unwrap();
    assert!(rate.is_finite() && rate > 0.0);
}

#[test]
fn training_runs_end_to_end_on_a_tiny_ilsvrc_folder() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ilsvrc");
    make_layout(&root);
    let cfg = dir.path().join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            "[data]\ndataset = \"imagenet\"\npath = {:?}\nimage_size = 32\nworkers = 2\n\
             [model]\narch = \"resnet18\"\n[train]\nepochs = 1\nbatch_size = 4\nthreads = 1\n\
             [schedule]\nkind = \"constant\"\nlr = 0.01\n",
            root.display().to_string()
        ),
    )
    .unwrap();
    let out = dir.path().join("run");
    let r = std::process::Command::new(env!("CARGO_BIN_EXE_lrlab"))
        .args([
            "train",
            cfg.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ])
        .output_within(common::DEADLINE_S)
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let epochs = std::fs::read_to_string(out.join("epochs.csv")).unwrap();
    let row: Vec<&str> = epochs.lines().nth(1).unwrap().split(',').collect();
    // 10 training images in batches of 4: 3 steps; 3 validation images evaluated.
    assert_eq!(row[1], "3", "{epochs}");
    let acc: f64 = row[6].parse().unwrap();
    assert!((0.0..=1.0).contains(&acc));
    let meta = std::fs::read_to_string(out.join("meta.json")).unwrap();
    assert!(meta.contains("\"eval_examples\": 3"), "{meta}");
}
