//! The Bybit client against a scripted HTTP/1.1 server on 127.0.0.1, and the page decoder on
//! the Bybit-shaped fixtures. Never touches the network.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mrl_data::bybit::{
    BlockingBybitClient, BybitClient, BybitConfig, Category, FetchProgress, KlineInterval,
    decode_kline_page,
};
use mrl_data::{Error, HOUR_MS};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// 2024-01-01T00:00:00Z.
const T0: i64 = 1_704_067_200_000;

fn fixture(name: &str) -> String {
    let path = format!("{}/../../fixtures/bybit/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

// ---------------------------------------------------------------------------------------
// A scripted HTTP/1.1 server.

/// One scripted answer, given to the connections in the order they arrive.
#[derive(Clone)]
enum Reply {
    /// Status, extra headers, body, after a delay in ms.
    Respond {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
        delay_ms: u64,
    },
    /// Reads the request, then closes the connection without answering.
    HangUp,
}

fn ok(body: String) -> Reply {
    status(200, body)
}

fn status(status: u16, body: String) -> Reply {
    Reply::Respond {
        status,
        headers: Vec::new(),
        body,
        delay_ms: 0,
    }
}

struct TestServer {
    base_url: String,
    targets: Arc<Mutex<Vec<String>>>,
}

impl TestServer {
    /// Serves `replies` in order, one per connection, on its own thread and runtime, then
    /// stops listening (later connections are refused). Gives up waiting after 5 s.
    fn start(replies: Vec<Reply>) -> TestServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let targets = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&targets);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let mut tasks = Vec::new();
                for reply in replies {
                    let accepted =
                        tokio::time::timeout(Duration::from_secs(5), listener.accept()).await;
                    let Ok(Ok((stream, _))) = accepted else { break };
                    tasks.push(tokio::spawn(answer(stream, reply, Arc::clone(&log))));
                }
                drop(listener);
                for task in tasks {
                    let _ = task.await;
                }
            });
        });
        TestServer { base_url, targets }
    }

    /// The request targets (`/v5/market/kline?...`) received so far.
    fn targets(&self) -> Vec<String> {
        self.targets.lock().unwrap().clone()
    }

    /// Query parameter `name` of every request, in order.
    fn param(&self, name: &str) -> Vec<String> {
        self.targets()
            .iter()
            .map(|t| query_param(t, name))
            .collect()
    }

    fn config(&self) -> BybitConfig {
        BybitConfig {
            base_url: self.base_url.clone(),
            timeout_ms: 2_000,
            max_retries: 3,
            backoff_base_ms: 1,
            backoff_max_ms: 5,
            max_retry_after_ms: 20,
            requests_per_second: 1_000.0,
            ..Default::default()
        }
    }

    fn client(&self) -> BybitClient {
        BybitClient::new(self.config()).unwrap()
    }
}

async fn answer(mut stream: tokio::net::TcpStream, reply: Reply, log: Arc<Mutex<Vec<String>>>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let target = head.split_whitespace().nth(1).unwrap_or("").to_owned();
    log.lock().unwrap().push(target);
    let Reply::Respond {
        status,
        headers,
        body,
        delay_ms,
    } = reply
    else {
        return; // HangUp: drop the connection unanswered
    };
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    let mut response = format!(
        "HTTP/1.1 {status} Scripted\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str("\r\n");
    response.push_str(&body);
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn query_param(target: &str, name: &str) -> String {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Bybit-shaped bodies.

/// An hourly row at `T0 + hour·1h` closing at `close`, as Bybit sends it (strings).
fn row(hour: i64, close: f64) -> serde_json::Value {
    let open = close - 1.0;
    serde_json::json!([
        (T0 + hour * HOUR_MS).to_string(),
        open.to_string(),
        (close + 2.0).to_string(),
        (open - 2.0).to_string(),
        close.to_string(),
        "1.5",
        "150.0"
    ])
}

/// A page with the hourly rows `hours` (any order; sent newest first), close = 100 + hour.
fn page_of(hours: impl IntoIterator<Item = i64>) -> String {
    let mut hours: Vec<i64> = hours.into_iter().collect();
    hours.sort_unstable_by(|a, b| b.cmp(a));
    let rows: Vec<_> = hours.iter().map(|&h| row(h, 100.0 + h as f64)).collect();
    page_json(rows)
}

fn page_json(rows: Vec<serde_json::Value>) -> String {
    serde_json::json!({
        "retCode": 0,
        "retMsg": "OK",
        "result": { "category": "spot", "symbol": "BTCUSDT", "list": rows },
        "retExtInfo": {},
        "time": 1_704_110_400_000i64
    })
    .to_string()
}

fn ret_code(code: i64, msg: &str) -> String {
    serde_json::json!({ "retCode": code, "retMsg": msg, "result": {}, "retExtInfo": {}, "time": 1 })
        .to_string()
}

/// The three hourly bars of `[T0, T0 + 2h]` for BTCUSDT, the request most tests make.
async fn fetch_3h(client: &mut BybitClient) -> mrl_data::Result<mrl_data::BarSeries> {
    client
        .fetch_klines("BTCUSDT", KlineInterval::Hour1, T0, T0 + 2 * HOUR_MS)
        .await
}

// ---------------------------------------------------------------------------------------
// Paging.

#[tokio::test]
async fn pages_backwards_dedupes_sorts_and_trims() {
    // 30 hourly bars wanted: hours 0..=29. Pages overlap by two rows, and the last one
    // reaches one bar before the start.
    let mut page2 = vec![row(19, 119.0), row(18, 118.5)]; // duplicates of page 1, other closes
    page2.extend((8..18).rev().map(|h| row(h, 100.0 + h as f64)));
    let server = TestServer::start(vec![
        ok(page_of(18..30)),
        ok(page_json(page2)),
        ok(page_of(-1..10)),
        ok(page_of(0..1)), // must not be asked for
    ]);
    let mut client = BybitClient::new(BybitConfig {
        page_limit: 12,
        ..server.config()
    })
    .unwrap();
    let (start, end) = (T0, T0 + 29 * HOUR_MS + 59 * 60_000);
    let mut seen: Vec<FetchProgress> = Vec::new();
    let series = client
        .fetch_klines_with_progress("BTCUSDT", KlineInterval::Hour1, start, end, |p| {
            seen.push(p)
        })
        .await
        .unwrap();

    let expected: Vec<i64> = (0..30).map(|h| T0 + h * HOUR_MS).collect();
    assert_eq!(series.timestamps(), expected.as_slice());
    assert_eq!(series.closes()[18], 118.0, "the row of the first page wins");
    assert_eq!(series.closes()[19], 119.0);
    assert_eq!(series.symbol(), Some("BTCUSDT"));

    let ends: Vec<String> = [end, T0 + 18 * HOUR_MS - 1, T0 + 8 * HOUR_MS - 1]
        .iter()
        .map(i64::to_string)
        .collect();
    assert_eq!(server.param("end"), ends);
    assert_eq!(server.param("start"), vec![start.to_string(); 3]);
    assert_eq!(server.param("limit"), vec!["12"; 3]);
    assert_eq!(server.param("category"), vec!["spot"; 3]);
    assert_eq!(server.param("symbol"), vec!["BTCUSDT"; 3]);
    assert_eq!(server.param("interval"), vec!["60"; 3]);
    assert!(server.targets()[0].starts_with("/v5/market/kline?"));

    let pages: Vec<usize> = seen.iter().map(|p| p.pages).collect();
    let rows: Vec<usize> = seen.iter().map(|p| p.bars).collect();
    let oldest: Vec<Option<i64>> = seen.iter().map(|p| p.oldest_ms).collect();
    assert_eq!(pages, [1, 2, 3]);
    assert_eq!(rows, [12, 24, 35]);
    assert_eq!(
        oldest,
        [
            Some(T0 + 18 * HOUR_MS),
            Some(T0 + 8 * HOUR_MS),
            Some(T0 - HOUR_MS)
        ]
    );
    assert_eq!(seen[2].fraction(), 1.0);
}

#[tokio::test]
async fn fixture_pages_join_into_twelve_bars() {
    let server = TestServer::start(vec![
        ok(fixture("kline_btcusdt_60_page1.json")),
        ok(fixture("kline_btcusdt_60_page2.json")),
    ]);
    let series = server
        .client()
        .fetch_klines("BTCUSDT", KlineInterval::Hour1, T0, T0 + 11 * HOUR_MS)
        .await
        .unwrap();
    assert_eq!(series.len(), 12);
    assert_eq!(series.start(), T0);
    assert_eq!(series.end(), T0 + 11 * HOUR_MS);
    assert_eq!(series.interval(), KlineInterval::Hour1.to_interval());
    assert!(series.gaps().is_empty());
    assert_eq!(server.param("end")[1], (T0 + 6 * HOUR_MS - 1).to_string());
}

#[tokio::test]
async fn an_empty_page_ends_paging() {
    let server = TestServer::start(vec![
        ok(page_of(5..10)),
        ok(fixture("kline_empty.json")),
        ok(page_of(0..1)),
    ]);
    let mut pages = 0;
    let series = server
        .client()
        .fetch_klines_with_progress("BTCUSDT", KlineInterval::Hour1, T0, T0 + 9 * HOUR_MS, |p| {
            pages = p.pages
        })
        .await
        .unwrap();
    assert_eq!(
        series.start(),
        T0 + 5 * HOUR_MS,
        "the symbol starts trading later"
    );
    assert_eq!(series.len(), 5);
    assert_eq!(server.targets().len(), 2);
    assert_eq!(pages, 2);
}

#[tokio::test]
async fn nothing_at_all_is_empty_fetch() {
    let server = TestServer::start(vec![ok(fixture("kline_empty.json"))]);
    let err = server
        .client()
        .fetch_klines("BTCUSDT", KlineInterval::Day, T0, T0 + 10 * HOUR_MS)
        .await
        .unwrap_err();
    match err {
        Error::EmptyFetch {
            symbol,
            start_ms,
            end_ms,
        } => {
            assert_eq!(
                (symbol.as_str(), start_ms, end_ms),
                ("BTCUSDT", T0, T0 + 10 * HOUR_MS)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.targets().len(), 1);
}

#[tokio::test]
async fn rows_outside_the_range_only_is_empty_fetch() {
    // The server ignores `start` and sends only a bar before the range.
    let server = TestServer::start(vec![ok(page_of(-3..-2))]);
    let err = server
        .client()
        .fetch_klines("BTCUSDT", KlineInterval::Hour1, T0, T0 + HOUR_MS)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::EmptyFetch { .. }), "{err:?}");
}

#[tokio::test]
async fn a_page_newer_than_its_end_is_malformed() {
    let server = TestServer::start(vec![ok(page_of(50..52))]);
    let err = server
        .client()
        .fetch_klines("BTCUSDT", KlineInterval::Hour1, T0, T0 + 10 * HOUR_MS)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::MalformedResponse { detail } if detail.contains("after the end")),
        "{err:?}"
    );
}

#[tokio::test]
async fn invalid_bars_name_the_row() {
    let mut bad = row(1, 101.0);
    bad[2] = serde_json::json!("50"); // high below the body
    let server = TestServer::start(vec![ok(page_json(vec![row(2, 102.0), bad, row(0, 100.0)]))]);
    let err = fetch_3h(&mut server.client()).await.unwrap_err();
    assert!(
        matches!(err, Error::HighBelowBody { row: 2, .. }),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Retries and errors.

#[tokio::test]
async fn http_429_then_success() {
    let throttled = Reply::Respond {
        status: 429,
        headers: vec![("Retry-After", "0".into())],
        body: String::new(),
        delay_ms: 0,
    };
    let server = TestServer::start(vec![throttled, ok(page_of(0..3))]);
    let series = fetch_3h(&mut server.client()).await.unwrap();
    assert_eq!(series.len(), 3);
    let ends = server.param("end");
    assert_eq!(ends.len(), 2);
    assert_eq!(ends[0], ends[1], "the same page is asked again");
}

#[tokio::test]
async fn http_5xx_then_success() {
    let server = TestServer::start(vec![
        status(503, "upstream unavailable".into()),
        status(502, "<html>bad gateway</html>".into()),
        ok(page_of(0..3)),
    ]);
    let series = fetch_3h(&mut server.client()).await.unwrap();
    assert_eq!(series.len(), 3);
    assert_eq!(server.targets().len(), 3);
}

#[tokio::test]
async fn rate_limit_ret_code_then_success() {
    let limited = Reply::Respond {
        status: 200,
        headers: vec![("X-Bapi-Limit-Reset-Timestamp", "1672738134824".into())],
        body: fixture("kline_rate_limit_10006.json"),
        delay_ms: 0,
    };
    let server = TestServer::start(vec![
        limited,
        ok(ret_code(10016, "Server error")),
        ok(page_of(0..3)),
    ]);
    let series = fetch_3h(&mut server.client()).await.unwrap();
    assert_eq!(series.len(), 3);
    assert_eq!(server.targets().len(), 3);
}

/// Serves `first` and then a good page; the fetch must fail after the first request alone.
async fn fails_at_once(first: Reply) -> Error {
    let server = TestServer::start(vec![first, ok(page_of(0..3))]);
    let err = fetch_3h(&mut server.client()).await.unwrap_err();
    assert_eq!(server.targets().len(), 1, "no retry after {err:?}");
    err
}

#[tokio::test]
async fn error_ret_code_fails_at_once() {
    let err = fails_at_once(ok(fixture("kline_error_10001.json"))).await;
    match &err {
        Error::BybitApi { ret_code, ret_msg } => {
            assert_eq!(*ret_code, 10001);
            assert_eq!(ret_msg, "params error: Symbol Is Invalid");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "bybit api error 10001: params error: Symbol Is Invalid"
    );
}

#[tokio::test]
async fn http_4xx_fails_at_once_with_a_snippet() {
    let err = fails_at_once(status(404, "x".repeat(1_000))).await;
    match err {
        Error::Http {
            status,
            body_snippet,
        } => {
            assert_eq!(status, 404);
            assert_eq!(body_snippet.len(), 200);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn malformed_body_fails_at_once_naming_the_field() {
    let err = fails_at_once(ok(fixture("kline_malformed_row.json"))).await;
    match &err {
        Error::MalformedResponse { detail } => {
            assert!(detail.contains("result.list[1][3] (low)"), "{detail}")
        }
        other => panic!("{other:?}"),
    }

    let server = TestServer::start(vec![ok("<html>maintenance</html>".into())]);
    let err = fetch_3h(&mut server.client()).await.unwrap_err();
    assert!(
        matches!(&err, Error::MalformedResponse { detail } if detail.starts_with("invalid json")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_foreign_symbol_is_malformed() {
    let body = page_of(0..3).replace("BTCUSDT", "ETHUSDT");
    let server = TestServer::start(vec![ok(body)]);
    let err = fetch_3h(&mut server.client()).await.unwrap_err();
    assert!(
        matches!(&err, Error::MalformedResponse { detail } if detail.contains("ETHUSDT")),
        "{err:?}"
    );
}

#[tokio::test]
async fn retries_exhausted_reports_the_last_failure() {
    let server = TestServer::start(vec![
        status(500, "a".into()),
        status(500, "b".into()),
        status(503, "c".into()),
    ]);
    let mut client = BybitClient::new(BybitConfig {
        max_retries: 2,
        ..server.config()
    })
    .unwrap();
    let err = fetch_3h(&mut client).await.unwrap_err();
    match &err {
        Error::RetriesExhausted { attempts, last } => {
            assert_eq!(*attempts, 3);
            assert!(
                matches!(**last, Error::Http { status: 503, .. }),
                "{last:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with("gave up after 3 attempts: http status 503"),
        "{err}"
    );
    assert_eq!(server.targets().len(), 3);
}

#[tokio::test]
async fn retries_exhausted_on_rate_limit_ret_codes() {
    let server = TestServer::start(vec![ok(ret_code(10006, "Too many visits!")); 2]);
    let mut client = BybitClient::new(BybitConfig {
        max_retries: 1,
        ..server.config()
    })
    .unwrap();
    let err = fetch_3h(&mut client).await.unwrap_err();
    assert!(
        matches!(&err, Error::RetriesExhausted { attempts: 2, last } if matches!(**last, Error::BybitApi { ret_code: 10006, .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_timeout_is_retried() {
    let slow = Reply::Respond {
        status: 200,
        headers: Vec::new(),
        body: page_of(0..3),
        delay_ms: 1_500,
    };
    let server = TestServer::start(vec![slow, ok(page_of(0..3))]);
    let mut client = BybitClient::new(BybitConfig {
        timeout_ms: 200,
        ..server.config()
    })
    .unwrap();
    let series = fetch_3h(&mut client).await.unwrap();
    assert_eq!(series.len(), 3);
    assert_eq!(server.targets().len(), 2);
}

#[tokio::test]
async fn a_dropped_connection_is_retried() {
    let server = TestServer::start(vec![Reply::HangUp, ok(page_of(0..3))]);
    let series = fetch_3h(&mut server.client()).await.unwrap();
    assert_eq!(series.len(), 3);
    assert_eq!(server.targets().len(), 2);
}

#[tokio::test]
async fn a_refused_connection_exhausts_as_transport() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut client = BybitClient::new(BybitConfig {
        base_url: format!("http://127.0.0.1:{port}"),
        max_retries: 1,
        backoff_base_ms: 1,
        backoff_max_ms: 1,
        ..Default::default()
    })
    .unwrap();
    let err = fetch_3h(&mut client).await.unwrap_err();
    assert!(
        matches!(&err, Error::RetriesExhausted { attempts: 2, last } if matches!(**last, Error::Transport { timeout: false, .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn bad_requests_are_refused_before_any_traffic() {
    let server = TestServer::start(vec![ok(page_of(0..3))]);
    let mut client = server.client();
    let err = client
        .fetch_klines("BTC USDT", KlineInterval::Hour1, T0, T0 + HOUR_MS)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidParameter { name: "symbol", .. }),
        "{err:?}"
    );
    let err = client
        .fetch_klines("BTCUSDT", KlineInterval::Hour1, T0 + HOUR_MS, T0)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidParameter {
                name: "start_ms",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(server.targets().is_empty());
    let err = BybitClient::new(BybitConfig {
        page_limit: 1_001,
        ..Default::default()
    })
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidParameter {
                name: "page_limit",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn linear_category_and_daily_interval_reach_the_query() {
    let server = TestServer::start(vec![ok(page_of(0..1))]);
    let mut client = BybitClient::new(BybitConfig {
        category: Category::Linear,
        ..server.config()
    })
    .unwrap();
    client
        .fetch_klines("BTCUSDT", "D".parse().unwrap(), T0, T0)
        .await
        .unwrap();
    assert_eq!(server.param("category"), ["linear"]);
    assert_eq!(server.param("interval"), ["D"]);
    assert_eq!(server.param("limit"), ["1000"]);
}

// ---------------------------------------------------------------------------------------
// The blocking client.

#[test]
fn blocking_client_fetches() {
    let server = TestServer::start(vec![ok(page_of(3..6)), ok(page_of(0..4))]);
    let mut client = BlockingBybitClient::new(BybitConfig {
        page_limit: 3,
        ..server.config()
    })
    .unwrap();
    let mut calls = 0;
    let series = client
        .fetch_klines_with_progress(
            "BTCUSDT",
            KlineInterval::Hour1,
            T0,
            T0 + 5 * HOUR_MS,
            |_| calls += 1,
        )
        .unwrap();
    assert_eq!(series.len(), 6);
    assert_eq!(calls, 2);
    assert_eq!(client.config().page_limit, 3);
}

#[test]
fn blocking_client_inside_a_runtime_is_an_error() {
    let mut client = BlockingBybitClient::new(BybitConfig::default()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result =
        runtime.block_on(async { client.fetch_klines("BTCUSDT", KlineInterval::Hour1, T0, T0) });
    assert!(
        matches!(
            result,
            Err(Error::InvalidParameter {
                name: "runtime",
                ..
            })
        ),
        "{result:?}"
    );
}

// ---------------------------------------------------------------------------------------
// The file cache.

/// [`BybitClient::fetch_cached`] of hourly BTCUSDT bars.
async fn fetch_cached_hourly(
    client: &mut BybitClient,
    start_ms: i64,
    end_ms: i64,
    path: &std::path::Path,
) -> mrl_data::Result<mrl_data::BarSeries> {
    client
        .fetch_cached(
            "BTCUSDT",
            KlineInterval::Hour1,
            start_ms,
            end_ms,
            path,
            |_| {},
        )
        .await
}

#[tokio::test]
async fn fetch_cached_writes_then_reuses() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("btcusdt-60.csv");
    let server = TestServer::start(vec![ok(page_of(0..10))]);
    let mut client = BybitClient::new(BybitConfig {
        max_retries: 0,
        ..server.config()
    })
    .unwrap();
    let (start, end) = (T0, T0 + 9 * HOUR_MS);
    let fetched = fetch_cached_hourly(&mut client, start, end, &path)
        .await
        .unwrap();
    assert_eq!(fetched.len(), 10);
    assert!(path.exists());
    // The server has no more answers: only the cache can serve these.
    let again = fetch_cached_hourly(&mut client, start, end, &path)
        .await
        .unwrap();
    assert_eq!(again.timestamps(), fetched.timestamps());
    assert_eq!(again.closes(), fetched.closes());
    assert_eq!(again.symbol(), Some("BTCUSDT"));
    let part = fetch_cached_hourly(&mut client, T0 + 2 * HOUR_MS, T0 + 4 * HOUR_MS, &path)
        .await
        .unwrap();
    assert_eq!(part.len(), 3);
    assert_eq!(server.targets().len(), 1);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        ["btcusdt-60.csv"],
        "no temporary file is left behind"
    );
}

#[tokio::test]
async fn fetch_cached_writes_parquet_into_new_directories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache").join("BTCUSDT_60.parquet");
    let server = TestServer::start(vec![ok(page_of(0..4))]);
    let fetched = fetch_cached_hourly(&mut server.client(), T0, T0 + 3 * HOUR_MS, &path)
        .await
        .unwrap();
    let stored = mrl_data::read_bars(&path).unwrap();
    assert_eq!(stored.timestamps(), fetched.timestamps());
    assert_eq!(stored.closes(), fetched.closes());
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["BTCUSDT_60.parquet"]);
}

#[tokio::test]
async fn fetch_cached_refetches_a_range_the_file_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("btc.csv");
    let server = TestServer::start(vec![ok(page_of(0..3)), ok(page_of(0..6))]);
    let mut client = server.client();
    fetch_cached_hourly(&mut client, T0, T0 + 2 * HOUR_MS, &path)
        .await
        .unwrap();
    let longer = fetch_cached_hourly(&mut client, T0, T0 + 5 * HOUR_MS, &path)
        .await
        .unwrap();
    assert_eq!(longer.len(), 6);
    assert_eq!(server.targets().len(), 2);
    std::fs::write(&path, "not,a,cache\n").unwrap();
    let server = TestServer::start(vec![ok(page_of(0..6))]);
    let mut client = server.client();
    let refetched = fetch_cached_hourly(&mut client, T0, T0 + 5 * HOUR_MS, &path)
        .await
        .unwrap();
    assert_eq!(refetched.len(), 6, "an unreadable cache is replaced");
    assert_eq!(server.targets().len(), 1);
}

#[tokio::test]
async fn a_failed_fetch_writes_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("btc.csv");
    let server = TestServer::start(vec![ok(fixture("kline_error_10001.json"))]);
    let err = fetch_cached_hourly(&mut server.client(), T0, T0 + HOUR_MS, &path)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::BybitApi {
                ret_code: 10001,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

// ---------------------------------------------------------------------------------------
// The decoder on fixtures, and never a panic.

#[test]
fn fixture_pages_decode() {
    let page = decode_kline_page(fixture("kline_btcusdt_60_page1.json").as_bytes()).unwrap();
    assert_eq!(
        (page.category.as_str(), page.symbol.as_str()),
        ("spot", "BTCUSDT")
    );
    let stamps: Vec<i64> = page.bars.iter().map(|b| b.timestamp).collect();
    let expected: Vec<i64> = (6..12).rev().map(|h| T0 + h * HOUR_MS).collect();
    assert_eq!(stamps, expected, "newest first, as sent");
    let newest = page.bars[0];
    assert_eq!(
        (newest.open, newest.high, newest.low, newest.close),
        (42455.0, 42535.75, 42426.75, 42500.25)
    );
    assert_eq!(newest.volume, 25.125);
    for (i, bar) in page.bars.iter().enumerate() {
        bar.validate(i + 1).unwrap();
    }
    let page2 = decode_kline_page(fixture("kline_btcusdt_60_page2.json").as_bytes()).unwrap();
    assert_eq!(page2.bars.len(), 7);
    assert!(
        decode_kline_page(fixture("kline_empty.json").as_bytes())
            .unwrap()
            .bars
            .is_empty()
    );
}

#[test]
fn fixture_errors_decode() {
    let err = decode_kline_page(fixture("kline_rate_limit_10006.json").as_bytes()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::BybitApi {
                ret_code: 10006,
                ..
            }
        ),
        "{err:?}"
    );
    let err = decode_kline_page(fixture("kline_malformed_row.json").as_bytes()).unwrap_err();
    assert!(
        matches!(&err, Error::MalformedResponse { detail } if detail.contains("result.list[1][3] (low)") && detail.contains("\"n/a\"")),
        "{err:?}"
    );
}

/// A JSON value of any shape, small.
fn any_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        "\\PC{0,12}".prop_map(serde_json::Value::from),
        "-?[0-9]{1,14}(\\.[0-9]{0,4})?".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 32, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn decoder_never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_kline_page(&body);
    }

    #[test]
    fn decoder_never_panics_on_json_shapes(
        ret_code in prop_oneof![Just(0i64), any::<i64>()],
        list in any_json(),
        result_extra in any_json(),
    ) {
        let body = serde_json::json!({
            "retCode": ret_code,
            "retMsg": "OK",
            "result": { "list": list, "symbol": result_extra },
        });
        let outcome = decode_kline_page(body.to_string().as_bytes());
        if ret_code != 0 {
            prop_assert!(matches!(outcome, Err(Error::BybitApi { .. })), "{outcome:?}");
        }
    }

    #[test]
    fn decoder_reads_back_what_it_is_given(
        // Millisecond times (1970-03-26 .. 2200): Bybit's unit, checked by the decoder.
        rows in prop::collection::vec(
            (7_258_118_400i64..7_258_118_400_000, 1e-8f64..1e9, 0f64..1e12),
            0..40,
        ),
    ) {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|&(t, p, v)| serde_json::json!([t.to_string(), p.to_string(), p.to_string(), p.to_string(), p.to_string(), v.to_string(), "0"]))
            .collect();
        let page = decode_kline_page(page_json(list).as_bytes()).unwrap();
        prop_assert_eq!(page.bars.len(), rows.len());
        for (bar, &(t, p, v)) in page.bars.iter().zip(&rows) {
            prop_assert_eq!(bar.timestamp, t);
            prop_assert_eq!(bar.close, p);
            prop_assert_eq!(bar.volume, v);
        }
    }
}
