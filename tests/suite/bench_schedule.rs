//! `lrlab bench schedule`: every benchmarked family builds, the JSON names the families asked
//! for with a positive time each, the text table has one line per family, and an unknown
//! family is bad input (exit status 2, the message names it). No time is asserted.

use crate::common;
use common::OutputWithin;

use std::process::{Command, Output};

fn lrlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lrlab"))
        .args(args)
        .output_within(common::DEADLINE_S)
        .expect("run lrlab")
}

#[test]
fn every_benchmarked_family_builds_and_is_a_kind() {
    for (name, text) in lrlab::schedule::bench::FAMILIES {
        let s =
            lrlab::schedule::bench::build_family(text).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert!(lrlab::schedule::KINDS.contains(&s.kind()), "{name}");
        assert!(s.lr(0).is_finite() && s.lr(0) >= 0.0, "{name}");
    }
}

#[test]
fn json_names_the_families_asked_for() {
    let out = lrlab(&[
        "bench",
        "schedule",
        "--steps",
        "1000",
        "--family",
        "one_cycle",
        "--family",
        "sgdr",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["impl"], "lrlab");
    assert_eq!(v["steps"], 1000);
    let fams = v["families"].as_array().unwrap();
    // FAMILIES order, not the order of the flags.
    let names: Vec<&str> = fams.iter().map(|f| f["family"].as_str().unwrap()).collect();
    assert_eq!(names, ["sgdr", "one_cycle"]);
    for f in fams {
        let ns = f["ns_per_step"].as_f64().unwrap();
        assert!(ns.is_finite() && ns > 0.0, "{f}");
    }
}

#[test]
fn text_table_has_a_line_per_family() {
    let out = lrlab(&["bench", "schedule", "--steps", "100"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + lrlab::schedule::bench::FAMILIES.len());
    for ((name, _), line) in lrlab::schedule::bench::FAMILIES.iter().zip(&lines[1..]) {
        assert_eq!(line.split_whitespace().next(), Some(*name));
    }
}

#[test]
fn unknown_family_is_bad_input() {
    let out = lrlab(&["bench", "schedule", "--family", "cosin"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--family \"cosin\""), "{err}");
    assert!(err.contains("one_cycle"), "{err}");
}
