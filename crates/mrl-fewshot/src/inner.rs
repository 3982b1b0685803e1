//! The inner loop: K gradient steps that adapt a policy to one task, on that task's own
//! rollouts only.
//!
//! # The step
//!
//! One inner step is one gradient step of PPO's clipped objective (Schulman et al. 2017;
//! value loss and entropy bonus as in meta-training) on whole trials of the task:
//!
//! ```text
//! every `steps_per_rollout` steps: B trials on the task with the current parameters
//!                                  → GAE over each trial → (normalised) advantages
//! every step:  g = ∇θ L_PPO(batch)  → clip by global norm → SGD or Adam step on θ
//! ```
//!
//! PPO rather than a plain policy gradient because it is what the base was meta-trained
//! with (same loss, same advantage estimator, same value head), and because its clipped
//! ratio keeps several steps on one rollout safe. With `steps_per_rollout = 1` (the default)
//! every step sees a fresh rollout, the ratio is 1 and the step is the advantage
//! actor-critic gradient with PPO's value and entropy terms.
//!
//! `θ` is either every parameter of the policy or only the factors of
//! [`LowRankAdapter`]s on a frozen base ([`InnerConfig::adapter`]).
//!
//! # Determinism
//!
//! Everything is drawn from streams derived from one `u64` seed ([`TaskSeeds`]): the
//! trials' episode starts, the sampled actions and the adapters' initial `A`. The same
//! seed, base and task give the same adapted weights, bit for bit.

use std::sync::Arc;

use candle_core::{Tensor, Var};
use mrl_agent::{Policy, RolloutWorkspace};
use mrl_env::{Split, TaskDistribution, TrialConfig, VecTrials};
use mrl_ppo::{
    Adam, AdamConfig, GaeConfig, PpoBatch, PpoConfig, PpoLossStats, RolloutBuffer, RolloutStats,
    TrainConfig, clip_grad_norm, collect_rollout, normalize_advantages, ppo_batch, ppo_gradients,
    trial_advantages,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::adapter::{LoraConfig, LowRankAdapter};
use crate::embedding::{ClassEmbedding, EmbeddingTraining};
use crate::{Error, Result};

/// The optimiser of the inner loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum InnerOptimizer {
    /// `θ ← θ − α·g` (MAML's inner update, Finn et al. 2017).
    Sgd,
    /// Adam with PyTorch's update and fresh moments per task (Reptile's inner optimiser,
    /// Nichol et al. 2018).
    #[default]
    Adam,
}

/// Settings of the inner loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InnerConfig {
    /// Gradient steps K (default 10).
    pub steps: usize,
    /// Trials per rollout on the task (default 8).
    pub n_envs: usize,
    /// Gradient steps per rollout: a fresh rollout with the current parameters every this
    /// many steps (default 1).
    pub steps_per_rollout: usize,
    /// Inner learning rate α (default 1e-3).
    pub lr: f64,
    /// Inner optimiser (default Adam).
    pub optimizer: InnerOptimizer,
    /// Low-rank adapters on a frozen base instead of every parameter (default: none, every
    /// parameter adapts).
    pub adapter: Option<LoraConfig>,
    /// With class embeddings (`[classes]`): whether adapting to a new asset also trains its
    /// class's meta-learned embedding (default frozen). Meta-training always trains it, and
    /// so does the inner loop of a class without a meta-learned embedding.
    #[serde(skip_serializing_if = "EmbeddingTraining::is_frozen")]
    pub embedding: EmbeddingTraining,
}

impl Default for InnerConfig {
    fn default() -> Self {
        Self {
            steps: 10,
            n_envs: 8,
            steps_per_rollout: 1,
            lr: 1e-3,
            optimizer: InnerOptimizer::Adam,
            adapter: None,
            embedding: EmbeddingTraining::Frozen,
        }
    }
}

impl InnerConfig {
    /// Checks every field.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.n_envs == 0 {
            return Err(Error::invalid(
                "inner.n_envs",
                "0".into(),
                "must be at least 1",
            ));
        }
        if self.steps_per_rollout == 0 {
            return Err(Error::invalid(
                "inner.steps_per_rollout",
                "0".into(),
                "must be at least 1",
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::invalid(
                "inner.lr",
                self.lr.to_string(),
                "must be finite and > 0",
            ));
        }
        if let Some(adapter) = &self.adapter {
            adapter.validate()?;
        }
        Ok(())
    }
}

/// What the inner loop takes from the run that trained the base: the PPO loss and
/// advantage settings, GAE, the trial structure and the return scale.
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptSetup {
    /// Loss coefficients, gradient clip, advantage normalisation, GAE scope, reward scale.
    pub ppo: PpoConfig,
    /// GAE γ and λ.
    pub gae: GaeConfig,
    /// Episodes per trial and the reward feedback scale.
    pub trial: TrialConfig,
    /// Factor on the rewards before GAE on top of `ppo.reward_scale` (the run's return
    /// normalisation; 1 without).
    pub return_scale: f64,
}

impl AdaptSetup {
    /// The setup of a training run, with the return scale its normalisation reached.
    pub fn from_train(train: &TrainConfig, return_scale: f64) -> Self {
        Self {
            ppo: train.ppo.clone(),
            gae: train.gae,
            trial: train.task.trial(),
            return_scale,
        }
    }
}

/// Seeds of one task's adaptation, derived in a fixed order from one `u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskSeeds {
    /// The inner rollouts' trials (episode starts).
    pub trials: u64,
    /// The inner rollouts' sampled actions.
    pub sampling: u64,
    /// The adapters' initial `A`.
    pub adapter: u64,
    /// The query rollout's trials (first-order MAML).
    pub query_trials: u64,
    /// The query rollout's sampled actions.
    pub query_sampling: u64,
}

impl TaskSeeds {
    /// The seeds of `seed`.
    pub fn new(seed: u64) -> Self {
        let mut master = ChaCha8Rng::seed_from_u64(seed);
        Self {
            trials: master.next_u64(),
            sampling: master.next_u64(),
            adapter: master.next_u64(),
            query_trials: master.next_u64(),
            query_sampling: master.next_u64(),
        }
    }
}

/// Rollouts of whole trials on one task, and the PPO batch of each.
pub struct TaskRollouts<D: TaskDistribution> {
    trials: VecTrials<D>,
    workspace: RolloutWorkspace,
    buffer: RolloutBuffer,
    rng: ChaCha8Rng,
}

impl<D: TaskDistribution> TaskRollouts<D> {
    /// `n_envs` trials of `task` for policies shaped like `policy`, episode starts from
    /// `trials_seed`, actions sampled from `sampling_seed`.
    ///
    /// # Errors
    /// Env and agent errors.
    pub fn new(
        task: Arc<D>,
        policy: &Policy,
        n_envs: usize,
        trial: TrialConfig,
        trials_seed: u64,
        sampling_seed: u64,
    ) -> Result<Self> {
        let trials = VecTrials::new(task, n_envs, trial, Split::Train, trials_seed)?;
        let workspace = RolloutWorkspace::new(policy, n_envs)?;
        let buffer = RolloutBuffer::new(n_envs, trials.max_trial_len(), policy.config().obs_dim);
        Ok(Self {
            trials,
            workspace,
            buffer,
            rng: ChaCha8Rng::seed_from_u64(sampling_seed),
        })
    }

    /// One round of trials with `policy` (sampled actions), then GAE and the batch of every
    /// trial, advantages normalised when `setup.ppo` says so.
    ///
    /// # Errors
    /// Env, agent and PPO errors.
    pub fn collect(
        &mut self,
        policy: &Policy,
        setup: &AdaptSetup,
    ) -> Result<(RolloutStats, PpoBatch)> {
        self.workspace.refresh(policy)?;
        let stats = collect_rollout(
            &mut self.trials,
            &mut self.workspace,
            policy,
            &mut self.buffer,
            &mut self.rng,
            setup.ppo.gae_scope,
        )?;
        let (mut advantages, returns) = trial_advantages(
            &self.buffer,
            &setup.gae,
            setup.ppo.gae_scope,
            setup.ppo.reward_scale * setup.return_scale,
        )?;
        if setup.ppo.normalize_advantages {
            normalize_advantages(&mut advantages, Some(&self.buffer.valid_trial_major()));
        }
        let all: Vec<usize> = (0..self.buffer.n_trials()).collect();
        let batch = ppo_batch(policy, &self.buffer, &all, &advantages, &returns)?;
        Ok((stats, batch))
    }
}

/// What one inner step did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct InnerStep {
    /// The step (0-based).
    pub step: usize,
    /// Mean trial return of the rollout collected before this step, if one was.
    pub rollout_return: Option<f64>,
    /// Loss parts before the step.
    pub loss: PpoLossStats,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
}

/// A policy adapted to one task.
#[derive(Debug)]
pub struct Adapted {
    /// The adapted policy (for adapters: the base with the merged weights), a new policy
    /// sharing nothing with the base.
    pub policy: Policy,
    /// The trained adapters, when the inner loop used them.
    pub adapter: Option<LowRankAdapter>,
    /// One entry per inner step.
    pub steps: Vec<InnerStep>,
    /// The class embedding after the inner loop (trained or as given), when the
    /// adaptation ran through one ([`adapt_class`]); `policy` is then the composed policy.
    pub embedding: Option<ClassEmbedding>,
    /// With a class embedding: the adapted weights before composition (the shared base's
    /// space, adapters merged), what Reptile moves the base towards.
    pub unembedded: Option<Policy>,
}

impl Adapted {
    /// Mean trial return of the first rollout (the base's, before any step); NaN for
    /// `K = 0`.
    pub fn first_return(&self) -> f64 {
        self.returns().first().copied().unwrap_or(f64::NAN)
    }

    /// Mean trial return of the last rollout of the inner loop; NaN for `K = 0`.
    pub fn last_return(&self) -> f64 {
        self.returns().last().copied().unwrap_or(f64::NAN)
    }

    fn returns(&self) -> Vec<f64> {
        self.steps.iter().filter_map(|s| s.rollout_return).collect()
    }
}

/// A copy of `policy` that shares no `Var` with it.
///
/// # Errors
/// Agent errors.
pub fn detached_copy(policy: &Policy) -> Result<Policy> {
    Ok(Policy::from_tensors(
        policy.config(),
        &policy.tensors(),
        policy.device(),
    )?)
}

/// Adapts `base` to `task` with `inner.steps` gradient steps (see the module docs); `base`
/// is not modified. `seed` fixes every random draw ([`TaskSeeds`]).
///
/// # Errors
/// [`Error::InvalidConfig`], [`Error::NonFinite`] when a loss or gradient is NaN or
/// infinite, env, agent and PPO errors.
pub fn adapt<D: TaskDistribution>(
    base: &Policy,
    task: Arc<D>,
    inner: &InnerConfig,
    setup: &AdaptSetup,
    seed: u64,
) -> Result<Adapted> {
    adapt_observed(base, None, task, inner, setup, seed, |_, _| Ok(()))
}

/// [`adapt`] through a class embedding (`embedding.rs`): the rollouts and gradients run on
/// `base` composed with `embedding`, the gradients are pulled back onto the base's weights
/// (or adapters) and, unless `training` is frozen, onto the embedding, which then trains
/// beside them. [`Adapted::policy`] is the composed policy (an ordinary policy on the env's
/// observations, as `mrl backtest` reads it), [`Adapted::embedding`] the embedding after the
/// loop, [`Adapted::unembedded`] the adapted weights before composition. Neither `base` nor
/// `embedding` is modified.
///
/// # Errors
/// [`Error::EmbeddingMismatch`] for a policy kind the embedding cannot compose with; as
/// [`adapt`].
#[allow(clippy::too_many_arguments)]
pub fn adapt_class<D: TaskDistribution>(
    base: &Policy,
    embedding: &ClassEmbedding,
    training: EmbeddingTraining,
    task: Arc<D>,
    inner: &InnerConfig,
    setup: &AdaptSetup,
    seed: u64,
) -> Result<Adapted> {
    let class = Some((embedding, training));
    adapt_observed(base, class, task, inner, setup, seed, |_, _| Ok(()))
}

/// Copies of the policy after each of `ks` inner steps of one adaptation run (in the order
/// of `ks`; `0` is a copy of `base`): the run takes `max(ks)` steps, so a prefix of the path
/// is not recomputed, and the copy at `k` equals `adapt` with `steps = k` and the same seed,
/// bit for bit. `inner.steps` is ignored.
///
/// # Errors
/// [`Error::InvalidConfig`] for an empty `ks`; as [`adapt`].
pub fn adapt_snapshots<D: TaskDistribution>(
    base: &Policy,
    task: Arc<D>,
    inner: &InnerConfig,
    setup: &AdaptSetup,
    seed: u64,
    ks: &[usize],
) -> Result<Vec<Policy>> {
    adapt_class_snapshots(base, None, task, inner, setup, seed, ks)
}

/// [`adapt_snapshots`], through a class embedding when one is given, trained as
/// `inner.embedding` says (the snapshots are then composed policies, as [`adapt_class`]
/// returns).
///
/// # Errors
/// As [`adapt_snapshots`] and [`adapt_class`].
pub fn adapt_class_snapshots<D: TaskDistribution>(
    base: &Policy,
    embedding: Option<&ClassEmbedding>,
    task: Arc<D>,
    inner: &InnerConfig,
    setup: &AdaptSetup,
    seed: u64,
    ks: &[usize],
) -> Result<Vec<Policy>> {
    let class = embedding.map(|e| (e, inner.embedding));
    let Some(&max_k) = ks.iter().max() else {
        return Err(Error::invalid(
            "ks",
            "[]".into(),
            "expected at least one step count",
        ));
    };
    let inner = InnerConfig {
        steps: max_k,
        ..inner.clone()
    };
    let mut snapshots: Vec<Option<Policy>> = ks.iter().map(|_| None).collect();
    adapt_observed(base, class, task, &inner, setup, seed, |done, policy| {
        for (slot, _) in snapshots.iter_mut().zip(ks).filter(|(_, k)| **k == done) {
            *slot = Some(detached_copy(policy)?);
        }
        Ok(())
    })?;
    Ok(snapshots.into_iter().flatten().collect())
}

/// [`adapt`], calling `observe(k, policy)` with the policy after `k` steps for `k = 0..=K`
/// (adapters merged, the class embedding composed when there is one).
fn adapt_observed<D: TaskDistribution>(
    base: &Policy,
    class: Option<(&ClassEmbedding, EmbeddingTraining)>,
    task: Arc<D>,
    inner: &InnerConfig,
    setup: &AdaptSetup,
    seed: u64,
    mut observe: impl FnMut(usize, &Policy) -> Result<()>,
) -> Result<Adapted> {
    inner.validate()?;
    let seeds = TaskSeeds::new(seed);
    let mut working = detached_copy(base)?;
    let base_tensors = base.tensors();
    let adapter = inner
        .adapter
        .as_ref()
        .map(|c| LowRankAdapter::new(c, base, &mut ChaCha8Rng::seed_from_u64(seeds.adapter)))
        .transpose()?;
    let (mut names, mut vars): (Vec<String>, Vec<Var>) = match &adapter {
        Some(a) => (a.names(), a.vars()),
        None => working
            .parameters()
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .unzip(),
    };
    // With a class embedding the network acts through `composed`; `working` keeps the
    // weights before composition.
    let embedding = class.map(|(e, _)| e.detached()).transpose()?;
    let train_embedding = class.is_some_and(|(_, t)| t == EmbeddingTraining::Adapted);
    if let (Some(e), true) = (&embedding, train_embedding) {
        names.extend(e.names());
        vars.extend(e.vars());
    }
    let mut composed = embedding
        .as_ref()
        .map(|e| e.composed_policy(&working))
        .transpose()?;
    let mut adam = match inner.optimizer {
        InnerOptimizer::Adam => Some(Adam::new(
            names,
            &vars,
            AdamConfig {
                lr: inner.lr,
                ..Default::default()
            },
        )?),
        InnerOptimizer::Sgd => None,
    };
    let mut rollouts = TaskRollouts::new(
        task,
        &working,
        inner.n_envs,
        setup.trial.clone(),
        seeds.trials,
        seeds.sampling,
    )?;
    let loss_config = setup.ppo.loss();
    // The working weights are the merged ones before every step and after the last.
    let sync = |working: &mut Policy, composed: Option<&mut Policy>| {
        sync_weights(
            working,
            composed,
            adapter.as_ref(),
            embedding.as_ref(),
            &base_tensors,
        )
    };
    sync(&mut working, composed.as_mut())?;
    observe(0, composed.as_ref().unwrap_or(&working))?;
    let mut current: Option<PpoBatch> = None;
    let mut steps = Vec::with_capacity(inner.steps);
    for step in 0..inner.steps {
        let mut rollout_return = None;
        let batch = match (step % inner.steps_per_rollout, current.take()) {
            (0, _) | (_, None) => {
                let (stats, b) = rollouts.collect(composed.as_ref().unwrap_or(&working), setup)?;
                rollout_return = Some(stats.mean_trial_return);
                b
            }
            (_, Some(b)) => b,
        };
        let g = ppo_gradients(composed.as_ref().unwrap_or(&working), &batch, &loss_config)?;
        current = Some(batch);
        if !g.loss.total.is_finite() {
            return Err(Error::NonFinite { what: "loss", step });
        }
        let (base_grads, embedding_grads) = match &embedding {
            Some(e) => {
                let pulled = e.pullback(&working, &working.tensors(), &g.grads)?;
                (pulled.base, train_embedding.then_some(pulled.embedding))
            }
            None => (g.grads, None),
        };
        let mut grads: Vec<Tensor> = match &adapter {
            Some(a) => a.pullback(&base_grads)?,
            None => base_grads.into_iter().map(|(_, t)| t).collect(),
        };
        grads.extend(embedding_grads.into_iter().flatten());
        let grad_norm = clip_grad_norm(&mut grads, setup.ppo.max_grad_norm)?;
        if !grad_norm.is_finite() {
            return Err(Error::NonFinite {
                what: "gradient norm",
                step,
            });
        }
        match &mut adam {
            Some(adam) => adam.step(&vars, &grads, inner.lr)?,
            None => sgd_step(&vars, &grads, inner.lr)?,
        }
        steps.push(InnerStep {
            step,
            rollout_return,
            loss: g.loss,
            grad_norm,
        });
        sync(&mut working, composed.as_mut())?;
        observe(step + 1, composed.as_ref().unwrap_or(&working))?;
    }
    tracing::debug!(
        steps = inner.steps,
        adapter = adapter.is_some(),
        "adapted to one task"
    );
    let (policy, unembedded) = match composed {
        Some(c) => (c, Some(working)),
        None => (working, None),
    };
    Ok(Adapted {
        policy,
        adapter,
        steps,
        embedding,
        unembedded,
    })
}

/// Writes the adapters' merged weights into `working` (when there are adapters) and
/// `working` composed with the class embedding into `composed` (when there is one).
fn sync_weights(
    working: &mut Policy,
    composed: Option<&mut Policy>,
    adapter: Option<&LowRankAdapter>,
    embedding: Option<&ClassEmbedding>,
    base_tensors: &std::collections::HashMap<String, Tensor>,
) -> Result<()> {
    if let Some(a) = adapter {
        working.set_tensors(&a.merge(base_tensors)?, "adapter")?;
    }
    if let (Some(c), Some(e)) = (composed, embedding) {
        c.set_tensors(&e.compose(working, &working.tensors())?, "class embedding")?;
    }
    Ok(())
}

/// `θ ← θ − lr·g` for every parameter.
///
/// # Errors
/// Candle errors for mismatched shapes.
pub fn sgd_step(vars: &[Var], grads: &[Tensor], lr: f64) -> Result<()> {
    if vars.len() != grads.len() {
        return Err(Error::invalid(
            "gradients",
            format!("{} for {} parameters", grads.len(), vars.len()),
            "expected one gradient per parameter",
        ));
    }
    for (v, g) in vars.iter().zip(grads) {
        v.set(&(v.as_tensor() - (g * lr)?)?)?;
    }
    Ok(())
}
