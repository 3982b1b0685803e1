//! `mrl features FILE --out OUT.csv`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::print;

/// Arguments of `mrl features`.
#[derive(Debug, Args)]
pub struct FeaturesArgs {
    /// The bar file (.csv or .parquet).
    file: PathBuf,
    /// Output CSV: `timestamp` then the 11 feature columns, warm-up rows dropped.
    #[arg(long)]
    out: PathBuf,
}

/// Computes and writes the features.
pub fn run(args: FeaturesArgs) -> anyhow::Result<()> {
    let is_csv = args
        .out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    anyhow::ensure!(
        is_csv,
        "--out {}: features are written as CSV, name it *.csv",
        args.out.display()
    );
    let series = mrl::data::read_bars(&args.file)?;
    let matrix = mrl::features::compute_series_features(&series)
        .with_context(|| format!("computing features of {}", args.file.display()))?;
    let kept = matrix.kept();
    if kept.is_empty() {
        // A header-only output would look like success: say how many bars are needed.
        let too_short = mrl::data::Error::TooShort {
            len: series.len(),
            needed: mrl::features::WARMUP + 1,
            what: "one feature row after the warm-up bars",
        };
        return Err(too_short.in_file(&args.file).into());
    }
    let timestamps = series.timestamps();
    let mut text = String::with_capacity(kept.n_rows() * 200);
    text.push_str("timestamp");
    for name in mrl::features::FEATURE_NAMES {
        text.push(',');
        text.push_str(name);
    }
    text.push('\n');
    for i in 0..kept.n_rows() {
        text.push_str(&timestamps[kept.first_bar() + i].to_string());
        for value in kept.row(i) {
            text.push(',');
            // `{}` on f64 is the shortest text that round-trips.
            text.push_str(&value.to_string());
        }
        text.push('\n');
    }
    mrl::data::write_file_atomic(&args.out, text.as_bytes())?;
    print(format!(
        "wrote {} rows x {} features to {}",
        kept.n_rows(),
        mrl::features::FEATURE_NAMES.len(),
        args.out.display()
    ));
    Ok(())
}
