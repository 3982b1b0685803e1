//! Bernoulli multi-armed bandits, the first benchmark of RL² (Duan et al. 2016, §4.1), and the
//! classic bandit algorithms it is compared with.
//!
//! # The task
//!
//! A task is `k` arms with success probabilities `p_i ~ U(0, 1)`, drawn once per task (per
//! trial). A trial is one episode of `n` pulls; pulling arm `a` pays 1 with probability `p_a`,
//! else 0. The env has no observation (`obs_dim = 0`): the RL² policy input is then
//! `[one_hot(a_{t−1}), r_{t−1}, d_{t−1}]`, exactly the paper's. The episode ends with
//! `truncated` after `n` pulls (a time limit, never `terminated`).
//!
//! Optionally ([`BanditEnv::with_time_observation`]) the env observes the share of the
//! episode's pulls already made, `t/n ∈ [0, 1]` (`obs_dim = 1`), the extra input Wang et al.
//! (2016, "Learning to reinforcement learn") give their bandit agents: with it the policy need
//! not count the pulls left in its hidden state to plan the finite horizon's exploration.
//!
//! # Common random numbers
//!
//! Every outcome is a fixed function of the task, so that two policies run on the same task
//! see identical luck: the uniform deciding pull number `t` (counted from the first pull of the
//! task, across episodes) of arm `a` is the `(t·k + a)`-th `f64` of a ChaCha8 stream keyed by
//! the task's `outcome_seed` (the stream is positioned with `set_word_pos`, so nothing is
//! tabulated), and the reward is `1[u < p_a]`. Comparing policies on the same tasks this way
//! removes most of the task-to-task and outcome noise from their *difference*.
//!
//! # Baselines
//!
//! [`BanditPolicy`] is implemented by [`RandomPolicy`], [`GreedyPolicy`],
//! [`EpsilonGreedyPolicy`], [`Ucb1Policy`] and [`ThompsonPolicy`]; [`evaluate_baselines`] scores
//! them on the same held-out tasks. The Gittins index policy of the paper's table is not
//! implemented (its exact finite-horizon index needs a dynamic programme per arm state);
//! [`BayesOptimalPolicy`](crate::BayesOptimalPolicy) solves the whole bandit's programme
//! instead, the ceiling of every policy (not among the default baselines: its table exists
//! only for small `k` and `n`).
//!
//! Arm estimates can carry a Beta prior as pseudo-counts ([`ArmPrior`]). With
//! [`ArmPrior::NONE`] an arm never pulled has no estimate and is pulled first (the textbook
//! "pull each arm once"); with [`ArmPrior::UNIFORM`] the estimate is the Beta(1, 1) posterior
//! mean `(s + 1)/(m + 2)`, which is what the RL² authors' evaluation code used for greedy,
//! ε-greedy and UCB1 (their figures are matched by those settings, see the crate's tests).

use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution};
use serde::{Deserialize, Serialize};

use crate::tasks::split_rng;
use crate::{Env, Error, Result, Split, Step, TaskDistribution};

/// One Bernoulli bandit: the arms' success probabilities and the key of its outcome stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BanditTask {
    probs: Vec<f64>,
    outcome_seed: u64,
}

impl BanditTask {
    /// A task with the given arm probabilities; outcomes are keyed by `outcome_seed`.
    ///
    /// Errors when there is no arm or a probability is outside `[0, 1]`.
    pub fn new(probs: Vec<f64>, outcome_seed: u64) -> Result<Self> {
        if probs.is_empty() {
            return Err(invalid("probs", "[]", "at least one arm is needed"));
        }
        if let Some(p) = probs.iter().find(|p| !(0.0..=1.0).contains(*p)) {
            return Err(invalid("probs", p, "probabilities must lie in [0, 1]"));
        }
        Ok(Self {
            probs,
            outcome_seed,
        })
    }

    /// Success probability of every arm.
    pub fn probs(&self) -> &[f64] {
        &self.probs
    }

    /// Number of arms `k`.
    pub fn n_arms(&self) -> usize {
        self.probs.len()
    }

    /// `max_i p_i`: the expected reward per pull of an oracle that knows the arms, so the
    /// expected regret of a trial of `n` pulls is `n · best_prob − E[total reward]`.
    pub fn best_prob(&self) -> f64 {
        self.probs.iter().copied().fold(0.0, f64::max)
    }

    /// The key of the outcome stream (see the module docs on common random numbers).
    pub fn outcome_seed(&self) -> u64 {
        self.outcome_seed
    }
}

/// Reward of pull number `pull_idx` of `arm`: `1[u < p_arm]` with `u` the `(pull_idx·k + arm)`-th
/// uniform of the outcome stream `outcomes`.
fn outcome(outcomes: &mut ChaCha8Rng, probs: &[f64], pull_idx: u64, arm: usize) -> f64 {
    let draw_idx = u128::from(pull_idx) * probs.len() as u128 + arm as u128;
    // A `f64` consumes one `u64`, i.e. two 32-bit words of the ChaCha stream.
    outcomes.set_word_pos(2 * draw_idx);
    let u: f64 = outcomes.random();
    if u < probs[arm] { 1.0 } else { 0.0 }
}

/// A Bernoulli bandit as an [`Env`]: `obs_dim = 0` (or 1 with
/// [`with_time_observation`](Self::with_time_observation)), `n_actions = k`, episodes of `n`
/// pulls.
///
/// Pull indices keep counting across episodes, so a second episode on the same task sees fresh
/// outcomes (as the RL² trial of several episodes on one task expects).
#[derive(Debug, Clone)]
pub struct BanditEnv {
    task: BanditTask,
    n_pulls: usize,
    outcomes: ChaCha8Rng,
    /// Pulls of the current episode.
    pull: usize,
    /// Episodes started on this task; the current one is `episodes_started − 1`.
    episodes_started: u64,
    running: bool,
    observe_time: bool,
    /// The observation `[t/n]`, of which the first `obs_dim` entries are returned.
    obs: [f32; 1],
}

impl BanditEnv {
    /// An env of `n_pulls` pulls per episode on `task`. Errors when `n_pulls` is 0.
    pub fn new(task: BanditTask, n_pulls: usize) -> Result<Self> {
        if n_pulls == 0 {
            return Err(invalid("n_pulls", 0, "an episode needs at least one pull"));
        }
        let outcomes = ChaCha8Rng::seed_from_u64(task.outcome_seed);
        Ok(Self {
            task,
            n_pulls,
            outcomes,
            pull: 0,
            episodes_started: 0,
            running: false,
            observe_time: false,
            obs: [0.0],
        })
    }

    /// Observes (`on`) or not the share of the episode's pulls made so far, `t/n`: 0 at the
    /// reset, `1` with the last pull's step. `obs_dim` becomes 1.
    #[must_use]
    pub fn with_time_observation(mut self, on: bool) -> Self {
        self.observe_time = on;
        self
    }

    /// Whether the env observes `t/n`.
    pub fn observes_time(&self) -> bool {
        self.observe_time
    }

    fn observation(&mut self) -> &[f32] {
        self.obs[0] = self.pull as f32 / self.n_pulls as f32;
        &self.obs[..usize::from(self.observe_time)]
    }

    /// The task: its arm probabilities are the true parameters evaluation code may need.
    pub fn task(&self) -> &BanditTask {
        &self.task
    }

    /// Pulls per episode `n`.
    pub fn n_pulls(&self) -> usize {
        self.n_pulls
    }
}

impl Env for BanditEnv {
    fn obs_dim(&self) -> usize {
        usize::from(self.observe_time)
    }

    fn n_actions(&self) -> usize {
        self.task.n_arms()
    }

    fn max_episode_steps(&self) -> usize {
        self.n_pulls
    }

    /// Starts an episode of `n` pulls. The arms are fixed by the task, so `rng` is not used.
    fn reset(&mut self, _rng: &mut ChaCha8Rng) -> Result<&[f32]> {
        self.episodes_started += 1;
        self.pull = 0;
        self.running = true;
        Ok(self.observation())
    }

    fn step(&mut self, action: usize) -> Result<Step<'_>> {
        let n_actions = self.task.n_arms();
        if action >= n_actions {
            return Err(Error::InvalidAction { action, n_actions });
        }
        if !self.running {
            return Err(Error::EpisodeNotRunning);
        }
        let episode_idx = self.episodes_started - 1;
        let pull_idx = episode_idx * self.n_pulls as u64 + self.pull as u64;
        let reward = outcome(&mut self.outcomes, &self.task.probs, pull_idx, action);
        self.pull += 1;
        let truncated = self.pull == self.n_pulls;
        self.running = !truncated;
        Ok(Step {
            obs: self.observation(),
            reward,
            terminated: false,
            truncated,
        })
    }

    /// The arms' success probabilities (the arm means), in arm order.
    fn task_parameters(&self, out: &mut Vec<f32>) {
        out.clear();
        out.extend(self.task.probs.iter().map(|&p| p as f32));
    }
}

/// The distribution of Bernoulli bandits with `k` arms and `n` pulls: `p_i ~ U(0, 1)` i.i.d.
///
/// `sample` draws one `u64` from the caller's RNG and expands it on a split-specific ChaCha
/// stream (train and test use different stream ids of the same key), so the train and test
/// task sequences are independent even for the same caller seed. The task space is
/// continuous, so "disjoint" can only mean independent streams here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanditDistribution {
    n_arms: usize,
    n_pulls: usize,
    #[serde(default)]
    observe_time: bool,
    name: String,
}

impl BanditDistribution {
    /// Bandits of `n_arms ≥ 1` arms and `n_pulls ≥ 1` pulls per episode.
    pub fn new(n_arms: usize, n_pulls: usize) -> Result<Self> {
        if n_arms == 0 {
            return Err(invalid("n_arms", 0, "at least one arm is needed"));
        }
        if n_pulls == 0 {
            return Err(invalid("n_pulls", 0, "an episode needs at least one pull"));
        }
        Ok(Self {
            n_arms,
            n_pulls,
            observe_time: false,
            name: format!("bandit-k{n_arms}-n{n_pulls}"),
        })
    }

    /// Envs that observe (`on`) the share of pulls made, `t/n`
    /// (see [`BanditEnv::with_time_observation`]); the name gains a `-time` suffix.
    #[must_use]
    pub fn with_time_observation(mut self, on: bool) -> Self {
        let suffix = if on { "-time" } else { "" };
        self.name = format!("bandit-k{}-n{}{suffix}", self.n_arms, self.n_pulls);
        self.observe_time = on;
        self
    }

    /// Whether the envs observe `t/n`.
    pub fn observes_time(&self) -> bool {
        self.observe_time
    }

    /// Number of arms `k`.
    pub fn n_arms(&self) -> usize {
        self.n_arms
    }

    /// Pulls per episode `n`.
    pub fn n_pulls(&self) -> usize {
        self.n_pulls
    }

    /// Draws one task (arm probabilities and outcome key) from `split`.
    pub fn sample_task(&self, split: Split, rng: &mut ChaCha8Rng) -> BanditTask {
        let mut task_rng = split_rng(split, rng);
        let probs = (0..self.n_arms).map(|_| task_rng.random::<f64>()).collect();
        BanditTask {
            probs,
            outcome_seed: task_rng.next_u64(),
        }
    }
}

impl TaskDistribution for BanditDistribution {
    type Env = BanditEnv;

    fn name(&self) -> &str {
        &self.name
    }

    fn obs_dim(&self) -> usize {
        usize::from(self.observe_time)
    }

    fn n_actions(&self) -> usize {
        self.n_arms
    }

    fn max_episode_steps(&self) -> usize {
        self.n_pulls
    }

    fn sample(&self, split: Split, rng: &mut ChaCha8Rng) -> Result<BanditEnv> {
        Ok(BanditEnv::new(self.sample_task(split, rng), self.n_pulls)?
            .with_time_observation(self.observe_time))
    }
}

/// A bandit algorithm: chooses an arm, then learns from the reward.
pub trait BanditPolicy: Send {
    /// Name for reports, with its settings (e.g. `"ucb1(c=1)"`).
    fn name(&self) -> String;
    /// Forgets everything: a new task of `n_arms` arms and `n_pulls` pulls starts.
    fn reset(&mut self, n_arms: usize, n_pulls: usize);
    /// The arm to pull next; random choices draw from `rng`.
    fn select(&mut self, rng: &mut ChaCha8Rng) -> usize;
    /// Records the reward (0 or 1) of pulling `arm`.
    fn update(&mut self, arm: usize, reward: f64);
}

/// A Beta(`successes`, `failures`) prior on each arm, used as pseudo-counts.
///
/// The estimate of an arm with `s` successes in `m` pulls is `(s + α₀)/(m + α₀ + β₀)`; with
/// [`ArmPrior::NONE`] an arm never pulled has no estimate and is pulled before any other.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ArmPrior {
    /// Prior successes α₀ ≥ 0.
    pub successes: f64,
    /// Prior failures β₀ ≥ 0.
    pub failures: f64,
}

impl ArmPrior {
    /// No prior: empirical means, each arm pulled once first.
    pub const NONE: Self = Self {
        successes: 0.0,
        failures: 0.0,
    };
    /// The uniform Beta(1, 1) prior, the RL² evaluation code's convention.
    pub const UNIFORM: Self = Self {
        successes: 1.0,
        failures: 1.0,
    };

    fn validate(self) -> Result<Self> {
        for (field, value) in [
            ("prior.successes", self.successes),
            ("prior.failures", self.failures),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(invalid(
                    field,
                    value,
                    "pseudo-counts must be finite and >= 0",
                ));
            }
        }
        Ok(self)
    }
}

impl Default for ArmPrior {
    /// [`ArmPrior::NONE`].
    fn default() -> Self {
        Self::NONE
    }
}

/// Pull counts and successes per arm, shared by the index policies.
#[derive(Debug, Clone, Default)]
struct ArmStats {
    pulls: Vec<f64>,
    successes: Vec<f64>,
    total_pulls: usize,
}

impl ArmStats {
    fn reset(&mut self, n_arms: usize) {
        self.pulls.clear();
        self.pulls.resize(n_arms, 0.0);
        self.successes.clear();
        self.successes.resize(n_arms, 0.0);
        self.total_pulls = 0;
    }

    /// Records a pull; an arm outside `0..n_arms` (a caller bug) is ignored, not a panic.
    fn update(&mut self, arm: usize, reward: f64) {
        if let (Some(pulls), Some(successes)) =
            (self.pulls.get_mut(arm), self.successes.get_mut(arm))
        {
            *pulls += 1.0;
            *successes += reward;
            self.total_pulls += 1;
        }
    }

    fn n_arms(&self) -> usize {
        self.pulls.len()
    }

    /// The first arm that has no estimate under `prior` (never pulled, no pseudo-counts).
    fn untried(&self, prior: ArmPrior) -> Option<usize> {
        if prior.successes + prior.failures > 0.0 {
            return None;
        }
        self.pulls.iter().position(|&m| m == 0.0)
    }

    /// `(s + α₀)/(m + α₀ + β₀)`; only called on arms with a positive denominator.
    fn mean(&self, arm: usize, prior: ArmPrior) -> f64 {
        (self.successes[arm] + prior.successes) / self.effective_pulls(arm, prior)
    }

    fn effective_pulls(&self, arm: usize, prior: ArmPrior) -> f64 {
        self.pulls[arm] + prior.successes + prior.failures
    }
}

/// Index of the largest score, the lowest index on ties (as numpy's `argmax`).
fn argmax(scores: impl Iterator<Item = f64>) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, s) in scores.enumerate() {
        if s > best.1 {
            best = (i, s);
        }
    }
    best.0
}

/// Uniformly random arms: the floor every method must beat (expected total `n/2`).
#[derive(Debug, Clone, Default)]
pub struct RandomPolicy {
    n_arms: usize,
}

impl RandomPolicy {
    /// A random policy.
    pub fn new() -> Self {
        Self::default()
    }
}

impl BanditPolicy for RandomPolicy {
    fn name(&self) -> String {
        "random".to_owned()
    }

    fn reset(&mut self, n_arms: usize, _n_pulls: usize) {
        self.n_arms = n_arms;
    }

    fn select(&mut self, rng: &mut ChaCha8Rng) -> usize {
        rng.random_range(0..self.n_arms.max(1))
    }

    fn update(&mut self, _arm: usize, _reward: f64) {}
}

/// ε-greedy: with probability ε a uniformly random arm, otherwise the arm of best estimate.
///
/// ε = 0 is the greedy policy ([`GreedyPolicy`]). Default ε = 0.1, the customary value
/// (Sutton & Barto 2018, §2.3); the RL² paper tuned ε per setting instead.
#[derive(Debug, Clone)]
pub struct EpsilonGreedyPolicy {
    epsilon: f64,
    prior: ArmPrior,
    stats: ArmStats,
}

impl EpsilonGreedyPolicy {
    /// ε-greedy with `epsilon ∈ [0, 1]` and the arm prior `prior`.
    pub fn new(epsilon: f64, prior: ArmPrior) -> Result<Self> {
        if !(0.0..=1.0).contains(&epsilon) {
            return Err(invalid("epsilon", epsilon, "must lie in [0, 1]"));
        }
        Ok(Self {
            epsilon,
            prior: prior.validate()?,
            stats: ArmStats::default(),
        })
    }

    /// The exploration probability ε.
    pub fn epsilon(&self) -> f64 {
        self.epsilon
    }
}

impl Default for EpsilonGreedyPolicy {
    /// ε = 0.1 and no prior (each arm pulled once first).
    fn default() -> Self {
        Self {
            epsilon: 0.1,
            prior: ArmPrior::NONE,
            stats: ArmStats::default(),
        }
    }
}

impl BanditPolicy for EpsilonGreedyPolicy {
    fn name(&self) -> String {
        policy_name(
            "epsilon-greedy",
            Some(format!("eps={}", self.epsilon)),
            self.prior,
        )
    }

    fn reset(&mut self, n_arms: usize, _n_pulls: usize) {
        self.stats.reset(n_arms);
    }

    fn select(&mut self, rng: &mut ChaCha8Rng) -> usize {
        if let Some(arm) = self.stats.untried(self.prior) {
            return arm;
        }
        let n_arms = self.stats.n_arms();
        if self.epsilon > 0.0 && rng.random::<f64>() < self.epsilon {
            return rng.random_range(0..n_arms.max(1));
        }
        argmax((0..n_arms).map(|a| self.stats.mean(a, self.prior)))
    }

    fn update(&mut self, arm: usize, reward: f64) {
        self.stats.update(arm, reward);
    }
}

/// Greedy: the arm of best estimate, ties to the lowest index (ε-greedy with ε = 0). With
/// [`ArmPrior::NONE`] (the default) each arm is pulled once first, then the best empirical mean.
#[derive(Debug, Clone)]
pub struct GreedyPolicy(EpsilonGreedyPolicy);

impl GreedyPolicy {
    /// Greedy with the arm prior `prior`.
    pub fn new(prior: ArmPrior) -> Result<Self> {
        EpsilonGreedyPolicy::new(0.0, prior).map(Self)
    }
}

impl Default for GreedyPolicy {
    /// No prior: each arm once, then the best empirical mean.
    fn default() -> Self {
        Self(EpsilonGreedyPolicy {
            epsilon: 0.0,
            prior: ArmPrior::NONE,
            stats: ArmStats::default(),
        })
    }
}

impl BanditPolicy for GreedyPolicy {
    fn name(&self) -> String {
        policy_name("greedy", None, self.0.prior)
    }

    fn reset(&mut self, n_arms: usize, n_pulls: usize) {
        self.0.reset(n_arms, n_pulls);
    }

    fn select(&mut self, rng: &mut ChaCha8Rng) -> usize {
        self.0.select(rng)
    }

    fn update(&mut self, arm: usize, reward: f64) {
        self.0.update(arm, reward);
    }
}

/// UCB1 (Auer, Cesa-Bianchi & Fischer 2002): each arm once, then
/// `argmax_i  x̄_i + c·sqrt(2 ln t / n_i)` with `t` the pulls so far and `n_i` those of arm `i`.
///
/// `c = 1` is Auer et al.'s UCB1 (the default); the RL² paper tuned `c ∈ {0, 0.1, …, 1}`.
/// With a prior, `x̄_i` and `n_i` include the pseudo-counts and `ln t` is taken as
/// `ln max(t, 1)`.
#[derive(Debug, Clone)]
pub struct Ucb1Policy {
    c: f64,
    prior: ArmPrior,
    stats: ArmStats,
}

impl Ucb1Policy {
    /// UCB1 with exploration scale `c ≥ 0` and the arm prior `prior`.
    pub fn new(c: f64, prior: ArmPrior) -> Result<Self> {
        if !(c.is_finite() && c >= 0.0) {
            return Err(invalid("c", c, "must be finite and >= 0"));
        }
        Ok(Self {
            c,
            prior: prior.validate()?,
            stats: ArmStats::default(),
        })
    }

    /// `x̄_i + c·sqrt(2 ln max(t, 1) / n_i)`.
    fn index(&self, arm: usize) -> f64 {
        let ln_t = (self.stats.total_pulls.max(1) as f64).ln();
        let n_i = self.stats.effective_pulls(arm, self.prior);
        self.stats.mean(arm, self.prior) + self.c * (2.0 * ln_t / n_i).sqrt()
    }
}

impl Default for Ucb1Policy {
    /// `c = 1`, no prior: Auer et al.'s UCB1.
    fn default() -> Self {
        Self {
            c: 1.0,
            prior: ArmPrior::NONE,
            stats: ArmStats::default(),
        }
    }
}

impl BanditPolicy for Ucb1Policy {
    fn name(&self) -> String {
        policy_name("ucb1", Some(format!("c={}", self.c)), self.prior)
    }

    fn reset(&mut self, n_arms: usize, _n_pulls: usize) {
        self.stats.reset(n_arms);
    }

    fn select(&mut self, _rng: &mut ChaCha8Rng) -> usize {
        self.stats
            .untried(self.prior)
            .unwrap_or_else(|| argmax((0..self.stats.n_arms()).map(|a| self.index(a))))
    }

    fn update(&mut self, arm: usize, reward: f64) {
        self.stats.update(arm, reward);
    }
}

/// Thompson sampling (Thompson 1933) with a Beta(1, 1) prior: draw `θ_i ~ Beta(1 + s_i, 1 + f_i)`
/// for every arm and pull `argmax θ_i`.
#[derive(Debug, Clone, Default)]
pub struct ThompsonPolicy {
    stats: ArmStats,
}

impl ThompsonPolicy {
    /// Thompson sampling with the uniform prior.
    pub fn new() -> Self {
        Self::default()
    }
}

impl BanditPolicy for ThompsonPolicy {
    fn name(&self) -> String {
        "thompson".to_owned()
    }

    fn reset(&mut self, n_arms: usize, _n_pulls: usize) {
        self.stats.reset(n_arms);
    }

    fn select(&mut self, rng: &mut ChaCha8Rng) -> usize {
        let stats = &self.stats;
        argmax((0..stats.n_arms()).map(|a| {
            let alpha = 1.0 + stats.successes[a];
            let beta = 1.0 + stats.pulls[a] - stats.successes[a];
            // Both parameters are >= 1, so `Beta::new` cannot fail; the posterior mean is a
            // harmless fallback all the same.
            match Beta::new(alpha, beta) {
                Ok(dist) => dist.sample(rng),
                Err(_) => alpha / (alpha + beta),
            }
        }))
    }

    fn update(&mut self, arm: usize, reward: f64) {
        self.stats.update(arm, reward);
    }
}

/// `base`, then the settings in parentheses: `"ucb1(c=1, prior=beta(1,1))"`, `"greedy"`.
fn policy_name(base: &str, setting: Option<String>, prior: ArmPrior) -> String {
    let prior = (prior != ArmPrior::NONE)
        .then(|| format!("prior=beta({},{})", prior.successes, prior.failures));
    let settings: Vec<String> = setting.into_iter().chain(prior).collect();
    if settings.is_empty() {
        base.to_owned()
    } else {
        format!("{base}({})", settings.join(", "))
    }
}

/// Mean total reward of a policy over a set of trials, with its standard error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineScore {
    /// The policy's [`BanditPolicy::name`].
    pub name: String,
    /// Mean over trials of the total reward of a trial.
    pub mean: f64,
    /// Standard error of `mean`: sample standard deviation / sqrt(trials).
    pub std_err: f64,
    /// Number of trials.
    pub n_trials: usize,
}

/// The baselines of [`evaluate_baselines`], in report order: random, greedy, ε-greedy (0.1),
/// UCB1 (c = 1), Thompson sampling, all with their textbook defaults.
pub fn default_baselines() -> Vec<Box<dyn BanditPolicy>> {
    vec![
        Box::new(RandomPolicy::new()),
        Box::new(GreedyPolicy::default()),
        Box::new(EpsilonGreedyPolicy::default()),
        Box::new(Ucb1Policy::default()),
        Box::new(ThompsonPolicy::new()),
    ]
}

/// `n_trials` held-out tasks of `k` arms, drawn from `seed` (the same seed, the same tasks).
pub fn sample_tasks(dist: &BanditDistribution, n_trials: usize, seed: u64) -> Vec<BanditTask> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n_trials)
        .map(|_| dist.sample_task(Split::Test, &mut rng))
        .collect()
}

/// Runs `policy` for one episode of `n_pulls` on each task and scores its total reward.
///
/// The policy's own random draws come from one ChaCha8 stream keyed by `seed`; the outcomes
/// come from the tasks (common random numbers, see the module docs).
pub fn evaluate_policy(
    policy: &mut dyn BanditPolicy,
    tasks: &[BanditTask],
    n_pulls: usize,
    seed: u64,
) -> Result<BaselineScore> {
    let mut policy_rng = ChaCha8Rng::seed_from_u64(seed);
    policy_rng.set_stream(POLICY_STREAM);
    let mut totals = Vec::with_capacity(tasks.len());
    for task in tasks {
        let mut env = BanditEnv::new(task.clone(), n_pulls)?;
        policy.reset(task.n_arms(), n_pulls);
        env.reset(&mut policy_rng)?;
        let mut total = 0.0;
        loop {
            let arm = policy.select(&mut policy_rng);
            let step = env.step(arm)?;
            let (reward, done) = (step.reward, step.done());
            policy.update(arm, reward);
            total += reward;
            if done {
                break;
            }
        }
        totals.push(total);
    }
    let (mean, std_err) = mean_and_std_err(&totals);
    Ok(BaselineScore {
        name: policy.name(),
        mean,
        std_err,
        n_trials: tasks.len(),
    })
}

/// The grid the RL² authors tuned ε-greedy's ε and UCB1's c over: {0, 0.1, …, 1}.
pub const PAPER_TUNING_GRID: [f64; 11] = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

/// The paper's own baselines, as the RL² authors' code ran them (Duan et al. 2016, Table 1):
/// greedy, ε-greedy and UCB1 with Beta(1, 1) pseudo-counts ([`ArmPrior::UNIFORM`]), ε and c
/// each the best of [`PAPER_TUNING_GRID`] on these very `tasks`.
///
/// Choosing ε and c on the trials that are scored is how the paper tuned them; it flatters
/// the two baselines slightly (a max over 11 noisy means). The scores' names carry the chosen
/// setting and end in `tuned`.
///
/// # Errors
/// [`Error::InvalidConfig`] when `n_pulls` is 0.
pub fn evaluate_paper_baselines(
    tasks: &[BanditTask],
    n_pulls: usize,
    seed: u64,
) -> Result<Vec<BaselineScore>> {
    let best = |make: &dyn Fn(f64) -> Result<Box<dyn BanditPolicy>>| -> Result<BaselineScore> {
        let mut best = evaluate_policy(make(PAPER_TUNING_GRID[0])?.as_mut(), tasks, n_pulls, seed)?;
        for &setting in &PAPER_TUNING_GRID[1..] {
            let score = evaluate_policy(make(setting)?.as_mut(), tasks, n_pulls, seed)?;
            if score.mean > best.mean {
                best = score;
            }
        }
        best.name.push_str(" tuned");
        Ok(best)
    };
    let mut greedy = GreedyPolicy::new(ArmPrior::UNIFORM)?;
    Ok(vec![
        evaluate_policy(&mut greedy, tasks, n_pulls, seed)?,
        best(&|eps| Ok(Box::new(EpsilonGreedyPolicy::new(eps, ArmPrior::UNIFORM)?)))?,
        best(&|c| Ok(Box::new(Ucb1Policy::new(c, ArmPrior::UNIFORM)?)))?,
    ])
}

/// Scores the [`default_baselines`] on the same `n_trials` held-out tasks of `n_arms` arms and
/// `n_pulls` pulls drawn from `seed` (common random numbers across policies).
pub fn evaluate_baselines(
    n_arms: usize,
    n_pulls: usize,
    n_trials: usize,
    seed: u64,
) -> Result<Vec<BaselineScore>> {
    let dist = BanditDistribution::new(n_arms, n_pulls)?;
    if n_trials == 0 {
        return Err(invalid("n_trials", 0, "at least one trial is needed"));
    }
    let tasks = sample_tasks(&dist, n_trials, seed);
    default_baselines()
        .iter_mut()
        .map(|policy| evaluate_policy(policy.as_mut(), &tasks, n_pulls, seed))
        .collect()
}

/// ChaCha stream id of the policies' own random draws in [`evaluate_policy`] (task streams use
/// the ids of [`split_rng`]).
const POLICY_STREAM: u64 = 2;

/// Mean and standard error (sample std / sqrt(n)) of `xs`; the error is 0 below two samples.
fn mean_and_std_err(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    if xs.is_empty() {
        return (0.0, 0.0);
    }
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

pub(crate) fn invalid(
    field: &'static str,
    value: impl std::fmt::Display,
    reason: &'static str,
) -> Error {
    Error::InvalidConfig {
        field,
        value: value.to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_breaks_ties_to_the_lowest_index() {
        assert_eq!(argmax([0.5, 0.7, 0.7, 0.1].into_iter()), 1);
        assert_eq!(argmax([0.0].into_iter()), 0);
    }

    #[test]
    fn mean_and_std_err_of_a_known_sample() {
        let (mean, se) = mean_and_std_err(&[1.0, 2.0, 3.0, 4.0]);
        assert!((mean - 2.5).abs() < 1e-12);
        // sample variance 5/3, se = sqrt(5/3 / 4)
        assert!((se - (5.0_f64 / 12.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn outcomes_depend_only_on_pull_index_and_arm() {
        let probs = [0.5, 0.5, 0.5];
        let mut a = ChaCha8Rng::seed_from_u64(9);
        let mut b = ChaCha8Rng::seed_from_u64(9);
        let forward: Vec<f64> = (0..20)
            .map(|t| outcome(&mut a, &probs, t, (t % 3) as usize))
            .collect();
        let backward: Vec<f64> = (0..20)
            .rev()
            .map(|t| outcome(&mut b, &probs, t, (t % 3) as usize))
            .collect();
        let backward: Vec<f64> = backward.into_iter().rev().collect();
        assert_eq!(forward, backward);
    }

    #[test]
    fn an_update_of_an_unknown_arm_is_ignored() {
        let mut policy = ThompsonPolicy::new();
        policy.reset(2, 5);
        policy.update(7, 1.0);
        assert_eq!(policy.stats.total_pulls, 0);
    }

    #[test]
    fn ucb1_pulls_each_arm_once_first() {
        let mut policy = Ucb1Policy::default();
        policy.reset(4, 10);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let first: Vec<usize> = (0..4)
            .map(|_| {
                let arm = policy.select(&mut rng);
                policy.update(arm, 0.0);
                arm
            })
            .collect();
        assert_eq!(first, vec![0, 1, 2, 3]);
    }
}
