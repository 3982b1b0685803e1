//! The causal Transformer policy: outputs and gradients against the PyTorch reference
//! (fixtures/golden/transformer_forward.json, written by gen_transformer.py), the cached
//! rollout step against the full-sequence forward at every position (inside and beyond the
//! context, with input normalisation and a trial restarting mid-run), look-ahead values,
//! seeded initialisation and checkpoints that name their kind.

use candle_core::{Device, Tensor, Var};
use mrl_agent::{
    AgentConfig, Error, InputLayout, InputNorm, Policy, PolicyInputs, PolicyKind, RolloutWorkspace,
    TransformerConfig,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::golden::{ABS, REL, array, assert_close, flat, load, tensor, tensor_map};

/// The golden network's config.
fn golden_config(g: &serde_json::Value) -> AgentConfig {
    let c = &g["config"];
    let u = |k: &str| c[k].as_u64().unwrap() as usize;
    AgentConfig {
        kind: PolicyKind::Transformer,
        obs_dim: u("obs_dim"),
        n_actions: u("n_actions"),
        hidden: u("hidden"),
        transformer: TransformerConfig {
            layers: u("layers"),
            heads: u("heads"),
            ff_mult: u("ff_hidden") / u("hidden"),
            context: u("context"),
        },
        ..Default::default()
    }
}

#[test]
fn outputs_and_gradients_match_torch() {
    let g = load("transformer_forward.json");
    let config = golden_config(&g);
    assert_eq!(
        config.transformer.context, 5,
        "the golden sequence outgrows the context"
    );
    let policy = Policy::from_tensors(&config, &tensor_map(&g["weights"]), &Device::Cpu).unwrap();
    let x = Var::from_tensor(&tensor(&g["x"])).unwrap();
    assert_eq!(x.dims(), &[2, 8, 9]);
    let out = policy.forward_seq(x.as_tensor(), None).unwrap();
    assert!(out.h_n.is_none());
    assert_close(
        "logits",
        &flat(&out.logits),
        &array(&g["logits"]).1,
        REL,
        ABS,
    );
    assert_close(
        "values",
        &flat(&out.values),
        &array(&g["values"]).1,
        REL,
        ABS,
    );
    // The training path is the same computation for this kind.
    let (logits, values) = policy.forward_seq_train(x.as_tensor(), None).unwrap();
    assert_eq!(flat(&logits), flat(&out.logits));
    assert_eq!(flat(&values), flat(&out.values));

    let loss = ((out.logits * tensor(&g["g_logits"]))
        .unwrap()
        .sum_all()
        .unwrap()
        + (out.values * tensor(&g["g_values"]))
            .unwrap()
            .sum_all()
            .unwrap())
    .unwrap();
    let grads = loss.backward().unwrap();
    let expected = g["grads"].as_object().unwrap();
    let params = policy.parameters();
    assert_eq!(params.len(), expected.len());
    assert_eq!(params.len(), 2 + 2 * 12 + 6);
    for (name, var) in &params {
        let grad = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let (shape, want) = array(&expected[*name]);
        assert_eq!(grad.dims(), shape.as_slice(), "{name} shape");
        assert_close(name, &flat(grad), &want, REL, ABS);
    }
    let grad_x = grads.get(x.as_tensor()).unwrap();
    assert_close("grad x", &flat(grad_x), &array(&g["grad_x"]).1, REL, ABS);
}

/// Per-step input columns of `batch` trials over `seq_len` steps (deterministic in
/// `seed`), time-major: `steps[t]` holds the `batch` rows of step `t`.
struct Trials {
    obs: Vec<Vec<f32>>,
    prev_actions: Vec<Vec<Option<usize>>>,
    prev_rewards: Vec<Vec<f32>>,
    prev_dones: Vec<Vec<bool>>,
}

impl Trials {
    fn new(config: &AgentConfig, batch: usize, seq_len: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // U[0, 1) from 24 random bits.
        let mut unit = move || (rng.next_u32() >> 8) as f32 / 16_777_216.0;
        let mut t = Self {
            obs: Vec::new(),
            prev_actions: Vec::new(),
            prev_rewards: Vec::new(),
            prev_dones: Vec::new(),
        };
        for step in 0..seq_len {
            let n_actions = config.n_actions as f32;
            t.obs.push(
                (0..batch * config.obs_dim)
                    .map(|_| unit() * 2.0 - 1.0)
                    .collect(),
            );
            t.prev_actions.push(
                (0..batch)
                    .map(|_| (step > 0).then(|| ((unit() * n_actions) as usize).min(2)))
                    .collect(),
            );
            t.prev_rewards.push(
                (0..batch)
                    .map(|_| if step > 0 { unit() - 0.5 } else { 0.0 })
                    .collect(),
            );
            t.prev_dones
                .push((0..batch).map(|_| step > 0 && unit() < 0.2).collect());
        }
        t
    }

    fn step(&self, t: usize) -> PolicyInputs<'_> {
        PolicyInputs {
            obs: &self.obs[t],
            prev_actions: &self.prev_actions[t],
            prev_rewards: &self.prev_rewards[t],
            prev_dones: &self.prev_dones[t],
        }
    }

    /// The `(B, T, in)` rows of steps `from..to` (trial-then-time order), through `layout`.
    fn sequence(&self, layout: &InputLayout, obs_dim: usize, from: usize, to: usize) -> Tensor {
        let batch = self.prev_rewards[0].len();
        let (mut obs, mut a, mut r, mut d) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for b in 0..batch {
            for t in from..to {
                obs.extend_from_slice(&self.obs[t][b * obs_dim..(b + 1) * obs_dim]);
                // A trial (re)started at `from` has no previous action, reward or done.
                let start = t == from;
                a.push(if start { None } else { self.prev_actions[t][b] });
                r.push(if start { 0.0 } else { self.prev_rewards[t][b] });
                d.push(!start && self.prev_dones[t][b]);
            }
        }
        let inputs = PolicyInputs {
            obs: &obs,
            prev_actions: &a,
            prev_rewards: &r,
            prev_dones: &d,
        };
        layout
            .sequence_tensor(&inputs, batch, to - from, &Device::Cpu)
            .unwrap()
    }
}

fn small_config(context: usize) -> AgentConfig {
    AgentConfig {
        kind: PolicyKind::Transformer,
        obs_dim: 5,
        n_actions: 3,
        hidden: 16,
        transformer: TransformerConfig {
            layers: 2,
            heads: 4,
            ff_mult: 2,
            context,
        },
        // Statistics away from the identity, so that the test sees them applied.
        input_norm: Some(InputNorm {
            obs_mean: vec![0.1, -0.2, 0.3, 0.0, 0.05],
            obs_std: vec![0.5, 2.0, 1.0, 0.7, 1.5],
            reward_std: 0.3,
            clip: 5.0,
            count: 100.0,
        }),
        task_inference: Default::default(),
    }
}

/// Logits `(T·A)` and values `(T)` of trial `b` in a sequence forward.
fn trial_outputs(policy: &Policy, x: &Tensor, b: usize) -> (Vec<f32>, Vec<f32>) {
    let out = policy.forward_seq(x, None).unwrap();
    (
        flat(&out.logits.get(b).unwrap()),
        flat(&out.values.get(b).unwrap()),
    )
}

#[test]
fn cached_step_equals_the_full_sequence_forward_at_every_position() {
    let (batch, seq_len, a) = (3, 13, 3);
    for context in [4, 32] {
        let config = small_config(context);
        let policy = Policy::new(&config, &Device::Cpu, 11).unwrap();
        let trials = Trials::new(&config, batch, seq_len, 5);
        let layout = InputLayout::new(&config);
        let x = trials.sequence(&layout, config.obs_dim, 0, seq_len);
        let mut ws = RolloutWorkspace::new(&policy, batch).unwrap();
        let mut got_logits = vec![Vec::new(); batch];
        let mut got_values = vec![Vec::new(); batch];
        for t in 0..seq_len {
            let step = ws.step_greedy(&trials.step(t)).unwrap();
            for b in 0..batch {
                got_logits[b].extend_from_slice(&step.logits[b * a..(b + 1) * a]);
                got_values[b].push(step.values[b]);
            }
        }
        assert_eq!(ws.positions(), Some(&[seq_len; 3][..]));
        for b in 0..batch {
            let (logits, values) = trial_outputs(&policy, &x, b);
            let as_f64 = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
            let what = format!("context {context}, trial {b}");
            assert_close(&what, &got_logits[b], &as_f64(&logits), 1e-5, 1e-5);
            assert_close(&what, &got_values[b], &as_f64(&values), 1e-5, 1e-5);
        }
    }
}

#[test]
fn a_reset_trial_starts_afresh_while_the_others_continue() {
    let (batch, seq_len, restart, a) = (2, 10, 6, 3);
    let config = small_config(4);
    let policy = Policy::new(&config, &Device::Cpu, 3).unwrap();
    let trials = Trials::new(&config, batch, seq_len, 9);
    let layout = InputLayout::new(&config);
    let mut ws = RolloutWorkspace::new(&policy, batch).unwrap();
    let mut logits = Vec::new();
    for t in 0..seq_len {
        if t == restart {
            ws.reset(1).unwrap();
        }
        // Trial 1's restart step has no previous action, reward or done.
        let mut inputs = trials.step(t);
        let (pa, pr, pd);
        if t == restart {
            pa = vec![trials.prev_actions[t][0], None];
            pr = vec![trials.prev_rewards[t][0], 0.0];
            pd = vec![trials.prev_dones[t][0], false];
            inputs.prev_actions = &pa;
            inputs.prev_rewards = &pr;
            inputs.prev_dones = &pd;
        }
        let step = ws.step_greedy(&inputs).unwrap();
        logits.push(step.logits.to_vec());
    }
    assert_eq!(ws.positions(), Some(&[seq_len, seq_len - restart][..]));
    let whole = trial_outputs(&policy, &trials.sequence(&layout, 5, 0, seq_len), 0).0;
    let tail = trial_outputs(&policy, &trials.sequence(&layout, 5, restart, seq_len), 1).0;
    for t in 0..seq_len {
        let trial0: Vec<f64> = whole[t * a..(t + 1) * a]
            .iter()
            .map(|&v| v as f64)
            .collect();
        assert_close("continuing trial", &logits[t][..a], &trial0, 1e-5, 1e-5);
        if t >= restart {
            let s = t - restart;
            let trial1: Vec<f64> = tail[s * a..(s + 1) * a].iter().map(|&v| v as f64).collect();
            assert_close("restarted trial", &logits[t][a..], &trial1, 1e-5, 1e-5);
        }
    }
}

#[test]
fn peeking_a_value_changes_nothing() {
    let config = small_config(3);
    let policy = Policy::new(&config, &Device::Cpu, 4).unwrap();
    let trials = Trials::new(&config, 2, 8, 2);
    let run = |peek: bool| {
        let mut ws = RolloutWorkspace::new(&policy, 2).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut out = Vec::new();
        for t in 0..8 {
            let step = ws.step(&trials.step(t), &mut rng).unwrap();
            out.extend_from_slice(step.values);
            out.extend(step.actions.iter().map(|&a| a as f32));
            if peek {
                // Look ahead with another step's rows: the next step must not see them.
                let v = ws.peek_values(&trials.step((t + 3) % 8)).unwrap();
                assert!(v.iter().all(|v| v.is_finite()));
            }
        }
        out
    };
    assert_eq!(run(true), run(false));
    // The peeked value is the value the next step reports for the same rows.
    let mut ws = RolloutWorkspace::new(&policy, 2).unwrap();
    ws.step_greedy(&trials.step(0)).unwrap();
    let peeked = ws.peek_values(&trials.step(1)).unwrap().to_vec();
    let stepped = ws.step_greedy(&trials.step(1)).unwrap().values.to_vec();
    assert_eq!(peeked, stepped);
}

#[test]
fn initialisation_is_deterministic_by_seed() {
    let config = small_config(8);
    let a = Policy::new(&config, &Device::Cpu, 21).unwrap();
    let b = Policy::new(&config, &Device::Cpu, 21).unwrap();
    let c = Policy::new(&config, &Device::Cpu, 22).unwrap();
    let (ta, tb, tc) = (a.tensors(), b.tensors(), c.tensors());
    for (name, t) in &ta {
        assert_eq!(flat(t), flat(&tb[name]), "{name}");
    }
    assert_ne!(flat(&ta["embed.weight"]), flat(&tc["embed.weight"]));
    // LayerNorms start at the identity, Linear layers at U(−1/√in, 1/√in).
    assert!(flat(&ta["blocks.1.ln2.weight"]).iter().all(|&w| w == 1.0));
    assert!(flat(&ta["ln_f.bias"]).iter().all(|&w| w == 0.0));
    let bound = 1.0 / (32f32).sqrt(); // ff.2 reads 2 × 16 features
    let ff2 = flat(&ta["blocks.0.ff.2.weight"]);
    assert!(ff2.iter().all(|w| w.abs() <= bound));
    assert!(ff2.iter().any(|w| w.abs() > 0.5 * bound));
    // 16·10 + 16 embed; per block 2·16 + (48·16 + 48) + (16·16 + 16) + 2·16 + (32·16 + 32)
    // + (16·32 + 16); 2·16 ln_f; 3·16 + 3 + 16 + 1 heads.
    let per_block = 32 + 816 + 272 + 32 + 544 + 528;
    assert_eq!(a.n_params(), 176 + 2 * per_block + 32 + 51 + 17);
}

#[test]
fn checkpoint_round_trip_and_wrong_kind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.safetensors");
    let config = small_config(6);
    let policy = Policy::new(&config, &Device::Cpu, 8).unwrap();
    policy.save(&path).unwrap();
    let sidecar = std::fs::read_to_string(dir.path().join("policy.json")).unwrap();
    assert!(sidecar.contains("\"kind\": \"transformer\""), "{sidecar}");
    assert!(sidecar.contains("\"context\": 6"), "{sidecar}");
    let loaded = Policy::load_kind(&path, PolicyKind::Transformer, &Device::Cpu).unwrap();
    assert_eq!(loaded.config(), policy.config());
    assert_eq!(
        policy.to_safetensors().unwrap(),
        loaded.to_safetensors().unwrap()
    );
    let trials = Trials::new(&config, 2, 7, 1);
    let x = trials.sequence(&InputLayout::new(&config), 5, 0, 7);
    assert_eq!(trial_outputs(&policy, &x, 1), trial_outputs(&loaded, &x, 1));

    match Policy::load_kind(&path, PolicyKind::Rl2, &Device::Cpu) {
        Err(e @ Error::WrongKind { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("holds a transformer policy, expected rl2"),
                "{msg}"
            );
        }
        other => panic!("expected WrongKind, got {other:?}"),
    }
    // An RL² checkpoint asked for as a Transformer.
    let rl2_path = dir.path().join("rl2.safetensors");
    let rl2 = AgentConfig {
        hidden: 8,
        ..Default::default()
    };
    Policy::new(&rl2, &Device::Cpu, 0)
        .unwrap()
        .save(&rl2_path)
        .unwrap();
    assert!(matches!(
        Policy::load_kind(&rl2_path, PolicyKind::Transformer, &Device::Cpu),
        Err(Error::WrongKind {
            expected: "transformer",
            found: "rl2",
            ..
        })
    ));
}

#[test]
fn tensor_step_and_candle_workspace_say_why_not() {
    let config = small_config(4);
    let policy = Policy::new(&config, &Device::Cpu, 0).unwrap();
    assert!(policy.has_memory() && !policy.is_recurrent());
    assert_eq!(policy.state_size(), 0);
    let x = Tensor::zeros(
        (2, config.input_dim()),
        candle_core::DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    assert!(matches!(
        policy.step(&x, None),
        Err(Error::Unsupported {
            kind: "transformer",
            ..
        })
    ));
    assert!(matches!(
        RolloutWorkspace::new_candle(&policy, 2),
        Err(Error::Unsupported { .. })
    ));
}

#[test]
fn refresh_picks_up_new_weights_and_rejects_other_sizes() {
    let config = small_config(4);
    let mut policy = Policy::new(&config, &Device::Cpu, 0).unwrap();
    let trials = Trials::new(&config, 2, 1, 0);
    let mut ws = RolloutWorkspace::new(&policy, 2).unwrap();
    let before = ws.step_greedy(&trials.step(0)).unwrap().values.to_vec();
    let other = Policy::new(&config, &Device::Cpu, 1).unwrap();
    policy.set_tensors(&other.tensors(), "test").unwrap();
    ws.refresh(&policy).unwrap();
    ws.reset_all().unwrap();
    let after = ws.step_greedy(&trials.step(0)).unwrap().values.to_vec();
    assert_ne!(before, after);
    let mut fresh = RolloutWorkspace::new(&other, 2).unwrap();
    assert_eq!(
        fresh.step_greedy(&trials.step(0)).unwrap().values,
        &after[..]
    );
    let wider = Policy::new(&small_config(5), &Device::Cpu, 0).unwrap();
    assert!(matches!(
        ws.refresh(&wider),
        Err(Error::InvalidConfig { .. })
    ));
}
