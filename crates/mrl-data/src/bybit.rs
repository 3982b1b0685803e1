//! Bybit v5 market-data client (feature `bybit`): historical klines into a [`crate::BarSeries`].
//!
//! [`BybitClient`] asks `GET {base_url}/v5/market/kline` for pages of up to 1000 bars,
//! walking backwards from the end of the range (`end` = oldest open time − 1) until the
//! start is reached or a page comes back empty, then de-duplicates, sorts, trims and
//! validates. Requests are throttled ([`BybitConfig::requests_per_second`]) and retried with
//! capped exponential back-off and seeded jitter on HTTP 429/5xx, timeouts, connection
//! failures and the rate-limit and server-error `retCode`s ([`is_retryable_ret_code`]),
//! honouring `Retry-After` and `X-Bapi-Limit-Reset-Timestamp`. Any other non-zero `retCode`
//! is [`crate::Error::BybitApi`] at once, as is any other HTTP 4xx: a 403 is Bybit's IP ban
//! ("access too frequent"), which lasts at least ten minutes, so retrying it only prolongs it.
//! A malformed body is [`crate::Error::MalformedResponse`] naming the field or row.
//! [`BlockingBybitClient`] wraps the client for synchronous callers;
//! [`BybitClient::fetch_cached`] adds a file cache written atomically.
//!
//! ```no_run
//! use mrl_data::bybit::{BlockingBybitClient, BybitConfig, Category, KlineInterval};
//!
//! let config = BybitConfig { category: Category::Linear, ..Default::default() };
//! let mut client = BlockingBybitClient::new(config)?;
//! let interval: KlineInterval = "60".parse()?;
//! let series = client.fetch_klines_with_progress(
//!     "BTCUSDT",
//!     interval,
//!     1_704_067_200_000, // 2024-01-01T00:00:00Z
//!     1_706_745_599_999, // 2024-01-31T23:59:59.999Z
//!     |p| eprintln!("{} pages, {:.0}%", p.pages, 100.0 * p.fraction()),
//! )?;
//! assert_eq!(series.symbol(), Some("BTCUSDT"));
//! # Ok::<(), mrl_data::Error>(())
//! ```

mod cache;
mod client;
mod config;
mod decode;
mod retry;

pub use cache::cache_covers;
pub use client::{BlockingBybitClient, BybitClient, FetchProgress};
pub use config::{BybitConfig, Category, KlineInterval, MAX_PAGE_LIMIT};
pub use decode::{
    KlinePage, RATE_LIMIT_RET_CODES, SERVER_ERROR_RET_CODES, decode_kline_page,
    is_retryable_ret_code,
};
