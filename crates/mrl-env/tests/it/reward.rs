//! Training rewards in the trading env: the books never depend on the reward, each kind pays
//! its formula on the booked returns, and the reward's state restarts with every episode.

use mrl_env::{
    Env, Error, RewardConfig, RewardState, TargetAction, TradingConfig, TradingEnv, TradingState,
};
use mrl_features::WARMUP;
use proptest::prelude::*;

use crate::{market, random_walk};

/// One of each kind, with non-default parameters where they have any.
fn kinds() -> [RewardConfig; 4] {
    [
        RewardConfig::NetReturn,
        RewardConfig::DifferentialSharpe {
            eta: 0.05,
            initial_std: 0.02,
        },
        RewardConfig::MeanVariance { risk_aversion: 3.0 },
        RewardConfig::DrawdownPenalty { penalty: 2.0 },
    ]
}

/// The booked state after every step and the rewards of one episode from `WARMUP`.
fn run(
    closes: &[f64],
    reward: RewardConfig,
    reward_scale: f64,
    actions: &[usize],
) -> (Vec<TradingState>, Vec<f64>) {
    let cfg = TradingConfig {
        max_steps: actions.len(),
        reward,
        reward_scale,
        ..TradingConfig::default()
    };
    let mut env = TradingEnv::new(market(closes), cfg).unwrap();
    env.reset_at(WARMUP).unwrap();
    let mut states = Vec::new();
    let mut rewards = Vec::new();
    for &action in actions {
        let step = env.step(action).unwrap();
        rewards.push(step.reward);
        let done = step.done();
        states.push(*env.state());
        if done {
            break;
        }
    }
    (states, rewards)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Whatever the reward, the same actions book the same positions, returns, costs and
    /// equity (bit for bit), and the reward is `reward_scale` times the kind's formula
    /// applied to those booked net returns and equities.
    #[test]
    fn the_books_do_not_depend_on_the_reward(
        seed in 0u64..1000,
        actions in prop::collection::vec(0usize..3, 1..80),
        reward_scale in prop::sample::select(vec![1.0, 10.0, 250.0]),
    ) {
        let closes = random_walk(WARMUP + actions.len() + 1, seed);
        let (books, net) = run(&closes, RewardConfig::NetReturn, 1.0, &actions);
        for (state, &reward) in books.iter().zip(&net) {
            // The default is the net return, unchanged.
            prop_assert_eq!(reward.to_bits(), state.net_return.to_bits());
        }
        for kind in kinds() {
            let (other_books, rewards) = run(&closes, kind, reward_scale, &actions);
            prop_assert_eq!(&other_books, &books, "{:?}", kind);
            let mut direct = RewardState::new(kind);
            for (t, (state, &reward)) in books.iter().zip(&rewards).enumerate() {
                let want = reward_scale * direct.reward(state.net_return, state.equity);
                prop_assert_eq!(reward.to_bits(), want.to_bits(), "{:?} step {}", kind, t);
            }
        }
    }
}

#[test]
fn reward_state_restarts_with_every_episode() {
    let closes = random_walk(400, 21);
    for kind in kinds() {
        let cfg = TradingConfig {
            max_steps: 60,
            reward: kind,
            ..TradingConfig::default()
        };
        let mut env = TradingEnv::new(market(&closes), cfg).unwrap();
        let mut episode = |start: usize| -> Vec<f64> {
            env.reset_at(start).unwrap();
            (0..60).map(|k| env.step(k % 3).unwrap().reward).collect()
        };
        let first = episode(100);
        let other = episode(200);
        let again = episode(100);
        assert_eq!(first, again, "{kind:?}");
        assert_ne!(first, other, "{kind:?}");
    }
}

#[test]
fn risk_adjusted_rewards_differ_from_the_net_return() {
    // Long through a falling then rising market: every kind has something to say.
    let mut closes: Vec<f64> = (0..WARMUP + 1).map(|i| 100.0 + i as f64 * 0.01).collect();
    closes.extend((1..=10).map(|k| 100.0 * (1.0 - 0.02 * k as f64)));
    closes.extend((1..=10).map(|k| 80.0 * (1.0 + 0.03 * k as f64)));
    let actions = vec![TargetAction::Buy.index(); 20];
    let (books, net) = run(&closes, RewardConfig::NetReturn, 1.0, &actions);
    assert_eq!(books.len(), 20);

    let (_, sharpe) = run(
        &closes,
        RewardConfig::DifferentialSharpe {
            eta: 0.05,
            initial_std: 0.02,
        },
        1.0,
        &actions,
    );
    // The first step: D_1 = r_1 / initial_std.
    assert!((sharpe[0] - net[0] / 0.02).abs() < 1e-12);
    // Losses are penalised, gains rewarded.
    assert!(sharpe[1..10].iter().all(|&d| d < 0.0), "{sharpe:?}");
    assert!(sharpe[11..].iter().all(|&d| d > 0.0), "{sharpe:?}");

    let (_, mean_variance) = run(
        &closes,
        RewardConfig::MeanVariance { risk_aversion: 3.0 },
        1.0,
        &actions,
    );
    for (u, r) in mean_variance.iter().zip(&net) {
        assert!((u - (r - 1.5 * r * r)).abs() < 1e-15);
    }

    let (_, drawdown) = run(
        &closes,
        RewardConfig::DrawdownPenalty { penalty: 2.0 },
        1.0,
        &actions,
    );
    // The penalties add up to λ times the episode's max drawdown, taken from the books.
    let mut peak = 1.0_f64;
    let mut max_drawdown = 0.0_f64;
    for state in &books {
        peak = peak.max(state.equity);
        max_drawdown = max_drawdown.max(1.0 - state.equity / peak);
    }
    let penalties: f64 = net.iter().zip(&drawdown).map(|(r, u)| r - u).sum();
    assert!(max_drawdown > 0.15, "{max_drawdown}");
    assert!((penalties - 2.0 * max_drawdown).abs() < 1e-12);
    // No penalty while the drawdown does not grow (the recovery).
    assert_eq!(&drawdown[10..], &net[10..]);
}

#[test]
fn configs_without_a_reward_read_as_the_net_return() {
    let cfg: TradingConfig = serde_json::from_str(r#"{"max_steps": 50}"#).unwrap();
    assert_eq!(cfg.reward, RewardConfig::NetReturn);
    let json = serde_json::to_string(&cfg).unwrap();
    assert!(!json.contains("reward\""), "{json}");

    let cfg: TradingConfig =
        serde_json::from_str(r#"{"reward": {"kind": "differential_sharpe", "eta": 0.02}}"#)
            .unwrap();
    assert_eq!(
        cfg.reward,
        RewardConfig::DifferentialSharpe {
            eta: 0.02,
            initial_std: 0.01
        }
    );
    let back: TradingConfig = serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
    assert_eq!(back, cfg);
}

#[test]
fn a_bad_reward_parameter_is_an_error_naming_it() {
    let cfg = TradingConfig {
        reward: RewardConfig::DifferentialSharpe {
            eta: 1.5,
            initial_std: 0.01,
        },
        ..TradingConfig::default()
    };
    let err = TradingEnv::new(market(&random_walk(300, 1)), cfg).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidConfig {
                field: "reward.eta",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "invalid config: reward.eta = 1.5 (expected a value in (0, 1))"
    );
}

#[test]
fn sized_positions_book_the_same_with_any_reward() {
    let closes = random_walk(WARMUP + 41, 9);
    // Increase ×2, Maintain, Increase, Decrease, Close, Decrease ×3, Maintain, repeated.
    let pattern = [0, 0, 2, 0, 1, 3, 1, 1, 1, 2];
    let actions: Vec<usize> = pattern.iter().cycle().take(40).copied().collect();
    let run_sizing = |reward| {
        let cfg = TradingConfig {
            max_steps: 40,
            reward,
            actions: mrl_env::ActionSpace::SIZING,
            ..TradingConfig::default()
        };
        let mut env = TradingEnv::new(market(&closes), cfg).unwrap();
        env.reset_at(WARMUP).unwrap();
        actions
            .iter()
            .map(|&a| {
                env.step(a).unwrap();
                *env.state()
            })
            .collect::<Vec<_>>()
    };
    let books = run_sizing(RewardConfig::NetReturn);
    assert!(books.iter().any(|s| s.position.abs() == 0.5));
    for kind in kinds() {
        assert_eq!(run_sizing(kind), books, "{kind:?}");
    }
}
