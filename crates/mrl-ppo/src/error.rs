//! The error type of mrl-ppo.

use std::path::PathBuf;

/// Everything that can go wrong in advantage estimation, the PPO update, training and
/// checkpointing.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Two sequences that must have the same length do not.
    #[error("length mismatch: {what} has {found} entries, expected {expected}")]
    LengthMismatch {
        /// Which input.
        what: &'static str,
        /// The length expected.
        expected: usize,
        /// The length found.
        found: usize,
    },
    /// The last valid step of a sequence neither terminates nor is truncated, so there is no
    /// value to continue from.
    #[error("step {index} is the last valid step but does not end the sequence")]
    OpenEnd {
        /// Index of that step.
        index: usize,
    },
    /// A configuration value out of its domain.
    #[error("invalid config: {field} = {value} ({reason})")]
    InvalidConfig {
        /// The field, dotted (`ppo.clip`).
        field: &'static str,
        /// The value given, formatted.
        value: String,
        /// What is expected.
        reason: &'static str,
    },
    /// A loss or gradient that is NaN or infinite; training stops and the last good
    /// checkpoint is kept.
    #[error("non-finite {what} at iteration {iteration} (epoch {epoch}, minibatch {minibatch})")]
    NonFinite {
        /// `loss` or `gradient of <parameter>`.
        what: String,
        /// Training iteration (0-based).
        iteration: u64,
        /// Epoch within the update.
        epoch: usize,
        /// Minibatch within the epoch.
        minibatch: usize,
    },
    /// The optimiser was given parameters or a state that do not match.
    #[error("optimiser state mismatch: {reason}")]
    OptimizerMismatch {
        /// What differs.
        reason: String,
    },
    /// A checkpoint directory that cannot be resumed from.
    #[error("bad checkpoint at {path}: {reason}")]
    Checkpoint {
        /// The checkpoint directory or file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A resume was asked for where there is no checkpoint yet: the run directory is missing,
    /// holds no run, or the run has not written its first checkpoint.
    #[error("nothing to resume in {dir}: {reason}; start a new run there instead of resuming")]
    NothingToResume {
        /// The run directory.
        dir: PathBuf,
        /// Why there is nothing: what the directory lacks.
        reason: &'static str,
    },
    /// A file could not be read or written.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSON file could not be parsed or written.
    #[error("json error in {path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// A TOML config could not be parsed.
    #[error("toml error in {path}: {source}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: toml::de::Error,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The agent failed.
    #[error(transparent)]
    Agent(#[from] mrl_agent::Error),
    /// An environment failed.
    #[error(transparent)]
    Env(#[from] mrl_env::Error),
    /// Loading market data failed.
    #[error(transparent)]
    Data(#[from] mrl_data::Error),
}

/// Result with the mrl-ppo [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}
