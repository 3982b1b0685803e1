//! The on-disk cache of fetched bars: reuse a file that covers the range, else fetch and write
//! it with [`crate::write_bars`] (atomic: temporary file in the same directory, fsync, rename).

use std::fs;
use std::path::Path;

use super::client::{BybitClient, FetchProgress};
use super::config::KlineInterval;
use crate::error::{Error, Result};
use crate::series::BarSeries;

impl BybitClient {
    /// The bars of [`BybitClient::fetch_klines`], served from the file at `path` when it
    /// covers the range ([`cache_covers`]), else fetched and written there atomically by
    /// [`crate::write_bars`] (missing parent directories are created). The format follows the
    /// extension (`.csv`, `.parquet`, `.pq`).
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
            match crate::read_bars(path) {
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
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|source| Error::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        crate::write_bars(&series, path)?;
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
}
