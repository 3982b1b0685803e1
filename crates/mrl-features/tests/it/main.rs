//! Integration tests of mrl-features: golden parity, properties, long-series accuracy,
//! normalisation.

mod golden;
mod long_series;
mod normalize;
mod properties;

use mrl_data::{GbmParams, MarketProcess, SyntheticConfig};

/// Closes of a seeded GBM from mrl-data's generator (start 100, log-drift `drift` and
/// log-volatility `volatility` per bar).
pub fn gbm(n: usize, drift: f64, volatility: f64, seed: u64) -> Vec<f64> {
    let config = SyntheticConfig::new(MarketProcess::Gbm(GbmParams { drift, volatility }));
    let market = config.generate(n, seed).expect("valid GBM parameters");
    market.series.closes().to_vec()
}
