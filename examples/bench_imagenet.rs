//! Throughput of lrlab's ImageNet training fetch path (read, decode, random-resized-crop,
//! flip), to compare with `bench/imagenet_torchvision.py` on the same folder.
//!
//! Usage: `cargo run --release --example bench_imagenet -- DIR [N] [THREADS] [SIZE] [REPEAT]`
//! (defaults 1000 images, 1 thread, 224 px, best of 3 passes).

use anyhow::{Context, Result};
use std::path::PathBuf;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(
        args.first()
            .context("usage: bench_imagenet DIR [N] [THREADS] [SIZE] [REPEAT]")?,
    );
    let arg = |i: usize, default: usize| -> Result<usize> {
        args.get(i).map_or(Ok(default), |s| {
            s.parse().with_context(|| format!("bad number {s}"))
        })
    };
    let (n, threads, size, repeat) = (arg(1, 1000)?, arg(2, 1)?, arg(3, 224)?, arg(4, 3)?);
    let mut best = 0f64;
    for _ in 0..repeat.max(1) {
        best = best.max(lrlab::data::imagenet::bench_decode(&dir, size, n, threads)?);
    }
    println!("lrlab zune-jpeg pipeline: {best:.1} images/s ({threads} thread(s))");
    Ok(())
}
