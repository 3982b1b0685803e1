//! A backend for any OpenAI-compatible chat server (llama.cpp's server, Ollama, vLLM, …).
//!
//! `POST {base_url}/chat/completions` with `model`, `messages`, `max_tokens`,
//! `temperature`, `top_p` and `seed` (greedy decoding is `temperature = 0`). Each request
//! has a timeout; timeouts, connection failures, HTTP 429 and 5xx are retried with
//! exponential backoff (a `Retry-After` in seconds is honoured up to the backoff cap); other
//! 4xx answers are not. A response body larger than the cap is refused while it streams in.
//! The API key is read from an environment variable named in the config, sent as a bearer
//! token and never logged or shown (its `Debug` is `ApiKey(***)`).

use std::time::Duration;

use reqwest::header::{CONTENT_LENGTH, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, Completion, FinishReason, GenerateConfig, Message, Sampling};
use crate::error::{Error, Result};

/// Settings of a [`ServerBackend`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Base URL of the API, up to and including the version (`http://127.0.0.1:8080/v1`).
    pub base_url: String,
    /// Model name the server knows.
    pub model: String,
    /// Name of the environment variable holding the API key; none is sent when `None`.
    pub api_key_env: Option<String>,
    /// Per-request timeout (connect, send, whole body), ms.
    pub timeout_ms: u64,
    /// Connection timeout, ms.
    pub connect_timeout_ms: u64,
    /// Retries after the first attempt (timeouts, connection failures, 429, 5xx).
    pub max_retries: u32,
    /// First backoff, ms; doubled for each further retry.
    pub backoff_ms: u64,
    /// Cap on one backoff (and on a server's `Retry-After`), ms.
    pub max_backoff_ms: u64,
    /// Largest response body accepted, bytes.
    pub max_response_bytes: usize,
}

impl Default for ServerConfig {
    /// llama.cpp's default local address, no key, 120 s timeout (a large model on a CPU
    /// is slow), 3 retries from 500 ms, 1 MiB responses.
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8080/v1".into(),
            model: "default".into(),
            api_key_env: None,
            timeout_ms: 120_000,
            connect_timeout_ms: 5_000,
            max_retries: 3,
            backoff_ms: 500,
            max_backoff_ms: 10_000,
            max_response_bytes: 1 << 20,
        }
    }
}

/// An API key; shown as `ApiKey(***)`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key in the environment variable `var`.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] (naming the variable, never its value) when it is unset,
    /// empty or not Unicode.
    pub fn from_env(var: &str) -> Result<Self> {
        match std::env::var(var) {
            Ok(key) if !key.is_empty() => Ok(Self(key)),
            _ => Err(Error::setting(
                "api_key_env",
                var,
                "the name of a set, non-empty environment variable",
            )),
        }
    }
}

/// An OpenAI-compatible chat server.
pub struct ServerBackend {
    config: ServerConfig,
    url: Url,
    api_key: Option<ApiKey>,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for ServerBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBackend")
            .field("url", &self.url.as_str())
            .field("model", &self.config.model)
            .field("api_key", &self.api_key)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct RequestBody<'a> {
    model: &'a str,
    messages: &'a [Message],
    max_tokens: usize,
    temperature: f64,
    top_p: f64,
    seed: u64,
    stream: bool,
}

#[derive(Deserialize)]
struct ResponseBody {
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ChoiceMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: usize,
    #[serde(default)]
    completion_tokens: usize,
}

/// What went wrong in one attempt.
enum Failure {
    Timeout,
    Transport(String),
    RateLimited(Option<u64>),
    Status(u16, String),
    Fatal(Error),
}

impl Failure {
    fn retryable(&self) -> bool {
        match self {
            Self::Timeout | Self::Transport(_) | Self::RateLimited(_) => true,
            Self::Status(status, _) => *status >= 500,
            Self::Fatal(_) => false,
        }
    }
}

impl ServerBackend {
    /// A backend for `config`, reading the API key from `config.api_key_env` if set.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`], [`Error::InvalidSetting`] (a zero timeout or cap, a key
    /// variable that is not set).
    pub fn new(config: ServerConfig) -> Result<Self> {
        let api_key = config
            .api_key_env
            .as_deref()
            .map(ApiKey::from_env)
            .transpose()?;
        Self::with_api_key(config, api_key)
    }

    /// A backend for `config` with the key given here (`config.api_key_env` is ignored).
    ///
    /// # Errors
    /// As [`ServerBackend::new`], without the environment.
    pub fn with_api_key(config: ServerConfig, api_key: Option<ApiKey>) -> Result<Self> {
        let bad_url = |reason: &str| Error::InvalidUrl {
            url: config.base_url.clone(),
            reason: reason.to_string(),
        };
        let base = Url::parse(&config.base_url).map_err(|e| bad_url(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(bad_url("the scheme must be http or https"));
        }
        let url = Url::parse(&format!(
            "{}/chat/completions",
            config.base_url.trim_end_matches('/')
        ))
        .map_err(|e| bad_url(&e.to_string()))?;
        for (field, value) in [
            ("timeout_ms", config.timeout_ms),
            ("connect_timeout_ms", config.connect_timeout_ms),
            ("max_response_bytes", config.max_response_bytes as u64),
        ] {
            if value == 0 {
                return Err(Error::setting(field, 0, "at least 1"));
            }
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .build()
            .map_err(|e| bad_url(&e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| Error::Io {
                path: "tokio runtime".into(),
                source,
            })?;
        Ok(Self {
            config,
            url,
            api_key,
            client,
            runtime,
        })
    }

    /// The chat-completions endpoint.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    async fn attempt(&self, body: &[u8]) -> std::result::Result<Vec<u8>, Failure> {
        let mut request = self
            .client
            .post(self.url.clone())
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(&key.0);
        }
        let mut response = request.send().await.map_err(|e| classify(&e))?;
        let status = response.status();
        let limit = self.config.max_response_bytes;
        let too_large = || {
            Failure::Fatal(Error::ResponseTooLarge {
                url: self.url.to_string(),
                limit_bytes: limit,
            })
        };
        if status == StatusCode::TOO_MANY_REQUESTS {
            let retry_after_ms = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| s.saturating_mul(1000));
            return Err(Failure::RateLimited(retry_after_ms));
        }
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| classify(&e))? {
            if bytes.len() + chunk.len() > limit {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            let body: String = text.chars().take(200).collect();
            return Err(Failure::Status(status.as_u16(), body));
        }
        Ok(bytes)
    }

    fn backoff(&self, retry: u32, retry_after_ms: Option<u64>) -> Duration {
        let exponential = self.config.backoff_ms.saturating_mul(1u64 << retry.min(20));
        Duration::from_millis(
            retry_after_ms
                .unwrap_or(exponential)
                .min(self.config.max_backoff_ms),
        )
    }

    fn parse(&self, bytes: &[u8]) -> Result<Completion> {
        let bad = |reason: String| Error::BadResponse {
            url: self.url.to_string(),
            reason,
        };
        let body: ResponseBody = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let choice = body
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| bad("no choices".into()))?;
        let text = choice
            .message
            .content
            .ok_or_else(|| bad("the first choice has no message content".into()))?;
        let finish = match choice.finish_reason.as_deref() {
            Some("length") => FinishReason::Length,
            _ => FinishReason::Stop,
        };
        let usage = body.usage.unwrap_or(Usage {
            prompt_tokens: 0,
            completion_tokens: 0,
        });
        Ok(Completion {
            text,
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            finish,
        })
    }
}

fn classify(error: &reqwest::Error) -> Failure {
    if error.is_timeout() {
        Failure::Timeout
    } else {
        // The URL is in our own error; reqwest's text repeats it.
        let mut reason = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            reason = format!("{reason}: {cause}");
            source = cause.source();
        }
        Failure::Transport(reason)
    }
}

impl Backend for ServerBackend {
    fn model_name(&self) -> &str {
        &self.config.model
    }

    fn chat(&mut self, messages: &[Message], config: &GenerateConfig) -> Result<Completion> {
        config.validate()?;
        let (temperature, top_p) = match config.sampling {
            Sampling::Greedy => (0.0, 1.0),
            Sampling::TopP { temperature, top_p } => (temperature, top_p),
        };
        let body = serde_json::to_vec(&RequestBody {
            model: &self.config.model,
            messages,
            max_tokens: config.max_new_tokens,
            temperature,
            top_p,
            seed: config.seed,
            stream: false,
        })
        .map_err(|e| Error::setting("messages", e, "serialisable messages"))?;
        let attempts = self.config.max_retries + 1;
        let mut last = Failure::Timeout;
        for attempt in 1..=attempts {
            match self.runtime.block_on(self.attempt(&body)) {
                Ok(bytes) => return self.parse(&bytes),
                Err(Failure::Fatal(error)) => return Err(error),
                Err(failure) if !failure.retryable() => {
                    last = failure;
                    return Err(self.final_error(last, attempt));
                }
                Err(failure) => {
                    if attempt < attempts {
                        let retry_after = match failure {
                            Failure::RateLimited(ms) => ms,
                            _ => None,
                        };
                        let wait = self.backoff(attempt - 1, retry_after);
                        tracing::warn!(
                            url = %self.url,
                            attempt,
                            wait_ms = wait.as_millis() as u64,
                            reason = failure_kind(&failure),
                            "retrying the chat request"
                        );
                        std::thread::sleep(wait);
                    }
                    last = failure;
                }
            }
        }
        Err(self.final_error(last, attempts))
    }
}

fn failure_kind(failure: &Failure) -> &'static str {
    match failure {
        Failure::Timeout => "timeout",
        Failure::Transport(_) => "connection failed",
        Failure::RateLimited(_) => "rate limited",
        Failure::Status(..) => "server error",
        Failure::Fatal(_) => "fatal",
    }
}

impl ServerBackend {
    fn final_error(&self, failure: Failure, attempts: u32) -> Error {
        let url = self.url.to_string();
        match failure {
            Failure::Timeout => Error::Timeout {
                url,
                timeout_ms: self.config.timeout_ms,
                attempts,
            },
            Failure::Transport(reason) => Error::Transport {
                url,
                attempts,
                reason,
            },
            Failure::RateLimited(retry_after_ms) => Error::RateLimited {
                url,
                attempts,
                retry_after_ms,
            },
            Failure::Status(status, body) => Error::Http {
                url,
                status,
                attempts,
                body,
            },
            Failure::Fatal(error) => error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let config = ServerConfig {
            backoff_ms: 100,
            max_backoff_ms: 350,
            ..ServerConfig::default()
        };
        let backend = ServerBackend::with_api_key(config, None).unwrap();
        let ms = |retry, after| backend.backoff(retry, after).as_millis();
        assert_eq!(
            [ms(0, None), ms(1, None), ms(2, None), ms(40, None)],
            [100, 200, 350, 350]
        );
        assert_eq!(ms(0, Some(0)), 0);
        assert_eq!(ms(0, Some(60_000)), 350);
    }

    #[test]
    fn the_key_never_shows() {
        let backend = ServerBackend::with_api_key(
            ServerConfig::default(),
            Some(ApiKey::new("sk-secret-123")),
        )
        .unwrap();
        let shown = format!("{backend:?}");
        assert!(!shown.contains("sk-secret"), "{shown}");
        assert!(shown.contains("ApiKey(***)"), "{shown}");
    }

    #[test]
    fn urls_and_limits_are_checked() {
        for url in ["not a url", "ftp://host/v1"] {
            let config = ServerConfig {
                base_url: url.into(),
                ..ServerConfig::default()
            };
            assert!(matches!(
                ServerBackend::with_api_key(config, None),
                Err(Error::InvalidUrl { .. })
            ));
        }
        let config = ServerConfig {
            base_url: "http://localhost:1/v1/".into(),
            ..ServerConfig::default()
        };
        let backend = ServerBackend::with_api_key(config, None).unwrap();
        assert_eq!(backend.url(), "http://localhost:1/v1/chat/completions");
        let zero = ServerConfig {
            timeout_ms: 0,
            ..ServerConfig::default()
        };
        assert!(matches!(
            ServerBackend::with_api_key(zero, None),
            Err(Error::InvalidSetting {
                field: "timeout_ms",
                ..
            })
        ));
        assert!(matches!(
            ApiKey::from_env("MRL_LLM_TEST_KEY_THAT_IS_NEVER_SET"),
            Err(Error::InvalidSetting {
                field: "api_key_env",
                ..
            })
        ));
    }
}
