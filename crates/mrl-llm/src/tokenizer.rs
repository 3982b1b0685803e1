//! The tokenizer of a GGUF model, built from its metadata with the `tokenizers` crate.
//!
//! A GGUF file of a GPT-2-style byte-level BPE model (`tokenizer.ggml.model = "gpt2"`)
//! carries its vocabulary (`tokenizer.ggml.tokens`), merges (`tokenizer.ggml.merges`) and
//! token types (`tokenizer.ggml.token_type`, 3 = control). The pre-tokenizer is named by
//! `tokenizer.ggml.pre`:
//!
//! - `smollm`: single digits split off first, then GPT-2's byte-level regex without a
//!   prefix space: SmolLM2's `tokenizer.json` (`Digits(individual_digits)` +
//!   `ByteLevel(add_prefix_space = false)`), and llama.cpp's `smollm` rule.
//! - `gpt2` / `default`: GPT-2's byte-level regex without a prefix space.
//!
//! Control tokens (`<|im_start|>`, `<|im_end|>`, …) are added as special tokens, so they
//! are matched whole in text and dropped by [`GgufTokenizer::decode`].

use candle_core::quantized::gguf_file;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

use crate::error::{Error, Result};

/// GGUF token type of control tokens (llama.cpp's `LLAMA_TOKEN_TYPE_CONTROL`).
const TOKEN_TYPE_CONTROL: u32 = 3;

/// A byte-level BPE tokenizer read from GGUF metadata.
#[derive(Debug, Clone)]
pub struct GgufTokenizer {
    inner: Tokenizer,
    vocab_size: usize,
}

pub(crate) fn metadata<'a>(
    content: &'a gguf_file::Content,
    key: &'static str,
) -> Option<&'a gguf_file::Value> {
    content.metadata.get(key)
}

fn string_array(content: &gguf_file::Content, key: &'static str) -> Result<Vec<String>> {
    let wrong = || Error::Metadata {
        key,
        expected: "an array of strings",
    };
    let values = metadata(content, key)
        .ok_or_else(wrong)?
        .to_vec()
        .map_err(|_| wrong())?;
    values
        .iter()
        .map(|v| v.to_string().cloned().map_err(|_| wrong()))
        .collect()
}

impl GgufTokenizer {
    /// Builds the tokenizer from a GGUF file's metadata.
    ///
    /// # Errors
    /// [`Error::Metadata`] for a missing or mistyped key, [`Error::Tokenizer`] for another
    /// tokenizer model than `gpt2`, an unknown pre-tokenizer, or a malformed merge.
    pub fn from_gguf(content: &gguf_file::Content) -> Result<Self> {
        let model = metadata(content, "tokenizer.ggml.model")
            .and_then(|v| v.to_string().ok())
            .ok_or(Error::Metadata {
                key: "tokenizer.ggml.model",
                expected: "a string",
            })?;
        if model != "gpt2" {
            return Err(Error::Tokenizer(format!(
                "tokenizer model `{model}` is not supported (only byte-level BPE, `gpt2`)"
            )));
        }
        let pre = metadata(content, "tokenizer.ggml.pre")
            .and_then(|v| v.to_string().ok())
            .map_or("default", String::as_str);
        let byte_level = ByteLevel::new(false, true, true);
        let pre_tokenizer: PreTokenizerWrapper = match pre {
            "smollm" => Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into(),
            "gpt2" | "default" => byte_level.into(),
            other => {
                return Err(Error::Tokenizer(format!(
                    "pre-tokenizer `{other}` is not supported (smollm, gpt2, default)"
                )));
            }
        };
        let tokens = string_array(content, "tokenizer.ggml.tokens")?;
        let merges = string_array(content, "tokenizer.ggml.merges")?
            .into_iter()
            .enumerate()
            .map(|(i, m)| match m.split_once(' ') {
                Some((a, b)) => Ok((a.to_string(), b.to_string())),
                None => Err(Error::Tokenizer(format!("merge {i} `{m}` has no space"))),
            })
            .collect::<Result<Vec<_>>>()?;
        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let mut inner = Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre_tokenizer));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let types = metadata(content, "tokenizer.ggml.token_type")
            .and_then(|v| v.to_vec().ok())
            .ok_or(Error::Metadata {
                key: "tokenizer.ggml.token_type",
                expected: "an array of integers",
            })?;
        let specials: Vec<AddedToken> = types
            .iter()
            .zip(&tokens)
            .filter(|(ty, _)| ty.to_i32().is_ok_and(|t| t as u32 == TOKEN_TYPE_CONTROL))
            .map(|(_, token)| AddedToken::from(token.clone(), true))
            .collect();
        inner
            .add_special_tokens(specials)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(Self {
            inner,
            vocab_size: tokens.len(),
        })
    }

    /// The token ids of `text` (special-token markers in it are read as special tokens).
    ///
    /// # Errors
    /// [`Error::Tokenizer`] if the tokenizer fails.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The text of `ids`, special tokens dropped.
    ///
    /// # Errors
    /// [`Error::Tokenizer`] if the tokenizer fails.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// The id of a token given by its text (`"<|im_end|>"`), if it is in the vocabulary.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }
}
