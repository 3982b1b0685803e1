//! The PPO update: epochs over minibatches of whole trials, full BPTT from `h0 = 0` at every
//! trial start, clipped loss, global-norm clipping, Adam, and the target-KL stop.

use candle_core::{Tensor, Var};
use mrl_agent::{BeliefTarget, Policy, PolicyKind};

use crate::belief::AuxTargets;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::gae::{GaeConfig, GaeScope, TrialSteps, gae, masked_mean_std, normalize_advantages};
use crate::loss::{PpoLossConfig, PpoLossStats, PpoTargets, ppo_loss};
use crate::optim::{Adam, AdamConfig, clip_grad_norm, collect_grads};
use crate::rollout::RolloutBuffer;
use crate::{Error, Result};

/// Settings of the PPO update (Schulman et al. 2017), defaults from the design document plus
/// what recurrent PPO needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PpoConfig {
    /// Passes over the rollout per iteration (default 4).
    pub epochs: usize,
    /// Whole trials per minibatch; each is unrolled from `h0 = 0` with full BPTT
    /// (default 8; clamped to the number of trials).
    pub minibatch_trials: usize,
    /// Clip range ε (default 0.2).
    pub clip: f64,
    /// Value-loss weight (default 0.5).
    pub value_coef: f64,
    /// Entropy-bonus weight (default 0.01).
    pub entropy_coef: f64,
    /// Global gradient-norm clip (default 0.5).
    pub max_grad_norm: f64,
    /// Stop the update when a minibatch's approximate KL exceeds `1.5 · target_kl`
    /// (as Stable-Baselines3); off by default.
    pub target_kl: Option<f64>,
    /// Normalise advantages over the valid steps of the rollout (default true).
    pub normalize_advantages: bool,
    /// Anneal the learning rate linearly to 0 over the run (default false).
    pub anneal_lr: bool,
    /// Where GAE cuts: across the whole trial (default) or at every episode end.
    pub gae_scope: GaeScope,
    /// Factor on the rewards before GAE, so that values and returns are O(1) (learning
    /// only: logged returns are unscaled). Default 1.
    pub reward_scale: f64,
    /// Weight of the task-inference agent's auxiliary belief loss
    /// ([`belief_loss`](crate::belief_loss)) added to the PPO loss; read only for
    /// `kind = "task_inference"`. Default 1 (VariBAD weighs its ELBO and RL losses alike);
    /// not written out at its default.
    #[serde(skip_serializing_if = "is_one")]
    pub belief_coef: f64,
}

/// Whether `x` is exactly 1 (the default of [`PpoConfig::belief_coef`]).
fn is_one(x: &f64) -> bool {
    *x == 1.0
}

impl Default for PpoConfig {
    fn default() -> Self {
        let loss = PpoLossConfig::default();
        Self {
            epochs: 4,
            minibatch_trials: 8,
            clip: loss.clip,
            value_coef: loss.value_coef,
            entropy_coef: loss.entropy_coef,
            max_grad_norm: 0.5,
            target_kl: None,
            normalize_advantages: true,
            anneal_lr: false,
            gae_scope: GaeScope::Trial,
            reward_scale: 1.0,
            belief_coef: 1.0,
        }
    }
}

impl PpoConfig {
    /// The loss coefficients.
    pub fn loss(&self) -> PpoLossConfig {
        PpoLossConfig {
            clip: self.clip,
            value_coef: self.value_coef,
            entropy_coef: self.entropy_coef,
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        self.loss().validate()?;
        let bad = |field, value: String, reason| {
            Err(Error::InvalidConfig {
                field,
                value,
                reason,
            })
        };
        if self.epochs == 0 {
            return bad("ppo.epochs", "0".into(), "must be at least 1");
        }
        if self.minibatch_trials == 0 {
            return bad("ppo.minibatch_trials", "0".into(), "must be at least 1");
        }
        if self.max_grad_norm.is_nan() || self.max_grad_norm <= 0.0 {
            return bad(
                "ppo.max_grad_norm",
                self.max_grad_norm.to_string(),
                "must be positive",
            );
        }
        if !(self.reward_scale.is_finite() && self.reward_scale > 0.0) {
            return bad(
                "ppo.reward_scale",
                self.reward_scale.to_string(),
                "must be positive",
            );
        }
        if !(self.belief_coef.is_finite() && self.belief_coef >= 0.0) {
            return bad(
                "ppo.belief_coef",
                self.belief_coef.to_string(),
                "must be finite and ≥ 0",
            );
        }
        if let Some(kl) = self.target_kl
            && (kl.is_nan() || kl <= 0.0)
        {
            return bad("ppo.target_kl", kl.to_string(), "must be positive");
        }
        Ok(())
    }
}

/// What one gradient step did.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// Loss parts before the step.
    pub loss: PpoLossStats,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// The gradients after clipping, in parameter order (what Adam was given).
    pub clipped_grads: Vec<Tensor>,
    /// The auxiliary belief loss before the step (unweighted); `None` without belief
    /// targets.
    pub belief_loss: Option<f64>,
}

/// Averages over the gradient steps of one update.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct UpdateStats {
    /// Mean loss parts over the gradient steps taken.
    pub loss: PpoLossStats,
    /// Mean gradient norm before clipping.
    pub grad_norm: f64,
    /// Gradient steps taken.
    pub steps: usize,
    /// Epochs started (the last one possibly cut by the KL stop).
    pub epochs: usize,
    /// The target-KL stop fired.
    pub early_stopped: bool,
    /// Explained variance of the rollout values for the returns:
    /// `1 − Var(R − V)/Var(R)` over valid steps.
    pub explained_variance: f64,
    /// Mean auxiliary belief loss (unweighted) over the gradient steps; `None` without
    /// belief targets.
    pub belief_loss: Option<f64>,
}

/// The learner: the policy's parameters in a fixed order and Adam over them.
#[derive(Debug)]
pub struct Learner {
    policy: Policy,
    names: Vec<String>,
    params: Vec<Var>,
    adam: Adam,
    config: PpoConfig,
    /// Factor on the rewards before GAE on top of `config.reward_scale` (return
    /// normalisation; 1 otherwise).
    return_scale: f64,
}

/// A minibatch's tensors.
struct Minibatch {
    x: Tensor,
    targets: PpoTargets,
    /// The targets of the task-inference agent's auxiliary loss.
    aux: Option<AuxTargets>,
}

impl Learner {
    /// A learner over `policy` (its `Var`s are updated in place) with fresh Adam moments.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a bad `config` or `adam`.
    pub fn new(policy: Policy, config: PpoConfig, adam: AdamConfig) -> Result<Self> {
        config.validate()?;
        let (names, params): (Vec<String>, Vec<Var>) = policy
            .parameters()
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .unzip();
        let adam = Adam::new(names.clone(), &params, adam)?;
        Ok(Self {
            policy,
            names,
            params,
            adam,
            config,
            return_scale: 1.0,
        })
    }

    /// The policy being trained.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The policy, mutably (to set its input statistics; the parameters are shared with the
    /// optimiser, so replacing weights through it is not supported).
    pub fn policy_mut(&mut self) -> &mut Policy {
        &mut self.policy
    }

    /// Sets the factor on the rewards before GAE on top of the configured `reward_scale`
    /// (return normalisation, see [`NormalizeConfig`](crate::NormalizeConfig)).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a factor that is not finite and > 0.
    pub fn set_return_scale(&mut self, scale: f64) -> Result<()> {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(Error::InvalidConfig {
                field: "return_scale",
                value: scale.to_string(),
                reason: "must be finite and > 0",
            });
        }
        self.return_scale = scale;
        Ok(())
    }

    /// The optimiser (its moments and step count).
    pub fn adam(&self) -> &Adam {
        &self.adam
    }

    /// The optimiser, mutably (to restore a checkpoint).
    pub fn adam_mut(&mut self) -> &mut Adam {
        &mut self.adam
    }

    /// The update settings.
    pub fn config(&self) -> &PpoConfig {
        &self.config
    }

    /// Parameter names in optimiser order.
    pub fn param_names(&self) -> &[String] {
        &self.names
    }

    /// One gradient step on a sequence batch: forward from `h0 = 0`, loss, backward,
    /// global-norm clip, Adam at `lr`. Nothing is updated when the loss or a gradient is not
    /// finite.
    ///
    /// # Shapes
    /// `x` `(B, T, in)`; the targets flattened to `B·T` in trial-then-time order.
    ///
    /// # Errors
    /// [`Error::NonFinite`] (with zero indices; [`Learner::update`] fills them in), agent and
    /// candle errors.
    pub fn gradient_step(
        &mut self,
        x: &Tensor,
        targets: &PpoTargets,
        lr: f64,
    ) -> Result<StepReport> {
        self.gradient_step_with_belief(x, targets, None, lr)
    }

    /// As [`Learner::gradient_step`], for a task-inference policy with its auxiliary loss:
    /// the loss minimised is `L_PPO + belief_coef · L_aux` over the valid steps, where
    /// `L_aux` is [`belief_loss`](crate::belief_loss) of the policy's belief against the
    /// task's parameters ([`AuxTargets::Task`]) or the
    /// [`reconstruction_loss`](crate::reconstruction_loss) of the rewards
    /// ([`AuxTargets::Reward`]). The PPO part is exactly [`Learner::gradient_step`]'s (same
    /// forward pass); with `aux` `None` this is that function. The targets enter the loss
    /// only here: they are never an input of the policy.
    ///
    /// # Shapes
    /// `x` `(B, T, in)`; the targets as [`AuxTargets`] says, trial-then-time order.
    ///
    /// # Errors
    /// As [`Learner::gradient_step`]; [`Error::InvalidConfig`] when belief targets are given
    /// to a policy without a belief.
    pub fn gradient_step_with_belief(
        &mut self,
        x: &Tensor,
        targets: &PpoTargets,
        aux: Option<&AuxTargets>,
        lr: f64,
    ) -> Result<StepReport> {
        let (logits, values, belief) = match aux {
            None => {
                let (logits, values) = unroll(&self.policy, x)?;
                (logits, values, None)
            }
            Some(_) => {
                let out = self.policy.forward_seq_fused(x, None)?;
                let belief = out.belief.ok_or_else(|| Error::InvalidConfig {
                    field: "agent.kind",
                    value: self.policy.kind().as_str().into(),
                    reason: "belief targets need a task_inference policy",
                })?;
                (out.logits, out.values, Some(belief))
            }
        };
        let (batch, seq_len, n_actions) = logits.dims3()?;
        let logits = logits.reshape((batch * seq_len, n_actions))?; // (B·T, A)
        let values = values.reshape(batch * seq_len)?; // (B·T,)
        let mut loss = ppo_loss(&logits, &values, targets, &self.config.loss())?;
        let stats = loss.stats(targets.mask.as_ref())?;
        let mut belief_value = None;
        if let (Some(belief), Some(aux)) = (belief, aux) {
            let mask = targets.mask.as_ref();
            let aux = match aux {
                AuxTargets::Task(task) => {
                    let flat = crate::belief::flatten_belief(&belief)?; // (B·T, latent) each
                    crate::belief::belief_loss(&flat, task, mask)?
                }
                AuxTargets::Reward {
                    actions_one_hot,
                    rewards,
                } => {
                    let predicted = self
                        .policy
                        .reconstruct_rewards(x, &belief, actions_one_hot)?
                        .reshape(batch * seq_len)?; // (B·T,)
                    crate::belief::reconstruction_loss(&predicted, rewards, mask)?
                }
            };
            let value = f64::from(aux.to_scalar::<f32>()?);
            if !value.is_finite() {
                return Err(Error::NonFinite {
                    what: "belief loss".into(),
                    iteration: 0,
                    epoch: 0,
                    minibatch: 0,
                });
            }
            belief_value = Some(value);
            loss.total = (loss.total + (aux * self.config.belief_coef)?)?;
        }
        let non_finite = |what: String| Error::NonFinite {
            what,
            iteration: 0,
            epoch: 0,
            minibatch: 0,
        };
        if !stats.total.is_finite() {
            return Err(non_finite("loss".into()));
        }
        let grads = loss.total.backward()?;
        let mut grads = collect_grads(&self.params, &grads)?;
        let grad_norm = clip_grad_norm(&mut grads, self.config.max_grad_norm)?;
        if !grad_norm.is_finite() {
            return Err(non_finite("gradient norm".into()));
        }
        self.adam.step(&self.params, &grads, lr)?;
        Ok(StepReport {
            loss: stats,
            grad_norm,
            clipped_grads: grads,
            belief_loss: belief_value,
        })
    }

    /// Advantages and returns of a rollout under the configured GAE scope, with the
    /// advantages normalised over valid steps when configured. Both trial-major `(B, T)`.
    ///
    /// # Errors
    /// Length errors from inconsistent buffers.
    pub fn advantages(
        &self,
        buffer: &RolloutBuffer,
        gae_config: &GaeConfig,
    ) -> Result<(Vec<f64>, Vec<f64>)> {
        let (mut adv, ret) = trial_advantages(
            buffer,
            gae_config,
            self.config.gae_scope,
            self.config.reward_scale * self.return_scale,
        )?;
        if self.config.normalize_advantages {
            normalize_advantages(&mut adv, Some(&buffer.valid_trial_major()));
        }
        Ok((adv, ret))
    }

    /// One PPO update on a rollout: `epochs` passes over minibatches of whole trials in an
    /// order shuffled by `rng`, stopping early on the target KL. `iteration` labels errors.
    ///
    /// # Errors
    /// [`Error::NonFinite`] naming the iteration, epoch and minibatch; the parameters and
    /// moments then hold the last finite step.
    pub fn update(
        &mut self,
        buffer: &RolloutBuffer,
        gae_config: &GaeConfig,
        lr: f64,
        rng: &mut ChaCha8Rng,
        iteration: u64,
    ) -> Result<UpdateStats> {
        let (advantages, returns) = self.advantages(buffer, gae_config)?;
        let n_trials = buffer.n_trials();
        let mb_size = self.config.minibatch_trials.min(n_trials);
        let mut order: Vec<usize> = (0..n_trials).collect();
        let mut stats = UpdateStats {
            explained_variance: explained_variance(buffer, &returns),
            ..Default::default()
        };
        let mut sums = PpoLossStats::default();
        let mut belief_sum: Option<f64> = None;
        'epochs: for epoch in 0..self.config.epochs {
            stats.epochs = epoch + 1;
            order.shuffle(rng);
            for (mb_idx, trials) in order.chunks(mb_size).enumerate() {
                let mb = self.minibatch(buffer, trials, &advantages, &returns)?;
                let report = self
                    .gradient_step_with_belief(&mb.x, &mb.targets, mb.aux.as_ref(), lr)
                    .map_err(|e| match e {
                        Error::NonFinite { what, .. } => Error::NonFinite {
                            what,
                            iteration,
                            epoch,
                            minibatch: mb_idx,
                        },
                        other => other,
                    })?;
                stats.steps += 1;
                stats.grad_norm += report.grad_norm;
                add_stats(&mut sums, &report.loss);
                if let Some(b) = report.belief_loss {
                    *belief_sum.get_or_insert(0.0) += b;
                }
                if let Some(target) = self.config.target_kl
                    && report.loss.approx_kl > 1.5 * target
                {
                    stats.early_stopped = true;
                    tracing::debug!(
                        iteration,
                        epoch,
                        kl = report.loss.approx_kl,
                        "target KL reached"
                    );
                    break 'epochs;
                }
            }
        }
        let n = stats.steps.max(1) as f64;
        stats.grad_norm /= n;
        stats.belief_loss = belief_sum.map(|s| s / n);
        stats.loss = PpoLossStats {
            total: sums.total / n,
            policy: sums.policy / n,
            value: sums.value / n,
            entropy: sums.entropy / n,
            approx_kl: sums.approx_kl / n,
            clip_fraction: sums.clip_fraction / n,
        };
        Ok(stats)
    }

    /// Builds the tensors of the trials `trials` of `buffer`.
    fn minibatch(
        &self,
        buffer: &RolloutBuffer,
        trials: &[usize],
        advantages: &[f64],
        returns: &[f64],
    ) -> Result<Minibatch> {
        let crate::grad::PpoBatch { x, targets } =
            crate::grad::ppo_batch(&self.policy, buffer, trials, advantages, returns)?;
        let config = self.policy.config();
        let aux = match config.task_inference.target {
            _ if config.kind != PolicyKind::TaskInference => None,
            BeliefTarget::Task if buffer.target_dim() > 0 => Some(AuxTargets::Task(
                crate::belief::belief_targets(buffer, trials, self.policy.device())?,
            )),
            BeliefTarget::Task => None,
            BeliefTarget::Reward => Some(crate::belief::reward_targets(
                buffer,
                trials,
                config.n_actions,
                self.config.reward_scale * self.return_scale,
                self.policy.device(),
            )?),
        };
        Ok(Minibatch { x, targets, aux })
    }
}

/// Logits `(B, T, A)` and values `(B, T)` of a sequence batch from `h0 = 0`, with autograd.
///
/// On the CPU in f32 this is [`Policy::forward_seq_train`]: the whole RL² network (encoder,
/// GRU recurrence over all `T` steps, heads) is one autograd node with a hand-written
/// backward (BPTT), and candle only sees the `(B, T, A + 1)` output. Elsewhere the RL²
/// network is stepped with
/// [`Policy::step`] on each time slice of the input (a leaf without gradient) and the
/// outputs are stacked: the backward pass is then linear in `T`.
/// Slicing a tensor that carries a gradient (as an unroll over a precomputed `(B, T, ·)`
/// projection does) costs a full-size zero-padded gradient per slice in candle, i.e. `O(T²)`.
/// The memory-less kinds run [`Policy::forward_seq_train`] in one pass (the MLP as one
/// custom op on the CPU, with candle autograd's numbers bit for bit; the Transformer
/// through candle autograd).
///
/// # Shapes
/// `x` `(B, T, in)` → `(B, T, A)`, `(B, T)`.
///
/// # Errors
/// Agent and candle errors for a malformed `x`.
pub fn unroll(policy: &Policy, x: &Tensor) -> Result<(Tensor, Tensor)> {
    if !policy.is_recurrent() {
        return Ok(policy.forward_seq_train(x, None)?);
    }
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
        return Ok(policy.forward_seq_train(x, None)?);
    }
    let (_, seq_len, _) = x.dims3()?;
    let x = x.detach();
    let mut h: Option<Tensor> = None;
    let mut logits = Vec::with_capacity(seq_len);
    let mut values = Vec::with_capacity(seq_len);
    for t in 0..seq_len {
        let x_t = x.narrow(1, t, 1)?.squeeze(1)?; // (B, in)
        let out = policy.step(&x_t, h.as_ref())?;
        logits.push(out.logits); // (B, A)
        values.push(out.values); // (B,)
        h = out.h;
    }
    Ok((Tensor::stack(&logits, 1)?, Tensor::stack(&values, 1)?))
}

fn add_stats(sum: &mut PpoLossStats, x: &PpoLossStats) {
    sum.total += x.total;
    sum.policy += x.policy;
    sum.value += x.value;
    sum.entropy += x.entropy;
    sum.approx_kl += x.approx_kl;
    sum.clip_fraction += x.clip_fraction;
}

/// GAE for every trial of a rollout under `scope`, on rewards multiplied by `reward_scale`;
/// trial-major `(B, T)` advantages and returns (0 on padding).
///
/// # Errors
/// Length errors from inconsistent buffers, [`Error::OpenEnd`] for a trial that neither
/// finished nor was marked truncated.
pub fn trial_advantages(
    buffer: &RolloutBuffer,
    config: &GaeConfig,
    scope: GaeScope,
    reward_scale: f64,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let seq_len = buffer.len();
    let mut advantages = Vec::with_capacity(buffer.n_trials() * seq_len);
    let mut returns = Vec::with_capacity(buffer.n_trials() * seq_len);
    for b in 0..buffer.n_trials() {
        let mut trial = buffer.trial(b);
        trial.rewards.iter_mut().for_each(|r| *r *= reward_scale);
        let steps = TrialSteps {
            episode_end: &trial.episode_end,
            terminated: &trial.terminated,
            bootstrap: &trial.bootstrap,
            valid: &trial.valid,
            trial_truncated: trial.truncated,
        };
        let ends = steps.step_ends(scope)?;
        let out = gae(
            &trial.rewards,
            &trial.values,
            &ends,
            Some(&trial.valid),
            config,
        )?;
        advantages.extend(out.advantages);
        returns.extend(out.returns);
    }
    Ok((advantages, returns))
}

/// `1 − Var(R − V)/Var(R)` over the valid steps (NaN when the returns are constant).
fn explained_variance(buffer: &RolloutBuffer, returns: &[f64]) -> f64 {
    let seq_len = buffer.len();
    let mut residual = Vec::with_capacity(returns.len());
    let mut mask = Vec::with_capacity(returns.len());
    for b in 0..buffer.n_trials() {
        for t in 0..seq_len {
            let i = buffer.index(b, t);
            residual.push(returns[b * seq_len + t] - f64::from(buffer.values[i]));
            mask.push(buffer.valid[i]);
        }
    }
    let (_, std_r) = masked_mean_std(returns, Some(&mask));
    let (_, std_res) = masked_mean_std(&residual, Some(&mask));
    if std_r == 0.0 {
        f64::NAN
    } else {
        1.0 - (std_res * std_res) / (std_r * std_r)
    }
}
