//! `mrl::study`: a tiny two-seed study writes every documented file, pools what the seeds
//! say, is reproducible byte for byte, and names bad settings.

use std::path::Path;

use mrl::agent::PolicyKind;
use mrl::ppo::TrainConfig;
use mrl::study::{Error, StudyConfig, StudyReport, run_study};
use serde_json::Value;

/// A tiny synthetic-regime config: 2 iterations of 4 trials of two 40-bar episodes, GRU 8.
pub(crate) const TINY: &str = r#"
seed = 1
iterations = 2
n_envs = 4
checkpoint_every = 10

[agent]
kind = "rl2"
hidden = 8

[ppo]
epochs = 1
minibatch_trials = 2

[optim]
lr = 1e-3

[task]
kind = "synthetic"
bars = 300
episodes_per_trial = 2
trading = { max_steps = 40, cost_rate = 0.001, reward_scale = 100.0 }

[task.randomization]
kinds = ["regime"]
"#;

fn tiny_study(seeds: Vec<u64>) -> StudyConfig {
    let train = TrainConfig::from_toml_str(TINY, Path::new("tiny.toml")).unwrap();
    let mut config = StudyConfig::new(train, seeds);
    config.held_out.markets = 2;
    config.held_out.bars = 300;
    config.sampled_runs = 2;
    config.resamples = 200;
    config
}

fn csv_rows(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().split(',').map(String::from).collect();
    let rows = lines
        .map(|l| l.split(',').map(String::from).collect())
        .collect();
    (header, rows)
}

#[test]
fn a_two_seed_study_writes_pooled_reproducible_results() {
    let config = tiny_study(vec![3, 5]);
    let dir = tempfile::tempdir().unwrap();
    let mut events = 0usize;
    let report = run_study(&config, dir.path(), |_| events += 1).unwrap();
    // 2 seeds × 2 agents × (start, 2 iterations, done) + 2 × 2 markets × 2 modes + markets
    // + 2 seed ends.
    assert_eq!(events, 2 * 2 * 4 + 2 * 2 * 2 + 1 + 2);

    for file in [
        "study.json",
        "per_seed.csv",
        "pooled.csv",
        "comparisons.csv",
        "study.md",
        "seed-3/equity.csv",
        "seed-5/rl2/train_log.jsonl",
        "seed-5/mlp/checkpoint/model.safetensors",
    ] {
        assert!(dir.path().join(file).exists(), "{file} missing");
    }
    #[cfg(feature = "plot")]
    for stem in ["adaptation", "training", "equity-seed-3", "equity-seed-5"] {
        for ext in ["png", "svg"] {
            let path = dir.path().join(format!("{stem}.{ext}"));
            assert!(
                std::fs::metadata(&path).unwrap().len() > 1000,
                "{stem}.{ext}"
            );
        }
    }

    // study.json: the documented keys, and it parses back into the report.
    let text = std::fs::read_to_string(dir.path().join("study.json")).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    for key in [
        "settings",
        "per_seed",
        "pooled",
        "best_rule",
        "comparisons",
        "adaptation",
        "training",
        "verdict",
        "deployment",
    ] {
        assert!(json.get(key).is_some(), "study.json lacks {key}");
    }
    let parsed: StudyReport = serde_json::from_str(&text).unwrap();
    assert_eq!(parsed, report);
    assert_eq!(report.settings.seeds, vec![3, 5]);
    assert_eq!(report.settings.markets, vec!["regime-0", "regime-1"]);
    assert_eq!(report.per_seed.len(), 2);
    for seed in &report.per_seed {
        assert_eq!(seed.markets.len(), 2);
        let run = &seed.training["rl2"];
        assert_eq!(run.iterations, 2);
        assert_eq!(run.diagnostics.len(), 2);
        assert_eq!(run.diagnostics[1].iteration, 1);
        assert!(run.diagnostics.iter().all(|d| d.entropy > 0.0));
        for market in &seed.markets {
            for key in [
                "rl2",
                "rl2_sampled",
                "mlp",
                "mlp_sampled",
                "buy_and_hold",
                "flat",
                "random",
            ] {
                assert!(market.policies.contains_key(key), "{key} missing");
            }
            // Trial of two episodes: one adaptation episode, then the evaluation window.
            assert_eq!(market.policies["rl2"].adaptation_curve.len(), 2);
        }
    }

    // Pooled figures are the means of the per-seed means, and those of the markets.
    for (key, pooled) in &report.pooled {
        let seeds: Vec<_> = report.per_seed.iter().map(|s| s.policies[key]).collect();
        let mean_return = seeds.iter().map(|f| f.total_return).sum::<f64>() / 2.0;
        assert!(
            (pooled.total_return.mean - mean_return).abs() < 1e-12,
            "{key}"
        );
        let sharpes: Vec<f64> = seeds.iter().filter_map(|f| f.sharpe).collect();
        match pooled.sharpe {
            Some(s) => {
                assert_eq!(s.n, sharpes.len(), "{key}");
                let mean = sharpes.iter().sum::<f64>() / sharpes.len() as f64;
                assert!((s.mean - mean).abs() < 1e-12, "{key}");
            }
            None => assert!(sharpes.is_empty(), "{key}"),
        }
    }
    let seed = &report.per_seed[0];
    let market_mean = seed
        .markets
        .iter()
        .map(|m| m.policies["rl2"].total_return)
        .sum::<f64>()
        / 2.0;
    assert!((seed.policies["rl2"].total_return - market_mean).abs() < 1e-12);
    // Flat never trades: every return 0 and its Sharpe undefined everywhere.
    assert_eq!(report.pooled["flat"].total_return.mean, 0.0);
    assert_eq!(report.pooled["flat"].sharpe, None);

    // Comparisons: RL² against the MLP first, over 2 × 2 pairs.
    let first = &report.comparisons[0];
    assert_eq!((first.a.as_str(), first.b.as_str()), ("rl2", "mlp"));
    assert_eq!(first.pairs_total, 4);
    assert!(first.pairs <= 4);
    if let Some(i) = first.interval {
        assert!(i.lo <= i.mean && i.mean <= i.hi, "{i:?}");
        assert_eq!(i.confidence, 0.95);
    }
    assert!(
        report
            .verdict
            .starts_with("RL² (greedy) on mean held-out Sharpe")
    );
    assert!(report.verdict.contains("the MLP"), "{}", report.verdict);
    assert!(
        report.verdict.contains("buy-and-hold"),
        "{}",
        report.verdict
    );
    assert!(["greedy", "sampled"].contains(&report.deployment.mode.as_str()));

    // CSV shapes: one per-seed row per seed and policy, one pooled row per policy.
    let (header, rows) = csv_rows(&dir.path().join("per_seed.csv"));
    assert_eq!(
        header,
        [
            "seed",
            "policy",
            "markets",
            "sharpe_markets",
            "mean_sharpe",
            "mean_total_return",
            "mean_max_drawdown"
        ]
    );
    assert_eq!(rows.len(), 2 * report.pooled.len());
    assert!(rows.iter().all(|r| r.len() == header.len()));
    let (header, rows) = csv_rows(&dir.path().join("pooled.csv"));
    assert_eq!(header.len(), 11);
    assert_eq!(rows.len(), report.pooled.len());
    assert_eq!(rows[0][0], "rl2");
    let (_, rows) = csv_rows(&dir.path().join("comparisons.csv"));
    assert_eq!(rows.len(), report.comparisons.len());

    let md = std::fs::read_to_string(dir.path().join("study.md")).unwrap();
    for needle in [
        "## Verdict",
        &report.verdict,
        &report.deployment.line,
        "| rl2 (greedy) |",
        "| rl2 (sampled) |",
        "## Per seed",
        "![adaptation curve](adaptation.png)",
    ] {
        assert!(md.contains(needle), "study.md lacks {needle}");
    }

    // The same seeds give the same bytes.
    let again = tempfile::tempdir().unwrap();
    run_study(&config, again.path(), |_| {}).unwrap();
    for file in ["study.json", "per_seed.csv", "pooled.csv", "study.md"] {
        assert_eq!(
            std::fs::read(dir.path().join(file)).unwrap(),
            std::fs::read(again.path().join(file)).unwrap(),
            "{file} differs between two identical studies"
        );
    }

    // An existing run is an error without resume, and reused as it is with it.
    let err = run_study(&config, dir.path(), |_| {}).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Train {
                seed: 3,
                agent: "rl2",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("checkpoint exists"), "{err}");
    let mut resumed = config.clone();
    resumed.resume = true;
    let report_resumed = run_study(&resumed, dir.path(), |_| {}).unwrap();
    assert_eq!(report_resumed, report);
}

#[test]
fn bad_seeds_and_tasks_are_named_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let err = run_study(&tiny_study(vec![]), &out, |_| {}).unwrap_err();
    assert_eq!(err.to_string(), "no seeds: give at least one training seed");
    let err = run_study(&tiny_study(vec![4, 2, 4]), &out, |_| {}).unwrap_err();
    assert_eq!(
        err.to_string(),
        "seed 4 is given twice: every seed must be distinct"
    );
    let mut few_bars = tiny_study(vec![1]);
    few_bars.held_out.bars = 50;
    let err = run_study(&few_bars, &out, |_| {}).unwrap_err();
    assert!(err.to_string().contains("test_bars = 50"), "{err}");
    let mut twice = tiny_study(vec![1]);
    twice.others = vec![PolicyKind::Transformer, PolicyKind::Transformer];
    let err = run_study(&twice, &out, |_| {}).unwrap_err();
    assert!(err.to_string().contains("others = transformer"), "{err}");
    twice.others = vec![PolicyKind::Mlp];
    let err = run_study(&twice, &out, |_| {}).unwrap_err();
    assert!(err.to_string().contains("others = mlp"), "{err}");
    let bandits = StudyConfig::new(TrainConfig::default(), vec![1]);
    let err = run_study(&bandits, &out, |_| {}).unwrap_err();
    assert!(err.to_string().contains("`bandits`"), "{err}");
    assert!(!out.exists(), "nothing is written for a bad study");
}

#[test]
fn other_agents_train_beside_rl2_and_are_compared_with_it() {
    let mut config = tiny_study(vec![2]);
    config.others = vec![PolicyKind::Transformer, PolicyKind::TaskInference];
    // Regime markets have two hidden parameters per bar (the state's drift and volatility).
    config.train.agent.task_inference.latent = 2;
    let dir = tempfile::tempdir().unwrap();
    let report = run_study(&config, dir.path(), |_| {}).unwrap();
    for key in ["transformer", "task_inference"] {
        assert!(
            dir.path()
                .join(format!("seed-2/{key}/checkpoint/model.safetensors"))
                .exists()
        );
        assert!(report.per_seed[0].training.contains_key(key));
        for market in &report.per_seed[0].markets {
            assert!(
                market.policies.contains_key(key),
                "{key} on {}",
                market.name
            );
            assert!(market.policies.contains_key(&format!("{key}_sampled")));
        }
    }
    let keys: Vec<&str> = report.others.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["transformer", "task_inference"]);
    let transformer = &report.others[0];
    assert_eq!(
        (
            transformer.against_rl2.b.as_str(),
            transformer.against_mlp.b.as_str()
        ),
        ("rl2", "mlp")
    );
    // Two held-out markets of one seed, each with a Sharpe ratio or not.
    assert_eq!(transformer.against_rl2.pairs_total, 2);
    assert!(
        transformer
            .line
            .starts_with("the Transformer (greedy) on mean held-out Sharpe"),
        "{}",
        transformer.line
    );
    assert!(transformer.line.contains("RL²") && transformer.line.contains("the MLP"));
    assert!(
        report.others[1]
            .adaptation
            .line
            .contains("the task-inference agent")
    );
    let markdown = std::fs::read_to_string(dir.path().join("study.md")).unwrap();
    assert!(markdown.contains(&transformer.line));
}
