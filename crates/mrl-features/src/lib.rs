//! Technical features of a close-price series, computed in O(n) and causally.
//!
//! The 11 columns, in order ([`FEATURE_NAMES`], [`Feature`]), for the close `c_t` of bar `t`
//! with `lr_t = ln(c_t / c_{t−1})` (`lr_0 = 0`):
//!
//! | column | formula |
//! |---|---|
//! | `ret_1`, `ret_5`, `ret_10` | `c_t / c_{t−k} − 1` for `t ≥ k`, else 0 |
//! | `sma_ratio` | `c_t / SMA20_t − 1`, SMA20 = sum of the last 20 closes / 20 (partial sums / 20 for `t < 19`) |
//! | `ema_ratio` | `c_t / EMA20_t − 1`, `α = 2/21`, `EMA_0 = c_0` |
//! | `volatility` | std (ddof 0) of `lr_{t−19..=t}` for `t ≥ 20`, else 0 |
//! | `momentum` | `c_t / c_{t−20} − 1` for `t ≥ 20`, else 0 |
//! | `rsi` | `(100 − 100/(1 + rs))/100`, `rs = Σ gains / Σ losses` of the last 14 close changes; 1 when there are gains and no loss, 0.5 when there is no change at all |
//! | `macd` | `(EMA12_t − EMA26_t) / c_t`, both seeded with `c_0` |
//! | `bb_pos` | `(c_t − mean(c_{t−20..t})) / (2·std(c_{t−20..t}) + 1e-10)` for `t ≥ 20`, else 0 (window excludes `c_t`) |
//! | `vol_ratio` | `|lr_t| / SMA20(|lr|)_t − 1`; 0 when the last 20 log returns are all 0 |
//!
//! These are the reference implementation's definitions (numpy, see the golden file
//! `fixtures/golden/features.json`), matched within 1e-11 (the file asks for 1e-9). Two
//! deliberate differences, both where the reference divides by zero:
//! - `vol_ratio`: the reference's is `0/0 = NaN` after 20 unchanged closes; here it is 0.
//! - `rsi` when the last 14 changes hold no loss: the reference sets `rs = 100`, so a flat
//!   window, which says nothing, and a strictly rising one both read `100/101 ≈ 0.990`. Here `rsi = G/(G + L)` is taken at its limits: 1 with gains
//!   and no loss ([`RSI_ONLY_GAINS`]), 0.5 with no change at all ([`RSI_NO_CHANGE`]: no
//!   information, the midpoint). Losses and no gain give 0 in both. Every other window is
//!   the reference's arithmetic, bit for bit.
//!
//! The first [`WARMUP`] = 26 bars use partial windows and unseeded EMAs: [`FeatureMatrix`]
//! keeps them so that row `t` is bar `t`, and [`FeatureMatrix::kept`] drops them.
//!
//! Central types:
//! - [`compute_features`] / [`compute_series_features`]: the whole series at once.
//! - [`FeatureStream`]: one bar at a time; the same code, so a growing prefix gives exactly
//!   the rows of the whole series (the feature of bar `t` depends only on closes `≤ t`).
//! - [`FeatureMatrix`] and its borrowed [`FeatureView`]s (`full`, `kept`, `bars`).
//! - [`Normalizer`]: z-scores fitted on training bars, serialisable.
//!
//! Rolling sums are updated in O(1) per bar and re-summed exactly every few dozen bars, with
//! variances taken about a shift from the window, so their error stays at rounding level
//! over millions of bars. Zero, negative or non-finite closes are an error naming the 1-based
//! row; no feature is ever NaN or infinite.
//!
//! ```
//! use mrl_features::{Feature, WARMUP, compute_features};
//!
//! let closes: Vec<f64> = (0..100).map(|i| 100.0 * (1.0 + 0.01 * (i as f64).sin())).collect();
//! let features = compute_features(&closes)?;
//! let kept = features.kept();
//! assert_eq!(kept.n_rows(), 100 - WARMUP);
//! assert_eq!(kept.first_bar(), WARMUP);
//! let rsi: Vec<f64> = kept.column("rsi".parse::<Feature>()?).collect();
//! assert!(rsi.iter().all(|r| (0.0..=1.0).contains(r)));
//! # Ok::<(), mrl_features::Error>(())
//! ```

mod error;
mod feature;
mod matrix;
mod normalize;
mod rolling;
mod stream;

pub use error::{Error, Result};
pub use feature::{FEATURE_NAMES, Feature, N_FEATURES, RSI_LEN, WARMUP, WINDOW};
pub use matrix::{
    FeatureMatrix, FeatureRow, FeatureView, compute_features, compute_series_features,
};
pub use normalize::{MIN_STD, Normalizer};
pub use stream::{BB_EPSILON, FeatureStream, RSI_NO_CHANGE, RSI_ONLY_GAINS};
