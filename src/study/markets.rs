//! The held-out markets a study backtests on: generated from the test seed space for
//! synthetic task kinds, read (and resampled) from the data directory for real-data ones.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use mrl_agent::PolicyKind;
use mrl_backtest::{TestStart, WalkForwardConfig};
use mrl_env::{MarketData, MarketOracle, ProcessSource, Split, SyntheticTasks};
use mrl_ppo::TaskKind;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{Error, Result, StudyConfig};

/// [`Error::UnsupportedTask`] for a kind without held-out markets.
pub(super) fn unsupported(kind: &TaskKind) -> Error {
    let reason = match kind {
        TaskKind::Bandits { .. } => "bandits have no markets (use `mrl eval bandits`)",
        _ => {
            "a mixture's components may trade with different settings; study each \
             component's config on its own"
        }
    };
    Error::UnsupportedTask {
        kind: kind.name(),
        reason,
    }
}

/// First test bar of a generated held-out market: a market is new as a whole, so every bar
/// after the feature warm-up and the first adaptation episodes is tested.
pub(super) fn synthetic_test_start(wf: &WalkForwardConfig) -> usize {
    mrl_features::WARMUP + wf.adaptation_episodes * wf.adaptation_len
}

/// One held-out market.
#[derive(Debug, Clone)]
pub struct HeldOutMarket {
    /// Its name in the report (`regime-0`, `LINKUSDT`, …).
    pub name: String,
    /// Bars and raw features.
    pub market: Arc<MarketData>,
    /// The AR(1) oracle of a hidden-coefficient AR(1) market.
    pub oracle: Option<MarketOracle>,
}

/// The held-out markets of a study and where their test period starts.
#[derive(Debug, Clone)]
pub struct HeldOutSet {
    /// The markets, in a fixed order.
    pub markets: Vec<HeldOutMarket>,
    /// Where the walk-forward test starts in each.
    pub test_start: TestStart,
    /// One line saying what they are, for the report.
    pub description: String,
}

/// The held-out markets of `config`.
///
/// - Synthetic kinds: [`HeldOutConfig::markets`] markets of [`HeldOutConfig::bars`] bars
///   from the same process family as training, with seeds of the test split drawn by a
///   `ChaCha8Rng` seeded with [`HeldOutConfig::market_seed`]; tested from the first bar
///   after the warm-up and the adaptation episodes (as `mrl run` does).
/// - Multi-asset: the held-out assets of the split (every asset when only a later period
///   is held out), read from the data directory; tested from the split's `test_start`, or
///   (held-out assets alone) from the first bar after the warm-up and the adaptation
///   episodes.
/// - Regime windows: every asset from the config's `test_start` (all its later windows).
/// - Timeframes: the asset resampled to each of the config's intervals, from `test_start`.
///
/// # Errors
/// [`Error::UnsupportedTask`] for bandits and mixtures, [`Error::Market`] naming a market
/// that cannot be read or built.
///
/// [`HeldOutConfig::markets`]: super::HeldOutConfig::markets
/// [`HeldOutConfig::bars`]: super::HeldOutConfig::bars
/// [`HeldOutConfig::market_seed`]: super::HeldOutConfig::market_seed
pub fn held_out_markets(config: &StudyConfig) -> Result<HeldOutSet> {
    let train = config.train_config(config.seeds.first().copied().unwrap_or(0), PolicyKind::Rl2);
    let wf = config.walk_forward(TestStart::Index(0));
    let held = &config.held_out;
    let market_err = |name: String| {
        move |e: &dyn fmt::Display| Error::Market {
            name,
            reason: e.to_string(),
        }
    };
    let synthetic = |source: ProcessSource, family: &str| -> Result<HeldOutSet> {
        let tasks = SyntheticTasks::new(source, held.bars, train.task.trading.clone())
            .map_err(|e| market_err(family.to_string())(&e))?;
        let mut rng = ChaCha8Rng::seed_from_u64(held.market_seed);
        let markets = (0..held.markets)
            .map(|i| {
                let seed = SyntheticTasks::split_seed(Split::Test, &mut rng);
                let name = format!("{family}-{i}");
                let task = tasks.task(seed).map_err(|e| market_err(name.clone())(&e))?;
                Ok(HeldOutMarket {
                    oracle: MarketOracle::for_task(&task),
                    market: Arc::clone(task.trading().market()),
                    name,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(HeldOutSet {
            markets,
            test_start: TestStart::Index(synthetic_test_start(&wf)),
            description: format!(
                "{} generated {family} markets of {} bars from the test seed space (market seed \
                 {}), tested after the warm-up and the first adaptation episodes",
                held.markets, held.bars, held.market_seed
            ),
        })
    };
    match &train.task.kind {
        TaskKind::Bandits { .. } | TaskKind::Mixture { .. } => Err(unsupported(&train.task.kind)),
        TaskKind::SyntheticAr1 { family, .. } => {
            synthetic(ProcessSource::Ar1(family.clone()), "ar1")
        }
        TaskKind::Synthetic { randomization, .. } => {
            let family = randomization
                .kinds
                .iter()
                .map(|k| format!("{k:?}").to_lowercase())
                .collect::<Vec<_>>()
                .join("+");
            let family = if family.is_empty() {
                "synthetic".to_string()
            } else {
                family
            };
            synthetic(ProcessSource::Randomized(randomization.clone()), &family)
        }
        TaskKind::MultiAsset {
            data_dir,
            interval,
            assets,
            split,
        } => {
            let names = if split.held_out.is_empty() {
                assets
            } else {
                &split.held_out
            };
            let which = if split.held_out.is_empty() {
                "every asset's later period"
            } else {
                "held-out assets"
            };
            let period = split.test_start.map_or(
                Period::AfterAdaptation(synthetic_test_start(&wf)),
                Period::From,
            );
            real_markets(data_dir, interval, names, &[], period, which)
        }
        TaskKind::RegimeWindows {
            data_dir,
            interval,
            assets,
            test_start,
            ..
        } => real_markets(
            data_dir,
            interval,
            assets,
            &[],
            Period::From(*test_start),
            "every asset's later period (all its regime windows)",
        ),
        TaskKind::Timeframes {
            data_dir,
            interval,
            asset,
            intervals,
            test_start,
        } => real_markets(
            data_dir,
            interval,
            std::slice::from_ref(asset),
            intervals,
            Period::From(*test_start),
            "the asset's later period at each interval",
        ),
    }
}

/// Where the test period of a real series starts.
#[derive(Debug, Clone, Copy)]
enum Period {
    /// At this timestamp (ms UTC).
    From(i64),
    /// At this bar index: every bar after the warm-up and the first adaptation episodes.
    AfterAdaptation(usize),
}

/// Held-out markets read from `<data_dir>/<ASSET>_<interval>.csv` (`MRL_DATA_DIR`
/// overriding `data_dir`, as in training), each resampled to every one of `intervals`
/// (none: as read), named `ASSET` or `ASSET-<interval>`.
fn real_markets(
    data_dir: &Path,
    interval: &str,
    assets: &[String],
    intervals: &[String],
    period: Period,
    which: &str,
) -> Result<HeldOutSet> {
    let mut markets = Vec::new();
    for asset in assets {
        let path = mrl_ppo::asset_path(data_dir, interval, asset);
        let err = |e: &dyn fmt::Display| Error::Market {
            name: path.display().to_string(),
            reason: e.to_string(),
        };
        let series = mrl_data::read_bars(&path)
            .map_err(|e| err(&e))?
            .with_symbol(asset.clone());
        let mut versions = Vec::new();
        if intervals.is_empty() {
            versions.push((asset.clone(), series));
        } else {
            for text in intervals {
                let target = mrl_ppo::parse_interval(text).map_err(|e| err(&e))?;
                let resampled = if series.interval() == Some(target) {
                    series.clone()
                } else {
                    mrl_data::resample_complete(&series, target).map_err(|e| err(&e))?
                };
                versions.push((format!("{asset}-{text}"), resampled));
            }
        }
        for (name, series) in versions {
            let market = MarketData::new(series).map_err(|e| Error::Market {
                name: name.clone(),
                reason: e.to_string(),
            })?;
            markets.push(HeldOutMarket {
                name,
                market: market.shared(),
                oracle: None,
            });
        }
    }
    let (test_start, when) = match period {
        Period::From(ts) => (
            TestStart::Timestamp(ts),
            format!("from {}", mrl_data::format_timestamp(ts)),
        ),
        Period::AfterAdaptation(index) => (
            TestStart::Index(index),
            "after the warm-up and the first adaptation episodes".to_string(),
        ),
    };
    let names: Vec<&str> = markets.iter().map(|m| m.name.as_str()).collect();
    Ok(HeldOutSet {
        description: format!(
            "{which}: {} ({interval} files), tested {when}",
            names.join(", ")
        ),
        markets,
        test_start,
    })
}
