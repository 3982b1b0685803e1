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
//!   profit factor without a losing step, Calmar without a drawdown, CAGR of an empty series,
//!   of a span under one year, or one that overflows. They serialise as JSON `null` and print
//!   as `-`.
//!   A denominator counts as zero when it is within float residue of zero,
//!   `d ≤ max(1e-9 · |numerator|, 1e-14)` ([`is_negligible`]): returns computed in `f64`
//!   from prices (`p_{t+1}/p_t − 1`) carry errors of a few ulps of 1.0 (≈ 1e-16), so a
//!   close growing by exactly 0.1 % a bar has a "std" of ≈ 1e-16 and a Sharpe of ≈ 1e9
//!   that measures rounding, not risk; 1e-14 leaves a factor 100 of margin above that
//!   residue, and a per-step ratio above 1e9 (a loss would be a billion-sigma event) is
//!   not a measurement either. Any dispersion a market can produce (prices quoted to
//!   ≥ 1e-12 relative) lies far above both floors.
//! - **CAGR needs a year of steps**: `(1 + total)^(p/N) − 1` raises the growth to the power
//!   `p/N`, so annualising a short span extrapolates it without bound (two hourly bars of
//!   +1 % each give `1.0201^4383 − 1 ≈ 7.6e37`, a CAGR of 7.6e39 %). A span of fewer than
//!   `p` steps (under one year) therefore has no CAGR, and no Calmar ratio (built on it):
//!   the total return is the figure to read. This is the rule of the CFA Institute's
//!   performance standards (GIPS 2010, provision I.5.A.4: "returns for periods of less than
//!   one year must not be annualized"). empyrical's `annual_return` and quantstats' `cagr`
//!   annualise any span and would print those figures. The other annualised figures
//!   (volatility, Sharpe, Sortino, turnover) scale a per-step figure by `√p` or `p`, which
//!   cannot explode, and stay defined on any span, as in those libraries.
//! - **Non-finite inputs give undefined figures, never `inf` or a 0 made of `inf`.** The
//!   moments are computed without intermediate overflow: when the plain sums overflow (step
//!   returns beyond ≈ 1e154, from a bar priced near 0), they are taken of the returns scaled
//!   by their largest magnitude and scaled back, so a Sharpe ratio of finite returns is
//!   their Sharpe ratio, not `mean / inf = 0`. A ratio whose inputs are not finite (an
//!   infinite return, a sum of gains beyond `f64::MAX`) is `None`. The two plain magnitudes
//!   that could still exceed `f64` saturate at [`f64::MAX`]: equity (so the total return),
//!   and the volatility (only a step return beyond ≈ `f64::MAX / √p` or an infinite one gets
//!   there); a CAGR of a saturated equity is `None`. So every number of [`Metrics`] is
//!   finite.
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
//!   exposure, trades) are 0 (+0, never −0) for an empty series; so are the profit
//!   factor's sums of no gain or no loss. A `periods_per_year` that is not finite and > 0
//!   is replaced by 1 (per-step figures) with a warning.

use std::borrow::Cow;

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{BootstrapConfig, Spread};

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
    /// Compound annual growth rate, [`cagr`]; `None` over less than a year of steps, or
    /// when not finite.
    pub cagr: Option<f64>,
    /// Annualised volatility `std_ddof0 · √p`, [`volatility`] (saturated at `f64::MAX`).
    pub volatility: f64,
    /// Annualised Sharpe ratio (risk-free 0), [`sharpe`]; `None` when the returns do not
    /// vary.
    pub sharpe: Option<f64>,
    /// Annualised Sortino ratio (downside deviation over all steps, target 0), [`sortino`];
    /// `None` when no step lost.
    pub sortino: Option<f64>,
    /// Maximum drawdown from a starting equity of 1.0, in [−1, 0], [`max_drawdown`].
    pub max_drawdown: f64,
    /// CAGR / |max drawdown|, [`calmar`]; `None` without a drawdown or without a CAGR.
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

/// `√p · numerator / denominator`, `None` when either input is not finite, the denominator
/// is negligible ([`is_negligible`]) or the result is not finite.
fn annualised_ratio(numerator: f64, denominator: f64, periods_per_year: f64) -> Option<f64> {
    if !(numerator.is_finite() && denominator.is_finite()) || is_negligible(denominator, numerator)
    {
        return None;
    }
    let ratio = periods(periods_per_year).sqrt() * numerator / denominator;
    ratio.is_finite().then_some(ratio)
}

/// `(mean, std_ddof0)`; `(0, 0)` when empty, and an exact 0 std when every value is the
/// same. The mean is refined once by the mean of the deviations (the corrected two-pass
/// algorithm), so a long constant-ish series leaves no summation residue in the std.
/// Finite values whose sums overflow get the moments of [`without_overflow`].
fn mean_std(xs: &[f64]) -> (f64, f64) {
    without_overflow(xs, |xs| {
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
    })
}

/// `moments(xs)`, a pair of figures that scale with `xs` (a mean and a spread); when they
/// are not finite although every value is, `s · moments(xs / s)` with `s = max|x|` instead:
/// the scaled values lie in [−1, 1], so their sums cannot overflow and the figures come
/// back at most `s`. Values that are not all finite get `moments(xs)` as it is.
pub(crate) fn without_overflow(xs: &[f64], moments: impl Fn(&[f64]) -> (f64, f64)) -> (f64, f64) {
    let (a, b) = moments(xs);
    if (a.is_finite() && b.is_finite()) || !xs.iter().all(|x| x.is_finite()) {
        return (a, b);
    }
    let scale = xs.iter().fold(0.0_f64, |m, x| m.max(x.abs()));
    let scaled: Vec<f64> = xs.iter().map(|x| x / scale).collect();
    let (a, b) = moments(&scaled);
    (a * scale, b * scale)
}

/// The mean of `values` (NaN when empty), without intermediate overflow: finite values
/// near `f64::MAX` (saturated figures) give a finite mean ([`without_overflow`]).
pub(crate) fn mean_without_overflow(values: &[f64]) -> f64 {
    let n = values.len() as f64;
    without_overflow(values, |values| (values.iter().sum::<f64>() / n, 0.0)).0
}

/// Equity after each step from 1.0, floored at 0 and saturated at `f64::MAX`:
/// `E_t = min(max(E_{t−1}·(1 + r_t), 0), f64::MAX)`.
fn equity(returns: &[f64]) -> impl Iterator<Item = f64> + '_ {
    returns.iter().scan(1.0_f64, |e, &r| {
        *e = next_equity(*e, r);
        Some(*e)
    })
}

/// One step of the equity: `min(max(e·(1 + r), 0), f64::MAX)` (what [`equity`] and the
/// engine's book both use).
pub(crate) fn next_equity(e: f64, r: f64) -> f64 {
    // `max` then `min`, not `clamp`: `max` makes a NaN step 0 (the book is ruined).
    let floored = (e * (1.0 + r)).max(0.0);
    floored.min(f64::MAX)
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

/// `Π(1 + r_t) − 1`, equity floored at 0 (so ≥ −1) and saturated at `f64::MAX`; 0 when
/// empty.
pub fn total_return(returns: &[f64]) -> f64 {
    equity(returns).last().unwrap_or(1.0) - 1.0
}

/// Compound annual growth rate `(1 + total_return)^(p/N) − 1` over `N` steps.
///
/// `None` over less than a year of steps (`N < p`: a short span is not annualised, see the
/// module docs), when the equity saturated at `f64::MAX` on the way (the total return is
/// then no measurement) or when the result is not finite; −1 after ruin.
pub fn cagr(returns: &[f64], periods_per_year: f64) -> Option<f64> {
    let periods_per_year = periods(periods_per_year);
    let steps = returns.len() as f64;
    if returns.is_empty() || steps < periods_per_year {
        return None;
    }
    if equity(returns).any(|e| e >= f64::MAX) {
        return None;
    }
    let total = total_return(returns);
    let years = steps / periods_per_year;
    let growth = (1.0 + total).powf(1.0 / years) - 1.0;
    growth.is_finite().then_some(growth)
}

/// Annualised volatility `std_ddof0(r) · √p` of the [`booked_returns`]; 0 when empty.
/// Saturated at `f64::MAX` when the spread exceeds what an `f64` holds (an infinite step
/// return, or one beyond ≈ `f64::MAX / √p`).
pub fn volatility(returns: &[f64], periods_per_year: f64) -> f64 {
    let vol = mean_std(&booked_returns(returns)).1 * periods(periods_per_year).sqrt();
    if vol.is_finite() { vol } else { f64::MAX }
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
    let n = returns.len() as f64;
    without_overflow(returns, |returns| {
        let sum_sq: f64 = returns.iter().map(|&r| r.min(0.0) * r.min(0.0)).sum();
        ((sum_sq / n).sqrt(), 0.0)
    })
    .0
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
    // Sums from +0: `Iterator::sum` of no f64 is −0, which would print as −0.00.
    let gains = sum(booked.iter().copied().filter(|&r| r > 0.0));
    let losses = sum(booked.iter().filter(|&&r| r < 0.0).map(|r| -r));
    if !(gains.is_finite() && losses.is_finite()) || is_negligible(losses, gains) {
        return None;
    }
    let ratio = gains / losses;
    ratio.is_finite().then_some(ratio)
}

/// `Σ values` from +0 (`Iterator::sum` of no `f64` is −0).
fn sum(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(0.0, |acc, v| acc + v)
}

/// Total turnover `Σ_t |q_t − q_{t−1}|` with `q_{−1} = 0`: entering a unit position is 1,
/// a flip from +1 to −1 is 2, and a final open position is not closed. 0 when empty.
pub fn total_turnover(positions: &[f64]) -> f64 {
    sum(position_changes(positions).map(f64::abs))
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

/// A bootstrap confidence interval of a Sharpe difference `S̄(a) − S̄(b)`
/// ([`bootstrap_mean_sharpe_diff_ci`]; with one run each, `sharpe(a) − sharpe(b)`:
/// [`bootstrap_sharpe_diff_ci`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SharpeDiffCi {
    /// Difference on the observed returns: the difference of the two policies' Sharpe
    /// ratios as reported (each the mean over its runs).
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
/// (Politis & Romano 1994): [`bootstrap_mean_sharpe_diff_ci`] with one run of each.
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
    let config = BootstrapConfig {
        resamples: n_resamples,
        confidence,
        block_len,
    };
    bootstrap_mean_sharpe_diff_ci(&[a], &[b], periods_per_year, &config, rng)
}

/// The mean Sharpe ratio of several runs over the same steps, `S̄ = mean_k sharpe(runs[k])`
/// over the runs where it is defined (how [`mean_metrics`](crate::mean_metrics) averages
/// the seeds of a sampled policy); `None` when it is defined for none.
pub fn mean_sharpe(runs: &[&[f64]], periods_per_year: f64) -> Option<f64> {
    Spread::of_defined(runs.iter().map(|r| sharpe(r, periods_per_year))).map(|s| s.mean)
}

/// Confidence interval of the difference of mean Sharpe ratios
/// `Δ = S̄(a) − S̄(b)` ([`mean_sharpe`]) of two policies traded over the same steps, each
/// with one or more runs (the seeds of sampled actions; a deterministic policy has one):
/// `a[k]` and `b[k]` are per-step returns.
///
/// `Δ` is the difference of the two Sharpe ratios a report prints for the policies (each
/// the mean over its seeds); when every run's Sharpe ratio is defined it is also the mean
/// over seeds of the per-seed differences. The interval comes from the same estimator: a
/// paired stationary bootstrap of the steps (Politis & Romano 1994). Each resample is a
/// sequence of step indices as long as the data, built of blocks that start at a uniform
/// index and continue (wrapping around) with probability `1 − 1/block_len` at each step,
/// so blocks have a geometric length of mean `block_len` and short-range dependence
/// (volatility clustering) is kept; `block_len = 1` is the i.i.d. bootstrap. The same
/// indices resample every run of both policies, which keeps their correlation (all trade
/// the same bars), and `Δ` is recomputed on them. The interval is the percentile interval:
/// the `(1 − confidence)/2` and `(1 + confidence)/2` quantiles of the resampled `Δ` (linear
/// interpolation). It covers the uncertainty of the market path with every run's actions
/// held as they were; the spread across seeds is reported apart
/// ([`SeedSpread`](crate::SeedSpread)). Resamples where either mean Sharpe ratio is
/// undefined (no run defined) are dropped and counted in [`SharpeDiffCi::dropped`]; the
/// interval covers [`SharpeDiffCi::resamples`]. With one run each this is the bootstrap of
/// `sharpe(a) − sharpe(b)`, draw for draw.
///
/// `None` when a policy has no run, the runs differ in length or have fewer than 2 steps,
/// when `resamples` or `block_len` is 0, when `confidence` is not in (0, 1), when either
/// mean Sharpe ratio is undefined on the observed returns, or when no resample has both
/// defined.
pub fn bootstrap_mean_sharpe_diff_ci(
    a: &[&[f64]],
    b: &[&[f64]],
    periods_per_year: f64,
    config: &BootstrapConfig,
    rng: &mut ChaCha8Rng,
) -> Option<SharpeDiffCi> {
    let n = a.first()?.len();
    let &BootstrapConfig {
        resamples: n_resamples,
        confidence,
        block_len,
    } = config;
    let valid = n >= 2
        && !b.is_empty()
        && a.iter().chain(b).all(|run| run.len() == n)
        && n_resamples > 0
        && block_len > 0
        && confidence > 0.0
        && confidence < 1.0;
    if !valid {
        return None;
    }
    let point = mean_sharpe(a, periods_per_year)? - mean_sharpe(b, periods_per_year)?;
    let restart = 1.0 / block_len as f64;
    let mut indices = vec![0; n];
    let mut resampled = vec![0.0; n];
    let mut resampled_mean = |runs: &[&[f64]], indices: &[usize]| {
        Spread::of_defined(runs.iter().map(|run| {
            for (x, &i) in resampled.iter_mut().zip(indices) {
                *x = run[i];
            }
            sharpe(&resampled, periods_per_year)
        }))
        .map(|s| s.mean)
    };
    let mut diffs = Vec::with_capacity(n_resamples);
    for _ in 0..n_resamples {
        let mut idx = rng.random_range(0..n);
        for slot in &mut indices {
            *slot = idx;
            idx = if rng.random::<f64>() < restart {
                rng.random_range(0..n)
            } else {
                (idx + 1) % n
            };
        }
        if let Some(sa) = resampled_mean(a, &indices)
            && let Some(sb) = resampled_mean(b, &indices)
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
        assert_eq!(cagr(&[0.0; 252], 252.0), Some(0.0));
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
        assert_eq!(cagr(&returns, 4.0), Some(-1.0));
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

    /// Issue case: no step gained. The gains are +0, so the profit factor is +0 (it printed
    /// `-0.00` and serialised as `-0.0`: the sum of no `f64` is −0).
    #[test]
    fn profit_factor_without_a_gain_is_positive_zero() {
        for returns in [&[-0.01][..], &[-0.01, 0.0, -0.02][..]] {
            let pf = profit_factor(returns).unwrap();
            assert_eq!(pf.to_bits(), 0.0_f64.to_bits(), "{pf:?}");
            let m = Metrics::compute(returns, &[], 252.0);
            let json = serde_json::to_string(&m).unwrap();
            assert!(json.contains("\"profit_factor\":0.0,"), "{json}");
        }
        assert_eq!(total_turnover(&[]).to_bits(), 0.0_f64.to_bits());
    }

    /// Issue case: a bar priced 1e-300 between bars near 100. A book long from that bar
    /// returns ≈ 1e302 on the next step, whose square overflows: the volatility was `inf`,
    /// the Sharpe ratio `mean / inf = 0` and the JSON `null` for a plain number. The moments
    /// are now taken without overflow, so every figure is finite and the Sharpe ratio is
    /// that of the returns (the same as of the returns scaled down by 1e300).
    #[test]
    fn huge_finite_returns_give_finite_figures() {
        let mut returns: Vec<f64> = (0..200).map(|i| 0.01 * ((i as f64) * 0.7).sin()).collect();
        returns[101] = 100.0 / 1e-300 - 1.0;
        let m = Metrics::compute(&returns, &[1.0; 200], 8766.0);
        assert!(m.volatility.is_finite() && m.volatility > 1e300, "{m:?}");
        assert!(m.total_return.is_finite());
        let s = m.sharpe.unwrap();
        assert!(s.is_finite() && s != 0.0, "{s}");
        let scaled: Vec<f64> = returns.iter().map(|r| r * 1e-300).collect();
        let (mean, std) = mean_std(&scaled);
        let want = 8766.0_f64.sqrt() * mean / std;
        assert!((s - want).abs() <= 1e-9 * want.abs(), "{s} vs {want}");
        // Next to a mean return of ≈ 5e299 the losses are float residue: no Sortino ratio.
        assert_eq!(m.sortino, None);
        let json = serde_json::to_value(m).unwrap();
        for key in ["volatility", "total_return", "max_drawdown", "turnover"] {
            assert!(json[key].is_number(), "{key}: {json}");
        }
    }

    /// Non-finite inputs: a ratio built on them is undefined, never `inf` or a 0 made of
    /// `inf`, and the plain figures saturate at `f64::MAX` instead of turning `null`.
    #[test]
    fn non_finite_inputs_give_undefined_ratios_and_saturated_magnitudes() {
        let mut returns = vec![0.01, -0.02, 0.015, -0.005];
        returns.push(f64::INFINITY);
        returns.extend([0.01, -0.01]);
        let m = Metrics::compute(&returns, &[], 1.0);
        assert_eq!((m.sharpe, m.sortino, m.profit_factor), (None, None, None));
        assert_eq!((m.cagr, m.calmar), (None, None));
        assert_eq!(m.volatility, f64::MAX);
        assert!(m.total_return.is_finite() && m.total_return > 1e300);
        assert!((-1.0..=0.0).contains(&m.max_drawdown));
        let json = serde_json::to_value(m).unwrap();
        assert!(json["volatility"].is_number() && json["total_return"].is_number());
        // Gains whose sum overflows: no profit factor.
        assert_eq!(profit_factor(&[f64::MAX, f64::MAX, -0.5]), None);
        // A spread beyond f64 saturates; the ratio over it is computed without overflow.
        let wild = [1e307, -1e307, 1e307, -0.5e307];
        assert_eq!(volatility(&wild, 8766.0), f64::MAX);
        assert!(sharpe(&wild, 1.0).is_some_and(f64::is_finite));
        assert_eq!(annualised_ratio(1.0, f64::INFINITY, 1.0), None);
        assert_eq!(annualised_ratio(f64::INFINITY, 1.0, 1.0), None);
    }

    /// Issue case: annualising one or two test bars gave a CAGR of ≈ 4.6e92 %. A span under
    /// one year of steps has no CAGR (GIPS I.5.A.4), nor Calmar ratio; from one year on the
    /// figure is the usual one.
    #[test]
    fn cagr_needs_a_year_of_steps() {
        assert_eq!(cagr(&[0.02, 0.03], 8766.0), None);
        assert_eq!(calmar(&[0.02, -0.01], 8766.0), None);
        let m = Metrics::compute(&[0.02, -0.01], &[1.0, 1.0], 8766.0);
        assert_eq!((m.cagr, m.calmar), (None, None));
        assert!(m.sharpe.is_some() && m.volatility > 0.0);
        let almost: Vec<f64> = vec![0.001; 251];
        assert_eq!(cagr(&almost, 252.0), None);
        let year: Vec<f64> = vec![0.001; 252];
        let want = 1.001_f64.powi(252) - 1.0;
        assert!((cagr(&year, 252.0).unwrap() - want).abs() < 1e-12);
        let two_years: Vec<f64> = vec![0.001; 504];
        assert!((cagr(&two_years, 252.0).unwrap() - want).abs() < 1e-12);
        // A saturated equity is a bound, not a value: no CAGR from it.
        assert_eq!(cagr(&[1e300, 1e300, 0.0, 0.0], 1.0), None);
    }

    #[test]
    fn quantile_interpolates() {
        let sorted = [0.0, 1.0, 2.0, 4.0];
        assert_eq!(quantile(&sorted, 0.0), 0.0);
        assert_eq!(quantile(&sorted, 1.0), 4.0);
        assert!((quantile(&sorted, 0.5) - 1.5).abs() < 1e-15);
    }
}
