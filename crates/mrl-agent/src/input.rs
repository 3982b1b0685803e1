//! The policy's input row `[obs, one_hot(prev_action), prev_reward, prev_done]`, built in one
//! place so that the environment side, rollouts and PPO agree on it.

use std::sync::Arc;

use candle_core::{Device, Tensor};

use crate::config::AgentConfig;
use crate::error::{Error, Result, check_len};
use crate::norm::InputNorm;

/// Layout of one input row (RL², Duan et al. 2016):
///
/// ```text
/// column  0 .. obs_dim                 observation o_t
///         obs_dim .. obs_dim+A         one_hot(a_{t-1}); all zero at a trial start
///         obs_dim+A                    r_{t-1}
///         obs_dim+A+1                  d_{t-1}: 1.0 when the previous step ended an episode
/// ```
///
/// With the defaults (14 observations, 3 actions) a row is 19 wide, as in the PyTorch
/// reference `MetaRLAgent.build_input`.
///
/// When the policy carries input statistics ([`AgentConfig::input_norm`]) the observation
/// block and the previous reward are normalised as the row is written ([`InputNorm`]); the
/// one-hot block and the done flag are written as they are. Every path that feeds the
/// network (rollouts, the PPO update, backtests, evaluation) builds its rows here, so the
/// same statistics apply everywhere.
#[derive(Clone, Debug, PartialEq)]
pub struct InputLayout {
    obs_dim: usize,
    n_actions: usize,
    norm: Option<Arc<InputNorm>>,
}

/// Column-wise inputs for `n` rows (one step of `n` trials, or `B·T` steps of a sequence
/// batch in row-major trial-then-time order).
#[derive(Clone, Copy, Debug)]
pub struct PolicyInputs<'a> {
    /// Observations, `n · obs_dim` values, row after row.
    pub obs: &'a [f32],
    /// Previous actions; `None` at a trial start (all-zero one-hot block).
    pub prev_actions: &'a [Option<usize>],
    /// Previous rewards.
    pub prev_rewards: &'a [f32],
    /// Whether the previous step ended an episode.
    pub prev_dones: &'a [bool],
}

impl PolicyInputs<'_> {
    /// Number of rows, taken from `prev_rewards`.
    pub fn len(&self) -> usize {
        self.prev_rewards.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.prev_rewards.is_empty()
    }
}

impl InputLayout {
    /// The layout of `config`'s network.
    pub fn new(config: &AgentConfig) -> Self {
        Self {
            obs_dim: config.obs_dim,
            n_actions: config.n_actions,
            norm: config.input_norm.clone().map(Arc::new),
        }
    }

    /// Whether `other` has the same widths (statistics aside).
    pub fn same_widths(&self, other: &Self) -> bool {
        (self.obs_dim, self.n_actions) == (other.obs_dim, other.n_actions)
    }

    /// The statistics applied to each row, if any.
    pub fn input_norm(&self) -> Option<&InputNorm> {
        self.norm.as_deref()
    }

    /// Row width: `obs_dim + n_actions + 2`.
    pub fn width(&self) -> usize {
        self.obs_dim + self.n_actions + 2
    }

    /// Observation width.
    pub fn obs_dim(&self) -> usize {
        self.obs_dim
    }

    /// Number of actions (width of the one-hot block).
    pub fn n_actions(&self) -> usize {
        self.n_actions
    }

    /// Writes one row into `dst` (`width()` values).
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] for a wrong `dst` or `obs` length,
    /// [`Error::ActionOutOfRange`] (with `trial` 0) for `prev_action ≥ n_actions`.
    pub fn write_row(
        &self,
        dst: &mut [f32],
        obs: &[f32],
        prev_action: Option<usize>,
        prev_reward: f32,
        prev_done: bool,
    ) -> Result<()> {
        check_len("dst", dst.len(), self.width())?;
        check_len("obs", obs.len(), self.obs_dim)?;
        self.fill_row(dst, obs, prev_action, prev_reward, prev_done, 0)
    }

    /// Writes `inputs.len()` rows into `dst` (`inputs.len() · width()` values).
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] when the columns or `dst` disagree in length,
    /// [`Error::ActionOutOfRange`] naming the row of a bad previous action.
    pub fn write_rows(&self, inputs: &PolicyInputs<'_>, dst: &mut [f32]) -> Result<()> {
        let n = self.check(inputs)?;
        check_len("dst", dst.len(), n * self.width())?;
        let rows = dst.chunks_exact_mut(self.width());
        let obs = inputs.obs.chunks_exact(self.obs_dim);
        for (i, (row, obs)) in rows.zip(obs).enumerate() {
            let (a, r, d) = (
                inputs.prev_actions[i],
                inputs.prev_rewards[i],
                inputs.prev_dones[i],
            );
            self.fill_row(row, obs, a, r, d, i)?;
        }
        Ok(())
    }

    /// Builds the `(batch_size, seq_len, width)` input tensor of a sequence batch, rows in
    /// trial-then-time order (row `b · seq_len + t` is step `t` of trial `b`).
    ///
    /// # Shapes
    /// `inputs` columns: `batch_size · seq_len` rows → `(batch_size, seq_len, width)`.
    ///
    /// # Errors
    /// As [`write_rows`](Self::write_rows), plus a length error when `inputs` does not hold
    /// `batch_size · seq_len` rows.
    pub fn sequence_tensor(
        &self,
        inputs: &PolicyInputs<'_>,
        batch_size: usize,
        seq_len: usize,
        device: &Device,
    ) -> Result<Tensor> {
        check_len("prev_rewards", inputs.len(), batch_size * seq_len)?;
        let mut buf = vec![0.0f32; batch_size * seq_len * self.width()];
        self.write_rows(inputs, &mut buf)?;
        Ok(Tensor::from_vec(
            buf,
            (batch_size, seq_len, self.width()),
            device,
        )?)
    }

    /// Checks column lengths against each other; returns the row count.
    pub(crate) fn check(&self, inputs: &PolicyInputs<'_>) -> Result<usize> {
        let n = inputs.len();
        check_len("obs", inputs.obs.len(), n * self.obs_dim)?;
        check_len("prev_actions", inputs.prev_actions.len(), n)?;
        check_len("prev_dones", inputs.prev_dones.len(), n)?;
        Ok(n)
    }

    /// Fills one row whose lengths are already checked.
    fn fill_row(
        &self,
        row: &mut [f32],
        obs: &[f32],
        prev_action: Option<usize>,
        prev_reward: f32,
        prev_done: bool,
        trial: usize,
    ) -> Result<()> {
        let (obs_part, rest) = row.split_at_mut(self.obs_dim);
        obs_part.copy_from_slice(obs);
        if let Some(norm) = &self.norm {
            norm.apply_obs(obs_part);
        }
        let (one_hot, tail) = rest.split_at_mut(self.n_actions);
        one_hot.fill(0.0);
        if let Some(action) = prev_action {
            let slot = one_hot.get_mut(action).ok_or(Error::ActionOutOfRange {
                trial,
                action,
                n_actions: self.n_actions,
            })?;
            *slot = 1.0;
        }
        tail[0] = match &self.norm {
            Some(norm) => norm.apply_reward(prev_reward),
            None => prev_reward,
        };
        tail[1] = if prev_done { 1.0 } else { 0.0 };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> InputLayout {
        InputLayout::new(&AgentConfig {
            obs_dim: 2,
            n_actions: 3,
            ..Default::default()
        })
    }

    #[test]
    fn row_layout_is_obs_onehot_reward_done() {
        let mut row = [9.0f32; 7];
        layout()
            .write_row(&mut row, &[0.5, -0.5], Some(1), 0.25, true)
            .unwrap();
        assert_eq!(row, [0.5, -0.5, 0.0, 1.0, 0.0, 0.25, 1.0]);
        layout()
            .write_row(&mut row, &[1.0, 2.0], None, 0.0, false)
            .unwrap();
        assert_eq!(row, [1.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn errors_name_the_argument_and_row() {
        let l = layout();
        let mut row = [0.0f32; 7];
        assert!(matches!(
            l.write_row(&mut row, &[0.0], None, 0.0, false),
            Err(Error::LengthMismatch {
                name: "obs",
                expected: 2,
                actual: 1
            })
        ));
        assert!(matches!(
            l.write_row(&mut row[..6], &[0.0, 0.0], None, 0.0, false),
            Err(Error::LengthMismatch { name: "dst", .. })
        ));
        let inputs = PolicyInputs {
            obs: &[0.0; 4],
            prev_actions: &[Some(2), Some(3)],
            prev_rewards: &[0.0; 2],
            prev_dones: &[false; 2],
        };
        let mut dst = [0.0f32; 14];
        assert!(matches!(
            l.write_rows(&inputs, &mut dst),
            Err(Error::ActionOutOfRange {
                trial: 1,
                action: 3,
                n_actions: 3
            })
        ));
        let short = PolicyInputs {
            prev_dones: &[false],
            ..inputs
        };
        assert!(matches!(
            l.write_rows(&short, &mut dst),
            Err(Error::LengthMismatch {
                name: "prev_dones",
                ..
            })
        ));
    }

    #[test]
    fn rows_apply_the_policy_statistics() {
        let norm = InputNorm {
            obs_mean: vec![1.0, -1.0],
            obs_std: vec![2.0, 0.5],
            reward_std: 4.0,
            clip: 5.0,
            count: 10.0,
        };
        let l = InputLayout::new(&AgentConfig {
            obs_dim: 2,
            n_actions: 3,
            input_norm: Some(norm),
            ..Default::default()
        });
        let mut row = [9.0f32; 7];
        l.write_row(&mut row, &[3.0, 100.0], Some(2), 2.0, true)
            .unwrap();
        // (3 − 1) / 2 = 1; (100 + 1) / 0.5 clipped to 5; reward 2 / 4; one-hot and done as is.
        assert_eq!(row, [1.0, 5.0, 0.0, 0.0, 1.0, 0.5, 1.0]);
        assert!(l.same_widths(&layout()));
        assert_ne!(l, layout());
    }

    #[test]
    fn sequence_tensor_is_trial_major() {
        let l = layout();
        let obs: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let inputs = PolicyInputs {
            obs: &obs,
            prev_actions: &[None, Some(0), Some(2), None, Some(1), Some(1)],
            prev_rewards: &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
            prev_dones: &[false, false, true, false, false, false],
        };
        let t = l.sequence_tensor(&inputs, 2, 3, &Device::Cpu).unwrap();
        assert_eq!(t.dims(), &[2, 3, 7]);
        let v = t.to_vec3::<f32>().unwrap();
        assert_eq!(v[0][2], vec![4.0, 5.0, 0.0, 0.0, 1.0, 2.0, 1.0]);
        assert_eq!(v[1][1], vec![8.0, 9.0, 0.0, 1.0, 0.0, 4.0, 0.0]);
    }
}
