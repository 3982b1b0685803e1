//! Choosing the next token from logits: greedy and seeded nucleus (top-p) sampling.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use crate::backend::Sampling;

/// The index of the largest logit; the lowest index on ties. NaN logits are never chosen
/// unless every logit is NaN (then 0).
///
/// # Shapes
/// `logits`: `[vocab]`.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    let mut best_value = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > best_value {
            best = i;
            best_value = v;
        }
    }
    best as u32
}

/// The nucleus of a distribution: the most likely tokens, in decreasing probability (ties by
/// id), whose probabilities first reach `top_p`, with their probabilities renormalised to
/// sum to 1.
///
/// `p_i = softmax(logits / temperature)_i`, computed in f64 with the maximum subtracted
/// (Holtzman et al. 2020, "The Curious Case of Neural Text Degeneration", section 3.1).
/// `temperature > 0` and `top_p` in (0, 1] are the caller's to check
/// ([`GenerateConfig::validate`](crate::GenerateConfig::validate)).
pub fn nucleus(logits: &[f32], temperature: f64, top_p: f64) -> Vec<(u32, f64)> {
    let max = logits
        .iter()
        .copied()
        .filter(|v| !v.is_nan())
        .fold(f32::NEG_INFINITY, f32::max) as f64;
    if !max.is_finite() {
        return vec![(argmax(logits), 1.0)];
    }
    let mut probs: Vec<(u32, f64)> = logits
        .iter()
        .enumerate()
        .filter(|(_, v)| !v.is_nan())
        .map(|(i, &v)| (i as u32, ((v as f64 - max) / temperature).exp()))
        .collect();
    let total: f64 = probs.iter().map(|(_, p)| p).sum();
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut kept = 0.0;
    let mut n_kept = 0;
    for (_, p) in &probs {
        kept += p / total;
        n_kept += 1;
        if kept >= top_p {
            break;
        }
    }
    probs.truncate(n_kept.max(1));
    let mass: f64 = probs.iter().map(|(_, p)| p).sum();
    for (_, p) in &mut probs {
        *p /= mass;
    }
    probs
}

/// The next token under `sampling`, drawing (for top-p) one uniform number from `rng`.
///
/// # Shapes
/// `logits`: `[vocab]`.
pub fn sample(logits: &[f32], sampling: &Sampling, rng: &mut ChaCha8Rng) -> u32 {
    match *sampling {
        Sampling::Greedy => argmax(logits),
        Sampling::TopP { temperature, top_p } => {
            let nucleus = nucleus(logits, temperature, top_p);
            let u: f64 = rng.random();
            let mut acc = 0.0;
            for &(id, p) in &nucleus {
                acc += p;
                if u < acc {
                    return id;
                }
            }
            // Rounding left the cumulative sum a hair under 1: the last kept token.
            nucleus.last().map_or(0, |&(id, _)| id)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    #[test]
    fn argmax_takes_the_first_of_ties_and_skips_nan() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 0.5, 0.25]), 1);
        assert_eq!(argmax(&[]), 0);
    }

    #[test]
    fn nucleus_keeps_the_smallest_set_reaching_top_p() {
        // softmax(ln [0.5, 0.3, 0.15, 0.05]) = [0.5, 0.3, 0.15, 0.05].
        let logits: Vec<f32> = [0.5f32, 0.3, 0.15, 0.05].iter().map(|p| p.ln()).collect();
        let kept = nucleus(&logits, 1.0, 0.75);
        let ids: Vec<u32> = kept.iter().map(|&(i, _)| i).collect();
        assert_eq!(ids, vec![0, 1]);
        assert!((kept[0].1 - 0.625).abs() < 1e-6, "{kept:?}");
        assert!((kept[1].1 - 0.375).abs() < 1e-6, "{kept:?}");
        // top_p = 1 keeps everything; temperature 0.5 squares and renormalises.
        let all = nucleus(&logits, 0.5, 1.0);
        assert_eq!(all.len(), 4);
        let z: f64 = [0.5f64, 0.3, 0.15, 0.05].iter().map(|p| p * p).sum();
        assert!((all[0].1 - 0.25 / z).abs() < 1e-6, "{all:?}");
    }

    #[test]
    fn draws_follow_the_nucleus_distribution() {
        let logits: Vec<f32> = [0.5f32, 0.3, 0.15, 0.05].iter().map(|p| p.ln()).collect();
        let sampling = Sampling::TopP {
            temperature: 1.0,
            top_p: 0.75,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut counts = [0usize; 4];
        let n = 20_000;
        for _ in 0..n {
            counts[sample(&logits, &sampling, &mut rng) as usize] += 1;
        }
        assert_eq!(counts[2] + counts[3], 0, "outside the nucleus: {counts:?}");
        let share = counts[0] as f64 / n as f64;
        // 0.625 ± 4 standard errors (sqrt(0.625 · 0.375 / 20000) = 0.0034).
        assert!((share - 0.625).abs() < 0.014, "{share}");
    }

    proptest! {
        #[test]
        fn same_seed_same_tokens(
            logits in proptest::collection::vec(-10.0f32..10.0, 1..64),
            seed in any::<u64>(),
            temperature in 0.05f64..3.0,
            top_p in 0.01f64..=1.0,
        ) {
            let sampling = Sampling::TopP { temperature, top_p };
            let draw = |seed| {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                (0..8).map(|_| sample(&logits, &sampling, &mut rng)).collect::<Vec<_>>()
            };
            let first = draw(seed);
            prop_assert_eq!(&first, &draw(seed));
            let kept: Vec<u32> = nucleus(&logits, temperature, top_p).iter().map(|&(i, _)| i).collect();
            prop_assert!(first.iter().all(|t| kept.contains(t)));
        }

        #[test]
        fn a_tiny_top_p_is_greedy(logits in proptest::collection::vec(-10.0f32..10.0, 1..64), seed in any::<u64>()) {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let sampling = Sampling::TopP { temperature: 1.0, top_p: 1e-9 };
            prop_assert_eq!(sample(&logits, &sampling, &mut rng), argmax(&logits));
        }
    }
}
