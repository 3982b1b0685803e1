//! `mrl backtest` and `mrl eval markets`: walk-forward evaluation of a trained agent, with the
//! trading settings taken from the run that trained it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use mrl::agent::Policy;
use mrl::backtest::{ActionMode, InSample, Policies, TestStart, TrainedAsset, WalkForwardConfig};
use mrl::data::BarSeries;
use mrl::ppo::{TaskKind, TrainConfig};

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
    /// Share of each series (the latest bars) held out for the walk-forward test, in (0, 1).
    #[arg(long, default_value_t = 0.3, value_parser = open_fraction)]
    test_fraction: f64,
    /// Sample actions with this many seeds (at least 1) instead of taking the greedy action.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    seeds: Option<usize>,
    /// Proportional cost per unit of position traded, in basis points, in [0, 10000)
    /// (default: the training run's).
    #[arg(long, value_parser = cost_bps)]
    cost_bps: Option<f64>,
    /// Seed of the random baseline, sampled actions and the bootstrap.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// `--test-fraction`: a number strictly between 0 and 1 (clap names the option and the
/// value as typed in its error).
fn open_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v < 1.0 => Ok(v),
        Ok(_) => Err("a held-out share must lie strictly between 0 and 1".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// `--cost-bps`: basis points in [0, 10000) (a cost rate in [0, 1)).
fn cost_bps(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..1e4).contains(&v) => Ok(v),
        Ok(_) => Err("a cost in basis points must lie in [0, 10000)".into()),
        Err(e) => Err(e.to_string()),
    }
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
    /// What the RL² agent's run trained on, from its config ([`trained_assets`]; empty
    /// without a config or for synthetic tasks).
    pub trained: Vec<TrainedAsset>,
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

/// The `config.toml` of a run directory, or of the run a checkpoint directory (one holding
/// `agent.json`) belongs to, if one exists. A run directory without its own config is not
/// given its parent directory's.
pub fn run_config_path(path: &Path) -> Option<PathBuf> {
    let own = path.join(mrl::ppo::CONFIG_FILE);
    if own.exists() {
        return Some(own);
    }
    let beside = path.join("..").join(mrl::ppo::CONFIG_FILE);
    (path.join("agent.json").exists() && beside.exists()).then_some(beside)
}

/// The training config of a run directory (or its checkpoint directory); `None` when it has
/// no `config.toml`.
///
/// # Errors
/// A `config.toml` that exists but does not load (unreadable, bad TOML, an invalid value),
/// naming the file.
pub fn load_run_config(path: &Path) -> anyhow::Result<Option<TrainConfig>> {
    run_config_path(path)
        .map(|file| {
            TrainConfig::load(&file)
                .with_context(|| format!("loading the run's config {}", file.display()))
        })
        .transpose()
}

/// What a run trained on, asset by asset, from its task: the training assets of a
/// multi-asset task (all but the held-out ones, before its `test_start` when it has one,
/// else every bar), every asset of a regime-window or timeframe task before its
/// `test_start`, the union over a mixture's components. Synthetic tasks and bandits name
/// no real asset: empty.
pub fn trained_assets(kind: &TaskKind) -> Vec<TrainedAsset> {
    let asset = |symbol: &String, before: Option<i64>| TrainedAsset {
        symbol: symbol.clone(),
        before,
    };
    match kind {
        TaskKind::MultiAsset { assets, split, .. } => assets
            .iter()
            .filter(|a| !split.held_out.contains(a))
            .map(|a| asset(a, split.test_start))
            .collect(),
        TaskKind::RegimeWindows {
            assets, test_start, ..
        } => assets.iter().map(|a| asset(a, Some(*test_start))).collect(),
        TaskKind::Timeframes {
            asset: symbol,
            test_start,
            ..
        } => vec![asset(symbol, Some(*test_start))],
        TaskKind::Mixture { components } => components
            .iter()
            .flat_map(|c| trained_assets(&c.kind))
            .collect(),
        TaskKind::Bandits { .. } | TaskKind::SyntheticAr1 { .. } | TaskKind::Synthetic { .. } => {
            Vec::new()
        }
    }
}

/// Whether the walk-forward test of `series` (read from `file`, whose stem names it) under
/// `config` evaluates bars the agent trained on ([`InSample::of`] over the decision bars of
/// the planned windows); `None` when it does not, or when the windows cannot be planned
/// (the backtest says why).
pub fn in_sample(
    series: &BarSeries,
    file: &Path,
    config: &WalkForwardConfig,
    trained: &[TrainedAsset],
) -> Option<InSample> {
    if trained.is_empty() {
        return None;
    }
    let timestamps = series.timestamps();
    let windows = mrl::backtest::plan_windows(timestamps, config).ok()?;
    let evaluated: Vec<i64> = windows
        .iter()
        .flat_map(|w| w.eval.clone())
        .map(|t| timestamps[t])
        .collect();
    // The file's stem names the series best (`BTCUSDT-1h.csv`, `BTC_USDT_1h.csv`); the
    // series' symbol (the stem before its first `_`) is the fallback.
    let stem = file.file_stem().and_then(|s| s.to_str());
    InSample::of(stem.or(series.symbol()), &evaluated, trained)
}

impl WalkForwardArgs {
    /// Loads the agents and builds the settings: the run's trading settings from its
    /// `config.toml` (an error when it exists but does not load; the defaults, with a
    /// warning, when the run has none).
    pub fn load(&self) -> anyhow::Result<Loaded> {
        let rl2 = load_policy(&self.checkpoint)?;
        if rl2.kind() != mrl::agent::PolicyKind::Rl2 {
            // The tables' `rl2` rows are the agent under test, whatever its network.
            tracing::warn!(
                "{} holds an agent of kind {}: its rows are labelled rl2 (the agent under test)",
                self.checkpoint.display(),
                rl2.kind().as_str()
            );
        }
        let mlp = self.mlp.as_deref().map(load_policy).transpose()?;
        let train = load_run_config(&self.checkpoint)?;
        if train.is_none() {
            let d = WalkForwardConfig::default();
            tracing::warn!(
                "{} has no {} (nor, as a checkpoint directory, has its run): default \
                 walk-forward settings (windows of {} bars, {} adaptation episodes of {} bars, \
                 {} bps costs), and what the agent trained on is unknown, so an in-sample \
                 test span is not detected",
                self.checkpoint.display(),
                mrl::ppo::CONFIG_FILE,
                d.window_len,
                d.adaptation_episodes,
                d.adaptation_len,
                d.cost_rate * 1e4
            );
        }
        let trained = train
            .as_ref()
            .map_or_else(Vec::new, |c| trained_assets(&c.task.kind));
        let mut config = train
            .as_ref()
            .map_or_else(WalkForwardConfig::default, mrl::walk_forward_config);
        config.test_start = TestStart::HeldOutFraction(self.test_fraction);
        if let Some(seeds) = self.seeds {
            config.mode = ActionMode::Sampled { seeds };
        }
        if let Some(bps) = self.cost_bps {
            config.cost_rate = bps / 1e4;
        }
        config.seed = self.seed;
        config.validate()?;
        Ok(Loaded {
            rl2,
            mlp,
            config,
            trained,
        })
    }
}

/// Runs `mrl backtest`.
pub fn run_backtest(args: BacktestArgs) -> anyhow::Result<()> {
    let loaded = args.walk_forward.load()?;
    let series = mrl::data::read_bars(&args.data)?;
    let mut result = mrl::backtest::backtest(&series, &loaded.policies(), &loaded.config)
        .with_context(|| format!("walk-forward backtest of {}", args.data.display()))?;
    result.report.in_sample = in_sample(&series, &args.data, &loaded.config, &loaded.trained);
    if let Some(s) = &result.report.in_sample {
        tracing::warn!(data = %args.data.display(), "{}", s.note);
    }
    if let Some(dir) = &args.report {
        let files = mrl::backtest::write_report(&result.report, &result.records, dir)?;
        tracing::info!(files = files.len(), dir = %dir.display(), "report written");
    }
    if args.json {
        print(serde_json::to_string_pretty(&result.report)?);
    } else {
        // The bars actually evaluated: the last window may be shorter than `window_len`.
        let evaluated: usize = result.windows.iter().map(|w| w.eval.len()).sum();
        print(format!(
            "{}: {evaluated} bar(s) evaluated in {} window(s) of up to {} bars, each after {} \
             adaptation episodes, {} bps costs",
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
                .filter(|p| mrl::data::is_bar_file(p))
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
    // Rows are labelled by file stem: `BTCUSDT_1h.csv` and `BTCUSDT_4h.csv` are two rows;
    // two files of one stem (in two directories) are `BTCUSDT_1h` and `BTCUSDT_1h #2`, the
    // labels the in-sample notes below are filed under too.
    let stems: Vec<String> = files
        .iter()
        .map(|f| {
            f.file_stem().map_or_else(
                || f.display().to_string(),
                |s| s.to_string_lossy().into_owned(),
            )
        })
        .collect();
    let names = mrl::backtest::unique_labels(&stems);
    let mut summary =
        mrl::backtest::evaluate_named_markets(&loaded.policies(), &names, &series, &loaded.config)?;
    for ((name, s), file) in names.iter().zip(&series).zip(&files) {
        if let Some(found) = in_sample(s, file, &loaded.config, &loaded.trained) {
            tracing::warn!(series = %name, "{}", found.note);
            summary.in_sample.insert(name.clone(), found);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn trained(task: &str) -> Vec<TrainedAsset> {
        let text = format!("[task]\nepisodes_per_trial = 3\n{task}");
        let config = TrainConfig::from_toml_str(&text, Path::new("config.toml")).unwrap();
        trained_assets(&config.task.kind)
    }

    fn asset(symbol: &str, before: Option<i64>) -> TrainedAsset {
        TrainedAsset {
            symbol: symbol.into(),
            before,
        }
    }

    /// What each task kind trained on: the split's training assets, cut at `test_start`
    /// where there is one; every asset of a regime or timeframe task before its cut; the
    /// union of a mixture's components; nothing for synthetic markets.
    #[test]
    fn trained_assets_follow_the_task_and_its_split() {
        let multi = "kind = \"multi-asset\"\nassets = [\"BTC\", \"ETH\", \"SOL\"]\n";
        assert_eq!(
            trained(&format!("{multi}split = {{ held_out = [\"SOL\"] }}\n")),
            [asset("BTC", None), asset("ETH", None)]
        );
        assert_eq!(
            trained(&format!(
                "{multi}split = {{ held_out = [\"ETH\"], test_start = 1000 }}\n"
            )),
            [asset("BTC", Some(1000)), asset("SOL", Some(1000))]
        );
        assert_eq!(
            trained(
                "kind = \"regime-windows\"\nassets = [\"BTC\", \"ETH\"]\ntest_start = 7\n\
                 trading = { max_steps = 50 }\nregime = { window = 60 }\n"
            ),
            [asset("BTC", Some(7)), asset("ETH", Some(7))]
        );
        assert_eq!(
            trained(
                "kind = \"timeframes\"\nasset = \"BTC\"\nintervals = [\"1h\", \"4h\"]\n\
                 test_start = 9\n"
            ),
            [asset("BTC", Some(9))]
        );
        assert_eq!(
            trained(
                "kind = \"mixture\"\n[[task.components]]\nweight = 1.0\nkind = \"synthetic-ar1\"\n\
                 [[task.components]]\nweight = 1.0\nkind = \"multi-asset\"\nassets = [\"BTC\"]\n\
                 split = { test_start = 5 }\n"
            ),
            [asset("BTC", Some(5))]
        );
        assert!(trained("kind = \"synthetic-ar1\"\n").is_empty());
    }

    #[test]
    fn bar_files_are_found_by_extension_in_any_case() {
        for name in ["a_1h.csv", "B_1h.CSV", "c.Parquet", "d.PQ"] {
            assert!(mrl::data::is_bar_file(Path::new(name)), "{name}");
        }
        for name in ["notes.txt", "csv", "e.csv.bak"] {
            assert!(!mrl::data::is_bar_file(Path::new(name)), "{name}");
        }
        let dir = tempfile::tempdir().unwrap();
        for name in ["B_1h.CSV", "a_1h.csv", "notes.txt"] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let names: Vec<String> = bar_files(&[dir.path().to_path_buf()])
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["B_1h.CSV", "a_1h.csv"]);
    }

    /// A run's config.toml that exists but does not load is an error naming it; a missing
    /// one is `None`.
    #[test]
    fn a_run_config_that_does_not_load_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_run_config(dir.path()).unwrap().is_none());
        let file = dir.path().join("config.toml");
        std::fs::write(&file, "iterations = \"many\"\n").unwrap();
        let err = load_run_config(dir.path()).unwrap_err();
        let text = crate::cli::error_chain(&err);
        assert!(text.contains(&file.display().to_string()), "{text}");
        // From the checkpoint directory (it holds agent.json), the run's file beside it.
        let checkpoint = dir.path().join("checkpoint");
        std::fs::create_dir(&checkpoint).unwrap();
        std::fs::write(checkpoint.join("agent.json"), "{}").unwrap();
        assert!(load_run_config(&checkpoint).is_err());
        // A run directory nested in another run's has no config of its own: it is not given
        // the parent's.
        let nested = dir.path().join("run2");
        std::fs::create_dir(&nested).unwrap();
        assert!(run_config_path(&nested).is_none());
        assert!(load_run_config(&nested).unwrap().is_none());
    }
}
