//! The embedded backend: a Llama-architecture GGUF model (SmolLM2-135M-Instruct by default)
//! run by candle's quantized Llama on the CPU.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
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
    /// implementation of the same file (about 4× the memory, slower).
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

/// A GGUF Llama model with its tokenizer, on the CPU.
pub struct EmbeddedBackend {
    model: ModelWeights,
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
            (Weights::Quantized, None) => ModelWeights::from_gguf(content, &mut file, &device),
            (weights, mut rewrite) => {
                let bytes = rewrite_gguf(&content, &mut file, &mut |name, tensor| {
                    let tensor = match rewrite.as_mut() {
                        Some(f) => f(name, tensor)?,
                        None => tensor,
                    };
                    if weights == Weights::DequantizedF32 && tensor.dtype() != GgmlDType::F32 {
                        Ok(QTensor::quantize(
                            &tensor.dequantize(&device)?,
                            GgmlDType::F32,
                        )?)
                    } else {
                        Ok(tensor)
                    }
                })?;
                let mut reader = Cursor::new(bytes);
                let rewritten = gguf_file::Content::read(&mut reader)?;
                ModelWeights::from_gguf(rewritten, &mut reader, &device)
            }
        }
        .map_err(|e| bad_model(path, e))?;
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
        self.model.clear_kv_cache();
        let logits = self.forward(ids, 0)?;
        Ok(logits)
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

    /// One forward pass of `ids` at positions `index_pos..`; the logits of the last one.
    fn forward(&mut self, ids: &[u32], index_pos: usize) -> Result<Vec<f32>> {
        // [1, seq_len] -> [1, vocab]
        let input = Tensor::new(ids, &Device::Cpu)?.unsqueeze(0)?;
        let logits = self.model.forward(&input, index_pos)?;
        Ok(logits.squeeze(0)?.to_vec1::<f32>()?)
    }

    /// A fresh sequence: the cache cleared, `prompt_ids` processed in one pass; the logits
    /// of the last position and the pass's seconds.
    fn prefill(&mut self, prompt_ids: &[u32]) -> Result<(Vec<f32>, f64)> {
        self.model.clear_kv_cache();
        let start = Instant::now();
        let logits = self.forward(prompt_ids, 0)?;
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
            logits = self.forward(&[next], prompt_ids.len() + ids.len() - 1)?;
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
    /// reply `k` equals a separate call with `configs[k]`.
    ///
    /// # Errors
    /// As [`generate_constrained`](Self::generate_constrained).
    pub fn generate_constrained_many(
        &mut self,
        prompt_ids: &[u32],
        template: &Template,
        configs: &[GenerateConfig],
    ) -> Result<Vec<Generated>> {
        for config in configs {
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
        self.check_fits(prompt_ids.len(), budget)?;
        let table = self.token_table.take().unwrap_or_else(|| unreachable!());
        let out = self.prefill(prompt_ids).and_then(|(logits, prompt_secs)| {
            let snapshot = self.model.clone();
            configs
                .iter()
                .map(|config| {
                    self.model = snapshot.clone();
                    let start = Instant::now();
                    let (generated, produced) = self
                        .fill_template(prompt_ids, &logits, template, &encoded, &table, config)?;
                    let timing = Timing {
                        prompt_tokens: prompt_ids.len(),
                        prompt_secs,
                        generated_tokens: produced.max(generated.ids.len()),
                        generate_secs: start.elapsed().as_secs_f64(),
                    };
                    tracing::debug!(
                        prompt_tokens = timing.prompt_tokens,
                        reply_tokens = generated.ids.len(),
                        sampled = produced,
                        secs = timing.generate_secs,
                        "constrained generation"
                    );
                    self.last_timing = Some(timing);
                    Ok(generated)
                })
                .collect()
        });
        self.token_table = Some(table);
        out
    }

    /// Fills `template` after the prompt (already in the cache, `logits` its last
    /// position's); the reply and the number of sampled tokens.
    fn fill_template(
        &mut self,
        prompt_ids: &[u32],
        logits: &[f32],
        template: &Template,
        encoded: &[Vec<Vec<u32>>],
        table: &TokenTable,
        config: &GenerateConfig,
    ) -> Result<(Generated, usize)> {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let mut logits = logits.to_vec();
        let mut ids: Vec<u32> = Vec::new();
        let mut produced = 0;
        // The option picked by the latest choice slot (for a `SignedBy` slot).
        let mut last_choice: Option<usize> = None;
        let feed = |model: &mut Self, ids: &mut Vec<u32>, new: &[u32]| {
            model.feed_reply(prompt_ids.len(), ids, new)
        };
        for (part, enc) in template.parts.iter().zip(encoded) {
            match part {
                Slot::Literal(_) => {
                    if !enc[0].is_empty() {
                        logits = feed(self, &mut ids, &enc[0])?;
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
                    logits = feed(self, &mut ids, &enc[picked])?;
                }
                Slot::Number { .. } | Slot::SignedBy { .. } => {
                    let (forced, number) = number_plan(part, last_choice)?;
                    if !forced.is_empty() {
                        let forced_ids = self.tokenizer.encode(forced)?;
                        logits = feed(self, &mut ids, &forced_ids)?;
                    }
                    if let Some(number) = number {
                        logits = self.fill_number(
                            prompt_ids.len(),
                            &mut ids,
                            logits,
                            forced.to_string(),
                            number,
                            table,
                            config,
                            &mut rng,
                            &mut produced,
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
                        logits = feed(self, &mut ids, &[next])?;
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

    /// Feeds `new` after the reply's tokens so far (`ids`, after a prompt of `prompt_len`
    /// tokens in the cache) and appends them; the logits of the last one.
    fn feed_reply(
        &mut self,
        prompt_len: usize,
        ids: &mut Vec<u32>,
        new: &[u32],
    ) -> Result<Vec<f32>> {
        let pos = prompt_len + ids.len();
        ids.extend_from_slice(new);
        self.forward(new, pos)
    }

    /// Fills a number slot whose text so far is `text` (already fed): tokens that keep it
    /// a valid prefix, until an ending token after a complete number or the budget (then
    /// closed with a `0`); the logits after the last fed token.
    #[allow(clippy::too_many_arguments)]
    fn fill_number(
        &mut self,
        prompt_len: usize,
        ids: &mut Vec<u32>,
        mut logits: Vec<f32>,
        mut text: String,
        slot: NumberSlot,
        table: &TokenTable,
        config: &GenerateConfig,
        rng: &mut ChaCha8Rng,
        produced: &mut usize,
    ) -> Result<Vec<f32>> {
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
            logits = self.feed_reply(prompt_len, ids, &[next])?;
        }
        if !number_complete(&text) {
            // Out of budget mid-number ("", "-", "1."): close it with a 0.
            let zero = self.tokenizer.encode("0")?;
            logits = self.feed_reply(prompt_len, ids, &zero)?;
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
