//! CSV and Parquet: exact round trips, precise errors naming file/row/field/value, atomic
//! writes, and no panic on arbitrary bytes.

use std::path::{Path, PathBuf};

use mrl_data::{
    Bar, BarSeries, Error, HOUR_MS, ProcessKind, SyntheticConfig, read_bars, read_csv,
    read_parquet, write_bars, write_csv, write_parquet,
};
use proptest::prelude::*;

const HEADER: &str = "timestamp,open,high,low,close,volume\n";
/// 2024-01-01 00:00 UTC in milliseconds: the first bar of the hand-written files.
const T0: i64 = 1_704_067_200_000;

fn sample_series() -> BarSeries {
    SyntheticConfig::new(ProcessKind::Regime.default_process())
        .generate(300, 1)
        .unwrap()
        .series
}

fn write_text(dir: &Path, name: &str, text: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A valid CSV body of `n` hourly rows from [`T0`].
fn rows(n: usize) -> String {
    (0..n)
        .map(|i| format!("{},100,101,99,100.5,3\n", T0 + i as i64 * HOUR_MS))
        .collect()
}

/// The error inside [`Error::File`], after checking the path it names.
fn in_file(err: Error, path: &Path) -> Error {
    match err {
        Error::File { path: p, source } => {
            assert_eq!(p, path);
            *source
        }
        other => panic!("expected Error::File, got {other:?}"),
    }
}

fn bits(s: &BarSeries) -> Vec<[u64; 6]> {
    s.iter()
        .map(|b| {
            [
                b.timestamp as u64,
                b.open.to_bits(),
                b.high.to_bits(),
                b.low.to_bits(),
                b.close.to_bits(),
                b.volume.to_bits(),
            ]
        })
        .collect()
}

#[test]
fn csv_and_parquet_round_trip_exactly_with_symbol_from_name() {
    let dir = tempfile::tempdir().unwrap();
    let series = sample_series();
    for name in ["ETHUSDT_1h.csv", "ETHUSDT_1h.parquet", "ETHUSDT.PQ"] {
        let path = dir.path().join(name);
        write_bars(&series, &path).unwrap();
        let back = read_bars(&path).unwrap();
        assert_eq!(bits(&back), bits(&series), "{name}");
        assert_eq!(back.symbol(), Some("ETHUSDT"));
    }
    let csv = std::fs::read_to_string(dir.path().join("ETHUSDT_1h.csv")).unwrap();
    assert!(csv.starts_with(HEADER), "{}", &csv[..80]);
    assert_eq!(csv.lines().count(), 301);
    // Explicit functions agree with the dispatchers.
    let p = dir.path().join("x.parquet");
    write_parquet(&series, &p).unwrap();
    assert_eq!(bits(&read_parquet(&p).unwrap()), bits(&series));
    let p = dir.path().join("y.csv");
    write_csv(&series, &p).unwrap();
    assert_eq!(bits(&read_csv(&p).unwrap()), bits(&series));
}

#[test]
fn unknown_extension_is_an_error() {
    let err = read_bars(Path::new("bars.json")).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidParameter {
                name: "file extension",
                ..
            }
        ),
        "{err}"
    );
    let err = write_bars(&sample_series(), Path::new("bars")).unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { .. }));
    // A directory (`mrl data check ../shared/data`) is named as one, not as an extension.
    let dir = tempfile::TempDir::new().unwrap();
    let err = read_bars(dir.path()).unwrap_err().to_string();
    assert!(err.contains("is a directory"), "{err}");
}

#[test]
fn bad_value_names_file_row_field_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = format!("{HEADER}{}", rows(16));
    text.push_str(&format!("{},100,101,99,abc,3\n", T0 + 16 * HOUR_MS));
    let path = write_text(dir.path(), "x.csv", text.as_bytes());
    let err = read_csv(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: row 17: field close: cannot parse \"abc\": invalid float literal",
            path.display()
        )
    );
    match in_file(err, &path) {
        Error::Parse {
            row, field, value, ..
        } => {
            assert_eq!((row, field.as_str(), value.as_str()), (17, "close", "abc"));
        }
        other => panic!("{other:?}"),
    }

    // A fractional timestamp, an empty value, a short row, a long row.
    let t2 = T0 + 2 * HOUR_MS;
    for (line, row, field) in [
        ("1.5,100,101,99,100,1".to_string(), 3, "timestamp"),
        (",100,101,99,100,1".to_string(), 3, "timestamp"),
        (format!("{t2},100,,99,100,1"), 3, "high"),
        (format!("{t2},100,101,99,100"), 3, "(row)"),
        (format!("{t2},100,101,99,100,1,9"), 3, "(row)"),
    ] {
        let text = format!("{HEADER}{}{line}\n", rows(2));
        let path = write_text(dir.path(), "bad.csv", text.as_bytes());
        match in_file(read_csv(&path).unwrap_err(), &path) {
            Error::Parse {
                row: r, field: f, ..
            } => assert_eq!((r, f.as_str()), (row, field), "{line}"),
            other => panic!("{line}: {other:?}"),
        }
    }
}

#[test]
fn validation_errors_carry_the_path_and_row() {
    let dir = tempfile::tempdir().unwrap();
    type IsExpected = fn(&Error) -> bool;
    let (t1, t2) = (T0 + HOUR_MS, T0 + 2 * HOUR_MS);
    let cases: [(String, IsExpected); 4] = [
        (format!("{t2},100,99,98,100,1"), |e| {
            matches!(e, Error::HighBelowBody { row: 3, .. })
        }),
        (format!("{t1},100,101,99,100,1"), |e| {
            matches!(e, Error::NonIncreasingTime { row: 3, .. })
        }),
        (format!("{t2},-1,101,-2,100,1"), |e| {
            matches!(
                e,
                Error::NonPositivePrice {
                    row: 3,
                    field: "open",
                    ..
                }
            )
        }),
        (format!("{t2},NaN,101,99,100,1"), |e| {
            matches!(
                e,
                Error::NonPositivePrice {
                    row: 3,
                    field: "open",
                    ..
                }
            )
        }),
    ];
    for (line, is_expected) in cases {
        let text = format!("{HEADER}{}{line}\n", rows(2));
        let path = write_text(dir.path(), "v.csv", text.as_bytes());
        let err = read_csv(&path).unwrap_err();
        assert!(
            err.to_string().starts_with(&path.display().to_string()),
            "{err}"
        );
        let inner = in_file(err, &path);
        assert!(is_expected(&inner), "{line}: {inner}");
    }
}

#[test]
fn schema_and_emptiness_errors() {
    let dir = tempfile::tempdir().unwrap();
    for (header, column) in [
        ("timestamp,open,high,low,close\n", "volume"),
        ("time,open,high,low,close,volume\n", "timestamp"),
        ("timestamp,open,high,low,Close ,volume,close\n", "close"),
    ] {
        let path = write_text(
            dir.path(),
            "s.csv",
            format!("{header}{}", rows(2)).as_bytes(),
        );
        let inner = in_file(read_csv(&path).unwrap_err(), &path);
        match inner {
            Error::MissingColumn { column: c, .. } | Error::DuplicateColumn { column: c, .. } => {
                assert_eq!(c, column, "{header}")
            }
            other => panic!("{header}: {other}"),
        }
    }
    // Columns in another order or case, and extra columns, are read by name.
    let shuffled = (0..2)
        .map(|i| format!("7,{},100.5,99,100,101,x\n", T0 + i * HOUR_MS))
        .collect::<String>();
    let path = write_text(
        dir.path(),
        "o.csv",
        format!("Volume,TIMESTAMP,close,low,open,high,turnover\n{shuffled}").as_bytes(),
    );
    let s = read_csv(&path).unwrap();
    assert_eq!(s.timestamps(), &[T0, T0 + HOUR_MS]);
    assert_eq!(
        (
            s.opens()[0],
            s.highs()[0],
            s.lows()[0],
            s.closes()[0],
            s.volumes()[0]
        ),
        (100.0, 101.0, 99.0, 100.5, 7.0)
    );
    for (text, reason) in [
        ("", "the file is empty"),
        ("\n\n", "the file is empty"),
        (HEADER, "the file has a header but no rows"),
        (
            "timestamp,open,high,low,close,volume\r\n\r\n",
            "the file has a header but no rows",
        ),
    ] {
        let path = write_text(dir.path(), "e.csv", text.as_bytes());
        let inner = in_file(read_csv(&path).unwrap_err(), &path);
        assert!(
            matches!(inner, Error::NoBars { reason: r } if r == reason),
            "{text:?}: {inner}"
        );
    }
    let missing = dir.path().join("missing.csv");
    assert!(matches!(read_csv(&missing).unwrap_err(), Error::Io { .. }));
}

#[test]
fn crlf_bom_quotes_and_trailing_blank_lines_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let crlf = format!("{HEADER}{}", rows(3)).replace('\n', "\r\n") + "\r\n";
    let bom = format!("\u{feff}{HEADER}{}\n\n", rows(3));
    let quoted = format!(
        "\"timestamp\",\"open\",\"high\",\"low\",\"close\",\"volume\"\n{}",
        rows(3)
    );
    for text in [crlf, bom, quoted] {
        let path = write_text(dir.path(), "ok.csv", text.as_bytes());
        let s = read_csv(&path).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(s.len(), 3);
        assert_eq!(s.closes(), &[100.5; 3]);
    }
    // A blank line inside the data is reported at its row, not skipped.
    let text = format!("{HEADER}{}\n{}", rows(2), rows(1));
    let path = write_text(dir.path(), "blank.csv", text.as_bytes());
    let inner = in_file(read_csv(&path).unwrap_err(), &path);
    assert!(matches!(inner, Error::Parse { row: 3, .. }), "{inner}");
}

#[test]
fn parquet_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_text(dir.path(), "empty.parquet", b"");
    assert!(matches!(
        in_file(read_parquet(&path).unwrap_err(), &path),
        Error::NoBars { .. }
    ));
    let path = write_text(dir.path(), "junk.parquet", b"PAR1 this is not parquet PAR1");
    let err = read_parquet(&path).unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "{}: unreadable parquet file (corrupt, truncated or not parquet): ",
            path.display()
        )),
        "{err}"
    );
    assert!(matches!(
        in_file(err, &path),
        Error::Unreadable {
            format: "parquet",
            ..
        }
    ));
    // A CSV saved under a Parquet name.
    let path = write_text(
        dir.path(),
        "csv.parquet",
        format!("{HEADER}{}", rows(2)).as_bytes(),
    );
    assert!(read_parquet(&path).is_err());
}

/// Writes a Parquet file straight through polars (columns as given).
pub(crate) fn write_raw_parquet(path: &Path, columns: Vec<polars::prelude::Column>) {
    use polars::prelude::{DataFrame, ParquetWriter};
    let mut df = DataFrame::new_infer_height(columns).unwrap();
    let file = std::fs::File::create(path).unwrap();
    ParquetWriter::new(file).finish(&mut df).unwrap();
}

#[test]
fn parquet_columns_in_any_order_are_cast_and_nulls_named() {
    use polars::prelude::Column;
    let dir = tempfile::tempdir().unwrap();
    let col = |name: &str, v: &[f64]| Column::new(name.into(), v);
    let path = dir.path().join("AAA_1d.parquet");
    write_raw_parquet(
        &path,
        vec![
            col("close", &[1.5, 2.5]),
            // Seconds, as 32-bit integers: read as milliseconds.
            Column::new("timestamp".into(), &[1_704_067_200i32, 1_704_153_600]),
            col("open", &[1.0, 2.0]),
            col("high", &[2.0, 3.0]),
            Column::new("low".into(), &[1i64, 2]),
            col("volume", &[0.0, 7.0]),
        ],
    );
    let s = read_parquet(&path).unwrap();
    assert_eq!(s.timestamps(), &[T0, T0 + 86_400_000]);
    assert_eq!(s.lows(), &[1.0, 2.0]);
    assert_eq!(s.symbol(), Some("AAA"));

    let path = dir.path().join("nulls.parquet");
    let with_null = Column::new("close".into(), &[Some(1.5), Some(2.5), None]);
    let mut columns = vec![Column::new("timestamp".into(), &[T0, T0 + 1, T0 + 2])];
    for name in ["open", "high", "low"] {
        columns.push(col(name, &[1.0, 2.0, 3.0]));
    }
    columns.push(with_null);
    columns.push(col("volume", &[1.0, 1.0, 1.0]));
    write_raw_parquet(&path, columns);
    match in_file(read_parquet(&path).unwrap_err(), &path) {
        Error::Parse { row, field, .. } => assert_eq!((row, field.as_str()), (3, "close")),
        other => panic!("{other:?}"),
    }

    let path = dir.path().join("extra.parquet");
    write_raw_parquet(&path, vec![col("open", &[1.0]), col("turnover", &[1.0])]);
    let inner = in_file(read_parquet(&path).unwrap_err(), &path);
    assert!(
        matches!(
            inner,
            Error::MissingColumn {
                column: "timestamp",
                ..
            }
        ),
        "{inner}"
    );
}

/// Six Parquet columns: `timestamp` hourly from [`T0`], prices 100, 101, 99, 100.5 and volume 3,
/// with the columns in `replace` swapped in by name.
fn parquet_with(path: &Path, n: usize, replace: Vec<polars::prelude::Column>) {
    use polars::prelude::Column;
    let stamps: Vec<i64> = (0..n as i64).map(|i| T0 + i * HOUR_MS).collect();
    let mut columns = vec![Column::new("timestamp".into(), stamps)];
    for (name, value) in [
        ("open", 100.0),
        ("high", 101.0),
        ("low", 99.0),
        ("close", 100.5),
        ("volume", 3.0),
    ] {
        columns.push(Column::new(name.into(), vec![value; n]));
    }
    for column in replace {
        let at = columns.iter().position(|c| c.name() == column.name());
        match at {
            Some(i) => columns[i] = column,
            None => columns.push(column),
        }
    }
    write_raw_parquet(path, columns);
}

#[test]
fn parquet_decimal_prices_read_to_the_nearest_float() {
    use polars::prelude::{Int128Chunked, IntoColumn};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dec.parquet");
    // pyarrow's decimal128(12, 2), and a decimal128(38, 20) whose units pass 2^53.
    let close = Int128Chunked::from_vec("close".into(), vec![5_795_386, 5_802_001, 10_050])
        .into_decimal_unchecked(12, 2)
        .into_column();
    let volume = Int128Chunked::from_vec(
        "volume".into(),
        vec![
            10i128.pow(19),
            3 * 10i128.pow(20),
            123_456_789_012_345_678_901_234_567,
        ],
    )
    .into_decimal_unchecked(38, 20)
    .into_column();
    let high = polars::prelude::Column::new("high".into(), vec![60_000.0; 3]);
    let low = polars::prelude::Column::new("low".into(), vec![99.0; 3]);
    parquet_with(&path, 3, vec![close, volume, high, low]);
    let s = read_parquet(&path).unwrap();
    assert_eq!(s.closes(), &[57_953.86, 58_020.01, 100.5]);
    assert_eq!(
        s.volumes(),
        &[0.1, 3.0, "1234567.89012345678901234567".parse().unwrap()]
    );
}

#[test]
fn parquet_text_prices_name_the_row_and_value() {
    use polars::prelude::Column;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("text.parquet");
    let mut cells: Vec<String> = (0..80).map(|i| format!("{}", 100 + i % 2)).collect();
    cells[56] = "abc".into();
    parquet_with(&path, 80, vec![Column::new("close".into(), &cells)]);
    let err = read_parquet(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: row 57: field close: cannot parse \"abc\": invalid float literal",
            path.display()
        )
    );
    // Text that parses is read like a CSV cell: surrounding spaces and quotes ignored.
    let cells = [" 100.25", "\"100.5\"", "100.75 "];
    parquet_with(&path, 3, vec![Column::new("close".into(), &cells)]);
    assert_eq!(
        read_parquet(&path).unwrap().closes(),
        &[100.25, 100.5, 100.75]
    );
    // A null in a text column names its row.
    let cells = [Some("100"), None, Some("100")];
    parquet_with(&path, 3, vec![Column::new("open".into(), &cells)]);
    match in_file(read_parquet(&path).unwrap_err(), &path) {
        Error::Parse {
            row, field, reason, ..
        } => assert_eq!(
            (row, field.as_str(), reason.as_str()),
            (2, "open", "missing value")
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn non_numeric_parquet_columns_are_refused_by_name_and_type() {
    use polars::prelude::{Column, Int32Chunked, IntoColumn};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("types.parquet");
    let days = || {
        Int32Chunked::from_vec("open".into(), vec![19_723; 3])
            .into_date()
            .into_column()
    };
    for (column, field, dtype) in [
        (
            Column::new("close".into(), &[true, true, false]),
            "close",
            "Boolean",
        ),
        (
            Column::new("volume".into(), &[true; 3]),
            "volume",
            "Boolean",
        ),
        (
            Column::new("timestamp".into(), &[true; 3]),
            "timestamp",
            "Boolean",
        ),
        (days(), "open", "Date32"),
    ] {
        parquet_with(&path, 3, vec![column]);
        let err = read_parquet(&path).unwrap_err();
        let message = err.to_string();
        match in_file(err, &path) {
            Error::UnsupportedColumnType {
                column, dtype: d, ..
            } => assert_eq!((column, d.as_str()), (field, dtype)),
            other => panic!("{field}: {other:?}"),
        }
        assert!(
            message.contains(&format!(
                "column {field}: type {dtype} is not supported, expected"
            )),
            "{message}"
        );
    }
    // A column that is no bar field is not read, whatever its type.
    parquet_with(&path, 3, vec![Column::new("halted".into(), &[false; 3])]);
    assert_eq!(read_parquet(&path).unwrap().len(), 3);
}

/// Set in the child process of [`bad_parquet_files_print_nothing`].
const CHILD: &str = "MRL_DATA_QUIET_PANIC_CHILD";

/// A 40-bar Parquet file as [`write_parquet`] writes it, with byte 274 (in the first data page)
/// inverted: polars 0.55 panics decoding it.
fn corrupt_parquet(path: &Path) {
    let bars: Vec<Bar> = (0..40)
        .map(|i| {
            let p = 100.0 + (i % 7) as f64 * 0.5;
            Bar {
                timestamp: T0 + i * HOUR_MS,
                open: p,
                high: p + 1.0,
                low: p - 1.0,
                close: p + 0.25,
                volume: 10.0 + i as f64,
            }
        })
        .collect();
    write_parquet(&BarSeries::new(&bars).unwrap(), path).unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    bytes[274] ^= 0xFF;
    std::fs::write(path, bytes).unwrap();
}

/// The reads of [`bad_parquet_files_print_nothing`], run in a child process (a no-op here).
#[test]
fn bad_parquet_files_child() {
    use polars::prelude::Int128Chunked;
    use polars::prelude::IntoColumn;
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.parquet");
    corrupt_parquet(&path);
    match in_file(read_parquet(&path).unwrap_err(), &path) {
        Error::Unreadable {
            format: "parquet",
            detail,
        } => assert!(
            detail.starts_with("polars panicked: "),
            "the corruption no longer makes polars panic (choose another byte): {detail}"
        ),
        other => panic!("{other:?}"),
    }
    let path = dir.path().join("dec.parquet");
    let close = Int128Chunked::from_vec("close".into(), vec![10_050; 2])
        .into_decimal_unchecked(12, 2)
        .into_column();
    parquet_with(&path, 2, vec![close]);
    assert_eq!(read_parquet(&path).unwrap().closes(), &[100.5; 2]);
}

#[test]
fn bad_parquet_files_print_nothing() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "io::bad_parquet_files_child", "--nocapture"])
        .env(CHILD, "1")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "{stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn spaces_around_csv_values_read_the_same_on_both_paths() {
    let dir = tempfile::tempdir().unwrap();
    let line = |i: i64| {
        format!(
            "{}, 57953.86, 58000.5,\t57900 , 57990.25 , 1.5\n",
            T0 + i * HOUR_MS
        )
    };
    let mut lines: Vec<String> = (0..8).map(line).collect();
    let plain = lines.concat();
    // One quoted timestamp (row 5) sends the file to the line-by-line scan.
    lines[4] = lines[4].replacen(',', "\",", 1);
    lines[4].insert(0, '"');
    let quoted = lines.concat();
    let header = "timestamp, open, high, low, close, volume\n";
    let mut read = Vec::new();
    for (name, body) in [("plain.csv", &plain), ("quoted.csv", &quoted)] {
        let path = write_text(dir.path(), name, format!("{header}{body}").as_bytes());
        read.push(read_csv(&path).unwrap_or_else(|e| panic!("{name}: {e}")));
    }
    assert_eq!(bits(&read[0]), bits(&read[1]));
    assert_eq!(read[0].closes(), &[57_990.25; 8]);
    assert_eq!(read[0].lows(), &[57_900.0; 8]);
    // A bad value names its own row on the scan too, not row 1.
    lines[6] = lines[6].replace(" 57990.25 ", " 5799x.25 ");
    let path = write_text(
        dir.path(),
        "bad.csv",
        format!("{header}{}", lines.concat()).as_bytes(),
    );
    match in_file(read_csv(&path).unwrap_err(), &path) {
        Error::Parse {
            row, field, value, ..
        } => assert_eq!(
            (row, field.as_str(), value.as_str()),
            (7, "close", " 5799x.25 ")
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn float_values_in_errors_print_short() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{HEADER}{}{},57555,57600,57555,1e-300,1\n",
        rows(2),
        T0 + 2 * HOUR_MS
    );
    let path = write_text(dir.path(), "tiny.csv", text.as_bytes());
    assert_eq!(
        read_csv(&path).unwrap_err().to_string(),
        format!(
            "{}: row 3: low 57555 is above min(open, close) = 1e-300",
            path.display()
        )
    );
}

#[test]
fn writes_are_atomic_and_leave_no_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("BTC_1h.csv");
    std::fs::write(&path, "old contents").unwrap();
    let series = sample_series();
    write_csv(&series, &path).unwrap();
    assert_eq!(read_csv(&path).unwrap().len(), 300);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("BTC_1h.csv")]);

    // Permissions are those of a plainly created file, not a private temporary one.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "x").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), mode(&plain));
        std::fs::remove_file(plain).unwrap();
    }

    std::fs::write(dir.path().join("plain.txt"), "x").unwrap();

    // A failed write (the target is a directory) leaves the target and no temporary file.
    let target = dir.path().join("taken.csv");
    std::fs::create_dir(&target).unwrap();
    assert!(matches!(
        write_csv(&series, &target).unwrap_err(),
        Error::Io { .. }
    ));
    assert!(target.is_dir());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);

    // Missing parent directories are created.
    let nested = dir.path().join("no/such/dir/x.parquet");
    write_parquet(&series, &nested).unwrap();
    assert_eq!(read_parquet(&nested).unwrap().closes(), series.closes());

    // A parent that is a file is an I/O error naming it.
    let err = write_parquet(&series, &dir.path().join("plain.txt/x.parquet")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
}

fn arb_series() -> impl Strategy<Value = BarSeries> {
    let price = prop_oneof![
        1e-8f64..1e8,
        prop::num::f64::POSITIVE | prop::num::f64::NORMAL
    ];
    let bar = (
        1i64..1_000_000,
        price.clone(),
        price.clone(),
        price.clone(),
        price,
        0f64..1e12,
    );
    prop::collection::vec(bar, 1..40).prop_map(|raw| {
        // Millisecond times from 1950 on, far enough from 1970 to have one unit.
        let mut t = -631_152_000_000i64;
        let bars: Vec<Bar> = raw
            .into_iter()
            .map(|(dt, open, close, h, l, volume)| {
                t += dt;
                Bar {
                    timestamp: t,
                    open,
                    high: open.max(close).max(h),
                    low: open.min(close).min(l),
                    close,
                    volume,
                }
            })
            .collect();
        BarSeries::new(&bars).unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_series_round_trip_bit_for_bit(series in arb_series()) {
        let dir = tempfile::tempdir().unwrap();
        for name in ["r.csv", "r.parquet"] {
            let path = dir.path().join(name);
            write_bars(&series, &path).unwrap();
            let back = read_bars(&path).unwrap();
            prop_assert_eq!(bits(&back), bits(&series));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.csv", "a.parquet"] {
            let path = write_text(dir.path(), name, &bytes);
            let _ = read_bars(&path);
        }
    }

    #[test]
    fn csv_like_text_never_panics(
        body in prop::collection::vec(
            prop::sample::select(b"0123456789.,-+eE\n\r\"naiNf ".to_vec()), 0..300),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut text = HEADER.as_bytes().to_vec();
        text.extend_from_slice(&body);
        let path = write_text(dir.path(), "t.csv", &text);
        if let Err(err) = read_csv(&path) {
            prop_assert!(err.to_string().starts_with(&path.display().to_string()));
        }
    }
}
