//! A catalogue of bad inputs, run through the binary: run configs (`lrlab train`), sweep
//! specs (`lrlab sweep`), schedule specs (`lrlab schedule`) and dataset files (IDX, CIFAR
//! binary batches, ImageNet folders). Every case must exit with status 2, say on stderr
//! which file or key is wrong and why, and write nothing: after the command the case's
//! folder holds exactly the files the case wrote.

use crate::common;
use common::OutputWithin;

use crate::fixtures;

use fixtures::{idx_images, idx_labels};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// One bad input: the files it writes (relative to a fresh folder that is also the working
/// directory), the arguments of `lrlab`, and fragments its stderr must contain.
struct Case {
    name: &'static str,
    files: Vec<(String, Vec<u8>)>,
    args: Vec<String>,
    expect: Vec<String>,
}

fn case(name: &'static str, files: Vec<(&str, Vec<u8>)>, args: &[&str], expect: &[&str]) -> Case {
    Case {
        name,
        files: files.into_iter().map(|(p, b)| (p.to_string(), b)).collect(),
        args: args.iter().map(|s| s.to_string()).collect(),
        expect: expect.iter().map(|s| s.to_string()).collect(),
    }
}

/// A quick synthetic run; `extra` is appended (later keys of a table go in their own table).
const RUN: &str = r#"[data]
dataset = "synthetic"
shape = [1, 28, 28]
size = 128
test_size = 64

[model]
arch = "lenet"

[train]
epochs = 1
batch_size = 32
threads = 1
"#;

const SCHEDULE: &str = "\n[schedule]\nkind = \"constant\"\nlr = 0.01\n";

fn run_config(train_extra: &str, rest: &str) -> Vec<u8> {
    format!("{RUN}{train_extra}\n{rest}").into_bytes()
}

/// `lrlab train run.toml --out out`, with the config's bytes.
fn train_case(name: &'static str, config: Vec<u8>, expect: &[&str]) -> Case {
    case(
        name,
        vec![("run.toml", config)],
        &["train", "run.toml", "--out", "out", "--quiet"],
        expect,
    )
}

/// A run on dataset `dataset` in folder `data`, with the dataset's files.
fn data_case(
    name: &'static str,
    dataset: &str,
    files: Vec<(&str, Vec<u8>)>,
    expect: &[&str],
) -> Case {
    let config = format!(
        "[data]\ndataset = \"{dataset}\"\npath = \"data\"\nworkers = 1\nimage_size = 32\n\
         [model]\narch = \"lenet\"\n[train]\nepochs = 1\nbatch_size = 2\nthreads = 1\n{SCHEDULE}"
    );
    let mut files = files;
    files.push(("run.toml", config.into_bytes()));
    case(
        name,
        files,
        &["train", "run.toml", "--out", "out", "--quiet"],
        expect,
    )
}

/// A valid MNIST folder of 3 training and 2 test images, with one file replaced.
fn mnist_with(replace: &str, bytes: Vec<u8>) -> Vec<(&'static str, Vec<u8>)> {
    let mut files = vec![
        (
            "data/train-images-idx3-ubyte",
            idx_images(3, 28, 28, &[7; 3 * 784]),
        ),
        ("data/train-labels-idx1-ubyte", idx_labels(&[0, 1, 2])),
        (
            "data/t10k-images-idx3-ubyte",
            idx_images(2, 28, 28, &[9; 2 * 784]),
        ),
        ("data/t10k-labels-idx1-ubyte", idx_labels(&[3, 4])),
    ];
    for f in &mut files {
        if f.0.ends_with(replace) {
            f.1 = bytes.clone();
        }
    }
    files
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// `n` CIFAR records of `label_bytes` labels each (the labels given) and 3072 pixels.
fn cifar_records(labels: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::new();
    for l in labels {
        v.extend_from_slice(l);
        v.extend(std::iter::repeat_n(5u8, 3072));
    }
    v
}

fn cifar10_with(replace: &str, bytes: Vec<u8>) -> Vec<(&'static str, Vec<u8>)> {
    let names = [
        "data/data_batch_1.bin",
        "data/data_batch_2.bin",
        "data/data_batch_3.bin",
        "data/data_batch_4.bin",
        "data/data_batch_5.bin",
        "data/test_batch.bin",
    ];
    let ok = cifar_records(&[&[1], &[2]]);
    names
        .into_iter()
        .filter(|n| !(replace.starts_with('-') && n.ends_with(&replace[1..])))
        .map(|n| {
            let b = if n.ends_with(replace) {
                bytes.clone()
            } else {
                ok.clone()
            };
            (n, b)
        })
        .collect()
}

fn sweep_case(name: &'static str, spec: &str, expect: &[&str]) -> Case {
    let mut base = String::from_utf8(run_config("", SCHEDULE)).unwrap();
    base.push('\n');
    case(
        name,
        vec![
            ("base.toml", base.into_bytes()),
            ("spec.toml", spec.as_bytes().to_vec()),
        ],
        &["sweep", "spec.toml", "--out", "out", "--quiet"],
        expect,
    )
}

fn schedule_case(name: &'static str, spec: &[u8], expect: &[&str]) -> Case {
    case(
        name,
        vec![("sched.toml", spec.to_vec())],
        &[
            "schedule",
            "sched.toml",
            "--epochs",
            "10",
            "--steps-per-epoch",
            "10",
            "-o",
            "out.csv",
            "--plot",
            "out.svg",
        ],
        expect,
    )
}

fn cases() -> Vec<Case> {
    let big = 1u32 << 31;
    let mut huge = Vec::new();
    for x in [0x803u32, big, big, big] {
        huge.extend_from_slice(&x.to_be_bytes());
    }
    huge.extend_from_slice(&[0; 64]);
    let mut huge_labels = Vec::new();
    for x in [0x801u32, u32::MAX] {
        huge_labels.extend_from_slice(&x.to_be_bytes());
    }
    // A gzip stream whose header promises 2^31 images of 28x28 but that holds 16 bytes.
    let huge_gz = gzip(&idx_images(big, 28, 28, &[0; 16]));
    let imagenet_ok = |extra: Vec<(&'static str, Vec<u8>)>| {
        let mut v = vec![
            ("data/train/n01/a.JPEG", vec![0xff, 0xd8]),
            ("data/train/n02/b.JPEG", vec![0xff, 0xd8]),
            ("data/val/n01/c.JPEG", vec![0xff, 0xd8]),
            ("data/val/n02/d.JPEG", vec![0xff, 0xd8]),
        ];
        v.extend(extra);
        v
    };
    vec![
        // Run configs.
        train_case(
            "config: dist_timeout past a day",
            run_config("dist_timeout = 1e10", SCHEDULE),
            &["train.dist_timeout = 10000000000", "from 1 to 86400"],
        ),
        train_case(
            "config: dist_timeout under a second",
            run_config("dist_timeout = 0.01", SCHEDULE),
            &["train.dist_timeout = 0.01", "from 1 to 86400"],
        ),
        train_case(
            "config: not UTF-8",
            [b"[train]\nepochs = 1 # \xff\xfe\n".as_slice(), SCHEDULE.as_bytes()].concat(),
            &["run.toml", "not valid UTF-8"],
        ),
        train_case(
            "config: not TOML",
            b"[train\nepochs = 1".to_vec(),
            &["run.toml", "invalid TOML"],
        ),
        train_case(
            "config: unknown table",
            run_config("", "[trian]\nepochs = 3\n[schedule]\nkind = \"constant\"\nlr = 0.1"),
            &["run.toml", "unknown table or key `trian`"],
        ),
        train_case(
            "config: misspelt key",
            run_config("epoch = 2", SCHEDULE),
            &["run.toml", "train.epoch = 2: unknown key; did you mean epochs?"],
        ),
        train_case(
            "config: misspelt table",
            run_config("", "[optimizer]\nmomentum = 0.9\n[schedule]\nkind = \"constant\"\nlr = 0.1"),
            &["run.toml", "unknown table or key `optimizer`; did you mean optim?"],
        ),
        train_case(
            "config: schedule kind spelt without its underscore",
            run_config("", "[schedule]\nkind = \"onecycle\"\nmax_lr = 0.1"),
            &["run.toml", "schedule.kind = \"onecycle\"", "did you mean one_cycle?"],
        ),
        train_case(
            "config: misspelt schedule key is named before the missing one",
            run_config("", "[schedule]\nkind = \"cosine\"\nlr_maxx = 0.1"),
            &[
                "run.toml",
                "schedule.lr_maxx = 0.1: unknown key for kind = \"cosine\"; did you mean lr_max?",
            ],
        ),
        train_case(
            "config: wrong type",
            run_config("eval_every = \"often\"", SCHEDULE),
            &["run.toml", "train.eval_every = \"often\"", "invalid type"],
        ),
        train_case(
            "config: negative count",
            run_config("eval_batch_size = -5", SCHEDULE),
            &[
                "run.toml",
                "train.eval_batch_size = -5",
                "expected a whole number >= 0",
            ],
        ),
        // A batch larger than the split would make each epoch one short step.
        train_case(
            "config: batch larger than the training split",
            format!("{RUN}\n{SCHEDULE}")
                .replace("batch_size = 32", "batch_size = 5000")
                .into_bytes(),
            &["train.batch_size = 5000", "larger than the 128 training images"],
        ),
        train_case(
            "config: subset smaller than the classes",
            format!("{RUN}\n{SCHEDULE}")
                .replace("test_size = 64", "test_size = 64\ntrain_subset = 5")
                .into_bytes(),
            &["data.train_subset = 5", "fewer images than the 10 classes"],
        ),
        train_case(
            "config: label smoothing out of range",
            run_config("label_smoothing = 1.5", SCHEDULE),
            &["run.toml", "train.label_smoothing = 1.5", "[0, 1)"],
        ),
        train_case(
            "config: no schedule",
            run_config("", ""),
            &["run.toml", "missing table [schedule]"],
        ),
        train_case(
            "config: schedule not a table",
            [run_config("", "").as_slice(), b"\n"].concat().prepend(b"schedule = 3\n"),
            &["run.toml", "`schedule` must be a table"],
        ),
        train_case(
            "config: unknown schedule kind",
            run_config("", "[schedule]\nkind = \"cosine_warm\"\nlr = 0.1"),
            &["run.toml", "cosine_warm"],
        ),
        train_case(
            "config: negative learning rate",
            run_config("", "[schedule]\nkind = \"constant\"\nlr = -0.1"),
            &["run.toml", "lr", "-0.1"],
        ),
        train_case(
            "config: synthetic shape with a zero",
            run_config("", SCHEDULE).replace_bytes("shape = [1, 28, 28]", "shape = [0, 28, 28]"),
            &["run.toml", "data.shape = [0, 28, 28]"],
        ),
        train_case(
            "config: too many workers",
            run_config("", SCHEDULE).replace_bytes("test_size = 64", "test_size = 64\nworkers = 100000"),
            &["run.toml", "data.workers = 100000", "at most 256"],
        ),
        case(
            "config: bad --set value",
            vec![("run.toml", run_config("", SCHEDULE))],
            &["train", "run.toml", "--set", "train.epochs=-3", "--quiet"],
            &["--set \"train.epochs=-3\"", "train.epochs = -3", "a whole number"],
        ),
        case(
            "config: misspelt key in a --set",
            vec![("run.toml", run_config("", SCHEDULE))],
            &["train", "run.toml", "--set", "optim.momentm=0.8", "--quiet"],
            &["--set \"optim.momentm=0.8\": optim.momentm = 0.8: unknown key; did you mean momentum?"],
        ),
        case(
            "config: bad schedule value from a --set",
            vec![("run.toml", run_config("", SCHEDULE))],
            &["train", "run.toml", "--set", "schedule.lr=-1", "--quiet"],
            &["--set \"schedule.lr=-1\": schedule.lr = -1"],
        ),
        case(
            "config: --set schedule.kind keeps the file's other keys",
            vec![("run.toml", run_config("", SCHEDULE))],
            &["train", "run.toml", "--set", "schedule.kind=cosine", "--set", "schedule.lr_max=0.1", "--quiet"],
            &["run.toml: schedule.lr = 0.01: unknown key for kind = \"cosine\"", "give the whole table instead"],
        ),
        case(
            "config: a whole table from a --set that is not a table",
            vec![("run.toml", run_config("", SCHEDULE))],
            &["train", "run.toml", "--set", "schedule=0.1", "--quiet"],
            &["--set \"schedule=0.1\": `schedule` is a table; give an inline table"],
        ),
        // Dataset files: IDX (MNIST, Fashion-MNIST).
        data_case(
            "idx: missing folder",
            "mnist",
            vec![],
            &["data.path = data", "no such folder"],
        ),
        data_case(
            "idx: wrong magic",
            "mnist",
            mnist_with("train-images-idx3-ubyte", idx_labels(&[1; 9])),
            &["data/train-images-idx3-ubyte", "wrong magic number 0x00000801"],
        ),
        data_case(
            "idx: empty file",
            "fashion-mnist",
            mnist_with("t10k-labels-idx1-ubyte", vec![]),
            &["data/t10k-labels-idx1-ubyte", "truncated: 0 bytes"],
        ),
        data_case(
            "idx: truncated header",
            "mnist",
            mnist_with("train-images-idx3-ubyte", vec![0, 0, 8, 3, 0, 0]),
            &["data/train-images-idx3-ubyte", "truncated: 6 bytes"],
        ),
        data_case(
            "idx: truncated pixels",
            "mnist",
            mnist_with(
                "train-images-idx3-ubyte",
                idx_images(3, 28, 28, &[7; 3 * 784 - 1]),
            ),
            &["data/train-images-idx3-ubyte", "truncated", "3x28x28"],
        ),
        data_case(
            "idx: trailing bytes",
            "mnist",
            mnist_with(
                "train-labels-idx1-ubyte",
                [idx_labels(&[0, 1, 2]), vec![0]].concat(),
            ),
            &["data/train-labels-idx1-ubyte", "wrong size"],
        ),
        data_case(
            "idx: huge header (2^31 x 2^31 x 2^31)",
            "mnist",
            mnist_with("train-images-idx3-ubyte", huge),
            &[
                "data/train-images-idx3-ubyte",
                "2147483648x2147483648x2147483648",
                "truncated or corrupt",
            ],
        ),
        data_case(
            "idx: huge label count",
            "mnist",
            mnist_with("t10k-labels-idx1-ubyte", huge_labels),
            &["data/t10k-labels-idx1-ubyte", "4294967295", "truncated or corrupt"],
        ),
        data_case(
            "idx: gzip with a huge header",
            "mnist",
            mnist_with("train-images-idx3-ubyte", huge_gz),
            &["data/train-images-idx3-ubyte", "2147483648x28x28", "gzip file"],
        ),
        data_case(
            "idx: corrupt gzip",
            "mnist",
            mnist_with(
                "t10k-images-idx3-ubyte",
                {
                    // Cut before the deflate stream ends.
                    let g = gzip(&idx_images(2, 28, 28, &[9; 2 * 784]));
                    g[..g.len() - 12].to_vec()
                },
            ),
            &["data/t10k-images-idx3-ubyte", "gzip"],
        ),
        data_case(
            "idx: label count differs from image count",
            "mnist",
            mnist_with("train-labels-idx1-ubyte", idx_labels(&[0, 1])),
            &["data/train-labels-idx1-ubyte", "2 labels", "3 images"],
        ),
        data_case(
            "idx: label out of range",
            "fashion-mnist",
            mnist_with("t10k-labels-idx1-ubyte", idx_labels(&[3, 10])),
            &["data/t10k-labels-idx1-ubyte", "label 10 of example 1", "0..10"],
        ),
        data_case(
            "idx: images not square",
            "mnist",
            mnist_with(
                "train-images-idx3-ubyte",
                idx_images(3, 28, 27, &[7; 3 * 28 * 27]),
            ),
            &["data/train-images-idx3-ubyte", "28x27"],
        ),
        // CIFAR binary batches.
        data_case(
            "cifar10: truncated batch",
            "cifar10",
            cifar10_with("data_batch_2.bin", cifar_records(&[&[1], &[2]])[..5000].to_vec()),
            &["data/data_batch_2.bin", "wrong size 5000 bytes", "3073-byte"],
        ),
        data_case(
            "cifar10: missing batch",
            "cifar10",
            cifar10_with("-data_batch_4.bin", vec![]),
            &["data/data_batch_4.bin", "missing"],
        ),
        data_case(
            "cifar10: label out of range",
            "cifar10",
            cifar10_with("test_batch.bin", cifar_records(&[&[1], &[10]])),
            &["data/test_batch.bin", "label 10 of record 1", "0..10"],
        ),
        data_case(
            "cifar100: fine label out of range",
            "cifar100",
            vec![
                ("data/train.bin", cifar_records(&[&[0, 99], &[19, 100]])),
                ("data/test.bin", cifar_records(&[&[0, 0]])),
            ],
            &["data/train.bin", "fine label 100 of record 1", "0..100"],
        ),
        data_case(
            "cifar100: coarse label out of range",
            "cifar100",
            vec![
                ("data/train.bin", cifar_records(&[&[0, 1]])),
                ("data/test.bin", cifar_records(&[&[20, 1]])),
            ],
            &["data/test.bin", "coarse label 20 of record 0", "0..20"],
        ),
        data_case(
            "cifar100: CIFAR-10 records",
            "cifar100",
            vec![
                ("data/train.bin", cifar_records(&[&[1], &[2], &[3]])),
                ("data/test.bin", cifar_records(&[&[0, 0]])),
            ],
            &["data/train.bin", "wrong size 9219 bytes", "3074-byte"],
        ),
        // ImageNet folders.
        data_case(
            "imagenet: no val folder",
            "imagenet",
            vec![("data/train/n01/a.JPEG", vec![0xff, 0xd8])],
            &["data/val", "folder not found"],
        ),
        data_case(
            "imagenet: val class not in train",
            "imagenet",
            imagenet_ok(vec![("data/val/n03/d.JPEG", vec![0xff, 0xd8])]),
            &["data/val", "class folder n03 is not in", "data/train"],
        ),
        data_case(
            "imagenet: class folder without images",
            "imagenet",
            imagenet_ok(vec![
                ("data/train/n04/readme.txt", b"no".to_vec()),
                ("data/val/n04/e.JPEG", vec![0xff, 0xd8]),
            ]),
            &["data/train/n04", "no .JPEG file"],
        ),
        // Sweep specs.
        case(
            "sweep: not UTF-8",
            vec![("spec.toml", b"base = \"b\xff.toml\"\n".to_vec())],
            &["sweep", "spec.toml", "--out", "out"],
            &["spec.toml", "not valid UTF-8"],
        ),
        sweep_case(
            "sweep: unknown key",
            "base = \"base.toml\"\nseeds = [1]\ngrids = 3\n",
            &["spec.toml", "unknown key `grids`; did you mean grid?"],
        ),
        sweep_case(
            "sweep: misspelt key of a run config axis",
            "base = \"base.toml\"\n[grid]\n\"optim.momentm\" = [0.8, 0.9]\n",
            &[
                "spec.toml",
                "axis `optim.momentm` names no key",
                "did you mean momentum?",
            ],
        ),
        sweep_case(
            "sweep: misspelt schedule key in a variant",
            "base = \"base.toml\"\n[grid.schedule]\n\
             cos = { kind = \"cosine\", lr_maxx = 0.1 }\nconst = { kind = \"constant\", lr = 0.1 }\n",
            &["spec.toml", "lr_maxx", "did you mean lr_max?"],
        ),
        sweep_case(
            "sweep: nothing varies",
            "base = \"base.toml\"\n",
            &["spec.toml", "empty grid"],
        ),
        sweep_case(
            "sweep: negative seed",
            "base = \"base.toml\"\nseeds = [1, -2]\n",
            &["spec.toml", "seeds = [1, -2]", "integers >= 0"],
        ),
        sweep_case(
            "sweep: missing base file",
            "base = \"nope.toml\"\nseeds = [1]\n",
            &["spec.toml", "base = \"nope.toml\"", "cannot read"],
        ),
        sweep_case(
            "sweep: axis in an unknown table",
            "base = \"base.toml\"\n[grid]\n\"optimizer.lr\" = [1, 2]\n",
            &["spec.toml", "unknown table `optimizer`"],
        ),
        sweep_case(
            "sweep: axis names no key",
            "base = \"base.toml\"\n[grid]\n\"train.epoch\" = [1, 2]\n",
            &["spec.toml", "axis `train.epoch` names no key"],
        ),
        sweep_case(
            "sweep: axis value out of range",
            "base = \"base.toml\"\n[grid]\n\"optim.momentum\" = [0.9, 1.5]\n",
            &["spec.toml", "optim.momentum=1.5", "optim.momentum = 1.5"],
        ),
        sweep_case(
            "sweep: name with a newline",
            "name = \"a\\nb\"\nbase = \"base.toml\"\nseeds = [1]\n",
            &["spec.toml", "name = \"", "control characters"],
        ),
        sweep_case(
            "sweep: a grid too large to plan",
            "base = \"base.toml\"\nseeds = [1,2,3,4,5,6,7,8,9,10]\n[grid]\n\
\"optim.momentum\" = [0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,0.95]\n\
             \"optim.weight_decay\" = [0,1e-5,2e-5,3e-5,4e-5,5e-5,6e-5,7e-5,8e-5,9e-5]\n\
             \"train.label_smoothing\" = [0,0.01,0.02,0.03,0.04,0.05,0.06,0.07,0.08,0.09]\n\
             \"train.grad_clip\" = [0,1,2,3,4,5,6,7,8,9]\n\
             \"train.diverge_loss\" = [10,20,30,40,50,60,70,80,90,100]\n",
            &["spec.toml", "more than 100000"],
        ),
        sweep_case(
            "sweep: run names equal but for case",
            "base = \"base.toml\"\n[grid.schedule]\n\
             A = { kind = \"constant\", lr = 0.1 }\na = { kind = \"constant\", lr = 0.2 }\n",
            &["spec.toml", "schedule=A", "schedule=a", "ignoring case"],
        ),
        sweep_case(
            "sweep: run names equal once sanitised",
            "base = \"base.toml\"\n[grid.schedule]\n\
             \"x/y\" = { kind = \"constant\", lr = 0.1 }\nx_y = { kind = \"constant\", lr = 0.2 }\n",
            &["spec.toml", "schedule=x/y", "schedule=x_y", "same folder name"],
        ),
        // Schedule specs.
        schedule_case(
            "schedule: not UTF-8",
            b"kind = \"constant\"\nlr = 0.1 # \xc3\x28\n",
            &["sched.toml", "UTF-8"],
        ),
        schedule_case(
            "schedule: unknown kind",
            b"kind = \"triangle\"\nlr = 0.1\n",
            &["sched.toml", "triangle"],
        ),
        schedule_case(
            "schedule: unknown key",
            b"kind = \"constant\"\nlr = 0.1\nlr_max = 3\n",
            &["sched.toml", "lr_max"],
        ),
        schedule_case(
            "schedule: misspelt key",
            b"kind = \"sgdr\"\nlr_max = 0.1\nt0 = 10\n",
            &["sched.toml", "schedule.t0 = 10: unknown key", "did you mean t_0?"],
        ),
        schedule_case(
            "schedule: a key that would be ignored",
            b"kind = \"clr\"\nbase_lr = 0.01\nmax_lr = 0.1\nstep_size = 4\ngamma = 0.99\n",
            &["sched.toml", "schedule.gamma = 0.99", "only used with mode = \"exp_range\""],
        ),
        schedule_case(
            "schedule: t_mult below 1",
            b"kind = \"sgdr\"\nlr_max = 0.1\nt_0 = 1\nt_mult = 0.5\n",
            &["sched.toml", "t_mult = 0.5", "must be >= 1"],
        ),
        schedule_case(
            "schedule: wrong type",
            b"kind = \"constant\"\nlr = \"fast\"\n",
            &["sched.toml", "lr"],
        ),
        // The ranks' own command, run by hand with something that is not a task.
        case(
            "rank task not json",
            vec![],
            &["rank", "train run.toml"],
            &["lrlab rank", "expected the task its launcher hands it"],
        ),
    ]
}

/// Small helpers on config bytes.
trait Bytes {
    fn replace_bytes(self, from: &str, to: &str) -> Vec<u8>;
    fn prepend(self, head: &[u8]) -> Vec<u8>;
}

impl Bytes for Vec<u8> {
    fn replace_bytes(self, from: &str, to: &str) -> Vec<u8> {
        let s = String::from_utf8(self).unwrap();
        assert!(s.contains(from), "fixture lacks {from:?}");
        s.replace(from, to).into_bytes()
    }
    fn prepend(self, head: &[u8]) -> Vec<u8> {
        [head, &self].concat()
    }
}

/// Every file under `dir`, relative, with its contents.
fn snapshot(dir: &Path) -> BTreeSet<(String, Vec<u8>)> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                out.insert((format!("{rel}/"), Vec::new()));
                stack.push(p);
            } else {
                out.insert((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

/// Run one case; `Err` says what was wrong.
fn check(c: &Case) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    for (rel, bytes) in &c.files {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
    }
    let before = snapshot(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_lrlab"))
        .args(&c.args)
        .current_dir(dir.path())
        .output_within(common::DEADLINE_S)
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let mut why = Vec::new();
    if out.status.code() != Some(2) {
        why.push(format!("exit status {} instead of 2", out.status));
    }
    for e in &c.expect {
        if !err.contains(e.as_str()) {
            why.push(format!("stderr lacks {e:?}"));
        }
    }
    if !err.starts_with("error: ") {
        why.push("stderr does not start with `error: `".into());
    }
    let after = snapshot(dir.path());
    if after != before {
        let new: Vec<&String> = after.difference(&before).map(|(p, _)| p).collect();
        why.push(format!("files written or changed: {new:?}"));
    }
    if why.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}\n  stderr: {}",
            c.name,
            why.join("; "),
            err.trim()
        ))
    }
}

#[test]
fn every_bad_input_exits_2_naming_the_problem_and_writes_nothing() {
    let cases = cases();
    assert!(cases.len() >= 30);
    let mut names = BTreeSet::new();
    for c in &cases {
        assert!(names.insert(c.name), "duplicate case name {}", c.name);
    }
    // Two at a time: each case starts the binary (and libtorch) once.
    let failures: Vec<String> = std::thread::scope(|s| {
        let half = cases.len().div_ceil(2);
        let handles: Vec<_> = cases
            .chunks(half)
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .filter_map(|c| check(c).err())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
