//! `mrl backtest` and `mrl eval markets`: walk-forward evaluation of a trained agent, with the
//! trading settings taken from the run that trained it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use mrl::agent::Policy;
use mrl::backtest::{ActionMode, Policies, TestStart, WalkForwardConfig};
use mrl::data::BarSeries;
use mrl::ppo::TrainConfig;

use super::print;

/// Options shared by the walk-forward commands.
#[derive(Debug, Args)]
pub struct WalkForwardArgs {
    /// A run directory of `mrl train` (or its checkpoint/ directory): the RL² agent.
    #[arg(long)]
    checkpoint: PathBuf,
    /// A second run directory whose agent is the MLP baseline trained the same way.
    #[arg(long)]
    mlp: Option<PathBuf>,
    /// Share of each series (the latest bars) held out for the walk-forward test.
    #[arg(long, default_value_t = 0.3)]
    test_fraction: f64,
    /// Sample actions with this many seeds instead of taking the greedy action.
    #[arg(long)]
    seeds: Option<usize>,
    /// Proportional cost per unit of position traded, in basis points (default: the
    /// training run's).
    #[arg(long)]
    cost_bps: Option<f64>,
    /// Seed of the random baseline, sampled actions and the bootstrap.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Arguments of `mrl backtest`.
#[derive(Debug, Args)]
pub struct BacktestArgs {
    #[command(flatten)]
    walk_forward: WalkForwardArgs,
    /// The series to test on (.csv or .parquet).
    #[arg(long)]
    data: PathBuf,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Write report.json, equity.csv and charts into this directory.
    #[arg(long)]
    report: Option<PathBuf>,
}

/// Arguments of `mrl eval markets`.
#[derive(Debug, Args)]
pub struct MarketsArgs {
    #[command(flatten)]
    walk_forward: WalkForwardArgs,
    /// Bar files, or directories whose .csv/.parquet files are all evaluated; each row of
    /// the summary is labelled by its file's stem (`BTCUSDT_1h`).
    #[arg(long, num_args = 1.., required = true)]
    data: Vec<PathBuf>,
    /// Write summary.csv, summary.json and summary.txt into this directory.
    #[arg(long)]
    report: Option<PathBuf>,
}

/// The trained agents and the walk-forward settings that match their training.
pub struct Loaded {
    /// The RL² agent.
    pub rl2: Policy,
    /// The MLP baseline, when given.
    pub mlp: Option<Policy>,
    /// Walk-forward settings.
    pub config: WalkForwardConfig,
}

impl Loaded {
    /// The policies for [`mrl::backtest::backtest`].
    pub fn policies(&self) -> Policies<'_> {
        let mut policies = Policies::new(&self.rl2);
        policies.mlp = self.mlp.as_ref();
        policies
    }
}

/// Loads the policy of a run directory (or its checkpoint directory) on the CPU.
pub fn load_policy(path: &Path) -> anyhow::Result<Policy> {
    anyhow::ensure!(
        path.exists(),
        "checkpoint {} does not exist",
        path.display()
    );
    let dir = mrl::ppo::resolve_checkpoint(path);
    mrl::ppo::load_policy(&dir, &candle_core::Device::Cpu)
        .with_context(|| format!("loading the agent of {}", path.display()))
}

/// The training config of a run directory (or its checkpoint directory), if present.
pub fn run_config(path: &Path) -> Option<TrainConfig> {
    [
        path.join(mrl::ppo::CONFIG_FILE),
        path.join("..").join(mrl::ppo::CONFIG_FILE),
    ]
    .iter()
    .find(|p| p.exists())
    .and_then(|p| TrainConfig::load(p).ok())
}

impl WalkForwardArgs {
    /// Loads the agents and builds the settings.
    pub fn load(&self) -> anyhow::Result<Loaded> {
        let rl2 = load_policy(&self.checkpoint)?;
        let mlp = self.mlp.as_deref().map(load_policy).transpose()?;
        let mut config = run_config(&self.checkpoint)
            .map_or_else(WalkForwardConfig::default, |c| mrl::walk_forward_config(&c));
        config.test_start = TestStart::HeldOutFraction(self.test_fraction);
        if let Some(seeds) = self.seeds {
            config.mode = ActionMode::Sampled { seeds };
        }
        if let Some(bps) = self.cost_bps {
            config.cost_rate = bps / 1e4;
        }
        config.seed = self.seed;
        config.validate()?;
        Ok(Loaded { rl2, mlp, config })
    }
}

/// Runs `mrl backtest`.
pub fn run_backtest(args: BacktestArgs) -> anyhow::Result<()> {
    let loaded = args.walk_forward.load()?;
    let series = mrl::data::read_bars(&args.data)?;
    let result = mrl::backtest::backtest(&series, &loaded.policies(), &loaded.config)
        .with_context(|| format!("walk-forward backtest of {}", args.data.display()))?;
    if let Some(dir) = &args.report {
        let files = mrl::backtest::write_report(&result.report, &result.records, dir)?;
        tracing::info!(files = files.len(), dir = %dir.display(), "report written");
    }
    if args.json {
        print(serde_json::to_string_pretty(&result.report)?);
    } else {
        print(format!(
            "{}: {} evaluation windows of {} bars after {} adaptation episodes, {} bps costs",
            args.data.display(),
            result.windows.len(),
            loaded.config.window_len,
            loaded.config.adaptation_episodes,
            loaded.config.cost_rate * 1e4
        ));
        print(&result.report);
        if let Some(dir) = &args.report {
            print(format!("report: {}", dir.display()));
        }
    }
    Ok(())
}

/// Bar files named by `paths`: files as given, directories expanded to their .csv/.parquet
/// files in name order.
pub fn bar_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("reading {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension()
                        .is_some_and(|e| e == "csv" || e == "parquet" || e == "pq")
                })
                .collect();
            found.sort();
            anyhow::ensure!(
                !found.is_empty(),
                "{} holds no .csv or .parquet file",
                path.display()
            );
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// Reads every file, naming the one that fails.
pub fn read_all(files: &[PathBuf]) -> anyhow::Result<Vec<BarSeries>> {
    files.iter().map(|f| Ok(mrl::data::read_bars(f)?)).collect()
}

/// Runs `mrl eval markets`.
pub fn run_markets(args: MarketsArgs) -> anyhow::Result<()> {
    let loaded = args.walk_forward.load()?;
    let files = bar_files(&args.data)?;
    let series = read_all(&files)?;
    // Rows are labelled by file stem: `BTCUSDT_1h.csv` and `BTCUSDT_4h.csv` are two rows.
    let names: Vec<String> = files
        .iter()
        .map(|f| {
            f.file_stem().map_or_else(
                || f.display().to_string(),
                |s| s.to_string_lossy().into_owned(),
            )
        })
        .collect();
    let summary =
        mrl::backtest::evaluate_named_markets(&loaded.policies(), &names, &series, &loaded.config)?;
    let table = summary.to_table();
    print(&table);
    if let Some(dir) = &args.report {
        mrl::data::write_file_atomic(&dir.join("summary.csv"), summary.to_csv().as_bytes())?;
        mrl::data::write_file_atomic(&dir.join("summary.txt"), table.as_bytes())?;
        let json = serde_json::to_string_pretty(&summary)?;
        mrl::data::write_file_atomic(&dir.join("summary.json"), json.as_bytes())?;
        print(format!("summary: {}", dir.display()));
    }
    Ok(())
}
