//! Categorical action sampling from logits with a caller-provided [`ChaCha8Rng`], and the
//! greedy (argmax) choice. Both return the action's log-probability.

use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::init::unit_f32;
use crate::kernels::math::softmax_row;

/// Inverse-CDF draw from normalised probabilities: the first `a` with `u < Σ_{i≤a} pᵢ`,
/// `u ~ U[0, 1)` from one `u32` of `rng` (the last action when rounding leaves `u` above
/// the total).
#[inline]
pub(crate) fn draw(probs: &[f32], rng: &mut ChaCha8Rng) -> usize {
    let u = unit_f32(rng);
    let mut cum = 0.0f32;
    for (a, &p) in probs.iter().enumerate() {
        cum += p;
        if u < cum {
            return a;
        }
    }
    probs.len().saturating_sub(1)
}

/// First index of the largest logit.
#[inline]
pub(crate) fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (a, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = a;
        }
    }
    best
}

/// Samples an action from `softmax(logits)` with one `u32` draw of `rng`; returns the
/// action and `log π(a) = l_a − logsumexp(l)`.
///
/// # Errors
/// [`Error::NonFiniteLogits`] (trial 0) when a logit is NaN or infinite.
pub fn sample_action(logits: &[f32], rng: &mut ChaCha8Rng) -> Result<(usize, f32)> {
    let (probs, lse) = checked_softmax(logits)?;
    let a = draw(&probs, rng);
    Ok((a, logits[a] - lse))
}

/// The most probable action (first on ties) and its log-probability.
///
/// # Errors
/// [`Error::NonFiniteLogits`] (trial 0) when a logit is NaN or infinite.
pub fn greedy_action(logits: &[f32]) -> Result<(usize, f32)> {
    let (_, lse) = checked_softmax(logits)?;
    let a = argmax(logits);
    Ok((a, logits[a] - lse))
}

/// Probabilities and log-sum-exp of one row, or [`Error::NonFiniteLogits`] (trial 0).
fn checked_softmax(logits: &[f32]) -> Result<(Vec<f32>, f32)> {
    let mut probs = vec![0.0f32; logits.len()];
    let lse = softmax_row(logits, &mut probs);
    if lse.is_finite() {
        Ok((probs, lse))
    } else {
        Err(Error::NonFiniteLogits {
            trial: 0,
            logits: logits.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn empirical_frequencies_match_softmax() {
        let logits = [0.5f32, -1.0, 1.5];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut counts = [0usize; 3];
        let n = 60_000;
        for _ in 0..n {
            let (a, lp) = sample_action(&logits, &mut rng).unwrap();
            counts[a] += 1;
            let mut p = [0.0; 3];
            let lse = softmax_row(&logits, &mut p);
            assert!((lp - (logits[a] - lse)).abs() < 1e-6);
        }
        let mut p = [0.0f32; 3];
        softmax_row(&logits, &mut p);
        for a in 0..3 {
            let f = counts[a] as f32 / n as f32;
            // binomial std ≤ 0.5/√60000 ≈ 0.002; allow 5 std
            assert!((f - p[a]).abs() < 0.01, "action {a}: {f} vs {}", p[a]);
        }
    }

    #[test]
    fn greedy_is_argmax_with_its_log_prob() {
        let (a, lp) = greedy_action(&[0.0, 2.0, 2.0]).unwrap();
        assert_eq!(a, 1);
        let expected = 2.0 - (1.0f32 + 2.0 * 2f32.exp()).ln();
        assert!((lp - expected).abs() < 1e-6);
    }

    #[test]
    fn non_finite_logits_are_an_error() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        assert!(matches!(
            sample_action(&[0.0, f32::NAN], &mut rng),
            Err(Error::NonFiniteLogits { .. })
        ));
        assert!(greedy_action(&[f32::INFINITY, 0.0]).is_err());
    }
}
