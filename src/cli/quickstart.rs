//! `mrl run`: the whole story on the built-in default. Meta-train the RL² agent and the MLP
//! baseline on synthetic regime markets, then backtest both walk-forward on held-out
//! markets with buy-and-hold, flat and random baselines, and write a report with charts.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use mrl::agent::PolicyKind;
use mrl::backtest::{TestStart, WalkForwardConfig};
use mrl::data::BarSeries;
use mrl::env::{Split, SyntheticTasks};
use mrl::ppo::{TaskKind, TrainConfig};
use rand::SeedableRng;

use super::backtest::load_policy;
use super::print;
use super::train::train_with_progress;

/// The quick-start training config, shipped as `configs/synthetic-regimes.toml`.
const CONFIG: &str = include_str!("../../configs/synthetic-regimes.toml");

/// Arguments of `mrl run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Output directory: rl2/ and mlp/ runs, and report/.
    #[arg(long, default_value = "runs/quickstart")]
    out: PathBuf,
    /// Seed of training and of the held-out markets.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// PPO iterations for each agent (default: the config's).
    #[arg(long)]
    iterations: Option<u64>,
    /// Held-out markets to backtest on.
    #[arg(long, default_value_t = 4)]
    test_markets: usize,
    /// Bars per held-out market (hourly).
    #[arg(long, default_value_t = 4000)]
    test_bars: usize,
}

/// Runs the quick start.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut config = TrainConfig::from_toml_str(CONFIG, "configs/synthetic-regimes.toml".as_ref())?;
    config.seed = args.seed;
    if let Some(iterations) = args.iterations {
        config.iterations = iterations;
    }
    config.validate()?;
    let TaskKind::Synthetic { randomization, .. } = &config.task.kind else {
        anyhow::bail!("the quick-start config must use synthetic tasks");
    };
    let randomization = randomization.clone();

    print(format!(
        "1/3  meta-training RL² (GRU {}) on synthetic regime markets: {} iterations x {} trials x {} episodes",
        config.agent.hidden, config.iterations, config.n_envs, config.task.episodes_per_trial
    ));
    let rl2_dir = args.out.join("rl2");
    let (rl2, _) = train_with_progress(&config, &rl2_dir, false)?;
    print(format!(
        "     done in {:.0} s, mean trial return {:.3}",
        rl2.seconds, rl2.tail_mean_trial_return
    ));

    print("2/3  training the MLP baseline (no memory) the same way");
    let mut mlp_config = config.clone();
    mlp_config.agent.kind = PolicyKind::Mlp;
    let mlp_dir = args.out.join("mlp");
    let (mlp, _) = train_with_progress(&mlp_config, &mlp_dir, false)?;
    print(format!(
        "     done in {:.0} s, mean trial return {:.3}",
        mlp.seconds, mlp.tail_mean_trial_return
    ));

    print(format!(
        "3/3  walk-forward backtest on {} held-out markets (seeds from the test split, never trained on)",
        args.test_markets
    ));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed);
    let markets: Vec<BarSeries> = (0..args.test_markets)
        .map(|i| {
            let seed = SyntheticTasks::split_seed(Split::Test, &mut rng);
            let generated = randomization.generate(args.test_bars, seed)?;
            Ok(generated.series.with_symbol(format!("regime-{i}")))
        })
        .collect::<anyhow::Result<_>>()?;

    let rl2_policy = load_policy(&rl2_dir)?;
    let mlp_policy = load_policy(&mlp_dir)?;
    let mut wf: WalkForwardConfig = mrl::walk_forward_config(&config);
    // A held-out market is new as a whole: test every bar after the first adaptation.
    wf.test_start =
        TestStart::Index(mrl::features::WARMUP + wf.adaptation_episodes * wf.adaptation_len);
    wf.seed = args.seed;
    let mut policies = mrl::backtest::Policies::new(&rl2_policy);
    policies.mlp = Some(&mlp_policy);

    let report_dir = args.out.join("report");
    let first = mrl::backtest::backtest(&markets[0], &policies, &wf)
        .context("backtesting the first held-out market")?;
    mrl::backtest::write_report(&first.report, &first.records, &report_dir)?;
    let summary = mrl::backtest::evaluate_markets(&policies, &markets, &wf)?;
    let table = summary.to_table();
    mrl::data::write_file_atomic(&report_dir.join("summary.csv"), summary.to_csv().as_bytes())?;
    mrl::data::write_file_atomic(&report_dir.join("summary.txt"), table.as_bytes())?;

    print(format!(
        "\nheld-out market regime-0 ({} bars, 10 bps costs):",
        args.test_bars
    ));
    print(&first.report);
    print(format!("\nall {} held-out markets:", args.test_markets));
    print(&table);
    print(format!(
        "\nreport: {} (report.json, equity.csv, charts, summary.csv)",
        report_dir.display()
    ));
    Ok(())
}
