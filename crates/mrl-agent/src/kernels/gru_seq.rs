//! Sequence-level GRU as one candle custom op with a hand-written backward (BPTT).
//!
//! Autograd through a step-by-step unroll records about a hundred small ops per time step;
//! at `T = 600` the update is dominated by their bookkeeping. [`gru_sequence`] runs the
//! whole recurrence in one CPU kernel instead:
//!
//! ```text
//! gh_t = h_{t-1} W_hhᵀ + b_hh                          (B, 3H), one GEMM per step
//! r = σ(xp_r + gh_r),  z = σ(xp_z + gh_z),  n = tanh(xp_n + r ⊙ gh_n)
//! h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}
//! ```
//!
//! where `xp = x W_ihᵀ + b_ih` is one GEMM over all `B·T` rows inside the op (so the
//! `(B, T, 3H)` projection and its gradient never become candle tensors); the GEMM
//! overwrites its output and the gate pass adds `b_ih`, which rounds exactly as adding the
//! product onto a bias-filled buffer and saves a pass over `(B·T, 3H)`. The forward
//! saves `x`, `r, z, n, gh_n` and every `h_t`; the backward walks the steps in reverse:
//!
//! ```text
//! d  = ∂L/∂h_t (from the output) + carry
//! dn = d ⊙ (1 − z),  dz = d ⊙ (h_{t-1} − n),  da_n = dn ⊙ (1 − n²)
//! da_r = da_n ⊙ gh_n ⊙ r(1 − r),  da_z = dz ⊙ z(1 − z),  dgh_n = da_n ⊙ r
//! dxp_t = [da_r, da_z, da_n],  dgh_t = [da_r, da_z, dgh_n]
//! carry = d ⊙ z + dgh_t W_hh                            one GEMM per step
//! dW_hh = Σ_t dgh_tᵀ h_{t-1},  db_hh = Σ_t Σ_b dgh_t    one GEMM over all T·B rows
//! dW_ih = dxpᵀ x,  db_ih = Σ dxp,  dx = dxp W_ih          one GEMM each
//! ```
//!
//! Only f32 tensors on the CPU are handled; [`Gru::forward_seq_fused`](crate::Gru) falls
//! back to the step-by-step unroll elsewhere.

use std::sync::Mutex;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Storage, Tensor};
use rayon::prelude::*;

use super::fused::Simd;
pub(crate) use super::gemm::matmul;
use super::math::{sigmoid, tanh};
use super::packed::{PackedRhs, matmul_packed};
use super::scratch::{give, take};

/// Sizes of one sequence batch.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dims {
    pub(crate) batch: usize,
    pub(crate) seq_len: usize,
    pub(crate) input: usize,
    pub(crate) hidden: usize,
}

/// The recurrence state of one block of trials (time-major within the block).
#[derive(Debug)]
struct Block {
    /// Trials in the block.
    batch: usize,
    /// `h_0 … h_T`, `(T + 1, b, H)`.
    hs: Vec<f32>,
    /// Per `(t, b)` row: `r, z, n, gh_n`, `(T, b, 4H)`.
    gates: Vec<f32>,
}

impl Drop for Block {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.hs));
        give(std::mem::take(&mut self.gates));
    }
}

/// What the backward pass needs from the forward.
#[derive(Debug)]
pub(crate) struct Saved {
    dims: Dims,
    /// `W_ih`, `(3H, I)`.
    w_ih: Vec<f32>,
    /// `W_hh`, `(3H, H)`.
    w_hh: Vec<f32>,
    /// Trials per block (the last block may hold fewer).
    block_trials: usize,
    /// The blocks of trials, in order; their recurrences are independent.
    blocks: Vec<Block>,
}

/// Fewest trials in a block of its own: below this the per-step products are too small
/// for a second thread to pay (measured on 2 cores: 2 × 16 beats 1 × 32, 2 × 4 loses to
/// 1 × 8).
const MIN_BLOCK_TRIALS: usize = 16;

/// Trials per block: the batch split evenly over the rayon threads, at least
/// [`MIN_BLOCK_TRIALS`] each, so that independent trials run their recurrences in parallel
/// without synchronising per step.
pub(crate) fn block_trials(batch: usize) -> usize {
    let blocks = (batch / MIN_BLOCK_TRIALS).clamp(1, rayon::current_num_threads().max(1));
    batch.div_ceil(blocks)
}

/// The three gate blocks `(H)` of a `(3H)` row.
#[inline(always)]
fn thirds(v: &[f32], hd: usize) -> [&[f32]; 3] {
    [&v[..hd], &v[hd..2 * hd], &v[2 * hd..3 * hd]]
}

/// Gate arithmetic of one row, saving `r, z, n, gh_n` into `saved` (`4H`).
///
/// `xp` is the input projection without its bias: `xp + b_ih` here rounds exactly as the
/// projection computed onto a bias-filled buffer did (`b_ih + acc`; addition commutes),
/// without a pass that fills `(B·T, 3H)` with the bias first.
///
/// # Shapes
/// `xp` `(3H)`, `gh` `(3H)` (no bias), `b_ih`/`b_hh` `(3H)`, `h_prev`/`h_next` `(H)`.
#[inline(always)]
fn gate_row(
    xp: &[f32],
    gh: &[f32],
    (b_ih, b_hh): (&[f32], &[f32]),
    h_prev: &[f32],
    h_next: &mut [f32],
    saved: &mut [f32],
) {
    let hd = h_prev.len();
    // Slices of exactly H values each, so that the loop has no bounds checks and
    // vectorises.
    let ([x_r, x_z, x_n], [g_r, g_z, g_n]) = (thirds(xp, hd), thirds(gh, hd));
    let ([c_r, c_z, c_n], [b_r, b_z, b_n]) = (thirds(b_ih, hd), thirds(b_hh, hd));
    let h_next = &mut h_next[..hd];
    let (s_r, rest) = saved.split_at_mut(hd);
    let (s_z, rest) = rest.split_at_mut(hd);
    let (s_n, s_hn) = rest.split_at_mut(hd);
    let s_hn = &mut s_hn[..hd];
    for j in 0..hd {
        let r = sigmoid((x_r[j] + c_r[j]) + g_r[j] + b_r[j]);
        let z = sigmoid((x_z[j] + c_z[j]) + g_z[j] + b_z[j]);
        let hn = g_n[j] + b_n[j];
        let n = tanh((x_n[j] + c_n[j]) + r * hn);
        h_next[j] = n + z * (h_prev[j] - n);
        s_r[j] = r;
        s_z[j] = z;
        s_n[j] = n;
        s_hn[j] = hn;
    }
}

/// Backward of one row: writes `dxp` `(3H)`, `dgh` `(3H)` and `d ⊙ z` into `carry` `(H)`,
/// where `d = d_out + carry`.
#[inline(always)]
fn gate_row_bwd(
    d_out: &[f32],
    saved: &[f32],
    h_prev: &[f32],
    carry: &mut [f32],
    dxp: &mut [f32],
    dgh: &mut [f32],
) {
    let hd = h_prev.len();
    // Slices of exactly H values each (no bounds checks in the loop, which vectorises).
    let [s_r, s_z, s_n, s_hn] = [0, 1, 2, 3].map(|i| &saved[i * hd..(i + 1) * hd]);
    let (d_out, carry) = (&d_out[..hd], &mut carry[..hd]);
    let (dx_r, rest) = dxp.split_at_mut(hd);
    let (dx_z, dx_n) = rest.split_at_mut(hd);
    let dx_n = &mut dx_n[..hd];
    let (dg_r, rest) = dgh.split_at_mut(hd);
    let (dg_z, dg_n) = rest.split_at_mut(hd);
    let dg_n = &mut dg_n[..hd];
    for j in 0..hd {
        let (r, z, n, hn) = (s_r[j], s_z[j], s_n[j], s_hn[j]);
        let d = d_out[j] + carry[j];
        let dn = d * (1.0 - z);
        let dz = d * (h_prev[j] - n);
        let da_n = dn * (1.0 - n * n);
        let da_r = da_n * hn * r * (1.0 - r);
        let da_z = dz * z * (1.0 - z);
        dx_r[j] = da_r;
        dx_z[j] = da_z;
        dx_n[j] = da_n;
        dg_r[j] = da_r;
        dg_z[j] = da_z;
        dg_n[j] = da_n * r;
        carry[j] = d * z;
    }
}

per_instruction_set! {
    /// Forward gate pass of time step `t` over the batch (one [`gate_row`] per trial).
    ///
    /// # Shapes
    /// `xp` `(B, T, 3H)` (without `b_ih`), `gh` `(B, 3H)`, `b_ih`/`b_hh` `(3H)`,
    /// `h_prev`/`h_next` `(B, H)`, `gates` `(B, 4H)`.
    fn forward_pass => forward_pass_simd(
        xp: &[f32],
        gh: &[f32],
        biases: (&[f32], &[f32]),
        h_prev: &[f32],
        h_next: &mut [f32],
        gates: &mut [f32],
        t: usize,
        dims: Dims,
    ) {
        let (seq_len, hd) = (dims.seq_len, dims.hidden);
        for b in 0..dims.batch {
            let x0 = (b * seq_len + t) * 3 * hd;
            gate_row(
                &xp[x0..x0 + 3 * hd],
                &gh[b * 3 * hd..(b + 1) * 3 * hd],
                biases,
                &h_prev[b * hd..(b + 1) * hd],
                &mut h_next[b * hd..(b + 1) * hd],
                &mut gates[b * 4 * hd..(b + 1) * 4 * hd],
            );
        }
    }
}

per_instruction_set! {
    /// Backward gate pass of time step `t` over the batch (one [`gate_row_bwd`] per trial).
    ///
    /// # Shapes
    /// `d_out` `(B, T, H)`, `gates` `(B, 4H)`, `h_prev`/`carry` `(B, H)`, `dxp` `(B, T, 3H)`,
    /// `dgh` `(B, 3H)`.
    fn backward_pass => backward_pass_simd(
        d_out: &[f32],
        gates: &[f32],
        h_prev: &[f32],
        carry: &mut [f32],
        dxp: &mut [f32],
        dgh: &mut [f32],
        t: usize,
        dims: Dims,
    ) {
        let (seq_len, hd) = (dims.seq_len, dims.hidden);
        for b in 0..dims.batch {
            let o0 = (b * seq_len + t) * hd;
            let x0 = (b * seq_len + t) * 3 * hd;
            gate_row_bwd(
                &d_out[o0..o0 + hd],
                &gates[b * 4 * hd..(b + 1) * 4 * hd],
                &h_prev[b * hd..(b + 1) * hd],
                &mut carry[b * hd..(b + 1) * hd],
                &mut dxp[x0..x0 + 3 * hd],
                &mut dgh[b * 3 * hd..(b + 1) * 3 * hd],
            );
        }
    }
}

/// The parameters unpacked from `[W_ih | b_ih | W_hh | b_hh]` `(3H, I + 1 + H + 1)`.
struct Params {
    w_ih: Vec<f32>,
    b_ih: Vec<f32>,
    w_hh: Vec<f32>,
    b_hh: Vec<f32>,
}

impl Params {
    fn unpack(packed: &[f32], input: usize, hd: usize) -> Self {
        let g3 = 3 * hd;
        let mut p = Self {
            w_ih: Vec::with_capacity(g3 * input),
            b_ih: Vec::with_capacity(g3),
            w_hh: Vec::with_capacity(g3 * hd),
            b_hh: Vec::with_capacity(g3),
        };
        for row in packed.chunks_exact(input + hd + 2) {
            let (w_i, rest) = row.split_at(input);
            let (w_h, b_h) = rest[1..].split_at(hd);
            p.w_ih.extend_from_slice(w_i);
            p.b_ih.push(rest[0]);
            p.w_hh.extend_from_slice(w_h);
            p.b_hh.push(b_h[0]);
        }
        p
    }
}

/// Rows per rayon task of the element-wise loops below (large enough to amortise the task).
pub(crate) const PAR_ROWS: usize = 512;

/// `out (rows, cols) = bias` broadcast over the rows, in parallel.
pub(crate) fn fill_rows(out: &mut [f32], bias: &[f32]) {
    let cols = bias.len();
    out.par_chunks_mut(PAR_ROWS * cols).for_each(|block| {
        for row in block.chunks_exact_mut(cols) {
            row.copy_from_slice(bias);
        }
    });
}

/// Column sums of a row-major `(rows, cols)` matrix, each column summed over the rows in
/// order. Large matrices split their columns over the rayon threads, which keeps every
/// column's order of summation, so the result is the same bits for any thread count.
pub(crate) fn column_sums(m: &[f32], cols: usize) -> Vec<f32> {
    let simd = Simd::detect();
    by_columns(m.len(), cols, |first, acc| {
        sum_columns_simd(simd, m, cols, first, acc);
    })
}

/// The ReLU's backward and the bias gradient in one pass: zeroes `grad` where `out ≤ 0`
/// (the ReLU's output; `out > 0` exactly where its input was positive), then returns the
/// column sums of the masked `grad`, each column summed over the rows in order, as
/// [`column_sums`] after a separate masking pass (the same bits, one pass fewer over
/// `(rows, cols)`).
///
/// # Panics
/// When `grad` and `out` differ in length (an internal invariant of the callers).
pub(crate) fn relu_backward_column_sums(grad: &mut [f32], out: &[f32], cols: usize) -> Vec<f32> {
    assert_eq!(grad.len(), out.len(), "relu backward sizes");
    let (len, simd) = (grad.len(), Simd::detect());
    let grad = Disjoint::new(grad);
    by_columns(len, cols, |first, acc| {
        let n = acc.len();
        for (r, out) in out.chunks_exact(cols).enumerate() {
            // SAFETY: each call of this closure owns columns first..first + n of every
            // row (`by_columns` hands out disjoint column ranges), so no two threads touch
            // the same elements; the slice ends with the iteration.
            let g = unsafe { grad.slice_mut(r * cols + first, n) };
            relu_backward_row_simd(simd, g, &out[first..first + n], acc);
        }
    })
}

per_instruction_set! {
    /// One row of [`relu_backward_column_sums`]: `g = 0` where `out ≤ 0`, then `acc += g`
    /// (a select and an add per column, which vectorise).
    ///
    /// # Shapes
    /// `g`, `out` and `acc` `(n)`.
    fn relu_backward_row => relu_backward_row_simd(g: &mut [f32], out: &[f32], acc: &mut [f32]) {
        let n = acc.len();
        let (g, out) = (&mut g[..n], &out[..n]);
        for j in 0..n {
            let v = if out[j] <= 0.0 { 0.0 } else { g[j] };
            g[j] = v;
            acc[j] += v;
        }
    }
}

/// Column-wise work over a row-major `(len / cols, cols)` matrix: `f(first, acc)` fills
/// `acc`, the results of columns `first .. first + acc.len()`. Large matrices split their
/// columns over the rayon threads (each column's work stays on one thread, in row order),
/// so the result is the same bits for any thread count.
fn by_columns(len: usize, cols: usize, f: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    /// Fewest elements worth a second thread, fewest columns per thread.
    const PARALLEL_FROM: usize = 1 << 16;
    const MIN_COLS: usize = 16;
    let mut sums = vec![0.0f32; cols];
    let threads = rayon::current_num_threads();
    let per = cols.div_ceil(threads).max(MIN_COLS);
    if len < PARALLEL_FROM || per >= cols {
        f(0, &mut sums);
    } else {
        sums.par_chunks_mut(per)
            .enumerate()
            .for_each(|(i, part)| f(i * per, part));
    }
    sums
}

per_instruction_set! {
    /// Adds columns `first .. first + acc.len()` of the row-major `(rows, cols)` matrix `m`
    /// into `acc`, row by row (one column per SIMD lane: each column's order is kept).
    fn sum_columns => sum_columns_simd(m: &[f32], cols: usize, first: usize, acc: &mut [f32]) {
        let n = acc.len();
        for row in m.chunks_exact(cols) {
            for (a, v) in acc.iter_mut().zip(&row[first..first + n]) {
                *a += v;
            }
        }
    }
}

/// The whole forward: input projection as one GEMM over all `B·T` rows, then the
/// recurrence in blocks of `per` trials.
///
/// # Shapes
/// `x` `(B, T, I)`, `h0` `(B, H)`, `packed` `(3H, I + 1 + H + 1)` → output `(B, T, H)` and
/// the saved state.
pub(crate) fn forward(
    x: &[f32],
    h0: &[f32],
    packed: &[f32],
    dims: Dims,
    per: usize,
) -> (Vec<f32>, Saved) {
    let (batch, seq_len, hd) = (dims.batch, dims.seq_len, dims.hidden);
    let (g3, rows) = (3 * hd, batch * seq_len);
    let Params {
        w_ih,
        b_ih,
        w_hh,
        b_hh,
    } = Params::unpack(packed, dims.input, hd);
    // xp (B·T, 3H) = x (B·T, I) · W_ihᵀ, overwritten; the gate pass adds b_ih.
    let mut xp = take(rows * g3);
    matmul(
        &mut xp,
        (x, false),
        (&w_ih, true),
        (rows, dims.input, g3),
        false,
        true,
    );
    // W_hh (3H, H) is the transposed right operand of h_{t-1} (b, H) · W_hhᵀ, packed once
    // for all steps and blocks.
    let w_hh_t = PackedRhs::new(&w_hh, true, hd, g3);
    // Every row is written by the recurrence below.
    let mut out = take(rows * hd);
    let threads = threads_per_block(batch, per);
    let blocks = xp
        .par_chunks(per * seq_len * g3)
        .zip(h0.par_chunks(per * hd))
        .zip(out.par_chunks_mut(per * seq_len * hd))
        .map(|((xp, h0), out)| {
            let dims = Dims {
                batch: h0.len() / hd,
                ..dims
            };
            let part = part_trials(dims.batch, threads, &w_hh_t);
            recur(xp, h0, &w_hh_t, (&b_ih, &b_hh), out, dims, part)
        })
        .collect();
    give(xp);
    let saved = Saved {
        dims,
        w_ih,
        w_hh,
        block_trials: per,
        blocks,
    };
    (out, saved)
}

/// The recurrence of one block of trials; writes every `h_t` into `out` `(b, T, H)` (as
/// each step computes it, beside the time-major copy the backward reads).
/// Parts of `part` trials run their recurrences on separate rayon threads (see
/// [`part_trials`]); the block's buffers are laid out as for one part.
fn recur(
    xp: &[f32],
    h0: &[f32],
    w_hh_t: &PackedRhs,
    biases: (&[f32], &[f32]),
    out: &mut [f32],
    dims: Dims,
    part: usize,
) -> Block {
    let simd = Simd::detect();
    let (batch, seq_len, hd) = (dims.batch, dims.seq_len, dims.hidden);
    let (g3, bh) = (3 * hd, batch * hd);
    // Every entry of `hs` and `gates` is written below before it is read.
    let mut hs = take((seq_len + 1) * bh);
    hs[..bh].copy_from_slice(h0);
    let mut gates = take(seq_len * batch * 4 * hd);
    {
        let (hs, gates) = (Disjoint::new(&mut hs), Disjoint::new(&mut gates));
        xp.par_chunks(part * seq_len * g3)
            .zip(out.par_chunks_mut(part * seq_len * hd))
            .enumerate()
            .for_each(|(i, (xp, out))| {
                let (r0, rows) = (i * part, xp.len() / (seq_len * g3));
                let dims = Dims {
                    batch: rows,
                    ..dims
                };
                let mut gh = vec![0.0f32; rows * g3];
                for t in 0..seq_len {
                    // SAFETY: this part alone touches trials r0..r0 + rows of every step
                    // (the parts' trial ranges are disjoint); h_t was written by this part
                    // at step t − 1 (or is h0), and the slices end before the next call.
                    let (h_prev, h_next, gates) = unsafe {
                        (
                            hs.slice(t * bh + r0 * hd, rows * hd),
                            hs.slice_mut((t + 1) * bh + r0 * hd, rows * hd),
                            gates.slice_mut((t * batch + r0) * 4 * hd, rows * 4 * hd),
                        )
                    };
                    // (rows, H) · (H, 3H)
                    matmul_packed(&mut gh, h_prev, w_hh_t, rows, false);
                    forward_pass_simd(simd, xp, &gh, biases, h_prev, h_next, gates, t, dims);
                    // h_t into the batch-major output while it is in cache.
                    for (b, h) in h_next.chunks_exact(hd).enumerate() {
                        let o = (b * seq_len + t) * hd;
                        out[o..o + hd].copy_from_slice(h);
                    }
                }
            });
    }
    Block { batch, hs, gates }
}

/// Threads for each block's recurrence: the rayon threads left over when the blocks of
/// [`block_trials`] run side by side.
fn threads_per_block(batch: usize, per: usize) -> usize {
    (rayon::current_num_threads() / batch.div_ceil(per.max(1))).max(1)
}

/// Trials per part when a block of `batch` trials runs its recurrence on up to `threads`
/// threads: the most parts whose per-step products stay on the packed micro-kernel's
/// path, and so compute the same bits as the whole block's (a product with fewer rows may
/// go to `gemm`'s `gemv` or horizontal kernel, whose sums are ordered differently). The
/// block's memory layout and its weight-gradient sums do not depend on the parts, so the
/// results are the same bits for every thread count.
fn part_trials(batch: usize, threads: usize, rhs: &PackedRhs) -> usize {
    if !rhs.packed_path(batch) {
        return batch.max(1);
    }
    (2..=threads.min(batch))
        .rev()
        .map(|parts| batch.div_ceil(parts))
        .find(|&per| {
            let last = batch - (batch.div_ceil(per) - 1) * per;
            rhs.packed_path(per) && rhs.packed_path(last)
        })
        .unwrap_or(batch)
}

/// A buffer that the parts of one block write at disjoint positions from several threads.
struct Disjoint<'a> {
    ptr: *mut f32,
    len: usize,
    _buffer: std::marker::PhantomData<&'a mut [f32]>,
}

// SAFETY: access goes through the unsafe `slice`/`slice_mut`, whose callers guarantee
// that no two threads touch the same elements at once.
unsafe impl Sync for Disjoint<'_> {}

impl<'a> Disjoint<'a> {
    fn new(buffer: &'a mut [f32]) -> Self {
        Self {
            ptr: buffer.as_mut_ptr(),
            len: buffer.len(),
            _buffer: std::marker::PhantomData,
        }
    }

    /// `len` elements from `start`, read-only.
    ///
    /// # Safety
    /// No thread writes these elements while the slice lives.
    unsafe fn slice(&self, start: usize, len: usize) -> &[f32] {
        assert!(start + len <= self.len, "disjoint slice out of bounds");
        // SAFETY: in bounds (asserted); no concurrent writer (caller).
        unsafe { std::slice::from_raw_parts(self.ptr.add(start), len) }
    }

    /// `len` elements from `start`, writable.
    ///
    /// # Safety
    /// No other thread reads or writes these elements while the slice lives, and no other
    /// slice of them is alive.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice_mut(&self, start: usize, len: usize) -> &mut [f32] {
        assert!(start + len <= self.len, "disjoint slice out of bounds");
        // SAFETY: in bounds (asserted); exclusive (caller).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}

/// Gradients `(dx (B, T, I), dh0 (B, H), d[W_ih | b_ih | W_hh | b_hh])` for `d_out`
/// `(B, T, H)`; `x` is the forward's input (the graph keeps it alive, so it is not copied).
pub(crate) fn backward(saved: &Saved, x: &[f32], d_out: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let dims = saved.dims;
    let (batch, seq_len, input, hd) = (dims.batch, dims.seq_len, dims.input, dims.hidden);
    let (g3, bh, rows) = (3 * hd, batch * hd, batch * seq_len);
    let per = saved.block_trials;
    let mut carry = vec![0.0f32; bh];
    // W_hh (3H, H), the right operand of dgh_t (b, 3H) · W_hh, packed once for all steps.
    let w_hh = PackedRhs::new(&saved.w_hh, false, g3, hd);
    // batch-major (B·T, 3H); BPTT writes every entry.
    let mut dxp = take(rows * g3);
    let threads = threads_per_block(batch, per);
    let dghs: Vec<Vec<f32>> = dxp
        .par_chunks_mut(per * seq_len * g3)
        .zip(carry.par_chunks_mut(per * hd))
        .zip(d_out.par_chunks(per * seq_len * hd))
        .zip(saved.blocks.par_iter())
        .map(|(((dxp, carry), d_out), block)| {
            let dims = Dims {
                batch: block.batch,
                ..dims
            };
            let part = part_trials(dims.batch, threads, &w_hh);
            bptt(block, &w_hh, (d_out, dxp, carry), dims, part)
        })
        .collect();
    // Weight gradients as one GEMM each over all rows:
    // dW_hh (3H, H) = Σ_blocks dghᵀ · h_{t-1},  dW_ih (3H, I) = dxpᵀ · x,  dx = dxp · W_ih.
    let mut d_whh = vec![0.0f32; g3 * hd];
    let mut d_bhh = vec![0.0f32; g3];
    for (dgh, block) in dghs.iter().zip(&saved.blocks) {
        let block_rows = seq_len * block.batch;
        matmul(
            &mut d_whh,
            (dgh, true),
            (&block.hs[..block_rows * hd], false),
            (g3, block_rows, hd),
            true,
            true,
        );
        for (acc, v) in d_bhh.iter_mut().zip(column_sums(dgh, g3)) {
            *acc += v;
        }
    }
    let mut d_wih = vec![0.0f32; g3 * input];
    matmul(
        &mut d_wih,
        (&dxp, true),
        (x, false),
        (g3, rows, input),
        false,
        true,
    );
    // Overwritten by the product (no accumulation).
    let mut dx = take(rows * input);
    matmul(
        &mut dx,
        (&dxp, false),
        (&saved.w_ih, false),
        (rows, g3, input),
        false,
        true,
    );
    let d_bih = column_sums(&dxp, g3);
    give(dxp);
    dghs.into_iter().for_each(give);
    let mut d_packed = Vec::with_capacity(g3 * (input + hd + 2));
    for j in 0..g3 {
        d_packed.extend_from_slice(&d_wih[j * input..(j + 1) * input]);
        d_packed.push(d_bih[j]);
        d_packed.extend_from_slice(&d_whh[j * hd..(j + 1) * hd]);
        d_packed.push(d_bhh[j]);
    }
    (dx, carry, d_packed)
}

/// BPTT through one block of trials: writes `dxp` `(b, T, 3H)` and `dh0` (into `carry`,
/// `(b, H)`), returns `dgh` time-major `(T·b, 3H)`. Parts of `part` trials run on separate
/// rayon threads, as in [`recur`].
fn bptt(
    block: &Block,
    w_hh: &PackedRhs,
    (d_out, dxp, carry): (&[f32], &mut [f32], &mut [f32]),
    dims: Dims,
    part: usize,
) -> Vec<f32> {
    let simd = Simd::detect();
    let (batch, seq_len, hd) = (dims.batch, dims.seq_len, dims.hidden);
    let (g3, bh) = (3 * hd, batch * hd);
    // Every step's rows are written by its backward pass.
    let mut dgh = take(seq_len * batch * g3);
    {
        let dgh = Disjoint::new(&mut dgh);
        dxp.par_chunks_mut(part * seq_len * g3)
            .zip(carry.par_chunks_mut(part * hd))
            .zip(d_out.par_chunks(part * seq_len * hd))
            .enumerate()
            .for_each(|(i, ((dxp, carry), d_out))| {
                let (r0, rows) = (i * part, carry.len() / hd);
                let dims = Dims {
                    batch: rows,
                    ..dims
                };
                for t in (0..seq_len).rev() {
                    // SAFETY: this part alone writes trials r0..r0 + rows of step t (the
                    // parts' trial ranges are disjoint); the slice ends with the step.
                    let dgh_t = unsafe { dgh.slice_mut((t * batch + r0) * g3, rows * g3) };
                    let g0 = (t * batch + r0) * 4 * hd;
                    let h0 = t * bh + r0 * hd;
                    backward_pass_simd(
                        simd,
                        d_out,
                        &block.gates[g0..g0 + rows * 4 * hd],
                        &block.hs[h0..h0 + rows * hd],
                        carry,
                        dxp,
                        dgh_t,
                        t,
                        dims,
                    );
                    // carry += dgh_t (rows, 3H) · W_hh (3H, H)
                    matmul_packed(carry, dgh_t, w_hh, rows, true);
                }
            });
    }
    dgh
}

/// Runs `f` on the contiguous f32 data of CPU tensors, read in place (no copy); errors
/// name the op and the tensor. Used by the custom ops' backward passes, whose inputs the
/// graph keeps alive.
pub(crate) fn with_cpu_f32<R, const N: usize>(
    op: &str,
    named: [(&str, &Tensor); N],
    f: impl FnOnce([&[f32]; N]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let guards = named.map(|(name, t)| (name, t.storage_and_layout()));
    let mut slices: [&[f32]; N] = [&[]; N];
    for (slot, (name, (storage, layout))) in slices.iter_mut().zip(&guards) {
        let Storage::Cpu(cpu) = &**storage else {
            candle_core::bail!("{op}: {name} is not on the CPU");
        };
        *slot = f32_slice(&format!("{op}: {name}"), cpu, layout)?;
    }
    f(slices)
}

/// What a custom op's forward saved for its backward (the ops are `Sync`, so behind a
/// lock); errors name the op.
#[derive(Debug)]
pub(crate) struct SavedSlot<S>(Mutex<Option<S>>);

impl<S> SavedSlot<S> {
    /// An empty slot.
    pub(crate) fn new() -> Self {
        Self(Mutex::new(None))
    }

    /// Stores the forward's state (replacing an earlier one).
    pub(crate) fn put(&self, op: &str, saved: S) -> candle_core::Result<()> {
        match self.0.lock() {
            Ok(mut slot) => {
                *slot = Some(saved);
                Ok(())
            }
            Err(_) => candle_core::bail!("{op}: saved-state lock poisoned"),
        }
    }

    /// Runs `f` on the stored state; an error when the forward has not run.
    pub(crate) fn with<R>(
        &self,
        op: &str,
        f: impl FnOnce(&S) -> candle_core::Result<R>,
    ) -> candle_core::Result<R> {
        let Ok(slot) = self.0.lock() else {
            candle_core::bail!("{op}: saved-state lock poisoned");
        };
        let Some(saved) = slot.as_ref() else {
            candle_core::bail!("{op}: backward before forward");
        };
        f(saved)
    }
}

/// The custom op; holds the forward's saved state for its backward.
struct GruSeqOp {
    saved: SavedSlot<Saved>,
}

/// A contiguous f32 slice of a CPU storage, or an error naming the argument (`name`
/// carries the op's name).
pub(crate) fn f32_slice<'a>(
    name: &str,
    s: &'a CpuStorage,
    l: &Layout,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("{name} must be f32, got {:?}", s.dtype());
    };
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&v[start..end]),
        None => candle_core::bail!("{name} must be contiguous"),
    }
}

impl CustomOp3 for GruSeqOp {
    fn name(&self) -> &'static str {
        "gru-sequence"
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
        let (batch, seq_len, input) = l1.shape().dims3()?;
        let (g3, width) = l3.shape().dims2()?;
        let hd = g3 / 3;
        if g3 % 3 != 0 || width != input + hd + 2 || l2.shape().dims() != [batch, hd] {
            candle_core::bail!(
                "gru_sequence: x {:?}, h0 {:?}, [W_ih | b_ih | W_hh | b_hh] {:?} do not fit",
                l1.shape(),
                l2.shape(),
                l3.shape()
            );
        }
        let dims = Dims {
            batch,
            seq_len,
            input,
            hidden: hd,
        };
        let (out, saved) = forward(
            f32_slice("gru_sequence: x", s1, l1)?,
            f32_slice("gru_sequence: h0", s2, l2)?,
            f32_slice("gru_sequence: [W_ih | b_ih | W_hh | b_hh]", s3, l3)?,
            dims,
            block_trials(batch),
        );
        self.saved.put("gru_sequence", saved)?;
        Ok((CpuStorage::F32(out), Shape::from((batch, seq_len, hd))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        _h0: &Tensor,
        _packed: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad_res = grad_res.contiguous()?;
        let named = [("x", x), ("grad", &grad_res)];
        with_cpu_f32("gru_sequence", named, |[x, d_out]| {
            self.backward(x, d_out, &grad_res)
        })
    }
}

impl GruSeqOp {
    /// The backward on the input and the output gradient, read in place.
    fn backward(
        &self,
        x: &[f32],
        d_out: &[f32],
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        self.saved.with("gru_sequence", |saved| {
            Self::backward_saved(saved, x, d_out, grad_res)
        })
    }

    /// [`GruSeqOp::backward`] on the forward's saved state.
    fn backward_saved(
        saved: &Saved,
        x: &[f32],
        d_out: &[f32],
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Dims {
            batch,
            seq_len,
            input,
            hidden: hd,
        } = saved.dims;
        if x.len() != batch * seq_len * input || d_out.len() != batch * seq_len * hd {
            candle_core::bail!("gru_sequence: backward inputs do not fit the forward's shape");
        }
        let (dx, dh0, d_packed) = backward(saved, x, d_out);
        let device = grad_res.device();
        Ok((
            Some(Tensor::from_vec(dx, (batch, seq_len, input), device)?),
            Some(Tensor::from_vec(dh0, (batch, hd), device)?),
            Some(Tensor::from_vec(
                d_packed,
                (3 * hd, input + hd + 2),
                device,
            )?),
        ))
    }
}

/// The GRU over a whole sequence as one autograd node (CPU, f32), input projection
/// included.
///
/// # Shapes
/// `x` `(B, T, I)`, `h0` `(B, H)`, `packed = [W_ih | b_ih | W_hh | b_hh]`
/// `(3H, I + 1 + H + 1)` → every hidden state `h_1 … h_T`, `(B, T, H)`. Gradients flow to
/// all three inputs.
///
/// # Errors
/// Candle errors for tensors that are not f32 on the CPU or whose shapes do not fit.
pub(crate) fn gru_sequence(
    x: &Tensor,
    h0: &Tensor,
    packed: &Tensor,
) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op3(
        &h0.contiguous()?,
        &packed.contiguous()?,
        GruSeqOp {
            saved: SavedSlot::new(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::kernels::{test_bits, test_values as values};

    #[test]
    fn blocks_of_trials_give_the_whole_batch_result() {
        let dims = Dims {
            batch: 5,
            seq_len: 9,
            input: 4,
            hidden: 6,
        };
        let (rows, hd) = (dims.batch * dims.seq_len, dims.hidden);
        let x = values(rows * dims.input, 1, 1.0);
        let h0 = values(dims.batch * hd, 2, 0.5);
        let packed = values(3 * hd * (dims.input + hd + 2), 3, 0.4);
        let d_out = values(rows * hd, 4, 1.0);
        let (out_1, saved_1) = forward(&x, &h0, &packed, dims, dims.batch);
        let grads_1 = backward(&saved_1, &x, &d_out);
        for per in [1, 2, 3] {
            let (out, saved) = forward(&x, &h0, &packed, dims, per);
            assert_eq!(saved.blocks.len(), dims.batch.div_ceil(per));
            let grads = backward(&saved, &x, &d_out);
            let close = |a: &[f32], b: &[f32]| {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|(u, v)| (u - v).abs() <= 1e-5 * (1.0 + v.abs()))
            };
            assert!(close(&out, &out_1), "output, {per} per block");
            assert!(close(&grads.0, &grads_1.0), "dx, {per} per block");
            assert!(close(&grads.1, &grads_1.1), "dh0, {per} per block");
            assert!(close(&grads.2, &grads_1.2), "d params, {per} per block");
        }
    }

    /// The forward and backward passes of one step at every instruction-set width this
    /// CPU has give the baseline's bits.
    #[test]
    fn simd_widths_agree_bit_for_bit() {
        let dims = Dims {
            batch: 3,
            seq_len: 2,
            input: 4,
            hidden: 37,
        };
        let (b, hd) = (dims.batch, dims.hidden);
        let rows = b * dims.seq_len;
        let xp = values(rows * 3 * hd, 1, 3.0);
        let gh = values(b * 3 * hd, 2, 3.0);
        let b_hh = values(3 * hd, 3, 0.5);
        let b_ih = values(3 * hd, 7, 0.5);
        let h_prev = values(b * hd, 4, 1.0);
        let d_out = values(rows * hd, 5, 1.0);
        let run = |simd: Simd| {
            let (mut h_next, mut gates) = (vec![0.0; b * hd], vec![0.0; b * 4 * hd]);
            forward_pass_simd(
                simd,
                &xp,
                &gh,
                (&b_ih, &b_hh),
                &h_prev,
                &mut h_next,
                &mut gates,
                1,
                dims,
            );
            let mut carry = values(b * hd, 6, 0.5);
            let (mut dxp, mut dgh) = (vec![0.0; rows * 3 * hd], vec![0.0; b * 3 * hd]);
            backward_pass_simd(
                simd, &d_out, &gates, &h_prev, &mut carry, &mut dxp, &mut dgh, 1, dims,
            );
            [h_next, gates, carry, dxp, dgh].map(|v| test_bits(&v))
        };
        let want = run(Simd::Baseline);
        for simd in Simd::available() {
            assert_eq!(run(simd), want, "{simd:?}");
        }
    }

    /// The recurrence split into parts over 1–4 threads gives the one-thread bits, in
    /// the outputs and in every gradient.
    #[test]
    fn thread_counts_give_the_same_bits() {
        for (batch, hidden) in [(16, 40), (24, 40), (9, 64)] {
            let dims = Dims {
                batch,
                seq_len: 7,
                input: 5,
                hidden,
            };
            let (rows, hd) = (batch * dims.seq_len, hidden);
            let x = values(rows * dims.input, 1, 1.0);
            let h0 = values(batch * hd, 2, 0.5);
            let packed = values(3 * hd * (dims.input + hd + 2), 3, 0.3);
            let d_out = values(rows * hd, 4, 1.0);
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| {
                    let (out, saved) = forward(&x, &h0, &packed, dims, block_trials(batch));
                    let (dx, dh0, dp) = backward(&saved, &x, &d_out);
                    [
                        test_bits(&out),
                        test_bits(&dx),
                        test_bits(&dh0),
                        test_bits(&dp),
                    ]
                })
            };
            let want = run(1);
            for threads in 2..=4 {
                assert_eq!(
                    run(threads),
                    want,
                    "B {batch} H {hidden}, {threads} threads"
                );
            }
        }
    }

    #[test]
    fn parts_keep_the_packed_path() {
        let w = |k: usize, n: usize| PackedRhs::new(&values(k * n, 1, 1.0), false, k, n);
        let (fwd, bwd) = (w(40, 120), w(120, 40));
        if !fwd.packed_path(16) {
            return; // no micro-kernel on this CPU: every product goes to gemm, no parts
        }
        assert_eq!(part_trials(16, 1, &fwd), 16);
        assert_eq!(part_trials(16, 2, &fwd), 8);
        assert_eq!(part_trials(16, 4, &fwd), 4); // 4 · 120 > 256
        assert_eq!(part_trials(16, 4, &bwd), 8); // 4 · 40 and 6 · 40 ≤ 256: two parts
        assert_eq!(part_trials(24, 4, &bwd), 8);
        assert_eq!(part_trials(1, 4, &fwd), 1);
    }

    #[test]
    fn column_sums_are_the_sequential_sums_for_any_thread_count() {
        let (rows, cols) = (3000, 50);
        let m = values(rows * cols, 9, 1.0);
        let mut want = vec![0.0f32; cols];
        for row in m.chunks_exact(cols) {
            for (a, v) in want.iter_mut().zip(row) {
                *a += v;
            }
        }
        let want = test_bits(&want);
        for threads in 1..=4 {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let got = pool.install(|| column_sums(&m, cols));
            assert_eq!(test_bits(&got), want, "{threads} threads");
        }
    }

    /// The fused ReLU backward masks exactly where the output is not positive and sums the
    /// masked columns as a masking pass followed by [`column_sums`], for any thread count.
    #[test]
    fn relu_backward_column_sums_mask_then_sum_for_any_thread_count() {
        let (rows, cols) = (3000, 50);
        let grad = values(rows * cols, 10, 1.0);
        let out: Vec<f32> = values(rows * cols, 11, 1.0)
            .into_iter()
            .map(|v| v.max(0.0))
            .collect();
        let masked: Vec<f32> = grad
            .iter()
            .zip(&out)
            .map(|(g, o)| if *o <= 0.0 { 0.0 } else { *g })
            .collect();
        assert!(masked.iter().filter(|v| **v == 0.0).count() > rows * cols / 4);
        let want = test_bits(&column_sums(&masked, cols));
        for threads in 1..=4 {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut got = grad.clone();
            let sums = pool.install(|| relu_backward_column_sums(&mut got, &out, cols));
            assert_eq!(test_bits(&sums), want, "{threads} threads");
            assert_eq!(test_bits(&got), test_bits(&masked), "{threads} threads");
        }
    }

    #[test]
    fn small_batches_stay_in_one_block() {
        assert_eq!(block_trials(1), 1);
        assert_eq!(block_trials(8), 8);
        assert_eq!(block_trials(MIN_BLOCK_TRIALS - 1), MIN_BLOCK_TRIALS - 1);
    }
}
