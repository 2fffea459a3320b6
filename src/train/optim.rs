//! The optimizer step, written here rather than taken from libtorch because its state
//! (momentum buffers, Adam moments, step count) must be saved in checkpoints for exact
//! resume, which tch's built-in optimizers cannot do.
//!
//! Conventions (see `optim.momentum_convention`):
//! - `pytorch`: `d = g + wd·p`; `buf = d` on the first step, then `buf = μ·buf + (1 − τ)·d`;
//!   `p −= lr·(nesterov ? d + μ·buf : buf)`. Equals `torch.optim.SGD`.
//! - `caffe`: the learning rate lives inside the velocity, as in Caffe (CLR, super-convergence)
//!   and Lasagne (SGDR): `v = μ·v + lr·d; p −= v` (history starts at zero); with Nesterov,
//!   Caffe's `p −= (1 + μ)·v_new − μ·v_old`. Equal to `pytorch` at constant LR, different when
//!   the LR moves fast, because a new LR does not rescale past gradients.
//!
//! AdamW follows `torch.optim.AdamW`: `p ← p·(1 − lr·wd)`, moments with bias correction, the
//! current `beta1` (cycled as momentum by CLR/1cycle schedules) used for the correction.

use crate::config::{MomentumConvention, OptimConfig, OptimKind, WdScope};
use anyhow::Result;
use std::collections::BTreeMap;
use tch::{nn::VarStore, Tensor};

struct Param {
    name: String,
    tensor: Tensor,
    decay: bool,
    /// Caffe's per-blob multipliers: the learning rate's and the weight decay's (from the
    /// first `[[optim.group]]` matching the name, else `bias_lr_mult` / `bias_decay_mult` on
    /// biases, else 1 and 1).
    lr_mult: f64,
    decay_mult: f64,
    /// SGD velocity, or AdamW first moment.
    buf: Option<Tensor>,
    /// AdamW second moment.
    buf2: Option<Tensor>,
}

/// SGD or AdamW over a VarStore's trainable variables, with state that can be saved.
pub struct Optimizer {
    cfg: OptimConfig,
    params: Vec<Param>,
    /// Number of steps taken (AdamW bias correction; saved in checkpoints).
    pub steps: i64,
}

impl Optimizer {
    /// Collect `vs`'s trainable variables, in name order so that the state layout never
    /// depends on hash-map order.
    pub fn new(vs: &VarStore, cfg: &OptimConfig) -> Result<Optimizer> {
        cfg.validate()?;
        let named: BTreeMap<String, Tensor> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        // A convolution's or linear layer's bias: `<layer>.bias` beside a `<layer>.weight` of
        // rank >= 2 (BN's shift β sits beside a rank-1 γ and is not one: Caffe's multipliers
        // in the papers' prototxts are on the convolution and inner-product layers).
        let is_bias = |name: &str| {
            name.strip_suffix(".bias").is_some_and(|layer| {
                named
                    .get(&format!("{layer}.weight"))
                    .is_some_and(|w| w.dim() >= 2)
            })
        };
        let biases: Vec<bool> = named.keys().map(|n| is_bias(n)).collect();
        let patterns = cfg
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| g.pattern(i))
            .collect::<Result<Vec<_>>>()?;
        // A group that selects nothing is a typo in its pattern, not a no-op.
        for (i, p) in patterns.iter().enumerate() {
            if !named.keys().any(|n| p.matches(n)) {
                let some: Vec<&str> = named.keys().take(6).map(String::as_str).collect();
                crate::bail_input!(
                    "optim.group[{i}].params = {:?}: matches no parameter of the model (its \
                     names look like {}, ...; `lrlab models --params ARCH` lists them all)",
                    cfg.groups[i].params,
                    some.join(", ")
                );
            }
        }
        let params = named
            .into_iter()
            .zip(biases)
            .map(|((name, tensor), bias)| {
                // BN's γ is the only rank-1 `weight` (tch names it `<layer>.weight`, its
                // shift `<layer>.bias`).
                let decay = match cfg.wd_scope {
                    WdScope::All => true,
                    WdScope::Weights => tensor.dim() >= 2,
                    WdScope::WeightsAndGamma => {
                        tensor.dim() >= 2 || (tensor.dim() == 1 && name.ends_with(".weight"))
                    }
                };
                let group = patterns.iter().position(|p| p.matches(&name));
                let (lr_mult, decay_mult) = match group {
                    Some(i) => (cfg.groups[i].lr_mult, cfg.groups[i].decay_mult),
                    None if bias => (cfg.bias_lr_mult, cfg.bias_decay_mult),
                    None => (1.0, 1.0),
                };
                Param {
                    name,
                    tensor,
                    decay,
                    lr_mult,
                    decay_mult,
                    buf: None,
                    buf2: None,
                }
            })
            .collect();
        Ok(Optimizer {
            cfg: cfg.clone(),
            params,
            steps: 0,
        })
    }

    /// The names of the parameters that receive weight decay, in name order.
    pub fn decayed(&self) -> Vec<&str> {
        self.params
            .iter()
            .filter(|p| p.decay && p.decay_mult != 0.0)
            .map(|p| p.name.as_str())
            .collect()
    }

    /// Per parameter, in name order: its name, learning-rate multiplier and weight decay (the
    /// configured decay times its multiplier, 0 outside `wd_scope`).
    pub fn multipliers(&self) -> Vec<(&str, f64, f64)> {
        self.params
            .iter()
            .map(|p| {
                let wd = if p.decay {
                    self.cfg.weight_decay * p.decay_mult
                } else {
                    0.0
                };
                (p.name.as_str(), p.lr_mult, wd)
            })
            .collect()
    }

    /// The configuration this optimizer was built with.
    pub fn config(&self) -> &OptimConfig {
        &self.cfg
    }

    /// Set every parameter's gradient to zero (drop it).
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            let mut g = p.tensor.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }

    /// Scale gradients so that their global L2 norm is at most `max_norm`; returns the norm
    /// before clipping. Reads one scalar from the device.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        let _guard = tch::no_grad_guard();
        let grads: Vec<Tensor> = self
            .params
            .iter()
            .map(|p| p.tensor.grad())
            .filter(|g| g.defined())
            .collect();
        if grads.is_empty() {
            return 0.0;
        }
        let sq: Vec<Tensor> = grads
            .iter()
            .map(|g| g.to_kind(tch::Kind::Double).square().sum(tch::Kind::Double))
            .collect();
        let total = Tensor::stack(&sq, 0).sum(tch::Kind::Double).sqrt();
        let norm = f64::try_from(&total).unwrap_or(f64::NAN);
        if norm.is_finite() && norm > max_norm {
            let scale = max_norm / (norm + 1e-6);
            for mut g in grads {
                let _ = g.g_mul_scalar_(scale);
            }
        }
        norm
    }

    /// One update with learning rate `lr` and momentum (SGD) or beta1 (AdamW) `momentum`.
    pub fn step(&mut self, lr: f64, momentum: f64) {
        let _guard = tch::no_grad_guard();
        self.steps += 1;
        let cfg = &self.cfg;
        for p in &mut self.params {
            let g = p.tensor.grad();
            if !g.defined() {
                continue;
            }
            // Caffe's local rate: lr · lr_mult (exactly lr when the multiplier is 1).
            let lr = if p.lr_mult == 1.0 { lr } else { lr * p.lr_mult };
            match cfg.kind {
                OptimKind::Sgd => sgd_update(cfg, p, &g, lr, momentum),
                OptimKind::Adamw => adamw_update(cfg, p, &g, lr, momentum, self.steps),
            }
        }
    }

    /// The optimizer state as named tensors (`optim.buf.<param>`, `optim.buf2.<param>`) for
    /// a checkpoint. The step count travels in the checkpoint's progress record.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for p in &self.params {
            if let Some(b) = &p.buf {
                out.push((format!("optim.buf.{}", p.name), b.shallow_clone()));
            }
            if let Some(b) = &p.buf2 {
                out.push((format!("optim.buf2.{}", p.name), b.shallow_clone()));
            }
        }
        out
    }

    /// The gradients of the parameters that have one (shallow: writing them changes the
    /// gradients the next [`Optimizer::step`] uses), in the parameters' order.
    pub fn grads(&self) -> Vec<Tensor> {
        self.params
            .iter()
            .map(|p| p.tensor.grad())
            .filter(|g| g.defined())
            .collect()
    }

    /// Restore the state written by [`Optimizer::state`]; `tensors` may hold other entries.
    pub fn load_state(&mut self, tensors: &BTreeMap<String, Tensor>, steps: i64) -> Result<()> {
        for p in &mut self.params {
            p.buf = super::checkpoint::entry_like(
                tensors,
                &format!("optim.buf.{}", p.name),
                &p.tensor,
            )?;
            p.buf2 = super::checkpoint::entry_like(
                tensors,
                &format!("optim.buf2.{}", p.name),
                &p.tensor,
            )?;
        }
        self.steps = steps;
        Ok(())
    }
}

impl Param {
    /// This parameter's weight decay: the configured one where `wd_scope` decays it, times
    /// its decay multiplier.
    fn weight_decay(&self, cfg: &OptimConfig) -> f64 {
        if !self.decay {
            0.0
        } else if self.decay_mult == 1.0 {
            cfg.weight_decay
        } else {
            cfg.weight_decay * self.decay_mult
        }
    }
}

fn sgd_update(cfg: &OptimConfig, p: &mut Param, g: &Tensor, lr: f64, mu: f64) {
    let wd = p.weight_decay(cfg);
    let d = if wd != 0.0 {
        g + &p.tensor * wd
    } else {
        g.shallow_clone()
    };
    match cfg.momentum_convention {
        MomentumConvention::Pytorch => {
            let step = if mu != 0.0 {
                match &mut p.buf {
                    None => p.buf = Some(d.detach().copy()),
                    Some(b) => {
                        let _ = b.g_mul_scalar_(mu);
                        if cfg.dampening == 0.0 {
                            let _ = b.g_add_(&d);
                        } else {
                            let _ = b.g_add_(&(&d * (1.0 - cfg.dampening)));
                        }
                    }
                }
                let b = p.buf.as_ref().expect("buffer set above");
                if cfg.nesterov {
                    &d + b * mu
                } else {
                    b.shallow_clone()
                }
            } else {
                d
            };
            let _ = p.tensor.g_sub_(&(step * lr));
        }
        MomentumConvention::Caffe => {
            let b = p.buf.get_or_insert_with(|| p.tensor.zeros_like());
            if cfg.nesterov {
                let old = b.copy();
                let _ = b.g_mul_scalar_(mu);
                let _ = b.g_add_(&(&d * lr));
                let upd = &*b * (1.0 + mu) - old * mu;
                let _ = p.tensor.g_sub_(&upd);
            } else {
                let _ = b.g_mul_scalar_(mu);
                let _ = b.g_add_(&(&d * lr));
                let _ = p.tensor.g_sub_(b);
            }
        }
    }
}

fn adamw_update(cfg: &OptimConfig, p: &mut Param, g: &Tensor, lr: f64, beta1: f64, t: i64) {
    let wd = p.weight_decay(cfg);
    if wd != 0.0 {
        let _ = p.tensor.g_mul_scalar_(1.0 - lr * wd);
    }
    let m = p.buf.get_or_insert_with(|| p.tensor.zeros_like());
    let _ = m.lerp_(g, 1.0 - beta1);
    let v = p.buf2.get_or_insert_with(|| p.tensor.zeros_like());
    let _ = v.g_mul_scalar_(cfg.beta2);
    let _ = v.addcmul_(g, &(g * (1.0 - cfg.beta2)));
    let bc1 = 1.0 - beta1.powi(t as i32);
    let bc2 = 1.0 - cfg.beta2.powi(t as i32);
    let step_size = lr / bc1;
    let denom = v.sqrt() / bc2.sqrt() + cfg.eps;
    let _ = p.tensor.addcdiv_(&*m, &(&denom * (-1.0 / step_size)));
}
