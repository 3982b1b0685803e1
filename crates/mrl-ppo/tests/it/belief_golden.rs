//! The task-inference agent's training loss against the PyTorch reference
//! (`fixtures/golden/task_inference.json`, written by `gen_task_inference.py`): one
//! [`Learner::gradient_step_with_belief`] on three trials of seven steps (two episodes, one
//! padding step) for a Gaussian belief and a point belief on the task's parameters and a
//! Gaussian belief trained by reward reconstruction. The PPO parts, the auxiliary loss, the
//! gradient norm and every clipped gradient (f32) against the float64 reference; and the
//! Gaussian belief's negative log-likelihood alone over variances from `e^−16` to `e^10`.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use mrl_agent::{
    AgentConfig, Belief, BeliefKind, BeliefTarget, Policy, PolicyKind, TaskInferenceConfig,
};
use mrl_ppo::{AuxTargets, Learner, PpoConfig, PpoTargets, belief_loss, gaussian_nll};
use serde_json::Value;

use crate::json::{assert_close, flat, golden, num, shape};

/// Float32 blocks against float64 results: 1e-5 relative, 1e-6 absolute (golden README).
const REL: f64 = 1e-5;
const ABS: f64 = 1e-6;

/// An f32 tensor of a golden nested list, reshaped to `dims`.
fn f32_tensor(v: &Value, dims: &[usize]) -> Tensor {
    let values: Vec<f32> = flat(v).into_iter().map(|x| x as f32).collect();
    Tensor::from_vec(values, dims, &Device::Cpu).unwrap()
}

/// The network of a golden case.
fn agent_config(g: &Value, case: &Value) -> AgentConfig {
    let size = |v: &Value| v.as_u64().unwrap() as usize;
    let c = &g["config"];
    AgentConfig {
        kind: PolicyKind::TaskInference,
        obs_dim: size(&c["obs_dim"]),
        n_actions: size(&c["n_actions"]),
        hidden: size(&c["hidden"]),
        task_inference: TaskInferenceConfig {
            belief: match case["belief"].as_str() {
                Some("gaussian") => BeliefKind::Gaussian,
                Some("point") => BeliefKind::Point,
                other => panic!("belief {other:?}"),
            },
            latent: size(&c["latent"]),
            target: match case["target"].as_str() {
                Some("task") => BeliefTarget::Task,
                Some("reward") => BeliefTarget::Reward,
                other => panic!("target {other:?}"),
            },
            body_layers: size(&case["body_layers"]),
        },
        ..Default::default()
    }
}

#[test]
fn the_training_loss_and_its_gradients_match_torch() {
    let g = golden("task_inference.json");
    let (c, inputs) = (&g["config"], &g["inputs"]);
    let (batch, seq_len) = (shape(&inputs["obs"])[0], shape(&inputs["obs"])[1]);
    assert_eq!((batch, seq_len), (3, 7));
    let n = batch * seq_len;
    let n_actions = c["n_actions"].as_u64().unwrap() as usize;
    let latent = c["latent"].as_u64().unwrap() as usize;
    let actions: Vec<u32> = flat(&inputs["actions"]).iter().map(|&a| a as u32).collect();
    let mask = f32_tensor(&inputs["mask"], &[n]);
    let n_valid = f64::from(mask.sum_all().unwrap().to_scalar::<f32>().unwrap());
    assert_eq!(n_valid, 20.0, "one padding step");
    let mut one_hot = vec![0.0f32; n * n_actions];
    for (i, &a) in actions.iter().enumerate() {
        one_hot[i * n_actions + a as usize] = 1.0;
    }
    let actions_one_hot =
        Tensor::from_vec(one_hot, (batch, seq_len, n_actions), &Device::Cpu).unwrap();
    let ppo = PpoConfig {
        clip: num(&c["clip"]),
        value_coef: num(&c["value_coef"]),
        entropy_coef: num(&c["entropy_coef"]),
        belief_coef: num(&c["belief_coef"]),
        // The shipped configs' clip: two of the three cases exceed it.
        max_grad_norm: 0.5,
        ..Default::default()
    };
    let mut n_clipped = 0;
    for case in g["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let agent = agent_config(&g, case);
        let weights: HashMap<String, Tensor> = case["weights"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, w)| (k.clone(), f32_tensor(w, &shape(w))))
            .collect();
        let policy = Policy::from_tensors(&agent, &weights, &Device::Cpu).unwrap();
        // The rows mrl's InputLayout builds from the columns (checked in mrl-agent's tests).
        let x = f32_tensor(&inputs["x"], &shape(&inputs["x"]));
        let targets = PpoTargets {
            actions: Tensor::from_vec(actions.clone(), n, &Device::Cpu).unwrap(),
            old_log_probs: f32_tensor(&case["old_log_probs"], &[n]),
            advantages: f32_tensor(&inputs["advantages"], &[n]),
            returns: f32_tensor(&inputs["returns"], &[n]),
            mask: Some(mask.clone()),
        };
        let aux = match agent.task_inference.target {
            BeliefTarget::Task => {
                AuxTargets::Task(f32_tensor(&inputs["task_targets"], &[n, latent]))
            }
            BeliefTarget::Reward => AuxTargets::Reward {
                actions_one_hot: actions_one_hot.clone(),
                rewards: f32_tensor(&inputs["rewards"], &[n]),
            },
        };
        let mut learner = Learner::new(policy, ppo.clone(), Default::default()).unwrap();
        let report = learner
            .gradient_step_with_belief(&x, &targets, Some(&aux), 1e-3)
            .unwrap();

        let want = &case["loss"];
        let scalar = |what: &str, got: f64, key: &str| {
            assert_close(
                &format!("{name}: {what}"),
                &[got],
                &[num(&want[key])],
                ABS,
                REL,
            );
        };
        scalar("policy loss", report.loss.policy, "policy");
        scalar("value loss", report.loss.value, "value");
        scalar("entropy", report.loss.entropy, "entropy");
        scalar("belief loss", report.belief_loss.unwrap(), "belief");
        // The report's total is PPO's; the loss minimised adds the weighted belief loss.
        let total = report.loss.total + ppo.belief_coef * report.belief_loss.unwrap();
        scalar("total loss", total, "total");
        scalar("gradient norm", report.grad_norm, "grad_norm");
        let outside = num(&want["ratios_outside_clip"]);
        assert!(outside > 0.0, "{name}: the clip binds somewhere");
        scalar(
            "clip fraction",
            report.loss.clip_fraction * n_valid,
            "ratios_outside_clip",
        );

        // Clipping as torch's clip_grad_norm_: scaled by max / (norm + 1e-6) above the max.
        let norm = num(&want["grad_norm"]);
        let scale = (ppo.max_grad_norm / (norm + 1e-6)).min(1.0);
        n_clipped += usize::from(scale < 1.0);
        let expected = case["loss_grads"].as_object().unwrap();
        assert_eq!(learner.param_names().len(), expected.len(), "{name}");
        for (param, grad) in learner.param_names().iter().zip(&report.clipped_grads) {
            let want = &expected[param.as_str()];
            assert_eq!(grad.dims(), shape(want).as_slice(), "{name}: {param}");
            let got: Vec<f64> = grad
                .to_dtype(DType::F64)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let want: Vec<f64> = flat(want).iter().map(|g| g * scale).collect();
            assert_close(&format!("{name}: grad {param}"), &got, &want, ABS, REL);
        }
    }
    assert_eq!(
        n_clipped, 2,
        "the Gaussian and point task cases are clipped"
    );
}

#[test]
fn the_gaussian_nll_matches_torch_from_tiny_to_large_variances() {
    // Variances exp(−16) … exp(10): the raw log-variance is used as it is (no clamp, as
    // VariBAD), where torch's gaussian_nll_loss would clamp the variance at its eps (1e-6).
    let g = golden("task_inference.json");
    let v = &g["variance"];
    let dims = shape(&v["mean"]);
    let var = |key: &str| Var::from_tensor(&f32_tensor(&v[key], &dims)).unwrap();
    let (mean, log_var) = (var("mean"), var("log_var"));
    let target = f32_tensor(&v["target"], &dims);
    let mask = f32_tensor(&v["mask"], &[dims[0]]);
    let to_f64 = |t: &Tensor| -> Vec<f64> {
        let t = t.to_dtype(DType::F64).unwrap().flatten_all().unwrap();
        t.to_vec1().unwrap()
    };
    let nll = gaussian_nll(mean.as_tensor(), log_var.as_tensor(), &target).unwrap();
    assert_close("nll", &to_f64(&nll), &flat(&v["nll"]), ABS, REL);
    // Only the smallest variance (below torch's default eps) tells the two apart.
    let clamped = flat(&v["nll_torch_default_eps"]);
    assert!((clamped[0] - to_f64(&nll)[0]).abs() > 0.5, "{clamped:?}");
    let belief = Belief {
        mean: mean.as_tensor().clone(),
        log_var: Some(log_var.as_tensor().clone()),
    };
    let loss = belief_loss(&belief, &target, Some(&mask)).unwrap();
    assert_close("loss", &to_f64(&loss), &[num(&v["loss"])], ABS, REL);
    let grads = loss.backward().unwrap();
    let grad = |x: &Var| to_f64(grads.get(x.as_tensor()).unwrap());
    assert_close("grad mean", &grad(&mean), &flat(&v["grad_mean"]), ABS, REL);
    let grad_log_var = grad(&log_var);
    assert_close(
        "grad log var",
        &grad_log_var,
        &flat(&v["grad_log_var"]),
        ABS,
        REL,
    );
    // The masked row gets no gradient.
    assert_eq!(&grad_log_var[10..], &[0.0, 0.0]);
}
