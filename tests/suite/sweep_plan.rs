//! Sweep specs: expansion (grid × zip × seeds, table-valued axes), deterministic names and
//! ids, sanitised names, the frozen manifest, devices, the dry-run listing, and bad specs
//! (an input error naming the spec and the key, exit status 2, nothing written).

use crate::common;
use common as fx;
use common::OutputWithin;

use fx::{lrlab, s, text, write, BASE};
use lrlab::config::RunConfig;
use lrlab::sweep::devices::{check_config_devices, concurrency, parse_devices, slots, Devices};
use lrlab::sweep::manifest::{freeze, Manifest};
use lrlab::sweep::plan::{self, config_id, Plan};
use lrlab::util::{hex_sha256, sanitize, MAX_NAME};
use std::collections::BTreeSet;
use std::path::Path;

fn plan_of(dir: &Path, spec: &str) -> anyhow::Result<Plan> {
    write(dir, "base.toml", BASE);
    plan::load(&write(dir, "spec.toml", spec))
}

fn config(p: &plan::PlannedRun) -> RunConfig {
    RunConfig::from_table(p.config.parse().unwrap()).unwrap()
}

const GRID: &str = r#"
base = "base.toml"
seeds = [0, 1]

[grid]
"optim.weight_decay" = [1e-4, 5e-4]

[grid.schedule]
step = { kind = "step", lr = 0.1, milestones = [1], gamma = 0.1 }
sgdr = { kind = "sgdr", lr_max = 0.05, t_0 = 1, t_mult = 2 }

[[zip]]
"optim.momentum" = [0.9, 0.95]
"optim.nesterov" = [false, true]
"#;

#[test]
fn grid_zip_and_seeds_expand_in_a_fixed_order() {
    let dir = tempfile::tempdir().unwrap();
    let p = plan_of(dir.path(), GRID).unwrap();
    assert_eq!(
        p.varied,
        [
            "optim.momentum",
            "optim.nesterov",
            "optim.weight_decay",
            "schedule",
            "seed"
        ]
    );
    assert_eq!(p.runs.len(), 2 * 2 * 2 * 2);
    // Seeds outermost, then the grid axes by key, then the zip group; named variants in
    // alphabetical order.
    assert_eq!(
        p.runs[0].name,
        "optim.momentum=0.9,optim.nesterov=false,optim.weight_decay=0.0001,schedule=sgdr,seed=0"
    );
    assert_eq!(
        p.runs[1].name,
        "optim.momentum=0.95,optim.nesterov=true,optim.weight_decay=0.0001,schedule=sgdr,seed=0"
    );
    assert_eq!(
        p.runs[2].name,
        "optim.momentum=0.9,optim.nesterov=false,optim.weight_decay=0.0001,schedule=step,seed=0"
    );
    assert!(p.runs[15]
        .name
        .ends_with("optim.weight_decay=0.0005,schedule=step,seed=1"));

    let mut points = BTreeSet::new();
    for (i, r) in p.runs.iter().enumerate() {
        assert_eq!(r.index, i);
        let c = config(r);
        let l = |k: &str| r.labels.iter().find(|(key, _)| key == k).unwrap().1.clone();
        // The resolved config holds the run's values ...
        assert_eq!(c.train.seed.to_string(), l("seed"));
        assert_eq!(
            format!("{:?}", c.optim.weight_decay),
            l("optim.weight_decay")
        );
        assert_eq!(format!("{:?}", c.optim.momentum), l("optim.momentum"));
        // ... the zip pairs by position ...
        assert_eq!(c.optim.nesterov, c.optim.momentum == 0.95);
        // ... and a table-valued axis replaces the whole table.
        let want: toml::Table = match l("schedule").as_str() {
            "sgdr" => "kind = \"sgdr\"\nlr_max = 0.05\nt_0 = 1\nt_mult = 2"
                .parse()
                .unwrap(),
            _ => "kind = \"step\"\nlr = 0.1\nmilestones = [1]\ngamma = 0.1"
                .parse()
                .unwrap(),
        };
        assert_eq!(c.schedule, want);
        // The base's other values stay.
        assert_eq!(c.train.epochs, 2);
        assert_eq!(c.data.size, 512);
        points.insert(r.labels.clone());
    }
    assert_eq!(points.len(), 16, "every combination once");
}

#[test]
fn zip_lists_may_repeat_values_when_the_pairs_differ() {
    let dir = tempfile::tempdir().unwrap();
    let p = plan_of(
        dir.path(),
        r#"
base = "base.toml"
[[zip]]
"data.size" = [256, 256, 512]
"train.epochs" = [1, 2, 2]
"#,
    )
    .unwrap();
    let names: Vec<_> = p.runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "data.size=256,train.epochs=1",
            "data.size=256,train.epochs=2",
            "data.size=512,train.epochs=2"
        ]
    );
}

#[test]
fn zip_pairs_named_tables_with_other_keys() {
    let dir = tempfile::tempdir().unwrap();
    let p = plan_of(
        dir.path(),
        r#"
base = "base.toml"
[[zip]]
schedule = [
  { name = "short", kind = "constant", lr = 0.1 },
  { name = "long", kind = "step", lr = 0.1, milestones = [2], gamma = 0.1 },
]
"train.epochs" = [1, 3]
"#,
    )
    .unwrap();
    let names: Vec<_> = p.runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "schedule=short,train.epochs=1",
            "schedule=long,train.epochs=3"
        ]
    );
    let long = config(&p.runs[1]);
    assert_eq!(long.train.epochs, 3);
    // `name` labels the variant and is not part of the schedule table.
    let want: toml::Table = "kind = \"step\"\nlr = 0.1\nmilestones = [2]\ngamma = 0.1"
        .parse()
        .unwrap();
    assert_eq!(long.schedule, want);
    let e = error_of(
        "base = \"base.toml\"\n[[zip]]\nschedule = [{ kind = \"constant\", lr = 0.1 }]\n\
         \"train.epochs\" = [1]",
    );
    assert!(e.contains("has no name; give it a `name"), "{e}");
}

#[test]
fn names_and_ids_are_deterministic_and_ids_hash_the_resolved_config() {
    let dir = tempfile::tempdir().unwrap();
    let a = plan_of(dir.path(), GRID).unwrap();
    let b = plan_of(dir.path(), GRID).unwrap();
    for (x, y) in a.runs.iter().zip(&b.runs) {
        assert_eq!((&x.name, &x.id, &x.config), (&y.name, &y.id, &y.config));
        assert_eq!(x.id, hex_sha256(x.config.as_bytes())[..16]);
        assert_eq!(x.id, config_id(&config(x).to_toml().unwrap()));
    }
    let ids: BTreeSet<_> = a.runs.iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids.len(), a.runs.len());

    // The same runs written differently (defaults spelled out, inline base) get the same ids.
    let inline = r#"
seeds = [0, 1]
[base.data]
dataset = "synthetic"
shape = [1, 28, 28]
size = 512
test_size = 128
[base.model]
arch = "lenet"
[base.optim]
kind = "sgd"
dampening = 0.0
[base.train]
epochs = 2
batch_size = 64
threads = 1
[base.schedule]
kind = "constant"
lr = 0.01
[grid]
"optim.weight_decay" = [1e-4, 5e-4]
[grid.schedule]
step = { kind = "step", lr = 0.1, milestones = [1], gamma = 0.1 }
sgdr = { kind = "sgdr", lr_max = 0.05, t_0 = 1, t_mult = 2 }
[[zip]]
"optim.momentum" = [0.9, 0.95]
"optim.nesterov" = [false, true]
"#;
    let c = plan::load(&write(dir.path(), "inline.toml", inline)).unwrap();
    let ids_c: Vec<_> = c.runs.iter().map(|r| (&r.name, &r.id)).collect();
    let ids_a: Vec<_> = a.runs.iter().map(|r| (&r.name, &r.id)).collect();
    assert_eq!(ids_a, ids_c);
}

#[test]
fn shallow_keys_apply_before_deeper_ones() {
    let dir = tempfile::tempdir().unwrap();
    let p = plan_of(
        dir.path(),
        r#"
base = "base.toml"
[grid]
"schedule.lr_max" = [0.1, 0.2]
[grid.schedule]
cos = { kind = "cosine", lr_max = 9.0 }
sgdr = { kind = "sgdr", lr_max = 9.0, t_0 = 1 }
"#,
    )
    .unwrap();
    assert_eq!(p.runs.len(), 4);
    for r in &p.runs {
        let c = config(r);
        let kind = c.schedule["kind"].as_str().unwrap();
        let lr = c.schedule["lr_max"].as_float().unwrap();
        let variant = if kind == "cosine" { "cos" } else { "sgdr" };
        assert_eq!(r.name, format!("schedule={variant},schedule.lr_max={lr:?}"));
        assert_ne!(lr, 9.0, "the deeper key is applied after the variant");
    }
}

#[test]
fn run_names_are_safe_folder_names() {
    for raw in [
        "schedule=../../etc",
        ".hidden=1",
        "-x=1",
        "a/b=c d",
        "a..b=1",
    ] {
        let n = sanitize(raw);
        assert!(!n.contains('/') && !n.contains(".."), "{raw} -> {n}");
        assert!(!n.starts_with('.') && !n.starts_with('-'), "{raw} -> {n}");
        assert!(
            n.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._,=+-@".contains(c)),
            "{raw} -> {n}"
        );
    }
    assert_eq!(sanitize("a/b=c d"), "a_b=c_d");
    // Letters outside ASCII are transliterated, not replaced: the folder stays readable.
    assert_eq!(sanitize("expérience_sgdr"), "experience_sgdr");
    assert_eq!(sanitize("Lernraten-Studie_äöü"), "Lernraten-Studie_aou");
    assert_eq!(sanitize("学习率"), "Xue_Xi_Lu");
    // Long names keep their start and end in a hash of the whole name.
    let long_a = format!("schedule={}", "x".repeat(300));
    let long_b = format!("schedule={}y", "x".repeat(299));
    let (a, b) = (sanitize(&long_a), sanitize(&long_b));
    assert_eq!(a.len(), MAX_NAME);
    assert_eq!(&a[..20], &long_a[..20]);
    assert!(a.ends_with(&hex_sha256(long_a.as_bytes())[..10]));
    assert_ne!(a, b);

    // Through a spec: variant names with slashes and dots become safe folders.
    let dir = tempfile::tempdir().unwrap();
    let p = plan_of(
        dir.path(),
        r#"
base = "base.toml"
[grid.schedule]
"../up" = { kind = "constant", lr = 0.1 }
".dot/x" = { kind = "constant", lr = 0.2 }
"#,
    )
    .unwrap();
    let names: Vec<_> = p.runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["schedule=.__up", "schedule=.dot_x"]);
}

/// The error for a spec (with the base file next to it), as text; it must be an input error
/// that starts with the spec's path.
fn error_of(spec: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let e = plan_of(dir.path(), spec).expect_err(spec);
    assert!(lrlab::is_input_error(&e), "not an input error: {e:#}");
    let msg = format!("{e:#}");
    let path = dir.path().join("spec.toml");
    assert!(msg.starts_with(s(&path)), "{msg}");
    msg
}

#[test]
fn bad_specs_are_input_errors_naming_the_key() {
    let cases: &[(&str, &[&str])] = &[
        (
            "base = \"base.toml\"\nfoo = 1\n[grid]\n\"optim.momentum\" = [0.9]",
            &["unknown key `foo`"],
        ),
        (
            "base = \"base.toml\"\n[grid]\n\"optim.weight_decya\" = [1e-4]",
            &["axis `optim.weight_decya` names no key", "weight_decya"],
        ),
        (
            "base = \"base.toml\"\n[grid]\n\"optimizer.lr\" = [1]",
            &["unknown table `optimizer`", "optimizer.lr"],
        ),
        ("base = \"base.toml\"", &["empty grid"]),
        ("base = \"base.toml\"\n[grid]", &["empty grid"]),
        (
            "base = \"base.toml\"\n[grid]\n\"optim.momentum\" = []",
            &["axis `optim.momentum` has no values"],
        ),
        (
            "base = \"base.toml\"\n[grid]\noptim.weight_decay = [1e-4]",
            &["\"optim.weight_decay\" = [...]", "quote it"],
        ),
        (
            "base = \"base.toml\"\n[grid]\n\"model.arch\" = [\"lenet\", \"lenet\"]",
            &["same label `lenet`"],
        ),
        (
            "base = \"base.toml\"\n[grid.schedule]\n\"a/b\" = { kind = \"constant\", lr = 0.1 }\n\
             a_b = { kind = \"constant\", lr = 0.2 }",
            &["same folder name `schedule=a_b`"],
        ),
        (
            "base = \"base.toml\"\n[grid.schedule]\na = { kind = \"constant\", lr = 0.1 }\n\
             b = { kind = \"constant\", lr = 0.1 }",
            &["`schedule=a` and `schedule=b` have the same resolved config"],
        ),
        (
            "base = \"base.toml\"\n[[zip]]\n\"optim.momentum\" = [0.9, 0.95]\n\
             \"optim.nesterov\" = [true]",
            &["zip[0]", "different lengths"],
        ),
        (
            "base = \"base.toml\"\n[grid]\n\"train.batch_size\" = [64, 0]",
            &["run `train.batch_size=0`", "train.batch_size = 0"],
        ),
        (
            "base = \"base.toml\"\n[grid]\n\"schedule.lr_maxx\" = [0.1]",
            &["run `schedule.lr_maxx=0.1`", "schedule.lr_maxx"],
        ),
        (
            "base = \"base.toml\"\nseeds = [0]\n[grid]\n\"train.seed\" = [1, 2]",
            &["`train.seed` and `seeds` both set the seed"],
        ),
        (
            "base = \"base.toml\"\nseeds = [0, -1]",
            &["seeds = [0, -1]", "integers >= 0"],
        ),
        (
            "base = \"nope.toml\"\nseeds = [0]",
            &["base = \"nope.toml\"", "cannot read"],
        ),
        (
            "base = \"base.toml\"\nseeds = [0]\n[target]\ntest_acc = 93",
            &["target.test_acc = 93", "(0, 1]"],
        ),
        (
            "base = \"base.toml\"\nseeds = [0]\n[target]\nacc = 0.9",
            &["target: unknown key `acc`"],
        ),
        (
            "base = \"base.toml\"\nseeds = [0]\n[target.point]\n\"schedule=sgdr\" = 0.9",
            &["target.point.\"schedule=sgdr\" matches no run", "seed"],
        ),
        (
            "base = \"base.toml\"\nseeds = [0]\n[target.point]\n\"sgdr\" = 0.9",
            &["target.point.\"sgdr\"", "param=value"],
        ),
        (
            "base = \"base.toml\"\nseeds = [0]\n[report]\npapers = 1",
            &["unknown key report.papers", "did you mean paper?"],
        ),
        (
            "base = \"base.toml\"\nseeds = [0, 1]\n[report.paper]\n\"seed=3\" = { test_acc = 90 }",
            &["report.paper.\"seed=3\" matches no run", "seed"],
        ),
        (
            "base = \"base.toml\"\nseeds = [0]\n[report.paper]\n\"seed=0\" = { test_acc = 140 }",
            &["report.paper.\"seed=0\"", "percentage"],
        ),
        // The points the report reads are checked before any run: the reference, each claim
        // side (exactly one point) and a claim's epoch.
        (
            "base = \"base.toml\"\nseeds = [0, 1]\n[grid]\n\"optim.weight_decay\" = [1e-4, 5e-4]\n\
             [report]\nreference = \"weight_decay=9\"",
            &[
                "report.reference = \"weight_decay=9\" matches no grid point",
                "optim.weight_decay=0.0001; optim.weight_decay=0.0005",
            ],
        ),
        (
            "base = \"base.toml\"\nseeds = [0]\n[grid]\n\"optim.weight_decay\" = [1e-4, 5e-4]\n\
             \"optim.momentum\" = [0.8, 0.9]\n\
             [[report.claim]]\ntext = \"wd\"\na = \"weight_decay=0.0001\"\nb = \"weight_decay=0.0005, momentum=0.9\"",
            &[
                "report.claim #1 (\"wd\"): a = \"weight_decay=0.0001\" matches 2 grid points",
                "name one",
            ],
        ),
        (
            "base = \"base.toml\"\nseeds = [0]\n[grid]\n\"optim.weight_decay\" = [1e-4, 5e-4]\n\
             [[report.claim]]\ntext = \"wd\"\na = \"weight_decay=0.0001\"\nb = \"weight_decay=5e-4\"\nepoch = 10",
            &["report.claim #1 (\"wd\"): epoch = 10, but run", "has 2 epochs"],
        ),
    ];
    for (spec, want) in cases {
        let msg = error_of(spec);
        for w in *want {
            assert!(
                msg.contains(w),
                "spec:\n{spec}\nmessage: {msg}\nmissing: {w}"
            );
        }
    }
}

#[test]
fn targets_resolve_per_run_and_report_tables_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let p = plan_of(
        dir.path(),
        r#"
base = "base.toml"
seeds = [0, 1]
[grid]
"optim.weight_decay" = [1e-4, 5e-4]
[target]
test_acc = 0.8
[target.point]
"optim.weight_decay=5e-4, seed=1" = 0.95
"weight_decay=0.0005" = 0.9
[report]
title = "Weight decay"
[report.paper]
"optim.weight_decay=5e-4" = { test_error = 7.5, source = "Table 2" }
"#,
    )
    .unwrap();
    assert_eq!(p.spec.report.title.as_deref(), Some("Weight decay"));
    assert_eq!(p.spec.report.paper.len(), 1);
    for r in &p.runs {
        let (wd, seed) = (&r.labels[0].1, &r.labels[1].1);
        // The first matching point wins; a key may be a dotted key's last part.
        let want = match (wd.as_str(), seed.as_str()) {
            ("0.0001", _) => 0.8,
            ("0.0005", "1") => 0.95,
            _ => 0.9,
        };
        assert_eq!(r.target_acc, Some(want), "{}", r.name);
    }
}

#[test]
fn frozen_manifest_keeps_indices_when_the_grid_grows() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = dir.path().join("sweep");
    let small = plan_of(
        dir.path(),
        "base = \"base.toml\"\n[grid]\n\"optim.weight_decay\" = [1e-4, 5e-4]",
    )
    .unwrap();
    let m1 = freeze(&sweep, &small).unwrap();
    assert_eq!(Manifest::load(&sweep).unwrap(), m1);
    for r in &m1.runs {
        let cfg = std::fs::read_to_string(sweep.join(&r.name).join("config.toml")).unwrap();
        assert_eq!(
            cfg, r.config,
            "config.toml is written before the run starts"
        );
    }
    let (h, rows) = fx::read_csv(&sweep.join("runs.csv"));
    assert_eq!(
        h,
        ["index", "name", "id", "optim.weight_decay", "overrides"]
    );
    assert_eq!(rows[1][3], "0.0005");
    assert_eq!(rows[1][4], "optim.weight_decay=0.0005");
    assert_eq!(
        std::fs::read_to_string(sweep.join("sweep.toml")).unwrap(),
        small.spec.text
    );

    // A value added in front: the old runs keep their index, the new one is appended.
    let grown = plan_of(
        dir.path(),
        "base = \"base.toml\"\n[grid]\n\"optim.weight_decay\" = [0.0, 1e-4, 5e-4]",
    )
    .unwrap();
    assert_eq!(grown.runs[0].name, "optim.weight_decay=0.0");
    let m2 = freeze(&sweep, &grown).unwrap();
    let names: Vec<_> = m2.runs.iter().map(|r| (r.index, r.name.as_str())).collect();
    assert_eq!(
        names,
        [
            (0, "optim.weight_decay=0.0001"),
            (1, "optim.weight_decay=0.0005"),
            (2, "optim.weight_decay=0.0")
        ]
    );
    assert_eq!(m2.runs[0].id, m1.runs[0].id);

    // A config written differently (as an older lrlab would, without a default) is the
    // same run: it keeps its id.
    let path = sweep.join("manifest.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let old_text = json["runs"][0]["config"]
        .as_str()
        .unwrap()
        .replace("dampening = 0.0\n", "");
    assert_ne!(old_text, m2.runs[0].config);
    json["runs"][0]["config"] = old_text.into();
    json["runs"][0]["id"] = "0123456789abcdef".into();
    std::fs::write(&path, json.to_string()).unwrap();
    let m3 = freeze(&sweep, &grown).unwrap();
    assert_eq!(m3.runs[0].id, "0123456789abcdef");
    assert_eq!(m3.runs[0].config, m2.runs[0].config);

    // A run whose config changed (another base) cannot reuse the folder.
    write(
        dir.path(),
        "base.toml",
        &BASE.replace("epochs = 2", "epochs = 3"),
    );
    let changed = plan::load(&dir.path().join("spec.toml")).unwrap();
    let e = freeze(&sweep, &changed).unwrap_err();
    assert!(lrlab::is_input_error(&e));
    assert!(
        format!("{e:#}").contains("now has a different config"),
        "{e:#}"
    );
}

#[test]
fn devices_are_checked_and_pinned() {
    assert_eq!(parse_devices("cpu", 0).unwrap(), Devices::Cpu);
    assert_eq!(parse_devices("cuda", 2).unwrap(), Devices::Cuda(vec![0, 1]));
    assert_eq!(
        parse_devices("cuda:1,cuda:0", 2).unwrap(),
        Devices::Cuda(vec![1, 0])
    );
    let msg = |spec: &str, gpus: usize| {
        let e = parse_devices(spec, gpus).unwrap_err();
        assert!(lrlab::is_input_error(&e));
        e.to_string()
    };
    assert!(msg("cuda:3", 1).contains("cuda:3 does not exist; this machine has 1 CUDA device"));
    assert!(msg("cuda:0", 0).contains("no CUDA device"));
    assert!(msg("cuda", 0).contains("no CUDA device"));
    assert!(msg("gpu0", 2).contains("`gpu0` is not a device"));
    assert!(msg("cuda:0,cuda:0", 2).contains("listed twice"));

    // A GPU named in the run configs must exist (unless --devices overrides it).
    let runs = |d: &str| {
        vec![
            ("a".to_string(), lrlab::config::DeviceSpec::Cpu),
            ("b".to_string(), d.parse().unwrap()),
        ]
    };
    check_config_devices("spec.toml", &runs("cuda:1"), 2).unwrap();
    check_config_devices("spec.toml", &runs("auto"), 0).unwrap();
    let e = check_config_devices("spec.toml", &runs("cuda:3"), 1).unwrap_err();
    assert!(lrlab::is_input_error(&e));
    assert!(
        e.to_string()
            .starts_with("spec.toml: run `b`: train.device = \"cuda:3\": this machine has 1 CUDA"),
        "{e}"
    );
    assert!(check_config_devices("spec.toml", &runs("cuda"), 0).is_err());

    // Two runs per GPU, interleaved; ids through the runner's own CUDA_VISIBLE_DEVICES.
    let pool = slots(&Devices::Cuda(vec![0, 1]), 2, 0, Some("6,7"));
    let ids: Vec<_> = pool.iter().map(|s| s.cuda_visible.as_str()).collect();
    assert_eq!(ids, ["6", "7", "6", "7"]);
    assert!(pool.iter().all(|s| s.device.to_string() == "cuda:0"));
    let cpu = slots(&Devices::Cpu, 1, 3, None);
    assert_eq!(cpu.len(), 3);
    assert!(cpu
        .iter()
        .all(|s| s.cuda_visible.is_empty() && s.device.to_string() == "cpu"));

    // CPU: threads x runs <= cores.
    assert_eq!(concurrency(4, Some(4), 8, 0, true).0, 4);
    assert_eq!(concurrency(4, Some(4), 8, 0, true).1, 2);
    let (n, _, note) = concurrency(4, Some(4), 8, 4, true);
    assert_eq!(n, 2);
    assert!(note.unwrap().contains("train.threads = 4"));
    assert_eq!(concurrency(2, None, 16, 0, false), (2, 8, None));
}

#[test]
fn dry_run_lists_the_runs_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = plan_of(dir.path(), GRID).unwrap();
    let out = dir.path().join("sweep");
    let o = lrlab(&[
        "sweep",
        s(&dir.path().join("spec.toml")),
        "--out",
        s(&out),
        "--dry-run",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8(o.stdout).unwrap();
    let mut lines = stdout.lines();
    assert!(lines.next().unwrap().contains("16 runs"));
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "index",
            "id",
            "name",
            "optim.momentum",
            "optim.nesterov",
            "optim.weight_decay",
            "schedule",
            "seed"
        ]
    );
    for (line, r) in lines.zip(&p.runs) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let mut want = vec![r.index.to_string(), r.id.clone(), r.name.clone()];
        want.extend(r.labels.iter().map(|(_, l)| l.clone()));
        assert_eq!(f, want);
    }
    assert!(!out.exists(), "--dry-run wrote {}", out.display());
}

/// `--dry-run` makes the real run's decisions (the issue: a grown grid listed other indices
/// than the real run used; a changed base and `--devices cuda` without a GPU passed the dry
/// run and failed the real one).
#[test]
fn dry_run_makes_every_decision_of_the_real_run() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = dir.path().join("sweep");
    let small = "base = \"base.toml\"\n[grid]\n\"optim.weight_decay\" = [1e-4, 5e-4]";
    freeze(&sweep, &plan_of(dir.path(), small).unwrap()).unwrap();
    let spec = write(
        dir.path(),
        "spec.toml",
        "base = \"base.toml\"\n[grid]\n\"optim.weight_decay\" = [0.0, 1e-4, 5e-4]",
    );
    let dry = |extra: &[&str]| {
        let mut args = vec!["sweep", s(&spec), "--out", s(&sweep), "--dry-run"];
        args.extend(extra);
        lrlab(&args)
    };
    let o = dry(&[]);
    assert!(o.status.success(), "{}", text(&o));
    let listed: Vec<(String, String)> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .skip(2)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[2].to_string())
        })
        .collect();
    // What the real run then freezes.
    let before = std::fs::read_to_string(sweep.join("manifest.json")).unwrap();
    assert_eq!(
        before,
        std::fs::read_to_string(sweep.join("manifest.json")).unwrap(),
        "the dry run wrote nothing"
    );
    let real = freeze(&sweep, &plan::load(&spec).unwrap()).unwrap();
    let used: Vec<(String, String)> = real
        .runs
        .iter()
        .map(|r| (r.index.to_string(), r.name.clone()))
        .collect();
    assert_eq!(listed, used);
    assert_eq!(used[2], ("2".into(), "optim.weight_decay=0.0".into()));
    // A changed base over the existing folder: refused by the dry run as by the real one.
    let base = std::fs::read_to_string(dir.path().join("base.toml")).unwrap();
    write(
        dir.path(),
        "base.toml",
        &base.replace("batch_size = 64", "batch_size = 32"),
    );
    let o = dry(&[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("different config"), "{}", text(&o));
    write(dir.path(), "base.toml", &base);
    // Devices the machine does not have.
    if !tch::Cuda::is_available() {
        let o = dry(&["--devices", "cuda"]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains("no CUDA device"), "{}", text(&o));
    }
}

#[test]
fn bad_input_exits_2_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "base.toml", BASE);
    let bad = write(
        dir.path(),
        "bad.toml",
        "base = \"base.toml\"\n[grid]\n\"optim.weight_decya\" = [1e-4]",
    );
    let out = dir.path().join("sweep");
    let o = lrlab(&["sweep", s(&bad), "--out", s(&out)]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(s(&bad)) && err.contains("optim.weight_decya"),
        "{err}"
    );
    assert!(!out.exists());

    // A device this machine does not have.
    let good = write(
        dir.path(),
        "good.toml",
        "base = \"base.toml\"\n[grid]\n\"optim.weight_decay\" = [1e-4]",
    );
    let o = lrlab(&["sweep", s(&good), "--out", s(&out), "--devices", "cuda:99"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--devices cuda:99"));
    assert!(!out.exists());
    // ... or that a run config names.
    let gpu = write(
        dir.path(),
        "gpu.toml",
        "base = \"base.toml\"\n[grid]\n\"train.device\" = [\"cuda:99\"]",
    );
    let o = lrlab(&["sweep", s(&gpu), "--out", s(&out)]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(s(&gpu)) && err.contains("train.device = \"cuda:99\""),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn the_example_sweep_plans() {
    let spec =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("runs/examples/fashion_schedules_sweep.toml");
    let p = plan::load(&spec).unwrap();
    assert_eq!(p.varied, ["schedule", "seed"]);
    assert_eq!(p.runs.len(), 6);
    assert!(p.runs.iter().all(|r| r.target_acc == Some(0.85)));
}

/// `name` as a path: exactly one ordinary component (no `..`, no root, no separator).
fn one_component(name: &str) -> bool {
    let mut c = Path::new(name).components();
    matches!(c.next(), Some(std::path::Component::Normal(_))) && c.next().is_none()
}

#[test]
fn no_name_from_a_spec_a_manifest_or_a_config_escapes_its_folder() {
    let long = "z".repeat(5000);
    for raw in [
        "",
        ".",
        "..",
        "/",
        "/etc/passwd",
        "a\0b",
        "..\\..",
        "é/../x",
        "-",
        &long,
        "CON",
    ] {
        let n = sanitize(raw);
        assert!(one_component(&n) && !n.contains('\0'), "{raw:?} -> {n:?}");
        assert!(
            n.len() <= MAX_NAME && n != "." && n != "..",
            "{raw:?} -> {n:?}"
        );
        assert_eq!(sanitize(&n), n, "sanitize is idempotent");
    }

    // Variant names from a spec: absolute, parent, NUL, very long.
    let dir = tempfile::tempdir().unwrap();
    let spec = format!(
        r#"
name = "../../escaped"
base = "base.toml"
[grid.schedule]
"/abs" = {{ kind = "constant", lr = 0.1 }}
".." = {{ kind = "constant", lr = 0.2 }}
"a\u0000b" = {{ kind = "constant", lr = 0.3 }}
"{long}" = {{ kind = "constant", lr = 0.4 }}
"#
    );
    let p = plan_of(dir.path(), &spec).unwrap();
    let sweep = dir.path().join("sw");
    let m = freeze(&sweep, &p).unwrap();
    assert_eq!(m.runs.len(), 4);
    for r in &m.runs {
        assert!(one_component(&r.name), "{:?}", r.name);
        assert_eq!(r.dir(&sweep).parent(), Some(sweep.as_path()));
    }
    // The default sweep folder comes from the name: out/<one component>.
    let o = std::process::Command::new(fx::bin())
        .args(["sweep", "spec.toml", "--dry-run"])
        .current_dir(dir.path())
        .output_within(common::DEADLINE_S)
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let first = String::from_utf8_lossy(&o.stdout)
        .lines()
        .next()
        .unwrap()
        .to_string();
    let folder = first.rsplit("folder ").next().unwrap();
    let rest = folder.strip_prefix("out/").expect("under out/");
    assert!(one_component(rest), "{first}");

    // An edited manifest whose run name or id points elsewhere is refused (exit 2), and
    // nothing is created outside the sweep folder.
    let original = std::fs::read_to_string(sweep.join("manifest.json")).unwrap();
    let name0 = &m.runs[0].name;
    let id0 = &m.runs[0].id;
    for (from, to) in [
        (
            format!("\"name\": \"{name0}\""),
            "\"name\": \"../outside\"".to_string(),
        ),
        (
            format!("\"name\": \"{name0}\""),
            "\"name\": \"/tmp/abs\"".to_string(),
        ),
        (
            format!("\"id\": \"{id0}\""),
            "\"id\": \"../../x\"".to_string(),
        ),
    ] {
        assert!(original.contains(&from), "{from}");
        std::fs::write(
            sweep.join("manifest.json"),
            original.replacen(&from, &to, 1),
        )
        .unwrap();
        let e = Manifest::load(&sweep).unwrap_err();
        assert!(lrlab::is_input_error(&e), "{e:#}");
        assert!(format!("{e:#}").contains("manifest.json"), "{e:#}");
        let o = lrlab(&["sweep", "status", s(&sweep)]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    }
    assert!(!dir.path().join("outside").exists());

    // `lrlab train` without --out: out/<config stem>, one component whatever the file name.
    for f in ["..toml", "...toml", "a b.toml", ".toml"] {
        let out = lrlab::train::setup::default_out(Path::new(f), "");
        let rest = out.strip_prefix("out").unwrap();
        assert!(
            one_component(rest.to_str().unwrap()),
            "{f} -> {}",
            out.display()
        );
    }
}
