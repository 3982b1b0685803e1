//! [`evaluate_markets`]: one walk-forward backtest per series, summarised one row per
//! series (Sharpe, Sortino, max drawdown and return of every policy).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use mrl_data::BarSeries;
use serde::{Deserialize, Serialize};

use crate::{
    BacktestReport, Error, POLICY_ORDER, Policies, Result, SharpeDiffCi, WalkForwardConfig,
    backtest,
};

/// The headline figures of one policy on one series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MarketFigures {
    /// Annualised Sharpe ratio.
    pub sharpe: f64,
    /// Annualised Sortino ratio.
    pub sortino: f64,
    /// Max drawdown, in [−1, 0].
    pub max_drawdown: f64,
    /// Compounded return over the test period.
    pub total_return: f64,
    /// Bootstrap confidence interval of `sharpe(rl2) − sharpe(this policy)`; `None` for
    /// `rl2` itself.
    pub sharpe_diff_ci: Option<SharpeDiffCi>,
}

/// One series of a multi-market evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarketRow {
    /// The series' symbol, or `series <i>`.
    pub name: String,
    /// Bars in the series.
    pub bars: usize,
    /// Bars per year of the series.
    pub periods_per_year: f64,
    /// Evaluated bars (the test period).
    pub test_bars: usize,
    /// Figures by policy.
    pub policies: BTreeMap<String, MarketFigures>,
}

/// A series that could not be evaluated, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedSeries {
    /// The series' symbol, or `series <i>`.
    pub name: String,
    /// The error, as text.
    pub reason: String,
}

/// The summary of [`evaluate_markets`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarketsSummary {
    /// One row per evaluated series, in input order.
    pub rows: Vec<MarketRow>,
    /// Series skipped with their error (too short, say).
    pub skipped: Vec<SkippedSeries>,
}

impl MarketFigures {
    fn of(report: &BacktestReport) -> BTreeMap<String, Self> {
        report
            .policies
            .iter()
            .map(|(name, p)| {
                let m = &p.metrics;
                let figures = Self {
                    sharpe: m.sharpe,
                    sortino: m.sortino,
                    max_drawdown: m.max_drawdown,
                    total_return: m.total_return,
                    sharpe_diff_ci: p.sharpe_diff_ci,
                };
                (name.clone(), figures)
            })
            .collect()
    }
}

/// Backtests `policies` on every series with the same config; a series that fails (too
/// short, say) is skipped with a warning and listed in [`MarketsSummary::skipped`]. The
/// oracle, when given, trades every series.
///
/// # Errors
/// [`Error::NoSeries`] when no series could be evaluated; the first error of a policy that
/// does not fit the env (the same for every series).
pub fn evaluate_markets(
    policies: &Policies<'_>,
    series: &[BarSeries],
    config: &WalkForwardConfig,
) -> Result<MarketsSummary> {
    let mut summary = MarketsSummary {
        rows: Vec::new(),
        skipped: Vec::new(),
    };
    for (i, s) in series.iter().enumerate() {
        let name = s
            .symbol()
            .map_or_else(|| format!("series {i}"), str::to_string);
        match backtest(s, policies, config) {
            Ok(bt) => summary.rows.push(MarketRow {
                name,
                bars: s.len(),
                periods_per_year: bt.report.periods_per_year,
                test_bars: bt.windows.iter().map(|w| w.eval.len()).sum(),
                policies: MarketFigures::of(&bt.report),
            }),
            Err(e @ (Error::InputMismatch { .. } | Error::InvalidConfig { .. })) => return Err(e),
            Err(e) => {
                tracing::warn!(series = %name, error = %e, "series skipped");
                summary.skipped.push(SkippedSeries {
                    name,
                    reason: e.to_string(),
                });
            }
        }
    }
    if summary.rows.is_empty() {
        return Err(Error::NoSeries {
            skipped: summary.skipped.len(),
        });
    }
    Ok(summary)
}

impl MarketsSummary {
    /// Policy names in display order.
    fn policy_names(&self) -> Vec<String> {
        let mut names: Vec<String> = POLICY_ORDER
            .iter()
            .filter(|p| self.rows.iter().any(|r| r.policies.contains_key(**p)))
            .map(|p| p.to_string())
            .collect();
        for row in &self.rows {
            for name in row.policies.keys() {
                if !names.contains(name) {
                    names.push(name.clone());
                }
            }
        }
        names
    }

    /// Mean of each figure over the rows, by policy.
    pub fn mean(&self) -> BTreeMap<String, MarketFigures> {
        self.policy_names()
            .into_iter()
            .map(|name| {
                let figs: Vec<&MarketFigures> = self
                    .rows
                    .iter()
                    .filter_map(|r| r.policies.get(&name))
                    .collect();
                let n = figs.len().max(1) as f64;
                let mean =
                    |f: fn(&MarketFigures) -> f64| figs.iter().map(|x| f(x)).sum::<f64>() / n;
                let figures = MarketFigures {
                    sharpe: mean(|x| x.sharpe),
                    sortino: mean(|x| x.sortino),
                    max_drawdown: mean(|x| x.max_drawdown),
                    total_return: mean(|x| x.total_return),
                    // An interval of a mean over markets is not the mean of intervals.
                    sharpe_diff_ci: None,
                };
                (name, figures)
            })
            .collect()
    }

    /// A table: one row per series (and a `mean` row), and for each policy its Sharpe,
    /// Sortino, max drawdown and return; skipped series are listed below.
    pub fn to_table(&self) -> String {
        let names = self.policy_names();
        let mut out = format!("{:<14} {:>7}", "series", "bars");
        for name in &names {
            let _ = write!(out, " | {name:^33}");
        }
        out.push('\n');
        let _ = write!(out, "{:<14} {:>7}", "", "");
        for _ in &names {
            let _ = write!(
                out,
                " | {:>7} {:>7} {:>8} {:>8}",
                "sharpe", "sortino", "max_dd", "return"
            );
        }
        out.push('\n');
        let mut line = |label: &str, bars: String, figs: &BTreeMap<String, MarketFigures>| {
            let _ = write!(out, "{label:<14} {bars:>7}");
            for name in &names {
                match figs.get(name) {
                    Some(f) => {
                        let _ = write!(
                            out,
                            " | {:>7.2} {:>7.2} {:>7.2}% {:>7.2}%",
                            f.sharpe,
                            f.sortino,
                            100.0 * f.max_drawdown,
                            100.0 * f.total_return
                        );
                    }
                    None => {
                        let _ = write!(out, " | {:>33}", "-");
                    }
                }
            }
            out.push('\n');
        };
        for row in &self.rows {
            line(&row.name, row.bars.to_string(), &row.policies);
        }
        line("mean", String::new(), &self.mean());
        out.push_str(&self.verdict().to_string());
        for s in &self.skipped {
            let _ = writeln!(out, "skipped {}: {}", s.name, s.reason);
        }
        out
    }

    /// CSV: `series,bars,periods_per_year,test_bars`, then `<policy>_sharpe`,
    /// `<policy>_sortino`, `<policy>_max_drawdown`, `<policy>_total_return`, and the
    /// bootstrap interval of the Sharpe difference from rl2, `<policy>_dsharpe_lo` and
    /// `<policy>_dsharpe_hi` (empty for rl2), per policy.
    pub fn to_csv(&self) -> String {
        let names = self.policy_names();
        let mut out = String::from("series,bars,periods_per_year,test_bars");
        for n in &names {
            let _ = write!(
                out,
                ",{n}_sharpe,{n}_sortino,{n}_max_drawdown,{n}_total_return,{n}_dsharpe_lo,{n}_dsharpe_hi"
            );
        }
        out.push('\n');
        for row in &self.rows {
            let _ = write!(
                out,
                "{},{},{},{}",
                row.name.replace(',', ";"),
                row.bars,
                row.periods_per_year,
                row.test_bars
            );
            for n in &names {
                match row.policies.get(n) {
                    Some(f) => {
                        let _ = write!(
                            out,
                            ",{},{},{},{}",
                            f.sharpe, f.sortino, f.max_drawdown, f.total_return
                        );
                        match f.sharpe_diff_ci {
                            Some(ci) => {
                                let _ = write!(out, ",{},{}", ci.lo, ci.hi);
                            }
                            None => out.push_str(",,"),
                        }
                    }
                    None => out.push_str(",,,,,,"),
                }
            }
            out.push('\n');
        }
        out
    }
}
