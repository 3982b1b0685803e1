//! Matrix products with few rows against a right operand packed once and reused.
//!
//! The GRU's per-step products (`h_{t−1}·W_hhᵀ` in the forward, `dgh_t·W_hh` in BPTT, the
//! rollout step's three products per tile) multiply a handful of rows by the same weight
//! matrix hundreds of times. The `gemm` crate packs its operands again on every call: at
//! `B = 16`, `H = 128` that re-reads and re-writes all of `W_hh` (192 KiB) for 0.8 M
//! multiply-adds, and each call allocates its packing buffer. [`PackedRhs`] packs the
//! weight once, into column panels, and [`matmul_packed`] runs a register-blocked
//! micro-kernel (AVX-512 or AVX2 + FMA, chosen at run time) over them.
//!
//! **Bit-exact with `gemm`.** For a depth `k ≤ 512` the `gemm` crate (0.19, the general
//! path of `gemm-common`'s `gemm_basic_generic`) computes every output element as one
//! chain of fused multiply-adds over `p = 0, 1, …, k − 1`, starting from zero, and then
//! stores it (`dst = acc`) or adds it to the destination (`dst = dst + acc`): its depth
//! block is `kc = k` up to 512 and its tiling only decides which elements are computed
//! together. The micro-kernels here keep exactly that chain per element, so the results
//! are the same bits and training runs stay identical. Where `gemm` takes another path —
//! one row or one column (its `gemv`), `m·n ≤ 256` (its horizontal kernel), depth ≤ 2 or
//! above 512 — or the CPU has neither AVX-512 nor AVX2 + FMA, [`matmul_packed`] calls
//! `gemm` itself with the operand as the caller stored it. The tests assert equality
//! with `gemm` on the f32 bits.

use super::fused::Simd;
use super::gemm::matmul;

/// Deepest product computed by the micro-kernels (`gemm`'s depth block for small sizes).
const MAX_DEPTH: usize = 512;

/// A right operand `B (k, n)` packed into column panels of `width` columns (a multiple of
/// 16): panel `j` holds `B[p, j·width + c]` at `(p·width + c)`, zero-padded past column
/// `n`. The operand as the caller stored it is kept for the products that go to `gemm`.
#[derive(Clone, Debug)]
pub(crate) struct PackedRhs {
    k: usize,
    n: usize,
    width: usize,
    panels: Vec<f32>,
    /// The operand as given: row-major `(k, n)`, or `(n, k)` when `transposed`.
    plain: Vec<f32>,
    transposed: bool,
    isa: Simd,
}

impl PackedRhs {
    /// Packs `B (k, n)` given row-major as `(k, n)`, or as its transpose `(n, k)` when
    /// `transposed` (a weight stored `(out, in)` used as `x·Wᵀ`).
    ///
    /// # Panics
    /// When `b` does not hold `k·n` values (an internal invariant of the kernels' callers).
    pub(crate) fn new(b: &[f32], transposed: bool, k: usize, n: usize) -> Self {
        Self::with_isa(b, transposed, k, n, Simd::detect())
    }

    /// [`PackedRhs::new`] for the micro-kernels of `isa` (which the CPU must support;
    /// `Baseline` has none and sends every product to `gemm`).
    fn with_isa(b: &[f32], transposed: bool, k: usize, n: usize, isa: Simd) -> Self {
        assert_eq!(b.len(), k * n, "packed operand size");
        let width = panel_width(n);
        let mut panels = Vec::new();
        if isa != Simd::Baseline && (3..=MAX_DEPTH).contains(&k) {
            let n_panels = n.div_ceil(width);
            panels = vec![0.0; n_panels * k * width];
            for (j, panel) in panels.chunks_exact_mut(k * width).enumerate() {
                for (p, row) in panel.chunks_exact_mut(width).enumerate() {
                    for (c, v) in row.iter_mut().enumerate() {
                        let col = j * width + c;
                        if col < n {
                            *v = if transposed {
                                b[col * k + p]
                            } else {
                                b[p * n + col]
                            };
                        }
                    }
                }
            }
        }
        Self {
            k,
            n,
            width,
            panels,
            plain: b.to_vec(),
            transposed,
            isa,
        }
    }

    /// Whether a product with `m` rows runs on the micro-kernels (else on `gemm`, which
    /// takes another summation order there; see the module docs).
    pub(crate) fn packed_path(&self, m: usize) -> bool {
        !self.panels.is_empty() && m >= 2 && self.n >= 2 && m * self.n > 256
    }
}

/// Panel width for `n` columns: 48 or 32 when either divides `n` (no padding), 16 for
/// narrow operands, else 48.
fn panel_width(n: usize) -> usize {
    if n.is_multiple_of(48) {
        48
    } else if n.is_multiple_of(32) {
        32
    } else if n <= 16 {
        16
    } else {
        48
    }
}

/// `dst (m, n) = a (m, k) · B`, or `dst + a · B` when `accumulate`; all row-major and
/// contiguous, single-threaded. Bit for bit the `gemm` crate's result (module docs).
///
/// # Panics
/// When the slices are shorter than the shapes (an internal invariant of the callers).
pub(crate) fn matmul_packed(
    dst: &mut [f32],
    a: &[f32],
    rhs: &PackedRhs,
    m: usize,
    accumulate: bool,
) {
    let (k, n) = (rhs.k, rhs.n);
    assert!(
        a.len() >= m * k && dst.len() >= m * n,
        "packed matmul sizes"
    );
    match rhs.isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Simd::Avx2` is only detected with AVX2 and FMA present; the sizes were
        // checked above and the panels hold `n_panels·k·width` values by construction.
        Simd::Avx2 if rhs.packed_path(m) => unsafe {
            x86::product_avx2(dst, a, rhs, m, accumulate);
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Simd::Avx512` is only detected with AVX-512F present; sizes as above.
        Simd::Avx512 if rhs.packed_path(m) => unsafe {
            x86::product_avx512(dst, a, rhs, m, accumulate);
        },
        _ => matmul(
            dst,
            (a, false),
            (&rhs.plain, rhs.transposed),
            (m, k, n),
            accumulate,
            false,
        ),
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The micro-kernels. Each keeps an `MR × (lanes·NV)` block of accumulators in
    //! registers and runs the depth loop `p = 0 … k − 1` in order, one fused
    //! multiply-add per element and step (the `gemm` crate's chain).

    use std::arch::x86_64::*;

    use super::PackedRhs;

    /// Rows per AVX-512 tile: 8 rows × 3 vectors of 16 keep 24 of the 32 `zmm` registers as
    /// accumulators.
    const MR_512: usize = 8;

    /// Rows per AVX2 tile: 6 rows × 2 vectors of 8 keep 12 of the 16 `ymm` registers as
    /// accumulators.
    const MR_256: usize = 6;

    /// Columns per AVX2 micro-tile (two `ymm` vectors).
    const NR_256: usize = 16;

    /// Where one tile reads and writes: `a` rows (stride `lda`), a panel (stride `width`
    /// per depth step), `dst` rows (stride `ldd`), `cols` valid columns.
    #[derive(Clone, Copy)]
    struct Tile {
        k: usize,
        a: *const f32,
        lda: usize,
        panel: *const f32,
        width: usize,
        dst: *mut f32,
        ldd: usize,
        cols: usize,
        accumulate: bool,
    }

    /// # Safety
    /// AVX-512F present; `t` addresses `MR` rows of `a` (`k` each), `k·width` panel values
    /// with `width ≥ 16·NV`, and `MR` rows of `dst` with `t.cols ≤ 16·NV` columns.
    #[target_feature(enable = "avx512f")]
    unsafe fn tile512<const MR: usize, const NV: usize>(t: Tile) {
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        for p in 0..t.k {
            // SAFETY: p < k, so the panel row and the `a` elements are in bounds (caller).
            unsafe {
                let w = t.panel.add(p * t.width);
                let mut b = [_mm512_setzero_ps(); NV];
                for (v, bv) in b.iter_mut().enumerate() {
                    *bv = _mm512_loadu_ps(w.add(16 * v));
                }
                for (i, row) in acc.iter_mut().enumerate() {
                    let ai = _mm512_set1_ps(*t.a.add(i * t.lda + p));
                    for (acc_v, bv) in row.iter_mut().zip(&b) {
                        *acc_v = _mm512_fmadd_ps(ai, *bv, *acc_v);
                    }
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            for (v, acc_v) in row.iter().enumerate() {
                let c0 = 16 * v;
                if c0 >= t.cols {
                    break;
                }
                let left = t.cols - c0;
                let mask: __mmask16 = if left >= 16 {
                    0xffff
                } else {
                    (1u16 << left) - 1
                };
                // SAFETY: the masked lanes are the valid columns of row i (caller).
                unsafe {
                    let d = t.dst.add(i * t.ldd + c0);
                    let r = if t.accumulate {
                        _mm512_add_ps(_mm512_maskz_loadu_ps(mask, d), *acc_v)
                    } else {
                        *acc_v
                    };
                    _mm512_mask_storeu_ps(d, mask, r);
                }
            }
        }
    }

    /// # Safety
    /// AVX2 and FMA present; `t` addresses `MR` rows of `a`, `k·width` panel values with
    /// `width ≥ 8·NV`, and `MR` rows of `dst` with `t.cols ≤ 8·NV` columns.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile256<const MR: usize, const NV: usize>(t: Tile) {
        let mut acc = [[_mm256_setzero_ps(); NV]; MR];
        for p in 0..t.k {
            // SAFETY: p < k, so the panel row and the `a` elements are in bounds (caller).
            unsafe {
                let w = t.panel.add(p * t.width);
                let mut b = [_mm256_setzero_ps(); NV];
                for (v, bv) in b.iter_mut().enumerate() {
                    *bv = _mm256_loadu_ps(w.add(8 * v));
                }
                for (i, row) in acc.iter_mut().enumerate() {
                    let ai = _mm256_set1_ps(*t.a.add(i * t.lda + p));
                    for (acc_v, bv) in row.iter_mut().zip(&b) {
                        *acc_v = _mm256_fmadd_ps(ai, *bv, *acc_v);
                    }
                }
            }
        }
        let mut lanes = [0.0f32; 8];
        for (i, row) in acc.iter().enumerate() {
            for (v, acc_v) in row.iter().enumerate() {
                let c0 = 8 * v;
                if c0 >= t.cols {
                    break;
                }
                let cols = (t.cols - c0).min(8);
                // SAFETY: `cols` valid columns of row i (caller); `lanes` holds 8.
                unsafe {
                    let d = t.dst.add(i * t.ldd + c0);
                    if cols == 8 {
                        let r = if t.accumulate {
                            _mm256_add_ps(_mm256_loadu_ps(d), *acc_v)
                        } else {
                            *acc_v
                        };
                        _mm256_storeu_ps(d, r);
                    } else {
                        _mm256_storeu_ps(lanes.as_mut_ptr(), *acc_v);
                        for (c, lane) in lanes.iter().take(cols).enumerate() {
                            let out = d.add(c);
                            *out = if t.accumulate { *out + lane } else { *lane };
                        }
                    }
                }
            }
        }
    }

    /// Runs `tile::<R, NV>` for `rows` (1 ≤ rows ≤ 8) rows.
    macro_rules! by_rows {
        ($tile:ident, $nv:literal, $rows:expr, $t:expr) => {
            match $rows {
                1 => $tile::<1, $nv>($t),
                2 => $tile::<2, $nv>($t),
                3 => $tile::<3, $nv>($t),
                4 => $tile::<4, $nv>($t),
                5 => $tile::<5, $nv>($t),
                6 => $tile::<6, $nv>($t),
                7 => $tile::<7, $nv>($t),
                _ => $tile::<8, $nv>($t),
            }
        };
    }

    /// The product over all panels and row tiles with AVX-512.
    ///
    /// # Safety
    /// AVX-512F present; `a` holds `m·k`, `dst` `m·n` values; `rhs` has panels.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn product_avx512(
        dst: &mut [f32],
        a: &[f32],
        rhs: &PackedRhs,
        m: usize,
        accumulate: bool,
    ) {
        let (k, n, width) = (rhs.k, rhs.n, rhs.width);
        for (j, panel) in rhs.panels.chunks_exact(k * width).enumerate() {
            let c0 = j * width;
            let mut r0 = 0;
            while r0 < m {
                let rows = MR_512.min(m - r0);
                let t = Tile {
                    k,
                    // In bounds: r0 < m and c0 < n, inside the checked sizes.
                    a: a.as_ptr().wrapping_add(r0 * k),
                    lda: k,
                    panel: panel.as_ptr(),
                    width,
                    dst: dst.as_mut_ptr().wrapping_add(r0 * n + c0),
                    ldd: n,
                    cols: (n - c0).min(width),
                    accumulate,
                };
                // SAFETY: `rows` rows from r0 and `cols` columns from c0 lie inside the
                // operands; the panel holds k·width values, width = 16·NV.
                unsafe {
                    match width {
                        48 => by_rows!(tile512, 3, rows, t),
                        32 => by_rows!(tile512, 2, rows, t),
                        _ => by_rows!(tile512, 1, rows, t),
                    }
                }
                r0 += rows;
            }
        }
    }

    /// The product over all panels and row tiles with AVX2 + FMA, in micro-tiles of
    /// [`NR_256`] columns.
    ///
    /// # Safety
    /// AVX2 and FMA present; `a` holds `m·k`, `dst` `m·n` values; `rhs` has panels.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn product_avx2(
        dst: &mut [f32],
        a: &[f32],
        rhs: &PackedRhs,
        m: usize,
        accumulate: bool,
    ) {
        let (k, n, width) = (rhs.k, rhs.n, rhs.width);
        for (j, panel) in rhs.panels.chunks_exact(k * width).enumerate() {
            let mut sub = 0;
            while sub < width && j * width + sub < n {
                let c0 = j * width + sub;
                let mut r0 = 0;
                while r0 < m {
                    let rows = MR_256.min(m - r0);
                    let t = Tile {
                        k,
                        // In bounds: r0 < m, c0 < n and sub < width.
                        a: a.as_ptr().wrapping_add(r0 * k),
                        lda: k,
                        panel: panel.as_ptr().wrapping_add(sub),
                        width,
                        dst: dst.as_mut_ptr().wrapping_add(r0 * n + c0),
                        ldd: n,
                        cols: (n - c0).min(NR_256),
                        accumulate,
                    };
                    // SAFETY: `rows` rows and `cols` columns inside the operands; the
                    // panel row from `sub` holds NR_256 = 8·2 values.
                    unsafe { by_rows!(tile256, 2, rows, t) };
                    r0 += rows;
                }
                sub += NR_256;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{test_bits as bits, test_values as values};

    /// The packed product against the `gemm` call it replaces, on the f32 bits, for every
    /// instruction set of this CPU, both storage orders of the operand and with and without
    /// accumulation.
    fn check(m: usize, k: usize, n: usize) {
        let a = values(m * k, 11, 1.0);
        let b = values(k * n, 12, 0.3);
        let bt = super::super::gemm::transpose(&b, k, n);
        let start = values(m * n, 13, 2.0);
        for (isa, (operand, transposed)) in Simd::available()
            .into_iter()
            .flat_map(|isa| [(isa, (&b, false)), (isa, (&bt, true))])
        {
            let rhs = PackedRhs::with_isa(operand, transposed, k, n, isa);
            for accumulate in [false, true] {
                let mut want = start.clone();
                matmul(
                    &mut want,
                    (&a, false),
                    (operand, transposed),
                    (m, k, n),
                    accumulate,
                    false,
                );
                let mut got = start.clone();
                matmul_packed(&mut got, &a, &rhs, m, accumulate);
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "{isa:?}: m {m} k {k} n {n} transposed {transposed} accumulate {accumulate}"
                );
            }
        }
    }

    #[test]
    fn gru_shapes_equal_gemm_bit_for_bit() {
        // The per-step products of the update and the rollout at H = 128 and H = 64.
        for m in [1, 2, 5, 8, 9, 16, 17, 64] {
            check(m, 128, 384);
            check(m, 384, 128);
            check(m, 64, 192);
            check(m, 192, 64);
        }
    }

    #[test]
    fn ragged_shapes_equal_gemm_bit_for_bit() {
        // Panels with padding, narrow operands, depths at gemm's limits.
        for (m, k, n) in [
            (3, 3, 100),
            (7, 512, 50),
            (4, 513, 80),
            (2, 2, 300),
            (13, 17, 20),
            (6, 40, 16),
            (30, 9, 7),
            (5, 33, 1),
        ] {
            check(m, k, n);
        }
    }
}
