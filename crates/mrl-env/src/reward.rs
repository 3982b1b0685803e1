//! Training rewards of the trading env: the net return (the default), the differential
//! Sharpe ratio, a mean–variance utility and a drawdown-penalised return.
//!
//! Every kind is a function of the step's net return `r_t = q·(p_{t+1}/p_t − 1) − cost`
//! and, for the drawdown, of the equity after the step; the accounting itself (equity,
//! returns, costs) never depends on the reward, so a backtest of the same positions books
//! the same returns whatever a policy was trained on. [`TradingConfig::reward_scale`]
//! multiplies whichever reward is chosen.
//!
//! | kind | reward `u_t` | source |
//! |---|---|---|
//! | [`RewardConfig::NetReturn`] | `r_t` | the design document |
//! | [`RewardConfig::DifferentialSharpe`] | `D_t = (B_{t−1}·ΔA_t − ½·A_{t−1}·ΔB_t) / (B_{t−1} − A_{t−1}²)^{3/2}` | Moody & Saffell 2001 |
//! | [`RewardConfig::MeanVariance`] | `r_t − (κ/2)·r_t²` | Ritter 2017 |
//! | [`RewardConfig::DrawdownPenalty`] | `r_t − λ·(MDD_t − MDD_{t−1})` | |
//!
//! The reward's state (the Sharpe moments, the peak equity and the running max drawdown)
//! starts afresh at every episode start, like the equity: an episode's reward depends on
//! that episode alone, and the RL² trial learns across episodes from the rewards it is fed.
//!
//! [`TradingConfig::reward_scale`]: crate::TradingConfig::reward_scale

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::trading::check;

/// Default EMA rate `η` of the differential Sharpe ratio: a time scale of `1/η = 100` steps,
/// half an episode of the default 200.
pub const DEFAULT_SHARPE_ETA: f64 = 0.01;

/// Default prior standard deviation of the per-step return for the differential Sharpe
/// ratio's warm start: 1 %, the order of an hourly crypto move.
pub const DEFAULT_SHARPE_INITIAL_STD: f64 = 0.01;

/// Default risk aversion `κ` of the mean–variance utility: `r − r²/2` is the second-order
/// expansion of the log growth `ln(1 + r)` (the Kelly criterion).
pub const DEFAULT_RISK_AVERSION: f64 = 1.0;

/// Default weight `λ` of the drawdown penalty: the episode's reward is its summed return
/// minus its maximum drawdown, both as fractions of equity.
pub const DEFAULT_DRAWDOWN_PENALTY: f64 = 1.0;

/// The standard deviation in the differential Sharpe ratio's denominator is at least this
/// share of `initial_std` (see [`RewardConfig::DifferentialSharpe`]): after 200 flat steps
/// at `η = 0.01` the variance is still `0.99^200 ≈ 0.13` of the prior, above the floor
/// `0.1² = 0.01`, so the floor only binds on long flat stretches (`> 458` steps at that
/// `η`) or when `initial_std` is set far above the data's volatility.
pub const SHARPE_STD_FLOOR: f64 = 0.1;

fn default_eta() -> f64 {
    DEFAULT_SHARPE_ETA
}

fn default_initial_std() -> f64 {
    DEFAULT_SHARPE_INITIAL_STD
}

fn default_risk_aversion() -> f64 {
    DEFAULT_RISK_AVERSION
}

fn default_penalty() -> f64 {
    DEFAULT_DRAWDOWN_PENALTY
}

/// Which reward a [`TradingEnv`](crate::TradingEnv) pays for a step, before
/// [`reward_scale`](crate::TradingConfig::reward_scale). See the module docs for the
/// formulas.
///
/// In TOML (`[task.trading]` of a training config):
/// `reward = { kind = "differential_sharpe", eta = 0.01 }`; omitted parameters take their
/// defaults, an omitted `reward` is the net return.
///
/// Read through `RewardToml`, a plain struct: serde ignores extra keys beside the tag of a
/// field-less variant even with `deny_unknown_fields` (serde-rs/serde#2123), so
/// `{ kind = "net_return", eta = 0.5 }` would load as the net return silently.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", try_from = "RewardToml")]
pub enum RewardConfig {
    /// The step's net return `r_t` (after costs, unscaled by equity).
    #[default]
    NetReturn,
    /// The differential Sharpe ratio `D_t` of Moody & Saffell (2001, "Learning to trade via
    /// direct reinforcement", IEEE TNN 12(4), eq. 15): the first-order effect of `r_t` on
    /// the Sharpe ratio `S_t = A_t / √(B_t − A_t²)` of exponential moving moments
    /// `A_t = A_{t−1} + η·(r_t − A_{t−1})`, `B_t = B_{t−1} + η·(r_t² − B_{t−1})`:
    /// `S_t ≈ S_{t−1} + η·D_t`. See [`differential_sharpe`].
    ///
    /// Start-up: each episode starts from `A_0 = 0` and `B_0 = initial_std²` (a prior
    /// variance instead of the zero moments that make `D_1` a division by 0), so
    /// `D_1 = r_1 / initial_std`. The variance `B_t − A_t²` then stays positive, but it
    /// decays by `1 − η` per step of zero return (a flat position), and the first move after
    /// a long flat stretch would be divided by almost nothing; so `D_t` uses
    /// `max(B_{t−1} − A_{t−1}², (SHARPE_STD_FLOOR · initial_std)²)`
    /// ([`SHARPE_STD_FLOOR`]). Choose `initial_std` of the order of the data's per-bar
    /// volatility.
    DifferentialSharpe {
        /// EMA rate `η ∈ (0, 1)`. Default [`DEFAULT_SHARPE_ETA`].
        eta: f64,
        /// Prior standard deviation of `r_t`, `> 0`: `√B_0`. Default
        /// [`DEFAULT_SHARPE_INITIAL_STD`].
        initial_std: f64,
    },
    /// The mean–variance (quadratic) utility of the step, `r_t − (κ/2)·r_t²` (Ritter 2017,
    /// "Machine learning for trading", SSRN 3015609: `δw − (κ/2)·(δw)²`), whose expectation
    /// is `E[r] − (κ/2)·(Var[r] + E[r]²)`: a volatility penalty. See
    /// [`mean_variance_utility`].
    MeanVariance {
        /// Risk aversion `κ ≥ 0`. Default [`DEFAULT_RISK_AVERSION`].
        risk_aversion: f64,
    },
    /// The net return less `λ` times this step's increase of the episode's running maximum
    /// drawdown `MDD_t = max_{s≤t} (1 − E_s / max_{u≤s} E_u)` (equity `E_0 = 1`, floored at
    /// 0): over an episode the penalties add up to `λ·MDD` exactly, the max drawdown the
    /// backtest reports (in absolute value). See [`DrawdownTracker`].
    DrawdownPenalty {
        /// Weight `λ ≥ 0`. Default [`DEFAULT_DRAWDOWN_PENALTY`].
        penalty: f64,
    },
}

/// The TOML form of a [`RewardConfig`]: `kind` and every variant's parameters, unknown keys
/// refused; a parameter of another kind is an error naming it and the kind.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RewardToml {
    kind: RewardKind,
    eta: Option<f64>,
    initial_std: Option<f64>,
    risk_aversion: Option<f64>,
    penalty: Option<f64>,
}

/// The kinds of [`RewardConfig`].
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RewardKind {
    NetReturn,
    DifferentialSharpe,
    MeanVariance,
    DrawdownPenalty,
}

impl TryFrom<RewardToml> for RewardConfig {
    type Error = String;

    fn try_from(raw: RewardToml) -> std::result::Result<Self, String> {
        // The kind's name and parameters (the serde defaults of the enum's fields would not
        // apply: `try_from` replaces its derived deserialisation, so the defaults are below).
        let (name, own): (&str, &[&str]) = match raw.kind {
            RewardKind::NetReturn => ("net_return", &[]),
            RewardKind::DifferentialSharpe => ("differential_sharpe", &["eta", "initial_std"]),
            RewardKind::MeanVariance => ("mean_variance", &["risk_aversion"]),
            RewardKind::DrawdownPenalty => ("drawdown_penalty", &["penalty"]),
        };
        let given = [
            ("eta", raw.eta),
            ("initial_std", raw.initial_std),
            ("risk_aversion", raw.risk_aversion),
            ("penalty", raw.penalty),
        ];
        if let Some((field, _)) = given
            .iter()
            .find(|(field, value)| value.is_some() && !own.contains(field))
        {
            return Err(format!("{field} is not a parameter of kind = \"{name}\""));
        }
        Ok(match raw.kind {
            RewardKind::NetReturn => RewardConfig::NetReturn,
            RewardKind::DifferentialSharpe => RewardConfig::DifferentialSharpe {
                eta: raw.eta.unwrap_or_else(default_eta),
                initial_std: raw.initial_std.unwrap_or_else(default_initial_std),
            },
            RewardKind::MeanVariance => RewardConfig::MeanVariance {
                risk_aversion: raw.risk_aversion.unwrap_or_else(default_risk_aversion),
            },
            RewardKind::DrawdownPenalty => RewardConfig::DrawdownPenalty {
                penalty: raw.penalty.unwrap_or_else(default_penalty),
            },
        })
    }
}

impl RewardConfig {
    /// The differential Sharpe ratio with the default `η` and warm start.
    pub const DIFFERENTIAL_SHARPE: RewardConfig = RewardConfig::DifferentialSharpe {
        eta: DEFAULT_SHARPE_ETA,
        initial_std: DEFAULT_SHARPE_INITIAL_STD,
    };

    /// True for the default [`RewardConfig::NetReturn`].
    pub fn is_net_return(&self) -> bool {
        matches!(self, RewardConfig::NetReturn)
    }

    /// Checks the parameters' domains.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) naming the parameter
    /// (`reward.eta`, …).
    pub fn validate(&self) -> Result<()> {
        let check = |ok, field, value: f64, reason| check(ok, field, value.to_string(), reason);
        match *self {
            RewardConfig::NetReturn => Ok(()),
            RewardConfig::DifferentialSharpe { eta, initial_std } => {
                check(
                    eta > 0.0 && eta < 1.0,
                    "reward.eta",
                    eta,
                    "expected a value in (0, 1)",
                )?;
                check(
                    initial_std.is_finite() && initial_std > 0.0,
                    "reward.initial_std",
                    initial_std,
                    "expected a finite value > 0",
                )
            }
            RewardConfig::MeanVariance { risk_aversion } => check(
                risk_aversion.is_finite() && risk_aversion >= 0.0,
                "reward.risk_aversion",
                risk_aversion,
                "expected a finite value >= 0",
            ),
            RewardConfig::DrawdownPenalty { penalty } => check(
                penalty.is_finite() && penalty >= 0.0,
                "reward.penalty",
                penalty,
                "expected a finite value >= 0",
            ),
        }
    }
}

/// Exponential moving moments of the return for the differential Sharpe ratio: the mean
/// `A` and the variance `V = B − A²` (kept instead of `B`, so that it stays ≥ 0 without
/// the cancellation of `B − A²`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SharpeMoments {
    /// `A`: EMA of the return.
    pub mean: f64,
    /// `V = B − A²`, with `B` the EMA of the squared return.
    pub variance: f64,
}

impl SharpeMoments {
    /// The warm start `A_0 = 0`, `B_0 = V_0 = initial_std²`.
    pub fn warm_start(initial_std: f64) -> Self {
        Self {
            mean: 0.0,
            variance: initial_std * initial_std,
        }
    }

    /// The moments after return `r` at rate `η`: `A' = A + η·(r − A)` and
    /// `V' = B' − A'² = (1 − η)·(V + η·(r − A)²)`, which is the update of
    /// `B' = B + η·(r² − B)` rewritten (expand `B' − A'²`).
    pub fn update(self, r: f64, eta: f64) -> Self {
        let d = r - self.mean;
        Self {
            mean: self.mean + eta * d,
            variance: (1.0 - eta) * (self.variance + eta * d * d),
        }
    }

    /// The EMA Sharpe ratio `S = A / √V`.
    pub fn sharpe(self) -> f64 {
        self.mean / self.variance.sqrt()
    }
}

/// The differential Sharpe ratio of return `r` given the previous moments (Moody & Saffell
/// 2001, eq. 15): `D = (B·ΔA − ½·A·ΔB) / (B − A²)^{3/2}` with `ΔA = r − A`, `ΔB = r² − B`,
/// computed as the equal `(V·(r − A/2) − (A/2)·(r − A)²) / V^{3/2}` (substitute
/// `B = V + A²`), free of the cancellation between `B` and `A²`.
///
/// `D` is the derivative of the next Sharpe ratio in `η` at `η = 0`:
/// `S(moments.update(r, η)) = S(moments) + η·D + O(η²)`. The variance must be > 0 (the
/// warm start guarantees it); it is infinite or NaN otherwise.
pub fn differential_sharpe(moments: SharpeMoments, r: f64) -> f64 {
    let SharpeMoments { mean, variance } = moments;
    let d = r - mean;
    (variance * (r - 0.5 * mean) - 0.5 * mean * d * d) / (variance * variance.sqrt())
}

/// The mean–variance utility of one return, `r − (κ/2)·r²` (Ritter 2017).
pub fn mean_variance_utility(r: f64, risk_aversion: f64) -> f64 {
    r - 0.5 * risk_aversion * r * r
}

/// The running maximum drawdown of an equity path that starts at 1.
///
/// `push(E_t)` returns `MDD_t − MDD_{t−1} ≥ 0`, where
/// `MDD_t = max_{s≤t} (1 − max(E_s, 0) / P_s)` and `P_s = max(1, E_1, …, E_s)`: the same
/// drawdown as `mrl_backtest::max_drawdown` (there negative), so the increases of an
/// episode add up to its maximum drawdown, in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DrawdownTracker {
    /// Highest equity so far, `P_t ≥ 1`.
    pub peak: f64,
    /// Largest drawdown so far, `MDD_t ∈ [0, 1]`.
    pub max_drawdown: f64,
}

impl Default for DrawdownTracker {
    fn default() -> Self {
        Self {
            peak: 1.0,
            max_drawdown: 0.0,
        }
    }
}

impl DrawdownTracker {
    /// Records the equity after a step; returns how much the max drawdown grew.
    pub fn push(&mut self, equity: f64) -> f64 {
        self.peak = self.peak.max(equity);
        let drawdown = 1.0 - equity.max(0.0) / self.peak;
        let increase = (drawdown - self.max_drawdown).max(0.0);
        self.max_drawdown += increase;
        increase
    }
}

/// The state of one episode's reward: what [`RewardConfig`] needs beyond the step.
/// Created (or [`reset`](Self::reset)) at every episode start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RewardState {
    config: RewardConfig,
    moments: SharpeMoments,
    variance_floor: f64,
    drawdown: DrawdownTracker,
}

impl RewardState {
    /// The state at an episode start.
    pub fn new(config: RewardConfig) -> Self {
        let initial_std = match config {
            RewardConfig::DifferentialSharpe { initial_std, .. } => initial_std,
            _ => 0.0,
        };
        let floor_std = SHARPE_STD_FLOOR * initial_std;
        Self {
            config,
            moments: SharpeMoments::warm_start(initial_std),
            variance_floor: floor_std * floor_std,
            drawdown: DrawdownTracker::default(),
        }
    }

    /// Back to the episode-start state.
    pub fn reset(&mut self) {
        *self = Self::new(self.config);
    }

    /// The reward of a step with net return `net_return` that left the episode's equity at
    /// `equity` (1 at the episode start); updates the state.
    ///
    /// [`RewardConfig::NetReturn`] returns `net_return` itself, bit for bit.
    pub fn reward(&mut self, net_return: f64, equity: f64) -> f64 {
        match self.config {
            RewardConfig::NetReturn => net_return,
            RewardConfig::DifferentialSharpe { eta, .. } => {
                let floored = SharpeMoments {
                    variance: self.moments.variance.max(self.variance_floor),
                    ..self.moments
                };
                let d = differential_sharpe(floored, net_return);
                self.moments = self.moments.update(net_return, eta);
                d
            }
            RewardConfig::MeanVariance { risk_aversion } => {
                mean_variance_utility(net_return, risk_aversion)
            }
            RewardConfig::DrawdownPenalty { penalty } => {
                net_return - penalty * self.drawdown.push(equity)
            }
        }
    }

    /// The Sharpe moments (meaningful for [`RewardConfig::DifferentialSharpe`]).
    pub fn moments(&self) -> SharpeMoments {
        self.moments
    }

    /// The drawdown so far (tracked for [`RewardConfig::DrawdownPenalty`] only).
    pub fn drawdown(&self) -> DrawdownTracker {
        self.drawdown
    }
}

#[cfg(test)]
mod tests {
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::Error;

    /// Seeded returns of about 1 % with a small positive drift.
    fn returns(n: usize, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| 0.001 + rng.random_range(-0.02..0.02))
            .collect()
    }

    #[test]
    fn differential_sharpe_matches_the_papers_formula_step_by_step() {
        let (eta, initial_std) = (0.05, 0.01);
        let mut state = RewardState::new(RewardConfig::DifferentialSharpe { eta, initial_std });
        // The paper's recursions on A and B, literally.
        let (mut a, mut b) = (0.0_f64, initial_std * initial_std);
        for (t, &r) in returns(500, 3).iter().enumerate() {
            let (delta_a, delta_b) = (r - a, r * r - b);
            let want = (b * delta_a - 0.5 * a * delta_b) / (b - a * a).powf(1.5);
            let got = state.reward(r, 1.0);
            assert!(
                (got - want).abs() <= 1e-9 * want.abs().max(1.0),
                "step {t}: {got} vs {want}"
            );
            a += eta * delta_a;
            b += eta * delta_b;
            let m = state.moments();
            assert!((m.mean - a).abs() < 1e-15, "A at step {t}");
            assert!((m.variance - (b - a * a)).abs() < 1e-15, "V at step {t}");
        }
    }

    #[test]
    fn first_differential_sharpe_is_the_return_over_the_prior_std() {
        let mut state = RewardState::new(RewardConfig::DifferentialSharpe {
            eta: 0.01,
            initial_std: 0.02,
        });
        assert!((state.reward(0.01, 1.0) - 0.5).abs() < 1e-15);
        // A zero return after a positive one lowers the EMA Sharpe ratio.
        assert!(state.reward(0.0, 1.0) < 0.0);
    }

    #[test]
    fn differential_sharpe_is_the_first_order_change_of_the_ema_sharpe() {
        // S_t − S_{t−1} = η·D_t + O(η²): the summed η·D_t track the change of S over the
        // sequence, closer as η shrinks.
        let rs = returns(1000, 11);
        let mut errors = Vec::new();
        for eta in [1e-3, 1e-4] {
            let mut moments = SharpeMoments::warm_start(0.01);
            let s0 = moments.sharpe();
            let mut sum = 0.0;
            for &r in &rs {
                sum += eta * differential_sharpe(moments, r);
                moments = moments.update(r, eta);
            }
            let change = moments.sharpe() - s0;
            assert!(change.abs() > 1e-3, "η = {eta}: S moved by {change}");
            errors.push(((sum - change) / change).abs());
        }
        assert!(errors[1] < 1e-2, "relative error {errors:?}");
        assert!(errors[1] < errors[0] / 5.0, "not first order: {errors:?}");
        // And step by step for one step at small η, from an arbitrary state.
        let m = SharpeMoments {
            mean: 0.002,
            variance: 1e-4,
        };
        let eta = 1e-7;
        let exact = (m.update(0.015, eta).sharpe() - m.sharpe()) / eta;
        assert!((exact - differential_sharpe(m, 0.015)).abs() < 1e-5);
    }

    #[test]
    fn a_long_flat_stretch_meets_the_variance_floor() {
        let mut state = RewardState::new(RewardConfig::DIFFERENTIAL_SHARPE);
        let flat = |state: &mut RewardState, steps| {
            for _ in 0..steps {
                assert_eq!(state.reward(0.0, 1.0), 0.0);
            }
        };
        // 200 flat steps: the variance decays as (1 − η)^t, above the floor.
        flat(&mut state, 200);
        let v = state.moments().variance;
        let decayed = (1.0 - 0.01_f64).powi(200) * 1e-4;
        assert!((v - decayed).abs() < 1e-12 * decayed, "{v} vs {decayed}");
        let mut probe = state;
        let want = 0.01 / v.sqrt();
        assert!((probe.reward(0.01, 1.0) - want).abs() < 1e-12 * want);
        // 5000 flat steps: the variance is ~1e-26, the denominator uses the floor
        // (0.1 · 1 %)², so a 1 % move is worth D = 0.01 / 0.001 = 10, not ~1e11.
        flat(&mut state, 4800);
        assert!(state.moments().variance < 1e-25);
        assert!((state.reward(0.01, 1.0) - 10.0).abs() < 1e-12);
    }

    #[test]
    fn mean_variance_is_the_quadratic_utility() {
        let mut state = RewardState::new(RewardConfig::MeanVariance { risk_aversion: 4.0 });
        assert!((state.reward(0.1, 1.1) - 0.08).abs() < 1e-16);
        assert!((state.reward(-0.1, 0.99) + 0.12).abs() < 1e-16);
        assert_eq!(mean_variance_utility(0.03, 0.0), 0.03);
    }

    #[test]
    fn drawdown_penalties_add_up_to_the_max_drawdown() {
        let penalty = 0.5;
        let rs = returns(300, 5);
        let mut state = RewardState::new(RewardConfig::DrawdownPenalty { penalty });
        let (mut equity, mut peak, mut mdd) = (1.0_f64, 1.0_f64, 0.0_f64);
        let mut total_penalty = 0.0;
        for (t, &r) in rs.iter().enumerate() {
            equity *= 1.0 + r;
            // Directly: the drawdown now, the running max before and after.
            peak = peak.max(equity);
            let new_mdd = mdd.max(1.0 - equity / peak);
            let want = r - penalty * (new_mdd - mdd);
            mdd = new_mdd;
            let got = state.reward(r, equity);
            assert!((got - want).abs() < 1e-15, "step {t}: {got} vs {want}");
            total_penalty += r - got;
        }
        assert!(mdd > 0.05, "the path has a drawdown: {mdd}");
        assert!((total_penalty - penalty * mdd).abs() < 1e-12);
        assert_eq!(state.drawdown().max_drawdown, mdd);
    }

    #[test]
    fn drawdown_of_a_wiped_out_account_is_one() {
        let mut tracker = DrawdownTracker::default();
        assert_eq!(tracker.push(1.2), 0.0);
        assert!((tracker.push(0.9) - 0.25).abs() < 1e-15);
        assert!((tracker.push(-0.3) - 0.75).abs() < 1e-15);
        assert_eq!(tracker.max_drawdown, 1.0);
        assert_eq!(tracker.push(1.3), 0.0);
    }

    #[test]
    fn net_return_is_returned_unchanged_and_reset_restarts_the_episode() {
        let mut state = RewardState::new(RewardConfig::NetReturn);
        for r in returns(50, 1) {
            assert_eq!(state.reward(r, 1.0).to_bits(), r.to_bits());
        }
        let mut sharpe = RewardState::new(RewardConfig::DIFFERENTIAL_SHARPE);
        let first = sharpe.reward(0.01, 1.01);
        sharpe.reward(-0.02, 0.99);
        sharpe.reset();
        assert_eq!(sharpe, RewardState::new(RewardConfig::DIFFERENTIAL_SHARPE));
        assert_eq!(sharpe.reward(0.01, 1.01), first);
    }

    #[test]
    fn validation_names_the_parameter() {
        let bad = [
            (
                RewardConfig::DifferentialSharpe {
                    eta: 0.0,
                    initial_std: 0.01,
                },
                "reward.eta",
            ),
            (
                RewardConfig::DifferentialSharpe {
                    eta: 1.0,
                    initial_std: 0.01,
                },
                "reward.eta",
            ),
            (
                RewardConfig::DifferentialSharpe {
                    eta: 0.01,
                    initial_std: 0.0,
                },
                "reward.initial_std",
            ),
            (
                RewardConfig::MeanVariance {
                    risk_aversion: f64::NAN,
                },
                "reward.risk_aversion",
            ),
            (
                RewardConfig::DrawdownPenalty { penalty: -1.0 },
                "reward.penalty",
            ),
        ];
        for (config, name) in bad {
            match config.validate() {
                Err(Error::InvalidConfig { field, .. }) => assert_eq!(field, name),
                other => panic!("{config:?}: {other:?}"),
            }
        }
        RewardConfig::DIFFERENTIAL_SHARPE.validate().unwrap();
        RewardConfig::NetReturn.validate().unwrap();
    }

    #[test]
    fn serde_names_and_defaults() {
        let json = serde_json::to_string(&RewardConfig::DIFFERENTIAL_SHARPE).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"differential_sharpe","eta":0.01,"initial_std":0.01}"#
        );
        let parsed: RewardConfig =
            serde_json::from_str(r#"{"kind":"differential_sharpe","eta":0.05}"#).unwrap();
        assert_eq!(
            parsed,
            RewardConfig::DifferentialSharpe {
                eta: 0.05,
                initial_std: DEFAULT_SHARPE_INITIAL_STD
            }
        );
        let parsed: RewardConfig = serde_json::from_str(r#"{"kind":"mean_variance"}"#).unwrap();
        assert_eq!(parsed, RewardConfig::MeanVariance { risk_aversion: 1.0 });
        let parsed: RewardConfig =
            serde_json::from_str(r#"{"kind":"drawdown_penalty","penalty":2.0}"#).unwrap();
        assert_eq!(parsed, RewardConfig::DrawdownPenalty { penalty: 2.0 });
        assert!(serde_json::from_str::<RewardConfig>(r#"{"kind":"sharpe"}"#).is_err());
        assert!(
            serde_json::from_str::<RewardConfig>(r#"{"kind":"mean_variance","kappa":1}"#).is_err()
        );
    }
}
