//! Timestamps in files: epoch numbers in any of four units, or ISO 8601 / RFC 3339 text,
//! all brought to the milliseconds a [`BarSeries`](crate::BarSeries) holds; see [`TimeUnit`].

use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// 2200-01-01T00:00:00Z in seconds since the epoch: the latest time a detected timestamp may
/// hold; a thousandth of it (about 84 days) is the least distance from the epoch.
pub const LATEST_SECONDS: i64 = 7_258_118_400;

/// The text forms a timestamp may take, for error messages.
pub const TEXT_FORMS: &str = "RFC 3339 (2024-01-01T00:00:00Z, 2024-01-01T01:00:00+01:00), \
    ISO 8601 without an offset, read as UTC (2024-01-01T00:00:00, 2024-01-01 00:00:00, \
    2024-01-01T00:00) or a date (2024-01-01)";

/// Naive (offset-free) date-time layouts tried after RFC 3339, read as UTC.
const NAIVE_LAYOUTS: [&str; 4] = [
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
];

/// The unit of an epoch number, and how files' timestamps are read.
///
/// Exchange exports write bar times as seconds, milliseconds or (some public archives)
/// microseconds since the Unix epoch; Parquet writers also use nanoseconds. Read as
/// milliseconds, seconds land in January 1970 and microseconds in the year 56 971, and every
/// calendar built on them is wrong. So the unit is *detected*, from magnitudes:
///
/// | unit | `|value|` in | dates |
/// |------|--------------|-------|
/// | seconds | [7.26e6, 7.26e9) | 1970-03-26 .. 2200-01-01 |
/// | milliseconds | [7.26e9, 7.26e12) | the same |
/// | microseconds | [7.26e12, 7.26e15) | the same |
/// | nanoseconds | [7.26e15, 7.26e18) | the same |
///
/// The bounds are 2200-01-01 ([`LATEST_SECONDS`] = 7 258 118 400 s) and a thousandth of it,
/// so the four bands tile the numbers without overlap: each value has at most one unit that
/// puts it between late March 1970 and 2200 (or, negative, between early October 1969 and
/// 1740). Values nearer the epoch than 84 days in seconds (0, 3 600 000, …) fit no unit: in
/// seconds they are 1970, in milliseconds they are January 1970, and no market data is that
/// old, so they are refused rather than guessed.
///
/// A file's unit is that of its first row; a later row in another unit is an error naming
/// the row, the value and both units ([`Error::TimeUnitMismatch`]). Converting to
/// milliseconds multiplies seconds by 1000 and floors microseconds and nanoseconds to the
/// millisecond.
///
/// Text timestamps are read with `chrono` in these forms ([`TEXT_FORMS`]):
/// RFC 3339 with an offset or `Z` (`2024-01-01T00:00:00Z`, `2024-01-01T01:00:00+01:00`,
/// `2024-01-01T00:00:00.250Z`, `2024-01-01 00:00:00+00:00`), ISO 8601 without an offset
/// (`2024-01-01T00:00:00`, `2024-01-01 00:00:00`, `2024-01-01T00:00`, read as UTC) and a
/// bare date (`2024-01-01`, midnight UTC). A column mixes no forms: all numbers or all text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TimeUnit {
    /// Seconds since the epoch (Unix time).
    Seconds,
    /// Milliseconds since the epoch: what [`BarSeries`](crate::BarSeries) stores.
    Milliseconds,
    /// Microseconds since the epoch.
    Microseconds,
    /// Nanoseconds since the epoch.
    Nanoseconds,
}

impl TimeUnit {
    /// All units, coarsest first.
    pub const ALL: [TimeUnit; 4] = [
        TimeUnit::Seconds,
        TimeUnit::Milliseconds,
        TimeUnit::Microseconds,
        TimeUnit::Nanoseconds,
    ];

    /// Ticks of this unit in one second.
    pub fn per_second(self) -> i64 {
        match self {
            TimeUnit::Seconds => 1,
            TimeUnit::Milliseconds => 1_000,
            TimeUnit::Microseconds => 1_000_000,
            TimeUnit::Nanoseconds => 1_000_000_000,
        }
    }

    /// The one unit that puts `value` between 84 days and 230 years from the epoch (the
    /// bands above); `None` when no unit does.
    pub fn detect(value: i64) -> Option<TimeUnit> {
        let magnitude = i128::from(value).abs();
        TimeUnit::ALL.into_iter().find(|unit| {
            let upper = i128::from(LATEST_SECONDS) * i128::from(unit.per_second());
            (upper / 1000..upper).contains(&magnitude)
        })
    }

    /// `value` of this unit in milliseconds, floored (µs and ns) to the millisecond.
    /// Saturates at the `i64` range, which detected values never reach.
    pub fn to_millis(self, value: i64) -> i64 {
        match self {
            TimeUnit::Seconds => value.saturating_mul(1000),
            TimeUnit::Milliseconds => value,
            TimeUnit::Microseconds => value.div_euclid(1000),
            TimeUnit::Nanoseconds => value.div_euclid(1_000_000),
        }
    }

    /// Short name: `s`, `ms`, `us`, `ns`.
    pub fn symbol(self) -> &'static str {
        match self {
            TimeUnit::Seconds => "s",
            TimeUnit::Milliseconds => "ms",
            TimeUnit::Microseconds => "us",
            TimeUnit::Nanoseconds => "ns",
        }
    }
}

impl fmt::Display for TimeUnit {
    /// `seconds`, `milliseconds`, `microseconds`, `nanoseconds`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeUnit::Seconds => "seconds",
            TimeUnit::Milliseconds => "milliseconds",
            TimeUnit::Microseconds => "microseconds",
            TimeUnit::Nanoseconds => "nanoseconds",
        })
    }
}

/// How a file wrote its timestamps (what `mrl data check` reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TimestampFormat {
    /// Integers since the Unix epoch in a unit detected from their magnitude.
    Epoch(TimeUnit),
    /// A typed date-time column (Parquet `TIMESTAMP`) in its declared unit.
    Datetime(TimeUnit),
    /// A typed date column (Parquet `DATE`, days since the epoch): midnight UTC.
    Date,
    /// ISO 8601 / RFC 3339 text ([`TEXT_FORMS`]).
    Text,
}

impl fmt::Display for TimestampFormat {
    /// E.g. `epoch seconds`, `datetime[us]`, `date`, `ISO 8601 / RFC 3339 text`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimestampFormat::Epoch(unit) => write!(f, "epoch {unit}"),
            TimestampFormat::Datetime(unit) => write!(f, "datetime[{}]", unit.symbol()),
            TimestampFormat::Date => f.write_str("date"),
            TimestampFormat::Text => f.write_str("ISO 8601 / RFC 3339 text"),
        }
    }
}

/// Epoch integers of one file to milliseconds, the unit detected from row 1 and checked on
/// every row (`values[0]` is row 1).
pub(crate) fn epoch_to_millis(values: &[i64]) -> Result<(Vec<i64>, TimeUnit)> {
    let Some(&first) = values.first() else {
        return Ok((Vec::new(), TimeUnit::Milliseconds));
    };
    let unit = TimeUnit::detect(first).ok_or(Error::ImplausibleTimestamp {
        row: 1,
        value: first,
    })?;
    let mut millis = Vec::with_capacity(values.len());
    for (i, &value) in values.iter().enumerate() {
        let row = i + 1;
        match TimeUnit::detect(value) {
            Some(found) if found == unit => millis.push(unit.to_millis(value)),
            Some(found) => {
                return Err(Error::TimeUnitMismatch {
                    row,
                    value,
                    found,
                    expected: unit,
                });
            }
            None => return Err(Error::ImplausibleTimestamp { row, value }),
        }
    }
    Ok((millis, unit))
}

/// The raw timestamp cells of a file (row 1 first) to milliseconds: all integers (unit
/// detected) or all text ([`TEXT_FORMS`]); a mix, or a cell in neither form, is an error
/// naming its row. Surrounding spaces and `"` quotes are ignored.
pub(crate) fn parse_timestamps<'a>(
    cells: impl IntoIterator<Item = &'a str>,
    field: &str,
) -> Result<(Vec<i64>, TimestampFormat)> {
    let mut cells = cells.into_iter().map(clean_cell).peekable();
    let Some(first) = cells.peek().copied() else {
        return Ok((Vec::new(), TimestampFormat::Epoch(TimeUnit::Milliseconds)));
    };
    let parse_error = |row: usize, raw: &str, reason: String| Error::Parse {
        row,
        field: field.to_string(),
        value: raw.chars().take(64).collect(),
        reason,
    };
    if looks_numeric(first) {
        let mut values = Vec::new();
        for (i, cell) in cells.enumerate() {
            let row = i + 1;
            let value = cell.parse::<i64>().map_err(|e| {
                let reason = if looks_numeric(cell) {
                    format!("{e}; expected an integer count since the epoch, as in row 1")
                } else if parse_text_time(cell).is_some() {
                    "a text time in a column of epoch integers (row 1 is a number); a file \
                     must use one form"
                        .to_string()
                } else {
                    unparseable()
                };
                parse_error(row, cell, reason)
            })?;
            values.push(value);
        }
        let (millis, unit) = epoch_to_millis(&values)?;
        Ok((millis, TimestampFormat::Epoch(unit)))
    } else {
        let mut millis = Vec::new();
        for (i, cell) in cells.enumerate() {
            let row = i + 1;
            let value = parse_text_time(cell).ok_or_else(|| {
                let reason = if looks_numeric(cell) {
                    "a number in a column of text times (row 1 is text); a file must use one \
                     form"
                        .to_string()
                } else {
                    unparseable()
                };
                parse_error(row, cell, reason)
            })?;
            millis.push(value);
        }
        Ok((millis, TimestampFormat::Text))
    }
}

fn unparseable() -> String {
    format!(
        "expected an integer count of seconds, milliseconds, microseconds or nanoseconds \
         since the epoch, or a time as {TEXT_FORMS}"
    )
}

/// `" x "` / `"\"x\""` → `x`: a cell of a bar file without its surrounding spaces and one pair of
/// `"` quotes.
pub(crate) fn clean_cell(cell: &str) -> &str {
    let cell = cell.trim();
    cell.strip_prefix('"')
        .and_then(|c| c.strip_suffix('"'))
        .unwrap_or(cell)
        .trim()
}

/// Whether a cell is meant as a number: an optional sign, then only digits, `.`, `e`/`E`,
/// signs. Text times hold `-` between digits too, so they start `dddd-`.
fn looks_numeric(cell: &str) -> bool {
    let body = cell.strip_prefix(['-', '+']).unwrap_or(cell);
    !body.is_empty()
        && body.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        && !is_date_like(body)
}

/// `dddd-dd-dd…`: the start of an ISO 8601 date.
fn is_date_like(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
}

/// A text time in one of [`TEXT_FORMS`] to milliseconds since the epoch (floored).
pub fn parse_text_time(text: &str) -> Option<i64> {
    let text = clean_cell(text);
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.timestamp_millis());
    }
    for layout in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(time) = DateTime::parse_from_str(text, layout) {
            return Some(time.timestamp_millis());
        }
    }
    for layout in NAIVE_LAYOUTS {
        if let Ok(time) = NaiveDateTime::parse_from_str(text, layout) {
            return Some(time.and_utc().timestamp_millis());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_detected_from_magnitude() {
        let ms = 1_617_566_400_000; // 2021-04-04 20:00 UTC
        for (value, unit) in [
            (ms / 1000, TimeUnit::Seconds),
            (ms, TimeUnit::Milliseconds),
            (ms * 1000, TimeUnit::Microseconds),
            (ms * 1_000_000, TimeUnit::Nanoseconds),
        ] {
            assert_eq!(TimeUnit::detect(value), Some(unit), "{value}");
            assert_eq!(unit.to_millis(value), ms);
        }
        // Bounds: a thousandth of 2200-01-01 in seconds starts each band.
        assert_eq!(TimeUnit::detect(7_258_117), None);
        assert_eq!(TimeUnit::detect(7_258_118), Some(TimeUnit::Seconds));
        assert_eq!(TimeUnit::detect(7_258_118_399), Some(TimeUnit::Seconds));
        assert_eq!(
            TimeUnit::detect(7_258_118_400),
            Some(TimeUnit::Milliseconds)
        );
        assert_eq!(TimeUnit::detect(7_258_118_400_000_000_000), None);
        assert_eq!(TimeUnit::detect(i64::MIN), None);
        assert_eq!(TimeUnit::detect(0), None);
        assert_eq!(TimeUnit::detect(3_600_000), None);
        // Before 1970: 1950-01-01 in seconds and milliseconds.
        assert_eq!(TimeUnit::detect(-631_152_000), Some(TimeUnit::Seconds));
        assert_eq!(
            TimeUnit::detect(-631_152_000_000),
            Some(TimeUnit::Milliseconds)
        );
        // Sub-millisecond parts are floored, before 1970 too.
        assert_eq!(
            TimeUnit::Microseconds.to_millis(-631_152_000_000_001),
            -631_152_000_001
        );
        assert_eq!(
            TimeUnit::Nanoseconds.to_millis(1_617_566_400_000_999_999),
            ms
        );
    }

    #[test]
    fn text_forms_are_read_as_utc() {
        let ms = 1_704_067_200_000; // 2024-01-01 00:00 UTC
        for text in [
            "2024-01-01T00:00:00Z",
            "2024-01-01T01:00:00+01:00",
            "2023-12-31T19:00:00-05:00",
            "2024-01-01T00:00:00.000Z",
            "2024-01-01 00:00:00+00:00",
            "2024-01-01T01:00:00+0100",
            "2024-01-01T00:00:00",
            "2024-01-01 00:00:00",
            "2024-01-01T00:00",
            "2024-01-01 00:00",
            "2024-01-01",
            " \"2024-01-01\" ",
        ] {
            assert_eq!(parse_text_time(text), Some(ms), "{text}");
        }
        assert_eq!(parse_text_time("2024-01-01T00:00:00.250Z"), Some(ms + 250));
        for bad in [
            "2024-13-01",
            "yesterday",
            "1704067200000",
            "2024-01-01T25:00:00Z",
            "",
        ] {
            assert_eq!(parse_text_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_column_is_all_numbers_or_all_text() {
        let (ms, format) = parse_timestamps(["1617566400", "1617570000"], "t").unwrap();
        assert_eq!(ms, [1_617_566_400_000, 1_617_570_000_000]);
        assert_eq!(format, TimestampFormat::Epoch(TimeUnit::Seconds));
        assert_eq!(format.to_string(), "epoch seconds");

        let (ms, format) = parse_timestamps(["2024-01-01", "2024-01-02"], "t").unwrap();
        assert_eq!(ms, [1_704_067_200_000, 1_704_153_600_000]);
        assert_eq!(format, TimestampFormat::Text);

        let err = parse_timestamps(["1617566400", "1617570000000"], "t").unwrap_err();
        assert_eq!(
            err.to_string(),
            "row 2: timestamp 1617570000000 is in milliseconds, but row 1 is in seconds; \
             a file must use one unit"
        );
        let err = parse_timestamps(["1704067200000", "2024-01-01T01:00:00Z"], "t").unwrap_err();
        assert!(
            err.to_string().starts_with(
                "row 2: field t: cannot parse \"2024-01-01T01:00:00Z\": a text time in a column \
                 of epoch integers"
            ),
            "{err}"
        );
        let err = parse_timestamps(["2024-01-01", "1704153600000"], "t").unwrap_err();
        assert!(
            err.to_string().contains("a number in a column of text"),
            "{err}"
        );
        let err = parse_timestamps(["2024-01-01", "01/02/2024"], "t").unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("row 2: field t: cannot parse \"01/02/2024\""));
        assert!(message.contains(TEXT_FORMS), "{message}");
        let err = parse_timestamps(["1.5"], "t").unwrap_err();
        assert!(matches!(err, Error::Parse { row: 1, .. }), "{err}");
        let err = parse_timestamps(["3600000"], "t").unwrap_err();
        assert!(
            matches!(
                err,
                Error::ImplausibleTimestamp {
                    row: 1,
                    value: 3_600_000
                }
            ),
            "{err}"
        );
    }
}
