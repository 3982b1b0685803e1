//! [`BacktestReport`]: the serde summary of a backtest (one entry per policy) and its
//! human-readable table.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Metrics, SharpeDiffCi};

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

/// Mean, standard deviation (ddof 0), min and max of one figure across runs, over the
/// `n` runs where it is defined.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Runs the figures cover (those where it is defined).
    pub n: usize,
    /// Mean.
    pub mean: f64,
    /// Standard deviation across runs (population).
    pub std: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

impl Spread {
    /// The spread of `values`; `None` when empty.
    pub fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        Some(Self {
            n: values.len(),
            mean,
            std: var.sqrt(),
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }

    /// The spread of the defined values among `values` (undefined ones are left out and
    /// not counted in [`Spread::n`]); `None` when none is defined.
    pub fn of_defined(values: impl IntoIterator<Item = Option<f64>>) -> Option<Self> {
        Self::of(&values.into_iter().flatten().collect::<Vec<_>>())
    }
}

/// How much the headline figures vary across the seeds of sampled runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedSpread {
    /// Independent runs.
    pub seeds: usize,
    /// Total return across seeds.
    pub total_return: Spread,
    /// Sharpe ratio across the seeds where it is defined; `None` when it is defined for
    /// none.
    pub sharpe: Option<Spread>,
    /// Sortino ratio across the seeds where it is defined; `None` when it is defined for
    /// none.
    pub sortino: Option<Spread>,
    /// Max drawdown across seeds.
    pub max_drawdown: Spread,
    /// Seeds whose book was ruined (equity reached 0).
    pub ruined: usize,
    /// The metrics of every seed, in seed order.
    pub per_seed: Vec<Metrics>,
}

impl SeedSpread {
    /// The spread of `runs` (one [`Metrics`] per seed); `None` when `runs` is empty.
    pub fn of(runs: &[Metrics]) -> Option<Self> {
        let field = |f: fn(&Metrics) -> f64| Spread::of(&runs.iter().map(f).collect::<Vec<_>>());
        let defined = |f: fn(&Metrics) -> Option<f64>| Spread::of_defined(runs.iter().map(f));
        Some(Self {
            seeds: runs.len(),
            total_return: field(|m| m.total_return)?,
            sharpe: defined(|m| m.sharpe),
            sortino: defined(|m| m.sortino),
            max_drawdown: field(|m| m.max_drawdown)?,
            ruined: runs.iter().filter(|m| m.ruin_step.is_some()).count(),
            per_seed: runs.to_vec(),
        })
    }
}

/// Where a policy's book was ruined: the first step of the test period at which its
/// equity reached 0 (from then on it books flat, zero-return steps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ruin {
    /// The run (seed index) this describes: the first run that was ruined.
    pub run: usize,
    /// Step of the test period (0 = its first decision bar).
    pub step: usize,
    /// Index of the decision bar in the series.
    pub bar: usize,
    /// Timestamp of the decision bar (ms UTC).
    pub timestamp: i64,
    /// How many of the policy's runs were ruined (1 for a single run).
    pub runs_ruined: usize,
}

/// The figures of one policy over the test period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyReport {
    /// Metrics of the strategy (the mean over seeds for sampled runs, each figure over the
    /// seeds where it is defined; trades rounded).
    #[serde(flatten)]
    pub metrics: Metrics,
    /// Whether the book of any run was ruined (equity reached 0; the book is flat after).
    pub ruined: bool,
    /// Where the first ruined run was ruined; `None` when no run was.
    pub ruin: Option<Ruin>,
    /// Mean return (sum of net returns, each episode from flat) by episode index of the
    /// trial: the adaptation episodes, then the evaluation window.
    pub adaptation_curve: Vec<f64>,
    /// Bootstrap CI of `sharpe(rl2) − sharpe(this)` on the first seed's returns; `None`
    /// for `rl2` itself and where either Sharpe ratio is undefined.
    pub sharpe_diff_ci: Option<SharpeDiffCi>,
    /// Variation across seeds; `None` for a single (greedy or deterministic) run.
    pub seeds: Option<SeedSpread>,
}

/// The result of a walk-forward backtest.
///
/// `serde_json::to_value(&report)` has the keys `periods_per_year`, `span` and one key per
/// policy (`rl2`, `mlp` when given, `buy_and_hold`, `flat`, `random`, `oracle` when
/// available), each a [`PolicyReport`] whose [`Metrics`] fields sit at its top level.
/// An undefined figure (a Sharpe ratio of constant returns, say) is `null`.
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
    /// and the Sharpe-difference interval; an undefined figure is `-`. Ruined books are
    /// listed below the table.
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
                "{:<13} {:>8.2}% {:>9} {:>7.2}% {:>7} {:>8} {:>7.2}% {:>7} {:>6} {:>6} {:>9.1} {:>6.3} {:>7}  {}\n",
                name,
                100.0 * m.total_return,
                opt_pct(m.cagr),
                100.0 * m.volatility,
                opt(m.sharpe),
                opt(m.sortino),
                100.0 * m.max_drawdown,
                opt(m.calmar),
                opt_with(m.win_rate, 3),
                opt(m.profit_factor),
                m.turnover,
                m.exposure,
                m.trades,
                ci
            ));
        }
        for (name, p) in self.ordered() {
            if let Some(r) = p.ruin {
                let runs = p.seeds.as_ref().map_or(1, |s| s.seeds);
                out.push_str(&format!(
                    "{name}: ruined (equity 0) at step {} ({}) in {} of {runs} run(s); flat from then on\n",
                    r.step,
                    mrl_data::format_timestamp(r.timestamp),
                    r.runs_ruined
                ));
            }
        }
        if let Some(verdict) = self.verdict() {
            out.push_str(&verdict.to_string());
        }
        out
    }
}

/// `x` with `decimals` decimals, or `-` when undefined.
pub(crate) fn opt_with(x: Option<f64>, decimals: usize) -> String {
    x.map_or_else(|| "-".to_string(), |v| format!("{v:.decimals$}"))
}

/// `x` with 2 decimals, or `-` when undefined.
pub(crate) fn opt(x: Option<f64>) -> String {
    opt_with(x, 2)
}

/// `x` as a percentage with 2 decimals, or `-` when undefined.
fn opt_pct(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_string(), |v| format!("{:.2}%", 100.0 * v))
}

impl fmt::Display for BacktestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_table())
    }
}

/// The mean of per-seed metrics: each figure averaged, the ones that may be undefined
/// (Sharpe, Sortino, CAGR, Calmar, win rate, profit factor) over the seeds where they are
/// defined (`None` when none is; [`SeedSpread`] says how many), trades rounded, and the
/// earliest ruin step.
pub fn mean_metrics(runs: &[Metrics]) -> Option<Metrics> {
    let first = *runs.first()?;
    if runs.len() == 1 {
        return Some(first);
    }
    let n = runs.len() as f64;
    let mean = |f: fn(&Metrics) -> f64| runs.iter().map(f).sum::<f64>() / n;
    let mean_opt =
        |f: fn(&Metrics) -> Option<f64>| Spread::of_defined(runs.iter().map(f)).map(|s| s.mean);
    Some(Metrics {
        total_return: mean(|m| m.total_return),
        cagr: mean_opt(|m| m.cagr),
        volatility: mean(|m| m.volatility),
        sharpe: mean_opt(|m| m.sharpe),
        sortino: mean_opt(|m| m.sortino),
        max_drawdown: mean(|m| m.max_drawdown),
        calmar: mean_opt(|m| m.calmar),
        win_rate: mean_opt(|m| m.win_rate),
        profit_factor: mean_opt(|m| m.profit_factor),
        turnover: mean(|m| m.turnover),
        exposure: mean(|m| m.exposure),
        trades: (runs.iter().map(|m| m.trades as f64).sum::<f64>() / n).round() as usize,
        ruin_step: runs.iter().filter_map(|m| m.ruin_step).min(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_and_mean_metrics() {
        let s = Spread::of(&[1.0, 3.0]).unwrap();
        assert_eq!((s.n, s.mean, s.std, s.min, s.max), (2, 2.0, 1.0, 1.0, 3.0));
        assert_eq!(Spread::of(&[]), None);
        let a = Metrics::compute(&[0.01, -0.02, 0.03], &[1.0, 1.0, -1.0], 252.0);
        let b = Metrics::compute(&[0.02, 0.01, 0.0], &[1.0, 0.0, 0.0], 252.0);
        let c = Metrics::compute(&[0.0, 0.0, 0.0], &[0.0, 0.0, 0.0], 252.0);
        let m = mean_metrics(&[a, b, c]).unwrap();
        // c's Sharpe is undefined: the mean covers a and b only.
        let (sa, sb) = (a.sharpe.unwrap(), b.sharpe.unwrap());
        assert!((m.sharpe.unwrap() - (sa + sb) / 2.0).abs() < 1e-12);
        assert_eq!(m.sortino, a.sortino); // b and c lost nothing
        assert_eq!(m.profit_factor, a.profit_factor);
        assert_eq!(m.trades, 1); // (2 + 2 + 0) / 3 rounded
        let spread = SeedSpread::of(&[a, b, c]).unwrap();
        assert_eq!(spread.sharpe.unwrap().n, 2);
        assert_eq!(spread.sortino.unwrap().n, 1);
        assert_eq!(spread.total_return.n, 3);
        assert_eq!(mean_metrics(&[]), None);
        assert_eq!(SeedSpread::of(&[]), None);
    }
}
