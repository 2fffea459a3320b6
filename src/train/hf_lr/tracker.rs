//! The estimates along a training ([`Tracker`]): which iterates each window needs, the copies
//! kept of them, the sums over them, and their place in the checkpoint.

use super::*;

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
pub(super) struct Iterate {
    pub(super) params: Vec<Tensor>,
    pub(super) blobs: Vec<Tensor>,
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
    pub(super) iterates: BTreeMap<u64, Iterate>,
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
    pub(super) fn snapshot(&self, j: u64) -> Iterate {
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
                crate::train::checkpoint::entry_like(tensors, &key, like)?
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
                crate::train::checkpoint::entry_like(tensors, &key, v)?
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
