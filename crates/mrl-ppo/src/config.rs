//! [`TrainConfig`]: everything a meta-training run needs, as nested serde TOML with
//! documented defaults (the design document's PPO settings).
//!
//! ```toml
//! seed = 1
//! iterations = 300
//! n_envs = 64
//! checkpoint_every = 50
//!
//! [agent]
//! kind = "rl2"
//! hidden = 128
//!
//! [ppo]
//! epochs = 4
//! minibatch_trials = 16
//!
//! [task]
//! kind = "bandits"
//! arms = 5
//! pulls = 10
//! ```

use std::path::{Path, PathBuf};

use mrl_agent::{PolicyKind, TaskInferenceConfig, TransformerConfig};
use mrl_data::{DomainRandomization, Interval};
use mrl_env::{Ar1Family, AssetSplit, RegimeConfig, TradingConfig, TrialConfig};
use serde::{Deserialize, Serialize};

use crate::gae::GaeConfig;
use crate::normalize::NormalizeConfig;
use crate::optim::AdamConfig;
use crate::update::PpoConfig;
use crate::{Error, Result};

/// The network to train; its input and action sizes come from the task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentSection {
    /// RL² GRU (default), the memory-less MLP baseline, the causal Transformer, or the
    /// task-inference agent (`"task_inference"`).
    pub kind: PolicyKind,
    /// Hidden width (default 128); the model width of the Transformer.
    pub hidden: usize,
    /// Transformer sizes (`[agent.transformer]`: layers, heads, ff_mult, context), read
    /// when `kind = "transformer"`.
    #[serde(skip_serializing_if = "TransformerConfig::is_default")]
    pub transformer: TransformerConfig,
    /// Task-inference settings (`[agent.task_inference]`: belief, latent, target,
    /// body_layers), read when
    /// `kind = "task_inference"`; the weight of its auxiliary loss is `ppo.belief_coef`.
    #[serde(skip_serializing_if = "TaskInferenceConfig::is_default")]
    pub task_inference: TaskInferenceConfig,
}

impl Default for AgentSection {
    fn default() -> Self {
        Self {
            kind: PolicyKind::Rl2,
            hidden: 128,
            transformer: TransformerConfig::default(),
            task_inference: TaskInferenceConfig::default(),
        }
    }
}

/// The task distribution meta-training samples from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum TaskKind {
    /// Bernoulli bandits with `arms` arms, `p_i ~ U(0, 1)`, episodes of `pulls` pulls
    /// (Duan et al. 2016, §4.1).
    Bandits {
        /// Number of arms k.
        arms: usize,
        /// Pulls per episode n.
        pulls: usize,
        /// Observe the share of the episode's pulls made, `t/n` (default false: the paper's
        /// input, previous action, reward and done flag only). See
        /// [`BanditEnv::with_time_observation`](mrl_env::BanditEnv::with_time_observation).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        observe_time: bool,
    },
    /// Generated markets whose log returns follow an AR(1) with a hidden coefficient per task
    /// (momentum or mean reversion) that the agent must identify within the trial.
    SyntheticAr1 {
        /// Bars generated per task (default 2000).
        #[serde(default = "default_bars")]
        bars: usize,
        /// Ranges of φ, drift and volatility.
        #[serde(default)]
        family: Ar1Family,
    },
    /// Domain-randomised synthetic markets (GBM, AR(1), Markov regimes, jumps).
    Synthetic {
        /// Bars generated per task (default 2000).
        #[serde(default = "default_bars")]
        bars: usize,
        /// Ranges of the processes' parameters.
        #[serde(default)]
        randomization: DomainRandomization,
    },
    /// Real assets, one task per asset; held-out assets (and/or a later period) for
    /// meta-testing. Files are `<data_dir>/<ASSET>_<interval>.csv`.
    MultiAsset {
        /// Directory of the bar files (default `../shared/data`, relative to the working
        /// directory); the environment variable `MRL_DATA_DIR` overrides it.
        #[serde(default = "default_data_dir")]
        data_dir: PathBuf,
        /// Interval suffix of the file names (default `1h`).
        #[serde(default = "default_interval")]
        interval: String,
        /// Symbols to load (training and held-out).
        assets: Vec<String>,
        /// Which assets / period are held out.
        #[serde(default)]
        split: AssetSplit,
    },
    /// Real assets cut into regime windows (bull, bear, high volatility, sideways), one task
    /// per window, labelled by thresholds fitted on the train windows only
    /// ([`MarketTasks::regime_windows`](mrl_env::MarketTasks::regime_windows)). Every asset is
    /// cut at `test_start`: train windows lie before it, test windows after. Files as for
    /// `multi-asset`.
    RegimeWindows {
        /// Directory of the bar files (default `../shared/data`); `MRL_DATA_DIR` overrides it.
        #[serde(default = "default_data_dir")]
        data_dir: PathBuf,
        /// Interval suffix of the file names (default `1h`).
        #[serde(default = "default_interval")]
        interval: String,
        /// Symbols to load.
        assets: Vec<String>,
        /// First test timestamp (ms UTC): train bars are strictly before it.
        test_start: i64,
        /// Window length, label quantiles and the labels that become tasks (defaults: 400
        /// bars, 0.75, ⅓, all four labels).
        #[serde(default)]
        regime: RegimeConfig,
    },
    /// One asset at several bar intervals, resampled from its file, one task group per
    /// interval ([`MarketTasks::timeframes`](mrl_env::MarketTasks::timeframes)); cut at
    /// `test_start` before resampling. The file is `<data_dir>/<ASSET>_<interval>.csv`.
    Timeframes {
        /// Directory of the bar files (default `../shared/data`); `MRL_DATA_DIR` overrides it.
        #[serde(default = "default_data_dir")]
        data_dir: PathBuf,
        /// Interval suffix of the file name, the source interval (default `1h`).
        #[serde(default = "default_interval")]
        interval: String,
        /// Symbol to load.
        asset: String,
        /// The intervals traded, e.g. `["1h", "4h", "1d"]` (a count and a unit `m`, `h`, `d`
        /// or `w`), each a multiple of the source interval.
        intervals: Vec<String>,
        /// First test timestamp (ms UTC): train bars are strictly before it.
        test_start: i64,
    },
    /// A weighted mixture of the trading distributions above
    /// ([`MixtureTasks`](mrl_env::MixtureTasks)): every trial draws a component with
    /// probability proportional to its weight, then a task of that component from the
    /// run's split. Bandits and nested mixtures are not components.
    Mixture {
        /// The components (`[[task.components]]`), each with its `weight`, its `kind` and that
        /// kind's fields, and optionally its own `trading` env (default the section's).
        components: Vec<MixtureComponent>,
    },
}

/// One component of a [`TaskKind::Mixture`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MixtureComponent {
    /// Relative weight, finite and > 0 (normalised over the components).
    pub weight: f64,
    /// The distribution; unknown keys are rejected by its variant.
    #[serde(flatten)]
    pub kind: TaskKind,
    /// The trading env of this component (default the task section's). Every component must
    /// have the same number of actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trading: Option<TradingConfig>,
}

fn default_bars() -> usize {
    2000
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("../shared/data")
}

fn default_interval() -> String {
    "1h".into()
}

/// Environment variable that overrides the data directory of multi-asset tasks.
pub const DATA_DIR_ENV: &str = "MRL_DATA_DIR";

/// The data directory to read: `MRL_DATA_DIR` when set, else `configured`.
pub fn resolve_data_dir(configured: &Path) -> PathBuf {
    std::env::var_os(DATA_DIR_ENV).map_or_else(|| configured.to_path_buf(), PathBuf::from)
}

/// The bar file of `asset` at `interval` in a configured data directory:
/// `<resolve_data_dir(data_dir)>/<ASSET>_<interval>.csv`, the naming every real-data task
/// kind reads.
pub fn asset_path(data_dir: &Path, interval: &str, asset: &str) -> PathBuf {
    resolve_data_dir(data_dir).join(format!("{asset}_{interval}.csv"))
}

/// Parses a config's interval, a count and a unit: `15m`, `1h`, `4h`, `1d`, `1w` (the text
/// of [`Interval`]'s `FromStr`).
///
/// # Errors
/// [`Error::InvalidConfig`] naming `task.intervals` for anything else.
pub fn parse_interval(text: &str) -> Result<Interval> {
    text.parse().map_err(|_| Error::InvalidConfig {
        field: "task.intervals",
        value: text.to_owned(),
        reason: "expected a positive count and a unit ms, s, m, h, d or w, e.g. 4h",
    })
}

impl TaskKind {
    /// Checks a trading distribution (every kind but bandits) traded with `trading`, and
    /// `trading` itself.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first bad field (inside a mixture the value names
    /// the component, `[index] …`); [`Error::Env`] for a bad trading field.
    fn validate_trading(&self, trading: &TradingConfig) -> Result<()> {
        let bad = |field, value: String, reason| {
            Err(Error::InvalidConfig {
                field,
                value,
                reason,
            })
        };
        trading.validate()?;
        match self {
            TaskKind::Bandits { .. } => {}
            // Checked here, at load, so that a bad range is reported with the config file
            // rather than when training starts.
            TaskKind::SyntheticAr1 { family, .. } => family.validate()?,
            TaskKind::Synthetic { randomization, .. } => randomization.validate()?,
            TaskKind::MultiAsset { assets, split, .. } => {
                if assets.is_empty() {
                    return bad("task.assets", "[]".into(), "name at least one asset");
                }
                if let Some((i, a)) = assets
                    .iter()
                    .enumerate()
                    .find(|(i, a)| assets[..*i].contains(a))
                {
                    return bad(
                        "task.assets",
                        format!("[{i}] {a}"),
                        "an asset is listed once (a repeat would be read and sampled twice)",
                    );
                }
                if let Some(h) = split.held_out.iter().find(|h| !assets.contains(h)) {
                    return bad(
                        "task.split.held_out",
                        h.clone(),
                        "a held-out asset must be one of task.assets (same spelling and case)",
                    );
                }
            }
            TaskKind::RegimeWindows { assets, regime, .. } => {
                if assets.is_empty() {
                    return bad("task.assets", "[]".into(), "name at least one asset");
                }
                if regime.window < trading.max_steps + 1 {
                    return bad(
                        "task.regime.window",
                        regime.window.to_string(),
                        "a window must hold one episode: at least trading.max_steps + 1 bars",
                    );
                }
            }
            TaskKind::Timeframes { intervals, .. } => {
                if intervals.is_empty() {
                    return bad("task.intervals", "[]".into(), "name at least one interval");
                }
                for interval in intervals {
                    parse_interval(interval)?;
                }
            }
            TaskKind::Mixture { components } => {
                let Some(first) = components.first() else {
                    return bad(
                        "task.components",
                        "[]".into(),
                        "a mixture needs at least one component",
                    );
                };
                let n_actions = first
                    .trading
                    .as_ref()
                    .unwrap_or(trading)
                    .actions
                    .n_actions();
                for (index, component) in components.iter().enumerate() {
                    let own = component.trading.as_ref().unwrap_or(trading);
                    if !(component.weight.is_finite() && component.weight > 0.0) {
                        return bad(
                            "task.components.weight",
                            format!("[{index}] {}", component.weight),
                            "expected a finite weight > 0",
                        );
                    }
                    if matches!(
                        component.kind,
                        TaskKind::Bandits { .. } | TaskKind::Mixture { .. }
                    ) {
                        return bad(
                            "task.components.kind",
                            format!("[{index}] {}", component.kind.name()),
                            "a component is a trading distribution, not bandits or a mixture",
                        );
                    }
                    if own.actions.n_actions() != n_actions {
                        return bad(
                            "task.components.trading.actions",
                            format!("[{index}] {:?}", own.actions),
                            "every component needs the number of actions of component 0",
                        );
                    }
                    component.kind.validate_trading(own)?;
                }
            }
        }
        Ok(())
    }

    /// The kind's name as written in configs (`synthetic-ar1`, `mixture`, …).
    pub fn name(&self) -> &'static str {
        match self {
            TaskKind::Bandits { .. } => "bandits",
            TaskKind::SyntheticAr1 { .. } => "synthetic-ar1",
            TaskKind::Synthetic { .. } => "synthetic",
            TaskKind::MultiAsset { .. } => "multi-asset",
            TaskKind::RegimeWindows { .. } => "regime-windows",
            TaskKind::Timeframes { .. } => "timeframes",
            TaskKind::Mixture { .. } => "mixture",
        }
    }
}

impl Default for TaskKind {
    fn default() -> Self {
        Self::Bandits {
            arms: 5,
            pulls: 10,
            observe_time: false,
        }
    }
}

/// The task section: the distribution, the trial and (for trading tasks) the trading env.
///
/// The distribution's fields sit in the section itself (`kind = "bandits"`, `arms`, …);
/// unknown keys are rejected by the distribution's variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSection {
    /// The distribution.
    #[serde(flatten)]
    pub kind: TaskKind,
    /// Episodes per trial K (default 1 for bandits, where one episode of n pulls is the
    /// paper's trial; 3 for trading).
    #[serde(default = "default_episodes")]
    pub episodes_per_trial: usize,
    /// Factor on the reward fed back into the policy input (default 1).
    #[serde(default = "default_feedback")]
    pub reward_feedback_scale: f64,
    /// The trading env (ignored by bandits), including the training reward:
    /// `[task.trading] reward = { kind = "differential_sharpe", eta = 0.01 }` (see
    /// [`RewardConfig`](mrl_env::RewardConfig); the net return when omitted).
    #[serde(default)]
    pub trading: TradingConfig,
}

fn default_episodes() -> usize {
    1
}

fn default_feedback() -> f64 {
    1.0
}

impl Default for TaskSection {
    fn default() -> Self {
        Self {
            kind: TaskKind::default(),
            episodes_per_trial: default_episodes(),
            reward_feedback_scale: default_feedback(),
            trading: TradingConfig::default(),
        }
    }
}

impl TaskSection {
    /// The trial settings.
    pub fn trial(&self) -> TrialConfig {
        TrialConfig {
            episodes_per_trial: self.episodes_per_trial,
            reward_feedback_scale: self.reward_feedback_scale,
        }
    }
}

/// A whole meta-training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Master seed: weights, tasks, episode starts, action sampling and minibatch order all
    /// derive from it (default 1).
    pub seed: u64,
    /// PPO iterations (rollout + update) (default 200).
    pub iterations: u64,
    /// Parallel trials per rollout B (default 64).
    pub n_envs: usize,
    /// Write a checkpoint every this many iterations, and at the end (default 50).
    pub checkpoint_every: u64,
    /// The network.
    pub agent: AgentSection,
    /// The PPO update.
    pub ppo: PpoConfig,
    /// GAE γ and λ.
    pub gae: GaeConfig,
    /// Adam.
    pub optim: AdamConfig,
    /// The task distribution.
    pub task: TaskSection,
    /// Input and return normalisation (default off; left out of saved configs when off).
    #[serde(skip_serializing_if = "NormalizeConfig::is_off")]
    pub normalize: NormalizeConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            iterations: 200,
            n_envs: 64,
            checkpoint_every: 50,
            agent: AgentSection::default(),
            ppo: PpoConfig::default(),
            gae: GaeConfig::default(),
            optim: AdamConfig::default(),
            task: TaskSection::default(),
            normalize: NormalizeConfig::default(),
        }
    }
}

impl TrainConfig {
    /// Parses a TOML config (`path` names it in errors) and validates it.
    ///
    /// # Errors
    /// [`Error::Toml`] for a syntax error or an unknown field, [`Error::InvalidConfig`].
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Self> {
        let config: Self = toml::from_str(text).map_err(|source| Error::Toml {
            path: path.to_path_buf(),
            source,
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and validates a TOML config file.
    ///
    /// # Errors
    /// [`Error::Io`], then as [`TrainConfig::from_toml_str`].
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
        Self::from_toml_str(&text, path)
    }

    /// The config as TOML.
    pub fn to_toml(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks every section (the trading env's too, for trading tasks).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first bad field; [`Error::Env`] for a bad
    /// `task.trading` field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, value: String, reason| {
            Err(Error::InvalidConfig {
                field,
                value,
                reason,
            })
        };
        if self.iterations == 0 {
            return bad("iterations", "0".into(), "must be at least 1");
        }
        if self.n_envs == 0 {
            return bad("n_envs", "0".into(), "must be at least 1");
        }
        if self.checkpoint_every == 0 {
            return bad("checkpoint_every", "0".into(), "must be at least 1");
        }
        if self.agent.hidden == 0 {
            return bad("agent.hidden", "0".into(), "must be at least 1");
        }
        self.ppo.validate()?;
        self.normalize.validate()?;
        self.gae.validate()?;
        self.optim.validate()?;
        self.task.trial().validate()?;
        match &self.task.kind {
            TaskKind::Bandits { arms, pulls, .. } => {
                if *arms < 2 {
                    return bad("task.arms", arms.to_string(), "must be at least 2");
                }
                if *pulls == 0 {
                    return bad("task.pulls", "0".into(), "must be at least 1");
                }
            }
            kind => kind.validate_trading(&self.task.trading)?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_design_documents() {
        let c = TrainConfig::default();
        assert_eq!(c.optim.lr, 3e-4);
        assert_eq!((c.gae.gamma, c.gae.lambda), (0.99, 0.95));
        assert_eq!(
            (c.ppo.clip, c.ppo.value_coef, c.ppo.entropy_coef),
            (0.2, 0.5, 0.01)
        );
        assert_eq!(c.ppo.max_grad_norm, 0.5);
        c.validate().unwrap();
    }

    #[test]
    fn toml_round_trips_and_fills_defaults() {
        let text = "iterations = 3\n[task]\nkind = \"bandits\"\narms = 10\npulls = 100\n";
        let c = TrainConfig::from_toml_str(text, Path::new("x.toml")).unwrap();
        assert_eq!(
            c.task.kind,
            TaskKind::Bandits {
                arms: 10,
                pulls: 100,
                observe_time: false,
            }
        );
        assert_eq!(c.iterations, 3);
        assert_eq!(c.n_envs, 64);
        let again = TrainConfig::from_toml_str(&c.to_toml(), Path::new("y.toml")).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn unknown_fields_and_bad_values_are_errors() {
        let err = TrainConfig::from_toml_str("iteratons = 3\n", Path::new("x.toml"));
        assert!(matches!(err, Err(Error::Toml { .. })));
        let err = TrainConfig::from_toml_str("n_envs = 0\n", Path::new("x.toml"));
        assert!(matches!(
            err,
            Err(Error::InvalidConfig {
                field: "n_envs",
                ..
            })
        ));
        let err = TrainConfig::from_toml_str("[ppo]\nclip = 2.0\n", Path::new("x.toml"));
        assert!(matches!(
            err,
            Err(Error::InvalidConfig {
                field: "ppo.clip",
                ..
            })
        ));
        let text = "[task]\nkind = \"bandits\"\narms = 1\npulls = 5\n";
        let err = TrainConfig::from_toml_str(text, Path::new("x.toml"));
        assert!(matches!(
            err,
            Err(Error::InvalidConfig {
                field: "task.arms",
                ..
            })
        ));
    }

    /// Helper's case: a held-out asset missing from the assets (a typo, or another case) was
    /// found only when training read the data, in an error without the config file.
    #[test]
    fn multi_asset_held_out_and_repeated_assets_are_refused_at_load() {
        let multi = "[task]\nkind = \"multi-asset\"\n";
        let load =
            |rest: &str| TrainConfig::from_toml_str(&format!("{multi}{rest}"), Path::new("x.toml"));
        let ok = "assets = [\"BTC\", \"ETH\"]\nsplit = { held_out = [\"ETH\"] }\n";
        load(ok).unwrap();
        for (rest, field, value) in [
            (
                "assets = [\"BTC\", \"ETH\"]\nsplit = { held_out = [\"SOL\"] }\n",
                "task.split.held_out",
                "SOL",
            ),
            (
                "assets = [\"BTC\", \"ETH\"]\nsplit = { held_out = [\"eth\"] }\n",
                "task.split.held_out",
                "eth",
            ),
            (
                "assets = [\"BTC\", \"ETH\", \"BTC\"]\n",
                "task.assets",
                "[2] BTC",
            ),
        ] {
            match load(rest) {
                Err(Error::InvalidConfig {
                    field: f, value: v, ..
                }) => {
                    assert_eq!((f, v.as_str()), (field, value), "{rest}");
                }
                other => panic!("{rest}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_training_reward_is_read_from_the_trading_section() {
        let text = "[task]\nkind = \"synthetic-ar1\"\nepisodes_per_trial = 3\n\
                    [task.trading]\nmax_steps = 100\n\
                    reward = { kind = \"differential_sharpe\", eta = 0.02 }\n";
        let c = TrainConfig::from_toml_str(text, Path::new("x.toml")).unwrap();
        assert_eq!(
            c.task.trading.reward,
            mrl_env::RewardConfig::DifferentialSharpe {
                eta: 0.02,
                initial_std: mrl_env::DEFAULT_SHARPE_INITIAL_STD,
            }
        );
        // Saved with the run and read back the same (what a resume compares).
        let again = TrainConfig::from_toml_str(&c.to_toml(), Path::new("y.toml")).unwrap();
        assert_eq!(again, c);
        // A config without a reward trains on the net return, and saves no reward key.
        let plain = "[task]\nkind = \"synthetic-ar1\"\n";
        let c = TrainConfig::from_toml_str(plain, Path::new("x.toml")).unwrap();
        assert_eq!(c.task.trading.reward, mrl_env::RewardConfig::NetReturn);
        assert!(!c.to_toml().contains("reward ="), "{}", c.to_toml());
        assert!(!c.to_toml().contains("[task.trading.reward]"));
        // Bad parameters are refused at load time, naming the parameter.
        let bad = "[task]\nkind = \"synthetic-ar1\"\n[task.trading]\n\
                   reward = { kind = \"drawdown_penalty\", penalty = -1.0 }\n";
        let err = TrainConfig::from_toml_str(bad, Path::new("x.toml")).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Env(mrl_env::Error::InvalidConfig {
                    field: "reward.penalty",
                    ..
                })
            ),
            "{err}"
        );
        let unknown = "[task]\nkind = \"synthetic-ar1\"\n[task.trading]\n\
                       reward = { kind = \"sortino\" }\n";
        assert!(matches!(
            TrainConfig::from_toml_str(unknown, Path::new("x.toml")),
            Err(Error::Toml { .. })
        ));
    }
}
