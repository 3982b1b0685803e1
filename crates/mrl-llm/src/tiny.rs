//! A tiny random Llama model in GGUF, written by the tests and CI for themselves.
//!
//! Same layout, tokenizer kind, chat convention and quantisation (Q4_1 matrices, a Q8_0
//! embedding) as SmolLM2-135M-Instruct, with 2 layers of width 64 and a byte-level vocabulary
//! of 3 control tokens, the 256 byte symbols and a few merges, so every code path of the
//! embedded backend runs in milliseconds without the real weights. Its replies are noise.

use std::io::Write;
use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::chat::{END_OF_TEXT, IM_END, IM_START};
use crate::error::{Error, Result};

/// Width of the tiny model's residual stream.
pub const TINY_HIDDEN: usize = 64;
/// Layers of the tiny model.
pub const TINY_LAYERS: usize = 2;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const FFN: usize = 128;
const CONTEXT: u32 = 2048;
/// Merges of the tiny vocabulary (each adds the token `a + b`).
const MERGES: [(&str, &str); 8] = [
    ("Ġ", "t"),
    ("h", "e"),
    ("Ġt", "he"),
    ("i", "n"),
    ("Ġ", "a"),
    ("e", "r"),
    ("\"", ":"),
    ("o", "n"),
];
/// A ChatML template with SmolLM2's default system message (the convention the embedded
/// backend reads from a GGUF file).
const TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// The tiny vocabulary: 3 control tokens (ids 0, 1, 2 as in SmolLM2), the 256 byte symbols
/// of GPT-2's byte-level alphabet in code-point order, then the merged tokens.
pub fn tiny_vocabulary() -> Vec<String> {
    let mut alphabet: Vec<char> = tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet()
        .into_iter()
        .collect();
    alphabet.sort_unstable();
    let mut tokens = vec![
        END_OF_TEXT.to_string(),
        IM_START.to_string(),
        IM_END.to_string(),
    ];
    tokens.extend(alphabet.into_iter().map(String::from));
    tokens.extend(MERGES.iter().map(|(a, b)| format!("{a}{b}")));
    tokens
}

fn uniform(rng: &mut ChaCha8Rng, shape: (usize, usize), scale: f32) -> Result<Tensor> {
    let data: Vec<f32> = (0..shape.0 * shape.1)
        .map(|_| rng.random_range(-scale..scale))
        .collect();
    Ok(Tensor::from_vec(data, shape, &Device::Cpu)?)
}

/// Writes the tiny random model to `path` (atomically: a temporary file in the same
/// directory, then a rename). The same `seed` gives the same bytes.
///
/// # Errors
/// [`Error::Io`] if the file cannot be written; candle errors while quantising.
pub fn write_tiny_model(path: &Path, seed: u64) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let tokens = tiny_vocabulary();
    let vocab = tokens.len();
    let head_dim = TINY_HIDDEN / HEADS;
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    // Candle shapes are (out, in); quantisation blocks run along `in` (64 or 128).
    tensors.push((
        "token_embd.weight".into(),
        QTensor::quantize(
            &uniform(&mut rng, (vocab, TINY_HIDDEN), 1.0)?,
            GgmlDType::Q8_0,
        )?,
    ));
    let norm = |rng: &mut ChaCha8Rng| -> Result<QTensor> {
        let data: Vec<f32> = (0..TINY_HIDDEN)
            .map(|_| 1.0 + rng.random_range(-0.1f32..0.1))
            .collect();
        Ok(QTensor::quantize(
            &Tensor::from_vec(data, TINY_HIDDEN, &Device::Cpu)?,
            GgmlDType::F32,
        )?)
    };
    tensors.push(("output_norm.weight".into(), norm(&mut rng)?));
    let inv = |n: usize| 1.0 / (n as f32).sqrt();
    for layer in 0..TINY_LAYERS {
        let p = format!("blk.{layer}");
        let kv = KV_HEADS * head_dim;
        for (name, shape) in [
            ("attn_q", (TINY_HIDDEN, TINY_HIDDEN)),
            ("attn_k", (kv, TINY_HIDDEN)),
            ("attn_v", (kv, TINY_HIDDEN)),
            ("attn_output", (TINY_HIDDEN, TINY_HIDDEN)),
            ("ffn_gate", (FFN, TINY_HIDDEN)),
            ("ffn_up", (FFN, TINY_HIDDEN)),
            ("ffn_down", (TINY_HIDDEN, FFN)),
        ] {
            let w = uniform(&mut rng, shape, 2.0 * inv(shape.1))?;
            tensors.push((
                format!("{p}.{name}.weight"),
                QTensor::quantize(&w, GgmlDType::Q4_1)?,
            ));
        }
        tensors.push((format!("{p}.attn_norm.weight"), norm(&mut rng)?));
        tensors.push((format!("{p}.ffn_norm.weight"), norm(&mut rng)?));
    }
    let mut token_types = vec![Value::I32(3); 3];
    token_types.extend(std::iter::repeat_n(Value::I32(1), vocab - 3));
    let metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("llama".into())),
        (
            "general.name",
            Value::String("mrl tiny random llama".into()),
        ),
        ("llama.block_count", Value::U32(TINY_LAYERS as u32)),
        ("llama.context_length", Value::U32(CONTEXT)),
        ("llama.embedding_length", Value::U32(TINY_HIDDEN as u32)),
        ("llama.feed_forward_length", Value::U32(FFN as u32)),
        ("llama.attention.head_count", Value::U32(HEADS as u32)),
        ("llama.attention.head_count_kv", Value::U32(KV_HEADS as u32)),
        ("llama.rope.freq_base", Value::F32(10_000.0)),
        ("llama.rope.dimension_count", Value::U32(head_dim as u32)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("llama.vocab_size", Value::U32(vocab as u32)),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("smollm".into())),
        (
            "tokenizer.ggml.tokens",
            Value::Array(tokens.iter().cloned().map(Value::String).collect()),
        ),
        ("tokenizer.ggml.token_type", Value::Array(token_types)),
        (
            "tokenizer.ggml.merges",
            Value::Array(
                MERGES
                    .iter()
                    .map(|(a, b)| Value::String(format!("{a} {b}")))
                    .collect(),
            ),
        ),
        ("tokenizer.ggml.bos_token_id", Value::U32(1)),
        ("tokenizer.ggml.eos_token_id", Value::U32(2)),
        ("tokenizer.ggml.unknown_token_id", Value::U32(0)),
        ("tokenizer.ggml.padding_token_id", Value::U32(2)),
        ("tokenizer.chat_template", Value::String(TEMPLATE.into())),
    ];
    let metadata_refs: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut bytes = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut bytes, &metadata_refs, &tensor_refs)?;
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    tmp.write_all(bytes.get_ref()).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}
