//! `mrl meta-train` and `mrl adapt`: few-shot adaptation by gradient steps (mrl-fewshot).
//!
//! `mrl meta-train --config FILE --out DIR` meta-learns an initialisation with Reptile or
//! first-order MAML (the config is an `mrl train` config plus a `[meta]` table) and writes a
//! run directory `mrl backtest` and `mrl adapt` read; `--resume` continues an interrupted run
//! exactly where it stopped. `mrl adapt --checkpoint DIR --data FILE
//! --steps K --out DIR` adapts a base (from either command) to a new asset with K gradient
//! steps on the first `--bars` bars of FILE only, and writes the adapted policy as a run
//! directory (plus the adapter file when low-rank adapters were trained); with `--online` it
//! then trades the rest of FILE walk-forward while adapting online. With `--class NAME` the
//! base must come from a run with `[classes]` tables: the adaptation runs through that
//! class's meta-learned feature embedding (frozen, or trained with `--embedding adapted`),
//! or, for a class the run did not know (`--features`), through a new zero-padding
//! embedding that always trains; the written policy is the composed one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use mrl::ppo::{CONFIG_FILE, TaskKind, TrainConfig};
use mrl_fewshot::{
    AdaptSetup, CLASSES_FILE, ClassConfig, ClassEmbedding, ClassEmbeddings,
    DEFAULT_ADAPTATION_BARS, EmbeddingTraining, FixedTask, HeldOutTask, InnerConfig, LoraConfig,
    META_FILE, MetaConfig, MetaIterationStats, MetaTrainConfig, OnlineSetup,
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
    /// Continue the run in --out from its last checkpoint, exactly where it stopped (the
    /// config must be the run's; --iterations may extend it).
    #[arg(long)]
    resume: bool,
}

/// Runs `mrl meta-train` with a progress bar.
pub fn run_meta_train(args: MetaTrainArgs) -> anyhow::Result<()> {
    let mut config = super::load_config(&args.config, MetaTrainConfig::load)?;
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
    let summary = if args.resume {
        mrl_fewshot::meta_train_resume(&config, &args.out, progress)
    } else {
        mrl_fewshot::meta_train(&config, &args.out, progress)
    };
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
    /// After adapting, trade the bars after the window walk-forward (greedy) while adapting
    /// online (the run's `[meta.online]`, else its defaults): writes online.json (every
    /// update, and the metrics beside those of the adapted policy left as it is) and
    /// online/checkpoint/ (the policy after the last update, for the bars after the file).
    #[arg(long)]
    online: bool,
    /// Test bars between online updates (default: the run's `[meta.online]`, else 100).
    #[arg(long, requires = "online")]
    online_every: Option<usize>,
    /// The new asset's class: adapt through its feature embedding (the base's run must have
    /// `[classes]` tables; not with --online).
    #[arg(long, conflicts_with = "online")]
    class: Option<String>,
    /// The class's features, comma separated (mrl-features names): for a class the base was
    /// not meta-trained on, whose embedding then starts as zero padding and trains.
    #[arg(long, requires = "class")]
    features: Option<String>,
    /// Whether the class's meta-learned embedding trains too (default: the run's
    /// `[meta.inner] embedding`, else frozen).
    #[arg(long, requires = "class", value_parser = ["frozen", "adapted"])]
    embedding: Option<String>,
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
    /// The asset class adapted through, and whether its embedding trained.
    #[serde(skip_serializing_if = "Option::is_none")]
    class: Option<(String, EmbeddingTraining)>,
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

/// The `[meta]` settings of the base's meta-training run (`meta.toml`), or the defaults for
/// a run of `mrl train`.
fn run_meta(run_dir: &Path) -> anyhow::Result<MetaConfig> {
    let path = run_dir.join(META_FILE);
    if !path.exists() {
        return Ok(MetaConfig::default());
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The inner loop of the base's run (`meta`), with the command line's overrides.
fn inner_config(meta: &MetaConfig, args: &AdaptArgs) -> anyhow::Result<InnerConfig> {
    let mut inner = meta.inner.clone();
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

/// The embedding `--class` asks for and how it trains: the run's meta-learned one (frozen
/// unless `--embedding adapted` or the run's `[meta.inner] embedding` says otherwise), or a
/// zero-padding one over `--features` for a class the run did not know (always trained).
fn class_embedding(
    args: &AdaptArgs,
    run_dir: &Path,
    checkpoint_dir: &Path,
    meta: &MetaConfig,
) -> anyhow::Result<Option<(ClassEmbedding, EmbeddingTraining)>> {
    let Some(name) = &args.class else {
        return Ok(None);
    };
    let path = run_dir.join(CLASSES_FILE);
    anyhow::ensure!(
        path.exists(),
        "--class needs a base meta-trained with [classes] tables; {} has no {CLASSES_FILE}",
        run_dir.display()
    );
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut classes: BTreeMap<String, ClassConfig> =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    if let Some(features) = &args.features {
        let features = features.split(',').map(|f| f.trim().to_owned()).collect();
        classes.insert(
            name.clone(),
            ClassConfig {
                features,
                task: None,
            },
        );
    }
    anyhow::ensure!(
        classes.contains_key(name),
        "class {name} is not one of the base's classes ({}); give its features with --features \
         to train a new class's embedding",
        classes.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    let embeddings = ClassEmbeddings::load(checkpoint_dir, &classes)?;
    let training = match (embeddings.is_fresh(name), args.embedding.as_deref()) {
        (true, _) | (false, Some("adapted")) => EmbeddingTraining::Adapted,
        (false, Some(_)) => EmbeddingTraining::Frozen,
        (false, None) => meta.inner.embedding,
    };
    let embedding = embeddings
        .get(name)
        .context("the class's embedding is missing")?
        .detached()?;
    Ok(Some((embedding, training)))
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
    let meta_config = run_meta(&run_dir)?;
    let inner = inner_config(&meta_config, &args)?;
    let base = super::backtest::load_policy(&args.checkpoint)?;
    let return_scale = mrl_fewshot::return_scale_of(&checkpoint_dir, &train)?;
    let setup = AdaptSetup::from_train(&train, return_scale);
    let series = mrl::data::read_bars(&args.data)?;
    let task = FixedTask::first_bars(&series, args.bars, train.task.trading.clone())
        .with_context(|| format!("adaptation window of {}", args.data.display()))?;
    let class = class_embedding(&args, &run_dir, &checkpoint_dir, &meta_config)?;
    let adapted = match &class {
        Some((embedding, training)) => mrl_fewshot::adapt_class(
            &base,
            embedding,
            *training,
            Arc::new(task),
            &inner,
            &setup,
            args.seed,
        ),
        None => mrl_fewshot::adapt(&base, Arc::new(task), &inner, &setup, args.seed),
    }
    .with_context(|| format!("adapting to {}", args.data.display()))?;
    write_run(&args.out, &train, &adapted.policy)?;
    if let Some(embedding) = &adapted.embedding {
        let mut saved = ClassEmbeddings::default();
        saved.insert(embedding.detached()?);
        saved.save(&out_checkpoint)?;
    }
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
        inner: inner.clone(),
        class: class.as_ref().map(|(e, t)| (e.class().to_owned(), *t)),
        first_rollout_return: adapted.first_return(),
        last_rollout_return: adapted.last_return(),
        seconds: start.elapsed().as_secs_f64(),
        trace: adapted.steps.clone(),
    };
    let json = serde_json::to_vec_pretty(&report)?;
    mrl::agent::write_atomic(&args.out.join("adapt.json"), &json)?;
    if args.online {
        let mut online = meta_config.online.clone();
        if let Some(every) = args.online_every {
            online.every_bars = every;
        }
        let setup = OnlineSetup {
            online,
            inner,
            setup,
            trading: train.task.trading.clone(),
        };
        run_online(&adapted.policy, series.clone(), &train, &setup, &args)?;
    }
    let held_out = (series.len() - args.bars) as f64 / series.len() as f64;
    // With no inner step there is no rollout (adapt.json has null returns): say so rather
    // than print NaN.
    let returns = [report.first_rollout_return, report.last_rollout_return];
    let rollouts = if args.steps == 0 {
        "no inner step ran (--steps 0), so no rollout return: the written policy is unadapted"
            .to_string()
    } else if !returns.iter().all(|r| r.is_finite()) {
        "no inner rollout return was recorded".to_string()
    } else {
        format!(
            "mean trial return of the inner rollouts: {:.3} first, {:.3} last",
            report.first_rollout_return, report.last_rollout_return
        )
    };
    print(format!(
        "adapted {} to the first {} of {} bars of {} with {} steps in {:.2} s{}\n\
         {rollouts}\n\
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
        out_checkpoint.display(),
        args.out.display(),
        args.data.display(),
        (held_out * 100.0).floor() / 100.0
    ));
    Ok(())
}

/// Writes `policy` as a run directory `mrl backtest` reads: `dir/config.toml` and
/// `dir/checkpoint/{model.safetensors, agent.json}`, each atomically; returns the checkpoint
/// directory.
fn write_run(
    dir: &Path,
    train: &TrainConfig,
    policy: &mrl::agent::Policy,
) -> anyhow::Result<PathBuf> {
    let checkpoint = dir.join(mrl::ppo::CHECKPOINT_DIR);
    std::fs::create_dir_all(&checkpoint)
        .with_context(|| format!("creating {}", checkpoint.display()))?;
    mrl::agent::write_atomic(&dir.join(CONFIG_FILE), train.to_toml().as_bytes())?;
    mrl::agent::write_atomic(
        &checkpoint.join("model.safetensors"),
        &policy.to_safetensors()?,
    )?;
    let meta = serde_json::to_vec_pretty(&policy.checkpoint_meta())?;
    mrl::agent::write_atomic(&checkpoint.join("agent.json"), &meta)?;
    Ok(checkpoint)
}

/// What `mrl adapt --online` did (`online.json`).
#[derive(Debug, Serialize)]
struct OnlineReport {
    /// First test bar (the first bar after the adaptation window).
    test_start: usize,
    windows: usize,
    online: mrl_fewshot::OnlineConfig,
    accepted: usize,
    /// The online book's metrics.
    metrics_online: mrl::backtest::Metrics,
    /// The adapted policy's, left as it is, on the same windows.
    metrics_static: mrl::backtest::Metrics,
    updates: Vec<mrl_fewshot::OnlineUpdate>,
    seconds: f64,
}

/// `mrl adapt --online`: trades the bars after the window with online updates from
/// `adapted`, writes online.json and online/ (config.toml, checkpoint/).
fn run_online(
    adapted: &mrl::agent::Policy,
    series: mrl::data::BarSeries,
    train: &TrainConfig,
    setup: &OnlineSetup,
    args: &AdaptArgs,
) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    let walk_forward = mrl::backtest::WalkForwardConfig {
        test_start: mrl::backtest::TestStart::Index(args.bars),
        ..mrl::walk_forward_config(train)
    };
    let task = HeldOutTask {
        name: args.data.display().to_string(),
        market: Arc::new(mrl::env::MarketData::new(series)?),
        oracle: None,
    };
    let run = mrl_fewshot::trade_online(adapted, &task.market, &walk_forward, setup, args.seed)
        .with_context(|| format!("trading {} online", args.data.display()))?;
    let report = OnlineReport {
        test_start: args.bars,
        windows: run.windows.len(),
        online: setup.online.clone(),
        accepted: run.accepted(),
        metrics_online: run.metrics(&task.market, walk_forward.cost_rate),
        metrics_static: mrl_fewshot::evaluate_policy(adapted, &task, &walk_forward)?,
        updates: run.updates.clone(),
        seconds: start.elapsed().as_secs_f64(),
    };
    let checkpoint = write_run(&args.out.join("online"), train, &run.policy)?;
    let json = serde_json::to_vec_pretty(&report)?;
    mrl::agent::write_atomic(&args.out.join("online.json"), &json)?;
    let sharpe = |m: &mrl::backtest::Metrics| m.sharpe.map_or("-".into(), |x| format!("{x:.2}"));
    print(format!(
        "online: {} windows from bar {}, {} of {} updates kept; greedy Sharpe {} online, {} \
         without updates; return {:.2} % online, {:.2} % without\n\
         policy after the last update (for the bars after the file): {}",
        report.windows,
        report.test_start,
        report.accepted,
        report.updates.len(),
        sharpe(&report.metrics_online),
        sharpe(&report.metrics_static),
        report.metrics_online.total_return * 100.0,
        report.metrics_static.total_return * 100.0,
        checkpoint.display()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
seed = 2
n_envs = 2
[agent]
kind = "mlp"
hidden = 8
[task]
kind = "synthetic-ar1"
bars = 120
episodes_per_trial = 1
trading = { max_steps = 20, reward_scale = 100.0 }
[meta]
iterations = 1
meta_batch = 2
[meta.inner]
steps = 1
n_envs = 2
[meta.online]
steps = 1
"#;

    /// A meta-trained run of `config` and a 400-bar synthetic series file in `dir`.
    fn run_and_data(dir: &Path, config: &str) -> (PathBuf, PathBuf) {
        let config = MetaTrainConfig::from_toml_str(config, Path::new("t.toml")).unwrap();
        let run = dir.join("run");
        mrl_fewshot::meta_train(&config, &run, |_| {}).unwrap();
        let series = mrl::data::SyntheticConfig::default()
            .generate_with_rng(400, &mut rand::SeedableRng::seed_from_u64(4))
            .unwrap()
            .series;
        let data = dir.join("NEW_1h.csv");
        mrl::data::write_csv(&series, &data).unwrap();
        (run, data)
    }

    /// One adaptation step on the first 120 bars, seed 0, nothing else set.
    fn args(checkpoint: &Path, data: &Path, out: &Path) -> AdaptArgs {
        AdaptArgs {
            checkpoint: checkpoint.to_path_buf(),
            data: data.to_path_buf(),
            steps: 1,
            out: out.to_path_buf(),
            bars: 120,
            rank: None,
            lr: None,
            n_envs: None,
            seed: 0,
            online: false,
            online_every: None,
            class: None,
            features: None,
            embedding: None,
        }
    }

    #[test]
    fn adapt_online_writes_every_update_and_the_last_policy() {
        let dir = tempfile::tempdir().unwrap();
        let (run, data) = run_and_data(dir.path(), CONFIG);
        let out = dir.path().join("out");
        run_adapt(AdaptArgs {
            online: true,
            online_every: Some(60),
            ..args(&run, &data, &out)
        })
        .unwrap();
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("online.json")).unwrap()).unwrap();
        assert_eq!(report["test_start"], 120);
        // Windows of 20 bars from 120; an update before the windows at 180, 240, 300, 360.
        assert_eq!(report["windows"], 14);
        let bars: Vec<u64> = report["updates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["bar"].as_u64().unwrap())
            .collect();
        assert_eq!(bars, [180, 240, 300, 360]);
        assert_eq!(report["online"]["every_bars"], 60);
        assert!(report["metrics_online"]["total_return"].is_f64());
        let policy = mrl::ppo::load_policy(
            &out.join("online").join(mrl::ppo::CHECKPOINT_DIR),
            &candle_core::Device::Cpu,
        );
        assert!(policy.is_ok(), "the last online policy loads");
        assert!(out.join("online").join(CONFIG_FILE).exists());
    }

    #[test]
    fn adapt_through_a_class_embedding_writes_the_composed_policy() {
        let dir = tempfile::tempdir().unwrap();
        let config =
            format!("{CONFIG}[classes.small]\nfeatures = [\"ret_1\", \"rsi\", \"macd\"]\n");
        let (run, data) = run_and_data(dir.path(), &config);
        let out = dir.path().join("small");
        run_adapt(AdaptArgs {
            class: Some("small".into()),
            ..args(&run, &data, &out)
        })
        .unwrap();
        let checkpoint = out.join(mrl::ppo::CHECKPOINT_DIR);
        let policy = mrl::ppo::load_policy(&checkpoint, &candle_core::Device::Cpu).unwrap();
        let w: Vec<Vec<f32>> = policy.tensors()["body.0.weight"].to_vec2().unwrap();
        let read: Vec<usize> = (0..11)
            .filter(|&c| w.iter().any(|row| row[c] != 0.0))
            .collect();
        assert_eq!(read, [0, 7, 8], "only ret_1, rsi and macd are read");
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("adapt.json")).unwrap()).unwrap();
        assert_eq!(report["class"], serde_json::json!(["small", "frozen"]));
        // Frozen: the embedding written beside the policy is the run's, byte for byte.
        let classes: BTreeMap<String, ClassConfig> =
            toml::from_str(&std::fs::read_to_string(run.join(CLASSES_FILE)).unwrap()).unwrap();
        let saved = ClassEmbeddings::load(&run.join(mrl::ppo::CHECKPOINT_DIR), &classes).unwrap();
        let written = ClassEmbeddings::load(&checkpoint, &classes).unwrap();
        assert_eq!(
            written.to_safetensors().unwrap(),
            saved.to_safetensors().unwrap()
        );

        // A class the run did not know trains a new embedding over its own features.
        let out = dir.path().join("fx");
        run_adapt(AdaptArgs {
            class: Some("fx".into()),
            features: Some("ret_1, ret_5".into()),
            ..args(&run, &data, &out)
        })
        .unwrap();
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("adapt.json")).unwrap()).unwrap();
        assert_eq!(report["class"], serde_json::json!(["fx", "adapted"]));

        // Unknown classes and other features for a known one are named.
        let err = run_adapt(AdaptArgs {
            class: Some("gold".into()),
            ..args(&run, &data, &dir.path().join("gold"))
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "class gold is not one of the base's classes (small); give its features with \
             --features to train a new class's embedding"
        );
        let err = run_adapt(AdaptArgs {
            class: Some("small".into()),
            features: Some("ret_1,rsi".into()),
            ..args(&run, &data, &dir.path().join("other"))
        })
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("class small: features [ret_1, rsi, macd] in the checkpoint, [ret_1, rsi] in the config"),
            "{err}"
        );
        // A base without classes.
        let plain = dir.path().join("plain");
        let (run, data) = run_and_data(&plain, CONFIG);
        let err = run_adapt(AdaptArgs {
            class: Some("small".into()),
            ..args(&run, &data, &plain.join("out"))
        })
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--class needs a base meta-trained with [classes] tables"),
            "{err}"
        );
    }
}
