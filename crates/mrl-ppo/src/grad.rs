//! PPO gradients without an optimiser step: the batch tensors of whole trials of a rollout
//! and the gradient of the clipped loss with respect to every parameter of a policy.
//!
//! What gradient-based meta-learners need from PPO (first-order MAML's query gradient,
//! inner-loop steps with their own optimiser, low-rank adapters that pull the gradient of a
//! full weight back onto their factors); [`Learner`](crate::Learner) builds its minibatches
//! with the same [`ppo_batch`].

use candle_core::Tensor;
use mrl_agent::{InputLayout, Policy, PolicyInputs};

use crate::Result;
use crate::loss::{PpoLossConfig, PpoLossStats, PpoTargets, ppo_loss};
use crate::optim::collect_grads;
use crate::rollout::RolloutBuffer;
use crate::update::unroll;

/// A batch of whole trials as the PPO update sees it.
#[derive(Debug, Clone)]
pub struct PpoBatch {
    /// Policy input rows, `(B, T, in)`, built by the policy's [`InputLayout`] (its input
    /// normalisation applied).
    pub x: Tensor,
    /// Actions, old log-probabilities, advantages, returns and mask, flattened to `B·T` in
    /// trial-then-time order.
    pub targets: PpoTargets,
}

/// The gradient of the PPO loss of one batch.
#[derive(Debug, Clone)]
pub struct PpoGradients {
    /// The loss parts at the parameters the gradient was taken at.
    pub loss: PpoLossStats,
    /// `∂L/∂θ` for every parameter, `(name, gradient)` in [`Policy::parameters`] order, each
    /// of its parameter's shape (zeros for a parameter the loss does not reach). Not clipped.
    pub grads: Vec<(String, Tensor)>,
}

/// The tensors of the trials `trials` of `buffer` on `policy`'s device: input rows built by
/// `policy`'s layout, targets from the buffer and the trial-major `(B_buffer, T)` advantages
/// and returns (as [`Learner::advantages`](crate::Learner::advantages) returns them).
///
/// # Shapes
/// `advantages`, `returns`: `n_trials · T` of the buffer → `x` `(trials.len(), T, in)`,
/// targets `(trials.len() · T,)`.
///
/// # Errors
/// Agent and candle errors (a buffer whose observation width is not the policy's).
pub fn ppo_batch(
    policy: &Policy,
    buffer: &RolloutBuffer,
    trials: &[usize],
    advantages: &[f64],
    returns: &[f64],
) -> Result<PpoBatch> {
    let device = policy.device();
    let seq_len = buffer.len();
    let n = trials.len() * seq_len;
    let obs_dim = buffer.obs_dim();
    let mut obs = Vec::with_capacity(n * obs_dim);
    let mut prev_actions = Vec::with_capacity(n);
    let mut prev_rewards = Vec::with_capacity(n);
    let mut prev_dones = Vec::with_capacity(n);
    let mut actions = Vec::with_capacity(n);
    let mut old_log_probs = Vec::with_capacity(n);
    let mut adv = Vec::with_capacity(n);
    let mut ret = Vec::with_capacity(n);
    let mut mask = Vec::with_capacity(n);
    for &b in trials {
        for t in 0..seq_len {
            let i = buffer.index(b, t);
            obs.extend_from_slice(buffer.obs_row(i));
            prev_actions.push(buffer.prev_actions[i]);
            prev_rewards.push(buffer.prev_rewards[i]);
            prev_dones.push(buffer.prev_dones[i]);
            actions.push(buffer.actions[i]);
            old_log_probs.push(buffer.log_probs[i]);
            adv.push(advantages[b * seq_len + t] as f32);
            ret.push(returns[b * seq_len + t] as f32);
            mask.push(if buffer.valid[i] { 1.0f32 } else { 0.0 });
        }
    }
    let layout = InputLayout::new(policy.config());
    let inputs = PolicyInputs {
        obs: &obs,
        prev_actions: &prev_actions,
        prev_rewards: &prev_rewards,
        prev_dones: &prev_dones,
    };
    let x = layout.sequence_tensor(&inputs, trials.len(), seq_len, device)?;
    let all_valid = mask.iter().all(|&m| m == 1.0);
    let vec = |v: Vec<f32>| -> Result<Tensor> { Ok(Tensor::from_vec(v, n, device)?) };
    let targets = PpoTargets {
        actions: Tensor::from_vec(actions, n, device)?,
        old_log_probs: vec(old_log_probs)?,
        advantages: vec(adv)?,
        returns: vec(ret)?,
        mask: if all_valid { None } else { Some(vec(mask)?) },
    };
    Ok(PpoBatch { x, targets })
}

/// The gradient of the clipped PPO loss (Schulman et al. 2017) of `batch` with respect to
/// every parameter of `policy`, with no optimiser step and no clipping: the forward pass of
/// [`unroll`] from `h0 = 0`, [`ppo_loss`], one backward pass.
///
/// candle's backward records no graph of its own, so this is a first-order gradient only
/// (what first-order MAML and Reptile need; full MAML's Hessian-vector products are out of
/// reach).
///
/// # Errors
/// Agent and candle errors for a batch that does not fit the policy.
pub fn ppo_gradients(
    policy: &Policy,
    batch: &PpoBatch,
    loss_config: &PpoLossConfig,
) -> Result<PpoGradients> {
    let (logits, values) = unroll(policy, &batch.x)?;
    let (batch_size, seq_len, n_actions) = logits.dims3()?;
    let logits = logits.reshape((batch_size * seq_len, n_actions))?; // (B·T, A)
    let values = values.reshape(batch_size * seq_len)?; // (B·T,)
    let loss = ppo_loss(&logits, &values, &batch.targets, loss_config)?;
    let stats = loss.stats(batch.targets.mask.as_ref())?;
    let store = loss.total.backward()?;
    let params = policy.parameters();
    let vars: Vec<_> = params.iter().map(|(_, v)| v.clone()).collect();
    let grads = collect_grads(&vars, &store)?;
    Ok(PpoGradients {
        loss: stats,
        grads: params
            .iter()
            .map(|(n, _)| n.to_string())
            .zip(grads)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use candle_core::Device;
    use mrl_agent::AgentConfig;

    use super::*;
    use crate::PpoConfig;
    use crate::optim::AdamConfig;
    use crate::update::Learner;

    /// A real rollout: 2 trials of a 3-armed bandit with 5 pulls, observation width 1.
    fn rollout(policy: &Policy) -> RolloutBuffer {
        use mrl_env::{BanditDistribution, Split, TrialConfig, VecTrials};
        use rand::SeedableRng;
        let dist = std::sync::Arc::new(BanditDistribution::new(3, 5).unwrap());
        let trial = TrialConfig {
            episodes_per_trial: 1,
            ..Default::default()
        };
        let mut trials = VecTrials::new(dist, 2, trial, Split::Train, 3).unwrap();
        let mut workspace = mrl_agent::RolloutWorkspace::new(policy, 2).unwrap();
        let mut buffer = RolloutBuffer::new(2, trials.max_trial_len(), 1);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        crate::collect_rollout(
            &mut trials,
            &mut workspace,
            policy,
            &mut buffer,
            &mut rng,
            crate::GaeScope::Trial,
        )
        .unwrap();
        buffer
    }

    #[test]
    fn gradients_match_what_the_learner_steps_with() {
        let config = AgentConfig {
            obs_dim: 1,
            hidden: 4,
            ..Default::default()
        };
        let policy = Policy::new(&config, &Device::Cpu, 5).unwrap();
        let buffer = rollout(&policy);
        assert_eq!(buffer.len(), 5);
        let adv = [0.5, -1.0, 0.25, 1.0, 0.0, -0.5, 1.5, 0.0, 2.0, -1.0];
        let ret = [1.0, 0.5, 0.0, -1.0, 2.0, 0.5, 1.0, 1.0, 0.0, 0.0];
        let batch = ppo_batch(&policy, &buffer, &[0, 1], &adv, &ret).unwrap();
        assert_eq!(batch.x.dims(), &[2, 5, 1 + 3 + 2]);
        assert!(batch.targets.mask.is_none());
        let ppo = PpoConfig {
            max_grad_norm: 1e9, // no clipping: the learner's step sees the raw gradient
            ..Default::default()
        };
        let g = ppo_gradients(&policy, &batch, &ppo.loss()).unwrap();
        assert_eq!(g.grads.len(), 10);
        assert_eq!(g.grads[0].0, "encoder.0.weight");
        let twin = Policy::from_tensors(&config, &policy.tensors(), &Device::Cpu).unwrap();
        let mut learner = Learner::new(twin, ppo, AdamConfig::default()).unwrap();
        let report = learner
            .gradient_step(&batch.x, &batch.targets, 1e-3)
            .unwrap();
        assert_eq!(report.loss, g.loss);
        for ((name, ours), theirs) in g.grads.iter().zip(&report.clipped_grads) {
            let a = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let b = theirs.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(a, b, "{name}");
        }
        // A gradient that is zero everywhere would pass the comparison above.
        let norm = crate::global_norm(&report.clipped_grads).unwrap();
        assert!(norm > 1e-3, "{norm}");
    }
}
