//! A differentiable Llama with LoRA adapters, for preference training of the roles.
//!
//! The base weights come from the same GGUF file as the embedded backend, dequantised to
//! f32 or f64 and frozen (plain tensors, never `Var`s). Low-rank adapters (Hu et al. 2021,
//! "LoRA: Low-Rank Adaptation of Large Language Models", arXiv:2106.09685) sit on the query
//! and value projections of every layer: `W x + (α / r) · B A x`, with `A` (`r × in`) drawn
//! uniformly in ±1/√in from a seeded `ChaCha8Rng` and `B` (`out × r`) zero, so an untrained
//! adapter leaves the model unchanged. Only `A` and `B` receive gradients.
//!
//! The forward pass is candle's quantised Llama written out as differentiable ops: RMSNorm,
//! interleaved ("normal", llama.cpp) rotary embeddings, grouped-query causal attention,
//! SwiGLU feed-forward, tied or separate output matrix. RMSNorm, the rotary embedding, the
//! causal softmax and the frozen linear layers are single candle custom ops with their own
//! backward (the gradient of the input only: the base is frozen), on the rayon threads;
//! each is tested against the chain of candle tensor ops it replaces. It processes one
//! whole sequence, or continuations of a shared prefix, and returns logits.

use std::path::Path;

use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{DType, Device, Tensor, Var};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::decoder::{LlamaShape, rotary_tables};
use crate::embedded::{EmbeddedBackend, Weights};
use crate::error::{Error, Result};

/// Adapter settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank `r` of each adapter.
    pub rank: usize,
    /// Scale numerator `α` (the update is multiplied by `α / r`).
    pub alpha: f64,
    /// Seed of the `A` matrices.
    pub seed: u64,
}

impl Default for LoraConfig {
    /// Rank 8, α = 16: the LoRA paper's common setting for attention projections.
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 16.0,
            seed: 0,
        }
    }
}

/// One low-rank adapter: `(α / r) · B A`.
#[derive(Debug, Clone)]
pub struct Lora {
    /// `A`, shape `[r, in]`.
    pub a: Var,
    /// `B`, shape `[out, r]`.
    pub b: Var,
    scale: f64,
}

impl Lora {
    fn new(
        rank: usize,
        d_in: usize,
        d_out: usize,
        scale: f64,
        dtype: DType,
        rng: &mut ChaCha8Rng,
    ) -> Result<Self> {
        let bound = 1.0 / (d_in as f64).sqrt();
        let a: Vec<f64> = (0..rank * d_in)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        let a = Tensor::from_vec(a, (rank, d_in), &Device::Cpu)?.to_dtype(dtype)?;
        Ok(Self {
            a: Var::from_tensor(&a)?,
            b: Var::zeros((d_out, rank), dtype, &Device::Cpu)?,
            scale,
        })
    }

    /// The adapter's contribution for rows `x` (`[T, in]` → `[T, out]`); with `grad` false
    /// the matrices enter detached, so no autograd graph is recorded.
    fn forward(&self, x: &Tensor, grad: bool) -> Result<Tensor> {
        let (a, b) = match grad {
            true => (self.a.as_tensor().clone(), self.b.as_tensor().clone()),
            false => (self.a.as_tensor().detach(), self.b.as_tensor().detach()),
        };
        Ok((x.matmul(&a.t()?)?.matmul(&b.t()?)? * self.scale)?)
    }
}

#[derive(Debug)]
struct Layer {
    attn_norm: Tensor,
    wq: Tensor,
    wk: Tensor,
    wv: Tensor,
    wo: Tensor,
    ffn_norm: Tensor,
    w_gate: Tensor,
    w_up: Tensor,
    w_down: Tensor,
    lora_q: Lora,
    lora_v: Lora,
}

/// A Llama model with frozen base weights and trainable LoRA adapters.
#[derive(Debug)]
pub struct LoraLlama {
    embed: Tensor,
    norm: Tensor,
    output: Tensor,
    layers: Vec<Layer>,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    eps: f64,
    cos: Tensor,
    sin: Tensor,
    dtype: DType,
}

/// `x Wᵀ` with `W` frozen: a custom op whose backward returns the gradient of `x` only.
///
/// candle's own matmul backward also computes (and keeps until the optimiser step) the
/// gradient of every frozen weight matrix, `xᵀ g`: as much work as the forward matmul and
/// one weight-sized buffer per matrix (≈ 0.5 GB for SmolLM2-135M in f32), all discarded.
struct FrozenLinear {
    /// `W`, `[out, in]`.
    w: Tensor,
}

impl RealKernel for FrozenLinear {
    const NAME: &'static str = "frozen-linear";

    fn run<T: Real>(
        &self,
        x: &[T],
        dims: &[usize],
    ) -> candle_core::Result<(Vec<T>, candle_core::Shape)> {
        let (t, d_in) = match dims {
            [t, d_in] => (*t, *d_in),
            dims => candle_core::bail!("frozen-linear: [T, in] expected, got {dims:?}"),
        };
        let (d_out, w_in) = self.w.dims2()?;
        if w_in != d_in {
            candle_core::bail!("frozen-linear: rows of {d_in} against a weight [{d_out}, {w_in}]");
        }
        let y = with_cpu_data(Self::NAME, &self.w, |w| x_wt(x, w, (t, d_in, d_out)))?;
        Ok((y, (t, d_out).into()))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        // [T, out] x [out, in] -> [T, in]
        Ok(Some(grad_res.matmul(&self.w)?))
    }
}

/// `x Wᵀ` for a frozen `W` ([`FrozenLinear`]).
///
/// # Shapes
/// `x`: `[T, in]`, `w`: `[out, in]` → `[T, out]`.
fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    Ok(x.contiguous()?
        .apply_op1(RealOp(FrozenLinear { w: w.clone() }))?)
}

/// The keys and values of one layer for the positions run so far, after the rotary
/// embedding and before the grouped-query repeat: each `[kv_heads, T, d]`.
type LayerCache = (Tensor, Tensor);

/// `x / sqrt(mean(x²) + eps) · w` over the last dimension, `w` frozen ([`RmsNorm`]).
///
/// # Shapes
/// `x`: `[.., D]`, `w`: `[D]` → `[.., D]`.
fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    Ok(x.contiguous()?
        .apply_op1(RealOp(RmsNorm { w: w.clone(), eps }))?)
}

/// The contiguous f32 or f64 data of a CPU op's input, or a named error.
fn cpu_slice<'a, T: candle_core::WithDType>(
    op: &str,
    data: &'a [T],
    layout: &candle_core::Layout,
) -> candle_core::Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: the input must be contiguous"),
    }
}

/// Runs `f` on the contiguous CPU data of `tensor` (a frozen weight) without copying it, or
/// a named error for another device, dtype or layout.
fn with_cpu_data<T: candle_core::WithDType, R>(
    op: &str,
    tensor: &Tensor,
    f: impl FnOnce(&[T]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let (storage, layout) = tensor.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("{op}: the weight must be on the CPU");
    };
    let data = cpu.as_slice::<T>()?;
    f(cpu_slice(op, data, layout)?)
}

/// A custom op's CPU forward, generic over the model's two element types.
trait RealKernel {
    /// The op's name (in errors).
    const NAME: &'static str;

    /// The output and its shape for the contiguous input `x` of shape `dims`.
    fn run<T: Real>(
        &self,
        x: &[T],
        dims: &[usize],
    ) -> candle_core::Result<(Vec<T>, candle_core::Shape)>;

    /// The gradient of the input from the input `arg`, the output `res` and the output's
    /// gradient (the op's backward).
    fn bwd(
        &self,
        arg: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>>;
}

/// A [`RealKernel`] as a candle op: on a CPU input its f32 or f64 data read in place (a
/// named error for another dtype or a strided layout), backward by the kernel's own.
struct RealOp<K>(K);

impl<K: RealKernel + Send + Sync> candle_core::CustomOp1 for RealOp<K> {
    fn name(&self) -> &'static str {
        K::NAME
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use candle_core::CpuStorage;
        let dims = layout.dims();
        Ok(match storage {
            CpuStorage::F32(v) => {
                let (y, shape) = self.0.run(cpu_slice(K::NAME, v, layout)?, dims)?;
                (CpuStorage::F32(y), shape)
            }
            CpuStorage::F64(v) => {
                let (y, shape) = self.0.run(cpu_slice(K::NAME, v, layout)?, dims)?;
                (CpuStorage::F64(y), shape)
            }
            _ => candle_core::bail!("{}: f32 or f64 input expected", K::NAME),
        })
    }

    fn bwd(
        &self,
        arg: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        self.0.bwd(arg, res, grad_res)
    }
}

/// `x Wᵀ` through `gemm` (candle's own kernels), with `x` `[T, in]` and `W` `[out, in]`
/// row-major: `[T, out]`, on the rayon threads.
fn x_wt<T: candle_core::WithDType>(
    x: &[T],
    w: &[T],
    (t, d_in, d_out): (usize, usize, usize),
) -> candle_core::Result<Vec<T>> {
    if x.len() != t * d_in || w.len() != d_out * d_in {
        candle_core::bail!(
            "frozen-linear: {} inputs, {} weights for [{t}, {d_in}] x [{d_out}, {d_in}]ᵀ",
            x.len(),
            w.len()
        );
    }
    let mut y = vec![T::zero(); t * d_out];
    if t == 0 || d_out == 0 {
        return Ok(y);
    }
    // SAFETY: the lengths are checked above; `y` is [t, d_out] row-major (column stride 1,
    // row stride d_out), `x` is [t, d_in] row-major, and Wᵀ is read as [d_in, d_out] with
    // column stride d_in and row stride 1, all inside their slices; `y` aliases neither.
    unsafe {
        gemm::gemm(
            t,
            d_out,
            d_in,
            y.as_mut_ptr(),
            1,
            d_out as isize,
            false,
            x.as_ptr(),
            1,
            d_in as isize,
            w.as_ptr(),
            d_in as isize,
            1,
            T::zero(),
            T::one(),
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        );
    }
    Ok(y)
}

/// The backward pass of a row-wise op from two same-shaped inputs (the op's input or
/// output, and the gradient of its output), one row of `cols` at a time.
trait RowGrad: Send + Sync {
    const NAME: &'static str;

    fn rows<T: Real>(&self, a: &[T], g: &[T], cols: usize) -> candle_core::Result<Vec<T>>;
}

/// A [`RowGrad`] as a candle op (used without its own backward).
struct RowGradOp<G>(G);

impl<G: RowGrad> candle_core::CustomOp2 for RowGradOp<G> {
    fn name(&self) -> &'static str {
        G::NAME
    }

    fn cpu_fwd(
        &self,
        a: &candle_core::CpuStorage,
        a_layout: &candle_core::Layout,
        g: &candle_core::CpuStorage,
        g_layout: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use candle_core::CpuStorage;
        if a_layout.dims() != g_layout.dims() {
            candle_core::bail!(
                "{}: {:?} against a gradient {:?}",
                G::NAME,
                a_layout.dims(),
                g_layout.dims()
            );
        }
        let cols = a_layout.dims().last().copied().unwrap_or(0);
        let storage = match (a, g) {
            (CpuStorage::F32(a), CpuStorage::F32(g)) => CpuStorage::F32(self.0.rows(
                cpu_slice(G::NAME, a, a_layout)?,
                cpu_slice(G::NAME, g, g_layout)?,
                cols,
            )?),
            (CpuStorage::F64(a), CpuStorage::F64(g)) => CpuStorage::F64(self.0.rows(
                cpu_slice(G::NAME, a, a_layout)?,
                cpu_slice(G::NAME, g, g_layout)?,
                cols,
            )?),
            _ => candle_core::bail!("{}: f32 or f64 inputs of one type expected", G::NAME),
        };
        Ok((storage, a_layout.shape().clone()))
    }
}

/// RMSNorm (Zhang & Sennrich 2019, arXiv:1910.07467) with a frozen gain `w`, one pass per
/// row: `y = x · r · w` with `r = 1/√(mean(x²) + ε)`. Backward gives `∂x` only:
/// `∂x = r · w ⊙ g − x · r³ · mean(w ⊙ g ⊙ x)` (the gain is never trained here).
struct RmsNorm {
    /// `w`, `[D]`.
    w: Tensor,
    eps: f64,
}

/// `∂x` of [`RmsNorm`] from `x` (the op's input) and `g` (the gradient of its output).
struct RmsNormGrad {
    w: Tensor,
    eps: f64,
}

/// `1/√(mean(x²) + ε)` of one row, accumulated in the element type.
fn inv_rms<T: Real>(row: &[T], eps: f64) -> T {
    let mut ss = T::zero();
    for &v in row {
        ss += v * v;
    }
    let n = T::from_f64(row.len() as f64);
    T::one() / (ss / n + T::from_f64(eps)).sqrt()
}

impl RmsNorm {
    fn rows<T: Real>(x: &[T], w: &[T], eps: f64) -> Vec<T> {
        let d = w.len();
        let mut y = vec![T::zero(); x.len()];
        y.par_chunks_mut(d).zip(x.par_chunks(d)).for_each(|(y, x)| {
            let r = inv_rms(x, eps);
            for ((y, &x), &w) in y.iter_mut().zip(x).zip(w) {
                *y = x * r * w;
            }
        });
        y
    }
}

impl RowGrad for RmsNormGrad {
    const NAME: &'static str = "rms-norm-grad";

    fn rows<T: Real>(&self, x: &[T], g: &[T], d: usize) -> candle_core::Result<Vec<T>> {
        let (w, eps) = (gain::<T>(&self.w, d)?, self.eps);
        let mut dx = vec![T::zero(); x.len()];
        dx.par_chunks_mut(d)
            .zip(x.par_chunks(d).zip(g.par_chunks(d)))
            .for_each(|(dx, (x, g))| {
                let r = inv_rms(x, eps);
                let mut dot = T::zero();
                for ((&x, &g), &w) in x.iter().zip(g).zip(&w) {
                    dot += w * g * x;
                }
                let c = r * r * r * dot / T::from_f64(d as f64);
                for (((dx, &x), &g), &w) in dx.iter_mut().zip(x).zip(g).zip(&w) {
                    *dx = r * w * g - x * c;
                }
            });
        Ok(dx)
    }
}

/// The gain of a norm op as a vector of the input's element type.
fn gain<T: candle_core::WithDType>(w: &Tensor, d: usize) -> candle_core::Result<Vec<T>> {
    let w = w.to_dtype(T::DTYPE)?.to_vec1::<T>()?;
    if w.len() != d {
        candle_core::bail!("rms-norm: a gain of {} for rows of {d}", w.len());
    }
    Ok(w)
}

impl RealKernel for RmsNorm {
    const NAME: &'static str = "rms-norm";

    fn run<T: Real>(
        &self,
        x: &[T],
        dims: &[usize],
    ) -> candle_core::Result<(Vec<T>, candle_core::Shape)> {
        let d = dims.last().copied().unwrap_or(0);
        Ok((Self::rows(x, &gain(&self.w, d)?, self.eps), dims.into()))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let grad = RowGradOp(RmsNormGrad {
            w: self.w.clone(),
            eps: self.eps,
        });
        Ok(Some(arg.apply_op2_no_bwd(&grad_res.contiguous()?, &grad)?))
    }
}

/// Attention weights `softmax(x · scale + mask)` over the last dimension of `x`
/// (`[heads, T, cols]`), with the causal mask of rows at positions `past..past + T`: row `i`
/// sees columns `0 ..= past + i`. One pass per row forward (the maximum subtracted first),
/// and backward `∂x = scale · y ⊙ (g − Σ_j g_j y_j)` (the softmax Jacobian; masked columns
/// have `y = 0`), instead of a chain of seven tensor ops, each an allocation the size of
/// the attention matrix, and their backward passes.
struct CausalSoftmax {
    scale: f64,
    past: usize,
}

impl CausalSoftmax {
    /// The rows of `x` (`[.., T, cols]`, contiguous) in place.
    fn rows<T: Real>(&self, x: &mut [T], t: usize, cols: usize) {
        let scale = T::from_f64(self.scale);
        x.par_chunks_exact_mut(cols)
            .enumerate()
            .for_each(|(r, row)| {
                let visible = (self.past + r % t + 1).min(cols);
                let (seen, hidden) = row.split_at_mut(visible);
                let mut max = T::from_f64(f64::NEG_INFINITY);
                for v in seen.iter_mut() {
                    *v *= scale;
                    max = max.max(*v);
                }
                let mut sum = T::zero();
                for v in seen.iter_mut() {
                    *v = (*v - max).exp();
                    sum += *v;
                }
                for v in seen.iter_mut() {
                    *v /= sum;
                }
                hidden.fill(T::zero());
            });
    }
}

/// The element types of the custom ops (f32, and f64 for gradient checks): candle's vector
/// ops, `e^x` (libm's `expf` for f32, as candle's `exp`) and `√x`.
trait Real: candle_core::WithDType + candle_core::cpu::kernels::VecOps {
    fn exp(self) -> Self;
    fn sqrt(self) -> Self;
}

impl Real for f32 {
    fn exp(self) -> Self {
        f32::exp(self)
    }
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
}

impl Real for f64 {
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
}

impl RealKernel for CausalSoftmax {
    const NAME: &'static str = "causal-softmax";

    fn run<T: Real>(
        &self,
        x: &[T],
        dims: &[usize],
    ) -> candle_core::Result<(Vec<T>, candle_core::Shape)> {
        let (t, cols) = match dims {
            [.., t, cols] => (*t, *cols),
            _ => candle_core::bail!("causal-softmax: [.., T, cols] expected, got {dims:?}"),
        };
        let mut y = x.to_vec();
        self.rows(&mut y, t, cols);
        Ok((y, dims.into()))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let grad = RowGradOp(CausalSoftmaxGrad { scale: self.scale });
        Ok(Some(res.apply_op2_no_bwd(&grad_res.contiguous()?, &grad)?))
    }
}

/// `∂x = scale · y ⊙ (g − Σ_j g_j y_j)` of [`CausalSoftmax`] from its output `y` and the
/// gradient `g` of that output, one pass per row.
struct CausalSoftmaxGrad {
    scale: f64,
}

impl RowGrad for CausalSoftmaxGrad {
    const NAME: &'static str = "causal-softmax-grad";

    fn rows<T: Real>(&self, y: &[T], g: &[T], cols: usize) -> candle_core::Result<Vec<T>> {
        let scale = T::from_f64(self.scale);
        let mut dx = vec![T::zero(); y.len()];
        dx.par_chunks_mut(cols)
            .zip(y.par_chunks(cols).zip(g.par_chunks(cols)))
            .for_each(|(dx, (y, g))| {
                let mut gy = T::zero();
                for (&g, &y) in g.iter().zip(y) {
                    gy += g * y;
                }
                for ((dx, &g), &y) in dx.iter_mut().zip(g).zip(y) {
                    *dx = (g - gy) * y * scale;
                }
            });
        Ok(dx)
    }
}

/// Interleaved rotary embedding: pairs `(2i, 2i+1)` rotated by `pos · θ_i` ([`Rope`]).
///
/// # Shapes
/// `x`: `[heads, T, d]`; `cos`, `sin`: `[T, d/2]`.
fn rope_interleaved(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    Ok(x.contiguous()?.apply_op1(RealOp(Rope {
        cos: cos.clone(),
        sin: sin.clone(),
        inverse: false,
    }))?)
}

/// Rotary position embedding (Su et al. 2021, "RoFormer", arXiv:2104.09864) in llama.cpp's
/// interleaved ("normal") layout, one pass over `[heads, T, d]`:
/// `(y₀, y₁) = (x₀ cos − x₁ sin, x₀ sin + x₁ cos)` for each pair `(2i, 2i+1)` of row `t`.
/// The rotation is orthogonal, so backward is the inverse rotation (`sin` negated) of the
/// gradient.
struct Rope {
    /// `[T, d/2]`.
    cos: Tensor,
    /// `[T, d/2]`.
    sin: Tensor,
    /// Rotate by `−pos · θ_i` (the backward pass).
    inverse: bool,
}

impl Rope {
    fn rows<T: Real>(&self, x: &[T], t: usize, d: usize) -> candle_core::Result<Vec<T>> {
        let cos = self.cos.to_dtype(T::DTYPE)?.flatten_all()?.to_vec1::<T>()?;
        let mut sin = self.sin.to_dtype(T::DTYPE)?.flatten_all()?.to_vec1::<T>()?;
        if cos.len() != t * d / 2 || sin.len() != cos.len() {
            candle_core::bail!("rope: tables of {} for {t} positions of {d}", cos.len());
        }
        if self.inverse {
            sin.iter_mut().for_each(|s| *s = T::zero() - *s);
        }
        let mut y = vec![T::zero(); x.len()];
        y.par_chunks_mut(d)
            .zip(x.par_chunks(d))
            .enumerate()
            .for_each(|(row, (y, x))| {
                let at = (row % t) * (d / 2);
                let (cos, sin) = (&cos[at..at + d / 2], &sin[at..at + d / 2]);
                for (i, (y, x)) in y.chunks_exact_mut(2).zip(x.chunks_exact(2)).enumerate() {
                    y[0] = x[0] * cos[i] - x[1] * sin[i];
                    y[1] = x[0] * sin[i] + x[1] * cos[i];
                }
            });
        Ok(y)
    }
}

impl RealKernel for Rope {
    const NAME: &'static str = "rope-interleaved";

    fn run<T: Real>(
        &self,
        x: &[T],
        dims: &[usize],
    ) -> candle_core::Result<(Vec<T>, candle_core::Shape)> {
        let (t, d) = match dims {
            [_, t, d] if d % 2 == 0 => (*t, *d),
            dims => candle_core::bail!("rope: [heads, T, even d] expected, got {dims:?}"),
        };
        Ok((self.rows(x, t, d)?, dims.into()))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let inverse = Rope {
            cos: self.cos.clone(),
            sin: self.sin.clone(),
            inverse: !self.inverse,
        };
        Ok(Some(
            grad_res.contiguous()?.apply_op1_no_bwd(&RealOp(inverse))?,
        ))
    }
}

impl LoraLlama {
    /// Loads the base weights of a Llama GGUF file in `dtype` (F32 or F64) and adds fresh
    /// adapters.
    ///
    /// # Errors
    /// [`Error::ModelNotFound`], [`Error::BadModel`], [`Error::Metadata`],
    /// [`Error::InvalidSetting`] for a zero rank.
    pub fn load(path: &Path, config: &LoraConfig, dtype: DType) -> Result<Self> {
        if config.rank == 0 {
            return Err(Error::setting("rank", 0, "at least 1"));
        }
        if !path.is_file() {
            return Err(Error::ModelNotFound {
                path: path.to_path_buf(),
            });
        }
        let bad = |reason: String| Error::BadModel {
            path: path.to_path_buf(),
            reason,
        };
        let mut file = std::fs::File::open(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let content = gguf_file::Content::read(&mut file).map_err(|e| bad(e.to_string()))?;
        let LlamaShape {
            n_head,
            n_kv_head,
            n_layer,
            hidden,
            eps,
            rope_base,
        } = LlamaShape::read(&content)?;
        let eps = f64::from(eps);
        let head_dim = hidden / n_head;
        let device = Device::Cpu;
        let mut tensor = |name: &str| -> Result<Tensor> {
            let q = content
                .tensor(&mut file, name, &device)
                .map_err(|e| bad(format!("tensor {name}: {e}")))?;
            Ok(q.dequantize(&device)?.to_dtype(dtype)?)
        };
        let embed = tensor("token_embd.weight")?;
        let norm = tensor("output_norm.weight")?;
        let output = match content.tensor_infos.contains_key("output.weight") {
            true => tensor("output.weight")?,
            false => embed.clone(),
        };
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let scale = config.alpha / config.rank as f64;
        let mut layers = Vec::with_capacity(n_layer);
        for i in 0..n_layer {
            let p = format!("blk.{i}");
            let wq = tensor(&format!("{p}.attn_q.weight"))?;
            let wv = tensor(&format!("{p}.attn_v.weight"))?;
            let lora_q = Lora::new(config.rank, hidden, wq.dim(0)?, scale, dtype, &mut rng)?;
            let lora_v = Lora::new(config.rank, hidden, wv.dim(0)?, scale, dtype, &mut rng)?;
            layers.push(Layer {
                attn_norm: tensor(&format!("{p}.attn_norm.weight"))?,
                wq,
                wk: tensor(&format!("{p}.attn_k.weight"))?,
                wv,
                wo: tensor(&format!("{p}.attn_output.weight"))?,
                ffn_norm: tensor(&format!("{p}.ffn_norm.weight"))?,
                w_gate: tensor(&format!("{p}.ffn_gate.weight"))?,
                w_up: tensor(&format!("{p}.ffn_up.weight"))?,
                w_down: tensor(&format!("{p}.ffn_down.weight"))?,
                lora_q,
                lora_v,
            });
        }
        let (cos, sin) = rotary_tables(head_dim, rope_base, 4096)?;
        Ok(Self {
            embed,
            norm,
            output,
            layers,
            n_head,
            n_kv_head,
            head_dim,
            eps,
            cos: cos.to_dtype(dtype)?,
            sin: sin.to_dtype(dtype)?,
            dtype,
        })
    }

    /// A model on the same frozen base weights (shared, not copied: 0.5 GB saved per extra
    /// role with SmolLM2-135M in f32) with fresh adapters of `config`, drawn exactly as
    /// [`load`](Self::load) draws them: equal to loading the file again with `config`.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] for a zero rank; candle errors.
    pub fn with_new_adapters(&self, config: &LoraConfig) -> Result<Self> {
        if config.rank == 0 {
            return Err(Error::setting("rank", 0, "at least 1"));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let scale = config.alpha / config.rank as f64;
        let hidden = self.embed.dim(1)?;
        let (rank, dtype) = (config.rank, self.dtype);
        let layers = self
            .layers
            .iter()
            .map(|l| {
                Ok(Layer {
                    // Drawn in load's order: the query adapter, then the value adapter.
                    lora_q: Lora::new(rank, hidden, l.wq.dim(0)?, scale, dtype, &mut rng)?,
                    lora_v: Lora::new(rank, hidden, l.wv.dim(0)?, scale, dtype, &mut rng)?,
                    attn_norm: l.attn_norm.clone(),
                    wq: l.wq.clone(),
                    wk: l.wk.clone(),
                    wv: l.wv.clone(),
                    wo: l.wo.clone(),
                    ffn_norm: l.ffn_norm.clone(),
                    w_gate: l.w_gate.clone(),
                    w_up: l.w_up.clone(),
                    w_down: l.w_down.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embed: self.embed.clone(),
            norm: self.norm.clone(),
            output: self.output.clone(),
            layers,
            n_head: self.n_head,
            n_kv_head: self.n_kv_head,
            head_dim: self.head_dim,
            eps: self.eps,
            cos: self.cos.clone(),
            sin: self.sin.clone(),
            dtype,
        })
    }

    /// The trainable tensors, in a fixed order: for each layer, `A` and `B` of the query
    /// adapter, then of the value adapter.
    pub fn adapters(&self) -> Vec<&Var> {
        self.layers
            .iter()
            .flat_map(|l| [&l.lora_q.a, &l.lora_q.b, &l.lora_v.a, &l.lora_v.b])
            .collect()
    }

    /// The adapters by name (`blk.{i}.lora_q.a`, `…lora_q.b`, `…lora_v.a`, `…lora_v.b`),
    /// as tensors of the model's dtype: what [`save_adapters`](Self::save_adapters) writes.
    pub fn adapter_tensors(&self) -> Vec<(String, Tensor)> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(i, l)| {
                [
                    (format!("blk.{i}.lora_q.a"), l.lora_q.a.as_tensor().clone()),
                    (format!("blk.{i}.lora_q.b"), l.lora_q.b.as_tensor().clone()),
                    (format!("blk.{i}.lora_v.a"), l.lora_v.a.as_tensor().clone()),
                    (format!("blk.{i}.lora_v.b"), l.lora_v.b.as_tensor().clone()),
                ]
            })
            .collect()
    }

    /// Writes the adapters to a safetensors file (names of
    /// [`adapter_tensors`](Self::adapter_tensors)). Not atomic by itself: callers write into
    /// a temporary directory and rename it.
    ///
    /// # Errors
    /// Candle's safetensors errors (I/O).
    pub fn save_adapters(&self, path: &Path) -> Result<()> {
        let tensors: std::collections::HashMap<String, Tensor> =
            self.adapter_tensors().into_iter().collect();
        candle_core::safetensors::save(&tensors, path)?;
        Ok(())
    }

    /// Replaces the adapters with those of a safetensors file written by
    /// [`save_adapters`](Self::save_adapters) for a model of the same shape.
    ///
    /// # Errors
    /// [`Error::BadModel`] naming the file when a tensor is missing or has another shape;
    /// candle errors reading it.
    pub fn load_adapters(&self, path: &Path) -> Result<()> {
        let mut stored = candle_core::safetensors::load(path, &Device::Cpu)?;
        let bad = |reason: String| Error::BadModel {
            path: path.to_path_buf(),
            reason,
        };
        for (i, l) in self.layers.iter().enumerate() {
            for (name, var) in [
                (format!("blk.{i}.lora_q.a"), &l.lora_q.a),
                (format!("blk.{i}.lora_q.b"), &l.lora_q.b),
                (format!("blk.{i}.lora_v.a"), &l.lora_v.a),
                (format!("blk.{i}.lora_v.b"), &l.lora_v.b),
            ] {
                let tensor = stored
                    .remove(&name)
                    .ok_or_else(|| bad(format!("adapter {name} is missing")))?;
                if tensor.dims() != var.dims() {
                    return Err(bad(format!(
                        "adapter {name} has shape {:?}, the model needs {:?}",
                        tensor.dims(),
                        var.dims()
                    )));
                }
                var.set(&tensor.to_dtype(self.dtype)?)?;
            }
        }
        Ok(())
    }

    /// The embedded backend of the adapted model: the GGUF file at `path` (the one this
    /// model was loaded from) with the adapters merged into the query and value matrices,
    /// `W + (α / r) B A` in f32, so that generation (with its KV cache) samples from the
    /// current policy. With [`Weights::Quantized`] the other matrices stay quantised.
    ///
    /// # Errors
    /// As [`EmbeddedBackend::load`]; [`Error::BadModel`] if `path` has other layers.
    pub fn merged_backend(&self, path: &Path, weights: Weights) -> Result<EmbeddedBackend> {
        let mut merge = |name: &str, tensor: QTensor| -> Result<QTensor> {
            let Some((layer, which)) = name
                .strip_prefix("blk.")
                .and_then(|rest| rest.split_once('.'))
            else {
                return Ok(tensor);
            };
            let is_query = match which {
                "attn_q.weight" => true,
                "attn_v.weight" => false,
                _ => return Ok(tensor),
            };
            let layer = layer
                .parse::<usize>()
                .ok()
                .and_then(|i| self.layers.get(i))
                .ok_or_else(|| Error::BadModel {
                    path: path.to_path_buf(),
                    reason: format!("{name} has no adapter in this model"),
                })?;
            let lora = if is_query {
                &layer.lora_q
            } else {
                &layer.lora_v
            };
            let device = Device::Cpu;
            let delta = (lora.b.as_tensor().matmul(lora.a.as_tensor())? * lora.scale)?
                .to_dtype(DType::F32)?;
            let merged = (tensor.dequantize(&device)? + delta)?;
            Ok(QTensor::quantize(&merged, GgmlDType::F32)?)
        };
        EmbeddedBackend::load_rewritten(path, weights, Some(&mut merge))
    }

    /// The element type of the weights.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Logits of every position of `ids`.
    ///
    /// # Shapes
    /// `ids`: `[T]` → `[T, vocab]`.
    ///
    /// # Errors
    /// [`Error::ContextOverflow`] for an empty or too long sequence; candle errors.
    pub fn forward(&self, ids: &[u32]) -> Result<Tensor> {
        self.forward_rows(ids, 0)
    }

    /// Logits of positions `from..` of `ids` only: the same numbers as the rows of
    /// [`forward`](Self::forward), without the output projection of the earlier positions
    /// (for DPO, which needs only the rows that predict the response).
    ///
    /// # Shapes
    /// `ids`: `[T]` → `[T − from, vocab]`.
    ///
    /// # Errors
    /// [`Error::ContextOverflow`] for an empty or too long sequence,
    /// [`Error::InvalidSetting`] for `from ≥ T`; candle errors.
    pub fn forward_rows(&self, ids: &[u32], from: usize) -> Result<Tensor> {
        let t = ids.len();
        if t > 0 && from >= t {
            return Err(Error::setting("from", from, "a position of the sequence"));
        }
        let (x, _) = self.run_layers(ids, None, true)?;
        self.logits(&x.narrow(0, from, t - from)?)
    }

    /// Logits of several continuations of one shared prefix: the prefix runs through the
    /// layers once, and each continuation attends to its keys and values (the same graph
    /// for all, so backward passes through the prefix once). Row `i` of continuation `c`
    /// equals row `P + i` of [`forward`](Self::forward) over `prefix ++ c`.
    ///
    /// For DPO the prompt is the shared prefix of the chosen and the rejected response:
    /// the prompt's activations are held once instead of twice.
    ///
    /// # Shapes
    /// `prefix`: `[P]` (may be empty), each continuation `[R_c]`, `R_c ≥ 1` → one
    /// `[R_c, vocab]` per continuation.
    ///
    /// # Errors
    /// [`Error::ContextOverflow`] for an empty continuation or a sequence longer than the
    /// context; candle errors.
    pub fn forward_continuations(
        &self,
        prefix: &[u32],
        continuations: &[&[u32]],
    ) -> Result<Vec<Tensor>> {
        self.continuations(prefix, continuations, true)
    }

    /// [`forward_continuations`](Self::forward_continuations) without recording the
    /// autograd graph (the adapters enter detached): the same numbers, for passes that need
    /// no gradient (DPO's reference log-probabilities, losses logged after training). Each
    /// op's output is freed as soon as the next op has read it.
    ///
    /// # Shapes and errors
    /// As [`forward_continuations`](Self::forward_continuations).
    pub fn forward_continuations_detached(
        &self,
        prefix: &[u32],
        continuations: &[&[u32]],
    ) -> Result<Vec<Tensor>> {
        self.continuations(prefix, continuations, false)
    }

    fn continuations(
        &self,
        prefix: &[u32],
        continuations: &[&[u32]],
        grad: bool,
    ) -> Result<Vec<Tensor>> {
        let cache = match prefix.is_empty() {
            true => None,
            false => Some(self.run_layers(prefix, None, grad)?.1),
        };
        continuations
            .iter()
            .map(|ids| {
                let (x, _) = self.run_layers(ids, cache.as_deref(), grad)?;
                self.logits(&x)
            })
            .collect()
    }

    /// The output head: final RMSNorm and the (frozen) output projection.
    ///
    /// # Shapes
    /// `x`: `[T, D]` → `[T, vocab]`.
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        linear(&rms_norm(x, &self.norm, self.eps)?, &self.output)
    }

    /// Runs the layers over `ids` at the positions after `past` (the keys and values of
    /// the earlier positions, one pair per layer, or none): the hidden states of `ids` and
    /// every layer's keys and values extended by them. With `grad` false the adapters
    /// enter detached and no autograd graph is recorded.
    ///
    /// # Shapes
    /// `ids`: `[T]`; each cached key or value `[kv_heads, P, d]` → `[T, D]` and
    /// `[kv_heads, P + T, d]` per layer.
    fn run_layers(
        &self,
        ids: &[u32],
        past: Option<&[LayerCache]>,
        grad: bool,
    ) -> Result<(Tensor, Vec<LayerCache>)> {
        let t = ids.len();
        let p = match past.and_then(|c| c.first()) {
            Some((k, _)) => k.dim(1)?,
            None => 0,
        };
        let context = self.cos.dim(0)?;
        if t == 0 || p + t > context {
            return Err(Error::ContextOverflow {
                prompt_tokens: p + t,
                max_new_tokens: 0,
                context,
            });
        }
        let device = Device::Cpu;
        let index = Tensor::new(ids, &device)?;
        // No adapter precedes the embedding: detached, so that backward never builds the
        // vocabulary-sized gradient of the frozen table.
        let mut x = self.embed.index_select(&index, 0)?.detach(); // [T, D]
        let cos = self.cos.narrow(0, p, t)?;
        let sin = self.sin.narrow(0, p, t)?;
        let cols = p + t;
        let n_rep = self.n_head / self.n_kv_head;
        let hd = self.head_dim;
        let mut caches = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            let h = rms_norm(&x, &layer.attn_norm, self.eps)?;
            let q = (linear(&h, &layer.wq)? + layer.lora_q.forward(&h, grad)?)?;
            let k = linear(&h, &layer.wk)?;
            let v = (linear(&h, &layer.wv)? + layer.lora_v.forward(&h, grad)?)?;
            // [T, heads·d] -> [heads, T, d]
            let q = q
                .reshape((t, self.n_head, hd))?
                .transpose(0, 1)?
                .contiguous()?;
            let k = k
                .reshape((t, self.n_kv_head, hd))?
                .transpose(0, 1)?
                .contiguous()?;
            let v = v
                .reshape((t, self.n_kv_head, hd))?
                .transpose(0, 1)?
                .contiguous()?;
            let q = rope_interleaved(&q, &cos, &sin)?;
            let k = rope_interleaved(&k, &cos, &sin)?;
            let (k, v) = match past {
                Some(cache) => (
                    Tensor::cat(&[&cache[i].0, &k], 1)?,
                    Tensor::cat(&[&cache[i].1, &v], 1)?,
                ),
                None => (k, v),
            };
            caches.push((k.clone(), v.clone()));
            // Query head j reads key/value head j / n_rep: the query heads of one key/value
            // head are adjacent, so grouping them as the rows of one matrix per key/value
            // head ([kv_heads, n_rep·T, d]) reads each key and value once, without copies.
            let q = q.reshape((self.n_kv_head, n_rep * t, hd))?;
            // Row i (position p + i) sees columns 0 ..= p + i.
            let att = q
                .matmul(&k.t()?)?
                .reshape((self.n_head, t, cols))?
                .apply_op1(RealOp(CausalSoftmax {
                    scale: 1.0 / (hd as f64).sqrt(),
                    past: p,
                }))?;
            let y = att
                .reshape((self.n_kv_head, n_rep * t, cols))?
                .matmul(&v)?
                .reshape((self.n_head, t, hd))?; // [heads, T, d]
            let y = y.transpose(0, 1)?.reshape((t, self.n_head * hd))?;
            x = (x + linear(&y, &layer.wo)?)?;
            let h = rms_norm(&x, &layer.ffn_norm, self.eps)?;
            let gate = linear(&h, &layer.w_gate)?.silu()?;
            let up = linear(&h, &layer.w_up)?;
            x = (x + linear(&(gate * up)?, &layer.w_down)?)?;
        }
        Ok((x, caches))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::D;

    use super::*;

    /// A tensor of seeded draws, uniform in `center ± spread`.
    fn draws(shape: &[usize], center: f64, spread: f64, seed: u64) -> Tensor {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = shape.iter().product();
        let v: Vec<f64> = (0..n)
            .map(|_| center + rng.random_range(-spread..spread))
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &[f64], b: &[f64]) -> f64 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max)
    }

    /// Compares `op` with `chain` (the same function in candle's tensor ops) at `x` in f64:
    /// values within `tol.0`, and gradients of `Σ f(x) ⊙ c` (a fixed seeded `c`) within
    /// `tol.1`. Returns the op's output, its gradient and `c`, flattened.
    fn against_chain(
        x: &Tensor,
        op: impl Fn(&Tensor) -> Result<Tensor>,
        chain: impl Fn(&Tensor) -> Result<Tensor>,
        tol: (f64, f64),
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let x = Var::from_tensor(x).unwrap();
        let (y_op, y_chain) = (op(&x).unwrap(), chain(&x).unwrap());
        let c = draws(y_op.dims(), 0.0, 1.0, 3);
        let grad = |y: &Tensor| {
            let grads = (y * &c).unwrap().sum_all().unwrap().backward().unwrap();
            flat(grads.get(&x).unwrap())
        };
        let (g_op, g_chain) = (grad(&y_op), grad(&y_chain));
        let (y_op, y_chain) = (flat(&y_op), flat(&y_chain));
        assert!(
            max_diff(&y_op, &y_chain) < tol.0,
            "{}",
            max_diff(&y_op, &y_chain)
        );
        assert!(
            max_diff(&g_op, &g_chain) < tol.1,
            "{}",
            max_diff(&g_op, &g_chain)
        );
        (y_op, g_op, flat(&c))
    }

    #[test]
    fn the_rms_norm_op_equals_the_chain_of_tensor_ops_in_value_and_gradient() {
        let x = draws(&[2, 5, 24], 0.0, 3.0, 1);
        let w = draws(&[24], 1.0, 0.5, 2);
        let eps = 1e-5;
        let chain = |x: &Tensor| -> Result<Tensor> {
            let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
            Ok(x.broadcast_div(&(ms + eps)?.sqrt()?)?.broadcast_mul(&w)?)
        };
        let (_, a, _) = against_chain(&x, |x| rms_norm(x, &w, eps), chain, (1e-13, 1e-12));
        assert!(a.iter().any(|g| g.abs() > 1e-3));
    }

    #[test]
    fn the_rope_op_equals_the_chain_of_tensor_ops_and_backward_is_the_inverse_rotation() {
        let device = Device::Cpu;
        let (heads, t, d) = (3, 7, 8);
        let x = draws(&[heads, t, d], 0.0, 1.0, 4);
        let theta = draws(&[t, d / 2], 0.0, 3.0, 5);
        let (cos, sin) = (theta.cos().unwrap(), theta.sin().unwrap());
        let chain = |x: &Tensor| -> Result<Tensor> {
            let pairs = x.reshape((heads, t, d / 2, 2))?;
            let x0 = pairs.narrow(3, 0, 1)?.squeeze(3)?;
            let x1 = pairs.narrow(3, 1, 1)?.squeeze(3)?;
            let r0 = (x0.broadcast_mul(&cos)? - x1.broadcast_mul(&sin)?)?;
            let r1 = (x0.broadcast_mul(&sin)? + x1.broadcast_mul(&cos)?)?;
            Ok(Tensor::stack(&[r0, r1], 3)?.reshape((heads, t, d))?)
        };
        let (_, a, c) = against_chain(
            &x,
            |x| rope_interleaved(x, &cos, &sin),
            chain,
            (1e-14, 1e-14),
        );
        // A rotation keeps norms: backward of Σ y ⊙ c is c rotated back, of c's norm.
        let norm = |v: &[f64]| v.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!((norm(&a) - norm(&c)).abs() < 1e-12);
        assert!(
            rope_interleaved(
                &Tensor::zeros((2, 3, 5), DType::F64, &device).unwrap(),
                &cos,
                &sin
            )
            .is_err()
        );
    }

    #[test]
    fn the_custom_ops_reject_what_they_cannot_compute() {
        let device = Device::Cpu;
        let w = Tensor::ones(4, DType::F64, &device).unwrap();
        let ints = Tensor::new(&[[1u32, 2, 3, 4]], &device).unwrap();
        assert!(rms_norm(&ints, &w, 1e-5).is_err());
        // Rows of 3 against a gain of 4.
        let wrong_gain = Tensor::zeros((1, 3), DType::F64, &device).unwrap();
        assert!(rms_norm(&wrong_gain, &w, 1e-5).is_err());
    }
}
