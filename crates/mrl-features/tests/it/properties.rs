//! Properties of the features: constant series, scale invariance, causality, finiteness and
//! errors naming the row.

use mrl_features::{
    Error, FEATURE_NAMES, Feature, FeatureMatrix, FeatureStream, N_FEATURES, RSI_LEN,
    RSI_NO_CHANGE, WARMUP, compute_features,
};
use proptest::prelude::*;

/// Closes from `c0` compounding the given log returns.
fn walk(c0: f64, log_returns: &[f64]) -> Vec<f64> {
    std::iter::once(c0)
        .chain(log_returns.iter().scan(c0, |c, r| {
            *c *= r.exp();
            Some(*c)
        }))
        .collect()
}

/// Log returns of magnitude 0.5 %–5 % with a random sign: every close differs from the last.
fn moving_log_returns(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(
        (0.005..0.05_f64, any::<bool>()).prop_map(|(m, up)| if up { m } else { -m }),
        len,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn constant_series_have_neutral_features(c in 1e-3..1e6_f64, n in WARMUP + 1..150) {
        let features = compute_features(&vec![c; n]).unwrap();
        // Every bar, the warm-up included: no change, no information, the RSI midpoint.
        for row in features.rows() {
            prop_assert_eq!(row[Feature::Rsi as usize], RSI_NO_CHANGE);
        }
        for row in features.kept().rows() {
            for (col, &v) in row.iter().enumerate() {
                let want = if col == Feature::Rsi as usize { 0.5 } else { 0.0 };
                prop_assert!((v - want).abs() < 1e-12, "{} = {v}", FEATURE_NAMES[col]);
            }
            // Exactly zero where no rounding is involved.
            for f in [Feature::Ret1, Feature::Volatility, Feature::BbPos, Feature::VolRatio] {
                prop_assert_eq!(row[f as usize], 0.0);
            }
        }
    }

    #[test]
    fn rsi_is_the_share_of_gains_and_mirrors_under_reflection(
        ticks in prop::collection::vec(prop::sample::select(vec![-2, -1, 0, 0, 0, 0, 1, 2]), 1..200),
    ) {
        // Closes on a grid of 1/4 (exact in binary) with many unchanged bars, so windows
        // without a gain, without a loss or without any change all occur.
        let closes: Vec<f64> = std::iter::once(1000.0)
            .chain(ticks.iter().scan(1000.0, |c, &k| {
                *c += 0.25 * f64::from(k);
                Some(*c)
            }))
            .collect();
        let reflected: Vec<f64> = closes.iter().map(|c| 3000.0 - c).collect();
        let rsi = compute_features(&closes).unwrap();
        let mirrored = compute_features(&reflected).unwrap();
        let rsi: Vec<f64> = rsi.full().column(Feature::Rsi).collect();
        let mirrored: Vec<f64> = mirrored.full().column(Feature::Rsi).collect();
        for t in 0..closes.len() {
            // Gains and losses of the last 14 changes (the change into bar 0 is 0).
            let lo = t.saturating_sub(RSI_LEN);
            let (gains, losses) = closes[lo..=t]
                .windows(2)
                .map(|w| w[1] - w[0])
                .fold((0.0, 0.0), |(g, l), d| (g + d.max(0.0), l + (-d).max(0.0)));
            let want = if gains + losses == 0.0 { 0.5 } else { gains / (gains + losses) };
            prop_assert!((rsi[t] - want).abs() < 1e-12, "bar {}: {} vs {}", t, rsi[t], want);
            prop_assert!((mirrored[t] - (1.0 - rsi[t])).abs() < 1e-12, "bar {}", t);
            // The limits are exact: all gains 1, all losses 0, nothing 0.5.
            if losses == 0.0 {
                prop_assert_eq!(rsi[t], if gains == 0.0 { 0.5 } else { 1.0 });
            } else if gains == 0.0 {
                prop_assert_eq!(rsi[t], 0.0);
            }
        }
    }

    #[test]
    fn features_are_scale_invariant(
        c0 in 100.0..1000.0_f64,
        k in 0.5..20.0_f64,
        log_returns in moving_log_returns(0..150),
    ) {
        let closes = walk(c0, &log_returns);
        let scaled: Vec<f64> = closes.iter().map(|c| c * k).collect();
        let a = compute_features(&closes).unwrap();
        let b = compute_features(&scaled).unwrap();
        for (t, (ra, rb)) in a.rows().iter().zip(b.rows()).enumerate() {
            for col in 0..N_FEATURES {
                let tol = 1e-9 * ra[col].abs().max(1.0);
                prop_assert!(
                    (ra[col] - rb[col]).abs() <= tol,
                    "bar {t} {}: {} vs {}", FEATURE_NAMES[col], ra[col], rb[col]
                );
            }
        }
    }

    #[test]
    fn features_depend_only_on_the_past(
        log_returns in moving_log_returns(1..120),
        cut in any::<prop::sample::Index>(),
        future in prop::collection::vec(1e-3..1e3_f64, 120),
    ) {
        let closes = walk(100.0, &log_returns);
        let t = cut.index(closes.len());
        let whole = compute_features(&closes).unwrap();

        // Perturbing every close after t leaves rows 0..=t bit-for-bit unchanged.
        let mut perturbed = closes.clone();
        for (c, f) in perturbed[t + 1..].iter_mut().zip(&future) {
            *c = *f;
        }
        let other = compute_features(&perturbed).unwrap();
        prop_assert_eq!(&whole.rows()[..=t], &other.rows()[..=t]);

        // The prefix alone gives the same rows.
        let prefix = compute_features(&closes[..=t]).unwrap();
        prop_assert_eq!(prefix.rows(), &whole.rows()[..=t]);

        // Growing the matrix in two chunks gives the whole matrix.
        let mut stream = FeatureStream::new();
        let mut grown = FeatureMatrix::new();
        stream.extend(&closes[..=t], &mut grown).unwrap();
        stream.extend(&closes[t + 1..], &mut grown).unwrap();
        prop_assert_eq!(&grown, &whole);
    }

    #[test]
    fn any_positive_series_gives_finite_features(
        closes in prop::collection::vec((-6.0..9.0_f64).prop_map(|e| 10f64.powf(e)), 0..120),
    ) {
        let features = compute_features(&closes).unwrap();
        prop_assert_eq!(features.n_bars(), closes.len());
        prop_assert!(features.as_flat().iter().all(|v| v.is_finite()));
    }

    #[test]
    fn a_bad_close_is_an_error_naming_its_row(
        log_returns in moving_log_returns(0..60),
        at in any::<prop::sample::Index>(),
        bad in prop::sample::select(vec![0.0, -0.0, -1.0, -1e9, f64::NAN, f64::INFINITY, f64::NEG_INFINITY]),
    ) {
        let mut closes = walk(100.0, &log_returns);
        let i = at.index(closes.len());
        closes[i] = bad;
        match compute_features(&closes) {
            Err(Error::NonPositivePrice { row, value }) => {
                prop_assert_eq!(row, i + 1);
                prop_assert_eq!(value.to_bits(), bad.to_bits());
            }
            other => prop_assert!(false, "expected an error, got {:?}", other.map(|m| m.n_bars())),
        }
    }
}

#[test]
fn error_messages_name_the_row() {
    let err = compute_features(&[1.0, 2.0, 0.0]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "close at row 3 is 0: prices must be finite and > 0"
    );
}

#[test]
fn a_bar_series_gives_the_features_of_its_closes() {
    use mrl_data::SyntheticConfig;
    let market = SyntheticConfig::default().generate(120, 5).unwrap();
    let from_series = mrl_features::compute_series_features(&market.series).unwrap();
    assert_eq!(
        from_series,
        compute_features(market.series.closes()).unwrap()
    );
}
