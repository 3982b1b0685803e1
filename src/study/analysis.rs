//! From per-market figures to the findings of a study: each seed's means over the markets,
//! the spread across seeds, curve bands, paired Sharpe differences with two-way bootstrap
//! intervals, the adaptation gain, and the verdict and deployment lines.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use mrl_backtest::{DiffInterval, Spread, crossed_bootstrap_ci, mean_defined};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{
    Comparison, CurveBand, Deployment, MarketResult, PolicyFigures, PooledPolicy, SAMPLED_SUFFIX,
    SeedDiff, SeedFigures, SeedResult, is_agent_key,
};

/// Paired Sharpe differences of `a` against `b` over every seed and market of `per_seed`.
pub fn compare(
    per_seed: &[SeedResult],
    a: &str,
    b: &str,
    resamples: usize,
    confidence: f64,
    rng: &mut ChaCha8Rng,
) -> Comparison {
    let diffs: Vec<Vec<Option<f64>>> = per_seed
        .iter()
        .map(|s| {
            s.markets
                .iter()
                .map(|m| {
                    let sharpe = |k: &str| m.policies.get(k).and_then(|p| p.sharpe);
                    Some(sharpe(a)? - sharpe(b)?)
                })
                .collect()
        })
        .collect();
    let per_seed_diffs: Vec<SeedDiff> = per_seed
        .iter()
        .zip(&diffs)
        .map(|(s, row)| SeedDiff {
            seed: s.seed,
            pairs: row.iter().flatten().count(),
            mean: mean_defined(row.iter().copied()),
        })
        .collect();
    Comparison {
        a: a.to_string(),
        b: b.to_string(),
        pairs: diffs.iter().flatten().flatten().count(),
        pairs_total: diffs.iter().map(Vec::len).sum(),
        interval: crossed_bootstrap_ci(&diffs, resamples, confidence, rng),
        weaker_seeds: per_seed_diffs
            .iter()
            .filter(|d| d.mean.is_some_and(|m| m < 0.0))
            .map(|d| d.seed)
            .collect(),
        per_seed: per_seed_diffs,
    }
}

/// Whether an agent adapts within the trial: how its return changes from the first episode
/// to the last, alone and net of a memory-less baseline's change over the same windows.
///
/// The episodes of a walk-forward trial are consecutive windows of the market, so the
/// agent's rise alone mixes adaptation with whatever the later windows hold (buy-and-hold
/// and the MLP move between windows too). The baseline cannot carry anything from one
/// episode to the next, so `gain`, a difference in differences, is the part of the rise that
/// memory explains. Both are means over every (seed, market) pair with the two-way bootstrap
/// interval of [`crossed_bootstrap_ci`]; returns are fractions per episode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaptationGain {
    /// Policy key of the agent.
    pub agent: String,
    /// Policy key of the memory-less baseline.
    pub baseline: String,
    /// Episodes per trial (the first is compared with the last).
    pub episodes: usize,
    /// Pairs with both curves of that length.
    pub pairs: usize,
    /// `R_agent(last) − R_agent(first)`; `None` without a pair.
    pub rise: Option<DiffInterval>,
    /// `[R_agent − R_baseline](last) − [R_agent − R_baseline](first)`; `None` without a pair.
    pub gain: Option<DiffInterval>,
    /// The line that says so.
    pub line: String,
}

/// [`AdaptationGain`] of `agent` against `baseline` over every seed and market of
/// `per_seed`, from the per-market adaptation curves (pairs whose curves are shorter than two
/// episodes or differ in length are left out).
pub fn adaptation_gain(
    per_seed: &[SeedResult],
    agent: &str,
    baseline: &str,
    resamples: usize,
    confidence: f64,
    rng: &mut ChaCha8Rng,
) -> AdaptationGain {
    fn pair<'m>(m: &'m MarketResult, a: &str, b: &str) -> Option<(&'m [f64], &'m [f64])> {
        let a = &m.policies.get(a)?.adaptation_curve;
        let b = &m.policies.get(b)?.adaptation_curve;
        (a.len() >= 2 && a.len() == b.len()).then_some((a.as_slice(), b.as_slice()))
    }
    let curves = |m| pair(m, agent, baseline);
    let episodes = per_seed
        .iter()
        .flat_map(|s| &s.markets)
        .find_map(|m| curves(m).map(|(a, _)| a.len()))
        .unwrap_or(0);
    let rows = |f: &dyn Fn(&[f64], &[f64]) -> f64| -> Vec<Vec<Option<f64>>> {
        per_seed
            .iter()
            .map(|s| {
                s.markets
                    .iter()
                    .map(|m| {
                        curves(m)
                            .filter(|(a, _)| a.len() == episodes)
                            .map(|(a, b)| f(a, b))
                    })
                    .collect()
            })
            .collect()
    };
    let last = episodes.saturating_sub(1);
    let rise_rows = rows(&|a, _| a[last] - a[0]);
    let gain_rows = rows(&|a, b| (a[last] - b[last]) - (a[0] - b[0]));
    let pairs = gain_rows.iter().flatten().flatten().count();
    let rise = crossed_bootstrap_ci(&rise_rows, resamples, confidence, rng);
    let gain = crossed_bootstrap_ci(&gain_rows, resamples, confidence, rng);
    let line = adaptation_line(agent, baseline, episodes, pairs, rise, gain);
    AdaptationGain {
        agent: agent.into(),
        baseline: baseline.into(),
        episodes,
        pairs,
        rise,
        gain,
        line,
    }
}

/// `+1.20 pp (95% CI +0.40 to +2.00)` for an interval of fractions.
fn describe_pp(i: &DiffInterval) -> String {
    format!(
        "{:+.2} pp ({:.0}% CI {:+.2} to {:+.2})",
        100.0 * i.mean,
        100.0 * i.confidence,
        100.0 * i.lo,
        100.0 * i.hi
    )
}

/// An agent's name in prose (`RL²` for `rl2`, …), the key for an unknown one.
fn agent_name(key: &str) -> String {
    match key {
        "rl2" => "RL²".into(),
        "mlp" => "the MLP".into(),
        "transformer" => "the Transformer".into(),
        "task_inference" => "the task-inference agent".into(),
        other => other.into(),
    }
}

/// The adaptation line of [`AdaptationGain`].
fn adaptation_line(
    agent: &str,
    baseline: &str,
    episodes: usize,
    pairs: usize,
    rise: Option<DiffInterval>,
    gain: Option<DiffInterval>,
) -> String {
    let (Some(rise), Some(gain)) = (rise, gain) else {
        return format!(
            "Adaptation of {} cannot be measured: no seed×market pair has two or more episodes \
             of both it and {}.",
            agent_name(agent),
            prose_name(baseline)
        );
    };
    let verdict = if gain.lo > 0.0 {
        "it adapts: its edge grows"
    } else if gain.hi < 0.0 {
        "its edge shrinks"
    } else {
        "adaptation is not shown: its edge does not grow distinguishably"
    };
    format!(
        "Adaptation: {}'s return per episode changes from episode 1 to {episodes} by {}; \
         against {} (no memory, the same windows) {verdict}, by {} ({pairs} seed×market pairs).",
        agent_name(agent),
        describe_pp(&rise),
        prose_name(baseline),
        describe_pp(&gain)
    )
}

/// A further agent of a study ([`StudyConfig::others`]) against RL² and the MLP.
///
/// [`StudyConfig::others`]: super::StudyConfig::others
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OtherAgent {
    /// Its policy key (`transformer`, `task_inference`).
    pub key: String,
    /// Paired Sharpe differences against RL² (greedy).
    pub against_rl2: Comparison,
    /// Paired Sharpe differences against the MLP (greedy).
    pub against_mlp: Comparison,
    /// Whether it adapts within the trial, net of the MLP.
    pub adaptation: AdaptationGain,
    /// The line that says which wins.
    pub line: String,
}

impl OtherAgent {
    /// The comparison of `key` and its line.
    pub fn new(
        key: &str,
        against_rl2: Comparison,
        against_mlp: Comparison,
        adaptation: AdaptationGain,
    ) -> Self {
        let line = format!(
            "{} (greedy) on mean held-out Sharpe {}; {}.",
            agent_name(key),
            comparison_clause(&against_rl2),
            comparison_clause(&against_mlp)
        );
        Self {
            key: key.into(),
            against_rl2,
            against_mlp,
            adaptation,
            line,
        }
    }
}

/// Per policy key, the spread across seeds of each seed's means.
pub fn pool(per_seed: &[SeedResult]) -> BTreeMap<String, PooledPolicy> {
    let mut keys: Vec<&String> = per_seed.iter().flat_map(|s| s.policies.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|key| {
            let figs: Vec<&SeedFigures> = per_seed
                .iter()
                .filter_map(|s| s.policies.get(key))
                .collect();
            let spread = |f: fn(&SeedFigures) -> f64| {
                Spread::of(&figs.iter().map(|x| f(x)).collect::<Vec<_>>())
            };
            let pooled = PooledPolicy {
                seeds: figs.len(),
                sharpe: Spread::of_defined(figs.iter().map(|f| f.sharpe)),
                total_return: spread(|f| f.total_return)?,
                max_drawdown: spread(|f| f.max_drawdown)?,
            };
            Some((key.clone(), pooled))
        })
        .collect()
}

/// Point-by-point mean, min and max of equally long curves (the shortest length when they
/// differ); `None` without curves.
pub fn curve_band(curves: &[Vec<f64>]) -> Option<CurveBand> {
    let len = curves.iter().map(Vec::len).min()?;
    let column = |j: usize| curves.iter().map(move |c| c[j]);
    let n = curves.len() as f64;
    Some(CurveBand {
        mean: (0..len).map(|j| column(j).sum::<f64>() / n).collect(),
        min: (0..len)
            .map(|j| column(j).fold(f64::INFINITY, f64::min))
            .collect(),
        max: (0..len)
            .map(|j| column(j).fold(f64::NEG_INFINITY, f64::max))
            .collect(),
    })
}

/// `+0.12 (95% CI −0.03 to +0.30, 8 of 8 seed×market pairs)`, or `undefined`.
fn describe_diff(c: &Comparison) -> String {
    match c.interval {
        Some(i) => format!(
            "{:+.2} ({:.0}% CI {:+.2} to {:+.2}, {} of {} seed×market pairs)",
            i.mean,
            100.0 * i.confidence,
            i.lo,
            i.hi,
            c.pairs,
            c.pairs_total
        ),
        None => format!(
            "undefined (no seed×market pair of {} has both Sharpe ratios)",
            c.pairs_total
        ),
    }
}

/// Whether the interval lies above 0 (`Some(true)`), below 0 (`Some(false)`), or covers
/// 0 or is missing (`None`).
fn sign_of(c: &Comparison) -> Option<bool> {
    let i = c.interval?;
    if i.lo > 0.0 {
        Some(true)
    } else if i.hi < 0.0 {
        Some(false)
    } else {
        None
    }
}

/// A baseline's name in prose.
fn prose_name(key: &str) -> String {
    match key {
        "mlp_sampled" => "the sampled MLP".into(),
        "buy_and_hold" => "buy-and-hold".into(),
        "rl2_sampled" => "sampled RL²".into(),
        agent if is_agent_key(agent) => agent_name(agent),
        rule => format!("the best trader rule ({rule})"),
    }
}

/// `beats the MLP: Δ Sharpe +0.12 (95% CI …)`: whether `c.a` beats `c.b` on mean Sharpe, by
/// the interval of the difference, with that interval.
fn comparison_clause(c: &Comparison) -> String {
    let head = match sign_of(c) {
        Some(true) => "beats",
        Some(false) => "is beaten by",
        None if c.interval.is_some() => "is not distinguishable from",
        None => "cannot be compared with",
    };
    format!("{head} {}: Δ Sharpe {}", prose_name(&c.b), describe_diff(c))
}

/// The verdict line of `comparisons` (RL² against each baseline, greedy actions): for each
/// whether RL² beats it on mean Sharpe, with the interval, and the seeds where it is
/// weaker.
pub fn verdict(comparisons: &[&Comparison]) -> String {
    let mut clauses = Vec::new();
    let mut weaker = Vec::new();
    for c in comparisons {
        let name = prose_name(&c.b);
        clauses.push(comparison_clause(c));
        if !c.weaker_seeds.is_empty() {
            let seeds: Vec<String> = c.weaker_seeds.iter().map(u64::to_string).collect();
            let plural = if seeds.len() == 1 { "" } else { "s" };
            weaker.push(format!("{name} on seed{plural} {}", seeds.join(", ")));
        }
    }
    let mut line = format!(
        "RL² (greedy) on mean held-out Sharpe {}",
        clauses.join("; ")
    );
    if weaker.is_empty() {
        line.push_str("; it is not weaker on any seed.");
    } else {
        let _ = write!(line, "; weaker than {}.", weaker.join(", than "));
    }
    line
}

/// The deployment recommendation: the action mode with the better pooled held-out Sharpe
/// of RL² (greedy on a tie or when neither is defined, since it needs no random draw).
pub fn deployment(pooled: &BTreeMap<String, PooledPolicy>, diff: &Comparison) -> Deployment {
    let sharpe = |k: &str| pooled.get(k).and_then(|p| p.sharpe).map(|s| s.mean);
    let greedy = sharpe("rl2");
    let sampled = sharpe(&format!("rl2{SAMPLED_SUFFIX}"));
    let mode = match (greedy, sampled) {
        (Some(g), Some(s)) if s > g => "sampled",
        (None, Some(_)) => "sampled",
        _ => "greedy",
    };
    let fmt_opt = |x: Option<f64>| x.map_or_else(|| "undefined".into(), |v| format!("{v:.2}"));
    let line = format!(
        "Deploy {mode} actions: pooled held-out Sharpe of RL² {} greedy vs {} sampled; \
         greedy − sampled Δ Sharpe {}.",
        fmt_opt(greedy),
        fmt_opt(sampled),
        describe_diff(diff)
    );
    Deployment {
        mode: mode.into(),
        greedy_sharpe: greedy,
        sampled_sharpe: sampled,
        line,
    }
}

/// The figures of every policy of a backtest; the agents' keys get `suffix`, and with
/// `agents_only` the baselines are left out.
pub(super) fn figures_of(
    report: &mrl_backtest::BacktestReport,
    suffix: &str,
    agents_only: bool,
) -> BTreeMap<String, PolicyFigures> {
    report
        .policies
        .iter()
        .filter(|(name, _)| !agents_only || is_agent_key(name))
        .map(|(name, p)| {
            let key = if is_agent_key(name) {
                format!("{name}{suffix}")
            } else {
                name.clone()
            };
            let m = &p.metrics;
            let figures = PolicyFigures {
                sharpe: m.sharpe,
                sortino: m.sortino,
                total_return: m.total_return,
                max_drawdown: m.max_drawdown,
                adaptation_curve: p.adaptation_curve.clone(),
            };
            (key, figures)
        })
        .collect()
}

/// One seed's mean over the markets, per policy key, and the mean adaptation curves.
pub(super) fn seed_means(
    markets: &[MarketResult],
) -> (BTreeMap<String, SeedFigures>, BTreeMap<String, Vec<f64>>) {
    let mut keys: Vec<&String> = markets.iter().flat_map(|m| m.policies.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut figures = BTreeMap::new();
    let mut curves = BTreeMap::new();
    for key in keys {
        let figs: Vec<&PolicyFigures> =
            markets.iter().filter_map(|m| m.policies.get(key)).collect();
        let n = figs.len() as f64;
        let sharpe = Spread::of_defined(figs.iter().map(|f| f.sharpe));
        figures.insert(
            key.clone(),
            SeedFigures {
                markets: figs.len(),
                sharpe_markets: sharpe.map_or(0, |s| s.n),
                sharpe: sharpe.map(|s| s.mean),
                total_return: figs.iter().map(|f| f.total_return).sum::<f64>() / n,
                max_drawdown: figs.iter().map(|f| f.max_drawdown).sum::<f64>() / n,
            },
        );
        let rows: Vec<Vec<f64>> = figs.iter().map(|f| f.adaptation_curve.clone()).collect();
        if let Some(band) = curve_band(&rows) {
            curves.insert(key.clone(), band.mean);
        }
    }
    (figures, curves)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    /// A seed's result from its markets (no training runs).
    fn seed_of(seed: u64, markets: Vec<MarketResult>) -> SeedResult {
        let (policies, adaptation) = seed_means(&markets);
        SeedResult {
            seed,
            training: BTreeMap::new(),
            markets,
            policies,
            adaptation,
        }
    }

    fn seed_result(seed: u64, sharpes: &[(&str, &[Option<f64>])]) -> SeedResult {
        let n = sharpes[0].1.len();
        let markets: Vec<MarketResult> = (0..n)
            .map(|m| MarketResult {
                name: format!("m{m}"),
                test_bars: 10,
                policies: sharpes
                    .iter()
                    .map(|(k, v)| {
                        let f = PolicyFigures {
                            sharpe: v[m],
                            sortino: None,
                            total_return: 0.01 * m as f64,
                            max_drawdown: -0.1,
                            adaptation_curve: vec![0.0, 0.01],
                        };
                        (k.to_string(), f)
                    })
                    .collect(),
            })
            .collect();
        seed_of(seed, markets)
    }

    #[test]
    fn comparison_counts_pairs_and_names_weaker_seeds() {
        let per_seed = vec![
            seed_result(
                1,
                &[
                    ("rl2", &[Some(1.0), Some(0.5)]),
                    ("mlp", &[Some(0.5), None]),
                ],
            ),
            seed_result(
                2,
                &[
                    ("rl2", &[Some(0.0), Some(0.2)]),
                    ("mlp", &[Some(0.4), Some(0.4)]),
                ],
            ),
        ];
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let c = compare(&per_seed, "rl2", "mlp", 100, 0.95, &mut rng);
        assert_eq!((c.pairs, c.pairs_total), (3, 4));
        // (0.5 + (−0.4) + (−0.2)) / 3
        assert!((c.interval.unwrap().mean - (-0.1 / 3.0)).abs() < 1e-12);
        assert_eq!(c.per_seed[0].mean, Some(0.5));
        assert_eq!(c.per_seed[0].pairs, 1);
        assert!((c.per_seed[1].mean.unwrap() + 0.3).abs() < 1e-12);
        assert_eq!(c.weaker_seeds, vec![2]);
    }

    /// One seed whose markets hold `rl2` and `mlp` with the given adaptation curves.
    fn curves_result(seed: u64, markets: &[(&[f64], &[f64])]) -> SeedResult {
        let figures = |curve: &[f64]| PolicyFigures {
            sharpe: Some(0.0),
            sortino: None,
            total_return: 0.0,
            max_drawdown: 0.0,
            adaptation_curve: curve.to_vec(),
        };
        let markets: Vec<MarketResult> = markets
            .iter()
            .enumerate()
            .map(|(i, (rl2, mlp))| MarketResult {
                name: format!("m{i}"),
                test_bars: 10,
                policies: [("rl2", *rl2), ("mlp", *mlp)]
                    .into_iter()
                    .map(|(k, c)| (k.to_string(), figures(c)))
                    .collect(),
            })
            .collect();
        seed_of(seed, markets)
    }

    #[test]
    fn adaptation_gain_is_the_rise_net_of_the_memoryless_baseline() {
        // RL² rises by 0.03 on both markets of seed 1 while the MLP rises by 0.01 and 0.03:
        // gains 0.02 and 0. Seed 2: RL² rises by 0.05, the MLP falls by 0.01: gain 0.06.
        // The short curve of seed 2's second market is left out.
        let per_seed = vec![
            curves_result(
                1,
                &[
                    (&[0.01, 0.02, 0.04], &[0.0, 0.0, 0.01]),
                    (&[0.0, 0.01, 0.03], &[0.0, 0.02, 0.03]),
                ],
            ),
            curves_result(
                2,
                &[
                    (&[0.0, 0.0, 0.05], &[0.01, 0.0, 0.0]),
                    (&[0.0, 0.1], &[0.0, 0.0]),
                ],
            ),
        ];
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let g = adaptation_gain(&per_seed, "rl2", "mlp", 200, 0.95, &mut rng);
        assert_eq!((g.episodes, g.pairs), (3, 3));
        let (rise, gain) = (g.rise.unwrap(), g.gain.unwrap());
        assert!(
            (rise.mean - (0.03 + 0.03 + 0.05) / 3.0).abs() < 1e-12,
            "{rise:?}"
        );
        assert!(
            (gain.mean - (0.02 + 0.0 + 0.06) / 3.0).abs() < 1e-12,
            "{gain:?}"
        );
        assert!(gain.lo >= 0.0 && gain.hi <= 0.06 + 1e-12, "{gain:?}");
        assert!(
            g.line
                .contains("RL²'s return per episode changes from episode 1 to 3")
        );
        // A baseline that rises as much as the agent leaves no gain.
        let same = vec![curves_result(1, &[(&[0.0, 0.5], &[0.25, 0.75])])];
        let g = adaptation_gain(&same, "rl2", "mlp", 50, 0.95, &mut rng);
        let gain = g.gain.unwrap();
        assert!(gain.mean.abs() < 1e-12 && gain.lo.abs() < 1e-12 && gain.hi.abs() < 1e-12);
        assert!(g.line.contains("adaptation is not shown"), "{}", g.line);
        // Without the baseline nothing is measured, and the line says so.
        let g = adaptation_gain(&same, "rl2", "transformer", 50, 0.95, &mut rng);
        assert_eq!((g.pairs, g.rise, g.gain), (0, None, None));
        assert!(g.line.contains("cannot be measured"), "{}", g.line);
    }

    #[test]
    fn pooled_figures_are_means_of_the_seed_means() {
        let per_seed = vec![
            seed_result(1, &[("rl2", &[Some(1.0), Some(0.5)])]),
            seed_result(2, &[("rl2", &[Some(0.0), None])]),
        ];
        assert_eq!(per_seed[0].policies["rl2"].sharpe, Some(0.75));
        assert_eq!(per_seed[1].policies["rl2"].sharpe_markets, 1);
        let pooled = pool(&per_seed);
        let sharpe = pooled["rl2"].sharpe.unwrap();
        assert_eq!((sharpe.n, sharpe.mean, sharpe.std), (2, 0.375, 0.375));
        assert!((pooled["rl2"].total_return.mean - 0.005).abs() < 1e-15);
        assert_eq!(pooled["rl2"].max_drawdown.mean, -0.1);
    }

    #[test]
    fn verdict_says_who_wins_with_the_interval_and_the_weaker_seeds() {
        let comparison = |b: &str, lo: f64, hi: f64, weaker: Vec<u64>| Comparison {
            a: "rl2".into(),
            b: b.into(),
            pairs: 6,
            pairs_total: 8,
            interval: Some(DiffInterval {
                mean: (lo + hi) / 2.0,
                lo,
                hi,
                confidence: 0.95,
                resamples: 100,
            }),
            per_seed: Vec::new(),
            weaker_seeds: weaker,
        };
        let mlp = comparison("mlp", 0.1, 0.5, vec![]);
        let bh = comparison("buy_and_hold", -0.4, 0.2, vec![2, 3]);
        let line = verdict(&[&mlp, &bh]);
        assert_eq!(
            line,
            "RL² (greedy) on mean held-out Sharpe beats the MLP: Δ Sharpe +0.30 (95% CI +0.10 to \
             +0.50, 6 of 8 seed×market pairs); is not distinguishable from buy-and-hold: Δ Sharpe \
             -0.10 (95% CI -0.40 to +0.20, 6 of 8 seed×market pairs); weaker than buy-and-hold \
             on seeds 2, 3."
        );
        let all_good = verdict(&[&mlp]);
        assert!(
            all_good.ends_with("it is not weaker on any seed."),
            "{all_good}"
        );
        let lost = verdict(&[&comparison("macd", -0.5, -0.1, vec![1])]);
        assert!(
            lost.contains("is beaten by the best trader rule (macd)"),
            "{lost}"
        );
        assert!(
            lost.ends_with("weaker than the best trader rule (macd) on seed 1."),
            "{lost}"
        );
    }

    #[test]
    fn deployment_picks_the_better_pooled_sharpe_and_greedy_on_a_tie() {
        let per_seed = vec![seed_result(
            1,
            &[("rl2", &[Some(0.2)]), ("rl2_sampled", &[Some(0.6)])],
        )];
        let pooled = pool(&per_seed);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let diff = compare(&per_seed, "rl2", "rl2_sampled", 10, 0.95, &mut rng);
        let d = deployment(&pooled, &diff);
        assert_eq!(d.mode, "sampled");
        assert!(
            d.line.starts_with(
                "Deploy sampled actions: pooled held-out Sharpe of RL² 0.20 greedy vs 0.60 sampled"
            ),
            "{}",
            d.line
        );
        let tie = vec![seed_result(
            1,
            &[("rl2", &[Some(0.2)]), ("rl2_sampled", &[Some(0.2)])],
        )];
        assert_eq!(deployment(&pool(&tie), &diff).mode, "greedy");
    }

    #[test]
    fn curve_band_is_pointwise() {
        let b = curve_band(&[vec![1.0, 2.0, 9.0], vec![3.0, 0.0]]).unwrap();
        assert_eq!(b.mean, vec![2.0, 1.0]);
        assert_eq!(b.min, vec![1.0, 0.0]);
        assert_eq!(b.max, vec![3.0, 2.0]);
        assert_eq!(curve_band(&[]), None);
    }
}
