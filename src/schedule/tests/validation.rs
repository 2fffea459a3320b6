//! Bad specs are input errors that name the key path, the value and the rule.

use super::*;

/// The exact message for each broken rule (10 epochs of 10 steps unless said).
#[test]
fn each_rule_has_its_message() {
    let cases: &[(&str, &str)] = &[
        // ranges
        ("kind = 'sgdr'\nlr_max = 0.1\nt_0 = 10\nt_mult = 0.5", "schedule.t_mult = 0.5: must be >= 1"),
        ("kind = 'constant'\nlr = 0", "schedule.lr = 0: must be > 0"),
        ("kind = 'constant'\nlr = -0.1", "schedule.lr = -0.1: must be > 0"),
        ("kind = 'constant'\nlr = inf", "schedule.lr = inf: must be a finite number"),
        (
            "kind = 'cosine'\nlr_max = 0.1\nlr_min = 0.2",
            "schedule.lr_min = 0.2: must be <= schedule.lr_max (0.1)",
        ),
        ("kind = 'sgdr'\nlr_max = 0.1\nt_0 = 0", "schedule.t_0 = 0: must be > 0 (epochs)"),
        ("kind = 'sgdr'\nlr_max = 0.1\nt_0 = -2", "schedule.t_0 = -2: must be > 0 (epochs)"),
        (
            "kind = 'sgdr'\nlr_max = 0.1\nt_0 = 0.05",
            "schedule.t_0 = 0.05: a cycle must span at least one step (10 steps per epoch)",
        ),
        ("kind = 'sgdr'\nlr_max = 0.1\nt_0 = 1\ncycle_limit = 0", "schedule.cycle_limit = 0: must be >= 1"),
        ("kind = 'one_cycle'\nmax_lr = 1\npct_start = 1.0", "schedule.pct_start = 1.0: must be in (0, 1)"),
        ("kind = 'one_cycle'\nmax_lr = 1\npct_start = 0", "schedule.pct_start = 0: must be in (0, 1)"),
        ("kind = 'flat_cosine'\nlr = 1\npct_start = 1.5", "schedule.pct_start = 1.5: must be in (0, 1)"),
        (
            "kind = 'clr'\nbase_lr = 0.01\nmax_lr = 0.1\nstep_size = 0",
            "schedule.step_size = 0: must be >= 1 (steps)",
        ),
        (
"kind = 'clr'\nbase_lr = -0.1\nmax_lr = 0.01\nstep_size = 4",
            "schedule.base_lr = -0.1: must be >= 0",
        ),
        (
                        "kind = 'clr'\nbase_lr = 0.1\nmax_lr = 0.01\nstep_size = 4",
            "schedule.max_lr = 0.01: must be >= schedule.base_lr (0.1)",
        ),
        (
            "kind = 'clr'\nbase_lr = 0.01\nmax_lr = 0.1\nstep_size = 4\nmode = 'exp_range'\ngamma = 1.5",
            "schedule.gamma = 1.5: must be in (0, 1]",
        ),
        (
            "kind = 'clr'\nbase_lr = 0.01\nmax_lr = 0.1\nstep_size = 4\nmax_momentum = 1.2",
            "schedule.max_momentum = 1.2: must be in [0, 1)",
        ),
        (
            "kind = 'clr'\nbase_lr = 0.01\nmax_lr = 0.1\nstep_size = 4\nbase_momentum = 0.95",
            "schedule.base_momentum = 0.95: must be <= schedule.max_momentum (0.9)",
        ),
        ("kind = 'exponential'\nlr = 1\ngamma = 0", "schedule.gamma = 0: must be > 0"),
        // milestones
        (
            "kind = 'step'\nlr = 0.1\nmilestones = [2]\nmilestone_steps = [20]",
            "schedule.milestone_steps = [20]: milestones and milestone_steps are exclusive; give one",
        ),
        (
            "kind = 'step'\nlr = 0.1\nmilestone_steps = [2.5]",
            "schedule.milestone_steps = [2.5]: every milestone must be a whole number of steps >= 1",
        ),
        (
            "kind = 'step'\nmilestones = [2, 4]\nvalues = [0.1, 0.01]",
            "schedule.values = [0.1, 0.01]: needs one value more than milestones (2 milestones, so 3 \
             values; found 2)",
        ),
        (
            "kind = 'step'\nmilestones = [2, 2]\nvalues = [0.1, 0.01, 0.001]",
            "schedule.milestones = [2, 2]: must increase strictly with values (each milestone moves \
             to the next value)",
        ),
        (
            "kind = 'step'\nlr = 0.1\nmilestones = [2]\nvalues = [0.1, 0.01]",
            "schedule.lr = 0.1: give either values or lr (with gamma)",
        ),
        (
            "kind = 'cosine'\nlr_max = 0.1\nt_max = 2\nt_max_steps = 20",
            "schedule.t_max_steps = 20: t_max and t_max_steps are exclusive; give one",
        ),
        (
            "kind = 'cosine'\nlr_max = 0.1\nt_max = 0",
            "schedule.t_max = 0: must span at least one step (epochs > 0; 10 steps per epoch)",
        ),
        (
            "kind = 'cosine'\nlr_max = 0.1\nconvention = 'pytorch'\nk_decay = 2",
            "schedule.k_decay = 2: is timm's, and timm holds lr_min past t_max: drop convention = \
             \"pytorch\"",
        ),
        (
            "kind = 'inverse_time'\nlr = 0.1\ndecay_rate = -1",
            "schedule.decay_rate = -1: must be >= 0",
        ),
        (
            "kind = 'inverse_time'\nlr = 0.1\ndecay_rate = 1\ndecay_steps = 4\ndecay_epochs = 1",
            "schedule.decay_epochs = 1: decay_steps and decay_epochs are exclusive; give one",
        ),
        (
            "kind = 'inverse_time'\nlr = 0.1\ndecay_rate = 1\ndecay_steps = 0",
            "schedule.decay_steps = 0: must be >= 1",
        ),
        (
            "kind = 'step'\nlr = 0.1\nmilestones = [5, 2]",
            "schedule.milestones = [5, 2]: must be non-decreasing (a repeated milestone decays twice, \
             as in PyTorch MultiStepLR)",
        ),
        (
            "kind = 'step'\nlr = 0.1\nmilestones = [0, 2]",
            "schedule.milestones = [0, 2]: every milestone must be > 0 (epochs)",
        ),
        (
            "kind = 'sequence'\nmilestones = [3, 3]\nschedules = [{kind = 'constant', lr = 1}, {kind = 'constant', lr = 2}, {kind = 'constant', lr = 3}]",
            "schedule.milestones = [3, 3]: must be strictly increasing",
        ),
        (
            "kind = 'sequence'\nmilestones = [12]\nschedules = [{kind = 'constant', lr = 1}, {kind = 'constant', lr = 2}]",
            "schedule.milestones = [12]: milestone 12 (step 120) must fall inside the run (total_steps = 100)",
        ),
        (
            "kind = 'sequence'\nmilestones = [1, 2]\nschedules = [{kind = 'constant', lr = 1}, {kind = 'constant', lr = 2}]",
            "schedule.milestones = [1, 2]: needs one milestone fewer than there are schedules (2 schedules)",
        ),
        // choices, types, keys
        (
            "kind = 'clr'\nbase_lr = 0.01\nmax_lr = 0.1\nstep_size = 4\nmode = 'triangle'",
            "schedule.mode = \"triangle\": must be one of \"triangular\", \"triangular2\", \"exp_range\"",
        ),
        (
            "kind = 'one_cycle'\nmax_lr = 1\nanneal_strategy = 'cosine'",
            "schedule.anneal_strategy = \"cosine\": must be one of \"cos\", \"linear\"",
        ),
        ("kind = 'constant'\nlr = '0.1'", "schedule.lr = \"0.1\": must be a number"),
        (
            "kind = 'clr'\nbase_lr = 0.01\nmax_lr = 0.1\nstep_size = 2.5",
            "schedule.step_size = 2.5: must be an integer",
        ),
        (
            "kind = 'one_cycle'\nmax_lr = 1\nthree_phase = 1",
            "schedule.three_phase = 1: must be true or false",
        ),
        ("kind = 'sgdr'\nlr_max = 0.1", "schedule.t_0: missing; kind = \"sgdr\" requires it"),
        (
            "kind = 'sgdrr'\nlr_max = 0.1",
            "schedule.kind = \"sgdrr\": must be one of \"constant\", \"step\", \"exponential\", \"linear\", \
             \"cosine\", \"sgdr\", \"clr\", \"one_cycle\", \"polynomial\", \"tanh\", \"flat_cosine\", \"wsd\", \
             \"sequence\", \"lr_range\", \"factor\", \"product\", \"plateau\", \"inverse_time\"; \
             did you mean sgdr?",
        ),
        (
            "kind = 'cosine'\ntype = 'cosine'\nlr_max = 1",
            "schedule.type = \"cosine\": the family is given twice (kind and type are aliases; use one)",
        ),
        // a misspelt key is named, with the closest valid key, before any missing key
        (
            "kind = 'cosine'\nlr_maxx = 0.1",
            "schedule.lr_maxx = 0.1: unknown key for kind = \"cosine\"; did you mean lr_max? (known keys: \
             convention, family, k_decay, kind, lr_max, lr_min, t_max, t_max_steps, type, warmup_epochs, \
             warmup_mode, warmup_start_lr, warmup_steps)",
        ),
        (
            "kind = 'sgdr'\nlr_max = 0.1\nt0 = 10",
            "schedule.t0 = 10: unknown key for kind = \"sgdr\"; did you mean t_0? (known keys: convention, cycle_limit, \
             family, k_decay, kind, lr_max, lr_min, restart_decay, t_0, t_mult, type, warmup_epochs, warmup_mode, \
             warmup_start_lr, warmup_steps)",
        ),
        (
            "kind = 'constant'\nlr = 0.1\nlr_max = 1",
            "schedule.lr_max = 1: unknown key for kind = \"constant\" (known keys: family, kind, lr, type, \
             warmup_epochs, warmup_mode, warmup_start_lr, warmup_steps)",
        ),
        // keys that would have no effect
        (
            "kind = 'clr'\nbase_lr = 0.01\nmax_lr = 0.1\nstep_size = 4\ngamma = 0.99",
            "schedule.gamma = 0.99: only used with mode = \"exp_range\" (here only gamma = 1.0, which \
             changes nothing, is accepted)",
        ),
        (
            "kind = 'clr'\nbase_lr = 0.01\nmax_lr = 0.1\nstep_size = 4\ncycle_momentum = false\nbase_momentum = 0.7",
            "schedule.base_momentum = 0.7: has no effect with cycle_momentum = false (here only \
             base_momentum = 0.8, which changes nothing, is accepted)",
        ),
        (
            "kind = 'constant'\nlr = 1\nwarmup_mode = 'overlay'",
            "schedule.warmup_mode = \"overlay\": has no effect without warmup_steps or warmup_epochs \
             (here only warmup_mode = \"prefix\", which changes nothing, is accepted)",
        ),
        // one cycle
        (
            "kind = 'one_cycle'\nmax_lr = 1\npct_start = 0.01",
            "schedule.pct_start = 0.01: pct_start * total_steps must be > 1 so that the warmup phase is not \
             empty (total_steps = 100)",
        ),
        (
            "kind = 'one_cycle'\nmax_lr = 1\nthree_phase = true\npct_start = 0.6",
            "schedule.pct_start = 0.6: must be < 0.5 with three_phase = true",
        ),
        (
            "kind = 'one_cycle'\nconvention = 'fastai'\nmax_lr = 1\nfinal_div_factor = 1e4",
            "schedule.final_div_factor = 10000.0: use div_final with convention = \"fastai\" (final LR = \
             max_lr / div_final)",
        ),
        (
            "kind = 'one_cycle'\nconvention = 'smith'\nmax_lr = 1\nanneal_strategy = 'cos'",
            "schedule.anneal_strategy = \"cos\": the smith convention is linear throughout (here only \
             anneal_strategy = \"linear\", which changes nothing, is accepted)",
        ),
        (
            "kind = 'one_cycle'\nconvention = 'smith'\nmax_lr = 1\nannihilation_pct = 0.005",
            "schedule.annihilation_pct = 0.005: the annihilation must span more than one step: \
             annihilation_pct * total_steps must be > 1 (total_steps = 100), or annihilation_pct = 0",
        ),
        (
            "kind = 'one_cycle'\nmax_lr = 1\nannihilation_pct = 0.1",
            "schedule.annihilation_pct = 0.1: only used with convention = \"smith\"",
        ),
        // warmup
        (
            "kind = 'cosine'\nlr_max = 1\nwarmup_steps = 100",
            "schedule.warmup_steps = 100: the warmup (100 steps) must be shorter than the run (100 steps): \
             the schedule runs after it (warmup_mode = \"prefix\")",
        ),
        (
            "kind = 'cosine'\nlr_max = 1\nwarmup_steps = 10\nwarmup_epochs = 1",
            "schedule.warmup_epochs = 1: warmup_steps and warmup_epochs are exclusive; give one",
        ),
        (
            "kind = 'cosine'\nlr_max = 1\nwarmup_steps = 10\nwarmup_start_lr = -1",
            "schedule.warmup_start_lr = -1: must be >= 0",
        ),
        // wsd, range
        (
            "kind = 'wsd'\nlr = 1\ndecay_steps = 200",
            "schedule.decay_steps = 200: the decay must last more than 0 and at most total_steps = 100 steps \
             (got 200 steps)",
        ),
        (
            "kind = 'wsd'\nlr = 1\ndecay_steps = 20\ndecay_pct = 0.1",
            "schedule.decay_pct = 0.1: decay_steps and decay_pct are exclusive; give one",
        ),
        (
            "kind = 'lr_range'\nstart_lr = 1\nend_lr = 0.1",
            "schedule.end_lr = 0.1: must be > schedule.start_lr (1)",
        ),
        ("kind = 'tanh'\nlr_max = 1\nlb = 3\nub = 1", "schedule.lb = 3: must be < schedule.ub (1)"),
    ];
    for (spec, want) in cases {
        assert_eq!(error(spec, 10, 10), *want, "spec:\n{spec}");
    }
}

#[test]
fn sequence_children_are_reported_by_path() {
    let spec = r#"
kind = "sequence"
milestones = [2]
[[schedules]]
kind = "constant"
lr = 0.1
[[schedules]]
kind = "cosine"
lr_max = -1
"#;
    assert_eq!(
        error(spec, 10, 10),
        "schedule.schedules[1].lr_max = -1: must be > 0"
    );
    let spec = "kind = 'sequence'\nmilestones = [2]\nschedules = [{ kind = 'constant', lr = 1, t_0 = 3 }, { kind = 'constant', lr = 1 }]";
    assert!(error(spec, 10, 10)
        .starts_with("schedule.schedules[0].t_0 = 3: unknown key for kind = \"constant\""));
    let spec = "kind = 'sequence'\nmilestones = [2]\nschedules = [{ lr = 1 }, { kind = 'constant', lr = 1 }]";
    assert!(error(spec, 10, 10)
        .starts_with("schedule.schedules[0].kind: missing; the schedule family, one of"));
}

#[test]
fn zero_lengths_are_refused() {
    let e = RunLength::from_epochs(0, 10).unwrap_err();
    assert!(crate::is_input_error(&e));
    assert_eq!(e.to_string(), "epochs = 0: must be >= 1");
    assert_eq!(
        RunLength::from_epochs(3, 0).unwrap_err().to_string(),
        "steps_per_epoch = 0: must be >= 1"
    );
    let table: toml::Table = "kind = 'constant'\nlr = 1".parse().unwrap();
    for (len, want) in [
        (
            RunLength {
                steps_per_epoch: 0,
                total_steps: 10,
            },
            "run length: steps_per_epoch = 0: must be >= 1",
        ),
        (
            RunLength {
                steps_per_epoch: 10,
                total_steps: 0,
            },
            "run length: total_steps = 0: must be >= 1",
        ),
    ] {
        let e = Schedule::from_table(&table, len).unwrap_err();
        assert!(crate::is_input_error(&e));
        assert_eq!(e.to_string(), want);
    }
    let e = error("kind = 'lr_range'\nstart_lr = 1e-5\nend_lr = 1", 1, 1);
    assert_eq!(
        e,
        "schedule: kind = \"lr_range\" needs a run of at least 2 steps (total_steps = 1)"
    );
}

#[test]
fn accepted_edge_cases() {
    // A repeated milestone is a multiset, as in PyTorch; milestones past the run do nothing.
    sched("kind = 'step'\nlr = 0.1\nmilestones = [2, 2, 50]", 10, 10);
    // t_mult exactly 1, lr_min equal to lr_max, a warmup that fills an overlay run.
    sched(
        "kind = 'sgdr'\nlr_max = 0.1\nlr_min = 0.1\nt_0 = 1\nt_mult = 1",
        10,
        10,
    );
    sched(
        "kind = 'constant'\nlr = 1\nwarmup_steps = 100\nwarmup_mode = 'overlay'",
        10,
        10,
    );
    // Integers where floats are expected.
    sched("kind = 'cosine'\nlr_max = 1\nlr_min = 0", 10, 10);
    // Keys spelt out at the value in effect anyway (as a config ported from PyTorch has them):
    // accepted, and the schedule is the one without them.
    for (with, without) in [
        (
            "kind = 'clr'\nbase_lr = 0.01\nmax_lr = 0.1\nstep_size = 4\nmode = 'triangular'\ngamma = 1.0",
            "kind = 'clr'\nbase_lr = 0.01\nmax_lr = 0.1\nstep_size = 4\nmode = 'triangular'",
        ),
        (
            "kind = 'clr'\nbase_lr = 0.01\nmax_lr = 0.1\nstep_size = 4\nmode = 'triangular2'\ngamma = 1",
            "kind = 'clr'\nbase_lr = 0.01\nmax_lr = 0.1\nstep_size = 4\nmode = 'triangular2'",
        ),
        (
            "kind = 'clr'\nbase_lr = 0.01\nmax_lr = 0.1\nstep_size = 4\ncycle_momentum = false\n\
             base_momentum = 0.8\nmax_momentum = 0.9",
            "kind = 'clr'\nbase_lr = 0.01\nmax_lr = 0.1\nstep_size = 4\ncycle_momentum = false",
        ),
        (
            "kind = 'one_cycle'\nmax_lr = 1\ncycle_momentum = false\nbase_momentum = 0.85\nmax_momentum = 0.95",
            "kind = 'one_cycle'\nmax_lr = 1\ncycle_momentum = false",
        ),
        (
            "kind = 'one_cycle'\nconvention = 'smith'\nmax_lr = 1\nanneal_strategy = 'linear'",
            "kind = 'one_cycle'\nconvention = 'smith'\nmax_lr = 1",
        ),
        (
            "kind = 'wsd'\nlr = 1\ndecay_shape = 'linear'\ndecay_power = 0.5\ndecay_ratio = 0.1",
            "kind = 'wsd'\nlr = 1\ndecay_shape = 'linear'",
        ),
        ("kind = 'constant'\nlr = 1\nwarmup_mode = 'prefix'", "kind = 'constant'\nlr = 1"),
    ] {
        let (a, b) = (sched(with, 10, 10), sched(without, 10, 10));
        for k in 0..100 {
            assert_eq!(a.lr(k), b.lr(k), "{with}: step {k}");
            assert_eq!(a.momentum(k), b.momentum(k), "{with}: step {k}");
        }
    }
}

#[test]
fn factor_and_product_reject_bad_keys_by_path() {
    let e = error("kind = 'factor'\nlr = 0.1\nstart_factor = 0", 2, 5);
    assert!(
        e.contains("schedule.start_factor") && e.contains("must be > 0"),
        "{e}"
    );
    let e = error(
        "kind = 'factor'\nlr = 0.1\nstart_factor = 0.5\ntotal_iters = 0",
        2,
        5,
    );
    assert!(
        e.contains("schedule.total_iters") && e.contains(">= 1"),
        "{e}"
    );
    let e = error(
        "kind = 'factor'\nlr = 0.1\nstart_factor = 0.5\ninterval = 'batch'",
        2,
        5,
    );
    assert!(
        e.contains("schedule.interval") && e.contains("\"epoch\""),
        "{e}"
    );
    let e = error(
        "kind = 'product'\nschedules = [{ kind = 'constant', lr = 1 }]",
        2,
        5,
    );
    assert!(
        e.contains("schedule.schedules") && e.contains("at least two"),
        "{e}"
    );
    let e = error(
        "kind = 'product'\nschedules = [{ kind = 'constant', lr = 1 }, { kind = 'cosine', lr_max = -1 }]",
        2,
        5,
    );
    assert!(e.contains("schedule.schedules[1].lr_max"), "{e}");
    // ConstantLR's factor form holds a zero factor (PyTorch allows 0 <= factor <= 1).
    let s = sched(
        "kind = 'factor'\nlr = 0.1\nmode = 'constant'\nstart_factor = 0\ntotal_iters = 2",
        1,
        4,
    );
    assert_eq!((s.lr(1), s.lr(2)), (0.0, 0.1));
    // A product takes momentum from its first child that sets one.
    let s = sched(
        "kind = 'product'\nschedules = [{ kind = 'factor', lr = 1, start_factor = 0.5, total_iters = 2 }, \
         { kind = 'one_cycle', max_lr = 1, base_momentum = 0.8, max_momentum = 0.9 }]",
        2,
        5,
    );
    assert_eq!(s.momentum(0), Some(0.9));
}
