//! Regime windows: a series cut into windows labelled bull, bear, high volatility or sideways,
//! one task per window.
//!
//! # Labels
//!
//! A window is `window` consecutive bars. Its statistics ([`WindowStats`]) are its total log
//! return `R = ln(p_last / p_first)` and the sample standard deviation `σ` of its one-bar log
//! returns. With thresholds fitted on the **train windows only** ([`RegimeThresholds::fit`]):
//!
//! 1. `σ ≥ vol_high` (the `vol_quantile` quantile of train `σ`, default 0.75) → high volatility;
//! 2. otherwise `R ≥ bull_min` → bull, `R ≤ bear_max` → bear, else sideways, where `bear_max`
//!    and `bull_min` are the `trend_quantile` and `1 − trend_quantile` quantiles (default ⅓, ⅔)
//!    of `R` over the calm train windows (those below `vol_high`).
//!
//! With the defaults the train windows split into four classes of about a quarter each.
//! The labels use each window's own (future) bars: they define tasks in hindsight, which is
//! what a task is; an agent must infer the regime from what it observes.

use std::sync::Arc;

use mrl_data::{BarSeries, RegimeLabel};
use mrl_features::{FeatureMatrix, WARMUP, compute_series_features};
use serde::{Deserialize, Serialize};

use super::market_tasks::{require_series, split_name, time_cut};
use super::{MarketTask, MarketTasks, TaskInfo, TaskKind};
use crate::{Error, MarketData, Result, Split, TradingConfig, TradingEnv};

/// Total log return and volatility of one window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WindowStats {
    /// `R = ln(p_last / p_first)`.
    pub log_return: f64,
    /// Sample standard deviation of the one-bar log returns `ln(p_t / p_{t−1})` in the window
    /// (0 below two returns).
    pub volatility: f64,
}

impl WindowStats {
    /// Statistics of the closes of one window (at least one close; prices > 0, as a validated
    /// series guarantees).
    pub fn of(closes: &[f64]) -> Self {
        let (Some(first), Some(last)) = (closes.first(), closes.last()) else {
            return Self {
                log_return: 0.0,
                volatility: 0.0,
            };
        };
        let returns: Vec<f64> = closes.windows(2).map(|w| (w[1] / w[0]).ln()).collect();
        let n = returns.len() as f64;
        let volatility = if returns.len() < 2 {
            0.0
        } else {
            let mean = returns.iter().sum::<f64>() / n;
            (returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        };
        Self {
            log_return: (last / first).ln(),
            volatility,
        }
    }
}

/// The `q`-quantile of `xs` with linear interpolation between order statistics (numpy's
/// default): `x_(⌊h⌋) + (h − ⌊h⌋)(x_(⌊h⌋+1) − x_(⌊h⌋))`, `h = q·(n − 1)`. `None` when `xs` is
/// empty, `q ∉ [0, 1]` or a value is NaN.
pub fn quantile(xs: &[f64], q: f64) -> Option<f64> {
    if xs.is_empty() || !(0.0..=1.0).contains(&q) || xs.iter().any(|x| x.is_nan()) {
        return None;
    }
    let mut sorted = xs.to_vec();
    sorted.sort_by(f64::total_cmp);
    let h = q * (sorted.len() - 1) as f64;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    Some(sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo]))
}

/// Settings of [`MarketTasks::regime_windows`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegimeConfig {
    /// Bars per window; at least `max_steps + 1` (one episode). Default 400 (two default
    /// episodes of 200 steps), i.e. about 17 days of hourly bars.
    pub window: usize,
    /// Quantile of train window volatility above which a window is high-volatility.
    /// Default 0.75.
    pub vol_quantile: f64,
    /// Quantile of the calm train windows' log return below which a window is bear (and
    /// `1 −` it, above which bull). Default ⅓.
    pub trend_quantile: f64,
    /// The regimes that become tasks. Default all four.
    pub labels: Vec<RegimeLabel>,
}

impl Default for RegimeConfig {
    fn default() -> Self {
        Self {
            window: 400,
            vol_quantile: 0.75,
            trend_quantile: 1.0 / 3.0,
            labels: vec![
                RegimeLabel::Bull,
                RegimeLabel::Bear,
                RegimeLabel::HighVolatility,
                RegimeLabel::Sideways,
            ],
        }
    }
}

/// The thresholds of the regime labels (see the module docs), fitted on train windows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RegimeThresholds {
    /// Volatility at or above which a window is high-volatility.
    pub vol_high: f64,
    /// Log return at or above which a calm window is bull.
    pub bull_min: f64,
    /// Log return at or below which a calm window is bear.
    pub bear_max: f64,
}

impl RegimeThresholds {
    /// Fits the thresholds on the statistics of the train windows.
    ///
    /// Errors for quantiles outside their domain (`vol_quantile ∈ (0, 1]`,
    /// `trend_quantile ∈ (0, 0.5]`) or no window.
    pub fn fit(train: &[WindowStats], config: &RegimeConfig) -> Result<Self> {
        let invalid = |field, value: f64, reason| Error::InvalidConfig {
            field,
            value: value.to_string(),
            reason,
        };
        if !(config.vol_quantile > 0.0 && config.vol_quantile <= 1.0) {
            return Err(invalid(
                "vol_quantile",
                config.vol_quantile,
                "expected a value in (0, 1]",
            ));
        }
        if !(config.trend_quantile > 0.0 && config.trend_quantile <= 0.5) {
            return Err(invalid(
                "trend_quantile",
                config.trend_quantile,
                "expected a value in (0, 0.5]",
            ));
        }
        let vols: Vec<f64> = train.iter().map(|s| s.volatility).collect();
        let vol_high = quantile(&vols, config.vol_quantile).ok_or_else(|| {
            invalid(
                "windows",
                train.len() as f64,
                "need at least one finite train window",
            )
        })?;
        let calm: Vec<f64> = train
            .iter()
            .filter(|s| s.volatility < vol_high)
            .map(|s| s.log_return)
            .collect();
        // All windows equally volatile: the trend split uses them all.
        let calm = if calm.is_empty() {
            train.iter().map(|s| s.log_return).collect()
        } else {
            calm
        };
        let bear_max = quantile(&calm, config.trend_quantile).unwrap_or(0.0);
        let bull_min = quantile(&calm, 1.0 - config.trend_quantile).unwrap_or(0.0);
        Ok(Self {
            vol_high,
            bull_min,
            bear_max,
        })
    }

    /// The label of a window.
    pub fn label(&self, stats: &WindowStats) -> RegimeLabel {
        if stats.volatility >= self.vol_high {
            RegimeLabel::HighVolatility
        } else if stats.log_return >= self.bull_min {
            RegimeLabel::Bull
        } else if stats.log_return <= self.bear_max {
            RegimeLabel::Bear
        } else {
            RegimeLabel::Sideways
        }
    }
}

/// A window of one part of one series, before labelling: its bars are the window preceded
/// by [`WARMUP`] bars of feature warm-up.
struct Window {
    series: BarSeries,
    features: FeatureMatrix,
    stats: WindowStats,
    split: Split,
    name: String,
}

/// Cuts `part` into consecutive windows of `window` bars, each preceded by its feature
/// warm-up inside the part (features computed once on the whole part).
fn windows_of(part: &BarSeries, window: usize, split: Split, asset: &str) -> Result<Vec<Window>> {
    if part.len() < WARMUP + window {
        return Ok(Vec::new());
    }
    let features = compute_series_features(part)?;
    let mut out = Vec::new();
    let mut first_bar = WARMUP;
    while first_bar + window <= part.len() {
        let bars = first_bar - WARMUP..first_bar + window;
        out.push(Window {
            series: part.slice(bars.clone())?,
            features: FeatureMatrix::from_rows(features.rows()[bars].to_vec()),
            stats: WindowStats::of(&part.closes()[first_bar..first_bar + window]),
            split,
            name: format!(
                "{asset}[{}]@{}",
                split_name(split),
                part.timestamps()[first_bar]
            ),
        });
        first_bar += window;
    }
    Ok(out)
}

impl MarketTasks {
    /// One task per regime window (see the module docs for the labels). Every series is cut
    /// at `test_start` (train bars strictly before it); each part gets its own features and is
    /// cut into windows, so train and test windows share no bar. Thresholds are fitted on the
    /// train windows of all series and applied to both splits. Only windows whose label is in
    /// `regime.labels` become tasks; sampling picks a label uniformly, then a window.
    ///
    /// Errors: `window < max_steps + 1`, invalid quantiles, no series, or a split without a
    /// window of the chosen labels.
    pub fn regime_windows(
        series: &[BarSeries],
        test_start: i64,
        regime: &RegimeConfig,
        config: TradingConfig,
    ) -> Result<Self> {
        config.validate()?;
        require_series(series, "series")?;
        if regime.window < config.max_steps + 1 {
            return Err(Error::InvalidConfig {
                field: "window",
                value: regime.window.to_string(),
                reason: "a window must hold one episode: at least max_steps + 1 bars",
            });
        }
        let mut windows = Vec::new();
        for (i, s) in series.iter().enumerate() {
            let asset = s
                .symbol()
                .map_or_else(|| format!("asset{i}"), str::to_owned);
            let (train_bars, test_bars) = time_cut(s, test_start);
            for (bars, split) in [(train_bars, Split::Train), (test_bars, Split::Test)] {
                if !bars.is_empty() {
                    windows.extend(windows_of(&s.slice(bars)?, regime.window, split, &asset)?);
                }
            }
        }
        let train_stats: Vec<WindowStats> = windows
            .iter()
            .filter(|w| w.split == Split::Train)
            .map(|w| w.stats)
            .collect();
        let name = format!("regimes({})", series.len());
        if train_stats.is_empty() {
            return Err(Error::EmptySplit {
                distribution: name,
                split: Split::Train,
                needed: WARMUP + regime.window,
            });
        }
        let thresholds = RegimeThresholds::fit(&train_stats, regime)?;
        tracing::info!(
            ?thresholds,
            windows = windows.len(),
            "regime thresholds fitted on train windows"
        );
        let (mut train, mut test) = (Vec::new(), Vec::new());
        for w in windows {
            let label = thresholds.label(&w.stats);
            let Some(group) = regime.labels.iter().position(|&l| l == label) else {
                continue;
            };
            let timestamps = w.series.timestamps();
            let info = TaskInfo {
                name: w.name,
                symbol: w.series.symbol().map(str::to_owned),
                split: w.split,
                first_timestamp: timestamps[0],
                last_timestamp: timestamps[timestamps.len() - 1],
                kind: TaskKind::Regime {
                    label,
                    stats: w.stats,
                },
            };
            let market = Arc::new(MarketData::from_features(w.series, &w.features)?);
            // Valid starts skip the warm-up bars: episodes lie inside the window.
            let starts = TradingEnv::new(market.clone(), config.clone())?.valid_starts();
            let task = MarketTask {
                market,
                starts,
                group,
                info: Arc::new(info),
            };
            match w.split {
                Split::Train => train.push(task),
                Split::Test => test.push(task),
            }
        }
        Self::from_tasks(name, config, train, test)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_matches_numpy_linear() {
        let xs = [3.0, 1.0, 4.0, 1.0, 5.0];
        // numpy.quantile([3,1,4,1,5], [0, .25, .5, .75, 1]) = [1, 1, 3, 4, 5]
        for (q, expected) in [(0.0, 1.0), (0.25, 1.0), (0.5, 3.0), (0.75, 4.0), (1.0, 5.0)] {
            assert_eq!(quantile(&xs, q), Some(expected));
        }
        assert_eq!(quantile(&[1.0, 2.0], 0.5), Some(1.5));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[1.0], 1.5), None);
        assert_eq!(quantile(&[f64::NAN], 0.5), None);
    }

    #[test]
    fn window_stats_of_a_known_path() {
        let closes = [100.0, 110.0, 99.0];
        let s = WindowStats::of(&closes);
        assert!((s.log_return - (0.99_f64).ln()).abs() < 1e-12);
        let (a, b) = ((1.1_f64).ln(), (0.9_f64).ln());
        let mean = (a + b) / 2.0;
        let sd = (((a - mean).powi(2) + (b - mean).powi(2)) / 1.0).sqrt();
        assert!((s.volatility - sd).abs() < 1e-12);
        assert_eq!(WindowStats::of(&[5.0]).volatility, 0.0);
    }
}
