//! The error type of mrl-data.

use std::fmt;
use std::path::PathBuf;

use crate::time::TimeUnit;

/// Everything that can go wrong when building, reading, writing, generating or fetching bars.
///
/// Row numbers (`row`) are 1-based data rows: the first bar of a series is row 1, which is
/// line 2 of a CSV file with a header.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A price (open, high, low or close) is zero, negative, NaN or infinite.
    #[error("row {row}: {field} is {}, expected a finite price > 0", ShortFloat(*value))]
    NonPositivePrice {
        /// 1-based data row.
        row: usize,
        /// Which price column.
        field: &'static str,
        /// The offending value.
        value: f64,
    },
    /// Volume is negative, NaN or infinite.
    #[error("row {row}: volume is {}, expected a finite value >= 0", ShortFloat(*value))]
    InvalidVolume {
        /// 1-based data row.
        row: usize,
        /// The offending value.
        value: f64,
    },
    /// `high < max(open, close)`.
    #[error(
        "row {row}: high {} is below max(open, close) = {}",
        ShortFloat(*high),
        ShortFloat(*bound)
    )]
    HighBelowBody {
        /// 1-based data row.
        row: usize,
        /// The bar's high.
        high: f64,
        /// `max(open, close)`.
        bound: f64,
    },
    /// `low > min(open, close)`.
    #[error(
        "row {row}: low {} is above min(open, close) = {}",
        ShortFloat(*low),
        ShortFloat(*bound)
    )]
    LowAboveBody {
        /// 1-based data row.
        row: usize,
        /// The bar's low.
        low: f64,
        /// `min(open, close)`.
        bound: f64,
    },
    /// Timestamps must strictly increase.
    #[error("row {row}: timestamp {timestamp} is not after the previous bar's {previous}")]
    NonIncreasingTime {
        /// 1-based data row.
        row: usize,
        /// This bar's timestamp (ms).
        timestamp: i64,
        /// The previous bar's timestamp (ms).
        previous: i64,
    },
    /// Columns of a series have different lengths.
    #[error("column {field} has {found} values, expected {expected}")]
    LengthMismatch {
        /// The short or long column.
        field: &'static str,
        /// Its length.
        found: usize,
        /// The length of `timestamp`.
        expected: usize,
    },
    /// An operation needs more bars than the series has.
    #[error("series has {len} bars, {needed} needed: {what}")]
    TooShort {
        /// Bars in the series.
        len: usize,
        /// Bars needed.
        needed: usize,
        /// What needed them.
        what: &'static str,
    },
    /// A value of a file could not be parsed.
    #[error("row {row}: field {field}: cannot parse {value:?}: {reason}")]
    Parse {
        /// 1-based data row.
        row: usize,
        /// Column name.
        field: String,
        /// The raw text (truncated to 64 characters).
        value: String,
        /// Why it failed.
        reason: String,
    },
    /// A column of a bar file has a type that cannot hold its field (a boolean price, a list of
    /// timestamps).
    #[error("column {column}: type {dtype} is not supported, expected {expected}")]
    UnsupportedColumnType {
        /// The bar field (`timestamp`, `open`, …).
        column: &'static str,
        /// The column's type as the file declares it.
        dtype: String,
        /// The types that field accepts.
        expected: &'static str,
    },
    /// A file that cannot be decoded as its format: corrupt, truncated, or another format under
    /// its extension.
    #[error("unreadable {format} file (corrupt, truncated or not {format}): {detail}")]
    Unreadable {
        /// The format the extension promised (`parquet`).
        format: &'static str,
        /// What the decoder reported.
        detail: String,
    },
    /// A bar file lacks one of the six columns (matched by name, in any order and case).
    #[error(
        "columns are {found:?}, expected [\"timestamp\", \"open\", \"high\", \"low\", \"close\", \"volume\"] in any order: no column {column:?}"
    )]
    MissingColumn {
        /// The column not found.
        column: &'static str,
        /// The columns found (at most 32).
        found: Vec<String>,
    },
    /// A bar file names one of the six columns twice.
    #[error("columns are {found:?}: column {column:?} appears more than once")]
    DuplicateColumn {
        /// The repeated column.
        column: &'static str,
        /// The columns found (at most 32).
        found: Vec<String>,
    },
    /// An epoch timestamp in no unit that gives a plausible date (see `TimeUnit::detect`).
    #[error(
        "row {row}: timestamp {value} fits no unit: as seconds, milliseconds, microseconds or \
         nanoseconds since the epoch it is no date between 1970-03-26 and 2200-01-01 (or \
         1740 and 1969-10-08); values this near the epoch are ambiguous"
    )]
    ImplausibleTimestamp {
        /// 1-based data row.
        row: usize,
        /// The raw value.
        value: i64,
    },
    /// An epoch timestamp in another unit than the file's first row.
    #[error(
        "row {row}: timestamp {value} is in {found}, but row 1 is in {expected}; a file must use one unit"
    )]
    TimeUnitMismatch {
        /// 1-based data row.
        row: usize,
        /// The raw value.
        value: i64,
        /// The unit this value's magnitude implies.
        found: TimeUnit,
        /// The unit of row 1.
        expected: TimeUnit,
    },
    /// A file holds no bars: it is empty, or has a header and no rows.
    #[error("no bars: {reason}")]
    NoBars {
        /// What the file holds instead.
        reason: &'static str,
    },
    /// A parameter of a generator, resampler or client is out of range.
    #[error("invalid {name} = {value}: {reason}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// Its value, printed.
        value: String,
        /// What is allowed.
        reason: String,
    },
    /// A file-level failure, wrapping the cause with the path.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong in it.
        #[source]
        source: Box<Error>,
    },
    /// An I/O failure.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// polars failed to read or write a file.
    #[error("polars: {0}")]
    Polars(String),
    /// Bybit answered with a non-zero `retCode` (a rejected request, not a transport failure).
    #[error("bybit api error {ret_code}: {ret_msg}")]
    BybitApi {
        /// Bybit's `retCode` (e.g. 10001 for a bad parameter, 10006 for too many visits).
        ret_code: i64,
        /// Bybit's `retMsg`.
        ret_msg: String,
    },
    /// HTTP 429: the server asked the client to slow down.
    #[error("rate limited (http 429){}", retry_after_ms.map(|ms| format!(", retry after {ms} ms")).unwrap_or_default())]
    RateLimited {
        /// The wait the server asked for (`Retry-After` or the rate-limit reset time), if any.
        retry_after_ms: Option<u64>,
    },
    /// A non-success HTTP status other than 429.
    #[error("http status {status}: {body_snippet}")]
    Http {
        /// The status code.
        status: u16,
        /// The start of the response body (at most 200 characters).
        body_snippet: String,
    },
    /// The request did not complete: connection refused or reset, timeout, broken body.
    #[error("{}: {detail}", if *timeout { "request timed out" } else { "request failed" })]
    Transport {
        /// What happened, with the chain of causes.
        detail: String,
        /// Whether the time limit ran out.
        timeout: bool,
    },
    /// A response body that is not the expected JSON: names the field, row or parse error.
    #[error("malformed response: {detail}")]
    MalformedResponse {
        /// What was wrong and where (e.g. `result.list[3][2] (high): cannot parse "x"`).
        detail: String,
    },
    /// A retryable failure persisted through every attempt.
    #[error("gave up after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// Attempts made (first try + retries).
        attempts: u32,
        /// The last failure.
        #[source]
        last: Box<Error>,
    },
    /// A fetch finished without a single bar in the requested range.
    #[error("no bars for {symbol} between {start_ms} and {end_ms} ms")]
    EmptyFetch {
        /// The symbol asked for.
        symbol: String,
        /// Range start (ms, inclusive).
        start_ms: i64,
        /// Range end (ms, inclusive).
        end_ms: i64,
    },
}

/// An `f64` printed short and exact: the shortest text that reads back to the same bits, in
/// plain decimals for magnitudes in [1e-4, 1e16) (`57953.86`, `0.5`, `0`, `-100.5`, `NaN`) and
/// in scientific notation otherwise (`1e-300`, `1.5e20`), so no value prints as hundreds of
/// zeros.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ShortFloat(pub(crate) f64);

impl fmt::Display for ShortFloat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let x = self.0;
        if x == 0.0 || !x.is_finite() || (1e-4..1e16).contains(&x.abs()) {
            write!(f, "{x}")
        } else {
            write!(f, "{x:e}")
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps `self` with the file it came from.
    pub fn in_file(self, path: impl Into<PathBuf>) -> Self {
        Error::File {
            path: path.into(),
            source: Box::new(self),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_short_and_exact() {
        for (x, text) in [
            (57_953.86, "57953.86"),
            (-100.5, "-100.5"),
            (0.0, "0"),
            (101.0, "101"),
            (1e-4, "0.0001"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-inf"),
            (1e15, "1000000000000000"),
            (1e-300, "1e-300"),
            (-1.6420789394991747e-200, "-1.6420789394991747e-200"),
            (1.5e20, "1.5e20"),
            (f64::MAX, "1.7976931348623157e308"),
            (5e-324, "5e-324"),
        ] {
            let shown = ShortFloat(x).to_string();
            assert_eq!(shown, text);
            if x.is_finite() {
                assert_eq!(
                    shown.parse::<f64>().unwrap().to_bits(),
                    x.to_bits(),
                    "{text}"
                );
            }
        }
        let err = Error::LowAboveBody {
            row: 50,
            low: 57_555.0,
            bound: 1e-300,
        };
        assert_eq!(
            err.to_string(),
            "row 50: low 57555 is above min(open, close) = 1e-300"
        );
    }
}
