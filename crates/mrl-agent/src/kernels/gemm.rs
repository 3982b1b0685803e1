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
    // Internal invariant: the callers size the buffers; checked because gemm reads and
    // writes through raw pointers.
    assert!(
        dst.len() >= m * n && a.len() >= m * k && b.len() >= k * n,
        "gru_seq matmul sizes"
    );
    if m == 0 || n == 0 {
        return;
    }
    let (a_cs, a_rs) = if a_t { (m, 1) } else { (1, k) };
    let (b_cs, b_rs) = if b_t { (k, 1) } else { (1, n) };
    let par = if parallel {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
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
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// `dst (m, n) = a (m, k) · b (k, n)`, all row-major and contiguous, single-threaded
/// (what the rollout step calls inside one tile of rows).
#[inline]
pub(crate) fn matmul_nn(dst: &mut [f32], a: &[f32], b: &[f32], m: usize, k: usize, n: usize) {
    matmul(dst, (a, false), (b, false), (m, k, n), false, false);
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
    fn transpose_round_trips() {
        let m: Vec<f32> = (0..6).map(|v| v as f32).collect();
        let t = transpose(&m, 2, 3);
        assert_eq!(t, vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert_eq!(transpose(&t, 3, 2), m);
    }
}
