//! [`backtest`]: the RL² agent and its baselines on the same walk-forward windows, with
//! metrics, adaptation curves and bootstrap intervals of Sharpe differences.

use std::collections::BTreeMap;
use std::sync::Arc;

use mrl_agent::Policy;
use mrl_data::BarSeries;
use mrl_env::{MarketData, MarketOracle};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::engine::check_policy;
use crate::{
    ActionMode, BacktestReport, Baseline, Metrics, PolicyReport, PolicyRun, Result, Ruin,
    SeedSpread, Span, StepRecord, TraderRule, WalkForwardConfig, Window, adaptation_curve,
    book_test_period, bootstrap_mean_sharpe_diff_ci, mean_metrics, plan_windows, run_baseline,
    run_policy,
};

/// The policies to compare.
#[derive(Debug, Clone)]
pub struct Policies<'a> {
    /// The agent under test (reported as `rl2`; any [`Policy`] works, an MLP included).
    pub rl2: &'a Policy,
    /// A memory-less baseline network (reported as `mlp`).
    pub mlp: Option<&'a Policy>,
    /// The oracle of a synthetic market whose true law is known ([`MarketOracle`],
    /// reported as `oracle`); built for this market's series.
    pub oracle: Option<MarketOracle>,
    /// Further agents compared on the same windows, each reported under its key (e.g.
    /// `transformer`, `task_inference`: [`PolicyKind::as_str`](mrl_agent::PolicyKind::as_str)).
    /// A key may not repeat or take the name of another policy of the report.
    pub others: Vec<(&'static str, &'a Policy)>,
}

impl<'a> Policies<'a> {
    /// Just the agent under test.
    pub fn new(rl2: &'a Policy) -> Self {
        Self {
            rl2,
            mlp: None,
            oracle: None,
            others: Vec::new(),
        }
    }
}

/// Per-step records of every policy (its first seed), keyed like the report.
pub type PolicyRecords = BTreeMap<String, Vec<StepRecord>>;

/// A finished backtest: the report, the per-step book of every policy, and the windows.
#[derive(Debug, Clone)]
pub struct Backtest {
    /// The summary ([`BacktestReport`]).
    pub report: BacktestReport,
    /// The test-period book of every policy (first seed of sampled runs).
    pub records: PolicyRecords,
    /// The evaluation windows and their adaptation episodes.
    pub windows: Vec<Window>,
    /// The positions of every policy and seed, `runs[name][seed]`.
    pub runs: BTreeMap<String, Vec<PolicyRun>>,
}

/// Streams of the seeded generators, so that every policy draws from its own.
#[derive(Clone, Copy)]
enum Stream {
    Rl2 = 1,
    Mlp = 2,
    Random = 3,
    Bootstrap = 4,
    /// The first of [`Policies::others`]; the `i`-th draws from stream `Others + i`.
    Others = 5,
}

/// The generator of `stream`, run `run`: `ChaCha8Rng::seed_from_u64(seed)` on stream
/// `(stream << 32) | run`.
fn stream_rng(seed: u64, stream: Stream, run: usize) -> ChaCha8Rng {
    stream_rng_at(seed, stream as u64, run)
}

/// [`stream_rng`] by stream number.
fn stream_rng_at(seed: u64, stream: u64, run: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream((stream << 32) | run as u64);
    rng
}

/// Backtests `policies` on `series` (raw features, as `MarketData::new` computes them).
///
/// # Errors
/// See [`backtest_market`].
pub fn backtest(
    series: &BarSeries,
    policies: &Policies<'_>,
    config: &WalkForwardConfig,
) -> Result<Backtest> {
    backtest_market(&MarketData::new(series.clone())?.shared(), policies, config)
}

/// Backtests `policies` on `market` (use this when the agent was trained on normalised
/// features: build the `MarketData` with the training normaliser).
///
/// Every policy trades the same windows ([`plan_windows`]) at the same cost: the agents
/// through RL² trials ([`run_policy`]), buy-and-hold, flat, random and the oracle through
/// [`run_baseline`]. Metrics are annualised by the series' own `periods_per_year`.
///
/// With sampled actions every agent and the random baseline trade one run per seed, and a
/// policy's reported figures are the means over its seeds ([`mean_metrics`]). The
/// Sharpe-difference interval of each policy against `rl2` is built on the same figures:
/// its point is `Sharpe(rl2) − Sharpe(policy)` as reported, and its bootstrap resamples the
/// test bars jointly for every seed of both ([`bootstrap_mean_sharpe_diff_ci`]), so a
/// printed difference and its interval come from one estimator. With one run each (greedy
/// actions) this is the bootstrap of the two books' Sharpe difference.
///
/// # Errors
/// [`Error::SeriesTooShort`](crate::Error::SeriesTooShort) naming the lengths,
/// [`Error::InputMismatch`](crate::Error::InputMismatch) for a policy that does not read the
/// env's inputs, [`Error::InvalidConfig`](crate::Error::InvalidConfig), env and agent
/// errors.
pub fn backtest_market(
    market: &Arc<MarketData>,
    policies: &Policies<'_>,
    config: &WalkForwardConfig,
) -> Result<Backtest> {
    let timestamps = market.timestamps();
    let closes = market.closes();
    let windows = plan_windows(timestamps, config)?;
    check_policy(policies.rl2, "rl2", config)?;
    if let Some(mlp) = policies.mlp {
        check_policy(mlp, "mlp", config)?;
    }
    for (i, &(name, policy)) in policies.others.iter().enumerate() {
        let taken = crate::POLICY_ORDER.contains(&name)
            || policies.others[..i].iter().any(|(other, _)| *other == name);
        if taken {
            return Err(crate::Error::InvalidConfig {
                field: "policies.others",
                value: name.to_owned(),
                reason: "the key repeats, or is the name of another policy of the report",
            });
        }
        check_policy(policy, name, config)?;
    }
    let periods_per_year = market.periods_per_year().unwrap_or(1.0);
    let _span = tracing::info_span!(
        "backtest",
        symbol = market.symbol().unwrap_or("-"),
        windows = windows.len()
    )
    .entered();

    let runs_per_policy = config.mode.runs();
    let mut runs: BTreeMap<String, Vec<PolicyRun>> = BTreeMap::new();
    let agent_runs = |policy: &Policy, stream: u64| -> Result<Vec<PolicyRun>> {
        match config.mode {
            ActionMode::Greedy => Ok(vec![run_policy(market, &windows, policy, config, None)?]),
            ActionMode::Sampled { seeds } => (0..seeds)
                .map(|s| {
                    let mut rng = stream_rng_at(config.seed, stream, s);
                    run_policy(market, &windows, policy, config, Some(&mut rng))
                })
                .collect(),
        }
    };
    runs.insert("rl2".into(), agent_runs(policies.rl2, Stream::Rl2 as u64)?);
    if let Some(mlp) = policies.mlp {
        runs.insert("mlp".into(), agent_runs(mlp, Stream::Mlp as u64)?);
    }
    for (i, &(name, policy)) in policies.others.iter().enumerate() {
        runs.insert(
            name.into(),
            agent_runs(policy, Stream::Others as u64 + i as u64)?,
        );
    }
    let mut baselines = vec![Baseline::BuyAndHold, Baseline::Flat, Baseline::Random];
    baselines.extend(TraderRule::standard(market.periods_per_year()).map(Baseline::Rule));
    baselines.extend(policies.oracle.clone().map(Baseline::Oracle));
    for baseline in &baselines {
        let n = if *baseline == Baseline::Random {
            runs_per_policy
        } else {
            1
        };
        let baseline_runs = (0..n)
            .map(|s| {
                let mut rng = stream_rng(config.seed, Stream::Random, s);
                run_baseline(closes, &windows, baseline, config, &mut rng)
            })
            .collect::<Result<Vec<_>>>()?;
        runs.insert(baseline.name().into(), baseline_runs);
    }

    let mut records = PolicyRecords::new();
    let mut reports = BTreeMap::new();
    let mut returns: BTreeMap<String, Vec<Vec<f64>>> = BTreeMap::new();
    for (name, policy_runs) in &runs {
        let books: Vec<Vec<StepRecord>> = policy_runs
            .iter()
            .map(|run| book_test_period(timestamps, closes, &windows, run, config.cost_rate))
            .collect();
        let book_returns: Vec<Vec<f64>> = books.iter().map(|b| returns_of(b)).collect();
        let metrics: Vec<Metrics> = books
            .iter()
            .zip(&book_returns)
            .map(|(b, r)| book_metrics(b, r, periods_per_year))
            .collect();
        let curves: Vec<Vec<f64>> = policy_runs
            .iter()
            .map(|run| adaptation_curve(closes, &windows, run, config.cost_rate))
            .collect();
        let ruin = ruin_of(&books);
        if let Some(r) = ruin {
            tracing::warn!(
                policy = %name,
                step = r.step,
                runs = r.runs_ruined,
                "book ruined: equity reached 0, flat from then on"
            );
        }
        let report = PolicyReport {
            metrics: mean_metrics(&metrics).unwrap_or_else(|| metrics_of(&[], periods_per_year)),
            ruined: ruin.is_some(),
            ruin,
            adaptation_curve: mean_columns(&curves),
            sharpe_diff_ci: None,
            seeds: SeedSpread::of(&metrics).filter(|s| s.seeds > 1),
        };
        reports.insert(name.clone(), report);
        returns.insert(name.clone(), book_returns);
        records.insert(name.clone(), books.into_iter().next().unwrap_or_default());
    }
    let runs_of = |name: &str| -> Vec<&[f64]> {
        returns
            .get(name)
            .map_or_else(Vec::new, |rs| rs.iter().map(Vec::as_slice).collect())
    };
    let rl2_returns = runs_of("rl2");
    for (i, (name, report)) in reports.iter_mut().enumerate() {
        if name == "rl2" {
            continue;
        }
        let mut rng = stream_rng(config.seed, Stream::Bootstrap, i);
        report.sharpe_diff_ci = bootstrap_mean_sharpe_diff_ci(
            &rl2_returns,
            &runs_of(name),
            periods_per_year,
            &config.bootstrap,
            &mut rng,
        );
    }
    let first = windows.first().map_or(0, |w| w.eval.start);
    let last = windows
        .last()
        .map_or(first, |w| w.eval.end.saturating_sub(1));
    let report = BacktestReport {
        periods_per_year,
        span: Span {
            start: timestamps[first],
            end: timestamps[last],
        },
        in_sample: None,
        policies: reports,
    };
    tracing::info!(
        rl2_sharpe = report.policies.get("rl2").and_then(|p| p.metrics.sharpe),
        "backtest done"
    );
    Ok(Backtest {
        report,
        records,
        windows,
        runs,
    })
}

/// Net returns of a book.
fn returns_of(records: &[StepRecord]) -> Vec<f64> {
    records.iter().map(|r| r.reward).collect()
}

/// The earliest ruin among `books` (one per run): the step at which a book first reached
/// equity 0 and the run it happened in (of equal steps the lowest run), and how many were
/// ruined. Its step is the earliest `ruin_step` of the runs' [`Metrics`], what
/// [`mean_metrics`] reports.
fn ruin_of(books: &[Vec<StepRecord>]) -> Option<Ruin> {
    let ruined: Vec<(usize, usize)> = books
        .iter()
        .enumerate()
        .filter_map(|(run, book)| Some((run, book.iter().position(|r| r.equity <= 0.0)?)))
        .collect();
    let &(run, step) = ruined.iter().min_by_key(|&&(run, step)| (step, run))?;
    let record = &books[run][step];
    Some(Ruin {
        run,
        step,
        bar: record.bar,
        timestamp: record.timestamp,
        runs_ruined: ruined.len(),
    })
}

/// [`Metrics`] of a book.
fn metrics_of(records: &[StepRecord], periods_per_year: f64) -> Metrics {
    book_metrics(records, &returns_of(records), periods_per_year)
}

/// [`Metrics`] of a book whose step returns ([`returns_of`]) are already built.
fn book_metrics(records: &[StepRecord], returns: &[f64], periods_per_year: f64) -> Metrics {
    let positions: Vec<f64> = records.iter().map(|r| r.position).collect();
    Metrics::compute(returns, &positions, periods_per_year)
}

/// Column means of equally long rows (empty when there are none).
fn mean_columns(rows: &[Vec<f64>]) -> Vec<f64> {
    let Some(first) = rows.first() else {
        return Vec::new();
    };
    let n = rows.len() as f64;
    (0..first.len())
        .map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A book of `len` steps whose equity reaches 0 at `ruined_at` (and stays there).
    fn book(len: usize, ruined_at: Option<usize>) -> Vec<StepRecord> {
        (0..len)
            .map(|t| StepRecord {
                timestamp: 1000 * t as i64,
                bar: 100 + t,
                window: 0,
                close: 1.0,
                position: 1.0,
                step_return: 0.0,
                cost: 0.0,
                reward: 0.0,
                equity: if ruined_at.is_some_and(|r| t >= r) {
                    0.0
                } else {
                    1.0
                },
            })
            .collect()
    }

    /// Issue case: seed 0 ruined at step 4, seed 1 at step 2. The report's ruin (text) and
    /// its `ruin_step` (JSON) both say step 2, in seed 1: one definition, the earliest ruin.
    #[test]
    fn ruin_is_the_earliest_over_the_runs_as_in_the_mean_metrics() {
        let books = [book(6, Some(4)), book(6, Some(2)), book(6, None)];
        let ruin = ruin_of(&books).unwrap();
        assert_eq!(
            (
                ruin.run,
                ruin.step,
                ruin.bar,
                ruin.timestamp,
                ruin.runs_ruined
            ),
            (1, 2, 102, 2000, 2)
        );
        let base = metrics_of(&books[2], 252.0);
        let per_seed = [Some(4), Some(2), None].map(|step| Metrics {
            ruin_step: step,
            ..base
        });
        assert_eq!(mean_metrics(&per_seed).unwrap().ruin_step, Some(ruin.step));
        // Of equal steps, the lowest seed.
        let tied = [book(5, None), book(5, Some(3)), book(5, Some(3))];
        assert_eq!(ruin_of(&tied).map(|r| (r.run, r.step)), Some((1, 3)));
        assert_eq!(ruin_of(&[book(5, None)]), None);
    }
}
