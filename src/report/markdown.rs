//! The text of `report.md` for a run, a range test or a sweep. Figures are linked relative to
//! the report (`figures/<name>.png`, with the SVG beside it).

use super::group::{mean_std, Point};
use super::paper::{matches, PaperValue, ReportSpec};
use super::read::{HfLrRun, HfRow, RangeTest, Run, Sweep};
use super::table::Table;
use std::fmt::Write;

/// A figure in the report: file stem and caption.
pub type FigureRef = (String, String);

/// Percent with two decimals.
fn pct(x: f64) -> String {
    format!("{:.2}", 100.0 * x)
}

/// Scientific notation with 3 significant digits: `8.50e-3`.
fn sig3(x: f64) -> String {
    format!("{x:.2e}")
}

/// Cell text safe inside a Markdown table.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Seconds as `42.0 s`, `3 min 04 s` or `2 h 05 min`.
pub fn duration(s: f64) -> String {
    if !s.is_finite() || s < 0.0 {
        return "–".into();
    }
    if s < 60.0 {
        return format!("{s:.1} s");
    }
    let t = s.round() as u64;
    if t < 3600 {
        format!("{} min {:02} s", t / 60, t % 60)
    } else {
        format!("{} h {:02} min", t / 3600, (t % 3600) / 60)
    }
}

/// An epoch number without a needless `.0`.
fn epoch(e: f64) -> String {
    if e.fract() == 0.0 && e.abs() < 1e15 {
        format!("{}", e as i64)
    } else {
        format!("{e}")
    }
}

fn figures_section(out: &mut String, figures: &[FigureRef]) {
    if figures.is_empty() {
        return;
    }
    out.push_str("\n## Figures\n\n");
    for (stem, caption) in figures {
        let _ = writeln!(
            out,
            "![{caption}](figures/{stem}.png)\n\n{caption} ([SVG](figures/{stem}.svg))\n"
        );
    }
}

fn status_text(run: &Run) -> String {
    let s = run.status.clone().unwrap_or_else(|| "unknown".into());
    if run.reason.is_empty() {
        s
    } else {
        format!("{s} ({})", run.reason)
    }
}

/// `report.md` of one run: status, final metrics, figures, meta data, the resolved config.
pub fn run_report(run: &Run, figures: &[FigureRef]) -> String {
    let mut out = format!("# Run {}\n\n", run.name);
    let _ = writeln!(out, "Status: **{}**\n", cell(&status_text(run)));
    out.push_str("## Final metrics\n\n| metric | value |\n|---|---|\n");
    let last = run.epochs.last();
    let row = |out: &mut String, k: &str, v: String| {
        let _ = writeln!(out, "| {k} | {v} |");
    };
    if let Some(e) = run.epochs_done() {
        row(&mut out, "epochs completed", epoch(e));
    }
    // epochs.csv's test_* columns hold the validation split when the run had one.
    let set = match crate::run::Meta::eval_split(run.meta.as_ref()) {
        "val" => "validation",
        _ => "test",
    };
    if let Some((e, a)) = run.final_test() {
        row(
            &mut out,
            &format!("final {set} accuracy (%)"),
            format!("{} (epoch {})", pct(a), epoch(e)),
        );
        row(&mut out, &format!("final {set} error (%)"), pct(1.0 - a));
    }
    if let Some((e, a)) = run.best_test() {
        row(
            &mut out,
            &format!("best {set} accuracy (%)"),
            format!("{} (epoch {})", pct(a), epoch(e)),
        );
    }
    let last_eval = run.epochs.iter().rev().find(|e| e.test_acc.is_some());
    if let Some(v) = last_eval.and_then(|e| e.test_top5) {
        row(&mut out, &format!("final {set} top-5 accuracy (%)"), pct(v));
    }
    if let Some(v) = last_eval.and_then(|e| e.test_loss) {
        row(&mut out, &format!("final {set} loss"), format!("{v:.4}"));
    }
    if let Some(v) = last.and_then(|e| e.train_loss) {
        row(&mut out, "final training loss", format!("{v:.4}"));
    }
    if let Some(v) = last.and_then(|e| e.train_acc) {
        row(&mut out, "final training accuracy (%)", pct(v));
    }
    if let Some(v) = run.wall_s() {
        row(&mut out, "training time", duration(v));
    }
    if let Some(v) = last.and_then(|e| e.images_per_sec) {
        row(
            &mut out,
            "throughput, last epoch (images/s)",
            format!("{v:.1}"),
        );
    }
    if !run.hf_lr.is_empty() {
        out.push('\n');
        hf_section(&mut out, &run.hf_lr);
    }
    figures_section(&mut out, figures);
    if let Some(meta) = &run.meta {
        let num = |v: Option<u64>| v.map(|v| v.to_string());
        let keys = [
            ("device", meta.device.clone()),
            ("seed", num(meta.seed)),
            ("parameters", num(meta.parameters)),
            ("steps_per_epoch", num(meta.steps_per_epoch)),
            ("total_steps", num(meta.total_steps)),
            ("train_examples", num(meta.train_examples)),
            ("eval_split", meta.eval_split.clone()),
            ("git_commit", meta.git_commit.clone()),
            ("lrlab_version", meta.lrlab_version.clone()),
            ("libtorch_version", meta.libtorch_version.clone()),
            ("host", meta.host.clone()),
        ];
        let mut rows = String::new();
        for (k, v) in keys.into_iter().filter_map(|(k, v)| Some((k, v?))) {
            let _ = writeln!(rows, "| {k} | {} |", cell(&v));
        }
        if !rows.is_empty() {
            out.push_str("\n## Run information (meta.json)\n\n| key | value |\n|---|---|\n");
            out.push_str(&rows);
        }
    }
    if let Some(text) = &run.config_text {
        let nl = if text.ends_with('\n') { "" } else { "\n" };
        let _ = write!(out, "\n## Config (config.toml)\n\n```toml\n{text}{nl}```\n");
    }
    out
}

/// `report.md` of a range test: the range, why it stopped, the suggestions, the figure.
pub fn range_report(rt: &RangeTest, name: &str, figures: &[FigureRef]) -> String {
    let mut out = format!("# LR range test {name}\n\n");
    let lo = rt.lr.first().copied().unwrap_or(f64::NAN);
    let hi = rt.lr.last().copied().unwrap_or(f64::NAN);
    let _ = writeln!(
        out,
        "{} steps, learning rate {} to {}; watched: {}.\n",
        rt.lr.len(),
        sig3(lo),
        sig3(hi),
        rt.metric.map_or("loss", crate::config::Metric::name)
    );
    if let Some(why) = &rt.stopped {
        let _ = writeln!(out, "Stopped early: {why}.\n");
    }
    if !rt.suggestions.is_empty() {
        out.push_str("## Suggestions\n\n| rule | learning rate | how |\n|---|---|---|\n");
        for s in &rt.suggestions {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                cell(&s.rule),
                sig3(s.lr),
                cell(&s.how)
            );
        }
    }
    figures_section(&mut out, figures);
    out
}

/// The median of the finite values of `xs`, if any.
fn median(xs: impl Iterator<Item = f64>) -> Option<f64> {
    crate::util::median(xs.filter(|x| x.is_finite()).collect())
}

/// The Hessian-free estimates in a table: over the first and the last fifth of the windows,
/// the learning rate in use, the medians of the raw estimate and of gᵀg / gᵀHg, and the
/// moving average at the end of the part.
fn hf_section(out: &mut String, rows: &[HfRow]) {
    if rows.is_empty() {
        return;
    }
    let n = rows.len();
    let fifth = n.div_ceil(5);
    let parts = [("early", &rows[..fifth]), ("late", &rows[n - fifth..])];
    out.push_str(
        "## Hessian-free estimates of the optimal learning rate

",
    );
    let _ = writeln!(
        out,
        "{n} windows, iterations {} to {}; each part is a fifth of them.
",
        rows[0].step,
        rows[n - 1].step
    );
    // The sums over every Caffe blob, where logged (`train.hf_lr_blobs = "caffe"`): the
    // authors' script summed batch norm's accumulators too.
    let caffe = rows.iter().any(|r| r.hf_lr_caffe.is_some());
    out.push_str(
        "| part | iterations | learning rate in use | finite difference (median) | moving average (at its end) | gᵀg / gᵀHg (median) |",
    );
    out.push_str(if caffe {
        " every Caffe blob: finite difference (median) | its moving average (at its end) |\n|---|---|---|---|---|---|---|---|\n"
    } else {
        "\n|---|---|---|---|---|---|\n"
    });
    let opt = |x: Option<f64>| x.map_or_else(|| "–".to_string(), sig3);
    for (name, part) in parts {
        let (first, last) = (part[0], part[part.len() - 1]);
        let _ = write!(
            out,
            "| {name} | {}–{} | {}–{} | {} | {} | {} |",
            first.step,
            last.step,
            sig3(first.lr),
            sig3(last.lr),
            opt(median(part.iter().filter_map(|r| r.hf_lr))),
            opt(last.hf_lr_ema),
            opt(median(part.iter().filter_map(|r| r.curvature_lr))),
        );
        if caffe {
            let _ = write!(
                out,
                " {} | {} |",
                opt(median(part.iter().filter_map(|r| r.hf_lr_caffe))),
                opt(last.hf_lr_caffe_ema),
            );
        }
        out.push('\n');
    }
}

/// `report.md` of an `lrlab hf-lr` folder.
pub fn hf_report(hf: &HfLrRun, name: &str, figures: &[FigureRef]) -> String {
    let mut out = format!("# Hessian-free learning-rate estimates: {name}\n\n");
    hf_section(&mut out, &hf.rows);
    figures_section(&mut out, figures);
    out
}

/// One grid point's numbers over its runs.
struct PointStats {
    runs: usize,
    done: usize,
    final_acc: Vec<f64>,
    best_acc: Vec<f64>,
}

fn point_stats(p: &Point, runs: &[Run]) -> PointStats {
    let members: Vec<&Run> = p.runs.iter().map(|&i| &runs[i]).collect();
    PointStats {
        runs: members.len(),
        done: members
            .iter()
            .filter(|r| r.status.as_deref() == Some("done"))
            .count(),
        final_acc: members
            .iter()
            .filter_map(|r| r.final_test().map(|t| t.1))
            .collect(),
        best_acc: members
            .iter()
            .filter_map(|r| r.best_test().map(|t| t.1))
            .collect(),
    }
}

/// `mean ± std (n=k)` of percentages, or `–` for none.
/// "mean ± sd" of `xs` times `scale` (100 for fractions shown in percent: the mean is taken
/// before scaling, as the sweep's own table does, so a tie rounds alike in both).
fn mean_pm(xs: &[f64], n_total: usize, scale: f64) -> String {
    if xs.is_empty() {
        return "–".into();
    }
    let (m, s) = mean_std(xs);
    let (m, s) = (scale * m, scale * s);
    let n = if xs.len() < n_total {
        format!(" (n={} of {n_total})", xs.len())
    } else {
        String::new()
    };
    if xs.len() == 1 {
        format!("{m:.2}{n}")
    } else {
        format!("{m:.2} ± {s:.2}{n}")
    }
}

/// The reproduced value in the paper's measure: `(mean, std, n)` over the point's runs.
fn reproduced(pv: &PaperValue, p: &Point, runs: &[Run]) -> Vec<f64> {
    p.runs
        .iter()
        .filter_map(|&i| {
            let r = &runs[i];
            let acc = match pv.epoch {
                Some(e) => r.test_at(e),
                None => r.final_test().map(|t| t.1),
            }?;
            Some(pv.measure.from_acc(acc))
        })
        .collect()
}

/// `report.md` of a sweep: results by grid point (with the papers' numbers), the runs'
/// table, the figures.
pub fn sweep_report(
    sw: &Sweep,
    name: &str,
    points: &[Point],
    spec: &ReportSpec,
    figures: &[FigureRef],
) -> String {
    let title = spec
        .title
        .clone()
        .unwrap_or_else(|| format!("Sweep {name}"));
    let mut out = format!("# {title}\n\n");
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for r in &sw.runs {
        *counts
            .entry(r.status.clone().unwrap_or_else(|| "unknown".into()))
            .or_default() += 1;
    }
    let counts: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    let _ = writeln!(
        out,
        "{} runs in {} grid points ({}).\n",
        sw.runs.len(),
        points.len(),
        counts.join(", ")
    );

    out.push_str("## Results by grid point\n\n");
    out.push_str(
        "Test accuracy in percent, mean ± standard deviation over the point's seeds; \
         final = last evaluated epoch.\n\n",
    );
    let with_paper = !spec.paper.is_empty();
    out.push_str("| point | runs (done) | final test acc (%) | best test acc (%) |");
    if with_paper {
        out.push_str(" paper | reproduced | Δ (reproduced − paper) | source |");
    }
    out.push('\n');
    out.push_str("|---|---|---|---|");
    if with_paper {
        out.push_str("---|---|---|---|");
    }
    out.push('\n');
    let mut used = vec![false; spec.paper.len()];
    for p in points {
        let st = point_stats(p, &sw.runs);
        let _ = write!(
            out,
            "| {} | {} ({}) | {} | {} |",
            cell(&p.label),
            st.runs,
            st.done,
            mean_pm(&st.final_acc, st.runs, 100.0),
            mean_pm(&st.best_acc, st.runs, 100.0),
        );
        if with_paper {
            match spec
                .paper
                .iter()
                .position(|pv| matches(&pv.conditions, &p.params))
            {
                Some(k) => {
                    used[k] = true;
                    let pv = &spec.paper[k];
                    let rep = reproduced(pv, p, &sw.runs);
                    let at = pv
                        .epoch
                        .map(|e| format!(", epoch {}", epoch(e)))
                        .unwrap_or_default();
                    let delta = if rep.is_empty() {
                        "–".to_string()
                    } else {
                        format!("{:+.2}", mean_std(&rep).0 - pv.value)
                    };
                    let mut source = pv.source.clone();
                    if !pv.note.is_empty() {
                        source = format!("{source} ({})", pv.note);
                    }
                    let _ = write!(
                        out,
                        " {} {:.2}{at} | {} | {delta} | {} |",
                        pv.measure.name(),
                        pv.value,
                        mean_pm(&rep, st.runs, 1.0),
                        cell(&source)
                    );
                }
                None => out.push_str(" – | – | – | – |"),
            }
        }
        out.push('\n');
    }
    let unused: Vec<&PaperValue> = spec
        .paper
        .iter()
        .zip(&used)
        .filter(|(_, u)| !**u)
        .map(|(p, _)| p)
        .collect();
    if !unused.is_empty() {
        out.push_str("\nPaper values with no matching grid point in this sweep:\n\n");
        for pv in unused {
            let _ = writeln!(
                out,
                "- `{}`: {} {:.2} ({})",
                pv.key,
                pv.measure.name(),
                pv.value,
                pv.source
            );
        }
    }

    let range_tests = super::range_test_lines(sw, points);
    if !range_tests.is_empty() {
        out.push_str("\n## Range tests\n\n");
        out.push_str(
            "What each run's range test chose for its \"auto\" values, and the other rules' \
             suggestions on the same curve.\n\n",
        );
        for line in range_tests {
            let _ = writeln!(out, "- {line}");
        }
    }

    let claims = super::claim_lines(sw, points, spec);
    if !claims.is_empty() {
        out.push_str("\n## Claims\n\n");
        out.push_str(
            "Each line compares two grid points' test accuracy (mean over seeds), computed from \
             the results when this report was written.\n\n",
        );
        for line in claims {
            let _ = writeln!(out, "- {line}");
        }
    }

    if let Some(t) = &sw.by_point {
        out.push_str("\nThe sweep's own summary_by_point.csv:\n\n");
        out.push_str(&table_md(t));
    }

    out.push_str("\n## Runs\n\n");
    match &sw.summary {
        Some(t) => {
            out.push_str("From summary.csv.\n\n");
            out.push_str(&table_md(t));
        }
        None => out.push_str(&runs_md(&sw.runs)),
    }
    figures_section(&mut out, figures);
    out
}

/// A CSV table as Markdown, long decimals shortened to 6 significant digits.
pub fn table_md(t: &Table) -> String {
    let mut out = String::new();
    let head: Vec<String> = t.header.iter().map(|h| cell(h)).collect();
    let _ = writeln!(out, "| {} |", head.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(t.header.len()));
    for row in &t.rows {
        let cells: Vec<String> = row.iter().map(|c| cell(&short_number(c))).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

fn short_number(s: &str) -> String {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v.abs() < 1e6 && (s.contains('.') || s.contains('e')) => {
            let r: f64 = format!("{v:.5e}").parse().unwrap_or(v);
            format!("{r}")
        }
        _ => s.to_string(),
    }
}

/// The runs' table built from their `epochs.csv`.
fn runs_md(runs: &[Run]) -> String {
    let mut out = String::from(
        "| run | status | final test acc (%) | best test acc (%) (epoch) | epochs | training time |\n\
         |---|---|---|---|---|---|\n",
    );
    for r in runs {
        let fin = r.final_test().map_or("–".into(), |t| pct(t.1));
        let best = r
            .best_test()
            .map_or("–".into(), |t| format!("{} ({})", pct(t.1), epoch(t.0)));
        let _ = writeln!(
            out,
            "| {} | {} | {fin} | {best} | {} | {} |",
            cell(&r.name),
            cell(r.status.as_deref().unwrap_or("unknown")),
            r.epochs_done().map_or("0".into(), epoch),
            r.wall_s().map_or("–".into(), duration)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_numbers() {
        assert_eq!(duration(42.04), "42.0 s");
        assert_eq!(duration(184.0), "3 min 04 s");
        assert_eq!(duration(7500.0), "2 h 05 min");
        assert_eq!(short_number("0.86320000001"), "0.8632");
        assert_eq!(short_number("done"), "done");
        assert_eq!(short_number("12"), "12");
        assert_eq!(mean_pm(&[1.0, 3.0], 3, 1.0), "2.00 ± 1.41 (n=2 of 3)");
        // A tie at two decimals rounds as the sweep table does (mean first, then percent).
        assert_eq!(mean_pm(&[0.8603, 0.8608], 2, 100.0), "86.05 ± 0.04");
    }
}
