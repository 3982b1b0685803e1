//! The on-disk cache of fetched bars: reuse a file that covers the range, else fetch and write
//! it atomically (temporary file in the same directory, fsync, rename).

use std::fs;
use std::path::{Path, PathBuf};

use super::client::{BybitClient, FetchProgress};
use super::config::KlineInterval;
use crate::error::{Error, Result};
use crate::series::BarSeries;

impl BybitClient {
    /// The bars of [`BybitClient::fetch_klines`], served from the file at `path` when it
    /// covers the range ([`cache_covers`]), else fetched and written there atomically
    /// ([`write_bars_atomic`]). The format follows the extension (`.csv`, `.parquet`).
    ///
    /// The cache is keyed by path alone: use one file per symbol, interval and category. A
    /// file that cannot be read or does not cover the range is replaced by a fresh fetch of
    /// the whole range (no merging); an interrupted fetch leaves the old file untouched.
    pub async fn fetch_cached(
        &mut self,
        symbol: &str,
        interval: KlineInterval,
        start_ms: i64,
        end_ms: i64,
        path: &Path,
        progress: impl FnMut(FetchProgress),
    ) -> Result<BarSeries> {
        if path.exists() {
            match read_cache(path) {
                Ok(cached) if cache_covers(&cached, interval, start_ms, end_ms) => {
                    if let Some(series) = trim(&cached, start_ms, end_ms)? {
                        tracing::info!(path = %path.display(), bars = series.len(), "bybit: cache hit");
                        return Ok(series.with_symbol(symbol));
                    }
                }
                Ok(cached) => tracing::info!(
                    path = %path.display(),
                    cached_start_ms = cached.start(),
                    cached_end_ms = cached.end(),
                    "bybit: cache does not cover the range, fetching"
                ),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "bybit: unreadable cache, fetching")
                }
            }
        }
        let series = self
            .fetch_klines_with_progress(symbol, interval, start_ms, end_ms, progress)
            .await?;
        write_bars_atomic(path, &series)?;
        tracing::info!(path = %path.display(), bars = series.len(), "bybit: cache written");
        Ok(series)
    }
}

/// Whether `cached` holds every bar of `interval` with open time in `[start_ms, end_ms]`:
/// its bar spacing matches the interval (for fixed lengths), its first bar opens no later than
/// the first bar of the range can (`start + length − 1`) and its last bar opens after
/// `end − length` (the last bar of the range). A month counts as 31 days.
///
/// Bars after "now" do not exist yet, so a range reaching into the future is never covered.
pub fn cache_covers(
    cached: &BarSeries,
    interval: KlineInterval,
    start_ms: i64,
    end_ms: i64,
) -> bool {
    if let (Some(expected), Some(found)) = (interval.to_interval(), cached.interval())
        && expected != found
    {
        return false;
    }
    let length = interval.max_millis();
    cached.start() <= start_ms.saturating_add(length - 1)
        && cached.end() > end_ms.saturating_sub(length)
}

/// The bars of `series` in `[start_ms, end_ms]`, or `None` if there are none.
fn trim(series: &BarSeries, start_ms: i64, end_ms: i64) -> Result<Option<BarSeries>> {
    let timestamps = series.timestamps();
    let from = timestamps.partition_point(|&t| t < start_ms);
    let to = timestamps.partition_point(|&t| t <= end_ms);
    if from >= to {
        return Ok(None);
    }
    series.slice(from..to).map(Some)
}

/// Writes `series` to `path` so that readers only ever see the old file or the complete new
/// one: the bars go to a hidden temporary file in the same directory (same extension, so the
/// same format), which is flushed to disk (`fsync`) and then renamed over `path`; the
/// directory is synced too on Unix. Missing parent directories are created. On failure the
/// temporary file is removed and `path` is untouched.
pub fn write_bars_atomic(path: &Path, series: &BarSeries) -> Result<()> {
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let name = path.file_name().ok_or_else(|| Error::InvalidParameter {
        name: "path",
        value: path.display().to_string(),
        reason: "must name a file".into(),
    })?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    let extension = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{}.{}.partial{extension}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = write_cache(&tmp, series).and_then(|()| {
        fs::File::open(&tmp)
            .and_then(|file| file.sync_all())
            .map_err(io_error(&tmp))?;
        fs::rename(&tmp, path).map_err(io_error(path))
    });
    if let Err(error) = written {
        // Best effort: the temporary file may not exist.
        let _ = fs::remove_file(&tmp);
        return Err(error);
    }
    #[cfg(unix)]
    if let Ok(dir) = fs::File::open(&dir) {
        // Persists the rename; a failure here cannot un-write the file, so it is not an error.
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Reads a cache file: CSV with header `timestamp,open,high,low,close,volume`.
// Stand-in until the crate's own CSV/Parquet reader lands; then this calls it.
fn read_cache(path: &Path) -> Result<BarSeries> {
    let text = fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap_or("")
        .split(',')
        .map(|s| s.trim().to_owned())
        .collect();
    if header != ["timestamp", "open", "high", "low", "close", "volume"] {
        return Err(Error::Schema { found: header }.in_file(path));
    }
    let bars = lines
        .filter(|line| !line.trim().is_empty())
        .enumerate()
        .map(|(i, line)| parse_csv_row(i + 1, line))
        .collect::<Result<Vec<_>>>()
        .map_err(|e| e.in_file(path))?;
    BarSeries::new(&bars).map_err(|e| e.in_file(path))
}

/// Parses data row `row` (1-based) of a cache CSV.
fn parse_csv_row(row: usize, line: &str) -> Result<crate::series::Bar> {
    let cells: Vec<&str> = line.split(',').map(str::trim).collect();
    let cell = |col: usize| cells.get(col).copied().unwrap_or("");
    let parse_error = |col: usize, reason: String| Error::Parse {
        row,
        field: ["timestamp", "open", "high", "low", "close", "volume"][col].to_owned(),
        value: cell(col).chars().take(64).collect(),
        reason,
    };
    let number = |col: usize| {
        cell(col)
            .parse::<f64>()
            .map_err(|e| parse_error(col, e.to_string()))
    };
    Ok(crate::series::Bar {
        timestamp: cell(0)
            .parse::<i64>()
            .map_err(|e| parse_error(0, e.to_string()))?,
        open: number(1)?,
        high: number(2)?,
        low: number(3)?,
        close: number(4)?,
        volume: number(5)?,
    })
}

/// Writes a cache file: CSV by extension `.csv`, else an error.
// Stand-in until the crate's own CSV/Parquet writer lands; then this calls it.
fn write_cache(path: &Path, series: &BarSeries) -> Result<()> {
    use std::fmt::Write as _;
    if path.extension().and_then(|e| e.to_str()) != Some("csv") {
        return Err(Error::InvalidParameter {
            name: "path",
            value: path.display().to_string(),
            reason: "the cache format must be .csv".into(),
        });
    }
    let mut text = String::from("timestamp,open,high,low,close,volume\n");
    for bar in series.iter() {
        let _ = writeln!(
            text,
            "{},{},{},{},{},{}",
            bar.timestamp, bar.open, bar.high, bar.low, bar.close, bar.volume
        );
    }
    fs::write(path, text).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::{Bar, HOUR_MS};

    fn hourly(first: i64, n: i64) -> BarSeries {
        let bars: Vec<Bar> = (0..n)
            .map(|i| Bar {
                timestamp: first + i * HOUR_MS,
                open: 100.0,
                high: 101.0,
                low: 99.0,
                close: 100.5,
                volume: 1.0,
            })
            .collect();
        BarSeries::new(&bars).unwrap()
    }

    #[test]
    fn coverage_rules() {
        let h = HOUR_MS;
        let cached = hourly(10 * h, 11); // bars at 10h ..= 20h
        let covers = |start, end| cache_covers(&cached, KlineInterval::Hour1, start, end);
        assert!(covers(10 * h, 20 * h));
        assert!(
            covers(9 * h + 1, 20 * h + h - 1),
            "unaligned ends inside the first and last bar"
        );
        assert!(covers(12 * h, 15 * h));
        assert!(!covers(9 * h, 20 * h), "the bar at 9h is missing");
        assert!(!covers(10 * h, 21 * h), "the bar at 21h is missing");
        assert!(
            !cache_covers(&cached, KlineInterval::Min15, 10 * h, 20 * h),
            "wrong spacing"
        );
        assert!(
            cache_covers(&cached, KlineInterval::Month, 10 * h, 20 * h),
            "a month has no fixed spacing"
        );
    }

    #[test]
    fn trim_keeps_the_range() {
        let h = HOUR_MS;
        let series = hourly(0, 10);
        let trimmed = trim(&series, 2 * h, 4 * h + 1).unwrap().unwrap();
        assert_eq!(trimmed.timestamps(), &[2 * h, 3 * h, 4 * h]);
        assert!(trim(&series, 20 * h, 30 * h).unwrap().is_none());
    }

    #[test]
    fn atomic_write_leaves_only_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("bars.csv");
        let series = hourly(0, 5);
        write_bars_atomic(&path, &series).unwrap();
        write_bars_atomic(&path, &series).unwrap();
        assert_eq!(read_cache(&path).unwrap().timestamps(), series.timestamps());
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("bars.csv")]);
    }

    #[test]
    fn failed_write_keeps_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bars.csv");
        fs::write(&path, "old").unwrap();
        // An unknown extension fails inside the writer, after the temporary path is chosen.
        let bad = dir.path().join("bars.unknown-format");
        assert!(write_bars_atomic(&bad, &hourly(0, 3)).is_err());
        assert!(!bad.exists());
        assert_eq!(fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
