//! Oracles of synthetic markets: the best one-step action of the trading env when the true
//! law of the market is known, so that adaptation can be scored as a share of the best
//! possible. [`Ar1Oracle`] knows an AR(1)'s `φ`, `μ` and `σ`; [`MarketOracle`] covers every
//! synthetic family (GBM, AR(1), Markov regimes, jumps) with the same rule.
//!
//! # Derivation
//!
//! The env's reward for taking position `q` at bar `t` is
//! `q·(p_{t+1}/p_t − 1) − c·|q − q_prev|` (simple return, cost rate `c`). Given what the
//! oracle knows at bar `t`, let `g_t = E[p_{t+1}/p_t − 1 | bars 0..=t, true law]` be the
//! expected *simple* return of the next bar. The expected reward of a new position `q` is
//! `q·g_t − c·|q − q_prev|`. In the Buy / Sell / Hold space `q ∈ {+1, −1, q_prev}`, and for any
//! `q_prev ∈ [−1, 1]`: Buy beats Hold by `(1 − q_prev)(g_t − c)` and Sell beats Hold by
//! `(1 + q_prev)(−g_t − c)`. Hence
//!
//! ```text
//! Buy if g_t > c,   Sell if g_t < −c,   else Hold,
//! ```
//!
//! the threshold being the cost rate whatever the current position (a flip costs `2c` but
//! also gains `2|g_t|`). In the position-sizing space the reachable positions are the grid
//! neighbours of `q_prev`, `q_prev` and 0; [`MarketOracle::action_index`] takes the one of
//! highest `q·g_t − c·|q − q_prev|` (a concave function of `q`, so it moves toward `+1` when
//! `g_t > c`, toward `−1` when `g_t < −c`, and otherwise stays, as above).
//!
//! The rule is myopic (it maximises the next reward, not the episode's return): with
//! persistent signals a planner could hold through small opposite signals to save costs, so
//! an oracle is an upper reference, not the exact episode optimum.
//!
//! # The expected return of each family
//!
//! A log return `r ~ N(m, σ²)` has `E[e^r] = e^{m + σ²/2}`; using `m` alone would be biased by
//! `σ²/2` (Jensen): the sign of `m` is not the sign of `g` when `|m| < σ²/2`.
//!
//! - **GBM** and **jumps** (drift compensated): `g = e^μ − 1` at every bar, so the oracle is
//!   always long, always short or always flat, by the sign of `g` against the cost.
//! - **AR(1)** `r_{t+1} = μ + φ (r_t − μ) + σ ε` with `r_t = ln(p_t/p_{t−1})`:
//!   `g_t = exp(μ + φ (r_t − μ) + σ²/2) − 1`. At the first bar of the data, where there is no
//!   return yet, the stationary law `r ~ N(μ, σ²/(1 − φ²))` gives
//!   `g_0 = exp(μ + σ²/(2(1 − φ²))) − 1` ([`MarketOracle`] only; [`Ar1Oracle::act`] holds).
//! - **Markov regimes** (Hamilton 1989) with the current state `s_t` known: the next bar is
//!   drawn in state `j` with probability `P(s_t → j)` and then has log return
//!   `N(μ_j − σ_j²/2, σ_j²)`, whose gross mean is `e^{μ_j}`, so
//!
//!   ```text
//!   g_t = E[r_{t+1} | s_t] = Σ_j P(s_t → j)·(e^{μ_j} − 1) = Σ_j P(s_t → j)·e^{μ_j} − 1.
//!   ```
//!
//!   This is the oracle that knows the regime, an upper bound for an agent that must infer it.
//!
//! These are the formulas of `mrl_data::SyntheticSeries::expected_return`, computed here from
//! what a backtest holds (the closes and the task's per-bar states).

use mrl_data::{Ar1Params, MarketProcess};

use crate::{ActionSpace, Error, Result, TargetAction, TaskEnv, TaskKind, TradingEnv};

/// Buy if `g > c`, Sell if `g < −c`, else Hold (the module docs derive it).
fn threshold_action(expected_return: f64, cost_rate: f64) -> TargetAction {
    if expected_return > cost_rate {
        TargetAction::Buy
    } else if expected_return < -cost_rate {
        TargetAction::Sell
    } else {
        TargetAction::Hold
    }
}

/// An error unless `cost_rate ∈ [0, 1)`.
fn check_cost_rate(cost_rate: f64) -> Result<()> {
    if cost_rate.is_finite() && (0.0..1.0).contains(&cost_rate) {
        Ok(())
    } else {
        Err(Error::InvalidConfig {
            field: "cost_rate",
            value: cost_rate.to_string(),
            reason: "expected a value in [0, 1)",
        })
    }
}

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
        check_cost_rate(cost_rate)?;
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
        threshold_action(self.expected_return(last_log_return), self.cost_rate)
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

/// What the oracle knows about the next bar, by family (see the module docs).
#[derive(Debug, Clone, PartialEq)]
enum Law {
    /// GBM and jumps: the same `g = e^μ − 1` at every bar.
    Constant(f64),
    /// AR(1): `g_t` from the last log return.
    Ar1(Ar1Params),
    /// Markov regimes: `g` of each current state, and the state of every bar of the series.
    Regime {
        by_state: Vec<f64>,
        states: Vec<usize>,
    },
}

/// The myopic oracle of any synthetic market whose true law is known: the action of highest
/// expected next reward, from the true conditional expected return `g_t` of the next bar
/// (GBM and jumps: constant; AR(1): from the last return; Markov regimes: from the current
/// state of every bar). See the module docs for the derivation of `g_t` and of the rule.
///
/// Bars are indices into the series the task generated (its [`TradingEnv`] market): a
/// regime oracle holds the state of each of them and refuses closes of another length.
///
/// Wiring into a backtest: for the position after bar `t`, given the closes of the task's
/// series and the position `prev` held before,
/// `actions.next_position(oracle.action_index(t, closes, prev, &actions)?, prev)?`.
#[derive(Debug, Clone, PartialEq)]
pub struct MarketOracle {
    law: Law,
    cost_rate: f64,
}

impl MarketOracle {
    /// The oracle of `process` trading at `cost_rate ∈ [0, 1)`; `regimes` is the state of
    /// every bar, required for (and only read by) [`MarketProcess::Regime`].
    ///
    /// # Errors
    /// [`Error::Data`] for invalid parameters, [`Error::InvalidConfig`] for a cost rate out of
    /// range, for a regime process without states, or for a state out of range.
    pub fn new(process: &MarketProcess, regimes: Option<&[usize]>, cost_rate: f64) -> Result<Self> {
        process.validate()?;
        check_cost_rate(cost_rate)?;
        let law = match process {
            MarketProcess::Gbm(p) => Law::Constant(p.drift.exp_m1()),
            MarketProcess::Jump(p) => Law::Constant(p.drift.exp_m1()),
            MarketProcess::Ar1(p) => Law::Ar1(*p),
            MarketProcess::Regime(p) => {
                let states = regimes.ok_or_else(|| Error::InvalidConfig {
                    field: "regimes",
                    value: "none".to_owned(),
                    reason: "a regime oracle needs the state of every bar",
                })?;
                if let Some(bad) = states.iter().find(|&&s| s >= p.states.len()) {
                    return Err(Error::InvalidConfig {
                        field: "regimes",
                        value: bad.to_string(),
                        reason: "a state index is out of range of the process's states",
                    });
                }
                // g(i) = Σ_j P(i → j)·e^{μ_j} − 1.
                let by_state = p
                    .transition
                    .iter()
                    .map(|row| {
                        let gross: f64 = row
                            .iter()
                            .zip(&p.states)
                            .map(|(prob, state)| prob * state.drift.exp())
                            .sum();
                        gross - 1.0
                    })
                    .collect();
                Law::Regime {
                    by_state,
                    states: states.to_vec(),
                }
            }
        };
        Ok(Self { law, cost_rate })
    }

    /// The oracle of a sampled task: `Some` for a synthetic task (any family, either action
    /// space), at the env's cost rate; `None` for real-data tasks, which have no known law.
    pub fn for_task(env: &TaskEnv) -> Option<Self> {
        match &env.task_info().kind {
            TaskKind::Synthetic {
                process, regimes, ..
            } => Self::new(
                process,
                regimes.as_deref(),
                env.trading().config().cost_rate,
            )
            .ok(),
            _ => None,
        }
    }

    /// The cost rate `c` of the threshold.
    pub fn cost_rate(&self) -> f64 {
        self.cost_rate
    }

    /// `g_t`: the expected simple return `E[p_{t+1}/p_t − 1]` of the bar after `t`, given the
    /// closes up to `t` (AR(1)) or the state of bar `t` (regimes).
    ///
    /// # Errors
    /// [`Error::BarOutOfRange`] for `t ≥ closes.len()`; [`Error::OracleSeriesMismatch`] when a
    /// regime oracle is given closes of another series than the one its states describe.
    pub fn expected_return(&self, t: usize, closes: &[f64]) -> Result<f64> {
        if t >= closes.len() {
            return Err(Error::BarOutOfRange {
                bar: t,
                len: closes.len(),
            });
        }
        Ok(match &self.law {
            Law::Constant(g) => *g,
            Law::Ar1(p) => match t.checked_sub(1) {
                Some(prev) => {
                    let last_log_return = (closes[t] / closes[prev]).ln();
                    (p.conditional_mean(last_log_return) + 0.5 * p.volatility * p.volatility)
                        .exp_m1()
                }
                None => {
                    let variance = p.volatility * p.volatility / (1.0 - p.phi * p.phi);
                    (p.drift + 0.5 * variance).exp_m1()
                }
            },
            Law::Regime { by_state, states } => {
                if states.len() != closes.len() {
                    return Err(Error::OracleSeriesMismatch {
                        states: states.len(),
                        closes: closes.len(),
                    });
                }
                by_state[states[t]]
            }
        })
    }

    /// The Buy / Sell / Hold action at bar `t`: Buy if `g_t > c`, Sell if `g_t < −c`, else
    /// Hold. Errors as [`MarketOracle::expected_return`].
    pub fn action(&self, t: usize, closes: &[f64]) -> Result<TargetAction> {
        Ok(threshold_action(
            self.expected_return(t, closes)?,
            self.cost_rate,
        ))
    }

    /// The action index in `actions` at bar `t` from position `prev_position`: the
    /// reachable position `q` of highest `q·g_t − c·|q − q_prev|`, the smallest trade among
    /// equals. For [`ActionSpace::Target`] it is [`MarketOracle::action`]'s index.
    ///
    /// # Errors
    /// As [`MarketOracle::expected_return`].
    pub fn action_index(
        &self,
        t: usize,
        closes: &[f64],
        prev_position: f64,
        actions: &ActionSpace,
    ) -> Result<usize> {
        let g = self.expected_return(t, closes)?;
        if *actions == ActionSpace::Target {
            return Ok(threshold_action(g, self.cost_rate).index());
        }
        let mut best = None;
        for action in 0..actions.n_actions() {
            let q = actions.next_position(action, prev_position)?;
            let trade = (q - prev_position).abs();
            let value = q * g - self.cost_rate * trade;
            let better = match best {
                None => true,
                Some((_, best_value, best_trade)) => {
                    value > best_value || (value == best_value && trade < best_trade)
                }
            };
            if better {
                best = Some((action, value, trade));
            }
        }
        // Every action space has at least one action.
        Ok(best.map_or(0, |(action, _, _)| action))
    }

    /// The action at the env's current bar and position, in the env's action space.
    ///
    /// # Errors
    /// As [`MarketOracle::expected_return`], for an env on another series than the task's.
    pub fn act(&self, env: &TradingEnv) -> Result<usize> {
        self.action_index(
            env.bar(),
            env.market().closes(),
            env.position(),
            &env.config().actions,
        )
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
