//! A trained agent as a trading strategy: walk-forward backtest of one series, with charts.
//!
//! Loads the agent of an `mrl train` run, takes the trading settings of that run (episode
//! length, episodes per trial, costs, action space), and trades the latest 30% of a series
//! window by window: before every evaluation window the agent adapts on the bars just
//! before it, its memory carried into the window. Buy-and-hold, flat and random trade the
//! same windows. The report (report.json, equity.csv, equity/drawdown/adaptation charts)
//! goes to `--report`.
//!
//! ```text
//! mrl train --config configs/synthetic-regimes.toml --out runs/regimes
//! cargo run --release --example trading_strategy -- --checkpoint runs/regimes
//! ```

#![allow(clippy::print_stdout)] // An example is a binary: it prints its results.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use mrl::backtest::{Policies, TestStart, WalkForwardConfig};
use mrl::data::{BarSeries, DomainRandomization, ProcessKind};
use mrl::ppo::TrainConfig;

/// Walk-forward backtest of a trained agent on one series.
#[derive(Debug, Parser)]
struct Args {
    /// A run directory of `mrl train` (or its checkpoint/ directory).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// The series to trade (.csv or .parquet); default: a synthetic regime market.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Seed of the synthetic market, the random baseline and the bootstrap.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Report directory.
    #[arg(long, default_value = "runs/example-trading-strategy/report")]
    report: PathBuf,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("warn").init();
    let args = Args::parse();
    let Some(run) = args.checkpoint else {
        anyhow::bail!(
            "give --checkpoint RUN_DIR; make one with \
             `mrl train --config configs/synthetic-regimes.toml --out runs/regimes`"
        );
    };
    let policy = mrl::ppo::load_policy(
        &mrl::ppo::resolve_checkpoint(&run),
        &candle_core::Device::Cpu,
    )
    .with_context(|| format!("loading the agent of {}", run.display()))?;
    // The run's config.toml, next to checkpoint/ (also when `run` names checkpoint/).
    let config_file = [
        run.join(mrl::ppo::CONFIG_FILE),
        run.join("..").join(mrl::ppo::CONFIG_FILE),
    ]
    .into_iter()
    .find(|p| p.exists())
    .with_context(|| format!("{} holds no {}", run.display(), mrl::ppo::CONFIG_FILE))?;
    let train = TrainConfig::load(&config_file)
        .with_context(|| format!("reading {}", config_file.display()))?;

    let series: BarSeries = match &args.data {
        Some(path) => mrl::data::read_bars(path)?,
        None => {
            let regimes = DomainRandomization {
                kinds: vec![ProcessKind::Regime],
                ..DomainRandomization::default()
            };
            let market = regimes.generate(5000, args.seed)?.series;
            market.with_symbol(format!("synthetic-regime-{}", args.seed))
        }
    };

    // The trial of training, replayed: adaptation episodes, then the evaluation window.
    let config = WalkForwardConfig {
        test_start: TestStart::HeldOutFraction(0.3),
        seed: args.seed,
        ..mrl::walk_forward_config(&train)
    };
    let result = mrl::backtest::backtest(&series, &Policies::new(&policy), &config)
        .context("walk-forward backtest")?;
    mrl::backtest::write_report(&result.report, &result.records, &args.report)?;

    println!(
        "{}: {} bars, {} evaluation windows of {} bars after {} adaptation episodes, {} bps costs",
        series.symbol().unwrap_or("series"),
        series.len(),
        result.windows.len(),
        config.window_len,
        config.adaptation_episodes,
        config.cost_rate * 1e4
    );
    println!("{}", result.report);
    println!(
        "report: {} (report.json, equity.csv, charts)",
        args.report.display()
    );
    Ok(())
}
