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
//! This rule is myopic: it maximises the next reward, not the episode's return. That is the
//! rule of [`Ar1Oracle`] and of [`MarketOracle`] on AR(1) markets, whose signal lasts one bar.
//! It is wrong for persistent signals: a GBM drift or a regime's drift of 5·10⁻⁴ per bar is
//! below a 10 bps cost, so the myopic rule never enters, while holding for 200 bars earns 10 %.
//!
//! # Planning on Markov-state families
//!
//! For the families whose next-bar law depends only on a finite state (GBM and jumps: one
//! state; Markov regimes: the current regime), [`MarketOracle::action_index`] plans instead.
//! The oracle's state is `(s, q)`, the regime and the position held; taking action `a` moves
//! the position to `q' = next(q, a)`, earns `q'·g(s) − c·|q' − q|` in expectation and moves the
//! regime to `j` with probability `P(s → j)`. Value iteration (Bellman 1957; Puterman 1994,
//! §6.3) solves
//!
//! ```text
//! V(s, q) = max_a [ q'·g(s) − c·|q' − q| + γ Σ_j P(s → j)·V(j, q') ]
//! ```
//!
//! over the positions reachable from flat in the action space, with the discount
//! [`PLANNING_DISCOUNT`] (an effective horizon of 200 bars, the episode length of the shipped
//! configs), and the oracle takes the maximising action (the smallest trade among equals). Its
//! expected discounted return is at least the myopic rule's from every state, so it is an upper
//! reference for an agent that must infer the state; it is not the exact optimum of a finite
//! episode (which would depend on the bars left).
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
//!   This is the law of the oracle that knows the regime (the plan above acts on it).
//!
//! These are the formulas of `mrl_data::SyntheticSeries::expected_return`, computed here from
//! what a backtest holds (the closes and the task's per-bar states).

use std::borrow::Cow;
use std::sync::OnceLock;

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

/// The discount `γ` of the planning oracle: an effective horizon `1/(1 − γ)` of 200 bars, the
/// episode length of the shipped configs (see the module docs).
pub const PLANNING_DISCOUNT: f64 = 0.995;

/// Value iteration stops when no value moves by more than this (in units of return).
const PLAN_TOLERANCE: f64 = 1e-12;

/// At most this many value-iteration sweeps (`γ^50 000` is far below any tolerance).
const PLAN_MAX_SWEEPS: usize = 50_000;

/// At most this many distinct positions in a plan (an action space reaching more is refused).
const PLAN_MAX_POSITIONS: usize = 4096;

/// A solved plan of a Markov-state law in one action space: the positions reachable from
/// flat, and the best action by state and position (see the module docs).
#[derive(Debug, Clone, PartialEq)]
struct Plan {
    space: ActionSpace,
    /// Reachable positions, sorted ascending.
    positions: Vec<f64>,
    /// `action[s][p]`: the action index of state `s` at position `positions[p]`.
    action: Vec<Vec<usize>>,
}

/// Index of `q` in the sorted `positions` (the nearest one: positions come from the same
/// arithmetic, so a held position matches to rounding).
fn nearest_position(positions: &[f64], q: f64) -> usize {
    let mut best = 0;
    for (i, p) in positions.iter().enumerate() {
        if (p - q).abs() < (positions[best] - q).abs() {
            best = i;
        }
    }
    best
}

/// The positions reachable from flat in `space` (sorted) and the transition table
/// `next[p][a]`, by breadth-first search over [`ActionSpace::next_position`].
fn reachable_positions(space: &ActionSpace) -> Result<(Vec<f64>, Vec<Vec<usize>>)> {
    let same = |a: f64, b: f64| (a - b).abs() <= 1e-9;
    let mut positions = vec![0.0];
    let mut frontier = 0;
    while frontier < positions.len() {
        let q = positions[frontier];
        for action in 0..space.n_actions() {
            let next = space.next_position(action, q)?;
            if !positions.iter().any(|&p| same(p, next)) {
                if positions.len() == PLAN_MAX_POSITIONS {
                    return Err(Error::InvalidConfig {
                        field: "actions",
                        value: format!("{space:?}"),
                        reason: "the action space reaches too many positions to plan over",
                    });
                }
                positions.push(next);
            }
        }
        frontier += 1;
    }
    positions.sort_by(f64::total_cmp);
    let mut next = Vec::with_capacity(positions.len());
    for &q in &positions {
        let row = (0..space.n_actions())
            .map(|action| {
                let to = space.next_position(action, q)?;
                Ok(nearest_position(&positions, to))
            })
            .collect::<Result<Vec<_>>>()?;
        next.push(row);
    }
    Ok((positions, next))
}

/// Solves the planning oracle's Bellman equation by value iteration (see the module docs):
/// `g[s]` the expected next-bar simple return in state `s`, `transition[s][j] = P(s → j)`.
fn solve_plan<R: AsRef<[f64]>>(
    g: &[f64],
    transition: &[R],
    space: &ActionSpace,
    cost_rate: f64,
) -> Result<Plan> {
    let (positions, next) = reachable_positions(space)?;
    let (n_states, n_positions) = (g.len(), positions.len());
    let q_value = |values: &[Vec<f64>], s: usize, p: usize, to: usize| {
        let continuation: f64 = transition[s]
            .as_ref()
            .iter()
            .zip(values)
            .map(|(prob, row)| prob * row[to])
            .sum();
        positions[to] * g[s] - cost_rate * (positions[to] - positions[p]).abs()
            + PLANNING_DISCOUNT * continuation
    };
    let mut values = vec![vec![0.0; n_positions]; n_states];
    for _ in 0..PLAN_MAX_SWEEPS {
        let mut change: f64 = 0.0;
        let mut updated = values.clone();
        for (s, row) in updated.iter_mut().enumerate() {
            for (p, value) in row.iter_mut().enumerate() {
                let best = next[p]
                    .iter()
                    .map(|&to| q_value(&values, s, p, to))
                    .fold(f64::NEG_INFINITY, f64::max);
                change = change.max((best - values[s][p]).abs());
                *value = best;
            }
        }
        values = updated;
        if change < PLAN_TOLERANCE {
            break;
        }
    }
    let action = (0..n_states)
        .map(|s| {
            (0..n_positions)
                .map(|p| {
                    let mut best: Option<(usize, f64, f64)> = None;
                    for (a, &to) in next[p].iter().enumerate() {
                        let value = q_value(&values, s, p, to);
                        let trade = (positions[to] - positions[p]).abs();
                        let better = match best {
                            None => true,
                            Some((_, v, t)) => {
                                value > v + 1e-12 || (value >= v - 1e-12 && trade < t)
                            }
                        };
                        if better {
                            best = Some((a, value, trade));
                        }
                    }
                    // Every action space has at least one action.
                    best.map_or(0, |(a, _, _)| a)
                })
                .collect()
        })
        .collect();
    Ok(Plan {
        space: *space,
        positions,
        action,
    })
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
        transition: Vec<Vec<f64>>,
        states: Vec<usize>,
    },
}

/// The oracle of any synthetic market whose true law is known, from the true conditional
/// expected return `g_t` of the next bar (GBM and jumps: constant; AR(1): from the last
/// return; Markov regimes: from the current state of every bar). On AR(1) it takes the
/// myopic action of highest expected next reward; on the Markov-state families (GBM, jumps,
/// regimes) it plans over the state and the position held, so that a persistent drift below
/// the cost rate is still worth holding. See the module docs for `g_t` and both rules.
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
    /// The plan of the first action space asked for (Markov-state laws only).
    plan: OnceLock<Plan>,
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
                    transition: p.transition.clone(),
                    states: states.to_vec(),
                }
            }
        };
        Ok(Self {
            law,
            cost_rate,
            plan: OnceLock::new(),
        })
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
        self.check_series(closes)?;
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
            Law::Regime {
                by_state, states, ..
            } => by_state[states[t]],
        })
    }

    /// An error unless a regime oracle's states describe a series of `closes.len()` bars.
    fn check_series(&self, closes: &[f64]) -> Result<()> {
        match &self.law {
            Law::Regime { states, .. } if states.len() != closes.len() => {
                Err(Error::OracleSeriesMismatch {
                    states: states.len(),
                    closes: closes.len(),
                })
            }
            _ => Ok(()),
        }
    }

    /// The plan of a Markov-state law in `actions` (cached for the first space asked for);
    /// `None` for AR(1), which acts myopically.
    fn plan(&self, actions: &ActionSpace) -> Result<Option<Cow<'_, Plan>>> {
        if let Some(plan) = self.plan.get().filter(|plan| plan.space == *actions) {
            return Ok(Some(Cow::Borrowed(plan)));
        }
        let plan = match &self.law {
            Law::Ar1(_) => return Ok(None),
            Law::Constant(g) => solve_plan(&[*g], &[[1.0]], actions, self.cost_rate)?,
            Law::Regime {
                by_state,
                transition,
                ..
            } => solve_plan(by_state, transition, actions, self.cost_rate)?,
        };
        Ok(Some(match self.plan.get() {
            Some(_) => Cow::Owned(plan),
            None => Cow::Borrowed(self.plan.get_or_init(|| plan)),
        }))
    }

    /// The myopic Buy / Sell / Hold action at bar `t`: Buy if `g_t > c`, Sell if `g_t < −c`,
    /// else Hold (the rule [`MarketOracle::action_index`] uses on AR(1) markets; on the
    /// Markov-state families it plans instead). Errors as [`MarketOracle::expected_return`].
    pub fn action(&self, t: usize, closes: &[f64]) -> Result<TargetAction> {
        Ok(threshold_action(
            self.expected_return(t, closes)?,
            self.cost_rate,
        ))
    }

    /// The action index in `actions` at bar `t` from position `prev_position`.
    ///
    /// - AR(1): the myopic rule, the reachable position `q` of highest
    ///   `q·g_t − c·|q − q_prev|`, the smallest trade among equals (for
    ///   [`ActionSpace::Target`], [`MarketOracle::action`]'s index).
    /// - GBM, jumps and regimes: the planned action of the current state at the reachable
    ///   position nearest `prev_position` (see the module docs).
    ///
    /// # Errors
    /// As [`MarketOracle::expected_return`]; [`Error::InvalidConfig`] for an action space that
    /// reaches more than 4096 positions.
    pub fn action_index(
        &self,
        t: usize,
        closes: &[f64],
        prev_position: f64,
        actions: &ActionSpace,
    ) -> Result<usize> {
        let g = self.expected_return(t, closes)?;
        if let Some(plan) = self.plan(actions)? {
            let state = match &self.law {
                Law::Regime { states, .. } => states[t],
                _ => 0,
            };
            let position = nearest_position(&plan.positions, prev_position);
            return Ok(plan.action[state][position]);
        }
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

    fn gbm(drift: f64) -> MarketOracle {
        let process = MarketProcess::Gbm(mrl_data::GbmParams {
            drift,
            volatility: 0.01,
        });
        MarketOracle::new(&process, None, 0.001).unwrap()
    }

    /// A two-state regime market: bull `+d`, bear `−d`, each staying with probability `stay`.
    fn two_regimes(d: f64, stay: f64) -> MarketOracle {
        let state = |label, drift| mrl_data::RegimeState {
            label,
            drift,
            volatility: 0.01,
        };
        let process = MarketProcess::Regime(mrl_data::RegimeParams {
            states: vec![
                state(mrl_data::RegimeLabel::Bull, d),
                state(mrl_data::RegimeLabel::Bear, -d),
            ],
            transition: vec![vec![stay, 1.0 - stay], vec![1.0 - stay, stay]],
        });
        MarketOracle::new(&process, Some(&[0, 1]), 0.001).unwrap()
    }

    #[test]
    fn a_persistent_drift_below_the_cost_is_worth_holding() {
        let closes = [100.0, 100.0];
        let buy = TargetAction::Buy.index();
        let sell = TargetAction::Sell.index();
        let hold = TargetAction::Hold.index();
        // g = e^{5e-4} − 1 < c = 1e-3: the myopic rule holds, but long forever earns
        // g/(1 − γ) ≈ 0.1 for one cost of 1e-3, so the plan buys from flat or short.
        let up = gbm(5e-4);
        assert_eq!(up.action(0, &closes).unwrap(), TargetAction::Hold);
        for prev in [-1.0, 0.0] {
            let a = up.action_index(0, &closes, prev, &ActionSpace::Target);
            assert_eq!(a.unwrap(), buy);
        }
        // Already long: stay long (Buy and Hold both keep +1).
        let at_long = up
            .action_index(0, &closes, 1.0, &ActionSpace::Target)
            .unwrap();
        assert_eq!(
            ActionSpace::Target.next_position(at_long, 1.0).unwrap(),
            1.0
        );
        let down = gbm(-5e-4);
        assert_eq!(
            down.action_index(0, &closes, 0.0, &ActionSpace::Target)
                .unwrap(),
            sell
        );
        // No drift at all (g = 0): nothing is worth a trade.
        assert_eq!(
            gbm(0.0)
                .action_index(0, &closes, 0.0, &ActionSpace::Target)
                .unwrap(),
            hold
        );
    }

    #[test]
    fn the_regime_plan_follows_a_sticky_state_and_ignores_a_fleeting_one() {
        let closes = [100.0, 100.0];
        let space = ActionSpace::Target;
        let position = |oracle: &MarketOracle, t: usize, prev: f64| {
            let a = oracle.action_index(t, &closes, prev, &space).unwrap();
            space.next_position(a, prev).unwrap()
        };
        // Sticky (mean stay 100 bars), |g| = 5e-4·(0.99 − 0.01) < c: the plan holds the
        // state's side whatever it held before, the myopic rule never trades.
        let sticky = two_regimes(5e-4, 0.99);
        for prev in [-1.0, 0.0, 1.0] {
            assert_eq!(position(&sticky, 0, prev), 1.0, "bull from {prev}");
            assert_eq!(position(&sticky, 1, prev), -1.0, "bear from {prev}");
        }
        assert_eq!(sticky.action(0, &closes).unwrap(), TargetAction::Hold);
        // Switching every other bar on average (stay 0.5): g = 0 in both states, no trade.
        let fleeting = two_regimes(5e-4, 0.5);
        for t in 0..2 {
            assert_eq!(position(&fleeting, t, 0.0), 0.0);
        }
    }

    #[test]
    fn the_sizing_plan_covers_the_grid_and_steps_toward_the_drift() {
        let closes = [100.0, 100.0];
        let oracle = gbm(5e-4);
        let space = ActionSpace::SIZING;
        let plan = oracle.plan(&space).unwrap().unwrap();
        let grid: Vec<f64> = (-4..=4).map(|k| f64::from(k) * 0.25).collect();
        assert_eq!(plan.positions, grid);
        // From any position below +1 the plan moves up one grid step (or closes a short,
        // the larger move toward +1), and stays at +1.
        for &q in &grid {
            let a = oracle.action_index(0, &closes, q, &space).unwrap();
            let next = space.next_position(a, q).unwrap();
            let expected = if q < 0.0 { 0.0 } else { (q + 0.25).min(1.0) };
            assert_eq!(next, expected, "from {q}");
        }
        // A second action space is solved afresh, not read from the first one's cache.
        let target = oracle.action_index(0, &closes, 0.0, &ActionSpace::Target);
        assert_eq!(target.unwrap(), TargetAction::Buy.index());
    }

    #[test]
    fn the_plan_is_worth_at_least_the_myopic_rule_from_every_state() {
        // Exact policy evaluation of both rules on regime markets drawn from a seeded RNG.
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for _ in 0..20 {
            let d = rng.random_range(1e-4..2e-3);
            let stay = rng.random_range(0.5..0.999);
            let oracle = two_regimes(d, stay);
            let Law::Regime {
                by_state,
                transition,
                ..
            } = &oracle.law
            else {
                unreachable!("a regime law")
            };
            let space = ActionSpace::Target;
            let plan = oracle.plan(&space).unwrap().unwrap();
            let (positions, next) = reachable_positions(&space).unwrap();
            let myopic = |s: usize, p: usize| {
                let action = threshold_action(by_state[s], 0.001).index();
                next[p][action]
            };
            let planned = |s: usize, p: usize| next[p][plan.action[s][p]];
            let evaluate = |rule: &dyn Fn(usize, usize) -> usize| {
                let mut v = vec![vec![0.0; positions.len()]; 2];
                for _ in 0..20_000 {
                    let mut updated = v.clone();
                    for (s, row) in updated.iter_mut().enumerate() {
                        for (p, value) in row.iter_mut().enumerate() {
                            let to = rule(s, p);
                            let cont: f64 = (0..2).map(|j| transition[s][j] * v[j][to]).sum();
                            *value = positions[to] * by_state[s]
                                - 0.001 * (positions[to] - positions[p]).abs()
                                + PLANNING_DISCOUNT * cont;
                        }
                    }
                    v = updated;
                }
                v
            };
            let (v_plan, v_myopic) = (evaluate(&planned), evaluate(&myopic));
            for s in 0..2 {
                for p in 0..positions.len() {
                    assert!(
                        v_plan[s][p] >= v_myopic[s][p] - 1e-9,
                        "d {d}, stay {stay}, state {s}, position {}: {} < {}",
                        positions[p],
                        v_plan[s][p],
                        v_myopic[s][p]
                    );
                }
            }
        }
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
