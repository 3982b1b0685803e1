//! Reading and writing bars as CSV or Parquet through polars.
//!
//! Both formats hold the six columns `timestamp,open,high,low,close,volume`, matched by name
//! (any order, any case; further columns such as `turnover` are ignored). `open` .. `volume`
//! are numbers. `timestamp` is the bar's open time, in any of the forms of the
//! [`TimestampFormat`] the file uses throughout: integers since the Unix epoch in seconds,
//! milliseconds, microseconds or nanoseconds (the unit detected from the magnitudes, see
//! [`TimeUnit::detect`]), ISO 8601 / RFC 3339 text ([`TEXT_FORMS`]), or a Parquet date-time or
//! date column. Whatever the form, the series holds milliseconds since the epoch, UTC, and
//! [`read_bar_file`] says which form the file used. Files are written with the six columns in
//! order and integer milliseconds. polars stays inside this module; the public API speaks
//! [`BarSeries`] and [`Path`].
//!
//! Reading validates everything [`BarSeries`] checks, and every error names the file, the
//! 1-based data row (row 1 is line 2 of a CSV file), the field and the raw value. CSV is read by
//! polars with a fixed schema; when that fails (or leaves a null), the text is scanned again line
//! by line to find the first bad row and field, so the message is precise.
//!
//! No input makes [`read_csv`] panic (a proptest feeds it arbitrary bytes): text polars cannot
//! take is parsed line by line, and a panic inside polars becomes [`Error::Polars`]. Parquet is
//! meant for files this project writes (caches): arbitrary bytes are an error, but a *corrupted*
//! Parquet file can make polars 0.55 request an impossible allocation, which aborts the
//! process; read untrusted data from CSV.
//!
//! Writing is atomic: the bytes go to a temporary file in the target's directory, are synced,
//! and the temporary file is renamed over the target, so an interrupted write never leaves a
//! partial target. Floats are written in their shortest round-trip form, so writing and reading
//! back gives the same bits.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use polars::prelude::{
    Column, CsvReadOptions, CsvWriter, DataFrame, DataType, Field, ParquetReader, ParquetWriter,
    Schema, SerReader, SerWriter,
};

use crate::error::{Error, Result};
use crate::series::BarSeries;
#[cfg(doc)]
use crate::time::TEXT_FORMS;
use crate::time::{TimeUnit, TimestampFormat, epoch_to_millis, parse_timestamps};

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

/// Reads bars from a Parquet file with the six bar columns (see the module docs; integer or
/// float price columns are cast to `f64`).
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
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("csv") => Ok(Format::Csv),
            Some("parquet" | "pq") => Ok(Format::Parquet),
            _ => Err(Error::InvalidParameter {
                name: "file extension",
                value: path.display().to_string(),
                reason: "expected .csv, .parquet or .pq".into(),
            }),
        }
    }
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

/// Column `i` of `df` cast to `dtype`; a failed cast or a null is an error naming the field
/// (and the row of the first null).
fn typed_column(
    df: &DataFrame,
    i: usize,
    field: &'static str,
    dtype: &DataType,
) -> Result<polars::prelude::Series> {
    let col = df.select_at_idx(i).ok_or_else(|| Error::MissingColumn {
        column: field,
        found: Vec::new(),
    })?;
    let cast = col
        .as_materialized_series()
        .strict_cast(dtype)
        .map_err(|e| Error::Parse {
            row: 1,
            field: field.to_string(),
            value: col.dtype().to_string(),
            reason: format!("column type cannot be read as {dtype}: {e}"),
        })?;
    if let Some(row) = cast.is_null().iter().position(|x| x == Some(true)) {
        return Err(Error::Parse {
            row: row + 1,
            field: field.to_string(),
            value: String::new(),
            reason: "missing value".into(),
        });
    }
    Ok(cast)
}

/// The five value columns of a frame as `f64`.
fn value_columns(df: &DataFrame, layout: &Layout) -> Result<[Vec<f64>; 5]> {
    let mut values: [Vec<f64>; 5] = Default::default();
    for ((column, &i), name) in values.iter_mut().zip(&layout.index[1..]).zip(&COLUMNS[1..]) {
        *column = typed_column(df, i, name, &DataType::Float64)?
            .f64()
            .map_err(polars_error)?
            .into_no_null_iter()
            .collect();
    }
    Ok(values)
}

/// The timestamp column of a frame in milliseconds, by its type: text (parsed), a Parquet
/// date-time or date (its declared unit), or numbers (unit detected).
fn timestamp_column(df: &DataFrame, i: usize) -> Result<(Vec<i64>, TimestampFormat)> {
    let field = COLUMNS[0];
    let dtype = df
        .select_at_idx(i)
        .map(|c| c.dtype().clone())
        .unwrap_or(DataType::Null);
    let physical = |dtype: &DataType| -> Result<Vec<i64>> {
        let col = typed_column(df, i, field, dtype)?;
        let ints = col
            .to_physical_repr()
            .strict_cast(&DataType::Int64)
            .map_err(polars_error)?;
        Ok(ints
            .i64()
            .map_err(polars_error)?
            .into_no_null_iter()
            .collect())
    };
    match &dtype {
        DataType::String => {
            let col = typed_column(df, i, field, &DataType::String)?;
            let cells = col.str().map_err(polars_error)?;
            parse_timestamps(cells.iter().map(|c| c.unwrap_or_default()), field)
        }
        DataType::Datetime(unit, _) => {
            let unit = match unit {
                polars::prelude::TimeUnit::Milliseconds => TimeUnit::Milliseconds,
                polars::prelude::TimeUnit::Microseconds => TimeUnit::Microseconds,
                polars::prelude::TimeUnit::Nanoseconds => TimeUnit::Nanoseconds,
            };
            let millis = physical(&dtype)?
                .into_iter()
                .map(|t| unit.to_millis(t))
                .collect();
            Ok((millis, TimestampFormat::Datetime(unit)))
        }
        DataType::Date => {
            let millis = physical(&dtype)?
                .into_iter()
                .map(|days| days.saturating_mul(crate::series::DAY_MS))
                .collect();
            Ok((millis, TimestampFormat::Date))
        }
        _ => {
            let values = physical(&DataType::Int64)?;
            let (millis, unit) = epoch_to_millis(&values)?;
            Ok((millis, TimestampFormat::Epoch(unit)))
        }
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

/// Runs a polars call, turning a panic inside polars into [`Error::Polars`].
///
/// Last-resort guard: polars 0.55 panics on some malformed inputs (an unterminated quote in a
/// CSV, corrupted Parquet pages; found by the proptests in `tests/it/io.rs`), and a reader of
/// untrusted files must return an error instead. The closure's state is discarded on panic, so
/// asserting unwind safety is sound. It cannot help under `panic = "abort"`.
fn guard_panic<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
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

/// Parses the data lines one by one (`"`-quoted values allowed, trailing blank lines
/// ignored): the first row with the wrong number of fields or a value that does not parse is
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
            column.push(unquote(raw).parse::<f64>().map_err(|e| Error::Parse {
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

/// `"x"` → `x`; anything else unchanged.
fn unquote(raw: &str) -> &str {
    raw.strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or(raw)
}

fn truncate(text: &str) -> String {
    text.chars().take(MAX_VALUE_CHARS).collect()
}

fn parse_parquet(bytes: Vec<u8>) -> Result<(BarSeries, TimestampFormat)> {
    if bytes.is_empty() {
        return Err(Error::NoBars {
            reason: "the file is empty",
        });
    }
    let df = guard_panic("parquet reader", || {
        ParquetReader::new(Cursor::new(bytes))
            .finish()
            .map_err(polars_error)
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
