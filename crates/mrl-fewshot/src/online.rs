//! Online adaptation: while a policy trades a held-out series walk-forward, it keeps
//! adapting from the bars it has already seen, with a guard against instability.
//!
//! ```text
//! windows w = 0, 1, … of the walk-forward test (mrl-backtest's plan_windows), in time order
//! before window w, when its first decision bar s ≥ the last update's + every_bars:
//!   seen      = bars 0..=s                  (the close of s is in the window's first observation)
//!   validate  = decision bars [s − V, s)    (the most recent V seen bars)
//!   train     = bars [s − V + 1 − T, s − V + 1)   (the T bars before them; the inner loop)
//!   θ'        = adapt(θ, train, `steps` inner steps)           (crate::adapt)
//!   Δ         = ε · (θ' − θ), scaled to norm ≤ max_update_norm  (Reptile-style, clipped)
//!   accept θ + Δ  iff  R_val(θ + Δ) ≥ R_val(θ) − tolerance,  else roll back to θ
//! window w then trades with the current θ (greedy; a fresh trial, as every window)
//! ```
//!
//! `R_val` is the validation bars' booked net return (greedy, the walk-forward's own trials
//! on a copy of the series cut after bar `s`). An inner loop that produces a non-finite loss
//! or gradient is rolled back like a degraded one.
//!
//! # No look-ahead
//!
//! An update before window `w` reads `series.slice(0..=s_w)` only, and the window's decisions
//! use the policy fixed before it; the engine itself shows bar `t` only closes `≤ t`. The
//! tests perturb every bar from some `b` on and check that every decision and every update
//! before `b` is unchanged, bit for bit.
//!
//! # Determinism
//!
//! Update `u` adapts with the `u`-th draw of `ChaCha8Rng::seed_from_u64(seed)`; the trading
//! is greedy. The same policy, series and seed give the same decisions and updates.

use std::sync::Arc;

use candle_core::Tensor;
use mrl_agent::Policy;
use mrl_backtest::{
    ActionMode, Metrics, PolicyRun, TestStart, WalkForwardConfig, Window, book_test_period,
    plan_windows, run_policy,
};
use mrl_env::{MarketData, TradingConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::inner::{AdaptSetup, InnerConfig, adapt, detached_copy};
use crate::task::FixedTask;
use crate::{Error, Result};

/// Settings of online adaptation (the `[meta.online]` table of a config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OnlineConfig {
    /// Test bars between updates (default 100); an update happens before the first window
    /// that starts at least this many bars after the previous update (or the test start).
    pub every_bars: usize,
    /// Bars the inner loop trains on, the most recent ones before the validation bars
    /// (default 336, two weeks of hourly bars; fewer when fewer have been seen).
    pub train_bars: usize,
    /// The most recent seen bars the guard validates on (default 100).
    pub validation_bars: usize,
    /// Inner steps of one update (default 5; the loop is the `[meta.inner]` one).
    pub steps: usize,
    /// Reptile-style step size ε in (0, 1] on `θ' − θ` (default 0.5; 1 takes the adapted
    /// weights).
    pub step_size: f64,
    /// Largest global L2 norm of one applied update `ε·(θ' − θ)` (default 1.0); a longer
    /// step is scaled down to it.
    pub max_update_norm: f64,
    /// The guard: an update is kept when its validation return is at least the current
    /// policy's minus this (default 0: never keep a degradation; a negative value demands
    /// an improvement).
    pub tolerance: f64,
}

impl Default for OnlineConfig {
    fn default() -> Self {
        Self {
            every_bars: 100,
            train_bars: 336,
            validation_bars: 100,
            steps: 5,
            step_size: 0.5,
            max_update_norm: 1.0,
            tolerance: 0.0,
        }
    }
}

impl OnlineConfig {
    /// Checks every field.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("online.every_bars", self.every_bars),
            ("online.train_bars", self.train_bars),
            ("online.validation_bars", self.validation_bars),
            ("online.steps", self.steps),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(Error::invalid(field, "0".into(), "must be at least 1"));
            }
        }
        if !(self.step_size > 0.0 && self.step_size <= 1.0) {
            return Err(Error::invalid(
                "online.step_size",
                self.step_size.to_string(),
                "must be in (0, 1]",
            ));
        }
        if !(self.max_update_norm.is_finite() && self.max_update_norm > 0.0) {
            return Err(Error::invalid(
                "online.max_update_norm",
                self.max_update_norm.to_string(),
                "must be finite and > 0",
            ));
        }
        if !self.tolerance.is_finite() {
            return Err(Error::invalid(
                "online.tolerance",
                self.tolerance.to_string(),
                "must be finite",
            ));
        }
        Ok(())
    }
}

/// Everything online adaptation needs besides the policy and the series.
#[derive(Debug, Clone, PartialEq)]
pub struct OnlineSetup {
    /// The schedule and the guard.
    pub online: OnlineConfig,
    /// The inner loop of an update (`steps` is replaced by `online.steps`).
    pub inner: InnerConfig,
    /// PPO loss, GAE, trial structure and return scale of the inner loop.
    pub setup: AdaptSetup,
    /// The trading env of the training episodes (the run's `task.trading`).
    pub trading: TradingConfig,
}

/// Why an update was kept or rolled back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateOutcome {
    /// Kept: the validation return did not degrade beyond the tolerance.
    Accepted,
    /// Rolled back: the validation return degraded.
    Degraded,
    /// Rolled back: the inner loop produced a non-finite loss or gradient.
    NonFinite,
}

/// One scheduled update of [`trade_online`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnlineUpdate {
    /// First decision bar of the window the update precedes; bars `0..=bar` were seen.
    pub bar: usize,
    /// Bars the inner loop trained on, `[start, end)`.
    pub train_bars: (usize, usize),
    /// First validation decision bar (validation covers `[validation_start, bar)`).
    pub validation_start: usize,
    /// `‖θ' − θ‖₂` over every parameter (`None` when the inner loop failed).
    pub adapted_norm: Option<f64>,
    /// Norm of the step that would be applied, `min(ε·‖θ' − θ‖, max_update_norm)`.
    pub step_norm: Option<f64>,
    /// Validation return of the policy before the update.
    pub validation_before: f64,
    /// Validation return of the candidate.
    pub validation_candidate: Option<f64>,
    /// Kept or rolled back, and why.
    pub outcome: UpdateOutcome,
}

/// The result of [`trade_online`].
#[derive(Debug)]
pub struct OnlineRun {
    /// The walk-forward windows, in time order.
    pub windows: Vec<Window>,
    /// The positions taken in each window's trial (as [`run_policy`] returns them).
    pub run: PolicyRun,
    /// Every scheduled update, in time order.
    pub updates: Vec<OnlineUpdate>,
    /// The policy after the last update (what trades the bars after the series).
    pub policy: Policy,
}

impl OnlineRun {
    /// Updates kept.
    pub fn accepted(&self) -> usize {
        self.updates
            .iter()
            .filter(|u| u.outcome == UpdateOutcome::Accepted)
            .count()
    }

    /// Metrics of the test period's book (mrl-backtest's booking and metrics).
    pub fn metrics(&self, market: &MarketData, cost_rate: f64) -> Metrics {
        book_metrics(market, &self.windows, &self.run, cost_rate)
    }
}

/// Metrics of `run` over `windows` of `market`, booked as one continuous strategy
/// ([`book_test_period`]), annualised by the market's calendar.
pub(crate) fn book_metrics(
    market: &MarketData,
    windows: &[Window],
    run: &PolicyRun,
    cost_rate: f64,
) -> Metrics {
    let book = book_test_period(
        market.timestamps(),
        market.closes(),
        windows,
        run,
        cost_rate,
    );
    let returns: Vec<f64> = book.iter().map(|r| r.reward).collect();
    let positions: Vec<f64> = book.iter().map(|r| r.position).collect();
    Metrics::compute(
        &returns,
        &positions,
        market.periods_per_year().unwrap_or(1.0),
    )
}

/// The applied step of an update: `ε·Δ`, scaled down to global norm `max_norm` when longer.
/// Returns the step, `‖Δ‖` and the step's norm.
///
/// # Errors
/// Candle errors.
pub fn limited_step(
    deltas: &[Tensor],
    step_size: f64,
    max_norm: f64,
) -> Result<(Vec<Tensor>, f64, f64)> {
    let raw = mrl_ppo::global_norm(deltas)?;
    let scaled = step_size * raw;
    let factor = if scaled > max_norm {
        step_size * max_norm / scaled
    } else {
        step_size
    };
    let step = deltas
        .iter()
        .map(|d| d * factor)
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok((step, raw, scaled.min(max_norm)))
}

/// Trades `market` walk-forward from `walk_forward.test_start` with `start`, adapting it
/// online as the module docs say; `seed` fixes every update's draws.
///
/// # Errors
/// [`Error::InvalidConfig`] for an invalid [`OnlineConfig`] or a sampled action mode (online
/// adaptation trades greedy), [`Error::TooFewBars`] when an update's training bars cannot
/// hold one episode, backtest, agent, env and PPO errors.
pub fn trade_online(
    start: &Policy,
    market: &Arc<MarketData>,
    walk_forward: &WalkForwardConfig,
    online: &OnlineSetup,
    seed: u64,
) -> Result<OnlineRun> {
    let config = &online.online;
    config.validate()?;
    if walk_forward.mode != ActionMode::Greedy {
        return Err(Error::invalid(
            "walk_forward.mode",
            format!("{:?}", walk_forward.mode),
            "online adaptation trades greedy",
        ));
    }
    let windows = plan_windows(market.timestamps(), walk_forward)?;
    let mut policy = detached_copy(start)?;
    let mut updates = Vec::new();
    let mut positions = Vec::with_capacity(windows.len());
    let mut seeds = ChaCha8Rng::seed_from_u64(seed);
    let mut next_update = windows
        .first()
        .map_or(usize::MAX, |w| w.eval.start + config.every_bars);
    let mut i = 0;
    while i < windows.len() {
        let bar = windows[i].eval.start;
        if bar >= next_update {
            let (update, kept) =
                update(&policy, market, bar, walk_forward, online, seeds.next_u64())?;
            if let Some(kept) = kept {
                policy = kept;
            }
            updates.push(update);
            next_update = bar + config.every_bars;
        }
        let end = windows[i..]
            .iter()
            .position(|w| w.eval.start >= next_update)
            .map_or(windows.len(), |p| i + p);
        let run = run_policy(market, &windows[i..end], &policy, walk_forward, None)?;
        positions.extend(run.positions);
        i = end;
    }
    tracing::debug!(
        windows = windows.len(),
        updates = updates.len(),
        "traded online"
    );
    Ok(OnlineRun {
        windows,
        run: PolicyRun { positions },
        updates,
        policy,
    })
}

/// One scheduled update before the window starting at decision bar `bar`: the record and
/// the new policy when it is kept.
fn update(
    current: &Policy,
    market: &Arc<MarketData>,
    bar: usize,
    walk_forward: &WalkForwardConfig,
    online: &OnlineSetup,
    seed: u64,
) -> Result<(OnlineUpdate, Option<Policy>)> {
    let config = &online.online;
    // Bars 0..=bar are known; nothing after them is read below.
    let seen = Arc::new(MarketData::new(market.series().slice(0..bar + 1)?)?);
    let validation_start = bar.saturating_sub(config.validation_bars);
    let train_end = validation_start + 1;
    let train_start = train_end.saturating_sub(config.train_bars);
    let task = FixedTask::bars(
        seen.series(),
        train_start..train_end,
        online.trading.clone(),
    )?;
    let validation = WalkForwardConfig {
        test_start: TestStart::Index(validation_start),
        ..walk_forward.clone()
    };
    let validation_before = validation_return(current, &seen, &validation)?;
    let mut record = OnlineUpdate {
        bar,
        train_bars: (train_start, train_end),
        validation_start,
        adapted_norm: None,
        step_norm: None,
        validation_before,
        validation_candidate: None,
        outcome: UpdateOutcome::NonFinite,
    };
    let inner = InnerConfig {
        steps: config.steps,
        ..online.inner.clone()
    };
    let adapted = match adapt(current, Arc::new(task), &inner, &online.setup, seed) {
        Ok(adapted) => adapted,
        Err(Error::NonFinite { .. }) => return Ok((record, None)),
        Err(e) => return Err(e),
    };
    let mut adapted_tensors = adapted.policy.tensors();
    let params = current.parameters();
    let deltas = params
        .iter()
        .map(|(name, var)| {
            let key: &str = name;
            let theta_prime = adapted_tensors.remove(key).ok_or_else(|| {
                Error::invalid("policy", key.to_owned(), "adapted policy lacks a parameter")
            })?;
            Ok((theta_prime - var.as_tensor())?)
        })
        .collect::<Result<Vec<_>>>()?;
    let (step, raw, step_norm) = limited_step(&deltas, config.step_size, config.max_update_norm)?;
    record.adapted_norm = Some(raw);
    if !raw.is_finite() {
        return Ok((record, None));
    }
    record.step_norm = Some(step_norm);
    let candidate = detached_copy(current)?;
    for ((_, var), step) in candidate.parameters().iter().zip(&step) {
        var.set(&(var.as_tensor() + step)?)?;
    }
    let score = validation_return(&candidate, &seen, &validation)?;
    record.validation_candidate = Some(score);
    let kept = score >= validation_before - config.tolerance;
    record.outcome = if kept {
        UpdateOutcome::Accepted
    } else {
        UpdateOutcome::Degraded
    };
    tracing::debug!(
        bar,
        raw,
        step_norm,
        before = validation_before,
        candidate = score,
        kept,
        "online update"
    );
    Ok((record, kept.then_some(candidate)))
}

/// Booked net return (sum of the steps' net returns) of `policy`, greedy, over the test
/// period of `walk_forward` on `market`.
fn validation_return(
    policy: &Policy,
    market: &Arc<MarketData>,
    walk_forward: &WalkForwardConfig,
) -> Result<f64> {
    let windows = plan_windows(market.timestamps(), walk_forward)?;
    let run = run_policy(market, &windows, policy, walk_forward, None)?;
    let book = book_test_period(
        market.timestamps(),
        market.closes(),
        &windows,
        &run,
        walk_forward.cost_rate,
    );
    Ok(book.iter().map(|r| r.reward).sum())
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn a_long_step_is_scaled_to_the_norm_limit() {
        let dev = Device::Cpu;
        // Δ = (3, 4) and (0): ‖Δ‖ = 5.
        let deltas = [
            Tensor::new(&[3.0f32, 4.0], &dev).unwrap(),
            Tensor::new(&[0.0f32], &dev).unwrap(),
        ];
        let (step, raw, norm) = limited_step(&deltas, 1.0, 2.5).unwrap();
        assert_eq!(raw, 5.0);
        assert_eq!(norm, 2.5);
        assert_eq!(step[0].to_vec1::<f32>().unwrap(), vec![1.5, 2.0]);
        // ε = 0.2 gives a step of norm 1 < 2.5: ε·Δ unchanged.
        let (step, _, norm) = limited_step(&deltas, 0.2, 2.5).unwrap();
        assert!((norm - 1.0).abs() < 1e-12);
        let v = step[0].to_vec1::<f32>().unwrap();
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
    }

    #[test]
    fn bad_settings_are_named() {
        let bad = |c: OnlineConfig| c.validate().unwrap_err().to_string();
        assert_eq!(
            bad(OnlineConfig {
                every_bars: 0,
                ..Default::default()
            }),
            "invalid config: online.every_bars = 0 (must be at least 1)"
        );
        assert_eq!(
            bad(OnlineConfig {
                step_size: 1.5,
                ..Default::default()
            }),
            "invalid config: online.step_size = 1.5 (must be in (0, 1])"
        );
        assert_eq!(
            bad(OnlineConfig {
                max_update_norm: 0.0,
                ..Default::default()
            }),
            "invalid config: online.max_update_norm = 0 (must be finite and > 0)"
        );
        assert!(OnlineConfig::default().validate().is_ok());
    }
}
