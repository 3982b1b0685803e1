//! The causal Transformer policy: pre-norm blocks with rotary multi-head self-attention
//! over a sliding causal window of the trial's input rows, on candle (full-sequence
//! forward with autograd, for PPO), and its host snapshot for the cached rollout step
//! ([`crate::kernels::transformer_step`]).
//!
//! ```text
//! e = x W_inᵀ + b_in                                        embed.{weight,bias}
//! per block l:                                              blocks.{l}.*
//!   e ← e + MHA(LN₁(e))   rotary q, k; step t sees t − C < j ≤ t     ln1, attn.qkv, attn.out
//!   e ← e + W₂ relu(W₁ LN₂(e) + b₁) + b₂                    ln2, ff.0, ff.2
//! logits = LN_f(e) W_πᵀ + b_π,   V = LN_f(e) w_Vᵀ + b_V      ln_f, policy_head, value_head
//! ```
//!
//! Pre-norm blocks as GPT-2 (Radford et al. 2019) and Xiong et al. 2020, "On Layer
//! Normalization in the Transformer Architecture"; rotary positions from Su et al. 2021,
//! "RoFormer"; the ReLU feed-forward of Vaswani et al. 2017. The full-sequence forward is
//! candle autograd; on the CPU in f32 its attention is one fused node over the sliding
//! window ([`window_attention`]: work
//! and memory linear in `T · min(T, C)`, nothing of size `T × T`), elsewhere the masked
//! `(T, T)` score matrix. The rollout step is the cached host kernel.

use std::sync::Mutex;

use candle_core::{D, DType, Device, Tensor, Var};
use rand_chacha::ChaCha8Rng;

use super::layers::Linear;
use super::policy::host_vec as host;
use crate::config::AgentConfig;
use crate::error::Result;
use crate::kernels::gemm::transpose;
use crate::kernels::transformer_step::{
    BlockWeights, LN_EPS, TransformerWeights, rotary_angles, window_attention,
};

/// `torch.nn.LayerNorm(width)`: weight 1, bias 0 at initialisation.
#[derive(Clone, Debug)]
pub(crate) struct LayerNorm {
    pub(crate) weight: Var,
    pub(crate) bias: Var,
}

impl LayerNorm {
    fn init(width: usize, device: &Device) -> Result<Self> {
        Ok(Self {
            weight: Var::ones(width, DType::F32, device)?,
            bias: Var::zeros(width, DType::F32, device)?,
        })
    }

    /// `(x − μ) / √(σ² + ε) ⊙ w + b` over the last dimension (biased variance, ε = 1e-5).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + LN_EPS as f64)?.sqrt()?)?;
        Ok(normed
            .broadcast_mul(self.weight.as_tensor())?
            .broadcast_add(self.bias.as_tensor())?)
    }
}

/// One pre-norm block.
#[derive(Clone, Debug)]
pub(crate) struct Block {
    pub(crate) ln1: LayerNorm,
    pub(crate) qkv: Linear,
    pub(crate) out: Linear,
    pub(crate) ln2: LayerNorm,
    pub(crate) ff0: Linear,
    pub(crate) ff2: Linear,
}

/// The Transformer network.
#[derive(Clone, Debug)]
pub(crate) struct TransformerNet {
    pub(crate) embed: Linear,
    pub(crate) blocks: Vec<Block>,
    pub(crate) ln_f: LayerNorm,
    pub(crate) policy_head: Linear,
    pub(crate) value_head: Linear,
    heads: usize,
    context: usize,
}

impl TransformerNet {
    /// Initialises the network, drawing from `rng` in [`TransformerNet::named_vars`] order
    /// (PyTorch's default Linear distributions; LayerNorms start at weight 1, bias 0 and draw
    /// nothing).
    pub(crate) fn init(
        config: &AgentConfig,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<Self> {
        let t = &config.transformer;
        let (input, width, actions) = (config.input_dim(), config.hidden, config.n_actions);
        let ff = t.ff_mult * width;
        let embed = Linear::init(input, width, rng, device)?;
        let blocks = (0..t.layers)
            .map(|_| {
                Ok(Block {
                    ln1: LayerNorm::init(width, device)?,
                    qkv: Linear::init(width, 3 * width, rng, device)?,
                    out: Linear::init(width, width, rng, device)?,
                    ln2: LayerNorm::init(width, device)?,
                    ff0: Linear::init(width, ff, rng, device)?,
                    ff2: Linear::init(ff, width, rng, device)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embed,
            blocks,
            ln_f: LayerNorm::init(width, device)?,
            policy_head: Linear::init(width, actions, rng, device)?,
            value_head: Linear::init(width, 1, rng, device)?,
            heads: t.heads,
            context: t.context,
        })
    }

    /// Every parameter with its PyTorch-style name, in `state_dict` order.
    pub(crate) fn named_vars(&self) -> Vec<(&'static str, &Var)> {
        let mut out = vec![
            ("embed.weight", self.embed.weight()),
            ("embed.bias", self.embed.bias()),
        ];
        for (l, b) in self.blocks.iter().enumerate() {
            let vars = [
                &b.ln1.weight,
                &b.ln1.bias,
                b.qkv.weight(),
                b.qkv.bias(),
                b.out.weight(),
                b.out.bias(),
                &b.ln2.weight,
                &b.ln2.bias,
                b.ff0.weight(),
                b.ff0.bias(),
                b.ff2.weight(),
                b.ff2.bias(),
            ];
            out.extend(block_names(l).into_iter().zip(vars));
        }
        out.extend([
            ("ln_f.weight", &self.ln_f.weight),
            ("ln_f.bias", &self.ln_f.bias),
            ("policy_head.weight", self.policy_head.weight()),
            ("policy_head.bias", self.policy_head.bias()),
            ("value_head.weight", self.value_head.weight()),
            ("value_head.bias", self.value_head.bias()),
        ]);
        out
    }

    /// Final features `LN_f(e)` of whole trials with autograd; step `t` attends to steps
    /// `max(0, t − C + 1) ..= t` of its own row, positions counted from the row's start.
    ///
    /// # Shapes
    /// `x` `(B, T, in)` → `(B, T, D)`.
    pub(crate) fn features(&self, x: &Tensor) -> Result<Tensor> {
        let (batch, seq_len, _) = x.dims3()?;
        let width = self.embed.weight().dims()[0];
        let (heads, head_dim) = (self.heads, width / self.heads);
        let device = x.device();
        let (cos, sin) = rotary_tables(seq_len, head_dim, device)?; // (T, d) each
        let fused = device.is_cpu() && x.dtype() == DType::F32;
        let mask = match fused {
            true => None,
            false => Some(window_mask(seq_len, self.context, device)?), // (T, T)
        };
        let mut e = self.embed.forward(x)?; // (B, T, D)
        for blk in &self.blocks {
            let a = blk.ln1.forward(&e)?;
            let qkv = blk.qkv.forward(&a)?; // (B, T, 3D)
            let split = |i: usize| -> Result<Tensor> {
                Ok(qkv
                    .narrow(2, i * width, width)?
                    .reshape((batch, seq_len, heads, head_dim))?
                    .transpose(1, 2)?
                    .contiguous()?) // (B, heads, T, d)
            };
            let q = rotary(&split(0)?, &cos, &sin)?;
            let k = rotary(&split(1)?, &cos, &sin)?;
            let v = split(2)?;
            let att = match &mask {
                None => window_attention(&q, &k, &v, self.context)?,
                Some(mask) => masked_attention(&q, &k, &v, mask)?,
            }; // (B, heads, T, d)
            let att = att.transpose(1, 2)?.reshape((batch, seq_len, width))?;
            e = (e + blk.out.forward(&att)?)?;
            let m = blk.ln2.forward(&e)?;
            e = (e + blk.ff2.forward(&blk.ff0.forward(&m)?.relu()?)?)?;
        }
        self.ln_f.forward(&e)
    }

    /// Pre-transposed host copy of the weights for the cached rollout step.
    pub(crate) fn snapshot(&self, n_actions: usize) -> Result<TransformerWeights> {
        let width = self.embed.weight().dims()[0];
        let input = self.embed.weight().dims()[1];
        let ff = self.blocks.first().map_or(0, |b| b.ff0.weight().dims()[0]);
        let t = |lin: &Linear| -> Result<Vec<f32>> {
            let dims = lin.weight().dims();
            Ok(transpose(&host(lin.weight())?, dims[0], dims[1]))
        };
        let blocks = self
            .blocks
            .iter()
            .map(|b| {
                Ok(BlockWeights {
                    ln1_w: host(&b.ln1.weight)?,
                    ln1_b: host(&b.ln1.bias)?,
                    w_qkv_t: t(&b.qkv)?,
                    b_qkv: host(b.qkv.bias())?,
                    w_o_t: t(&b.out)?,
                    b_o: host(b.out.bias())?,
                    ln2_w: host(&b.ln2.weight)?,
                    ln2_b: host(&b.ln2.bias)?,
                    w1_t: t(&b.ff0)?,
                    b1: host(b.ff0.bias())?,
                    w2_t: t(&b.ff2)?,
                    b2: host(b.ff2.bias())?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut w_heads = host(self.policy_head.weight())?;
        w_heads.extend(host(self.value_head.weight())?);
        let mut b_heads = host(self.policy_head.bias())?;
        b_heads.extend(host(self.value_head.bias())?);
        Ok(TransformerWeights {
            input,
            width,
            heads: self.heads,
            ff,
            context: self.context,
            n_actions,
            w_in_t: t(&self.embed)?,
            b_in: host(self.embed.bias())?,
            blocks,
            lnf_w: host(&self.ln_f.weight)?,
            lnf_b: host(&self.ln_f.bias)?,
            w_heads,
            b_heads,
        })
    }
}

/// Parameter names of one block, `blocks.{l}.*`, in `state_dict` order.
const BLOCK_PARAMS: [&str; 12] = [
    "ln1.weight",
    "ln1.bias",
    "attn.qkv.weight",
    "attn.qkv.bias",
    "attn.out.weight",
    "attn.out.bias",
    "ln2.weight",
    "ln2.bias",
    "ff.0.weight",
    "ff.0.bias",
    "ff.2.weight",
    "ff.2.bias",
];

/// The names of block `l` as `&'static str` (the type [`Policy::parameters`](crate::Policy)
/// returns for every kind). Each block index's twelve names are built once per process and
/// kept: a bounded set (twelve strings per layer index ever used), not a per-call leak.
fn block_names(l: usize) -> [&'static str; 12] {
    static NAMES: Mutex<Vec<[&'static str; 12]>> = Mutex::new(Vec::new());
    // A poisoned lock only means another thread panicked while pushing names; the names
    // already stored are complete.
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    while names.len() <= l {
        let i = names.len();
        names.push(BLOCK_PARAMS.map(|p| &*Box::leak(format!("blocks.{i}.{p}").into_boxed_str())));
    }
    names[l]
}

/// `cos` and `sin` of the rotary angles at positions `0..T`, each `(T, d)` with the
/// half-width table repeated (`[cos, cos]`), as the rollout step computes them.
fn rotary_tables(seq_len: usize, head_dim: usize, device: &Device) -> Result<(Tensor, Tensor)> {
    let half = head_dim / 2;
    let (mut cos, mut sin) = (
        vec![0.0f32; seq_len * head_dim],
        vec![0.0f32; seq_len * head_dim],
    );
    let (mut c, mut s) = (vec![0.0f32; half], vec![0.0f32; half]);
    for t in 0..seq_len {
        rotary_angles(t, head_dim, &mut c, &mut s);
        for (i, (&ci, &si)) in c.iter().zip(&s).enumerate() {
            for j in [i, i + half] {
                cos[t * head_dim + j] = ci;
                sin[t * head_dim + j] = si;
            }
        }
    }
    Ok((
        Tensor::from_vec(cos, (seq_len, head_dim), device)?,
        Tensor::from_vec(sin, (seq_len, head_dim), device)?,
    ))
}

/// Rotate-half rotary embedding: `x ⊙ cos + [−x₂, x₁] ⊙ sin`.
///
/// # Shapes
/// `x` `(B, heads, T, d)`, `cos`, `sin` `(T, d)` → `(B, heads, T, d)`.
fn rotary(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let half = x.dim(D::Minus1)? / 2;
    let x1 = x.narrow(D::Minus1, 0, half)?;
    let x2 = x.narrow(D::Minus1, half, half)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    Ok((x.broadcast_mul(cos)? + rotated.broadcast_mul(sin)?)?)
}

/// Attention through the full `(T, T)` score matrix with an additive mask (any device):
/// `softmax(q kᵀ / √d + mask) v`, the max subtracted (and not differentiated) for stability.
///
/// # Shapes
/// `q`, `k`, `v` `(B, heads, T, d)`, `mask` `(T, T)` → `(B, heads, T, d)`.
fn masked_attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let scale = 1.0 / (q.dim(D::Minus1)? as f64).sqrt();
    let scores = (q.matmul(&k.t()?.contiguous()?)? * scale)?.broadcast_add(mask)?; // (B, heads, T, T)
    let max = scores.max_keepdim(D::Minus1)?.detach();
    let weights = scores.broadcast_sub(&max)?.exp()?;
    let probs = weights.broadcast_div(&weights.sum_keepdim(D::Minus1)?)?;
    Ok(probs.matmul(v)?)
}

/// Additive attention mask `(T, T)`: 0 where step `t` may attend to step `j`
/// (`t − C < j ≤ t`), −∞ elsewhere.
fn window_mask(seq_len: usize, context: usize, device: &Device) -> Result<Tensor> {
    let mask: Vec<f32> = (0..seq_len)
        .flat_map(|t| {
            (0..seq_len).map(move |j| {
                if j <= t && j + context > t {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    Ok(Tensor::from_vec(mask, (seq_len, seq_len), device)?)
}

#[cfg(test)]
mod tests {
    use candle_core::Var;
    use rand::{RngExt, SeedableRng};

    use super::*;

    /// A `(2, 2, T, 4)` tensor of seeded uniform `[-2, 2)` values.
    fn random(seq_len: usize, seed: u64) -> Tensor {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let v: Vec<f32> = (0..2 * 2 * seq_len * 4)
            .map(|_| rng.random_range(-2.0f32..2.0))
            .collect();
        Tensor::from_vec(v, (2, 2, seq_len, 4), &Device::Cpu).unwrap()
    }

    /// The fused op against the masked score matrix: outputs and q/k/v gradients.
    fn check_fused_attention(seq_len: usize, context: usize) {
        let [q, k, v] = [1, 2, 3].map(|s| Var::from_tensor(&random(seq_len, s)).unwrap());
        let g = random(seq_len, 4); // dL/do
        let mask = window_mask(seq_len, context, &Device::Cpu).unwrap();
        let fused = window_attention(&q, &k, &v, context).unwrap();
        let masked = masked_attention(&q, &k, &v, &mask).unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let close = |a: &[f32], b: &[f32], what: &str| {
            assert_eq!(a.len(), b.len());
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert!(
                    (x - y).abs() <= 1e-5 + 1e-5 * y.abs(),
                    "T {seq_len}, C {context}, {what}[{i}]: {x} vs {y}"
                );
            }
        };
        close(&flat(&fused), &flat(&masked), "o");
        // Step 0 sees only itself: its output is v_0 exactly.
        let o0 = flat(&fused.narrow(2, 0, 1).unwrap());
        let v0 = flat(&v.as_tensor().narrow(2, 0, 1).unwrap());
        close(&o0, &v0, "o_0");
        let backward = |o: Tensor| (o * &g).unwrap().sum_all().unwrap().backward().unwrap();
        let (grads_f, grads_m) = (backward(fused), backward(masked));
        for (name, var) in [("dq", &q), ("dk", &k), ("dv", &v)] {
            let (a, b) = (grads_f.get(var).unwrap(), grads_m.get(var).unwrap());
            close(&flat(a), &flat(b), name);
        }
        // The last key is read by the last step only, and still gets a gradient.
        let last = grads_f.get(&k).unwrap().narrow(2, seq_len - 1, 1).unwrap();
        let dk_last = flat(&last);
        assert!(dk_last.iter().any(|x| x.abs() > 1e-4), "{dk_last:?}");
    }

    #[test]
    fn fused_window_attention_equals_the_masked_score_matrix() {
        // One block of queries; the window slides for steps 4..9.
        check_fused_attention(9, 4);
        // Three blocks of 64 queries (the last partial), each reading keys from the block
        // before it through a sliding 40-step window.
        check_fused_attention(150, 40);
        // A context longer than the trial: plain causal attention over two blocks.
        check_fused_attention(70, 256);
    }

    #[test]
    fn window_mask_keeps_the_last_context_steps() {
        let m = window_mask(4, 2, &Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let open: Vec<Vec<bool>> = m
            .iter()
            .map(|r| r.iter().map(|v| *v == 0.0).collect())
            .collect();
        assert_eq!(
            open,
            vec![
                vec![true, false, false, false],
                vec![true, true, false, false],
                vec![false, true, true, false],
                vec![false, false, true, true],
            ]
        );
    }
}
