//! Strict parsing of the roles' replies, with repair of near-misses.
//!
//! Every role answers with one small JSON object (formats in [`roles`](crate::roles)). A
//! reply is searched for its first `{…}` object (code fences and chatter around it are
//! dropped), a truncated object is closed, single quotes and trailing commas are fixed,
//! numbers written as text (`"1.5%"`) are read, and synonyms of a direction (`long`,
//! `bearish`) are mapped; each such fix is listed as a [`Repair`]. Values are then checked:
//! a position is clamped into [−1, 1] and a confidence into [0, 1] (finite values only), a
//! predicted return must be finite and within ±100 %. A reply that still fails is a
//! [`ParseFailure`] value for the caller to count ([`ParseStats`]), never a panic or an error
//! that stops a run. A reply can therefore never carry a position outside [−1, 1].

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::chat::escape_specials;

/// Longest rationale kept, in characters.
pub const MAX_RATIONALE_CHARS: usize = 200;
/// Largest predicted one-period return accepted, in percent.
pub const MAX_RETURN_PCT: f64 = 100.0;
/// Longest reply examined, in bytes (the rest is ignored).
pub const MAX_REPLY_BYTES: usize = 8192;

/// The predicted direction of the next period's return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The price rises.
    Up,
    /// The price falls.
    Down,
    /// No clear move.
    Flat,
}

/// The actor's answer: a forecast and a trade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Predicted return of the next bar, percent, within ±[`MAX_RETURN_PCT`].
    pub return_pct: f64,
    /// Predicted direction.
    pub direction: Direction,
    /// Target position in [−1, 1] (−1 all short, 1 all long).
    pub position: f64,
    /// Confidence in [0, 1].
    pub confidence: f64,
    /// One line, at most [`MAX_RATIONALE_CHARS`] characters.
    pub rationale: String,
}

/// The judge's score of one candidate answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Judgment {
    /// Score in [0, 10].
    pub score: f64,
    /// One line.
    pub rationale: String,
}

/// Which of two judgments the meta-judge prefers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Preference {
    /// The first judgment.
    A,
    /// The second judgment.
    B,
}

/// The meta-judge's comparison of two judgments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetaJudgment {
    /// The better judgment.
    pub better: Preference,
    /// One line.
    pub rationale: String,
}

/// A fix applied to a near-miss reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Repair {
    /// Text or code fences around the object were dropped.
    Extracted,
    /// The object was cut off and has been closed.
    Closed,
    /// Single quotes became double quotes.
    Quotes,
    /// Trailing commas were removed.
    TrailingCommas,
    /// A number was read from text.
    NumberFromText {
        /// The field.
        field: String,
    },
    /// A value was clamped into its range.
    Clamped {
        /// The field.
        field: String,
        /// The value given.
        from: f64,
    },
    /// A synonym was mapped to a canonical value (`long` → `up`).
    Synonym {
        /// The field.
        field: String,
    },
    /// The direction was missing and was taken from the sign of the return.
    DirectionFromReturn,
    /// The rationale was missing, multi-line, too long or held special markers.
    Rationale,
}

/// Why a reply could not be parsed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ParseFailure {
    /// No `{` in the reply.
    #[error("no JSON object in the reply")]
    NoObject,
    /// The object is not valid JSON even after repairs.
    #[error("invalid JSON: {reason}")]
    InvalidJson {
        /// The JSON parser's message.
        reason: String,
    },
    /// A required field is absent.
    #[error("missing field {field}")]
    MissingField {
        /// The field.
        field: String,
    },
    /// A field has an unusable value.
    #[error("field {field} has an unusable value {value}")]
    BadField {
        /// The field.
        field: String,
        /// The value, as text (at most 40 characters).
        value: String,
    },
}

/// A parsed value and the repairs it needed.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed<T> {
    /// The value.
    pub value: T,
    /// Repairs applied (empty for a clean reply).
    pub repairs: Vec<Repair>,
}

/// Counts of parse outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParseStats {
    /// Replies parsed without repair.
    pub clean: usize,
    /// Replies parsed after repairs.
    pub repaired: usize,
    /// Replies that failed.
    pub failed: usize,
}

impl ParseStats {
    /// Counts one outcome.
    pub fn record<T>(&mut self, outcome: &Result<Parsed<T>, ParseFailure>) {
        match outcome {
            Ok(p) if p.repairs.is_empty() => self.clean += 1,
            Ok(_) => self.repaired += 1,
            Err(_) => self.failed += 1,
        }
    }

    /// Replies seen.
    pub fn total(&self) -> usize {
        self.clean + self.repaired + self.failed
    }
}

/// The first JSON object in `reply`, as a map, with the repairs it took.
///
/// # Errors
/// [`ParseFailure::NoObject`] or [`ParseFailure::InvalidJson`].
pub fn extract_object(reply: &str) -> Result<(Map<String, Value>, Vec<Repair>), ParseFailure> {
    let mut cut = reply.len().min(MAX_REPLY_BYTES);
    while !reply.is_char_boundary(cut) {
        cut -= 1;
    }
    let reply = &reply[..cut];
    let start = reply.find('{').ok_or(ParseFailure::NoObject)?;
    let mut repairs = Vec::new();
    let (mut text, closed) = balanced_object(&reply[start..]);
    if closed {
        if !reply[..start].trim().is_empty() || !reply[start + text.len()..].trim().is_empty() {
            repairs.push(Repair::Extracted);
        }
    } else {
        text = close_truncated(&text);
        repairs.push(Repair::Closed);
    }
    if let Ok(map) = serde_json::from_str::<Map<String, Value>>(&text) {
        return Ok((map, repairs));
    }
    if !text.contains('"') && text.contains('\'') {
        text = text.replace('\'', "\"");
        repairs.push(Repair::Quotes);
    }
    let without_commas = drop_trailing_commas(&text);
    if without_commas != text {
        text = without_commas;
        repairs.push(Repair::TrailingCommas);
    }
    serde_json::from_str::<Map<String, Value>>(&text)
        .map(|map| (map, repairs))
        .map_err(|e| ParseFailure::InvalidJson {
            reason: e.to_string(),
        })
}

/// Where a left-to-right scan of JSON text is: inside a string or not.
#[derive(Debug, Default)]
struct Scan {
    in_string: bool,
    escaped: bool,
}

impl Scan {
    /// Feeds the next character; true when it is structural (outside every string and not
    /// a quote), so braces, brackets and commas count.
    fn structural(&mut self, c: char) -> bool {
        if self.in_string {
            match c {
                _ if self.escaped => self.escaped = false,
                '\\' => self.escaped = true,
                '"' => self.in_string = false,
                _ => {}
            }
            false
        } else if c == '"' {
            self.in_string = true;
            false
        } else {
            true
        }
    }
}

/// The prefix of `text` (which starts with `{`) up to its matching `}`, and whether the
/// match was found. Braces inside strings do not count.
fn balanced_object(text: &str) -> (String, bool) {
    let mut depth = 0usize;
    let mut scan = Scan::default();
    for (i, c) in text.char_indices() {
        if !scan.structural(c) {
            continue;
        }
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return (text[..=i].to_string(), true);
                }
            }
            _ => {}
        }
    }
    (text.to_string(), false)
}

/// Closes a cut-off object: ends an open string, drops a dangling key or separator, and
/// closes every open brace or bracket.
fn close_truncated(text: &str) -> String {
    let mut stack = Vec::new();
    let mut scan = Scan::default();
    for c in text.chars() {
        if !scan.structural(c) {
            continue;
        }
        match c {
            '{' => stack.push('}'),
            '[' => stack.push(']'),
            '}' | ']' => {
                stack.pop();
            }
            _ => {}
        }
    }
    let mut out = text.to_string();
    if scan.escaped {
        out.pop();
    }
    if scan.in_string {
        out.push('"');
    }
    // A key without a value (`, "conf"` or `"conf":`) or a dangling separator is dropped.
    loop {
        let trimmed = out.trim_end();
        if trimmed.ends_with(',') || trimmed.ends_with(':') {
            let colon = trimmed.ends_with(':');
            let cut = trimmed.len() - 1;
            out.truncate(cut);
            if colon {
                // Drop the key as well.
                if let Some(q) = out.trim_end().strip_suffix('"').and_then(|s| s.rfind('"')) {
                    out.truncate(q);
                }
            }
            continue;
        }
        if let Some(prefix) = trimmed.strip_suffix('"')
            && let Some(open) = prefix.rfind('"')
            && prefix[..open].trim_end().ends_with([',', '{'])
        {
            // A lone key: `{"a": 1, "conf"`.
            out.truncate(open);
            continue;
        }
        break;
    }
    while let Some(close) = stack.pop() {
        out.push(close);
    }
    out
}

/// `text` without commas directly before `}` or `]` (outside strings).
fn drop_trailing_commas(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut scan = Scan::default();
    for (i, &c) in chars.iter().enumerate() {
        if scan.structural(c) && c == ',' {
            let next = chars[i + 1..].iter().find(|c| !c.is_whitespace());
            if matches!(next, Some('}') | Some(']')) {
                continue;
            }
        }
        out.push(c);
    }
    out
}

fn shown(value: &Value) -> String {
    let text = value.to_string();
    text.chars().take(40).collect()
}

/// A finite number from a JSON number or from text such as `"+1.5%"`.
fn number(
    map: &Map<String, Value>,
    field: &str,
    repairs: &mut Vec<Repair>,
) -> Result<f64, ParseFailure> {
    let value = map.get(field).ok_or_else(|| ParseFailure::MissingField {
        field: field.to_string(),
    })?;
    let bad = || ParseFailure::BadField {
        field: field.to_string(),
        value: shown(value),
    };
    let x = match value {
        Value::Number(n) => n.as_f64().ok_or_else(bad)?,
        Value::String(s) => {
            let cleaned = s
                .trim()
                .trim_end_matches('%')
                .trim()
                .trim_start_matches('+');
            let x: f64 = cleaned.parse().map_err(|_| bad())?;
            repairs.push(Repair::NumberFromText {
                field: field.to_string(),
            });
            x
        }
        _ => return Err(bad()),
    };
    if x.is_finite() { Ok(x) } else { Err(bad()) }
}

fn clamp(x: f64, lo: f64, hi: f64, field: &str, repairs: &mut Vec<Repair>) -> f64 {
    if x < lo || x > hi {
        repairs.push(Repair::Clamped {
            field: field.to_string(),
            from: x,
        });
    }
    x.clamp(lo, hi)
}

/// One line of at most [`MAX_RATIONALE_CHARS`] characters without control characters or
/// special-token markers; a missing rationale is empty. Changes are a [`Repair::Rationale`].
fn rationale(map: &Map<String, Value>, repairs: &mut Vec<Repair>) -> String {
    let raw = match map.get("rationale") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let line = raw.lines().next().unwrap_or("");
    let clean: String = escape_specials(line)
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_RATIONALE_CHARS)
        .collect();
    let clean = clean.trim().to_string();
    if clean != raw || !matches!(map.get("rationale"), Some(Value::String(_))) {
        repairs.push(Repair::Rationale);
    }
    clean
}

fn direction(
    map: &Map<String, Value>,
    return_pct: f64,
    repairs: &mut Vec<Repair>,
) -> Result<Direction, ParseFailure> {
    let Some(value) = map.get("direction") else {
        repairs.push(Repair::DirectionFromReturn);
        return Ok(if return_pct > 0.0 {
            Direction::Up
        } else if return_pct < 0.0 {
            Direction::Down
        } else {
            Direction::Flat
        });
    };
    let bad = || ParseFailure::BadField {
        field: "direction".into(),
        value: shown(value),
    };
    let text = value.as_str().ok_or_else(bad)?.trim().to_ascii_lowercase();
    let (direction, exact) = match text.as_str() {
        "up" => (Direction::Up, true),
        "down" => (Direction::Down, true),
        "flat" => (Direction::Flat, true),
        "long" | "buy" | "bullish" | "rise" | "higher" => (Direction::Up, false),
        "short" | "sell" | "bearish" | "fall" | "lower" => (Direction::Down, false),
        "hold" | "neutral" | "none" | "sideways" => (Direction::Flat, false),
        _ => return Err(bad()),
    };
    if !exact || value.as_str() != Some(text.as_str()) {
        repairs.push(Repair::Synonym {
            field: "direction".into(),
        });
    }
    Ok(direction)
}

/// Parses the actor's reply: `{"return_pct": …, "direction": "up|down|flat", "position": …,
/// "confidence": …, "rationale": "…"}`.
///
/// # Errors
/// A [`ParseFailure`] when no usable object is found, a required number (`return_pct`,
/// `position`, `confidence`) is missing or not finite, the return is beyond
/// ±[`MAX_RETURN_PCT`], or the direction is not recognised.
pub fn parse_prediction(reply: &str) -> Result<Parsed<Prediction>, ParseFailure> {
    let (map, mut repairs) = extract_object(reply)?;
    let return_pct = number(&map, "return_pct", &mut repairs)?;
    if return_pct.abs() > MAX_RETURN_PCT {
        return Err(ParseFailure::BadField {
            field: "return_pct".into(),
            value: return_pct.to_string(),
        });
    }
    let direction = direction(&map, return_pct, &mut repairs)?;
    let position = clamp(
        number(&map, "position", &mut repairs)?,
        -1.0,
        1.0,
        "position",
        &mut repairs,
    );
    let confidence = clamp(
        number(&map, "confidence", &mut repairs)?,
        0.0,
        1.0,
        "confidence",
        &mut repairs,
    );
    let rationale = rationale(&map, &mut repairs);
    Ok(Parsed {
        value: Prediction {
            return_pct,
            direction,
            position,
            confidence,
            rationale,
        },
        repairs,
    })
}

/// Parses the judge's reply: `{"score": 0–10, "rationale": "…"}` (the score clamped).
///
/// # Errors
/// A [`ParseFailure`] when no object is found or the score is missing or not finite.
pub fn parse_judgment(reply: &str) -> Result<Parsed<Judgment>, ParseFailure> {
    let (map, mut repairs) = extract_object(reply)?;
    let score = clamp(
        number(&map, "score", &mut repairs)?,
        0.0,
        10.0,
        "score",
        &mut repairs,
    );
    let rationale = rationale(&map, &mut repairs);
    Ok(Parsed {
        value: Judgment { score, rationale },
        repairs,
    })
}

/// Parses the meta-judge's reply: `{"better": "A" | "B", "rationale": "…"}`.
///
/// # Errors
/// A [`ParseFailure`] when no object is found or `better` is not A or B.
pub fn parse_meta_judgment(reply: &str) -> Result<Parsed<MetaJudgment>, ParseFailure> {
    let (map, mut repairs) = extract_object(reply)?;
    let value = map.get("better").ok_or(ParseFailure::MissingField {
        field: "better".into(),
    })?;
    let better = match value.as_str().map(|s| s.trim()) {
        Some("A") => Preference::A,
        Some("B") => Preference::B,
        Some("a") | Some("1") => {
            repairs.push(Repair::Synonym {
                field: "better".into(),
            });
            Preference::A
        }
        Some("b") | Some("2") => {
            repairs.push(Repair::Synonym {
                field: "better".into(),
            });
            Preference::B
        }
        _ => {
            return Err(ParseFailure::BadField {
                field: "better".into(),
                value: shown(value),
            });
        }
    };
    let rationale = rationale(&map, &mut repairs);
    Ok(Parsed {
        value: MetaJudgment { better, rationale },
        repairs,
    })
}
