//! The task-inference agent: parameter names and shapes, seeded initialisation, the step
//! against the sequence forward (logits, values and belief at every position, the hidden
//! state carried over episode boundaries), the rollout workspace, heads that read only
//! `[s_t, belief_t]`, and checkpoints that name their kind.

use candle_core::{D, DType, Device, Tensor};
use mrl_agent::{
    AgentConfig, BeliefKind, BeliefTarget, DECODER_PARAM_NAMES, Error, InputLayout, Policy,
    PolicyInputs, PolicyKind, RolloutWorkspace, TASK_INFERENCE_PARAM_NAMES, TaskInferenceConfig,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::golden::flat;

fn config(belief: BeliefKind, latent: usize) -> AgentConfig {
    AgentConfig {
        kind: PolicyKind::TaskInference,
        obs_dim: 4,
        n_actions: 3,
        hidden: 8,
        task_inference: TaskInferenceConfig {
            belief,
            latent,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// `(B, T, in)` input rows of random trials with an episode boundary at step 3.
fn rows(config: &AgentConfig, batch: usize, seq_len: usize, seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // U[−1, 1) from 24 random bits.
    let mut uniform = move || (rng.next_u32() >> 8) as f32 / (1u32 << 23) as f32 - 1.0;
    let n = batch * seq_len;
    let obs: Vec<f32> = (0..n * config.obs_dim).map(|_| uniform()).collect();
    let prev_actions: Vec<Option<usize>> = (0..n)
        .map(|i| (i % seq_len != 0).then(|| (i * 7 + i / seq_len) % config.n_actions))
        .collect();
    let prev_rewards: Vec<f32> = (0..n).map(|_| uniform()).collect();
    let prev_dones: Vec<bool> = (0..n).map(|i| i % seq_len == 3).collect();
    InputLayout::new(config)
        .sequence_tensor(
            &PolicyInputs {
                obs: &obs,
                prev_actions: &prev_actions,
                prev_rewards: &prev_rewards,
                prev_dones: &prev_dones,
            },
            batch,
            seq_len,
            &Device::Cpu,
        )
        .unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn parameters_are_named_shaped_and_seeded() {
    let c = config(BeliefKind::Gaussian, 2);
    let p = Policy::new(&c, &Device::Cpu, 5).unwrap();
    assert!(p.is_recurrent() && p.has_memory());
    assert_eq!(p.state_size(), 8);
    let shapes = p.param_shapes();
    let names: Vec<&str> = shapes.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, TASK_INFERENCE_PARAM_NAMES);
    let shape = |name: &str| shapes.iter().find(|(n, _)| *n == name).unwrap().1.clone();
    assert_eq!(shape("encoder.0.weight"), vec![8, 4 + 3 + 2]);
    assert_eq!(shape("gru.weight_hh_l0"), vec![24, 8]);
    assert_eq!(shape("belief_head.weight"), vec![4, 8]); // μ and log σ² of 2 parameters
    assert_eq!(shape("body.0.weight"), vec![8, 4 + 4]); // [s_t, μ_t, log σ²_t]
    assert_eq!(shape("policy_head.weight"), vec![3, 8]);
    assert_eq!(shape("body.2.weight"), vec![8, 8]);
    // (8·9 + 8) + (24·8 + 24·8 + 48) + (4·8 + 4) + (8·8 + 8) + (8·8 + 8) + (3·8 + 3) + (8 + 1)
    assert_eq!(p.n_params(), 80 + 432 + 36 + 72 + 72 + 27 + 9);
    // A one-layer body has no body.2.
    let one = AgentConfig {
        task_inference: TaskInferenceConfig {
            body_layers: 1,
            ..c.task_inference.clone()
        },
        ..c.clone()
    };
    let one = Policy::new(&one, &Device::Cpu, 5).unwrap();
    let names: Vec<&str> = one.parameters().iter().map(|(n, _)| *n).collect();
    assert!(!names.contains(&"body.2.weight") && names.len() == 14);
    assert_eq!(one.n_params(), p.n_params() - 72);
    let point = Policy::new(&config(BeliefKind::Point, 2), &Device::Cpu, 5).unwrap();
    let body = point.param_shapes()[8].1.clone();
    assert_eq!(body, vec![8, 4 + 2]);

    let same = Policy::new(&c, &Device::Cpu, 5).unwrap();
    let other = Policy::new(&c, &Device::Cpu, 6).unwrap();
    let (a, b, o) = (p.tensors(), same.tensors(), other.tensors());
    for name in TASK_INFERENCE_PARAM_NAMES {
        assert_eq!(flat(&a[name]), flat(&b[name]), "{name}");
        assert_ne!(flat(&a[name]), flat(&o[name]), "{name}");
    }
    // PyTorch's default bounds: 1/√in for every Linear, 1/√H for the GRU.
    let bound = 1.0 / 8f32.sqrt();
    assert!(
        flat(&a["belief_head.weight"])
            .iter()
            .all(|w| w.abs() <= bound)
    );
    let bound = 1.0 / 9f32.sqrt();
    assert!(
        flat(&a["encoder.0.weight"])
            .iter()
            .all(|w| w.abs() <= bound)
    );
}

#[test]
fn step_by_step_equals_the_sequence_forward() {
    for belief in [BeliefKind::Gaussian, BeliefKind::Point] {
        let c = config(belief, 2);
        let p = Policy::new(&c, &Device::Cpu, 11).unwrap();
        let (batch, seq_len) = (3, 7);
        let x = rows(&c, batch, seq_len, 1);
        let seq = p.forward_seq(&x, None).unwrap();
        let fused = p.forward_seq_fused(&x, None).unwrap();
        let (logits, values) = p.forward_seq_train(&x, None).unwrap();
        assert!(max_abs_diff(&flat(&logits), &flat(&seq.logits)) < 1e-5);
        assert!(max_abs_diff(&flat(&values), &flat(&seq.values)) < 1e-5);
        let seq_belief = seq.belief.clone().unwrap();
        let fused_belief = fused.belief.unwrap();
        assert!(max_abs_diff(&flat(&seq_belief.mean), &flat(&fused_belief.mean)) < 1e-5);
        assert_eq!(seq_belief.mean.dims(), &[batch, seq_len, 2]);
        assert_eq!(seq_belief.log_var.is_some(), belief == BeliefKind::Gaussian);

        let mut h: Option<Tensor> = None;
        for t in 0..seq_len {
            let x_t = x.narrow(1, t, 1).unwrap().squeeze(1).unwrap();
            let out = p.step(&x_t, h.as_ref()).unwrap();
            let at = |s: &Tensor| flat(&s.narrow(1, t, 1).unwrap().squeeze(1).unwrap());
            assert!(
                max_abs_diff(&flat(&out.logits), &at(&seq.logits)) < 1e-5,
                "t {t}"
            );
            assert!(
                max_abs_diff(&flat(&out.values), &at(&seq.values)) < 1e-5,
                "t {t}"
            );
            let b = out.belief.unwrap();
            assert!(max_abs_diff(&flat(&b.mean), &at(&seq_belief.mean)) < 1e-5);
            if let (Some(lv), Some(seq_lv)) = (&b.log_var, &seq_belief.log_var) {
                assert!(max_abs_diff(&flat(lv), &at(seq_lv)) < 1e-5);
            }
            h = out.h; // carried over the episode boundary at t = 3, as RL²'s
        }
        let h_n = seq.h_n.unwrap();
        assert!(max_abs_diff(&flat(&h.unwrap()), &flat(&h_n)) < 1e-5);
    }
}

#[test]
fn rollout_workspace_steps_the_same_network() {
    let c = config(BeliefKind::Gaussian, 1);
    let p = Policy::new(&c, &Device::Cpu, 3).unwrap();
    let mut ws = RolloutWorkspace::new(&p, 2).unwrap();
    assert!(!ws.is_fused());
    let x = rows(&c, 2, 5, 4);
    let seq = p.forward_seq(&x, None).unwrap();
    let host = x.to_vec3::<f32>().unwrap();
    for t in 0..5 {
        // Recover the columns of step t from the rows (identity normalisation).
        let mut obs = Vec::new();
        let (mut prev_actions, mut prev_rewards, mut prev_dones) = (vec![], vec![], vec![]);
        for row in host.iter().map(|trial| &trial[t]) {
            obs.extend_from_slice(&row[..4]);
            prev_actions.push(row[4..7].iter().position(|&v| v == 1.0));
            prev_rewards.push(row[7]);
            prev_dones.push(row[8] != 0.0);
        }
        let inputs = PolicyInputs {
            obs: &obs,
            prev_actions: &prev_actions,
            prev_rewards: &prev_rewards,
            prev_dones: &prev_dones,
        };
        let values = ws.step_greedy(&inputs).unwrap().values.to_vec();
        let expected = flat(&seq.values.narrow(1, t, 1).unwrap());
        assert!(max_abs_diff(&values, &expected) < 1e-5, "t {t}");
    }
    assert_eq!(ws.hidden().unwrap().len(), 2 * 8);
}

#[test]
fn heads_read_the_history_only_through_the_belief() {
    // Two trials whose histories differ but whose belief head is zeroed out: the belief is
    // then its bias alone, so logits and values at every step depend on s_t only.
    let c = config(BeliefKind::Gaussian, 1);
    let mut p = Policy::new(&c, &Device::Cpu, 9).unwrap();
    let mut tensors: std::collections::HashMap<String, Tensor> = p
        .tensors()
        .into_iter()
        .map(|(name, t)| (name, t.copy().unwrap()))
        .collect();
    let zero = Tensor::zeros((2, 8), DType::F32, &Device::Cpu).unwrap();
    tensors.insert("belief_head.weight".into(), zero);
    p.set_tensors(&tensors, "test").unwrap();
    let x = rows(&c, 2, 6, 2);
    // Same observation in both trials at the last step, different pasts.
    let last_obs = x.narrow(0, 0, 1).unwrap().narrow(1, 5, 1).unwrap();
    let obs0 = last_obs.narrow(D::Minus1, 0, 4).unwrap();
    let rest = x.narrow(0, 1, 1).unwrap().narrow(1, 5, 1).unwrap();
    let rest = rest.narrow(D::Minus1, 4, 5).unwrap();
    let patched_last = Tensor::cat(&[&obs0, &rest], D::Minus1).unwrap();
    let trial1 = Tensor::cat(
        &[
            &x.narrow(0, 1, 1).unwrap().narrow(1, 0, 5).unwrap(),
            &patched_last,
        ],
        1,
    )
    .unwrap();
    let x = Tensor::cat(&[&x.narrow(0, 0, 1).unwrap(), &trial1], 0).unwrap();
    let out = p.forward_seq(&x, None).unwrap();
    let last = |t: &Tensor, b: usize| flat(&t.narrow(0, b, 1).unwrap().narrow(1, 5, 1).unwrap());
    assert_eq!(last(&out.logits, 0), last(&out.logits, 1));
    assert_eq!(last(&out.values, 0), last(&out.values, 1));
    // With the trained-in belief head, the same two rows differ (the belief carries the past).
    let fresh = Policy::new(&c, &Device::Cpu, 9).unwrap();
    let out = fresh.forward_seq(&x, None).unwrap();
    assert_ne!(last(&out.logits, 0), last(&out.logits, 1));
}

#[test]
fn checkpoint_round_trip_and_wrong_kind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.safetensors");
    let c = config(BeliefKind::Point, 3);
    let p = Policy::new(&c, &Device::Cpu, 2).unwrap();
    p.save(&path).unwrap();
    let sidecar = std::fs::read_to_string(dir.path().join("policy.json")).unwrap();
    assert!(
        sidecar.contains("\"kind\": \"task_inference\""),
        "{sidecar}"
    );
    assert!(sidecar.contains("\"belief\": \"point\""), "{sidecar}");
    let loaded = Policy::load_kind(&path, PolicyKind::TaskInference, &Device::Cpu).unwrap();
    assert_eq!(loaded.config(), p.config());
    let x = rows(&c, 2, 4, 8);
    let (a, b) = (
        p.forward_seq(&x, None).unwrap(),
        loaded.forward_seq(&x, None).unwrap(),
    );
    assert_eq!(flat(&a.logits), flat(&b.logits));
    assert_eq!(flat(&a.belief.unwrap().mean), flat(&b.belief.unwrap().mean));
    assert!(matches!(
        Policy::load_kind(&path, PolicyKind::Rl2, &Device::Cpu),
        Err(Error::WrongKind {
            expected: "rl2",
            found: "task_inference",
            ..
        })
    ));
}

#[test]
fn the_reward_decoder_reads_the_belief_before_the_step() {
    let c = AgentConfig {
        task_inference: TaskInferenceConfig {
            belief: BeliefKind::Gaussian,
            latent: 2,
            target: BeliefTarget::Reward,
            ..Default::default()
        },
        ..config(BeliefKind::Gaussian, 2)
    };
    let p = Policy::new(&c, &Device::Cpu, 12).unwrap();
    let names: Vec<&str> = p.parameters().iter().map(|(n, _)| *n).collect();
    assert_eq!(&names[..16], &TASK_INFERENCE_PARAM_NAMES);
    assert_eq!(&names[16..], &DECODER_PARAM_NAMES);
    // [b_{t−1} (μ, log σ²: 4), s_t (4), one_hot(a_t) (3)] → 8 → 1.
    assert_eq!(p.param_shapes()[16].1, vec![8, 4 + 4 + 3]);
    // The supervised network's weights are drawn first, in the same order.
    let supervised = Policy::new(&config(BeliefKind::Gaussian, 2), &Device::Cpu, 12).unwrap();
    let (a, b) = (p.tensors(), supervised.tensors());
    for name in TASK_INFERENCE_PARAM_NAMES {
        assert_eq!(flat(&a[name]), flat(&b[name]), "{name}");
    }

    let (batch, seq_len) = (2, 6);
    let x = rows(&c, batch, seq_len, 3);
    let one_hot: Vec<f32> = (0..batch * seq_len * 3)
        .map(|i| if i % 3 == (i / 3) % 3 { 1.0 } else { 0.0 })
        .collect();
    let actions = Tensor::from_vec(one_hot, (batch, seq_len, 3), &Device::Cpu).unwrap();
    let predict = |x: &Tensor| {
        let out = p.forward_seq(x, None).unwrap();
        let r = p
            .reconstruct_rewards(x, out.belief.as_ref().unwrap(), &actions)
            .unwrap();
        assert_eq!(r.dims(), &[batch, seq_len]);
        r.to_vec2::<f32>().unwrap()
    };
    let base = predict(&x);
    // Change the previous reward fed at step 3 (column obs + A): r̂_3 reads b_2 and s_3, so
    // steps 0..=3 keep their predictions and step 4 (reading b_3) moves.
    let mut host = x.to_vec3::<f32>().unwrap();
    host[0][3][4 + 3] += 1.0;
    let flat_rows: Vec<f32> = host.iter().flatten().flatten().copied().collect();
    let changed = predict(&Tensor::from_vec(flat_rows, x.dims(), &Device::Cpu).unwrap());
    assert_eq!(base[0][..4], changed[0][..4]);
    assert_ne!(base[0][4], changed[0][4]);
    assert_eq!(base[1], changed[1]);
    // Changing s_3 moves r̂_3 itself.
    let mut host = x.to_vec3::<f32>().unwrap();
    host[0][3][0] += 1.0;
    let flat_rows: Vec<f32> = host.iter().flatten().flatten().copied().collect();
    let changed = predict(&Tensor::from_vec(flat_rows, x.dims(), &Device::Cpu).unwrap());
    assert_eq!(base[0][..3], changed[0][..3]);
    assert_ne!(base[0][3], changed[0][3]);
    // The supervised network has no decoder: a clear error.
    let out = supervised.forward_seq(&x, None).unwrap();
    assert!(matches!(
        supervised.reconstruct_rewards(&x, out.belief.as_ref().unwrap(), &actions),
        Err(Error::Unsupported {
            operation: "reward reconstruction",
            ..
        })
    ));
}
