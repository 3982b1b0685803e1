//! The calendar behind `periods_per_year`: bar spacing and session pattern, never the span,
//! so gaps do not rescale it and every slice of two weeks or more has the calendar of the
//! whole series.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mrl_data::{Bar, BarSeries, Calendar, DAY_MS, HOUR_MS, Interval, Sessions, YEAR_MS};
use proptest::prelude::*;

/// Monday 2024-01-01 00:00 UTC.
const MONDAY: i64 = 1_704_067_200_000;

fn series(timestamps: &[i64]) -> BarSeries {
    let bars: Vec<Bar> = timestamps
        .iter()
        .enumerate()
        .map(|(i, &timestamp)| {
            let close = 100.0 + (i % 7) as f64;
            Bar {
                timestamp,
                open: close,
                high: close + 1.0,
                low: close - 1.0,
                close,
                volume: 1.0,
            }
        })
        .collect();
    BarSeries::new(&bars).unwrap()
}

/// `n` bars `step` ms apart from `start`.
fn regular(start: i64, step: i64, n: usize) -> Vec<i64> {
    (0..n as i64).map(|i| start + i * step).collect()
}

/// UTC weekday of a time: 0 = Monday.
fn weekday(t: i64) -> i64 {
    (t.div_euclid(DAY_MS) + 3).rem_euclid(7)
}

/// Daily bars on weekdays at `offset` ms after midnight UTC, `weeks` weeks from Monday
/// 2024-01-01, skipping the listed day indices (holidays).
fn weekday_daily(weeks: i64, offset: i64, holidays: &[i64]) -> Vec<i64> {
    (0..weeks * 7)
        .filter(|d| d % 7 < 5 && !holidays.contains(d))
        .map(|d| MONDAY + d * DAY_MS + offset)
        .collect()
}

/// Hourly bars of a 7-hour weekday session (14:30 .. 20:30 UTC open times).
fn session_hourly(weeks: i64) -> Vec<i64> {
    weekday_daily(weeks, 0, &[17, 45])
        .into_iter()
        .flat_map(|day| (0..7).map(move |h| day + 14 * HOUR_MS + HOUR_MS / 2 + h * HOUR_MS))
        .collect()
}

/// The 1200 hourly bars of the issue with a one-year hole before bar 600.
fn hourly_with_year_hole() -> Vec<i64> {
    (0..1200i64)
        .map(|i| {
            let hole = if i >= 600 { 365 * DAY_MS } else { 0 };
            1_617_566_400_000 + i * HOUR_MS + hole
        })
        .collect()
}

#[test]
fn a_year_long_hole_does_not_change_the_calendar() {
    let s = series(&hourly_with_year_hole());
    let cal = s.calendar().unwrap();
    assert_eq!(cal.sessions, Sessions::Continuous);
    assert_eq!(s.periods_per_year(), Some(8766.0));
    // The span-based rate would have said 1055 bars a year.
    let span_rate = (s.len() - 1) as f64 * YEAR_MS / (s.end() - s.start()) as f64;
    assert_eq!(span_rate.round(), 1055.0);
    // The test period after the hole, and the part before it, have the same calendar.
    assert_eq!(s.slice(600..1200).unwrap().periods_per_year(), Some(8766.0));
    assert_eq!(s.slice(0..600).unwrap().periods_per_year(), Some(8766.0));
    assert_eq!(s.gaps().len(), 1);
    assert_eq!(s.gaps()[0].missing, 365 * 24);
}

#[test]
fn continuous_markets_at_every_spacing() {
    let cases = [
        (60_000, 525_960.0),
        (HOUR_MS, 8766.0),
        (4 * HOUR_MS, 2191.5),
        (DAY_MS, 365.25),
        (7 * DAY_MS, 365.25 / 7.0),
    ];
    for (step, expected) in cases {
        let s = series(&regular(MONDAY, step, 3000));
        let cal = s.calendar().unwrap();
        assert_eq!(cal.sessions, Sessions::Continuous, "{step}");
        assert!(
            (cal.periods_per_year() - expected).abs() < 1e-9,
            "{step}: {cal}"
        );
    }
    assert_eq!(series(&[MONDAY]).periods_per_year(), None);
}

#[test]
fn weekday_markets_have_252_sessions_a_year() {
    // Daily bars at midnight UTC with two holidays: 252, not the 261 weekdays of a year.
    let s = series(&weekday_daily(52, 0, &[0, 150]));
    let cal = s.calendar().unwrap();
    assert_eq!(
        cal,
        Calendar {
            interval: Interval::DAY,
            sessions: Sessions::Weekdays,
            bars_per_day: 1.0,
            days_per_year: 252.0
        }
    );
    assert_eq!(cal.periods_per_year(), 252.0);
    assert_eq!(
        cal.to_string(),
        "weekday sessions, 1 bars a day, 252 days a year, 252.0 bars a year"
    );
    // Stamped at Tokyo midnight (15:00 UTC the day before): bars fall Sunday to Thursday UTC.
    let tokyo = weekday_daily(20, -9 * HOUR_MS, &[]);
    assert_eq!(weekday(tokyo[0]), 6);
    assert_eq!(series(&tokyo).periods_per_year(), Some(252.0));
    // Hourly bars of a 7-hour session: 7 · 252.
    let s = series(&session_hourly(12));
    assert_eq!(s.interval(), Some(Interval::HOUR));
    assert_eq!(s.periods_per_year(), Some(1764.0));
    // FX-like: Sunday 22:00 to Friday 22:00 UTC, every hour: 24 bars a session.
    let fx: Vec<i64> = regular(MONDAY - 2 * HOUR_MS, HOUR_MS, 24 * 7 * 8)
        .into_iter()
        .filter(|&t| {
            let in_week = (t - (MONDAY - 2 * HOUR_MS)).rem_euclid(7 * DAY_MS);
            in_week < 5 * DAY_MS
        })
        .collect();
    assert_eq!(series(&fx).periods_per_year(), Some(24.0 * 252.0));
}

#[test]
fn daily_bars_across_a_daylight_saving_change_count_whole_days() {
    // New York midnight: 04:00 UTC in summer time, 05:00 UTC after 2024-11-03.
    let bars: Vec<i64> = (0..8 * 7)
        .map(|d| MONDAY + (300 + d) * DAY_MS)
        .filter(|&t| weekday(t) < 5)
        .map(|t| {
            let dst_end = 1_730_606_400_000; // 2024-11-03 06:00 UTC
            t + if t < dst_end {
                4 * HOUR_MS
            } else {
                5 * HOUR_MS
            }
        })
        .collect();
    let s = series(&bars);
    assert_eq!(s.interval(), Some(Interval::DAY));
    assert_eq!(s.periods_per_year(), Some(252.0));
    // Every weekend is two missing days, the one across the change (Fri 04:00 to Mon 05:00,
    // 73 h) too; no other step is a gap.
    let gaps = s.gaps();
    assert_eq!(gaps.len(), 7);
    assert!(gaps.iter().all(|g| g.missing == 2), "{gaps:?}");
    // The three bars: Thu 05:00, Fri 05:00, Mon 04:00 UTC (spring): 2 missing.
    let thu = 1_710_392_400_000; // 2024-03-14 05:00 UTC
    let s = series(&[thu, thu + DAY_MS, thu + DAY_MS + 71 * HOUR_MS]);
    assert_eq!(s.gaps().len(), 1);
    assert_eq!(s.gaps()[0].missing, 2);
}

/// Counts `tracing` warnings emitted while it is the default subscriber.
struct WarnCounter(Arc<AtomicUsize>);

impl tracing::Subscriber for WarnCounter {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::WARN {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn warnings_of(s: &BarSeries) -> usize {
    let count = Arc::new(AtomicUsize::new(0));
    let subscriber = WarnCounter(count.clone());
    tracing::subscriber::with_default(subscriber, || s.calendar());
    count.load(Ordering::SeqCst)
}

#[test]
fn large_gaps_are_warned_about_weekends_are_not() {
    assert_eq!(warnings_of(&series(&hourly_with_year_hole())), 1);
    assert_eq!(warnings_of(&series(&regular(MONDAY, HOUR_MS, 500))), 0);
    assert_eq!(warnings_of(&series(&weekday_daily(10, 0, &[]))), 0);
    // An 8-day outage in hourly bars is large; a 3-day one is not.
    let mut outage = regular(MONDAY, HOUR_MS, 24 * 30);
    outage.drain(100..100 + 8 * 24);
    assert_eq!(warnings_of(&series(&outage)), 1);
    let mut short = regular(MONDAY, HOUR_MS, 24 * 30);
    short.drain(100..100 + 3 * 24);
    assert_eq!(warnings_of(&series(&short)), 0);
}

/// A slice `start..start + len` of `s`, clamped to at least `min_len` bars.
fn slice(s: &BarSeries, start: usize, len: usize, min_len: usize) -> BarSeries {
    let len = len.max(min_len).min(s.len());
    let start = start.min(s.len() - len);
    s.slice(start..start + len).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Any slice spanning at least 8 days (every weekday whole inside it) has the calendar
    /// of the whole series, for 24/7 hourly bars with short outages, weekday daily bars with
    /// holidays, hourly session bars and the series with the year-long hole.
    #[test]
    fn slices_of_two_weeks_or_more_have_the_calendar_of_the_whole(
        start in 0usize..5000,
        len in 0usize..5000,
        outages in prop::collection::vec(0usize..4000, 0..6),
        holidays in prop::collection::vec(0i64..200, 0..10),
    ) {
        let mut hourly = regular(MONDAY, HOUR_MS, 4000);
        for &at in &outages {
            if at + 5 < hourly.len() {
                hourly.drain(at..at + 5);
            }
        }
        let cases = [
            (series(&hourly), 8 * 24 + 1, 8766.0),
            (series(&weekday_daily(40, 0, &holidays)), 9, 252.0),
            (series(&session_hourly(30)), 9 * 7, 1764.0),
            (series(&hourly_with_year_hole()), 8 * 24 + 1, 8766.0),
        ];
        for (whole, min_len, expected) in cases {
            prop_assert_eq!(whole.periods_per_year(), Some(expected));
            let part = slice(&whole, start, len, min_len);
            prop_assert_eq!(part.periods_per_year(), Some(expected), "{} bars", part.len());
            prop_assert_eq!(part.calendar(), whole.calendar());
        }
    }
}
