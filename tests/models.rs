//! The model zoo: parameter counts against the papers' and reference codes' numbers, forward
//! shapes, initialisation statistics, seeding, config validation and `lrlab models`.

mod common;
use common::OutputWithin;

use lrlab::models::{
    build, caffe_cifar::lrn_within_channel, count_params, names, weights_to_channels_last, Model,
    ModelConfig, Shortcut,
};
use lrlab::util::channels_last;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use tch::{nn, nn::ModuleT, Device, Kind, Tensor};

/// libtorch's generator is process-global and tests run on parallel threads: every random
/// draw in this file holds this lock, so a seeded sequence is not interleaved with others.
static RNG: Mutex<()> = Mutex::new(());

fn rng_lock() -> MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

/// Seed of every seeded build and draw in this file: each test's weights are the same in
/// every run, whatever other tests do on their threads.
const SEED: i64 = 20261205;

/// Build `cfg` on a fresh CPU VarStore, seeded with [`SEED`].
fn build_cfg(cfg: &ModelConfig, c: i64, classes: i64, size: i64) -> (nn::VarStore, Model) {
    let _g = rng_lock();
    tch::manual_seed(SEED);
    build_unlocked(cfg, c, classes, size)
}

fn build_unlocked(cfg: &ModelConfig, c: i64, classes: i64, size: i64) -> (nn::VarStore, Model) {
    let vs = nn::VarStore::new(Device::Cpu);
    let m = build(&vs.root(), cfg, c, classes, size).unwrap_or_else(|e| panic!("{e:#}"));
    (vs, m)
}

/// A standard-normal float tensor (seeded: each call draws the same numbers).
fn randn(shape: &[i64]) -> Tensor {
    let _g = rng_lock();
    tch::manual_seed(SEED);
    Tensor::randn(shape, tch::kind::FLOAT_CPU)
}

fn cfg(arch: &str) -> ModelConfig {
    ModelConfig {
        arch: arch.into(),
        ..Default::default()
    }
}

fn build_arch(arch: &str, c: i64, classes: i64, size: i64) -> (nn::VarStore, Model) {
    build_cfg(&cfg(arch), c, classes, size)
}

fn params(arch: &str, shortcut: Shortcut, c: i64, classes: i64, size: i64) -> i64 {
    let (vs, _) = build_cfg(
        &ModelConfig {
            shortcut,
            ..cfg(arch)
        },
        c,
        classes,
        size,
    );
    count_params(&vs)
}

fn var(vs: &nn::VarStore, name: &str) -> Tensor {
    vs.variables()
        .remove(name)
        .unwrap_or_else(|| panic!("no variable {name}"))
}

fn std_of(t: &Tensor) -> f64 {
    t.to_kind(Kind::Double).std(true).double_value(&[])
}

fn max_abs(t: &Tensor) -> f64 {
    t.abs().max().double_value(&[])
}

/// Does every value of the f32 tensor `t` lie in [-b, b] for an init bound `b` computed in
/// f64? libtorch draws U(-b, b) in f32, where `b` itself rounds up or down, and
/// `from + u·(to − from)` rounds once more: allow one f32 ulp above `b` rounded to f32.
fn within_f32_bound(t: &Tensor, b: f64) -> bool {
    let b32 = b as f32;
    let slack = f32::from_bits(b32.to_bits() + 1);
    max_abs(t) <= slack as f64
}

fn all_equal(t: &Tensor, v: f64) -> bool {
    t.eq(v).all().int64_value(&[]) == 1
}

/// Input shape of each model's dataset in these tests (ImageNet nets at 64×64 to stay fast).
fn input_shape(arch: &str) -> (i64, i64) {
    match arch {
        "lenet" => (1, 28),
        "resnet18" | "resnet34" | "resnet50" => (3, 64),
        _ => (3, 32),
    }
}

// ---------- parameter counts ----------

#[test]
fn cifar_resnet_counts_match_he_et_al_and_akamaster() {
    assert_eq!(params("resnet20", Shortcut::A, 3, 10, 32), 269_722);
    assert_eq!(params("resnet20", Shortcut::B, 3, 10, 32), 272_474);
    assert_eq!(params("resnet56", Shortcut::A, 3, 10, 32), 853_018);
    assert_eq!(params("resnet110", Shortcut::A, 3, 10, 32), 1_727_962);
    // The small members (n = 1, 2), counted by hand: stem 3·16·9 + BN 32; a 16→16 block
    // 2·16·16·9 + 64; 16→32: 16·32·9 + 32·32·9 + 128; 32→32: 2·32·32·9 + 128; 32→64:
    // 32·64·9 + 64·64·9 + 256; 64→64: 2·64·64·9 + 256; linear 64·10 + 10.
    assert_eq!(params("resnet8", Shortcut::A, 3, 10, 32), 75_290);
    assert_eq!(params("resnet14", Shortcut::A, 3, 10, 32), 172_506);
    // One input channel (Fashion-MNIST, the demo): 2·16·9 fewer.
    assert_eq!(params("resnet8", Shortcut::A, 1, 10, 28), 75_002);
}

#[test]
fn wrn_28_10_counts_match_sgdr() {
    assert_eq!(params("wrn_28_10", Shortcut::A, 3, 10, 32), 36_479_194);
    assert_eq!(params("wrn_28_10", Shortcut::A, 3, 100, 32), 36_536_884);
}

#[test]
fn imagenet_counts_match_torchvision() {
    assert_eq!(params("resnet18", Shortcut::A, 3, 1000, 224), 11_689_512);
    assert_eq!(params("resnet34", Shortcut::A, 3, 1000, 224), 21_797_672);
    assert_eq!(params("resnet50", Shortcut::A, 3, 1000, 224), 25_557_032);
}

#[test]
fn small_network_counts_match_their_layer_arithmetic() {
    // Caffe LeNet on MNIST: 1·20·25+20 + 20·50·25+50 + 800·500+500 + 500·10+10.
    assert_eq!(params("lenet", Shortcut::A, 1, 10, 28), 431_080);
    // Caffe CIFAR-10 full: 3·32·25+32 + 32·32·25+32 + 32·64·25+64 + 1024·10+10.
    assert_eq!(params("caffe_cifar", Shortcut::A, 3, 10, 32), 89_578);
    // kuangliu's PreActResNet18 (11.17M).
    assert_eq!(
        params("preact_resnet18", Shortcut::A, 3, 10, 32),
        11_171_146
    );
    // Page's ResNet-9: convs 64,128,128,128,256,512,512,512 + their BNs + 512·10.
    assert_eq!(params("resnet9", Shortcut::A, 3, 10, 32), 6_573_120);
}

#[test]
fn trainable_tensor_counts_exclude_bn_running_stats() {
    let n = |arch: &str, sc| {
        let (vs, _) = build_cfg(
            &ModelConfig {
                shortcut: sc,
                ..cfg(arch)
            },
            3,
            10,
            32,
        );
        vs.trainable_variables().len()
    };
    assert_eq!(n("resnet20", Shortcut::A), 59);
    assert_eq!(n("resnet20", Shortcut::B), 65);
    // WRN-16-2: stem 1 + 6 blocks × 6 + 3 projections + final BN 2 + fc 2.
    assert_eq!(n("wrn_16_2", Shortcut::A), 44);
}

// ---------- forward passes ----------

#[test]
fn every_model_gives_finite_logits_in_train_and_eval_mode() {
    for arch in names() {
        if arch == "wrn_28_10" {
            continue; // 36M parameters: counted above; wrn_16_8 covers the family.
        }
        let (c, s) = input_shape(arch);
        let classes = if arch == "wrn_16_8" { 100 } else { 10 };
        let (_vs, m) = build_arch(arch, c, classes, s);
        let x = randn(&[2, c, s, s]);
        for train in [true, false] {
            let y = tch::no_grad(|| m.forward_t(&x, train));
            assert_eq!(y.size(), [2, classes], "{arch} train={train}");
            assert!(
                y.isfinite().all().int64_value(&[]) == 1,
                "{arch} train={train}"
            );
        }
    }
}

#[test]
fn wrn_dropout_is_active_in_train_mode_only() {
    let c = ModelConfig {
        dropout: 0.5,
        ..cfg("wrn_10_1")
    };
    let (_vs, m) = build_cfg(&c, 3, 10, 16);
    let x = randn(&[2, 3, 16, 16]);
    let _g = rng_lock();
    tch::no_grad(|| {
        let e1 = m.forward_t(&x, false);
        let e2 = m.forward_t(&x, false);
        assert!(e1.equal(&e2), "eval must be deterministic");
        let t1 = m.forward_t(&x, true);
        let t2 = m.forward_t(&x, true);
        assert!(!t1.equal(&t2), "dropout must change train outputs");
    });
}

#[test]
fn models_take_other_channel_counts_and_sizes() {
    // Grey 28×28 input through CIFAR networks, 3×32×32 through LeNet, ImageNet nets at 32.
    for arch in ["resnet20", "wrn_10_1", "resnet9", "caffe_cifar"] {
        let (_vs, m) = build_arch(arch, 1, 7, 28);
        let y = tch::no_grad(|| m.forward_t(&randn(&[2, 1, 28, 28]), false));
        assert_eq!(y.size(), [2, 7], "{arch}");
    }
    let (_vs, m) = build_arch("lenet", 3, 10, 32);
    let y = tch::no_grad(|| m.forward_t(&randn(&[2, 3, 32, 32]), true));
    assert_eq!(y.size(), [2, 10]);
    let (_vs, m) = build_arch("resnet18", 3, 10, 32);
    let y = tch::no_grad(|| m.forward_t(&randn(&[2, 3, 32, 32]), false));
    assert_eq!(y.size(), [2, 10]);
}

#[test]
fn caffe_pooling_rounds_up() {
    // 28 → 14 → 7 → 3 with Caffe's ceil rounding (floor would give 13 → 6 → 2).
    let (vs, m) = build_arch("caffe_cifar", 3, 10, 28);
    assert_eq!(var(&vs, "ip1.weight").size(), [10, 64 * 3 * 3]);
    let y = tch::no_grad(|| m.forward_t(&randn(&[2, 3, 28, 28]), false));
    assert_eq!(y.size(), [2, 10]);
    // 32 → 16 → 8 → 4 (the prototxt's 1024 inputs to ip1).
    let (vs, _) = build_arch("caffe_cifar", 3, 10, 32);
    assert_eq!(var(&vs, "ip1.weight").size(), [10, 1024]);
    // LeNet on MNIST: 28 → 24 → 12 → 8 → 4, ip1 sees 50·4·4.
    let (vs, _) = build_arch("lenet", 1, 10, 28);
    assert_eq!(var(&vs, "ip1.weight").size(), [500, 800]);
}

#[test]
fn lrn_within_channel_matches_caffe_formula() {
    // A constant map c: an interior pixel's 3×3 window holds 9 c², a corner's 4 c² (zero pad).
    let (c, alpha, beta) = (2.0f64, 1.0, 0.75);
    let x = Tensor::full([1, 1, 5, 5], c, tch::kind::DOUBLE_CPU);
    let y = lrn_within_channel(&x, 3, alpha, beta);
    let interior = c * (1.0 + alpha / 9.0 * 9.0 * c * c).powf(-beta);
    let corner = c * (1.0 + alpha / 9.0 * 4.0 * c * c).powf(-beta);
    let edge = c * (1.0 + alpha / 9.0 * 6.0 * c * c).powf(-beta);
    assert!((y.double_value(&[0, 0, 2, 2]) - interior).abs() < 1e-12);
    assert!((y.double_value(&[0, 0, 0, 0]) - corner).abs() < 1e-12);
    assert!((y.double_value(&[0, 0, 0, 2]) - edge).abs() < 1e-12);
    // Channels do not mix: a second channel of zeros stays zero and leaves the first alone.
    let x2 = Tensor::cat(&[&x, &x.zeros_like()], 1);
    let y2 = lrn_within_channel(&x2, 3, alpha, beta);
    assert!(y2.narrow(1, 0, 1).allclose(&y, 1e-12, 1e-12, false));
    assert!(all_equal(&y2.narrow(1, 1, 1), 0.0));
}

#[test]
fn resnet9_classifier_has_no_bias() {
    let (vs, m) = build_arch("resnet9", 3, 10, 32);
    assert!(
        !vs.variables().contains_key("linear.bias"),
        "the classifier has no bias"
    );
    let x = randn(&[2, 3, 32, 32]);
    let y = tch::no_grad(|| m.forward_t(&x, false));
    // Without a bias the logits are linear in the classifier weight.
    tch::no_grad(|| {
        let mut w = var(&vs, "linear.weight");
        let _ = w.g_mul_scalar_(8.0);
    });
    let y8 = tch::no_grad(|| m.forward_t(&x, false));
    assert!(y8.allclose(&(y * 8.0), 1e-4, 1e-5, false));
}

// ---------- initialisation ----------

/// |sample std / expected − 1| within `tol`.
fn assert_std(vs: &nn::VarStore, name: &str, expected: f64, tol: f64) {
    let s = std_of(&var(vs, name));
    assert!(
        (s / expected - 1.0).abs() < tol,
        "{name}: std {s}, expected {expected}"
    );
}

#[test]
fn cifar_resnet_init_is_kaiming_normal_fan_in() {
    let (vs, _) = build_arch("resnet20", 3, 10, 32);
    // [64, 64, 3, 3]: √(2/576); [64, 32, 3, 3] (fan_in 288, fan_out 576): √(2/288).
    assert_std(&vs, "layer3.1.conv1.weight", (2.0f64 / 576.0).sqrt(), 0.05);
    assert_std(&vs, "layer3.0.conv1.weight", (2.0f64 / 288.0).sqrt(), 0.05);
    // Linear weight kaiming_normal too (√(2/64)); bias PyTorch default U(±1/8).
    assert_std(&vs, "linear.weight", (2.0f64 / 64.0).sqrt(), 0.3);
    let b = var(&vs, "linear.bias");
    assert!(within_f32_bound(&b, 0.125) && max_abs(&b) > 0.0);
    assert!(
        !vs.variables().contains_key("conv1.bias"),
        "convs have no bias"
    );
}

#[test]
fn torchvision_and_wrn_convs_are_kaiming_normal_fan_out() {
    let (vs, _) = build_arch("resnet18", 3, 1000, 64);
    assert_std(
        &vs,
        "layer4.0.conv2.weight",
        (2.0f64 / (512.0 * 9.0)).sqrt(),
        0.05,
    );
    // [512, 256, 3, 3]: fan_out 4608 (fan_in would give √(2/2304)).
    assert_std(&vs, "layer4.0.conv1.weight", (2.0f64 / 4608.0).sqrt(), 0.05);
    let bound = 1.0 / 512f64.sqrt();
    let fc = var(&vs, "fc.weight");
    assert!(within_f32_bound(&fc, bound));
    assert!((std_of(&fc) / (bound / 3f64.sqrt()) - 1.0).abs() < 0.05);

    let (vs, _) = build_arch("wrn_16_2", 3, 10, 32);
    // [64, 32, 3, 3]: fan_out 576 → √(2/576) (fan_in would be √(2/288), 41% larger).
    assert_std(&vs, "layer2.0.conv1.weight", (2.0f64 / 576.0).sqrt(), 0.05);
    assert!(
        all_equal(&var(&vs, "fc.bias"), 0.0),
        "official WRN zeroes the fc bias"
    );
    assert!(within_f32_bound(
        &var(&vs, "fc.weight"),
        1.0 / 128f64.sqrt()
    ));
}

#[test]
fn pytorch_default_init_is_uniform_one_over_sqrt_fan_in() {
    let (vs, _) = build_arch("preact_resnet18", 3, 10, 32);
    let w = var(&vs, "layer4.1.conv2.weight"); // fan_in 512·9
    let bound = 1.0 / (512.0f64 * 9.0).sqrt();
    assert!(within_f32_bound(&w, bound));
    assert!((std_of(&w) / (bound / 3f64.sqrt()) - 1.0).abs() < 0.02);
    assert!(within_f32_bound(
        &var(&vs, "linear.bias"),
        1.0 / 512f64.sqrt()
    ));
}

#[test]
fn caffe_networks_use_their_prototxt_fillers() {
    let (vs, _) = build_arch("caffe_cifar", 3, 10, 32);
    assert_std(&vs, "conv1.weight", 1e-4, 0.1);
    assert_std(&vs, "conv2.weight", 0.01, 0.05);
    assert_std(&vs, "conv3.weight", 0.01, 0.05);
    assert_std(&vs, "ip1.weight", 0.01, 0.05);
    let (vs2, _) = build_arch("lenet", 1, 10, 28);
    // xavier: U(±√(3/fan_in)), std √(1/fan_in); ip1 fan_in 800.
    let w = var(&vs2, "ip1.weight");
    assert!(within_f32_bound(&w, (3.0f64 / 800.0).sqrt()));
    assert_std(&vs2, "ip1.weight", (1.0f64 / 800.0).sqrt(), 0.02);
    for vs in [&vs, &vs2] {
        for (name, t) in vs.variables() {
            if name.ends_with(".bias") {
                assert!(all_equal(&t, 0.0), "{name} must start at 0");
            }
        }
    }
}

/// Every BN (found by its running mean) of `vs`: (prefix, weight, bias, mean, var).
fn batch_norms(vs: &nn::VarStore) -> Vec<(String, Tensor, Tensor, Tensor, Tensor)> {
    let v: HashMap<String, Tensor> = vs.variables();
    let mut out: Vec<_> = v
        .keys()
        .filter_map(|k| k.strip_suffix(".running_mean"))
        .map(|p| {
            let g = |s: &str| v[&format!("{p}.{s}")].shallow_clone();
            (
                p.to_string(),
                g("weight"),
                g("bias"),
                g("running_mean"),
                g("running_var"),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn batch_norm_starts_at_gamma_one_beta_zero_everywhere() {
    for arch in [
        "resnet20",
        "preact_resnet18",
        "wrn_16_2",
        "resnet9",
        "resnet50",
    ] {
        let (c, s) = input_shape(arch);
        let (vs, _) = build_arch(arch, c, 10, s);
        let bns = batch_norms(&vs);
        assert!(!bns.is_empty(), "{arch}");
        for (p, w, b, m, v) in bns {
            assert!(all_equal(&w, 1.0) && all_equal(&b, 0.0), "{arch} {p}");
            assert!(all_equal(&m, 0.0) && all_equal(&v, 1.0), "{arch} {p}");
        }
    }
}

#[test]
fn zero_init_residual_zeroes_the_last_bn_of_each_branch() {
    let z = |arch: &str| ModelConfig {
        zero_init_residual: true,
        ..cfg(arch)
    };
    let check = |arch: &str, last: &dyn Fn(&str) -> bool, expected_zero: usize| {
        let (c, s) = input_shape(arch);
        let (vs, _) = build_cfg(&z(arch), c, 10, s);
        let mut zeros = 0;
        for (p, w, _, _, _) in batch_norms(&vs) {
            if last(&p) {
                assert!(all_equal(&w, 0.0), "{arch} {p}");
                zeros += 1;
            } else {
                assert!(all_equal(&w, 1.0), "{arch} {p}");
            }
        }
        assert_eq!(zeros, expected_zero, "{arch}");
    };
    check("resnet20", &|p| p.ends_with(".bn2"), 9);
    check("resnet18", &|p| p.ends_with(".bn2"), 8);
    check("resnet50", &|p| p.ends_with(".bn3"), 16);
    check("resnet9", &|p| p.ends_with("res2.bn"), 2);
}

#[test]
fn bn_momentum_sets_the_running_average_rate() {
    let m = 0.05;
    let (vs, model) = build_cfg(
        &ModelConfig {
            bn_momentum: m,
            ..cfg("resnet20")
        },
        3,
        10,
        32,
    );
    let x = randn(&[4, 3, 32, 32]);
    let _ = tch::no_grad(|| model.forward_t(&x, true));
    // bn1 follows conv1 directly: running_mean = (1 − m)·0 + m·batch mean.
    let conv = x.conv2d(
        &var(&vs, "conv1.weight"),
        None::<Tensor>,
        [1, 1],
        [1, 1],
        [1, 1],
        1,
    );
    let expected = conv.mean_dim([0i64, 2, 3].as_slice(), false, Kind::Float) * m;
    assert!(var(&vs, "bn1.running_mean").allclose(&expected, 1e-4, 1e-6, false));
}

// ---------- naming and seeding ----------

#[test]
fn variables_carry_the_reference_names() {
    let (vs, _) = build_arch("resnet50", 3, 1000, 64);
    let v = vs.variables();
    for name in [
        "conv1.weight",
        "bn1.running_var",
        "layer1.0.downsample.0.weight",
        "layer1.0.downsample.1.bias",
        "layer4.2.conv3.weight",
        "layer4.2.bn3.weight",
        "fc.weight",
        "fc.bias",
    ] {
        assert!(v.contains_key(name), "resnet50 lacks {name}");
    }
    let (vs, _) = build_cfg(
        &ModelConfig {
            shortcut: Shortcut::B,
            ..cfg("resnet20")
        },
        3,
        10,
        32,
    );
    let v = vs.variables();
    assert!(
        v.contains_key("layer2.0.shortcut.0.weight") && v.contains_key("layer3.0.shortcut.1.bias")
    );
    assert!(
        !v.contains_key("layer1.0.shortcut.0.weight"),
        "no projection where shapes match"
    );
    let (vs, _) = build_arch("resnet20", 3, 10, 32);
    assert!(
        !vs.variables().keys().any(|k| k.contains("shortcut")),
        "option A has no parameters"
    );
}

fn snapshot(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<_> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn same_seed_gives_identical_weights() {
    for arch in ["resnet20", "wrn_10_2", "lenet"] {
        let (c, s) = input_shape(arch);
        let _g = rng_lock();
        tch::manual_seed(42);
        let (a, _) = build_unlocked(&cfg(arch), c, 10, s);
        tch::manual_seed(42);
        let (b, _) = build_unlocked(&cfg(arch), c, 10, s);
        tch::manual_seed(43);
        let (d, _) = build_unlocked(&cfg(arch), c, 10, s);
        let (a, b, d) = (snapshot(&a), snapshot(&b), snapshot(&d));
        assert_eq!(a.len(), b.len());
        let mut any_diff = false;
        for ((na, ta), ((nb, tb), (_, td))) in a.iter().zip(b.iter().zip(&d)) {
            assert_eq!(na, nb);
            assert!(ta.equal(tb), "{arch} {na} differs under the same seed");
            any_diff |= !ta.equal(td);
        }
        assert!(any_diff, "{arch}: another seed must give other weights");
    }
}

#[test]
fn channels_last_weights_keep_the_outputs() {
    let (vs, m) = build_arch("resnet20", 3, 10, 32);
    let x = randn(&[2, 3, 32, 32]);
    let y = tch::no_grad(|| m.forward_t(&x, false));
    weights_to_channels_last(&vs);
    let w = var(&vs, "layer1.0.conv1.weight");
    assert_eq!(w.stride(), [16 * 9, 1, 3 * 16, 16]);
    let xc = channels_last(&x);
    assert_eq!(xc.stride(), [3 * 32 * 32, 1, 32 * 3, 3]);
    let y2 = tch::no_grad(|| m.forward_t(&xc, false));
    assert!(y2.allclose(&y, 1e-4, 1e-5, false));
}

// ---------- configuration ----------

fn input_err(c: &ModelConfig, size: i64) -> String {
    let _g = rng_lock();
    let vs = nn::VarStore::new(Device::Cpu);
    let e = build(&vs.root(), c, 3, 10, size).expect_err("must fail");
    assert!(lrlab::is_input_error(&e), "not an input error: {e:#}");
    format!("{e:#}")
}

#[test]
fn config_parses_with_documented_defaults() {
    let c: ModelConfig = toml::from_str("arch = \"wrn_28_10\"\ndropout = 0.3").unwrap();
    assert_eq!(
        c,
        ModelConfig {
            arch: "wrn_28_10".into(),
            shortcut: Shortcut::A,
            dropout: 0.3,
            bn_momentum: 0.1,
            zero_init_residual: false,
            bn_stats: lrlab::models::BnStats::Torch,
            bn_eps: 1e-5,
            ghost_batch: 0,
        }
    );
    assert!(!toml::to_string(&c).unwrap().contains("ghost_batch"));
    // A default ε is not written back (existing configs keep their text); another one is.
    assert!(!toml::to_string(&c).unwrap().contains("bn_eps"));
    let lasagne: ModelConfig = toml::from_str("arch = \"wrn_28_10\"\nbn_eps = 1e-4").unwrap();
    assert!(toml::to_string(&lasagne)
        .unwrap()
        .contains("bn_eps = 0.0001"));
    let c: ModelConfig = toml::from_str("arch = \"resnet56\"\nshortcut = \"B\"").unwrap();
    assert_eq!(c.shortcut, Shortcut::B);
    let back: ModelConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
    assert_eq!(back, c);
    assert_eq!(ModelConfig::default().arch, "resnet20");
    let e = toml::from_str::<ModelConfig>("arch = \"resnet20\"\nwidth = 2").unwrap_err();
    assert!(e.to_string().contains("width"), "{e}");
    let e = toml::from_str::<ModelConfig>("arch = \"resnet20\"\nshortcut = \"C\"").unwrap_err();
    assert!(e.to_string().contains("C"), "{e}");
    assert!(
        toml::from_str::<ModelConfig>("dropout = 0.1").is_err(),
        "arch is required"
    );
}

#[test]
fn unknown_arch_lists_the_valid_names() {
    let msg = input_err(&cfg("resnet21"), 32);
    assert!(msg.contains("resnet21"), "{msg}");
    for n in names() {
        assert!(msg.contains(n), "{msg} lacks {n}");
    }
    let msg = input_err(&cfg("wrn_26_10"), 32);
    assert!(msg.contains("6n+4"), "{msg}");
    let msg = input_err(&cfg("wrn_28_0"), 32);
    assert!(msg.contains("widening factor"), "{msg}");
    let msg = input_err(&cfg("wrn_28"), 32);
    assert!(msg.contains("wrn_<depth>_<k>"), "{msg}");
}

#[test]
fn options_a_model_cannot_use_are_rejected() {
    let msg = input_err(
        &ModelConfig {
            shortcut: Shortcut::B,
            ..cfg("wrn_16_8")
        },
        32,
    );
    assert!(
        msg.contains("model.shortcut") && msg.contains("wrn_16_8"),
        "{msg}"
    );
    let msg = input_err(
        &ModelConfig {
            dropout: 0.3,
            ..cfg("resnet20")
        },
        32,
    );
    assert!(msg.contains("model.dropout = 0.3"), "{msg}");
    let msg = input_err(
        &ModelConfig {
            zero_init_residual: true,
            ..cfg("preact_resnet18")
        },
        32,
    );
    assert!(msg.contains("model.zero_init_residual"), "{msg}");
    let msg = input_err(
        &ModelConfig {
            bn_momentum: 0.001,
            ..cfg("lenet")
        },
        32,
    );
    assert!(
        msg.contains("model.bn_momentum") && msg.contains("no batch norm"),
        "{msg}"
    );
    let msg = input_err(
        &ModelConfig {
            bn_momentum: 0.0,
            ..cfg("resnet20")
        },
        32,
    );
    assert!(msg.contains("model.bn_momentum = 0"), "{msg}");
    let msg = input_err(
        &ModelConfig {
            dropout: 1.0,
            ..cfg("wrn_16_8")
        },
        32,
    );
    assert!(msg.contains("[0, 1)"), "{msg}");
    // Defaults are accepted everywhere; validate() checks without building.
    build_arch("lenet", 1, 10, 28);
    assert!(cfg("wrn_40_4").validate().is_ok());
    let e = ModelConfig {
        shortcut: Shortcut::B,
        ..cfg("resnet9")
    }
    .validate()
    .unwrap_err();
    assert!(lrlab::is_input_error(&e) && format!("{e}").contains("model.shortcut"));
}

#[test]
fn too_small_images_are_input_errors_naming_the_minimum() {
    assert!(input_err(&cfg("lenet"), 14).contains("at least 15x15"));
    build_arch("lenet", 1, 10, 15);
    assert!(input_err(&cfg("caffe_cifar"), 11).contains("at least 12x12"));
    build_arch("caffe_cifar", 3, 10, 12);
    assert!(input_err(&cfg("resnet9"), 7).contains("at least 8x8"));
    let msg = input_err(&cfg("resnet20"), 0);
    assert!(msg.contains("image size 0"), "{msg}");
}

// ---------- `lrlab models` ----------

/// `lrlab models ARGS`.
fn lrlab_models(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_lrlab"))
        .arg("models")
        .args(args)
        .output_within(common::DEADLINE_S)
        .unwrap()
}

/// Its stdout, which it must print successfully.
fn models_stdout(args: &[&str]) -> String {
    let out = lrlab_models(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn cli_prints_one_row_per_model() {
    let text = models_stdout(&[]);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("model,params,input"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.iter().map(|r| r[0]).collect::<Vec<_>>(), names());
    let get = |n: &str| rows.iter().find(|r| r[0] == n).unwrap().clone();
    assert_eq!(get("resnet20")[1..], ["269722", "10 classes 3x32x32"]);
    assert_eq!(get("wrn_28_10")[1], "36479194");
    // 10 classes: torchvision's 11,689,512 minus 990 fc rows of 513.
    assert_eq!(
        get("resnet18")[1..],
        [
            &(11_689_512 - 990 * 513).to_string(),
            "10 classes 3x224x224"
        ]
    );

    // --dataset takes the dataset's classes, channels and side; a flag still wins.
    let run = models_stdout;
    let text = run(&["--dataset", "cifar100"]);
    let row = text.lines().find(|l| l.starts_with("resnet20,")).unwrap();
    // 64 x 90 more fc weights and 90 more biases than with 10 classes.
    assert_eq!(
        row,
        format!("resnet20,{},100 classes 3x32x32", 269_722 + 64 * 90 + 90)
    );
    let text = run(&["--dataset", "fashion-mnist", "--classes", "5"]);
    assert!(text.contains(",5 classes 1x28x28\n"), "{text}");
    // The full torchvision ResNet-18 on ImageNet: 11,689,512.
    let text = run(&["--dataset", "imagenet"]);
    assert!(
        text.contains("resnet18,11689512,1000 classes 3x224x224\n"),
        "{text}"
    );
    let out = lrlab_models(&["--dataset", "cifar"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--dataset \"cifar\": expected one of"));

    let out = lrlab_models(&["--classes", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--classes 0"));
}

/// Caffe's BatchNorm keeps running sums and a normaliser (`acc = f·acc + batch statistic`,
/// `norm = f·norm + 1`, the variance unbiased by m/(m−1)) and evaluates with `acc / norm`.
/// `caffe_bn_stats` turns torch's running averages after n passes into exactly that.
#[test]
fn caffe_bn_stats_equal_caffes_normalised_accumulators() {
    tch::manual_seed(3);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let momentum = 0.05;
    let bn = lrlab::models::init::batch_norm(&(vs.root() / "bn"), 3, momentum, 1.0);
    let f = 1.0 - momentum;
    let (mut acc_mean, mut acc_var, mut norm) = (vec![0f64; 3], vec![0f64; 3], 0f64);
    let n = 7u64;
    for k in 0..n {
        let x = tch::Tensor::randn([4, 3, 5, 5], (tch::Kind::Float, tch::Device::Cpu))
            * (k as f64 + 1.0)
            + 2.0;
        let _ = tch::nn::ModuleT::forward_t(&bn, &x, true);
        let m = (4 * 5 * 5) as f64;
        for c in 0..3 {
            let xc: Vec<f64> = Vec::<f32>::try_from(x.select(1, c as i64).flatten(0, -1))
                .unwrap()
                .into_iter()
                .map(f64::from)
                .collect();
            let mean = xc.iter().sum::<f64>() / m;
            let var = xc.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (m - 1.0);
            acc_mean[c] = f * acc_mean[c] + mean;
            acc_var[c] = f * acc_var[c] + var;
        }
        norm = f * norm + 1.0;
    }
    let saved = lrlab::models::caffe_bn_stats(&vs, momentum, n);
    assert_eq!(saved.len(), 2);
    let vars = vs.variables();
    let got = |name: &str| -> Vec<f64> {
        Vec::<f32>::try_from(&vars[name])
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect()
    };
    for (c, (&a, &v)) in acc_mean.iter().zip(&acc_var).enumerate() {
        let (mean, var) = (got("bn.running_mean")[c], got("bn.running_var")[c]);
        assert!(
            (mean - a / norm).abs() < 1e-5 * (a / norm).abs().max(1.0),
            "{mean} vs {}",
            a / norm
        );
        assert!(
            (var - v / norm).abs() < 1e-5 * (v / norm).abs().max(1.0),
            "{var} vs {}",
            v / norm
        );
    }
    // And the raw torch values come back.
    lrlab::models::restore_vars(&vs, &saved);
    let raw = got("bn.running_mean");
    assert!((raw[0] - (1.0 - f.powi(n as i32)) * acc_mean[0] / norm).abs() < 1e-4);
}

/// `model.bn_eps` reaches every batch norm: in training mode a batch norm maps x to
/// A ghost batch norm of n normalises each n consecutive examples by their own statistics,
/// exactly as separate batch norms over each part would (each device's own, in the papers'
/// multi-GPU training), and its running statistics are those of a batch norm that saw the
/// first part alone; in evaluation it is the plain batch norm.
#[test]
fn a_ghost_batch_norm_normalises_each_part_alone() {
    let _g = rng_lock();
    tch::manual_seed(7);
    let x = Tensor::randn([8, 3, 4, 4], (tch::Kind::Float, Device::Cpu)) * 3.0 + 1.0;
    let build = |ghost: i64| {
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = {
            let _b = lrlab::models::init::BnBuild::set(1e-5, ghost);
            lrlab::models::init::batch_norm(&vs.root(), 3, 0.1, 1.0)
        };
        (vs, bn)
    };
    let (_g4, ghost) = build(4);
    let (_p1, first) = build(0);
    let (_p2, second) = build(0);
    let y = x.apply_t(&ghost, true);
    let want = Tensor::cat(
        &[
            x.narrow(0, 0, 4).apply_t(&first, true),
            x.narrow(0, 4, 4).apply_t(&second, true),
        ],
        0,
    );
    assert!(y.allclose(&want, 1e-6, 1e-6, false), "ghost output differs");
    let whole = x.apply_t(&build(0).1, true);
    assert!(
        !y.allclose(&whole, 1e-3, 1e-3, false),
        "the parts were not normalised apart"
    );
    for (g, f) in [
        (&ghost.inner.running_mean, &first.inner.running_mean),
        (&ghost.inner.running_var, &first.inner.running_var),
    ] {
        assert!(
            g.allclose(f, 1e-7, 1e-7, false),
            "running statistics: {g} vs {f}"
        );
    }
    // Evaluation reads the running statistics, whatever the ghost batch.
    let e = x.apply_t(&ghost, false);
    assert!(e.allclose(&x.apply_t(&first, false), 1e-6, 1e-6, false));
}

/// (x − mean) / sqrt(var + ε) (biased batch variance, γ = 1, β = 0).
#[test]
fn bn_eps_is_the_batch_norms_epsilon() {
    let _g = rng_lock();
    let x = Tensor::from_slice(&[1.0f32, 3.0]).view([2, 1, 1, 1]);
    for eps in [1e-5, 1e-4, 0.5] {
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = {
            let _e = lrlab::models::init::BnBuild::set(eps, 0);
            lrlab::models::init::batch_norm(&vs.root(), 1, 0.1, 1.0)
        };
        let y = x.apply_t(&bn, true);
        let want = 1.0 / (1.0f64 + eps).sqrt(); // mean 2, variance 1
        assert!(
            (y.double_value(&[1, 0, 0, 0]) - want).abs() < 1e-6,
            "eps {eps}: {y}"
        );
    }
    // Through the config: a network built with bn_eps = 0.5 computes something else than
    // with the default, from the same weights.
    let out = |eps: f64| {
        let vs = nn::VarStore::new(Device::Cpu);
        tch::manual_seed(0);
        let mut c = cfg("resnet8");
        c.bn_eps = eps;
        let m = build(&vs.root(), &c, 3, 10, 32).unwrap();
        tch::manual_seed(1);
        let x = Tensor::randn([4, 3, 32, 32], (tch::Kind::Float, Device::Cpu));
        m.net.forward_t(&x, true)
    };
    let (a, b) = (out(1e-5), out(0.5));
    assert!(f64::try_from((a - b).abs().max()).unwrap() > 1e-3);
}

/// Dropout over the parts of a batch (the ranks of a multi-process run, each seeded alike
/// for the step) equals libtorch's dropout of the whole batch, row for row, in both layouts:
/// each part keeps its rows of the whole batch's mask. Before, every rank drew its own mask
/// from the same seed, so the masks repeated across the ranks' shares.
#[test]
fn dropout_over_the_parts_of_a_batch_is_the_whole_batchs() {
    use lrlab::models::init::{dropout, BatchPart};
    let _g = rng_lock();
    tch::manual_seed(5);
    let whole = Tensor::randn([6, 3, 4, 4], (Kind::Float, Device::Cpu));
    for layout in [whole.shallow_clone(), channels_last(&whole)] {
        tch::manual_seed(11);
        let want = layout.dropout(0.3, true);
        for (first, n) in [(0, 3), (3, 3), (2, 2)] {
            tch::manual_seed(11);
            let part = layout.narrow(0, first, n).contiguous();
            let part = if layout.is_contiguous() {
                part
            } else {
                channels_last(&part)
            };
            let got = {
                let _p = BatchPart::set((first as usize, 6));
                dropout(&part, 0.3, true)
            };
            assert_eq!(
                f64::try_from((got - want.narrow(0, first, n)).abs().max()).unwrap(),
                0.0,
                "rows {first}..{}",
                first + n
            );
        }
        // The whole batch, and evaluation, are libtorch's own dropout.
        tch::manual_seed(11);
        let all = {
            let _p = BatchPart::set((0, 6));
            dropout(&layout, 0.3, true)
        };
        assert!(all.equal(&want));
        assert!(dropout(&layout, 0.3, false).equal(&layout));
    }
}

/// `lrlab models --params ARCH`: every trainable parameter with its shape and size, in name
/// order, summing to the model's count; the names `[[optim.group]]` patterns select.
#[test]
fn cli_lists_a_models_parameters() {
    let text = models_stdout(&["--params", "resnet20", "--dataset", "cifar10"]);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("name,shape,numel"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let names: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert!(
        rows.contains(&vec!["conv1.weight", "16x3x3x3", "432"]),
        "{text}"
    );
    assert!(rows.contains(&vec!["linear.bias", "10", "10"]), "{text}");
    let total: i64 = rows.iter().map(|r| r[2].parse::<i64>().unwrap()).sum();
    assert_eq!(total, 269_722);
    assert_eq!(
        lrlab_models(&["--params", "resnet21"]).status.code(),
        Some(2)
    );
}

// ---------- the super-convergence authors' Caffe ResNet ----------

/// `resnet56_caffe` against a hand count from `Resnet56Cifar.prototxt`: conv 3→16 with bias
/// (432 + 16) and its Scale (32); stage 1: 18 convs 16→16 (2304 + 16 + 32 each); stage 2: the
/// first block's two convs keep 16 channels (2 × 2352), then 16 convs 32→32 (9216 + 32 + 64);
/// stage 3: two convs 32→32 (2 × 9312), then 16 convs 64→64 (36864 + 64 + 128); FC_final
/// 64·10 + 10.
#[test]
fn the_caffe_resnet56_has_the_prototxts_parameters() {
    let hand = 448 + 32 + 18 * 2352 + (2 * 2352 + 16 * 9312) + (2 * 9312 + 16 * 37056) + 650;
    assert_eq!(hand, 808_682);
    let (vs, _) = build_arch("resnet56_caffe", 3, 10, 32);
    assert_eq!(count_params(&vs), hand);
    let shapes: HashMap<String, Vec<i64>> = vs
        .variables()
        .into_iter()
        .map(|(n, t)| (n, t.size()))
        .collect();
    // The first block of stages 2 and 3 keeps its input width; conv biases everywhere.
    assert_eq!(shapes["layer2.0.conv1.weight"], [16, 16, 3, 3]);
    assert_eq!(shapes["layer2.0.conv2.weight"], [16, 16, 3, 3]);
    assert_eq!(shapes["layer2.1.conv1.weight"], [32, 32, 3, 3]);
    assert_eq!(shapes["layer3.0.conv1.weight"], [32, 32, 3, 3]);
    assert_eq!(shapes["layer3.8.conv2.bias"], [64]);
    assert_eq!(shapes["linear.weight"], [10, 64]);
    // msra convolutions, zero biases, a Xavier classifier (U(±√(3/64))).
    let w = &vs.variables()["linear.weight"];
    let bound = (3.0f64 / 64.0).sqrt();
    assert!(w.abs().max().double_value(&[]) <= bound);
    assert!(w.abs().max().double_value(&[]) > 0.9 * bound);
    assert_eq!(
        vs.variables()["layer1.3.conv1.bias"]
            .abs()
            .sum(Kind::Float)
            .double_value(&[]),
        0.0
    );
    let c = &vs.variables()["layer3.2.conv1.weight"];
    let std = c.std(true).double_value(&[]);
    assert!(
        (std - (2.0f64 / (64.0 * 9.0)).sqrt()).abs() < 0.05 * std,
        "{std}"
    );
    // ResNet-20 and -110 of the same family: 3 and 18 blocks a stage.
    let per_stage = |n: i64| {
        448 + 32
            + 2 * n * 2352
            + (2 * 2352 + (2 * n - 2) * 9312)
            + (2 * 9312 + (2 * n - 2) * 37056)
            + 650
    };
    assert_eq!(
        params("resnet20_caffe", Shortcut::A, 3, 10, 32),
        per_stage(3)
    );
    assert_eq!(
        params("resnet110_caffe", Shortcut::A, 3, 10, 32),
        per_stage(18)
    );
}

/// Caffe's AVE pooling (`PoolingLayer::Forward_cpu`, no padding): output size rounded up, each
/// window averaged over the pixels inside the image.
fn caffe_ave_pool(x: &[Vec<f64>], k: usize, s: usize) -> Vec<Vec<f64>> {
    let h = x.len();
    let out = (h - k).div_ceil(s) + 1;
    (0..out)
        .map(|i| {
            (0..out)
                .map(|j| {
                    let (h0, w0) = (i * s, j * s);
                    let (h1, w1) = ((h0 + k).min(h), (w0 + k).min(h));
                    let mut sum = 0.0;
                    for r in &x[h0..h1] {
                        sum += r[w0..w1].iter().sum::<f64>();
                    }
                    sum / ((h1 - h0) * (w1 - w0)) as f64
                })
                .collect()
        })
        .collect()
}

/// With every residual branch silenced (its convolutions zero: batch norm in evaluation then
/// gives 0), the network is its shortcuts: the stem's ReLU output pooled 3/2 twice the
/// Caffe way (32 → 16 → 8, border windows over fewer pixels), the zero channels appended,
/// averaged and classified. Equal to that computed by hand.
#[test]
fn the_caffe_resnets_shortcuts_pool_as_caffe() {
    let (vs, model) = build_arch("resnet20_caffe", 1, 3, 32);
    let x = randn(&[1, 1, 32, 32]);
    tch::no_grad(|| {
        for (name, mut v) in vs.variables() {
            if name.starts_with("layer") && name.contains(".conv") {
                let _ = v.zero_();
            }
        }
        // The stem passes the image to channel 0 (centre tap 1, bias 0).
        let mut stem = vs.variables()["conv1.weight"].shallow_clone();
        let _ = stem.zero_();
        let _ = stem.get(0).get(0).get(1).get(1).fill_(1.0);
    });
    let logits = tch::no_grad(|| model.forward_t(&x, false));
    let img: Vec<Vec<f64>> = (0..32)
        .map(|r| Vec::<f64>::try_from(x.get(0).get(0).get(r).to_kind(Kind::Double)).unwrap())
        .collect();
    // Batch norm in evaluation: x / √(1 + ε), then ReLU.
    let scale = 1.0 / (1.0f64 + 1e-5).sqrt();
    let stem: Vec<Vec<f64>> = img
        .iter()
        .map(|r| r.iter().map(|v| (v * scale).max(0.0)).collect())
        .collect();
    let pooled = caffe_ave_pool(&caffe_ave_pool(&stem, 3, 2), 3, 2);
    assert_eq!(pooled.len(), 8);
    let mean = pooled.iter().flatten().sum::<f64>() / 64.0;
    // Only channel 0 of the 64 is non-zero: logits = W[:, 0]·mean + b.
    let w = vs.variables()["linear.weight"].to_kind(Kind::Double);
    let b = vs.variables()["linear.bias"].to_kind(Kind::Double);
    for c in 0..3 {
        let want = w.double_value(&[c, 0]) * mean + b.double_value(&[c]);
        let got = logits.double_value(&[0, c]);
        assert!((got - want).abs() < 1e-5, "class {c}: {got} vs {want}");
    }
}
