//! The walk-forward engine: runs a policy (a network or a fixed rule) through the trials
//! of every window, and books the positions it took.
//!
//! # No look-ahead
//!
//! - The agent sees only what the trading env shows at bar `t` (features of closes `≤ t`,
//!   its position and episode P&L): `mrl_env::TradingObs`.
//! - Every window's trial starts from a zero hidden state and runs its adaptation episodes
//!   on bars strictly before the window ([`plan_windows`](crate::plan_windows)).
//! - All windows run as one batch of independent rows (one RL² trial each); a sampled
//!   action draws one number per row per step whatever the data, so no row's draws depend
//!   on another row's bars.
//!
//! # Booking
//!
//! Positions become returns with the env's accounting ([`step_pnl`]): the position `q_t`
//! chosen at bar `t` earns `q_t·(p_{t+1}/p_t − 1)` and pays `c·|q_t − q_{t−1}|`. Over the
//! test period the book is continuous ([`book_test_period`]): the position before the first
//! test bar is flat and each window's first trade is charged against the position the
//! previous window ended with, so buy-and-hold pays one entry cost. Inside the trial each
//! episode starts flat, as the agent saw it ([`episode_return`]).

use std::sync::Arc;

use mrl_agent::{Policy, PolicyInputs, RolloutWorkspace};
use mrl_env::{
    ActionSpace, Env, MarketData, MarketOracle, TradingConfig, TradingEnv, TradingObs, step_pnl,
};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{Error, Result, TraderRule, WalkForwardConfig, Window, position_toward};

/// A fixed rule that chooses positions without learning.
#[derive(Debug, Clone, PartialEq)]
pub enum Baseline {
    /// Long one unit throughout.
    BuyAndHold,
    /// No position.
    Flat,
    /// A uniform random action at every step (seeded).
    Random,
    /// The myopic best action of a synthetic market whose true law is known
    /// ([`MarketOracle`]: AR(1) coefficients, the current regime state, a constant drift), in
    /// either action space. Reads the bars of the series it was built for.
    Oracle(MarketOracle),
    /// A trader rule's target position ([`TraderRule::targets`], from the closes up to the
    /// decision bar), reached with the env's actions ([`position_toward`]).
    Rule(TraderRule),
}

impl Baseline {
    /// The report key: `buy_and_hold`, `flat`, `random`, `oracle`, or the rule's
    /// ([`TraderRule::name`]).
    pub fn name(&self) -> &'static str {
        match self {
            Self::BuyAndHold => "buy_and_hold",
            Self::Flat => "flat",
            Self::Random => "random",
            Self::Oracle(_) => "oracle",
            Self::Rule(rule) => rule.name(),
        }
    }

    /// The position held after bar `t`, from `prev` (the position held before);
    /// `targets` holds a rule's [`TraderRule::targets`] over all of `closes` (empty for
    /// the other baselines).
    fn position(
        &self,
        closes: &[f64],
        targets: &[f64],
        t: usize,
        prev: f64,
        actions: &ActionSpace,
        rng: &mut ChaCha8Rng,
    ) -> Result<f64> {
        Ok(match self {
            Self::BuyAndHold => 1.0,
            Self::Flat => 0.0,
            Self::Random => {
                let action = rng.random_range(0..actions.n_actions());
                actions.next_position(action, prev)?
            }
            Self::Oracle(oracle) => {
                let action = oracle.action_index(t, closes, prev, actions)?;
                actions.next_position(action, prev)?
            }
            Self::Rule(_) => position_toward(actions, prev, targets[t])?,
        })
    }
}

/// The positions a policy took: `positions[w][e]` holds one position per decision bar of
/// episode `e` of window `w` (adaptation episodes first, the evaluation window last);
/// shorter than the episode when it terminated early (equity exhausted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyRun {
    /// Positions by window, then episode, then step.
    pub positions: Vec<Vec<Vec<f64>>>,
}

/// The trading settings of an episode of `max_steps` bars.
fn trading_config(config: &WalkForwardConfig, max_steps: usize) -> TradingConfig {
    TradingConfig {
        max_steps,
        cost_rate: config.cost_rate,
        reward_scale: config.reward_scale,
        reward: config.reward,
        actions: config.actions,
        ..TradingConfig::default()
    }
}

/// Checks that `policy` reads the inputs the env writes; `name` labels the error.
pub(crate) fn check_policy(
    policy: &Policy,
    name: &'static str,
    config: &WalkForwardConfig,
) -> Result<()> {
    let c = policy.config();
    let (env_obs, env_actions) = (TradingObs::DIM, config.actions.n_actions());
    if c.obs_dim != env_obs || c.n_actions != env_actions {
        return Err(Error::InputMismatch {
            name,
            policy_obs: c.obs_dim,
            policy_actions: c.n_actions,
            policy_input: c.input_dim(),
            env_obs,
            env_actions,
            env_input: env_obs + env_actions + 2,
        });
    }
    Ok(())
}

/// One trial in progress (one window).
struct Row {
    env: TradingEnv,
    episode: usize,
    active: bool,
    prev_action: Option<usize>,
    prev_reward: f32,
    prev_done: bool,
    positions: Vec<Vec<f64>>,
}

/// Runs `policy` through the trial of every window at once (one batch row per window):
/// greedy when `rng` is `None`, sampled from it otherwise.
///
/// Each row starts from a zero hidden state and input `[obs, 0, …, 0]`; after every step the
/// next input carries `one_hot(a)`, the env reward (times the feedback scale) and the done
/// flag, and an episode's end starts the next scheduled episode, as `mrl_env::Trial` does.
///
/// # Errors
/// [`Error::InputMismatch`] for a policy that does not fit the env, env errors (a window
/// outside the data), agent errors (non-finite logits).
pub fn run_policy(
    market: &Arc<MarketData>,
    windows: &[Window],
    policy: &Policy,
    config: &WalkForwardConfig,
    mut rng: Option<&mut ChaCha8Rng>,
) -> Result<PolicyRun> {
    check_policy(policy, "policy", config)?;
    if windows.is_empty() {
        return Ok(PolicyRun {
            positions: Vec::new(),
        });
    }
    let eval_env = TradingEnv::new(market.clone(), trading_config(config, config.window_len))?;
    let adapt_env = match config.adaptation_episodes {
        0 => None,
        _ => Some(TradingEnv::new(
            market.clone(),
            trading_config(config, config.adaptation_len),
        )?),
    };
    let episodes = config.episodes_per_trial();
    let env_for = |window: &Window, episode: usize| -> Result<TradingEnv> {
        let mut env = match (&adapt_env, episode < config.adaptation_episodes) {
            (Some(adapt), true) => adapt.clone(),
            _ => eval_env.clone(),
        };
        let start = window.episodes().nth(episode).map_or(0, |r| r.start);
        env.reset_at(start)?;
        Ok(env)
    };
    let mut rows = windows
        .iter()
        .map(|w| {
            Ok(Row {
                env: env_for(w, 0)?,
                episode: 0,
                active: true,
                prev_action: None,
                prev_reward: 0.0,
                prev_done: false,
                positions: vec![Vec::new(); episodes],
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let batch_size = rows.len();
    let obs_dim = TradingObs::DIM;
    let mut workspace = RolloutWorkspace::new(policy, batch_size)?;
    let mut obs = vec![0.0f32; batch_size * obs_dim];
    let mut prev_actions = vec![None; batch_size];
    let mut prev_rewards = vec![0.0f32; batch_size];
    let mut prev_dones = vec![false; batch_size];
    let feedback = config.reward_feedback_scale;
    while rows.iter().any(|r| r.active) {
        for (i, row) in rows.iter().enumerate() {
            obs[i * obs_dim..(i + 1) * obs_dim].copy_from_slice(row.env.obs());
            prev_actions[i] = row.prev_action;
            prev_rewards[i] = row.prev_reward;
            prev_dones[i] = row.prev_done;
        }
        let inputs = PolicyInputs {
            obs: &obs,
            prev_actions: &prev_actions,
            prev_rewards: &prev_rewards,
            prev_dones: &prev_dones,
        };
        let view = match rng.as_deref_mut() {
            Some(rng) => workspace.step(&inputs, rng)?,
            None => workspace.step_greedy(&inputs)?,
        };
        for ((row, &action), window) in rows.iter_mut().zip(view.actions).zip(windows) {
            if !row.active {
                continue;
            }
            let step = row.env.step(action)?;
            let (reward, done) = (step.reward, step.done());
            row.positions[row.episode].push(row.env.position());
            row.prev_action = Some(action);
            row.prev_reward = (reward * feedback) as f32;
            row.prev_done = done;
            if done {
                row.episode += 1;
                if row.episode == episodes {
                    row.active = false;
                } else {
                    row.env = env_for(window, row.episode)?;
                }
            }
        }
    }
    Ok(PolicyRun {
        positions: rows.into_iter().map(|r| r.positions).collect(),
    })
}

/// Runs a fixed rule through the trial of every window, with the env's accounting (each
/// episode starts flat and ends early if equity is exhausted). `rng` feeds the random
/// baseline, window after window.
///
/// # Errors
/// [`Error::InvalidConfig`] for a rule with invalid parameters; env errors for an invalid
/// action or an oracle given another series than its own.
pub fn run_baseline(
    closes: &[f64],
    windows: &[Window],
    baseline: &Baseline,
    config: &WalkForwardConfig,
    rng: &mut ChaCha8Rng,
) -> Result<PolicyRun> {
    // Computed once over the whole series: a window's warm-up uses the bars before it.
    let targets = match baseline {
        Baseline::Rule(rule) => rule.targets(closes)?,
        _ => Vec::new(),
    };
    let positions = windows
        .iter()
        .map(|window| {
            window
                .episodes()
                .map(|bars| {
                    let mut out = Vec::with_capacity(bars.len());
                    let (mut prev, mut equity) = (0.0, 1.0);
                    for t in bars {
                        let q =
                            baseline.position(closes, &targets, t, prev, &config.actions, rng)?;
                        let (ret, cost) =
                            step_pnl(prev, q, closes[t], closes[t + 1], config.cost_rate);
                        equity *= 1.0 + ret - cost;
                        out.push(q);
                        prev = q;
                        if equity <= 0.0 {
                            break;
                        }
                    }
                    Ok(out)
                })
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(PolicyRun { positions })
}

/// One step of the test-period book.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Timestamp of the decision bar `t` (ms UTC).
    pub timestamp: i64,
    /// Index of the decision bar in the series.
    pub bar: usize,
    /// Evaluation window of the step.
    pub window: usize,
    /// Close of bar `t`.
    pub close: f64,
    /// Position held from the close of `t` to the close of `t + 1`.
    pub position: f64,
    /// Gross return `q_t·(p_{t+1}/p_t − 1)`.
    pub step_return: f64,
    /// Cost `c·|q_t − q_{t−1}|`.
    pub cost: f64,
    /// Net return `step_return − cost` (the unscaled reward).
    pub reward: f64,
    /// Equity after the step, compounded from 1 over the whole test period (floored at 0,
    /// saturated at `f64::MAX`).
    pub equity: f64,
}

/// Books the evaluation windows of `run` as one continuous strategy over the test period:
/// one [`StepRecord`] per decision bar, the position before the first bar flat, and the
/// bars after an early termination flat. Ruin is absorbing: once the equity is 0 the book
/// is closed, and every later step is flat with no return and no cost.
pub fn book_test_period(
    timestamps: &[i64],
    closes: &[f64],
    windows: &[Window],
    run: &PolicyRun,
    cost_rate: f64,
) -> Vec<StepRecord> {
    let mut records = Vec::with_capacity(windows.iter().map(|w| w.eval.len()).sum());
    let (mut prev, mut equity) = (0.0, 1.0_f64);
    for (window, episodes) in windows.iter().zip(&run.positions) {
        let eval = episodes.last().map_or(&[][..], Vec::as_slice);
        for (k, t) in window.eval.clone().enumerate() {
            let (position, step_return, cost) = if equity <= 0.0 {
                (0.0, 0.0, 0.0)
            } else {
                let q = eval.get(k).copied().unwrap_or(0.0);
                let (step_return, cost) = step_pnl(prev, q, closes[t], closes[t + 1], cost_rate);
                (q, step_return, cost)
            };
            // `+ 0.0` turns the −0.0 of a flat step on a falling bar into 0.0.
            let (step_return, reward) = (step_return + 0.0, step_return - cost + 0.0);
            // Floored at 0 (a NaN step ruins the book) and saturated at f64::MAX.
            equity = crate::metrics::next_equity(equity, reward);
            records.push(StepRecord {
                timestamp: timestamps[t],
                bar: t,
                window: window.index,
                close: closes[t],
                position,
                step_return,
                cost,
                reward,
                equity,
            });
            prev = position;
        }
    }
    records
}

/// Sum of net returns of one episode starting flat at bar `start`:
/// `Σ_k q_k·(p_{start+k+1}/p_{start+k} − 1) − c·|q_k − q_{k−1}|`, `q_{−1} = 0`.
pub fn episode_return(closes: &[f64], start: usize, positions: &[f64], cost_rate: f64) -> f64 {
    let mut prev = 0.0;
    positions
        .iter()
        .enumerate()
        .map(|(k, &q)| {
            let t = start + k;
            let (ret, cost) = step_pnl(prev, q, closes[t], closes[t + 1], cost_rate);
            prev = q;
            ret - cost
        })
        .sum()
}

/// Mean episode return by episode index over the windows (the adaptation curve):
/// entry `e` averages [`episode_return`] of episode `e` (the last is the evaluation).
pub fn adaptation_curve(
    closes: &[f64],
    windows: &[Window],
    run: &PolicyRun,
    cost_rate: f64,
) -> Vec<f64> {
    let n_episodes = windows.first().map_or(0, |w| w.adaptation.len() + 1);
    let mut sums = vec![0.0; n_episodes];
    for (window, episodes) in windows.iter().zip(&run.positions) {
        for ((sum, bars), positions) in sums.iter_mut().zip(window.episodes()).zip(episodes) {
            *sum += episode_return(closes, bars.start, positions, cost_rate);
        }
    }
    let n = windows.len().max(1) as f64;
    sums.into_iter().map(|s| s / n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(index: usize, eval: std::ops::Range<usize>) -> Window {
        Window {
            index,
            eval,
            adaptation: Vec::new(),
        }
    }

    #[test]
    fn continuous_book_charges_entry_once() {
        let closes = [100.0, 110.0, 99.0, 99.0, 120.0];
        let ts = [0, 1, 2, 3, 4];
        let windows = [window(0, 0..2), window(1, 2..4)];
        let run = PolicyRun {
            positions: vec![vec![vec![1.0, 1.0]], vec![vec![1.0, 1.0]]],
        };
        let records = book_test_period(&ts, &closes, &windows, &run, 0.01);
        assert_eq!(records.len(), 4);
        assert_eq!(
            records.iter().map(|r| r.cost).collect::<Vec<_>>(),
            [0.01, 0.0, 0.0, 0.0]
        );
        let expected = (1.1 - 0.01) * (99.0 / 110.0) * (120.0 / 99.0);
        assert!((records[3].equity - expected).abs() < 1e-12);
        assert_eq!(records[2].window, 1);
    }

    #[test]
    fn early_termination_books_flat_for_the_rest() {
        let closes = [100.0, 101.0, 102.0, 103.0];
        let windows = [window(0, 0..3)];
        let run = PolicyRun {
            positions: vec![vec![vec![-1.0]]],
        };
        let records = book_test_period(&[0, 1, 2, 3], &closes, &windows, &run, 0.0);
        assert_eq!(
            records.iter().map(|r| r.position).collect::<Vec<_>>(),
            [-1.0, 0.0, 0.0]
        );
    }

    #[test]
    fn episode_return_sums_net_returns_from_flat() {
        let closes = [100.0, 110.0, 99.0];
        let r = episode_return(&closes, 0, &[1.0, -1.0], 0.001);
        let expected = (0.1 - 0.001) + (0.1 - 0.002);
        assert!((r - expected).abs() < 1e-12);
    }
}
