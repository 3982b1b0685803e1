//! `mrl run`: the whole story on the built-in default. Meta-train the RL² agent and the MLP
//! baseline the same way on synthetic markets with a hidden regime (momentum or mean
//! reversion, `configs/quickstart.toml`), then backtest both walk-forward on 16 held-out
//! markets beside the oracle, buy-and-hold, flat, random and the trader rules, and print
//! the adaptation curve and a verdict with its interval. It is `mrl study` with one seed.

use std::path::PathBuf;

use clap::Args;
use mrl::ppo::TrainConfig;
use mrl::study::{StudyConfig, StudyReport};

use super::print;
use super::study::{print_report, run_with_progress};

/// The built-in main-job config, shipped as `configs/quickstart.toml`.
const CONFIG: &str = include_str!("../../configs/quickstart.toml");

/// Arguments of `mrl run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Output directory: the seed's rl2/ and mlp/ runs, study.json, tables and charts.
    #[arg(long, default_value = "runs/quickstart")]
    out: PathBuf,
    /// Training seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// PPO iterations for each agent (default: the config's).
    #[arg(long)]
    iterations: Option<u64>,
    /// Parallel trials per rollout (default: the config's).
    #[arg(long)]
    n_envs: Option<usize>,
    /// Held-out markets to backtest on.
    #[arg(long, default_value_t = 16)]
    test_markets: usize,
    /// Bars per held-out market (hourly).
    #[arg(long, default_value_t = 4000)]
    test_bars: usize,
    /// Train with this config instead of the built-in `configs/quickstart.toml` (any
    /// synthetic or real-market task kind `mrl study` takes).
    #[arg(long)]
    config: Option<PathBuf>,
}

/// Runs the quick start.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let train = match &args.config {
        Some(path) => super::load_config(path, TrainConfig::load)?,
        None => TrainConfig::from_toml_str(CONFIG, "configs/quickstart.toml".as_ref())?,
    };
    let mut config = StudyConfig::new(train, vec![args.seed]);
    config.iterations = args.iterations;
    config.n_envs = args.n_envs;
    config.held_out.markets = args.test_markets;
    config.held_out.bars = args.test_bars;
    config.validate()?;
    let train = config.train_config(args.seed, mrl::agent::PolicyKind::Rl2);
    print(format!(
        "mrl run: RL² (GRU {}) and the MLP, each {} PPO iterations x {} trials x {} episodes on {}, \
         then walk-forward on {} held-out markets (10 bps costs)",
        train.agent.hidden,
        train.iterations,
        train.n_envs,
        train.task.episodes_per_trial,
        train.task.kind.name(),
        args.test_markets
    ));
    let report = run_with_progress(&config, &args.out)?;
    print_adaptation(&report);
    print_report(&report, &args.out);
    Ok(())
}

/// The mean held-out return by episode of the trial (greedy), and the share of the oracle's
/// edge over the MLP that RL² recovers in each episode.
fn print_adaptation(report: &StudyReport) {
    let curve = |name: &str| report.adaptation.get(name).map(|band| band.mean.clone());
    print(
        "\nmean return by episode of the trial on the held-out markets (greedy, last = evaluation window):",
    );
    for name in ["oracle", "rl2", "mlp", "buy_and_hold"] {
        if let Some(c) = curve(name) {
            let cells: Vec<String> = c.iter().map(|r| format!("{:+7.2}%", 100.0 * r)).collect();
            print(format!("  {name:<13} {}", cells.join("  ")));
        }
    }
    if let (Some(rl2), Some(mlp), Some(oracle)) = (curve("rl2"), curve("mlp"), curve("oracle")) {
        let shares: Vec<String> = mrl::backtest::recovered_share(&rl2, &mlp, &oracle)
            .iter()
            .map(|s| {
                if s.is_nan() {
                    "      - ".to_string()
                } else {
                    format!("{s:+7.2} ")
                }
            })
            .collect();
        print(format!(
            "  {:<13} {}  (share of the oracle's edge over the MLP that RL² recovers)",
            "recovered",
            shares.join("  ")
        ));
    }
    print("");
}
