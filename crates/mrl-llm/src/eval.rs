//! Walk-forward evaluation of the actor (`mrl llm eval`) beside trained RL agents (RL², the
//! MLP), buy-and-hold, flat and the trader rules, with mrl-backtest's booking and metrics at
//! the same cost.
//!
//! The held-out bars are the last `test_share` of a series (or a market never trained
//! on); at each decision bar `t` the actor sees the context of bars at or before `t`
//! ([`ContextBuilder`]), and its position is held from the close of `t` to the close of
//! `t + 1`. A reply that cannot be parsed is counted and leaves the book flat for that bar.
//! Direction accuracy counts an `up` (`down`) call right when the next return is positive
//! (negative) and is taken over the non-flat calls; the error of the predicted return is the
//! mean absolute difference, in percent, over the parsed replies.
//!
//! A trained agent ([`agent_row`]) trades the same decision bars through mrl-backtest's
//! walk-forward engine: RL² trials whose adaptation episodes run on the bars just before
//! each evaluation window ([`plan_windows`] with the test period starting at the first
//! decision bar), greedy actions, the same cost; its positions are booked with the same
//! continuous book as the actor's.

use std::ops::Range;

use mrl_agent::Policy;
use mrl_backtest::{
    ActionMode, Baseline, DEFAULT_PERIODS_PER_YEAR, Metrics, PolicyRun, TestStart, TraderRule,
    WalkForwardConfig, Window, book_test_period, plan_windows, run_baseline, run_policy,
};
use mrl_data::BarSeries;
use mrl_env::MarketData;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::backend::{GenerateConfig, Message};
use crate::config::EvalConfig;
use crate::constrained::Template;
use crate::context::{ContextBuilder, ContextConfig};
use crate::embedded::EmbeddedBackend;
use crate::error::{Error, Result};
use crate::reply::{Direction, Prediction, parse_prediction};
use crate::roles;

/// One decision of the actor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The decision bar `t`.
    pub bar: usize,
    /// `(close[t+1] / close[t] − 1) · 100`, read after the decision.
    pub realised_return_pct: f64,
    /// The parsed answer; `None` when the reply could not be parsed.
    pub prediction: Option<Prediction>,
}

impl Decision {
    /// The position held over the next bar: the answer's, or flat without one.
    pub fn position(&self) -> f64 {
        self.prediction.as_ref().map_or(0.0, |p| p.position)
    }
}

/// One line of the evaluation table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRow {
    /// `base`, `round N`, a server model's name, or a baseline's report key.
    pub name: String,
    /// Decisions booked.
    pub decisions: usize,
    /// Replies that could not be parsed (`None` for the baselines).
    pub parse_failures: Option<usize>,
    /// Share of right `up`/`down` calls (`None` for the baselines or without such calls).
    pub direction_accuracy: Option<f64>,
    /// Share of `flat` calls among the parsed replies.
    pub flat_share: Option<f64>,
    /// Mean absolute error of the predicted return, percentage points.
    pub mae_pct: Option<f64>,
    /// Trading metrics of the booked positions (mrl-backtest).
    pub metrics: Metrics,
}

/// The evaluation of one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// The series' symbol.
    pub series: String,
    /// First decision bar.
    pub first_bar: usize,
    /// One past the last decision bar.
    pub end_bar: usize,
    /// Cost per unit of position traded.
    pub cost_rate: f64,
    /// Annualisation of the metrics.
    pub periods_per_year: f64,
    /// The models first, then the baselines.
    pub rows: Vec<EvalRow>,
}

/// The decision bars of the test period: from the start of the last `test_share` (and no
/// earlier than `first_bar`), at most `decisions` of them, each with a next bar.
///
/// # Errors
/// [`Error::NoData`] when the period is empty.
pub fn test_bars(
    series: &BarSeries,
    config: &EvalConfig,
    first_bar: usize,
) -> Result<Range<usize>> {
    let n = series.len();
    let start = ((n as f64 * (1.0 - config.test_share)).ceil() as usize).max(first_bar);
    let end = (start + config.decisions).min(n.saturating_sub(1));
    if start >= end {
        return Err(Error::NoData {
            reason: format!(
                "{} bars leave no decision in the test period (last {} of the series, after bar {first_bar})",
                n, config.test_share
            ),
        });
    }
    Ok(start..end)
}

/// The actor's decisions at `bars`, each from the context of bars at or before it;
/// `decide` answers the actor's messages with the reply text.
///
/// # Errors
/// Context and `decide` errors.
pub fn actor_decisions(
    series: &BarSeries,
    context: ContextConfig,
    bars: Range<usize>,
    decide: &mut dyn FnMut(&[Message]) -> Result<String>,
) -> Result<Vec<Decision>> {
    let builder = ContextBuilder::new(series, Vec::new(), context)?;
    let closes = series.closes();
    bars.map(|t| {
        let reply = decide(&roles::actor_messages(&builder.context_at(t)?))?;
        let prediction = parse_prediction(&reply).ok().map(|p| p.value);
        tracing::debug!(bar = t, parsed = prediction.is_some(), "actor decision");
        Ok(Decision {
            bar: t,
            realised_return_pct: (closes[t + 1] / closes[t] - 1.0) * 100.0,
            prediction,
        })
    })
    .collect()
}

/// A decider for [`actor_decisions`] on an embedded model: greedy constrained decoding of
/// the actor's JSON ([`Template::prediction`]).
pub fn constrained_actor(
    backend: &mut EmbeddedBackend,
    rationale_tokens: usize,
) -> impl FnMut(&[Message]) -> Result<String> + '_ {
    move |messages| {
        let ids = backend.tokenizer().encode(&backend.prompt(messages))?;
        let generated = backend.generate_constrained(
            &ids,
            &Template::prediction(rationale_tokens),
            &GenerateConfig::greedy(1),
        )?;
        backend.tokenizer().decode(&generated.ids)
    }
}

fn periods_per_year(series: &BarSeries) -> f64 {
    series
        .periods_per_year()
        .unwrap_or(DEFAULT_PERIODS_PER_YEAR as f64)
}

/// Books `positions` (one per bar of `bars`) with mrl-backtest and computes the metrics.
fn book(series: &BarSeries, bars: &Range<usize>, positions: Vec<f64>, cost_rate: f64) -> Metrics {
    let window = Window {
        index: 0,
        eval: bars.clone(),
        adaptation: Vec::new(),
    };
    let run = PolicyRun {
        positions: vec![vec![positions]],
    };
    book_windows(series, &[window], &run, cost_rate)
}

/// Books the evaluation windows of `run` as one continuous strategy and computes the
/// metrics (mrl-backtest's [`book_test_period`]).
fn book_windows(
    series: &BarSeries,
    windows: &[Window],
    run: &PolicyRun,
    cost_rate: f64,
) -> Metrics {
    let records = book_test_period(
        series.timestamps(),
        series.closes(),
        windows,
        run,
        cost_rate,
    );
    let returns: Vec<f64> = records.iter().map(|r| r.reward).collect();
    let held: Vec<f64> = records.iter().map(|r| r.position).collect();
    Metrics::compute(&returns, &held, periods_per_year(series))
}

/// The walk-forward windows of an agent on the decision bars `bars`: mrl-backtest's
/// [`plan_windows`] with the test period starting at `bars.start`, cut at `bars.end`.
///
/// # Errors
/// [`Error::Backtest`] when the adaptation episodes before the first window do not fit
/// after the feature warm-up (it names the lengths) or the config is invalid.
pub fn agent_windows(
    series: &BarSeries,
    bars: &Range<usize>,
    config: &WalkForwardConfig,
) -> Result<Vec<Window>> {
    let config = WalkForwardConfig {
        test_start: TestStart::Index(bars.start),
        ..config.clone()
    };
    Ok(plan_windows(series.timestamps(), &config)?
        .into_iter()
        .filter(|w| w.eval.start < bars.end)
        .map(|mut w| {
            w.eval.end = w.eval.end.min(bars.end);
            w
        })
        .collect())
}

/// The table row of a trained agent (RL², the MLP, any mrl-agent [`Policy`]) on the
/// decision bars `bars`: greedy actions through mrl-backtest's walk-forward engine
/// ([`run_policy`] over [`agent_windows`]; `config` carries the agent's trial settings,
/// e.g. from its training run), the env and the book charged `cost_rate` (which replaces
/// `config.cost_rate`, so that every row pays the same cost). The forecast columns are
/// `None`: an agent chooses positions, not predictions.
///
/// # Errors
/// [`Error::Backtest`] for a policy that does not read the env's inputs, adaptation
/// episodes that do not fit before `bars`, env and agent errors.
pub fn agent_row(
    name: &str,
    series: &BarSeries,
    bars: &Range<usize>,
    policy: &Policy,
    config: &WalkForwardConfig,
    cost_rate: f64,
) -> Result<EvalRow> {
    let config = WalkForwardConfig {
        cost_rate,
        mode: ActionMode::Greedy,
        ..config.clone()
    };
    let windows = agent_windows(series, bars, &config)?;
    let market = MarketData::new(series.clone())
        .map_err(mrl_backtest::Error::from)?
        .shared();
    let run = run_policy(&market, &windows, policy, &config, None)?;
    tracing::debug!(name, windows = windows.len(), "agent booked");
    Ok(EvalRow {
        name: name.to_string(),
        decisions: bars.len(),
        parse_failures: None,
        direction_accuracy: None,
        flat_share: None,
        mae_pct: None,
        metrics: book_windows(series, &windows, &run, cost_rate),
    })
}

/// The table row of a model's decisions.
pub fn actor_row(
    name: &str,
    series: &BarSeries,
    decisions: &[Decision],
    cost_rate: f64,
) -> EvalRow {
    let bars = decisions.first().map_or(0, |d| d.bar)..decisions.last().map_or(0, |d| d.bar + 1);
    let parsed: Vec<(&Prediction, f64)> = decisions
        .iter()
        .filter_map(|d| d.prediction.as_ref().map(|p| (p, d.realised_return_pct)))
        .collect();
    let calls: Vec<bool> = parsed
        .iter()
        .filter(|(p, _)| p.direction != Direction::Flat)
        .map(|(p, r)| match p.direction {
            Direction::Up => *r > 0.0,
            _ => *r < 0.0,
        })
        .collect();
    let share = |k: usize, n: usize| (n > 0).then(|| k as f64 / n as f64);
    EvalRow {
        name: name.to_string(),
        decisions: decisions.len(),
        parse_failures: Some(decisions.len() - parsed.len()),
        direction_accuracy: share(calls.iter().filter(|&&c| c).count(), calls.len()),
        flat_share: share(parsed.len() - calls.len(), parsed.len()),
        mae_pct: (!parsed.is_empty()).then(|| {
            parsed
                .iter()
                .map(|(p, r)| (p.return_pct - r).abs())
                .sum::<f64>()
                / parsed.len() as f64
        }),
        metrics: book(
            series,
            &bars,
            decisions.iter().map(Decision::position).collect(),
            cost_rate,
        ),
    }
}

/// Buy-and-hold, flat and the four trader rules on `bars`, at `cost_rate`.
///
/// # Errors
/// mrl-backtest errors.
pub fn baseline_rows(
    series: &BarSeries,
    bars: &Range<usize>,
    cost_rate: f64,
) -> Result<Vec<EvalRow>> {
    let window = Window {
        index: 0,
        eval: bars.clone(),
        adaptation: Vec::new(),
    };
    let config = WalkForwardConfig {
        cost_rate,
        ..WalkForwardConfig::default()
    };
    let mut baselines = vec![Baseline::BuyAndHold, Baseline::Flat];
    baselines.extend(
        TraderRule::standard(series.periods_per_year())
            .into_iter()
            .map(Baseline::Rule),
    );
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    baselines
        .iter()
        .map(|baseline| {
            let run = run_baseline(
                series.closes(),
                std::slice::from_ref(&window),
                baseline,
                &config,
                &mut rng,
            )?;
            let positions = run.positions[0].last().cloned().unwrap_or_default();
            Ok(EvalRow {
                name: baseline.name().to_string(),
                decisions: bars.len(),
                parse_failures: None,
                direction_accuracy: None,
                flat_share: None,
                mae_pct: None,
                metrics: book(series, bars, positions, cost_rate),
            })
        })
        .collect()
}

impl EvalReport {
    /// The report of `rows` (models) followed by the baselines on the same bars.
    ///
    /// # Errors
    /// mrl-backtest errors.
    pub fn new(
        series: &BarSeries,
        bars: Range<usize>,
        cost_rate: f64,
        mut rows: Vec<EvalRow>,
    ) -> Result<Self> {
        rows.extend(baseline_rows(series, &bars, cost_rate)?);
        Ok(Self {
            series: series.symbol().unwrap_or("series").to_string(),
            first_bar: bars.start,
            end_bar: bars.end,
            cost_rate,
            periods_per_year: periods_per_year(series),
            rows,
        })
    }

    /// The report as a Markdown table.
    pub fn markdown(&self) -> String {
        let opt = |v: Option<f64>, digits: usize| {
            v.map_or("–".to_string(), |v| format!("{v:.digits$}"))
        };
        let mut out = format!(
            "{}: decision bars {}–{}, cost {} bps\n\n| policy | decisions | parse failures | direction accuracy | flat calls | MAE (pp) | Sharpe | total return | max drawdown | trades |\n|---|---|---|---|---|---|---|---|---|---|\n",
            self.series,
            self.first_bar,
            self.end_bar.saturating_sub(1),
            self.cost_rate * 1e4
        );
        for r in &self.rows {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {:+.2}% | {:.2}% | {} |\n",
                r.name,
                r.decisions,
                r.parse_failures.map_or("–".into(), |n| n.to_string()),
                opt(r.direction_accuracy, 2),
                opt(r.flat_share, 2),
                opt(r.mae_pct, 3),
                opt(r.metrics.sharpe, 2),
                r.metrics.total_return * 100.0,
                r.metrics.max_drawdown * 100.0,
                r.metrics.trades
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mrl_data::{Bar, HOUR_MS};

    fn series(closes: &[f64]) -> BarSeries {
        let bars: Vec<Bar> = closes
            .iter()
            .enumerate()
            .map(|(i, &c)| Bar {
                timestamp: i as i64 * HOUR_MS,
                open: c,
                high: c,
                low: c,
                close: c,
                volume: 1.0,
            })
            .collect();
        BarSeries::new(&bars).unwrap()
    }

    fn call(direction: Direction, return_pct: f64, position: f64) -> Option<Prediction> {
        Some(Prediction {
            return_pct,
            direction,
            position,
            confidence: 0.5,
            rationale: String::new(),
        })
    }

    #[test]
    fn accuracy_error_and_booking_of_known_decisions() {
        // Closes 100, 110, 99, 99: returns +10 %, −10 %, 0 %.
        let s = series(&[100.0, 110.0, 99.0, 99.0]);
        let decisions = vec![
            Decision {
                bar: 0,
                realised_return_pct: 10.0,
                prediction: call(Direction::Up, 2.0, 1.0),
            },
            Decision {
                bar: 1,
                realised_return_pct: -10.0,
                prediction: call(Direction::Up, 1.0, 0.5),
            },
            Decision {
                bar: 2,
                realised_return_pct: 0.0,
                prediction: None,
            },
        ];
        let row = actor_row("m", &s, &decisions, 0.0);
        assert_eq!(row.decisions, 3);
        assert_eq!(row.parse_failures, Some(1));
        assert_eq!(row.direction_accuracy, Some(0.5));
        assert_eq!(row.flat_share, Some(0.0));
        // |2 − 10| and |1 + 10|: mean 9.5.
        assert!((row.mae_pct.unwrap() - 9.5).abs() < 1e-12);
        // Equity 1.1 · (1 − 0.05) · 1 = 1.045 without costs.
        assert!((row.metrics.total_return - 0.045).abs() < 1e-12);
        // With 10 bps: costs 1.0, 0.5, 0.5 of position traded.
        let costly = actor_row("m", &s, &decisions, 0.001);
        let want = (1.0 + 0.1 - 0.001) * (1.0 - 0.05 - 0.0005) * (1.0 - 0.0005) - 1.0;
        assert!((costly.metrics.total_return - want).abs() < 1e-12);
        // Buy-and-hold over the same bars: 99 / 100 − 1 less one entry cost.
        let report = EvalReport::new(&s, 0..3, 0.001, vec![costly]).unwrap();
        let bh = report
            .rows
            .iter()
            .find(|r| r.name == "buy_and_hold")
            .unwrap();
        let want = (1.0 + 0.1 - 0.001) * (99.0 / 110.0) - 1.0;
        assert!(
            (bh.metrics.total_return - want).abs() < 1e-12,
            "{}",
            bh.metrics.total_return
        );
        assert_eq!(report.rows.len(), 1 + 6);
        let table = report.markdown();
        assert!(
            table.contains("| m | 3 | 1 | 0.50 | 0.00 | 9.500 |"),
            "{table}"
        );
        assert!(table.contains("| flat | 3 | – |"), "{table}");
    }

    /// A random RL² agent (hidden 8) and the settings of a 3-episode trial of 10 bars.
    fn agent() -> (Policy, WalkForwardConfig) {
        let config = mrl_agent::AgentConfig {
            hidden: 8,
            ..mrl_agent::AgentConfig::default()
        };
        let policy = Policy::new(&config, &candle_core::Device::Cpu, 1).unwrap();
        let walk = WalkForwardConfig {
            window_len: 10,
            adaptation_len: 10,
            adaptation_episodes: 2,
            ..WalkForwardConfig::default()
        };
        (policy, walk)
    }

    /// Closes that wander: 100 · exp(0.02 · sin(0.7 t) + 0.001 t).
    fn wandering(n: usize) -> BarSeries {
        let closes: Vec<f64> = (0..n)
            .map(|t| 100.0 * (0.02 * (0.7 * t as f64).sin() + 0.001 * t as f64).exp())
            .collect();
        series(&closes)
    }

    #[test]
    fn agent_windows_cover_the_decision_bars_after_their_adaptation() {
        let s = wandering(300);
        let (_, walk) = agent();
        let windows = agent_windows(&s, &(250..265), &walk).unwrap();
        assert_eq!(windows.len(), 2);
        assert_eq!(windows[0].eval, 250..260);
        assert_eq!(windows[0].adaptation, vec![230..240, 240..250]);
        assert_eq!(windows[1].eval, 260..265);
        assert_eq!(windows[1].adaptation, vec![240..250, 250..260]);
        // Two adaptation episodes of 10 bars cannot start inside the 26-bar warm-up.
        assert!(matches!(
            agent_windows(&s, &(40..50), &walk),
            Err(Error::Backtest(mrl_backtest::Error::SeriesTooShort { .. }))
        ));
    }

    #[test]
    fn an_agent_row_books_what_mrl_backtest_books() {
        let s = wandering(300);
        let (policy, walk) = agent();
        // The whole held-out period: the same windows as mrl-backtest's own backtest.
        let bars = 210..299;
        let backtest_config = WalkForwardConfig {
            test_start: TestStart::Index(bars.start),
            cost_rate: 0.002,
            ..walk.clone()
        };
        let backtest =
            mrl_backtest::backtest(&s, &mrl_backtest::Policies::new(&policy), &backtest_config)
                .unwrap();
        let want = &backtest.report.policies["rl2"].metrics;
        // The row's cost replaces the config's (10 bps there).
        let row = agent_row("rl2", &s, &bars, &policy, &walk, 0.002).unwrap();
        assert_eq!(row.decisions, 89);
        assert_eq!(row.parse_failures, None);
        assert_eq!(row.mae_pct, None);
        assert!((row.metrics.total_return - want.total_return).abs() < 1e-12);
        assert_eq!(row.metrics.trades, want.trades);
        assert!(row.metrics.trades > 0, "this random agent takes a position");
        assert!(row.metrics.total_return.abs() > 1e-3);
        // A shorter span books the first bars of the same trials.
        let short = agent_row("rl2", &s, &(210..225), &policy, &walk, 0.002).unwrap();
        let records = &backtest.records["rl2"][..15];
        let equity = records.last().unwrap().equity;
        assert!((short.metrics.total_return - (equity - 1.0)).abs() < 1e-12);
    }

    #[test]
    fn the_test_period_is_the_held_out_end() {
        let s = series(&vec![100.0; 100]);
        let config = EvalConfig {
            test_share: 0.3,
            decisions: 10,
            ..EvalConfig::default()
        };
        assert_eq!(test_bars(&s, &config, 26).unwrap(), 70..80);
        let long = EvalConfig {
            decisions: 1000,
            ..config
        };
        assert_eq!(test_bars(&s, &long, 26).unwrap(), 70..99);
        assert!(matches!(
            test_bars(&s, &config, 99),
            Err(Error::NoData { .. })
        ));
    }
}
