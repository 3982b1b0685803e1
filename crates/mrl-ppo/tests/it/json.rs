//! Helpers to read the golden JSON fixtures.

use serde_json::Value;

/// Parses a golden file of `fixtures/golden/`.
pub fn golden(name: &str) -> Value {
    let path = format!(
        "{}/../../fixtures/golden/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// A JSON number as f64.
pub fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// A flat JSON array of numbers.
pub fn vec1(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(num).collect()
}

/// A JSON array of arrays of numbers, flattened row-major.
pub fn flat(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(items) => items.iter().flat_map(flat).collect(),
        other => vec![num(other)],
    }
}

/// The shape of a nested JSON array.
pub fn shape(v: &Value) -> Vec<usize> {
    let mut out = Vec::new();
    let mut cur = v;
    while let Value::Array(items) = cur {
        out.push(items.len());
        match items.first() {
            Some(first) => cur = first,
            None => break,
        }
    }
    out
}

/// Asserts `|a − b| ≤ abs + rel·|b|` elementwise.
pub fn assert_close(what: &str, got: &[f64], want: &[f64], abs: f64, rel: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= abs + rel * w.abs(),
            "{what}[{i}]: got {g}, want {w} (diff {})",
            (g - w).abs()
        );
    }
}
