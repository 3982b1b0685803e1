//! # mrl-ppo
//!
//! PPO meta-training for the RL² agents of [`mrl_agent`] over the task distributions of
//! [`mrl_env`]: rollouts of B parallel trials, GAE across the whole trial, the clipped PPO
//! objective with candle autograd, global-norm clipping and Adam (PyTorch's update) over the
//! agent's parameters in a fixed order, and a training loop with a JSONL log, atomic
//! checkpoints and an exact resume.
//!
//! ```text
//! rollout   VecTrials (B trials, new task each) ──► RolloutWorkspace::step (no graph, sampled)
//!             buffers (T, B): inputs, actions, log π, V, rewards, episode/trial ends, valid
//! GAE       per trial, f64: cut at the trial end only (default) or at every episode end;
//!             terminal → no bootstrap, truncated → bootstrap from V
//! update    epochs × minibatches of whole trials: forward_seq_train from h0 = 0 (full BPTT,
//!             the whole network as one autograd node with a hand-written backward),
//!             clipped loss, backward, clip by global norm, Adam; optional target-KL stop
//! ```
//!
//! ## Central types
//!
//! - [`TrainConfig`]: the whole run as nested TOML (design-document defaults: lr 3e-4,
//!   γ 0.99, λ 0.95, clip 0.2, value 0.5, entropy 0.01, grad-norm 0.5, Adam without weight
//!   decay); [`train`] runs or resumes it into a directory.
//! - [`Trainer`]: the loop over any [`TaskDistribution`](mrl_env::TaskDistribution), one
//!   [`Trainer::step`] per iteration, [`IterationStats`] per iteration.
//! - [`Learner`]: the policy, its parameters and [`Adam`]; [`Learner::gradient_step`] and
//!   [`Learner::update`].
//! - [`gae`] / [`GaeScope`] / [`StepEnd`], [`ppo_loss`], [`clip_grad_norm`]: the pure pieces,
//!   checked against the PyTorch reference (`fixtures/golden/{gae,ppo_loss,ppo_update}.json`).
//! - [`evaluate_bandits`]: a trained agent beside the classic bandit algorithms on the same
//!   held-out tasks.
//! - The task-inference agent's auxiliary loss ([`belief_loss`], [`reconstruction_loss`],
//!   [`AuxTargets`], [`Learner::gradient_step_with_belief`], weight `ppo.belief_coef`):
//!   supervised on the task's true parameters, which [`collect_rollout`] stores beside the
//!   inputs ([`RolloutBuffer::with_task_targets`]), or a reward reconstruction where they are
//!   unknown; [`trace_belief`] records the belief over a played trial.
//!
//! ## Example
//!
//! ```
//! use mrl_ppo::{AgentSection, PpoConfig, TaskKind, TaskSection, TrainConfig, train};
//!
//! # fn main() -> mrl_ppo::Result<()> {
//! let config = TrainConfig {
//!     iterations: 2,
//!     n_envs: 4,
//!     agent: AgentSection { hidden: 8, ..Default::default() },
//!     ppo: PpoConfig { epochs: 1, minibatch_trials: 2, ..Default::default() },
//!     task: TaskSection {
//!         kind: TaskKind::Bandits { arms: 3, pulls: 5, observe_time: false },
//!         ..Default::default()
//!     },
//!     ..Default::default()
//! };
//! let dir = tempfile::tempdir().map_err(|e| mrl_ppo::Error::Io { path: ".".into(), source: e })?;
//! let summary = train(&config, dir.path(), false, |stats| {
//!     assert!(stats.entropy > 0.0);
//! })?;
//! assert_eq!(summary.iterations, 2);
//! assert!(dir.path().join("checkpoint/model.safetensors").exists());
//! # Ok(())
//! # }
//! ```
//!
//! ## Feature flags
//!
//! - `cuda`: forwards to candle's and mrl-agent's CUDA backends.

mod belief;
mod checkpoint;
mod config;
mod error;
mod eval;
mod fused;
mod gae;
mod grad;
mod loss;
mod normalize;
mod optim;
mod rollout;
mod trainer;
mod update;

pub use belief::{
    AuxTargets, BeliefTrace, belief_loss, belief_targets, flatten_belief, gaussian_nll,
    reconstruction_loss, reward_targets, squared_error, trace_belief,
};
pub use checkpoint::{
    CHECKPOINT_DIR, CHECKPOINT_FILES, LoadedCheckpoint, STATE_FORMAT, TrainState, checkpoint_dir,
    load_checkpoint, load_policy, resumable_checkpoint, save_checkpoint, swap_in_checkpoint,
    write_file_atomic,
};
pub use config::{
    AgentSection, DATA_DIR_ENV, MixtureComponent, TaskKind, TaskSection, TrainConfig, asset_path,
    parse_interval, resolve_data_dir,
};
pub use error::{Error, Result};
pub use eval::{BanditEvaluation, bandit_setting, evaluate_bandits, resolve_checkpoint};
pub use gae::{
    Gae, GaeConfig, GaeScope, StepEnd, TrialSteps, gae, gae_with_dones, masked_mean_std,
    normalize_advantages,
};
pub use grad::{PpoBatch, PpoGradients, ppo_batch, ppo_gradients};
pub use loss::{PpoLoss, PpoLossConfig, PpoLossStats, PpoTargets, log_softmax, ppo_loss};
pub use normalize::{NormMode, NormState, NormalizeConfig};
pub use optim::{Adam, AdamConfig, annealed_lr, clip_grad_norm, collect_grads, global_norm};
pub use rollout::{RolloutBuffer, RolloutStats, TrialColumns, collect_rollout, policy_obs_dim};
pub use trainer::{
    CONFIG_FILE, IterationStats, LOG_FILE, TrainSummary, Trainer, agent_config, trading_tasks,
    train, train_on,
};
pub use update::{Learner, PpoConfig, StepReport, UpdateStats, trial_advantages, unroll};
