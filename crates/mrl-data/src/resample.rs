//! Resampling bars to a coarser interval (1h → 4h → 1d).
//!
//! Buckets are aligned to multiples of the target interval since the Unix epoch: bar `t` falls
//! in the bucket starting at `⌊t / target⌋ · target`. Daily buckets therefore start at
//! 00:00 UTC, 4-hour buckets at 00:00, 04:00, …; weekly buckets start on Thursdays (1970-01-01
//! was a Thursday). Within a bucket: open = first open, high = max high, low = min low,
//! close = last close, volume = sum, timestamp = bucket start. Buckets without bars (gaps)
//! produce no bar; a bucket with a gap inside is kept, built from the bars it has.

use crate::error::{Error, Result};
use crate::series::{BarSeries, Interval};

/// Resamples `series` to `target`, keeping a last bucket that the data does not cover to its
/// end (a bar still forming). See the module docs for alignment and aggregation.
///
/// Errors: fewer than 2 bars (the source interval is unknown), or `target` not a positive
/// multiple of the source interval ([`BarSeries::interval`]).
///
/// ```
/// use mrl_data::{Bar, BarSeries, HOUR_MS, Interval, resample};
///
/// let bars: Vec<Bar> = (0..6)
///     .map(|h| Bar { timestamp: h * HOUR_MS, open: 1.0, high: 2.0 + h as f64, low: 0.5, close: 1.5, volume: 1.0 })
///     .collect();
/// let four_hourly = resample(&BarSeries::new(&bars)?, Interval::FOUR_HOURS)?;
/// assert_eq!(four_hourly.timestamps(), &[0, 4 * HOUR_MS]);
/// assert_eq!(four_hourly.highs(), &[5.0, 7.0]);
/// assert_eq!(four_hourly.volumes(), &[4.0, 2.0]);
/// # Ok::<(), mrl_data::Error>(())
/// ```
pub fn resample(series: &BarSeries, target: Interval) -> Result<BarSeries> {
    resample_impl(series, target, false)
}

/// As [`resample`], but drops the last bucket when the data ends before that bucket does
/// (its last bar opens earlier than `bucket end − source interval`): the bar would still be
/// forming. An error if nothing is left.
pub fn resample_complete(series: &BarSeries, target: Interval) -> Result<BarSeries> {
    resample_impl(series, target, true)
}

/// The start of the bucket of width `width` ms holding time `t` (floor, also for `t < 0`;
/// clamped to `i64::MIN` for times within one bucket of it).
fn bucket_start(t: i64, width: i64) -> i64 {
    t.saturating_sub(t.rem_euclid(width))
}

fn resample_impl(series: &BarSeries, target: Interval, drop_incomplete: bool) -> Result<BarSeries> {
    let source = series.interval().ok_or(Error::TooShort {
        len: series.len(),
        needed: 2,
        what: "resampling (to know the source interval)",
    })?;
    let width = target.millis();
    if width % source.millis() != 0 {
        return Err(Error::InvalidParameter {
            name: "target interval",
            value: target.to_string(),
            reason: format!("must be a multiple of the source interval {source}"),
        });
    }

    let ts = series.timestamps();
    let (open, high, low) = (series.opens(), series.highs(), series.lows());
    let (close, volume) = (series.closes(), series.volumes());
    let mut out: [Vec<f64>; 5] = Default::default();
    let mut out_ts = Vec::new();
    let mut i = 0;
    while i < ts.len() {
        let start = bucket_start(ts[i], width);
        let mut j = i + 1;
        while j < ts.len() && bucket_start(ts[j], width) == start {
            j += 1;
        }
        out_ts.push(start);
        out[0].push(open[i]);
        out[1].push(high[i..j].iter().copied().fold(f64::NEG_INFINITY, f64::max));
        out[2].push(low[i..j].iter().copied().fold(f64::INFINITY, f64::min));
        out[3].push(close[j - 1]);
        out[4].push(volume[i..j].iter().sum());
        i = j;
    }

    if drop_incomplete {
        let last_start = out_ts.last().copied().unwrap_or_default();
        let data_end = series.end().saturating_add(source.millis());
        if data_end < last_start.saturating_add(width) {
            out_ts.pop();
            out.iter_mut().for_each(|c| {
                c.pop();
            });
            if out_ts.is_empty() {
                return Err(Error::TooShort {
                    len: series.len(),
                    needed: (width / source.millis()) as usize,
                    what: "one complete resampled bar",
                });
            }
        }
    }
    let [o, h, l, c, v] = out;
    let resampled = BarSeries::from_columns(out_ts, o, h, l, c, v)?;
    Ok(match series.symbol() {
        Some(symbol) => resampled.with_symbol(symbol),
        None => resampled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_floor_also_before_the_epoch() {
        assert_eq!(bucket_start(0, 10), 0);
        assert_eq!(bucket_start(9, 10), 0);
        assert_eq!(bucket_start(10, 10), 10);
        assert_eq!(bucket_start(-1, 10), -10);
        assert_eq!(bucket_start(-10, 10), -10);
    }
}
