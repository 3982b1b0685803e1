//! Language-model traders for mrl.
//!
//! One instruction-tuned model behind the [`Backend`] trait:
//!
//! - [`EmbeddedBackend`], the default: SmolLM2-135M-Instruct (GGUF, Q4_1) run by candle's
//!   quantised Llama on the CPU, with its tokenizer built from the GGUF metadata
//!   ([`GgufTokenizer`]) and its ChatML convention ([`render_chatml`]). Fetch the weights
//!   once with `scripts/fetch-smollm2`; [`default_model_path`] finds them.
//! - [`ServerBackend`]: any OpenAI-compatible chat server (llama.cpp, Ollama, vLLM) by base
//!   URL and model name ([`ServerConfig`]), with timeouts, retries, a response-size cap and
//!   the API key taken only from the environment ([`ApiKey`], never logged).
//!
//! The roles ([`roles`]: actor, judge, meta-judge) share prompt templates kept in one
//! module and answer in small JSON objects parsed strictly with repair of near-misses
//! ([`parse_prediction`], [`parse_judgment`], [`parse_meta_judgment`]); a reply that fails
//! is a counted [`ParseFailure`], never a crash, and never a position outside [−1, 1].
//! [`ContextBuilder`] turns mrl's bars and features into a [`MarketContext`] using only
//! bars at or before the decision time, with optional timestamped headlines ([`read_news`]).
//!
//! For preference training, [`LoraLlama`] is the same model in differentiable f32/f64 ops
//! with LoRA adapters on the query and value projections (base weights frozen), and
//! [`dpo_loss`] is the DPO objective over summed response log-probabilities
//! ([`response_logprob`]).
//!
//! The self-improvement loop ([`train`], `mrl llm train`) runs the three roles under
//! constrained decoding ([`Template`]: the reply's JSON skeleton is forced, the model fills
//! the numbers, choices and rationale; the position's sign follows the stated direction),
//! builds actor pairs from the judge's scores (optionally blended with the computed outcome,
//! [`outcome_score`], and kept only where the two positions differ in side, [`PairFilter`])
//! and judge pairs from the meta-judge's verdicts, and trains one LoRA adapter per role with
//! DPO for several rounds ([`TrainConfig`], per-round [`RoundLog`] and [`CandidateLog`],
//! resumable).
//! [`EvalReport`] (`mrl llm eval`) books the actor's positions on held-out bars through
//! mrl-backtest beside trained RL agents ([`agent_row`]: RL², the MLP), buy-and-hold, flat
//! and the trader rules.
//!
//! Decoding is greedy (exact) or seeded nucleus sampling ([`Sampling`]) within a token
//! budget ([`GenerateConfig`]).
//!
//! # Speed on a CPU
//! With [`Weights::DequantizedF32`] (the loop's `generation_weights`) the embedded backend
//! runs its own f32 decoder: the replies to one or several prompts
//! ([`EmbeddedBackend::generate_constrained_batch`]) advance as one batch, the prompts'
//! common prefix runs once, and each sequence's keys and values sit in a preallocated
//! cache, so a step reads the weights once for all replies. The Q4_1 weights run through
//! candle's generic kernels on x86 (no SIMD path for Q4_1 blocks, and its AVX-512 repacked
//! kernels need a width divisible by 256; SmolLM2-135M's is 576), several times slower
//! than f32. candle spreads each operation over a pool of spinning threads, one per core:
//! on a machine shared with other jobs `CANDLE_NUM_THREADS=1 RAYON_NUM_THREADS=1` is
//! faster (a round of `configs/llm-quick.toml` took half the time on 2 busy cores).
//!
//! ```
//! use mrl_llm::{Backend, EmbeddedBackend, GenerateConfig, Message, Weights, write_tiny_model};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("tiny.gguf");
//! write_tiny_model(&path, 0)?; // a random 2-layer model; use default_model_path() for SmolLM2
//! let mut model = EmbeddedBackend::load(&path, Weights::Quantized)?;
//! let reply = model.chat(&[Message::user("hi")], &GenerateConfig::greedy(8))?;
//! assert!(reply.completion_tokens <= 8);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Features
//! - `real-model`: the parity tests against the real SmolLM2 file (run
//!   `scripts/fetch-smollm2` first; they fail, never skip, without it).

mod backend;
mod chat;
mod config;
mod constrained;
mod context;
mod decoder;
mod dpo;
mod embedded;
mod error;
mod eval;
mod lora;
mod reply;
pub mod roles;
mod sampling;
mod server;
mod tiny;
mod tokenizer;
mod train;

pub use backend::{Backend, Completion, FinishReason, GenerateConfig, Message, Sampling, Speaker};
pub use chat::{
    END_OF_TEXT, IM_END, IM_START, SMOLLM2_DEFAULT_SYSTEM, escape_specials, render_chatml,
};
pub use config::{DpoConfig, EvalConfig, MarketConfig, PairFilter, TrainConfig};
pub use constrained::{MAX_NUMBER_CHARS, Sign, Slot, Template};
pub use context::{
    ContextBuilder, ContextConfig, MAX_HEADLINE_CHARS, MarketContext, NewsItem, RegimeStats,
    read_news,
};
pub use dpo::{DpoLoss, dpo_loss, response_logprob};
pub use embedded::{
    CACHE_ENV, EmbeddedBackend, Generated, MODEL_ENV, SMOLLM2_FILE, Timing, Weights,
    default_model_path,
};
pub use error::{Error, Result};
pub use eval::{
    Decision, EvalReport, EvalRow, actor_decisions, actor_row, agent_row, agent_windows,
    baseline_rows, constrained_actor, test_bars,
};
pub use lora::{Lora, LoraConfig, LoraLlama};
pub use reply::{
    Direction, Judgment, MAX_RATIONALE_CHARS, MAX_REPLY_BYTES, MAX_RETURN_PCT, MetaJudgment,
    ParseFailure, ParseStats, Parsed, Prediction, Preference, Repair, extract_object,
    parse_judgment, parse_meta_judgment, parse_prediction,
};
pub use roles::{Outcome, Role};
pub use sampling::{argmax, nucleus, sample};
pub use server::{ApiKey, ServerBackend, ServerConfig};
pub use tiny::{TINY_HIDDEN, TINY_LAYERS, tiny_vocabulary, write_tiny_model};
pub use tokenizer::GgufTokenizer;
pub use train::{
    ACTOR_ADAPTERS, ADAPTERS_JSON, AdapterInfo, BASE_VALIDATION_JSON, CANDIDATES_JSONL,
    CandidateLog, DpoStats, JUDGE_ADAPTERS, PhaseSeconds, PositionCounts, PreferencePair, RoundLog,
    SHOWN_RATIONALE_CHARS, TrainingData, TrainingExample, UNPARSED_SCORE, canonical_judgment,
    canonical_prediction, complete_rounds, derive_seed, load_round_adapters, outcome_score,
    position_sign, role_lora, round_dir, select_pair, spearman, train, validation_bars,
};
