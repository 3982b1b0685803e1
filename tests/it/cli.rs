//! End-to-end tests of the `mrl` binary: `data synth | check | fetch`, `features`, `train`
//! and `eval bandits`, run as subprocesses on temporary directories and the small hand-made
//! files in `fixtures/cli/`. `data fetch` talks to a scripted Bybit stand-in on 127.0.0.1;
//! nothing touches the network.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mrl::data::{Bar, BarSeries, HOUR_MS, read_bars};
use mrl::features::{FEATURE_NAMES, WARMUP, compute_features};
use tempfile::TempDir;

/// 2024-01-01T00:00:00Z in ms.
const T0: i64 = 1_704_067_200_000;

const CSV_HEADER: &str = "timestamp,open,high,low,close,volume";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/cli")
        .join(name)
}

/// Runs `mrl -q <args>` (warnings and errors only on stderr, `RUST_LOG` ignored).
fn mrl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mrl"))
        .arg("-q")
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the mrl binary runs")
}

/// A path as an argument (temporary and fixture paths are UTF-8).
fn utf8(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `mrl`, asserts success and returns stdout.
fn mrl_ok(args: &[&str]) -> String {
    let out = mrl(args);
    assert!(
        out.status.success(),
        "mrl failed ({}): stderr:\n{}",
        out.status,
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs `mrl`, asserts exit code 1 with an `error: ` line on stderr and nothing on stdout,
/// and returns stderr.
fn mrl_err(args: &[&str]) -> String {
    let out = mrl(args);
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected failure; stdout:\n{}\nstderr:\n{stderr}",
        text(&out.stdout)
    );
    assert!(stderr.contains("error: "), "stderr: {stderr}");
    assert_eq!(text(&out.stdout), "", "stdout of a failed command");
    stderr
}

fn assert_contains(haystack: &str, needle: &str) {
    assert!(
        haystack.contains(needle),
        "expected {needle:?} in:\n{haystack}"
    );
}

// ---------------------------------------------------------------------------------------
// mrl data synth

/// `mrl data synth --kind <kind> --bars <bars> --seed <seed> --out <out>`, checked to succeed.
fn synth(kind: &str, bars: usize, seed: u64, out: &Path) {
    let stdout = mrl_ok(&[
        "data",
        "synth",
        "--kind",
        kind,
        "--bars",
        &bars.to_string(),
        "--seed",
        &seed.to_string(),
        "--out",
        utf8(out),
    ]);
    assert_contains(
        &stdout,
        &format!("wrote {bars} bars of {kind} (seed {seed})"),
    );
}

#[test]
fn synth_writes_a_valid_reproducible_series_of_each_kind() {
    let dir = TempDir::new().unwrap();
    let n = 300;
    for kind in ["gbm", "ar1", "regime"] {
        let path = |name: &str| dir.path().join(format!("{kind}_{name}.csv"));
        synth(kind, n, 7, &path("a"));
        synth(kind, n, 7, &path("b"));
        synth(kind, n, 8, &path("c"));

        let bytes = std::fs::read(path("a")).unwrap();
        let content = text(&bytes);
        let mut lines = content.lines();
        assert_eq!(lines.next(), Some(CSV_HEADER), "{kind}");
        assert_eq!(lines.count(), n, "{kind}: data rows");
        let series = read_bars(&path("a")).unwrap();
        assert_eq!(series.len(), n, "{kind}");
        assert!(series.interval().is_some(), "{kind}");

        assert_eq!(
            bytes,
            std::fs::read(path("b")).unwrap(),
            "{kind}: same seed"
        );
        let other = read_bars(&path("c")).unwrap();
        assert_eq!(other.len(), n, "{kind}");
        assert_ne!(series.closes(), other.closes(), "{kind}: another seed");
    }
}

#[test]
fn synth_writes_parquet_holding_the_same_bars_as_csv() {
    let dir = TempDir::new().unwrap();
    let csv = dir.path().join("gbm.csv");
    let parquet = dir.path().join("gbm.parquet");
    synth("gbm", 200, 11, &csv);
    synth("gbm", 200, 11, &parquet);
    let from_parquet = read_bars(&parquet).unwrap();
    assert_eq!(from_parquet.len(), 200);
    assert_eq!(from_parquet, read_bars(&csv).unwrap());
    // The check command reads Parquet too.
    assert_contains(
        &mrl_ok(&["data", "check", utf8(&parquet)]),
        "rows              200",
    );
}

#[test]
fn synth_rejects_an_unknown_kind_and_a_bad_extension() {
    let dir = TempDir::new().unwrap();
    let out = mrl(&[
        "data",
        "synth",
        "--kind",
        "brownian",
        "--out",
        utf8(&dir.path().join("x.csv")),
    ]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert_contains(&text(&out.stderr), "brownian");

    let bad = dir.path().join("x.txt");
    let stderr = mrl_err(&["data", "synth", "--bars", "50", "--out", utf8(&bad)]);
    assert_contains(&stderr, "expected .csv, .parquet or .pq");
    assert!(!bad.exists());
}

/// Helper's case: `--test-fraction 1.0` was reported as "invalid config: test_start = 1" and
/// `--cost-bps=-5` as "cost_rate = -0.0005"; a bad walk-forward option is a usage error that
/// names the option and the value as typed, before any file is read.
#[test]
fn walk_forward_options_out_of_range_name_the_option_and_value() {
    let cases: [(&str, &str, &str); 6] = [
        ("--test-fraction", "1.0", "strictly between 0 and 1"),
        ("--test-fraction", "0", "strictly between 0 and 1"),
        ("--test-fraction", "nan", "strictly between 0 and 1"),
        ("--cost-bps", "-5", "[0, 10000)"),
        ("--cost-bps", "20000", "[0, 10000)"),
        ("--seeds", "0", "1.."),
    ];
    for command in [&["backtest"][..], &["eval", "markets"]] {
        for (option, value, rule) in cases {
            let mut args = command.to_vec();
            let flag = format!("{option}={value}");
            args.extend([
                "--checkpoint",
                "missing-run",
                "--data",
                "missing.csv",
                &flag,
            ]);
            let out = mrl(&args);
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
            assert_contains(&stderr, &format!("'{value}' for '{option}"));
            assert_contains(&stderr, rule);
        }
    }
}

// ---------------------------------------------------------------------------------------
// mrl data check

#[test]
fn check_summarises_a_good_file() {
    let file = fixture("good_1h.csv");
    let stdout = mrl_ok(&["data", "check", utf8(&file)]);
    let expected = [
        format!("{}: ok", file.display()),
        "rows              8".into(),
        "span              2024-01-01 00:00 .. 2024-01-01 09:00 UTC".into(),
        "interval          1h".into(),
        "gaps              1 (2 bars missing; largest 2 bars after 2024-01-01 04:00)".into(),
    ];
    for line in expected {
        assert!(
            stdout.lines().any(|l| l == line),
            "no line {line:?} in:\n{stdout}"
        );
    }
}

#[test]
fn check_names_the_row_and_problem_of_a_bad_file() {
    let cases = [
        (
            "close_negative.csv",
            "row 3: close is -100.5, expected a finite price > 0",
        ),
        (
            "close_zero.csv",
            "row 2: close is 0, expected a finite price > 0",
        ),
        (
            "close_nan.csv",
            "row 4: close is NaN, expected a finite price > 0",
        ),
        (
            "unparseable_high.csv",
            "row 2: field high: cannot parse \"abc\"",
        ),
        (
            "unparseable_timestamp.csv",
            "row 3: field timestamp: cannot parse \"2024-01-01T02:00:00Z\"",
        ),
        (
            "high_below_body.csv",
            "row 3: high 101 is below max(open, close) = 101.5",
        ),
        (
            "low_above_body.csv",
            "row 2: low 101.25 is above min(open, close) = 101",
        ),
        (
            "volume_negative.csv",
            "row 4: volume is -9, expected a finite value >= 0",
        ),
        (
            "duplicate_timestamp.csv",
            "row 3: timestamp 1704070800000 is not after the previous bar's 1704070800000",
        ),
        (
            "out_of_order.csv",
            "row 4: timestamp 1704074400000 is not after the previous bar's 1704078000000",
        ),
        (
            "wrong_header.csv",
            "columns are [\"time\", \"open\", \"high\", \"low\", \"close\", \"volume\"], expected \
             [\"timestamp\", \"open\", \"high\", \"low\", \"close\", \"volume\"]",
        ),
        ("empty.csv", "no bars: the file is empty"),
        (
            "header_only.csv",
            "no bars: the file has a header but no rows",
        ),
    ];
    for (name, problem) in cases {
        let file = fixture(name);
        let stderr = mrl_err(&["data", "check", utf8(&file)]);
        assert_contains(&stderr, &format!("error: {}: {problem}", file.display()));
    }
}

#[test]
fn check_of_a_missing_file_names_it() {
    let dir = TempDir::new().unwrap();
    let missing = dir.path().join("missing.csv");
    let os_message = std::fs::read(&missing).unwrap_err().to_string();
    let stderr = mrl_err(&["data", "check", utf8(&missing)]);
    assert_contains(
        &stderr,
        &format!("error: {}: {os_message}", missing.display()),
    );
}

// ---------------------------------------------------------------------------------------
// mrl features

/// `mrl features <input> --out <out>`.
fn features(input: &Path, out: &Path) -> Output {
    mrl(&["features", utf8(input), "--out", utf8(out)])
}

#[test]
fn features_match_the_library_with_warm_up_rows_dropped() {
    let dir = TempDir::new().unwrap();
    let bars = dir.path().join("ar1.csv");
    let n = 120;
    synth("ar1", n, 5, &bars);
    let out = dir.path().join("features.csv");
    let run = features(&bars, &out);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_contains(
        &text(&run.stdout),
        &format!("wrote {} rows x 11 features", n - WARMUP),
    );

    let series = read_bars(&bars).unwrap();
    let expected = compute_features(series.closes()).unwrap();
    let expected = expected.kept();
    let content = std::fs::read_to_string(&out).unwrap();
    let mut lines = content.lines();
    assert_eq!(
        lines.next(),
        Some(
            "timestamp,ret_1,ret_5,ret_10,sma_ratio,ema_ratio,volatility,momentum,rsi,macd,\
             bb_pos,vol_ratio"
        )
    );
    assert_eq!(FEATURE_NAMES.len(), 11);
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), n - WARMUP);
    assert_eq!(expected.n_rows(), n - WARMUP);
    for (i, line) in rows.iter().enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), 12, "row {i}: {line}");
        let timestamp: i64 = fields[0].parse().unwrap();
        assert_eq!(timestamp, series.timestamps()[WARMUP + i], "row {i}");
        let values: Vec<f64> = fields[1..].iter().map(|f| f.parse().unwrap()).collect();
        // Written in shortest round-trip form: the very same bits come back.
        assert_eq!(values, expected.row(i).to_vec(), "row {i}");
    }

    // A Parquet input gives the same output.
    let parquet = dir.path().join("ar1.parquet");
    synth("ar1", n, 5, &parquet);
    let out_pq = dir.path().join("features_pq.csv");
    assert!(features(&parquet, &out_pq).status.success());
    assert_eq!(std::fs::read(&out_pq).unwrap(), content.as_bytes());
}

#[test]
fn features_need_one_bar_past_the_warm_up() {
    let dir = TempDir::new().unwrap();
    let short = dir.path().join("short.csv");
    synth("gbm", WARMUP, 1, &short);
    let out = dir.path().join("short_features.csv");
    let run = features(&short, &out);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run.stdout));
    assert_contains(
        &text(&run.stderr),
        &format!(
            "error: {}: series has {WARMUP} bars, {} needed",
            short.display(),
            WARMUP + 1
        ),
    );
    assert!(!out.exists(), "no output for a too-short series");

    let just_enough = dir.path().join("enough.csv");
    synth("gbm", WARMUP + 1, 1, &just_enough);
    assert!(features(&just_enough, &out).status.success());
    let content = std::fs::read_to_string(&out).unwrap();
    let series = read_bars(&just_enough).unwrap();
    let rows: Vec<&str> = content.lines().skip(1).collect();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].starts_with(&format!("{},", series.timestamps()[WARMUP])));
}

#[test]
fn features_of_a_bad_file_fail_without_output() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("features.csv");
    let bad = fixture("close_negative.csv");
    let run = features(&bad, &out);
    assert_eq!(run.status.code(), Some(1));
    assert_contains(
        &text(&run.stderr),
        &format!("error: {}: row 3: close is -100.5", bad.display()),
    );
    assert!(!out.exists());
}

// ---------------------------------------------------------------------------------------
// mrl data fetch, against a scripted Bybit stand-in

/// What the stand-in answers to a request target (`/v5/market/kline?...`): a JSON body.
type Handler = Box<dyn Fn(&str) -> String + Send>;

/// A one-thread HTTP/1.1 server on 127.0.0.1 answering every connection with `handler`,
/// recording the request targets. Stops when dropped (or after 30 s).
struct MockBybit {
    base_url: String,
    targets: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MockBybit {
    fn start(handler: Handler) -> MockBybit {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let targets = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, stopped) = (Arc::clone(&targets), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !stopped.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => answer(stream, &handler, &log),
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        MockBybit {
            base_url,
            targets,
            stop,
            thread: Some(thread),
        }
    }

    fn targets(&self) -> Vec<String> {
        self.targets.lock().unwrap().clone()
    }

    /// Query parameter `name` of every request, in order.
    fn param(&self, name: &str) -> Vec<String> {
        self.targets()
            .iter()
            .map(|t| query_param(t, name).to_owned())
            .collect()
    }
}

impl Drop for MockBybit {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn answer(mut stream: TcpStream, handler: &Handler, log: &Mutex<Vec<String>>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = text(&head);
    let target = head.split_whitespace().nth(1).unwrap_or("").to_owned();
    let body = handler(&target);
    log.lock().unwrap().push(target);
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}

fn query_param<'a>(target: &'a str, name: &str) -> &'a str {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map_or("", |(_, value)| value)
}

/// Ten hourly bars from [`T0`], with values exact in binary and decimal.
fn served_bars() -> Vec<Bar> {
    (0..10)
        .map(|h| {
            let open = 42_000.0 + 12.5 * h as f64;
            let close = open + if h % 3 == 0 { -7.25 } else { 9.75 };
            Bar {
                timestamp: T0 + h * HOUR_MS,
                open,
                high: open.max(close) + 5.5,
                low: open.min(close) - 4.25,
                close,
                volume: 1.5 + 0.25 * h as f64,
            }
        })
        .collect()
}

/// Bars per page: fewer than the range holds, so the CLI must page.
const PAGE_ROWS: usize = 4;

/// Answers like Bybit's `/v5/market/kline`: the bars of `[start, end]`, newest first, at most
/// [`PAGE_ROWS`] of them, as strings.
fn kline_pages(bars: Vec<Bar>) -> Handler {
    Box::new(move |target| {
        let start: i64 = query_param(target, "start").parse().unwrap_or(i64::MIN);
        let end: i64 = query_param(target, "end").parse().unwrap_or(i64::MAX);
        let mut page: Vec<&Bar> = bars
            .iter()
            .filter(|b| (start..=end).contains(&b.timestamp))
            .collect();
        page.reverse();
        page.truncate(PAGE_ROWS);
        let list: Vec<[String; 7]> = page
            .iter()
            .map(|b| {
                [
                    b.timestamp.to_string(),
                    b.open.to_string(),
                    b.high.to_string(),
                    b.low.to_string(),
                    b.close.to_string(),
                    b.volume.to_string(),
                    (b.volume * b.close).to_string(),
                ]
            })
            .collect();
        serde_json::json!({
            "retCode": 0,
            "retMsg": "OK",
            "result": {
                "category": query_param(target, "category"),
                "symbol": query_param(target, "symbol"),
                "list": list,
            },
            "retExtInfo": {},
            "time": T0 + 100 * HOUR_MS,
        })
        .to_string()
    })
}

/// `mrl data fetch --symbol BTCUSDT --interval 60 --start <start> --end <end> --out <out>
/// --base-url <server> <extra..>`.
fn fetch(server: &MockBybit, start: &str, end: &str, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "data",
        "fetch",
        "--symbol",
        "BTCUSDT",
        "--interval",
        "60",
        "--start",
        start,
        "--end",
        end,
        "--base-url",
        &server.base_url,
        "--out",
        utf8(out),
    ];
    args.extend(extra);
    mrl(&args)
}

#[test]
fn fetch_pages_through_the_range_and_writes_the_served_bars() {
    let server = MockBybit::start(kline_pages(served_bars()));
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("BTCUSDT_60.csv");
    let run = fetch(
        &server,
        "2024-01-01T00:00:00Z",
        "2024-01-01T09:00:00Z",
        &out,
        &["--category", "spot"],
    );
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_contains(&text(&run.stdout), "wrote 10 bars of BTCUSDT");

    // Backwards paging: 4 + 4 + 2 rows, each next end = oldest open time − 1 ms.
    assert_eq!(
        server.param("end"),
        [T0 + 9 * HOUR_MS, T0 + 6 * HOUR_MS - 1, T0 + 2 * HOUR_MS - 1].map(|t| t.to_string())
    );
    for (name, value) in [
        ("start", T0.to_string()),
        ("category", "spot".into()),
        ("symbol", "BTCUSDT".into()),
        ("interval", "60".into()),
    ] {
        assert!(server.param(name).iter().all(|v| *v == value), "{name}");
    }
    assert!(server.targets()[0].starts_with("/v5/market/kline?"));

    let expected = BarSeries::new(&served_bars())
        .unwrap()
        .with_symbol("BTCUSDT");
    assert_eq!(read_bars(&out).unwrap(), expected);
}

#[test]
fn fetch_takes_millisecond_times_a_category_and_parquet_output() {
    let server = MockBybit::start(kline_pages(served_bars()));
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("BTCUSDT_60.parquet");
    let (start, end) = (T0 + 3 * HOUR_MS, T0 + 7 * HOUR_MS);
    let run = fetch(
        &server,
        &start.to_string(),
        &end.to_string(),
        &out,
        &["--category", "linear"],
    );
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(
        server.param("end"),
        [end, T0 + 4 * HOUR_MS - 1].map(|t| t.to_string())
    );
    assert!(server.param("category").iter().all(|c| c == "linear"));
    let expected = BarSeries::new(&served_bars()[3..=7])
        .unwrap()
        .with_symbol("BTCUSDT");
    assert_eq!(read_bars(&out).unwrap(), expected);
}

#[test]
fn fetch_reports_an_api_error_code_and_message() {
    let server = MockBybit::start(Box::new(|_| {
        r#"{"retCode":10001,"retMsg":"params error: Symbol Is Invalid","result":{},"retExtInfo":{},"time":1704110400999}"#
            .to_owned()
    }));
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("BTCUSDT_60.csv");
    let stderr = {
        let run = fetch(
            &server,
            &T0.to_string(),
            &(T0 + HOUR_MS).to_string(),
            &out,
            &[],
        );
        assert_eq!(run.status.code(), Some(1));
        text(&run.stderr)
    };
    assert_contains(
        &stderr,
        "bybit api error 10001: params error: Symbol Is Invalid",
    );
    assert_eq!(
        server.targets().len(),
        1,
        "a rejected request is not retried"
    );
    assert!(!out.exists());
}

#[test]
fn fetch_rejects_a_reversed_range_and_unparseable_times_before_any_request() {
    let server = MockBybit::start(kline_pages(served_bars()));
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("BTCUSDT_60.csv");
    let cases = [
        (
            "2024-01-02T00:00:00Z",
            "2024-01-01T00:00:00Z",
            "--start (1704153600000) is after --end (1704067200000)".to_owned(),
        ),
        (
            "yesterday",
            "2024-01-01T00:00:00Z",
            "time \"yesterday\" is neither RFC 3339".to_owned(),
        ),
        (
            "2024-01-01T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "time \"2024-13-01T00:00:00Z\" is neither RFC 3339".to_owned(),
        ),
    ];
    for (start, end, message) in cases {
        let run = fetch(&server, start, end, &out, &[]);
        assert_eq!(run.status.code(), Some(1), "{start} {end}");
        assert_contains(&text(&run.stderr), &message);
    }
    assert!(server.targets().is_empty(), "no request was sent");
    assert!(!out.exists());
}

// ---------------------------------------------------------------------------------------
// mrl train, mrl eval bandits

/// Resuming a run that is already at the asked-for iterations trains nothing and says so
/// (no NaN returns of an empty run); a closed stdout (`mrl … | head`) ends the command
/// quietly with status 0 instead of a panic.
#[test]
fn resume_with_nothing_to_train_and_a_closed_stdout() {
    let dir = TempDir::new().unwrap();
    let run_dir = dir.path().join("run");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/bandits-k5-n10.toml");
    let train = |iterations: &str, resume: bool| {
        let mut args = vec![
            "train",
            "--config",
            utf8(&config),
            "--out",
            utf8(&run_dir),
            "--iterations",
            iterations,
            "--n-envs",
            "16",
        ];
        if resume {
            args.push("--resume");
        }
        mrl_ok(&args)
    };
    assert_contains(&train("1", false), "trained 1 iteration (1 this run");
    let again = train("1", true);
    assert_contains(
        &again,
        "nothing to train: the run is already at 1 iteration (asked for 1)",
    );
    assert!(!again.contains("NaN"), "{again}");

    let mut child = Command::new(env!("CARGO_BIN_EXE_mrl"))
        .args(["-q", "train", "--config", utf8(&config)])
        .args([
            "--out",
            utf8(&run_dir),
            "--iterations",
            "2",
            "--n-envs",
            "16",
        ])
        .arg("--resume")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the mrl binary runs");
    drop(child.stdout.take()); // the reader goes away before anything is printed
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let state = std::fs::read_to_string(run_dir.join("checkpoint/state.json")).unwrap();
    assert!(
        !state.is_empty(),
        "the checkpoint was written before the summary"
    );
}

#[test]
fn train_two_iterations_then_evaluate_against_the_baselines() {
    let dir = TempDir::new().unwrap();
    let run_dir = dir.path().join("run");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/bandits-k5-n10.toml");
    let stdout = mrl_ok(&[
        "train",
        "--config",
        utf8(&config),
        "--out",
        utf8(&run_dir),
        "--iterations",
        "2",
        "--n-envs",
        "32",
    ]);
    assert_contains(&stdout, "trained 2 iterations");

    let saved = mrl::ppo::TrainConfig::load(&run_dir.join("config.toml")).unwrap();
    assert_eq!((saved.iterations, saved.n_envs), (2, 32));
    let log = std::fs::read_to_string(run_dir.join("train_log.jsonl")).unwrap();
    let iterations: Vec<u64> = log
        .lines()
        .map(|line| {
            let entry: serde_json::Value = serde_json::from_str(line).unwrap();
            entry["iteration"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(iterations, [0, 1]);
    assert!(run_dir.join("checkpoint").is_dir());

    let eval_args = [
        "eval",
        "bandits",
        "--checkpoint",
        utf8(&run_dir),
        "--trials",
        "50",
        "--json",
    ];
    let stdout = mrl_ok(&eval_args);
    let eval: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (&eval["arms"], &eval["pulls"], &eval["trials"]),
        (&5.into(), &10.into(), &50.into())
    );
    let mut scores = vec![&eval["agent_sampled"], &eval["agent_greedy"]];
    scores.extend(eval["baselines"].as_array().unwrap());
    let names: Vec<&str> = scores
        .iter()
        .map(|s| s["name"].as_str().unwrap().split('(').next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "rl2 ",
            "rl2 ",
            "random",
            "greedy",
            "epsilon-greedy",
            "ucb1",
            "thompson",
            // The paper's own three: with the Beta(1, 1) prior, ε and c tuned.
            "greedy",
            "epsilon-greedy",
            "ucb1",
            "bayes-optimal "
        ]
    );
    let tuned = &eval["baselines"][7]["name"];
    assert!(
        tuned.as_str().unwrap().ends_with("prior=beta(1,1)) tuned"),
        "{tuned}"
    );
    for score in scores {
        let mean = score["mean"].as_f64().unwrap();
        let std_err = score["std_err"].as_f64().unwrap();
        assert!((0.0..=10.0).contains(&mean), "{score}");
        assert!(std_err.is_finite() && std_err >= 0.0, "{score}");
        assert_eq!(score["n_trials"], 50);
    }
    // The evaluation tasks are seeded: a second run prints the same figures.
    assert_eq!(mrl_ok(&eval_args), stdout);
}

#[test]
fn fetch_refuses_a_bad_output_name_before_any_request() {
    // No server listens on this port: a request would fail with a connection error instead.
    let dir = TempDir::new().unwrap();
    let bad = dir.path().join("BTCUSDT.txt");
    let stderr = mrl_err(&[
        "data",
        "fetch",
        "--symbol",
        "BTCUSDT",
        "--start",
        "1700000000000",
        "--end",
        "1700003600000",
        "--base-url",
        "http://127.0.0.1:9",
        "--out",
        utf8(&bad),
    ]);
    assert_contains(&stderr, "expected .csv, .parquet or .pq");
    assert!(
        !stderr.contains("127.0.0.1"),
        "no request was made: {stderr}"
    );
}

#[test]
fn synth_creates_missing_directories_and_features_refuse_non_csv() {
    let dir = TempDir::new().unwrap();
    let nested = dir.path().join("a/b/gbm.csv");
    let out = mrl(&["data", "synth", "--bars", "60", "--out", utf8(&nested)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(mrl::data::read_bars(&nested).unwrap().len(), 60);

    let parquet = dir.path().join("f.parquet");
    let stderr = mrl_err(&["features", utf8(&nested), "--out", utf8(&parquet)]);
    assert_contains(&stderr, "written as CSV");
    assert!(!parquet.exists());
}

#[test]
fn eval_bandits_names_a_missing_checkpoint() {
    let dir = TempDir::new().unwrap();
    let missing = dir.path().join("nope");
    let stderr = mrl_err(&[
        "eval",
        "bandits",
        "--checkpoint",
        utf8(&missing),
        "--trials",
        "5",
    ]);
    assert_contains(&stderr, "does not exist");
}

/// Trains a tiny RL² trading agent (one iteration) and an MLP the same way; returns their
/// run directories.
pub(crate) fn tiny_trading_runs(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let mut runs = Vec::new();
    for kind in ["rl2", "mlp"] {
        let config = dir.join(format!("{kind}.toml"));
        std::fs::write(
            &config,
            format!(
                "iterations = 1\nn_envs = 2\n[agent]\nkind = \"{kind}\"\nhidden = 8\n\
                 [ppo]\nepochs = 1\nminibatch_trials = 2\n[task]\nkind = \"synthetic-ar1\"\n\
                 bars = 300\nepisodes_per_trial = 3\ntrading = {{ max_steps = 10 }}\n"
            ),
        )
        .unwrap();
        let run = dir.join(format!("run-{kind}"));
        let out = mrl(&["train", "--config", utf8(&config), "--out", utf8(&run)]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        runs.push(run);
    }
    (runs[0].clone(), runs[1].clone())
}

/// Helper's case: an MLP run passed as `--checkpoint` was reported in the `rl2` rows without
/// a word; the label stays (the agent under test) and a warning names the network.
#[test]
fn backtest_of_an_mlp_checkpoint_says_its_rows_are_labelled_rl2() {
    let dir = TempDir::new().unwrap();
    let (rl2, mlp) = tiny_trading_runs(dir.path());
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/synthetic/gbm_1h.csv");
    let (_, stderr) = backtest_loud(&["--checkpoint", utf8(&mlp), "--data", utf8(&data)]);
    assert_contains(
        &stderr,
        "holds an agent of kind mlp: its rows are labelled rl2",
    );
    let (_, stderr) = backtest_loud(&["--checkpoint", utf8(&rl2), "--data", utf8(&data)]);
    assert!(!stderr.contains("its rows are labelled rl2"), "{stderr}");
}

#[test]
fn backtest_json_has_the_documented_shape_on_hourly_and_daily_series() {
    let dir = TempDir::new().unwrap();
    let (rl2, mlp) = tiny_trading_runs(dir.path());
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/synthetic");
    for file in ["gbm_1h.csv", "gbm_1d.csv", "gaps_1h.csv"] {
        let data = fixtures.join(file);
        let report = dir.path().join(format!("report-{file}"));
        let out = mrl(&[
            "backtest",
            "--checkpoint",
            utf8(&rl2),
            "--mlp",
            utf8(&mlp),
            "--data",
            utf8(&data),
            "--json",
            "--report",
            utf8(&report),
        ]);
        assert!(out.status.success(), "{file}: {}", text(&out.stderr));
        let json: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
        let ppy = json["periods_per_year"].as_f64().unwrap();
        let series = mrl::data::read_bars(&data).unwrap();
        assert_eq!(ppy, series.periods_per_year().unwrap(), "{file}");
        let (start, end) = (
            json["span"]["start"].as_i64().unwrap(),
            json["span"]["end"].as_i64().unwrap(),
        );
        assert!(
            series.start() < start && start < end && end <= series.end(),
            "{file}"
        );
        for policy in [
            "rl2",
            "mlp",
            "buy_and_hold",
            "flat",
            "random",
            "ts_momentum",
            "ma_crossover",
            "macd",
            "rsi_reversion",
        ] {
            for field in [
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
            ] {
                assert!(
                    json[policy].get(field).is_some(),
                    "{file}: {policy}.{field} missing"
                );
            }
        }
        assert_eq!(json["flat"]["total_return"].as_f64(), Some(0.0));
        // Undefined ratios are null, not 0 or a huge number; ruin is marked per policy.
        assert!(json["flat"]["sharpe"].is_null() && json["flat"]["sortino"].is_null());
        assert_eq!(json["flat"]["ruined"], false);
        assert!(report.join("report.json").exists() && report.join("equity.csv").exists());
    }
}

#[test]
fn eval_markets_summarises_every_file_of_a_directory() {
    let dir = TempDir::new().unwrap();
    let (rl2, _) = tiny_trading_runs(dir.path());
    let data = dir.path().join("markets");
    std::fs::create_dir(&data).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/synthetic");
    for file in ["gbm_1h.csv", "ar1_1h.csv"] {
        std::fs::copy(fixtures.join(file), data.join(file)).unwrap();
    }
    // One symbol in two files (`ar1`): two rows, labelled by file stem.
    std::fs::copy(fixtures.join("ar1_1h.csv"), data.join("ar1_4h.csv")).unwrap();
    let report = dir.path().join("summary");
    let out = mrl(&[
        "eval",
        "markets",
        "--checkpoint",
        utf8(&rl2),
        "--data",
        utf8(&data),
        "--report",
        utf8(&report),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let csv = std::fs::read_to_string(report.join("summary.csv")).unwrap();
    let labels: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(labels, ["ar1_1h", "ar1_4h", "gbm_1h"], "{csv}");
    let table = text(&out.stdout);
    assert!(table.contains("gbm") && table.contains("mean"), "{table}");
    for rule in ["ts_momentum", "ma_crossover", "macd", "rsi_reversion"] {
        assert!(table.contains(rule), "{rule}: {table}");
        assert!(csv.contains(&format!("{rule}_sharpe")), "{rule}: {csv}");
    }
    // The verdict: rl2 against each series' best fixed baseline.
    assert!(
        table.contains("rl2 against each series' best fixed baseline by Sharpe: beats it on "),
        "{table}"
    );
}

#[test]
fn train_resume_without_a_checkpoint_says_there_is_nothing_to_resume() {
    let dir = TempDir::new().unwrap();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/bandits-k5-n10.toml");
    let resume = |run_dir: &Path| {
        mrl_err(&[
            "train",
            "--config",
            utf8(&config),
            "--out",
            utf8(run_dir),
            "--resume",
            "--iterations",
            "1",
        ])
    };
    // No run directory: nothing is created.
    let missing = dir.path().join("never-trained");
    assert_contains(
        &resume(&missing),
        &format!(
            "error: nothing to resume in {}: the directory does not exist; drop --resume to \
             start a new run there",
            missing.display()
        ),
    );
    assert!(!missing.exists());
    // A run that wrote its config but no checkpoint yet.
    let started = dir.path().join("started");
    std::fs::create_dir(&started).unwrap();
    std::fs::copy(&config, started.join("config.toml")).unwrap();
    let stderr = resume(&started);
    assert_contains(
        &stderr,
        &format!(
            "error: nothing to resume in {}: the run has not written a checkpoint yet",
            started.display()
        ),
    );
    assert_contains(&stderr, "drop --resume to start a new run there");
    assert!(!stderr.contains("bad checkpoint"), "{stderr}");
}

// ---------------------------------------------------------------------------------------
// mrl study

#[test]
fn study_prints_the_pooled_table_and_verdict_and_names_bad_arguments() {
    let dir = TempDir::new().unwrap();
    let config = dir.path().join("tiny.toml");
    std::fs::write(&config, super::study::TINY).unwrap();
    let out = dir.path().join("study");
    let stdout = mrl_ok(&[
        "study",
        "--config",
        utf8(&config),
        "--seeds",
        "1,2",
        "--out",
        utf8(&out),
        "--iterations",
        "1",
        "--test-markets",
        "1",
        "--test-bars",
        "300",
        "--sampled-runs",
        "1",
    ]);
    assert_contains(&stdout, "2 seeds × 1 held-out markets");
    assert_contains(&stdout, "| policy | Sharpe (mean ± std) |");
    assert_contains(&stdout, "| rl2 (greedy) |");
    assert_contains(&stdout, "| buy_and_hold |");
    assert_contains(&stdout, "RL² (greedy) on mean held-out Sharpe");
    assert_contains(&stdout, "Deploy ");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("study.json")).unwrap()).unwrap();
    assert_eq!(json["settings"]["iterations"], 1);
    assert_eq!(json["settings"]["seeds"], serde_json::json!([1, 2]));

    let args = |seeds: &str, config: &Path| {
        mrl_err(&[
            "study",
            "--config",
            utf8(config),
            "--seeds",
            seeds,
            "--out",
            utf8(&dir.path().join("bad")),
        ])
    };
    assert_contains(
        &args("3,4,3", &config),
        "error: seed 3 is given twice: every seed must be distinct",
    );
    let missing = dir.path().join("nope.toml");
    assert_contains(&args("1", &missing), utf8(&missing));
    assert!(!dir.path().join("bad").exists());
}

#[test]
fn check_states_the_timestamp_unit_and_calendar_it_read() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/timestamps");
    for (name, form) in [
        ("hourly_s.csv", "epoch seconds"),
        ("hourly_ms.csv", "epoch milliseconds"),
        ("hourly_us.csv", "epoch microseconds"),
        ("hourly_rfc3339.csv", "ISO 8601 / RFC 3339 text"),
        ("hourly_shuffled.csv", "epoch milliseconds"),
    ] {
        let file = dir.join(name);
        let stdout = mrl_ok(&["data", "check", utf8(&file)]);
        for line in [
            format!("timestamps        {form}"),
            "span              2021-04-04 20:00 .. 2021-04-04 22:00 UTC".into(),
            "calendar          24/7, 8766.0 bars a year".into(),
            "periods per year  8766.0".into(),
        ] {
            assert!(
                stdout.lines().any(|l| l == line),
                "{name}: no line {line:?} in:\n{stdout}"
            );
        }
    }
    let file = dir.join("mixed_units.csv");
    let stderr = mrl_err(&["data", "check", utf8(&file)]);
    assert_contains(
        &stderr,
        &format!(
            "error: {}: row 2: timestamp 1617570000000 is in milliseconds, but row 1 is in \
             seconds",
            file.display()
        ),
    );
}

#[test]
fn mrl_run_prints_the_adaptation_curve_the_verdict_and_writes_the_study() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("quickstart");
    let text = mrl_ok(&[
        "run",
        "--iterations",
        "1",
        "--n-envs",
        "4",
        "--test-markets",
        "2",
        "--test-bars",
        "1200",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(text.contains("synthetic-ar1"), "{text}");
    assert!(
        text.contains("mean return by episode of the trial"),
        "{text}"
    );
    for name in ["oracle", "rl2", "mlp", "buy_and_hold", "recovered"] {
        assert!(text.contains(&format!("  {name}")), "{name}: {text}");
    }
    assert!(text.contains("RL² (greedy)"), "{text}");
    assert!(text.contains("Deploy "), "{text}");
    let study: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("study.json")).unwrap()).unwrap();
    assert_eq!(study["settings"]["seeds"], serde_json::json!([1]));
    assert_eq!(study["settings"]["markets"].as_array().unwrap().len(), 2);
    assert!(study["adaptation"]["oracle"]["mean"].is_array());
    // The run's checkpoints carry the input statistics the quick-start config asks for.
    let agent: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("seed-1/rl2/checkpoint/agent.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        agent["config"]["input_norm"]["obs_mean"]
            .as_array()
            .unwrap()
            .len(),
        14
    );
}

/// A config whose value is out of range names the file as well as the field, for each
/// command that reads a train config; a misspelt key is named with the file too.
#[test]
fn a_bad_config_value_names_the_file_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad-gamma.toml");
    std::fs::write(&bad, "[gae]\ngamma = 1.5\n").unwrap();
    let out = dir.path().join("out");
    for args in [
        vec!["train", "--config", utf8(&bad), "--out", utf8(&out)],
        vec!["run", "--config", utf8(&bad), "--out", utf8(&out)],
    ] {
        let stderr = mrl_err(&args);
        assert!(stderr.contains(utf8(&bad)), "{args:?}: {stderr}");
        assert!(stderr.contains("gae.gamma = 1.5"), "{args:?}: {stderr}");
    }
    let typo = dir.path().join("typo.toml");
    std::fs::write(
        &typo,
        "[task]\nkind = \"multi-asset\"\nassets = [\"A\"]\n[task.split]\ntest_strat = 5\n",
    )
    .unwrap();
    let stderr = mrl_err(&["train", "--config", utf8(&typo), "--out", utf8(&out)]);
    assert!(
        stderr.contains(utf8(&typo)) && stderr.contains("test_strat"),
        "{stderr}"
    );
    // A synthetic family's or domain randomisation's range is checked at load too, so its
    // error names the file (it was found only when training started).
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    for (config, from, to, field) in [
        (
            "synthetic-ar1.toml",
            "phi_abs = [0.1, 0.5]",
            "phi_abs = [0.5, 0.1]",
            "phi_abs",
        ),
        (
            "synthetic-regimes.toml",
            "volatility = [0.003, 0.012]",
            "volatility = [-0.01, 0.012]",
            "volatility",
        ),
    ] {
        let text = std::fs::read_to_string(root.join(config)).unwrap();
        assert!(text.contains(from), "{config}");
        let bad = dir.path().join(config);
        std::fs::write(&bad, text.replace(from, to)).unwrap();
        let stderr = mrl_err(&["train", "--config", utf8(&bad), "--out", utf8(&out)]);
        assert!(
            stderr.contains(utf8(&bad)) && stderr.contains(field),
            "{stderr}"
        );
    }
    // The language-model trader's adapter rank and market process, likewise.
    let llm = std::fs::read_to_string(root.join("llm-quick.toml")).unwrap();
    for (from, to, field) in [
        ("rank = 8\n", "rank = 0\n", "rank"),
        ("phi = 0.3\n", "phi = 3.0\n", "phi"),
    ] {
        assert!(llm.contains(from), "llm-quick.toml: {from}");
        let bad = dir.path().join("llm-bad.toml");
        std::fs::write(&bad, llm.replace(from, to)).unwrap();
        let stderr = mrl_err(&["llm", "train", "--config", utf8(&bad), "--out", utf8(&out)]);
        assert!(
            stderr.contains(utf8(&bad)) && stderr.contains(field),
            "{stderr}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// mrl backtest: the run's config, in-sample test spans; mrl eval markets: file names

/// Trains the tiny RL² run of [`tiny_trading_runs`] alone; returns its run directory.
fn tiny_rl2_run(dir: &Path) -> PathBuf {
    let config = dir.join("rl2.toml");
    std::fs::write(
        &config,
        "iterations = 1\nn_envs = 2\n[agent]\nkind = \"rl2\"\nhidden = 8\n\
         [ppo]\nepochs = 1\nminibatch_trials = 2\n[task]\nkind = \"synthetic-ar1\"\n\
         bars = 300\nepisodes_per_trial = 3\ntrading = { max_steps = 10 }\n",
    )
    .unwrap();
    let run = dir.join("run-rl2");
    let out = mrl(&["train", "--config", utf8(&config), "--out", utf8(&run)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    run
}

/// A copy of `run` (its checkpoint) whose config.toml is `config` (none when `None`).
fn run_with_config(run: &Path, dir: &Path, name: &str, config: Option<&str>) -> PathBuf {
    let copy = dir.join(name);
    std::fs::create_dir_all(copy.join("checkpoint")).unwrap();
    for entry in std::fs::read_dir(run.join("checkpoint")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(
                &path,
                copy.join("checkpoint").join(path.file_name().unwrap()),
            )
            .unwrap();
        }
    }
    if let Some(text) = config {
        std::fs::write(copy.join("config.toml"), text).unwrap();
    }
    copy
}

/// A multi-asset config with the tiny run's trading settings and this `[task.split]`.
fn multi_asset_config(split: &str) -> String {
    format!(
        "iterations = 1\nn_envs = 2\n[agent]\nkind = \"rl2\"\nhidden = 8\n\
         [ppo]\nepochs = 1\nminibatch_trials = 2\n\
         [task]\nkind = \"multi-asset\"\nassets = [\"GBM\", \"ETHUSDT\", \"SOLUSDT\"]\n\
         episodes_per_trial = 3\ntrading = {{ max_steps = 10 }}\n[task.split]\n{split}\n"
    )
}

/// Runs `mrl backtest` without `-q` (so that warnings reach stderr) and asserts success.
fn backtest_loud(args: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mrl"))
        .arg("backtest")
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the mrl binary runs");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "stderr:\n{stderr}");
    (stdout, stderr)
}

/// Issue case: a run trained on an asset's bars before its `[task.split] test_start` (or on
/// all of them, without one) and backtested on that asset over those bars is an in-sample
/// test. It is run (users may want the diagnostic), with a warning on stderr, a line in the
/// table and an `in_sample` record in report.json; a held-out asset or a test span after
/// the cut gives none.
#[test]
fn backtest_warns_of_and_records_an_in_sample_test_span() {
    let dir = TempDir::new().unwrap();
    let trained = tiny_rl2_run(dir.path());
    let data = dir.path().join("GBM_1h.csv");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/synthetic/gbm_1h.csv"),
        &data,
    )
    .unwrap();
    let series = read_bars(&data).unwrap();
    let ts = series.timestamps();
    // The default test span is the last 30 bars (70..99); the cut at bar 85 leaves 15 of
    // them in the training period.
    let cases = [
        (format!("test_start = {}", ts[85]), Some((15, Some(ts[85])))),
        ("held_out = [\"SOLUSDT\"]".to_string(), Some((29, None))),
        (format!("test_start = {}", ts[60]), None),
        ("held_out = [\"GBM\"]".to_string(), None),
    ];
    for (i, (split, want)) in cases.iter().enumerate() {
        let run = run_with_config(
            &trained,
            dir.path(),
            &format!("run{i}"),
            Some(&multi_asset_config(split)),
        );
        let report = dir.path().join(format!("report{i}"));
        let args = [
            "--checkpoint",
            utf8(&run),
            "--data",
            utf8(&data),
            "--report",
            utf8(&report),
        ];
        let (stdout, stderr) = backtest_loud(&args);
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(report.join("report.json")).unwrap()).unwrap();
        match want {
            Some((bars, cut)) => {
                assert_contains(&stderr, "in-sample: the agent was trained on GBM");
                assert_contains(&stdout, "WARNING: in-sample: the agent was trained on GBM");
                let record = &json["in_sample"];
                assert_eq!(record["asset"], "GBM", "{split}: {json}");
                assert_eq!(
                    record["bars"].as_u64(),
                    Some(*bars as u64),
                    "{split}: {record}"
                );
                assert_eq!(record["evaluated"].as_u64(), Some(29), "{split}: {record}");
                assert_eq!(record["trained_before"].as_i64(), *cut, "{split}: {record}");
                // `mrl eval markets` warns of the same series in its table and summary.json.
                let summary = dir.path().join(format!("summary{i}"));
                let table = mrl_ok(&[
                    "eval",
                    "markets",
                    "--checkpoint",
                    utf8(&run),
                    "--data",
                    utf8(&data),
                    "--report",
                    utf8(&summary),
                ]);
                assert_contains(
                    &table,
                    "WARNING: GBM_1h: in-sample: the agent was trained on GBM",
                );
                let json: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(summary.join("summary.json")).unwrap())
                        .unwrap();
                assert_eq!(
                    json["in_sample"]["GBM_1h"]["bars"].as_u64(),
                    Some(*bars as u64)
                );
                // summary.csv carries the count on the series' row.
                let csv = std::fs::read_to_string(summary.join("summary.csv")).unwrap();
                let row = csv.lines().nth(1).unwrap_or_default();
                assert!(row.starts_with("GBM_1h,"), "{csv}");
                assert_eq!(
                    row.split(',').nth(4),
                    Some(bars.to_string().as_str()),
                    "{csv}"
                );
            }
            None => {
                assert!(!stderr.contains("in-sample"), "{split}: {stderr}");
                assert!(!stdout.contains("in-sample"), "{split}: {stdout}");
                assert!(json.get("in_sample").is_none(), "{split}: {json}");
            }
        }
    }
}

/// Issue case: a run's config.toml that does not load silently gave default walk-forward
/// settings. It is an error naming the file; a run without one falls back to the defaults
/// and says so.
#[test]
fn backtest_refuses_a_bad_run_config_and_says_when_there_is_none() {
    let dir = TempDir::new().unwrap();
    let trained = tiny_rl2_run(dir.path());
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/synthetic/gbm_1h.csv");
    for (name, config) in [
        ("syntax", "iterations = [\n"),
        ("unknown", "iterations = 1\nnot_a_field = 3\n"),
        ("invalid", "iterations = 0\n"),
    ] {
        let run = run_with_config(&trained, dir.path(), name, Some(config));
        let stderr = mrl_err(&[
            "backtest",
            "--checkpoint",
            utf8(&run),
            "--data",
            utf8(&data),
        ]);
        let file = run.join("config.toml");
        assert_contains(
            &stderr,
            &format!("loading the run's config {}", file.display()),
        );
    }
    // Through the checkpoint directory, the run's config beside it is found all the same.
    let bad = dir.path().join("syntax").join("checkpoint");
    let stderr = mrl_err(&[
        "backtest",
        "--checkpoint",
        utf8(&bad),
        "--data",
        utf8(&data),
    ]);
    assert_contains(&stderr, "config.toml");
    // Without a config.toml: the default settings (windows of 200 bars), with a warning.
    let long = dir.path().join("long_1h.csv");
    synth("gbm", 1200, 3, &long);
    let bare = run_with_config(&trained, dir.path(), "bare", None);
    let (stdout, stderr) = backtest_loud(&["--checkpoint", utf8(&bare), "--data", utf8(&long)]);
    assert_contains(&stderr, "has no config.toml");
    assert_contains(&stderr, "default walk-forward settings");
    assert_contains(&stdout, "window(s) of up to 200 bars");
}

/// Issue case: `mrl eval markets --data DIR` skipped `BTCUSDT_1h.CSV` although `mrl data
/// check` reads it: extensions are compared ignoring case.
#[test]
fn eval_markets_reads_files_with_upper_case_extensions() {
    let dir = TempDir::new().unwrap();
    let run = tiny_rl2_run(dir.path());
    let data = dir.path().join("upper");
    std::fs::create_dir(&data).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/synthetic");
    std::fs::copy(fixtures.join("gbm_1h.csv"), data.join("GBM_1h.CSV")).unwrap();
    std::fs::copy(fixtures.join("ar1_1h.csv"), data.join("AR1_1h.Csv")).unwrap();
    std::fs::write(data.join("notes.txt"), "not bars").unwrap();
    let table = mrl_ok(&[
        "eval",
        "markets",
        "--checkpoint",
        utf8(&run),
        "--data",
        utf8(&data),
    ]);
    assert_contains(&table, "AR1_1h");
    assert_contains(&table, "GBM_1h");
}
