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

use std::path::Path;

use mrl_agent::PolicyKind;
use mrl_env::{TradingConfig, TrialConfig};
use serde::{Deserialize, Serialize};

use crate::gae::GaeConfig;
use crate::optim::AdamConfig;
use crate::update::PpoConfig;
use crate::{Error, Result};

/// The network to train; its input and action sizes come from the task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentSection {
    /// RL² GRU (default) or the memory-less MLP baseline.
    pub kind: PolicyKind,
    /// Hidden width (default 128).
    pub hidden: usize,
}

impl Default for AgentSection {
    fn default() -> Self {
        Self {
            kind: PolicyKind::Rl2,
            hidden: 128,
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
    },
}

impl Default for TaskKind {
    fn default() -> Self {
        Self::Bandits { arms: 5, pulls: 10 }
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
    /// The trading env (ignored by bandits).
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

    /// Checks every section.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first bad field.
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
        self.gae.validate()?;
        self.optim.validate()?;
        self.task.trial().validate()?;
        match self.task.kind {
            TaskKind::Bandits { arms, pulls } => {
                if arms < 2 {
                    return bad("task.arms", arms.to_string(), "must be at least 2");
                }
                if pulls == 0 {
                    return bad("task.pulls", "0".into(), "must be at least 1");
                }
            }
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
                pulls: 100
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
}
