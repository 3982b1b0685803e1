//! Workspace invariants (rust-analyzer's `tidy.rs` style): crate layering through
//! `cargo metadata`, a `//!` header on every source file, no ignored tests, no real data
//! committed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The layers, bottom first. A crate may depend only on crates of a lower rank.
const LAYERS: [(&str, u32); 8] = [
    ("mrl-data", 1),
    ("mrl-features", 2),
    ("mrl-env", 3),
    ("mrl-agent", 4),
    ("mrl-ppo", 5),
    ("mrl-backtest", 5),
    ("mrl-fewshot", 6),
    ("mrl-llm", 6),
];

/// External crates allowed only in some of our crates.
const RESTRICTED: [(&str, &[&str]); 8] = [
    (
        "candle-core",
        &[
            "mrl-agent",
            "mrl-ppo",
            "mrl-backtest",
            "mrl-fewshot",
            "mrl-llm",
            "mrl",
        ],
    ),
    (
        "candle-nn",
        &["mrl-agent", "mrl-ppo", "mrl-backtest", "mrl-llm", "mrl"],
    ),
    ("polars", &["mrl-data"]),
    ("reqwest", &["mrl-data", "mrl-llm"]),
    ("tokio", &["mrl-data", "mrl-llm"]),
    ("candle-transformers", &["mrl-llm"]),
    ("tokenizers", &["mrl-llm"]),
    // The language-model trader sits on data, features, the env, the agents and the
    // backtester (trained agents trade beside it in its evaluation); only the CLI uses it.
    ("mrl-llm", &["mrl"]),
];

fn metadata() -> serde_json::Value {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

/// (package, dependency, kind) for every dependency of every workspace package.
fn edges(meta: &serde_json::Value) -> Vec<(String, String, String)> {
    let mut edges = Vec::new();
    for pkg in meta["packages"].as_array().expect("packages") {
        let name = pkg["name"].as_str().expect("name").to_string();
        for dep in pkg["dependencies"].as_array().expect("dependencies") {
            let kind = dep["kind"].as_str().unwrap_or("normal").to_string();
            edges.push((
                name.clone(),
                dep["name"].as_str().expect("dep name").to_string(),
                kind,
            ));
        }
    }
    edges
}

fn layering_violations(edges: &[(String, String, String)]) -> Vec<String> {
    let rank: BTreeMap<&str, u32> = LAYERS.into_iter().collect();
    let mut bad = Vec::new();
    for (pkg, dep, kind) in edges {
        if let (Some(&p), Some(&d)) = (rank.get(pkg.as_str()), rank.get(dep.as_str())) {
            // Dev-dependencies may reach sideways (a bench needs the env), never up.
            let ok = if kind == "dev" { d <= p } else { d < p };
            if !ok {
                bad.push(format!("{pkg} -> {dep} ({kind}): {dep} is not below {pkg}"));
            }
        }
        for (external, allowed) in RESTRICTED {
            if dep == external && kind != "dev" && !allowed.contains(&pkg.as_str()) {
                bad.push(format!("{pkg} -> {dep}: only {allowed:?} may use {dep}"));
            }
        }
    }
    bad
}

#[test]
fn crates_depend_only_on_lower_layers() {
    let meta = metadata();
    let edges = edges(&meta);
    let ours: Vec<&str> = LAYERS.iter().map(|(n, _)| *n).collect();
    let members: Vec<String> = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| p["name"].as_str().expect("name").to_string())
        .collect();
    for name in ours {
        assert!(members.iter().any(|m| m == name), "workspace lacks {name}");
    }
    let bad = layering_violations(&edges);
    assert!(bad.is_empty(), "layering violations:\n{}", bad.join("\n"));
}

#[test]
fn layering_check_catches_an_upward_edge() {
    let edges = vec![
        (
            "mrl-data".to_string(),
            "mrl-env".to_string(),
            "normal".to_string(),
        ),
        (
            "mrl-env".to_string(),
            "candle-core".to_string(),
            "normal".to_string(),
        ),
        (
            "mrl-env".to_string(),
            "mrl-agent".to_string(),
            "normal".to_string(),
        ),
        (
            "mrl-ppo".to_string(),
            "mrl-env".to_string(),
            "normal".to_string(),
        ),
        // Few-shot adaptation sits above PPO: PPO may not reach up to it.
        (
            "mrl-ppo".to_string(),
            "mrl-fewshot".to_string(),
            "normal".to_string(),
        ),
        (
            "mrl-fewshot".to_string(),
            "mrl-ppo".to_string(),
            "normal".to_string(),
        ),
    ];
    let bad = layering_violations(&edges);
    assert_eq!(bad.len(), 4, "{bad:?}");
    assert!(bad[3].starts_with("mrl-ppo -> mrl-fewshot"), "{bad:?}");
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn sources() -> Vec<PathBuf> {
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in ["src", "crates", "tests", "benches", "examples"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 10, "found only {} source files", files.len());
    files
}

#[test]
fn every_source_file_has_a_module_header() {
    let missing: Vec<String> = sources()
        .into_iter()
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a `//!` header:\n{}",
        missing.join("\n")
    );
}

#[test]
fn no_ignored_tests_or_placeholders() {
    let needles = [
        concat!("#[", "ignore"),
        concat!("todo", "!("),
        concat!("unimplemented", "!("),
        concat!("dbg", "!("),
    ];
    let mut hits = Vec::new();
    for path in sources() {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for (i, line) in text.lines().enumerate() {
            if needles.iter().any(|n| line.contains(n)) {
                hits.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(
        hits.is_empty(),
        "placeholders or ignored tests:\n{}",
        hits.join("\n")
    );
}

#[test]
fn no_real_market_data_is_committed() {
    let out = Command::new("git")
        .args(["ls-files"])
        .current_dir(workspace_root())
        .output();
    // Outside a git checkout (a packaged crate) there is nothing to check.
    let Ok(out) = out else { return };
    let files = String::from_utf8_lossy(&out.stdout);
    let real: Vec<&str> = files
        .lines()
        .filter(|f| {
            let name = f.rsplit('/').next().unwrap_or(f);
            (name.contains("USDT_1h") || name.ends_with("_1d.csv"))
                && !f.starts_with("fixtures/synthetic")
        })
        .collect();
    assert!(
        real.is_empty(),
        "files that look like ../shared/data: {real:?}"
    );
}
