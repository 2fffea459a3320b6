//! The axes of a figure: scales in plotting space (log10 on a log axis), round ticks and
//! their labels, clipping of polylines to the plot box, and the text helpers of labels and
//! titles.

use super::Axis;
use plotters::prelude::*;

/// Above this many points a curve is thinned (keeping every local extreme) before drawing.
const MAX_POINTS: usize = 4000;

/// An axis in plotting space (log10 of the value on a log axis) with its ticks and labels.
#[derive(Clone, Debug)]
pub(super) struct Scale {
    pub(super) log: bool,
    pub(super) lo: f64,
    pub(super) hi: f64,
    /// Labelled ticks in plotting space.
    pub(super) ticks: Vec<(f64, String)>,
    /// Unlabelled grid lines in plotting space.
    pub(super) minor: Vec<f64>,
}

impl Scale {
    /// Map a data value into plotting space; `None` when it cannot be shown.
    pub(super) fn t(&self, v: f64) -> Option<f64> {
        to_t(self.log, v)
    }

    pub(super) fn fit(axis: &Axis, values: impl Iterator<Item = f64>) -> Scale {
        let (lo, hi) = match axis
            .range
            .and_then(|(a, b)| Some((to_t(axis.log, a)?, to_t(axis.log, b)?)))
        {
            Some((a, b)) if b > a => (a, b),
            _ => {
                let (a, b) = values
                    .filter_map(|v| to_t(axis.log, v))
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                        (a.min(v), b.max(v))
                    });
                if !a.is_finite() {
                    if axis.log {
                        (-1.0, 0.0)
                    } else {
                        (0.0, 1.0)
                    }
                } else if axis.log {
                    let span = (b - a).max(0.3);
                    let mid = (a + b) / 2.0;
                    let (a, b) = (mid - span / 2.0, mid + span / 2.0);
                    (a - 0.03 * span, b + 0.05 * span)
                } else {
                    pad(a, b)
                }
            }
        };
        let (ticks, minor) = if axis.log {
            log_ticks(lo, hi)
        } else {
            (linear_ticks(lo, hi), Vec::new())
        };
        Scale {
            log: axis.log,
            lo,
            hi,
            ticks,
            minor,
        }
    }

    pub(super) fn label(&self, t: f64) -> String {
        let tol = (self.hi - self.lo).abs() * 1e-9;
        self.ticks
            .iter()
            .find(|(v, _)| (v - t).abs() <= tol)
            .map(|(_, s)| s.clone())
            .unwrap_or_default()
    }
}

fn to_t(log: bool, v: f64) -> Option<f64> {
    if !v.is_finite() {
        None
    } else if log {
        (v > 0.0).then(|| v.log10())
    } else {
        Some(v)
    }
}

/// Ticks at multiples of 1, 2, 2.5 or 5 × 10^k, 4 to 8 of them, labelled with just enough
/// decimals (scientific notation for very small or large axes).
fn linear_ticks(lo: f64, hi: f64) -> Vec<(f64, String)> {
    let span = hi - lo;
    if span.is_nan() || span <= 0.0 {
        return vec![(lo, sci(lo))];
    }
    let raw = span / 6.0;
    let e = raw.log10().floor() as i32;
    let base = 10f64.powi(e);
    let (m, step) = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| (*m, m * base))
        .find(|(_, s)| span / s <= 8.0)
        .unwrap_or((10.0, 10.0 * base));
    // Decimals of m × 10^e: 2.5 needs one more than 1, 2 or 5; 10 one fewer.
    let extra = if m == 2.5 {
        1
    } else if m == 10.0 {
        -1
    } else {
        0
    };
    let decimals = (-e + extra).max(0) as usize;
    let big = lo.abs().max(hi.abs());
    let sci_axis = !(1e-3..1e5).contains(&big);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last)
        .map(|k| {
            let v = k as f64 * step;
            let label = if k == 0 {
                "0".to_string()
            } else if sci_axis {
                sci(v)
            } else {
                format!("{v:.decimals$}")
            };
            (v, label)
        })
        .collect()
}

/// Log ticks in log10 space: every decade (or every 2nd, 3rd... when many) with the 2..9
/// multiples as grid lines; on axes spanning under two decades, 1, 2, 5 (or 1..9) × 10^k.
fn log_ticks(lo: f64, hi: f64) -> (Vec<(f64, String)>, Vec<f64>) {
    let d0 = lo.ceil() as i32;
    let d1 = hi.floor() as i32;
    let decades = if d1 >= d0 { (d1 - d0 + 1) as usize } else { 0 };
    let mut candidates: Vec<(i32, i32)> = Vec::new(); // (mantissa, exponent)
    let mut minor = Vec::new();
    let in_range = |m: i32, e: i32| {
        let t = (m as f64).log10() + e as f64;
        t >= lo - 1e-12 && t <= hi + 1e-12
    };
    if decades >= 3 {
        let every = decades.div_ceil(10) as i32;
        for e in d0..=d1 {
            if (e - d0) % every == 0 {
                candidates.push((1, e));
            }
        }
        if every == 1 {
            for e in (lo.floor() as i32)..=(hi.ceil() as i32) {
                for m in 2..=9 {
                    if in_range(m, e) {
                        minor.push((m as f64).log10() + e as f64);
                    }
                }
            }
        }
    } else {
        for mantissas in [&[1, 2, 5][..], &[1, 2, 3, 4, 5, 6, 7, 8, 9][..]] {
            candidates.clear();
            for e in (lo.floor() as i32)..=(hi.ceil() as i32) {
                for &m in mantissas {
                    if in_range(m, e) {
                        candidates.push((m, e));
                    }
                }
            }
            if candidates.len() >= 3 {
                break;
            }
        }
    }
    let decimal = candidates.iter().all(|&(_, e)| (-3..5).contains(&e));
    let ticks = candidates
        .into_iter()
        .map(|(m, e)| {
            let t = (m as f64).log10() + e as f64;
            let label = if decimal {
                if e >= 0 {
                    format!("{}", m as i64 * 10i64.pow(e as u32))
                } else {
                    format!("{:.*}", (-e) as usize, m as f64 * 10f64.powi(e))
                }
            } else {
                format!("{m}e{e}")
            };
            (t, label)
        })
        .collect();
    (ticks, minor)
}

/// Clip a polyline (data units) to the scales' box; returns the visible pieces in plotting
/// space. A point that cannot be shown (NaN, ≤ 0 on a log axis) ends a piece.
pub(super) fn clip(points: &[(f64, f64)], xs: &Scale, ys: &Scale) -> Vec<Vec<(f64, f64)>> {
    let mut pieces: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut cur: Vec<(f64, f64)> = Vec::new();
    let mut prev: Option<(f64, f64)> = None;
    let flush = |cur: &mut Vec<(f64, f64)>, pieces: &mut Vec<Vec<(f64, f64)>>| {
        if !cur.is_empty() {
            pieces.push(std::mem::take(cur));
        }
    };
    for &(x, y) in points {
        let p = match (xs.t(x), ys.t(y)) {
            (Some(a), Some(b)) => (a, b),
            _ => {
                flush(&mut cur, &mut pieces);
                prev = None;
                continue;
            }
        };
        match prev {
            None => {
                if inside(p, xs, ys) {
                    cur.push(p);
                }
            }
            Some(q) => match clip_segment(q, p, xs, ys) {
                None => flush(&mut cur, &mut pieces),
                Some((a, b)) => {
                    if cur.last() != Some(&a) {
                        flush(&mut cur, &mut pieces);
                        cur.push(a);
                    }
                    cur.push(b);
                    if b != p {
                        flush(&mut cur, &mut pieces);
                    }
                }
            },
        }
        prev = Some(p);
    }
    flush(&mut cur, &mut pieces);
    pieces
}

fn inside(p: (f64, f64), xs: &Scale, ys: &Scale) -> bool {
    p.0 >= xs.lo && p.0 <= xs.hi && p.1 >= ys.lo && p.1 <= ys.hi
}

/// Liang–Barsky clipping of the segment a→b to the box.
fn clip_segment(
    a: (f64, f64),
    b: (f64, f64),
    xs: &Scale,
    ys: &Scale,
) -> Option<((f64, f64), (f64, f64))> {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    for (p, q) in [
        (-dx, a.0 - xs.lo),
        (dx, xs.hi - a.0),
        (-dy, a.1 - ys.lo),
        (dy, ys.hi - a.1),
    ] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else {
            let r = q / p;
            if p < 0.0 {
                t0 = t0.max(r);
            } else {
                t1 = t1.min(r);
            }
        }
    }
    if t0 > t1 {
        return None;
    }
    let at = |t: f64| {
        if t == 0.0 {
            a
        } else if t == 1.0 {
            b
        } else {
            (a.0 + t * dx, a.1 + t * dy)
        }
    };
    Some((at(t0), at(t1)))
}

/// A linear coordinate with our own tick positions (plotters' `WithKeyPoints` loses the
/// label formatter of the range it wraps).
pub(super) struct Ticked {
    lo: f64,
    hi: f64,
    bold: Vec<f64>,
    light: Vec<f64>,
}

impl Ticked {
    pub(super) fn of(s: &Scale) -> Ticked {
        Ticked {
            lo: s.lo,
            hi: s.hi,
            bold: s.ticks.iter().map(|t| t.0).collect(),
            light: s.minor.clone(),
        }
    }
}

impl Ranged for Ticked {
    type FormatOption = plotters::coord::ranged1d::DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let frac = (v - self.lo) / (self.hi - self.lo);
        let len = limit.1 - limit.0;
        if len == 0 || !frac.is_finite() {
            return limit.0;
        }
        limit.0 + (len as f64 * frac + 1e-3).floor() as i32
    }

    fn key_points<H: plotters::coord::ranged1d::KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.light.clone()
        } else {
            self.bold.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// A little room around `[lo, hi]` (and a visible band when the curve is flat).
pub(crate) fn pad(lo: f64, hi: f64) -> (f64, f64) {
    let span = hi - lo;
    if span <= f64::EPSILON * hi.abs().max(1e-300) {
        let d = if hi == 0.0 { 1.0 } else { hi.abs() * 0.05 };
        return (lo - d, hi + d);
    }
    (lo - span * 0.04, hi + span * 0.06)
}

/// Scientific notation with at most 3 significant digits: `1e-4`, `2.5e-5`.
pub(crate) fn sci(v: f64) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    let s = format!("{v:.2e}");
    match s.split_once('e') {
        Some((mant, exp)) => {
            let mant = mant.trim_end_matches('0').trim_end_matches('.');
            format!("{mant}e{exp}")
        }
        None => s,
    }
}

/// Split a title into lines of at most `width` characters, at spaces (at most 3 lines).
pub(super) fn wrap(title: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut cur = String::new();
    for word in title.split_whitespace() {
        if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    if !cur.is_empty() || lines.is_empty() {
        lines.push(cur);
    }
    if lines.len() > 3 {
        lines.truncate(3);
        lines[2].push_str(" ...");
    }
    lines
}

/// At most about [`MAX_POINTS`] points: every bucket of consecutive points keeps its first,
/// lowest, highest and last point, in order, so peaks, restarts and jumps survive.
pub(crate) fn thin(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    if points.len() <= MAX_POINTS {
        return points.to_vec();
    }
    let bucket = points.len().div_ceil(MAX_POINTS / 4);
    let mut out = Vec::with_capacity(MAX_POINTS + 4);
    for chunk in points.chunks(bucket) {
        let (mut imin, mut imax) = (0, 0);
        for (i, p) in chunk.iter().enumerate() {
            if p.1 < chunk[imin].1 {
                imin = i;
            }
            if p.1 > chunk[imax].1 {
                imax = i;
            }
        }
        let mut idx = [0, imin, imax, chunk.len() - 1];
        idx.sort_unstable();
        let mut last = usize::MAX;
        for i in idx {
            if i != last {
                out.push(chunk[i]);
                last = i;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scale(lo: f64, hi: f64, log: bool) -> Scale {
        Scale {
            log,
            lo,
            hi,
            ticks: vec![],
            minor: vec![],
        }
    }

    #[test]
    fn linear_ticks_are_round() {
        let t: Vec<String> = linear_ticks(0.0, 1.0).into_iter().map(|t| t.1).collect();
        assert_eq!(t, ["0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
        let t: Vec<String> = linear_ticks(-0.1, 10.3).into_iter().map(|t| t.1).collect();
        assert_eq!(t, ["0", "2", "4", "6", "8", "10"]);
        let t: Vec<String> = linear_ticks(0.0, 17.0).into_iter().map(|t| t.1).collect();
        assert_eq!(t, ["0", "2.5", "5.0", "7.5", "10.0", "12.5", "15.0"]);
        let t: Vec<String> = linear_ticks(0.0, 1e-5).into_iter().map(|t| t.1).collect();
        assert_eq!(t[1], "2e-6");
    }

    #[test]
    fn log_ticks_are_decades_or_1_2_5() {
        let (t, minor) = log_ticks(-7.0, 1.0);
        let labels: Vec<&str> = t.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(
            labels,
            ["1e-7", "1e-6", "1e-5", "1e-4", "1e-3", "1e-2", "1e-1", "1e0", "1e1"]
        );
        assert!(!minor.is_empty());
        let (t, _) = log_ticks(0.0, 1.5);
        let labels: Vec<&str> = t.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(labels, ["1", "2", "5", "10", "20"]);
        let (t, _) = log_ticks(-1.2, -0.9);
        let labels: Vec<&str> = t.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(labels, ["0.07", "0.08", "0.09", "0.1"]);
    }

    #[test]
    fn clipping_cuts_at_the_box_and_breaks_at_gaps() {
        let xs = scale(0.0, 10.0, false);
        let ys = scale(0.0, 1.0, false);
        let pts = [
            (0.0, 0.5),
            (1.0, 2.0),
            (2.0, 0.5),
            (3.0, f64::NAN),
            (4.0, 0.2),
            (5.0, 0.3),
        ];
        let pieces = clip(&pts, &xs, &ys);
        assert_eq!(pieces.len(), 3, "{pieces:?}");
        let near = |a: &[(f64, f64)], b: &[(f64, f64)]| {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(p, q)| (p.0 - q.0).abs() < 1e-12 && (p.1 - q.1).abs() < 1e-12)
        };
        assert!(
            near(&pieces[0], &[(0.0, 0.5), (1.0 / 3.0, 1.0)]),
            "{pieces:?}"
        );
        assert!(
            near(&pieces[1], &[(5.0 / 3.0, 1.0), (2.0, 0.5)]),
            "{pieces:?}"
        );
        assert_eq!(pieces[2], vec![(4.0, 0.2), (5.0, 0.3)]);
        // On a log axis, zero cannot be shown and breaks the line.
        let ylog = scale(-2.0, 0.0, true);
        let pieces = clip(
            &[(0.0, 0.1), (1.0, 0.0), (2.0, 0.1), (3.0, 0.2)],
            &xs,
            &ylog,
        );
        assert_eq!(pieces.len(), 2);
    }
}

#[cfg(test)]
mod helper_tests {
    use super::*;

    #[test]
    fn thinning_keeps_extremes_and_order() {
        let pts: Vec<(f64, f64)> = (0..100_000)
            .map(|i| (i as f64, ((i % 997) as f64).sin()))
            .collect();
        let t = thin(&pts);
        assert!(t.len() <= MAX_POINTS + 4);
        assert!(t.windows(2).all(|w| w[0].0 < w[1].0));
        let max = pts.iter().map(|p| p.1).fold(f64::MIN, f64::max);
        assert!(t.iter().any(|p| p.1 == max));
        assert_eq!(t.first(), pts.first());
        assert_eq!(t.last(), pts.last());
    }

    #[test]
    fn scientific_ticks_and_wrapped_titles() {
        assert_eq!(sci(1e-7), "1e-7");
        assert_eq!(sci(2.5e-5), "2.5e-5");
        assert_eq!(wrap("a bb ccc", 4), vec!["a bb", "ccc"]);
        assert_eq!(wrap("", 10), vec![""]);
    }
}
