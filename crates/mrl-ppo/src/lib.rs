//! PPO meta-training for RL² agents.

mod checkpoint;
mod config;
mod error;
mod eval;
mod gae;
mod loss;
mod optim;
mod rollout;
mod trainer;
mod update;

pub use checkpoint::{
    CHECKPOINT_DIR, LoadedCheckpoint, STATE_FORMAT, TrainState, checkpoint_dir, load_checkpoint,
    load_policy, save_checkpoint, write_file_atomic,
};
pub use config::{AgentSection, TaskKind, TaskSection, TrainConfig};
pub use error::{Error, Result};
pub use eval::{BanditEvaluation, evaluate_bandits, resolve_checkpoint};
pub use gae::{
    Gae, GaeConfig, GaeScope, StepEnd, TrialSteps, gae, gae_with_dones, masked_mean_std,
    normalize_advantages,
};
pub use loss::{PpoLoss, PpoLossConfig, PpoLossStats, PpoTargets, log_softmax, ppo_loss};
pub use optim::{Adam, AdamConfig, annealed_lr, clip_grad_norm, collect_grads, global_norm};
pub use rollout::{RolloutBuffer, RolloutStats, TrialColumns, collect_rollout, policy_obs_dim};
pub use trainer::{
    CONFIG_FILE, IterationStats, LOG_FILE, TrainSummary, Trainer, agent_config, train, train_on,
};
pub use update::{Learner, PpoConfig, StepReport, UpdateStats, trial_advantages};
