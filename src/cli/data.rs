//! `mrl data synth | check | fetch`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use mrl::data::{ProcessKind, SyntheticConfig};

use super::print;

/// Market-data subcommands.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Generate a synthetic market from a seeded process and write it (CSV or Parquet).
    Synth(SynthArgs),
    /// Validate a bar file and print a summary (rows, timestamp unit, span, interval,
    /// calendar, gaps, periods per year).
    Check(CheckArgs),
    /// Fetch klines from Bybit's v5 API and write them, with a progress bar.
    Fetch(FetchArgs),
}

/// Arguments of `mrl data synth`.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// The process: gbm, ar1, regime, jump.
    #[arg(long, default_value = "gbm")]
    kind: ProcessKind,
    /// Number of bars.
    #[arg(long, default_value_t = 5000)]
    bars: usize,
    /// Seed of the generator (same seed, same bars).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output file (.csv or .parquet).
    #[arg(long)]
    out: PathBuf,
}

/// Arguments of `mrl data check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The file to check (.csv or .parquet).
    file: PathBuf,
}

/// Arguments of `mrl data fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Symbol, e.g. BTCUSDT.
    #[arg(long)]
    symbol: String,
    /// Kline interval: 1 3 5 15 30 60 120 240 360 720 D W M.
    #[arg(long, default_value = "60")]
    interval: String,
    /// Range start: RFC 3339 (2024-01-01T00:00:00Z) or milliseconds since the epoch.
    #[arg(long)]
    start: String,
    /// Range end (inclusive), same formats.
    #[arg(long)]
    end: String,
    /// Output file (.csv or .parquet), written atomically.
    #[arg(long)]
    out: PathBuf,
    /// Product category: spot or linear.
    #[arg(long, default_value = "spot")]
    category: String,
    /// API root (a local mock server in tests).
    #[arg(long)]
    base_url: Option<String>,
}

/// Runs a data subcommand.
pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Synth(args) => synth(args),
        DataCommand::Check(args) => check(args),
        DataCommand::Fetch(args) => fetch(args),
    }
}

fn synth(args: SynthArgs) -> anyhow::Result<()> {
    check_bar_file_name(&args.out)?;
    let config = SyntheticConfig::new(args.kind.default_process());
    let generated = config
        .generate(args.bars, args.seed)
        .with_context(|| format!("generating {} bars of {}", args.bars, args.kind))?;
    mrl::data::write_bars(&generated.series, &args.out)?;
    print(format!(
        "wrote {} bars of {} (seed {}) to {}",
        generated.series.len(),
        args.kind,
        args.seed,
        args.out.display()
    ));
    Ok(())
}

fn check(args: CheckArgs) -> anyhow::Result<()> {
    let file = mrl::data::read_bar_file(&args.file)?;
    let summary = mrl::data::SeriesSummary::of_file(&file);
    print(format!("{}: ok", args.file.display()));
    print(summary);
    Ok(())
}

/// Refuses an output name that [`mrl::data::write_bars`] cannot write, before any work.
fn check_bar_file_name(path: &std::path::Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        mrl::data::is_bar_file(path),
        "--out {}: expected .csv, .parquet or .pq",
        path.display()
    );
    Ok(())
}

/// Parses an ISO 8601 / RFC 3339 time or an integer since the epoch, in milliseconds; the
/// integer's unit (seconds, milliseconds, microseconds, nanoseconds) is detected from its
/// magnitude as in bar files ([`mrl::data::TimeUnit::detect`]).
pub fn parse_time_ms(text: &str) -> anyhow::Result<i64> {
    let text = text.trim();
    if let Ok(value) = text.parse::<i64>() {
        let unit = mrl::data::TimeUnit::detect(value).with_context(|| {
            format!(
                "time {value} fits no unit: as seconds, milliseconds, microseconds or \
                 nanoseconds since the epoch it is no date between 1970-03-26 and 2200"
            )
        })?;
        return Ok(unit.to_millis(value));
    }
    mrl::data::parse_text_time(text).with_context(|| {
        format!(
            "time {text:?} is neither RFC 3339 (2024-01-01T00:00:00Z) nor an integer since the \
             epoch; accepted: {}",
            mrl::data::TEXT_FORMS
        )
    })
}

#[cfg(feature = "bybit")]
fn fetch(args: FetchArgs) -> anyhow::Result<()> {
    use mrl::data::bybit::{BlockingBybitClient, BybitConfig, Category, KlineInterval};

    check_bar_file_name(&args.out)?;
    let start_ms = parse_time_ms(&args.start)?;
    let end_ms = parse_time_ms(&args.end)?;
    anyhow::ensure!(
        start_ms <= end_ms,
        "--start ({start_ms}) is after --end ({end_ms})"
    );
    let interval: KlineInterval = args.interval.parse()?;
    let category: Category = args.category.parse()?;
    let mut config = BybitConfig {
        category,
        ..BybitConfig::default()
    };
    if let Some(url) = args.base_url {
        config.base_url = url;
    }
    let mut client = BlockingBybitClient::new(config)?;
    let bar = indicatif::ProgressBar::new(1000);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg} [{bar:40}] {percent}% ({elapsed})",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_message(format!("{} {}", args.symbol, args.interval));
    let series =
        client.fetch_klines_with_progress(&args.symbol, interval, start_ms, end_ms, |progress| {
            bar.set_position((progress.fraction() * 1000.0) as u64)
        });
    bar.finish_and_clear();
    let series = series.with_context(|| format!("fetching {} from Bybit", args.symbol))?;
    let series = series.with_symbol(args.symbol.clone());
    mrl::data::write_bars(&series, &args.out)?;
    print(format!(
        "wrote {} bars of {} to {}",
        series.len(),
        args.symbol,
        args.out.display()
    ));
    print(mrl::data::SeriesSummary::of(&series));
    Ok(())
}

#[cfg(not(feature = "bybit"))]
fn fetch(_args: FetchArgs) -> anyhow::Result<()> {
    anyhow::bail!("this build has no Bybit client: rebuild with `--features bybit` (on by default)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_rfc3339_or_millis() {
        assert_eq!(parse_time_ms("1700000000000").unwrap(), 1_700_000_000_000);
        assert_eq!(
            parse_time_ms("2024-01-01T00:00:00Z").unwrap(),
            1_704_067_200_000
        );
        assert_eq!(
            parse_time_ms("2024-01-01T01:00:00+01:00").unwrap(),
            1_704_067_200_000
        );
        assert!(parse_time_ms("yesterday").is_err());
        // Seconds and microseconds are not read as milliseconds.
        assert_eq!(parse_time_ms("1700000000").unwrap(), 1_700_000_000_000);
        assert_eq!(
            parse_time_ms("1700000000000000").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(parse_time_ms("2024-01-01").unwrap(), 1_704_067_200_000);
        let err = parse_time_ms("3600000").unwrap_err().to_string();
        assert!(err.contains("fits no unit"), "{err}");
    }
}
