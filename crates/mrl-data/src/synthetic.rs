//! Synthetic markets: seeded price processes with known parameters, for training across a
//! distribution of markets and for oracle tests (the true law of every series is returned).
//!
//! Every process produces one log return `r_t` per bar; bar `t` then has
//! `open_t = close_{t−1}` (`close_{−1}` = [`BarStyle::start_price`]) and
//! `close_t = open_t · exp(r_t)`. Wicks and volume are cosmetic (see [`BarStyle`]) and come from
//! a second RNG stream, so they never change the close path.
//!
//! The laws, with `ε_t ~ N(0, 1)` i.i.d.:
//!
//! | process | log return `r_t` |
//! |---|---|
//! | [`GbmParams`] | `μ − σ²/2 + σ ε_t` (so `E[close_t / close_{t−1}] = e^μ`) |
//! | [`Ar1Params`] | `μ + φ (r_{t−1} − μ) + σ ε_t`, `r_0 ~ N(μ, σ²/(1 − φ²))` (stationary start) |
//! | [`RegimeParams`] | `μ_s − σ_s²/2 + σ_s ε_t`, `s_t` a Markov chain, `s_0` uniform |
//! | [`JumpParams`] | `μ − σ²/2 − λκ + σ ε_t + Σ_{k ≤ N_t} Y_k`, `N_t ~ Poisson(λ)`, `Y_k ~ N(μ_J, σ_J²)`, `κ = e^{μ_J + σ_J²/2} − 1` (Merton 1976) |
//!
//! [`SyntheticSeries::expected_return`] gives the oracle `E[close_{t+1}/close_t − 1 | bars ≤ t]`.

use std::fmt;
use std::str::FromStr;

use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, ShortFloat};
use crate::series::{BarSeries, Interval};

/// 2020-01-01T00:00:00Z in ms: the default timestamp of the first synthetic bar.
pub const SYNTHETIC_EPOCH_MS: i64 = 1_577_836_800_000;

/// How log returns become OHLCV bars: start price, clock, wicks and volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BarStyle {
    /// Price before the first bar (the first bar's open). Default 100.
    pub start_price: f64,
    /// Open time of the first bar, ms UTC. Default [`SYNTHETIC_EPOCH_MS`] (2020-01-01).
    pub start_time: i64,
    /// Bar spacing. Default one hour.
    pub interval: Interval,
    /// Wick size in units of the bar's diffusion volatility `σ_t`:
    /// `high = max(open, close) · exp(w σ_t |Z₁|)`, `low = min(open, close) · exp(−w σ_t |Z₂|)`.
    /// Default 0.5 (wicks of about 0.4 σ on each side).
    pub wick: f64,
    /// Mean volume: `volume = v · exp(0.5 Z₃ − 0.125)` (log-normal, mean `v`). Default 1000.
    pub volume: f64,
}

impl Default for BarStyle {
    fn default() -> Self {
        BarStyle {
            start_price: 100.0,
            start_time: SYNTHETIC_EPOCH_MS,
            interval: Interval::HOUR,
            wick: 0.5,
            volume: 1000.0,
        }
    }
}

impl BarStyle {
    /// Checks start price > 0, wick ≥ 0 and volume > 0 (all finite).
    pub fn validate(&self) -> Result<()> {
        positive("start_price", self.start_price)?;
        non_negative("wick", self.wick)?;
        positive("volume", self.volume)
    }
}

/// Geometric Brownian motion: `r_t = μ − σ²/2 + σ ε_t` per bar.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GbmParams {
    /// `μ`: log of the expected gross return per bar (`E[close_t/close_{t−1}] = e^μ`).
    pub drift: f64,
    /// `σ ≥ 0`: standard deviation of the log return per bar.
    pub volatility: f64,
}

impl Default for GbmParams {
    /// Hourly-crypto scale: `μ = 2·10⁻⁵` (≈ 19 % a year), `σ = 0.008` (≈ 75 % a year).
    fn default() -> Self {
        GbmParams {
            drift: 2e-5,
            volatility: 0.008,
        }
    }
}

impl GbmParams {
    /// Checks `μ` finite and `σ` finite and ≥ 0.
    pub fn validate(&self) -> Result<()> {
        finite("drift", self.drift)?;
        non_negative("volatility", self.volatility)
    }
}

/// AR(1) log returns: `r_t = μ + φ (r_{t−1} − μ) + σ ε_t`, started from the stationary law
/// `r_0 ~ N(μ, σ²/(1 − φ²))`. `φ > 0` is momentum, `φ < 0` mean reversion.
///
/// The oracle is `E[r_{t+1} | r_t] = μ + φ (r_t − μ)`; lag-1 autocorrelation of `r` is `φ`, its
/// stationary standard deviation `σ/√(1 − φ²)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ar1Params {
    /// `μ`: mean log return per bar.
    pub drift: f64,
    /// `φ`, with `|φ| < 1`.
    pub phi: f64,
    /// `σ ≥ 0`: innovation standard deviation.
    pub volatility: f64,
}

impl Default for Ar1Params {
    /// Mild momentum on an hourly-crypto scale: `μ = 0`, `φ = 0.1`, `σ = 0.008`.
    fn default() -> Self {
        Ar1Params {
            drift: 0.0,
            phi: 0.1,
            volatility: 0.008,
        }
    }
}

impl Ar1Params {
    /// Checks `μ` finite, `|φ| < 1`, `σ` finite and ≥ 0.
    pub fn validate(&self) -> Result<()> {
        finite("drift", self.drift)?;
        if !(self.phi.is_finite() && self.phi.abs() < 1.0) {
            return Err(invalid(
                "phi",
                ShortFloat(self.phi),
                "must satisfy |phi| < 1 (stationary AR(1))",
            ));
        }
        non_negative("volatility", self.volatility)
    }

    /// `E[r_{t+1} | r_t] = μ + φ (r_t − μ)`.
    pub fn conditional_mean(&self, last_log_return: f64) -> f64 {
        self.drift + self.phi * (last_log_return - self.drift)
    }
}

/// What a regime stands for; a label only, the behaviour is in [`RegimeState`]'s numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegimeLabel {
    /// Rising market.
    Bull,
    /// Falling market.
    Bear,
    /// Turbulent market.
    HighVolatility,
    /// Range-bound, quiet market.
    Sideways,
}

/// One state of a regime-switching market: GBM with its own drift and volatility.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RegimeState {
    /// What the state stands for.
    pub label: RegimeLabel,
    /// `μ_s`, as in [`GbmParams::drift`].
    pub drift: f64,
    /// `σ_s ≥ 0`, as in [`GbmParams::volatility`].
    pub volatility: f64,
}

/// Markov regime switching (Hamilton 1989): the state `s_t` follows a Markov chain with
/// `P(s_{t+1} = j | s_t = i) = transition[i][j]`; within a state returns are GBM. `s_0` is
/// uniform over the states.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegimeParams {
    /// The states.
    pub states: Vec<RegimeState>,
    /// Row-stochastic transition matrix, `states.len()` × `states.len()`.
    pub transition: Vec<Vec<f64>>,
}

impl Default for RegimeParams {
    /// Four hourly regimes: bull (`μ = 3·10⁻⁴`, `σ = 0.006`, mean stay 200 bars), bear
    /// (`−3·10⁻⁴`, 0.009, 150), high volatility (`−10⁻⁴`, 0.02, 50), sideways (0, 0.004, 200);
    /// on leaving a state the next one is uniform over the others.
    fn default() -> Self {
        let state = |label, drift, volatility| RegimeState {
            label,
            drift,
            volatility,
        };
        let states = vec![
            state(RegimeLabel::Bull, 3e-4, 0.006),
            state(RegimeLabel::Bear, -3e-4, 0.009),
            state(RegimeLabel::HighVolatility, -1e-4, 0.02),
            state(RegimeLabel::Sideways, 0.0, 0.004),
        ];
        let transition = mean_duration_matrix(&[200.0, 150.0, 50.0, 200.0]);
        RegimeParams { states, transition }
    }
}

/// Transition matrix where state `i` lasts `d_i` bars on average (stay probability
/// `1 − 1/d_i`) and then moves to one of the other states uniformly. Assumes `d_i ≥ 1`.
fn mean_duration_matrix(durations: &[f64]) -> Vec<Vec<f64>> {
    let n = durations.len();
    (0..n)
        .map(|i| {
            let stay = 1.0 - 1.0 / durations[i];
            (0..n)
                .map(|j| match (i == j, n) {
                    (true, _) => stay,
                    (false, 1) => 0.0,
                    (false, _) => (1.0 - stay) / (n - 1) as f64,
                })
                .collect()
        })
        .collect()
}

impl RegimeParams {
    /// States that last `mean_durations[i] ≥ 1` bars on average, then switch uniformly to one
    /// of the others (with a single state, it stays forever).
    pub fn with_mean_durations(states: Vec<RegimeState>, mean_durations: &[f64]) -> Result<Self> {
        if mean_durations.len() != states.len() {
            return Err(Error::InvalidParameter {
                name: "mean_durations",
                value: format!("{} values", mean_durations.len()),
                reason: format!("need one per state ({})", states.len()),
            });
        }
        for &d in mean_durations {
            if !(d.is_finite() && d >= 1.0) {
                return Err(invalid(
                    "mean_duration",
                    ShortFloat(d),
                    "must be finite and >= 1 bar",
                ));
            }
        }
        let params = RegimeParams {
            transition: mean_duration_matrix(mean_durations),
            states,
        };
        params.validate()?;
        Ok(params)
    }

    /// Checks at least one state, every state's numbers, a square matrix with entries in
    /// `[0, 1]` and rows summing to 1 (within 1e-9).
    pub fn validate(&self) -> Result<()> {
        let n = self.states.len();
        if n == 0 {
            return Err(invalid("states", 0, "need at least one regime"));
        }
        for state in &self.states {
            finite("drift", state.drift)?;
            non_negative("volatility", state.volatility)?;
        }
        if self.transition.len() != n || self.transition.iter().any(|row| row.len() != n) {
            return Err(Error::InvalidParameter {
                name: "transition",
                value: format!("{:?}", self.transition),
                reason: format!("must be a {n}x{n} matrix"),
            });
        }
        for row in &self.transition {
            for &p in row {
                if !(0.0..=1.0).contains(&p) {
                    return Err(invalid(
                        "transition probability",
                        ShortFloat(p),
                        "must be in [0, 1]",
                    ));
                }
            }
            let sum: f64 = row.iter().sum();
            if (sum - 1.0).abs() > 1e-9 {
                return Err(invalid(
                    "transition row sum",
                    ShortFloat(sum),
                    "each row must sum to 1",
                ));
            }
        }
        Ok(())
    }

    /// Next state given the current one: inverse-CDF draw from its transition row.
    fn next_state<R: Rng + ?Sized>(&self, current: usize, rng: &mut R) -> usize {
        let u: f64 = rng.random();
        let row = &self.transition[current];
        let mut acc = 0.0;
        for (j, &p) in row.iter().enumerate() {
            acc += p;
            if u < acc {
                return j;
            }
        }
        // Rounding left `u` above the total: take the last state with positive mass.
        row.iter().rposition(|&p| p > 0.0).unwrap_or(current)
    }
}

/// GBM with Merton (1976) compound-Poisson jumps in the log price; the drift is compensated so
/// that `E[close_t/close_{t−1}] = e^μ` as in [`GbmParams`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JumpParams {
    /// `μ`: log of the expected gross return per bar.
    pub drift: f64,
    /// `σ ≥ 0`: diffusion volatility per bar.
    pub volatility: f64,
    /// `λ ∈ [0, 100]`: expected jumps per bar.
    pub jump_rate: f64,
    /// `μ_J`: mean log jump size.
    pub jump_mean: f64,
    /// `σ_J ≥ 0`: standard deviation of the log jump size.
    pub jump_std: f64,
}

impl Default for JumpParams {
    /// Hourly crypto with crashes: `μ = 2·10⁻⁵`, `σ = 0.006`, one jump every 100 bars on
    /// average, log jump `N(−0.01, 0.03²)`.
    fn default() -> Self {
        JumpParams {
            drift: 2e-5,
            volatility: 0.006,
            jump_rate: 0.01,
            jump_mean: -0.01,
            jump_std: 0.03,
        }
    }
}

impl JumpParams {
    /// Checks finite drift and jump mean, `σ, σ_J ≥ 0`, `0 ≤ λ ≤ 100`.
    pub fn validate(&self) -> Result<()> {
        finite("drift", self.drift)?;
        non_negative("volatility", self.volatility)?;
        if !(0.0..=100.0).contains(&self.jump_rate) {
            return Err(invalid(
                "jump_rate",
                ShortFloat(self.jump_rate),
                "must be in [0, 100] jumps per bar",
            ));
        }
        finite("jump_mean", self.jump_mean)?;
        non_negative("jump_std", self.jump_std)
    }

    /// `κ = E[e^Y] − 1 = e^{μ_J + σ_J²/2} − 1`, the mean relative jump.
    pub fn kappa(&self) -> f64 {
        (self.jump_mean + 0.5 * self.jump_std * self.jump_std).exp() - 1.0
    }
}

/// The law of a synthetic market, with its true parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum MarketProcess {
    /// Geometric Brownian motion.
    Gbm(GbmParams),
    /// AR(1) log returns.
    Ar1(Ar1Params),
    /// Markov regime switching.
    Regime(RegimeParams),
    /// GBM with Merton jumps.
    Jump(JumpParams),
}

impl MarketProcess {
    /// Which kind of process this is.
    pub fn kind(&self) -> ProcessKind {
        match self {
            MarketProcess::Gbm(_) => ProcessKind::Gbm,
            MarketProcess::Ar1(_) => ProcessKind::Ar1,
            MarketProcess::Regime(_) => ProcessKind::Regime,
            MarketProcess::Jump(_) => ProcessKind::Jump,
        }
    }

    /// Checks the parameters (see each params type's `validate`).
    pub fn validate(&self) -> Result<()> {
        match self {
            MarketProcess::Gbm(p) => p.validate(),
            MarketProcess::Ar1(p) => p.validate(),
            MarketProcess::Regime(p) => p.validate(),
            MarketProcess::Jump(p) => p.validate(),
        }
    }
}

/// The kinds of [`MarketProcess`], by name (`gbm`, `ar1`, `regime`, `jump`) for configs and CLIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessKind {
    /// [`GbmParams`].
    Gbm,
    /// [`Ar1Params`].
    Ar1,
    /// [`RegimeParams`].
    Regime,
    /// [`JumpParams`].
    Jump,
}

impl ProcessKind {
    /// All kinds, in declaration order.
    pub const ALL: [ProcessKind; 4] = [
        ProcessKind::Gbm,
        ProcessKind::Ar1,
        ProcessKind::Regime,
        ProcessKind::Jump,
    ];

    /// The process of this kind with default parameters.
    pub fn default_process(self) -> MarketProcess {
        match self {
            ProcessKind::Gbm => MarketProcess::Gbm(GbmParams::default()),
            ProcessKind::Ar1 => MarketProcess::Ar1(Ar1Params::default()),
            ProcessKind::Regime => MarketProcess::Regime(RegimeParams::default()),
            ProcessKind::Jump => MarketProcess::Jump(JumpParams::default()),
        }
    }

    /// The lowercase name, as accepted by [`FromStr`].
    pub fn name(self) -> &'static str {
        match self {
            ProcessKind::Gbm => "gbm",
            ProcessKind::Ar1 => "ar1",
            ProcessKind::Regime => "regime",
            ProcessKind::Jump => "jump",
        }
    }
}

impl fmt::Display for ProcessKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ProcessKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        ProcessKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::InvalidParameter {
                name: "kind",
                value: s.to_string(),
                reason: "expected one of gbm, ar1, regime, jump".into(),
            })
    }
}

/// A process and a bar style: everything needed to generate a market from a seed.
///
/// ```
/// use mrl_data::{ProcessKind, SyntheticConfig};
///
/// let config = SyntheticConfig::new(ProcessKind::Ar1.default_process());
/// let a = config.generate(500, 7)?;
/// assert_eq!(a.series.len(), 500);
/// assert_eq!(a.series, config.generate(500, 7)?.series); // same seed, same bars
/// # Ok::<(), mrl_data::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticConfig {
    /// The law of the returns.
    pub process: MarketProcess,
    /// How returns become bars.
    #[serde(default)]
    pub bars: BarStyle,
}

impl Default for SyntheticConfig {
    /// Default GBM with the default bar style.
    fn default() -> Self {
        SyntheticConfig::new(ProcessKind::Gbm.default_process())
    }
}

impl SyntheticConfig {
    /// `process` with the default [`BarStyle`].
    pub fn new(process: MarketProcess) -> Self {
        SyntheticConfig {
            process,
            bars: BarStyle::default(),
        }
    }

    /// `n_bars ≥ 1` bars from `ChaCha8Rng::seed_from_u64(seed)`: the same seed gives the same
    /// bars, bit for bit.
    pub fn generate(&self, n_bars: usize, seed: u64) -> Result<SyntheticSeries> {
        self.generate_with_rng(n_bars, &mut ChaCha8Rng::seed_from_u64(seed))
    }

    /// As [`SyntheticConfig::generate`], drawing from `rng`. The return path uses `rng`
    /// directly; wicks and volume use a generator seeded from one `u64` of `rng`.
    pub fn generate_with_rng(
        &self,
        n_bars: usize,
        rng: &mut ChaCha8Rng,
    ) -> Result<SyntheticSeries> {
        self.process.validate()?;
        self.bars.validate()?;
        if n_bars == 0 {
            return Err(invalid("n_bars", 0, "must be >= 1"));
        }
        let step = self.bars.interval.millis();
        let last_offset = i64::try_from(n_bars - 1)
            .ok()
            .and_then(|k| k.checked_mul(step))
            .and_then(|off| off.checked_add(self.bars.start_time));
        if last_offset.is_none() {
            return Err(invalid(
                "n_bars",
                n_bars,
                "timestamps overflow i64 milliseconds",
            ));
        }

        let path = simulate(&self.process, n_bars, rng);
        let mut cosmetic = ChaCha8Rng::seed_from_u64(rng.next_u64());
        let series = build_bars(&self.bars, &path, &mut cosmetic)?;
        tracing::debug!(kind = %self.process.kind(), n_bars, "generated synthetic series");
        Ok(SyntheticSeries {
            series,
            params: self.process.clone(),
            regimes: path.regimes,
            log_returns: path.log_returns,
        })
    }
}

/// A generated market and its true law.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyntheticSeries {
    /// The bars.
    pub series: BarSeries,
    /// The true parameters that generated them.
    pub params: MarketProcess,
    /// For [`MarketProcess::Regime`], the state of every bar (an index into
    /// [`RegimeParams::states`]); `None` otherwise.
    pub regimes: Option<Vec<usize>>,
    /// The log return of every bar, `ln(close_t / open_t)` as drawn (before rounding through
    /// `exp`).
    pub log_returns: Vec<f64>,
}

impl SyntheticSeries {
    /// The oracle: `E[r_{t+1} | bars 0..=t]`, the expected log return of the next bar under
    /// the true law (a regime series uses the true state `s_t`).
    ///
    /// - GBM: `μ − σ²/2`; jumps: `μ − σ²/2 − λκ + λμ_J`;
    /// - AR(1): `μ + φ (r_t − μ)`;
    /// - regimes: `Σ_j P[s_t][j] (μ_j − σ_j²/2)`.
    ///
    /// Panics if `t ≥ series.len()`, like slice indexing.
    pub fn expected_log_return(&self, t: usize) -> f64 {
        let r_t = self.log_returns[t];
        match &self.params {
            MarketProcess::Gbm(p) => p.drift - 0.5 * p.volatility * p.volatility,
            MarketProcess::Ar1(p) => p.conditional_mean(r_t),
            MarketProcess::Jump(p) => {
                p.drift - 0.5 * p.volatility * p.volatility - p.jump_rate * p.kappa()
                    + p.jump_rate * p.jump_mean
            }
            MarketProcess::Regime(p) => {
                let s = self.regime_at(t);
                p.transition[s]
                    .iter()
                    .zip(&p.states)
                    .map(|(prob, st)| prob * (st.drift - 0.5 * st.volatility * st.volatility))
                    .sum()
            }
        }
    }

    /// The oracle for trading: `E[close_{t+1}/close_t − 1 | bars 0..=t]`.
    ///
    /// - GBM and jumps: `e^μ − 1`;
    /// - AR(1): `exp(μ + φ (r_t − μ) + σ²/2) − 1`;
    /// - regimes: `Σ_j P[s_t][j] e^{μ_j} − 1`.
    ///
    /// Panics if `t ≥ series.len()`, like slice indexing.
    pub fn expected_return(&self, t: usize) -> f64 {
        let r_t = self.log_returns[t];
        match &self.params {
            MarketProcess::Gbm(GbmParams { drift, .. })
            | MarketProcess::Jump(JumpParams { drift, .. }) => drift.exp_m1(),
            MarketProcess::Ar1(p) => {
                (p.conditional_mean(r_t) + 0.5 * p.volatility * p.volatility).exp_m1()
            }
            MarketProcess::Regime(p) => {
                let s = self.regime_at(t);
                let gross: f64 = p.transition[s]
                    .iter()
                    .zip(&p.states)
                    .map(|(prob, st)| prob * st.drift.exp())
                    .sum();
                gross - 1.0
            }
        }
    }

    fn regime_at(&self, t: usize) -> usize {
        self.regimes.as_ref().map_or(0, |r| r[t])
    }
}

/// Ranges to draw a [`MarketProcess`] from (domain randomisation, Tobin et al. 2017): a kind
/// uniformly from `kinds`, then each parameter uniformly from its `(lo, hi)` range.
///
/// - GBM: `μ ~ drift`, `σ ~ volatility`;
/// - AR(1): `μ ~ drift`, `φ ~ autocorrelation`, `σ ~ volatility`;
/// - jumps: GBM's plus `λ ~ jump_rate`, `μ_J ~ jump_mean`, `σ_J ~ jump_std`;
/// - regimes: the four labels, with `d_k ~ drift` and `v_k ~ volatility` drawn per state:
///   bull `(|d|, v)`, bear `(−|d|, v)`, high volatility `(d, 2v)`, sideways `(0, v/2)`; mean
///   durations `~ regime_duration`, switching uniformly to another state.
///
/// Defaults are hourly-crypto scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DomainRandomization {
    /// Kinds to draw from, uniformly. Default all four.
    pub kinds: Vec<ProcessKind>,
    /// `μ` per bar. Default `(−5·10⁻⁴, 5·10⁻⁴)`.
    pub drift: (f64, f64),
    /// `σ` per bar. Default `(0.002, 0.02)`.
    pub volatility: (f64, f64),
    /// AR(1) `φ`. Default `(−0.3, 0.3)`; must stay inside `(−1, 1)`.
    pub autocorrelation: (f64, f64),
    /// Jumps per bar `λ`. Default `(0, 0.02)`.
    pub jump_rate: (f64, f64),
    /// Mean log jump `μ_J`. Default `(−0.03, 0.03)`.
    pub jump_mean: (f64, f64),
    /// Log jump standard deviation `σ_J`. Default `(0.005, 0.05)`.
    pub jump_std: (f64, f64),
    /// Mean regime duration in bars. Default `(20, 500)`.
    pub regime_duration: (f64, f64),
    /// Bar style of every generated market.
    pub bars: BarStyle,
}

impl Default for DomainRandomization {
    fn default() -> Self {
        DomainRandomization {
            kinds: ProcessKind::ALL.to_vec(),
            drift: (-5e-4, 5e-4),
            volatility: (0.002, 0.02),
            autocorrelation: (-0.3, 0.3),
            jump_rate: (0.0, 0.02),
            jump_mean: (-0.03, 0.03),
            jump_std: (0.005, 0.05),
            regime_duration: (20.0, 500.0),
            bars: BarStyle::default(),
        }
    }
}

impl DomainRandomization {
    /// Checks every range is finite with `lo ≤ hi`, the kinds are not empty, and each range
    /// fits its parameter's domain.
    pub fn validate(&self) -> Result<()> {
        if self.kinds.is_empty() {
            return Err(invalid("kinds", "[]", "need at least one process kind"));
        }
        for (name, range) in [
            ("drift", self.drift),
            ("volatility", self.volatility),
            ("autocorrelation", self.autocorrelation),
            ("jump_rate", self.jump_rate),
            ("jump_mean", self.jump_mean),
            ("jump_std", self.jump_std),
            ("regime_duration", self.regime_duration),
        ] {
            let (lo, hi) = range;
            if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
                return Err(invalid(
                    name,
                    format!("({}, {})", ShortFloat(lo), ShortFloat(hi)),
                    "need finite lo <= hi",
                ));
            }
        }
        non_negative("volatility", self.volatility.0)?;
        non_negative("jump_std", self.jump_std.0)?;
        let (lo, hi) = self.autocorrelation;
        if lo <= -1.0 || hi >= 1.0 {
            return Err(invalid(
                "autocorrelation",
                format!("({}, {})", ShortFloat(lo), ShortFloat(hi)),
                "must lie inside (-1, 1)",
            ));
        }
        let (lo, hi) = self.jump_rate;
        if lo < 0.0 || hi > 100.0 {
            return Err(invalid(
                "jump_rate",
                format!("({}, {})", ShortFloat(lo), ShortFloat(hi)),
                "must lie inside [0, 100]",
            ));
        }
        if self.regime_duration.0 < 1.0 {
            return Err(invalid(
                "regime_duration",
                ShortFloat(self.regime_duration.0),
                "must be >= 1 bar",
            ));
        }
        self.bars.validate()
    }

    /// Draws a process (its parameters valid by construction).
    pub fn sample_process(&self, rng: &mut ChaCha8Rng) -> Result<MarketProcess> {
        self.validate()?;
        let kind = self.kinds[rng.random_range(0..self.kinds.len())];
        let mut draw = |(lo, hi): (f64, f64)| lo + (hi - lo) * rng.random::<f64>();
        let process = match kind {
            ProcessKind::Gbm => MarketProcess::Gbm(GbmParams {
                drift: draw(self.drift),
                volatility: draw(self.volatility),
            }),
            ProcessKind::Ar1 => MarketProcess::Ar1(Ar1Params {
                drift: draw(self.drift),
                phi: draw(self.autocorrelation),
                volatility: draw(self.volatility),
            }),
            ProcessKind::Jump => MarketProcess::Jump(JumpParams {
                drift: draw(self.drift),
                volatility: draw(self.volatility),
                jump_rate: draw(self.jump_rate),
                jump_mean: draw(self.jump_mean),
                jump_std: draw(self.jump_std),
            }),
            ProcessKind::Regime => {
                let mut state = |label| {
                    let (d, v) = (draw(self.drift), draw(self.volatility));
                    let (drift, volatility) = match label {
                        RegimeLabel::Bull => (d.abs(), v),
                        RegimeLabel::Bear => (-d.abs(), v),
                        RegimeLabel::HighVolatility => (d, 2.0 * v),
                        RegimeLabel::Sideways => (0.0, 0.5 * v),
                    };
                    RegimeState {
                        label,
                        drift,
                        volatility,
                    }
                };
                let states = vec![
                    state(RegimeLabel::Bull),
                    state(RegimeLabel::Bear),
                    state(RegimeLabel::HighVolatility),
                    state(RegimeLabel::Sideways),
                ];
                let durations: Vec<f64> = (0..4).map(|_| draw(self.regime_duration)).collect();
                MarketProcess::Regime(RegimeParams::with_mean_durations(states, &durations)?)
            }
        };
        process.validate()?;
        Ok(process)
    }

    /// Draws a process with [`DomainRandomization::sample_process`] and generates `n_bars`
    /// bars of it, all from `ChaCha8Rng::seed_from_u64(seed)`.
    pub fn generate(&self, n_bars: usize, seed: u64) -> Result<SyntheticSeries> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let config = SyntheticConfig {
            process: self.sample_process(&mut rng)?,
            bars: self.bars.clone(),
        };
        config.generate_with_rng(n_bars, &mut rng)
    }
}

/// The drawn path: log returns, each bar's diffusion volatility (for wicks) and regimes.
struct Path {
    log_returns: Vec<f64>,
    bar_vol: Vec<f64>,
    regimes: Option<Vec<usize>>,
}

fn normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    rng.sample(StandardNormal)
}

/// Draws `n` log returns of `process` (parameters already validated).
fn simulate(process: &MarketProcess, n: usize, rng: &mut ChaCha8Rng) -> Path {
    let mut log_returns = Vec::with_capacity(n);
    let mut bar_vol = Vec::with_capacity(n);
    let mut regimes = None;
    match process {
        MarketProcess::Gbm(p) => {
            let mean = p.drift - 0.5 * p.volatility * p.volatility;
            for _ in 0..n {
                log_returns.push(mean + p.volatility * normal(rng));
            }
            bar_vol.resize(n, p.volatility);
        }
        MarketProcess::Ar1(p) => {
            let stationary_sd = p.volatility / (1.0 - p.phi * p.phi).sqrt();
            let mut r = p.drift + stationary_sd * normal(rng);
            log_returns.push(r);
            for _ in 1..n {
                r = p.conditional_mean(r) + p.volatility * normal(rng);
                log_returns.push(r);
            }
            bar_vol.resize(n, stationary_sd);
        }
        MarketProcess::Jump(p) => {
            let mean = p.drift - 0.5 * p.volatility * p.volatility - p.jump_rate * p.kappa();
            // λ ∈ (0, 100] is inside Poisson's domain; λ = 0 means no jumps.
            let poisson = Poisson::new(p.jump_rate).ok();
            for _ in 0..n {
                let diffusion = mean + p.volatility * normal(rng);
                let jumps = poisson.as_ref().map_or(0.0, |d| d.sample(rng));
                // The sum of N i.i.d. N(μ_J, σ_J²) is N(N μ_J, N σ_J²): one draw per bar.
                let jump = if jumps > 0.0 {
                    jumps * p.jump_mean + p.jump_std * jumps.sqrt() * normal(rng)
                } else {
                    0.0
                };
                log_returns.push(diffusion + jump);
            }
            bar_vol.resize(n, p.volatility);
        }
        MarketProcess::Regime(p) => {
            let mut path = Vec::with_capacity(n);
            let mut s = rng.random_range(0..p.states.len());
            for t in 0..n {
                if t > 0 {
                    s = p.next_state(s, rng);
                }
                let st = p.states[s];
                log_returns.push(
                    st.drift - 0.5 * st.volatility * st.volatility + st.volatility * normal(rng),
                );
                bar_vol.push(st.volatility);
                path.push(s);
            }
            regimes = Some(path);
        }
    }
    Path {
        log_returns,
        bar_vol,
        regimes,
    }
}

/// Turns a path into validated bars (see [`BarStyle`] for wicks and volume).
fn build_bars(style: &BarStyle, path: &Path, rng: &mut ChaCha8Rng) -> Result<BarSeries> {
    let n = path.log_returns.len();
    let step = style.interval.millis();
    let (mut timestamp, mut open, mut high, mut low, mut close, mut volume) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut price = style.start_price;
    for (t, (&r, &vol)) in path.log_returns.iter().zip(&path.bar_vol).enumerate() {
        let o = price;
        let c = o * r.exp();
        let wick = style.wick * vol;
        let up = (wick * normal(rng).abs()).exp();
        let down = (-wick * normal(rng).abs()).exp();
        // `t < n` and the caller checked that the last timestamp fits in i64.
        timestamp.push(style.start_time + t as i64 * step);
        open.push(o);
        high.push(o.max(c) * up);
        low.push(o.min(c) * down);
        close.push(c);
        volume.push(style.volume * (0.5 * normal(rng) - 0.125).exp());
        price = c;
    }
    BarSeries::from_columns(timestamp, open, high, low, close, volume)
}

fn invalid(name: &'static str, value: impl fmt::Display, reason: &str) -> Error {
    Error::InvalidParameter {
        name,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

fn finite(name: &'static str, value: f64) -> Result<()> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(invalid(name, ShortFloat(value), "must be finite"))
    }
}

fn non_negative(name: &'static str, value: f64) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(invalid(name, ShortFloat(value), "must be finite and >= 0"))
    }
}

fn positive(name: &'static str, value: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(invalid(name, ShortFloat(value), "must be finite and > 0"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_duration_matrix_rows_are_stochastic() {
        let m = mean_duration_matrix(&[10.0, 2.0, 1.0]);
        let expected = [[0.9, 0.05, 0.05], [0.25, 0.5, 0.25], [0.5, 0.5, 0.0]];
        for (row, want) in m.iter().zip(expected) {
            for (p, w) in row.iter().zip(want) {
                assert!((p - w).abs() < 1e-15, "{m:?}");
            }
        }
        assert_eq!(mean_duration_matrix(&[5.0]), vec![vec![0.8]]);
    }

    #[test]
    fn next_state_follows_the_row() {
        let p = RegimeParams {
            states: RegimeParams::default().states[..2].to_vec(),
            transition: vec![vec![0.0, 1.0], vec![1.0, 0.0]],
        };
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for _ in 0..100 {
            assert_eq!(p.next_state(0, &mut rng), 1);
            assert_eq!(p.next_state(1, &mut rng), 0);
        }
    }

    #[test]
    fn kappa_is_the_mean_relative_jump() {
        let p = JumpParams {
            jump_mean: 0.0,
            jump_std: 0.0,
            ..JumpParams::default()
        };
        assert_eq!(p.kappa(), 0.0);
        let p = JumpParams {
            jump_mean: 0.1,
            jump_std: 0.2,
            ..JumpParams::default()
        };
        assert!((p.kappa() - (0.12f64.exp() - 1.0)).abs() < 1e-15);
    }
}
