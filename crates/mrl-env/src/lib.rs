//! Environments for meta-reinforcement learning in trading.
//!
//! - [`Env`] and [`Step`]: the episodic contract (`terminated` and `truncated` kept apart).
//! - [`MarketData`] and [`TradingEnv`]: a bar series with its features, shared through an
//!   `Arc`, and the trading MDP on it (target positions or position sizing, [`ActionSpace`];
//!   the observation layout is [`TradingObs`]); its training reward is the net return or a
//!   risk-adjusted one ([`RewardConfig`]: differential Sharpe ratio, mean–variance,
//!   drawdown penalty).
//! - [`Trial`] and [`InputLayout`]: RL² trials of K episodes on one task, and the policy input
//!   `[obs, one_hot(a_{t−1}), r_{t−1}, d_{t−1}]`.
//! - [`TaskDistribution`] and [`VecTrials`]: the MDP distribution of meta-training, and B
//!   trials over it in lockstep with flat, allocation-free buffers; [`FixedMarket`] is the
//!   simplest distribution (one market split in time, random windows); [`MarketTasks`],
//!   [`SyntheticTasks`] and their weighted [`MixtureTasks`] are the market distributions.
//! - [`MarketOracle`]: the oracle of every synthetic market family (myopic on AR(1), planning
//!   over state and position on GBM, jumps and regimes, whose regime oracle knows the current
//!   state), the ceiling that results are read against.
//!
//! Reproducibility: every random draw comes from a `ChaCha8Rng` handed in ([`Env::reset`]),
//! owned by a [`Trial`], or derived by [`trial_rng`] from `(seed, slot, round)`.
//!
//! ```
//! use std::sync::Arc;
//!
//! use mrl_data::{Bar, BarSeries};
//! use mrl_env::{FixedMarket, MarketData, Split, TargetAction, TradingConfig, TrialConfig, VecTrials};
//!
//! let bars: Vec<Bar> = (0..400)
//!     .map(|i| {
//!         let close = 100.0 + 10.0 * (i as f64 * 0.1).sin();
//!         Bar { timestamp: i * 3_600_000, open: close, high: close, low: close, close, volume: 1.0 }
//!     })
//!     .collect();
//! let market = MarketData::new(BarSeries::new(&bars)?)?.shared();
//! let config = TradingConfig { max_steps: 50, ..TradingConfig::default() };
//! let dist = Arc::new(FixedMarket::new(market, config, 0.25)?);
//! let mut trials = VecTrials::new(dist, 4, TrialConfig::default(), Split::Train, 7)?;
//! let inputs = trials.reset_trials()?;
//! assert_eq!(inputs.len(), 4 * (14 + 3 + 2));
//! let actions = [TargetAction::Buy.index(); 4];
//! for _ in 0..trials.max_trial_len() {
//!     if trials.step(&actions)?.all_done {
//!         break;
//!     }
//! }
//! assert_eq!(trials.completed_episodes(), &[3, 3, 3, 3]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod bandit;
mod bandit_dp;
mod env;
mod error;
mod market;
mod oracle;
mod reward;
mod sizing;
mod task;
mod tasks;
mod trading;
mod trial;
mod vec_env;

pub use bandit::{
    ArmPrior, BanditDistribution, BanditEnv, BanditPolicy, BanditTask, BaselineScore,
    EpsilonGreedyPolicy, GreedyPolicy, PAPER_TUNING_GRID, RandomPolicy, ThompsonPolicy, Ucb1Policy,
    default_baselines, evaluate_baselines, evaluate_paper_baselines, evaluate_policy, sample_tasks,
};
pub use bandit_dp::BayesOptimalPolicy;
pub use env::{Env, Step};
pub use error::{Error, Result};
pub use market::MarketData;
pub use oracle::{Ar1Oracle, MarketOracle};
pub use reward::{
    DEFAULT_DRAWDOWN_PENALTY, DEFAULT_RISK_AVERSION, DEFAULT_SHARPE_ETA,
    DEFAULT_SHARPE_INITIAL_STD, DrawdownTracker, RewardConfig, RewardState, SHARPE_STD_FLOOR,
    SharpeMoments, differential_sharpe, mean_variance_utility,
};
pub use sizing::{ActionSpace, SizingAction, TargetAction};
pub use task::{FixedMarket, Split, TaskDistribution};
pub use tasks::{
    Ar1Family, AssetSplit, DynTasks, MarketTasks, MixtureTasks, ProcessSource, RegimeConfig,
    RegimeThresholds, SyntheticTasks, TaskEnv, TaskInfo, TaskKind, WindowStats, quantile,
};
pub use trading::{EpisodeStarts, TradingConfig, TradingEnv, TradingObs, TradingState, step_pnl};
pub use trial::{InputLayout, Trial, TrialConfig, TrialStep};
pub use vec_env::{StepBatch, VecTrials, VecTrialsState, trial_rng};
