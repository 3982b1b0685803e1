//! Reptile and first-order MAML: the issue's checks on one task, and meta-training end to
//! end into a checkpoint `mrl backtest` can load.

use std::path::Path;

use mrl_agent::PolicyKind;
use mrl_fewshot::{
    Error, InnerConfig, InnerOptimizer, MetaAlgorithm, MetaTrainConfig, TaskRollouts, TaskSeeds,
    adapt, fomaml_gradient, fomaml_task_gradient, reptile_step, return_scale_of,
};
use mrl_ppo::{clip_grad_norm, ppo_gradients};

use crate::common::{flat, policy, setup, task};

fn sgd(steps: usize) -> InnerConfig {
    InnerConfig {
        steps,
        n_envs: 4,
        lr: 0.05,
        optimizer: InnerOptimizer::Sgd,
        ..Default::default()
    }
}

#[test]
fn reptile_with_one_task_and_one_step_is_that_step_scaled_by_the_outer_rate() {
    let base = policy(PolicyKind::Rl2, 1);
    let before = flat(&base);
    let setup = setup(0.5);
    let inner = sgd(1);
    let (seed, eps) = (21, 0.3);
    // The inner step by hand: the first rollout of the task, its PPO gradient, clipped.
    let seeds = TaskSeeds::new(seed);
    let task = task(6);
    let mut rollouts = TaskRollouts::new(
        task.clone(),
        &base,
        4,
        setup.trial.clone(),
        seeds.trials,
        seeds.sampling,
    )
    .unwrap();
    let (_, batch) = rollouts.collect(&base, &setup).unwrap();
    let g = ppo_gradients(&base, &batch, &setup.ppo.loss()).unwrap();
    let mut grads: Vec<_> = g.grads.into_iter().map(|(_, t)| t).collect();
    let norm = clip_grad_norm(&mut grads, setup.ppo.max_grad_norm).unwrap();
    assert!(norm > 0.0);
    let (pre, post, update_norm) =
        reptile_step(&base, &[task], &[seed], &inner, &setup, eps).unwrap();
    assert_eq!(pre, post, "one step: the first rollout is the last");
    let after = flat(&base);
    let mut moved = 0.0f64;
    for ((b, a), g) in before.iter().zip(&after).zip(&grads) {
        let g = g.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for ((b, a), g) in b.iter().zip(a).zip(&g) {
            // θ_new = θ + ε(θ' − θ) = θ − ε·α·g
            let expected = b - (eps * inner.lr) as f32 * g;
            assert!(
                (a - expected).abs() <= 1e-6 + 1e-5 * expected.abs(),
                "{a} vs {expected}"
            );
            moved += f64::from(a - b).powi(2);
        }
    }
    // The step is clipped to norm 0.5 when larger: ‖Δθ‖ = ε·α·min(‖g‖, 0.5).
    let expected_norm = eps * inner.lr * norm.min(0.5);
    assert!((update_norm - expected_norm).abs() < 1e-4 * expected_norm);
    assert!((moved.sqrt() - expected_norm).abs() < 1e-3 * expected_norm);
}

#[test]
fn fomaml_meta_gradient_is_the_post_adaptation_gradient() {
    let base = policy(PolicyKind::Rl2, 2);
    let setup = setup(1e9);
    let inner = sgd(2);
    let seed = 8;
    let (meta, _, query_return) =
        fomaml_gradient(&base, &[task(7)], &[seed], &inner, &setup).unwrap();
    // By hand: adapt with the same seed, then the query rollout of the adapted policy.
    let adapted = adapt(&base, task(7), &inner, &setup, seed).unwrap();
    let seeds = TaskSeeds::new(seed);
    let mut query = TaskRollouts::new(
        task(7),
        &adapted.policy,
        4,
        setup.trial.clone(),
        seeds.query_trials,
        seeds.query_sampling,
    )
    .unwrap();
    let (stats, batch) = query.collect(&adapted.policy, &setup).unwrap();
    assert_eq!(stats.mean_trial_return, query_return);
    let at_adapted = ppo_gradients(&adapted.policy, &batch, &setup.ppo.loss()).unwrap();
    let at_base = ppo_gradients(&base, &batch, &setup.ppo.loss()).unwrap();
    let vecs = |v: &[candle_core::Tensor]| -> Vec<f32> {
        v.iter()
            .flat_map(|t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
            .collect()
    };
    let meta_flat = vecs(&meta);
    let adapted_flat = vecs(
        &at_adapted
            .grads
            .iter()
            .map(|(_, t)| t.clone())
            .collect::<Vec<_>>(),
    );
    let base_flat = vecs(
        &at_base
            .grads
            .iter()
            .map(|(_, t)| t.clone())
            .collect::<Vec<_>>(),
    );
    assert_eq!(meta_flat, adapted_flat);
    // It is the gradient at θ', not at θ.
    let diff: f32 = meta_flat
        .iter()
        .zip(&base_flat)
        .map(|(a, b)| (a - b).abs())
        .sum();
    assert!(diff > 1e-4, "{diff}");
    // And it is the derivative of the query loss at θ': a central difference along it.
    let norm2: f64 = meta_flat.iter().map(|g| f64::from(*g).powi(2)).sum();
    let eps = 1e-3 / norm2.sqrt();
    let loss_at = |sign: f64| {
        let p = mrl_fewshot::detached_copy(&adapted.policy).unwrap();
        for ((_, v), g) in p.parameters().iter().zip(&meta) {
            v.set(&(v.as_tensor() + (g * (sign * eps)).unwrap()).unwrap())
                .unwrap();
        }
        ppo_gradients(&p, &batch, &setup.ppo.loss())
            .unwrap()
            .loss
            .total
    };
    let fd = (loss_at(1.0) - loss_at(-1.0)) / (2.0 * eps);
    assert!(
        (fd - norm2).abs() < 0.02 * norm2,
        "finite difference {fd}, ‖g‖² {norm2}"
    );
    // One task's gradient equals the mean over one task.
    let single = fomaml_task_gradient(&base, task(7), &inner, &setup, seed).unwrap();
    assert_eq!(
        vecs(
            &single
                .gradients
                .grads
                .into_iter()
                .map(|(_, t)| t)
                .collect::<Vec<_>>()
        ),
        meta_flat
    );
}

#[test]
fn a_batch_needs_one_seed_per_task() {
    let base = policy(PolicyKind::Mlp, 0);
    assert!(matches!(
        reptile_step(&base, &[task(0)], &[1, 2], &sgd(1), &setup(0.5), 0.1),
        Err(Error::InvalidConfig { field: "tasks", .. })
    ));
}

fn shipped(name: &str) -> MetaTrainConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../configs")
        .join(name);
    MetaTrainConfig::load(&path).unwrap()
}

#[test]
fn shipped_configs_parse_and_a_plain_train_config_is_refused() {
    let reptile = shipped("fewshot-reptile-ar1.toml");
    assert_eq!(reptile.meta.algorithm, MetaAlgorithm::Reptile);
    assert_eq!(reptile.train.task.trading.max_steps, 200);
    let fomaml = shipped("fewshot-fomaml-ar1.toml");
    assert_eq!(fomaml.meta.algorithm, MetaAlgorithm::Fomaml);
    let adapters = shipped("fewshot-reptile-lora-ar1.toml");
    assert_eq!(
        adapters.meta.inner.adapter.as_ref().map(|a| a.rank),
        Some(4)
    );
    let bench = mrl_fewshot::BenchmarkConfig::default();
    let classes = shipped("fewshot-bench-classes-ar1.toml");
    let widths: Vec<usize> = classes.classes.values().map(|c| c.features.len()).collect();
    assert_eq!(widths, [5, 11]);
    assert_eq!(
        mrl_fewshot::held_out_class(&classes, &bench).unwrap(),
        "narrow"
    );
    let real = shipped("fewshot-bench-classes-crypto-equities.toml");
    let widths: Vec<usize> = real.classes.values().map(|c| c.features.len()).collect();
    assert_eq!(widths, [11, 6]);
    assert_eq!(
        mrl_fewshot::held_out_class(&real, &bench).unwrap(),
        "crypto"
    );
    let plain = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/quickstart.toml");
    match MetaTrainConfig::load(&plain) {
        Err(Error::Toml { source, .. }) => assert!(source.to_string().contains("[meta]")),
        other => panic!("expected a missing [meta] table, got {other:?}"),
    }
    let typo = "seed = 1\n[meta]\nalgorithm = \"maml\"\n";
    assert!(matches!(
        MetaTrainConfig::from_toml_str(typo, Path::new("x.toml")),
        Err(Error::Toml { .. })
    ));
}

#[test]
fn meta_training_writes_a_loadable_checkpoint_deterministically() {
    let mut config = resumable("fomaml", 2);
    config.train.seed = 3;
    config.meta.checkpoint_every = 1;

    let run = |dir: &Path| {
        let mut seen = Vec::new();
        let summary = mrl_fewshot::meta_train(&config, dir, |s| seen.push(s.iteration)).unwrap();
        assert_eq!(seen, [0, 1]);
        assert_eq!(summary.iterations, 2);
        std::fs::read(dir.join("checkpoint/model.safetensors")).unwrap()
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    assert_eq!(run(a.path()), run(b.path()));
    let policy =
        mrl_ppo::load_policy(&a.path().join("checkpoint"), &candle_core::Device::Cpu).unwrap();
    assert!(
        policy.config().input_norm.is_some(),
        "fixed input statistics travel"
    );
    let train = mrl_ppo::TrainConfig::load(&a.path().join("config.toml")).unwrap();
    assert_eq!(train.seed, 3);
    let scale = return_scale_of(&a.path().join("checkpoint"), &train).unwrap();
    assert!(scale.is_finite() && scale > 0.0 && scale != 1.0, "{scale}");
    assert_eq!(
        std::fs::read_to_string(a.path().join("meta_log.jsonl"))
            .unwrap()
            .lines()
            .count(),
        2
    );
    // A second run into the same directory is refused.
    assert!(matches!(
        mrl_fewshot::meta_train(&config, a.path(), |_| {}),
        Err(Error::InvalidConfig { field: "out", .. })
    ));
}

/// A tiny meta-training config of `algorithm` (RL² of width 8, 20-step AR(1) episodes, 2
/// tasks × 1 inner step per iteration), a checkpoint every 2 iterations.
fn resumable(algorithm: &str, iterations: u64) -> MetaTrainConfig {
    let text = resumable_text(algorithm, iterations);
    MetaTrainConfig::from_toml_str(&text, Path::new("t.toml")).unwrap()
}

/// The TOML of [`resumable`].
pub(crate) fn resumable_text(algorithm: &str, iterations: u64) -> String {
    format!(
        r#"
seed = 5
n_envs = 4
[agent]
kind = "rl2"
hidden = 8
[task]
kind = "synthetic-ar1"
bars = 80
episodes_per_trial = 1
trading = {{ max_steps = 20, reward_scale = 100.0 }}
[normalize]
inputs = "fixed"
returns = true
[meta]
algorithm = "{algorithm}"
iterations = {iterations}
meta_batch = 2
checkpoint_every = 2
[meta.inner]
steps = 1
n_envs = 2
"#
    )
}

/// The checkpoint's files, and the log's (pre, post, update norm) without its wall-clock
/// seconds.
type Outcome = (Vec<Vec<u8>>, Vec<(f64, f64, f64)>);

/// The [`Outcome`] of the run in `dir`.
fn outcome(dir: &Path) -> Outcome {
    let files = ["model.safetensors", "agent.json", "fewshot.json"]
        .iter()
        .map(|f| std::fs::read(dir.join("checkpoint").join(f)).unwrap())
        .chain(std::fs::read(dir.join("checkpoint/optimizer.safetensors")).ok())
        .collect();
    let log = std::fs::read_to_string(dir.join("meta_log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let s: mrl_fewshot::MetaIterationStats = serde_json::from_str(l).unwrap();
            (s.pre_return, s.post_return, s.update_norm)
        })
        .collect();
    (files, log)
}

#[test]
fn resumed_meta_training_ends_with_the_bytes_of_an_uninterrupted_run() {
    for algorithm in ["fomaml", "reptile"] {
        let whole = tempfile::tempdir().unwrap();
        mrl_fewshot::meta_train(&resumable(algorithm, 4), whole.path(), |_| {}).unwrap();
        let parts = tempfile::tempdir().unwrap();
        mrl_fewshot::meta_train(&resumable(algorithm, 2), parts.path(), |_| {}).unwrap();
        // A crash after a third iteration was logged but before its checkpoint.
        let log = parts.path().join("meta_log.jsonl");
        let mut text = std::fs::read_to_string(&log).unwrap();
        let first = text.lines().next().unwrap().to_owned();
        text.push_str(&first);
        text.push('\n');
        std::fs::write(&log, text).unwrap();
        let mut seen = Vec::new();
        let summary = mrl_fewshot::meta_train_resume(&resumable(algorithm, 4), parts.path(), |s| {
            seen.push(s.iteration)
        })
        .unwrap();
        assert_eq!(
            seen,
            [2, 3],
            "{algorithm}: the run continues at iteration 2"
        );
        assert_eq!(summary.iterations, 4);
        let (a, b) = (outcome(whole.path()), outcome(parts.path()));
        assert_eq!(a.0.len(), if algorithm == "fomaml" { 4 } else { 3 });
        assert!(a.0 == b.0, "{algorithm}: checkpoint files differ");
        assert_eq!(a.1.len(), 4);
        assert_eq!(a.1, b.1, "{algorithm}: the log's values identical");
    }
}

#[test]
fn resume_names_what_is_missing_or_different() {
    let empty = tempfile::tempdir().unwrap();
    let err =
        mrl_fewshot::meta_train_resume(&resumable("reptile", 2), empty.path(), |_| {}).unwrap_err();
    assert!(matches!(err, Error::NothingToResume { .. }));
    assert!(
        err.to_string().ends_with(
            "holds no meta-training checkpoint to resume; drop --resume to start a new run there"
        ),
        "{err}"
    );
    let run = tempfile::tempdir().unwrap();
    mrl_fewshot::meta_train(&resumable("reptile", 2), run.path(), |_| {}).unwrap();
    let mut other = resumable("reptile", 4);
    other.meta.meta_batch = 3;
    assert!(matches!(
        mrl_fewshot::meta_train_resume(&other, run.path(), |_| {}),
        Err(Error::InvalidConfig {
            field: "config",
            ..
        })
    ));
    let err =
        mrl_fewshot::meta_train_resume(&resumable("reptile", 1), run.path(), |_| {}).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid config: meta.iterations = 1 (below the iterations the checkpoint holds already)"
    );
}
