//! `kind = "clr"`: cyclical learning rates.

use super::keys::Keys;
use super::{Curve, RunLength};
use anyhow::Result;

/// The CLR amplitude policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClrMode {
    /// Constant amplitude.
    Triangular,
    /// Amplitude halved every cycle: `s = 1 / 2^(cycle − 1)`.
    Triangular2,
    /// Amplitude scaled by `gamma^k` on the global step `k`.
    ExpRange,
}

/// Cyclical learning rates (Smith, WACV 2017, arXiv 1506.01186, §3.1), PyTorch `CyclicLR`
/// semantics (including an asymmetric cycle and cyclical momentum):
///
/// with `S = step_size + step_size_down` and `r = step_size / S`, step `k` is in cycle
/// `c = 1 + ⌊k / S⌋` at position `x = (k mod S) / S`;
/// `scale = x / r` if `x <= r`, else `(x − 1) / (r − 1)` (0 → 1 → 0 over a cycle);
///
/// `lr(k) = base_lr + (max_lr − base_lr) · scale · s`,
/// `momentum(k) = max_momentum − (max_momentum − base_momentum) · scale · s`,
///
/// `s = 1` (`triangular`), `1 / 2^(c − 1)` (`triangular2`), `gamma^k` (`exp_range`, on the
/// global step as PyTorch does). With `step_size_down = step_size` this is the paper's
/// `base + (max − base) · max(0, 1 − |k / stepsize − 2c + 1|)`. The LR starts at `base_lr`, the
/// momentum at `max_momentum`.
///
/// Keys: `base_lr` (>= 0; with 0, `exp_range` scales the whole LR: `max_lr · scale · gamma^k`),
/// `max_lr` (> 0, >= base_lr), `step_size` (steps, integer >= 1; Smith
/// suggests 2–10 epochs of steps), `step_size_down` (steps, default `step_size`), `mode`
/// (`triangular` | `triangular2` | `exp_range`, default `triangular`), `gamma` (in (0, 1],
/// default 1, only with `exp_range`), `cycle_momentum` (default true), `base_momentum`
/// (default 0.8), `max_momentum` (default 0.9; 0 <= base <= max < 1), the PyTorch defaults.
/// [`Curve::cycle_ends`] lists the multiples of `S` within the run, where Smith stops training.
#[derive(Clone, Debug)]
pub struct Clr {
    base_lr: f64,
    max_lr: f64,
    up: u64,
    cycle: u64,
    mode: ClrMode,
    gamma: f64,
    momentum: Option<(f64, f64)>,
    total: u64,
}

impl Clr {
    /// The keys of this family (besides `kind` and the warmup keys).
    pub(crate) const KEYS: &'static [&'static str] = &[
        "base_lr",
        "max_lr",
        "step_size",
        "step_size_down",
        "mode",
        "gamma",
        "cycle_momentum",
        "base_momentum",
        "max_momentum",
    ];

    pub(crate) fn from_keys(keys: &mut Keys, len: RunLength) -> Result<Self> {
        // 0 is allowed, as PyTorch's CyclicLR allows it: the authors' range tests are Caffe
        // `triangular` runs from base_lr 0 with one half-cycle over the whole run.
        let base_lr = keys.req_f64("base_lr")?;
        keys.ensure(base_lr >= 0.0, "base_lr", "must be >= 0")?;
        let max_lr = keys.lr("max_lr")?;
        keys.ensure(
            max_lr >= base_lr,
            "max_lr",
            format_args!("must be >= {} ({base_lr})", keys.name("base_lr")),
        )?;
        let up = keys
            .u64("step_size")?
            .ok_or_else(|| keys.missing("step_size"))?;
        keys.ensure(up >= 1, "step_size", "must be >= 1 (steps)")?;
        let down = keys.u64("step_size_down")?.unwrap_or(up);
        keys.ensure(down >= 1, "step_size_down", "must be >= 1 (steps)")?;
        let mode = match keys
            .choice("mode", &["triangular", "triangular2", "exp_range"])?
            .unwrap_or("triangular")
        {
            "triangular" => ClrMode::Triangular,
            "triangular2" => ClrMode::Triangular2,
            _ => ClrMode::ExpRange,
        };
        let gamma = if mode == ClrMode::ExpRange {
            let g = keys.f64("gamma")?.unwrap_or(1.0);
            keys.ensure(g > 0.0 && g <= 1.0, "gamma", "must be in (0, 1]")?;
            g
        } else {
            keys.forbid_unless("gamma", 1.0.into(), "only used with mode = \"exp_range\"")?;
            1.0
        };
        let momentum = read_cyclic_momentum(keys, 0.8, 0.9)?;
        Ok(Clr {
            base_lr,
            max_lr,
            up,
            cycle: up + down,
            mode,
            gamma,
            momentum,
            total: len.total_steps,
        })
    }

    /// (cycle number from 1, triangle scale in [0, 1]).
    fn position(&self, k: u64) -> (u64, f64) {
        let c = 1 + k / self.cycle;
        let x = (k % self.cycle) as f64 / self.cycle as f64;
        let r = self.up as f64 / self.cycle as f64;
        let scale = if x <= r { x / r } else { (x - 1.0) / (r - 1.0) };
        (c, scale)
    }

    fn amplitude(&self, k: u64, c: u64) -> f64 {
        match self.mode {
            ClrMode::Triangular => 1.0,
            ClrMode::Triangular2 => 1.0 / 2f64.powf((c - 1) as f64),
            ClrMode::ExpRange => self.gamma.powf(k as f64),
        }
    }
}

impl Curve for Clr {
    fn lr(&self, k: u64) -> f64 {
        let (c, scale) = self.position(k);
        self.base_lr + (self.max_lr - self.base_lr) * scale * self.amplitude(k, c)
    }

    fn momentum(&self, k: u64) -> Option<f64> {
        let (base, max) = self.momentum?;
        let (c, scale) = self.position(k);
        Some(max - (max - base) * scale * self.amplitude(k, c))
    }

    fn cycle_ends(&self) -> Vec<u64> {
        (1..=self.total / self.cycle)
            .map(|i| i * self.cycle)
            .collect()
    }
}

/// `cycle_momentum`, `base_momentum`, `max_momentum`: `Some((base, max))` when cycling.
/// Momentum keys without cycling are refused (they would have no effect).
pub(crate) fn read_cyclic_momentum(
    keys: &mut Keys,
    base_default: f64,
    max_default: f64,
) -> Result<Option<(f64, f64)>> {
    if !keys.bool("cycle_momentum")?.unwrap_or(true) {
        // PyTorch's CyclicLR and OneCycleLR take their defaults with cycle_momentum=False.
        for (key, default) in [
            ("base_momentum", base_default),
            ("max_momentum", max_default),
        ] {
            keys.forbid_unless(
                key,
                default.into(),
                "has no effect with cycle_momentum = false",
            )?;
        }
        return Ok(None);
    }
    let base = keys.f64("base_momentum")?.unwrap_or(base_default);
    keys.ensure(
        (0.0..1.0).contains(&base),
        "base_momentum",
        "must be in [0, 1)",
    )?;
    let max = keys.f64("max_momentum")?.unwrap_or(max_default);
    keys.ensure(
        (0.0..1.0).contains(&max),
        "max_momentum",
        "must be in [0, 1)",
    )?;
    keys.ensure(
        base <= max,
        "base_momentum",
        format_args!("must be <= {} ({max})", keys.name("max_momentum")),
    )?;
    Ok(Some((base, max)))
}
