//! Reading the golden JSON files (nested lists → shape + flat values) and comparing.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use serde_json::Value;

/// Parses a golden file from `fixtures/golden/`.
pub fn load(name: &str) -> Value {
    let path = format!(
        "{}/../../fixtures/golden/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A nested list as (shape, row-major values).
pub fn array(v: &Value) -> (Vec<usize>, Vec<f64>) {
    fn walk(v: &Value, depth: usize, shape: &mut Vec<usize>, out: &mut Vec<f64>) {
        match v {
            Value::Array(items) => {
                if shape.len() == depth {
                    shape.push(items.len());
                }
                for item in items {
                    walk(item, depth + 1, shape, out);
                }
            }
            other => out.push(
                other
                    .as_f64()
                    .unwrap_or_else(|| panic!("not a number: {other}")),
            ),
        }
    }
    let (mut shape, mut out) = (Vec::new(), Vec::new());
    walk(v, 0, &mut shape, &mut out);
    (shape, out)
}

/// Values of a nested list as f32 (exact for the float32 blocks).
pub fn f32s(v: &Value) -> Vec<f32> {
    array(v).1.into_iter().map(|x| x as f32).collect()
}

/// Shape of a nested list.
pub fn shape(v: &Value) -> Vec<usize> {
    array(v).0
}

/// A nested list as an f32 tensor of its own shape.
pub fn tensor(v: &Value) -> Tensor {
    let (shape, values) = array(v);
    let values: Vec<f32> = values.into_iter().map(|x| x as f32).collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

/// Every entry of an object of nested lists as tensors.
pub fn tensor_map(v: &Value) -> HashMap<String, Tensor> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), tensor(v)))
        .collect()
}

/// Flat f32 values of a tensor.
pub fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// Asserts `|a − e| ≤ abs + rel·|e|` element-wise; the message names `what` and the index.
pub fn assert_close(what: &str, actual: &[f32], expected: &[f64], rel: f64, abs: f64) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let err = (a as f64 - e).abs();
        assert!(
            err <= abs + rel * e.abs(),
            "{what}[{i}]: {a} vs {e} (error {err:e})"
        );
    }
}

/// Tolerances for float32 blocks: 1e-5 relative, 1e-6 absolute (golden README).
pub const REL: f64 = 1e-5;
/// Absolute tolerance for float32 blocks.
pub const ABS: f64 = 1e-6;
