//! `mrl eval bandits` and `mrl eval markets`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use mrl::ppo::TaskKind;

use super::print;

/// Evaluation subcommands.
#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Evaluate a bandit agent on fresh trials beside random, greedy, ε-greedy, UCB1,
    /// Thompson sampling and (for small k and n) the Bayes-optimal policy on the same trials.
    Bandits(BanditArgs),
    /// Walk-forward backtest of a trained agent over many series, one summary table.
    Markets(super::backtest::MarketsArgs),
    /// The few-shot benchmark: meta-learned, pretrained and fresh initialisations after K
    /// adaptation steps on held-out tasks, beside RL² and the baselines, over seeds.
    Fewshot(super::fewshot::FewshotArgs),
}

/// Arguments of `mrl eval bandits`.
#[derive(Debug, Args)]
pub struct BanditArgs {
    /// A run directory (or its checkpoint/ directory).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Number of fresh trials (bandit tasks).
    #[arg(long, default_value_t = 1000)]
    trials: usize,
    /// Arms k (default: from the run's config.toml).
    #[arg(long)]
    arms: Option<usize>,
    /// Pulls n per trial (default: from the run's config.toml).
    #[arg(long)]
    pulls: Option<usize>,
    /// Seed of the evaluation tasks (distinct from training's task stream).
    #[arg(long, default_value_t = 2024)]
    seed: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs an eval subcommand.
pub fn run(cmd: EvalCommand) -> anyhow::Result<()> {
    match cmd {
        EvalCommand::Bandits(args) => bandits(args),
        EvalCommand::Markets(args) => super::backtest::run_markets(args),
        EvalCommand::Fewshot(args) => super::fewshot::run(args),
    }
}

fn bandits(args: BanditArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.checkpoint.exists(),
        "checkpoint {} does not exist (give a run directory of `mrl train`)",
        args.checkpoint.display()
    );
    let (mut arms, mut pulls) = (args.arms, args.pulls);
    if let Some(TaskKind::Bandits {
        arms: a, pulls: p, ..
    }) = super::backtest::load_run_config(&args.checkpoint)?.map(|c| c.task.kind)
    {
        arms = arms.or(Some(a));
        pulls = pulls.or(Some(p));
    }
    let arms = arms.context("--arms is needed: no bandit config.toml beside the checkpoint")?;
    let pulls = pulls.context("--pulls is needed: no bandit config.toml beside the checkpoint")?;
    let eval = mrl::ppo::evaluate_bandits(&args.checkpoint, arms, pulls, args.trials, args.seed)?;
    if args.json {
        print(serde_json::to_string_pretty(&eval)?);
        return Ok(());
    }
    print(format!(
        "k = {arms} arms, n = {pulls} pulls, {} trials (seed {}): mean total reward per trial",
        eval.trials, eval.seed
    ));
    // The agent's two rows carry their names ("rl2 (sampled)", "transformer (greedy)", …) too.
    let rows: Vec<&mrl::env::BaselineScore> = [&eval.agent_sampled, &eval.agent_greedy]
        .into_iter()
        .chain(&eval.baselines)
        .collect();
    let width = rows
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(6);
    print(format!(
        "{:<width$} {:>10} {:>10}",
        "policy", "mean", "std err"
    ));
    for score in rows {
        print(format!(
            "{:<width$} {:>10.3} {:>10.3}",
            score.name, score.mean, score.std_err
        ));
    }
    Ok(())
}
