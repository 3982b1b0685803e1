//! Trader rule baselines: hand-computed positions, no look-ahead, the action-space mapping,
//! and their place in the backtest report and its verdict.

use mrl_agent::PolicyKind;
use mrl_backtest::{
    Baseline, FIXED_BASELINES, Policies, Standing, TraderRule, backtest, plan_windows,
    position_toward, run_baseline,
};
use mrl_env::ActionSpace;
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::common::{agent, config, daily_weekdays, decisive_agent, hourly, perturb_from};

const RULE_KEYS: [&str; 4] = ["ts_momentum", "ma_crossover", "macd", "rsi_reversion"];

/// A Sharpe ratio as `Some` when defined (whether the report holds an `f64` or an
/// `Option<f64>`).
fn defined(sharpe: impl Into<Option<f64>>) -> Option<f64> {
    sharpe.into()
}

#[test]
fn standard_parameters_and_names() {
    let [momentum, crossover, macd, rsi] = TraderRule::standard(Some(8760.0));
    assert_eq!(momentum, TraderRule::TsMomentum { lookback: 8760 });
    assert_eq!(
        crossover,
        TraderRule::MaCrossover {
            fast: 50,
            slow: 200
        }
    );
    assert_eq!(
        macd,
        TraderRule::Macd {
            fast: 12,
            slow: 26,
            signal: 9
        }
    );
    assert_eq!(
        rsi,
        TraderRule::RsiReversion {
            period: 14,
            oversold: 30.0,
            overbought: 70.0
        }
    );
    let names = TraderRule::standard(None).map(|r| r.name());
    assert_eq!(names, RULE_KEYS);
    assert_eq!(
        [momentum, crossover, macd, rsi].map(|r| r.warmup()),
        [8760, 199, 33, 14]
    );
    // One year of the series' calendar, 252 bars without one.
    for (ppy, lookback) in [
        (Some(365.0), 365),
        (Some(251.6), 252),
        (None, 252),
        (Some(0.5), 252),
        (Some(f64::NAN), 252),
    ] {
        assert_eq!(
            TraderRule::ts_momentum(ppy),
            TraderRule::TsMomentum { lookback },
            "{ppy:?}"
        );
    }
}

#[test]
fn momentum_follows_the_sign_of_the_trailing_return() {
    let closes = [10.0, 11.0, 12.0, 13.0, 12.0, 11.0, 10.0, 10.0, 11.0];
    let targets = TraderRule::TsMomentum { lookback: 3 }
        .targets(&closes)
        .unwrap();
    // 13/10, 12/11 up; 11/12, 10/13, 10/12 down; 11/11 unchanged.
    assert_eq!(targets, [0.0, 0.0, 0.0, 1.0, 1.0, -1.0, -1.0, -1.0, 0.0]);
}

#[test]
fn crossover_goes_long_then_short_on_a_rise_and_fall() {
    let closes = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0];
    // SMA2 − SMA4 from bar 3: 3.5−2.5, 4.5−3.5, 5.5−4.5, 5.5−5, 4.5−5, 3.5−4.5, …
    let targets = TraderRule::MaCrossover { fast: 2, slow: 4 }
        .targets(&closes)
        .unwrap();
    assert_eq!(
        targets,
        [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, -1.0, -1.0, -1.0, -1.0]
    );
    // The 50/200 cross on 250 rising bars then a fall: long from bar 199 (the first with
    // a 200-bar average) until SMA50 drops below SMA200.
    let closes: Vec<f64> = (0..400)
        .map(|t| {
            if t < 250 {
                100.0 + t as f64
            } else {
                599.0 - t as f64
            }
        })
        .collect();
    let targets = TraderRule::MA_CROSSOVER.targets(&closes).unwrap();
    assert!(targets[..199].iter().all(|&q| q == 0.0));
    let first_short = targets.iter().position(|&q| q == -1.0).unwrap();
    assert!(targets[199..first_short].iter().all(|&q| q == 1.0));
    assert!(targets[first_short..].iter().all(|&q| q == -1.0));
    // By hand: from bar 299 on the fast window holds falling closes only, SMA50 = 623.5 − t;
    // the slow window holds both legs: at bar 326 it sums 227..=349 and 349..=273, mean
    // 296.855 < SMA50 297.5; at bar 327 228..=349 and 349..=272, mean 297.08 > SMA50 296.5.
    assert_eq!(first_short, 327);
    let mean = |r: std::ops::Range<usize>| closes[r.clone()].iter().sum::<f64>() / r.len() as f64;
    assert!(mean(277..327) > mean(127..327) && mean(278..328) < mean(128..328));
}

#[test]
fn macd_longs_the_rise_and_shorts_the_fall() {
    // +1 % a bar for 60 bars, then −1 % a bar. The bars come from an independent
    // implementation in plain Python (EMAs seeded with the mean of their first n inputs):
    // long on bars 33..=61, short from bar 62 on.
    let closes: Vec<f64> = (0..101)
        .map(|t| {
            if t <= 60 {
                100.0 * 1.01f64.powi(t)
            } else {
                100.0 * 1.01f64.powi(60) * 0.99f64.powi(t - 60)
            }
        })
        .collect();
    let targets = TraderRule::MACD.targets(&closes).unwrap();
    assert!(targets[..33].iter().all(|&q| q == 0.0));
    assert!(targets[33..=61].iter().all(|&q| q == 1.0));
    assert!(targets[62..].iter().all(|&q| q == -1.0));
}

#[test]
fn rsi_shorts_a_run_of_gains_and_buys_a_run_of_losses() {
    // 20 gains of 1, then losses of 1. With Wilder's smoothing the averages after k losses
    // are gain = (13/14)^k and loss = 1 − (13/14)^k, so RSI = 100·(13/14)^k: above 70 for
    // k ≤ 4 (74.3 at k = 4, 69.0 at k = 5), below 30 from k = 17 (30.6 at 16, 28.4 at 17).
    let closes: Vec<f64> = (0..=20)
        .map(|t| 100.0 + t as f64)
        .chain((1..30).map(|k| 120.0 - k as f64))
        .collect();
    let targets = TraderRule::RSI_REVERSION.targets(&closes).unwrap();
    let expected: Vec<f64> = (0..closes.len())
        .map(|t| match t {
            0..14 => 0.0,    // warm-up
            14..=24 => -1.0, // RSI 100 during the gains, > 70 for the first 4 losses
            25..=36 => 0.0,
            _ => 1.0,
        })
        .collect();
    assert_eq!(targets, expected);
}

#[test]
fn targets_map_onto_both_action_spaces() {
    let target = ActionSpace::Target;
    for (prev, goal, expected) in [
        (0.0, 1.0, 1.0),
        (1.0, -1.0, -1.0),
        (-1.0, -1.0, -1.0),
        (1.0, 0.0, 1.0), // no flat action: hold
        (0.0, 0.0, 0.0),
    ] {
        assert_eq!(
            position_toward(&target, prev, goal).unwrap(),
            expected,
            "target space from {prev} toward {goal}"
        );
    }
    let sizing = ActionSpace::SIZING;
    for (prev, goal, expected) in [
        (0.0, 1.0, 0.25),
        (0.75, 1.0, 1.0),
        (1.0, 1.0, 1.0),
        (-1.0, 1.0, 0.0),  // closing is the larger step toward +1
        (0.5, -1.0, 0.0),  // likewise toward −1
        (0.25, -1.0, 0.0), // close and decrease both land on 0
        (0.0, -1.0, -0.25),
        (0.5, 0.0, 0.0),
        (0.0, 0.0, 0.0),
    ] {
        assert_eq!(
            position_toward(&sizing, prev, goal).unwrap(),
            expected,
            "sizing from {prev} toward {goal}"
        );
    }
}

/// Positions of `rule` on `series` under `cfg`.
fn rule_positions(
    series: &mrl_data::BarSeries,
    cfg: &mrl_backtest::WalkForwardConfig,
    rule: TraderRule,
) -> Vec<Vec<Vec<f64>>> {
    let windows = plan_windows(series.timestamps(), cfg).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    run_baseline(
        series.closes(),
        &windows,
        &Baseline::Rule(rule),
        cfg,
        &mut rng,
    )
    .unwrap()
    .positions
}

#[test]
fn rule_positions_ignore_the_bars_after_their_own() {
    let series = hourly(600, 12);
    for actions in [ActionSpace::Target, ActionSpace::SIZING] {
        let cfg = mrl_backtest::WalkForwardConfig {
            actions,
            ..config(300)
        };
        let windows = plan_windows(series.timestamps(), &cfg).unwrap();
        let w = 2;
        let rules = [
            TraderRule::TsMomentum { lookback: 100 },
            TraderRule::MA_CROSSOVER,
            TraderRule::MACD,
            TraderRule::RSI_REVERSION,
        ];
        for rule in rules {
            let base = rule_positions(&series, &cfg, rule);
            let trades = base.iter().flatten().flatten().any(|&q| q != base[0][0][0]);
            assert!(trades, "{rule:?} must trade in this test");
            for offset in [0usize, 13, 39] {
                let t = windows[w].eval.start + offset;
                let perturbed = rule_positions(&perturb_from(&series, t + 1), &cfg, rule);
                assert_eq!(base[..w], perturbed[..w], "{rule:?}");
                let eval = base[w].len() - 1;
                assert_eq!(base[w][..eval], perturbed[w][..eval], "{rule:?}");
                assert_eq!(
                    base[w][eval][..=offset],
                    perturbed[w][eval][..=offset],
                    "{rule:?}, bar {t}"
                );
            }
        }
    }
}

/// A rule with small parameters, so that short series leave the warm-up.
fn small_rule() -> impl Strategy<Value = TraderRule> {
    prop_oneof![
        (1usize..30).prop_map(|lookback| TraderRule::TsMomentum { lookback }),
        (1usize..10, 1usize..20).prop_map(|(fast, extra)| TraderRule::MaCrossover {
            fast,
            slow: fast + extra
        }),
        (1usize..10, 1usize..20, 1usize..10).prop_map(|(fast, extra, signal)| {
            TraderRule::Macd {
                fast,
                slow: fast + extra,
                signal,
            }
        }),
        (1usize..20, 0.0..50.0f64, 50.0..100.0f64).prop_map(|(period, oversold, overbought)| {
            TraderRule::RsiReversion {
                period,
                oversold,
                overbought,
            }
        }),
    ]
}

proptest! {
    #[test]
    fn targets_up_to_t_ignore_later_closes(
        rule in small_rule(),
        steps in prop::collection::vec(-0.05..0.05f64, 2..120),
        cut in 0.0..1.0f64,
        noise in prop::collection::vec(0.5..2.0f64, 120),
    ) {
        let mut close = 100.0;
        let closes: Vec<f64> = steps.iter().map(|r| { close *= 1.0 + r; close }).collect();
        let t = ((closes.len() - 1) as f64 * cut) as usize;
        let mut later = closes.clone();
        for (c, f) in later[t + 1..].iter_mut().zip(&noise) {
            *c *= f;
        }
        let base = rule.targets(&closes).unwrap();
        let perturbed = rule.targets(&later).unwrap();
        prop_assert_eq!(base.len(), closes.len());
        prop_assert!(base.iter().all(|q| [-1.0, 0.0, 1.0].contains(q)));
        prop_assert!(base[..rule.warmup().min(base.len())].iter().all(|&q| q == 0.0));
        prop_assert_eq!(&base[..=t], &perturbed[..=t]);
    }
}

#[test]
fn rules_join_the_report_and_the_verdict_names_the_best_baseline() {
    let rl2 = decisive_agent(4);
    let series = daily_weekdays(700);
    let cfg = config(450);
    let bt = backtest(&series, &Policies::new(&rl2), &cfg).unwrap();
    let p = &bt.report.policies;
    for key in RULE_KEYS {
        let report = &p[key];
        assert!(report.seeds.is_none(), "{key} is deterministic");
        let ci = report.sharpe_diff_ci.unwrap();
        let point =
            defined(p["rl2"].metrics.sharpe).unwrap() - defined(report.metrics.sharpe).unwrap();
        assert!((ci.point - point).abs() < 1e-9, "{key}");
        let json = serde_json::to_value(&bt.report).unwrap();
        assert!(json[key]["sharpe"].is_number(), "{key}");
    }
    // The book follows the rule's targets through the Buy / Sell / Hold actions.
    let ppy = bt.report.periods_per_year;
    let targets = TraderRule::ts_momentum(Some(ppy))
        .targets(series.closes())
        .unwrap();
    // A year of daily weekday bars: 252 trading days (or 261 weekdays, by calendar).
    let TraderRule::TsMomentum { lookback } = TraderRule::ts_momentum(Some(ppy)) else {
        unreachable!()
    };
    assert!((252..=261).contains(&lookback), "{lookback}");
    let mut prev = 0.0;
    for record in &bt.records["ts_momentum"] {
        // Each window's evaluation episode starts flat, as in the env.
        if bt.windows.iter().any(|w| w.eval.start == record.bar) {
            prev = 0.0;
        }
        let expected = position_toward(&ActionSpace::Target, prev, targets[record.bar]).unwrap();
        assert_eq!(record.position, expected, "bar {}", record.bar);
        prev = expected;
    }
    assert!(
        bt.records["ts_momentum"].iter().any(|r| r.position != 0.0),
        "the momentum rule must trade in the test period"
    );
    for key in ["ma_crossover", "macd", "rsi_reversion"] {
        assert!(p[key].metrics.trades > 0, "{key}");
    }

    let verdict = bt.report.verdict().unwrap();
    let (best, best_sharpe) = FIXED_BASELINES
        .iter()
        .filter_map(|&n| Some((n, defined(p[n].metrics.sharpe)?)))
        .fold(
            ("", f64::NEG_INFINITY),
            |a, b| if b.1 > a.1 { b } else { a },
        );
    assert_eq!(verdict.best_baseline, best);
    assert_eq!(verdict.best_sharpe, best_sharpe);
    let rl2_verdict = &verdict.agents[0];
    assert_eq!(rl2_verdict.agent, "rl2");
    assert_eq!(rl2_verdict.ci, p[best].sharpe_diff_ci);
    let diff = defined(p["rl2"].metrics.sharpe).unwrap() - best_sharpe;
    assert_eq!(rl2_verdict.sharpe_diff, Some(diff));
    let ci = rl2_verdict.ci.unwrap();
    let expected = if diff <= 0.0 {
        Standing::DoesNotBeat
    } else if ci.lo > 0.0 {
        Standing::Beats
    } else {
        Standing::Inconclusive
    };
    assert_eq!(rl2_verdict.standing, expected);
    // The table says so.
    let table = bt.report.to_table();
    assert!(table.contains(&verdict.to_string()), "{table}");
    assert!(table.contains(&format!("best fixed baseline by Sharpe: {best} (")));
}
#[test]
fn a_year_of_momentum_longer_than_the_series_stays_flat() {
    // Hourly bars: one year is 8760 bars, more than the 600 here.
    let rl2 = agent(PolicyKind::Rl2, 4);
    let bt = backtest(&hourly(600, 3), &Policies::new(&rl2), &config(300)).unwrap();
    let momentum = &bt.report.policies["ts_momentum"].metrics;
    assert_eq!((momentum.trades, momentum.exposure), (0, 0.0));
    assert!(bt.records["ts_momentum"].iter().all(|r| r.position == 0.0));
}
