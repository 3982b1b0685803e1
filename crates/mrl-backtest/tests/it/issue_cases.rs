//! End to end through `backtest` and `evaluate_markets`: undefined ratios stay undefined
//! (JSON `null`, `-` in tables, out of means and intervals), the standard Sortino ratio,
//! ruin, distinct labels for one symbol at two intervals, and annualisation by the
//! calendar of the bars rather than of the whole file.

use mrl_agent::PolicyKind;
use mrl_backtest::{
    BacktestReport, Policies, TestStart, WalkForwardConfig, backtest, evaluate_markets,
    evaluate_named_markets, sharpe,
};
use mrl_data::{Bar, BarSeries, HOUR_MS, YEAR_MS};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::common::{agent, config, decisive_agent, hourly};

/// Hourly bars (24/7) with these closes, starting at 2024-01-01T00:00Z.
fn hourly_bars(closes: &[f64]) -> Vec<Bar> {
    let start = 1_704_067_200_000;
    closes
        .iter()
        .enumerate()
        .map(|(i, &close)| Bar {
            timestamp: start + i as i64 * HOUR_MS,
            open: close,
            high: close,
            low: close,
            close,
            volume: 1.0,
        })
        .collect()
}

/// `n` closes of a 1 % Gaussian random walk from 100 (seeded, Box–Muller).
fn random_walk(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut close = 100.0;
    (0..n)
        .map(|_| {
            let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
            let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            close *= 1.0 + 0.01 * z;
            close
        })
        .collect()
}

/// Every Sharpe interval in the report exists exactly when both Sharpe ratios are defined,
/// and then covers every resample, kept or dropped, with finite bounds.
fn check_intervals(report: &BacktestReport, resamples: usize) {
    let rl2 = report.policies["rl2"].metrics.sharpe;
    for (name, p) in &report.policies {
        let both = rl2.is_some() && p.metrics.sharpe.is_some() && name != "rl2";
        assert_eq!(p.sharpe_diff_ci.is_some(), both, "{name}");
        if let Some(ci) = p.sharpe_diff_ci {
            assert_eq!(ci.resamples + ci.dropped, resamples, "{name}");
            assert!(
                ci.lo.is_finite() && ci.hi.is_finite() && ci.lo <= ci.hi,
                "{name}"
            );
            let point = rl2.unwrap() - p.metrics.sharpe.unwrap();
            assert!((ci.point - point).abs() < 1e-9, "{name}");
        }
    }
}

/// Issue case: a close that grows 0.1 % every bar, no costs. Buy-and-hold's returns are
/// constant up to float residue: its Sharpe and Sortino are `null`, not 9.4e8 and 0, the
/// table shows `-`, and no interval is built from them.
#[test]
fn steady_growth_reports_undefined_ratios_as_null() {
    let closes: Vec<f64> = (0..450).map(|i| 100.0 * 1.001_f64.powi(i)).collect();
    let series = BarSeries::new(&hourly_bars(&closes)).unwrap();
    let rl2 = decisive_agent(3);
    let cfg = WalkForwardConfig {
        cost_rate: 0.0,
        ..config(300)
    };
    let bt = backtest(&series, &Policies::new(&rl2), &cfg).unwrap();
    let json = serde_json::to_value(&bt.report).unwrap();
    for policy in ["buy_and_hold", "flat"] {
        for key in ["sharpe", "sortino", "calmar", "profit_factor"] {
            assert!(
                json[policy][key].is_null(),
                "{policy}.{key}: {}",
                json[policy][key]
            );
        }
        assert!(json[policy]["sharpe_diff_ci"].is_null(), "{policy}");
    }
    assert_eq!(json["buy_and_hold"]["win_rate"].as_f64(), Some(1.0));
    assert!(json["flat"]["win_rate"].is_null());
    let bh = &bt.report.policies["buy_and_hold"].metrics;
    assert!((bh.total_return - (1.001_f64.powi(149) - 1.0)).abs() < 1e-9);
    check_intervals(&bt.report, cfg.bootstrap.resamples);
    let table = bt.report.to_table();
    let row = table
        .lines()
        .find(|l| l.starts_with("buy_and_hold"))
        .unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    // policy, return, cagr, vol, sharpe, sortino, …
    assert_eq!((cells[4], cells[5]), ("-", "-"), "{row}");
    assert!(!table.contains("e8") && !table.contains("e9"), "{table}");
}

/// Issue case: 700 bars of a 1 % random walk, then 300 bars of +0.2 % with one −1 % bar.
/// Buy-and-hold's Sortino over the test period is ≈ 317 (the old formula gave ≈ 1.8e9).
#[test]
fn one_losing_bar_in_the_test_period_gives_a_sortino_near_317() {
    let mut closes = random_walk(700, 7);
    for i in 0..300 {
        let last = *closes.last().unwrap();
        closes.push(last * if i == 150 { 0.99 } else { 1.002 });
    }
    let series = BarSeries::new(&hourly_bars(&closes)).unwrap();
    let rl2 = agent(PolicyKind::Rl2, 1);
    let bt = backtest(&series, &Policies::new(&rl2), &config(700)).unwrap();
    let bh = &bt.report.policies["buy_and_hold"].metrics;
    let returns: Vec<f64> = bt.records["buy_and_hold"]
        .iter()
        .map(|r| r.reward)
        .collect();
    assert_eq!(returns.len(), 299);
    // The definition, written out: √p · mean / √(Σ min(r, 0)² / N).
    let n = returns.len() as f64;
    let mean = returns.iter().sum::<f64>() / n;
    let dd = (returns.iter().map(|r| r.min(0.0).powi(2)).sum::<f64>() / n).sqrt();
    let want = bt.report.periods_per_year.sqrt() * mean / dd;
    let got = bh.sortino.unwrap();
    assert!((got - want).abs() < 1e-9 * want, "{got} vs {want}");
    assert!((310.0..325.0).contains(&got), "{got}");
    assert!((bt.report.periods_per_year - 8766.0).abs() < 1.0);
}

/// Issue case: a book that loses everything stops. Buy-and-hold enters at the first test
/// bar, which falls 99.96 % (with the entry cost the step loses more than the capital),
/// then the price climbs 1 % a bar. The report marks the book ruined at step 0, books it
/// flat from there, and its Sharpe is negative (the 299 climbing bars counted would have
/// made it positive).
#[test]
fn a_ruined_book_is_marked_and_earns_nothing_after_ruin() {
    let mut closes = random_walk(500, 9);
    let crash = closes[499] * 0.0004;
    closes.push(crash);
    for i in 1..300 {
        closes.push(crash * 1.01_f64.powi(i));
    }
    let series = BarSeries::new(&hourly_bars(&closes)).unwrap();
    let rl2 = agent(PolicyKind::Rl2, 2);
    let bt = backtest(&series, &Policies::new(&rl2), &config(499)).unwrap();
    let bh = &bt.report.policies["buy_and_hold"];
    assert!(bh.ruined);
    let ruin = bh.ruin.unwrap();
    assert_eq!(
        (ruin.run, ruin.step, ruin.bar, ruin.runs_ruined),
        (0, 0, 499, 1)
    );
    assert_eq!(ruin.timestamp, series.timestamps()[499]);
    assert_eq!(bh.metrics.ruin_step, Some(0));
    assert_eq!(bh.metrics.total_return, -1.0);
    let records = &bt.records["buy_and_hold"];
    assert!(
        records[1..]
            .iter()
            .all(|r| r.position == 0.0 && r.reward == 0.0 && r.equity == 0.0)
    );
    let sharpe_now = bh.metrics.sharpe.unwrap();
    assert!(sharpe_now < 0.0, "{sharpe_now}");
    // What the post-ruin bars would have given had they been booked.
    let unbooked: Vec<f64> = (499..closes.len() - 1)
        .map(|t| closes[t + 1] / closes[t] - 1.0 - if t == 499 { 0.001 } else { 0.0 })
        .collect();
    let naive = unbooked.iter().sum::<f64>() / unbooked.len() as f64;
    assert!(naive > 0.0, "the case needs post-ruin gains: {naive}");
    assert!(!bt.report.policies["flat"].ruined);
    let json = serde_json::to_value(&bt.report).unwrap();
    assert_eq!(json["buy_and_hold"]["ruined"], true);
    assert_eq!(json["buy_and_hold"]["ruin"]["step"], 0);
    assert_eq!(json["flat"]["ruined"], false);
    let table = bt.report.to_table();
    assert!(
        table.contains("buy_and_hold: ruined (equity 0) at step 0"),
        "{table}"
    );
    let summary = evaluate_markets(
        &Policies::new(&rl2),
        &[series.with_symbol("CRASH")],
        &config(499),
    )
    .unwrap();
    assert!(summary.rows[0].policies["buy_and_hold"].ruined);
    assert_eq!(summary.means["buy_and_hold"].ruined, 1);
    let csv = summary.to_csv();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    let col = header
        .iter()
        .position(|h| *h == "buy_and_hold_ruined")
        .unwrap();
    assert_eq!(row[col], "true");
}

/// `series` with every timestamp multiplied by `factor` (hourly → `factor`-hourly).
fn stretched(series: &BarSeries, factor: i64) -> BarSeries {
    let bars: Vec<Bar> = series
        .iter()
        .map(|b| Bar {
            timestamp: b.timestamp * factor,
            ..b
        })
        .collect();
    BarSeries::new(&bars).unwrap()
}

/// Issue case: `BTCUSDT_1h.csv` and `BTCUSDT_4h.csv` share the symbol; they must be two
/// distinct rows, by the caller's names (file stems) or, without names, by symbol and
/// interval.
#[test]
fn one_symbol_at_two_intervals_gives_two_distinct_rows() {
    let rl2 = agent(PolicyKind::Rl2, 11);
    let h1 = hourly(450, 6).with_symbol("BTCUSDT");
    let h4 = stretched(&h1, 4).with_symbol("BTCUSDT");
    let cfg = WalkForwardConfig {
        test_start: TestStart::HeldOutFraction(0.3),
        ..config(0)
    };
    let series = [h1, h4];
    let by_symbol = evaluate_markets(&Policies::new(&rl2), &series, &cfg).unwrap();
    let names: Vec<&str> = by_symbol.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["BTCUSDT 1h", "BTCUSDT 4h"]);
    let ppy: Vec<f64> = by_symbol.rows.iter().map(|r| r.periods_per_year).collect();
    assert!((ppy[0] / ppy[1] - 4.0).abs() < 1e-9, "{ppy:?}");
    assert_eq!(by_symbol.rows[1].interval.as_deref(), Some("4h"));
    assert_eq!(by_symbol.rows[1].symbol.as_deref(), Some("BTCUSDT"));
    let stems = ["BTCUSDT_1h".to_string(), "BTCUSDT_4h".to_string()];
    let by_stem = evaluate_named_markets(&Policies::new(&rl2), &stems, &series, &cfg).unwrap();
    let names: Vec<&str> = by_stem.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["BTCUSDT_1h", "BTCUSDT_4h"]);
    let csv = by_stem.to_csv();
    assert!(
        csv.lines().nth(1).unwrap().starts_with("BTCUSDT_1h,450,"),
        "{csv}"
    );
    assert!(
        csv.lines().nth(2).unwrap().starts_with("BTCUSDT_4h,450,"),
        "{csv}"
    );
    let table = by_stem.to_table();
    assert!(
        table.contains("BTCUSDT_1h") && table.contains("BTCUSDT_4h"),
        "{table}"
    );
    let same = ["X".to_string(), "X".to_string()];
    let dup = evaluate_named_markets(&Policies::new(&rl2), &same, &series, &cfg).unwrap();
    let names: Vec<&str> = dup.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["X", "X #2"]);
    assert!(matches!(
        evaluate_named_markets(&Policies::new(&rl2), &same[..1], &series, &cfg),
        Err(mrl_backtest::Error::InvalidConfig { field: "names", .. })
    ));
}

/// Means over series leave an undefined ratio out and say how many series they cover.
#[test]
fn market_means_skip_undefined_ratios_and_count_what_they_cover() {
    let rl2 = agent(PolicyKind::Rl2, 12);
    let cfg = WalkForwardConfig {
        test_start: TestStart::HeldOutFraction(0.3),
        ..config(0)
    };
    let series = [
        hourly(450, 6).with_symbol("A"),
        hourly(450, 7).with_symbol("B"),
    ];
    let summary = evaluate_markets(&Policies::new(&rl2), &series, &cfg).unwrap();
    let flat = summary.means["flat"];
    assert_eq!((flat.series, flat.sharpe_n, flat.sortino_n), (2, 0, 0));
    assert_eq!(
        (flat.sharpe, flat.sortino, flat.total_return),
        (None, None, 0.0)
    );
    let bh = summary.means["buy_and_hold"];
    let sharpes: Vec<f64> = summary
        .rows
        .iter()
        .map(|r| r.policies["buy_and_hold"].sharpe.unwrap())
        .collect();
    assert_eq!(bh.sharpe_n, 2);
    assert!((bh.sharpe.unwrap() - (sharpes[0] + sharpes[1]) / 2.0).abs() < 1e-12);
    let table = summary.to_table();
    assert!(
        table.contains("flat: mean Sharpe over 0 of 2 series, Sortino over 0"),
        "{table}"
    );
    let json = serde_json::to_value(&summary).unwrap();
    assert!(json["means"]["flat"]["sharpe"].is_null());
    assert_eq!(json["means"]["flat"]["sharpe_n"], 0);
    assert!(json["rows"][0]["policies"]["flat"]["sharpe"].is_null());
}

/// Issue case (calendar): 1200 hourly bars with a one-year hole before bar 600. The test
/// period (the last 30 %, after the hole, as are its adaptation episodes) is untouched by
/// the hole, so its metrics equal those of the same bars without it, annualised by the
/// hourly 24/7 calendar (≈ 8766 bars a year), not by the file's average bar rate (≈ 1055).
#[test]
fn a_gap_before_the_test_period_does_not_rescale_its_metrics() {
    let closes = random_walk(1200, 21);
    let plain = BarSeries::new(&hourly_bars(&closes)).unwrap();
    let year = YEAR_MS as i64;
    let holed_bars: Vec<Bar> = plain
        .iter()
        .enumerate()
        .map(|(i, b)| Bar {
            timestamp: b.timestamp + if i >= 600 { year } else { 0 },
            ..b
        })
        .collect();
    let holed = BarSeries::new(&holed_bars).unwrap();
    let rl2 = decisive_agent(5);
    let cfg = WalkForwardConfig {
        test_start: TestStart::HeldOutFraction(0.3),
        ..config(0)
    };
    let a = backtest(&plain, &Policies::new(&rl2), &cfg).unwrap();
    let b = backtest(&holed, &Policies::new(&rl2), &cfg).unwrap();
    assert!(a.windows[0].adaptation[0].start >= 600);
    // The file's average bar rate, which used to annualise: ≈ 1055 bars a year.
    let average = 1199.0 * YEAR_MS / (holed.end() - holed.start()) as f64;
    assert!((1000.0..1100.0).contains(&average), "{average}");
    for bt in [&a, &b] {
        assert_eq!(bt.report.periods_per_year, 8766.0); // 365.25 · 24
    }
    for (name, p) in &a.report.policies {
        let q = &b.report.policies[name];
        assert_eq!(p.metrics, q.metrics, "{name}");
        assert_eq!(p.sharpe_diff_ci, q.sharpe_diff_ci, "{name}");
    }
    let returns: Vec<f64> = b.records["buy_and_hold"].iter().map(|r| r.reward).collect();
    let got = b.report.policies["buy_and_hold"].metrics.sharpe;
    assert_eq!(got, sharpe(&returns, 8766.0));
    assert!(got.is_some());
}

/// Issue case (`--seeds N`): the Sharpe columns and the verdict are means over the seeds,
/// and so is the difference the interval is about. Every interval's point is the
/// difference of the printed Sharpe ratios and lies inside its interval, the verdict's
/// difference is that point, and with one seed nothing changes from the single-run
/// bootstrap of the first seed's books.
#[test]
fn sampled_seeds_give_intervals_of_the_printed_mean_difference() {
    let series = hourly(700, 4);
    let rl2 = agent(PolicyKind::Rl2, 6);
    let cfg = WalkForwardConfig {
        mode: mrl_backtest::ActionMode::Sampled { seeds: 4 },
        seed: 3,
        ..config(400)
    };
    let bt = backtest(&series, &Policies::new(&rl2), &cfg).unwrap();
    check_intervals(&bt.report, cfg.bootstrap.resamples);
    let rl2_sharpe = bt.report.policies["rl2"].metrics.sharpe.unwrap();
    let mut checked = 0;
    for (name, p) in &bt.report.policies {
        let Some(ci) = p.sharpe_diff_ci else {
            continue;
        };
        // Exactly the printed columns' difference, and inside its own interval.
        assert_eq!(ci.point, rl2_sharpe - p.metrics.sharpe.unwrap(), "{name}");
        assert!(ci.lo <= ci.point && ci.point <= ci.hi, "{name}: {ci:?}");
        checked += 1;
    }
    assert!(checked >= 5, "{checked}");
    // The random baseline has 4 seeds too: its point is no single seed's difference.
    let random = &bt.report.policies["random"];
    let seed0 = random.seeds.as_ref().unwrap().per_seed[0].sharpe.unwrap();
    let rl2_seed0 = bt.report.policies["rl2"].seeds.as_ref().unwrap().per_seed[0]
        .sharpe
        .unwrap();
    assert_ne!(random.sharpe_diff_ci.unwrap().point, rl2_seed0 - seed0);
    let verdict = bt.report.verdict().unwrap();
    let rl2_verdict = &verdict.agents[0];
    let best_ci = bt.report.policies[&verdict.best_baseline].sharpe_diff_ci;
    assert_eq!(rl2_verdict.ci, best_ci);
    assert_eq!(
        rl2_verdict.sharpe_diff,
        best_ci.map(|c| c.point),
        "{verdict}"
    );
    let table = bt.report.to_table();
    assert!(
        table.contains("Sharpe(rl2) − Sharpe(policy), each the mean over its seeds"),
        "{table}"
    );

    // One seed: the interval is the single-run bootstrap of the two books, draw for draw.
    let one = WalkForwardConfig {
        mode: mrl_backtest::ActionMode::Sampled { seeds: 1 },
        ..cfg
    };
    let bt1 = backtest(&series, &Policies::new(&rl2), &one).unwrap();
    let returns = |name: &str| -> Vec<f64> { bt1.records[name].iter().map(|r| r.reward).collect() };
    for (i, (name, p)) in bt1.report.policies.iter().enumerate() {
        if name == "rl2" {
            continue;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(one.seed);
        rng.set_stream((4 << 32) | i as u64); // the bootstrap's stream, run i
        let b = &one.bootstrap;
        let want = mrl_backtest::bootstrap_sharpe_diff_ci(
            &returns("rl2"),
            &returns(name),
            bt1.report.periods_per_year,
            b.resamples,
            b.confidence,
            b.block_len,
            &mut rng,
        );
        assert_eq!(p.sharpe_diff_ci, want, "{name}");
    }
}
