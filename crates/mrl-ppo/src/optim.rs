//! Optimiser utilities: global-norm gradient clipping, Adam with PyTorch's exact update, and
//! the learning-rate schedule.
//!
//! Parameters are a slice of candle [`Var`]s in a fixed order (the agent's parameter order),
//! so that the Adam moments line up with them across checkpoints.

use std::collections::HashMap;

use candle_core::{DType, Tensor, Var, backprop::GradStore};
use serde::{Deserialize, Serialize};

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

/// Total L2 norm over all gradients, `sqrt(Σ_i ‖g_i‖²)`, accumulated in f64.
pub fn global_norm(grads: &[Tensor]) -> Result<f64> {
    let mut sum = 0.0;
    for g in grads {
        sum += g
            .to_dtype(DType::F64)?
            .sqr()?
            .sum_all()?
            .to_scalar::<f64>()?;
    }
    Ok(sum.sqrt())
}

/// Clips gradients by their global norm, with the semantics of PyTorch's
/// `clip_grad_norm_`: when `norm > max_norm`, every gradient is scaled by
/// `max_norm / (norm + 1e-6)`. Returns the norm before clipping (possibly non-finite: the
/// gradients are then returned unchanged and the caller must stop).
pub fn clip_grad_norm(grads: &mut [Tensor], max_norm: f64) -> Result<f64> {
    let norm = global_norm(grads)?;
    if norm.is_finite() {
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            for g in grads.iter_mut() {
                *g = (&*g * coef)?;
            }
        }
    }
    Ok(norm)
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
        let zeros = params
            .iter()
            .map(|p| Ok(p.as_tensor().zeros_like()?))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            config,
            names,
            step: 0,
            exp_avg: zeros.clone(),
            exp_avg_sq: zeros,
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
        let step_size = lr / bias_correction1;
        for (i, (param, grad)) in params.iter().zip(grads).enumerate() {
            let grad = grad.to_dtype(param.dtype())?;
            let m = &self.exp_avg[i];
            let v = &self.exp_avg_sq[i];
            // torch: exp_avg.lerp_(grad, 1 − β₁) = m + w·(g − m) for w < 0.5.
            let m = (m + (&grad - m)?.affine(1.0 - beta1, 0.0)?)?;
            // torch: exp_avg_sq.mul_(β₂).addcmul_(grad, grad, value = 1 − β₂).
            let v = (v.affine(beta2, 0.0)? + grad.affine(1.0 - beta2, 0.0)?.mul(&grad)?)?;
            let denom = v
                .sqrt()?
                .broadcast_div(&scalar_like(bias_correction2_sqrt, &v)?)?
                .affine(1.0, eps)?;
            let update = m.div(&denom)?.affine(-step_size, 0.0)?;
            param.set(&(param.as_tensor() + update)?)?;
            self.exp_avg[i] = m;
            self.exp_avg_sq[i] = v;
        }
        Ok(())
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

    #[test]
    fn annealing_is_linear_to_zero() {
        assert_eq!(annealed_lr(1.0, 0, 4, true), 1.0);
        assert_eq!(annealed_lr(1.0, 2, 4, true), 0.5);
        assert_eq!(annealed_lr(1.0, 3, 4, false), 1.0);
    }
}
