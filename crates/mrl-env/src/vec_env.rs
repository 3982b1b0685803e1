//! [`VecTrials`]: B RL² trials in lockstep over a task distribution, in flat buffers.
//!
//! Every buffer is structure-of-arrays and allocated once: policy inputs `B × input_dim`
//! (`f32`, row-major, ready to become a tensor), rewards, flags and episode indices `B`.
//! A step allocates nothing.
//!
//! Each round ([`VecTrials::reset_trials`]) samples a new task per slot and runs one trial
//! of `K` episodes on it. Trials end at different steps; a slot whose trial is over stays
//! done and is marked invalid (`valid = false`, reward 0, its other entries repeating its last
//! step) until the next round, so a rollout of [`VecTrials::max_trial_len`] steps, or one
//! that stops when [`StepBatch::all_done`], collects exactly one trial per slot.
//!
//! Slot `i` of round `r` draws everything (task, episode starts) from its own `ChaCha8Rng`
//! keyed by `(seed, i, r)`: its trial is the same whatever `B` is, and a saved
//! [`VecTrialsState`] replays every later round exactly.

use std::sync::Arc;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{Env, Error, InputLayout, Result, Split, TaskDistribution, Trial, TrialConfig};

/// The rng of slot `slot` in round `round`: ChaCha8 keyed by the 32 bytes
/// `seed ‖ slot ‖ round ‖ "mrl-trial"` (little-endian words), so distinct triples give
/// independent streams.
pub fn trial_rng(seed: u64, slot: u64, round: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&slot.to_le_bytes());
    key[16..24].copy_from_slice(&round.to_le_bytes());
    key[24..].copy_from_slice(b"mrltrial");
    ChaCha8Rng::from_seed(key)
}

/// What resumes a [`VecTrials`] exactly: the seed and the number of rounds started.
///
/// Saved between rounds (for example beside a checkpoint), restoring it makes the next
/// [`VecTrials::reset_trials`] sample the same tasks and starts as the uninterrupted run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VecTrialsState {
    /// Base seed.
    pub seed: u64,
    /// Rounds (calls of `reset_trials`) already started.
    pub round: u64,
    /// Number of slots, checked on restore.
    pub n_envs: usize,
    /// Split sampled, checked on restore.
    pub split: Split,
}

/// The outcome of one lockstep step; every slice has one entry per slot (`inputs` and
/// `final_inputs` have `input_dim` per slot).
#[derive(Debug, Clone, Copy)]
pub struct StepBatch<'a> {
    /// Next policy inputs, `B × input_dim` row-major.
    pub inputs: &'a [f32],
    /// Rows where `episode_done`: the input of the ended episode's final observation (equal
    /// to `inputs` at a trial end); other rows are stale.
    pub final_inputs: &'a [f32],
    /// Rewards (0 where invalid).
    pub rewards: &'a [f32],
    /// Index of the episode each step belonged to.
    pub episode: &'a [usize],
    /// The step ended an episode.
    pub episode_done: &'a [bool],
    /// The episode ended in a terminal state (no bootstrap).
    pub terminated: &'a [bool],
    /// The episode was cut by its time limit (bootstrap).
    pub truncated: &'a [bool],
    /// The step ended the slot's trial (its last episode).
    pub trial_done: &'a [bool],
    /// False where the slot's trial was already over before this step: ignore the entry.
    pub valid: &'a [bool],
    /// Every slot's trial is over.
    pub all_done: bool,
}

/// B trials of a task distribution stepped together.
pub struct VecTrials<D: TaskDistribution> {
    dist: Arc<D>,
    config: TrialConfig,
    split: Split,
    seed: u64,
    round: u64,
    n_envs: usize,
    layout: InputLayout,
    trials: Vec<Trial<D::Env>>,
    inputs: Vec<f32>,
    final_inputs: Vec<f32>,
    rewards: Vec<f32>,
    episode: Vec<usize>,
    episode_done: Vec<bool>,
    terminated: Vec<bool>,
    truncated: Vec<bool>,
    trial_done: Vec<bool>,
    valid: Vec<bool>,
    episode_returns: Vec<f64>,
    completed: Vec<usize>,
}

impl<D: TaskDistribution> std::fmt::Debug for VecTrials<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VecTrials")
            .field("dist", &self.dist.name())
            .field("n_envs", &self.n_envs)
            .field("config", &self.config)
            .field("split", &self.split)
            .field("seed", &self.seed)
            .field("round", &self.round)
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

impl<D: TaskDistribution> VecTrials<D> {
    /// `n_envs` slots over `dist`'s `split`; call [`VecTrials::reset_trials`] to start.
    pub fn new(
        dist: Arc<D>,
        n_envs: usize,
        config: TrialConfig,
        split: Split,
        seed: u64,
    ) -> Result<Self> {
        config.validate()?;
        if n_envs == 0 {
            return Err(Error::InvalidConfig {
                field: "n_envs",
                value: "0".into(),
                reason: "expected at least 1",
            });
        }
        let layout = InputLayout::new(dist.obs_dim(), dist.n_actions());
        let k = config.episodes_per_trial;
        Ok(Self {
            dist,
            split,
            seed,
            round: 0,
            n_envs,
            layout,
            trials: Vec::with_capacity(n_envs),
            inputs: vec![0.0; n_envs * layout.dim()],
            final_inputs: vec![0.0; n_envs * layout.dim()],
            rewards: vec![0.0; n_envs],
            episode: vec![0; n_envs],
            episode_done: vec![false; n_envs],
            terminated: vec![false; n_envs],
            truncated: vec![false; n_envs],
            trial_done: vec![false; n_envs],
            valid: vec![false; n_envs],
            episode_returns: vec![0.0; n_envs * k],
            completed: vec![0; n_envs],
            config,
        })
    }

    /// Starts a round: samples a new task per slot, starts its trial, and returns the first
    /// inputs (`B × input_dim`, the previous-step block zero). The policy resets its hidden
    /// state here.
    pub fn reset_trials(&mut self) -> Result<&[f32]> {
        let round = self.round;
        self.trials.clear();
        let dim = self.layout.dim();
        for slot in 0..self.n_envs {
            let mut rng = trial_rng(self.seed, slot as u64, round);
            let env = self.dist.sample(self.split, &mut rng)?;
            for (what, expected, found) in [
                ("obs_dim", self.layout.obs_dim, env.obs_dim()),
                ("n_actions", self.layout.n_actions, env.n_actions()),
            ] {
                if expected != found {
                    return Err(Error::SpaceMismatch {
                        what,
                        expected,
                        found,
                    });
                }
            }
            let mut trial = Trial::new(env, self.config.clone(), rng)?;
            self.inputs[slot * dim..(slot + 1) * dim].copy_from_slice(trial.reset()?);
            self.trials.push(trial);
        }
        self.round += 1;
        self.rewards.fill(0.0);
        self.episode.fill(0);
        for flags in [
            &mut self.episode_done,
            &mut self.terminated,
            &mut self.truncated,
            &mut self.trial_done,
        ] {
            flags.fill(false);
        }
        self.valid.fill(true);
        self.episode_returns.fill(0.0);
        self.completed.fill(0);
        tracing::debug!(
            dist = self.dist.name(),
            round,
            n_envs = self.n_envs,
            "new trials"
        );
        Ok(&self.inputs)
    }

    /// Steps every slot whose trial is running with its action (actions of finished slots
    /// are ignored). After an error (a bad action, an env error) the round is left partly
    /// stepped: start a new one with [`VecTrials::reset_trials`].
    pub fn step(&mut self, actions: &[usize]) -> Result<StepBatch<'_>> {
        if actions.len() != self.n_envs {
            return Err(Error::ActionCountMismatch {
                found: actions.len(),
                expected: self.n_envs,
            });
        }
        if self.trials.len() != self.n_envs {
            return Err(Error::EpisodeNotRunning);
        }
        let dim = self.layout.dim();
        let k = self.config.episodes_per_trial;
        for (slot, (trial, &action)) in self.trials.iter_mut().zip(actions).enumerate() {
            if trial.is_done() {
                self.valid[slot] = false;
                self.rewards[slot] = 0.0;
                continue;
            }
            let step = trial.step(action)?;
            let row = slot * dim..(slot + 1) * dim;
            self.inputs[row.clone()].copy_from_slice(step.input);
            if let Some(final_input) = step.final_input {
                self.final_inputs[row].copy_from_slice(final_input);
            }
            self.rewards[slot] = step.reward as f32;
            self.episode[slot] = step.episode;
            self.episode_done[slot] = step.episode_done();
            self.terminated[slot] = step.terminated;
            self.truncated[slot] = step.truncated;
            self.trial_done[slot] = step.trial_done;
            self.valid[slot] = true;
            self.episode_returns[slot * k + step.episode] += step.reward;
            self.completed[slot] += usize::from(step.episode_done());
        }
        Ok(StepBatch {
            inputs: &self.inputs,
            final_inputs: &self.final_inputs,
            rewards: &self.rewards,
            episode: &self.episode,
            episode_done: &self.episode_done,
            terminated: &self.terminated,
            truncated: &self.truncated,
            trial_done: &self.trial_done,
            valid: &self.valid,
            all_done: self.trial_done.iter().all(|&d| d),
        })
    }

    /// The current policy inputs, `B × input_dim`.
    pub fn inputs(&self) -> &[f32] {
        &self.inputs
    }

    /// Number of slots B.
    pub fn n_envs(&self) -> usize {
        self.n_envs
    }

    /// Policy input length: `obs_dim + n_actions + 2`.
    pub fn input_dim(&self) -> usize {
        self.layout.dim()
    }

    /// The input layout.
    pub fn layout(&self) -> InputLayout {
        self.layout
    }

    /// Upper bound on a trial's steps: `K · max_episode_steps` of the distribution.
    pub fn max_trial_len(&self) -> usize {
        self.config.episodes_per_trial * self.dist.max_episode_steps()
    }

    /// Episodes per trial K.
    pub fn episodes_per_trial(&self) -> usize {
        self.config.episodes_per_trial
    }

    /// The distribution.
    pub fn dist(&self) -> &Arc<D> {
        &self.dist
    }

    /// The trials of the current round (empty before the first).
    pub fn trials(&self) -> &[Trial<D::Env>] {
        &self.trials
    }

    /// Rounds started so far.
    pub fn round(&self) -> u64 {
        self.round
    }

    /// Sum of rewards per slot and episode of this round, `B × K` row-major.
    pub fn episode_returns(&self) -> &[f64] {
        &self.episode_returns
    }

    /// Episodes completed per slot this round.
    pub fn completed_episodes(&self) -> &[usize] {
        &self.completed
    }

    /// The adaptation curve: mean return of episode `k` over the slots that completed it,
    /// for `k < K` (NaN where no slot did).
    pub fn mean_return_by_episode(&self) -> Vec<f64> {
        let k = self.config.episodes_per_trial;
        (0..k)
            .map(|episode| {
                let (sum, count) = (0..self.n_envs)
                    .filter(|&slot| self.completed[slot] > episode)
                    .fold((0.0, 0usize), |(sum, count), slot| {
                        (sum + self.episode_returns[slot * k + episode], count + 1)
                    });
                if count == 0 {
                    f64::NAN
                } else {
                    sum / count as f64
                }
            })
            .collect()
    }

    /// The state to save for an exact resume (take it between rounds).
    pub fn state(&self) -> VecTrialsState {
        VecTrialsState {
            seed: self.seed,
            round: self.round,
            n_envs: self.n_envs,
            split: self.split,
        }
    }

    /// Restores a saved state; the current round is dropped and the next
    /// [`VecTrials::reset_trials`] continues the saved run. An error when the number of slots
    /// or the split differ.
    pub fn restore(&mut self, state: &VecTrialsState) -> Result<()> {
        if state.n_envs != self.n_envs || state.split != self.split {
            return Err(Error::StateMismatch {
                reason: format!(
                    "saved {} slots on {:?}, this has {} slots on {:?}",
                    state.n_envs, state.split, self.n_envs, self.split
                ),
            });
        }
        self.seed = state.seed;
        self.round = state.round;
        self.trials.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;

    #[test]
    fn trial_rngs_differ_by_seed_slot_and_round() {
        let first = |seed, slot, round| trial_rng(seed, slot, round).next_u64();
        let base = first(1, 2, 3);
        assert_eq!(base, first(1, 2, 3));
        for other in [
            first(0, 2, 3),
            first(1, 3, 3),
            first(1, 2, 4),
            first(2, 1, 3),
        ] {
            assert_ne!(base, other);
        }
    }
}
