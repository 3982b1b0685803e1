//! Rollouts: B RL² trials through [`VecTrials`] and the agent's batched step (no autograd),
//! into flat `(T, B)` buffers.
//!
//! Each rollout is one round of `VecTrials`: a new task per slot, the hidden states reset to
//! zero, and one whole trial of K episodes per slot. Slots whose trial ended early are
//! padding (`valid = false`) until every trial is over.

use candle_core::Tensor;
use mrl_agent::{InputLayout as AgentLayout, Policy, PolicyInputs, PolicyKind, RolloutWorkspace};
use mrl_env::{Env, TaskDistribution, VecTrials};
use rand_chacha::ChaCha8Rng;

use crate::gae::GaeScope;
use crate::{Error, Result};

/// Rollout storage, time-major: entry `(t, b)` is at `t·B + b`.
///
/// The policy inputs are stored as the agent's columns (observation, previous action,
/// reward and done), from which [`mrl_agent::InputLayout`] builds the rows for the update.
#[derive(Debug, Clone)]
pub struct RolloutBuffer {
    n_trials: usize,
    capacity: usize,
    len: usize,
    obs_dim: usize,
    /// Observations, `obs_dim` per entry.
    pub(crate) obs: Vec<f32>,
    /// Previous action (`None` at a trial start).
    pub prev_actions: Vec<Option<usize>>,
    /// Previous reward as fed to the policy.
    pub prev_rewards: Vec<f32>,
    /// The previous step ended an episode.
    pub prev_dones: Vec<bool>,
    /// Action taken.
    pub actions: Vec<u32>,
    /// Its log-probability under the rollout policy.
    pub log_probs: Vec<f32>,
    /// `V` of the rollout policy.
    pub values: Vec<f32>,
    /// Reward of the step.
    pub rewards: Vec<f32>,
    /// The step ended an episode.
    pub episode_end: Vec<bool>,
    /// That end was terminal.
    pub terminated: Vec<bool>,
    /// `V(final observation)` where an episode was truncated and the scope needs it, else 0.
    pub bootstrap: Vec<f32>,
    /// Index of the episode within the trial.
    pub episode: Vec<u32>,
    /// The entry is a real step (false on padding after the trial end).
    pub valid: Vec<bool>,
    /// Per trial: still running when the rollout hit the buffer's capacity.
    pub cut: Vec<bool>,
    /// Width of the task targets per entry (0: none are collected).
    target_dim: usize,
    /// The task's hidden parameters at every entry ([`mrl_env::Env::task_parameters`]),
    /// `target_dim` per entry: the targets of a task-inference agent's belief. They travel
    /// with the rollout and never enter the policy's inputs.
    pub task_targets: Vec<f32>,
}

/// One trial's columns, f64, for GAE.
#[derive(Debug, Clone, Default)]
pub struct TrialColumns {
    /// Rewards.
    pub rewards: Vec<f64>,
    /// Values.
    pub values: Vec<f64>,
    /// Episode ends.
    pub episode_end: Vec<bool>,
    /// Terminal ends.
    pub terminated: Vec<bool>,
    /// Bootstrap values.
    pub bootstrap: Vec<f64>,
    /// Valid steps.
    pub valid: Vec<bool>,
    /// The trial was cut before it ended (the rollout hit its length limit).
    pub truncated: bool,
}

impl RolloutBuffer {
    /// Storage for `n_trials` trials of at most `capacity` steps with `obs_dim` observations.
    pub fn new(n_trials: usize, capacity: usize, obs_dim: usize) -> Self {
        let n = n_trials * capacity;
        Self {
            n_trials,
            capacity,
            len: 0,
            obs_dim,
            obs: vec![0.0; n * obs_dim],
            prev_actions: vec![None; n],
            prev_rewards: vec![0.0; n],
            prev_dones: vec![false; n],
            actions: vec![0; n],
            log_probs: vec![0.0; n],
            values: vec![0.0; n],
            rewards: vec![0.0; n],
            episode_end: vec![false; n],
            terminated: vec![false; n],
            bootstrap: vec![0.0; n],
            episode: vec![0; n],
            valid: vec![false; n],
            cut: vec![false; n_trials],
            target_dim: 0,
            task_targets: Vec::new(),
        }
    }

    /// Also collects the task's hidden parameters, `target_dim` per entry
    /// ([`mrl_env::Env::task_parameters`]); a rollout then fails when a task has another
    /// number of them.
    pub fn with_task_targets(mut self, target_dim: usize) -> Self {
        self.target_dim = target_dim;
        self.task_targets = vec![0.0; self.n_trials * self.capacity * target_dim];
        self
    }

    /// Width of the collected task targets (0: none).
    pub fn target_dim(&self) -> usize {
        self.target_dim
    }

    /// The task targets of entry `i`, `target_dim` values.
    pub fn task_target(&self, i: usize) -> &[f32] {
        &self.task_targets[i * self.target_dim..(i + 1) * self.target_dim]
    }

    /// Number of trials B.
    pub fn n_trials(&self) -> usize {
        self.n_trials
    }

    /// Steps collected T (the longest trial).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no step was collected.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Observation width of the stored inputs.
    pub fn obs_dim(&self) -> usize {
        self.obs_dim
    }

    /// Flat index of step `t` of trial `b`.
    pub fn index(&self, b: usize, t: usize) -> usize {
        t * self.n_trials + b
    }

    /// Observation of entry `i`.
    pub fn obs_row(&self, i: usize) -> &[f32] {
        &self.obs[i * self.obs_dim..(i + 1) * self.obs_dim]
    }

    /// Valid flags in trial-major `(B, T)` order.
    pub fn valid_trial_major(&self) -> Vec<bool> {
        (0..self.n_trials)
            .flat_map(|b| (0..self.len).map(move |t| (b, t)))
            .map(|(b, t)| self.valid[self.index(b, t)])
            .collect()
    }

    /// Number of valid steps (environment steps taken).
    pub fn n_valid(&self) -> usize {
        self.valid[..self.len * self.n_trials]
            .iter()
            .filter(|&&v| v)
            .count()
    }

    /// The columns of trial `b`, in f64.
    pub fn trial(&self, b: usize) -> TrialColumns {
        let idx: Vec<usize> = (0..self.len).map(|t| self.index(b, t)).collect();
        let f = |v: &[f32]| idx.iter().map(|&i| f64::from(v[i])).collect::<Vec<_>>();
        let flags = |v: &[bool]| idx.iter().map(|&i| v[i]).collect::<Vec<_>>();
        TrialColumns {
            rewards: f(&self.rewards),
            values: f(&self.values),
            episode_end: flags(&self.episode_end),
            terminated: flags(&self.terminated),
            bootstrap: f(&self.bootstrap),
            valid: flags(&self.valid),
            truncated: self.cut[b],
        }
    }

    /// Mean total reward per trial over valid steps.
    pub fn mean_trial_return(&self) -> f64 {
        let total: f64 = (0..self.len * self.n_trials)
            .filter(|&i| self.valid[i])
            .map(|i| f64::from(self.rewards[i]))
            .sum();
        total / self.n_trials.max(1) as f64
    }

    fn store_input(&mut self, i: usize, env_obs_dim: usize, n_actions: usize, row: &[f32]) {
        let obs = &mut self.obs[i * self.obs_dim..(i + 1) * self.obs_dim];
        obs.fill(0.0);
        obs[..env_obs_dim].copy_from_slice(&row[..env_obs_dim]);
        let one_hot = &row[env_obs_dim..env_obs_dim + n_actions];
        self.prev_actions[i] = one_hot.iter().position(|&v| v == 1.0);
        self.prev_rewards[i] = row[env_obs_dim + n_actions];
        self.prev_dones[i] = row[env_obs_dim + n_actions + 1] != 0.0;
    }
}

/// The observation width the policy gets for a distribution: its own, or 1 (a constant 0)
/// for distributions without observations such as bandits, since the agent's input layout
/// needs at least one observation column.
pub fn policy_obs_dim(env_obs_dim: usize) -> usize {
    env_obs_dim.max(1)
}

/// What a rollout measured.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RolloutStats {
    /// Mean over trials of the trial's total reward.
    pub mean_trial_return: f64,
    /// Mean return of episode `k` of the trial, `k < K` (the adaptation curve).
    pub return_by_episode: Vec<f64>,
    /// Valid environment steps.
    pub env_steps: usize,
}

/// Collects one round of trials: resets `trials` (new tasks) and the hidden states, then
/// steps the agent and the envs in lockstep until every trial is over. Actions are sampled
/// with `rng`. Under [`GaeScope::Episode`] the value of every truncated episode's final
/// observation is computed for the bootstrap.
///
/// # Errors
/// Env and agent errors, [`Error::LengthMismatch`] when the buffer does not fit.
pub fn collect_rollout<D: TaskDistribution>(
    trials: &mut VecTrials<D>,
    workspace: &mut RolloutWorkspace,
    policy: &Policy,
    buffer: &mut RolloutBuffer,
    rng: &mut ChaCha8Rng,
    scope: GaeScope,
) -> Result<RolloutStats> {
    let n = trials.n_envs();
    if buffer.n_trials != n || workspace.batch_size() != n {
        return Err(Error::LengthMismatch {
            what: "rollout slots",
            expected: n,
            found: buffer.n_trials.min(workspace.batch_size()),
        });
    }
    let layout = trials.layout();
    let (env_obs, n_actions, dim) = (layout.obs_dim, layout.n_actions, layout.dim());
    let max_len = trials.max_trial_len().min(buffer.capacity);
    workspace.reset_all()?;
    let first = trials.reset_trials()?.to_vec();
    for b in 0..n {
        buffer.store_input(b, env_obs, n_actions, &first[b * dim..(b + 1) * dim]);
    }
    buffer.len = 0;
    buffer.cut.fill(false);
    let obs_dim = buffer.obs_dim;
    let mut params = Vec::new();
    for t in 0..max_len {
        let base = t * n;
        if buffer.target_dim > 0 {
            store_task_targets(trials, buffer, base, &mut params)?;
        }
        let inputs = PolicyInputs {
            obs: &buffer.obs[base * obs_dim..(base + n) * obs_dim],
            prev_actions: &buffer.prev_actions[base..base + n],
            prev_rewards: &buffer.prev_rewards[base..base + n],
            prev_dones: &buffer.prev_dones[base..base + n],
        };
        let step = workspace.step(&inputs, rng)?;
        for (b, &action) in step.actions.iter().enumerate() {
            buffer.actions[base + b] = action as u32;
            buffer.log_probs[base + b] = step.log_probs[b];
            buffer.values[base + b] = step.values[b];
        }
        // The batch borrows `trials` only: its input rows are read in place below, no copy
        // per step.
        let batch = trials.step(step.actions)?;
        let mut need_bootstrap = Vec::new();
        for b in 0..n {
            let i = base + b;
            buffer.rewards[i] = batch.rewards[b];
            buffer.episode_end[i] = batch.episode_done[b];
            buffer.terminated[i] = batch.terminated[b];
            buffer.episode[i] = batch.episode[b] as u32;
            buffer.valid[i] = batch.valid[b];
            buffer.bootstrap[i] = 0.0;
            let truncated_inside = batch.valid[b] && batch.truncated[b] && !batch.trial_done[b];
            if scope == GaeScope::Episode && truncated_inside {
                need_bootstrap.push(b);
            }
        }
        let cut_by_length = t + 1 == max_len && !batch.all_done;
        if cut_by_length {
            // Trials still running when the rollout stops bootstrap from their next input.
            need_bootstrap.clear();
            for b in (0..n).filter(|&b| batch.valid[b] && !batch.trial_done[b]) {
                buffer.cut[b] = true;
                need_bootstrap.push(b);
            }
        }
        let (next_inputs, final_inputs) = (batch.inputs, batch.final_inputs);
        let all_done = batch.all_done;
        buffer.len = t + 1;
        if !need_bootstrap.is_empty() {
            let hidden = workspace.hidden()?.to_vec();
            let values = bootstrap_values(
                policy,
                workspace,
                &need_bootstrap,
                &hidden,
                |b| {
                    let rows = if cut_by_length {
                        next_inputs
                    } else {
                        final_inputs
                    };
                    &rows[b * dim..(b + 1) * dim]
                },
                (env_obs, obs_dim, n_actions),
            )?;
            for (&b, v) in need_bootstrap.iter().zip(values) {
                buffer.bootstrap[base + b] = v;
            }
        }
        if all_done || t + 1 == max_len {
            break;
        }
        let next = base + n;
        for b in 0..n {
            buffer.store_input(
                next + b,
                env_obs,
                n_actions,
                &next_inputs[b * dim..(b + 1) * dim],
            );
        }
    }
    let return_by_episode = trials.mean_return_by_episode();
    Ok(RolloutStats {
        mean_trial_return: buffer.mean_trial_return(),
        return_by_episode,
        env_steps: buffer.n_valid(),
    })
}

/// Writes every slot's task parameters at entries `base..base + B`.
fn store_task_targets<D: TaskDistribution>(
    trials: &VecTrials<D>,
    buffer: &mut RolloutBuffer,
    base: usize,
    params: &mut Vec<f32>,
) -> Result<()> {
    let dim = buffer.target_dim;
    for (b, trial) in trials.trials().iter().enumerate() {
        trial.env().task_parameters(params);
        if params.len() != dim {
            let reason = if params.is_empty() {
                "the task distribution does not know its hidden parameters (supervised belief \
                 training needs e.g. the synthetic AR(1) family or bandits)"
            } else {
                "must equal the number of the task's hidden parameters (1 for AR(1) φ, 2 for \
                 regime markets' drift and volatility, k for k-armed bandits)"
            };
            return Err(Error::InvalidConfig {
                field: "agent.task_inference.latent",
                value: format!("{dim} (the task has {} hidden parameters)", params.len()),
                reason,
            });
        }
        let i = base + b;
        buffer.task_targets[i * dim..(i + 1) * dim].copy_from_slice(params);
    }
    Ok(())
}

/// Policy input columns (observation, previous action, reward, done) of the env input rows
/// of `slots`; observations are zero-padded to the policy's `obs_dim`.
pub(crate) type Columns = (Vec<f32>, Vec<Option<usize>>, Vec<f32>, Vec<bool>);

pub(crate) fn input_columns<'a>(
    slots: &[usize],
    row_of: &impl Fn(usize) -> &'a [f32],
    (env_obs, obs_dim, n_actions): (usize, usize, usize),
) -> Columns {
    let m = slots.len();
    let mut obs = vec![0.0f32; m * obs_dim];
    let mut prev_actions = Vec::with_capacity(m);
    let mut prev_rewards = Vec::with_capacity(m);
    let mut prev_dones = Vec::with_capacity(m);
    for (j, &b) in slots.iter().enumerate() {
        let row = row_of(b);
        obs[j * obs_dim..j * obs_dim + env_obs].copy_from_slice(&row[..env_obs]);
        prev_actions.push(
            row[env_obs..env_obs + n_actions]
                .iter()
                .position(|&v| v == 1.0),
        );
        prev_rewards.push(row[env_obs + n_actions]);
        prev_dones.push(row[env_obs + n_actions + 1] != 0.0);
    }
    (obs, prev_actions, prev_rewards, prev_dones)
}

/// `V` of the given env input rows, from the hidden states after the current step (the
/// Transformer: from its cache, through [`RolloutWorkspace::peek_values`], which advances
/// nothing).
fn bootstrap_values<'a>(
    policy: &Policy,
    workspace: &mut RolloutWorkspace,
    slots: &[usize],
    hidden: &[f32],
    row_of: impl Fn(usize) -> &'a [f32],
    dims: (usize, usize, usize),
) -> Result<Vec<f32>> {
    if policy.kind() == PolicyKind::Transformer {
        let all: Vec<usize> = (0..workspace.batch_size()).collect();
        let (obs, prev_actions, prev_rewards, prev_dones) = input_columns(&all, &row_of, dims);
        let values = workspace.peek_values(&PolicyInputs {
            obs: &obs,
            prev_actions: &prev_actions,
            prev_rewards: &prev_rewards,
            prev_dones: &prev_dones,
        })?;
        return Ok(slots.iter().map(|&b| values[b]).collect());
    }
    let m = slots.len();
    let (obs, prev_actions, prev_rewards, prev_dones) = input_columns(slots, &row_of, dims);
    let state = policy.state_size();
    let mut h = Vec::with_capacity(m * state);
    for &b in slots {
        h.extend_from_slice(&hidden[b * state..(b + 1) * state]);
    }
    let layout = AgentLayout::new(policy.config());
    let inputs = PolicyInputs {
        obs: &obs,
        prev_actions: &prev_actions,
        prev_rewards: &prev_rewards,
        prev_dones: &prev_dones,
    };
    let x = layout
        .sequence_tensor(&inputs, m, 1, policy.device())?
        .squeeze(1)?;
    let h = if state > 0 {
        Some(Tensor::from_vec(h, (m, state), policy.device())?)
    } else {
        None
    };
    let out = policy.step(&x, h.as_ref())?;
    Ok(out.values.detach().to_vec1::<f32>()?)
}
