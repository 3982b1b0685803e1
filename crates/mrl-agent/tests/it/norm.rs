//! Input normalisation as part of the policy: it survives checkpoints, an old sidecar reads
//! as the identity, and the rollout step with statistics equals the plain step on inputs
//! normalised by hand.

use candle_core::Device;
use mrl_agent::{AgentConfig, InputNorm, Policy, PolicyInputs, RolloutWorkspace, sidecar_path};

fn norm(obs_dim: usize) -> InputNorm {
    InputNorm {
        obs_mean: (0..obs_dim).map(|j| 0.01 * j as f32).collect(),
        obs_std: (0..obs_dim).map(|j| 0.005 + 0.1 * j as f32).collect(),
        reward_std: 2.5,
        clip: 5.0,
        count: 1234.0,
    }
}

#[test]
fn statistics_round_trip_through_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let config = AgentConfig {
        hidden: 16,
        input_norm: Some(norm(14)),
        ..Default::default()
    };
    let path = dir.path().join("p.safetensors");
    Policy::new(&config, &Device::Cpu, 3)
        .unwrap()
        .save(&path)
        .unwrap();
    let loaded = Policy::load(&path, &Device::Cpu).unwrap();
    assert_eq!(loaded.config(), &config);

    // A sidecar written before normalisation existed has no `input_norm`: the identity.
    let sidecar = sidecar_path(&path);
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sidecar).unwrap()).unwrap();
    meta["config"].as_object_mut().unwrap().remove("input_norm");
    std::fs::write(&sidecar, serde_json::to_vec(&meta).unwrap()).unwrap();
    let old = Policy::load(&path, &Device::Cpu).unwrap();
    assert_eq!(old.config().input_norm, None);

    // Statistics that do not fit are refused with the field named.
    meta["config"]["input_norm"] = serde_json::to_value(norm(3)).unwrap();
    std::fs::write(&sidecar, serde_json::to_vec(&meta).unwrap()).unwrap();
    let err = Policy::load(&path, &Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("input_norm"), "{err}");
}

#[test]
fn normalised_step_equals_the_plain_step_on_hand_normalised_inputs() {
    let stats = norm(14);
    let with = Policy::new(
        &AgentConfig {
            hidden: 16,
            input_norm: Some(stats.clone()),
            ..Default::default()
        },
        &Device::Cpu,
        9,
    )
    .unwrap();
    let mut plain = with.clone();
    plain.set_input_norm(None).unwrap();

    let batch = 3;
    let obs: Vec<f32> = (0..batch * 14).map(|i| (i as f32 * 0.37).sin()).collect();
    let hand: Vec<f32> = obs
        .chunks_exact(14)
        .flat_map(|row| {
            row.iter()
                .enumerate()
                .map(|(j, v)| ((v - stats.obs_mean[j]) / stats.obs_std[j]).clamp(-5.0, 5.0))
                .collect::<Vec<_>>()
        })
        .collect();
    let rewards = [0.5f32, -20.0, 1.0];
    let hand_rewards: Vec<f32> = rewards.iter().map(|r| (r / 2.5).clamp(-5.0, 5.0)).collect();
    let actions = [Some(0), None, Some(2)];
    let dones = [false, true, false];

    let step = |ws: &mut RolloutWorkspace, obs: &[f32], rewards: &[f32]| {
        ws.step_greedy(&PolicyInputs {
            obs,
            prev_actions: &actions,
            prev_rewards: rewards,
            prev_dones: &dones,
        })
        .unwrap()
        .logits
        .to_vec()
    };
    let mut a = RolloutWorkspace::new(&with, batch).unwrap();
    let mut b = RolloutWorkspace::new(&plain, batch).unwrap();
    for _ in 0..3 {
        let x = step(&mut a, &obs, &rewards);
        let y = step(&mut b, &hand, &hand_rewards);
        for (p, q) in x.iter().zip(&y) {
            assert!((p - q).abs() < 1e-5, "{p} vs {q}");
        }
    }
    // The statistics matter: without them the same raw inputs give other logits.
    let raw = step(
        &mut RolloutWorkspace::new(&plain, batch).unwrap(),
        &obs,
        &rewards,
    );
    let normed = step(
        &mut RolloutWorkspace::new(&with, batch).unwrap(),
        &obs,
        &rewards,
    );
    assert!(raw.iter().zip(&normed).any(|(p, q)| (p - q).abs() > 1e-3));

    // refresh() picks up new statistics from the policy.
    let mut refreshed = RolloutWorkspace::new(&plain, batch).unwrap();
    refreshed.refresh(&with).unwrap();
    let r = step(&mut refreshed, &obs, &rewards);
    assert_eq!(r, normed);
}
