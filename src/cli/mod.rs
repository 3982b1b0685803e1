//! Command-line definitions and dispatch. Each subcommand lives in its own module.

mod data;
mod eval;
mod features;
mod train;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Meta-reinforcement learning for trading: RL² agents, PPO meta-training, walk-forward
/// backtests.
#[derive(Debug, Parser)]
#[command(name = "mrl", version, about, propagate_version = true)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). `RUST_LOG` overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings and errors in the log.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
}

/// Installs the `tracing` subscriber on stderr.
pub fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .compact()
        .init();
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Data(cmd) => data::run(cmd),
        Command::Features(args) => features::run(args),
        Command::Train(args) => train::run(args),
        Command::Eval(cmd) => eval::run(cmd),
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

/// Writes `text` to stdout (the CLI's one place that prints results).
pub fn print(text: impl std::fmt::Display) {
    #[allow(clippy::print_stdout)]
    {
        println!("{text}");
    }
}
