//! Evaluation of a trained agent on held-out Bernoulli bandits, beside the classic bandit
//! algorithms on the same tasks and outcomes (common random numbers).

use std::path::{Path, PathBuf};

use candle_core::Device;
use mrl_agent::{Policy, PolicyInputs, RolloutWorkspace};
use mrl_env::{
    BanditDistribution, BanditEnv, BanditTask, BaselineScore, BayesOptimalPolicy, Trial,
    TrialConfig, default_baselines, evaluate_paper_baselines, evaluate_policy, sample_tasks,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{checkpoint_dir, load_policy};
use crate::config::TrainConfig;
use crate::trainer::CONFIG_FILE;
use crate::{Error, Result};

/// Scores on one set of held-out bandit tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BanditEvaluation {
    /// Arms k.
    pub arms: usize,
    /// Pulls n.
    pub pulls: usize,
    /// Tasks (trials) evaluated.
    pub trials: usize,
    /// Seed of the tasks.
    pub seed: u64,
    /// The agent sampling its actions.
    pub agent_sampled: BaselineScore,
    /// The agent taking its most probable action.
    pub agent_greedy: BaselineScore,
    /// Random, greedy, ε-greedy, UCB1 and Thompson sampling on the same tasks, then the
    /// Bayes-optimal policy ([`BayesOptimalPolicy`], the ceiling) when its table is small
    /// enough for `arms` and `pulls`.
    pub baselines: Vec<BaselineScore>,
}

/// The checkpoint directory behind `path`: `path` itself when it holds `agent.json`,
/// otherwise the run directory's checkpoint.
pub fn resolve_checkpoint(path: &Path) -> PathBuf {
    if path.join("agent.json").exists() {
        path.to_path_buf()
    } else {
        checkpoint_dir(path)
    }
}

/// The `(arms, pulls)` a run was trained on, read from `run_dir/config.toml`; `None` when
/// the run's task is not bandits.
///
/// # Errors
/// [`Error::Io`] or [`Error::Toml`] for a missing or malformed config.
pub fn bandit_setting(run_dir: &Path) -> Result<Option<(usize, usize)>> {
    let config = TrainConfig::load(&run_dir.join(CONFIG_FILE))?;
    Ok(match config.task.kind {
        crate::config::TaskKind::Bandits { arms, pulls, .. } => Some((arms, pulls)),
        _ => None,
    })
}

/// Evaluates the agent of `checkpoint` (a run directory or its `checkpoint/`) on `trials`
/// held-out tasks of `arms` arms and `pulls` pulls drawn from `seed`, one episode each,
/// sampled and greedy, beside the textbook baselines of [`mrl_env::evaluate_baselines`], the
/// paper's tuned ones of [`mrl_env::evaluate_paper_baselines`] and the [`BayesOptimalPolicy`]
/// on the same tasks. The Bayes-optimal policy is left out (with an
/// `info` event) when its state space is too large, e.g. for k = 5, n = 100.
///
/// The reward fed back to the policy is scaled as in the run's `config.toml` when it sits
/// next to the checkpoint.
///
/// # Errors
/// [`Error::InvalidConfig`] for a checkpoint whose action count is not `arms` or for
/// `trials` = 0, checkpoint, agent and env errors.
pub fn evaluate_bandits(
    checkpoint: &Path,
    arms: usize,
    pulls: usize,
    trials: usize,
    seed: u64,
) -> Result<BanditEvaluation> {
    if trials == 0 {
        return Err(Error::InvalidConfig {
            field: "trials",
            value: "0".into(),
            reason: "at least one trial is needed",
        });
    }
    let dir = resolve_checkpoint(checkpoint);
    let policy = load_policy(&dir, &Device::Cpu)?;
    if policy.config().n_actions != arms {
        return Err(Error::InvalidConfig {
            field: "arms",
            value: arms.to_string(),
            reason: "differs from the checkpoint's number of actions",
        });
    }
    let feedback = dir
        .parent()
        .map(|run| run.join(CONFIG_FILE))
        .filter(|p| p.exists())
        .map(|p| TrainConfig::load(&p))
        .transpose()?
        .map_or(1.0, |c| c.task.reward_feedback_scale);
    let trial_config = TrialConfig {
        episodes_per_trial: 1,
        reward_feedback_scale: feedback,
    };
    // The bandit env observes nothing, or the elapsed share of pulls when the agent was
    // trained with it (`observe_time`): the checkpoint's input width tells which.
    let observe_time = match policy.config().obs_dim {
        0 => false,
        1 => true,
        other => {
            return Err(Error::InvalidConfig {
                field: "obs_dim",
                value: other.to_string(),
                reason: "a bandit agent observes nothing (0) or the elapsed pulls (1)",
            });
        }
    };
    let dist = BanditDistribution::new(arms, pulls)?.with_time_observation(observe_time);
    // One set of tasks for the agent and every baseline (the tasks of
    // `evaluate_baselines(arms, pulls, trials, seed)`).
    let tasks = sample_tasks(&dist, trials, seed);
    let mut sampled_rng = ChaCha8Rng::seed_from_u64(seed);
    sampled_rng.set_stream(3);
    let agent_sampled = run_agent(
        &policy,
        &dist,
        &tasks,
        &trial_config,
        seed,
        Some(&mut sampled_rng),
    )?;
    let agent_greedy = run_agent(&policy, &dist, &tasks, &trial_config, seed, None)?;
    let mut baselines = default_baselines()
        .iter_mut()
        .map(|baseline| evaluate_policy(baseline.as_mut(), &tasks, pulls, seed))
        .collect::<mrl_env::Result<Vec<_>>>()?;
    baselines.extend(evaluate_paper_baselines(&tasks, pulls, seed)?);
    match BayesOptimalPolicy::new(arms, pulls) {
        Ok(mut policy) => {
            baselines.push(evaluate_policy(&mut policy, &tasks, pulls, seed)?);
        }
        Err(err) => tracing::info!(arms, pulls, %err, "bayes-optimal baseline left out"),
    }
    // Rows named by the policy's kind: `rl2 (greedy)`, `task_inference (sampled)`, …
    let kind = policy.kind().as_str();
    Ok(BanditEvaluation {
        arms,
        pulls,
        trials,
        seed,
        agent_sampled: BaselineScore {
            name: format!("{kind} (sampled)"),
            ..agent_sampled
        },
        agent_greedy: BaselineScore {
            name: format!("{kind} (greedy)"),
            ..agent_greedy
        },
        baselines,
    })
}

/// Runs the policy on the held-out `tasks` (envs as `dist` makes them), all at once as a
/// batch; `rng` samples actions, `None` takes the most probable one.
fn run_agent(
    policy: &Policy,
    dist: &BanditDistribution,
    tasks: &[BanditTask],
    trial_config: &TrialConfig,
    seed: u64,
    mut rng: Option<&mut ChaCha8Rng>,
) -> Result<BaselineScore> {
    let n_trials = tasks.len();
    let pulls = dist.n_pulls();
    let mut envs = Vec::with_capacity(n_trials);
    for task in tasks {
        let env = BanditEnv::new(task.clone(), pulls)?.with_time_observation(dist.observes_time());
        let mut trial = Trial::new(env, trial_config.clone(), ChaCha8Rng::seed_from_u64(seed))?;
        trial.reset()?;
        envs.push(trial);
    }
    let layout = envs[0].layout();
    let (env_obs, n_actions) = (layout.obs_dim, layout.n_actions);
    let obs_dim = policy.config().obs_dim;
    let mut workspace = RolloutWorkspace::new(policy, n_trials)?;
    let mut obs = vec![0.0f32; n_trials * obs_dim];
    let mut prev_actions = vec![None; n_trials];
    let mut prev_rewards = vec![0.0f32; n_trials];
    let mut prev_dones = vec![false; n_trials];
    let mut totals = vec![0.0f64; n_trials];
    for _ in 0..pulls {
        for (b, trial) in envs.iter().enumerate() {
            let row = trial.input();
            obs[b * obs_dim..b * obs_dim + env_obs].copy_from_slice(&row[..env_obs]);
            prev_actions[b] = row[env_obs..env_obs + n_actions]
                .iter()
                .position(|&v| v == 1.0);
            prev_rewards[b] = row[env_obs + n_actions];
            prev_dones[b] = row[env_obs + n_actions + 1] != 0.0;
        }
        let inputs = PolicyInputs {
            obs: &obs,
            prev_actions: &prev_actions,
            prev_rewards: &prev_rewards,
            prev_dones: &prev_dones,
        };
        let step = match rng.as_deref_mut() {
            Some(rng) => workspace.step(&inputs, rng)?,
            None => workspace.step_greedy(&inputs)?,
        };
        let actions = step.actions.to_vec();
        for ((trial, &action), total) in envs.iter_mut().zip(&actions).zip(totals.iter_mut()) {
            *total += trial.step(action)?.reward;
        }
    }
    let n = totals.len() as f64;
    let mean = totals.iter().sum::<f64>() / n;
    let std_err = if totals.len() < 2 {
        0.0
    } else {
        (totals.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) / n).sqrt()
    };
    Ok(BaselineScore {
        name: String::new(),
        mean,
        std_err,
        n_trials,
    })
}
