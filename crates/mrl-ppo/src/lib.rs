//! PPO meta-training for RL² agents.

mod error;
mod gae;
mod loss;
mod optim;
mod rollout;
mod update;

pub use error::{Error, Result};
pub use gae::{
    Gae, GaeConfig, GaeScope, StepEnd, TrialSteps, gae, gae_with_dones, masked_mean_std,
    normalize_advantages,
};
pub use loss::{PpoLoss, PpoLossConfig, PpoLossStats, PpoTargets, log_softmax, ppo_loss};
pub use optim::{Adam, AdamConfig, annealed_lr, clip_grad_norm, collect_grads, global_norm};
pub use rollout::{RolloutBuffer, RolloutStats, TrialColumns, collect_rollout, policy_obs_dim};
pub use update::{Learner, PpoConfig, StepReport, UpdateStats, trial_advantages};
