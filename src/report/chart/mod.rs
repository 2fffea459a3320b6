//! A small figure model and its renderer: stacked panels that share one x axis, each with
//! lines, shaded bands and marked x positions (vertical lines with labels), one legend at the
//! right, a title. Rendered with plotters to SVG text or PNG bytes, both 900×600 px.
//!
//! Logarithmic axes are drawn by plotting log10 of the values on a linear axis with ticks at
//! 1, 2, 5 × 10^k (or every decade): one coordinate type for every axis, and tick labels
//! that are always round numbers. Lines are clipped to the axes here (plotters draws past
//! them), and a non-finite value, or a value ≤ 0 on a log axis, breaks a line.

mod scale;

pub(crate) use scale::thin;

use super::font;
use anyhow::{anyhow, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use scale::{clip, wrap, Scale, Ticked};
use std::path::Path;

/// Figure width in pixels.
pub const WIDTH: u32 = 900;
/// Figure height in pixels.
pub const HEIGHT: u32 = 600;

/// The Okabe–Ito palette (colour-blind safe) without its yellow, which is unreadable on
/// white: blue, vermillion, bluish green, reddish purple, orange, sky blue, black.
pub const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
];

/// How a line is stroked.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Style {
    /// Colour.
    pub color: RGBColor,
    /// Stroke width in pixels.
    pub width: u32,
    /// Dashed instead of solid.
    pub dashed: bool,
    /// Opacity in (0, 1].
    pub opacity: f64,
}

impl Style {
    /// A solid, opaque, 2-px line.
    pub fn solid(color: RGBColor) -> Style {
        Style {
            color,
            width: 2,
            dashed: false,
            opacity: 1.0,
        }
    }

    /// The style of series `i`: the palette's colours in turn, dashed on the second round.
    pub fn series(i: usize) -> Style {
        Style {
            dashed: (i / PALETTE.len()) % 2 == 1,
            ..Style::solid(PALETTE[i % PALETTE.len()])
        }
    }

    fn shape(&self) -> ShapeStyle {
        self.color.mix(self.opacity).stroke_width(self.width)
    }
}

/// An axis: its label (with units) and scale; `range` fixes the shown interval (data units),
/// otherwise it is fitted to the data with a little room.
#[derive(Clone, Debug, Default)]
pub struct Axis {
    /// Label, units included, e.g. `test error (%)`.
    pub label: String,
    /// Logarithmic scale.
    pub log: bool,
    /// Shown interval; `None` fits the data.
    pub range: Option<(f64, f64)>,
}

/// A polyline in data coordinates.
#[derive(Clone, Debug)]
pub struct Line {
    /// Points in x order.
    pub points: Vec<(f64, f64)>,
    /// Stroke.
    pub style: Style,
}

/// A shaded band between two curves: `(x, low, high)` in x order.
#[derive(Clone, Debug)]
pub struct Band {
    /// Points in x order.
    pub points: Vec<(f64, f64, f64)>,
    /// Fill colour (drawn translucent).
    pub color: RGBColor,
}

/// A vertical line at `x` across a panel, labelled at its top.
#[derive(Clone, Debug)]
pub struct Mark {
    /// Position in data units.
    pub x: f64,
    /// Text next to the line.
    pub label: String,
    /// Stroke.
    pub style: Style,
}

/// One panel: a y axis and what is drawn against it.
#[derive(Clone, Debug, Default)]
pub struct Panel {
    /// The y axis.
    pub y: Axis,
    /// Bands, drawn first.
    pub bands: Vec<Band>,
    /// Lines, drawn over the bands.
    pub lines: Vec<Line>,
    /// Vertical marks, drawn last.
    pub marks: Vec<Mark>,
}

/// One legend row.
#[derive(Clone, Debug)]
pub struct LegendEntry {
    /// Text.
    pub label: String,
    /// The line sample.
    pub style: Style,
    /// Show a shaded box behind the sample (the series has a band).
    pub band: bool,
}

/// A whole figure.
#[derive(Clone, Debug, Default)]
pub struct Figure {
    /// Title (wrapped when long).
    pub title: String,
    /// A smaller grey line under the title (what the bands mean, how many runs).
    pub subtitle: String,
    /// The shared x axis.
    pub x: Axis,
    /// Panels from top to bottom.
    pub panels: Vec<Panel>,
    /// Legend rows (no legend when empty).
    pub legend: Vec<LegendEntry>,
}

/// The SVG text of `fig`.
pub fn svg(fig: &Figure) -> Result<String> {
    font::ensure();
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, fig)?;
        root.present().map_err(drawing)?;
    }
    Ok(out)
}

/// The PNG bytes of `fig`.
pub fn png(fig: &Figure) -> Result<Vec<u8>> {
    png_of((WIDTH, HEIGHT), |root| {
        draw(root, fig)?;
        root.present().map_err(drawing)
    })
}

/// The PNG bytes of a `size` bitmap that `paint` draws and presents, with the embedded font;
/// drawn into a temporary file, which plotters' encoder needs.
pub(crate) fn png_of(
    size: (u32, u32),
    paint: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> Result<()>,
) -> Result<Vec<u8>> {
    font::ensure();
    let dir = tempfile::Builder::new()
        .prefix("lrlab-png-")
        .tempdir()
        .context("cannot create a temporary folder for a PNG figure")?;
    let path = dir.path().join("figure.png");
    paint(&BitMapBackend::new(&path, size).into_drawing_area())?;
    std::fs::read(&path).with_context(|| format!("cannot read back {}", path.display()))
}

fn drawing(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing the figure: {e}")
}

// plotters draws a font of size s at s / 1.24 pixels per em.
const TITLE_PX: u32 = 24;
const SUBTITLE_PX: u32 = 17;
const DESC_PX: u32 = 18;
const LABEL_PX: u32 = 16;
const LEGEND_PX: u32 = 16;
const Y_LABEL_AREA: u32 = 80;
const X_LABEL_AREA: u32 = 42;

fn text(size: u32) -> TextStyle<'static> {
    (font::FAMILY, size).into_font().color(&BLACK)
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, fig: &Figure) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(drawing)?;
    // Title lines, then the subtitle.
    let lines = wrap(&fig.title, 78);
    let mut head_h = 10 + (TITLE_PX + 6) * lines.len() as u32;
    for (i, line) in lines.iter().enumerate() {
        let y = 10 + (TITLE_PX + 6) as i32 * i as i32;
        root.draw(&Text::new(line.clone(), (20, y), text(TITLE_PX)))
            .map_err(drawing)?;
    }
    if !fig.subtitle.is_empty() {
        let style = text(SUBTITLE_PX).color(&RGBColor(90, 90, 90));
        for line in wrap(&fig.subtitle, 100) {
            root.draw(&Text::new(line, (20, head_h as i32), style.clone()))
                .map_err(drawing)?;
            head_h += SUBTITLE_PX + 2;
        }
        head_h += 6;
    }
    let (_, body) = root.split_vertically(head_h + 4);

    let (plots, legend) = if fig.legend.is_empty() {
        (body, None)
    } else {
        let widest = fig
            .legend
            .iter()
            .map(|e| text_width(root, &e.label, LEGEND_PX))
            .max()
            .unwrap_or(0);
        let w = (widest + 56).clamp(120, 300);
        let (p, l) = body.split_horizontally(WIDTH - w);
        (p, Some(l))
    };

    let xs = Scale::fit(&fig.x, fig.panels.iter().flat_map(panel_xs));
    let n = fig.panels.len().max(1);
    let areas = plots.split_evenly((n, 1));
    for (i, (panel, area)) in fig.panels.iter().zip(areas.iter()).enumerate() {
        let ys = Scale::fit(&panel.y, panel_ys(panel));
        let x_desc = (i + 1 == n).then_some(fig.x.label.as_str());
        draw_panel(area, &xs, &ys, panel, x_desc)?;
    }
    if let Some(area) = legend {
        draw_legend(&area, &fig.legend)?;
    }
    Ok(())
}

fn text_width<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, s: &str, size: u32) -> u32 {
    area.estimate_text_size(s, &text(size))
        .map(|(w, _)| w)
        .unwrap_or(size * s.chars().count() as u32 * 6 / 10)
}

fn panel_xs(p: &Panel) -> impl Iterator<Item = f64> + '_ {
    let lines = p.lines.iter().flat_map(|l| l.points.iter().map(|q| q.0));
    let bands = p.bands.iter().flat_map(|b| b.points.iter().map(|q| q.0));
    lines.chain(bands)
}

fn panel_ys(p: &Panel) -> impl Iterator<Item = f64> + '_ {
    let lines = p.lines.iter().flat_map(|l| l.points.iter().map(|q| q.1));
    let bands = p
        .bands
        .iter()
        .flat_map(|b| b.points.iter().flat_map(|q| [q.1, q.2]));
    lines.chain(bands)
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    xs: &Scale,
    ys: &Scale,
    panel: &Panel,
    x_desc: Option<&str>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let x_range = Ticked::of(xs);
    let y_range = Ticked::of(ys);
    let mut chart = ChartBuilder::on(area)
        .margin_left(12)
        .margin_right(22)
        .margin_top(8)
        .margin_bottom(4)
        .x_label_area_size(X_LABEL_AREA)
        .y_label_area_size(Y_LABEL_AREA)
        .build_cartesian_2d(x_range, y_range)
        .map_err(drawing)?;
    let fx = |t: &f64| xs.label(*t);
    let fy = |t: &f64| ys.label(*t);
    let mut mesh = chart.configure_mesh();
    mesh.y_desc(panel.y.label.as_str())
        .x_label_formatter(&fx)
        .y_label_formatter(&fy)
        .axis_desc_style(text(DESC_PX))
        .label_style(text(LABEL_PX))
        .bold_line_style(RGBColor(215, 215, 215))
        .light_line_style(RGBColor(240, 240, 240));
    if let Some(d) = x_desc {
        mesh.x_desc(d);
    }
    mesh.draw().map_err(drawing)?;

    for band in &panel.bands {
        let mut upper = Vec::new();
        let mut lower = Vec::new();
        for &(x, lo, hi) in &band.points {
            if let (Some(tx), Some(tl), Some(th)) = (xs.t(x), ys.t(lo), ys.t(hi)) {
                if tx >= xs.lo && tx <= xs.hi {
                    upper.push((tx, th.clamp(ys.lo, ys.hi)));
                    lower.push((tx, tl.clamp(ys.lo, ys.hi)));
                }
            }
        }
        if upper.len() >= 2 {
            lower.reverse();
            upper.extend(lower);
            chart
                .draw_series(std::iter::once(Polygon::new(
                    upper,
                    band.color.mix(0.18).filled(),
                )))
                .map_err(drawing)?;
        }
    }
    for line in &panel.lines {
        for piece in clip(&line.points, xs, ys) {
            if piece.len() == 1 {
                let style = line.style.color.mix(line.style.opacity).filled();
                chart
                    .draw_series(std::iter::once(Circle::new(piece[0], 3, style)))
                    .map_err(drawing)?;
            } else if line.style.dashed {
                chart
                    .draw_series(DashedLineSeries::new(piece, 8, 5, line.style.shape()))
                    .map_err(drawing)?;
            } else {
                chart
                    .draw_series(LineSeries::new(piece, line.style.shape()))
                    .map_err(drawing)?;
            }
        }
    }
    let (px, _) = chart.plotting_area().get_pixel_range();
    for (i, mark) in panel.marks.iter().enumerate() {
        let Some(tx) = xs.t(mark.x).filter(|t| *t >= xs.lo && *t <= xs.hi) else {
            continue;
        };
        let seg = vec![(tx, ys.lo), (tx, ys.hi)];
        chart
            .draw_series(DashedLineSeries::new(seg, 6, 4, mark.style.shape()))
            .map_err(drawing)?;
        if mark.label.is_empty() {
            continue;
        }
        let style = text(LABEL_PX).color(&mark.style.color);
        let w = text_width(area, &mark.label, LABEL_PX) as i32;
        let (bx, _) = chart.backend_coord(&(tx, ys.hi));
        let dx = if bx + 5 + w > px.end { -5 - w } else { 5 };
        let dy = 4 + (LABEL_PX as i32 + 4) * i as i32;
        chart
            .plotting_area()
            .draw(
                &(EmptyElement::at((tx, ys.hi))
                    + Rectangle::new(
                        [
                            (dx - 2, dy - 1),
                            (dx + w + 2, dy + LABEL_PX as i32 * 4 / 5 + 3),
                        ],
                        WHITE.mix(0.85).filled(),
                    )
                    + Text::new(mark.label.clone(), (dx, dy), style)),
            )
            .map_err(drawing)?;
    }
    Ok(())
}

fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[LegendEntry],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let (w, h) = area.dim_in_pixel();
    let line_h = LEGEND_PX as i32 * 4 / 5 + 3;
    let gap = 9;
    let max_text = w.saturating_sub(56);
    let mut y = 14;
    for (i, e) in entries.iter().enumerate() {
        let lines = legend_lines(area, &e.label, max_text);
        let needed = line_h * (lines.len() as i32 - 1) + line_h + gap;
        // Keep room for the "… and N more" line.
        if y + needed + line_h > h as i32 && i + 1 < entries.len() {
            let more = format!("… and {} more", entries.len() - i);
            area.draw(&Text::new(more, (46, y), legend_text()))
                .map_err(drawing)?;
            break;
        }
        if e.band {
            area.draw(&Rectangle::new(
                [(6, y - 6), (38, y + 6)],
                e.style.color.mix(0.18).filled(),
            ))
            .map_err(drawing)?;
        }
        let seg = vec![(8, y), (36, y)];
        if e.style.dashed {
            area.draw(&plotters::element::DashedPathElement::new(
                seg,
                6,
                4,
                e.style.shape(),
            ))
            .map_err(drawing)?;
        } else {
            area.draw(&PathElement::new(seg, e.style.shape()))
                .map_err(drawing)?;
        }
        for (k, line) in lines.into_iter().enumerate() {
            area.draw(&Text::new(line, (46, y + line_h * k as i32), legend_text()))
                .map_err(drawing)?;
        }
        y += needed;
    }
    Ok(())
}

/// A legend label on at most two lines of `max` pixels: split after a comma when it is too
/// long, the second line shortened with an ellipsis if needed.
fn legend_lines<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    s: &str,
    max: u32,
) -> Vec<String> {
    if text_width(area, s, LEGEND_PX) <= max {
        return vec![s.to_string()];
    }
    let cuts: Vec<usize> = s.match_indices(", ").map(|(i, _)| i).collect();
    // The longest first line that fits, cut after a comma.
    for &c in cuts.iter().rev() {
        let first = &s[..c + 1];
        if text_width(area, first, LEGEND_PX) <= max {
            let rest = s[c + 2..].to_string();
            return vec![first.to_string(), fit_text(area, &rest, max)];
        }
    }
    vec![fit_text(area, s, max)]
}

fn legend_text() -> TextStyle<'static> {
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    text(LEGEND_PX).pos(Pos::new(HPos::Left, VPos::Center))
}

/// `s`, shortened with an ellipsis to fit `max` pixels.
fn fit_text<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, s: &str, max: u32) -> String {
    if text_width(area, s, LEGEND_PX) <= max {
        return s.to_string();
    }
    let chars: Vec<char> = s.chars().collect();
    let mut n = chars.len();
    while n > 1 {
        n -= 1;
        let cand: String = chars[..n].iter().collect::<String>() + "…";
        if text_width(area, &cand, LEGEND_PX) <= max {
            return cand;
        }
    }
    "…".to_string()
}

/// Write `fig` as `<stem>.svg` and `<stem>.png` in memory: `(file name, bytes)` pairs.
pub fn render_both(fig: &Figure, stem: &str) -> Result<Vec<(String, Vec<u8>)>> {
    Ok(vec![
        (format!("{stem}.svg"), svg(fig)?.into_bytes()),
        (format!("{stem}.png"), png(fig)?),
    ])
}

/// Write rendered files into `dir` (created if needed), each atomically; returns the paths.
pub fn write_all(dir: &Path, files: &[(String, Vec<u8>)]) -> Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut out = Vec::new();
    for (name, bytes) in files {
        let p = dir.join(name);
        crate::util::write_atomic(&p, bytes)?;
        out.push(p);
    }
    Ok(out)
}

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

/// `fig` in `format`.
pub fn bytes(fig: &Figure, format: FigureFormat) -> Result<Vec<u8>> {
    match format {
        FigureFormat::Svg => Ok(svg(fig)?.into_bytes()),
        FigureFormat::Png => png(fig),
    }
}
