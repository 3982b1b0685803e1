//! Meta-RL on synthetic regimes in a few minutes: momentum vs mean reversion.
//!
//! Every trial draws a market whose log returns follow an AR(1) with a hidden coefficient
//! φ ∈ ±[0.1, 0.5]: positive φ rewards following the last move, negative φ rewards fading
//! it. The RL² agent must infer the sign within the trial; the MLP baseline (no memory) is
//! trained the same way; the oracle knows φ. On held-out markets (a disjoint seed space) the
//! example prints the return by episode index within the trial (the adaptation curve) and
//! the share of the oracle's advantage over the MLP that RL² recovers in each episode.
//!
//! ```text
//! cargo run --release --example basic_meta_rl -- --iterations 60 --seeds 1,2,3
//! ```

#![allow(clippy::print_stdout)] // An example is a binary: it prints its results.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use mrl::agent::PolicyKind;
use mrl::backtest::{ActionMode, Policies, TestStart, WalkForwardConfig};
use mrl::env::{MarketOracle, ProcessSource, Split, SyntheticTasks};
use mrl::ppo::{TaskKind, TrainConfig};
use rand::SeedableRng;

const CONFIG: &str = include_str!("../configs/synthetic-ar1.toml");

/// RL² vs MLP vs oracle on hidden-coefficient AR(1) markets.
#[derive(Debug, Parser)]
struct Args {
    /// PPO iterations per agent (configs/synthetic-ar1.toml has the full setting).
    #[arg(long, default_value_t = 30)]
    iterations: u64,
    /// Training seeds, comma separated (one RL² and one MLP run per seed).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    seeds: Vec<u64>,
    /// Held-out markets per seed.
    #[arg(long, default_value_t = 8)]
    test_tasks: usize,
    /// Evaluate the sampled policy with this many seeds instead of the greedy one.
    #[arg(long)]
    sampled_seeds: Option<usize>,
    /// Reuse the checkpoints already in --out instead of training again.
    #[arg(long)]
    reuse: bool,
    /// Train with this AR(1) config instead of the built-in configs/synthetic-ar1.toml.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Output directory.
    #[arg(long, default_value = "runs/example-basic-meta-rl")]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("warn").init();
    let args = Args::parse();
    let base = match &args.config {
        Some(path) => TrainConfig::load(path)?,
        None => TrainConfig::from_toml_str(CONFIG, "configs/synthetic-ar1.toml".as_ref())?,
    };
    let TaskKind::SyntheticAr1 { bars, family } = base.task.kind.clone() else {
        anyhow::bail!("the config must hold an AR(1) task (kind = \"synthetic-ar1\")");
    };
    let tasks = SyntheticTasks::new(ProcessSource::Ar1(family), bars, base.task.trading.clone())?;

    let mut shares: Vec<Vec<f64>> = Vec::new();
    for &seed in &args.seeds {
        let mut config = base.clone();
        config.seed = seed;
        config.iterations = args.iterations;
        let dir = args.out.join(format!("seed-{seed}"));
        let mut policies_dirs = Vec::new();
        for kind in [PolicyKind::Rl2, PolicyKind::Mlp] {
            config.agent.kind = kind;
            let run_dir = dir.join(kind.as_str());
            if args.reuse && mrl::ppo::checkpoint_dir(&run_dir).exists() {
                policies_dirs.push(run_dir);
                continue;
            }
            let summary = mrl::ppo::train(&config, &run_dir, false, |_| {})
                .with_context(|| format!("training {} (seed {seed})", kind.as_str()))?;
            println!(
                "seed {seed}: trained {:<3} in {:>5.0} s, last-10% mean trial return {:+.2}",
                kind.as_str(),
                summary.seconds,
                summary.tail_mean_trial_return
            );
            policies_dirs.push(run_dir);
        }
        let load = |dir: &PathBuf| {
            mrl::ppo::load_policy(
                &mrl::ppo::resolve_checkpoint(dir),
                &candle_core::Device::Cpu,
            )
        };
        let (rl2, mlp) = (load(&policies_dirs[0])?, load(&policies_dirs[1])?);

        let trading = &config.task.trading;
        let wf = WalkForwardConfig {
            test_start: TestStart::Index(
                mrl::features::WARMUP + (config.task.episodes_per_trial - 1) * trading.max_steps,
            ),
            mode: match args.sampled_seeds {
                Some(seeds) => ActionMode::Sampled { seeds },
                None => ActionMode::Greedy,
            },
            ..mrl::walk_forward_config(&config)
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut backtests = Vec::new();
        for _ in 0..args.test_tasks {
            let task = tasks.task(SyntheticTasks::split_seed(Split::Test, &mut rng))?;
            let policies = Policies {
                rl2: &rl2,
                mlp: Some(&mlp),
                oracle: MarketOracle::for_task(&task),
                others: vec![],
            };
            backtests.push(mrl::backtest::backtest_market(
                task.trading().market(),
                &policies,
                &wf,
            )?);
        }
        let summary = mrl::backtest::summarize_adaptation(&backtests);
        println!(
            "seed {seed}: mean return by episode of the trial on {} held-out markets",
            summary.tasks
        );
        for (name, curve) in &summary.curves {
            let cells: Vec<String> = curve.iter().map(|r| format!("{:+.4}", r)).collect();
            println!("  {name:<13} {}", cells.join("  "));
        }
        let cells: Vec<String> = summary
            .recovered
            .iter()
            .map(|s| format!("{s:+.2}"))
            .collect();
        println!(
            "  recovered     {}  (share of the oracle's advantage over the MLP)",
            cells.join("  ")
        );
        shares.push(summary.recovered);
    }

    if shares.len() > 1 {
        println!(
            "\nshare recovered by episode over {} seeds (mean ± std):",
            shares.len()
        );
        for k in 0..shares[0].len() {
            let xs: Vec<f64> = shares.iter().map(|s| s[k]).collect();
            let mean = xs.iter().sum::<f64>() / xs.len() as f64;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (xs.len() - 1) as f64;
            println!("  episode {}: {:+.2} ± {:.2}", k + 1, mean, var.sqrt());
        }
    }
    Ok(())
}
