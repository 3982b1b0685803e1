//! `mrl features FILE --out OUT.csv`.

use std::io::Write;
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
    write_atomic(&args.out, text.as_bytes())?;
    print(format!(
        "wrote {} rows x {} features to {}",
        kept.n_rows(),
        mrl::features::FEATURE_NAMES.len(),
        args.out.display()
    ));
    Ok(())
}

/// Writes through a temporary file in the same directory, then renames over `path`.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path.file_name().context("output path has no file name")?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mut file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.sync_all()
        .with_context(|| format!("syncing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming onto {}", path.display()))?;
    Ok(())
}
