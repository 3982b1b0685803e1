//! Timestamp units and forms in bar files: seconds, milliseconds, microseconds, nanoseconds
//! and ISO 8601 / RFC 3339 text all read to the same milliseconds; a file that changes unit,
//! or holds a value in no unit, is an error naming the row; columns match by name.

use std::path::{Path, PathBuf};

use mrl_data::{
    BarFile, Error, TimeUnit, TimestampFormat, read_bar_file, read_bars, read_csv, read_parquet,
};
use proptest::prelude::*;

use crate::io::write_raw_parquet;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/timestamps");
/// The hourly bars of the example, 2021-04-04 20:00 .. 22:00 UTC, in milliseconds.
const HOURLY_MS: [i64; 3] = [1_617_566_400_000, 1_617_570_000_000, 1_617_573_600_000];

fn fixture(name: &str) -> PathBuf {
    Path::new(DIR).join(name)
}

fn read(name: &str) -> BarFile {
    read_bar_file(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The error inside [`Error::File`].
fn inner(err: Error) -> Error {
    match err {
        Error::File { source, .. } => *source,
        other => panic!("expected Error::File, got {other:?}"),
    }
}

#[test]
fn every_unit_reads_to_the_same_milliseconds() {
    for (name, format) in [
        ("hourly_s.csv", TimestampFormat::Epoch(TimeUnit::Seconds)),
        (
            "hourly_ms.csv",
            TimestampFormat::Epoch(TimeUnit::Milliseconds),
        ),
        (
            "hourly_us.csv",
            TimestampFormat::Epoch(TimeUnit::Microseconds),
        ),
        (
            "hourly_ns.csv",
            TimestampFormat::Epoch(TimeUnit::Nanoseconds),
        ),
        ("hourly_rfc3339.csv", TimestampFormat::Text),
        (
            "hourly_shuffled.csv",
            TimestampFormat::Epoch(TimeUnit::Milliseconds),
        ),
    ] {
        let file = read(name);
        assert_eq!(file.series.timestamps(), &HOURLY_MS, "{name}");
        assert_eq!(file.timestamp_format, format, "{name}");
        assert_eq!(file.series.closes(), &[100.5, 101.0, 101.2], "{name}");
        assert_eq!(file.series.highs(), &[101.0, 102.0, 101.5], "{name}");
        assert_eq!(file.series.periods_per_year(), Some(8766.0), "{name}");
    }
    // The microsecond file: 2025-01-01 00:00 .. 02:00 UTC, not the year 56 971.
    let file = read("hourly_2025_us.csv");
    assert_eq!(
        file.series.timestamps(),
        &[1_735_689_600_000, 1_735_693_200_000, 1_735_696_800_000]
    );
    assert_eq!(
        mrl_data::format_timestamp(file.series.start()),
        "2025-01-01 00:00"
    );
    assert_eq!(file.series.periods_per_year(), Some(8766.0));
}

#[test]
fn a_file_that_changes_unit_names_the_row_value_and_both_units() {
    let path = fixture("mixed_units.csv");
    let err = read_csv(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: row 2: timestamp 1617570000000 is in milliseconds, but row 1 is in seconds; \
             a file must use one unit",
            path.display()
        )
    );
    assert!(matches!(
        inner(err),
        Error::TimeUnitMismatch {
            row: 2,
            value: 1_617_570_000_000,
            found: TimeUnit::Milliseconds,
            expected: TimeUnit::Seconds
        }
    ));
}

fn csv_with_stamps(dir: &Path, stamps: &[&str]) -> PathBuf {
    let mut text = String::from("timestamp,open,high,low,close,volume\n");
    for t in stamps {
        text.push_str(&format!("{t},100,101,99,100.5,1\n"));
    }
    let path = dir.join("t.csv");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn values_in_no_unit_and_unreadable_text_are_refused_with_the_accepted_forms() {
    let dir = tempfile::tempdir().unwrap();
    // Near the epoch every unit is a date in 1970: refused, not guessed.
    let path = csv_with_stamps(dir.path(), &["1617566400000", "3600000"]);
    let err = inner(read_csv(&path).unwrap_err());
    assert!(
        matches!(
            err,
            Error::ImplausibleTimestamp {
                row: 2,
                value: 3_600_000
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("fits no unit"), "{err}");
    // Past 2200 in nanoseconds.
    let path = csv_with_stamps(dir.path(), &["8000000000000000000"]);
    let err = inner(read_csv(&path).unwrap_err());
    assert!(
        matches!(err, Error::ImplausibleTimestamp { row: 1, .. }),
        "{err}"
    );
    // Text the reader does not know names the forms it does.
    let path = csv_with_stamps(dir.path(), &["2021-04-04T20:00:00Z", "04/04/2021 21:00"]);
    let message = read_csv(&path).unwrap_err().to_string();
    assert!(
        message.contains("row 2: field timestamp: cannot parse \"04/04/2021 21:00\""),
        "{message}"
    );
    assert!(message.contains(mrl_data::TEXT_FORMS), "{message}");
    // Text after numbers: one form per file.
    let path = csv_with_stamps(dir.path(), &["1617566400", "2021-04-04T21:00:00Z"]);
    let message = read_csv(&path).unwrap_err().to_string();
    assert!(
        message.contains(
            "row 2: field timestamp: cannot parse \"2021-04-04T21:00:00Z\": a text time in a \
             column of epoch integers"
        ),
        "{message}"
    );
}

#[test]
fn quoted_and_padded_cells_and_dates_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = csv_with_stamps(dir.path(), &["\"2024-01-01\"", "\"2024-01-02\""]);
    let file = read_bar_file(&path).unwrap();
    assert_eq!(
        file.series.timestamps(),
        &[1_704_067_200_000, 1_704_153_600_000]
    );
    assert_eq!(file.timestamp_format, TimestampFormat::Text);
    let path = csv_with_stamps(dir.path(), &[" 1704067200 ", " 1704153600"]);
    assert_eq!(
        read_csv(&path).unwrap().timestamps(),
        &[1_704_067_200_000, 1_704_153_600_000]
    );
}

fn parquet_with_timestamps(path: &Path, timestamps: polars::prelude::Column) {
    use polars::prelude::Column;
    let col = |name: &str, v: &[f64]| Column::new(name.into(), v);
    write_raw_parquet(
        path,
        vec![
            col("Volume", &[1.0, 1.0, 1.0]),
            timestamps,
            col("open", &[100.0, 100.5, 101.0]),
            col("high", &[101.0, 102.0, 101.5]),
            col("low", &[99.0, 100.0, 100.5]),
            col("close", &[100.5, 101.0, 101.2]),
        ],
    );
}

#[test]
fn parquet_integer_and_text_timestamps_are_detected_the_same_way() {
    use polars::prelude::Column;
    let dir = tempfile::tempdir().unwrap();
    let seconds: Vec<i64> = HOURLY_MS.iter().map(|t| t / 1000).collect();
    let micros: Vec<i64> = HOURLY_MS.iter().map(|t| t * 1000).collect();
    let texts = [
        "2021-04-04T20:00:00Z",
        "2021-04-04T21:00:00Z",
        "2021-04-04T22:00:00Z",
    ];
    for (name, column, format) in [
        (
            "s.parquet",
            Column::new("timestamp".into(), &seconds),
            TimestampFormat::Epoch(TimeUnit::Seconds),
        ),
        (
            "us.parquet",
            Column::new("TimeStamp".into(), &micros),
            TimestampFormat::Epoch(TimeUnit::Microseconds),
        ),
        (
            "text.parquet",
            Column::new("timestamp".into(), &texts),
            TimestampFormat::Text,
        ),
    ] {
        let path = dir.path().join(name);
        parquet_with_timestamps(&path, column);
        let file = read_bar_file(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(file.series.timestamps(), &HOURLY_MS, "{name}");
        assert_eq!(file.timestamp_format, format, "{name}");
        assert_eq!(read_parquet(&path).unwrap(), file.series, "{name}");
    }
    let path = dir.path().join("mixed.parquet");
    let mixed = [seconds[0], HOURLY_MS[1], seconds[2]];
    parquet_with_timestamps(&path, Column::new("timestamp".into(), &mixed));
    let err = inner(read_bars(&path).unwrap_err());
    assert!(
        matches!(
            err,
            Error::TimeUnitMismatch {
                row: 2,
                found: TimeUnit::Milliseconds,
                expected: TimeUnit::Seconds,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn parquet_date_time_and_date_columns_read_as_utc_milliseconds() {
    use polars::prelude::{
        DataType, Int32Chunked, Int64Chunked, IntoColumn, TimeUnit as PolarsUnit, TimeZone,
    };
    let dir = tempfile::tempdir().unwrap();
    let zone = |name: &str| TimeZone::opt_try_new(Some(name)).unwrap();
    let in_unit = |per_ms: i64| -> Vec<i64> { HOURLY_MS.iter().map(|t| t * per_ms).collect() };
    // What pyarrow writes as timestamp('ms'), timestamp('ns'), timestamp('ms', tz='UTC'), …:
    // the stored instants are UTC whatever the zone; naive ones are read as UTC, like naive text.
    for (name, per_ms, unit, zone, format) in [
        (
            "ms.parquet",
            1,
            PolarsUnit::Milliseconds,
            None,
            TimeUnit::Milliseconds,
        ),
        (
            "ns.parquet",
            1_000_000,
            PolarsUnit::Nanoseconds,
            None,
            TimeUnit::Nanoseconds,
        ),
        (
            "ms_utc.parquet",
            1,
            PolarsUnit::Milliseconds,
            zone("UTC"),
            TimeUnit::Milliseconds,
        ),
        (
            "us_new_york.parquet",
            1_000,
            PolarsUnit::Microseconds,
            zone("America/New_York"),
            TimeUnit::Microseconds,
        ),
    ] {
        let path = dir.path().join(name);
        let column = Int64Chunked::from_vec("timestamp".into(), in_unit(per_ms))
            .into_datetime(unit, zone)
            .into_column();
        assert!(matches!(column.dtype(), DataType::Datetime(..)), "{name}");
        parquet_with_timestamps(&path, column);
        let file = read_bar_file(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(file.series.timestamps(), &HOURLY_MS, "{name}");
        assert_eq!(file.timestamp_format, TimestampFormat::Datetime(format));
    }
    // pyarrow's date32: days since the epoch, read as midnight UTC.
    let path = dir.path().join("AAPL_1d.parquet");
    let days = Int32Chunked::from_vec("timestamp".into(), vec![19_723, 19_724, 19_725])
        .into_date()
        .into_column();
    parquet_with_timestamps(&path, days);
    let file = read_bar_file(&path).unwrap();
    assert_eq!(
        file.series.timestamps(),
        &[1_704_067_200_000, 1_704_153_600_000, 1_704_240_000_000]
    );
    assert_eq!(file.timestamp_format, TimestampFormat::Date);
    assert_eq!(file.series.symbol(), Some("AAPL"));
}

#[test]
fn fractional_parquet_timestamps_are_refused_like_csv() {
    use polars::prelude::Column;
    let dir = tempfile::tempdir().unwrap();
    let whole: Vec<f64> = HOURLY_MS.iter().map(|&t| t as f64).collect();
    let path = dir.path().join("whole.parquet");
    parquet_with_timestamps(&path, Column::new("timestamp".into(), &whole));
    assert_eq!(read_parquet(&path).unwrap().timestamps(), &HOURLY_MS);

    for (bad, shown, problem) in [
        (1_617_570_000_000.5, "1617570000000.5", "not a whole number"),
        (f64::NAN, "NaN", "not a whole number"),
        (1e300, "1e300", "out of the range of a 64-bit integer"),
    ] {
        let path = dir.path().join("fraction.parquet");
        let stamps = [whole[0], bad, whole[2]];
        parquet_with_timestamps(&path, Column::new("timestamp".into(), &stamps));
        let err = read_parquet(&path).unwrap_err();
        let message = err.to_string();
        match inner(err) {
            Error::Parse {
                row, field, value, ..
            } => assert_eq!(
                (row, field.as_str(), value.as_str()),
                (2, "timestamp", shown)
            ),
            other => panic!("{shown}: {other:?}"),
        }
        assert!(
            message.contains(&format!(
                "row 2: field timestamp: cannot parse \"{shown}\": {problem}; expected an integer"
            )),
            "{message}"
        );
    }
    // The CSV reader refuses the same value at the same row and field.
    let path = csv_with_stamps(dir.path(), &["1617566400000", "1617570000000.5"]);
    match inner(read_csv(&path).unwrap_err()) {
        Error::Parse { row, field, .. } => assert_eq!((row, field.as_str()), (2, "timestamp")),
        other => panic!("{other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any series of whole-second bars between 1971 and 2199, written in any unit, reads back
    /// to the same milliseconds.
    #[test]
    fn any_unit_round_trips_to_milliseconds(
        start_s in 31_536_000i64..7_000_000_000,
        steps in prop::collection::vec(1i64..100_000, 1..20),
        unit in prop::sample::select(TimeUnit::ALL.to_vec()),
    ) {
        let mut seconds = vec![start_s];
        for step in steps {
            seconds.push(seconds[seconds.len() - 1] + step);
        }
        let stamps: Vec<String> = seconds
            .iter()
            .map(|s| (i128::from(*s) * i128::from(unit.per_second())).to_string())
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let refs: Vec<&str> = stamps.iter().map(String::as_str).collect();
        let file = read_bar_file(&csv_with_stamps(dir.path(), &refs)).unwrap();
        let expected: Vec<i64> = seconds.iter().map(|s| s * 1000).collect();
        prop_assert_eq!(file.series.timestamps(), expected.as_slice());
        prop_assert_eq!(file.timestamp_format, TimestampFormat::Epoch(unit));
    }
}
