//! Backtest metrics over a per-step return series, annualised by the bar interval.
//!
//! Inputs are `returns[t]`, the simple return of step `t` net of costs, and
//! `periods_per_year`, the number of bars in a year of the data
//! (`BarSeries::periods_per_year()`: ≈ 8766 for hourly crypto, ≈ 252 for daily equities).
//! Nothing assumes √252. `positions[t]` is the position held over step `t` (the one whose
//! return is `returns[t]`); the position before step 0 is flat (0).
//!
//! # Conventions
//! - **Sharpe** (risk-free rate 0): `√p · mean(r) / std_ddof0(r)`, the design document's
//!   formula without its `1e-10` epsilon. [`sharpe_ddof1`] is quantstats' variant.
//! - **Sortino** (target return 0): `√p · mean(r) / DD` with the downside deviation
//!   `DD = √(Σ_t min(r_t, 0)² / N)` over all `N` steps (Sortino & Price 1994; what
//!   empyrical's `sortino_ratio` and quantstats' `sortino` compute). The design document's
//!   variant, which divides by the spread of the losing steps alone, is
//!   [`sortino_losing_std`]: kept for parity with the golden file and reported nowhere.
//! - **Win rate** `#(r>0) / (#(r>0) + #(r<0))`, flat steps ignored.
//! - **Undefined ratios are `None`**, never a huge finite number or a 0: Sharpe when the
//!   returns do not vary, Sortino when no step lost, win rate when no step won or lost,
//!   profit factor without a losing step, Calmar without a drawdown, CAGR of an empty series
//!   or one that overflows. They serialise as JSON `null` and print as `-`.
//!   A denominator counts as zero when it is within float residue of zero,
//!   `d ≤ max(1e-9 · |numerator|, 1e-14)` ([`is_negligible`]): returns computed in `f64`
//!   from prices (`p_{t+1}/p_t − 1`) carry errors of a few ulps of 1.0 (≈ 1e-16), so a
//!   close growing by exactly 0.1 % a bar has a "std" of ≈ 1e-16 and a Sharpe of ≈ 1e9
//!   that measures rounding, not risk; 1e-14 leaves a factor 100 of margin above that
//!   residue, and a per-step ratio above 1e9 (a loss would be a billion-sigma event) is
//!   not a measurement either. Any dispersion a market can produce (prices quoted to
//!   ≥ 1e-12 relative) lies far above both floors.
//! - **Ruin is absorbing**: equity `E_t = max(E_{t−1}·(1 + r_t), 0)` from `E = 1.0`; the
//!   first step with `E_t = 0` is the ruin step ([`ruin_step`]). There the book closes: the
//!   ruin step's return is clipped to −1 (no more than the capital is lost) and every later
//!   step books 0 return and a flat position ([`booked_returns`]), so returns after ruin
//!   never enter a ratio; [`Metrics::ruin_step`] reports the step.
//! - **Max drawdown**: [`Metrics`] uses the trader's convention, [`max_drawdown`]: equity
//!   starts at 1.0 before the first step, so a loss on the first step is a drawdown (as in
//!   quantstats, and as capital actually lost). The design document's formula, with no
//!   starting 1.0, is [`max_drawdown_design`], kept for parity with the golden file. The
//!   drawdown lies in [−1, 0].
//! - Figures that are sums or shares (total return, volatility, drawdown, turnover,
//!   exposure, trades) are 0 for an empty series. A `periods_per_year` that is not finite
//!   and > 0 is replaced by 1 (per-step figures) with a warning.

use std::borrow::Cow;

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Relative floor of a ratio's denominator: at most `1e-9 · |numerator|` is float residue
/// ([`is_negligible`]).
pub const DISPERSION_REL_FLOOR: f64 = 1e-9;

/// Absolute floor of a ratio's denominator: at most `1e-14` (≈ 45 ulps of 1.0, the scale
/// at which a return `p_{t+1}/p_t − 1` is rounded) is float residue ([`is_negligible`]).
pub const DISPERSION_ABS_FLOOR: f64 = 1e-14;

/// The design document's epsilon in the denominator of [`sortino_losing_std`].
const DESIGN_EPSILON: f64 = 1e-10;

/// The summary of a backtest. Every number is finite; a ratio that is undefined is `None`
/// (see the module docs for conventions).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Compounded return over the whole series, [`total_return`].
    pub total_return: f64,
    /// Compound annual growth rate, [`cagr`]; `None` when empty or not finite.
    pub cagr: Option<f64>,
    /// Annualised volatility `std_ddof0 · √p`, [`volatility`].
    pub volatility: f64,
    /// Annualised Sharpe ratio (risk-free 0), [`sharpe`]; `None` when the returns do not
    /// vary.
    pub sharpe: Option<f64>,
    /// Annualised Sortino ratio (downside deviation over all steps, target 0), [`sortino`];
    /// `None` when no step lost.
    pub sortino: Option<f64>,
    /// Maximum drawdown from a starting equity of 1.0, in [−1, 0], [`max_drawdown`].
    pub max_drawdown: f64,
    /// CAGR / |max drawdown|, [`calmar`]; `None` without a drawdown.
    pub calmar: Option<f64>,
    /// Winning steps over non-flat steps, [`win_rate`]; `None` when no step won or lost.
    pub win_rate: Option<f64>,
    /// Gross gains / gross losses, [`profit_factor`]; `None` without a losing step.
    pub profit_factor: Option<f64>,
    /// Annualised turnover `Σ|Δposition| · p / N`, [`turnover`].
    pub turnover: f64,
    /// Share of steps with a non-zero position, [`exposure`].
    pub exposure: f64,
    /// Number of position changes, [`trade_count`].
    pub trades: usize,
    /// The step at which equity reached 0 ([`ruin_step`]); the book is flat after it.
    /// `None` when the book survived.
    pub ruin_step: Option<usize>,
}

impl Metrics {
    /// All metrics of one backtest.
    ///
    /// `positions` may be empty when they are unknown (then turnover, exposure and trades
    /// are 0); otherwise it should be as long as `returns` (a mismatch is logged and each
    /// series is used on its own). After a ruin step the book is closed: later returns
    /// count as 0 and later positions as flat.
    pub fn compute(returns: &[f64], positions: &[f64], periods_per_year: f64) -> Self {
        if !positions.is_empty() && positions.len() != returns.len() {
            tracing::warn!(
                returns = returns.len(),
                positions = positions.len(),
                "metrics: returns and positions differ in length"
            );
        }
        let periods_per_year = periods(periods_per_year);
        let ruin = ruin_step(returns);
        let returns = booked_returns(returns);
        let positions = match ruin {
            Some(t) if t + 1 < positions.len() => {
                let mut closed = positions.to_vec();
                closed[t + 1..].fill(0.0);
                Cow::Owned(closed)
            }
            _ => Cow::Borrowed(positions),
        };
        Self {
            total_return: total_return(&returns),
            cagr: cagr(&returns, periods_per_year),
            volatility: volatility(&returns, periods_per_year),
            sharpe: sharpe(&returns, periods_per_year),
            sortino: sortino(&returns, periods_per_year),
            max_drawdown: max_drawdown(&returns),
            calmar: calmar(&returns, periods_per_year),
            win_rate: win_rate(&returns),
            profit_factor: profit_factor(&returns),
            turnover: turnover(&positions, periods_per_year),
            exposure: exposure(&positions),
            trades: trade_count(&positions),
            ruin_step: ruin,
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

/// Whether `dispersion` (a standard or downside deviation, a sum of losses, a drawdown) is
/// zero up to float residue next to `level` (the ratio's numerator):
/// `dispersion ≤ max(DISPERSION_REL_FLOOR · |level|, DISPERSION_ABS_FLOOR)`, or not a
/// number. A ratio over a negligible denominator is undefined.
pub fn is_negligible(dispersion: f64, level: f64) -> bool {
    let floor = DISPERSION_ABS_FLOOR.max(DISPERSION_REL_FLOOR * level.abs());
    dispersion.is_nan() || dispersion.abs() <= floor
}

/// `√p · numerator / denominator`, `None` when the denominator is negligible
/// ([`is_negligible`]) or the result is not finite.
fn annualised_ratio(numerator: f64, denominator: f64, periods_per_year: f64) -> Option<f64> {
    if is_negligible(denominator, numerator) {
        return None;
    }
    let ratio = periods(periods_per_year).sqrt() * numerator / denominator;
    ratio.is_finite().then_some(ratio)
}

/// `(mean, std_ddof0)`; `(0, 0)` when empty, and an exact 0 std when every value is the
/// same. The mean is refined once by the mean of the deviations (the corrected two-pass
/// algorithm), so a long constant-ish series leaves no summation residue in the std.
fn mean_std(xs: &[f64]) -> (f64, f64) {
    let Some(&first) = xs.first() else {
        return (0.0, 0.0);
    };
    if xs.iter().all(|&x| x == first) {
        return (first, 0.0);
    }
    let n = xs.len() as f64;
    let rough = xs.iter().sum::<f64>() / n;
    let mean = rough + xs.iter().map(|x| x - rough).sum::<f64>() / n;
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

/// The first step whose equity (from 1.0, floored at 0) is 0: the book is ruined there.
/// `None` when equity stays positive.
pub fn ruin_step(returns: &[f64]) -> Option<usize> {
    equity(returns).position(|e| e <= 0.0)
}

/// The returns the book actually earns: as given up to the [`ruin_step`], that step's
/// return clipped to −1 (the capital is lost, not more), and 0 on every later step (the
/// book is closed). Borrowed when the book is never ruined.
pub fn booked_returns(returns: &[f64]) -> Cow<'_, [f64]> {
    match ruin_step(returns) {
        None => Cow::Borrowed(returns),
        Some(t) => {
            let mut booked = returns.to_vec();
            booked[t] = booked[t].max(-1.0);
            booked[t + 1..].fill(0.0);
            Cow::Owned(booked)
        }
    }
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

/// Annualised volatility `std_ddof0(r) · √p` of the [`booked_returns`]; 0 when empty.
pub fn volatility(returns: &[f64], periods_per_year: f64) -> f64 {
    mean_std(&booked_returns(returns)).1 * periods(periods_per_year).sqrt()
}

/// Annualised Sharpe ratio (risk-free 0) of the [`booked_returns`]:
/// `√p · mean(r) / std_ddof0(r)` (Sharpe 1994; the design document's formula without its
/// epsilon). `None` when the std is negligible ([`is_negligible`]): an empty, constant or
/// all-zero series.
pub fn sharpe(returns: &[f64], periods_per_year: f64) -> Option<f64> {
    let (mean, std) = mean_std(&booked_returns(returns));
    annualised_ratio(mean, std, periods_per_year)
}

/// Downside deviation with target 0 over all `N` steps: `√(Σ_t min(r_t, 0)² / N)`, per
/// step (not annualised); 0 when empty.
pub fn downside_deviation(returns: &[f64]) -> f64 {
    if returns.is_empty() {
        return 0.0;
    }
    let sum_sq: f64 = returns.iter().map(|&r| r.min(0.0) * r.min(0.0)).sum();
    (sum_sq / returns.len() as f64).sqrt()
}

/// Annualised Sortino ratio (target 0) of the [`booked_returns`]:
/// `√p · mean(r) / DD`, `DD` the [`downside_deviation`] over all steps (Sortino & Price
/// 1994; empyrical `sortino_ratio`, quantstats `sortino`). `None` when `DD` is negligible
/// ([`is_negligible`]): no step lost.
pub fn sortino(returns: &[f64], periods_per_year: f64) -> Option<f64> {
    let booked = booked_returns(returns);
    let mean = mean_std(&booked).0;
    annualised_ratio(mean, downside_deviation(&booked), periods_per_year)
}

/// The design document's Sortino variant, **not** the Sortino ratio:
/// `√p · mean(r) / (std_ddof0(r[r < 0]) + 1e-10)`, 0 when no `r < 0`. It divides by the
/// spread of the losing steps alone, so one losing step gives a denominator of 1e-10 and a
/// ratio near 1e9. Kept for parity with the design's golden file; reported nowhere.
pub fn sortino_losing_std(returns: &[f64], periods_per_year: f64) -> f64 {
    let downside: Vec<f64> = returns.iter().copied().filter(|&r| r < 0.0).collect();
    if downside.is_empty() {
        return 0.0;
    }
    let mean = mean_std(returns).0;
    periods(periods_per_year).sqrt() * mean / (mean_std(&downside).1 + DESIGN_EPSILON)
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

/// Calmar ratio `CAGR / |max_drawdown|`; `None` when there is no drawdown (or one within
/// float residue, [`is_negligible`]) or no CAGR.
pub fn calmar(returns: &[f64], periods_per_year: f64) -> Option<f64> {
    let mdd = max_drawdown(returns);
    let growth = cagr(returns, periods_per_year)?;
    if is_negligible(mdd, growth) {
        return None;
    }
    let ratio = growth / -mdd;
    ratio.is_finite().then_some(ratio)
}

/// Win rate `#(r > 0) / (#(r > 0) + #(r < 0))` of the [`booked_returns`] (flat steps
/// ignored); `None` when no step won or lost.
pub fn win_rate(returns: &[f64]) -> Option<f64> {
    let booked = booked_returns(returns);
    let wins = booked.iter().filter(|&&r| r > 0.0).count();
    let losses = booked.iter().filter(|&&r| r < 0.0).count();
    (wins + losses > 0).then(|| wins as f64 / (wins + losses) as f64)
}

/// Profit factor `Σ r[r > 0] / |Σ r[r < 0]|` of the [`booked_returns`] (per step, not per
/// trade); `None` when no step lost (the losses are negligible next to the gains,
/// [`is_negligible`]).
pub fn profit_factor(returns: &[f64]) -> Option<f64> {
    let booked = booked_returns(returns);
    let gains: f64 = booked.iter().filter(|&&r| r > 0.0).sum();
    let losses: f64 = booked.iter().filter(|&&r| r < 0.0).map(|r| -r).sum();
    (!is_negligible(losses, gains)).then(|| gains / losses)
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

/// quantstats' Sharpe ratio of the [`booked_returns`]: `mean(r) / std_ddof1(r) · √p`;
/// `None` when fewer than 2 returns or a negligible std ([`is_negligible`]; quantstats
/// gives inf or NaN).
pub fn sharpe_ddof1(returns: &[f64], periods_per_year: f64) -> Option<f64> {
    let n = returns.len();
    if n < 2 {
        return None;
    }
    let (mean, std0) = mean_std(&booked_returns(returns));
    let std1 = std0 * (n as f64 / (n - 1) as f64).sqrt();
    annualised_ratio(mean, std1, periods_per_year)
}

/// A bootstrap confidence interval of `sharpe(a) − sharpe(b)`
/// ([`bootstrap_sharpe_diff_ci`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SharpeDiffCi {
    /// Difference on the observed returns.
    pub point: f64,
    /// Lower bound.
    pub lo: f64,
    /// Upper bound.
    pub hi: f64,
    /// Coverage of the interval.
    pub confidence: f64,
    /// Resamples the interval is built from: those where both Sharpe ratios are defined.
    pub resamples: usize,
    /// Resamples dropped because a Sharpe ratio was undefined there (a resample of
    /// constant or all-zero returns).
    pub dropped: usize,
}

/// Confidence interval of `sharpe(a) − sharpe(b)` by a paired stationary bootstrap
/// (Politis & Romano 1994).
///
/// Each resample has the length of the data and is built of blocks that start at a uniform
/// index and continue (wrapping around) with probability `1 − 1/block_len` at each step,
/// so blocks have a geometric length of mean `block_len` and short-range dependence
/// (volatility clustering) is kept; `block_len = 1` is the i.i.d. bootstrap. The same
/// indices are used for `a` and `b`, which keeps their correlation (two strategies over the
/// same bars). The interval is the percentile interval: the `(1 − confidence)/2` and
/// `(1 + confidence)/2` quantiles of the resampled differences (linear interpolation).
/// Resamples where either Sharpe ratio is undefined ([`sharpe`] is `None`) are dropped and
/// counted in [`SharpeDiffCi::dropped`]; the interval covers [`SharpeDiffCi::resamples`].
///
/// `None` when `a` and `b` differ in length or have fewer than 2 steps, when `n_resamples`
/// or `block_len` is 0, when `confidence` is not in (0, 1), when either Sharpe ratio is
/// undefined on the observed returns, or when no resample has both defined.
pub fn bootstrap_sharpe_diff_ci(
    a: &[f64],
    b: &[f64],
    periods_per_year: f64,
    n_resamples: usize,
    confidence: f64,
    block_len: usize,
    rng: &mut ChaCha8Rng,
) -> Option<SharpeDiffCi> {
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
    let point = sharpe(a, periods_per_year)? - sharpe(b, periods_per_year)?;
    let restart = 1.0 / block_len as f64;
    let (mut ra, mut rb) = (vec![0.0; n], vec![0.0; n]);
    let mut diffs = Vec::with_capacity(n_resamples);
    for _ in 0..n_resamples {
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
        if let (Some(sa), Some(sb)) = (sharpe(&ra, periods_per_year), sharpe(&rb, periods_per_year))
        {
            diffs.push(sa - sb);
        }
    }
    let dropped = n_resamples - diffs.len();
    if dropped > 0 {
        tracing::debug!(
            dropped,
            n_resamples,
            "bootstrap: resamples with an undefined Sharpe ratio dropped"
        );
    }
    if diffs.is_empty() {
        return None;
    }
    diffs.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    Some(SharpeDiffCi {
        point,
        lo: quantile(&diffs, tail),
        hi: quantile(&diffs, 1.0 - tail),
        confidence,
        resamples: diffs.len(),
        dropped,
    })
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
            assert_eq!((m.sharpe, m.sortino), (None, None));
            assert_eq!(m.max_drawdown, 0.0);
            assert_eq!(m.calmar, None);
            assert_eq!(m.win_rate, None);
            assert_eq!(m.profit_factor, None);
            assert_eq!((m.turnover, m.exposure, m.trades), (0.0, 0.0, 0));
            assert_eq!(m.ruin_step, None);
        }
        assert_eq!(cagr(&[], 252.0), None);
        assert_eq!(cagr(&[0.0; 30], 252.0), Some(0.0));
        let json = serde_json::to_string(&Metrics::compute(&[], &[], 252.0)).unwrap();
        assert!(!json.contains("NaN"), "{json}");
        assert!(json.contains("\"sharpe\":null"), "{json}");
    }

    #[test]
    fn negligible_is_relative_to_the_level_with_an_absolute_floor() {
        assert!(is_negligible(0.0, 0.0));
        assert!(is_negligible(1e-15, 0.0));
        assert!(!is_negligible(1e-13, 0.0));
        assert!(is_negligible(1e-13, 1e-3)); // floor 1e-9 · 1e-3 = 1e-12
        assert!(!is_negligible(1e-11, 1e-3));
        assert!(is_negligible(f64::NAN, 1.0));
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
        assert_eq!(ruin_step(&returns), Some(1));
        assert_eq!(&booked_returns(&returns)[..], [0.1, -1.0, 0.0, 0.0]);
        assert_eq!(total_return(&returns), -1.0);
        assert_eq!(max_drawdown(&returns), -1.0);
        assert_eq!(cagr(&returns, 252.0), Some(-1.0));
        let m = Metrics::compute(&returns, &[1.0, -3.0, 1.0, 1.0], 252.0);
        assert_eq!(m.ruin_step, Some(1));
        // Positions after the ruin step are closed: enter, flip, close.
        assert_eq!((m.trades, m.exposure), (3, 0.5));
        assert_eq!(m.win_rate, Some(0.5));
        assert!(matches!(booked_returns(&[0.1, -0.5]), Cow::Borrowed(_)));
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
        assert_eq!(win_rate(&returns), Some(0.5));
        assert_eq!(profit_factor(&[0.01, 0.0]), None);
        assert_eq!(profit_factor(&[-0.01]), Some(0.0));
        assert_eq!(win_rate(&[0.0, 0.0]), None);
        assert_eq!(win_rate(&[-0.01]), Some(0.0));
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
