//! The shipped `configs/*.toml`: each loads and validates, the bandit configs train the
//! setting their file name promises, and the task-distribution configs hold the distribution
//! their header describes with the PPO settings of the config they derive from.

use std::path::Path;

use mrl::env::{ActionSpace, MarketOracle, Split, TaskDistribution};
use mrl::ppo::{TaskKind, TrainConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn configs_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/configs"))
}

#[test]
fn every_shipped_config_loads_and_validates() {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(configs_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            // Meta-training configs (`mrl meta-train`) are a train config plus `[meta]`.
            let text = std::fs::read_to_string(&path).unwrap();
            let table: toml::Table = toml::from_str(&text).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("llm-") {
                // The language-model trader's configs (`mrl llm train`) belong to mrl-llm.
                mrl_llm::TrainConfig::from_toml_file(&path).unwrap_or_else(|e| panic!("{e}"));
                names.push(name);
                continue;
            }
            let config = if table.contains_key("meta") {
                mrl_fewshot::MetaTrainConfig::load(&path)
                    .unwrap_or_else(|e| panic!("{e}"))
                    .train
            } else {
                TrainConfig::load(&path).unwrap_or_else(|e| panic!("{e}"))
            };
            config
                .validate()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            names.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    for required in [
        "bandits-k5-n10.toml",
        "bandits-k5-n100.toml",
        "bandits-k10-n10.toml",
        "bandits-k10-n100.toml",
        "synthetic-ar1.toml",
        "crypto-multi-asset.toml",
        "crypto-regime-windows.toml",
        "crypto-timeframes.toml",
        "synthetic-mixture.toml",
        "synthetic-ar1-sizing.toml",
        "synthetic-regimes.toml",
        "fewshot-reptile-ar1.toml",
        "fewshot-fomaml-ar1.toml",
        "fewshot-reptile-lora-ar1.toml",
        "llm-quick.toml",
        "llm-experiment.toml",
    ] {
        assert!(names.iter().any(|n| n == required), "{required} is missing");
    }
}

/// Loads a shipped config's text as its command would: the language-model trader's,
/// a meta-training config (a train config plus `[meta]`) or a train config.
fn load_text(name: &str, text: &str) -> Result<(), String> {
    let path = Path::new(name);
    let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    if name.starts_with("llm-") {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        return mrl_llm::TrainConfig::from_toml_file(&file)
            .map(drop)
            .map_err(|e| e.to_string());
    }
    if table.contains_key("meta") {
        mrl_fewshot::MetaTrainConfig::from_toml_str(text, path)
            .map(drop)
            .map_err(|e| e.to_string())
    } else {
        TrainConfig::from_toml_str(text, path)
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// The dotted paths of every table in `table` (inline tables and arrays of tables
/// included), `prefix` first.
fn table_paths(table: &toml::Table, prefix: &[String], out: &mut Vec<Vec<String>>) {
    out.push(prefix.to_vec());
    for (key, value) in table {
        let mut path = prefix.to_vec();
        path.push(key.clone());
        match value {
            toml::Value::Table(inner) => table_paths(inner, &path, out),
            toml::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let toml::Value::Table(inner) = item {
                        let mut at = path.clone();
                        at.push(i.to_string());
                        table_paths(inner, &at, out);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The table at `path` (array entries by index).
fn table_at<'a>(table: &'a mut toml::Table, path: &[String]) -> &'a mut toml::Table {
    let Some((key, rest)) = path.split_first() else {
        return table;
    };
    match table.get_mut(key.as_str()) {
        Some(toml::Value::Table(inner)) => table_at(inner, rest),
        Some(toml::Value::Array(items)) => {
            let (index, rest) = rest.split_first().expect("an array entry's index");
            match &mut items[index.parse::<usize>().unwrap()] {
                toml::Value::Table(inner) => table_at(inner, rest),
                other => panic!("{key}[{index}] is not a table: {other}"),
            }
        }
        other => panic!("{key} is not a table: {other:?}"),
    }
}

/// A misspelt key anywhere in a shipped config is an error, never silently ignored (a typo in
/// `[task.split]` once let training run on the test period): a key is added to every table of
/// every config in turn, and each must fail to load, naming the key.
#[test]
fn a_misspelt_key_in_any_table_of_a_shipped_config_is_an_error() {
    const TYPO: &str = "zz_misspelt";
    let mut silent = Vec::new();
    let mut checked = 0;
    for entry in std::fs::read_dir(configs_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let table: toml::Table = toml::from_str(&text).unwrap();
        let mut paths = Vec::new();
        table_paths(&table, &[], &mut paths);
        for at in paths {
            let mut changed = table.clone();
            table_at(&mut changed, &at).insert(TYPO.into(), toml::Value::Integer(1));
            let changed = toml::to_string(&changed).unwrap();
            checked += 1;
            match load_text(&name, &changed) {
                Err(e) if e.contains(TYPO) => {}
                Err(e) => silent.push(format!(
                    "{name} [{}]: error without the key: {e}",
                    at.join(".")
                )),
                Ok(()) => silent.push(format!("{name} [{}]: accepted", at.join("."))),
            }
        }
    }
    assert!(checked > 100, "only {checked} tables checked");
    assert!(
        silent.is_empty(),
        "{} tables:\n{}",
        silent.len(),
        silent.join("\n")
    );
}

#[test]
fn bandit_configs_match_their_names() {
    for (k, n) in [(5, 10), (5, 100), (10, 10), (10, 100)] {
        let path = configs_dir().join(format!("bandits-k{k}-n{n}.toml"));
        let config = TrainConfig::load(&path).unwrap();
        let TaskKind::Bandits {
            arms,
            pulls,
            observe_time,
        } = config.task.kind
        else {
            panic!("{} is not a bandit config", path.display());
        };
        assert_eq!((arms, pulls), (k, n), "{}", path.display());
        // Only k = 10, n = 100 adds t/n to the paper's input (README, bandit reproduction).
        assert_eq!(observe_time, (k, n) == (10, 100), "{}", path.display());
        assert_eq!(
            config.task.episodes_per_trial, 1,
            "one episode of n pulls per trial"
        );
    }
}

fn load(name: &str) -> TrainConfig {
    TrainConfig::load(&configs_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The run settings (everything but the task) of `a` and `b` agree: a config that derives
/// from another does not retune it.
fn assert_same_run_settings(a: &TrainConfig, b: &TrainConfig, what: &str) {
    assert_eq!(
        (
            a.seed,
            a.iterations,
            a.n_envs,
            &a.agent,
            &a.ppo,
            &a.gae,
            &a.optim
        ),
        (
            b.seed,
            b.iterations,
            b.n_envs,
            &b.agent,
            &b.ppo,
            &b.gae,
            &b.optim
        ),
        "{what}"
    );
    assert_eq!(a.task.trading.max_steps, b.task.trading.max_steps, "{what}");
    assert_eq!(a.task.trading.cost_rate, b.task.trading.cost_rate, "{what}");
    assert_eq!(
        a.task.episodes_per_trial, b.task.episodes_per_trial,
        "{what}"
    );
}

#[test]
fn real_data_distribution_configs_hold_what_their_headers_say() {
    let crypto = load("crypto-multi-asset.toml");
    let TaskKind::MultiAsset { split, .. } = &crypto.task.kind else {
        panic!("crypto-multi-asset.toml is not multi-asset");
    };
    // 2023-01-01 00:00 UTC.
    let test_start = 1_672_531_200_000;

    let windows = load("crypto-regime-windows.toml");
    assert_same_run_settings(&windows, &crypto, "crypto-regime-windows.toml");
    let TaskKind::RegimeWindows {
        assets,
        test_start: start,
        regime,
        ..
    } = &windows.task.kind
    else {
        panic!("crypto-regime-windows.toml is not regime-windows");
    };
    assert_eq!(*start, test_start);
    assert_eq!(
        (assets.len(), regime.window, regime.labels.len()),
        (8, 400, 4)
    );
    for held_out in &split.held_out {
        assert!(
            !assets.contains(held_out),
            "{held_out} is held out of crypto runs"
        );
    }

    let timeframes = load("crypto-timeframes.toml");
    assert_same_run_settings(&timeframes, &crypto, "crypto-timeframes.toml");
    let TaskKind::Timeframes {
        asset,
        intervals,
        test_start: start,
        ..
    } = &timeframes.task.kind
    else {
        panic!("crypto-timeframes.toml is not timeframes");
    };
    assert_eq!((asset.as_str(), *start), ("BTCUSDT", test_start));
    let ms: Vec<i64> = intervals
        .iter()
        .map(|i| mrl::ppo::parse_interval(i).unwrap().millis())
        .collect();
    assert_eq!(ms, [3_600_000, 14_400_000, 86_400_000]);
}

#[test]
fn synthetic_distribution_configs_build_and_every_task_has_an_oracle() {
    let ar1 = load("synthetic-ar1.toml");
    let sizing = load("synthetic-ar1-sizing.toml");
    assert_same_run_settings(&sizing, &ar1, "synthetic-ar1-sizing.toml");
    assert_eq!(sizing.task.kind, ar1.task.kind);
    assert_eq!(sizing.task.trading.actions, ActionSpace::SIZING);

    let mixture = load("synthetic-mixture.toml");
    assert_same_run_settings(&mixture, &ar1, "synthetic-mixture.toml");
    let TaskKind::Mixture { components } = &mixture.task.kind else {
        panic!("synthetic-mixture.toml is not a mixture");
    };
    let kinds: Vec<(&str, f64)> = components
        .iter()
        .map(|c| (c.kind.name(), c.weight))
        .collect();
    assert_eq!(kinds, [("synthetic-ar1", 0.5), ("synthetic", 0.5)]);
    assert_eq!(
        components[0].kind, ar1.task.kind,
        "the AR(1) family of synthetic-ar1.toml"
    );

    for (config, n_actions) in [(&sizing, 4), (&mixture, 3)] {
        let dist = mrl::ppo::trading_tasks(&config.task.kind, &config.task.trading).unwrap();
        assert_eq!(dist.n_actions(), n_actions);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..8 {
            let task = dist.sample(Split::Test, &mut rng).unwrap();
            assert_eq!(task.task_info().split, Split::Test);
            assert!(
                MarketOracle::for_task(&task).is_some(),
                "{}: no oracle",
                task.task_info().name
            );
        }
    }
}

/// Tables chosen by a `kind` (the trading actions and reward, the LLM trader's sampling)
/// refuse a misspelt key and a parameter of another kind, field-less kinds included (serde
/// alone ignores extra keys beside a field-less variant's tag), and still read every kind.
#[test]
fn kind_tables_refuse_misspelt_and_misplaced_keys() {
    let text = std::fs::read_to_string(configs_dir().join("synthetic-ar1-sizing.toml")).unwrap();
    let sizing = "actions = { kind = \"sizing\", position_step = 0.25 }";
    assert!(text.contains(sizing));
    let with = |replacement: &str| {
        TrainConfig::from_toml_str(&text.replace(sizing, replacement), Path::new("x.toml"))
            .map(drop)
            .map_err(|e| e.to_string())
    };
    for good in [
        "actions = { kind = \"target\" }",
        "actions = { kind = \"sizing\", position_step = 0.5 }",
        "reward = { kind = \"net_return\" }",
        "reward = { kind = \"differential_sharpe\" }",
        "reward = { kind = \"differential_sharpe\", eta = 0.02, initial_std = 0.01 }",
        "reward = { kind = \"mean_variance\", risk_aversion = 2.0 }",
        "reward = { kind = \"drawdown_penalty\", penalty = 1.0 }",
    ] {
        with(good).unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    for (bad, named) in [
        (
            "actions = { kind = \"target\", position_stepp = 0.25 }",
            "position_stepp",
        ),
        (
            "actions = { kind = \"target\", position_step = 0.25 }",
            "position_step",
        ),
        ("actions = { kind = \"sizing\" }", "position_step"),
        ("reward = { kind = \"net_return\", eta = 0.5 }", "eta"),
        (
            "reward = { kind = \"net_return\", penalty = 3.0 }",
            "penalty",
        ),
        ("reward = { kind = \"mean_variance\", eta = 0.5 }", "eta"),
        (
            "reward = { kind = \"drawdown_penalty\", penality = 1.0 }",
            "penality",
        ),
    ] {
        let err = with(bad).expect_err(bad);
        assert!(err.contains(named), "{bad}: {err}");
    }
    let llm = std::fs::read_to_string(configs_dir().join("llm-quick.toml")).unwrap();
    let top_p = "[sampling]\nkind = \"top_p\"\ntemperature = 0.8\ntop_p = 0.95\n";
    assert!(llm.contains(top_p));
    for (sampling, named) in [
        ("[sampling]\nkind = \"greedy\"\n", None),
        (
            "[sampling]\nkind = \"greedy\"\ntemprature = 0.8\n",
            Some("temprature"),
        ),
        (
            "[sampling]\nkind = \"greedy\"\ntemperature = 0.8\n",
            Some("temperature"),
        ),
        (
            "[sampling]\nkind = \"top_p\"\ntemperature = 0.8\n",
            Some("top_p"),
        ),
    ] {
        let result = load_text("llm-quick.toml", &llm.replace(top_p, sampling));
        match named {
            None => result.unwrap_or_else(|e| panic!("{sampling}: {e}")),
            Some(named) => {
                let err = result.expect_err(sampling);
                assert!(err.contains(named), "{sampling}: {err}");
            }
        }
    }
}
