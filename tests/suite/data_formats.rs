//! Dataset readers: official file formats round-trip into tensors; bad files are refused
//! with an input error naming the file.

use crate::common;
use crate::fixtures;

use fixtures::{batches, to_u8, Split};
use lrlab::data::{load, DataConfig, DatasetName, Labels, Normalize};
use lrlab::is_input_error;
use std::path::Path;
use tch::Device;

fn config(dataset: DatasetName, path: &Path) -> DataConfig {
    DataConfig {
        dataset,
        path: Some(path.to_path_buf()),
        normalize: Normalize::None,
        augment: Some(lrlab::data::Augment::None),
        workers: 2,
        ..DataConfig::default()
    }
}

/// The test loader yields `expected` in order; the training loader yields it in the
/// epoch's order. Pixels and labels must match exactly.
fn check_round_trip(cfg: &DataConfig, train: &Split, test: &Split, shape: [i64; 3]) {
    let data = load(cfg, 7, 5, 11, Device::Cpu).unwrap();
    assert_eq!(data.eval_name, "test");
    assert_eq!(data.in_channels, shape[0]);
    assert_eq!(data.image_size, shape[1]);
    assert_eq!(data.train.len(), train.labels.len());
    assert_eq!(data.eval.len(), test.labels.len());

    let mut pos = 0;
    for (x, s, y) in batches(&data.eval, 0, 0) {
        assert_eq!(&s[1..], &shape);
        let px = to_u8(&x);
        for (k, &label) in y.iter().enumerate() {
            assert_eq!(label, test.labels[pos] as i64);
            assert_eq!(&px[k * test.chw..(k + 1) * test.chw], test.image(pos));
            pos += 1;
        }
    }
    assert_eq!(pos, test.labels.len());

    let order = lrlab::data::rng::epoch_order(train.labels.len(), 11, 3);
    let mut pos = 0;
    for (x, _, y) in batches(&data.train, 3, 0) {
        let px = to_u8(&x);
        for (k, &label) in y.iter().enumerate() {
            let i = order[pos];
            assert_eq!(label, train.labels[i] as i64);
            assert_eq!(&px[k * train.chw..(k + 1) * train.chw], train.image(i));
            pos += 1;
        }
    }
    assert_eq!(pos, train.labels.len());
}

#[test]
fn idx_gzipped_and_raw_round_trip() {
    for gz in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let (train, test) = fixtures::write_mnist(dir.path(), gz, 23, 12);
        for d in [DatasetName::Mnist, DatasetName::FashionMnist] {
            let cfg = config(d, dir.path());
            check_round_trip(&cfg, &train, &test, [1, 28, 28]);
            assert_eq!(load(&cfg, 4, 4, 0, Device::Cpu).unwrap().num_classes, 10);
        }
    }
}

#[test]
fn cifar10_with_and_without_folder_level() {
    for level in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let (train, test) = fixtures::write_cifar10(dir.path(), level, 4, 9);
        let cfg = config(DatasetName::Cifar10, dir.path());
        check_round_trip(&cfg, &train, &test, [3, 32, 32]);
        assert_eq!(load(&cfg, 4, 4, 0, Device::Cpu).unwrap().num_classes, 10);
    }
}

#[test]
fn cifar100_fine_and_coarse_labels() {
    for level in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let [train_c, train_f, test_c, test_f] = fixtures::write_cifar100(dir.path(), level, 17, 6);
        let mut cfg = config(DatasetName::Cifar100, dir.path());
        check_round_trip(&cfg, &train_f, &test_f, [3, 32, 32]);
        assert_eq!(load(&cfg, 4, 4, 0, Device::Cpu).unwrap().num_classes, 100);
        cfg.labels = Labels::Coarse;
        check_round_trip(&cfg, &train_c, &test_c, [3, 32, 32]);
        assert_eq!(load(&cfg, 4, 4, 0, Device::Cpu).unwrap().num_classes, 20);
    }
}

#[test]
fn real_fashion_mnist_when_installed() {
    let cfg = DataConfig::default();
    let path = cfg.path().unwrap();
    if !path.join("train-images-idx3-ubyte.gz").exists()
        && !path.join("train-images-idx3-ubyte").exists()
    {
        println!(
            "note: {} is absent; skipping the real Fashion-MNIST test",
            path.display()
        );
        return;
    }
    let data = load(&cfg, 1000, 1000, 0, Device::Cpu).unwrap();
    assert_eq!(data.train.len(), 60000);
    assert_eq!(data.eval.len(), 10000);
    assert_eq!(data.num_classes, 10);
    assert_eq!((data.in_channels, data.image_size), (1, 28));
    // Fashion-MNIST's training set: mean 0.2860, std 0.3530 (the published constants).
    match data.train.stats() {
        lrlab::data::stats::Stats::MeanStd { mean, std } => {
            assert!((mean[0] - 0.2860).abs() < 1e-4, "{mean:?}");
            assert!((std[0] - 0.3530).abs() < 1e-4, "{std:?}");
        }
        other => panic!("{other:?}"),
    }
    // 1000 test images per class.
    let mut counts = [0usize; 10];
    for b in data.eval.epoch(0, 0) {
        for y in Vec::<i64>::try_from(&b.unwrap().labels).unwrap() {
            counts[y as usize] += 1;
        }
    }
    assert_eq!(counts, [1000; 10]);
}

/// Loading must fail with an input error whose message contains each of `needles`.
fn expect_input_error(cfg: &DataConfig, needles: &[&str]) {
    let err = match load(cfg, 4, 4, 0, Device::Cpu) {
        Ok(_) => panic!("loading succeeded; expected an error with {needles:?}"),
        Err(e) => e,
    };
    let msg = format!("{err:#}");
    assert!(is_input_error(&err), "not an input error: {msg}");
    for n in needles {
        assert!(msg.contains(n), "{msg:?} lacks {n:?}");
    }
}

#[test]
fn bad_idx_files_are_input_errors_naming_the_file() {
    let images = |n: u32, r: u32, c: u32, px: &[u8]| fixtures::idx_images(n, r, c, px);
    let cases: Vec<(&str, bool, Vec<u8>, Vec<&str>)> = vec![
        (
            "train-images-idx3-ubyte.gz",
            true,
            {
                let mut v = images(23, 28, 28, &[0; 23 * 784]);
                v[..4].copy_from_slice(&[0, 0, 0, 0]);
                v
            },
            vec!["train-images-idx3-ubyte.gz: wrong magic number 0x00000000, expected 0x00000803 (IDX images)"],
        ),
        (
            "train-images-idx3-ubyte",
            false,
            images(23, 28, 28, &[0; 23 * 784 - 100]),
            vec!["train-images-idx3-ubyte", "23x28x28", "truncated"],
        ),
        (
            "train-images-idx3-ubyte.gz",
            true,
            images(23, 28, 28, &[0; 22 * 784]),
            vec!["train-images-idx3-ubyte.gz", "truncated"],
        ),
        (
            "train-images-idx3-ubyte",
            false,
            images(23, 28, 28, &[0; 23 * 784 + 5]),
            vec!["train-images-idx3-ubyte", "wrong size"],
        ),
        (
            "train-images-idx3-ubyte",
            false,
            images(u32::MAX, 65535, 65535, &[0; 100]),
            vec!["train-images-idx3-ubyte", "4294967295x65535x65535"],
        ),
        (
            "train-images-idx3-ubyte.gz",
            true,
            images(u32::MAX, 28, 28, &[0; 100]),
            vec!["train-images-idx3-ubyte.gz", "4294967295x28x28", "gzip"],
        ),
        (
            "train-labels-idx1-ubyte",
            false,
            fixtures::idx_labels(&[3, 1, 10, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            vec!["train-labels-idx1-ubyte", "label 10", "out of range 0..10"],
        ),
        (
            "train-labels-idx1-ubyte",
            false,
            fixtures::idx_labels(&[1; 22]),
            vec!["train-labels-idx1-ubyte", "22 labels", "23 images"],
        ),
        (
            "t10k-labels-idx1-ubyte",
            false,
            images(12, 28, 28, &[0; 12 * 784]),
            vec!["t10k-labels-idx1-ubyte", "wrong magic number 0x00000803, expected 0x00000801 (IDX labels)"],
        ),
        (
            "t10k-images-idx3-ubyte",
            false,
            vec![0, 0, 8],
            vec!["t10k-images-idx3-ubyte", "truncated"],
        ),
    ];
    for (name, gz, contents, needles) in cases {
        let dir = tempfile::tempdir().unwrap();
        fixtures::write_mnist(dir.path(), false, 23, 12);
        let stem = name.trim_end_matches(".gz");
        std::fs::remove_file(dir.path().join(stem)).unwrap();
        fixtures::write(&dir.path().join(name), &contents, gz);
        expect_input_error(&config(DatasetName::Mnist, dir.path()), &needles);
    }

    // A corrupt gzip stream.
    let dir = tempfile::tempdir().unwrap();
    fixtures::write_mnist(dir.path(), true, 23, 12);
    let p = dir.path().join("t10k-images-idx3-ubyte.gz");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&p, bytes).unwrap();
    expect_input_error(
        &config(DatasetName::Mnist, dir.path()),
        &["t10k-images-idx3-ubyte.gz"],
    );

    // Missing file and missing folder.
    let dir = tempfile::tempdir().unwrap();
    fixtures::write_mnist(dir.path(), true, 23, 12);
    std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte.gz")).unwrap();
    expect_input_error(
        &config(DatasetName::Mnist, dir.path()),
        &["t10k-labels-idx1-ubyte", "missing"],
    );
    expect_input_error(
        &config(DatasetName::FashionMnist, &dir.path().join("nope")),
        &["data.path", "nope", "no such folder"],
    );
    let mut cfg = config(DatasetName::Mnist, dir.path());
    cfg.path = None;
    expect_input_error(&cfg, &["data.path", "required", "mnist"]);
}

#[test]
fn bad_cifar_files_are_input_errors_naming_the_file() {
    // Missing, truncated, wrong record size, label out of range (CIFAR-10).
    type Edit = fn(&Path);
    let cases: Vec<(Edit, Vec<&str>)> = vec![
        (
            |d| std::fs::remove_file(d.join("data_batch_3.bin")).unwrap(),
            vec!["data_batch_3.bin", "missing"],
        ),
        (
            |d| {
                let p = d.join("data_batch_2.bin");
                let b = std::fs::read(&p).unwrap();
                std::fs::write(&p, &b[..b.len() - 1000]).unwrap();
            },
            vec!["data_batch_2.bin", "wrong size", "3073-byte"],
        ),
        (
            |d| {
                // CIFAR-100 style records (3074 bytes) in a CIFAR-10 file.
                std::fs::write(d.join("test_batch.bin"), vec![0u8; 3074 * 5]).unwrap();
            },
            vec!["test_batch.bin", "wrong size 15370 bytes", "3073-byte"],
        ),
        (
            |d| {
                let p = d.join("data_batch_5.bin");
                let mut b = std::fs::read(&p).unwrap();
                b[2 * 3073] = 10;
                std::fs::write(&p, b).unwrap();
            },
            vec![
                "data_batch_5.bin",
                "label 10 of record 2",
                "out of range 0..10",
            ],
        ),
    ];
    for (edit, needles) in cases {
        let dir = tempfile::tempdir().unwrap();
        fixtures::write_cifar10(dir.path(), false, 3, 4);
        edit(dir.path());
        expect_input_error(&config(DatasetName::Cifar10, dir.path()), &needles);
    }

    // CIFAR-100: fine label >= 100, coarse label >= 20 (checked whichever is used).
    for (at, value, needle) in [
        (1usize, 100u8, "fine label 100"),
        (0, 20, "coarse label 20"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        fixtures::write_cifar100(dir.path(), true, 5, 3);
        let p = dir.path().join("cifar-100-binary/train.bin");
        let mut b = std::fs::read(&p).unwrap();
        b[3074 + at] = value;
        std::fs::write(&p, b).unwrap();
        let cfg = config(DatasetName::Cifar100, dir.path());
        expect_input_error(&cfg, &["train.bin", needle, "record 1"]);
    }
}

#[test]
fn downsampled_imagenet_npz_round_trips_stored_and_compressed() {
    use fixtures::Npz;
    let per_file = [3, 1, 2, 4, 1, 2, 3, 1, 2, 5];
    // (dataset, side, the release's folders, how file i is written)
    type How = fn(usize) -> Npz;
    let cases: [(DatasetName, usize, bool, How); 3] = [
        (DatasetName::Imagenet32, 32, false, |i| {
            if i % 3 == 0 {
                Npz::Deflated
            } else {
                Npz::Stored
            }
        }),
        (DatasetName::Imagenet16, 16, true, |_| Npz::Stored),
        (DatasetName::Imagenet64, 64, false, |_| Npz::Deflated),
    ];
    for (dataset, side, level, how) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (train, val) = fixtures::write_downsampled(dir.path(), side, level, per_file, 6, how);
        assert!(train.labels.contains(&0) && train.labels.contains(&999));
        let cfg = config(dataset, dir.path());
        check_round_trip(&cfg, &train, &val, [3, side as i64, side as i64]);
        assert_eq!(load(&cfg, 4, 4, 0, Device::Cpu).unwrap().num_classes, 1000);
    }
}

#[test]
fn bad_downsampled_files_are_input_errors_naming_the_file() {
    use fixtures::{write_npz, Member, Npz};
    let chw = 3 * 32 * 32;
    let px = vec![7u8; 3 * chw];
    type Edit = Box<dyn Fn(&Path)>;
    let rewrite = |name: &'static str, members: Vec<(&'static str, Vec<u8>, Vec<i64>)>| -> Edit {
        Box::new(move |d: &Path| {
            let m: Vec<(&str, Member)> = members
                .iter()
                .map(|(k, bytes, labels)| {
                    if *k == "labels" {
                        (*k, Member::I64(labels))
                    } else {
                        (
                            *k,
                            Member::U8(bytes, vec![(bytes.len() / chw) as u64, chw as u64]),
                        )
                    }
                })
                .collect();
            write_npz(&d.join(name), &m, Npz::Stored);
        })
    };
    let cases: Vec<(Edit, Vec<&str>)> = vec![
        (
            Box::new(|d: &Path| std::fs::remove_file(d.join("train_data_batch_4.npz")).unwrap()),
            vec!["train_data_batch_4.npz", "missing"],
        ),
        (
            rewrite("val_data.npz", vec![("data", px.clone(), vec![])]),
            vec![
                "val_data.npz",
                "no `labels` array",
                "the archive holds: data",
            ],
        ),
        (
            rewrite(
                "train_data_batch_2.npz",
                vec![
                    ("data", px.clone(), vec![]),
                    ("labels", vec![], vec![5, 0, 7]),
                ],
            ),
            vec![
                "train_data_batch_2.npz",
                "label 0 of image 1",
                "out of range 1..=1000",
            ],
        ),
        (
            rewrite(
                "train_data_batch_2.npz",
                vec![
                    ("data", px.clone(), vec![]),
                    ("labels", vec![], vec![5, 6, 1001]),
                ],
            ),
            vec!["train_data_batch_2.npz", "label 1001 of image 2"],
        ),
        (
            rewrite(
                "train_data_batch_7.npz",
                vec![("data", px.clone(), vec![]), ("labels", vec![], vec![5, 6])],
            ),
            vec![
                "train_data_batch_7.npz",
                "data has 3 images but labels has 2",
            ],
        ),
        (
            Box::new(|d: &Path| {
                let p = d.join("train_data_batch_3.npz");
                let b = std::fs::read(&p).unwrap();
                std::fs::write(&p, &b[..b.len() / 2]).unwrap();
            }),
            vec![
                "train_data_batch_3.npz",
                "not a readable npz archive",
                "truncated",
            ],
        ),
    ];
    for (edit, needles) in cases {
        let dir = tempfile::tempdir().unwrap();
        fixtures::write_downsampled(dir.path(), 32, false, [2; 10], 3, |_| Npz::Stored);
        edit(dir.path());
        expect_input_error(&config(DatasetName::Imagenet32, dir.path()), &needles);
    }
    // The 16x16 release in a 32x32 run: rows of 768 values.
    let dir = tempfile::tempdir().unwrap();
    fixtures::write_downsampled(dir.path(), 16, false, [2; 10], 3, |_| Npz::Stored);
    expect_input_error(
        &config(DatasetName::Imagenet32, dir.path()),
        &[
            "train_data_batch_1.npz",
            "shape [2, 768]",
            "is this the 32x32 release?",
        ],
    );
}

#[test]
fn trains_from_the_command_line_on_downsampled_imagenet() {
    use fixtures::Npz;
    for how in [Npz::Stored, Npz::Deflated] {
        let t = tempfile::tempdir().unwrap();
        let data = t.path().join("imagenet16");
        fixtures::write_downsampled(&data, 16, true, [4; 10], 8, |_| how);
        let cfg = common::write(
            t.path(),
            "run.toml",
            &format!(
                "[data]\ndataset = \"imagenet16\"\npath = \"{}\"\nworkers = 1\n[model]\n\
                 arch = \"resnet8\"\n[train]\nepochs = 2\nbatch_size = 8\nthreads = 1\n\
                 [schedule]\nkind = \"constant\"\nlr = 0.01\n",
                data.display()
            ),
        );
        let out = t.path().join("run");
        let mut child = common::cmd()
            .args([
                "train",
                common::s(&cfg),
                "--out",
                common::s(&out),
                "--quiet",
            ])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let status = common::wait_exit(&mut child, 180, "lrlab train on imagenet16");
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert!(status.success(), "{err}");
        let (h, rows) = common::read_csv(&out.join("epochs.csv"));
        assert_eq!(rows.len(), 2, "{err}");
        let acc: f64 = common::field(&h, &rows[1], "test_acc").parse().unwrap();
        assert!((0.0..=1.0).contains(&acc));
        // Compressed files are inflated into memory, and the run says so; stored ones are mapped.
        let inflated = err.contains("is compressed, so it is inflated into memory");
        assert_eq!(inflated, how == Npz::Deflated, "{err}");
    }
}
