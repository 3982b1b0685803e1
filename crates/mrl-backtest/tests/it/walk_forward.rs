//! The engine: no look-ahead, window stepping, baselines' accounting, determinism.

use candle_core::Device;
use mrl_agent::{AgentConfig, Policy, PolicyKind, TransformerConfig};
use mrl_backtest::{
    ActionMode, Error, Policies, WalkForwardConfig, backtest, plan_windows, run_policy,
};
use mrl_data::MarketProcess;
use mrl_env::{MarketData, MarketOracle};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::common::{
    agent, ar1_params, config, daily_weekdays, decisive_agent, hourly, perturb_from,
};

fn positions(
    series: &mrl_data::BarSeries,
    cfg: &WalkForwardConfig,
    seed: Option<u64>,
) -> Vec<Vec<Vec<f64>>> {
    let market = MarketData::new(series.clone()).unwrap().shared();
    let windows = plan_windows(market.timestamps(), cfg).unwrap();
    let policy = decisive_agent(3);
    let mut rng = seed.map(ChaCha8Rng::seed_from_u64);
    run_policy(&market, &windows, &policy, cfg, rng.as_mut())
        .unwrap()
        .positions
}

#[test]
fn actions_in_a_window_ignore_every_later_bar() {
    let series = hourly(600, 11);
    let cfg = config(300);
    let windows = plan_windows(series.timestamps(), &cfg).unwrap();
    for seed in [None, Some(5)] {
        let base = positions(&series, &cfg, seed);
        let distinct: std::collections::BTreeSet<i64> = base
            .iter()
            .flatten()
            .flatten()
            .map(|q| (*q * 4.0) as i64)
            .collect();
        assert!(
            distinct.len() >= 2,
            "the test agent must not be constant: {distinct:?}"
        );
        let mut changed_later = false;
        for w in [1usize, 3] {
            // Bars from the close after the window's last decision bar on.
            let perturbed = positions(&perturb_from(&series, windows[w].eval.end), &cfg, seed);
            assert_eq!(base[..=w], perturbed[..=w], "window {w}, seed {seed:?}");
            changed_later |= base[w + 1..] != perturbed[w + 1..];
        }
        assert!(
            changed_later,
            "perturbing the future must change later windows (seed {seed:?})"
        );
    }
}

#[test]
fn each_action_ignores_the_bars_after_its_own() {
    let series = hourly(600, 12);
    let cfg = config(300);
    let windows = plan_windows(series.timestamps(), &cfg).unwrap();
    let base = positions(&series, &cfg, None);
    let w = 2;
    for offset in [0usize, 7, 25, 39] {
        let t = windows[w].eval.start + offset;
        let perturbed = positions(&perturb_from(&series, t + 1), &cfg, None);
        assert_eq!(base[..w], perturbed[..w]);
        let eval = base[w].len() - 1;
        assert_eq!(
            base[w][..eval],
            perturbed[w][..eval],
            "adaptation of window {w}"
        );
        assert_eq!(
            base[w][eval][..=offset],
            perturbed[w][eval][..=offset],
            "bar {t}"
        );
    }
}

#[test]
fn windows_cover_the_test_period_once_in_order_after_their_adaptation() {
    let series = hourly(530, 1);
    let cfg = config(300);
    let policy = agent(PolicyKind::Rl2, 1);
    let bt = backtest(&series, &Policies::new(&policy), &cfg).unwrap();
    let bars: Vec<usize> = bt.records["rl2"].iter().map(|r| r.bar).collect();
    assert_eq!(bars, (300..529).collect::<Vec<_>>());
    for (name, records) in &bt.records {
        assert_eq!(records.len(), 229, "{name}");
        assert!(
            records
                .windows(2)
                .all(|p| p[0].window <= p[1].window && p[0].bar + 1 == p[1].bar)
        );
    }
    assert_eq!(bt.windows.len(), 6); // 5 × 40 + 29
    for w in &bt.windows {
        assert_eq!(w.adaptation.len(), 2);
        assert!(w.adaptation.iter().all(|r| r.end <= w.eval.start));
        assert!(w.adaptation.windows(2).all(|p| p[0].end == p[1].start));
        assert_eq!(w.adaptation[1].end, w.eval.start);
    }
    // The first window's adaptation reaches back before the test start: allowed (past data).
    assert_eq!(bt.windows[0].adaptation[0].start, 220);
    let ts = series.timestamps();
    assert_eq!(
        (bt.report.span.start, bt.report.span.end),
        (ts[300], ts[528])
    );
}

#[test]
fn buy_and_hold_pays_one_entry_and_flat_does_nothing() {
    let series = daily_weekdays(400);
    let cfg = WalkForwardConfig {
        cost_rate: 0.002,
        ..config(250)
    };
    let policy = agent(PolicyKind::Rl2, 2);
    let bt = backtest(&series, &Policies::new(&policy), &cfg).unwrap();
    let closes = series.closes();
    let (first, last) = (250, series.len() - 1);
    let bh = &bt.report.policies["buy_and_hold"].metrics;
    let exact =
        (closes[first + 1] / closes[first] - 0.002) * (closes[last] / closes[first + 1]) - 1.0;
    assert!(
        (bh.total_return - exact).abs() < 1e-9,
        "{} vs {exact}",
        bh.total_return
    );
    let naive = closes[last] / closes[first] - 1.0 - 0.002;
    assert!(
        (bh.total_return - naive).abs()
            < 0.002 * (closes[last] / closes[first + 1] - 1.0).abs() + 1e-9
    );
    assert_eq!(bh.trades, 1);
    assert_eq!(bh.exposure, 1.0);
    let flat = &bt.report.policies["flat"];
    assert_eq!(
        (
            flat.metrics.total_return,
            flat.metrics.trades,
            flat.metrics.exposure
        ),
        (0.0, 0, 0.0)
    );
    assert!(flat.adaptation_curve.iter().all(|&r| r == 0.0));
    assert!(
        bt.records["flat"]
            .iter()
            .all(|r| r.equity == 1.0 && r.cost == 0.0 && r.reward.to_bits() == 0)
    );
    // Buy-and-hold's curve: each episode from flat, one entry cost, then the price path.
    let curve = &bt.report.policies["buy_and_hold"].adaptation_curve;
    assert_eq!(curve.len(), 3);
    let w0 = &bt.windows[0];
    let mut expected = 0.0;
    for w in &bt.windows {
        let r = w.eval.clone();
        expected += r
            .clone()
            .map(|t| closes[t + 1] / closes[t] - 1.0)
            .sum::<f64>()
            - 0.002;
    }
    assert!((curve[2] - expected / bt.windows.len() as f64).abs() < 1e-12);
    assert_eq!(w0.eval.start, 250);
}

#[test]
fn periods_per_year_follow_the_calendar() {
    let policy = agent(PolicyKind::Rl2, 4);
    let daily = backtest(&daily_weekdays(400), &Policies::new(&policy), &config(250)).unwrap();
    // Weekday sessions: 252 a year (the calendar of the bars, not the 261 weekdays a span
    // of calendar time holds).
    assert_eq!(daily.report.periods_per_year, 252.0);
    let hourly = backtest(&hourly(450, 2), &Policies::new(&policy), &config(300)).unwrap();
    assert!(
        (hourly.report.periods_per_year - 8766.0).abs() < 10.0,
        "{}",
        hourly.report.periods_per_year
    );
    let m = &hourly.report.policies["buy_and_hold"].metrics;
    let returns: Vec<f64> = hourly.records["buy_and_hold"]
        .iter()
        .map(|r| r.reward)
        .collect();
    assert_eq!(
        m.sharpe,
        mrl_backtest::sharpe(&returns, hourly.report.periods_per_year)
    );
}

#[test]
fn sampled_runs_are_deterministic_per_seed_and_report_a_spread() {
    let series = hourly(450, 3);
    let policy = agent(PolicyKind::Rl2, 5);
    let cfg = WalkForwardConfig {
        mode: ActionMode::Sampled { seeds: 3 },
        seed: 9,
        ..config(300)
    };
    let a = backtest(&series, &Policies::new(&policy), &cfg).unwrap();
    let b = backtest(&series, &Policies::new(&policy), &cfg).unwrap();
    assert_eq!(a.report, b.report);
    assert_eq!(a.records, b.records);
    let spread = a.report.policies["rl2"].seeds.as_ref().unwrap();
    assert_eq!(spread.seeds, 3);
    assert_eq!(spread.per_seed.len(), 3);
    assert!(
        spread.per_seed.windows(2).any(|p| p[0] != p[1]),
        "seeds must differ"
    );
    // Sampled actions trade, so every seed's Sharpe ratio is defined and the mean covers 3.
    let sharpes: Vec<f64> = spread.per_seed.iter().filter_map(|m| m.sharpe).collect();
    assert_eq!(sharpes.len(), 3);
    assert_eq!(spread.sharpe.unwrap().n, 3);
    let mean = sharpes.iter().sum::<f64>() / 3.0;
    assert!((a.report.policies["rl2"].metrics.sharpe.unwrap() - mean).abs() < 1e-12);
    assert!(a.report.policies["random"].seeds.is_some());
    assert!(a.report.policies["buy_and_hold"].seeds.is_none());
    let other = WalkForwardConfig { seed: 10, ..cfg };
    let c = backtest(&series, &Policies::new(&policy), &other).unwrap();
    assert_ne!(a.records["rl2"], c.records["rl2"]);
}

#[test]
fn oracle_and_mlp_join_the_report_and_the_oracle_profits_from_momentum() {
    let series = hourly(1400, 21);
    // An untrained agent whose greedy actions react to its inputs (a plain untrained net
    // holds one action throughout; flat, its Sharpe ratio would be undefined).
    let rl2 = decisive_agent(6);
    let mlp = agent(PolicyKind::Mlp, 7);
    let oracle = MarketOracle::new(&MarketProcess::Ar1(ar1_params()), None, 0.001).unwrap();
    let policies = Policies {
        rl2: &rl2,
        mlp: Some(&mlp),
        oracle: Some(oracle),
        others: vec![],
    };
    let bt = backtest(&series, &policies, &config(400)).unwrap();
    let keys: Vec<&str> = bt.report.policies.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "buy_and_hold",
            "flat",
            "ma_crossover",
            "macd",
            "mlp",
            "oracle",
            "random",
            "rl2",
            "rsi_reversion",
            "ts_momentum"
        ]
    );
    let p = &bt.report.policies;
    let sharpe = |name: &str| p[name].metrics.sharpe.unwrap();
    assert!(sharpe("oracle") > 1.0, "{}", sharpe("oracle"));
    assert!(sharpe("oracle") > sharpe("random"));
    // Sharpe difference intervals: rl2 minus each other policy, none for rl2 itself, and
    // none against flat, whose Sharpe ratio is undefined (its returns never vary).
    assert!(p["rl2"].sharpe_diff_ci.is_none());
    assert!(p["flat"].metrics.sharpe.is_none() && p["flat"].sharpe_diff_ci.is_none());
    for name in ["mlp", "oracle", "buy_and_hold", "random"] {
        let ci = p[name].sharpe_diff_ci.unwrap();
        assert!(ci.lo <= ci.hi, "{name}");
        assert_eq!(ci.resamples + ci.dropped, 1000, "{name}");
        let point = sharpe("rl2") - sharpe(name);
        assert!((ci.point - point).abs() < 1e-9, "{name}");
    }
    assert!(
        p["oracle"].sharpe_diff_ci.unwrap().hi < 0.0,
        "the oracle must beat an untrained agent"
    );
}

#[test]
fn errors_name_lengths_and_sizes() {
    let series = hourly(200, 4);
    let policy = agent(PolicyKind::Rl2, 1);
    match backtest(
        &series,
        &Policies::new(&policy),
        &WalkForwardConfig::default(),
    ) {
        Err(Error::SeriesTooShort {
            len: 200,
            test_start: 140,
            adaptation_bars: 400,
            window_len: 200,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    let narrow = mrl_agent::Policy::new(
        &mrl_agent::AgentConfig {
            obs_dim: 10,
            hidden: 8,
            ..Default::default()
        },
        &candle_core::Device::Cpu,
        1,
    )
    .unwrap();
    let err = backtest(&hourly(450, 4), &Policies::new(&narrow), &config(300)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InputMismatch {
                policy_obs: 10,
                env_obs: 14,
                env_input: 19,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("input 15"), "{err}");
    let sizing = WalkForwardConfig {
        actions: mrl_env::ActionSpace::SIZING,
        ..config(300)
    };
    let oracle = MarketOracle::new(&MarketProcess::Ar1(ar1_params()), None, 0.001).unwrap();
    let policies = Policies {
        oracle: Some(oracle),
        ..Policies::new(&policy)
    };
    // The 3-action agent does not fit a 4-action space either: the size check comes first.
    assert!(matches!(
        backtest(&hourly(450, 4), &policies, &sizing),
        Err(Error::InputMismatch { env_actions: 4, .. })
    ));
}

#[test]
fn booking_matches_the_env_accounting_episode_by_episode() {
    use mrl_env::{Env, TargetAction, TradingConfig, TradingEnv};
    let series = hourly(600, 13);
    let cfg = WalkForwardConfig {
        cost_rate: 0.003,
        ..config(300)
    };
    let market = MarketData::new(series.clone()).unwrap().shared();
    let windows = plan_windows(market.timestamps(), &cfg).unwrap();
    let run = run_policy(&market, &windows, &decisive_agent(4), &cfg, None).unwrap();
    let closes = market.closes();
    for (window, episodes) in windows.iter().zip(&run.positions) {
        for (bars, positions) in window.episodes().zip(episodes) {
            assert_eq!(positions.len(), bars.len());
            let trading = TradingConfig {
                max_steps: bars.len(),
                cost_rate: 0.003,
                ..Default::default()
            };
            let mut env = TradingEnv::new(market.clone(), trading).unwrap();
            env.reset_at(bars.start).unwrap();
            let mut env_return = 0.0;
            for &q in positions {
                let action = if q == env.position() {
                    TargetAction::Hold
                } else if q > 0.0 {
                    TargetAction::Buy
                } else {
                    TargetAction::Sell
                };
                env_return += env.step(action.index()).unwrap().reward;
                assert_eq!(env.position(), q);
            }
            let booked = mrl_backtest::episode_return(closes, bars.start, positions, 0.003);
            assert!(
                (booked - env_return).abs() < 1e-12,
                "window {} bars {bars:?}",
                window.index
            );
        }
    }
}

/// A Transformer agent (context 32, shorter than a 40-bar window) whose greedy actions
/// react to its inputs: seeded weights with the policy head scaled by 30.
fn decisive_transformer(seed: u64) -> Policy {
    let config = AgentConfig {
        kind: PolicyKind::Transformer,
        hidden: 16,
        transformer: TransformerConfig {
            layers: 1,
            heads: 2,
            ff_mult: 2,
            context: 32,
        },
        ..Default::default()
    };
    let policy = Policy::new(&config, &Device::Cpu, seed).unwrap();
    let mut tensors = policy.tensors();
    let head = (&tensors["policy_head.weight"] * 30.0).unwrap();
    tensors.insert("policy_head.weight".into(), head);
    Policy::from_tensors(&config, &tensors, &Device::Cpu).unwrap()
}

#[test]
fn the_transformer_trades_through_the_same_engine_without_look_ahead() {
    let series = hourly(600, 13);
    let cfg = config(300);
    let windows = plan_windows(series.timestamps(), &cfg).unwrap();
    let policy = decisive_transformer(4);
    let run = |s: &mrl_data::BarSeries| {
        let market = MarketData::new(s.clone()).unwrap().shared();
        run_policy(&market, &windows, &policy, &cfg, None)
            .unwrap()
            .positions
    };
    let base = run(&series);
    assert_eq!(base.len(), windows.len());
    let distinct: std::collections::BTreeSet<i64> = base
        .iter()
        .flatten()
        .flatten()
        .map(|q| (*q * 4.0) as i64)
        .collect();
    assert!(distinct.len() >= 2, "constant agent: {distinct:?}");
    assert_eq!(base, run(&series), "deterministic");
    let perturbed = run(&perturb_from(&series, windows[1].eval.end));
    assert_eq!(base[..=1], perturbed[..=1]);
    assert_ne!(base[2..], perturbed[2..]);
}
