//! What a task-inference agent believes about a market, beside the truth.
//!
//! A run of `configs/synthetic-ar1-belief.toml` learnt a Gaussian belief about the hidden
//! AR(1) coefficient φ of the market it trades (momentum for φ > 0, mean reversion for
//! φ < 0). This example plays it (greedy actions) on held-out AR(1) markets (the test seed
//! space, drawn as `mrl study` draws its held-out markets), one trial of K episodes each,
//! and draws the belief about φ over the steps of the trial (mean ± 2 sd) beside the true
//! φ, episode boundaries marked (`belief_ar1.png` / `.svg`, feature `plot`). It prints the
//! mean absolute error of the belief mean and the mean belief sd at the end of every
//! episode. With `--backtest` it also runs the walk-forward test of `mrl study` on the same
//! markets (greedy; adaptation episodes before the evaluation window) beside the oracle and
//! buy-and-hold, and prints the Sharpe ratios and the return by episode.
//!
//! ```text
//! mrl train --config configs/synthetic-ar1-belief.toml --out runs/synthetic-ar1-belief
//! cargo run --release --example belief_ar1 -- --checkpoint runs/synthetic-ar1-belief --backtest
//! ```

#![allow(clippy::print_stdout)] // An example is a binary: it prints its results.

use std::path::PathBuf;

use anyhow::{Context, bail};
use candle_core::Device;
use clap::Parser;
use mrl::backtest::Policies;
use mrl::env::{ProcessSource, Split, SyntheticTasks, Trial};
use mrl::ppo::{BeliefTrace, TaskKind, TrainConfig, trace_belief};
use mrl::study::{HeldOutConfig, StudyConfig, held_out_markets};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The belief about φ of a trained task-inference agent on held-out AR(1) markets.
#[derive(Debug, Parser)]
struct Args {
    /// The run directory (`config.toml` and `checkpoint/`).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Held-out markets (the study's default for the README's AR(1) table is 16).
    #[arg(long, default_value_t = 16)]
    markets: usize,
    /// Seed of the held-out market draw (the study's default).
    #[arg(long, default_value_t = 2024)]
    market_seed: u64,
    /// Bars per held-out market.
    #[arg(long, default_value_t = 4000)]
    bars: usize,
    /// Markets drawn in the figure (one panel each, the first ones).
    #[arg(long, default_value_t = 4)]
    panels: usize,
    /// Also backtest the agent on the markets as `mrl study` does.
    #[arg(long)]
    backtest: bool,
    /// Where the figure goes (default: `<checkpoint>/belief`).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("warn").init();
    let args = Args::parse();
    let config = TrainConfig::load(&args.checkpoint.join("config.toml"))?;
    let TaskKind::SyntheticAr1 { family, .. } = &config.task.kind else {
        bail!("the run was not trained on synthetic AR(1) markets");
    };
    let dir = mrl::ppo::resolve_checkpoint(&args.checkpoint);
    let policy = mrl::ppo::load_policy(&dir, &Device::Cpu)
        .with_context(|| format!("loading {}", dir.display()))?;
    let tasks = SyntheticTasks::new(
        ProcessSource::Ar1(family.clone()),
        args.bars,
        config.task.trading.clone(),
    )?;
    // The held-out seeds of `mrl study` (held_out_markets draws them the same way).
    let mut rng = ChaCha8Rng::seed_from_u64(args.market_seed);
    let mut traces = Vec::with_capacity(args.markets);
    for i in 0..args.markets {
        let task = tasks.task(SyntheticTasks::split_seed(Split::Test, &mut rng))?;
        let trial_rng = ChaCha8Rng::seed_from_u64(args.market_seed ^ i as u64);
        let mut trial = Trial::new(task, config.task.trial(), trial_rng)?;
        traces.push(trace_belief(&policy, &mut trial)?);
    }
    print_errors(&traces, config.task.episodes_per_trial);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.checkpoint.join("belief"));
    draw(&out, &traces[..args.panels.min(traces.len())])?;
    if args.backtest {
        backtest(&args, &config, &policy)?;
    }
    Ok(())
}

/// Mean |μ − φ| and mean σ at the last step of every episode, over the markets.
fn print_errors(traces: &[BeliefTrace], episodes: usize) {
    println!(
        "belief about φ at the end of each episode, over {} held-out markets:",
        traces.len()
    );
    println!("episode   mean |μ − φ|   mean σ   mean |φ|");
    for k in 0..episodes {
        let (mut err, mut sd, mut phi, mut n) = (0.0, 0.0, 0.0, 0.0);
        for trace in traces {
            let Some(t) = trace.episode_end(k) else {
                continue;
            };
            let truth = f64::from(trace.truth[0]);
            err += (f64::from(trace.mean[t * trace.latent]) - truth).abs();
            if let Some(lv) = &trace.log_var {
                sd += (0.5 * f64::from(lv[t * trace.latent])).exp();
            }
            phi += truth.abs();
            n += 1.0;
        }
        println!(
            "{:>7}   {:>12.3}   {:>6.3}   {:>8.3}",
            k + 1,
            err / n,
            sd / n,
            phi / n
        );
    }
}

/// One panel per trace: belief mean ± 2 sd, the true φ, a vertical line per episode end.
#[cfg(feature = "plot")]
fn draw(out: &std::path::Path, traces: &[BeliefTrace]) -> anyhow::Result<()> {
    use mrl::backtest::{BandLine, Panel, write_band_figure};
    std::fs::create_dir_all(out)?;
    let panels: Vec<Panel> = traces
        .iter()
        .enumerate()
        .map(|(i, trace)| {
            let sd = |t: usize| {
                trace
                    .log_var
                    .as_ref()
                    .map_or(0.0, |lv| (0.5 * f64::from(lv[t * trace.latent])).exp())
            };
            let mean = |t: usize| f64::from(trace.mean[t * trace.latent]);
            let steps = 0..trace.len();
            let truth = f64::from(trace.truth[0]);
            let mut lines = vec![
                BandLine {
                    name: "belief about φ (mean ± 2 sd)".into(),
                    points: steps.clone().map(|t| (t as f64, mean(t))).collect(),
                    band: steps
                        .clone()
                        .map(|t| (t as f64, mean(t) - 2.0 * sd(t), mean(t) + 2.0 * sd(t)))
                        .collect(),
                },
                BandLine {
                    name: "true φ".into(),
                    points: vec![(0.0, truth), ((trace.len() - 1) as f64, truth)],
                    band: Vec::new(),
                },
            ];
            // Episode boundaries span the panel's y range.
            let (lo, hi) = steps.fold((truth, truth), |(lo, hi), t| {
                (lo.min(mean(t) - 2.0 * sd(t)), hi.max(mean(t) + 2.0 * sd(t)))
            });
            for k in 0.. {
                let Some(end) = trace.episode_end(k) else {
                    break;
                };
                if end + 1 < trace.len() {
                    let x = end as f64 + 0.5;
                    lines.push(BandLine {
                        name: format!("end of episode {}", k + 1),
                        points: vec![(x, lo), (x, hi)],
                        band: Vec::new(),
                    });
                }
            }
            Panel {
                title: format!("held-out market {i}: true φ = {truth:+.2}"),
                x_desc: "step of the trial (bars)".into(),
                y_desc: "φ".into(),
                lines,
                integer_x: false,
            }
        })
        .collect();
    let paths = write_band_figure(
        out,
        "belief_ar1",
        "Task-inference agent: belief about the hidden AR(1) coefficient φ",
        &panels,
    )?;
    for p in paths {
        println!("wrote {}", p.display());
    }
    Ok(())
}

#[cfg(not(feature = "plot"))]
fn draw(_out: &std::path::Path, _traces: &[BeliefTrace]) -> anyhow::Result<()> {
    println!("built without the `plot` feature: no figure");
    Ok(())
}

/// The walk-forward test of `mrl study` on the same held-out markets: greedy actions, the
/// training trial's adaptation episodes before the evaluation window.
fn backtest(args: &Args, config: &TrainConfig, policy: &mrl::agent::Policy) -> anyhow::Result<()> {
    let study = StudyConfig {
        held_out: HeldOutConfig {
            markets: args.markets,
            bars: args.bars,
            market_seed: args.market_seed,
            data_dir: None,
        },
        ..StudyConfig::new(config.clone(), vec![config.seed])
    };
    let held = held_out_markets(&study)?;
    let wf = study.walk_forward(held.test_start);
    let keys = ["rl2", "oracle", "buy_and_hold"];
    let mut sharpe = vec![Vec::new(); keys.len()];
    let mut curves = vec![Vec::new(); keys.len()];
    for m in &held.markets {
        let policies = Policies {
            rl2: policy,
            mlp: None,
            oracle: m.oracle.clone(),
            others: vec![],
        };
        let result = mrl::backtest::backtest_market(&m.market, &policies, &wf)?;
        for (i, key) in keys.iter().enumerate() {
            let report = &result.report.policies[*key];
            sharpe[i].extend(report.metrics.sharpe);
            curves[i].push(report.adaptation_curve.clone());
        }
    }
    println!("\nwalk-forward, greedy, on {}:", held.description);
    println!("policy                      mean Sharpe   return by episode (%, mean over markets)");
    for (i, key) in keys.iter().enumerate() {
        let mean = sharpe[i].iter().sum::<f64>() / sharpe[i].len().max(1) as f64;
        let episodes = curves[i].iter().map(Vec::len).max().unwrap_or(0);
        let by_episode: Vec<String> = (0..episodes)
            .map(|k| {
                let vals: Vec<f64> = curves[i].iter().filter_map(|c| c.get(k).copied()).collect();
                format!(
                    "{:.1}",
                    100.0 * vals.iter().sum::<f64>() / vals.len().max(1) as f64
                )
            })
            .collect();
        let name = if *key == "rl2" {
            "task inference (greedy)"
        } else {
            key
        };
        println!("{name:<26}  {mean:>11.2}   {}", by_episode.join(" → "));
    }
    Ok(())
}
