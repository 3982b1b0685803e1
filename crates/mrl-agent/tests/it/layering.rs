//! The crate's internal layering: numeric kernels never import the networks, the rollout
//! workspace or checkpoints (the one-way edge `nets → kernels`).

use std::fs;
use std::path::Path;

/// Every `.rs` file under `dir`, recursively.
fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn kernels_do_not_import_networks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/kernels");
    let mut files = Vec::new();
    sources(&root, &mut files);
    assert!(files.len() >= 6, "kernel files found: {files:?}");
    let forbidden = [
        "crate::nets",
        "crate::policy",
        "crate::rollout",
        "crate::checkpoint",
        "crate::config",
        "crate::input",
        "crate::Policy",
    ];
    let mut offences = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).unwrap();
        for (line_no, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for pattern in forbidden {
                if line.contains(pattern) {
                    offences.push(format!("{}:{}: {pattern}", file.display(), line_no + 1));
                }
            }
        }
    }
    assert!(
        offences.is_empty(),
        "kernels import networks: {offences:#?}"
    );
}
