//! Meta-learners over a task distribution: Reptile (Nichol, Achiam & Schulman 2018, "On
//! First-Order Meta-Learning Algorithms") and first-order MAML (Finn, Abbeel & Levine 2017,
//! "Model-Agnostic Meta-Learning", §5.2's first-order approximation).
//!
//! ```text
//! every iteration: draw M tasks from the training split; for each task i
//!   θ'_i = adapt(θ, task_i, K inner steps)                       (crate::adapt)
//! Reptile:  θ ← θ + ε · mean_i (θ'_i − θ)
//! FOMAML:   g = mean_i ∇θ' L_PPO(θ'_i; a fresh query rollout of θ'_i on task_i)
//!           θ ← Adam(θ, clip(g))
//! ```
//!
//! Full MAML differentiates through the inner steps (`∇θ L(θ − α∇L(θ))` needs
//! Hessian-vector products); candle's backward pass records no graph of its own, so no
//! second-order term is available and only the first-order learners are offered.
//!
//! With low-rank adapters in the inner loop ([`InnerConfig::adapter`]) the base stays frozen
//! while adapting, and both learners act on the effective weights: Reptile moves the base
//! towards `W + s·B'A'` (the adapted effective weights), FOMAML uses `∂L/∂W_eff`, which is
//! `∂L/∂W_base` since `W_eff = W_base + s·B·A`.
//!
//! With asset classes (`[classes]`, `embedding.rs`) each task runs through its class's
//! embedding, which trains in the inner loop beside the base: Reptile moves the base towards
//! the mean adapted weights before composition and each embedding towards the mean over
//! its class's tasks ([`reptile_step_classes`]); FOMAML pulls the query gradient back through
//! the adapted embedding onto both and steps them with one outer Adam
//! ([`fomaml_gradient_classes`]).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use mrl_agent::{Policy, RolloutWorkspace, write_atomic};
use mrl_env::{BanditDistribution, Env, Split, TaskDistribution, VecTrials};
use mrl_ppo::{
    Adam, AdamConfig, CHECKPOINT_DIR, CONFIG_FILE, NormMode, NormState, PpoGradients,
    RolloutBuffer, TaskKind, TrainConfig, TrainState, agent_config, clip_grad_norm,
    collect_rollout, ppo_gradients, trading_tasks,
};
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::embedding::{
    ClassConfig, ClassEmbedding, ClassEmbeddings, EmbeddingTraining, validate_classes,
};
use crate::inner::{AdaptSetup, Adapted, InnerConfig, TaskRollouts, TaskSeeds, adapt, adapt_class};
use crate::online::OnlineConfig;
use crate::task::FixedTask;
use crate::transfer::TransferConfig;
use crate::{Error, Result};

/// File name of the meta-learner's settings inside a run directory.
pub const META_FILE: &str = "meta.toml";
/// File name of the per-iteration log inside a run directory.
pub const META_LOG_FILE: &str = "meta_log.jsonl";
/// File name of the meta-learner's state inside the checkpoint directory.
pub const FEWSHOT_STATE_FILE: &str = "fewshot.json";
/// Format tag of [`FEWSHOT_STATE_FILE`].
pub const FEWSHOT_STATE_FORMAT: &str = "mrl-fewshot-state";
/// File name of the outer Adam's moments (first-order MAML) inside the checkpoint directory.
pub const META_OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// File name of the `[classes]` tables inside a run directory (with class embeddings).
pub const CLASSES_FILE: &str = "classes.toml";
/// The checkpoint being written, swapped in for `checkpoint/` once complete
/// ([`mrl_ppo::swap_in_checkpoint`]).
const TMP_DIR: &str = ".checkpoint.tmp";

/// The meta-learner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MetaAlgorithm {
    /// Reptile: move the initialisation towards the adapted weights.
    #[default]
    Reptile,
    /// First-order MAML: the post-adaptation query gradient, applied with Adam.
    Fomaml,
}

impl MetaAlgorithm {
    /// `reptile` or `fomaml`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Reptile => "reptile",
            Self::Fomaml => "fomaml",
        }
    }
}

/// Settings of meta-training (the `[meta]` table of a config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetaConfig {
    /// The learner (default Reptile).
    pub algorithm: MetaAlgorithm,
    /// Meta-iterations (default 100).
    pub iterations: u64,
    /// Tasks per meta-iteration M (default 4).
    pub meta_batch: usize,
    /// Outer step size: Reptile's ε (default 0.5) or FOMAML's Adam learning rate (default:
    /// the run's `optim.lr`).
    pub outer_lr: Option<f64>,
    /// Write the checkpoint every this many iterations, and at the end (default 25).
    pub checkpoint_every: u64,
    /// The inner loop.
    pub inner: InnerConfig,
    /// Online adaptation while trading a held-out series (`[meta.online]`; used by the
    /// benchmark's `meta_online` / `pretrain_online` rows and `mrl adapt --online`).
    pub online: OnlineConfig,
}

impl Default for MetaConfig {
    fn default() -> Self {
        Self {
            algorithm: MetaAlgorithm::Reptile,
            iterations: 100,
            meta_batch: 4,
            outer_lr: None,
            checkpoint_every: 25,
            inner: InnerConfig::default(),
            online: OnlineConfig::default(),
        }
    }
}

impl MetaConfig {
    /// The outer step size, with the algorithm's default when unset.
    pub fn outer_lr(&self, train: &TrainConfig) -> f64 {
        self.outer_lr.unwrap_or(match self.algorithm {
            MetaAlgorithm::Reptile => 0.5,
            MetaAlgorithm::Fomaml => train.optim.lr,
        })
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.iterations == 0 {
            return Err(Error::invalid(
                "meta.iterations",
                "0".into(),
                "must be at least 1",
            ));
        }
        if self.meta_batch == 0 {
            return Err(Error::invalid(
                "meta.meta_batch",
                "0".into(),
                "must be at least 1",
            ));
        }
        if self.checkpoint_every == 0 {
            return Err(Error::invalid(
                "meta.checkpoint_every",
                "0".into(),
                "must be at least 1",
            ));
        }
        if let Some(lr) = self.outer_lr
            && !(lr.is_finite() && lr > 0.0)
        {
            return Err(Error::invalid(
                "meta.outer_lr",
                lr.to_string(),
                "must be finite and > 0",
            ));
        }
        if self.algorithm == MetaAlgorithm::Reptile && self.inner.steps == 0 {
            return Err(Error::invalid(
                "meta.inner.steps",
                "0".into(),
                "Reptile needs at least one inner step",
            ));
        }
        self.inner.validate()?;
        self.online.validate()
    }
}

/// A meta-training config file: an `mrl train` config (network, PPO loss, GAE, task
/// distribution, normalisation, seed) plus a `[meta]` table ([`MetaConfig`]) and, for the
/// benchmark, an optional `[transfer]` table ([`TransferConfig`]), and optional
/// `[classes.NAME]` tables ([`ClassConfig`]: asset classes with their own feature sets and
/// meta-learned embeddings).
#[derive(Debug, Clone, PartialEq)]
pub struct MetaTrainConfig {
    /// Everything but `[meta]`.
    pub train: TrainConfig,
    /// The `[meta]` table.
    pub meta: MetaConfig,
    /// The `[transfer]` table: held-out assets of another class for the few-shot benchmark
    /// (domain generalisation); unused by meta-training itself.
    pub transfer: Option<TransferConfig>,
    /// The `[classes.NAME]` tables, by name; empty: no class embeddings (every task reads
    /// the policy's eleven features directly).
    pub classes: BTreeMap<String, ClassConfig>,
}

impl MetaTrainConfig {
    /// Parses and validates a config (`path` names it in errors).
    ///
    /// # Errors
    /// [`Error::Toml`] for a syntax error, a missing `[meta]` table or an unknown field;
    /// the train part's errors; [`Error::InvalidConfig`].
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Self> {
        let toml_error = |source| Error::Toml {
            path: path.to_path_buf(),
            source,
        };
        let mut table: toml::Table = toml::from_str(text).map_err(toml_error)?;
        let Some(meta) = table.remove("meta") else {
            return Err(toml_error(serde::de::Error::custom(
                "no [meta] table: this is a plain `mrl train` config",
            )));
        };
        let meta: MetaConfig = meta.try_into().map_err(toml_error)?;
        let transfer: Option<TransferConfig> = table
            .remove("transfer")
            .map(|t| t.try_into().map_err(toml_error))
            .transpose()?;
        let classes: BTreeMap<String, ClassConfig> = table
            .remove("classes")
            .map(|t| t.try_into().map_err(toml_error))
            .transpose()?
            .unwrap_or_default();
        // The train part goes back through the plain config's parser; a table that does not
        // serialise again is reported, never parsed as empty.
        let rest = toml::to_string(&table).map_err(|e| {
            toml_error(serde::de::Error::custom(format!(
                "the config outside [meta] cannot be re-read: {e}"
            )))
        })?;
        let train = TrainConfig::from_toml_str(&rest, path)?;
        meta.validate()?;
        if let Some(t) = &transfer {
            t.validate(&train)?;
        }
        let config = Self {
            train,
            meta,
            transfer,
            classes,
        };
        config.validate_classes()?;
        Ok(config)
    }

    /// Checks the `[classes]` tables (features, tasks) and that the run can carry class
    /// embeddings: a trading task, an RL² or MLP policy.
    ///
    /// # Errors
    /// As [`validate_classes`]; [`Error::InvalidConfig`] naming the field that rules class
    /// embeddings out.
    pub fn validate_classes(&self) -> Result<()> {
        if self.classes.is_empty() {
            return Ok(());
        }
        validate_classes(&self.classes)?;
        if matches!(self.train.task.kind, TaskKind::Bandits { .. }) {
            return Err(Error::invalid(
                "task.kind",
                "bandits".into(),
                "class embeddings need trading tasks (market features)",
            ));
        }
        if !matches!(
            self.train.agent.kind,
            mrl_agent::PolicyKind::Rl2 | mrl_agent::PolicyKind::Mlp
        ) {
            return Err(Error::invalid(
                "agent.kind",
                format!("{:?}", self.train.agent.kind),
                "class embeddings fold into the first linear layer of RL² or the MLP",
            ));
        }
        Ok(())
    }

    /// Reads and validates a config file.
    ///
    /// # Errors
    /// [`Error::Io`], then as [`MetaTrainConfig::from_toml_str`].
    pub fn load(path: &Path) -> Result<Self> {
        let text = fs::read_to_string(path).map_err(Error::io(path))?;
        Self::from_toml_str(&text, path)
    }
}

/// The state written beside a meta-trained checkpoint ([`FEWSHOT_STATE_FILE`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FewshotState {
    /// Always [`FEWSHOT_STATE_FORMAT`].
    pub format: String,
    /// The learner.
    pub algorithm: MetaAlgorithm,
    /// Meta-iterations completed.
    pub iteration: u64,
    /// The return scale fitted at warm-up (1 without return normalisation).
    pub return_scale: f64,
    /// The stream that draws every iteration's tasks and adaptation seeds, where the next
    /// iteration continues it (absent in checkpoints written before resuming existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_rng: Option<ChaCha8Rng>,
    /// Steps of the outer Adam (first-order MAML; 0 for Reptile).
    #[serde(default)]
    pub adam_step: u64,
}

/// The factor on rewards before GAE that the base of `run_dir` was trained with: from a
/// meta-trained checkpoint's [`FEWSHOT_STATE_FILE`], from an `mrl train` run's `state.json`
/// when it normalised returns, 1 otherwise.
///
/// # Errors
/// [`Error::Io`] or [`Error::Json`] for a state file that exists but cannot be read.
pub fn return_scale_of(checkpoint_dir: &Path, train: &TrainConfig) -> Result<f64> {
    let fewshot = checkpoint_dir.join(FEWSHOT_STATE_FILE);
    if fewshot.exists() {
        let state: FewshotState = read_json(&fewshot)?;
        return Ok(state.return_scale);
    }
    let state = checkpoint_dir.join("state.json");
    if train.normalize.returns && state.exists() {
        let state: TrainState = read_json(&state)?;
        if let Some(norm) = state.norm {
            return Ok(norm.return_scale());
        }
    }
    Ok(1.0)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(Error::io(path))?;
    serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// What one meta-iteration did (one line of [`META_LOG_FILE`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetaIterationStats {
    /// Iteration (0-based).
    pub iteration: u64,
    /// Mean over tasks of the first inner rollout's mean trial return (before adapting).
    pub pre_return: f64,
    /// Mean over tasks of the return after adapting: the query rollout's (FOMAML) or the
    /// last inner rollout's (Reptile).
    pub post_return: f64,
    /// L2 norm of the change of the base's parameters.
    pub update_norm: f64,
    /// Seconds of the iteration.
    pub seconds: f64,
}

/// The first-order MAML gradient of one task.
#[derive(Debug)]
pub struct TaskGradient {
    /// The policy adapted to the task.
    pub adapted: Adapted,
    /// Mean trial return of the query rollout.
    pub query_return: f64,
    /// `∇θ' L_PPO(θ')` on the query rollout, by parameter name of the base; not clipped.
    pub gradients: PpoGradients,
}

/// Adapts `base` to `task` (seed `seed`), collects a fresh query rollout with the adapted
/// policy (the query seeds of [`TaskSeeds`]) and returns the PPO gradient there: the
/// first-order MAML meta-gradient of the task.
///
/// # Errors
/// As [`adapt`].
pub fn fomaml_task_gradient<D: TaskDistribution>(
    base: &Policy,
    task: Arc<D>,
    inner: &InnerConfig,
    setup: &AdaptSetup,
    seed: u64,
) -> Result<TaskGradient> {
    let adapted = adapt(base, task.clone(), inner, setup, seed)?;
    query_gradient(adapted, task, inner, setup, seed)
}

/// The PPO gradient of `adapted.policy` on a fresh query rollout of `task` (the query seeds
/// of [`TaskSeeds`] of `seed`).
fn query_gradient<D: TaskDistribution>(
    adapted: Adapted,
    task: Arc<D>,
    inner: &InnerConfig,
    setup: &AdaptSetup,
    seed: u64,
) -> Result<TaskGradient> {
    let seeds = TaskSeeds::new(seed);
    let mut query = TaskRollouts::new(
        task,
        &adapted.policy,
        inner.n_envs,
        setup.trial.clone(),
        seeds.query_trials,
        seeds.query_sampling,
    )?;
    let (stats, batch) = query.collect(&adapted.policy, setup)?;
    let gradients = ppo_gradients(&adapted.policy, &batch, &setup.ppo.loss())?;
    Ok(TaskGradient {
        adapted,
        query_return: stats.mean_trial_return,
        gradients,
    })
}

/// The first-order MAML meta-gradient over tasks of several asset classes: task `i` (of
/// class `classes[i]`, seed `seeds[i]`) adapts through its class's embedding, which trains
/// beside the base ([`adapt_class`]); the query gradient of the adapted, composed policy is
/// pulled back through the adapted embedding onto the base's weights and the embedding
/// ([`ClassEmbedding::pullback`](crate::ClassEmbedding::pullback)). Returned in the order
/// of the base's [`Policy::parameters`], then [`ClassEmbeddings::vars`] (the meta-objective's
/// mean over the batch: a class without a task in it gets zeros), not clipped, with the
/// mean first inner-rollout and query returns.
///
/// # Errors
/// As [`reptile_step_classes`].
#[allow(clippy::too_many_arguments)]
pub fn fomaml_gradient_classes<D: TaskDistribution>(
    base: &Policy,
    embeddings: &ClassEmbeddings,
    tasks: &[Arc<D>],
    classes: &[&str],
    seeds: &[u64],
    inner: &InnerConfig,
    setup: &AdaptSetup,
) -> Result<(Vec<Tensor>, f64, f64)> {
    check_batch(tasks.len(), seeds.len())?;
    check_batch(tasks.len(), classes.len())?;
    let m = tasks.len() as f64;
    let params = base.parameters();
    let mut sums = zeros_like(params.iter().map(|(_, v)| v))?;
    let mut class_sums: BTreeMap<&str, Vec<Tensor>> = BTreeMap::new();
    let (mut pre, mut post) = (0.0, 0.0);
    for ((task, &seed), &class) in tasks.iter().zip(seeds).zip(classes) {
        let (_, adapted) = adapt_in_class(base, embeddings, class, task, seed, inner, setup)?;
        let g = query_gradient(adapted, task.clone(), inner, setup, seed)?;
        pre += g.adapted.first_return();
        post += g.query_return;
        let (unembedded, trained) = class_parts(&g.adapted, class)?;
        let pulled = trained.pullback(unembedded, &unembedded.tensors(), &g.gradients.grads)?;
        for (sum, (_, grad)) in sums.iter_mut().zip(&pulled.base) {
            *sum = (&*sum + grad)?;
        }
        match class_sums.get_mut(class) {
            Some(s) => {
                for (sum, grad) in s.iter_mut().zip(&pulled.embedding) {
                    *sum = (&*sum + grad)?;
                }
            }
            None => {
                class_sums.insert(class, pulled.embedding);
            }
        }
    }
    let mut mean: Vec<Tensor> = sums
        .iter()
        .map(|s| s / m)
        .collect::<candle_core::Result<_>>()?;
    for name in embeddings.names() {
        match (class_sums.get(name), embeddings.get(name)) {
            (Some(s), _) => {
                for t in s {
                    mean.push((t / m)?);
                }
            }
            (None, Some(e)) => mean.extend(zeros_like(e.vars().iter())?),
            (None, None) => {}
        }
    }
    // With K = 0 there is no inner rollout: the query return is the base's.
    let pre = if inner.steps == 0 { post } else { pre };
    Ok((mean, pre / m, post / m))
}

/// One Reptile step on `base` in place: `θ ← θ + ε · mean_i (θ'_i − θ)` over the tasks,
/// task `i` adapted with seed `seeds[i]`. Returns `(pre, post, ‖Δθ‖)`: the mean first and
/// last inner-rollout returns and the norm of the change.
///
/// # Errors
/// [`Error::InvalidConfig`] when `tasks` and `seeds` differ in length or are empty; as
/// [`adapt`].
pub fn reptile_step<D: TaskDistribution>(
    base: &Policy,
    tasks: &[Arc<D>],
    seeds: &[u64],
    inner: &InnerConfig,
    setup: &AdaptSetup,
    outer_lr: f64,
) -> Result<(f64, f64, f64)> {
    check_batch(tasks.len(), seeds.len())?;
    let params = base.parameters();
    let mut sums = zeros_like(params.iter().map(|(_, v)| v))?;
    let (mut pre, mut post) = (0.0, 0.0);
    for (task, &seed) in tasks.iter().zip(seeds) {
        let adapted = adapt(base, task.clone(), inner, setup, seed)?;
        pre += adapted.first_return();
        post += adapted.last_return();
        add_policy_change(&params, &adapted.policy, &mut sums)?;
    }
    let m = tasks.len() as f64;
    let steps = apply_scaled(params.iter().map(|(_, v)| v), &sums, outer_lr / m)?;
    let norm = mrl_ppo::global_norm(&steps)?;
    Ok((pre / m, post / m, norm))
}

/// `task` adapted through the embedding of `class`, which trains in the inner loop; returns
/// that (unchanged) embedding too.
fn adapt_in_class<'a, D: TaskDistribution>(
    base: &Policy,
    embeddings: &'a ClassEmbeddings,
    class: &str,
    task: &Arc<D>,
    seed: u64,
    inner: &InnerConfig,
    setup: &AdaptSetup,
) -> Result<(&'a ClassEmbedding, Adapted)> {
    let embedding = embeddings.get(class).ok_or_else(|| {
        Error::invalid("classes", class.to_owned(), "no embedding for this class")
    })?;
    let training = EmbeddingTraining::Adapted;
    let adapted = adapt_class(base, embedding, training, task.clone(), inner, setup, seed)?;
    Ok((embedding, adapted))
}

/// The adapted weights before composition and the trained embedding of an adaptation
/// through a class embedding.
fn class_parts<'a>(adapted: &'a Adapted, class: &str) -> Result<(&'a Policy, &'a ClassEmbedding)> {
    match (&adapted.unembedded, &adapted.embedding) {
        (Some(unembedded), Some(trained)) => Ok((unembedded, trained)),
        _ => Err(Error::invalid(
            "classes",
            class.to_owned(),
            "the inner loop returned no embedding",
        )),
    }
}

/// Zero tensors shaped like `vars`.
fn zeros_like<'a>(vars: impl Iterator<Item = &'a Var>) -> Result<Vec<Tensor>> {
    Ok(vars
        .map(|v| v.as_tensor().zeros_like())
        .collect::<candle_core::Result<_>>()?)
}

/// `sums += θ' − θ` parameter by parameter, `θ'` from `adapted`.
fn add_policy_change(
    params: &[(&'static str, Var)],
    adapted: &Policy,
    sums: &mut [Tensor],
) -> Result<()> {
    let mut adapted_tensors = adapted.tensors();
    for ((name, var), sum) in params.iter().zip(sums.iter_mut()) {
        let key: &str = name;
        let theta_prime = adapted_tensors.remove(key).ok_or_else(|| {
            Error::invalid(
                "policy",
                key.to_owned(),
                "adapted policy lacks a parameter of the base",
            )
        })?;
        *sum = (&*sum + (theta_prime - var.as_tensor())?)?;
    }
    Ok(())
}

/// `θ ← θ + scale · sum` for every var; returns the steps `scale · sum`.
fn apply_scaled<'a>(
    vars: impl Iterator<Item = &'a Var>,
    sums: &[Tensor],
    scale: f64,
) -> Result<Vec<Tensor>> {
    let steps: Vec<Tensor> = sums
        .iter()
        .map(|s| s * scale)
        .collect::<candle_core::Result<_>>()?;
    for (var, step) in vars.zip(&steps) {
        var.set(&(var.as_tensor() + step)?)?;
    }
    Ok(steps)
}

/// One Reptile step over tasks of several asset classes, on `base` and the classes'
/// embeddings in place: task `i` (of class `classes[i]`, adapted with seed `seeds[i]`) runs
/// the inner loop through its class's embedding, which trains beside the base
/// ([`adapt_class`]); then
///
/// ```text
/// θ   ← θ   + ε · mean_i (θ'_i − θ)              (θ'_i: adapted weights before the embedding)
/// E_c ← E_c + ε · mean_{i of class c} (E'_i − E_c)   (every class with a task in the batch)
/// ```
///
/// Returns `(pre, post, ‖Δ‖)` as [`reptile_step`], the norm over base and embeddings.
///
/// # Errors
/// As [`reptile_step`]; [`Error::InvalidConfig`] for a class without an embedding or
/// `classes` of another length than `tasks`.
#[allow(clippy::too_many_arguments)]
pub fn reptile_step_classes<D: TaskDistribution>(
    base: &Policy,
    embeddings: &ClassEmbeddings,
    tasks: &[Arc<D>],
    classes: &[&str],
    seeds: &[u64],
    inner: &InnerConfig,
    setup: &AdaptSetup,
    outer_lr: f64,
) -> Result<(f64, f64, f64)> {
    check_batch(tasks.len(), seeds.len())?;
    check_batch(tasks.len(), classes.len())?;
    let params = base.parameters();
    let mut sums = zeros_like(params.iter().map(|(_, v)| v))?;
    let mut class_sums: BTreeMap<&str, (Vec<Tensor>, usize)> = BTreeMap::new();
    let (mut pre, mut post) = (0.0, 0.0);
    for ((task, &seed), &class) in tasks.iter().zip(seeds).zip(classes) {
        let (embedding, adapted) =
            adapt_in_class(base, embeddings, class, task, seed, inner, setup)?;
        pre += adapted.first_return();
        post += adapted.last_return();
        let (unembedded, trained) = class_parts(&adapted, class)?;
        add_policy_change(&params, unembedded, &mut sums)?;
        let entry = match class_sums.entry(class) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert((zeros_like(embedding.vars().iter())?, 0))
            }
        };
        for ((sum, new), old) in entry.0.iter_mut().zip(trained.vars()).zip(embedding.vars()) {
            *sum = (&*sum + (new.as_tensor() - old.as_tensor())?)?;
        }
        entry.1 += 1;
    }
    let m = tasks.len() as f64;
    let mut steps = apply_scaled(params.iter().map(|(_, v)| v), &sums, outer_lr / m)?;
    for (class, (sums, count)) in &class_sums {
        if let Some(e) = embeddings.get(class) {
            let vars = e.vars();
            steps.extend(apply_scaled(vars.iter(), sums, outer_lr / *count as f64)?);
        }
    }
    let norm = mrl_ppo::global_norm(&steps)?;
    Ok((pre / m, post / m, norm))
}

/// The first-order MAML meta-gradient over the tasks: the mean of
/// [`fomaml_task_gradient`] over tasks (task `i` with seed `seeds[i]`), in
/// [`Policy::parameters`] order, not clipped. Also returns the mean first inner-rollout
/// return and the mean query return.
///
/// # Errors
/// As [`reptile_step`].
pub fn fomaml_gradient<D: TaskDistribution>(
    base: &Policy,
    tasks: &[Arc<D>],
    seeds: &[u64],
    inner: &InnerConfig,
    setup: &AdaptSetup,
) -> Result<(Vec<Tensor>, f64, f64)> {
    check_batch(tasks.len(), seeds.len())?;
    let m = tasks.len() as f64;
    let mut sums: Option<Vec<Tensor>> = None;
    let (mut pre, mut post) = (0.0, 0.0);
    for (task, &seed) in tasks.iter().zip(seeds) {
        let g = fomaml_task_gradient(base, task.clone(), inner, setup, seed)?;
        pre += g.adapted.first_return();
        post += g.query_return;
        let grads: Vec<Tensor> = g.gradients.grads.into_iter().map(|(_, t)| t).collect();
        sums = Some(match sums {
            None => grads,
            Some(s) => s
                .iter()
                .zip(&grads)
                .map(|(a, b)| a + b)
                .collect::<candle_core::Result<_>>()?,
        });
    }
    let mean = sums
        .unwrap_or_default()
        .iter()
        .map(|s| s / m)
        .collect::<candle_core::Result<_>>()?;
    // With K = 0 there is no inner rollout: the query return is the base's.
    let pre = if inner.steps == 0 { post } else { pre };
    Ok((mean, pre / m, post / m))
}

fn check_batch(tasks: usize, seeds: usize) -> Result<()> {
    if tasks == 0 || tasks != seeds {
        return Err(Error::invalid(
            "tasks",
            format!("{tasks} tasks, {seeds} seeds"),
            "expected at least one task and one seed per task",
        ));
    }
    Ok(())
}

/// The outcome of [`meta_train`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetaSummary {
    /// Meta-iterations run.
    pub iterations: u64,
    /// Mean post-adaptation return of the last 10 % of the iterations.
    pub tail_post_return: f64,
    /// Mean pre-adaptation return of the last 10 % of the iterations.
    pub tail_pre_return: f64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// The checkpoint directory.
    pub checkpoint: PathBuf,
}

/// A running meta-training job over a task distribution `D` whose envs can be cloned, and
/// optionally over the task distributions of several asset classes with their embeddings.
pub struct MetaLearner<D: TaskDistribution> {
    config: MetaTrainConfig,
    dist: Arc<D>,
    /// Each class's name and training tasks, in name order (empty without `[classes]`).
    classes: Vec<(String, Arc<D>)>,
    embeddings: ClassEmbeddings,
    base: Policy,
    params: Vec<Var>,
    adam: Option<Adam>,
    setup: AdaptSetup,
    task_rng: ChaCha8Rng,
    iteration: u64,
}

impl<D> MetaLearner<D>
where
    D: TaskDistribution,
    D::Env: Clone + Sync,
{
    /// A fresh learner: the base initialised from the run's seed, normalisation statistics
    /// fitted on `normalize.warmup_rounds` rollouts of the training split when the run
    /// normalises (then kept fixed: a `running` mode is treated as `fixed`).
    ///
    /// # Errors
    /// Config, env, agent and PPO errors; [`Error::InvalidConfig`] naming `classes` for a
    /// config with `[classes]` (use [`MetaLearner::new_with_classes`]).
    pub fn new(config: MetaTrainConfig, dist: Arc<D>) -> Result<Self> {
        Self::new_with_classes(config, dist, Vec::new())
    }

    /// [`MetaLearner::new`] over asset classes: every iteration draws each task's class
    /// uniformly, then the task from that class's distribution in `classes` (one per
    /// `[classes]` table, by name), and meta-learns the class embeddings with the base
    /// ([`reptile_step_classes`], or [`fomaml_gradient_classes`] and the outer Adam over
    /// base and embeddings); each embedding starts as zero padding. The input
    /// statistics are fitted on `dist` (the config's `[task]`).
    ///
    /// # Errors
    /// As [`MetaLearner::new`]; [`Error::InvalidConfig`] naming `classes` when `classes`
    /// does not hold exactly the config's classes.
    pub fn new_with_classes(
        config: MetaTrainConfig,
        dist: Arc<D>,
        classes: Vec<(String, Arc<D>)>,
    ) -> Result<Self> {
        config.meta.validate()?;
        config.train.validate()?;
        config.validate_classes()?;
        let classes = check_classes(&config, classes)?;
        let mut master = ChaCha8Rng::seed_from_u64(config.train.seed);
        let (weights_seed, warmup_seed, task_seed) =
            (master.next_u64(), master.next_u64(), master.next_u64());
        let agent = agent_config(&config.train, dist.as_ref());
        let mut base = Policy::new(&agent, &Device::Cpu, weights_seed)?;
        let return_scale = warm_up(&config.train, &dist, &mut base, warmup_seed)?;
        let embeddings = ClassEmbeddings::padding(&config.classes, &Device::Cpu)?;
        Self::assemble(
            config,
            dist,
            (classes, embeddings),
            base,
            return_scale,
            ChaCha8Rng::seed_from_u64(task_seed),
        )
    }

    /// Continues the run in `run_dir` from its last checkpoint, exactly where it stopped:
    /// the base's weights and input statistics, the return scale, the task stream, the
    /// outer Adam's moments and step, the iteration count. `config` must equal the saved
    /// `config.toml` and `meta.toml` except for `meta.iterations`.
    ///
    /// # Errors
    /// [`Error::NothingToResume`] when `run_dir` holds no checkpoint of meta-training (or
    /// one written before resuming existed), [`Error::InvalidConfig`] naming `config` when
    /// the config differs from the run's; I/O, JSON, agent and PPO errors.
    pub fn resume(config: MetaTrainConfig, dist: Arc<D>, run_dir: &Path) -> Result<Self> {
        Self::resume_with_classes(config, dist, Vec::new(), run_dir)
    }

    /// [`MetaLearner::resume`] of a run over asset classes
    /// ([`MetaLearner::new_with_classes`]); the class embeddings come from the checkpoint.
    ///
    /// # Errors
    /// As [`MetaLearner::resume`]; [`Error::EmbeddingMismatch`] when the checkpoint's
    /// embeddings do not fit the config's classes.
    pub fn resume_with_classes(
        config: MetaTrainConfig,
        dist: Arc<D>,
        classes: Vec<(String, Arc<D>)>,
        run_dir: &Path,
    ) -> Result<Self> {
        config.meta.validate()?;
        config.train.validate()?;
        config.validate_classes()?;
        let classes = check_classes(&config, classes)?;
        let dir = mrl_ppo::checkpoint_dir(run_dir);
        let state_path = dir.join(FEWSHOT_STATE_FILE);
        let nothing = |reason| Error::NothingToResume {
            dir: run_dir.to_path_buf(),
            reason,
        };
        if !state_path.exists() {
            return Err(nothing("holds no meta-training checkpoint to resume"));
        }
        let state: FewshotState = read_json(&state_path)?;
        let Some(task_rng) = state.task_rng.clone() else {
            return Err(nothing(
                "holds a checkpoint written before meta-training could resume (no task stream)",
            ));
        };
        check_same_config(&config, run_dir)?;
        if state.format != FEWSHOT_STATE_FORMAT || state.algorithm != config.meta.algorithm {
            return Err(Error::invalid(
                "checkpoint",
                state_path.display().to_string(),
                "not a checkpoint of this config's meta-learner",
            ));
        }
        let base = mrl_ppo::load_policy(&dir, &Device::Cpu)?;
        let embeddings = if config.classes.is_empty() {
            ClassEmbeddings::default()
        } else {
            ClassEmbeddings::load(&dir, &config.classes)?
        };
        let mut learner = Self::assemble(
            config,
            dist,
            (classes, embeddings),
            base,
            state.return_scale,
            task_rng,
        )?;
        if let Some(adam) = &mut learner.adam {
            let path = dir.join(META_OPTIMIZER_FILE);
            let bytes = fs::read(&path).map_err(Error::io(&path))?;
            let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)?;
            adam.load_state(tensors, state.adam_step)?;
        }
        learner.iteration = state.iteration;
        tracing::info!(iteration = state.iteration, dir = %dir.display(), "resumed meta-training");
        Ok(learner)
    }

    /// The learner around `base` and the classes' tasks and embeddings: its parameters
    /// (the base's, then every embedding's), the outer Adam (FOMAML), the setup.
    fn assemble(
        config: MetaTrainConfig,
        dist: Arc<D>,
        (classes, embeddings): (Vec<(String, Arc<D>)>, ClassEmbeddings),
        base: Policy,
        return_scale: f64,
        task_rng: ChaCha8Rng,
    ) -> Result<Self> {
        let mut params: Vec<Var> = base.parameters().into_iter().map(|(_, v)| v).collect();
        params.extend(embeddings.vars());
        let adam = match config.meta.algorithm {
            MetaAlgorithm::Fomaml => {
                let mut names: Vec<String> = base
                    .parameters()
                    .into_iter()
                    .map(|(n, _)| n.to_string())
                    .collect();
                names.extend(embeddings.param_names());
                Some(Adam::new(
                    names,
                    &params,
                    AdamConfig {
                        lr: config.meta.outer_lr(&config.train),
                        ..config.train.optim
                    },
                )?)
            }
            MetaAlgorithm::Reptile => None,
        };
        let setup = AdaptSetup::from_train(&config.train, return_scale);
        Ok(Self {
            config,
            dist,
            classes,
            embeddings,
            base,
            params,
            adam,
            setup,
            task_rng,
            iteration: 0,
        })
    }

    /// Meta-iterations completed.
    pub fn iteration(&self) -> u64 {
        self.iteration
    }

    /// The base being meta-learned.
    pub fn policy(&self) -> &Policy {
        &self.base
    }

    /// The inner-loop setup (with the fitted return scale).
    pub fn setup(&self) -> &AdaptSetup {
        &self.setup
    }

    /// The class embeddings being meta-learned (empty without `[classes]`).
    pub fn embeddings(&self) -> &ClassEmbeddings {
        &self.embeddings
    }

    /// One meta-iteration: draw `meta_batch` tasks of the training split, adapt, update the
    /// base.
    ///
    /// # Errors
    /// As [`reptile_step`] and [`fomaml_gradient`].
    pub fn step(&mut self) -> Result<MetaIterationStats> {
        let start = Instant::now();
        let meta = &self.config.meta;
        let mut tasks = Vec::with_capacity(meta.meta_batch);
        let mut seeds = Vec::with_capacity(meta.meta_batch);
        let mut task_classes: Vec<&str> = Vec::with_capacity(meta.meta_batch);
        for _ in 0..meta.meta_batch {
            let dist = if self.classes.is_empty() {
                self.dist.as_ref()
            } else {
                let (name, dist) = &self.classes[self.task_rng.random_range(0..self.classes.len())];
                task_classes.push(name);
                dist.as_ref()
            };
            let task_seed = self.task_rng.next_u64();
            tasks.push(Arc::new(FixedTask::sample(dist, Split::Train, task_seed)?));
            seeds.push(self.task_rng.next_u64());
        }
        let outer_lr = meta.outer_lr(&self.config.train);
        let (pre, post, update_norm) = match meta.algorithm {
            MetaAlgorithm::Reptile if !self.classes.is_empty() => reptile_step_classes(
                &self.base,
                &self.embeddings,
                &tasks,
                &task_classes,
                &seeds,
                &meta.inner,
                &self.setup,
                outer_lr,
            )?,
            MetaAlgorithm::Reptile => reptile_step(
                &self.base,
                &tasks,
                &seeds,
                &meta.inner,
                &self.setup,
                outer_lr,
            )?,
            MetaAlgorithm::Fomaml => {
                let (mut grads, pre, post) = if self.classes.is_empty() {
                    fomaml_gradient(&self.base, &tasks, &seeds, &meta.inner, &self.setup)?
                } else {
                    fomaml_gradient_classes(
                        &self.base,
                        &self.embeddings,
                        &tasks,
                        &task_classes,
                        &seeds,
                        &meta.inner,
                        &self.setup,
                    )?
                };
                let norm = clip_grad_norm(&mut grads, self.setup.ppo.max_grad_norm)?;
                if !norm.is_finite() {
                    return Err(Error::NonFinite {
                        what: "gradient norm",
                        step: 0,
                    });
                }
                let before: Vec<Tensor> = self
                    .params
                    .iter()
                    .map(|v| v.as_tensor().copy())
                    .collect::<candle_core::Result<_>>()?;
                if let Some(adam) = &mut self.adam {
                    adam.step(&self.params, &grads, outer_lr)?;
                }
                let change: Vec<Tensor> = self
                    .params
                    .iter()
                    .zip(&before)
                    .map(|(v, b)| v.as_tensor() - b)
                    .collect::<candle_core::Result<_>>()?;
                (pre, post, mrl_ppo::global_norm(&change)?)
            }
        };
        let stats = MetaIterationStats {
            iteration: self.iteration,
            pre_return: pre,
            post_return: post,
            update_norm,
            seconds: start.elapsed().as_secs_f64(),
        };
        self.iteration += 1;
        tracing::info!(
            iteration = stats.iteration,
            pre_return = stats.pre_return,
            post_return = stats.post_return,
            update_norm = stats.update_norm,
            "meta-iteration"
        );
        Ok(stats)
    }

    /// Writes the base as a checkpoint `mrl backtest` and `mrl adapt` read, with what
    /// [`MetaLearner::resume`] needs: `run_dir/checkpoint/{model.safetensors, agent.json,
    /// fewshot.json}` and, for first-order MAML, `optimizer.safetensors`. The files are
    /// written into a temporary directory that then replaces `checkpoint/` (the previous one
    /// kept as `.checkpoint.old` until the swap is done), so a crash leaves the old or the
    /// new checkpoint, never a mix.
    ///
    /// # Errors
    /// I/O, JSON, safetensors and agent errors.
    pub fn save_checkpoint(&self, run_dir: &Path) -> Result<PathBuf> {
        let tmp = run_dir.join(TMP_DIR);
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(Error::io(&tmp))?;
        }
        fs::create_dir_all(&tmp).map_err(Error::io(&tmp))?;
        write_atomic(&tmp.join("model.safetensors"), &self.base.to_safetensors()?)?;
        write_json(&tmp.join("agent.json"), &self.base.checkpoint_meta())?;
        if !self.embeddings.is_empty() {
            self.embeddings.save(&tmp)?;
        }
        if let Some(adam) = &self.adam {
            let tensors: std::collections::HashMap<String, Tensor> =
                adam.state_tensors().into_iter().collect();
            candle_core::safetensors::save(&tensors, tmp.join(META_OPTIMIZER_FILE))?;
        }
        let state = FewshotState {
            format: FEWSHOT_STATE_FORMAT.to_owned(),
            algorithm: self.config.meta.algorithm,
            iteration: self.iteration,
            return_scale: self.setup.return_scale,
            task_rng: Some(self.task_rng.clone()),
            adam_step: self.adam.as_ref().map_or(0, Adam::step_count),
        };
        write_json(&tmp.join(FEWSHOT_STATE_FILE), &state)?;
        Ok(mrl_ppo::swap_in_checkpoint(run_dir, &tmp)?)
    }
}

/// Checks that `config` is the run's in `run_dir` (its `config.toml` and `meta.toml`) but for
/// `meta.iterations`.
fn check_same_config(config: &MetaTrainConfig, run_dir: &Path) -> Result<()> {
    let differs = |file: &str| {
        Error::invalid(
            "config",
            run_dir.join(file).display().to_string(),
            "differs from the config given; only meta.iterations may change on resume",
        )
    };
    let saved = TrainConfig::load(&run_dir.join(CONFIG_FILE))?;
    if saved != config.train {
        return Err(differs(CONFIG_FILE));
    }
    let path = run_dir.join(META_FILE);
    let text = fs::read_to_string(&path).map_err(Error::io(&path))?;
    let saved: MetaConfig = toml::from_str(&text).map_err(|source| Error::Toml {
        path: path.clone(),
        source,
    })?;
    if (MetaConfig {
        iterations: config.meta.iterations,
        ..saved
    }) != config.meta
    {
        return Err(differs(META_FILE));
    }
    let path = run_dir.join(CLASSES_FILE);
    let saved: BTreeMap<String, ClassConfig> = if path.exists() {
        let text = fs::read_to_string(&path).map_err(Error::io(&path))?;
        toml::from_str(&text).map_err(|source| Error::Toml {
            path: path.clone(),
            source,
        })?
    } else {
        BTreeMap::new()
    };
    if saved != config.classes {
        return Err(differs(CLASSES_FILE));
    }
    Ok(())
}

/// `classes` sorted by name, checked to hold exactly the config's classes.
fn check_classes<D>(
    config: &MetaTrainConfig,
    mut classes: Vec<(String, Arc<D>)>,
) -> Result<Vec<(String, Arc<D>)>> {
    classes.sort_by(|a, b| a.0.cmp(&b.0));
    let given: Vec<&str> = classes.iter().map(|(n, _)| n.as_str()).collect();
    let wanted: Vec<&str> = config.classes.keys().map(String::as_str).collect();
    if given != wanted {
        return Err(Error::invalid(
            "classes",
            format!("{given:?}"),
            "the task distributions given do not match the config's [classes] tables",
        ));
    }
    Ok(classes)
}

/// Fits the normalisation statistics on rollouts of the training split with the initial
/// policy (as `mrl train` does before its first iteration) and hands the input statistics
/// to `policy`; returns the return scale (1 without return normalisation).
fn warm_up<D: TaskDistribution>(
    train: &TrainConfig,
    dist: &Arc<D>,
    policy: &mut Policy,
    seed: u64,
) -> Result<f64> {
    let normalize = &train.normalize;
    if normalize.is_off() {
        return Ok(1.0);
    }
    let mut seeds = ChaCha8Rng::seed_from_u64(seed);
    let mut trials = VecTrials::new(
        dist.clone(),
        train.n_envs,
        train.task.trial(),
        Split::Train,
        seeds.next_u64(),
    )?;
    let mut workspace = RolloutWorkspace::new(policy, train.n_envs)?;
    let obs_dim = policy.config().obs_dim;
    let mut buffer = RolloutBuffer::new(train.n_envs, trials.max_trial_len(), obs_dim);
    let mut rng = ChaCha8Rng::seed_from_u64(seeds.next_u64());
    let mut norm = NormState::new(obs_dim);
    for _ in 0..normalize.warmup_rounds.max(1) {
        collect_rollout(
            &mut trials,
            &mut workspace,
            policy,
            &mut buffer,
            &mut rng,
            train.ppo.gae_scope,
        )?;
        norm.observe_inputs(&buffer)?;
        norm.observe_returns(&buffer, train.gae.gamma)?;
    }
    if normalize.inputs != NormMode::None {
        policy.set_input_norm(Some(norm.input_norm(normalize.clip)))?;
    }
    Ok(if normalize.returns {
        norm.return_scale()
    } else {
        1.0
    })
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(write_atomic(path, &bytes)?)
}

/// Runs meta-training as `config` says into `out_dir` (`config.toml` with the train part,
/// `meta.toml`, `meta_log.jsonl`, `checkpoint/`); `progress` sees every iteration.
///
/// # Errors
/// [`Error::InvalidConfig`] when `out_dir` holds a checkpoint (continue it with
/// [`meta_train_resume`]); as [`MetaLearner::new`] and [`MetaLearner::step`].
pub fn meta_train(
    config: &MetaTrainConfig,
    out_dir: &Path,
    progress: impl FnMut(&MetaIterationStats),
) -> Result<MetaSummary> {
    on_task_kind(config, out_dir, false, progress)
}

/// Continues the meta-training run in `out_dir` from its last checkpoint up to
/// `config.meta.iterations`, exactly as if it had not stopped: the result equals an
/// uninterrupted [`meta_train`], byte for byte. Log lines written after the checkpoint are
/// dropped (those iterations run again). `config` must be the run's but for
/// `meta.iterations`, which may grow.
///
/// # Errors
/// As [`MetaLearner::resume`]; [`Error::InvalidConfig`] naming `meta.iterations` when it is
/// below the iterations the checkpoint holds; as [`MetaLearner::step`].
pub fn meta_train_resume(
    config: &MetaTrainConfig,
    out_dir: &Path,
    progress: impl FnMut(&MetaIterationStats),
) -> Result<MetaSummary> {
    on_task_kind(config, out_dir, true, progress)
}

/// Builds the config's task distribution and runs [`meta_train_on`] or
/// [`meta_train_resume_on`] on it.
fn on_task_kind(
    config: &MetaTrainConfig,
    out_dir: &Path,
    resume: bool,
    progress: impl FnMut(&MetaIterationStats),
) -> Result<MetaSummary> {
    fn run<D>(
        config: &MetaTrainConfig,
        dist: Arc<D>,
        classes: Vec<(String, Arc<D>)>,
        out_dir: &Path,
        resume: bool,
        progress: impl FnMut(&MetaIterationStats),
    ) -> Result<MetaSummary>
    where
        D: TaskDistribution,
        D::Env: Clone + Sync + Env,
    {
        if resume {
            meta_train_resume_on(config, dist, classes, out_dir, progress)
        } else {
            meta_train_on(config, dist, classes, out_dir, progress)
        }
    }
    match &config.train.task.kind {
        TaskKind::Bandits {
            arms,
            pulls,
            observe_time,
        } => {
            let dist = BanditDistribution::new(*arms, *pulls)?.with_time_observation(*observe_time);
            run(
                config,
                Arc::new(dist),
                Vec::new(),
                out_dir,
                resume,
                progress,
            )
        }
        kind => {
            let dist = trading_tasks(kind, &config.train.task.trading)?;
            let classes = class_tasks(config)?;
            run(config, Arc::new(dist), classes, out_dir, resume, progress)
        }
    }
}

/// The training tasks of every `[classes]` table, by name: the class's own `task`, or the
/// config's `[task]`.
///
/// # Errors
/// As [`trading_tasks`].
pub fn class_tasks(config: &MetaTrainConfig) -> Result<Vec<(String, Arc<mrl_env::DynTasks>)>> {
    config
        .classes
        .iter()
        .map(|(name, class)| {
            let kind = class.task.as_ref().unwrap_or(&config.train.task.kind);
            let dist = trading_tasks(kind, &config.train.task.trading)?;
            Ok((name.clone(), Arc::new(dist)))
        })
        .collect()
}

/// [`meta_train`] on an explicit task distribution, and with `[classes]` on each class's
/// (by name, as [`class_tasks`] builds them; empty without classes).
///
/// # Errors
/// As [`meta_train`].
pub fn meta_train_on<D>(
    config: &MetaTrainConfig,
    dist: Arc<D>,
    classes: Vec<(String, Arc<D>)>,
    out_dir: &Path,
    progress: impl FnMut(&MetaIterationStats),
) -> Result<MetaSummary>
where
    D: TaskDistribution,
    D::Env: Clone + Sync + Env,
{
    if out_dir.join(CHECKPOINT_DIR).exists() {
        return Err(Error::invalid(
            "out",
            out_dir.display().to_string(),
            "holds a checkpoint already; choose another directory or resume it",
        ));
    }
    let start = Instant::now();
    fs::create_dir_all(out_dir).map_err(Error::io(out_dir))?;
    write_atomic(
        &out_dir.join(CONFIG_FILE),
        config.train.to_toml().as_bytes(),
    )?;
    write_meta_toml(config, out_dir)?;
    write_atomic(&out_dir.join(META_LOG_FILE), b"")?;
    let learner = MetaLearner::new_with_classes(config.clone(), dist, classes)?;
    run_iterations(learner, config, out_dir, Vec::new(), start, progress)
}

/// [`meta_train_resume`] on an explicit task distribution and the classes' (as
/// [`meta_train_on`]).
///
/// # Errors
/// As [`meta_train_resume`].
pub fn meta_train_resume_on<D>(
    config: &MetaTrainConfig,
    dist: Arc<D>,
    classes: Vec<(String, Arc<D>)>,
    out_dir: &Path,
    progress: impl FnMut(&MetaIterationStats),
) -> Result<MetaSummary>
where
    D: TaskDistribution,
    D::Env: Clone + Sync + Env,
{
    let start = Instant::now();
    let learner = MetaLearner::resume_with_classes(config.clone(), dist, classes, out_dir)?;
    let done = learner.iteration();
    if config.meta.iterations < done {
        return Err(Error::invalid(
            "meta.iterations",
            config.meta.iterations.to_string(),
            "below the iterations the checkpoint holds already",
        ));
    }
    // The log keeps the iterations the checkpoint holds; later ones run again.
    let log_path = out_dir.join(META_LOG_FILE);
    let text = fs::read_to_string(&log_path).map_err(Error::io(&log_path))?;
    let mut kept = String::new();
    let mut history = Vec::new();
    for line in text.lines().take(done as usize) {
        let stats: MetaIterationStats =
            serde_json::from_str(line).map_err(|source| Error::Json {
                path: log_path.clone(),
                source,
            })?;
        history.push((stats.pre_return, stats.post_return));
        kept.push_str(line);
        kept.push('\n');
    }
    if history.len() as u64 != done {
        return Err(Error::invalid(
            "out",
            log_path.display().to_string(),
            "holds fewer log lines than the checkpoint's iterations",
        ));
    }
    write_atomic(&log_path, kept.as_bytes())?;
    write_meta_toml(config, out_dir)?;
    run_iterations(learner, config, out_dir, history, start, progress)
}

fn write_meta_toml(config: &MetaTrainConfig, out_dir: &Path) -> Result<()> {
    let meta_toml = toml::to_string_pretty(&config.meta).unwrap_or_default();
    write_atomic(&out_dir.join(META_FILE), meta_toml.as_bytes())?;
    if !config.classes.is_empty() {
        let classes = toml::to_string_pretty(&config.classes).unwrap_or_default();
        write_atomic(&out_dir.join(CLASSES_FILE), classes.as_bytes())?;
    }
    Ok(())
}

/// The iterations from the learner's up to `config.meta.iterations`, each logged, with a
/// checkpoint every `checkpoint_every` and at the end; `history` holds the (pre, post)
/// returns of the iterations before.
fn run_iterations<D>(
    mut learner: MetaLearner<D>,
    config: &MetaTrainConfig,
    out_dir: &Path,
    mut history: Vec<(f64, f64)>,
    start: Instant,
    mut progress: impl FnMut(&MetaIterationStats),
) -> Result<MetaSummary>
where
    D: TaskDistribution,
    D::Env: Clone + Sync + Env,
{
    let log_path = out_dir.join(META_LOG_FILE);
    let mut log = fs::OpenOptions::new()
        .append(true)
        .open(&log_path)
        .map_err(Error::io(&log_path))?;
    let iterations = config.meta.iterations;
    let mut checkpoint = out_dir.join(CHECKPOINT_DIR);
    for it in learner.iteration()..iterations {
        let stats = learner.step()?;
        let line = serde_json::to_string(&stats).map_err(|source| Error::Json {
            path: log_path.clone(),
            source,
        })?;
        writeln!(log, "{line}").map_err(Error::io(&log_path))?;
        progress(&stats);
        history.push((stats.pre_return, stats.post_return));
        if (it + 1).is_multiple_of(config.meta.checkpoint_every) || it + 1 == iterations {
            checkpoint = learner.save_checkpoint(out_dir)?;
        }
    }
    let tail = history.len().div_ceil(10).max(1).min(history.len());
    let last = &history[history.len() - tail..];
    let mean = |f: fn(&(f64, f64)) -> f64| last.iter().map(f).sum::<f64>() / last.len() as f64;
    Ok(MetaSummary {
        iterations,
        tail_post_return: mean(|p| p.1),
        tail_pre_return: mean(|p| p.0),
        seconds: start.elapsed().as_secs_f64(),
        checkpoint,
    })
}
