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

/// Whether a window opens at step `t` for windows every `every` steps: from step 1 on, as the
/// authors' scripts.
fn opens_window(every: u64, t: u64) -> bool {
    t > 0 && t % every == 0
}

/// The last step after which a window needs θ_j, for windows every `every` steps of iterates
/// `stride` apart (None: none does): the window of step s needs θ_s, θ_{s+k}, θ_{s+2k} and
/// closes after step s + 2k − 1.
fn needed_until(every: u64, stride: u64, j: u64) -> Option<u64> {
    (0..3u64)
        .filter_map(|m| j.checked_sub(m * stride))
        .filter(|&s| opens_window(every, s))
        .map(|s| s + 2 * stride - 1)
        .max()
}

/// A batch-norm layer whose Caffe blobs the estimate sums: its running statistics.
struct BnLayer {
    layer: usize,
    name: String,
    mean: Tensor,
    var: Tensor,
}

/// The weights after some number of steps: the trainable parameters (standard layout) and,
/// under "caffe", each batch-norm layer's three blobs.
struct Iterate {
    params: Vec<Tensor>,
    blobs: Vec<Tensor>,
}

/// The estimates along a training: a window opens at each step s ≥ 1 with s % `every` == 0
/// (the authors' scripts start at iteration 1) and is complete once θ_{s+2k} exists (k the
/// stride), i.e. after step s + 2k − 1. It keeps a copy of the weights on their device for
/// each iterate an open window still needs (two or three with consecutive iterates) and only
/// while one does. It reads the weights and writes nothing into them: the training is the same
/// with and without it. Its state goes into the checkpoint, so that a resumed run gives the
/// same values as an uninterrupted one.
pub struct Tracker {
    every: u64,
    stride: u64,
    names: Vec<String>,
    vars: Vec<Tensor>,
    /// Batch-norm layers whose Caffe blobs are summed too (empty unless "caffe").
    bn: Vec<BnLayer>,
    /// Caffe's moving-average fraction f = 1 − `model.bn_momentum`.
    fraction: f64,
    caffe: bool,
    /// Layer names, in order of first appearance among the (name-sorted) parameters.
    layers: Vec<String>,
    /// Layer index of each parameter.
    layer_of_param: Vec<usize>,
    /// θ_j by j (weights after j steps), for the iterates open windows need.
    iterates: BTreeMap<u64, Iterate>,
    /// The curvature measured before the update of each open window's first step: total,
    /// then per layer.
    curvature: BTreeMap<u64, (Terms, Vec<Terms>)>,
    /// The moving average so far.
    pub ema: Ema,
    /// The moving average of the Caffe-blob estimate.
    pub ema_caffe: Ema,
}

/// Checkpoint names of the tracker's state.
const ITERATE: &str = "hf_lr.iterate.";
const CURVATURE: &str = "hf_lr.curvature.";
/// What a checkpoint of lrlab before strides held: θ_t and θ_t − θ_{t−1} of the window of
/// step t − 1, and its curvature.
const LEGACY_PREV: &str = "hf_lr.prev.";
const LEGACY_DIFF: &str = "hf_lr.diff.";
const LEGACY_CURVATURE: &str = "hf_lr.curvature";

impl Tracker {
    /// Track the trainable parameters of `vs` (all elements of all of them, in name order),
    /// windows every `every` steps of iterates `stride` apart; with `caffe`, also every
    /// batch-norm layer's Caffe blobs at batch-norm momentum `bn_momentum`.
    pub fn new(vs: &VarStore, every: u64, stride: u64, caffe: bool, bn_momentum: f64) -> Tracker {
        assert!(every > 0, "hf_lr_every = 0 means no tracker");
        assert!(stride > 0, "a stride of at least 1");
        let all = vs.variables();
        let mut named: Vec<(String, Tensor)> = all
            .iter()
            .filter(|(_, t)| t.requires_grad())
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let mut layers: Vec<String> = Vec::new();
        let mut index = |l: &str| {
            layers.iter().position(|x| x == l).unwrap_or_else(|| {
                layers.push(l.to_string());
                layers.len() - 1
            })
        };
        let layer_of_param: Vec<usize> = named.iter().map(|(n, _)| index(layer_of(n))).collect();
        let mut bn = Vec::new();
        if caffe {
            let mut means: Vec<&String> = all
                .keys()
                .filter(|n| n.ends_with(".running_mean"))
                .collect();
            means.sort();
            for m in means {
                let layer = layer_of(m);
                if let Some(var) = all.get(&format!("{layer}.running_var")) {
                    bn.push(BnLayer {
                        layer: index(layer),
                        name: layer.to_string(),
                        mean: all[m].shallow_clone(),
                        var: var.shallow_clone(),
                    });
                }
            }
        }
        let (names, vars) = named.into_iter().unzip();
        Tracker {
            every,
            stride,
            names,
            vars,
            bn,
            fraction: 1.0 - bn_momentum,
            caffe,
            layers,
            layer_of_param,
            iterates: BTreeMap::new(),
            curvature: BTreeMap::new(),
            ema: Ema::default(),
            ema_caffe: Ema::default(),
        }
    }

    /// The tracker a run config asks for (`train.hf_lr_every` and the keys beside it); None
    /// when the estimate is off.
    pub fn for_config(vs: &VarStore, cfg: &crate::config::RunConfig) -> Option<Tracker> {
        let t = &cfg.train;
        (t.hf_lr_every > 0).then(|| {
            Tracker::new(
                vs,
                t.hf_lr_every,
                t.hf_lr_stride,
                t.hf_lr_blobs == crate::config::HfBlobs::Caffe,
                cfg.model.bn_momentum,
            )
        })
    }

    /// The spacing of the three iterates.
    pub fn stride(&self) -> u64 {
        self.stride
    }

    /// Whether the Caffe-blob estimate is logged beside the trainable one.
    pub fn caffe(&self) -> bool {
        self.caffe
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
        opens_window(self.every, t)
    }

    /// The last step after which a window needs θ_j (None: none does).
    fn needed_until(&self, j: u64) -> Option<u64> {
        needed_until(self.every, self.stride, j)
    }

    /// Record the curvature measured at step `t` before its update (a window's first step),
    /// as [`curvature`] returns it for [`Tracker::params`].
    pub fn set_curvature(&mut self, t: u64, total: Terms, layers: &[(String, Terms)]) {
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
        self.curvature.insert(t, (total, per_layer));
    }

    /// The weights after `j` steps (now), copied in the standard layout (the same reduction
    /// order in every attempt of a run, whatever layout a checkpoint restores).
    fn snapshot(&self, j: u64) -> Iterate {
        let _guard = tch::no_grad_guard();
        Iterate {
            params: self
                .vars
                .iter()
                .map(|v| v.detach().contiguous().copy())
                .collect(),
            blobs: self.blobs(j),
        }
    }

    /// The batch-norm layers' Caffe blobs after `j` steps (empty unless "caffe").
    fn blobs(&self, j: u64) -> Vec<Tensor> {
        self.bn
            .iter()
            .flat_map(|b| caffe_blobs(&b.mean, &b.var, self.fraction, j))
            .collect()
    }

    /// Call after optimizer step `t` (the weights are θ_{t+1}): keeps θ_{t+1} if a window
    /// needs it, and closes the window that it completes (its estimate, with the learning
    /// rate of its first step, `lr_of(s)`).
    pub fn after_step(&mut self, t: u64, lr_of: impl Fn(u64) -> f64) -> Option<Estimate> {
        let j = t + 1;
        if self.needed_until(j).is_some() {
            let now = self.snapshot(j);
            self.iterates.insert(j, now);
        }
        let k = self.stride;
        let estimate = j
            .checked_sub(2 * k)
            .filter(|&s| self.opens_window(s))
            .and_then(|s| self.estimate(s, lr_of(s)));
        // Drop what no open or future window needs any more.
        let (every, stride) = (self.every, self.stride);
        self.iterates
            .retain(|&i, _| needed_until(every, stride, i).is_some_and(|last| last >= j));
        self.curvature.retain(|&s, _| s + 2 * k > j);
        estimate
    }

    /// The estimate of the window of step `s`, at learning rate `lr`, from the kept iterates.
    fn estimate(&mut self, s: u64, lr: f64) -> Option<Estimate> {
        let k = self.stride;
        let (a, b, c) = (
            self.iterates.get(&s)?,
            self.iterates.get(&(s + k))?,
            self.iterates.get(&(s + 2 * k))?,
        );
        let diff = |x: &[Tensor], y: &[Tensor]| -> Vec<Tensor> {
            x.iter().zip(y).map(|(x, y)| x - y).collect()
        };
        let sums = difference_sums(&diff(&b.params, &a.params), &diff(&c.params, &b.params));
        let blob_sums = difference_sums(&diff(&b.blobs, &a.blobs), &diff(&c.blobs, &b.blobs));
        let n = self.layers.len();
        let mut per_layer = vec![(0.0, 0.0); n];
        for (i, (x, y)) in sums.iter().enumerate() {
            let l = &mut per_layer[self.layer_of_param[i]];
            l.0 += x;
            l.1 += y;
        }
        let mut blob_layer = vec![(0.0, 0.0); n];
        for (i, (x, y)) in blob_sums.iter().enumerate() {
            let l = &mut blob_layer[self.bn[i / 3].layer];
            l.0 += x;
            l.1 += y;
        }
        let total = |v: &[(f64, f64)]| v.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
        let (first, second) = total(&sums);
        let hf_lr = lr * first / second;
        let caffe = self.caffe.then(|| {
            let (bf, bs) = total(&blob_sums);
            let raw = lr * (first + bf) / (second + bs);
            (raw, self.ema_caffe.update(raw))
        });
        let (c_total, c_layers) = match self.curvature.remove(&s) {
            Some((t, l)) => (t.lr(), l.iter().map(Terms::lr).collect()),
            None => (f64::NAN, vec![f64::NAN; n]),
        };
        Some(Estimate {
            step: s,
            lr,
            hf_lr,
            hf_lr_ema: self.ema.update(hf_lr),
            curvature_lr: c_total,
            caffe,
            layers: per_layer
                .iter()
                .zip(&blob_layer)
                .zip(c_layers)
                .map(|(((a, b), (x, y)), c)| {
                    let blobs = self.caffe.then(|| lr * (a + x) / (b + y));
                    (lr * a / b, c, blobs)
                })
                .collect(),
        })
    }

    /// Names of the Caffe blobs, in the order of [`Iterate::blobs`].
    fn blob_names(&self) -> Vec<String> {
        self.bn
            .iter()
            .flat_map(|b| {
                ["caffe_mean", "caffe_var", "caffe_scale"].map(|x| format!("{}.{x}", b.name))
            })
            .collect()
    }

    /// The state of the open windows, named for the checkpoint (empty between windows). Taken
    /// between steps (after [`Tracker::after_step`]).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        let blob_names = self.blob_names();
        for (j, it) in &self.iterates {
            for (n, t) in self.names.iter().zip(&it.params) {
                out.push((format!("{ITERATE}{j}.{n}"), t.shallow_clone()));
            }
            for (n, t) in blob_names.iter().zip(&it.blobs) {
                out.push((format!("{ITERATE}{j}.{n}"), t.shallow_clone()));
            }
        }
        for (s, (total, layers)) in &self.curvature {
            let flat: Vec<f64> = std::iter::once(total)
                .chain(layers)
                .flat_map(|t| [t.gg, t.ghg])
                .collect();
            out.push((format!("{CURVATURE}{s}"), Tensor::from_slice(&flat)));
        }
        out
    }

    /// Restore what [`Tracker::state`] wrote after `step` steps, and the moving averages
    /// (`ema`, and `ema_caffe` under "caffe"); `tensors` may hold other entries.
    pub fn load_state(
        &mut self,
        tensors: &BTreeMap<String, Tensor>,
        step: u64,
        ema: f64,
        ema_caffe: Option<f64>,
    ) -> Result<()> {
        self.ema = Ema { value: ema };
        self.ema_caffe = ema_caffe.map_or_else(Ema::default, |value| Ema { value });
        self.iterates.clear();
        self.curvature.clear();
        if self.names.is_empty() {
            return Ok(());
        }
        let mut steps: Vec<u64> = tensors
            .keys()
            .filter_map(|k| k.strip_prefix(ITERATE)?.split_once('.')?.0.parse().ok())
            .collect();
        steps.sort_unstable();
        steps.dedup();
        let blob_names = self.blob_names();
        // Shapes, kinds and device of the blobs, to read them as.
        let likes = self.blobs(step);
        for j in steps {
            let read = |n: &String, like: &Tensor| -> Result<Tensor> {
                let key = format!("{ITERATE}{j}.{n}");
                // Saved contiguous, read back as fresh contiguous copies: the sums keep
                // their order.
                super::checkpoint::entry_like(tensors, &key, like)?
                    .with_context(|| format!("checkpoint has no entry {key}"))
            };
            let params = self
                .names
                .iter()
                .zip(&self.vars)
                .map(|(n, v)| read(n, v))
                .collect::<Result<_>>()?;
            let blobs = blob_names
                .iter()
                .zip(&likes)
                .map(|(n, v)| read(n, v))
                .collect::<Result<_>>()?;
            self.iterates.insert(j, Iterate { params, blobs });
        }
        for (key, t) in tensors.range(CURVATURE.to_string()..) {
            let Some(s) = key.strip_prefix(CURVATURE) else {
                break;
            };
            let s: u64 = s
                .parse()
                .with_context(|| format!("checkpoint entry {key}: not a step"))?;
            self.curvature.insert(s, self.read_curvature(key, t)?);
        }
        self.load_legacy(tensors, step)
    }

    fn read_curvature(&self, key: &str, t: &Tensor) -> Result<(Terms, Vec<Terms>)> {
        let flat = Vec::<f64>::try_from(t.to_kind(Kind::Double))
            .with_context(|| format!("checkpoint entry {key}"))?;
        if flat.len() != 2 * (1 + self.layers.len()) {
            anyhow::bail!(
                "checkpoint entry {key} has {} values, expected {}",
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
        Ok((terms[0], terms[1..].to_vec()))
    }

    /// A checkpoint written before strides held the open window of step `step − 1` as θ_step
    /// and the step to it: θ_{step−1} is their difference (to rounding).
    fn load_legacy(&mut self, tensors: &BTreeMap<String, Tensor>, step: u64) -> Result<()> {
        if !tensors.contains_key(&format!("{LEGACY_PREV}{}", self.names[0])) {
            return Ok(());
        }
        let s = step.saturating_sub(1);
        if self.stride != 1 || self.caffe || !self.opens_window(s) {
            return Ok(());
        }
        let mut prev = Vec::new();
        let mut before = Vec::new();
        for (n, v) in self.names.iter().zip(&self.vars) {
            let get = |prefix: &str| -> Result<Tensor> {
                let key = format!("{prefix}{n}");
                super::checkpoint::entry_like(tensors, &key, v)?
                    .with_context(|| format!("checkpoint has no entry {key}"))
            };
            let (p, d) = (get(LEGACY_PREV)?, get(LEGACY_DIFF)?);
            before.push(&p - &d);
            prev.push(p);
        }
        let it = |params| Iterate {
            params,
            blobs: Vec::new(),
        };
        self.iterates.insert(s, it(before));
        self.iterates.insert(step, it(prev));
        if let Some(t) = tensors.get(LEGACY_CURVATURE) {
            let c = self.read_curvature(LEGACY_CURVATURE, t)?;
            self.curvature.insert(s, c);
        }
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
                            j.checked_sub(m * stride).is_some_and(|s| {
                                s > 0 && s % every == 0 && s + 2 * stride > step + 1
                            })
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
}
