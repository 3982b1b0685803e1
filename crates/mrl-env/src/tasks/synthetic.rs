//! [`SyntheticTasks`]: a fresh generated market per task, from domain-randomised processes or
//! the hidden-coefficient AR(1) family.
//!
//! # Seeds and splits
//!
//! A task is a `u64` seed: its process parameters and its bars are all drawn from
//! `ChaCha8Rng::seed_from_u64(seed)`, so a seed reproduces its task exactly. `sample` draws the
//! seed from the caller's RNG and sets its top bit by split (0 for train, 1 for test): the two
//! seed spaces are disjoint, so no test market is ever a train market.
//!
//! # Cost
//!
//! Every `sample` generates `n_bars` bars and computes their features: O(n) work (one or
//! two normal draws and a few rolling-sum updates per bar) and a handful of `n_bars`-long
//! vectors, paid once per trial. With 2000 bars (room for random starts of 200-step
//! episodes) it is small beside a trial of 3 × 200 GRU steps; keep `n_bars` near
//! [`TradingConfig::min_bars`] plus the room random starts need.

use std::sync::Arc;

use mrl_data::{Ar1Params, BarStyle, DomainRandomization, MarketProcess, SyntheticConfig};
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{TaskEnv, TaskInfo, TaskKind};
use crate::{
    Error, MarketData, Result, Split, TaskDistribution, TradingConfig, TradingEnv, TradingObs,
};

/// The hidden-coefficient AR(1) family: log returns `r_t = μ + φ (r_{t−1} − μ) + σ ε_t` with
/// `φ` drawn from `[−hi, −lo] ∪ [lo, hi]` (sign uniform, `|φ| ~ U(lo, hi)`): momentum
/// (`φ > 0`) or mean reversion (`φ < 0`), which the agent must find out within a trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ar1Family {
    /// `(lo, hi)` of `|φ|`, `0 ≤ lo ≤ hi < 1`. Default `(0.1, 0.5)`.
    pub phi_abs: (f64, f64),
    /// Range of `μ`, the mean log return per bar. Default `(0, 0)`: no drift, so buy-and-hold
    /// earns nothing in expectation and only the autocorrelation pays.
    pub drift: (f64, f64),
    /// Range of `σ`, the innovation standard deviation per bar. Default `(0.005, 0.015)`
    /// (hourly crypto scale).
    pub volatility: (f64, f64),
}

impl Default for Ar1Family {
    fn default() -> Self {
        Self {
            phi_abs: (0.1, 0.5),
            drift: (0.0, 0.0),
            volatility: (0.005, 0.015),
        }
    }
}

impl Ar1Family {
    /// Checks the ranges: finite, `lo ≤ hi`, `0 ≤ |φ| < 1`, `σ ≥ 0`.
    pub fn validate(&self) -> Result<()> {
        for (field, (lo, hi)) in [
            ("phi_abs", self.phi_abs),
            ("drift", self.drift),
            ("volatility", self.volatility),
        ] {
            if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
                return Err(invalid(
                    field,
                    format!("({lo}, {hi})"),
                    "expected finite lo <= hi",
                ));
            }
        }
        if self.phi_abs.0 < 0.0 || self.phi_abs.1 >= 1.0 {
            return Err(invalid(
                "phi_abs",
                format!("{:?}", self.phi_abs),
                "expected 0 <= lo <= hi < 1",
            ));
        }
        if self.volatility.0 < 0.0 {
            return Err(invalid(
                "volatility",
                format!("{:?}", self.volatility),
                "expected sigma >= 0",
            ));
        }
        Ok(())
    }

    /// Draws one parameter set.
    pub fn sample(&self, rng: &mut ChaCha8Rng) -> Ar1Params {
        let mut draw = |(lo, hi): (f64, f64)| lo + (hi - lo) * rng.random::<f64>();
        let magnitude = draw(self.phi_abs);
        let drift = draw(self.drift);
        let volatility = draw(self.volatility);
        let phi = if rng.random::<bool>() {
            magnitude
        } else {
            -magnitude
        };
        Ar1Params {
            drift,
            phi,
            volatility,
        }
    }
}

/// Where a synthetic task's process comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum ProcessSource {
    /// Domain randomisation over GBM, AR(1), regime switching and jumps.
    Randomized(DomainRandomization),
    /// The hidden-coefficient AR(1) family.
    Ar1(Ar1Family),
}

/// A task distribution that generates a new market for every task (see the module docs for
/// seeds, splits and cost). Its envs expose the true process in [`TaskInfo::kind`].
#[derive(Debug, Clone)]
pub struct SyntheticTasks {
    name: String,
    source: ProcessSource,
    n_bars: usize,
    config: TradingConfig,
}

impl SyntheticTasks {
    /// Tasks of `n_bars` bars from `source`; an error for invalid ranges or settings, or
    /// `n_bars` below [`TradingConfig::min_bars`].
    pub fn new(source: ProcessSource, n_bars: usize, config: TradingConfig) -> Result<Self> {
        config.validate()?;
        let name = match &source {
            ProcessSource::Randomized(randomization) => {
                randomization.validate()?;
                "synthetic"
            }
            ProcessSource::Ar1(family) => {
                family.validate()?;
                "ar1-family"
            }
        };
        if n_bars < config.min_bars() {
            return Err(Error::SeriesTooShort {
                len: n_bars,
                needed: config.min_bars(),
                warmup: mrl_features::WARMUP,
                max_steps: config.max_steps,
            });
        }
        Ok(Self {
            name: name.to_owned(),
            source,
            n_bars,
            config,
        })
    }

    /// The seed of the next task of `split`: a `u64` of `rng` with its top bit set to the
    /// split (0 train, 1 test).
    pub fn split_seed(split: Split, rng: &mut ChaCha8Rng) -> u64 {
        let bit = match split {
            Split::Train => 0,
            Split::Test => 1 << 63,
        };
        (rng.next_u64() >> 1) | bit
    }

    /// The split whose seed space holds `seed`.
    pub fn split_of_seed(seed: u64) -> Split {
        if seed >> 63 == 0 {
            Split::Train
        } else {
            Split::Test
        }
    }

    /// The task of `seed`: process, bars and env, all determined by the seed.
    pub fn task(&self, seed: u64) -> Result<TaskEnv> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (process, bars) = match &self.source {
            ProcessSource::Randomized(randomization) => (
                randomization.sample_process(&mut rng)?,
                randomization.bars.clone(),
            ),
            ProcessSource::Ar1(family) => (
                MarketProcess::Ar1(family.sample(&mut rng)),
                BarStyle::default(),
            ),
        };
        let generated =
            SyntheticConfig { process, bars }.generate_with_rng(self.n_bars, &mut rng)?;
        let timestamps = generated.series.timestamps();
        let (first_timestamp, last_timestamp) = (timestamps[0], timestamps[timestamps.len() - 1]);
        let info = TaskInfo {
            name: format!("{}#{seed}", generated.params.kind()),
            symbol: generated.series.symbol().map(str::to_owned),
            split: Self::split_of_seed(seed),
            first_timestamp,
            last_timestamp,
            kind: TaskKind::Synthetic {
                seed,
                process: generated.params,
                regimes: generated.regimes,
            },
        };
        let market = Arc::new(MarketData::new(generated.series)?);
        let env = TradingEnv::new(market, self.config.clone())?;
        Ok(TaskEnv::new(env, Arc::new(info)))
    }

    /// Bars per generated market.
    pub fn n_bars(&self) -> usize {
        self.n_bars
    }

    /// The trading settings of every env.
    pub fn config(&self) -> &TradingConfig {
        &self.config
    }
}

impl TaskDistribution for SyntheticTasks {
    type Env = TaskEnv;

    fn name(&self) -> &str {
        &self.name
    }

    fn obs_dim(&self) -> usize {
        TradingObs::DIM
    }

    fn n_actions(&self) -> usize {
        self.config.actions.n_actions()
    }

    fn max_episode_steps(&self) -> usize {
        self.config.max_steps
    }

    fn sample(&self, split: Split, rng: &mut ChaCha8Rng) -> Result<TaskEnv> {
        self.task(Self::split_seed(split, rng))
    }
}

fn invalid(field: &'static str, value: String, reason: &'static str) -> Error {
    Error::InvalidConfig {
        field,
        value,
        reason,
    }
}
