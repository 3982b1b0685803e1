//! [`MarketData`]: one bar series with its feature matrix, computed once and shared.

use std::sync::Arc;

use mrl_data::{BarSeries, Interval};
use mrl_features::{FeatureMatrix, N_FEATURES, WARMUP, compute_series_features};

use crate::{Error, Result};

/// A bar series and its 11 features per bar, ready for environments.
///
/// Built once and shared through [`Arc`] by every env and task that trades this market, so
/// an env holds no copy of the data. Features are stored row-major as `f32` (`len × 11`):
/// the row of bar `t` is what an observation at `t` copies. Every feature of bar `t` is a
/// function of closes `≤ t` only (see `mrl_features`), so observations never look ahead.
/// The first [`WARMUP`] rows come from partial windows; envs never start an episode there.
#[derive(Debug, Clone)]
pub struct MarketData {
    series: BarSeries,
    features: Vec<f32>,
    interval: Option<Interval>,
    periods_per_year: Option<f64>,
}

impl MarketData {
    /// Computes the raw features of `series`.
    pub fn new(series: BarSeries) -> Result<Self> {
        let features = compute_series_features(&series)?;
        Self::from_features(series, &features)
    }

    /// Uses precomputed features (for example z-scored by a `Normalizer` fitted on training
    /// bars); row `t` must be bar `t`.
    pub fn from_features(series: BarSeries, features: &FeatureMatrix) -> Result<Self> {
        if features.n_bars() != series.len() {
            return Err(Error::FeatureRowsMismatch {
                rows: features.n_bars(),
                bars: series.len(),
            });
        }
        let features = features.as_flat().iter().map(|&x| x as f32).collect();
        let interval = series.interval();
        let periods_per_year = series.periods_per_year();
        Ok(Self {
            series,
            features,
            interval,
            periods_per_year,
        })
    }

    /// Wraps `self` in an [`Arc`] to share it between envs.
    pub fn shared(self) -> Arc<Self> {
        Arc::new(self)
    }

    /// The bars.
    pub fn series(&self) -> &BarSeries {
        &self.series
    }

    /// Number of bars.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Always false: a [`BarSeries`] has at least one bar.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Close prices.
    pub fn closes(&self) -> &[f64] {
        self.series.closes()
    }

    /// Bar open times (ms UTC).
    pub fn timestamps(&self) -> &[i64] {
        self.series.timestamps()
    }

    /// The symbol, if the series has one.
    pub fn symbol(&self) -> Option<&str> {
        self.series.symbol()
    }

    /// The 11 features of bar `t` (`None` past the end).
    pub fn features(&self, t: usize) -> Option<&[f32]> {
        self.features.get(t * N_FEATURES..(t + 1) * N_FEATURES)
    }

    /// All features, row-major `len × 11`.
    pub fn feature_matrix(&self) -> &[f32] {
        &self.features
    }

    /// First bar whose features use full windows: [`WARMUP`].
    pub fn warmup(&self) -> usize {
        WARMUP
    }

    /// The bar spacing (`None` for a single bar).
    pub fn interval(&self) -> Option<Interval> {
        self.interval
    }

    /// Bars per year of this series (the annualisation factor of metrics; `None` for a
    /// single bar).
    pub fn periods_per_year(&self) -> Option<f64> {
        self.periods_per_year
    }
}
