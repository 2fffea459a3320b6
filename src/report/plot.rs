//! The schedule figure, drawn with `plotters` into SVG or PNG.
//!
//! The SVG backend writes `<text>` elements that the viewer renders; the PNG is drawn with
//! the embedded font. The figure avoids the plotters features that measure text (captions).

use anyhow::{anyhow, Result};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use std::ops::Range;
use std::path::Path;

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 720;
/// Above this many points a curve is thinned (keeping every local extreme) before drawing.
const MAX_POINTS: usize = 4000;
/// Characters per title line (20 px sans-serif across 1000 px).
const TITLE_CHARS: usize = 100;

/// The image formats a figure can be written in, named by the file's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FigureFormat {
    /// `.svg`: vector, text as text.
    Svg,
    /// `.png`: 1000×720 px bitmap.
    Png,
}

impl FigureFormat {
    /// The format `path`'s extension names (case-insensitive), or an input error naming the
    /// path and the extensions there are: a `.png` file must not receive SVG text.
    pub fn of(path: &Path) -> Result<FigureFormat> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("svg") => Ok(FigureFormat::Svg),
            Some("png") => Ok(FigureFormat::Png),
            _ => crate::bail_input!(
                "{}: a figure is written as .svg or .png; name the file with one of these \
                 extensions",
                path.display()
            ),
        }
    }
}

/// The schedule figure in `format`: the learning rate (top panel) and the momentum (bottom
/// panel) against the epoch; `rows` are `(epoch, lr, momentum)`. The LR axis is logarithmic
/// with `log_y`, or when the LR only grows and spans two decades or more (a range test),
/// linear otherwise. A long title is wrapped.
pub fn schedule_bytes(
    format: FigureFormat,
    title: &str,
    rows: &[(f64, f64, f64)],
    log_y: bool,
) -> Result<Vec<u8>> {
    match format {
        FigureFormat::Svg => Ok(schedule_svg(title, rows, log_y)?.into_bytes()),
        FigureFormat::Png => schedule_png(title, rows, log_y),
    }
}

/// The SVG text of [`schedule_bytes`].
pub fn schedule_svg(title: &str, rows: &[(f64, f64, f64)], log_y: bool) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        draw_schedule(&root, title, rows, log_y)?;
    }
    Ok(svg)
}

/// The same figure as [`schedule_svg`], as PNG bytes (drawn with the embedded font).
pub fn schedule_png(title: &str, rows: &[(f64, f64, f64)], log_y: bool) -> Result<Vec<u8>> {
    super::chart::png_of((WIDTH, HEIGHT), |root| {
        draw_schedule(root, title, rows, log_y)
    })
}

fn draw_schedule<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    rows: &[(f64, f64, f64)],
    log_y: bool,
) -> Result<()> {
    if rows.is_empty() {
        return Err(anyhow!("nothing to plot: no rows"));
    }
    let grows = rows.windows(2).all(|w| w[1].1 >= w[0].1);
    let (lo, hi) = bounds(rows.iter().map(|r| r.1));
    // A log axis cannot show an LR of 0 (a cosine's end): it starts at the smallest positive
    // LR, and zeros are drawn on that floor.
    let floor = rows
        .iter()
        .map(|r| r.1)
        .filter(|&v| v > 0.0)
        .fold(f64::INFINITY, f64::min);
    let log_lr = floor.is_finite() && (log_y || (grows && lo > 0.0 && hi / lo >= 100.0));
    let (lo, hi) = if log_lr {
        (floor, hi.max(floor * 1.0001))
    } else {
        (lo, hi)
    };
    let lr: Vec<(f64, f64)> = thin(
        &rows
            .iter()
            .map(|r| (r.0, if log_lr { r.1.max(lo) } else { r.1 }))
            .collect::<Vec<_>>(),
    );
    let mom: Vec<(f64, f64)> = thin(&rows.iter().map(|r| (r.0, r.2)).collect::<Vec<_>>());
    let x0 = rows.first().map_or(0.0, |r| r.0).min(0.0);
    let x1 = rows.last().map_or(1.0, |r| r.0).max(x0 + 1e-9);
    let (mlo, mhi) = bounds(rows.iter().map(|r| r.2));

    root.fill(&WHITE).map_err(drawing)?;
    let lines = wrap(title, TITLE_CHARS);
    let head_h = 14 + 22 * lines.len() as u32;
    let (head, body) = root.split_vertically(head_h);
    for (i, line) in lines.iter().enumerate() {
        let style = ("sans-serif", 20).into_font().color(&BLACK);
        let pos = (20, 10 + 22 * i as i32);
        head.draw(&Text::new(line.clone(), pos, style))
            .map_err(drawing)?;
    }
    let (top, bottom) = body.split_vertically((HEIGHT - head_h) * 3 / 5);
    if log_lr {
        let desc = "learning rate (log scale)";
        let y = (lo..hi).log_scale();
        panel(&top, x0..x1, y, desc, &|v| sci(*v), &lr, &BLUE)?;
    } else {
        let (a, b) = pad(0.0f64.min(lo), hi);
        let desc = "learning rate";
        panel(&top, x0..x1, a..b, desc, &|v| tick(*v, b), &lr, &BLUE)?;
    }
    let (a, b) = pad(mlo, mhi);
    let desc = if mlo == mhi {
        "momentum (constant)"
    } else {
        "momentum"
    };
    panel(&bottom, x0..x1, a..b, desc, &|v| tick(*v, b), &mom, &RED)?;
    root.present().map_err(drawing)?;
    Ok(())
}

fn drawing(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing the figure: {e}")
}

/// One panel: a line against the epoch, with labelled axes.
fn panel<DB: DrawingBackend, Y>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    x: Range<f64>,
    y: Y,
    y_desc: &str,
    y_tick: &dyn Fn(&f64) -> String,
    points: &[(f64, f64)],
    color: &RGBColor,
) -> Result<()>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .margin_left(10)
        .margin_right(30)
        .margin_top(10)
        .margin_bottom(5)
        .x_label_area_size(45)
        .y_label_area_size(90)
        .build_cartesian_2d(x, y)
        .map_err(drawing)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_desc)
        .x_label_formatter(&|v| tick(*v, f64::MAX))
        .y_label_formatter(y_tick)
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 13))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(drawing)?;
    chart
        .draw_series(LineSeries::new(
            points.iter().copied(),
            color.stroke_width(2),
        ))
        .map_err(drawing)?;
    Ok(())
}

/// Smallest and largest value.
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
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

/// Tick label on an axis whose largest value is `axis_max`: plain decimals (up to 6 places,
/// trailing zeros trimmed) for axes reaching 1e-3 or more, otherwise [`sci`], so that one axis
/// never mixes the two styles.
pub(crate) fn tick(v: f64, axis_max: f64) -> String {
    let m = axis_max.abs();
    if !(m >= 1e-3 && (m < 1e5 || m == f64::MAX)) {
        return sci(v);
    }
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    match s {
        "" | "-0" => "0".to_string(),
        _ => s.to_string(),
    }
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
pub(crate) fn wrap(title: &str, width: usize) -> Vec<String> {
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
    fn ticks_and_titles() {
        assert_eq!(tick(0.0015, 0.006), "0.0015");
        assert_eq!(tick(0.25, 0.4), "0.25");
        assert_eq!(tick(2e-5, 1e-4), "2e-5");
        assert_eq!(tick(0.0, 1e-4), "0");
        assert_eq!(sci(1e-7), "1e-7");
        assert_eq!(sci(2.5e-5), "2.5e-5");
        assert_eq!(wrap("a bb ccc", 4), vec!["a bb", "ccc"]);
        assert_eq!(wrap("", 10), vec![""]);
    }

    #[test]
    fn log_y_draws_a_log_lr_axis_even_through_zero() {
        // A cosine to 0: linear unless asked; asked, a log axis whose floor is the smallest
        // positive LR.
        let rows: Vec<(f64, f64, f64)> = (0..=50)
            .map(|k| {
                let t = k as f64 / 50.0;
                (t, 0.05 * (1.0 + (std::f64::consts::PI * t).cos()), 0.9)
            })
            .collect();
        let linear = schedule_svg("t", &rows, false).unwrap();
        let log = schedule_svg("t", &rows, true).unwrap();
        assert!(!linear.contains("log scale"));
        assert!(log.contains("learning rate (log scale)"), "{log}");
    }

    #[test]
    fn svg_has_labels_and_both_curves() {
        let rows: Vec<(f64, f64, f64)> = (0..50)
            .map(|k| (k as f64 / 10.0, 0.1 / (1.0 + k as f64), 0.9))
            .collect();
        let svg = schedule_svg("demo title", &rows, false).unwrap();
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
}
