//! Over a million bars the O(1) rolling updates stay within rounding of a direct O(n·w)
//! computation, including at price levels where `E[x²] − E[x]²` would cancel badly.

use mrl_features::{BB_EPSILON, Feature, RSI_LEN, WINDOW, compute_features};

use crate::gbm;

/// Two-pass mean and std (ddof 0), summing offsets from the window's first value so that
/// the reference itself is accurate at high price levels.
fn mean_std(window: &[f64]) -> (f64, f64) {
    let n = window.len() as f64;
    let base = window[0];
    let offset = window.iter().map(|v| v - base).sum::<f64>() / n;
    let mean = base + offset;
    let var = window
        .iter()
        .map(|v| (v - base - offset) * (v - base - offset))
        .sum::<f64>()
        / n;
    (mean, var.sqrt())
}

/// A wandering GBM (prices span decades) followed by a calm stretch at a high price level
/// (1e5 with relative moves of 1e-7) and a jump back to volatile trading.
fn stress_series() -> Vec<f64> {
    let mut closes = gbm(700_000, 1e-5, 0.01, 7);
    closes.extend(gbm(200_000, 0.0, 1e-7, 8).iter().map(|c| c * 1e3));
    closes.extend(gbm(100_000, 0.0, 0.02, 9));
    closes
}

#[test]
fn rolling_features_match_a_direct_computation_over_a_million_bars() {
    let closes = stress_series();
    let n = closes.len();
    let features = compute_features(&closes).unwrap();
    let log_ret: Vec<f64> = std::iter::once(0.0)
        .chain(closes.windows(2).map(|w| (w[1] / w[0]).ln()))
        .collect();

    let (mut worst_vol, mut worst_bb) = (0.0_f64, 0.0_f64);
    for t in WINDOW..n {
        let row = features.bar(t).unwrap();
        let (_, vol) = mean_std(&log_ret[t + 1 - WINDOW..=t]);
        let got = row[Feature::Volatility as usize];
        worst_vol = worst_vol.max((got - vol).abs() / vol);

        let (mean, std) = mean_std(&closes[t - WINDOW..t]);
        let bb = (closes[t] - mean) / (2.0 * std + BB_EPSILON);
        let got = row[Feature::BbPos as usize];
        worst_bb = worst_bb.max((got - bb).abs() / bb.abs().max(1.0));
    }
    assert!(worst_vol < 1e-9, "volatility relative error {worst_vol:e}");
    assert!(worst_bb < 1e-9, "bb_pos error {worst_bb:e}");

    // Sums without cancellation: checked on a sample of rows.
    for t in (WINDOW..n).step_by(997) {
        let row = features.bar(t).unwrap();
        let sma = closes[t + 1 - WINDOW..=t].iter().sum::<f64>() / WINDOW as f64;
        let sma_ratio = closes[t] / sma - 1.0;
        assert!(
            (row[Feature::SmaRatio as usize] - sma_ratio).abs() < 1e-11,
            "sma at {t}"
        );

        let abs_mean = log_ret[t + 1 - WINDOW..=t]
            .iter()
            .map(|r| r.abs())
            .sum::<f64>()
            / WINDOW as f64;
        let vol_ratio = log_ret[t].abs() / abs_mean - 1.0;
        let got = row[Feature::VolRatio as usize];
        assert!(
            (got - vol_ratio).abs() < 1e-9 * vol_ratio.abs().max(1.0),
            "vol_ratio at {t}"
        );

        let (mut gains, mut losses) = (0.0, 0.0);
        for w in closes[t - RSI_LEN..=t].windows(2) {
            let d = w[1] - w[0];
            gains += d.max(0.0);
            losses += (-d).max(0.0);
        }
        let rsi = if gains + losses == 0.0 {
            0.5
        } else {
            gains / (gains + losses)
        };
        assert!(
            (row[Feature::Rsi as usize] - rsi).abs() < 1e-9,
            "rsi at {t}"
        );
    }
}
