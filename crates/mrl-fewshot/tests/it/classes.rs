//! Asset classes in meta-training: `[classes]` tables parsed and checked, the base and each
//! class's embedding meta-learned together deterministically, checkpoints with their
//! embeddings, exact resume, mismatches named.

use std::path::Path;
use std::sync::Arc;

use crate::meta::resumable_text;
use candle_core::Device;
use mrl_fewshot::{
    BenchmarkConfig, ClassEmbedding, ClassEmbeddings, EMBEDDINGS_FILE, Error, MetaTrainConfig,
    Method, evaluate_policy, held_out_class, held_out_tasks, meta_train, meta_train_resume,
    run_benchmark,
};

/// The tiny RL² run of the resume tests (Reptile, 2 tasks × 1 inner step per iteration)
/// over two classes: `equities` reads six features on the `[task]` markets,
/// `crypto` all eleven on AR(1) markets of higher volatility.
fn config(iterations: u64, extra: &str) -> String {
    format!(
        r#"{}
[classes.equities]
features = ["ret_1", "ret_5", "ret_10", "sma_ratio", "volatility", "rsi"]
[classes.crypto]
features = ["ret_1", "ret_5", "ret_10", "sma_ratio", "ema_ratio", "volatility", "momentum",
            "rsi", "macd", "bb_pos", "vol_ratio"]
task = {{ kind = "synthetic-ar1", bars = 80, family = {{ phi_abs = [0.1, 0.5], drift = [0.0, 0.0], volatility = [0.02, 0.03] }} }}
{extra}
"#,
        resumable_text("reptile", iterations)
    )
}

fn parse(text: &str) -> MetaTrainConfig {
    MetaTrainConfig::from_toml_str(text, Path::new("classes.toml")).unwrap()
}

fn parse_err(text: &str) -> Error {
    MetaTrainConfig::from_toml_str(text, Path::new("classes.toml")).unwrap_err()
}

#[test]
fn class_tables_are_parsed_and_bad_ones_named() {
    let c = parse(&config(2, ""));
    assert_eq!(c.classes.len(), 2);
    assert_eq!(c.classes["equities"].features.len(), 6);
    assert!(c.classes["equities"].task.is_none());
    assert!(c.classes["crypto"].task.is_some());

    let bad = config(2, "").replace("\"rsi\"]", "\"carry\"]");
    let err = parse_err(&bad);
    assert!(
        err.to_string()
            .starts_with("class equities: unknown feature \"carry\" (known: ret_1, ret_5,"),
        "{err}"
    );
    let empty = config(2, "[classes.fx]\nfeatures = []");
    assert_eq!(
        parse_err(&empty).to_string(),
        "class fx: empty feature set (name at least one feature)"
    );
    let transformer = config(2, "").replace("kind = \"rl2\"", "kind = \"transformer\"");
    assert!(matches!(
        parse_err(&transformer),
        Error::InvalidConfig {
            field: "agent.kind",
            ..
        }
    ));
    let unknown_key = config(2, "[classes.fx]\nfeatures = [\"rsi\"]\nfeaturez = []");
    assert!(matches!(parse_err(&unknown_key), Error::Toml { .. }));
}

fn files(dir: &Path) -> Vec<Vec<u8>> {
    [
        "model.safetensors",
        "fewshot.json",
        EMBEDDINGS_FILE,
        "embeddings.json",
    ]
    .iter()
    .map(|f| std::fs::read(dir.join("checkpoint").join(f)).unwrap())
    .chain(std::fs::read(dir.join("checkpoint/optimizer.safetensors")).ok())
    .collect()
}

#[test]
fn the_base_and_the_embeddings_are_meta_learned_deterministically_and_resume_exactly() {
    for algorithm in ["reptile", "fomaml"] {
        learned_deterministically_and_resumed_exactly(algorithm);
    }
}

/// [`config`] with the meta-learner `algorithm`.
fn config_of(algorithm: &str, iterations: u64, extra: &str) -> String {
    config(iterations, extra).replace(
        "algorithm = \"reptile\"",
        &format!("algorithm = \"{algorithm}\""),
    )
}

fn learned_deterministically_and_resumed_exactly(algorithm: &str) {
    let c4 = parse(&config_of(algorithm, 4, ""));
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    meta_train(&c4, a.path(), |_| {}).unwrap();
    meta_train(&c4, b.path(), |_| {}).unwrap();
    assert!(
        files(a.path()) == files(b.path()),
        "{algorithm}: same seed, same bytes"
    );

    let loaded = ClassEmbeddings::load(&a.path().join("checkpoint"), &c4.classes).unwrap();
    assert_eq!(loaded.names(), ["crypto", "equities"]);
    for (name, width) in [("crypto", 11), ("equities", 6)] {
        let learned = loaded.get(name).unwrap();
        assert_eq!(learned.vars()[0].dims(), [11, width], "{name}");
        let start = ClassEmbedding::padding(name, learned.features(), &Device::Cpu).unwrap();
        let value = |e: &ClassEmbedding| e.vars()[0].flatten_all().unwrap().to_vec1::<f32>();
        assert_ne!(
            value(learned).unwrap(),
            value(&start).unwrap(),
            "{algorithm} {name}: meta-learned"
        );
    }
    // The composed policy of a class is what `mrl backtest` loads: an ordinary checkpoint.
    let base = mrl_ppo::load_policy(&a.path().join("checkpoint"), &Device::Cpu).unwrap();
    let composed = loaded
        .get("equities")
        .unwrap()
        .composed_policy(&base)
        .unwrap();
    assert_eq!(composed.config(), base.config());

    // 2 iterations, then resume to 4: the bytes of the uninterrupted run.
    let parts = tempfile::tempdir().unwrap();
    meta_train(&parse(&config_of(algorithm, 2, "")), parts.path(), |_| {}).unwrap();
    meta_train_resume(&c4, parts.path(), |_| {}).unwrap();
    assert!(
        files(parts.path()) == files(a.path()),
        "{algorithm}: resume is exact"
    );

    // Resuming with other classes is refused, naming the file.
    let other = parse(&config_of(
        algorithm,
        4,
        "[classes.fx]\nfeatures = [\"rsi\"]",
    ));
    let err = meta_train_resume(&other, parts.path(), |_| {}).unwrap_err();
    assert!(err.to_string().contains("classes.toml"), "{err}");
    // Loading the embeddings for a config whose class reads other features is refused.
    let fewer = config(4, "").replace(", \"rsi\"]", "]");
    let err =
        ClassEmbeddings::load(&a.path().join("checkpoint"), &parse(&fewer).classes).unwrap_err();
    assert!(matches!(err, Error::EmbeddingMismatch { .. }), "{err}");
}

/// The benchmark's tiny config with two classes: `small` (six features, on `[task]`, so the
/// held-out tasks are its) and `wide` (all eleven, AR(1) markets of higher volatility).
fn tiny_classes() -> MetaTrainConfig {
    let parsed = parse(&config(2, ""));
    let mut tiny = crate::benchmark::tiny_config();
    let mut classes = parsed.classes;
    let small = classes.remove("equities").unwrap();
    let wide = classes.remove("crypto").unwrap();
    tiny.classes.insert("small".into(), small);
    tiny.classes.insert("wide".into(), wide);
    tiny
}

#[test]
fn the_meta_embed_row_adapts_through_the_held_out_class_embedding() {
    let config = tiny_classes();
    let bench = BenchmarkConfig {
        methods: vec![Method::Meta, Method::MetaEmbed],
        seeds: vec![1],
        ..crate::benchmark::tiny_bench()
    };
    assert_eq!(held_out_class(&config, &bench).unwrap(), "small");
    let dir = tempfile::tempdir().unwrap();
    let raw = crate::benchmark::run_on(&config, &bench, dir.path());
    let names: Vec<&str> = raw.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(&names[..2], ["meta", "meta_embed"]);
    assert_eq!(
        raw.settings.classes.as_deref(),
        Some(
            "classes small (6 features), wide (11 features); held-out tasks of class small, \
             its embedding frozen at adaptation"
        )
    );
    // K = 0 is the meta-learned base composed with the small class's embedding, as saved.
    let checkpoint = dir.path().join("seed-1/meta_embed/checkpoint");
    let base = mrl_ppo::load_policy(&checkpoint, &Device::Cpu).unwrap();
    let embeddings = ClassEmbeddings::load(&checkpoint, &config.classes).unwrap();
    let composed = embeddings
        .get("small")
        .unwrap()
        .composed_policy(&base)
        .unwrap();
    let tasks = held_out_tasks(&config.train, &bench).unwrap();
    let mut validated = bench.clone();
    validated.validate().unwrap();
    let row = &raw.rows[1];
    assert_eq!(row.cells[0].k, 0);
    for (ti, task) in tasks.iter().enumerate() {
        let m = evaluate_policy(&composed, task, &validated.walk_forward).unwrap();
        assert_eq!(
            row.cells[0].total_return[0][ti],
            Some(m.total_return),
            "{ti}"
        );
    }
    assert!(row.cells[1].total_return[0].iter().all(Option::is_some));
}

#[test]
fn the_held_out_class_must_be_named_by_the_config() {
    let bench = crate::benchmark::tiny_bench();
    let mut config = tiny_classes();
    // Both classes on [task]: ambiguous.
    config.classes.get_mut("wide").unwrap().task = None;
    let err = held_out_class(&config, &bench).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid config: classes = small, wide (the held-out tasks come from [task]: exactly \
         one class must train on it (no task of its own), or name the class in [transfer])"
    );
    config.classes.clear();
    assert!(matches!(
        held_out_class(&config, &bench),
        Err(Error::InvalidConfig {
            field: "classes",
            ..
        })
    ));
    let bench = BenchmarkConfig {
        methods: vec![Method::MetaEmbed],
        ..bench
    };
    let tasks = held_out_tasks(&config.train, &bench).unwrap();
    let dist = Arc::new(
        mrl_ppo::trading_tasks(&config.train.task.kind, &config.train.task.trading).unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let err = run_benchmark(
        &config,
        &bench,
        dist,
        &tasks,
        None,
        None,
        dir.path(),
        |_| {},
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("the meta_embed row needs [classes.NAME] tables"),
        "{err}"
    );
}

#[test]
fn a_class_that_trains_on_a_held_out_asset_is_refused() {
    let multi = |assets: &[&str], held_out: &[&str]| mrl_ppo::TaskKind::MultiAsset {
        data_dir: "data".into(),
        interval: "1h".into(),
        assets: assets.iter().map(|a| a.to_string()).collect(),
        split: mrl_env::AssetSplit {
            held_out: held_out.iter().map(|a| a.to_string()).collect(),
            test_start: None,
        },
    };
    let mut config = tiny_classes();
    config.train.task.kind = multi(&["BTC", "LINK"], &["LINK"]);
    config.classes.get_mut("small").unwrap().task = None;
    let bench = crate::benchmark::tiny_bench();
    assert_eq!(held_out_class(&config, &bench).unwrap(), "small");
    // `wide` reads LINK, which [task] holds out.
    config.classes.get_mut("wide").unwrap().task = Some(multi(&["ETH", "LINK"], &[]));
    let err = held_out_class(&config, &bench).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "invalid config: classes = wide: {} (this class trains on a held-out asset's file; \
             held-out assets must be unseen)",
            Path::new("data").join("LINK_1h.csv").display()
        )
    );
    // Holding LINK out in the class too is fine.
    config.classes.get_mut("wide").unwrap().task = Some(multi(&["ETH", "LINK"], &["LINK"]));
    assert_eq!(held_out_class(&config, &bench).unwrap(), "small");
}
