//! Market data for mrl: validated OHLCV bars and the ways to get them.
//!
//! - [`Bar`] and [`BarSeries`]: bars validated at construction (time strictly increasing,
//!   prices finite and > 0, `high ≥ max(open, close)`, `low ≤ min(open, close)`, volume ≥ 0);
//!   gaps are reported by [`BarSeries::gaps`], never filled.
//! - [`Interval`] detection and the [`Calendar`] of a series ([`BarSeries::calendar`]): bar
//!   spacing and session pattern (24/7 or weekday sessions), and from them
//!   [`BarSeries::periods_per_year`], the annualisation factor (8766 for 24/7 hourly bars, 252
//!   for weekday daily bars), the same for any slice and unmoved by gaps.
//! - Files: [`read_bars`] / [`write_bars`] (CSV or Parquet by extension, through polars, which
//!   stays out of the API); columns matched by name; timestamps in seconds, milliseconds,
//!   microseconds or nanoseconds (the [`TimeUnit`] detected per file), ISO 8601 / RFC 3339
//!   text or Parquet date-time and date columns, all read to milliseconds ([`read_bar_file`]
//!   says which form a file used); errors name the file, row, field and value; writes are
//!   atomic and floats round-trip exactly.
//! - [`resample`] to a coarser interval (epoch-aligned buckets) and [`SeriesSummary`] (rows,
//!   span, interval, gaps) for checking data.
//! - Synthetic markets with known laws ([`SyntheticConfig`] over a [`MarketProcess`]: GBM,
//!   AR(1), Markov regimes, Merton jumps) and [`DomainRandomization`] over them; every draw comes
//!   from a `ChaCha8Rng` seeded by a `u64`, and [`SyntheticSeries`] carries the true parameters
//!   and an oracle of the next bar's expected return.
//!
//! ```
//! use mrl_data::{Bar, BarSeries, Interval};
//!
//! let bars: Vec<Bar> = (0..3)
//!     .map(|i| Bar { timestamp: i * 3_600_000, open: 100.0, high: 101.0, low: 99.0, close: 100.5, volume: 2.0 })
//!     .collect();
//! let series = BarSeries::new(&bars)?;
//! assert_eq!(series.interval(), Some(Interval::HOUR));
//! # Ok::<(), mrl_data::Error>(())
//! ```
//!
//! A synthetic market, saved, loaded back and resampled:
//!
//! ```
//! use mrl_data::{Interval, ProcessKind, SeriesSummary, SyntheticConfig, read_bars, resample, write_bars};
//!
//! let market = SyntheticConfig::new(ProcessKind::Regime.default_process()).generate(96, 42)?;
//! let dir = tempfile::tempdir().expect("a temporary directory");
//! let path = dir.path().join("SYN_1h.csv");
//! write_bars(&market.series, &path)?;
//! let loaded = read_bars(&path)?;
//! assert_eq!(loaded.closes(), market.series.closes()); // exact round trip
//! assert_eq!(loaded.symbol(), Some("SYN"));
//! let daily = resample(&loaded, Interval::DAY)?;
//! assert_eq!(daily.len(), 4);
//! assert_eq!(SeriesSummary::of(&loaded).gaps, 0);
//! # Ok::<(), mrl_data::Error>(())
//! ```
//!
//! # Feature flags
//!
//! - `bybit` (off by default): the `bybit` module, a Bybit v5 market-data client (reqwest +
//!   tokio) that fetches and caches bars.

#[cfg(feature = "bybit")]
pub mod bybit;
mod calendar;
mod error;
mod io;
mod quiet_panic;
mod resample;
mod series;
mod summary;
mod synthetic;
mod time;

pub use calendar::{
    CLOSED_DAY_SHARE, Calendar, DAYS_PER_YEAR, HOLE_DAYS, LARGE_GAP_BARS, LARGE_GAP_DAYS, Sessions,
    TRADING_DAYS_PER_YEAR,
};
pub use error::{Error, Result};
pub use io::{
    BarFile, COLUMNS, is_bar_file, read_bar_file, read_bars, read_csv, read_parquet,
    symbol_from_path, write_bars, write_csv, write_file_atomic, write_parquet,
};
pub use resample::{resample, resample_complete};
pub use series::{Bar, BarSeries, DAY_MS, Gap, HOUR_MS, Interval, YEAR_MS};
pub use summary::{SeriesSummary, format_timestamp};
pub use synthetic::{
    Ar1Params, BarStyle, DomainRandomization, GbmParams, JumpParams, MarketProcess, ProcessKind,
    RegimeLabel, RegimeParams, RegimeState, SYNTHETIC_EPOCH_MS, SyntheticConfig, SyntheticSeries,
};
pub use time::{LATEST_SECONDS, TEXT_FORMS, TimeUnit, TimestampFormat, parse_text_time};
