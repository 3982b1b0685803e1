//! Online adaptation: no look-ahead (the future perturbed), rollback, the update-norm limit,
//! determinism by seed, and the benchmark's online rows.

use std::sync::Arc;

use mrl_agent::{Policy, PolicyKind};
use mrl_backtest::{TestStart, WalkForwardConfig, run_policy};
use mrl_env::MarketData;
use mrl_fewshot::{
    FewshotReport, InnerConfig, Interval, MetaTrainConfig, Method, OnlineConfig, OnlineRun,
    OnlineSetup, UpdateOutcome, trade_online,
};

use crate::benchmark::{run_on, series, tiny_bench, tiny_config, trading, walk_forward};
use crate::common::{flat, perturbed_from, policy, setup};

/// Test bars from 120 on, windows of 20 bars, an update every 40 bars on the 60 bars
/// before the last 20.
fn online(tolerance: f64, max_update_norm: f64) -> OnlineSetup {
    OnlineSetup {
        online: OnlineConfig {
            every_bars: 40,
            train_bars: 60,
            validation_bars: 20,
            steps: 2,
            step_size: 1.0,
            max_update_norm,
            tolerance,
        },
        inner: InnerConfig {
            n_envs: 2,
            lr: 3e-2,
            ..Default::default()
        },
        setup: setup(0.5),
        trading: trading(),
    }
}

fn wf() -> WalkForwardConfig {
    WalkForwardConfig {
        test_start: TestStart::Index(120),
        ..walk_forward()
    }
}

fn trade(base: &Policy, series: mrl_data::BarSeries, setup: &OnlineSetup) -> OnlineRun {
    let market = Arc::new(MarketData::new(series).unwrap());
    trade_online(base, &market, &wf(), setup, 11).unwrap()
}

fn distance(a: &Policy, b: &Policy) -> f64 {
    flat(a)
        .iter()
        .flatten()
        .zip(flat(b).iter().flatten())
        .map(|(x, y)| f64::from(x - y).powi(2))
        .sum::<f64>()
        .sqrt()
}

#[test]
fn decisions_and_updates_before_a_perturbation_are_unchanged() {
    let base = policy(PolicyKind::Rl2, 5);
    let setup = online(1e9, 10.0); // every update kept
    let original = series(400, 4);
    let first = trade(&base, original.clone(), &setup);
    let again = trade(&base, original.clone(), &setup);
    assert_eq!(first.run, again.run, "deterministic by seed");
    assert_eq!(first.updates, again.updates);
    // Updates before the windows starting at 160, 200, …, 360 (every 40 bars from 120 + 40).
    let bars: Vec<usize> = first.updates.iter().map(|u| u.bar).collect();
    assert_eq!(bars, [160, 200, 240, 280, 320, 360]);
    assert_eq!(first.updates[0].train_bars, (81, 141));
    assert_eq!(first.updates[0].validation_start, 140);
    assert_eq!(first.accepted(), 6);
    assert!(distance(&first.policy, &base) > 0.0);

    // Every bar from 250 on perturbed.
    let perturbed = trade(&base, perturbed_from(&original, 250), &setup);
    let unchanged_windows = first.windows.iter().filter(|w| w.eval.end <= 250).count();
    assert_eq!(unchanged_windows, 6, "windows 120..240");
    assert_eq!(
        first.run.positions[..unchanged_windows],
        perturbed.run.positions[..unchanged_windows],
        "decisions before bar 250 do not see the bars after it"
    );
    // The updates at 160, 200 and 240 read bars ≤ 240 only.
    assert_eq!(first.updates[..3], perturbed.updates[..3]);
    assert_ne!(
        first.updates[3..],
        perturbed.updates[3..],
        "the later updates do read the perturbed bars"
    );
}

#[test]
fn a_degrading_update_is_rolled_back() {
    // A negative tolerance asks every update to gain 1e9 on its validation bars: none does,
    // so the policy never changes and trades exactly as the static policy.
    let base = policy(PolicyKind::Rl2, 6);
    let s = series(300, 7);
    let run = trade(&base, s.clone(), &online(-1e9, 10.0));
    assert_eq!(run.updates.len(), 4);
    assert!(
        run.updates
            .iter()
            .all(|u| u.outcome == UpdateOutcome::Degraded && u.validation_candidate.is_some())
    );
    assert_eq!(distance(&run.policy, &base), 0.0);
    let market = Arc::new(MarketData::new(s).unwrap());
    let static_run = run_policy(&market, &run.windows, &base, &wf(), None).unwrap();
    assert_eq!(run.run, static_run);
}

#[test]
fn an_update_never_moves_further_than_the_norm_limit() {
    let base = policy(PolicyKind::Mlp, 8);
    let run = trade(&base, series(300, 9), &online(1e9, 1e-3));
    assert_eq!(run.accepted(), 4);
    for u in &run.updates {
        let raw = u.adapted_norm.unwrap();
        assert!(raw > 1e-3, "the inner loop moved {raw}");
        assert_eq!(u.step_norm, Some(1e-3));
    }
    // Four steps of norm 1e-3 (f32 weights: a little slack).
    let moved = distance(&run.policy, &base);
    assert!(moved > 0.0 && moved <= 4e-3 * (1.0 + 1e-3), "moved {moved}");
}

/// Mean, minimum and maximum of the defined values.
fn spread(values: &[Vec<Option<f64>>]) -> Option<Interval> {
    let v: Vec<f64> = values.iter().flatten().flatten().copied().collect();
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (!v.is_empty()).then_some(Interval { mean, lo, hi })
}

fn bench_with_online(tolerance: f64) -> mrl_fewshot::BenchmarkRaw {
    let mut config: MetaTrainConfig = tiny_config();
    config.meta.inner.lr = 5e-2; // steps large enough to change greedy decisions
    config.meta.online = OnlineConfig {
        every_bars: 20,
        train_bars: 50,
        validation_bars: 20,
        steps: 1,
        tolerance,
        ..Default::default()
    };
    let bench = mrl_fewshot::BenchmarkConfig {
        seeds: vec![1],
        methods: vec![Method::MetaOnline, Method::Meta],
        ..tiny_bench()
    };
    let dir = tempfile::tempdir().unwrap();
    run_on(&config, &bench, dir.path())
}

#[test]
fn the_benchmark_reports_online_rows_that_equal_offline_when_every_update_is_rolled_back() {
    let raw = bench_with_online(-1e9);
    let names: Vec<&str> = raw.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(&names[..3], ["meta", "meta_online", "oracle"]);
    assert_eq!(raw.settings.online.as_ref().unwrap().every_bars, 20);
    assert_eq!(raw.rows[0].cells, raw.rows[1].cells);
    // Updates before the windows at 80 and 100, for 2 tasks × 2 K: all rolled back.
    let tally = |raw: &mrl_fewshot::BenchmarkRaw| {
        let t = &raw.settings.online_updates[0];
        (t.method.clone(), t.accepted, t.degraded, t.non_finite)
    };
    assert_eq!(tally(&raw), ("meta_online".into(), 0, 8, 0));
    // The report's paired difference online − offline: 0 at every K, on every pair.
    let report = FewshotReport::new(raw.clone(), "min–max", spread);
    let gain = &report.online_gain;
    assert_eq!(gain.len(), 1);
    assert_eq!(
        (gain[0].online.as_str(), gain[0].offline.as_str()),
        ("meta_online", "meta")
    );
    let zero = Interval {
        mean: 0.0,
        lo: 0.0,
        hi: 0.0,
    };
    assert_eq!(gain[0].sharpe, [(0, Some(zero)), (2, Some(zero))]);
    assert!(
        report
            .to_markdown()
            .contains("| meta_online − meta | +0.00 [+0.00, +0.00] | +0.00 [+0.00, +0.00] |")
    );
    // With every update kept, the online row trades differently somewhere.
    let kept = bench_with_online(1e9);
    assert_eq!(kept.rows[0].cells, raw.rows[0].cells, "meta is unaffected");
    assert_ne!(kept.rows[1].cells, kept.rows[0].cells);
    assert_eq!(tally(&kept), ("meta_online".into(), 8, 0, 0));
    let report = FewshotReport::new(kept, "min–max", spread);
    assert!(
        report.online_gain[0]
            .sharpe
            .iter()
            .any(|(_, i)| i.is_some_and(|i| i.lo != 0.0 || i.hi != 0.0)),
        "{:?}",
        report.online_gain
    );
}
