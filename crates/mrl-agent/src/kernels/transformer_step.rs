//! The causal Transformer's kernels in f32 on the host: the rollout step with a key/value
//! cache, and sliding-window attention over whole trials as a candle custom op with a
//! hand-written backward ([`window_attention`], what PPO's forward uses on the CPU).
//!
//! One call advances `B` trials by one step each. Per step and trial the work is the
//! matrix products of one row (done for all `B` rows at once through `gemm`) plus
//! attention over at most `context` cached keys and values per layer and head: linear in
//! the context, with nothing of the past recomputed. The cache is a ring of `context` slots
//! per trial and layer; the step at position `t` writes slot `t mod context`, which holds
//! position `t − context`, the one step that just left the window.
//!
//! ```text
//! e = x W_inᵀ + b_in                                               (B, D)
//! per block: a = LN₁(e); [q k v] = a W_qkvᵀ + b_qkv                 (B, 3D)
//!            q, k ← rotary(q, k, t)  per head                       (Su et al. 2021)
//!            cache[t mod C] ← (k, v)
//!            o_h = Σ_j softmax_j(q_h·k_{h,j} / √d) v_{h,j}           j over the window
//!            e ← e + o W_oᵀ + b_o;  e ← e + W₂ relu(W₁ LN₂(e) + b₁) + b₂
//! f = LN_f(e); logits = f W_πᵀ + b_π; V = f w_Vᵀ + b_V
//! ```
//!
//! LayerNorm is PyTorch's (biased variance, ε = 1e-5).

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::gemm::{matmul, matmul_nn};
use super::gru_seq::{f32_slice, with_cpu_f32};
use super::math::{dot, exp_f32, softmax_row};

/// LayerNorm ε, as `torch.nn.LayerNorm`.
pub(crate) const LN_EPS: f32 = 1e-5;

/// Base of the rotary frequencies, `θ_i = base^(−2i/d)` (RoFormer's 10 000).
pub(crate) const ROPE_BASE: f64 = 10_000.0;

/// `cos` and `sin` of the rotary angles `t · θ_i`, `i < d/2`, computed in f64 and rounded
/// to f32 (the full-sequence forward builds its tables the same way).
pub(crate) fn rotary_angles(position: usize, head_dim: usize, cos: &mut [f32], sin: &mut [f32]) {
    let half = head_dim / 2;
    for i in 0..half {
        let theta = ROPE_BASE.powf(-2.0 * i as f64 / head_dim as f64);
        let angle = position as f64 * theta;
        cos[i] = angle.cos() as f32;
        sin[i] = angle.sin() as f32;
    }
}

/// Rotate-half rotary embedding of one head vector in place:
/// `x ← x ⊙ [cos, cos] + [−x₂, x₁] ⊙ [sin, sin]`, `x = [x₁, x₂]`.
#[inline]
fn rotate(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = x.len() / 2;
    for i in 0..half {
        let (a, b) = (x[i], x[i + half]);
        x[i] = a * cos[i] - b * sin[i];
        x[i + half] = b * cos[i] + a * sin[i];
    }
}

/// Row-wise LayerNorm `y = (x − μ) / √(σ² + ε) ⊙ w + b` of `x` `(m, D)` into `y`.
fn layer_norm(x: &[f32], w: &[f32], b: &[f32], y: &mut [f32]) {
    let width = w.len();
    for (xr, yr) in x.chunks_exact(width).zip(y.chunks_exact_mut(width)) {
        let mean = xr.iter().sum::<f32>() / width as f32;
        let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / width as f32;
        let inv = 1.0 / (var + LN_EPS).sqrt();
        for j in 0..width {
            yr[j] = (xr[j] - mean) * inv * w[j] + b[j];
        }
    }
}

/// `v ← v + b` row by row.
fn add_bias(v: &mut [f32], b: &[f32]) {
    for row in v.chunks_exact_mut(b.len()) {
        for (x, &bj) in row.iter_mut().zip(b) {
            *x += bj;
        }
    }
}

/// One block's weights, matrices pre-transposed to `(in, out)`.
#[derive(Clone, Debug)]
pub(crate) struct BlockWeights {
    pub(crate) ln1_w: Vec<f32>,
    pub(crate) ln1_b: Vec<f32>,
    /// `W_qkvᵀ` `(D, 3D)`, columns `[q | k | v]`.
    pub(crate) w_qkv_t: Vec<f32>,
    pub(crate) b_qkv: Vec<f32>,
    /// `W_oᵀ` `(D, D)`.
    pub(crate) w_o_t: Vec<f32>,
    pub(crate) b_o: Vec<f32>,
    pub(crate) ln2_w: Vec<f32>,
    pub(crate) ln2_b: Vec<f32>,
    /// `W₁ᵀ` `(D, F)`.
    pub(crate) w1_t: Vec<f32>,
    pub(crate) b1: Vec<f32>,
    /// `W₂ᵀ` `(F, D)`.
    pub(crate) w2_t: Vec<f32>,
    pub(crate) b2: Vec<f32>,
}

/// Host f32 snapshot of a Transformer policy's weights.
#[derive(Clone, Debug)]
pub(crate) struct TransformerWeights {
    pub(crate) input: usize,
    pub(crate) width: usize,
    pub(crate) heads: usize,
    pub(crate) ff: usize,
    pub(crate) context: usize,
    pub(crate) n_actions: usize,
    /// `W_inᵀ` `(in, D)`.
    pub(crate) w_in_t: Vec<f32>,
    pub(crate) b_in: Vec<f32>,
    pub(crate) blocks: Vec<BlockWeights>,
    pub(crate) lnf_w: Vec<f32>,
    pub(crate) lnf_b: Vec<f32>,
    /// Heads stacked row-wise: rows `0..A` the policy head, row `A` the value head; `(A+1, D)`.
    pub(crate) w_heads: Vec<f32>,
    pub(crate) b_heads: Vec<f32>,
}

impl TransformerWeights {
    fn head_dim(&self) -> usize {
        self.width / self.heads
    }

    /// Whether `other` has the same sizes (a cache sized for one fits the other).
    pub(crate) fn same_sizes(&self, other: &Self) -> bool {
        (
            self.input,
            self.width,
            self.heads,
            self.ff,
            self.context,
            self.n_actions,
            self.blocks.len(),
        ) == (
            other.input,
            other.width,
            other.heads,
            other.ff,
            other.context,
            other.n_actions,
            other.blocks.len(),
        )
    }
}

/// Keys and values of the last `context` steps of `B` trials, per layer, and each trial's
/// position in its trial.
#[derive(Clone, Debug)]
pub(crate) struct KvCache {
    batch_size: usize,
    /// `(layers, B, C, D)`.
    keys: Vec<f32>,
    /// `(layers, B, C, D)`.
    values: Vec<f32>,
    /// Steps taken by each trial since its start, `(B)`.
    positions: Vec<usize>,
}

impl KvCache {
    /// An empty cache (every trial at its start).
    pub(crate) fn new(net: &TransformerWeights, batch_size: usize) -> Self {
        let n = net.blocks.len() * batch_size * net.context * net.width;
        Self {
            batch_size,
            keys: vec![0.0; n],
            values: vec![0.0; n],
            positions: vec![0; batch_size],
        }
    }

    /// Starts trial `b` afresh: its next step is position 0 and sees nothing before it.
    pub(crate) fn reset(&mut self, b: usize) {
        self.positions[b] = 0;
    }

    /// Starts every trial afresh.
    pub(crate) fn reset_all(&mut self) {
        self.positions.fill(0);
    }

    /// Steps taken by each trial since its start.
    pub(crate) fn positions(&self) -> &[usize] {
        &self.positions
    }
}

/// Working buffers of one step, sized once for `B` rows.
#[derive(Clone, Debug)]
pub(crate) struct StepScratch {
    e: Vec<f32>,
    a: Vec<f32>,
    qkv: Vec<f32>,
    att: Vec<f32>,
    proj: Vec<f32>,
    ff: Vec<f32>,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl StepScratch {
    /// Buffers for `batch_size` rows of `net`.
    pub(crate) fn new(net: &TransformerWeights, batch_size: usize) -> Self {
        let (b, d) = (batch_size, net.width);
        let half = net.head_dim() / 2;
        Self {
            e: vec![0.0; b * d],
            a: vec![0.0; b * d],
            qkv: vec![0.0; b * 3 * d],
            att: vec![0.0; b * d],
            proj: vec![0.0; b * d],
            ff: vec![0.0; b * net.ff],
            cos: vec![0.0; b * half],
            sin: vec![0.0; b * half],
        }
    }
}

/// A weight snapshot with the cache and buffers sized for it: everything one
/// [`CachedStep::run`] needs.
#[derive(Clone, Debug)]
pub(crate) struct CachedStep {
    pub(crate) net: TransformerWeights,
    pub(crate) cache: KvCache,
    scratch: StepScratch,
}

impl CachedStep {
    /// An empty cache and buffers for `batch_size` trials of `net`.
    pub(crate) fn new(net: TransformerWeights, batch_size: usize) -> Self {
        Self {
            cache: KvCache::new(&net, batch_size),
            scratch: StepScratch::new(&net, batch_size),
            net,
        }
    }

    /// [`step`] on this snapshot, cache and buffers.
    pub(crate) fn run(&mut self, x: &[f32], out: StepRows<'_>, advance: bool) {
        step(
            &self.net,
            &mut self.cache,
            &mut self.scratch,
            x,
            out,
            advance,
        );
    }
}

/// Trials per rayon task in the step's attention: below this many the step runs on one
/// thread (a task costs about as much as the attention of a few trials).
const PAR_MIN_TRIALS: usize = 8;

/// One trial's ring of cached keys and values in one layer, `(C, D)` each, and its position.
struct TrialCache<'a> {
    keys: &'a mut [f32],
    values: &'a mut [f32],
    pos: usize,
}

/// Attention of one trial at one layer: rotates its q and k (`row` = `[q | k | v]`, `(3D)`)
/// by the angles of its position, writes k and v into slot `pos mod C` of its ring, and
/// writes `o_h = Σ_j softmax_j(q_h·k_{h,j} / √d) v_{h,j}` over the window into `att` `(D)`.
/// `scores` and `probs` are buffers of `C` values.
fn attend(
    net: &TransformerWeights,
    row: &mut [f32],
    (cos, sin): (&[f32], &[f32]),
    trial: TrialCache<'_>,
    att: &mut [f32],
    (scores, probs): (&mut [f32], &mut [f32]),
) {
    let (d, ctx, hd) = (net.width, net.context, net.head_dim());
    let scale = 1.0 / (hd as f32).sqrt();
    for h in 0..net.heads {
        rotate(&mut row[h * hd..(h + 1) * hd], cos, sin); // q
        rotate(&mut row[d + h * hd..d + (h + 1) * hd], cos, sin); // k
    }
    let at = (trial.pos % ctx) * d;
    trial.keys[at..at + d].copy_from_slice(&row[d..2 * d]);
    trial.values[at..at + d].copy_from_slice(&row[2 * d..3 * d]);
    // Slots in the window: 0..=pos before the ring fills, all of them after.
    let n_slots = (trial.pos + 1).min(ctx);
    for h in 0..net.heads {
        let q = &row[h * hd..(h + 1) * hd];
        for (j, score) in scores[..n_slots].iter_mut().enumerate() {
            *score = dot(q, &trial.keys[j * d + h * hd..j * d + (h + 1) * hd]) * scale;
        }
        softmax_row(&scores[..n_slots], &mut probs[..n_slots]);
        let o = &mut att[h * hd..(h + 1) * hd];
        o.fill(0.0);
        for (j, &p) in probs[..n_slots].iter().enumerate() {
            let v = &trial.values[j * d + h * hd..j * d + (h + 1) * hd];
            for (oi, &vi) in o.iter_mut().zip(v) {
                *oi += p * vi;
            }
        }
    }
}

/// Outputs of a step, `(B, A)` logits and probabilities, `(B)` values and log-sum-exps.
pub(crate) struct StepRows<'a> {
    pub(crate) logits: &'a mut [f32],
    pub(crate) values: &'a mut [f32],
    pub(crate) probs: &'a mut [f32],
    pub(crate) lse: &'a mut [f32],
}

/// One step for every trial: input rows `x` `(B, in)` at each trial's current position.
/// With `advance` the keys and values of the step join the cache and the positions move
/// on; without, the step is a look-ahead (e.g. the value of a bootstrap row) and the
/// cache reads as before (the slot written is the one leaving the window, or beyond the
/// trial's end).
///
/// Sizes are invariants of the workspace that built `cache` and `scratch` for `net`.
pub(crate) fn step(
    net: &TransformerWeights,
    cache: &mut KvCache,
    scratch: &mut StepScratch,
    x: &[f32],
    out: StepRows<'_>,
    advance: bool,
) {
    let (batch, d, ctx) = (cache.batch_size, net.width, net.context);
    let hd = net.head_dim();
    let half = hd / 2;
    let s = scratch;
    // Embedding (B, in) · (in, D).
    matmul_nn(&mut s.e, x, &net.w_in_t, batch, net.input, d);
    add_bias(&mut s.e, &net.b_in);
    for b in 0..batch {
        let (cos, sin) = (
            &mut s.cos[b * half..(b + 1) * half],
            &mut s.sin[b * half..(b + 1) * half],
        );
        rotary_angles(cache.positions[b], hd, cos, sin);
    }
    for (layer, blk) in net.blocks.iter().enumerate() {
        layer_norm(&s.e, &blk.ln1_w, &blk.ln1_b, &mut s.a);
        matmul_nn(&mut s.qkv, &s.a, &blk.w_qkv_t, batch, d, 3 * d); // (B, 3D)
        add_bias(&mut s.qkv, &blk.b_qkv);
        // Attention of each trial over its own cache, in parallel over trials for large B.
        let region = batch * ctx * d;
        let keys = &mut cache.keys[layer * region..(layer + 1) * region];
        let values = &mut cache.values[layer * region..(layer + 1) * region];
        let trials = s
            .qkv
            .par_chunks_mut(3 * d)
            .zip(s.att.par_chunks_mut(d))
            .zip(keys.par_chunks_mut(ctx * d))
            .zip(values.par_chunks_mut(ctx * d))
            .zip(cache.positions.par_iter())
            .enumerate()
            .with_min_len(PAR_MIN_TRIALS);
        trials.for_each_init(
            || (vec![0.0f32; ctx], vec![0.0f32; ctx]),
            |(scores, probs), (b, ((((row, att), keys), values), &pos))| {
                let angles = (
                    &s.cos[b * half..(b + 1) * half],
                    &s.sin[b * half..(b + 1) * half],
                );
                let trial = TrialCache { keys, values, pos };
                attend(net, row, angles, trial, att, (scores, probs));
            },
        );
        matmul_nn(&mut s.proj, &s.att, &blk.w_o_t, batch, d, d);
        add_bias(&mut s.proj, &blk.b_o);
        for (e, p) in s.e.iter_mut().zip(&s.proj) {
            *e += p;
        }
        layer_norm(&s.e, &blk.ln2_w, &blk.ln2_b, &mut s.a);
        matmul_nn(&mut s.ff, &s.a, &blk.w1_t, batch, d, net.ff);
        add_bias(&mut s.ff, &blk.b1);
        for v in &mut s.ff {
            // max(v, 0) with NaN kept, so that non-finite inputs surface as non-finite logits
            if *v < 0.0 {
                *v = 0.0;
            }
        }
        matmul_nn(&mut s.proj, &s.ff, &blk.w2_t, batch, net.ff, d);
        add_bias(&mut s.proj, &blk.b2);
        for (e, p) in s.e.iter_mut().zip(&s.proj) {
            *e += p;
        }
    }
    layer_norm(&s.e, &net.lnf_w, &net.lnf_b, &mut s.a);
    let a = net.n_actions;
    for b in 0..batch {
        let f = &s.a[b * d..(b + 1) * d];
        let logits = &mut out.logits[b * a..(b + 1) * a];
        for (k, l) in logits.iter_mut().enumerate() {
            *l = dot(f, &net.w_heads[k * d..(k + 1) * d]) + net.b_heads[k];
        }
        out.values[b] = dot(f, &net.w_heads[a * d..(a + 1) * d]) + net.b_heads[a];
        out.lse[b] = softmax_row(logits, &mut out.probs[b * a..(b + 1) * a]);
    }
    if advance {
        for p in &mut cache.positions {
            *p += 1;
        }
    }
}

/// Sizes of one [`window_attention`] call.
#[derive(Clone, Copy, Debug)]
struct WindowShape {
    /// `B · heads` independent sequences.
    rows: usize,
    seq_len: usize,
    head_dim: usize,
    context: usize,
    scale: f32,
}

impl WindowShape {
    /// First key step that step `t` sees: `max(0, t + 1 − C)`.
    #[inline(always)]
    fn first(&self, t: usize) -> usize {
        (t + 1).saturating_sub(self.context)
    }
}

/// Query steps per block of the blocked attention: each block multiplies its queries with
/// the keys of its window (at most `C + QUERY_BLOCK − 1` of them) through `gemm`.
const QUERY_BLOCK: usize = 64;

/// One block of queries `t0..t1` and the keys `lo..t1` their windows cover.
#[derive(Clone, Copy, Debug)]
struct Block {
    t0: usize,
    t1: usize,
    lo: usize,
}

impl Block {
    fn n_queries(&self) -> usize {
        self.t1 - self.t0
    }

    fn n_keys(&self) -> usize {
        self.t1 - self.lo
    }

    /// The blocks of a sequence, in order.
    fn all(shape: WindowShape) -> impl Iterator<Item = Block> {
        (0..shape.seq_len)
            .step_by(QUERY_BLOCK)
            .map(move |t0| Block {
                t0,
                t1: (t0 + QUERY_BLOCK).min(shape.seq_len),
                lo: shape.first(t0),
            })
    }

    /// Columns of row `i` (query step `t0 + i`) inside its window, relative to `lo`.
    fn window(&self, shape: WindowShape, i: usize) -> std::ops::Range<usize> {
        let t = self.t0 + i;
        shape.first(t) - self.lo..t + 1 - self.lo
    }
}

/// Two buffers that hold a block's `(n_q, n_k)` scores or probabilities.
fn block_buffers(shape: WindowShape) -> (Vec<f32>, Vec<f32>) {
    let cap = QUERY_BLOCK * (shape.context + QUERY_BLOCK);
    (vec![0.0f32; cap], vec![0.0f32; cap])
}

/// Scaled scores `S = scale · Q Kᵀ` of a block into `scores` `(n_q, n_k)`.
fn block_scores(shape: WindowShape, blk: Block, q: &[f32], k: &[f32], scores: &mut [f32]) {
    let d = shape.head_dim;
    let (nq, nk) = (blk.n_queries(), blk.n_keys());
    matmul(
        scores,
        (&q[blk.t0 * d..], false),
        (&k[blk.lo * d..], true),
        (nq, d, nk),
        false,
        false,
    );
    for s in &mut scores[..nq * nk] {
        *s *= shape.scale;
    }
}

/// Forward of one sequence: `o` `(T, d)` and the log-sum-exp of each row's scores `(T)`,
/// a block of queries at a time (`S = Q Kᵀ` and `O = P V` through `gemm`).
fn window_forward_row(
    shape: WindowShape,
    (q, k, v): (&[f32], &[f32], &[f32]),
    o: &mut [f32],
    lse: &mut [f32],
) {
    let d = shape.head_dim;
    let (mut scores, mut probs) = block_buffers(shape);
    for blk in Block::all(shape) {
        let (nq, nk) = (blk.n_queries(), blk.n_keys());
        block_scores(shape, blk, q, k, &mut scores);
        for i in 0..nq {
            let cols = blk.window(shape, i);
            let (s_row, p_row) = (
                &scores[i * nk..(i + 1) * nk],
                &mut probs[i * nk..(i + 1) * nk],
            );
            p_row.fill(0.0);
            lse[blk.t0 + i] = softmax_row(&s_row[cols.clone()], &mut p_row[cols]);
        }
        matmul(
            &mut o[blk.t0 * d..],
            (&probs, false),
            (&v[blk.lo * d..], false),
            (nq, nk, d),
            false,
            false,
        );
    }
}

/// What the backward of one sequence reads: its inputs and output `(T, d)`, the output's
/// gradient `(T, d)` and the forward's log-sum-exps `(T)`.
struct BackwardRow<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    o: &'a [f32],
    d_o: &'a [f32],
    lse: &'a [f32],
}

/// Backward of one sequence, recomputing the probabilities from the saved log-sum-exps
/// (as FlashAttention, Dao et al. 2022), a block of queries at a time: with
/// `P = exp(S − lse)` and `D_t = dO_t · o_t`,
/// `dV += Pᵀ dO`, `dS = P ⊙ (dO Vᵀ − D)`, `dQ = scale · dS K`, `dK += scale · dSᵀ Q`.
/// Writes (overwrites) `dq`, `dk`, `dv`, each `(T, d)`.
fn window_backward_row(
    shape: WindowShape,
    saved: BackwardRow<'_>,
    (dq, dk, dv): (&mut [f32], &mut [f32], &mut [f32]),
) {
    let BackwardRow {
        q,
        k,
        v,
        o,
        d_o,
        lse,
    } = saved;
    let d = shape.head_dim;
    dk.fill(0.0);
    dv.fill(0.0);
    let (mut probs, mut d_probs) = block_buffers(shape);
    for blk in Block::all(shape) {
        let (nq, nk) = (blk.n_queries(), blk.n_keys());
        block_scores(shape, blk, q, k, &mut probs);
        for i in 0..nq {
            let cols = blk.window(shape, i);
            let row = &mut probs[i * nk..(i + 1) * nk];
            let l = lse[blk.t0 + i];
            for (j, p) in row.iter_mut().enumerate() {
                *p = if cols.contains(&j) {
                    exp_f32(*p - l)
                } else {
                    0.0
                };
            }
        }
        let (do_blk, q_blk) = (&d_o[blk.t0 * d..], &q[blk.t0 * d..]);
        // dV (n_k, d) += Pᵀ dO
        let at = blk.lo * d..blk.t1 * d;
        let shapes = (nk, nq, d);
        matmul(
            &mut dv[at.clone()],
            (&probs, true),
            (do_blk, false),
            shapes,
            true,
            false,
        );
        // dP (n_q, n_k) = dO Vᵀ
        let v_blk = &v[blk.lo * d..];
        matmul(
            &mut d_probs,
            (do_blk, false),
            (v_blk, true),
            (nq, d, nk),
            false,
            false,
        );
        for i in 0..nq {
            let t = blk.t0 + i;
            let delta = dot(&d_o[t * d..(t + 1) * d], &o[t * d..(t + 1) * d]);
            let (p_row, dp_row) = (
                &probs[i * nk..(i + 1) * nk],
                &mut d_probs[i * nk..(i + 1) * nk],
            );
            for (dp, &p) in dp_row.iter_mut().zip(p_row) {
                *dp = p * (*dp - delta) * shape.scale;
            }
        }
        // dQ (n_q, d) = dS K;  dK (n_k, d) += dSᵀ Q
        let k_blk = &k[blk.lo * d..];
        let dq_blk = &mut dq[blk.t0 * d..blk.t1 * d];
        matmul(
            dq_blk,
            (&d_probs, false),
            (k_blk, false),
            (nq, nk, d),
            false,
            false,
        );
        matmul(
            &mut dk[at],
            (&d_probs, true),
            (q_blk, false),
            shapes,
            true,
            false,
        );
    }
}

/// The custom op; keeps the forward's log-sum-exps for its backward.
struct WindowAttentionOp {
    context: usize,
    lse: Mutex<Option<Vec<f32>>>,
}

impl WindowAttentionOp {
    fn shape(&self, dims: &[usize]) -> candle_core::Result<WindowShape> {
        let &[batch, heads, seq_len, head_dim] = dims else {
            candle_core::bail!("window_attention: q must be (B, heads, T, d), got {dims:?}");
        };
        Ok(WindowShape {
            rows: batch * heads,
            seq_len,
            head_dim,
            context: self.context,
            scale: 1.0 / (head_dim as f32).sqrt(),
        })
    }
}

impl CustomOp3 for WindowAttentionOp {
    fn name(&self) -> &'static str {
        "window-attention"
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
        if l2.shape() != l1.shape() || l3.shape() != l1.shape() {
            candle_core::bail!(
                "window_attention: q {:?}, k {:?}, v {:?} differ in shape",
                l1.shape(),
                l2.shape(),
                l3.shape()
            );
        }
        let shape = self.shape(l1.shape().dims())?;
        let q = f32_slice("window_attention: q", s1, l1)?;
        let k = f32_slice("window_attention: k", s2, l2)?;
        let v = f32_slice("window_attention: v", s3, l3)?;
        let row = shape.seq_len * shape.head_dim;
        let mut o = vec![0.0f32; q.len()];
        let mut lse = vec![0.0f32; shape.rows * shape.seq_len];
        if row > 0 {
            o.par_chunks_mut(row)
                .zip(lse.par_chunks_mut(shape.seq_len))
                .enumerate()
                .for_each(|(r, (o, lse))| {
                    let at = r * row..(r + 1) * row;
                    let qkv = (&q[at.clone()], &k[at.clone()], &v[at]);
                    window_forward_row(shape, qkv, o, lse);
                });
        }
        match self.lse.lock() {
            Ok(mut slot) => *slot = Some(lse),
            Err(_) => candle_core::bail!("window_attention: saved-state lock poisoned"),
        }
        Ok((CpuStorage::F32(o), l1.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let shape = self.shape(q.dims())?;
        let grad_res = grad_res.contiguous()?;
        let Ok(slot) = self.lse.lock() else {
            candle_core::bail!("window_attention: saved-state lock poisoned");
        };
        let Some(lse) = slot.as_ref() else {
            candle_core::bail!("window_attention: backward before forward");
        };
        let named = [
            ("q", q),
            ("k", k),
            ("v", v),
            ("o", res),
            ("grad", &grad_res),
        ];
        let (dq, dk, dv) = with_cpu_f32("window_attention", named, |[q, k, v, o, d_o]| {
            let row = shape.seq_len * shape.head_dim;
            let (mut dq, mut dk, mut dv) = (
                vec![0.0f32; q.len()],
                vec![0.0f32; q.len()],
                vec![0.0f32; q.len()],
            );
            if row > 0 {
                dq.par_chunks_mut(row)
                    .zip(dk.par_chunks_mut(row))
                    .zip(dv.par_chunks_mut(row))
                    .enumerate()
                    .for_each(|(r, ((dq, dk), dv))| {
                        let at = r * row..(r + 1) * row;
                        let lse = &lse[r * shape.seq_len..(r + 1) * shape.seq_len];
                        let saved = BackwardRow {
                            q: &q[at.clone()],
                            k: &k[at.clone()],
                            v: &v[at.clone()],
                            o: &o[at.clone()],
                            d_o: &d_o[at],
                            lse,
                        };
                        window_backward_row(shape, saved, (dq, dk, dv));
                    });
            }
            Ok((dq, dk, dv))
        })?;
        let (device, dims) = (q.device(), q.dims());
        Ok((
            Some(Tensor::from_vec(dq, dims, device)?),
            Some(Tensor::from_vec(dk, dims, device)?),
            Some(Tensor::from_vec(dv, dims, device)?),
        ))
    }
}

/// Causal attention over a sliding window as one autograd node (CPU, f32): step `t`
/// attends to steps `max(0, t − C + 1) ..= t` of its own sequence,
/// `o_t = Σ_j softmax_j(q_t · k_j / √d) v_j`. Nothing of size `T × T` is stored: the forward
/// keeps one log-sum-exp per step and the backward recomputes the probabilities, so memory
/// and work are linear in `T · min(T, C + 64)`: queries go in blocks of 64, each multiplied
/// with its window's keys and values through `gemm`. Sequences (`B · heads`) run in
/// parallel on the rayon pool.
///
/// # Shapes
/// `q`, `k`, `v` `(B, heads, T, d)` → `(B, heads, T, d)`. Gradients flow to all three.
///
/// # Errors
/// Candle errors for tensors that are not f32 on the CPU or whose shapes differ.
pub(crate) fn window_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    context: usize,
) -> candle_core::Result<Tensor> {
    q.contiguous()?.apply_op3(
        &k.contiguous()?,
        &v.contiguous()?,
        WindowAttentionOp {
            context,
            lse: Mutex::new(None),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_the_norm_and_is_identity_at_position_zero() {
        let mut x = vec![0.3f32, -1.2, 0.7, 2.0];
        let (mut cos, mut sin) = (vec![0.0; 2], vec![0.0; 2]);
        rotary_angles(0, 4, &mut cos, &mut sin);
        let before = x.clone();
        rotate(&mut x, &cos, &sin);
        assert_eq!(x, before);
        rotary_angles(7, 4, &mut cos, &mut sin);
        rotate(&mut x, &cos, &sin);
        let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>();
        assert!((norm(&x) - norm(&before)).abs() < 1e-5);
        // The first pair rotates by 7 rad (θ₀ = 1): (0.3, 0.7) → (0.3 cos 7 − 0.7 sin 7, …).
        let want = 0.3 * 7f32.cos() - 0.7 * 7f32.sin();
        assert!((x[0] - want).abs() < 1e-6, "{} vs {want}", x[0]);
    }

    #[test]
    fn layer_norm_matches_the_formula() {
        let x = [1.0f32, 2.0, 3.0, 6.0];
        let mut y = [0.0f32; 4];
        layer_norm(&x, &[1.0, 2.0, 1.0, 1.0], &[0.0, 0.0, 0.5, 0.0], &mut y);
        // mean 3, variance (4 + 1 + 0 + 9) / 4 = 3.5
        let inv = 1.0 / (3.5f32 + LN_EPS).sqrt();
        let want = [-2.0 * inv, -2.0 * inv, 0.5, 3.0 * inv];
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{y:?}");
        }
    }
}
