//! Low-rank adapters: B = 0 changes nothing, the gradient pull-back matches a finite
//! difference, files round-trip byte for byte, mismatches are named.

use candle_core::{DType, Device, Tensor};
use mrl_agent::PolicyKind;
use mrl_fewshot::{Error, InnerConfig, LoraConfig, LowRankAdapter, TaskRollouts, TaskSeeds, adapt};
use mrl_ppo::ppo_gradients;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::common::{policy, setup, task};

#[test]
fn a_fresh_adapter_leaves_every_output_unchanged_bit_for_bit() {
    for kind in [PolicyKind::Rl2, PolicyKind::Mlp] {
        let base = policy(kind, 3);
        let adapter = LowRankAdapter::new(
            &LoraConfig::default(),
            &base,
            &mut ChaCha8Rng::seed_from_u64(1),
        )
        .unwrap();
        // Every weight matrix carries one: 5 for RL² (encoder, GRU ih/hh, heads), 4 for the MLP.
        let n_targets = if kind == PolicyKind::Rl2 { 5 } else { 4 };
        assert_eq!(adapter.config().targets.len(), n_targets);
        let merged = adapter.merged_policy(&base).unwrap();
        let width = base.config().input_dim();
        let x: Vec<f32> = (0..2 * 7 * width)
            .map(|i| ((i % 13) as f32 - 6.0) * 0.3)
            .collect();
        let x = Tensor::from_vec(x, (2, 7, width), &Device::Cpu).unwrap();
        let a = base.forward_seq(&x, None).unwrap();
        let b = merged.forward_seq(&x, None).unwrap();
        let bits = |t: &Tensor| -> Vec<u32> {
            t.flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect()
        };
        assert_eq!(bits(&a.logits), bits(&b.logits), "{kind:?}");
        assert_eq!(bits(&a.values), bits(&b.values), "{kind:?}");
    }
}

#[test]
fn rank_and_scale_set_the_sizes() {
    let base = policy(PolicyKind::Rl2, 0);
    let config = LoraConfig {
        rank: 2,
        alpha: 8.0,
        targets: vec!["gru.weight_hh_l0".into(), "policy_head.weight".into()],
    };
    assert_eq!(config.scale(), 4.0);
    let adapter = LowRankAdapter::new(&config, &base, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
    // gru.weight_hh_l0 (24, 8): A (2, 8) + B (24, 2); policy_head.weight (3, 8): A (2, 8) + B (3, 2).
    assert_eq!(adapter.n_params(), 16 + 48 + 16 + 6);
    assert_eq!(
        adapter.names(),
        [
            "gru.weight_hh_l0.lora_a",
            "gru.weight_hh_l0.lora_b",
            "policy_head.weight.lora_a",
            "policy_head.weight.lora_b"
        ]
    );
    let bad = LoraConfig {
        targets: vec!["gru.bias_ih_l0".into(), "nope".into()],
        ..Default::default()
    };
    match LowRankAdapter::new(&bad, &base, &mut ChaCha8Rng::seed_from_u64(0)) {
        Err(Error::AdapterMismatch { problems, .. }) => assert_eq!(
            problems,
            [
                "gru.bias_ih_l0: shape [24] is not a matrix",
                "nope: no such parameter"
            ]
        ),
        other => panic!("expected AdapterMismatch, got {other:?}"),
    }
    let zero = LoraConfig {
        rank: 0,
        ..Default::default()
    };
    assert!(matches!(
        LowRankAdapter::new(&zero, &base, &mut ChaCha8Rng::seed_from_u64(0)),
        Err(Error::InvalidConfig {
            field: "adapter.rank",
            ..
        })
    ));
}

#[test]
fn pullback_matches_a_finite_difference_of_the_loss() {
    let base = policy(PolicyKind::Rl2, 4);
    let adapter = LowRankAdapter::new(
        &LoraConfig {
            rank: 2,
            ..Default::default()
        },
        &base,
        &mut ChaCha8Rng::seed_from_u64(2),
    )
    .unwrap();
    // Non-zero B, so that both factors get a gradient.
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for v in adapter.vars() {
        let noise: Vec<f32> = (0..v.elem_count())
            .map(|_| rand::RngExt::random::<f32>(&mut rng) * 0.2 - 0.1)
            .collect();
        let t = Tensor::from_vec(noise, v.dims(), &Device::Cpu).unwrap();
        v.set(&(v.as_tensor() + t).unwrap()).unwrap();
    }
    let setup = setup(1e9);
    let merged = adapter.merged_policy(&base).unwrap();
    let seeds = TaskSeeds::new(5);
    let mut rollouts = TaskRollouts::new(
        task(1),
        &merged,
        8,
        setup.trial.clone(),
        seeds.trials,
        seeds.sampling,
    )
    .unwrap();
    let (_, batch) = rollouts.collect(&merged, &setup).unwrap();
    let loss_at = |adapter: &LowRankAdapter| {
        let p = adapter.merged_policy(&base).unwrap();
        ppo_gradients(&p, &batch, &setup.ppo.loss()).unwrap()
    };
    let g = loss_at(&adapter);
    let pulled = adapter.pullback(&g.grads).unwrap();
    let norm2: f64 = pulled
        .iter()
        .map(|t| {
            t.to_dtype(DType::F64)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        })
        .sum();
    assert!(norm2 > 1e-6, "{norm2}");
    // Directional derivative along the pulled-back gradient: (L(θ+εd) − L(θ−εd)) / 2ε = ‖g‖
    // for d = g/‖g‖.
    let eps = 1e-3;
    let unit = 1.0 / norm2.sqrt();
    let shifted = |sign: f64| {
        let moved = adapter.detached().unwrap();
        for (v, d) in moved.vars().iter().zip(&pulled) {
            v.set(&(v.as_tensor() + (d * (sign * eps * unit)).unwrap()).unwrap())
                .unwrap();
        }
        loss_at(&moved).loss.total
    };
    let fd = (shifted(1.0) - shifted(-1.0)) / (2.0 * eps);
    let expected = norm2.sqrt();
    assert!(
        (fd - expected).abs() < 0.02 * expected,
        "finite difference {fd}, pulled-back gradient norm {expected}"
    );
    // The copies made for the finite difference left the original where it was.
    let again = adapter.pullback(&loss_at(&adapter).grads).unwrap();
    for (x, y) in again.iter().zip(&pulled) {
        assert_eq!(
            x.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            y.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
    }
}

#[test]
fn base_plus_adapter_round_trips_byte_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let base = policy(PolicyKind::Rl2, 6);
    let inner = InnerConfig {
        steps: 2,
        n_envs: 4,
        lr: 1e-2,
        adapter: Some(LoraConfig::default()),
        ..Default::default()
    };
    let adapted = adapt(&base, task(2), &inner, &setup(0.5), 9).unwrap();
    let adapter = adapted.adapter.as_ref().unwrap();
    // Two steps moved B off zero.
    let b = adapter.vars()[1]
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!(b.iter().any(|v| *v != 0.0));
    let base_path = dir.path().join("model.safetensors");
    let adapter_path = dir.path().join("ASSET.safetensors");
    std::fs::write(&base_path, base.to_safetensors().unwrap()).unwrap();
    adapter.save(&adapter_path, &base).unwrap();
    let loaded_base = mrl_agent::Policy::from_tensors(
        base.config(),
        &candle_core::safetensors::load(&base_path, &Device::Cpu).unwrap(),
        &Device::Cpu,
    )
    .unwrap();
    let loaded = LowRankAdapter::load(&adapter_path, &loaded_base).unwrap();
    assert_eq!(loaded.config(), adapter.config());
    assert_eq!(
        loaded.to_safetensors().unwrap(),
        std::fs::read(&adapter_path).unwrap()
    );
    let merged = loaded.merged_policy(&loaded_base).unwrap();
    assert_eq!(
        merged.to_safetensors().unwrap(),
        adapted.policy.to_safetensors().unwrap()
    );
    // Saving the loaded adapter again writes the same bytes, sidecar included.
    let again = dir.path().join("AGAIN.safetensors");
    loaded.save(&again, &loaded_base).unwrap();
    assert_eq!(
        std::fs::read(&again).unwrap(),
        std::fs::read(&adapter_path).unwrap()
    );
    assert_eq!(
        std::fs::read(dir.path().join("AGAIN.json")).unwrap(),
        std::fs::read(dir.path().join("ASSET.json")).unwrap()
    );
    // A base of another size is refused, naming both.
    let other = crate::common::policy(PolicyKind::Mlp, 0);
    match LowRankAdapter::load(&adapter_path, &other) {
        Err(Error::AdapterMismatch { problems, .. }) => {
            assert!(problems[0].contains("trained on a base of"), "{problems:?}");
        }
        other => panic!("expected AdapterMismatch, got {other:?}"),
    }
    // A missing sidecar is a bad adapter file naming it.
    std::fs::remove_file(dir.path().join("ASSET.json")).unwrap();
    match LowRankAdapter::load(&adapter_path, &base) {
        Err(Error::BadAdapterFile { reason, .. }) => assert!(reason.contains("ASSET.json")),
        other => panic!("expected BadAdapterFile, got {other:?}"),
    }
}
