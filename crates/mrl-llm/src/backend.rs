//! The [`Backend`] trait every language model sits behind, and the request and reply types.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Who speaks a chat message (the OpenAI / ChatML roles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Speaker {
    /// Instructions that frame the conversation.
    System,
    /// The request.
    User,
    /// The model's reply.
    Assistant,
}

impl Speaker {
    /// The role name used by ChatML and the OpenAI API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who speaks.
    pub role: Speaker,
    /// What is said.
    pub content: String,
}

impl Message {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: Speaker::System,
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Speaker::User,
            content: content.into(),
        }
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: Speaker::Assistant,
            content: content.into(),
        }
    }
}

/// How the next token is chosen.
///
/// Read through `SamplingToml`, a plain struct: serde ignores extra keys beside the tag of
/// a field-less variant even with `deny_unknown_fields` (serde-rs/serde#2123).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", try_from = "SamplingToml")]
pub enum Sampling {
    /// The most likely token (the lowest id on ties): deterministic.
    Greedy,
    /// Nucleus sampling (Holtzman et al. 2020, "The Curious Case of Neural Text
    /// Degeneration"): softmax of `logits / temperature`, keep the most likely tokens whose
    /// probabilities first reach `top_p`, renormalise, draw from the seeded RNG.
    TopP {
        /// Softmax temperature, > 0.
        temperature: f64,
        /// Probability mass kept, in (0, 1].
        top_p: f64,
    },
}

/// The TOML form of a [`Sampling`]: `kind` and every variant's fields, unknown keys refused;
/// a field of another kind is an error naming it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SamplingToml {
    kind: SamplingKind,
    temperature: Option<f64>,
    top_p: Option<f64>,
}

/// The kinds of [`Sampling`].
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum SamplingKind {
    Greedy,
    TopP,
}

impl TryFrom<SamplingToml> for Sampling {
    type Error = String;

    fn try_from(raw: SamplingToml) -> std::result::Result<Self, String> {
        match (raw.kind, raw.temperature, raw.top_p) {
            (SamplingKind::Greedy, None, None) => Ok(Sampling::Greedy),
            (SamplingKind::Greedy, ..) => {
                Err("temperature and top_p belong to kind = \"top_p\", not \"greedy\"".into())
            }
            (SamplingKind::TopP, Some(temperature), Some(top_p)) => {
                Ok(Sampling::TopP { temperature, top_p })
            }
            (SamplingKind::TopP, None, _) => Err("missing field `temperature`".into()),
            (SamplingKind::TopP, _, None) => Err("missing field `top_p`".into()),
        }
    }
}

impl Default for Sampling {
    /// Temperature 0.7, top-p 0.9: common defaults of instruction-tuned models.
    fn default() -> Self {
        Self::TopP {
            temperature: 0.7,
            top_p: 0.9,
        }
    }
}

/// What one generation may do.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GenerateConfig {
    /// The token budget: at most this many new tokens.
    pub max_new_tokens: usize,
    /// How tokens are chosen.
    pub sampling: Sampling,
    /// Seed of the sampling RNG (`ChaCha8Rng`); the same seed gives the same reply.
    pub seed: u64,
}

impl Default for GenerateConfig {
    /// 128 new tokens (a reply of the trader format needs about 60), default sampling,
    /// seed 0.
    fn default() -> Self {
        Self {
            max_new_tokens: 128,
            sampling: Sampling::default(),
            seed: 0,
        }
    }
}

impl GenerateConfig {
    /// Greedy decoding with a token budget.
    pub fn greedy(max_new_tokens: usize) -> Self {
        Self {
            max_new_tokens,
            sampling: Sampling::Greedy,
            seed: 0,
        }
    }

    /// Checks the ranges: a budget ≥ 1, temperature finite and > 0, top-p in (0, 1].
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.max_new_tokens == 0 {
            return Err(Error::setting("max_new_tokens", 0, "at least 1"));
        }
        if let Sampling::TopP { temperature, top_p } = self.sampling {
            if !(temperature.is_finite() && temperature > 0.0) {
                return Err(Error::setting(
                    "temperature",
                    temperature,
                    "a finite number > 0 (use greedy sampling for temperature 0)",
                ));
            }
            if !(top_p > 0.0 && top_p <= 1.0) {
                return Err(Error::setting("top_p", top_p, "a number in (0, 1]"));
            }
        }
        Ok(())
    }
}

/// Why a generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its turn.
    Stop,
    /// The token budget ran out.
    Length,
}

/// A model's reply with its token counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// The reply text (without the end-of-turn token).
    pub text: String,
    /// Tokens in the prompt (as the backend counted them; 0 when a server does not say).
    pub prompt_tokens: usize,
    /// Tokens generated (0 when a server does not say).
    pub completion_tokens: usize,
    /// Why it stopped.
    pub finish: FinishReason,
}

/// A chat model: the embedded SmolLM2 ([`EmbeddedBackend`](crate::EmbeddedBackend)) or an
/// OpenAI-compatible server ([`ServerBackend`](crate::ServerBackend)). The roles and the
/// trading loop see only this trait, so a larger model runs through the same code.
pub trait Backend {
    /// The model's name, for logs and reports.
    fn model_name(&self) -> &str;

    /// The model's reply to `messages` under `config`.
    ///
    /// # Errors
    /// Invalid settings, a prompt that does not fit the context, or a failure of the model or
    /// the server; see [`Error`].
    fn chat(&mut self, messages: &[Message], config: &GenerateConfig) -> Result<Completion>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        assert!(GenerateConfig::default().validate().is_ok());
        assert!(GenerateConfig::greedy(1).validate().is_ok());
        let zero = GenerateConfig::greedy(0);
        assert!(matches!(
            zero.validate(),
            Err(Error::InvalidSetting {
                field: "max_new_tokens",
                ..
            })
        ));
        for (temperature, top_p, field) in [
            (0.0, 0.9, "temperature"),
            (f64::NAN, 0.9, "temperature"),
            (0.7, 0.0, "top_p"),
            (0.7, 1.5, "top_p"),
        ] {
            let config = GenerateConfig {
                sampling: Sampling::TopP { temperature, top_p },
                ..GenerateConfig::default()
            };
            match config.validate() {
                Err(Error::InvalidSetting { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{temperature} {top_p}: {other:?}"),
            }
        }
    }

    #[test]
    fn sampling_serialises_with_a_kind_tag() {
        let json = serde_json::to_string(&Sampling::Greedy).unwrap();
        assert_eq!(json, r#"{"kind":"greedy"}"#);
        let back: Sampling =
            serde_json::from_str(r#"{"kind":"top_p","temperature":0.5,"top_p":0.8}"#).unwrap();
        assert_eq!(
            back,
            Sampling::TopP {
                temperature: 0.5,
                top_p: 0.8
            }
        );
    }
}
