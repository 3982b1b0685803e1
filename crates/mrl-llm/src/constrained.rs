//! Constrained decoding of the roles' JSON replies.
//!
//! A [`Template`] is the reply's fixed skeleton with slots: the literal text (keys, quotes,
//! commas) is forced token by token, and the model chooses only inside the slots: a JSON
//! number ([`Slot::Number`]: the next token must keep the text a valid prefix of
//! `-?(0|[1-9][0-9]*)(\.[0-9]+)?` with the integer part within the field's range), one of
//! a few words ([`Slot::Choice`]) or one line of
//! text without quotes, backslashes or control characters ([`Slot::Text`]). Disallowed
//! tokens get a logit of −∞ before the usual greedy or nucleus choice, so sampling stays
//! seeded and the reply always has the format (grammar-constrained decoding as in
//! llama.cpp's GBNF grammars, reduced to the three shapes the roles need). A number slot ends
//! when the model picks a token starting with `,` or `}` after a complete number; a text
//! slot ends when it picks a token starting with `"`. Those ending tokens are not fed: the
//! template's next literal is.
//!
//! Only the embedded backend can constrain its decoding; a server's replies go through the
//! repairs of [`parse_prediction`](crate::parse_prediction) and its siblings.

use crate::error::Result;
use crate::tokenizer::GgufTokenizer;

/// Longest number a slot writes, in characters.
pub const MAX_NUMBER_CHARS: usize = 10;

/// One part of a reply skeleton.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// Text forced as is.
    Literal(String),
    /// A JSON number of at most `max_tokens` tokens (and [`MAX_NUMBER_CHARS`] characters)
    /// whose integer part is at most `max_int` in magnitude, negative only if `signed`.
    Number {
        /// Token budget.
        max_tokens: usize,
        /// Largest magnitude of the integer part.
        max_int: u32,
        /// Whether a minus sign is allowed.
        signed: bool,
    },
    /// One of the words (their first tokens must differ).
    Choice(Vec<String>),
    /// One line of text for a JSON string, without the quotes.
    Text {
        /// Token budget.
        max_tokens: usize,
    },
    /// A number whose sign the option picked in the last [`Slot::Choice`] sets:
    /// `signs[i]` for option `i`. [`Sign::Plus`] fills an unsigned number slot,
    /// [`Sign::Minus`] forces a `-` and then fills one, [`Sign::Zero`] forces `0`. The
    /// magnitude follows the rules of [`Slot::Number`] (`max_tokens`, `max_int`).
    SignedBy {
        /// Token budget of the magnitude.
        max_tokens: usize,
        /// Largest magnitude of the integer part.
        max_int: u32,
        /// The sign for each option of the preceding choice, in its order.
        signs: Vec<Sign>,
    },
}

/// The sign a [`Slot::SignedBy`] number takes after one option of a choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sign {
    /// Zero or positive.
    Plus,
    /// Zero or negative (written with a leading `-`).
    Minus,
    /// Exactly `0`.
    Zero,
}

/// A reply skeleton: literals and slots in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The parts, in order.
    pub parts: Vec<Slot>,
}

fn lit(text: &str) -> Slot {
    Slot::Literal(text.to_string())
}

impl Template {
    /// The actor's reply: `{"return_pct": N, "direction": "up|down|flat", "position": N,
    /// "confidence": N, "rationale": "…"}`, with numbers of at most 6 tokens: the return's
    /// integer part within ±99, the position's within ±1, the confidence's within 0–1.
    ///
    /// The position's sign follows the direction ([`Slot::SignedBy`]): `up` gives a
    /// position ≥ 0, `down` one ≤ 0 and `flat` exactly 0, so a reply cannot say `down`
    /// and hold a long (the rubric asks the two to agree; the model alone often wrote
    /// `"direction": "down", "position": 1`).
    pub fn prediction(rationale_tokens: usize) -> Self {
        let number = |max_int, signed| Slot::Number {
            max_tokens: 6,
            max_int,
            signed,
        };
        Self {
            parts: vec![
                lit("{\"return_pct\": "),
                number(99, true),
                lit(", \"direction\": \""),
                Slot::Choice(vec!["up".into(), "down".into(), "flat".into()]),
                lit("\", \"position\": "),
                Slot::SignedBy {
                    max_tokens: 6,
                    max_int: 1,
                    signs: vec![Sign::Plus, Sign::Minus, Sign::Zero],
                },
                lit(", \"confidence\": "),
                number(1, false),
                lit(", \"rationale\": \""),
                Slot::Text {
                    max_tokens: rationale_tokens,
                },
                lit("\"}"),
            ],
        }
    }

    /// The judge's reply: `{"score": N, "rationale": "…"}`, the score's integer part 0–10.
    pub fn judgment(rationale_tokens: usize) -> Self {
        Self {
            parts: vec![
                lit("{\"score\": "),
                Slot::Number {
                    max_tokens: 4,
                    max_int: 10,
                    signed: false,
                },
                lit(", \"rationale\": \""),
                Slot::Text {
                    max_tokens: rationale_tokens,
                },
                lit("\"}"),
            ],
        }
    }

    /// The meta-judge's reply: `{"better": "A|B", "rationale": "…"}`.
    pub fn meta_judgment(rationale_tokens: usize) -> Self {
        Self {
            parts: vec![
                lit("{\"better\": \""),
                Slot::Choice(vec!["A".into(), "B".into()]),
                lit("\", \"rationale\": \""),
                Slot::Text {
                    max_tokens: rationale_tokens,
                },
                lit("\"}"),
            ],
        }
    }
}

/// Whether `s` can still grow into a JSON number (`-?(0|[1-9][0-9]*)(\.[0-9]+)?`) with an
/// integer part of magnitude at most `max_int`, negative only if `signed`.
pub(crate) fn number_prefix_ok(s: &str, max_int: u32, signed: bool) -> bool {
    if s.len() > MAX_NUMBER_CHARS {
        return false;
    }
    let body = match s.strip_prefix('-') {
        Some(b) if signed => b,
        Some(_) => return false,
        None => s,
    };
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || !frac.is_none_or(digits) {
        return false;
    }
    if int.len() > 1 && int.starts_with('0') {
        return false;
    }
    if !int.is_empty() && int.parse::<u64>().is_ok_and(|v| v > u64::from(max_int)) {
        return false;
    }
    !(int.is_empty() && frac.is_some())
}

/// Whether `s` is a complete JSON number of the slot's grammar.
pub(crate) fn number_complete(s: &str) -> bool {
    let body = s.strip_prefix('-').unwrap_or(s);
    number_prefix_ok(s, u32::MAX, true)
        && !body.is_empty()
        && !body.ends_with('.')
        && body.bytes().next().is_some_and(|b| b.is_ascii_digit())
}

/// The decoded text of every token, for the slot masks.
#[derive(Debug, Clone)]
pub(crate) struct TokenTable {
    /// Tokens made only of number characters, with their text.
    pub number: Vec<(u32, String)>,
    /// Tokens allowed inside a text slot.
    pub text: Vec<u32>,
    /// Tokens that end a number slot (text starting with `,` or `}`).
    pub number_end: Vec<u32>,
    /// Tokens that end a text slot (text starting with `"`).
    pub text_end: Vec<u32>,
}

impl TokenTable {
    /// Classifies every token of `tokenizer` by its decoded text; special tokens and tokens
    /// that decode to a partial UTF-8 sequence belong to no class.
    pub fn new(tokenizer: &GgufTokenizer) -> Result<Self> {
        let mut table = Self {
            number: Vec::new(),
            text: Vec::new(),
            number_end: Vec::new(),
            text_end: Vec::new(),
        };
        for id in 0..tokenizer.vocab_size() as u32 {
            let text = tokenizer.decode(&[id])?;
            if text.is_empty() || text.contains('\u{FFFD}') || text.contains("<|") {
                continue;
            }
            if text
                .chars()
                .all(|c| c.is_ascii_digit() || c == '-' || c == '.')
            {
                table.number.push((id, text.clone()));
            }
            if text.starts_with(',') || text.starts_with('}') {
                table.number_end.push(id);
            }
            if text.starts_with('"') {
                table.text_end.push(id);
            }
            if !text
                .chars()
                .any(|c| c == '"' || c == '\\' || c.is_control())
            {
                table.text.push(id);
            }
        }
        Ok(table)
    }
}

/// `logits` with every id outside `allowed` set to −∞.
pub(crate) fn masked(logits: &[f32], allowed: impl IntoIterator<Item = u32>) -> Vec<f32> {
    let mut out = vec![f32::NEG_INFINITY; logits.len()];
    for id in allowed {
        if let Some(&v) = logits.get(id as usize) {
            out[id as usize] = v;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_prefixes_follow_the_json_grammar() {
        for ok in ["", "-", "0", "0.", "0.25", "-12.5", "7", "99.75"] {
            assert!(number_prefix_ok(ok, 99, true), "{ok}");
        }
        for bad in [
            "01",
            "1.2.3",
            "--1",
            "1-",
            ".5",
            "-.5",
            "12345678901",
            "a",
            "100",
        ] {
            assert!(!number_prefix_ok(bad, 99, true), "{bad}");
        }
        // A position: integer part within ±1; a confidence: no sign.
        assert!(number_prefix_ok("-1.5", 1, true));
        assert!(!number_prefix_ok("2", 1, true));
        assert!(!number_prefix_ok("-0.5", 1, false));
        assert!(number_prefix_ok("0.5", 1, false));
        for complete in ["0", "-3", "2.75", "10"] {
            assert!(number_complete(complete), "{complete}");
        }
        for incomplete in ["", "-", "1.", "-0."] {
            assert!(!number_complete(incomplete), "{incomplete}");
        }
    }

    #[test]
    fn masking_keeps_only_allowed_logits() {
        let out = masked(&[1.0, 2.0, 3.0, 4.0], [1, 3, 9]);
        assert_eq!(out, vec![f32::NEG_INFINITY, 2.0, f32::NEG_INFINITY, 4.0]);
    }
}
