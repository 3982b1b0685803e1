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
