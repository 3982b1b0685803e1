//! The crate's error type.

use std::ops::Range;

/// Everything that can go wrong while computing or normalising features.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A close price that is zero, negative, NaN or infinite. `row` is 1-based.
    #[error("close at row {row} is {value}: prices must be finite and > 0")]
    NonPositivePrice {
        /// 1-based row (bar index + 1) of the offending close.
        row: usize,
        /// The offending value.
        value: f64,
    },
    /// Valid prices whose ratios overflow (for example 1e-300 followed by 1e300), so that a
    /// feature would not be finite. `row` is 1-based.
    #[error("feature {feature} at row {row} is not finite (price ratios overflow)")]
    NonFiniteFeature {
        /// 1-based row (bar index + 1).
        row: usize,
        /// Name of the feature, one of [`FEATURE_NAMES`](crate::FEATURE_NAMES).
        feature: &'static str,
    },
    /// A feature name that is not one of [`FEATURE_NAMES`](crate::FEATURE_NAMES).
    #[error("unknown feature {name:?}")]
    UnknownFeature {
        /// The name that was asked for.
        name: String,
    },
    /// A feature column index ≥ [`N_FEATURES`](crate::N_FEATURES).
    #[error("feature index {index} is out of range (there are {n_features} features)")]
    FeatureIndexOutOfRange {
        /// The index that was asked for.
        index: usize,
        /// The number of features.
        n_features: usize,
    },
    /// A bar range that is empty, reversed, reaches past the end of the matrix, or (for
    /// fitting a normaliser) starts inside the warm-up.
    #[error("bar range {start}..{end} is invalid: need {min_start} ≤ start < end ≤ {n_bars}")]
    InvalidBarRange {
        /// Start of the requested range.
        start: usize,
        /// End (exclusive) of the requested range.
        end: usize,
        /// Smallest allowed start.
        min_start: usize,
        /// Number of bars in the matrix.
        n_bars: usize,
    },
    /// A [`FeatureStream`](crate::FeatureStream) asked to append to a matrix that does not
    /// hold exactly the bars the stream has seen.
    #[error("stream has seen {stream_bars} bars but the matrix holds {matrix_bars}")]
    Misaligned {
        /// Bars consumed by the stream.
        stream_bars: usize,
        /// Rows held by the matrix.
        matrix_bars: usize,
    },
}

impl Error {
    pub(crate) fn invalid_range(range: &Range<usize>, min_start: usize, n_bars: usize) -> Self {
        Error::InvalidBarRange {
            start: range.start,
            end: range.end,
            min_start,
            n_bars,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
