//! Decoding one `/v5/market/kline` response body into bars, and which `retCode`s are retryable.
//!
//! The body is
//! `{"retCode":0,"retMsg":"OK","result":{"category":"spot","symbol":"BTCUSDT","list":[...]},...}`
//! where each row of `result.list` is `[startTime, open, high, low, close, volume, turnover]`,
//! all strings, newest first. The decoder never panics: any input is either a page or an
//! [`Error`] naming what was wrong.

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::series::Bar;

/// `retCode`s that mean "too many requests": 10006 (too many visits, API rate limit),
/// 10018 (IP rate limit), 10429 (system-level frequency protection).
pub const RATE_LIMIT_RET_CODES: [i64; 3] = [10006, 10018, 10429];

/// `retCode`s that mean a transient server failure: 10000 (server timeout), 10016 (server
/// error or restarting).
pub const SERVER_ERROR_RET_CODES: [i64; 2] = [10000, 10016];

/// Whether a request that got this `retCode` is worth repeating (rate limit or server error).
pub fn is_retryable_ret_code(ret_code: i64) -> bool {
    RATE_LIMIT_RET_CODES.contains(&ret_code) || SERVER_ERROR_RET_CODES.contains(&ret_code)
}

/// Names of the columns of a kline row, in Bybit's order.
const FIELDS: [&str; 7] = [
    "startTime",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "turnover",
];

/// The columns a row must have (`turnover` is not used).
const REQUIRED_FIELDS: usize = 6;

/// One decoded page of klines.
#[derive(Debug, Clone, PartialEq)]
pub struct KlinePage {
    /// `result.category` as sent (empty when absent).
    pub category: String,
    /// `result.symbol` as sent (empty when absent).
    pub symbol: String,
    /// The rows in the order Bybit sent them (newest first), not yet validated as bars.
    pub bars: Vec<Bar>,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "retCode")]
    ret_code: i64,
    #[serde(rename = "retMsg", default)]
    ret_msg: String,
    #[serde(default)]
    result: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct KlineResult {
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    symbol: Option<String>,
    list: Option<Vec<serde_json::Value>>,
}

/// Decodes a kline response body.
///
/// A non-zero `retCode` gives [`Error::BybitApi`]; invalid JSON, a missing field, a short row
/// or an unparsable value give [`Error::MalformedResponse`] naming the place
/// (`result.list[3][2] (high)`). Prices and volumes are parsed, not validated: that is
/// [`crate::BarSeries::new`]'s job once the pages are joined.
pub fn decode_kline_page(body: &[u8]) -> Result<KlinePage> {
    let envelope: Envelope =
        serde_json::from_slice(body).map_err(|e| malformed(format!("invalid json: {e}")))?;
    if envelope.ret_code != 0 {
        return Err(Error::BybitApi {
            ret_code: envelope.ret_code,
            ret_msg: envelope.ret_msg,
        });
    }
    let result = envelope
        .result
        .filter(|value| !value.is_null())
        .ok_or_else(|| malformed("retCode is 0 but result is missing".into()))?;
    let result: KlineResult =
        serde_json::from_value(result).map_err(|e| malformed(format!("result: {e}")))?;
    let list = result
        .list
        .ok_or_else(|| malformed("result.list is missing".into()))?;
    let bars = list
        .iter()
        .enumerate()
        .map(|(row, value)| decode_row(row, value))
        .collect::<Result<Vec<Bar>>>()?;
    Ok(KlinePage {
        category: result.category.unwrap_or_default(),
        symbol: result.symbol.unwrap_or_default(),
        bars,
    })
}

/// Decodes row `row` (0-based) of `result.list`.
fn decode_row(row: usize, value: &serde_json::Value) -> Result<Bar> {
    let Some(cells) = value.as_array() else {
        return Err(malformed(format!(
            "result.list[{row}] is {}, expected an array of strings",
            kind(value)
        )));
    };
    if cells.len() < REQUIRED_FIELDS {
        return Err(malformed(format!(
            "result.list[{row}] has {} values, expected at least {REQUIRED_FIELDS} \
             (startTime, open, high, low, close, volume)",
            cells.len()
        )));
    }
    let timestamp = decode_cell(row, 0, &cells[0], |s| {
        s.parse::<i64>().map_err(|e| e.to_string())
    })?;
    let mut prices = [0.0; 5];
    for (i, price) in prices.iter_mut().enumerate() {
        let col = i + 1;
        *price = decode_cell(row, col, &cells[col], |s| {
            s.parse::<f64>().map_err(|e| e.to_string())
        })?;
    }
    let [open, high, low, close, volume] = prices;
    // Bybit documents milliseconds; seconds or microseconds would shift the calendar.
    match crate::time::TimeUnit::detect(timestamp) {
        Some(crate::time::TimeUnit::Milliseconds) => {}
        unit => {
            let found = unit.map_or("no plausible epoch time".to_string(), |u| format!("in {u}"));
            return Err(malformed(format!(
                "result.list[{row}][0] (startTime): {timestamp} is {found}, expected \
                 milliseconds since the epoch"
            )));
        }
    }
    Ok(Bar {
        timestamp,
        open,
        high,
        low,
        close,
        volume,
    })
}

/// Parses one cell, a JSON string (Bybit's form) or a bare JSON number.
fn decode_cell<T>(
    row: usize,
    col: usize,
    value: &serde_json::Value,
    parse: impl Fn(&str) -> std::result::Result<T, String>,
) -> Result<T> {
    let owned;
    let text = match value {
        serde_json::Value::String(s) => s.as_str(),
        serde_json::Value::Number(n) => {
            owned = n.to_string();
            owned.as_str()
        }
        other => {
            return Err(malformed(format!(
                "result.list[{row}][{col}] ({}) is {}, expected a string",
                FIELDS[col],
                kind(other)
            )));
        }
    };
    parse(text.trim()).map_err(|reason| {
        let shown: String = text.chars().take(32).collect();
        malformed(format!(
            "result.list[{row}][{col}] ({}): cannot parse {shown:?}: {reason}",
            FIELDS[col]
        ))
    })
}

fn kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn malformed(detail: String) -> Error {
    Error::MalformedResponse { detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(list: &str) -> String {
        format!(
            r#"{{"retCode":0,"retMsg":"OK","result":{{"category":"spot","symbol":"BTCUSDT","list":{list}}},"retExtInfo":{{}},"time":1700000000000}}"#
        )
    }

    fn detail(err: Error) -> String {
        match err {
            Error::MalformedResponse { detail } => detail,
            other => panic!("expected MalformedResponse, got {other:?}"),
        }
    }

    #[test]
    fn decodes_rows_in_sent_order() {
        let body = page(
            r#"[["1700003600000","101","103","100","102","5.5","561"],
                ["1700000000000","100","102","99","101","4","400.1"]]"#,
        );
        let page = decode_kline_page(body.as_bytes()).unwrap();
        assert_eq!(page.category, "spot");
        assert_eq!(page.symbol, "BTCUSDT");
        assert_eq!(page.bars.len(), 2);
        assert_eq!(
            page.bars[0],
            Bar {
                timestamp: 1_700_003_600_000,
                open: 101.0,
                high: 103.0,
                low: 100.0,
                close: 102.0,
                volume: 5.5
            }
        );
        assert_eq!(page.bars[1].timestamp, 1_700_000_000_000);
    }

    #[test]
    fn numbers_and_missing_turnover_are_accepted() {
        let body = page(r#"[[1700000000000, 100, 102.5, 99, "101", 0]]"#);
        let bars = decode_kline_page(body.as_bytes()).unwrap().bars;
        assert_eq!(bars[0].high, 102.5);
        assert_eq!(bars[0].volume, 0.0);
    }

    #[test]
    fn empty_list_is_an_empty_page() {
        let page = decode_kline_page(page("[]").as_bytes()).unwrap();
        assert!(page.bars.is_empty());
    }

    #[test]
    fn non_zero_ret_code_is_an_api_error() {
        let body = br#"{"retCode":10001,"retMsg":"params error: symbol invalid","result":{},"retExtInfo":{},"time":1}"#;
        match decode_kline_page(body) {
            Err(Error::BybitApi { ret_code, ret_msg }) => {
                assert_eq!(ret_code, 10001);
                assert_eq!(ret_msg, "params error: symbol invalid");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_field_is_named_with_row_and_column() {
        let body = page(
            r#"[["1700003600000","101","103","100","102","5","1"],
                ["1700000000000","100","abc","99","101","4","1"]]"#,
        );
        let detail = detail(decode_kline_page(body.as_bytes()).unwrap_err());
        assert!(detail.contains("result.list[1][2] (high)"), "{detail}");
        assert!(detail.contains("\"abc\""), "{detail}");
    }

    #[test]
    fn bad_timestamp_is_named() {
        let body = page(r#"[["17e11","100","101","99","100","1","1"]]"#);
        let detail = detail(decode_kline_page(body.as_bytes()).unwrap_err());
        assert!(detail.contains("result.list[0][0] (startTime)"), "{detail}");
    }

    #[test]
    fn a_start_time_in_another_unit_is_named() {
        for (time, found) in [
            ("1700000000", "is in seconds"),
            ("1700000000000000", "is in microseconds"),
            ("3600000", "is no plausible epoch time"),
        ] {
            let body = page(&format!(r#"[["{time}","100","101","99","100","1","1"]]"#));
            let detail = detail(decode_kline_page(body.as_bytes()).unwrap_err());
            assert_eq!(
                detail,
                format!(
                    "result.list[0][0] (startTime): {time} {found}, expected milliseconds since \
                     the epoch"
                )
            );
        }
    }

    #[test]
    fn short_row_and_wrong_types_are_named() {
        let short = detail(decode_kline_page(page(r#"[["1","2","3"]]"#).as_bytes()).unwrap_err());
        assert!(short.contains("result.list[0] has 3 values"), "{short}");
        let not_array = detail(decode_kline_page(page(r#"[{"a":1}]"#).as_bytes()).unwrap_err());
        assert!(
            not_array.contains("result.list[0] is an object"),
            "{not_array}"
        );
        let null_cell = detail(
            decode_kline_page(page(r#"[["1",null,"3","4","5","6","7"]]"#).as_bytes()).unwrap_err(),
        );
        assert!(
            null_cell.contains("result.list[0][1] (open) is null"),
            "{null_cell}"
        );
    }

    #[test]
    fn missing_pieces_are_named() {
        let no_list =
            detail(decode_kline_page(br#"{"retCode":0,"retMsg":"OK","result":{}}"#).unwrap_err());
        assert!(no_list.contains("result.list is missing"), "{no_list}");
        let no_result = detail(decode_kline_page(br#"{"retCode":0,"retMsg":"OK"}"#).unwrap_err());
        assert!(no_result.contains("result is missing"), "{no_result}");
        let no_code = detail(decode_kline_page(br#"{"retMsg":"OK"}"#).unwrap_err());
        assert!(no_code.contains("retCode"), "{no_code}");
    }

    #[test]
    fn invalid_json_is_malformed() {
        for body in [
            &b""[..],
            b"<html>502 Bad Gateway</html>",
            b"{\"retCode\":0,",
            b"\xff\xfe",
        ] {
            let detail = detail(decode_kline_page(body).unwrap_err());
            assert!(detail.starts_with("invalid json"), "{detail}");
        }
    }

    #[test]
    fn retryable_codes() {
        for code in [10000, 10006, 10016, 10018, 10429] {
            assert!(is_retryable_ret_code(code), "{code}");
        }
        for code in [0, 10001, 10002, 10029, 170001] {
            assert!(!is_retryable_ret_code(code), "{code}");
        }
    }
}
