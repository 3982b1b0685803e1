//! The LoRA Llama and DPO on the tiny random model: the untrained adapters reproduce the
//! embedded model, and DPO gradients through the whole model match finite differences.

use candle_core::{DType, Device, Tensor, Var};
use mrl_llm::{
    EmbeddedBackend, LoraConfig, LoraLlama, Weights, dpo_loss, response_logprob, write_tiny_model,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn tiny() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_tiny_model(&path, 4).unwrap();
    (dir, path)
}

#[test]
fn untrained_adapters_reproduce_the_embedded_model() {
    let (_dir, path) = tiny();
    let lora = LoraLlama::load(&path, &LoraConfig::default(), DType::F32).unwrap();
    let mut base = EmbeddedBackend::load(&path, Weights::DequantizedF32).unwrap();
    let ids = base
        .tokenizer()
        .encode("the market in the morning")
        .unwrap();
    assert_eq!(ids.len(), 19);
    let all = lora.forward(&ids).unwrap();
    assert_eq!(all.dims(), [19, 267]);
    for end in [1, 7, 19] {
        let want = base.next_token_logits(&ids[..end]).unwrap();
        let got = all.get(end - 1).unwrap().to_vec1::<f32>().unwrap();
        let err = want
            .iter()
            .zip(&got)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 1e-4, "position {end}: {err}");
    }
}

/// DPO loss of one pair (two responses to one prompt) against fixed reference log-probs.
fn pair_loss(model: &LoraLlama, prompt: &[u32], chosen: &[u32], rejected: &[u32]) -> Tensor {
    let seq = |resp: &[u32]| [prompt, resp].concat();
    let lp = |resp: &[u32]| {
        let ids = seq(resp);
        response_logprob(&model.forward(&ids).unwrap(), &ids, prompt.len())
            .unwrap()
            .reshape(1)
            .unwrap()
    };
    let reference = |v: f64| Tensor::new(&[v], &Device::Cpu).unwrap();
    dpo_loss(
        &lp(chosen),
        &lp(rejected),
        &reference(-30.0),
        &reference(-29.0),
        0.1,
    )
    .unwrap()
    .loss
}

#[test]
fn dpo_gradients_through_the_adapters_match_finite_differences() {
    let (_dir, path) = tiny();
    let config = LoraConfig {
        rank: 2,
        alpha: 4.0,
        seed: 3,
    };
    let model = LoraLlama::load(&path, &config, DType::F64).unwrap();
    // Non-zero B, so that A gets a gradient too.
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for var in model.adapters() {
        let shape = var.shape().clone();
        let values: Vec<f64> = (0..shape.elem_count())
            .map(|_| rng.random_range(-0.3..0.3))
            .collect();
        var.set(&Tensor::from_vec(values, shape, &Device::Cpu).unwrap())
            .unwrap();
    }
    let prompt = [1u32, 100, 120, 90, 2];
    let chosen = [70u32, 80, 90];
    let rejected = [71u32, 81];
    let loss = pair_loss(&model, &prompt, &chosen, &rejected);
    let grads = loss.backward().unwrap();
    let adapters: Vec<Var> = model.adapters().into_iter().cloned().collect();
    assert_eq!(adapters.len(), 4 * 2);
    let eps = 1e-5;
    let mut checked = 0;
    for (k, var) in adapters.iter().enumerate() {
        let analytic = grads.get(var).expect("a gradient for every adapter");
        let analytic = analytic.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let base = var
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        // Three coordinates of each adapter matrix.
        for &i in &[0, base.len() / 2, base.len() - 1] {
            let at = |delta: f64| {
                let mut v = base.clone();
                v[i] += delta;
                var.set(&Tensor::from_vec(v, var.shape().clone(), &Device::Cpu).unwrap())
                    .unwrap();
                pair_loss(&model, &prompt, &chosen, &rejected)
                    .to_scalar::<f64>()
                    .unwrap()
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
            var.set(&Tensor::from_vec(base.clone(), var.shape().clone(), &Device::Cpu).unwrap())
                .unwrap();
            let err = (numeric - analytic[i]).abs();
            assert!(
                err < 1e-7 + 1e-5 * numeric.abs(),
                "adapter {k}, element {i}: numeric {numeric} vs analytic {}",
                analytic[i]
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 24);
    // The gradient is not trivially zero.
    let norm: f64 = adapters
        .iter()
        .map(|v| {
            grads
                .get(v)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        })
        .sum();
    assert!(norm > 1e-8, "{norm}");
}

#[test]
fn merged_adapters_generate_from_the_adapted_model() {
    let (_dir, path) = tiny();
    let model = LoraLlama::load(&path, &LoraConfig::default(), DType::F32).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for var in model.adapters() {
        let shape = var.shape().clone();
        let values: Vec<f32> = (0..shape.elem_count())
            .map(|_| rng.random_range(-0.2f32..0.2))
            .collect();
        var.set(&Tensor::from_vec(values, shape, &Device::Cpu).unwrap())
            .unwrap();
    }
    let mut merged = model
        .merged_backend(&path, Weights::DequantizedF32)
        .unwrap();
    let mut base = EmbeddedBackend::load(&path, Weights::DequantizedF32).unwrap();
    let ids = base.tokenizer().encode("buy the dip").unwrap();
    let want = model.forward(&ids).unwrap();
    let want = want.get(ids.len() - 1).unwrap().to_vec1::<f32>().unwrap();
    let max_diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max)
    };
    let got = merged.next_token_logits(&ids).unwrap();
    assert!(max_diff(&want, &got) < 1e-4, "{}", max_diff(&want, &got));
    // The adapters matter: the base model's logits are elsewhere.
    let plain = base.next_token_logits(&ids).unwrap();
    assert!(
        max_diff(&want, &plain) > 1e-2,
        "{}",
        max_diff(&want, &plain)
    );
}

/// `max |a − b|` of two f32 tensors of one shape.
fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn forward_rows_are_the_tail_of_the_full_forward() {
    let (_dir, path) = tiny();
    let model = LoraLlama::load(&path, &LoraConfig::default(), DType::F32).unwrap();
    let ids = [1u32, 50, 60, 70, 80, 2, 90];
    let all = model.forward(&ids).unwrap();
    let tail = model.forward_rows(&ids, 4).unwrap();
    assert_eq!(tail.dims(), [3, 267]);
    let diff = max_abs_diff(&all.narrow(0, 4, 3).unwrap(), &tail);
    assert!(diff < 1e-5, "{diff}");
    // The DPO log-probability from the tail equals the one from every row.
    let full = response_logprob(&all, &ids, 5)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let short = response_logprob(&tail.narrow(0, 0, 3).unwrap(), &ids[4..], 1)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!((full - short).abs() < 1e-4, "{full} vs {short}");
    assert!(model.forward_rows(&ids, 7).is_err());
}

#[test]
fn new_adapters_on_the_shared_base_equal_a_fresh_load() {
    let (_dir, path) = tiny();
    let first = LoraConfig {
        seed: 1,
        ..LoraConfig::default()
    };
    let second = LoraConfig {
        rank: 4,
        seed: 2,
        ..LoraConfig::default()
    };
    let actor = LoraLlama::load(&path, &first, DType::F32).unwrap();
    let judge = actor.with_new_adapters(&second).unwrap();
    let loaded = LoraLlama::load(&path, &second, DType::F32).unwrap();
    let values = |m: &LoraLlama| -> Vec<(String, Vec<f32>)> {
        m.adapter_tensors()
            .into_iter()
            .map(|(name, t)| (name, t.flatten_all().unwrap().to_vec1().unwrap()))
            .collect()
    };
    assert_eq!(values(&judge), values(&loaded));
    assert_eq!(judge.adapters()[0].dims(), [4, 64]);
    // The adapters are the judge's own: training one role leaves the other's unchanged.
    let b = judge.adapters()[1];
    b.set(&b.as_tensor().ones_like().unwrap()).unwrap();
    assert_eq!(
        values(&loaded),
        values(&actor.with_new_adapters(&second).unwrap())
    );
    assert_ne!(values(&judge), values(&loaded));
    assert!(
        values(&actor)
            .iter()
            .filter(|(name, _)| name.ends_with(".b"))
            .all(|(_, v)| v.iter().all(|&x| x == 0.0))
    );
    assert!(matches!(
        actor.with_new_adapters(&LoraConfig {
            rank: 0,
            ..LoraConfig::default()
        }),
        Err(mrl_llm::Error::InvalidSetting { field: "rank", .. })
    ));
    // The shared base: both roles give the same logits while their B matrices are zero.
    let ids = [5u32, 6, 7, 8];
    let fresh = actor.with_new_adapters(&second).unwrap();
    let diff = max_abs_diff(&actor.forward(&ids).unwrap(), &fresh.forward(&ids).unwrap());
    assert_eq!(diff, 0.0);
}

#[test]
fn continuations_of_a_shared_prefix_equal_whole_forwards_in_value_and_gradient() {
    let (_dir, path) = tiny();
    let model = LoraLlama::load(&path, &LoraConfig::default(), DType::F32).unwrap();
    // Non-zero B, so that the adapters act on the prefix's keys and values.
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for var in model.adapters() {
        let values: Vec<f32> = (0..var.elem_count())
            .map(|_| rng.random_range(-0.2f32..0.2))
            .collect();
        var.set(&Tensor::from_vec(values, var.dims(), &Device::Cpu).unwrap())
            .unwrap();
    }
    let prefix = [1u32, 50, 60, 70, 80];
    let (chosen, rejected) = ([2u32, 90, 91], [2u32, 100, 101, 102]);
    let rows = model
        .forward_continuations(&prefix, &[&chosen, &rejected])
        .unwrap();
    assert_eq!(rows[0].dims(), [3, 267]);
    assert_eq!(rows[1].dims(), [4, 267]);
    let whole = |tail: &[u32]| model.forward(&[&prefix[..], tail].concat()).unwrap();
    let (whole_chosen, whole_rejected) = (whole(&chosen), whole(&rejected));
    // Float rounding of other matmul shapes only.
    assert!(max_abs_diff(&rows[0], &whole_chosen.narrow(0, 5, 3).unwrap()) < 1e-4);
    assert!(max_abs_diff(&rows[1], &whole_rejected.narrow(0, 5, 4).unwrap()) < 1e-4);
    // The same loss through the shared prefix and through two whole forwards: the same
    // adapter gradients (the prefix's graph is shared by both branches).
    let loss = |c: &Tensor, r: &Tensor| {
        let c = response_logprob(c, &chosen, 1).unwrap();
        let r = response_logprob(r, &rejected, 1).unwrap();
        (c - r).unwrap()
    };
    let shared = loss(&rows[0], &rows[1]).backward().unwrap();
    let separate = loss(
        &whole_chosen.narrow(0, 5, 3).unwrap(),
        &whole_rejected.narrow(0, 5, 4).unwrap(),
    )
    .backward()
    .unwrap();
    for var in model.adapters() {
        let a = shared.get(var).unwrap();
        let b = separate.get(var).unwrap();
        let scale = b
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(scale > 0.0);
        assert!(max_abs_diff(a, b) < 1e-4 * scale.max(1.0), "{var:?}");
    }
    // Without the graph: the same numbers bit for bit, and nothing to differentiate.
    let detached = model
        .forward_continuations_detached(&prefix, &[&chosen, &rejected])
        .unwrap();
    for (d, r) in detached.iter().zip(&rows) {
        assert_eq!(max_abs_diff(d, r), 0.0);
    }
    let none = loss(&detached[0], &detached[1]).backward().unwrap();
    assert!(model.adapters().iter().all(|var| none.get(var).is_none()));
    // No prefix: the continuation alone.
    let alone = model.forward_continuations(&[], &[&chosen]).unwrap();
    assert!(max_abs_diff(&alone[0], &model.forward(&chosen).unwrap()) < 1e-6);
    assert!(matches!(
        model.forward_continuations(&prefix, &[&[]]),
        Err(mrl_llm::Error::ContextOverflow { .. })
    ));
}
