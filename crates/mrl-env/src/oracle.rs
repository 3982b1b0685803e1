//! The AR(1) oracle: the best one-step action of the trading env when the true `φ`, `μ` and
//! `σ` of an AR(1) market are known, so that adaptation can be scored against it.
//!
//! # Derivation
//!
//! The env's reward for taking position `q` at bar `t` is
//! `q·(p_{t+1}/p_t − 1) − c·|q − q_prev|` (simple return, cost rate `c`). The market's *log*
//! returns follow `r_{t+1} = μ + φ (r_t − μ) + σ ε`, so given `r_t = ln(p_t/p_{t−1})`,
//! `r_{t+1} ~ N(m_t, σ²)` with `m_t = μ + φ (r_t − μ)`, and the expected *simple* return is the
//! log-normal mean
//!
//! ```text
//! g_t = E[p_{t+1}/p_t − 1 | r_t] = exp(m_t + σ²/2) − 1.
//! ```
//!
//! Using `m_t` alone would be biased by `σ²/2` (Jensen): the sign of `m_t` is not the sign of
//! `g_t` when `|m_t| < σ²/2`. The expected reward of a new position `q` is
//! `q·g_t − c·|q − q_prev|`. In the Buy / Sell / Hold space `q ∈ {+1, −1, q_prev}`, and for any
//! `q_prev ∈ [−1, 1]`: Buy beats Hold by `(1 − q_prev)(g_t − c)` and Sell beats Hold by
//! `(1 + q_prev)(−g_t − c)`. Hence
//!
//! ```text
//! Buy if g_t > c,   Sell if g_t < −c,   else Hold,
//! ```
//!
//! the threshold being the cost rate whatever the current position (a flip costs `2c` but
//! also gains `2|g_t|`). The rule is myopic (it maximises the next reward, not the episode's
//! return): with persistent signals a planner could hold through small opposite signals to
//! save costs, so the oracle is an upper reference, not the exact episode optimum.

use mrl_data::{Ar1Params, MarketProcess};

use crate::{ActionSpace, Error, Result, TargetAction, TaskEnv, TaskKind, TradingEnv};

/// The myopic Bayes-optimal policy of an AR(1) market with known parameters (see the module
/// docs for the derivation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ar1Oracle {
    params: Ar1Params,
    cost_rate: f64,
}

impl Ar1Oracle {
    /// The oracle of `params` trading at `cost_rate ∈ [0, 1)`.
    pub fn new(params: Ar1Params, cost_rate: f64) -> Result<Self> {
        params.validate()?;
        if !(cost_rate.is_finite() && (0.0..1.0).contains(&cost_rate)) {
            return Err(Error::InvalidConfig {
                field: "cost_rate",
                value: cost_rate.to_string(),
                reason: "expected a value in [0, 1)",
            });
        }
        Ok(Self { params, cost_rate })
    }

    /// The oracle of a sampled task: `Some` for an AR(1) synthetic task traded with
    /// Buy / Sell / Hold, at the env's cost rate; `None` otherwise.
    pub fn for_task(env: &TaskEnv) -> Option<Self> {
        let config = env.trading().config();
        match (&env.task_info().kind, config.actions) {
            (
                TaskKind::Synthetic {
                    process: MarketProcess::Ar1(params),
                    ..
                },
                ActionSpace::Target,
            ) => Self::new(*params, config.cost_rate).ok(),
            _ => None,
        }
    }

    /// The true parameters.
    pub fn params(&self) -> &Ar1Params {
        &self.params
    }

    /// `g = exp(μ + φ (r_t − μ) + σ²/2) − 1`: the expected simple return of the next bar.
    pub fn expected_return(&self, last_log_return: f64) -> f64 {
        let sigma = self.params.volatility;
        (self.params.conditional_mean(last_log_return) + 0.5 * sigma * sigma).exp_m1()
    }

    /// Buy if `g > c`, Sell if `g < −c`, else Hold.
    pub fn action(&self, last_log_return: f64) -> TargetAction {
        let g = self.expected_return(last_log_return);
        if g > self.cost_rate {
            TargetAction::Buy
        } else if g < -self.cost_rate {
            TargetAction::Sell
        } else {
            TargetAction::Hold
        }
    }

    /// The action at the env's current bar `t`, from `r_t = ln(p_t / p_{t−1})` (Hold at the
    /// first bar of the data, where there is no return yet).
    pub fn act(&self, env: &TradingEnv) -> TargetAction {
        let t = env.bar();
        let closes = env.market().closes();
        match (t.checked_sub(1).and_then(|s| closes.get(s)), closes.get(t)) {
            (Some(prev), Some(close)) => self.action((close / prev).ln()),
            _ => TargetAction::Hold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oracle(phi: f64, cost_rate: f64) -> Ar1Oracle {
        Ar1Oracle::new(
            Ar1Params {
                drift: 0.0,
                phi,
                volatility: 0.01,
            },
            cost_rate,
        )
        .unwrap()
    }

    #[test]
    fn expected_return_is_the_lognormal_mean() {
        let o = oracle(0.5, 0.001);
        let expected = (0.5_f64 * 0.02 + 0.5 * 0.01 * 0.01).exp() - 1.0;
        assert!((o.expected_return(0.02) - expected).abs() < 1e-15);
        // m = 0 but g = e^{σ²/2} − 1 > 0: the Jensen term.
        assert!(o.expected_return(0.0) > 0.0);
    }

    #[test]
    fn momentum_follows_and_mean_reversion_fades_the_last_return() {
        assert_eq!(oracle(0.4, 0.001).action(0.01), TargetAction::Buy);
        assert_eq!(oracle(0.4, 0.001).action(-0.01), TargetAction::Sell);
        assert_eq!(oracle(-0.4, 0.001).action(0.01), TargetAction::Sell);
        assert_eq!(oracle(-0.4, 0.001).action(-0.01), TargetAction::Buy);
        // |g| ≈ 0.4·0.002 = 0.0008 < c: not worth the cost.
        assert_eq!(oracle(0.4, 0.001).action(0.002), TargetAction::Hold);
    }

    #[test]
    fn invalid_parameters_are_errors() {
        let params = Ar1Params {
            drift: 0.0,
            phi: 0.3,
            volatility: 0.01,
        };
        assert!(matches!(
            Ar1Oracle::new(params, 1.0),
            Err(Error::InvalidConfig {
                field: "cost_rate",
                ..
            })
        ));
        let explosive = Ar1Params { phi: 1.2, ..params };
        assert!(matches!(
            Ar1Oracle::new(explosive, 0.001),
            Err(Error::Data(_))
        ));
    }
}
