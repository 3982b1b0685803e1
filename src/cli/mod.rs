//! Command-line definitions and dispatch. Each subcommand lives in its own module.

mod adapt;
mod backtest;
mod data;
mod eval;
mod features;
mod fewshot;
mod llm;
mod quickstart;
mod study;
mod train;

use std::path::Path;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Meta-reinforcement learning for trading: RL² agents, PPO meta-training, walk-forward
/// backtests.
#[derive(Debug, Parser)]
#[command(name = "mrl", version, about, propagate_version = true)]
pub struct Cli {
    /// More log output (-v: info, -vv: debug, -vvv: trace). `RUST_LOG` overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors in the log.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The main job: meta-train RL² and the MLP on hidden-φ AR(1) markets (or `--config`),
    /// then a walk-forward backtest with baselines, the oracle and charts on held-out markets.
    Run(quickstart::RunArgs),
    /// Market data: generate, check, fetch.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Compute the 11 features of a series and write them as CSV (warm-up rows dropped).
    Features(features::FeaturesArgs),
    /// Meta-train an agent with PPO on a task distribution (a TOML config).
    Train(train::TrainArgs),
    /// Evaluate a trained agent.
    #[command(subcommand)]
    Eval(eval::EvalCommand),
    /// Walk-forward backtest of a trained agent on one series, beside the baselines.
    Backtest(backtest::BacktestArgs),
    /// Train RL² and the MLP the same way over several seeds and compare them on held-out
    /// markets: per-seed and pooled tables with intervals, a verdict, charts.
    Study(study::StudyArgs),
    /// Meta-learn an initialisation for few-shot adaptation (Reptile or first-order MAML; an
    /// `mrl train` config with a `[meta]` table).
    MetaTrain(adapt::MetaTrainArgs),
    /// Adapt a trained agent to a new asset with K gradient steps on its first bars; writes
    /// a run directory `mrl backtest` loads.
    Adapt(adapt::AdaptArgs),
    /// The language-model trader (SmolLM2 embedded, or an OpenAI-compatible server).
    #[command(subcommand)]
    Llm(llm::LlmCommand),
}

/// Installs the `tracing` subscriber on stderr.
pub fn init_logging(verbose: u8, quiet: bool) {
    // Results and progress bars go to stdout/stderr directly; the log shows warnings unless
    // asked for more.
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .compact()
        .init();
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => quickstart::run(args),
        Command::Backtest(args) => backtest::run_backtest(args),
        Command::Data(cmd) => data::run(cmd),
        Command::Features(args) => features::run(args),
        Command::Train(args) => train::run(args),
        Command::Eval(cmd) => eval::run(cmd),
        Command::Study(args) => study::run(args),
        Command::MetaTrain(args) => adapt::run_meta_train(args),
        Command::Adapt(args) => adapt::run_adapt(args),
        Command::Llm(cmd) => llm::run(cmd),
    }
}

/// The error and its causes, outermost first, joined by ": ", skipping a cause whose text the
/// previous message already ends with (our errors print their source inline).
pub fn error_chain(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// Loads a config file with `load`, its errors naming the file: a parse error names it
/// already; a validation error (`invalid config: gae.gamma = 1.5 (must lie in [0, 1])`)
/// gets `PATH: ` in front, so that the message says which file holds the bad value.
///
/// # Errors
/// `load`'s error, with the path as context when its message lacks it.
pub fn load_config<T, E>(path: &Path, load: impl FnOnce(&Path) -> Result<T, E>) -> anyhow::Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    load(path).map_err(|err| {
        let shown = path.display().to_string();
        if err.to_string().contains(&shown) {
            anyhow::Error::new(err)
        } else {
            anyhow::Error::new(err).context(shown)
        }
    })
}

/// Writes `text` to stdout (the CLI's one place that prints results). When the reader has
/// gone away (`mrl … | head`), the process ends quietly with status 0, as command-line
/// tools do on a broken pipe, instead of panicking; any other write error ends it with a
/// message and status 1. Results files are written before their summary is printed.
pub fn print(text: impl std::fmt::Display) {
    use std::io::Write;
    let written = writeln!(std::io::stdout().lock(), "{text}");
    if let Err(err) = written {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        #[allow(clippy::print_stderr)]
        {
            eprintln!("error: writing to stdout: {err}");
        }
        std::process::exit(1);
    }
}
