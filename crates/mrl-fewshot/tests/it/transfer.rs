//! Domain generalisation without real data: meta-training on hourly synthetic assets, the
//! benchmark adapting to daily synthetic assets of another "class" written to a temporary
//! directory; a transfer asset that training reads is refused; the `[transfer]` table parses.

use std::path::Path;

use mrl_data::{BarStyle, Interval, SyntheticConfig};
use mrl_env::AssetSplit;
use mrl_fewshot::{Error, MetaTrainConfig, TransferConfig, held_out_tasks};
use mrl_ppo::TaskKind;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::benchmark::{run_on, tiny_bench, tiny_config};

/// Writes `<dir>/<name>_<suffix>.csv`: `n` GBM bars `interval` apart.
fn write_asset(dir: &Path, name: &str, suffix: &str, interval: Interval, n: usize, seed: u64) {
    let config = SyntheticConfig {
        bars: BarStyle {
            interval,
            ..Default::default()
        },
        ..Default::default()
    };
    let series = config
        .generate_with_rng(n, &mut ChaCha8Rng::seed_from_u64(seed))
        .unwrap()
        .series;
    mrl_data::write_csv(&series, &dir.join(format!("{name}_{suffix}.csv"))).unwrap();
}

/// Hourly H1..H3 (H3 the in-domain held-out asset) and daily D1, D2.
fn two_classes(dir: &Path) -> (MetaTrainConfig, TransferConfig) {
    for (i, name) in ["H1", "H2", "H3"].into_iter().enumerate() {
        write_asset(dir, name, "1h", Interval::HOUR, 300, i as u64);
    }
    for (i, name) in ["D1", "D2"].into_iter().enumerate() {
        write_asset(dir, name, "1d", Interval::DAY, 200, 10 + i as u64);
    }
    let mut config = tiny_config();
    config.train.task.kind = TaskKind::MultiAsset {
        data_dir: dir.to_path_buf(),
        interval: "1h".into(),
        assets: vec!["H1".into(), "H2".into(), "H3".into()],
        split: AssetSplit {
            held_out: vec!["H3".into()],
            test_start: None,
        },
    };
    let transfer = TransferConfig {
        class: "daily".into(),
        data_dir: dir.to_path_buf(),
        interval: "1d".into(),
        assets: vec!["D1".into(), "D2".into()],
    };
    (config, transfer)
}

#[test]
fn the_benchmark_adapts_to_the_other_class_only() {
    let data = tempfile::tempdir().unwrap();
    let (config, transfer) = two_classes(data.path());
    let bench = mrl_fewshot::BenchmarkConfig {
        seeds: vec![1],
        transfer: Some(transfer),
        ..tiny_bench()
    };
    let tasks = held_out_tasks(&config.train, &bench).unwrap();
    let names: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["D1", "D2"], "the other class, not the split's H3");
    assert_eq!(tasks[0].market.len(), 200);
    let out = tempfile::tempdir().unwrap();
    let raw = run_on(&config, &bench, out.path());
    assert_eq!(raw.tasks, ["D1", "D2"]);
    assert!(
        raw.settings
            .held_out
            .starts_with("2 held-out daily assets (1d, another class than the multi-asset"),
        "{}",
        raw.settings.held_out
    );
    let rows: Vec<&str> = raw.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(&rows[..4], ["meta", "pretrain", "scratch", "rl2"]);
    assert!(
        !rows.contains(&"oracle"),
        "real-style assets have no oracle"
    );
    // Every (seed, task) of every K of the adapted methods was evaluated.
    for row in &raw.rows[..3] {
        for cell in &row.cells {
            assert!(cell.total_return.iter().flatten().all(Option::is_some));
        }
    }
    assert_eq!(
        raw.settings.benchmark.transfer.as_ref().unwrap().class,
        "daily"
    );
}

#[test]
fn a_transfer_asset_that_training_reads_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let (config, mut transfer) = two_classes(data.path());
    transfer.interval = "1h".into();
    transfer.assets = vec!["H3".into(), "H1".into()];
    // H3 is held out of training (an unseen asset of the same class): allowed; H1 is not.
    let err = transfer.validate(&config.train).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid config: transfer.assets = H1 (training reads this file too; held-out assets \
         must be unseen)"
    );
    transfer.assets.clear();
    assert!(matches!(
        transfer.validate(&config.train),
        Err(Error::InvalidConfig {
            field: "transfer.assets",
            ..
        })
    ));
}

#[test]
fn the_transfer_table_parses_beside_meta() {
    let text = r#"
seed = 1
[task]
kind = "synthetic-ar1"
bars = 400
[meta]
iterations = 1
[transfer]
class = "equities"
interval = "1d"
assets = ["AAPL", "MSFT"]
"#;
    let config = MetaTrainConfig::from_toml_str(text, Path::new("t.toml")).unwrap();
    let transfer = config.transfer.unwrap();
    assert_eq!(transfer.assets, ["AAPL", "MSFT"]);
    assert_eq!(transfer.data_dir, Path::new("../shared/data"));
    let typo = text.replace("class = ", "asset_class = ");
    assert!(matches!(
        MetaTrainConfig::from_toml_str(&typo, Path::new("t.toml")),
        Err(Error::Toml { .. })
    ));
}
