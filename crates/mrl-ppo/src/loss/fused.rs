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

/// One row's scalars from the forward.
#[derive(Debug, Clone, Copy, Default)]
struct RowForward {
    /// `Σ_a exp(x − max)`.
    normaliser: f32,
    /// `log π(a_t)`.
    new_log_prob: f32,
    /// `ratio_t`.
    ratio: f32,
    /// Whether the min took the unclipped side.
    take_unclipped: bool,
    /// `min(ratio·A, clamp(ratio)·A)`.
    surrogate: f32,
    /// `V_t − R_t`.
    value_err: f32,
    /// `Σ_a π log π` negated: the row's entropy.
    entropy: f32,
    /// `|ratio_t − 1| > ε`.
    outside_clip: bool,
}

/// What the forward computed: the loss parts, and what the backward reads.
struct Forward {
    /// `log π`, `(N, A)`.
    log_probs: Vec<f32>,
    /// `π = exp(log π)`, `(N, A)`.
    probs: Vec<f32>,
    /// `exp(x − max)`, `(N, A)`.
    exp_shifted: Vec<f32>,
    /// The rows' scalars, `(N,)`.
    rows: Vec<RowForward>,
    policy: f32,
    value: f32,
    entropy: f32,
    total: f32,
}

/// `Σ x·m` (with the mask) or `Σ x`, then `·(1/n)`: candle's masked mean of `x` (one value a
/// row) over the whole batch in one sum, as candle's SIMD order depends on the positions.
fn masked_mean(x: impl Iterator<Item = f32>, mask: Option<&[f32]>, inv_n: f32) -> f32 {
    let x: Vec<f32> = match mask {
        Some(mask) => x.zip(mask).map(|(x, &m)| x * m).collect(),
        None => x.collect(),
    };
    candle_sum_f32(&x) * inv_n + 0.0
}

/// One row of the forward: `x` its `A` logits, the outputs `log π`, `π`, `exp(x − max)` and
/// `scratch` (`π log π`), `A` values each.
#[allow(clippy::too_many_arguments)]
fn forward_row(
    i: usize,
    x: &[f32],
    value: f32,
    t: &Targets,
    k: &Constants,
    lp: &mut [f32],
    p: &mut [f32],
    e: &mut [f32],
    scratch: &mut [f32],
) -> RowForward {
    // max_keepdim: the first element, replaced by every larger one.
    let mut max = x[0];
    for &v in x {
        if max < v {
            max = v;
        }
    }
    for (e, &v) in e.iter_mut().zip(x) {
        *e = (v - max).exp();
    }
    let normaliser = candle_sum_f32(e);
    let log_sum = normaliser.ln();
    for (lp, &v) in lp.iter_mut().zip(x) {
        *lp = (v - max) - log_sum;
    }
    for ((p, pl), &lp) in p.iter_mut().zip(scratch.iter_mut()).zip(lp.iter()) {
        *p = lp.exp();
        *pl = *p * lp;
    }
    let entropy = -candle_sum_f32(scratch);

    let new_log_prob = lp[t.actions[i] as usize];
    let ratio = (new_log_prob - t.old_log_probs[i]).exp();
    let adv = t.advantages[i];
    let unclipped = ratio * adv;
    // clamp = maximum(lo) then minimum(hi), candle's comparisons.
    let clamped = if ratio < k.lo { k.lo } else { ratio };
    let clamped = if clamped > k.hi { k.hi } else { clamped };
    let clipped = clamped * adv;
    let take_unclipped = unclipped <= clipped;
    RowForward {
        normaliser,
        new_log_prob,
        ratio,
        take_unclipped,
        surrogate: if take_unclipped { unclipped } else { clipped },
        value_err: value - t.returns[i],
        entropy,
        outside_clip: (ratio * 1.0 + -1.0).abs() > k.clip,
    }
}

/// The forward pass over `N` rows of `A` logits.
fn forward(logits: &[f32], values: &[f32], t: &Targets, k: &Constants) -> Forward {
    let n_actions = k.n_actions;
    let n = values.len();
    let mut log_probs = vec![0.0f32; n * n_actions];
    let mut probs = vec![0.0f32; n * n_actions];
    let mut exp_shifted = vec![0.0f32; n * n_actions];
    let mut rows = vec![RowForward::default(); n];
    let mut scratch = vec![0.0f32; n_actions];
    let per_row_a = log_probs
        .chunks_exact_mut(n_actions)
        .zip(probs.chunks_exact_mut(n_actions))
        .zip(exp_shifted.chunks_exact_mut(n_actions));
    for (i, (((lp, p), e), row)) in per_row_a.zip(rows.iter_mut()).enumerate() {
        let x = &logits[i * n_actions..(i + 1) * n_actions];
        *row = forward_row(i, x, values[i], t, k, lp, p, e, &mut scratch);
    }
    let mask = t.mask.as_deref();
    let policy = -masked_mean(rows.iter().map(|r| r.surrogate), mask, k.inv_n);
    let value_sq = rows.iter().map(|r| r.value_err * r.value_err);
    let value = masked_mean(value_sq, mask, k.inv_n);
    let entropy = masked_mean(rows.iter().map(|r| r.entropy), mask, k.inv_n);
    let total = (policy + (value * k.value_coef + 0.0)) - (entropy * k.entropy_coef + 0.0);
    Forward {
        log_probs,
        probs,
        exp_shifted,
        rows,
        policy,
        value,
        entropy,
        total,
    }
}

/// The gradient reaching one element of a masked mean's input from the gradient `g` of
/// the mean: `g_each` (through `·(1/n)`, the squeeze and the sum's broadcast back), then
/// the mask's `Mul` at row `i`.
fn mean_input_grad(g_each: f32, mask: Option<&[f32]>, i: usize) -> f32 {
    match mask {
        Some(mask) => acc(g_each * mask[i]),
        None => g_each,
    }
}

/// `g_each` of [`mean_input_grad`] for the mean's gradient `g`.
fn mean_each_grad(g: f32, inv_n: f32) -> f32 {
    acc(acc(acc(g * inv_n + 0.0))) // affine, the squeeze's reshape, the sum's broadcast
}

/// The backward pass from `∂/∂total = g_total`: `(∂/∂logits (N, A), ∂/∂values (N,))`.
fn backward(fwd: &Forward, t: &Targets, k: &Constants, g_total: f32) -> (Vec<f32>, Vec<f32>) {
    let n_actions = k.n_actions;
    let n = fwd.rows.len();
    let mask = t.mask.as_deref();
    // total = (policy + c_v·value) − c_e·entropy; the entropy branch is processed first.
    let g_sum = acc(g_total);
    let g_entropy = acc((0.0 - g_total) * k.entropy_coef + 0.0);
    let g_entropy_each = mean_each_grad(g_entropy, k.inv_n);
    let g_policy = acc(g_sum);
    let g_value = acc(acc(g_sum) * k.value_coef + 0.0);
    let g_value_each = mean_each_grad(g_value, k.inv_n);
    let g_policy_each = mean_each_grad(0.0 - g_policy, k.inv_n);

    let mut g_logits = vec![0.0f32; n * n_actions];
    let mut g_values = vec![0.0f32; n];
    let mut g_lp = vec![0.0f32; n_actions];
    let mut g_log_sum = vec![0.0f32; n_actions];
    let rows = g_logits
        .chunks_exact_mut(n_actions)
        .zip(g_values.iter_mut());
    for (i, (g_x, g_v)) in rows.enumerate() {
        let row = &fwd.rows[i];
        let span = i * n_actions..(i + 1) * n_actions;
        // Entropy: neg (into zeros), the squeeze's reshape, the row sum's broadcast.
        let g_neg = mean_input_grad(g_entropy_each, mask, i);
        let g_plogp = acc(acc(0.0 - g_neg));
        for ((g_lp, &lp), &p) in g_lp
            .iter_mut()
            .zip(&fwd.log_probs[span.clone()])
            .zip(&fwd.probs[span.clone()])
        {
            // Mul(π, log π): π's gradient, then log π's; then Exp(log π) into log π.
            let g_p = acc(g_plogp * lp);
            *g_lp = acc(g_plogp * p) + g_p * p;
        }
        // Value: Sqr(V − R), then the subtraction into V.
        let g_sq = mean_input_grad(g_value_each, mask, i);
        *g_v = acc((row.value_err * g_sq) * 2.0 + 0.0);
        // Policy: neg, the where, Mul(ratio, A), Exp, the subtraction, the squeeze's
        // reshape, then the gather's scatter-add at the action.
        let g_surrogate = mean_input_grad(g_policy_each, mask, i);
        let g_unclipped = acc(if row.take_unclipped { g_surrogate } else { 0.0 });
        let g_ratio = acc(g_unclipped * t.advantages[i]);
        let g_diff = acc(g_ratio * row.ratio);
        g_lp[t.actions[i] as usize] += acc(acc(g_diff));
        // log π = shifted − log Σ: the shifted logits get +g, the normaliser's
        // broadcast −g, summed over the actions.
        for (g_ls, &g) in g_log_sum.iter_mut().zip(g_lp.iter()) {
            *g_ls = 0.0 - g;
        }
        let g_log_normaliser = acc(candle_sum_f32(&g_log_sum));
        let g_exp = acc(acc(g_log_normaliser / row.normaliser));
        for ((g_x, &g), &e) in g_x.iter_mut().zip(&g_lp).zip(&fwd.exp_shifted[span]) {
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
    let per_row = |f: fn(&RowForward) -> f32| -> candle_core::Result<Tensor> {
        Tensor::from_vec(
            fwd.rows.iter().map(f).collect::<Vec<f32>>(),
            n,
            &Device::Cpu,
        )
    };
    let outside: Vec<u8> = fwd.rows.iter().map(|r| u8::from(r.outside_clip)).collect();
    Ok(Some(PpoLoss {
        total,
        policy: scalar(fwd.policy)?,
        value: scalar(fwd.value)?,
        entropy: scalar(fwd.entropy)?,
        new_log_probs: per_row(|r| r.new_log_prob)?,
        ratio: per_row(|r| r.ratio)?,
        outside_clip: Tensor::from_vec(outside, n, &Device::Cpu)?,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic batch of `n` rows over 3 actions, every fifth step padded.
    fn batch(n: usize) -> (Vec<f32>, Vec<f32>, Targets, Constants) {
        let wave = |i: usize, a: f32, b: f32| (i as f32 * a).sin() * b;
        let logits = (0..3 * n).map(|i| wave(i, 0.7, 2.0)).collect();
        let values = (0..n).map(|i| wave(i, 0.3, 1.0)).collect();
        let targets = Targets {
            actions: (0..n).map(|i| (i * 7 % 3) as u32).collect(),
            old_log_probs: (0..n).map(|i| -1.1 + wave(i, 1.3, 0.4)).collect(),
            advantages: (0..n).map(|i| wave(i, 0.9, 1.5)).collect(),
            returns: (0..n).map(|i| wave(i, 0.2, 0.5)).collect(),
            mask: Some((0..n).map(|i| f32::from(i % 5 != 4)).collect()),
        };
        let constants = Constants {
            n_actions: 3,
            lo: 0.8,
            hi: 1.2,
            clip: 0.2,
            value_coef: 0.5,
            entropy_coef: 0.01,
            inv_n: (1.0 / (n - n / 5) as f64) as f32,
        };
        (logits, values, targets, constants)
    }

    #[test]
    fn padded_steps_get_no_gradient() {
        let n = 40;
        let (logits, values, targets, k) = batch(n);
        let fwd = forward(&logits, &values, &targets, &k);
        let (g_logits, g_values) = backward(&fwd, &targets, &k, 1.0);
        for i in 0..n {
            let g_row = &g_logits[3 * i..3 * i + 3];
            if i % 5 == 4 {
                assert_eq!((g_values[i], g_row), (0.0, &[0.0f32; 3][..]), "row {i}");
            } else if i > 0 {
                assert!(
                    g_values[i] != 0.0 && g_row.iter().any(|&g| g != 0.0),
                    "row {i}"
                );
            }
        }
        // The logits' gradient of a row sums to 0 (softmax): up to rounding.
        let row_sum: f32 = g_logits[3..6].iter().sum();
        assert!(row_sum.abs() < 1e-6, "{row_sum}");
    }
}
