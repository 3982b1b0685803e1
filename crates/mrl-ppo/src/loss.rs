//! The clipped PPO objective (Schulman et al. 2017) on candle tensors, with autograd.
//!
//! ```text
//! ratio_t  = exp(log π(a_t | ·) − log π_old(a_t | ·))
//! L_clip   = −mean_t min(ratio_t·A_t, clamp(ratio_t, 1 − ε, 1 + ε)·A_t)
//! L_value  = mean_t (V_t − R_t)²                       (no ½ factor)
//! H        = mean_t −Σ_a π(a) log π(a)
//! L        = L_clip + c_v·L_value − c_e·H
//! ```
//!
//! Every mean is over the valid steps only (`mask`), so padded steps of trials that ended
//! early contribute nothing. Where the clamped side of the min is taken the policy gradient of
//! that step is 0, as with torch autograd.
//!
//! For f32 CPU tensors the loss runs as one custom op with a hand-written backward (`fused`,
//! the same bits as the candle graph below, which stays the reference and the path for other
//! devices and dtypes).

mod fused;

use candle_core::{D, DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Coefficients of the PPO objective.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PpoLossConfig {
    /// Clip range ε of the probability ratio (default 0.2).
    pub clip: f64,
    /// Weight c_v of the value loss (default 0.5).
    pub value_coef: f64,
    /// Weight c_e of the entropy bonus (default 0.01).
    pub entropy_coef: f64,
}

impl Default for PpoLossConfig {
    fn default() -> Self {
        Self {
            clip: 0.2,
            value_coef: 0.5,
            entropy_coef: 0.01,
        }
    }
}

impl PpoLossConfig {
    /// Checks `0 < ε < 1` and non-negative, finite coefficients.
    pub fn validate(&self) -> Result<()> {
        if self.clip.is_nan() || self.clip <= 0.0 || self.clip >= 1.0 {
            return Err(Error::InvalidConfig {
                field: "ppo.clip",
                value: self.clip.to_string(),
                reason: "must lie in (0, 1)",
            });
        }
        for (field, value) in [
            ("ppo.value_coef", self.value_coef),
            ("ppo.entropy_coef", self.entropy_coef),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(Error::InvalidConfig {
                    field,
                    value: value.to_string(),
                    reason: "must be finite and non-negative",
                });
            }
        }
        Ok(())
    }
}

/// The rollout side of a PPO batch, flattened to `N` steps.
///
/// # Shapes
/// - `actions`: `(N,)` u32
/// - `old_log_probs`, `advantages`, `returns`: `(N,)` in the dtype of the logits
/// - `mask`: `(N,)` in that dtype, 1 for valid steps and 0 for padding
#[derive(Debug, Clone)]
pub struct PpoTargets {
    /// Actions taken in the rollout.
    pub actions: Tensor,
    /// Log-probabilities of those actions under the rollout policy.
    pub old_log_probs: Tensor,
    /// Advantages, used as given (normalise them beforehand).
    pub advantages: Tensor,
    /// Value targets `R_t = A_t + V_t` (unnormalised advantages).
    pub returns: Tensor,
    /// Validity mask; `None` means every step is valid.
    pub mask: Option<Tensor>,
}

/// The PPO objective and its parts for one batch.
///
/// `total` carries the autograd graph; the other tensors are for logging and tests (on the
/// fused f32 CPU path they are plain tensors without a graph).
#[derive(Debug, Clone)]
pub struct PpoLoss {
    /// `L_clip + c_v·L_value − c_e·H`, a scalar with the graph.
    pub total: Tensor,
    /// `L_clip`, scalar.
    pub policy: Tensor,
    /// `L_value`, scalar.
    pub value: Tensor,
    /// Mean entropy `H`, scalar.
    pub entropy: Tensor,
    /// `log π(a_t | ·)`, `(N,)`.
    pub new_log_probs: Tensor,
    /// `ratio_t`, `(N,)`.
    pub ratio: Tensor,
    /// 1 where `|ratio_t − 1| > ε`, `(N,)` (u8).
    pub outside_clip: Tensor,
}

/// Plain numbers of a [`PpoLoss`], for logging.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct PpoLossStats {
    /// Total objective.
    pub total: f64,
    /// Clipped surrogate loss.
    pub policy: f64,
    /// Value loss.
    pub value: f64,
    /// Mean entropy.
    pub entropy: f64,
    /// Approximate KL(π_old ‖ π): mean of `(ratio − 1) − ln ratio` over valid steps.
    pub approx_kl: f64,
    /// Fraction of valid steps with `|ratio − 1| > ε`.
    pub clip_fraction: f64,
}

/// Log-softmax over the last dimension, `x − max − ln Σ exp(x − max)`, with the max detached
/// (the result does not depend on it, so its gradient is exactly that of log-softmax).
///
/// # Shapes
/// `(…, A)` → `(…, A)`
pub fn log_softmax(logits: &Tensor) -> Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let log_sum = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&log_sum)?)
}

/// Mean over the valid entries: `Σ x·m / Σ m` (a plain mean without a mask).
fn masked_mean(x: &Tensor, mask: Option<&Tensor>, n_valid: f64) -> Result<Tensor> {
    Ok(match mask {
        Some(mask) => (x.mul(mask)?.sum_all()? / n_valid)?,
        None => x.mean_all()?,
    })
}

/// The clipped PPO objective.
///
/// Contiguous f32 CPU tensors (u32 actions, both coefficients positive) take the fused op:
/// `total` is then one autograd node over `logits` and `values` whose gradients are exactly
/// those of the candle graph, and the other parts are plain tensors; anything else builds
/// the candle graph.
///
/// # Shapes
/// - `logits`: `(N, A)` (with the autograd graph of the policy)
/// - `values`: `(N,)` (with the graph of the value head)
/// - `targets`: see [`PpoTargets`]
///
/// # Errors
/// Shape or dtype mismatches between the tensors, or a mask with no valid step.
pub fn ppo_loss(
    logits: &Tensor,
    values: &Tensor,
    targets: &PpoTargets,
    config: &PpoLossConfig,
) -> Result<PpoLoss> {
    let n = logits.dim(0)?;
    for (what, t) in [
        ("values", values),
        ("actions", &targets.actions),
        ("old log-probs", &targets.old_log_probs),
        ("advantages", &targets.advantages),
        ("returns", &targets.returns),
    ] {
        if t.dims() != [n] {
            return Err(Error::LengthMismatch {
                what,
                expected: n,
                found: t.elem_count(),
            });
        }
    }
    let mask = targets.mask.as_ref();
    let n_valid = match mask {
        Some(m) => match fused::mask_count(m) {
            Some(count) => count,
            None => m.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?,
        },
        None => n as f64,
    };
    if n_valid <= 0.0 {
        return Err(Error::LengthMismatch {
            what: "valid steps",
            expected: 1,
            found: 0,
        });
    }
    match fused::ppo_loss_fused(logits, values, targets, config, n_valid)? {
        Some(loss) => Ok(loss),
        None => ppo_loss_candle(logits, values, targets, config, n_valid),
    }
}

/// [`ppo_loss`] as candle ops with autograd, after its checks (`n_valid > 0` valid steps):
/// the reference of the fused op and the path for every other device and dtype.
fn ppo_loss_candle(
    logits: &Tensor,
    values: &Tensor,
    targets: &PpoTargets,
    config: &PpoLossConfig,
    n_valid: f64,
) -> Result<PpoLoss> {
    let mask = targets.mask.as_ref();

    let log_probs = log_softmax(logits)?; // (N, A)
    let actions = targets.actions.unsqueeze(1)?; // (N, 1)
    let new_log_probs = log_probs.gather(&actions, 1)?.squeeze(1)?; // (N,)
    let ratio = (&new_log_probs - &targets.old_log_probs)?.exp()?; // (N,)

    let adv = &targets.advantages;
    let (lo, hi) = (1.0 - config.clip, 1.0 + config.clip);
    let unclipped = ratio.mul(adv)?;
    // The clamped ratio is a constant where it binds and equals the ratio elsewhere; where the
    // min takes it, the gradient is 0, so it is built from the detached ratio.
    let clipped = ratio.detach().clamp(lo, hi)?.mul(adv)?;
    let take_unclipped = unclipped.detach().le(&clipped)?;
    let surrogate = take_unclipped.where_cond(&unclipped, &clipped)?;
    let policy = masked_mean(&surrogate, mask, n_valid)?.neg()?;

    let value_err = (values - &targets.returns)?.sqr()?;
    let value = masked_mean(&value_err, mask, n_valid)?;

    let probs = log_probs.exp()?;
    let row_entropy = probs.mul(&log_probs)?.sum(D::Minus1)?.neg()?; // (N,)
    let entropy = masked_mean(&row_entropy, mask, n_valid)?;

    let total = ((&policy + (&value * config.value_coef)?)? - (&entropy * config.entropy_coef)?)?;
    let outside_clip = ratio.detach().affine(1.0, -1.0)?.abs()?.gt(config.clip)?;
    Ok(PpoLoss {
        total,
        policy,
        value,
        entropy,
        new_log_probs,
        ratio,
        outside_clip,
    })
}

impl PpoLoss {
    /// The scalars of this loss for logging; `mask` as in [`PpoTargets`].
    pub fn stats(&self, mask: Option<&Tensor>) -> Result<PpoLossStats> {
        let scalar =
            |t: &Tensor| -> Result<f64> { Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?) };
        let (approx_kl, clip_fraction) =
            match fused::kl_and_clip_fraction(&self.ratio, &self.outside_clip, mask) {
                Some(parts) => parts,
                None => self.kl_and_clip_fraction_candle(mask)?,
            };
        Ok(PpoLossStats {
            total: scalar(&self.total)?,
            policy: scalar(&self.policy)?,
            value: scalar(&self.value)?,
            entropy: scalar(&self.entropy)?,
            approx_kl,
            clip_fraction,
        })
    }

    /// The approximate KL and the clip fraction of [`PpoLoss::stats`] as candle ops in f64.
    fn kl_and_clip_fraction_candle(&self, mask: Option<&Tensor>) -> Result<(f64, f64)> {
        let ratio = self.ratio.detach().to_dtype(DType::F64)?;
        let mask = match mask {
            Some(m) => m.to_dtype(DType::F64)?,
            None => ratio.ones_like()?,
        };
        let n_valid = mask.sum_all()?.to_scalar::<f64>()?.max(1.0);
        let kl = ((ratio.affine(1.0, -1.0)? - ratio.log()?)?
            .mul(&mask)?
            .sum_all()?
            / n_valid)?;
        let clipped = (self
            .outside_clip
            .to_dtype(DType::F64)?
            .mul(&mask)?
            .sum_all()?
            / n_valid)?;
        Ok((kl.to_scalar::<f64>()?, clipped.to_scalar::<f64>()?))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};
    use proptest::prelude::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn bits(t: &Tensor) -> Vec<u32> {
        let values = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        values.iter().map(|v| v.to_bits()).collect()
    }

    fn uniform(rng: &mut ChaCha8Rng, n: usize, lo: f32, hi: f32) -> Tensor {
        let values: Vec<f32> = (0..n).map(|_| rng.random_range(lo..hi)).collect();
        Tensor::from_vec(values, n, &Device::Cpu).unwrap()
    }

    /// A batch of `n` steps over `n_actions` actions: logits and values as variables, old
    /// log-probabilities near the new ones (ratios on both sides of the clip range), a mask
    /// with padded steps when `masked`.
    fn batch(seed: u64, n: usize, n_actions: usize, masked: bool) -> (Var, Var, PpoTargets) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let logits = uniform(&mut rng, n * n_actions, -3.0, 3.0)
            .reshape((n, n_actions))
            .unwrap();
        let actions: Vec<u32> = (0..n)
            .map(|_| rng.random_range(0..n_actions as u32))
            .collect();
        let actions = Tensor::from_vec(actions, n, &Device::Cpu).unwrap();
        let new_log_probs = log_softmax(&logits)
            .unwrap()
            .gather(&actions.unsqueeze(1).unwrap(), 1)
            .unwrap()
            .squeeze(1)
            .unwrap();
        let old_log_probs = (new_log_probs + uniform(&mut rng, n, -0.5, 0.5)).unwrap();
        let mask = masked.then(|| {
            let m: Vec<f32> = (0..n)
                .map(|i| f32::from(i == 0 || rng.random_range(0..4) > 0))
                .collect();
            Tensor::from_vec(m, n, &Device::Cpu).unwrap()
        });
        let targets = PpoTargets {
            actions,
            old_log_probs,
            advantages: uniform(&mut rng, n, -2.0, 2.0),
            returns: uniform(&mut rng, n, -1.0, 1.0),
            mask,
        };
        let values = uniform(&mut rng, n, -1.0, 1.0);
        (
            Var::from_tensor(&logits).unwrap(),
            Var::from_tensor(&values).unwrap(),
            targets,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// The fused op and the candle graph agree bit for bit on every part of the loss, on
        /// the gradients of the logits and the values (also under an upstream factor, as when
        /// the belief loss is added) and on the logged statistics. Sizes cross candle's
        /// 32-wide SIMD sums, over the actions and over the steps.
        #[test]
        fn fused_loss_matches_candle_bit_for_bit(
            seed in any::<u64>(),
            n in 1usize..100,
            n_actions in 1usize..40,
            masked in any::<bool>(),
            clip in 0.05f64..0.5,
            value_coef in 0.1f64..1.0,
            entropy_coef in 0.001f64..0.1,
        ) {
            let (logits, values, targets) = batch(seed, n, n_actions, masked);
            let config = PpoLossConfig { clip, value_coef, entropy_coef };
            let fused = ppo_loss(&logits, &values, &targets, &config).unwrap();
            let n_valid = match &targets.mask {
                Some(m) => m.to_dtype(DType::F64).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap(),
                None => n as f64,
            };
            let reference = ppo_loss_candle(&logits, &values, &targets, &config, n_valid).unwrap();
            prop_assert!(fused.total.track_op() && reference.total.track_op());
            for (a, b) in [
                (&fused.total, &reference.total),
                (&fused.policy, &reference.policy),
                (&fused.value, &reference.value),
                (&fused.entropy, &reference.entropy),
                (&fused.new_log_probs, &reference.new_log_probs),
                (&fused.ratio, &reference.ratio),
            ] {
                prop_assert_eq!(bits(a), bits(b));
            }
            prop_assert_eq!(
                fused.outside_clip.to_vec1::<u8>().unwrap(),
                reference.outside_clip.to_vec1::<u8>().unwrap()
            );
            let mask = targets.mask.as_ref();
            let (s_fused, s_ref) = (fused.stats(mask).unwrap(), reference.stats(mask).unwrap());
            prop_assert_eq!(s_fused.approx_kl.to_bits(), s_ref.approx_kl.to_bits());
            prop_assert_eq!(s_fused.clip_fraction.to_bits(), s_ref.clip_fraction.to_bits());
            prop_assert_eq!(s_fused, s_ref);
            prop_assert_eq!(
                reference.kl_and_clip_fraction_candle(mask).unwrap(),
                (s_ref.approx_kl, s_ref.clip_fraction)
            );
            for scale in [None, Some(0.37)] {
                let root = |t: &Tensor| match scale {
                    Some(s) => (t * s).unwrap(),
                    None => t.clone(),
                };
                let g_fused = root(&fused.total).backward().unwrap();
                let g_ref = root(&reference.total).backward().unwrap();
                for var in [&logits, &values] {
                    prop_assert_eq!(
                        bits(g_fused.get(var.as_tensor()).unwrap()),
                        bits(g_ref.get(var.as_tensor()).unwrap())
                    );
                }
            }
        }
    }

    #[test]
    fn candle_path_serves_other_dtypes_and_zero_coefficients() {
        let (logits, values, targets) = batch(7, 5, 3, true);
        // A zero entropy weight leaves the entropy out of candle's graph: the candle path.
        let config = PpoLossConfig {
            entropy_coef: 0.0,
            ..Default::default()
        };
        let loss = ppo_loss(&logits, &values, &targets, &config).unwrap();
        assert!(loss.policy.track_op(), "candle graph expected");
        let fused = ppo_loss(&logits, &values, &targets, &PpoLossConfig::default()).unwrap();
        assert!(!fused.policy.track_op(), "fused parts carry no graph");
        // f64 runs the candle ops and agrees with f32 to f32 precision.
        let to64 = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
        let targets64 = PpoTargets {
            actions: targets.actions.clone(),
            old_log_probs: to64(&targets.old_log_probs),
            advantages: to64(&targets.advantages),
            returns: to64(&targets.returns),
            mask: targets.mask.as_ref().map(to64),
        };
        let loss64 = ppo_loss(
            &to64(&logits),
            &to64(&values),
            &targets64,
            &PpoLossConfig::default(),
        )
        .unwrap();
        let (a, b) = (
            fused
                .total
                .to_dtype(DType::F64)
                .unwrap()
                .to_scalar::<f64>()
                .unwrap(),
            loss64.total.to_scalar::<f64>().unwrap(),
        );
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        // An action out of range is candle's gather error, not a panic.
        let bad = PpoTargets {
            actions: Tensor::new(&[0u32, 1, 2, 3, 0], &Device::Cpu).unwrap(),
            ..targets
        };
        assert!(ppo_loss(&logits, &values, &bad, &PpoLossConfig::default()).is_err());
    }
}
