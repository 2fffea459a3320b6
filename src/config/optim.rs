//! The `[optim]` table: which optimizer and its hyper-parameters (the update rules are in
//! [`crate::train::optim`]).

use anyhow::Result;
use serde::{Deserialize, Serialize};

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
    /// Those weights and batch norm's scale γ, not biases or BN's shift β: Lasagne's
    /// `regularize_layer_params(layers, l2)`, which SGDR's code uses (its `BatchNormLayer`
    /// marks γ regularizable).
    WeightsAndGamma,
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
    /// Learning-rate multiplier of convolution and linear biases, Caffe's `lr_mult` on the
    /// bias blob (2 in the CLR and super-convergence prototxts). Default 1 (and then left out
    /// of the written config, so that run ids stay as they were).
    #[serde(skip_serializing_if = "is_one")]
    pub bias_lr_mult: f64,
    /// Weight-decay multiplier of those biases, Caffe's `decay_mult` (0 in those prototxts);
    /// it scales the decay `wd_scope` gives them. Default 1 (left out of the written config).
    #[serde(skip_serializing_if = "is_one")]
    pub bias_decay_mult: f64,
    /// Per-parameter multipliers, Caffe's `param { lr_mult decay_mult }` on any blob
    /// (`[[optim.group]]` tables): each parameter takes the first group whose `params` pattern
    /// matches its name; biases that no group matches take `bias_lr_mult` /
    /// `bias_decay_mult`, everything else 1 and 1. Default none (left out of the written
    /// config).
    #[serde(rename = "group", skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<ParamGroup>,
}

/// One `[[optim.group]]`: the parameters whose names match `params` (a glob over the names
/// `lrlab models --params ARCH` prints: `*` any run of characters, `?` one, `[abc]` a set)
/// and their multipliers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamGroup {
    /// Name pattern (`"linear.*"`, `"*.bias"`, `"layer1.*.conv?.weight"`).
    pub params: String,
    /// Learning-rate multiplier (Caffe's `lr_mult`). Default 1.
    #[serde(default = "one")]
    pub lr_mult: f64,
    /// Multiplier of the weight decay `wd_scope` gives these parameters (Caffe's
    /// `decay_mult`). Default 1.
    #[serde(default = "one")]
    pub decay_mult: f64,
}

fn one() -> f64 {
    1.0
}

impl ParamGroup {
    /// The compiled pattern; an input error naming the group when it is not a valid glob.
    pub fn pattern(&self, index: usize) -> Result<glob::Pattern> {
        glob::Pattern::new(&self.params).map_err(|e| {
            crate::error::input_error(format!(
                "optim.group[{index}].params = {:?}: not a valid pattern ({e})",
                self.params
            ))
        })
    }
}

fn is_one(x: &f64) -> bool {
    *x == 1.0
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
            bias_lr_mult: 1.0,
            bias_decay_mult: 1.0,
            groups: Vec::new(),
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
        for (k, v) in [
            ("bias_lr_mult", self.bias_lr_mult),
            ("bias_decay_mult", self.bias_decay_mult),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                crate::bail_input!("optim.{k} = {v}: must be a finite number >= 0");
            }
        }
        for (i, g) in self.groups.iter().enumerate() {
            g.pattern(i)?;
            for (k, v) in [("lr_mult", g.lr_mult), ("decay_mult", g.decay_mult)] {
                if !(v >= 0.0 && v.is_finite()) {
                    crate::bail_input!("optim.group[{i}].{k} = {v}: must be a finite number >= 0");
                }
            }
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
