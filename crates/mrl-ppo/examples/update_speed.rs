//! Times one PPO gradient step (forward_seq + loss + backward + clip + Adam) at T = 600,
//! H = 128 for B = 1, 8, 16, 32 trials, without criterion (median of a few runs), in trial-steps
//! per second. The criterion version is the workspace bench `ppo_update`.

// A command-line tool: printing results is its job.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use candle_core::{Device, Tensor};
use mrl_agent::{AgentConfig, InputLayout, Policy, PolicyInputs};
use mrl_ppo::{AdamConfig, Learner, PpoConfig, PpoTargets};

fn main() -> anyhow::Result<()> {
    // On a worker of a rayon pool, as `mrl`'s commands and the criterion bench run.
    mrl_agent::in_worker_pool(run)?
}

fn run() -> anyhow::Result<()> {
    let seq_len = 600;
    let reps: usize = std::env::args().nth(1).map_or(Ok(5), |s| s.parse())?;
    for batch_size in [1usize, 8, 16, 32] {
        let config = AgentConfig::default();
        let device = Device::Cpu;
        let policy = Policy::new(&config, &device, 0)?;
        let n = batch_size * seq_len;
        let obs: Vec<f32> = (0..n * config.obs_dim)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        let actions: Vec<u32> = (0..n).map(|i| (i * 7 % 3) as u32).collect();
        let prev_actions: Vec<Option<usize>> = (0..n)
            .map(|i| (i % seq_len != 0).then(|| actions[i - 1] as usize))
            .collect();
        let inputs = PolicyInputs {
            obs: &obs,
            prev_actions: &prev_actions,
            prev_rewards: &vec![0.01f32; n],
            prev_dones: &vec![false; n],
        };
        let x = InputLayout::new(&config).sequence_tensor(&inputs, batch_size, seq_len, &device)?;
        let targets = PpoTargets {
            actions: Tensor::from_vec(actions, n, &device)?,
            old_log_probs: Tensor::full(-1.1f32, n, &device)?,
            advantages: Tensor::from_vec(
                (0..n).map(|i| ((i % 13) as f32 - 6.0) / 6.0).collect(),
                n,
                &device,
            )?,
            returns: Tensor::full(0.1f32, n, &device)?,
            mask: None,
        };
        let mut learner = Learner::new(policy, PpoConfig::default(), AdamConfig::default())?;
        learner.gradient_step(&x, &targets, 3e-4)?; // warm-up
        let mut times = Vec::with_capacity(reps);
        for _ in 0..reps {
            let start = Instant::now();
            learner.gradient_step(&x, &targets, 3e-4)?;
            times.push(start.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "B={batch_size:3} T={seq_len} H=128: median {:8.1} ms, {:9.0} trial-steps/s (min {:8.1} ms)",
            median * 1e3,
            n as f64 / median,
            times[0] * 1e3
        );
    }
    Ok(())
}
