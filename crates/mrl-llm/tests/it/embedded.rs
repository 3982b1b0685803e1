//! The embedded backend on the tiny random model the tests write for themselves.

use std::path::PathBuf;

use mrl_llm::{
    Backend, Direction, EmbeddedBackend, Error, FinishReason, GenerateConfig, Message, Sampling,
    Weights, argmax, tiny_vocabulary, write_tiny_model,
};
use proptest::prelude::*;

/// Writes the tiny model once per test into a fresh directory.
fn tiny(seed: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tiny.gguf");
    write_tiny_model(&path, seed).expect("tiny model");
    (dir, path)
}

fn load(seed: u64, weights: Weights) -> (tempfile::TempDir, EmbeddedBackend) {
    let (dir, path) = tiny(seed);
    let model = EmbeddedBackend::load(&path, weights).expect("loads");
    (dir, model)
}

#[test]
fn the_tiny_model_is_reproducible_from_its_seed() {
    let (_a, pa) = tiny(3);
    let (_b, pb) = tiny(3);
    let (_c, pc) = tiny(4);
    let read = |p: &PathBuf| std::fs::read(p).unwrap();
    assert_eq!(read(&pa), read(&pb));
    assert_ne!(read(&pa), read(&pc));
}

#[test]
fn tokenizer_reads_the_vocabulary_merges_and_control_tokens() {
    let (_dir, model) = load(0, Weights::Quantized);
    let tok = model.tokenizer();
    assert_eq!(tok.vocab_size(), tiny_vocabulary().len());
    assert_eq!(tok.vocab_size(), 3 + 256 + 8);
    let id = |t: &str| tok.token_id(t).unwrap();
    // "Ġthe" is the merge of "Ġt" and "he"; digits split one by one (the smollm rule); the
    // control tokens are matched whole.
    let ids = tok.encode("<|im_start|>the the 42").unwrap();
    assert_eq!(
        ids,
        vec![1, id("t"), id("he"), id("Ġthe"), id("Ġ"), id("4"), id("2")]
    );
    assert_eq!(tok.decode(&ids).unwrap(), "the the 42");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn tokenizer_round_trips_any_text(text in "\\PC{0,40}") {
        let (_dir, model) = load(0, Weights::Quantized);
        let tok = model.tokenizer();
        // Text without the control markers decodes back to itself, byte for byte.
        prop_assume!(!text.contains("<|"));
        let ids = tok.encode(&text).unwrap();
        prop_assert_eq!(tok.decode(&ids).unwrap(), text);
    }
}

#[test]
fn greedy_generation_is_exact_and_respects_the_budget() {
    let (_dir, mut model) = load(1, Weights::Quantized);
    let prompt = model.tokenizer().encode("the price rose").unwrap();
    let config = GenerateConfig::greedy(12);
    let first = model.generate(&prompt, &config).unwrap();
    let second = model.generate(&prompt, &config).unwrap();
    assert_eq!(first, second);
    assert!(first.ids.len() <= 12);
    if first.finish == FinishReason::Length {
        assert_eq!(first.ids.len(), 12);
    }
    // Each greedy token is the argmax of a fresh full forward pass over the sequence so
    // far: the KV-cached incremental decoding equals recomputation from scratch.
    let mut seq = prompt.clone();
    for &token in &first.ids {
        let logits = model.next_token_logits(&seq).unwrap();
        assert_eq!(argmax(&logits), token, "after {} tokens", seq.len());
        seq.push(token);
    }
    let timing = model.last_timing().expect("timing recorded");
    assert_eq!(timing.prompt_tokens, prompt.len());
}

#[test]
fn cached_logits_equal_recomputed_logits() {
    let (_dir, mut model) = load(2, Weights::DequantizedF32);
    let prompt = model.tokenizer().encode("in the").unwrap();
    let config = GenerateConfig::greedy(4);
    let generated = model.generate(&prompt, &config).unwrap();
    assert_eq!(
        generated.ids.len(),
        4,
        "the tiny model rarely stops this early"
    );
    let mut seq = prompt.clone();
    seq.extend(&generated.ids[..3]);
    let full = model.next_token_logits(&seq).unwrap();
    assert_eq!(argmax(&full), generated.ids[3]);
}

#[test]
fn seeded_sampling_is_reproducible_and_seed_dependent() {
    let (_dir, mut model) = load(0, Weights::Quantized);
    let messages = [Message::user("what next?")];
    let config = |seed| GenerateConfig {
        max_new_tokens: 24,
        sampling: Sampling::TopP {
            temperature: 1.5,
            top_p: 0.95,
        },
        seed,
    };
    let a = model.chat(&messages, &config(11)).unwrap();
    let b = model.chat(&messages, &config(11)).unwrap();
    assert_eq!(a, b);
    let others: Vec<String> = (12..16)
        .map(|s| model.chat(&messages, &config(s)).unwrap().text)
        .collect();
    assert!(others.iter().any(|t| *t != a.text), "{a:?} {others:?}");
    assert!(a.completion_tokens <= 24);
    assert!(a.prompt_tokens > 20, "the system turn is in the prompt");
}

#[test]
fn quantized_and_f32_weights_agree_on_the_tiny_model() {
    let (_a, mut q) = load(5, Weights::Quantized);
    let (_b, mut f) = load(5, Weights::DequantizedF32);
    let ids = q.tokenizer().encode("the answer is").unwrap();
    let lq = q.next_token_logits(&ids).unwrap();
    let lf = f.next_token_logits(&ids).unwrap();
    assert_eq!(lq.len(), 267);
    let max_diff = lq
        .iter()
        .zip(&lf)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    let spread =
        lf.iter().copied().fold(f32::MIN, f32::max) - lf.iter().copied().fold(f32::MAX, f32::min);
    // Only the 8-bit activation blocks of the quantised kernels differ.
    assert!(max_diff < 0.05 * spread, "{max_diff} vs spread {spread}");
    assert!(max_diff > 0.0, "the two paths are distinct");
}

#[test]
fn prompts_that_do_not_fit_are_an_error() {
    let (_dir, mut model) = load(0, Weights::Quantized);
    assert_eq!(model.context_len(), 2048);
    let prompt = vec![5u32; 2040];
    match model.generate(&prompt, &GenerateConfig::greedy(20)) {
        Err(Error::ContextOverflow {
            prompt_tokens: 2040,
            max_new_tokens: 20,
            context: 2048,
        }) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        model.next_token_logits(&[]),
        Err(Error::ContextOverflow { .. })
    ));
    assert!(matches!(
        model.generate(&[5], &GenerateConfig::greedy(0)),
        Err(Error::InvalidSetting { .. })
    ));
}

#[test]
fn missing_and_malformed_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.gguf");
    match EmbeddedBackend::load(&missing, Weights::Quantized) {
        Err(err @ Error::ModelNotFound { .. }) => {
            let text = err.to_string();
            assert!(
                text.contains("none.gguf") && text.contains("fetch-smollm2"),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"not a gguf file at all").unwrap();
    match EmbeddedBackend::load(&junk, Weights::Quantized) {
        Err(Error::BadModel { path, .. }) => assert_eq!(path, junk),
        other => panic!("{other:?}"),
    }
}

#[test]
fn batched_f32_replies_equal_separate_calls() {
    // The f32 decoder advances the replies of one prompt together; replies of different
    // lengths (a hot temperature: other directions, other number lengths) drop out of the
    // batch at different steps, and each still equals a call of its own.
    let (_dir, mut model) = load(2, Weights::DequantizedF32);
    let prompt = model
        .tokenizer()
        .encode(&model.prompt(&[Message::user("next bar?")]))
        .unwrap();
    let template = mrl_llm::Template::prediction(6);
    let configs: Vec<GenerateConfig> = (0..6)
        .map(|seed| GenerateConfig {
            seed,
            sampling: Sampling::TopP {
                temperature: 3.0,
                top_p: 1.0,
            },
            ..GenerateConfig::default()
        })
        .collect();
    let many = model
        .generate_constrained_many(&prompt, &template, &configs)
        .unwrap();
    let lengths: Vec<usize> = many.iter().map(|g| g.ids.len()).collect();
    assert!(
        lengths.iter().any(|&n| n != lengths[0]),
        "replies of one length test no ragged batch: {lengths:?}"
    );
    for (config, generated) in configs.iter().zip(&many) {
        let alone = model
            .generate_constrained(&prompt, &template, config)
            .unwrap();
        assert_eq!(&alone, generated);
        let text = model.tokenizer().decode(&generated.ids).unwrap();
        assert!(mrl_llm::parse_prediction(&text).is_ok(), "{text}");
    }
}

#[test]
fn batched_prompts_share_their_prefix_and_equal_separate_calls() {
    // Three prompts that share their first turn (as the judge's prompts about one context
    // do) and differ at the end; two replies each, all advanced together.
    let (_dir, mut model) = load(4, Weights::DequantizedF32);
    let prompts: Vec<Vec<u32>> = ["up 1%", "down 2%", "flat"]
        .iter()
        .map(|answer| {
            let text = model.prompt(&[Message::user(format!("bars: 1 2 3 4\nanswer: {answer}"))]);
            model.tokenizer().encode(&text).unwrap()
        })
        .collect();
    let shared = prompts[0]
        .iter()
        .zip(&prompts[1])
        .take_while(|(a, b)| a == b)
        .count();
    assert!(shared > 10, "the prompts share {shared} tokens");
    let configs: Vec<Vec<GenerateConfig>> = (0..3u64)
        .map(|p| {
            (0..2)
                .map(|k| GenerateConfig {
                    seed: 10 * p + k,
                    sampling: Sampling::TopP {
                        temperature: 2.0,
                        top_p: 1.0,
                    },
                    ..GenerateConfig::default()
                })
                .collect()
        })
        .collect();
    let template = mrl_llm::Template::judgment(4);
    let prompt_refs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
    let config_refs: Vec<&[GenerateConfig]> = configs.iter().map(Vec::as_slice).collect();
    let batch = model
        .generate_constrained_batch(&prompt_refs, &template, &config_refs)
        .unwrap();
    assert_eq!(batch.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 2]);
    for ((prompt, configs), replies) in prompts.iter().zip(&configs).zip(&batch) {
        let alone = model
            .generate_constrained_many(prompt, &template, configs)
            .unwrap();
        assert_eq!(&alone, replies);
        for reply in replies {
            let text = model.tokenizer().decode(&reply.ids).unwrap();
            assert!(mrl_llm::parse_judgment(&text).is_ok(), "{text}");
        }
    }
    // One list of configs per prompt.
    match model.generate_constrained_batch(&prompt_refs, &template, &config_refs[..2]) {
        Err(Error::InvalidSetting {
            field: "configs", ..
        }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn constrained_replies_follow_their_template_and_share_the_prompt_pass() {
    let (_dir, mut model) = load(2, Weights::Quantized);
    let prompt = model
        .tokenizer()
        .encode(&model.prompt(&[Message::user("next bar?")]))
        .unwrap();
    let template = mrl_llm::Template::prediction(4);
    let configs: Vec<GenerateConfig> = (0..3)
        .map(|seed| GenerateConfig {
            seed,
            ..GenerateConfig::default()
        })
        .collect();
    let many = model
        .generate_constrained_many(&prompt, &template, &configs)
        .unwrap();
    assert_eq!(many.len(), 3);
    for (config, generated) in configs.iter().zip(&many) {
        // The same reply as a call of its own (its own prompt pass).
        let alone = model
            .generate_constrained(&prompt, &template, config)
            .unwrap();
        assert_eq!(&alone, generated);
        assert_eq!(generated.finish, FinishReason::Stop);
        let text = model.tokenizer().decode(&generated.ids).unwrap();
        assert!(text.starts_with("{\"return_pct\": "), "{text}");
        assert!(text.ends_with("\"}"), "{text}");
        let parsed = mrl_llm::parse_prediction(&text).unwrap();
        assert!(parsed.repairs.is_empty(), "{text}: {:?}", parsed.repairs);
        assert!(parsed.value.return_pct.abs() < 100.0);
        assert!((-1.0..=1.0).contains(&parsed.value.position));
    }
    // The position's sign follows the direction; a hot temperature so that a few seeds
    // see every direction.
    let configs: Vec<GenerateConfig> = (0..12)
        .map(|seed| GenerateConfig {
            seed,
            sampling: Sampling::TopP {
                temperature: 5.0,
                top_p: 1.0,
            },
            ..GenerateConfig::default()
        })
        .collect();
    let mut seen = [0usize; 3];
    for generated in model
        .generate_constrained_many(&prompt, &mrl_llm::Template::prediction(1), &configs)
        .unwrap()
    {
        let text = model.tokenizer().decode(&generated.ids).unwrap();
        let p = mrl_llm::parse_prediction(&text).unwrap().value;
        match p.direction {
            Direction::Up => {
                seen[0] += 1;
                assert!(p.position >= 0.0, "{text}");
            }
            Direction::Down => {
                seen[1] += 1;
                assert!(p.position <= 0.0, "{text}");
                assert!(text.contains("\"position\": -"), "{text}");
            }
            Direction::Flat => {
                seen[2] += 1;
                assert!(text.contains("\"position\": 0,"), "{text}");
            }
        }
    }
    assert!(seen.iter().all(|&k| k > 0), "directions seen {seen:?}");
    // A signed slot needs a sign for the option its choice picked.
    let orphan = mrl_llm::Template {
        parts: vec![mrl_llm::Slot::SignedBy {
            max_tokens: 2,
            max_int: 1,
            signs: vec![mrl_llm::Sign::Plus],
        }],
    };
    let err = model
        .generate_constrained(&prompt, &orphan, &GenerateConfig::greedy(4))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidSetting {
                field: "signed_by",
                ..
            }
        ),
        "{err}"
    );
    // Greedy judgments and verdicts parse as well.
    let judgment = model
        .generate_constrained(
            &prompt,
            &mrl_llm::Template::judgment(3),
            &GenerateConfig::greedy(1),
        )
        .unwrap();
    let text = model.tokenizer().decode(&judgment.ids).unwrap();
    let score = mrl_llm::parse_judgment(&text).unwrap().value.score;
    assert!((0.0..=10.0).contains(&score), "{text}");
    let verdict = model
        .generate_constrained(
            &prompt,
            &mrl_llm::Template::meta_judgment(3),
            &GenerateConfig::greedy(1),
        )
        .unwrap();
    let text = model.tokenizer().decode(&verdict.ids).unwrap();
    assert!(mrl_llm::parse_meta_judgment(&text).is_ok(), "{text}");
}
