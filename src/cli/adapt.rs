//! `mrl meta-train` and `mrl adapt`: few-shot adaptation by gradient steps (mrl-fewshot).
//!
//! `mrl meta-train --config FILE --out DIR` meta-learns an initialisation with Reptile or
//! first-order MAML (the config is an `mrl train` config plus a `[meta]` table) and writes a
//! run directory `mrl backtest` and `mrl adapt` read. `mrl adapt --checkpoint DIR --data FILE
//! --steps K --out DIR` adapts a base (from either command) to a new asset with K gradient
//! steps on the first `--bars` bars of FILE only, and writes the adapted policy as a run
//! directory (plus the adapter file when low-rank adapters were trained).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use mrl::ppo::{CONFIG_FILE, TaskKind, TrainConfig};
use mrl_fewshot::{
    AdaptSetup, DEFAULT_ADAPTATION_BARS, FixedTask, InnerConfig, LoraConfig, META_FILE, MetaConfig,
    MetaIterationStats, MetaTrainConfig,
};
use serde::Serialize;

use super::print;

/// Arguments of `mrl meta-train`.
#[derive(Debug, Args)]
pub struct MetaTrainArgs {
    /// An `mrl train` config with a `[meta]` table (see `configs/fewshot-*.toml`).
    #[arg(long)]
    config: PathBuf,
    /// Run directory: config.toml, meta.toml, meta_log.jsonl and checkpoint/ go here.
    #[arg(long)]
    out: PathBuf,
    /// Override the meta-iterations of the config.
    #[arg(long)]
    iterations: Option<u64>,
    /// Override the seed of the config.
    #[arg(long)]
    seed: Option<u64>,
}

/// Runs `mrl meta-train` with a progress bar.
pub fn run_meta_train(args: MetaTrainArgs) -> anyhow::Result<()> {
    let mut config = MetaTrainConfig::load(&args.config)?;
    if let Some(iterations) = args.iterations {
        config.meta.iterations = iterations;
    }
    if let Some(seed) = args.seed {
        config.train.seed = seed;
    }
    config.meta.validate()?;
    let bar = indicatif::ProgressBar::new(config.meta.iterations);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] [{bar:30}] {pos}/{len} it {msg}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    let progress = |stats: &MetaIterationStats| {
        bar.set_position(stats.iteration + 1);
        bar.set_message(format!(
            "return before {:.3} after {:.3} adaptation, step {:.2e}",
            stats.pre_return, stats.post_return, stats.update_norm
        ));
    };
    let summary = mrl_fewshot::meta_train(&config, &args.out, progress);
    bar.finish_and_clear();
    let summary = summary.with_context(|| format!("meta-training into {}", args.out.display()))?;
    print(format!(
        "{} meta-trained {} iterations in {:.1} s\nmean trial return over the last 10%: \
         {:.3} before, {:.3} after {} inner steps\ncheckpoint: {}",
        config.meta.algorithm.as_str(),
        summary.iterations,
        summary.seconds,
        summary.tail_pre_return,
        summary.tail_post_return,
        config.meta.inner.steps,
        summary.checkpoint.display()
    ));
    Ok(())
}

/// Arguments of `mrl adapt`.
#[derive(Debug, Args)]
pub struct AdaptArgs {
    /// A run directory of `mrl train` or `mrl meta-train` (or its checkpoint/ directory):
    /// the base policy, with the run's config.toml beside it.
    #[arg(long)]
    checkpoint: PathBuf,
    /// The new asset's bars (.csv or .parquet); only the first --bars bars are used.
    #[arg(long)]
    data: PathBuf,
    /// Gradient steps K.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Output run directory: config.toml, checkpoint/ (the adapted policy, which
    /// `mrl backtest --checkpoint` loads), adapt.json and, with adapters,
    /// adapter.safetensors + adapter.json.
    #[arg(long)]
    out: PathBuf,
    /// Bars of the adaptation window, from the start of the file (default two weeks of
    /// hourly bars).
    #[arg(long, default_value_t = DEFAULT_ADAPTATION_BARS)]
    bars: usize,
    /// Train low-rank adapters of this rank on the frozen base instead of every weight
    /// (default: the run's `[meta.inner.adapter]`, else none).
    #[arg(long)]
    rank: Option<usize>,
    /// Inner learning rate (default: the run's `[meta.inner]`, else 1e-3).
    #[arg(long)]
    lr: Option<f64>,
    /// Trials per rollout (default: the run's `[meta.inner]`, else 8).
    #[arg(long)]
    n_envs: Option<usize>,
    /// Seed of the episode starts, the sampled actions and the adapters' initialisation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// What `mrl adapt` did (`adapt.json`).
#[derive(Debug, Serialize)]
struct AdaptReport {
    base: PathBuf,
    data: PathBuf,
    bars: usize,
    bars_in_file: usize,
    last_adaptation_timestamp_ms: i64,
    steps: usize,
    seed: u64,
    inner: InnerConfig,
    first_rollout_return: f64,
    last_rollout_return: f64,
    seconds: f64,
    trace: Vec<mrl_fewshot::InnerStep>,
}

/// The run directory and checkpoint directory behind `--checkpoint`.
fn run_and_checkpoint(path: &Path) -> (PathBuf, PathBuf) {
    let checkpoint = mrl::ppo::resolve_checkpoint(path);
    let run = if checkpoint == path {
        path.parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    } else {
        path.to_path_buf()
    };
    (run, checkpoint)
}

/// The inner loop of the base's meta-training run (`meta.toml`), or the default, with the
/// command line's overrides.
fn inner_config(run_dir: &Path, args: &AdaptArgs) -> anyhow::Result<InnerConfig> {
    let path = run_dir.join(META_FILE);
    let mut inner = if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let meta: MetaConfig =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        meta.inner
    } else {
        InnerConfig::default()
    };
    inner.steps = args.steps;
    if let Some(lr) = args.lr {
        inner.lr = lr;
    }
    if let Some(n_envs) = args.n_envs {
        inner.n_envs = n_envs;
    }
    if let Some(rank) = args.rank {
        let previous = inner.adapter.take().unwrap_or_default();
        inner.adapter = Some(LoraConfig { rank, ..previous });
    }
    inner.validate()?;
    Ok(inner)
}

/// Runs `mrl adapt`.
pub fn run_adapt(args: AdaptArgs) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    anyhow::ensure!(
        args.checkpoint.exists(),
        "checkpoint {} does not exist",
        args.checkpoint.display()
    );
    let (run_dir, checkpoint_dir) = run_and_checkpoint(&args.checkpoint);
    let config_path = run_dir.join(CONFIG_FILE);
    let train = TrainConfig::load(&config_path).with_context(|| {
        format!(
            "mrl adapt needs the base run's config.toml (trading settings, PPO loss); \
             reading {}",
            config_path.display()
        )
    })?;
    anyhow::ensure!(
        !matches!(train.task.kind, TaskKind::Bandits { .. }),
        "{} was trained on bandits; mrl adapt adapts trading agents to a bar series",
        args.checkpoint.display()
    );
    let out_checkpoint = args.out.join(mrl::ppo::CHECKPOINT_DIR);
    anyhow::ensure!(
        !out_checkpoint.exists(),
        "{} holds a checkpoint already; choose another --out",
        args.out.display()
    );
    let inner = inner_config(&run_dir, &args)?;
    let base = super::backtest::load_policy(&args.checkpoint)?;
    let return_scale = mrl_fewshot::return_scale_of(&checkpoint_dir, &train)?;
    let setup = AdaptSetup::from_train(&train, return_scale);
    let series = mrl::data::read_bars(&args.data)?;
    let task = FixedTask::first_bars(&series, args.bars, train.task.trading.clone())
        .with_context(|| format!("adaptation window of {}", args.data.display()))?;
    let adapted = mrl_fewshot::adapt(&base, Arc::new(task), &inner, &setup, args.seed)
        .with_context(|| format!("adapting to {}", args.data.display()))?;
    std::fs::create_dir_all(&out_checkpoint)
        .with_context(|| format!("creating {}", out_checkpoint.display()))?;
    mrl::agent::write_atomic(&args.out.join(CONFIG_FILE), train.to_toml().as_bytes())?;
    mrl::agent::write_atomic(
        &out_checkpoint.join("model.safetensors"),
        &adapted.policy.to_safetensors()?,
    )?;
    let meta = serde_json::to_vec_pretty(&adapted.policy.checkpoint_meta())?;
    mrl::agent::write_atomic(&out_checkpoint.join("agent.json"), &meta)?;
    if let Some(adapter) = &adapted.adapter {
        adapter.save(&args.out.join("adapter.safetensors"), &base)?;
    }
    let report = AdaptReport {
        base: args.checkpoint.clone(),
        data: args.data.clone(),
        bars: args.bars,
        bars_in_file: series.len(),
        last_adaptation_timestamp_ms: series.timestamps()[args.bars - 1],
        steps: args.steps,
        seed: args.seed,
        inner,
        first_rollout_return: adapted.first_return(),
        last_rollout_return: adapted.last_return(),
        seconds: start.elapsed().as_secs_f64(),
        trace: adapted.steps.clone(),
    };
    let json = serde_json::to_vec_pretty(&report)?;
    mrl::agent::write_atomic(&args.out.join("adapt.json"), &json)?;
    let held_out = (series.len() - args.bars) as f64 / series.len() as f64;
    print(format!(
        "adapted {} to the first {} of {} bars of {} with {} steps in {:.2} s{}\n\
         mean trial return of the inner rollouts: {:.3} first, {:.3} last\n\
         adapted policy: {}\n\
         walk-forward on the bars after the window: mrl backtest --checkpoint {} --data {} \
         --test-fraction {:.2}",
        args.checkpoint.display(),
        args.bars,
        series.len(),
        args.data.display(),
        args.steps,
        report.seconds,
        if adapted.adapter.is_some() {
            format!(
                " (adapter: {})",
                args.out.join("adapter.safetensors").display()
            )
        } else {
            String::new()
        },
        report.first_rollout_return,
        report.last_rollout_return,
        out_checkpoint.display(),
        args.out.display(),
        args.data.display(),
        (held_out * 100.0).floor() / 100.0
    ));
    Ok(())
}
