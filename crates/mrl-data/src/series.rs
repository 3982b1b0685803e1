//! [`Bar`], [`BarSeries`] and [`Interval`]: validated OHLCV bars in structure-of-arrays form.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::calendar::{Calendar, large_gaps};
use crate::error::{Error, Result};

/// Milliseconds in one hour.
pub const HOUR_MS: i64 = 3_600_000;
/// Milliseconds in one day.
pub const DAY_MS: i64 = 86_400_000;
/// Milliseconds in a mean Julian year (365.25 days).
pub const YEAR_MS: f64 = 365.25 * 86_400_000.0;

/// One OHLCV bar. `timestamp` is the bar's open time in milliseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bar {
    /// Open time, ms since the Unix epoch, UTC.
    pub timestamp: i64,
    /// First traded price.
    pub open: f64,
    /// Highest price.
    pub high: f64,
    /// Lowest price.
    pub low: f64,
    /// Last traded price.
    pub close: f64,
    /// Traded volume (base units).
    pub volume: f64,
}

impl Bar {
    /// Checks the bar on its own: prices finite and > 0, volume finite and ≥ 0,
    /// `high ≥ max(open, close)`, `low ≤ min(open, close)`. `row` is 1-based, for the error.
    pub fn validate(&self, row: usize) -> Result<()> {
        for (field, value) in [
            ("open", self.open),
            ("high", self.high),
            ("low", self.low),
            ("close", self.close),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(Error::NonPositivePrice { row, field, value });
            }
        }
        if !(self.volume.is_finite() && self.volume >= 0.0) {
            return Err(Error::InvalidVolume {
                row,
                value: self.volume,
            });
        }
        let top = self.open.max(self.close);
        if self.high < top {
            return Err(Error::HighBelowBody {
                row,
                high: self.high,
                bound: top,
            });
        }
        let bottom = self.open.min(self.close);
        if self.low > bottom {
            return Err(Error::LowAboveBody {
                row,
                low: self.low,
                bound: bottom,
            });
        }
        Ok(())
    }
}

/// The spacing of bars, in milliseconds (always > 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Interval(i64);

impl Interval {
    /// One minute.
    pub const MINUTE: Interval = Interval(60_000);
    /// One hour.
    pub const HOUR: Interval = Interval(HOUR_MS);
    /// Four hours.
    pub const FOUR_HOURS: Interval = Interval(4 * HOUR_MS);
    /// One day.
    pub const DAY: Interval = Interval(DAY_MS);

    /// An interval of `ms` milliseconds; an error unless `ms > 0`.
    pub fn from_millis(ms: i64) -> Result<Self> {
        if ms > 0 {
            Ok(Interval(ms))
        } else {
            Err(Error::InvalidParameter {
                name: "interval",
                value: format!("{ms} ms"),
                reason: "must be > 0".into(),
            })
        }
    }

    /// The length in milliseconds.
    pub fn millis(self) -> i64 {
        self.0
    }

    /// Bars per year on a calendar that never closes (24/7): 8766 for hourly bars.
    pub fn continuous_periods_per_year(self) -> f64 {
        YEAR_MS / self.0 as f64
    }
}

/// The units of an interval's text, largest first: `w`, `d`, `h`, `m`, `s`, then `ms`.
const UNITS: [(&str, i64); 6] = [
    ("w", 7 * DAY_MS),
    ("d", DAY_MS),
    ("h", HOUR_MS),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

impl fmt::Display for Interval {
    /// The largest unit that divides the length: `1h`, `4h`, `1d`, `1w`, `15m`, `1500ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (unit, size) = UNITS
            .into_iter()
            .find(|&(_, size)| self.0 % size == 0)
            .unwrap_or(("ms", 1));
        write!(f, "{}{unit}", self.0 / size)
    }
}

impl FromStr for Interval {
    type Err = Error;

    /// A positive count and a unit `ms`, `s`, `m`, `h`, `d` or `w` (`15m`, `1h`, `4h`, `1d`),
    /// the inverse of [`Display`](fmt::Display).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming the text when it is not a count and one of those
    /// units, the count is 0, or the length overflows `i64` milliseconds.
    fn from_str(text: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidParameter {
            name: "interval",
            value: format!("{text:?}"),
            reason: reason.into(),
        };
        let expected = "expected a count and a unit ms, s, m, h, d or w, e.g. 4h";
        let digits = text
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| bad(expected))?;
        let (count, unit) = text.split_at(digits);
        let count: i64 = count.parse().map_err(|_| bad(expected))?;
        let (_, size) = UNITS
            .into_iter()
            .find(|&(name, _)| name == unit)
            .ok_or_else(|| bad(expected))?;
        let ms = count
            .checked_mul(size)
            .ok_or_else(|| bad("too long for i64 milliseconds"))?;
        Interval::from_millis(ms).map_err(|_| bad("the count must be at least 1"))
    }
}

/// A step between consecutive bars longer than the series' [`Interval`]: bars are missing
/// (an outage, a weekend, a holiday). Gaps are reported, never filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// 0-based index of the bar after the gap.
    pub index: usize,
    /// Timestamp of the bar before the gap.
    pub from: i64,
    /// Timestamp of the bar after the gap.
    pub to: i64,
    /// Bars that a gapless series would have between the two: `(to − from) / interval − 1`
    /// with the ratio rounded to the nearest integer (halves up), so a step stretched or
    /// shortened by a daylight-saving shift still counts whole bars (71 h between daily bars
    /// stamped at New York midnight across a weekend is 2 missing days, not 1). Always ≥ 1.
    pub missing: i64,
}

/// A validated series of bars, stored column by column.
///
/// Invariants (checked by every constructor, so holding a `BarSeries` is the proof):
/// at least one bar; timestamps strictly increasing; every [`Bar::validate`] rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BarSeries {
    symbol: Option<String>,
    timestamp: Vec<i64>,
    open: Vec<f64>,
    high: Vec<f64>,
    low: Vec<f64>,
    close: Vec<f64>,
    volume: Vec<f64>,
}

impl BarSeries {
    /// Builds a series from bars, validating every rule; the error names the first bad row.
    pub fn new(bars: &[Bar]) -> Result<Self> {
        let mut series = BarSeries::with_capacity(bars.len());
        for bar in bars {
            series.push_unchecked(*bar);
        }
        series.validate()?;
        Ok(series)
    }

    /// Builds a series from columns of equal length, validating every rule.
    pub fn from_columns(
        timestamp: Vec<i64>,
        open: Vec<f64>,
        high: Vec<f64>,
        low: Vec<f64>,
        close: Vec<f64>,
        volume: Vec<f64>,
    ) -> Result<Self> {
        let expected = timestamp.len();
        for (field, len) in [
            ("open", open.len()),
            ("high", high.len()),
            ("low", low.len()),
            ("close", close.len()),
            ("volume", volume.len()),
        ] {
            if len != expected {
                return Err(Error::LengthMismatch {
                    field,
                    found: len,
                    expected,
                });
            }
        }
        let series = BarSeries {
            symbol: None,
            timestamp,
            open,
            high,
            low,
            close,
            volume,
        };
        series.validate()?;
        Ok(series)
    }

    fn with_capacity(n: usize) -> Self {
        BarSeries {
            symbol: None,
            timestamp: Vec::with_capacity(n),
            open: Vec::with_capacity(n),
            high: Vec::with_capacity(n),
            low: Vec::with_capacity(n),
            close: Vec::with_capacity(n),
            volume: Vec::with_capacity(n),
        }
    }

    fn push_unchecked(&mut self, bar: Bar) {
        self.timestamp.push(bar.timestamp);
        self.open.push(bar.open);
        self.high.push(bar.high);
        self.low.push(bar.low);
        self.close.push(bar.close);
        self.volume.push(bar.volume);
    }

    fn validate(&self) -> Result<()> {
        if self.timestamp.is_empty() {
            return Err(Error::TooShort {
                len: 0,
                needed: 1,
                what: "a series",
            });
        }
        for i in 0..self.len() {
            let row = i + 1;
            self.bar(i).validate(row)?;
            if i > 0 && self.timestamp[i] <= self.timestamp[i - 1] {
                return Err(Error::NonIncreasingTime {
                    row,
                    timestamp: self.timestamp[i],
                    previous: self.timestamp[i - 1],
                });
            }
        }
        Ok(())
    }

    /// The same series labelled with a symbol (e.g. `BTCUSDT`).
    pub fn with_symbol(mut self, symbol: impl Into<String>) -> Self {
        self.symbol = Some(symbol.into());
        self
    }

    /// The symbol, if known.
    pub fn symbol(&self) -> Option<&str> {
        self.symbol.as_deref()
    }

    /// Number of bars (≥ 1).
    pub fn len(&self) -> usize {
        self.timestamp.len()
    }

    /// Always `false`: a series has at least one bar. Present for API symmetry.
    pub fn is_empty(&self) -> bool {
        self.timestamp.is_empty()
    }

    /// Bar `i` (0-based). Panics if `i >= len()`, like slice indexing.
    pub fn bar(&self, i: usize) -> Bar {
        Bar {
            timestamp: self.timestamp[i],
            open: self.open[i],
            high: self.high[i],
            low: self.low[i],
            close: self.close[i],
            volume: self.volume[i],
        }
    }

    /// Iterates over the bars in time order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Bar> + '_ {
        (0..self.len()).map(|i| self.bar(i))
    }

    /// Open times (ms, UTC).
    pub fn timestamps(&self) -> &[i64] {
        &self.timestamp
    }
    /// Opens.
    pub fn opens(&self) -> &[f64] {
        &self.open
    }
    /// Highs.
    pub fn highs(&self) -> &[f64] {
        &self.high
    }
    /// Lows.
    pub fn lows(&self) -> &[f64] {
        &self.low
    }
    /// Closes.
    pub fn closes(&self) -> &[f64] {
        &self.close
    }
    /// Volumes.
    pub fn volumes(&self) -> &[f64] {
        &self.volume
    }

    /// Timestamp of the first bar.
    pub fn start(&self) -> i64 {
        self.timestamp[0]
    }

    /// Timestamp of the last bar.
    pub fn end(&self) -> i64 {
        self.timestamp[self.len() - 1]
    }

    /// The bars in `range` (0-based, end exclusive) as a new series; an error if the range is
    /// empty or out of bounds.
    pub fn slice(&self, range: Range<usize>) -> Result<BarSeries> {
        if range.start >= range.end || range.end > self.len() {
            return Err(Error::InvalidParameter {
                name: "range",
                value: format!("{range:?}"),
                reason: format!("must be a non-empty range within 0..{}", self.len()),
            });
        }
        Ok(BarSeries {
            symbol: self.symbol.clone(),
            timestamp: self.timestamp[range.clone()].to_vec(),
            open: self.open[range.clone()].to_vec(),
            high: self.high[range.clone()].to_vec(),
            low: self.low[range.clone()].to_vec(),
            close: self.close[range.clone()].to_vec(),
            volume: self.volume[range].to_vec(),
        })
    }

    /// The bar spacing: the most common step between consecutive timestamps (ties go to the
    /// shorter step). `None` for a single bar. Daily equities give one day despite weekends.
    pub fn interval(&self) -> Option<Interval> {
        let mut steps: Vec<i64> = self
            .timestamp
            .windows(2)
            .map(|w| w[1].saturating_sub(w[0]))
            .collect();
        if steps.is_empty() {
            return None;
        }
        steps.sort_unstable();
        let (mut best, mut best_count) = (steps[0], 0usize);
        let mut i = 0;
        while i < steps.len() {
            let mut j = i;
            while j < steps.len() && steps[j] == steps[i] {
                j += 1;
            }
            if j - i > best_count {
                best = steps[i];
                best_count = j - i;
            }
            i = j;
        }
        Some(Interval(best))
    }

    /// Steps that skip at least one bar, in time order: those at least 1.5 intervals long
    /// ([`BarSeries::interval`]), so that the ratio rounds to ≥ 2 and [`Gap::missing`] is ≥ 1.
    /// A step an hour off a whole number of days (a daylight-saving shift) is no gap.
    pub fn gaps(&self) -> Vec<Gap> {
        let Some(interval) = self.interval() else {
            return Vec::new();
        };
        let step = interval.millis();
        self.timestamp
            .windows(2)
            .enumerate()
            .filter_map(|(i, w)| {
                let missing = missing_bars(w[1].saturating_sub(w[0]), step);
                (missing > 0).then_some(Gap {
                    index: i + 1,
                    from: w[0],
                    to: w[1],
                    missing,
                })
            })
            .collect()
    }

    /// The trading calendar: bar spacing and session pattern (24/7 or weekday sessions), and
    /// from them the bars in a year. `None` with fewer than 2 bars.
    ///
    /// The rule (in [`Calendar`]'s docs) uses the bar spacing and the weekdays the bars
    /// fall on, never the span, so gaps do not change it and any slice of a series that holds
    /// two weeks of bars has the calendar of the whole. Large gaps (more than
    /// [`LARGE_GAP_DAYS`](crate::LARGE_GAP_DAYS) days and
    /// [`LARGE_GAP_BARS`](crate::LARGE_GAP_BARS) bars) are logged as a `tracing` warning.
    pub fn calendar(&self) -> Option<Calendar> {
        let interval = self.interval()?;
        let gaps = self.gaps();
        let large = large_gaps(&gaps, interval);
        if let Some(longest) = large.iter().max_by_key(|g| g.to.saturating_sub(g.from)) {
            tracing::warn!(
                symbol = self.symbol().unwrap_or("-"),
                large_gaps = large.len(),
                longest_from_ms = longest.from,
                longest_to_ms = longest.to,
                longest_missing_bars = longest.missing,
                "series has large gaps; the calendar ignores them, bar counts do not"
            );
        }
        Some(Calendar::detect(&self.timestamp, interval))
    }

    /// Bars per year: the annualisation factor of metrics, [`Calendar::periods_per_year`] of
    /// [`BarSeries::calendar`]. 8766 (365.25 · 24) for 24/7 hourly bars, 252 for weekday daily
    /// bars, 7 · 252 for hourly bars of a 7-hour weekday session; the same for any slice of
    /// two weeks or more, whatever gaps the series has. `None` with fewer than 2 bars.
    pub fn periods_per_year(&self) -> Option<f64> {
        self.calendar().map(|c| c.periods_per_year())
    }
}

/// Bars missing in a step of `length` ms between bars spaced `step` ms apart:
/// `round(length / step) − 1` (halves up), at least 0.
fn missing_bars(length: i64, step: i64) -> i64 {
    // round(a / b) for a, b > 0 as (2a + b) / (2b) in i128: no overflow, no float error.
    let (length, step) = (i128::from(length), i128::from(step));
    let steps = (2 * length + step) / (2 * step);
    (steps - 1).max(0) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(timestamp: i64, close: f64) -> Bar {
        Bar {
            timestamp,
            open: close,
            high: close,
            low: close,
            close,
            volume: 1.0,
        }
    }

    #[test]
    fn rejects_each_bad_rule_naming_the_row() {
        let good = [bar(0, 1.0), bar(HOUR_MS, 2.0)];
        assert!(BarSeries::new(&good).is_ok());

        let mut b = good;
        b[1].close = 0.0;
        let err = BarSeries::new(&b).unwrap_err();
        assert!(
            matches!(
                err,
                Error::NonPositivePrice {
                    row: 2,
                    field: "close",
                    ..
                }
            ),
            "{err}"
        );

        let mut b = good;
        b[0].open = f64::NAN;
        assert!(matches!(
            BarSeries::new(&b).unwrap_err(),
            Error::NonPositivePrice {
                row: 1,
                field: "open",
                ..
            }
        ));

        let mut b = good;
        b[1].high = 1.5;
        assert!(matches!(
            BarSeries::new(&b).unwrap_err(),
            Error::HighBelowBody { row: 2, .. }
        ));

        let mut b = good;
        b[1].low = 2.5;
        b[1].high = 2.5;
        assert!(matches!(
            BarSeries::new(&b).unwrap_err(),
            Error::LowAboveBody { row: 2, .. }
        ));

        let mut b = good;
        b[1].volume = -1.0;
        assert!(matches!(
            BarSeries::new(&b).unwrap_err(),
            Error::InvalidVolume { row: 2, .. }
        ));

        let mut b = good;
        b[1].timestamp = 0;
        let err = BarSeries::new(&b).unwrap_err();
        assert!(matches!(
            err,
            Error::NonIncreasingTime {
                row: 2,
                timestamp: 0,
                previous: 0
            }
        ));
        assert_eq!(
            err.to_string(),
            "row 2: timestamp 0 is not after the previous bar's 0"
        );

        assert!(matches!(
            BarSeries::new(&[]).unwrap_err(),
            Error::TooShort { .. }
        ));
    }

    #[test]
    fn interval_gaps_and_periods_per_year() {
        // Hourly with one 3-hour hole.
        let ts = [0, 1, 2, 5, 6].map(|h| h * HOUR_MS);
        let bars: Vec<Bar> = ts.iter().map(|&t| bar(t, 10.0)).collect();
        let s = BarSeries::new(&bars).unwrap();
        assert_eq!(s.interval(), Some(Interval::HOUR));
        assert_eq!(s.interval().unwrap().to_string(), "1h");
        let gaps = s.gaps();
        assert_eq!(gaps.len(), 1);
        assert_eq!(
            gaps[0],
            Gap {
                index: 3,
                from: 2 * HOUR_MS,
                to: 5 * HOUR_MS,
                missing: 2
            }
        );

        // A year of 24/7 hourly bars.
        let n = 8767;
        let bars: Vec<Bar> = (0..n).map(|i| bar(i as i64 * HOUR_MS, 1.0)).collect();
        let ppy = BarSeries::new(&bars).unwrap().periods_per_year().unwrap();
        assert!((ppy - 8766.0).abs() < 1e-9, "{ppy}");

        // Weekdays only (2024-01-01 is a Monday): 252 sessions a year, not the 261 weekdays
        // the span holds.
        let monday = 1_704_067_200_000;
        let bars: Vec<Bar> = (0..52 * 7)
            .filter(|d| d % 7 < 5)
            .map(|d| bar(monday + d as i64 * DAY_MS, 1.0))
            .collect();
        let s = BarSeries::new(&bars).unwrap();
        assert_eq!(s.interval(), Some(Interval::DAY));
        assert_eq!(s.periods_per_year(), Some(252.0));
    }

    #[test]
    fn missing_bars_round_to_nearest() {
        let h = HOUR_MS;
        // Daily bars at New York midnight across the November DST change: Thu 05:00, Fri
        // 05:00, Mon 04:00 UTC. 71 h / 24 h rounds to 3 steps: Saturday and Sunday missing.
        let thu = 1_730_955_600_000; // 2024-11-07 05:00 UTC
        let ts = [thu, thu + 24 * h, thu + 24 * h + 71 * h];
        let s = BarSeries::new(&ts.map(|t| bar(t, 1.0))).unwrap();
        assert_eq!(s.interval(), Some(Interval::DAY));
        assert_eq!(
            s.gaps(),
            vec![Gap {
                index: 2,
                from: thu + 24 * h,
                to: thu + 95 * h,
                missing: 2
            }]
        );
        // The spring change: 73 h is also 2 missing days; 25 h and 23 h steps are no gap.
        for (length, missing) in [
            (73, 2),
            (25, 0),
            (23, 0),
            (47, 1),
            (49, 1),
            (36, 1),
            (35, 0),
        ] {
            assert_eq!(missing_bars(length * h, 24 * h), missing, "{length} h");
        }
        // Exact multiples are unchanged: a 3-interval step skips 2 bars.
        assert_eq!(missing_bars(3 * h, h), 2);
        assert_eq!(missing_bars(i64::MAX, 1), i64::MAX - 1);
    }

    #[test]
    fn extreme_timestamps_neither_overflow_nor_allocate_the_span() {
        let (lo, hi) = (i64::MIN / 2, i64::MAX / 2);
        let ts = [lo, lo + HOUR_MS, hi, hi + HOUR_MS, hi + 2 * HOUR_MS];
        let s = BarSeries::new(&ts.map(|t| bar(t, 1.0))).unwrap();
        assert_eq!(s.interval(), Some(Interval::HOUR));
        assert_eq!(s.periods_per_year(), Some(8766.0));
        let gaps = s.gaps();
        assert_eq!((gaps.len(), gaps[0].index), (1, 2));
        assert_eq!(gaps[0].missing, (hi - lo - HOUR_MS) / HOUR_MS - 1);
        let wide = BarSeries::new(&[bar(i64::MIN, 1.0), bar(i64::MAX, 1.0)]).unwrap();
        assert_eq!(wide.interval(), Some(Interval(i64::MAX)));
        assert!(wide.gaps().is_empty());
    }

    #[test]
    fn slice_and_columns() {
        let bars: Vec<Bar> = (0..5).map(|i| bar(i * HOUR_MS, 1.0 + i as f64)).collect();
        let s = BarSeries::new(&bars).unwrap().with_symbol("X");
        let t = s.slice(1..3).unwrap();
        assert_eq!(t.closes(), &[2.0, 3.0]);
        assert_eq!(t.symbol(), Some("X"));
        assert!(s.slice(3..3).is_err());
        assert!(s.slice(0..6).is_err());
        let err =
            BarSeries::from_columns(vec![0], vec![1.0], vec![1.0], vec![1.0], vec![], vec![1.0])
                .unwrap_err();
        assert!(matches!(
            err,
            Error::LengthMismatch {
                field: "close",
                found: 0,
                expected: 1
            }
        ));
    }

    #[test]
    fn interval_text_round_trips_and_bad_text_is_named() {
        for (text, ms) in [
            ("15m", 15 * 60_000),
            ("1h", HOUR_MS),
            ("4h", 4 * HOUR_MS),
            ("1d", DAY_MS),
            ("1w", 7 * DAY_MS),
            ("30s", 30_000),
            ("1500ms", 1500),
        ] {
            let interval: Interval = text.parse().unwrap();
            assert_eq!(interval.millis(), ms, "{text}");
            assert_eq!(interval.to_string(), text);
        }
        // Another spelling of the same length prints in its largest unit.
        assert_eq!("60m".parse::<Interval>().unwrap(), Interval::HOUR);
        assert_eq!("7d".parse::<Interval>().unwrap().to_string(), "1w");
        for text in [
            "",
            "h",
            "1",
            "0h",
            "-1h",
            "1x",
            "1 h",
            "1H",
            "99999999999999999w",
        ] {
            let err = text.parse::<Interval>().unwrap_err().to_string();
            assert!(err.contains("interval"), "{text}: {err}");
            assert!(err.contains(&format!("{text:?}")), "{text}: {err}");
        }
    }
}
