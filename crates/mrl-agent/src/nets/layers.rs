//! Candle building blocks with PyTorch semantics: [`Linear`] and a single-layer [`Gru`].
//!
//! Parameters are [`Var`]s so that the sequence unroll records an autograd graph for PPO.

use candle_core::{D, DType, Device, Tensor, Var};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::init::{torch_bound, uniform};
use crate::kernels::gru_seq::gru_sequence;

/// Checks a tensor's shape; the error names the tensor.
pub(crate) fn check_shape(name: &str, t: &Tensor, expected: &[usize]) -> Result<()> {
    if t.dims() == expected {
        Ok(())
    } else {
        Err(Error::ShapeMismatch {
            name: name.to_string(),
            expected: expected.to_vec(),
            actual: t.dims().to_vec(),
        })
    }
}

/// A `Var` of the given shape drawn from `U(−bound, bound)`.
fn uniform_var(rng: &mut ChaCha8Rng, shape: &[usize], bound: f32, device: &Device) -> Result<Var> {
    let n = shape.iter().product();
    Ok(Var::from_vec(uniform(rng, n, bound), shape, device)?)
}

/// Fully connected layer `y = x Wᵀ + b`, PyTorch layout (`weight` is `[out][in]`).
#[derive(Clone, Debug)]
pub struct Linear {
    weight: Var,
    bias: Var,
}

impl Linear {
    /// PyTorch default init: weight and bias `U(−1/√in, 1/√in)`, weight drawn first.
    pub(crate) fn init(
        in_dim: usize,
        out_dim: usize,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<Self> {
        let bound = torch_bound(in_dim);
        let weight = uniform_var(rng, &[out_dim, in_dim], bound, device)?;
        let bias = uniform_var(rng, &[out_dim], bound, device)?;
        Ok(Self { weight, bias })
    }

    /// `y = x Wᵀ + b` over the last dimension.
    ///
    /// # Shapes
    /// `x`: `(..., in)` → `(..., out)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let w = self.weight.as_tensor();
        let (out_dim, in_dim) = w.dims2()?;
        let dims = x.dims();
        let rows = x.elem_count() / in_dim.max(1);
        // (rows, in) · (in, out) + (out)
        let y = x
            .reshape((rows, in_dim))?
            .matmul(&w.t()?)?
            .broadcast_add(self.bias.as_tensor())?;
        let mut out_dims = dims.to_vec();
        if let Some(last) = out_dims.last_mut() {
            *last = out_dim;
        }
        Ok(y.reshape(out_dims)?)
    }

    /// The weight, `[out][in]`.
    pub fn weight(&self) -> &Var {
        &self.weight
    }

    /// The bias, `[out]`.
    pub fn bias(&self) -> &Var {
        &self.bias
    }
}

/// One `torch.nn.GRU` layer (batch first), gate order r, z, n:
///
/// ```text
/// r  = σ(W_ir x + b_ir + W_hr h + b_hr)
/// z  = σ(W_iz x + b_iz + W_hz h + b_hz)
/// n  = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
/// h' = (1 − z) ⊙ n + z ⊙ h
/// ```
///
/// (Cho et al. 2014; `b_hn` sits inside `r ⊙ (...)` as in cuDNN and PyTorch.)
#[derive(Clone, Debug)]
pub struct Gru {
    weight_ih: Var,
    weight_hh: Var,
    bias_ih: Var,
    bias_hh: Var,
    hidden: usize,
}

impl Gru {
    /// A GRU from PyTorch-layout tensors (copied into fresh `Var`s).
    ///
    /// # Shapes
    /// `weight_ih` `(3H, I)`, `weight_hh` `(3H, H)`, `bias_ih` `(3H)`, `bias_hh` `(3H)`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] naming the first tensor whose shape disagrees.
    pub fn from_tensors(
        weight_ih: &Tensor,
        weight_hh: &Tensor,
        bias_ih: &Tensor,
        bias_hh: &Tensor,
    ) -> Result<Self> {
        let (three_h, input) = weight_ih.dims2()?;
        let hidden = three_h / 3;
        check_shape("weight_ih_l0", weight_ih, &[3 * hidden, input])?;
        check_shape("weight_hh_l0", weight_hh, &[3 * hidden, hidden])?;
        check_shape("bias_ih_l0", bias_ih, &[3 * hidden])?;
        check_shape("bias_hh_l0", bias_hh, &[3 * hidden])?;
        Ok(Self {
            weight_ih: Var::from_tensor(weight_ih)?,
            weight_hh: Var::from_tensor(weight_hh)?,
            bias_ih: Var::from_tensor(bias_ih)?,
            bias_hh: Var::from_tensor(bias_hh)?,
            hidden,
        })
    }

    /// PyTorch default init: every parameter `U(−1/√H, 1/√H)`, in the order
    /// `weight_ih`, `weight_hh`, `bias_ih`, `bias_hh`.
    pub(crate) fn init(
        input: usize,
        hidden: usize,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<Self> {
        let bound = torch_bound(hidden);
        Ok(Self {
            weight_ih: uniform_var(rng, &[3 * hidden, input], bound, device)?,
            weight_hh: uniform_var(rng, &[3 * hidden, hidden], bound, device)?,
            bias_ih: uniform_var(rng, &[3 * hidden], bound, device)?,
            bias_hh: uniform_var(rng, &[3 * hidden], bound, device)?,
            hidden,
        })
    }

    /// Hidden size `H`.
    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// The four parameters in PyTorch order: `weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`,
    /// `bias_hh_l0`.
    pub fn vars(&self) -> [&Var; 4] {
        [
            &self.weight_ih,
            &self.weight_hh,
            &self.bias_ih,
            &self.bias_hh,
        ]
    }

    /// Input projection `x W_ihᵀ + b_ih` for any leading shape.
    ///
    /// # Shapes
    /// `(..., I)` → `(..., 3H)`.
    fn input_projection(&self, x: &Tensor) -> Result<Tensor> {
        let w = self.weight_ih.as_tensor();
        let (three_h, input) = w.dims2()?;
        let rows = x.elem_count() / input.max(1);
        let mut dims = x.dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = three_h;
        }
        let g = x.reshape((rows, input))?.matmul(&w.t()?)?;
        Ok(g.broadcast_add(self.bias_ih.as_tensor())?.reshape(dims)?)
    }

    /// Gate arithmetic given the projected input `gi = x W_ihᵀ + b_ih`.
    ///
    /// # Shapes
    /// `gi` `(B, 3H)`, `h` `(B, H)` → `(B, H)`.
    fn cell(&self, gi: &Tensor, h: &Tensor) -> Result<Tensor> {
        let hd = self.hidden;
        // (B, H) · (H, 3H) + (3H) → (B, 3H)
        let gh = h.matmul(&self.weight_hh.as_tensor().t()?)?;
        let gh = gh.broadcast_add(self.bias_hh.as_tensor())?;
        let r = candle_nn::ops::sigmoid(
            &(gi.narrow(D::Minus1, 0, hd)? + gh.narrow(D::Minus1, 0, hd)?)?,
        )?;
        let z = candle_nn::ops::sigmoid(
            &(gi.narrow(D::Minus1, hd, hd)? + gh.narrow(D::Minus1, hd, hd)?)?,
        )?;
        let n = (gi.narrow(D::Minus1, 2 * hd, hd)? + (r * gh.narrow(D::Minus1, 2 * hd, hd)?)?)?
            .tanh()?;
        // h' = (1 − z) ⊙ n + z ⊙ h = n + z ⊙ (h − n)
        Ok((&n + (z * (h - &n)?)?)?)
    }

    /// One step for a batch.
    ///
    /// # Shapes
    /// `x` `(B, I)`, `h` `(B, H)` → `h'` `(B, H)`.
    pub fn step(&self, x: &Tensor, h: &Tensor) -> Result<Tensor> {
        self.cell(&self.input_projection(x)?, h)
    }

    /// Unrolls a batch of sequences from `h0` (zeros when `None`). The hidden state is
    /// never reset inside the sequence. The input projection of all `T` steps is one
    /// matrix product; only `h W_hhᵀ` runs per step.
    ///
    /// # Shapes
    /// `x` `(B, T, I)`, `h0` `(B, H)` → (`output` `(B, T, H)`, `h_n` `(B, H)`).
    pub fn forward_seq(&self, x: &Tensor, h0: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        let (seq_len, mut h) = self.initial_state(x, h0)?;
        let gi_all = self.input_projection(x)?; // (B, T, 3H)
        let mut outputs = Vec::with_capacity(seq_len);
        for t in 0..seq_len {
            let gi = gi_all.narrow(1, t, 1)?.squeeze(1)?; // (B, 3H)
            h = self.cell(&gi, &h)?;
            outputs.push(h.clone());
        }
        let output = Tensor::stack(&outputs, 1)?; // (B, T, H)
        Ok((output, h))
    }

    /// As [`Gru::forward_seq`], but for f32 on the CPU the recurrence over all `T` steps is
    /// one autograd node with a hand-written backward (BPTT), instead of ~100 small ops per
    /// step. Same numbers up to f32 rounding; other devices and dtypes run
    /// [`Gru::forward_seq`].
    ///
    /// # Shapes
    /// `x` `(B, T, I)`, `h0` `(B, H)` → (`output` `(B, T, H)`, `h_n` `(B, H)`).
    ///
    /// # Errors
    /// As [`Gru::forward_seq`].
    pub fn forward_seq_fused(&self, x: &Tensor, h0: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        if !(x.device().is_cpu() && x.dtype() == DType::F32) {
            return self.forward_seq(x, h0);
        }
        let (seq_len, h) = self.initial_state(x, h0)?;
        let output = gru_sequence(x, &h, &self.packed()?)?; // (B, T, H)
        let h_n = output.narrow(1, seq_len - 1, 1)?.squeeze(1)?;
        Ok((output, h_n))
    }

    /// The parameters row-packed as `[W_ih | b_ih | W_hh | b_hh]` `(3H, I + 1 + H + 1)`,
    /// the layout of the fused sequence ops; built from the `Var`s, so gradients flow back.
    pub(crate) fn packed(&self) -> Result<Tensor> {
        Ok(Tensor::cat(
            &[
                self.weight_ih.as_tensor(),
                &self.bias_ih.as_tensor().unsqueeze(1)?,
                self.weight_hh.as_tensor(),
                &self.bias_hh.as_tensor().unsqueeze(1)?,
            ],
            1,
        )?)
    }

    /// Checks `x` `(B, T, I)` and `h0`; returns `T` and the initial state (zeros for `None`).
    pub(crate) fn initial_state(&self, x: &Tensor, h0: Option<&Tensor>) -> Result<(usize, Tensor)> {
        let (batch, seq_len, _) = x.dims3()?;
        if batch == 0 || seq_len == 0 {
            return Err(Error::EmptySequence {
                batch_size: batch,
                seq_len,
            });
        }
        let h = match h0 {
            Some(h0) => {
                check_shape("h0", h0, &[batch, self.hidden])?;
                h0.clone()
            }
            None => Tensor::zeros((batch, self.hidden), x.dtype(), x.device())?,
        };
        Ok((seq_len, h))
    }
}
