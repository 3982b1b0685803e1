//! Row-major f32 matrix products through the `gemm` crate (the kernels candle itself
//! uses), and a plain transpose for weight snapshots.

/// `dst (m, n) = a (m, k) · b (k, n)`, plus `dst` when `accumulate`. `a_t` / `b_t` mean the
/// operand is stored transposed (`a` as `(k, m)`, `b` as `(n, k)`), all row-major.
pub(crate) fn matmul(
    dst: &mut [f32],
    (a, a_t): (&[f32], bool),
    (b, b_t): (&[f32], bool),
    (m, k, n): (usize, usize, usize),
    accumulate: bool,
    parallel: bool,
) {
    let a = if a_t {
        Strided::transposed(a, m)
    } else {
        Strided::rows(a, k)
    };
    let b = if b_t {
        Strided::transposed(b, k)
    } else {
        Strided::rows(b, n)
    };
    let par = if parallel {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // alpha = 1: with `accumulate` the old `dst` is added; otherwise it is not read.
    gemm_call(dst, (a, b), (m, k, n), (accumulate, 1.0), par);
}

/// The one `gemm::gemm` call: row-major `dst (m, n) = alpha·dst + a·b` when `read_dst`,
/// else `a·b` (`dst` not read).
fn gemm_call(
    dst: &mut [f32],
    (a, b): (Strided<'_>, Strided<'_>),
    (m, k, n): (usize, usize, usize),
    (read_dst, alpha): (bool, f32),
    par: gemm::Parallelism,
) {
    // Internal invariant: the callers size the buffers; checked because gemm reads and
    // writes through raw pointers.
    assert!(
        dst.len() >= m * n && a.fits(m, k) && b.fits(k, n),
        "kernel matmul sizes"
    );
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the assert above guarantees that every element addressed by these strides
    // lies inside the slices; `dst` is a distinct mutable borrow, so it aliases neither.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            read_dst,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            alpha,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// A matrix operand as candle's CPU backend hands it to `gemm`: the data and the strides
/// (in elements) between columns and between rows of the logical `(rows, cols)` matrix. A
/// transposed view of a row-major `(r, c)` matrix is `(c, r)` with column stride `c` and
/// row stride 1.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Strided<'a> {
    /// The elements.
    pub(crate) data: &'a [f32],
    /// Step between neighbouring columns.
    pub(crate) col_stride: usize,
    /// Step between neighbouring rows.
    pub(crate) row_stride: usize,
}

impl<'a> Strided<'a> {
    /// A row-major `(rows, cols)` matrix.
    pub(crate) fn rows(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            col_stride: 1,
            row_stride: cols,
        }
    }

    /// The transpose of a row-major `(rows, cols)` matrix, read as `(cols, rows)`.
    pub(crate) fn transposed(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            col_stride: cols,
            row_stride: 1,
        }
    }

    /// Whether every element of a `(rows, cols)` view lies inside the data.
    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0
            || cols == 0
            || (rows - 1) * self.row_stride + (cols - 1) * self.col_stride < self.data.len()
    }
}

/// `dst (m, n) = a (m, k) · b (k, n)` with exactly the `gemm` call of candle's CPU
/// `Tensor::matmul` (candle-core's `cpu_backend` `MatMul`, no `mkl`/`accelerate`): row-major
/// `dst` overwritten, `alpha = 0`, `beta = 1`, and candle's thread count. Given operands
/// with the strides candle would see, the result is bit for bit candle's, which lets a
/// fused kernel reproduce a candle-autograd training run exactly (the `gemm` crate's
/// summation order depends on the sizes and its blocking, not on the thread schedule).
pub(crate) fn matmul_as_candle(
    dst: &mut [f32],
    a: Strided<'_>,
    b: Strided<'_>,
    (m, k, n): (usize, usize, usize),
) {
    if k == 0 {
        // candle returns zeros without calling gemm.
        dst[..m * n].fill(0.0);
        return;
    }
    let threads = candle_core::utils::get_num_threads();
    let par = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    gemm_call(dst, (a, b), (m, k, n), (false, 0.0), par);
}

/// `dst (m, n) = a (m, k) · b (k, n)`, all row-major and contiguous, single-threaded
/// (what the rollout step calls inside one tile of rows).
#[inline]
pub(crate) fn matmul_nn(dst: &mut [f32], a: &[f32], b: &[f32], m: usize, k: usize, n: usize) {
    matmul(dst, (a, false), (b, false), (m, k, n), false, false);
}

/// A weight gradient `gᵀ x` `(m, n)` for `g` `(rows, m)` and `x` `(rows, n)`, row-major,
/// summed over many rows into a narrow result (`n ≪ m`, e.g. the encoder's `(H, I)`).
///
/// Computed as `(xᵀ g)ᵀ`: `gemm` packs the wide operand `g` as its right-hand side, which
/// on 2 cores at `rows = 19 200`, `(m, n) = (128, 19)` takes 0.7 ms against 2.1–2.5 ms for
/// `gᵀ x` directly. The sums are the same: `gemm` accumulates each element as one chain of
/// products over the rows in its depth blocks, which depend on the depth, not on which
/// operand is transposed, and a product's factors commute (a test asserts the bits).
pub(crate) fn weight_gradient_narrow(
    g: &[f32],
    x: &[f32],
    (rows, m, n): (usize, usize, usize),
) -> Vec<f32> {
    let mut t = vec![0.0f32; n * m];
    matmul(&mut t, (x, true), (g, false), (n, rows, m), false, true);
    transpose(&t, n, m)
}

/// Transpose of a row-major `(rows, cols)` matrix: `(cols, rows)`.
pub(crate) fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = m[r * cols + c];
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_matches_naive() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.1).collect();
        let b: Vec<f32> = (0..k * n).map(|i| 1.0 - i as f32 * 0.05).collect();
        let mut d = vec![0.0; m * n];
        matmul_nn(&mut d, &a, &b, m, k, n);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum();
                assert!((d[i * n + j] - want).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn matmul_as_candle_equals_candle_bit_for_bit() {
        use candle_core::{Device, Tensor};
        // A weight-gradient shape: (in, rows) · (rows, out) over more rows than one of
        // gemm's depth blocks, the left operand a transposed view as candle's backward
        // passes it.
        let (rows, input, out) = (1500, 9, 5);
        let x = crate::kernels::test_values(rows * input, 3, 1.0);
        let g = crate::kernels::test_values(rows * out, 4, 1.0);
        let dev = Device::Cpu;
        let xt = Tensor::from_slice(&x, (rows, input), &dev).unwrap();
        let gt = Tensor::from_slice(&g, (rows, out), &dev).unwrap();
        let want = xt.t().unwrap().matmul(&gt).unwrap();
        let want: Vec<u32> = want
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect();
        let mut d = vec![f32::NAN; input * out]; // overwritten, never read
        let (a, b) = (Strided::transposed(&x, input), Strided::rows(&g, out));
        matmul_as_candle(&mut d, a, b, (input, rows, out));
        let got: Vec<u32> = d.iter().map(|v| v.to_bits()).collect();
        assert_eq!(got, want);
    }

    /// The narrow weight gradient is `gᵀ x` as one `gemm` call computes it, bit for bit,
    /// across depths below, at and above `gemm`'s depth blocks.
    #[test]
    fn narrow_weight_gradient_equals_the_direct_product_bit_for_bit() {
        for (rows, m, n) in [(7, 5, 3), (600, 128, 19), (1500, 40, 14), (4800, 128, 19)] {
            let g = crate::kernels::test_values(rows * m, 5, 1.0);
            let x = crate::kernels::test_values(rows * n, 6, 1.0);
            let mut want = vec![0.0f32; m * n];
            matmul(
                &mut want,
                (&g, true),
                (&x, false),
                (m, rows, n),
                false,
                true,
            );
            let got = weight_gradient_narrow(&g, &x, (rows, m, n));
            assert_eq!(
                crate::kernels::test_bits(&got),
                crate::kernels::test_bits(&want),
                "rows {rows}, ({m}, {n})"
            );
        }
    }

    #[test]
    fn transpose_round_trips() {
        let m: Vec<f32> = (0..6).map(|v| v as f32).collect();
        let t = transpose(&m, 2, 3);
        assert_eq!(t, vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert_eq!(transpose(&t, 3, 2), m);
    }
}
