//! The [`Env`] trait and the [`Step`] it returns: the contract every environment meets.

use rand_chacha::ChaCha8Rng;

use crate::Result;

/// One transition.
///
/// `obs` is the observation *after* the step and borrows the env's internal buffer, so a step
/// allocates nothing. When [`Step::done`] is true, `obs` is the final observation of the
/// episode (useful to bootstrap a truncated episode); call [`Env::reset`] before stepping on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step<'a> {
    /// Observation after the step, `obs_dim` values.
    pub obs: &'a [f32],
    /// Reward of the step.
    pub reward: f64,
    /// The episode ended in a terminal state of the MDP (e.g. bankruptcy): no bootstrap.
    pub terminated: bool,
    /// The episode was cut by a time limit or the end of the data: bootstrap from V(obs).
    pub truncated: bool,
}

impl Step<'_> {
    /// `terminated || truncated`: the episode is over.
    pub fn done(&self) -> bool {
        self.terminated || self.truncated
    }
}

/// A discrete-action episodic environment.
///
/// `Send` so that vectorised wrappers and rollout workers can own envs on other threads.
pub trait Env: Send {
    /// Length of every observation.
    fn obs_dim(&self) -> usize;
    /// Number of discrete actions; actions are `0..n_actions`.
    fn n_actions(&self) -> usize;
    /// Upper bound on the steps of one episode (the time limit); trials and rollout buffers
    /// are sized by it.
    fn max_episode_steps(&self) -> usize;
    /// Starts an episode (a random start drawn from `rng` where the env has one) and returns
    /// the first observation.
    fn reset(&mut self, rng: &mut ChaCha8Rng) -> Result<&[f32]>;
    /// Starts the next episode of a trial, after an episode of it ended. The default is
    /// [`Env::reset`]; an env whose episodes can follow each other in time (a
    /// [`TradingEnv`](crate::TradingEnv) with
    /// [`EpisodeStarts::Consecutive`](crate::EpisodeStarts::Consecutive)) starts where the
    /// last one ended.
    fn reset_next_episode(&mut self, rng: &mut ChaCha8Rng) -> Result<&[f32]> {
        self.reset(rng)
    }
    /// Applies `action`; an error for an action out of range or a step after the episode end.
    fn step(&mut self, action: usize) -> Result<Step<'_>>;
    /// Writes the task's hidden parameters into `out` (cleared first): what a task-inference
    /// agent may be trained to predict (AR(1) `φ`, a bandit's arm means). Never part of an
    /// observation. The default, for envs whose task is not known, writes nothing.
    fn task_parameters(&self, out: &mut Vec<f32>) {
        out.clear();
    }
}

impl<E: Env + ?Sized> Env for Box<E> {
    fn obs_dim(&self) -> usize {
        (**self).obs_dim()
    }
    fn n_actions(&self) -> usize {
        (**self).n_actions()
    }
    fn max_episode_steps(&self) -> usize {
        (**self).max_episode_steps()
    }
    fn reset(&mut self, rng: &mut ChaCha8Rng) -> Result<&[f32]> {
        (**self).reset(rng)
    }
    fn reset_next_episode(&mut self, rng: &mut ChaCha8Rng) -> Result<&[f32]> {
        (**self).reset_next_episode(rng)
    }
    fn step(&mut self, action: usize) -> Result<Step<'_>> {
        (**self).step(action)
    }
    fn task_parameters(&self, out: &mut Vec<f32>) {
        (**self).task_parameters(out);
    }
}
