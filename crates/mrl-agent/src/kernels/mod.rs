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

/// Defines an `#[inline(always)]` function `$name(args…)` and `$simd_name(simd, args…)`,
/// which runs it compiled for the instruction set `simd` (AVX-512, AVX2 + FMA or the
/// baseline; the exp polynomials vectorise):
///
/// ```text
/// per_instruction_set! {
///     /// docs
///     fn name => name_simd(a: &[f32], b: &mut [f32]) { … }
/// }
/// ```
///
/// The builds take the slices as parameters of their own, not inside a struct or an enum:
/// only then does the compiler know that they do not overlap and vectorise the loops without
/// run-time overlap checks (an isolated test of the GRU's forward gate pass: 10–11 ms through
/// an enum, 2.7–3.3 ms with the slices as parameters, per 600 steps of 16 trials at H = 128;
/// in the training binary the gate passes took 31 % less time). The arithmetic is the same
/// scalar code at every width (no contraction into FMAs), so the results are the same bits.
macro_rules! per_instruction_set {
    (
        $(#[$meta:meta])*
        fn $name:ident => $simd_name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block
    ) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        #[inline(always)]
        fn $name($($arg: $ty),*) $body

        /// Runs the function of the same name without `_simd` built for `simd`.
        #[allow(clippy::too_many_arguments)]
        fn $simd_name(simd: $crate::kernels::fused::Simd, $($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[allow(clippy::too_many_arguments)]
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) {
                    $name($($arg),*)
                }
                #[allow(clippy::too_many_arguments)]
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) {
                    $name($($arg),*)
                }
                match simd {
                    // SAFETY: `Simd::Avx512` is only detected with AVX-512F present.
                    $crate::kernels::fused::Simd::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: `Simd::Avx2` is only detected with AVX2 and FMA present.
                    $crate::kernels::fused::Simd::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::kernels::fused::Simd::Baseline => {}
                }
            }
            $name($($arg),*)
        }
    };
}

pub(crate) mod fused;
pub(crate) mod gemm;
pub(crate) mod gru_seq;
pub(crate) mod math;
pub(crate) mod mlp_seq;
pub(crate) mod net_seq;
pub(crate) mod packed;
pub(crate) mod scratch;
pub(crate) mod transformer_step;

/// The f32 bit patterns of `v`, for tests that assert bit-for-bit equality.
#[cfg(test)]
pub(crate) fn test_bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Deterministic test values in `(−scale, scale)` (a multiplicative hash of the index).
#[cfg(test)]
pub(crate) fn test_values(n: usize, seed: u32, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed) as f32 / u32::MAX as f32)
        .map(|u| (2.0 * u - 1.0) * scale)
        .collect()
}
