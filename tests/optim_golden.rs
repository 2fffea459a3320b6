//! lrlab's optimizer against torch.optim.SGD / AdamW (and the Caffe momentum formula) on a
//! tiny float64 model whose learning rate and momentum change every step. References come
//! from `scripts/golden_optim.py` (PyTorch 2.13) in `tests/golden/optim.json`.

use lrlab::config::{MomentumConvention, OptimConfig, OptimKind, ParamGroup, WdScope};
use lrlab::train::optim::Optimizer;
use std::collections::BTreeMap;
use tch::{nn::VarStore, Device, Kind, Tensor};

fn golden() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/optim.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn vec_f64(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn tensor(v: &serde_json::Value, shape: &[i64]) -> Tensor {
    Tensor::from_slice(&vec_f64(v))
        .view(shape)
        .to_kind(Kind::Double)
}

/// A float64 VarStore holding `w` and `b` with the given values.
fn model(w0: &Tensor, b0: &Tensor) -> (VarStore, Tensor, Tensor) {
    let mut vs = VarStore::new(Device::Cpu);
    // A linear layer's names: `fc.bias` is a bias (Caffe's multipliers apply to it).
    let fc = vs.root() / "fc";
    let mut w = fc.zeros("weight", &w0.size());
    let mut b = fc.zeros("bias", &b0.size());
    vs.double();
    tch::no_grad(|| {
        w.copy_(w0);
        b.copy_(b0);
    });
    (vs, w, b)
}

/// Train the tiny model with `cfg` and return (w, b, losses).
fn train(g: &serde_json::Value, cfg: &OptimConfig) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (vs, w, b) = model(&tensor(&g["w0"], &[3, 4]), &tensor(&g["b0"], &[3]));
    let mut opt = Optimizer::new(&vs, cfg).unwrap();
    let steps = g["steps"].as_u64().unwrap() as usize;
    let mut losses = Vec::new();
    for k in 0..steps {
        let x = tensor(&g["batches"][k][0], &[5, 4]);
        let t = tensor(&g["batches"][k][1], &[5, 3]);
        let loss = (x.matmul(&w.tr()) + &b - t).square().mean(Kind::Double);
        opt.zero_grad();
        loss.backward();
        opt.step(
            g["lr"][k].as_f64().unwrap(),
            g["momentum"][k].as_f64().unwrap(),
        );
        losses.push(f64::try_from(&loss).unwrap());
    }
    let w: Vec<f64> = Vec::try_from(w.detach().flatten(0, -1)).unwrap();
    let b: Vec<f64> = Vec::try_from(b.detach()).unwrap();
    (w, b, losses)
}

fn assert_close(name: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        let err = (a - b).abs() / b.abs().max(1.0);
        assert!(
            err <= tol,
            "{name}[{i}]: lrlab {a} vs reference {b} (rel err {err:e})"
        );
    }
}

fn check(case: &str, cfg: OptimConfig) {
    let g = golden();
    let (w, b, losses) = train(&g, &cfg);
    let want = &g["cases"][case];
    assert_close(&format!("{case} w"), &w, &vec_f64(&want["w"]), 1e-12);
    assert_close(&format!("{case} b"), &b, &vec_f64(&want["b"]), 1e-12);
    assert_close(
        &format!("{case} loss"),
        &losses,
        &vec_f64(&want["losses"]),
        1e-12,
    );
}

fn sgd() -> OptimConfig {
    OptimConfig {
        kind: OptimKind::Sgd,
        weight_decay: 1e-2,
        wd_scope: WdScope::Weights,
        ..OptimConfig::default()
    }
}

#[test]
fn sgd_matches_pytorch() {
    check("sgd_pytorch", sgd());
}

#[test]
fn nesterov_matches_pytorch() {
    check(
        "sgd_pytorch_nesterov",
        OptimConfig {
            nesterov: true,
            ..sgd()
        },
    );
}

#[test]
fn dampening_matches_pytorch() {
    check(
        "sgd_pytorch_dampening",
        OptimConfig {
            dampening: 0.3,
            ..sgd()
        },
    );
}

#[test]
fn adamw_matches_pytorch() {
    check(
        "adamw",
        OptimConfig {
            kind: OptimKind::Adamw,
            ..sgd()
        },
    );
}

#[test]
fn caffe_convention_matches_its_formula() {
    check(
        "sgd_caffe",
        OptimConfig {
            momentum_convention: MomentumConvention::Caffe,
            ..sgd()
        },
    );
    check(
        "sgd_caffe_nesterov",
        OptimConfig {
            momentum_convention: MomentumConvention::Caffe,
            nesterov: true,
            ..sgd()
        },
    );
}

#[test]
fn bias_multipliers_match_param_groups_and_caffe() {
    // PyTorch param groups: the bias at twice the LR and half the weight decay.
    check(
        "sgd_pytorch_bias_mult",
        OptimConfig {
            wd_scope: WdScope::All,
            bias_lr_mult: 2.0,
            bias_decay_mult: 0.5,
            ..sgd()
        },
    );
    // Caffe's prototxt setting (lr_mult 2, decay_mult 0 on biases), every blob decayed.
    let caffe = OptimConfig {
        momentum_convention: MomentumConvention::Caffe,
        wd_scope: WdScope::All,
        bias_lr_mult: 2.0,
        bias_decay_mult: 0.0,
        ..sgd()
    };
    check("sgd_caffe_bias_mult", caffe.clone());
    let (vs, _, _) = model(
        &Tensor::zeros([3, 4], (Kind::Double, Device::Cpu)),
        &Tensor::zeros([3], (Kind::Double, Device::Cpu)),
    );
    assert_eq!(
        Optimizer::new(&vs, &caffe).unwrap().decayed(),
        ["fc.weight"]
    );
    // Without multipliers the old cases hold (checked above); a BN-like rank-1 weight's
    // shift is not a bias.
    let mut bn = VarStore::new(Device::Cpu);
    let _g = (bn.root() / "bn").ones("weight", &[3]);
    let _b = (bn.root() / "bn").zeros("bias", &[3]);
    bn.double();
    assert_eq!(
        Optimizer::new(&bn, &caffe).unwrap().decayed(),
        ["bn.bias", "bn.weight"]
    );
}

fn group(params: &str, lr_mult: f64, decay_mult: f64) -> ParamGroup {
    ParamGroup {
        params: params.into(),
        lr_mult,
        decay_mult,
    }
}

/// `[[optim.group]]` equals `torch.optim.SGD` / `AdamW` with one param group per parameter at
/// the multiplied LR and decay, and Caffe's local rates (CLR's ip1 `decay_mult: 250`).
#[test]
fn parameter_groups_match_torch_param_groups_and_caffe() {
    let groups = OptimConfig {
        wd_scope: WdScope::All,
        groups: vec![group("fc.w*", 0.5, 3.0), group("*.bias", 1.5, 0.2)],
        ..sgd()
    };
    check("sgd_pytorch_groups", groups.clone());
    check(
        "adamw_groups",
        OptimConfig {
            kind: OptimKind::Adamw,
            ..groups.clone()
        },
    );
    // A group wins over the bias shorthand; the shorthand holds for biases no group matches.
    let caffe = OptimConfig {
        momentum_convention: MomentumConvention::Caffe,
        weight_decay: 1e-3,
        wd_scope: WdScope::All,
        bias_lr_mult: 2.0,
        bias_decay_mult: 0.0,
        groups: vec![group("fc.weight", 1.0, 250.0)],
        ..sgd()
    };
    check("sgd_caffe_groups", caffe.clone());
    check(
        "sgd_caffe_groups",
        OptimConfig {
            bias_lr_mult: 7.0,
            groups: vec![group("fc.weight", 1.0, 250.0), group("fc.bias", 2.0, 0.0)],
            ..caffe
        },
    );
    // The first matching group wins.
    let first = OptimConfig {
        groups: vec![group("fc.weight", 1.0, 0.0), group("fc.*", 1.0, 1.0)],
        ..sgd()
    };
    let (vs, _, _) = model(
        &Tensor::zeros([3, 4], (Kind::Double, Device::Cpu)),
        &Tensor::zeros([3], (Kind::Double, Device::Cpu)),
    );
    assert!(Optimizer::new(&vs, &first).unwrap().decayed().is_empty());
}

#[test]
fn a_group_that_selects_nothing_or_a_bad_pattern_is_named() {
    let (vs, _, _) = model(
        &Tensor::zeros([3, 4], (Kind::Double, Device::Cpu)),
        &Tensor::zeros([3], (Kind::Double, Device::Cpu)),
    );
    for (g, want) in [
        (
            group("linear.*", 1.0, 1.0),
            "optim.group[0].params = \"linear.*\": matches no parameter of the model (its names \
             look like fc.bias, fc.weight, ...",
        ),
        (
            group("fc.[", 1.0, 1.0),
            "optim.group[0].params = \"fc.[\": not a valid pattern",
        ),
        (
            group("fc.*", -1.0, 1.0),
            "optim.group[0].lr_mult = -1: must be a finite number >= 0",
        ),
    ] {
        let cfg = OptimConfig {
            groups: vec![g],
            ..sgd()
        };
        let err = Optimizer::new(&vs, &cfg)
            .err()
            .expect("an error")
            .to_string();
        assert!(err.contains(want), "{err}");
    }
}

#[test]
fn saved_state_resumes_exactly() {
    // Train 12 steps straight, or 5 steps, save the state, rebuild everything, 7 more.
    let g = golden();
    let cfg = sgd();
    let (w_full, b_full, _) = train(&g, &cfg);

    let (vs, w, b) = model(&tensor(&g["w0"], &[3, 4]), &tensor(&g["b0"], &[3]));
    let mut opt = Optimizer::new(&vs, &cfg).unwrap();
    let step = |opt: &mut Optimizer, w: &Tensor, b: &Tensor, k: usize| {
        let x = tensor(&g["batches"][k][0], &[5, 4]);
        let t = tensor(&g["batches"][k][1], &[5, 3]);
        let loss = (x.matmul(&w.tr()) + b - t).square().mean(Kind::Double);
        opt.zero_grad();
        loss.backward();
        opt.step(
            g["lr"][k].as_f64().unwrap(),
            g["momentum"][k].as_f64().unwrap(),
        );
    };
    for k in 0..5 {
        step(&mut opt, &w, &b, k);
    }
    let mut saved: BTreeMap<String, Tensor> = opt
        .state()
        .into_iter()
        .map(|(k, v)| (k, v.copy()))
        .collect();
    saved.insert("w".into(), w.detach().copy());
    saved.insert("b".into(), b.detach().copy());
    let steps = opt.steps;
    drop(opt);

    let (vs2, w2, b2) = model(&saved["w"], &saved["b"]);
    let mut opt2 = Optimizer::new(&vs2, &cfg).unwrap();
    opt2.load_state(&saved, steps).unwrap();
    for k in 5..12 {
        step(&mut opt2, &w2, &b2, k);
    }
    let w2: Vec<f64> = Vec::try_from(w2.detach().flatten(0, -1)).unwrap();
    let b2: Vec<f64> = Vec::try_from(b2.detach()).unwrap();
    assert_eq!(
        w2, w_full,
        "weights after resume differ from an uninterrupted run"
    );
    assert_eq!(b2, b_full);
}

#[test]
fn bad_values_are_named() {
    let e = OptimConfig {
        momentum: 1.5,
        ..sgd()
    }
    .validate()
    .unwrap_err();
    assert!(e.to_string().contains("optim.momentum = 1.5"), "{e}");
    assert!(lrlab::is_input_error(&e));
    let e = OptimConfig {
        nesterov: true,
        dampening: 0.1,
        ..sgd()
    }
    .validate()
    .unwrap_err();
    assert!(e.to_string().contains("optim.nesterov"), "{e}");
}

/// Which parameters each weight-decay scope decays, on a WRN (convs, BN, a linear layer):
/// `weights` the convolution and linear weights; `weights_and_gamma` those and every BN γ
/// (Lasagne's regularizable parameters, as SGDR's code decays them); `all` everything.
#[test]
fn weight_decay_scopes_pick_their_parameters() {
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let cfg = lrlab::models::ModelConfig {
        arch: "wrn_10_1".into(),
        ..Default::default()
    };
    lrlab::models::build(&vs.root(), &cfg, 3, 10, 32).unwrap();
    let vars = vs.trainable_variables().len();
    let named = vs.variables();
    let decayed = |scope: WdScope| -> Vec<String> {
        let oc = OptimConfig {
            wd_scope: scope,
            ..OptimConfig::default()
        };
        let o = lrlab::train::optim::Optimizer::new(&vs, &oc).unwrap();
        o.decayed().into_iter().map(String::from).collect()
    };
    let weights = decayed(WdScope::Weights);
    let with_gamma = decayed(WdScope::WeightsAndGamma);
    assert!(weights.iter().all(|n| named[n].dim() >= 2));
    let gammas: Vec<&String> = with_gamma.iter().filter(|n| !weights.contains(n)).collect();
    // Every BN layer (it has running statistics) adds exactly its γ.
    let bn_layers: Vec<String> = named
        .keys()
        .filter_map(|k| k.strip_suffix(".running_mean").map(String::from))
        .collect();
    assert!(!bn_layers.is_empty());
    assert_eq!(gammas.len(), bn_layers.len());
    for g in gammas {
        let layer = g.strip_suffix(".weight").unwrap();
        assert!(bn_layers.iter().any(|b| b == layer), "{g}");
    }
    assert_eq!(decayed(WdScope::All).len(), vars);
    assert!(with_gamma.iter().all(|n| !n.ends_with(".bias")));
}
