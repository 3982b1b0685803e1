//! Rolling window sums and moments in O(1) per step, with bounded floating-point error.
//!
//! Adding the new value and subtracting the one that leaves the window is O(1), but the
//! rounding error of a running sum is about `ε · mass`, where `mass` is the total size of
//! everything added and subtracted since the sum was last computed exactly. That error is
//! harmless while the sum is large, and ruinous when a large value leaves the window and a
//! small sum remains (a price jump followed by a calm stretch: the variance of the calm
//! window would be swamped by the residue of the jump's square). Both accumulators therefore
//! track their `mass` and re-sum the window exactly (O(W)) as soon as
//! `mass > ERROR_BUDGET · |value|`, which keeps the relative error below about
//! `ERROR_BUDGET · ε ≈ 1e-12` at every step. On market data that happens after a jump has
//! left the window and otherwise about once per `ERROR_BUDGET · W / 2` bars, so the cost
//! stays O(1) per bar (worst case O(W) for adversarial series whose variance keeps
//! collapsing).
//!
//! Moments are kept as sums of `x − K` for a shift `K` chosen at each re-sum as the window
//! value nearest the window mean. That keeps `Σ(x−K)² − (Σ(x−K))²/W` free of catastrophic
//! cancellation when the mean is far from 0 (prices of 1e5 with a window std of 1e-2), and
//! makes a constant window exactly zero-variance.

/// Re-sum when the mass of updates exceeds this multiple of the tracked value.
pub(crate) const ERROR_BUDGET: f64 = 4096.0;

/// Sum over the last `W` pushed non-negative values, missing values counting as 0 (so before
/// `W` pushes `sum / W` is the partial mean of `np.convolve(x, ones(W)/W, 'full')[:n]`).
///
/// It also counts the non-zero values in the window, so a window of zeros has a sum of
/// exactly 0 (never a rounding residue): the RSI's `avg_loss == 0` branch and the
/// `vol_ratio` denominator depend on that.
#[derive(Debug, Clone)]
pub(crate) struct RollingSum<const W: usize> {
    buf: [f64; W],
    head: usize,
    sum: f64,
    mass: f64,
    nonzero: usize,
}

impl<const W: usize> RollingSum<W> {
    pub(crate) fn new() -> Self {
        Self {
            buf: [0.0; W],
            head: 0,
            sum: 0.0,
            mass: 0.0,
            nonzero: 0,
        }
    }

    /// Pushes `x ≥ 0`, dropping the value pushed `W` calls ago.
    pub(crate) fn push(&mut self, x: f64) {
        let old = std::mem::replace(&mut self.buf[self.head], x);
        self.head = if self.head + 1 == W { 0 } else { self.head + 1 };
        self.nonzero = self.nonzero + usize::from(x != 0.0) - usize::from(old != 0.0);
        self.sum += x - old;
        self.mass += x + old;
        if self.nonzero == 0 {
            self.sum = 0.0;
            self.mass = 0.0;
        } else if self.mass > ERROR_BUDGET * self.sum {
            self.sum = self.buf.iter().sum();
            self.mass = self.sum;
        }
    }

    /// Sum of the window; exactly 0 when every value in it is 0.
    pub(crate) fn sum(&self) -> f64 {
        self.sum
    }

    /// True when every value in the window is 0.
    pub(crate) fn all_zero(&self) -> bool {
        self.nonzero == 0
    }
}

/// Mean and population variance (ddof 0) of the last `W` pushed values.
///
/// Only meaningful once `W` values were pushed (the features that use it are 0 before).
/// Keeps `s1 = Σ (x − K)` and `s2 = Σ (x − K)²`; mean `= K + s1/W`,
/// variance `= max(s2/W − (s1/W)², 0)`.
#[derive(Debug, Clone)]
pub(crate) struct RollingMoments<const W: usize> {
    buf: [f64; W],
    head: usize,
    len: usize,
    shift: f64,
    s1: f64,
    s2: f64,
    mass: f64,
}

impl<const W: usize> RollingMoments<W> {
    pub(crate) fn new() -> Self {
        Self {
            buf: [0.0; W],
            head: 0,
            len: 0,
            shift: 0.0,
            s1: 0.0,
            s2: 0.0,
            mass: 0.0,
        }
    }

    /// Pushes `x`, dropping the value pushed `W` calls ago.
    pub(crate) fn push(&mut self, x: f64) {
        if self.len == 0 {
            self.shift = x;
        }
        let old = std::mem::replace(&mut self.buf[self.head], x);
        self.head = if self.head + 1 == W { 0 } else { self.head + 1 };
        let d_new = x - self.shift;
        if self.len < W {
            self.len += 1;
            self.s1 += d_new;
            self.s2 += d_new * d_new;
            self.mass += d_new * d_new;
            return;
        }
        let d_old = old - self.shift;
        self.s1 += d_new - d_old;
        self.s2 += (d_new - d_old) * (d_new + d_old);
        self.mass += d_new * d_new + d_old * d_old;
        // `centred` without its division (this runs every bar; the threshold needs no
        // exact rounding).
        let centred = self.s2 - self.s1 * self.s1 * (1.0 / W as f64);
        if self.mass > ERROR_BUDGET * centred {
            self.resum();
        }
    }

    /// `Σ (x − mean)² = s2 − s1²/W`, W times the variance.
    fn centred(&self) -> f64 {
        self.s2 - self.s1 * self.s1 / W as f64
    }

    /// Re-centres on the window value nearest its mean and recomputes both sums exactly.
    fn resum(&mut self) {
        let mean = self.buf.iter().sum::<f64>() / W as f64;
        let shift = self
            .buf
            .iter()
            .copied()
            .min_by(|a, b| (a - mean).abs().total_cmp(&(b - mean).abs()))
            .unwrap_or(mean);
        let (mut s1, mut s2) = (0.0, 0.0);
        for &v in &self.buf {
            let d = v - shift;
            s1 += d;
            s2 += d * d;
        }
        self.shift = shift;
        self.s1 = s1;
        self.s2 = s2;
        self.mass = s2;
    }

    /// `(mean, std_ddof0)` of the window.
    pub(crate) fn mean_std(&self) -> (f64, f64) {
        let w = W as f64;
        let var = (self.centred() / w).max(0.0);
        (self.shift + self.s1 / w, var.sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_mean_std(window: &[f64]) -> (f64, f64) {
        let n = window.len() as f64;
        let mean = window.iter().sum::<f64>() / n;
        let var = window.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        (mean, var.sqrt())
    }

    #[test]
    fn rolling_sum_is_zero_padded_and_exact_on_zero_windows() {
        let mut rs = RollingSum::<3>::new();
        let xs = [1.0, 2.0, 0.1, 0.2, 0.0, 0.0, 0.0, 5.0];
        for (i, &x) in xs.iter().enumerate() {
            rs.push(x);
            let lo = i.saturating_sub(2);
            let expected: f64 = xs[lo..=i].iter().sum();
            assert!((rs.sum() - expected).abs() < 1e-15, "step {i}");
            assert_eq!(rs.all_zero(), expected == 0.0);
        }
        // After 0.1 + 0.2 left the window the sum is exactly 0, not a residue.
        let mut rs = RollingSum::<2>::new();
        for x in [0.1, 0.2, 0.0, 0.0] {
            rs.push(x);
        }
        assert_eq!(rs.sum(), 0.0);
    }

    #[test]
    fn moments_of_a_constant_window_are_exact() {
        let mut m = RollingMoments::<4>::new();
        for _ in 0..200 {
            m.push(0.1 * 3.0);
            let (mean, std) = m.mean_std();
            assert_eq!(mean, 0.1 * 3.0);
            assert_eq!(std, 0.0);
        }
    }

    #[test]
    fn moments_track_a_direct_computation() {
        let xs: Vec<f64> = (0..5000)
            .map(|i| 1e5 + 1e3 * (i as f64 * 0.01).sin() + 0.01 * (i as f64 * 1.7).cos())
            .collect();
        let mut m = RollingMoments::<20>::new();
        for (i, &x) in xs.iter().enumerate() {
            m.push(x);
            if i >= 19 {
                let (mean, std) = m.mean_std();
                let (e_mean, e_std) = naive_mean_std(&xs[i - 19..=i]);
                assert!((mean - e_mean).abs() <= 1e-9 * e_mean, "mean at {i}");
                assert!(
                    (std - e_std).abs() <= 1e-6 * e_std,
                    "std at {i}: {std} vs {e_std}"
                );
            }
        }
    }
}
