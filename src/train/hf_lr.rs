//! The super-convergence paper's Hessian-free estimate of the optimal learning rate (Smith &
//! Topin 2018, §4; their `L2TermComputation3.py`): from three consecutive weight iterates
//! θ_i, θ_{i+1}, θ_{i+2} of a training at learning rate ε,
//!
//! `ε* ≈ ε · Σ|θ_{i+1} − θ_i| / Σ|2θ_{i+1} − θ_i − θ_{i+2}|`,
//!
//! the sums over every element of every trainable parameter, smoothed by an exponential
//! moving average (α = 0.1, starting at 0.1). For gradient descent on a quadratic with
//! curvature h it is exactly 1/h, the step that lands on the minimum in one move.

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
    let (mut first, mut second) = (0.0, 0.0);
    for (a, b) in d1.iter().zip(d2) {
        let (a, b) = (a.to_kind(Kind::Double), b.to_kind(Kind::Double));
        first += f64::try_from(a.abs().sum(Kind::Double)).unwrap_or(f64::NAN);
        second += f64::try_from((&a - &b).abs().sum(Kind::Double)).unwrap_or(f64::NAN);
    }
    lr * first / second
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

/// One value of the estimate, for the window of steps `step` and `step + 1`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// The window's first step (θ_i is the weights before it).
    pub step: u64,
    /// The learning rate of that step (ε).
    pub lr: f64,
    /// The raw estimate.
    pub hf_lr: f64,
    /// The authors' moving average after folding it in.
    pub hf_lr_ema: f64,
}

/// The estimate along a training, every `every` steps: a window starts at each step `s` with
/// `s % every == 0` and is complete once steps `s` and `s + 1` have run. It keeps at most two
/// copies of the trainable parameters on their device (the last iterate and the last step),
/// and only while a window is open. It reads the weights and writes nothing into them: the
/// training is the same with and without it. Its state goes into the checkpoint, so that a
/// resumed run gives the same values as an uninterrupted one.
pub struct Tracker {
    every: u64,
    names: Vec<String>,
    vars: Vec<Tensor>,
    /// θ_t, while a window needs it.
    prev: Option<Vec<Tensor>>,
    /// θ_t − θ_{t−1}, while the window that started at t − 1 needs it.
    diff: Option<Vec<Tensor>>,
    /// The moving average so far.
    pub ema: Ema,
}

/// Checkpoint names of the tracker's copies.
const PREV: &str = "hf_lr.prev.";
const DIFF: &str = "hf_lr.diff.";

impl Tracker {
    /// Track the trainable parameters of `vs` (all elements of all of them, in name order).
    pub fn new(vs: &VarStore, every: u64) -> Tracker {
        assert!(every > 0, "hf_lr_every = 0 means no tracker");
        let mut named: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let (names, vars) = named.into_iter().unzip();
        Tracker {
            every,
            names,
            vars,
            prev: None,
            diff: None,
            ema: Ema::default(),
        }
    }

    /// The weights now, copied in the standard layout (the same reduction order in every
    /// attempt of a run, whatever layout a checkpoint restores).
    fn snapshot(&self) -> Vec<Tensor> {
        let _guard = tch::no_grad_guard();
        self.vars
            .iter()
            .map(|v| v.detach().contiguous().copy())
            .collect()
    }

    /// Call before optimizer step `t`: opens a window at `t` when one is due.
    pub fn before_step(&mut self, t: u64) {
        if t % self.every == 0 && self.prev.is_none() {
            self.prev = Some(self.snapshot());
        }
    }

    /// Call after optimizer step `t`: closes the window of step `t − 1` (its estimate, with
    /// that step's learning rate `lr_of(t − 1)`), and keeps what the window of `t` needs.
    pub fn after_step(&mut self, t: u64, lr_of: impl Fn(u64) -> f64) -> Option<Estimate> {
        let prev = self.prev.take()?;
        let now = self.snapshot();
        let step: Vec<Tensor> = now.iter().zip(&prev).map(|(a, b)| a - b).collect();
        let estimate = self.diff.take().map(|d1| {
            let s = t - 1;
            let lr = lr_of(s);
            let hf_lr = from_differences(&d1, &step, lr);
            Estimate {
                step: s,
                lr,
                hf_lr,
                hf_lr_ema: self.ema.update(hf_lr),
            }
        });
        if t % self.every == 0 {
            self.prev = Some(now);
            self.diff = Some(step);
        }
        estimate
    }

    /// The copies a window holds, named for the checkpoint (empty between windows).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (prefix, set) in [(PREV, &self.prev), (DIFF, &self.diff)] {
            if let Some(set) = set {
                for (n, t) in self.names.iter().zip(set) {
                    out.push((format!("{prefix}{n}"), t.shallow_clone()));
                }
            }
        }
        out
    }

    /// Restore what [`Tracker::state`] wrote, and the moving average `ema`; `tensors` may
    /// hold other entries.
    pub fn load_state(&mut self, tensors: &BTreeMap<String, Tensor>, ema: f64) -> Result<()> {
        let load = |prefix: &str| -> Result<Option<Vec<Tensor>>> {
            if !tensors.contains_key(&format!("{prefix}{}", self.names[0])) {
                return Ok(None);
            }
            let mut set = Vec::with_capacity(self.vars.len());
            for (n, v) in self.names.iter().zip(&self.vars) {
                let key = format!("{prefix}{n}");
                let t = tensors
                    .get(&key)
                    .with_context(|| format!("checkpoint has no entry {key}"))?;
                if t.size() != v.size() {
                    anyhow::bail!(
                        "checkpoint entry {key} has shape {:?}, expected {:?}",
                        t.size(),
                        v.size()
                    );
                }
                set.push(t.to_device(v.device()).to_kind(v.kind()).contiguous());
            }
            Ok(Some(set))
        };
        if self.names.is_empty() {
            return Ok(());
        }
        self.prev = load(PREV)?;
        self.diff = load(DIFF)?;
        self.ema = Ema { value: ema };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f64]) -> Tensor {
        Tensor::from_slice(v)
    }

    /// Gradient descent θ ← θ − ε·h·θ on f(θ) = h·θ²/2.
    fn gd(theta: &[f64], h: &[f64], lr: f64) -> Vec<f64> {
        theta.iter().zip(h).map(|(x, h)| x - lr * h * x).collect()
    }

    #[test]
    fn on_a_one_dimensional_quadratic_it_is_one_over_the_curvature() {
        for (h, lr, x0) in [(2.0, 0.1, 3.0), (0.5, 0.3, -1.5), (10.0, 0.01, 0.25)] {
            let x1 = gd(&[x0], &[h], lr);
            let x2 = gd(&x1, &[h], lr);
            let est = finite_difference_lr(&[t(&[x0])], &[t(&x1)], &[t(&x2)], lr);
            assert!((est - 1.0 / h).abs() < 1e-12 / h, "h {h}: {est}");
        }
    }

    #[test]
    fn on_a_diagonal_quadratic_it_is_the_hand_computed_ratio() {
        // Two parameters, curvatures 1, 4 and 9: per element the first difference is
        // ε·h·|x| and the second ε²·h²·|x|, so the estimate is Σ h|x| / (ε Σ h²|x|) · ε.
        let (h, lr) = ([1.0, 4.0, 9.0], 0.05);
        let x0 = [1.0, -2.0, 0.5];
        let x1 = gd(&x0, &h, lr);
        let x2 = gd(&x1, &h, lr);
        let num: f64 = h.iter().zip(&x0).map(|(h, x)| h * x.abs()).sum();
        let den: f64 = h.iter().zip(&x0).map(|(h, x)| h * h * x.abs()).sum();
        let est = finite_difference_lr(
            &[t(&x0[..1]), t(&x0[1..])],
            &[t(&x1[..1]), t(&x1[1..])],
            &[t(&x2[..1]), t(&x2[1..])],
            lr,
        );
        assert!((est - num / den).abs() < 1e-12, "{est} vs {}", num / den);
    }

    #[test]
    fn the_moving_average_starts_at_a_tenth_and_weighs_new_values_by_a_tenth() {
        let mut e = Ema::default();
        assert_eq!(e.value, 0.1);
        assert!((e.update(2.0) - (0.1 * 2.0 + 0.9 * 0.1)).abs() < 1e-15);
        for _ in 0..500 {
            e.update(3.0);
        }
        assert!((e.value - 3.0).abs() < 1e-12);
    }

    /// A VarStore with one trainable vector, to train by gradient descent on
    /// f(θ) = Σ h·θ²/2 (gradient h·θ, [`gd_step`]).
    fn quadratic() -> (VarStore, Tensor) {
        let vs = VarStore::new(tch::Device::Cpu);
        let w = vs.root().var_copy("w", &t(&[1.0, -2.0, 0.5]));
        (vs, w)
    }

    fn gd_step(w: &mut Tensor, h: &Tensor, lr: f64) {
        let _g = tch::no_grad_guard();
        let g = &*w * h;
        let _ = w.f_sub_(&(g * lr)).unwrap();
    }

    #[test]
    fn the_tracker_gives_the_estimate_of_each_window_and_only_those() {
        let hv = [1.0, 4.0, 9.0];
        let h = t(&hv);
        let lr = |s: u64| 0.05 + 0.001 * s as f64;
        for every in [1, 2, 5] {
            let (vs, mut w) = quadratic();
            let mut tracker = Tracker::new(&vs, every);
            let mut iterates = vec![Vec::<f64>::try_from(&w).unwrap()];
            let mut got = Vec::new();
            for step in 0..12 {
                tracker.before_step(step);
                gd_step(&mut w, &h, lr(step));
                iterates.push(Vec::<f64>::try_from(&w).unwrap());
                got.extend(tracker.after_step(step, lr));
                // Copies are held only while the window of this step is open.
                assert_eq!(tracker.state().is_empty(), step % every != 0);
            }
            let windows: Vec<u64> = (0..11).filter(|s| s % every == 0).collect();
            assert_eq!(
                got.iter().map(|e| e.step).collect::<Vec<_>>(),
                windows,
                "every {every}"
            );
            let mut ema = Ema::default();
            for e in &got {
                let s = e.step as usize;
                let want = finite_difference_lr(
                    &[t(&iterates[s])],
                    &[t(&iterates[s + 1])],
                    &[t(&iterates[s + 2])],
                    lr(e.step),
                );
                assert_eq!(e.lr, lr(e.step));
                assert!(
                    (e.hf_lr - want).abs() < 1e-12 * want,
                    "{} vs {want}",
                    e.hf_lr
                );
                assert!((e.hf_lr_ema - ema.update(e.hf_lr)).abs() < 1e-15);
            }
        }
    }

    #[test]
    fn a_tracker_restored_mid_window_continues_as_the_original() {
        let hv = [1.0, 4.0, 9.0];
        let h = t(&hv);
        let lr = |_: u64| 0.05;
        let (vs, mut w) = quadratic();
        let mut a = Tracker::new(&vs, 1);
        let mut b_state = None;
        let mut out_a = Vec::new();
        for step in 0..6 {
            a.before_step(step);
            gd_step(&mut w, &h, lr(step));
            out_a.extend(a.after_step(step, lr));
            if step == 2 {
                let state: BTreeMap<String, Tensor> =
                    a.state().into_iter().map(|(k, v)| (k, v.copy())).collect();
                b_state = Some((state, a.ema.value, w.copy()));
            }
        }
        // A second tracker resumed after step 2 from the checkpointed state.
        let (state, ema, w3) = b_state.unwrap();
        assert!(state.keys().any(|k| k.starts_with("hf_lr.prev.")));
        assert!(state.keys().any(|k| k.starts_with("hf_lr.diff.")));
        let (vs2, mut w2) = quadratic();
        tch::no_grad(|| w2.copy_(&w3));
        let mut b = Tracker::new(&vs2, 1);
        b.load_state(&state, ema).unwrap();
        let mut out_b = Vec::new();
        for step in 3..6 {
            b.before_step(step);
            gd_step(&mut w2, &h, lr(step));
            out_b.extend(b.after_step(step, lr));
        }
        assert_eq!(out_b, out_a[out_a.len() - 3..].to_vec());
    }
}
