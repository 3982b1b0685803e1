//! [`BybitClient`] (async) and [`BlockingBybitClient`]: paged, throttled, retried kline fetches.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reqwest::{StatusCode, Url};
use tokio::time::Instant;

use super::config::{BybitConfig, KlineInterval};
use super::decode::{KlinePage, RATE_LIMIT_RET_CODES, decode_kline_page, is_retryable_ret_code};
use super::retry::{retry_delay_ms, server_hint_ms};
use crate::error::{Error, Result};
use crate::series::{Bar, BarSeries};

/// Longest body excerpt kept in [`Error::Http`].
const BODY_SNIPPET_CHARS: usize = 200;

/// Where a multi-page fetch stands; passed to the progress callback after every page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FetchProgress {
    /// Pages received so far (an empty last page included).
    pub pages: usize,
    /// Rows received so far, before de-duplication and trimming to the range.
    pub bars: usize,
    /// Open time of the oldest row received so far (ms); `None` before the first row.
    pub oldest_ms: Option<i64>,
    /// The requested range start (ms, inclusive).
    pub start_ms: i64,
    /// The requested range end (ms, inclusive).
    pub end_ms: i64,
}

impl FetchProgress {
    /// Share of the range covered so far, in `[0, 1]`: pages run from `end_ms` back to
    /// `start_ms`, so this is `(end − oldest) / (end − start)`.
    pub fn fraction(&self) -> f64 {
        let Some(oldest) = self.oldest_ms else {
            return 0.0;
        };
        let span = (self.end_ms - self.start_ms).max(1) as f64;
        ((self.end_ms - oldest) as f64 / span).clamp(0.0, 1.0)
    }
}

/// Outcome of one HTTP attempt.
enum Attempt {
    Done(KlinePage),
    /// A transient failure, with the server's wait hint when it gave one.
    Retry {
        error: Error,
        hint_ms: Option<u64>,
    },
    Fail(Error),
}

/// An async client for Bybit's v5 kline endpoint.
///
/// One request at a time (`&mut self`), spaced by [`BybitConfig::requests_per_second`], each
/// retried on HTTP 429/5xx, timeouts, connection failures and rate-limit or server-error
/// `retCode`s ([`super::is_retryable_ret_code`]) with the back-off of [`BybitConfig`].
/// Emits `tracing` events: `debug` per page, `warn` per retry.
#[derive(Debug)]
pub struct BybitClient {
    config: BybitConfig,
    kline_url: Url,
    http: reqwest::Client,
    rng: ChaCha8Rng,
    last_request: Option<Instant>,
}

impl BybitClient {
    /// A client for `config`, validated here. Needs no runtime; requests need a tokio one.
    pub fn new(config: BybitConfig) -> Result<Self> {
        config.validate()?;
        let kline_url = config.kline_url()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .user_agent(concat!("mrl-data/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Transport {
                detail: format!("cannot build the http client: {}", error_chain(&e)),
                timeout: false,
            })?;
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        Ok(BybitClient {
            config,
            kline_url,
            http,
            rng,
            last_request: None,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &BybitConfig {
        &self.config
    }

    /// All bars of `symbol` with open time in `[start_ms, end_ms]` (ms since the epoch, UTC),
    /// oldest first, labelled with `symbol`.
    ///
    /// Pages backwards from `end_ms` (next `end` = oldest open time − 1) until a page reaches
    /// `start_ms` or comes back empty; rows are de-duplicated by open time, sorted, trimmed to
    /// the range and validated ([`BarSeries::new`]: a bad bar is named by its row in the
    /// result). A bar still forming when the fetch ends (open time + interval length after
    /// now; a month counts as 31 days) is dropped. No bar at all is [`Error::EmptyFetch`].
    pub async fn fetch_klines(
        &mut self,
        symbol: &str,
        interval: KlineInterval,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<BarSeries> {
        self.fetch_klines_with_progress(symbol, interval, start_ms, end_ms, |_| {})
            .await
    }

    /// [`BybitClient::fetch_klines`], calling `progress` after every page.
    pub async fn fetch_klines_with_progress(
        &mut self,
        symbol: &str,
        interval: KlineInterval,
        start_ms: i64,
        end_ms: i64,
        mut progress: impl FnMut(FetchProgress),
    ) -> Result<BarSeries> {
        validate_request(symbol, start_ms, end_ms)?;
        let mut rows: Vec<Bar> = Vec::new();
        let mut state = FetchProgress {
            pages: 0,
            bars: 0,
            oldest_ms: None,
            start_ms,
            end_ms,
        };
        let mut page_end = end_ms;
        loop {
            let page = self
                .fetch_page(symbol, interval, start_ms, page_end)
                .await?;
            state.pages += 1;
            let Some(oldest) = page.bars.iter().map(|bar| bar.timestamp).min() else {
                tracing::debug!(
                    symbol,
                    page = state.pages,
                    end_ms = page_end,
                    "bybit: empty page, done"
                );
                progress(state);
                break;
            };
            if oldest > page_end {
                return Err(Error::MalformedResponse {
                    detail: format!(
                        "page requested with end={page_end} has its oldest row at {oldest}, after the end"
                    ),
                });
            }
            tracing::debug!(
                symbol,
                page = state.pages,
                rows = page.bars.len(),
                end_ms = page_end,
                oldest_ms = oldest,
                "bybit: page fetched"
            );
            rows.extend(page.bars);
            state.bars = rows.len();
            state.oldest_ms = Some(oldest);
            progress(state);
            if oldest <= start_ms {
                break;
            }
            page_end = oldest - 1; // oldest > start_ms ≥ 0: no overflow
        }
        let newest_complete_ms = now_ms().saturating_sub(interval.max_millis());
        assemble_series(symbol, rows, start_ms, end_ms, newest_complete_ms)
    }

    /// One request for the rows of `[start_ms, end_ms]` (at most
    /// [`BybitConfig::page_limit`], newest first), with throttling and retries.
    pub async fn fetch_page(
        &mut self,
        symbol: &str,
        interval: KlineInterval,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<KlinePage> {
        let mut url = self.kline_url.clone();
        url.query_pairs_mut()
            .append_pair("category", self.config.category.as_str())
            .append_pair("symbol", symbol)
            .append_pair("interval", interval.as_str())
            .append_pair("start", &start_ms.to_string())
            .append_pair("end", &end_ms.to_string())
            .append_pair("limit", &self.config.page_limit.to_string());
        let mut retries = 0u32;
        loop {
            let (error, hint_ms) = match self.attempt(&url).await {
                Attempt::Done(page) => return check_symbol(page, symbol),
                Attempt::Fail(error) => return Err(error),
                Attempt::Retry { error, hint_ms } => (error, hint_ms),
            };
            if retries >= self.config.max_retries {
                return Err(Error::RetriesExhausted {
                    attempts: retries + 1,
                    last: Box::new(error),
                });
            }
            let u: f64 = self.rng.random();
            let delay_ms = retry_delay_ms(&self.config, retries, u, hint_ms);
            retries += 1;
            tracing::warn!(
                symbol,
                end_ms,
                retry = retries,
                max_retries = self.config.max_retries,
                delay_ms,
                error = %error,
                "bybit: request failed, retrying"
            );
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        }
    }

    /// Sends one request and sorts the outcome into done, retry or fail.
    async fn attempt(&mut self, url: &Url) -> Attempt {
        self.throttle().await;
        let response = match self.http.get(url.clone()).send().await {
            Ok(response) => response,
            Err(e) => return transport_failure(&e),
        };
        let status = response.status();
        let hint_ms = server_hint_ms(response.headers(), now_ms());
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(e) => return transport_failure(&e),
        };
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Attempt::Retry {
                error: Error::RateLimited {
                    retry_after_ms: hint_ms,
                },
                hint_ms,
            };
        }
        if !status.is_success() {
            let error = Error::Http {
                status: status.as_u16(),
                body_snippet: String::from_utf8_lossy(&body)
                    .chars()
                    .take(BODY_SNIPPET_CHARS)
                    .collect(),
            };
            return if status.is_server_error() {
                Attempt::Retry {
                    error,
                    hint_ms: None,
                }
            } else {
                Attempt::Fail(error)
            };
        }
        match decode_kline_page(&body) {
            Ok(page) => Attempt::Done(page),
            Err(Error::BybitApi { ret_code, ret_msg }) if is_retryable_ret_code(ret_code) => {
                // The reset header is only a wait hint when the rate limit was hit.
                let hint_ms = hint_ms.filter(|_| RATE_LIMIT_RET_CODES.contains(&ret_code));
                Attempt::Retry {
                    error: Error::BybitApi { ret_code, ret_msg },
                    hint_ms,
                }
            }
            Err(error) => Attempt::Fail(error),
        }
    }

    /// Waits until `1 / requests_per_second` has passed since the previous request started.
    async fn throttle(&mut self) {
        let gap = request_gap(self.config.requests_per_second);
        if let Some(next) = self.last_request.and_then(|last| last.checked_add(gap)) {
            tokio::time::sleep_until(next).await;
        }
        self.last_request = Some(Instant::now());
    }
}

/// The least time between the starts of two requests: `1 / requests_per_second`, at most an
/// hour whatever tiny rate was configured.
fn request_gap(requests_per_second: f64) -> Duration {
    Duration::try_from_secs_f64(1.0 / requests_per_second)
        .unwrap_or(Duration::MAX)
        .min(Duration::from_secs(3600))
}

/// Checks the symbol and range of a fetch request.
fn validate_request(symbol: &str, start_ms: i64, end_ms: i64) -> Result<()> {
    if symbol.is_empty()
        || symbol.len() > 64
        || !symbol
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(Error::InvalidParameter {
            name: "symbol",
            value: symbol.chars().take(64).collect(),
            reason: "must be 1 to 64 ASCII letters, digits, '-', '_' or '.'".into(),
        });
    }
    if start_ms < 0 || start_ms > end_ms {
        return Err(Error::InvalidParameter {
            name: "start_ms",
            value: start_ms.to_string(),
            reason: format!("must be >= 0 and <= end_ms = {end_ms}"),
        });
    }
    Ok(())
}

/// Rejects a page labelled with another symbol than the one asked for.
fn check_symbol(page: KlinePage, symbol: &str) -> Result<KlinePage> {
    if !page.symbol.is_empty() && !page.symbol.eq_ignore_ascii_case(symbol) {
        return Err(Error::MalformedResponse {
            detail: format!("result.symbol is {:?}, expected {symbol:?}", page.symbol),
        });
    }
    Ok(page)
}

/// Joins the rows of all pages: keeps `[start_ms, end_ms]` up to the bar opening at
/// `newest_complete_ms` (later bars are still forming), sorts by open time, keeps the first
/// row received for each open time, validates, labels with `symbol`.
pub(crate) fn assemble_series(
    symbol: &str,
    mut rows: Vec<Bar>,
    start_ms: i64,
    end_ms: i64,
    newest_complete_ms: i64,
) -> Result<BarSeries> {
    let last_ms = end_ms.min(newest_complete_ms);
    rows.retain(|bar| (start_ms..=last_ms).contains(&bar.timestamp));
    rows.sort_by_key(|bar| bar.timestamp); // stable: the first row received stays first
    rows.dedup_by_key(|bar| bar.timestamp);
    if rows.is_empty() {
        return Err(Error::EmptyFetch {
            symbol: symbol.to_owned(),
            start_ms,
            end_ms,
        });
    }
    Ok(BarSeries::new(&rows)?.with_symbol(symbol))
}

fn transport_failure(error: &reqwest::Error) -> Attempt {
    let failure = Error::Transport {
        detail: error_chain(error),
        timeout: error.is_timeout(),
    };
    if error.is_builder() {
        Attempt::Fail(failure)
    } else {
        Attempt::Retry {
            error: failure,
            hint_ms: None,
        }
    }
}

/// `error: cause: cause ...`, since reqwest's own message hides the root cause.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Wall-clock time in ms since the epoch (0 if the clock is before 1970).
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A synchronous [`BybitClient`] that owns a current-thread tokio runtime, for the CLI and
/// other non-async callers. Do not call it from inside an async runtime: it answers
/// [`Error::InvalidParameter`] there instead of blocking the executor.
#[derive(Debug)]
pub struct BlockingBybitClient {
    runtime: tokio::runtime::Runtime,
    client: BybitClient,
}

impl BlockingBybitClient {
    /// A blocking client for `config` (validated here).
    pub fn new(config: BybitConfig) -> Result<Self> {
        let client = BybitClient::new(config)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Transport {
                detail: format!("cannot start the tokio runtime: {e}"),
                timeout: false,
            })?;
        Ok(BlockingBybitClient { runtime, client })
    }

    /// The configuration in use.
    pub fn config(&self) -> &BybitConfig {
        self.client.config()
    }

    /// The async client inside, e.g. to call [`BybitClient::fetch_page`] from `block_on`.
    pub fn client_mut(&mut self) -> &mut BybitClient {
        &mut self.client
    }

    /// Blocking [`BybitClient::fetch_klines`].
    pub fn fetch_klines(
        &mut self,
        symbol: &str,
        interval: KlineInterval,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<BarSeries> {
        self.fetch_klines_with_progress(symbol, interval, start_ms, end_ms, |_| {})
    }

    /// Blocking [`BybitClient::fetch_klines_with_progress`].
    pub fn fetch_klines_with_progress(
        &mut self,
        symbol: &str,
        interval: KlineInterval,
        start_ms: i64,
        end_ms: i64,
        progress: impl FnMut(FetchProgress),
    ) -> Result<BarSeries> {
        ensure_outside_runtime()?;
        let client = &mut self.client;
        self.runtime.block_on(
            client.fetch_klines_with_progress(symbol, interval, start_ms, end_ms, progress),
        )
    }

    /// Blocking [`BybitClient::fetch_cached`].
    pub fn fetch_cached(
        &mut self,
        symbol: &str,
        interval: KlineInterval,
        start_ms: i64,
        end_ms: i64,
        path: &std::path::Path,
        progress: impl FnMut(FetchProgress),
    ) -> Result<BarSeries> {
        ensure_outside_runtime()?;
        let client = &mut self.client;
        self.runtime
            .block_on(client.fetch_cached(symbol, interval, start_ms, end_ms, path, progress))
    }
}

/// `block_on` inside a runtime would panic; say so as an error instead.
fn ensure_outside_runtime() -> Result<()> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(Error::InvalidParameter {
            name: "runtime",
            value: "inside a tokio runtime".into(),
            reason: "BlockingBybitClient cannot block inside an async runtime; use BybitClient"
                .into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(timestamp: i64, close: f64) -> Bar {
        Bar {
            timestamp,
            open: close,
            high: close + 1.0,
            low: close - 1.0,
            close,
            volume: 1.0,
        }
    }

    #[test]
    fn assemble_dedupes_sorts_and_trims() {
        let rows = vec![
            bar(50, 5.0),
            bar(40, 4.0),
            bar(30, 3.0),
            bar(40, 99.0),
            bar(20, 2.0),
            bar(10, 1.0),
        ];
        let series = assemble_series("BTCUSDT", rows, 20, 45, i64::MAX).unwrap();
        assert_eq!(series.timestamps(), &[20, 30, 40]);
        assert_eq!(
            series.closes(),
            &[2.0, 3.0, 4.0],
            "the first row received wins"
        );
        assert_eq!(series.symbol(), Some("BTCUSDT"));
    }

    #[test]
    fn assemble_drops_bars_still_forming() {
        let rows = vec![bar(30, 13.0), bar(20, 12.0), bar(10, 11.0)];
        let series = assemble_series("X", rows.clone(), 0, 100, 20).unwrap();
        assert_eq!(series.timestamps(), &[10, 20]);
        let err = assemble_series("X", rows, 15, 100, 12).unwrap_err();
        assert!(matches!(err, Error::EmptyFetch { .. }), "{err:?}");
    }

    #[test]
    fn assemble_of_nothing_in_range_is_empty_fetch() {
        let err = assemble_series("X", vec![bar(5, 1.0)], 10, 20, i64::MAX).unwrap_err();
        assert!(
            matches!(
                err,
                Error::EmptyFetch {
                    start_ms: 10,
                    end_ms: 20,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn assemble_names_the_bad_row() {
        let mut bad = bar(30, 3.0);
        bad.high = 1.0;
        let err = assemble_series("X", vec![bar(40, 4.0), bad, bar(20, 2.0)], 0, 100, i64::MAX)
            .unwrap_err();
        assert!(
            matches!(err, Error::HighBelowBody { row: 2, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn request_validation() {
        assert!(validate_request("BTCUSDT", 0, 10).is_ok());
        assert!(validate_request("BTC-29MAR24", 5, 5).is_ok());
        for (symbol, start, end, field) in [
            ("", 0, 1, "symbol"),
            ("BTC USDT", 0, 1, "symbol"),
            ("BTC&x=1", 0, 1, "symbol"),
            ("BTCUSDT", 2, 1, "start_ms"),
            ("BTCUSDT", -1, 1, "start_ms"),
        ] {
            match validate_request(symbol, start, end) {
                Err(Error::InvalidParameter { name, .. }) => assert_eq!(name, field),
                other => panic!("{symbol:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn request_gap_is_the_inverse_rate_capped_at_an_hour() {
        assert_eq!(request_gap(10.0), Duration::from_millis(100));
        assert_eq!(request_gap(1_000.0), Duration::from_millis(1));
        assert_eq!(request_gap(1e-300), Duration::from_secs(3600));
    }

    #[test]
    fn progress_fraction() {
        let mut p = FetchProgress {
            pages: 1,
            bars: 10,
            oldest_ms: None,
            start_ms: 0,
            end_ms: 100,
        };
        assert_eq!(p.fraction(), 0.0);
        p.oldest_ms = Some(75);
        assert_eq!(p.fraction(), 0.25);
        p.oldest_ms = Some(-5);
        assert_eq!(p.fraction(), 1.0);
    }

    #[test]
    fn a_foreign_symbol_is_rejected() {
        let page = KlinePage {
            category: "spot".into(),
            symbol: "ETHUSDT".into(),
            bars: vec![],
        };
        assert!(matches!(
            check_symbol(page, "BTCUSDT"),
            Err(Error::MalformedResponse { .. })
        ));
        let page = KlinePage {
            category: "spot".into(),
            symbol: "btcusdt".into(),
            bars: vec![],
        };
        assert!(check_symbol(page, "BTCUSDT").is_ok());
    }
}
