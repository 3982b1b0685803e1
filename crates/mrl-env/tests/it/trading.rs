//! The trading env: accounting properties, no look-ahead, episode ends, errors.

use mrl_env::{
    ActionSpace, Env, Error, MarketData, SizingAction, TargetAction, TradingConfig, TradingEnv,
    TradingObs,
};
use mrl_features::WARMUP;
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::{market, random_walk, series};

fn config(max_steps: usize, cost_rate: f64) -> TradingConfig {
    TradingConfig {
        max_steps,
        cost_rate,
        ..TradingConfig::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Equity is the product of (1 + step return − cost), the step return is q·(p₁/p₀ − 1)
    /// with q from an independent model of the actions (Hold keeps the position), and the
    /// cost is cost_rate·|Δq| (a flip costs twice).
    #[test]
    fn equity_compounds_net_returns(
        seed in 0u64..1000,
        actions in prop::collection::vec(0usize..3, 1..60),
        cost_rate in 0.0f64..0.01,
        initial in prop::sample::select(vec![-1.0, 0.0, 1.0]),
    ) {
        let closes = random_walk(WARMUP + actions.len() + 1, seed);
        let cfg = TradingConfig { initial_position: initial, ..config(actions.len(), cost_rate) };
        let mut env = TradingEnv::new(market(&closes), cfg).unwrap();
        env.reset_at(WARMUP).unwrap();
        let (mut q, mut product) = (initial, 1.0_f64);
        for (k, &action) in actions.iter().enumerate() {
            let t = WARMUP + k;
            let q_new = match TargetAction::from_index(action).unwrap() {
                TargetAction::Buy => 1.0,
                TargetAction::Sell => -1.0,
                TargetAction::Hold => q,
            };
            let step = env.step(action).unwrap();
            let reward = step.reward;
            let s = *env.state();
            let step_return = q_new * (closes[t + 1] / closes[t] - 1.0);
            let cost = cost_rate * (q_new - q).abs();
            if action == TargetAction::Hold.index() {
                prop_assert_eq!(s.position, q);
                prop_assert_eq!(s.cost, 0.0);
            }
            if q_new == -q && q != 0.0 {
                prop_assert!((s.cost - 2.0 * cost_rate).abs() < 1e-15);
            }
            prop_assert!((s.step_return - step_return).abs() < 1e-14);
            prop_assert!((s.cost - cost).abs() < 1e-15);
            prop_assert!((reward - (step_return - cost)).abs() < 1e-14);
            product *= 1.0 + step_return - cost;
            prop_assert!((s.equity - product).abs() < 1e-12 * product.abs().max(1.0));
            prop_assert_eq!(s.bar, t + 1);
            q = q_new;
        }
        prop_assert!(!env.state().running);
    }

    /// Position sizing stays in [−1, 1] on its grid, moves at most one step at a time
    /// (except Close, which goes flat), and books the same accounting.
    #[test]
    fn sizing_positions_stay_on_the_bounded_grid(
        seed in 0u64..1000,
        actions in prop::collection::vec(0usize..4, 1..80),
        step_size in prop::sample::select(vec![0.1, 0.25, 0.3, 0.5, 1.0]),
    ) {
        let closes = random_walk(WARMUP + actions.len() + 1, seed);
        let cfg = TradingConfig {
            actions: ActionSpace::Sizing { position_step: step_size },
            ..config(actions.len(), 0.001)
        };
        let mut env = TradingEnv::new(market(&closes), cfg).unwrap();
        prop_assert_eq!(env.n_actions(), 4);
        env.reset_at(WARMUP).unwrap();
        let mut product = 1.0;
        for &action in &actions {
            let before = env.position();
            let obs_position = env.step(action).unwrap().obs[TradingObs::POSITION];
            let s = *env.state();
            prop_assert!((-1.0..=1.0).contains(&s.position));
            prop_assert_eq!(obs_position, s.position as f32);
            let k = (s.position / step_size).round();
            prop_assert!((s.position - k * step_size).abs() < 1e-9 || s.position.abs() == 1.0);
            match SizingAction::from_index(action).unwrap() {
                SizingAction::Close => prop_assert_eq!(s.position, 0.0),
                SizingAction::Maintain => prop_assert_eq!(s.position, before),
                SizingAction::Increase => {
                    prop_assert!(s.position >= before && s.position - before <= step_size + 1e-9)
                }
                SizingAction::Decrease => {
                    prop_assert!(s.position <= before && before - s.position <= step_size + 1e-9)
                }
            }
            prop_assert!((s.cost - 0.001 * (s.position - before).abs()).abs() < 1e-15);
            product *= 1.0 + s.net_return;
            prop_assert!((s.equity - product).abs() < 1e-12);
        }
    }

    /// An observation at bar t depends only on bars ≤ t: perturbing later bars changes no
    /// observation up to t.
    #[test]
    fn observations_never_look_ahead(
        seed in 0u64..1000,
        cut in 0usize..30,
        actions in prop::collection::vec(0usize..3, 30),
        // Below 2: a short through a doubling would be bankrupt and end the episode early.
        factor in 0.5f64..1.8,
    ) {
        let closes = random_walk(WARMUP + 31, seed);
        let t_cut = WARMUP + cut;
        let mut perturbed = closes.clone();
        for (i, close) in perturbed.iter_mut().enumerate().skip(t_cut + 1) {
            *close *= factor * (1.0 + 0.01 * (i as f64).sin());
        }
        let trajectory = |closes: &[f64]| {
            let mut env = TradingEnv::new(market(closes), config(30, 0.001)).unwrap();
            let mut observations = vec![env.reset_at(WARMUP).unwrap().to_vec()];
            for &action in &actions {
                observations.push(env.step(action).unwrap().obs.to_vec());
            }
            observations
        };
        let (a, b) = (trajectory(&closes), trajectory(&perturbed));
        // observations[k] is the observation of bar WARMUP + k.
        for k in 0..=cut {
            prop_assert_eq!(&a[k], &b[k], "bar {}", WARMUP + k);
        }
        if !(0.99..=1.01).contains(&factor) {
            prop_assert_ne!(&a[cut + 1], &b[cut + 1]);
        }
    }
}

#[test]
fn a_flip_costs_twice_an_entry() {
    let closes = vec![100.0; WARMUP + 4];
    let mut env = TradingEnv::new(market(&closes), config(3, 0.001)).unwrap();
    env.reset_at(WARMUP).unwrap();
    env.step(TargetAction::Buy.index()).unwrap();
    assert_eq!(env.state().cost, 0.001);
    env.step(TargetAction::Sell.index()).unwrap();
    assert_eq!(env.state().cost, 0.002);
    env.step(TargetAction::Hold.index()).unwrap();
    assert_eq!(env.state().cost, 0.0);
    assert!((env.equity() - 0.999 * 0.998).abs() < 1e-15);
}

#[test]
fn observation_layout_holds_features_position_pnl_elapsed() {
    let closes = random_walk(WARMUP + 11, 5);
    let market = market(&closes);
    let cfg = TradingConfig {
        initial_position: -1.0,
        ..config(10, 0.0)
    };
    let mut env = TradingEnv::new(market.clone(), cfg).unwrap();
    assert_eq!(env.obs_dim(), TradingObs::DIM);
    let obs = env.reset_at(WARMUP).unwrap().to_vec();
    assert_eq!(obs.len(), 14);
    assert_eq!(&obs[TradingObs::FEATURES], market.features(WARMUP).unwrap());
    assert_eq!(
        (
            obs[TradingObs::POSITION],
            obs[TradingObs::PNL],
            obs[TradingObs::ELAPSED]
        ),
        (-1.0, 0.0, 0.0)
    );
    for k in 1..=10 {
        let obs = env.step(TargetAction::Hold.index()).unwrap().obs.to_vec();
        // Short one unit, no cost: equity = Π (1 − (p_{t+1}/p_t − 1)).
        let expected_pnl = (WARMUP..WARMUP + k)
            .map(|t| 1.0 - (closes[t + 1] / closes[t] - 1.0))
            .product::<f64>()
            - 1.0;
        assert!((f64::from(obs[TradingObs::PNL]) - expected_pnl).abs() < 1e-6);
        assert_eq!(
            &obs[TradingObs::FEATURES],
            market.features(WARMUP + k).unwrap()
        );
        assert!((obs[TradingObs::ELAPSED] - k as f32 / 10.0).abs() < 1e-7);
    }
}

#[test]
fn bankruptcy_terminates_and_a_time_limit_truncates() {
    // A short position through a tripling price loses everything.
    let mut closes = vec![100.0; WARMUP + 10];
    closes[WARMUP + 2] = 300.0;
    closes[WARMUP + 3] = 300.0;
    let mut env = TradingEnv::new(market(&closes), config(5, 0.001)).unwrap();
    env.reset_at(WARMUP).unwrap();
    let first = env.step(TargetAction::Sell.index()).unwrap();
    assert!(!first.terminated && !first.truncated);
    let crash = env.step(TargetAction::Hold.index()).unwrap();
    assert!(crash.terminated && !crash.truncated && crash.done());
    assert!(env.equity() <= 0.0);
    assert!(matches!(env.step(0), Err(Error::EpisodeNotRunning)));

    // A stop level terminates earlier; at the last step of an episode, termination wins.
    let mut closes = vec![100.0; WARMUP + 10];
    closes[WARMUP + 2] = 40.0;
    let cfg = TradingConfig {
        stop_equity: 0.5,
        ..config(2, 0.0)
    };
    let mut env = TradingEnv::new(market(&closes), cfg).unwrap();
    env.reset_at(WARMUP).unwrap();
    assert!(!env.step(TargetAction::Buy.index()).unwrap().done());
    let last = env.step(TargetAction::Hold.index()).unwrap();
    assert!(last.terminated && !last.truncated);

    // The same path held flat reaches the time limit: truncated only.
    let mut env = TradingEnv::new(market(&closes), config(2, 0.0)).unwrap();
    env.reset_at(WARMUP).unwrap();
    env.step(TargetAction::Hold.index()).unwrap();
    let last = env.step(TargetAction::Hold.index()).unwrap();
    assert!(last.truncated && !last.terminated);
}

#[test]
fn a_series_too_short_for_one_episode_is_an_error_naming_lengths() {
    let max_steps = 20;
    let needed = WARMUP + max_steps + 1;
    let short = market(&random_walk(needed - 1, 1));
    match TradingEnv::new(short, config(max_steps, 0.001)) {
        Err(Error::SeriesTooShort {
            len,
            needed: n,
            warmup,
            max_steps: m,
        }) => assert_eq!((len, n, warmup, m), (needed - 1, needed, WARMUP, max_steps)),
        other => panic!("expected SeriesTooShort, got {other:?}"),
    }
    let exact = TradingEnv::new(market(&random_walk(needed, 1)), config(max_steps, 0.001)).unwrap();
    assert_eq!(exact.valid_starts(), WARMUP..=WARMUP);
    let message = TradingEnv::new(market(&random_walk(30, 1)), config(max_steps, 0.001))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("30 bars") && message.contains("47 bars needed"),
        "{message}"
    );
}

#[test]
fn same_seed_same_episodes() {
    let market = market(&random_walk(500, 3));
    let run = |seed: u64| {
        let mut env = TradingEnv::new(market.clone(), config(50, 0.001)).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut trace = vec![];
        for _ in 0..3 {
            env.reset(&mut rng).unwrap();
            trace.push(env.state().start as f64);
            for k in 0..50 {
                trace.push(env.step(k % 3).unwrap().reward);
            }
        }
        trace
    };
    assert_eq!(run(11), run(11));
    assert_ne!(run(11), run(12));
}

#[test]
fn reward_scale_scales_the_reward_not_the_equity() {
    let closes = random_walk(WARMUP + 6, 8);
    let mut plain = TradingEnv::new(market(&closes), config(5, 0.001)).unwrap();
    let cfg = TradingConfig {
        reward_scale: 100.0,
        ..config(5, 0.001)
    };
    let mut scaled = TradingEnv::new(market(&closes), cfg).unwrap();
    plain.reset_at(WARMUP).unwrap();
    scaled.reset_at(WARMUP).unwrap();
    for action in [0, 2, 1, 1, 2] {
        let a = plain.step(action).unwrap().reward;
        let b = scaled.step(action).unwrap().reward;
        assert!((b - 100.0 * a).abs() < 1e-12);
        assert_eq!(plain.equity(), scaled.equity());
    }
}

#[test]
fn precomputed_features_must_cover_every_bar() {
    let closes = random_walk(80, 2);
    let features = mrl_features::compute_features(&closes[..79]).unwrap();
    assert!(matches!(
        MarketData::from_features(series(&closes), &features),
        Err(Error::FeatureRowsMismatch { rows: 79, bars: 80 })
    ));
    let market = MarketData::new(series(&closes)).unwrap();
    assert_eq!(market.len(), 80);
    assert_eq!(market.feature_matrix().len(), 80 * 11);
    assert!((market.periods_per_year().unwrap() - 8766.0).abs() < 1.0);
}

#[test]
fn invalid_actions_are_errors() {
    let mut env = TradingEnv::new(market(&random_walk(60, 2)), config(5, 0.001)).unwrap();
    assert!(matches!(env.step(0), Err(Error::EpisodeNotRunning)));
    env.reset_at(WARMUP).unwrap();
    assert!(matches!(
        env.step(3),
        Err(Error::InvalidAction {
            action: 3,
            n_actions: 3
        })
    ));
}
