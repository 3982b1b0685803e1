//! PPO meta-training for RL² agents.

mod error;
mod gae;
mod loss;
mod optim;

pub use error::{Error, Result};
pub use gae::{
    Gae, GaeConfig, GaeScope, StepEnd, TrialSteps, gae, gae_with_dones, masked_mean_std,
    normalize_advantages,
};
pub use loss::{PpoLoss, PpoLossConfig, PpoLossStats, PpoTargets, log_softmax, ppo_loss};
pub use optim::{Adam, AdamConfig, annealed_lr, clip_grad_norm, collect_grads, global_norm};
