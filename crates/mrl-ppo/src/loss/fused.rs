//! The PPO loss of [`super::ppo_loss`] as one custom op over contiguous f32 CPU buffers: a
//! forward pass over the `N` rows and a hand-written backward, both with exactly the bits
//! of the candle graph they replace.
//!
//! Candle builds the loss from about 30 small tensor ops and autograd runs about 50 more,
//! each an allocation and a pass over `N·A` or `N` values. Here every value is computed as
//! candle computes it (see `crate::fused` for the ops' f32 arithmetic), and the backward
//! reproduces candle's autograd step by step:
//!
//! - autograd accumulates each gradient into a fresh zero tensor, so every first
//!   contribution is `0 + g` (which turns −0 into +0): [`acc`] below;
//! - nodes with several consumers get their contributions in the order of candle's
//!   topological sort (reverse post-order of the graph walked from `total`, left operand
//!   first): `log π` receives the entropy's `Mul`, then its `Exp`, then the `gather` of the
//!   policy term (a scatter-add at the action); the shifted logits `x − max` receive the
//!   `log_softmax` subtraction, then the `Exp` of the normaliser;
//! - the sums run candle's own f32 reduction kernel ([`candle_sum_f32`]), forward and
//!   backward (the broadcast's `sum_keepdim` over the actions).
//!
//! `super::ppo_loss` dispatches here only for f32 CPU tensors with u32 actions in range and
//! positive value and entropy coefficients (a zero coefficient makes candle leave that branch
//! out of the graph entirely); everything else runs the candle ops, which stay the reference.

use std::sync::{Arc, OnceLock};

use candle_core::{CpuStorage, CustomOp2, DType, Device, Layout, Shape, Tensor};

use crate::Result;
use crate::fused::{candle_sum_f32, with_cpu, with_cpu_f32};
use crate::loss::{PpoLoss, PpoLossConfig, PpoTargets};

/// Candle's first accumulation of a gradient into its zero tensor: `0 + g`.
#[inline(always)]
fn acc(g: f32) -> f32 {
    0.0 + g
}

/// The rollout side of the batch, copied out of its tensors (`N` values each).
struct Targets {
    actions: Vec<u32>,
    old_log_probs: Vec<f32>,
    advantages: Vec<f32>,
    returns: Vec<f32>,
    mask: Option<Vec<f32>>,
}

/// The f32 constants of the graph, each cast from f64 as candle casts it.
#[derive(Clone, Copy)]
struct Constants {
    /// Actions per row `A`.
    n_actions: usize,
    /// `1 − ε`, `1 + ε` and `ε` (the clamp's and the outside-clip test's scalars).
    lo: f32,
    hi: f32,
    clip: f32,
    /// `c_v`, `c_e`.
    value_coef: f32,
    entropy_coef: f32,
    /// `1 / n_valid` (the masked mean's, or the plain mean's `1 / N`).
    inv_n: f32,
}

/// What the forward computed: the loss parts, and what the backward reads.
struct Forward {
    /// `log π`, `(N, A)`.
    log_probs: Vec<f32>,
    /// `π = exp(log π)`, `(N, A)`.
    probs: Vec<f32>,
    /// `exp(x − max)`, `(N, A)`.
    exp_shifted: Vec<f32>,
    /// `Σ_a exp(x − max)`, `(N,)`.
    normaliser: Vec<f32>,
    /// `log π(a_t)`, `(N,)`.
    new_log_probs: Vec<f32>,
    /// `ratio_t`, `(N,)`.
    ratio: Vec<f32>,
    /// Whether the min took the unclipped side, `(N,)`.
    take_unclipped: Vec<bool>,
    /// `V_t − R_t`, `(N,)`.
    value_err: Vec<f32>,
    /// `|ratio_t − 1| > ε`, `(N,)`.
    outside_clip: Vec<u8>,
    policy: f32,
    value: f32,
    entropy: f32,
    total: f32,
}

/// `Σ x·m` (with the mask) or `Σ x`, then `·(1/n)`: candle's masked mean.
fn masked_mean(x: &[f32], mask: Option<&[f32]>, inv_n: f32) -> f32 {
    let sum = match mask {
        Some(mask) => {
            let xm: Vec<f32> = x.iter().zip(mask).map(|(&x, &m)| x * m).collect();
            candle_sum_f32(&xm)
        }
        None => candle_sum_f32(x),
    };
    sum * inv_n + 0.0
}

/// The forward pass over `N` rows of `A` logits.
fn forward(logits: &[f32], values: &[f32], t: &Targets, k: &Constants) -> Forward {
    let n_actions = k.n_actions;
    let n = values.len();
    let mut log_probs = vec![0.0f32; n * n_actions];
    let mut probs = vec![0.0f32; n * n_actions];
    let mut exp_shifted = vec![0.0f32; n * n_actions];
    let mut normaliser = Vec::with_capacity(n);
    let mut new_log_probs = Vec::with_capacity(n);
    let mut ratio = Vec::with_capacity(n);
    let mut take_unclipped = Vec::with_capacity(n);
    let mut surrogate = Vec::with_capacity(n);
    let mut value_err = Vec::with_capacity(n);
    let mut value_sq = Vec::with_capacity(n);
    let mut neg_row_entropy = Vec::with_capacity(n);
    let mut outside_clip = Vec::with_capacity(n);
    let mut plogp = vec![0.0f32; n_actions];
    for i in 0..n {
        let rows = i * n_actions..(i + 1) * n_actions;
        let x = &logits[rows.clone()];
        // max_keepdim: the first element, replaced by every larger one.
        let mut max = x[0];
        for &v in x {
            if max < v {
                max = v;
            }
        }
        let e = &mut exp_shifted[rows.clone()];
        for (e, &v) in e.iter_mut().zip(x) {
            *e = (v - max).exp();
        }
        let sum = candle_sum_f32(e);
        normaliser.push(sum);
        let log_sum = sum.ln();
        let lp = &mut log_probs[rows.clone()];
        for (lp, &v) in lp.iter_mut().zip(x) {
            *lp = (v - max) - log_sum;
        }
        let p = &mut probs[rows];
        for ((p, pl), &lp) in p.iter_mut().zip(plogp.iter_mut()).zip(lp.iter()) {
            *p = lp.exp();
            *pl = *p * lp;
        }
        neg_row_entropy.push(-candle_sum_f32(&plogp));

        let new_lp = lp[t.actions[i] as usize];
        new_log_probs.push(new_lp);
        let r = (new_lp - t.old_log_probs[i]).exp();
        ratio.push(r);
        let adv = t.advantages[i];
        let unclipped = r * adv;
        // clamp = maximum(lo) then minimum(hi), candle's comparisons.
        let clamped = if r < k.lo { k.lo } else { r };
        let clamped = if clamped > k.hi { k.hi } else { clamped };
        let clipped = clamped * adv;
        let take = unclipped <= clipped;
        take_unclipped.push(take);
        surrogate.push(if take { unclipped } else { clipped });
        outside_clip.push(u8::from((r * 1.0 + -1.0).abs() > k.clip));

        let d = values[i] - t.returns[i];
        value_err.push(d);
        value_sq.push(d * d);
    }
    let mask = t.mask.as_deref();
    let policy = -masked_mean(&surrogate, mask, k.inv_n);
    let value = masked_mean(&value_sq, mask, k.inv_n);
    let entropy = masked_mean(&neg_row_entropy, mask, k.inv_n);
    let total = (policy + (value * k.value_coef + 0.0)) - (entropy * k.entropy_coef + 0.0);
    Forward {
        log_probs,
        probs,
        exp_shifted,
        normaliser,
        new_log_probs,
        ratio,
        take_unclipped,
        value_err,
        outside_clip,
        policy,
        value,
        entropy,
        total,
    }
}

/// The gradient reaching each element of a masked mean's input from the gradient `g` of
/// the mean: through `·(1/n)`, the squeeze, the sum's broadcast and the mask's `Mul`.
fn mean_input_grads(g: f32, mask: Option<&[f32]>, inv_n: f32, n: usize) -> Vec<f32> {
    let g_sum = acc(acc(g * inv_n + 0.0)); // affine, then the squeeze's reshape
    let g_each = acc(g_sum); // the sum's broadcast back
    match mask {
        Some(mask) => mask.iter().map(|&m| acc(g_each * m)).collect(),
        None => vec![g_each; n],
    }
}

/// The backward pass from `∂/∂total = g_total`: `(∂/∂logits (N, A), ∂/∂values (N,))`.
fn backward(fwd: &Forward, t: &Targets, k: &Constants, g_total: f32) -> (Vec<f32>, Vec<f32>) {
    let n_actions = k.n_actions;
    let n = fwd.ratio.len();
    let mask = t.mask.as_deref();
    // total = (policy + c_v·value) − c_e·entropy; the entropy branch is processed first.
    let g_sum = acc(g_total);
    let g_entropy_term = 0.0 - g_total;
    let g_entropy = acc(g_entropy_term * k.entropy_coef + 0.0);
    let g_neg_entropy_rows = mean_input_grads(g_entropy, mask, k.inv_n, n);
    let mut g_log_probs = vec![0.0f32; n * n_actions];
    for (i, &g_neg) in g_neg_entropy_rows.iter().enumerate() {
        let g_row = acc(0.0 - g_neg); // neg (into zeros), then the squeeze's reshape
        let g_plogp = acc(g_row); // the row sum's broadcast back
        let rows = i * n_actions..(i + 1) * n_actions;
        for ((g_lp, &lp), &p) in g_log_probs[rows.clone()]
            .iter_mut()
            .zip(&fwd.log_probs[rows.clone()])
            .zip(&fwd.probs[rows])
        {
            // Mul(π, log π): π's gradient, then log π's; then Exp(log π) into log π.
            let g_p = acc(g_plogp * lp);
            *g_lp = acc(g_plogp * p) + g_p * p;
        }
    }

    let g_policy = acc(g_sum);
    let g_value_term = acc(g_sum);
    let g_value = acc(g_value_term * k.value_coef + 0.0);
    let g_value_sq = mean_input_grads(g_value, mask, k.inv_n, n);
    let g_values: Vec<f32> = g_value_sq
        .iter()
        .zip(&fwd.value_err)
        .map(|(&g, &d)| acc((d * g) * 2.0 + 0.0))
        .collect();

    let g_surrogate = mean_input_grads(0.0 - g_policy, mask, k.inv_n, n);
    let mut g_logits = vec![0.0f32; n * n_actions];
    let mut g_log_sum = vec![0.0f32; n_actions];
    for i in 0..n {
        let g_unclipped = acc(if fwd.take_unclipped[i] {
            g_surrogate[i]
        } else {
            0.0
        });
        let g_ratio = acc(g_unclipped * t.advantages[i]);
        let g_diff = acc(g_ratio * fwd.ratio[i]);
        let g_new_lp = acc(acc(g_diff)); // sub, then the squeeze's reshape
        let rows = i * n_actions..(i + 1) * n_actions;
        let g_lp = &mut g_log_probs[rows.clone()];
        g_lp[t.actions[i] as usize] += g_new_lp;
        // log π = shifted − log Σ: the shifted logits get +g, the normaliser's broadcast −g.
        for (g_ls, &g) in g_log_sum.iter_mut().zip(g_lp.iter()) {
            *g_ls = 0.0 - g;
        }
        let g_log_normaliser = acc(candle_sum_f32(&g_log_sum));
        let g_normaliser = acc(g_log_normaliser / fwd.normaliser[i]);
        let g_exp = acc(g_normaliser);
        for ((g_x, &g), &e) in g_logits[rows.clone()]
            .iter_mut()
            .zip(g_lp.iter())
            .zip(&fwd.exp_shifted[rows])
        {
            *g_x = acc(acc(g) + g_exp * e);
        }
    }
    (g_logits, g_values)
}

/// The custom op: `(logits (N, A), values (N,))` → `total`, a scalar.
struct PpoLossOp {
    targets: Targets,
    constants: Constants,
    /// The forward's values, for the backward and for the caller's logging tensors.
    saved: Arc<OnceLock<Forward>>,
}

impl CustomOp2 for PpoLossOp {
    fn name(&self) -> &'static str {
        "ppo-loss"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(logits), CpuStorage::F32(values)) = (s1, s2) else {
            candle_core::bail!("ppo-loss: logits and values must be f32");
        };
        let (Some((l0, l1)), Some((v0, v1))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle_core::bail!("ppo-loss: logits and values must be contiguous");
        };
        let fwd = forward(
            &logits[l0..l1],
            &values[v0..v1],
            &self.targets,
            &self.constants,
        );
        let total = fwd.total;
        if self.saved.set(fwd).is_err() {
            candle_core::bail!("ppo-loss: the op ran its forward twice");
        }
        Ok((CpuStorage::F32(vec![total]), Shape::from(())))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        values: &Tensor,
        _total: &Tensor,
        grad_total: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let Some(fwd) = self.saved.get() else {
            candle_core::bail!("ppo-loss: backward before forward");
        };
        let g_total = grad_total.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        let (g_logits, g_values) = backward(fwd, &self.targets, &self.constants, g_total);
        Ok((
            Some(Tensor::from_vec(g_logits, logits.shape(), &Device::Cpu)?),
            Some(Tensor::from_vec(g_values, values.shape(), &Device::Cpu)?),
        ))
    }
}

/// [`super::ppo_loss`] as the fused op when every tensor is on the CPU, contiguous, f32
/// (u32 actions, each below `A`), and both coefficients positive; `None` otherwise. The
/// shapes were checked by the caller, `n_valid > 0` is the masked mean's divisor.
pub(super) fn ppo_loss_fused(
    logits: &Tensor,
    values: &Tensor,
    targets: &PpoTargets,
    config: &PpoLossConfig,
    n_valid: f64,
) -> Result<Option<PpoLoss>> {
    let Ok((n, n_actions)) = logits.dims2() else {
        return Ok(None);
    };
    if n_actions == 0 || config.value_coef <= 0.0 || config.entropy_coef <= 0.0 {
        return Ok(None);
    }
    let Some(actions) = with_cpu([&targets.actions], |[a]: [&[u32]; 1]| a.to_vec()) else {
        return Ok(None);
    };
    if actions.iter().any(|&a| a as usize >= n_actions) {
        return Ok(None);
    }
    let rollout = [
        &targets.old_log_probs,
        &targets.advantages,
        &targets.returns,
    ];
    let Some([old_log_probs, advantages, returns]) =
        with_cpu_f32(rollout, |slices| slices.map(<[f32]>::to_vec))
    else {
        return Ok(None);
    };
    let mask = match &targets.mask {
        Some(mask) => match with_cpu_f32([mask], |[m]| m.to_vec()) {
            Some(m) => Some(m),
            None => return Ok(None),
        },
        None => None,
    };
    if with_cpu_f32([logits, values], |_| ()).is_none()
        || mask.as_ref().is_some_and(|m| m.len() != n)
    {
        return Ok(None);
    }
    let op = PpoLossOp {
        targets: Targets {
            actions,
            old_log_probs,
            advantages,
            returns,
            mask,
        },
        constants: Constants {
            n_actions,
            lo: (1.0 - config.clip) as f32,
            hi: (1.0 + config.clip) as f32,
            clip: config.clip as f32,
            value_coef: config.value_coef as f32,
            entropy_coef: config.entropy_coef as f32,
            inv_n: (1.0 / n_valid) as f32,
        },
        saved: Arc::new(OnceLock::new()),
    };
    let saved = Arc::clone(&op.saved);
    let total = logits.apply_op2(values, op)?;
    let Some(fwd) = saved.get() else {
        return Err(candle_core::Error::Msg("ppo-loss: the forward did not run".into()).into());
    };
    let scalar = |v: f32| Tensor::new(v, &Device::Cpu);
    Ok(Some(PpoLoss {
        total,
        policy: scalar(fwd.policy)?,
        value: scalar(fwd.value)?,
        entropy: scalar(fwd.entropy)?,
        new_log_probs: Tensor::from_slice(&fwd.new_log_probs, n, &Device::Cpu)?,
        ratio: Tensor::from_slice(&fwd.ratio, n, &Device::Cpu)?,
        outside_clip: Tensor::from_slice(&fwd.outside_clip, n, &Device::Cpu)?,
    }))
}

/// `Σ x` in f64 in element order, as candle's f64 `sum_all` (no SIMD reduction for f64).
fn sum_f64(x: impl Iterator<Item = f64>) -> f64 {
    let mut sum = 0.0f64;
    for v in x {
        sum += v;
    }
    sum
}

/// The number of valid steps `Σ m` of an f32 CPU mask, in f64 as
/// `mask.to_dtype(F64)?.sum_all()`; `None` for another mask.
pub(super) fn mask_count(mask: &Tensor) -> Option<f64> {
    with_cpu_f32([mask], |[m]| sum_f64(m.iter().map(|&v| f64::from(v))))
}

/// [`PpoLoss::stats`]'s approximate KL and clip fraction over f32 CPU tensors, in f64 as
/// its candle ops compute them: `(Σ ((r·1 − 1) − ln r)·m)·(1/n)` and `(Σ o·m)·(1/n)` with
/// `n = max(Σ m, 1)` and `m = 1` without a mask. `None` for other tensors.
pub(super) fn kl_and_clip_fraction(
    ratio: &Tensor,
    outside_clip: &Tensor,
    mask: Option<&Tensor>,
) -> Option<(f64, f64)> {
    let outside = with_cpu([outside_clip], |[o]: [&[u8]; 1]| o.to_vec())?;
    let (ratio, mask) = match mask {
        Some(mask) => with_cpu_f32([ratio, mask], |[r, m]| (r.to_vec(), Some(m.to_vec())))?,
        None => (with_cpu_f32([ratio], |[r]| r.to_vec())?, None),
    };
    if outside.len() != ratio.len() || mask.as_ref().is_some_and(|m| m.len() != ratio.len()) {
        return None;
    }
    let m = |i: usize| mask.as_ref().map_or(1.0, |m| f64::from(m[i]));
    let n_valid = sum_f64((0..ratio.len()).map(m)).max(1.0);
    let inv_n = 1.0 / n_valid;
    let kl = sum_f64(ratio.iter().enumerate().map(|(i, &r)| {
        let r = f64::from(r);
        ((r * 1.0 + -1.0) - r.ln()) * m(i)
    }));
    let clipped = sum_f64(
        outside
            .iter()
            .enumerate()
            .map(|(i, &o)| f64::from(o) * m(i)),
    );
    Some((kl * inv_n + 0.0, clipped * inv_n + 0.0))
}
