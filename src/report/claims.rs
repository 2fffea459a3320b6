//! Claims of a sweep's `[report]`: one line per paper claim, each a comparison of two grid
//! points' test accuracy computed from the results when the line is printed, never written
//! in, ending in **holds** or **does not hold here**.
//!
//! ```toml
//! [[report.claim]]
//! text = "1cycle at 1x reaches step at 4x"          # the claim, in words
//! a = "schedule=one_cycle"                           # a grid point (param=value, ...)
//! b = "schedule=step, train.epochs=16"               # another one
//! margin = -0.5   # holds when a − b >= margin, in points of test accuracy (default 0)
//! epoch = 2       # optional: compare the test accuracy at this epoch, not the final one
//! ```
//!
//! Each side is the mean over the point's runs (seeds) that have the value. The line states
//! each side's number of runs `n` and standard deviation, and, where both sides have two runs
//! or more, a 95% confidence interval of the difference (Welch's t, which does not assume equal
//! variances); with one run on a side it says "one seed: noise unknown". The verdict keeps its
//! rule (the mean difference against the margin): the interval tells how far to trust it. A
//! side that matches no grid point, or several, or has no result yet makes the line say so
//! instead of a verdict.

use super::group::Point;
use super::paper::{conditions, matches, PointRef};
use super::read::Run;
use crate::error::input_error;
use anyhow::Result;
use std::path::Path;

/// One claim: does point `a` reach point `b` (within `margin`)?
#[derive(Clone, Debug, PartialEq)]
pub struct Claim {
    /// The claim in words.
    pub text: String,
    /// The first point, as written, and its conditions.
    pub a: PointRef,
    /// The second point, as written, and its conditions.
    pub b: PointRef,
    /// Holds when `a − b >= margin` (points of test accuracy).
    pub margin: f64,
    /// Compare at this epoch instead of the end of the runs.
    pub epoch: Option<f64>,
}

/// Parse one `[[report.claim]]` entry (number `i`, 1-based, for the messages) of `path`.
pub fn parse(path: &Path, i: usize, v: &toml::Value) -> Result<Claim> {
    let at = format!("{}: report.claim #{i}", path.display());
    let t = v.as_table().ok_or_else(|| {
        input_error(format!(
            "{at}: expected a table like {{ text = \"...\", a = \"schedule=one_cycle\", b = \
             \"schedule=step\" }}"
        ))
    })?;
    let text_of = |k: &str| -> Result<Option<String>> {
        t.get(k)
            .map(|v| {
                v.as_str()
                    .map(String::from)
                    .ok_or_else(|| input_error(format!("{at}: {k} must be text")))
            })
            .transpose()
    };
    let point = |k: &str| -> Result<PointRef> {
        let s = text_of(k)?.ok_or_else(|| {
            input_error(format!(
                "{at}: missing `{k}` (a grid point as param=value pairs, e.g. \"schedule=step\")"
            ))
        })?;
        let c = conditions(&s).ok_or_else(|| {
            input_error(format!(
                "{at}: {k} = \"{s}\": expected param=value pairs joined by commas"
            ))
        })?;
        Ok((s, c))
    };
    let number = |k: &str| -> Result<Option<f64>> {
        t.get(k)
            .map(|v| {
                v.as_float()
                    .or_else(|| v.as_integer().map(|i| i as f64))
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| input_error(format!("{at}: {k} must be a number")))
            })
            .transpose()
    };
    const KEYS: [&str; 5] = ["text", "a", "b", "margin", "epoch"];
    for k in t.keys() {
        if !KEYS.contains(&k.as_str()) {
            crate::bail_input!(
                "{at}: unknown key `{k}`{}: expected {}",
                crate::util::did_you_mean(k, KEYS),
                KEYS.join(", ")
            );
        }
    }
    let epoch = number("epoch")?;
    if let Some(e) = epoch.filter(|e| *e < 1.0) {
        crate::bail_input!("{at}: epoch = {e}: must be >= 1");
    }
    Ok(Claim {
        text: text_of("text")?.ok_or_else(|| input_error(format!("{at}: missing `text`")))?,
        a: point("a")?,
        b: point("b")?,
        margin: number("margin")?.unwrap_or(0.0),
        epoch,
    })
}

/// A claim judged on the results.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The printed line.
    pub line: String,
    /// Whether it holds; None when the results cannot tell.
    pub holds: Option<bool>,
}

/// Test accuracies as fractions (at `epoch`, or the final ones) of the runs of the point `side`
/// selects, or why not.
fn side(
    epoch: Option<f64>,
    side: &PointRef,
    points: &[Point],
    runs: &[Run],
) -> std::result::Result<Vec<f64>, String> {
    let found: Vec<&Point> = points
        .iter()
        .filter(|p| matches(&side.1, &p.params))
        .collect();
    let p = match found.as_slice() {
        [p] => *p,
        [] => return Err(format!("no grid point matches \"{}\"", side.0)),
        many => {
            return Err(format!(
                "\"{}\" matches {} grid points ({}); name one",
                side.0,
                many.len(),
                many.iter()
                    .map(|p| p.label.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ))
        }
    };
    let values: Vec<f64> = p
        .runs
        .iter()
        .filter_map(|&i| match epoch {
            Some(e) => runs[i].test_at(e),
            None => runs[i].final_test().map(|t| t.1),
        })
        .collect();
    if values.is_empty() {
        return Err(format!("\"{}\" has no result yet", side.0));
    }
    Ok(values)
}

/// The 95% confidence interval of `mean(a) − mean(b)` by Welch's t (unequal variances,
/// Welch–Satterthwaite degrees of freedom); `None` unless both sides have two values or more.
pub fn welch_ci95(a: &[f64], b: &[f64]) -> Option<(f64, f64)> {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let ((ma, sa), (mb, sb)) = (super::group::mean_std(a), super::group::mean_std(b));
    let (va, vb) = (sa * sa / a.len() as f64, sb * sb / b.len() as f64);
    let d = ma - mb;
    let se = (va + vb).sqrt();
    if se == 0.0 {
        return Some((d, d));
    }
    let df = (va + vb).powi(2) / (va * va / (a.len() - 1) as f64 + vb * vb / (b.len() - 1) as f64);
    let t = StudentsT::new(0.0, 1.0, df).ok()?.inverse_cdf(0.975);
    Some((d - t * se, d + t * se))
}

/// "holds if ..." for the rule `a − b >= margin`, in words that match its sign.
fn condition(m: f64) -> String {
    let points = |x: f64| format!("{x} point{}", if x == 1.0 { "" } else { "s" });
    if m < 0.0 {
        format!("at most {} below", points(-m))
    } else if m == 0.0 {
        "at least equal".to_string()
    } else {
        format!("ahead by at least {}", points(m))
    }
}

/// The `[report] reference` point of `spec` and its mean final test accuracy (a fraction),
/// when it selects exactly one point with results.
pub fn reference_acc(
    spec: &super::paper::ReportSpec,
    points: &[Point],
    runs: &[Run],
) -> Option<(String, f64)> {
    let reference = spec.reference.as_ref()?;
    let acc = super::group::mean_std(&side(None, reference, points, runs).ok()?).0;
    let label = points
        .iter()
        .find(|p| matches(&reference.1, &p.params))
        .map(|p| p.label.clone())?;
    Some((label, acc))
}

/// Judge `claim` on the sweep's `points` and `runs`.
pub fn judge(claim: &Claim, points: &[Point], runs: &[Run]) -> Verdict {
    let (a, b) = (
        side(claim.epoch, &claim.a, points, runs),
        side(claim.epoch, &claim.b, points, runs),
    );
    let at = claim
        .epoch
        .map(|e| format!("at epoch {e}: "))
        .unwrap_or_default();
    match (a, b) {
        (Ok(va), Ok(vb)) => {
            let m = claim.margin;
            // Means of the fractions, then in percent: the same numbers as the sweep's
            // table prints (scaling each value first can round a tie the other way).
            let pct = |(m, s): (f64, f64)| (100.0 * m, 100.0 * s);
            let ((a, sa), (b, sb)) = (
                pct(super::group::mean_std(&va)),
                pct(super::group::mean_std(&vb)),
            );
            // Judged on the printed difference, so that the line never contradicts itself.
            let d = ((a - b) * 100.0).round() / 100.0;
            let holds = d >= m - 1e-9;
            let sd = |n: usize, s: f64| {
                if n > 1 {
                    format!(" ± {s:.2}")
                } else {
                    String::new()
                }
            };
            let noise = match welch_ci95(&va, &vb).map(|(lo, hi)| (100.0 * lo, 100.0 * hi)) {
                Some((lo, hi)) => format!("95% CI of the difference [{lo:+.2}, {hi:+.2}]"),
                None => "one seed: noise unknown".to_string(),
            };
            Verdict {
                line: format!(
                    "{} ({at}{a:.2}%{} vs {b:.2}%{}, n = {} vs {}, {:+.2} points, {noise}; holds if {}): {}",
                    claim.text,
                    sd(va.len(), sa),
                    sd(vb.len(), sb),
                    va.len(),
                    vb.len(),
                    d,
                    condition(m),
                    if holds { "holds" } else { "does not hold here" }
                ),
                holds: Some(holds),
            }
        }
        (Err(e), _) | (_, Err(e)) => Verdict {
            line: format!("{}: cannot tell ({e})", claim.text),
            holds: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(text: &str) -> Claim {
        let v: toml::Value = text.parse::<toml::Table>().unwrap().into();
        parse(Path::new("sweep.toml"), 1, &v).unwrap()
    }

    #[test]
    fn parses_and_rejects_with_the_key_named() {
        let c = claim("text = \"x\"\na = \"schedule=one_cycle\"\nb = \"schedule=step, epochs=16\"\nmargin = -0.5");
        assert_eq!(c.a.1, vec![("schedule".into(), "one_cycle".into())]);
        assert_eq!(c.b.1.len(), 2);
        assert_eq!(c.margin, -0.5);
        let bad = |t: &str| {
            let v: toml::Value = t.parse::<toml::Table>().unwrap().into();
            format!("{:#}", parse(Path::new("s.toml"), 2, &v).unwrap_err())
        };
        let e = bad("text = \"x\"\na = \"s=1\"\nb = \"s=2\"\nmargn = 1");
        assert!(
            e.contains("s.toml: report.claim #2: unknown key `margn`"),
            "{e}"
        );
        assert!(e.contains("margin"), "{e}");
        let e = bad("text = \"x\"\na = \"s=1\"");
        assert!(e.contains("missing `b`"), "{e}");
        let e = bad("text = \"x\"\na = \"nothing\"\nb = \"s=2\"");
        assert!(e.contains("a = \"nothing\""), "{e}");
    }

    fn run(accs: &[f64]) -> Run {
        Run {
            epochs: accs
                .iter()
                .enumerate()
                .map(|(i, &a)| super::super::read::EpochRow {
                    epoch: (i + 1) as f64,
                    test_acc: Some(a),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn point(label: &str, params: &[(&str, &str)], runs: Vec<usize>) -> Point {
        Point {
            label: label.into(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            runs,
        }
    }

    #[test]
    fn a_side_prints_as_the_sweep_table_does() {
        // 0.8603 and 0.8608: the mean 0.86055 is a tie at two decimals in percent; the
        // sweep's table prints 86.05 (mean of the fractions, then percent), and so must the
        // claim (scaling each value first gave 86.06).
        let runs = vec![run(&[0.8603]), run(&[0.8608]), run(&[0.85])];
        let points = vec![
            point("a", &[("k", "a")], vec![0, 1]),
            point("b", &[("k", "b")], vec![2]),
        ];
        let v = judge(
            &claim("text = \"t\"\na = \"k=a\"\nb = \"k=b\""),
            &points,
            &runs,
        );
        let table = (0.8603f64 + 0.8608) / 2.0; // as collect's mean_std computes it
        assert_eq!(format!("{:.2}", 100.0 * table), "86.05");
        assert!(
            v.line.starts_with("t (86.05% ± 0.04 vs 85.00%"),
            "{}",
            v.line
        );
    }

    #[test]
    fn judges_means_with_the_margin_and_says_when_it_cannot() {
        let runs = vec![
            run(&[0.80, 0.869]),
            run(&[0.80, 0.871]),
            run(&[0.75, 0.872]),
            run(&[0.70, 0.80, 0.85, 0.874]),
        ];
        let points = vec![
            point(
                "one_cycle",
                &[("schedule", "one_cycle"), ("train.epochs", "2")],
                vec![0, 1],
            ),
            point(
                "step 2",
                &[("schedule", "step"), ("train.epochs", "2")],
                vec![2],
            ),
            point(
                "step 4",
                &[("schedule", "step"), ("train.epochs", "4")],
                vec![3],
            ),
        ];
        let c = claim(
            "text = \"1cycle at 1x reaches step at 2x\"\na = \"schedule=one_cycle\"\nb = \"schedule=step, epochs=4\"\nmargin = -0.5",
        );
        // 87.0 (mean of 86.9 and 87.1) vs 87.4: -0.4 points, within 0.5.
        let v = judge(&c, &points, &runs);
        assert_eq!(v.holds, Some(true), "{}", v.line);
        assert_eq!(
            v.line,
            "1cycle at 1x reaches step at 2x (87.00% ± 0.14 vs 87.40%, n = 2 vs 1, -0.40 points, \
             one seed: noise unknown; holds if at most 0.5 points below): holds"
        );
        let strict = Claim {
            margin: 0.0,
            ..c.clone()
        };
        let v = judge(&strict, &points, &runs);
        assert_eq!(v.holds, Some(false));
        assert!(
            v.line
                .ends_with("holds if at least equal): does not hold here"),
            "{}",
            v.line
        );
        // At epoch 1: 80.0 vs 75.0 for step at 2 epochs.
        let early = Claim {
            epoch: Some(1.0),
            b: (
                "schedule=step, epochs=2".into(),
                conditions("schedule=step, epochs=2").unwrap(),
            ),
            margin: 5.0,
            ..c.clone()
        };
        let v = judge(&early, &points, &runs);
        assert_eq!(v.holds, Some(true), "{}", v.line);
        assert!(
            v.line
                .contains("(at epoch 1: 80.00% ± 0.00 vs 75.00%, n = 2 vs 1, +5.00 points"),
            "{}",
            v.line
        );
        // Ambiguous and missing points make no verdict.
        let vague = Claim {
            b: ("schedule=step".into(), conditions("schedule=step").unwrap()),
            ..c.clone()
        };
        let v = judge(&vague, &points, &runs);
        assert_eq!(v.holds, None);
        assert!(
            v.line.contains("matches 2 grid points (step 2; step 4)"),
            "{}",
            v.line
        );
        let missing = Claim {
            a: ("schedule=sgdr".into(), conditions("schedule=sgdr").unwrap()),
            ..c
        };
        let v = judge(&missing, &points, &runs);
        assert!(
            v.line
                .ends_with("cannot tell (no grid point matches \"schedule=sgdr\")"),
            "{}",
            v.line
        );
    }

    #[test]
    fn the_interval_is_welchs_and_the_words_match_the_sign() {
        // Reference: Welch's interval with the t quantile from the regularised incomplete
        // beta function (mpmath): df 1.16955, t 9.08278, interval [-3.08146, 4.48146].
        let (lo, hi) = welch_ci95(&[87.1, 86.9, 87.3], &[86.0, 86.8]).unwrap();
        assert!(
            (lo + 3.081_461).abs() < 1e-4 && (hi - 4.481_461).abs() < 1e-4,
            "{lo} {hi}"
        );
        assert_eq!(welch_ci95(&[1.0], &[1.0, 2.0]), None);
        assert_eq!(condition(-0.3), "at most 0.3 points below");
        assert_eq!(condition(-1.0), "at most 1 point below");
        assert_eq!(condition(0.0), "at least equal");
        assert_eq!(condition(2.0), "ahead by at least 2 points");
        // Two seeds a side: the line carries both n, both deviations and the interval.
        let runs = vec![run(&[0.871]), run(&[0.869]), run(&[0.860]), run(&[0.868])];
        let points = vec![
            point("a", &[("schedule", "one_cycle")], vec![0, 1]),
            point("b", &[("schedule", "step")], vec![2, 3]),
        ];
        let c =
            claim("text = \"x\"\na = \"schedule=one_cycle\"\nb = \"schedule=step\"\nmargin = -0.3");
        let v = judge(&c, &points, &runs);
        assert!(
            v.line.starts_with("x (87.00% ± 0.14 vs 86.40% ± 0.57, n = 2 vs 2, +0.60 points, 95% CI of the difference [-3.45, +4.65]; holds if at most 0.3 points below): holds"),
            "{}",
            v.line
        );
    }
}
