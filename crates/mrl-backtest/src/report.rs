//! [`BacktestReport`]: the serde summary of a backtest (one entry per policy) and its
//! human-readable table.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Metrics;

/// Report keys in display order: the agents, the oracle, the baselines, then the trader
/// rules ([`TraderRule::standard`](crate::TraderRule::standard)).
pub const POLICY_ORDER: [&str; 10] = [
    "rl2",
    "mlp",
    "oracle",
    "buy_and_hold",
    "flat",
    "random",
    "ts_momentum",
    "ma_crossover",
    "macd",
    "rsi_reversion",
];

/// First and last evaluated decision bar (ms UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// Timestamp of the first evaluated bar.
    pub start: i64,
    /// Timestamp of the last evaluated bar.
    pub end: i64,
}

/// A bootstrap confidence interval of `sharpe(rl2) − sharpe(this policy)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SharpeDiffCi {
    /// Difference on the observed returns.
    pub point: f64,
    /// Lower bound.
    pub lo: f64,
    /// Upper bound.
    pub hi: f64,
    /// Coverage of the interval.
    pub confidence: f64,
}

/// Mean, standard deviation (ddof 0), min and max of one figure across seeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Mean.
    pub mean: f64,
    /// Standard deviation across seeds (population).
    pub std: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

impl Spread {
    /// The spread of `values` (all zero when empty).
    pub fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Self {
                mean: 0.0,
                std: 0.0,
                min: 0.0,
                max: 0.0,
            };
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        Self {
            mean,
            std: var.sqrt(),
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }
}

/// How much the headline figures vary across the seeds of sampled runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedSpread {
    /// Independent runs.
    pub seeds: usize,
    /// Total return across seeds.
    pub total_return: Spread,
    /// Sharpe ratio across seeds.
    pub sharpe: Spread,
    /// Sortino ratio across seeds.
    pub sortino: Spread,
    /// Max drawdown across seeds.
    pub max_drawdown: Spread,
    /// The metrics of every seed, in seed order.
    pub per_seed: Vec<Metrics>,
}

impl SeedSpread {
    /// The spread of `runs` (one [`Metrics`] per seed).
    pub fn of(runs: &[Metrics]) -> Self {
        let field = |f: fn(&Metrics) -> f64| Spread::of(&runs.iter().map(f).collect::<Vec<_>>());
        Self {
            seeds: runs.len(),
            total_return: field(|m| m.total_return),
            sharpe: field(|m| m.sharpe),
            sortino: field(|m| m.sortino),
            max_drawdown: field(|m| m.max_drawdown),
            per_seed: runs.to_vec(),
        }
    }
}

/// The figures of one policy over the test period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyReport {
    /// Metrics of the strategy (the mean over seeds for sampled runs; trades rounded).
    #[serde(flatten)]
    pub metrics: Metrics,
    /// Mean return (sum of net returns, each episode from flat) by episode index of the
    /// trial: the adaptation episodes, then the evaluation window.
    pub adaptation_curve: Vec<f64>,
    /// Bootstrap CI of `sharpe(rl2) − sharpe(this)` on the first seed's returns; `None`
    /// for `rl2` itself.
    pub sharpe_diff_ci: Option<SharpeDiffCi>,
    /// Variation across seeds; `None` for a single (greedy or deterministic) run.
    pub seeds: Option<SeedSpread>,
}

/// The result of a walk-forward backtest.
///
/// `serde_json::to_value(&report)` has the keys `periods_per_year`, `span` and one key per
/// policy (`rl2`, `mlp` when given, `buy_and_hold`, `flat`, `random`, `oracle` when
/// available), each a [`PolicyReport`] whose [`Metrics`] fields sit at its top level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BacktestReport {
    /// Bars per year of the series (its calendar), used to annualise.
    pub periods_per_year: f64,
    /// First and last evaluated bar.
    pub span: Span,
    /// One entry per policy, keyed by name.
    #[serde(flatten)]
    pub policies: BTreeMap<String, PolicyReport>,
}

impl BacktestReport {
    /// The policies in display order ([`POLICY_ORDER`], then any other name).
    pub fn ordered(&self) -> Vec<(&str, &PolicyReport)> {
        let rank = |name: &str| {
            POLICY_ORDER
                .iter()
                .position(|&p| p == name)
                .unwrap_or(POLICY_ORDER.len())
        };
        let mut entries: Vec<_> = self.policies.iter().map(|(k, v)| (k.as_str(), v)).collect();
        entries.sort_by_key(|(name, _)| rank(name));
        entries
    }

    /// A fixed-width table: one row per policy with return, CAGR, volatility, Sharpe,
    /// Sortino, max drawdown, Calmar, win rate, profit factor, turnover, exposure, trades
    /// and the Sharpe-difference interval.
    pub fn to_table(&self) -> String {
        let mut out = format!(
            "periods/year {:.1}, span {} .. {}\n",
            self.periods_per_year,
            mrl_data::format_timestamp(self.span.start),
            mrl_data::format_timestamp(self.span.end)
        );
        out.push_str(&format!(
            "{:<13} {:>9} {:>9} {:>8} {:>7} {:>8} {:>8} {:>7} {:>6} {:>6} {:>9} {:>6} {:>7}  {}\n",
            "policy",
            "return",
            "cagr",
            "vol",
            "sharpe",
            "sortino",
            "max_dd",
            "calmar",
            "win",
            "pf",
            "turnover",
            "expo",
            "trades",
            "Δsharpe rl2 (CI)"
        ));
        for (name, p) in self.ordered() {
            let m = &p.metrics;
            let ci = p.sharpe_diff_ci.map_or_else(
                || "-".to_string(),
                |c| format!("{:+.2} [{:+.2}, {:+.2}]", c.point, c.lo, c.hi),
            );
            out.push_str(&format!(
                "{:<13} {:>8.2}% {:>9} {:>7.2}% {:>7.2} {:>8.2} {:>7.2}% {:>7} {:>6.3} {:>6} {:>9.1} {:>6.3} {:>7}  {}\n",
                name,
                100.0 * m.total_return,
                opt_pct(m.cagr),
                100.0 * m.volatility,
                m.sharpe,
                m.sortino,
                100.0 * m.max_drawdown,
                opt(m.calmar),
                m.win_rate,
                opt(m.profit_factor),
                m.turnover,
                m.exposure,
                m.trades,
                ci
            ));
        }
        if let Some(verdict) = self.verdict() {
            out.push_str(&verdict.to_string());
        }
        out
    }
}

/// `x` with 2 decimals, or `-`.
fn opt(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"))
}

/// `x` as a percentage, or `-`.
fn opt_pct(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_string(), |v| format!("{:.2}%", 100.0 * v))
}

impl fmt::Display for BacktestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_table())
    }
}

/// The mean of per-seed metrics: each figure averaged, optional ones over the seeds that
/// have a value (`None` when none has), trades rounded.
pub fn mean_metrics(runs: &[Metrics]) -> Option<Metrics> {
    let first = *runs.first()?;
    if runs.len() == 1 {
        return Some(first);
    }
    let n = runs.len() as f64;
    let mean = |f: fn(&Metrics) -> f64| runs.iter().map(f).sum::<f64>() / n;
    let mean_opt = |f: fn(&Metrics) -> Option<f64>| {
        let values: Vec<f64> = runs.iter().filter_map(f).collect();
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    };
    Some(Metrics {
        total_return: mean(|m| m.total_return),
        cagr: mean_opt(|m| m.cagr),
        volatility: mean(|m| m.volatility),
        sharpe: mean(|m| m.sharpe),
        sortino: mean(|m| m.sortino),
        max_drawdown: mean(|m| m.max_drawdown),
        calmar: mean_opt(|m| m.calmar),
        win_rate: mean(|m| m.win_rate),
        profit_factor: mean_opt(|m| m.profit_factor),
        turnover: mean(|m| m.turnover),
        exposure: mean(|m| m.exposure),
        trades: (runs.iter().map(|m| m.trades as f64).sum::<f64>() / n).round() as usize,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_and_mean_metrics() {
        let s = Spread::of(&[1.0, 3.0]);
        assert_eq!((s.mean, s.std, s.min, s.max), (2.0, 1.0, 1.0, 3.0));
        let a = Metrics::compute(&[0.01, -0.02, 0.03], &[1.0, 1.0, -1.0], 252.0);
        let b = Metrics::compute(&[0.02, 0.01, 0.0], &[1.0, 0.0, 0.0], 252.0);
        let m = mean_metrics(&[a, b]).unwrap();
        assert!((m.sharpe - (a.sharpe + b.sharpe) / 2.0).abs() < 1e-12);
        assert_eq!(m.profit_factor, a.profit_factor); // b has no losing step
        assert_eq!(m.trades, 2); // (2 + 2) / 2
        assert_eq!(mean_metrics(&[]), None);
    }
}
