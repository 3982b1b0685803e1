//! The error type of mrl-llm.
//!
//! A reply that cannot be parsed is *not* an error: it is a counted
//! [`ParseFailure`](crate::ParseFailure) value. Errors are what stops a call: a missing model
//! file, a bad GGUF file, a context overflow, a server that keeps failing.

use std::path::PathBuf;

/// Everything that can stop a model load, a generation, a server call or a context build.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The GGUF model file does not exist.
    #[error(
        "model file {path} not found: run scripts/fetch-smollm2, or point MRL_LLM_MODEL at a GGUF file"
    )]
    ModelNotFound {
        /// Where the file was looked for.
        path: PathBuf,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The GGUF file could not be read, or lacks what the model needs.
    #[error("{path}: bad GGUF model: {reason}")]
    BadModel {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A GGUF metadata key is missing or has the wrong type.
    #[error("GGUF metadata key `{key}` is missing or not {expected}")]
    Metadata {
        /// The key.
        key: &'static str,
        /// The type it should have.
        expected: &'static str,
    },
    /// The tokenizer named by the GGUF file is not supported, or building it failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A tensor operation of the model failed.
    #[error("model: {0}")]
    Candle(#[from] candle_core::Error),
    /// The prompt plus the token budget does not fit the model's context.
    #[error(
        "prompt of {prompt_tokens} tokens plus {max_new_tokens} new tokens exceeds the context of {context} tokens"
    )]
    ContextOverflow {
        /// Tokens in the prompt.
        prompt_tokens: usize,
        /// The token budget asked for.
        max_new_tokens: usize,
        /// The model's usable context.
        context: usize,
    },
    /// A generation or server setting is out of range.
    #[error("invalid setting {field} = {value}: expected {expected}")]
    InvalidSetting {
        /// The setting.
        field: &'static str,
        /// Its value, as text.
        value: String,
        /// The accepted range.
        expected: &'static str,
    },
    /// The server URL cannot be used.
    #[error("invalid server URL {url}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The server did not answer within the timeout (after every retry).
    #[error("{url}: no answer within {timeout_ms} ms after {attempts} attempt(s)")]
    Timeout {
        /// The endpoint.
        url: String,
        /// The per-request timeout.
        timeout_ms: u64,
        /// Attempts made.
        attempts: u32,
    },
    /// The server could not be reached (after every retry).
    #[error("{url}: cannot connect after {attempts} attempt(s): {reason}")]
    Transport {
        /// The endpoint.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The transport error.
        reason: String,
    },
    /// The server kept rate-limiting the request (HTTP 429).
    #[error("{url}: rate limited (HTTP 429) after {attempts} attempt(s)")]
    RateLimited {
        /// The endpoint.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The server's last `Retry-After`, in ms, if it sent one.
        retry_after_ms: Option<u64>,
    },
    /// The server answered with an error status (not retried for 4xx; after every retry for 5xx).
    #[error("{url}: HTTP {status} after {attempts} attempt(s): {body}")]
    Http {
        /// The endpoint.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// Attempts made.
        attempts: u32,
        /// The start of the response body (at most 200 characters).
        body: String,
    },
    /// The response body is larger than the configured cap.
    #[error("{url}: response exceeds the cap of {limit_bytes} bytes")]
    ResponseTooLarge {
        /// The endpoint.
        url: String,
        /// The cap.
        limit_bytes: usize,
    },
    /// The response is not an OpenAI chat completion.
    #[error("{url}: not a chat completion: {reason}")]
    BadResponse {
        /// The endpoint.
        url: String,
        /// What is missing or malformed.
        reason: String,
    },
    /// A line of the news file is not a timestamped headline.
    #[error("{path}, line {line}: {reason}")]
    BadNews {
        /// The news file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A decision index outside the series, or before enough history exists.
    #[error("decision bar {index} is not usable: {reason}")]
    BadDecisionBar {
        /// The 0-based bar index.
        index: usize,
        /// Why.
        reason: String,
    },
    /// A config file cannot be read as the settings it should hold.
    #[error("config {path}: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The output directory already holds training rounds and no resume was asked for.
    #[error(
        "{path} already holds {rounds} trained round(s): pass --resume to continue, or choose another directory"
    )]
    OutputExists {
        /// The directory.
        path: PathBuf,
        /// Complete rounds found.
        rounds: usize,
    },
    /// A resumed run's config differs from the one saved with its rounds.
    #[error(
        "{path} was written by another config: resume with the same settings (diff the two files)"
    )]
    ConfigMismatch {
        /// The saved config.
        path: PathBuf,
    },
    /// No data to train or evaluate on.
    #[error("no usable data: {reason}")]
    NoData {
        /// Why.
        reason: String,
    },
    /// The backtester failed.
    #[error(transparent)]
    Backtest(#[from] mrl_backtest::Error),
    /// Computing the market features failed.
    #[error(transparent)]
    Features(#[from] mrl_features::Error),
    /// A market-data operation failed.
    #[error(transparent)]
    Data(#[from] mrl_data::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An [`Error::InvalidSetting`] for a numeric value.
    pub(crate) fn setting(
        field: &'static str,
        value: impl ToString,
        expected: &'static str,
    ) -> Self {
        Self::InvalidSetting {
            field,
            value: value.to_string(),
            expected,
        }
    }
}
