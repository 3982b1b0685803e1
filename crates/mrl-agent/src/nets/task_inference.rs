//! The task-inference (context) agent after VariBAD (Zintgraf et al. 2020, "VariBAD: A Very
//! Good Method for Bayes-Adaptive Deep RL via Meta-Learning"): a GRU context encoder over the
//! trial's input rows produces a belief about the task, and the policy reads only the current
//! observation and that belief.
//!
//! ```text
//! e_t = relu(x_t W_encᵀ + b_enc)                              encoder.0.{weight,bias}
//! h_t = GRU(e_t, h_{t−1})          (h reset at a trial start)  gru.*_l0
//! b_t = h_t W_bᵀ + b_b = [μ_t, log σ²_t]  (Gaussian) or z_t    belief_head.{weight,bias}
//! f_t = relu([s_t, b_t] W_b0ᵀ + b_b0)                          body.0.{weight,bias}
//! f_t ← relu(f_t W_b2ᵀ + b_b2)     (second layer, default)      body.2.{weight,bias}
//! logits = f_t W_πᵀ + b_π,   V = f_t w_Vᵀ + b_V               policy_head, value_head
//! ```
//!
//! `x_t = [s_t, one_hot(a_{t−1}), r_{t−1}, d_{t−1}]` is the RL² row
//! ([`InputLayout`](crate::InputLayout), input statistics applied) and `s_t` its first
//! `obs_dim` columns. The encoder and GRU are RL²'s (the hidden state carries over the
//! episodes of a trial exactly as RL²'s does); unlike RL², the heads see the history only
//! through the belief. Both PPO and the auxiliary belief loss train the encoder (VariBAD
//! trains its encoder by the ELBO alone; here the policy gradient also reaches it).
//! The log-variance is the head's raw output (no clamp), as VariBAD's.
//!
//! With the reconstruction objective ([`BeliefTarget::Reward`]) a decoder predicts the
//! step's reward from the belief before the step, the observation and the action taken:
//!
//! ```text
//! r̂_t = W_d2 relu([b_{t−1}, s_t, one_hot(a_t)] W_d0ᵀ + b_d0) + b_d2   decoder.{0,2}.*
//! b_{−1} = belief_head(0)  (the prior: the belief of the zero state)
//! ```

use candle_core::{D, Device, Tensor, Var};
use rand_chacha::ChaCha8Rng;

use super::layers::{Gru, Linear};
use crate::config::{AgentConfig, BeliefKind, BeliefTarget};
use crate::error::Result;

/// Parameter names of the reward decoder, after [`TASK_INFERENCE_PARAM_NAMES`], present
/// only with the reconstruction objective ([`BeliefTarget::Reward`]).
pub const DECODER_PARAM_NAMES: [&str; 4] = [
    "decoder.0.weight",
    "decoder.0.bias",
    "decoder.2.weight",
    "decoder.2.bias",
];

/// Parameter names of the task-inference network with its default two-layer body, in
/// `state_dict` order (a one-layer body has no `body.2.*`).
pub const TASK_INFERENCE_PARAM_NAMES: [&str; 16] = [
    "encoder.0.weight",
    "encoder.0.bias",
    "gru.weight_ih_l0",
    "gru.weight_hh_l0",
    "gru.bias_ih_l0",
    "gru.bias_hh_l0",
    "belief_head.weight",
    "belief_head.bias",
    "body.0.weight",
    "body.0.bias",
    "body.2.weight",
    "body.2.bias",
    "policy_head.weight",
    "policy_head.bias",
    "value_head.weight",
    "value_head.bias",
];

/// A task-inference agent's belief about the task at every step.
///
/// # Shapes
/// `(B, T, latent)` for a sequence, `(B, latent)` for a step.
#[derive(Clone, Debug)]
pub struct Belief {
    /// The mean `μ_t` (Gaussian) or the point estimate `z_t`.
    pub mean: Tensor,
    /// The log-variance `log σ²_t` of a Gaussian belief; `None` for a point belief.
    pub log_var: Option<Tensor>,
}

/// The task-inference network.
#[derive(Clone, Debug)]
pub(crate) struct TaskInferenceNet {
    pub(crate) encoder: Linear,
    pub(crate) gru: Gru,
    pub(crate) belief_head: Linear,
    pub(crate) body: Linear,
    /// The body's second layer (`body_layers = 2`).
    pub(crate) body2: Option<Linear>,
    pub(crate) policy_head: Linear,
    pub(crate) value_head: Linear,
    /// The reward decoder (reconstruction objective only).
    pub(crate) decoder: Option<(Linear, Linear)>,
    obs_dim: usize,
    belief: BeliefKind,
    latent: usize,
}

impl TaskInferenceNet {
    /// Initialises the network, drawing from `rng` in [`TASK_INFERENCE_PARAM_NAMES`] order
    /// (then [`DECODER_PARAM_NAMES`]) with PyTorch's default distributions.
    pub(crate) fn init(
        config: &AgentConfig,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<Self> {
        let (input, hidden, actions) = (config.input_dim(), config.hidden, config.n_actions);
        let ti = &config.task_inference;
        let width = ti.belief_width();
        let encoder = Linear::init(input, hidden, rng, device)?;
        let gru = Gru::init(hidden, hidden, rng, device)?;
        let belief_head = Linear::init(hidden, width, rng, device)?;
        let body = Linear::init(config.obs_dim + width, hidden, rng, device)?;
        let body2 = if ti.body_layers >= 2 {
            Some(Linear::init(hidden, hidden, rng, device)?)
        } else {
            None
        };
        let policy_head = Linear::init(hidden, actions, rng, device)?;
        let value_head = Linear::init(hidden, 1, rng, device)?;
        let decoder = match ti.target {
            BeliefTarget::Task => None,
            BeliefTarget::Reward => Some((
                Linear::init(width + config.obs_dim + actions, hidden, rng, device)?,
                Linear::init(hidden, 1, rng, device)?,
            )),
        };
        Ok(Self {
            encoder,
            gru,
            belief_head,
            body,
            body2,
            policy_head,
            value_head,
            decoder,
            obs_dim: config.obs_dim,
            belief: ti.belief,
            latent: ti.latent,
        })
    }

    /// Every parameter with its name, in [`TASK_INFERENCE_PARAM_NAMES`] order.
    pub(crate) fn named_vars(&self) -> Vec<(&'static str, &Var)> {
        let [w_ih, w_hh, b_ih, b_hh] = self.gru.vars();
        let body2 = self.body2.as_ref();
        let vars = [
            Some(self.encoder.weight()),
            Some(self.encoder.bias()),
            Some(w_ih),
            Some(w_hh),
            Some(b_ih),
            Some(b_hh),
            Some(self.belief_head.weight()),
            Some(self.belief_head.bias()),
            Some(self.body.weight()),
            Some(self.body.bias()),
            body2.map(Linear::weight),
            body2.map(Linear::bias),
            Some(self.policy_head.weight()),
            Some(self.policy_head.bias()),
            Some(self.value_head.weight()),
            Some(self.value_head.bias()),
        ];
        let mut named: Vec<(&'static str, &Var)> = TASK_INFERENCE_PARAM_NAMES
            .into_iter()
            .zip(vars)
            .filter_map(|(name, var)| Some((name, var?)))
            .collect();
        if let Some((d0, d2)) = &self.decoder {
            let vars = [d0.weight(), d0.bias(), d2.weight(), d2.bias()];
            named.extend(DECODER_PARAM_NAMES.into_iter().zip(vars));
        }
        named
    }

    /// Rewards predicted by the decoder from the belief before each step, the observation
    /// and the action taken; `None` without a decoder.
    ///
    /// # Shapes
    /// `x` `(B, T, in)`, `belief` `(B, T, latent)` each (after each step),
    /// `actions_one_hot` `(B, T, A)` → `(B, T)`.
    pub(crate) fn reconstruct_rewards(
        &self,
        x: &Tensor,
        belief: &Belief,
        actions_one_hot: &Tensor,
    ) -> Result<Option<Tensor>> {
        let Some((d0, d2)) = &self.decoder else {
            return Ok(None);
        };
        let (batch, seq_len, _) = x.dims3()?;
        let after = match &belief.log_var {
            Some(lv) => Tensor::cat(&[&belief.mean, lv], D::Minus1)?,
            None => belief.mean.clone(),
        }; // (B, T, width)
        let width = after.dim(D::Minus1)?;
        // The prior b_{−1}: the belief head on the zero state is its bias.
        let prior = self
            .belief_head
            .bias()
            .as_tensor()
            .reshape((1, 1, width))?
            .broadcast_as((batch, 1, width))?; // (B, 1, width)
        let before = if seq_len > 1 {
            Tensor::cat(&[&prior, &after.narrow(1, 0, seq_len - 1)?], 1)?
        } else {
            prior.contiguous()?
        }; // (B, T, width): b_{t−1}
        let obs = x.narrow(D::Minus1, 0, self.obs_dim)?;
        let input = Tensor::cat(&[&before, &obs, actions_one_hot], D::Minus1)?;
        let r = d2.forward(&d0.forward(&input)?.relu()?)?; // (B, T, 1)
        Ok(Some(r.squeeze(D::Minus1)?))
    }

    /// The encoder's output `relu(x W_encᵀ + b_enc)`.
    ///
    /// # Shapes
    /// `(..., in)` → `(..., H)`.
    pub(crate) fn encode(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.encoder.forward(x)?.relu()?)
    }

    /// The belief read from GRU states `h`, and the features the heads read.
    ///
    /// # Shapes
    /// `x` `(..., in)`, `h` `(..., H)` → (belief `(..., latent)` each, features `(..., H)`).
    pub(crate) fn belief_and_features(&self, x: &Tensor, h: &Tensor) -> Result<(Belief, Tensor)> {
        let raw = self.belief_head.forward(h)?; // (..., width)
        let obs = x.narrow(D::Minus1, 0, self.obs_dim)?; // (..., obs_dim): s_t
        let body_in = Tensor::cat(&[&obs, &raw], D::Minus1)?; // (..., obs_dim + width)
        let mut features = self.body.forward(&body_in)?.relu()?;
        if let Some(body2) = &self.body2 {
            features = body2.forward(&features)?.relu()?;
        }
        let belief = match self.belief {
            BeliefKind::Gaussian => Belief {
                mean: raw.narrow(D::Minus1, 0, self.latent)?,
                log_var: Some(raw.narrow(D::Minus1, self.latent, self.latent)?),
            },
            BeliefKind::Point => Belief {
                mean: raw,
                log_var: None,
            },
        };
        Ok((belief, features))
    }
}
