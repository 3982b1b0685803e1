//! Task distributions: the distribution over MDPs that meta-training samples from.

use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{Env, Result};

/// Which part of a distribution to sample from: tasks for meta-training, or held-out tasks
/// (other assets, later periods, unseen parameters) for meta-testing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Meta-training tasks.
    #[default]
    Train,
    /// Held-out meta-test tasks.
    Test,
}

/// The MDP distribution of meta-training: each trial samples one task.
///
/// Every env sampled from one distribution has the same `obs_dim` and `n_actions`, so one
/// policy serves them all.
pub trait TaskDistribution: Send + Sync {
    /// The env a task is.
    type Env: Env;
    /// Short name for logs and reports.
    fn name(&self) -> &str;
    /// Observation length of every sampled env.
    fn obs_dim(&self) -> usize;
    /// Number of actions of every sampled env.
    fn n_actions(&self) -> usize;
    /// Upper bound on [`Env::max_episode_steps`] of every sampled env, known before sampling
    /// so that rollout buffers can be allocated once.
    fn max_episode_steps(&self) -> usize;
    /// Draws one task (e.g. an asset and a regime, or a bandit's arm means) from `split`.
    fn sample(&self, split: Split, rng: &mut ChaCha8Rng) -> Result<Self::Env>;
}
