//! Direct Preference Optimization (Rafailov et al. 2023, "Direct Preference Optimization:
//! Your Language Model is Secretly a Reward Model", arXiv:2305.18290, eq. 7).
//!
//! For preference pairs (chosen `y_w`, rejected `y_l`) of a prompt `x`, with the policy's
//! and the frozen reference's summed response log-probabilities,
//!
//! ```text
//! r_w = β (log π(y_w|x) − log π_ref(y_w|x)),   r_l = β (log π(y_l|x) − log π_ref(y_l|x))
//! L   = −mean log σ(r_w − r_l)
//! ```
//!
//! `r_w` and `r_l` are the implicit rewards; their difference is the reward margin.

use candle_core::{D, Tensor};

use crate::error::{Error, Result};

/// Summed log-probability of the response tokens `ids[prompt_len..]` under `logits`.
///
/// # Shapes
/// `logits`: `[T, vocab]` for `ids` of length `T` (position `t` predicts token `t + 1`)
/// → a scalar.
///
/// # Errors
/// [`Error::InvalidSetting`] unless `1 ≤ prompt_len < T`; candle errors.
pub fn response_logprob(logits: &Tensor, ids: &[u32], prompt_len: usize) -> Result<Tensor> {
    let t = ids.len();
    if prompt_len == 0 || prompt_len >= t {
        return Err(Error::setting(
            "prompt_len",
            prompt_len,
            "at least 1 and shorter than the sequence",
        ));
    }
    let n = t - prompt_len;
    // Rows prompt_len−1 .. T−2 predict tokens prompt_len .. T−1.
    let rows = logits.narrow(0, prompt_len - 1, n)?; // [n, V]
    let max = rows.max_keepdim(D::Minus1)?.detach();
    let shifted = rows.broadcast_sub(&max)?;
    let log_z = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?; // [n, 1]
    let targets = Tensor::new(&ids[prompt_len..], logits.device())?.reshape((n, 1))?;
    let picked = shifted.gather(&targets, 1)?; // [n, 1]
    Ok((picked - log_z)?.sum_all()?)
}

/// The DPO loss of a batch and its implicit rewards.
#[derive(Debug, Clone)]
pub struct DpoLoss {
    /// `−mean log σ(r_w − r_l)`, a scalar tensor (differentiable).
    pub loss: Tensor,
    /// `r_w` per pair.
    pub chosen_rewards: Vec<f64>,
    /// `r_l` per pair.
    pub rejected_rewards: Vec<f64>,
}

impl DpoLoss {
    /// Mean of `r_w − r_l`.
    pub fn mean_margin(&self) -> f64 {
        let n = self.chosen_rewards.len().max(1) as f64;
        self.chosen_rewards
            .iter()
            .zip(&self.rejected_rewards)
            .map(|(w, l)| w - l)
            .sum::<f64>()
            / n
    }
}

/// The DPO loss from summed response log-probabilities.
///
/// `log σ(z)` is computed as `−(m + ln(e^{−m} + e^{−z−m}))`, `m = max(0, −z)`: finite for
/// any `z`.
///
/// # Shapes
/// Each input: `[pairs]`.
///
/// # Errors
/// [`Error::InvalidSetting`] for `beta` not finite and > 0; candle errors (shape mismatch).
pub fn dpo_loss(
    policy_chosen: &Tensor,
    policy_rejected: &Tensor,
    reference_chosen: &Tensor,
    reference_rejected: &Tensor,
    beta: f64,
) -> Result<DpoLoss> {
    if !(beta.is_finite() && beta > 0.0) {
        return Err(Error::setting("beta", beta, "a finite number > 0"));
    }
    let chosen = ((policy_chosen - reference_chosen.detach())? * beta)?;
    let rejected = ((policy_rejected - reference_rejected.detach())? * beta)?;
    let z = (&chosen - &rejected)?;
    // −log σ(z) = log(1 + e^{−z}) = m + ln(e^{−m} + e^{−z−m}) with m = max(0, −z) held
    // constant: finite for any z, and its gradient is exactly −σ(−z) (also at z = 0).
    let m = z.neg()?.relu()?.detach();
    let softplus_neg = (&m + (m.neg()?.exp()? + (z.neg()? - &m)?.exp()?)?.log()?)?;
    let loss = softplus_neg.mean_all()?;
    let to_vec = |t: &Tensor| -> Result<Vec<f64>> {
        Ok(t.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?)
    };
    Ok(DpoLoss {
        loss,
        chosen_rewards: to_vec(&chosen)?,
        rejected_rewards: to_vec(&rejected)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn sigmoid(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    #[test]
    fn loss_and_gradients_match_the_formula() {
        let pc = Var::new(&[-10.0f64, -3.0, -50.0], &Device::Cpu).unwrap();
        let pr = Var::new(&[-12.0f64, -2.0, -49.0], &Device::Cpu).unwrap();
        let rc = Tensor::new(&[-11.0f64, -3.5, -50.0], &Device::Cpu).unwrap();
        let rr = Tensor::new(&[-11.0f64, -2.5, -10.0], &Device::Cpu).unwrap();
        let beta = 0.5;
        let out = dpo_loss(&pc, &pr, &rc, &rr, beta).unwrap();
        // z_i = β((pc − rc) − (pr − rr)) = 0.5·(1 + 1), 0.5·(0.5 − 0.5), 0.5·(0 + 39)
        let z = [1.0, 0.0, 19.5];
        let want: f64 = z.iter().map(|&z: &f64| -sigmoid(z).ln()).sum::<f64>() / 3.0;
        let got = out.loss.to_scalar::<f64>().unwrap();
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        assert_eq!(out.chosen_rewards, vec![0.5, 0.25, 0.0]);
        assert_eq!(out.rejected_rewards, vec![-0.5, 0.25, -19.5]);
        assert!((out.mean_margin() - 20.5 / 3.0).abs() < 1e-12);
        // dL/dpc_i = −β σ(−z_i) / n, dL/dpr_i = +β σ(−z_i) / n.
        let grads = out.loss.backward().unwrap();
        let gc = grads.get(&pc).unwrap().to_vec1::<f64>().unwrap();
        let gr = grads.get(&pr).unwrap().to_vec1::<f64>().unwrap();
        for i in 0..3 {
            let g = beta * sigmoid(-z[i]) / 3.0;
            assert!((gc[i] + g).abs() < 1e-12, "{i}: {} vs {}", gc[i], -g);
            assert!((gr[i] - g).abs() < 1e-12, "{i}: {} vs {g}", gr[i]);
        }
    }

    #[test]
    fn extreme_margins_stay_finite() {
        let big = Tensor::new(&[1e6f64, -1e6], &Device::Cpu).unwrap();
        let zero = Tensor::new(&[0.0f64, 0.0], &Device::Cpu).unwrap();
        let out = dpo_loss(&big, &zero, &zero, &zero, 1.0).unwrap();
        let loss = out.loss.to_scalar::<f64>().unwrap();
        // log σ(1e6) = 0, log σ(−1e6) = −1e6: mean 5e5.
        assert!((loss - 5e5).abs() < 1e-6, "{loss}");
        assert!(matches!(
            dpo_loss(&big, &zero, &zero, &zero, 0.0),
            Err(Error::InvalidSetting { field: "beta", .. })
        ));
    }

    #[test]
    fn response_logprob_sums_log_softmax_of_the_targets() {
        // T = 3, V = 2; prompt of 1 token, response tokens 1 and 0.
        let logits = Tensor::new(&[[0.0f64, 1.0], [2.0, 0.0], [5.0, 5.0]], &Device::Cpu).unwrap();
        let lp = response_logprob(&logits, &[0, 1, 0], 1).unwrap();
        let want = (1.0 - (1.0f64.exp() + 1.0).ln()) + (2.0 - (2.0f64.exp() + 1.0).ln());
        assert!((lp.to_scalar::<f64>().unwrap() - want).abs() < 1e-12);
        assert!(response_logprob(&logits, &[0, 1, 0], 3).is_err());
        assert!(response_logprob(&logits, &[0, 1, 0], 0).is_err());
    }
}
