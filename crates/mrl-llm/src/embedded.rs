//! The embedded backend: a Llama-architecture GGUF model (SmolLM2-135M-Instruct by default)
//! run by candle's quantized Llama on the CPU.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::quantized::{QTensor, gguf_file};
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::{MAX_SEQ_LEN, ModelWeights};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, Completion, FinishReason, GenerateConfig, Message};
use crate::chat::{END_OF_TEXT, IM_END, IM_START, SMOLLM2_DEFAULT_SYSTEM, render_chatml};
use crate::constrained::{
    Sign, Slot, Template, TokenTable, masked, number_complete, number_prefix_ok,
};
use crate::decoder::{F32Llama, Feed, KvCache};
use crate::error::{Error, Result};
use crate::sampling::sample;
use crate::tokenizer::{GgufTokenizer, metadata};

/// File name of the default model, SmolLM2-135M-Instruct quantised to Q4_1.
pub const SMOLLM2_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// Environment variable naming the model file (overrides the cache directory).
pub const MODEL_ENV: &str = "MRL_LLM_MODEL";
/// Environment variable naming the cache directory of `scripts/fetch-smollm2`.
pub const CACHE_ENV: &str = "MRL_LLM_CACHE";

/// Where the default model file is: `$MRL_LLM_MODEL`, else `SMOLLM2_FILE` in
/// `$MRL_LLM_CACHE`, `$XDG_CACHE_HOME/mrl` or `$HOME/.cache/mrl` (the directories
/// `scripts/fetch-smollm2` writes to, in the same order). `None` without any of these
/// variables.
pub fn default_model_path() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(path) = var(MODEL_ENV) {
        return Some(PathBuf::from(path));
    }
    let dir = var(CACHE_ENV)
        .map(PathBuf::from)
        .or_else(|| var("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("mrl")))
        .or_else(|| var("HOME").map(|d| PathBuf::from(d).join(".cache").join("mrl")))?;
    Some(dir.join(SMOLLM2_FILE))
}

/// How the model's weights are held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Weights {
    /// As stored (Q4_1 / Q8_0 blocks), multiplied by candle's quantised kernels, which
    /// quantise the activations to 8 bits per block as llama.cpp does. Fast, small.
    #[default]
    Quantized,
    /// Dequantised to f32 at load and multiplied in f32: the numbers of a PyTorch
    /// implementation of the same file (about 4× the memory). On x86 CPUs the faster path
    /// for SmolLM2-135M: candle has no SIMD kernel for Q4_1 blocks there, and its repacked
    /// AVX-512 kernels need a width divisible by 256 (SmolLM2-135M's is 576). Several
    /// replies to one or several prompts are decoded as one batch
    /// ([`EmbeddedBackend::generate_constrained_batch`]).
    DequantizedF32,
}

/// Wall-clock timing of the last generation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Seconds to process the prompt (one forward pass over all its tokens).
    pub prompt_secs: f64,
    /// Tokens generated.
    pub generated_tokens: usize,
    /// Seconds after the prompt pass (one forward pass per token after the first).
    pub generate_secs: f64,
}

impl Timing {
    /// Prompt tokens per second.
    pub fn prompt_tokens_per_sec(&self) -> f64 {
        self.prompt_tokens as f64 / self.prompt_secs.max(f64::MIN_POSITIVE)
    }

    /// Generated tokens per second: the forward passes after the prompt's, one per token
    /// but the first (which the prompt pass yields and whose time is the prompt's).
    pub fn generate_tokens_per_sec(&self) -> f64 {
        self.generated_tokens.saturating_sub(1) as f64 / self.generate_secs.max(f64::MIN_POSITIVE)
    }
}

/// Token ids a generation produced and why it stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// New token ids, without the stop token.
    pub ids: Vec<u32>,
    /// Why it stopped.
    pub finish: FinishReason,
}

/// The forward pass of either kind of weights, with the cache of the current sequence.
enum Model {
    /// candle's quantised Llama (its own cache).
    Quantized(ModelWeights),
    /// The f32 decoder and the current sequence's cache.
    F32 { model: F32Llama, cache: KvCache },
}

impl Model {
    /// Starts a fresh sequence.
    fn clear(&mut self) {
        match self {
            Model::Quantized(model) => model.clear_kv_cache(),
            Model::F32 { cache, .. } => *cache = KvCache::default(),
        }
    }

    /// One forward pass of `ids` at positions `index_pos..` (`index_pos` is the number
    /// of positions already in the cache); the logits of the last one.
    fn forward(&mut self, ids: &[u32], index_pos: usize) -> Result<Vec<f32>> {
        match self {
            Model::Quantized(model) => {
                // [1, seq_len] -> [1, vocab]
                let input = Tensor::new(ids, &Device::Cpu)?.unsqueeze(0)?;
                let logits = model.forward(&input, index_pos)?;
                Ok(logits.squeeze(0)?.to_vec1::<f32>()?)
            }
            Model::F32 { model, cache } => {
                debug_assert_eq!(cache.len(), index_pos);
                let mut logits = model.forward(&mut [Feed { cache, ids }])?;
                Ok(logits.remove(0))
            }
        }
    }
}

/// A GGUF Llama model with its tokenizer, on the CPU.
pub struct EmbeddedBackend {
    model: Model,
    tokenizer: GgufTokenizer,
    stop_ids: Vec<u32>,
    context_len: usize,
    name: String,
    default_system: Option<String>,
    last_timing: Option<Timing>,
    token_table: Option<TokenTable>,
}

impl std::fmt::Debug for EmbeddedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBackend")
            .field("name", &self.name)
            .field("context_len", &self.context_len)
            .field("stop_ids", &self.stop_ids)
            .finish_non_exhaustive()
    }
}

fn bad_model(path: &Path, reason: impl ToString) -> Error {
    Error::BadModel {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

impl EmbeddedBackend {
    /// Loads a Llama-architecture GGUF file (weights, tokenizer, chat convention).
    ///
    /// The chat template must be ChatML (`<|im_start|>` / `<|im_end|>` tokens in the
    /// vocabulary); SmolLM2's default system message is used when the file's template names
    /// it.
    ///
    /// # Errors
    /// [`Error::ModelNotFound`], [`Error::Io`], [`Error::BadModel`] (not GGUF, not Llama,
    /// missing tensors or tokens), [`Error::Metadata`], [`Error::Tokenizer`].
    pub fn load(path: &Path, weights: Weights) -> Result<Self> {
        Self::load_rewritten(path, weights, None)
    }

    /// [`load`](Self::load) with each tensor passed through `rewrite` (by name) first.
    pub(crate) fn load_rewritten(
        path: &Path,
        weights: Weights,
        rewrite: Option<&mut Rewrite<'_>>,
    ) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::ModelNotFound {
                path: path.to_path_buf(),
            });
        }
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let content = gguf_file::Content::read(&mut file).map_err(|e| bad_model(path, e))?;
        let arch = metadata(&content, "general.architecture").and_then(|v| v.to_string().ok());
        if arch.map(String::as_str) != Some("llama") {
            return Err(bad_model(
                path,
                format!("architecture {arch:?}, expected \"llama\""),
            ));
        }
        let tokenizer = GgufTokenizer::from_gguf(&content)?;
        let template = metadata(&content, "tokenizer.chat_template")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        if !template.contains(IM_START) {
            return Err(bad_model(
                path,
                "tokenizer.chat_template is not ChatML (no <|im_start|>)",
            ));
        }
        let default_system = template
            .contains(SMOLLM2_DEFAULT_SYSTEM)
            .then(|| SMOLLM2_DEFAULT_SYSTEM.to_string());
        let im_end = tokenizer
            .token_id(IM_END)
            .ok_or_else(|| bad_model(path, "no <|im_end|> token in the vocabulary"))?;
        let mut stop_ids = vec![im_end];
        stop_ids.extend(tokenizer.token_id(END_OF_TEXT));
        if let Some(eos) =
            metadata(&content, "tokenizer.ggml.eos_token_id").and_then(|v| v.to_u32().ok())
        {
            stop_ids.push(eos);
        }
        stop_ids.sort_unstable();
        stop_ids.dedup();
        let context_len = metadata(&content, "llama.context_length")
            .and_then(|v| v.to_u32().ok())
            .map_or(MAX_SEQ_LEN, |n| (n as usize).min(MAX_SEQ_LEN));
        let name = metadata(&content, "general.name")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_else(|| path.display().to_string());
        let device = Device::Cpu;
        let model = match (weights, rewrite) {
            (Weights::Quantized, None) => ModelWeights::from_gguf(content, &mut file, &device)
                .map(Model::Quantized)
                .map_err(|e| bad_model(path, e))?,
            (Weights::DequantizedF32, None) => Model::F32 {
                model: F32Llama::from_gguf(&content, &mut file, context_len)
                    .map_err(|e| bad_model(path, e))?,
                cache: KvCache::default(),
            },
            (weights, Some(rewrite)) => {
                let bytes = rewrite_gguf(&content, &mut file, rewrite)?;
                let mut reader = Cursor::new(bytes);
                let rewritten = gguf_file::Content::read(&mut reader)?;
                match weights {
                    Weights::Quantized => ModelWeights::from_gguf(rewritten, &mut reader, &device)
                        .map(Model::Quantized)
                        .map_err(|e| bad_model(path, e))?,
                    Weights::DequantizedF32 => Model::F32 {
                        model: F32Llama::from_gguf(&rewritten, &mut reader, context_len)
                            .map_err(|e| bad_model(path, e))?,
                        cache: KvCache::default(),
                    },
                }
            }
        };
        tracing::info!(model = %name, ?weights, context_len, "loaded GGUF model");
        Ok(Self {
            model,
            tokenizer,
            stop_ids,
            context_len,
            name,
            default_system,
            last_timing: None,
            token_table: None,
        })
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &GgufTokenizer {
        &self.tokenizer
    }

    /// Prompt plus new tokens the model accepts: the file's `llama.context_length`, capped
    /// at candle's rotary table of 4096 positions.
    pub fn context_len(&self) -> usize {
        self.context_len
    }

    /// The ChatML prompt for `messages` (with the model's default system message).
    pub fn prompt(&self, messages: &[Message]) -> String {
        render_chatml(messages, self.default_system.as_deref())
    }

    /// Timing of the last [`generate`](Self::generate) or [`Backend::chat`] call.
    pub fn last_timing(&self) -> Option<Timing> {
        self.last_timing
    }

    /// Next-token logits after `ids` (a fresh sequence: the cache is cleared first).
    ///
    /// # Shapes
    /// `ids`: `[seq_len]` → `[vocab]`.
    ///
    /// # Errors
    /// [`Error::ContextOverflow`] for an empty or too long sequence; candle errors.
    pub fn next_token_logits(&mut self, ids: &[u32]) -> Result<Vec<f32>> {
        self.check_fits(ids.len(), 0)?;
        self.model.clear();
        self.model.forward(ids, 0)
    }

    fn check_fits(&self, prompt_tokens: usize, max_new_tokens: usize) -> Result<()> {
        if prompt_tokens == 0 || prompt_tokens + max_new_tokens > self.context_len {
            return Err(Error::ContextOverflow {
                prompt_tokens,
                max_new_tokens,
                context: self.context_len,
            });
        }
        Ok(())
    }

    /// A fresh sequence: the cache cleared, `prompt_ids` processed in one pass; the logits
    /// of the last position and the pass's seconds.
    fn prefill(&mut self, prompt_ids: &[u32]) -> Result<(Vec<f32>, f64)> {
        self.model.clear();
        let start = Instant::now();
        let logits = self.model.forward(prompt_ids, 0)?;
        Ok((logits, start.elapsed().as_secs_f64()))
    }

    /// Generates up to `config.max_new_tokens` tokens after `prompt_ids`, stopping at an
    /// end-of-turn token (not included). Greedy decoding is exact; sampling draws from a
    /// `ChaCha8Rng` seeded with `config.seed`.
    ///
    /// # Errors
    /// Invalid settings, [`Error::ContextOverflow`], candle errors.
    pub fn generate(&mut self, prompt_ids: &[u32], config: &GenerateConfig) -> Result<Generated> {
        config.validate()?;
        self.check_fits(prompt_ids.len(), config.max_new_tokens)?;
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let (mut logits, prompt_secs) = self.prefill(prompt_ids)?;
        let start = Instant::now();
        let mut ids = Vec::new();
        let mut finish = FinishReason::Length;
        let mut produced = 0;
        while produced < config.max_new_tokens {
            let next = sample(&logits, &config.sampling, &mut rng);
            produced += 1;
            if self.stop_ids.contains(&next) {
                finish = FinishReason::Stop;
                break;
            }
            ids.push(next);
            if produced == config.max_new_tokens {
                break;
            }
            logits = self
                .model
                .forward(&[next], prompt_ids.len() + ids.len() - 1)?;
        }
        let timing = Timing {
            prompt_tokens: prompt_ids.len(),
            prompt_secs,
            generated_tokens: produced,
            generate_secs: start.elapsed().as_secs_f64(),
        };
        tracing::debug!(
            prompt_tokens = timing.prompt_tokens,
            prompt_tok_per_s = timing.prompt_tokens_per_sec(),
            generated = timing.generated_tokens,
            gen_tok_per_s = timing.generate_tokens_per_sec(),
            ?finish,
            "generated"
        );
        self.last_timing = Some(timing);
        Ok(Generated { ids, finish })
    }
}

impl EmbeddedBackend {
    /// The id of the end-of-turn token `<|im_end|>` (appended to a finished reply when it
    /// is scored as a response).
    pub fn end_of_turn_id(&self) -> u32 {
        self.stop_ids
            .iter()
            .copied()
            .find(|&id| self.tokenizer.token_id(IM_END) == Some(id))
            .unwrap_or(self.stop_ids[0])
    }

    /// Generates a reply that follows `template` ([`Template`]): literals are
    /// forced, slots are filled by the model under masks, with greedy or seeded nucleus
    /// choices as in [`generate`](Self::generate). The reply always ends with the
    /// template's last literal; `finish` is [`FinishReason::Stop`].
    ///
    /// # Errors
    /// Invalid settings, [`Error::ContextOverflow`] (prompt plus the template's largest
    /// reply), [`Error::InvalidSetting`] for a choice whose options share a first token,
    /// tokenizer and candle errors.
    pub fn generate_constrained(
        &mut self,
        prompt_ids: &[u32],
        template: &Template,
        config: &GenerateConfig,
    ) -> Result<Generated> {
        let mut out =
            self.generate_constrained_many(prompt_ids, template, std::slice::from_ref(config))?;
        Ok(out.remove(0))
    }

    /// [`generate_constrained`](Self::generate_constrained) once per config (seed), with the
    /// prompt processed once: each reply continues from a copy of the prompt's KV cache, so
    /// reply `k` equals a separate call with `configs[k]`. With
    /// [`Weights::DequantizedF32`] the replies advance together, one batched forward pass
    /// per step.
    ///
    /// # Errors
    /// As [`generate_constrained`](Self::generate_constrained).
    pub fn generate_constrained_many(
        &mut self,
        prompt_ids: &[u32],
        template: &Template,
        configs: &[GenerateConfig],
    ) -> Result<Vec<Generated>> {
        let mut out = self.generate_constrained_batch(&[prompt_ids], template, &[configs])?;
        Ok(out.remove(0))
    }

    /// [`generate_constrained_many`](Self::generate_constrained_many) for several prompts
    /// at once: `configs[p]` are the replies to `prompts[p]`; the result has the same
    /// nesting. With [`Weights::DequantizedF32`] the prompts' longest common prefix (the
    /// system turn and market context the judge's prompts about one context share) is
    /// processed once, the prompts' remaining tokens in one batched pass, and all replies
    /// of all prompts advance together; each reply equals a call of its own. With
    /// [`Weights::Quantized`] the prompts run one after another.
    ///
    /// # Errors
    /// As [`generate_constrained`](Self::generate_constrained);
    /// [`Error::InvalidSetting`] when `prompts` and `configs` differ in length.
    pub fn generate_constrained_batch(
        &mut self,
        prompts: &[&[u32]],
        template: &Template,
        configs: &[&[GenerateConfig]],
    ) -> Result<Vec<Vec<Generated>>> {
        if prompts.len() != configs.len() {
            return Err(Error::setting(
                "configs",
                format!("{} lists for {} prompts", configs.len(), prompts.len()),
                "one list of configs per prompt",
            ));
        }
        for config in configs.iter().copied().flatten() {
            config.validate()?;
        }
        if self.token_table.is_none() {
            self.token_table = Some(TokenTable::new(&self.tokenizer)?);
        }
        let mut encoded = Vec::with_capacity(template.parts.len());
        let mut budget = 0;
        for part in &template.parts {
            let ids: Vec<Vec<u32>> = match part {
                Slot::Literal(text) => vec![self.tokenizer.encode(text)?],
                Slot::Choice(options) => options
                    .iter()
                    .map(|o| self.tokenizer.encode(o))
                    .collect::<Result<_>>()?,
                _ => Vec::new(),
            };
            budget += match part {
                Slot::Literal(_) => ids[0].len(),
                Slot::Number { max_tokens, .. } => max_tokens + 1,
                Slot::SignedBy { max_tokens, .. } => max_tokens + 2,
                Slot::Text { max_tokens } => *max_tokens,
                Slot::Choice(_) => ids.iter().map(Vec::len).max().unwrap_or(0),
            };
            encoded.push(ids);
        }
        for prompt in prompts {
            self.check_fits(prompt.len(), budget)?;
        }
        let table = self.token_table.take().unwrap_or_else(|| unreachable!());
        let fill = Fill {
            tokenizer: &self.tokenizer,
            template,
            encoded: &encoded,
            table: &table,
        };
        let prompt_tokens = prompts.iter().map(|p| p.len()).sum();
        let start = Instant::now();
        let filled = match &mut self.model {
            Model::Quantized(model) => fill_quantized(model, prompts, &fill, configs),
            Model::F32 { model, .. } => fill_f32(model, prompts, &fill, configs, budget),
        };
        self.token_table = Some(table);
        let (filled, prompt_secs) = filled?;
        let produced: usize = filled
            .iter()
            .flatten()
            .map(|(g, p)| (*p).max(g.ids.len()))
            .sum();
        let timing = Timing {
            prompt_tokens,
            prompt_secs,
            generated_tokens: produced,
            generate_secs: start.elapsed().as_secs_f64() - prompt_secs,
        };
        tracing::debug!(
            prompts = prompts.len(),
            prompt_tokens,
            prompt_secs,
            replies = configs.iter().map(|c| c.len()).sum::<usize>(),
            sampled = produced,
            secs = timing.generate_secs,
            "constrained generation"
        );
        self.last_timing = Some(timing);
        Ok(filled
            .into_iter()
            .map(|replies| replies.into_iter().map(|(g, _)| g).collect())
            .collect())
    }
}

/// Replies and sampled-token counts per prompt, and the seconds spent on the prompts.
type Filled = (Vec<Vec<(Generated, usize)>>, f64);

/// The quantised path of [`EmbeddedBackend::generate_constrained_batch`]: per prompt, one
/// prompt pass and each reply from a copy of its cache.
fn fill_quantized(
    model: &mut ModelWeights,
    prompts: &[&[u32]],
    fill: &Fill<'_>,
    configs: &[&[GenerateConfig]],
) -> Result<Filled> {
    let mut prompt_secs = 0.0;
    let mut out = Vec::with_capacity(prompts.len());
    for (prompt, configs) in prompts.iter().zip(configs) {
        let start = Instant::now();
        model.clear_kv_cache();
        let forward = |model: &mut ModelWeights, ids: &[u32], pos: usize| -> Result<Vec<f32>> {
            // [1, n] -> [1, vocab]
            let input = Tensor::new(ids, &Device::Cpu)?.unsqueeze(0)?;
            let logits = model.forward(&input, pos)?;
            Ok(logits.squeeze(0)?.to_vec1::<f32>()?)
        };
        let logits = forward(model, prompt, 0)?;
        prompt_secs += start.elapsed().as_secs_f64();
        let snapshot = model.clone();
        let replies = configs
            .iter()
            .map(|config| {
                *model = snapshot.clone();
                let mut pos = prompt.len();
                fill.run(logits.clone(), config, &mut |new: &[u32]| {
                    let out = forward(model, new, pos);
                    pos += new.len();
                    out
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.push(replies);
    }
    Ok((out, prompt_secs))
}

/// The f32 path of [`EmbeddedBackend::generate_constrained_batch`]: the prompts' common
/// prefix once, their remaining tokens in one batched pass, then every reply of every
/// prompt in lockstep ([`fill_batched`]).
fn fill_f32(
    model: &F32Llama,
    prompts: &[&[u32]],
    fill: &Fill<'_>,
    configs: &[&[GenerateConfig]],
    budget: usize,
) -> Result<Filled> {
    let start = Instant::now();
    // Every prompt keeps at least one token after the shared prefix.
    let shortest = prompts.iter().map(|p| p.len()).min().unwrap_or(0);
    let shared = match prompts {
        [] | [_] => 0,
        [first, rest @ ..] => (0..shortest.saturating_sub(1))
            .take_while(|&i| rest.iter().all(|p| p[i] == first[i]))
            .count(),
    };
    let mut prefix = KvCache::default();
    if shared > 0 {
        model.forward(&mut [Feed {
            cache: &mut prefix,
            ids: &prompts[0][..shared],
        }])?;
    }
    let mut caches = prompts
        .iter()
        .map(|p| prefix.fork(p.len() - shared))
        .collect::<Result<Vec<_>>>()?;
    let mut feeds: Vec<Feed<'_>> = caches
        .iter_mut()
        .zip(prompts)
        .map(|(cache, prompt)| Feed {
            cache,
            ids: &prompt[shared..],
        })
        .collect();
    let logits = match feeds.is_empty() {
        true => Vec::new(),
        false => model.forward(&mut feeds)?,
    };
    drop(feeds);
    let prompt_secs = start.elapsed().as_secs_f64();
    // Each reply continues its own copy of its prompt's cache, with room for the reply.
    let mut rows: Vec<(KvCache, &[f32], &GenerateConfig)> = Vec::new();
    for ((cache, logits), configs) in caches.iter().zip(&logits).zip(configs) {
        for config in configs.iter() {
            rows.push((cache.fork(budget)?, logits.as_slice(), config));
        }
    }
    let mut replies = fill_batched(model, rows, fill)?.into_iter();
    let out = configs
        .iter()
        .map(|c| replies.by_ref().take(c.len()).collect())
        .collect();
    Ok((out, prompt_secs))
}

/// Advances one reply: feeds the tokens after those so far, returns the logits after
/// the last one.
type FeedFn<'f> = dyn FnMut(&[u32]) -> Result<Vec<f32>> + 'f;

/// Appends tokens to a reply's ids and feeds them ([`FeedFn`]).
type PushFn<'f> = dyn FnMut(&mut Vec<u32>, &[u32]) -> Result<Vec<f32>> + 'f;

/// Fills one reply per row (a prompt's cache, the logits after it, the reply's config) in
/// lockstep: each reply's [`Fill::run`] runs on a thread of its own and asks for its
/// next tokens; once every unfinished reply has asked, one [`F32Llama::forward`] over all
/// of them (in row order) answers. A reply's tokens depend only on its own logits and
/// seed, so the replies equal separate calls.
fn fill_batched(
    model: &F32Llama,
    rows: Vec<(KvCache, &[f32], &GenerateConfig)>,
    fill: &Fill<'_>,
) -> Result<Vec<(Generated, usize)>> {
    type Reply = std::sync::mpsc::Sender<std::result::Result<Vec<f32>, String>>;
    enum Msg {
        Feed {
            row: usize,
            ids: Vec<u32>,
            reply: Reply,
        },
        Done {
            row: usize,
            out: Result<(Generated, usize)>,
        },
    }
    let stopped = |why: String| Error::Candle(candle_core::Error::Msg(why));
    let n = rows.len();
    let (mut caches, starts): (Vec<KvCache>, Vec<(&[f32], &GenerateConfig)>) = rows
        .into_iter()
        .map(|(cache, logits, config)| (cache, (logits, config)))
        .unzip();
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel::<Msg>();
        for (row, (logits, config)) in starts.into_iter().enumerate() {
            let tx = tx.clone();
            scope.spawn(move || {
                let (reply_tx, reply_rx) = std::sync::mpsc::channel();
                let lost = || stopped("the batched decoder stopped".into());
                let mut feed = |ids: &[u32]| -> Result<Vec<f32>> {
                    let msg = Msg::Feed {
                        row,
                        ids: ids.to_vec(),
                        reply: reply_tx.clone(),
                    };
                    tx.send(msg).map_err(|_| lost())?;
                    reply_rx.recv().map_err(|_| lost())?.map_err(stopped)
                };
                let out = fill.run(logits.to_vec(), config, &mut feed);
                // The driver waits for this message; it only fails once the driver is gone.
                let _ = tx.send(Msg::Done { row, out });
            });
        }
        drop(tx);
        let mut results: Vec<Option<Result<(Generated, usize)>>> = (0..n).map(|_| None).collect();
        let mut pending: Vec<(usize, Vec<u32>, Reply)> = Vec::with_capacity(n);
        let mut live = n;
        let mut failure = None;
        while live > 0 {
            match rx.recv() {
                Ok(Msg::Done { row, out }) => {
                    results[row] = Some(out);
                    live -= 1;
                }
                Ok(Msg::Feed { row, ids, reply }) => pending.push((row, ids, reply)),
                Err(_) => break,
            }
            if live == 0 || pending.len() < live {
                continue;
            }
            pending.sort_by_key(|p| p.0);
            let mut feeds = Vec::with_capacity(pending.len());
            let mut next = pending.iter().peekable();
            for (row, cache) in caches.iter_mut().enumerate() {
                if let Some((_, ids, _)) = next.next_if(|p| p.0 == row) {
                    feeds.push(Feed { cache, ids });
                }
            }
            match model.forward(&mut feeds) {
                Ok(all) => {
                    for ((_, _, reply), logits) in pending.drain(..).zip(all) {
                        // A reply thread only goes away after its Done message.
                        let _ = reply.send(Ok(logits));
                    }
                }
                Err(e) => {
                    for (_, _, reply) in pending.drain(..) {
                        let _ = reply.send(Err(e.to_string()));
                    }
                    failure.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(stopped("a reply thread ended early".into()))))
            .collect()
    })
}

/// The fixed parts of filling a template: the tokenizer, the template with its literals
/// and options encoded, and the token classes.
struct Fill<'a> {
    tokenizer: &'a GgufTokenizer,
    template: &'a Template,
    encoded: &'a [Vec<Vec<u32>>],
    table: &'a TokenTable,
}

impl Fill<'_> {
    /// Fills the template after a prompt whose last position's logits are `logits`, each
    /// chosen or forced token passed to `feed`; the reply and the number of sampled
    /// tokens.
    fn run(
        &self,
        mut logits: Vec<f32>,
        config: &GenerateConfig,
        feed: &mut FeedFn<'_>,
    ) -> Result<(Generated, usize)> {
        let table = self.table;
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let mut ids: Vec<u32> = Vec::new();
        let mut produced = 0;
        // The option picked by the latest choice slot (for a `SignedBy` slot).
        let mut last_choice: Option<usize> = None;
        let mut push = |ids: &mut Vec<u32>, new: &[u32]| -> Result<Vec<f32>> {
            ids.extend_from_slice(new);
            feed(new)
        };
        for (part, enc) in self.template.parts.iter().zip(self.encoded) {
            match part {
                Slot::Literal(_) => {
                    if !enc[0].is_empty() {
                        logits = push(&mut ids, &enc[0])?;
                    }
                }
                Slot::Choice(_) => {
                    let firsts: Vec<u32> = enc.iter().filter_map(|o| o.first().copied()).collect();
                    let mut unique = firsts.clone();
                    unique.sort_unstable();
                    unique.dedup();
                    if unique.len() != firsts.len() {
                        return Err(Error::setting(
                            "choice",
                            format!("{firsts:?}"),
                            "options whose first tokens differ",
                        ));
                    }
                    let next = sample(&masked(&logits, firsts.clone()), &config.sampling, &mut rng);
                    produced += 1;
                    let picked = firsts.iter().position(|&f| f == next).unwrap_or(0);
                    last_choice = Some(picked);
                    logits = push(&mut ids, &enc[picked])?;
                }
                Slot::Number { .. } | Slot::SignedBy { .. } => {
                    let (forced, number) = number_plan(part, last_choice)?;
                    if !forced.is_empty() {
                        let forced_ids = self.tokenizer.encode(forced)?;
                        logits = push(&mut ids, &forced_ids)?;
                    }
                    if let Some(number) = number {
                        logits = self.number(
                            &mut ids,
                            logits,
                            forced.to_string(),
                            number,
                            config,
                            &mut rng,
                            &mut produced,
                            &mut push,
                        )?;
                    }
                }
                Slot::Text { max_tokens } => {
                    for _ in 0..*max_tokens {
                        let allowed = table.text.iter().chain(&table.text_end).copied();
                        let next = sample(&masked(&logits, allowed), &config.sampling, &mut rng);
                        produced += 1;
                        if table.text_end.contains(&next) {
                            break;
                        }
                        logits = push(&mut ids, &[next])?;
                    }
                }
            }
        }
        Ok((
            Generated {
                ids,
                finish: FinishReason::Stop,
            },
            produced,
        ))
    }

    /// Fills a number slot whose text so far is `text` (already fed): tokens that keep it
    /// a valid prefix, until an ending token after a complete number or the budget (then
    /// closed with a `0`); the logits after the last fed token.
    #[allow(clippy::too_many_arguments)]
    fn number(
        &self,
        ids: &mut Vec<u32>,
        mut logits: Vec<f32>,
        mut text: String,
        slot: NumberSlot,
        config: &GenerateConfig,
        rng: &mut ChaCha8Rng,
        produced: &mut usize,
        push: &mut PushFn<'_>,
    ) -> Result<Vec<f32>> {
        let table = self.table;
        for _ in 0..slot.max_tokens {
            let candidates = table
                .number
                .iter()
                .filter(|(_, t)| number_prefix_ok(&format!("{text}{t}"), slot.max_int, slot.signed))
                .map(|&(id, _)| id);
            let ending = number_complete(&text).then_some(&table.number_end);
            let allowed: Vec<u32> = candidates
                .chain(ending.into_iter().flatten().copied())
                .collect();
            if allowed.is_empty() {
                break;
            }
            let next = sample(&masked(&logits, allowed), &config.sampling, rng);
            *produced += 1;
            if table.number_end.contains(&next) && number_complete(&text) {
                break;
            }
            let piece = table
                .number
                .iter()
                .find(|(id, _)| *id == next)
                .map_or("", |(_, t)| t.as_str());
            text.push_str(piece);
            logits = push(ids, &[next])?;
        }
        if !number_complete(&text) {
            // Out of budget mid-number ("", "-", "1."): close it with a 0.
            let zero = self.tokenizer.encode("0")?;
            logits = push(ids, &zero)?;
        }
        Ok(logits)
    }
}

/// What a number slot writes: the text forced before the model chooses (`-` for a
/// negative [`Slot::SignedBy`], all of it for a zero one) and the grammar of the rest
/// (`None`: nothing left to choose).
fn number_plan(
    part: &Slot,
    last_choice: Option<usize>,
) -> Result<(&'static str, Option<NumberSlot>)> {
    match part {
        &Slot::Number {
            max_tokens,
            max_int,
            signed,
        } => Ok((
            "",
            Some(NumberSlot {
                max_tokens,
                max_int,
                signed,
            }),
        )),
        Slot::SignedBy {
            max_tokens,
            max_int,
            signs,
        } => {
            let sign = last_choice.and_then(|k| signs.get(k)).ok_or_else(|| {
                Error::setting(
                    "signed_by",
                    format!("{signs:?} after option {last_choice:?}"),
                    "a sign for every option of the preceding choice",
                )
            })?;
            let number = |signed| NumberSlot {
                max_tokens: *max_tokens,
                max_int: *max_int,
                signed,
            };
            Ok(match sign {
                Sign::Zero => ("0", None),
                Sign::Minus => ("-", Some(number(true))),
                Sign::Plus => ("", Some(number(false))),
            })
        }
        _ => Ok(("", None)),
    }
}

/// The grammar of one number slot.
#[derive(Debug, Clone, Copy)]
struct NumberSlot {
    max_tokens: usize,
    max_int: u32,
    signed: bool,
}

impl Backend for EmbeddedBackend {
    fn model_name(&self) -> &str {
        &self.name
    }

    fn chat(&mut self, messages: &[Message], config: &GenerateConfig) -> Result<Completion> {
        let prompt = self.prompt(messages);
        let prompt_ids = self.tokenizer.encode(&prompt)?;
        let generated = self.generate(&prompt_ids, config)?;
        Ok(Completion {
            text: self.tokenizer.decode(&generated.ids)?,
            prompt_tokens: prompt_ids.len(),
            completion_tokens: generated.ids.len(),
            finish: generated.finish,
        })
    }
}

/// A change to one named tensor of a GGUF file.
pub(crate) type Rewrite<'a> = dyn FnMut(&str, QTensor) -> Result<QTensor> + 'a;

/// The GGUF file of `content` (metadata unchanged) with every tensor passed through
/// `rewrite`, in memory.
fn rewrite_gguf(
    content: &gguf_file::Content,
    file: &mut std::fs::File,
    rewrite: &mut Rewrite<'_>,
) -> Result<Vec<u8>> {
    let device = Device::Cpu;
    let mut tensors = Vec::with_capacity(content.tensor_infos.len());
    for name in content.tensor_infos.keys() {
        let tensor = rewrite(name, content.tensor(file, name, &device)?)?;
        tensors.push((name.clone(), tensor));
    }
    let metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut out = Cursor::new(Vec::new());
    gguf_file::write(&mut out, &metadata, &tensor_refs)?;
    Ok(out.into_inner())
}
