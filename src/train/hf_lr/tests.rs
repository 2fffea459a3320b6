//! The Hessian-free estimate's sums, windows and state, against closed forms.

use super::*;

fn t(v: &[f64]) -> Tensor {
    Tensor::from_slice(v)
}

/// Gradient descent θ ← θ − ε·h·θ on f(θ) = h·θ²/2.
fn gd(theta: &[f64], h: &[f64], lr: f64) -> Vec<f64> {
    theta.iter().zip(h).map(|(x, h)| x - lr * h * x).collect()
}

#[test]
fn on_a_one_dimensional_quadratic_it_is_one_over_the_curvature() {
    for (h, lr, x0) in [(2.0, 0.1, 3.0), (0.5, 0.3, -1.5), (10.0, 0.01, 0.25)] {
        let x1 = gd(&[x0], &[h], lr);
        let x2 = gd(&x1, &[h], lr);
        let est = finite_difference_lr(&[t(&[x0])], &[t(&x1)], &[t(&x2)], lr);
        assert!((est - 1.0 / h).abs() < 1e-12 / h, "h {h}: {est}");
    }
}

#[test]
fn on_a_diagonal_quadratic_it_is_the_hand_computed_ratio() {
    // Two parameters, curvatures 1, 4 and 9: per element the first difference is
    // ε·h·|x| and the second ε²·h²·|x|, so the estimate is Σ h|x| / (ε Σ h²|x|) · ε.
    let (h, lr) = ([1.0, 4.0, 9.0], 0.05);
    let x0 = [1.0, -2.0, 0.5];
    let x1 = gd(&x0, &h, lr);
    let x2 = gd(&x1, &h, lr);
    let num: f64 = h.iter().zip(&x0).map(|(h, x)| h * x.abs()).sum();
    let den: f64 = h.iter().zip(&x0).map(|(h, x)| h * h * x.abs()).sum();
    let est = finite_difference_lr(
        &[t(&x0[..1]), t(&x0[1..])],
        &[t(&x1[..1]), t(&x1[1..])],
        &[t(&x2[..1]), t(&x2[1..])],
        lr,
    );
    assert!((est - num / den).abs() < 1e-12, "{est} vs {}", num / den);
}

#[test]
fn on_a_quadratic_the_curvature_is_the_closed_form_ratio() {
    // f = Σ h·θ²/2 over two "layers": g = h·θ, Hg = h²·θ.
    let vs = VarStore::new(tch::Device::Cpu);
    let (ha, hb) = ([1.0, 4.0], [9.0]);
    let (xa, xb) = ([1.0, -2.0], [0.5]);
    let a = (vs.root() / "a").var_copy("weight", &t(&xa));
    let b = (vs.root() / "b").var_copy("weight", &t(&xb));
    let loss = ((&a * &a * t(&ha)).sum(Kind::Double) + (&b * &b * t(&hb)).sum(Kind::Double)) * 0.5;
    let params = vec![("a.weight".to_string(), a), ("b.weight".to_string(), b)];
    let (total, layers) = curvature(&loss, &params);
    let terms = |h: &[f64], x: &[f64]| {
        let gg: f64 = h.iter().zip(x).map(|(h, x)| (h * x).powi(2)).sum();
        let ghg: f64 = h.iter().zip(x).map(|(h, x)| h.powi(3) * x * x).sum();
        (gg, ghg)
    };
    let ((ga, hga), (gb, hgb)) = (terms(&ha, &xa), terms(&hb, &xb));
    assert!((total.gg - (ga + gb)).abs() < 1e-12);
    assert!((total.ghg - (hga + hgb)).abs() < 1e-10);
    assert!((total.lr() - (ga + gb) / (hga + hgb)).abs() < 1e-14);
    assert_eq!(layers.len(), 2);
    assert_eq!((layers[0].0.as_str(), layers[1].0.as_str()), ("a", "b"));
    assert!((layers[0].1.lr() - ga / hga).abs() < 1e-14);
    assert!(
        (layers[1].1.lr() - 1.0 / 9.0).abs() < 1e-14,
        "one element: 1/h"
    );
}

#[test]
fn the_moving_average_starts_at_a_tenth_and_weighs_new_values_by_a_tenth() {
    let mut e = Ema::default();
    assert_eq!(e.value, 0.1);
    assert!((e.update(2.0) - (0.1 * 2.0 + 0.9 * 0.1)).abs() < 1e-15);
    for _ in 0..500 {
        e.update(3.0);
    }
    assert!((e.value - 3.0).abs() < 1e-12);
}

/// A VarStore with one trainable vector, to train by gradient descent on
/// f(θ) = Σ h·θ²/2 (gradient h·θ, [`gd_step`]).
fn quadratic() -> (VarStore, Tensor) {
    let vs = VarStore::new(tch::Device::Cpu);
    let w = vs.root().var_copy("w", &t(&[1.0, -2.0, 0.5]));
    (vs, w)
}

fn gd_step(w: &mut Tensor, h: &Tensor, lr: f64) {
    let _g = tch::no_grad_guard();
    let g = &*w * h;
    let _ = w.f_sub_(&(g * lr)).unwrap();
}

#[test]
fn the_tracker_gives_the_estimate_of_each_window_and_only_those() {
    let hv = [1.0, 4.0, 9.0];
    let h = t(&hv);
    let lr = |s: u64| 0.05 + 0.001 * s as f64;
    let steps = 30u64;
    for (every, stride) in [(1, 1), (2, 1), (5, 1), (1, 3), (10, 10), (4, 3)] {
        let (vs, mut w) = quadratic();
        let mut tracker = Tracker::new(&vs, every, stride, false, 0.1);
        let mut iterates = vec![Vec::<f64>::try_from(&w).unwrap()];
        let mut got = Vec::new();
        for step in 0..steps {
            gd_step(&mut w, &h, lr(step));
            iterates.push(Vec::<f64>::try_from(&w).unwrap());
            got.extend(tracker.after_step(step, lr));
            // Copies are held only of iterates an open or future window needs.
            let held = tracker.state().len() as u64;
            let needed = (0..=step + 1)
                .filter(|&j| {
                    (0..3).any(|m| {
                        j.checked_sub(m * stride)
                            .is_some_and(|s| s > 0 && s % every == 0 && s + 2 * stride > step + 1)
                    })
                })
                .count() as u64;
            assert_eq!(held, needed, "every {every} stride {stride} step {step}");
        }
        // The authors' windows: i = every, 2·every, … while θ_{i+2k} exists.
        let windows: Vec<u64> = (1..=steps)
            .filter(|s| s % every == 0 && s + 2 * stride <= steps)
            .collect();
        assert_eq!(
            got.iter().map(|e| e.step).collect::<Vec<_>>(),
            windows,
            "every {every} stride {stride}"
        );
        let k = stride as usize;
        let mut ema = Ema::default();
        for e in &got {
            let s = e.step as usize;
            // The weights are f32, and so are their differences (as the authors'
            // numpy took them).
            let f = |i: usize| t(&iterates[i]).to_kind(Kind::Float);
            let want = finite_difference_lr(&[f(s)], &[f(s + k)], &[f(s + 2 * k)], lr(e.step));
            assert_eq!(e.lr, lr(e.step));
            assert!(
                (e.hf_lr - want).abs() < 1e-12 * want,
                "every {every} stride {stride} step {}: {} vs {want}",
                e.step,
                e.hf_lr
            );
            assert!((e.hf_lr_ema - ema.update(e.hf_lr)).abs() < 1e-15);
        }
    }
}

/// Stand-in curvature values, different for every window.
fn stand_in_curvature(step: u64) -> (Terms, Vec<(String, Terms)>) {
    let t = Terms {
        gg: step as f64 + 1.0,
        ghg: 2.0,
    };
    (t, vec![("w".to_string(), t)])
}

/// Train the quadratic for `steps` steps from `w`'s value, from step `from`, with `tr`.
fn track(tr: &mut Tracker, w: &mut Tensor, from: u64, steps: u64) -> Vec<Estimate> {
    let h = t(&[1.0, 4.0, 9.0]);
    let mut out = Vec::new();
    for step in from..steps {
        if tr.opens_window(step) {
            let (c, l) = stand_in_curvature(step);
            tr.set_curvature(step, c, &l);
        }
        gd_step(w, &h, 0.05);
        out.extend(tr.after_step(step, |_| 0.05));
    }
    out
}

#[test]
fn a_tracker_restored_mid_window_continues_as_the_original() {
    let steps = 14;
    for (every, stride) in [(1, 1), (1, 3), (2, 2)] {
        let (vs, mut w) = quadratic();
        let mut a = Tracker::new(&vs, every, stride, false, 0.1);
        let out_a = track(&mut a, &mut w, 0, steps);
        // Each window reports the curvature measured at its own first step.
        for e in &out_a {
            assert_eq!(e.curvature_lr, (e.step as f64 + 1.0) / 2.0);
            assert_eq!(e.layers.len(), 1);
            assert_eq!((e.layers[0].0, e.layers[0].1), (e.hf_lr, e.curvature_lr));
        }
        for stop in 1..steps {
            // A tracker checkpointed after `stop` steps, and a second one resumed from it.
            let (vs1, mut w1) = quadratic();
            let mut b = Tracker::new(&vs1, every, stride, false, 0.1);
            let first = track(&mut b, &mut w1, 0, stop);
            let state: BTreeMap<String, Tensor> =
                b.state().into_iter().map(|(k, v)| (k, v.copy())).collect();
            let (vs2, mut w2) = quadratic();
            tch::no_grad(|| w2.copy_(&w1));
            let mut c = Tracker::new(&vs2, every, stride, false, 0.1);
            c.load_state(&state, stop, b.ema.value, None).unwrap();
            let rest = track(&mut c, &mut w2, stop, steps);
            let joined: Vec<Estimate> = first.into_iter().chain(rest).collect();
            assert_eq!(joined, out_a, "every {every} stride {stride} stop {stop}");
        }
    }
}

#[test]
fn a_checkpoint_from_before_strides_resumes_its_open_window() {
    // lrlab before strides kept θ_t and θ_t − θ_{t−1} of the window of t − 1.
    let (vs, mut w) = quadratic();
    let mut a = Tracker::new(&vs, 1, 1, false, 0.1);
    let want = track(&mut a, &mut w, 0, 8);
    let (vs1, mut w1) = quadratic();
    let mut b = Tracker::new(&vs1, 1, 1, false, 0.1);
    let first = track(&mut b, &mut w1, 0, 5);
    let before = b.iterates[&4].params[0].copy();
    let now = w1.detach().copy();
    let mut legacy = BTreeMap::new();
    legacy.insert("hf_lr.prev.w".to_string(), now.copy());
    legacy.insert("hf_lr.diff.w".to_string(), &now - &before);
    let (c4, _) = stand_in_curvature(4);
    legacy.insert(
        "hf_lr.curvature".to_string(),
        t(&[c4.gg, c4.ghg, c4.gg, c4.ghg]),
    );
    let (vs2, mut w2) = quadratic();
    tch::no_grad(|| w2.copy_(&w1));
    let mut c = Tracker::new(&vs2, 1, 1, false, 0.1);
    c.load_state(&legacy, 5, b.ema.value, None).unwrap();
    let got: Vec<Estimate> = first
        .into_iter()
        .chain(track(&mut c, &mut w2, 5, 8))
        .collect();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!((g.step, g.curvature_lr), (w.step, w.curvature_lr));
        // θ_4 comes back as θ_5 − (θ_5 − θ_4): equal to rounding.
        assert!((g.hf_lr - w.hf_lr).abs() < 1e-9 * w.hf_lr, "{g:?} vs {w:?}");
    }
}

/// Caffe's `BatchNorm` training forward (BVLC `batch_norm_layer.cpp`), on its own
/// accumulators: `mean ← f·mean + μ`, `var ← f·var + m/(m−1)·σ²_biased`, `scale ← f·scale
/// + 1`, from 0.
fn caffe_update(blobs: &mut [Vec<f64>; 3], x: &[Vec<f64>], f: f64) {
    let m = x.len() as f64;
    for c in 0..blobs[0].len() {
        let mu = x.iter().map(|r| r[c]).sum::<f64>() / m;
        let var = x.iter().map(|r| (r[c] - mu).powi(2)).sum::<f64>() / m;
        blobs[0][c] = f * blobs[0][c] + mu;
        blobs[1][c] = f * blobs[1][c] + m / (m - 1.0) * var;
    }
    blobs[2][0] = f * blobs[2][0] + 1.0;
}

/// A linear layer and a batch norm trained by gradient descent on a fixed target, with the
/// Caffe blobs simulated beside: per step the iterate (parameters in name order, then
/// the simulated blobs), in f64.
fn bn_training(momentum: f64, steps: u64) -> (Vec<Vec<Vec<f64>>>, Tracker, Vec<Estimate>) {
    tch::manual_seed(7);
    let vs = VarStore::new(tch::Device::Cpu);
    let root = vs.root();
    let lin = tch::nn::linear(&root / "fc", 3, 2, Default::default());
    let bn = tch::nn::batch_norm1d(
        &root / "bn",
        2,
        tch::nn::BatchNormConfig {
            momentum,
            ..Default::default()
        },
    );
    // In f64: the reconstruction divides by 1 − f, which magnifies f32 rounding of the
    // running statistics (as Caffe's own f32 accumulators round).
    let mut vs = vs;
    vs.double();
    let f = 1.0 - momentum;
    let mut tracker = Tracker::new(&vs, 1, 2, true, momentum);
    let mut blobs = [vec![0.0; 2], vec![0.0; 2], vec![0.0]];
    let mut params: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(_, v)| v.requires_grad())
        .collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let flat = |params: &[(String, Tensor)], blobs: &[Vec<f64>; 3]| -> Vec<Vec<f64>> {
        params
            .iter()
            .map(|(_, p)| Vec::<f64>::try_from(p.to_kind(Kind::Double).flatten(0, -1)).unwrap())
            .chain(blobs.iter().cloned())
            .collect()
    };
    let mut iterates = vec![flat(&params, &blobs)];
    let mut out = Vec::new();
    for step in 0..steps {
        let x = Tensor::randn([8, 3], (Kind::Double, tch::Device::Cpu));
        let h = x.apply(&lin);
        let rows: Vec<Vec<f64>> = (0..8)
            .map(|r| Vec::<f64>::try_from(h.get(r).to_kind(Kind::Double).detach()).unwrap())
            .collect();
        caffe_update(&mut blobs, &rows, f);
        let y = h.apply_t(&bn, true);
        let loss = (y - 0.5).pow_tensor_scalar(2).mean(Kind::Double);
        let xs: Vec<Tensor> = params.iter().map(|(_, p)| p.shallow_clone()).collect();
        let g = Tensor::run_backward(&[loss], &xs, false, false);
        tch::no_grad(|| {
            for (p, g) in xs.iter().zip(&g) {
                let _ = p.shallow_clone().f_sub_(&(g * 0.1)).unwrap();
            }
        });
        out.extend(tracker.after_step(step, |_| 0.1));
        iterates.push(flat(&params, &blobs));
    }
    (iterates, tracker, out)
}

#[test]
fn the_caffe_blobs_from_torch_statistics_equal_caffes_own_update() {
    for momentum in [0.05, 0.001, 0.1] {
        let (iterates, tracker, _) = bn_training(momentum, 6);
        let now = tracker.snapshot(6);
        let last = &iterates[6];
        let n = last.len();
        for (k, blob) in now.blobs.iter().enumerate() {
            let got = Vec::<f64>::try_from(blob).unwrap();
            let want = &last[n - 3 + k];
            for (g, w) in got.iter().zip(want) {
                assert!(
                    (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                    "momentum {momentum} blob {k}: {got:?} vs {want:?}"
                );
            }
        }
    }
}

#[test]
fn the_caffe_estimate_sums_every_blob_as_by_hand() {
    let stride = 2;
    let (iterates, tracker, out) = bn_training(0.05, 9);
    assert!(tracker.caffe());
    assert_eq!(
        out.iter().map(|e| e.step).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    let sum = |a: &[Vec<f64>], b: &[Vec<f64>], c: Option<&[Vec<f64>]>, upto: usize| -> f64 {
        a.iter()
            .zip(b)
            .take(upto)
            .enumerate()
            .map(|(i, (x, y))| {
                x.iter()
                    .zip(y)
                    .enumerate()
                    .map(|(e, (x, y))| match c {
                        None => (y - x).abs(),
                        Some(c) => (2.0 * y - x - c[i][e]).abs(),
                    })
                    .sum::<f64>()
            })
            .sum()
    };
    let params = iterates[0].len() - 3;
    let (mut ema, mut ema_caffe) = (Ema::default(), Ema::default());
    for e in &out {
        let s = e.step as usize;
        let (a, b, c) = (
            &iterates[s],
            &iterates[s + stride],
            &iterates[s + 2 * stride],
        );
        let trainable = 0.1 * sum(a, b, None, params) / sum(a, b, Some(c), params);
        let every = 0.1 * sum(a, b, None, a.len()) / sum(a, b, Some(c), a.len());
        assert!((e.hf_lr - trainable).abs() < 1e-6 * trainable, "{e:?}");
        let (raw, avg) = e.caffe.unwrap();
        assert!((raw - every).abs() < 1e-6 * every, "{raw} vs {every}");
        assert!((e.hf_lr_ema - ema.update(e.hf_lr)).abs() < 1e-15);
        assert!((avg - ema_caffe.update(raw)).abs() < 1e-15);
        // The blobs move more than the weights here: the sums differ.
        assert!((raw - e.hf_lr).abs() > 1e-3 * e.hf_lr);
    }
    // Per layer: fc has no blobs; bn's are its weight, bias and three blobs.
    assert_eq!(tracker.layers(), ["bn", "fc"]);
    let e = &out[0];
    let (bn, fc) = (e.layers[0].2.unwrap(), e.layers[1].2.unwrap());
    assert!(bn.is_finite() && bn != e.layers[0].0);
    assert!((fc - e.layers[1].0).abs() < 1e-12 * e.layers[1].0.abs());
}
