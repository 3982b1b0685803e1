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
    let mut config = super::load_config(&args.config, TrainConfig::load)?;
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
    let (summary, this_run) = train_with_progress(&config, &args.out, args.resume)?;
    let iterations = match summary.iterations {
        1 => "1 iteration".to_string(),
        n => format!("{n} iterations"),
    };
    if summary.iterations_run == 0 {
        // A resumed run already at (or past) the asked-for iterations: nothing was trained,
        // so there is no return of this run to report.
        print(format!(
            "nothing to train: the run is already at {iterations} (asked for {}); \
             checkpoint: {}",
            config.iterations,
            summary.checkpoint.display()
        ));
        return Ok(());
    }
    print(format!(
        "trained {iterations} ({} this run, {} env-steps) in {:.1} s: {}\n\
         mean trial return: last {:.3}, last 10% {:.3}\ncheckpoint: {}",
        summary.iterations_run,
        summary.env_steps,
        summary.seconds,
        this_run.throughput_line(summary.seconds),
        summary.final_mean_trial_return,
        summary.tail_mean_trial_return,
        summary.checkpoint.display()
    ));
    Ok(())
}

/// The env-steps of one `mrl train` call and where its time went.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RunThroughput {
    /// Env-steps taken by this call (not those of a resumed run's earlier calls).
    pub env_steps: u64,
    /// Seconds in the rollouts (env, features and the policy's steps), summed over iterations.
    pub rollout_secs: f64,
    /// Seconds in the PPO updates (advantages, every epoch's gradient steps, the rollout
    /// workspace's weight refresh), summed over iterations.
    pub update_secs: f64,
}

impl RunThroughput {
    /// `"N env-steps/s end to end (rollout R s, N_r env-steps/s; update U s, N_u env-steps/s)"`:
    /// the end-to-end rate over `seconds` (the whole run, checkpoints and logs included) and
    /// the rate each phase alone would reach (env-steps over that phase's seconds).
    pub fn throughput_line(&self, seconds: f64) -> String {
        let rate = |secs: f64| self.env_steps as f64 / secs.max(1e-9);
        format!(
            "{:.0} env-steps/s end to end (rollout {:.1} s, {:.0} env-steps/s; update {:.1} s, \
             {:.0} env-steps/s)",
            rate(seconds),
            self.rollout_secs,
            rate(self.rollout_secs),
            self.update_secs,
            rate(self.update_secs)
        )
    }
}

/// Runs [`mrl::ppo::train`] with an indicatif progress bar showing the running return, the
/// adaptation curve and the throughput. Also returns the env-steps taken by this call and
/// the time its rollouts and updates took.
pub fn train_with_progress(
    config: &TrainConfig,
    out: &std::path::Path,
    resume: bool,
) -> anyhow::Result<(mrl::ppo::TrainSummary, RunThroughput)> {
    let first_steps = std::cell::Cell::new(None::<u64>);
    let last_steps = std::cell::Cell::new(0u64);
    let phase_secs = std::cell::Cell::new((0.0f64, 0.0f64));
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
        let (rollout, update) = phase_secs.get();
        phase_secs.set((rollout + stats.rollout_secs, update + stats.update_secs));
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
    let (rollout_secs, update_secs) = phase_secs.get();
    let this_run = RunThroughput {
        env_steps: last_steps.get() - first_steps.get().unwrap_or(0),
        rollout_secs,
        update_secs,
    };
    Ok((summary, this_run))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throughput_line_splits_rollout_and_update() {
        let run = RunThroughput {
            env_steps: 1_200_000,
            rollout_secs: 4.0,
            update_secs: 6.0,
        };
        assert_eq!(
            run.throughput_line(12.0),
            "100000 env-steps/s end to end (rollout 4.0 s, 300000 env-steps/s; update 6.0 s, \
             200000 env-steps/s)"
        );
    }
}
