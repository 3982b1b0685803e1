//! Optimiser utilities: global-norm gradient clipping, Adam with PyTorch's exact update, and
//! the learning-rate schedule.
//!
//! Parameters are a slice of candle [`Var`]s in a fixed order (the agent's parameter order),
//! so that the Adam moments line up with them across checkpoints.
//!
//! For contiguous f32 CPU tensors the global norm, the clipping and the Adam step run as
//! fused passes (`crate::fused`) with exactly the bits of the candle expressions written
//! below, which remain the reference and the path for every other device and dtype.

use std::collections::HashMap;

use candle_core::{DType, Tensor, Var, backprop::GradStore};
use serde::{Deserialize, Serialize};

use crate::fused::{
    AdamParamUpdate, AdamScalars, adam_moments, scaled, sum_squares_f64, with_cpu_f32,
};
use crate::{Error, Result};

/// Adam hyper-parameters (Kingma & Ba 2015) without weight decay.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamConfig {
    /// Learning rate (default 3e-4).
    pub lr: f64,
    /// Decay of the first moment β₁ (default 0.9).
    pub beta1: f64,
    /// Decay of the second moment β₂ (default 0.999).
    pub beta2: f64,
    /// ε added to the denominator (default 1e-8).
    pub eps: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            lr: 3e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

impl AdamConfig {
    /// Checks `lr > 0`, `0 ≤ β < 1` and `ε > 0`.
    pub fn validate(&self) -> Result<()> {
        let checks = [
            (
                "optim.lr",
                self.lr,
                self.lr > 0.0 && self.lr.is_finite(),
                "must be positive",
            ),
            (
                "optim.beta1",
                self.beta1,
                (0.0..1.0).contains(&self.beta1),
                "must lie in [0, 1)",
            ),
            (
                "optim.beta2",
                self.beta2,
                (0.0..1.0).contains(&self.beta2),
                "must lie in [0, 1)",
            ),
            ("optim.eps", self.eps, self.eps > 0.0, "must be positive"),
        ];
        for (field, value, ok, reason) in checks {
            if !ok {
                return Err(Error::InvalidConfig {
                    field,
                    value: value.to_string(),
                    reason,
                });
            }
        }
        Ok(())
    }
}

/// Linear annealing of the learning rate to 0 over the run (Schulman et al. 2017, as in
/// CleanRL): `lr_i = lr·(1 − i/iterations)` for iteration `i` (0-based), or `lr` when off.
pub fn annealed_lr(lr: f64, iteration: u64, iterations: u64, anneal: bool) -> f64 {
    if anneal && iterations > 0 {
        lr * (1.0 - iteration as f64 / iterations as f64)
    } else {
        lr
    }
}

/// The gradients of `params` from a [`GradStore`], in the same order; a parameter without a
/// gradient (unused in the graph) gets zeros.
pub fn collect_grads(params: &[Var], grads: &GradStore) -> Result<Vec<Tensor>> {
    params
        .iter()
        .map(|p| match grads.get(p.as_tensor()) {
            Some(g) => Ok(g.clone()),
            None => Ok(p.as_tensor().zeros_like()?),
        })
        .collect()
}

/// Total L2 norm over all gradients, `sqrt(Σ_i ‖g_i‖²)`, accumulated in f64 (each
/// gradient's squares summed in element order, then the gradients in order).
pub fn global_norm(grads: &[Tensor]) -> Result<f64> {
    let mut sum = 0.0;
    for g in grads {
        sum += match with_cpu_f32([g], |[g]| sum_squares_f64(g)) {
            Some(s) => s,
            None => sum_squares_candle(g)?,
        };
    }
    Ok(sum.sqrt())
}

/// `‖g‖²` in f64 as candle ops: the reference of the fused pass and its fallback.
fn sum_squares_candle(g: &Tensor) -> Result<f64> {
    Ok(g.to_dtype(DType::F64)?
        .sqr()?
        .sum_all()?
        .to_scalar::<f64>()?)
}

/// Clips gradients by their global norm, with the semantics of PyTorch's
/// `clip_grad_norm_`: when `norm > max_norm`, every gradient is scaled by
/// `max_norm / (norm + 1e-6)`. Returns the norm before clipping (possibly non-finite: the
/// gradients are then returned unchanged and the caller must stop).
pub fn clip_grad_norm(grads: &mut [Tensor], max_norm: f64) -> Result<f64> {
    let norm = global_norm(grads)?;
    if let Some(coef) = clip_coef(norm, max_norm) {
        for g in grads.iter_mut() {
            let fused = with_cpu_f32([&*g], |[x]| scaled(x, coef));
            *g = match fused {
                Some(x) => Tensor::from_vec(x, g.shape(), g.device())?,
                None => (&*g * coef)?,
            };
        }
    }
    Ok(norm)
}

/// The factor `max_norm / (norm + 1e-6)` when it is below 1 and the norm finite.
fn clip_coef(norm: f64, max_norm: f64) -> Option<f64> {
    let coef = max_norm / (norm + 1e-6);
    (norm.is_finite() && coef < 1.0).then_some(coef)
}

/// Adam with PyTorch's bias-corrected update (`torch.optim.Adam`, no weight decay, not
/// amsgrad), over parameters in a fixed order:
///
/// ```text
/// m ← m + (1 − β₁)(g − m)              v ← β₂·v + (1 − β₂)·g²
/// p ← p − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
/// ```
///
/// The moments and the step count are plain tensors and a `u64`, so they can be
/// checkpointed and restored exactly ([`Adam::state_tensors`], [`Adam::load_state`]).
#[derive(Debug, Clone)]
pub struct Adam {
    config: AdamConfig,
    names: Vec<String>,
    step: u64,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
}

/// One parameter's Adam step as candle ops (any device and dtype): the new moments `(m, v)`,
/// the parameter set to its new value. The reference of [`adam_step_fused`].
fn adam_step_candle(
    param: &Var,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
    k: &AdamScalars,
) -> Result<(Tensor, Tensor)> {
    let grad = grad.to_dtype(param.dtype())?;
    // torch: exp_avg.lerp_(grad, 1 − β₁) = m + w·(g − m) for w < 0.5.
    let m = (m + (&grad - m)?.affine(1.0 - k.beta1, 0.0)?)?;
    // torch: exp_avg_sq.mul_(β₂).addcmul_(grad, grad, value = 1 − β₂).
    let v = (v.affine(k.beta2, 0.0)? + grad.affine(1.0 - k.beta2, 0.0)?.mul(&grad)?)?;
    let denom = v
        .sqrt()?
        .broadcast_div(&scalar_like(k.bias_correction2_sqrt, &v)?)?
        .affine(1.0, k.eps)?;
    let update = m.div(&denom)?.affine(-k.step_size, 0.0)?;
    param.set(&(param.as_tensor() + update)?)?;
    Ok((m, v))
}

/// [`adam_step_candle`] as two fused passes when the parameter, its gradient and its
/// moments are contiguous f32 CPU tensors of one shape (the new moments, then the parameter
/// updated in place); `None`, nothing changed, otherwise. Same bits as the candle ops.
fn adam_step_fused(
    param: &Var,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
    k: &AdamScalars,
) -> Result<Option<(Tensor, Tensor)>> {
    if [grad, m, v].iter().any(|t| t.dims() != param.dims()) {
        return Ok(None);
    }
    let moments = with_cpu_f32([param.as_tensor(), grad, m, v], |[_, g, m, v]| {
        adam_moments(g, m, v, k)
    });
    let Some((m_new, v_new)) = moments else {
        return Ok(None);
    };
    let m_new = Tensor::from_vec(m_new, m.shape(), m.device())?;
    let v_new = Tensor::from_vec(v_new, v.shape(), v.device())?;
    param.inplace_op3(&m_new, &v_new, &AdamParamUpdate(*k))?;
    Ok(Some((m_new, v_new)))
}

/// One scalar on the device and in the dtype of `like`.
fn scalar_like(value: f64, like: &Tensor) -> Result<Tensor> {
    Ok(Tensor::new(value, like.device())?.to_dtype(like.dtype())?)
}

impl Adam {
    /// Zero moments for `params`; `names` label them in checkpoints (same length).
    pub fn new(names: Vec<String>, params: &[Var], config: AdamConfig) -> Result<Self> {
        config.validate()?;
        if names.len() != params.len() {
            return Err(Error::LengthMismatch {
                what: "parameter names",
                expected: params.len(),
                found: names.len(),
            });
        }
        let zeros = || {
            params
                .iter()
                .map(|p| Ok(p.as_tensor().zeros_like()?))
                .collect::<Result<Vec<_>>>()
        };
        Ok(Self {
            config,
            names,
            step: 0,
            exp_avg: zeros()?,
            exp_avg_sq: zeros()?,
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &AdamConfig {
        &self.config
    }

    /// Steps taken so far.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// One Adam step at learning rate `lr` (the config's, or an annealed one).
    ///
    /// # Errors
    /// [`Error::OptimizerMismatch`] when `params` or `grads` do not match the moments.
    pub fn step(&mut self, params: &[Var], grads: &[Tensor], lr: f64) -> Result<()> {
        let scalars = self.begin_step(params, grads, lr)?;
        for (i, (param, grad)) in params.iter().zip(grads).enumerate() {
            let (m, v) = (&self.exp_avg[i], &self.exp_avg_sq[i]);
            let (m, v) = match adam_step_fused(param, grad, m, v, &scalars)? {
                Some(moments) => moments,
                None => adam_step_candle(param, grad, m, v, &scalars)?,
            };
            self.exp_avg[i] = m;
            self.exp_avg_sq[i] = v;
        }
        Ok(())
    }

    /// Checks the lengths, counts the step and returns its scalars.
    fn begin_step(&mut self, params: &[Var], grads: &[Tensor], lr: f64) -> Result<AdamScalars> {
        if params.len() != self.exp_avg.len() || grads.len() != self.exp_avg.len() {
            return Err(Error::OptimizerMismatch {
                reason: format!(
                    "{} moments, {} parameters, {} gradients",
                    self.exp_avg.len(),
                    params.len(),
                    grads.len()
                ),
            });
        }
        self.step += 1;
        let AdamConfig {
            beta1, beta2, eps, ..
        } = self.config;
        let t = self.step as f64;
        let bias_correction1 = 1.0 - beta1.powf(t);
        let bias_correction2_sqrt = (1.0 - beta2.powf(t)).sqrt();
        Ok(AdamScalars {
            beta1,
            beta2,
            eps,
            bias_correction2_sqrt,
            step_size: lr / bias_correction1,
        })
    }

    /// The moments as named tensors (`exp_avg.<name>`, `exp_avg_sq.<name>`) for a
    /// safetensors file; the step count is [`Adam::step_count`].
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(2 * self.names.len());
        for (name, (m, v)) in self
            .names
            .iter()
            .zip(self.exp_avg.iter().zip(&self.exp_avg_sq))
        {
            out.push((format!("exp_avg.{name}"), m.clone()));
            out.push((format!("exp_avg_sq.{name}"), v.clone()));
        }
        out
    }

    /// Restores moments written by [`Adam::state_tensors`] and the step count.
    ///
    /// # Errors
    /// [`Error::OptimizerMismatch`] when a moment is missing or has another shape or dtype.
    pub fn load_state(&mut self, mut tensors: HashMap<String, Tensor>, step: u64) -> Result<()> {
        let mut take = |key: String, like: &Tensor| -> Result<Tensor> {
            let t = tensors
                .remove(&key)
                .ok_or_else(|| Error::OptimizerMismatch {
                    reason: format!("missing {key}"),
                })?;
            if t.dims() != like.dims() || t.dtype() != like.dtype() {
                return Err(Error::OptimizerMismatch {
                    reason: format!(
                        "{key} is {:?} {:?}, expected {:?} {:?}",
                        t.dims(),
                        t.dtype(),
                        like.dims(),
                        like.dtype()
                    ),
                });
            }
            Ok(t.to_device(like.device())?)
        };
        let mut exp_avg = Vec::with_capacity(self.names.len());
        let mut exp_avg_sq = Vec::with_capacity(self.names.len());
        for (i, name) in self.names.iter().enumerate() {
            exp_avg.push(take(format!("exp_avg.{name}"), &self.exp_avg[i])?);
            exp_avg_sq.push(take(format!("exp_avg_sq.{name}"), &self.exp_avg_sq[i])?);
        }
        self.exp_avg = exp_avg;
        self.exp_avg_sq = exp_avg_sq;
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;
    use proptest::prelude::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn clipping_scales_only_above_max_norm() {
        let dev = Device::Cpu;
        let mut grads = vec![Tensor::new(&[3.0f64, 4.0], &dev).unwrap()];
        let norm = clip_grad_norm(&mut grads, 10.0).unwrap();
        assert_eq!(norm, 5.0);
        assert_eq!(grads[0].to_vec1::<f64>().unwrap(), vec![3.0, 4.0]);
        let norm = clip_grad_norm(&mut grads, 1.0).unwrap();
        assert_eq!(norm, 5.0);
        let clipped = grads[0].to_vec1::<f64>().unwrap();
        let coef = 1.0 / (5.0 + 1e-6);
        assert!((clipped[0] - 3.0 * coef).abs() < 1e-15 && (clipped[1] - 4.0 * coef).abs() < 1e-15);
    }

    #[test]
    fn first_adam_step_moves_by_lr_times_sign() {
        // After one step m̂ = g and v̂ = g², so the update is −lr·g/(|g| + ε).
        let dev = Device::Cpu;
        let p = Var::from_tensor(&Tensor::new(&[1.0f64, -2.0], &dev).unwrap()).unwrap();
        let mut adam = Adam::new(
            vec!["p".into()],
            std::slice::from_ref(&p),
            AdamConfig::default(),
        )
        .unwrap();
        let g = Tensor::new(&[0.5f64, -3.0], &dev).unwrap();
        adam.step(std::slice::from_ref(&p), &[g], 0.1).unwrap();
        let after = p.as_tensor().to_vec1::<f64>().unwrap();
        assert!((after[0] - 0.9).abs() < 1e-7 && (after[1] + 1.9).abs() < 1e-7);
        assert_eq!(adam.step_count(), 1);
    }

    #[test]
    fn state_round_trips_and_mismatches_are_errors() {
        let dev = Device::Cpu;
        let p = Var::from_tensor(&Tensor::new(&[1.0f32, 2.0], &dev).unwrap()).unwrap();
        let mut adam = Adam::new(
            vec!["p".into()],
            std::slice::from_ref(&p),
            AdamConfig::default(),
        )
        .unwrap();
        adam.step(
            std::slice::from_ref(&p),
            &[Tensor::new(&[0.1f32, 0.2], &dev).unwrap()],
            1e-3,
        )
        .unwrap();
        let saved: HashMap<_, _> = adam.state_tensors().into_iter().collect();
        let mut fresh = Adam::new(
            vec!["p".into()],
            std::slice::from_ref(&p),
            AdamConfig::default(),
        )
        .unwrap();
        fresh.load_state(saved.clone(), adam.step_count()).unwrap();
        assert_eq!(fresh.step_count(), 1);
        for ((_, a), (_, b)) in adam
            .state_tensors()
            .iter()
            .zip(fresh.state_tensors().iter())
        {
            assert_eq!(a.to_vec1::<f32>().unwrap(), b.to_vec1::<f32>().unwrap());
        }
        let mut missing = saved.clone();
        missing.remove("exp_avg.p");
        assert!(matches!(
            fresh.load_state(missing, 1),
            Err(Error::OptimizerMismatch { .. })
        ));
        let mut wrong = saved;
        wrong.insert(
            "exp_avg.p".into(),
            Tensor::zeros(3, DType::F32, &dev).unwrap(),
        );
        assert!(matches!(
            fresh.load_state(wrong, 1),
            Err(Error::OptimizerMismatch { .. })
        ));
        assert!(adam.step(&[p], &[], 1e-3).is_err());
        assert!(
            Adam::new(
                vec![],
                &[],
                AdamConfig {
                    lr: -1.0,
                    ..Default::default()
                }
            )
            .is_err()
        );
    }

    /// Values over five decades with exact zeros of both signs (candle's `affine(w, 0)` adds
    /// `+0`, which turns −0 into +0: the fused passes must too).
    fn ragged_values(rng: &mut ChaCha8Rng, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| match rng.random_range(0..10) {
                0 => 0.0,
                1 => -0.0,
                _ => scale * rng.random_range(-1.0f32..1.0) * 10f32.powi(rng.random_range(-3..2)),
            })
            .collect()
    }

    fn bits(t: &Tensor) -> Vec<u32> {
        let values = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        values.iter().map(|v| v.to_bits()).collect()
    }

    /// Ragged f32 CPU tensors of the lengths `lens` (even ones as 2-D), from `rng`.
    fn ragged_tensors(rng: &mut ChaCha8Rng, lens: &[usize], scale: f32) -> Vec<Tensor> {
        lens.iter()
            .map(|&n| {
                let values = ragged_values(rng, n, scale);
                let t = Tensor::from_vec(values, n, &Device::Cpu).unwrap();
                if n % 2 == 0 {
                    t.reshape((2, n / 2)).unwrap()
                } else {
                    t
                }
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Four annealed steps of global norm, clipping (binding or not) and Adam through the
        /// fused passes give exactly the bits of the candle expressions, step after step.
        #[test]
        fn fused_steps_match_candle_bit_for_bit(
            seed in any::<u64>(),
            lens in prop::collection::vec(1usize..70, 1..6),
            max_norm in prop::sample::select(vec![1e-3, 0.5, 1e6]),
        ) {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let init = ragged_tensors(&mut rng, &lens, 1.0);
            let vars = |ts: &[Tensor]| -> Vec<Var> {
                ts.iter().map(|t| Var::from_tensor(&t.copy().unwrap()).unwrap()).collect()
            };
            let (fused_params, candle_params) = (vars(&init), vars(&init));
            let names: Vec<String> = (0..lens.len()).map(|i| format!("p{i}")).collect();
            let config = AdamConfig { lr: 3e-3, ..Default::default() };
            let mut fused = Adam::new(names.clone(), &fused_params, config).unwrap();
            let mut reference = Adam::new(names, &candle_params, config).unwrap();
            let iterations = 4;
            for iteration in 0..iterations {
                let lr = annealed_lr(config.lr, iteration, iterations, true);
                let grads = ragged_tensors(&mut rng, &lens, 0.3);

                let mut fused_grads = grads.clone();
                let fused_norm = clip_grad_norm(&mut fused_grads, max_norm).unwrap();
                fused.step(&fused_params, &fused_grads, lr).unwrap();

                let mut sum = 0.0;
                for g in &grads {
                    sum += sum_squares_candle(g).unwrap();
                }
                let norm = sum.sqrt();
                let mut candle_grads = grads;
                if let Some(coef) = clip_coef(norm, max_norm) {
                    for g in candle_grads.iter_mut() {
                        *g = (&*g * coef).unwrap();
                    }
                }
                let k = reference.begin_step(&candle_params, &candle_grads, lr).unwrap();
                for (i, (p, g)) in candle_params.iter().zip(&candle_grads).enumerate() {
                    let (m, v) = (&reference.exp_avg[i], &reference.exp_avg_sq[i]);
                    let (m, v) = adam_step_candle(p, g, m, v, &k).unwrap();
                    reference.exp_avg[i] = m;
                    reference.exp_avg_sq[i] = v;
                }

                prop_assert_eq!(fused_norm.to_bits(), norm.to_bits());
                for (a, b) in fused_grads.iter().zip(&candle_grads) {
                    prop_assert_eq!(bits(a), bits(b));
                }
                for (a, b) in fused_params.iter().zip(&candle_params) {
                    prop_assert_eq!(bits(a.as_tensor()), bits(b.as_tensor()));
                }
                for ((_, a), (_, b)) in fused.state_tensors().iter().zip(&reference.state_tensors()) {
                    prop_assert_eq!(bits(a), bits(b));
                }
            }
            prop_assert_eq!(fused.step_count(), iterations);
        }
    }

    #[test]
    fn first_fused_step_has_the_closed_form_moments() {
        // f32 on the CPU: the fused passes.
        let p = Var::from_tensor(&Tensor::new(&[1.0f32, 2.0], &Device::Cpu).unwrap()).unwrap();
        let mut adam = Adam::new(
            vec!["p".into()],
            std::slice::from_ref(&p),
            AdamConfig::default(),
        )
        .unwrap();
        let g = Tensor::new(&[0.5f32, -0.25], &Device::Cpu).unwrap();
        adam.step(std::slice::from_ref(&p), &[g], 0.1).unwrap();
        let state: HashMap<_, _> = adam.state_tensors().into_iter().collect();
        // m = 0.1·g, v = 0.001·g².
        assert_eq!(
            state["exp_avg.p"].to_vec1::<f32>().unwrap(),
            vec![0.05, -0.025]
        );
        assert_eq!(
            state["exp_avg_sq.p"].to_vec1::<f32>().unwrap(),
            vec![0.001f32 * 0.5 * 0.5, 0.001f32 * 0.25 * 0.25]
        );
        // One step moves each parameter by lr·sign(g) (m̂ = g, v̂ = g²).
        let after = p.as_tensor().to_vec1::<f32>().unwrap();
        assert!(
            (after[0] - 0.9).abs() < 1e-6 && (after[1] - 2.1).abs() < 1e-6,
            "{after:?}"
        );
    }

    #[test]
    fn annealing_is_linear_to_zero() {
        assert_eq!(annealed_lr(1.0, 0, 4, true), 1.0);
        assert_eq!(annealed_lr(1.0, 2, 4, true), 0.5);
        assert_eq!(annealed_lr(1.0, 3, 4, false), 1.0);
    }
}
