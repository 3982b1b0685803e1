//! Criterion bench of few-shot adaptation on one asset: K inner steps over the first
//! N = 336 hourly bars at H = 128 (CPU), every weight or rank-4 adapters, at K = 10 also
//! through a trained class embedding of six features (`_embed6`), beside one PPO gradient
//! step (`cargo bench --bench ppo_update` at the root has the update itself).
//!
//! Names carry the device, the hidden width, K and the trials per rollout.

use std::hint::black_box;
use std::sync::Arc;

use candle_core::Device;
use criterion::{Criterion, criterion_group, criterion_main};
use mrl_agent::{AgentConfig, Policy};
use mrl_data::{MarketProcess, SyntheticConfig};
use mrl_env::{TradingConfig, TradingObs};
use mrl_features::Feature;
use mrl_fewshot::{
    AdaptSetup, ClassEmbedding, EmbeddingTraining, FixedTask, InnerConfig, LoraConfig, adapt,
    adapt_class,
};
use mrl_ppo::TrainConfig;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn bench_adapt(c: &mut Criterion) {
    let series = SyntheticConfig {
        process: MarketProcess::Ar1(mrl_data::Ar1Params {
            drift: 0.0,
            phi: 0.3,
            volatility: 0.01,
        }),
        bars: Default::default(),
    }
    .generate_with_rng(2000, &mut ChaCha8Rng::seed_from_u64(1))
    .expect("synthetic bars")
    .series;
    // Two weeks of hourly bars, episodes of 200 steps (the quick start's).
    let trading = TradingConfig {
        max_steps: 200,
        reward_scale: 100.0,
        ..Default::default()
    };
    let task = Arc::new(FixedTask::first_bars(&series, 336, trading).expect("window"));
    let agent = AgentConfig {
        obs_dim: TradingObs::DIM,
        n_actions: 3,
        hidden: 128,
        ..Default::default()
    };
    let base = Policy::new(&agent, &Device::Cpu, 0).expect("policy");
    let setup = AdaptSetup::from_train(&TrainConfig::default(), 1.0);
    let six = [
        Feature::Ret1,
        Feature::Ret5,
        Feature::Ret10,
        Feature::SmaRatio,
        Feature::Volatility,
        Feature::Rsi,
    ];
    let embedding = ClassEmbedding::padding("equities", &six, &Device::Cpu).expect("embedding");
    let mut group = c.benchmark_group("adapt");
    group.sample_size(10);
    for (label, adapter) in [("full", None), ("lora4", Some(LoraConfig::default()))] {
        for (steps, n_envs, embed) in [(1, 8, None), (10, 8, None), (10, 8, Some(&embedding))] {
            let inner = InnerConfig {
                steps,
                n_envs,
                adapter: adapter.clone(),
                ..Default::default()
            };
            let suffix = if embed.is_some() { "_embed6" } else { "" };
            let name = format!("cpu_h128_n336_{label}{suffix}_k{steps}_b{n_envs}");
            group.bench_function(name, |b| {
                b.iter(|| {
                    let adapted = match embed {
                        Some(e) => {
                            let training = EmbeddingTraining::Adapted;
                            adapt_class(&base, e, training, task.clone(), &inner, &setup, 0)
                        }
                        None => adapt(&base, task.clone(), &inner, &setup, 0),
                    };
                    black_box(adapted.expect("adapt"))
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_adapt);
criterion_main!(benches);
