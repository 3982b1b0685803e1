//! Properties of the features: constant series, scale invariance, causality, finiteness and
//! errors naming the row.

use mrl_features::{
    Error, FEATURE_NAMES, Feature, FeatureMatrix, FeatureStream, N_FEATURES, WARMUP,
    compute_features,
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
        let no_loss_rsi = (100.0 - 100.0 / 101.0) / 100.0;
        for row in features.kept().rows() {
            for (col, &v) in row.iter().enumerate() {
                let want = if col == Feature::Rsi as usize { no_loss_rsi } else { 0.0 };
                prop_assert!((v - want).abs() < 1e-12, "{} = {v}", FEATURE_NAMES[col]);
            }
            // Exactly zero where no rounding is involved.
            for f in [Feature::Ret1, Feature::Volatility, Feature::BbPos, Feature::VolRatio] {
                prop_assert_eq!(row[f as usize], 0.0);
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
