//! Class embeddings: identity and zero padding reduce to the base exactly, the pull-back
//! equals autograd, per-class widths, determinism by seed, byte-exact files, named errors.

use std::collections::{BTreeMap, HashMap};

use candle_core::{Device, Tensor, Var};
use mrl_agent::{Policy, PolicyKind};
use mrl_features::{FEATURE_NAMES, Feature};
use mrl_fewshot::{
    ClassConfig, ClassEmbedding, ClassEmbeddings, EMBEDDINGS_FILE, EmbeddingTraining, Error,
    InnerConfig, adapt_class, fomaml_gradient, fomaml_gradient_classes, reptile_step,
    reptile_step_classes,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::common::{flat, policy, setup, task};

const SIX: [&str; 6] = ["ret_1", "ret_5", "ret_10", "sma_ratio", "volatility", "rsi"];

fn features(names: &[&str]) -> Vec<Feature> {
    names.iter().map(|n| n.parse().unwrap()).collect()
}

fn class(names: &[&str]) -> ClassConfig {
    ClassConfig {
        features: names.iter().map(|s| s.to_string()).collect(),
        task: None,
    }
}

/// A `(B, T, in)` input tensor with values in [−2, 2], drawn from `seed`.
fn inputs(policy: &Policy, seed: u64) -> Vec<f32> {
    let n = 2 * 5 * policy.config().input_dim();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random::<f32>() * 4.0 - 2.0).collect()
}

fn outputs(policy: &Policy, x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let x = Tensor::from_slice(x, (2, 5, policy.config().input_dim()), &Device::Cpu).unwrap();
    let out = policy.forward_seq(&x, None).unwrap();
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    (flat(&out.logits), flat(&out.values))
}

#[test]
fn the_identity_embedding_is_the_base_bit_for_bit() {
    for kind in [PolicyKind::Rl2, PolicyKind::Mlp] {
        let base = policy(kind, 3);
        let all = ClassEmbedding::padding("all", &Feature::ALL, &Device::Cpu).unwrap();
        let composed = all.composed_policy(&base).unwrap();
        assert_eq!(
            composed.to_safetensors().unwrap(),
            base.to_safetensors().unwrap(),
            "{kind:?}"
        );
        let x = inputs(&base, 1);
        assert_eq!(outputs(&composed, &x), outputs(&base, &x), "{kind:?}");
    }
}

#[test]
fn zero_padding_is_the_base_with_the_other_features_at_zero() {
    for kind in [PolicyKind::Rl2, PolicyKind::Mlp] {
        let base = policy(kind, 4);
        let six = features(&SIX);
        let padded = ClassEmbedding::padding("equities", &six, &Device::Cpu).unwrap();
        let composed = padded.composed_policy(&base).unwrap();
        let x = inputs(&base, 2);
        let width = base.config().input_dim();
        let mut zeroed = x.clone();
        for row in zeroed.chunks_mut(width) {
            for f in Feature::ALL.iter().filter(|f| !six.contains(f)) {
                row[f.index()] = 0.0;
            }
        }
        // The composed policy never reads the five other features ...
        assert_eq!(
            outputs(&composed, &x),
            outputs(&composed, &zeroed),
            "{kind:?}"
        );
        // ... and reads the class's six as the base does.
        assert_eq!(outputs(&composed, &x), outputs(&base, &zeroed), "{kind:?}");
        assert_ne!(outputs(&base, &x), outputs(&base, &zeroed), "{kind:?}");
    }
}

#[test]
fn the_pullback_equals_autograd_through_the_composition() {
    let base = policy(PolicyKind::Rl2, 5);
    let six = features(&SIX);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut random = |shape: (usize, usize)| {
        let v: Vec<f32> = (0..shape.0 * shape.1)
            .map(|_| rng.random::<f32>() - 0.5)
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    };
    let e = ClassEmbedding::from_tensors(
        "equities",
        &six,
        &random((11, 6)),
        &random((11, 1)).squeeze(1).unwrap(),
    )
    .unwrap();
    let (h, input) = (8, base.config().input_dim());
    // L = Σ W_eff ⊙ R + Σ b_eff ⊙ r: its gradients on the composed weights are R and r.
    let (r_w, r_b) = (random((h, input)), random((h, 1)).squeeze(1).unwrap());
    let w = Var::from_tensor(&base.tensors()["encoder.0.weight"]).unwrap();
    let b = Var::from_tensor(&base.tensors()["encoder.0.bias"]).unwrap();
    let mut tensors: HashMap<String, Tensor> = base.tensors();
    tensors.insert("encoder.0.weight".into(), w.as_tensor().clone());
    tensors.insert("encoder.0.bias".into(), b.as_tensor().clone());
    let composed = e.compose(&base, &tensors).unwrap();
    let loss = ((&composed["encoder.0.weight"] * &r_w)
        .unwrap()
        .sum_all()
        .unwrap()
        + (&composed["encoder.0.bias"] * &r_b)
            .unwrap()
            .sum_all()
            .unwrap())
    .unwrap();
    let store = loss.backward().unwrap();
    let grads = vec![
        ("encoder.0.weight".to_string(), r_w.clone()),
        ("encoder.0.bias".to_string(), r_b.clone()),
        ("gru.weight_hh_l0".to_string(), r_b.clone()),
    ];
    let pulled = e.pullback(&base, &tensors, &grads).unwrap();
    let (base_grads, embedding_grads) = (pulled.base, pulled.embedding);
    let close = |a: &Tensor, b: &Tensor| {
        let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{x} vs {y}");
        }
    };
    close(&base_grads[0].1, store.get(w.as_tensor()).unwrap());
    close(&base_grads[1].1, store.get(b.as_tensor()).unwrap());
    assert_eq!(
        base_grads[2].0, "gru.weight_hh_l0",
        "other gradients pass through"
    );
    let vars = e.vars();
    close(&embedding_grads[0], store.get(vars[0].as_tensor()).unwrap());
    close(&embedding_grads[1], store.get(vars[1].as_tensor()).unwrap());
    assert_eq!(embedding_grads[0].dims(), [11, 6]);
}

fn embedding_bytes(e: &ClassEmbedding) -> Vec<Vec<f32>> {
    e.vars()
        .iter()
        .map(|v| v.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect()
}

#[test]
fn adaptation_through_an_embedding_honours_the_class_width_and_the_mode() {
    let base = policy(PolicyKind::Rl2, 6);
    let six = features(&SIX);
    let start = ClassEmbedding::padding("equities", &six, &Device::Cpu).unwrap();
    let inner = InnerConfig {
        steps: 3,
        n_envs: 4,
        lr: 1e-2,
        ..Default::default()
    };
    let run = |training, seed| {
        adapt_class(&base, &start, training, task(3), &inner, &setup(0.5), seed).unwrap()
    };
    let adapted = run(EmbeddingTraining::Adapted, 11);
    let trained = adapted.embedding.as_ref().unwrap();
    assert_eq!(trained.vars()[0].dims(), [11, 6]);
    assert_ne!(embedding_bytes(trained), embedding_bytes(&start));
    // The composed policy's first layer reads exactly nothing of the other five features.
    let w: Vec<Vec<f32>> = adapted.policy.tensors()["encoder.0.weight"]
        .to_vec2()
        .unwrap();
    for f in Feature::ALL.iter().filter(|f| !six.contains(f)) {
        assert!(w.iter().all(|row| row[f.index()] == 0.0), "{f} is read");
    }
    // The policy is the unembedded weights composed with the trained embedding.
    let recomposed = trained
        .composed_policy(adapted.unembedded.as_ref().unwrap())
        .unwrap();
    assert_eq!(
        recomposed.to_safetensors().unwrap(),
        adapted.policy.to_safetensors().unwrap()
    );
    // Same seed, same bits; another seed, other bits.
    let again = run(EmbeddingTraining::Adapted, 11);
    let other = run(EmbeddingTraining::Adapted, 12);
    let bytes = |p: &Policy| p.to_safetensors().unwrap();
    assert_eq!(bytes(&again.policy), bytes(&adapted.policy));
    assert_eq!(
        embedding_bytes(again.embedding.as_ref().unwrap()),
        embedding_bytes(trained)
    );
    assert_ne!(bytes(&other.policy), bytes(&adapted.policy));
    // Frozen: the embedding is the one given, the base's weights still move.
    let frozen = run(EmbeddingTraining::Frozen, 11);
    assert_eq!(
        embedding_bytes(frozen.embedding.as_ref().unwrap()),
        embedding_bytes(&start)
    );
    assert_ne!(flat(frozen.unembedded.as_ref().unwrap()), flat(&base));
    assert_eq!(
        embedding_bytes(&start),
        embedding_bytes(&ClassEmbedding::padding("equities", &six, &Device::Cpu).unwrap())
    );
}

#[test]
fn embedding_files_round_trip_byte_exactly_and_mismatches_are_named() {
    let base = policy(PolicyKind::Rl2, 7);
    let mut classes = BTreeMap::new();
    classes.insert("crypto".to_string(), class(&FEATURE_NAMES));
    classes.insert("equities".to_string(), class(&SIX));
    let mut set = ClassEmbeddings::padding(&classes, &Device::Cpu).unwrap();
    // A trained (non-trivial) equities embedding.
    let inner = InnerConfig {
        steps: 2,
        n_envs: 4,
        lr: 1e-2,
        ..Default::default()
    };
    let adapted = adapt_class(
        &base,
        set.get("equities").unwrap(),
        EmbeddingTraining::Adapted,
        task(5),
        &inner,
        &setup(0.5),
        1,
    )
    .unwrap();
    set.insert(adapted.embedding.unwrap());
    let dir = tempfile::tempdir().unwrap();
    set.save(dir.path()).unwrap();
    let bytes = std::fs::read(dir.path().join(EMBEDDINGS_FILE)).unwrap();
    let loaded = ClassEmbeddings::load(dir.path(), &classes).unwrap();
    assert_eq!(loaded.to_safetensors().unwrap(), bytes);
    assert_eq!(loaded.names(), ["crypto", "equities"]);
    assert_eq!(loaded.get("equities").unwrap().vars()[0].dims(), [11, 6]);
    assert_eq!(loaded.get("crypto").unwrap().vars()[0].dims(), [11, 11]);
    let sidecar = std::fs::read_to_string(dir.path().join("embeddings.json")).unwrap();
    assert!(sidecar.contains("\"volatility\""), "{sidecar}");

    // The config names other features for a saved class.
    let mut changed = classes.clone();
    changed.insert("equities".to_string(), class(&SIX[..5]));
    let err = ClassEmbeddings::load(dir.path(), &changed).unwrap_err();
    assert!(matches!(err, Error::EmbeddingMismatch { .. }));
    assert!(
        err.to_string().contains(
            "class equities: features [ret_1, ret_5, ret_10, sma_ratio, volatility, rsi] in \
             the checkpoint, [ret_1, ret_5, ret_10, sma_ratio, volatility] in the config"
        ),
        "{err}"
    );
    // The config lacks a saved class.
    let mut fewer = classes.clone();
    fewer.remove("crypto");
    let err = ClassEmbeddings::load(dir.path(), &fewer).unwrap_err();
    assert!(
        err.to_string()
            .contains("class crypto: in the checkpoint, not in the config's [classes]"),
        "{err}"
    );
    // A new class gets zero padding, to be trained in the inner loop.
    let mut more = classes.clone();
    more.insert("fx".to_string(), class(&["ret_1", "rsi"]));
    let loaded = ClassEmbeddings::load(dir.path(), &more).unwrap();
    let fx = loaded.get("fx").unwrap();
    assert!(loaded.is_fresh("fx") && !loaded.is_fresh("equities"));
    assert_eq!(
        embedding_bytes(fx),
        embedding_bytes(
            &ClassEmbedding::padding("fx", &features(&["ret_1", "rsi"]), &Device::Cpu).unwrap()
        )
    );
    // No file at all.
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        ClassEmbeddings::load(empty.path(), &classes),
        Err(Error::BadEmbeddingFile { .. })
    ));
}

#[test]
fn fomaml_through_the_identity_embedding_gives_the_plain_base_gradient() {
    let base = policy(PolicyKind::Rl2, 8);
    let mut classes = BTreeMap::new();
    classes.insert("all".to_string(), class(&FEATURE_NAMES));
    let embeddings = ClassEmbeddings::padding(&classes, &Device::Cpu).unwrap();
    let inner = InnerConfig {
        steps: 0,
        n_envs: 4,
        ..Default::default()
    };
    let tasks = [task(3), task(4)];
    let (plain, _, post) = fomaml_gradient(&base, &tasks, &[5, 6], &inner, &setup(0.5)).unwrap();
    let (with, _, post_with) = fomaml_gradient_classes(
        &base,
        &embeddings,
        &tasks,
        &["all", "all"],
        &[5, 6],
        &inner,
        &setup(0.5),
    )
    .unwrap();
    assert_eq!(post, post_with);
    let values = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(with.len(), plain.len() + 2, "the base's, then E and e");
    for (a, b) in plain.iter().zip(&with) {
        assert_eq!(values(a), values(b));
    }
    assert_eq!(with[plain.len()].dims(), [11, 11]);
    assert!(values(&with[plain.len()]).iter().any(|g| *g != 0.0));
}

#[test]
fn reptile_through_the_identity_embedding_moves_the_base_as_plain_reptile() {
    let mut classes = BTreeMap::new();
    classes.insert("all".to_string(), class(&FEATURE_NAMES));
    let inner = InnerConfig {
        steps: 1,
        n_envs: 4,
        lr: 0.05,
        optimizer: mrl_fewshot::InnerOptimizer::Sgd,
        ..Default::default()
    };
    let tasks = [task(3), task(4)];
    // No clipping: the embedding's gradients would otherwise change the base's clip scale.
    let setup = setup(1e9);
    let plain = policy(PolicyKind::Rl2, 9);
    reptile_step(&plain, &tasks, &[5, 6], &inner, &setup, 0.5).unwrap();
    let with = policy(PolicyKind::Rl2, 9);
    let embeddings = ClassEmbeddings::padding(&classes, &Device::Cpu).unwrap();
    let before = embedding_bytes(embeddings.get("all").unwrap());
    let classes = ["all", "all"];
    reptile_step_classes(
        &with,
        &embeddings,
        &tasks,
        &classes,
        &[5, 6],
        &inner,
        &setup,
        0.5,
    )
    .unwrap();
    // One SGD step through the identity: the base's gradient and so its step are plain
    // Reptile's, bit for bit; the embedding moved too.
    assert_eq!(flat(&with), flat(&plain));
    assert_ne!(embedding_bytes(embeddings.get("all").unwrap()), before);
}
