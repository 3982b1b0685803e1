//! Reading and writing bars as CSV or Parquet through polars.
//!
//! Both formats hold the six columns `timestamp,open,high,low,close,volume`: `timestamp` is the
//! bar's open time as integer milliseconds since the Unix epoch (UTC), the others are `f64`.
//! polars stays inside this module; the public API speaks [`BarSeries`] and [`Path`].
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

/// The columns of a bar file, in order.
pub const COLUMNS: [&str; 6] = ["timestamp", "open", "high", "low", "close", "volume"];

/// Longest raw value quoted in an error message, in characters.
const MAX_VALUE_CHARS: usize = 64;

/// Reads bars from a CSV file with the header `timestamp,open,high,low,close,volume`.
///
/// The symbol is taken from the file name up to the first `_` (`BTCUSDT_1h.csv` → `BTCUSDT`).
pub fn read_csv(path: &Path) -> Result<BarSeries> {
    let bytes = std::fs::read(path).map_err(|source| io_error(path, source))?;
    let series = parse_csv(&bytes).map_err(|e| e.in_file(path))?;
    tracing::debug!(path = %path.display(), rows = series.len(), "read csv");
    Ok(with_symbol_from(series, path))
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

/// Reads bars from a Parquet file with the six bar columns (any order; integer or float
/// columns are cast to `i64` timestamps and `f64` values).
///
/// The symbol is taken from the file name as in [`read_csv`].
pub fn read_parquet(path: &Path) -> Result<BarSeries> {
    let bytes = std::fs::read(path).map_err(|source| io_error(path, source))?;
    let series = parse_parquet(bytes).map_err(|e| e.in_file(path))?;
    tracing::debug!(path = %path.display(), rows = series.len(), "read parquet");
    Ok(with_symbol_from(series, path))
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
    match Format::of(path)? {
        Format::Csv => read_csv(path),
        Format::Parquet => read_parquet(path),
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

fn schema() -> Schema {
    COLUMNS
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let dtype = if i == 0 {
                DataType::Int64
            } else {
                DataType::Float64
            };
            Field::new((*name).into(), dtype)
        })
        .collect()
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

/// Pulls the six typed columns out of a frame; `None` values become an error naming the row.
fn from_frame(df: &DataFrame) -> Result<BarSeries> {
    let column = |name: &'static str, dtype: DataType| -> Result<polars::prelude::Series> {
        let col = df.column(name).map_err(polars_error)?;
        let cast = col
            .as_materialized_series()
            .strict_cast(&dtype)
            .map_err(|e| Error::Parse {
                row: 1,
                field: name.to_string(),
                value: col.dtype().to_string(),
                reason: format!("column type cannot be read as {dtype}: {e}"),
            })?;
        let nulls = cast.is_null();
        if let Some(row) = nulls.iter().position(|x| x == Some(true)) {
            return Err(Error::Parse {
                row: row + 1,
                field: name.to_string(),
                value: String::new(),
                reason: "missing value".into(),
            });
        }
        Ok(cast)
    };
    let timestamp: Vec<i64> = column(COLUMNS[0], DataType::Int64)?
        .i64()
        .map_err(polars_error)?
        .into_no_null_iter()
        .collect();
    let mut floats = Vec::with_capacity(5);
    for name in &COLUMNS[1..] {
        let values: Vec<f64> = column(name, DataType::Float64)?
            .f64()
            .map_err(polars_error)?
            .into_no_null_iter()
            .collect();
        floats.push(values);
    }
    let mut floats = floats.into_iter();
    let mut next = || floats.next().unwrap_or_default();
    let (open, high, low, close, volume) = (next(), next(), next(), next(), next());
    BarSeries::from_columns(timestamp, open, high, low, close, volume)
}

/// Parses CSV bytes: header check, fast typed read through polars, precise scan on failure.
fn parse_csv(bytes: &[u8]) -> Result<BarSeries> {
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
    let names: Vec<String> = String::from_utf8_lossy(header)
        .split(',')
        .take(32)
        .map(|s| truncate(s.trim().trim_matches('"')))
        .collect();
    if names != COLUMNS {
        return Err(Error::Schema { found: names });
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::NoBars {
            reason: "the file has a header but no rows",
        });
    }
    // polars skips blank lines (which would shift row numbers) and has panicked on stray
    // quotes, which numbers never need: such files take the line-by-line path.
    if has_inner_blank_line(body) || body.contains(&b'"') {
        return parse_rows(body);
    }
    // Trailing blank lines (`\r` alone included) would become rows of nulls.
    let end = bytes.len()
        - bytes
            .iter()
            .rev()
            .take_while(|b| b.is_ascii_whitespace())
            .count();
    match guard_panic("csv reader", || read_csv_polars(&bytes[..end])) {
        Ok(df) => match from_frame(&df) {
            // A null slipped through: let the scan name the raw value.
            Err(Error::Parse { .. }) => parse_rows(body),
            other => other,
        },
        Err(e) => {
            tracing::debug!(error = %e, "polars csv read failed, scanning line by line");
            parse_rows(body)
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

fn read_csv_polars(bytes: &[u8]) -> Result<DataFrame> {
    CsvReadOptions::default()
        .with_has_header(true)
        .with_schema(Some(Arc::new(schema())))
        .with_n_threads(Some(1))
        .into_reader_with_file_handle(Cursor::new(bytes))
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
/// ignored): the first value that does not parse is an error naming its 1-based row, field
/// and raw text.
fn parse_rows(body: &[u8]) -> Result<BarSeries> {
    let mut lines: Vec<&[u8]> = body.split(|&b| b == b'\n').map(trim_cr).collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    let n = lines.len();
    let mut timestamp = Vec::with_capacity(n);
    let mut values: [Vec<f64>; 5] = std::array::from_fn(|_| Vec::with_capacity(n));
    for (i, line) in lines.iter().enumerate() {
        let row = i + 1;
        let text = String::from_utf8_lossy(line);
        let fields: Vec<&str> = text.split(',').collect();
        if fields.len() != COLUMNS.len() {
            return Err(Error::Parse {
                row,
                field: "(row)".into(),
                value: truncate(&text),
                reason: format!("{} fields, expected {}", fields.len(), COLUMNS.len()),
            });
        }
        let parse_error = |field: &str, raw: &str, reason: String| Error::Parse {
            row,
            field: field.into(),
            value: truncate(raw),
            reason,
        };
        let ts = fields[0];
        timestamp.push(
            unquote(ts)
                .parse::<i64>()
                .map_err(|e| parse_error(COLUMNS[0], ts, e.to_string()))?,
        );
        for ((name, raw), column) in COLUMNS[1..].iter().zip(&fields[1..]).zip(values.iter_mut()) {
            column.push(
                unquote(raw)
                    .parse::<f64>()
                    .map_err(|e| parse_error(name, raw, e.to_string()))?,
            );
        }
    }
    let [open, high, low, close, volume] = values;
    BarSeries::from_columns(timestamp, open, high, low, close, volume)
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

fn parse_parquet(bytes: Vec<u8>) -> Result<BarSeries> {
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
    let mut names: Vec<String> = df
        .get_column_names()
        .into_iter()
        .map(|n| n.to_string())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    let mut expected = COLUMNS.map(String::from).to_vec();
    expected.sort();
    if sorted != expected {
        names.truncate(32);
        return Err(Error::Schema { found: names });
    }
    if df.height() == 0 {
        return Err(Error::NoBars {
            reason: "the file has columns but no rows",
        });
    }
    from_frame(&df)
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
        let err = parse_rows(b"0,1,1,1,1,1\n3600000,1,1,1,abc,1\n").unwrap_err();
        let expected = "row 2: field close: cannot parse \"abc\": invalid float literal";
        assert_eq!(err.to_string(), expected);
        let err = parse_rows(b"0,1,1,1,1\n").unwrap_err();
        assert!(matches!(err, Error::Parse { row: 1, .. }), "{err}");
        let s = parse_rows(b"\"0\",1,2,0.5,1,1\r\n\r\n").unwrap();
        assert_eq!((s.len(), s.highs()[0]), (1, 2.0));
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
