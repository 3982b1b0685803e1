//! One round of the self-improvement loop (`mrl llm train`), timed by phase, with the
//! process's peak memory: `cargo bench -p mrl-llm --bench round`.
//!
//! The round is round 1 of `configs/llm-quick.toml` (or of the file in `$MRL_ROUND_CONFIG`)
//! on the embedded SmolLM2-135M-Instruct (fetched by `scripts/fetch-smollm2`; `$MRL_LLM_MODEL`
//! names another GGUF file). `MRL_ROUND_TINY=1` runs it on the tiny random model instead
//! (seconds; for checking the bench itself). One run, not a statistic: a round takes
//! minutes with the real model on 2 cores.
#![allow(clippy::print_stdout)] // A bench is a binary: it prints its table.

use std::path::{Path, PathBuf};
use std::time::Instant;

use mrl_llm::{TrainConfig, default_model_path, train, write_tiny_model};

/// The process's peak resident memory in MiB (`VmHWM` of `/proc/self/status`; Linux only).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() -> anyhow::Result<()> {
    let config_path = std::env::var_os("MRL_ROUND_CONFIG").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/llm-quick.toml"),
        PathBuf::from,
    );
    let mut config = TrainConfig::from_toml_file(&config_path)?;
    config.rounds = 1;
    let dir = tempfile::tempdir()?;
    let model = if std::env::var_os("MRL_ROUND_TINY").is_some() {
        let path = dir.path().join("tiny.gguf");
        write_tiny_model(&path, 0)?;
        path
    } else {
        default_model_path().ok_or_else(|| anyhow::anyhow!("set HOME or MRL_LLM_MODEL"))?
    };
    anyhow::ensure!(
        model.is_file(),
        "{} is missing: run scripts/fetch-smollm2",
        model.display()
    );
    let series = config.market.generate(config.market.seed)?;
    let start = Instant::now();
    let logs = train(
        &model,
        &series,
        &config,
        &dir.path().join("run"),
        false,
        &mut |_| {},
    )?;
    let total = start.elapsed().as_secs_f64();
    let log = &logs[0];
    let p = log.phase_seconds;
    println!(
        "one round of {} on {}: {} contexts × {} candidates × {} judgments, {} actor and {} judge pair(s), {} validation decisions\n",
        config_path.display(),
        model
            .file_name()
            .map_or("?".into(), |n| n.to_string_lossy()),
        config.contexts,
        config.candidates,
        config.judgments,
        log.actor_pairs,
        log.judge_pairs,
        config.eval.validation_decisions
    );
    println!(
        "candle threads: {} for matrix products (RAYON_NUM_THREADS, else the cores; \
         CANDLE_NUM_THREADS, else the same, for its element-wise pool)\n",
        candle_core::utils::get_num_threads()
    );
    println!("| phase | seconds | share of the round |\n|---|---|---|");
    for (name, secs) in [
        ("actor candidates", p.actor),
        ("judge scores + meta-judge", p.judge),
        ("DPO actor (beside the judge's)", p.dpo_actor),
        ("DPO judge (beside the actor's)", p.dpo_judge),
        ("validation", p.validation),
        ("whole round", log.seconds),
    ] {
        println!(
            "| {name} | {secs:.1} | {:.0} % |",
            100.0 * secs / log.seconds
        );
    }
    println!(
        "\nrun {total:.1} s (with loading); peak memory {}",
        peak_rss_mib().map_or("n/a".into(), |m| format!("{m:.0} MiB"))
    );
    Ok(())
}
