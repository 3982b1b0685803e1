//! Report shape, files, and the multi-market summary.

use std::collections::BTreeSet;

use mrl_agent::PolicyKind;
use mrl_backtest::{
    BacktestReport, Error, Policies, backtest, equity_csv, evaluate_markets, write_report,
};

use crate::common::{agent, config, daily_weekdays, hourly};

const METRIC_KEYS: [&str; 13] = [
    "total_return",
    "cagr",
    "volatility",
    "sharpe",
    "sortino",
    "max_drawdown",
    "calmar",
    "win_rate",
    "profit_factor",
    "turnover",
    "exposure",
    "trades",
    "ruin_step",
];

#[test]
fn json_has_policies_at_the_top_level() {
    let rl2 = agent(PolicyKind::Rl2, 8);
    let mlp = agent(PolicyKind::Mlp, 9);
    let series = hourly(450, 5);
    let bt = backtest(&series, &Policies::new(&rl2), &config(300)).unwrap();
    let json = serde_json::to_value(&bt.report).unwrap();
    let keys: BTreeSet<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let expected: BTreeSet<&str> = [
        "periods_per_year",
        "span",
        "rl2",
        "buy_and_hold",
        "flat",
        "random",
        "ts_momentum",
        "ma_crossover",
        "macd",
        "rsi_reversion",
    ]
    .into();
    assert_eq!(keys, expected);
    assert!(json["span"]["start"].is_i64() && json["span"]["end"].is_i64());
    for policy in ["rl2", "buy_and_hold", "flat", "random"] {
        let entry = json[policy].as_object().unwrap();
        for key in METRIC_KEYS.iter().chain(&[
            "ruined",
            "ruin",
            "adaptation_curve",
            "sharpe_diff_ci",
            "seeds",
        ]) {
            assert!(entry.contains_key(*key), "{policy}.{key}");
        }
        assert_eq!(entry["adaptation_curve"].as_array().unwrap().len(), 3);
    }
    assert!(json["rl2"]["sharpe_diff_ci"].is_null());
    // Flat returns never vary: its Sharpe ratio is undefined (null), and so is any
    // interval against it.
    assert!(json["flat"]["sharpe"].is_null() && json["flat"]["sortino"].is_null());
    assert!(json["flat"]["sharpe_diff_ci"].is_null());
    assert!(json["buy_and_hold"]["sharpe"].is_number());
    assert_eq!(json["flat"]["ruined"], false);
    assert!(json["flat"]["ruin"].is_null());
    let back: BacktestReport = serde_json::from_value(json).unwrap();
    assert_eq!(back, bt.report);

    let with_mlp = backtest(
        &series,
        &Policies {
            mlp: Some(&mlp),
            ..Policies::new(&rl2)
        },
        &config(300),
    )
    .unwrap();
    let mlp_json = &serde_json::to_value(&with_mlp.report).unwrap()["mlp"];
    assert!(mlp_json.get("sharpe").is_some());
    assert_eq!(
        mlp_json["sharpe"].as_f64(),
        with_mlp.report.policies["mlp"].metrics.sharpe
    );
    let table = with_mlp.report.to_table();
    let rows: Vec<&str> = table
        .lines()
        .skip(2)
        .take(with_mlp.report.policies.len())
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        rows,
        [
            "rl2",
            "mlp",
            "buy_and_hold",
            "flat",
            "random",
            "ts_momentum",
            "ma_crossover",
            "macd",
            "rsi_reversion"
        ]
    );
    let verdict = with_mlp.report.verdict().unwrap().to_string();
    assert!(table.ends_with(&verdict), "{table}");
    assert_eq!(table, with_mlp.report.to_string());
}

#[test]
fn report_files_exist_and_parse() {
    let rl2 = agent(PolicyKind::Rl2, 10);
    let bt = backtest(&daily_weekdays(400), &Policies::new(&rl2), &config(250)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let written = write_report(&bt.report, &bt.records, &out).unwrap();
    for path in &written {
        assert!(path.is_file(), "{}", path.display());
    }
    let json: BacktestReport =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(json, bt.report);
    let csv = std::fs::read_to_string(out.join("equity.csv")).unwrap();
    assert_eq!(csv, equity_csv(&bt.report, &bt.records));
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header[..4], ["timestamp", "bar", "window", "close"]);
    assert_eq!(header[4..7], ["rl2_position", "rl2_reward", "rl2_equity"]);
    // rl2, buy-and-hold, flat, random and the four trader rules.
    assert_eq!(header.len(), 4 + 3 * 8);
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|x| x.parse::<f64>().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), bt.records["rl2"].len());
    let bh_equity = header
        .iter()
        .position(|h| *h == "buy_and_hold_equity")
        .unwrap();
    let last = rows.last().unwrap()[bh_equity];
    assert!((last - 1.0 - bt.report.policies["buy_and_hold"].metrics.total_return).abs() < 1e-12);
    #[cfg(feature = "plot")]
    for stem in ["equity", "drawdown", "adaptation"] {
        let png = std::fs::read(out.join(format!("{stem}.png"))).unwrap();
        assert_eq!(&png[..4], b"\x89PNG", "{stem}");
        let svg = std::fs::read_to_string(out.join(format!("{stem}.svg"))).unwrap();
        assert!(svg.contains("<svg") && svg.contains("<text"), "{stem}");
    }
    // Nothing but the reports: no temporary file is left behind.
    let names: BTreeSet<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    assert_eq!(names.len(), written.len());
}

#[test]
fn markets_summary_has_one_row_per_series_and_lists_skipped_ones() {
    let rl2 = agent(PolicyKind::Rl2, 11);
    let series = [
        hourly(450, 6).with_symbol("AAA"),
        daily_weekdays(400),
        hourly(120, 7).with_symbol("SHORT"),
    ];
    let cfg = mrl_backtest::WalkForwardConfig {
        test_start: mrl_backtest::TestStart::HeldOutFraction(0.3),
        ..config(0)
    };
    let summary = evaluate_markets(&Policies::new(&rl2), &series, &cfg).unwrap();
    let names: Vec<&str> = summary.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["AAA", "WEEKDAYS"]);
    assert_eq!(summary.skipped.len(), 1);
    assert_eq!(summary.skipped[0].name, "SHORT");
    assert!(
        summary.skipped[0].reason.contains("too short"),
        "{}",
        summary.skipped[0].reason
    );
    assert_eq!(summary.rows[0].test_bars, 449 - 315);
    let csv = summary.to_csv();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].starts_with(
        "series,bars,periods_per_year,test_bars,in_sample_bars,rl2_sharpe,rl2_sortino,rl2_max_drawdown,\
         rl2_total_return,rl2_dsharpe_lo,rl2_dsharpe_hi,rl2_ruined,buy_and_hold_sharpe"
    ));
    assert!(lines[1].starts_with("AAA,450,"));
    // No series was marked in-sample: 0 such bars on every row.
    assert_eq!(lines[1].split(',').nth(4), Some("0"));
    // Every row has one cell per header; rl2 has no interval against itself, the others do.
    let header: Vec<&str> = lines[0].split(',').collect();
    let row: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(row.len(), header.len());
    let cell = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
    assert_eq!((cell("rl2_dsharpe_lo"), cell("rl2_dsharpe_hi")), ("", ""));
    let (lo, hi): (f64, f64) = (
        cell("buy_and_hold_dsharpe_lo").parse().unwrap(),
        cell("buy_and_hold_dsharpe_hi").parse().unwrap(),
    );
    let ci = summary.rows[0].policies["buy_and_hold"]
        .sharpe_diff_ci
        .unwrap();
    assert_eq!((lo, hi), (ci.lo, ci.hi));
    assert!(lo <= ci.point && ci.point <= hi);
    let table = summary.to_table();
    assert!(
        table.contains("WEEKDAYS") && table.contains("mean") && table.contains("skipped SHORT"),
        "{table}"
    );
    let flat = summary.means["flat"];
    assert_eq!(
        (flat.sharpe, flat.sharpe_n, flat.total_return),
        (None, 0, 0.0)
    );
    assert_eq!(flat.series, 2);
    assert_eq!((cell("flat_sharpe"), cell("flat_ruined")), ("", "false"));
    assert!(matches!(
        evaluate_markets(&Policies::new(&rl2), &series[2..], &cfg),
        Err(Error::NoSeries { skipped: 1 })
    ));
}
