//! Loads bar files (CSV or Parquet) and prints a summary of each: rows, span, interval, gaps.
//!
//! ```text
//! cargo run -p mrl-data --example check_data -- data/BTCUSDT_1h.csv data/AAPL_1d.csv
//! ```
//!
//! Exits with status 1 if any file fails to load, after reporting every file.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line example reports on the terminal

use std::path::PathBuf;
use std::process::ExitCode;

use mrl_data::{SeriesSummary, read_bars};

fn main() -> ExitCode {
    let paths: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if paths.is_empty() {
        eprintln!("usage: check_data FILE...");
        return ExitCode::from(2);
    }
    let mut failed = 0;
    for path in &paths {
        match read_bars(path) {
            Ok(series) => println!("{}\n{}\n", path.display(), SeriesSummary::of(&series)),
            Err(err) => {
                eprintln!("error: {err}");
                failed += 1;
            }
        }
    }
    println!("{} of {} files loaded", paths.len() - failed, paths.len());
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
