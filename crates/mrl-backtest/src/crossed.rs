//! Two-way (pigeonhole) bootstrap intervals of a mean over a crossed table, e.g. paired
//! Sharpe differences over (training seed × held-out market) pairs: the interval `mrl study`
//! and `mrl eval fewshot` report.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// A bootstrap interval of a mean paired difference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DiffInterval {
    /// Mean of the defined differences.
    pub mean: f64,
    /// Lower bound.
    pub lo: f64,
    /// Upper bound.
    pub hi: f64,
    /// Coverage.
    pub confidence: f64,
    /// Resamples with at least one defined pair (the interval's sample).
    pub resamples: usize,
}

/// Two-way (pigeonhole) bootstrap interval of the mean of `diffs[seed][market]` over the
/// defined entries.
///
/// Seeds share the held-out markets and markets share the seeds, so the pairs are not
/// independent: each resample draws the seeds with replacement and, independently, the
/// markets with replacement, and keeps every pair of a drawn seed and a drawn market (with
/// multiplicity); its statistic is the mean of the defined differences among them (Owen
/// 2007, "The pigeonhole bootstrap"; McCullagh 2000 shows it errs on the conservative
/// side). Resamples without a defined pair are dropped. The interval is the percentile
/// interval at `confidence`. With one seed it is the bootstrap over markets.
///
/// `None` when no entry is defined, the rows differ in length, `resamples` is 0 or
/// `confidence` is not in (0, 1).
pub fn crossed_bootstrap_ci(
    diffs: &[Vec<Option<f64>>],
    resamples: usize,
    confidence: f64,
    rng: &mut ChaCha8Rng,
) -> Option<DiffInterval> {
    let n_seeds = diffs.len();
    let n_markets = diffs.first()?.len();
    let valid = n_markets > 0
        && diffs.iter().all(|row| row.len() == n_markets)
        && resamples > 0
        && confidence > 0.0
        && confidence < 1.0;
    if !valid {
        return None;
    }
    let mean = mean_defined(diffs.iter().flatten().copied())?;
    let mut stats = Vec::with_capacity(resamples);
    let (mut seeds, mut markets) = (vec![0; n_seeds], vec![0; n_markets]);
    for _ in 0..resamples {
        seeds.fill_with(|| rng.random_range(0..n_seeds));
        markets.fill_with(|| rng.random_range(0..n_markets));
        let drawn = seeds
            .iter()
            .flat_map(|&s| markets.iter().map(move |&m| diffs[s][m]));
        if let Some(m) = mean_defined(drawn) {
            stats.push(m);
        }
    }
    if stats.is_empty() {
        return None;
    }
    stats.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    Some(DiffInterval {
        mean,
        lo: quantile(&stats, tail),
        hi: quantile(&stats, 1.0 - tail),
        confidence,
        resamples: stats.len(),
    })
}

/// Mean of the defined values (a Sharpe ratio is undefined for a book that never trades);
/// `None` when none is.
pub fn mean_defined(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let (sum, n) = values
        .into_iter()
        .flatten()
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// Quantile `q ∈ [0, 1]` of sorted, non-empty values, linear between order statistics.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn crossed_bootstrap_of_a_constant_difference_is_that_constant() {
        let diffs = vec![
            vec![Some(0.5), Some(0.5), None],
            vec![Some(0.5), None, Some(0.5)],
        ];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let ci = crossed_bootstrap_ci(&diffs, 200, 0.9, &mut rng).unwrap();
        assert_eq!((ci.mean, ci.lo, ci.hi), (0.5, 0.5, 0.5));
        // Draws of seed 2 alone with market 2 alone, or seed 1 with market 3, hold no
        // defined pair and are dropped: 4 of 200 with this generator.
        assert_eq!(ci.resamples, 196);
        assert_eq!(crossed_bootstrap_ci(&[vec![None]], 10, 0.9, &mut rng), None);
        assert_eq!(crossed_bootstrap_ci(&[], 10, 0.9, &mut rng), None);
        assert_eq!(crossed_bootstrap_ci(&diffs, 0, 0.9, &mut rng), None);
        assert_eq!(crossed_bootstrap_ci(&diffs, 10, 1.0, &mut rng), None);
        let ragged = vec![vec![Some(1.0)], vec![Some(1.0), Some(2.0)]];
        assert_eq!(crossed_bootstrap_ci(&ragged, 10, 0.9, &mut rng), None);
    }

    #[test]
    fn crossed_bootstrap_brackets_the_mean_and_is_seeded() {
        let diffs: Vec<Vec<Option<f64>>> = (0..3)
            .map(|s| {
                (0..5)
                    .map(|m| Some(s as f64 * 0.1 + m as f64 * 0.2 - 0.3))
                    .collect()
            })
            .collect();
        let run = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            crossed_bootstrap_ci(&diffs, 500, 0.95, &mut rng).unwrap()
        };
        let ci = run(7);
        // mean of s·0.1 + m·0.2 − 0.3 over s ∈ 0..3, m ∈ 0..5: 0.1 + 0.4 − 0.3 = 0.2.
        assert!((ci.mean - 0.2).abs() < 1e-12);
        assert!(ci.lo < 0.2 && 0.2 < ci.hi, "{ci:?}");
        // The extremes of the statistic: every draw the lowest (−0.3) or highest (0.7) pair.
        assert!(ci.lo >= -0.3 && ci.hi <= 0.7, "{ci:?}");
        assert_eq!(run(7), ci);
        assert_ne!(run(8), ci);
    }
}
