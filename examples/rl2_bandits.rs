//! The RL² bandit reproduction in miniature (Duan et al. 2016, §4.1).
//!
//! Meta-trains a GRU policy on k-armed Bernoulli bandits (p_i ~ U(0, 1) per trial, n pulls)
//! with PPO, then scores it on fresh bandits beside random, greedy, ε-greedy, UCB1 and
//! Thompson sampling, all on the same trials.
//!
//! ```text
//! cargo run --release --example rl2_bandits -- --arms 5 --pulls 10 --iterations 150
//! ```

#![allow(clippy::print_stdout)] // An example is a binary: it prints its results.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use mrl::ppo::{TaskKind, TrainConfig};

/// RL² on Bernoulli bandits, in a few minutes on a laptop CPU.
#[derive(Debug, Parser)]
struct Args {
    /// Arms k.
    #[arg(long, default_value_t = 5)]
    arms: usize,
    /// Pulls n per trial.
    #[arg(long, default_value_t = 10)]
    pulls: usize,
    /// PPO iterations (the shipped configs use more; see configs/bandits-*.toml).
    #[arg(long, default_value_t = 150)]
    iterations: u64,
    /// Seed of training (weights, tasks, sampling).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Fresh bandit tasks for the evaluation.
    #[arg(long, default_value_t = 1000)]
    trials: usize,
    /// Run directory.
    #[arg(long, default_value = "runs/example-rl2-bandits")]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("warn").init();
    let args = Args::parse();
    let config_path = format!("configs/bandits-k{}-n{}.toml", args.arms, args.pulls);
    let mut config = if std::path::Path::new(&config_path).exists() {
        TrainConfig::load(config_path.as_ref())?
    } else {
        TrainConfig::default()
    };
    // A shipped config may add the elapsed-pulls input; keep it.
    let observe_time = matches!(
        config.task.kind,
        TaskKind::Bandits {
            observe_time: true,
            ..
        }
    );
    config.task.kind = TaskKind::Bandits {
        arms: args.arms,
        pulls: args.pulls,
        observe_time,
    };
    config.iterations = args.iterations;
    config.seed = args.seed;
    config.validate()?;

    let started = std::time::Instant::now();
    let summary = mrl::ppo::train(&config, &args.out, false, |stats| {
        if stats.iteration % 10 == 0 {
            println!(
                "iteration {:>4}: mean reward per trial {:.3}, entropy {:.3}, {:.0} env-steps/s",
                stats.iteration, stats.mean_trial_return, stats.entropy, stats.env_steps_per_sec
            );
        }
    })
    .context("training")?;
    println!(
        "trained {} iterations ({} env-steps) in {:.0} s",
        summary.iterations,
        summary.env_steps,
        started.elapsed().as_secs_f64()
    );

    let eval = mrl::ppo::evaluate_bandits(&args.out, args.arms, args.pulls, args.trials, 2024)?;
    println!(
        "\nk = {}, n = {}, {} fresh trials: mean total reward",
        args.arms, args.pulls, eval.trials
    );
    println!("{:<16} {:>8} {:>8}", "policy", "mean", "± s.e.");
    let agent = [
        ("rl2 (sampled)", &eval.agent_sampled),
        ("rl2 (greedy)", &eval.agent_greedy),
    ];
    for (name, score) in agent {
        println!("{name:<16} {:>8.3} {:>8.3}", score.mean, score.std_err);
    }
    for score in &eval.baselines {
        println!(
            "{:<16} {:>8.3} {:>8.3}",
            score.name, score.mean, score.std_err
        );
    }
    Ok(())
}
