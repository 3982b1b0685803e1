//! The RL² policy against the PyTorch `MetaRLAgent` (fixtures/golden/agent_forward.json):
//! input rows, the sequence unroll, step-by-step candle steps and the fused rollout step.

use candle_core::{Device, Tensor};
use mrl_agent::{AgentConfig, InputLayout, Policy, PolicyInputs, RolloutWorkspace};
use serde_json::Value;

use crate::golden::{ABS, REL, array, assert_close, f32s, flat, load, shape, tensor_map};

/// Golden inputs as columns, in trial-then-time order.
struct Inputs {
    batch: usize,
    seq_len: usize,
    obs: Vec<f32>,
    prev_actions: Vec<Option<usize>>,
    prev_rewards: Vec<f32>,
    prev_dones: Vec<bool>,
}

impl Inputs {
    fn columns(&self) -> PolicyInputs<'_> {
        PolicyInputs {
            obs: &self.obs,
            prev_actions: &self.prev_actions,
            prev_rewards: &self.prev_rewards,
            prev_dones: &self.prev_dones,
        }
    }

    /// Columns of step `t` of every trial.
    fn at(&self, t: usize, obs_dim: usize) -> (Vec<f32>, Vec<Option<usize>>, Vec<f32>, Vec<bool>) {
        let rows: Vec<usize> = (0..self.batch).map(|b| b * self.seq_len + t).collect();
        (
            rows.iter()
                .flat_map(|&r| self.obs[r * obs_dim..(r + 1) * obs_dim].to_vec())
                .collect(),
            rows.iter().map(|&r| self.prev_actions[r]).collect(),
            rows.iter().map(|&r| self.prev_rewards[r]).collect(),
            rows.iter().map(|&r| self.prev_dones[r]).collect(),
        )
    }
}

fn setup() -> (Value, AgentConfig, Policy, Inputs) {
    let g = load("agent_forward.json");
    let cfg = &g["config"];
    let config = AgentConfig {
        obs_dim: cfg["state_dim"].as_u64().unwrap() as usize,
        n_actions: cfg["action_dim"].as_u64().unwrap() as usize,
        hidden: cfg["hidden_dim"].as_u64().unwrap() as usize,
        ..Default::default()
    };
    let policy = Policy::from_tensors(&config, &tensor_map(&g["weights"]), &Device::Cpu).unwrap();
    let inp = &g["inputs"];
    let pa_shape = shape(&inp["prev_action"]);
    let inputs = Inputs {
        batch: pa_shape[0],
        seq_len: pa_shape[1],
        obs: f32s(&inp["state"]),
        prev_actions: array(&inp["prev_action"])
            .1
            .into_iter()
            .map(|a| if a < 0.0 { None } else { Some(a as usize) })
            .collect(),
        prev_rewards: f32s(&inp["prev_reward"]),
        prev_dones: array(&inp["done"])
            .1
            .into_iter()
            .map(|d| d != 0.0)
            .collect(),
    };
    (g, config, policy, inputs)
}

fn cases(g: &Value) -> &Vec<Value> {
    g["cases"].as_array().unwrap()
}

/// `h0` of a case as `(B, H)`, `None` for the zero case.
fn h0_of(case: &Value, batch: usize, hidden: usize) -> Option<Tensor> {
    let h0 = f32s(&case["h0"]);
    if h0.iter().all(|v| *v == 0.0) {
        return None;
    }
    Some(Tensor::from_vec(h0, (batch, hidden), &Device::Cpu).unwrap())
}

#[test]
fn input_rows_match_build_input_exactly() {
    let (g, config, _, inputs) = setup();
    let layout = InputLayout::new(&config);
    let x = layout
        .sequence_tensor(
            &inputs.columns(),
            inputs.batch,
            inputs.seq_len,
            &Device::Cpu,
        )
        .unwrap();
    for case in cases(&g) {
        let (want_shape, want) = array(&case["float32"]["x"]);
        assert_eq!(x.dims(), want_shape.as_slice());
        let want: Vec<f32> = want.into_iter().map(|v| v as f32).collect();
        assert_eq!(flat(&x), want);
    }
}

#[test]
fn sequence_unroll_matches_torch() {
    let (g, config, policy, inputs) = setup();
    let x = InputLayout::new(&config)
        .sequence_tensor(
            &inputs.columns(),
            inputs.batch,
            inputs.seq_len,
            &Device::Cpu,
        )
        .unwrap();
    for case in cases(&g) {
        let name = case["name"].as_str().unwrap();
        let want = &case["float32"];
        let h0 = h0_of(case, inputs.batch, config.hidden);
        let out = policy.forward_seq(&x, h0.as_ref()).unwrap();
        assert_eq!(out.logits.dims(), shape(&want["logits"]).as_slice());
        assert_eq!(out.values.dims(), shape(&want["values"]).as_slice());
        assert_close(
            &format!("{name} logits"),
            &flat(&out.logits),
            &array(&want["logits"]).1,
            REL,
            ABS,
        );
        assert_close(
            &format!("{name} values"),
            &flat(&out.values),
            &array(&want["values"]).1,
            REL,
            ABS,
        );
        let h_n = out.h_n.unwrap();
        assert_close(
            &format!("{name} h_n"),
            &flat(&h_n),
            &array(&want["h_n"]).1,
            REL,
            ABS,
        );
        let log_probs = candle_nn::ops::log_softmax(&out.logits, 2).unwrap();
        assert_close(
            &format!("{name} log_probs"),
            &flat(&log_probs),
            &array(&want["log_probs"]).1,
            REL,
            ABS,
        );
    }
}

#[test]
fn candle_steps_carrying_h_match_the_unroll() {
    let (g, config, policy, inputs) = setup();
    let layout = InputLayout::new(&config);
    for case in cases(&g) {
        let want = &case["float32"];
        let (_, logits) = array(&want["logits"]);
        let (_, values) = array(&want["values"]);
        let a = config.n_actions;
        let mut h = h0_of(case, inputs.batch, config.hidden);
        for t in 0..inputs.seq_len {
            let (obs, pa, pr, pd) = inputs.at(t, config.obs_dim);
            let cols = PolicyInputs {
                obs: &obs,
                prev_actions: &pa,
                prev_rewards: &pr,
                prev_dones: &pd,
            };
            let x = layout
                .sequence_tensor(&cols, inputs.batch, 1, &Device::Cpu)
                .unwrap()
                .squeeze(1)
                .unwrap();
            let out = policy.step(&x, h.as_ref()).unwrap();
            let got = flat(&out.logits);
            for b in 0..inputs.batch {
                let r = b * inputs.seq_len + t;
                assert_close(
                    "step logits",
                    &got[b * a..(b + 1) * a],
                    &logits[r * a..(r + 1) * a],
                    REL,
                    ABS,
                );
                assert_close(
                    "step value",
                    &flat(&out.values)[b..b + 1],
                    &values[r..r + 1],
                    REL,
                    ABS,
                );
            }
            h = out.h;
        }
        assert_close(
            "step h_n",
            &flat(&h.unwrap()),
            &array(&want["h_n"]).1,
            REL,
            ABS,
        );
    }
}

#[test]
fn fused_and_candle_rollout_steps_match_torch() {
    let (g, config, policy, inputs) = setup();
    let a = config.n_actions;
    for case in cases(&g) {
        let want = &case["float32"];
        let (_, logits) = array(&want["logits"]);
        let (_, values) = array(&want["values"]);
        let (_, log_probs) = array(&want["log_probs"]);
        for mut ws in [
            RolloutWorkspace::new(&policy, inputs.batch).unwrap(),
            RolloutWorkspace::new_candle(&policy, inputs.batch).unwrap(),
        ] {
            let what = if ws.is_fused() { "fused" } else { "candle" };
            if let Some(h0) = h0_of(case, inputs.batch, config.hidden) {
                ws.set_hidden(&flat(&h0)).unwrap();
            }
            for t in 0..inputs.seq_len {
                let (obs, pa, pr, pd) = inputs.at(t, config.obs_dim);
                let cols = PolicyInputs {
                    obs: &obs,
                    prev_actions: &pa,
                    prev_rewards: &pr,
                    prev_dones: &pd,
                };
                let step = ws.step_greedy(&cols).unwrap();
                for b in 0..inputs.batch {
                    let r = b * inputs.seq_len + t;
                    let l = &logits[r * a..(r + 1) * a];
                    assert_close(what, &step.logits[b * a..(b + 1) * a], l, REL, ABS);
                    assert_close(what, &step.values[b..b + 1], &values[r..r + 1], REL, ABS);
                    let act = step.actions[b];
                    let best = (0..a).fold(0, |m, k| if l[k] > l[m] { k } else { m });
                    assert_eq!(act, best, "{what}: greedy action");
                    assert_close(
                        what,
                        &step.log_probs[b..b + 1],
                        &log_probs[r * a + act..r * a + act + 1],
                        REL,
                        ABS,
                    );
                }
            }
            assert_close(what, ws.hidden().unwrap(), &array(&want["h_n"]).1, REL, ABS);
        }
    }
}
