//! Task distributions over markets: assets, regime windows, timeframes, synthetic processes.
//!
//! Every distribution here returns a [`TaskEnv`]: a [`TradingEnv`] plus the [`TaskInfo`] of
//! the task it trades (which asset, which window, which regime, or the true parameters of a
//! synthetic process), so that evaluation code can group results by task and build oracles.
//!
//! Real-data distributions ([`MarketTasks`]) cut every series into a train part and a test
//! part *before* computing features: each part is its own [`MarketData`], so no bar of one
//! part reaches the other, not even through the feature warm-up. Features are computed once
//! per part at construction and shared by every sampled env through an [`Arc`].
//! Synthetic distributions ([`SyntheticTasks`]) generate a fresh series per sampled task.
//! [`MixtureTasks`] draws each task from one of several of these distributions, by weight.

mod market_tasks;
mod mixture;
mod regime;
mod synthetic;

use std::ops::RangeInclusive;
use std::sync::Arc;

use mrl_data::{MarketProcess, RegimeLabel};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{Env, MarketData, Result, Split, Step, TradingEnv};

pub use market_tasks::{AssetSplit, MarketTasks};
pub use mixture::{DynTasks, MixtureTasks};
pub use regime::{RegimeConfig, RegimeThresholds, WindowStats, quantile};
pub use synthetic::{Ar1Family, ProcessSource, SyntheticTasks};

/// ChaCha stream id of the tasks of `split`: train and test draw from different streams.
fn split_stream(split: Split) -> u64 {
    match split {
        Split::Train => 0,
        Split::Test => 1,
    }
}

/// A task RNG for `split`: one `u64` drawn from the caller's `rng`, expanded on the
/// split's own ChaCha stream, so train and test task sequences are independent even when the
/// caller's seeds coincide.
pub(crate) fn split_rng(split: Split, rng: &mut ChaCha8Rng) -> ChaCha8Rng {
    let mut task_rng = ChaCha8Rng::seed_from_u64(rng.next_u64());
    task_rng.set_stream(split_stream(split));
    task_rng
}

/// What kind of task a [`TaskEnv`] is, with what identifies it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TaskKind {
    /// One asset over one period.
    Asset,
    /// A window of one labelled regime.
    Regime {
        /// The window's label.
        label: RegimeLabel,
        /// The window's statistics the label was read from.
        stats: WindowStats,
    },
    /// One asset at one bar interval.
    Timeframe {
        /// Bar interval in milliseconds.
        interval_ms: i64,
    },
    /// A generated market.
    Synthetic {
        /// The seed it was generated from (train and test seeds never coincide).
        seed: u64,
        /// The true law of the market, e.g. AR(1) `φ`, for oracles.
        process: MarketProcess,
        /// For a Markov regime process, the true state of every bar of the market (an index
        /// into its states), for the oracle that knows the regime
        /// ([`MarketOracle`](crate::MarketOracle)); `None` for the other processes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        regimes: Option<Vec<usize>>,
    },
}

/// Identity of a task: a name, the bars its episodes may touch, and its kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    /// Human-readable name, e.g. `"BTCUSDT[train]"` or `"ar1(phi=0.31)#123"`.
    pub name: String,
    /// The asset's symbol, where it has one.
    pub symbol: Option<String>,
    /// The split the task was drawn from.
    pub split: Split,
    /// Timestamp (ms UTC) of the first bar of the task's data, feature warm-up included.
    pub first_timestamp: i64,
    /// Timestamp (ms UTC) of the last bar an episode can reach (its last `p_{t+1}`).
    pub last_timestamp: i64,
    /// What the task is.
    pub kind: TaskKind,
}

/// A [`TradingEnv`] on one task, with the task's [`TaskInfo`].
///
/// It is the env every distribution of this module returns; [`Env`] is delegated unchanged.
#[derive(Debug, Clone)]
pub struct TaskEnv {
    env: TradingEnv,
    info: Arc<TaskInfo>,
}

impl TaskEnv {
    /// Wraps `env`, described by `info`.
    pub fn new(env: TradingEnv, info: Arc<TaskInfo>) -> Self {
        Self { env, info }
    }

    /// The task: name, bars, kind and, for synthetic tasks, the true parameters.
    pub fn task_info(&self) -> &TaskInfo {
        &self.info
    }

    /// The trading env (bar, position, market).
    pub fn trading(&self) -> &TradingEnv {
        &self.env
    }

    /// The trading env, mutably (explicit starts for walk-forward evaluation).
    pub fn trading_mut(&mut self) -> &mut TradingEnv {
        &mut self.env
    }

    /// The trading env, without the task info.
    pub fn into_trading(self) -> TradingEnv {
        self.env
    }
}

impl Env for TaskEnv {
    fn obs_dim(&self) -> usize {
        self.env.obs_dim()
    }

    fn n_actions(&self) -> usize {
        self.env.n_actions()
    }

    fn max_episode_steps(&self) -> usize {
        self.env.max_episode_steps()
    }

    fn reset(&mut self, rng: &mut ChaCha8Rng) -> Result<&[f32]> {
        self.env.reset(rng)
    }

    fn reset_next_episode(&mut self, rng: &mut ChaCha8Rng) -> Result<&[f32]> {
        self.env.reset_next_episode(rng)
    }

    fn step(&mut self, action: usize) -> Result<Step<'_>> {
        self.env.step(action)
    }

    /// `[φ]` for a synthetic AR(1) market ([`MarketProcess::Ar1`]); for a Markov regime
    /// market, the state of the current bar (the one the oracle uses): `[drift in basis
    /// points per bar (×10⁴), volatility in percent per bar (×100)]`, so both are O(1);
    /// nothing for the other tasks.
    fn task_parameters(&self, out: &mut Vec<f32>) {
        out.clear();
        match &self.info.kind {
            TaskKind::Synthetic {
                process: MarketProcess::Ar1(p),
                ..
            } => out.push(p.phi as f32),
            TaskKind::Synthetic {
                process: MarketProcess::Regime(p),
                regimes: Some(states),
                ..
            } => {
                let state = states.get(self.env.bar()).and_then(|&s| p.states.get(s));
                if let Some(state) = state {
                    out.extend([
                        (state.drift * 1e4) as f32,
                        (state.volatility * 100.0) as f32,
                    ]);
                }
            }
            _ => {}
        }
    }
}

/// One prebuilt task of a real-data distribution: its market part, where episodes may start,
/// and its identity. `group` is what sampling balances over (asset, regime or timeframe).
#[derive(Debug, Clone)]
struct MarketTask {
    market: Arc<MarketData>,
    starts: RangeInclusive<usize>,
    group: usize,
    info: Arc<TaskInfo>,
}
