//! Integration tests of mrl-env.

mod bandit;
mod reward;
mod tasks;
mod trading;
mod trial;
mod vec_env;

use std::sync::Arc;

use mrl_data::{Bar, BarSeries, HOUR_MS};
use mrl_env::MarketData;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Hourly bars on the given closes (open = close, a 0.5% high-low range).
pub fn series(closes: &[f64]) -> BarSeries {
    let bars: Vec<Bar> = closes
        .iter()
        .enumerate()
        .map(|(i, &close)| Bar {
            timestamp: i as i64 * HOUR_MS,
            open: close,
            high: close * 1.0025,
            low: close * 0.9975,
            close,
            volume: 1.0 + i as f64,
        })
        .collect();
    BarSeries::new(&bars).expect("valid test bars")
}

/// A market on the given closes.
pub fn market(closes: &[f64]) -> Arc<MarketData> {
    MarketData::new(series(closes)).expect("features").shared()
}

/// A seeded random walk of `n` closes with 1% log-return volatility, starting at 100.
pub fn random_walk(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut price = 100.0_f64;
    (0..n)
        .map(|_| {
            let shock: f64 = rng.random_range(-0.017..0.017);
            price *= shock.exp();
            price
        })
        .collect()
}
