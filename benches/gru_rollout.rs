//! The headline benchmark: env-steps per second of the batched GRU rollout at H = 128.
//!
//! Group `policy_step/cpu` (part a): one full policy step for `B` parallel trials per
//! iteration — build the 19-wide input rows from the observation, previous-action, reward
//! and done buffers, encoder, GRU step, heads, softmax and sampling with a `ChaCha8Rng` —
//! the same work as the PyTorch reference (`reference/bench.py`, part b: observations from
//! a pool of 16 batches, previous action = the sampled one, reward = 0.001·(a − 1)).
//! Throughput is `Elements(B)`, so criterion's elements/s are env-steps/s.
//!
//! The measured loops run on a worker of a rayon pool, as `mrl`'s commands do
//! ([`mrl::agent::in_worker_pool`]).
//!
//! Bench ids: `fused/B` (fused CPU step, all rayon threads), `fused_1thread/B` (one
//! thread), `candle/B` (the plain candle-tensor step on the CPU, same work) — side by side
//! in one run, so the ratios can be quoted.
//!
//! Group `rollout/cpu_trading` (part b): whole RL² trials (3 episodes of 200 bars) for `B`
//! parallel trials through [`mrl::ppo::collect_rollout`] — the vectorised trading env
//! (accounting, features lookup, trial inputs), the fused policy step with sampling, and the
//! rollout buffer writes, exactly what one PPO iteration's rollout does. Throughput is
//! `Elements(B · 600)`: env-steps/s, env included.

use std::time::Duration;

use candle_core::Device;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mrl::agent::{AgentConfig, Policy, PolicyInputs, RolloutOptions, RolloutWorkspace};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Batch sizes of the PyTorch reference.
const BATCHES: [usize; 5] = [1, 16, 64, 256, 1024];
/// Observation batches cycled through, as in the reference.
const POOL: usize = 16;

/// The caller-side buffers of a rollout: an observation pool and the previous
/// action, reward and done of every trial.
struct Feed {
    pool: Vec<Vec<f32>>,
    prev_actions: Vec<Option<usize>>,
    prev_rewards: Vec<f32>,
    prev_dones: Vec<bool>,
    step_idx: usize,
}

impl Feed {
    fn new(config: &AgentConfig, batch_size: usize) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let pool = (0..POOL)
            .map(|_| {
                (0..batch_size * config.obs_dim)
                    .map(|_| rng.next_u32() as f32 / u32::MAX as f32 * 2.0 - 1.0)
                    .collect()
            })
            .collect();
        Self {
            pool,
            prev_actions: vec![None; batch_size],
            prev_rewards: vec![0.0; batch_size],
            prev_dones: vec![false; batch_size],
            step_idx: 0,
        }
    }

    /// One policy step, feeding the sampled actions back.
    fn step(&mut self, ws: &mut RolloutWorkspace, rng: &mut ChaCha8Rng) {
        let inputs = PolicyInputs {
            obs: &self.pool[self.step_idx % POOL],
            prev_actions: &self.prev_actions,
            prev_rewards: &self.prev_rewards,
            prev_dones: &self.prev_dones,
        };
        let out = match ws.step(&inputs, rng) {
            Ok(out) => out,
            Err(e) => panic!("policy step failed: {e}"),
        };
        for ((prev, reward), &a) in self
            .prev_actions
            .iter_mut()
            .zip(self.prev_rewards.iter_mut())
            .zip(out.actions)
        {
            *prev = Some(a);
            *reward = 0.001 * (a as f32 - 1.0);
        }
        self.step_idx += 1;
    }
}

/// Part (a): the policy step alone, fused (all threads, one thread) and plain candle.
fn policy_step_cpu(c: &mut Criterion) {
    let config = AgentConfig::default(); // obs 14, 3 actions, H = 128
    let policy = match Policy::new(&config, &Device::Cpu, 0) {
        Ok(p) => p,
        Err(e) => panic!("policy: {e}"),
    };
    let mut group = c.benchmark_group("policy_step/cpu");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    for batch_size in BATCHES {
        group.throughput(Throughput::Elements(batch_size as u64));
        let variants: [(&str, Option<RolloutOptions>); 3] = [
            ("fused", Some(RolloutOptions::default())),
            (
                "fused_1thread",
                Some(RolloutOptions {
                    threads: 1,
                    ..Default::default()
                }),
            ),
            ("candle", None),
        ];
        for (name, options) in variants {
            let built = match &options {
                Some(o) => RolloutWorkspace::with_options(&policy, batch_size, o),
                None => RolloutWorkspace::new_candle(&policy, batch_size),
            };
            let mut ws = match built {
                Ok(ws) => ws,
                Err(e) => panic!("workspace: {e}"),
            };
            let mut feed = Feed::new(&config, batch_size);
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            group.bench_function(BenchmarkId::new(name, batch_size), |b| {
                in_pool(|| b.iter(|| feed.step(&mut ws, &mut rng)));
            });
        }
    }
    group.finish();
}

/// Part (b): whole trials through the vectorised trading env and the fused step.
fn rollout_cpu_trading(c: &mut Criterion) {
    use std::sync::Arc;

    use mrl::data::{GbmParams, MarketProcess, SyntheticConfig};
    use mrl::env::{FixedMarket, MarketData, Split, TradingConfig, TrialConfig, VecTrials};
    use mrl::ppo::{GaeScope, RolloutBuffer, collect_rollout};

    let bars = SyntheticConfig::new(MarketProcess::Gbm(GbmParams::default()))
        .generate(20_000, 7)
        .unwrap_or_else(|e| panic!("synthetic market: {e}"));
    let market =
        Arc::new(MarketData::new(bars.series).unwrap_or_else(|e| panic!("market data: {e}")));
    let dist = Arc::new(
        FixedMarket::new(market, TradingConfig::default(), 0.2)
            .unwrap_or_else(|e| panic!("task distribution: {e}")),
    );
    let config = AgentConfig::default(); // obs 14, 3 actions, H = 128
    let policy = Policy::new(&config, &Device::Cpu, 0).unwrap_or_else(|e| panic!("policy: {e}"));

    let mut group = c.benchmark_group("rollout/cpu_trading");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for batch_size in BATCHES {
        let mut trials = VecTrials::new(
            dist.clone(),
            batch_size,
            TrialConfig::default(),
            Split::Train,
            3,
        )
        .unwrap_or_else(|e| panic!("vec trials: {e}"));
        let trial_len = trials.max_trial_len();
        let mut ws =
            RolloutWorkspace::new(&policy, batch_size).unwrap_or_else(|e| panic!("workspace: {e}"));
        let mut buffer = RolloutBuffer::new(batch_size, trial_len, config.obs_dim);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        group.throughput(Throughput::Elements((batch_size * trial_len) as u64));
        group.bench_function(BenchmarkId::new("fused", batch_size), |b| {
            in_pool(|| {
                b.iter(|| {
                    collect_rollout(
                        &mut trials,
                        &mut ws,
                        &policy,
                        &mut buffer,
                        &mut rng,
                        GaeScope::Trial,
                    )
                    .unwrap_or_else(|e| panic!("rollout: {e}"))
                });
            });
        });
    }
    group.finish();
}

/// Runs a measured loop on a worker of a rayon pool, as `mrl`'s commands run
/// ([`mrl::agent::in_worker_pool`]; the calling thread takes part in each step's parallel
/// region, as PyTorch's OpenMP master thread does in the reference).
fn in_pool(f: impl FnOnce() + Send) {
    mrl::agent::in_worker_pool(f).unwrap_or_else(|e| panic!("thread pool: {e}"));
}

criterion_group!(benches, policy_step_cpu, rollout_cpu_trading);
criterion_main!(benches);
