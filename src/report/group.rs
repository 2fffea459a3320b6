//! Grid points: the runs of a sweep that differ only in their seed, and statistics over them.
//!
//! A run's point is found, in this order of preference:
//! 1. from the grid-parameter columns of the sweep's `summary.csv`/`curves.csv` (every column
//!    but `seed`), when every run is listed there;
//! 2. from the runs' resolved `config.toml`, every key but `train.seed` and the keys that do
//!    not change the experiment (`train.device`, `train.threads`, `data.workers`,
//!    `data.prefetch`), when every run has one;
//! 3. from the run's name with its `seed=N` part removed.
//!
//! A point's label lists the parameters that vary between points (`lr=0.1, kind=sgdr`).

use super::read::Run;
use std::collections::BTreeMap;

/// Config keys that never separate grid points.
const IGNORED: [&str; 5] = [
    "train.seed",
    "train.device",
    "train.threads",
    "data.workers",
    "data.prefetch",
];

/// One grid point.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// Legend label: the parameters that vary between points, or the sweep's name when
    /// there is one point.
    pub label: String,
    /// The point's parameters `(key, value)` (every known one, for matching paper values).
    pub params: Vec<(String, String)>,
    /// Indices of its runs (seeds) in the run list.
    pub runs: Vec<usize>,
}

/// Whether a parameter name is the seed.
pub fn is_seed(key: &str) -> bool {
    key == "seed" || key.ends_with(".seed")
}

/// Group `runs` into points (in order of first appearance); `single` labels a lone point.
pub fn points(runs: &[Run], single: &str, params_from_tables: bool) -> Vec<Point> {
    let params: Vec<Vec<(String, String)>> = if params_from_tables {
        runs.iter()
            .map(|r| {
                r.params
                    .iter()
                    .filter(|(k, _)| !is_seed(k))
                    .cloned()
                    .collect()
            })
            .collect()
    } else if !runs.is_empty() && runs.iter().all(|r| r.config.is_some()) {
        runs.iter()
            .map(|r| {
                let mut flat = r.config.as_ref().map(flatten).unwrap_or_default();
                flat.retain(|(k, _)| !IGNORED.contains(&k.as_str()));
                flat
            })
            .collect()
    } else {
        runs.iter()
            .map(|r| {
                let name = strip_seed(&r.name);
                let mut p = name_params(&name);
                p.retain(|(k, _)| !is_seed(k));
                p.push(("\u{0}name".to_string(), name));
                p
            })
            .collect()
    };

    let mut out: Vec<Point> = Vec::new();
    let mut index: BTreeMap<Vec<(String, String)>, usize> = BTreeMap::new();
    for (i, p) in params.iter().enumerate() {
        let mut key = p.clone();
        key.sort();
        match index.get(&key) {
            Some(&j) => out[j].runs.push(i),
            None => {
                index.insert(key, out.len());
                out.push(Point {
                    label: String::new(),
                    params: p.clone(),
                    runs: vec![i],
                });
            }
        }
    }
    label_points(&mut out, single);
    for p in &mut out {
        p.params.retain(|(k, _)| !k.starts_with('\u{0}'));
    }
    out
}

/// Label each point with the parameters whose values differ between points (short names
/// when they stay unambiguous); a name-derived point keeps its name.
fn label_points(points: &mut [Point], single: &str) {
    if points.len() == 1 {
        points[0].label = single.to_string();
        return;
    }
    let mut values: BTreeMap<&str, Vec<Option<&str>>> = BTreeMap::new();
    for p in points.iter() {
        for (k, _) in &p.params {
            values.entry(k.as_str()).or_default();
        }
    }
    for (k, vs) in values.iter_mut() {
        for p in points.iter() {
            vs.push(
                p.params
                    .iter()
                    .find(|(pk, _)| pk == k)
                    .map(|(_, v)| v.as_str()),
            );
        }
    }
    let mut varying: Vec<String> = values
        .iter()
        .filter(|(k, vs)| !k.starts_with('\u{0}') && vs.iter().any(|v| *v != vs[0]))
        .map(|(k, _)| k.to_string())
        .collect();
    // What a schedule study varies first: the schedule, then the optimizer, and so on.
    let rank = |k: &str| {
        ["schedule.", "optim.", "train.", "model.", "data."]
            .iter()
            .position(|p| k.starts_with(p))
            .unwrap_or(5)
    };
    varying.sort_by_key(|k| rank(k));
    let short = |k: &str| k.rsplit('.').next().unwrap_or(k).to_string();
    let shorts: Vec<String> = varying.iter().map(|k| short(k)).collect();
    let unique = shorts
        .iter()
        .enumerate()
        .all(|(i, s)| !shorts[..i].contains(s));
    let labels: Vec<String> = points
        .iter()
        .map(|p| {
            if let Some((_, name)) = p.params.iter().find(|(k, _)| k == "\u{0}name") {
                return name.clone();
            }
            let parts: Vec<String> = varying
                .iter()
                .zip(&shorts)
                .filter_map(|(k, s)| {
                    let v = p.params.iter().find(|(pk, _)| pk == k)?;
                    Some(format!("{}={}", if unique { s } else { k }, v.1))
                })
                .collect();
            parts.join(", ")
        })
        .collect();
    for (p, l) in points.iter_mut().zip(labels) {
        p.label = if l.is_empty() { single.to_string() } else { l };
    }
}

/// Flatten a TOML table into `("table.key", value)` pairs, values as written in a grid
/// (strings without quotes).
pub fn flatten(t: &toml::Table) -> Vec<(String, String)> {
    crate::util::flatten_toml(t)
        .into_iter()
        .map(|(k, v)| match v {
            toml::Value::String(s) => (k, s.clone()),
            other => (k, other.to_string()),
        })
        .collect()
}

fn is_sep(c: char) -> bool {
    matches!(c, ',' | '-' | '_' | '/' | ' ' | ';' | '+')
}

/// The name without its `seed=N` part(s) and one separator next to each.
pub fn strip_seed(name: &str) -> String {
    let mut s = name.to_string();
    let mut from = 0;
    while let Some(off) = s[from..].find("seed=") {
        let i = from + off;
        let digits = s[i + 5..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .count();
        let before_ok = i == 0 || s[..i].chars().last().is_some_and(is_sep);
        if digits == 0 || !before_ok {
            from = i + 5;
            continue;
        }
        let j = i + 5 + digits;
        let (a, b) = if i > 0 {
            (i - 1, j)
        } else if s[j..].chars().next().is_some_and(is_sep) {
            (i, j + 1)
        } else {
            (i, j)
        };
        s.replace_range(a..b, "");
        from = a;
    }
    s
}

/// `key=value` pairs written in a run name (`lr=0.1,kind=sgdr`, `0003-lr=1e-4-seed=2`): a key
/// is letters, digits, `_` and `.` (a leading `0003-`-style index is dropped); a value runs
/// to the next separator that starts another `key=`.
pub fn name_params(name: &str) -> Vec<(String, String)> {
    let chars: Vec<char> = name.chars().collect();
    let key_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
    let mut eqs: Vec<usize> = chars
        .iter()
        .enumerate()
        .filter(|(_, c)| **c == '=')
        .map(|(i, _)| i)
        .collect();
    eqs.retain(|&i| i > 0 && key_char(chars[i - 1]));
    // Start of each key.
    let starts: Vec<usize> = eqs
        .iter()
        .map(|&e| {
            let mut s = e;
            while s > 0 && key_char(chars[s - 1]) {
                s -= 1;
            }
            s
        })
        .collect();
    let mut out = Vec::new();
    for (n, (&e, &s)) in eqs.iter().zip(&starts).enumerate() {
        let key: String = chars[s..e].iter().collect();
        // Drop a leading numeric index like `0003_`.
        let key = match key.split_once('_') {
            Some((idx, rest)) if !idx.is_empty() && idx.chars().all(|c| c.is_ascii_digit()) => {
                rest.to_string()
            }
            _ => key,
        };
        let end = match starts.get(n + 1) {
            Some(&next) => {
                let mut end = next;
                while end > e + 1 && is_sep(chars[end - 1]) {
                    end -= 1;
                }
                end
            }
            None => chars.len(),
        };
        let mut value: String = chars[e + 1..end.max(e + 1)].iter().collect();
        if n + 1 == eqs.len() {
            value = value.trim_end_matches(['/', ',']).to_string();
        }
        if !key.is_empty() {
            out.push((key, value));
        }
    }
    out
}

/// What the band around a mean line shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BandKind {
    /// From the lowest to the highest run.
    #[default]
    MinMax,
    /// The mean ± one (sample) standard deviation.
    Std,
    /// No band.
    None,
}

/// One x position of a point's aggregated curve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Agg {
    /// x (epoch).
    pub x: f64,
    /// Mean over the runs that have a finite value at x.
    pub mean: f64,
    /// Band bottom.
    pub lo: f64,
    /// Band top.
    pub hi: f64,
    /// How many runs contributed.
    pub n: usize,
}

/// Mean and band at every x where at least one series has a finite value.
pub fn aggregate(series: &[Vec<(f64, f64)>], band: BandKind) -> Vec<Agg> {
    let mut all: Vec<(f64, f64)> = series
        .iter()
        .flatten()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out = Vec::new();
    for group in all.chunk_by(|a, b| a.0 == b.0) {
        let ys: Vec<f64> = group.iter().map(|p| p.1).collect();
        let (mean, std) = mean_std(&ys);
        let (lo, hi) = match band {
            BandKind::MinMax => (
                ys.iter().copied().fold(f64::INFINITY, f64::min),
                ys.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            ),
            BandKind::Std => (mean - std, mean + std),
            BandKind::None => (mean, mean),
        };
        out.push(Agg {
            x: group[0].0,
            mean,
            lo,
            hi,
            n: ys.len(),
        });
    }
    out
}

/// Mean and sample standard deviation (0 for a single value); NaN for none.
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(name: &str) -> Run {
        Run {
            name: name.into(),
            ..Run::default()
        }
    }

    #[test]
    fn seeds_are_stripped_from_names() {
        assert_eq!(strip_seed("lr=0.1,seed=3"), "lr=0.1");
        assert_eq!(strip_seed("seed=3-lr=0.1"), "lr=0.1");
        assert_eq!(strip_seed("0004-sgdr-seed=12"), "0004-sgdr");
        assert_eq!(strip_seed("a/seed=1/b"), "a/b");
        assert_eq!(strip_seed("myseed=1"), "myseed=1");
        assert_eq!(strip_seed("lr=0.1"), "lr=0.1");
    }

    #[test]
    fn params_are_read_from_names() {
        assert_eq!(
            name_params("0003_max_lr=1e-4-kind=sgdr-seed=2"),
            vec![
                ("max_lr".to_string(), "1e-4".to_string()),
                ("kind".to_string(), "sgdr".to_string()),
                ("seed".to_string(), "2".to_string())
            ]
        );
        assert_eq!(
            name_params("lr=0.01,seed=1"),
            vec![
                ("lr".to_string(), "0.01".to_string()),
                ("seed".to_string(), "1".to_string())
            ]
        );
    }

    #[test]
    fn names_differing_in_seed_form_one_point() {
        let runs = [
            run("lr=0.1,seed=1"),
            run("lr=0.2,seed=1"),
            run("lr=0.1,seed=2"),
            run("lr=0.2,seed=2"),
        ];
        let p = points(&runs, "sweep", false);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].runs, vec![0, 2]);
        assert_eq!(p[1].runs, vec![1, 3]);
        assert_eq!(p[0].label, "lr=0.1");
        assert_eq!(p[0].params, vec![("lr".to_string(), "0.1".to_string())]);
    }

    #[test]
    fn configs_differing_in_seed_form_one_point() {
        let cfg = |lr: f64, seed: u64| -> toml::Table {
            format!("[train]\nseed = {seed}\nthreads = {seed}\n[schedule]\nkind = \"constant\"\nlr = {lr}\n")
                .parse()
                .unwrap()
        };
        let mk = |n: &str, lr, s| Run {
            name: n.into(),
            config: Some(cfg(lr, s)),
            ..Run::default()
        };
        let runs = [mk("a", 0.1, 1), mk("b", 0.1, 2), mk("c", 0.3, 1)];
        let p = points(&runs, "sweep", false);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].runs, vec![0, 1]);
        assert_eq!(p[0].label, "lr=0.1");
        assert_eq!(p[1].label, "lr=0.3");
        assert!(p[1]
            .params
            .contains(&("schedule.kind".into(), "constant".into())));
    }

    #[test]
    fn aggregation_over_seeds() {
        let a = vec![(1.0, 1.0), (2.0, 3.0)];
        let b = vec![(1.0, 3.0), (2.0, f64::NAN), (3.0, 5.0)];
        let g = aggregate(&[a.clone(), b.clone()], BandKind::MinMax);
        assert_eq!(g.len(), 3);
        assert_eq!(
            g[0],
            Agg {
                x: 1.0,
                mean: 2.0,
                lo: 1.0,
                hi: 3.0,
                n: 2
            }
        );
        assert_eq!(g[1].n, 1);
        let s = aggregate(&[a, b], BandKind::Std);
        let sd = 2f64.sqrt();
        assert!((s[0].lo - (2.0 - sd)).abs() < 1e-12 && (s[0].hi - (2.0 + sd)).abs() < 1e-12);
    }
}
