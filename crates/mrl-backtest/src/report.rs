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

/// What an agent trained on of one asset: its bars before `before` (ms UTC), or every bar
/// when `before` is `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainedAsset {
    /// The asset's symbol (`BTCUSDT`), as a series read from `BTCUSDT_1h.csv` carries it.
    pub symbol: String,
    /// First bar not trained on; `None` when training used all of the asset's bars.
    pub before: Option<i64>,
}

/// A backtest that evaluates bars the agent was trained on: an in-sample diagnostic, not a
/// test ([`InSample::of`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InSample {
    /// The training asset the series is.
    pub asset: String,
    /// First bar of the asset the agent did not train on (ms UTC); `None` when it trained
    /// on all of them.
    pub trained_before: Option<i64>,
    /// Evaluated bars the agent trained on.
    pub bars: usize,
    /// Evaluated bars in all.
    pub evaluated: usize,
    /// The warning, in words.
    pub note: String,
}

impl InSample {
    /// Whether evaluating the decision bars at `evaluated` (timestamps, ms UTC) of a series
    /// named `name` (its symbol, or its file's stem) evaluates bars listed in `trained`. A
    /// training asset matches a name equal to it, or starting with it and then a character
    /// that is not a letter or digit (`BTCUSDT_1h`, `BTCUSDT-1h-2022`, `BTC_USDT_1h` for the
    /// asset `BTC_USDT`), ignoring ASCII case (file names may be lower case); the longest
    /// matching asset name counts, and of its entries the one covering most evaluated bars.
    /// `None` when the name is unknown or no asset matches it, or no evaluated bar lies in
    /// its training bars.
    pub fn of(name: Option<&str>, evaluated: &[i64], trained: &[TrainedAsset]) -> Option<Self> {
        let name = name?;
        let matches = |asset: &str| {
            name.len() >= asset.len()
                && name.is_char_boundary(asset.len())
                && name[..asset.len()].eq_ignore_ascii_case(asset)
                && name[asset.len()..]
                    .chars()
                    .next()
                    .is_none_or(|c| !c.is_alphanumeric())
        };
        let (asset, bars) = trained
            .iter()
            .filter(|a| !a.symbol.is_empty() && matches(&a.symbol))
            .map(|a| {
                let bars = match a.before {
                    Some(cut) => evaluated.iter().filter(|&&t| t < cut).count(),
                    None => evaluated.len(),
                };
                (a, bars)
            })
            .max_by_key(|&(a, bars)| (a.symbol.len(), bars, a.before.is_none()))?;
        if bars == 0 {
            return None;
        }
        let trained_on = match asset.before {
            Some(cut) => format!("its bars before {}", mrl_data::format_timestamp(cut)),
            None => "all of its bars; the run has no test_start".to_string(),
        };
        let note = format!(
            "in-sample: the agent was trained on {} ({trained_on}) and {bars} of the {} \
             evaluated bars lie there: an in-sample diagnostic, not an out-of-sample test",
            asset.symbol,
            evaluated.len()
        );
        Some(Self {
            asset: asset.symbol.clone(),
            trained_before: asset.before,
            bars,
            evaluated: evaluated.len(),
            note,
        })
    }
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
    /// The spread of `values`; `None` when empty. Finite values whose sums overflow (figures
    /// near `f64::MAX`) are averaged without overflow, so finite values give finite figures.
    pub fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        let (mean, std) = crate::metrics::without_overflow(values, |values| {
            let mean = values.iter().sum::<f64>() / n;
            let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
            (mean, var.sqrt())
        });
        Some(Self {
            n: values.len(),
            mean,
            std,
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

/// Where a policy's book was ruined: the earliest step of the test period at which the
/// equity of one of its runs reached 0 (from then on that run books flat, zero-return
/// steps). With several runs (seeds) it is the run ruined first in time (of equal steps,
/// the lowest seed); the same step is [`Metrics::ruin_step`] of the policy's report, which
/// [`mean_metrics`] takes as the earliest ruin step over the runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ruin {
    /// The run (seed index) this describes: the run ruined earliest.
    pub run: usize,
    /// Step of the test period (0 = its first decision bar), the earliest over the runs.
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
    /// The earliest ruin over the runs ([`Ruin`]); `None` when no run was ruined.
    pub ruin: Option<Ruin>,
    /// Mean return (sum of net returns, each episode from flat) by episode index of the
    /// trial: the adaptation episodes, then the evaluation window.
    pub adaptation_curve: Vec<f64>,
    /// Bootstrap CI of `sharpe(rl2) − sharpe(this)`, the difference of the two Sharpe
    /// ratios of the report (each the mean over the policy's seeds), resampling the test
    /// bars jointly for every seed of both
    /// ([`bootstrap_mean_sharpe_diff_ci`](crate::bootstrap_mean_sharpe_diff_ci)); `None`
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
/// An undefined figure (a Sharpe ratio of constant returns, say) is `null`. A report whose
/// test span overlaps the agent's training data has an `in_sample` key too ([`InSample`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BacktestReport {
    /// Bars per year of the series (its calendar), used to annualise.
    pub periods_per_year: f64,
    /// First and last evaluated bar.
    pub span: Span,
    /// Set by a caller that knows what the agent trained on (`mrl backtest` reads the run's
    /// config) when the evaluated bars overlap it; `None` (no key) otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_sample: Option<InSample>,
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
    /// and the Sharpe-difference interval; an undefined figure is `-`, and a figure too wide
    /// for its column is written in scientific notation (`4.6e92`) so that the columns stay
    /// aligned. An in-sample warning ([`InSample`]) comes first; ruined books, what `-`
    /// under CAGR means and how the interval is made are listed below the table, then the
    /// verdict.
    pub fn to_table(&self) -> String {
        let mut out = format!(
            "periods/year {:.1}, span {} .. {}\n",
            self.periods_per_year,
            mrl_data::format_timestamp(self.span.start),
            mrl_data::format_timestamp(self.span.end)
        );
        if let Some(in_sample) = &self.in_sample {
            out.push_str(&format!("WARNING: {}\n", in_sample.note));
        }
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
                "{:<13} {:>9} {:>9} {:>8} {:>7} {:>8} {:>8} {:>7} {:>6} {:>6} {:>9} {:>6.3} {:>7}  {}\n",
                name,
                pct(Some(m.total_return), 9),
                pct(m.cagr, 9),
                pct(Some(m.volatility), 8),
                fit(m.sharpe, 2, 7),
                fit(m.sortino, 2, 8),
                pct(Some(m.max_drawdown), 8),
                fit(m.calmar, 2, 7),
                fit(m.win_rate, 3, 6),
                fit(m.profit_factor, 2, 6),
                fit(Some(m.turnover), 1, 9),
                m.exposure,
                m.trades,
                ci
            ));
        }
        for (name, p) in self.ordered() {
            if let Some(r) = p.ruin {
                let runs = p.seeds.as_ref().map_or(1, |s| s.seeds);
                let seed = if runs > 1 {
                    format!(", earliest in seed {}", r.run)
                } else {
                    String::new()
                };
                out.push_str(&format!(
                    "{name}: ruined (equity 0) at step {} ({}{seed}) in {} of {runs} run(s); flat from then on\n",
                    r.step,
                    mrl_data::format_timestamp(r.timestamp),
                    r.runs_ruined
                ));
            }
        }
        if self.policies.values().any(|p| p.metrics.cagr.is_none()) {
            out.push_str(
                "cagr, calmar: - over a test span under one year (a short span is not \
                 annualised, GIPS I.5.A.4; read the return), or where the figure overflows\n",
            );
        }
        let ci = self.policies.values().find_map(|p| p.sharpe_diff_ci);
        if let Some(c) = ci {
            let seeds = self.policies.values().any(|p| p.seeds.is_some());
            out.push_str(&format!(
                "Δsharpe rl2: Sharpe(rl2) − Sharpe(policy){}; {:.0}% CI: paired stationary \
                 bootstrap of the test bars (Politis & Romano 1994){}\n",
                if seeds {
                    ", each the mean over its seeds"
                } else {
                    ""
                },
                100.0 * c.confidence,
                if seeds {
                    ", every seed of both resampled on the same bars"
                } else {
                    ""
                },
            ));
        }
        if let Some(verdict) = self.verdict() {
            out.push_str(&verdict.to_string());
        }
        out
    }
}

/// `x` with `decimals` decimals in at most `width` characters: in scientific notation with
/// as many significant digits as fit (`4.6e92`, `-1e300`) when the fixed form is wider;
/// `-` when undefined.
pub(crate) fn fit(x: Option<f64>, decimals: usize, width: usize) -> String {
    x.map_or_else(|| "-".to_string(), |v| fit_scaled(v, decimals, width, 0))
}

/// `x` as a percentage with 2 decimals and a `%`, in at most `width` characters ([`fit`];
/// a figure whose hundredfold overflows, such as a saturated volatility, too); `-` when
/// undefined.
pub(crate) fn pct(x: Option<f64>, width: usize) -> String {
    x.map_or_else(
        || "-".to_string(),
        |v| {
            let text = if (100.0 * v).is_finite() {
                fit_scaled(100.0 * v, 2, width - 1, 0)
            } else {
                fit_scaled(v, 2, width - 1, 2)
            };
            format!("{text}%")
        },
    )
}

/// `v · 10^shift` (`shift` only in scientific notation, for a figure whose scaled value would
/// overflow) with `decimals` decimals, in scientific notation when wider than `width`.
fn fit_scaled(v: f64, decimals: usize, width: usize, shift: i32) -> String {
    let fixed = format!("{v:.decimals$}");
    if shift == 0 && fixed.chars().count() <= width {
        return fixed;
    }
    let sci = |digits: usize| {
        let text = format!("{v:.digits$e}");
        match text.split_once('e') {
            Some((mantissa, exp)) if shift != 0 => {
                let exp: i32 = exp.parse().unwrap_or(0);
                format!("{mantissa}e{}", exp + shift)
            }
            _ => text,
        }
    };
    (0..=decimals)
        .rev()
        .map(sci)
        .find(|s| s.chars().count() <= width)
        .unwrap_or_else(|| sci(0))
}

impl fmt::Display for BacktestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_table())
    }
}

/// The mean of per-seed metrics: each figure averaged (without overflow, [`Spread::of`]),
/// the ones that may be undefined (Sharpe, Sortino, CAGR, Calmar, win rate, profit factor)
/// over the seeds where they are defined (`None` when none is; [`SeedSpread`] says how
/// many), trades rounded, and the earliest ruin step over the seeds (the step of the
/// policy's [`Ruin`]).
pub fn mean_metrics(runs: &[Metrics]) -> Option<Metrics> {
    let first = *runs.first()?;
    if runs.len() == 1 {
        return Some(first);
    }
    let n = runs.len() as f64;
    let mean = |f: fn(&Metrics) -> f64| {
        crate::metrics::mean_without_overflow(&runs.iter().map(f).collect::<Vec<_>>())
    };
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

    /// Issue case: a CAGR of 4.6e92 % and an equity of 1e300 were printed in full and broke
    /// the table's columns; too wide a figure is written in scientific notation instead.
    #[test]
    fn figures_fit_their_columns() {
        assert_eq!(fit(Some(1.234), 2, 7), "1.23");
        assert_eq!(fit(Some(-12345.678), 2, 7), "-1.23e4");
        assert_eq!(fit(Some(4.6e92), 2, 7), "4.60e92");
        assert_eq!(fit(Some(-1.5e300), 2, 6), "-2e300");
        assert_eq!(fit(None, 2, 7), "-");
        assert_eq!(pct(Some(4.6e90), 9), "4.60e92%");
        assert_eq!(pct(Some(f64::MAX), 8), "1.8e310%");
        assert_eq!(pct(Some(-0.0271), 9), "-2.71%");
        for v in [1e-300, 0.5, 3.0, 1e5, 1e50, 1e300, f64::MAX, -f64::MAX] {
            for width in [6, 7, 8, 9] {
                let text = fit(Some(v), 2, width);
                assert!(text.chars().count() <= width, "{v} in {width}: {text}");
            }
        }
    }

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

    /// A series is matched to a training asset by its name: the asset itself, or the asset
    /// then a separator (file names such as `BTCUSDT-1h-2022` or `BTC_USDT_1h`), the
    /// longest matching asset first; `BTCUSDTX` is another asset.
    #[test]
    fn in_sample_matches_an_asset_then_a_separator() {
        let asset = |symbol: &str, before: Option<i64>| TrainedAsset {
            symbol: symbol.into(),
            before,
        };
        let trained = [
            asset("BTCUSDT", Some(100)),
            asset("BTC", None),
            asset("BTC_USDT", Some(50)),
        ];
        let evaluated = [10, 60, 120];
        let hit = |name: &str| InSample::of(Some(name), &evaluated, &trained);
        for (name, symbol, bars) in [
            ("BTCUSDT", "BTCUSDT", 2),
            ("btcusdt_1h", "BTCUSDT", 2),
            ("BTCUSDT-1h-2022", "BTCUSDT", 2),
            ("BTCUSDT.1h", "BTCUSDT", 2),
            ("BTC_USDT_1h", "BTC_USDT", 1),
            ("BTC-PERP", "BTC", 3),
        ] {
            let found = hit(name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!((found.asset.as_str(), found.bars), (symbol, bars), "{name}");
            assert_eq!(found.evaluated, 3);
        }
        for name in ["BTCUSDTX_1h", "ETHUSDT_1h", "XBTC", ""] {
            assert!(hit(name).is_none(), "{name}");
        }
        assert!(InSample::of(None, &evaluated, &trained).is_none());
        // Evaluated bars after the asset's training bars are not in-sample.
        assert!(InSample::of(Some("BTCUSDT"), &[200, 300], &trained[..1]).is_none());
    }
}
