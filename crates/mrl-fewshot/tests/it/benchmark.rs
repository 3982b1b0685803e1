//! The few-shot benchmark: snapshots along one adaptation run, no look-ahead into the
//! evaluation bars, steps to reach on a hand-made curve, the report's JSON, determinism by
//! seed and bad input.

use std::sync::Arc;

use mrl_agent::PolicyKind;
use mrl_backtest::WalkForwardConfig;
use mrl_data::{BarSeries, SyntheticConfig};
use mrl_env::{Ar1Family, MarketData, TradingConfig};
use mrl_fewshot::{
    BenchmarkConfig, BenchmarkRaw, Cell, Error, FewshotReport, HeldOutTask, InnerConfig, Interval,
    LoraConfig, MetaConfig, MetaTrainConfig, Method, MethodRaw, RowKind, adapt, adapt_snapshots,
    evaluate_policy, held_out_tasks, run_benchmark, steps_to_reach,
};
use mrl_ppo::{AgentSection, NormalizeConfig, PpoConfig, TaskKind, TaskSection, TrainConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::common::{MAX_STEPS, flat, perturbed_from, policy, setup};

pub(crate) fn series(n: usize, seed: u64) -> BarSeries {
    SyntheticConfig::default()
        .generate_with_rng(n, &mut ChaCha8Rng::seed_from_u64(seed))
        .unwrap()
        .series
}

fn held_out(series: BarSeries) -> HeldOutTask {
    HeldOutTask {
        name: "test".into(),
        market: Arc::new(MarketData::new(series).unwrap()),
        oracle: None,
    }
}

pub(crate) fn trading() -> TradingConfig {
    TradingConfig {
        max_steps: MAX_STEPS,
        reward_scale: 100.0,
        ..Default::default()
    }
}

pub(crate) fn walk_forward() -> WalkForwardConfig {
    WalkForwardConfig {
        window_len: MAX_STEPS,
        adaptation_episodes: 0,
        adaptation_len: MAX_STEPS,
        reward_scale: 100.0,
        ..Default::default()
    }
}

#[test]
fn snapshots_equal_separate_adaptations_bit_for_bit() {
    let task = Arc::new(
        held_out(series(200, 1))
            .adaptation_task(80, trading())
            .unwrap(),
    );
    for adapter in [
        None,
        Some(LoraConfig {
            rank: 2,
            ..Default::default()
        }),
    ] {
        let base = policy(PolicyKind::Rl2, 3);
        let inner = InnerConfig {
            n_envs: 2,
            lr: 1e-2,
            adapter,
            ..Default::default()
        };
        let ks = [3, 0, 1];
        let snapshots = adapt_snapshots(&base, task.clone(), &inner, &setup(0.5), 9, &ks).unwrap();
        assert_eq!(snapshots.len(), 3);
        for (k, snapshot) in ks.iter().zip(&snapshots) {
            let inner_k = InnerConfig {
                steps: *k,
                ..inner.clone()
            };
            let alone = adapt(&base, task.clone(), &inner_k, &setup(0.5), 9).unwrap();
            assert_eq!(flat(snapshot), flat(&alone.policy), "K = {k}");
        }
        assert_eq!(flat(&snapshots[1]), flat(&base), "K = 0 is the base");
        assert_ne!(
            flat(&snapshots[0]),
            flat(&base),
            "three steps move the weights"
        );
    }
    let err = adapt_snapshots(
        &policy(PolicyKind::Mlp, 1),
        task,
        &InnerConfig::default(),
        &setup(0.5),
        0,
        &[],
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid config: ks = [] (expected at least one step count)"
    );
}

#[test]
fn adaptation_never_sees_the_evaluation_bars() {
    // The same 300 bars, then the bars from 120 on (the evaluation period) perturbed.
    let original = series(300, 4);
    let perturbed = perturbed_from(&original, 120);
    let inner = InnerConfig {
        n_envs: 2,
        lr: 1e-2,
        ..Default::default()
    };
    let base = policy(PolicyKind::Rl2, 5);
    let mut adapted = Vec::new();
    let mut metrics = Vec::new();
    let wf = WalkForwardConfig {
        test_start: mrl_backtest::TestStart::Index(120),
        ..walk_forward()
    };
    for s in [original, perturbed] {
        let task = held_out(s);
        let window = Arc::new(task.adaptation_task(120, trading()).unwrap());
        let snaps = adapt_snapshots(&base, window, &inner, &setup(0.5), 2, &[4]).unwrap();
        metrics.push(evaluate_policy(&snaps[0], &task, &wf).unwrap());
        adapted.push(flat(&snaps[0]));
    }
    assert_eq!(
        adapted[0], adapted[1],
        "the adapted weights ignore bars ≥ 120"
    );
    assert_ne!(
        metrics[0].total_return, metrics[1].total_return,
        "the evaluation does read the perturbed bars"
    );
}

#[test]
fn steps_to_reach_is_the_first_k_at_or_above_the_target() {
    let curve = [
        (0, Some(0.1)),
        (1, None),
        (10, Some(0.95)),
        (100, Some(1.2)),
    ];
    assert_eq!(steps_to_reach(&curve, 0.9), Some(10));
    assert_eq!(steps_to_reach(&curve, 0.95), Some(10));
    assert_eq!(steps_to_reach(&curve, 0.05), Some(0));
    assert_eq!(steps_to_reach(&curve, 1.5), None);
    assert_eq!(steps_to_reach(&[], 0.0), None);
}

#[test]
fn a_flat_book_counts_as_sharpe_zero() {
    let mut cell = Cell::new(0, 1, 2);
    let flat = mrl_backtest::Metrics::compute(&[0.0; 10], &[0.0; 10], 8760.0);
    assert_eq!(flat.sharpe, None);
    cell.set(0, 0, &flat);
    let returns = [0.01, -0.005, 0.02, 0.0];
    let traded = mrl_backtest::Metrics::compute(&returns, &[1.0; 4], 8760.0);
    cell.set(0, 1, &traded);
    assert_eq!(cell.sharpe[0], vec![Some(0.0), traded.sharpe]);
    assert!(traded.sharpe.unwrap() > 0.0);
    assert_eq!(cell.total_return[0][0], Some(0.0));
    assert_eq!(cell.max_drawdown[0][1], Some(traded.max_drawdown));
}

/// One hand-made row: name, kind and `(K, [Sharpe on task a, on task b])` cells.
type Row<'a> = (&'a str, RowKind, &'a [(usize, [f64; 2])]);

/// A raw table of one seed × two tasks; every metric holds the given values.
fn hand_made(rows: &[Row<'_>]) -> BenchmarkRaw {
    let mut bench = BenchmarkConfig {
        seeds: vec![1],
        ks: vec![0, 10, 100],
        tasks: 2,
        walk_forward: walk_forward(),
        ..Default::default()
    };
    bench.validate().unwrap();
    BenchmarkRaw {
        settings: mrl_fewshot::BenchmarkSettings {
            benchmark: bench,
            algorithm: mrl_fewshot::MetaAlgorithm::Reptile,
            agent: PolicyKind::Mlp,
            hidden: 8,
            inner: InnerConfig::default(),
            env_steps_per_inner_step: 160,
            meta_iterations: 1,
            meta_env_steps: 1600,
            pretrain_iterations: 2,
            meta_source: "reptile".into(),
            rl2_source: "rl2".into(),
            held_out: "two markets".into(),
            online: None,
            online_updates: Vec::new(),
            classes: None,
        },
        tasks: vec!["a".into(), "b".into()],
        rows: rows
            .iter()
            .map(|(name, kind, cells)| MethodRaw {
                name: (*name).into(),
                kind: *kind,
                cells: cells
                    .iter()
                    .map(|(k, v)| {
                        let row = vec![v.iter().map(|x| Some(*x)).collect::<Vec<_>>()];
                        Cell {
                            k: *k,
                            sharpe: row.clone(),
                            total_return: row.clone(),
                            max_drawdown: row,
                        }
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// Mean, min and max of the defined values.
fn min_max(values: &[Vec<Option<f64>>]) -> Option<Interval> {
    let v: Vec<f64> = values.iter().flatten().flatten().copied().collect();
    (!v.is_empty()).then(|| Interval {
        mean: v.iter().sum::<f64>() / v.len() as f64,
        lo: v.iter().copied().fold(f64::INFINITY, f64::min),
        hi: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    })
}

#[test]
fn the_report_pools_cells_and_finds_the_steps_to_reach() {
    let raw = hand_made(&[
        (
            "meta",
            RowKind::Adapted,
            &[(0, [0.25, 0.75]), (10, [1.0, 1.5]), (100, [1.25, 1.25])],
        ),
        (
            "scratch",
            RowKind::Adapted,
            &[(0, [0.0, 0.0]), (10, [0.0, 0.5]), (100, [0.5, 1.0])],
        ),
        ("rl2", RowKind::ZeroStep, &[(0, [1.0, 1.375])]),
        ("oracle", RowKind::Baseline, &[(0, [3.0, 5.0])]),
    ]);
    let report = FewshotReport::new(raw, "min-max", min_max);
    let meta = &report.methods[0];
    assert_eq!(
        meta.curve[1].sharpe,
        Some(Interval {
            mean: 1.25,
            lo: 1.0,
            hi: 1.5
        })
    );
    // Best agent's final Sharpe: meta's 1.25 (the oracle is a baseline); target 1.125.
    assert_eq!(report.reach.reference.as_deref(), Some("meta"));
    assert!((report.reach.target_sharpe.unwrap() - 1.125).abs() < 1e-12);
    let steps: Vec<Option<usize>> = report.methods.iter().map(|m| m.steps_to_reach).collect();
    assert_eq!(steps, vec![Some(10), None, Some(0), None]);
    let md = report.to_markdown();
    assert!(
        md.contains(
            "| meta (reptile) | 0.50 [0.25, 0.75] | 1.25 [1.00, 1.50] | 1.25 [1.25, 1.25] | 10 |"
        ),
        "{md}"
    );
    assert!(
        md.contains(
            "| scratch | 0.00 [0.00, 0.00] | 0.25 [0.00, 0.50] | 0.75 [0.50, 1.00] | not reached |"
        ),
        "{md}"
    );
    assert!(md.contains("| rl2 (0 steps) | 1.19 [1.00, 1.38] |"), "{md}");
    assert!(
        report.reach_line().ends_with(
            "i.e. a mean Sharpe ≥ 1.12, fewest K of the grid: meta 10, scratch not reached, \
             rl2 0 (rl2 takes no gradient step)."
        ),
        "{}",
        report.reach_line()
    );
    let csv = report.to_csv();
    assert!(
        csv.contains("\nmeta,adapted,10,sharpe,1.25,1,1.5,2,2\n"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 1 + 3 * (3 + 3 + 1 + 1));

    // No agent with a positive Sharpe: no target, no steps.
    let losing = hand_made(&[(
        "meta",
        RowKind::Adapted,
        &[(0, [-1.0, -1.0]), (10, [-0.5, -0.5]), (100, [-0.2, -0.2])],
    )]);
    let report = FewshotReport::new(losing, "min-max", min_max);
    assert_eq!(report.reach.target_sharpe, None);
    assert_eq!(report.methods[0].steps_to_reach, None);
    assert!(
        report
            .reach_line()
            .starts_with("No agent earned a positive mean Sharpe")
    );
}

#[test]
fn the_report_json_round_trips() {
    let raw = hand_made(&[
        (
            "meta",
            RowKind::Adapted,
            &[(0, [0.1, 0.3]), (10, [0.9, 1.0]), (100, [1.0, 1.0])],
        ),
        ("buy_and_hold", RowKind::Baseline, &[(0, [0.5, -0.5])]),
    ]);
    let report = FewshotReport::new(raw, "min-max", min_max);
    let json = serde_json::to_string_pretty(&report).unwrap();
    let back: FewshotReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["format"], "mrl-fewshot-benchmark");
    assert_eq!(value["methods"][0]["curve"][1]["k"], 10);
    assert_eq!(value["methods"][1]["kind"], "baseline");
    assert_eq!(value["raw"][0]["cells"][2]["sharpe"][0][1], 1.0);
}

/// A tiny meta-training config: MLP of width 8, 20-step episodes on 200-bar AR(1) markets,
/// two meta-iterations.
pub(crate) fn tiny_config() -> MetaTrainConfig {
    MetaTrainConfig {
        train: TrainConfig {
            seed: 1,
            n_envs: 2,
            agent: AgentSection {
                kind: PolicyKind::Mlp,
                hidden: 8,
                ..Default::default()
            },
            ppo: PpoConfig {
                epochs: 1,
                minibatch_trials: 2,
                ..Default::default()
            },
            task: TaskSection {
                kind: TaskKind::SyntheticAr1 {
                    bars: 200,
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
        },
        meta: MetaConfig {
            iterations: 2,
            meta_batch: 2,
            inner: InnerConfig {
                steps: 2,
                n_envs: 2,
                ..Default::default()
            },
            ..Default::default()
        },
        transfer: None,
        classes: Default::default(),
    }
}

pub(crate) fn tiny_bench() -> BenchmarkConfig {
    BenchmarkConfig {
        seeds: vec![1, 2],
        ks: vec![0, 2],
        tasks: 2,
        adaptation_bars: 60,
        eval_bars: 60,
        walk_forward: walk_forward(),
        ..Default::default()
    }
}

fn run_tiny(dir: &std::path::Path) -> BenchmarkRaw {
    run_on(&tiny_config(), &tiny_bench(), dir)
}

/// The benchmark of `config` on its own training tasks and held-out tasks, into `dir`.
pub(crate) fn run_on(
    config: &MetaTrainConfig,
    bench: &BenchmarkConfig,
    dir: &std::path::Path,
) -> BenchmarkRaw {
    let dist = Arc::new(
        mrl_ppo::trading_tasks(&config.train.task.kind, &config.train.task.trading).unwrap(),
    );
    let tasks = held_out_tasks(&config.train, bench).unwrap();
    run_benchmark(config, bench, dist, &tasks, None, None, dir, |_| {}).unwrap()
}

#[test]
fn the_benchmark_is_deterministic_by_seed() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = run_tiny(a.path());
    let second = run_tiny(b.path());
    assert_eq!(
        serde_json::to_string(&first).unwrap(),
        serde_json::to_string(&second).unwrap()
    );
    let names: Vec<&str> = first.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        &names[..5],
        ["meta", "pretrain", "scratch", "rl2", "oracle"]
    );
    assert!(names.contains(&"buy_and_hold") && names.contains(&"ts_momentum"));
    // Two K for the adapted methods, one for RL² and the baselines; 2 seeds × 2 tasks.
    assert_eq!(first.rows[0].cells.len(), 2);
    assert_eq!(first.rows[3].cells.len(), 1);
    assert_eq!(first.rows[0].cells[1].total_return.len(), 2);
    assert!(
        first.rows[0].cells[1]
            .total_return
            .iter()
            .flatten()
            .all(Option::is_some)
    );
    // Equal data: pretrain gets meta's env-steps (2 it × 2 tasks × 2 rollouts × 2 trials × 20).
    assert_eq!(first.settings.meta_env_steps, 320);
    assert_eq!(first.settings.pretrain_iterations, 8);
    assert!(
        a.path()
            .join("seed-2/meta/checkpoint/model.safetensors")
            .exists()
    );
    assert!(a.path().join("seed-1/rl2/checkpoint/agent.json").exists());
    let log = std::fs::read_to_string(a.path().join("seed-2/meta/meta_log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 2, "one line per meta-iteration");
}

#[test]
fn bad_input_is_named() {
    let mut bench = BenchmarkConfig {
        ks: vec![],
        ..Default::default()
    };
    assert_eq!(
        bench.validate().unwrap_err().to_string(),
        "invalid config: ks = [] (give at least one number of adaptation steps)"
    );
    let mut bench = BenchmarkConfig {
        seeds: vec![1, 1],
        ..Default::default()
    };
    assert_eq!(
        bench.validate().unwrap_err().to_string(),
        "invalid config: seeds = [1, 1] (seeds must be distinct)"
    );
    assert_eq!(
        "maml".parse::<Method>().unwrap_err().to_string(),
        "invalid config: methods = maml (unknown method; expected meta, meta_embed, meta_online, pretrain, \
         pretrain_online, scratch or rl2)"
    );
    assert_eq!("rl2".parse::<Method>().unwrap(), Method::Rl2);
    assert_eq!(
        "pretrain_online".parse::<Method>().unwrap(),
        Method::PretrainOnline
    );

    // A data directory whose held-out asset has too few bars for the window and one
    // evaluation window (336 + 20 + 1 needed).
    let dir = tempfile::tempdir().unwrap();
    for (asset, n) in [("AAA", 600), ("BBB", 350)] {
        let path = dir.path().join(format!("{asset}_1h.csv"));
        mrl_data::write_csv(&series(n, 2), &path).unwrap();
    }
    let mut train = tiny_config().train;
    train.task.kind = TaskKind::MultiAsset {
        data_dir: dir.path().to_path_buf(),
        interval: "1h".into(),
        assets: vec!["AAA".into(), "BBB".into()],
        split: mrl_env::AssetSplit {
            held_out: vec!["BBB".into()],
            test_start: None,
        },
    };
    let mut bench = BenchmarkConfig {
        walk_forward: walk_forward(),
        ..Default::default()
    };
    bench.validate().unwrap();
    let err = held_out_tasks(&train, &bench).unwrap_err();
    assert!(
        matches!(
            err,
            Error::HeldOutTooShort {
                available: 350,
                needed: 357,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "held-out series BBB has 350 bars; the benchmark needs 357 (336 adaptation bars, then \
         one evaluation window of 20 bars and its next close)"
    );
    // Without held-out assets there is nothing to adapt to.
    if let TaskKind::MultiAsset { split, .. } = &mut train.task.kind {
        split.held_out.clear();
    }
    assert_eq!(
        held_out_tasks(&train, &bench).unwrap_err().to_string(),
        "invalid config: task.split.held_out = [] (the benchmark adapts to held-out assets; \
         name them in the config)"
    );
}
