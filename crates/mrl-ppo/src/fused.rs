//! Fused passes over contiguous f32 CPU buffers for the optimiser step, each producing
//! exactly the bits of the candle ops it replaces, and the buffer access and f32 sum that
//! the fused PPO loss (`crate::loss`) shares.
//!
//! Every candle op is one allocation and, on the CPU, one pass (and at several threads a
//! pool wake-up); Adam alone is about 12 of them per parameter tensor and minibatch. The
//! passes here do the same f32 arithmetic in the same order, element by element, read from
//! candle-core 0.11's CPU backend:
//!
//! - `t.affine(mul, add)` is `x * (mul as f32) + (add as f32)` (two roundings, not fused; the
//!   `+ 0.0` of `add = 0` turns −0 into +0, so it is kept);
//! - `t * f64` is `affine(f64, 0)`; `a + b`, `a − b`, `a * b`, `a / b`, `sqrt` are the plain
//!   f32 operations; a `broadcast_div` by a scalar divides by that scalar cast to f32;
//! - `to_dtype(F64)` is `x as f64`, `sqr` is `x * x`, and `sum_all` of an f64 tensor adds the
//!   elements in order from 0 (f64 has no SIMD reduction in candle); an f32 sum runs candle's
//!   own reduction kernel ([`candle_sum_f32`]).
//!
//! Callers keep the candle expression as the reference and the fallback: [`with_cpu_f32`]
//! answers `None` for anything but contiguous f32 CPU tensors (another device, f64, a
//! strided view), and the caller then runs the candle ops.

use candle_core::cpu::kernels::VecOps;
use candle_core::{CpuStorage, InplaceOp3, Layout, Storage, Tensor, WithDType};

/// Runs `f` on the contiguous data of CPU tensors of dtype `T`, read in place; `None` (and
/// `f` not run) when one of them is on another device, of another dtype or not contiguous.
pub(crate) fn with_cpu<T: WithDType, R, const N: usize>(
    tensors: [&Tensor; N],
    f: impl FnOnce([&[T]; N]) -> R,
) -> Option<R> {
    let guards = tensors.map(|t| t.storage_and_layout());
    let mut slices: [&[T]; N] = [&[]; N];
    for (slot, (storage, layout)) in slices.iter_mut().zip(&guards) {
        let Storage::Cpu(cpu) = &**storage else {
            return None;
        };
        let data = T::cpu_storage_as_slice(cpu).ok()?;
        let (start, end) = layout.contiguous_offsets()?;
        *slot = &data[start..end];
    }
    Some(f(slices))
}

/// [`with_cpu`] for f32 tensors.
pub(crate) fn with_cpu_f32<R, const N: usize>(
    tensors: [&Tensor; N],
    f: impl FnOnce([&[f32]; N]) -> R,
) -> Option<R> {
    with_cpu(tensors, f)
}

/// `Σ x` in f32 exactly as candle's `sum`/`sum_all` of a contiguous f32 run computes it
/// (its `VecOps::vec_reduce_sum`: 32-wide SIMD partial sums where the CPU has AVX2 or NEON,
/// 16-wide with WASM SIMD, element order otherwise), by calling that same kernel. Runs
/// shorter than every kernel's block (16) are summed here: each kernel then reduces its zero
/// partial sums to +0 and adds the elements in order, which is this loop.
pub(crate) fn candle_sum_f32(x: &[f32]) -> f32 {
    let mut sum = 0.0f32;
    if x.len() < 16 {
        for &v in x {
            sum += v;
        }
        return sum;
    }
    // SAFETY: the kernel reads `x.len()` elements from `x`'s start and writes one f32 to
    // `sum`; both are valid for those accesses.
    unsafe { <f32 as VecOps>::vec_reduce_sum(x.as_ptr(), &mut sum, x.len()) };
    sum
}

/// `Σ x²` in f64, in element order: `t.to_dtype(F64)?.sqr()?.sum_all()` bit for bit.
pub(crate) fn sum_squares_f64(x: &[f32]) -> f64 {
    let mut sum = 0.0f64;
    for &v in x {
        let v = f64::from(v);
        sum += v * v;
    }
    sum
}

/// `x * coef` as candle computes `t * coef` (`affine(coef, 0)` in f32).
pub(crate) fn scaled(x: &[f32], coef: f64) -> Vec<f32> {
    let mul = coef as f32;
    x.iter().map(|&v| v * mul + 0.0).collect()
}

/// The scalars of one Adam step, in f64 as [`crate::Adam::step`] computes them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdamScalars {
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// `√(1 − β₂ᵗ)`.
    pub bias_correction2_sqrt: f64,
    /// `lr / (1 − β₁ᵗ)`.
    pub step_size: f64,
}

/// The new moments of one parameter tensor, element by element as the candle expressions
/// `m + (g − m)·(1 − β₁)` and `v·β₂ + ((1 − β₂)·g)·g` (each product an `affine`).
///
/// # Shapes
/// `grad`, `m`, `v` of one length `n` → two vectors of length `n`.
pub(crate) fn adam_moments(
    grad: &[f32],
    m: &[f32],
    v: &[f32],
    k: &AdamScalars,
) -> (Vec<f32>, Vec<f32>) {
    let w1 = (1.0 - k.beta1) as f32;
    let b2 = k.beta2 as f32;
    let w2 = (1.0 - k.beta2) as f32;
    // Two collects over zipped slices (the compiler vectorises these, not a push loop).
    let m_new = m
        .iter()
        .zip(grad)
        .map(|(&m, &g)| m + ((g - m) * w1 + 0.0))
        .collect();
    let v_new = v
        .iter()
        .zip(grad)
        .map(|(&v, &g)| (v * b2 + 0.0) + (g * w2 + 0.0) * g)
        .collect();
    (m_new, v_new)
}

/// The in-place parameter update of Adam from the new moments:
/// `p ← p + (m / ((√v / √(1 − β₂ᵗ))·1 + ε))·(−step_size)`, the candle expression
/// `p + m.div(v.sqrt().broadcast_div(bc2).affine(1, ε)).affine(−step_size, 0)`.
///
/// Applied with [`Tensor::inplace_op3`] on the parameter (a [`candle_core::Var`]'s tensor,
/// which `Var::set` also overwrites in place), the moments as the two sources.
pub(crate) struct AdamParamUpdate(pub AdamScalars);

impl InplaceOp3 for AdamParamUpdate {
    fn name(&self) -> &'static str {
        "adam-param-update"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<()> {
        let (CpuStorage::F32(p), CpuStorage::F32(m), CpuStorage::F32(v)) = (s1, s2, s3) else {
            candle_core::bail!("adam-param-update: parameter and moments must be f32");
        };
        let (Some((p0, p1)), Some((m0, m1)), Some((v0, v1))) = (
            l1.contiguous_offsets(),
            l2.contiguous_offsets(),
            l3.contiguous_offsets(),
        ) else {
            candle_core::bail!("adam-param-update: parameter and moments must be contiguous");
        };
        let (p, m, v) = (&mut p[p0..p1], &m[m0..m1], &v[v0..v1]);
        if p.len() != m.len() || p.len() != v.len() {
            candle_core::bail!(
                "adam-param-update: parameter has {} elements, moments {} and {}",
                p.len(),
                m.len(),
                v.len()
            );
        }
        let bc2 = self.0.bias_correction2_sqrt as f32;
        let eps = self.0.eps as f32;
        let neg_step = (-self.0.step_size) as f32;
        for ((p, &m), &v) in p.iter_mut().zip(m).zip(v) {
            let denom = (v.sqrt() / bc2) * 1.0 + eps;
            *p += (m / denom) * neg_step + 0.0;
        }
        Ok(())
    }
}
