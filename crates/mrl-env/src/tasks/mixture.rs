//! [`MixtureTasks`]: a weighted mixture of task distributions (e.g. AR(1) markets, regime
//! markets and real assets), each trial's task drawn from one component.
//!
//! # Design
//!
//! [`TaskDistribution`] is object-safe once its env type is fixed, and every market
//! distribution of this module returns a [`TaskEnv`], so a component is a
//! [`DynTasks`] (`Box<dyn TaskDistribution<Env = TaskEnv>>`): any present or future
//! distribution of trading tasks can be mixed without an enum to extend. The dynamic call is
//! paid once per sampled task, never per step (the env is a concrete [`TaskEnv`]).
//!
//! # Sampling
//!
//! `sample(split, rng)` draws `u ~ U[0, 1)` from the `rng` it is handed (the trial's own
//! seeded stream, [`trial_rng`](crate::trial_rng)), picks the component whose cumulative
//! normalised weight first exceeds `u`, then lets that component sample its task from
//! `split` with the same `rng`. Hence component `i` is drawn with probability
//! `w_i / Σ_j w_j`, a trial's task is a function of the trial's seed only (reproducible and
//! restored exactly on resume, with no RNG state of its own to save), and each component keeps
//! its own train/test separation (held-out assets, later periods, the test seed space).

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use super::TaskEnv;
use crate::{Error, Result, Split, TaskDistribution};

/// A boxed distribution of trading tasks: what a [`MixtureTasks`] mixes, and what a caller
/// that chooses the distribution at run time (from a config) can hold.
pub type DynTasks = Box<dyn TaskDistribution<Env = TaskEnv>>;

/// A boxed distribution is a distribution: every call is forwarded.
impl<D: TaskDistribution + ?Sized> TaskDistribution for Box<D> {
    type Env = D::Env;

    fn name(&self) -> &str {
        (**self).name()
    }

    fn obs_dim(&self) -> usize {
        (**self).obs_dim()
    }

    fn n_actions(&self) -> usize {
        (**self).n_actions()
    }

    fn max_episode_steps(&self) -> usize {
        (**self).max_episode_steps()
    }

    fn sample(&self, split: Split, rng: &mut ChaCha8Rng) -> Result<D::Env> {
        (**self).sample(split, rng)
    }
}

/// One component: its distribution and the upper end of its slice of `[0, 1)`.
struct Component {
    dist: DynTasks,
    weight: f64,
    cumulative: f64,
}

/// A weighted mixture of trading task distributions (see the module docs for the design and
/// the sampling rule).
///
/// Every component has the same observation length and number of actions (one policy serves
/// them all); episodes may differ in length, [`TaskDistribution::max_episode_steps`] is the
/// longest.
pub struct MixtureTasks {
    name: String,
    components: Vec<Component>,
    obs_dim: usize,
    n_actions: usize,
    max_episode_steps: usize,
}

impl std::fmt::Debug for MixtureTasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let components: Vec<(&str, f64)> = self
            .components
            .iter()
            .map(|c| (c.dist.name(), c.weight))
            .collect();
        f.debug_struct("MixtureTasks")
            .field("name", &self.name)
            .field("components", &components)
            .finish()
    }
}

impl MixtureTasks {
    /// The mixture of `(weight, distribution)` pairs; weights are relative (normalised by
    /// their sum).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for no component or a weight that is not finite and > 0;
    /// [`Error::MixtureMismatch`] naming the first component whose `obs_dim` or `n_actions`
    /// differs from component 0's.
    pub fn new(components: Vec<(f64, DynTasks)>) -> Result<Self> {
        let Some((_, first)) = components.first() else {
            return Err(Error::InvalidConfig {
                field: "components",
                value: "[]".to_owned(),
                reason: "a mixture needs at least one component",
            });
        };
        let (obs_dim, n_actions) = (first.obs_dim(), first.n_actions());
        for (index, (weight, dist)) in components.iter().enumerate() {
            if !(weight.is_finite() && *weight > 0.0) {
                return Err(Error::InvalidConfig {
                    field: "weight",
                    value: format!("{weight} (component {index}, {})", dist.name()),
                    reason: "expected a finite weight > 0",
                });
            }
            for (what, expected, found) in [
                ("obs_dim", obs_dim, dist.obs_dim()),
                ("n_actions", n_actions, dist.n_actions()),
            ] {
                if found != expected {
                    return Err(Error::MixtureMismatch {
                        index,
                        name: dist.name().to_owned(),
                        what,
                        expected,
                        found,
                    });
                }
            }
        }
        let total: f64 = components.iter().map(|(w, _)| w).sum();
        let max_episode_steps = components
            .iter()
            .map(|(_, d)| d.max_episode_steps())
            .max()
            .unwrap_or(0);
        let name = format!(
            "mixture({})",
            components
                .iter()
                .map(|(w, d)| format!("{}:{:.3}", d.name(), w / total))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut acc = 0.0;
        let components = components
            .into_iter()
            .map(|(weight, dist)| {
                acc += weight / total;
                Component {
                    dist,
                    weight: weight / total,
                    cumulative: acc,
                }
            })
            .collect();
        tracing::debug!(%name, "built task mixture");
        Ok(Self {
            name,
            components,
            obs_dim,
            n_actions,
            max_episode_steps,
        })
    }

    /// Number of components.
    pub fn n_components(&self) -> usize {
        self.components.len()
    }

    /// The normalised weight of every component (summing to 1).
    pub fn weights(&self) -> Vec<f64> {
        self.components.iter().map(|c| c.weight).collect()
    }

    /// Component `index`, `None` out of range.
    pub fn component(&self, index: usize) -> Option<&DynTasks> {
        self.components.get(index).map(|c| &c.dist)
    }

    /// Draws a component index and a task of it from `split` (what
    /// [`TaskDistribution::sample`] does, with the component's index returned too).
    ///
    /// # Errors
    /// The component's sampling error.
    pub fn sample_with_component(
        &self,
        split: Split,
        rng: &mut ChaCha8Rng,
    ) -> Result<(usize, TaskEnv)> {
        let u: f64 = rng.random();
        let last = self.components.len() - 1;
        // Rounding may leave the last cumulative weight a hair below 1: clamp to the last.
        let index = self
            .components
            .iter()
            .position(|c| u < c.cumulative)
            .unwrap_or(last);
        let env = self.components[index].dist.sample(split, rng)?;
        Ok((index, env))
    }
}

impl TaskDistribution for MixtureTasks {
    type Env = TaskEnv;

    fn name(&self) -> &str {
        &self.name
    }

    fn obs_dim(&self) -> usize {
        self.obs_dim
    }

    fn n_actions(&self) -> usize {
        self.n_actions
    }

    fn max_episode_steps(&self) -> usize {
        self.max_episode_steps
    }

    fn sample(&self, split: Split, rng: &mut ChaCha8Rng) -> Result<TaskEnv> {
        Ok(self.sample_with_component(split, rng)?.1)
    }
}
