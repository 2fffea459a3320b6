//! The super-convergence paper's Hessian-free estimate of the optimal learning rate (Smith &
//! Topin 2018, §4; their `L2TermComputation3.py`): from three consecutive weight iterates
//! θ_i, θ_{i+1}, θ_{i+2} of a training at learning rate ε,
//!
//! `ε* ≈ ε · Σ|θ_{i+1} − θ_i| / Σ|2θ_{i+1} − θ_i − θ_{i+2}|`,
//!
//! the sums over every element of every trainable parameter, smoothed by an exponential
//! moving average (α = 0.1, starting at 0.1). For gradient descent on a quadratic with
//! curvature h it is exactly 1/h, the step that lands on the minimum in one move.
//!
//! The quantity it stands for, computed exactly: the curvature along the gradient,
//! `α* = gᵀg / gᵀHg` on one batch ([`curvature`]), with `Hg` a Hessian-vector product by double
//! backward: the step length along −g that minimises the loss's quadratic model
//! `f − α·gᵀg + α²/2·gᵀHg`. Per layer, both sums are split into the layer's own terms.

use crate::util::fmt_f64;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use tch::nn::VarStore;
use tch::{Kind, Tensor};

/// Weight of the newest value in the authors' moving average.
pub const EMA_ALPHA: f64 = 0.1;
/// The authors' starting value of the moving average.
pub const EMA_START: f64 = 0.1;

/// The paper's estimate from three consecutive iterates of the same parameters (`t0` = θ_i,
/// `t1` = θ_{i+1}, `t2` = θ_{i+2}, parameter by parameter) and the learning rate `lr` used
/// between them. Sums are taken in f64. Infinite when the second difference is 0 (a step
/// along a straight line: no curvature seen).
pub fn finite_difference_lr(t0: &[Tensor], t1: &[Tensor], t2: &[Tensor], lr: f64) -> f64 {
    assert!(
        t0.len() == t1.len() && t1.len() == t2.len(),
        "three iterates of the same parameters"
    );
    let d1: Vec<Tensor> = t1.iter().zip(t0).map(|(b, a)| b - a).collect();
    let d2: Vec<Tensor> = t2.iter().zip(t1).map(|(c, b)| c - b).collect();
    from_differences(&d1, &d2, lr)
}

/// The same estimate from the two steps `d1` = θ_{i+1} − θ_i and `d2` = θ_{i+2} − θ_{i+1}
/// (2θ_{i+1} − θ_i − θ_{i+2} = d1 − d2): what a training keeps between iterates.
pub fn from_differences(d1: &[Tensor], d2: &[Tensor], lr: f64) -> f64 {
    let (first, second) = difference_sums(d1, d2)
        .into_iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    lr * first / second
}

/// Per parameter: Σ|d1| and Σ|d1 − d2|, in f64.
fn difference_sums(d1: &[Tensor], d2: &[Tensor]) -> Vec<(f64, f64)> {
    d1.iter()
        .zip(d2)
        .map(|(a, b)| {
            let (a, b) = (a.to_kind(Kind::Double), b.to_kind(Kind::Double));
            (
                f64::try_from(a.abs().sum(Kind::Double)).unwrap_or(f64::NAN),
                f64::try_from((&a - &b).abs().sum(Kind::Double)).unwrap_or(f64::NAN),
            )
        })
        .collect()
}

/// Layer of a parameter: its name without the last component (`layer1.0.conv1.weight` ->
/// `layer1.0.conv1`).
pub fn layer_of(name: &str) -> &str {
    name.rsplit_once('.').map_or(name, |(layer, _)| layer)
}

/// gᵀg and gᵀHg of one layer (or of the whole network).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Terms {
    /// gᵀg over the layer's parameters.
    pub gg: f64,
    /// gᵀ(Hg) over the layer's parameters, Hg the whole network's Hessian times g.
    pub ghg: f64,
}

impl Terms {
    /// gᵀg / gᵀHg: infinite or negative where the loss is flat or concave along g.
    pub fn lr(&self) -> f64 {
        self.gg / self.ghg
    }
}

/// The curvature along the gradient of `loss` (a scalar built with its graph) with respect to
/// `params` (named; grouped into layers by [`layer_of`], in order of first appearance): two
/// backward passes, the first keeping its graph, the second through it. Nothing is
/// accumulated into the parameters' `.grad`. Sums in f64.
pub fn curvature(loss: &Tensor, params: &[(String, Tensor)]) -> (Terms, Vec<(String, Terms)>) {
    curvature_over(loss, params, 1, &mut |_| Ok(()))
        .expect("a local curvature has no collective to fail")
}

/// [`curvature`] of the global batch of a multi-process run: `loss` is the mean loss of this
/// rank's `n` examples and `sum` sums tensors over the ranks in place. With the global
/// gradient `g = Σ n_r g_r / N` and the Hessian of the global mean loss applied to it,
/// `Hg = Σ n_r H_r g / N` (each rank differentiates `g_r · g` with `g` held fixed), gᵀg and
/// gᵀHg are those of the whole batch, as one process computes them: a shard's own
/// ratio is not (its gradient is noisier, so its gᵀg is larger). Two collectives, each of the
/// parameters' size plus the count.
pub fn curvature_over(
    loss: &Tensor,
    params: &[(String, Tensor)],
    n: usize,
    sum: &mut dyn FnMut(&[&Tensor]) -> anyhow::Result<()>,
) -> anyhow::Result<(Terms, Vec<(String, Terms)>)> {
    let xs: Vec<&Tensor> = params.iter().map(|(_, p)| p).collect();
    let g = Tensor::run_backward(&[loss], &xs, true, true);
    // A parameter the loss does not reach has no gradient: it adds nothing.
    let used: Vec<usize> = (0..g.len()).filter(|&i| g[i].defined()).collect();
    if used.is_empty() {
        return Ok((Terms::default(), Vec::new()));
    }
    // The global gradient: the ranks' example-weighted sum over the global count.
    let weight = n as f64;
    let v: Vec<Tensor> = used
        .iter()
        .map(|&i| g[i].detach().to_kind(Kind::Double) * weight)
        .collect();
    let count = Tensor::from_slice(&[weight]);
    let mut all: Vec<&Tensor> = v.iter().collect();
    all.push(&count);
    sum(&all)?;
    let total = count.double_value(&[0]);
    let v: Vec<Tensor> = v.iter().map(|t| t / total).collect();
    let gv = used
        .iter()
        .zip(&v)
        .map(|(&i, v)| (&g[i] * v.to_kind(g[i].kind())).sum(g[i].kind()))
        .reduce(|a, b| a + b)
        .expect("at least one parameter is used");
    let used_xs: Vec<&Tensor> = used.iter().map(|&i| xs[i]).collect();
    let hv = Tensor::run_backward(&[gv], &used_xs, false, false);
    // Hg of the global mean loss: the same weighting.
    let hv: Vec<Tensor> = hv
        .iter()
        .zip(&v)
        .map(|(h, v)| {
            if h.defined() {
                h.to_kind(Kind::Double) * weight
            } else {
                v.zeros_like()
            }
        })
        .collect();
    sum(&hv.iter().collect::<Vec<_>>())?;
    let mut layers: Vec<(String, Terms)> = Vec::new();
    let mut all_terms = Terms::default();
    for ((&i, v), hv) in used.iter().zip(&v).zip(&hv) {
        let gg = f64::try_from((v * v).sum(Kind::Double)).unwrap_or(f64::NAN);
        let ghg = f64::try_from((v * hv).sum(Kind::Double)).unwrap_or(f64::NAN) / total;
        let layer = layer_of(&params[i].0);
        match layers.iter_mut().find(|(n, _)| n == layer) {
            Some((_, t)) => {
                t.gg += gg;
                t.ghg += ghg;
            }
            None => layers.push((layer.to_string(), Terms { gg, ghg })),
        }
        all_terms.gg += gg;
        all_terms.ghg += ghg;
    }
    Ok((all_terms, layers))
}

/// The authors' exponential moving average of the estimate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ema {
    /// The current value (starts at [`EMA_START`]).
    pub value: f64,
}

impl Default for Ema {
    fn default() -> Self {
        Ema { value: EMA_START }
    }
}

impl Ema {
    /// Fold in `x`: `value = α·x + (1 − α)·value`; returns the new value.
    pub fn update(&mut self, x: f64) -> f64 {
        self.value = EMA_ALPHA * x + (1.0 - EMA_ALPHA) * self.value;
        self.value
    }
}

/// One value of the estimates, for the window of steps `step` and `step + 1`.
#[derive(Clone, Debug, PartialEq)]
pub struct Estimate {
    /// The window's first step (θ_i is the weights before it).
    pub step: u64,
    /// The learning rate of that step (ε).
    pub lr: f64,
    /// The paper's finite-difference estimate.
    pub hf_lr: f64,
    /// The authors' moving average after folding it in.
    pub hf_lr_ema: f64,
    /// gᵀg / gᵀHg on the batch of `step`, at the weights before it (NaN when not measured).
    pub curvature_lr: f64,
    /// Per layer ([`Tracker::layers`]): the finite-difference estimate over the layer's
    /// parameters, and the ratio of the layer's terms of gᵀg and gᵀHg.
    pub layers: Vec<(f64, f64)>,
}

impl Estimate {
    /// The `hf_lr.csv` row ([`crate::train::record::HF_LR_HEADER`]); `steps_per_epoch`
    /// gives the epoch column.
    pub fn fields(&self, steps_per_epoch: u64) -> Vec<String> {
        vec![
            self.step.to_string(),
            fmt_f64(self.step as f64 / steps_per_epoch as f64),
            fmt_f64(self.lr),
            fmt_f64(self.hf_lr),
            fmt_f64(self.hf_lr_ema),
            fmt_f64(self.curvature_lr),
        ]
    }

    /// The `hf_lr_layers.csv` rows, one per layer of `layers` ([`Tracker::layers`]).
    pub fn layer_fields(&self, layers: &[String]) -> Vec<Vec<String>> {
        layers
            .iter()
            .zip(&self.layers)
            .map(|(name, (fd, c))| {
                vec![
                    self.step.to_string(),
                    name.clone(),
                    fmt_f64(*fd),
                    fmt_f64(*c),
                ]
            })
            .collect()
    }
}

/// The estimates along a training, every `every` steps: a window starts at each step `s` with
/// `s % every == 0` and is complete once steps `s` and `s + 1` have run. It keeps at most two
/// copies of the trainable parameters on their device (the last iterate and the last step),
/// and only while a window is open. It reads the weights and writes nothing into them: the
/// training is the same with and without it. Its state goes into the checkpoint, so that a
/// resumed run gives the same values as an uninterrupted one.
pub struct Tracker {
    every: u64,
    names: Vec<String>,
    vars: Vec<Tensor>,
    /// Layer names, in order of first appearance among the (name-sorted) parameters.
    layers: Vec<String>,
    /// Layer index of each parameter.
    layer_of_param: Vec<usize>,
    /// θ_t, while a window needs it.
    prev: Option<Vec<Tensor>>,
    /// θ_t − θ_{t−1}, while the window that started at t − 1 needs it.
    diff: Option<Vec<Tensor>>,
    /// The curvature measured at the open window's first step: total, then per layer.
    curvature: Option<(Terms, Vec<Terms>)>,
    /// The curvature measured before the current step's update, for the window it opens
    /// (the previous window may still be open: with `every = 1` windows overlap).
    incoming: Option<(Terms, Vec<Terms>)>,
    /// The moving average so far.
    pub ema: Ema,
}

/// Checkpoint names of the tracker's state.
const PREV: &str = "hf_lr.prev.";
const DIFF: &str = "hf_lr.diff.";
const CURVATURE: &str = "hf_lr.curvature";

impl Tracker {
    /// Track the trainable parameters of `vs` (all elements of all of them, in name order).
    pub fn new(vs: &VarStore, every: u64) -> Tracker {
        assert!(every > 0, "hf_lr_every = 0 means no tracker");
        let mut named: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let mut layers: Vec<String> = Vec::new();
        let mut layer_of_param = Vec::new();
        for (n, _) in &named {
            let l = layer_of(n);
            let i = layers.iter().position(|x| x == l).unwrap_or_else(|| {
                layers.push(l.to_string());
                layers.len() - 1
            });
            layer_of_param.push(i);
        }
        let (names, vars) = named.into_iter().unzip();
        Tracker {
            every,
            names,
            vars,
            layers,
            layer_of_param,
            prev: None,
            diff: None,
            curvature: None,
            incoming: None,
            ema: Ema::default(),
        }
    }

    /// The layers the per-layer values refer to, in their order.
    pub fn layers(&self) -> &[String] {
        &self.layers
    }

    /// The tracked parameters by name (shallow: the training's own tensors), for [`curvature`].
    pub fn params(&self) -> Vec<(String, Tensor)> {
        self.names
            .iter()
            .zip(&self.vars)
            .map(|(n, v)| (n.clone(), v.shallow_clone()))
            .collect()
    }

    /// Whether a window opens at step `t` (measure the curvature before its update).
    pub fn opens_window(&self, t: u64) -> bool {
        t % self.every == 0
    }

    /// Record the curvature measured before the update of the window's first step, as
    /// [`curvature`] returns it for [`Tracker::params`].
    pub fn set_curvature(&mut self, total: Terms, layers: &[(String, Terms)]) {
        let per_layer = self
            .layers
            .iter()
            .map(|l| {
                layers
                    .iter()
                    .find(|(n, _)| n == l)
                    .map_or(Terms::default(), |(_, t)| *t)
            })
            .collect();
        self.incoming = Some((total, per_layer));
    }

    /// The weights now, copied in the standard layout (the same reduction order in every
    /// attempt of a run, whatever layout a checkpoint restores).
    fn snapshot(&self) -> Vec<Tensor> {
        let _guard = tch::no_grad_guard();
        self.vars
            .iter()
            .map(|v| v.detach().contiguous().copy())
            .collect()
    }

    /// Call before optimizer step `t`: opens a window at `t` when one is due.
    pub fn before_step(&mut self, t: u64) {
        if self.opens_window(t) && self.prev.is_none() {
            self.prev = Some(self.snapshot());
        }
    }

    /// Call after optimizer step `t`: closes the window of step `t − 1` (its estimate, with
    /// that step's learning rate `lr_of(t − 1)`), and keeps what the window of `t` needs.
    pub fn after_step(&mut self, t: u64, lr_of: impl Fn(u64) -> f64) -> Option<Estimate> {
        let prev = self.prev.take()?;
        let now = self.snapshot();
        let step: Vec<Tensor> = now.iter().zip(&prev).map(|(a, b)| a - b).collect();
        let closing = self.diff.take().map(|d1| (d1, self.curvature.take()));
        // The window of t starts with this update: its curvature was measured before it.
        let opening = self.incoming.take();
        let estimate = closing.map(|(d1, curvature)| {
            let s = t - 1;
            let lr = lr_of(s);
            let sums = difference_sums(&d1, &step);
            let mut per_layer = vec![(0.0, 0.0); self.layers.len()];
            for (i, (a, b)) in sums.iter().enumerate() {
                let l = &mut per_layer[self.layer_of_param[i]];
                l.0 += a;
                l.1 += b;
            }
            let (first, second) = sums
                .iter()
                .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
            let hf_lr = lr * first / second;
            let (c_total, c_layers) = match curvature {
                Some((t, l)) => (t.lr(), l.iter().map(Terms::lr).collect()),
                None => (f64::NAN, vec![f64::NAN; self.layers.len()]),
            };
            Estimate {
                step: s,
                lr,
                hf_lr,
                hf_lr_ema: self.ema.update(hf_lr),
                curvature_lr: c_total,
                layers: per_layer
                    .iter()
                    .zip(c_layers)
                    .map(|((a, b), c)| (lr * a / b, c))
                    .collect(),
            }
        });
        if self.opens_window(t) {
            self.prev = Some(now);
            self.diff = Some(step);
            self.curvature = opening;
        }
        estimate
    }

    /// The state of the open window, named for the checkpoint (empty between windows). Taken
    /// between steps (after [`Tracker::after_step`]).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (prefix, set) in [(PREV, &self.prev), (DIFF, &self.diff)] {
            if let Some(set) = set {
                for (n, t) in self.names.iter().zip(set) {
                    out.push((format!("{prefix}{n}"), t.shallow_clone()));
                }
            }
        }
        if let Some((total, layers)) = &self.curvature {
            let flat: Vec<f64> = std::iter::once(total)
                .chain(layers)
                .flat_map(|t| [t.gg, t.ghg])
                .collect();
            out.push((CURVATURE.to_string(), Tensor::from_slice(&flat)));
        }
        out
    }

    /// Restore what [`Tracker::state`] wrote, and the moving average `ema`; `tensors` may
    /// hold other entries.
    pub fn load_state(&mut self, tensors: &BTreeMap<String, Tensor>, ema: f64) -> Result<()> {
        self.ema = Ema { value: ema };
        if self.names.is_empty() {
            return Ok(());
        }
        let load = |prefix: &str| -> Result<Option<Vec<Tensor>>> {
            if !tensors.contains_key(&format!("{prefix}{}", self.names[0])) {
                return Ok(None);
            }
            // Saved contiguous, read back as fresh contiguous copies: the sums keep their order.
            let mut set = Vec::with_capacity(self.vars.len());
            for (n, v) in self.names.iter().zip(&self.vars) {
                let key = format!("{prefix}{n}");
                let t = super::checkpoint::entry_like(tensors, &key, v)?
                    .with_context(|| format!("checkpoint has no entry {key}"))?;
                set.push(t);
            }
            Ok(Some(set))
        };
        self.prev = load(PREV)?;
        self.diff = load(DIFF)?;
        self.curvature = match tensors.get(CURVATURE) {
            None => None,
            Some(t) => {
                let flat = Vec::<f64>::try_from(t.to_kind(Kind::Double))
                    .with_context(|| format!("checkpoint entry {CURVATURE}"))?;
                if flat.len() != 2 * (1 + self.layers.len()) {
                    anyhow::bail!(
                        "checkpoint entry {CURVATURE} has {} values, expected {}",
                        flat.len(),
                        2 * (1 + self.layers.len())
                    );
                }
                let terms: Vec<Terms> = flat
                    .chunks(2)
                    .map(|c| Terms {
                        gg: c[0],
                        ghg: c[1],
                    })
                    .collect();
                Some((terms[0], terms[1..].to_vec()))
            }
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
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
        let loss =
            ((&a * &a * t(&ha)).sum(Kind::Double) + (&b * &b * t(&hb)).sum(Kind::Double)) * 0.5;
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
        for every in [1, 2, 5] {
            let (vs, mut w) = quadratic();
            let mut tracker = Tracker::new(&vs, every);
            let mut iterates = vec![Vec::<f64>::try_from(&w).unwrap()];
            let mut got = Vec::new();
            for step in 0..12 {
                tracker.before_step(step);
                gd_step(&mut w, &h, lr(step));
                iterates.push(Vec::<f64>::try_from(&w).unwrap());
                got.extend(tracker.after_step(step, lr));
                // Copies are held only while the window of this step is open.
                assert_eq!(tracker.state().is_empty(), step % every != 0);
            }
            let windows: Vec<u64> = (0..11).filter(|s| s % every == 0).collect();
            assert_eq!(
                got.iter().map(|e| e.step).collect::<Vec<_>>(),
                windows,
                "every {every}"
            );
            let mut ema = Ema::default();
            for e in &got {
                let s = e.step as usize;
                let want = finite_difference_lr(
                    &[t(&iterates[s])],
                    &[t(&iterates[s + 1])],
                    &[t(&iterates[s + 2])],
                    lr(e.step),
                );
                assert_eq!(e.lr, lr(e.step));
                assert!(
                    (e.hf_lr - want).abs() < 1e-12 * want,
                    "{} vs {want}",
                    e.hf_lr
                );
                assert!((e.hf_lr_ema - ema.update(e.hf_lr)).abs() < 1e-15);
            }
        }
    }

    #[test]
    fn a_tracker_restored_mid_window_continues_as_the_original() {
        let hv = [1.0, 4.0, 9.0];
        let h = t(&hv);
        let lr = |_: u64| 0.05;
        let (vs, mut w) = quadratic();
        let mut a = Tracker::new(&vs, 1);
        let mut b_state = None;
        let mut out_a = Vec::new();
        // Stand-in curvature values, different for every window.
        let c = |step: u64| {
            let t = Terms {
                gg: step as f64 + 1.0,
                ghg: 2.0,
            };
            (t, vec![("w".to_string(), t)])
        };
        for step in 0..6 {
            let (t, l) = c(step);
            a.set_curvature(t, &l);
            a.before_step(step);
            gd_step(&mut w, &h, lr(step));
            out_a.extend(a.after_step(step, lr));
            if step == 2 {
                let state: BTreeMap<String, Tensor> =
                    a.state().into_iter().map(|(k, v)| (k, v.copy())).collect();
                b_state = Some((state, a.ema.value, w.copy()));
            }
        }
        // A second tracker resumed after step 2 from the checkpointed state.
        let (state, ema, w3) = b_state.unwrap();
        assert!(state.keys().any(|k| k.starts_with("hf_lr.prev.")));
        assert!(state.keys().any(|k| k.starts_with("hf_lr.diff.")));
        let (vs2, mut w2) = quadratic();
        tch::no_grad(|| w2.copy_(&w3));
        let mut b = Tracker::new(&vs2, 1);
        b.load_state(&state, ema).unwrap();
        let mut out_b = Vec::new();
        for step in 3..6 {
            let (t, l) = c(step);
            b.set_curvature(t, &l);
            b.before_step(step);
            gd_step(&mut w2, &h, lr(step));
            out_b.extend(b.after_step(step, lr));
        }
        assert_eq!(out_b, out_a[out_a.len() - 3..].to_vec());
        // Each window reports the curvature measured at its own first step.
        for e in &out_a {
            assert_eq!(e.curvature_lr, (e.step as f64 + 1.0) / 2.0);
            assert_eq!(e.layers, vec![(e.hf_lr, e.curvature_lr)]);
        }
    }
}
