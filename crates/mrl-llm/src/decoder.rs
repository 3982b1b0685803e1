//! The f32 decoder of the embedded backend: candle's quantised Llama forward pass with the
//! weights in f32, restructured for generation on a CPU.
//!
//! What differs from `candle_transformers::models::quantized_llama` with f32 weights:
//!
//! - **Rows of a batch have their own sequences.** One call advances several sequences
//!   (the candidates of one prompt) by one chunk each: the projections and the
//!   feed-forward run once over all the chunks' tokens, so each weight matrix is read
//!   from memory once per step instead of once per sequence — a generation step is bound
//!   by reading the 0.5 GB of SmolLM2-135M's f32 weights, not by arithmetic. Attention
//!   runs per sequence, over its own key/value cache ([`KvCache`]).
//! - **Weights are stored transposed** (`[in, out]`, contiguous), so that the matrix
//!   products of a few rows do not go through gemm's strided path (6× slower at 3 rows).
//!   The query, key and value matrices are one `[in, q + k + v]` matrix, the gate and up
//!   matrices one `[in, 2 · ffn]`: one product each.
//!
//! The arithmetic per position is the same: RMSNorm (`candle_nn::ops::rms_norm`),
//! interleaved rotary embedding (`rope_i`, llama.cpp's "normal" rope), grouped-query
//! attention with the causal mask and `softmax_last_dim`, SwiGLU, logits of the last
//! position only (Touvron et al. 2023, "LLaMA", arXiv:2302.13971).

use candle_core::quantized::gguf_file;
use candle_core::{D, Device, Tensor};

use crate::error::{Error, Result};
use crate::tokenizer::metadata;

/// The hyper-parameters of a Llama GGUF file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LlamaShape {
    pub(crate) n_head: usize,
    pub(crate) n_kv_head: usize,
    pub(crate) n_layer: usize,
    /// Width `D` of the hidden states.
    pub(crate) hidden: usize,
    /// RMSNorm's ε.
    pub(crate) eps: f32,
    /// Base of the rotary frequencies (10 000 when the file does not say).
    pub(crate) rope_base: f32,
}

impl LlamaShape {
    /// Reads the `llama.*` keys of `content`.
    ///
    /// # Errors
    /// [`Error::Metadata`] naming a missing or mistyped key.
    pub(crate) fn read(content: &gguf_file::Content) -> Result<Self> {
        let u32_key = |key: &'static str| -> Result<usize> {
            metadata(content, key)
                .and_then(|v| v.to_u32().ok())
                .map(|v| v as usize)
                .ok_or(Error::Metadata {
                    key,
                    expected: "an unsigned integer",
                })
        };
        Ok(Self {
            n_head: u32_key("llama.attention.head_count")?,
            n_kv_head: u32_key("llama.attention.head_count_kv")?,
            n_layer: u32_key("llama.block_count")?,
            hidden: u32_key("llama.embedding_length")?,
            eps: metadata(content, "llama.attention.layer_norm_rms_epsilon")
                .and_then(|v| v.to_f32().ok())
                .ok_or(Error::Metadata {
                    key: "llama.attention.layer_norm_rms_epsilon",
                    expected: "a float",
                })?,
            rope_base: metadata(content, "llama.rope.freq_base")
                .and_then(|v| v.to_f32().ok())
                .unwrap_or(10_000.0),
        })
    }
}

/// Cosines and sines of the rotary embedding, `pos · θ_i` with `θ_i = base^(−2i/d)`,
/// computed in f32 as candle's quantised Llama does (RoFormer, Su et al. 2021,
/// arXiv:2104.09864).
///
/// # Shapes
/// → two `[positions, head_dim / 2]` f32 tensors.
pub(crate) fn rotary_tables(
    head_dim: usize,
    base: f32,
    positions: usize,
) -> Result<(Tensor, Tensor)> {
    let theta: Vec<f32> = (0..head_dim)
        .step_by(2)
        .map(|i| 1.0 / base.powf(i as f32 / head_dim as f32))
        .collect();
    let mut cos = Vec::with_capacity(positions * theta.len());
    let mut sin = Vec::with_capacity(positions * theta.len());
    for pos in 0..positions {
        for &t in &theta {
            let angle = pos as f32 * t;
            cos.push(angle.cos());
            sin.push(angle.sin());
        }
    }
    let shape = (positions, theta.len());
    let device = Device::Cpu;
    Ok((
        Tensor::from_vec(cos, shape, &device)?,
        Tensor::from_vec(sin, shape, &device)?,
    ))
}

/// One layer's weights, matrices transposed to `[in, out]`.
#[derive(Debug, Clone)]
struct Layer {
    attn_norm: Tensor,
    /// `[D, (heads + 2 · kv_heads) · d]`: query, key, value columns in that order.
    wqkv: Tensor,
    /// `[heads · d, D]`.
    wo: Tensor,
    ffn_norm: Tensor,
    /// `[D, 2 · ffn]`: gate, then up.
    w_gate_up: Tensor,
    /// `[ffn, D]`.
    w_down: Tensor,
}

/// A Llama model in f32 for generation, with per-sequence key/value caches.
#[derive(Debug, Clone)]
pub(crate) struct F32Llama {
    /// `[vocab, D]`.
    embed: Tensor,
    norm: Tensor,
    /// `[D, vocab]`.
    output: Tensor,
    layers: Vec<Layer>,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    ffn: usize,
    eps: f32,
    /// `[positions, d / 2]`.
    cos: Tensor,
    sin: Tensor,
}

/// The keys and values of one sequence's positions so far, per layer, after the rotary
/// embedding: preallocated `[1, kv_heads, capacity, d]` buffers whose first
/// [`len`](Self::len) positions are written in place, so that a step appends its
/// positions instead of copying the whole cache (`Tensor::cat`). A buffer that is full
/// is replaced by one of twice the capacity.
#[derive(Debug, Default)]
pub(crate) struct KvCache {
    layers: Vec<(Tensor, Tensor)>,
    len: usize,
    capacity: usize,
}

/// The smallest capacity a cache grows to.
const MIN_CAPACITY: usize = 64;

impl KvCache {
    /// Positions in the cache.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// A copy of the cache with room for `extra` more positions (the buffers are written
    /// in place, so sequences that continue one prompt each need their own copy).
    ///
    /// # Errors
    /// Candle errors (allocation).
    pub(crate) fn fork(&self, extra: usize) -> Result<Self> {
        let capacity = (self.len + extra).max(MIN_CAPACITY);
        let layers = self
            .layers
            .iter()
            .map(|(k, v)| {
                Ok((
                    resized(k, self.len, capacity)?,
                    resized(v, self.len, capacity)?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            layers,
            len: self.len,
            capacity,
        })
    }

    /// Layer `layer`'s keys and values with `k` and `v` (`[1, kv_heads, n, d]`) written
    /// at positions `len..len + n` (the cache's length moves on after the last layer):
    /// views of the buffers, `[1, kv_heads, len + n, d]`.
    fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let n = k.dim(2)?;
        let needed = self.len + n;
        if needed > self.capacity {
            let capacity = needed.max(2 * self.capacity).max(MIN_CAPACITY);
            for (kb, vb) in &mut self.layers {
                *kb = resized(kb, self.len, capacity)?;
                *vb = resized(vb, self.len, capacity)?;
            }
            self.capacity = capacity;
        }
        if self.layers.len() <= layer {
            let (_, heads, _, d) = k.dims4()?;
            let zeros = || Tensor::zeros((1, heads, self.capacity, d), k.dtype(), k.device());
            self.layers.push((zeros()?, zeros()?));
        }
        let (kb, vb) = &self.layers[layer];
        kb.slice_set(k, 2, self.len)?;
        vb.slice_set(v, 2, self.len)?;
        Ok((kb.narrow(2, 0, needed)?, vb.narrow(2, 0, needed)?))
    }
}

/// A new `[1, heads, capacity, d]` buffer holding the first `len` positions of `buffer`.
fn resized(buffer: &Tensor, len: usize, capacity: usize) -> Result<Tensor> {
    let (_, heads, _, d) = buffer.dims4()?;
    let out = Tensor::zeros((1, heads, capacity, d), buffer.dtype(), buffer.device())?;
    if len > 0 {
        out.slice_set(&buffer.narrow(2, 0, len)?.contiguous()?, 2, 0)?;
    }
    Ok(out)
}

/// One sequence's chunk of a step: its cache and the tokens that follow it.
pub(crate) struct Feed<'a> {
    pub(crate) cache: &'a mut KvCache,
    pub(crate) ids: &'a [u32],
}

impl F32Llama {
    /// The model of a Llama GGUF file's `content` (tensors read from `reader` and
    /// dequantised to f32), with rotary tables for `positions` positions.
    ///
    /// # Errors
    /// [`Error::Metadata`] for a missing hyper-parameter; candle errors for missing
    /// tensors.
    pub(crate) fn from_gguf<R: std::io::Seek + std::io::Read>(
        content: &gguf_file::Content,
        reader: &mut R,
        positions: usize,
    ) -> Result<Self> {
        let LlamaShape {
            n_head,
            n_kv_head,
            n_layer,
            hidden,
            eps,
            rope_base,
        } = LlamaShape::read(content)?;
        let head_dim = hidden / n_head;
        let device = Device::Cpu;
        let mut tensor = |name: &str| -> Result<Tensor> {
            Ok(content.tensor(reader, name, &device)?.dequantize(&device)?)
        };
        // [out, in] -> [in, out], contiguous.
        let transposed = |t: Tensor| -> Result<Tensor> { Ok(t.t()?.contiguous()?) };
        let embed = tensor("token_embd.weight")?;
        let norm = tensor("output_norm.weight")?;
        let output = match content.tensor_infos.contains_key("output.weight") {
            true => transposed(tensor("output.weight")?)?,
            false => transposed(embed.clone())?,
        };
        let mut layers = Vec::with_capacity(n_layer);
        let mut ffn = 0;
        for i in 0..n_layer {
            let mut w = |name: &str| tensor(&format!("blk.{i}.{name}.weight"));
            let qkv = Tensor::cat(&[w("attn_q")?, w("attn_k")?, w("attn_v")?], 0)?;
            let gate = w("ffn_gate")?;
            ffn = gate.dim(0)?;
            let gate_up = Tensor::cat(&[gate, w("ffn_up")?], 0)?;
            layers.push(Layer {
                attn_norm: w("attn_norm")?,
                wqkv: transposed(qkv)?,
                wo: transposed(w("attn_output")?)?,
                ffn_norm: w("ffn_norm")?,
                w_gate_up: transposed(gate_up)?,
                w_down: transposed(w("ffn_down")?)?,
            });
        }
        let (cos, sin) = rotary_tables(head_dim, rope_base, positions)?;
        Ok(Self {
            embed,
            norm,
            output,
            layers,
            n_head,
            n_kv_head,
            head_dim,
            ffn,
            eps,
            cos,
            sin,
        })
    }

    /// Positions of the rotary table (the longest sequence).
    pub(crate) fn positions(&self) -> usize {
        self.cos.dims()[0]
    }

    /// Advances every feed's sequence by its tokens (appending them to its cache); the
    /// logits after each feed's last token.
    ///
    /// # Shapes
    /// Feed `f` with `n_f ≥ 1` tokens after `P_f` cached positions → `[vocab]` per feed;
    /// the caches grow to `P_f + n_f`.
    ///
    /// # Errors
    /// [`Error::ContextOverflow`] for an empty feed or one past the rotary table; candle
    /// errors.
    pub(crate) fn forward(&self, feeds: &mut [Feed<'_>]) -> Result<Vec<Vec<f32>>> {
        for feed in feeds.iter() {
            if feed.ids.is_empty() || feed.cache.len + feed.ids.len() > self.positions() {
                return Err(Error::ContextOverflow {
                    prompt_tokens: feed.cache.len + feed.ids.len(),
                    max_new_tokens: 0,
                    context: self.positions(),
                });
            }
        }
        let device = Device::Cpu;
        let ids: Vec<u32> = feeds.iter().flat_map(|f| f.ids.iter().copied()).collect();
        let mut x = self.embed.index_select(&Tensor::new(ids, &device)?, 0)?; // [N, D]
        let (hd, nh, nkv) = (self.head_dim, self.n_head, self.n_kv_head);
        // Causal masks of the feeds with more than one token: 0 or −∞, [n, P + n], repeated
        // for the n_rep query heads of a key/value head: [n_rep · n, P + n].
        let n_rep = self.n_head / self.n_kv_head;
        let masks = feeds
            .iter()
            .map(|f| match f.ids.len() {
                1 => Ok(None),
                n => {
                    let (p, cols) = (f.cache.len, f.cache.len + n);
                    let mask: Vec<f32> = (0..n_rep * n * cols)
                        .map(|k| match k % cols > p + (k / cols) % n {
                            true => f32::NEG_INFINITY,
                            false => 0.0,
                        })
                        .collect();
                    Tensor::from_vec(mask, (n_rep * n, cols), &device).map(Some)
                }
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        for (i, layer) in self.layers.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, self.eps)?;
            let qkv = h.matmul(&layer.wqkv)?; // [N, (nh + 2 nkv) d]
            let mut ys = Vec::with_capacity(feeds.len());
            let mut offset = 0;
            for (feed, mask) in feeds.iter_mut().zip(&masks) {
                let (n, p) = (feed.ids.len(), feed.cache.len);
                let rows = qkv.narrow(0, offset, n)?;
                offset += n;
                // [n, heads · d] -> [1, heads, n, d]
                let heads = |from: usize, count: usize| -> candle_core::Result<Tensor> {
                    rows.narrow(1, from * hd, count * hd)?
                        .reshape((1, n, count, hd))?
                        .transpose(1, 2)?
                        .contiguous()
                };
                let cos = self.cos.narrow(0, p, n)?;
                let sin = self.sin.narrow(0, p, n)?;
                let q = candle_nn::rotary_emb::rope_i(&heads(0, nh)?, &cos, &sin)?;
                let k = candle_nn::rotary_emb::rope_i(&heads(nh, nkv)?, &cos, &sin)?;
                let v = heads(nh + nkv, nkv)?;
                let (k, v) = feed.cache.append(i, &k, &v)?;
                // Query head j reads key/value head j / n_rep: the n_rep query heads of
                // one key/value head as one block of rows, [kv_heads, n_rep · n, d].
                let q = q.reshape((nkv, n_rep * n, hd))?;
                let att = (q.matmul(&k.squeeze(0)?.t()?)? / (hd as f64).sqrt())?;
                let att = match mask {
                    Some(mask) => att.broadcast_add(mask)?,
                    None => att,
                };
                let att = candle_nn::ops::softmax_last_dim(&att)?;
                // [kv_heads, n_rep · n, d] -> [1, heads, n, d]
                let y = att.matmul(&v.squeeze(0)?)?.reshape((1, nh, n, hd))?;
                ys.push(y.transpose(1, 2)?.reshape((n, nh * hd))?);
            }
            let y = Tensor::cat(&ys, 0)?; // [N, heads · d]
            x = (x + y.matmul(&layer.wo)?)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, self.eps)?;
            let gate_up = h.matmul(&layer.w_gate_up)?; // [N, 2 ffn]
            let gate = gate_up.narrow(D::Minus1, 0, self.ffn)?.silu()?;
            let up = gate_up.narrow(D::Minus1, self.ffn, self.ffn)?;
            x = (x + (gate * up)?.matmul(&layer.w_down)?)?;
        }
        for feed in feeds.iter_mut() {
            feed.cache.len += feed.ids.len();
        }
        // The last row of each feed.
        let mut last = Vec::with_capacity(feeds.len());
        let mut end = 0u32;
        for feed in feeds.iter() {
            end += feed.ids.len() as u32;
            last.push(end - 1);
        }
        let x = x.index_select(&Tensor::new(last, &device)?, 0)?; // [F, D]
        let x = candle_nn::ops::rms_norm(&x, &self.norm, self.eps)?;
        Ok(x.matmul(&self.output)?.to_vec2::<f32>()?) // [F, vocab]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> (tempfile::TempDir, F32Llama) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        crate::tiny::write_tiny_model(&path, 1).unwrap();
        let mut file = std::fs::File::open(&path).unwrap();
        let content = gguf_file::Content::read(&mut file).unwrap();
        let model = F32Llama::from_gguf(&content, &mut file, 512).unwrap();
        (dir, model)
    }

    fn step(model: &F32Llama, cache: &mut KvCache, ids: &[u32]) -> Vec<f32> {
        model.forward(&mut [Feed { cache, ids }]).unwrap().remove(0)
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn a_growing_cache_gives_the_logits_of_one_pass() {
        let (_dir, model) = tiny();
        let ids: Vec<u32> = (0..150).map(|i| 3 + (i * 7) % 200).collect();
        // One token at a time: the cache grows from 64 to 128 to 256 positions.
        let mut cache = KvCache::default();
        let mut last = Vec::new();
        for id in &ids {
            last = step(&model, &mut cache, &[*id]);
        }
        assert_eq!((cache.len(), cache.capacity), (150, 256));
        let whole = step(&model, &mut KvCache::default(), &ids);
        assert_eq!(whole.len(), 267);
        assert!(
            max_diff(&last, &whole) < 1e-4,
            "{}",
            max_diff(&last, &whole)
        );
    }

    #[test]
    fn forks_continue_independently() {
        let (_dir, model) = tiny();
        let prompt: Vec<u32> = (10..40).collect();
        let mut cache = KvCache::default();
        step(&model, &mut cache, &prompt);
        let mut fork = cache.fork(8).unwrap();
        assert_eq!((fork.len(), fork.capacity), (30, 64));
        // Another token written into the fork's buffers leaves the original's alone.
        let other = step(&model, &mut fork, &[7]);
        let own = step(&model, &mut cache, &[5]);
        let fresh = step(
            &model,
            &mut KvCache::default(),
            &[prompt.clone(), vec![5]].concat(),
        );
        assert!(max_diff(&own, &fresh) < 1e-4, "{}", max_diff(&own, &fresh));
        assert!(max_diff(&own, &other) > 1e-3);
        // Two rows in one call equal the rows alone.
        let (mut a, mut b) = (cache.fork(4).unwrap(), fork.fork(4).unwrap());
        let both = model
            .forward(&mut [
                Feed {
                    cache: &mut a,
                    ids: &[9, 9],
                },
                Feed {
                    cache: &mut b,
                    ids: &[4],
                },
            ])
            .unwrap();
        assert_eq!(both[0], step(&model, &mut cache.fork(4).unwrap(), &[9, 9]));
        assert_eq!(both[1], step(&model, &mut fork.fork(4).unwrap(), &[4]));
        assert_eq!((a.len(), b.len()), (33, 32));
    }
}
