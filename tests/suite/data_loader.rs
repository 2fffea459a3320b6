//! The loader: stratified subsets and splits, seeded and resumable augmentation, padded
//! crops against a reference, worker-count independence, normalisation, configuration.

use crate::fixtures;

use fixtures::{batches, to_u8};
use lrlab::data::augment::draw_crop_flip;
use lrlab::data::rng::{epoch_order, example_rng};
use lrlab::data::stats::Stats;
use lrlab::data::{load, open, Augment, DataConfig, DatasetName, Normalize, PadMode};
use lrlab::is_input_error;
use tch::{Device, Kind, Tensor};

fn synthetic(size: usize, classes: usize) -> DataConfig {
    DataConfig {
        dataset: DatasetName::Synthetic,
        size,
        test_size: 30,
        classes,
        shape: [3, 12, 12],
        normalize: Normalize::None,
        workers: 2,
        prefetch: 3,
        ..DataConfig::default()
    }
}

fn class_counts(labels: impl Iterator<Item = i64>, classes: usize) -> Vec<usize> {
    let mut c = vec![0; classes];
    for l in labels {
        c[l as usize] += 1;
    }
    c
}

#[test]
fn stratified_subset_and_validation_split() {
    let dir = tempfile::tempdir().unwrap();
    // 5 batches of 20: labels cycle through 10 classes, 10 images each.
    fixtures::write_cifar10(dir.path(), false, 20, 10);
    let cfg = DataConfig {
        dataset: DatasetName::Cifar10,
        path: Some(dir.path().to_path_buf()),
        train_subset: 30,
        val_split: 20,
        workers: 1,
        ..DataConfig::default()
    };
    let splits = open(&cfg, 0).unwrap();
    let label = |i: usize| splits.train.label(i);
    let a = load(&cfg, 8, 8, 7, Device::Cpu).unwrap();
    assert_eq!(a.eval_name, "val");
    assert_eq!((a.train.len(), a.eval.len()), (30, 20));
    assert_eq!(
        class_counts(a.train.indices().iter().map(|&i| label(i)), 10),
        vec![3; 10]
    );
    assert_eq!(
        class_counts(a.eval.indices().iter().map(|&i| label(i)), 10),
        vec![2; 10]
    );
    assert!(a
        .train
        .indices()
        .iter()
        .all(|i| !a.eval.indices().contains(i)));
    // The validation loader reads the training files, in index order, with true labels.
    let got: Vec<i64> = batches(&a.eval, 0, 0)
        .into_iter()
        .flat_map(|b| b.2)
        .collect();
    let want: Vec<i64> = a.eval.indices().iter().map(|&i| label(i)).collect();
    assert_eq!(got, want);

    // Same seed, same selection; another seed, another one.
    let b = load(&cfg, 8, 8, 7, Device::Cpu).unwrap();
    assert_eq!(a.train.indices(), b.train.indices());
    assert_eq!(a.eval.indices(), b.eval.indices());
    let c = load(&cfg, 8, 8, 8, Device::Cpu).unwrap();
    assert_ne!(a.train.indices(), c.train.indices());
    assert_ne!(a.eval.indices(), c.eval.indices());

    // Without a validation split, the subset comes from all 100 and evaluation is the test set.
    let cfg2 = DataConfig {
        val_split: 0,
        train_subset: 50,
        ..cfg.clone()
    };
    let d = load(&cfg2, 8, 8, 7, Device::Cpu).unwrap();
    assert_eq!((d.eval_name, d.eval.len()), ("test", 10));
    assert_eq!(
        class_counts(d.train.indices().iter().map(|&i| label(i)), 10),
        vec![5; 10]
    );

    // Asking for more than there is.
    for (subset, val, needle) in [
        (90, 20, "data.train_subset = 90"),
        (0, 100, "data.val_split = 100"),
    ] {
        let bad = DataConfig {
            train_subset: subset,
            val_split: val,
            ..cfg.clone()
        };
        let err = load(&bad, 8, 8, 7, Device::Cpu).err().unwrap();
        assert!(
            is_input_error(&err) && format!("{err}").contains(needle),
            "{err}"
        );
    }
}

#[test]
fn augmentation_is_seeded_and_resume_equal() {
    for mode in [PadMode::Zero, PadMode::Reflect] {
        let cfg = DataConfig {
            augment: Some(Augment::CropFlip),
            pad_mode: mode,
            ..synthetic(50, 5)
        };
        let a = load(&cfg, 8, 8, 3, Device::Cpu).unwrap();
        let b = load(&cfg, 8, 8, 3, Device::Cpu).unwrap();
        let full = batches(&a.train, 2, 0);
        assert_eq!(full.len(), 7);
        assert_eq!(full, batches(&b.train, 2, 0));
        for start in [1, 4, 6, 7] {
            assert_eq!(
                batches(&a.train, 2, start),
                full[start..].to_vec(),
                "start {start}"
            );
        }
        assert_ne!(full, batches(&a.train, 3, 0));
        let other = load(&cfg, 8, 8, 4, Device::Cpu).unwrap();
        assert_ne!(full, batches(&other.train, 2, 0));
        // Evaluation is neither shuffled nor augmented, and the same every epoch.
        assert_eq!(batches(&a.eval, 0, 0), batches(&a.eval, 5, 0));
    }
}

#[test]
fn worker_counts_and_prefetch_do_not_change_batches() {
    let mut cfg = DataConfig {
        augment: Some(Augment::CropFlip),
        pad_mode: PadMode::Reflect,
        ..synthetic(61, 4)
    };
    cfg.workers = 1;
    cfg.prefetch = 1;
    let reference = batches(&load(&cfg, 6, 6, 9, Device::Cpu).unwrap().train, 1, 0);
    assert_eq!(reference.len(), 11);
    for (workers, prefetch) in [(2, 1), (3, 8), (5, 2), (16, 40)] {
        cfg.workers = workers;
        cfg.prefetch = prefetch;
        let data = load(&cfg, 6, 6, 9, Device::Cpu).unwrap();
        assert_eq!(batches(&data.train, 1, 0), reference, "{workers} workers");
        assert_eq!(batches(&data.train, 1, 5), reference[5..].to_vec());
    }
}

/// Example `index` of `source` as stored (no augmentation), `chw` bytes.
fn stored_image(source: &dyn lrlab::data::Source, index: usize, chw: usize) -> Vec<u8> {
    let mut img = vec![0u8; chw];
    let mut unused = example_rng(0, 0, 0);
    source
        .fetch(index, Augment::None, &mut unused, &mut img)
        .unwrap();
    img
}

/// torch's own padding ops as the reference for one example: pad, take the window, flip.
fn reference_crop(
    img: &[u8],
    shape: (usize, usize, usize),
    pad: usize,
    mode: PadMode,
    oy: usize,
    ox: usize,
    flip: bool,
) -> Vec<u8> {
    let (c, h, w) = shape;
    let x = Tensor::from_slice(img)
        .view([c as i64, h as i64, w as i64])
        .to_kind(Kind::Float);
    let p = pad as i64;
    let padded = match mode {
        PadMode::Zero | PadMode::Mean => x.constant_pad_nd([p, p, p, p]),
        PadMode::Reflect => x.unsqueeze(0).reflection_pad2d([p, p, p, p]).squeeze_dim(0),
    };
    let mut crop = padded
        .narrow(1, oy as i64, h as i64)
        .narrow(2, ox as i64, w as i64);
    if flip {
        crop = crop.flip([2]);
    }
    Vec::<f32>::try_from(crop.flatten(0, -1))
        .unwrap()
        .iter()
        .map(|&v| v as u8)
        .collect()
}

#[test]
fn crop_flip_and_flip_match_a_per_sample_reference() {
    let seed = 21;
    let shape = (3, 12, 12);
    let chw = 3 * 12 * 12;
    for (augment, mode, pad) in [
        (Augment::CropFlip, PadMode::Zero, 4),
        (Augment::CropFlip, PadMode::Reflect, 4),
        (Augment::CropFlip, PadMode::Reflect, 11),
        (Augment::CropFlip, PadMode::Zero, 13),
        (Augment::Flip, PadMode::Zero, 4),
    ] {
        let cfg = DataConfig {
            augment: Some(augment),
            pad_mode: mode,
            pad,
            ..synthetic(40, 3)
        };
        let data = load(&cfg, 16, 16, seed, Device::Cpu).unwrap();
        let splits = open(&cfg, seed).unwrap();
        let order = epoch_order(40, seed, 1);
        let (mut flips, mut moved) = (0, 0);
        let mut pos = 0;
        for (x, _, y) in batches(&data.train, 1, 0) {
            let px = to_u8(&x);
            for (k, &label) in y.iter().enumerate() {
                let index = order[pos];
                assert_eq!(label, splits.train.label(index));
                let img = stored_image(&*splits.train, index, chw);
                let mut rng = example_rng(seed, 1, pos);
                let (oy, ox, flip) = match augment {
                    Augment::CropFlip => draw_crop_flip(&mut rng, pad),
                    _ => (pad, pad, lrlab::data::augment::draw_flip(&mut rng)),
                };
                let want = reference_crop(&img, shape, pad, mode, oy, ox, flip);
                assert_eq!(
                    &px[k * chw..(k + 1) * chw],
                    &want[..],
                    "{augment:?} {mode:?} pos {pos}"
                );
                flips += flip as usize;
                moved += (oy != pad || ox != pad) as usize;
                pos += 1;
            }
        }
        assert_eq!(pos, 40);
        // The draws vary: some flipped, some not; crops move.
        assert!(flips > 5 && flips < 35, "{flips}");
        if augment == Augment::CropFlip {
            assert!(moved > 20, "{moved}");
        }
    }
}

#[test]
fn crop_offsets_cover_both_ends() {
    // torchvision draws offsets in 0..=2*pad; tch's random_crop never draws 2*pad.
    let mut seen = [false; 9];
    for p in 0..400 {
        let (oy, ox, _) = draw_crop_flip(&mut example_rng(1, 0, p), 4);
        seen[oy] = true;
        seen[ox] = true;
    }
    assert!(seen.iter().all(|&s| s));
}

#[test]
fn normalisation_matches_its_definition() {
    let dir = tempfile::tempdir().unwrap();
    let (train, test) = fixtures::write_cifar10(dir.path(), true, 6, 5);
    let base = DataConfig {
        dataset: DatasetName::Cifar10,
        path: Some(dir.path().to_path_buf()),
        augment: Some(Augment::None),
        workers: 1,
        ..DataConfig::default()
    };
    // Reference statistics in f64 from the fixture's 30 training images.
    let n = 30.0 * 1024.0;
    let mut mean = [0f64; 3];
    let mut var = [0f64; 3];
    for i in 0..30 {
        for (j, &p) in train.image(i).iter().enumerate() {
            mean[j / 1024] += p as f64 / 255.0 / n;
        }
    }
    for i in 0..30 {
        for (j, &p) in train.image(i).iter().enumerate() {
            var[j / 1024] += (p as f64 / 255.0 - mean[j / 1024]).powi(2) / n;
        }
    }
    let std: Vec<f64> = var.iter().map(|v| v.sqrt()).collect();
    let mut pixel_mean = vec![0f64; 3072];
    for i in 0..30 {
        for (m, &p) in pixel_mean.iter_mut().zip(train.image(i)) {
            *m += p as f64 / 255.0 / 30.0;
        }
    }

    // f32 arithmetic: errors relative to the input's scale (255 for Caffe's raw pixels).
    let check = |cfg: &DataConfig, f: &dyn Fn(usize, u8) -> f64| {
        let unit = cfg.input_scale;
        let data = load(cfg, 4, 4, 0, Device::Cpu).unwrap();
        let mut i = 0;
        for (x, _, _) in batches(&data.eval, 0, 0) {
            for img in x.chunks(3072) {
                for (j, (&got, &p)) in img.iter().zip(test.image(i)).enumerate() {
                    let want = f(j, p);
                    assert!(
                        (got as f64 - want).abs() < 2e-6 * want.abs().max(unit),
                        "{got} vs {want}"
                    );
                }
                i += 1;
            }
        }
        assert_eq!(i, 5);
        data
    };
    let data = check(&base, &|j, p| {
        (p as f64 / 255.0 - mean[j / 1024]) / std[j / 1024]
    });
    match data.train.stats() {
        Stats::MeanStd { mean: m, std: s } => {
            for c in 0..3 {
                assert!((m[c] - mean[c]).abs() < 1e-12 && (s[c] - std[c]).abs() < 1e-12);
            }
        }
        other => panic!("{other:?}"),
    }
    let given = DataConfig {
        mean: Some(vec![0.5, 0.25, 0.125]),
        std: Some(vec![0.2, 0.3, 0.4]),
        ..base.clone()
    };
    check(&given, &|j, p| {
        (p as f64 / 255.0 - [0.5, 0.25, 0.125][j / 1024]) / [0.2, 0.3, 0.4][j / 1024]
    });
    let pm = DataConfig {
        normalize: Normalize::PixelMean,
        ..base.clone()
    };
    check(&pm, &|j, p| p as f64 / 255.0 - pixel_mean[j]);
    // Caffe's input: raw 0-255 pixels minus the mean image (in 0-255 units).
    let caffe = DataConfig {
        normalize: Normalize::PixelMean,
        input_scale: 255.0,
        ..base.clone()
    };
    check(&caffe, &|j, p| p as f64 - 255.0 * pixel_mean[j]);
    let none = DataConfig {
        normalize: Normalize::None,
        ..base.clone()
    };
    check(&none, &|_, p| p as f64 / 255.0);
    let wrong = DataConfig {
        mean: Some(vec![0.5]),
        std: Some(vec![0.2]),
        ..base
    };
    let err = load(&wrong, 4, 4, 0, Device::Cpu).err().unwrap();
    assert!(
        is_input_error(&err) && format!("{err}").contains("3 channels"),
        "{err}"
    );
}

#[test]
fn batch_counts_drop_last_and_early_drop() {
    let cfg = synthetic(50, 5);
    let data = load(&cfg, 8, 7, 0, Device::Cpu).unwrap();
    assert_eq!((data.train.len(), data.train.batches_per_epoch()), (50, 7));
    let sizes: Vec<i64> = batches(&data.train, 0, 0).iter().map(|b| b.1[0]).collect();
    assert_eq!(sizes, vec![8, 8, 8, 8, 8, 8, 2]);
    assert_eq!((data.eval.len(), data.eval.batches_per_epoch()), (30, 5));
    let dl = DataConfig {
        drop_last: true,
        ..cfg.clone()
    };
    let data = load(&dl, 8, 7, 0, Device::Cpu).unwrap();
    assert_eq!(data.train.batches_per_epoch(), 6);
    assert_eq!(batches(&data.train, 0, 0).len(), 6);
    assert_eq!(
        data.eval.batches_per_epoch(),
        5,
        "evaluation keeps its last batch"
    );
    assert_eq!(batches(&data.train, 0, 6).len(), 0);
    assert_eq!(batches(&data.train, 0, 99).len(), 0);
    // Dropping an iterator with work queued returns (workers stop).
    let big = DataConfig {
        workers: 3,
        prefetch: 2,
        ..synthetic(5000, 5)
    };
    let data = load(&big, 4, 4, 0, Device::Cpu).unwrap();
    let mut it = data.train.epoch(0, 0);
    let first = it.next().unwrap().unwrap();
    assert_eq!(first.index, 0);
    assert_eq!(it.next().unwrap().unwrap().index, 1);
    drop(it);
    assert_eq!(data.train.skipped(), 0);
}

#[test]
fn config_parsing_defaults_and_errors() {
    let cfg: DataConfig = toml::from_str(
        "dataset = \"cifar100\"\npath = \"x\"\naugment = \"crop_flip\"\npad_mode = \"reflect\"\nlabels = \"coarse\"\nnormalize = \"pixel_mean\"",
    )
    .unwrap();
    assert_eq!(cfg.dataset, DatasetName::Cifar100);
    assert_eq!(cfg.pad_mode, PadMode::Reflect);
    assert_eq!(cfg.normalize, Normalize::PixelMean);
    assert_eq!(cfg.pad, 4);
    let round: DataConfig = toml::from_str(&toml::to_string(&cfg.resolved()).unwrap()).unwrap();
    assert_eq!(round, cfg.resolved());
    assert!(toml::from_str::<DataConfig>("datset = \"mnist\"").is_err());
    assert!(toml::from_str::<DataConfig>("dataset = \"cifar1000\"").is_err());

    let d = DataConfig::default();
    assert_eq!(d.dataset, DatasetName::FashionMnist);
    assert_eq!(d.augment(), Augment::None);
    assert!(!d.drop_last);
    let cifar = DataConfig {
        dataset: DatasetName::Cifar10,
        ..d.clone()
    };
    assert_eq!(
        (cifar.augment(), cifar.pad_mode),
        (Augment::CropFlip, PadMode::Zero)
    );
    assert_eq!(
        "fashion_mnist".parse::<DatasetName>().unwrap(),
        DatasetName::FashionMnist
    );
    assert!(lrlab::data::describe(&cifar).contains("crop_flip (pad 4, zero)"));

    let cases = [
        (
            DataConfig {
                dataset: DatasetName::Imagenet,
                path: Some("x".into()),
                ..d.clone()
            },
            "data.path = x: no such folder",
        ),
        (
            DataConfig {
                dataset: DatasetName::Imagenet32,
                path: Some("x".into()),
                ..d.clone()
            },
            "data.path = x: no such folder",
        ),
        (
            DataConfig {
                augment: Some(Augment::RandomResizedCrop),
                ..cifar.clone()
            },
            "random_resized_crop",
        ),
        (
            DataConfig {
                labels: lrlab::data::Labels::Coarse,
                ..cifar.clone()
            },
            "data.labels = coarse",
        ),
        (
            DataConfig {
                shape: [3, 32, 16],
                ..synthetic(10, 2)
            },
            "data.shape",
        ),
        (
            DataConfig {
                classes: 0,
                ..synthetic(10, 2)
            },
            "data.classes = 0",
        ),
        (
            DataConfig {
                prefetch: 0,
                ..synthetic(10, 2)
            },
            "data.prefetch = 0",
        ),
        (
            DataConfig {
                augment: Some(Augment::CropFlip),
                pad_mode: PadMode::Reflect,
                pad: 12,
                ..synthetic(10, 2)
            },
            "data.pad = 12",
        ),
        (
            DataConfig {
                std: Some(vec![0.0, 1.0, 1.0]),
                normalize: Normalize::MeanStd,
                ..synthetic(10, 2)
            },
            "data.std",
        ),
        (
            DataConfig {
                drop_last: true,
                ..synthetic(10, 2)
            },
            "data.drop_last",
        ),
    ];
    for (cfg, needle) in cases {
        let err = load(&cfg, 16, 16, 0, Device::Cpu).err().expect(needle);
        assert!(is_input_error(&err), "{err:#}");
        assert!(
            format!("{err:#}").contains(needle),
            "{err:#} lacks {needle}"
        );
    }
}

/// `pad_mode = "mean"` (SGDR's border: zeros after subtracting the mean): the same crops as
/// zero padding, and every padded pixel, and only those, reads exactly 0 after normalising,
/// where zero padding gives the normalised black, −mean/std.
#[test]
fn mean_padding_reads_zero_after_normalising_exactly_at_the_border() {
    let seed = 5;
    let pad = 4;
    let (c, h, w) = (3usize, 12usize, 12usize);
    let cfg = |mode| DataConfig {
        augment: Some(Augment::CropFlip),
        pad_mode: mode,
        pad,
        normalize: Normalize::MeanStd,
        ..synthetic(24, 3)
    };
    let load_all = |mode| {
        let data = load(&cfg(mode), 8, 8, seed, Device::Cpu).unwrap();
        let stats = data.train.stats().clone();
        // The fixture checks that the masked batches are still channels-last.
        let xs: Vec<Vec<f32>> = batches(&data.train, 1, 0)
            .into_iter()
            .map(|(x, _, _)| x)
            .collect();
        (xs, stats)
    };
    let (zero, stats) = load_all(PadMode::Zero);
    let (mean, _) = load_all(PadMode::Mean);
    let (m, sd) = match stats {
        Stats::MeanStd { mean, std } => (mean, std),
        other => panic!("{other:?}"),
    };
    let mut pos = 0;
    let mut padded = 0;
    for (bz, bm) in zero.iter().zip(&mean) {
        for k in 0..bz.len() / (c * h * w) {
            let mut rng = example_rng(seed, 1, pos);
            let (oy, ox, flip) = draw_crop_flip(&mut rng, pad);
            for ch in 0..c {
                for y in 0..h {
                    for x in 0..w {
                        let xs = if flip { w - 1 - x } else { x };
                        let border = oy + y < pad
                            || oy + y >= h + pad
                            || ox + xs < pad
                            || ox + xs >= w + pad;
                        let i = k * c * h * w + (ch * h + y) * w + x;
                        if border {
                            padded += 1;
                            assert_eq!(bm[i], 0.0, "pos {pos}");
                            let black = (-m[ch] / sd[ch]) as f32;
                            assert!((bz[i] - black).abs() < 1e-5, "{} vs {black}", bz[i]);
                        } else {
                            assert_eq!(bm[i], bz[i], "pos {pos}");
                        }
                    }
                }
            }
            pos += 1;
        }
    }
    assert_eq!(pos, 24);
    assert!(padded > 0);
}

#[test]
fn sharded_loaders_deliver_consecutive_parts_of_the_single_process_batches() {
    // 61 examples in batches of 8 (the last batch 5): augmentation is a function of the
    // position, so each rank's part is exactly its slice of the single-process batch.
    let cfg = DataConfig {
        augment: Some(Augment::CropFlip),
        pad_mode: PadMode::Reflect,
        ..synthetic(61, 4)
    };
    let data = load(&cfg, 8, 8, 9, Device::Cpu).unwrap();
    let whole = batches(&data.train, 3, 0);
    for world in [2, 3] {
        let parts: Vec<_> = (0..world)
            .map(|r| batches(&data.train.sharded(r, world), 3, 0))
            .collect();
        for (b, (x, shape, y)) in whole.iter().enumerate() {
            let n = shape[0] as usize;
            let per = x.len() / n;
            let mut xs = Vec::new();
            let mut ys = Vec::new();
            for (r, p) in parts.iter().enumerate() {
                let (px, pshape, py) = &p[b];
                assert_eq!(pshape[0] as usize, n * (r + 1) / world - n * r / world);
                xs.extend_from_slice(px);
                ys.extend_from_slice(py);
            }
            assert_eq!(&xs, x, "batch {b} of {world} ranks");
            assert_eq!(&ys, y);
            assert_eq!(xs.len(), n * per);
        }
        // A resumed epoch starts each rank at the same batch.
        assert_eq!(
            batches(&data.train.sharded(1, world), 3, 4),
            parts[1][4..].to_vec()
        );
    }
}

#[test]
fn cutout_sets_a_seeded_square_to_the_mean_pixel() {
    use lrlab::data::augment::CutoutMode;
    use lrlab::data::rng::below;
    let seed = 9;
    let (c, h, w) = (3usize, 12usize, 12usize);
    for (augment, mode, size) in [
        (Augment::CropFlip, CutoutMode::Center, 6),
        (Augment::Flip, CutoutMode::Center, 5),
        (Augment::CropFlip, CutoutMode::Inside, 8),
    ] {
        let cfg = |cutout| DataConfig {
            augment: Some(augment),
            cutout,
            cutout_mode: mode,
            normalize: Normalize::MeanStd,
            ..synthetic(48, 3)
        };
        let load_all = |cutout| {
            let data = load(&cfg(cutout), 16, 16, seed, Device::Cpu).unwrap();
            batches(&data.train, 2, 0)
                .into_iter()
                .map(|(x, _, _)| x)
                .collect::<Vec<Vec<f32>>>()
        };
        let (plain, cut) = (load_all(0), load_all(size));
        let (mut pos, mut clipped) = (0, 0);
        for (bp, bc) in plain.iter().zip(&cut) {
            for k in 0..bp.len() / (c * h * w) {
                // The crop and flip draws first, then the cutout's row and column.
                let mut rng = example_rng(seed, 2, pos);
                match augment {
                    Augment::CropFlip => drop(draw_crop_flip(&mut rng, 4)),
                    _ => drop(lrlab::data::augment::draw_flip(&mut rng)),
                }
                let (ys, xs) = match mode {
                    // DeVries & Taylor: y1 = clip(cy - L // 2, 0, h), y2 = clip(cy + L // 2, 0, h).
                    CutoutMode::Center => {
                        let cy = below(&mut rng, h as u64) as i64;
                        let cx = below(&mut rng, w as u64) as i64;
                        let half = size as i64 / 2;
                        let clip = |v: i64, n: usize| v.clamp(0, n as i64) as usize;
                        (
                            clip(cy - half, h)..clip(cy + half, h),
                            clip(cx - half, w)..clip(cx + half, w),
                        )
                    }
                    // The DAWNBench code: corner = randint(H + 1 - L).
                    CutoutMode::Inside => {
                        let y0 = below(&mut rng, (h + 1 - size) as u64) as usize;
                        let x0 = below(&mut rng, (w + 1 - size) as u64) as usize;
                        (y0..y0 + size, x0..x0 + size)
                    }
                };
                if ys.len() < size - size % 2 || xs.len() < size - size % 2 {
                    clipped += 1;
                }
                for ch in 0..c {
                    for y in 0..h {
                        for x in 0..w {
                            let i = k * c * h * w + (ch * h + y) * w + x;
                            if ys.contains(&y) && xs.contains(&x) {
                                assert_eq!(bc[i], 0.0, "{mode:?} pos {pos} ({y}, {x})");
                            } else {
                                assert_eq!(bc[i], bp[i], "{mode:?} pos {pos} ({y}, {x})");
                            }
                        }
                    }
                }
                pos += 1;
            }
        }
        assert_eq!(pos, 48);
        // The centre mode clips squares at the border now and then; the inside mode never.
        match mode {
            CutoutMode::Center => assert!(clipped > 5, "{clipped}"),
            CutoutMode::Inside => assert_eq!(clipped, 0),
        }
    }
    // Evaluation is never cut out; a square larger than the image is refused.
    let cfg = DataConfig {
        cutout: 13,
        ..synthetic(48, 3)
    };
    let err = load(&cfg, 16, 16, seed, Device::Cpu).err().unwrap();
    assert!(is_input_error(&err));
    assert!(format!("{err:#}").contains("data.cutout = 13: must be at most the image side 12"));
}

/// `data.mirrors`: an epoch holds every training image and its mirror (SGDR_WRNs.py's and
/// `load_databatch`'s doubled training set), shuffled together, the mirror in place of the
/// random flip and the crop drawn as without it; 2N examples, 781 batches of 128 for
/// CIFAR's 50 000 with drop_last. Against a per-example reference.
#[test]
fn mirrored_epochs_visit_each_image_and_its_mirror() {
    let seed = 5;
    let shape = (3, 12, 12);
    let chw = 3 * 12 * 12;
    for augment in [Augment::CropFlip, Augment::Flip, Augment::None] {
        let cfg = DataConfig {
            augment: Some(augment),
            mirrors: true,
            ..synthetic(40, 3)
        };
        let data = load(&cfg, 16, 16, seed, Device::Cpu).unwrap();
        assert_eq!(data.train.len(), 80);
        assert_eq!(data.train.batches_per_epoch(), 5);
        assert_eq!(data.eval.len(), 30, "evaluation sees each example once");
        let splits = open(&cfg, seed).unwrap();
        let order = epoch_order(80, seed, 2);
        let mut seen = vec![[0usize; 2]; 40];
        let mut pos = 0;
        for (x, _, y) in batches(&data.train, 2, 0) {
            let px = to_u8(&x);
            for (k, &label) in y.iter().enumerate() {
                let (index, mirrored) = (order[pos] % 40, order[pos] >= 40);
                seen[index][usize::from(mirrored)] += 1;
                assert_eq!(label, splits.train.label(index));
                let img = stored_image(&*splits.train, index, chw);
                let mut rng = example_rng(seed, 2, pos);
                let (oy, ox) = match augment {
                    Augment::CropFlip => {
                        let (oy, ox, _) = draw_crop_flip(&mut rng, 4);
                        (oy, ox)
                    }
                    _ => (4, 4),
                };
                let want = reference_crop(&img, shape, 4, PadMode::Zero, oy, ox, mirrored);
                assert_eq!(
                    &px[k * chw..(k + 1) * chw],
                    &want[..],
                    "{augment:?} pos {pos}"
                );
                pos += 1;
            }
        }
        assert_eq!(pos, 80);
        assert!(seen.iter().all(|s| *s == [1, 1]), "{seen:?}");
    }
    // CIFAR's epoch as SGDR counted it: 100 000 images, 781 full batches of 128.
    let cfg = DataConfig {
        mirrors: true,
        drop_last: true,
        ..synthetic(50_000, 10)
    };
    let data = load(&cfg, 128, 128, 0, Device::Cpu).unwrap();
    assert_eq!(data.train.batches_per_epoch(), 781);
    // Not with random_resized_crop (its own flip), named.
    let bad = DataConfig {
        augment: Some(Augment::RandomResizedCrop),
        mirrors: true,
        dataset: DatasetName::Imagenet,
        ..synthetic(40, 3)
    };
    let err = bad.validate().unwrap_err().to_string();
    assert!(err.contains("data.mirrors = true"), "{err}");
}
