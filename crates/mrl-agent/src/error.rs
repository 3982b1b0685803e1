//! The crate's error type: one enum whose variants name the problem and the values involved.

use std::path::PathBuf;

/// Everything that can go wrong in mrl-agent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration field has a value the agent cannot be built with.
    #[error("invalid config: {field} = {value} ({reason})")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// Its value, formatted.
        value: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// A slice handed to the agent has the wrong length.
    #[error("{name}: length {actual}, expected {expected}")]
    LengthMismatch {
        /// Which argument.
        name: &'static str,
        /// Required length.
        expected: usize,
        /// Length received.
        actual: usize,
    },
    /// A tensor handed to the agent has the wrong shape.
    #[error("{name}: shape {actual:?}, expected {expected:?}")]
    ShapeMismatch {
        /// Which tensor.
        name: String,
        /// Required shape.
        expected: Vec<usize>,
        /// Shape received.
        actual: Vec<usize>,
    },
    /// A sequence batch with no time steps or no trials.
    #[error("empty sequence batch: batch size {batch_size}, length {seq_len}")]
    EmptySequence {
        /// Trials in the batch.
        batch_size: usize,
        /// Steps per trial.
        seq_len: usize,
    },
    /// A previous action outside `0..n_actions`.
    #[error("trial {trial}: previous action {action} out of range for {n_actions} actions")]
    ActionOutOfRange {
        /// Row (trial) index in the batch.
        trial: usize,
        /// The action received.
        action: usize,
        /// Number of actions of the policy.
        n_actions: usize,
    },
    /// A trial index outside the rollout batch.
    #[error("trial {trial} out of range for batch size {batch_size}")]
    TrialOutOfRange {
        /// The index received.
        trial: usize,
        /// The batch size of the workspace.
        batch_size: usize,
    },
    /// The policy produced NaN or infinite logits (diverged weights or non-finite inputs).
    #[error("trial {trial}: non-finite logits {logits:?}")]
    NonFiniteLogits {
        /// Row (trial) index in the batch.
        trial: usize,
        /// The logits of that row.
        logits: Vec<f32>,
    },
    /// Tensors (a checkpoint or a weight map) do not match the expected parameter set.
    #[error("{source_name}: parameters do not match: {}", problems.join("; "))]
    ParameterMismatch {
        /// Where the tensors came from (a file path or "tensor map").
        source_name: String,
        /// One line per problem, e.g. `gru.weight_hh_l0: shape [384, 128] in file, expected [96, 32]`.
        problems: Vec<String>,
    },
    /// A checkpoint sidecar that is not ours or not readable.
    #[error("checkpoint sidecar {path}: {reason}")]
    BadSidecar {
        /// Sidecar path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A checkpoint holds another kind of network than the caller asked for.
    #[error("checkpoint {path}: holds a {found} policy, expected {expected}")]
    WrongKind {
        /// Checkpoint (weights) path.
        path: PathBuf,
        /// The kind the caller asked for (`"rl2"`, `"mlp"`, `"transformer"`).
        expected: &'static str,
        /// The kind the sidecar names.
        found: &'static str,
    },
    /// An operation this kind of network does not have.
    #[error("{kind} policy: {operation} is not available ({reason})")]
    Unsupported {
        /// The network kind.
        kind: &'static str,
        /// What was asked for.
        operation: &'static str,
        /// Why, and what to use instead.
        reason: &'static str,
    },
    /// A file system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`"write"`, `"rename"`, ...).
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// JSON (de)serialisation of a sidecar failed.
    #[error("json {path}: {source}")]
    Json {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// safetensors (de)serialisation failed.
    #[error("safetensors {path}: {reason}")]
    Safetensors {
        /// The path involved.
        path: PathBuf,
        /// The underlying error, formatted.
        reason: String,
    },
    /// An error from candle (tensor ops, devices).
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Result with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Checks a slice length; the error names the argument.
pub(crate) fn check_len(name: &'static str, actual: usize, expected: usize) -> Result<()> {
    if actual == expected {
        Ok(())
    } else {
        Err(Error::LengthMismatch {
            name,
            expected,
            actual,
        })
    }
}
