//! [`BybitConfig`], [`Category`] and [`KlineInterval`]: what to ask Bybit for and how politely.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::series::{DAY_MS, HOUR_MS, Interval};

/// The most rows Bybit returns for one kline request.
pub const MAX_PAGE_LIMIT: u32 = 1000;

/// Bybit's product type, the `category` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Spot pairs.
    #[default]
    Spot,
    /// USDT and USDC perpetuals and futures.
    Linear,
    /// Coin-margined (inverse) perpetuals and futures.
    Inverse,
}

impl Category {
    /// The query-string value: `spot`, `linear` or `inverse`.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Spot => "spot",
            Category::Linear => "linear",
            Category::Inverse => "inverse",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Category {
    type Err = Error;

    /// Parses `spot`, `linear` or `inverse` (any case).
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "spot" => Ok(Category::Spot),
            "linear" => Ok(Category::Linear),
            "inverse" => Ok(Category::Inverse),
            _ => Err(Error::InvalidParameter {
                name: "category",
                value: s.chars().take(64).collect(),
                reason: "expected spot, linear or inverse".into(),
            }),
        }
    }
}

/// A kline interval that Bybit serves: `1 3 5 15 30 60 120 240 360 720` minutes, `D`, `W`, `M`.
///
/// Minute to week intervals have a fixed length ([`KlineInterval::fixed_millis`]); a month is
/// a calendar month (28 to 31 days), so it has none. Paging never needs the length: it steps
/// by the oldest bar received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum KlineInterval {
    /// 1 minute (`1`).
    Min1,
    /// 3 minutes (`3`).
    Min3,
    /// 5 minutes (`5`).
    Min5,
    /// 15 minutes (`15`).
    Min15,
    /// 30 minutes (`30`).
    Min30,
    /// 1 hour (`60`).
    Hour1,
    /// 2 hours (`120`).
    Hour2,
    /// 4 hours (`240`).
    Hour4,
    /// 6 hours (`360`).
    Hour6,
    /// 12 hours (`720`).
    Hour12,
    /// 1 day (`D`).
    Day,
    /// 1 week (`W`), bars open on Monday 00:00 UTC.
    Week,
    /// 1 calendar month (`M`), bars open on the 1st at 00:00 UTC.
    Month,
}

impl KlineInterval {
    /// Every interval, shortest first.
    pub const ALL: [KlineInterval; 13] = [
        KlineInterval::Min1,
        KlineInterval::Min3,
        KlineInterval::Min5,
        KlineInterval::Min15,
        KlineInterval::Min30,
        KlineInterval::Hour1,
        KlineInterval::Hour2,
        KlineInterval::Hour4,
        KlineInterval::Hour6,
        KlineInterval::Hour12,
        KlineInterval::Day,
        KlineInterval::Week,
        KlineInterval::Month,
    ];

    /// Bybit's code for the `interval` query parameter (`"60"`, `"D"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            KlineInterval::Min1 => "1",
            KlineInterval::Min3 => "3",
            KlineInterval::Min5 => "5",
            KlineInterval::Min15 => "15",
            KlineInterval::Min30 => "30",
            KlineInterval::Hour1 => "60",
            KlineInterval::Hour2 => "120",
            KlineInterval::Hour4 => "240",
            KlineInterval::Hour6 => "360",
            KlineInterval::Hour12 => "720",
            KlineInterval::Day => "D",
            KlineInterval::Week => "W",
            KlineInterval::Month => "M",
        }
    }

    /// The length in milliseconds; `None` for [`KlineInterval::Month`], whose length varies.
    pub fn fixed_millis(self) -> Option<i64> {
        const MINUTE_MS: i64 = 60_000;
        Some(match self {
            KlineInterval::Min1 => MINUTE_MS,
            KlineInterval::Min3 => 3 * MINUTE_MS,
            KlineInterval::Min5 => 5 * MINUTE_MS,
            KlineInterval::Min15 => 15 * MINUTE_MS,
            KlineInterval::Min30 => 30 * MINUTE_MS,
            KlineInterval::Hour1 => HOUR_MS,
            KlineInterval::Hour2 => 2 * HOUR_MS,
            KlineInterval::Hour4 => 4 * HOUR_MS,
            KlineInterval::Hour6 => 6 * HOUR_MS,
            KlineInterval::Hour12 => 12 * HOUR_MS,
            KlineInterval::Day => DAY_MS,
            KlineInterval::Week => 7 * DAY_MS,
            KlineInterval::Month => return None,
        })
    }

    /// The longest a bar of this interval can be, in milliseconds (31 days for a month).
    pub fn max_millis(self) -> i64 {
        self.fixed_millis().unwrap_or(31 * DAY_MS)
    }

    /// The matching [`Interval`] of a [`crate::BarSeries`]; `None` for a month.
    pub fn to_interval(self) -> Option<Interval> {
        self.fixed_millis()
            .and_then(|ms| Interval::from_millis(ms).ok())
    }
}

impl fmt::Display for KlineInterval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KlineInterval {
    type Err = Error;

    /// Parses Bybit's codes (`1`, `3`, ..., `720`, `D`, `W`, `M`) and the usual short names
    /// (`1m`, `5m`, `1h`, `4h`, `1d`, `1w`, `1M`). Minutes are lower-case `m`, a month is
    /// upper-case `M`; `d` and `w` may be either case.
    fn from_str(s: &str) -> Result<Self> {
        let interval = match s.trim() {
            "1" | "1m" => KlineInterval::Min1,
            "3" | "3m" => KlineInterval::Min3,
            "5" | "5m" => KlineInterval::Min5,
            "15" | "15m" => KlineInterval::Min15,
            "30" | "30m" => KlineInterval::Min30,
            "60" | "1h" | "1H" => KlineInterval::Hour1,
            "120" | "2h" | "2H" => KlineInterval::Hour2,
            "240" | "4h" | "4H" => KlineInterval::Hour4,
            "360" | "6h" | "6H" => KlineInterval::Hour6,
            "720" | "12h" | "12H" => KlineInterval::Hour12,
            "D" | "d" | "1d" | "1D" => KlineInterval::Day,
            "W" | "w" | "1w" | "1W" => KlineInterval::Week,
            "M" | "1M" => KlineInterval::Month,
            _ => {
                return Err(Error::InvalidParameter {
                    name: "interval",
                    value: s.chars().take(64).collect(),
                    reason: "expected one of 1, 3, 5, 15, 30, 60, 120, 240, 360, 720, D, W, M"
                        .into(),
                });
            }
        };
        Ok(interval)
    }
}

impl TryFrom<String> for KlineInterval {
    type Error = Error;

    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<KlineInterval> for String {
    fn from(interval: KlineInterval) -> String {
        interval.as_str().to_owned()
    }
}

/// How the Bybit client talks to the API. Build with `..Default::default()`.
///
/// Retries use capped exponential back-off with jitter ("Exponential Backoff and Jitter",
/// M. Brooker, AWS Architecture Blog, 2015): before retry `k` (0-based) the client waits
/// `d_k = min(backoff_max, backoff_base · 2^k)`, of which the fraction `jitter` is drawn
/// uniformly from a [`rand_chacha::ChaCha8Rng`] seeded with `seed`:
/// `wait = d_k · (1 − jitter + jitter · u)`, `u ~ U[0, 1)`. A server hint (`Retry-After`,
/// `X-Bapi-Limit-Reset-Timestamp`) raises the wait to the hint, capped at `max_retry_after_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BybitConfig {
    /// API root, without the `/v5/...` path. Default `https://api.bybit.com`.
    pub base_url: String,
    /// Product type. Default [`Category::Spot`].
    pub category: Category,
    /// Time limit of one HTTP request, connect to last body byte, in ms. Default 10 000.
    pub timeout_ms: u64,
    /// Retries after the first attempt of a request (so `max_retries + 1` attempts). Default 5.
    pub max_retries: u32,
    /// Back-off before the first retry, in ms. Default 500.
    pub backoff_base_ms: u64,
    /// Cap on the exponential back-off, in ms. Default 30 000.
    pub backoff_max_ms: u64,
    /// Fraction of each back-off that is random, in `[0, 1]`. Default 0.5 ("equal jitter").
    pub jitter: f64,
    /// Cap on a wait asked for by the server (`Retry-After`, rate-limit reset), in ms.
    /// Default 60 000.
    pub max_retry_after_ms: u64,
    /// Seed of the jitter RNG. Default 0.
    pub seed: u64,
    /// Rows per request, `1..=1000` (Bybit's maximum, and the default).
    pub page_limit: u32,
    /// Most requests started per second, retries included; > 0. Default 10, far below
    /// Bybit's IP limit of 600 requests per 5 s.
    pub requests_per_second: f64,
}

impl Default for BybitConfig {
    fn default() -> Self {
        BybitConfig {
            base_url: "https://api.bybit.com".into(),
            category: Category::Spot,
            timeout_ms: 10_000,
            max_retries: 5,
            backoff_base_ms: 500,
            backoff_max_ms: 30_000,
            jitter: 0.5,
            max_retry_after_ms: 60_000,
            seed: 0,
            page_limit: MAX_PAGE_LIMIT,
            requests_per_second: 10.0,
        }
    }
}

impl BybitConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        let invalid = |name: &'static str, value: String, reason: &str| Error::InvalidParameter {
            name,
            value,
            reason: reason.into(),
        };
        let url = reqwest::Url::parse(&self.base_url)
            .map_err(|e| invalid("base_url", self.base_url.clone(), &e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
            return Err(invalid(
                "base_url",
                self.base_url.clone(),
                "must be an http:// or https:// url",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid(
                "base_url",
                self.base_url.clone(),
                "must have no query or fragment",
            ));
        }
        if !(1..=MAX_PAGE_LIMIT).contains(&self.page_limit) {
            return Err(invalid(
                "page_limit",
                self.page_limit.to_string(),
                "must be in 1..=1000",
            ));
        }
        if self.timeout_ms == 0 {
            return Err(invalid("timeout_ms", "0".into(), "must be > 0"));
        }
        if self.backoff_base_ms > self.backoff_max_ms {
            return Err(invalid(
                "backoff_base_ms",
                self.backoff_base_ms.to_string(),
                &format!("must be <= backoff_max_ms = {}", self.backoff_max_ms),
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(invalid(
                "jitter",
                self.jitter.to_string(),
                "must be in [0, 1]",
            ));
        }
        if !(self.requests_per_second.is_finite() && self.requests_per_second > 0.0) {
            return Err(invalid(
                "requests_per_second",
                self.requests_per_second.to_string(),
                "must be finite and > 0",
            ));
        }
        Ok(())
    }

    /// The kline endpoint: `{base_url}/v5/market/kline`.
    pub(crate) fn kline_url(&self) -> Result<reqwest::Url> {
        let url = format!("{}/v5/market/kline", self.base_url.trim_end_matches('/'));
        reqwest::Url::parse(&url).map_err(|e| Error::InvalidParameter {
            name: "base_url",
            value: self.base_url.clone(),
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_interval_round_trips_through_its_code() {
        for interval in KlineInterval::ALL {
            assert_eq!(
                interval.as_str().parse::<KlineInterval>().unwrap(),
                interval
            );
            assert_eq!(interval.to_string(), interval.as_str());
        }
    }

    #[test]
    fn short_names_parse() {
        assert_eq!("1h".parse::<KlineInterval>().unwrap(), KlineInterval::Hour1);
        assert_eq!("4h".parse::<KlineInterval>().unwrap(), KlineInterval::Hour4);
        assert_eq!("1d".parse::<KlineInterval>().unwrap(), KlineInterval::Day);
        assert_eq!("1m".parse::<KlineInterval>().unwrap(), KlineInterval::Min1);
        assert_eq!("1M".parse::<KlineInterval>().unwrap(), KlineInterval::Month);
    }

    #[test]
    fn unknown_interval_is_an_error() {
        for bad in ["", "2", "m", "90", "1y", "60 minutes"] {
            let err = bad.parse::<KlineInterval>().unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::InvalidParameter {
                        name: "interval",
                        ..
                    }
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn lengths_of_intervals() {
        assert_eq!(KlineInterval::Hour1.fixed_millis(), Some(HOUR_MS));
        assert_eq!(KlineInterval::Week.fixed_millis(), Some(7 * DAY_MS));
        assert_eq!(KlineInterval::Month.fixed_millis(), None);
        assert_eq!(KlineInterval::Month.max_millis(), 31 * DAY_MS);
        assert_eq!(
            KlineInterval::Hour4.to_interval(),
            Some(Interval::FOUR_HOURS)
        );
        assert_eq!(KlineInterval::Month.to_interval(), None);
    }

    #[test]
    fn interval_serde_uses_the_code() {
        let json = serde_json::to_string(&KlineInterval::Day).unwrap();
        assert_eq!(json, "\"D\"");
        let back: KlineInterval = serde_json::from_str("\"240\"").unwrap();
        assert_eq!(back, KlineInterval::Hour4);
        assert!(serde_json::from_str::<KlineInterval>("\"7\"").is_err());
    }

    #[test]
    fn category_parses_any_case() {
        assert_eq!("Linear".parse::<Category>().unwrap(), Category::Linear);
        assert_eq!("spot".parse::<Category>().unwrap().as_str(), "spot");
        assert!("option".parse::<Category>().is_err());
    }

    #[test]
    fn default_config_is_valid() {
        BybitConfig::default().validate().unwrap();
        let url = BybitConfig::default().kline_url().unwrap();
        assert_eq!(url.as_str(), "https://api.bybit.com/v5/market/kline");
    }

    #[test]
    fn trailing_slash_and_path_prefix_are_kept() {
        let config = BybitConfig {
            base_url: "http://127.0.0.1:8080/proxy/".into(),
            ..Default::default()
        };
        config.validate().unwrap();
        assert_eq!(
            config.kline_url().unwrap().as_str(),
            "http://127.0.0.1:8080/proxy/v5/market/kline"
        );
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases: [(BybitConfig, &str); 8] = [
            (
                BybitConfig {
                    page_limit: 0,
                    ..Default::default()
                },
                "page_limit",
            ),
            (
                BybitConfig {
                    page_limit: 1001,
                    ..Default::default()
                },
                "page_limit",
            ),
            (
                BybitConfig {
                    timeout_ms: 0,
                    ..Default::default()
                },
                "timeout_ms",
            ),
            (
                BybitConfig {
                    backoff_base_ms: 10,
                    backoff_max_ms: 5,
                    ..Default::default()
                },
                "backoff_base_ms",
            ),
            (
                BybitConfig {
                    jitter: 1.5,
                    ..Default::default()
                },
                "jitter",
            ),
            (
                BybitConfig {
                    requests_per_second: 0.0,
                    ..Default::default()
                },
                "requests_per_second",
            ),
            (
                BybitConfig {
                    base_url: "ftp://x".into(),
                    ..Default::default()
                },
                "base_url",
            ),
            (
                BybitConfig {
                    base_url: "not a url".into(),
                    ..Default::default()
                },
                "base_url",
            ),
        ];
        for (config, field) in cases {
            match config.validate() {
                Err(Error::InvalidParameter { name, .. }) => assert_eq!(name, field),
                other => panic!("{field}: expected InvalidParameter, got {other:?}"),
            }
        }
    }

    #[test]
    fn config_deserialises_with_defaults() {
        let config: BybitConfig =
            serde_json::from_str(r#"{"category":"linear","page_limit":500}"#).unwrap();
        assert_eq!(config.category, Category::Linear);
        assert_eq!(config.page_limit, 500);
        assert_eq!(config.max_retries, BybitConfig::default().max_retries);
    }
}
