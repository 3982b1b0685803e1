//! RL² trials: K episodes on one task, and the policy input that carries the previous step.
//!
//! A trial is `episodes_per_trial` episodes (default 3) of the same task (Duan et al. 2016,
//! "RL²"). The recurrent policy resets its hidden state **exactly when a new trial starts**
//! (after [`Trial::reset`] or [`VecTrials::reset_trials`](crate::VecTrials::reset_trials)),
//! never at an episode boundary inside a trial: what it learnt about the task in episode `k`
//! is what it uses in episode `k + 1`.
//!
//! The policy input at step `t` is `[obs_t, one_hot(a_{t−1}), r_{t−1}, d_{t−1}]`
//! ([`InputLayout`]), all of the previous block zero at the trial start; `d_{t−1} = 1` marks
//! that the previous step ended an episode, so `obs_t` is then the first observation of the
//! next episode.

use std::ops::Range;

use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{Env, Error, Result};

/// Settings of a trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrialConfig {
    /// Episodes per trial, K ≥ 1. Default 3.
    pub episodes_per_trial: usize,
    /// Factor applied to the reward fed back into the policy input (`r_{t−1}`); the rewards
    /// reported for learning are not scaled. Default 1.
    pub reward_feedback_scale: f64,
}

impl Default for TrialConfig {
    fn default() -> Self {
        Self {
            episodes_per_trial: 3,
            reward_feedback_scale: 1.0,
        }
    }
}

impl TrialConfig {
    /// Checks `episodes_per_trial ≥ 1` and a finite feedback scale.
    pub fn validate(&self) -> Result<()> {
        if self.episodes_per_trial == 0 {
            return Err(Error::InvalidConfig {
                field: "episodes_per_trial",
                value: "0".into(),
                reason: "expected at least 1",
            });
        }
        if !self.reward_feedback_scale.is_finite() {
            return Err(Error::InvalidConfig {
                field: "reward_feedback_scale",
                value: self.reward_feedback_scale.to_string(),
                reason: "expected a finite value",
            });
        }
        Ok(())
    }
}

/// Layout of the RL² policy input (the one place it is defined):
/// `[obs (obs_dim), one_hot(prev_action) (n_actions), prev_reward (1), prev_done (1)]`.
///
/// This is the order of the reference agent (`agent_forward.json`): `obs_dim + n_actions + 2`
/// values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InputLayout {
    /// Observation length.
    pub obs_dim: usize,
    /// Number of actions.
    pub n_actions: usize,
}

impl InputLayout {
    /// The layout for these spaces.
    pub fn new(obs_dim: usize, n_actions: usize) -> Self {
        Self { obs_dim, n_actions }
    }

    /// Input length: `obs_dim + n_actions + 2`.
    pub fn dim(&self) -> usize {
        self.obs_dim + self.n_actions + 2
    }

    /// Where the observation goes.
    pub fn obs(&self) -> Range<usize> {
        0..self.obs_dim
    }

    /// Where the one-hot previous action goes.
    pub fn prev_action(&self) -> Range<usize> {
        self.obs_dim..self.obs_dim + self.n_actions
    }

    /// Index of the previous reward.
    pub fn prev_reward(&self) -> usize {
        self.obs_dim + self.n_actions
    }

    /// Index of the previous done flag (1.0 when the previous step ended an episode).
    pub fn prev_done(&self) -> usize {
        self.obs_dim + self.n_actions + 1
    }

    /// Writes a trial-start input: `[obs, 0, …, 0]`.
    ///
    /// # Panics
    /// When `out` is not [`InputLayout::dim`] long or `obs` not `obs_dim` long.
    pub fn write_start(&self, out: &mut [f32], obs: &[f32]) {
        out[self.obs()].copy_from_slice(obs);
        out[self.obs_dim..].fill(0.0);
    }

    /// Writes `[obs, one_hot(prev_action), prev_reward, prev_done]`.
    ///
    /// # Panics
    /// When `out` is not [`InputLayout::dim`] long, `obs` not `obs_dim` long, or
    /// `prev_action ≥ n_actions`.
    pub fn write(
        &self,
        out: &mut [f32],
        obs: &[f32],
        prev_action: usize,
        prev_reward: f32,
        prev_done: bool,
    ) {
        out[self.obs()].copy_from_slice(obs);
        let one_hot = &mut out[self.prev_action()];
        one_hot.fill(0.0);
        one_hot[prev_action] = 1.0;
        out[self.prev_reward()] = prev_reward;
        out[self.prev_done()] = if prev_done { 1.0 } else { 0.0 };
    }
}

/// One step of a trial.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrialStep<'a> {
    /// The next policy input. After an episode end inside the trial it holds the *next*
    /// episode's first observation (with `prev_done = 1`); at the trial end, the final one.
    pub input: &'a [f32],
    /// When this step ended an episode: the input built from that episode's final
    /// observation, `[final_obs, one_hot(a), r, 1]`, to bootstrap a truncated episode from.
    pub final_input: Option<&'a [f32]>,
    /// Reward of the step (as the env gave it, not scaled by the feedback factor).
    pub reward: f64,
    /// The episode ended in a terminal state.
    pub terminated: bool,
    /// The episode was cut by its time limit.
    pub truncated: bool,
    /// Index within the trial (0-based) of the episode this step belonged to.
    pub episode: usize,
    /// This step ended the last episode: the trial is over.
    pub trial_done: bool,
}

impl TrialStep<'_> {
    /// The step ended an episode (`terminated || truncated`).
    pub fn episode_done(&self) -> bool {
        self.terminated || self.truncated
    }
}

/// K episodes of one env (one task), building the RL² policy input.
///
/// The trial owns the rng its env draws episode starts from, so a trial is reproducible from
/// its seed alone.
#[derive(Debug, Clone)]
pub struct Trial<E: Env> {
    env: E,
    config: TrialConfig,
    layout: InputLayout,
    rng: ChaCha8Rng,
    input: Vec<f32>,
    final_input: Vec<f32>,
    episode: usize,
    episode_returns: Vec<f64>,
    running: bool,
}

impl<E: Env> Trial<E> {
    /// A trial of `env`; call [`Trial::reset`] to start it.
    pub fn new(env: E, config: TrialConfig, rng: ChaCha8Rng) -> Result<Self> {
        config.validate()?;
        let layout = InputLayout::new(env.obs_dim(), env.n_actions());
        Ok(Self {
            env,
            layout,
            rng,
            input: vec![0.0; layout.dim()],
            final_input: vec![0.0; layout.dim()],
            episode: 0,
            episode_returns: vec![0.0; config.episodes_per_trial],
            running: false,
            config,
        })
    }

    /// Starts the trial (episode 0) and returns the first policy input `[obs_0, 0, …, 0]`.
    /// The policy resets its hidden state here and only here.
    pub fn reset(&mut self) -> Result<&[f32]> {
        let obs = self.env.reset(&mut self.rng)?;
        self.layout.write_start(&mut self.input, obs);
        self.episode = 0;
        self.episode_returns.fill(0.0);
        self.running = true;
        Ok(&self.input)
    }

    /// Steps the env with `action`; at an episode end inside the trial, resets the env for the
    /// next episode. An error after the trial ended.
    pub fn step(&mut self, action: usize) -> Result<TrialStep<'_>> {
        if !self.running {
            return Err(Error::EpisodeNotRunning);
        }
        if action >= self.layout.n_actions {
            return Err(Error::InvalidAction {
                action,
                n_actions: self.layout.n_actions,
            });
        }
        let episode = self.episode;
        let step = self.env.step(action)?;
        let (reward, terminated, truncated, done) =
            (step.reward, step.terminated, step.truncated, step.done());
        let feedback = (reward * self.config.reward_feedback_scale) as f32;
        let target = if done {
            &mut self.final_input
        } else {
            &mut self.input
        };
        self.layout.write(target, step.obs, action, feedback, done);
        self.episode_returns[episode] += reward;
        let mut trial_done = false;
        if done {
            if episode + 1 < self.config.episodes_per_trial {
                self.episode += 1;
                let obs = self.env.reset_next_episode(&mut self.rng)?;
                self.layout
                    .write(&mut self.input, obs, action, feedback, true);
            } else {
                self.input.copy_from_slice(&self.final_input);
                self.running = false;
                trial_done = true;
            }
        }
        Ok(TrialStep {
            input: &self.input,
            final_input: done.then_some(self.final_input.as_slice()),
            reward,
            terminated,
            truncated,
            episode,
            trial_done,
        })
    }

    /// The current policy input.
    pub fn input(&self) -> &[f32] {
        &self.input
    }

    /// Index of the current episode (the last one once the trial is over).
    pub fn episode(&self) -> usize {
        self.episode
    }

    /// True once the last episode ended (and before the first reset).
    pub fn is_done(&self) -> bool {
        !self.running
    }

    /// Sum of rewards of each episode so far (`episodes_per_trial` values; later episodes 0).
    pub fn episode_returns(&self) -> &[f64] {
        &self.episode_returns
    }

    /// The input layout.
    pub fn layout(&self) -> InputLayout {
        self.layout
    }

    /// Upper bound on the steps of a trial: `K · max_episode_steps`.
    pub fn max_len(&self) -> usize {
        self.config.episodes_per_trial * self.env.max_episode_steps()
    }

    /// The settings.
    pub fn config(&self) -> &TrialConfig {
        &self.config
    }

    /// The env (for example to read a [`TradingEnv`](crate::TradingEnv)'s state).
    pub fn env(&self) -> &E {
        &self.env
    }

    /// The env, mutably (for example to schedule a walk-forward's episode starts).
    pub fn env_mut(&mut self) -> &mut E {
        &mut self.env
    }

    /// Gives the env back.
    pub fn into_env(self) -> E {
        self.env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_indices_follow_the_reference_order() {
        let layout = InputLayout::new(14, 3);
        assert_eq!(layout.dim(), 19);
        assert_eq!(layout.prev_action(), 14..17);
        assert_eq!((layout.prev_reward(), layout.prev_done()), (17, 18));
        let mut out = vec![9.0; 19];
        layout.write(&mut out, &[0.5; 14], 2, -0.25, true);
        assert_eq!(&out[14..], &[0.0, 0.0, 1.0, -0.25, 1.0]);
        layout.write_start(&mut out, &[0.5; 14]);
        assert_eq!(&out[14..], &[0.0; 5]);
        assert_eq!(&out[..14], &[0.5; 14]);
    }

    #[test]
    fn rejects_zero_episodes() {
        let cfg = TrialConfig {
            episodes_per_trial: 0,
            ..TrialConfig::default()
        };
        assert!(matches!(
            cfg.validate(),
            Err(Error::InvalidConfig {
                field: "episodes_per_trial",
                ..
            })
        ));
    }
}
