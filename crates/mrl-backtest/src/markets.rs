//! [`evaluate_markets`]: one walk-forward backtest per series, summarised one row per
//! series (Sharpe, Sortino, max drawdown and return of every policy) and a mean per
//! policy over the series where each figure is defined.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use mrl_data::BarSeries;
use serde::{Deserialize, Serialize};

use crate::report::{fit, pct};
use crate::{
    BacktestReport, Error, InSample, POLICY_ORDER, Policies, Result, SharpeDiffCi,
    WalkForwardConfig, backtest,
};

/// The headline figures of one policy on one series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MarketFigures {
    /// Annualised Sharpe ratio; `None` (JSON `null`) when undefined.
    pub sharpe: Option<f64>,
    /// Annualised Sortino ratio (downside deviation over all steps); `None` when undefined
    /// (no losing step).
    pub sortino: Option<f64>,
    /// Max drawdown, in [−1, 0].
    pub max_drawdown: f64,
    /// Compounded return over the test period.
    pub total_return: f64,
    /// Whether the book was ruined (equity reached 0) in any run.
    pub ruined: bool,
    /// Bootstrap confidence interval of `sharpe(rl2) − sharpe(this policy)`; `None` for
    /// `rl2` itself and where either Sharpe ratio is undefined.
    pub sharpe_diff_ci: Option<SharpeDiffCi>,
}

/// The mean figures of one policy over the series it traded. A ratio that is undefined
/// on a series is left out of its mean, and the mean says how many series it covers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MarketMeans {
    /// Series the policy traded.
    pub series: usize,
    /// Mean Sharpe ratio over the `sharpe_n` series where it is defined; `None` when it is
    /// defined on none.
    pub sharpe: Option<f64>,
    /// Series the Sharpe mean covers.
    pub sharpe_n: usize,
    /// Mean Sortino ratio over the `sortino_n` series where it is defined; `None` when it
    /// is defined on none.
    pub sortino: Option<f64>,
    /// Series the Sortino mean covers.
    pub sortino_n: usize,
    /// Mean max drawdown over all `series`.
    pub max_drawdown: f64,
    /// Mean total return over all `series`.
    pub total_return: f64,
    /// Series on which the book was ruined.
    pub ruined: usize,
}

/// One series of a multi-market evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarketRow {
    /// The series' label, unique within the summary: the caller's name (a file stem such
    /// as `BTCUSDT_1h`) or one derived by [`market_labels`].
    pub name: String,
    /// The series' symbol, when known.
    pub symbol: Option<String>,
    /// The bar spacing (`1h`, `1d`), when the series has 2 bars or more.
    pub interval: Option<String>,
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
    /// The series' label (as [`MarketRow::name`]).
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
    /// Mean figures by policy over the rows ([`MarketMeans`]).
    pub means: BTreeMap<String, MarketMeans>,
    /// Series whose evaluated bars the agent was trained on, by the caller's name for the
    /// series ([`InSample`]; set by a caller that knows the run, as `mrl eval markets`
    /// does); empty (no key) otherwise.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub in_sample: BTreeMap<String, InSample>,
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
                    ruined: p.ruined,
                    sharpe_diff_ci: p.sharpe_diff_ci,
                };
                (name.clone(), figures)
            })
            .collect()
    }
}

/// Labels for `series`, one each and all distinct: the symbol (`series <i>` without
/// one); where two series share it, the bar interval is added (`BTCUSDT 1h`,
/// `BTCUSDT 4h`), and a label that still repeats gets ` #2`, ` #3`, … in input order.
pub fn market_labels(series: &[BarSeries]) -> Vec<String> {
    let base: Vec<String> = series
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.symbol()
                .map_or_else(|| format!("series {i}"), str::to_string)
        })
        .collect();
    let labels = series
        .iter()
        .zip(&base)
        .map(
            |(s, b)| match (base.iter().filter(|x| *x == b).count(), s.interval()) {
                (2.., Some(interval)) => format!("{b} {interval}"),
                _ => b.clone(),
            },
        )
        .collect::<Vec<_>>();
    unique_labels(&labels)
}

/// `labels` with every repeat of an earlier label suffixed ` #2`, ` #3`, … (the first
/// keeps its label), skipping suffixes that are themselves taken: the row labels
/// [`evaluate_named_markets`] gives its series (unique labels come back unchanged).
pub fn unique_labels(labels: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(labels.len());
    for label in labels {
        let mut candidate = label.clone();
        let mut k = 1;
        while out.contains(&candidate) || (k > 1 && labels.contains(&candidate)) {
            k += 1;
            candidate = format!("{label} #{k}");
        }
        out.push(candidate);
    }
    out
}

/// Backtests `policies` on every series with the same config, labelling the rows by
/// [`market_labels`] (symbol, then interval where symbols repeat). See
/// [`evaluate_named_markets`].
///
/// # Errors
/// As [`evaluate_named_markets`].
pub fn evaluate_markets(
    policies: &Policies<'_>,
    series: &[BarSeries],
    config: &WalkForwardConfig,
) -> Result<MarketsSummary> {
    evaluate_named_markets(policies, &market_labels(series), series, config)
}

/// Backtests `policies` on every series with the same config, row `i` labelled
/// `names[i]` (a file stem, say; a repeated name gets ` #2`, ` #3`, …). A series that
/// fails (too short, say) is skipped with a warning and listed in
/// [`MarketsSummary::skipped`]. The oracle, when given, trades every series.
///
/// # Errors
/// [`Error::InvalidConfig`] when `names` and `series` differ in length;
/// [`Error::NoSeries`] when no series could be evaluated; the first error of a policy that
/// does not fit the env (the same for every series).
pub fn evaluate_named_markets(
    policies: &Policies<'_>,
    names: &[String],
    series: &[BarSeries],
    config: &WalkForwardConfig,
) -> Result<MarketsSummary> {
    if names.len() != series.len() {
        return Err(Error::InvalidConfig {
            field: "names",
            value: format!("{} names for {} series", names.len(), series.len()),
            reason: "one name per series",
        });
    }
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    for (name, s) in unique_labels(names).into_iter().zip(series) {
        match backtest(s, policies, config) {
            Ok(bt) => rows.push(MarketRow {
                name,
                symbol: s.symbol().map(str::to_string),
                interval: s.interval().map(|i| i.to_string()),
                bars: s.len(),
                periods_per_year: bt.report.periods_per_year,
                test_bars: bt.windows.iter().map(|w| w.eval.len()).sum(),
                policies: MarketFigures::of(&bt.report),
            }),
            Err(e @ (Error::InputMismatch { .. } | Error::InvalidConfig { .. })) => return Err(e),
            Err(e) => {
                tracing::warn!(series = %name, error = %e, "series skipped");
                skipped.push(SkippedSeries {
                    name,
                    reason: e.to_string(),
                });
            }
        }
    }
    if rows.is_empty() {
        return Err(Error::NoSeries {
            skipped: skipped.len(),
        });
    }
    let means = means_of(&rows);
    Ok(MarketsSummary {
        rows,
        skipped,
        means,
        in_sample: BTreeMap::new(),
    })
}

/// Policy names of `rows` in display order ([`POLICY_ORDER`], then any other name).
fn policy_names(rows: &[MarketRow]) -> Vec<String> {
    let mut names: Vec<String> = POLICY_ORDER
        .iter()
        .filter(|p| rows.iter().any(|r| r.policies.contains_key(**p)))
        .map(|p| p.to_string())
        .collect();
    for row in rows {
        for name in row.policies.keys() {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    names
}

/// [`MarketMeans`] by policy over `rows`.
fn means_of(rows: &[MarketRow]) -> BTreeMap<String, MarketMeans> {
    policy_names(rows)
        .into_iter()
        .map(|name| {
            let figs: Vec<&MarketFigures> =
                rows.iter().filter_map(|r| r.policies.get(&name)).collect();
            // Saturated figures (f64::MAX) would overflow a plain sum.
            let mean = |f: fn(&MarketFigures) -> f64| {
                crate::metrics::mean_without_overflow(
                    &figs.iter().map(|x| f(x)).collect::<Vec<_>>(),
                )
            };
            let defined = |f: fn(&MarketFigures) -> Option<f64>| {
                let values: Vec<f64> = figs.iter().filter_map(|x| f(x)).collect();
                let mean =
                    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64);
                (mean, values.len())
            };
            let (sharpe, sharpe_n) = defined(|x| x.sharpe);
            let (sortino, sortino_n) = defined(|x| x.sortino);
            let means = MarketMeans {
                series: figs.len(),
                sharpe,
                sharpe_n,
                sortino,
                sortino_n,
                max_drawdown: mean(|x| x.max_drawdown),
                total_return: mean(|x| x.total_return),
                ruined: figs.iter().filter(|x| x.ruined).count(),
            };
            (name, means)
        })
        .collect()
}

/// Width of one policy's block in the table.
const BLOCK: usize = 33;

/// One policy's block of a table row: Sharpe and Sortino (`-` where undefined), max
/// drawdown and return in percent, `!` after the return of a ruined book.
fn cells(
    (sharpe, sortino): (Option<f64>, Option<f64>),
    max_drawdown: f64,
    total_return: f64,
    ruined: bool,
) -> String {
    format!(
        " | {:>7} {:>7} {:>8} {:>8}{}",
        fit(sharpe, 2, 7),
        fit(sortino, 2, 7),
        pct(Some(max_drawdown), 8),
        pct(Some(total_return), 8),
        if ruined { "!" } else { "" }
    )
}

impl MarketsSummary {
    /// A table: one row per series and a `mean` row, and for each policy its Sharpe,
    /// Sortino, max drawdown and return (`-` where undefined, `!` after the return of a
    /// ruined book, scientific notation for a figure too wide for its column); first a
    /// warning for each in-sample series ([`MarketsSummary::in_sample`]); below, how many
    /// series each mean covers where a ratio is undefined somewhere, and the skipped series.
    pub fn to_table(&self) -> String {
        let names = policy_names(&self.rows);
        let mut warnings = String::new();
        for (name, s) in &self.in_sample {
            let _ = writeln!(warnings, "WARNING: {name}: {}", s.note);
        }
        let width = self
            .rows
            .iter()
            .map(|r| r.name.chars().count())
            .max()
            .unwrap_or(0)
            .max(6);
        let mut out = warnings;
        let _ = write!(out, "{:<width$} {:>7}", "series", "bars");
        for name in &names {
            let _ = write!(out, " | {name:^BLOCK$}");
        }
        out.push('\n');
        let _ = write!(out, "{:<width$} {:>7}", "", "");
        for _ in &names {
            let _ = write!(
                out,
                " | {:>7} {:>7} {:>8} {:>8}",
                "sharpe", "sortino", "max_dd", "return"
            );
        }
        out.push('\n');
        let missing = format!(" | {:>BLOCK$}", "-");
        for row in &self.rows {
            let _ = write!(out, "{:<width$} {:>7}", row.name, row.bars);
            for name in &names {
                out.push_str(&row.policies.get(name).map_or_else(
                    || missing.clone(),
                    |f| {
                        let ratios = (f.sharpe, f.sortino);
                        cells(ratios, f.max_drawdown, f.total_return, f.ruined)
                    },
                ));
            }
            out.push('\n');
        }
        let _ = write!(out, "{:<width$} {:>7}", "mean", "");
        for name in &names {
            out.push_str(&self.means.get(name).map_or_else(
                || missing.clone(),
                |m| cells((m.sharpe, m.sortino), m.max_drawdown, m.total_return, false),
            ));
        }
        out.push('\n');
        for name in &names {
            let Some(m) = self.means.get(name) else {
                continue;
            };
            if m.sharpe_n < m.series || m.sortino_n < m.series {
                let _ = writeln!(
                    out,
                    "{name}: mean Sharpe over {} of {} series, Sortino over {} (undefined elsewhere)",
                    m.sharpe_n, m.series, m.sortino_n
                );
            }
            if m.ruined > 0 {
                let _ = writeln!(
                    out,
                    "{name}: ruined (equity 0, flat from then on) on {} of {} series (!)",
                    m.ruined, m.series
                );
            }
        }
        out.push_str(&self.verdict().to_string());
        for s in &self.skipped {
            let _ = writeln!(out, "skipped {}: {}", s.name, s.reason);
        }
        out
    }

    /// CSV: `series,bars,periods_per_year,test_bars,in_sample_bars` (evaluated bars the
    /// agent trained on, [`MarketsSummary::in_sample`]; 0 when none), then per policy
    /// `<policy>_sharpe`, `<policy>_sortino`, `<policy>_max_drawdown`, `<policy>_total_return`, the bootstrap
    /// interval of the Sharpe difference from rl2, `<policy>_dsharpe_lo` and
    /// `<policy>_dsharpe_hi`, and `<policy>_ruined` (`true`/`false`). An undefined figure
    /// is an empty cell (so is rl2's interval against itself).
    pub fn to_csv(&self) -> String {
        let names = policy_names(&self.rows);
        let mut out = String::from("series,bars,periods_per_year,test_bars,in_sample_bars");
        for n in &names {
            let _ = write!(
                out,
                ",{n}_sharpe,{n}_sortino,{n}_max_drawdown,{n}_total_return,{n}_dsharpe_lo,\
                 {n}_dsharpe_hi,{n}_ruined"
            );
        }
        out.push('\n');
        let cell = |x: Option<f64>| x.map_or_else(String::new, |v| v.to_string());
        for row in &self.rows {
            let _ = write!(
                out,
                "{},{},{},{},{}",
                row.name.replace(',', ";"),
                row.bars,
                row.periods_per_year,
                row.test_bars,
                self.in_sample.get(&row.name).map_or(0, |s| s.bars)
            );
            for n in &names {
                match row.policies.get(n) {
                    Some(f) => {
                        let ci = f.sharpe_diff_ci;
                        let _ = write!(
                            out,
                            ",{},{},{},{},{},{},{}",
                            cell(f.sharpe),
                            cell(f.sortino),
                            f.max_drawdown,
                            f.total_return,
                            cell(ci.map(|c| c.lo)),
                            cell(ci.map(|c| c.hi)),
                            f.ruined
                        );
                    }
                    None => out.push_str(",,,,,,,"),
                }
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mrl_data::{Bar, HOUR_MS};

    fn series(symbol: Option<&str>, step_ms: i64) -> BarSeries {
        let bars: Vec<Bar> = (0..3)
            .map(|i| Bar {
                timestamp: i * step_ms,
                open: 1.0,
                high: 1.0,
                low: 1.0,
                close: 1.0,
                volume: 1.0,
            })
            .collect();
        let s = BarSeries::new(&bars).unwrap();
        match symbol {
            Some(sym) => s.with_symbol(sym),
            None => s,
        }
    }

    #[test]
    fn labels_are_distinct_and_add_the_interval_where_symbols_repeat() {
        let labels = market_labels(&[
            series(Some("BTCUSDT"), HOUR_MS),
            series(Some("BTCUSDT"), 4 * HOUR_MS),
            series(Some("ETHUSDT"), HOUR_MS),
            series(None, HOUR_MS),
            series(Some("BTCUSDT"), HOUR_MS),
        ]);
        assert_eq!(
            labels,
            [
                "BTCUSDT 1h",
                "BTCUSDT 4h",
                "ETHUSDT",
                "series 3",
                "BTCUSDT 1h #2"
            ]
        );
    }

    #[test]
    fn repeated_names_get_a_suffix_that_is_not_taken() {
        let names: Vec<String> = ["a", "a", "a #2", "b"].map(String::from).into();
        assert_eq!(unique_labels(&names), ["a", "a #3", "a #2", "b"]);
        // The CLI labels its notes with these and passes them on: unique labels come back
        // unchanged, so its notes and the summary's rows use the same labels.
        let once = unique_labels(&["x", "x", "y", "x"].map(String::from));
        assert_eq!(once, ["x", "x #2", "y", "x #3"]);
        assert_eq!(unique_labels(&once), once);
    }
}
