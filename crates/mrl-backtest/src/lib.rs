//! # mrl-backtest
//!
//! Walk-forward backtests of RL² trading agents without look-ahead, trading metrics
//! annualised by the bar interval of the data, baselines, and reports.
//!
//! The held-out test period (by default the last 30% of a series) is cut into evaluation
//! windows that step forward back to back. Before each window the agent's hidden state is
//! rebuilt from zero by adaptation episodes on the bars just before it, in time order,
//! exactly as the earlier episodes of an RL² trial (Duan et al. 2016); the window is the
//! trial's last episode and only its returns count. Buy-and-hold, flat, random, four trader
//! rules ([`TraderRule`]: time-series momentum, MA crossover, MACD, RSI mean reversion), an
//! MLP and (on synthetic AR(1) data) the oracle trade the same windows at the same cost.
//!
//! ## Central types
//!
//! - [`WalkForwardConfig`]: test start, window and adaptation lengths, cost, greedy or
//!   sampled actions, seed; [`plan_windows`] turns it into [`Window`]s.
//! - [`backtest`] / [`backtest_market`] with [`Policies`]: run everything, get a
//!   [`Backtest`] holding the [`BacktestReport`] (serde; one entry per policy with its
//!   [`Metrics`], adaptation curve and Sharpe-difference interval) and per-step
//!   [`StepRecord`]s.
//! - [`write_report`]: `report.json`, `equity.csv` and (feature `plot`) PNG/SVG charts.
//! - [`evaluate_markets`]: one backtest per series, summarised in a [`MarketsSummary`].
//! - [`Metrics`]: Sharpe, Sortino, drawdown, CAGR, … with bootstrap intervals.
//!
//! ## Example
//!
//! ```
//! use mrl_agent::{AgentConfig, Policy};
//! use mrl_backtest::{Policies, TestStart, WalkForwardConfig, backtest};
//! use mrl_data::{Bar, BarSeries, HOUR_MS};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let bars: Vec<Bar> = (0..400)
//!     .map(|i| {
//!         let close = 100.0 * (1.0 + 0.05 * (i as f64 * 0.05).sin());
//!         Bar { timestamp: i * HOUR_MS, open: close, high: close, low: close, close, volume: 1.0 }
//!     })
//!     .collect();
//! let series = BarSeries::new(&bars)?;
//! let agent = Policy::new(&AgentConfig { hidden: 16, ..Default::default() }, &candle_core::Device::Cpu, 7)?;
//! let config = WalkForwardConfig {
//!     test_start: TestStart::Index(300),
//!     window_len: 50,
//!     adaptation_len: 50,
//!     ..Default::default()
//! };
//! let bt = backtest(&series, &Policies::new(&agent), &config)?;
//! assert_eq!(bt.windows.len(), 2); // decision bars 300..399
//! let json = serde_json::to_value(&bt.report)?;
//! assert!(json["buy_and_hold"]["sharpe"].is_number());
//! assert_eq!(bt.report.policies["flat"].metrics.trades, 0);
//! # Ok(())
//! # }
//! ```
//!
//! ## Feature flags
//!
//! - `plot`: charts through plotters (text in DejaVu Sans from the `dejavu` crate).
//! - `cuda`: candle's CUDA backend for the agent.

mod adaptation;
mod backtest;
mod config;
mod crossed;
mod engine;
mod error;
mod files;
mod markets;
#[cfg(feature = "plot")]
mod plot;
mod report;
mod rules;
#[cfg(feature = "plot")]
mod study_plot;
mod verdict;
mod windows;

mod metrics;
pub use metrics::{
    DISPERSION_ABS_FLOOR, DISPERSION_REL_FLOOR, Metrics, SharpeDiffCi, booked_returns,
    bootstrap_mean_sharpe_diff_ci, bootstrap_sharpe_diff_ci, cagr, calmar, downside_deviation,
    exposure, is_negligible, max_drawdown, max_drawdown_design, mean_sharpe, profit_factor,
    ruin_step, sharpe, sharpe_ddof1, sortino, sortino_losing_std, total_return, total_turnover,
    trade_count, turnover, volatility, win_rate,
};

pub use adaptation::{AdaptationSummary, recovered_share, summarize_adaptation};
pub use backtest::{Backtest, Policies, PolicyRecords, backtest, backtest_market};
pub use config::{ActionMode, BootstrapConfig, TestStart, WalkForwardConfig};
pub use crossed::{DiffInterval, crossed_bootstrap_ci, mean_defined};
pub use engine::{
    Baseline, PolicyRun, StepRecord, adaptation_curve, book_test_period, episode_return,
    run_baseline, run_policy,
};
pub use error::{Error, Result};
pub use files::{equity_csv, write_report};
pub use markets::{
    MarketFigures, MarketMeans, MarketRow, MarketsSummary, SkippedSeries, evaluate_markets,
    evaluate_named_markets, market_labels, unique_labels,
};
pub use report::{
    BacktestReport, InSample, POLICY_ORDER, PolicyReport, Ruin, SeedSpread, Span, Spread,
    TrainedAsset, mean_metrics,
};
pub use rules::{DEFAULT_PERIODS_PER_YEAR, TraderRule, position_toward};
#[cfg(feature = "plot")]
pub use study_plot::{BandLine, Panel, write_band_figure};
pub use verdict::{AgentVerdict, FIXED_BASELINES, MarketsVerdict, Standing, Verdict};
pub use windows::{Window, plan_windows};
