//! The comparison study behind `mrl study`: the RL² agent and the MLP baseline trained the
//! same way over several seeds, both backtested walk-forward on the same held-out markets
//! with greedy and sampled actions beside every baseline, pooled across seeds with
//! two-way bootstrap intervals of the Sharpe differences, and written as JSON, CSV,
//! Markdown and charts.
//!
//! ```text
//! for each seed s:   train rl2 (seed s) ─┐  same config but agent.kind
//!                    train mlp (seed s) ─┤
//!                                        ▼
//!   held-out markets (the same for every seed) × {greedy, sampled}: walk-forward backtest
//!   with buy-and-hold, flat, random, the trader rules (and the AR(1) oracle)
//! pool: per policy, mean ± std across seeds of each seed's mean over the markets;
//!       paired Sharpe differences over (seed, market) pairs with a two-way bootstrap CI;
//!       adaptation curve and training diagnostics with a min–max band across seeds
//! ```
//!
//! [`run_study`] does it all; the pieces ([`held_out_markets`], [`crossed_bootstrap_ci`],
//! [`StudyReport::to_markdown`], …) are public for examples and tests.

use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mrl_agent::{Policy, PolicyKind};
use mrl_backtest::mean_defined;
use mrl_backtest::{ActionMode, Policies, Spread, TestStart, WalkForwardConfig};
pub use mrl_backtest::{DiffInterval, crossed_bootstrap_ci};
use mrl_env::{MarketData, MarketOracle, ProcessSource, Split, SyntheticTasks};
use mrl_ppo::{AdamConfig, AgentSection, IterationStats, PpoConfig, TaskKind, TrainConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Report key suffix of the sampled-action runs of the two agents (`rl2_sampled`,
/// `mlp_sampled`); the greedy runs keep the plain names.
pub const SAMPLED_SUFFIX: &str = "_sampled";

/// The trader-rule baselines of every backtest ([`mrl_backtest::TraderRule`]); the best of
/// them on the pooled Sharpe is compared with RL².
pub const RULES: [&str; 4] = ["ts_momentum", "ma_crossover", "macd", "rsi_reversion"];

/// Errors of a study.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// No seed was given.
    NoSeeds,
    /// A seed was given twice (its runs would be the same).
    DuplicateSeed {
        /// The repeated seed.
        seed: u64,
    },
    /// A study setting is out of its domain.
    InvalidSetting {
        /// The setting.
        field: &'static str,
        /// Its value.
        value: String,
        /// What is expected.
        reason: &'static str,
    },
    /// The config's task kind has no held-out markets a study can backtest on.
    UnsupportedTask {
        /// The task kind.
        kind: &'static str,
        /// Why, and what to use instead.
        reason: &'static str,
    },
    /// An explicit data directory contradicts `MRL_DATA_DIR`, which training would read.
    DataDirConflict {
        /// The directory given to the study.
        given: PathBuf,
        /// The environment's directory.
        env: PathBuf,
    },
    /// The training config is invalid, or training failed.
    Train {
        /// Training seed.
        seed: u64,
        /// `rl2` or `mlp`.
        agent: &'static str,
        /// The trainer's error.
        source: Box<mrl_ppo::Error>,
    },
    /// An agent's own settings ([`AgentSettings`]) do not fit the study.
    AgentSettings {
        /// The agent (`transformer`, `task_inference`).
        agent: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A line of a run's `train_log.jsonl` could not be read.
    TrainLog {
        /// The log file.
        path: PathBuf,
        /// 1-based line number (0: the file itself).
        line: usize,
        /// What went wrong.
        reason: String,
    },
    /// A held-out market could not be read or built.
    Market {
        /// The market (file or generated name).
        name: String,
        /// The cause, as text (data or env error).
        reason: String,
    },
    /// A walk-forward backtest failed.
    Backtest {
        /// Training seed.
        seed: u64,
        /// The held-out market.
        market: String,
        /// The backtester's error.
        source: Box<mrl_backtest::Error>,
    },
    /// Writing an output file failed.
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The cause, as text.
        reason: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSeeds => f.write_str("no seeds: give at least one training seed"),
            Self::DuplicateSeed { seed } => {
                write!(f, "seed {seed} is given twice: every seed must be distinct")
            }
            Self::InvalidSetting {
                field,
                value,
                reason,
            } => write!(f, "invalid study setting {field} = {value}: {reason}"),
            Self::UnsupportedTask { kind, reason } => write!(
                f,
                "a study backtests trading agents on held-out markets; task kind `{kind}` is \
                 not supported: {reason}"
            ),
            Self::DataDirConflict { given, env } => write!(
                f,
                "data directory {} contradicts MRL_DATA_DIR={}, which training reads; unset \
                 one",
                given.display(),
                env.display()
            ),
            Self::Train {
                seed,
                agent,
                source,
            } => write!(f, "training {agent} with seed {seed}: {source}"),
            Self::AgentSettings { agent, reason } => {
                write!(f, "the own settings of {agent}: {reason}")
            }
            Self::TrainLog { path, line, reason } => {
                write!(f, "{} line {line}: {reason}", path.display())
            }
            Self::Market { name, reason } => write!(f, "held-out market {name}: {reason}"),
            Self::Backtest {
                seed,
                market,
                source,
            } => write!(f, "backtest of seed {seed} on {market}: {source}"),
            Self::Write { path, reason } => write!(f, "writing {}: {reason}", path.display()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Train { source, .. } => Some(source.as_ref()),
            Self::Backtest { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

/// Result with the study's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Which held-out markets the agents are tested on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldOutConfig {
    /// Synthetic task kinds: number of generated markets, drawn from the test seed space
    /// ([`SyntheticTasks::split_seed`]) that training never samples. Default 4.
    pub markets: usize,
    /// Synthetic task kinds: bars per generated market. Default 4000.
    pub bars: usize,
    /// Seed of the draw of the held-out synthetic markets: the same markets for every
    /// training seed, so that seeds differ by training alone. Default 2024.
    pub market_seed: u64,
    /// Multi-asset configs: the directory of the bar files, for training and evaluation
    /// (default the config's `data_dir`, or `MRL_DATA_DIR` when set).
    pub data_dir: Option<PathBuf>,
}

impl Default for HeldOutConfig {
    fn default() -> Self {
        Self {
            markets: 4,
            bars: 4000,
            market_seed: 2024,
            data_dir: None,
        }
    }
}

/// An agent's own network, PPO and optimiser settings in a study: the `[agent]`, `[ppo]`
/// and `[optim]` tables of its own training config, used in place of the study config's.
///
/// Agents differ in the step size they train at (the causal Transformer needs a smaller
/// one than the GRU: see `configs/synthetic-ar1-transformer.toml`), so a fair comparison
/// gives each its own tuned optimiser. Everything that defines the problem stays the
/// study's: the task and its trading settings, GAE, normalisation, iterations and trials
/// per rollout (equal env-steps), seeds and the held-out evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSettings {
    /// The network (`kind` is the agent's).
    pub agent: AgentSection,
    /// The PPO update.
    pub ppo: PpoConfig,
    /// Adam.
    pub optim: AdamConfig,
}

impl AgentSettings {
    /// Takes the `[agent]`, `[ppo]` and `[optim]` tables of `own`, the agent's own training
    /// config, for the study of `study`.
    ///
    /// # Errors
    /// [`Error::AgentSettings`] when `own` trains another kind of agent, or trains on
    /// another task, GAE or normalisation than `study` (the comparison would not be on the
    /// same problem).
    pub fn from_config(kind: PolicyKind, own: &TrainConfig, study: &TrainConfig) -> Result<Self> {
        let agent = kind.as_str();
        let fail = |reason: String| Err(Error::AgentSettings { agent, reason });
        if own.agent.kind != kind {
            return fail(format!(
                "its config trains `{}`, not `{agent}`",
                own.agent.kind.as_str()
            ));
        }
        // The data directory is where the files are, not what they are: the study's wins
        // (the runs take the study's task).
        let mut own_task = own.task.clone();
        let mut study_task = study.task.clone();
        if let (Some(own_dir), Some(study_dir)) = (
            real_data_dir(&mut own_task.kind),
            real_data_dir(&mut study_task.kind),
        ) {
            own_dir.clone_from(study_dir);
        }
        for (table, same) in [
            ("[task]", own_task == study_task),
            ("[gae]", own.gae == study.gae),
            ("[normalize]", own.normalize == study.normalize),
        ] {
            if !same {
                return fail(format!(
                    "its {table} differs from the study config's; every agent of a study \
                     trains on the same problem (only [agent], [ppo] and [optim] may differ)"
                ));
            }
        }
        Ok(Self {
            agent: own.agent.clone(),
            ppo: own.ppo.clone(),
            optim: own.optim.clone(),
        })
    }
}

/// Settings of a study: the training config shared by both agents, the seeds, overrides
/// and the evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyConfig {
    /// The training config; `agent.kind` is set to RL² and to the MLP in turn, `seed` to
    /// each of [`StudyConfig::seeds`].
    pub train: TrainConfig,
    /// Training seeds, distinct, at least one.
    pub seeds: Vec<u64>,
    /// Overrides the config's `iterations`.
    pub iterations: Option<u64>,
    /// Overrides the config's `n_envs`.
    pub n_envs: Option<usize>,
    /// The held-out markets.
    pub held_out: HeldOutConfig,
    /// Independent runs of the sampled-action evaluation (default 5).
    pub sampled_runs: usize,
    /// Resamples of the two-way bootstrap of Sharpe differences (default 2000).
    pub resamples: usize,
    /// Coverage of the bootstrap intervals (default 0.95).
    pub confidence: f64,
    /// Continue runs already in the output directory from their checkpoints (exact resume;
    /// finished runs are reused). Without it an existing checkpoint is an error.
    pub resume: bool,
    /// Further agents trained the same way beside RL² and the MLP (the Transformer, the
    /// task-inference agent), each compared with RL² and the MLP. Default none.
    pub others: Vec<PolicyKind>,
    /// Own settings of some of [`StudyConfig::others`] (at most one per agent); the others
    /// train with the study config's `[agent]`, `[ppo]` and `[optim]`. Default none.
    pub agent_settings: Vec<(PolicyKind, AgentSettings)>,
}

impl StudyConfig {
    /// A study of `train` over `seeds` with default evaluation settings.
    pub fn new(train: TrainConfig, seeds: Vec<u64>) -> Self {
        Self {
            train,
            seeds,
            iterations: None,
            n_envs: None,
            held_out: HeldOutConfig::default(),
            sampled_runs: 5,
            resamples: 2000,
            confidence: 0.95,
            resume: false,
            others: Vec::new(),
            agent_settings: Vec::new(),
        }
    }

    /// The own settings of `kind`, if it has any.
    pub fn own_settings(&self, kind: PolicyKind) -> Option<&AgentSettings> {
        self.agent_settings
            .iter()
            .find_map(|(k, s)| (*k == kind).then_some(s))
    }

    /// The training config of one agent and seed, overrides applied (`data_dir` too).
    pub fn train_config(&self, seed: u64, kind: PolicyKind) -> TrainConfig {
        let mut config = self.train.clone();
        config.seed = seed;
        if let Some(own) = self.own_settings(kind) {
            config.agent = own.agent.clone();
            config.ppo = own.ppo.clone();
            config.optim = own.optim.clone();
        }
        config.agent.kind = kind;
        // Each agent's run keeps only the tables it reads, so that adding another agent's
        // table to the config later (for `--others`) leaves the finished runs resumable.
        let defaults = TrainConfig::default();
        if kind != PolicyKind::Transformer {
            config.agent.transformer = defaults.agent.transformer;
        }
        if kind != PolicyKind::TaskInference {
            config.agent.task_inference = defaults.agent.task_inference;
            config.ppo.belief_coef = defaults.ppo.belief_coef;
        }
        if let Some(iterations) = self.iterations {
            config.iterations = iterations;
        }
        if let Some(n_envs) = self.n_envs {
            config.n_envs = n_envs;
        }
        if let (Some(data_dir), Some(dir)) = (
            real_data_dir(&mut config.task.kind),
            &self.held_out.data_dir,
        ) {
            data_dir.clone_from(dir);
        }
        config
    }

    /// The walk-forward settings of the study's trial (the training config's), with the
    /// held-out test start; greedy.
    pub fn walk_forward(&self, test_start: TestStart) -> WalkForwardConfig {
        WalkForwardConfig {
            test_start,
            ..crate::walk_forward_config(&self.train)
        }
    }

    /// Checks the seeds, the settings, the task kind and the effective training config.
    ///
    /// # Errors
    /// [`Error::NoSeeds`], [`Error::DuplicateSeed`], [`Error::InvalidSetting`],
    /// [`Error::UnsupportedTask`], [`Error::DataDirConflict`], [`Error::Train`] for an
    /// invalid training config.
    pub fn validate(&self) -> Result<()> {
        let first = *self.seeds.first().ok_or(Error::NoSeeds)?;
        for (i, seed) in self.seeds.iter().enumerate() {
            if self.seeds[..i].contains(seed) {
                return Err(Error::DuplicateSeed { seed: *seed });
            }
        }
        let bad = |field, value: String, reason| {
            Err(Error::InvalidSetting {
                field,
                value,
                reason,
            })
        };
        if self.sampled_runs == 0 {
            return bad("sampled_runs", "0".into(), "expected at least 1");
        }
        if self.resamples == 0 {
            return bad("resamples", "0".into(), "expected at least 1");
        }
        if !(self.confidence > 0.0 && self.confidence < 1.0) {
            return bad(
                "confidence",
                self.confidence.to_string(),
                "expected a value in (0, 1)",
            );
        }
        for (i, kind) in self.others.iter().enumerate() {
            if matches!(kind, PolicyKind::Rl2 | PolicyKind::Mlp) || self.others[..i].contains(kind)
            {
                return bad(
                    "others",
                    kind.as_str().into(),
                    "RL² and the MLP are always trained; each other agent may appear once",
                );
            }
        }
        for (i, (kind, _)) in self.agent_settings.iter().enumerate() {
            if !self.others.contains(kind)
                || self.agent_settings[..i].iter().any(|(k, _)| k == kind)
            {
                return bad(
                    "others",
                    kind.as_str().into(),
                    "own settings are for the further agents of the study, at most once each",
                );
            }
        }
        for &kind in [PolicyKind::Rl2, PolicyKind::Mlp]
            .iter()
            .chain(&self.others)
        {
            self.train_config(first, kind)
                .validate()
                .map_err(|source| Error::Train {
                    seed: first,
                    agent: kind.as_str(),
                    source: Box::new(source),
                })?;
        }
        match &self.train.task.kind {
            TaskKind::Bandits { .. } | TaskKind::Mixture { .. } => {
                Err(unsupported(&self.train.task.kind))
            }
            TaskKind::Synthetic { .. } | TaskKind::SyntheticAr1 { .. } => {
                if self.held_out.markets == 0 {
                    return bad("test_markets", "0".into(), "expected at least 1");
                }
                let wf = self.walk_forward(TestStart::Index(0));
                let needed = synthetic_test_start(&wf) + wf.window_len + 1;
                if self.held_out.bars < needed {
                    return bad(
                        "test_bars",
                        self.held_out.bars.to_string(),
                        "too few for the feature warm-up, the adaptation episodes and one \
                         evaluation window",
                    );
                }
                Ok(())
            }
            TaskKind::MultiAsset { .. }
            | TaskKind::RegimeWindows { .. }
            | TaskKind::Timeframes { .. } => {
                let env = std::env::var_os(mrl_ppo::DATA_DIR_ENV).map(PathBuf::from);
                match (&self.held_out.data_dir, env) {
                    (Some(given), Some(env)) if *given != env => Err(Error::DataDirConflict {
                        given: given.clone(),
                        env,
                    }),
                    _ => Ok(()),
                }
            }
        }
    }
}

/// The data directory of a real-data task kind; `None` for generated ones.
fn real_data_dir(kind: &mut TaskKind) -> Option<&mut PathBuf> {
    match kind {
        TaskKind::MultiAsset { data_dir, .. }
        | TaskKind::RegimeWindows { data_dir, .. }
        | TaskKind::Timeframes { data_dir, .. } => Some(data_dir),
        TaskKind::Bandits { .. }
        | TaskKind::SyntheticAr1 { .. }
        | TaskKind::Synthetic { .. }
        | TaskKind::Mixture { .. } => None,
    }
}

/// [`Error::UnsupportedTask`] for a kind without held-out markets.
fn unsupported(kind: &TaskKind) -> Error {
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
fn synthetic_test_start(wf: &WalkForwardConfig) -> usize {
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

/// Progress of [`run_study`], for progress bars.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Progress<'a> {
    /// The held-out markets are ready.
    Markets {
        /// How many.
        count: usize,
    },
    /// Training of one agent starts (or resumes).
    TrainStart {
        /// Training seed.
        seed: u64,
        /// The agent.
        agent: PolicyKind,
        /// Iterations in total.
        iterations: u64,
    },
    /// One training iteration finished.
    Iteration {
        /// Training seed.
        seed: u64,
        /// The agent.
        agent: PolicyKind,
        /// Its statistics.
        stats: &'a IterationStats,
    },
    /// Training of one agent finished (or was already finished).
    TrainDone {
        /// Training seed.
        seed: u64,
        /// The agent.
        agent: PolicyKind,
    },
    /// One backtest (a market in one action mode) finished.
    Backtest {
        /// Training seed.
        seed: u64,
        /// The market.
        market: &'a str,
        /// Backtests of this seed done.
        done: usize,
        /// Backtests of this seed in total (markets × 2 modes).
        total: usize,
    },
    /// Every run of one seed is done.
    SeedDone {
        /// Training seed.
        seed: u64,
    },
}

/// Headline figures of one policy on one market.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyFigures {
    /// Annualised Sharpe ratio; `None` when undefined (returns that do not vary).
    pub sharpe: Option<f64>,
    /// Annualised Sortino ratio; `None` when undefined.
    pub sortino: Option<f64>,
    /// Compounded return of the test period.
    pub total_return: f64,
    /// Max drawdown, in [−1, 0].
    pub max_drawdown: f64,
    /// Mean return by episode index of the trial (the last one is the evaluation window).
    pub adaptation_curve: Vec<f64>,
}

/// One held-out market of one seed: every policy's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarketResult {
    /// The market.
    pub name: String,
    /// Bars of the test period.
    pub test_bars: usize,
    /// Figures by policy key (`rl2`, `rl2_sampled`, `mlp`, `mlp_sampled`, baselines).
    pub policies: BTreeMap<String, PolicyFigures>,
}

/// One seed's mean figures of a policy over the held-out markets.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SeedFigures {
    /// Markets evaluated.
    pub markets: usize,
    /// Markets where the Sharpe ratio is defined (the mean covers these).
    pub sharpe_markets: usize,
    /// Mean Sharpe ratio over the markets where it is defined; `None` when none.
    pub sharpe: Option<f64>,
    /// Mean total return.
    pub total_return: f64,
    /// Mean max drawdown.
    pub max_drawdown: f64,
}

/// One training iteration's diagnostics (timings left out: they are not reproducible).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnostics {
    /// Iteration (0-based).
    pub iteration: u64,
    /// Mean trial return of the rollout.
    pub mean_trial_return: f64,
    /// Mean return by episode of the trial.
    pub return_by_episode: Vec<f64>,
    /// Explained variance of the value estimates.
    pub explained_variance: f64,
    /// Approximate KL between the rollout policy and the updated one.
    pub approx_kl: f64,
    /// Policy entropy.
    pub entropy: f64,
    /// Share of steps whose probability ratio left the clip range.
    pub clip_fraction: f64,
    /// Clipped surrogate loss.
    pub policy_loss: f64,
    /// Value loss.
    pub value_loss: f64,
}

impl From<&IterationStats> for Diagnostics {
    fn from(s: &IterationStats) -> Self {
        Self {
            iteration: s.iteration,
            mean_trial_return: s.mean_trial_return,
            return_by_episode: s.return_by_episode.clone(),
            explained_variance: s.explained_variance,
            approx_kl: s.approx_kl,
            entropy: s.entropy,
            clip_fraction: s.clip_fraction,
            policy_loss: s.policy_loss,
            value_loss: s.value_loss,
        }
    }
}

/// One training run of a study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingRun {
    /// The run directory, relative to the study's output directory.
    pub run_dir: String,
    /// Iterations completed.
    pub iterations: u64,
    /// Environment steps.
    pub env_steps: u64,
    /// Mean trial return over the last 10 % of the iterations.
    pub tail_mean_trial_return: f64,
    /// Every iteration's diagnostics, from the run's `train_log.jsonl`.
    pub diagnostics: Vec<Diagnostics>,
}

/// Everything about one training seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedResult {
    /// Training seed.
    pub seed: u64,
    /// The two training runs, keyed `rl2` and `mlp`.
    pub training: BTreeMap<String, TrainingRun>,
    /// Every held-out market.
    pub markets: Vec<MarketResult>,
    /// Per policy key, the mean over the markets.
    pub policies: BTreeMap<String, SeedFigures>,
    /// Per policy key, the adaptation curve averaged over the markets.
    pub adaptation: BTreeMap<String, Vec<f64>>,
}

/// A policy's figures pooled over seeds: the spread across seeds of each seed's mean over
/// the markets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PooledPolicy {
    /// Seeds pooled.
    pub seeds: usize,
    /// Mean Sharpe across the seeds where it is defined ([`Spread::n`] says how many).
    pub sharpe: Option<Spread>,
    /// Mean total return across seeds.
    pub total_return: Spread,
    /// Mean max drawdown across seeds.
    pub max_drawdown: Spread,
}

/// One seed's mean paired difference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SeedDiff {
    /// Training seed.
    pub seed: u64,
    /// Markets where both Sharpe ratios are defined.
    pub pairs: usize,
    /// Mean difference over those markets; `None` when there are none.
    pub mean: Option<f64>,
}

/// `sharpe(a) − sharpe(b)` over every (seed, market) pair where both are defined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Policy key of the first policy.
    pub a: String,
    /// Policy key of the second policy.
    pub b: String,
    /// Pairs where both Sharpe ratios are defined.
    pub pairs: usize,
    /// All (seed, market) pairs.
    pub pairs_total: usize,
    /// The mean difference and its two-way bootstrap interval; `None` without a defined
    /// pair.
    pub interval: Option<DiffInterval>,
    /// Per seed.
    pub per_seed: Vec<SeedDiff>,
    /// Seeds whose mean difference is negative (`a` weaker than `b` there).
    pub weaker_seeds: Vec<u64>,
}

/// Mean, min and max across seeds of a curve, point by point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurveBand {
    /// Mean across seeds.
    pub mean: Vec<f64>,
    /// Smallest seed's value.
    pub min: Vec<f64>,
    /// Largest seed's value.
    pub max: Vec<f64>,
}

/// Training diagnostics of one agent pooled over seeds, by iteration (min–max bands).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingBands {
    /// Mean trial return.
    pub mean_trial_return: CurveBand,
    /// Explained variance.
    pub explained_variance: CurveBand,
    /// Approximate KL.
    pub approx_kl: CurveBand,
    /// Entropy.
    pub entropy: CurveBand,
    /// Clip fraction.
    pub clip_fraction: CurveBand,
}

/// The action mode to deploy, by the pooled held-out Sharpe of RL².
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// `greedy` or `sampled`.
    pub mode: String,
    /// Pooled mean Sharpe of RL² with greedy actions.
    pub greedy_sharpe: Option<f64>,
    /// Pooled mean Sharpe of RL² with sampled actions.
    pub sampled_sharpe: Option<f64>,
    /// The line that says so.
    pub line: String,
}

/// The settings a study ran with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudySettings {
    /// Task kind of the config.
    pub task: String,
    /// Training seeds.
    pub seeds: Vec<u64>,
    /// PPO iterations per run.
    pub iterations: u64,
    /// Parallel trials per rollout.
    pub n_envs: usize,
    /// Hidden width of both agents.
    pub hidden: usize,
    /// Episodes per trial.
    pub episodes_per_trial: usize,
    /// The held-out markets, in words.
    pub held_out: String,
    /// Names of the held-out markets.
    pub markets: Vec<String>,
    /// The walk-forward settings (greedy; the sampled runs differ by `mode` and `seed`).
    pub walk_forward: WalkForwardConfig,
    /// Sampled-action runs per evaluation.
    pub sampled_runs: usize,
    /// Bootstrap resamples.
    pub resamples: usize,
    /// Bootstrap coverage.
    pub confidence: f64,
    /// The RL² run's training config as TOML (the MLP's differs by `agent.kind`; `seed`
    /// by seed).
    pub train_config: String,
    /// The training configs (TOML, first seed) of the further agents that train with their
    /// own [`AgentSettings`], by policy key; empty (and left out of `study.json`) when none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub own_settings: BTreeMap<String, String>,
}

/// The result of [`run_study`], written as `study.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyReport {
    /// What ran.
    pub settings: StudySettings,
    /// Every seed.
    pub per_seed: Vec<SeedResult>,
    /// Per policy key, pooled over seeds.
    pub pooled: BTreeMap<String, PooledPolicy>,
    /// The trader rule with the best pooled Sharpe (chosen on the same data, which favours
    /// it).
    pub best_rule: Option<String>,
    /// Paired Sharpe differences: RL² against the MLP, buy-and-hold and the best trader
    /// rule (greedy), the same with sampled actions, and greedy against sampled RL².
    pub comparisons: Vec<Comparison>,
    /// Per policy key, the adaptation curve across seeds.
    pub adaptation: BTreeMap<String, CurveBand>,
    /// Per agent (`rl2`, `mlp`), training diagnostics across seeds.
    pub training: BTreeMap<String, TrainingBands>,
    /// The verdict line.
    pub verdict: String,
    /// Whether RL² adapts within the trial, net of the MLP (greedy); `None` in reports
    /// written before it existed.
    #[serde(default)]
    pub adaptation_gain: Option<AdaptationGain>,
    /// The further agents ([`StudyConfig::others`]) against RL² and the MLP; empty when
    /// none was trained.
    #[serde(default)]
    pub others: Vec<OtherAgent>,
    /// Which action mode to deploy.
    pub deployment: Deployment,
}

/// Every kind of agent a study can train: RL² and the MLP always, the others on request
/// ([`StudyConfig::others`]).
pub const AGENT_KINDS: [PolicyKind; 4] = [
    PolicyKind::Rl2,
    PolicyKind::Mlp,
    PolicyKind::Transformer,
    PolicyKind::TaskInference,
];

/// Whether `key` names a trained agent (greedy), not a baseline.
pub fn is_agent_key(key: &str) -> bool {
    AGENT_KINDS.iter().any(|k| k.as_str() == key)
}

/// Policy keys in display order: each agent's greedy then sampled runs, then the baselines
/// of [`mrl_backtest::POLICY_ORDER`], then any other key.
pub fn policy_order<'a>(keys: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    let others = AGENT_KINDS[2..].iter().map(|k| k.as_str());
    let names = mrl_backtest::POLICY_ORDER[..2]
        .iter()
        .copied()
        .chain(others)
        .chain(mrl_backtest::POLICY_ORDER[2..].iter().copied());
    for name in names {
        order.push(name.to_string());
        if is_agent_key(name) {
            order.push(format!("{name}{SAMPLED_SUFFIX}"));
        }
    }
    let keys: Vec<&String> = keys.into_iter().collect();
    let mut out: Vec<String> = order.into_iter().filter(|k| keys.contains(&k)).collect();
    for k in keys {
        if !out.contains(k) {
            out.push(k.clone());
        }
    }
    out
}

/// A policy key as a table label: `rl2 (greedy)`, `mlp (sampled)`, or the key.
pub fn policy_label(key: &str) -> String {
    match key.strip_suffix(SAMPLED_SUFFIX) {
        Some(agent) => format!("{agent} (sampled)"),
        None if is_agent_key(key) => format!("{key} (greedy)"),
        None => key.to_string(),
    }
}

/// Paired Sharpe differences of `a` against `b` over every seed and market of `per_seed`.
pub fn compare(
    per_seed: &[SeedResult],
    a: &str,
    b: &str,
    resamples: usize,
    confidence: f64,
    rng: &mut ChaCha8Rng,
) -> Comparison {
    let diffs: Vec<Vec<Option<f64>>> = per_seed
        .iter()
        .map(|s| {
            s.markets
                .iter()
                .map(|m| {
                    let sharpe = |k: &str| m.policies.get(k).and_then(|p| p.sharpe);
                    Some(sharpe(a)? - sharpe(b)?)
                })
                .collect()
        })
        .collect();
    let per_seed_diffs: Vec<SeedDiff> = per_seed
        .iter()
        .zip(&diffs)
        .map(|(s, row)| SeedDiff {
            seed: s.seed,
            pairs: row.iter().flatten().count(),
            mean: mean_defined(row.iter().copied()),
        })
        .collect();
    Comparison {
        a: a.to_string(),
        b: b.to_string(),
        pairs: diffs.iter().flatten().flatten().count(),
        pairs_total: diffs.iter().map(Vec::len).sum(),
        interval: crossed_bootstrap_ci(&diffs, resamples, confidence, rng),
        weaker_seeds: per_seed_diffs
            .iter()
            .filter(|d| d.mean.is_some_and(|m| m < 0.0))
            .map(|d| d.seed)
            .collect(),
        per_seed: per_seed_diffs,
    }
}

/// Whether an agent adapts within the trial: how its return changes from the first episode
/// to the last, alone and net of a memory-less baseline's change over the same windows.
///
/// The episodes of a walk-forward trial are consecutive windows of the market, so the
/// agent's rise alone mixes adaptation with whatever the later windows hold (buy-and-hold
/// and the MLP move between windows too). The baseline cannot carry anything from one
/// episode to the next, so `gain`, a difference in differences, is the part of the rise that
/// memory explains. Both are means over every (seed, market) pair with the two-way bootstrap
/// interval of [`crossed_bootstrap_ci`]; returns are fractions per episode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaptationGain {
    /// Policy key of the agent.
    pub agent: String,
    /// Policy key of the memory-less baseline.
    pub baseline: String,
    /// Episodes per trial (the first is compared with the last).
    pub episodes: usize,
    /// Pairs with both curves of that length.
    pub pairs: usize,
    /// `R_agent(last) − R_agent(first)`; `None` without a pair.
    pub rise: Option<DiffInterval>,
    /// `[R_agent − R_baseline](last) − [R_agent − R_baseline](first)`; `None` without a pair.
    pub gain: Option<DiffInterval>,
    /// The line that says so.
    pub line: String,
}

/// [`AdaptationGain`] of `agent` against `baseline` over every seed and market of
/// `per_seed`, from the per-market adaptation curves (pairs whose curves are shorter than two
/// episodes or differ in length are left out).
pub fn adaptation_gain(
    per_seed: &[SeedResult],
    agent: &str,
    baseline: &str,
    resamples: usize,
    confidence: f64,
    rng: &mut ChaCha8Rng,
) -> AdaptationGain {
    fn pair<'m>(m: &'m MarketResult, a: &str, b: &str) -> Option<(&'m [f64], &'m [f64])> {
        let a = &m.policies.get(a)?.adaptation_curve;
        let b = &m.policies.get(b)?.adaptation_curve;
        (a.len() >= 2 && a.len() == b.len()).then_some((a.as_slice(), b.as_slice()))
    }
    let curves = |m| pair(m, agent, baseline);
    let episodes = per_seed
        .iter()
        .flat_map(|s| &s.markets)
        .find_map(|m| curves(m).map(|(a, _)| a.len()))
        .unwrap_or(0);
    let rows = |f: &dyn Fn(&[f64], &[f64]) -> f64| -> Vec<Vec<Option<f64>>> {
        per_seed
            .iter()
            .map(|s| {
                s.markets
                    .iter()
                    .map(|m| {
                        curves(m)
                            .filter(|(a, _)| a.len() == episodes)
                            .map(|(a, b)| f(a, b))
                    })
                    .collect()
            })
            .collect()
    };
    let last = episodes.saturating_sub(1);
    let rise_rows = rows(&|a, _| a[last] - a[0]);
    let gain_rows = rows(&|a, b| (a[last] - b[last]) - (a[0] - b[0]));
    let pairs = gain_rows.iter().flatten().flatten().count();
    let rise = crossed_bootstrap_ci(&rise_rows, resamples, confidence, rng);
    let gain = crossed_bootstrap_ci(&gain_rows, resamples, confidence, rng);
    let line = adaptation_line(agent, baseline, episodes, pairs, rise, gain);
    AdaptationGain {
        agent: agent.into(),
        baseline: baseline.into(),
        episodes,
        pairs,
        rise,
        gain,
        line,
    }
}

/// `+1.20 pp (95% CI +0.40 to +2.00)` for an interval of fractions.
fn describe_pp(i: &DiffInterval) -> String {
    format!(
        "{:+.2} pp ({:.0}% CI {:+.2} to {:+.2})",
        100.0 * i.mean,
        100.0 * i.confidence,
        100.0 * i.lo,
        100.0 * i.hi
    )
}

/// An agent's name in prose (`RL²` for `rl2`, …), the key for an unknown one.
fn agent_name(key: &str) -> String {
    match key {
        "rl2" => "RL²".into(),
        "mlp" => "the MLP".into(),
        "transformer" => "the Transformer".into(),
        "task_inference" => "the task-inference agent".into(),
        other => other.into(),
    }
}

/// The adaptation line of [`AdaptationGain`].
fn adaptation_line(
    agent: &str,
    baseline: &str,
    episodes: usize,
    pairs: usize,
    rise: Option<DiffInterval>,
    gain: Option<DiffInterval>,
) -> String {
    let (Some(rise), Some(gain)) = (rise, gain) else {
        return format!(
            "Adaptation of {} cannot be measured: no seed×market pair has two or more episodes \
             of both it and {}.",
            agent_name(agent),
            prose_name(baseline)
        );
    };
    let verdict = if gain.lo > 0.0 {
        "it adapts: its edge grows"
    } else if gain.hi < 0.0 {
        "its edge shrinks"
    } else {
        "adaptation is not shown: its edge does not grow distinguishably"
    };
    format!(
        "Adaptation: {}'s return per episode changes from episode 1 to {episodes} by {}; \
         against {} (no memory, the same windows) {verdict}, by {} ({pairs} seed×market pairs).",
        agent_name(agent),
        describe_pp(&rise),
        prose_name(baseline),
        describe_pp(&gain)
    )
}

/// A further agent of a study ([`StudyConfig::others`]) against RL² and the MLP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OtherAgent {
    /// Its policy key (`transformer`, `task_inference`).
    pub key: String,
    /// Paired Sharpe differences against RL² (greedy).
    pub against_rl2: Comparison,
    /// Paired Sharpe differences against the MLP (greedy).
    pub against_mlp: Comparison,
    /// Whether it adapts within the trial, net of the MLP.
    pub adaptation: AdaptationGain,
    /// The line that says which wins.
    pub line: String,
}

impl OtherAgent {
    /// The comparison of `key` and its line.
    pub fn new(
        key: &str,
        against_rl2: Comparison,
        against_mlp: Comparison,
        adaptation: AdaptationGain,
    ) -> Self {
        let line = format!(
            "{} (greedy) on mean held-out Sharpe {}; {}.",
            agent_name(key),
            comparison_clause(&against_rl2),
            comparison_clause(&against_mlp)
        );
        Self {
            key: key.into(),
            against_rl2,
            against_mlp,
            adaptation,
            line,
        }
    }
}

/// Per policy key, the spread across seeds of each seed's means.
pub fn pool(per_seed: &[SeedResult]) -> BTreeMap<String, PooledPolicy> {
    let mut keys: Vec<&String> = per_seed.iter().flat_map(|s| s.policies.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|key| {
            let figs: Vec<&SeedFigures> = per_seed
                .iter()
                .filter_map(|s| s.policies.get(key))
                .collect();
            let spread = |f: fn(&SeedFigures) -> f64| {
                Spread::of(&figs.iter().map(|x| f(x)).collect::<Vec<_>>())
            };
            let pooled = PooledPolicy {
                seeds: figs.len(),
                sharpe: Spread::of_defined(figs.iter().map(|f| f.sharpe)),
                total_return: spread(|f| f.total_return)?,
                max_drawdown: spread(|f| f.max_drawdown)?,
            };
            Some((key.clone(), pooled))
        })
        .collect()
}

/// Point-by-point mean, min and max of equally long curves (the shortest length when they
/// differ); `None` without curves.
pub fn curve_band(curves: &[Vec<f64>]) -> Option<CurveBand> {
    let len = curves.iter().map(Vec::len).min()?;
    let column = |j: usize| curves.iter().map(move |c| c[j]);
    let n = curves.len() as f64;
    Some(CurveBand {
        mean: (0..len).map(|j| column(j).sum::<f64>() / n).collect(),
        min: (0..len)
            .map(|j| column(j).fold(f64::INFINITY, f64::min))
            .collect(),
        max: (0..len)
            .map(|j| column(j).fold(f64::NEG_INFINITY, f64::max))
            .collect(),
    })
}

/// `+0.12 (95% CI −0.03 to +0.30, 8 of 8 seed×market pairs)`, or `undefined`.
fn describe_diff(c: &Comparison) -> String {
    match c.interval {
        Some(i) => format!(
            "{:+.2} ({:.0}% CI {:+.2} to {:+.2}, {} of {} seed×market pairs)",
            i.mean,
            100.0 * i.confidence,
            i.lo,
            i.hi,
            c.pairs,
            c.pairs_total
        ),
        None => format!(
            "undefined (no seed×market pair of {} has both Sharpe ratios)",
            c.pairs_total
        ),
    }
}

/// Whether the interval lies above 0 (`Some(true)`), below 0 (`Some(false)`), or covers
/// 0 or is missing (`None`).
fn sign_of(c: &Comparison) -> Option<bool> {
    let i = c.interval?;
    if i.lo > 0.0 {
        Some(true)
    } else if i.hi < 0.0 {
        Some(false)
    } else {
        None
    }
}

/// A baseline's name in prose.
fn prose_name(key: &str) -> String {
    match key {
        "mlp_sampled" => "the sampled MLP".into(),
        "buy_and_hold" => "buy-and-hold".into(),
        "rl2_sampled" => "sampled RL²".into(),
        agent if is_agent_key(agent) => agent_name(agent),
        rule => format!("the best trader rule ({rule})"),
    }
}

/// `beats the MLP: Δ Sharpe +0.12 (95% CI …)`: whether `c.a` beats `c.b` on mean Sharpe, by
/// the interval of the difference, with that interval.
fn comparison_clause(c: &Comparison) -> String {
    let head = match sign_of(c) {
        Some(true) => "beats",
        Some(false) => "is beaten by",
        None if c.interval.is_some() => "is not distinguishable from",
        None => "cannot be compared with",
    };
    format!("{head} {}: Δ Sharpe {}", prose_name(&c.b), describe_diff(c))
}

/// The verdict line of `comparisons` (RL² against each baseline, greedy actions): for each
/// whether RL² beats it on mean Sharpe, with the interval, and the seeds where it is
/// weaker.
pub fn verdict(comparisons: &[&Comparison]) -> String {
    let mut clauses = Vec::new();
    let mut weaker = Vec::new();
    for c in comparisons {
        let name = prose_name(&c.b);
        clauses.push(comparison_clause(c));
        if !c.weaker_seeds.is_empty() {
            let seeds: Vec<String> = c.weaker_seeds.iter().map(u64::to_string).collect();
            let plural = if seeds.len() == 1 { "" } else { "s" };
            weaker.push(format!("{name} on seed{plural} {}", seeds.join(", ")));
        }
    }
    let mut line = format!(
        "RL² (greedy) on mean held-out Sharpe {}",
        clauses.join("; ")
    );
    if weaker.is_empty() {
        line.push_str("; it is not weaker on any seed.");
    } else {
        let _ = write!(line, "; weaker than {}.", weaker.join(", than "));
    }
    line
}

/// The deployment recommendation: the action mode with the better pooled held-out Sharpe
/// of RL² (greedy on a tie or when neither is defined, since it needs no random draw).
pub fn deployment(pooled: &BTreeMap<String, PooledPolicy>, diff: &Comparison) -> Deployment {
    let sharpe = |k: &str| pooled.get(k).and_then(|p| p.sharpe).map(|s| s.mean);
    let greedy = sharpe("rl2");
    let sampled = sharpe(&format!("rl2{SAMPLED_SUFFIX}"));
    let mode = match (greedy, sampled) {
        (Some(g), Some(s)) if s > g => "sampled",
        (None, Some(_)) => "sampled",
        _ => "greedy",
    };
    let fmt_opt = |x: Option<f64>| x.map_or_else(|| "undefined".into(), |v| format!("{v:.2}"));
    let line = format!(
        "Deploy {mode} actions: pooled held-out Sharpe of RL² {} greedy vs {} sampled; \
         greedy − sampled Δ Sharpe {}.",
        fmt_opt(greedy),
        fmt_opt(sampled),
        describe_diff(diff)
    );
    Deployment {
        mode: mode.into(),
        greedy_sharpe: greedy,
        sampled_sharpe: sampled,
        line,
    }
}

/// The figures of every policy of a backtest; the agents' keys get `suffix`, and with
/// `agents_only` the baselines are left out.
fn figures_of(
    report: &mrl_backtest::BacktestReport,
    suffix: &str,
    agents_only: bool,
) -> BTreeMap<String, PolicyFigures> {
    report
        .policies
        .iter()
        .filter(|(name, _)| !agents_only || is_agent_key(name))
        .map(|(name, p)| {
            let key = if is_agent_key(name) {
                format!("{name}{suffix}")
            } else {
                name.clone()
            };
            let m = &p.metrics;
            let figures = PolicyFigures {
                sharpe: m.sharpe,
                sortino: m.sortino,
                total_return: m.total_return,
                max_drawdown: m.max_drawdown,
                adaptation_curve: p.adaptation_curve.clone(),
            };
            (key, figures)
        })
        .collect()
}

/// One seed's mean over the markets, per policy key, and the mean adaptation curves.
fn seed_means(
    markets: &[MarketResult],
) -> (BTreeMap<String, SeedFigures>, BTreeMap<String, Vec<f64>>) {
    let mut keys: Vec<&String> = markets.iter().flat_map(|m| m.policies.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut figures = BTreeMap::new();
    let mut curves = BTreeMap::new();
    for key in keys {
        let figs: Vec<&PolicyFigures> =
            markets.iter().filter_map(|m| m.policies.get(key)).collect();
        let n = figs.len() as f64;
        let sharpe = Spread::of_defined(figs.iter().map(|f| f.sharpe));
        figures.insert(
            key.clone(),
            SeedFigures {
                markets: figs.len(),
                sharpe_markets: sharpe.map_or(0, |s| s.n),
                sharpe: sharpe.map(|s| s.mean),
                total_return: figs.iter().map(|f| f.total_return).sum::<f64>() / n,
                max_drawdown: figs.iter().map(|f| f.max_drawdown).sum::<f64>() / n,
            },
        );
        let rows: Vec<Vec<f64>> = figs.iter().map(|f| f.adaptation_curve.clone()).collect();
        if let Some(band) = curve_band(&rows) {
            curves.insert(key.clone(), band.mean);
        }
    }
    (figures, curves)
}

/// Reads a run's `train_log.jsonl`.
///
/// # Errors
/// [`Error::TrainLog`] naming the file and line.
pub fn read_train_log(path: &Path) -> Result<Vec<IterationStats>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::TrainLog {
        path: path.to_path_buf(),
        line: 0,
        reason: e.to_string(),
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| Error::TrainLog {
                path: path.to_path_buf(),
                line: i + 1,
                reason: e.to_string(),
            })
        })
        .collect()
}

/// Mean trial return over the last 10 % of `diagnostics` (at least one); NaN when empty.
fn tail_mean(diagnostics: &[Diagnostics]) -> f64 {
    let tail = diagnostics.len().div_ceil(10).max(1).min(diagnostics.len());
    let last = &diagnostics[diagnostics.len() - tail..];
    mean_defined(last.iter().map(|d| Some(d.mean_trial_return))).unwrap_or(f64::NAN)
}

/// Trains one agent of one seed into `out_dir/seed-<seed>/<agent>` and reads its log.
fn train_agent(
    config: &StudyConfig,
    out_dir: &Path,
    seed: u64,
    kind: PolicyKind,
    progress: &mut impl FnMut(Progress<'_>),
) -> Result<(TrainingRun, Policy)> {
    let train = config.train_config(seed, kind);
    let rel = format!("seed-{seed}/{}", kind.as_str());
    let run_dir = out_dir.join(&rel);
    let agent = kind.as_str();
    let err = |source: mrl_ppo::Error| Error::Train {
        seed,
        agent,
        source: Box::new(source),
    };
    let resume = config.resume && mrl_ppo::checkpoint_dir(&run_dir).exists();
    progress(Progress::TrainStart {
        seed,
        agent: kind,
        iterations: train.iterations,
    });
    let _span = tracing::info_span!("study_train", seed, agent).entered();
    let summary = mrl_ppo::train(&train, &run_dir, resume, |stats| {
        progress(Progress::Iteration {
            seed,
            agent: kind,
            stats,
        });
    })
    .map_err(err)?;
    progress(Progress::TrainDone { seed, agent: kind });
    let diagnostics: Vec<Diagnostics> = read_train_log(&run_dir.join(mrl_ppo::LOG_FILE))?
        .iter()
        .map(Diagnostics::from)
        .collect();
    let policy =
        mrl_ppo::load_policy(&summary.checkpoint, &candle_core::Device::Cpu).map_err(err)?;
    let run = TrainingRun {
        run_dir: rel,
        iterations: summary.iterations,
        env_steps: summary.env_steps,
        tail_mean_trial_return: tail_mean(&diagnostics),
        diagnostics,
    };
    Ok((run, policy))
}

/// Runs the whole study into `out_dir`: for every seed trains both agents into
/// `seed-<seed>/{rl2,mlp}/`, backtests them on the held-out markets greedy and sampled,
/// then pools and writes `study.json`, `per_seed.csv`, `pooled.csv`, `comparisons.csv`,
/// `study.md`, `seed-<seed>/equity.csv` (the first market, greedy) and, with the `plot`
/// feature, the charts `adaptation`, `training` and `equity-seed-<seed>` (PNG and SVG).
/// `progress` sees every step. The same config gives the same `study.json`, byte for byte.
///
/// # Errors
/// As [`StudyConfig::validate`] and [`held_out_markets`]; [`Error::Train`],
/// [`Error::TrainLog`], [`Error::Backtest`], [`Error::Write`].
pub fn run_study(
    config: &StudyConfig,
    out_dir: &Path,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<StudyReport> {
    config.validate()?;
    let held = held_out_markets(config)?;
    progress(Progress::Markets {
        count: held.markets.len(),
    });
    let wf = config.walk_forward(held.test_start);
    let mut per_seed = Vec::with_capacity(config.seeds.len());
    for &seed in &config.seeds {
        let (rl2_run, rl2) = train_agent(config, out_dir, seed, PolicyKind::Rl2, &mut progress)?;
        let (mlp_run, mlp) = train_agent(config, out_dir, seed, PolicyKind::Mlp, &mut progress)?;
        let mut training = BTreeMap::from([("rl2".into(), rl2_run), ("mlp".into(), mlp_run)]);
        let mut others = Vec::with_capacity(config.others.len());
        for &kind in &config.others {
            let (run, policy) = train_agent(config, out_dir, seed, kind, &mut progress)?;
            training.insert(kind.as_str().into(), run);
            others.push((kind.as_str(), policy));
        }
        let total = 2 * held.markets.len();
        let mut markets = Vec::with_capacity(held.markets.len());
        for (i, m) in held.markets.iter().enumerate() {
            let policies = Policies {
                rl2: &rl2,
                mlp: Some(&mlp),
                oracle: m.oracle.clone(),
                others: others.iter().map(|(k, p)| (*k, p)).collect(),
            };
            let run = |mode| {
                let wf = WalkForwardConfig {
                    mode,
                    seed,
                    ..wf.clone()
                };
                mrl_backtest::backtest_market(&m.market, &policies, &wf).map_err(|source| {
                    Error::Backtest {
                        seed,
                        market: m.name.clone(),
                        source: Box::new(source),
                    }
                })
            };
            let greedy = run(ActionMode::Greedy)?;
            progress(Progress::Backtest {
                seed,
                market: &m.name,
                done: 2 * i + 1,
                total,
            });
            let sampled = run(ActionMode::Sampled {
                seeds: config.sampled_runs,
            })?;
            progress(Progress::Backtest {
                seed,
                market: &m.name,
                done: 2 * i + 2,
                total,
            });
            if i == 0 {
                write_seed_equity(out_dir, seed, &m.name, &greedy)?;
            }
            let mut policies = figures_of(&greedy.report, "", false);
            policies.extend(figures_of(&sampled.report, SAMPLED_SUFFIX, true));
            markets.push(MarketResult {
                name: m.name.clone(),
                test_bars: greedy.windows.iter().map(|w| w.eval.len()).sum(),
                policies,
            });
        }
        let (policies, adaptation) = seed_means(&markets);
        per_seed.push(SeedResult {
            seed,
            training,
            markets,
            policies,
            adaptation,
        });
        progress(Progress::SeedDone { seed });
        tracing::info!(seed, "study seed done");
    }
    let report = assemble(config, &held, &wf, per_seed);
    write_outputs(&report, out_dir)?;
    Ok(report)
}

/// Pools the seeds into the report.
fn assemble(
    config: &StudyConfig,
    held: &HeldOutSet,
    wf: &WalkForwardConfig,
    per_seed: Vec<SeedResult>,
) -> StudyReport {
    let pooled = pool(&per_seed);
    let best_rule = RULES
        .iter()
        .filter_map(|r| Some((*r, pooled.get(*r)?.sharpe?.mean)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(r, _)| r.to_string());
    // One generator for every interval, seeded from the first training seed.
    let mut rng = ChaCha8Rng::seed_from_u64(config.seeds.first().copied().unwrap_or(0));
    rng.set_stream(0x5354_5544); // "STUD"
    let mut cmp = |a: &str, b: &str| {
        compare(
            &per_seed,
            a,
            b,
            config.resamples,
            config.confidence,
            &mut rng,
        )
    };
    let sampled = |k: &str| format!("{k}{SAMPLED_SUFFIX}");
    let mut comparisons = vec![cmp("rl2", "mlp"), cmp("rl2", "buy_and_hold")];
    if let Some(rule) = &best_rule {
        comparisons.push(cmp("rl2", rule));
    }
    let headline = comparisons.len();
    comparisons.push(cmp(&sampled("rl2"), &sampled("mlp")));
    comparisons.push(cmp(&sampled("rl2"), "buy_and_hold"));
    let modes = cmp("rl2", &sampled("rl2"));
    let verdict_line = verdict(&comparisons[..headline].iter().collect::<Vec<_>>());
    let deployment = deployment(&pooled, &modes);
    comparisons.push(modes);
    let gain = adaptation_gain(
        &per_seed,
        "rl2",
        "mlp",
        config.resamples,
        config.confidence,
        &mut rng,
    );
    let others = config
        .others
        .iter()
        .map(|kind| {
            let key = kind.as_str();
            let against_rl2 = compare(
                &per_seed,
                key,
                "rl2",
                config.resamples,
                config.confidence,
                &mut rng,
            );
            let against_mlp = compare(
                &per_seed,
                key,
                "mlp",
                config.resamples,
                config.confidence,
                &mut rng,
            );
            let gain = adaptation_gain(
                &per_seed,
                key,
                "mlp",
                config.resamples,
                config.confidence,
                &mut rng,
            );
            OtherAgent::new(key, against_rl2, against_mlp, gain)
        })
        .collect();

    let mut keys: Vec<&String> = per_seed.iter().flat_map(|s| s.adaptation.keys()).collect();
    keys.sort();
    keys.dedup();
    let adaptation = keys
        .into_iter()
        .filter_map(|k| {
            let rows: Vec<Vec<f64>> = per_seed
                .iter()
                .filter_map(|s| s.adaptation.get(k).cloned())
                .collect();
            Some((k.clone(), curve_band(&rows)?))
        })
        .collect();
    let training = AGENT_KINDS
        .iter()
        .map(|k| k.as_str())
        .filter_map(|agent| {
            let runs: Vec<&Vec<Diagnostics>> = per_seed
                .iter()
                .filter_map(|s| s.training.get(agent).map(|r| &r.diagnostics))
                .collect();
            let band = |f: fn(&Diagnostics) -> f64| {
                curve_band(
                    &runs
                        .iter()
                        .map(|d| d.iter().map(f).collect())
                        .collect::<Vec<_>>(),
                )
            };
            Some((
                agent.to_string(),
                TrainingBands {
                    mean_trial_return: band(|d| d.mean_trial_return)?,
                    explained_variance: band(|d| d.explained_variance)?,
                    approx_kl: band(|d| d.approx_kl)?,
                    entropy: band(|d| d.entropy)?,
                    clip_fraction: band(|d| d.clip_fraction)?,
                },
            ))
        })
        .collect();
    let base = config.train_config(config.seeds.first().copied().unwrap_or(0), PolicyKind::Rl2);
    let task = base.task.kind.name();
    let settings = StudySettings {
        task: task.into(),
        seeds: config.seeds.clone(),
        iterations: base.iterations,
        n_envs: base.n_envs,
        hidden: base.agent.hidden,
        episodes_per_trial: base.task.episodes_per_trial,
        held_out: held.description.clone(),
        markets: held.markets.iter().map(|m| m.name.clone()).collect(),
        walk_forward: wf.clone(),
        sampled_runs: config.sampled_runs,
        resamples: config.resamples,
        confidence: config.confidence,
        train_config: base.to_toml(),
        own_settings: config
            .agent_settings
            .iter()
            .map(|(kind, _)| {
                let seed = config.seeds.first().copied().unwrap_or(0);
                (
                    kind.as_str().to_string(),
                    config.train_config(seed, *kind).to_toml(),
                )
            })
            .collect(),
    };
    StudyReport {
        settings,
        per_seed,
        pooled,
        best_rule,
        comparisons,
        adaptation,
        training,
        verdict: verdict_line,
        adaptation_gain: Some(gain),
        others,
        deployment,
    }
}

/// An agent's own settings in words (hidden width, step size, epochs, minibatch trials,
/// entropy), read back from its training config; the TOML itself when it does not parse.
fn own_settings_summary(toml: &str) -> String {
    match TrainConfig::from_toml_str(toml, Path::new("study.json")) {
        Ok(c) => format!(
            "hidden {}, lr {}, {} epochs × {} trials per minibatch, entropy {}",
            c.agent.hidden, c.optim.lr, c.ppo.epochs, c.ppo.minibatch_trials, c.ppo.entropy_coef
        ),
        Err(_) => toml.replace('\n', "; "),
    }
}

/// Writes `bytes` to `path` atomically, naming the file in the error.
fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    mrl_data::write_file_atomic(path, bytes).map_err(|e| Error::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// `seed-<seed>/equity.csv` of the first held-out market and (feature `plot`) its chart.
fn write_seed_equity(
    out_dir: &Path,
    seed: u64,
    market: &str,
    bt: &mrl_backtest::Backtest,
) -> Result<()> {
    let dir = out_dir.join(format!("seed-{seed}"));
    write(
        &dir.join("equity.csv"),
        mrl_backtest::equity_csv(&bt.report, &bt.records).as_bytes(),
    )?;
    #[cfg(feature = "plot")]
    {
        let start = bt.report.span.start;
        let days = |ts: i64| (ts - start) as f64 / mrl_data::DAY_MS as f64;
        let lines = ["rl2", "mlp", "buy_and_hold", "oracle"]
            .into_iter()
            .filter_map(|name| {
                let records = bt.records.get(name)?;
                Some(mrl_backtest::BandLine {
                    name: name.into(),
                    // Compounded equity spans orders of magnitude (the oracle's dwarfs the
                    // agents' on a linear axis): plot log10, floored for a ruined book.
                    points: records
                        .iter()
                        .map(|r| (days(r.timestamp), r.equity.max(1e-6).log10()))
                        .collect(),
                    band: Vec::new(),
                })
            })
            .collect();
        let panel = mrl_backtest::Panel {
            title: format!("{market}, greedy actions"),
            x_desc: format!("days since {}", mrl_data::format_timestamp(start)),
            y_desc: "log10 equity (0 = start, 1 = ×10)".into(),
            lines,
            integer_x: false,
        };
        let title = format!("Equity on held-out {market} (seed {seed})");
        mrl_backtest::write_band_figure(out_dir, &format!("equity-seed-{seed}"), &title, &[panel])
            .map_err(|e| Error::Write {
                path: out_dir.join(format!("equity-seed-{seed}.png")),
                reason: e.to_string(),
            })?;
    }
    Ok(())
}

/// Writes every output file of `report` into `out_dir`.
fn write_outputs(report: &StudyReport, out_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(out_dir).map_err(|e| Error::Write {
        path: out_dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let json = serde_json::to_vec_pretty(report).map_err(|e| Error::Write {
        path: out_dir.join("study.json"),
        reason: e.to_string(),
    })?;
    write(&out_dir.join("study.json"), &json)?;
    write(
        &out_dir.join("per_seed.csv"),
        report.per_seed_csv().as_bytes(),
    )?;
    write(&out_dir.join("pooled.csv"), report.pooled_csv().as_bytes())?;
    write(
        &out_dir.join("comparisons.csv"),
        report.comparisons_csv().as_bytes(),
    )?;
    write(&out_dir.join("study.md"), report.to_markdown().as_bytes())?;
    #[cfg(feature = "plot")]
    write_charts(report, out_dir)?;
    tracing::info!(dir = %out_dir.display(), "study written");
    Ok(())
}

/// `1 seed`, `3 seeds`.
pub fn seeds_phrase(n: usize) -> String {
    if n == 1 {
        "1 seed".into()
    } else {
        format!("{n} seeds")
    }
}

/// The `adaptation` and `training` charts (min–max bands across seeds).
#[cfg(feature = "plot")]
fn write_charts(report: &StudyReport, out_dir: &Path) -> Result<()> {
    use mrl_backtest::{BandLine, Panel};
    let band_line = |name: &str, band: &CurveBand, x0: f64, scale: f64| BandLine {
        name: name.into(),
        points: band
            .mean
            .iter()
            .enumerate()
            .map(|(i, &y)| (x0 + i as f64, scale * y))
            .collect(),
        band: band
            .min
            .iter()
            .zip(&band.max)
            .enumerate()
            .map(|(i, (&lo, &hi))| (x0 + i as f64, scale * lo, scale * hi))
            .collect(),
    };
    let chart_err = |stem: &str| {
        let path = out_dir.join(format!("{stem}.png"));
        move |e: mrl_backtest::Error| Error::Write {
            path,
            reason: e.to_string(),
        }
    };
    let shown = ["rl2", "mlp", "oracle", "buy_and_hold"];
    let adaptation = Panel {
        title: "mean return by episode of the trial (band: min–max across seeds)".into(),
        x_desc: "episode of the trial (last = evaluation window)".into(),
        y_desc: "return (%)".into(),
        lines: shown
            .iter()
            .filter_map(|k| Some(band_line(k, report.adaptation.get(*k)?, 1.0, 100.0)))
            .collect(),
        integer_x: true,
    };
    mrl_backtest::write_band_figure(
        out_dir,
        "adaptation",
        &format!(
            "Adaptation on held-out markets, greedy ({})",
            seeds_phrase(report.per_seed.len())
        ),
        &[adaptation],
    )
    .map_err(chart_err("adaptation"))?;
    type Pick = fn(&TrainingBands) -> &CurveBand;
    let panels: [(&str, &str, Pick); 4] = [
        ("mean trial return", "return", |t| &t.mean_trial_return),
        ("explained variance", "explained variance", |t| {
            &t.explained_variance
        }),
        ("approx. KL", "approx. KL", |t| &t.approx_kl),
        ("policy entropy", "entropy (nats)", |t| &t.entropy),
    ];
    let panels: Vec<Panel> = panels
        .iter()
        .map(|(title, y, pick)| Panel {
            title: (*title).into(),
            x_desc: "iteration".into(),
            y_desc: (*y).into(),
            lines: report
                .training
                .iter()
                .map(|(agent, t)| band_line(agent, pick(t), 0.0, 1.0))
                .collect(),
            integer_x: false,
        })
        .collect();
    mrl_backtest::write_band_figure(
        out_dir,
        "training",
        &format!(
            "Training diagnostics (band: min–max across {})",
            seeds_phrase(report.per_seed.len())
        ),
        &panels,
    )
    .map_err(chart_err("training"))?;
    Ok(())
}

/// `x` with 2 decimals, or `-` when undefined.
fn opt(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{v:.2}"))
}

/// `x` as CSV: the number, or empty when undefined.
fn csv_opt(x: Option<f64>) -> String {
    x.map_or_else(String::new, |v| v.to_string())
}

impl StudyReport {
    /// Policy keys in display order.
    fn policy_keys(&self) -> Vec<String> {
        policy_order(self.pooled.keys())
    }

    /// `per_seed.csv`: `seed,policy,markets,sharpe_markets,mean_sharpe,mean_total_return,
    /// mean_max_drawdown`, one row per seed and policy key (`mean_sharpe` empty when no
    /// market's Sharpe is defined).
    pub fn per_seed_csv(&self) -> String {
        let mut out = String::from(
            "seed,policy,markets,sharpe_markets,mean_sharpe,mean_total_return,mean_max_drawdown\n",
        );
        for s in &self.per_seed {
            for key in policy_order(s.policies.keys()) {
                let f = &s.policies[&key];
                let _ = writeln!(
                    out,
                    "{},{key},{},{},{},{},{}",
                    s.seed,
                    f.markets,
                    f.sharpe_markets,
                    csv_opt(f.sharpe),
                    f.total_return,
                    f.max_drawdown
                );
            }
        }
        out
    }

    /// `pooled.csv`: `policy,seeds,sharpe_seeds,sharpe_mean,sharpe_std,sharpe_min,
    /// sharpe_max,return_mean,return_std,max_drawdown_mean,max_drawdown_std`, one row per
    /// policy key (across seeds of each seed's mean over the markets; std with ddof 0).
    pub fn pooled_csv(&self) -> String {
        let mut out = String::from(
            "policy,seeds,sharpe_seeds,sharpe_mean,sharpe_std,sharpe_min,sharpe_max,\
             return_mean,return_std,max_drawdown_mean,max_drawdown_std\n",
        );
        for key in self.policy_keys() {
            let p = &self.pooled[&key];
            let s = p.sharpe;
            let _ = writeln!(
                out,
                "{key},{},{},{},{},{},{},{},{},{},{}",
                p.seeds,
                s.map_or(0, |s| s.n),
                csv_opt(s.map(|s| s.mean)),
                csv_opt(s.map(|s| s.std)),
                csv_opt(s.map(|s| s.min)),
                csv_opt(s.map(|s| s.max)),
                p.total_return.mean,
                p.total_return.std,
                p.max_drawdown.mean,
                p.max_drawdown.std
            );
        }
        out
    }

    /// `comparisons.csv`: `a,b,pairs,pairs_total,mean_diff,lo,hi,confidence,weaker_seeds`
    /// (the Sharpe difference `a − b`; `weaker_seeds` separated by `;`).
    pub fn comparisons_csv(&self) -> String {
        let mut out =
            String::from("a,b,pairs,pairs_total,mean_diff,lo,hi,confidence,weaker_seeds\n");
        for c in &self.comparisons {
            let i = c.interval;
            let weaker: Vec<String> = c.weaker_seeds.iter().map(u64::to_string).collect();
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{}",
                c.a,
                c.b,
                c.pairs,
                c.pairs_total,
                csv_opt(i.map(|i| i.mean)),
                csv_opt(i.map(|i| i.lo)),
                csv_opt(i.map(|i| i.hi)),
                csv_opt(i.map(|i| i.confidence)),
                weaker.join(";")
            );
        }
        out
    }

    /// The pooled table: per policy, mean ± std across seeds of the mean Sharpe, return
    /// and max drawdown over the markets (Markdown).
    pub fn pooled_table(&self) -> String {
        let mut out = String::from(
            "| policy | Sharpe (mean ± std) | seeds with Sharpe | return | max drawdown |\n\
             |---|---:|---:|---:|---:|\n",
        );
        for key in self.policy_keys() {
            let p = &self.pooled[&key];
            let sharpe = p
                .sharpe
                .map_or_else(|| "-".into(), |s| format!("{:.2} ± {:.2}", s.mean, s.std));
            let _ = writeln!(
                out,
                "| {} | {sharpe} | {}/{} | {:.2}% ± {:.2}% | {:.2}% ± {:.2}% |",
                policy_label(&key),
                p.sharpe.map_or(0, |s| s.n),
                p.seeds,
                100.0 * p.total_return.mean,
                100.0 * p.total_return.std,
                100.0 * p.max_drawdown.mean,
                100.0 * p.max_drawdown.std
            );
        }
        out
    }

    /// `study.md`: settings, verdict, pooled table, paired differences, per-seed tables,
    /// adaptation curves, training summary and the charts, as Markdown a README can paste.
    pub fn to_markdown(&self) -> String {
        let s = &self.settings;
        let wf = &s.walk_forward;
        let seeds: Vec<String> = s.seeds.iter().map(u64::to_string).collect();
        let mut out = String::from("# RL² against the MLP baseline over seeds\n\n## Settings\n\n");
        out.push_str("| setting | value |\n|---|---|\n");
        let mut row = |k: &str, v: String| {
            let _ = writeln!(out, "| {k} | {v} |");
        };
        row("task", s.task.clone());
        row("seeds", seeds.join(", "));
        row(
            "training",
            format!(
                "{} iterations × {} trials × {} episodes, hidden {}",
                s.iterations, s.n_envs, s.episodes_per_trial, s.hidden
            ),
        );
        for (key, toml) in &s.own_settings {
            row(&format!("{key}'s own settings"), own_settings_summary(toml));
        }
        row("held-out markets", s.held_out.clone());
        row(
            "walk-forward",
            format!(
                "windows of {} bars after {} adaptation episodes of {} bars, {} bps costs",
                wf.window_len,
                wf.adaptation_episodes,
                wf.adaptation_len,
                wf.cost_rate * 1e4
            ),
        );
        row(
            "actions",
            format!(
                "greedy, and sampled in {} runs (their mean)",
                s.sampled_runs
            ),
        );
        row(
            "intervals",
            format!(
                "{:.0}% two-way bootstrap over (seed, market) pairs, {} resamples",
                100.0 * s.confidence,
                s.resamples
            ),
        );
        let _ = write!(
            out,
            "\n## Verdict\n\n{}\n\n{}{}\n\n## Pooled over seeds\n\nMean ± std across seeds of each \
             seed's mean over the {} held-out markets.\n\n{}",
            self.verdict,
            self.adaptation_gain
                .as_ref()
                .map(|g| g.line.as_str())
                .into_iter()
                .chain(
                    self.others
                        .iter()
                        .flat_map(|o| [o.line.as_str(), o.adaptation.line.as_str()])
                )
                .map(|line| format!("{line}\n\n"))
                .collect::<String>(),
            self.deployment.line,
            s.markets.len(),
            self.pooled_table()
        );
        out.push_str(
            "\n## Paired Sharpe differences\n\n| difference | mean Δ Sharpe | interval | pairs | \
             weaker on seeds |\n|---|---:|---:|---:|---|\n",
        );
        for c in &self.comparisons {
            let (mean, ci) = c.interval.map_or_else(
                || ("-".into(), "-".into()),
                |i| {
                    (
                        format!("{:+.2}", i.mean),
                        format!("[{:+.2}, {:+.2}]", i.lo, i.hi),
                    )
                },
            );
            let weaker: Vec<String> = c.weaker_seeds.iter().map(u64::to_string).collect();
            let _ = writeln!(
                out,
                "| {} − {} | {mean} | {ci} | {}/{} | {} |",
                policy_label(&c.a),
                policy_label(&c.b),
                c.pairs,
                c.pairs_total,
                if weaker.is_empty() {
                    "none".into()
                } else {
                    weaker.join(", ")
                }
            );
        }
        let keys = self.policy_keys();
        out.push_str("\n## Per seed: mean Sharpe over the markets\n\n| seed |");
        for k in &keys {
            let _ = write!(out, " {} |", policy_label(k));
        }
        out.push_str("\n|---|");
        out.push_str(&"---:|".repeat(keys.len()));
        out.push('\n');
        for seed in &self.per_seed {
            let _ = write!(out, "| {} |", seed.seed);
            for k in &keys {
                let _ = write!(
                    out,
                    " {} |",
                    opt(seed.policies.get(k).and_then(|f| f.sharpe))
                );
            }
            out.push('\n');
        }
        out.push_str(
            "\n## Per seed: training\n\n| seed | agent | iterations | last-10% trial return | \
             final explained variance | final approx. KL | final entropy |\n\
             |---|---|---:|---:|---:|---:|---:|\n",
        );
        for seed in &self.per_seed {
            for (agent, run) in &seed.training {
                let last = run.diagnostics.last();
                let pick = |f: fn(&Diagnostics) -> f64| opt(last.map(f));
                let _ = writeln!(
                    out,
                    "| {} | {agent} | {} | {:.3} | {} | {} | {} |",
                    seed.seed,
                    run.iterations,
                    run.tail_mean_trial_return,
                    pick(|d| d.explained_variance),
                    last.map_or_else(|| "-".into(), |d| format!("{:.4}", d.approx_kl)),
                    pick(|d| d.entropy)
                );
            }
        }
        out.push_str(
            "\n## Adaptation curve\n\nMean return (%) by episode of the trial, pooled mean \
             [min, max] across seeds; the last episode is the evaluation window.\n\n",
        );
        let episodes = self
            .adaptation
            .values()
            .map(|b| b.mean.len())
            .max()
            .unwrap_or(0);
        out.push_str("| policy |");
        for e in 1..=episodes {
            let _ = write!(out, " episode {e} |");
        }
        out.push_str("\n|---|");
        out.push_str(&"---:|".repeat(episodes));
        out.push('\n');
        for k in policy_order(self.adaptation.keys()) {
            let b = &self.adaptation[&k];
            let _ = write!(out, "| {} |", policy_label(&k));
            for j in 0..b.mean.len() {
                let _ = write!(
                    out,
                    " {:.3} [{:.3}, {:.3}] |",
                    100.0 * b.mean[j],
                    100.0 * b.min[j],
                    100.0 * b.max[j]
                );
            }
            out.push('\n');
        }
        out.push_str(
            "\n## Charts\n\n![adaptation curve](adaptation.png)\n\n![training \
             diagnostics](training.png)\n\n",
        );
        for seed in &self.per_seed {
            let _ = writeln!(out, "![equity, seed {0}](equity-seed-{0}.png)\n", seed.seed);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seed's result from its markets (no training runs).
    fn seed_of(seed: u64, markets: Vec<MarketResult>) -> SeedResult {
        let (policies, adaptation) = seed_means(&markets);
        SeedResult {
            seed,
            training: BTreeMap::new(),
            markets,
            policies,
            adaptation,
        }
    }

    fn seed_result(seed: u64, sharpes: &[(&str, &[Option<f64>])]) -> SeedResult {
        let n = sharpes[0].1.len();
        let markets: Vec<MarketResult> = (0..n)
            .map(|m| MarketResult {
                name: format!("m{m}"),
                test_bars: 10,
                policies: sharpes
                    .iter()
                    .map(|(k, v)| {
                        let f = PolicyFigures {
                            sharpe: v[m],
                            sortino: None,
                            total_return: 0.01 * m as f64,
                            max_drawdown: -0.1,
                            adaptation_curve: vec![0.0, 0.01],
                        };
                        (k.to_string(), f)
                    })
                    .collect(),
            })
            .collect();
        seed_of(seed, markets)
    }

    #[test]
    fn comparison_counts_pairs_and_names_weaker_seeds() {
        let per_seed = vec![
            seed_result(
                1,
                &[
                    ("rl2", &[Some(1.0), Some(0.5)]),
                    ("mlp", &[Some(0.5), None]),
                ],
            ),
            seed_result(
                2,
                &[
                    ("rl2", &[Some(0.0), Some(0.2)]),
                    ("mlp", &[Some(0.4), Some(0.4)]),
                ],
            ),
        ];
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let c = compare(&per_seed, "rl2", "mlp", 100, 0.95, &mut rng);
        assert_eq!((c.pairs, c.pairs_total), (3, 4));
        // (0.5 + (−0.4) + (−0.2)) / 3
        assert!((c.interval.unwrap().mean - (-0.1 / 3.0)).abs() < 1e-12);
        assert_eq!(c.per_seed[0].mean, Some(0.5));
        assert_eq!(c.per_seed[0].pairs, 1);
        assert!((c.per_seed[1].mean.unwrap() + 0.3).abs() < 1e-12);
        assert_eq!(c.weaker_seeds, vec![2]);
    }

    /// One seed whose markets hold `rl2` and `mlp` with the given adaptation curves.
    fn curves_result(seed: u64, markets: &[(&[f64], &[f64])]) -> SeedResult {
        let figures = |curve: &[f64]| PolicyFigures {
            sharpe: Some(0.0),
            sortino: None,
            total_return: 0.0,
            max_drawdown: 0.0,
            adaptation_curve: curve.to_vec(),
        };
        let markets: Vec<MarketResult> = markets
            .iter()
            .enumerate()
            .map(|(i, (rl2, mlp))| MarketResult {
                name: format!("m{i}"),
                test_bars: 10,
                policies: [("rl2", *rl2), ("mlp", *mlp)]
                    .into_iter()
                    .map(|(k, c)| (k.to_string(), figures(c)))
                    .collect(),
            })
            .collect();
        seed_of(seed, markets)
    }

    #[test]
    fn adaptation_gain_is_the_rise_net_of_the_memoryless_baseline() {
        // RL² rises by 0.03 on both markets of seed 1 while the MLP rises by 0.01 and 0.03:
        // gains 0.02 and 0. Seed 2: RL² rises by 0.05, the MLP falls by 0.01: gain 0.06.
        // The short curve of seed 2's second market is left out.
        let per_seed = vec![
            curves_result(
                1,
                &[
                    (&[0.01, 0.02, 0.04], &[0.0, 0.0, 0.01]),
                    (&[0.0, 0.01, 0.03], &[0.0, 0.02, 0.03]),
                ],
            ),
            curves_result(
                2,
                &[
                    (&[0.0, 0.0, 0.05], &[0.01, 0.0, 0.0]),
                    (&[0.0, 0.1], &[0.0, 0.0]),
                ],
            ),
        ];
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let g = adaptation_gain(&per_seed, "rl2", "mlp", 200, 0.95, &mut rng);
        assert_eq!((g.episodes, g.pairs), (3, 3));
        let (rise, gain) = (g.rise.unwrap(), g.gain.unwrap());
        assert!(
            (rise.mean - (0.03 + 0.03 + 0.05) / 3.0).abs() < 1e-12,
            "{rise:?}"
        );
        assert!(
            (gain.mean - (0.02 + 0.0 + 0.06) / 3.0).abs() < 1e-12,
            "{gain:?}"
        );
        assert!(gain.lo >= 0.0 && gain.hi <= 0.06 + 1e-12, "{gain:?}");
        assert!(
            g.line
                .contains("RL²'s return per episode changes from episode 1 to 3")
        );
        // A baseline that rises as much as the agent leaves no gain.
        let same = vec![curves_result(1, &[(&[0.0, 0.5], &[0.25, 0.75])])];
        let g = adaptation_gain(&same, "rl2", "mlp", 50, 0.95, &mut rng);
        let gain = g.gain.unwrap();
        assert!(gain.mean.abs() < 1e-12 && gain.lo.abs() < 1e-12 && gain.hi.abs() < 1e-12);
        assert!(g.line.contains("adaptation is not shown"), "{}", g.line);
        // Without the baseline nothing is measured, and the line says so.
        let g = adaptation_gain(&same, "rl2", "transformer", 50, 0.95, &mut rng);
        assert_eq!((g.pairs, g.rise, g.gain), (0, None, None));
        assert!(g.line.contains("cannot be measured"), "{}", g.line);
    }

    #[test]
    fn pooled_figures_are_means_of_the_seed_means() {
        let per_seed = vec![
            seed_result(1, &[("rl2", &[Some(1.0), Some(0.5)])]),
            seed_result(2, &[("rl2", &[Some(0.0), None])]),
        ];
        assert_eq!(per_seed[0].policies["rl2"].sharpe, Some(0.75));
        assert_eq!(per_seed[1].policies["rl2"].sharpe_markets, 1);
        let pooled = pool(&per_seed);
        let sharpe = pooled["rl2"].sharpe.unwrap();
        assert_eq!((sharpe.n, sharpe.mean, sharpe.std), (2, 0.375, 0.375));
        assert!((pooled["rl2"].total_return.mean - 0.005).abs() < 1e-15);
        assert_eq!(pooled["rl2"].max_drawdown.mean, -0.1);
    }

    #[test]
    fn verdict_says_who_wins_with_the_interval_and_the_weaker_seeds() {
        let comparison = |b: &str, lo: f64, hi: f64, weaker: Vec<u64>| Comparison {
            a: "rl2".into(),
            b: b.into(),
            pairs: 6,
            pairs_total: 8,
            interval: Some(DiffInterval {
                mean: (lo + hi) / 2.0,
                lo,
                hi,
                confidence: 0.95,
                resamples: 100,
            }),
            per_seed: Vec::new(),
            weaker_seeds: weaker,
        };
        let mlp = comparison("mlp", 0.1, 0.5, vec![]);
        let bh = comparison("buy_and_hold", -0.4, 0.2, vec![2, 3]);
        let line = verdict(&[&mlp, &bh]);
        assert_eq!(
            line,
            "RL² (greedy) on mean held-out Sharpe beats the MLP: Δ Sharpe +0.30 (95% CI +0.10 to \
             +0.50, 6 of 8 seed×market pairs); is not distinguishable from buy-and-hold: Δ Sharpe \
             -0.10 (95% CI -0.40 to +0.20, 6 of 8 seed×market pairs); weaker than buy-and-hold \
             on seeds 2, 3."
        );
        let all_good = verdict(&[&mlp]);
        assert!(
            all_good.ends_with("it is not weaker on any seed."),
            "{all_good}"
        );
        let lost = verdict(&[&comparison("macd", -0.5, -0.1, vec![1])]);
        assert!(
            lost.contains("is beaten by the best trader rule (macd)"),
            "{lost}"
        );
        assert!(
            lost.ends_with("weaker than the best trader rule (macd) on seed 1."),
            "{lost}"
        );
    }

    #[test]
    fn deployment_picks_the_better_pooled_sharpe_and_greedy_on_a_tie() {
        let per_seed = vec![seed_result(
            1,
            &[("rl2", &[Some(0.2)]), ("rl2_sampled", &[Some(0.6)])],
        )];
        let pooled = pool(&per_seed);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let diff = compare(&per_seed, "rl2", "rl2_sampled", 10, 0.95, &mut rng);
        let d = deployment(&pooled, &diff);
        assert_eq!(d.mode, "sampled");
        assert!(
            d.line.starts_with(
                "Deploy sampled actions: pooled held-out Sharpe of RL² 0.20 greedy vs 0.60 sampled"
            ),
            "{}",
            d.line
        );
        let tie = vec![seed_result(
            1,
            &[("rl2", &[Some(0.2)]), ("rl2_sampled", &[Some(0.2)])],
        )];
        assert_eq!(deployment(&pool(&tie), &diff).mode, "greedy");
    }

    #[test]
    fn policy_order_puts_sampled_runs_beside_their_greedy_ones() {
        let keys: Vec<String> = ["macd", "rl2_sampled", "mlp", "rl2", "buy_and_hold", "zeta"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            policy_order(&keys),
            ["rl2", "rl2_sampled", "mlp", "buy_and_hold", "macd", "zeta"]
        );
        assert_eq!(policy_label("rl2"), "rl2 (greedy)");
        assert_eq!(policy_label("mlp_sampled"), "mlp (sampled)");
        assert_eq!(policy_label("macd"), "macd");
    }

    #[test]
    fn curve_band_is_pointwise() {
        let b = curve_band(&[vec![1.0, 2.0, 9.0], vec![3.0, 0.0]]).unwrap();
        assert_eq!(b.mean, vec![2.0, 1.0]);
        assert_eq!(b.min, vec![1.0, 0.0]);
        assert_eq!(b.max, vec![3.0, 2.0]);
        assert_eq!(curve_band(&[]), None);
    }

    #[test]
    fn each_run_keeps_only_the_agent_tables_it_reads() {
        let mut train = TrainConfig::default();
        train.agent.task_inference.latent = 2;
        train.agent.transformer.layers = 3;
        train.ppo.belief_coef = 0.5;
        let config = StudyConfig::new(train, vec![7]);
        let rl2 = config.train_config(7, PolicyKind::Rl2);
        assert_eq!(rl2.seed, 7);
        assert_eq!(rl2.agent.task_inference.latent, 1);
        assert_eq!(rl2.agent.transformer.layers, 2);
        assert_eq!(rl2.ppo.belief_coef, 1.0);
        let belief = config.train_config(7, PolicyKind::TaskInference);
        assert_eq!(belief.agent.task_inference.latent, 2);
        assert_eq!(belief.ppo.belief_coef, 0.5);
        assert_eq!(belief.agent.transformer.layers, 2);
        let transformer = config.train_config(7, PolicyKind::Transformer);
        assert_eq!(transformer.agent.transformer.layers, 3);
        assert_eq!(transformer.agent.task_inference.latent, 1);
    }

    #[test]
    fn own_settings_replace_only_that_agents_tables() {
        let mut train = TrainConfig::default();
        train.task.kind = TaskKind::Synthetic {
            bars: 2000,
            randomization: Default::default(),
        };
        let mut own = train.clone();
        own.agent.kind = PolicyKind::Transformer;
        own.agent.hidden = 64;
        own.agent.transformer.context = 32;
        own.optim.lr = 5e-4;
        own.ppo.epochs = 2;
        own.iterations = 999; // the study's iterations win (equal env-steps)
        let settings = AgentSettings::from_config(PolicyKind::Transformer, &own, &train).unwrap();
        let mut config = StudyConfig::new(train.clone(), vec![3]);
        config.others = vec![PolicyKind::Transformer, PolicyKind::TaskInference];
        config.agent_settings = vec![(PolicyKind::Transformer, settings.clone())];
        config.validate().unwrap();
        let t = config.train_config(3, PolicyKind::Transformer);
        assert_eq!(
            (
                t.agent.hidden,
                t.agent.transformer.context,
                t.optim.lr,
                t.ppo.epochs
            ),
            (64, 32, 5e-4, 2)
        );
        assert_eq!((t.iterations, t.seed), (train.iterations, 3));
        for kind in [PolicyKind::Rl2, PolicyKind::Mlp, PolicyKind::TaskInference] {
            let c = config.train_config(3, kind);
            assert_eq!(
                (c.agent.hidden, c.optim.lr),
                (train.agent.hidden, train.optim.lr)
            );
            assert_eq!(c.agent.kind, kind);
        }
        // Own settings for an agent that is not trained, or twice, are refused.
        config
            .agent_settings
            .push((PolicyKind::Transformer, settings.clone()));
        assert!(matches!(
            config.validate(),
            Err(Error::InvalidSetting {
                field: "others",
                ..
            })
        ));
        config.others = vec![PolicyKind::TaskInference];
        config.agent_settings.truncate(1);
        assert!(matches!(
            config.validate(),
            Err(Error::InvalidSetting {
                field: "others",
                ..
            })
        ));
    }

    #[test]
    fn own_settings_must_train_that_agent_on_the_same_problem() {
        let study = TrainConfig::default();
        let mut own = study.clone();
        own.agent.kind = PolicyKind::Rl2;
        let err = AgentSettings::from_config(PolicyKind::Transformer, &own, &study).unwrap_err();
        assert!(
            err.to_string().contains("trains `rl2`, not `transformer`"),
            "{err}"
        );
        own.agent.kind = PolicyKind::Transformer;
        own.gae.gamma = 0.5;
        let err = AgentSettings::from_config(PolicyKind::Transformer, &own, &study).unwrap_err();
        assert!(err.to_string().contains("[gae] differs"), "{err}");
        own.gae = study.gae.clone();
        own.task.episodes_per_trial += 1;
        let err = AgentSettings::from_config(PolicyKind::Transformer, &own, &study).unwrap_err();
        assert!(err.to_string().contains("[task] differs"), "{err}");
        // Only the data directory differs: the same problem.
        let mut study = study;
        study.task.kind = TaskKind::MultiAsset {
            data_dir: PathBuf::from("a"),
            interval: "1h".into(),
            assets: vec!["X".into()],
            split: Default::default(),
        };
        let mut own = study.clone();
        own.agent.kind = PolicyKind::Transformer;
        if let TaskKind::MultiAsset { data_dir, .. } = &mut own.task.kind {
            *data_dir = PathBuf::from("b");
        }
        AgentSettings::from_config(PolicyKind::Transformer, &own, &study).unwrap();
    }

    #[test]
    fn own_settings_are_summarised_from_their_config() {
        let mut c = TrainConfig::default();
        c.agent.hidden = 64;
        c.optim.lr = 5e-4;
        c.ppo.minibatch_trials = 16;
        c.ppo.entropy_coef = 0.003;
        assert_eq!(
            own_settings_summary(&c.to_toml()),
            "hidden 64, lr 0.0005, 4 epochs × 16 trials per minibatch, entropy 0.003"
        );
        assert_eq!(own_settings_summary("x = \n"), "x = ; ");
    }

    #[test]
    fn bad_settings_are_named() {
        let seeds_err =
            |seeds: Vec<u64>| StudyConfig::new(TrainConfig::default(), seeds).validate();
        assert!(matches!(seeds_err(vec![]), Err(Error::NoSeeds)));
        assert!(matches!(
            seeds_err(vec![1, 2, 1]),
            Err(Error::DuplicateSeed { seed: 1 })
        ));
        // The default task is bandits.
        let err = seeds_err(vec![1]).unwrap_err();
        assert!(
            matches!(
                err,
                Error::UnsupportedTask {
                    kind: "bandits",
                    ..
                }
            ),
            "{err}"
        );
        let mut train = TrainConfig::default();
        train.task.kind = TaskKind::Synthetic {
            bars: 2000,
            randomization: Default::default(),
        };
        let mut config = StudyConfig::new(train, vec![1]);
        config.held_out.bars = 100;
        let err = config.validate().unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidSetting {
                    field: "test_bars",
                    ..
                }
            ),
            "{err}"
        );
        config.held_out.bars = 4000;
        config.validate().unwrap();
        config.confidence = 1.0;
        assert!(matches!(
            config.validate(),
            Err(Error::InvalidSetting {
                field: "confidence",
                ..
            })
        ));
        config.confidence = 0.95;
        config.n_envs = Some(0);
        let err = config.validate().unwrap_err();
        assert!(err.to_string().contains("n_envs"), "{err}");
    }
}
