//! `mrl meta-train` → `mrl adapt` → `mrl backtest` end to end, and `mrl eval fewshot`, on a
//! tiny network and short synthetic markets (seconds in the debug profile).

use std::path::Path;
use std::process::{Command, Output};

fn mrl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mrl"))
        .arg("-q")
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the mrl binary runs")
}

fn ok(args: &[&str]) -> String {
    let out = mrl(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "mrl {args:?} failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const CONFIG: &str = r#"
seed = 3
n_envs = 4
[agent]
kind = "rl2"
hidden = 8
[task]
kind = "synthetic-ar1"
bars = 200
episodes_per_trial = 1
trading = { max_steps = 50, cost_rate = 0.001, reward_scale = 100.0 }
[normalize]
inputs = "fixed"
returns = true
[meta]
algorithm = "reptile"
iterations = 2
meta_batch = 2
[meta.inner]
steps = 2
n_envs = 2
[meta.inner.adapter]
rank = 2
"#;

fn s(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

#[test]
fn meta_train_then_adapt_then_backtest() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("meta.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let run = dir.path().join("run");
    let out = ok(&["meta-train", "--config", s(&config), "--out", s(&run)]);
    assert!(
        out.starts_with("reptile meta-trained 2 iterations"),
        "{out}"
    );
    let data = dir.path().join("new.csv");
    ok(&[
        "data",
        "synth",
        "--kind",
        "ar1",
        "--bars",
        "600",
        "--seed",
        "4",
        "--out",
        s(&data),
    ]);
    let adapted = |name: &str, seed: &str| {
        let out_dir = dir.path().join(name);
        let args = [
            "adapt",
            "--checkpoint",
            s(&run),
            "--data",
            s(&data),
            "--steps",
            "3",
            "--bars",
            "120",
            "--seed",
            seed,
            "--out",
            s(&out_dir),
        ];
        let printed = ok(&args);
        assert!(printed.contains("first 120 of 600 bars"), "{printed}");
        out_dir
    };
    let (a, b, c) = (adapted("a", "1"), adapted("b", "1"), adapted("c", "2"));
    let weights = |d: &Path| std::fs::read(d.join("checkpoint/model.safetensors")).unwrap();
    assert_eq!(weights(&a), weights(&b), "same seed, same adapted weights");
    assert_ne!(weights(&a), weights(&c));
    // The run's [meta.inner.adapter] made it an adapter run: the file sits beside the policy.
    assert!(a.join("adapter.safetensors").is_file() && a.join("adapter.json").is_file());
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("adapt.json")).unwrap()).unwrap();
    assert_eq!(report["bars"], 120);
    assert_eq!(report["trace"].as_array().unwrap().len(), 3);
    // The adapted run directory is what mrl backtest reads, on the bars after the window.
    let json = ok(&[
        "backtest",
        "--checkpoint",
        s(&a),
        "--data",
        s(&data),
        "--test-fraction",
        "0.75",
        "--json",
    ]);
    let backtest: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(backtest.is_object());
    // A window longer than the file is refused with the numbers.
    let too_long = mrl(&[
        "adapt",
        "--checkpoint",
        s(&run),
        "--data",
        s(&data),
        "--bars",
        "700",
        "--out",
        s(&dir.path().join("d")),
    ]);
    let stderr = String::from_utf8_lossy(&too_long.stderr);
    assert!(!too_long.status.success());
    assert!(
        stderr.contains("window of 700 bars is longer than") && stderr.contains("(600 bars)"),
        "{stderr}"
    );
}

#[test]
fn eval_fewshot_writes_its_report_deterministically_and_names_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("meta.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let run = |out: &Path, ks: &str, extra: &[&str]| {
        let mut args = vec![
            "eval",
            "fewshot",
            "--config",
            s(&config),
            "--seeds",
            "1,2",
            "--ks",
            ks,
            "--tasks",
            "1",
            "--adaptation-bars",
            "120",
            "--eval-bars",
            "100",
            "--resamples",
            "50",
            "--out",
            s(out),
        ];
        args.extend_from_slice(extra);
        mrl(&args)
    };
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for out in [&a, &b] {
        let done = run(out, "0,2", &[]);
        assert!(
            done.status.success(),
            "{}",
            String::from_utf8_lossy(&done.stderr)
        );
    }
    for file in [
        "fewshot.json",
        "fewshot.md",
        "fewshot.csv",
        "fewshot.png",
        "fewshot.svg",
    ] {
        assert!(a.join(file).is_file(), "{file}");
    }
    let json = std::fs::read(a.join("fewshot.json")).unwrap();
    assert_eq!(json, std::fs::read(b.join("fewshot.json")).unwrap());
    let report: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(report["format"], "mrl-fewshot-benchmark");
    let names: Vec<&str> = report["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        &names[..5],
        ["meta", "pretrain", "scratch", "rl2", "oracle"]
    );
    // Bad input fails before any work, naming the value.
    let cases: [(&str, &[&str], &str); 3] = [
        (
            "",
            &[],
            "ks = [] (give at least one number of adaptation steps)",
        ),
        (
            "0",
            &["--methods", "meta,maml"],
            "methods = maml (unknown method",
        ),
        ("0", &[], "holds a benchmark already"),
    ];
    for (ks, extra, message) in cases {
        let failed = run(&a, ks, extra);
        let stderr = String::from_utf8_lossy(&failed.stderr);
        assert!(
            !failed.status.success() && stderr.contains(message),
            "{stderr}"
        );
    }
}

/// Issue case: `mrl adapt --steps 0` printed "mean trial return of the inner rollouts: NaN
/// first, NaN last". It says that no inner step ran; adapt.json keeps null returns.
#[test]
fn adapt_with_no_step_says_so_instead_of_printing_nan() {
    let dir = tempfile::tempdir().unwrap();
    let (run, _) = crate::cli::tiny_trading_runs(dir.path());
    let data = dir.path().join("new.csv");
    ok(&[
        "data",
        "synth",
        "--kind",
        "ar1",
        "--bars",
        "400",
        "--seed",
        "5",
        "--out",
        s(&data),
    ]);
    let out = dir.path().join("adapted");
    let printed = ok(&[
        "adapt",
        "--checkpoint",
        s(&run),
        "--data",
        s(&data),
        "--steps",
        "0",
        "--bars",
        "120",
        "--out",
        s(&out),
    ]);
    assert!(
        printed.contains("no inner step ran (--steps 0), so no rollout return"),
        "{printed}"
    );
    assert!(!printed.contains("NaN"), "{printed}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("adapt.json")).unwrap()).unwrap();
    assert!(report["first_rollout_return"].is_null(), "{report}");
    assert_eq!(report["trace"].as_array().map(Vec::len), Some(0));
}
