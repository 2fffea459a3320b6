//! `kind = "one_cycle"`: the 1cycle policy, in three conventions.

use super::clr::read_cyclic_momentum;
use super::keys::Keys;
use super::{Curve, RunLength};
use anyhow::Result;
use std::f64::consts::PI;

/// Whose definition of 1cycle to follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Convention {
    /// PyTorch `OneCycleLR` (the default).
    Pytorch,
    /// fastai `fit_one_cycle`, evaluated in f64.
    Fastai,
    /// The super-convergence paper's linear policy with an annihilation phase.
    Smith,
}

/// How a phase interpolates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anneal {
    /// Half-cosine from start to end.
    Cos,
    /// Straight line from start to end.
    Linear,
}

/// One phase: it ends at `end` (a step for PyTorch and Smith, a fraction of the run for
/// fastai) and moves the LR and the momentum from `.0` to `.1`.
#[derive(Clone, Copy, Debug)]
struct Phase {
    end: f64,
    lr: (f64, f64),
    mom: (f64, f64),
}

/// The 1cycle policy (Smith & Topin, "Super-Convergence", arXiv 1708.07120; Smith,
/// arXiv 1803.09820 for cyclical momentum). Keys common to all conventions: `max_lr` (> 0),
/// `pct_start` (in (0, 1)), `div_factor` (>= 1; the start LR is `initial = max_lr / div_factor`),
/// `cycle_momentum` (default true), `base_momentum` (default 0.85), `max_momentum`
/// (default 0.95), and `convention` = `pytorch` (default) | `fastai` | `smith`. Momentum
/// moves opposite to the LR. Past the run the last step's values are held.
///
/// **`pytorch`** — equals `OneCycleLR(max_lr, total_steps = N)`. Defaults `pct_start` 0.3,
/// `div_factor` 25, `final_div_factor` 1e4 (`min = initial / final_div_factor`),
/// `anneal_strategy` = `cos` | `linear`, `three_phase` false. Phases end at the (float)
/// steps `pct·N − 1` (initial → max, momentum max → base) and `N − 1` (max → min, momentum
/// base → max); with `three_phase`: `pct·N − 1` (initial → max), `2·pct·N − 2` (max → initial,
/// momentum back to max), `N − 1` (initial → min, momentum held at max). Step `k` lies in the
/// first phase with `k <= end`, at `pct = (k − start) / (end − start)`;
/// `cos(a → b, p) = b + (a − b)(1 + cos πp)/2`, `linear = a + (b − a)p`. The peak is at step
/// `pct·N − 1`, the minimum exactly at the last step. Refused where PyTorch divides by zero or
/// extrapolates: `pct_start · N <= 1`, and `three_phase` with `pct_start >= 0.5`.
///
/// **`fastai`** — `fit_one_cycle(lr_max, div, div_final, pct_start)`: position `p = k / N`;
/// `p < pct`: `SchedCos(max/div → max)` at `p / pct`, else `SchedCos(max → max / div_final)` at
/// `(p − pct) / (1 − pct)`, `SchedCos(s → e, x) = s + (1 + cos(π(1 − x))) (e − s) / 2`;
/// momentum `max → base → max` the same way. Defaults `pct_start` 0.25, `div_factor` 25,
/// `div_final` 1e5 (the final LR is `max_lr / div_final`; the last step, `p = (N − 1)/N`, never
/// reaches it). `anneal_strategy = "linear"` uses fastai's `SchedLin`. Computed in f64: fastai's
/// own f32 phase arithmetic differs by up to ~2e-5 relative.
///
/// **`smith`** — the paper's policy, linear throughout. With `A = annihilation_pct`
/// (default 0.1, in [0, 1)), the cycle spans `c = (1 − A)·N` steps and peaks at
/// `u = pct_start · c` (default `pct_start` 0.5: a symmetric triangle):
/// steps `0 → u`: `initial → max_lr`, momentum `max → base`;
/// `u → c`: `max_lr → initial`, momentum `base → max`;
/// `c → N − 1`: `initial → initial / final_div_factor` (the annihilation, default factor 100:
/// "orders of magnitude lower"; fastai v1 used `lr_max / (div · 100)`), momentum held at max.
/// Defaults `div_factor` 10 (Smith: the minimum about a tenth of the maximum), so the final LR
/// is `max_lr / 1000`. The annihilation must span more than one step (`A · N > 1`) unless
/// `A = 0`. The paper's 0.1 → 3.0 over 10 000 iterations is `max_lr = 3, div_factor = 30`.
#[derive(Clone, Debug)]
pub struct OneCycle {
    convention: Convention,
    anneal: Anneal,
    phases: Vec<Phase>,
    cycle_momentum: bool,
    total: u64,
}

impl OneCycle {
    /// The keys of this family (besides `kind` and the warmup keys).
    pub(crate) const KEYS: &'static [&'static str] = &[
        "max_lr",
        "pct_start",
        "anneal_strategy",
        "div_factor",
        "final_div_factor",
        "three_phase",
        "annihilation_pct",
        "div_final",
        "convention",
        "cycle_momentum",
        "base_momentum",
        "max_momentum",
    ];

    pub(crate) fn from_keys(keys: &mut Keys, len: RunLength) -> Result<Self> {
        let n = len.total_steps;
        let nf = n as f64;
        let convention = match keys
            .choice("convention", &["pytorch", "fastai", "smith"])?
            .unwrap_or("pytorch")
        {
            "pytorch" => Convention::Pytorch,
            "fastai" => Convention::Fastai,
            _ => Convention::Smith,
        };
        let max_lr = keys.lr("max_lr")?;
        let (pct_default, div_default) = match convention {
            Convention::Pytorch => (0.3, 25.0),
            Convention::Fastai => (0.25, 25.0),
            Convention::Smith => (0.5, 10.0),
        };
        let pct = keys.fraction("pct_start", pct_default)?;
        let div = keys.f64("div_factor")?.unwrap_or(div_default);
        keys.ensure(div >= 1.0, "div_factor", "must be >= 1")?;
        let initial = max_lr / div;
        let momentum = read_cyclic_momentum(keys, 0.85, 0.95)?;
        let (base_m, max_m) = momentum.unwrap_or((0.0, 0.0));
        let smith_only = "only used with convention = \"smith\"";
        let fastai_only = "only used with convention = \"fastai\"";

        let anneal = if convention == Convention::Smith {
            keys.forbid_unless(
                "anneal_strategy",
                "linear".into(),
                "the smith convention is linear throughout",
            )?;
            Anneal::Linear
        } else {
            match keys
                .choice("anneal_strategy", &["cos", "linear"])?
                .unwrap_or("cos")
            {
                "cos" => Anneal::Cos,
                _ => Anneal::Linear,
            }
        };
        if convention != Convention::Pytorch {
            keys.forbid("three_phase", "only used with convention = \"pytorch\"")?;
        }
        if convention != Convention::Smith {
            keys.forbid("annihilation_pct", smith_only)?;
        }
        if convention != Convention::Fastai {
            keys.forbid("div_final", fastai_only)?;
        }

        let phases = match convention {
            Convention::Pytorch => {
                let final_div = keys.f64("final_div_factor")?.unwrap_or(1e4);
                keys.ensure(final_div >= 1.0, "final_div_factor", "must be >= 1")?;
                let min = initial / final_div;
                let three = keys.bool("three_phase")?.unwrap_or(false);
                keys.ensure(
                    pct * nf > 1.0,
                    "pct_start",
                    format_args!(
                        "pct_start * total_steps must be > 1 so that the warmup phase is not empty \
                         (total_steps = {n})"
                    ),
                )?;
                let up = pct * nf - 1.0;
                if three {
                    keys.ensure(
                        pct < 0.5,
                        "pct_start",
                        "must be < 0.5 with three_phase = true",
                    )?;
                    vec![
                        Phase {
                            end: up,
                            lr: (initial, max_lr),
                            mom: (max_m, base_m),
                        },
                        Phase {
                            end: 2.0 * pct * nf - 2.0,
                            lr: (max_lr, initial),
                            mom: (base_m, max_m),
                        },
                        Phase {
                            end: nf - 1.0,
                            lr: (initial, min),
                            mom: (max_m, max_m),
                        },
                    ]
                } else {
                    vec![
                        Phase {
                            end: up,
                            lr: (initial, max_lr),
                            mom: (max_m, base_m),
                        },
                        Phase {
                            end: nf - 1.0,
                            lr: (max_lr, min),
                            mom: (base_m, max_m),
                        },
                    ]
                }
            }
            Convention::Fastai => {
                keys.forbid(
                    "final_div_factor",
                    "use div_final with convention = \"fastai\" (final LR = max_lr / div_final)",
                )?;
                let div_final = keys.f64("div_final")?.unwrap_or(1e5);
                keys.ensure(div_final >= 1.0, "div_final", "must be >= 1")?;
                vec![
                    Phase {
                        end: pct,
                        lr: (initial, max_lr),
                        mom: (max_m, base_m),
                    },
                    Phase {
                        end: 1.0,
                        lr: (max_lr, max_lr / div_final),
                        mom: (base_m, max_m),
                    },
                ]
            }
            Convention::Smith => {
                let final_div = keys.f64("final_div_factor")?.unwrap_or(100.0);
                keys.ensure(final_div >= 1.0, "final_div_factor", "must be >= 1")?;
                let a = keys.f64("annihilation_pct")?.unwrap_or(0.1);
                keys.ensure(
                    (0.0..1.0).contains(&a),
                    "annihilation_pct",
                    "must be in [0, 1)",
                )?;
                keys.ensure(
                    a == 0.0 || a * nf > 1.0,
                    "annihilation_pct",
                    format_args!(
                        "the annihilation must span more than one step: annihilation_pct * total_steps \
                         must be > 1 (total_steps = {n}), or annihilation_pct = 0"
                    ),
                )?;
                let c = (1.0 - a) * nf;
                let u = pct * c;
                let mut phases = vec![
                    Phase {
                        end: u,
                        lr: (initial, max_lr),
                        mom: (max_m, base_m),
                    },
                    Phase {
                        end: c,
                        lr: (max_lr, initial),
                        mom: (base_m, max_m),
                    },
                ];
                if a > 0.0 {
                    phases.push(Phase {
                        end: nf - 1.0,
                        lr: (initial, initial / final_div),
                        mom: (max_m, max_m),
                    });
                }
                phases
            }
        };
        Ok(OneCycle {
            convention,
            anneal,
            phases,
            cycle_momentum: momentum.is_some(),
            total: n,
        })
    }

    /// The phase of step `k` and the position in it, in [0, 1].
    fn locate(&self, k: u64) -> (&Phase, f64) {
        let k = k.min(self.total - 1);
        if self.convention == Convention::Fastai {
            let p = k as f64 / self.total as f64;
            let i = if p >= self.phases[0].end { 1 } else { 0 };
            let start = if i == 0 { 0.0 } else { self.phases[0].end };
            let ph = &self.phases[i];
            return (ph, (p - start) / (ph.end - start));
        }
        // PyTorch's phase search: the first phase with k <= end (or the last one).
        let t = k as f64;
        let mut start = 0.0;
        let last = self.phases.len() - 1;
        for (i, ph) in self.phases.iter().enumerate() {
            if t <= ph.end || i == last {
                return (ph, (t - start) / (ph.end - start));
            }
            start = ph.end;
        }
        unreachable!("the last phase always matches")
    }

    fn interpolate(&self, (a, b): (f64, f64), pct: f64) -> f64 {
        match (self.convention, self.anneal) {
            // fastai's sched_cos / sched_lin, in their order of operations.
            (Convention::Fastai, Anneal::Cos) => {
                a + (1.0 + (PI * (1.0 - pct)).cos()) * (b - a) / 2.0
            }
            (Convention::Fastai, Anneal::Linear) => a + pct * (b - a),
            // PyTorch's _annealing_cos / _annealing_linear.
            (_, Anneal::Cos) => b + (a - b) / 2.0 * ((PI * pct).cos() + 1.0),
            (_, Anneal::Linear) => (b - a) * pct + a,
        }
    }
}

impl Curve for OneCycle {
    fn lr(&self, k: u64) -> f64 {
        let (ph, pct) = self.locate(k);
        self.interpolate(ph.lr, pct)
    }

    fn momentum(&self, k: u64) -> Option<f64> {
        if !self.cycle_momentum {
            return None;
        }
        let (ph, pct) = self.locate(k);
        Some(self.interpolate(ph.mom, pct))
    }
}
