//! The curvature along the gradient, gᵀg / gᵀHg with Hg by double backward, against PyTorch's
//! `torch.autograd.grad(..., create_graph=True)` on a small float64 network with batch norm in
//! training mode (`tests/golden/curvature.json`, written by `scripts/golden_curvature.py`):
//! the totals and every layer's terms agree to 1e-6 relative.

use lrlab::train::hf_lr::{curvature, layer_of};
use std::collections::HashMap;
use tch::nn::{self, ModuleT};
use tch::{Kind, Reduction, Tensor};

/// Values `scale·sin(0.37·k + phase) + offset` of flat index k, in `shape` (the script's).
fn filled(shape: &[i64], scale: f64, phase: f64, offset: f64) -> Tensor {
    let n: i64 = shape.iter().product();
    ((Tensor::arange(n, (Kind::Double, tch::Device::Cpu)) * 0.37 + phase).sin() * scale + offset)
        .reshape(shape)
}

#[test]
fn curvature_matches_pytorch_double_backward_per_layer() {
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/curvature.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut vs = nn::VarStore::new(tch::Device::Cpu);
    let root = vs.root();
    let conv = nn::conv2d(&root / "conv1", 1, 2, 3, Default::default());
    let bn = nn::batch_norm2d(&root / "bn1", 2, Default::default());
    let fc = nn::linear(&root / "fc", 32, 3, Default::default());
    vs.double();
    let values: HashMap<&str, Tensor> = HashMap::from([
        ("conv1.weight", filled(&[2, 1, 3, 3], 0.5, 1.0, 0.0)),
        ("conv1.bias", filled(&[2], 0.1, 2.0, 0.0)),
        ("bn1.weight", filled(&[2], 0.2, 3.0, 1.0)),
        ("bn1.bias", filled(&[2], 0.1, 4.0, 0.0)),
        ("fc.weight", filled(&[3, 32], 0.3, 5.0, 0.0)),
        ("fc.bias", filled(&[3], 0.05, 6.0, 0.0)),
    ]);
    let vars = vs.variables();
    tch::no_grad(|| {
        for (name, v) in &values {
            vars[*name].shallow_clone().copy_(v);
        }
    });
    // The script's images: sin(0.23·k + 0.5) + 0.3·cos(1.7·k).
    let k = Tensor::arange(4 * 36, (Kind::Double, tch::Device::Cpu));
    let x = ((&k * 0.23 + 0.5).sin() + (&k * 1.7).cos() * 0.3).reshape([4, 1, 6, 6]);
    let y = Tensor::from_slice(&[0i64, 2, 1, 2]);
    let h = bn.forward_t(&x.apply(&conv), true).tanh().flatten(1, -1);
    let loss = h
        .apply(&fc)
        .cross_entropy_loss::<Tensor>(&y, None, Reduction::Mean, -100, 0.1);
    let close = |a: f64, b: &serde_json::Value, what: &str| {
        let b = b.as_f64().unwrap();
        assert!(
            (a - b).abs() <= 1e-6 * b.abs(),
            "{what}: {a} here, {b} in PyTorch"
        );
    };
    close(loss.double_value(&[]), &golden["loss"], "loss");

    // Parameters in the trainer's order (by name), BN running statistics left out.
    let mut params: Vec<(String, Tensor)> = vars
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(params.len(), 6);
    let (total, layers) = curvature(&loss, &params);
    close(total.gg, &golden["gg"], "gᵀg");
    close(total.ghg, &golden["ghg"], "gᵀHg");
    close(total.lr(), &golden["curvature_lr"], "gᵀg / gᵀHg");
    assert_eq!(
        layers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["bn1", "conv1", "fc"]
    );
    for (name, t) in &layers {
        close(t.gg, &golden["layers"][name]["gg"], &format!("{name} gᵀg"));
        close(
            t.ghg,
            &golden["layers"][name]["ghg"],
            &format!("{name} gᵀHg"),
        );
    }
    // Nothing was accumulated into the parameters' gradients.
    for (name, p) in &params {
        assert!(
            !p.grad().defined(),
            "{name} has a .grad after the curvature"
        );
    }
    assert_eq!(layer_of("layer1.0.conv1.weight"), "layer1.0.conv1");
}
