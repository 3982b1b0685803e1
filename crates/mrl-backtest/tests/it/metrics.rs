//! Metrics: parity with the golden file (design formulas and quantstats conventions), the
//! standard Sortino ratio, undefined ratios, ruin, properties, and the bootstrap interval.

use mrl_backtest::{
    Metrics, booked_returns, bootstrap_sharpe_diff_ci, downside_deviation, max_drawdown,
    max_drawdown_design, ruin_step, sharpe, sharpe_ddof1, sortino, sortino_losing_std, volatility,
    win_rate,
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

/// The reported Sharpe is the design formula without its 1e-10 epsilon: it matches the
/// golden file to within the epsilon's share `1e-10 / std`, and is undefined exactly where
/// the design's epsilon made a number out of a zero std (constant series).
#[test]
fn sharpe_matches_the_design_golden_values_without_the_epsilon() {
    let cases = cases();
    assert_eq!(cases.len(), 6);
    let mut undefined = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let r = returns_of(case);
        for (block, periods) in [
            (&case["design"], 252.0),
            (&case["design_hourly_8760"], 8760.0),
        ] {
            match sharpe(&r, periods) {
                Some(got) => {
                    let rel = 1e-10 / volatility(&r, 1.0) + 1e-12;
                    check(name, block, "sharpe", Some(got), rel);
                }
                None => undefined.push(name),
            }
        }
    }
    undefined.dedup();
    assert_eq!(undefined, ["constant_positive", "constant_zero"]);
}

#[test]
fn design_formulas_match_the_golden_file() {
    for case in &cases() {
        let name = case["name"].as_str().unwrap();
        let r = returns_of(case);
        for (block, periods) in [
            (&case["design"], 252.0),
            (&case["design_hourly_8760"], 8760.0),
        ] {
            let got = sortino_losing_std(&r, periods);
            check(name, block, "sortino", Some(got), 1e-12);
        }
        let design = &case["design"];
        check(
            name,
            design,
            "max_drawdown",
            Some(max_drawdown_design(&r)),
            1e-12,
        );
        // numpy's design formula (and quantstats) print 0 for the 0/0 win rate of an
        // all-zero series; we report it as undefined.
        match win_rate(&r) {
            Some(w) => check(name, design, "win_rate", Some(w), 1e-15),
            None => {
                assert!(r.iter().all(|&x| x == 0.0), "{name}");
                assert_eq!(design["win_rate"].as_f64(), Some(0.0), "{name}");
            }
        }
    }
}

/// quantstats' conventions: where they coincide with ours (max drawdown from a starting
/// 1.0, win rate, and the Sortino ratio: downside deviation over all steps) the values
/// match; its Sharpe (ddof 1) is reproduced by a helper, with `None` where quantstats
/// gives inf or NaN.
#[test]
fn quantstats_conventions_are_reproduced() {
    for case in &cases() {
        let name = case["name"].as_str().unwrap();
        let r = returns_of(case);
        let qs = &case["quantstats"];
        check(name, qs, "max_drawdown", Some(max_drawdown(&r)), 1e-12);
        if let Some(w) = win_rate(&r) {
            check(name, qs, "win_rate", Some(w), 1e-15);
        }
        check(name, qs, "sharpe", sharpe_ddof1(&r, 252.0), 1e-12);
        check(name, qs, "sortino", sortino(&r, 252.0), 1e-12);
    }
}

#[test]
fn metrics_report_the_trader_drawdown_and_standard_ratios() {
    for case in &cases() {
        let r = returns_of(case);
        let m = Metrics::compute(&r, &[], 8760.0);
        assert_eq!(m.max_drawdown, max_drawdown(&r));
        assert_eq!(m.sharpe, sharpe(&r, 8760.0));
        assert_eq!(m.sortino, sortino(&r, 8760.0));
        assert_eq!(m.win_rate, win_rate(&r));
        for v in [m.total_return, m.volatility, m.max_drawdown] {
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

/// A 1 % random walk (seeded Gaussian steps, Box–Muller) with a small drift.
fn random_walk_returns(n: usize, drift: f64, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
            drift + 0.01 * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        })
        .collect()
}

/// The Sortino ratio straight from its definition (Sortino & Price 1994), written out
/// independently of the crate: `√p · mean / √(Σ min(r, 0)² / N)`.
fn sortino_by_definition(r: &[f64], periods: f64) -> f64 {
    let n = r.len() as f64;
    let mean = r.iter().sum::<f64>() / n;
    let dd = (r
        .iter()
        .map(|&x| if x < 0.0 { x * x } else { 0.0 })
        .sum::<f64>()
        / n)
        .sqrt();
    periods.sqrt() * mean / dd
}

/// Issue case: on an ordinary random walk the reported Sortino is the downside deviation
/// over all steps. The old figure (the std of the losing steps alone) was ≈ 1.14–1.17 times
/// larger: for symmetric steps `std(r | r < 0) ≈ σ·√(1 − 2/π) ≈ 0.60σ` against
/// `DD ≈ σ/√2 ≈ 0.71σ`.
#[test]
fn sortino_is_the_downside_deviation_over_all_steps_on_a_random_walk() {
    for seed in 0..5 {
        let r = random_walk_returns(2000, 0.001, seed);
        let got = sortino(&r, 8766.0).unwrap();
        let want = sortino_by_definition(&r, 8766.0);
        assert!((got - want).abs() <= 1e-12 * want.abs(), "{got} vs {want}");
        let dd = downside_deviation(&r);
        assert!((8766.0_f64.sqrt() * r.iter().sum::<f64>() / 2000.0 / dd - got).abs() < 1e-9);
        let old = sortino_losing_std(&r, 8766.0);
        let ratio = old / got;
        assert!(
            (1.08..1.26).contains(&ratio),
            "seed {seed}: {old} / {got} = {ratio}"
        );
    }
}

/// Issue case: 700 bars of a 1 % random walk, then 300 bars of +0.2 % with one −1 % bar.
/// On the 300 test steps the Sortino ratio is ≈ 317 (the old formula divided by the
/// "spread" of one losing step, 1e-10, and gave ≈ 1.8e9).
#[test]
fn a_single_losing_step_gives_a_sortino_near_317_not_2e9() {
    let mut r = random_walk_returns(700, 0.0, 42);
    let mut test = vec![0.002; 300];
    test[150] = -0.01;
    r.extend(&test);
    let test_period = &r[700..];
    let got = sortino(test_period, 8766.0).unwrap();
    // mean = (299 · 0.002 − 0.01) / 300, DD = 0.01 / √300.
    let want = 8766.0_f64.sqrt() * ((299.0 * 0.002 - 0.01) / 300.0) / (0.01 / 300.0_f64.sqrt());
    assert!((got - want).abs() < 1e-9 * want, "{got} vs {want}");
    assert!((317.0..319.0).contains(&got), "{got}");
    assert!(sortino_losing_std(test_period, 8766.0) > 1e9);
    // The same figure through Metrics.
    assert_eq!(
        Metrics::compute(test_period, &[], 8766.0).sortino,
        Some(got)
    );
}

/// Issue case: a close that grows 0.1 % every bar. Its returns are 0.001 up to float
/// residue (≈ 1e-16), so Sharpe and Sortino are undefined, not 9.4e8 and 0.
#[test]
fn steady_growth_has_undefined_ratios_not_huge_numbers() {
    // Each close rounded on its own (as prices read from a file are): the returns differ
    // from 0.001 by a few ulps.
    let closes: Vec<f64> = (0..500).map(|i| 100.0 * 1.001_f64.powi(i)).collect();
    let r: Vec<f64> = closes.windows(2).map(|w| w[1] / w[0] - 1.0).collect();
    assert!(
        r.iter().any(|&x| x != r[0]),
        "the residue this test is about"
    );
    let m = Metrics::compute(&r, &[1.0; 499], 8766.0);
    assert_eq!((m.sharpe, m.sortino), (None, None));
    assert_eq!(m.win_rate, Some(1.0));
    assert_eq!((m.calmar, m.profit_factor), (None, None));
    assert_eq!(sharpe_ddof1(&r, 8766.0), None);
    assert!((m.total_return - (closes[499] / closes[0] - 1.0)).abs() < 1e-12);
    // A genuine, tiny dispersion is not residue: the ratio is defined and large.
    let mut wobble = r.clone();
    wobble[7] += 1e-6;
    let s = sharpe(&wobble, 8766.0).unwrap();
    assert!(s > 1e4 && s.is_finite(), "{s}");
    let json = serde_json::to_value(m).unwrap();
    assert!(
        json["sharpe"].is_null() && json["sortino"].is_null(),
        "{json}"
    );
}

/// Issue case: a book at −100 % stops there. Returns after the ruin step do not count, so
/// the gains a dead book would "earn" afterwards cannot make its Sharpe positive.
#[test]
fn returns_after_ruin_are_not_booked() {
    let mut r = vec![0.01, -0.02, -1.2];
    r.extend([0.05; 100]);
    assert_eq!(ruin_step(&r), Some(2));
    let booked = booked_returns(&r);
    assert_eq!(booked[..3], [0.01, -0.02, -1.0]);
    assert!(booked[3..].iter().all(|&x| x == 0.0));
    let m = Metrics::compute(&r, &[1.0; 103], 8766.0);
    assert_eq!(m.ruin_step, Some(2));
    assert_eq!(m.total_return, -1.0);
    assert!(m.sharpe.unwrap() < 0.0 && m.sortino.unwrap() < 0.0, "{m:?}");
    assert_eq!(m.win_rate, Some(1.0 / 3.0));
    // The position is closed after the ruin step: one entry, one liquidation.
    assert_eq!((m.trades, m.exposure), (2, 3.0 / 103.0));
    // Without the ruin the same path would have a positive Sharpe.
    let naive_mean = r.iter().sum::<f64>() / r.len() as f64;
    assert!(naive_mean > 0.0);
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
            "ruin_step",
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
    assert!(json["ruin_step"].is_null());
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
        prop_assert!(m.win_rate.is_none_or(|w| (0.0..=1.0).contains(&w)));
        prop_assert!(m.total_return >= -1.0);
        prop_assert!(m.volatility.is_finite());
        let ratios = [m.sharpe, m.sortino, m.cagr, m.calmar, m.profit_factor];
        for v in ratios.into_iter().flatten() {
            prop_assert!(v.is_finite());
        }
        // After ruin the book earns nothing: total return −1 and no later step counts.
        if let Some(t) = m.ruin_step {
            prop_assert_eq!(m.total_return, -1.0);
            prop_assert!(booked_returns(&r)[t + 1..].iter().all(|&x| x == 0.0));
        }
    }

    #[test]
    fn sortino_follows_its_definition(r in returns_strategy()) {
        match sortino(&r, 8766.0) {
            Some(got) => {
                let want = sortino_by_definition(&r, 8766.0);
                prop_assert!((got - want).abs() <= 1e-9 * want.abs().max(1.0), "{} vs {}", got, want);
            }
            None => prop_assert!(r.iter().all(|&x| x >= 0.0)),
        }
    }

    #[test]
    fn constant_returns_have_no_sharpe_or_sortino(
        c in -0.05..0.05_f64, p0 in 1.0..1e5_f64, n in 2..400_usize,
    ) {
        // Returns of a price that moves by the same factor every bar, with the rounding
        // residue of computing them from the prices.
        let mut price = p0;
        let r: Vec<f64> = (0..n)
            .map(|_| {
                let next = price * (1.0 + c);
                let ret = next / price - 1.0;
                price = next;
                ret
            })
            .collect();
        prop_assert_eq!(sharpe(&r, 8766.0), None);
        prop_assert_eq!(sharpe_ddof1(&r, 8766.0), None);
        if c > -1e-12 {
            prop_assert_eq!(sortino(&r, 8766.0), None);
        }
    }

    #[test]
    fn sharpe_ignores_the_scale_of_returns(r in returns_strategy(), k in 0.1..1.9_f64) {
        // k < 2 keeps every scaled return above −1: no ruin, which would clip the book.
        let scaled: Vec<f64> = r.iter().map(|x| x * k).collect();
        let std = { let m = r.iter().sum::<f64>() / r.len() as f64;
            (r.iter().map(|x| (x - m).powi(2)).sum::<f64>() / r.len() as f64).sqrt() };
        prop_assume!(std > 1e-6);
        let (a, b) = (sharpe(&r, 252.0).unwrap(), sharpe(&scaled, 252.0).unwrap());
        prop_assert!((a - b).abs() <= 1e-12 * a.abs().max(1.0), "{} vs {}", a, b);
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
        for (a, b) in [(m1.sharpe, m2.sharpe), (m1.sortino, m2.sortino), (Some(m1.volatility), Some(m2.volatility))] {
            prop_assert_eq!(a.is_some(), b.is_some());
            if let (Some(a), Some(b)) = (a, b) {
                prop_assert!((a * ratio - b).abs() <= 1e-9 * b.abs().max(1.0), "{} vs {}", a * ratio, b);
            }
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
    assert_eq!(run(7).point, run(8).point);
    assert_eq!((run(7).resamples, run(7).dropped), (300, 0));
    assert_eq!(run(7).confidence, 0.9);
}

#[test]
fn bootstrap_interval_contains_the_point_and_shrinks_with_data() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let width = |n: usize, rng: &mut ChaCha8Rng| {
        let (a, b) = (noise(n, 0.001, 10), noise(n, 0.0, 11));
        let ci = bootstrap_sharpe_diff_ci(&a, &b, 252.0, 400, 0.95, 10, rng).unwrap();
        assert!(ci.lo < ci.point && ci.point < ci.hi, "{ci:?}");
        let expected = sharpe(&a, 252.0).unwrap() - sharpe(&b, 252.0).unwrap();
        assert!((ci.point - expected).abs() < 1e-12);
        ci.hi - ci.lo
    };
    let small = width(250, &mut rng);
    let large = width(4000, &mut rng);
    // The width falls like 1/√n: 16× the data gives about a quarter of the width.
    assert!(large < small / 2.5, "{small} → {large}");
}

/// Issue case: an undefined Sharpe ratio never enters an interval. With the ratio
/// undefined on the observed returns there is no interval; resamples where it is undefined
/// are dropped and counted.
#[test]
fn bootstrap_leaves_undefined_ratios_out() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let a = noise(200, 0.001, 1);
    let flat = vec![0.0; 200];
    assert!(bootstrap_sharpe_diff_ci(&a, &flat, 8766.0, 500, 0.95, 1, &mut rng).is_none());
    let steady = vec![0.001; 200];
    assert!(bootstrap_sharpe_diff_ci(&steady, &a, 8766.0, 500, 0.95, 1, &mut rng).is_none());
    // Two trades in 200 steps: an i.i.d. resample misses both with probability
    // (1 − 2/200)^200 ≈ e^−2 ≈ 13.5 %, and then its Sharpe ratio is undefined.
    let mut sparse = vec![0.0; 200];
    sparse[0] = 0.01;
    sparse[1] = -0.005;
    let ci = bootstrap_sharpe_diff_ci(&a, &sparse, 8766.0, 2000, 0.95, 1, &mut rng).unwrap();
    assert_eq!(ci.resamples + ci.dropped, 2000);
    let share = ci.dropped as f64 / 2000.0;
    assert!((0.10..0.17).contains(&share), "{share}");
    assert!(
        ci.lo.is_finite() && ci.hi.is_finite() && ci.lo <= ci.hi,
        "{ci:?}"
    );
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
