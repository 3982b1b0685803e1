//! The PPO loss against `fixtures/golden/ppo_loss.json`, in f32 and f64, with gradients.

use candle_core::{DType, Device, Tensor, Var};
use mrl_ppo::{PpoLossConfig, PpoTargets, ppo_loss};
use serde_json::Value;

use crate::json::{assert_close, flat, golden, num, shape, vec1};

fn tensor(v: &Value, dtype: DType) -> Tensor {
    Tensor::from_vec(flat(v), shape(v), &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

fn to_f64(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn check_case(case: &Value, config: &PpoLossConfig, dtype: DType, key: &str, abs: f64, rel: f64) {
    let name = format!("{}/{key}", case["name"].as_str().unwrap());
    let inputs = &case["inputs"];
    let want = &case[key];
    let logits = Var::from_tensor(&tensor(&inputs["logits"], dtype)).unwrap();
    let values = Var::from_tensor(&tensor(&inputs["values"], dtype)).unwrap();
    let actions: Vec<u32> = vec1(&inputs["actions"]).iter().map(|&a| a as u32).collect();
    let n = actions.len();
    let targets = PpoTargets {
        actions: Tensor::from_vec(actions, n, &Device::Cpu).unwrap(),
        old_log_probs: tensor(&inputs["old_log_probs"], dtype),
        advantages: tensor(&inputs["advantages"], dtype),
        returns: tensor(&inputs["returns"], dtype),
        mask: None,
    };
    let loss = ppo_loss(logits.as_tensor(), values.as_tensor(), &targets, config).unwrap();
    for (part, t) in [
        ("policy_loss", &loss.policy),
        ("value_loss", &loss.value),
        ("entropy", &loss.entropy),
        ("total_loss", &loss.total),
    ] {
        assert_close(
            &format!("{name} {part}"),
            &to_f64(t),
            &[num(&want[part])],
            abs,
            rel,
        );
    }
    assert_close(
        &name,
        &to_f64(&loss.new_log_probs),
        &vec1(&want["new_log_probs"]),
        abs,
        rel,
    );
    assert_close(&name, &to_f64(&loss.ratio), &vec1(&want["ratio"]), abs, rel);
    let outside: Vec<bool> = loss
        .outside_clip
        .to_vec1::<u8>()
        .unwrap()
        .iter()
        .map(|&b| b != 0)
        .collect();
    let want_outside: Vec<bool> = want["ratio_outside_clip"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_bool().unwrap())
        .collect();
    assert_eq!(outside, want_outside, "{name}: outside clip");

    let grads = loss.total.backward().unwrap();
    let g_logits = grads.get(logits.as_tensor()).unwrap();
    let g_values = grads.get(values.as_tensor()).unwrap();
    assert_close(
        &name,
        &to_f64(g_logits),
        &flat(&want["grad_total_wrt_logits"]),
        abs,
        rel,
    );
    assert_close(
        &name,
        &to_f64(g_values),
        &vec1(&want["grad_total_wrt_values"]),
        abs,
        rel,
    );

    // A mask of ones is the plain mean.
    let masked = PpoTargets {
        mask: Some(Tensor::ones(n, dtype, &Device::Cpu).unwrap()),
        ..targets
    };
    let loss_masked = ppo_loss(logits.as_tensor(), values.as_tensor(), &masked, config).unwrap();
    assert_close(
        &name,
        &to_f64(&loss_masked.total),
        &[num(&want["total_loss"])],
        abs,
        rel,
    );
}

fn config(file: &Value) -> PpoLossConfig {
    let c = &file["config"];
    PpoLossConfig {
        clip: num(&c["clip_eps"]),
        value_coef: num(&c["value_coef"]),
        entropy_coef: num(&c["entropy_coef"]),
    }
}

#[test]
fn golden_loss_f64() {
    let file = golden("ppo_loss.json");
    for case in file["cases"].as_array().unwrap() {
        check_case(case, &config(&file), DType::F64, "float64", 1e-12, 0.0);
    }
}

#[test]
fn golden_loss_f32() {
    let file = golden("ppo_loss.json");
    for case in file["cases"].as_array().unwrap() {
        check_case(case, &config(&file), DType::F32, "float32", 1e-6, 1e-5);
    }
}

#[test]
fn masked_steps_contribute_nothing() {
    let dev = Device::Cpu;
    let config = PpoLossConfig::default();
    // Two real steps and one padded step with wild values.
    let logits = Var::from_tensor(
        &Tensor::new(
            &[[0.1f64, 0.2, -0.3], [1.0, -1.0, 0.0], [50.0, -50.0, 3.0]],
            &dev,
        )
        .unwrap(),
    )
    .unwrap();
    let values = Var::from_tensor(&Tensor::new(&[0.5f64, -0.2, 100.0], &dev).unwrap()).unwrap();
    let targets = PpoTargets {
        actions: Tensor::new(&[0u32, 2, 1], &dev).unwrap(),
        old_log_probs: Tensor::new(&[-1.0f64, -1.2, 0.0], &dev).unwrap(),
        advantages: Tensor::new(&[1.0f64, -0.5, 0.0], &dev).unwrap(),
        returns: Tensor::new(&[0.3f64, 0.1, 0.0], &dev).unwrap(),
        mask: Some(Tensor::new(&[1.0f64, 1.0, 0.0], &dev).unwrap()),
    };
    let loss = ppo_loss(logits.as_tensor(), values.as_tensor(), &targets, &config).unwrap();
    let short = PpoTargets {
        actions: targets.actions.narrow(0, 0, 2).unwrap(),
        old_log_probs: targets.old_log_probs.narrow(0, 0, 2).unwrap(),
        advantages: targets.advantages.narrow(0, 0, 2).unwrap(),
        returns: targets.returns.narrow(0, 0, 2).unwrap(),
        mask: None,
    };
    let ref_loss = ppo_loss(
        &logits.as_tensor().narrow(0, 0, 2).unwrap(),
        &values.as_tensor().narrow(0, 0, 2).unwrap(),
        &short,
        &config,
    )
    .unwrap();
    assert_close(
        "masked",
        &to_f64(&loss.total),
        &to_f64(&ref_loss.total),
        1e-15,
        0.0,
    );
    let grads = loss.total.backward().unwrap();
    let g = to_f64(grads.get(logits.as_tensor()).unwrap());
    assert_eq!(&g[6..], &[0.0, 0.0, 0.0]);
    assert_eq!(to_f64(grads.get(values.as_tensor()).unwrap())[2], 0.0);
    let stats = loss.stats(targets.mask.as_ref()).unwrap();
    let ref_stats = ref_loss.stats(None).unwrap();
    assert!((stats.approx_kl - ref_stats.approx_kl).abs() < 1e-15);
    assert_eq!(stats.clip_fraction, ref_stats.clip_fraction);
}

#[test]
fn shape_mismatch_and_empty_mask_are_errors() {
    let dev = Device::Cpu;
    let logits = Tensor::zeros((2, 3), DType::F64, &dev).unwrap();
    let values = Tensor::zeros(3, DType::F64, &dev).unwrap();
    let targets = PpoTargets {
        actions: Tensor::new(&[0u32, 1], &dev).unwrap(),
        old_log_probs: Tensor::zeros(2, DType::F64, &dev).unwrap(),
        advantages: Tensor::zeros(2, DType::F64, &dev).unwrap(),
        returns: Tensor::zeros(2, DType::F64, &dev).unwrap(),
        mask: None,
    };
    let config = PpoLossConfig::default();
    assert!(ppo_loss(&logits, &values, &targets, &config).is_err());
    let values = Tensor::zeros(2, DType::F64, &dev).unwrap();
    let empty = PpoTargets {
        mask: Some(Tensor::zeros(2, DType::F64, &dev).unwrap()),
        ..targets
    };
    assert!(ppo_loss(&logits, &values, &empty, &config).is_err());
    assert!(
        PpoLossConfig {
            clip: 1.5,
            ..config
        }
        .validate()
        .is_err()
    );
    assert!(
        PpoLossConfig {
            entropy_coef: -1.0,
            ..config
        }
        .validate()
        .is_err()
    );
}
