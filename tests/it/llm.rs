//! `mrl llm ask` end to end on the tiny random model (written by the test) and on a server
//! address where nothing listens.

use std::net::TcpListener;
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

/// Runs `mrl` and checks that it succeeded; its standard output.
fn mrl_ok(args: &[&str]) -> String {
    let out = mrl(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn bars() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/synthetic/gbm_1h.csv")
        .display()
        .to_string()
}

#[test]
fn ask_runs_the_actor_on_the_embedded_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    mrl_llm::write_tiny_model(&model, 0).unwrap();
    let model = model.display().to_string();
    let args = [
        "llm",
        "ask",
        "--data",
        &bars(),
        "--bar",
        "60",
        "--model",
        &model,
        "--max-new-tokens",
        "6",
    ];
    let out = mrl(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("decision at the close of bar 60"),
        "{stdout}"
    );
    assert!(stdout.contains("reply (Length)"), "{stdout}");
    // The tiny model's noise is no JSON: a counted failure, not a crash.
    assert!(stdout.contains("prediction: unparseable reply"), "{stdout}");
    assert!(stdout.contains("generated 6 at"), "{stdout}");
    // Greedy: the same reply twice (the timing line aside).
    let without_timing = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with("tokens:"))
            .map(str::to_string)
            .collect()
    };
    let again = mrl(&args);
    // The f32 weights run the same command.
    let f32 = mrl(&[&args[..], &["--f32"]].concat());
    assert!(
        f32.status.success(),
        "{}",
        String::from_utf8_lossy(&f32.stderr)
    );
    assert!(String::from_utf8_lossy(&f32.stdout).contains("generated 6 at"));
    assert_eq!(
        without_timing(&String::from_utf8_lossy(&again.stdout)),
        without_timing(&stdout)
    );
}

#[test]
fn ask_names_the_problem_when_the_model_or_server_is_missing() {
    let out = mrl(&[
        "llm",
        "ask",
        "--data",
        &bars(),
        "--model",
        "/nonexistent/model.gguf",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("fetch-smollm2"), "{stderr}");

    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/v1");
    let out = mrl(&["llm", "ask", "--data", &bars(), "--server", &url]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot connect"), "{stderr}");
}

#[test]
fn train_then_eval_on_the_tiny_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    mrl_llm::write_tiny_model(&model, 1).unwrap();
    let model = model.display().to_string();
    let config = dir.path().join("llm.toml");
    std::fs::write(
        &config,
        "rounds = 1\ncontexts = 1\ncandidates = 2\njudgments = 2\nrationale_tokens = 2\n\
         [context]\nreturns_window = 3\nregime_window = 10\nmax_news = 0\n\
         [dpo]\nepochs = 1\n\
         [market]\nn_markets = 1\nn_bars = 60\nseed = 1\n\
         [eval]\nmarket_seed = 50\ndecisions = 3\nvalidation_decisions = 2\n",
    )
    .unwrap();
    let run = dir.path().join("run");
    let (config, run_arg) = (config.display().to_string(), run.display().to_string());
    let train = [
        "llm", "train", "--config", &config, "--out", &run_arg, "--model", &model,
    ];
    let out = mrl(&train);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("round 1: actor pairs"), "{stdout}");
    // The start line says which weights generate (the config's default: f32), the round
    // line how many replies each role needed repaired.
    assert!(
        stdout.contains("(generation dequantised to f32, DPO in f32; -v logs each phase)"),
        "{stdout}"
    );
    assert!(stdout.contains("meta 0/"), "{stdout}");
    assert!(stdout.contains(" (repaired "), "{stdout}");
    // The validation before and after the round, in the round's line and the curve.
    assert!(stdout.contains("; validation Sharpe"), "{stdout}");
    assert!(
        stdout.contains("validation (2 decisions):\n  round 0: Sharpe"),
        "{stdout}"
    );
    assert!(stdout.contains("\n  round 1: Sharpe"), "{stdout}");
    assert!(run.join("validation-base.json").is_file());
    assert!(run.join("round-0001/actor.safetensors").is_file());
    assert!(run.join("rounds.csv").is_file());
    // A second run into the same directory needs --resume.
    let again = mrl(&train);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));

    let eval_dir = dir.path().join("eval");
    let eval_arg = eval_dir.display().to_string();
    let eval = [
        "llm",
        "eval",
        "--adapter",
        &run_arg,
        "--out",
        &eval_arg,
        "--model",
        &model,
    ];
    mrl_ok(&eval);
    let table = std::fs::read_to_string(eval_dir.join("eval.md")).unwrap();
    assert!(
        table.starts_with("synthetic-50: decision bars 42–44"),
        "{table}"
    );
    // Constrained decoding: the tiny model's answers all parse.
    assert!(table.contains("| base (round 0) | 3 | 0 |"), "{table}");
    assert!(table.contains("| round 0001 | 3 | 0 |"), "{table}");
    assert!(table.contains("| buy_and_hold | 3 | – |"), "{table}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(eval_dir.join("eval.json")).unwrap()).unwrap();
    assert_eq!(report["rows"].as_array().unwrap().len(), 2 + 6);
    let decisions = std::fs::read_to_string(eval_dir.join("decisions.jsonl")).unwrap();
    assert_eq!(decisions.lines().count(), 2 * 3);
    let first: serde_json::Value = serde_json::from_str(decisions.lines().next().unwrap()).unwrap();
    assert_eq!(first["policy"], "base (round 0)");
    assert_eq!(first["decision"]["bar"], 42);
    // A bar file of the user's through the same command.
    let out = mrl(&[
        "llm",
        "eval",
        "--adapter",
        &format!("{run_arg}/round-0001"),
        "--data",
        &bars(),
        "--decisions",
        "2",
        "--out",
        &eval_arg,
        "--model",
        &model,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(eval_dir.join("eval.json")).unwrap()).unwrap();
    assert_eq!(report["rows"][1]["decisions"], 2);

    // Trained agents on the same decision bars: tiny RL² and MLP runs (trials of 3
    // episodes of 10 bars; the bar file's test period leaves room for the adaptation).
    let (rl2, mlp) = super::cli::tiny_trading_runs(dir.path());
    let (rl2, mlp) = (rl2.display().to_string(), mlp.display().to_string());
    mrl_ok(&[
        "llm",
        "eval",
        "--adapter",
        &run_arg,
        "--data",
        &bars(),
        "--decisions",
        "3",
        "--out",
        &eval_arg,
        "--model",
        &model,
        "--agent",
        &rl2,
        "--rl-checkpoint",
        &mlp,
    ]);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(eval_dir.join("eval.json")).unwrap()).unwrap();
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2 + 2 + 6);
    assert_eq!(rows[2]["name"], "rl2 (run-rl2)");
    assert_eq!(rows[3]["name"], "mlp (run-mlp)");
    for row in &rows[2..4] {
        assert_eq!(row["decisions"], 3);
        assert!(row["parse_failures"].is_null() && row["mae_pct"].is_null());
    }
    let table = std::fs::read_to_string(eval_dir.join("eval.md")).unwrap();
    assert!(table.contains("| rl2 (run-rl2) | 3 | – |"), "{table}");
    // A missing run directory is named.
    let missing = dir.path().join("no-such-run").display().to_string();
    let out = mrl(&[&eval[..], &["--agent", &missing]].concat());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no-such-run") && stderr.contains("does not exist"),
        "{stderr}"
    );
}
