//! Reading a range-test curve: smoothing and the rules that suggest a learning rate.
//!
//! The rules disagree by orders of magnitude on the same curve (see the maintainers of
//! fastai and pytorch-lr-finder), so lrlab computes all of them and writes each with the rule
//! and the trimming it used. Every rule works on points `i` with learning rate `lr[i]` and
//! loss `loss[i]`, both in step order (increasing LR).

use serde::Serialize;

/// Exponential moving average with bias correction (fastai's `AvgSmoothLoss`, in f64):
/// `m_i = β·m_{i−1} + (1 − β)·x_i`, reported as `m_i / (1 − β^{i+1})`. With `beta = 0` the
/// curve is the raw loss.
pub fn smooth(values: &[f64], beta: f64) -> Vec<f64> {
    let mut avg = 0.0;
    let mut out = Vec::with_capacity(values.len());
    for (i, &x) in values.iter().enumerate() {
        avg = beta * avg + (1.0 - beta) * x;
        out.push(avg / (1.0 - beta.powi(i as i32 + 1)));
    }
    out
}

/// One suggested learning rate.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Suggestion {
    /// Rule name: `steepest`, `valley`, `minimum_div10`, `clr_base`, `clr_max`, ...
    pub rule: String,
    /// The suggested learning rate.
    pub lr: f64,
    /// Index of the curve point the suggestion was read from.
    pub index: usize,
    /// How the rule reads the curve, trimming included.
    pub how: String,
}

fn finite_prefix(loss: &[f64]) -> usize {
    loss.iter()
        .position(|x| !x.is_finite())
        .unwrap_or(loss.len())
}

/// Steepest descent: the point where the smoothed loss falls fastest against ln(lr), by
/// finite differences between neighbours (pytorch-lr-finder's reading, made independent of
/// the LR spacing). Trims `skip_start` points at the start and `skip_end` at the end (the
/// start is noisy, the end is the blow-up); `None` with fewer than 3 points left.
pub fn steepest(
    lr: &[f64],
    smoothed: &[f64],
    skip_start: usize,
    skip_end: usize,
) -> Option<Suggestion> {
    let n = finite_prefix(smoothed).min(lr.len());
    if n < skip_start + skip_end + 3 {
        return None;
    }
    let (lo, hi) = (skip_start, n - skip_end);
    let mut best: Option<(usize, f64)> = None;
    for i in lo..hi - 1 {
        let dx = lr[i + 1].ln() - lr[i].ln();
        if dx <= 0.0 {
            continue;
        }
        let slope = (smoothed[i + 1] - smoothed[i]) / dx;
        if best.is_none_or(|(_, s)| slope < s) {
            best = Some((i, slope));
        }
    }
    best.map(|(i, _)| Suggestion {
        rule: "steepest".into(),
        lr: lr[i],
        index: i,
        how: format!(
            "left point of the steepest fall of the smoothed loss against ln(lr), points {lo}..{hi} (first {skip_start} and last {skip_end} trimmed)"
        ),
    })
}

/// The points fastai's suggestion functions read: `lr_find` hands them the recorder's
/// smoothed losses from `num_it // 10` to the fifth-last, cut at the first NaN. `num_it` is the
/// requested number of steps (a test stopped early has fewer points). Empty when nothing is
/// left.
pub fn fastai_window(smoothed: &[f64], num_it: usize) -> std::ops::Range<usize> {
    let lo = num_it / 10;
    let hi = smoothed.len().saturating_sub(5);
    let hi = lo + finite_prefix(&smoothed[lo.min(hi)..hi]);
    lo.min(hi)..hi
}

/// fastai's `valley` on the smoothed losses of [`fastai_window`]: the longest strictly
/// decreasing subsequence (ending at each point, O(n²)); with `end` the first point of
/// maximal length `L` and `start = end − L`, the suggestion is `start + ⌊L/3⌋ + ⌊L/3/2⌋`,
/// about halfway down the valley. The index is the point's in the whole curve.
pub fn valley(lr: &[f64], smoothed: &[f64], num_it: usize) -> Option<Suggestion> {
    let w = fastai_window(&smoothed[..smoothed.len().min(lr.len())], num_it);
    let loss = &smoothed[w.clone()];
    let n = loss.len();
    if n < 2 {
        return None;
    }
    let mut len = vec![1usize; n];
    for i in 1..n {
        for j in 0..i {
            if loss[i] < loss[j] && len[i] < len[j] + 1 {
                len[i] = len[j] + 1;
            }
        }
    }
    let max_len = *len.iter().max()?;
    let end = len.iter().position(|&l| l == max_len)?;
    // fastai: start = end − L, one before the run's first point (−1 for a run from the
    // window's first point), sections = L/3 in floats; a negative index counts from the end,
    // as Python's does (a run of two from the first point).
    // fastai only sets start when some point extends a run, so a curve that never falls
    // keeps start = end = 0.
    let start = if max_len > 1 {
        end as isize - max_len as isize
    } else {
        0
    };
    let sections = (end as isize - start) as f64 / 3.0;
    let idx = start + sections as isize + (sections / 2.0) as isize;
    let idx = w.start + if idx < 0 { idx + n as isize } else { idx } as usize;
    Some(Suggestion {
        rule: "valley".into(),
        lr: lr[idx],
        index: idx,
        how: format!(
            "fastai's valley: longest strictly decreasing run of the smoothed loss over points {}..{} \
             (the first num_it/10 and the last 5 trimmed, as fastai's lr_find does), length {max_len}; \
             index (end - L) + L/3 + L/6",
            w.start, w.end
        ),
    })
}

/// The learning rate of the lowest smoothed loss, divided by 10 (fastai's `minimum`, over
/// the points of [`fastai_window`]).
pub fn minimum_div10(lr: &[f64], smoothed: &[f64], num_it: usize) -> Option<Suggestion> {
    let w = fastai_window(&smoothed[..smoothed.len().min(lr.len())], num_it);
    let (i, _) = smoothed[w.clone()]
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))?;
    let i = w.start + i;
    Some(Suggestion {
        rule: "minimum_div10".into(),
        lr: lr[i] / 10.0,
        index: i,
        how: format!(
            "fastai's minimum: learning rate of the lowest smoothed loss over points {}..{} (the first \
             num_it/10 and the last 5 trimmed), divided by 10",
            w.start, w.end
        ),
    })
}

/// Smith's bounds for a cyclical schedule from a loss curve: `clr_base` where the smoothed
/// loss has clearly started to fall (first point at which it has dropped by 5% of the total
/// drop from its start to its minimum), `clr_max` where it is lowest. Both read after
/// trimming the first `skip_start` points.
pub fn clr_bounds(lr: &[f64], smoothed: &[f64], skip_start: usize) -> Vec<Suggestion> {
    let n = finite_prefix(smoothed).min(lr.len());
    if n <= skip_start + 1 {
        return Vec::new();
    }
    let seg = &smoothed[skip_start..n];
    let (imin, &min) = match seg.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1)) {
        Some(x) => x,
        None => return Vec::new(),
    };
    let start = seg[0];
    let drop = start - min;
    let mut out = Vec::new();
    if drop > 0.0 {
        if let Some(ib) = seg.iter().position(|&x| x <= start - 0.05 * drop) {
            out.push(Suggestion {
                rule: "clr_base".into(),
                lr: lr[skip_start + ib],
                index: skip_start + ib,
                how: format!(
                    "first point where the smoothed loss has fallen by 5% of its total fall (first {skip_start} points trimmed)"
                ),
            });
        }
    }
    out.push(Suggestion {
        rule: "clr_max".into(),
        lr: lr[skip_start + imin],
        index: skip_start + imin,
        how: format!("lowest smoothed loss (first {skip_start} points trimmed)"),
    });
    out
}

/// Smith's reading of the accuracy version of the test (CLR paper §3.3): `clr_base` where
/// accuracy starts to rise (first point above `acc[0] + 10%` of the total rise), `clr_max`
/// where it peaks.
pub fn accuracy_bounds(lr: &[f64], acc: &[f64]) -> Vec<Suggestion> {
    let n = acc.len().min(lr.len());
    if n == 0 {
        return Vec::new();
    }
    let (imax, &max) = acc[..n]
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .expect("non-empty");
    let rise = max - acc[0];
    let mut out = Vec::new();
    if rise > 0.0 {
        if let Some(ib) = acc[..n].iter().position(|&a| a >= acc[0] + 0.1 * rise) {
            out.push(Suggestion {
                rule: "clr_base".into(),
                lr: lr[ib],
                index: ib,
                how: "first evaluation where accuracy has risen by 10% of its total rise".into(),
            });
        }
    }
    out.push(Suggestion {
        rule: "clr_max".into(),
        lr: lr[imax],
        index: imax,
        how: "highest held-out accuracy".into(),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp_lrs(n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| 1e-4 * 1e4f64.powf(i as f64 / (n - 1) as f64))
            .collect()
    }

    #[test]
    fn smoothing_is_bias_corrected() {
        let s = smooth(&[2.0, 2.0, 2.0], 0.98);
        for x in s {
            assert!((x - 2.0).abs() < 1e-12);
        }
        assert_eq!(smooth(&[1.0, 3.0], 0.0), vec![1.0, 3.0]);
    }

    #[test]
    fn rules_find_the_fall_of_a_sigmoid_curve() {
        // Loss falls from 2 to 0.2 around lr = 1e-2 (a sigmoid in ln lr), then explodes.
        let lr = exp_lrs(100);
        let loss: Vec<f64> = lr
            .iter()
            .map(|&x| {
                let z = (x.ln() - 1e-2f64.ln()) * 2.0;
                0.2 + 1.8 / (1.0 + z.exp()) + if x > 0.5 { (x - 0.5) * 50.0 } else { 0.0 }
            })
            .collect();
        let st = steepest(&lr, &loss, 5, 5).unwrap();
        assert!((st.lr / 1e-2).ln().abs() < 0.2, "steepest at {}", st.lr);
        let min = minimum_div10(&lr, &loss, 100).unwrap();
        assert!(min.lr > 1e-2 && min.lr < 0.05, "minimum/10 at {}", min.lr);
        let v = valley(&lr, &loss, 100).unwrap();
        assert!(v.lr > 1e-4 && v.lr < 0.5, "valley at {}", v.lr);
        let b = clr_bounds(&lr, &loss, 0);
        assert_eq!(b[0].rule, "clr_base");
        assert!(b[0].lr < st.lr && b[1].lr > st.lr);
    }

    #[test]
    fn valley_follows_fastai_index_rule() {
        // The longest decreasing subsequence 5, 4, 3.5, ..., 1 ends at index 8 (L = 8):
        // start = 0, sections = 8/3, idx = 0 + 2 + 1 = 3 (what fastai's loop gives).
        // Five more points past the end, which fastai's trim drops; num_it = 9 trims none
        // at the start.
        let loss = [
            5.0, 6.0, 4.0, 3.5, 3.0, 2.5, 2.0, 1.5, 1.0, 9.0, 0.1, 0.1, 0.1, 0.1, 0.1,
        ];
        let lr: Vec<f64> = (1..=15).map(|i| i as f64).collect();
        let v = valley(&lr, &loss, 9).unwrap();
        assert_eq!(v.index, 3);
        // num_it = 20 trims the first 2: the run 4.0 .. 1.0 (L = 7) from the window's first
        // point; start = -1, sections 7/3: -1 + 2 + 1 = 2 in the window, 4 in the curve.
        assert_eq!(valley(&lr, &loss, 20).unwrap().index, 4);
    }

    #[test]
    fn non_finite_points_are_cut_and_the_ends_trimmed() {
        let lr = exp_lrs(20);
        let mut loss = vec![3.0, 2.5, 2.0, 1.5, f64::NAN];
        loss.extend([0.1; 15]);
        assert_eq!(minimum_div10(&lr, &loss, 20).unwrap().index, 3);
        // Window 2..4 = [2.0, 1.5]: L = 2 ending at 1, start -1, index -1: the last point.
        assert_eq!(valley(&lr, &loss, 20).unwrap().index, 3);
        // The lowest point among the last five is not read.
        let mut loss: Vec<f64> = (0..20).map(|i| 3.0 - 0.1 * i as f64).collect();
        loss[17] = -5.0;
        assert_eq!(minimum_div10(&lr, &loss, 20).unwrap().index, 14);
        assert_eq!(fastai_window(&loss, 20), 2..15);
    }

    #[test]
    fn accuracy_bounds_read_rise_and_peak() {
        let lr = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6];
        let acc = [0.1, 0.1, 0.3, 0.6, 0.7, 0.4];
        let b = accuracy_bounds(&lr, &acc);
        assert_eq!((b[0].rule.as_str(), b[0].lr), ("clr_base", 0.3));
        assert_eq!((b[1].rule.as_str(), b[1].lr), ("clr_max", 0.5));
    }
}
