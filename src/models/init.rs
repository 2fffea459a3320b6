//! Layer constructors with the initialisations of the reference codes.
//!
//! tch's own defaults differ from PyTorch (conv/linear weights kaiming_uniform with the ReLU
//! gain, BN γ ~ U(0,1)), so every layer of the zoo is built here with an explicit rule:
//!
//! | rule | weight | used by |
//! |---|---|---|
//! | [`WeightInit::TorchDefault`] | U(±1/√fan_in) (`kaiming_uniform_(a=√5)`) | PyTorch `nn.Conv2d`/`nn.Linear` |
//! | [`WeightInit::KaimingNormalFanIn`] | N(0, 2/fan_in) (`kaiming_normal_(w)`) | akamaster CIFAR ResNets |
//! | [`WeightInit::KaimingNormalFanOut`] | N(0, 2/fan_out) | torchvision ResNets, official WRN |
//! | [`WeightInit::CaffeXavier`] | U(±√(3/fan_in)) | Caffe `xavier` filler |
//! | [`WeightInit::Gaussian`] | N(0, σ²) | Caffe `gaussian` filler |
//!
//! fan_in = in·kh·kw and fan_out = out·kh·kw, as in `torch.nn.init._calculate_fan_in_and_fan_out`
//! and Caffe's fillers. Batch-norm layers always start at γ = 1, β = 0 (PyTorch), unless a
//! residual branch's last γ is zeroed on request.

use tch::nn::init::{FanInOut, NonLinearity, NormalOrUniform};
use tch::nn::{self, Init};
use tch::Tensor;

/// How a conv or linear weight is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WeightInit {
    /// PyTorch's default for `nn.Conv2d` and `nn.Linear`: `kaiming_uniform_(a=√5)`, which is
    /// U(±1/√fan_in).
    TorchDefault,
    /// `kaiming_normal_(w)` (mode fan_in, ReLU gain √2): N(0, 2/fan_in).
    KaimingNormalFanIn,
    /// `kaiming_normal_(w, mode="fan_out", nonlinearity="relu")`: N(0, 2/fan_out).
    KaimingNormalFanOut,
    /// Caffe's `xavier` filler with the default `variance_norm: FAN_IN`: U(±√(3/fan_in)).
    CaffeXavier,
    /// Caffe's `gaussian` filler: N(0, std²).
    Gaussian(f64),
}

/// How a bias is initialised, or that the layer has none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BiasInit {
    /// No bias (the layer is followed by batch norm, or the reference has none).
    None,
    /// PyTorch's default bias: U(±1/√fan_in).
    TorchDefault,
    /// Zero (Caffe's `constant` filler, Torch7 `bias:zero()`).
    Zero,
}

/// fan_in and fan_out of a weight of shape `[out, in, k...]`.
fn fans(dims: &[i64]) -> (i64, i64) {
    let receptive: i64 = dims.iter().skip(2).product();
    (dims[1] * receptive, dims[0] * receptive)
}

impl WeightInit {
    /// The tch initialiser for a weight of shape `dims` (`[out, in, kh, kw]` or `[out, in]`).
    pub fn to_tch(self, dims: &[i64]) -> Init {
        let (fan_in, _) = fans(dims);
        match self {
            WeightInit::TorchDefault => {
                let b = 1.0 / (fan_in as f64).sqrt();
                Init::Uniform { lo: -b, up: b }
            }
            WeightInit::KaimingNormalFanIn => Init::Kaiming {
                dist: NormalOrUniform::Normal,
                fan: FanInOut::FanIn,
                non_linearity: NonLinearity::ReLU,
            },
            WeightInit::KaimingNormalFanOut => Init::Kaiming {
                dist: NormalOrUniform::Normal,
                fan: FanInOut::FanOut,
                non_linearity: NonLinearity::ReLU,
            },
            WeightInit::CaffeXavier => {
                let b = (3.0 / fan_in as f64).sqrt();
                Init::Uniform { lo: -b, up: b }
            }
            WeightInit::Gaussian(std) => Init::Randn {
                mean: 0.0,
                stdev: std,
            },
        }
    }

    /// The standard deviation this rule gives a weight of shape `dims` (for documentation
    /// and tests): uniform U(±b) has std b/√3.
    pub fn expected_std(self, dims: &[i64]) -> f64 {
        let (fan_in, fan_out) = fans(dims);
        match self {
            WeightInit::TorchDefault => 1.0 / (3.0 * fan_in as f64).sqrt(),
            WeightInit::KaimingNormalFanIn => (2.0 / fan_in as f64).sqrt(),
            WeightInit::KaimingNormalFanOut => (2.0 / fan_out as f64).sqrt(),
            WeightInit::CaffeXavier => (1.0 / fan_in as f64).sqrt(),
            WeightInit::Gaussian(std) => std,
        }
    }
}

impl BiasInit {
    /// The tch initialiser for the bias of a layer with `fan_in` inputs (None: no bias).
    fn to_tch(self, fan_in: i64) -> Option<Init> {
        match self {
            BiasInit::None => None,
            BiasInit::TorchDefault => {
                let b = 1.0 / (fan_in as f64).sqrt();
                Some(Init::Uniform { lo: -b, up: b })
            }
            BiasInit::Zero => Some(Init::Const(0.0)),
        }
    }
}

/// Shape and initialisation of a square 2-D convolution.
#[derive(Debug, Clone, Copy)]
pub struct ConvSpec {
    /// Kernel size (k×k).
    pub k: i64,
    /// Stride.
    pub stride: i64,
    /// Zero padding on each side.
    pub padding: i64,
    /// Weight rule.
    pub weight: WeightInit,
    /// Bias rule.
    pub bias: BiasInit,
}

impl ConvSpec {
    /// A k×k convolution with `weight` init and no bias, stride 1, padding k/2 ("same").
    pub fn same(k: i64, weight: WeightInit) -> Self {
        ConvSpec {
            k,
            stride: 1,
            padding: k / 2,
            weight,
            bias: BiasInit::None,
        }
    }

    /// The same convolution with another stride.
    pub fn stride(self, stride: i64) -> Self {
        ConvSpec { stride, ..self }
    }

    /// The same convolution with another padding.
    pub fn padding(self, padding: i64) -> Self {
        ConvSpec { padding, ..self }
    }

    /// The same convolution with a bias.
    pub fn bias(self, bias: BiasInit) -> Self {
        ConvSpec { bias, ..self }
    }
}

/// A 2-D convolution `c_in → c_out` with variables `weight` (and `bias`) under `p`.
pub fn conv2d(p: &nn::Path, c_in: i64, c_out: i64, spec: ConvSpec) -> nn::Conv2D {
    let dims = [c_out, c_in, spec.k, spec.k];
    let bias = spec.bias.to_tch(c_in * spec.k * spec.k);
    nn::conv2d(
        p,
        c_in,
        c_out,
        spec.k,
        nn::ConvConfig {
            stride: spec.stride,
            padding: spec.padding,
            bias: bias.is_some(),
            ws_init: spec.weight.to_tch(&dims),
            bs_init: bias.unwrap_or(Init::Const(0.0)),
            ..Default::default()
        },
    )
}

/// A linear layer `d_in → d_out` with variables `weight` (and `bias`) under `p`.
pub fn linear(
    p: &nn::Path,
    d_in: i64,
    d_out: i64,
    weight: WeightInit,
    bias: BiasInit,
) -> nn::Linear {
    let bs_init = bias.to_tch(d_in);
    nn::linear(
        p,
        d_in,
        d_out,
        nn::LinearConfig {
            ws_init: weight.to_tch(&[d_out, d_in]),
            bs_init,
            bias: bs_init.is_some(),
        },
    )
}

thread_local! {
    /// The ε and the ghost batch of the batch norms being built on this thread
    /// ([`BnBuild::set`]).
    static BN_BUILD: std::cell::Cell<(f64, i64)> = const { std::cell::Cell::new((1e-5, 0)) };
}

thread_local! {
    /// The rows of the whole batch this process computes: `(first row, rows of the whole
    /// batch)`, set per step by the training loop ([`BatchPart::set`]); `None` in one process.
    static BATCH_PART: std::cell::Cell<Option<(usize, usize)>> = const { std::cell::Cell::new(None) };
}

/// While this guard lives, [`dropout`] draws the mask of the whole batch and keeps the rows
/// `part = (first row, whole batch's rows)`: a rank of a multi-process run then drops what
/// the one-process run drops (its generator is seeded alike for the step), instead of
/// repeating its own mask in every rank's share.
pub struct BatchPart(Option<(usize, usize)>);

impl BatchPart {
    /// The rows of the whole batch that the coming forward pass computes.
    pub fn set(part: (usize, usize)) -> BatchPart {
        BatchPart(BATCH_PART.with(|p| p.replace(Some(part))))
    }
}

impl Drop for BatchPart {
    fn drop(&mut self) {
        BATCH_PART.with(|p| p.set(self.0));
    }
}

/// Dropout with probability `p` in training: libtorch's own op (`x · bernoulli(1 − p) /
/// (1 − p)`) on the whole batch in one process; in a part of a batch ([`BatchPart`]) the same
/// ops on a mask drawn for the whole batch, laid out as `x` is, of which this part's rows
/// are kept: the same draws, in the same order, as the one process makes.
pub fn dropout(x: &Tensor, p: f64, train: bool) -> Tensor {
    let part = BATCH_PART.with(|b| b.get());
    let n = x.size()[0] as usize;
    match part {
        Some((first, whole)) if train && p > 0.0 && (first, whole) != (0, n) => {
            let mut shape = x.size();
            shape[0] = whole as i64;
            // The per-example strides are the part's (channels-last or not), as libtorch's
            // empty_like of the whole batch would have them.
            let mut noise = Tensor::empty_strided(&shape, x.stride(), (x.kind(), x.device()));
            let _ = noise.bernoulli_float_(1.0 - p);
            let _ = noise.g_div_scalar_(1.0 - p);
            x * noise.narrow(0, first as i64, n as i64)
        }
        _ => x.dropout(p, train),
    }
}

/// The ε (`model.bn_eps`) and ghost batch (`model.ghost_batch`, 0: none) of the batch norms
/// [`batch_norm`] builds while this guard lives: set once around a network's construction
/// instead of threaded through every block's options.
pub struct BnBuild((f64, i64));

impl BnBuild {
    /// Build batch norms with ε = `eps` and ghost batches of `ghost` examples until the guard
    /// is dropped.
    pub fn set(eps: f64, ghost: i64) -> BnBuild {
        BnBuild(BN_BUILD.with(|e| e.replace((eps, ghost))))
    }
}

impl Drop for BnBuild {
    fn drop(&mut self) {
        BN_BUILD.with(|e| e.set(self.0));
    }
}

/// A 2-D batch norm over `c` channels with PyTorch's init (γ = `gamma`, normally 1; β = 0),
/// ε 1e-5 (or [`BnBuild`]'s) and running-average `momentum` in the torch convention
/// (`running = (1 − m)·running + m·batch`). Variables: `weight`, `bias` (trainable),
/// `running_mean`, `running_var` (not trainable).
pub fn batch_norm(p: &nn::Path, c: i64, momentum: f64, gamma: f64) -> Bn {
    let (eps, ghost) = BN_BUILD.with(|e| e.get());
    let config = nn::BatchNormConfig {
        momentum,
        eps,
        ws_init: Init::Const(gamma),
        bs_init: Init::Const(0.0),
        ..Default::default()
    };
    let cudnn = config.cudnn_enabled;
    Bn {
        inner: nn::batch_norm2d(p, c, config),
        ghost,
        momentum,
        eps,
        cudnn,
    }
}

/// A batch norm that can normalise ghost batches (Hoffer et al. 2017): while training with
/// `model.ghost_batch = n`, each run of n consecutive examples of the batch is normalised by
/// its own mean and variance, as each device normalises its own share when n examples sit on
/// each of several devices (the papers' multi-GPU batch norm, reproduced on one device). The
/// running statistics follow the first ghost batch alone, as those of rank 0 (the ones a
/// multi-process run evaluates and saves) follow its own share. Evaluation and n = 0 are the
/// plain batch norm.
#[derive(Debug)]
pub struct Bn {
    /// The batch norm itself (its variables and running statistics).
    pub inner: nn::BatchNorm,
    ghost: i64,
    momentum: f64,
    eps: f64,
    cudnn: bool,
}

impl nn::ModuleT for Bn {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let n = xs.size().first().copied().unwrap_or(0);
        if !train || self.ghost <= 0 || n <= self.ghost {
            return self.inner.forward_t(xs, train);
        }
        let parts: Vec<Tensor> = xs
            .split(self.ghost, 0)
            .iter()
            .enumerate()
            .map(|(i, part)| {
                if i == 0 {
                    self.inner.forward_t(part, true)
                } else {
                    // The ghost batch's own statistics, the running ones left alone.
                    Tensor::batch_norm(
                        part,
                        self.inner.ws.as_ref(),
                        self.inner.bs.as_ref(),
                        None::<&Tensor>,
                        None::<&Tensor>,
                        true,
                        self.momentum,
                        self.eps,
                        self.cudnn,
                    )
                }
            })
            .collect();
        Tensor::cat(&parts, 0)
    }
}
