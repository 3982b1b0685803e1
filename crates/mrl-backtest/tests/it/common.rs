//! Shared fixtures: synthetic hourly 24/7 and daily weekday series, small seeded agents.

use candle_core::Device;
use mrl_agent::{AgentConfig, Policy, PolicyKind};
use mrl_backtest::{TestStart, WalkForwardConfig};
use mrl_data::{Ar1Params, Bar, BarSeries, DAY_MS, MarketProcess, SyntheticConfig};

/// An hourly 24/7 AR(1) market of `n` bars (momentum strong enough for the oracle).
pub fn hourly(n: usize, seed: u64) -> BarSeries {
    ar1(n, seed).series
}

/// The AR(1) parameters of [`hourly`].
pub fn ar1_params() -> Ar1Params {
    Ar1Params {
        drift: 0.0,
        phi: 0.3,
        volatility: 0.01,
    }
}

/// The generated AR(1) market.
pub fn ar1(n: usize, seed: u64) -> mrl_data::SyntheticSeries {
    SyntheticConfig::new(MarketProcess::Ar1(ar1_params()))
        .generate(n, seed)
        .unwrap()
}

/// A daily series of `n` weekday bars (no Saturday or Sunday bars), starting on a Monday.
pub fn daily_weekdays(n: usize) -> BarSeries {
    let monday = 1_704_672_000_000; // 2024-01-08T00:00:00Z
    let mut bars = Vec::with_capacity(n);
    let mut day = 0i64;
    let mut close = 50.0;
    while bars.len() < n {
        if day % 7 < 5 {
            let i = bars.len() as f64;
            close *= 1.0 + 0.01 * (i * 0.37).sin() + 0.002 * (i * 0.11).cos();
            bars.push(Bar {
                timestamp: monday + day * DAY_MS,
                open: close,
                high: close * 1.01,
                low: close * 0.99,
                close,
                volume: 1000.0 + 100.0 * (i * 0.5).sin(),
            });
        }
        day += 1;
    }
    BarSeries::new(&bars).unwrap().with_symbol("WEEKDAYS")
}

/// A small randomly initialised agent (seeded weights).
pub fn agent(kind: PolicyKind, seed: u64) -> Policy {
    let config = AgentConfig {
        kind,
        hidden: 16,
        ..Default::default()
    };
    Policy::new(&config, &Device::Cpu, seed).unwrap()
}

/// Short windows so that tests stay fast: windows and adaptation episodes of 40 bars.
pub fn config(test_start: usize) -> WalkForwardConfig {
    WalkForwardConfig {
        test_start: TestStart::Index(test_start),
        window_len: 40,
        adaptation_len: 40,
        adaptation_episodes: 2,
        ..Default::default()
    }
}

/// `series` with every bar from `from` on replaced by a scrambled one (prices scaled by
/// a varying factor, volume changed).
pub fn perturb_from(series: &BarSeries, from: usize) -> BarSeries {
    let bars: Vec<Bar> = series
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if i < from {
                b
            } else {
                let f = 1.0 + 0.2 * ((i * 7919 % 13) as f64 / 13.0 - 0.5);
                Bar {
                    open: b.open * f,
                    high: b.high * f * 1.05,
                    low: b.low * f * 0.95,
                    close: b.close * f,
                    volume: b.volume * (2.0 + f),
                    ..b
                }
            }
        })
        .collect();
    BarSeries::new(&bars).unwrap()
}

/// An RL² agent whose greedy actions react to its inputs: the seeded weights with the
/// encoder scaled by 20 and the policy head by 30 (an untrained net's logits are nearly
/// equal, so its greedy action would be constant).
pub fn decisive_agent(seed: u64) -> Policy {
    let policy = agent(PolicyKind::Rl2, seed);
    let mut tensors = policy.tensors();
    for (name, factor) in [("encoder.0.weight", 20.0), ("policy_head.weight", 30.0)] {
        let t = &tensors[name];
        let scaled: Vec<f32> = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let scaled = scaled.into_iter().map(|x| x * factor).collect::<Vec<f32>>();
        let t = candle_core::Tensor::from_vec(scaled, t.dims(), &Device::Cpu).unwrap();
        tensors.insert(name.to_string(), t);
    }
    Policy::from_tensors(policy.config(), &tensors, &Device::Cpu).unwrap()
}
