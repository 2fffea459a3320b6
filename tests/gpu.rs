//! The CUDA paths, checked on a GPU: the loader's batches, a training step, bf16 autocast,
//! channels-last convolutions and checkpoints on the device, each against the CPU or fp32
//! reference. Without a CUDA device every test says so on stderr and passes: these run in
//! `make test` everywhere, and for real on a GPU machine (`make gpu-bundle` carries this
//! binary; `dist/gpu-check/run.sh` runs it there).
//!
//! Tolerances: cuDNN computes convolutions in TF32 by default (10-bit mantissa, as PyTorch),
//! and bf16 keeps 8 bits; the bounds below are several times the error those formats give on
//! these small networks, and far below what a wrong layout, a missing autocast or a lost
//! update would give (differences of order 1).

use lrlab::config::RunConfig;
use lrlab::data::Batch;
use lrlab::train::checkpoint;
use lrlab::train::optim::Optimizer;
use lrlab::train::setup::Setup;
use lrlab::train::step::{build_model, Input, Stepper};
use tch::{Device, Kind, Tensor};

/// The first CUDA device, or None (after saying the test is skipped).
fn cuda(test: &str) -> Option<Device> {
    if tch::Cuda::is_available() {
        Some(Device::Cuda(0))
    } else {
        eprintln!("{test}: no CUDA device, skipped");
        None
    }
}

/// A run on synthetic CIFAR-shaped data with resnet20 (batch norm, shortcuts) on `device`.
fn config(device: &str, precision: &str) -> RunConfig {
    let text = format!(
        r#"
[data]
dataset = "synthetic"
shape = [3, 32, 32]
size = 256
test_size = 64
[model]
arch = "resnet20"
[train]
epochs = 1
batch_size = 32
seed = 5
device = "{device}"
precision = "{precision}"
threads = 1
[schedule]
kind = "constant"
lr = 0.05
"#
    );
    RunConfig::from_table(text.parse().unwrap()).unwrap()
}

/// The first training batch of a config, as the loader delivers it.
fn first_batch(setup: &Setup) -> Batch {
    setup.data.train.epoch(0, 0).next().unwrap().unwrap()
}

/// ‖a − b‖ / ‖b‖, computed in f64 on the CPU.
fn rel(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_device(Device::Cpu).to_kind(Kind::Double);
    let b = b.to_device(Device::Cpu).to_kind(Kind::Double);
    (a - &b).norm().double_value(&[]) / b.norm().double_value(&[])
}

#[test]
fn the_loader_delivers_batches_on_the_device_in_channels_last() {
    let Some(dev) = cuda("loader") else { return };
    let cpu = Setup::new(&config("cpu", "fp32")).unwrap();
    let gpu = Setup::new(&config("cuda", "fp32")).unwrap();
    assert_eq!(gpu.device, dev);
    let (a, b) = (first_batch(&cpu), first_batch(&gpu));
    assert_eq!(b.images.device(), dev);
    assert_eq!(b.labels.device(), dev);
    let (_, c, h, w) = b.images.size4().unwrap();
    assert_eq!(
        b.images.stride(),
        [c * h * w, 1, w * c, c],
        "not channels-last"
    );
    // The same images and labels: only the device differs.
    assert!(a.images.equal(&b.images.to_device(Device::Cpu)));
    assert!(a.labels.equal(&b.labels.to_device(Device::Cpu)));
}

#[test]
fn training_steps_on_cuda_follow_the_cpu_ones() {
    let Some(dev) = cuda("training") else { return };
    let (ccfg, gcfg) = (config("cpu", "fp32"), config("cuda", "fp32"));
    let (cs, gs) = (Setup::new(&ccfg).unwrap(), Setup::new(&gcfg).unwrap());
    assert!(!gs.bf16, "precision = \"fp32\" trains in fp32 on CUDA");
    let mut c = Stepper::new(&ccfg, &cs, None).unwrap();
    let mut g = Stepper::new(&gcfg, &gs, None).unwrap();
    // CUDA draws other initial weights (another generator): start both from the CPU's.
    g.vs.copy(&c.vs).unwrap();
    let batches: Vec<_> = cs
        .data
        .train
        .epoch(0, 0)
        .take(4)
        .map(|b| b.unwrap())
        .collect();
    for (k, b) in batches.iter().enumerate() {
        let gb = Batch {
            images: b.images.to_device(dev),
            labels: b.labels.to_device(dev),
            index: b.index,
            part: b.part,
        };
        let (cl, _) = c.step(b, k as u64, 0.05, 0.9).unwrap();
        let (gl, _) = g.step(&gb, k as u64, 0.05, 0.9).unwrap();
        let (cl, gl) = (cl.double_value(&[]), gl.double_value(&[]));
        assert!(
            (cl - gl).abs() <= 1e-2 * cl.abs(),
            "step {k}: loss {cl} on the CPU, {gl} on CUDA"
        );
    }
    // The optimizer's state lives on the device, and the weights moved as on the CPU.
    for (name, t) in g.optim.state() {
        assert_eq!(t.device(), dev, "optimizer state {name} is not on the GPU");
    }
    let cvars = c.vs.variables();
    for (name, g) in g.vs.variables() {
        let c = &cvars[&name];
        if c.norm().double_value(&[]) > 0.0 {
            assert!(
                rel(&g, c) < 1e-2,
                "{name}: {} apart after 4 steps",
                rel(&g, c)
            );
        }
    }
}

#[test]
fn bf16_autocast_computes_in_bf16_close_to_fp32() {
    let Some(_) = cuda("bf16") else { return };
    let cfg = config("cuda", "auto");
    let setup = Setup::new(&cfg).unwrap();
    assert!(
        setup.bf16,
        "precision = \"auto\" means bf16 autocast on CUDA"
    );
    lrlab::train::device::set_autocast_bf16().unwrap();
    let (_vs, model) = build_model(&cfg, Input::of(&setup.data), setup.device).unwrap();
    let b = first_batch(&setup);
    let fp32 = tch::no_grad(|| model.net.forward_t(&b.images, false));
    let bf16 = tch::no_grad(|| tch::autocast(true, || model.net.forward_t(&b.images, false)));
    assert_eq!(fp32.kind(), Kind::Float);
    assert_eq!(
        bf16.kind(),
        Kind::BFloat16,
        "the forward pass ran outside autocast"
    );
    let d = rel(&bf16, &fp32);
    assert!(
        d < 5e-2 && d > 0.0,
        "bf16 logits {d} apart from fp32 (relative norm)"
    );
}

#[test]
fn channels_last_and_contiguous_convolutions_agree_on_cuda() {
    let Some(_) = cuda("channels-last") else {
        return;
    };
    let cfg = config("cuda", "fp32");
    let setup = Setup::new(&cfg).unwrap();
    let (vs, model) = build_model(&cfg, Input::of(&setup.data), setup.device).unwrap();
    let b = first_batch(&setup);
    let nhwc = tch::no_grad(|| model.net.forward_t(&b.images, false));
    // The same weights and images in the default (NCHW) layout.
    let (mut plain, plain_model) = {
        let vs2 = tch::nn::VarStore::new(setup.device);
        let m = lrlab::models::build(&vs2.root(), &cfg.model, 3, 10, 32).unwrap();
        (vs2, m)
    };
    plain.copy(&vs).unwrap();
    for (name, v) in plain.variables() {
        assert!(
            v.dim() < 4 || v.is_contiguous(),
            "{name} should be NCHW in the plain copy"
        );
    }
    let nchw = tch::no_grad(|| plain_model.net.forward_t(&b.images.contiguous(), false));
    let d = rel(&nhwc, &nchw);
    assert!(d < 1e-2, "channels-last and NCHW logits {d} apart");
}

#[test]
fn a_checkpoint_written_on_cuda_restores_the_same_weights_and_state() {
    let Some(dev) = cuda("checkpoint") else {
        return;
    };
    let cfg = config("cuda", "auto");
    let setup = Setup::new(&cfg).unwrap();
    assert!(setup.bf16);
    let mut stepper = Stepper::new(&cfg, &setup, None).unwrap();
    for (k, b) in setup.data.train.epoch(0, 0).take(2).enumerate() {
        let _ = stepper.step(&b.unwrap(), k as u64, 0.05, 0.9).unwrap();
    }
    let (vs, opt) = (&stepper.vs, &stepper.optim);
    let dir = tempfile::tempdir().unwrap();
    let progress = checkpoint::Progress::default();
    checkpoint::save(dir.path(), vs, &opt.state(), &progress).unwrap();
    let loaded = checkpoint::load(dir.path()).unwrap().unwrap();
    let (vs2, _) = build_model(&cfg, Input::of(&setup.data), setup.device).unwrap();
    checkpoint::restore_weights(&vs2, &loaded.tensors).unwrap();
    let mut opt2 = Optimizer::new(&vs2, &cfg.optim).unwrap();
    opt2.load_state(&loaded.tensors, 2).unwrap();
    let before = vs.variables();
    for (name, v) in vs2.variables() {
        assert_eq!(v.device(), dev);
        assert!(
            v.equal(&before[&name]),
            "{name} changed through the checkpoint"
        );
    }
    let state: std::collections::BTreeMap<_, _> = opt.state().into_iter().collect();
    for (name, t) in opt2.state() {
        assert_eq!(
            t.device(),
            dev,
            "restored optimizer state {name} is not on the GPU"
        );
        assert!(t.equal(&state[&name]), "optimizer state {name} changed");
    }
}
