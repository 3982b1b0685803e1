//! The meta-training loop: rollout over B trials, GAE, PPO update, logging and
//! checkpoints, with an exact resume.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::Device;
use mrl_agent::{AgentConfig, BeliefTarget, Policy, PolicyKind, RolloutWorkspace};
use mrl_data::BarSeries;
use mrl_env::{
    BanditDistribution, DynTasks, MarketTasks, MixtureTasks, ProcessSource, Split, SyntheticTasks,
    TaskDistribution, TradingConfig, VecTrials,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{
    CHECKPOINT_DIR, STATE_FORMAT, TrainState, load_checkpoint, resumable_checkpoint,
    save_checkpoint, write_file_atomic,
};
use crate::config::{TaskKind, TrainConfig, asset_path, parse_interval};
use crate::normalize::{NormMode, NormState};
use crate::optim::annealed_lr;
use crate::rollout::{RolloutBuffer, RolloutStats, collect_rollout, policy_obs_dim};
use crate::update::Learner;
use crate::{Error, Result};

/// File name of the per-iteration log inside a run directory.
pub const LOG_FILE: &str = "train_log.jsonl";
/// File name of the run's config inside a run directory.
pub const CONFIG_FILE: &str = "config.toml";

/// What one iteration did (one line of `train_log.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IterationStats {
    /// Iteration index (0-based).
    pub iteration: u64,
    /// Environment steps so far, this iteration's included.
    pub env_steps: u64,
    /// Mean total reward of the trials of this iteration's rollout.
    pub mean_trial_return: f64,
    /// Mean return of episode `k` of the trial (the adaptation curve).
    pub return_by_episode: Vec<f64>,
    /// Clipped surrogate loss (mean over gradient steps).
    pub policy_loss: f64,
    /// Value loss.
    pub value_loss: f64,
    /// Policy entropy.
    pub entropy: f64,
    /// Approximate KL between the rollout policy and the updated one.
    pub approx_kl: f64,
    /// Fraction of steps whose ratio left the clip range.
    pub clip_fraction: f64,
    /// Explained variance of the rollout values.
    pub explained_variance: f64,
    /// Mean gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Epochs started.
    pub epochs: usize,
    /// The target-KL stop fired.
    pub early_stopped: bool,
    /// Environment steps per second of this iteration, end to end (rollout with the env,
    /// update).
    pub env_steps_per_sec: f64,
    /// Seconds in the rollout.
    pub rollout_secs: f64,
    /// Seconds in the update.
    pub update_secs: f64,
    /// Mean auxiliary belief loss of the update (task-inference agent with targets);
    /// absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub belief_loss: Option<f64>,
}

/// The outcome of [`train`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSummary {
    /// Iterations completed in total (including those before a resume).
    pub iterations: u64,
    /// Iterations run by this call.
    pub iterations_run: u64,
    /// Environment steps in total.
    pub env_steps: u64,
    /// Mean trial return of the last iteration (NaN when none ran).
    pub final_mean_trial_return: f64,
    /// Mean trial return averaged over the last 10 % of this call's iterations.
    pub tail_mean_trial_return: f64,
    /// Wall-clock seconds of this call.
    pub seconds: f64,
    /// The checkpoint directory.
    pub checkpoint: PathBuf,
}

/// A running meta-training job over a task distribution `D`.
pub struct Trainer<D: TaskDistribution> {
    config: TrainConfig,
    run_dir: PathBuf,
    learner: Learner,
    trials: VecTrials<D>,
    workspace: RolloutWorkspace,
    buffer: RolloutBuffer,
    sample_rng: ChaCha8Rng,
    shuffle_rng: ChaCha8Rng,
    iteration: u64,
    env_steps: u64,
    /// Normalisation accumulators, when the run normalises inputs or returns.
    norm: Option<NormState>,
}

/// Seeds derived from the master seed, in a fixed order.
struct Seeds {
    weights: u64,
    trials: u64,
    sample: u64,
    shuffle: u64,
}

impl Seeds {
    fn new(seed: u64) -> Self {
        let mut master = ChaCha8Rng::seed_from_u64(seed);
        Self {
            weights: master.next_u64(),
            trials: master.next_u64(),
            sample: master.next_u64(),
            shuffle: master.next_u64(),
        }
    }
}

impl<D: TaskDistribution> Trainer<D> {
    /// A fresh run in `run_dir` (created if needed; an existing checkpoint there is an
    /// error: resume it or pick another directory). Writes `config.toml`.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] when `run_dir` already holds a checkpoint, config, I/O, agent
    /// and env errors.
    pub fn new(config: TrainConfig, dist: Arc<D>, run_dir: &Path) -> Result<Self> {
        config.validate()?;
        if run_dir.join(CHECKPOINT_DIR).exists() {
            return Err(Error::Checkpoint {
                path: run_dir.join(CHECKPOINT_DIR),
                reason: "a checkpoint exists already; resume it or choose another directory".into(),
            });
        }
        fs::create_dir_all(run_dir).map_err(Error::io(run_dir))?;
        write_file_atomic(&run_dir.join(CONFIG_FILE), config.to_toml().as_bytes())?;
        let log = run_dir.join(LOG_FILE);
        write_file_atomic(&log, b"")?;
        let seeds = Seeds::new(config.seed);
        let agent = agent_config(&config, dist.as_ref());
        let policy = Policy::new(&agent, &Device::Cpu, seeds.weights)?;
        let mut trainer = Self::assemble(config, dist, run_dir, policy, &seeds)?;
        trainer.warm_up_normalization()?;
        Ok(trainer)
    }

    /// Fits the first normalisation statistics on `warmup_rounds` rollouts of the training
    /// split with the initial policy (see [`NormalizeConfig`](crate::NormalizeConfig)).
    fn warm_up_normalization(&mut self) -> Result<()> {
        let Some(mut norm) = self.norm.take() else {
            return Ok(());
        };
        let rounds = self.config.normalize.warmup_rounds.max(1);
        for _ in 0..rounds {
            self.collect()?;
            norm.observe_inputs(&self.buffer)?;
            norm.observe_returns(&self.buffer, self.config.gae.gamma)?;
        }
        self.norm = Some(norm);
        self.apply_normalization()?;
        tracing::info!(
            rounds,
            "normalisation statistics fitted on the training split"
        );
        Ok(())
    }

    /// One rollout round of the trials with the current policy into the buffer.
    fn collect(&mut self) -> Result<RolloutStats> {
        collect_rollout(
            &mut self.trials,
            &mut self.workspace,
            self.learner.policy(),
            &mut self.buffer,
            &mut self.sample_rng,
            self.config.ppo.gae_scope,
        )
    }

    /// Hands the current statistics to the policy, the rollout workspace and the learner.
    fn apply_normalization(&mut self) -> Result<()> {
        let Some(norm) = &self.norm else {
            return Ok(());
        };
        let n = &self.config.normalize;
        if n.inputs != NormMode::None {
            let stats = norm.input_norm(n.clip);
            self.learner.policy_mut().set_input_norm(Some(stats))?;
            self.workspace.refresh(self.learner.policy())?;
        }
        if n.returns {
            self.learner.set_return_scale(norm.return_scale())?;
        }
        Ok(())
    }

    /// Resumes the run in `run_dir` from its last checkpoint: weights, Adam moments and step,
    /// RNG states, the trials' round and the counters. `config` must equal the saved one
    /// except for `iterations`. Log lines written after the checkpoint are dropped.
    ///
    /// # Errors
    /// [`Error::NothingToResume`] where no checkpoint was written yet
    /// ([`resumable_checkpoint`]), [`Error::Checkpoint`] for an incomplete checkpoint or a
    /// different config, I/O, JSON, agent and env errors.
    pub fn resume(config: TrainConfig, dist: Arc<D>, run_dir: &Path) -> Result<Self> {
        config.validate()?;
        let dir = resumable_checkpoint(run_dir)?;
        let saved_path = run_dir.join(CONFIG_FILE);
        let saved = TrainConfig::load(&saved_path)?;
        if (TrainConfig {
            iterations: config.iterations,
            ..saved
        }) != config
        {
            return Err(Error::Checkpoint {
                path: saved_path,
                reason: "the config differs from the run's (only `iterations` may change)".into(),
            });
        }
        let loaded = load_checkpoint(&dir, &Device::Cpu)?;
        if loaded.policy.kind() != config.agent.kind {
            return Err(mrl_agent::Error::WrongKind {
                path: dir.join("model.safetensors"),
                expected: config.agent.kind.as_str(),
                found: loaded.policy.kind().as_str(),
            }
            .into());
        }
        let seeds = Seeds::new(config.seed);
        let mut trainer = Self::assemble(config, dist, run_dir, loaded.policy, &seeds)?;
        trainer
            .learner
            .adam_mut()
            .load_state(loaded.optimizer, loaded.state.adam_step)?;
        trainer.trials.restore(&loaded.state.trials)?;
        trainer.sample_rng = loaded.state.sample_rng;
        trainer.shuffle_rng = loaded.state.shuffle_rng;
        trainer.iteration = loaded.state.iteration;
        trainer.env_steps = loaded.state.env_steps;
        if trainer.norm.is_some() {
            trainer.norm = Some(loaded.state.norm.ok_or_else(|| Error::Checkpoint {
                path: dir.join("state.json"),
                reason: "the run normalises but the checkpoint holds no normalisation state".into(),
            })?);
            trainer.apply_normalization()?;
        }
        trainer.truncate_log()?;
        tracing::info!(iteration = trainer.iteration, dir = %dir.display(), "resumed");
        Ok(trainer)
    }

    fn assemble(
        config: TrainConfig,
        dist: Arc<D>,
        run_dir: &Path,
        policy: Policy,
        seeds: &Seeds,
    ) -> Result<Self> {
        let trials = VecTrials::new(
            dist,
            config.n_envs,
            config.task.trial(),
            Split::Train,
            seeds.trials,
        )?;
        let workspace = RolloutWorkspace::new(&policy, config.n_envs)?;
        let obs_dim = policy.config().obs_dim;
        let mut buffer = RolloutBuffer::new(config.n_envs, trials.max_trial_len(), obs_dim);
        if config.agent.kind == PolicyKind::TaskInference
            && config.agent.task_inference.target == BeliefTarget::Task
        {
            // Supervised belief training (`BeliefTarget::Task`): the task's parameters.
            buffer = buffer.with_task_targets(config.agent.task_inference.latent);
        }
        let learner = Learner::new(policy, config.ppo.clone(), config.optim)?;
        let norm = (!config.normalize.is_off()).then(|| NormState::new(obs_dim));
        Ok(Self {
            norm,
            run_dir: run_dir.to_path_buf(),
            learner,
            trials,
            workspace,
            buffer,
            sample_rng: ChaCha8Rng::seed_from_u64(seeds.sample),
            shuffle_rng: ChaCha8Rng::seed_from_u64(seeds.shuffle),
            iteration: 0,
            env_steps: 0,
            config,
        })
    }

    /// Iterations completed.
    pub fn iteration(&self) -> u64 {
        self.iteration
    }

    /// The policy being trained.
    pub fn policy(&self) -> &Policy {
        self.learner.policy()
    }

    /// The run's config.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// One iteration: rollout, update, log line, and a checkpoint when
    /// `checkpoint_every` divides the iteration count.
    ///
    /// # Errors
    /// [`Error::NonFinite`] when the loss or a gradient is NaN or infinite (nothing is
    /// written, the last checkpoint stays as it was), env, agent and I/O errors.
    pub fn step(&mut self) -> Result<IterationStats> {
        let start = Instant::now();
        let rollout = self.collect()?;
        let rollout_secs = start.elapsed().as_secs_f64();
        if self.config.normalize.returns
            && let Some(norm) = &mut self.norm
        {
            norm.observe_returns(&self.buffer, self.config.gae.gamma)?;
            self.learner.set_return_scale(norm.return_scale())?;
        }
        let lr = annealed_lr(
            self.config.optim.lr,
            self.iteration,
            self.config.iterations,
            self.config.ppo.anneal_lr,
        );
        let update = self.learner.update(
            &self.buffer,
            &self.config.gae,
            lr,
            &mut self.shuffle_rng,
            self.iteration,
        )?;
        if self.config.normalize.inputs == NormMode::Running
            && let Some(norm) = &mut self.norm
        {
            // After the update: this rollout and the update that learnt from it saw the
            // same statistics; the next rollout sees the refreshed ones.
            norm.observe_inputs(&self.buffer)?;
            let stats = norm.input_norm(self.config.normalize.clip);
            self.learner.policy_mut().set_input_norm(Some(stats))?;
        }
        self.workspace.refresh(self.learner.policy())?;
        let seconds = start.elapsed().as_secs_f64();
        self.env_steps += rollout.env_steps as u64;
        let stats = IterationStats {
            iteration: self.iteration,
            env_steps: self.env_steps,
            mean_trial_return: rollout.mean_trial_return,
            return_by_episode: rollout.return_by_episode,
            policy_loss: update.loss.policy,
            value_loss: update.loss.value,
            entropy: update.loss.entropy,
            approx_kl: update.loss.approx_kl,
            clip_fraction: update.loss.clip_fraction,
            explained_variance: update.explained_variance,
            grad_norm: update.grad_norm,
            lr,
            epochs: update.epochs,
            early_stopped: update.early_stopped,
            env_steps_per_sec: rollout.env_steps as f64 / seconds.max(1e-9),
            rollout_secs,
            update_secs: seconds - rollout_secs,
            belief_loss: update.belief_loss,
        };
        self.iteration += 1;
        self.append_log(&stats)?;
        tracing::info!(
            iteration = stats.iteration,
            mean_trial_return = stats.mean_trial_return,
            policy_loss = stats.policy_loss,
            value_loss = stats.value_loss,
            entropy = stats.entropy,
            approx_kl = stats.approx_kl,
            clip_fraction = stats.clip_fraction,
            explained_variance = stats.explained_variance,
            env_steps_per_sec = stats.env_steps_per_sec,
            belief_loss = stats.belief_loss,
            "iteration"
        );
        if self.iteration.is_multiple_of(self.config.checkpoint_every)
            || self.iteration == self.config.iterations
        {
            self.save_checkpoint()?;
        }
        Ok(stats)
    }

    /// Runs iterations until `config.iterations` are done, calling `progress` after each.
    ///
    /// # Errors
    /// As [`Trainer::step`].
    pub fn run(&mut self, mut progress: impl FnMut(&IterationStats)) -> Result<TrainSummary> {
        let start = Instant::now();
        let first = self.iteration;
        let mut returns = Vec::new();
        while self.iteration < self.config.iterations {
            let stats = self.step()?;
            returns.push(stats.mean_trial_return);
            progress(&stats);
        }
        let tail = returns.len().div_ceil(10).max(1);
        let tail_mean = if returns.is_empty() {
            f64::NAN
        } else {
            let last = &returns[returns.len() - tail.min(returns.len())..];
            last.iter().sum::<f64>() / last.len() as f64
        };
        Ok(TrainSummary {
            iterations: self.iteration,
            iterations_run: self.iteration - first,
            env_steps: self.env_steps,
            final_mean_trial_return: returns.last().copied().unwrap_or(f64::NAN),
            tail_mean_trial_return: tail_mean,
            seconds: start.elapsed().as_secs_f64(),
            checkpoint: self.run_dir.join(CHECKPOINT_DIR),
        })
    }

    /// Writes the checkpoint now.
    ///
    /// # Errors
    /// I/O, JSON and candle errors.
    pub fn save_checkpoint(&self) -> Result<()> {
        let adam = self.learner.adam();
        let state = TrainState {
            format: STATE_FORMAT.to_string(),
            iteration: self.iteration,
            env_steps: self.env_steps,
            adam_step: adam.step_count(),
            sample_rng: self.sample_rng.clone(),
            shuffle_rng: self.shuffle_rng.clone(),
            trials: self.trials.state(),
            norm: self.norm.clone(),
        };
        save_checkpoint(
            &self.run_dir,
            self.learner.policy(),
            &adam.state_tensors(),
            &state,
        )
    }

    fn append_log(&self, stats: &IterationStats) -> Result<()> {
        let path = self.run_dir.join(LOG_FILE);
        let line = serde_json::to_string(stats).map_err(|source| Error::Json {
            path: path.clone(),
            source,
        })?;
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(Error::io(&path))?;
        writeln!(f, "{line}").map_err(Error::io(&path))
    }

    /// Drops log lines of iterations at or after the resumed one.
    fn truncate_log(&self) -> Result<()> {
        let path = self.run_dir.join(LOG_FILE);
        let Ok(text) = fs::read_to_string(&path) else {
            return Ok(());
        };
        let kept: String = text
            .lines()
            .filter(|line| {
                serde_json::from_str::<IterationStats>(line)
                    .is_ok_and(|s| s.iteration < self.iteration)
            })
            .map(|line| format!("{line}\n"))
            .collect();
        write_file_atomic(&path, kept.as_bytes())
    }
}

/// The agent config for a distribution: its observation and action sizes, the section's
/// kind and width.
pub fn agent_config<D: TaskDistribution>(config: &TrainConfig, dist: &D) -> AgentConfig {
    AgentConfig {
        kind: config.agent.kind,
        obs_dim: policy_obs_dim(dist.obs_dim()),
        n_actions: dist.n_actions(),
        hidden: config.agent.hidden,
        input_norm: None,
        transformer: config.agent.transformer.clone(),
        task_inference: config.agent.task_inference.clone(),
    }
}

/// Runs (or resumes) meta-training as `config` says, writing `out_dir/{config.toml,
/// train_log.jsonl, checkpoint/}`; `progress` sees every iteration's stats.
///
/// # Errors
/// As [`Trainer::new`], [`Trainer::resume`] and [`Trainer::step`].
pub fn train(
    config: &TrainConfig,
    out_dir: &Path,
    resume: bool,
    progress: impl FnMut(&IterationStats),
) -> Result<TrainSummary> {
    match &config.task.kind {
        TaskKind::Bandits {
            arms,
            pulls,
            observe_time,
        } => {
            let dist = Arc::new(
                BanditDistribution::new(*arms, *pulls)?.with_time_observation(*observe_time),
            );
            train_on(config, dist, out_dir, resume, progress)
        }
        kind => {
            let dist = trading_tasks(kind, &config.task.trading)?;
            train_on(config, Arc::new(dist), out_dir, resume, progress)
        }
    }
}

/// The trading task distribution of `kind`, every env trading with `trading` (a mixture
/// component with its own `trading` uses that): what [`train`] trains on, and what an
/// evaluation samples held-out tasks from (`sample(Split::Test, …)`).
///
/// Real-data kinds read `<data_dir>/<ASSET>_<interval>.csv`, with `MRL_DATA_DIR` overriding
/// `data_dir` ([`resolve_data_dir`](crate::resolve_data_dir)).
///
/// # Errors
/// [`Error::InvalidConfig`] for bandits (not a trading distribution) or a bad interval;
/// [`Error::Data`] for a missing or invalid file; [`Error::Env`] for a distribution that
/// cannot be built (a split without a task, components that disagree on their spaces, …).
pub fn trading_tasks(kind: &TaskKind, trading: &TradingConfig) -> Result<DynTasks> {
    let synthetic = |source, bars| -> Result<DynTasks> {
        Ok(Box::new(SyntheticTasks::new(
            source,
            bars,
            trading.clone(),
        )?))
    };
    match kind {
        TaskKind::Bandits { .. } => Err(Error::InvalidConfig {
            field: "task.kind",
            value: kind.name().to_owned(),
            reason: "bandits are not a distribution of trading tasks",
        }),
        TaskKind::SyntheticAr1 { bars, family } => {
            synthetic(ProcessSource::Ar1(family.clone()), *bars)
        }
        TaskKind::Synthetic {
            bars,
            randomization,
        } => synthetic(ProcessSource::Randomized(randomization.clone()), *bars),
        TaskKind::MultiAsset {
            data_dir,
            interval,
            assets,
            split,
        } => {
            let series = read_assets(data_dir, interval, assets)?;
            Ok(Box::new(MarketTasks::multi_asset(
                &series,
                split,
                trading.clone(),
            )?))
        }
        TaskKind::RegimeWindows {
            data_dir,
            interval,
            assets,
            test_start,
            regime,
        } => {
            let series = read_assets(data_dir, interval, assets)?;
            Ok(Box::new(MarketTasks::regime_windows(
                &series,
                *test_start,
                regime,
                trading.clone(),
            )?))
        }
        TaskKind::Timeframes {
            data_dir,
            interval,
            asset,
            intervals,
            test_start,
        } => {
            let series = read_assets(data_dir, interval, std::slice::from_ref(asset))?;
            let intervals = intervals
                .iter()
                .map(|text| parse_interval(text))
                .collect::<Result<Vec<_>>>()?;
            Ok(Box::new(MarketTasks::timeframes(
                &series[0],
                &intervals,
                *test_start,
                trading.clone(),
            )?))
        }
        TaskKind::Mixture { components } => {
            let parts = components
                .iter()
                .map(|c| {
                    let own = c.trading.as_ref().unwrap_or(trading);
                    Ok((c.weight, trading_tasks(&c.kind, own)?))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Box::new(MixtureTasks::new(parts)?))
        }
    }
}

/// Reads `<dir>/<ASSET>_<interval>.csv` for every asset, `dir` resolved by
/// [`resolve_data_dir`](crate::resolve_data_dir); each series is named by its asset.
fn read_assets(data_dir: &Path, interval: &str, assets: &[String]) -> Result<Vec<BarSeries>> {
    assets
        .iter()
        .map(|asset| {
            let path = asset_path(data_dir, interval, asset);
            Ok(mrl_data::read_bars(&path)?.with_symbol(asset.clone()))
        })
        .collect()
}

/// [`train`] on an explicit task distribution.
///
/// # Errors
/// As [`train`].
pub fn train_on<D: TaskDistribution>(
    config: &TrainConfig,
    dist: Arc<D>,
    out_dir: &Path,
    resume: bool,
    progress: impl FnMut(&IterationStats),
) -> Result<TrainSummary> {
    let mut trainer = if resume {
        Trainer::resume(config.clone(), dist, out_dir)?
    } else {
        Trainer::new(config.clone(), dist, out_dir)?
    };
    tracing::info!(
        n_params = trainer.policy().n_params(),
        kind = trainer.policy().kind().as_str(),
        start = trainer.iteration(),
        iterations = config.iterations,
        "training"
    );
    trainer.run(progress)
}
