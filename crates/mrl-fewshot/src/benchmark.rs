//! The few-shot benchmark (`mrl eval fewshot`): how well each initialisation trades a held-out
//! market after K adaptation steps on that market's first bars, beside the baselines that
//! need no gradient step.
//!
//! ```text
//! per seed s:   meta     meta-learned on the training tasks (Reptile / FOMAML, the config's [meta])
//!               pretrain plain PPO on the pooled training tasks with the env-steps meta used
//!                        (Mandi et al. 2022, "On the Effectiveness of Fine-tuning Versus
//!                        Meta-RL for Robot Manipulation")
//!               scratch  the same network, freshly initialised (seed from s)
//!               rl2      an RL² policy with zero gradient steps (given, or trained like pretrain)
//! per held-out task i (the same tasks for every seed):
//!   window  = the first N bars (default 336: two weeks of hourly bars)
//!   θ_K     = K inner steps of the same loop (crate::adapt) on `window` only, one run of max K
//!             steps with the same seed for every method (common random numbers)
//!   metrics = greedy walk-forward on the bars after the window, never before
//!             (Sharpe, total return, max drawdown; mrl-backtest's engine and metrics)
//!   baselines (buy-and-hold, flat, random, the four trader rules, the oracle of a
//!   synthetic market) on the same windows
//! ```
//!
//! Every gradient method adapts on the same bars for the same K steps, so the data is equal;
//! pretrain (and a trained RL²) use as many env-steps of the training tasks as
//! meta-training did. [`FewshotReport`](crate::FewshotReport) pools the (seed × task) table of every method and K
//! with intervals (the caller passes the two-way bootstrap) and the steps each method needs
//! to reach a share of the best method's final Sharpe ([`steps_to_reach`](crate::steps_to_reach)).

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use candle_core::Device;
use mrl_agent::{Policy, PolicyKind};
use mrl_backtest::{
    Metrics, Policies, TestStart, WalkForwardConfig, backtest_market, plan_windows, run_policy,
};
use mrl_env::{
    Env, MarketData, MarketOracle, ProcessSource, Split, SyntheticTasks, TaskDistribution,
};
use mrl_ppo::{CHECKPOINT_DIR, TaskKind, TrainConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::embedding::ClassEmbedding;
use crate::inner::{AdaptSetup, adapt_class_snapshots};
use crate::meta::{MetaAlgorithm, MetaLearner, MetaTrainConfig, class_tasks, return_scale_of};
use crate::online::{OnlineConfig, OnlineSetup, UpdateOutcome, book_metrics, trade_online};
use crate::task::{DEFAULT_ADAPTATION_BARS, FixedTask};
use crate::transfer::{TransferConfig, read_asset, training_files};
use crate::{Error, Result};

/// Format tag of a [`FewshotReport`](crate::FewshotReport).
pub const BENCHMARK_FORMAT: &str = "mrl-fewshot-benchmark";

/// The default adaptation steps K.
pub const DEFAULT_KS: [usize; 5] = [0, 1, 10, 100, 500];

/// An initialisation under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Meta-learned (Reptile or first-order MAML), then K inner steps.
    Meta,
    /// [`Method::Meta`] after K steps, then adapted online while it trades the test bars
    /// ([`trade_online`](crate::trade_online), the config's `[meta.online]`).
    MetaOnline,
    /// Freshly initialised, then K inner steps.
    Scratch,
    /// PPO on the pooled training tasks, then K inner steps.
    Pretrain,
    /// [`Method::Pretrain`] after K steps, then adapted online while it trades.
    PretrainOnline,
    /// An RL² policy with zero gradient steps (it adapts by its memory).
    Rl2,
    /// Meta-learned with class embeddings over the tasks of every `[classes]` table
    /// (the config's `[meta]` learner, [`reptile_step_classes`](crate::reptile_step_classes)
    /// or [`fomaml_gradient_classes`](crate::fomaml_gradient_classes)), then K inner steps
    /// through the held-out class's embedding (frozen or adapted, `[meta.inner] embedding`).
    MetaEmbed,
}

impl Method {
    /// Every method, in report order.
    pub const ALL: [Method; 7] = [
        Self::Meta,
        Self::MetaEmbed,
        Self::MetaOnline,
        Self::Pretrain,
        Self::PretrainOnline,
        Self::Scratch,
        Self::Rl2,
    ];

    /// The methods a benchmark runs unless told otherwise (the online rows cost an inner
    /// loop per update and are asked for by name).
    pub const DEFAULT: [Method; 4] = [Self::Meta, Self::Pretrain, Self::Scratch, Self::Rl2];

    /// `meta`, `meta_embed`, `meta_online`, `pretrain`, `pretrain_online`, `scratch` or
    /// `rl2`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Meta => "meta",
            Self::MetaEmbed => "meta_embed",
            Self::MetaOnline => "meta_online",
            Self::Scratch => "scratch",
            Self::Pretrain => "pretrain",
            Self::PretrainOnline => "pretrain_online",
            Self::Rl2 => "rl2",
        }
    }

    /// Whether the method takes gradient steps on the held-out task.
    pub fn adapts(self) -> bool {
        self != Self::Rl2
    }

    /// The initialisation the method starts from (itself, or the offline method an online
    /// one continues).
    pub fn init(self) -> Method {
        match self {
            Self::MetaOnline => Self::Meta,
            Self::PretrainOnline => Self::Pretrain,
            other => other,
        }
    }

    /// Whether the method keeps adapting while it trades.
    pub fn online(self) -> bool {
        self.init() != self
    }
}

impl FromStr for Method {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s.trim())
            .ok_or_else(|| {
                Error::invalid(
                    "methods",
                    s.to_owned(),
                    "unknown method; expected meta, meta_embed, meta_online, pretrain, \
                     pretrain_online, scratch or rl2",
                )
            })
    }
}

/// Settings of the benchmark (beside the meta-training config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchmarkConfig {
    /// Seeds: each trains its own meta, pretrain and RL² policies and draws its own
    /// scratch initialisation and adaptation streams.
    pub seeds: Vec<u64>,
    /// Adaptation steps K to report (default [`DEFAULT_KS`]); sorted ascending on validation.
    pub ks: Vec<usize>,
    /// The initialisations (default [`Method::DEFAULT`]).
    pub methods: Vec<Method>,
    /// Held-out synthetic markets (default 8; real assets: the config's held-out list).
    pub tasks: usize,
    /// Bars of the adaptation window N, from the start of each held-out series (default
    /// [`DEFAULT_ADAPTATION_BARS`]).
    pub adaptation_bars: usize,
    /// Bars after the window of a generated held-out market (default 1000).
    pub eval_bars: usize,
    /// Seed of the held-out synthetic markets, drawn from the test split (default 2024).
    pub market_seed: u64,
    /// Share of the best method's final Sharpe that [`steps_to_reach`](crate::steps_to_reach) asks for (default 0.9).
    pub target_fraction: f64,
    /// The walk-forward settings of the evaluation (validation sets its `test_start` to the
    /// first bar after the adaptation window and its actions to greedy).
    pub walk_forward: WalkForwardConfig,
    /// Held-out assets of another asset class (domain generalisation; a config's
    /// `[transfer]` table) instead of the training kind's own held-out tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<TransferConfig>,
}

impl Default for BenchmarkConfig {
    fn default() -> Self {
        Self {
            seeds: vec![1, 2, 3],
            ks: DEFAULT_KS.to_vec(),
            methods: Method::DEFAULT.to_vec(),
            tasks: 8,
            adaptation_bars: DEFAULT_ADAPTATION_BARS,
            eval_bars: 1000,
            market_seed: 2024,
            target_fraction: 0.9,
            walk_forward: WalkForwardConfig::default(),
            transfer: None,
        }
    }
}

impl BenchmarkConfig {
    /// Checks every field and sorts `ks` and `methods`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field and value.
    pub fn validate(&mut self) -> Result<()> {
        let list = |v: &[u64]| format!("{v:?}");
        if self.seeds.is_empty() {
            return Err(Error::invalid(
                "seeds",
                "[]".into(),
                "give at least one seed",
            ));
        }
        let mut seeds = self.seeds.clone();
        seeds.sort_unstable();
        seeds.dedup();
        if seeds.len() != self.seeds.len() {
            return Err(Error::invalid(
                "seeds",
                list(&self.seeds),
                "seeds must be distinct",
            ));
        }
        if self.ks.is_empty() {
            return Err(Error::invalid(
                "ks",
                "[]".into(),
                "give at least one number of adaptation steps",
            ));
        }
        self.ks.sort_unstable();
        self.ks.dedup();
        if self.methods.is_empty() {
            return Err(Error::invalid(
                "methods",
                "[]".into(),
                "give at least one method",
            ));
        }
        self.methods
            .sort_by_key(|m| Method::ALL.iter().position(|a| a == m));
        self.methods.dedup();
        if self.tasks == 0 {
            return Err(Error::invalid("tasks", "0".into(), "must be at least 1"));
        }
        if self.adaptation_bars == 0 {
            return Err(Error::invalid(
                "adaptation_bars",
                "0".into(),
                "must be at least 1",
            ));
        }
        if self.eval_bars < self.walk_forward.window_len {
            return Err(Error::invalid(
                "eval_bars",
                self.eval_bars.to_string(),
                "must hold at least one evaluation window (walk_forward.window_len bars)",
            ));
        }
        if !(self.target_fraction > 0.0 && self.target_fraction <= 1.0) {
            return Err(Error::invalid(
                "target_fraction",
                self.target_fraction.to_string(),
                "must be in (0, 1]",
            ));
        }
        self.walk_forward.test_start = TestStart::Index(self.adaptation_bars);
        self.walk_forward.mode = mrl_backtest::ActionMode::Greedy;
        self.walk_forward.validate()?;
        Ok(())
    }

    /// Bars a held-out series needs: the window, the adaptation episodes before the first
    /// evaluation window (those lie in the window when it is long enough), one window and
    /// the next close.
    fn bars_needed(&self) -> usize {
        self.adaptation_bars + self.walk_forward.window_len + 1
    }
}

/// One held-out market: its bars with raw features and, when synthetic, its oracle.
#[derive(Debug, Clone)]
pub struct HeldOutTask {
    /// Its name in the report (`ar1-0`, `LINKUSDT`, …).
    pub name: String,
    /// Bars and raw features of the whole series.
    pub market: Arc<MarketData>,
    /// The oracle of a synthetic market whose law is known.
    pub oracle: Option<MarketOracle>,
}

impl HeldOutTask {
    /// The adaptation task: the first `bars` bars only ([`FixedTask::first_bars`]).
    ///
    /// # Errors
    /// As [`FixedTask::first_bars`].
    pub fn adaptation_task(
        &self,
        bars: usize,
        trading: mrl_env::TradingConfig,
    ) -> Result<FixedTask<mrl_env::TradingEnv>> {
        FixedTask::first_bars(self.market.series(), bars, trading)
    }
}

/// The held-out tasks of a run: the assets of [`BenchmarkConfig::transfer`] when set (another
/// asset class, whatever the training kind), else generated test-split markets for the
/// synthetic kinds and the split's held-out assets for `multi-asset` (read as training reads
/// them).
///
/// # Errors
/// [`Error::InvalidConfig`] for other kinds or a multi-asset config without held-out
/// assets, a transfer table naming a training asset ([`TransferConfig::validate`]), [`Error::HeldOutTooShort`] naming a series shorter than the window plus one
/// evaluation window, data and env errors.
pub fn held_out_tasks(train: &TrainConfig, bench: &BenchmarkConfig) -> Result<Vec<HeldOutTask>> {
    let trading = &train.task.trading;
    let synthetic = |source: ProcessSource, family: &str| -> Result<Vec<HeldOutTask>> {
        let tasks = SyntheticTasks::new(
            source,
            bench.adaptation_bars + bench.eval_bars,
            trading.clone(),
        )?;
        let mut rng = ChaCha8Rng::seed_from_u64(bench.market_seed);
        (0..bench.tasks)
            .map(|i| {
                let env = tasks.task(SyntheticTasks::split_seed(Split::Test, &mut rng))?;
                Ok(HeldOutTask {
                    name: format!("{family}-{i}"),
                    oracle: MarketOracle::for_task(&env),
                    market: Arc::clone(env.trading().market()),
                })
            })
            .collect()
    };
    let tasks = match (&bench.transfer, &train.task.kind) {
        (Some(transfer), _) => {
            transfer.validate(train)?;
            transfer.held_out()?
        }
        (None, TaskKind::SyntheticAr1 { family, .. }) => {
            synthetic(ProcessSource::Ar1(family.clone()), "ar1")?
        }
        (None, TaskKind::Synthetic { randomization, .. }) => synthetic(
            ProcessSource::Randomized(randomization.clone()),
            "synthetic",
        )?,
        (
            None,
            TaskKind::MultiAsset {
                data_dir,
                interval,
                split,
                ..
            },
        ) => {
            if split.held_out.is_empty() {
                return Err(Error::invalid(
                    "task.split.held_out",
                    "[]".into(),
                    "the benchmark adapts to held-out assets; name them in the config",
                ));
            }
            split
                .held_out
                .iter()
                .map(|asset| read_asset(&mrl_ppo::asset_path(data_dir, interval, asset), asset))
                .collect::<Result<Vec<_>>>()?
        }
        (None, other) => {
            return Err(Error::invalid(
                "task.kind",
                other.name().to_owned(),
                "without a [transfer] table the benchmark supports synthetic-ar1, synthetic \
                 and multi-asset",
            ));
        }
    };
    for task in &tasks {
        if task.market.len() < bench.bars_needed() {
            return Err(Error::HeldOutTooShort {
                what: task.name.clone(),
                available: task.market.len(),
                needed: bench.bars_needed(),
                adaptation_bars: bench.adaptation_bars,
                window_len: bench.walk_forward.window_len,
            });
        }
    }
    Ok(tasks)
}

/// Greedy walk-forward metrics of `policy` on `task` from bar `first_test_bar` on (the
/// engine of mrl-backtest: every evaluation window a fresh trial).
///
/// # Errors
/// Backtest errors (a policy that does not fit, a test period without a window).
pub fn evaluate_policy(
    policy: &Policy,
    task: &HeldOutTask,
    walk_forward: &WalkForwardConfig,
) -> Result<Metrics> {
    let market = &task.market;
    let windows = plan_windows(market.timestamps(), walk_forward)?;
    let run = run_policy(market, &windows, policy, walk_forward, None)?;
    Ok(book_metrics(market, &windows, &run, walk_forward.cost_rate))
}

/// A policy given instead of trained in the run (a checkpoint the caller loaded).
#[derive(Debug)]
pub struct GivenPolicy {
    /// The policy.
    pub policy: Policy,
    /// The return scale it was trained with ([`return_scale_of`]).
    pub return_scale: f64,
    /// Where it came from, for the report.
    pub source: String,
}

/// What progress the benchmark reports.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum BenchmarkProgress<'a> {
    /// A training started (`what`: `meta`, `pretrain` or `rl2`), `total` iterations.
    TrainStart {
        /// The seed.
        seed: u64,
        /// The policy being trained.
        what: &'a str,
        /// Its iterations.
        total: u64,
    },
    /// A training iteration finished (0-based).
    Iteration {
        /// The seed.
        seed: u64,
        /// The iteration.
        iteration: u64,
    },
    /// A held-out task is done for a seed.
    Task {
        /// The seed.
        seed: u64,
        /// The task's name.
        name: &'a str,
        /// Tasks done for the seed.
        done: usize,
        /// Tasks per seed.
        total: usize,
    },
}

/// Metrics of one (method, K) over seeds × tasks: `values[seed][task]`, `None` where
/// undefined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Adaptation steps (0 for methods without gradient steps).
    pub k: usize,
    /// Annualised Sharpe (0 for a flat book).
    pub sharpe: Vec<Vec<Option<f64>>>,
    /// Total return as a fraction.
    pub total_return: Vec<Vec<Option<f64>>>,
    /// Maximum drawdown as a fraction (≤ 0).
    pub max_drawdown: Vec<Vec<Option<f64>>>,
}

impl Cell {
    /// An empty cell of `seeds × tasks`.
    pub fn new(k: usize, seeds: usize, tasks: usize) -> Self {
        Self {
            k,
            sharpe: vec![vec![None; tasks]; seeds],
            total_return: vec![vec![None; tasks]; seeds],
            max_drawdown: vec![vec![None; tasks]; seeds],
        }
    }

    /// Sets entry `[seed][task]` from `m` (non-finite values as `None`). A book without
    /// volatility (a policy that stayed flat) counts as Sharpe 0, not undefined: it earned
    /// nothing, and leaving it out would pool a method over the tasks where it traded only.
    pub fn set(&mut self, seed: usize, task: usize, m: &Metrics) {
        let finite = |x: f64| x.is_finite().then_some(x);
        let flat = m.volatility == 0.0 && m.total_return == 0.0;
        self.sharpe[seed][task] = m.sharpe.filter(|x| x.is_finite()).or(flat.then_some(0.0));
        self.total_return[seed][task] = finite(m.total_return);
        self.max_drawdown[seed][task] = finite(m.max_drawdown);
    }
}

/// What kind of row a [`MethodRaw`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowKind {
    /// An initialisation adapted with K gradient steps.
    Adapted,
    /// An agent without gradient steps (RL²).
    ZeroStep,
    /// A fixed baseline or the oracle.
    Baseline,
}

/// The raw table of one method or baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodRaw {
    /// `meta`, `pretrain`, `scratch`, `rl2`, `buy_and_hold`, `ts_momentum`, `oracle`, …
    pub name: String,
    /// Its kind.
    pub kind: RowKind,
    /// One cell per K (a single `K = 0` cell without gradient steps).
    pub cells: Vec<Cell>,
}

/// Settings and budgets of a run, for the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchmarkSettings {
    /// The benchmark settings.
    pub benchmark: BenchmarkConfig,
    /// The meta-learner.
    pub algorithm: MetaAlgorithm,
    /// Policy kind of meta, pretrain and scratch.
    pub agent: PolicyKind,
    /// Hidden width.
    pub hidden: usize,
    /// The inner loop every gradient method adapts with (`steps` = max K).
    pub inner: crate::InnerConfig,
    /// Env-steps of one inner step (its rollout): `inner.n_envs ×` trial length.
    pub env_steps_per_inner_step: u64,
    /// Meta-iterations per seed (0 when the base was given).
    pub meta_iterations: u64,
    /// Env-steps of the config's meta-training per seed, the budget pretrain matches (not
    /// spent in the run when the meta base was given: see `meta_iterations`).
    pub meta_env_steps: u64,
    /// PPO iterations of pretrain (and a trained RL²) per seed: the env-steps of the
    /// config's `[meta]` training, also when the meta base was given.
    pub pretrain_iterations: u64,
    /// Where the meta base came from.
    pub meta_source: String,
    /// Where the RL² policy came from.
    pub rl2_source: String,
    /// What the held-out tasks are.
    pub held_out: String,
    /// The online adaptation of the `*_online` rows, when any ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<OnlineConfig>,
    /// What the guard did with the online rows' updates, per row, over every seed, task
    /// and K.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub online_updates: Vec<OnlineTally>,
    /// The asset classes of the `meta_embed` row, when it ran: each class's features, the
    /// held-out tasks' class and whether its embedding trained at adaptation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<String>,
}

/// How many of an online row's scheduled updates the guard kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnlineTally {
    /// The row (`meta_online`, `pretrain_online`).
    pub method: String,
    /// Updates kept.
    pub accepted: usize,
    /// Updates rolled back because the validation return degraded.
    pub degraded: usize,
    /// Updates rolled back because the inner loop went non-finite.
    pub non_finite: usize,
}

/// The raw results of [`run_benchmark`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchmarkRaw {
    /// Settings and budgets.
    pub settings: BenchmarkSettings,
    /// Held-out task names, the columns of every cell.
    pub tasks: Vec<String>,
    /// Methods first, then baselines.
    pub rows: Vec<MethodRaw>,
}

/// Env-steps of meta-training: every inner rollout (and FOMAML's query rollout) of every
/// task of every iteration.
fn meta_env_steps(config: &MetaTrainConfig, iterations: u64, trial_len: usize) -> u64 {
    let inner = &config.meta.inner;
    let rollouts = inner.steps.div_ceil(inner.steps_per_rollout)
        + usize::from(config.meta.algorithm == MetaAlgorithm::Fomaml);
    iterations * (config.meta.meta_batch * rollouts * inner.n_envs * trial_len) as u64
}

/// Trains `train` with PPO on `dist` into `dir` and loads the result.
fn train_pooled<D: TaskDistribution>(
    train: &TrainConfig,
    dist: Arc<D>,
    dir: &Path,
    what: &str,
    progress: &mut impl FnMut(BenchmarkProgress<'_>),
) -> Result<GivenPolicy> {
    let seed = train.seed;
    progress(BenchmarkProgress::TrainStart {
        seed,
        what,
        total: train.iterations,
    });
    mrl_ppo::train_on(train, dist, dir, false, |stats| {
        progress(BenchmarkProgress::Iteration {
            seed,
            iteration: stats.iteration,
        });
    })?;
    let checkpoint = dir.join(CHECKPOINT_DIR);
    Ok(GivenPolicy {
        policy: mrl_ppo::load_policy(&checkpoint, &Device::Cpu)?,
        return_scale: return_scale_of(&checkpoint, train)?,
        source: format!("{what}: PPO, {} iterations", train.iterations),
    })
}

/// The class of the held-out tasks for the `meta_embed` row: `[transfer].class` with a
/// transfer table, else the one class that trains on `[task]` (no `task` of its own), whose
/// held-out split the benchmark adapts to. No class may train on a held-out asset's file.
///
/// # Errors
/// [`Error::InvalidConfig`] naming `classes` when the config has no `[classes]`, the
/// transfer class is not one of them, not exactly one class trains on `[task]`, or a
/// class's task reads a held-out asset.
pub fn held_out_class(config: &MetaTrainConfig, bench: &BenchmarkConfig) -> Result<String> {
    let held_out: Vec<std::path::PathBuf> = match (&bench.transfer, &config.train.task.kind) {
        (Some(t), _) => t.assets.iter().map(|a| t.path(a)).collect(),
        (
            None,
            TaskKind::MultiAsset {
                data_dir,
                interval,
                split,
                ..
            },
        ) => split
            .held_out
            .iter()
            .map(|a| mrl_ppo::asset_path(data_dir, interval, a))
            .collect(),
        _ => Vec::new(),
    };
    for (name, class) in &config.classes {
        let Some(kind) = &class.task else { continue };
        let class_train = TrainConfig {
            task: mrl_ppo::TaskSection {
                kind: kind.clone(),
                ..config.train.task.clone()
            },
            ..config.train.clone()
        };
        if let Some(file) = training_files(&class_train)
            .into_iter()
            .find(|f| held_out.contains(f))
        {
            return Err(Error::invalid(
                "classes",
                format!("{name}: {}", file.display()),
                "this class trains on a held-out asset's file; held-out assets must be unseen",
            ));
        }
    }
    let names = || {
        config
            .classes
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    };
    if config.classes.is_empty() {
        return Err(Error::invalid(
            "classes",
            "none".into(),
            "the meta_embed row needs [classes.NAME] tables in the config",
        ));
    }
    if let Some(t) = &bench.transfer {
        return if config.classes.contains_key(&t.class) {
            Ok(t.class.clone())
        } else {
            Err(Error::invalid(
                "classes",
                names(),
                "the [transfer] class has no [classes] table naming its features",
            ))
        };
    }
    let on_task: Vec<&String> = config
        .classes
        .iter()
        .filter(|(_, c)| c.task.is_none())
        .map(|(n, _)| n)
        .collect();
    match on_task.as_slice() {
        [one] => Ok((*one).clone()),
        _ => Err(Error::invalid(
            "classes",
            names(),
            "the held-out tasks come from [task]: exactly one class must train on it (no \
             task of its own), or name the class in [transfer]",
        )),
    }
}

/// Runs `learner` for `iterations`, reporting progress as `what`, and writes its checkpoint
/// and log into `dir`.
fn train_meta<D>(
    learner: &mut MetaLearner<D>,
    iterations: u64,
    seed: u64,
    what: &str,
    dir: &Path,
    progress: &mut impl FnMut(BenchmarkProgress<'_>),
) -> Result<()>
where
    D: TaskDistribution,
    D::Env: Clone + Sync,
{
    progress(BenchmarkProgress::TrainStart {
        seed,
        what,
        total: iterations,
    });
    let mut log = String::new();
    for iteration in 0..iterations {
        let stats = learner.step()?;
        log.push_str(&serde_json::to_string(&stats).unwrap_or_default());
        log.push('\n');
        progress(BenchmarkProgress::Iteration { seed, iteration });
    }
    learner.save_checkpoint(dir)?;
    mrl_agent::write_atomic(&dir.join(crate::META_LOG_FILE), log.as_bytes())?;
    Ok(())
}

/// Runs the benchmark: per seed, trains what was not given (into `out_dir/seed-<s>/`: `meta/`
/// with its checkpoint and [`META_LOG_FILE`](crate::META_LOG_FILE), `pretrain/`, `rl2/`), then
/// adapts and evaluates every method on every held-out task, and the baselines once.
///
/// `config` is the meta-training config (its train part fixes the network, PPO loss, GAE,
/// trading env and normalisation of every method); `dist` its training tasks; `meta` and
/// `rl2` replace the trained ones when given (the same for every seed).
///
/// # Errors
/// [`Error::InvalidConfig`], training, adaptation and backtest errors.
#[allow(clippy::too_many_arguments)]
pub fn run_benchmark<D>(
    config: &MetaTrainConfig,
    bench: &BenchmarkConfig,
    dist: Arc<D>,
    held_out: &[HeldOutTask],
    meta: Option<&GivenPolicy>,
    rl2: Option<&GivenPolicy>,
    out_dir: &Path,
    mut progress: impl FnMut(BenchmarkProgress<'_>),
) -> Result<BenchmarkRaw>
where
    D: TaskDistribution,
    D::Env: Clone + Sync + Env,
{
    let mut bench = bench.clone();
    bench.validate()?;
    config.meta.validate()?;
    if held_out.is_empty() {
        return Err(Error::invalid("tasks", "0".into(), "no held-out task"));
    }
    let train = &config.train;
    let trial_len = train.task.episodes_per_trial * dist.max_episode_steps();
    let meta_iterations = if meta.is_some() {
        0
    } else {
        config.meta.iterations
    };
    let meta_steps = meta_env_steps(config, config.meta.iterations, trial_len);
    let pretrain_iterations = meta_steps
        .div_ceil((train.n_envs * trial_len) as u64)
        .max(1);
    let max_k = bench.ks.iter().copied().max().unwrap_or(0);
    let inner = crate::InnerConfig {
        steps: max_k,
        ..config.meta.inner.clone()
    };
    let wants = |m: Method| bench.methods.contains(&m);
    let rl2_is_pretrain = rl2.is_none() && train.agent.kind == PolicyKind::Rl2;
    let (n_seeds, n_tasks) = (bench.seeds.len(), held_out.len());
    // The initialisations to adapt: every adapting method's, once (an online method
    // continues its offline method's snapshots).
    let mut adapted_methods: Vec<Method> = Vec::new();
    for m in bench.methods.iter().filter(|m| m.adapts()) {
        if !adapted_methods.contains(&m.init()) {
            adapted_methods.push(m.init());
        }
    }
    let wants_online = bench.methods.iter().any(|m| m.online());
    let online_setup = |return_scale: f64| OnlineSetup {
        online: config.meta.online.clone(),
        inner: config.meta.inner.clone(),
        setup: AdaptSetup::from_train(train, return_scale),
        trading: train.task.trading.clone(),
    };
    let mut cells: BTreeMap<Method, Vec<Cell>> = BTreeMap::new();
    for &m in &bench.methods {
        let ks: &[usize] = if m.adapts() { &bench.ks } else { &[0] };
        cells.insert(
            m,
            ks.iter().map(|&k| Cell::new(k, n_seeds, n_tasks)).collect(),
        );
    }
    let mut baselines: BTreeMap<String, Cell> = BTreeMap::new();
    let mut tallies: BTreeMap<Method, OnlineTally> = BTreeMap::new();
    let mut meta_source = String::new();
    let mut rl2_source = String::new();
    // The meta_embed row: the held-out class, each class's tasks, the [task] distribution.
    let embed = if wants(Method::MetaEmbed) {
        let class = held_out_class(config, &bench)?;
        let task_dist = Arc::new(mrl_ppo::trading_tasks(
            &train.task.kind,
            &train.task.trading,
        )?);
        Some((class, class_tasks(config)?, task_dist))
    } else {
        None
    };
    let classes_text = embed.as_ref().map(|(class, _, _)| {
        let list: Vec<String> = config
            .classes
            .iter()
            .map(|(n, c)| format!("{n} ({} features)", c.features.len()))
            .collect();
        format!(
            "classes {}; held-out tasks of class {class}, its embedding {} at adaptation",
            list.join(", "),
            if inner.embedding.is_frozen() {
                "frozen"
            } else {
                "adapted"
            }
        )
    });

    for (si, &seed) in bench.seeds.iter().enumerate() {
        let seed_dir = out_dir.join(format!("seed-{seed}"));
        let train_s = TrainConfig {
            seed,
            ..train.clone()
        };
        let mut master = ChaCha8Rng::seed_from_u64(seed);
        let scratch_seed = master.next_u64();
        let task_seeds: Vec<u64> = (0..n_tasks).map(|_| master.next_u64()).collect();
        let online_seeds: Vec<u64> = (0..n_tasks).map(|_| master.next_u64()).collect();

        // The meta-learned base (also the template of scratch and the baselines' runner).
        let trained_meta;
        let meta_base: &GivenPolicy = match meta {
            Some(given) => {
                meta_source = given.source.clone();
                given
            }
            None => {
                let mut learner = MetaLearner::new(
                    MetaTrainConfig {
                        train: train_s.clone(),
                        meta: config.meta.clone(),
                        transfer: None,
                        classes: BTreeMap::new(),
                    },
                    dist.clone(),
                )?;
                let (iterations, meta_dir) = (config.meta.iterations, seed_dir.join("meta"));
                train_meta(
                    &mut learner,
                    iterations,
                    seed,
                    "meta",
                    &meta_dir,
                    &mut progress,
                )?;
                meta_source = format!(
                    "{}: {} iterations × {} tasks",
                    config.meta.algorithm.as_str(),
                    config.meta.iterations,
                    config.meta.meta_batch
                );
                trained_meta = GivenPolicy {
                    policy: crate::detached_copy(learner.policy())?,
                    return_scale: learner.setup().return_scale,
                    source: meta_source.clone(),
                };
                &trained_meta
            }
        };
        // The base and the held-out class's embedding meta-learned over every class.
        let meta_embed: Option<(GivenPolicy, ClassEmbedding)> = match &embed {
            None => None,
            Some((class, class_dists, task_dist)) => {
                let mut learner = MetaLearner::new_with_classes(
                    MetaTrainConfig {
                        train: train_s.clone(),
                        meta: config.meta.clone(),
                        transfer: None,
                        classes: config.classes.clone(),
                    },
                    task_dist.clone(),
                    class_dists.clone(),
                )?;
                let (iterations, dir) = (config.meta.iterations, seed_dir.join("meta_embed"));
                train_meta(
                    &mut learner,
                    iterations,
                    seed,
                    "meta_embed",
                    &dir,
                    &mut progress,
                )?;
                let embedding = learner.embeddings().get(class).ok_or_else(|| {
                    Error::invalid("classes", class.clone(), "no embedding was meta-learned")
                })?;
                Some((
                    GivenPolicy {
                        policy: crate::detached_copy(learner.policy())?,
                        return_scale: learner.setup().return_scale,
                        source: format!(
                            "{} with class embeddings: {iterations} iterations × {} tasks",
                            config.meta.algorithm.as_str(),
                            config.meta.meta_batch
                        ),
                    },
                    embedding.detached()?,
                ))
            }
        };
        let pooled_config = TrainConfig {
            iterations: pretrain_iterations,
            checkpoint_every: pretrain_iterations,
            ..train_s.clone()
        };
        let pretrain = if wants(Method::Pretrain)
            || wants(Method::PretrainOnline)
            || (wants(Method::Rl2) && rl2_is_pretrain)
        {
            Some(train_pooled(
                &pooled_config,
                dist.clone(),
                &seed_dir.join("pretrain"),
                "pretrain",
                &mut progress,
            )?)
        } else {
            None
        };
        let trained_rl2;
        let rl2_policy: Option<&GivenPolicy> = match (wants(Method::Rl2), rl2) {
            (false, _) => None,
            (true, Some(given)) => {
                rl2_source = given.source.clone();
                Some(given)
            }
            (true, None) if rl2_is_pretrain => {
                rl2_source = format!(
                    "the pretrain policy (an RL² GRU, PPO {pretrain_iterations} iterations on \
                     the pooled training tasks) at K = 0"
                );
                pretrain.as_ref()
            }
            (true, None) => {
                let rl2_config = TrainConfig {
                    agent: mrl_ppo::AgentSection {
                        kind: PolicyKind::Rl2,
                        ..pooled_config.agent.clone()
                    },
                    ..pooled_config.clone()
                };
                trained_rl2 = train_pooled(
                    &rl2_config,
                    dist.clone(),
                    &seed_dir.join("rl2"),
                    "rl2",
                    &mut progress,
                )?;
                rl2_source = trained_rl2.source.clone();
                Some(&trained_rl2)
            }
        };
        let scratch = if wants(Method::Scratch) {
            let mut policy = Policy::new(meta_base.policy.config(), &Device::Cpu, scratch_seed)?;
            policy.set_input_norm(meta_base.policy.config().input_norm.clone())?;
            Some(GivenPolicy {
                policy,
                return_scale: meta_base.return_scale,
                source: "fresh initialisation".into(),
            })
        } else {
            None
        };
        let init_of = |m: Method| -> Option<&GivenPolicy> {
            match m {
                Method::Meta | Method::MetaOnline => Some(meta_base),
                Method::Pretrain | Method::PretrainOnline => pretrain.as_ref(),
                Method::Scratch => scratch.as_ref(),
                Method::Rl2 => rl2_policy,
                Method::MetaEmbed => meta_embed.as_ref().map(|(p, _)| p),
            }
        };

        for (ti, task) in held_out.iter().enumerate() {
            let wf = &bench.walk_forward;
            let window =
                Arc::new(task.adaptation_task(bench.adaptation_bars, train.task.trading.clone())?);
            for &m in &adapted_methods {
                let Some(init) = init_of(m) else { continue };
                let setup = AdaptSetup::from_train(train, init.return_scale);
                let embedding = match (m, &meta_embed) {
                    (Method::MetaEmbed, Some((_, embedding))) => Some(embedding),
                    _ => None,
                };
                let snapshots = adapt_class_snapshots(
                    &init.policy,
                    embedding,
                    window.clone(),
                    &inner,
                    &setup,
                    task_seeds[ti],
                    &bench.ks,
                )?;
                if wants(m) {
                    let row = cells.entry(m).or_default();
                    for (cell, policy) in row.iter_mut().zip(&snapshots) {
                        cell.set(si, ti, &evaluate_policy(policy, task, wf)?);
                    }
                }
                let online = match m {
                    Method::Meta => Method::MetaOnline,
                    Method::Pretrain => Method::PretrainOnline,
                    _ => continue,
                };
                if wants(online) {
                    let setup = online_setup(init.return_scale);
                    let row = cells.entry(online).or_default();
                    let tally = tallies.entry(online).or_insert_with(|| OnlineTally {
                        method: online.as_str().to_owned(),
                        accepted: 0,
                        degraded: 0,
                        non_finite: 0,
                    });
                    for (cell, policy) in row.iter_mut().zip(&snapshots) {
                        let run = trade_online(policy, &task.market, wf, &setup, online_seeds[ti])?;
                        cell.set(si, ti, &run.metrics(&task.market, wf.cost_rate));
                        for u in &run.updates {
                            match u.outcome {
                                UpdateOutcome::Accepted => tally.accepted += 1,
                                UpdateOutcome::Degraded => tally.degraded += 1,
                                UpdateOutcome::NonFinite => tally.non_finite += 1,
                            }
                        }
                    }
                }
            }
            if let Some(given) = rl2_policy {
                let metrics = evaluate_policy(&given.policy, task, wf)?;
                for cell in cells.entry(Method::Rl2).or_default() {
                    cell.set(si, ti, &metrics);
                }
            }
            // The baselines do not depend on the seed: computed once, copied to every seed.
            if si == 0 {
                let wf_baselines = WalkForwardConfig {
                    bootstrap: mrl_backtest::BootstrapConfig {
                        resamples: 1,
                        ..wf.bootstrap
                    },
                    ..wf.clone()
                };
                let policies = Policies {
                    oracle: task.oracle.clone(),
                    ..Policies::new(&meta_base.policy)
                };
                let bt = backtest_market(&task.market, &policies, &wf_baselines)?;
                for (name, report) in &bt.report.policies {
                    if name == "rl2" {
                        continue;
                    }
                    let cell = baselines
                        .entry(name.clone())
                        .or_insert_with(|| Cell::new(0, n_seeds, n_tasks));
                    for s in 0..n_seeds {
                        cell.set(s, ti, &report.metrics);
                    }
                }
            }
            progress(BenchmarkProgress::Task {
                seed,
                name: &task.name,
                done: ti + 1,
                total: n_tasks,
            });
        }
    }

    let mut rows: Vec<MethodRaw> = cells
        .into_iter()
        .map(|(m, cells)| MethodRaw {
            name: m.as_str().to_owned(),
            kind: if m.adapts() {
                RowKind::Adapted
            } else {
                RowKind::ZeroStep
            },
            cells,
        })
        .collect();
    rows.sort_by_key(|r| Method::ALL.iter().position(|m| m.as_str() == r.name));
    let order = mrl_backtest::POLICY_ORDER;
    let mut baseline_rows: Vec<MethodRaw> = baselines
        .into_iter()
        .map(|(name, cell)| MethodRaw {
            name,
            kind: RowKind::Baseline,
            cells: vec![cell],
        })
        .collect();
    baseline_rows.sort_by_key(|r| {
        order
            .iter()
            .position(|o| *o == r.name)
            .unwrap_or(order.len())
    });
    rows.extend(baseline_rows);
    let held_out_text = match (&bench.transfer, &train.task.kind) {
        (Some(t), _) => format!(
            "{} held-out {} assets ({}, another class than the {} training tasks): adaptation \
             on the first {} bars, walk-forward on the bars after them",
            held_out.len(),
            t.class,
            t.interval,
            train.task.kind.name(),
            bench.adaptation_bars
        ),
        (None, TaskKind::MultiAsset { .. }) => format!(
            "{} held-out assets: adaptation on the first {} bars, walk-forward on the bars after them",
            held_out.len(),
            bench.adaptation_bars
        ),
        _ => format!(
            "{} generated test-split markets of {} bars (market seed {}): adaptation on the first \
             {} bars, walk-forward on the {} bars after them",
            held_out.len(),
            bench.adaptation_bars + bench.eval_bars,
            bench.market_seed,
            bench.adaptation_bars,
            bench.eval_bars
        ),
    };
    Ok(BenchmarkRaw {
        settings: BenchmarkSettings {
            benchmark: bench.clone(),
            algorithm: config.meta.algorithm,
            agent: train.agent.kind,
            hidden: train.agent.hidden,
            inner: inner.clone(),
            env_steps_per_inner_step: (inner.n_envs * trial_len) as u64,
            meta_iterations,
            meta_env_steps: meta_steps,
            pretrain_iterations,
            meta_source,
            rl2_source,
            held_out: held_out_text,
            online: wants_online.then(|| config.meta.online.clone()),
            online_updates: tallies.into_values().collect(),
            classes: classes_text,
        },
        tasks: held_out.iter().map(|t| t.name.clone()).collect(),
        rows,
    })
}
