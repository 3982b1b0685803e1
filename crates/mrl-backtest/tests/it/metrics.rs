//! Metrics: parity with the golden file (design formulas and quantstats conventions),
//! properties, and the bootstrap confidence interval.

use mrl_backtest::{
    Metrics, bootstrap_sharpe_diff_ci, max_drawdown, max_drawdown_design, sharpe, sharpe_ddof1,
    sortino, sortino_downside_deviation, win_rate,
};
use proptest::prelude::*;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../fixtures/golden/metrics.json"
);

fn cases() -> Vec<Value> {
    let text = std::fs::read_to_string(GOLDEN).expect("golden file");
    let golden: Value = serde_json::from_str(&text).expect("golden json");
    golden["cases"].as_array().expect("cases").clone()
}

fn returns_of(case: &Value) -> Vec<f64> {
    case["returns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// Compares `got` with the golden entry `block[key]`: a number, or one of the strings
/// "nan", "inf", "-inf" where `got` must be `None`.
fn check(name: &str, block: &Value, key: &str, got: Option<f64>, rel: f64) {
    match (got, block[key].as_f64()) {
        (Some(got), Some(want)) => {
            let tol = rel * want.abs().max(1.0);
            assert!((got - want).abs() <= tol, "{name} {key}: {got} vs {want}");
        }
        (None, None) => assert!(block[key].is_string(), "{name} {key}"),
        (got, _) => panic!("{name} {key}: {got:?} vs {}", block[key]),
    }
}

#[test]
fn design_formulas_match_the_golden_file() {
    let cases = cases();
    assert_eq!(cases.len(), 6);
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let r = returns_of(case);
        // numpy's mean and ours sum in different orders; the constant series' Sharpe is
        // √252·c/1e-10 and moves by ~1e-8 relative with the order (see the golden README).
        let rel = if name == "constant_positive" {
            1e-6
        } else {
            1e-12
        };
        for (block, periods) in [
            (&case["design"], 252.0),
            (&case["design_hourly_8760"], 8760.0),
        ] {
            check(name, block, "sharpe", Some(sharpe(&r, periods)), rel);
            check(name, block, "sortino", Some(sortino(&r, periods)), 1e-12);
        }
        let design = &case["design"];
        check(
            name,
            design,
            "max_drawdown",
            Some(max_drawdown_design(&r)),
            1e-12,
        );
        check(name, design, "win_rate", Some(win_rate(&r)), 1e-15);
    }
}

/// quantstats' conventions: where they coincide with ours (max drawdown from a starting 1.0,
/// win rate) the values match; its Sharpe (ddof 1) and Sortino (downside deviation over all
/// steps) are reproduced by the helpers, with `None` where quantstats gives inf or NaN.
#[test]
fn quantstats_conventions_are_reproduced() {
    for case in &cases() {
        let name = case["name"].as_str().unwrap();
        let r = returns_of(case);
        let qs = &case["quantstats"];
        check(name, qs, "max_drawdown", Some(max_drawdown(&r)), 1e-12);
        check(name, qs, "win_rate", Some(win_rate(&r)), 1e-15);
        check(name, qs, "sharpe", sharpe_ddof1(&r, 252.0), 1e-12);
        check(
            name,
            qs,
            "sortino",
            sortino_downside_deviation(&r, 252.0),
            1e-12,
        );
    }
}

#[test]
fn metrics_report_the_trader_drawdown_and_design_ratios() {
    for case in &cases() {
        let r = returns_of(case);
        let m = Metrics::compute(&r, &[], 8760.0);
        assert_eq!(m.max_drawdown, max_drawdown(&r));
        assert_eq!(m.sharpe, sharpe(&r, 8760.0));
        assert_eq!(m.sortino, sortino(&r, 8760.0));
        assert_eq!(m.win_rate, win_rate(&r));
        for v in [
            m.total_return,
            m.volatility,
            m.sharpe,
            m.sortino,
            m.max_drawdown,
        ] {
            assert!(v.is_finite());
        }
    }
    let first_loss = cases()
        .into_iter()
        .find(|c| c["name"] == "first_step_loss")
        .unwrap();
    let r = returns_of(&first_loss);
    assert!(Metrics::compute(&r, &[], 252.0).max_drawdown < max_drawdown_design(&r));
}

#[test]
fn metrics_serialise_with_the_documented_field_names() {
    let r = [0.01, -0.02, 0.015, 0.0, -0.005];
    let q = [1.0, 1.0, -1.0, 0.0, 1.0];
    let m = Metrics::compute(&r, &q, 252.0);
    let json = serde_json::to_value(m).unwrap();
    let mut keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "cagr",
            "calmar",
            "exposure",
            "max_drawdown",
            "profit_factor",
            "sharpe",
            "sortino",
            "total_return",
            "trades",
            "turnover",
            "volatility",
            "win_rate"
        ]
    );
    assert_eq!(m.trades, 4);
    assert_eq!(m.exposure, 0.8);
    assert!((m.turnover - (1.0 + 2.0 + 1.0 + 1.0) * 252.0 / 5.0).abs() < 1e-9);
    let back: Metrics = serde_json::from_value(json).unwrap();
    assert_eq!(back, m);
}

fn returns_strategy() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(-0.5..0.5_f64, 2..200)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn bounded_metrics_stay_in_range(r in prop::collection::vec(-1.5..1.5_f64, 0..100)) {
        let m = Metrics::compute(&r, &[], 252.0);
        prop_assert!((-1.0..=0.0).contains(&m.max_drawdown));
        prop_assert!((0.0..=1.0).contains(&m.win_rate));
        prop_assert!(m.total_return >= -1.0);
        prop_assert!(m.sharpe.is_finite() && m.sortino.is_finite() && m.volatility.is_finite());
        for v in [m.cagr, m.calmar, m.profit_factor].into_iter().flatten() {
            prop_assert!(v.is_finite());
        }
    }

    #[test]
    fn sharpe_ignores_the_scale_of_returns(r in returns_strategy(), k in 0.1..10.0_f64) {
        let scaled: Vec<f64> = r.iter().map(|x| x * k).collect();
        // Away from the epsilon's influence, the ratio does not depend on the scale.
        let std = { let m = r.iter().sum::<f64>() / r.len() as f64;
            (r.iter().map(|x| (x - m).powi(2)).sum::<f64>() / r.len() as f64).sqrt() };
        prop_assume!(std > 1e-2);
        let (a, b) = (sharpe(&r, 252.0), sharpe(&scaled, 252.0));
        prop_assert!((a - b).abs() <= 1e-6 * a.abs().max(1.0), "{} vs {}", a, b);
        let (a, b) = (sharpe_ddof1(&r, 252.0).unwrap(), sharpe_ddof1(&scaled, 252.0).unwrap());
        prop_assert!((a - b).abs() <= 1e-12 * a.abs().max(1.0), "{} vs {}", a, b);
    }

    #[test]
    fn annualisation_scales_by_the_root_of_the_period_ratio(
        r in returns_strategy(), p1 in 1.0..10_000.0_f64, p2 in 1.0..10_000.0_f64,
    ) {
        let ratio = (p2 / p1).sqrt();
        let m1 = Metrics::compute(&r, &[], p1);
        let m2 = Metrics::compute(&r, &[], p2);
        for (a, b) in [(m1.sharpe, m2.sharpe), (m1.sortino, m2.sortino), (m1.volatility, m2.volatility)] {
            prop_assert!((a * ratio - b).abs() <= 1e-9 * b.abs().max(1.0), "{} vs {}", a * ratio, b);
        }
    }
}

fn noise(n: usize, mean: f64, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| mean + 0.02 * (rng.random::<f64>() - 0.5))
        .collect()
}

#[test]
fn bootstrap_is_deterministic_by_seed() {
    let (a, b) = (noise(300, 0.001, 1), noise(300, 0.0, 2));
    let run = |seed| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        bootstrap_sharpe_diff_ci(&a, &b, 252.0, 300, 0.9, 5, &mut rng).unwrap()
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
    assert_eq!(run(7).2, run(8).2);
}

#[test]
fn bootstrap_interval_contains_the_point_and_shrinks_with_data() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let width = |n: usize, rng: &mut ChaCha8Rng| {
        let (a, b) = (noise(n, 0.001, 10), noise(n, 0.0, 11));
        let (lo, hi, point) = bootstrap_sharpe_diff_ci(&a, &b, 252.0, 400, 0.95, 10, rng).unwrap();
        assert!(lo < point && point < hi, "{lo} {point} {hi}");
        let expected = sharpe(&a, 252.0) - sharpe(&b, 252.0);
        assert!((point - expected).abs() < 1e-12);
        hi - lo
    };
    let small = width(250, &mut rng);
    let large = width(4000, &mut rng);
    // The width falls like 1/√n: 16× the data gives about a quarter of the width.
    assert!(large < small / 2.5, "{small} → {large}");
}

#[test]
fn bootstrap_rejects_invalid_arguments() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let a = noise(50, 0.0, 1);
    // (a, b, n_resamples, confidence, block_len)
    type Args<'a> = (&'a [f64], &'a [f64], usize, f64, usize);
    let bad: [Args<'_>; 6] = [
        (&a, &a[..49], 100, 0.9, 5),
        (&a[..1], &a[..1], 100, 0.9, 5),
        (&a, &a, 0, 0.9, 5),
        (&a, &a, 100, 1.0, 5),
        (&a, &a, 100, 0.0, 5),
        (&a, &a, 100, 0.9, 0),
    ];
    for (x, y, n, conf, block) in bad {
        assert!(bootstrap_sharpe_diff_ci(x, y, 252.0, n, conf, block, &mut rng).is_none());
    }
}
