//! The crate's error type: one enum whose variants name the problem and the values involved.

use std::path::PathBuf;

/// Everything that can go wrong in a backtest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration field has a value the backtest cannot run with.
    #[error("invalid config: {field} = {value} ({reason})")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// Its value, formatted.
        value: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// The series cannot hold the feature warm-up, the adaptation episodes and one
    /// evaluation step before its last bar.
    #[error(
        "series too short: {len} bars, test period starts at bar {test_start}; needs \
         {warmup} warm-up bars + {adaptation_bars} adaptation bars before the test start \
         and at least 2 bars from the test start on (window length {window_len})"
    )]
    SeriesTooShort {
        /// Bars in the series.
        len: usize,
        /// First bar of the test period.
        test_start: usize,
        /// Bars the features need before an episode may start.
        warmup: usize,
        /// `adaptation_episodes · adaptation_len`.
        adaptation_bars: usize,
        /// Bars per evaluation window.
        window_len: usize,
    },
    /// The policy's network does not read the inputs the trading env writes.
    #[error(
        "policy {name} does not fit the env: it reads {policy_obs} observations and \
         {policy_actions} actions (input {policy_input}), the env gives {env_obs} \
         observations and {env_actions} actions (input {env_input})"
    )]
    InputMismatch {
        /// Which policy (`rl2`, `mlp`).
        name: &'static str,
        /// Observation width of the policy.
        policy_obs: usize,
        /// Actions of the policy.
        policy_actions: usize,
        /// Input row width of the policy.
        policy_input: usize,
        /// Observation width of the env.
        env_obs: usize,
        /// Actions of the env.
        env_actions: usize,
        /// Input row width of the env.
        env_input: usize,
    },
    /// No series could be evaluated.
    #[error("no series to evaluate ({skipped} skipped)")]
    NoSeries {
        /// Series skipped because of an error.
        skipped: usize,
    },
    /// The environment failed (bad start, config, data).
    #[error("env: {0}")]
    Env(#[from] mrl_env::Error),
    /// The policy failed (non-finite logits, shapes).
    #[error("agent: {0}")]
    Agent(#[from] mrl_agent::Error),
    /// Reading or writing a report file failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was attempted (`create`, `write`, `rename`).
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Serialising the report failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// Drawing a chart failed.
    #[error("chart {path}: {reason}")]
    Plot {
        /// The chart file.
        path: PathBuf,
        /// What plotters reported.
        reason: String,
    },
}

/// Result with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
