//! `mrl train --config FILE.toml --out DIR [--resume]`.

use std::path::PathBuf;

use clap::Args;
use mrl::ppo::{IterationStats, TrainConfig};

use super::print;

/// Arguments of `mrl train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The run's TOML config (see `configs/`).
    #[arg(long)]
    config: PathBuf,
    /// Run directory: config.toml, train_log.jsonl and checkpoint/ go here.
    #[arg(long)]
    out: PathBuf,
    /// Continue from the last checkpoint in --out, exactly where it stopped.
    #[arg(long)]
    resume: bool,
    /// Override the number of iterations of the config.
    #[arg(long)]
    iterations: Option<u64>,
    /// Override the seed of the config.
    #[arg(long)]
    seed: Option<u64>,
    /// Override the parallel trials per rollout (`n_envs`) of the config, e.g. for a smoke run.
    #[arg(long)]
    n_envs: Option<usize>,
}

/// Trains with a progress bar and prints a summary.
pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let mut config = TrainConfig::load(&args.config)?;
    if let Some(iterations) = args.iterations {
        config.iterations = iterations;
    }
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    if let Some(n_envs) = args.n_envs {
        config.n_envs = n_envs;
    }
    config.validate()?;
    let (summary, steps_this_run) = train_with_progress(&config, &args.out, args.resume)?;
    print(format!(
        "trained {} iterations ({} this run, {} env-steps) in {:.1} s: {:.0} env-steps/s end to end\n\
         mean trial return: last {:.3}, last 10% {:.3}\ncheckpoint: {}",
        summary.iterations,
        summary.iterations_run,
        summary.env_steps,
        summary.seconds,
        steps_this_run as f64 / summary.seconds.max(1e-9),
        summary.final_mean_trial_return,
        summary.tail_mean_trial_return,
        summary.checkpoint.display()
    ));
    Ok(())
}

/// Runs [`mrl::ppo::train`] with an indicatif progress bar showing the running return, the
/// adaptation curve and the throughput. Also returns the env-steps taken by this call.
pub fn train_with_progress(
    config: &TrainConfig,
    out: &std::path::Path,
    resume: bool,
) -> anyhow::Result<(mrl::ppo::TrainSummary, u64)> {
    let first_steps = std::cell::Cell::new(None::<u64>);
    let last_steps = std::cell::Cell::new(0u64);
    let bar = indicatif::ProgressBar::new(config.iterations);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] [{bar:30}] {pos}/{len} it {msg}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    let progress = |stats: &IterationStats| {
        let curve: Vec<String> = stats
            .return_by_episode
            .iter()
            .map(|r| format!("{r:.3}"))
            .collect();
        bar.set_position(stats.iteration + 1);
        if first_steps.get().is_none() {
            // Steps before this call's first iteration.
            let per_iteration = stats.env_steps / (stats.iteration + 1);
            first_steps.set(Some(stats.env_steps - per_iteration));
        }
        last_steps.set(stats.env_steps);
        bar.set_message(format!(
            "return {:.3} by episode [{}] kl {:.4} ev {:.2} {:.0} steps/s",
            stats.mean_trial_return,
            curve.join(", "),
            stats.approx_kl,
            stats.explained_variance,
            stats.env_steps_per_sec
        ));
    };
    let summary = mrl::ppo::train(config, out, resume, progress);
    bar.finish_and_clear();
    let summary = summary.map_err(|err| match err {
        // Said in the CLI's terms: the fix is to leave out the flag.
        mrl::ppo::Error::NothingToResume { dir, reason } => anyhow::anyhow!(
            "nothing to resume in {}: {reason}; drop --resume to start a new run there",
            dir.display()
        ),
        err => anyhow::Error::new(err).context(format!("training into {}", out.display())),
    })?;
    let steps = last_steps.get() - first_steps.get().unwrap_or(0);
    Ok((summary, steps))
}
