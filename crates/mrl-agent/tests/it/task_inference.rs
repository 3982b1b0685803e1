//! The task-inference agent: outputs and gradients against the PyTorch reference
//! (fixtures/golden/task_inference.json, written by gen_task_inference.py) for a Gaussian
//! and a point belief and the reward decoder, the step with its carried hidden state against
//! the reference at every position, parameter names and shapes, seeded initialisation, the
//! step against the sequence forward (logits, values and belief at every position, the
//! hidden state carried over episode boundaries), the rollout workspace, heads that read only
//! `[s_t, belief_t]`, and checkpoints that name their kind.

use candle_core::{D, DType, Device, Tensor};
use mrl_agent::{
    AgentConfig, BeliefKind, BeliefTarget, DECODER_PARAM_NAMES, Error, InputLayout, Policy,
    PolicyInputs, PolicyKind, RolloutWorkspace, TASK_INFERENCE_PARAM_NAMES, TaskInferenceConfig,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use crate::golden::{ABS, REL, array, assert_close, f32s, flat, load, shape, tensor, tensor_map};

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

/// A golden case's network: the file's sizes, the case's belief, objective and body depth.
fn golden_config(g: &Value, case: &Value) -> AgentConfig {
    let c = &g["config"];
    let size = |v: &Value| v.as_u64().unwrap() as usize;
    let belief = match case["belief"].as_str().unwrap() {
        "gaussian" => BeliefKind::Gaussian,
        "point" => BeliefKind::Point,
        other => panic!("belief {other}"),
    };
    let target = match case["target"].as_str().unwrap() {
        "task" => BeliefTarget::Task,
        "reward" => BeliefTarget::Reward,
        other => panic!("target {other}"),
    };
    AgentConfig {
        kind: PolicyKind::TaskInference,
        obs_dim: size(&c["obs_dim"]),
        n_actions: size(&c["n_actions"]),
        hidden: size(&c["hidden"]),
        task_inference: TaskInferenceConfig {
            belief,
            latent: size(&c["latent"]),
            target,
            body_layers: size(&case["body_layers"]),
        },
        ..Default::default()
    }
}

/// The golden inputs as columns per step: `steps[t]` holds step `t` of every trial.
struct GoldenSteps {
    obs: Vec<Vec<f32>>,
    prev_actions: Vec<Vec<Option<usize>>>,
    prev_rewards: Vec<Vec<f32>>,
    prev_dones: Vec<Vec<bool>>,
}

impl GoldenSteps {
    fn new(inputs: &Value) -> Self {
        let (batch, seq_len) = (shape(&inputs["obs"])[0], shape(&inputs["obs"])[1]);
        let column = |name: &str, b: usize, t: usize| array(&inputs[name][b][t]).1;
        let mut steps = Self {
            obs: Vec::new(),
            prev_actions: Vec::new(),
            prev_rewards: Vec::new(),
            prev_dones: Vec::new(),
        };
        for t in 0..seq_len {
            let trials = 0..batch;
            steps.obs.push(
                trials
                    .clone()
                    .flat_map(|b| column("obs", b, t))
                    .map(|v| v as f32)
                    .collect(),
            );
            let action = |b| column("prev_action", b, t)[0];
            steps.prev_actions.push(
                trials
                    .clone()
                    .map(|b| (action(b) >= 0.0).then(|| action(b) as usize))
                    .collect(),
            );
            let reward = |b| column("prev_reward", b, t)[0] as f32;
            steps
                .prev_rewards
                .push(trials.clone().map(reward).collect());
            let done = |b| column("prev_done", b, t)[0] != 0.0;
            steps.prev_dones.push(trials.map(done).collect());
        }
        steps
    }

    fn at(&self, t: usize) -> PolicyInputs<'_> {
        PolicyInputs {
            obs: &self.obs[t],
            prev_actions: &self.prev_actions[t],
            prev_rewards: &self.prev_rewards[t],
            prev_dones: &self.prev_dones[t],
        }
    }
}

/// Step `t` of every trial of a golden `(B, T, ...)` array, flattened.
fn golden_at(v: &Value, t: usize) -> Vec<f64> {
    let batch = shape(v)[0];
    (0..batch).flat_map(|b| array(&v[b][t]).1).collect()
}

/// `one_hot(a_t)` `(B, T, A)` of the golden actions taken.
fn golden_actions_one_hot(g: &Value) -> Tensor {
    let actions = &g["inputs"]["actions"];
    let dims = shape(actions);
    let n_actions = g["config"]["n_actions"].as_u64().unwrap() as usize;
    let mut one_hot = vec![0.0f32; dims[0] * dims[1] * n_actions];
    for (i, a) in array(actions).1.into_iter().enumerate() {
        one_hot[i * n_actions + a as usize] = 1.0;
    }
    Tensor::from_vec(one_hot, (dims[0], dims[1], n_actions), &Device::Cpu).unwrap()
}

#[test]
fn outputs_and_gradients_match_torch() {
    let g = load("task_inference.json");
    let inputs = &g["inputs"];
    let cases = g["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    let (batch, seq_len) = (3, 7);
    let actions = golden_actions_one_hot(&g);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let config = golden_config(&g, case);
        let policy =
            Policy::from_tensors(&config, &tensor_map(&case["weights"]), &Device::Cpu).unwrap();
        // The rows of the reference are those of mrl's input layout (done flag at step 4).
        let x = InputLayout::new(&config)
            .sequence_tensor(
                &PolicyInputs {
                    obs: &f32s(&inputs["obs"]),
                    prev_actions: &array(&inputs["prev_action"])
                        .1
                        .iter()
                        .map(|&a| (a >= 0.0).then_some(a as usize))
                        .collect::<Vec<_>>(),
                    prev_rewards: &f32s(&inputs["prev_reward"]),
                    prev_dones: &array(&inputs["prev_done"])
                        .1
                        .iter()
                        .map(|&d| d != 0.0)
                        .collect::<Vec<_>>(),
                },
                batch,
                seq_len,
                &Device::Cpu,
            )
            .unwrap();
        assert_eq!(flat(&x), f32s(&inputs["x"]), "{name}: input rows");
        let want = &case["outputs"];
        let expected = case["linear_grads"].as_object().unwrap();
        let params = policy.parameters();
        assert_eq!(params.len(), expected.len(), "{name}: parameter count");
        for fused in [false, true] {
            let what = |part: &str| format!("{name} (fused {fused}): {part}");
            let out = if fused {
                policy.forward_seq_fused(&x, None).unwrap()
            } else {
                policy.forward_seq(&x, None).unwrap()
            };
            let belief = out.belief.clone().unwrap();
            let check = |part: &str, t: &Tensor| {
                let (shape, values) = array(&want[part]);
                assert_eq!(t.dims(), shape.as_slice(), "{}", what(part));
                assert_close(&what(part), &flat(t), &values, REL, ABS);
            };
            check("logits", &out.logits);
            check("values", &out.values);
            check("h_n", out.h_n.as_ref().unwrap());
            check("belief_mean", &belief.mean);
            match (&belief.log_var, want.get("belief_log_var")) {
                (Some(log_var), Some(_)) => check("belief_log_var", log_var),
                (None, None) => {}
                _ => panic!("{}", what("log-variance present in one only")),
            }
            // L = Σ logits·G_l + Σ values·G_v + Σ μ·G_μ (+ Σ log σ²·G_s) (+ Σ r̂·G_r).
            let dot = |t: &Tensor, g: &str| (t * tensor(&inputs[g])).unwrap().sum_all().unwrap();
            let mut loss = (dot(&out.logits, "g_logits") + dot(&out.values, "g_values")).unwrap();
            loss = (loss + dot(&belief.mean, "g_mean")).unwrap();
            if let Some(log_var) = &belief.log_var {
                loss = (loss + dot(log_var, "g_log_var")).unwrap();
            }
            if config.task_inference.target == BeliefTarget::Reward {
                let r_hat = policy.reconstruct_rewards(&x, &belief, &actions).unwrap();
                check("predicted_rewards", &r_hat);
                loss = (loss + dot(&r_hat, "g_rewards")).unwrap();
            } else {
                assert!(want.get("predicted_rewards").is_none());
            }
            let grads = loss.backward().unwrap();
            for (param, var) in &params {
                let grad = grads
                    .get(var.as_tensor())
                    .unwrap_or_else(|| panic!("{}", what(param)));
                let (shape, values) = array(&expected[*param]);
                assert_eq!(grad.dims(), shape.as_slice(), "{}", what(param));
                assert_close(&what(param), &flat(grad), &values, REL, ABS);
            }
        }
        // PPO's training path: the same logits and values.
        let (logits, values) = policy.forward_seq_train(&x, None).unwrap();
        assert_close(name, &flat(&logits), &array(&want["logits"]).1, REL, ABS);
        assert_close(name, &flat(&values), &array(&want["values"]).1, REL, ABS);
    }
}

#[test]
fn the_step_with_its_carried_state_matches_torch_at_every_position() {
    let g = load("task_inference.json");
    let steps = GoldenSteps::new(&g["inputs"]);
    let (batch, seq_len) = (3, 7);
    for case in g["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let config = golden_config(&g, case);
        let policy =
            Policy::from_tensors(&config, &tensor_map(&case["weights"]), &Device::Cpu).unwrap();
        let want = &case["outputs"];
        let layout = InputLayout::new(&config);
        let mut row = vec![0.0f32; batch * layout.width()];
        let mut workspace = RolloutWorkspace::new(&policy, batch).unwrap();
        let mut h: Option<Tensor> = None;
        for t in 0..seq_len {
            let what = |part: &str| format!("{name} step {t}: {part}");
            // Policy::step on candle tensors, h carried (over the episode end at t = 4 too).
            layout.write_rows(&steps.at(t), &mut row).unwrap();
            let x_t = Tensor::from_slice(&row, (batch, layout.width()), &Device::Cpu).unwrap();
            let out = policy.step(&x_t, h.as_ref()).unwrap();
            let check = |part: &str, actual: &[f32]| {
                assert_close(&what(part), actual, &golden_at(&want[part], t), REL, ABS);
            };
            check("logits", &flat(&out.logits));
            check("values", &flat(&out.values));
            let belief = out.belief.unwrap();
            check("belief_mean", &flat(&belief.mean));
            if let Some(log_var) = &belief.log_var {
                check("belief_log_var", &flat(log_var));
            }
            h = out.h;
            // The rollout workspace's step.
            let view = workspace.step_greedy(&steps.at(t)).unwrap();
            check("logits", view.logits);
            check("values", view.values);
        }
        let h_n = array(&want["h_n"]).1;
        assert_close(name, &flat(&h.unwrap()), &h_n, REL, ABS);
        assert_close(name, workspace.hidden().unwrap(), &h_n, REL, ABS);
    }
}
