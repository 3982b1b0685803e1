//! [`FeatureMatrix`] (one row per bar) and [`FeatureView`] (a borrowed range of its rows).

use std::ops::Range;

use mrl_data::BarSeries;

use crate::error::{Error, Result};
use crate::feature::{Feature, N_FEATURES, WARMUP};
use crate::stream::FeatureStream;

/// One feature row: the 11 values of one bar, in [`FEATURE_NAMES`](crate::FEATURE_NAMES) order.
pub type FeatureRow = [f64; N_FEATURES];

/// Features of a whole series: row `t` is bar `t`, warm-up rows included.
///
/// Storage is row-major and contiguous (`n_bars × 11` f64, see [`as_flat`](Self::as_flat)).
/// The first [`WARMUP`] rows come from partial windows and are kept only so that code which
/// indexes by bar (environments) needs no offset; [`kept`](Self::kept) is the view a model
/// should see (the reference's matrix, whose row `j` is bar `j + WARMUP`). Both views are
/// borrows, free to take.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureMatrix {
    rows: Vec<FeatureRow>,
}

impl FeatureMatrix {
    /// An empty matrix, to be filled by [`FeatureStream::extend`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a matrix from rows (row `t` is bar `t`), for example normalised ones.
    pub fn from_rows(rows: Vec<FeatureRow>) -> Self {
        Self { rows }
    }

    /// Number of bars (rows, warm-up included).
    pub fn n_bars(&self) -> usize {
        self.rows.len()
    }

    /// True when no bar was computed.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Row of bar `t`, `None` past the end.
    pub fn bar(&self, t: usize) -> Option<&FeatureRow> {
        self.rows.get(t)
    }

    /// Every row, warm-up included (`first_bar() == 0`).
    pub fn full(&self) -> FeatureView<'_> {
        FeatureView {
            rows: &self.rows,
            first_bar: 0,
        }
    }

    /// Rows from bar [`WARMUP`] on; empty when the series is shorter than that.
    pub fn kept(&self) -> FeatureView<'_> {
        let first_bar = WARMUP.min(self.rows.len());
        FeatureView {
            rows: &self.rows[first_bar..],
            first_bar,
        }
    }

    /// Rows of the bars in `bars`.
    ///
    /// # Errors
    /// [`Error::InvalidBarRange`] when the range is empty, reversed or past the end.
    pub fn bars(&self, bars: Range<usize>) -> Result<FeatureView<'_>> {
        if bars.start >= bars.end || bars.end > self.rows.len() {
            return Err(Error::invalid_range(&bars, 0, self.rows.len()));
        }
        Ok(FeatureView {
            first_bar: bars.start,
            rows: &self.rows[bars],
        })
    }

    /// All values, row-major: `as_flat()[t * N_FEATURES + col]`.
    pub fn as_flat(&self) -> &[f64] {
        self.rows.as_flattened()
    }

    /// The rows as a slice of arrays (row `t` is bar `t`).
    pub fn rows(&self) -> &[FeatureRow] {
        &self.rows
    }

    /// Removes every row and keeps the allocation, so that recomputing into the same matrix
    /// (with a fresh [`FeatureStream`]) writes to memory that is already mapped.
    pub fn clear(&mut self) {
        self.rows.clear();
    }

    pub(crate) fn reserve(&mut self, additional: usize) {
        self.rows.reserve(additional);
    }

    pub(crate) fn push_row(&mut self, row: FeatureRow) {
        self.rows.push(row);
    }
}

/// A contiguous range of a [`FeatureMatrix`]'s rows that knows which bar its first row is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeatureView<'a> {
    rows: &'a [FeatureRow],
    first_bar: usize,
}

impl<'a> FeatureView<'a> {
    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.rows.len()
    }

    /// True when the view has no row.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Bar index of row 0: row `i` is bar `first_bar() + i`.
    pub fn first_bar(&self) -> usize {
        self.first_bar
    }

    /// Row `i` of the view (bar `first_bar() + i`).
    ///
    /// # Panics
    /// When `i >= n_rows()`, like slice indexing; use [`rows`](Self::rows)`.get(i)` to check.
    pub fn row(&self, i: usize) -> &'a FeatureRow {
        &self.rows[i]
    }

    /// The rows as a slice of arrays.
    pub fn rows(&self) -> &'a [FeatureRow] {
        self.rows
    }

    /// The values of one column, top to bottom. Pick the column by name or index with
    /// `"rsi".parse::<Feature>()?` or `Feature::try_from(7)?`.
    pub fn column(&self, feature: Feature) -> impl ExactSizeIterator<Item = f64> + 'a {
        let col = feature.index();
        self.rows.iter().map(move |row| row[col])
    }

    /// All values, row-major: `as_flat()[i * N_FEATURES + col]`.
    pub fn as_flat(&self) -> &'a [f64] {
        self.rows.as_flattened()
    }
}

/// Computes the features of every bar of `closes` (row `t` is bar `t`).
///
/// O(n) time, one pass (see [`FeatureStream`]).
///
/// # Errors
/// [`Error::NonPositivePrice`] naming the first zero, negative or non-finite close (1-based
/// row); [`Error::NonFiniteFeature`] when price ratios overflow.
pub fn compute_features(closes: &[f64]) -> Result<FeatureMatrix> {
    let mut matrix = FeatureMatrix::new();
    FeatureStream::new().extend(closes, &mut matrix)?;
    tracing::debug!(n_bars = closes.len(), "computed features");
    Ok(matrix)
}

/// [`compute_features`] of a series' closes (which [`BarSeries`] has already validated).
///
/// # Errors
/// [`Error::NonFiniteFeature`] when price ratios overflow.
pub fn compute_series_features(series: &BarSeries) -> Result<FeatureMatrix> {
    compute_features(series.closes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(n: usize) -> FeatureMatrix {
        let closes: Vec<f64> = (0..n).map(|i| 100.0 + i as f64).collect();
        compute_features(&closes).unwrap()
    }

    #[test]
    fn views_are_aligned_with_bars() {
        let m = ramp(40);
        assert_eq!(m.n_bars(), 40);
        assert_eq!(m.full().n_rows(), 40);
        let kept = m.kept();
        assert_eq!((kept.first_bar(), kept.n_rows()), (WARMUP, 40 - WARMUP));
        assert_eq!(kept.row(0), m.bar(WARMUP).unwrap());
        assert_eq!(kept.as_flat(), &m.as_flat()[WARMUP * N_FEATURES..]);
        let ret1: Vec<f64> = kept.column(Feature::Ret1).collect();
        assert_eq!(ret1.len(), kept.n_rows());
        assert_eq!(ret1[3], m.bar(WARMUP + 3).unwrap()[0]);
        let window = m.bars(30..35).unwrap();
        let mut reused = m.clone();
        reused.clear();
        assert!(reused.is_empty());
        assert_eq!((window.first_bar(), window.n_rows()), (30, 5));
        assert_eq!(window.row(4), m.bar(34).unwrap());
        assert!(m.bar(40).is_none());
    }

    #[test]
    fn short_series_have_an_empty_kept_view() {
        let m = ramp(10);
        assert!(m.kept().is_empty());
        assert_eq!(m.kept().first_bar(), 10);
        assert!(compute_features(&[]).unwrap().is_empty());
    }

    #[test]
    fn bad_bar_ranges_are_errors() {
        let m = ramp(30);
        for range in [5..5, 10..31] {
            assert!(matches!(
                m.bars(range),
                Err(Error::InvalidBarRange { n_bars: 30, .. })
            ));
        }
    }

    #[test]
    fn stream_rejects_a_misaligned_matrix() {
        let mut out = ramp(3);
        let err = FeatureStream::new().extend(&[1.0], &mut out).unwrap_err();
        assert_eq!(
            err,
            Error::Misaligned {
                stream_bars: 0,
                matrix_bars: 3
            }
        );
    }
}
