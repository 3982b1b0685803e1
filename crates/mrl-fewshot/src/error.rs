//! The error type of mrl-fewshot.

use std::path::PathBuf;

/// Everything that can go wrong in adaptation, meta-training and adapter files.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value out of its domain.
    #[error("invalid config: {field} = {value} ({reason})")]
    InvalidConfig {
        /// The field, dotted (`meta.inner.steps`).
        field: &'static str,
        /// The value given, formatted.
        value: String,
        /// What is expected.
        reason: &'static str,
    },
    /// `--resume` where there is no meta-training checkpoint to continue.
    #[error("nothing to resume in {dir}: {reason}; drop --resume to start a new run there")]
    NothingToResume {
        /// The run directory.
        dir: PathBuf,
        /// Why.
        reason: &'static str,
    },
    /// A series too short for the adaptation window or for one episode in it.
    #[error(
        "too few bars for adaptation: {what} has {available} bars, {needed} needed \
         ({warmup} warm-up + {max_steps} steps per episode + 1)"
    )]
    TooFewBars {
        /// The series or window.
        what: String,
        /// Bars available.
        available: usize,
        /// Bars needed.
        needed: usize,
        /// Feature warm-up bars.
        warmup: usize,
        /// Steps of one episode (`task.trading.max_steps`).
        max_steps: usize,
    },
    /// An adaptation window longer than the series it should come from.
    #[error("adaptation window of {bars} bars is longer than {what} ({available} bars)")]
    WindowBeyondSeries {
        /// The series.
        what: String,
        /// Bars asked for.
        bars: usize,
        /// Bars in the series.
        available: usize,
    },
    /// A held-out series too short for the benchmark's adaptation window and one evaluation
    /// window after it.
    #[error(
        "held-out series {what} has {available} bars; the benchmark needs {needed} \
         ({adaptation_bars} adaptation bars, then one evaluation window of {window_len} bars \
         and its next close)"
    )]
    HeldOutTooShort {
        /// The series (asset or market name).
        what: String,
        /// Bars in the series.
        available: usize,
        /// Bars needed.
        needed: usize,
        /// The adaptation window N.
        adaptation_bars: usize,
        /// Bars of one evaluation window.
        window_len: usize,
    },
    /// An adapter that does not fit the policy, or a target that cannot carry one.
    #[error("adapter does not fit the policy ({source_name}): {}", problems.join("; "))]
    AdapterMismatch {
        /// Where the adapter came from (a file, or `config`).
        source_name: String,
        /// One line per problem.
        problems: Vec<String>,
    },
    /// An adapter file that is not one.
    #[error("bad adapter file {path}: {reason}")]
    BadAdapterFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A class feature name that is not a feature of mrl-features.
    #[error("class {class}: unknown feature {feature:?} (known: {known})")]
    UnknownFeature {
        /// The class (`[classes.NAME]`).
        class: String,
        /// The name given.
        feature: String,
        /// The known names, comma-separated.
        known: String,
    },
    /// A class without features.
    #[error("class {class}: empty feature set (name at least one feature)")]
    EmptyFeatureSet {
        /// The class.
        class: String,
    },
    /// A class naming a feature twice.
    #[error("class {class}: feature {feature:?} named twice")]
    RepeatedFeature {
        /// The class.
        class: String,
        /// The feature.
        feature: String,
    },
    /// Class embeddings that do not fit the config or the policy.
    #[error("class embeddings do not fit ({source_name}): {}", problems.join("; "))]
    EmbeddingMismatch {
        /// Where the embeddings came from (a file, a class).
        source_name: String,
        /// One line per problem.
        problems: Vec<String>,
    },
    /// An embeddings file that is not one.
    #[error("bad class embeddings file {path}: {reason}")]
    BadEmbeddingFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A loss or gradient that is NaN or infinite; the parameters keep their last finite
    /// values.
    #[error("non-finite {what} at inner step {step}")]
    NonFinite {
        /// `loss` or `gradient norm`.
        what: &'static str,
        /// The inner step (0-based).
        step: usize,
    },
    /// A config file without the `[meta]` table or with a malformed one.
    #[error("meta config {path}: {source}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        source: toml::de::Error,
    },
    /// A file that could not be read or written.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A JSON file that could not be parsed or written.
    #[error("json error on {path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// From mrl-ppo (rollouts, gradients, configs, checkpoints).
    #[error(transparent)]
    Ppo(#[from] mrl_ppo::Error),
    /// From mrl-backtest (walk-forward evaluation).
    #[error(transparent)]
    Backtest(#[from] mrl_backtest::Error),
    /// From mrl-agent (the policy).
    #[error(transparent)]
    Agent(#[from] mrl_agent::Error),
    /// From mrl-env (tasks and trials).
    #[error(transparent)]
    Env(#[from] mrl_env::Error),
    /// From mrl-data (bar series).
    #[error(transparent)]
    Data(#[from] mrl_data::Error),
    /// From candle (tensor arithmetic).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl Error {
    /// [`Error::InvalidConfig`].
    pub(crate) fn invalid(field: &'static str, value: String, reason: &'static str) -> Self {
        Self::InvalidConfig {
            field,
            value,
            reason,
        }
    }

    /// A closure mapping an I/O error on `path`.
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The result type of mrl-fewshot.
pub type Result<T> = std::result::Result<T, Error>;
