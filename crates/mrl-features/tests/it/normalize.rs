//! [`Normalizer`]: fitted on training bars only, constant columns, serde round trip.

use mrl_features::{Error, N_FEATURES, Normalizer, WARMUP, compute_features};

use crate::gbm;

#[test]
fn training_rows_become_z_scores() {
    let features = compute_features(&gbm(500, 0.0, 0.01, 1)).unwrap();
    let train = WARMUP..300;
    let norm = Normalizer::fit(&features, train.clone()).unwrap();
    let normalised = norm.apply(&features);
    assert_eq!(normalised.n_bars(), features.n_bars());
    let rows = &normalised.rows()[train];
    let n = rows.len() as f64;
    for col in 0..N_FEATURES {
        let mean = rows.iter().map(|r| r[col]).sum::<f64>() / n;
        let var = rows.iter().map(|r| (r[col] - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 1e-12, "column {col} mean {mean}");
        assert!((var - 1.0).abs() < 1e-9, "column {col} var {var}");
    }
    // Evaluation rows are transformed with the training statistics, not refitted.
    let t = 400;
    let row = features.bar(t).unwrap();
    let want: Vec<f64> = (0..N_FEATURES)
        .map(|c| (row[c] - norm.mean[c]) / norm.std[c])
        .collect();
    assert_eq!(normalised.bar(t).unwrap().as_slice(), want.as_slice());
}

#[test]
fn constant_columns_are_centred_not_divided_by_zero() {
    let features = compute_features(&vec![42.0; 80]).unwrap();
    let norm = Normalizer::fit(&features, WARMUP..80).unwrap();
    assert!(norm.std.iter().all(|&s| s == 1.0));
    let normalised = norm.apply(&features);
    assert!(normalised.kept().as_flat().iter().all(|v| v.abs() < 1e-12));
}

#[test]
fn survives_a_json_round_trip() {
    let features = compute_features(&gbm(200, 0.0, 0.01, 2)).unwrap();
    let norm = Normalizer::fit(&features, WARMUP..150).unwrap();
    let json = serde_json::to_string(&norm).unwrap();
    let back: Normalizer = serde_json::from_str(&json).unwrap();
    assert_eq!(back, norm);
}

#[test]
fn bad_fit_ranges_are_errors() {
    let features = compute_features(&gbm(100, 0.0, 0.01, 3)).unwrap();
    #[allow(clippy::reversed_empty_ranges)] // a reversed range is one of the cases
    let ranges = [0..50, WARMUP - 1..50, 60..60, 70..60, 50..101];
    for range in ranges {
        let err = Normalizer::fit(&features, range.clone()).unwrap_err();
        assert_eq!(
            err,
            Error::InvalidBarRange {
                start: range.start,
                end: range.end,
                min_start: WARMUP,
                n_bars: 100
            }
        );
    }
}
