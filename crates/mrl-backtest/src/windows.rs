//! The walk-forward plan: evaluation windows back to back over the test period, and the
//! adaptation episodes that precede each one.

use std::ops::Range;

use mrl_features::WARMUP;
use serde::{Deserialize, Serialize};

use crate::{Error, Result, WalkForwardConfig};

/// One evaluation window and the adaptation episodes run before it.
///
/// Bars are *decision* bars: the step at bar `t` chooses the position held from the close
/// of `t` to the close of `t + 1`, seeing only bars `≤ t`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Position of the window in the test period (0-based).
    pub index: usize,
    /// Decision bars of the evaluation episode, `[s_w, s_w + L)` (shorter at the data end).
    pub eval: Range<usize>,
    /// Decision bars of the adaptation episodes, in time order; the last one ends at
    /// `s_w`, so every adaptation decision precedes the window (its last step's return is
    /// the close of `s_w`, which the window's first observation contains anyway).
    pub adaptation: Vec<Range<usize>>,
}

impl Window {
    /// Decision bars of the trial's episodes in order: adaptation episodes, then the window.
    pub fn episodes(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        self.adaptation
            .iter()
            .cloned()
            .chain(std::iter::once(self.eval.clone()))
    }
}

/// The windows of a walk-forward backtest over a series of `timestamps.len()` bars.
///
/// Window `w` covers decision bars `[s_w, min(s_w + L, len − 1))` with
/// `s_w = test_start + w·L`; together they cover `[test_start, len − 1)` once, in order.
/// Adaptation episode `k` of `K − 1` covers `[s_w − (K − 1 − k)·A, s_w − (K − 2 − k)·A)`.
///
/// # Errors
/// [`Error::SeriesTooShort`] when the first window's adaptation would start inside the
/// feature warm-up or there is no decision bar from the test start on;
/// [`Error::InvalidConfig`] for an invalid config.
pub fn plan_windows(timestamps: &[i64], config: &WalkForwardConfig) -> Result<Vec<Window>> {
    config.validate()?;
    let len = timestamps.len();
    let test_start = config.test_start.resolve(timestamps)?;
    let (l, a, k) = (
        config.window_len,
        config.adaptation_len,
        config.adaptation_episodes,
    );
    let adaptation_bars = k * a;
    if test_start < WARMUP + adaptation_bars || test_start + 2 > len {
        return Err(Error::SeriesTooShort {
            len,
            test_start,
            warmup: WARMUP,
            adaptation_bars,
            window_len: l,
        });
    }
    let last_decision_end = len - 1;
    let windows = (test_start..last_decision_end)
        .step_by(l)
        .enumerate()
        .map(|(index, start)| Window {
            index,
            eval: start..(start + l).min(last_decision_end),
            adaptation: (0..k)
                .map(|j| {
                    let begin = start - (k - j) * a;
                    begin..begin + a
                })
                .collect(),
        })
        .collect();
    Ok(windows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(test_start: usize, l: usize, k: usize, a: usize) -> WalkForwardConfig {
        WalkForwardConfig {
            test_start: crate::TestStart::Index(test_start),
            window_len: l,
            adaptation_episodes: k,
            adaptation_len: a,
            ..Default::default()
        }
    }

    #[test]
    fn windows_tile_the_test_period_and_adaptation_precedes_each() {
        let ts: Vec<i64> = (0..300).collect();
        let windows = plan_windows(&ts, &config(100, 30, 2, 20)).unwrap();
        let covered: Vec<usize> = windows.iter().flat_map(|w| w.eval.clone()).collect();
        assert_eq!(covered, (100..299).collect::<Vec<_>>());
        assert_eq!(windows.len(), 7);
        assert_eq!(windows.last().unwrap().eval, 280..299);
        for (i, w) in windows.iter().enumerate() {
            assert_eq!(w.index, i);
            assert_eq!(
                w.adaptation,
                vec![
                    w.eval.start - 40..w.eval.start - 20,
                    w.eval.start - 20..w.eval.start
                ]
            );
            assert!(
                w.adaptation
                    .iter()
                    .all(|r| r.end <= w.eval.start && r.start >= WARMUP)
            );
        }
    }

    #[test]
    fn too_short_series_names_the_lengths() {
        let ts: Vec<i64> = (0..300).collect();
        match plan_windows(&ts, &config(60, 30, 2, 20)) {
            Err(Error::SeriesTooShort {
                len: 300,
                test_start: 60,
                warmup: WARMUP,
                adaptation_bars: 40,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            plan_windows(&ts, &config(299, 30, 0, 20)),
            Err(Error::SeriesTooShort { .. })
        ));
        let msg = plan_windows(&ts, &config(60, 30, 2, 20))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("300 bars") && msg.contains("40 adaptation bars"),
            "{msg}"
        );
        assert_eq!(plan_windows(&ts, &config(298, 30, 0, 20)).unwrap().len(), 1);
    }
}
