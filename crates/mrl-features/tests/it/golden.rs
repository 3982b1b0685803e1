//! Parity with the numpy reference in `fixtures/golden/features.json`.

use mrl_features::{
    FEATURE_NAMES, Feature, N_FEATURES, RSI_LEN, RSI_NO_CHANGE, RSI_ONLY_GAINS, WARMUP, WINDOW,
    compute_features,
};
use serde_json::Value;

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../fixtures/golden/features.json"
);
const TOL: f64 = 1e-9;

fn golden() -> Value {
    let text = std::fs::read_to_string(GOLDEN).expect("golden file");
    serde_json::from_str(&text).expect("golden json")
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

#[test]
fn config_matches_the_crate_constants() {
    let config = &golden()["config"];
    assert_eq!(config["window"].as_u64(), Some(WINDOW as u64));
    assert_eq!(config["dropped_rows"].as_u64(), Some(WARMUP as u64));
    let columns: Vec<&str> = config["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(columns, FEATURE_NAMES);
}

/// The reference's RSI when the 14 close changes ending at bar `t` hold no loss:
/// `rs = 100`, so `(100 − 100/101)/100`.
const REFERENCE_NO_LOSS_RSI: f64 = (100.0 - 100.0 / 101.0) / 100.0;

/// Sums of the gains and losses of the 14 close changes ending at bar `t ≥ 14`, taken
/// directly from the closes.
fn gains_losses(closes: &[f64], t: usize) -> (f64, f64) {
    closes[t - RSI_LEN..=t]
        .windows(2)
        .map(|w| w[1] - w[0])
        .fold((0.0, 0.0), |(g, l), d| (g + d.max(0.0), l + (-d).max(0.0)))
}

/// The documented RSI difference: where the reference's window holds no loss, the
/// reference reads `≈ 0.990` and this crate 1 (gains) or 0.5 (no change). `None` elsewhere.
fn documented_rsi(closes: &[f64], t: usize, reference: f64) -> Option<f64> {
    let (gains, losses) = gains_losses(closes, t);
    if losses > 0.0 {
        return None;
    }
    assert_eq!(
        reference, REFERENCE_NO_LOSS_RSI,
        "bar {t}: the rs = 100 branch"
    );
    Some(if gains > 0.0 {
        RSI_ONLY_GAINS
    } else {
        RSI_NO_CHANGE
    })
}

#[test]
fn every_case_matches_the_reference() {
    let golden = golden();
    let cases = golden["cases"].as_array().unwrap();
    assert!(cases.len() >= 2);
    let rsi_col = Feature::Rsi as usize;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let closes = f64s(&case["closes"]);
        let expected: Vec<Vec<f64>> = case["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(f64s)
            .collect();
        let shape = f64s(&case["features_shape"]);
        assert_eq!(shape, [expected.len() as f64, N_FEATURES as f64]);

        let features = compute_features(&closes).unwrap();
        let kept = features.kept();
        assert_eq!(kept.n_rows(), expected.len(), "{name}");
        let mut worst = 0.0_f64;
        for (j, want) in expected.iter().enumerate() {
            for (col, (&got, &want)) in kept.row(j).iter().zip(want).enumerate() {
                if col == rsi_col
                    && let Some(documented) = documented_rsi(&closes, WARMUP + j, want)
                {
                    assert_eq!(got, documented, "{name} row {j} rsi");
                    continue;
                }
                let err = (got - want).abs();
                worst = worst.max(err);
                assert!(
                    err <= TOL,
                    "{name} row {j} {}: {got} vs {want}",
                    FEATURE_NAMES[col]
                );
            }
        }
        assert!(worst < 1e-11, "{name}: worst error {worst:e}");
    }
}

#[test]
fn rising_stretch_reads_one_where_the_reference_reads_100_over_101() {
    let golden = golden();
    let case = golden["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "rising_stretch")
        .unwrap();
    let closes = f64s(&case["closes"]);
    let reference: Vec<f64> = case["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| f64s(row)[Feature::Rsi as usize])
        .collect();
    let features = compute_features(&closes).unwrap();
    let ours: Vec<f64> = features.kept().column(Feature::Rsi).collect();
    let hits: Vec<usize> = (0..ours.len())
        .filter(|&j| reference[j] == REFERENCE_NO_LOSS_RSI)
        .collect();
    assert!(
        hits.len() >= 2,
        "{} rows on the rs = 100 branch",
        hits.len()
    );
    for j in hits {
        assert_eq!(ours[j], 1.0, "row {j}");
        let (gains, losses) = gains_losses(&closes, WARMUP + j);
        assert!(gains > 0.0 && losses == 0.0, "row {j}");
    }
}
