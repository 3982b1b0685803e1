//! The adaptation benchmark: return by episode index within the trial, averaged over
//! held-out tasks, and the share of the oracle's advantage over the memory-less baseline
//! that the RL² agent recovers in each episode.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::backtest::Backtest;

/// Mean adaptation curves over several backtests (one per held-out task).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaptationSummary {
    /// Tasks averaged.
    pub tasks: usize,
    /// Per policy, the mean return of episode `k` of the trial (the last episode is the
    /// evaluation window of the walk-forward test).
    pub curves: BTreeMap<String, Vec<f64>>,
    /// Per episode, [`recovered_share`] of `rl2` against `mlp` and `oracle`; empty when one
    /// of the three is missing.
    pub recovered: Vec<f64>,
}

/// The share of the oracle's advantage over the baseline that the agent recovers:
/// `(agent − baseline) / (oracle − baseline)`, per episode. 1 means the agent matches the
/// oracle, 0 means it is no better than the baseline, negative means worse. `NaN` where the
/// oracle has no advantage (`oracle ≤ baseline`), since the share is undefined there.
pub fn recovered_share(agent: &[f64], baseline: &[f64], oracle: &[f64]) -> Vec<f64> {
    agent
        .iter()
        .zip(baseline)
        .zip(oracle)
        .map(|((&a, &b), &o)| if o > b { (a - b) / (o - b) } else { f64::NAN })
        .collect()
}

/// Averages the adaptation curves of every policy over `backtests` and computes the share
/// recovered by `rl2` between `mlp` and `oracle`.
pub fn summarize_adaptation(backtests: &[Backtest]) -> AdaptationSummary {
    let mut sums: BTreeMap<String, (Vec<f64>, usize)> = BTreeMap::new();
    for backtest in backtests {
        for (name, policy) in &backtest.report.policies {
            let entry = sums
                .entry(name.clone())
                .or_insert_with(|| (vec![0.0; policy.adaptation_curve.len()], 0));
            if entry.0.len() == policy.adaptation_curve.len() {
                for (s, v) in entry.0.iter_mut().zip(&policy.adaptation_curve) {
                    *s += v;
                }
                entry.1 += 1;
            }
        }
    }
    let curves: BTreeMap<String, Vec<f64>> = sums
        .into_iter()
        .map(|(name, (sum, n))| (name, sum.into_iter().map(|s| s / n.max(1) as f64).collect()))
        .collect();
    let recovered = match (curves.get("rl2"), curves.get("mlp"), curves.get("oracle")) {
        (Some(a), Some(b), Some(o)) => recovered_share(a, b, o),
        _ => Vec::new(),
    };
    AdaptationSummary {
        tasks: backtests.len(),
        curves,
        recovered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_is_zero_at_the_baseline_and_one_at_the_oracle() {
        let share = recovered_share(
            &[1.0, 2.0, 3.0, 0.0],
            &[1.0, 1.0, 1.0, 1.0],
            &[3.0, 3.0, 3.0, 1.0],
        );
        assert_eq!(share[0], 0.0);
        assert_eq!(share[1], 0.5);
        assert_eq!(share[2], 1.0);
        assert!(share[3].is_nan(), "no oracle advantage: undefined");
        let worse = recovered_share(&[0.0], &[1.0], &[2.0]);
        assert_eq!(worse, vec![-1.0]);
    }
}
