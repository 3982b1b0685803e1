//! The trading environment: one market, one position, marked-to-market equity.
//!
//! # Accounting (per step, at bar `t` with close `p_t`)
//!
//! The action sets the new position `q` (see [`ActionSpace`]); then
//!
//! ```text
//! cost        = cost_rate · |q − q_prev|          (a flip −1 → +1 costs twice: close + open)
//! step_return = q · (p_{t+1} / p_t − 1)
//! net_return  = step_return − cost
//! equity     ← equity · (1 + net_return)          (marked to market, compounding, starts at 1)
//! reward      = reward_scale · u(net_return, equity)
//! ```
//!
//! where `u` is the training reward of [`TradingConfig::reward`]: the net return itself by
//! default, or a risk-adjusted one (differential Sharpe ratio, mean–variance utility,
//! drawdown penalty; see [`RewardConfig`]) whose state restarts with every episode. The
//! accounting above never depends on the reward: the same actions book the same returns and
//! equity whatever `u` is.
//!
//! and the env moves to bar `t + 1`. The episode is `terminated` when equity falls to
//! `stop_equity` or below (bankruptcy at the default 0: the state is terminal, no bootstrap),
//! and `truncated` after `max_steps` steps or at the last bar of the data (a time limit:
//! bootstrap from the value of the final observation). Never both: bankruptcy wins.
//!
//! # Observation
//!
//! [`TradingObs`] is the one definition of the layout: the 11 features of bar `t`, the
//! position, the episode P&L `equity − 1`, and the elapsed fraction `steps / max_steps`
//! (14 `f32`). Everything in it is known at the close of bar `t`.

use std::ops::{Range, RangeInclusive};
use std::sync::Arc;

use mrl_features::{N_FEATURES, WARMUP};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{ActionSpace, Env, Error, MarketData, Result, RewardConfig, RewardState, Step};

/// Layout of a trading observation (the one place it is defined).
///
/// | index | value |
/// |---|---|
/// | `0..11` | the 11 features of bar `t` (`mrl_features::FEATURE_NAMES` order) |
/// | `11` | position `q ∈ [−1, 1]` held from bar `t` on (before this step's action) |
/// | `12` | episode P&L: `equity − 1` |
/// | `13` | elapsed fraction of the episode: `steps / max_steps ∈ [0, 1]` |
#[derive(Debug, Clone, Copy)]
pub struct TradingObs;

impl TradingObs {
    /// Indices of the features.
    pub const FEATURES: Range<usize> = 0..N_FEATURES;
    /// Index of the position.
    pub const POSITION: usize = N_FEATURES;
    /// Index of the episode P&L.
    pub const PNL: usize = N_FEATURES + 1;
    /// Index of the elapsed fraction.
    pub const ELAPSED: usize = N_FEATURES + 2;
    /// Length of an observation: 14.
    pub const DIM: usize = N_FEATURES + 3;
}

/// Settings of a [`TradingEnv`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TradingConfig {
    /// Steps (bars) of an episode. Default 200.
    pub max_steps: usize,
    /// Proportional cost per unit of position traded. Default 0.001 (10 bps, a taker fee on
    /// a crypto exchange).
    pub cost_rate: f64,
    /// Position at the start of every episode, in `[−1, 1]`; entering it costs nothing.
    /// Default 0 (flat).
    pub initial_position: f64,
    /// Factor from the net return to the reward (equity always uses the unscaled return).
    /// Default 1.
    pub reward_scale: f64,
    /// The training reward before `reward_scale`. Default [`RewardConfig::NetReturn`] (left
    /// out when serialised, so configs written before it existed read the same).
    #[serde(skip_serializing_if = "RewardConfig::is_net_return")]
    pub reward: RewardConfig,
    /// The episode terminates when equity is at or below this, in `[0, 1)`. Default 0
    /// (bankruptcy).
    pub stop_equity: f64,
    /// The actions. Default [`ActionSpace::Target`] (Buy / Sell / Hold).
    pub actions: ActionSpace,
    /// Where the episodes of a trial after the first start. Default
    /// [`EpisodeStarts::Random`] (left out when serialised, so configs written before it
    /// existed read the same).
    #[serde(skip_serializing_if = "EpisodeStarts::is_random")]
    pub episode_starts: EpisodeStarts,
}

/// Where the episodes of a trial after the first start ([`Env::reset_next_episode`]).
///
/// The walk-forward backtest runs a trial's episodes on consecutive windows of the market
/// (`mrl_backtest`'s adaptation episodes, then the evaluation window), so what the hidden
/// state holds at an episode boundary (the current regime, the position of a trend) is
/// still true in the next episode. `Consecutive` trains on the same arrangement; `Random`
/// (the RL² convention of Duan et al. 2016: independent episodes of one task) draws every
/// start anew, so that only the task's law carries over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EpisodeStarts {
    /// Every episode at a random start (from the env's random starts).
    #[default]
    Random,
    /// The next episode at the bar where the previous one ended, when a whole episode fits
    /// there within the env's random starts (so within its split); otherwise at a random
    /// start.
    Consecutive,
}

impl EpisodeStarts {
    /// Whether this is [`EpisodeStarts::Random`].
    pub fn is_random(&self) -> bool {
        *self == Self::Random
    }
}

impl Default for TradingConfig {
    fn default() -> Self {
        Self {
            max_steps: 200,
            cost_rate: 0.001,
            initial_position: 0.0,
            reward_scale: 1.0,
            reward: RewardConfig::NetReturn,
            stop_equity: 0.0,
            actions: ActionSpace::Target,
            episode_starts: EpisodeStarts::Random,
        }
    }
}

impl TradingConfig {
    /// Checks every field's domain.
    pub fn validate(&self) -> Result<()> {
        check(
            self.max_steps >= 1,
            "max_steps",
            self.max_steps.to_string(),
            "expected at least 1",
        )?;
        check(
            self.cost_rate.is_finite() && (0.0..1.0).contains(&self.cost_rate),
            "cost_rate",
            self.cost_rate.to_string(),
            "expected a value in [0, 1)",
        )?;
        check(
            (-1.0..=1.0).contains(&self.initial_position),
            "initial_position",
            self.initial_position.to_string(),
            "expected a value in [-1, 1]",
        )?;
        check(
            self.reward_scale.is_finite() && self.reward_scale > 0.0,
            "reward_scale",
            self.reward_scale.to_string(),
            "expected a finite value > 0",
        )?;
        check(
            (0.0..1.0).contains(&self.stop_equity),
            "stop_equity",
            self.stop_equity.to_string(),
            "expected a value in [0, 1)",
        )?;
        self.reward.validate()?;
        self.actions.validate()
    }

    /// Bars a series needs for one full episode: `WARMUP + max_steps + 1`.
    pub fn min_bars(&self) -> usize {
        WARMUP + self.max_steps + 1
    }
}

/// `Ok` when `ok`, else [`Error::InvalidConfig`] naming `field`, its `value` and the
/// `reason`: the checks of [`TradingConfig`] and [`RewardConfig`].
pub(crate) fn check(
    ok: bool,
    field: &'static str,
    value: String,
    reason: &'static str,
) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidConfig {
            field,
            value,
            reason,
        })
    }
}

/// Gross return and cost of one step: `(q·(p₁/p₀ − 1), cost_rate·|q − q_prev|)`.
///
/// The whole accounting of [`TradingEnv`] in one pure function, for baselines that must book
/// trades exactly as the env does.
pub fn step_pnl(
    prev_position: f64,
    position: f64,
    price: f64,
    next_price: f64,
    cost_rate: f64,
) -> (f64, f64) {
    let step_return = position * (next_price / price - 1.0);
    let cost = cost_rate * (position - prev_position).abs();
    (step_return, cost)
}

/// The state of the current episode, readable after every step without allocation.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TradingState {
    /// Bar the episode started at.
    pub start: usize,
    /// Current bar `t`: the observation is of this bar.
    pub bar: usize,
    /// Steps taken in this episode.
    pub steps: usize,
    /// Steps this episode will last unless it terminates: `max_steps`, or fewer when the
    /// data ends first (explicit starts only).
    pub episode_len: usize,
    /// Position held from `bar` on.
    pub position: f64,
    /// Position before the last step.
    pub prev_position: f64,
    /// Equity, 1 at the episode start.
    pub equity: f64,
    /// Gross return of the last step `q·(p_{t+1}/p_t − 1)`.
    pub step_return: f64,
    /// Cost of the last step.
    pub cost: f64,
    /// `step_return − cost` of the last step (the unscaled reward under
    /// [`RewardConfig::NetReturn`]).
    pub net_return: f64,
    /// True between a reset and the end of the episode.
    pub running: bool,
}

impl TradingState {
    fn idle() -> Self {
        Self {
            start: 0,
            bar: 0,
            steps: 0,
            episode_len: 0,
            position: 0.0,
            prev_position: 0.0,
            equity: 1.0,
            step_return: 0.0,
            cost: 0.0,
            net_return: 0.0,
            running: false,
        }
    }
}

/// Trading one market with the accounting of the module docs.
///
/// Episodes start at a random bar drawn from the `rng` given to [`Env::reset`] (training),
/// at a given bar ([`TradingEnv::reset_at`], walk-forward), or at the next bar of a schedule
/// ([`TradingEnv::schedule_starts`], so that a [`Trial`](crate::Trial) runs its episodes
/// on chosen windows in time order).
#[derive(Debug, Clone)]
pub struct TradingEnv {
    market: Arc<MarketData>,
    config: TradingConfig,
    random_starts: RangeInclusive<usize>,
    schedule: Vec<usize>,
    next_scheduled: usize,
    state: TradingState,
    reward: RewardState,
    obs: [f32; TradingObs::DIM],
}

impl TradingEnv {
    /// An env on `market`; an error for an invalid config or a series shorter than
    /// [`TradingConfig::min_bars`].
    pub fn new(market: Arc<MarketData>, config: TradingConfig) -> Result<Self> {
        config.validate()?;
        let needed = config.min_bars();
        if market.len() < needed {
            return Err(Error::SeriesTooShort {
                len: market.len(),
                needed,
                warmup: WARMUP,
                max_steps: config.max_steps,
            });
        }
        let random_starts = WARMUP..=market.len() - 1 - config.max_steps;
        let reward = RewardState::new(config.reward);
        Ok(Self {
            market,
            config,
            random_starts,
            schedule: Vec::new(),
            next_scheduled: 0,
            state: TradingState::idle(),
            reward,
            obs: [0.0; TradingObs::DIM],
        })
    }

    /// Restricts random starts to `starts` (for example the training part of a split), which
    /// must lie within [`TradingEnv::valid_starts`].
    pub fn with_random_starts(mut self, starts: RangeInclusive<usize>) -> Result<Self> {
        let valid = self.valid_starts();
        for start in [*starts.start(), *starts.end()] {
            if !valid.contains(&start) || starts.is_empty() {
                return Err(Error::InvalidStart {
                    start,
                    min: *valid.start(),
                    max: *valid.end(),
                });
            }
        }
        self.random_starts = starts;
        Ok(self)
    }

    /// Starts of a full `max_steps` episode: `WARMUP ..= len − 1 − max_steps`.
    pub fn valid_starts(&self) -> RangeInclusive<usize> {
        WARMUP..=self.market.len() - 1 - self.config.max_steps
    }

    /// Where [`Env::reset`] draws random starts from.
    pub fn random_starts(&self) -> RangeInclusive<usize> {
        self.random_starts.clone()
    }

    /// Starts an episode at bar `start` and returns its first observation.
    ///
    /// Any `start` in `WARMUP ..= len − 2` is accepted; the episode is truncated at the last
    /// bar when the data ends before `max_steps` steps.
    pub fn reset_at(&mut self, start: usize) -> Result<&[f32]> {
        self.check_start(start)?;
        let position = self.config.initial_position;
        self.state = TradingState {
            start,
            bar: start,
            steps: 0,
            episode_len: self.config.max_steps.min(self.market.len() - 1 - start),
            position,
            prev_position: position,
            equity: 1.0,
            step_return: 0.0,
            cost: 0.0,
            net_return: 0.0,
            running: true,
        };
        self.reward.reset();
        self.write_obs();
        Ok(&self.obs)
    }

    /// Makes the next resets ([`Env::reset`]) start at `starts`, in order, ignoring the rng;
    /// once they are used up, `reset` is an error until a new schedule is set. An empty
    /// schedule goes back to random starts.
    pub fn schedule_starts(&mut self, starts: &[usize]) -> Result<()> {
        for &start in starts {
            self.check_start(start)?;
        }
        self.schedule.clear();
        self.schedule.extend_from_slice(starts);
        self.next_scheduled = 0;
        Ok(())
    }

    fn check_start(&self, start: usize) -> Result<()> {
        let max = self.market.len() - 2;
        if (WARMUP..=max).contains(&start) {
            Ok(())
        } else {
            Err(Error::InvalidStart {
                start,
                min: WARMUP,
                max,
            })
        }
    }

    /// The episode's state: position, equity, last step's return and cost, current bar.
    pub fn state(&self) -> &TradingState {
        &self.state
    }

    /// Position held from the current bar on.
    pub fn position(&self) -> f64 {
        self.state.position
    }

    /// Equity of the episode (1 at its start).
    pub fn equity(&self) -> f64 {
        self.state.equity
    }

    /// Current bar index.
    pub fn bar(&self) -> usize {
        self.state.bar
    }

    /// The current observation (of the last reset or step).
    pub fn obs(&self) -> &[f32] {
        &self.obs
    }

    /// The market traded.
    pub fn market(&self) -> &Arc<MarketData> {
        &self.market
    }

    /// The settings.
    pub fn config(&self) -> &TradingConfig {
        &self.config
    }

    fn write_obs(&mut self) {
        let t = self.state.bar;
        let features = &self.market.feature_matrix()[t * N_FEATURES..(t + 1) * N_FEATURES];
        self.obs[TradingObs::FEATURES].copy_from_slice(features);
        self.obs[TradingObs::POSITION] = self.state.position as f32;
        self.obs[TradingObs::PNL] = (self.state.equity - 1.0) as f32;
        self.obs[TradingObs::ELAPSED] =
            (self.state.steps as f64 / self.config.max_steps as f64) as f32;
    }
}

impl Env for TradingEnv {
    fn obs_dim(&self) -> usize {
        TradingObs::DIM
    }

    fn n_actions(&self) -> usize {
        self.config.actions.n_actions()
    }

    fn max_episode_steps(&self) -> usize {
        self.config.max_steps
    }

    fn reset(&mut self, rng: &mut ChaCha8Rng) -> Result<&[f32]> {
        let start = if self.schedule.is_empty() {
            rng.random_range(self.random_starts.clone())
        } else {
            let start = *self
                .schedule
                .get(self.next_scheduled)
                .ok_or(Error::StartsExhausted {
                    scheduled: self.schedule.len(),
                })?;
            self.next_scheduled += 1;
            start
        };
        self.reset_at(start)
    }

    /// With [`EpisodeStarts::Consecutive`], no schedule set and a whole episode's room within
    /// the random starts, the next episode starts at the bar the last one ended on;
    /// otherwise as [`Env::reset`].
    fn reset_next_episode(&mut self, rng: &mut ChaCha8Rng) -> Result<&[f32]> {
        let next = self.state.bar;
        let continues = self.config.episode_starts == EpisodeStarts::Consecutive
            && self.schedule.is_empty()
            && self.state.steps > 0
            && self.random_starts.contains(&next);
        if continues {
            self.reset_at(next)
        } else {
            self.reset(rng)
        }
    }

    fn step(&mut self, action: usize) -> Result<Step<'_>> {
        let s = &mut self.state;
        if !s.running {
            return Err(Error::EpisodeNotRunning);
        }
        let position = self.config.actions.next_position(action, s.position)?;
        let closes = self.market.closes();
        let (step_return, cost) = step_pnl(
            s.position,
            position,
            closes[s.bar],
            closes[s.bar + 1],
            self.config.cost_rate,
        );
        s.prev_position = s.position;
        s.position = position;
        s.step_return = step_return;
        s.cost = cost;
        s.net_return = step_return - cost;
        s.equity *= 1.0 + s.net_return;
        s.bar += 1;
        s.steps += 1;
        let terminated = s.equity <= self.config.stop_equity;
        let truncated = !terminated && s.steps >= s.episode_len;
        s.running = !(terminated || truncated);
        let reward = self.config.reward_scale * self.reward.reward(s.net_return, s.equity);
        self.write_obs();
        Ok(Step {
            obs: &self.obs,
            reward,
            terminated,
            truncated,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use mrl_data::{Bar, BarSeries, HOUR_MS};
    use rand::SeedableRng;

    use super::*;

    /// A market on the given closes (hourly bars, open = close).
    pub(crate) fn market(closes: &[f64]) -> Arc<MarketData> {
        let bars: Vec<Bar> = closes
            .iter()
            .enumerate()
            .map(|(i, &close)| Bar {
                timestamp: i as i64 * HOUR_MS,
                open: close,
                high: close,
                low: close,
                close,
                volume: 1.0,
            })
            .collect();
        Arc::new(MarketData::new(BarSeries::new(&bars).unwrap()).unwrap())
    }

    /// A deterministic wavy price path of `n` bars.
    pub(crate) fn wave(n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| 100.0 * (1.0 + 0.05 * (i as f64 * 0.3).sin() + 0.001 * i as f64))
            .collect()
    }

    fn config(max_steps: usize) -> TradingConfig {
        TradingConfig {
            max_steps,
            ..TradingConfig::default()
        }
    }

    #[test]
    fn one_step_books_cost_then_return() {
        let mut closes = vec![100.0; 40];
        closes[WARMUP + 1] = 110.0;
        let mut env = TradingEnv::new(market(&closes), config(5)).unwrap();
        env.reset_at(WARMUP).unwrap();
        let step = env.step(TargetAction::Buy.index()).unwrap();
        let net = 1.0 * (110.0 / 100.0 - 1.0) - 0.001;
        assert!((step.reward - net).abs() < 1e-12);
        assert_eq!(step.obs[TradingObs::POSITION], 1.0);
        assert!((step.obs[TradingObs::PNL] - net as f32).abs() < 1e-7);
        assert_eq!(step.obs[TradingObs::ELAPSED], 0.2);
        assert!(!step.done());
        assert_eq!(env.bar(), WARMUP + 1);
        assert!((env.equity() - (1.0 + net)).abs() < 1e-12);
    }

    #[test]
    fn episode_truncates_after_max_steps_and_then_refuses_steps() {
        let mut env = TradingEnv::new(market(&wave(60)), config(4)).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        env.reset(&mut rng).unwrap();
        for k in 1..=4 {
            let step = env.step(TargetAction::Hold.index()).unwrap();
            assert_eq!(step.truncated, k == 4);
            assert!(!step.terminated);
        }
        assert!(matches!(env.step(0), Err(Error::EpisodeNotRunning)));
    }

    #[test]
    fn explicit_start_near_the_end_truncates_at_the_data_end() {
        let closes = wave(40);
        let mut env = TradingEnv::new(market(&closes), config(10)).unwrap();
        env.reset_at(37).unwrap();
        assert_eq!(env.state().episode_len, 2);
        assert!(!env.step(0).unwrap().done());
        let last = env.step(0).unwrap();
        assert!(last.truncated);
        assert_eq!(env.bar(), 39);
        assert!(matches!(
            env.reset_at(39),
            Err(Error::InvalidStart {
                start: 39,
                min: WARMUP,
                max: 38
            })
        ));
        assert!(matches!(
            env.reset_at(3),
            Err(Error::InvalidStart { start: 3, .. })
        ));
    }

    #[test]
    fn schedule_is_used_in_order_then_exhausted() {
        let mut env = TradingEnv::new(market(&wave(80)), config(5)).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        env.schedule_starts(&[30, 40]).unwrap();
        env.reset(&mut rng).unwrap();
        assert_eq!(env.state().start, 30);
        env.reset(&mut rng).unwrap();
        assert_eq!(env.state().start, 40);
        assert!(matches!(
            env.reset(&mut rng),
            Err(Error::StartsExhausted { scheduled: 2 })
        ));
        env.schedule_starts(&[]).unwrap();
        env.reset(&mut rng).unwrap();
        assert!(env.random_starts().contains(&env.state().start));
    }

    #[test]
    fn random_starts_stay_in_the_restricted_range() {
        let env = TradingEnv::new(market(&wave(100)), config(10)).unwrap();
        assert_eq!(env.valid_starts(), WARMUP..=89);
        assert!(matches!(
            env.clone().with_random_starts(20..=50),
            Err(Error::InvalidStart { start: 20, .. })
        ));
        let mut env = env.with_random_starts(30..=35).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for _ in 0..50 {
            env.reset(&mut rng).unwrap();
            assert!((30..=35).contains(&env.state().start));
        }
    }

    #[test]
    fn consecutive_episodes_follow_each_other_within_the_random_starts() {
        let starts_of = |episode_starts: EpisodeStarts| {
            let cfg = TradingConfig {
                episode_starts,
                ..config(10)
            };
            let env = TradingEnv::new(market(&wave(100)), cfg).unwrap();
            let mut env = env.with_random_starts(30..=60).unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(5);
            let mut starts = vec![];
            for episode in 0..12 {
                if episode == 0 {
                    env.reset(&mut rng).unwrap();
                } else {
                    env.reset_next_episode(&mut rng).unwrap();
                }
                starts.push(env.state().start);
                while !env.step(2).unwrap().done() {}
            }
            starts
        };
        let chained = starts_of(EpisodeStarts::Consecutive);
        for pair in chained.windows(2) {
            assert!((30..=60).contains(&pair[1]), "{chained:?}");
            // Each episode starts where the last ended, unless a whole one no longer fits
            // before the end of the random starts (60): then it starts anew at random.
            if pair[0] + 10 <= 60 {
                assert_eq!(pair[1], pair[0] + 10, "{chained:?}");
            }
        }
        assert!(chained.windows(2).any(|p| p[1] == p[0] + 10));
        let random = starts_of(EpisodeStarts::Random);
        assert_eq!(random[0], chained[0], "the first start is drawn alike");
        assert!(random.windows(2).any(|p| p[1] != p[0] + 10), "{random:?}");
        // A schedule wins over chaining, and the default is left out of a serialised config.
        let cfg = TradingConfig {
            episode_starts: EpisodeStarts::Consecutive,
            ..config(10)
        };
        let mut env = TradingEnv::new(market(&wave(100)), cfg).unwrap();
        env.schedule_starts(&[40, 30]).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        env.reset(&mut rng).unwrap();
        while !env.step(2).unwrap().done() {}
        env.reset_next_episode(&mut rng).unwrap();
        assert_eq!(env.state().start, 30);
        let text = serde_json::to_string(&config(10)).unwrap();
        assert!(!text.contains("episode_starts"), "{text}");
    }

    #[test]
    fn rejects_invalid_configs() {
        let m = market(&wave(300));
        let bad = [
            TradingConfig {
                max_steps: 0,
                ..config(5)
            },
            TradingConfig {
                cost_rate: -0.1,
                ..config(5)
            },
            TradingConfig {
                cost_rate: f64::NAN,
                ..config(5)
            },
            TradingConfig {
                initial_position: 1.5,
                ..config(5)
            },
            TradingConfig {
                reward_scale: 0.0,
                ..config(5)
            },
            TradingConfig {
                stop_equity: 1.0,
                ..config(5)
            },
            TradingConfig {
                actions: ActionSpace::Sizing { position_step: 2.0 },
                ..config(5)
            },
        ];
        for cfg in bad {
            let err = TradingEnv::new(m.clone(), cfg.clone()).unwrap_err();
            assert!(matches!(err, Error::InvalidConfig { .. }), "{cfg:?}: {err}");
        }
    }

    #[test]
    fn config_serde_fills_defaults() {
        let cfg: TradingConfig = serde_json::from_str(r#"{"max_steps": 50}"#).unwrap();
        assert_eq!(cfg, config(50));
        assert!(serde_json::from_str::<TradingConfig>(r#"{"max_stepz": 50}"#).is_err());
    }

    use crate::TargetAction;
}
