//! The range-test figures: raw and smoothed loss against the learning rate (log axis), the
//! suggestions as labelled vertical lines, held-out accuracy in a second panel when recorded.

use super::*;

/// The range-test figure.
pub fn range_test(title: &str, rt: &RangeTest, log_y: bool) -> Figure {
    let smooth = rt.smoothed.as_deref();
    let shown = smooth.unwrap_or(&rt.loss);
    let y_range = loss_range(&rt.loss, shown, log_y);
    let main = Style::solid(PALETTE[0]);
    let raw = Style {
        width: 1,
        opacity: 0.4,
        ..main
    };
    let mut top = Panel {
        y: Axis {
            label: if log_y {
                "training loss (log scale)".into()
            } else {
                "training loss".into()
            },
            log: log_y,
            range: y_range,
        },
        ..Panel::default()
    };
    let pts =
        |ys: &[f64]| -> Vec<(f64, f64)> { rt.lr.iter().copied().zip(ys.iter().copied()).collect() };
    let mut legend = vec![LegendEntry {
        label: "loss".into(),
        style: raw,
        band: false,
    }];
    top.lines.push(Line {
        points: pts(&rt.loss),
        style: raw,
    });
    if let Some(s) = smooth {
        top.lines.push(Line {
            points: pts(s),
            style: main,
        });
        legend.push(LegendEntry {
            label: "smoothed loss".into(),
            style: main,
            band: false,
        });
    }
    // The rule that chose a run's learning rate (if any) is drawn solid and thicker.
    let chosen =
        |s: &crate::report::read::Suggested| rt.chosen_rule.as_deref() == Some(s.rule.as_str());
    let marks: Vec<Mark> = rt
        .suggestions
        .iter()
        .enumerate()
        .map(|(i, s)| Mark {
            x: s.lr,
            label: s.rule.clone(),
            style: Style {
                width: if chosen(s) { 3 } else { 2 },
                dashed: !chosen(s),
                ..Style::solid(PALETTE[1 + i % (PALETTE.len() - 1)])
            },
        })
        .collect();
    for (m, s) in marks.iter().zip(&rt.suggestions) {
        legend.push(LegendEntry {
            label: format!(
                "{}: {}{}",
                s.rule,
                short_sci(s.lr),
                if chosen(s) { " (chosen)" } else { "" }
            ),
            style: m.style,
            band: false,
        });
    }
    top.marks = marks.clone();
    let mut panels = vec![top];
    if !rt.accuracy.is_empty() {
        panels.push(Panel {
            y: Axis {
                label: "held-out accuracy (%)".into(),
                ..Axis::default()
            },
            lines: vec![Line {
                points: rt.accuracy.iter().map(|&(x, a)| (x, 100.0 * a)).collect(),
                style: Style::solid(PALETTE[2]),
            }],
            marks: marks
                .into_iter()
                .map(|m| Mark {
                    label: String::new(),
                    ..m
                })
                .collect(),
            bands: Vec::new(),
        });
        legend.insert(
            2.min(legend.len()),
            LegendEntry {
                label: "held-out accuracy".into(),
                style: Style::solid(PALETTE[2]),
                band: false,
            },
        );
    }
    let mut subtitle = match &rt.stopped {
        Some(why) => format!("stopped early: {why}"),
        None => String::new(),
    };
    if subtitle.chars().count() > 110 {
        subtitle = subtitle.chars().take(108).collect::<String>() + "…";
    }
    Figure {
        title: title.to_string(),
        subtitle,
        x: lr_axis(rt.lr.iter().copied()),
        panels,
        legend,
    }
}

/// The learning-rate axis of range tests over `lrs`: logarithmic when they span a factor of
/// 20 or more.
fn lr_axis(lrs: impl Iterator<Item = f64> + Clone) -> Axis {
    let lo = lrs
        .clone()
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    let hi = lrs.fold(0.0, f64::max);
    let log = lo.is_finite() && hi / lo >= 20.0;
    Axis {
        label: if log {
            "learning rate (log scale)".into()
        } else {
            "learning rate".into()
        },
        log,
        range: None,
    }
}

/// The range tests of one grid point, one per seed (`(label, test)`): a single test is
/// [`range_test`]; several share one panel, each seed's smoothed loss (raw where not smoothed)
/// in its own colour with its chosen value marked, so the spread of the choice is seen.
pub fn range_tests(title: &str, tests: &[(String, RangeTest)], log_y: bool) -> Figure {
    if let [(_, rt)] = tests {
        return range_test(title, rt, log_y);
    }
    let curve = |rt: &RangeTest| rt.smoothed.clone().unwrap_or_else(|| rt.loss.clone());
    let raw: Vec<f64> = tests.iter().flat_map(|(_, rt)| rt.loss.clone()).collect();
    let shown: Vec<f64> = tests.iter().flat_map(|(_, rt)| curve(rt)).collect();
    let mut panel = Panel {
        y: Axis {
            label: if log_y {
                "smoothed training loss (log scale)".into()
            } else {
                "smoothed training loss".into()
            },
            log: log_y,
            range: loss_range(&raw, &shown, log_y),
        },
        ..Panel::default()
    };
    let mut legend = Vec::new();
    for (i, (label, rt)) in tests.iter().enumerate() {
        let style = Style::solid(PALETTE[i % PALETTE.len()]);
        panel.lines.push(Line {
            points: rt.lr.iter().copied().zip(curve(rt)).collect(),
            style,
        });
        let chosen = rt
            .suggestions
            .iter()
            .find(|s| rt.chosen_rule.as_deref() == Some(s.rule.as_str()));
        let text = match chosen {
            Some(s) => format!("{label}: {} {}", s.rule, short_sci(s.lr)),
            None => label.clone(),
        };
        if let Some(s) = chosen {
            panel.marks.push(Mark {
                x: s.lr,
                label: String::new(),
                style: Style { width: 2, ..style },
            });
        }
        legend.push(LegendEntry {
            label: text,
            style,
            band: false,
        });
    }
    Figure {
        title: title.to_string(),
        subtitle: format!("{} seeds, one range test each", tests.len()),
        x: lr_axis(tests.iter().flat_map(|(_, rt)| rt.lr.iter().copied())),
        panels: vec![panel],
        legend,
    }
}

/// The loss axis of a range test: from the lowest loss to a little above the highest
/// smoothed loss reached before its minimum, so that the blow-up at the end does not squash
/// the part that matters (it leaves through the top).
pub(super) fn loss_range(raw: &[f64], smooth: &[f64], log: bool) -> Option<(f64, f64)> {
    let ok = |v: &f64| v.is_finite() && (!log || *v > 0.0);
    let (imin, _) = smooth
        .iter()
        .enumerate()
        .filter(|(_, v)| ok(v))
        .min_by(|a, b| a.1.total_cmp(b.1))?;
    let head = smooth[..=imin]
        .iter()
        .chain(raw.first())
        .copied()
        .filter(ok)
        .fold(f64::NEG_INFINITY, f64::max);
    let top = raw
        .iter()
        .chain(smooth)
        .copied()
        .filter(ok)
        .fold(f64::NEG_INFINITY, f64::max);
    let low = raw
        .iter()
        .chain(smooth)
        .copied()
        .filter(ok)
        .fold(f64::INFINITY, f64::min);
    if log {
        let hi = top.min(head * 1.5);
        Some((low / 1.1, hi * 1.1))
    } else {
        let hi = top.min(head + 0.25 * (head - low));
        let pad = 0.04 * (hi - low).max(1e-12);
        Some((low - pad, hi + pad))
    }
}

/// `2.8e-3`-style text with 2 significant digits.
pub fn short_sci(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let s = format!("{v:.1e}");
    match s.split_once('e') {
        Some((m, e)) => format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.')),
        None => s,
    }
}
