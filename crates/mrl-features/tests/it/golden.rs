//! Parity with the numpy reference in `fixtures/golden/features.json`.

use mrl_features::{FEATURE_NAMES, N_FEATURES, WARMUP, WINDOW, compute_features};
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

#[test]
fn every_case_matches_the_reference() {
    let golden = golden();
    let cases = golden["cases"].as_array().unwrap();
    assert!(cases.len() >= 2);
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
            for (col, (got, want)) in kept.row(j).iter().zip(want).enumerate() {
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
fn rising_stretch_exercises_the_no_loss_rsi_branch() {
    let golden = golden();
    let case = golden["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "rising_stretch")
        .unwrap();
    let features = compute_features(&f64s(&case["closes"])).unwrap();
    let no_loss = (100.0 - 100.0 / 101.0) / 100.0;
    let hits = features
        .kept()
        .column(mrl_features::Feature::Rsi)
        .filter(|&r| r == no_loss)
        .count();
    assert!(hits >= 2, "{hits} rows on the rs = 100 branch");
}
