//! Meta-training across crypto assets, meta-testing on assets the agent never saw.
//!
//! Every trial of training draws one asset of `configs/crypto-multi-asset.toml` (hourly
//! bars), so the GRU learns to read a market from its own recent behaviour rather than to
//! memorise one. The config's `split.held_out` assets are never sampled in training; the
//! RL² agent and an MLP baseline trained the same way are then backtested walk-forward on
//! them (the latest 30% of each series) beside buy-and-hold, flat and random.
//!
//! Data: `--data-dir`, else `$MRL_DATA_DIR`, else `../shared/data` when present, holding
//! `<ASSET>_1h.csv` files. Without data the example runs on synthetic domain-randomised
//! markets instead, and says so.
//!
//! ```text
//! MRL_DATA_DIR=path/to/data cargo run --release --example multi_asset_training -- --iterations 40
//! ```

#![allow(clippy::print_stdout)] // An example is a binary: it prints its results.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use mrl::agent::PolicyKind;
use mrl::backtest::{Policies, TestStart, WalkForwardConfig};
use mrl::data::{BarSeries, DomainRandomization};
use mrl::env::{MarketTasks, Split, SyntheticTasks};
use mrl::ppo::{TaskKind, TrainConfig};
use rand::SeedableRng;

const CONFIG: &str = include_str!("../configs/crypto-multi-asset.toml");

/// RL² meta-trained on crypto assets, tested on held-out ones.
#[derive(Debug, Parser)]
struct Args {
    /// Directory of `<ASSET>_1h.csv` files (default: `$MRL_DATA_DIR`, else `../shared/data`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// PPO iterations per agent (the config's 100 is the full setting).
    #[arg(long, default_value_t = 40)]
    iterations: u64,
    /// Seed of training and of the synthetic fallback markets.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output directory: rl2/ and mlp/ runs, summary.txt.
    #[arg(long, default_value = "runs/example-multi-asset")]
    out: PathBuf,
}

/// The data directory: `arg` (which must exist), else `$MRL_DATA_DIR` or `../shared/data`
/// when present, else none (synthetic markets).
fn data_dir(arg: Option<PathBuf>) -> anyhow::Result<Option<PathBuf>> {
    if let Some(dir) = arg {
        anyhow::ensure!(
            dir.is_dir(),
            "data directory {} does not exist",
            dir.display()
        );
        return Ok(Some(dir));
    }
    let dir = std::env::var_os(mrl::ppo::DATA_DIR_ENV)
        .map_or_else(|| PathBuf::from("../shared/data"), PathBuf::from);
    Ok(dir.is_dir().then_some(dir))
}

/// Reads `<dir>/<asset>_<interval>.csv` for every asset.
fn read_assets(dir: &Path, assets: &[String], interval: &str) -> anyhow::Result<Vec<BarSeries>> {
    assets
        .iter()
        .map(|asset| {
            let path = dir.join(format!("{asset}_{interval}.csv"));
            let series = mrl::data::read_bars(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            Ok(series.with_symbol(asset.clone()))
        })
        .collect()
}

/// Trains `config` with the agent `kind` into `dir`, on `tasks` when given (real assets),
/// else on the config's own task distribution.
fn train(
    config: &TrainConfig,
    kind: PolicyKind,
    tasks: Option<&Arc<MarketTasks>>,
    dir: &Path,
) -> anyhow::Result<()> {
    let mut config = config.clone();
    config.agent.kind = kind;
    let summary = match tasks {
        Some(tasks) => mrl::ppo::train_on(&config, Arc::clone(tasks), dir, false, |_| {}),
        None => mrl::ppo::train(&config, dir, false, |_| {}),
    }
    .with_context(|| format!("training {}", kind.as_str()))?;
    println!(
        "trained {:<3} in {:>5.0} s, last-10% mean trial return {:+.2}",
        kind.as_str(),
        summary.seconds,
        summary.tail_mean_trial_return
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("warn").init();
    let args = Args::parse();
    let mut config =
        TrainConfig::from_toml_str(CONFIG, "configs/crypto-multi-asset.toml".as_ref())?;
    config.seed = args.seed;
    config.iterations = args.iterations;
    let TaskKind::MultiAsset {
        interval,
        assets,
        split,
        ..
    } = config.task.kind.clone()
    else {
        anyhow::bail!("configs/crypto-multi-asset.toml must hold a multi-asset task");
    };

    // Real assets when the data is there; else synthetic markets, split by seed space.
    let (tasks, held_out) = if let Some(dir) = data_dir(args.data_dir)? {
        let series = read_assets(&dir, &assets, &interval)?;
        let tasks = MarketTasks::multi_asset(&series, &split, config.task.trading.clone())?;
        let held_out: Vec<BarSeries> = series
            .into_iter()
            .filter(|s| {
                s.symbol()
                    .is_some_and(|a| split.held_out.iter().any(|h| h == a))
            })
            .collect();
        println!(
            "meta-training on {} assets of {}, holding out {}",
            assets.len() - split.held_out.len(),
            dir.display(),
            split.held_out.join(", ")
        );
        (Some(Arc::new(tasks)), held_out)
    } else {
        println!(
            "no data directory (give --data-dir or set {}): using synthetic domain-randomised \
             markets instead of real assets",
            mrl::ppo::DATA_DIR_ENV
        );
        let randomization = DomainRandomization::default();
        config.task.kind = TaskKind::Synthetic {
            bars: 2000,
            randomization: randomization.clone(),
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed);
        let held_out = (0..split.held_out.len().max(1))
            .map(|i| {
                let seed = SyntheticTasks::split_seed(Split::Test, &mut rng);
                let market = randomization.generate(8000, seed)?.series;
                Ok(market.with_symbol(format!("synthetic-{i}")))
            })
            .collect::<anyhow::Result<_>>()?;
        (None, held_out)
    };
    config.validate()?;

    println!(
        "{} iterations x {} trials x {} episodes of {} bars per agent",
        config.iterations,
        config.n_envs,
        config.task.episodes_per_trial,
        config.task.trading.max_steps
    );
    let (rl2_dir, mlp_dir) = (args.out.join("rl2"), args.out.join("mlp"));
    train(&config, PolicyKind::Rl2, tasks.as_ref(), &rl2_dir)?;
    train(&config, PolicyKind::Mlp, tasks.as_ref(), &mlp_dir)?;

    let load = |dir: &Path| {
        mrl::ppo::load_policy(
            &mrl::ppo::resolve_checkpoint(dir),
            &candle_core::Device::Cpu,
        )
    };
    let (rl2, mlp) = (load(&rl2_dir)?, load(&mlp_dir)?);
    let wf = WalkForwardConfig {
        test_start: TestStart::HeldOutFraction(0.3),
        seed: args.seed,
        ..mrl::walk_forward_config(&config)
    };
    let mut policies = Policies::new(&rl2);
    policies.mlp = Some(&mlp);
    let summary = mrl::backtest::evaluate_markets(&policies, &held_out, &wf)?;
    let table = summary.to_table();
    mrl::data::write_file_atomic(&args.out.join("summary.txt"), table.as_bytes())?;
    println!(
        "\nwalk-forward on the held-out markets (latest 30% of each, {} bps costs):",
        wf.cost_rate * 1e4
    );
    println!("{table}");
    println!("summary: {}", args.out.join("summary.txt").display());
    Ok(())
}
