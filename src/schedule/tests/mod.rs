//! Tests of the schedule families: the papers' and libraries' values at known points
//! (`formulas`) and the validation rules with their messages (`validation`).

mod formulas;
mod validation;

use super::{RunLength, Schedule};

/// Build a schedule from TOML text for `epochs` epochs of `k` steps; panics on error.
fn sched(spec: &str, epochs: u64, k: u64) -> Schedule {
    let table: toml::Table = spec.parse().expect("valid TOML");
    Schedule::from_table(&table, RunLength::from_epochs(epochs, k).unwrap())
        .unwrap_or_else(|e| panic!("{spec}: {e:#}"))
}

/// The error message for a spec that must be rejected; checks it is an input error.
fn error(spec: &str, epochs: u64, k: u64) -> String {
    let table: toml::Table = spec.parse().expect("valid TOML");
    let e = Schedule::from_table(&table, RunLength::from_epochs(epochs, k).unwrap())
        .expect_err("the spec must be rejected");
    assert!(crate::is_input_error(&e), "not an input error: {e:#}");
    format!("{e:#}")
}

/// `a` equals `b` to `rel` relative (or 1e-15 absolute near 0).
#[track_caller]
fn assert_close(a: f64, b: f64, rel: f64) {
    let d = (a - b).abs();
    assert!(
        d <= rel * a.abs().max(b.abs()) || d <= 1e-15,
        "{a:e} != {b:e} (rel {rel:e})"
    );
}

/// Every value of `got` close to `want`.
#[track_caller]
fn assert_all_close(got: &[f64], want: &[f64], rel: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let d = (g - w).abs();
        assert!(
            d <= rel * g.abs().max(w.abs()) || d <= 1e-15,
            "index {i}: {g:e} != {w:e} (rel {rel:e}); got {got:?}"
        );
    }
}

fn lrs(s: &Schedule, steps: std::ops::Range<u64>) -> Vec<f64> {
    steps.map(|k| s.lr(k)).collect()
}

fn moms(s: &Schedule, steps: std::ops::Range<u64>) -> Vec<f64> {
    steps
        .map(|k| s.momentum(k).expect("cycled momentum"))
        .collect()
}
