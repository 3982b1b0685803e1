//! The report of a study ([`StudyReport`], written as `study.json`) and its parts, and the
//! policy keys it is indexed by (each agent greedy and sampled, the baselines) in display
//! order.

use std::collections::BTreeMap;

use mrl_agent::PolicyKind;
use mrl_backtest::{DiffInterval, Spread, WalkForwardConfig};
use mrl_ppo::IterationStats;
use serde::{Deserialize, Serialize};

use super::{AdaptationGain, OtherAgent};

/// Report key suffix of the sampled-action runs of the two agents (`rl2_sampled`,
/// `mlp_sampled`); the greedy runs keep the plain names.
pub const SAMPLED_SUFFIX: &str = "_sampled";

/// The trader-rule baselines of every backtest ([`mrl_backtest::TraderRule`]); the best of
/// them on the pooled Sharpe is compared with RL².
pub const RULES: [&str; 4] = ["ts_momentum", "ma_crossover", "macd", "rsi_reversion"];

/// Headline figures of one policy on one market.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyFigures {
    /// Annualised Sharpe ratio; `None` when undefined (returns that do not vary).
    pub sharpe: Option<f64>,
    /// Annualised Sortino ratio; `None` when undefined.
    pub sortino: Option<f64>,
    /// Compounded return of the test period.
    pub total_return: f64,
    /// Max drawdown, in [−1, 0].
    pub max_drawdown: f64,
    /// Mean return by episode index of the trial (the last one is the evaluation window).
    pub adaptation_curve: Vec<f64>,
}

/// One held-out market of one seed: every policy's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarketResult {
    /// The market.
    pub name: String,
    /// Bars of the test period.
    pub test_bars: usize,
    /// Figures by policy key (`rl2`, `rl2_sampled`, `mlp`, `mlp_sampled`, baselines).
    pub policies: BTreeMap<String, PolicyFigures>,
}

/// One seed's mean figures of a policy over the held-out markets.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SeedFigures {
    /// Markets evaluated.
    pub markets: usize,
    /// Markets where the Sharpe ratio is defined (the mean covers these).
    pub sharpe_markets: usize,
    /// Mean Sharpe ratio over the markets where it is defined; `None` when none.
    pub sharpe: Option<f64>,
    /// Mean total return.
    pub total_return: f64,
    /// Mean max drawdown.
    pub max_drawdown: f64,
}

/// One training iteration's diagnostics (timings left out: they are not reproducible).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnostics {
    /// Iteration (0-based).
    pub iteration: u64,
    /// Mean trial return of the rollout.
    pub mean_trial_return: f64,
    /// Mean return by episode of the trial.
    pub return_by_episode: Vec<f64>,
    /// Explained variance of the value estimates.
    pub explained_variance: f64,
    /// Approximate KL between the rollout policy and the updated one.
    pub approx_kl: f64,
    /// Policy entropy.
    pub entropy: f64,
    /// Share of steps whose probability ratio left the clip range.
    pub clip_fraction: f64,
    /// Clipped surrogate loss.
    pub policy_loss: f64,
    /// Value loss.
    pub value_loss: f64,
}

impl From<&IterationStats> for Diagnostics {
    fn from(s: &IterationStats) -> Self {
        Self {
            iteration: s.iteration,
            mean_trial_return: s.mean_trial_return,
            return_by_episode: s.return_by_episode.clone(),
            explained_variance: s.explained_variance,
            approx_kl: s.approx_kl,
            entropy: s.entropy,
            clip_fraction: s.clip_fraction,
            policy_loss: s.policy_loss,
            value_loss: s.value_loss,
        }
    }
}

/// One training run of a study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingRun {
    /// The run directory, relative to the study's output directory.
    pub run_dir: String,
    /// Iterations completed.
    pub iterations: u64,
    /// Environment steps.
    pub env_steps: u64,
    /// Mean trial return over the last 10 % of the iterations.
    pub tail_mean_trial_return: f64,
    /// Every iteration's diagnostics, from the run's `train_log.jsonl`.
    pub diagnostics: Vec<Diagnostics>,
}

/// Everything about one training seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedResult {
    /// Training seed.
    pub seed: u64,
    /// The two training runs, keyed `rl2` and `mlp`.
    pub training: BTreeMap<String, TrainingRun>,
    /// Every held-out market.
    pub markets: Vec<MarketResult>,
    /// Per policy key, the mean over the markets.
    pub policies: BTreeMap<String, SeedFigures>,
    /// Per policy key, the adaptation curve averaged over the markets.
    pub adaptation: BTreeMap<String, Vec<f64>>,
}

/// A policy's figures pooled over seeds: the spread across seeds of each seed's mean over
/// the markets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PooledPolicy {
    /// Seeds pooled.
    pub seeds: usize,
    /// Mean Sharpe across the seeds where it is defined ([`Spread::n`] says how many).
    pub sharpe: Option<Spread>,
    /// Mean total return across seeds.
    pub total_return: Spread,
    /// Mean max drawdown across seeds.
    pub max_drawdown: Spread,
}

/// One seed's mean paired difference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SeedDiff {
    /// Training seed.
    pub seed: u64,
    /// Markets where both Sharpe ratios are defined.
    pub pairs: usize,
    /// Mean difference over those markets; `None` when there are none.
    pub mean: Option<f64>,
}

/// `sharpe(a) − sharpe(b)` over every (seed, market) pair where both are defined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Policy key of the first policy.
    pub a: String,
    /// Policy key of the second policy.
    pub b: String,
    /// Pairs where both Sharpe ratios are defined.
    pub pairs: usize,
    /// All (seed, market) pairs.
    pub pairs_total: usize,
    /// The mean difference and its two-way bootstrap interval; `None` without a defined
    /// pair.
    pub interval: Option<DiffInterval>,
    /// Per seed.
    pub per_seed: Vec<SeedDiff>,
    /// Seeds whose mean difference is negative (`a` weaker than `b` there).
    pub weaker_seeds: Vec<u64>,
}

/// Mean, min and max across seeds of a curve, point by point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurveBand {
    /// Mean across seeds.
    pub mean: Vec<f64>,
    /// Smallest seed's value.
    pub min: Vec<f64>,
    /// Largest seed's value.
    pub max: Vec<f64>,
}

/// Training diagnostics of one agent pooled over seeds, by iteration (min–max bands).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingBands {
    /// Mean trial return.
    pub mean_trial_return: CurveBand,
    /// Explained variance.
    pub explained_variance: CurveBand,
    /// Approximate KL.
    pub approx_kl: CurveBand,
    /// Entropy.
    pub entropy: CurveBand,
    /// Clip fraction.
    pub clip_fraction: CurveBand,
}

/// The action mode to deploy, by the pooled held-out Sharpe of RL².
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// `greedy` or `sampled`.
    pub mode: String,
    /// Pooled mean Sharpe of RL² with greedy actions.
    pub greedy_sharpe: Option<f64>,
    /// Pooled mean Sharpe of RL² with sampled actions.
    pub sampled_sharpe: Option<f64>,
    /// The line that says so.
    pub line: String,
}

/// The settings a study ran with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudySettings {
    /// Task kind of the config.
    pub task: String,
    /// Training seeds.
    pub seeds: Vec<u64>,
    /// PPO iterations per run.
    pub iterations: u64,
    /// Parallel trials per rollout.
    pub n_envs: usize,
    /// Hidden width of both agents.
    pub hidden: usize,
    /// Episodes per trial.
    pub episodes_per_trial: usize,
    /// The held-out markets, in words.
    pub held_out: String,
    /// Names of the held-out markets.
    pub markets: Vec<String>,
    /// The walk-forward settings (greedy; the sampled runs differ by `mode` and `seed`).
    pub walk_forward: WalkForwardConfig,
    /// Sampled-action runs per evaluation.
    pub sampled_runs: usize,
    /// Bootstrap resamples.
    pub resamples: usize,
    /// Bootstrap coverage.
    pub confidence: f64,
    /// The RL² run's training config as TOML (the MLP's differs by `agent.kind`; `seed`
    /// by seed).
    pub train_config: String,
    /// The training configs (TOML, first seed) of the further agents that train with their
    /// own [`AgentSettings`], by policy key; empty (and left out of `study.json`) when none.
    ///
    /// [`AgentSettings`]: super::AgentSettings
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub own_settings: BTreeMap<String, String>,
}

/// The result of [`run_study`], written as `study.json`.
///
/// [`run_study`]: super::run_study
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyReport {
    /// What ran.
    pub settings: StudySettings,
    /// Every seed.
    pub per_seed: Vec<SeedResult>,
    /// Per policy key, pooled over seeds.
    pub pooled: BTreeMap<String, PooledPolicy>,
    /// The trader rule with the best pooled Sharpe (chosen on the same data, which favours
    /// it).
    pub best_rule: Option<String>,
    /// Paired Sharpe differences: RL² against the MLP, buy-and-hold and the best trader
    /// rule (greedy), the same with sampled actions, and greedy against sampled RL².
    pub comparisons: Vec<Comparison>,
    /// Per policy key, the adaptation curve across seeds.
    pub adaptation: BTreeMap<String, CurveBand>,
    /// Per agent (`rl2`, `mlp`), training diagnostics across seeds.
    pub training: BTreeMap<String, TrainingBands>,
    /// The verdict line.
    pub verdict: String,
    /// Whether RL² adapts within the trial, net of the MLP (greedy); `None` in reports
    /// written before it existed.
    #[serde(default)]
    pub adaptation_gain: Option<AdaptationGain>,
    /// The further agents ([`StudyConfig::others`]) against RL² and the MLP; empty when
    /// none was trained.
    ///
    /// [`StudyConfig::others`]: super::StudyConfig::others
    #[serde(default)]
    pub others: Vec<OtherAgent>,
    /// Which action mode to deploy.
    pub deployment: Deployment,
}

/// Every kind of agent a study can train: RL² and the MLP always, the others on request
/// ([`StudyConfig::others`]).
///
/// [`StudyConfig::others`]: super::StudyConfig::others
pub const AGENT_KINDS: [PolicyKind; 4] = [
    PolicyKind::Rl2,
    PolicyKind::Mlp,
    PolicyKind::Transformer,
    PolicyKind::TaskInference,
];

/// Whether `key` names a trained agent (greedy), not a baseline.
pub fn is_agent_key(key: &str) -> bool {
    AGENT_KINDS.iter().any(|k| k.as_str() == key)
}

/// Policy keys in display order: each agent's greedy then sampled runs, then the baselines
/// of [`mrl_backtest::POLICY_ORDER`], then any other key.
pub fn policy_order<'a>(keys: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    let others = AGENT_KINDS[2..].iter().map(|k| k.as_str());
    let names = mrl_backtest::POLICY_ORDER[..2]
        .iter()
        .copied()
        .chain(others)
        .chain(mrl_backtest::POLICY_ORDER[2..].iter().copied());
    for name in names {
        order.push(name.to_string());
        if is_agent_key(name) {
            order.push(format!("{name}{SAMPLED_SUFFIX}"));
        }
    }
    let keys: Vec<&String> = keys.into_iter().collect();
    let mut out: Vec<String> = order.into_iter().filter(|k| keys.contains(&k)).collect();
    for k in keys {
        if !out.contains(k) {
            out.push(k.clone());
        }
    }
    out
}

/// A policy key as a table label: `rl2 (greedy)`, `mlp (sampled)`, or the key.
pub fn policy_label(key: &str) -> String {
    match key.strip_suffix(SAMPLED_SUFFIX) {
        Some(agent) => format!("{agent} (sampled)"),
        None if is_agent_key(key) => format!("{key} (greedy)"),
        None => key.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_order_puts_sampled_runs_beside_their_greedy_ones() {
        let keys: Vec<String> = ["macd", "rl2_sampled", "mlp", "rl2", "buy_and_hold", "zeta"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            policy_order(&keys),
            ["rl2", "rl2_sampled", "mlp", "buy_and_hold", "macd", "zeta"]
        );
        assert_eq!(policy_label("rl2"), "rl2 (greedy)");
        assert_eq!(policy_label("mlp_sampled"), "mlp (sampled)");
        assert_eq!(policy_label("macd"), "macd");
    }
}
