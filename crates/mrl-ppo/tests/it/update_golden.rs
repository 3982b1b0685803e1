//! One RL² trial through two PPO epochs against `fixtures/golden/ppo_update.json` (f32).

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use mrl_agent::{AgentConfig, InputLayout, Policy, PolicyInputs};
use mrl_ppo::{
    AdamConfig, GaeConfig, Learner, PpoConfig, PpoTargets, gae_with_dones, normalize_advantages,
};
use serde_json::Value;

use crate::json::{assert_close, flat, golden, num, shape, vec1};

fn weights(v: &Value) -> HashMap<String, Tensor> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(name, w)| {
            let t = Tensor::from_vec(flat(w), shape(w), &Device::Cpu).unwrap();
            (name.clone(), t.to_dtype(DType::F32).unwrap())
        })
        .collect()
}

fn to_f64(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn two_epochs_match_pytorch() {
    let file = golden("ppo_update.json");
    let c = &file["config"];
    let hidden = c["hidden_dim"].as_u64().unwrap() as usize;
    let agent = AgentConfig {
        obs_dim: c["state_dim"].as_u64().unwrap() as usize,
        n_actions: c["action_dim"].as_u64().unwrap() as usize,
        hidden,
        ..Default::default()
    };
    let dev = Device::Cpu;
    let policy = Policy::from_tensors(&agent, &weights(&file["initial_weights"]), &dev).unwrap();

    let inputs = &file["inputs"];
    let seq_len = c["T"].as_u64().unwrap() as usize;
    let obs: Vec<f32> = flat(&inputs["state"]).iter().map(|&v| v as f32).collect();
    let prev_actions: Vec<Option<usize>> = vec1(&inputs["prev_action"])
        .iter()
        .map(|&a| (a >= 0.0).then_some(a as usize))
        .collect();
    let prev_rewards: Vec<f32> = vec1(&inputs["prev_reward"])
        .iter()
        .map(|&r| r as f32)
        .collect();
    let prev_dones: Vec<bool> = vec1(&inputs["done_in"]).iter().map(|&d| d != 0.0).collect();
    let x = InputLayout::new(&agent)
        .sequence_tensor(
            &PolicyInputs {
                obs: &obs,
                prev_actions: &prev_actions,
                prev_rewards: &prev_rewards,
                prev_dones: &prev_dones,
            },
            1,
            seq_len,
            &dev,
        )
        .unwrap();
    let actions: Vec<u32> = vec1(&inputs["actions"]).iter().map(|&a| a as u32).collect();
    let want = &file["float32"];

    // Rollout pass: old log-probs and values.
    let out = policy.forward_seq(&x, None).unwrap();
    let logits = out.logits.reshape((seq_len, agent.n_actions)).unwrap();
    let log_probs = mrl_ppo::log_softmax(&logits).unwrap();
    let action_t = Tensor::from_vec(actions.clone(), seq_len, &dev).unwrap();
    let old_log_probs = log_probs
        .gather(&action_t.unsqueeze(1).unwrap(), 1)
        .unwrap()
        .squeeze(1)
        .unwrap();
    assert_close(
        "old_log_probs",
        &to_f64(&old_log_probs),
        &vec1(&want["old_log_probs"]),
        1e-6,
        1e-5,
    );
    let old_values = to_f64(&out.values.flatten_all().unwrap());
    assert_close(
        "old_values",
        &old_values,
        &vec1(&want["old_values"]),
        1e-6,
        1e-5,
    );

    // GAE in f64 across the episodes, cut at the trial end.
    let gae_config = GaeConfig {
        gamma: num(&c["gamma"]),
        lambda: num(&c["lambda"]),
    };
    let rewards = vec1(&inputs["rewards"]);
    let gae_dones: Vec<bool> = vec1(&inputs["gae_dones"])
        .iter()
        .map(|&d| d != 0.0)
        .collect();
    let gae = gae_with_dones(&rewards, &old_values, &gae_dones, 0.0, &gae_config).unwrap();
    assert_close(
        "advantages",
        &gae.advantages,
        &vec1(&want["advantages"]),
        1e-5,
        1e-5,
    );
    assert_close("returns", &gae.returns, &vec1(&want["returns"]), 1e-5, 1e-5);
    let mut adv = gae.advantages.clone();
    normalize_advantages(&mut adv, None);
    assert_close(
        "normalized",
        &adv,
        &vec1(&want["advantages_normalized"]),
        1e-5,
        1e-5,
    );

    let f32_tensor = |v: &[f64]| {
        Tensor::from_vec(
            v.iter().map(|&x| x as f32).collect::<Vec<_>>(),
            seq_len,
            &dev,
        )
        .unwrap()
    };
    let targets = PpoTargets {
        actions: action_t,
        old_log_probs: old_log_probs.detach(),
        advantages: f32_tensor(&adv),
        returns: f32_tensor(&gae.returns),
        mask: None,
    };
    let ppo = PpoConfig {
        clip: num(&c["clip_eps"]),
        value_coef: num(&c["value_coef"]),
        entropy_coef: num(&c["entropy_coef"]),
        max_grad_norm: num(&c["max_grad_norm"]),
        ..Default::default()
    };
    let betas = vec1(&c["adam_betas"]);
    let adam = AdamConfig {
        lr: num(&c["lr"]),
        beta1: betas[0],
        beta2: betas[1],
        eps: num(&c["adam_eps"]),
    };
    let mut learner = Learner::new(policy.clone(), ppo, adam).unwrap();
    for (epoch, want_epoch) in want["epochs"].as_array().unwrap().iter().enumerate() {
        let report = learner.gradient_step(&x, &targets, adam.lr).unwrap();
        let l = &report.loss;
        for (what, got) in [
            ("policy_loss", l.policy),
            ("value_loss", l.value),
            ("entropy", l.entropy),
            ("total_loss", l.total),
            ("grad_norm_before_clip", report.grad_norm),
        ] {
            assert_close(
                &format!("epoch {epoch} {what}"),
                &[got],
                &[num(&want_epoch[what])],
                1e-6,
                1e-5,
            );
        }
        let names = learner.param_names().to_vec();
        if let Some(clipped) = want_epoch.get("clipped_grads") {
            for (name, g) in names.iter().zip(&report.clipped_grads) {
                assert_close(
                    &format!("grad {name}"),
                    &to_f64(g),
                    &flat(&clipped[name]),
                    1e-6,
                    1e-5,
                );
            }
        }
        let params = learner.policy().tensors();
        for name in &names {
            let got = to_f64(&params[name]);
            assert_close(
                &format!("epoch {epoch} {name}"),
                &got,
                &flat(&want_epoch["params_after_step"][name]),
                1e-6,
                0.0,
            );
        }
    }
    assert_eq!(learner.adam().step_count(), 2);
    // The learner updates the policy's parameters in place (shared Vars).
    assert_eq!(
        to_f64(&policy.tensors()["value_head.bias"]),
        to_f64(&learner.policy().tensors()["value_head.bias"])
    );
}
