//! The papers' networks, initialised as their reference codes do (PyTorch/torchvision, Caffe
//! prototxts, the official WRN code), never with tch's own defaults.
//!
//! | arch | family (file) | reference | init (see each file) |
//! |---|---|---|---|
//! | `lenet` | [`lenet`] | Caffe `lenet_train_test.prototxt` | Caffe xavier, bias 0 |
//! | `caffe_cifar` | [`caffe_cifar`] | Caffe `cifar10_full_train_test.prototxt` (CLR Table 1) | Caffe gaussian, bias 0 |
//! | `resnet8`, `resnet14`, `resnet20` … `resnet110` | [`resnet_cifar`] | He et al. 2016 via akamaster | kaiming_normal fan_in |
//! | `preact_resnet18` | [`preact`] | kuangliu/pytorch-cifar | PyTorch defaults |
//! | `wrn_<depth>_<k>` | [`wrn`] | official WRN code (SGDR: `wrn_28_10`) | kaiming_normal fan_out |
//! | `resnet9` | [`resnet9`] | Page's DAWNBench net | PyTorch defaults |
//! | `resnet18/34/50` | [`imagenet`] | torchvision | kaiming_normal fan_out |
//!
//! Every batch norm starts at γ = 1, β = 0 with eps 1e-5. Inputs are NCHW; every network takes
//! any channel count and class count, and any image size its pooling allows (global pooling
//! where the reference pools a fixed 4×4 or 8×8 map).
//!
//! Variables are named after the reference code (`layer1.0.conv1.weight`), created in the
//! reference's order, so a seed (`tch::manual_seed`) gives the same weights every time.

pub mod caffe_cifar;
pub mod imagenet;
pub mod init;
pub mod lenet;
pub mod preact;
pub mod resnet9;
pub mod resnet_caffe;
pub mod resnet_cifar;
pub mod wrn;

use crate::bail_input;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Tensor};

/// The shortcut of a CIFAR ResNet block whose shape changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Shortcut {
    /// Subsample and zero-pad the channels: no parameters (He et al.'s CIFAR choice).
    #[default]
    A,
    /// 1×1 convolution + batch norm.
    B,
}

/// The `[model]` table of a run config.
///
/// Keys and defaults:
/// - `arch` (required): a name of [`names`], or any `wrn_<depth>_<k>` with depth = 6n+4.
/// - `shortcut` = `"A"`: `"A"` or `"B"`, CIFAR ResNets (`resnet8` … `resnet110`) only.
/// - `dropout` = 0.0: in [0, 1), WRNs only (between the two convs of each block).
/// - `bn_momentum` = 0.1: running-average momentum in the torch convention,
///   `running = (1 − m)·running + m·batch`, in (0, 1]. Caffe's `moving_average_fraction` f
///   is m = 1 − f (0.999 → 0.001), but Caffe's statistics are bias-corrected: use
///   `bn_stats = "caffe"` with it. Networks with batch norm only.
/// - `bn_stats` = `"torch"`: how evaluation reads the BN running statistics. `"caffe"`:
///   bias-corrected, as Caffe's BatchNorm layer keeps them (it divides its accumulators by
///   their normaliser; torch's average starts from mean 0 / variance 1 and keeps weight fⁿ on
///   them). Networks with batch norm only; see [`caffe_bn_stats`].
/// - `bn_eps` = 1e-5: the ε of every batch norm, in (0, 1) (Lasagne's 1e-4 for SGDR's code).
///   Networks with batch norm only.
/// - `zero_init_residual` = false: start the last BN γ of each residual branch at 0
///   (torchvision's option); networks whose residual branch ends in a BN only (CIFAR
///   ResNets, `resnet9`, torchvision ResNets).
///
/// A key at its default is accepted for every arch. A non-default value that the arch cannot
/// use (e.g. `shortcut = "B"` for `wrn_28_10`) is an input error rather than silently
/// ignored, so a config always describes the network it trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Architecture name.
    pub arch: String,
    /// CIFAR ResNet shortcut option.
    #[serde(default)]
    pub shortcut: Shortcut,
    /// WRN dropout probability.
    #[serde(default)]
    pub dropout: f64,
    /// Batch-norm running-average momentum (torch convention).
    #[serde(default = "default_bn_momentum")]
    pub bn_momentum: f64,
    /// Zero-initialise the last BN γ of each residual branch.
    #[serde(default)]
    pub zero_init_residual: bool,
    /// How evaluation reads the BN running statistics.
    #[serde(default)]
    pub bn_stats: BnStats,
    /// The ε added to the batch variance in every batch norm (PyTorch's 1e-5; Lasagne's, in
    /// SGDR's code, 1e-4). Written in `config.toml` only when not the default.
    #[serde(default = "default_bn_eps", skip_serializing_if = "is_default_bn_eps")]
    pub bn_eps: f64,
    /// While training, normalise each run of this many consecutive examples by its own
    /// statistics, as per-device batch norm does with this many examples on each device
    /// (ghost batch norm; the running statistics follow the first). 0 (default): the whole
    /// batch, or each process's share of it. Written in `config.toml` only when set.
    #[serde(default, skip_serializing_if = "is_zero_usize")]
    pub ghost_batch: usize,
}

fn is_zero_usize(x: &usize) -> bool {
    *x == 0
}

/// PyTorch's `nn.BatchNorm2d` default ε.
fn default_bn_eps() -> f64 {
    1e-5
}

fn is_default_bn_eps(x: &f64) -> bool {
    *x == default_bn_eps()
}

/// How evaluation reads batch norm's running statistics (`model.bn_stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BnStats {
    /// As kept: torch's exponential average from mean 0 and variance 1.
    #[default]
    Torch,
    /// Bias-corrected like Caffe's (the Super-Convergence paper's framework).
    Caffe,
}

/// Put Caffe's view of the running statistics into every batch-norm layer of `vs` after `n`
/// training passes with torch momentum `momentum` (Caffe's f = 1 − momentum): the average
/// divided by its normaliser, `mean / (1 − fⁿ)` and `(var − fⁿ) / (1 − fⁿ)` (torch's running
/// variance starts at 1, its mean at 0). Returns the raw values, which [`restore_vars`] puts
/// back (checkpoints keep them, so resume stays exact). Nothing changes when `n` is 0.
pub fn caffe_bn_stats(vs: &nn::VarStore, momentum: f64, n: u64) -> Vec<(String, Tensor)> {
    let fn_ = (1.0 - momentum).powf(n as f64);
    if n == 0 || fn_ >= 1.0 {
        return Vec::new();
    }
    let mut saved = Vec::new();
    tch::no_grad(|| {
        for (name, mut v) in vs.variables() {
            let corrected = if name.ends_with("running_mean") {
                v.to_kind(tch::Kind::Double) / (1.0 - fn_)
            } else if name.ends_with("running_var") {
                (v.to_kind(tch::Kind::Double) - fn_) / (1.0 - fn_)
            } else {
                continue;
            };
            saved.push((name, v.copy()));
            v.copy_(&corrected.to_kind(v.kind()));
        }
    });
    saved
}

/// Put in place the batch-norm statistics that evaluation after `n` training steps reads:
/// Caffe's bias-corrected ones under `bn_stats = "caffe"` ([`caffe_bn_stats`]), torch's own
/// otherwise. Returns what [`restore_vars`] puts back afterwards (empty when nothing changed).
pub fn eval_bn_stats(vs: &nn::VarStore, cfg: &ModelConfig, n: u64) -> Vec<(String, Tensor)> {
    match cfg.bn_stats {
        BnStats::Caffe => caffe_bn_stats(vs, cfg.bn_momentum, n),
        BnStats::Torch => Vec::new(),
    }
}

/// Copy saved values back into the variables of `vs` they were taken from.
pub fn restore_vars(vs: &nn::VarStore, saved: &[(String, Tensor)]) {
    let now = vs.variables();
    tch::no_grad(|| {
        for (name, v) in saved {
            if let Some(mut t) = now.get(name).map(|t| t.shallow_clone()) {
                t.copy_(v);
            }
        }
    });
}

/// PyTorch's `nn.BatchNorm2d` default momentum.
fn default_bn_momentum() -> f64 {
    0.1
}

impl Default for ModelConfig {
    /// `resnet20`, shortcut A, no dropout, BN momentum 0.1, no zero init.
    fn default() -> Self {
        ModelConfig {
            arch: "resnet20".into(),
            shortcut: Shortcut::A,
            dropout: 0.0,
            bn_momentum: default_bn_momentum(),
            zero_init_residual: false,
            bn_stats: BnStats::Torch,
            bn_eps: default_bn_eps(),
            ghost_batch: 0,
        }
    }
}

/// A parsed architecture name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Caffe LeNet.
    LeNet,
    /// Caffe CIFAR-10 "full".
    CaffeCifar,
    /// He et al. CIFAR ResNet of the given depth (20, 32, 44, 56, 110).
    ResNetCifar(i64),
    /// The super-convergence authors' Caffe CIFAR ResNet of the given depth (20, 56, 110).
    ResNetCaffe(i64),
    /// kuangliu's PreActResNet-18.
    PreActResNet18,
    /// WRN-depth-k.
    Wrn {
        /// Depth, 6n+4.
        depth: i64,
        /// Widening factor.
        k: i64,
    },
    /// Page's ResNet-9.
    ResNet9,
    /// torchvision ImageNet ResNet of the given depth (18, 34, 50).
    ResNet(i64),
}

/// Every fixed architecture name, in the order `lrlab models` lists them.
const NAMES: [&str; 19] = [
    "lenet",
    "caffe_cifar",
    "resnet8",
    "resnet14",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
    "resnet20_caffe",
    "resnet56_caffe",
    "resnet110_caffe",
    "preact_resnet18",
    "wrn_16_8",
    "wrn_28_10",
    "resnet9",
    "resnet18",
    "resnet34",
    "resnet50",
];

/// Every architecture name [`build`] accepts, as listed by `lrlab models` (WRNs as
/// `wrn_16_8` and `wrn_28_10`; any `wrn_<depth>_<k>` with depth = 6n+4 also builds).
pub fn names() -> Vec<&'static str> {
    NAMES.to_vec()
}

impl Arch {
    /// Parse an architecture name; unknown names are input errors listing the valid ones.
    pub fn parse(name: &str) -> Result<Arch> {
        let arch = match name {
            "lenet" => Arch::LeNet,
            "caffe_cifar" => Arch::CaffeCifar,
            "resnet8" => Arch::ResNetCifar(8),
            "resnet14" => Arch::ResNetCifar(14),
            "resnet20" => Arch::ResNetCifar(20),
            "resnet32" => Arch::ResNetCifar(32),
            "resnet44" => Arch::ResNetCifar(44),
            "resnet56" => Arch::ResNetCifar(56),
            "resnet110" => Arch::ResNetCifar(110),
            "resnet20_caffe" => Arch::ResNetCaffe(20),
            "resnet56_caffe" => Arch::ResNetCaffe(56),
            "resnet110_caffe" => Arch::ResNetCaffe(110),
            "preact_resnet18" => Arch::PreActResNet18,
            "resnet9" => Arch::ResNet9,
            "resnet18" => Arch::ResNet(18),
            "resnet34" => Arch::ResNet(34),
            "resnet50" => Arch::ResNet(50),
            _ => match name.strip_prefix("wrn_") {
                Some(rest) => Self::parse_wrn(name, rest)?,
                None => bail_input!(
                    "model.arch = \"{name}\": unknown architecture; valid: {}, or \
                     wrn_<depth>_<k> with depth = 6n+4",
                    NAMES.join(", ")
                ),
            },
        };
        Ok(arch)
    }

    /// Parse the `<depth>_<k>` of `wrn_<depth>_<k>`.
    fn parse_wrn(name: &str, rest: &str) -> Result<Arch> {
        let parsed = rest
            .split_once('_')
            .and_then(|(d, k)| Some((d.parse::<i64>().ok()?, k.parse::<i64>().ok()?)));
        let Some((depth, k)) = parsed else {
            bail_input!(
                "model.arch = \"{name}\": expected wrn_<depth>_<k> with integers, e.g. wrn_28_10"
            );
        };
        if depth < 10 || (depth - 4) % 6 != 0 {
            bail_input!(
                "model.arch = \"{name}\": WRN depth {depth} must be 6n+4 with n >= 1 \
                 (10, 16, 22, 28, 34, 40, ...)"
            );
        }
        if k < 1 {
            bail_input!("model.arch = \"{name}\": WRN widening factor {k} must be >= 1");
        }
        Ok(Arch::Wrn { depth, k })
    }

    /// True for the CIFAR ResNets, the only networks with a shortcut option.
    fn has_shortcut_option(self) -> bool {
        matches!(self, Arch::ResNetCifar(_))
    }

    /// True for the networks with dropout.
    fn has_dropout(self) -> bool {
        matches!(self, Arch::Wrn { .. })
    }

    /// True for the networks with batch norm.
    fn has_batch_norm(self) -> bool {
        !matches!(self, Arch::LeNet | Arch::CaffeCifar)
    }

    /// True where each residual branch ends in a batch norm (post-activation blocks).
    fn has_residual_bn(self) -> bool {
        matches!(
            self,
            Arch::ResNetCifar(_) | Arch::ResNetCaffe(_) | Arch::ResNet9 | Arch::ResNet(_)
        )
    }

    /// True for the ImageNet networks (listed at 224×224 by `lrlab models`).
    pub fn is_imagenet(self) -> bool {
        matches!(self, Arch::ResNet(_))
    }
}

impl ModelConfig {
    /// Check the config without building anything (for validating a run config early):
    /// the arch name, the value ranges, and that every non-default key applies to the arch.
    /// [`build`] runs the same checks.
    pub fn validate(&self) -> Result<Arch> {
        let arch = Arch::parse(&self.arch)?;
        self.check(arch)?;
        Ok(arch)
    }

    /// True when the network has batch norm (false for an unknown arch, which
    /// [`ModelConfig::validate`] refuses).
    pub fn has_batch_norm(&self) -> bool {
        Arch::parse(&self.arch).is_ok_and(|a| a.has_batch_norm())
    }

    /// Check the values and that every non-default key applies to `arch`.
    fn check(&self, arch: Arch) -> Result<()> {
        let name = &self.arch;
        if !(self.bn_momentum > 0.0 && self.bn_momentum <= 1.0) {
            bail_input!(
                "model.bn_momentum = {}: must be in (0, 1] (torch convention; Caffe \
                 moving_average_fraction 0.999 is 0.001)",
                self.bn_momentum
            );
        }
        if !(0.0..1.0).contains(&self.dropout) {
            bail_input!("model.dropout = {}: must be in [0, 1)", self.dropout);
        }
        if self.shortcut != Shortcut::A && !arch.has_shortcut_option() {
            bail_input!(
                "model.shortcut = \"{:?}\": only the CIFAR ResNets (resnet8 ... resnet110) \
                 have a shortcut option, not {name}",
                self.shortcut
            );
        }
        if self.dropout != 0.0 && !arch.has_dropout() {
            bail_input!(
                "model.dropout = {}: only the WRNs (wrn_<depth>_<k>) have dropout, not {name}",
                self.dropout
            );
        }
        if self.bn_momentum != default_bn_momentum() && !arch.has_batch_norm() {
            bail_input!(
                "model.bn_momentum = {}: {name} has no batch norm",
                self.bn_momentum
            );
        }
        if !(self.bn_eps > 0.0 && self.bn_eps < 1.0) {
            bail_input!("model.bn_eps = {}: must be in (0, 1)", self.bn_eps);
        }
        if self.bn_eps != default_bn_eps() && !arch.has_batch_norm() {
            bail_input!("model.bn_eps = {}: {name} has no batch norm", self.bn_eps);
        }
        if self.bn_stats != BnStats::Torch && !arch.has_batch_norm() {
            bail_input!("model.bn_stats = \"caffe\": {name} has no batch norm");
        }
        if self.ghost_batch != 0 && !arch.has_batch_norm() {
            bail_input!(
                "model.ghost_batch = {}: {name} has no batch norm",
                self.ghost_batch
            );
        }
        if self.zero_init_residual && !arch.has_residual_bn() {
            bail_input!(
                "model.zero_init_residual = true: {name} has no batch norm closing its \
                 residual branches (only the CIFAR ResNets, resnet9 and resnet18/34/50 do)"
            );
        }
        Ok(())
    }
}

/// A built network: `forward_t(x, train)` maps `[N, C, H, W]` to logits `[N, classes]`.
#[derive(Debug)]
pub struct Model {
    /// The network.
    pub net: Box<dyn nn::ModuleT>,
    /// Its architecture name (`ModelConfig::arch`).
    pub arch: String,
}

impl nn::ModuleT for Model {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.net.forward_t(xs, train)
    }
}

/// Build `cfg.arch` under `path` for `in_channels`×`image_size`×`image_size` inputs and
/// `num_classes` outputs; variables are created on the VarStore's device.
///
/// Errors (input errors): an unknown arch, a bad or inapplicable config value, a
/// non-positive shape, an image too small for the network's pooling.
pub fn build(
    path: &nn::Path,
    cfg: &ModelConfig,
    in_channels: i64,
    num_classes: i64,
    image_size: i64,
) -> Result<Model> {
    for (what, v) in [
        ("input channel count", in_channels),
        ("class count", num_classes),
        ("image size", image_size),
    ] {
        if v < 1 {
            bail_input!("{what} {v} for model {}: must be >= 1", cfg.arch);
        }
    }
    let arch = cfg.validate()?;
    let (bn_momentum, zero_init_residual) = (cfg.bn_momentum, cfg.zero_init_residual);
    // Every batch norm built below takes its ε and ghost batch from here (one setting for
    // the network).
    let _bn = init::BnBuild::set(cfg.bn_eps, cfg.ghost_batch as i64);
    let net: Box<dyn nn::ModuleT> = match arch {
        Arch::LeNet => Box::new(lenet::LeNet::new(
            path,
            in_channels,
            num_classes,
            image_size,
        )?),
        Arch::CaffeCifar => Box::new(caffe_cifar::CaffeCifar::new(
            path,
            in_channels,
            num_classes,
            image_size,
        )?),
        Arch::ResNetCifar(depth) => Box::new(resnet_cifar::ResNetCifar::new(
            path,
            depth,
            in_channels,
            num_classes,
            resnet_cifar::Options {
                shortcut: cfg.shortcut,
                bn_momentum,
                zero_init_residual,
            },
        )),
        Arch::ResNetCaffe(depth) => Box::new(resnet_caffe::ResNetCaffe::new(
            path,
            depth,
            in_channels,
            num_classes,
            resnet_caffe::Options {
                bn_momentum,
                zero_init_residual,
            },
        )),
        Arch::PreActResNet18 => Box::new(preact::PreActResNet18::new(
            path,
            in_channels,
            num_classes,
            bn_momentum,
        )),
        Arch::Wrn { depth, k } => Box::new(wrn::Wrn::new(
            path,
            depth,
            k,
            in_channels,
            num_classes,
            wrn::Options {
                dropout: cfg.dropout,
                bn_momentum,
            },
        )),
        Arch::ResNet9 => Box::new(resnet9::ResNet9::new(
            path,
            in_channels,
            num_classes,
            image_size,
            resnet9::Options {
                bn_momentum,
                zero_init_residual,
            },
        )?),
        Arch::ResNet(depth) => Box::new(imagenet::ResNet::new(
            path,
            depth,
            in_channels,
            num_classes,
            imagenet::Options {
                bn_momentum,
                zero_init_residual,
            },
        )),
    };
    Ok(Model {
        net,
        arch: cfg.arch.clone(),
    })
}

/// Trainable parameter count of a VarStore (BN running statistics excluded).
pub fn count_params(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum()
}

/// One row of [`param_table`]: the model name, the image side its count assumes, and its
/// parameter count, or why it cannot be built for that input.
pub type ParamRow = (String, i64, std::result::Result<i64, String>);

/// Parameter count of every model of [`names`] for `classes` outputs and `in_channels`-channel
/// inputs of side `size` (None: 224 for the ImageNet models, 32 for the others). Models that
/// cannot take that size carry the reason instead of a count. Built on the CPU.
pub fn param_table(classes: i64, in_channels: i64, size: Option<i64>) -> Result<Vec<ParamRow>> {
    if let Some(s) = size.filter(|&s| s < 1) {
        bail_input!("--size {s}: must be >= 1");
    }
    if classes < 1 {
        bail_input!("--classes {classes}: must be >= 1");
    }
    if in_channels < 1 {
        bail_input!("--in-channels {in_channels}: must be >= 1");
    }
    let mut rows = Vec::new();
    for name in names() {
        let (s, built) = build_default(name, classes, in_channels, size)?;
        let count = match built {
            Ok(vs) => Ok(count_params(&vs)),
            Err(e) if crate::is_input_error(&e) => Err(e.to_string()),
            Err(e) => return Err(e),
        };
        rows.push((name.to_string(), s, count));
    }
    Ok(rows)
}

/// `arch` with its default settings on a CPU VarStore, for `classes` outputs and
/// `in_channels`-channel inputs of side `size` (None: 224 for the ImageNet models, 32 for the
/// others): the side used, and the VarStore or why it cannot be built. An unknown name is
/// the outer error.
fn build_default(
    arch: &str,
    classes: i64,
    in_channels: i64,
    size: Option<i64>,
) -> Result<(i64, Result<nn::VarStore>)> {
    let parsed = Arch::parse(arch)?;
    let s = size.unwrap_or(if parsed.is_imagenet() { 224 } else { 32 });
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = ModelConfig {
        arch: arch.to_string(),
        ..Default::default()
    };
    // Building draws the initial weights: no gradient graph needed.
    let built = tch::no_grad(|| build(&vs.root(), &cfg, in_channels, classes, s));
    Ok((s, built.map(|_| vs)))
}

/// The trainable parameters of `arch` built for `classes` outputs and `in_channels`-channel
/// inputs of side `size` (None: as [`param_table`]): name and shape, in name order (the
/// names `[[optim.group]]` patterns and the per-layer logs use).
pub fn param_names(
    arch: &str,
    classes: i64,
    in_channels: i64,
    size: Option<i64>,
) -> Result<Vec<(String, Vec<i64>)>> {
    let vs = build_default(arch, classes, in_channels, size)?.1?;
    let mut out: Vec<(String, Vec<i64>)> = vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .map(|(n, t)| (n, t.size()))
        .collect();
    out.sort();
    Ok(out)
}

/// Give every rank-4 variable of `vs` (the conv weights) channels-last (NHWC) strides in place;
/// values are unchanged. tch has no memory-format argument, so this permutes by hand. Call it
/// before building the optimizer (it replaces the storage) and feed inputs through
/// [`crate::util::channels_last`].
pub fn weights_to_channels_last(vs: &nn::VarStore) {
    tch::no_grad(|| {
        for (_, mut v) in vs.variables() {
            if v.dim() == 4 {
                let cl = crate::util::channels_last(&v);
                v.set_data(&cl);
            }
        }
    });
}

/// Smallest image side for which `spatial` (side of a network's last feature map) is defined.
pub(crate) fn min_size(spatial: impl Fn(i64) -> Option<i64>) -> i64 {
    (1..).find(|&s| spatial(s).is_some()).unwrap_or(i64::MAX)
}
