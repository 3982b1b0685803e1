//! The causal Transformer and the task-inference agent beside the RL² GRU at the same width
//! (H = 128), on the CPU.
//!
//! Group `rollout_step/cpu`: one [`RolloutWorkspace::step`] for `B` trials (input rows,
//! network, softmax, sampling). The GRU runs its fused step; the Transformer (2 blocks,
//! 4 heads, context 256) its KV-cache step with the cache already full, so every timed
//! step attends over 256 cached steps per layer and head (the steady state of a long
//! trial); `transformer_ctx1024` is the same network with a context of 1024 steps and a full
//! cache (the long-context case). The task-inference agent (GRU context encoder, Gaussian belief of one parameter,
//! two-layer body) steps on candle tensors. Throughput is `Elements(B)`: env-steps per
//! second.
//!
//! Group `update/cpu`: one forward and backward pass of a `(B, T)` batch of whole trials,
//! `B = 8`, `T = 100, 200, 600`
//! (what a PPO minibatch costs before the optimiser): the GRU's fused training op
//! ([`Policy::forward_seq_train`]) against the Transformer's candle-autograd forward and the
//! task-inference agent's (fused GRU op, candle autograd for the belief, body and heads).
//! Throughput is `Elements(B · T)`.
//!
//! `cargo bench -p mrl-agent --bench policy_kinds -- --quick` for a short run.

use std::time::Duration;

use candle_core::{Device, Tensor};
use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
};
use mrl_agent::{AgentConfig, Policy, PolicyInputs, PolicyKind, RolloutWorkspace};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Trials per rollout step.
const BATCHES: [usize; 3] = [1, 16, 256];

/// The long-context case: a Transformer attending over this many cached steps.
const LONG_CONTEXT: usize = 1024;

/// Trials per rollout step in the long-context case.
const LONG_BATCHES: [usize; 2] = [16, 256];

/// Trial lengths of the update group: a bandit trial of n = 100 and an AR(1) trial of three
/// 200-bar episodes (longer than the default context of 256: the window slides).
const SEQ_LENS: [usize; 3] = [100, 200, 600];

/// The policies compared, at the default width.
fn policies() -> Vec<(&'static str, Policy)> {
    [
        PolicyKind::Rl2,
        PolicyKind::Transformer,
        PolicyKind::TaskInference,
    ]
    .into_iter()
    .map(|kind| {
        let config = AgentConfig {
            kind,
            ..Default::default()
        };
        let name = match kind {
            PolicyKind::Rl2 => "gru",
            other => other.as_str(),
        };
        (name, Policy::new(&config, &Device::Cpu, 0).unwrap())
    })
    .collect()
}

/// Uniform `[-1, 1)` values from a seeded stream.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| rng.next_u32() as f32 / u32::MAX as f32 * 2.0 - 1.0)
        .collect()
}

/// The Transformer of [`policies`] with a context of [`LONG_CONTEXT`] steps.
fn long_context_transformer() -> Policy {
    let mut config = AgentConfig {
        kind: PolicyKind::Transformer,
        ..Default::default()
    };
    config.transformer.context = LONG_CONTEXT;
    Policy::new(&config, &Device::Cpu, 0).unwrap()
}

/// Times one rollout step of `policy` for `batch_size` trials after `fill` untimed steps
/// (a full KV cache for the Transformer when `fill` is its context).
fn bench_rollout_step(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: BenchmarkId,
    policy: &Policy,
    batch_size: usize,
    fill: usize,
) {
    let obs = values(batch_size * policy.config().obs_dim, 1);
    let rewards = values(batch_size, 2);
    let mut prev_actions = vec![None; batch_size];
    let dones = vec![false; batch_size];
    let mut ws = RolloutWorkspace::new(policy, batch_size).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut step = |ws: &mut RolloutWorkspace, prev: &mut Vec<Option<usize>>| {
        let inputs = PolicyInputs {
            obs: &obs,
            prev_actions: prev,
            prev_rewards: &rewards,
            prev_dones: &dones,
        };
        let out = ws.step(&inputs, &mut rng).unwrap();
        for (p, &a) in prev.iter_mut().zip(out.actions) {
            *p = Some(a);
        }
    };
    // Filled on the first call only, so that a filtered-out entry costs nothing.
    let mut filled = false;
    group.throughput(Throughput::Elements(batch_size as u64));
    group.bench_function(id, |b| {
        if !filled {
            for _ in 0..fill {
                step(&mut ws, &mut prev_actions);
            }
            filled = true;
        }
        b.iter(|| step(&mut ws, &mut prev_actions))
    });
}

fn rollout_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("rollout_step/cpu");
    group.measurement_time(Duration::from_secs(3));
    for (name, policy) in policies() {
        // Fill the cache (the GRU just runs the same number of steps).
        let context = policy.config().transformer.context;
        for batch_size in BATCHES {
            let id = BenchmarkId::new(name, batch_size);
            bench_rollout_step(&mut group, id, &policy, batch_size, context);
        }
    }
    let policy = long_context_transformer();
    for batch_size in LONG_BATCHES {
        let id = BenchmarkId::new(format!("transformer_ctx{LONG_CONTEXT}"), batch_size);
        bench_rollout_step(&mut group, id, &policy, batch_size, LONG_CONTEXT);
    }
    group.finish();
}

fn update(c: &mut Criterion) {
    let mut group = c.benchmark_group("update/cpu");
    group.measurement_time(Duration::from_secs(3));
    group.sample_size(10);
    let batch_size = 8;
    for (name, policy) in policies() {
        let width = policy.config().input_dim();
        for seq_len in SEQ_LENS {
            let x = Tensor::from_vec(
                values(batch_size * seq_len * width, 4),
                (batch_size, seq_len, width),
                &Device::Cpu,
            )
            .unwrap();
            group.throughput(Throughput::Elements((batch_size * seq_len) as u64));
            group.bench_function(
                BenchmarkId::new(name, format!("B{batch_size}_T{seq_len}")),
                |b| {
                    b.iter(|| {
                        let (logits, values) = policy.forward_seq_train(&x, None).unwrap();
                        let loss = (logits.sqr().unwrap().sum_all().unwrap()
                            + values.sum_all().unwrap())
                        .unwrap();
                        loss.backward().unwrap()
                    });
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, rollout_step, update);
criterion_main!(benches);
