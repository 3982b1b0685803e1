//! Input and return normalisation during meta-training ([`NormalizeConfig`], the
//! `[normalize]` section of a run's config).
//!
//! - **Inputs.** Before the first iteration the trainer runs `warmup_rounds` rollouts of the
//!   training split (training assets, training period: the trials never draw a test task or
//!   a test bar) with the freshly initialised policy and fits per-column statistics of the
//!   observations and the scale of the rewards fed back as input
//!   ([`mrl_agent::RunningMeanStd`]). `fixed` freezes them there; `running` keeps updating
//!   them after every iteration's update from that iteration's rollout (so a rollout and the
//!   update that learns from it see the same statistics) and freezes them when training
//!   ends. Either way they are stored in the policy ([`mrl_agent::InputNorm`], the checkpoint
//!   sidecar) and applied unchanged in backtests and evaluation.
//! - **Returns.** With `returns = true` the rewards that enter GAE are divided by the
//!   running standard deviation of the discounted return `R_t = γ·R_{t−1} + r_t` (reset at
//!   each trial start), the reward scaling of `VecNormalize(norm_reward=True)` (Engstrom et
//!   al. 2020, "Implementation matters in deep policy gradients", §3). Values and advantages
//!   then stay O(1) whatever the reward's units, so the value loss does not swamp the policy
//!   gradient under the global-norm clip. Logged returns stay in the env's units.
//!
//! All statistics live in the checkpoint's `state.json`, so a resumed run continues them
//! exactly.

use mrl_agent::{DEFAULT_NORM_CLIP, InputNorm, RunningMeanStd};
use serde::{Deserialize, Serialize};

use crate::rollout::RolloutBuffer;
use crate::{Error, Result};

/// How the policy's input statistics are fitted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NormMode {
    /// No statistics: inputs enter the network as the env writes them (the default, and
    /// the bandit setting, whose inputs are already in {0, 1}).
    #[default]
    None,
    /// Fitted on the warm-up rollouts, then frozen (a z-score from training data).
    Fixed,
    /// Fitted on the warm-up rollouts, updated after every iteration, frozen at the end
    /// (the `VecNormalize` convention).
    Running,
}

/// The `[normalize]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NormalizeConfig {
    /// Input statistics (default none).
    pub inputs: NormMode,
    /// Clip of a normalised input (default 10, `VecNormalize`'s `clip_obs`).
    pub clip: f64,
    /// Rollout rounds of the training split the statistics are first fitted on (default 2).
    pub warmup_rounds: usize,
    /// Divide rewards by the running std of the discounted return before GAE (default false).
    pub returns: bool,
}

impl Default for NormalizeConfig {
    fn default() -> Self {
        Self {
            inputs: NormMode::None,
            clip: f64::from(DEFAULT_NORM_CLIP),
            warmup_rounds: 2,
            returns: false,
        }
    }
}

impl NormalizeConfig {
    /// Whether nothing is normalised (the section is then left out of saved configs).
    pub fn is_off(&self) -> bool {
        self.inputs == NormMode::None && !self.returns
    }

    /// Checks the fields.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a clip that is not finite and > 0, or no warm-up round
    /// when inputs are normalised.
    pub fn validate(&self) -> Result<()> {
        if !(self.clip.is_finite() && self.clip > 0.0) {
            return Err(Error::InvalidConfig {
                field: "normalize.clip",
                value: self.clip.to_string(),
                reason: "must be finite and > 0",
            });
        }
        if self.inputs != NormMode::None && self.warmup_rounds == 0 {
            return Err(Error::InvalidConfig {
                field: "normalize.warmup_rounds",
                value: "0".into(),
                reason: "input statistics need at least one warm-up rollout",
            });
        }
        Ok(())
    }
}

/// The accumulators of a run (saved in `state.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NormState {
    /// Observation columns.
    pub obs: RunningMeanStd,
    /// The reward fed back as input.
    pub reward: RunningMeanStd,
    /// The discounted return (for return normalisation).
    pub ret: RunningMeanStd,
}

impl NormState {
    /// Empty accumulators for `obs_dim` observation columns.
    pub fn new(obs_dim: usize) -> Self {
        Self {
            obs: RunningMeanStd::new(obs_dim),
            reward: RunningMeanStd::new(1),
            ret: RunningMeanStd::new(1),
        }
    }

    /// Adds the valid steps of a rollout to the input statistics.
    ///
    /// # Errors
    /// Length errors from an inconsistent buffer.
    pub fn observe_inputs(&mut self, buffer: &RolloutBuffer) -> Result<()> {
        let n = buffer.len() * buffer.n_trials();
        let valid = &buffer.valid[..n];
        self.obs
            .update(&buffer.obs[..n * buffer.obs_dim()], Some(valid))?;
        self.reward.update(&buffer.prev_rewards[..n], Some(valid))?;
        Ok(())
    }

    /// Adds the discounted returns `R_t = γ·R_{t−1} + r_t` of a rollout's valid steps (each
    /// trial from `R = 0`) to the return statistics.
    ///
    /// # Errors
    /// Length errors from an inconsistent buffer.
    pub fn observe_returns(&mut self, buffer: &RolloutBuffer, gamma: f64) -> Result<()> {
        let mut returns = Vec::with_capacity(buffer.len() * buffer.n_trials());
        for b in 0..buffer.n_trials() {
            let mut r = 0.0f64;
            for t in 0..buffer.len() {
                let i = buffer.index(b, t);
                if buffer.valid[i] {
                    r = gamma * r + f64::from(buffer.rewards[i]);
                    returns.push(r as f32);
                }
            }
        }
        self.ret.update(&returns, None)?;
        Ok(())
    }

    /// The input statistics as the policy applies them.
    pub fn input_norm(&self, clip: f64) -> InputNorm {
        InputNorm::from_stats(&self.obs, &self.reward, clip as f32)
    }

    /// `1 / √(Var(R) + ε)`: the factor on rewards before GAE.
    pub fn return_scale(&self) -> f64 {
        1.0 / (self.ret.var()[0] + mrl_agent::NORM_EPSILON).sqrt()
    }
}
