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
mod tests;
