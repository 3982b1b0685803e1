//! [`FeatureStream`]: the features computed one bar at a time, in O(1) per bar.
//!
//! This is the only implementation of the formulas: [`compute_features`](crate::compute_features)
//! runs it over a whole series, so a prefix computed incrementally (live trading, or an
//! environment that grows its series) is bit-for-bit the matrix of the whole series cut at
//! that bar, and the feature at bar `t` can only depend on closes up to `t`.

use crate::error::{Error, Result};
use crate::feature::{FEATURE_NAMES, Feature, N_FEATURES, RSI_LEN, WINDOW};
use crate::matrix::FeatureMatrix;
use crate::rolling::{RollingMoments, RollingSum};

/// Closes kept for the k-bar returns: the current one and the 20 before it fit in 32.
const HISTORY: usize = 32;

/// `1e-10` added to twice the Bollinger standard deviation (the reference's epsilon).
pub const BB_EPSILON: f64 = 1e-10;

/// RSI of a 14-bar window without a single price change: no gain and no loss carry no
/// information, so the oscillator sits at its midpoint.
///
/// The reference takes `rs = 100` whenever the average loss is 0, which gives `≈ 0.990`
/// both here and for a window that only rose; a window with gains and no loss is
/// [`RSI_ONLY_GAINS`] here. Wilder's `rsi = 1 − 1/(1 + G/L) = G/(G + L)` is 0/0 for a flat
/// window and 1 for `L = 0 < G`.
pub const RSI_NO_CHANGE: f64 = 0.5;

/// RSI of a 14-bar window with gains and no loss: `G/(G + L) = 1` (the reference's
/// `rs = 100` branch gives `100/101 ≈ 0.990`). The mirror case, losses and no gain, is
/// `rs = 0` and `rsi = 0` exactly, as in the reference.
pub const RSI_ONLY_GAINS: f64 = 1.0;

/// Smoothing factor of an EMA of span `s`: `α = 2/(s + 1)`.
fn ema_alpha(span: f64) -> f64 {
    2.0 / (span + 1.0)
}

/// `EMA_t = α·x_t + (1 − α)·EMA_{t−1}`, seeded with the first value.
#[derive(Debug, Clone)]
struct Ema {
    alpha: f64,
    value: f64,
}

impl Ema {
    fn new(span: f64) -> Self {
        Self {
            alpha: ema_alpha(span),
            value: f64::NAN,
        }
    }

    fn push(&mut self, x: f64, first: bool) -> f64 {
        self.value = if first {
            x
        } else {
            self.alpha * x + (1.0 - self.alpha) * self.value
        };
        self.value
    }
}

/// Incremental computation of the 11 features (see [`Feature`] and the crate docs for the
/// formulas). Push closes in time order; each push returns the feature row of that bar.
///
/// ```
/// use mrl_features::{FeatureStream, compute_features};
///
/// let closes: Vec<f64> = (0..60).map(|i| 100.0 + (i as f64 * 0.3).sin()).collect();
/// let mut stream = FeatureStream::new();
/// let last = closes.iter().map(|&c| stream.push(c)).last().unwrap()?;
/// let whole = compute_features(&closes)?;
/// assert_eq!(&last, whole.full().row(59));
/// # Ok::<(), mrl_features::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct FeatureStream {
    n_bars: usize,
    closes: [f64; HISTORY],
    sma: RollingSum<WINDOW>,
    abs_log_ret: RollingSum<WINDOW>,
    gains: RollingSum<RSI_LEN>,
    losses: RollingSum<RSI_LEN>,
    log_ret: RollingMoments<WINDOW>,
    bb: RollingMoments<WINDOW>,
    ema20: Ema,
    ema12: Ema,
    ema26: Ema,
}

impl Default for FeatureStream {
    fn default() -> Self {
        Self::new()
    }
}

impl FeatureStream {
    /// A stream that has seen no bar.
    pub fn new() -> Self {
        Self {
            n_bars: 0,
            closes: [0.0; HISTORY],
            sma: RollingSum::new(),
            abs_log_ret: RollingSum::new(),
            gains: RollingSum::new(),
            losses: RollingSum::new(),
            log_ret: RollingMoments::new(),
            bb: RollingMoments::new(),
            ema20: Ema::new(WINDOW as f64),
            ema12: Ema::new(12.0),
            ema26: Ema::new(26.0),
        }
    }

    /// Number of bars pushed so far (the bar index of the next push).
    pub fn n_bars(&self) -> usize {
        self.n_bars
    }

    /// Close `k` bars before the newest one (`k < HISTORY`, `k < n_bars`).
    fn close_back(&self, k: usize) -> f64 {
        self.closes[(self.n_bars - 1 - k) % HISTORY]
    }

    /// `c_t / c_{t−k} − 1` for `t ≥ k`, else 0 (`t` is the newest bar).
    fn simple_return(&self, k: usize) -> f64 {
        if self.n_bars > k {
            self.close_back(0) / self.close_back(k) - 1.0
        } else {
            0.0
        }
    }

    /// Consumes the close of the next bar and returns that bar's feature row.
    ///
    /// # Errors
    /// [`Error::NonPositivePrice`] for a zero, negative or non-finite close (the stream is
    /// left unchanged); [`Error::NonFiniteFeature`] when price ratios overflow (the bar is
    /// consumed).
    pub fn push(&mut self, close: f64) -> Result<[f64; N_FEATURES]> {
        let t = self.n_bars;
        if !(close.is_finite() && close > 0.0) {
            return Err(Error::NonPositivePrice {
                row: t + 1,
                value: close,
            });
        }
        let first = t == 0;
        let prev = if first { close } else { self.close_back(0) };
        let full_window = t >= WINDOW;

        // Bollinger position uses the 20 closes *before* this one: read, then push.
        let bb_pos = if full_window {
            let (mean, std) = self.bb.mean_std();
            (close - mean) / (2.0 * std + BB_EPSILON)
        } else {
            0.0
        };
        self.bb.push(close);

        self.closes[t % HISTORY] = close;
        self.n_bars = t + 1;

        let log_ret = if first { 0.0 } else { (close / prev).ln() };
        self.log_ret.push(log_ret);
        self.abs_log_ret.push(log_ret.abs());
        let delta = close - prev;
        self.gains.push(delta.max(0.0));
        self.losses.push((-delta).max(0.0));
        self.sma.push(close);

        let mut row = [0.0; N_FEATURES];
        row[Feature::Ret1 as usize] = self.simple_return(1);
        row[Feature::Ret5 as usize] = self.simple_return(5);
        row[Feature::Ret10 as usize] = self.simple_return(10);
        row[Feature::SmaRatio as usize] = close / (self.sma.sum() / WINDOW as f64) - 1.0;
        row[Feature::EmaRatio as usize] = close / self.ema20.push(close, first) - 1.0;
        if full_window {
            row[Feature::Volatility as usize] = self.log_ret.mean_std().1;
        }
        row[Feature::Momentum as usize] = self.simple_return(WINDOW);
        row[Feature::Rsi as usize] = rsi(&self.gains, &self.losses);
        let macd = self.ema12.push(close, first) - self.ema26.push(close, first);
        row[Feature::Macd as usize] = macd / close;
        row[Feature::BbPos as usize] = bb_pos;
        row[Feature::VolRatio as usize] = if self.abs_log_ret.all_zero() {
            0.0
        } else {
            log_ret.abs() / (self.abs_log_ret.sum() / WINDOW as f64) - 1.0
        };

        if let Some(col) = row.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFiniteFeature {
                row: t + 1,
                feature: FEATURE_NAMES[col],
            });
        }
        Ok(row)
    }

    /// Pushes every close and appends the rows to `out`, which must hold exactly the bars
    /// this stream has seen (start both empty). Rows appended before an error stay.
    ///
    /// # Errors
    /// [`Error::Misaligned`] when `out` does not match the stream, then the errors of
    /// [`push`](Self::push).
    pub fn extend(&mut self, closes: &[f64], out: &mut FeatureMatrix) -> Result<()> {
        if out.n_bars() != self.n_bars {
            return Err(Error::Misaligned {
                stream_bars: self.n_bars,
                matrix_bars: out.n_bars(),
            });
        }
        out.reserve(closes.len());
        for &close in closes {
            out.push_row(self.push(close)?);
        }
        Ok(())
    }
}

/// `rsi = (100 − 100/(1 + rs))/100`, `rs = Σgains/Σlosses` over 14 bars (the reference's
/// arithmetic, so values match it to the last bit); a window without a loss is
/// [`RSI_NO_CHANGE`] when it holds no gain either and [`RSI_ONLY_GAINS`] otherwise.
/// `all_zero` is exact (the sums count their non-zero entries), so one tiny move is enough
/// to leave these branches, as it should: it is the only information in the window.
fn rsi(gains: &RollingSum<RSI_LEN>, losses: &RollingSum<RSI_LEN>) -> f64 {
    if losses.all_zero() {
        if gains.all_zero() {
            RSI_NO_CHANGE
        } else {
            RSI_ONLY_GAINS
        }
    } else {
        let rs = gains.sum() / losses.sum();
        (100.0 - 100.0 / (1.0 + rs)) / 100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_close_leaves_the_stream_unchanged() {
        let mut stream = FeatureStream::new();
        stream.push(10.0).unwrap();
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let err = stream.push(bad).unwrap_err();
            assert!(
                matches!(err, Error::NonPositivePrice { row: 2, .. }),
                "{err}"
            );
        }
        assert_eq!(stream.n_bars(), 1);
        let row = stream.push(11.0).unwrap();
        assert!((row[0] - 0.1).abs() < 1e-15);
    }

    #[test]
    fn overflowing_ratios_are_an_error_naming_the_row() {
        let mut stream = FeatureStream::new();
        stream.push(1e-300).unwrap();
        let err = stream.push(1e300).unwrap_err();
        assert_eq!(
            err,
            Error::NonFiniteFeature {
                row: 2,
                feature: "ret_1"
            }
        );
    }

    #[test]
    fn rsi_branches() {
        let mut gains = RollingSum::<RSI_LEN>::new();
        let mut losses = RollingSum::<RSI_LEN>::new();
        // No change at all: the midpoint.
        gains.push(0.0);
        losses.push(0.0);
        assert_eq!(rsi(&gains, &losses), 0.5);
        // Only gains: 1, not the reference's 100/101.
        gains.push(1e-12);
        losses.push(0.0);
        assert_eq!(rsi(&gains, &losses), 1.0);
        // A loss as large as the gain: 0.5 through the ratio.
        gains.push(0.0);
        losses.push(1e-12);
        assert!((rsi(&gains, &losses) - 0.5).abs() < 1e-15);
        // Only losses (the gain left the window): exactly 0.
        for _ in 0..RSI_LEN - 1 {
            gains.push(0.0);
            losses.push(0.0);
        }
        assert!(gains.all_zero() && !losses.all_zero());
        assert_eq!(rsi(&gains, &losses), 0.0);
    }
}
