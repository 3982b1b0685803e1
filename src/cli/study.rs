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
    let train = super::load_config(&args.config, TrainConfig::load)?;
    let mut config = StudyConfig::new(train, args.seeds);
    config.iterations = args.iterations;
    config.n_envs = args.n_envs;
    config.held_out.markets = args.test_markets;
    config.held_out.bars = args.test_bars;
    config.held_out.market_seed = args.market_seed;
    config.held_out.data_dir = args.data_dir;
    config.sampled_runs = args.sampled_runs;
    config.resume = args.resume;
    add_others(&mut config, &args.others)?;
    config.validate()?;

    let report = run_with_progress(&config, &args.out)?;
    print_report(&report, &args.out);
    Ok(())
}

/// Adds the `--others` agents to `config`: `NAME`, or `NAME=FILE` with the agent's own
/// settings from its training config FILE ([`AgentSettings::from_config`]).
///
/// # Errors
/// An unknown agent name, an unreadable FILE, or own settings that do not fit the study,
/// each naming the `--others` entry.
fn add_others(config: &mut StudyConfig, specs: &[String]) -> anyhow::Result<()> {
    for spec in specs {
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
            let context = |e: &dyn std::fmt::Display| anyhow::anyhow!("--others {spec}: {e}");
            let own = TrainConfig::load(file).map_err(|e| context(&e))?;
            let settings =
                AgentSettings::from_config(kind, &own, &config.train).map_err(|e| context(&e))?;
            config.agent_settings.push((kind, settings));
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use mrl::agent::PolicyKind;

    fn study() -> StudyConfig {
        StudyConfig::new(TrainConfig::default(), vec![1])
    }

    #[test]
    fn others_take_names_and_own_config_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut own = TrainConfig::default();
        own.agent.kind = PolicyKind::Transformer;
        own.optim.lr = 5e-4;
        let file = dir.path().join("transformer.toml");
        std::fs::write(&file, own.to_toml()).unwrap();
        let mut config = study();
        let specs = [
            "task_inference".to_string(),
            format!("transformer={}", file.display()),
        ];
        add_others(&mut config, &specs).unwrap();
        assert_eq!(
            config.others,
            [PolicyKind::TaskInference, PolicyKind::Transformer]
        );
        assert_eq!(config.agent_settings.len(), 1);
        assert_eq!(config.agent_settings[0].0, PolicyKind::Transformer);
        assert_eq!(config.agent_settings[0].1.optim.lr, 5e-4);
    }

    #[test]
    fn bad_others_name_the_entry() {
        let err = add_others(&mut study(), &["lstm".into()]).unwrap_err();
        assert!(err.to_string().contains("unknown agent \"lstm\""), "{err}");
        let err = add_others(&mut study(), &["transformer=missing.toml".into()]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--others transformer=missing.toml: "),
            "{err}"
        );
        // A file that trains another kind of agent.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rl2.toml");
        std::fs::write(&file, TrainConfig::default().to_toml()).unwrap();
        let spec = format!("transformer={}", file.display());
        let err = add_others(&mut study(), &[spec]).unwrap_err();
        assert!(err.to_string().contains("not `transformer`"), "{err}");
    }
}
