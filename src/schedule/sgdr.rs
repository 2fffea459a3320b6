//! `kind = "sgdr"`: cosine annealing with warm restarts.

use super::keys::Keys;
use super::{Curve, RunLength};
use anyhow::Result;
use std::f64::consts::PI;

/// Most cycle starts cached for `t_mult > 1`; later cycles are accumulated on demand.
const MAX_CACHED_CYCLES: usize = 1 << 20;

/// SGDR, stochastic gradient descent with warm restarts (Loshchilov & Hutter, ICLR 2017,
/// arXiv 1608.03983, eq. 5), with timm's peak decay and cycle limit:
///
/// `lr(k) = lr_min + (lr_max · restart_decay^i − lr_min) · (1 + cos(π · T_cur / T_i)) / 2`
///
/// where cycle `i` lasts `T_i = t_0 · t_mult^i` epochs and starts at epoch
/// `S_i = T_0 + … + T_{i−1}`, and `T_cur = k / steps_per_epoch − S_i` is the (fractional) number
/// of epochs since the restart: it advances every step, as in the paper. After `cycle_limit`
/// cycles the LR stays at `lr_min`. Only the LR jumps at a restart (a warm restart); at the
/// restart step the LR is exactly the cycle's peak, and a cycle's last step is one step short
/// of `lr_min`.
///
/// Equals PyTorch `CosineAnnealingWarmRestarts(T_0, T_mult, eta_min)` stepped with
/// `step(epoch + i / K)` before batch `i` of epoch `epoch` (`restart_decay = 1`, no limit), and
/// timm `CosineLRScheduler(cycle_mul, cycle_decay, cycle_limit)`. Unlike both, the cycle of
/// step `k` is found by exact accumulation of the `S_i` (integer division when `t_mult = 1`),
/// never by a floating-point logarithm: PyTorch and timm compute `⌊log_3 243⌋ = 4` for
/// `t_0 = 1, t_mult = 3` and give `lr_min` at epoch 121, where the restart is due.
///
/// Keys: `lr_max` (> 0), `lr_min` (0 <= lr_min <= lr_max, default 0), `t_0` (epochs, > 0,
/// at least one step), `t_mult` (>= 1, any float, default 1), `restart_decay` (> 0, default 1),
/// `cycle_limit` (integer >= 1, optional), `k_decay` (> 0, default 1: timm's `k_decay`, the
/// phase `π · T_cur^κ / T_i^κ` in timm's order of operations), `convention` (`timm`, the
/// default, or `pytorch`: the whole peak decays, `lr_max · restart_decay^i`; `keras`: only the
/// part above `lr_min`, `lr_min + (lr_max − lr_min) · restart_decay^i`, as Keras'
/// `CosineDecayRestarts(m_mul, alpha)` with `lr_min = alpha · lr_max`; the two agree when
/// `lr_min = 0`). [`Curve::cycle_ends`] lists the first step after
/// each completed cycle, where a snapshot ensemble (Huang et al. 2017) takes its snapshots.
#[derive(Clone, Debug)]
pub struct Sgdr {
    lr_max: f64,
    lr_min: f64,
    t_0: f64,
    t_mult: f64,
    decay: f64,
    limit: Option<u64>,
    /// timm's `k_decay`: the phase is `π · T_cur^κ / T_i^κ`.
    k_decay: f64,
    /// Keras' restart decay: only the part of the peak above `lr_min` shrinks.
    keras: bool,
    steps_per_epoch: f64,
    total: u64,
    /// For `t_mult > 1`: start epoch `S_i` and length `T_i` of the cycles, accumulated exactly,
    /// up to the first cycle that starts after the run (or [`MAX_CACHED_CYCLES`]).
    starts: Vec<f64>,
    lens: Vec<f64>,
}

impl Sgdr {
    /// The keys of this family (besides `kind` and the warmup keys).
    pub(crate) const KEYS: &'static [&'static str] = &[
        "lr_max",
        "lr_min",
        "t_0",
        "t_mult",
        "restart_decay",
        "cycle_limit",
        "k_decay",
        "convention",
    ];

    pub(crate) fn from_keys(keys: &mut Keys, len: RunLength) -> Result<Self> {
        let lr_max = keys.lr("lr_max")?;
        let lr_min = keys.lr_floor("lr_min", 0.0, "lr_max", lr_max)?;
        let t_0 = keys.req_f64("t_0")?;
        keys.ensure(t_0 > 0.0, "t_0", "must be > 0 (epochs)")?;
        keys.ensure(
            len.steps(t_0) >= 1.0,
            "t_0",
            format_args!(
                "a cycle must span at least one step ({} steps per epoch)",
                len.steps_per_epoch
            ),
        )?;
        let t_mult = keys.f64("t_mult")?.unwrap_or(1.0);
        keys.ensure(t_mult >= 1.0, "t_mult", "must be >= 1")?;
        let decay = keys.positive("restart_decay", 1.0)?;
        let limit = keys.u64("cycle_limit")?;
        keys.ensure(limit != Some(0), "cycle_limit", "must be >= 1")?;
        let k_decay = keys.positive("k_decay", 1.0)?;
        let keras = keys.choice("convention", &["timm", "pytorch", "keras"])? == Some("keras");
        let mut s = Sgdr {
            k_decay,
            keras,
            lr_max,
            lr_min,
            t_0,
            t_mult,
            decay,
            limit,
            steps_per_epoch: len.steps_per_epoch as f64,
            total: len.total_steps,
            starts: Vec::new(),
            lens: Vec::new(),
        };
        if t_mult > 1.0 {
            let (mut start, mut t) = (0.0, t_0);
            loop {
                s.starts.push(start);
                s.lens.push(t);
                if start * s.steps_per_epoch > s.total as f64 || s.starts.len() >= MAX_CACHED_CYCLES
                {
                    break;
                }
                start += t;
                t *= t_mult;
            }
        }
        Ok(s)
    }

    /// Whether step `k` lies at or after the boundary at epoch `start`.
    fn reached(&self, k: u64, start: f64) -> bool {
        start * self.steps_per_epoch <= k as f64
    }

    /// The cycle of step `k`: its index, start epoch and length in epochs.
    fn cycle(&self, k: u64) -> (u64, f64, f64) {
        if self.starts.is_empty() {
            // t_mult = 1: S_i = i · t_0; the float quotient is only a guess, checked exactly.
            let mut i = (k as f64 / (self.t_0 * self.steps_per_epoch)).floor() as u64;
            while self.reached(k, (i + 1) as f64 * self.t_0) {
                i += 1;
            }
            while i > 0 && !self.reached(k, i as f64 * self.t_0) {
                i -= 1;
            }
            return (i, i as f64 * self.t_0, self.t_0);
        }
        let i = self.starts.partition_point(|&s| self.reached(k, s)) - 1;
        let (mut start, mut t) = (self.starts[i], self.lens[i]);
        let mut i = i as u64;
        if i as usize + 1 == self.starts.len() {
            // Past the cached cycles: keep accumulating.
            while self.reached(k, start + t) {
                start += t;
                t *= self.t_mult;
                i += 1;
            }
        }
        (i, start, t)
    }

    /// Start epoch of cycle `i + 1`, i.e. the end of cycle `i`, with the same accumulation.
    fn cycle_end_epoch(&self, i: u64) -> f64 {
        if self.starts.is_empty() {
            return (i + 1) as f64 * self.t_0;
        }
        match self.starts.get(i as usize + 1) {
            Some(&s) => s,
            None => {
                let last = self.starts.len() - 1;
                let (mut start, mut t) = (self.starts[last], self.lens[last]);
                for _ in last as u64..=i {
                    start += t;
                    t *= self.t_mult;
                }
                start
            }
        }
    }
}

impl Curve for Sgdr {
    fn lr(&self, k: u64) -> f64 {
        let (i, start, t_i) = self.cycle(k);
        if self.limit.is_some_and(|l| i >= l) {
            return self.lr_min;
        }
        let peak = if self.decay == 1.0 {
            self.lr_max
        } else if self.keras {
            // Keras `CosineDecayRestarts(m_mul)`: lr_min + (lr_max − lr_min) · m^i at the peak.
            self.lr_min + (self.lr_max - self.lr_min) * self.decay.powf(i as f64)
        } else {
            self.lr_max * self.decay.powf(i as f64)
        };
        let t_cur = (k as f64 / self.steps_per_epoch - start).max(0.0);
        if t_cur == 0.0 {
            return peak;
        }
        if self.k_decay != 1.0 {
            // timm's expression: the phase is π · T_cur^κ / T_i^κ.
            let kd = self.k_decay;
            return self.lr_min
                + 0.5 * (peak - self.lr_min) * (1.0 + (PI * t_cur.powf(kd) / t_i.powf(kd)).cos());
        }
        // PyTorch's expression order.
        self.lr_min + (peak - self.lr_min) * (1.0 + (PI * t_cur / t_i).cos()) / 2.0
    }

    fn cycle_ends(&self) -> Vec<u64> {
        let mut ends = Vec::new();
        let mut i = 0u64;
        while self.limit.is_none_or(|l| i < l) {
            let end = (self.cycle_end_epoch(i) * self.steps_per_epoch).ceil();
            if end > self.total as f64 {
                break;
            }
            ends.push(end as u64);
            i += 1;
        }
        ends
    }
}
