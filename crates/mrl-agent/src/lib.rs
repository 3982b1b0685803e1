//! # mrl-agent
//!
//! The meta-RL policies of mrl behind one interface, [`Policy`]: the RL² GRU actor-critic,
//! its memory-less MLP baseline and a causal Transformer, on [candle](candle_core) (CPU by
//! default, CUDA behind the `cuda` feature), with fast f32 CPU rollout steps and
//! safetensors checkpoints that name their kind.
//!
//! ```text
//! x_t = [o_t, one_hot(a_{t-1}), r_{t-1}, d_{t-1}]          (InputLayout, 19 wide by default)
//! e_t = ReLU(x_t W_encᵀ + b_enc)                            encoder.0.{weight,bias}
//! h_t = GRU(e_t, h_{t-1})   gates r, z, n as in PyTorch     gru.{weight,bias}_{ih,hh}_l0
//! logits_t = h_t W_πᵀ + b_π,   V_t = h_t w_Vᵀ + b_V         policy_head.*, value_head.*
//! ```
//!
//! The causal Transformer ([`PolicyKind::Transformer`], sizes in [`TransformerConfig`])
//! reads the same rows: an embedding, pre-norm blocks of rotary multi-head self-attention
//! over a sliding causal window of the trial (`context` steps) and a ReLU feed-forward,
//! a final LayerNorm and the same two heads. Rollouts step it with a key/value cache (one
//! step per call, linear in the context, nothing recomputed); PPO trains it on whole
//! trials through candle autograd.
//!
//! The task-inference agent ([`PolicyKind::TaskInference`], settings in
//! [`TaskInferenceConfig`]; VariBAD, Zintgraf et al. 2020) runs RL²'s encoder and GRU as a
//! context encoder whose state is read out as a [`Belief`] about the task (a diagonal
//! Gaussian or a point estimate); its policy and value heads see only `[s_t, belief_t]`.
//! Rollouts step it on candle tensors; PPO trains it with the fused GRU sequence op plus
//! candle autograd, adding an auxiliary belief loss (mrl-ppo).
//!
//! The hidden state is reset only at the start of a trial (K episodes on one task), so the
//! agent can adapt to a new market by forward passes alone (Duan et al. 2016, "RL²";
//! Wang et al. 2016). Parameter names, shapes, gate order and initialisation distributions
//! are PyTorch's (`nn.Linear`, `nn.GRU`), checked against the golden files of the PyTorch
//! reference (outputs and gradients).
//!
//! ## Central types
//!
//! - [`AgentConfig`] / [`PolicyKind`] / [`TransformerConfig`] / [`TaskInferenceConfig`]:
//!   sizes and network kind (RL², MLP, Transformer or task inference), serde.
//! - [`Policy`]: the network on a candle [`Device`](candle_core::Device); one struct over
//!   an enum of kinds, so that every caller holds the same concrete type and each kind
//!   keeps its own fast paths. Entry points:
//!   [`Policy::forward_seq`] unrolls `(B, T)` sequences with autograd,
//!   [`Policy::forward_seq_fused`] does the same with the whole GRU recurrence as one
//!   autograd node with a hand-written backward (CPU, f32),
//!   [`Policy::forward_seq_train`] returns only logits and values with the whole network
//!   (encoder, GRU, heads; for the MLP its two layers and heads, with candle autograd's
//!   numbers bit for bit) as one such node (PPO's training path), and
//!   [`Policy::step`] runs one step on tensors. Parameters are named `Var`s in a fixed
//!   order ([`Policy::parameters`]); [`Policy::save`] / [`Policy::load`] write and check
//!   checkpoints, [`Policy::load_kind`] refuses a checkpoint of another kind.
//! - [`RolloutWorkspace`]: the batched rollout step for `B` trials (no autograd, no
//!   per-step allocation of large buffers): input rows, network, softmax and sampling, on
//!   the fused CPU path, on candle tensors (CUDA), or for the Transformer on its cached
//!   host step; [`RolloutWorkspace::peek_values`] values a bootstrap row without
//!   advancing anything.
//! - [`InputLayout`] / [`PolicyInputs`]: the one place that builds input rows, applying the
//!   policy's [`InputNorm`] (observation z-scores and the previous reward's scale, fitted on
//!   training data and stored in the checkpoint).
//! - [`DeviceChoice`] / [`select_device`]: CPU, CUDA, or a logged fallback.
//!
//! ## Example
//!
//! ```
//! use mrl_agent::{AgentConfig, Policy, PolicyInputs, RolloutWorkspace};
//! use candle_core::Device;
//! use rand::SeedableRng;
//! use rand_chacha::ChaCha8Rng;
//!
//! # fn main() -> mrl_agent::Result<()> {
//! let config = AgentConfig { hidden: 32, ..Default::default() };
//! let policy = Policy::new(&config, &Device::Cpu, 42)?; // seeded weights
//! let batch_size = 4;
//! let mut rollout = RolloutWorkspace::new(&policy, batch_size)?;
//! let mut rng = ChaCha8Rng::seed_from_u64(7);
//!
//! // Trial start: no previous action, reward or done.
//! let obs = vec![0.1f32; batch_size * config.obs_dim];
//! let mut prev_actions = vec![None; batch_size];
//! let step = rollout.step(
//!     &PolicyInputs {
//!         obs: &obs,
//!         prev_actions: &prev_actions,
//!         prev_rewards: &[0.0; 4],
//!         prev_dones: &[false; 4],
//!     },
//!     &mut rng,
//! )?;
//! assert_eq!(step.actions.len(), batch_size);
//! assert!(step.log_probs.iter().all(|lp| *lp <= 0.0));
//! for (prev, &a) in prev_actions.iter_mut().zip(step.actions) {
//!     *prev = Some(a); // fed back at the next step, with the env's reward and done flag
//! }
//! # Ok(())
//! # }
//! ```
//!
//! ## Performance
//!
//! The rollout step at H = 128 is two `(B×128)·(128×384)` products plus element-wise work.
//! The fused path (`RolloutWorkspace` on the CPU) keeps the weights pre-transposed, runs the
//! products through the `gemm` crate with its AVX-512 kernels (≈110 GFLOP/s on one core of
//! the development machine for the update's large products, about 93 % of its f32 peak), fuses gates, heads and softmax into one vectorised pass per
//! row (compiled for AVX-512 / AVX2 and chosen at run time), and splits rows over rayon
//! threads; sampling stays serial in trial order, so results do not depend on the thread
//! count. Measured with `cargo bench --bench gru_rollout` (`fused_1thread`, 2026-12-01):
//! 0.16 M env-steps/s at B = 1 and 0.46–0.47 M at B = 16–1024 on one core (≈ 95 GFLOP/s,
//! 80 % of the core's f32 peak); the plain candle step was 10–15× slower when the two were
//! last run side by side.
//!
//! Training (PPO's full BPTT over `T` = 600 steps) goes through [`Gru::forward_seq_fused`]:
//! a candle custom op that runs the input projection as one GEMM over all `B·T` rows, the
//! recurrence in one CPU kernel (independent blocks of ≥ 16 trials on rayon threads), and
//! BPTT by hand with the weight gradients as one GEMM each, instead of ~100 small autograd
//! ops per step. One PPO gradient step at H = 128, T = 600 measured 9–25 ms (B = 1),
//! 50–80 ms (B = 8) and 160–250 ms (B = 32) on the shared 2-core machine under a load
//! of 4–7; the step-by-step autograd unroll took 270–410, 350–580 and 590–1050 ms, i.e.
//! the fused op is ≈11×, 5× and 2.5× faster in the same sitting
//! (`cargo run --release -p mrl-ppo --example update_speed`).
//!
//! [`Policy::forward_seq_train`] goes one step further: encoder, recurrence and heads are
//! one custom op, so the dozen `(B·T, H)` tensors candle recorded around the GRU (products,
//! biases, ReLU, their gradients) are plain buffers, reused across calls from a small pool
//! instead of being fresh allocations that the kernel zeroes page by page. In one
//! alternating run on a quiet 2-core machine that took the B = 32 step from ≈150 ms
//! (GRU-only op) to ≈90–100 ms; the README has the criterion figures.
//!
//! ## Layout
//!
//! Numeric kernels (`kernels/`: vectorised math, GEMM, the fused GRU / MLP step, the GRU,
//! RL² and MLP sequence ops, the Transformer's cached step) know shapes and formulas, never
//! networks; the networks (`nets/`: layers, the policy and its kinds) build the kernels'
//! weight snapshots and call them. The edge is one-way and a test checks it.
//!
//! ## Feature flags
//!
//! - `cuda`: candle's CUDA backend; [`select_device`] then picks a GPU when one answers.
//!   The crate builds and runs without it.

mod checkpoint;
mod config;
mod device;
mod error;
mod init;
mod input;
mod kernels;
mod nets;
mod norm;
mod pool;
mod rollout;
mod sampling;

pub use checkpoint::{
    CHECKPOINT_FORMAT, CheckpointDims, CheckpointMeta, sidecar_path, write_atomic,
};
pub use config::{
    AgentConfig, BeliefKind, BeliefTarget, PolicyKind, TaskInferenceConfig, TransformerConfig,
};
pub use device::{DeviceChoice, cuda_compiled, select_device};
pub use error::{Error, Result};
pub use input::{InputLayout, PolicyInputs};
pub use nets::{Belief, DECODER_PARAM_NAMES, Gru, Linear, TASK_INFERENCE_PARAM_NAMES};
pub use nets::{MLP_PARAM_NAMES, Policy, RL2_PARAM_NAMES, SeqOutput, StepOutput};
pub use norm::{DEFAULT_NORM_CLIP, InputNorm, NORM_EPSILON, RunningMeanStd};
pub use pool::{WORKER_STACK_BYTES, in_worker_pool, worker_pool};
pub use rollout::{RolloutOptions, RolloutWorkspace, StepView};
pub use sampling::{greedy_action, sample_action};
