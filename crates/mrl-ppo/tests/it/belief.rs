//! The task-inference agent's auxiliary belief loss: targets are the task's true parameters
//! and never reach the policy, the loss equals a direct computation, its gradient matches
//! the closed form and finite differences, coefficient 0 is plain PPO, and a short run
//! trains end to end on AR(1) markets and bandits with a checkpoint that reloads exactly.

use std::sync::Arc;

use candle_core::{Device, Tensor};
use mrl_agent::{
    AgentConfig, BeliefKind, BeliefTarget, Policy, PolicyKind, RolloutWorkspace,
    TaskInferenceConfig,
};
use mrl_env::{
    Ar1Family, ProcessSource, Split, SyntheticTasks, TaskKind as EnvTaskKind, TradingConfig,
    TrialConfig, VecTrials,
};
use mrl_ppo::{
    AgentSection, AuxTargets, CHECKPOINT_DIR, Error, GaeScope, Learner, PpoConfig, RolloutBuffer,
    TaskKind, TaskSection, TrainConfig, Trainer, belief_loss, belief_targets, collect_rollout,
    flatten_belief, ppo_batch, reward_targets,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const N_ENVS: usize = 3;

fn tasks() -> Arc<SyntheticTasks> {
    let trading = TradingConfig {
        max_steps: 12,
        ..Default::default()
    };
    let bars = trading.min_bars() + 20;
    Arc::new(SyntheticTasks::new(ProcessSource::Ar1(Ar1Family::default()), bars, trading).unwrap())
}

fn agent(belief: BeliefKind, latent: usize) -> AgentConfig {
    AgentConfig {
        kind: PolicyKind::TaskInference,
        obs_dim: 14,
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

/// One rollout of `N_ENVS` two-episode AR(1) trials; targets collected when `targets`.
fn rollout(policy: &Policy, targets: bool) -> (RolloutBuffer, VecTrials<SyntheticTasks>) {
    let trial = TrialConfig {
        episodes_per_trial: 2,
        ..Default::default()
    };
    let mut trials = VecTrials::new(tasks(), N_ENVS, trial, Split::Train, 5).unwrap();
    let mut ws = RolloutWorkspace::new(policy, N_ENVS).unwrap();
    let mut buffer = RolloutBuffer::new(N_ENVS, trials.max_trial_len(), 14);
    if targets {
        buffer = buffer.with_task_targets(policy.config().task_inference.latent);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    collect_rollout(
        &mut trials,
        &mut ws,
        policy,
        &mut buffer,
        &mut rng,
        GaeScope::Trial,
    )
    .unwrap();
    (buffer, trials)
}

fn true_phi(trials: &VecTrials<SyntheticTasks>, b: usize) -> f32 {
    match &trials.trials()[b].env().task_info().kind {
        EnvTaskKind::Synthetic {
            process: mrl_data::MarketProcess::Ar1(p),
            ..
        } => p.phi as f32,
        other => panic!("not an AR(1) task: {other:?}"),
    }
}

/// Minibatch tensors of every trial of `buffer` (advantages and returns are placeholders
/// of the right length: the tests compare losses and gradients of one batch).
fn batch(policy: &Policy, buffer: &RolloutBuffer) -> (mrl_ppo::PpoBatch, Tensor) {
    let trials: Vec<usize> = (0..N_ENVS).collect();
    let n = N_ENVS * buffer.len();
    let adv: Vec<f64> = (0..n).map(|i| (i % 7) as f64 / 7.0 - 0.4).collect();
    let ret: Vec<f64> = (0..n).map(|i| (i % 5) as f64 / 5.0).collect();
    let b = ppo_batch(policy, buffer, &trials, &adv, &ret).unwrap();
    let targets = belief_targets(buffer, &trials, policy.device()).unwrap();
    (b, targets)
}

#[test]
fn targets_are_the_true_phi_and_never_reach_the_policy() {
    let policy = Policy::new(&agent(BeliefKind::Gaussian, 1), &Device::Cpu, 1).unwrap();
    let (with, trials) = rollout(&policy, true);
    assert_eq!(with.target_dim(), 1);
    for b in 0..N_ENVS {
        let phi = true_phi(&trials, b);
        assert!((0.1..=0.5).contains(&phi.abs()), "{phi}");
        for t in 0..with.len() {
            assert_eq!(with.task_target(with.index(b, t)), &[phi]);
        }
    }
    // Same seeds without targets: the same actions, log-probabilities and values.
    let (without, _) = rollout(&policy, false);
    assert_eq!(without.target_dim(), 0);
    assert_eq!(with.actions, without.actions);
    assert_eq!(with.log_probs, without.log_probs);
    assert_eq!(with.values, without.values);
    // Other targets in the buffer: the same policy inputs and outputs in the update.
    let mut scrambled = with.clone();
    for v in &mut scrambled.task_targets {
        *v = -*v * 3.0 + 0.7;
    }
    let ((a, ta), (b, tb)) = (batch(&policy, &with), batch(&policy, &scrambled));
    assert_ne!(
        ta.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        tb.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
    let (la, lb) = (
        policy.forward_seq(&a.x, None).unwrap(),
        policy.forward_seq(&b.x, None).unwrap(),
    );
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(flat(&la.logits), flat(&lb.logits));
}

#[test]
fn a_latent_that_does_not_fit_the_task_is_a_clear_error() {
    let policy = Policy::new(&agent(BeliefKind::Point, 2), &Device::Cpu, 1).unwrap();
    let mut trials = VecTrials::new(tasks(), 1, TrialConfig::default(), Split::Train, 5).unwrap();
    let mut ws = RolloutWorkspace::new(&policy, 1).unwrap();
    let mut buffer = RolloutBuffer::new(1, trials.max_trial_len(), 14).with_task_targets(2);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let err = collect_rollout(
        &mut trials,
        &mut ws,
        &policy,
        &mut buffer,
        &mut rng,
        GaeScope::Trial,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            Error::InvalidConfig {
                field: "agent.task_inference.latent",
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("2 (the task has 1 hidden parameters)"),
        "{msg}"
    );
}

#[test]
fn the_loss_equals_a_direct_computation_and_its_gradient_the_closed_form() {
    let policy = Policy::new(&agent(BeliefKind::Gaussian, 1), &Device::Cpu, 4).unwrap();
    let (buffer, trials) = rollout(&policy, true);
    let (b, targets) = batch(&policy, &buffer);
    let out = policy.forward_seq(&b.x, None).unwrap();
    let belief = flatten_belief(out.belief.as_ref().unwrap()).unwrap();
    let mu = belief.mean.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let lv = belief.log_var.clone().unwrap();
    let lv = lv.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    // Direct: ½ [ln 2π + log σ² + (φ − μ)²/σ²] averaged over the valid steps, in f64.
    let (mut sum, mut n_valid) = (0.0f64, 0usize);
    let (mut d_mu, mut d_lv) = (0.0f64, 0.0f64);
    for trial in 0..N_ENVS {
        let phi = f64::from(true_phi(&trials, trial));
        for t in 0..buffer.len() {
            if !buffer.valid[buffer.index(trial, t)] {
                continue;
            }
            let i = trial * buffer.len() + t;
            let (m, l) = (f64::from(mu[i]), f64::from(lv[i]));
            let sq = (phi - m).powi(2);
            sum += 0.5 * ((2.0 * std::f64::consts::PI).ln() + l + sq / l.exp());
            d_mu += (m - phi) / l.exp();
            d_lv += 0.5 * (1.0 - sq / l.exp());
            n_valid += 1;
        }
    }
    let direct = sum / n_valid as f64;
    let loss = belief_loss(&belief, &targets, b.targets.mask.as_ref()).unwrap();
    let value = f64::from(loss.to_scalar::<f32>().unwrap());
    assert!(
        (value - direct).abs() < 1e-5 * direct.abs().max(1.0),
        "{value} vs {direct}"
    );

    // ∂L/∂(belief_head.bias) is the mean of ∂ℓ/∂μ and ∂ℓ/∂log σ² over the valid steps.
    let grads = loss.backward().unwrap();
    let params = policy.parameters();
    let var = |name: &str| params.iter().find(|(n, _)| *n == name).unwrap().1.clone();
    let g_bias = grads.get(&var("belief_head.bias")).unwrap();
    let g_bias = g_bias.to_vec1::<f32>().unwrap();
    let n = n_valid as f64;
    assert!(
        (f64::from(g_bias[0]) - d_mu / n).abs() < 1e-4,
        "{g_bias:?} vs {}",
        d_mu / n
    );
    assert!(
        (f64::from(g_bias[1]) - d_lv / n).abs() < 1e-4,
        "{g_bias:?} vs {}",
        d_lv / n
    );
    // The policy and value heads get no gradient from the belief loss.
    assert!(grads.get(&var("policy_head.weight")).is_none());

    // A weight of the context encoder, by central finite differences (f32 forward).
    let w = var("encoder.0.weight");
    let g_w = grads
        .get(&w)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let original = w
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let eval = |delta: f32, k: usize| -> f64 {
        let mut values = original.clone();
        values[k] += delta;
        w.set(&Tensor::from_vec(values, w.dims(), &Device::Cpu).unwrap())
            .unwrap();
        let out = policy.forward_seq(&b.x, None).unwrap();
        let belief = flatten_belief(out.belief.as_ref().unwrap()).unwrap();
        let l = belief_loss(&belief, &targets, b.targets.mask.as_ref()).unwrap();
        f64::from(l.to_scalar::<f32>().unwrap())
    };
    let k = (0..g_w.len())
        .max_by(|&a, &b| g_w[a].abs().total_cmp(&g_w[b].abs()))
        .unwrap();
    let eps = 1e-2;
    let fd = (eval(eps, k) - eval(-eps, k)) / (2.0 * f64::from(eps));
    let analytic = f64::from(g_w[k]);
    assert!(
        analytic.abs() > 1e-3,
        "a weight the loss reaches: {analytic}"
    );
    assert!(
        (fd - analytic).abs() < 0.02 * analytic.abs(),
        "fd {fd} vs autograd {analytic}"
    );
}

fn learner(coef: f64, seed: u64) -> Learner {
    let policy = Policy::new(&agent(BeliefKind::Gaussian, 1), &Device::Cpu, seed).unwrap();
    let ppo = PpoConfig {
        belief_coef: coef,
        ..Default::default()
    };
    Learner::new(policy, ppo, Default::default()).unwrap()
}

#[test]
fn coefficient_zero_is_the_plain_ppo_update() {
    let probe = Policy::new(&agent(BeliefKind::Gaussian, 1), &Device::Cpu, 6).unwrap();
    let (buffer, _) = rollout(&probe, true);
    let (b, targets) = batch(&probe, &buffer);
    let (mut plain, mut zero, mut one) = (learner(0.0, 6), learner(0.0, 6), learner(1.0, 6));
    let lr = 1e-3;
    let task = AuxTargets::Task(targets);
    let p = plain.gradient_step(&b.x, &b.targets, lr).unwrap();
    let z = zero
        .gradient_step_with_belief(&b.x, &b.targets, Some(&task), lr)
        .unwrap();
    let o = one
        .gradient_step_with_belief(&b.x, &b.targets, Some(&task), lr)
        .unwrap();
    assert!(p.belief_loss.is_none());
    assert_eq!(z.belief_loss, o.belief_loss);
    assert!(z.belief_loss.unwrap().is_finite());
    assert_eq!(p.loss, z.loss);
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for ((name, a), c) in plain
        .param_names()
        .iter()
        .zip(&p.clipped_grads)
        .zip(&z.clipped_grads)
    {
        assert_eq!(flat(a), flat(c), "{name}");
    }
    let after = |l: &Learner| l.policy().tensors();
    let (pa, za, oa) = (after(&plain), after(&zero), after(&one));
    for name in mrl_agent::TASK_INFERENCE_PARAM_NAMES {
        assert_eq!(flat(&pa[name]), flat(&za[name]), "{name}");
    }
    // With weight 1 the belief head moves differently.
    assert_ne!(flat(&pa["belief_head.bias"]), flat(&oa["belief_head.bias"]));
}

fn task_inference_config(kind: TaskKind, latent: usize, episodes: usize) -> TrainConfig {
    TrainConfig {
        seed: 3,
        iterations: 2,
        n_envs: 4,
        checkpoint_every: 2,
        agent: AgentSection {
            kind: PolicyKind::TaskInference,
            hidden: 8,
            task_inference: TaskInferenceConfig {
                latent,
                ..Default::default()
            },
            ..Default::default()
        },
        ppo: PpoConfig {
            epochs: 2,
            minibatch_trials: 2,
            ..Default::default()
        },
        task: TaskSection {
            kind,
            episodes_per_trial: episodes,
            trading: TradingConfig {
                max_steps: 12,
                ..Default::default()
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

#[test]
fn trains_end_to_end_on_ar1_and_reloads_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let kind = TaskKind::SyntheticAr1 {
        bars: 120,
        family: Ar1Family::default(),
    };
    let config = task_inference_config(kind, 1, 2);
    let text = config.to_toml();
    assert!(text.contains("kind = \"task_inference\""), "{text}");
    assert_eq!(
        TrainConfig::from_toml_str(&text, std::path::Path::new("config.toml")).unwrap(),
        config
    );
    let mut trainer = Trainer::new(config.clone(), tasks_for(&config), dir.path()).unwrap();
    let mut seen = Vec::new();
    trainer.run(|s| seen.push(s.clone())).unwrap();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        let b = s.belief_loss.expect("a belief loss every iteration");
        assert!(b.is_finite() && s.policy_loss.is_finite() && s.value_loss.is_finite());
    }
    let loaded = mrl_ppo::load_policy(&dir.path().join(CHECKPOINT_DIR), &Device::Cpu).unwrap();
    assert_eq!(loaded.kind(), PolicyKind::TaskInference);
    let x = Tensor::ones(
        (2, 5, loaded.config().input_dim()),
        candle_core::DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let (a, b) = (
        trainer.policy().forward_seq(&x, None).unwrap(),
        loaded.forward_seq(&x, None).unwrap(),
    );
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(flat(&a.logits), flat(&b.logits));
    assert_eq!(flat(&a.values), flat(&b.values));
    assert_eq!(flat(&a.belief.unwrap().mean), flat(&b.belief.unwrap().mean));
}

fn tasks_for(config: &TrainConfig) -> Arc<mrl_env::DynTasks> {
    Arc::new(mrl_ppo::trading_tasks(&config.task.kind, &config.task.trading).unwrap())
}

#[test]
fn trains_on_bandits_with_the_arm_means_as_targets() {
    let dir = tempfile::tempdir().unwrap();
    let kind = TaskKind::Bandits {
        arms: 3,
        pulls: 5,
        observe_time: false,
    };
    let config = task_inference_config(kind, 3, 1);
    let mut seen = Vec::new();
    mrl_ppo::train(&config, dir.path(), false, |s| seen.push(s.clone())).unwrap();
    assert!(
        seen.iter()
            .all(|s| s.belief_loss.is_some_and(f64::is_finite))
    );
    // The evaluation plays the checkpoint like any other kind.
    let eval = mrl_ppo::evaluate_bandits(dir.path(), 3, 5, 20, 9).unwrap();
    assert!(eval.agent_greedy.mean >= 0.0 && eval.agent_greedy.mean <= 5.0);
    assert_eq!(eval.agent_sampled.name, "task_inference (sampled)");
    // A latent that is not the number of arms names the field.
    let bad = task_inference_config(
        TaskKind::Bandits {
            arms: 3,
            pulls: 5,
            observe_time: false,
        },
        2,
        1,
    );
    let other = tempfile::tempdir().unwrap();
    assert!(matches!(
        mrl_ppo::train(&bad, other.path(), false, |_| {}),
        Err(Error::InvalidConfig {
            field: "agent.task_inference.latent",
            ..
        })
    ));
}

#[test]
fn a_belief_trace_covers_the_trial_and_knows_the_truth() {
    let policy = Policy::new(&agent(BeliefKind::Gaussian, 1), &Device::Cpu, 2).unwrap();
    let dist = tasks();
    let task = dist.task(SyntheticTasks::split_seed(
        Split::Test,
        &mut ChaCha8Rng::seed_from_u64(1),
    ));
    let task = task.unwrap();
    let phi = match &task.task_info().kind {
        EnvTaskKind::Synthetic {
            process: mrl_data::MarketProcess::Ar1(p),
            ..
        } => p.phi as f32,
        other => panic!("{other:?}"),
    };
    let config = TrialConfig {
        episodes_per_trial: 3,
        ..Default::default()
    };
    let trace = |task| {
        let mut trial =
            mrl_env::Trial::new(task, config.clone(), ChaCha8Rng::seed_from_u64(4)).unwrap();
        mrl_ppo::trace_belief(&policy, &mut trial).unwrap()
    };
    let a = trace(task.clone());
    assert_eq!(a.len(), 3 * 12);
    assert_eq!(a.truth, vec![phi]);
    assert_eq!(
        (
            a.episode_end(0),
            a.episode_end(1),
            a.episode_end(2),
            a.episode_end(3)
        ),
        (Some(11), Some(23), Some(35), None)
    );
    assert_eq!(a.mean.len(), 36);
    let log_var = a.log_var.clone().unwrap();
    assert!(log_var.iter().chain(&a.mean).all(|v| v.is_finite()));
    // Greedy and seeded: the same trace again.
    assert_eq!(trace(task), a);
    // An MLP has no belief: a clear error.
    let mlp = Policy::new(
        &AgentConfig {
            kind: PolicyKind::Mlp,
            obs_dim: 14,
            hidden: 8,
            ..Default::default()
        },
        &Device::Cpu,
        0,
    )
    .unwrap();
    let mut trial =
        mrl_env::Trial::new(dist.task(7).unwrap(), config, ChaCha8Rng::seed_from_u64(4)).unwrap();
    assert!(matches!(
        mrl_ppo::trace_belief(&mlp, &mut trial),
        Err(Error::InvalidConfig {
            field: "agent.kind",
            ..
        })
    ));
}

#[test]
fn shipped_belief_configs_train_like_the_rl2_configs_they_copy() {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs"));
    let load = |name: &str| TrainConfig::load(&dir.join(name)).unwrap();
    for (belief, rl2, latent) in [
        ("synthetic-ar1-belief.toml", "synthetic-ar1.toml", 1),
        ("bandits-k5-n10-belief.toml", "bandits-k5-n10.toml", 5),
    ] {
        let (b, r) = (load(belief), load(rl2));
        assert_eq!(b.agent.kind, PolicyKind::TaskInference, "{belief}");
        assert_eq!(b.agent.task_inference.latent, latent, "{belief}");
        assert_eq!(
            b.agent.task_inference.belief,
            BeliefKind::Gaussian,
            "{belief}"
        );
        assert_eq!(b.ppo.belief_coef, 1.0, "{belief}");
        // Everything else is the RL² config's.
        let as_rl2 = TrainConfig {
            agent: r.agent.clone(),
            ..b.clone()
        };
        assert_eq!(as_rl2, r, "{belief} differs from {rl2} beyond [agent]");
        assert_eq!(b.agent.hidden, r.agent.hidden);
    }
    // The k = 5, n = 100 comparison: the Transformer comparison's budget, task and PPO, with
    // RL²'s width and step size.
    let b = load("bandits-k5-n100-belief.toml");
    let t = load("bandits-k5-n100-transformer.toml");
    let r = load("bandits-k5-n100.toml");
    assert_eq!(b.agent.kind, PolicyKind::TaskInference);
    assert_eq!(b.agent.task_inference.latent, 5);
    assert_eq!(b.ppo.belief_coef, 1.0);
    assert_eq!((b.agent.hidden, &b.optim), (r.agent.hidden, &r.optim));
    let as_transformer = TrainConfig {
        agent: t.agent.clone(),
        optim: t.optim,
        ..b.clone()
    };
    assert_eq!(
        as_transformer, t,
        "the n = 100 belief config differs beyond [agent], [optim]"
    );
    // Real crypto: the RL² config's everything, the belief trained by reward reconstruction.
    let b = load("crypto-multi-asset-belief.toml");
    let r = load("crypto-multi-asset.toml");
    assert_eq!(b.agent.kind, PolicyKind::TaskInference);
    assert_eq!(b.agent.task_inference.target, BeliefTarget::Reward);
    assert_eq!((b.agent.hidden, b.ppo.belief_coef), (r.agent.hidden, 1.0));
    let as_rl2 = TrainConfig {
        agent: r.agent.clone(),
        ppo: PpoConfig {
            belief_coef: r.ppo.belief_coef,
            ..b.ppo.clone()
        },
        ..b.clone()
    };
    assert_eq!(
        as_rl2, r,
        "the crypto belief config differs beyond [agent], belief_coef"
    );
}

fn reward_agent() -> AgentConfig {
    AgentConfig {
        task_inference: TaskInferenceConfig {
            belief: BeliefKind::Gaussian,
            latent: 2,
            target: BeliefTarget::Reward,
            ..Default::default()
        },
        ..agent(BeliefKind::Gaussian, 2)
    }
}

#[test]
fn the_reconstruction_loss_equals_a_direct_computation() {
    let policy = Policy::new(&reward_agent(), &Device::Cpu, 8).unwrap();
    // Reconstruction needs no task targets: a rollout without them.
    let (buffer, _) = rollout(&policy, false);
    let (b, _) = batch(&policy, &buffer);
    let trials: Vec<usize> = (0..N_ENVS).collect();
    let scale = 2.5;
    let aux = reward_targets(&buffer, &trials, 3, scale, &Device::Cpu).unwrap();
    let AuxTargets::Reward {
        actions_one_hot,
        rewards,
    } = &aux
    else {
        panic!("reward targets")
    };
    assert_eq!(actions_one_hot.dims(), &[N_ENVS, buffer.len(), 3]);
    let out = policy.forward_seq(&b.x, None).unwrap();
    let predicted = policy
        .reconstruct_rewards(&b.x, out.belief.as_ref().unwrap(), actions_one_hot)
        .unwrap()
        .flatten_all()
        .unwrap();
    let r_hat = predicted.to_vec1::<f32>().unwrap();
    // Direct: mean over valid steps of (r̂ − scale · r)², the action one-hot from the buffer.
    let one_hot = actions_one_hot
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let (mut sum, mut d_bias, mut n) = (0.0f64, 0.0f64, 0.0f64);
    for trial in 0..N_ENVS {
        for t in 0..buffer.len() {
            let i = buffer.index(trial, t);
            let row = trial * buffer.len() + t;
            assert_eq!(one_hot[row * 3 + buffer.actions[i] as usize], 1.0);
            if buffer.valid[i] {
                let err = f64::from(r_hat[row]) - scale * f64::from(buffer.rewards[i]);
                sum += err * err;
                d_bias += 2.0 * err;
                n += 1.0;
            }
        }
    }
    let loss = mrl_ppo::reconstruction_loss(&predicted, rewards, b.targets.mask.as_ref()).unwrap();
    let value = f64::from(loss.to_scalar::<f32>().unwrap());
    assert!(
        (value - sum / n).abs() < 1e-5 * (sum / n).max(1.0),
        "{value} vs {}",
        sum / n
    );
    // ∂L/∂(decoder.2.bias) = mean of 2 (r̂ − r).
    let grads = loss.backward().unwrap();
    let params = policy.parameters();
    let bias = &params
        .iter()
        .find(|(n, _)| *n == "decoder.2.bias")
        .unwrap()
        .1;
    let g = grads.get(bias).unwrap().to_vec1::<f32>().unwrap()[0];
    assert!(
        (f64::from(g) - d_bias / n).abs() < 1e-4,
        "{g} vs {}",
        d_bias / n
    );
    // The learner's step reports the same loss (scale 1: no reward scale, no normalisation).
    let aux = reward_targets(&buffer, &trials, 3, 1.0, &Device::Cpu).unwrap();
    let AuxTargets::Reward { rewards, .. } = &aux else {
        panic!()
    };
    let direct = mrl_ppo::reconstruction_loss(&predicted, rewards, b.targets.mask.as_ref())
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let mut learner = Learner::new(policy, PpoConfig::default(), Default::default()).unwrap();
    let report = learner
        .gradient_step_with_belief(&b.x, &b.targets, Some(&aux), 1e-3)
        .unwrap();
    assert!((report.belief_loss.unwrap() - f64::from(direct)).abs() < 1e-6);
}

#[test]
fn reconstruction_trains_end_to_end_where_the_task_is_unknown() {
    // Domain-randomised markets do not expose one parameter vector: the reward objective.
    let dir = tempfile::tempdir().unwrap();
    let kind = TaskKind::Synthetic {
        bars: 120,
        randomization: Default::default(),
    };
    let mut config = task_inference_config(kind, 2, 2);
    config.agent.task_inference.target = BeliefTarget::Reward;
    let text = config.to_toml();
    assert!(text.contains("target = \"reward\""), "{text}");
    let mut seen = Vec::new();
    mrl_ppo::train(&config, dir.path(), false, |s| seen.push(s.clone())).unwrap();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter()
            .all(|s| s.belief_loss.is_some_and(f64::is_finite))
    );
    let policy = mrl_ppo::load_policy(&dir.path().join(CHECKPOINT_DIR), &Device::Cpu).unwrap();
    let names: Vec<&str> = policy.parameters().iter().map(|(n, _)| *n).collect();
    assert_eq!(&names[16..], &mrl_agent::DECODER_PARAM_NAMES);
}

#[test]
fn regime_targets_follow_the_state_of_the_current_bar() {
    use mrl_data::{DomainRandomization, MarketProcess, ProcessKind};
    use mrl_env::Env;
    let randomization = DomainRandomization {
        kinds: vec![ProcessKind::Regime],
        ..Default::default()
    };
    let trading = TradingConfig {
        max_steps: 150,
        ..Default::default()
    };
    let bars = trading.min_bars() + 300;
    let dist =
        SyntheticTasks::new(ProcessSource::Randomized(randomization), bars, trading).unwrap();
    let mut env = dist.task(11).unwrap();
    let (params, states) = match &env.task_info().kind {
        EnvTaskKind::Synthetic {
            process: MarketProcess::Regime(p),
            regimes: Some(states),
            ..
        } => (p.clone(), states.clone()),
        other => panic!("{other:?}"),
    };
    env.reset(&mut ChaCha8Rng::seed_from_u64(2)).unwrap();
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for step in 0..150 {
        env.task_parameters(&mut out);
        let state = &params.states[states[env.trading().bar()]];
        let expected = [
            (state.drift * 1e4) as f32,
            (state.volatility * 100.0) as f32,
        ];
        assert_eq!(out, expected, "step {step}");
        seen.insert(states[env.trading().bar()]);
        if env.step(2).unwrap().done() {
            break;
        }
    }
    assert!(!seen.is_empty());
}
