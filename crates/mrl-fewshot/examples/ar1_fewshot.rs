//! The synthetic sanity task of few-shot adaptation: hidden-coefficient AR(1) markets, where
//! the best action follows the last return when φ > 0 and opposes it when φ < 0, so a
//! memory-less policy can only do well on a new market by finding the sign of its φ.
//!
//! Three initialisations of the same MLP, adapted with K ∈ {0, 1, 10, 100} PPO steps
//! (full weights, Adam) on held-out markets, each evaluated on fresh episodes of its market:
//!
//! - `reptile`: meta-learned with Reptile on the training split;
//! - `pooled`: PPO on the pooled training markets with as many env steps as Reptile used
//!   (the pretrain-then-fine-tune baseline, Mandi et al. 2022);
//! - `scratch`: a fresh random initialisation.
//!
//! The oracle (knows φ, mrl-env's `Ar1Oracle`) is the ceiling; the table shows the mean
//! episode return (percent of equity) with a 95 % interval over markets × seeds and the
//! share of the oracle's edge.
//!
//! `cargo run --release -p mrl-fewshot --example ar1_fewshot -- --seeds 3`

#![allow(clippy::print_stdout)] // An example is a binary: it prints its results.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use mrl_agent::{Policy, PolicyKind};
use mrl_env::{
    Ar1Family, Ar1Oracle, Env, ProcessSource, Split, SyntheticTasks, TaskEnv, TradingConfig,
};
use mrl_fewshot::{
    AdaptSetup, FixedTask, InnerConfig, MetaAlgorithm, MetaConfig, MetaLearner, MetaTrainConfig,
    TaskRollouts, adapt,
};
use mrl_ppo::{AgentSection, NormalizeConfig, PpoConfig, TaskKind, TaskSection, TrainConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Parser)]
struct Args {
    /// Seeds (meta-training, pooled training, held-out markets).
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// Reptile meta-iterations.
    #[arg(long, default_value_t = 60)]
    meta_iterations: u64,
    /// Held-out markets per seed.
    #[arg(long, default_value_t = 8)]
    test_tasks: usize,
    /// Adaptation steps to compare, comma-separated.
    #[arg(long, default_value = "0,1,10,100")]
    ks: String,
    /// Hidden width of the MLP.
    #[arg(long, default_value_t = 32)]
    hidden: usize,
    /// Trials per evaluation rollout.
    #[arg(long, default_value_t = 32)]
    eval_trials: usize,
}

const MAX_STEPS: usize = 100;

fn train_config(seed: u64, hidden: usize) -> TrainConfig {
    TrainConfig {
        seed,
        n_envs: 16,
        agent: AgentSection {
            kind: PolicyKind::Mlp,
            hidden,
            ..Default::default()
        },
        ppo: PpoConfig {
            epochs: 4,
            minibatch_trials: 8,
            ..Default::default()
        },
        task: TaskSection {
            kind: TaskKind::SyntheticAr1 {
                bars: 400,
                family: Ar1Family::default(),
            },
            episodes_per_trial: 1,
            reward_feedback_scale: 1.0,
            trading: trading(),
        },
        normalize: NormalizeConfig {
            inputs: mrl_ppo::NormMode::Fixed,
            returns: true,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn trading() -> TradingConfig {
    TradingConfig {
        max_steps: MAX_STEPS,
        cost_rate: 0.0005,
        reward_scale: 100.0,
        ..Default::default()
    }
}

/// Mean episode return of the AR(1) oracle on `task`, over `episodes` random starts.
fn oracle_return(task: &FixedTask<TaskEnv>, episodes: usize, seed: u64) -> anyhow::Result<f64> {
    let mut env = task.env().clone();
    let oracle = Ar1Oracle::for_task(&env).context("an AR(1) task")?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut total = 0.0;
    for _ in 0..episodes {
        env.reset(&mut rng)?;
        loop {
            let action = oracle.act(env.trading()).index();
            let step = env.step(action)?;
            total += step.reward;
            if step.done() {
                break;
            }
        }
    }
    Ok(total / episodes as f64)
}

fn mean_ci(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, 1.96 * (var / n).sqrt())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let ks: Vec<usize> = args
        .ks
        .split(',')
        .map(|k| k.trim().parse().context("--ks: comma-separated integers"))
        .collect::<anyhow::Result<_>>()?;
    let names = ["reptile", "pooled", "scratch"];
    // results[init][k] = per (seed, task) mean episode return; oracle per (seed, task).
    let mut results = vec![vec![Vec::new(); ks.len()]; names.len()];
    let mut oracle = Vec::new();
    let inner_meta = InnerConfig {
        steps: 10,
        n_envs: 8,
        lr: 3e-3,
        ..Default::default()
    };
    for seed in 0..args.seeds {
        let train = train_config(seed, args.hidden);
        let meta = MetaConfig {
            algorithm: MetaAlgorithm::Reptile,
            iterations: args.meta_iterations,
            meta_batch: 8,
            outer_lr: Some(0.5),
            inner: inner_meta.clone(),
            ..Default::default()
        };
        let dist = Arc::new(SyntheticTasks::new(
            ProcessSource::Ar1(Ar1Family::default()),
            400,
            trading(),
        )?);
        let config = MetaTrainConfig {
            train: train.clone(),
            meta: meta.clone(),
            transfer: None,
            classes: Default::default(),
        };
        let mut learner = MetaLearner::new(config, dist.clone())?;
        for it in 0..meta.iterations {
            let stats = learner.step()?;
            if it % 20 == 19 {
                println!(
                    "seed {seed} reptile it {}: before {:.3} after {:.3}",
                    it + 1,
                    stats.pre_return,
                    stats.post_return
                );
            }
        }
        let setup = learner.setup().clone();
        let reptile = mrl_fewshot::detached_copy(learner.policy())?;
        // Equal data: Reptile's inner rollouts, all of them, in PPO iterations of n_envs trials.
        let env_steps = meta.iterations as usize
            * meta.meta_batch
            * inner_meta.steps
            * inner_meta.n_envs
            * MAX_STEPS;
        let pooled_iterations = (env_steps / (train.n_envs * MAX_STEPS)).max(1) as u64;
        let dir = tempfile::tempdir()?;
        let pooled_config = TrainConfig {
            iterations: pooled_iterations,
            checkpoint_every: pooled_iterations,
            ..train.clone()
        };
        mrl_ppo::train_on(&pooled_config, dist.clone(), dir.path(), false, |_| {})?;
        let pooled =
            mrl_ppo::load_policy(&dir.path().join("checkpoint"), &candle_core::Device::Cpu)?;
        let mut scratch = Policy::new(reptile.config(), &candle_core::Device::Cpu, 1000 + seed)?;
        scratch.set_input_norm(reptile.config().input_norm.clone())?;
        let pooled_setup = AdaptSetup {
            return_scale: setup.return_scale,
            ..setup.clone()
        };
        println!(
            "seed {seed}: {env_steps} env-steps for each of reptile and pooled ({pooled_iterations} PPO iterations)"
        );
        let mut task_rng = ChaCha8Rng::seed_from_u64(50_000 + seed);
        for _ in 0..args.test_tasks {
            let task = Arc::new(FixedTask::sample(
                dist.as_ref(),
                Split::Test,
                task_rng.next_u64(),
            )?);
            let eval_seed = task_rng.next_u64();
            oracle.push(oracle_return(&task, 200, eval_seed)?);
            for (i, init) in [&reptile, &pooled, &scratch].into_iter().enumerate() {
                for (j, &k) in ks.iter().enumerate() {
                    let inner = InnerConfig {
                        steps: k,
                        ..inner_meta.clone()
                    };
                    let adapted = adapt(init, task.clone(), &inner, &pooled_setup, eval_seed)?;
                    let mut eval = TaskRollouts::new(
                        task.clone(),
                        &adapted.policy,
                        args.eval_trials,
                        setup.trial.clone(),
                        eval_seed ^ 1,
                        eval_seed ^ 2,
                    )?;
                    let (stats, _) = eval.collect(&adapted.policy, &setup)?;
                    results[i][j].push(stats.mean_trial_return);
                }
            }
        }
    }
    let (oracle_mean, oracle_ci) = mean_ci(&oracle);
    println!(
        "\nheld-out AR(1) markets: {} seeds x {} markets, episodes of {MAX_STEPS} bars, \
         mean episode return in % (95% CI); oracle {oracle_mean:.2} ± {oracle_ci:.2}",
        args.seeds, args.test_tasks
    );
    let header: Vec<String> = ks
        .iter()
        .map(|k| format!("{:>22}", format!("K = {k}")))
        .collect();
    println!("{:<8} {}", "init", header.join(""));
    for (name, row) in names.iter().zip(&results) {
        let cells: Vec<String> = row
            .iter()
            .map(|v| {
                let (m, ci) = mean_ci(v);
                format!(
                    "{:>22}",
                    format!("{m:.2} ± {ci:.2} ({:.0}%)", 100.0 * m / oracle_mean)
                )
            })
            .collect();
        println!("{name:<8} {}", cells.join(""));
    }
    Ok(())
}
