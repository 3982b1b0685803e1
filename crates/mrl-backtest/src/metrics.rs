//! Backtest metrics over a per-step return series, annualised by the bar interval.
//!
//! Inputs are `returns[t]`, the simple return of step `t` net of costs, and
//! `periods_per_year`, the number of bars in a year of the data
//! (`BarSeries::periods_per_year()`: ≈ 8760 for hourly crypto, ≈ 252 for daily equities).
//! Nothing assumes √252. `positions[t]` is the position held over step `t` (the one whose
//! return is `returns[t]`); the position before step 0 is flat (0).
//!
//! # Conventions
//! - **Sharpe, Sortino, win rate** are the design document's formulas (checked against the
//!   golden file `metrics.json`): `√p·mean/(std_ddof0 + 1e-10)`,
//!   `√p·mean/(std_ddof0(r[r<0]) + 1e-10)` (0 when no `r < 0`),
//!   `#(r>0)/(#(r>0) + #(r<0))` (0 when both are 0).
//! - **Max drawdown**: [`Metrics`] uses the trader's convention, [`max_drawdown`]: equity
//!   starts at 1.0 before the first step, so a loss on the first step is a drawdown (as in
//!   quantstats, and as capital actually lost). The design document's formula, with no
//!   starting 1.0, is [`max_drawdown_design`], kept for parity with the golden file. Equity is
//!   floored at 0 (ruin is absorbing), so the drawdown lies in [−1, 0].
//! - **Degenerate inputs never give NaN.** Empty sums and means are 0 (an empty or all-zero
//!   series has Sharpe 0, drawdown 0, win rate 0). Ratios with no meaningful value are
//!   `None`: [`cagr`] of an empty series or one that overflows (a short sample with a large
//!   return, annualised), [`calmar`] without a drawdown, [`profit_factor`] without a losing
//!   step. A `periods_per_year` that is not finite and > 0 is replaced by 1 (per-step
//!   figures) with a warning.
//! - The design Sharpe keeps its `1e-10` epsilon, so a constant positive series has a huge
//!   but finite Sharpe (`√p·c/1e-10`); [`sharpe_ddof1`] is quantstats' Sharpe, `None` there.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Added to standard deviations in the Sharpe and Sortino denominators (design formula).
pub const RATIO_EPSILON: f64 = 1e-10;

/// The summary of a backtest. Every field is finite; see the module docs for conventions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Compounded return over the whole series, [`total_return`].
    pub total_return: f64,
    /// Compound annual growth rate, [`cagr`]; `None` when empty or not finite.
    pub cagr: Option<f64>,
    /// Annualised volatility `std_ddof0 · √p`, [`volatility`].
    pub volatility: f64,
    /// Annualised Sharpe ratio (risk-free 0), [`sharpe`].
    pub sharpe: f64,
    /// Annualised Sortino ratio, [`sortino`].
    pub sortino: f64,
    /// Maximum drawdown from a starting equity of 1.0, in [−1, 0], [`max_drawdown`].
    pub max_drawdown: f64,
    /// CAGR / |max drawdown|, [`calmar`]; `None` without a drawdown.
    pub calmar: Option<f64>,
    /// Winning steps over non-flat steps, [`win_rate`].
    pub win_rate: f64,
    /// Gross gains / gross losses, [`profit_factor`]; `None` without a losing step.
    pub profit_factor: Option<f64>,
    /// Annualised turnover `Σ|Δposition| · p / N`, [`turnover`].
    pub turnover: f64,
    /// Share of steps with a non-zero position, [`exposure`].
    pub exposure: f64,
    /// Number of position changes, [`trade_count`].
    pub trades: usize,
}

impl Metrics {
    /// All metrics of one backtest.
    ///
    /// `positions` may be empty when they are unknown (then turnover, exposure and trades
    /// are 0); otherwise it should be as long as `returns` (a mismatch is logged and each
    /// series is used on its own).
    pub fn compute(returns: &[f64], positions: &[f64], periods_per_year: f64) -> Self {
        if !positions.is_empty() && positions.len() != returns.len() {
            tracing::warn!(
                returns = returns.len(),
                positions = positions.len(),
                "metrics: returns and positions differ in length"
            );
        }
        let periods_per_year = periods(periods_per_year);
        Self {
            total_return: total_return(returns),
            cagr: cagr(returns, periods_per_year),
            volatility: volatility(returns, periods_per_year),
            sharpe: sharpe(returns, periods_per_year),
            sortino: sortino(returns, periods_per_year),
            max_drawdown: max_drawdown(returns),
            calmar: calmar(returns, periods_per_year),
            win_rate: win_rate(returns),
            profit_factor: profit_factor(returns),
            turnover: turnover(positions, periods_per_year),
            exposure: exposure(positions),
            trades: trade_count(positions),
        }
    }
}

/// `periods_per_year` if finite and > 0, else 1 (with a warning).
fn periods(periods_per_year: f64) -> f64 {
    if periods_per_year.is_finite() && periods_per_year > 0.0 {
        periods_per_year
    } else {
        tracing::warn!(
            periods_per_year,
            "metrics: invalid periods per year, using 1"
        );
        1.0
    }
}

/// `(mean, std_ddof0)`, two-pass; `(0, 0)` when empty, and an exact 0 std when every value
/// is the same (no rounding residue of the mean).
fn mean_std(xs: &[f64]) -> (f64, f64) {
    let Some(&first) = xs.first() else {
        return (0.0, 0.0);
    };
    if xs.iter().all(|&x| x == first) {
        return (first, 0.0);
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// Equity after each step from 1.0, floored at 0: `E_t = max(E_{t−1}·(1 + r_t), 0)`.
fn equity(returns: &[f64]) -> impl Iterator<Item = f64> + '_ {
    returns.iter().scan(1.0_f64, |e, r| {
        *e = (*e * (1.0 + r)).max(0.0);
        Some(*e)
    })
}

/// `Π(1 + r_t) − 1`, equity floored at 0 (so ≥ −1); 0 when empty.
pub fn total_return(returns: &[f64]) -> f64 {
    equity(returns).last().unwrap_or(1.0) - 1.0
}

/// Compound annual growth rate `(1 + total_return)^(p/N) − 1`.
///
/// `None` when `returns` is empty or the result is not finite (annualising a short sample
/// with a large return overflows); −1 after ruin.
pub fn cagr(returns: &[f64], periods_per_year: f64) -> Option<f64> {
    if returns.is_empty() {
        return None;
    }
    let years = returns.len() as f64 / periods(periods_per_year);
    let growth = (1.0 + total_return(returns)).powf(1.0 / years) - 1.0;
    growth.is_finite().then_some(growth)
}

/// Annualised volatility `std_ddof0(r) · √p`; 0 when empty.
pub fn volatility(returns: &[f64], periods_per_year: f64) -> f64 {
    mean_std(returns).1 * periods(periods_per_year).sqrt()
}

/// Annualised Sharpe ratio, design formula: `√p · mean(r) / (std_ddof0(r) + 1e-10)`.
/// 0 when empty.
pub fn sharpe(returns: &[f64], periods_per_year: f64) -> f64 {
    let (mean, std) = mean_std(returns);
    periods(periods_per_year).sqrt() * mean / (std + RATIO_EPSILON)
}

/// Annualised Sortino ratio, design formula:
/// `√p · mean(r) / (std_ddof0(r[r < 0]) + 1e-10)`, 0 when no `r < 0`.
pub fn sortino(returns: &[f64], periods_per_year: f64) -> f64 {
    let downside: Vec<f64> = returns.iter().copied().filter(|&r| r < 0.0).collect();
    if downside.is_empty() {
        return 0.0;
    }
    let mean = mean_std(returns).0;
    periods(periods_per_year).sqrt() * mean / (mean_std(&downside).1 + RATIO_EPSILON)
}

/// Largest fall of the equity curve `min_t(E_t / max_{s≤t} E_s − 1)`, with equity starting
/// at `E = 1.0` before the first step (a first-step loss counts) and floored at 0.
/// In [−1, 0]; 0 when empty.
pub fn max_drawdown(returns: &[f64]) -> f64 {
    drawdown_of(std::iter::once(1.0).chain(equity(returns)))
}

/// The design document's max drawdown: `min(E / cummax(E) − 1)` with
/// `E = cumprod(1 + r)` and no starting 1.0, so a loss on the first step is not a drawdown.
/// For parity with the golden file; [`Metrics`] reports [`max_drawdown`].
pub fn max_drawdown_design(returns: &[f64]) -> f64 {
    drawdown_of(returns.iter().scan(1.0_f64, |e, r| {
        *e *= 1.0 + r;
        Some(*e)
    }))
}

/// `min_t(E_t / max_{s≤t} E_s − 1)` of an equity curve, 0 when empty; a curve that never
/// rose above 0 counts as a total loss.
fn drawdown_of(curve: impl Iterator<Item = f64>) -> f64 {
    let mut peak = f64::NEG_INFINITY;
    let mut worst = 0.0_f64;
    for e in curve {
        peak = peak.max(e);
        let dd = if peak > 0.0 { e / peak - 1.0 } else { -1.0 };
        worst = worst.min(dd);
    }
    worst
}

/// Calmar ratio `CAGR / |max_drawdown|`; `None` when there is no drawdown or no CAGR.
pub fn calmar(returns: &[f64], periods_per_year: f64) -> Option<f64> {
    let mdd = max_drawdown(returns);
    let ratio = cagr(returns, periods_per_year)? / -mdd;
    (mdd < 0.0 && ratio.is_finite()).then_some(ratio)
}

/// Win rate `#(r > 0) / (#(r > 0) + #(r < 0))` (flat steps ignored); 0 when no step won
/// or lost.
pub fn win_rate(returns: &[f64]) -> f64 {
    let wins = returns.iter().filter(|&&r| r > 0.0).count();
    let losses = returns.iter().filter(|&&r| r < 0.0).count();
    if wins + losses == 0 {
        0.0
    } else {
        wins as f64 / (wins + losses) as f64
    }
}

/// Profit factor `Σ r[r > 0] / |Σ r[r < 0]|` (per-step, not per-trade); `None` when no step
/// lost.
pub fn profit_factor(returns: &[f64]) -> Option<f64> {
    let gains: f64 = returns.iter().filter(|&&r| r > 0.0).sum();
    let losses: f64 = returns.iter().filter(|&&r| r < 0.0).map(|r| -r).sum();
    (losses > 0.0).then(|| gains / losses)
}

/// Total turnover `Σ_t |q_t − q_{t−1}|` with `q_{−1} = 0`: entering a unit position is 1,
/// a flip from +1 to −1 is 2, and a final open position is not closed.
pub fn total_turnover(positions: &[f64]) -> f64 {
    position_changes(positions).map(f64::abs).sum()
}

/// Annualised turnover `total_turnover · p / N` (how many times a year the book is traded);
/// 0 when empty.
pub fn turnover(positions: &[f64], periods_per_year: f64) -> f64 {
    if positions.is_empty() {
        return 0.0;
    }
    total_turnover(positions) * periods(periods_per_year) / positions.len() as f64
}

/// Share of steps with a non-zero position, in [0, 1]; 0 when empty.
pub fn exposure(positions: &[f64]) -> f64 {
    if positions.is_empty() {
        return 0.0;
    }
    positions.iter().filter(|&&q| q != 0.0).count() as f64 / positions.len() as f64
}

/// Number of trades: steps whose position differs from the previous one (from flat before
/// step 0). Opening, closing, resizing and flipping each count once, so a round trip
/// (open then close) is 2.
pub fn trade_count(positions: &[f64]) -> usize {
    position_changes(positions).filter(|&d| d != 0.0).count()
}

/// `q_t − q_{t−1}` for each step, `q_{−1} = 0`.
fn position_changes(positions: &[f64]) -> impl Iterator<Item = f64> + '_ {
    positions.iter().scan(0.0, |prev, &q| {
        let change = q - *prev;
        *prev = q;
        Some(change)
    })
}

/// quantstats' Sharpe ratio: `mean(r) / std_ddof1(r) · √p`, no epsilon; `None` when
/// fewer than 2 returns or a zero std (quantstats gives inf or NaN).
pub fn sharpe_ddof1(returns: &[f64], periods_per_year: f64) -> Option<f64> {
    let n = returns.len();
    if n < 2 {
        return None;
    }
    let (mean, std0) = mean_std(returns);
    let std1 = std0 * (n as f64 / (n - 1) as f64).sqrt();
    (std1 > 0.0).then(|| mean / std1 * periods(periods_per_year).sqrt())
}

/// quantstats' Sortino ratio: `mean(r) / √(Σ r[r<0]² / N) · √p`, the downside deviation
/// over all `N` steps (not the std of the negative ones); `None` when no `r < 0`.
pub fn sortino_downside_deviation(returns: &[f64], periods_per_year: f64) -> Option<f64> {
    let downside_sq: f64 = returns.iter().filter(|&&r| r < 0.0).map(|r| r * r).sum();
    if downside_sq == 0.0 {
        return None;
    }
    let dd = (downside_sq / returns.len() as f64).sqrt();
    Some(mean_std(returns).0 / dd * periods(periods_per_year).sqrt())
}

/// Confidence interval of `sharpe(a) − sharpe(b)` by a paired stationary bootstrap
/// (Politis & Romano 1994), returning `(lo, hi, point)` where `point` is the difference on
/// the original series.
///
/// Each resample has the length of the data and is built of blocks that start at a uniform
/// index and continue (wrapping around) with probability `1 − 1/block_len` at each step,
/// so blocks have a geometric length of mean `block_len` and short-range dependence
/// (volatility clustering) is kept; `block_len = 1` is the i.i.d. bootstrap. The same
/// indices are used for `a` and `b`, which keeps their correlation (two strategies over the
/// same bars). The interval is the percentile interval: the `(1 − confidence)/2` and
/// `(1 + confidence)/2` quantiles of the resampled differences (linear interpolation).
///
/// `None` when `a` and `b` differ in length or have fewer than 2 steps, when `n_resamples`
/// or `block_len` is 0, or when `confidence` is not in (0, 1).
pub fn bootstrap_sharpe_diff_ci(
    a: &[f64],
    b: &[f64],
    periods_per_year: f64,
    n_resamples: usize,
    confidence: f64,
    block_len: usize,
    rng: &mut ChaCha8Rng,
) -> Option<(f64, f64, f64)> {
    let n = a.len();
    let valid = n >= 2
        && b.len() == n
        && n_resamples > 0
        && block_len > 0
        && confidence > 0.0
        && confidence < 1.0;
    if !valid {
        return None;
    }
    let point = sharpe(a, periods_per_year) - sharpe(b, periods_per_year);
    let restart = 1.0 / block_len as f64;
    let (mut ra, mut rb) = (vec![0.0; n], vec![0.0; n]);
    let mut diffs: Vec<f64> = (0..n_resamples)
        .map(|_| {
            let mut idx = rng.random_range(0..n);
            for (xa, xb) in ra.iter_mut().zip(&mut rb) {
                *xa = a[idx];
                *xb = b[idx];
                idx = if rng.random::<f64>() < restart {
                    rng.random_range(0..n)
                } else {
                    (idx + 1) % n
                };
            }
            sharpe(&ra, periods_per_year) - sharpe(&rb, periods_per_year)
        })
        .collect();
    diffs.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    Some((quantile(&diffs, tail), quantile(&diffs, 1.0 - tail), point))
}

/// Quantile `q ∈ [0, 1]` of sorted, non-empty values, linear between order statistics.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degenerate_inputs_give_zeros_and_nones() {
        for returns in [&[][..], &[0.0; 30][..]] {
            let m = Metrics::compute(returns, &[], 8760.0);
            assert_eq!(m.total_return, 0.0);
            assert_eq!(m.volatility, 0.0);
            assert_eq!(m.sharpe, 0.0);
            assert_eq!(m.sortino, 0.0);
            assert_eq!(m.max_drawdown, 0.0);
            assert_eq!(m.calmar, None);
            assert_eq!(m.win_rate, 0.0);
            assert_eq!(m.profit_factor, None);
            assert_eq!((m.turnover, m.exposure, m.trades), (0.0, 0.0, 0));
        }
        assert_eq!(cagr(&[], 252.0), None);
        assert_eq!(cagr(&[0.0; 30], 252.0), Some(0.0));
        let json = serde_json::to_string(&Metrics::compute(&[], &[], 252.0)).unwrap();
        assert!(!json.contains("NaN"), "{json}");
    }

    #[test]
    fn cagr_of_a_short_explosive_sample_is_none() {
        assert_eq!(cagr(&[0.5], 8760.0), None);
        assert_eq!(calmar(&[0.5, -0.1], 8760.0), None);
    }

    #[test]
    fn one_year_of_steps_has_cagr_equal_to_total_return() {
        let returns: Vec<f64> = (0..252).map(|i| 0.001 * (i as f64).sin()).collect();
        let tr = total_return(&returns);
        assert!((cagr(&returns, 252.0).unwrap() - tr).abs() < 1e-12);
    }

    #[test]
    fn ruin_is_absorbing() {
        let returns = [0.1, -1.5, 0.5, 0.2];
        assert_eq!(total_return(&returns), -1.0);
        assert_eq!(max_drawdown(&returns), -1.0);
        assert_eq!(cagr(&returns, 252.0), Some(-1.0));
    }

    #[test]
    fn drawdown_conventions_differ_on_a_first_step_loss() {
        let returns = [-0.1, 0.05, -0.02];
        assert!((max_drawdown_design(&returns) - (0.98 - 1.0)).abs() < 1e-15);
        // From the starting 1.0, the first step's loss is the deepest fall.
        assert!((max_drawdown(&returns) - (0.9 - 1.0)).abs() < 1e-15);
    }

    #[test]
    fn position_metrics() {
        let positions = [0.0, 1.0, 1.0, -1.0, -1.0, 0.0, 0.5, 0.5];
        assert_eq!(total_turnover(&positions), 1.0 + 2.0 + 1.0 + 0.5);
        assert_eq!(turnover(&positions, 8.0), 4.5);
        assert_eq!(exposure(&positions), 6.0 / 8.0);
        assert_eq!(trade_count(&positions), 4);
        assert_eq!(trade_count(&[1.0]), 1);
    }

    #[test]
    fn profit_factor_and_win_rate() {
        let returns = [0.02, -0.01, 0.0, 0.03, -0.01];
        assert!((profit_factor(&returns).unwrap() - 2.5).abs() < 1e-12);
        assert_eq!(win_rate(&returns), 0.5);
        assert_eq!(profit_factor(&[0.01, 0.0]), None);
        assert_eq!(profit_factor(&[-0.01]), Some(0.0));
    }

    #[test]
    fn invalid_periods_fall_back_to_per_step_figures() {
        let returns = [0.01, -0.02, 0.03];
        for p in [0.0, -5.0, f64::NAN, f64::INFINITY] {
            assert_eq!(sharpe(&returns, p), sharpe(&returns, 1.0));
        }
    }

    #[test]
    fn quantile_interpolates() {
        let sorted = [0.0, 1.0, 2.0, 4.0];
        assert_eq!(quantile(&sorted, 0.0), 0.0);
        assert_eq!(quantile(&sorted, 1.0), 4.0);
        assert!((quantile(&sorted, 0.5) - 1.5).abs() < 1e-15);
    }
}
