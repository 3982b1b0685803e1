//! [`Normalizer`]: per-column z-scores fitted on a training range only.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::feature::{N_FEATURES, WARMUP};
use crate::matrix::{FeatureMatrix, FeatureRow};

/// Standard deviations below this are treated as a constant column (scale 1).
pub const MIN_STD: f64 = 1e-12;

/// Per-column z-score `(x − mean) / std`, with `mean` and `std` (ddof 0) fitted on training
/// bars only, so that nothing of the evaluation period leaks into the inputs.
///
/// A column whose training std is below [`MIN_STD`] (constant) is only centred (its std is
/// stored as 1), never divided by zero. Serialisable, to be saved with a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalizer {
    /// Training mean of each column.
    pub mean: [f64; N_FEATURES],
    /// Training std (ddof 0) of each column, 1 for constant columns.
    pub std: [f64; N_FEATURES],
}

impl Normalizer {
    /// Fits on the rows of `bars` (bar indices, as in [`FeatureMatrix::bar`]).
    ///
    /// # Errors
    /// [`Error::InvalidBarRange`] when the range is empty, reaches past the end, or starts
    /// inside the warm-up (`start < WARMUP`), whose partial-window rows would bias the fit.
    pub fn fit(features: &FeatureMatrix, bars: Range<usize>) -> Result<Self> {
        if bars.start < WARMUP || bars.start >= bars.end || bars.end > features.n_bars() {
            return Err(Error::invalid_range(&bars, WARMUP, features.n_bars()));
        }
        let rows = &features.rows()[bars];
        let n = rows.len() as f64;
        let mut mean = [0.0; N_FEATURES];
        for row in rows {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += v;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut std = [0.0; N_FEATURES];
        for row in rows {
            for ((s, v), m) in std.iter_mut().zip(row).zip(&mean) {
                *s += (v - m) * (v - m);
            }
        }
        for s in &mut std {
            *s = (*s / n).sqrt();
            if s.is_nan() || *s < MIN_STD {
                *s = 1.0;
            }
        }
        Ok(Self { mean, std })
    }

    /// Normalises one row.
    pub fn apply_row(&self, row: &FeatureRow) -> FeatureRow {
        std::array::from_fn(|i| (row[i] - self.mean[i]) / self.std[i])
    }

    /// Normalises every row of a matrix (warm-up rows too, so bar indexing is unchanged).
    pub fn apply(&self, features: &FeatureMatrix) -> FeatureMatrix {
        FeatureMatrix::from_rows(features.rows().iter().map(|r| self.apply_row(r)).collect())
    }
}
