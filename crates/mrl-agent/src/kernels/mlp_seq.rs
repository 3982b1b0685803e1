//! The MLP baseline over a batch of rows as one candle custom op (CPU, f32), with a
//! hand-written backward that reproduces candle autograd **bit for bit**.
//!
//! Through candle autograd the MLP's PPO step records a dozen `(B·T, H)` tensors (products,
//! bias sums, ReLUs, their gradients, the zero-filled gradient accumulators), each a fresh
//! allocation cleared page by page, and runs the element-wise ops on candle's spinning
//! thread pool; the two GEMMs per layer were a minority of the time. Here the whole network
//! is one node whose work buffers come from [`super::scratch`]:
//!
//! ```text
//! z₀ = x W₀ᵀ + b₀,   h₀ = relu(z₀)                  (B·T, H)
//! z₂ = h₀ W₂ᵀ + b₂,  h₂ = relu(z₂)                  (B·T, H)
//! y  = [h₂ W_πᵀ + b_π,  h₂ w_vᵀ + b_v]              (B·T, A + 1): logits, then the value
//! ```
//!
//! and backward, for `dy = [g_π, g_v]`:
//!
//! ```text
//! dW_π = (h₂ᵀ g_π)ᵀ,  db_π = Σ_rows g_π,  dw_v = (h₂ᵀ g_v)ᵀ,  db_v = Σ_rows g_v
//! dh₂ = g_π W_π + g_v w_v
//! dz₂ = dh₂ ⊙ 1[z₂ ≥ 0],  dW₂ = (h₀ᵀ dz₂)ᵀ,  db₂ = Σ_rows dz₂,  dh₀ = dz₂ W₂
//! dz₀ = dh₀ ⊙ 1[z₀ ≥ 0],  dW₀ = (xᵀ dz₀)ᵀ,  db₀ = Σ_rows dz₀
//! ```
//!
//! **Same bits as candle.** Every product is [`matmul_as_candle`] on operands with the
//! strides candle's `Linear` and its backward pass give `gemm` (the weight gradient is
//! candle's `(in, out)` product of the transposed input and the gradient, transposed
//! afterwards: the same call, rather than trusting another arrangement of the same sums to
//! round alike); biases are added after
//! the product, not folded into it; bias gradients are sequential column sums from zero
//! (candle's `sum_keepdim(0)` over a contiguous matrix); the ReLU passes the gradient where
//! `z ≥ 0` (candle's `ge`) and every gradient is accumulated onto zeros as candle's
//! `GradStore` does. A PPO run with this op therefore trains the MLP exactly as before it
//! (checked end to end on `mrl train`'s losses and checkpoint bytes, and by this module's
//! tests against candle). No gradient flows to `x` (the policy's inputs are data).
//!
//! The parameters travel as one flat tensor in PyTorch `state_dict` order
//! (`W₀ | b₀ | W₂ | b₂ | W_π | b_π | w_v | b_v`), built with `Tensor::cat` so that autograd
//! routes each slice of its gradient back to its `Var`.

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::gemm::{Strided, matmul_as_candle, transpose};
use super::gru_seq::{SavedSlot, column_sums, f32_slice, with_cpu_f32};
use super::net_seq::NetLayout;
use super::scratch::{give, take};

/// The MLP's flat parameter vector, for the network's sizes ([`NetLayout`]: input `I`,
/// hidden `H`, actions `A`):
/// `[W₀ (H, I) | b₀ (H) | W₂ (H, H) | b₂ (H) | W_π (A, H) | b_π (A) | w_v (1, H) | b_v (1)]`.
impl NetLayout {
    /// The lengths of the MLP's eight parameters, in flat order.
    fn mlp_lengths(&self) -> [usize; 8] {
        let (i, h, a) = (self.input, self.hidden, self.n_actions);
        [h * i, h, h * h, h, a * h, a, h, 1]
    }

    /// Length of the MLP's flat parameter vector.
    pub(crate) fn mlp_len(&self) -> usize {
        self.mlp_lengths().iter().sum()
    }
}

/// The parameters as slices of the flat vector.
struct Params<'a> {
    w0: &'a [f32],
    b0: &'a [f32],
    w2: &'a [f32],
    b2: &'a [f32],
    w_pi: &'a [f32],
    b_pi: &'a [f32],
    w_v: &'a [f32],
    b_v: &'a [f32],
}

impl<'a> Params<'a> {
    fn split(flat: &'a [f32], layout: NetLayout) -> Self {
        let mut rest = flat;
        let [w0, b0, w2, b2, w_pi, b_pi, w_v, b_v] = layout.mlp_lengths().map(|len| {
            let (part, tail) = rest.split_at(len);
            rest = tail;
            part
        });
        Self {
            w0,
            b0,
            w2,
            b2,
            w_pi,
            b_pi,
            w_v,
            b_v,
        }
    }
}

/// Rows per parallel task of the element-wise passes.
const ROWS_PER_TASK: usize = 256;

/// `z = a + bias` (candle's `broadcast_add` after the product), `h = relu(z)`, in place:
/// `pre` holds the product on entry and `z` on return.
fn bias_relu(pre: &mut [f32], out: &mut [f32], bias: &[f32]) {
    let cols = bias.len();
    pre.par_chunks_mut(ROWS_PER_TASK * cols)
        .zip(out.par_chunks_mut(ROWS_PER_TASK * cols))
        .for_each(|(z, h)| {
            for (z_row, h_row) in z.chunks_exact_mut(cols).zip(h.chunks_exact_mut(cols)) {
                for ((z, h), b) in z_row.iter_mut().zip(h_row.iter_mut()).zip(bias) {
                    *z += b;
                    *h = z.max(0.0);
                }
            }
        });
}

/// The ReLU's backward as candle computes it: `dz = 0 + dh · 1[z ≥ 0]`, in place on `dh`.
fn relu_backward(dh: &mut [f32], z: &[f32]) {
    dh.par_chunks_mut(ROWS_PER_TASK * 64)
        .zip(z.par_chunks(ROWS_PER_TASK * 64))
        .for_each(|(g, z)| {
            for (g, z) in g.iter_mut().zip(z) {
                let pass = if *z >= 0.0 { 1.0 } else { 0.0 };
                *g = 0.0 + *g * pass;
            }
        });
}

/// What the backward needs from the forward.
#[derive(Debug)]
struct Saved {
    rows: usize,
    /// Pre-activations `z₀`, `z₂` and activations `h₀`, `h₂`, `(B·T, H)` each.
    z0: Vec<f32>,
    h0: Vec<f32>,
    z2: Vec<f32>,
    h2: Vec<f32>,
}

impl Drop for Saved {
    fn drop(&mut self) {
        for v in [&mut self.z0, &mut self.h0, &mut self.z2, &mut self.h2] {
            give(std::mem::take(v));
        }
    }
}

/// The forward: `y` `(rows, A + 1)` and the saved state.
fn forward(x: &[f32], flat: &[f32], layout: NetLayout, rows: usize) -> (Vec<f32>, Saved) {
    let p = Params::split(flat, layout);
    let (i, h, a) = (layout.input, layout.hidden, layout.n_actions);
    // Layer 0: (rows, I) · W₀ᵀ, W₀ᵀ the transposed view of the (H, I) weight.
    let mut z0 = take(rows * h);
    let mut h0 = take(rows * h);
    matmul_as_candle(
        &mut z0,
        Strided::rows(x, i),
        Strided::transposed(p.w0, i),
        (rows, i, h),
    );
    bias_relu(&mut z0, &mut h0, p.b0);
    // Layer 2.
    let mut z2 = take(rows * h);
    let mut h2 = take(rows * h);
    matmul_as_candle(
        &mut z2,
        Strided::rows(&h0, h),
        Strided::transposed(p.w2, h),
        (rows, h, h),
    );
    bias_relu(&mut z2, &mut h2, p.b2);
    // Heads, each its own product as in candle (the value head is an (rows, 1) product).
    let mut logits = vec![0.0f32; rows * a];
    matmul_as_candle(
        &mut logits,
        Strided::rows(&h2, h),
        Strided::transposed(p.w_pi, h),
        (rows, h, a),
    );
    let mut values = vec![0.0f32; rows];
    matmul_as_candle(
        &mut values,
        Strided::rows(&h2, h),
        Strided::transposed(p.w_v, h),
        (rows, h, 1),
    );
    let width = layout.width();
    let mut y = vec![0.0f32; rows * width];
    for ((y_row, l_row), v) in y
        .chunks_exact_mut(width)
        .zip(logits.chunks_exact(a))
        .zip(&values)
    {
        for ((y, l), b) in y_row.iter_mut().zip(l_row).zip(p.b_pi) {
            *y = l + b;
        }
        y_row[a] = v + p.b_v[0];
    }
    let saved = Saved {
        rows,
        z0,
        h0,
        z2,
        h2,
    };
    (y, saved)
}

/// `(in, out)` weight gradient `aᵀ g` as candle's matmul backward computes it (`lhs.t()`
/// times the output gradient), returned transposed to the weight's `(out, in)` layout.
fn weight_grad(a: &[f32], g: &[f32], (rows, input, out): (usize, usize, usize)) -> Vec<f32> {
    let mut d_t = vec![0.0f32; input * out];
    matmul_as_candle(
        &mut d_t,
        Strided::transposed(a, input),
        Strided::rows(g, out),
        (input, rows, out),
    );
    transpose(&d_t, input, out)
}

/// The backward: `d flat` for `dy` `(rows, A + 1)`.
fn backward(saved: &Saved, x: &[f32], flat: &[f32], dy: &[f32], layout: NetLayout) -> Vec<f32> {
    let p = Params::split(flat, layout);
    let (rows, i, h, a) = (saved.rows, layout.input, layout.hidden, layout.n_actions);
    let width = layout.width();
    // The heads' output gradients, split as candle's narrow backward hands them over.
    let mut g_pi = vec![0.0f32; rows * a];
    let mut g_v = vec![0.0f32; rows];
    for ((dy_row, g_row), g_v) in dy
        .chunks_exact(width)
        .zip(g_pi.chunks_exact_mut(a))
        .zip(g_v.iter_mut())
    {
        for (g, d) in g_row.iter_mut().zip(dy_row) {
            *g = 0.0 + d;
        }
        *g_v = 0.0 + dy_row[a];
    }
    let d_w_pi = weight_grad(&saved.h2, &g_pi, (rows, h, a));
    let d_b_pi = column_sums(&g_pi, a);
    let d_w_v = weight_grad(&saved.h2, &g_v, (rows, h, 1));
    let d_b_v = column_sums(&g_v, 1);
    // dh₂ = g_π W_π + g_v w_v: two products summed onto zeros, as candle accumulates the
    // two heads' gradients of their shared input.
    let mut dh2 = take(rows * h);
    matmul_as_candle(
        &mut dh2,
        Strided::rows(&g_pi, a),
        Strided::rows(p.w_pi, h),
        (rows, a, h),
    );
    let mut from_value = take(rows * h);
    matmul_as_candle(
        &mut from_value,
        Strided::rows(&g_v, 1),
        Strided::rows(p.w_v, h),
        (rows, 1, h),
    );
    dh2.par_chunks_mut(ROWS_PER_TASK * h)
        .zip(from_value.par_chunks(ROWS_PER_TASK * h))
        .for_each(|(d, v)| {
            for (d, v) in d.iter_mut().zip(v) {
                *d = (0.0 + *d) + v;
            }
        });
    give(from_value);
    // Layer 2.
    relu_backward(&mut dh2, &saved.z2); // now dz₂
    let d_w2 = weight_grad(&saved.h0, &dh2, (rows, h, h));
    let d_b2 = column_sums(&dh2, h);
    let mut dh0 = take(rows * h);
    matmul_as_candle(
        &mut dh0,
        Strided::rows(&dh2, h),
        Strided::rows(p.w2, h),
        (rows, h, h),
    );
    give(dh2);
    // Layer 0.
    relu_backward(&mut dh0, &saved.z0); // now dz₀
    let d_w0 = weight_grad(x, &dh0, (rows, i, h));
    let d_b0 = column_sums(&dh0, h);
    give(dh0);
    let mut d_flat = Vec::with_capacity(layout.mlp_len());
    for part in [d_w0, d_b0, d_w2, d_b2, d_w_pi, d_b_pi, d_w_v, d_b_v] {
        // Accumulated onto zeros, as candle's gradient store does.
        d_flat.extend(part.into_iter().map(|g| 0.0 + g));
    }
    d_flat
}

/// The custom op; holds the forward's saved state for its backward.
struct MlpSeqOp {
    layout: NetLayout,
    saved: SavedSlot<Saved>,
}

impl CustomOp2 for MlpSeqOp {
    fn name(&self) -> &'static str {
        "mlp-network-sequence"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let layout = self.layout;
        let (batch, seq_len, input) = l1.shape().dims3()?;
        if input != layout.input || l2.shape().dims() != [layout.mlp_len()] {
            candle_core::bail!(
                "mlp_network_sequence: x {:?}, parameters {:?} do not fit {layout:?}",
                l1.shape(),
                l2.shape()
            );
        }
        let (y, saved) = forward(
            f32_slice("mlp_network_sequence: x", s1, l1)?,
            f32_slice("mlp_network_sequence: parameters", s2, l2)?,
            layout,
            batch * seq_len,
        );
        self.saved.put("mlp_network_sequence", saved)?;
        Ok((
            CpuStorage::F32(y),
            Shape::from((batch, seq_len, layout.width())),
        ))
    }

    fn bwd(
        &self,
        x: &Tensor,
        flat: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad_res = grad_res.contiguous()?;
        let named = [("x", x), ("parameters", flat), ("grad", &grad_res)];
        let d_flat = with_cpu_f32("mlp_network_sequence", named, |[x, flat, dy]| {
            self.saved.with("mlp_network_sequence", |saved| {
                if x.len() != saved.rows * self.layout.input
                    || dy.len() != saved.rows * self.layout.width()
                {
                    candle_core::bail!(
                        "mlp_network_sequence: backward inputs do not fit the forward's shape"
                    );
                }
                Ok(backward(saved, x, flat, dy, self.layout))
            })
        })?;
        let grad = Tensor::from_vec(d_flat, self.layout.mlp_len(), grad_res.device())?;
        Ok((None, Some(grad)))
    }
}

/// The MLP baseline over a sequence batch as one autograd node (CPU, f32), bit for bit
/// what candle autograd computes through `Linear`s and ReLUs.
///
/// # Shapes
/// `x` `(B, T, I)`, `flat` `(layout.mlp_len())` (see [`NetLayout`]) → `(B, T, A + 1)`: the
/// `A` logits, then the value. Gradients flow to `flat`, not to `x`.
///
/// # Errors
/// Candle errors for tensors that are not f32 on the CPU or whose shapes do not fit.
pub(crate) fn mlp_network_sequence(
    x: &Tensor,
    flat: &Tensor,
    layout: NetLayout,
) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op2(
        &flat.contiguous()?,
        MlpSeqOp {
            layout,
            saved: SavedSlot::new(),
        },
    )
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    use crate::kernels::test_values as values;

    /// `x Wᵀ + b` as candle's `Linear` computes it.
    fn linear(x: &Tensor, w: &Var, b: &Var) -> Tensor {
        let (out, input) = w.dims2().unwrap();
        let dims = x.dims().to_vec();
        let rows = x.elem_count() / input;
        let y = x
            .reshape((rows, input))
            .unwrap()
            .matmul(&w.t().unwrap())
            .unwrap()
            .broadcast_add(b)
            .unwrap();
        let mut out_dims = dims;
        *out_dims.last_mut().unwrap() = out;
        y.reshape(out_dims).unwrap()
    }

    fn bits(t: &Tensor) -> Vec<u32> {
        t.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect()
    }

    #[test]
    fn outputs_and_gradients_are_candle_autograds_bit_for_bit() {
        // 3 trials of 700 steps: the weight gradients' products run over 2100 rows, more
        // than one of gemm's depth blocks.
        let (batch, seq_len) = (3, 700);
        let layout = NetLayout {
            input: 7,
            hidden: 24,
            n_actions: 3,
        };
        let (i, h, a) = (layout.input, layout.hidden, layout.n_actions);
        let rows = batch * seq_len;
        let dev = Device::Cpu;
        let mut x = values(rows * i, 1, 1.0);
        // One all-zero row meets a zero bias below: z = 0 exactly, where candle's ReLU
        // passes the gradient (`ge`).
        x[5 * i..6 * i].fill(0.0);
        let x = Tensor::from_vec(x, (batch, seq_len, i), &dev).unwrap();
        let shapes: [Vec<usize>; 8] = [
            vec![h, i],
            vec![h],
            vec![h, h],
            vec![h],
            vec![a, h],
            vec![a],
            vec![1, h],
            vec![1],
        ];
        let vars: Vec<Var> = shapes
            .iter()
            .enumerate()
            .map(|(k, s)| {
                let n = s.iter().product();
                let mut v = values(n, 10 + k as u32, 0.5);
                if k == 1 {
                    v[0] = 0.0; // b₀[0] = 0 for the zero row
                }
                Var::from_vec(v, s.as_slice(), &dev).unwrap()
            })
            .collect();
        // A loss whose gradient is a fixed pattern on every logit and value.
        let c_logits =
            Tensor::from_vec(values(rows * a, 20, 1.0), (batch, seq_len, a), &dev).unwrap();
        let c_values = Tensor::from_vec(values(rows, 21, 1.0), (batch, seq_len), &dev).unwrap();
        let loss = |logits: &Tensor, v: &Tensor| {
            ((logits * &c_logits).unwrap().sum_all().unwrap()
                + (v * &c_values).unwrap().sum_all().unwrap())
            .unwrap()
        };

        // Candle autograd, as Policy::forward_seq runs the MLP.
        let h0 = linear(&x, &vars[0], &vars[1]).relu().unwrap();
        let h2 = linear(&h0, &vars[2], &vars[3]).relu().unwrap();
        let logits_ref = linear(&h2, &vars[4], &vars[5]);
        let values_ref = linear(&h2, &vars[6], &vars[7]).squeeze(2).unwrap();
        let grads_ref = loss(&logits_ref, &values_ref).backward().unwrap();

        // The fused op.
        let flat = Tensor::cat(
            &vars
                .iter()
                .map(|v| v.as_tensor().flatten_all().unwrap())
                .collect::<Vec<_>>(),
            0,
        )
        .unwrap();
        let y = mlp_network_sequence(&x, &flat, layout).unwrap();
        let logits = y.narrow(2, 0, a).unwrap().contiguous().unwrap();
        let values_fused = y.narrow(2, a, 1).unwrap().squeeze(2).unwrap();
        let grads = loss(&logits, &values_fused).backward().unwrap();

        assert_eq!(bits(&logits), bits(&logits_ref), "logits");
        assert_eq!(bits(&values_fused), bits(&values_ref), "values");
        for (k, v) in vars.iter().enumerate() {
            let fused = grads.get(v.as_tensor()).unwrap();
            let reference = grads_ref.get(v.as_tensor()).unwrap();
            assert_eq!(bits(fused), bits(reference), "gradient of parameter {k}");
            assert!(
                bits(fused).iter().any(|&b| b != 0),
                "parameter {k} gets a gradient"
            );
        }
    }

    #[test]
    fn shapes_that_do_not_fit_are_errors() {
        let layout = NetLayout {
            input: 4,
            hidden: 8,
            n_actions: 3,
        };
        let dev = Device::Cpu;
        let flat = Tensor::zeros(layout.mlp_len(), candle_core::DType::F32, &dev).unwrap();
        let x = Tensor::zeros((2, 5, 3), candle_core::DType::F32, &dev).unwrap();
        let err = mlp_network_sequence(&x, &flat, layout).unwrap_err();
        assert!(err.to_string().contains("do not fit"), "{err}");
        let short = flat.narrow(0, 0, layout.mlp_len() - 1).unwrap();
        let x = Tensor::zeros((2, 5, 4), candle_core::DType::F32, &dev).unwrap();
        assert!(mlp_network_sequence(&x, &short, layout).is_err());
        assert_eq!(layout.mlp_len(), 8 * 4 + 8 + 64 + 8 + 24 + 3 + 8 + 1);
    }
}
