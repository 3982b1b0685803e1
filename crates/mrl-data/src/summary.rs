//! [`SeriesSummary`]: what `mrl data check FILE` prints (rows, timestamp form, span,
//! interval, calendar, gaps).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::calendar::Calendar;
use crate::io::BarFile;
use crate::series::{BarSeries, DAY_MS, Gap, Interval};
use crate::time::TimestampFormat;

/// Facts about a series, for checking data by eye.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesSummary {
    /// The symbol, if known.
    pub symbol: Option<String>,
    /// Number of bars.
    pub rows: usize,
    /// How the file wrote its timestamps; `None` for a series that did not come from a file.
    pub timestamps: Option<TimestampFormat>,
    /// Open time of the first bar (ms, UTC).
    pub start: i64,
    /// Open time of the last bar (ms, UTC).
    pub end: i64,
    /// The detected bar spacing ([`BarSeries::interval`]); `None` for a single bar.
    pub interval: Option<Interval>,
    /// The trading calendar ([`BarSeries::calendar`]); `None` for a single bar.
    pub calendar: Option<Calendar>,
    /// Number of gaps ([`BarSeries::gaps`]).
    pub gaps: usize,
    /// Bars missing over all gaps.
    pub missing_bars: i64,
    /// The gap with the most missing bars (the first such).
    pub largest_gap: Option<Gap>,
    /// Bars per year of the calendar ([`BarSeries::periods_per_year`]).
    pub periods_per_year: Option<f64>,
}

impl SeriesSummary {
    /// Summarises a series read from a file, with the form of its timestamps.
    pub fn of_file(file: &BarFile) -> Self {
        SeriesSummary {
            timestamps: Some(file.timestamp_format),
            ..SeriesSummary::of(&file.series)
        }
    }

    /// Summarises `series`.
    pub fn of(series: &BarSeries) -> Self {
        let calendar = series.calendar();
        let gaps = series.gaps();
        let largest_gap = gaps
            .iter()
            .copied()
            .reduce(|best, g| if g.missing > best.missing { g } else { best });
        SeriesSummary {
            symbol: series.symbol().map(str::to_string),
            rows: series.len(),
            timestamps: None,
            start: series.start(),
            end: series.end(),
            interval: series.interval(),
            calendar,
            gaps: gaps.len(),
            missing_bars: gaps.iter().map(|g| g.missing).sum(),
            largest_gap,
            periods_per_year: calendar.map(|c| c.periods_per_year()),
        }
    }
}

impl fmt::Display for SeriesSummary {
    /// One line per fact, e.g.
    ///
    /// ```text
    /// symbol            BTCUSDT
    /// rows              23988
    /// timestamps        epoch seconds
    /// span              2021-04-04 20:00 .. 2023-12-30 19:00 UTC
    /// interval          1h
    /// calendar          24/7, 8766.0 bars a year
    /// gaps              5 (12 bars missing; largest 5 bars after 2021-08-13 00:00)
    /// periods per year  8766.0
    /// ```
    ///
    /// The `timestamps` line appears only for a series read from a file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "symbol            {}",
            self.symbol.as_deref().unwrap_or("-")
        )?;
        writeln!(f, "rows              {}", self.rows)?;
        if let Some(format) = self.timestamps {
            writeln!(f, "timestamps        {format}")?;
        }
        writeln!(
            f,
            "span              {} .. {} UTC",
            format_timestamp(self.start),
            format_timestamp(self.end)
        )?;
        match self.interval {
            Some(i) => writeln!(f, "interval          {i}")?,
            None => writeln!(f, "interval          -")?,
        }
        match self.calendar {
            Some(c) => writeln!(f, "calendar          {c}")?,
            None => writeln!(f, "calendar          -")?,
        }
        write!(f, "gaps              {}", self.gaps)?;
        if let Some(g) = self.largest_gap {
            write!(
                f,
                " ({} bars missing; largest {} bars after {})",
                self.missing_bars,
                g.missing,
                format_timestamp(g.from)
            )?;
        }
        writeln!(f)?;
        match self.periods_per_year {
            Some(p) => write!(f, "periods per year  {p:.1}"),
            None => write!(f, "periods per year  -"),
        }
    }
}

/// `YYYY-MM-DD HH:MM` (UTC) for a time in ms since the Unix epoch; seconds are shown only when
/// not zero (`HH:MM:SS`), milliseconds never.
pub fn format_timestamp(ms: i64) -> String {
    let days = ms.div_euclid(DAY_MS);
    let secs = ms.rem_euclid(DAY_MS) / 1000;
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
    if ss == 0 {
        format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}")
    } else {
        format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}")
    }
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant, "chrono-compatible
/// low-level date algorithms", `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_dates() {
        assert_eq!(format_timestamp(0), "1970-01-01 00:00");
        assert_eq!(format_timestamp(1_577_836_800_000), "2020-01-01 00:00");
        assert_eq!(format_timestamp(1_617_566_400_000), "2021-04-04 20:00");
        assert_eq!(
            format_timestamp(951_782_400_000 + 61_000),
            "2000-02-29 00:01:01"
        );
        assert_eq!(format_timestamp(-DAY_MS), "1969-12-31 00:00");
    }
}
