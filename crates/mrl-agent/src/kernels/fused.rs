//! The fused f32 CPU forward step behind [`RolloutWorkspace`](crate::RolloutWorkspace).
//!
//! A snapshot of the weights is kept pre-transposed and packed ([`FusedNet`]); one step for a
//! block of rows is, per tile of rows: the encoder product, `x·W_ihᵀ` and `h·W_hhᵀ` on the
//! packed micro-kernel ([`super::packed`], the `gemm` crate's bits; single-threaded inside a
//! tile), then one pass per row that does the gate arithmetic in place on `h`, both heads
//! and the softmax.
//! Tiles keep the GEMM outputs in L2. Rows are split across rayon threads at the top; the
//! per-row arithmetic does not depend on the split, so results do not depend on the thread
//! count. The element-wise passes are compiled for AVX-512 and AVX2 as well as the baseline
//! and chosen at run time (no `target-cpu=native`).

use super::math::{dot, sigmoid, softmax_row, tanh};
use super::packed::{PackedRhs, matmul_packed};

/// Layers between the first hidden layer and the heads.
#[derive(Clone, Debug)]
pub(crate) enum Core {
    /// GRU: `W_ihᵀ` and `W_hhᵀ` as `(H, 3H)` right operands, `b_rz = b_ih + b_hh` for r
    /// and z (`2H`), `b_in`, `b_hn` (`H` each).
    Gru {
        w_ih_t: PackedRhs,
        w_hh_t: PackedRhs,
        b_rz: Vec<f32>,
        b_in: Vec<f32>,
        b_hn: Vec<f32>,
    },
    /// Second MLP layer: `W₂ᵀ` `(H, H)` as a right operand, `b₂`.
    Mlp { w2_t: PackedRhs, b2: Vec<f32> },
}

/// Pre-transposed, contiguous f32 snapshot of a policy's weights.
#[derive(Clone, Debug)]
pub(crate) struct FusedNet {
    pub(crate) input: usize,
    pub(crate) hidden: usize,
    pub(crate) n_actions: usize,
    /// First layer `W₁ᵀ` `(in, H)` as a right operand and `b₁` (encoder or MLP layer 0).
    pub(crate) w1_t: PackedRhs,
    pub(crate) b1: Vec<f32>,
    pub(crate) core: Core,
    /// Heads stacked row-wise: rows `0..A` the policy head, row `A` the value head; `(A+1, H)`.
    pub(crate) w_heads: Vec<f32>,
    pub(crate) b_heads: Vec<f32>,
}

impl FusedNet {
    /// Whether the snapshot is the GRU network (else the MLP).
    pub(crate) fn is_recurrent(&self) -> bool {
        matches!(self.core, Core::Gru { .. })
    }

    /// Width of the carried state (`H` for the GRU, 0 for the MLP).
    pub(crate) fn state_size(&self) -> usize {
        match self.core {
            Core::Gru { .. } => self.hidden,
            Core::Mlp { .. } => 0,
        }
    }
}

/// Per-thread scratch for one tile of rows.
#[derive(Clone, Debug, Default)]
pub(crate) struct Scratch {
    /// First-layer activations, `(tile, H)`.
    e: Vec<f32>,
    /// `x·W_ihᵀ` (GRU) or layer-2 activations (MLP), `(tile, 3H)` / `(tile, H)`.
    gi: Vec<f32>,
    /// `h·W_hhᵀ`, `(tile, 3H)` (GRU only).
    gh: Vec<f32>,
}

impl Scratch {
    pub(crate) fn new(net: &FusedNet, tile: usize) -> Self {
        let h = net.hidden;
        let (gi, gh) = match net.core {
            Core::Gru { .. } => (3 * h, 3 * h),
            Core::Mlp { .. } => (h, 0),
        };
        Self {
            e: vec![0.0; tile * h],
            gi: vec![0.0; tile * gi],
            gh: vec![0.0; tile * gh],
        }
    }

    fn tile_rows(&self, hidden: usize) -> usize {
        self.e.len() / hidden.max(1)
    }
}

/// The rows one thread works on: inputs, state and per-row outputs, all for `n` rows.
pub(crate) struct Rows<'a> {
    /// `(n, in)` input rows.
    pub(crate) x: &'a [f32],
    /// `(n, S)` carried state, updated in place (`S` = 0 for the MLP).
    pub(crate) h: &'a mut [f32],
    /// `(n, A)` logits.
    pub(crate) logits: &'a mut [f32],
    /// `(n)` values.
    pub(crate) values: &'a mut [f32],
    /// `(n, A)` softmax probabilities.
    pub(crate) probs: &'a mut [f32],
    /// `(n)` log-sum-exp of the logits (NaN when a logit is not finite).
    pub(crate) lse: &'a mut [f32],
}

impl<'a> Rows<'a> {
    fn len(&self) -> usize {
        self.values.len()
    }

    /// Splits after `k` rows; `inp`, `s`, `a` are the input, state and action widths.
    fn split_at(self, k: usize, inp: usize, s: usize, a: usize) -> (Rows<'a>, Rows<'a>) {
        let (x0, x1) = self.x.split_at(k * inp);
        let (h0, h1) = self.h.split_at_mut(k * s);
        let (l0, l1) = self.logits.split_at_mut(k * a);
        let (v0, v1) = self.values.split_at_mut(k);
        let (p0, p1) = self.probs.split_at_mut(k * a);
        let (s0, s1) = self.lse.split_at_mut(k);
        (
            Rows {
                x: x0,
                h: h0,
                logits: l0,
                values: v0,
                probs: p0,
                lse: s0,
            },
            Rows {
                x: x1,
                h: h1,
                logits: l1,
                values: v1,
                probs: p1,
                lse: s1,
            },
        )
    }
}

/// Runs the network on `rows` split into `scratch.len()` contiguous blocks, one per rayon
/// task (`rayon::join`, recursively); one block runs on the calling thread.
pub(crate) fn forward_parallel(
    net: &FusedNet,
    rows: Rows<'_>,
    scratch: &mut [Scratch],
    simd: Simd,
) {
    let blocks = scratch.len();
    if blocks <= 1 || rows.len() < 2 {
        if let Some(s) = scratch.first_mut() {
            forward_rows(net, rows, s, simd);
        }
        return;
    }
    let left_blocks = blocks / 2;
    let k = rows.len() * left_blocks / blocks;
    let (left, right) = rows.split_at(k, net.input, net.state_size(), net.n_actions);
    let (ls, rs) = scratch.split_at_mut(left_blocks);
    rayon::join(
        || forward_parallel(net, left, ls, simd),
        || forward_parallel(net, right, rs, simd),
    );
}

/// Which instruction set the element-wise passes were compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Simd {
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Simd {
    /// The best level this CPU supports.
    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Self::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Self::Avx2;
            }
        }
        Self::Baseline
    }

    /// Every level this CPU can run, the baseline first.
    #[cfg(test)]
    pub(crate) fn available() -> Vec<Self> {
        let mut levels = vec![Self::Baseline];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                levels.push(Self::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                levels.push(Self::Avx512);
            }
        }
        levels
    }
}

/// Runs the network on `rows`, tile by tile, with this thread's `scratch`.
pub(crate) fn forward_rows(net: &FusedNet, rows: Rows<'_>, scratch: &mut Scratch, simd: Simd) {
    let n = rows.len();
    let tile = scratch.tile_rows(net.hidden).max(1);
    let (inp, s, a) = (net.input, net.state_size(), net.n_actions);
    let Rows {
        x,
        h,
        logits,
        values,
        probs,
        lse,
    } = rows;
    let mut start = 0;
    while start < n {
        let m = tile.min(n - start);
        let end = start + m;
        forward_tile(
            net,
            Rows {
                x: &x[start * inp..end * inp],
                h: &mut h[start * s..end * s],
                logits: &mut logits[start * a..end * a],
                values: &mut values[start..end],
                probs: &mut probs[start * a..end * a],
                lse: &mut lse[start..end],
            },
            scratch,
            simd,
        );
        start = end;
    }
}

/// One tile: GEMMs, then the fused element-wise passes.
fn forward_tile(net: &FusedNet, rows: Rows<'_>, scratch: &mut Scratch, simd: Simd) {
    let m = rows.len();
    let hd = net.hidden;
    let e = &mut scratch.e[..m * hd];
    // (m, in) · (in, H)
    matmul_packed(e, rows.x, &net.w1_t, m, false);
    bias_relu_simd(simd, e, &net.b1);
    let Rows {
        h,
        logits,
        values,
        probs,
        lse,
        ..
    } = rows;
    match &net.core {
        Core::Gru { w_ih_t, w_hh_t, .. } => {
            let gi = &mut scratch.gi[..m * 3 * hd];
            let gh = &mut scratch.gh[..m * 3 * hd];
            matmul_packed(gi, e, w_ih_t, m, false); // (m, H) · (H, 3H)
            matmul_packed(gh, h, w_hh_t, m, false); // (m, H) · (H, 3H)
            gru_tail_simd(simd, net, gi, gh, h, logits, values, probs, lse);
        }
        Core::Mlp { w2_t, b2 } => {
            let f = &mut scratch.gi[..m * hd];
            matmul_packed(f, e, w2_t, m, false); // (m, H) · (H, H)
            bias_relu_simd(simd, f, b2);
            heads_tail_simd(simd, net, f, logits, values, probs, lse);
        }
    }
}

// The element-wise passes below are each built for AVX-512, AVX2 + FMA and the baseline
// with the slices as parameters of their own (`per_instruction_set!`); everything they call
// is `#[inline(always)]`, so it is compiled (and vectorised) for that instruction set.

per_instruction_set! {
    /// `v ← max(v + b, 0)` row by row, `v` `(m, H)`, `b` `(H)`. NaN propagates (as in
    /// candle and PyTorch), so that non-finite inputs surface as non-finite logits.
    fn bias_relu => bias_relu_simd(v: &mut [f32], b: &[f32]) {
        for row in v.chunks_exact_mut(b.len()) {
            for (x, &bj) in row.iter_mut().zip(b) {
                let y = *x + bj;
                *x = if y < 0.0 { 0.0 } else { y };
            }
        }
    }
}

per_instruction_set! {
    /// GRU gates in place on `h` `(m, H)`, then the heads, for every row of the tile (`gi`,
    /// `gh` `(m, 3H)`; `logits`, `probs` `(m, A)`; `values`, `lse` `(m)`).
    fn gru_tail => gru_tail_simd(
        net: &FusedNet,
        gi: &[f32],
        gh: &[f32],
        h: &mut [f32],
        logits: &mut [f32],
        values: &mut [f32],
        probs: &mut [f32],
        lse: &mut [f32],
    ) {
        let Core::Gru {
            b_rz, b_in, b_hn, ..
        } = &net.core
        else {
            return;
        };
        let hd = net.hidden;
        for (i, h_row) in h.chunks_exact_mut(hd).enumerate() {
            let gi = &gi[i * 3 * hd..(i + 1) * 3 * hd];
            let gh = &gh[i * 3 * hd..(i + 1) * 3 * hd];
            gru_gates(gi, gh, b_rz, b_in, b_hn, h_row);
            row_heads(net, h_row, i, logits, values, probs, lse);
        }
    }
}

per_instruction_set! {
    /// Heads for every row of a tile whose features are `f` `(m, H)`.
    fn heads_tail => heads_tail_simd(
        net: &FusedNet,
        f: &[f32],
        logits: &mut [f32],
        values: &mut [f32],
        probs: &mut [f32],
        lse: &mut [f32],
    ) {
        for (i, f_row) in f.chunks_exact(net.hidden).enumerate() {
            row_heads(net, f_row, i, logits, values, probs, lse);
        }
    }
}

/// Gate arithmetic of one row (PyTorch's GRU, gate order r, z, n):
/// `r = σ(gi_r + gh_r + b_r)`, `z = σ(gi_z + gh_z + b_z)`,
/// `n = tanh(gi_n + b_in + r·(gh_n + b_hn))`, `h ← n + z·(h − n)`.
#[inline(always)]
fn gru_gates(gi: &[f32], gh: &[f32], b_rz: &[f32], b_in: &[f32], b_hn: &[f32], h: &mut [f32]) {
    let hd = h.len();
    let (gi_r, gi_z, gi_n) = (&gi[..hd], &gi[hd..2 * hd], &gi[2 * hd..3 * hd]);
    let (gh_r, gh_z, gh_n) = (&gh[..hd], &gh[hd..2 * hd], &gh[2 * hd..3 * hd]);
    let (b_r, b_z, b_in, b_hn) = (&b_rz[..hd], &b_rz[hd..2 * hd], &b_in[..hd], &b_hn[..hd]);
    for j in 0..hd {
        let r = sigmoid(gi_r[j] + gh_r[j] + b_r[j]);
        let z = sigmoid(gi_z[j] + gh_z[j] + b_z[j]);
        let n = tanh(gi_n[j] + b_in[j] + r * (gh_n[j] + b_hn[j]));
        h[j] = n + z * (h[j] - n);
    }
}

/// Policy and value heads and the softmax of row `i` with features `f` `(H)`.
#[inline(always)]
fn row_heads(
    net: &FusedNet,
    f: &[f32],
    i: usize,
    logits: &mut [f32],
    values: &mut [f32],
    probs: &mut [f32],
    lse: &mut [f32],
) {
    let (a, hd) = (net.n_actions, net.hidden);
    let row_logits = &mut logits[i * a..(i + 1) * a];
    for (k, l) in row_logits.iter_mut().enumerate() {
        *l = dot(f, &net.w_heads[k * hd..(k + 1) * hd]) + net.b_heads[k];
    }
    values[i] = dot(f, &net.w_heads[a * hd..(a + 1) * hd]) + net.b_heads[a];
    lse[i] = softmax_row(row_logits, &mut probs[i * a..(i + 1) * a]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic weights in `[-0.25, 0.25]` for a GRU or MLP snapshot.
    fn test_net(recurrent: bool, input: usize, hidden: usize, n_actions: usize) -> FusedNet {
        let vals = |n: usize, seed: usize| -> Vec<f32> {
            (0..n)
                .map(|i| ((i * 7 + seed * 13) as f32 * 0.37).sin() * 0.25)
                .collect()
        };
        let core = if recurrent {
            Core::Gru {
                w_ih_t: PackedRhs::new(&vals(hidden * 3 * hidden, 1), false, hidden, 3 * hidden),
                w_hh_t: PackedRhs::new(&vals(hidden * 3 * hidden, 2), false, hidden, 3 * hidden),
                b_rz: vals(2 * hidden, 3),
                b_in: vals(hidden, 4),
                b_hn: vals(hidden, 5),
            }
        } else {
            Core::Mlp {
                w2_t: PackedRhs::new(&vals(hidden * hidden, 6), false, hidden, hidden),
                b2: vals(hidden, 7),
            }
        };
        FusedNet {
            input,
            hidden,
            n_actions,
            w1_t: PackedRhs::new(&vals(input * hidden, 8), false, input, hidden),
            b1: vals(hidden, 9),
            core,
            w_heads: vals((n_actions + 1) * hidden, 10),
            b_heads: vals(n_actions + 1, 11),
        }
    }

    /// Every instruction-set build of the element-wise passes gives the same numbers.
    #[test]
    fn simd_levels_agree() {
        let levels = Simd::available();
        for recurrent in [true, false] {
            let net = test_net(recurrent, 19, 40, 3);
            let (n, a, s) = (9, net.n_actions, net.state_size());
            let x: Vec<f32> = (0..n * net.input)
                .map(|i| (i as f32 * 0.37).sin())
                .collect();
            let run = |simd: Simd| {
                let mut h: Vec<f32> = (0..n * s).map(|i| (i as f32 * 0.11).cos() * 0.5).collect();
                let (mut logits, mut probs) = (vec![0.0; n * a], vec![0.0; n * a]);
                let (mut values, mut lse) = (vec![0.0; n], vec![0.0; n]);
                let mut scratch = Scratch::new(&net, 4);
                let rows = Rows {
                    x: &x,
                    h: &mut h,
                    logits: &mut logits,
                    values: &mut values,
                    probs: &mut probs,
                    lse: &mut lse,
                };
                forward_rows(&net, rows, &mut scratch, simd);
                (h, logits, values)
            };
            let reference = run(Simd::Baseline);
            for &level in &levels {
                let got = run(level);
                for (g, r) in got
                    .0
                    .iter()
                    .chain(&got.1)
                    .chain(&got.2)
                    .zip(reference.0.iter().chain(&reference.1).chain(&reference.2))
                {
                    assert!(
                        (g - r).abs() <= 1e-6 + 1e-6 * r.abs(),
                        "{level:?}: {g} vs {r}"
                    );
                }
            }
        }
    }
}
