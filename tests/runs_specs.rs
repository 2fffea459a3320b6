//! Every spec shipped in `runs/` (the papers' full-scale tables, the CPU-scale reproductions,
//! the demo and the examples) is valid: sweeps plan, every run config (base or expanded)
//! validates, its schedule builds for the run's real length, and every paper value in a
//! sweep's `[report.paper]` matches at least one grid point (a typo there would silently drop
//! the paper's number from the report).

use lrlab::config::RunConfig;
use lrlab::data::DatasetName;
use lrlab::report::paper::matches;
use lrlab::schedule::{RunLength, Schedule};
use lrlab::sweep::plan;
use std::path::{Path, PathBuf};

fn runs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("runs")
}

/// Every TOML file under `runs/` except the schedule gallery (rendered by `make gallery`).
fn spec_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![runs_dir()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() && p.file_name().unwrap() != "schedules" {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "toml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Training examples per epoch of the datasets the specs use (the official split sizes).
fn train_examples(cfg: &RunConfig) -> u64 {
    let full = match cfg.data.dataset {
        DatasetName::Mnist | DatasetName::FashionMnist => 60_000,
        DatasetName::Cifar10 | DatasetName::Cifar100 => 50_000,
        DatasetName::Synthetic => cfg.data.size as u64,
        DatasetName::Imagenet16 | DatasetName::Imagenet32 | DatasetName::Imagenet64 => 1_281_167,
        other => panic!("no size known for dataset {other:?}"),
    };
    let n = full - cfg.data.val_split as u64;
    let n = match cfg.data.train_subset {
        0 => n,
        s => (s as u64).min(n),
    };
    // data.mirrors: an epoch visits each image and its mirror.
    if cfg.data.mirrors {
        2 * n
    } else {
        n
    }
}

/// The run's real length: steps per epoch from the official split size, the batch size and
/// `drop_last`; `train.steps` or `train.epochs` of them.
fn run_length(cfg: &RunConfig) -> RunLength {
    let n = train_examples(cfg);
    let b = cfg.train.batch_size as u64;
    let spe = if cfg.data.drop_last {
        n / b
    } else {
        n.div_ceil(b)
    };
    let total = if cfg.train.steps > 0 {
        cfg.train.steps
    } else {
        cfg.train.epochs * spe
    };
    RunLength {
        steps_per_epoch: spe,
        total_steps: total,
    }
}

/// Build the run's schedule for its real length, with `"auto"` values (chosen by a range test
/// at run time) replaced by plausible numbers.
fn check_schedule(cfg: &RunConfig, what: &str) {
    let mut table = cfg.schedule.clone();
    for k in lrlab::lr_find::auto_keys(&table) {
        let v = if k == "base_lr" { 0.001 } else { 0.1 };
        table.insert(k, toml::Value::Float(v));
    }
    let len = run_length(cfg);
    if let Err(e) = Schedule::from_table(&table, len) {
        panic!("{what}: schedule does not build for {len:?}: {e:#}");
    }
}

#[test]
fn every_spec_in_runs_is_valid() {
    let files = spec_files();
    let (mut sweeps, mut configs) = (0, 0);
    for f in &files {
        let doc: toml::Table = std::fs::read_to_string(f).unwrap().parse().unwrap();
        let what = f.strip_prefix(runs_dir()).unwrap().display().to_string();
        if doc.contains_key("schedule") {
            configs += 1;
            let cfg = RunConfig::load(f, &[]).unwrap_or_else(|e| panic!("{what}: {e:#}"));
            check_schedule(&cfg, &what);
            continue;
        }
        sweeps += 1;
        let p = plan::load(f).unwrap_or_else(|e| panic!("{what}: {e:#}"));
        assert!(!p.runs.is_empty(), "{what}: no runs");
        for r in &p.runs {
            let cfg = RunConfig::from_table(r.config.parse().unwrap())
                .unwrap_or_else(|e| panic!("{what} / {}: {e:#}", r.name));
            check_schedule(&cfg, &format!("{what} / {}", r.name));
        }
        for pv in &p.spec.report.paper {
            assert!(
                p.runs.iter().any(|r| matches(&pv.conditions, &r.labels)),
                "{what}: [report.paper] \"{}\" matches no grid point",
                pv.key
            );
        }
    }
    // The papers' tables and the CPU-scale reproductions are all there.
    for name in [
        "papers/sgdr_table1.toml",
        "papers/clr_table1.toml",
        "papers/superconv_table1.toml",
        "papers/disciplined_resnet56.toml",
        "papers/dawnbench_resnet9.toml",
        "cpu/super_convergence.toml",
        "cpu/sgdr.toml",
        "cpu/clr.toml",
    ] {
        assert!(runs_dir().join(name).is_file(), "runs/{name} is missing");
    }
    assert!(
        sweeps >= 10 && configs >= 5,
        "{sweeps} sweeps, {configs} configs"
    );
}

#[test]
fn paper_tables_have_the_papers_shape() {
    // SGDR Table 1: 7 schedules x 2 datasets x 5 seeds, every point with the paper's number.
    let p = plan::load(&runs_dir().join("papers/sgdr_table1.toml")).unwrap();
    assert_eq!(p.runs.len(), 70);
    assert_eq!(p.spec.report.paper.len(), 14);
    // The T_0 = 10, x2 model is read at its last completed cycle end: epoch 150 of 200, each
    // the paper's 781 iterations (100k images with the mirrors, the partial batch dropped).
    let t0_10 = p
        .spec
        .report
        .paper
        .iter()
        .find(|pv| pv.key.contains("t0_10_x2"))
        .unwrap();
    assert_eq!(t0_10.epoch, Some(150.0));
    let r = p.runs.iter().find(|r| r.name.contains("t0_10_x2")).unwrap();
    let cfg = RunConfig::from_table(r.config.parse().unwrap()).unwrap();
    let len = run_length(&cfg);
    assert_eq!(len.steps_per_epoch, 781);
    assert_eq!(len.total_steps, 200 * 781);
    let s = Schedule::from_table(&cfg.schedule, len).unwrap();
    let ends: Vec<u64> = s.cycle_ends();
    assert_eq!(ends, [10 * 781, 30 * 781, 70 * 781, 150 * 781]);

    // Super-convergence: CLR 10k iterations vs step 80k, at 5 training-set sizes.
    let p = plan::load(&runs_dir().join("papers/superconv_table1.toml")).unwrap();
    let steps: Vec<u64> = p
        .runs
        .iter()
        .map(|r| {
            RunConfig::from_table(r.config.parse().unwrap())
                .unwrap()
                .train
                .steps
        })
        .collect();
    assert_eq!(steps.iter().filter(|&&s| s == 10_000).count(), 10);
    assert_eq!(steps.iter().filter(|&&s| s == 80_000).count(), 10);
}

/// The iterations at which the LR drops, over the run's real length.
fn drops(cfg: &RunConfig) -> Vec<u64> {
    let len = run_length(cfg);
    let s = Schedule::from_table(&cfg.schedule, len).unwrap();
    (1..len.total_steps)
        .filter(|&k| s.lr(k) < s.lr(k - 1))
        .collect()
}

/// Every paper spec whose solver gives its drops in iterations (Caffe's `stepvalue`) drops at
/// those iterations at every grid point, the training-set subsets included. Before,
/// `superconv_table1.toml` gave them as epochs (1000, 1400 at 50 iterations an epoch), which
/// on a 10k subset (10 iterations an epoch) came at 10k and 14k instead of 50k and 70k.
#[test]
fn the_papers_step_drops_come_at_the_papers_iterations() {
    for (spec, point, want) in [
        (
            "papers/superconv_table1.toml",
            "schedule=step",
            vec![50_000, 70_000],
        ),
        (
            "papers/clr_table1.toml",
            "schedule=fixed",
            vec![60_000, 65_000],
        ),
    ] {
        let p = plan::load(&runs_dir().join(spec)).unwrap();
        let cond = lrlab::report::paper::conditions(point).unwrap();
        let mut seen = 0;
        for r in p.runs.iter().filter(|r| matches(&cond, &r.labels)) {
            let cfg = RunConfig::from_table(r.config.parse().unwrap()).unwrap();
            assert_eq!(drops(&cfg), want, "{spec} / {}", r.name);
            seen += 1;
        }
        assert!(seen > 0, "{spec}: no run matches {point}");
    }
    let cfg = RunConfig::load(&runs_dir().join("papers/clr_caffe_cifar10.toml"), &[]).unwrap();
    assert_eq!(
        drops(&cfg),
        vec![60_000, 65_000],
        "papers/clr_caffe_cifar10.toml"
    );
}

/// CLR's Caffe net has the prototxt's per-blob multipliers (`cifar10_full_train_test.prototxt`):
/// conv1/conv2 biases lr_mult 2, conv3's bias lr_mult 1, ip1's weight decay_mult 250 (decay
/// 1.0), ip1's bias lr_mult 2 decay_mult 0; the rest 1 and the solver's 0.004.
#[test]
fn the_clr_spec_has_the_prototxts_multipliers() {
    let cfg = RunConfig::load(&runs_dir().join("papers/clr_caffe_cifar10.toml"), &[]).unwrap();
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    tch::no_grad(|| lrlab::models::build(&vs.root(), &cfg.model, 3, 10, 32)).unwrap();
    let opt = lrlab::train::optim::Optimizer::new(&vs, &cfg.optim).unwrap();
    let got: Vec<(String, f64, f64)> = opt
        .multipliers()
        .into_iter()
        .map(|(n, l, d)| (n.to_string(), l, (d * 1e6).round() / 1e6))
        .collect();
    let want = [
        ("conv1.bias", 2.0, 0.004),
        ("conv1.weight", 1.0, 0.004),
        ("conv2.bias", 2.0, 0.004),
        ("conv2.weight", 1.0, 0.004),
        ("conv3.bias", 1.0, 0.004),
        ("conv3.weight", 1.0, 0.004),
        ("ip1.bias", 2.0, 0.0),
        ("ip1.weight", 1.0, 1.0),
    ];
    let want: Vec<(String, f64, f64)> = want
        .iter()
        .map(|(n, l, d)| (n.to_string(), *l, *d))
        .collect();
    assert_eq!(got, want);
}

/// The super-convergence specs train the authors' ResNet-56 with its multipliers: conv biases
/// lr_mult 2 / decay_mult 0, the classifier's bias lr_mult 2 / decay_mult 1, weights 1 and 1
/// (every blob decayed, wd 1e-4).
#[test]
fn the_super_convergence_specs_train_the_authors_resnet56() {
    let cfg = RunConfig::load(&runs_dir().join("papers/superconv_resnet56.toml"), &[]).unwrap();
    assert_eq!(cfg.model.arch, "resnet56_caffe");
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    tch::no_grad(|| lrlab::models::build(&vs.root(), &cfg.model, 3, 10, 32)).unwrap();
    let opt = lrlab::train::optim::Optimizer::new(&vs, &cfg.optim).unwrap();
    for (name, lr_mult, wd) in opt.multipliers() {
        let want = match name {
            "linear.bias" => (2.0, 1e-4),
            n if n.ends_with(".bias") && n.contains("conv") => (2.0, 0.0),
            _ => (1.0, 1e-4),
        };
        assert_eq!((lr_mult, wd), want, "{name}");
    }
    let p = plan::load(&runs_dir().join("papers/superconv_table1.toml")).unwrap();
    for r in &p.runs {
        let c = RunConfig::from_table(r.config.parse().unwrap()).unwrap();
        assert_eq!(c.model.arch, "resnet56_caffe", "{}", r.name);
        assert_eq!(c.optim.groups, cfg.optim.groups, "{}", r.name);
    }
}

/// SGDR's networks are Lasagne's: batch norm with epsilon 1e-4.
#[test]
fn sgdr_specs_use_lasagnes_batch_norm_epsilon() {
    for spec in [
        "papers/sgdr_wrn_28_10.toml",
        "papers/sgdr_wrn_28_10_imagenet32.toml",
    ] {
        let cfg = RunConfig::load(&runs_dir().join(spec), &[]).unwrap();
        assert_eq!(cfg.model.bn_eps, 1e-4, "{spec}");
    }
}

/// `disciplined_resnet56.toml` says "setup as superconv_resnet56.toml": every setting the
/// latter takes from the authors' Caffe files is the same in every run of the former.
#[test]
fn the_disciplined_spec_has_the_super_convergence_setup() {
    let sc = RunConfig::load(&runs_dir().join("papers/superconv_resnet56.toml"), &[]).unwrap();
    let p = plan::load(&runs_dir().join("papers/disciplined_resnet56.toml")).unwrap();
    for r in &p.runs {
        let c = RunConfig::from_table(r.config.parse().unwrap()).unwrap();
        assert_eq!(c.data.input_scale, sc.data.input_scale, "{}", r.name);
        assert_eq!(c.data.normalize, sc.data.normalize, "{}", r.name);
        assert_eq!(c.model.bn_momentum, sc.model.bn_momentum, "{}", r.name);
        assert_eq!(c.model.bn_stats, sc.model.bn_stats, "{}", r.name);
        assert_eq!(c.optim.bias_lr_mult, sc.optim.bias_lr_mult, "{}", r.name);
        assert_eq!(
            c.optim.bias_decay_mult, sc.optim.bias_decay_mult,
            "{}",
            r.name
        );
        assert_eq!(c.optim.wd_scope, sc.optim.wd_scope, "{}", r.name);
        assert_eq!(c.optim.groups, sc.optim.groups, "{}", r.name);
        assert_eq!(c.model.arch, sc.model.arch, "{}", r.name);
    }
}
