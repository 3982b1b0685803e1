//! The auxiliary loss of the task-inference agent: supervised belief training on the task's
//! hidden parameters (AR(1) `φ`, a bandit's arm means), which travel with the rollout
//! ([`RolloutBuffer::task_targets`]) and never enter the policy's inputs; or, where the task
//! does not know its parameters (real assets), the reconstruction of each step's reward
//! from the belief before it ([`reconstruction_loss`]).
//!
//! A Gaussian belief `N(μ, diag(σ²))` is trained by the negative log-likelihood of the true
//! parameters (as the belief of VariBAD, Zintgraf et al. 2020, is a Gaussian posterior; here
//! supervised, as in the task-inference baselines of Humplik et al. 2019, "Meta
//! reinforcement learning as task inference"), a point belief by the squared error. Both are
//! summed over the parameters and averaged over the valid steps. Gradients come from candle
//! autograd.

use candle_core::{D, Device, Tensor};
use mrl_agent::{Belief, InputLayout, Policy, PolicyInputs, greedy_action};
use mrl_env::{Env, Trial};

use crate::rollout::{RolloutBuffer, input_columns};
use crate::{Error, Result};

/// Gaussian negative log-likelihood of `target` under `N(mean, exp(log_var))` per row,
/// summed over the last dimension:
/// `½ Σ_d [ln 2π + log σ²_d + (y_d − μ_d)² / σ²_d]`.
///
/// # Shapes
/// `mean`, `log_var`, `target` `(N, Z)` → `(N,)`.
///
/// # Errors
/// Candle errors for mismatched shapes.
pub fn gaussian_nll(mean: &Tensor, log_var: &Tensor, target: &Tensor) -> Result<Tensor> {
    let ln_2pi = (2.0 * std::f64::consts::PI).ln();
    let sq = (target - mean)?.sqr()?; // (N, Z)
    let per_dim = ((log_var + ln_2pi)? + (sq * log_var.neg()?.exp()?)?)?;
    Ok((per_dim.sum(D::Minus1)? * 0.5)?)
}

/// The targets of the task-inference agent's auxiliary loss for one minibatch.
#[derive(Debug, Clone)]
pub enum AuxTargets {
    /// Supervised: the task's hidden parameters per step, `(B·T, latent)`.
    Task(Tensor),
    /// Reconstruction: the actions taken, one-hot `(B, T, A)`, and the rewards `(B·T)` on
    /// the scale PPO learns them (times `reward_scale` and the return normalisation).
    Reward {
        /// `one_hot(a_t)`, `(B, T, A)`.
        actions_one_hot: Tensor,
        /// `r_t`, `(B·T)`.
        rewards: Tensor,
    },
}

/// The reconstruction loss: `(r̂_t − r_t)²` averaged over the valid rows.
///
/// # Shapes
/// `predicted`, `rewards` `(N,)`, `mask` `(N,)` → scalar.
///
/// # Errors
/// Candle errors for mismatched shapes.
pub fn reconstruction_loss(
    predicted: &Tensor,
    rewards: &Tensor,
    mask: Option<&Tensor>,
) -> Result<Tensor> {
    masked_mean(&(predicted - rewards)?.sqr()?, mask)
}

/// `Σ x·m / max(Σ m, 1)`, or the plain mean without a mask.
fn masked_mean(per_row: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    Ok(match mask {
        Some(mask) => {
            let n_valid = mask.sum_all()?.to_scalar::<f32>()?.max(1.0);
            (per_row.mul(mask)?.sum_all()? / f64::from(n_valid))?
        }
        None => per_row.mean_all()?,
    })
}

/// The reconstruction targets of the trials `trials` of `buffer`: one-hot actions
/// `(trials.len(), T, n_actions)` and rewards times `scale` `(trials.len() · T)`,
/// trial-then-time order, on `device`.
///
/// # Errors
/// Candle errors.
pub fn reward_targets(
    buffer: &RolloutBuffer,
    trials: &[usize],
    n_actions: usize,
    scale: f64,
    device: &Device,
) -> Result<AuxTargets> {
    let seq_len = buffer.len();
    let mut one_hot = vec![0.0f32; trials.len() * seq_len * n_actions];
    let mut rewards = Vec::with_capacity(trials.len() * seq_len);
    for (j, &b) in trials.iter().enumerate() {
        for t in 0..seq_len {
            let i = buffer.index(b, t);
            let a = (buffer.actions[i] as usize).min(n_actions - 1);
            one_hot[(j * seq_len + t) * n_actions + a] = 1.0;
            rewards.push((f64::from(buffer.rewards[i]) * scale) as f32);
        }
    }
    let n = trials.len() * seq_len;
    Ok(AuxTargets::Reward {
        actions_one_hot: Tensor::from_vec(one_hot, (trials.len(), seq_len, n_actions), device)?,
        rewards: Tensor::from_vec(rewards, n, device)?,
    })
}

/// Squared error of a point belief per row, summed over the last dimension:
/// `Σ_d (y_d − z_d)²`.
///
/// # Shapes
/// `mean`, `target` `(N, Z)` → `(N,)`.
///
/// # Errors
/// Candle errors for mismatched shapes.
pub fn squared_error(mean: &Tensor, target: &Tensor) -> Result<Tensor> {
    Ok((target - mean)?.sqr()?.sum(D::Minus1)?)
}

/// The belief loss: [`gaussian_nll`] for a Gaussian belief, [`squared_error`] for a point
/// belief, averaged over the valid rows (`mask` 1; every row when `None`).
///
/// # Shapes
/// belief `(N, Z)` each, `target` `(N, Z)`, `mask` `(N,)` → scalar.
///
/// # Errors
/// Candle errors for mismatched shapes.
pub fn belief_loss(belief: &Belief, target: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    let per_row = match &belief.log_var {
        Some(log_var) => gaussian_nll(&belief.mean, log_var, target)?,
        None => squared_error(&belief.mean, target)?,
    };
    masked_mean(&per_row, mask)
}

/// A sequence belief `(B, T, Z)` as rows `(B·T, Z)`, trial-then-time order (the order of
/// [`PpoTargets`](crate::PpoTargets)).
///
/// # Errors
/// Candle errors for a belief that is not rank 3.
pub fn flatten_belief(belief: &Belief) -> Result<Belief> {
    let flat = |t: &Tensor| -> Result<Tensor> {
        let (b, s, z) = t.dims3()?;
        Ok(t.reshape((b * s, z))?)
    };
    Ok(Belief {
        mean: flat(&belief.mean)?,
        log_var: belief.log_var.as_ref().map(flat).transpose()?,
    })
}

/// The task targets of the trials `trials` of `buffer` as `(trials.len() · T, target_dim)`
/// rows, trial-then-time order, on `device`.
///
/// # Errors
/// Candle errors; a buffer without targets gives a `(N, 0)` tensor.
pub fn belief_targets(buffer: &RolloutBuffer, trials: &[usize], device: &Device) -> Result<Tensor> {
    let (seq_len, dim) = (buffer.len(), buffer.target_dim());
    let mut rows = Vec::with_capacity(trials.len() * seq_len * dim);
    for &b in trials {
        for t in 0..seq_len {
            rows.extend_from_slice(buffer.task_target(buffer.index(b, t)));
        }
    }
    Ok(Tensor::from_vec(
        rows,
        (trials.len() * seq_len, dim),
        device,
    )?)
}

/// A task-inference agent's belief over one trial played with greedy actions
/// ([`trace_belief`]); step `t`'s belief is the one after reading input row `t`, i.e. after
/// the returns of steps `0..t`.
#[derive(Debug, Clone, PartialEq)]
pub struct BeliefTrace {
    /// Width of the belief (per moment).
    pub latent: usize,
    /// Belief means, `(T, latent)` row-major.
    pub mean: Vec<f32>,
    /// Belief log-variances `(T, latent)`; `None` for a point belief.
    pub log_var: Option<Vec<f32>>,
    /// Episode of the trial each step belongs to, `(T)`.
    pub episode: Vec<usize>,
    /// Reward of each step, `(T)`.
    pub rewards: Vec<f64>,
    /// The task's hidden parameters ([`Env::task_parameters`]; empty when the env does not
    /// know them).
    pub truth: Vec<f32>,
}

impl BeliefTrace {
    /// Number of steps `T`.
    pub fn len(&self) -> usize {
        self.episode.len()
    }

    /// Whether no step was played.
    pub fn is_empty(&self) -> bool {
        self.episode.is_empty()
    }

    /// The last step of episode `k` of the trial; `None` when the trial has no such episode.
    pub fn episode_end(&self, k: usize) -> Option<usize> {
        self.episode.iter().rposition(|&e| e == k)
    }
}

/// Plays one whole trial of `trial` (reset first) with `policy`'s greedy actions and records
/// its belief at every step, stepping [`Policy::step`] with the hidden state carried over
/// the trial's episodes (reset only at its start). Input rows are built by the policy's
/// [`InputLayout`] (its input statistics applied); an env without observations gets the
/// one constant-0 column training gave it.
///
/// # Errors
/// [`Error::InvalidConfig`] for a policy without a belief; agent, env and candle errors.
pub fn trace_belief<E: Env>(policy: &Policy, trial: &mut Trial<E>) -> Result<BeliefTrace> {
    let mut truth = Vec::new();
    trial.env().task_parameters(&mut truth);
    let env_layout = trial.layout();
    let dims = (
        env_layout.obs_dim,
        policy.config().obs_dim,
        env_layout.n_actions,
    );
    let layout = InputLayout::new(policy.config());
    let latent = policy.config().task_inference.latent;
    let mut row = vec![0.0f32; layout.width()];
    let mut input = trial.reset()?.to_vec();
    let mut h: Option<Tensor> = None;
    let mut trace = BeliefTrace {
        latent,
        mean: Vec::new(),
        log_var: None,
        episode: Vec::new(),
        rewards: Vec::new(),
        truth,
    };
    let mut log_var = Vec::new();
    loop {
        let (obs, prev_actions, prev_rewards, prev_dones) =
            input_columns(&[0], &|_| input.as_slice(), dims);
        let inputs = PolicyInputs {
            obs: &obs,
            prev_actions: &prev_actions,
            prev_rewards: &prev_rewards,
            prev_dones: &prev_dones,
        };
        layout.write_rows(&inputs, &mut row)?;
        let x = Tensor::from_slice(&row, (1, row.len()), policy.device())?;
        let out = policy.step(&x, h.as_ref())?;
        let belief = out.belief.ok_or_else(|| Error::InvalidConfig {
            field: "agent.kind",
            value: policy.kind().as_str().into(),
            reason: "a belief trace needs a task_inference policy",
        })?;
        trace
            .mean
            .extend(belief.mean.flatten_all()?.to_vec1::<f32>()?);
        if let Some(lv) = &belief.log_var {
            log_var.extend(lv.flatten_all()?.to_vec1::<f32>()?);
        }
        h = out.h;
        let logits = out.logits.flatten_all()?.to_vec1::<f32>()?;
        let (action, _) = greedy_action(&logits)?;
        let step = trial.step(action)?;
        trace.episode.push(step.episode);
        trace.rewards.push(step.reward);
        if step.trial_done {
            break;
        }
        input.copy_from_slice(step.input);
    }
    if !log_var.is_empty() {
        trace.log_var = Some(log_var);
    }
    Ok(trace)
}

#[cfg(test)]
mod tests {
    use candle_core::Var;

    use super::*;

    fn t(v: &[f32], rows: usize) -> Tensor {
        Tensor::from_slice(v, (rows, v.len() / rows), &Device::Cpu).unwrap()
    }

    #[test]
    fn gaussian_nll_is_the_textbook_formula() {
        // Row 0: y = 0.3, μ = 0.1, log σ² = ln 0.04 (σ = 0.2):
        //   ½ [ln 2π + ln 0.04 + 0.04 / 0.04] = ½ (1.837877 − 3.218876 + 1) = −0.190499.
        // Row 1: y = −1, μ = 0, log σ² = 0: ½ (1.837877 + 0 + 1) = 1.418939.
        let mean = t(&[0.1, 0.0], 2);
        let log_var = t(&[0.04f32.ln(), 0.0], 2);
        let target = t(&[0.3, -1.0], 2);
        let nll = gaussian_nll(&mean, &log_var, &target)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!((nll[0] - -0.190_499).abs() < 1e-5, "{nll:?}");
        assert!((nll[1] - 1.418_939).abs() < 1e-5, "{nll:?}");
    }

    #[test]
    fn squared_error_sums_over_parameters() {
        let mean = t(&[0.1, 0.2, 0.3, 0.4], 2);
        let target = t(&[0.0, 0.0, 1.0, 1.0], 2);
        let se = squared_error(&mean, &target)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        // 0.01 + 0.04, 0.49 + 0.36
        assert!(
            (se[0] - 0.05).abs() < 1e-6 && (se[1] - 0.85).abs() < 1e-6,
            "{se:?}"
        );
    }

    #[test]
    fn masked_rows_do_not_count() {
        let belief = Belief {
            mean: t(&[0.0, 0.0, 0.0], 3),
            log_var: None,
        };
        let target = t(&[1.0, 2.0, 100.0], 3);
        let mask = Tensor::new(&[1.0f32, 1.0, 0.0], &Device::Cpu).unwrap();
        let loss = belief_loss(&belief, &target, Some(&mask))
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((loss - 2.5).abs() < 1e-6, "{loss}"); // (1 + 4) / 2
        let all = belief_loss(&belief, &target, None)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((all - 10_005.0 / 3.0).abs() < 1e-2, "{all}");
    }

    #[test]
    fn nll_gradient_matches_finite_differences() {
        let (mu, lv, y) = ([0.2f64, -0.4], [-1.0f64, 0.5], [0.5f64, 0.1]);
        let mean = Var::from_slice(&mu, (1, 2), &Device::Cpu).unwrap();
        let log_var = Var::from_slice(&lv, (1, 2), &Device::Cpu).unwrap();
        let target = Tensor::from_slice(&y, (1, 2), &Device::Cpu).unwrap();
        let loss = gaussian_nll(mean.as_tensor(), log_var.as_tensor(), &target)
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        let g_mu = grads.get(&mean).unwrap().flatten_all().unwrap();
        let g_lv = grads.get(&log_var).unwrap().flatten_all().unwrap();
        let (g_mu, g_lv) = (
            g_mu.to_vec1::<f64>().unwrap(),
            g_lv.to_vec1::<f64>().unwrap(),
        );
        let f = |mu: [f64; 2], lv: [f64; 2]| -> f64 {
            let m = Tensor::from_slice(&mu, (1, 2), &Device::Cpu).unwrap();
            let l = Tensor::from_slice(&lv, (1, 2), &Device::Cpu).unwrap();
            gaussian_nll(&m, &l, &target)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        let eps = 1e-6;
        for d in 0..2 {
            let (mut up, mut down) = (mu, mu);
            up[d] += eps;
            down[d] -= eps;
            let fd = (f(up, lv) - f(down, lv)) / (2.0 * eps);
            assert!((fd - g_mu[d]).abs() < 1e-6, "dμ{d}: {fd} vs {}", g_mu[d]);
            let (mut up, mut down) = (lv, lv);
            up[d] += eps;
            down[d] -= eps;
            let fd = (f(mu, up) - f(mu, down)) / (2.0 * eps);
            assert!(
                (fd - g_lv[d]).abs() < 1e-6,
                "dlogσ²{d}: {fd} vs {}",
                g_lv[d]
            );
        }
        // Closed form: ∂/∂μ = (μ − y)/σ², ∂/∂log σ² = ½ (1 − (y − μ)²/σ²).
        let closed = (mu[0] - y[0]) / lv[0].exp();
        assert!((g_mu[0] - closed).abs() < 1e-12);
        let closed = 0.5 * (1.0 - (y[1] - mu[1]).powi(2) / lv[1].exp());
        assert!((g_lv[1] - closed).abs() < 1e-12);
    }
}
