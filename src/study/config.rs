//! Settings of a study: the held-out markets ([`HeldOutConfig`]), a further agent's own
//! network, PPO and optimiser settings ([`AgentSettings`]) and the study itself
//! ([`StudyConfig`]: seeds, overrides, each run's training config, validation).

use std::path::PathBuf;

use mrl_agent::PolicyKind;
use mrl_backtest::{TestStart, WalkForwardConfig};
use mrl_ppo::{AdamConfig, AgentSection, PpoConfig, TaskKind, TrainConfig};
use serde::{Deserialize, Serialize};

use super::markets::{synthetic_test_start, unsupported};
use super::{Error, Result};

/// Which held-out markets the agents are tested on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldOutConfig {
    /// Synthetic task kinds: number of generated markets, drawn from the test seed space
    /// ([`SyntheticTasks::split_seed`]) that training never samples. Default 4.
    ///
    /// [`SyntheticTasks::split_seed`]: mrl_env::SyntheticTasks::split_seed
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
            optim: own.optim,
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
            config.optim = own.optim;
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

#[cfg(test)]
mod tests {
    use super::*;

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
        own.gae = study.gae;
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
