//! [`WalkForwardConfig`]: where the test period starts, how long windows and adaptation
//! episodes are, costs, and how actions are chosen.

use mrl_env::{ActionSpace, RewardConfig};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Where the held-out test period starts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestStart {
    /// At this bar index.
    Index(usize),
    /// The last `f ∈ (0, 1)` of the bars are held out: the test starts at bar
    /// `len − round(f · len)`.
    HeldOutFraction(f64),
    /// At the first bar whose timestamp (ms UTC) is at or after this one.
    Timestamp(i64),
}

impl Default for TestStart {
    /// The last 30% of the series.
    fn default() -> Self {
        Self::HeldOutFraction(0.3)
    }
}

impl TestStart {
    /// The test start as a bar index of a series with these `timestamps`; an error for a
    /// fraction outside `(0, 1)`. The index may still be too early or too late for a
    /// backtest: [`plan_windows`](crate::plan_windows) checks that.
    pub fn resolve(&self, timestamps: &[i64]) -> Result<usize> {
        let len = timestamps.len();
        match *self {
            Self::Index(i) => Ok(i),
            Self::HeldOutFraction(f) if f.is_finite() && f > 0.0 && f < 1.0 => {
                Ok(len - ((f * len as f64).round() as usize).min(len))
            }
            Self::HeldOutFraction(f) => Err(Error::InvalidConfig {
                field: "test_start",
                value: f.to_string(),
                reason: "a held-out fraction must lie in (0, 1)",
            }),
            Self::Timestamp(ts) => Ok(timestamps.partition_point(|&t| t < ts)),
        }
    }
}

/// How the agent picks its actions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionMode {
    /// The most probable action at every step (deterministic, no random draw). The default.
    #[default]
    Greedy,
    /// Actions sampled from the policy, in `seeds` independent runs (seeded from
    /// [`WalkForwardConfig::seed`]); the report gives their mean and spread.
    Sampled {
        /// Independent runs, ≥ 1.
        seeds: usize,
    },
}

impl ActionMode {
    /// Runs per policy: 1 when greedy, `seeds` when sampled.
    pub fn runs(&self) -> usize {
        match *self {
            Self::Greedy => 1,
            Self::Sampled { seeds } => seeds,
        }
    }
}

/// Settings of the paired stationary bootstrap of Sharpe differences
/// ([`bootstrap_sharpe_diff_ci`](crate::bootstrap_sharpe_diff_ci)).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BootstrapConfig {
    /// Resamples. Default 1000.
    pub resamples: usize,
    /// Coverage of the percentile interval. Default 0.95.
    pub confidence: f64,
    /// Mean block length in steps (Politis & Romano 1994). Default 24 (a day of hourly bars).
    pub block_len: usize,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        Self {
            resamples: 1000,
            confidence: 0.95,
            block_len: 24,
        }
    }
}

/// Settings of a walk-forward backtest.
///
/// The test period `[test_start, len − 1)` (every bar that has a next close) is cut into
/// evaluation windows of `window_len` bars, back to back. Before each window the agent's
/// hidden state is rebuilt from zero by `adaptation_episodes` episodes of `adaptation_len`
/// bars on the bars just before the window, exactly as the earlier episodes of an RL²
/// trial of `adaptation_episodes + 1` episodes (Duan et al. 2016). The defaults reproduce
/// the training trial: 3 episodes of 200 bars, 10 bps costs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WalkForwardConfig {
    /// First bar of the held-out test period. Default: the last 30% of the series.
    pub test_start: TestStart,
    /// Bars per evaluation window (one episode). Default 200.
    pub window_len: usize,
    /// Adaptation episodes before each window (the trial's K − 1 earlier episodes).
    /// Default 2.
    pub adaptation_episodes: usize,
    /// Bars per adaptation episode. Default 200.
    pub adaptation_len: usize,
    /// Proportional cost per unit of position traded. Default 0.001 (10 bps).
    pub cost_rate: f64,
    /// The env's actions; must be the policy's. Default Buy / Sell / Hold.
    pub actions: ActionSpace,
    /// Factor from net return to the env reward, as in training (the reward is fed back
    /// to the agent; reported returns are never scaled). Default 1.
    pub reward_scale: f64,
    /// The training reward, as in training: it is fed back to the agent (reported returns
    /// and metrics never depend on it). Default the net return.
    #[serde(skip_serializing_if = "RewardConfig::is_net_return")]
    pub reward: RewardConfig,
    /// Factor on the reward fed back into the policy input, as in training. Default 1.
    pub reward_feedback_scale: f64,
    /// Greedy or sampled actions. Default greedy.
    pub mode: ActionMode,
    /// Seed of every random draw (sampled actions, the random baseline, the bootstrap).
    /// Default 0.
    pub seed: u64,
    /// Confidence intervals of Sharpe differences.
    pub bootstrap: BootstrapConfig,
}

impl Default for WalkForwardConfig {
    fn default() -> Self {
        Self {
            test_start: TestStart::default(),
            window_len: 200,
            adaptation_episodes: 2,
            adaptation_len: 200,
            cost_rate: 0.001,
            actions: ActionSpace::Target,
            reward_scale: 1.0,
            reward: RewardConfig::NetReturn,
            reward_feedback_scale: 1.0,
            mode: ActionMode::Greedy,
            seed: 0,
            bootstrap: BootstrapConfig::default(),
        }
    }
}

impl WalkForwardConfig {
    /// Checks every field's domain (lengths ≥ 1, cost in `[0, 1)`, finite scales, at least
    /// one seed, a usable bootstrap).
    pub fn validate(&self) -> Result<()> {
        let check = |ok: bool, field: &'static str, value: String, reason: &'static str| {
            if ok {
                Ok(())
            } else {
                Err(Error::InvalidConfig {
                    field,
                    value,
                    reason,
                })
            }
        };
        check(
            self.window_len >= 1,
            "window_len",
            self.window_len.to_string(),
            "expected at least 1",
        )?;
        check(
            self.adaptation_episodes == 0 || self.adaptation_len >= 1,
            "adaptation_len",
            self.adaptation_len.to_string(),
            "expected at least 1 when there are adaptation episodes",
        )?;
        check(
            self.cost_rate.is_finite() && (0.0..1.0).contains(&self.cost_rate),
            "cost_rate",
            self.cost_rate.to_string(),
            "expected a value in [0, 1)",
        )?;
        check(
            self.reward_scale.is_finite() && self.reward_scale > 0.0,
            "reward_scale",
            self.reward_scale.to_string(),
            "expected a finite value > 0",
        )?;
        check(
            self.reward_feedback_scale.is_finite(),
            "reward_feedback_scale",
            self.reward_feedback_scale.to_string(),
            "expected a finite value",
        )?;
        self.reward.validate()?;
        check(
            self.mode.runs() >= 1,
            "mode.seeds",
            self.mode.runs().to_string(),
            "expected at least 1 seed",
        )?;
        let b = &self.bootstrap;
        check(
            b.resamples >= 1,
            "bootstrap.resamples",
            b.resamples.to_string(),
            "expected at least 1",
        )?;
        check(
            b.block_len >= 1,
            "bootstrap.block_len",
            b.block_len.to_string(),
            "expected at least 1",
        )?;
        check(
            b.confidence > 0.0 && b.confidence < 1.0,
            "bootstrap.confidence",
            b.confidence.to_string(),
            "expected a value in (0, 1)",
        )?;
        self.actions.validate()?;
        Ok(())
    }

    /// Episodes of one trial: `adaptation_episodes + 1`.
    pub fn episodes_per_trial(&self) -> usize {
        self.adaptation_episodes + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_start_resolves_each_form() {
        let ts: Vec<i64> = (0..100).map(|i| i * 10).collect();
        assert_eq!(TestStart::default().resolve(&ts).unwrap(), 70);
        assert_eq!(TestStart::Index(12).resolve(&ts).unwrap(), 12);
        assert_eq!(TestStart::Timestamp(455).resolve(&ts).unwrap(), 46);
        assert_eq!(TestStart::Timestamp(450).resolve(&ts).unwrap(), 45);
        for f in [0.0, 1.0, -0.2, f64::NAN] {
            assert!(matches!(
                TestStart::HeldOutFraction(f).resolve(&ts),
                Err(Error::InvalidConfig {
                    field: "test_start",
                    ..
                })
            ));
        }
    }

    #[test]
    fn validate_names_the_field() {
        let bad = [
            (
                WalkForwardConfig {
                    window_len: 0,
                    ..Default::default()
                },
                "window_len",
            ),
            (
                WalkForwardConfig {
                    cost_rate: 1.0,
                    ..Default::default()
                },
                "cost_rate",
            ),
            (
                WalkForwardConfig {
                    mode: ActionMode::Sampled { seeds: 0 },
                    ..Default::default()
                },
                "mode.seeds",
            ),
            (
                WalkForwardConfig {
                    adaptation_len: 0,
                    ..Default::default()
                },
                "adaptation_len",
            ),
        ];
        for (config, field) in bad {
            match config.validate() {
                Err(Error::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected InvalidConfig for {field}, got {other:?}"),
            }
        }
        WalkForwardConfig::default().validate().unwrap();
        let no_adapt = WalkForwardConfig {
            adaptation_episodes: 0,
            adaptation_len: 0,
            ..Default::default()
        };
        no_adapt.validate().unwrap();
    }

    #[test]
    fn serde_fills_defaults() {
        let c: WalkForwardConfig =
            serde_json::from_str(r#"{"window_len": 50, "mode": {"sampled": {"seeds": 3}}}"#)
                .unwrap();
        assert_eq!(c.window_len, 50);
        assert_eq!(c.mode.runs(), 3);
        assert_eq!(c.adaptation_len, 200);
    }
}
