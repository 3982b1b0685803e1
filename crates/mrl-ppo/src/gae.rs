//! Generalised advantage estimation (Schulman et al. 2016, "High-dimensional continuous
//! control using generalized advantage estimation"), in f64, as pure functions.
//!
//! Going backwards from the last valid step,
//!
//! ```text
//! next_value_t = V_{t+1}            if the sequence continues after t
//!              = 0                  if t was terminal       (no bootstrap)
//!              = bootstrap_t        if t was truncated      (bootstrap from V(s_{t+1}))
//! delta_t      = r_t + γ·next_value_t − V_t
//! A_t          = delta_t + γλ·A_{t+1}      (A_{t+1} := 0 where the sequence is cut at t)
//! R_t          = A_t + V_t
//! ```
//!
//! What cuts the sequence is a [`StepEnd`] per step; [`GaeScope`] says which boundaries of an
//! RL² trial become cuts: only the trial end (the default: the objective is the return of the
//! whole trial) or every episode end (the design document's formula).

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Discount and trace parameters of GAE.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GaeConfig {
    /// Discount factor γ (default 0.99).
    pub gamma: f64,
    /// Trace parameter λ (default 0.95).
    pub lambda: f64,
}

impl Default for GaeConfig {
    fn default() -> Self {
        Self {
            gamma: 0.99,
            lambda: 0.95,
        }
    }
}

impl GaeConfig {
    /// Checks `0 ≤ γ ≤ 1` and `0 ≤ λ ≤ 1`.
    pub fn validate(&self) -> Result<()> {
        for (field, value) in [("gae.gamma", self.gamma), ("gae.lambda", self.lambda)] {
            if !(0.0..=1.0).contains(&value) {
                return Err(Error::InvalidConfig {
                    field,
                    value: value.to_string(),
                    reason: "must lie in [0, 1]",
                });
            }
        }
        Ok(())
    }
}

/// Which boundaries of an RL² trial cut the advantage recursion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GaeScope {
    /// Across the whole trial: episode ends inside the trial are ordinary steps, the recursion
    /// is cut only at the trial end (bootstrapped from V when the trial was truncated).
    #[default]
    Trial,
    /// Cut at every episode end (terminal: no bootstrap; truncated: bootstrap).
    Episode,
}

/// How the sequence continues after one step.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum StepEnd {
    /// The sequence goes on at `t + 1`: the next value is `V_{t+1}`.
    #[default]
    Continue,
    /// A terminal state: the next value is 0 and the recursion is cut.
    Terminated,
    /// Cut by a time limit (or the end of the rollout): the next value is the given
    /// bootstrap `V(s_{t+1})` and the recursion is cut.
    Truncated(f64),
}

impl StepEnd {
    /// True for [`StepEnd::Terminated`] and [`StepEnd::Truncated`].
    pub fn is_cut(self) -> bool {
        !matches!(self, Self::Continue)
    }
}

/// Advantages and returns of one sequence.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Gae {
    /// `A_t`, 0 on invalid (padded) steps.
    pub advantages: Vec<f64>,
    /// `R_t = A_t + V_t`, 0 on invalid steps.
    pub returns: Vec<f64>,
}

fn check_len(what: &'static str, expected: usize, found: usize) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(Error::LengthMismatch {
            what,
            expected,
            found,
        })
    }
}

/// GAE over one sequence whose boundaries are explicit.
///
/// `valid` (optional) marks real steps; invalid steps (the padding after a trial that
/// finished early) are skipped: they get advantage and return 0 and the recursion links
/// each valid step to the next valid one. The last valid step must be a cut
/// ([`StepEnd::Terminated`] or [`StepEnd::Truncated`]): there is no `V_{t+1}` after it.
///
/// # Errors
/// [`Error::LengthMismatch`] when the slices differ in length, [`Error::OpenEnd`] when the
/// last valid step continues.
pub fn gae(
    rewards: &[f64],
    values: &[f64],
    ends: &[StepEnd],
    valid: Option<&[bool]>,
    config: &GaeConfig,
) -> Result<Gae> {
    let len = rewards.len();
    check_len("values", len, values.len())?;
    check_len("step ends", len, ends.len())?;
    if let Some(valid) = valid {
        check_len("valid mask", len, valid.len())?;
    }
    let is_valid = |t: usize| valid.is_none_or(|v| v[t]);
    let mut out = Gae {
        advantages: vec![0.0; len],
        returns: vec![0.0; len],
    };
    let (gamma, gamma_lambda) = (config.gamma, config.gamma * config.lambda);
    let mut last_gae = 0.0;
    // V of the next valid step, `None` before any valid step has been seen (from the back).
    let mut next_value: Option<f64> = None;
    for t in (0..len).rev() {
        if !is_valid(t) {
            continue;
        }
        let delta = match ends[t] {
            StepEnd::Continue => {
                let next = next_value.ok_or(Error::OpenEnd { index: t })?;
                rewards[t] + gamma * next - values[t]
            }
            StepEnd::Terminated => {
                last_gae = 0.0;
                rewards[t] - values[t]
            }
            StepEnd::Truncated(bootstrap) => {
                last_gae = 0.0;
                rewards[t] + gamma * bootstrap - values[t]
            }
        };
        last_gae = delta + gamma_lambda * last_gae;
        out.advantages[t] = last_gae;
        out.returns[t] = last_gae + values[t];
        next_value = Some(values[t]);
    }
    Ok(out)
}

/// GAE in the reference form of the design document: `dones[t]` cuts the recursion with no
/// bootstrap, and after the last step the next value is `last_value` (0 for a finished
/// sequence, `V(s_T)` for a truncated one).
///
/// ```text
/// delta_t = r_t + γ·V_{t+1}·(1 − d_t) − V_t,   V_T := last_value
/// A_t     = delta_t + γλ·(1 − d_t)·A_{t+1}
/// ```
///
/// # Errors
/// [`Error::LengthMismatch`] when the slices differ in length.
pub fn gae_with_dones(
    rewards: &[f64],
    values: &[f64],
    dones: &[bool],
    last_value: f64,
    config: &GaeConfig,
) -> Result<Gae> {
    check_len("dones", rewards.len(), dones.len())?;
    let last = dones.len().saturating_sub(1);
    let ends: Vec<StepEnd> = dones
        .iter()
        .enumerate()
        .map(|(t, &done)| match (done, t == last) {
            (true, _) => StepEnd::Terminated,
            (false, true) => StepEnd::Truncated(last_value),
            (false, false) => StepEnd::Continue,
        })
        .collect();
    gae(rewards, values, &ends, None, config)
}

/// The [`StepEnd`] of every step of one RL² trial under `scope`.
///
/// Per step: `episode_end` (the step ended an episode), `terminated` (that end was a terminal
/// state of the MDP), and `bootstrap` (the value to bootstrap from where a cut is a
/// truncation). The last valid step is the trial end; `trial_truncated` says whether the trial
/// was cut before it finished (then it bootstraps from `bootstrap` of that step).
///
/// - [`GaeScope::Trial`]: only the trial end is a cut; it is terminal unless
///   `trial_truncated`.
/// - [`GaeScope::Episode`]: every episode end is a cut too, terminal where `terminated`,
///   otherwise truncated with its `bootstrap`.
#[derive(Debug, Clone, Copy)]
pub struct TrialSteps<'a> {
    /// The step ended an episode.
    pub episode_end: &'a [bool],
    /// The episode ended in a terminal state.
    pub terminated: &'a [bool],
    /// Bootstrap value per step, used where a truncation cuts the recursion.
    pub bootstrap: &'a [f64],
    /// Real steps (false on the padding after the trial end).
    pub valid: &'a [bool],
    /// The trial was cut before its natural end.
    pub trial_truncated: bool,
}

impl TrialSteps<'_> {
    /// The step ends of the trial under `scope`.
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] when the slices differ in length.
    pub fn step_ends(&self, scope: GaeScope) -> Result<Vec<StepEnd>> {
        let len = self.valid.len();
        check_len("episode ends", len, self.episode_end.len())?;
        check_len("terminated flags", len, self.terminated.len())?;
        check_len("bootstrap values", len, self.bootstrap.len())?;
        let trial_end = self.valid.iter().rposition(|&v| v);
        Ok((0..len)
            .map(|t| {
                if Some(t) == trial_end {
                    if self.trial_truncated && !self.terminated[t] {
                        StepEnd::Truncated(self.bootstrap[t])
                    } else {
                        StepEnd::Terminated
                    }
                } else if scope == GaeScope::Episode && self.episode_end[t] {
                    if self.terminated[t] {
                        StepEnd::Terminated
                    } else {
                        StepEnd::Truncated(self.bootstrap[t])
                    }
                } else {
                    StepEnd::Continue
                }
            })
            .collect())
    }
}

/// Mean and standard deviation (ddof 0) over the selected entries; `(0, 0)` when none.
pub fn masked_mean_std(xs: &[f64], mask: Option<&[bool]>) -> (f64, f64) {
    let selected = |i: usize| mask.is_none_or(|m| m.get(i).copied().unwrap_or(false));
    let (mut count, mut sum) = (0usize, 0.0);
    for (i, &x) in xs.iter().enumerate() {
        if selected(i) {
            count += 1;
            sum += x;
        }
    }
    if count == 0 {
        return (0.0, 0.0);
    }
    let mean = sum / count as f64;
    let var = xs
        .iter()
        .enumerate()
        .filter(|&(i, _)| selected(i))
        .map(|(_, &x)| (x - mean) * (x - mean))
        .sum::<f64>()
        / count as f64;
    (mean, var.sqrt())
}

/// Normalises advantages in place over the selected entries:
/// `A ← (A − mean) / (std_ddof0 + 1e-8)`; unselected entries are set to 0.
pub fn normalize_advantages(advantages: &mut [f64], mask: Option<&[bool]>) {
    let (mean, std) = masked_mean_std(advantages, mask);
    let denom = std + 1e-8;
    for (i, a) in advantages.iter_mut().enumerate() {
        if mask.is_none_or(|m| m.get(i).copied().unwrap_or(false)) {
            *a = (*a - mean) / denom;
        } else {
            *a = 0.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_end_is_an_error() {
        let err = gae(
            &[1.0],
            &[0.5],
            &[StepEnd::Continue],
            None,
            &GaeConfig::default(),
        );
        assert!(matches!(err, Err(Error::OpenEnd { index: 0 })));
    }

    #[test]
    fn length_mismatch_is_an_error() {
        let err = gae(
            &[1.0, 2.0],
            &[0.5],
            &[StepEnd::Terminated; 2],
            None,
            &GaeConfig::default(),
        );
        assert!(matches!(
            err,
            Err(Error::LengthMismatch {
                what: "values",
                expected: 2,
                found: 1
            })
        ));
        let err = gae_with_dones(&[1.0], &[0.5], &[true, false], 0.0, &GaeConfig::default());
        assert!(matches!(
            err,
            Err(Error::LengthMismatch { what: "dones", .. })
        ));
    }

    #[test]
    fn padding_contributes_nothing() {
        let config = GaeConfig::default();
        let rewards = [1.0, -0.5, 2.0];
        let values = [0.3, 0.1, -0.2];
        let ends = [StepEnd::Continue, StepEnd::Continue, StepEnd::Terminated];
        let plain = gae(&rewards, &values, &ends, None, &config).unwrap();
        // The same trial with padding after its end and between nothing else.
        let rewards_p = [1.0, -0.5, 2.0, 9.0, 9.0];
        let values_p = [0.3, 0.1, -0.2, 7.0, 7.0];
        let ends_p = [
            StepEnd::Continue,
            StepEnd::Continue,
            StepEnd::Terminated,
            StepEnd::Continue,
            StepEnd::Continue,
        ];
        let valid = [true, true, true, false, false];
        let padded = gae(&rewards_p, &values_p, &ends_p, Some(&valid), &config).unwrap();
        assert_eq!(&padded.advantages[..3], &plain.advantages[..]);
        assert_eq!(&padded.advantages[3..], &[0.0, 0.0]);
        assert_eq!(&padded.returns[3..], &[0.0, 0.0]);
    }

    #[test]
    fn truncation_bootstraps_and_termination_does_not() {
        let config = GaeConfig {
            gamma: 0.5,
            lambda: 1.0,
        };
        let term = gae(&[1.0], &[0.0], &[StepEnd::Terminated], None, &config).unwrap();
        let trunc = gae(&[1.0], &[0.0], &[StepEnd::Truncated(4.0)], None, &config).unwrap();
        assert_eq!(term.advantages, vec![1.0]);
        assert_eq!(trunc.advantages, vec![3.0]);
    }

    #[test]
    fn trial_scope_cuts_only_at_the_trial_end() {
        let episode_end = [false, true, false, true, false];
        let terminated = [false, false, false, false, false];
        let bootstrap = [0.0, 5.0, 0.0, 6.0, 0.0];
        let valid = [true, true, true, true, false];
        let steps = TrialSteps {
            episode_end: &episode_end,
            terminated: &terminated,
            bootstrap: &bootstrap,
            valid: &valid,
            trial_truncated: false,
        };
        let trial = steps.step_ends(GaeScope::Trial).unwrap();
        assert_eq!(
            trial,
            vec![
                StepEnd::Continue,
                StepEnd::Continue,
                StepEnd::Continue,
                StepEnd::Terminated,
                StepEnd::Continue
            ]
        );
        let episode = steps.step_ends(GaeScope::Episode).unwrap();
        assert_eq!(episode[1], StepEnd::Truncated(5.0));
        assert_eq!(episode[3], StepEnd::Terminated);
        let truncated = TrialSteps {
            trial_truncated: true,
            ..steps
        };
        assert_eq!(
            truncated.step_ends(GaeScope::Trial).unwrap()[3],
            StepEnd::Truncated(6.0)
        );
    }

    #[test]
    fn normalisation_of_a_constant_is_zero() {
        let mut adv = vec![2.0; 4];
        normalize_advantages(&mut adv, None);
        assert_eq!(adv, vec![0.0; 4]);
        let mut adv = vec![1.0, 3.0, 100.0];
        normalize_advantages(&mut adv, Some(&[true, true, false]));
        assert!((adv[0] + 1.0).abs() < 1e-7 && (adv[1] - 1.0).abs() < 1e-7 && adv[2] == 0.0);
    }
}
