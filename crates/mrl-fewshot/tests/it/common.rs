//! Tiny policies and tasks shared by the tests.

use std::sync::Arc;

use candle_core::Device;
use mrl_agent::{AgentConfig, Policy, PolicyKind};
use mrl_data::{Bar, BarSeries};
use mrl_env::{Ar1Family, ProcessSource, Split, SyntheticTasks, TaskEnv, TradingConfig};
use mrl_fewshot::{AdaptSetup, FixedTask};
use mrl_ppo::{PpoConfig, TrainConfig};

/// Steps of one episode in the test markets.
pub const MAX_STEPS: usize = 20;

/// The hidden-coefficient AR(1) family on 80-bar markets with 20-step episodes.
pub fn ar1_tasks() -> SyntheticTasks {
    let trading = TradingConfig {
        max_steps: MAX_STEPS,
        reward_scale: 100.0,
        ..Default::default()
    };
    SyntheticTasks::new(ProcessSource::Ar1(Ar1Family::default()), 80, trading).unwrap()
}

/// One AR(1) market of the training split.
pub fn task(seed: u64) -> Arc<FixedTask<TaskEnv>> {
    Arc::new(FixedTask::sample(&ar1_tasks(), Split::Train, seed).unwrap())
}

/// A seeded policy of `kind` with hidden width 8 for the trading tasks.
pub fn policy(kind: PolicyKind, seed: u64) -> Policy {
    let config = AgentConfig {
        kind,
        obs_dim: mrl_env::TradingObs::DIM,
        n_actions: 3,
        hidden: 8,
        ..Default::default()
    };
    Policy::new(&config, &Device::Cpu, seed).unwrap()
}

/// One-episode trials, default PPO loss, no gradient clipping unless `clip` says.
pub fn setup(clip: f64) -> AdaptSetup {
    let train = TrainConfig {
        ppo: PpoConfig {
            max_grad_norm: clip,
            ..Default::default()
        },
        ..Default::default()
    };
    AdaptSetup::from_train(&train, 1.0)
}

/// Every parameter as a flat f32 vector, in parameter order.
pub fn flat(policy: &Policy) -> Vec<Vec<f32>> {
    policy
        .parameters()
        .iter()
        .map(|(_, v)| v.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect()
}

/// `series` with every bar from `from` on scaled by a factor between 0.7 and 1.3 (the
/// future a look-ahead test perturbs); the bars before `from` are untouched.
pub fn perturbed_from(series: &BarSeries, from: usize) -> BarSeries {
    let bars: Vec<Bar> = series
        .iter()
        .enumerate()
        .map(|(i, mut b)| {
            if i >= from {
                let f = 1.0 + 0.3 * ((i as f64) * 0.7).sin();
                b.open *= f;
                b.high *= f * 1.01;
                b.low *= f * 0.99;
                b.close *= f;
            }
            b
        })
        .collect();
    BarSeries::new(&bars).unwrap()
}
