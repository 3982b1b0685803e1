//! Back-off arithmetic and server wait hints, as pure functions of their inputs.

use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::config::BybitConfig;

/// Bybit's header with the time (ms since the epoch) at which the rate limit resets.
pub(crate) const RESET_TIMESTAMP_HEADER: &str = "X-Bapi-Limit-Reset-Timestamp";

/// Wait before retry `attempt` (0-based), in ms, given a uniform draw `u ∈ [0, 1)` and an
/// optional server hint:
///
/// `d = min(backoff_max, backoff_base · 2^attempt)`,
/// `wait = max(d · (1 − jitter + jitter · u), min(hint, max_retry_after))`.
pub(crate) fn retry_delay_ms(
    config: &BybitConfig,
    attempt: u32,
    u: f64,
    hint_ms: Option<u64>,
) -> u64 {
    let doubling = 1u64.checked_shl(attempt).unwrap_or(u64::MAX);
    let capped = config
        .backoff_base_ms
        .saturating_mul(doubling)
        .min(config.backoff_max_ms);
    let jitter = config.jitter.clamp(0.0, 1.0);
    let scale = 1.0 - jitter + jitter * u.clamp(0.0, 1.0);
    // `capped · scale ≤ capped` fits in u64; the cast saturates anyway.
    let backoff = (capped as f64 * scale) as u64;
    let hint = hint_ms.map_or(0, |ms| ms.min(config.max_retry_after_ms));
    backoff.max(hint)
}

/// The wait the server asked for, in ms: the larger of `Retry-After` (delay in seconds; the
/// HTTP-date form is ignored) and `X-Bapi-Limit-Reset-Timestamp − now` (ms since the epoch;
/// a value below 10¹¹ is taken as seconds). `None` when neither header is usable.
pub(crate) fn server_hint_ms(headers: &HeaderMap, now_ms: i64) -> Option<u64> {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let retry_after = text(RETRY_AFTER.as_str())
        .and_then(|s| s.parse::<u64>().ok())
        .map(|secs| secs.saturating_mul(1000));
    let reset = text(RESET_TIMESTAMP_HEADER)
        .and_then(|s| s.parse::<i64>().ok())
        .map(|ts| {
            if ts < 100_000_000_000 {
                ts.saturating_mul(1000)
            } else {
                ts
            }
        })
        .map(|reset_ms| u64::try_from(reset_ms.saturating_sub(now_ms)).unwrap_or(0));
    match (retry_after, reset) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn config() -> BybitConfig {
        BybitConfig {
            backoff_base_ms: 100,
            backoff_max_ms: 1_000,
            jitter: 0.5,
            max_retry_after_ms: 5_000,
            ..Default::default()
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let config = BybitConfig {
            jitter: 0.0,
            ..config()
        };
        let waits: Vec<u64> = (0..6)
            .map(|k| retry_delay_ms(&config, k, 0.3, None))
            .collect();
        assert_eq!(waits, [100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(retry_delay_ms(&config, 200, 0.3, None), 1_000);
    }

    #[test]
    fn jitter_scales_within_its_fraction() {
        let config = config();
        assert_eq!(retry_delay_ms(&config, 1, 0.0, None), 100);
        assert_eq!(retry_delay_ms(&config, 1, 0.5, None), 150);
        assert!(retry_delay_ms(&config, 1, 0.999_999, None) <= 200);
        let full = BybitConfig {
            jitter: 1.0,
            ..config
        };
        assert_eq!(retry_delay_ms(&full, 1, 0.0, None), 0);
    }

    #[test]
    fn hint_raises_the_wait_but_is_capped() {
        let config = config();
        assert_eq!(retry_delay_ms(&config, 0, 0.0, Some(2_000)), 2_000);
        assert_eq!(retry_delay_ms(&config, 0, 0.0, Some(60_000)), 5_000);
        assert_eq!(retry_delay_ms(&config, 3, 0.0, Some(10)), 400);
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(
            server_hint_ms(&headers(&[("retry-after", "3")]), 0),
            Some(3_000)
        );
        assert_eq!(
            server_hint_ms(
                &headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]),
                0
            ),
            None
        );
        assert_eq!(server_hint_ms(&HeaderMap::new(), 0), None);
    }

    #[test]
    fn reset_timestamp_relative_to_now() {
        let now = 1_672_738_134_000;
        let h = headers(&[("x-bapi-limit-reset-timestamp", "1672738134824")]);
        assert_eq!(server_hint_ms(&h, now), Some(824));
        assert_eq!(server_hint_ms(&h, now + 10_000), Some(0));
        let secs = headers(&[("x-bapi-limit-reset-timestamp", "1672738136")]);
        assert_eq!(server_hint_ms(&secs, now), Some(2_000));
        let both = headers(&[
            ("x-bapi-limit-reset-timestamp", "1672738134824"),
            ("retry-after", "1"),
        ]);
        assert_eq!(server_hint_ms(&both, now), Some(1_000));
    }
}
