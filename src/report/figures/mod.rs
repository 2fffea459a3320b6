//! The figures of a run, a sweep and a range test, as [`Figure`] descriptions.
//!
//! - `schedule`: learning rate (top) and momentum (bottom) against epoch, one line per grid
//!   point, from `steps.csv` (the values the optimizer used).
//! - `curves`: test error (%) and training loss against epoch. One run or one grid point:
//!   test and training curves together. Several points: one line per point, the mean over its
//!   seeds, with a band (min–max or ±1 std).
//! - `lr_find`: raw and smoothed loss against the learning rate (log axis), the suggestions
//!   as labelled vertical lines, held-out accuracy in a second panel when recorded.
//! - `hf_lr`: the Hessian-free estimates of the optimal learning rate (finite difference,
//!   its moving average, gᵀg / gᵀHg) beside the learning rate in use, against the iteration,
//!   on a log axis (as the super-convergence paper's figure).

use super::chart::{Axis, Band, Figure, LegendEntry, Line, Mark, Panel, Style, PALETTE};
use super::group::{aggregate, BandKind, Point};
use super::read::{HfRow, RangeTest, Run, ScheduleRow};

/// Options shared by the figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FigureOptions {
    /// Logarithmic y axes for error and loss.
    pub log_y: bool,
    /// What the band around a mean line shows.
    pub band: BandKind,
}

/// The Hessian-free estimates and the learning rate in use against the iteration (log y);
/// `None` with no rows. Values that a log axis cannot show (≤ 0: the loss is concave along
/// the gradient there) are left out, and the subtitle says how many.
pub fn hf_lr(title: &str, rows: &[HfRow]) -> Option<Figure> {
    if rows.is_empty() {
        return None;
    }
    let mut left_out = 0;
    let mut series = |f: &dyn Fn(&HfRow) -> Option<f64>| -> Vec<(f64, f64)> {
        rows.iter()
            .filter_map(|r| {
                let v = f(r)?;
                if v.is_finite() && v > 0.0 {
                    Some((r.step, v))
                } else {
                    left_out += 1;
                    None
                }
            })
            .collect()
    };
    let lr = series(&|r| Some(r.lr));
    let raw = series(&|r| r.hf_lr);
    let ema = series(&|r| r.hf_lr_ema);
    let curv = series(&|r| r.curvature_lr);
    let caffe = series(&|r| r.hf_lr_caffe_ema);
    let mut panel = Panel {
        y: Axis {
            label: "learning rate (log scale)".into(),
            log: true,
            range: None,
        },
        ..Panel::default()
    };
    let mut legend = Vec::new();
    let mut push = |points: Vec<(f64, f64)>, style: Style, label: &str| {
        if points.is_empty() {
            return;
        }
        panel.lines.push(Line {
            points: super::chart::thin(&points),
            style,
        });
        legend.push(LegendEntry {
            label: label.to_string(),
            style,
            band: false,
        });
    };
    let est = Style::solid(PALETTE[1]);
    push(lr, Style::solid(PALETTE[0]), "learning rate in use");
    push(
        raw,
        Style {
            width: 1,
            opacity: 0.4,
            ..est
        },
        "finite-difference estimate",
    );
    push(ema, est, "its moving average (α = 0.1)");
    push(curv, Style::solid(PALETTE[2]), "gᵀg / gᵀHg");
    push(
        caffe,
        Style::solid(PALETTE[3]),
        "moving average over every Caffe blob (batch norm's accumulators too)",
    );
    Some(Figure {
        title: title.to_string(),
        subtitle: if left_out > 0 {
            format!("{left_out} values ≤ 0 or not finite left out (log axis)")
        } else {
            String::new()
        },
        x: Axis {
            label: "iteration".into(),
            ..Axis::default()
        },
        panels: vec![panel],
        legend,
    })
}

/// The figure of `lrlab schedule --plot`: [`schedule`] of `rows` (`(epoch, lr, momentum)`),
/// its LR axis logarithmic also when `log_y` asks, with an LR of 0 (a cosine's end) drawn at
/// the smallest positive LR. An error when there is nothing to draw.
pub fn schedule_plot(title: &str, rows: &[(f64, f64, f64)], log_y: bool) -> anyhow::Result<Figure> {
    let floor = rows
        .iter()
        .map(|r| r.1)
        .filter(|&v| v > 0.0)
        .fold(f64::INFINITY, f64::min);
    let log = log_y && floor.is_finite();
    let rows: Vec<ScheduleRow> = rows
        .iter()
        .map(|&(epoch, lr, m)| ScheduleRow {
            epoch,
            lr: if log { lr.max(floor) } else { lr },
            momentum: Some(m),
        })
        .collect();
    schedule_with(title, &[(String::new(), rows)], log)
        .ok_or_else(|| anyhow::anyhow!("nothing to plot: no rows"))
}

/// LR and momentum against epoch, one line per `(label, rows)`; `None` with nothing to draw.
pub fn schedule(title: &str, series: &[(String, Vec<ScheduleRow>)]) -> Option<Figure> {
    schedule_with(title, series, false)
}

/// [`schedule`], the LR axis logarithmic when `log_lr` or when every series only grows over
/// two decades or more (a range test's ramp).
fn schedule_with(
    title: &str,
    series: &[(String, Vec<ScheduleRow>)],
    log_lr: bool,
) -> Option<Figure> {
    let series: Vec<&(String, Vec<ScheduleRow>)> =
        series.iter().filter(|(_, rows)| !rows.is_empty()).collect();
    if series.is_empty() {
        return None;
    }
    // A range test's ramp reads best on a log axis; anything that goes down does not.
    let log_lr = log_lr
        || series.iter().all(|(_, rows)| {
            let lo = rows.iter().map(|r| r.lr).fold(f64::INFINITY, f64::min);
            let hi = rows.iter().map(|r| r.lr).fold(0.0, f64::max);
            rows.windows(2).all(|w| w[1].lr >= w[0].lr) && lo > 0.0 && hi / lo >= 100.0
        });
    let mut lr = Panel {
        y: Axis {
            label: if log_lr {
                "learning rate (log scale)".into()
            } else {
                "learning rate".into()
            },
            log: log_lr,
            range: None,
        },
        ..Panel::default()
    };
    let mut mom = Panel {
        y: Axis {
            label: "momentum".into(),
            ..Axis::default()
        },
        ..Panel::default()
    };
    let mut legend = Vec::new();
    for (i, (label, rows)) in series.iter().enumerate() {
        let style = Style::series(i);
        let pts: Vec<(f64, f64)> = rows.iter().map(|r| (r.epoch, r.lr)).collect();
        lr.lines.push(Line {
            points: super::chart::thin(&pts),
            style,
        });
        let m: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|r| r.momentum.map(|m| (r.epoch, m)))
            .collect();
        if !m.is_empty() {
            mom.lines.push(Line {
                points: super::chart::thin(&m),
                style,
            });
        }
        legend.push(LegendEntry {
            label: label.clone(),
            style,
            band: false,
        });
    }
    let mvals = mom.lines.iter().flat_map(|l| l.points.iter().map(|p| p.1));
    let (mlo, mhi) = mvals.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if mlo == mhi {
        mom.y.label = "momentum (constant)".into();
    }
    let mut panels = vec![lr];
    if !mom.lines.is_empty() {
        panels.push(mom);
    }
    Some(Figure {
        title: title.to_string(),
        subtitle: String::new(),
        x: Axis {
            label: "epoch".into(),
            ..Axis::default()
        },
        panels,
        legend: if series.len() > 1 { legend } else { Vec::new() },
    })
}

/// A curve of one run: `(epoch, value)` for the epochs where `f` gives a value.
fn curve(run: &Run, f: impl Fn(&super::read::EpochRow) -> Option<f64>) -> Vec<(f64, f64)> {
    run.epochs
        .iter()
        .filter_map(|e| f(e).map(|v| (e.epoch, v)))
        .collect()
}

fn test_error(e: &super::read::EpochRow) -> Option<f64> {
    e.test_acc.map(|a| 100.0 * (1.0 - a))
}

fn train_error(e: &super::read::EpochRow) -> Option<f64> {
    e.train_acc.map(|a| 100.0 * (1.0 - a))
}

/// Mean line and band of one metric over a point's runs.
fn mean_curve(
    runs: &[&Run],
    f: &dyn Fn(&super::read::EpochRow) -> Option<f64>,
    band: BandKind,
    style: Style,
) -> (Line, Option<Band>) {
    let series: Vec<Vec<(f64, f64)>> = runs.iter().map(|r| curve(r, f)).collect();
    let agg = aggregate(&series, band);
    let line = Line {
        points: agg.iter().map(|a| (a.x, a.mean)).collect(),
        style,
    };
    let band = (runs.len() > 1 && band != BandKind::None).then(|| Band {
        points: agg.iter().map(|a| (a.x, a.lo, a.hi)).collect(),
        color: style.color,
    });
    (line, band)
}

/// Test error and training loss against epoch; `None` when no run has an epoch row.
pub fn curves(title: &str, points: &[Point], runs: &[Run], opts: FigureOptions) -> Option<Figure> {
    if runs.iter().all(|r| r.epochs.is_empty()) {
        return None;
    }
    let seeds = points.iter().map(|p| p.runs.len()).max().unwrap_or(1);
    let band_text = match opts.band {
        BandKind::MinMax => "band: lowest to highest seed",
        BandKind::Std => "band: mean ± 1 standard deviation",
        BandKind::None => "no band",
    };
    let subtitle = if seeds > 1 {
        format!("lines: mean over seeds (up to {seeds} per point); {band_text}")
    } else {
        String::new()
    };
    let log = |s: &str| {
        if opts.log_y {
            format!("{s} (log scale)")
        } else {
            s.to_string()
        }
    };
    let mut top = Panel::default();
    let mut bottom = Panel::default();
    let mut legend = Vec::new();
    let banded = seeds > 1 && opts.band != BandKind::None;
    if points.len() == 1 {
        let members: Vec<&Run> = points[0].runs.iter().map(|&i| &runs[i]).collect();
        top.y = Axis {
            label: log("error (%)"),
            log: opts.log_y,
            range: None,
        };
        bottom.y = Axis {
            label: log("loss"),
            log: opts.log_y,
            range: None,
        };
        let test = Style::solid(PALETTE[0]);
        let train = Style::solid(PALETTE[1]);
        type Metric = fn(&super::read::EpochRow) -> Option<f64>;
        let parts: [(bool, Metric, Style); 4] = [
            (true, test_error, test),
            (true, train_error, train),
            (false, |e| e.test_loss, test),
            (false, |e| e.train_loss, train),
        ];
        for (upper, f, style) in parts {
            let (line, band) = mean_curve(&members, &f, opts.band, style);
            if line.points.is_empty() {
                continue;
            }
            let panel = if upper { &mut top } else { &mut bottom };
            panel.lines.push(line);
            panel.bands.extend(band);
        }
        legend.push(LegendEntry {
            label: "test".into(),
            style: test,
            band: banded,
        });
        legend.push(LegendEntry {
            label: "training".into(),
            style: train,
            band: banded,
        });
    } else {
        top.y = Axis {
            label: log("test error (%)"),
            log: opts.log_y,
            range: None,
        };
        bottom.y = Axis {
            label: log("training loss"),
            log: opts.log_y,
            range: None,
        };
        for (i, p) in points.iter().enumerate() {
            let style = Style::series(i);
            let members: Vec<&Run> = p.runs.iter().map(|&r| &runs[r]).collect();
            for (panel, f) in [
                (
                    &mut top,
                    &test_error as &dyn Fn(&super::read::EpochRow) -> Option<f64>,
                ),
                (&mut bottom, &|e: &super::read::EpochRow| e.train_loss),
            ] {
                let (line, band) = mean_curve(&members, f, opts.band, style);
                if !line.points.is_empty() {
                    panel.lines.push(line);
                    panel.bands.extend(band);
                }
            }
            let n = p.runs.len();
            legend.push(LegendEntry {
                label: if n > 1 {
                    format!("{} (n={n})", p.label)
                } else {
                    p.label.clone()
                },
                style,
                band: n > 1 && opts.band != BandKind::None,
            });
        }
    }
    let mut subtitle = subtitle;
    let hidden = [&top, &bottom]
        .iter()
        .flat_map(|p| p.lines.iter().flat_map(|l| l.points.iter()))
        .any(|p| p.1 <= 0.0);
    if opts.log_y && hidden {
        if !subtitle.is_empty() {
            subtitle.push_str("; ");
        }
        subtitle.push_str("zeros are not shown on log axes");
    }
    Some(Figure {
        title: title.to_string(),
        subtitle,
        x: Axis {
            label: "epoch".into(),
            ..Axis::default()
        },
        panels: vec![top, bottom],
        legend,
    })
}

/// Mark the papers' time-to-accuracy on a [`curves`] figure of `points`: a dashed line at the
/// test error of accuracy `acc` (the reference point's final one), and at the first epoch where
/// each point's mean test accuracy reaches it, a vertical line in the point's colour.
pub fn mark_reference(fig: &mut Figure, points: &[Point], runs: &[Run], acc: f64) {
    let Some(top) = fig.panels.first_mut() else {
        return;
    };
    let err = 100.0 * (1.0 - acc);
    let xs: Vec<f64> = top
        .lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .collect();
    let (lo, hi) = (
        xs.iter().copied().fold(f64::INFINITY, f64::min),
        xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    if !lo.is_finite() || !hi.is_finite() {
        return;
    }
    let grey = Style {
        width: 1,
        dashed: true,
        ..Style::solid(PALETTE[PALETTE.len() - 1])
    };
    top.lines.push(Line {
        points: vec![(lo, err), (hi, err)],
        style: grey,
    });
    fig.legend.push(LegendEntry {
        label: format!("reference: {:.2}%", 100.0 * acc),
        style: grey,
        band: false,
    });
    for (i, p) in points.iter().enumerate() {
        let mut by_epoch: std::collections::BTreeMap<u64, Vec<f64>> = Default::default();
        for &r in &p.runs {
            for e in &runs[r].epochs {
                if let Some(a) = e.test_acc {
                    by_epoch.entry(e.epoch.to_bits()).or_default().push(a);
                }
            }
        }
        let mut mean: Vec<(f64, f64)> = by_epoch
            .into_iter()
            .map(|(e, v)| (f64::from_bits(e), v.iter().sum::<f64>() / v.len() as f64))
            .collect();
        mean.sort_by(|a, b| a.0.total_cmp(&b.0));
        if let Some(&(x, _)) = mean.iter().find(|(_, a)| *a >= acc - 1e-12) {
            top.marks.push(Mark {
                x,
                label: String::new(),
                style: Style {
                    width: 1,
                    dashed: true,
                    ..Style::series(if points.len() == 1 { 0 } else { i })
                },
            });
        }
    }
}

mod range_test;
pub use range_test::{range_test, range_tests, short_sci};

#[cfg(test)]
mod tests {
    #[test]
    fn the_schedule_plot_draws_a_log_lr_axis_through_zero_when_asked() {
        // A cosine to 0: linear unless asked; asked, a log axis whose floor is the smallest
        // positive LR.
        let rows: Vec<(f64, f64, f64)> = (0..=50)
            .map(|k| {
                let t = k as f64 / 50.0;
                (t, 0.05 * (1.0 + (std::f64::consts::PI * t).cos()), 0.9)
            })
            .collect();
        let linear = super::super::chart::svg(&schedule_plot("t", &rows, false).unwrap()).unwrap();
        let log = super::super::chart::svg(&schedule_plot("t", &rows, true).unwrap()).unwrap();
        assert!(!linear.contains("log scale"));
        assert!(log.contains("learning rate (log scale)"), "{log}");
        assert!(schedule_plot("t", &[], false).is_err());
    }

    #[test]
    fn the_schedule_plot_has_its_labels_and_both_curves() {
        let rows: Vec<(f64, f64, f64)> = (0..50)
            .map(|k| (k as f64 / 10.0, 0.1 / (1.0 + k as f64), 0.9))
            .collect();
        let svg =
            super::super::chart::svg(&schedule_plot("demo title", &rows, false).unwrap()).unwrap();
        for needle in [
            "demo title",
            "learning rate",
            "momentum (constant)",
            "epoch",
            "<polyline",
        ] {
            assert!(svg.contains(needle), "missing {needle}");
        }
    }

    use super::range_test::loss_range;
    use super::*;

    #[test]
    fn short_scientific_text() {
        assert_eq!(short_sci(0.0027825594022071257), "2.8e-3");
        assert_eq!(short_sci(0.2), "2e-1");
    }

    #[test]
    fn range_test_axis_keeps_the_blow_up_out() {
        let smooth = [2.3, 2.2, 1.5, 1.2, 3.0, 1800.0];
        let raw = [2.4, 2.0, 1.4, 1.1, 5.0, 2500.0];
        let (lo, hi) = loss_range(&raw, &smooth, false).unwrap();
        assert!(lo < 1.1 && lo > 1.0, "{lo}");
        assert!(hi > 2.4 && hi < 3.0, "{hi}");
    }
}
