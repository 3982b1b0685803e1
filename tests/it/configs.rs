//! The shipped `configs/*.toml`: each loads and validates, and the bandit configs train the
//! setting their file name promises.

use std::path::Path;

use mrl::ppo::{TaskKind, TrainConfig};

fn configs_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/configs"))
}

#[test]
fn every_shipped_config_loads_and_validates() {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(configs_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let config = TrainConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
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
    ] {
        assert!(names.iter().any(|n| n == required), "{required} is missing");
    }
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
