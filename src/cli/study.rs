//! `mrl study --config FILE --seeds 1,2,3 --out DIR`: RL² and the MLP trained the same way
//! over several seeds, compared on held-out markets ([`mrl::study`]), with progress bars.

use std::path::{Path, PathBuf};

use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use mrl::ppo::TrainConfig;
use mrl::study::{AgentSettings, Progress, StudyConfig, StudyReport};

use super::print;

/// Arguments of `mrl study`.
#[derive(Debug, Args)]
pub struct StudyArgs {
    /// The training config (TOML) both agents are trained with; only `agent.kind` and
    /// `seed` differ between runs.
    #[arg(long)]
    config: PathBuf,
    /// Training seeds, comma separated and distinct (one RL² and one MLP run per seed).
    #[arg(long, value_delimiter = ',', required = true)]
    seeds: Vec<u64>,
    /// Output directory: seed-<s>/{rl2,mlp} runs, study.json, per_seed.csv, pooled.csv,
    /// comparisons.csv, study.md and charts.
    #[arg(long)]
    out: PathBuf,
    /// Override the config's PPO iterations per run.
    #[arg(long)]
    iterations: Option<u64>,
    /// Override the config's parallel trials per rollout.
    #[arg(long)]
    n_envs: Option<usize>,
    /// Held-out synthetic markets (synthetic task kinds).
    #[arg(long, default_value_t = 4)]
    test_markets: usize,
    /// Bars per held-out synthetic market.
    #[arg(long, default_value_t = 4000)]
    test_bars: usize,
    /// Seed of the held-out synthetic markets (the same markets for every training seed).
    #[arg(long, default_value_t = 2024)]
    market_seed: u64,
    /// Independent runs of the sampled-action evaluation.
    #[arg(long, default_value_t = 5)]
    sampled_runs: usize,
    /// Data directory of multi-asset configs (training and held-out assets).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Continue the runs already in --out from their checkpoints (finished ones are reused).
    #[arg(long)]
    resume: bool,
    /// Further agents trained the same way and compared with RL² and the MLP, comma
    /// separated: `transformer`, `task_inference`. `NAME` takes the agent's `[agent.*]`
    /// table from --config (defaults otherwise); `NAME=FILE` takes its `[agent]`, `[ppo]`
    /// and `[optim]` tables from its own training config FILE (its own step size), which
    /// must have the same `[task]`, `[gae]` and `[normalize]` as --config.
    #[arg(long, value_delimiter = ',')]
    others: Vec<String>,
}

/// The bar style of every bar.
pub(super) fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("a valid template")
        .progress_chars("=> ")
}

/// Runs the study with progress bars and prints the pooled table and the verdict.
pub fn run(args: StudyArgs) -> anyhow::Result<()> {
    let train = TrainConfig::load(&args.config)?;
    let mut config = StudyConfig::new(train, args.seeds);
    config.iterations = args.iterations;
    config.n_envs = args.n_envs;
    config.held_out.markets = args.test_markets;
    config.held_out.bars = args.test_bars;
    config.held_out.market_seed = args.market_seed;
    config.held_out.data_dir = args.data_dir;
    config.sampled_runs = args.sampled_runs;
    config.resume = args.resume;
    for spec in &args.others {
        let (name, file) = match spec.split_once('=') {
            Some((name, file)) => (name, Some(Path::new(file))),
            None => (spec.as_str(), None),
        };
        let kind = mrl::study::AGENT_KINDS
            .into_iter()
            .find(|k| k.as_str() == name)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--others: unknown agent {name:?}; expected transformer or task_inference"
                )
            })?;
        config.others.push(kind);
        if let Some(file) = file {
            let own = TrainConfig::load(file)?;
            let settings = AgentSettings::from_config(kind, &own, &config.train)
                .map_err(|e| anyhow::anyhow!("--others {spec}: {e}"))?;
            config.agent_settings.push((kind, settings));
        }
    }
    config.validate()?;

    let report = run_with_progress(&config, &args.out)?;
    print_report(&report, &args.out);
    Ok(())
}

/// Runs a validated study with two progress bars (the whole study, and the current training
/// or evaluation); the bars are cleared when it ends.
///
/// # Errors
/// As [`mrl::study::run_study`].
pub fn run_with_progress(config: &StudyConfig, out: &Path) -> anyhow::Result<StudyReport> {
    let iterations = config
        .train_config(config.seeds[0], mrl::agent::PolicyKind::Rl2)
        .iterations;
    let multi = MultiProgress::new();
    // Per seed: one training per agent and one evaluation.
    let steps = (3 + config.others.len()) * config.seeds.len();
    let overall = multi.add(ProgressBar::new(steps as u64));
    overall.set_style(style(
        "{spinner} [{elapsed_precise}] study [{bar:30}] {pos}/{len} {msg}",
    ));
    let current = multi.add(ProgressBar::new(iterations));
    current.set_style(style("  {prefix:<14} [{bar:30}] {pos}/{len} {msg}"));
    let progress = |event: Progress<'_>| match event {
        Progress::Markets { count } => {
            overall.set_message(format!("{count} held-out markets ready"));
        }
        Progress::TrainStart {
            seed,
            agent,
            iterations,
        } => {
            current.reset();
            current.set_length(iterations);
            current.set_prefix(format!("seed {seed} {}", agent.as_str()));
            overall.set_message(format!("training {} (seed {seed})", agent.as_str()));
        }
        Progress::Iteration { stats, .. } => {
            current.set_position(stats.iteration + 1);
            current.set_message(format!(
                "return {:.3} ev {:.2} kl {:.4} entropy {:.3}",
                stats.mean_trial_return, stats.explained_variance, stats.approx_kl, stats.entropy
            ));
        }
        Progress::TrainDone { .. } => overall.inc(1),
        Progress::Backtest {
            seed,
            market,
            done,
            total,
        } => {
            current.set_prefix(format!("seed {seed} eval"));
            current.set_length(total as u64);
            current.set_position(done as u64);
            current.set_message(market.to_string());
            if done == total {
                overall.inc(1);
            }
        }
        Progress::SeedDone { seed } => {
            overall.set_message(format!("seed {seed} done"));
        }
        _ => {}
    };
    let report = mrl::study::run_study(config, out, progress);
    current.finish_and_clear();
    overall.finish_and_clear();
    Ok(report?)
}

/// Prints the pooled table, the verdict, the deployment line and where the files are.
pub fn print_report(report: &StudyReport, out: &Path) {
    print(format!(
        "{} × {} held-out markets ({})\n",
        mrl::study::seeds_phrase(report.per_seed.len()),
        report.settings.markets.len(),
        report.settings.held_out
    ));
    print(report.pooled_table());
    print(&report.verdict);
    if let Some(gain) = &report.adaptation_gain {
        print(&gain.line);
    }
    for other in &report.others {
        print(&other.line);
        print(&other.adaptation.line);
    }
    print(&report.deployment.line);
    print(format!(
        "\nstudy: {} (study.json, per_seed.csv, pooled.csv, comparisons.csv, study.md, charts)",
        out.display()
    ));
}
