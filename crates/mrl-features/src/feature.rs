//! The 11 feature columns: names, order and constants shared by every consumer.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Number of feature columns.
pub const N_FEATURES: usize = 11;

/// Look-back window of the moving averages, volatility, momentum and Bollinger position.
pub const WINDOW: usize = 20;

/// Length of the RSI averages.
pub const RSI_LEN: usize = 14;

/// Number of leading bars whose features are not yet reliable (the slowest EMA, 26 bars).
///
/// Row `j` of [`FeatureMatrix::kept`](crate::FeatureMatrix::kept) is bar `j + WARMUP`.
pub const WARMUP: usize = 26;

/// Column names in column order.
pub const FEATURE_NAMES: [&str; N_FEATURES] = [
    "ret_1",
    "ret_5",
    "ret_10",
    "sma_ratio",
    "ema_ratio",
    "volatility",
    "momentum",
    "rsi",
    "macd",
    "bb_pos",
    "vol_ratio",
];

/// One feature column. `Feature as usize` is its column index.
///
/// Parse from a name (`"rsi".parse::<Feature>()`) or convert from a column index
/// (`Feature::try_from(7)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    /// `c_t / c_{t−1} − 1` (0 for t < 1).
    #[serde(rename = "ret_1")]
    Ret1,
    /// `c_t / c_{t−5} − 1` (0 for t < 5).
    #[serde(rename = "ret_5")]
    Ret5,
    /// `c_t / c_{t−10} − 1` (0 for t < 10).
    #[serde(rename = "ret_10")]
    Ret10,
    /// `c_t / SMA20_t − 1`.
    SmaRatio,
    /// `c_t / EMA20_t − 1`.
    EmaRatio,
    /// Standard deviation (ddof 0) of the last 20 log returns.
    Volatility,
    /// `c_t / c_{t−20} − 1`.
    Momentum,
    /// RSI(14) / 100 with simple 14-bar averages: `G/(G + L)`, 0.5 for a window without
    /// a change ([`RSI_NO_CHANGE`](crate::RSI_NO_CHANGE)).
    Rsi,
    /// `(EMA12 − EMA26) / c_t`.
    Macd,
    /// Position in the Bollinger band of the previous 20 closes.
    BbPos,
    /// `|log return| / SMA20(|log return|) − 1`.
    VolRatio,
}

impl Feature {
    /// All features in column order.
    pub const ALL: [Feature; N_FEATURES] = [
        Feature::Ret1,
        Feature::Ret5,
        Feature::Ret10,
        Feature::SmaRatio,
        Feature::EmaRatio,
        Feature::Volatility,
        Feature::Momentum,
        Feature::Rsi,
        Feature::Macd,
        Feature::BbPos,
        Feature::VolRatio,
    ];

    /// Column index, `0..N_FEATURES`.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Column name, as in [`FEATURE_NAMES`].
    pub fn name(self) -> &'static str {
        FEATURE_NAMES[self.index()]
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Feature {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        FEATURE_NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| Feature::ALL[i])
            .ok_or_else(|| Error::UnknownFeature {
                name: name.to_owned(),
            })
    }
}

impl TryFrom<usize> for Feature {
    type Error = Error;

    fn try_from(index: usize) -> Result<Self> {
        Feature::ALL
            .get(index)
            .copied()
            .ok_or(Error::FeatureIndexOutOfRange {
                index,
                n_features: N_FEATURES,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_indices_and_variants_agree() {
        for (i, feature) in Feature::ALL.into_iter().enumerate() {
            assert_eq!(feature.index(), i);
            assert_eq!(feature.name().parse::<Feature>(), Ok(feature));
            assert_eq!(Feature::try_from(i), Ok(feature));
            let json = serde_json::to_string(&feature).unwrap();
            assert_eq!(json, format!("\"{}\"", feature.name()));
        }
    }

    #[test]
    fn unknown_names_and_indices_are_errors() {
        assert_eq!(
            "RSI".parse::<Feature>(),
            Err(Error::UnknownFeature { name: "RSI".into() })
        );
        assert_eq!(
            Feature::try_from(N_FEATURES),
            Err(Error::FeatureIndexOutOfRange {
                index: 11,
                n_features: 11
            })
        );
    }
}
