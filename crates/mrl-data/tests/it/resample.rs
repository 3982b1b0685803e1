//! Resampling (epoch-aligned buckets, OHLCV aggregation, gaps, incomplete last bucket) and
//! the series summary.

use mrl_data::{
    Bar, BarSeries, BarStyle, DAY_MS, Error, Gap, HOUR_MS, Interval, ProcessKind, SeriesSummary,
    SyntheticConfig, format_timestamp, resample, resample_complete,
};
use proptest::prelude::*;

fn hourly(hours: &[i64]) -> BarSeries {
    let bars: Vec<Bar> = hours
        .iter()
        .map(|&h| {
            let x = h as f64;
            Bar {
                timestamp: h * HOUR_MS,
                open: 100.0 + x,
                high: 110.0 + x,
                low: 90.0 - x,
                close: 101.0 + x,
                volume: 1.0 + x,
            }
        })
        .collect();
    BarSeries::new(&bars).unwrap().with_symbol("X")
}

#[test]
fn hand_made_four_hour_buckets_with_a_gap_and_a_forming_bar() {
    // Hours 0..=3 full, 4 and 7 (5, 6 missing), 8 and 9 (the data stops mid-bucket).
    let s = hourly(&[0, 1, 2, 3, 4, 7, 8, 9]);
    let r = resample(&s, Interval::FOUR_HOURS).unwrap();
    assert_eq!(r.timestamps(), &[0, 4 * HOUR_MS, 8 * HOUR_MS]);
    assert_eq!(r.opens(), &[100.0, 104.0, 108.0]);
    assert_eq!(r.highs(), &[113.0, 117.0, 119.0]);
    assert_eq!(r.lows(), &[87.0, 83.0, 81.0]);
    assert_eq!(r.closes(), &[104.0, 108.0, 110.0]);
    assert_eq!(r.volumes(), &[10.0, 13.0, 19.0]);
    assert_eq!(r.symbol(), Some("X"));

    let complete = resample_complete(&s, Interval::FOUR_HOURS).unwrap();
    assert_eq!(complete.timestamps(), &[0, 4 * HOUR_MS]);
    // A last bucket covered to its end is kept.
    let full = hourly(&[0, 1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(
        resample_complete(&full, Interval::FOUR_HOURS)
            .unwrap()
            .len(),
        2
    );
    // Empty buckets produce no bar.
    let sparse = hourly(&[0, 1, 12, 13]);
    assert_eq!(
        resample(&sparse, Interval::FOUR_HOURS)
            .unwrap()
            .timestamps(),
        &[0, 12 * HOUR_MS]
    );
}

#[test]
fn daily_buckets_start_at_midnight_utc() {
    // 2021-04-04 20:00 UTC, 30 hourly bars: 4 bars that day, 24 the next, 2 the day after.
    let start = 1_617_566_400_000;
    let config = SyntheticConfig {
        bars: BarStyle {
            start_time: start,
            ..BarStyle::default()
        },
        ..SyntheticConfig::new(ProcessKind::Gbm.default_process())
    };
    let s = config.generate(30, 1).unwrap().series;
    let d = resample(&s, Interval::DAY).unwrap();
    let dates: Vec<String> = d
        .timestamps()
        .iter()
        .map(|&t| format_timestamp(t))
        .collect();
    assert_eq!(
        dates,
        ["2021-04-04 00:00", "2021-04-05 00:00", "2021-04-06 00:00"]
    );
    assert_eq!(d.opens()[1], s.opens()[4]);
    assert_eq!(d.closes()[1], s.closes()[27]);
    assert_eq!(resample_complete(&s, Interval::DAY).unwrap().len(), 2);
}

#[test]
fn four_hourly_then_daily_equals_daily() {
    let config = SyntheticConfig {
        bars: BarStyle {
            start_time: 5 * HOUR_MS + 3 * DAY_MS,
            ..BarStyle::default()
        },
        ..SyntheticConfig::new(ProcessKind::Regime.default_process())
    };
    let s = config.generate(2000, 3).unwrap().series;
    // Punch holes so that some buckets are partial or empty.
    let keep: Vec<usize> = (0..s.len())
        .filter(|i| i % 97 > 40 || i % 13 != 0)
        .collect();
    let bars: Vec<Bar> = keep.iter().map(|&i| s.bar(i)).collect();
    let s = BarSeries::new(&bars).unwrap();
    let via = resample(&resample(&s, Interval::FOUR_HOURS).unwrap(), Interval::DAY).unwrap();
    let direct = resample(&s, Interval::DAY).unwrap();
    assert_eq!(via.timestamps(), direct.timestamps());
    assert_eq!(via.opens(), direct.opens());
    assert_eq!(via.highs(), direct.highs());
    assert_eq!(via.lows(), direct.lows());
    assert_eq!(via.closes(), direct.closes());
    for (a, b) in via.volumes().iter().zip(direct.volumes()) {
        assert!((a - b).abs() <= 1e-12 * b, "{a} vs {b}");
    }
    // Resampling to the source interval is the identity on aligned bars.
    assert_eq!(resample(&s, Interval::HOUR).unwrap(), s);
}

#[test]
fn target_must_be_a_multiple_of_the_source() {
    let s = hourly(&[0, 1, 2]);
    for target in [
        Interval::MINUTE,
        Interval::from_millis(90 * 60_000).unwrap(),
    ] {
        let err = resample(&s, target).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidParameter {
                    name: "target interval",
                    ..
                }
            ),
            "{err}"
        );
    }
    assert!(matches!(
        resample(&hourly(&[0]), Interval::DAY),
        Err(Error::TooShort { .. })
    ));
    assert!(matches!(
        resample_complete(&s, Interval::DAY),
        Err(Error::TooShort { .. })
    ));
}

fn arb_hourly() -> impl Strategy<Value = BarSeries> {
    let step = prop_oneof![4 => Just(1i64), 1 => 2i64..30];
    let bar = (
        step,
        1.0f64..2.0,
        1.0f64..2.0,
        0.0f64..0.1,
        0.0f64..0.1,
        0.0f64..10.0,
    );
    (-50i64..50, prop::collection::vec(bar, 2..120)).prop_map(|(start, raw)| {
        let mut t = start * HOUR_MS;
        let bars: Vec<Bar> = raw
            .into_iter()
            .map(|(step, open, close, up, down, volume)| {
                t += step * HOUR_MS;
                Bar {
                    timestamp: t,
                    open,
                    high: open.max(close) + up,
                    low: open.min(close) - down,
                    close,
                    volume,
                }
            })
            .collect();
        BarSeries::new(&bars).unwrap()
    })
}

proptest! {
    #[test]
    fn resampled_bars_bound_their_constituents(s in arb_hourly(), hours in prop::sample::select(vec![2i64, 3, 4, 6, 24])) {
        prop_assume!(s.interval() == Some(Interval::HOUR));
        let width = hours * HOUR_MS;
        let r = resample(&s, Interval::from_millis(width).unwrap()).unwrap();
        let mut k = 0;
        for (j, rt) in r.timestamps().iter().enumerate() {
            prop_assert_eq!(rt.rem_euclid(width), 0);
            let members: Vec<Bar> = s.iter().filter(|b| b.timestamp.div_euclid(width) * width == *rt).collect();
            prop_assert!(!members.is_empty());
            prop_assert_eq!(members[0], s.bar(k));
            k += members.len();
            let bar = r.bar(j);
            prop_assert_eq!(bar.open, members[0].open);
            prop_assert_eq!(bar.close, members[members.len() - 1].close);
            for m in &members {
                prop_assert!(bar.high >= m.high && bar.low <= m.low);
            }
            prop_assert!(members.iter().any(|m| m.high == bar.high));
            prop_assert!(members.iter().any(|m| m.low == bar.low));
            let volume: f64 = members.iter().map(|m| m.volume).sum();
            prop_assert!((bar.volume - volume).abs() <= 1e-9);
        }
        prop_assert_eq!(k, s.len());
    }
}

#[test]
fn summary_reports_rows_span_interval_and_gaps() {
    let s = hourly(&[0, 1, 2, 6, 7, 8, 9, 11]);
    let summary = SeriesSummary::of(&s);
    assert_eq!(summary.rows, 8);
    assert_eq!((summary.start, summary.end), (0, 11 * HOUR_MS));
    assert_eq!(summary.interval, Some(Interval::HOUR));
    assert_eq!((summary.gaps, summary.missing_bars), (2, 4));
    assert_eq!(
        summary.largest_gap,
        Some(Gap {
            index: 3,
            from: 2 * HOUR_MS,
            to: 6 * HOUR_MS,
            missing: 3
        })
    );
    // The calendar of hourly bars, not the share of hours that hold a bar (7/11 · 8766).
    assert_eq!(summary.periods_per_year, Some(8766.0));
    assert_eq!(summary.timestamps, None);
    assert_eq!(
        summary.to_string(),
        "symbol            X\n\
         rows              8\n\
         span              1970-01-01 00:00 .. 1970-01-01 11:00 UTC\n\
         interval          1h\n\
         calendar          24/7, 8766.0 bars a year\n\
         gaps              2 (4 bars missing; largest 3 bars after 1970-01-01 02:00)\n\
         periods per year  8766.0"
    );
    let one = SeriesSummary::of(&hourly(&[5]));
    assert_eq!(
        (one.interval, one.gaps, one.periods_per_year),
        (None, 0, None)
    );
    assert!(one.to_string().contains("interval          -"));
}
