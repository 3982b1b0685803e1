//! The whole RL² network over a sequence batch as one candle custom op (CPU, f32): encoder,
//! GRU recurrence and both heads, with a hand-written backward.
//!
//! [`super::gru_seq`] already runs the recurrence in one kernel, but around it candle still
//! records the encoder's product, bias and ReLU, the heads' products and biases, and in the
//! backward their gradients and the sums of the GRU output's two gradient contributions:
//! a dozen `(B·T, H)` tensors per gradient step, each a fresh allocation the kernel must
//! zero page by page (at `B·T = 19 200`, `H = 128` they are ≈10 MB each). Here they are
//! plain buffers inside one node, and candle sees only the `(B·T, A + 1)` output:
//!
//! ```text
//! e = relu(x W_eᵀ + b_e)                      (B·T, H)    one GEMM
//! h = GRU(e, h0)                              (B·T, H)    crate::gru_seq
//! y = h [W_π; w_v]ᵀ + [b_π, b_v]              (B·T, A+1)  one GEMM: logits, then the value
//! ```
//!
//! and backward, for `dy`:
//!
//! ```text
//! d[W_π; w_v] = dyᵀ h,  d[b_π, b_v] = Σ_rows dy,  dh = dy [W_π; w_v]
//! (de, dh0, dGRU) = GRU backward(dh)
//! da = de ⊙ 1[e > 0],  dW_e = daᵀ x,  db_e = Σ_rows da
//! ```
//!
//! No gradient flows to `x` (the policy's inputs are data). The parameters travel as one
//! flat tensor, built with `Tensor::cat` from the `Var`s so that autograd routes each
//! slice of its gradient back to its `Var` (see [`NetLayout`]).

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::gemm::weight_gradient_narrow;
use super::gru_seq::{
    self, Dims, PAR_ROWS, SavedSlot, block_trials, column_sums, f32_slice, fill_rows, matmul,
    relu_backward_column_sums, with_cpu_f32,
};
use super::scratch::{give, take};

/// Sizes of the network and where each parameter sits in the RL² network's flat parameter
/// vector:
/// `[W_e | b_e | W_ih ‖ b_ih ‖ W_hh ‖ b_hh (row-packed, as super::gru_seq) | W_π | w_v | b_π | b_v]`
/// (the MLP's flat vector: [`super::mlp_seq`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NetLayout {
    /// Input width `I`.
    pub(crate) input: usize,
    /// Hidden width `H` (encoder and GRU).
    pub(crate) hidden: usize,
    /// Actions `A`.
    pub(crate) n_actions: usize,
}

impl NetLayout {
    /// Offset of the GRU's packed block (after `W_e` and `b_e`).
    fn gru_offset(&self) -> usize {
        self.hidden * self.input + self.hidden
    }

    /// Length of the GRU's packed block `(3H, H + 1 + H + 1)`.
    fn gru_len(&self) -> usize {
        3 * self.hidden * (2 * self.hidden + 2)
    }

    /// Offset of the heads' weights `[W_π; w_v]` `(A + 1, H)`.
    fn heads_offset(&self) -> usize {
        self.gru_offset() + self.gru_len()
    }

    /// Outputs per row: `A` logits and the value.
    pub(crate) fn width(&self) -> usize {
        self.n_actions + 1
    }

    /// Offset of the heads' biases `[b_π, b_v]` `(A + 1)`.
    fn head_bias_offset(&self) -> usize {
        self.heads_offset() + self.width() * self.hidden
    }

    /// Length of the flat parameter vector.
    pub(crate) fn len(&self) -> usize {
        self.head_bias_offset() + self.width()
    }
}

/// The parameters as slices of the flat vector.
struct Params<'a> {
    w_e: &'a [f32],
    b_e: &'a [f32],
    gru: &'a [f32],
    w_heads: &'a [f32],
    b_heads: &'a [f32],
}

impl<'a> Params<'a> {
    fn split(flat: &'a [f32], layout: NetLayout) -> Self {
        let (h, i) = (layout.hidden, layout.input);
        Self {
            w_e: &flat[..h * i],
            b_e: &flat[h * i..layout.gru_offset()],
            gru: &flat[layout.gru_offset()..layout.heads_offset()],
            w_heads: &flat[layout.heads_offset()..layout.head_bias_offset()],
            b_heads: &flat[layout.head_bias_offset()..layout.len()],
        }
    }
}

/// What the backward needs from the forward.
#[derive(Debug)]
struct Saved {
    batch: usize,
    seq_len: usize,
    /// The encoder's output `e` (after the ReLU), `(B·T, H)`.
    encoded: Vec<f32>,
    /// The GRU's output `h`, `(B·T, H)`.
    hidden: Vec<f32>,
    /// The recurrence's saved state.
    gru: gru_seq::Saved,
}

impl Drop for Saved {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.encoded));
        give(std::mem::take(&mut self.hidden));
    }
}

/// The forward: `y` `(B·T, A + 1)` and the saved state.
fn forward(
    x: &[f32],
    h0: &[f32],
    flat: &[f32],
    layout: NetLayout,
    (batch, seq_len): (usize, usize),
) -> (Vec<f32>, Saved) {
    let p = Params::split(flat, layout);
    let (rows, hd, width) = (batch * seq_len, layout.hidden, layout.width());
    // e = relu(b_e + x W_eᵀ): the product overwrites the buffer and one pass adds the bias
    // and clamps (the same bits as the product added onto a bias-filled buffer).
    let mut encoded = take(rows * hd);
    matmul(
        &mut encoded,
        (x, false),
        (p.w_e, true),
        (rows, layout.input, hd),
        false,
        true,
    );
    encoded.par_chunks_mut(PAR_ROWS * hd).for_each(|block| {
        for row in block.chunks_exact_mut(hd) {
            for (v, b) in row.iter_mut().zip(p.b_e) {
                *v = (*b + *v).max(0.0);
            }
        }
    });
    let dims = Dims {
        batch,
        seq_len,
        input: hd,
        hidden: hd,
    };
    let (hidden, gru) = gru_seq::forward(&encoded, h0, p.gru, dims, block_trials(batch));
    let mut y = vec![0.0f32; rows * width];
    fill_rows(&mut y, p.b_heads);
    matmul(
        &mut y,
        (&hidden, false),
        (p.w_heads, true),
        (rows, hd, width),
        true,
        true,
    );
    let saved = Saved {
        batch,
        seq_len,
        encoded,
        hidden,
        gru,
    };
    (y, saved)
}

/// The backward: `(dh0 (B, H), d flat)` for `dy` `(B·T, A + 1)`.
fn backward(
    saved: &Saved,
    x: &[f32],
    flat: &[f32],
    dy: &[f32],
    layout: NetLayout,
) -> (Vec<f32>, Vec<f32>) {
    let p = Params::split(flat, layout);
    let (rows, hd, width) = (saved.batch * saved.seq_len, layout.hidden, layout.width());
    let mut d_w_heads = vec![0.0f32; width * hd];
    matmul(
        &mut d_w_heads,
        (dy, true),
        (&saved.hidden, false),
        (width, rows, hd),
        false,
        true,
    );
    let d_b_heads = column_sums(dy, width);
    // Overwritten by the product (no accumulation).
    let mut dh = take(rows * hd);
    matmul(
        &mut dh,
        (dy, false),
        (p.w_heads, false),
        (rows, width, hd),
        false,
        true,
    );
    let (mut da, dh0, d_gru) = gru_seq::backward(&saved.gru, &saved.encoded, &dh);
    give(dh);
    // ReLU (e > 0 exactly where the pre-activation was positive) and db_e in one pass.
    let d_b_e = relu_backward_column_sums(&mut da, &saved.encoded, hd);
    let mut d_flat = vec![0.0f32; layout.len()];
    let d_w_e = weight_gradient_narrow(&da, x, (rows, hd, layout.input));
    d_flat[..hd * layout.input].copy_from_slice(&d_w_e);
    d_flat[hd * layout.input..layout.gru_offset()].copy_from_slice(&d_b_e);
    d_flat[layout.gru_offset()..layout.heads_offset()].copy_from_slice(&d_gru);
    d_flat[layout.heads_offset()..layout.head_bias_offset()].copy_from_slice(&d_w_heads);
    d_flat[layout.head_bias_offset()..].copy_from_slice(&d_b_heads);
    give(da);
    (dh0, d_flat)
}

/// The custom op; holds the forward's saved state for its backward.
struct NetSeqOp {
    layout: NetLayout,
    saved: SavedSlot<Saved>,
}

impl CustomOp3 for NetSeqOp {
    fn name(&self) -> &'static str {
        "rl2-network-sequence"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let layout = self.layout;
        let (batch, seq_len, input) = l1.shape().dims3()?;
        if input != layout.input
            || l2.shape().dims() != [batch, layout.hidden]
            || l3.shape().dims() != [layout.len()]
        {
            candle_core::bail!(
                "rl2_network_sequence: x {:?}, h0 {:?}, parameters {:?} do not fit {layout:?}",
                l1.shape(),
                l2.shape(),
                l3.shape()
            );
        }
        let (y, saved) = forward(
            f32_slice("rl2_network_sequence: x", s1, l1)?,
            f32_slice("rl2_network_sequence: h0", s2, l2)?,
            f32_slice("rl2_network_sequence: parameters", s3, l3)?,
            layout,
            (batch, seq_len),
        );
        self.saved.put("rl2_network_sequence", saved)?;
        Ok((
            CpuStorage::F32(y),
            Shape::from((batch, seq_len, layout.width())),
        ))
    }

    fn bwd(
        &self,
        x: &Tensor,
        _h0: &Tensor,
        flat: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad_res = grad_res.contiguous()?;
        let named = [("x", x), ("parameters", flat), ("grad", &grad_res)];
        with_cpu_f32("rl2_network_sequence", named, |[x, flat, dy]| {
            self.backward(x, flat, dy, &grad_res)
        })
    }
}

impl NetSeqOp {
    /// The backward on the input, the parameters and the output gradient, read in place.
    fn backward(
        &self,
        x: &[f32],
        flat: &[f32],
        dy: &[f32],
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        self.saved.with("rl2_network_sequence", |saved| {
            self.backward_saved(saved, x, flat, dy, grad_res)
        })
    }

    /// [`NetSeqOp::backward`] on the forward's saved state.
    fn backward_saved(
        &self,
        saved: &Saved,
        x: &[f32],
        flat: &[f32],
        dy: &[f32],
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let rows = saved.batch * saved.seq_len;
        if x.len() != rows * self.layout.input || dy.len() != rows * self.layout.width() {
            candle_core::bail!(
                "rl2_network_sequence: backward inputs do not fit the forward's shape"
            );
        }
        let (dh0, d_flat) = backward(saved, x, flat, dy, self.layout);
        let device = grad_res.device();
        Ok((
            None,
            Some(Tensor::from_vec(
                dh0,
                (saved.batch, self.layout.hidden),
                device,
            )?),
            Some(Tensor::from_vec(d_flat, self.layout.len(), device)?),
        ))
    }
}

/// The RL² network over a sequence batch as one autograd node (CPU, f32).
///
/// # Shapes
/// `x` `(B, T, I)`, `h0` `(B, H)`, `flat` `(layout.len())` (see [`NetLayout`]) →
/// `(B, T, A + 1)`: the `A` logits, then the value. Gradients flow to `h0` and `flat`,
/// not to `x`.
///
/// # Errors
/// Candle errors for tensors that are not f32 on the CPU or whose shapes do not fit.
pub(crate) fn rl2_network_sequence(
    x: &Tensor,
    h0: &Tensor,
    flat: &Tensor,
    layout: NetLayout,
) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op3(
        &h0.contiguous()?,
        &flat.contiguous()?,
        NetSeqOp {
            layout,
            saved: SavedSlot::new(),
        },
    )
}
