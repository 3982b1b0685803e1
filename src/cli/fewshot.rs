//! `mrl eval fewshot --config FILE --seeds 1,2,3 --out DIR`: the few-shot benchmark of
//! mrl-fewshot ([`mrl_fewshot::run_benchmark`]) with progress bars, pooled with the two-way
//! (seed × task) bootstrap of [`mrl::backtest::crossed_bootstrap_ci`], written as
//! `fewshot.json`, `fewshot.md`, `fewshot.csv` and a chart (`fewshot.png` / `.svg`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use indicatif::{MultiProgress, ProgressBar};

use super::study::style;
use mrl::ppo::{CONFIG_FILE, TaskKind};
use mrl_fewshot::{
    BenchmarkConfig, BenchmarkProgress, FewshotReport, GivenPolicy, Interval, MetaTrainConfig,
    Method, RowKind,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::print;

/// Arguments of `mrl eval fewshot`.
#[derive(Debug, Args)]
pub struct FewshotArgs {
    /// A meta-training config (an `mrl train` config with a `[meta]` table, see
    /// `configs/fewshot-*.toml`): network, PPO loss, training tasks, inner loop.
    #[arg(long)]
    config: PathBuf,
    /// Seeds, comma separated and distinct (one meta, pretrain and RL² training each).
    #[arg(long, value_delimiter = ',', required = true)]
    seeds: Vec<u64>,
    /// Output directory: fewshot.json, fewshot.md, fewshot.csv, fewshot.png/.svg and the
    /// trained policies under seed-<s>/.
    #[arg(long)]
    out: PathBuf,
    /// Adaptation steps K to report, comma separated.
    #[arg(long, default_value = "0,1,10,100,500")]
    ks: String,
    /// Methods, comma separated: meta, pretrain, scratch, rl2, the online rows
    /// meta_online, pretrain_online (the K-step policy then adapted while it trades, the
    /// config's `[meta.online]`) and meta_embed (meta-learned with the class embeddings of
    /// the config's `[classes.NAME]` tables, adapted through the held-out class's).
    #[arg(long, default_value = "meta,pretrain,scratch,rl2")]
    methods: String,
    /// Data directory of a multi-asset config (held-out assets: the config's split) and of
    /// a `[transfer]` table's assets of another class.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// A meta-trained run (`mrl meta-train`) to use as the meta base for every seed instead
    /// of meta-training in the run.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// An RL² run (`mrl train`) to use for every seed instead of training one.
    #[arg(long)]
    rl2_checkpoint: Option<PathBuf>,
    /// Held-out synthetic markets.
    #[arg(long, default_value_t = 8)]
    tasks: usize,
    /// Bars of the adaptation window at the start of each held-out series.
    #[arg(long, default_value_t = mrl_fewshot::DEFAULT_ADAPTATION_BARS)]
    adaptation_bars: usize,
    /// Bars after the window of a generated held-out market (the walk-forward test).
    #[arg(long, default_value_t = 1000)]
    eval_bars: usize,
    /// Seed of the held-out synthetic markets.
    #[arg(long, default_value_t = 2024)]
    market_seed: u64,
    /// Override the config's meta-iterations.
    #[arg(long)]
    meta_iterations: Option<u64>,
    /// Share of the best agent's final Sharpe for the steps-to-reach column.
    #[arg(long, default_value_t = 0.9)]
    target_fraction: f64,
    /// Resamples of the two-way bootstrap.
    #[arg(long, default_value_t = 2000)]
    resamples: usize,
    /// Coverage of the intervals.
    #[arg(long, default_value_t = 0.95)]
    confidence: f64,
}

/// `--ks 0,1,10`: the numbers, an empty list for an empty string.
fn parse_ks(text: &str) -> anyhow::Result<Vec<usize>> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse()
                .with_context(|| format!("--ks: `{t}` is not a number of steps"))
        })
        .collect()
}

/// `--methods meta,rl2`.
fn parse_methods(text: &str) -> anyhow::Result<Vec<Method>> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| t.parse::<Method>().map_err(anyhow::Error::from))
        .collect()
}

/// A given checkpoint: the policy and its return scale.
fn given(path: &Path, what: &str) -> anyhow::Result<GivenPolicy> {
    let policy = super::backtest::load_policy(path)?;
    let checkpoint = mrl::ppo::resolve_checkpoint(path);
    let train = super::backtest::load_run_config(path)?
        .with_context(|| format!("{what} {}: no config.toml beside it", path.display()))?;
    Ok(GivenPolicy {
        policy,
        return_scale: mrl_fewshot::return_scale_of(&checkpoint, &train)?,
        source: format!("{what} {}", path.display()),
    })
}

/// Runs `mrl eval fewshot`.
pub fn run(args: FewshotArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut config = super::load_config(&args.config, MetaTrainConfig::load)?;
    if let Some(iterations) = args.meta_iterations {
        config.meta.iterations = iterations;
        config.meta.validate()?;
    }
    if let Some(dir) = &args.data_dir {
        let mut used = false;
        if let TaskKind::MultiAsset { data_dir, .. } = &mut config.train.task.kind {
            *data_dir = dir.clone();
            used = true;
        }
        if let Some(transfer) = &mut config.transfer {
            transfer.set_data_dir(dir);
            used = true;
        }
        for class in config.classes.values_mut() {
            if let Some(TaskKind::MultiAsset { data_dir, .. }) = &mut class.task {
                *data_dir = dir.clone();
                used = true;
            }
        }
        anyhow::ensure!(
            used,
            "--data-dir needs a multi-asset config (held-out assets in task.split), a \
             [transfer] table or a multi-asset [classes] task; {} is {} without one",
            args.config.display(),
            config.train.task.kind.name()
        );
    }
    let mut bench = BenchmarkConfig {
        seeds: args.seeds.clone(),
        ks: parse_ks(&args.ks)?,
        methods: parse_methods(&args.methods)?,
        tasks: args.tasks,
        adaptation_bars: args.adaptation_bars,
        eval_bars: args.eval_bars,
        market_seed: args.market_seed,
        target_fraction: args.target_fraction,
        walk_forward: mrl::walk_forward_config(&config.train),
        transfer: config.transfer.clone(),
    };
    bench.validate()?;
    anyhow::ensure!(
        args.resamples > 0 && args.confidence > 0.0 && args.confidence < 1.0,
        "--resamples must be at least 1 and --confidence in (0, 1) (got {} and {})",
        args.resamples,
        args.confidence
    );
    anyhow::ensure!(
        !args.out.join("fewshot.json").exists(),
        "{} holds a benchmark already; choose another --out",
        args.out.display()
    );
    let meta = args
        .checkpoint
        .as_deref()
        .map(|p| given(p, "meta-trained run"))
        .transpose()?;
    let rl2 = args
        .rl2_checkpoint
        .as_deref()
        .map(|p| given(p, "RL² run"))
        .transpose()?;
    let held_out = mrl_fewshot::held_out_tasks(&config.train, &bench)?;
    let dist = Arc::new(mrl::ppo::trading_tasks(
        &config.train.task.kind,
        &config.train.task.trading,
    )?);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    mrl::agent::write_atomic(
        &args.out.join(CONFIG_FILE),
        config.train.to_toml().as_bytes(),
    )?;

    let multi = MultiProgress::new();
    let overall = multi.add(ProgressBar::new(
        (bench.seeds.len() * held_out.len()) as u64,
    ));
    overall.set_style(style(
        "{spinner} [{elapsed_precise}] fewshot [{bar:30}] {pos}/{len} tasks {msg}",
    ));
    let current = multi.add(ProgressBar::new(0));
    current.set_style(style("  {prefix:<16} [{bar:30}] {pos}/{len}"));
    let progress = |event: BenchmarkProgress<'_>| match event {
        BenchmarkProgress::TrainStart { seed, what, total } => {
            current.reset();
            current.set_length(total);
            current.set_prefix(format!("seed {seed} {what}"));
            overall.set_message(format!("training {what} (seed {seed})"));
        }
        BenchmarkProgress::Iteration { iteration, .. } => current.set_position(iteration + 1),
        BenchmarkProgress::Task {
            seed,
            name,
            done,
            total,
        } => {
            current.set_prefix(format!("seed {seed} adapt"));
            current.set_length(total as u64);
            current.set_position(done as u64);
            overall.inc(1);
            overall.set_message(format!("{name} (seed {seed})"));
        }
        _ => {}
    };
    let raw = mrl_fewshot::run_benchmark(
        &config,
        &bench,
        dist,
        &held_out,
        meta.as_ref(),
        rl2.as_ref(),
        &args.out,
        progress,
    );
    current.finish_and_clear();
    overall.finish_and_clear();
    let raw = raw.with_context(|| format!("few-shot benchmark into {}", args.out.display()))?;
    let report = pool(raw, args.resamples, args.confidence, bench.market_seed);
    write_outputs(&report, &args.out)?;
    print(report.to_markdown());
    print(format!(
        "wall time {:.1} s; files: {} (fewshot.json, fewshot.md, fewshot.csv, fewshot.png/.svg)",
        start.elapsed().as_secs_f64(),
        args.out.display()
    ));
    Ok(())
}

/// Pools `raw` with the two-way (seed × task) bootstrap, its draws seeded by `seed`.
pub fn pool(
    raw: mrl_fewshot::BenchmarkRaw,
    resamples: usize,
    confidence: f64,
    seed: u64,
) -> FewshotReport {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let text = format!(
        "mean over (seed, task) pairs, {:.0} % two-way (pigeonhole) bootstrap interval over \
         seeds × tasks, {resamples} resamples",
        confidence * 100.0
    );
    FewshotReport::new(raw, &text, |values| {
        mrl::backtest::crossed_bootstrap_ci(values, resamples, confidence, &mut rng).map(|d| {
            Interval {
                mean: d.mean,
                lo: d.lo,
                hi: d.hi,
            }
        })
    })
}

/// Writes fewshot.json, fewshot.md, fewshot.csv and the chart, each atomically.
fn write_outputs(report: &FewshotReport, out: &Path) -> anyhow::Result<()> {
    let json = serde_json::to_vec_pretty(report)?;
    mrl::agent::write_atomic(&out.join("fewshot.json"), &json)?;
    mrl::agent::write_atomic(&out.join("fewshot.md"), report.to_markdown().as_bytes())?;
    mrl::agent::write_atomic(&out.join("fewshot.csv"), report.to_csv().as_bytes())?;
    #[cfg(feature = "plot")]
    write_chart(report, out)?;
    Ok(())
}

/// Sharpe against K on a log axis (`log10(1 + K)`), one line per method with its interval as
/// a band; RL², buy-and-hold and the oracle as flat lines.
#[cfg(feature = "plot")]
fn write_chart(report: &FewshotReport, out: &Path) -> anyhow::Result<()> {
    use mrl::backtest::{BandLine, Panel};
    let x = |k: usize| (1.0 + k as f64).log10();
    let x_max = x(report.ks().last().copied().unwrap_or(0)).max(1.0);
    let shown = ["rl2", "buy_and_hold", "oracle"];
    let lines = report
        .methods
        .iter()
        .filter(|m| m.kind == RowKind::Adapted || shown.contains(&m.name.as_str()))
        .filter_map(|m| {
            let cells: Vec<_> = m
                .curve
                .iter()
                .filter_map(|c| Some((c.k, c.sharpe?)))
                .collect();
            let (points, band) = if m.kind == RowKind::Adapted {
                (
                    cells.iter().map(|(k, i)| (x(*k), i.mean)).collect(),
                    cells.iter().map(|(k, i)| (x(*k), i.lo, i.hi)).collect(),
                )
            } else {
                let (_, i) = cells.first()?;
                (
                    vec![(0.0, i.mean), (x_max, i.mean)],
                    vec![(0.0, i.lo, i.hi), (x_max, i.lo, i.hi)],
                )
            };
            Some(BandLine {
                name: m.name.clone(),
                points,
                band,
            })
        })
        .collect();
    let panel = Panel {
        title: "greedy Sharpe on held-out tasks after K adaptation steps (band: bootstrap \
                interval)"
            .into(),
        x_desc: "log10(1 + K)".into(),
        y_desc: "Sharpe (annualised)".into(),
        lines,
        integer_x: false,
    };
    mrl::backtest::write_band_figure(
        out,
        "fewshot",
        &format!(
            "Few-shot adaptation ({} seeds × {} tasks)",
            report.settings.benchmark.seeds.len(),
            report.tasks.len()
        ),
        &[panel],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k_lists_and_methods_parse_or_name_the_bad_token() {
        assert_eq!(parse_ks("0, 1,10").unwrap(), vec![0, 1, 10]);
        assert_eq!(parse_ks("").unwrap(), Vec::<usize>::new());
        let err = parse_ks("0,ten").unwrap_err();
        assert_eq!(err.to_string(), "--ks: `ten` is not a number of steps");
        assert_eq!(
            parse_methods("meta,rl2, meta_online").unwrap(),
            vec![Method::Meta, Method::Rl2, Method::MetaOnline]
        );
        let err = parse_methods("meta,maml").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid config: methods = maml (unknown method; expected meta, meta_embed, \
             meta_online, pretrain, pretrain_online, scratch or rl2)"
        );
    }
}
