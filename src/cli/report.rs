//! `lrlab plot` and `lrlab report`: figures and reports of run, sweep, range-test and hf-lr folders.

use std::path::PathBuf;

#[derive(clap::Args)]
struct FigureArgs {
    /// Logarithmic y axes for error and loss.
    #[arg(long)]
    log_y: bool,
    /// Band around a mean over seeds: minmax, std (mean ± 1 std) or none.
    #[arg(long, default_value = "minmax", value_parser = ["minmax", "std", "none"])]
    band: String,
}

impl FigureArgs {
    fn options(&self) -> lrlab::report::FigureOptions {
        use lrlab::report::BandKind;
        lrlab::report::FigureOptions {
            log_y: self.log_y,
            band: match self.band.as_str() {
                "std" => BandKind::Std,
                "none" => BandKind::None,
                _ => BandKind::MinMax,
            },
        }
    }
}

#[derive(clap::Args)]
pub struct PlotArgs {
    /// A run, sweep or range-test folder.
    dir: PathBuf,
    #[command(flatten)]
    figure: FigureArgs,
    /// Write the figures here instead of DIR/figures.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct ReportArgs {
    /// A run, sweep or range-test folder.
    dir: PathBuf,
    #[command(flatten)]
    figure: FigureArgs,
}

/// Print written paths, one per line.
fn print_paths(paths: &[PathBuf]) {
    for p in paths {
        println!("{}", p.display());
    }
}

/// `lrlab plot`: draw the figures, print their paths.
pub fn plot(a: PlotArgs) -> anyhow::Result<u8> {
    print_paths(&lrlab::report::plot_dir(
        &a.dir,
        a.out.as_deref(),
        a.figure.options(),
    )?);
    Ok(0)
}

/// `lrlab report`: write report.md and its figures, print their paths.
pub fn report(a: ReportArgs) -> anyhow::Result<u8> {
    print_paths(&lrlab::report::report_dir(&a.dir, a.figure.options())?);
    Ok(0)
}
