//! The `[report]` table of a sweep's `sweep.toml`: a title and the papers' numbers to print
//! beside the reproduced ones.
//!
//! ```toml
//! [report]
//! title = "SGDR, WRN-28-10 on CIFAR-10 (Table 1)"     # optional
//!
//! [report.paper]
//! # key: the grid point, as `param=value` conditions joined by commas (names as in the
//! # sweep's grid; a dotted config key also matches its last part, `schedule.t_0` ~ `t_0`).
//! "schedule=sgdr, t_0=10" = { test_error = 4.03, source = "SGDR Table 1" }
//! "schedule=step"         = { test_error = 4.24, source = "SGDR Table 1", note = "lr 0.1" }
//! "kind=clr"              = { test_acc = 81.4, source = "CLR Table 1" }
//! "t_0=10"                = { test_error = 4.03, epoch = 150, source = "SGDR §4.1" }
//! "*"                     = { test_acc = 94.08, source = "..." }  # every point
//! ```
//!
//! `[[report.claim]]` entries state the papers' claims as comparisons of two grid points,
//! judged on the results ([`super::claims`]).
//!
//! Each entry gives exactly one of `test_error` or `test_acc`, in percent; `source` (text),
//! `note` (text) and `epoch` (compare at that epoch instead of at the end of the run) are
//! optional. Every grid point whose parameters satisfy all of an entry's conditions gets
//! that entry (the first, when several match).

use crate::error::input_error;
use anyhow::Result;
use std::path::Path;

/// Which number a paper reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    /// Test error in percent.
    TestError,
    /// Test accuracy in percent.
    TestAcc,
}

impl Measure {
    /// Column text.
    pub fn name(self) -> &'static str {
        match self {
            Measure::TestError => "test error",
            Measure::TestAcc => "test acc",
        }
    }

    /// The measure in percent from a test accuracy fraction.
    pub fn from_acc(self, acc: f64) -> f64 {
        match self {
            Measure::TestError => 100.0 * (1.0 - acc),
            Measure::TestAcc => 100.0 * acc,
        }
    }
}

/// One paper number.
#[derive(Clone, Debug, PartialEq)]
pub struct PaperValue {
    /// The key as written.
    pub key: String,
    /// Its `param=value` conditions.
    pub conditions: Vec<(String, String)>,
    /// What was reported.
    pub measure: Measure,
    /// The number, in percent.
    pub value: f64,
    /// Compare at this epoch instead of the last.
    pub epoch: Option<f64>,
    /// Where the number comes from.
    pub source: String,
    /// A remark.
    pub note: String,
}

/// A grid point named in a spec: the text as written and its `param=value` conditions.
pub type PointRef = (String, Vec<(String, String)>);

/// The `[report]` table.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReportSpec {
    /// Report title.
    pub title: Option<String>,
    /// Paper numbers, in file order.
    pub paper: Vec<PaperValue>,
    /// Claims to judge on the results (`[[report.claim]]`), in file order.
    pub claims: Vec<super::claims::Claim>,
    /// The grid point whose mean final test accuracy the others' time-to-accuracy is measured
    /// against (`reference = "schedule=step, train.epochs=16"`): as written, and its conditions.
    pub reference: Option<PointRef>,
}

/// Read the `[report]` table of the `sweep.toml` text from `path` (an empty spec without
/// one; the other tables belong to the sweep runner and are not looked at). Invalid TOML,
/// unknown keys and bad values are input errors naming the file and the key.
pub fn parse_text(path: &Path, text: &str) -> Result<ReportSpec> {
    let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        input_error(format!(
            "{}: invalid TOML: {}",
            path.display(),
            e.to_string().trim()
        ))
    })?;
    parse(path, &doc)
}

/// Read the `[report]` table of a parsed `sweep.toml` at `path` (an empty spec without one).
/// Unknown keys and bad values are input errors naming the file and the key.
pub fn parse(path: &Path, doc: &toml::Table) -> Result<ReportSpec> {
    let f = path.display();
    let Some(report) = doc.get("report") else {
        return Ok(ReportSpec::default());
    };
    let report = report
        .as_table()
        .ok_or_else(|| input_error(format!("{f}: `report` must be a table")))?;
    let mut spec = ReportSpec::default();
    for (k, v) in report {
        match k.as_str() {
            "title" => {
                spec.title = Some(
                    v.as_str()
                        .ok_or_else(|| input_error(format!("{f}: report.title must be text")))?
                        .to_string(),
                )
            }
            "paper" => {
                let t = v.as_table().ok_or_else(|| {
                    input_error(format!(
                        "{f}: report.paper must be a table of \"param=value\" = {{ test_error = ..., source = ... }}"
                    ))
                })?;
                for (key, entry) in t {
                    spec.paper.push(entry_of(path, key, entry)?);
                }
            }
            "reference" => {
                let text = v.as_str().ok_or_else(|| {
                    input_error(format!(
                        "{f}: report.reference must be text: a grid point as param=value pairs"
                    ))
                })?;
                let c = conditions(text).ok_or_else(|| {
                    input_error(format!(
                        "{f}: report.reference = \"{text}\": expected param=value pairs joined by \
                         commas"
                    ))
                })?;
                spec.reference = Some((text.to_string(), c));
            }
            "claim" => {
                let list = v.as_array().ok_or_else(|| {
                    input_error(format!(
                        "{f}: report.claim must be an array of tables: [[report.claim]]"
                    ))
                })?;
                for (i, c) in list.iter().enumerate() {
                    spec.claims.push(super::claims::parse(path, i + 1, c)?);
                }
            }
            other => crate::bail_input!(
                "{f}: unknown key report.{other}{}: expected report.title, report.reference, \
                 report.paper or report.claim",
                crate::util::did_you_mean(other, ["title", "reference", "paper", "claim"])
            ),
        }
    }
    Ok(spec)
}

fn entry_of(path: &Path, key: &str, v: &toml::Value) -> Result<PaperValue> {
    let f = path.display();
    let at = format!("{f}: report.paper.\"{key}\"");
    let t = v.as_table().ok_or_else(|| {
        input_error(format!(
            "{at}: expected a table like {{ test_error = 4.03, source = \"...\" }}"
        ))
    })?;
    let conditions = conditions(key).ok_or_else(|| {
        input_error(format!(
            "{at}: the key must be param=value pairs joined by commas"
        ))
    })?;
    let mut measure = None;
    let mut out = PaperValue {
        key: key.to_string(),
        conditions,
        measure: Measure::TestError,
        value: f64::NAN,
        epoch: None,
        source: String::new(),
        note: String::new(),
    };
    let number = |name: &str, v: &toml::Value| -> Result<f64> {
        v.as_float()
            .or_else(|| v.as_integer().map(|i| i as f64))
            .ok_or_else(|| input_error(format!("{at}: {name} must be a number")))
    };
    for (k, v) in t {
        match k.as_str() {
            "test_error" | "test_acc" => {
                if measure.is_some() {
                    crate::bail_input!("{at}: give one of test_error or test_acc, not both");
                }
                let x = number(k, v)?;
                if !(0.0..=100.0).contains(&x) {
                    crate::bail_input!("{at}: {k} = {x}: must be a percentage in [0, 100]");
                }
                // The table is in percent, epochs.csv in fractions: a fraction copied across
                // would be compared 100 times too small. No paper reports an accuracy of 1% or
                // less; an error under 1% is real (MNIST), so it is only flagged.
                if k == "test_acc" && x > 0.0 && x <= 1.0 {
                    crate::bail_input!(
                        "{at}: test_acc = {x}: the table is in percent, so this is {x}% accuracy; \
                         write {} for a fraction of {x}",
                        crate::util::fmt_f64(100.0 * x)
                    );
                }
                if k == "test_error" && x > 0.0 && x < 1.0 {
                    crate::util::warn_once(&format!(
                        "warning: {at}: test_error = {x} is read as {x}% (the table is in \
                         percent); if it is a fraction, write {}",
                        crate::util::fmt_f64(100.0 * x)
                    ));
                }
                measure = Some(if k == "test_error" {
                    Measure::TestError
                } else {
                    Measure::TestAcc
                });
                out.value = x;
            }
            "epoch" => {
                let e = number(k, v)?;
                if e.is_nan() || e < 1.0 {
                    crate::bail_input!("{at}: epoch = {e}: must be >= 1");
                }
                out.epoch = Some(e);
            }
            "source" | "note" => {
                let s = v
                    .as_str()
                    .ok_or_else(|| input_error(format!("{at}: {k} must be text")))?
                    .to_string();
                if k == "source" {
                    out.source = s;
                } else {
                    out.note = s;
                }
            }
            other => crate::bail_input!(
                "{at}: unknown key `{other}`{}: expected test_error or test_acc (percent), source, \
                 note, epoch",
                crate::util::did_you_mean(other, ["test_error", "test_acc", "source", "note", "epoch"])
            ),
        }
    }
    out.measure = measure
        .ok_or_else(|| input_error(format!("{at}: missing test_error or test_acc (percent)")))?;
    Ok(out)
}

/// `"a=1, b=x"` → `[("a","1"), ("b","x")]`; `"*"` → no conditions (every point: a sweep
/// that only repeats seeds has a single point without parameters); `None` when a part has no
/// `=` or an empty name.
pub fn conditions(key: &str) -> Option<Vec<(String, String)>> {
    if key.trim() == "*" {
        return Some(Vec::new());
    }
    key.split(',')
        .map(|part| {
            let (k, v) = part.split_once('=')?;
            let (k, v) = (k.trim(), v.trim().trim_matches('"'));
            (!k.is_empty()).then(|| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// Whether a point with `params` satisfies every condition.
pub fn matches(conditions: &[(String, String)], params: &[(String, String)]) -> bool {
    conditions.iter().all(|(k, v)| {
        params
            .iter()
            .any(|(pk, pv)| same_key(k, pk) && same_value(v, pv))
    })
}

fn same_key(a: &str, b: &str) -> bool {
    a == b || a.ends_with(&format!(".{b}")) || b.ends_with(&format!(".{a}"))
}

fn same_value(a: &str, b: &str) -> bool {
    let b = b.trim_matches('"');
    if a == b {
        return true;
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn conditions_match_by_name_suffix_and_number() {
        let c = conditions("schedule=sgdr, t_0=10").unwrap();
        assert!(matches(
            &c,
            &p(&[("schedule", "sgdr"), ("schedule.t_0", "10.0")])
        ));
        assert!(!matches(&c, &p(&[("schedule", "sgdr"), ("t_0", "50")])));
        assert!(!matches(&c, &p(&[("schedule", "sgdr")])));
        assert!(conditions("no equals sign").is_none());
        assert!(matches(
            &conditions("*").unwrap(),
            &p(&[("schedule", "sgdr")])
        ));
    }

    #[test]
    fn entries_are_checked() {
        let ok: toml::Table = r#"
            [report]
            title = "T"
            [report.paper]
            "kind=sgdr" = { test_error = 4.03, source = "SGDR Table 1", epoch = 150 }
        "#
        .parse()
        .unwrap();
        let s = parse(Path::new("sweep.toml"), &ok).unwrap();
        assert_eq!(s.title.as_deref(), Some("T"));
        assert_eq!(s.paper[0].value, 4.03);
        assert_eq!(s.paper[0].epoch, Some(150.0));
        for (bad, needle) in [
            (
                "[report.paper]\n\"k=v\" = { test_eror = 4 }",
                "unknown key `test_eror`",
            ),
            (
                "[report.paper]\n\"k=v\" = { source = \"x\" }",
                "missing test_error or test_acc",
            ),
            (
                "[report.paper]\n\"k=v\" = { test_acc = 140 }",
                "must be a percentage",
            ),
            // A fraction copied from epochs.csv into the percent table.
            (
                "[report.paper]\n\"k=v\" = { test_acc = 0.935 }",
                "test_acc = 0.935: the table is in percent, so this is 0.935% accuracy; write 93.5",
            ),
            ("[report]\npapers = 1", "unknown key report.papers"),
        ] {
            let doc: toml::Table = bad.parse().unwrap();
            let e = parse(Path::new("sweep.toml"), &doc).unwrap_err();
            assert!(crate::is_input_error(&e));
            assert!(e.to_string().contains(needle), "{e}");
            assert!(e.to_string().starts_with("sweep.toml: "), "{e}");
        }
    }
}
