//! `lrlab hf-lr`: the Hessian-free estimates along the first steps of a run.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct HfLrArgs {
    /// Run config (data, model, optimizer, seed and schedule are used).
    config: PathBuf,
    /// Override a key of the run config: --set train.batch_size=256.
    #[arg(long = "set", value_name = "TABLE.KEY=VALUE")]
    set: Vec<String>,
    /// Steps to train (the authors' curve: iterations 1-297 of their run).
    #[arg(long, default_value_t = 300)]
    steps: u64,
    /// A window every this many steps, from step 1 on; 1 = the authors' curve.
    #[arg(long, default_value_t = 1)]
    every: u64,
    /// Spacing of a window's three iterates [default: the config's train.hf_lr_stride, 1];
    /// 10 with --every 10 = the authors' L2TermComputation4.py.
    #[arg(long)]
    stride: Option<u64>,
    /// Sum over the trainable parameters only, or also log the sum over every Caffe blob
    /// (batch norm's accumulators) as the authors' script did [default: the config's
    /// train.hf_lr_blobs, trainable].
    #[arg(long, value_parser = ["trainable", "caffe"])]
    blobs: Option<String>,
    /// Output folder [default: out/<config stem>-hf_lr].
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Run the estimate, write its folder and figure, print the estimates.
pub fn run(a: HfLrArgs) -> anyhow::Result<u8> {
    let mut set = a.set.clone();
    if let Some(k) = a.stride {
        set.push(format!("train.hf_lr_stride={k}"));
    }
    if let Some(b) = &a.blobs {
        set.push(format!("train.hf_lr_blobs=\"{b}\""));
    }
    let cfg = lrlab::config::RunConfig::load(&a.config, &set)?;
    let out = a
        .out
        .unwrap_or_else(|| lrlab::train::setup::default_out(&a.config, "-hf_lr"));
    let r = lrlab::lr_find::hessian_free::run(&cfg, a.steps, a.every, true)?;
    lrlab::lr_find::hessian_free::write(&out, &cfg, a.every, &r)?;
    if let Some(why) = &r.stopped {
        eprintln!("stopped early: {why}");
    }
    let paths = lrlab::report::plot_dir(&out, None, lrlab::report::FigureOptions::default())?;
    let caffe = cfg.train.hf_lr_blobs == lrlab::config::HfBlobs::Caffe;
    println!(
        "{}",
        lrlab::train::hf_lr::header(caffe).replacen(",epoch", "", 1)
    );
    for e in &r.estimates {
        let mut f = e.fields(r.steps_per_epoch);
        f.remove(1);
        println!("{}", f.join(","));
    }
    for p in paths {
        eprintln!("{}", p.display());
    }
    eprintln!(
        "{} steps, {} windows; estimates in {}",
        r.steps.len(),
        r.estimates.len(),
        out.display()
    );
    Ok(0)
}
