//! Reading and writing bars as CSV or Parquet through polars.
//!
//! Both formats hold the six columns `timestamp,open,high,low,close,volume`, matched by name
//! (any order, any case; further columns such as `turnover` are ignored, and a Parquet reader
//! does not even decode them). `open` .. `volume` are numbers: in Parquet, integer, float or
//! decimal columns (decimals converted to the nearest `f64`) or numeric text; a column of
//! another type (booleans, dates, binary) is refused, naming the column and its type.
//! `timestamp` is the bar's open time, in any of the forms of the [`TimestampFormat`] the file
//! uses throughout: integers since the Unix epoch in seconds, milliseconds, microseconds or
//! nanoseconds (the unit detected from the magnitudes, see [`TimeUnit::detect`]; a Parquet float
//! column is read when every value is a whole number), ISO 8601 / RFC 3339 text
//! ([`TEXT_FORMS`]), or a Parquet date-time (any unit; the stored instants are UTC whatever the
//! time zone, and a zone-less one is read as UTC, like text without an offset) or date column
//! (midnight UTC). Whatever the form, the series holds milliseconds since the epoch, UTC, and
//! [`read_bar_file`] says which form the file used. Files are written with the six columns in
//! order and integer milliseconds. polars stays inside this module; the public API speaks
//! [`BarSeries`] and [`Path`].
//!
//! Reading validates everything [`BarSeries`] checks, and every error names the file, the
//! 1-based data row (row 1 is line 2 of a CSV file), the field and the raw value. CSV is read by
//! polars with a fixed schema; when that fails (or leaves a null), the text is scanned again line
//! by line to find the first bad row and field, so the message is precise. Both paths ignore
//! spaces around a value (`1704067200000, 57953.86`), so whether a file reads does not depend on
//! which path it took.
//!
//! No input makes [`read_csv`] panic (a proptest feeds it arbitrary bytes): text polars cannot
//! take is parsed line by line, and a panic inside polars becomes [`Error::Polars`]. A Parquet
//! file polars cannot decode (corrupt, truncated, or not Parquet) is [`Error::Unreadable`],
//! also when polars panics on it; such panics are caught without being printed. Parquet is
//! still meant for files this project writes (caches): a *corrupted* Parquet file can make
//! polars 0.55 request an impossible allocation, which aborts the process; read untrusted data
//! from CSV.
//!
//! Writing is atomic: the bytes go to a temporary file in the target's directory, are synced,
//! and the temporary file is renamed over the target, so an interrupted write never leaves a
//! partial target. Floats are written in their shortest round-trip form, so writing and reading
//! back gives the same bits.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use polars::prelude::{
    ArrowDataType, Column, CsvReadOptions, CsvWriter, DataFrame, DataType, Field, ParallelStrategy,
    ParquetReader, ParquetWriter, Schema, SerReader, SerWriter, Series,
};

use crate::error::{Error, Result, ShortFloat};
use crate::quiet_panic::catch_quietly;
use crate::series::BarSeries;
#[cfg(doc)]
use crate::time::TEXT_FORMS;
use crate::time::{TimeUnit, TimestampFormat, clean_cell, epoch_to_millis, parse_timestamps};

/// The columns of a bar file: the order files are written in; read in any order.
pub const COLUMNS: [&str; 6] = ["timestamp", "open", "high", "low", "close", "volume"];

/// Longest raw value quoted in an error message, in characters.
const MAX_VALUE_CHARS: usize = 64;

/// A series read from a file, with the form its timestamps had.
#[derive(Debug, Clone, PartialEq)]
pub struct BarFile {
    /// The bars, timestamps in milliseconds.
    pub series: BarSeries,
    /// How the file wrote its timestamps.
    pub timestamp_format: TimestampFormat,
}

/// Reads bars from a CSV file whose header names the six columns (see the module docs).
///
/// The symbol is taken from the file name up to the first `_` (`BTCUSDT_1h.csv` → `BTCUSDT`).
pub fn read_csv(path: &Path) -> Result<BarSeries> {
    read_csv_file(path).map(|file| file.series)
}

fn read_csv_file(path: &Path) -> Result<BarFile> {
    let bytes = std::fs::read(path).map_err(|source| io_error(path, source))?;
    let (series, timestamp_format) = parse_csv(&bytes).map_err(|e| e.in_file(path))?;
    tracing::debug!(
        path = %path.display(),
        rows = series.len(),
        timestamps = %timestamp_format,
        "read csv"
    );
    Ok(BarFile {
        series: with_symbol_from(series, path),
        timestamp_format,
    })
}

/// Writes bars to a CSV file, atomically (see the module docs). Parent directories must exist.
///
/// The symbol is not stored: [`read_csv`] takes it from the file name.
pub fn write_csv(series: &BarSeries, path: &Path) -> Result<()> {
    let mut df = to_frame(series)?;
    let mut buf = Vec::with_capacity(series.len() * 64);
    CsvWriter::new(&mut buf)
        .include_header(true)
        .finish(&mut df)
        .map_err(|e| polars_error(e).in_file(path))?;
    write_file_atomic(path, &buf)
}

/// Reads bars from a Parquet file with the six bar columns (see the module docs; integer,
/// float, decimal or numeric-text price columns are read as `f64`).
///
/// The symbol is taken from the file name as in [`read_csv`].
pub fn read_parquet(path: &Path) -> Result<BarSeries> {
    read_parquet_file(path).map(|file| file.series)
}

fn read_parquet_file(path: &Path) -> Result<BarFile> {
    let bytes = std::fs::read(path).map_err(|source| io_error(path, source))?;
    let (series, timestamp_format) = parse_parquet(bytes).map_err(|e| e.in_file(path))?;
    tracing::debug!(
        path = %path.display(),
        rows = series.len(),
        timestamps = %timestamp_format,
        "read parquet"
    );
    Ok(BarFile {
        series: with_symbol_from(series, path),
        timestamp_format,
    })
}

/// Writes bars to a Parquet file (zstd-compressed), atomically.
pub fn write_parquet(series: &BarSeries, path: &Path) -> Result<()> {
    let mut df = to_frame(series)?;
    let mut buf = Vec::with_capacity(series.len() * 48);
    ParquetWriter::new(&mut buf)
        .finish(&mut df)
        .map_err(|e| polars_error(e).in_file(path))?;
    write_file_atomic(path, &buf)
}

/// Reads a `.csv` or `.parquet` (`.pq`) file, choosing by extension (case-insensitive).
pub fn read_bars(path: &Path) -> Result<BarSeries> {
    read_bar_file(path).map(|file| file.series)
}

/// [`read_bars`], also saying how the file wrote its timestamps (what `mrl data check`
/// prints).
pub fn read_bar_file(path: &Path) -> Result<BarFile> {
    match Format::of(path)? {
        Format::Csv => read_csv_file(path),
        Format::Parquet => read_parquet_file(path),
    }
}

/// Writes a `.csv` or `.parquet` (`.pq`) file, choosing by extension (case-insensitive).
pub fn write_bars(series: &BarSeries, path: &Path) -> Result<()> {
    match Format::of(path)? {
        Format::Csv => write_csv(series, path),
        Format::Parquet => write_parquet(series, path),
    }
}

/// The symbol a file name implies: the stem up to the first `_` (`ETHUSDT_1h.parquet` →
/// `ETHUSDT`, `AAPL.csv` → `AAPL`); `None` when that is empty.
pub fn symbol_from_path(path: &Path) -> Option<String> {
    let stem = path.file_stem()?.to_str()?;
    let symbol = stem.split('_').next().unwrap_or(stem);
    (!symbol.is_empty()).then(|| symbol.to_string())
}

enum Format {
    Csv,
    Parquet,
}

impl Format {
    fn of(path: &Path) -> Result<Format> {
        if path.is_dir() {
            return Err(Error::InvalidParameter {
                name: "bar file",
                value: path.display().to_string(),
                reason: "is a directory: give one .csv, .parquet or .pq file".into(),
            });
        }
        Self::of_extension(path).ok_or_else(|| Error::InvalidParameter {
            name: "file extension",
            value: path.display().to_string(),
            reason: "expected .csv, .parquet or .pq".into(),
        })
    }

    /// The format `path`'s extension names, in any case; `None` for another extension.
    fn of_extension(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(Format::Csv),
            "parquet" | "pq" => Some(Format::Parquet),
            _ => None,
        }
    }
}

/// Whether `path`'s extension is one [`read_bars`] reads: `.csv`, `.parquet` or `.pq`, in
/// any case (the file itself is not looked at).
pub fn is_bar_file(path: &Path) -> bool {
    Format::of_extension(path).is_some()
}

fn with_symbol_from(series: BarSeries, path: &Path) -> BarSeries {
    match symbol_from_path(path) {
        Some(symbol) => series.with_symbol(symbol),
        None => series,
    }
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn polars_error(e: polars::error::PolarsError) -> Error {
    Error::Polars(e.to_string())
}

/// Where each of the six [`COLUMNS`] sits among a file's columns.
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// Index of `timestamp`, `open`, `high`, `low`, `close`, `volume`.
    index: [usize; 6],
    /// Number of columns in the file.
    width: usize,
}

impl Layout {
    /// Matches `names` (trimmed, unquoted) to the six columns, ignoring case; extra columns are
    /// allowed and ignored.
    fn of(names: &[String]) -> Result<Layout> {
        let shown = || names.iter().take(32).map(|n| truncate(n)).collect();
        let mut index = [usize::MAX; 6];
        for (slot, column) in index.iter_mut().zip(COLUMNS) {
            let mut found = names
                .iter()
                .enumerate()
                .filter(|(_, n)| n.eq_ignore_ascii_case(column));
            *slot = match (found.next(), found.next()) {
                (Some((i, _)), None) => i,
                (None, _) => {
                    return Err(Error::MissingColumn {
                        column,
                        found: shown(),
                    });
                }
                (Some(_), Some(_)) => {
                    return Err(Error::DuplicateColumn {
                        column,
                        found: shown(),
                    });
                }
            };
        }
        let extra: Vec<&String> = names
            .iter()
            .enumerate()
            .filter(|(i, _)| !index.contains(i))
            .map(|(_, n)| n)
            .collect();
        if !extra.is_empty() {
            tracing::debug!(?extra, "ignoring columns that are not bar fields");
        }
        Ok(Layout {
            index,
            width: names.len(),
        })
    }
}

fn to_frame(series: &BarSeries) -> Result<DataFrame> {
    let columns = vec![
        Column::new(COLUMNS[0].into(), series.timestamps()),
        Column::new(COLUMNS[1].into(), series.opens()),
        Column::new(COLUMNS[2].into(), series.highs()),
        Column::new(COLUMNS[3].into(), series.lows()),
        Column::new(COLUMNS[4].into(), series.closes()),
        Column::new(COLUMNS[5].into(), series.volumes()),
    ];
    DataFrame::new(series.len(), columns).map_err(polars_error)
}

/// The types a value column (`open` .. `volume`) may have, for error messages.
const VALUE_TYPES: &str =
    "32- or 64-bit integers, 32- or 64-bit floats, decimals of precision ≤ 38 or numeric text";
/// The types a `timestamp` column may have, for error messages.
const TIMESTAMP_TYPES: &str = "32- or 64-bit integers, whole-number 32- or 64-bit floats, \
     ISO 8601 / RFC 3339 text, a date-time or a date";

/// Checks a Parquet column's declared type before anything is decoded: a type no field can
/// hold (booleans, binary, nested or dictionary columns, a decimal timestamp) is an error
/// naming the column and the type, as are the narrow integers and `f16` that polars is built
/// without here.
fn check_arrow_type(column: &'static str, dtype: &ArrowDataType) -> Result<()> {
    use ArrowDataType as A;
    let is_timestamp = column == COLUMNS[0];
    let supported = match dtype {
        A::Null
        | A::Int32
        | A::Int64
        | A::UInt32
        | A::UInt64
        | A::Float32
        | A::Float64
        | A::Utf8
        | A::LargeUtf8
        | A::Utf8View => true,
        A::Decimal(..) | A::Decimal32(..) | A::Decimal64(..) => !is_timestamp,
        // polars reads decimals up to precision 38; wider ones would fail as a corrupt file.
        A::Decimal256(precision, _) => !is_timestamp && *precision <= 38,
        A::Timestamp(..) | A::Date32 | A::Date64 => is_timestamp,
        _ => false,
    };
    if supported {
        Ok(())
    } else {
        Err(Error::UnsupportedColumnType {
            column,
            dtype: truncate(&format!("{dtype:?}")),
            expected: if is_timestamp {
                TIMESTAMP_TYPES
            } else {
                VALUE_TYPES
            },
        })
    }
}

/// Column `i` of `df`.
fn column_at<'a>(df: &'a DataFrame, i: usize, field: &'static str) -> Result<&'a Series> {
    df.select_at_idx(i)
        .map(Column::as_materialized_series)
        .ok_or_else(|| Error::MissingColumn {
            column: field,
            found: Vec::new(),
        })
}

/// An error naming the 1-based row of the first null in `series`, if it has one.
fn no_nulls(series: &Series, field: &'static str) -> Result<()> {
    if series.null_count() == 0 {
        return Ok(());
    }
    let row = series
        .is_null()
        .iter()
        .position(|x| x == Some(true))
        .map_or(1, |i| i + 1);
    Err(Error::Parse {
        row,
        field: field.to_string(),
        value: String::new(),
        reason: "missing value".into(),
    })
}

/// A column of another type than its field takes, found after decoding (Parquet columns are
/// checked before, by [`check_arrow_type`]; CSV columns have a fixed schema).
fn unsupported(field: &'static str, dtype: &DataType, expected: &'static str) -> Error {
    Error::UnsupportedColumnType {
        column: field,
        dtype: truncate(&dtype.to_string()),
        expected,
    }
}

/// A value cell as `f64`: surrounding spaces and one pair of `"` quotes are ignored, as
/// polars' CSV reader ignores leading spaces, so the polars path and the line scan accept the
/// same cells.
fn parse_value(raw: &str) -> std::result::Result<f64, std::num::ParseFloatError> {
    clean_cell(raw).parse()
}

/// `units × 10^-scale` (a decimal's value) as the nearest `f64`.
fn decimal_to_f64(units: i128, scale: usize) -> f64 {
    /// The powers of ten that are exact in an `f64`.
    const POW10: [f64; 23] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
        1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ];
    match POW10.get(scale) {
        // Both operands exact: IEEE division rounds once, to the nearest.
        Some(pow) if units.unsigned_abs() <= 1 << 53 => units as f64 / pow,
        // Rust's float parsing rounds to the nearest too, from any number of digits.
        _ => format!("{units}e-{scale}").parse().unwrap_or(f64::NAN),
    }
}

/// A value column (`open` .. `volume`) of `df` as `f64`: floats and integers converted
/// (exactly, up to 2^53), decimals to the nearest `f64`, text parsed like a CSV cell; a null is
/// an error naming its row, and unparseable text one naming its row and value.
fn value_column(df: &DataFrame, i: usize, field: &'static str) -> Result<Vec<f64>> {
    let series = column_at(df, i, field)?;
    no_nulls(series, field)?;
    let dtype = series.dtype();
    if dtype.is_float() || dtype.is_integer() || dtype.is_null() {
        let floats = series.cast(&DataType::Float64).map_err(polars_error)?;
        return Ok(floats
            .f64()
            .map_err(polars_error)?
            .into_no_null_iter()
            .collect());
    }
    match dtype {
        DataType::Decimal(_, scale) => {
            let units = series.to_physical_repr();
            Ok(units
                .i128()
                .map_err(polars_error)?
                .into_no_null_iter()
                .map(|x| decimal_to_f64(x, *scale))
                .collect())
        }
        DataType::String => series
            .str()
            .map_err(polars_error)?
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                let cell = cell.unwrap_or_default(); // nulls were refused above
                parse_value(cell).map_err(|e| Error::Parse {
                    row: i + 1,
                    field: field.to_string(),
                    value: truncate(cell),
                    reason: e.to_string(),
                })
            })
            .collect(),
        other => Err(unsupported(field, other, VALUE_TYPES)),
    }
}

/// The five value columns of a frame as `f64`.
fn value_columns(df: &DataFrame, layout: &Layout) -> Result<[Vec<f64>; 5]> {
    let mut values: [Vec<f64>; 5] = Default::default();
    for ((column, &i), name) in values.iter_mut().zip(&layout.index[1..]).zip(&COLUMNS[1..]) {
        *column = value_column(df, i, name)?;
    }
    Ok(values)
}

/// Float timestamps as integers: each must be a whole number in the `i64` range, else an
/// error naming its row and value (as the CSV reader refuses `1.5`). Infinities are out of
/// range.
fn whole_numbers(floats: impl Iterator<Item = f64>, field: &'static str) -> Result<Vec<i64>> {
    /// 2^63, the first float past `i64::MAX`.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    floats
        .enumerate()
        .map(|(i, x)| {
            let problem = if x.fract() != 0.0 || x.is_nan() {
                "not a whole number"
            } else if !(-LIMIT..LIMIT).contains(&x) {
                "out of the range of a 64-bit integer"
            } else {
                return Ok(x as i64);
            };
            Err(Error::Parse {
                row: i + 1,
                field: field.to_string(),
                value: ShortFloat(x).to_string(),
                reason: format!("{problem}; expected an integer count since the epoch"),
            })
        })
        .collect()
}

/// Integer timestamps as `i64`; a `u64` past `i64::MAX` is an error naming its row and value.
fn integers(series: &Series, field: &'static str) -> Result<Vec<i64>> {
    if let Ok(unsigned) = series.u64() {
        return unsigned
            .into_no_null_iter()
            .enumerate()
            .map(|(i, x)| {
                i64::try_from(x).map_err(|e| Error::Parse {
                    row: i + 1,
                    field: field.to_string(),
                    value: x.to_string(),
                    reason: e.to_string(),
                })
            })
            .collect();
    }
    let ints = series.cast(&DataType::Int64).map_err(polars_error)?;
    Ok(ints
        .i64()
        .map_err(polars_error)?
        .into_no_null_iter()
        .collect())
}

/// The timestamp column of a frame in milliseconds, by its type: text (parsed), a Parquet
/// date-time (its declared unit; the instants are UTC whatever the time zone, and a naive
/// date-time is read as UTC, like naive text) or date (midnight UTC), or numbers (unit
/// detected; floats must be whole).
fn timestamp_column(df: &DataFrame, i: usize) -> Result<(Vec<i64>, TimestampFormat)> {
    let field = COLUMNS[0];
    let series = column_at(df, i, field)?;
    no_nulls(series, field)?;
    let physical = || -> Result<Vec<i64>> {
        let ints = series
            .to_physical_repr()
            .cast(&DataType::Int64)
            .map_err(polars_error)?;
        Ok(ints
            .i64()
            .map_err(polars_error)?
            .into_no_null_iter()
            .collect())
    };
    let epoch = |values: Vec<i64>| -> Result<(Vec<i64>, TimestampFormat)> {
        let (millis, unit) = epoch_to_millis(&values)?;
        Ok((millis, TimestampFormat::Epoch(unit)))
    };
    match series.dtype() {
        DataType::String => {
            let cells = series.str().map_err(polars_error)?;
            parse_timestamps(cells.iter().map(Option::unwrap_or_default), field)
        }
        DataType::Datetime(unit, _) => {
            let unit = match unit {
                polars::prelude::TimeUnit::Milliseconds => TimeUnit::Milliseconds,
                polars::prelude::TimeUnit::Microseconds => TimeUnit::Microseconds,
                polars::prelude::TimeUnit::Nanoseconds => TimeUnit::Nanoseconds,
            };
            let millis = physical()?.into_iter().map(|t| unit.to_millis(t)).collect();
            Ok((millis, TimestampFormat::Datetime(unit)))
        }
        DataType::Date => {
            let millis = physical()?
                .into_iter()
                .map(|days| days.saturating_mul(crate::series::DAY_MS))
                .collect();
            Ok((millis, TimestampFormat::Date))
        }
        dtype if dtype.is_float() => {
            let floats = series.cast(&DataType::Float64).map_err(polars_error)?;
            let floats = floats.f64().map_err(polars_error)?;
            epoch(whole_numbers(floats.into_no_null_iter(), field)?)
        }
        dtype if dtype.is_integer() || dtype.is_null() => epoch(integers(series, field)?),
        other => Err(unsupported(field, other, TIMESTAMP_TYPES)),
    }
}

/// The bar series held by `df`'s columns at `layout`.
fn from_frame(df: &DataFrame, layout: &Layout) -> Result<(BarSeries, TimestampFormat)> {
    // Values first: a missing value of any field names its row before timestamps are read.
    let [open, high, low, close, volume] = value_columns(df, layout)?;
    let (timestamp, format) = timestamp_column(df, layout.index[0])?;
    let series = BarSeries::from_columns(timestamp, open, high, low, close, volume)?;
    Ok((series, format))
}

/// Splits a CSV header line into trimmed, unquoted names.
fn header_names(header: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(header)
        .split(',')
        .map(|s| s.trim().trim_matches('"').trim().to_string())
        .collect()
}

/// Parses CSV bytes: header matched by name, fast typed read through polars, precise scan on
/// failure.
fn parse_csv(bytes: &[u8]) -> Result<(BarSeries, TimestampFormat)> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let (header, body) = match bytes.iter().position(|&b| b == b'\n') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &bytes[bytes.len()..]),
    };
    let header = trim_cr(header);
    if header.iter().all(u8::is_ascii_whitespace) && body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::NoBars {
            reason: "the file is empty",
        });
    }
    let layout = Layout::of(&header_names(header))?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::NoBars {
            reason: "the file has a header but no rows",
        });
    }
    // polars skips blank lines (which would shift row numbers) and has panicked on stray
    // quotes, which numbers never need: such files take the line-by-line path.
    if has_inner_blank_line(body) || body.contains(&b'"') {
        return parse_rows(body, &layout);
    }
    // Trailing blank lines (`\r` alone included) would become rows of nulls.
    let end = body.len()
        - body
            .iter()
            .rev()
            .take_while(|b| b.is_ascii_whitespace())
            .count();
    match guard_panic("csv reader", || read_csv_polars(&body[..end], &layout)) {
        Ok(df) => match from_frame(&df, &layout) {
            // A null or an unparseable cell: let the scan name the raw value in row order.
            Err(Error::Parse { .. }) => parse_rows(body, &layout),
            other => other,
        },
        Err(e) => {
            tracing::debug!(error = %e, "polars csv read failed, scanning line by line");
            parse_rows(body, &layout)
        }
    }
}

/// Runs a polars call, turning a panic inside polars into [`Error::Polars`] without the panic
/// being printed (see [`catch_quietly`]).
///
/// Last-resort guard: polars 0.55 panics on some malformed inputs (an unterminated quote in a
/// CSV, corrupted Parquet pages; found by the proptests in `tests/it/io.rs`), and a reader of
/// untrusted files must return an error instead. The closure's state is discarded on panic, so
/// asserting unwind safety is sound. It cannot help under `panic = "abort"`.
fn guard_panic<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_quietly(f).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(Error::Polars(format!(
            "{what} panicked: {}",
            truncate(&message)
        )))
    })
}

/// Reads the data lines (no header) with a fixed schema: the timestamp and any extra column
/// as text, the five values as `f64`, columns named by position.
fn read_csv_polars(body: &[u8], layout: &Layout) -> Result<DataFrame> {
    let schema: Schema = (0..layout.width)
        .map(|i| {
            let is_value = layout.index[1..].contains(&i);
            let dtype = if is_value {
                DataType::Float64
            } else {
                DataType::String
            };
            Field::new(format!("column_{i}").into(), dtype)
        })
        .collect();
    CsvReadOptions::default()
        .with_has_header(false)
        .with_schema(Some(Arc::new(schema)))
        .with_n_threads(Some(1))
        .into_reader_with_file_handle(Cursor::new(body))
        .finish()
        .map_err(polars_error)
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Whether a blank line (empty or `\r` only) sits between two non-blank lines.
fn has_inner_blank_line(body: &[u8]) -> bool {
    let mut seen_blank = false;
    for line in body.split(|&b| b == b'\n') {
        if trim_cr(line).is_empty() {
            seen_blank = true;
        } else if seen_blank {
            return true;
        }
    }
    false
}

/// Parses the data lines one by one (`"`-quoted values and surrounding spaces allowed, as
/// polars allows them, trailing blank lines ignored): the first row with the wrong number of fields or a value that does not parse is
/// an error naming its 1-based row, field and raw text; then the timestamps are read as one
/// column (one form for the whole file).
fn parse_rows(body: &[u8], layout: &Layout) -> Result<(BarSeries, TimestampFormat)> {
    let mut lines: Vec<&[u8]> = body.split(|&b| b == b'\n').map(trim_cr).collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    let n = lines.len();
    let texts: Vec<std::borrow::Cow<'_, str>> =
        lines.iter().map(|l| String::from_utf8_lossy(l)).collect();
    let mut cells = Vec::with_capacity(n);
    let mut values: [Vec<f64>; 5] = std::array::from_fn(|_| Vec::with_capacity(n));
    for (i, text) in texts.iter().enumerate() {
        let row = i + 1;
        let fields: Vec<&str> = text.split(',').collect();
        if fields.len() != layout.width {
            return Err(Error::Parse {
                row,
                field: "(row)".into(),
                value: truncate(text),
                reason: format!("{} fields, expected {}", fields.len(), layout.width),
            });
        }
        cells.push(fields[layout.index[0]]);
        for ((name, &at), column) in COLUMNS[1..]
            .iter()
            .zip(&layout.index[1..])
            .zip(values.iter_mut())
        {
            let raw = fields[at];
            column.push(parse_value(raw).map_err(|e| Error::Parse {
                row,
                field: (*name).into(),
                value: truncate(raw),
                reason: e.to_string(),
            })?);
        }
    }
    let (timestamp, format) = parse_timestamps(cells, COLUMNS[0])?;
    let [open, high, low, close, volume] = values;
    let series = BarSeries::from_columns(timestamp, open, high, low, close, volume)?;
    Ok((series, format))
}

fn truncate(text: &str) -> String {
    text.chars().take(MAX_VALUE_CHARS).collect()
}

/// Parses Parquet bytes: the six columns found by name and their types checked from the
/// schema, then only they are decoded, on this thread (so a panic in polars is caught without
/// being printed); any failure to decode names the file as unreadable.
fn parse_parquet(bytes: Vec<u8>) -> Result<(BarSeries, TimestampFormat)> {
    if bytes.is_empty() {
        return Err(Error::NoBars {
            reason: "the file is empty",
        });
    }
    let df = guard_panic("polars", || {
        let mut reader = ParquetReader::new(Cursor::new(bytes));
        let schema = reader.schema().map_err(polars_error)?;
        let names: Vec<String> = schema.iter_names().map(|n| n.to_string()).collect();
        let layout = Layout::of(&names)?;
        for (&i, column) in layout.index.iter().zip(COLUMNS) {
            if let Some((_, field)) = schema.get_at_index(i) {
                check_arrow_type(column, &field.dtype)?;
            }
        }
        let mut projection = layout.index.to_vec();
        projection.sort_unstable();
        reader
            .with_projection(Some(projection))
            .read_parallel(ParallelStrategy::None)
            .finish()
            .map_err(polars_error)
    })
    // A polars error or panic while decoding: the file is not readable Parquet.
    .map_err(|e| match e {
        Error::Polars(detail) => Error::Unreadable {
            format: "parquet",
            detail,
        },
        other => other,
    })?;
    let names: Vec<String> = df
        .get_column_names()
        .into_iter()
        .map(|n| n.to_string())
        .collect();
    let layout = Layout::of(&names)?;
    if df.height() == 0 {
        return Err(Error::NoBars {
            reason: "the file has columns but no rows",
        });
    }
    from_frame(&df, &layout)
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, synced, then
/// renamed over `path` (and the directory synced, where the platform allows). Missing parent
/// directories are created. An interrupted write leaves `path` as it was.
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|source| io_error(&dir, source))?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".mrl-write-").suffix(".tmp");
    // Like `File::create`: 0o666 less the umask (a temporary file would otherwise be 0o600).
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let mut tmp = builder
        .tempfile_in(&dir)
        .map_err(|source| io_error(&dir, source))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|source| io_error(tmp.path(), source))?;
    tmp.persist(path).map_err(|e| io_error(path, e.error))?;
    // Make the rename durable; not every platform can open a directory, which is fine.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    tracing::debug!(path = %path.display(), bytes = bytes.len(), "wrote file atomically");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_lines_inside_but_not_at_the_end() {
        assert!(!has_inner_blank_line(b"1\n2\n"));
        assert!(!has_inner_blank_line(b"1\r\n2\r\n\r\n\n"));
        assert!(has_inner_blank_line(b"1\n\n2\n"));
        assert!(has_inner_blank_line(b"1\r\n\r\n2"));
    }

    #[test]
    fn line_scan_names_row_field_and_value() {
        let names = COLUMNS.map(String::from);
        let layout = Layout::of(&names).unwrap();
        let body = b"1704067200000,1,1,1,1,1\n1704070800000,1,1,1,abc,1\n";
        let err = parse_rows(body, &layout).unwrap_err();
        let expected = "row 2: field close: cannot parse \"abc\": invalid float literal";
        assert_eq!(err.to_string(), expected);
        let err = parse_rows(b"1704067200000,1,1,1,1\n", &layout).unwrap_err();
        assert!(matches!(err, Error::Parse { row: 1, .. }), "{err}");
        let (s, format) = parse_rows(b"\"1704067200\",1,2,0.5,1,1\r\n\r\n", &layout).unwrap();
        assert_eq!((s.len(), s.highs()[0]), (1, 2.0));
        assert_eq!(s.timestamps(), &[1_704_067_200_000]);
        assert_eq!(format, TimestampFormat::Epoch(TimeUnit::Seconds));
    }

    #[test]
    fn columns_match_by_name_in_any_order_and_case() {
        let names = |h: &str| header_names(h.as_bytes());
        let layout =
            Layout::of(&names("Volume, \"CLOSE\",low,high,open,Timestamp,turnover")).unwrap();
        assert_eq!(layout.index, [5, 4, 3, 2, 1, 0]);
        assert_eq!(layout.width, 7);
        let err = Layout::of(&names("time,open,high,low,close,volume")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "columns are [\"time\", \"open\", \"high\", \"low\", \"close\", \"volume\"], expected \
             [\"timestamp\", \"open\", \"high\", \"low\", \"close\", \"volume\"] in any order: \
             no column \"timestamp\""
        );
        let err = Layout::of(&names("timestamp,open,high,low,close,volume,Close")).unwrap_err();
        assert!(
            matches!(
                err,
                Error::DuplicateColumn {
                    column: "close",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn decimals_convert_to_the_nearest_float() {
        let nearest =
            |units: i128, scale: usize| -> f64 { format!("{units}e-{scale}").parse().unwrap() };
        let two_53 = 1i128 << 53;
        for (units, scale) in [
            (5_795_386, 2),
            (-5_795_386, 2),
            (0, 5),
            (1, 22),
            (two_53, 2),
            (-two_53, 7),
            (10i128.pow(19), 20),
            (123_456_789, 30),
            (i128::MAX, 38),
        ] {
            assert_eq!(
                decimal_to_f64(units, scale),
                nearest(units, scale),
                "{units}e-{scale}"
            );
        }
        // Past 2^53, dividing the rounded units would round twice: 90071992547409.93 is nearer
        // ...409.9375 than ...409.921875 (the floats there are 1/64 apart).
        assert_eq!(decimal_to_f64(two_53 + 1, 2), 90_071_992_547_409.94);
        assert_eq!(decimal_to_f64(two_53 + 1, 2).fract(), 0.9375);
        assert_eq!(((two_53 + 1) as f64 / 100.0).fract(), 0.921_875);
    }

    #[test]
    fn value_cells_ignore_surrounding_spaces_and_quotes() {
        for cell in ["1.5", " 1.5", "1.5 ", "\t1.5", "\"1.5\"", " \" 1.5 \" "] {
            assert_eq!(parse_value(cell), Ok(1.5), "{cell:?}");
        }
        for cell in ["", "1 5", "\"1.5", "abc"] {
            assert!(parse_value(cell).is_err(), "{cell:?}");
        }
    }

    #[test]
    fn a_panic_becomes_an_error() {
        let err = guard_panic::<()>("test", || panic!("boom")).unwrap_err();
        assert_eq!(err.to_string(), "polars: test panicked: boom");
    }

    #[test]
    fn symbol_is_the_stem_up_to_the_first_underscore() {
        assert_eq!(
            symbol_from_path(Path::new("a/BTCUSDT_1h.csv")).as_deref(),
            Some("BTCUSDT")
        );
        assert_eq!(
            symbol_from_path(Path::new("AAPL.parquet")).as_deref(),
            Some("AAPL")
        );
        assert_eq!(symbol_from_path(Path::new("_x.csv")), None);
    }
}
