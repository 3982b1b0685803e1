//! Seeded weight initialisation matching PyTorch's default distributions.
//!
//! candle's CPU RNG cannot be seeded, so every weight is drawn from our own
//! [`ChaCha8Rng`]: same seed → bitwise the same weights, on every machine.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// One f32 uniform on `[0, 1)` with 24 random bits: `u = (x >> 8) · 2⁻²⁴`, `x` a `u32` draw.
#[inline]
pub(crate) fn unit_f32(rng: &mut ChaCha8Rng) -> f32 {
    (rng.next_u32() >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// `n` draws of `U(−bound, bound)`: `w = bound · (2u − 1)`, `u` from [`unit_f32`].
pub(crate) fn uniform(rng: &mut ChaCha8Rng, n: usize, bound: f32) -> Vec<f32> {
    (0..n)
        .map(|_| bound * (2.0 * unit_f32(rng) - 1.0))
        .collect()
}

/// PyTorch's default bound for a layer with `fan_in` inputs: `1/√fan_in`.
///
/// `nn.Linear` weights use `kaiming_uniform_(a = √5)`, whose bound
/// `√6 / √((1 + a²) · fan_in)` reduces to `1/√fan_in`; biases use the same bound.
/// `nn.GRU` draws every parameter from `U(−1/√H, 1/√H)`, i.e. `fan_in = H`.
pub(crate) fn torch_bound(fan_in: usize) -> f32 {
    1.0 / (fan_in.max(1) as f32).sqrt()
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn same_seed_same_bits_and_within_bounds() {
        let a = uniform(&mut ChaCha8Rng::seed_from_u64(7), 1000, 0.25);
        let b = uniform(&mut ChaCha8Rng::seed_from_u64(7), 1000, 0.25);
        assert_eq!(
            a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        assert!(a.iter().all(|v| (-0.25..0.25).contains(v)));
        let mean = a.iter().sum::<f32>() / 1000.0;
        // U(-b, b) has std b/√3 ≈ 0.144; the mean of 1000 draws is within 4.5e-3 · 4.
        assert!(mean.abs() < 0.02, "mean {mean}");
        let c = uniform(&mut ChaCha8Rng::seed_from_u64(8), 1000, 0.25);
        assert_ne!(a, c);
    }

    #[test]
    fn torch_bound_is_inverse_sqrt_fan_in() {
        assert_eq!(torch_bound(16), 0.25);
        assert!((torch_bound(128) - 0.088_388_35).abs() < 1e-7);
    }
}
