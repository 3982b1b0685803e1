//! Task distributions: disjoint train and test sets (assets, time ranges, windows, seeds),
//! determinism by seed, regime labels on a constructed series, mixtures, the oracles of every
//! synthetic family, errors.

use mrl_data::{
    Bar, BarSeries, DAY_MS, DomainRandomization, GbmParams, HOUR_MS, Interval, MarketProcess,
    ProcessKind, RegimeLabel, RegimeParams, SyntheticConfig,
};
use mrl_env::{
    ActionSpace, Ar1Family, Ar1Oracle, AssetSplit, Env, Error, MarketOracle, MarketTasks,
    MixtureTasks, ProcessSource, RegimeConfig, RegimeThresholds, Split, SyntheticTasks,
    TargetAction, TaskDistribution, TaskEnv, TaskInfo, TaskKind, TradingConfig, WindowStats,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::random_walk;

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Bars on `closes` spaced `interval_ms` apart, named `symbol`.
fn bars(closes: &[f64], interval_ms: i64, symbol: &str) -> BarSeries {
    let bars: Vec<Bar> = closes
        .iter()
        .enumerate()
        .map(|(i, &close)| Bar {
            timestamp: i as i64 * interval_ms,
            open: close,
            high: close * 1.001,
            low: close * 0.999,
            close,
            volume: 1.0,
        })
        .collect();
    BarSeries::new(&bars)
        .expect("valid test bars")
        .with_symbol(symbol)
}

fn config(max_steps: usize) -> TradingConfig {
    TradingConfig {
        max_steps,
        ..TradingConfig::default()
    }
}

fn names(dist: &MarketTasks, split: Split) -> Vec<String> {
    dist.tasks(split).map(|t| t.name.clone()).collect()
}

/// Every train task ends before every test task begins.
fn assert_time_disjoint(dist: &MarketTasks) {
    let train_end = dist
        .tasks(Split::Train)
        .map(|t| t.last_timestamp)
        .max()
        .unwrap();
    let test_start = dist
        .tasks(Split::Test)
        .map(|t| t.first_timestamp)
        .min()
        .unwrap();
    assert!(
        train_end < test_start,
        "train ends at {train_end}, test starts at {test_start}"
    );
}

/// Samples `n` envs and checks that every episode stays inside its task's bars.
fn sample_and_run(
    dist: &impl TaskDistribution<Env = TaskEnv>,
    split: Split,
    n: usize,
) -> Vec<TaskInfo> {
    let mut task_rng = rng(3);
    (0..n)
        .map(|_| {
            let mut env = dist.sample(split, &mut task_rng).unwrap();
            assert_eq!(env.task_info().split, split);
            env.reset(&mut task_rng).unwrap();
            let timestamps = env.trading().market().timestamps().to_vec();
            let info = env.task_info().clone();
            assert!(timestamps[0] >= info.first_timestamp);
            loop {
                let step = env.step(TargetAction::Buy.index()).unwrap();
                if step.done() {
                    break;
                }
            }
            assert!(timestamps[env.trading().bar()] <= info.last_timestamp);
            info
        })
        .collect()
}

fn three_assets(n: usize) -> Vec<BarSeries> {
    ["AAA", "BBB", "CCC"]
        .iter()
        .zip(1..)
        .map(|(s, seed)| bars(&random_walk(n, seed), HOUR_MS, s))
        .collect()
}

#[test]
fn multi_asset_held_out_assets_are_never_trained_on() {
    let assets = three_assets(300);
    let split = AssetSplit {
        held_out: vec!["CCC".into()],
        test_start: None,
    };
    let dist = MarketTasks::multi_asset(&assets, &split, config(50)).unwrap();
    assert_eq!(names(&dist, Split::Train), ["AAA[train]", "BBB[train]"]);
    assert_eq!(names(&dist, Split::Test), ["CCC[test]"]);
    assert_eq!(
        (dist.obs_dim(), dist.n_actions(), dist.max_episode_steps()),
        (14, 3, 50)
    );
    let train = sample_and_run(&dist, Split::Train, 20);
    assert!(train.iter().all(|t| t.symbol.as_deref() != Some("CCC")));
    let mut seen: Vec<_> = train.iter().filter_map(|t| t.symbol.clone()).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, ["AAA", "BBB"], "both train assets are sampled");
    assert!(
        sample_and_run(&dist, Split::Test, 5)
            .iter()
            .all(|t| t.symbol.as_deref() == Some("CCC"))
    );
}

#[test]
fn multi_asset_time_cut_separates_periods_including_the_warmup() {
    let assets = three_assets(400);
    let cut = 250 * HOUR_MS;
    let split = AssetSplit {
        held_out: vec![],
        test_start: Some(cut),
    };
    let dist = MarketTasks::multi_asset(&assets, &split, config(50)).unwrap();
    assert_eq!(dist.n_tasks(Split::Train), 3);
    assert_eq!(dist.n_tasks(Split::Test), 3);
    assert_time_disjoint(&dist);
    assert!(dist.tasks(Split::Train).all(|t| t.last_timestamp < cut));
    assert!(
        dist.tasks(Split::Test).all(|t| t.first_timestamp >= cut),
        "test warm-up starts at the cut"
    );
    sample_and_run(&dist, Split::Train, 10);
    sample_and_run(&dist, Split::Test, 10);

    // Both: unseen asset in an unseen period.
    let both = AssetSplit {
        held_out: vec!["AAA".into()],
        test_start: Some(cut),
    };
    let dist = MarketTasks::multi_asset(&assets, &both, config(50)).unwrap();
    assert_eq!(names(&dist, Split::Train), ["BBB[train]", "CCC[train]"]);
    assert_eq!(names(&dist, Split::Test), ["AAA[test]"]);
    assert_time_disjoint(&dist);
}

#[test]
fn sampling_is_deterministic_by_seed() {
    let dist = MarketTasks::multi_asset(
        &three_assets(300),
        &AssetSplit {
            held_out: vec![],
            test_start: Some(200 * HOUR_MS),
        },
        config(20),
    )
    .unwrap();
    let run = |seed| {
        let mut r = rng(seed);
        (0..10)
            .map(|_| {
                let mut env = dist.sample(Split::Train, &mut r).unwrap();
                let obs = env.reset(&mut r).unwrap().to_vec();
                (env.task_info().name.clone(), obs)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));
}

#[test]
fn multi_asset_errors() {
    let split = AssetSplit {
        held_out: vec!["AAA".into()],
        test_start: None,
    };
    assert!(matches!(
        MarketTasks::multi_asset(&[], &split, config(20)),
        Err(Error::InvalidConfig {
            field: "assets",
            ..
        })
    ));
    let assets = three_assets(200);
    assert!(matches!(
        MarketTasks::multi_asset(&assets, &AssetSplit::default(), config(20)),
        Err(Error::InvalidConfig { field: "split", .. })
    ));
    let unknown = AssetSplit {
        held_out: vec!["ZZZ".into()],
        test_start: None,
    };
    assert!(matches!(
        MarketTasks::multi_asset(&assets, &unknown, config(20)),
        Err(Error::UnknownAsset { symbol }) if symbol == "ZZZ"
    ));
    // 60 bars cannot hold 26 warm-up bars + 50 steps + 1.
    let short = vec![
        bars(&random_walk(60, 1), HOUR_MS, "AAA"),
        bars(&random_walk(60, 2), HOUR_MS, "BBB"),
    ];
    assert!(matches!(
        MarketTasks::multi_asset(&short, &split, config(50)),
        Err(Error::EmptySplit {
            split: Split::Train,
            needed: 77,
            ..
        })
    ));
}

#[test]
fn timeframes_are_separate_tasks_split_in_time() {
    let hourly = bars(&random_walk(2400, 9), HOUR_MS, "BTC");
    let intervals = [Interval::HOUR, Interval::FOUR_HOURS, Interval::DAY];
    let cut = 60 * DAY_MS;
    let dist = MarketTasks::timeframes(&hourly, &intervals, cut, config(20)).unwrap();
    assert_eq!(
        names(&dist, Split::Train),
        ["BTC@1h[train]", "BTC@4h[train]", "BTC@1d[train]"]
    );
    // 40 daily bars after the cut cannot hold 26 + 20 + 1: that test part is skipped.
    assert_eq!(names(&dist, Split::Test), ["BTC@1h[test]", "BTC@4h[test]"]);
    let intervals_ms: Vec<i64> = dist.tasks(Split::Train).map(interval_ms).collect();
    assert_eq!(intervals_ms, [HOUR_MS, 4 * HOUR_MS, DAY_MS]);
    assert_time_disjoint(&dist);
    let sampled = sample_and_run(&dist, Split::Train, 30);
    assert!(
        sampled.iter().any(|t| t.name.contains("@1d")),
        "timeframes are sampled uniformly"
    );

    // A cut inside a 4h and a 1d bucket: the straddling bars belong to neither part.
    let cut = 60 * DAY_MS + 5 * HOUR_MS;
    let dist = MarketTasks::timeframes(&hourly, &intervals, cut, config(20)).unwrap();
    for t in dist.tasks(Split::Train) {
        assert!(
            t.last_timestamp + interval_ms(t) <= cut,
            "{} reaches past the cut",
            t.name
        );
    }
    assert!(dist.tasks(Split::Test).all(|t| t.first_timestamp >= cut));
    assert!(matches!(
        MarketTasks::timeframes(&hourly, &[], cut, config(20)),
        Err(Error::InvalidConfig {
            field: "intervals",
            ..
        })
    ));
}

fn interval_ms(task: &TaskInfo) -> i64 {
    match task.kind {
        TaskKind::Timeframe { interval_ms } => interval_ms,
        ref other => panic!("not a timeframe task: {other:?}"),
    }
}

/// One bar's log return in regime `k`: bull, bear, high volatility, sideways, with an
/// alternating wiggle so that volatility is never zero.
fn regime_return(k: usize, i: usize) -> f64 {
    let sign = if i.is_multiple_of(2) { 1.0 } else { -1.0 };
    match k {
        0 => 0.004 + 0.001 * sign,
        1 => -0.004 + 0.001 * sign,
        2 => 0.03 * sign,
        _ => 0.001 * sign,
    }
}

/// Closes whose windows of `w` bars after each part's 26 warm-up bars cycle through the four
/// regimes; the train part holds 8 windows, the test part 4.
fn regime_series(w: usize) -> (BarSeries, i64) {
    let part = |n_windows: usize| {
        (0..26 + n_windows * w).map(move |i| if i < 26 { 3 } else { (i - 26) / w % 4 })
    };
    let regimes: Vec<usize> = part(8).chain(part(4)).collect();
    let mut price = 100.0;
    let closes: Vec<f64> = regimes
        .iter()
        .enumerate()
        .map(|(i, &k)| {
            price *= regime_return(k, i).exp();
            price
        })
        .collect();
    (bars(&closes, HOUR_MS, "REG"), (26 + 8 * w) as i64 * HOUR_MS)
}

#[test]
fn regime_windows_recover_constructed_regimes_and_stay_disjoint() {
    let (series, test_start) = regime_series(60);
    let regime = RegimeConfig {
        window: 60,
        ..RegimeConfig::default()
    };
    let dist = MarketTasks::regime_windows(&[series], test_start, &regime, config(30)).unwrap();
    let labels = |split| {
        dist.tasks(split)
            .map(|t| match t.kind {
                TaskKind::Regime { label, .. } => label,
                ref other => panic!("not a regime task: {other:?}"),
            })
            .collect::<Vec<_>>()
    };
    use RegimeLabel::{Bear, Bull, HighVolatility as Hv, Sideways};
    assert_eq!(
        labels(Split::Train),
        [Bull, Bear, Hv, Sideways, Bull, Bear, Hv, Sideways]
    );
    assert_eq!(labels(Split::Test), [Bull, Bear, Hv, Sideways]);
    assert_time_disjoint(&dist);
    // Episode bars of two windows never overlap: a window's 26 warm-up bars are the end of
    // the window before it.
    let mut spans: Vec<(i64, i64)> = dist
        .tasks(Split::Train)
        .map(|t| (t.first_timestamp, t.last_timestamp))
        .collect();
    spans.sort();
    assert!(spans.windows(2).all(|p| p[0].1 < p[1].0 + 26 * HOUR_MS));
    let sampled = sample_and_run(&dist, Split::Test, 20);
    assert!(sampled.iter().all(|t| t.first_timestamp >= test_start));

    // Only bull and bear windows as tasks.
    let trend = RegimeConfig {
        window: 60,
        labels: vec![Bull, Bear],
        ..RegimeConfig::default()
    };
    let (series, test_start) = regime_series(60);
    let dist = MarketTasks::regime_windows(&[series], test_start, &trend, config(30)).unwrap();
    assert_eq!(
        (dist.n_tasks(Split::Train), dist.n_tasks(Split::Test)),
        (4, 2)
    );
}

#[test]
fn regime_thresholds_are_quantiles_of_the_train_windows() {
    let stats = |log_return, volatility| WindowStats {
        log_return,
        volatility,
    };
    let train = [
        stats(0.2, 0.01),
        stats(-0.2, 0.01),
        stats(0.0, 0.01),
        stats(0.0, 0.05),
    ];
    let th = RegimeThresholds::fit(&train, &RegimeConfig::default()).unwrap();
    // quantile 0.75 of [.01, .01, .01, .05] = .01 + .25·.04 = .02
    assert!((th.vol_high - 0.02).abs() < 1e-12);
    // calm returns [-.2, 0, .2]: quantiles 1/3 and 2/3 are -1/15 and +1/15
    assert!((th.bear_max + 0.2 / 3.0).abs() < 1e-12 && (th.bull_min - 0.2 / 3.0).abs() < 1e-12);
    assert_eq!(th.label(&stats(0.1, 0.01)), RegimeLabel::Bull);
    assert_eq!(th.label(&stats(-0.1, 0.01)), RegimeLabel::Bear);
    assert_eq!(th.label(&stats(0.0, 0.01)), RegimeLabel::Sideways);
    assert_eq!(th.label(&stats(0.5, 0.03)), RegimeLabel::HighVolatility);
    let bad = RegimeConfig {
        trend_quantile: 0.7,
        ..RegimeConfig::default()
    };
    assert!(matches!(
        RegimeThresholds::fit(&train, &bad),
        Err(Error::InvalidConfig {
            field: "trend_quantile",
            ..
        })
    ));
}

#[test]
fn regime_window_errors() {
    let (series, test_start) = regime_series(60);
    let short_window = RegimeConfig {
        window: 30,
        ..RegimeConfig::default()
    };
    assert!(matches!(
        MarketTasks::regime_windows(
            std::slice::from_ref(&series),
            test_start,
            &short_window,
            config(30)
        ),
        Err(Error::InvalidConfig {
            field: "window",
            ..
        })
    ));
    // A cut before any full train window.
    let regime = RegimeConfig {
        window: 60,
        ..RegimeConfig::default()
    };
    assert!(matches!(
        MarketTasks::regime_windows(&[series], 50 * HOUR_MS, &regime, config(30)),
        Err(Error::EmptySplit {
            split: Split::Train,
            ..
        })
    ));
    assert!(matches!(
        MarketTasks::regime_windows(&[], 0, &regime, config(30)),
        Err(Error::InvalidConfig {
            field: "series",
            ..
        })
    ));
}

#[test]
fn synthetic_tasks_use_disjoint_seed_spaces_and_are_deterministic() {
    let dist = SyntheticTasks::new(
        ProcessSource::Randomized(Default::default()),
        400,
        config(50),
    )
    .unwrap();
    let seeds = |split| {
        let mut r = rng(1);
        (0..30)
            .map(
                |_| match dist.sample(split, &mut r).unwrap().task_info().kind.clone() {
                    TaskKind::Synthetic { seed, process, .. } => (seed, process),
                    other => panic!("not synthetic: {other:?}"),
                },
            )
            .collect::<Vec<_>>()
    };
    let (train, test) = (seeds(Split::Train), seeds(Split::Test));
    assert!(
        train
            .iter()
            .all(|(s, _)| SyntheticTasks::split_of_seed(*s) == Split::Train)
    );
    assert!(
        test.iter()
            .all(|(s, _)| SyntheticTasks::split_of_seed(*s) == Split::Test)
    );
    assert_eq!(train, seeds(Split::Train), "same rng, same tasks");
    let kinds: std::collections::HashSet<_> = train.iter().map(|(_, p)| p.kind()).collect();
    assert_eq!(
        kinds.len(),
        4,
        "domain randomisation draws every process kind"
    );
    // A seed reproduces its market bar for bar.
    let (seed, _) = train[0];
    let a = dist.task(seed).unwrap();
    let b = dist.task(seed).unwrap();
    assert_eq!(a.trading().market().closes(), b.trading().market().closes());
    assert_eq!(a.trading().market().len(), 400);
    assert!(matches!(
        SyntheticTasks::new(ProcessSource::Ar1(Ar1Family::default()), 60, config(50)),
        Err(Error::SeriesTooShort {
            len: 60,
            needed: 77,
            ..
        })
    ));
    let bad = Ar1Family {
        phi_abs: (0.5, 1.0),
        ..Ar1Family::default()
    };
    assert!(matches!(
        SyntheticTasks::new(ProcessSource::Ar1(bad), 400, config(50)),
        Err(Error::InvalidConfig {
            field: "phi_abs",
            ..
        })
    ));
}

#[test]
fn ar1_family_draws_momentum_and_mean_reversion() {
    let family = Ar1Family::default();
    let mut r = rng(4);
    let phis: Vec<f64> = (0..400).map(|_| family.sample(&mut r).phi).collect();
    assert!(phis.iter().all(|p| (0.1..=0.5).contains(&p.abs())));
    let positive = phis.iter().filter(|p| **p > 0.0).count();
    assert!(
        (150..=250).contains(&positive),
        "sign is a fair coin: {positive}/400"
    );
}

/// Total reward of one episode from bar `start` under `policy(env) -> action`.
fn episode(
    env: &mut TaskEnv,
    start: usize,
    mut policy: impl FnMut(&TaskEnv) -> TargetAction,
) -> f64 {
    episode_by_index(env, start, |e| policy(e).index())
}

#[test]
fn ar1_oracle_beats_random_and_buy_and_hold() {
    let family = Ar1Family {
        phi_abs: (0.3, 0.5),
        ..Ar1Family::default()
    };
    let dist = SyntheticTasks::new(ProcessSource::Ar1(family), 300, config(200)).unwrap();
    let (mut task_rng, mut action_rng) = (rng(11), rng(12));
    let n_tasks = 40;
    let (mut oracle_total, mut random_total, mut hold_total) = (0.0, 0.0, 0.0);
    for _ in 0..n_tasks {
        let mut env = dist.sample(Split::Test, &mut task_rng).unwrap();
        let oracle = Ar1Oracle::for_task(&env).expect("an AR(1) task has an oracle");
        assert!(oracle.params().phi.abs() >= 0.3);
        let start = *env.trading().valid_starts().start();
        oracle_total += episode(&mut env, start, |e| oracle.act(e.trading()));
        random_total += episode(&mut env, start, |_| {
            TargetAction::ALL[action_rng.random_range(0..3)]
        });
        hold_total += episode(&mut env, start, |_| TargetAction::Buy);
    }
    let n = n_tasks as f64;
    let (oracle, random, hold) = (oracle_total / n, random_total / n, hold_total / n);
    // Per episode of 200 steps the oracle earns ~0.5, random pays ~0.2 of costs, and
    // buy-and-hold earns ~0 ± 0.15 (no drift).
    assert!(
        oracle > random + 0.2 && oracle > hold + 0.2,
        "oracle {oracle}, random {random}, hold {hold}"
    );

    // Only AR(1) synthetic tasks have an oracle.
    let assets = three_assets(300);
    let split = AssetSplit {
        held_out: vec!["CCC".into()],
        test_start: None,
    };
    let market = MarketTasks::multi_asset(&assets, &split, config(50)).unwrap();
    assert!(Ar1Oracle::for_task(&market.sample(Split::Train, &mut task_rng).unwrap()).is_none());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Wherever the cut falls, every train task ends strictly before it and every test task
    /// starts at or after it, warm-up included, for assets and for resampled timeframes.
    #[test]
    fn any_time_cut_gives_disjoint_parts(cut_hour in 80i64..520) {
        let cut = cut_hour * HOUR_MS;
        let assets = three_assets(600);
        let split = AssetSplit { held_out: vec![], test_start: Some(cut) };
        let dist = MarketTasks::multi_asset(&assets, &split, config(20)).unwrap();
        proptest::prop_assert!(dist.tasks(Split::Train).all(|t| t.last_timestamp < cut));
        proptest::prop_assert!(dist.tasks(Split::Test).all(|t| t.first_timestamp >= cut));
        let intervals = [Interval::HOUR, Interval::FOUR_HOURS];
        let dist = MarketTasks::timeframes(&assets[0], &intervals, cut, config(20)).unwrap();
        for t in dist.tasks(Split::Train) {
            proptest::prop_assert!(t.last_timestamp + interval_ms(t) <= cut);
        }
        proptest::prop_assert!(dist.tasks(Split::Test).all(|t| t.first_timestamp >= cut));
    }
}

/// Synthetic tasks of `n_bars` bars from `kinds` of the domain randomisation.
fn randomized(kinds: Vec<ProcessKind>, n_bars: usize, trading: TradingConfig) -> SyntheticTasks {
    let randomization = DomainRandomization {
        kinds,
        ..DomainRandomization::default()
    };
    SyntheticTasks::new(ProcessSource::Randomized(randomization), n_bars, trading).unwrap()
}

/// The process of a synthetic task.
fn process_of(env: &TaskEnv) -> &MarketProcess {
    match &env.task_info().kind {
        TaskKind::Synthetic { process, .. } => process,
        other => panic!("not synthetic: {other:?}"),
    }
}

#[test]
fn mixture_draws_components_by_weight_and_keeps_each_split() {
    let ar1 = SyntheticTasks::new(ProcessSource::Ar1(Ar1Family::default()), 100, config(20));
    let regimes = randomized(vec![ProcessKind::Regime], 100, config(20));
    let mixture = MixtureTasks::new(vec![
        (1.0, Box::new(ar1.unwrap())),
        (3.0, Box::new(regimes)),
    ])
    .unwrap();
    assert_eq!(mixture.weights(), [0.25, 0.75]);
    assert_eq!(
        (
            mixture.obs_dim(),
            mixture.n_actions(),
            mixture.max_episode_steps()
        ),
        (14, 3, 20)
    );
    for split in [Split::Train, Split::Test] {
        let (mut a, mut b) = (rng(5), rng(5));
        let n = 2000;
        let mut n_ar1 = 0;
        for _ in 0..n {
            let env = mixture.sample(split, &mut a).unwrap();
            let (index, same) = mixture.sample_with_component(split, &mut b).unwrap();
            assert_eq!(
                env.task_info(),
                same.task_info(),
                "sample is sample_with_component"
            );
            let is_ar1 = process_of(&env).kind() == ProcessKind::Ar1;
            assert_eq!(is_ar1, index == 0);
            n_ar1 += usize::from(is_ar1);
            // Each component keeps its split: the seed lies in the split's seed space.
            assert_eq!(env.task_info().split, split);
            let TaskKind::Synthetic { seed, .. } = env.task_info().kind else {
                unreachable!("checked above")
            };
            assert_eq!(SyntheticTasks::split_of_seed(seed), split);
        }
        // Binomial(2000, 0.25): mean 500, sd 19.4; four sd either side.
        assert!(
            (422..=578).contains(&n_ar1),
            "{split:?}: {n_ar1} AR(1) of {n}"
        );
    }

    // A real-data component keeps its held-out asset out of training.
    let split = AssetSplit {
        held_out: vec!["CCC".into()],
        test_start: None,
    };
    let assets = MarketTasks::multi_asset(&three_assets(300), &split, config(20)).unwrap();
    let ar1 = SyntheticTasks::new(ProcessSource::Ar1(Ar1Family::default()), 100, config(20));
    let mixture =
        MixtureTasks::new(vec![(1.0, Box::new(assets)), (1.0, Box::new(ar1.unwrap()))]).unwrap();
    let mut r = rng(6);
    let mut n_assets = [0, 0];
    for (k, split) in [Split::Train, Split::Test].into_iter().enumerate() {
        for _ in 0..200 {
            let (index, env) = mixture.sample_with_component(split, &mut r).unwrap();
            assert_eq!(env.task_info().split, split);
            if index == 0 {
                n_assets[k] += 1;
                let symbol = env.task_info().symbol.as_deref();
                assert_eq!(symbol == Some("CCC"), split == Split::Test, "{symbol:?}");
            }
        }
    }
    assert!(
        n_assets.iter().all(|&n| (70..=130).contains(&n)),
        "{n_assets:?}"
    );
}

#[test]
fn mixture_components_must_agree_and_weights_must_be_positive() {
    let target = || SyntheticTasks::new(ProcessSource::Ar1(Ar1Family::default()), 100, config(20));
    let sizing = TradingConfig {
        actions: ActionSpace::SIZING,
        ..config(30)
    };
    let sized = SyntheticTasks::new(ProcessSource::Ar1(Ar1Family::default()), 100, sizing);
    let err = MixtureTasks::new(vec![
        (1.0, Box::new(target().unwrap())),
        (1.0, Box::new(sized.unwrap())),
    ])
    .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::MixtureMismatch {
                index: 1,
                what: "n_actions",
                expected: 3,
                found: 4,
                name,
            } if name == "ar1-family"
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "mixture component 1 (ar1-family) has n_actions = 4, but component 0 has 3"
    );
    assert!(matches!(
        MixtureTasks::new(Vec::new()),
        Err(Error::InvalidConfig {
            field: "components",
            ..
        })
    ));
    for weight in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            MixtureTasks::new(vec![(weight, Box::new(target().unwrap()))]),
            Err(Error::InvalidConfig {
                field: "weight",
                ..
            })
        ));
    }
    // Episodes may differ in length: the mixture's bound is the longest.
    let long = SyntheticTasks::new(ProcessSource::Ar1(Ar1Family::default()), 100, config(40));
    let mixture = MixtureTasks::new(vec![
        (1.0, Box::new(target().unwrap())),
        (2.0, Box::new(long.unwrap())),
    ])
    .unwrap();
    assert_eq!(mixture.max_episode_steps(), 40);
    assert_eq!(mixture.n_components(), 2);
    assert!(
        mixture
            .name()
            .starts_with("mixture(ar1-family:0.333, ar1-family:0.667")
    );
}

/// `Σ_j P(i → j)·e^{μ_j} − 1`, straight from the definition.
fn regime_expected_return(params: &RegimeParams, state: usize) -> f64 {
    let mut gross = 0.0;
    for (j, next) in params.states.iter().enumerate() {
        gross += params.transition[state][j] * next.drift.exp();
    }
    gross - 1.0
}

#[test]
fn regime_oracle_acts_on_the_true_state_of_every_bar() {
    let trading = TradingConfig {
        cost_rate: 2e-4,
        ..config(50)
    };
    let dist = randomized(vec![ProcessKind::Regime], 600, trading);
    let mut r = rng(21);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..5 {
        let env = dist.sample(Split::Test, &mut r).unwrap();
        let TaskKind::Synthetic {
            process: MarketProcess::Regime(params),
            regimes: Some(states),
            ..
        } = &env.task_info().kind
        else {
            panic!(
                "a regime task carries its states: {:?}",
                env.task_info().kind
            );
        };
        let oracle = MarketOracle::for_task(&env).expect("a synthetic task has an oracle");
        let closes = env.trading().market().closes();
        assert_eq!(states.len(), closes.len());
        for (t, &state) in states.iter().enumerate() {
            let g = regime_expected_return(params, state);
            let direct = if g > 2e-4 {
                TargetAction::Buy
            } else if g < -2e-4 {
                TargetAction::Sell
            } else {
                TargetAction::Hold
            };
            assert!((oracle.expected_return(t, closes).unwrap() - g).abs() < 1e-15);
            assert_eq!(oracle.action(t, closes).unwrap(), direct, "bar {t}");
            seen.insert(direct);
        }
        // Bars outside the series, and closes of another series, are errors.
        assert!(matches!(
            oracle.action(closes.len(), closes),
            Err(Error::BarOutOfRange { bar, len }) if bar == closes.len() && len == closes.len()
        ));
        assert!(matches!(
            oracle.action(0, &closes[1..]),
            Err(Error::OracleSeriesMismatch {
                states: 600,
                closes: 599
            })
        ));
    }
    assert_eq!(
        seen.len(),
        3,
        "bull, bear and quiet states all occur: {seen:?}"
    );
    assert!(matches!(
        MarketOracle::new(&MarketProcess::Regime(RegimeParams::default()), None, 0.001),
        Err(Error::InvalidConfig {
            field: "regimes",
            ..
        })
    ));
    assert!(matches!(
        MarketOracle::new(
            &MarketProcess::Regime(RegimeParams::default()),
            Some(&[4]),
            0.001
        ),
        Err(Error::InvalidConfig {
            field: "regimes",
            ..
        })
    ));
}

#[test]
fn market_oracle_matches_the_generators_expected_return_for_every_family() {
    for kind in ProcessKind::ALL {
        let generated = SyntheticConfig::new(kind.default_process())
            .generate(300, 8)
            .unwrap();
        let oracle =
            MarketOracle::new(&generated.params, generated.regimes.as_deref(), 0.001).unwrap();
        let closes = generated.series.closes();
        // From bar 1 on (bar 0 has no return for AR(1)); the oracle reads r_t from the closes,
        // the generator from its drawn log returns: equal up to rounding.
        for t in 1..closes.len() {
            let (ours, theirs) = (
                oracle.expected_return(t, closes).unwrap(),
                generated.expected_return(t),
            );
            assert!(
                (ours - theirs).abs() < 1e-12,
                "{kind} bar {t}: {ours} vs {theirs}"
            );
        }
        if kind == ProcessKind::Ar1 {
            // The AR(1) oracle of the old interface takes the same actions.
            let MarketProcess::Ar1(params) = generated.params else {
                unreachable!("an AR(1) process")
            };
            let ar1 = Ar1Oracle::new(params, 0.001).unwrap();
            for t in 1..closes.len() {
                let r = (closes[t] / closes[t - 1]).ln();
                assert_eq!(oracle.action(t, closes).unwrap(), ar1.action(r));
            }
            // Bar 0: the stationary mean, exp(μ + σ²/(2(1 − φ²))) − 1.
            let variance = params.volatility.powi(2) / (1.0 - params.phi.powi(2));
            let g0 = (params.drift + 0.5 * variance).exp_m1();
            assert!((oracle.expected_return(0, closes).unwrap() - g0).abs() < 1e-15);
        }
    }
}

#[test]
fn market_oracle_sizes_positions_toward_the_expected_return() {
    let gbm = |drift| {
        let process = MarketProcess::Gbm(GbmParams {
            drift,
            volatility: 0.01,
        });
        MarketOracle::new(&process, None, 0.001).unwrap()
    };
    let closes = [100.0, 101.0];
    let sizing = ActionSpace::SIZING;
    let next = |oracle: &MarketOracle, prev: f64| {
        let action = oracle.action_index(1, &closes, prev, &sizing).unwrap();
        sizing.next_position(action, prev).unwrap()
    };
    // g = e^0.005 − 1 > c: the highest reachable position, one step up the grid or, from a
    // short, straight to flat; and stay at +1.
    assert_eq!(next(&gbm(0.005), 0.0), 0.25);
    assert_eq!(next(&gbm(0.005), 0.5), 0.75);
    assert_eq!(next(&gbm(0.005), -0.5), 0.0);
    assert_eq!(next(&gbm(0.005), 1.0), 1.0);
    // g < −c: a long is closed at once (0 is the lowest reachable position), a flat one
    // steps down.
    assert_eq!(next(&gbm(-0.005), 0.75), 0.0);
    assert_eq!(next(&gbm(-0.005), 0.0), -0.25);
    // 0 < |g| < c: a one-bar gain is below the cost, but a drift that lasts is worth holding
    // (GBM plans; see mrl_env::oracle), so the position still moves toward the drift.
    assert_eq!(next(&gbm(0.0005), 0.5), 0.75);
    assert_eq!(next(&gbm(-0.0005), -0.75), -1.0);
    assert_eq!(next(&gbm(0.0), 0.5), 0.5);
    // In the Buy / Sell / Hold space: the myopic threshold rule (`action`) holds below the
    // cost, the planned index (`action_index`) takes the drift's side from a flat or wrong-
    // side position.
    for (drift, myopic, planned) in [
        (0.005, TargetAction::Buy, TargetAction::Buy),
        (-0.005, TargetAction::Sell, TargetAction::Sell),
        (0.0005, TargetAction::Hold, TargetAction::Buy),
        (-0.0005, TargetAction::Hold, TargetAction::Sell),
    ] {
        let oracle = gbm(drift);
        assert_eq!(oracle.action(1, &closes).unwrap(), myopic);
        for prev in [-1.0, 0.0, 0.5] {
            let index = oracle.action_index(1, &closes, prev, &ActionSpace::Target);
            let position = ActionSpace::Target.next_position(index.unwrap(), prev);
            let side = if planned == TargetAction::Buy {
                1.0
            } else {
                -1.0
            };
            assert_eq!(position.unwrap(), side, "drift {drift} from {prev}");
        }
    }
}

/// Total reward of one episode from bar `start`, the action chosen by `policy(env)`.
fn episode_by_index(
    env: &mut TaskEnv,
    start: usize,
    mut policy: impl FnMut(&TaskEnv) -> usize,
) -> f64 {
    env.trading_mut().reset_at(start).unwrap();
    let mut total = 0.0;
    loop {
        let action = policy(env);
        let step = env.step(action).unwrap();
        total += step.reward;
        if step.done() {
            return total;
        }
    }
}

#[test]
fn regime_oracle_beats_buy_and_hold_and_random_in_either_action_space() {
    let randomization = DomainRandomization {
        kinds: vec![ProcessKind::Regime],
        drift: (0.002, 0.004),
        volatility: (0.004, 0.006),
        regime_duration: (50.0, 100.0),
        ..DomainRandomization::default()
    };
    for actions in [ActionSpace::Target, ActionSpace::SIZING] {
        let trading = TradingConfig {
            actions,
            ..config(200)
        };
        let source = ProcessSource::Randomized(randomization.clone());
        let dist = SyntheticTasks::new(source, 300, trading).unwrap();
        let (mut task_rng, mut action_rng) = (rng(31), rng(32));
        let (mut oracle_total, mut random_total, mut hold_total) = (0.0, 0.0, 0.0);
        let n_tasks = 30;
        for _ in 0..n_tasks {
            let mut env = dist.sample(Split::Test, &mut task_rng).unwrap();
            let oracle = MarketOracle::for_task(&env).unwrap();
            let start = *env.trading().valid_starts().start();
            oracle_total += episode_by_index(&mut env, start, |e| oracle.act(e.trading()).unwrap());
            let n_actions = actions.n_actions();
            random_total +=
                episode_by_index(&mut env, start, |_| action_rng.random_range(0..n_actions));
            // Buy, or Increase (to +1 in four steps).
            hold_total += episode_by_index(&mut env, start, |_| 0);
        }
        let n = n_tasks as f64;
        let (oracle, random, hold) = (oracle_total / n, random_total / n, hold_total / n);
        assert!(
            oracle > hold + 0.1 && oracle > random + 0.1,
            "{actions:?}: oracle {oracle}, random {random}, buy-and-hold {hold}"
        );
    }
}
