//! Task distributions: the distribution over MDPs that meta-training samples from.

use std::ops::RangeInclusive;
use std::sync::Arc;

use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{Env, Error, MarketData, Result, TradingConfig, TradingEnv, TradingObs};

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

/// The simplest real distribution: one market, split in time, random episode starts.
///
/// The first `1 − test_fraction` of the bars are the training part: [`Split::Train`] episodes
/// lie entirely inside it. [`Split::Test`] episodes start at or after the boundary (their
/// features may use earlier bars, which is the past, never the future). Every task is the
/// same market; what varies is the window. Useful as a smoke test of meta-training and as the
/// single-asset baseline of the real distributions in this crate.
#[derive(Debug, Clone)]
pub struct FixedMarket {
    name: String,
    market: Arc<MarketData>,
    config: TradingConfig,
    train_starts: RangeInclusive<usize>,
    test_starts: RangeInclusive<usize>,
}

impl FixedMarket {
    /// Splits `market` at bar `len − ⌊len·test_fraction⌋`; an error when either part holds
    /// no full episode or `test_fraction ∉ (0, 1)`.
    pub fn new(market: Arc<MarketData>, config: TradingConfig, test_fraction: f64) -> Result<Self> {
        let probe = TradingEnv::new(market.clone(), config.clone())?;
        let valid = probe.valid_starts();
        let len = market.len();
        let boundary = len - (len as f64 * test_fraction).floor() as usize;
        let bad_fraction = || Error::InvalidConfig {
            field: "test_fraction",
            value: test_fraction.to_string(),
            reason: "expected a value in (0, 1) leaving a full episode on each side of the split",
        };
        if !(test_fraction > 0.0 && test_fraction < 1.0) || boundary <= config.max_steps {
            return Err(bad_fraction());
        }
        let train_starts = *valid.start()..=boundary - 1 - config.max_steps;
        let test_starts = boundary.max(*valid.start())..=*valid.end();
        if train_starts.is_empty() || test_starts.is_empty() {
            return Err(bad_fraction());
        }
        let name = format!("fixed:{}", market.symbol().unwrap_or("market"));
        Ok(Self {
            name,
            market,
            config,
            train_starts,
            test_starts,
        })
    }

    /// Random starts of `split`'s episodes.
    pub fn starts(&self, split: Split) -> RangeInclusive<usize> {
        match split {
            Split::Train => self.train_starts.clone(),
            Split::Test => self.test_starts.clone(),
        }
    }

    /// The market.
    pub fn market(&self) -> &Arc<MarketData> {
        &self.market
    }
}

impl TaskDistribution for FixedMarket {
    type Env = TradingEnv;

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

    fn sample(&self, split: Split, _rng: &mut ChaCha8Rng) -> Result<TradingEnv> {
        TradingEnv::new(self.market.clone(), self.config.clone())?
            .with_random_starts(self.starts(split))
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::trading::tests::{market, wave};

    #[test]
    fn splits_do_not_overlap_in_time() {
        let cfg = TradingConfig {
            max_steps: 20,
            ..TradingConfig::default()
        };
        let dist = FixedMarket::new(market(&wave(200)), cfg.clone(), 0.25).unwrap();
        assert_eq!(dist.starts(Split::Train), 26..=129);
        assert_eq!(dist.starts(Split::Test), 150..=179);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut env = dist.sample(Split::Train, &mut rng).unwrap();
        for _ in 0..100 {
            env.reset(&mut rng).unwrap();
            assert!(env.state().start + cfg.max_steps < 150);
        }
        for fraction in [0.0, 1.0, 0.95, f64::NAN] {
            assert!(matches!(
                FixedMarket::new(market(&wave(200)), cfg.clone(), fraction),
                Err(Error::InvalidConfig {
                    field: "test_fraction",
                    ..
                })
            ));
        }
    }
}
