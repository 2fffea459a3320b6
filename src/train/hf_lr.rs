//! The super-convergence paper's Hessian-free estimate of the optimal learning rate (Smith &
//! Topin 2018, §4; their `L2TermComputation3.py`): from three consecutive weight iterates
//! θ_i, θ_{i+1}, θ_{i+2} of a training at learning rate ε,
//!
//! `ε* ≈ ε · Σ|θ_{i+1} − θ_i| / Σ|2θ_{i+1} − θ_i − θ_{i+2}|`,
//!
//! the sums over every element of every trainable parameter, smoothed by an exponential
//! moving average (α = 0.1, starting at 0.1). For gradient descent on a quadratic with
//! curvature h it is exactly 1/h, the step that lands on the minimum in one move.

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
    let (mut first, mut second) = (0.0, 0.0);
    for ((a, b), c) in t0.iter().zip(t1).zip(t2) {
        let (a, b, c) = (
            a.to_kind(Kind::Double),
            b.to_kind(Kind::Double),
            c.to_kind(Kind::Double),
        );
        first += f64::try_from((&b - &a).abs().sum(Kind::Double)).unwrap_or(f64::NAN);
        second += f64::try_from((&b * 2.0 - &a - &c).abs().sum(Kind::Double)).unwrap_or(f64::NAN);
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
}
