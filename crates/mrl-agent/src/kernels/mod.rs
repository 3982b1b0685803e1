//! Numeric kernels: plain f32 CPU code and candle custom ops that know shapes and
//! formulas, not networks.
//!
//! - [`math`]: vectorisable `exp`, `σ`, `tanh`, dot products, the softmax of one row.
//! - [`gemm`]: row-major matrix products through the `gemm` crate, transposes.
//! - [`fused`]: the batched GRU / MLP rollout step on a pre-transposed weight snapshot.
//! - [`gru_seq`], [`net_seq`]: the GRU recurrence and the whole RL² network over a
//!   sequence as candle custom ops with hand-written backward passes.
//! - [`mlp_seq`]: the MLP baseline over a sequence batch as one custom op whose products
//!   and sums are candle autograd's, bit for bit.
//! - [`packed`]: few-row products against a weight packed once, bit for bit `gemm`'s.
//! - [`scratch`]: the buffer pool of the sequence ops.
//! - [`transformer_step`]: the causal Transformer's rollout step with a KV cache.
//!
//! **Layering invariant:** nothing here imports the networks ([`crate::nets`]), the
//! rollout workspace or checkpoints; the networks build the kernels' weight snapshots and
//! call them (a one-way edge, checked by the crate's tidy test).

pub(crate) mod fused;
pub(crate) mod gemm;
pub(crate) mod gru_seq;
pub(crate) mod math;
pub(crate) mod mlp_seq;
pub(crate) mod net_seq;
pub(crate) mod packed;
pub(crate) mod scratch;
pub(crate) mod transformer_step;

/// Deterministic test values in `(−scale, scale)` (a multiplicative hash of the index).
#[cfg(test)]
pub(crate) fn test_values(n: usize, seed: u32, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed) as f32 / u32::MAX as f32)
        .map(|u| (2.0 * u - 1.0) * scale)
        .collect()
}
