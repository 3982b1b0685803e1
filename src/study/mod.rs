//! The comparison study behind `mrl study`: the RL² agent and the MLP baseline trained the
//! same way over several seeds, both backtested walk-forward on the same held-out markets
//! with greedy and sampled actions beside every baseline, pooled across seeds with
//! two-way bootstrap intervals of the Sharpe differences, and written as JSON, CSV,
//! Markdown and charts.
//!
//! ```text
//! for each seed s:   train rl2 (seed s) ─┐  same config but agent.kind
//!                    train mlp (seed s) ─┤
//!                                        ▼
//!   held-out markets (the same for every seed) × {greedy, sampled}: walk-forward backtest
//!   with buy-and-hold, flat, random, the trader rules (and the AR(1) oracle)
//! pool: per policy, mean ± std across seeds of each seed's mean over the markets;
//!       paired Sharpe differences over (seed, market) pairs with a two-way bootstrap CI;
//!       adaptation curve and training diagnostics with a min–max band across seeds
//! ```
//!
//! [`run_study`] does it all; the pieces ([`held_out_markets`], [`crossed_bootstrap_ci`],
//! [`StudyReport::to_markdown`], …) are public for examples and tests.

mod analysis;
mod config;
mod markets;
mod output;
mod report;

pub use analysis::{
    AdaptationGain, OtherAgent, adaptation_gain, compare, curve_band, deployment, pool, verdict,
};
pub use config::{AgentSettings, HeldOutConfig, StudyConfig};
pub use markets::{HeldOutMarket, HeldOutSet, held_out_markets};
pub use mrl_backtest::{DiffInterval, crossed_bootstrap_ci};
pub use output::seeds_phrase;
pub use report::{
    AGENT_KINDS, Comparison, CurveBand, Deployment, Diagnostics, MarketResult, PolicyFigures,
    PooledPolicy, RULES, SAMPLED_SUFFIX, SeedDiff, SeedFigures, SeedResult, StudyReport,
    StudySettings, TrainingBands, TrainingRun, is_agent_key, policy_label, policy_order,
};

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use mrl_agent::{Policy, PolicyKind};
use mrl_backtest::mean_defined;
use mrl_backtest::{ActionMode, Policies, WalkForwardConfig};
use mrl_ppo::IterationStats;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use analysis::{figures_of, seed_means};
use output::{write_outputs, write_seed_equity};

/// Errors of a study.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// No seed was given.
    NoSeeds,
    /// A seed was given twice (its runs would be the same).
    DuplicateSeed {
        /// The repeated seed.
        seed: u64,
    },
    /// A study setting is out of its domain.
    InvalidSetting {
        /// The setting.
        field: &'static str,
        /// Its value.
        value: String,
        /// What is expected.
        reason: &'static str,
    },
    /// The config's task kind has no held-out markets a study can backtest on.
    UnsupportedTask {
        /// The task kind.
        kind: &'static str,
        /// Why, and what to use instead.
        reason: &'static str,
    },
    /// An explicit data directory contradicts `MRL_DATA_DIR`, which training would read.
    DataDirConflict {
        /// The directory given to the study.
        given: PathBuf,
        /// The environment's directory.
        env: PathBuf,
    },
    /// The training config is invalid, or training failed.
    Train {
        /// Training seed.
        seed: u64,
        /// `rl2` or `mlp`.
        agent: &'static str,
        /// The trainer's error.
        source: Box<mrl_ppo::Error>,
    },
    /// An agent's own settings ([`AgentSettings`]) do not fit the study.
    AgentSettings {
        /// The agent (`transformer`, `task_inference`).
        agent: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A line of a run's `train_log.jsonl` could not be read.
    TrainLog {
        /// The log file.
        path: PathBuf,
        /// 1-based line number (0: the file itself).
        line: usize,
        /// What went wrong.
        reason: String,
    },
    /// A held-out market could not be read or built.
    Market {
        /// The market (file or generated name).
        name: String,
        /// The cause, as text (data or env error).
        reason: String,
    },
    /// A walk-forward backtest failed.
    Backtest {
        /// Training seed.
        seed: u64,
        /// The held-out market.
        market: String,
        /// The backtester's error.
        source: Box<mrl_backtest::Error>,
    },
    /// Writing an output file failed.
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The cause, as text.
        reason: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSeeds => f.write_str("no seeds: give at least one training seed"),
            Self::DuplicateSeed { seed } => {
                write!(f, "seed {seed} is given twice: every seed must be distinct")
            }
            Self::InvalidSetting {
                field,
                value,
                reason,
            } => write!(f, "invalid study setting {field} = {value}: {reason}"),
            Self::UnsupportedTask { kind, reason } => write!(
                f,
                "a study backtests trading agents on held-out markets; task kind `{kind}` is \
                 not supported: {reason}"
            ),
            Self::DataDirConflict { given, env } => write!(
                f,
                "data directory {} contradicts MRL_DATA_DIR={}, which training reads; unset \
                 one",
                given.display(),
                env.display()
            ),
            Self::Train {
                seed,
                agent,
                source,
            } => write!(f, "training {agent} with seed {seed}: {source}"),
            Self::AgentSettings { agent, reason } => {
                write!(f, "the own settings of {agent}: {reason}")
            }
            Self::TrainLog { path, line, reason } => {
                write!(f, "{} line {line}: {reason}", path.display())
            }
            Self::Market { name, reason } => write!(f, "held-out market {name}: {reason}"),
            Self::Backtest {
                seed,
                market,
                source,
            } => write!(f, "backtest of seed {seed} on {market}: {source}"),
            Self::Write { path, reason } => write!(f, "writing {}: {reason}", path.display()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Train { source, .. } => Some(source.as_ref()),
            Self::Backtest { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

/// Result with the study's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Progress of [`run_study`], for progress bars.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Progress<'a> {
    /// The held-out markets are ready.
    Markets {
        /// How many.
        count: usize,
    },
    /// Training of one agent starts (or resumes).
    TrainStart {
        /// Training seed.
        seed: u64,
        /// The agent.
        agent: PolicyKind,
        /// Iterations in total.
        iterations: u64,
    },
    /// One training iteration finished.
    Iteration {
        /// Training seed.
        seed: u64,
        /// The agent.
        agent: PolicyKind,
        /// Its statistics.
        stats: &'a IterationStats,
    },
    /// Training of one agent finished (or was already finished).
    TrainDone {
        /// Training seed.
        seed: u64,
        /// The agent.
        agent: PolicyKind,
    },
    /// One backtest (a market in one action mode) finished.
    Backtest {
        /// Training seed.
        seed: u64,
        /// The market.
        market: &'a str,
        /// Backtests of this seed done.
        done: usize,
        /// Backtests of this seed in total (markets × 2 modes).
        total: usize,
    },
    /// Every run of one seed is done.
    SeedDone {
        /// Training seed.
        seed: u64,
    },
}

/// Reads a run's `train_log.jsonl`.
///
/// # Errors
/// [`Error::TrainLog`] naming the file and line.
pub fn read_train_log(path: &Path) -> Result<Vec<IterationStats>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::TrainLog {
        path: path.to_path_buf(),
        line: 0,
        reason: e.to_string(),
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| Error::TrainLog {
                path: path.to_path_buf(),
                line: i + 1,
                reason: e.to_string(),
            })
        })
        .collect()
}

/// Mean trial return over the last 10 % of `diagnostics` (at least one); NaN when empty.
fn tail_mean(diagnostics: &[Diagnostics]) -> f64 {
    let tail = diagnostics.len().div_ceil(10).max(1).min(diagnostics.len());
    let last = &diagnostics[diagnostics.len() - tail..];
    mean_defined(last.iter().map(|d| Some(d.mean_trial_return))).unwrap_or(f64::NAN)
}

/// Trains one agent of one seed into `out_dir/seed-<seed>/<agent>` and reads its log.
fn train_agent(
    config: &StudyConfig,
    out_dir: &Path,
    seed: u64,
    kind: PolicyKind,
    progress: &mut impl FnMut(Progress<'_>),
) -> Result<(TrainingRun, Policy)> {
    let train = config.train_config(seed, kind);
    let rel = format!("seed-{seed}/{}", kind.as_str());
    let run_dir = out_dir.join(&rel);
    let agent = kind.as_str();
    let err = |source: mrl_ppo::Error| Error::Train {
        seed,
        agent,
        source: Box::new(source),
    };
    let resume = config.resume && mrl_ppo::checkpoint_dir(&run_dir).exists();
    progress(Progress::TrainStart {
        seed,
        agent: kind,
        iterations: train.iterations,
    });
    let _span = tracing::info_span!("study_train", seed, agent).entered();
    let summary = mrl_ppo::train(&train, &run_dir, resume, |stats| {
        progress(Progress::Iteration {
            seed,
            agent: kind,
            stats,
        });
    })
    .map_err(err)?;
    progress(Progress::TrainDone { seed, agent: kind });
    let diagnostics: Vec<Diagnostics> = read_train_log(&run_dir.join(mrl_ppo::LOG_FILE))?
        .iter()
        .map(Diagnostics::from)
        .collect();
    let policy =
        mrl_ppo::load_policy(&summary.checkpoint, &candle_core::Device::Cpu).map_err(err)?;
    let run = TrainingRun {
        run_dir: rel,
        iterations: summary.iterations,
        env_steps: summary.env_steps,
        tail_mean_trial_return: tail_mean(&diagnostics),
        diagnostics,
    };
    Ok((run, policy))
}

/// Runs the whole study into `out_dir`: for every seed trains both agents into
/// `seed-<seed>/{rl2,mlp}/`, backtests them on the held-out markets greedy and sampled,
/// then pools and writes `study.json`, `per_seed.csv`, `pooled.csv`, `comparisons.csv`,
/// `study.md`, `seed-<seed>/equity.csv` (the first market, greedy) and, with the `plot`
/// feature, the charts `adaptation`, `training` and `equity-seed-<seed>` (PNG and SVG).
/// `progress` sees every step. The same config gives the same `study.json`, byte for byte.
///
/// # Errors
/// As [`StudyConfig::validate`] and [`held_out_markets`]; [`Error::Train`],
/// [`Error::TrainLog`], [`Error::Backtest`], [`Error::Write`].
pub fn run_study(
    config: &StudyConfig,
    out_dir: &Path,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<StudyReport> {
    config.validate()?;
    let held = held_out_markets(config)?;
    progress(Progress::Markets {
        count: held.markets.len(),
    });
    let wf = config.walk_forward(held.test_start);
    let mut per_seed = Vec::with_capacity(config.seeds.len());
    for &seed in &config.seeds {
        let (rl2_run, rl2) = train_agent(config, out_dir, seed, PolicyKind::Rl2, &mut progress)?;
        let (mlp_run, mlp) = train_agent(config, out_dir, seed, PolicyKind::Mlp, &mut progress)?;
        let mut training = BTreeMap::from([("rl2".into(), rl2_run), ("mlp".into(), mlp_run)]);
        let mut others = Vec::with_capacity(config.others.len());
        for &kind in &config.others {
            let (run, policy) = train_agent(config, out_dir, seed, kind, &mut progress)?;
            training.insert(kind.as_str().into(), run);
            others.push((kind.as_str(), policy));
        }
        let total = 2 * held.markets.len();
        let mut markets = Vec::with_capacity(held.markets.len());
        for (i, m) in held.markets.iter().enumerate() {
            let policies = Policies {
                rl2: &rl2,
                mlp: Some(&mlp),
                oracle: m.oracle.clone(),
                others: others.iter().map(|(k, p)| (*k, p)).collect(),
            };
            let run = |mode| {
                let wf = WalkForwardConfig {
                    mode,
                    seed,
                    ..wf.clone()
                };
                mrl_backtest::backtest_market(&m.market, &policies, &wf).map_err(|source| {
                    Error::Backtest {
                        seed,
                        market: m.name.clone(),
                        source: Box::new(source),
                    }
                })
            };
            let greedy = run(ActionMode::Greedy)?;
            progress(Progress::Backtest {
                seed,
                market: &m.name,
                done: 2 * i + 1,
                total,
            });
            let sampled = run(ActionMode::Sampled {
                seeds: config.sampled_runs,
            })?;
            progress(Progress::Backtest {
                seed,
                market: &m.name,
                done: 2 * i + 2,
                total,
            });
            if i == 0 {
                write_seed_equity(out_dir, seed, &m.name, &greedy)?;
            }
            let mut policies = figures_of(&greedy.report, "", false);
            policies.extend(figures_of(&sampled.report, SAMPLED_SUFFIX, true));
            markets.push(MarketResult {
                name: m.name.clone(),
                test_bars: greedy.windows.iter().map(|w| w.eval.len()).sum(),
                policies,
            });
        }
        let (policies, adaptation) = seed_means(&markets);
        per_seed.push(SeedResult {
            seed,
            training,
            markets,
            policies,
            adaptation,
        });
        progress(Progress::SeedDone { seed });
        tracing::info!(seed, "study seed done");
    }
    let report = assemble(config, &held, &wf, per_seed);
    write_outputs(&report, out_dir)?;
    Ok(report)
}

/// Pools the seeds into the report.
fn assemble(
    config: &StudyConfig,
    held: &HeldOutSet,
    wf: &WalkForwardConfig,
    per_seed: Vec<SeedResult>,
) -> StudyReport {
    let pooled = pool(&per_seed);
    let best_rule = RULES
        .iter()
        .filter_map(|r| Some((*r, pooled.get(*r)?.sharpe?.mean)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(r, _)| r.to_string());
    // One generator for every interval, seeded from the first training seed.
    let mut rng = ChaCha8Rng::seed_from_u64(config.seeds.first().copied().unwrap_or(0));
    rng.set_stream(0x5354_5544); // "STUD"
    let mut cmp = |a: &str, b: &str| {
        compare(
            &per_seed,
            a,
            b,
            config.resamples,
            config.confidence,
            &mut rng,
        )
    };
    let sampled = |k: &str| format!("{k}{SAMPLED_SUFFIX}");
    let mut comparisons = vec![cmp("rl2", "mlp"), cmp("rl2", "buy_and_hold")];
    if let Some(rule) = &best_rule {
        comparisons.push(cmp("rl2", rule));
    }
    let headline = comparisons.len();
    comparisons.push(cmp(&sampled("rl2"), &sampled("mlp")));
    comparisons.push(cmp(&sampled("rl2"), "buy_and_hold"));
    let modes = cmp("rl2", &sampled("rl2"));
    let verdict_line = verdict(&comparisons[..headline].iter().collect::<Vec<_>>());
    let deployment = deployment(&pooled, &modes);
    comparisons.push(modes);
    let gain = adaptation_gain(
        &per_seed,
        "rl2",
        "mlp",
        config.resamples,
        config.confidence,
        &mut rng,
    );
    let others = config
        .others
        .iter()
        .map(|kind| {
            let key = kind.as_str();
            let against_rl2 = compare(
                &per_seed,
                key,
                "rl2",
                config.resamples,
                config.confidence,
                &mut rng,
            );
            let against_mlp = compare(
                &per_seed,
                key,
                "mlp",
                config.resamples,
                config.confidence,
                &mut rng,
            );
            let gain = adaptation_gain(
                &per_seed,
                key,
                "mlp",
                config.resamples,
                config.confidence,
                &mut rng,
            );
            OtherAgent::new(key, against_rl2, against_mlp, gain)
        })
        .collect();

    let mut keys: Vec<&String> = per_seed.iter().flat_map(|s| s.adaptation.keys()).collect();
    keys.sort();
    keys.dedup();
    let adaptation = keys
        .into_iter()
        .filter_map(|k| {
            let rows: Vec<Vec<f64>> = per_seed
                .iter()
                .filter_map(|s| s.adaptation.get(k).cloned())
                .collect();
            Some((k.clone(), curve_band(&rows)?))
        })
        .collect();
    let training = AGENT_KINDS
        .iter()
        .map(|k| k.as_str())
        .filter_map(|agent| {
            let runs: Vec<&Vec<Diagnostics>> = per_seed
                .iter()
                .filter_map(|s| s.training.get(agent).map(|r| &r.diagnostics))
                .collect();
            let band = |f: fn(&Diagnostics) -> f64| {
                curve_band(
                    &runs
                        .iter()
                        .map(|d| d.iter().map(f).collect())
                        .collect::<Vec<_>>(),
                )
            };
            Some((
                agent.to_string(),
                TrainingBands {
                    mean_trial_return: band(|d| d.mean_trial_return)?,
                    explained_variance: band(|d| d.explained_variance)?,
                    approx_kl: band(|d| d.approx_kl)?,
                    entropy: band(|d| d.entropy)?,
                    clip_fraction: band(|d| d.clip_fraction)?,
                },
            ))
        })
        .collect();
    let base = config.train_config(config.seeds.first().copied().unwrap_or(0), PolicyKind::Rl2);
    let task = base.task.kind.name();
    let settings = StudySettings {
        task: task.into(),
        seeds: config.seeds.clone(),
        iterations: base.iterations,
        n_envs: base.n_envs,
        hidden: base.agent.hidden,
        episodes_per_trial: base.task.episodes_per_trial,
        held_out: held.description.clone(),
        markets: held.markets.iter().map(|m| m.name.clone()).collect(),
        walk_forward: wf.clone(),
        sampled_runs: config.sampled_runs,
        resamples: config.resamples,
        confidence: config.confidence,
        train_config: base.to_toml(),
        own_settings: config
            .agent_settings
            .iter()
            .map(|(kind, _)| {
                let seed = config.seeds.first().copied().unwrap_or(0);
                (
                    kind.as_str().to_string(),
                    config.train_config(seed, *kind).to_toml(),
                )
            })
            .collect(),
    };
    StudyReport {
        settings,
        per_seed,
        pooled,
        best_rule,
        comparisons,
        adaptation,
        training,
        verdict: verdict_line,
        adaptation_gain: Some(gain),
        others,
        deployment,
    }
}
