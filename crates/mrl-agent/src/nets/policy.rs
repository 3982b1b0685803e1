//! [`Policy`]: the RL² GRU actor-critic, the MLP baseline, the causal Transformer or the
//! task-inference agent, behind one interface.
//!
//! The interface is an enum over network kinds inside one struct, not a trait: the set of
//! kinds is closed and known to checkpoints (the sidecar names it and loading builds it),
//! every caller (rollouts, the PPO update, the backtester, evaluation) holds one concrete
//! `Policy` without generics or boxing, and each kind keeps its own fast paths (the fused
//! GRU kernels, the Transformer's KV cache) behind a `match` instead of behind the lowest
//! common denominator of a trait.

use std::collections::HashMap;

use candle_core::{D, DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::layers::{Gru, Linear, check_shape};
use super::task_inference::{Belief, TaskInferenceNet};
use super::transformer::TransformerNet;
use crate::config::{AgentConfig, PolicyKind};
use crate::error::{Error, Result};
use crate::kernels::fused::{Core, FusedNet};
use crate::kernels::gemm::transpose;
use crate::kernels::mlp_seq::mlp_network_sequence;
use crate::kernels::net_seq::{NetLayout, rl2_network_sequence};
use crate::kernels::packed::PackedRhs;
use crate::kernels::transformer_step::TransformerWeights;

/// Output of [`Policy::forward_seq`].
#[derive(Clone, Debug)]
pub struct SeqOutput {
    /// Action logits, `(B, T, A)`.
    pub logits: Tensor,
    /// State values, `(B, T)`.
    pub values: Tensor,
    /// Final hidden state, `(B, H)`; `None` for a memory-less policy.
    pub h_n: Option<Tensor>,
    /// The belief at every step, `(B, T, latent)`; `None` except for the task-inference
    /// agent.
    pub belief: Option<Belief>,
}

/// Output of [`Policy::step`].
#[derive(Clone, Debug)]
pub struct StepOutput {
    /// Action logits, `(B, A)`.
    pub logits: Tensor,
    /// State values, `(B)`.
    pub values: Tensor,
    /// Next hidden state, `(B, H)`; `None` for a memory-less policy.
    pub h: Option<Tensor>,
    /// The belief after the step, `(B, latent)`; `None` except for the task-inference
    /// agent.
    pub belief: Option<Belief>,
}

/// RL² network: encoder Linear(in, H) + ReLU → GRU(H, H) → heads.
#[derive(Clone, Debug)]
pub(crate) struct Rl2Net {
    pub(crate) encoder: Linear,
    pub(crate) gru: Gru,
    pub(crate) policy_head: Linear,
    pub(crate) value_head: Linear,
}

/// MLP baseline: Linear(in, H) + ReLU → Linear(H, H) + ReLU → heads.
#[derive(Clone, Debug)]
pub(crate) struct MlpNet {
    pub(crate) layer0: Linear,
    pub(crate) layer2: Linear,
    pub(crate) policy_head: Linear,
    pub(crate) value_head: Linear,
}

#[derive(Clone, Debug)]
pub(crate) enum Net {
    Rl2(Rl2Net),
    Mlp(MlpNet),
    Transformer(TransformerNet),
    TaskInference(TaskInferenceNet),
}

/// Parameter names of the RL² network, in PyTorch `state_dict` order.
pub const RL2_PARAM_NAMES: [&str; 10] = [
    "encoder.0.weight",
    "encoder.0.bias",
    "gru.weight_ih_l0",
    "gru.weight_hh_l0",
    "gru.bias_ih_l0",
    "gru.bias_hh_l0",
    "policy_head.weight",
    "policy_head.bias",
    "value_head.weight",
    "value_head.bias",
];

/// Parameter names of the MLP baseline (`body = nn.Sequential(Linear, ReLU, Linear, ReLU)`),
/// in `state_dict` order.
pub const MLP_PARAM_NAMES: [&str; 8] = [
    "body.0.weight",
    "body.0.bias",
    "body.2.weight",
    "body.2.bias",
    "policy_head.weight",
    "policy_head.bias",
    "value_head.weight",
    "value_head.bias",
];

/// An actor-critic policy on a candle [`Device`]: the RL² GRU network, the MLP baseline or
/// the causal Transformer, chosen by [`AgentConfig::kind`].
///
/// Every kind takes the same input rows ([`InputLayout`](crate::InputLayout)) and returns
/// logits and values; the RL² network carries a hidden state, the Transformer attends to
/// the trial's past rows (its rollout memory is the KV cache of
/// [`RolloutWorkspace`](crate::RolloutWorkspace)). Parameters are
/// [`Var`]s named as in PyTorch ([`Policy::parameters`]), in a fixed order for optimisers.
#[derive(Clone, Debug)]
pub struct Policy {
    config: AgentConfig,
    device: Device,
    pub(crate) net: Net,
}

impl Policy {
    /// A freshly initialised policy, weights drawn from `ChaCha8Rng::seed_from_u64(seed)`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for unusable sizes; candle errors from the device.
    pub fn new(config: &AgentConfig, device: &Device, seed: u64) -> Result<Self> {
        Self::from_rng(config, device, &mut ChaCha8Rng::seed_from_u64(seed))
    }

    /// A freshly initialised policy drawing its weights from `rng`, with PyTorch's default
    /// distributions: Linear weight and bias `U(−1/√in, 1/√in)`, GRU `U(−1/√H, 1/√H)`.
    /// Parameters are drawn in [`Policy::parameters`] order.
    ///
    /// # Errors
    /// As [`Policy::new`].
    pub fn from_rng(config: &AgentConfig, device: &Device, rng: &mut ChaCha8Rng) -> Result<Self> {
        config.validate()?;
        let (input, hidden, actions) = (config.input_dim(), config.hidden, config.n_actions);
        let net = match config.kind {
            PolicyKind::Rl2 => Net::Rl2(Rl2Net {
                encoder: Linear::init(input, hidden, rng, device)?,
                gru: Gru::init(hidden, hidden, rng, device)?,
                policy_head: Linear::init(hidden, actions, rng, device)?,
                value_head: Linear::init(hidden, 1, rng, device)?,
            }),
            PolicyKind::Mlp => Net::Mlp(MlpNet {
                layer0: Linear::init(input, hidden, rng, device)?,
                layer2: Linear::init(hidden, hidden, rng, device)?,
                policy_head: Linear::init(hidden, actions, rng, device)?,
                value_head: Linear::init(hidden, 1, rng, device)?,
            }),
            PolicyKind::Transformer => Net::Transformer(TransformerNet::init(config, rng, device)?),
            PolicyKind::TaskInference => {
                Net::TaskInference(TaskInferenceNet::init(config, rng, device)?)
            }
        };
        Ok(Self {
            config: config.clone(),
            device: device.clone(),
            net,
        })
    }

    /// A policy with the given weights (PyTorch names, see [`Policy::parameters`]).
    ///
    /// # Errors
    /// [`Error::ParameterMismatch`] listing every missing, unexpected or mis-shaped tensor.
    pub fn from_tensors(
        config: &AgentConfig,
        tensors: &HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<Self> {
        let mut policy = Self::new(config, device, 0)?;
        policy.set_tensors(tensors, "tensor map")?;
        Ok(policy)
    }

    /// The configuration.
    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// Replaces the input statistics (`None`: identity). The weights are unchanged; clones
    /// made before keep their statistics.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when the statistics do not fit the observation width or hold
    /// a non-finite or non-positive scale.
    pub fn set_input_norm(&mut self, norm: Option<crate::InputNorm>) -> Result<()> {
        if let Some(n) = &norm {
            n.validate(self.config.obs_dim)?;
        }
        self.config.input_norm = norm;
        Ok(())
    }

    /// The network kind.
    pub fn kind(&self) -> PolicyKind {
        self.config.kind
    }

    /// Whether the policy carries a hidden state across steps (RL² and the task-inference
    /// agent's context encoder) or not (MLP, Transformer).
    pub fn is_recurrent(&self) -> bool {
        matches!(self.net, Net::Rl2(_) | Net::TaskInference(_))
    }

    /// The device the parameters live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Whether the output at a step depends on earlier steps of the trial (RL² and the
    /// Transformer) or only on the current input row (MLP).
    pub fn has_memory(&self) -> bool {
        !matches!(self.net, Net::Mlp(_))
    }

    /// Width of the hidden state carried between steps: `H` for RL² and the task-inference
    /// agent, 0 for the MLP and the Transformer (whose memory is the rollout's KV cache, not a fixed-size vector).
    pub fn state_size(&self) -> usize {
        if self.is_recurrent() {
            self.config.hidden
        } else {
            0
        }
    }

    /// `(name, Var)` for every parameter, PyTorch names in `state_dict` order
    /// ([`RL2_PARAM_NAMES`], [`MLP_PARAM_NAMES`], or for the Transformer `embed.*`,
    /// `blocks.{l}.{ln1, attn.qkv, attn.out, ln2, ff.0, ff.2}.*`, `ln_f.*` and the heads;
    /// for the task-inference agent [`TASK_INFERENCE_PARAM_NAMES`](crate::TASK_INFERENCE_PARAM_NAMES)).
    /// Cloning a `Var` shares its storage: updating the returned `Var`s updates the policy.
    pub fn parameters(&self) -> Vec<(&'static str, Var)> {
        let vars: Vec<&Var> = match &self.net {
            Net::Transformer(n) => return owned(n.named_vars()),
            Net::TaskInference(n) => return owned(n.named_vars()),
            Net::Rl2(n) => {
                let [w_ih, w_hh, b_ih, b_hh] = n.gru.vars();
                vec![
                    n.encoder.weight(),
                    n.encoder.bias(),
                    w_ih,
                    w_hh,
                    b_ih,
                    b_hh,
                    n.policy_head.weight(),
                    n.policy_head.bias(),
                    n.value_head.weight(),
                    n.value_head.bias(),
                ]
            }
            Net::Mlp(n) => vec![
                n.layer0.weight(),
                n.layer0.bias(),
                n.layer2.weight(),
                n.layer2.bias(),
                n.policy_head.weight(),
                n.policy_head.bias(),
                n.value_head.weight(),
                n.value_head.bias(),
            ],
        };
        let names: &[&'static str] = match self.net {
            Net::Rl2(_) => &RL2_PARAM_NAMES,
            _ => &MLP_PARAM_NAMES,
        };
        names
            .iter()
            .copied()
            .zip(vars.into_iter().cloned())
            .collect()
    }

    /// Total number of scalar parameters (102,148 for the default RL² network).
    pub fn n_params(&self) -> usize {
        self.parameters().iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// The expected `(name, shape)` of every parameter, in [`Policy::parameters`] order.
    pub fn param_shapes(&self) -> Vec<(&'static str, Vec<usize>)> {
        self.parameters()
            .into_iter()
            .map(|(n, v)| (n, v.dims().to_vec()))
            .collect()
    }

    /// Overwrites the parameters from a name → tensor map (f32, any device). Nothing is
    /// written unless every name and shape matches.
    ///
    /// # Errors
    /// [`Error::ParameterMismatch`] listing every problem, e.g.
    /// `gru.weight_hh_l0: shape [384, 128] in file, expected [96, 32]`, with `source_name`
    /// saying where the tensors came from.
    pub fn set_tensors(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        source_name: &str,
    ) -> Result<()> {
        let params = self.parameters();
        let mut problems = Vec::new();
        for (name, var) in &params {
            match tensors.get(*name) {
                None => problems.push(format!("{name}: missing")),
                Some(t) if t.dims() != var.dims() => problems.push(format!(
                    "{name}: shape {:?} in file, expected {:?}",
                    t.dims(),
                    var.dims()
                )),
                Some(t) if t.dtype() != DType::F32 => {
                    problems.push(format!(
                        "{name}: dtype {:?} in file, expected F32",
                        t.dtype()
                    ));
                }
                Some(_) => {}
            }
        }
        let mut unexpected: Vec<&String> = tensors
            .keys()
            .filter(|k| !params.iter().any(|(n, _)| n == k))
            .collect();
        unexpected.sort();
        problems.extend(
            unexpected
                .into_iter()
                .map(|k| format!("{k}: unexpected tensor")),
        );
        if !problems.is_empty() {
            return Err(Error::ParameterMismatch {
                source_name: source_name.to_string(),
                problems,
            });
        }
        for (name, var) in &params {
            if let Some(t) = tensors.get(*name) {
                var.set(&t.to_device(&self.device)?)?;
            }
        }
        Ok(())
    }

    /// A copy of every parameter as a plain tensor, keyed by PyTorch name.
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        self.parameters()
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.as_tensor().clone()))
            .collect()
    }

    /// Unrolls a batch of trials with autograd (for PPO). The hidden state starts at `h0`
    /// (zeros when `None`: a trial start) and is **not** reset at done flags inside the
    /// sequence. The MLP and the Transformer ignore `h0` (the Transformer's sequence starts
    /// a trial: step `t` attends to steps `t − context + 1 ..= t` of its row, positions
    /// counted from the row's start) and return `h_n = None`.
    ///
    /// # Shapes
    /// `x` `(B, T, in)` (see [`InputLayout::sequence_tensor`](crate::InputLayout::sequence_tensor)),
    /// `h0` `(B, H)` → logits `(B, T, A)`, values `(B, T)`, `h_n` `(B, H)`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for a wrong `x` or `h0`, [`Error::EmptySequence`] for `B` or
    /// `T` = 0.
    pub fn forward_seq(&self, x: &Tensor, h0: Option<&Tensor>) -> Result<SeqOutput> {
        self.sequence(x, h0, false)
    }

    /// As [`Policy::forward_seq`], with the GRU recurrence as one autograd node with a
    /// hand-written backward on the CPU in f32 ([`Gru::forward_seq_fused`]): the fast path
    /// for PPO's full BPTT. Equal to [`Policy::forward_seq`] up to f32 rounding.
    ///
    /// # Shapes
    /// As [`Policy::forward_seq`].
    ///
    /// # Errors
    /// As [`Policy::forward_seq`].
    pub fn forward_seq_fused(&self, x: &Tensor, h0: Option<&Tensor>) -> Result<SeqOutput> {
        self.sequence(x, h0, true)
    }

    /// Logits `(B, T, A)` and values `(B, T)` of a sequence batch with autograd: what the
    /// PPO update needs, without `h_n`. On the CPU in f32 the whole RL² network (encoder,
    /// GRU recurrence, heads) is one autograd node with a hand-written backward, so candle
    /// only sees the `(B, T, A + 1)` output; the MLP is one such node too, whose outputs and
    /// parameter gradients equal candle autograd's through [`Policy::forward_seq`] bit for
    /// bit. Elsewhere, and for the Transformer and the task-inference agent (plain candle
    /// autograd in this version), this is [`Policy::forward_seq_fused`]. The RL² network
    /// equals [`Policy::forward_seq`] up to f32 rounding.
    /// No gradient flows back to `x` on the fused paths (the inputs are data).
    ///
    /// # Shapes
    /// `x` `(B, T, in)`, `h0` `(B, H)` → logits `(B, T, A)`, values `(B, T)`.
    ///
    /// # Errors
    /// As [`Policy::forward_seq`].
    pub fn forward_seq_train(&self, x: &Tensor, h0: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        let fusable = x.device().is_cpu() && x.dtype() == DType::F32;
        if let (Net::Mlp(_), true) = (&self.net, fusable) {
            return self.mlp_sequence_train(x);
        }
        let (Net::Rl2(n), true) = (&self.net, fusable) else {
            let out = self.sequence(x, h0, true)?;
            return Ok((out.logits, out.values));
        };
        self.check_input(x, 3)?;
        let (_, h0) = n.gru.initial_state(x, h0)?; // checks B, T > 0 and h0's shape
        let layout = self.net_layout();
        // The flat parameter vector in NetLayout's order.
        let flat = Tensor::cat(
            &[
                n.encoder.weight().as_tensor().flatten_all()?,
                n.encoder.bias().as_tensor().clone(),
                n.gru.packed()?.flatten_all()?,
                n.policy_head.weight().as_tensor().flatten_all()?,
                n.value_head.weight().as_tensor().flatten_all()?,
                n.policy_head.bias().as_tensor().clone(),
                n.value_head.bias().as_tensor().clone(),
            ],
            0,
        )?;
        let y = rl2_network_sequence(x, &h0, &flat, layout)?; // (B, T, A + 1)
        split_heads(&y, layout.n_actions)
    }

    /// The MLP's [`Policy::forward_seq_train`] on the CPU in f32: the whole network as one
    /// custom op ([`mlp_network_sequence`]) whose logits, values and parameter gradients
    /// are bit for bit those of candle autograd through [`Policy::forward_seq`].
    fn mlp_sequence_train(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (batch, seq_len, _) = self.check_input(x, 3)?;
        if batch == 0 || seq_len == 0 {
            return Err(Error::EmptySequence {
                batch_size: batch,
                seq_len,
            });
        }
        let layout = self.net_layout();
        // The flat parameter vector in MLP_PARAM_NAMES order, as `parameters` lists them.
        let flat = Tensor::cat(
            &self
                .parameters()
                .iter()
                .map(|(_, v)| v.as_tensor().flatten_all())
                .collect::<candle_core::Result<Vec<_>>>()?,
            0,
        )?;
        let y = mlp_network_sequence(x, &flat, layout)?; // (B, T, A + 1)
        split_heads(&y, layout.n_actions)
    }

    /// The sizes of the fused sequence ops' flat parameter vectors.
    fn net_layout(&self) -> NetLayout {
        NetLayout {
            input: self.config.input_dim(),
            hidden: self.config.hidden,
            n_actions: self.config.n_actions,
        }
    }

    /// [`Policy::forward_seq`] (`fused` false) or [`Policy::forward_seq_fused`].
    fn sequence(&self, x: &Tensor, h0: Option<&Tensor>, fused: bool) -> Result<SeqOutput> {
        let (batch, seq_len, _) = self.check_input(x, 3)?;
        if batch == 0 || seq_len == 0 {
            return Err(Error::EmptySequence {
                batch_size: batch,
                seq_len,
            });
        }
        let mut belief = None;
        let (features, h_n) = match &self.net {
            Net::Rl2(n) => {
                let encoded = n.encoder.forward(x)?.relu()?; // (B, T, H)
                let (out, h_n) = if fused {
                    n.gru.forward_seq_fused(&encoded, h0)?
                } else {
                    n.gru.forward_seq(&encoded, h0)?
                }; // (B, T, H), (B, H)
                (out, Some(h_n))
            }
            Net::Mlp(n) => (n.body(x)?, None),
            Net::Transformer(n) => (n.features(x)?, None),
            Net::TaskInference(n) => {
                let encoded = n.encode(x)?; // (B, T, H)
                let (h_all, h_n) = if fused {
                    n.gru.forward_seq_fused(&encoded, h0)?
                } else {
                    n.gru.forward_seq(&encoded, h0)?
                }; // (B, T, H), (B, H)
                let (b, features) = n.belief_and_features(x, &h_all)?;
                belief = Some(b);
                (features, Some(h_n))
            }
        };
        let (logits, values) = self.heads(&features)?;
        Ok(SeqOutput {
            logits,
            values,
            h_n,
            belief,
        })
    }

    /// One step for `B` trials (no sequence dimension). `h` is the hidden state before the
    /// step (zeros when `None`); the MLP ignores it. Records autograd like any tensor op; the
    /// rollout path that needs no graph is [`RolloutWorkspace`](crate::RolloutWorkspace).
    /// When carrying `h` over many steps yourself, pass `h.detach()`, or the graph of every
    /// past step stays alive.
    ///
    /// # Shapes
    /// `x` `(B, in)`, `h` `(B, H)` → logits `(B, A)`, values `(B)`, `h` `(B, H)`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for a wrong `x` or `h`; [`Error::Unsupported`] for the
    /// Transformer, whose step needs the trial's past keys and values (use
    /// [`RolloutWorkspace`](crate::RolloutWorkspace), or [`Policy::forward_seq`] on the
    /// whole trial).
    pub fn step(&self, x: &Tensor, h: Option<&Tensor>) -> Result<StepOutput> {
        let (batch, _, _) = self.check_input(x, 2)?;
        if let Net::Transformer(_) = self.net {
            return Err(Error::Unsupported {
                kind: self.kind().as_str(),
                operation: "a step on tensors",
                reason: "its state is the KV cache of RolloutWorkspace",
            });
        }
        let h_prev = || -> Result<Tensor> {
            match h {
                Some(h) => {
                    check_shape("h", h, &[batch, self.config.hidden])?;
                    Ok(h.clone())
                }
                None => Ok(Tensor::zeros(
                    (batch, self.config.hidden),
                    DType::F32,
                    x.device(),
                )?),
            }
        };
        let mut belief = None;
        let (features, h) = match &self.net {
            Net::Rl2(n) => {
                let encoded = n.encoder.forward(x)?.relu()?; // (B, H)
                let h_next = n.gru.step(&encoded, &h_prev()?)?;
                (h_next.clone(), Some(h_next))
            }
            Net::Mlp(n) => (n.body(x)?, None),
            Net::Transformer(_) => unreachable!("returned above"),
            Net::TaskInference(n) => {
                let h_next = n.gru.step(&n.encode(x)?, &h_prev()?)?; // (B, H)
                let (b, features) = n.belief_and_features(x, &h_next)?;
                belief = Some(b);
                (features, Some(h_next))
            }
        };
        let (logits, values) = self.heads(&features)?;
        Ok(StepOutput {
            logits,
            values,
            h,
            belief,
        })
    }

    /// The task-inference agent's reward reconstruction (objective
    /// [`BeliefTarget::Reward`](crate::BeliefTarget::Reward)): `r̂_t` from the belief before
    /// step `t` (the prior at `t = 0`), the observation `s_t` and the action taken, with
    /// autograd. `belief` is the one [`Policy::forward_seq`] returned for `x`.
    ///
    /// # Shapes
    /// `x` `(B, T, in)`, belief `(B, T, latent)` each, `actions_one_hot` `(B, T, A)` →
    /// `(B, T)`.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for another kind or the supervised objective; candle errors
    /// for mismatched shapes.
    pub fn reconstruct_rewards(
        &self,
        x: &Tensor,
        belief: &Belief,
        actions_one_hot: &Tensor,
    ) -> Result<Tensor> {
        let unsupported = || Error::Unsupported {
            kind: self.kind().as_str(),
            operation: "reward reconstruction",
            reason: "only a task_inference policy with target = \"reward\" has a decoder",
        };
        let Net::TaskInference(n) = &self.net else {
            return Err(unsupported());
        };
        self.check_input(x, 3)?;
        n.reconstruct_rewards(x, belief, actions_one_hot)?
            .ok_or_else(unsupported)
    }

    /// Policy and value heads on the last dimension; values squeezed.
    fn heads(&self, features: &Tensor) -> Result<(Tensor, Tensor)> {
        let (policy_head, value_head) = match &self.net {
            Net::Rl2(n) => (&n.policy_head, &n.value_head),
            Net::Mlp(n) => (&n.policy_head, &n.value_head),
            Net::Transformer(n) => (&n.policy_head, &n.value_head),
            Net::TaskInference(n) => (&n.policy_head, &n.value_head),
        };
        let logits = policy_head.forward(features)?;
        let values = value_head.forward(features)?.squeeze(D::Minus1)?;
        Ok((logits, values))
    }

    /// Checks rank and last dimension of an input; returns `(B, T, in)` (`T` = 1 for rank 2).
    fn check_input(&self, x: &Tensor, rank: usize) -> Result<(usize, usize, usize)> {
        let width = self.config.input_dim();
        let dims = x.dims();
        let ok = dims.len() == rank && dims.last() == Some(&width);
        if !ok {
            let mut expected = vec![dims.first().copied().unwrap_or(0)];
            if rank == 3 {
                expected.push(dims.get(1).copied().unwrap_or(0));
            }
            expected.push(width);
            return Err(Error::ShapeMismatch {
                name: "x".into(),
                expected,
                actual: dims.to_vec(),
            });
        }
        Ok(if rank == 3 {
            (dims[0], dims[1], dims[2])
        } else {
            (dims[0], 1, dims[1])
        })
    }
}

/// `(name, Var)` pairs with the `Var`s cloned (sharing their storage).
/// A fused sequence op's `(B, T, A + 1)` output split into logits `(B, T, A)` and values
/// `(B, T)`.
fn split_heads(y: &Tensor, n_actions: usize) -> Result<(Tensor, Tensor)> {
    let logits = y.narrow(2, 0, n_actions)?.contiguous()?;
    let values = y.narrow(2, n_actions, 1)?.squeeze(2)?.contiguous()?;
    Ok((logits, values))
}

fn owned(vars: Vec<(&'static str, &Var)>) -> Vec<(&'static str, Var)> {
    vars.into_iter()
        .map(|(name, v)| (name, v.clone()))
        .collect()
}

/// Host copy of a `Var` as f32, row-major.
pub(crate) fn host_vec(var: &Var) -> Result<Vec<f32>> {
    let t = var
        .as_tensor()
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?;
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

/// A weight `W` stored `(out, in)` as the packed right operand `Wᵀ` `(in, out)` of the
/// rollout step's products (transposed first, so that the products that go to `gemm` see
/// the operand exactly as before packing existed).
fn packed_t(w: &[f32], out: usize, input: usize) -> PackedRhs {
    PackedRhs::new(&transpose(w, out, input), false, input, out)
}

impl Policy {
    /// Snapshots `policy`'s current weights (copied to the host when on a GPU).
    pub(crate) fn fused_snapshot(&self) -> Result<FusedNet> {
        let policy = self;
        let c = policy.config();
        let (input, hidden, n_actions) = (c.input_dim(), c.hidden, c.n_actions);
        let (first, policy_head, value_head, core) = match &policy.net {
            Net::Rl2(n) => {
                let [w_ih, w_hh, b_ih, b_hh] = n.gru.vars();
                let (b_ih, b_hh) = (host_vec(b_ih)?, host_vec(b_hh)?);
                let b_rz = (0..2 * hidden).map(|j| b_ih[j] + b_hh[j]).collect();
                let core = Core::Gru {
                    w_ih_t: packed_t(&host_vec(w_ih)?, 3 * hidden, hidden),
                    w_hh_t: packed_t(&host_vec(w_hh)?, 3 * hidden, hidden),
                    b_rz,
                    b_in: b_ih[2 * hidden..].to_vec(),
                    b_hn: b_hh[2 * hidden..].to_vec(),
                };
                (&n.encoder, &n.policy_head, &n.value_head, core)
            }
            Net::Mlp(n) => {
                let core = Core::Mlp {
                    w2_t: packed_t(&host_vec(n.layer2.weight())?, hidden, hidden),
                    b2: host_vec(n.layer2.bias())?,
                };
                (&n.layer0, &n.policy_head, &n.value_head, core)
            }
            Net::Transformer(_) | Net::TaskInference(_) => return Err(self.not_fusable()),
        };
        let mut w_heads = host_vec(policy_head.weight())?;
        w_heads.extend(host_vec(value_head.weight())?);
        let mut b_heads = host_vec(policy_head.bias())?;
        b_heads.extend(host_vec(value_head.bias())?);
        Ok(FusedNet {
            input,
            hidden,
            n_actions,
            w1_t: packed_t(&host_vec(first.weight())?, hidden, input),
            b1: host_vec(first.bias())?,
            core,
            w_heads,
            b_heads,
        })
    }
}

impl Policy {
    /// The error for asking a Transformer for the GRU / MLP rollout snapshot.
    fn not_fusable(&self) -> Error {
        Error::Unsupported {
            kind: self.kind().as_str(),
            operation: "the fused GRU / MLP rollout step",
            reason: "only the RL² and MLP networks have the fused kernel (the Transformer steps \
                     with its KV cache, the task-inference agent on candle tensors)",
        }
    }

    /// Host snapshot of the Transformer's weights for the cached rollout step; `None` for
    /// the other kinds.
    pub(crate) fn transformer_snapshot(&self) -> Result<Option<TransformerWeights>> {
        match &self.net {
            Net::Transformer(n) => Ok(Some(n.snapshot(self.config.n_actions)?)),
            _ => Ok(None),
        }
    }
}

impl MlpNet {
    /// `relu(relu(x W0ᵀ + b0) W2ᵀ + b2)`, `(..., in)` → `(..., H)`.
    fn body(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self
            .layer2
            .forward(&self.layer0.forward(x)?.relu()?)?
            .relu()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_rl2_has_the_reference_parameter_count() {
        let p = Policy::new(&AgentConfig::default(), &Device::Cpu, 0).unwrap();
        assert_eq!(p.n_params(), 102_148);
        assert!(p.is_recurrent());
        assert_eq!(p.state_size(), 128);
        let shapes = p.param_shapes();
        assert_eq!(shapes[3], ("gru.weight_hh_l0", vec![384, 128]));
    }

    #[test]
    fn mlp_shapes_and_no_state() {
        let c = AgentConfig {
            kind: PolicyKind::Mlp,
            hidden: 8,
            ..Default::default()
        };
        let p = Policy::new(&c, &Device::Cpu, 0).unwrap();
        assert!(!p.is_recurrent());
        assert_eq!(p.state_size(), 0);
        let x = Tensor::zeros((2, 5, 19), DType::F32, &Device::Cpu).unwrap();
        let out = p.forward_seq(&x, None).unwrap();
        assert_eq!(out.logits.dims(), &[2, 5, 3]);
        assert_eq!(out.values.dims(), &[2, 5]);
        assert!(out.h_n.is_none());
    }

    #[test]
    fn mlp_training_pass_is_candle_autograd_bit_for_bit() {
        let c = AgentConfig {
            kind: PolicyKind::Mlp,
            hidden: 16,
            ..Default::default()
        };
        let p = Policy::new(&c, &Device::Cpu, 7).unwrap();
        let (batch, seq_len, width) = (2, 50, c.input_dim());
        let x: Vec<f32> = (0..batch * seq_len * width)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        let x = Tensor::from_vec(x, (batch, seq_len, width), &Device::Cpu).unwrap();
        let weights: Vec<f32> = (0..batch * seq_len * 3)
            .map(|i| (i % 7) as f32 - 3.0)
            .collect();
        let weights = Tensor::from_vec(weights, (batch, seq_len, 3), &Device::Cpu).unwrap();
        let loss = |logits: &Tensor, values: &Tensor| {
            ((logits * &weights).unwrap().sum_all().unwrap()
                + values.sqr().unwrap().sum_all().unwrap())
            .unwrap()
        };
        let reference = p.forward_seq(&x, None).unwrap();
        let (logits, values) = p.forward_seq_train(&x, None).unwrap();
        let bits = |t: &Tensor| -> Vec<u32> {
            let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            v.iter().map(|f| f.to_bits()).collect()
        };
        assert_eq!(bits(&logits), bits(&reference.logits));
        assert_eq!(bits(&values), bits(&reference.values));
        let grads_ref = loss(&reference.logits, &reference.values)
            .backward()
            .unwrap();
        let grads = loss(&logits, &values).backward().unwrap();
        for (name, var) in p.parameters() {
            let g = grads.get(var.as_tensor()).unwrap();
            assert_eq!(
                bits(g),
                bits(grads_ref.get(var.as_tensor()).unwrap()),
                "{name}"
            );
        }
    }

    #[test]
    fn init_bounds_follow_pytorch() {
        let c = AgentConfig {
            hidden: 16,
            ..Default::default()
        };
        let p = Policy::new(&c, &Device::Cpu, 3).unwrap();
        for (name, var) in p.parameters() {
            let bound = if name.starts_with("encoder") {
                1.0 / 19f32.sqrt()
            } else {
                0.25 // 1/√16 for the GRU and both heads
            };
            let v = var.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(v.iter().all(|w| w.abs() <= bound), "{name}");
        }
    }

    #[test]
    fn wrong_input_width_is_a_shape_error() {
        let p = Policy::new(
            &AgentConfig {
                hidden: 4,
                ..Default::default()
            },
            &Device::Cpu,
            0,
        )
        .unwrap();
        let x = Tensor::zeros((2, 18), DType::F32, &Device::Cpu).unwrap();
        match p.step(&x, None) {
            Err(Error::ShapeMismatch {
                expected, actual, ..
            }) => {
                assert_eq!((expected, actual), (vec![2, 19], vec![2, 18]));
            }
            other => panic!("expected a shape error, got {other:?}"),
        }
        let x = Tensor::zeros((2, 0, 19), DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(
            p.forward_seq(&x, None),
            Err(Error::EmptySequence { .. })
        ));
    }
}
