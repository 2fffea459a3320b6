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

/// One value of the estimates, for the window of iterates θ_step, θ_{step+k}, θ_{step+2k}
/// (k = the stride).
#[derive(Clone, Debug, PartialEq)]
pub struct Estimate {
    /// The window's first step (θ_i is the weights before it).
    pub step: u64,
    /// The learning rate of that step (ε).
    pub lr: f64,
    /// The paper's finite-difference estimate over the trainable parameters.
    pub hf_lr: f64,
    /// The authors' moving average after folding it in.
    pub hf_lr_ema: f64,
    /// gᵀg / gᵀHg on the batch of `step`, at the weights before it (NaN when not measured).
    pub curvature_lr: f64,
    /// Under `hf_lr_blobs = "caffe"`: the estimate over every Caffe blob, and its moving
    /// average.
    pub caffe: Option<(f64, f64)>,
    /// Per layer ([`Tracker::layers`]): the finite-difference estimate over the layer's
    /// parameters, the ratio of the layer's terms of gᵀg and gᵀHg, and (under "caffe") the
    /// estimate over the layer's Caffe blobs.
    pub layers: Vec<(f64, f64, Option<f64>)>,
}

/// The `hf_lr.csv` header ([`crate::run::HF_LR_HEADER`], and the Caffe columns when
/// `caffe`).
pub fn header(caffe: bool) -> String {
    let base = crate::run::HF_LR_HEADER;
    if caffe {
        format!("{base},hf_lr_caffe,hf_lr_caffe_ema")
    } else {
        base.to_string()
    }
}

/// The `hf_lr_layers.csv` header ([`crate::run::HF_LR_LAYERS_HEADER`], and the
/// Caffe column when `caffe`).
pub fn layers_header(caffe: bool) -> String {
    let base = crate::run::HF_LR_LAYERS_HEADER;
    if caffe {
        format!("{base},hf_lr_caffe")
    } else {
        base.to_string()
    }
}

impl Estimate {
    /// The `hf_lr.csv` row ([`header`]); `steps_per_epoch` gives the epoch column.
    pub fn fields(&self, steps_per_epoch: u64) -> Vec<String> {
        let mut f = vec![
            self.step.to_string(),
            fmt_f64(self.step as f64 / steps_per_epoch as f64),
            fmt_f64(self.lr),
            fmt_f64(self.hf_lr),
            fmt_f64(self.hf_lr_ema),
            fmt_f64(self.curvature_lr),
        ];
        if let Some((raw, ema)) = self.caffe {
            f.push(fmt_f64(raw));
            f.push(fmt_f64(ema));
        }
        f
    }

    /// The `hf_lr_layers.csv` rows ([`layers_header`]), one per layer of `layers`
    /// ([`Tracker::layers`]).
    pub fn layer_fields(&self, layers: &[String]) -> Vec<Vec<String>> {
        layers
            .iter()
            .zip(&self.layers)
            .map(|(name, (fd, c, caffe))| {
                let mut f = vec![
                    self.step.to_string(),
                    name.clone(),
                    fmt_f64(*fd),
                    fmt_f64(*c),
                ];
                if let Some(c) = caffe {
                    f.push(fmt_f64(*c));
                }
                f
            })
            .collect()
    }
}

/// The blobs of a Caffe `BatchNorm` layer after `t` training passes, from torch's running
/// statistics with momentum `1 − f` (mean from 0, variance from 1, the unbiased batch
/// variance; Caffe's `moving_average_fraction` is f): Caffe accumulates
/// `mean_acc ← f·mean_acc + μ`, `var_acc ← f·var_acc + σ²`, `scale ← f·scale + 1` from 0, so
/// `mean_acc = running_mean / (1 − f)`, `var_acc = (running_var − fᵗ) / (1 − f)` and
/// `scale = (1 − fᵗ) / (1 − f)`. In f64, in that order.
pub fn caffe_blobs(running_mean: &Tensor, running_var: &Tensor, f: f64, t: u64) -> [Tensor; 3] {
    let ft = f.powf(t as f64);
    let m = 1.0 - f;
    let _guard = tch::no_grad_guard();
    let mean = running_mean.to_kind(Kind::Double) / m;
    let var = (running_var.to_kind(Kind::Double) - ft) / m;
    let scale = Tensor::from_slice(&[(1.0 - ft) / m]).to_device(running_mean.device());
    [mean, var, scale]
}

mod tracker;
pub use tracker::Tracker;

#[cfg(test)]
mod tests;
