//! Trader rule baselines: time-series momentum, a moving-average crossover, the MACD signal
//! and RSI mean reversion, each with the literature's standard parameters (none of them
//! tuned on the test period).
//!
//! Every rule is a causal function of the closes: [`TraderRule::targets`] gives, for each
//! bar `t`, a target position in `{−1, 0, +1}` computed from `closes[..=t]` only, and `0`
//! during the rule's warm-up ([`TraderRule::warmup`]). The backtest computes the targets once
//! over the whole series, so a window's warm-up uses the bars before it (they precede it: no
//! look-ahead), and [`position_toward`] turns a target into the position the env's action
//! space can reach from the current one, as an agent trading the same env would.
//!
//! Prices are compared bar by bar: a lookback is a number of bars, except for time-series
//! momentum, whose 12-month lookback is converted to bars with the series' calendar
//! ([`TraderRule::ts_momentum`]).

use mrl_env::ActionSpace;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Bars per year assumed when a series has no calendar (trading days of a year).
pub const DEFAULT_PERIODS_PER_YEAR: usize = 252;

/// A classic technical trading rule with its parameters.
///
/// The `Default`-like constants ([`TraderRule::MA_CROSSOVER`], [`TraderRule::MACD`],
/// [`TraderRule::RSI_REVERSION`]) and [`TraderRule::ts_momentum`] hold the standard
/// parameters; [`TraderRule::standard`] gives all four.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case", deny_unknown_fields)]
pub enum TraderRule {
    /// Time-series momentum (Moskowitz, Ooi & Pedersen 2012, "Time series momentum", JFE
    /// 104(2)): the sign of the trailing return, `sign(c_t / c_{t−lookback} − 1)`; long
    /// after a rise, short after a fall, flat when unchanged. The paper's signal is the
    /// 12-month excess return with a one-month holding period and volatility scaling;
    /// here the raw return (no rate series), rebalanced every bar, one unit of position.
    TsMomentum {
        /// Lookback in bars (one year of the series' calendar by default).
        lookback: usize,
    },
    /// Moving-average crossover (the 50/200-bar "golden cross"; Brock, Lakonishok &
    /// LeBaron 1992, "Simple technical trading rules and the stochastic properties of stock
    /// returns", J. Finance 47(5), rule 1-200 and its 50-200 variant): long when
    /// `SMA_fast > SMA_slow`, short when below, flat when equal.
    MaCrossover {
        /// Bars of the fast simple moving average.
        fast: usize,
        /// Bars of the slow simple moving average (more than `fast`).
        slow: usize,
    },
    /// MACD signal (Appel 1979): `MACD = EMA_fast − EMA_slow` of the closes, the signal
    /// line its `EMA_signal`; long when MACD is above the signal line, short when below,
    /// flat when equal. Each EMA has `α = 2/(n+1)` and starts at the mean of its first `n`
    /// inputs (TA-Lib's seeding).
    Macd {
        /// Bars of the fast EMA.
        fast: usize,
        /// Bars of the slow EMA (more than `fast`).
        slow: usize,
        /// Bars of the signal line's EMA (over MACD values).
        signal: usize,
    },
    /// RSI mean reversion (Wilder 1978, "New Concepts in Technical Trading Systems"):
    /// long when the RSI is below `oversold`, short when above `overbought`, flat in
    /// between. The RSI uses Wilder's smoothing: the first averages of gains and losses
    /// are the means of the first `period` changes, then
    /// `avg_t = (avg_{t−1}·(period − 1) + x_t) / period`, and
    /// `RSI = 100 − 100 / (1 + avg_gain/avg_loss)` (100 when there is no loss, 50 when the
    /// price did not move).
    RsiReversion {
        /// Bars of Wilder's averages.
        period: usize,
        /// Long below this RSI.
        oversold: f64,
        /// Short above this RSI.
        overbought: f64,
    },
}

impl TraderRule {
    /// The 50/200-bar moving-average crossover.
    pub const MA_CROSSOVER: TraderRule = TraderRule::MaCrossover {
        fast: 50,
        slow: 200,
    };

    /// MACD (12, 26, 9), Appel's parameters.
    pub const MACD: TraderRule = TraderRule::Macd {
        fast: 12,
        slow: 26,
        signal: 9,
    };

    /// RSI(14) with Wilder's 30/70 thresholds.
    pub const RSI_REVERSION: TraderRule = TraderRule::RsiReversion {
        period: 14,
        oversold: 30.0,
        overbought: 70.0,
    };

    /// Time-series momentum over one year: `periods_per_year` rounded to bars (8766 for an
    /// hourly 24/7 series, 365 for daily crypto, about 252 for a stock's trading days), or
    /// [`DEFAULT_PERIODS_PER_YEAR`] when the series has no calendar (or a rate below one
    /// bar a year).
    pub fn ts_momentum(periods_per_year: Option<f64>) -> Self {
        let lookback = periods_per_year
            .filter(|p| p.is_finite() && *p >= 1.0)
            .map_or(DEFAULT_PERIODS_PER_YEAR, |p| p.round() as usize);
        Self::TsMomentum { lookback }
    }

    /// The four rules with their standard parameters, in report order: time-series
    /// momentum ([`TraderRule::ts_momentum`]), [`TraderRule::MA_CROSSOVER`],
    /// [`TraderRule::MACD`], [`TraderRule::RSI_REVERSION`].
    pub fn standard(periods_per_year: Option<f64>) -> [Self; 4] {
        [
            Self::ts_momentum(periods_per_year),
            Self::MA_CROSSOVER,
            Self::MACD,
            Self::RSI_REVERSION,
        ]
    }

    /// The report key: `ts_momentum`, `ma_crossover`, `macd`, `rsi_reversion`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::TsMomentum { .. } => "ts_momentum",
            Self::MaCrossover { .. } => "ma_crossover",
            Self::Macd { .. } => "macd",
            Self::RsiReversion { .. } => "rsi_reversion",
        }
    }

    /// The first bar with a signal: `lookback` (momentum), `slow − 1` (crossover),
    /// `slow + signal − 2` (MACD: 33 for 12/26/9), `period` (RSI).
    pub fn warmup(&self) -> usize {
        match *self {
            Self::TsMomentum { lookback } => lookback,
            Self::MaCrossover { slow, .. } => slow.saturating_sub(1),
            Self::Macd { slow, signal, .. } => (slow + signal).saturating_sub(2),
            Self::RsiReversion { period, .. } => period,
        }
    }

    /// Checks the parameters: lookbacks and periods of at least one bar, `fast < slow`,
    /// `0 ≤ oversold < overbought ≤ 100`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the parameter and its value.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Self::TsMomentum { lookback } => at_least_one_bar("lookback", lookback),
            Self::MaCrossover { fast, slow } => fast_below_slow(fast, slow),
            Self::Macd { fast, slow, signal } => {
                fast_below_slow(fast, slow)?;
                at_least_one_bar("signal", signal)
            }
            Self::RsiReversion {
                period,
                oversold,
                overbought,
            } => {
                at_least_one_bar("period", period)?;
                if 0.0 <= oversold && oversold < overbought && overbought <= 100.0 {
                    Ok(())
                } else {
                    Err(Error::InvalidConfig {
                        field: "oversold",
                        value: format!("{oversold} (overbought {overbought})"),
                        reason: "expected 0 ≤ oversold < overbought ≤ 100",
                    })
                }
            }
        }
    }

    /// The target position after each bar: `targets[t] ∈ {−1, 0, +1}` depends on
    /// `closes[..=t]` only and is 0 before [`TraderRule::warmup`] (or while an input is
    /// not finite).
    ///
    /// # Shapes
    /// `closes`: `[n]` → `[n]`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for invalid parameters ([`TraderRule::validate`]).
    pub fn targets(&self, closes: &[f64]) -> Result<Vec<f64>> {
        self.validate()?;
        let targets = match *self {
            Self::TsMomentum { lookback } => (0..closes.len())
                .map(|t| match t.checked_sub(lookback) {
                    Some(s) => sign(closes[t] / closes[s] - 1.0),
                    None => 0.0,
                })
                .collect(),
            Self::MaCrossover { fast, slow } => sma(closes, fast)
                .into_iter()
                .zip(sma(closes, slow))
                .map(|(f, s)| f.zip(s).map_or(0.0, |(f, s)| sign(f - s)))
                .collect(),
            Self::Macd { fast, slow, signal } => macd(closes, fast, slow, signal)
                .into_iter()
                .map(|m| m.map_or(0.0, |(line, signal)| sign(line - signal)))
                .collect(),
            Self::RsiReversion {
                period,
                oversold,
                overbought,
            } => wilder_rsi(closes, period)
                .into_iter()
                .map(|rsi| match rsi {
                    Some(r) if r < oversold => 1.0,
                    Some(r) if r > overbought => -1.0,
                    _ => 0.0,
                })
                .collect(),
        };
        Ok(targets)
    }
}

/// An error naming `field` unless `bars ≥ 1`.
fn at_least_one_bar(field: &'static str, bars: usize) -> Result<()> {
    if bars == 0 {
        return Err(Error::InvalidConfig {
            field,
            value: "0".into(),
            reason: "expected at least one bar",
        });
    }
    Ok(())
}

/// An error unless `1 ≤ fast < slow`.
fn fast_below_slow(fast: usize, slow: usize) -> Result<()> {
    at_least_one_bar("fast", fast)?;
    if fast >= slow {
        return Err(Error::InvalidConfig {
            field: "slow",
            value: format!("{slow} (fast {fast})"),
            reason: "expected more bars than the fast average",
        });
    }
    Ok(())
}

/// `+1`, `−1` or `0` by the sign of `x`; `0` for NaN.
fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// Simple moving average of the last `n` values at every index, `None` before index
/// `n − 1`. Each window is summed afresh (O(n) per value), so no rounding carries over.
fn sma(values: &[f64], n: usize) -> Vec<Option<f64>> {
    (0..values.len())
        .map(|t| {
            let start = (t + 1).checked_sub(n)?;
            Some(values[start..=t].iter().sum::<f64>() / n as f64)
        })
        .collect()
}

/// Exponential moving average with `α = 2/(n+1)` of the defined values of `values`: it
/// starts at the mean of the first `n` defined values (at the index of the `n`-th) and
/// then `ema_t = ema_{t−1} + α·(x_t − ema_{t−1})`; `None` before. The defined values must
/// be contiguous (a warm-up of `None` then values), as MACD lines are.
fn ema(values: &[Option<f64>], n: usize) -> Vec<Option<f64>> {
    let alpha = 2.0 / (n as f64 + 1.0);
    let mut out = Vec::with_capacity(values.len());
    let (mut seen, mut sum, mut ema) = (0usize, 0.0, None::<f64>);
    for value in values {
        let Some(x) = *value else {
            out.push(None);
            continue;
        };
        ema = match ema {
            Some(prev) => Some(prev + alpha * (x - prev)),
            None => {
                seen += 1;
                sum += x;
                (seen == n).then(|| sum / n as f64)
            }
        };
        out.push(ema);
    }
    out
}

/// The MACD line and its signal line at every index, `None` before both exist (index
/// `slow + signal − 2`).
fn macd(closes: &[f64], fast: usize, slow: usize, signal: usize) -> Vec<Option<(f64, f64)>> {
    let closes: Vec<Option<f64>> = closes.iter().map(|&c| Some(c)).collect();
    let line: Vec<Option<f64>> = ema(&closes, fast)
        .into_iter()
        .zip(ema(&closes, slow))
        .map(|(f, s)| Some(f? - s?))
        .collect();
    let signal_line = ema(&line, signal);
    line.into_iter()
        .zip(signal_line)
        .map(|(l, s)| l.zip(s))
        .collect()
}

/// Wilder's RSI at every index, `None` before index `period` (the first `period` changes
/// seed the averages); see [`TraderRule::RsiReversion`] for the formula.
fn wilder_rsi(closes: &[f64], period: usize) -> Vec<Option<f64>> {
    let p = period as f64;
    let mut out = vec![None; closes.len()];
    let (mut gain, mut loss) = (0.0, 0.0);
    for t in 1..closes.len() {
        let change = closes[t] - closes[t - 1];
        let (g, l) = (change.max(0.0), (-change).max(0.0));
        if t <= period {
            gain += g / p;
            loss += l / p;
        } else {
            gain = (gain * (p - 1.0) + g) / p;
            loss = (loss * (p - 1.0) + l) / p;
        }
        if t >= period {
            out[t] = Some(if loss > 0.0 {
                100.0 - 100.0 / (1.0 + gain / loss)
            } else if gain > 0.0 {
                100.0
            } else {
                50.0
            });
        }
    }
    out
}

/// The position after trading toward `target` from `prev` with one action of `actions`:
/// the action whose next position is nearest `target`, ties going to the smaller change of
/// position (no needless trade), then to the lower action index.
///
/// With Buy / Sell / Hold a target of `+1` buys, `−1` sells and `0` holds (the space has no
/// flat action, so a flat signal keeps the current position, and an episode that starts
/// flat stays flat until the first signal). With position sizing the position moves one
/// grid step toward `±1` per bar, or closes when that is nearer (a flat target, or a
/// target across zero).
///
/// # Errors
/// Env errors of [`ActionSpace::next_position`] (an invalid sizing step).
pub fn position_toward(actions: &ActionSpace, prev: f64, target: f64) -> Result<f64> {
    let mut best = actions.next_position(0, prev)?;
    for action in 1..actions.n_actions() {
        let q = actions.next_position(action, prev)?;
        let key = |q: f64| ((q - target).abs(), (q - prev).abs());
        if key(q) < key(best) {
            best = q;
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn sma_averages_the_last_n_values() {
        let s = sma(&[1.0, 2.0, 3.0, 4.0, 6.0], 3);
        assert_eq!(s, [None, None, Some(2.0), Some(3.0), Some(13.0 / 3.0)]);
    }

    #[test]
    fn ema_starts_at_the_mean_then_smooths() {
        // n = 3, α = 0.5: seed mean(1, 2, 3) = 2 at index 2, then 2 + 0.5·(6 − 2) = 4,
        // then 4 + 0.5·(0 − 4) = 2.
        let values = [None, Some(1.0), Some(2.0), Some(3.0), Some(6.0), Some(0.0)];
        assert_eq!(
            ema(&values, 3),
            [None, None, None, Some(2.0), Some(4.0), Some(2.0)]
        );
    }

    #[test]
    fn macd_line_and_signal_by_hand() {
        // fast 1 (the close itself), slow 2 (α = 2/3), signal 2 (α = 2/3).
        let closes = [1.0, 3.0, 6.0, 3.0];
        let m = macd(&closes, 1, 2, 2);
        // slow EMA: index 1 = 2, index 2 = 2 + 2/3·4 = 14/3, index 3 = 14/3 − 2/3·5/3 = 32/9.
        // line: 1, 4/3, −5/9; signal: mean(1, 4/3) = 7/6 at index 2, then
        // 7/6 + 2/3·(−5/9 − 7/6) = 7/6 − 31/27 at index 3.
        assert_eq!(m[0], None);
        assert_eq!(m[1], None);
        let (line, signal) = m[2].unwrap();
        assert!(close(line, 4.0 / 3.0) && close(signal, 7.0 / 6.0));
        let (line, signal) = m[3].unwrap();
        assert!(close(line, -5.0 / 9.0) && close(signal, 7.0 / 6.0 - 31.0 / 27.0));
    }

    #[test]
    fn wilder_rsi_by_hand() {
        // period 2: changes +2, −1 seed gain 1, loss 0.5 → RSI 100 − 100/3;
        // then +3: gain (1 + 3)/2 = 2, loss 0.25 → RS 8 → RSI 100 − 100/9.
        let rsi = wilder_rsi(&[10.0, 12.0, 11.0, 14.0], 2);
        assert_eq!(rsi[..2], [None, None]);
        assert!(close(rsi[2].unwrap(), 100.0 - 100.0 / 3.0));
        assert!(close(rsi[3].unwrap(), 100.0 - 100.0 / 9.0));
        assert_eq!(wilder_rsi(&[5.0, 5.0, 5.0], 2)[2], Some(50.0));
        assert_eq!(wilder_rsi(&[5.0, 6.0, 7.0], 2)[2], Some(100.0));
    }

    #[test]
    fn invalid_parameters_name_the_field() {
        let cases = [
            (TraderRule::TsMomentum { lookback: 0 }, "lookback"),
            (TraderRule::MaCrossover { fast: 0, slow: 5 }, "fast"),
            (TraderRule::MaCrossover { fast: 5, slow: 5 }, "slow"),
            (
                TraderRule::Macd {
                    fast: 12,
                    slow: 26,
                    signal: 0,
                },
                "signal",
            ),
            (
                TraderRule::RsiReversion {
                    period: 14,
                    oversold: 70.0,
                    overbought: 30.0,
                },
                "oversold",
            ),
        ];
        for (rule, name) in cases {
            match rule.targets(&[1.0, 2.0]) {
                Err(Error::InvalidConfig { field, .. }) => assert_eq!(field, name, "{rule:?}"),
                other => panic!("{rule:?}: expected an invalid {name}, got {other:?}"),
            }
        }
        for rule in TraderRule::standard(None) {
            rule.validate().unwrap();
        }
    }
}
