//! The inner loop: determinism by seed, K = 0, the frozen base under adapters, real-asset
//! windows.

use mrl_agent::PolicyKind;
use mrl_fewshot::{Error, FixedTask, InnerConfig, InnerOptimizer, LoraConfig, adapt};

use crate::common::{flat, policy, setup, task};

#[test]
fn adaptation_is_deterministic_by_seed_for_the_gru_and_the_mlp() {
    for kind in [PolicyKind::Rl2, PolicyKind::Mlp] {
        let base = policy(kind, 1);
        let before = flat(&base);
        let inner = InnerConfig {
            steps: 3,
            n_envs: 4,
            steps_per_rollout: 2,
            lr: 1e-2,
            ..Default::default()
        };
        let run = |seed| adapt(&base, task(3), &inner, &setup(0.5), seed).unwrap();
        let (a, b, c) = (run(11), run(11), run(12));
        let bytes = |p: &mrl_agent::Policy| p.to_safetensors().unwrap();
        assert_eq!(bytes(&a.policy), bytes(&b.policy), "{kind:?}");
        assert_ne!(bytes(&a.policy), bytes(&c.policy), "{kind:?}");
        assert_ne!(
            flat(&a.policy),
            before,
            "{kind:?}: the steps moved the weights"
        );
        assert_eq!(flat(&base), before, "{kind:?}: the base is untouched");
        // Rollouts at steps 0 and 2 only.
        let rolled: Vec<bool> = a.steps.iter().map(|s| s.rollout_return.is_some()).collect();
        assert_eq!(rolled, [true, false, true]);
        assert_eq!(a.steps, b.steps);
    }
}

#[test]
fn zero_steps_return_the_base_unchanged() {
    let base = policy(PolicyKind::Rl2, 2);
    let inner = InnerConfig {
        steps: 0,
        ..Default::default()
    };
    let adapted = adapt(&base, task(4), &inner, &setup(0.5), 0).unwrap();
    assert!(adapted.steps.is_empty());
    assert!(adapted.first_return().is_nan());
    assert_eq!(
        adapted.policy.to_safetensors().unwrap(),
        base.to_safetensors().unwrap()
    );
}

#[test]
fn adapters_train_only_the_factors_and_the_heads_stay_merged() {
    let base = policy(PolicyKind::Rl2, 5);
    let inner = InnerConfig {
        steps: 2,
        n_envs: 4,
        lr: 1e-2,
        optimizer: InnerOptimizer::Sgd,
        adapter: Some(LoraConfig {
            rank: 1,
            targets: vec!["policy_head.weight".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    let adapted = adapt(&base, task(5), &inner, &setup(0.5), 3).unwrap();
    let before = base.tensors();
    let after = adapted.policy.tensors();
    for (name, t) in &before {
        let same = t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            == after[name].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // Only the adapted matrix moves; every other parameter is the frozen base's.
        assert_eq!(same, name != "policy_head.weight", "{name}");
    }
}

#[test]
fn bad_settings_are_named() {
    let base = policy(PolicyKind::Mlp, 0);
    for (inner, field) in [
        (
            InnerConfig {
                n_envs: 0,
                ..Default::default()
            },
            "inner.n_envs",
        ),
        (
            InnerConfig {
                lr: f64::NAN,
                ..Default::default()
            },
            "inner.lr",
        ),
        (
            InnerConfig {
                steps_per_rollout: 0,
                ..Default::default()
            },
            "inner.steps_per_rollout",
        ),
    ] {
        match adapt(&base, task(0), &inner, &setup(0.5), 0) {
            Err(Error::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected InvalidConfig for {field}, got {other:?}"),
        }
    }
}

#[test]
fn a_real_asset_window_adapts_on_its_first_bars_only() {
    // 400 hourly bars; the task sees the first 100, episodes of 20 steps.
    let generated = mrl_data::SyntheticConfig::default()
        .generate_with_rng(400, &mut rand::SeedableRng::seed_from_u64(8))
        .unwrap();
    let trading = mrl_env::TradingConfig {
        max_steps: crate::common::MAX_STEPS,
        ..Default::default()
    };
    let task = FixedTask::first_bars(&generated.series, 100, trading).unwrap();
    assert_eq!(task.env().market().len(), 100);
    let base = policy(PolicyKind::Rl2, 7);
    let inner = InnerConfig {
        steps: 2,
        n_envs: 2,
        ..Default::default()
    };
    let adapted = adapt(&base, std::sync::Arc::new(task), &inner, &setup(0.5), 1).unwrap();
    assert_eq!(adapted.steps.len(), 2);
    assert!(adapted.steps.iter().all(|s| s.loss.total.is_finite()));
}
