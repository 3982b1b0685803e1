//! mrl: meta-reinforcement learning for trading.
//!
//! The facade of the workspace: each crate under its short name, plus the one bridge that
//! needs both the trainer and the backtester ([`walk_forward_config`]).
//!
//! - [`data`]: bars, CSV/Parquet, resampling, synthetic markets, the Bybit client.
//! - [`features`]: the 11 causal features.
//! - [`env`](mod@env): trading envs, RL² trials, vectorised trials, task distributions, bandits.
//! - [`agent`]: the RL² GRU actor-critic and the MLP baseline on candle.
//! - [`ppo`]: PPO meta-training with exact resume.
//! - [`backtest`]: walk-forward backtests, metrics, baselines, reports.
//! - [`study`]: RL² against the MLP over several seeds, pooled with intervals (`mrl study`).

pub use mrl_agent as agent;
pub use mrl_backtest as backtest;
pub use mrl_data as data;
pub use mrl_env as env;
pub use mrl_features as features;
pub use mrl_ppo as ppo;

pub mod study;

/// Walk-forward settings that reproduce the trial a run was trained on: one evaluation
/// window per episode (`max_steps` bars), the trial's earlier episodes as adaptation
/// episodes, and the run's costs, action space, training reward and reward scales. The test
/// period and the action mode keep their defaults (last 30 %, greedy).
pub fn walk_forward_config(train: &ppo::TrainConfig) -> backtest::WalkForwardConfig {
    let trading = &train.task.trading;
    backtest::WalkForwardConfig {
        window_len: trading.max_steps,
        adaptation_len: trading.max_steps,
        adaptation_episodes: train.task.episodes_per_trial.saturating_sub(1),
        cost_rate: trading.cost_rate,
        actions: trading.actions,
        reward_scale: trading.reward_scale,
        reward: trading.reward,
        reward_feedback_scale: train.task.reward_feedback_scale,
        ..backtest::WalkForwardConfig::default()
    }
}
