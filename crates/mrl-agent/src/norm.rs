//! Input normalisation as part of the agent: per-column statistics of the observations and
//! the scale of the previous-reward input, fitted on training data only, stored in the
//! checkpoint ([`AgentConfig::input_norm`](crate::AgentConfig::input_norm)) and applied by
//! [`InputLayout`](crate::InputLayout) wherever a row is built: rollouts, the PPO update,
//! walk-forward backtests, evaluation, any live loop.
//!
//! ```text
//! o'_j = clip((o_j − μ_j) / √(σ²_j + ε), −c, c)        every observation column j
//! r'   = clip(r / √(σ²_r + ε), −c, c)                   the previous reward (not centred)
//! ```
//!
//! with `ε = 1e-8` and `c` the clip (default 10): the `VecNormalize` convention of
//! Stable-Baselines3 (`clip_obs = 10`, `epsilon = 1e-8`). The one-hot previous action and
//! the done flag are already in {0, 1} and pass unchanged. The previous reward is scaled,
//! not centred, so that "no reward yet" (0 at a trial start) keeps meaning zero.
//!
//! Statistics come from [`RunningMeanStd`] (Chan, Golub & LeVeque 1979, the parallel
//! variance update also used by `VecNormalize`), accumulated in f64.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Added to every variance before the square root (`VecNormalize`'s `epsilon`).
pub const NORM_EPSILON: f64 = 1e-8;

/// Default clip of a normalised input (`VecNormalize`'s `clip_obs`).
pub const DEFAULT_NORM_CLIP: f32 = 10.0;

/// Frozen input statistics of a policy: what [`InputLayout`](crate::InputLayout) applies.
///
/// Saved in the checkpoint sidecar with the rest of [`AgentConfig`](crate::AgentConfig);
/// a checkpoint without it reads as `None`, the explicit identity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputNorm {
    /// Mean of each observation column, `obs_dim` values.
    pub obs_mean: Vec<f32>,
    /// `√(variance + ε)` of each observation column, `obs_dim` values, all > 0.
    pub obs_std: Vec<f32>,
    /// `√(variance + ε)` of the previous-reward input (> 0).
    pub reward_std: f32,
    /// Normalised values are clipped to `[−clip, clip]` (> 0).
    pub clip: f32,
    /// Observation rows the statistics were fitted on (for the record).
    pub count: f64,
}

impl InputNorm {
    /// Statistics from fitted accumulators.
    pub fn from_stats(obs: &RunningMeanStd, reward: &RunningMeanStd, clip: f32) -> Self {
        let std = |var: f64| (var + NORM_EPSILON).sqrt() as f32;
        Self {
            obs_mean: obs.mean().iter().map(|&m| m as f32).collect(),
            obs_std: obs.var().iter().map(|&v| std(v)).collect(),
            reward_std: std(reward.var()[0]),
            clip,
            count: obs.count(),
        }
    }

    /// Checks the statistics against an observation width.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a wrong length, a non-finite value, a standard deviation
    /// or clip that is not > 0.
    pub fn validate(&self, obs_dim: usize) -> Result<()> {
        let bad = |field, value: String, reason| {
            Err(Error::InvalidConfig {
                field,
                value,
                reason,
            })
        };
        if self.obs_mean.len() != obs_dim || self.obs_std.len() != obs_dim {
            return bad(
                "input_norm",
                format!("{} means, {} stds", self.obs_mean.len(), self.obs_std.len()),
                "needs one mean and one std per observation column",
            );
        }
        if let Some(m) = self.obs_mean.iter().find(|m| !m.is_finite()) {
            return bad("input_norm.obs_mean", m.to_string(), "must be finite");
        }
        let positive = |v: f32| v.is_finite() && v > 0.0;
        if let Some(s) = self.obs_std.iter().find(|&&s| !positive(s)) {
            return bad(
                "input_norm.obs_std",
                s.to_string(),
                "must be finite and > 0",
            );
        }
        if !positive(self.reward_std) {
            return bad(
                "input_norm.reward_std",
                self.reward_std.to_string(),
                "must be finite and > 0",
            );
        }
        if !positive(self.clip) {
            return bad(
                "input_norm.clip",
                self.clip.to_string(),
                "must be finite and > 0",
            );
        }
        Ok(())
    }

    /// Normalises one observation row in place (`obs_dim` values).
    pub(crate) fn apply_obs(&self, row: &mut [f32]) {
        let c = self.clip;
        for ((v, m), s) in row.iter_mut().zip(&self.obs_mean).zip(&self.obs_std) {
            *v = ((*v - m) / s).clamp(-c, c);
        }
    }

    /// The normalised previous reward.
    pub(crate) fn apply_reward(&self, reward: f32) -> f32 {
        (reward / self.reward_std).clamp(-self.clip, self.clip)
    }
}

/// Running mean and variance of `dim` columns, updated batch by batch (Chan, Golub &
/// LeVeque 1979), in f64. The population variance (divided by the count), as
/// `VecNormalize`'s `RunningMeanStd`.
///
/// Starts with a count of `1e-4` at mean 0 and variance 1 (`VecNormalize`'s prior), so an
/// empty accumulator yields the identity and the first batch dominates immediately.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunningMeanStd {
    mean: Vec<f64>,
    var: Vec<f64>,
    count: f64,
}

impl RunningMeanStd {
    /// The prior count (`VecNormalize`'s `epsilon` for the count).
    pub const PRIOR_COUNT: f64 = 1e-4;

    /// An accumulator of `dim` columns at the prior (mean 0, variance 1).
    pub fn new(dim: usize) -> Self {
        Self {
            mean: vec![0.0; dim],
            var: vec![1.0; dim],
            count: Self::PRIOR_COUNT,
        }
    }

    /// Column means.
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }

    /// Column (population) variances.
    pub fn var(&self) -> &[f64] {
        &self.var
    }

    /// Rows seen (plus the prior count).
    pub fn count(&self) -> f64 {
        self.count
    }

    /// Number of columns.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// Adds the rows of `rows` (row-major, `dim` values each) whose `keep` flag is set;
    /// `keep = None` keeps every row. Rows with a non-finite value are skipped.
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] when `rows` is not a whole number of rows or `keep` has
    /// another row count.
    pub fn update(&mut self, rows: &[f32], keep: Option<&[bool]>) -> Result<()> {
        let dim = self.dim();
        if dim == 0 || !rows.len().is_multiple_of(dim) {
            return Err(Error::LengthMismatch {
                name: "rows",
                expected: rows.len().next_multiple_of(dim.max(1)),
                actual: rows.len(),
            });
        }
        let n_rows = rows.len() / dim;
        if let Some(k) = keep
            && k.len() != n_rows
        {
            return Err(Error::LengthMismatch {
                name: "keep",
                expected: n_rows,
                actual: k.len(),
            });
        }
        let kept = || {
            rows.chunks_exact(dim)
                .enumerate()
                .filter(move |(i, row)| {
                    keep.is_none_or(|k| k[*i]) && row.iter().all(|v| v.is_finite())
                })
                .map(|(_, row)| row)
        };
        let n = kept().count();
        if n == 0 {
            return Ok(());
        }
        let nf = n as f64;
        let mut batch_mean = vec![0.0f64; dim];
        for row in kept() {
            for (m, &v) in batch_mean.iter_mut().zip(row) {
                *m += f64::from(v);
            }
        }
        batch_mean.iter_mut().for_each(|m| *m /= nf);
        let mut batch_m2 = vec![0.0f64; dim];
        for row in kept() {
            for ((s, &v), m) in batch_m2.iter_mut().zip(row).zip(&batch_mean) {
                let d = f64::from(v) - m;
                *s += d * d;
            }
        }
        let total = self.count + nf;
        for j in 0..dim {
            let delta = batch_mean[j] - self.mean[j];
            let m2 =
                self.var[j] * self.count + batch_m2[j] + delta * delta * self.count * nf / total;
            self.mean[j] += delta * nf / total;
            self.var[j] = m2 / total;
        }
        self.count = total;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batched_updates_equal_the_direct_moments() {
        let rows: Vec<f32> = (0..60)
            .map(|i| ((i * 37 % 17) as f32 - 8.0) * 0.25)
            .collect();
        let mut acc = RunningMeanStd::new(3);
        acc.update(&rows[..21], None).unwrap();
        acc.update(&rows[21..], None).unwrap();
        for j in 0..3 {
            let col: Vec<f64> = rows
                .iter()
                .skip(j)
                .step_by(3)
                .map(|&v| f64::from(v))
                .collect();
            let n = col.len() as f64;
            let mean = col.iter().sum::<f64>() / n;
            let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            // The prior (count 1e-4 at mean 0, variance 1) shifts the moments by ~1e-4 / n.
            assert!(
                (acc.mean()[j] - mean).abs() < 1e-5,
                "{} vs {mean}",
                acc.mean()[j]
            );
            assert!(
                (acc.var()[j] - var).abs() < 1e-5,
                "{} vs {var}",
                acc.var()[j]
            );
        }
        assert!((acc.count() - 20.0 - RunningMeanStd::PRIOR_COUNT).abs() < 1e-12);
    }

    #[test]
    fn masked_and_non_finite_rows_are_skipped() {
        let mut acc = RunningMeanStd::new(1);
        acc.update(
            &[1.0, 100.0, f32::NAN, 3.0],
            Some(&[true, false, true, true]),
        )
        .unwrap();
        assert!((acc.mean()[0] - 2.0).abs() < 1e-4);
        assert!((acc.count() - 2.0 - RunningMeanStd::PRIOR_COUNT).abs() < 1e-12);
        assert!(acc.update(&[1.0], Some(&[true, true])).is_err());
        let mut two = RunningMeanStd::new(2);
        assert!(two.update(&[1.0, 2.0, 3.0], None).is_err());
    }

    #[test]
    fn normalisation_centres_scales_and_clips() {
        let mut obs = RunningMeanStd::new(2);
        obs.update(&[1.0, 10.0, 3.0, 30.0], None).unwrap();
        let mut reward = RunningMeanStd::new(1);
        reward.update(&[-2.0, 2.0], None).unwrap();
        let norm = InputNorm::from_stats(&obs, &reward, 3.0);
        norm.validate(2).unwrap();
        let mut row = [3.0f32, 1000.0];
        norm.apply_obs(&mut row);
        assert!((row[0] - 1.0).abs() < 1e-3, "{}", row[0]);
        assert_eq!(row[1], 3.0);
        assert!((norm.apply_reward(1.0) - 0.5).abs() < 1e-3);
        assert!(norm.validate(3).is_err());
        let zero = InputNorm {
            reward_std: 0.0,
            ..norm
        };
        assert!(zero.validate(2).is_err());
    }
}
