//! The error type of mrl-env.

/// Everything that can go wrong when building, resetting or stepping an environment.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An action outside `0..n_actions`.
    #[error("action {action} is out of range, the env has {n_actions} actions")]
    InvalidAction {
        /// The action given.
        action: usize,
        /// Number of actions of the env.
        n_actions: usize,
    },
    /// `step` was called before `reset` or after the episode ended.
    #[error("step called on an env whose episode is not running; call reset first")]
    EpisodeNotRunning,
    /// A series too short to hold one episode after the feature warm-up.
    #[error(
        "series of {len} bars is too short: {needed} bars needed ({warmup} warm-up + {max_steps} steps + 1)"
    )]
    SeriesTooShort {
        /// Bars in the series.
        len: usize,
        /// Bars needed for one episode.
        needed: usize,
        /// Warm-up rows before the first valid observation.
        warmup: usize,
        /// Steps of an episode.
        max_steps: usize,
    },
    /// An explicit episode start outside the valid range.
    #[error("episode start {start} is outside the valid range {min}..={max}")]
    InvalidStart {
        /// The start given.
        start: usize,
        /// First valid start (the feature warm-up).
        min: usize,
        /// Last valid start.
        max: usize,
    },
    /// [`Env::reset`](crate::Env::reset) after every scheduled start was used.
    #[error("all {scheduled} scheduled episode starts are used; schedule more")]
    StartsExhausted {
        /// Number of starts that were scheduled.
        scheduled: usize,
    },
    /// A configuration value out of its domain.
    #[error("invalid config: {field} = {value} ({reason})")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// The value given, formatted.
        value: String,
        /// What is expected.
        reason: &'static str,
    },
    /// A batch of actions whose length is not the number of envs.
    #[error("expected {expected} actions, got {found}")]
    ActionCountMismatch {
        /// Actions given.
        found: usize,
        /// Number of envs.
        expected: usize,
    },
    /// Distributions or envs in one batch disagree on their spaces.
    #[error("{what} mismatch: expected {expected}, found {found}")]
    SpaceMismatch {
        /// `obs_dim` or `n_actions`.
        what: &'static str,
        /// The value of the distribution.
        expected: usize,
        /// The value of the sampled env.
        found: usize,
    },
    /// Restoring a saved state into an object of another shape.
    #[error("saved state does not fit: {reason}")]
    StateMismatch {
        /// What differs.
        reason: String,
    },
    /// A feature matrix whose rows are not the bars of its series.
    #[error("feature matrix has {rows} rows for a series of {bars} bars")]
    FeatureRowsMismatch {
        /// Rows of the feature matrix.
        rows: usize,
        /// Bars of the series.
        bars: usize,
    },
    /// A task distribution whose train or test split holds no task.
    #[error("{distribution}: the {split:?} split has no task (a task needs {needed} bars)")]
    EmptySplit {
        /// The distribution's name.
        distribution: String,
        /// The empty split.
        split: crate::Split,
        /// Bars one task needs.
        needed: usize,
    },
    /// A held-out asset that is not among the assets given.
    #[error("held-out asset {symbol} is not among the assets")]
    UnknownAsset {
        /// The symbol given.
        symbol: String,
    },
    /// A dynamic programme whose state space is too large to tabulate.
    #[error(
        "the bayes-optimal bandit policy for k = {n_arms} arms and n = {n_pulls} pulls needs at least {states} canonical states, more than the limit of {limit}"
    )]
    StateSpaceTooLarge {
        /// Arms k.
        n_arms: usize,
        /// Pulls n.
        n_pulls: usize,
        /// Canonical states counted before the count passed `limit` (a lower bound).
        states: u128,
        /// The most states built.
        limit: usize,
    },
    /// A component of a mixture of task distributions whose spaces differ from the first
    /// component's.
    #[error(
        "mixture component {index} ({name}) has {what} = {found}, but component 0 has {expected}"
    )]
    MixtureMismatch {
        /// Position of the component in the mixture.
        index: usize,
        /// The component's name.
        name: String,
        /// `obs_dim` or `n_actions`.
        what: &'static str,
        /// The value of component 0.
        expected: usize,
        /// The value of this component.
        found: usize,
    },
    /// A bar index past the end of the closes an oracle was given.
    #[error("bar {bar} is outside the {len} closes given")]
    BarOutOfRange {
        /// The bar asked about.
        bar: usize,
        /// Number of closes.
        len: usize,
    },
    /// A regime oracle given the closes of another series than the one its states describe.
    #[error("the oracle knows the regime of {states} bars but was given {closes} closes")]
    OracleSeriesMismatch {
        /// Bars whose state the oracle knows.
        states: usize,
        /// Closes given.
        closes: usize,
    },
    /// Building or slicing a bar series failed.
    #[error(transparent)]
    Data(#[from] mrl_data::Error),
    /// Computing features failed.
    #[error(transparent)]
    Features(#[from] mrl_features::Error),
}

/// Result with the mrl-env [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
