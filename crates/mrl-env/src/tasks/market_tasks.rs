//! [`MarketTasks`]: prebuilt tasks on real series (assets, timeframes, regime windows), split
//! into disjoint train and test sets.

use std::ops::Range;
use std::sync::Arc;

use mrl_data::{BarSeries, Interval, resample_complete};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{MarketTask, TaskEnv, TaskInfo, TaskKind};
use crate::{
    Error, MarketData, Result, Split, TaskDistribution, TradingConfig, TradingEnv, TradingObs,
};

/// How [`MarketTasks::multi_asset`] separates train from test: by asset, by time, or both.
///
/// - only `held_out`: train on the other assets, test on the held-out ones (all their bars);
/// - only `test_start`: every asset, train on bars before it, test on bars at or after it;
/// - both: train on the other assets before `test_start`, test on the held-out assets from
///   `test_start` on (neither the asset nor the period was seen in training).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AssetSplit {
    /// Symbols of the test assets. Default none.
    pub held_out: Vec<String>,
    /// First test timestamp (ms UTC): train bars are strictly before it. Default none.
    pub test_start: Option<i64>,
}

/// A task distribution over prebuilt market tasks, each a part of one series with its own
/// features (computed once here, shared by every sampled env).
///
/// `sample` draws a group uniformly (an asset, a timeframe or a regime label, depending on the
/// constructor), then a task of that group uniformly, then the env draws its episode starts
/// within the task at every reset. Train and test tasks come from disjoint bars (see the
/// constructors), and the features of a part never use bars of another part.
#[derive(Debug, Clone)]
pub struct MarketTasks {
    name: String,
    config: TradingConfig,
    train: TaskSet,
    test: TaskSet,
}

/// The tasks of one split, indexed by group for balanced sampling.
#[derive(Debug, Clone, Default)]
struct TaskSet {
    tasks: Vec<MarketTask>,
    /// Task indices of each non-empty group.
    groups: Vec<Vec<usize>>,
}

impl TaskSet {
    fn new(tasks: Vec<MarketTask>) -> Self {
        let mut keys: Vec<usize> = tasks.iter().map(|t| t.group).collect();
        keys.sort_unstable();
        keys.dedup();
        let groups = keys
            .iter()
            .map(|&g| (0..tasks.len()).filter(|&i| tasks[i].group == g).collect())
            .collect();
        Self { tasks, groups }
    }

    fn pick(&self, rng: &mut ChaCha8Rng) -> Option<&MarketTask> {
        if self.groups.is_empty() {
            return None;
        }
        let group = &self.groups[rng.random_range(0..self.groups.len())];
        self.tasks.get(group[rng.random_range(0..group.len())])
    }
}

impl MarketTasks {
    /// Builds the distribution from per-split tasks; an error when a split is empty.
    pub(super) fn from_tasks(
        name: String,
        config: TradingConfig,
        train: Vec<MarketTask>,
        test: Vec<MarketTask>,
    ) -> Result<Self> {
        for (split, tasks) in [(Split::Train, &train), (Split::Test, &test)] {
            if tasks.is_empty() {
                return Err(Error::EmptySplit {
                    distribution: name,
                    split,
                    needed: config.min_bars(),
                });
            }
        }
        tracing::debug!(%name, train = train.len(), test = test.len(), "built market tasks");
        Ok(Self {
            name,
            config,
            train: TaskSet::new(train),
            test: TaskSet::new(test),
        })
    }

    /// One task per asset and split (see [`AssetSplit`]). Assets are named by their symbol,
    /// or `asset{i}` without one. Parts too short for one episode
    /// ([`TradingConfig::min_bars`]) are skipped with a warning.
    ///
    /// Errors: no asset, a split with neither held-out assets nor a test start, a held-out
    /// symbol that is not among the assets, a split left without any task.
    pub fn multi_asset(
        assets: &[BarSeries],
        split: &AssetSplit,
        config: TradingConfig,
    ) -> Result<Self> {
        config.validate()?;
        require_series(assets, "assets")?;
        if split.held_out.is_empty() && split.test_start.is_none() {
            return Err(Error::InvalidConfig {
                field: "split",
                value: format!("{split:?}"),
                reason: "give held-out assets, a test start, or both",
            });
        }
        let names: Vec<String> = assets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.symbol()
                    .map_or_else(|| format!("asset{i}"), str::to_owned)
            })
            .collect();
        if let Some(unknown) = split.held_out.iter().find(|h| !names.contains(h)) {
            return Err(Error::UnknownAsset {
                symbol: unknown.clone(),
            });
        }
        let (mut train, mut test) = (Vec::new(), Vec::new());
        for (group, (series, name)) in assets.iter().zip(&names).enumerate() {
            let held = split.held_out.contains(name);
            let (train_bars, test_bars) = match split.test_start {
                None => (0..series.len(), 0..series.len()),
                Some(ts) => time_cut(series, ts),
            };
            let to_test = match split.test_start {
                None => held,
                Some(_) => held || split.held_out.is_empty(),
            };
            let part = |bars, split| {
                let info = PartInfo {
                    name: format!("{name}[{}]", split_name(split)),
                    split,
                    group,
                };
                part_task(series, bars, &config, info, TaskKind::Asset)
            };
            if !held {
                train.extend(part(train_bars, Split::Train)?);
            }
            if to_test {
                test.extend(part(test_bars, Split::Test)?);
            }
        }
        Self::from_tasks(format!("multi-asset({})", names.len()), config, train, test)
    }

    /// The same asset at several bar intervals (e.g. 1h, 4h and 1d), one group per interval.
    ///
    /// `series` is cut at `test_start` *before* resampling, so no resampled bar mixes train
    /// and test bars: each part is resampled on its own ([`resample_complete`], which drops a
    /// last bucket still forming), test bars whose bucket opens before `test_start` are
    /// dropped, and every (interval, part) gets its own features. An interval equal to the
    /// source's keeps the bars as they are. Parts too short for one episode are skipped with
    /// a warning.
    ///
    /// Errors: no interval, an interval that is not a multiple of the source's, a split left
    /// without any task.
    pub fn timeframes(
        series: &BarSeries,
        intervals: &[Interval],
        test_start: i64,
        config: TradingConfig,
    ) -> Result<Self> {
        config.validate()?;
        if intervals.is_empty() {
            return Err(Error::InvalidConfig {
                field: "intervals",
                value: "[]".to_owned(),
                reason: "at least one interval is needed",
            });
        }
        let (train_bars, test_bars) = time_cut(series, test_start);
        let (mut train, mut test) = (Vec::new(), Vec::new());
        for (group, &interval) in intervals.iter().enumerate() {
            let interval_ms = interval.millis();
            let label = format!("{}@{interval}", series.symbol().unwrap_or("asset"));
            for (bars, split, tasks) in [
                (train_bars.clone(), Split::Train, &mut train),
                (test_bars.clone(), Split::Test, &mut test),
            ] {
                let Some(part) = resampled_part(series, bars, interval, test_start)? else {
                    tracing::warn!(task = %label, ?split, "no complete bar in this part, skipped");
                    continue;
                };
                let info = PartInfo {
                    name: format!("{label}[{}]", split_name(split)),
                    split,
                    group,
                };
                let kind = TaskKind::Timeframe { interval_ms };
                tasks.extend(part_task(&part, 0..part.len(), &config, info, kind)?);
            }
        }
        Self::from_tasks(
            format!("timeframes({})", intervals.len()),
            config,
            train,
            test,
        )
    }

    /// The identity of every task of `split`.
    pub fn tasks(&self, split: Split) -> impl ExactSizeIterator<Item = &TaskInfo> {
        self.set(split).tasks.iter().map(|t| t.info.as_ref())
    }

    /// Number of tasks of `split`.
    pub fn n_tasks(&self, split: Split) -> usize {
        self.set(split).tasks.len()
    }

    /// The trading settings of every env.
    pub fn config(&self) -> &TradingConfig {
        &self.config
    }

    fn set(&self, split: Split) -> &TaskSet {
        match split {
            Split::Train => &self.train,
            Split::Test => &self.test,
        }
    }
}

impl TaskDistribution for MarketTasks {
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
        let task = self.set(split).pick(rng).ok_or_else(|| Error::EmptySplit {
            distribution: self.name.clone(),
            split,
            needed: self.config.min_bars(),
        })?;
        let env = TradingEnv::new(task.market.clone(), self.config.clone())?
            .with_random_starts(task.starts.clone())?;
        Ok(TaskEnv::new(env, task.info.clone()))
    }
}

/// An error naming `field` when `series` is empty.
pub(super) fn require_series(series: &[BarSeries], field: &'static str) -> Result<()> {
    if series.is_empty() {
        return Err(Error::InvalidConfig {
            field,
            value: "[]".to_owned(),
            reason: "at least one series is needed",
        });
    }
    Ok(())
}

/// The bars `bars` of `series` resampled to `interval`, without bars opening before
/// `test_start` when the part is the test part; `None` when nothing complete is left.
fn resampled_part(
    series: &BarSeries,
    bars: Range<usize>,
    interval: Interval,
    test_start: i64,
) -> Result<Option<BarSeries>> {
    if bars.len() < 2 {
        return Ok(None);
    }
    let part = series.slice(bars)?;
    let resampled = match resample_complete(&part, interval) {
        Ok(resampled) => resampled,
        Err(mrl_data::Error::TooShort { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let first = resampled.timestamps().partition_point(|&t| t < test_start);
    let keep = if part.start() >= test_start { first } else { 0 };
    if keep >= resampled.len() {
        return Ok(None);
    }
    Ok(Some(resampled.slice(keep..resampled.len())?))
}

/// `(bars before ts, bars at or after ts)` as index ranges.
pub(super) fn time_cut(series: &BarSeries, ts: i64) -> (Range<usize>, Range<usize>) {
    let cut = series.timestamps().partition_point(|&t| t < ts);
    (0..cut, cut..series.len())
}

pub(super) fn split_name(split: Split) -> &'static str {
    match split {
        Split::Train => "train",
        Split::Test => "test",
    }
}

/// Name, split and sampling group of a task being built.
pub(super) struct PartInfo {
    pub(super) name: String,
    pub(super) split: Split,
    pub(super) group: usize,
}

/// A task on `bars` of `series` with its own features; `None` (and a warning) when the part
/// is too short for one episode.
pub(super) fn part_task(
    series: &BarSeries,
    bars: Range<usize>,
    config: &TradingConfig,
    part: PartInfo,
    kind: TaskKind,
) -> Result<Option<MarketTask>> {
    let needed = config.min_bars();
    if bars.len() < needed {
        tracing::warn!(task = %part.name, bars = bars.len(), needed, "part too short for one episode, skipped");
        return Ok(None);
    }
    let timestamps = series.timestamps();
    let (first_timestamp, last_timestamp) = (timestamps[bars.start], timestamps[bars.end - 1]);
    let market = Arc::new(MarketData::new(series.slice(bars)?)?);
    let starts = TradingEnv::new(market.clone(), config.clone())?.valid_starts();
    let info = TaskInfo {
        name: part.name,
        symbol: series.symbol().map(str::to_owned),
        split: part.split,
        first_timestamp,
        last_timestamp,
        kind,
    };
    Ok(Some(MarketTask {
        market,
        starts,
        group: part.group,
        info: Arc::new(info),
    }))
}
