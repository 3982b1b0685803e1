//! [`FixedTask`]: one task as a task distribution, so that the trial machinery of mrl-env
//! and the rollouts of mrl-ppo run on it unchanged.

use std::ops::Range;
use std::sync::Arc;

use mrl_data::BarSeries;
use mrl_env::{Env, MarketData, Split, TaskDistribution, TradingConfig, TradingEnv};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::{Error, Result};

/// Two weeks of hourly bars: the default adaptation window of a new asset.
pub const DEFAULT_ADAPTATION_BARS: usize = 336;

/// A distribution that always returns the same task: a clone of one env (its random
/// episode starts, if any, still vary from trial to trial, drawn from the trial's seeded
/// stream). Both splits return it; adaptation has only the task's own data.
#[derive(Debug, Clone)]
pub struct FixedTask<E> {
    name: String,
    env: E,
}

impl<E: Env + Clone + Sync> FixedTask<E> {
    /// The task `env`, named `name` in logs.
    pub fn new(name: impl Into<String>, env: E) -> Self {
        Self {
            name: name.into(),
            env,
        }
    }

    /// One task drawn from `dist`'s `split` with `ChaCha8Rng::seed_from_u64(seed)`: a
    /// synthetic market, an asset window, … as the distribution defines its tasks.
    ///
    /// # Errors
    /// The distribution's errors.
    pub fn sample<D: TaskDistribution<Env = E> + ?Sized>(
        dist: &D,
        split: Split,
        seed: u64,
    ) -> Result<Self> {
        let env = dist.sample(split, &mut ChaCha8Rng::seed_from_u64(seed))?;
        Ok(Self::new(format!("{}#{seed}", dist.name()), env))
    }

    /// The env.
    pub fn env(&self) -> &E {
        &self.env
    }
}

impl FixedTask<TradingEnv> {
    /// The first `n_bars` bars of `series` as one task: episodes of `trading.max_steps`
    /// steps start at random inside that window (after the feature warm-up), so nothing
    /// after bar `n_bars − 1` is ever seen. Walk-forward evaluation belongs on the bars
    /// after the window.
    ///
    /// # Errors
    /// [`Error::WindowBeyondSeries`] when the series is shorter than `n_bars`,
    /// [`Error::TooFewBars`] when the window holds fewer than `WARMUP + max_steps + 1` bars,
    /// env and data errors.
    pub fn first_bars(series: &BarSeries, n_bars: usize, trading: TradingConfig) -> Result<Self> {
        Self::bars(series, 0..n_bars, trading)
    }

    /// The bars `range` of `series` as one task (features computed on the slice alone, so
    /// its first bars are warm-up): episodes of `trading.max_steps` steps start at random
    /// inside the slice, and nothing outside it is ever seen. Online adaptation trains on
    /// the most recent bars this way.
    ///
    /// # Errors
    /// [`Error::WindowBeyondSeries`] when `range` ends after the series,
    /// [`Error::TooFewBars`] when the slice holds fewer than `WARMUP + max_steps + 1` bars,
    /// env and data errors.
    pub fn bars(series: &BarSeries, range: Range<usize>, trading: TradingConfig) -> Result<Self> {
        let needed = trading.min_bars();
        let what = series.symbol().unwrap_or("series").to_owned();
        if series.len() < range.end {
            return Err(Error::WindowBeyondSeries {
                what,
                bars: range.end,
                available: series.len(),
            });
        }
        if range.len() < needed {
            return Err(Error::TooFewBars {
                what,
                available: range.len(),
                needed,
                warmup: feature_warmup(&trading),
                max_steps: trading.max_steps,
            });
        }
        let name = format!("{what}[{}..{}]", range.start, range.end);
        let window = series.slice(range)?;
        let market = Arc::new(MarketData::new(window)?);
        let env = TradingEnv::new(market, trading)?;
        Ok(Self::new(name, env))
    }
}

/// The feature warm-up, as `min_bars − max_steps − 1`.
fn feature_warmup(trading: &TradingConfig) -> usize {
    trading.min_bars() - trading.max_steps - 1
}

impl<E: Env + Clone + Sync> TaskDistribution for FixedTask<E> {
    type Env = E;

    fn name(&self) -> &str {
        &self.name
    }

    fn obs_dim(&self) -> usize {
        self.env.obs_dim()
    }

    fn n_actions(&self) -> usize {
        self.env.n_actions()
    }

    fn max_episode_steps(&self) -> usize {
        self.env.max_episode_steps()
    }

    fn sample(&self, _split: Split, _rng: &mut ChaCha8Rng) -> mrl_env::Result<E> {
        Ok(self.env.clone())
    }
}

#[cfg(test)]
mod tests {
    use mrl_data::{MarketProcess, SyntheticConfig};

    use super::*;

    fn series(n: usize) -> BarSeries {
        let config = SyntheticConfig {
            process: MarketProcess::Ar1(mrl_data::Ar1Params {
                drift: 0.0,
                phi: 0.3,
                volatility: 0.01,
            }),
            bars: Default::default(),
        };
        config
            .generate_with_rng(n, &mut ChaCha8Rng::seed_from_u64(1))
            .unwrap()
            .series
    }

    #[test]
    fn first_bars_never_reach_past_the_window() {
        let trading = TradingConfig {
            max_steps: 50,
            ..Default::default()
        };
        let task = FixedTask::first_bars(&series(500), 100, trading).unwrap();
        assert_eq!(task.env().market().len(), 100);
        // Starts 26..=49: every episode ends by bar 99.
        assert_eq!(task.env().valid_starts(), 26..=49);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut env = task.sample(Split::Train, &mut rng).unwrap();
        for _ in 0..50 {
            env.reset(&mut rng).unwrap();
            assert!(env.state().start + 50 <= 99);
        }
    }

    #[test]
    fn too_few_bars_names_the_numbers() {
        let trading = TradingConfig {
            max_steps: 200,
            ..Default::default()
        };
        match FixedTask::first_bars(&series(500), 200, trading.clone()) {
            Err(Error::TooFewBars {
                available: 200,
                needed: 227,
                warmup: 26,
                max_steps: 200,
                ..
            }) => {}
            other => panic!("expected TooFewBars, got {other:?}"),
        }
        let err = FixedTask::first_bars(&series(100), 336, trading).unwrap_err();
        assert!(matches!(
            err,
            Error::WindowBeyondSeries {
                bars: 336,
                available: 100,
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "adaptation window of 336 bars is longer than series (100 bars)"
        );
    }
}
