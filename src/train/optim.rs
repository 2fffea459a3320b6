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

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::{nn::VarStore, Tensor};

/// Which optimizer to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimKind {
    /// Stochastic gradient descent with momentum.
    Sgd,
    /// Adam with decoupled weight decay (Loshchilov & Hutter).
    Adamw,
}

/// Where the learning rate sits in SGD's momentum update (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MomentumConvention {
    /// `buf = μ·buf + g; p −= lr·buf` (PyTorch, tch).
    Pytorch,
    /// `v = μ·v + lr·g; p −= v` (Caffe, Lasagne: the papers' own code).
    Caffe,
}

/// Which parameters receive weight decay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WdScope {
    /// Convolution and linear weights only (tensors of rank >= 2); not BN, not biases.
    Weights,
    /// Every trainable parameter.
    All,
}

/// The `[optim]` table of a run config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// `sgd` (default) or `adamw`.
    pub kind: OptimKind,
    /// Momentum (SGD) or beta1 (AdamW) used when the schedule does not set it. Default 0.9.
    pub momentum: f64,
    /// Nesterov momentum (SGD). Default false.
    pub nesterov: bool,
    /// Dampening τ (SGD, PyTorch convention only). Default 0.
    pub dampening: f64,
    /// Weight decay: L2 added to the gradient (SGD) or decoupled (AdamW). Default 5e-4.
    pub weight_decay: f64,
    /// Which parameters are decayed. Default `weights`.
    pub wd_scope: WdScope,
    /// SGD momentum convention. Default `pytorch`.
    pub momentum_convention: MomentumConvention,
    /// AdamW beta2. Default 0.999.
    pub beta2: f64,
    /// AdamW epsilon. Default 1e-8.
    pub eps: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            kind: OptimKind::Sgd,
            momentum: 0.9,
            nesterov: false,
            dampening: 0.0,
            weight_decay: 5e-4,
            wd_scope: WdScope::Weights,
            momentum_convention: MomentumConvention::Pytorch,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

impl OptimConfig {
    /// Check value ranges; errors name the key (`optim.momentum = 1.5: ...`).
    pub fn validate(&self) -> Result<()> {
        let unit = |k: &str, v: f64| -> Result<()> {
            if !(0.0..1.0).contains(&v) {
                crate::bail_input!("optim.{k} = {v}: must be in [0, 1)");
            }
            Ok(())
        };
        unit("momentum", self.momentum)?;
        unit("dampening", self.dampening)?;
        unit("beta2", self.beta2)?;
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            crate::bail_input!(
                "optim.weight_decay = {}: must be a finite number >= 0",
                self.weight_decay
            );
        }
        if self.eps.is_nan() || self.eps <= 0.0 {
            crate::bail_input!("optim.eps = {}: must be > 0", self.eps);
        }
        if self.nesterov && self.kind == OptimKind::Adamw {
            crate::bail_input!("optim.nesterov = true: only valid with optim.kind = \"sgd\"");
        }
        if self.nesterov && self.dampening != 0.0 {
            crate::bail_input!(
                "optim.nesterov = true with optim.dampening = {}: Nesterov needs zero dampening",
                self.dampening
            );
        }
        if self.dampening != 0.0 && self.momentum_convention == MomentumConvention::Caffe {
            crate::bail_input!(
                "optim.dampening = {}: the caffe momentum convention has no dampening",
                self.dampening
            );
        }
        Ok(())
    }
}

struct Param {
    name: String,
    tensor: Tensor,
    decay: bool,
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
        let params = named
            .into_iter()
            .map(|(name, tensor)| {
                let decay = match cfg.wd_scope {
                    WdScope::All => true,
                    WdScope::Weights => tensor.dim() >= 2,
                };
                Param {
                    name,
                    tensor,
                    decay,
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

    /// Restore the state written by [`Optimizer::state`]; `tensors` may hold other entries.
    pub fn load_state(&mut self, tensors: &BTreeMap<String, Tensor>, steps: i64) -> Result<()> {
        for p in &mut self.params {
            p.buf = load_buf(tensors, &format!("optim.buf.{}", p.name), &p.tensor)?;
            p.buf2 = load_buf(tensors, &format!("optim.buf2.{}", p.name), &p.tensor)?;
        }
        self.steps = steps;
        Ok(())
    }
}

fn load_buf(
    tensors: &BTreeMap<String, Tensor>,
    key: &str,
    like: &Tensor,
) -> Result<Option<Tensor>> {
    match tensors.get(key) {
        None => Ok(None),
        Some(t) => {
            if t.size() != like.size() {
                anyhow::bail!(
                    "checkpoint entry {key} has shape {:?}, expected {:?}",
                    t.size(),
                    like.size()
                );
            }
            let t = t
                .f_to_device(like.device())
                .and_then(|t| t.f_to_kind(like.kind()))
                .with_context(|| format!("checkpoint entry {key}"))?;
            Ok(Some(t.detach().copy()))
        }
    }
}

fn sgd_update(cfg: &OptimConfig, p: &mut Param, g: &Tensor, lr: f64, mu: f64) {
    let wd = if p.decay { cfg.weight_decay } else { 0.0 };
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
    if p.decay && cfg.weight_decay != 0.0 {
        let _ = p.tensor.g_mul_scalar_(1.0 - lr * cfg.weight_decay);
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
