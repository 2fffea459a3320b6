//! `lrlab find-lr`: the LR range test on its own.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct FindLrArgs {
    /// Run config (its data, model, optimizer and seed are used; its schedule is not).
    config: PathBuf,
    /// Override a key of the run config: --set data.train_subset=5000.
    #[arg(long = "set", value_name = "TABLE.KEY=VALUE")]
    set: Vec<String>,
    /// First learning rate [default: the config's lr_find.start_lr, else 1e-7].
    #[arg(long)]
    start_lr: Option<f64>,
    /// Last learning rate, reached at the last step [default: 10].
    #[arg(long)]
    end_lr: Option<f64>,
    /// Number of steps [default: 100].
    #[arg(long, conflicts_with = "epochs")]
    steps: Option<u64>,
    /// Length in epochs instead of steps.
    #[arg(long)]
    epochs: Option<f64>,
    /// Ramp: exp (geometric) or linear (Smith's).
    #[arg(long)]
    mode: Option<lrlab::config::RampMode>,
    /// What to watch: loss, or held-out accuracy (Smith's original test).
    #[arg(long)]
    metric: Option<lrlab::config::Metric>,
    /// Smoothing factor of the loss moving average [default: 0.98].
    #[arg(long)]
    beta: Option<f64>,
    /// Stop when the smoothed loss exceeds this many times its best; 0 = never [default: 4].
    #[arg(long)]
    stop_factor: Option<f64>,
    /// lr_finder (end_lr reached at the last step; a non-finite loss stops the test) or
    /// fastai (fastai's LRFinder: lr_k = start·(end/start)^(k/steps), on past a NaN)
    /// [default: the config's lr_find.convention, lr_finder].
    #[arg(long)]
    convention: Option<lrlab::config::FindConvention>,
    /// Output folder [default: out/<config stem>-lr_find].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also draw the curve with the suggestions marked (figures/lr_find.svg and .png).
    #[arg(long)]
    plot: bool,
}

/// `lrlab find-lr`: run the range test, write its files, print the suggestions.
pub fn run(a: FindLrArgs) -> anyhow::Result<u8> {
    let cfg = lrlab::config::RunConfig::load(&a.config, &a.set)?;
    // The config's own [lr_find] first, so its errors name its keys.
    cfg.lr_find
        .validate()
        .map_err(|e| lrlab::input_error(format!("{}: {e}", a.config.display())))?;
    let mut fc = cfg.lr_find.clone();
    if let Some(x) = a.start_lr {
        fc.start_lr = x;
    }
    if let Some(x) = a.end_lr {
        fc.end_lr = x;
    }
    if let Some(x) = a.steps {
        fc.steps = x;
    }
    if let Some(x) = a.epochs {
        fc.steps = 0;
        fc.epochs = x;
    }
    if let Some(x) = a.mode {
        fc.mode = x;
    }
    if let Some(x) = a.metric {
        fc.metric = x;
    }
    if let Some(x) = a.beta {
        fc.beta = x;
    }
    if let Some(x) = a.stop_factor {
        fc.stop_factor = x;
    }
    if let Some(x) = a.convention {
        fc.convention = x;
    }
    // What is wrong now came from a flag: name the flag.
    fc.validate().map_err(|e| {
        let mut msg = e.to_string();
        for key in [
            "start_lr",
            "end_lr",
            "steps",
            "epochs",
            "mode",
            "beta",
            "stop_factor",
            "convention",
        ] {
            msg = msg.replace(
                &format!("lr_find.{key}"),
                &format!("--{}", key.replace('_', "-")),
            );
        }
        lrlab::input_error(msg)
    })?;
    let out = a
        .out
        .unwrap_or_else(|| lrlab::train::setup::default_out(&a.config, "-lr_find"));
    let r = lrlab::lr_find::range_test(&cfg, &fc, true)?;
    lrlab::lr_find::write(&out, &fc, &r, None)?;
    if let Some(why) = &r.stopped {
        eprintln!("stopped early: {why}");
    }
    println!("rule,lr");
    for s in &r.suggestions {
        println!("{},{}", s.rule, s.lr);
    }
    // A doubtful value is said where it is printed, with the fix.
    let doubts: Vec<String> = if r.no_edge {
        r.doubt(fc.rule.name(), &fc).into_iter().collect()
    } else {
        r.suggestions
            .iter()
            .filter_map(|s| r.doubt(&s.rule, &fc))
            .collect()
    };
    for d in doubts {
        eprintln!("warning: {d}");
    }
    if a.plot {
        let opts = lrlab::report::FigureOptions::default();
        for p in lrlab::report::plot_dir(&out, None, opts)? {
            eprintln!("{}", p.display());
        }
    }
    eprintln!(
        "{} steps; curve and suggestions in {}",
        r.lr.len(),
        out.display()
    );
    Ok(0)
}
