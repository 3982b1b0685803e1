//! Meta-trains from a TOML config and evaluates bandit checkpoints (the CLI's `mrl train`
//! and `mrl eval bandits` without the progress bar).
//!
//! ```text
//! cargo run -p mrl-ppo --example train -- CONFIG.toml OUT_DIR [--resume]
//! cargo run -p mrl-ppo --example train -- --eval-bandits RUN_DIR ARMS PULLS TRIALS
//! ```

// A command-line tool: printing results is its job.
#![allow(clippy::print_stdout)]

use std::path::Path;

use anyhow::Context;
use mrl_ppo::{TrainConfig, evaluate_bandits, train};

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--eval-bandits") {
        let [_, dir, arms, pulls, trials] = args.as_slice() else {
            anyhow::bail!("usage: --eval-bandits RUN_DIR ARMS PULLS TRIALS");
        };
        let eval = evaluate_bandits(
            Path::new(dir),
            arms.parse()?,
            pulls.parse()?,
            trials.parse()?,
            12345,
        )?;
        println!("{}", serde_json::to_string_pretty(&eval)?);
        return Ok(());
    }
    let (config_path, out) = match args.as_slice() {
        [c, o, ..] => (Path::new(c), Path::new(o)),
        _ => anyhow::bail!("usage: CONFIG.toml OUT_DIR [--resume]"),
    };
    let resume = args.iter().any(|a| a == "--resume");
    let config = TrainConfig::load(config_path).context("loading the config")?;
    let summary = train(&config, out, resume, |s| {
        if s.iteration % 10 == 0 {
            println!(
                "it {:4} return {:8.3} by_ep {:?} pl {:7.4} vl {:7.4} ent {:5.3} kl {:6.4} clip {:4.2} ev {:5.2} sps {:8.0}",
                s.iteration,
                s.mean_trial_return,
                s.return_by_episode
                    .iter()
                    .map(|r| (r * 100.0).round() / 100.0)
                    .collect::<Vec<_>>(),
                s.policy_loss,
                s.value_loss,
                s.entropy,
                s.approx_kl,
                s.clip_fraction,
                s.explained_variance,
                s.env_steps_per_sec
            );
        }
    })?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}
