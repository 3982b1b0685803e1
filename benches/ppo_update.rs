//! One PPO gradient step (sequence forward through the RL² agent, clipped loss, backward,
//! global-norm clip, Adam) on B trials of T = 600 steps at H = 128, on the CPU; the same
//! for the MLP baseline (`ppo_update_mlp_…`, its fused op). Throughput is in trial-steps
//! (B·T) per second, the unit of shared/BENCHMARKS.md.

use candle_core::{Device, Tensor};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mrl_agent::{AgentConfig, InputLayout, Policy, PolicyInputs, PolicyKind};
use mrl_ppo::{AdamConfig, Learner, PpoConfig, PpoTargets, log_softmax};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SEQ_LEN: usize = 600;

fn setup(kind: PolicyKind, batch_size: usize) -> anyhow::Result<(Learner, Tensor, PpoTargets)> {
    let config = AgentConfig {
        kind,
        ..AgentConfig::default() // obs 14, 3 actions, H = 128
    };
    let device = Device::Cpu;
    let policy = Policy::new(&config, &device, 0)?;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let n = batch_size * SEQ_LEN;
    let obs: Vec<f32> = (0..n * config.obs_dim)
        .map(|_| rng.random::<f32>() * 2.0 - 1.0)
        .collect();
    let actions: Vec<u32> = (0..n).map(|_| rng.random_range(0..3u32)).collect();
    let prev_actions: Vec<Option<usize>> = (0..n)
        .map(|i| (i % SEQ_LEN != 0).then(|| actions[i - 1] as usize))
        .collect();
    let prev_rewards: Vec<f32> = (0..n).map(|_| rng.random::<f32>() * 0.02 - 0.01).collect();
    let prev_dones: Vec<bool> = (0..n).map(|i| i % SEQ_LEN != 0 && i % 200 == 0).collect();
    let inputs = PolicyInputs {
        obs: &obs,
        prev_actions: &prev_actions,
        prev_rewards: &prev_rewards,
        prev_dones: &prev_dones,
    };
    let x = InputLayout::new(&config).sequence_tensor(&inputs, batch_size, SEQ_LEN, &device)?;
    let actions = Tensor::from_vec(actions, n, &device)?;
    // Old log-probs from the current weights, slightly perturbed so that some ratios clip.
    let out = policy.forward_seq(&x, None)?;
    let log_probs = log_softmax(&out.logits.reshape((n, 3))?)?;
    let old = log_probs
        .gather(&actions.unsqueeze(1)?, 1)?
        .squeeze(1)?
        .detach();
    let noise: Vec<f32> = (0..n).map(|_| rng.random::<f32>() * 0.4 - 0.2).collect();
    let old = (old + Tensor::from_vec(noise, n, &device)?)?;
    let adv: Vec<f32> = (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
    let ret: Vec<f32> = (0..n).map(|_| rng.random::<f32>() * 0.1).collect();
    let targets = PpoTargets {
        actions,
        old_log_probs: old,
        advantages: Tensor::from_vec(adv, n, &device)?,
        returns: Tensor::from_vec(ret, n, &device)?,
        mask: None,
    };
    let learner = Learner::new(policy, PpoConfig::default(), AdamConfig::default())?;
    Ok((learner, x, targets))
}

fn bench_ppo_update(c: &mut Criterion) {
    let kinds = [
        (
            "ppo_update_cpu_t600_h128",
            PolicyKind::Rl2,
            &[1usize, 8, 32][..],
        ),
        (
            "ppo_update_mlp_cpu_t600_h128",
            PolicyKind::Mlp,
            &[8, 32][..],
        ),
    ];
    for (name, kind, batches) in kinds {
        let mut group = c.benchmark_group(name);
        group.sample_size(10);
        for &batch_size in batches {
            // A setup that fails is a broken bench, not a case to skip.
            let (mut learner, x, targets) = setup(kind, batch_size)
                .unwrap_or_else(|e| panic!("{name} setup at B = {batch_size}: {e}"));
            group.throughput(Throughput::Elements((batch_size * SEQ_LEN) as u64));
            group.bench_with_input(
                BenchmarkId::new("b", batch_size),
                &batch_size,
                |bench, _| {
                    // On a worker of a rayon pool, as `mrl`'s commands run.
                    mrl_agent::in_worker_pool(|| {
                        bench.iter(|| {
                            learner
                                .gradient_step(&x, &targets, 3e-4)
                                .map(|r| r.grad_norm)
                                .ok()
                        });
                    })
                    .unwrap_or_else(|e| panic!("thread pool: {e}"));
                },
            );
        }
        group.finish();
    }
}

criterion_group!(benches, bench_ppo_update);
criterion_main!(benches);
