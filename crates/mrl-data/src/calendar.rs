//! [`Calendar`]: how many bars a year a market has, from its bar spacing and session pattern.

use std::fmt;

use serde::{Deserialize, Serialize};

#[cfg(doc)]
use crate::series::BarSeries;
use crate::series::{DAY_MS, Gap, Interval, YEAR_MS};

/// Days in a mean Julian year: the calendar of 24/7 markets.
pub const DAYS_PER_YEAR: f64 = 365.25;
/// Sessions a year of a market that closes at weekends: 252, the usual equity convention
/// (about 261 weekdays less 9 exchange holidays).
pub const TRADING_DAYS_PER_YEAR: f64 = 252.0;
/// A weekday holding fewer than this share of the busiest weekday's bars per day is closed.
pub const CLOSED_DAY_SHARE: f64 = 0.25;
/// Days inside a step longer than this many days are no evidence of a weekly pattern.
pub const HOLE_DAYS: i64 = 5;
/// A gap is *large* (warned about) when it lasts more than this many days ...
pub const LARGE_GAP_DAYS: i64 = 7;
/// ... and more than this many bar intervals.
pub const LARGE_GAP_BARS: i64 = 10;

/// When a market trades.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Sessions {
    /// Around the clock, every day of the week (crypto).
    Continuous,
    /// Sessions on five weekdays, closed at weekends (equities, futures, FX).
    Weekdays,
}

impl fmt::Display for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Sessions::Continuous => "24/7",
            Sessions::Weekdays => "weekday sessions",
        })
    }
}

/// The trading calendar of a series: bar spacing and session pattern, and from them the
/// number of bars in a year (the rule below).
///
/// The annualisation factor of every metric (Sharpe, volatility, CAGR) is the number of bars
/// a year of this market holds. It is a property of the market, not of one file: it must not
/// change when a gap (an outage, a missing month, a year-long hole) falls inside the data, and
/// a slice of a series must have the same calendar as the whole. So it is *not* `(len − 1) /
/// span`; it is derived from two things that a gap does not move:
///
/// 1. **The bar spacing**: [`BarSeries::interval`], the most common step.
/// 2. **The session pattern**, read from the UTC weekdays the bars fall on:
///    - *24/7* ([`Sessions::Continuous`]) unless the market closes for a weekend: then a year
///      holds `365.25 · 86 400 000 / interval_ms` bars ([`YEAR_MS`] / interval): 8766 hourly,
///      2191.5 four-hourly, 365.25 daily bars.
///    - *Weekday sessions* ([`Sessions::Weekdays`]) when two consecutive weekdays (Saturday and
///      Sunday, or Friday and Saturday for markets whose days start before midnight UTC) are
///      closed: a year holds [`TRADING_DAYS_PER_YEAR`] (252, the equity convention: 261
///      weekdays less about 9 holidays) sessions of `bars_per_day` bars each: 252 daily bars,
///      1764 hourly bars of a 7-hour session.
///
/// A weekday counts as *closed* when, over the whole UTC days inside the series' span (the
/// first and last day may be partial and are left out, and so are days inside a hole of more
/// than [`HOLE_DAYS`] days, which say nothing about the week), it holds fewer than a quarter
/// ([`CLOSED_DAY_SHARE`]) of the bars per day of the busiest weekday. A holiday closes one
/// weekday once, which is not a weekend. `bars_per_day` of a session market is the median
/// number of bars on the whole UTC days that hold any, capped at `86 400 000 / interval_ms`
/// (a full day). Bars longer than a day (weekly bars) are counted on the continuous calendar: a
/// week is a week on any market.
///
/// Limits: a series whose span holds no whole weekend cannot show a weekend closure and is
/// taken as 24/7; a 24/7 series with an outage over a whole weekend and little else is taken
/// as a weekday market. Give the calendar at least two weeks of bars.
///
/// [`BarSeries::calendar`] logs a `tracing` warning when the series has large gaps (a step of
/// more than [`LARGE_GAP_DAYS`] days and more than [`LARGE_GAP_BARS`] intervals): the calendar
/// ignores them, but everything that counts bars (episodes, warm-up windows) does not.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Calendar {
    /// The bar spacing ([`BarSeries::interval`](crate::BarSeries::interval)).
    pub interval: Interval,
    /// When the market trades.
    pub sessions: Sessions,
    /// Bars in one trading day: `86 400 000 / interval_ms` around the clock, the median bars
    /// per day of a session market.
    pub bars_per_day: f64,
    /// Trading days in a year: [`DAYS_PER_YEAR`] (365.25) or [`TRADING_DAYS_PER_YEAR`] (252).
    pub days_per_year: f64,
}

impl Calendar {
    /// The continuous (24/7) calendar of bars spaced `interval` apart: [`YEAR_MS`] / interval
    /// bars a year.
    pub fn continuous(interval: Interval) -> Self {
        Calendar {
            interval,
            sessions: Sessions::Continuous,
            bars_per_day: DAY_MS as f64 / interval.millis() as f64,
            days_per_year: DAYS_PER_YEAR,
        }
    }

    /// A weekday-session calendar with `bars_per_day` bars in each of the
    /// [`TRADING_DAYS_PER_YEAR`] sessions.
    pub fn weekdays(interval: Interval, bars_per_day: f64) -> Self {
        Calendar {
            interval,
            sessions: Sessions::Weekdays,
            bars_per_day,
            days_per_year: TRADING_DAYS_PER_YEAR,
        }
    }

    /// Bars a year: `bars_per_day · days_per_year` (8766 for 24/7 hourly bars, 252 for
    /// weekday daily bars). The annualisation factor of metrics.
    pub fn periods_per_year(&self) -> f64 {
        if self.sessions == Sessions::Continuous {
            // Exact, and the same number as `bars_per_day · 365.25` up to rounding.
            return YEAR_MS / self.interval.millis() as f64;
        }
        self.bars_per_day * self.days_per_year
    }

    /// The calendar of strictly increasing `timestamps` (ms) spaced `interval` apart.
    pub(crate) fn detect(timestamps: &[i64], interval: Interval) -> Self {
        let step = interval.millis();
        if step > DAY_MS || timestamps.len() < 2 {
            return Calendar::continuous(interval);
        }
        let days = whole_day_counts(timestamps);
        if !closes_at_weekends(&days) {
            return Calendar::continuous(interval);
        }
        let full_day = DAY_MS as f64 / step as f64;
        let mut active: Vec<usize> = days.iter().map(|d| d.1).filter(|&n| n > 0).collect();
        let bars_per_day = if active.is_empty() {
            full_day
        } else {
            active.sort_unstable();
            let median = active[active.len() / 2] as f64;
            // A full day of bars (allowing a partial last bar when the interval does not
            // divide a day) is the whole day.
            if median >= full_day.floor() {
                full_day
            } else {
                median
            }
        };
        Calendar::weekdays(interval, bars_per_day)
    }
}

impl fmt::Display for Calendar {
    /// `24/7, 8766.0 bars a year` or `weekday sessions, 7 bars a day, 1764.0 bars a year`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.sessions {
            Sessions::Continuous => write!(f, "{}", self.sessions)?,
            Sessions::Weekdays => write!(
                f,
                "{}, {} bars a day, {} days a year",
                self.sessions, self.bars_per_day, self.days_per_year
            )?,
        }
        write!(f, ", {:.1} bars a year", self.periods_per_year())
    }
}

/// `(UTC weekday, bars)` for every whole UTC day strictly between the first and the last bar's
/// day, empty days included, except days inside a hole of more than [`HOLE_DAYS`] days (no
/// evidence of the weekly pattern either way). Weekday 0 is Monday.
fn whole_day_counts(timestamps: &[i64]) -> Vec<(usize, usize)> {
    let n = timestamps.len();
    let first_day = timestamps[0].div_euclid(DAY_MS);
    let last_day = timestamps[n - 1].div_euclid(DAY_MS);
    // O(bars): one entry per day with bars, and the (at most HOLE_DAYS) empty days of each
    // step short enough to count; no table over the span, which may be centuries.
    let mut days = Vec::new();
    let mut i = 0;
    while i < n {
        let day = timestamps[i].div_euclid(DAY_MS);
        let mut j = i;
        while j < n && timestamps[j].div_euclid(DAY_MS) == day {
            j += 1;
        }
        if day > first_day && day < last_day {
            days.push((weekday(day), j - i));
        }
        if j < n && timestamps[j].saturating_sub(timestamps[j - 1]) <= HOLE_DAYS * DAY_MS {
            let next_day = timestamps[j].div_euclid(DAY_MS);
            days.extend((day + 1..next_day).map(|d| (weekday(d), 0)));
        }
        i = j;
    }
    days
}

/// UTC weekday of a day count since 1970-01-01 (a Thursday): 0 = Monday … 6 = Sunday.
fn weekday(day: i64) -> usize {
    (day + 3).rem_euclid(7) as usize
}

/// Whether two consecutive weekdays are closed: each seen on at least one whole day and
/// holding fewer than [`CLOSED_DAY_SHARE`] of the busiest weekday's bars per day.
fn closes_at_weekends(days: &[(usize, usize)]) -> bool {
    let mut n_days = [0usize; 7];
    let mut n_bars = [0usize; 7];
    for &(w, n) in days {
        n_days[w] += 1;
        n_bars[w] += n;
    }
    let rate = |w: usize| n_bars[w] as f64 / n_days[w].max(1) as f64;
    let busiest = (0..7).map(rate).fold(0.0, f64::max);
    if busiest == 0.0 {
        return false;
    }
    let closed = |w: usize| n_days[w] > 0 && rate(w) < CLOSED_DAY_SHARE * busiest;
    (0..7).any(|w| closed(w) && closed((w + 1) % 7))
}

/// Gaps longer than [`LARGE_GAP_DAYS`] days and [`LARGE_GAP_BARS`] intervals.
pub(crate) fn large_gaps(gaps: &[Gap], interval: Interval) -> Vec<&Gap> {
    gaps.iter()
        .filter(|g| {
            let length = g.to.saturating_sub(g.from);
            length > LARGE_GAP_DAYS * DAY_MS && length > LARGE_GAP_BARS * interval.millis()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::HOUR_MS;

    #[test]
    fn weekdays_count_from_monday() {
        // 1970-01-01 was a Thursday, 2024-01-01 a Monday.
        assert_eq!(weekday(0), 3);
        assert_eq!(weekday(1_704_067_200_000 / DAY_MS), 0);
        assert_eq!(weekday(-1), 2);
    }

    #[test]
    fn too_little_data_is_continuous() {
        let cal = Calendar::detect(&[0, HOUR_MS], Interval::HOUR);
        assert_eq!(cal, Calendar::continuous(Interval::HOUR));
        assert_eq!(cal.periods_per_year(), 8766.0);
        assert_eq!(cal.to_string(), "24/7, 8766.0 bars a year");
        let weekly = Interval::from_millis(7 * DAY_MS).unwrap();
        let cal = Calendar::detect(&[0, 7 * DAY_MS, 21 * DAY_MS], weekly);
        assert!((cal.periods_per_year() - 365.25 / 7.0).abs() < 1e-12);
    }

    #[test]
    fn weekend_closure_needs_two_consecutive_quiet_days() {
        // Monday 2024-01-01, four weeks of daily bars.
        let monday = 1_704_067_200_000 / DAY_MS;
        let days = |keep: &dyn Fn(usize) -> bool| -> Vec<(usize, usize)> {
            (0..28)
                .map(|d| (weekday(monday + d), usize::from(keep(weekday(monday + d)))))
                .collect()
        };
        assert!(closes_at_weekends(&days(&|w| w < 5)));
        // Sunday to Thursday (a day stamped before midnight UTC): Friday and Saturday closed.
        assert!(closes_at_weekends(&days(&|w| w != 4 && w != 5)));
        // Every weekday, or only one day closed a week: no weekend.
        assert!(!closes_at_weekends(&days(&|_| true)));
        assert!(!closes_at_weekends(&days(&|w| w != 2)));
        // Tuesday and Friday closed: not consecutive.
        assert!(!closes_at_weekends(&days(&|w| w != 1 && w != 4)));
        assert!(!closes_at_weekends(&[]));
    }
}
