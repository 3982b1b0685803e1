//! Criterion bench of the embedded SmolLM2-135M-Instruct (Q4_1) on the CPU; needs the file
//! from `scripts/fetch-smollm2`.
//!
//! - `prompt_N_tokens`: one forward pass over the actor's prompt for a synthetic market
//!   (prompt processing; throughput in tokens).
//! - `generate_32_tokens`: greedy generation of 32 tokens after an 8-token prompt (KV cache;
//!   the short prompt's pass is included).
//! - `dpo_step/lora_r8_f32`: one DPO step's forward and backward passes through `LoraLlama`
//!   (f32, rank-8 adapters on q and v) for one pair: a 64-token prompt with two 32-token
//!   responses, the prompt run once as their shared prefix as the loop does
//!   ([`LoraLlama::forward_continuations`]; the reference log-probs are constants here).
//!
//! `benches/round.rs` times a whole round of the loop by phase.

use std::hint::black_box;

use candle_core::{DType, Device, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mrl_data::SyntheticConfig;
use mrl_llm::{
    ContextBuilder, ContextConfig, EmbeddedBackend, FinishReason, GenerateConfig, LoraConfig,
    LoraLlama, Weights, default_model_path, dpo_loss, response_logprob, roles,
};

fn bench_llm(c: &mut Criterion) {
    let path = default_model_path().expect("HOME or MRL_LLM_MODEL is set");
    let mut model = EmbeddedBackend::load(&path, Weights::Quantized)
        .expect("SmolLM2 is fetched (scripts/fetch-smollm2)");
    let market = SyntheticConfig::default()
        .generate(200, 42)
        .expect("default GBM is valid");
    let context = ContextBuilder::new(&market.series, Vec::new(), ContextConfig::default())
        .expect("context builder")
        .context_at(199)
        .expect("context");
    let prompt = model.prompt(&roles::actor_messages(&context));
    let ids = model.tokenizer().encode(&prompt).expect("tokenizes");

    let mut group = c.benchmark_group("llm/cpu/smollm2_q4_1");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ids.len() as u64));
    group.bench_function(format!("prompt_{}_tokens", ids.len()), |b| {
        b.iter(|| model.next_token_logits(black_box(&ids)).expect("forward"))
    });
    let short = model
        .tokenizer()
        .encode("The price of Bitcoin rose because")
        .expect("tokenizes");
    let config = GenerateConfig::greedy(32);
    let probe = model.generate(&short, &config).expect("generates");
    assert_eq!(
        probe.finish,
        FinishReason::Length,
        "the probe must not stop early"
    );
    group.throughput(Throughput::Elements(32));
    group.bench_function("generate_32_tokens", |b| {
        b.iter(|| {
            model
                .generate(black_box(&short), &config)
                .expect("generates")
        })
    });
    group.finish();

    let lora = LoraLlama::load(&path, &LoraConfig::default(), DType::F32).expect("loads");
    // The prompt but its last token is the shared prefix; each tail is that token and a
    // 32-token response.
    let prefix = &ids[..63];
    let chosen: Vec<u32> = [&ids[63..64], &ids[64..96]].concat();
    let rejected: Vec<u32> = [&ids[63..64], &ids[96..128]].concat();
    let reference = Tensor::new(&[-80.0f32], &Device::Cpu).expect("tensor");
    let mut group = c.benchmark_group("llm/cpu/dpo_step");
    group.sample_size(10);
    group.bench_function("lora_r8_f32_pair_96_tokens", |b| {
        b.iter(|| {
            let rows = lora
                .forward_continuations(prefix, &[&chosen, &rejected])
                .expect("forward");
            let lp = |k: usize, tail: &[u32]| {
                response_logprob(&rows[k], tail, 1)
                    .expect("log-prob")
                    .reshape(1)
                    .expect("reshape")
            };
            let out = dpo_loss(
                &lp(0, &chosen),
                &lp(1, &rejected),
                &reference,
                &reference,
                0.1,
            )
            .expect("loss");
            black_box(out.loss.backward().expect("backward"))
        })
    });
    group.finish();
}

criterion_group!(benches, bench_llm);
criterion_main!(benches);
