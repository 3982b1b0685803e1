//! Training checkpoints, written atomically as one directory and read back for an exact
//! resume.
//!
//! ```text
//! DIR/config.toml                    the run's TrainConfig
//! DIR/train_log.jsonl                one IterationStats per line
//! DIR/checkpoint/model.safetensors   weights, PyTorch names
//! DIR/checkpoint/agent.json          mrl-agent's sidecar (AgentConfig and sizes)
//! DIR/checkpoint/optimizer.safetensors  Adam moments (exp_avg.<name>, exp_avg_sq.<name>)
//! DIR/checkpoint/state.json          counters, Adam step, RNG states, VecTrials state
//! ```
//!
//! The four checkpoint files are written into a fresh temporary directory, each fsynced,
//! then the directory replaces `checkpoint/` by two renames (the old one is kept as
//! `.checkpoint.old` until the new one is in place), so a crash leaves either the old or
//! the new checkpoint, never a mix.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use mrl_agent::{CheckpointMeta, Policy};
use mrl_env::VecTrialsState;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Format tag of `state.json`.
pub const STATE_FORMAT: &str = "mrl-ppo-train-state";

/// Directory name of the checkpoint inside a run directory.
pub const CHECKPOINT_DIR: &str = "checkpoint";

const OLD_DIR: &str = ".checkpoint.old";

/// Counters and RNG states of a run (`state.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Always [`STATE_FORMAT`].
    pub format: String,
    /// Iterations completed.
    pub iteration: u64,
    /// Environment steps taken so far.
    pub env_steps: u64,
    /// Adam steps taken so far.
    pub adam_step: u64,
    /// RNG of action sampling.
    pub sample_rng: ChaCha8Rng,
    /// RNG of the minibatch order.
    pub shuffle_rng: ChaCha8Rng,
    /// The trials' seed and round.
    pub trials: VecTrialsState,
    /// Normalisation accumulators (absent when the run normalises nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub norm: Option<crate::normalize::NormState>,
}

/// Everything a checkpoint holds, loaded.
#[derive(Debug)]
pub struct LoadedCheckpoint {
    /// The policy (weights on the requested device).
    pub policy: Policy,
    /// Adam moments by name.
    pub optimizer: HashMap<String, Tensor>,
    /// Counters and RNG states.
    pub state: TrainState,
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = fs::File::create(path).map_err(Error::io(path))?;
    f.write_all(bytes).map_err(Error::io(path))?;
    f.sync_all().map_err(Error::io(path))
}

fn sync_dir(dir: &Path) {
    // Persists renames; not every platform can fsync a directory, so this is best effort.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename).
///
/// # Errors
/// [`Error::Io`].
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    write_synced(&tmp, bytes)?;
    fs::rename(&tmp, path).map_err(Error::io(path))?;
    sync_dir(dir);
    Ok(())
}

/// The checkpoint directory of a run directory, falling back to the previous checkpoint
/// when a crash interrupted the swap.
pub fn checkpoint_dir(run_dir: &Path) -> PathBuf {
    let dir = run_dir.join(CHECKPOINT_DIR);
    let old = run_dir.join(OLD_DIR);
    if !dir.exists() && old.exists() {
        old
    } else {
        dir
    }
}

/// The files of a checkpoint directory, all written by [`save_checkpoint`].
pub const CHECKPOINT_FILES: [&str; 4] = [
    "model.safetensors",
    "agent.json",
    "optimizer.safetensors",
    "state.json",
];

/// The checkpoint directory to resume the run in `run_dir` from ([`checkpoint_dir`]),
/// after checking that there is one to resume.
///
/// # Errors
/// [`Error::NothingToResume`] when `run_dir` does not exist, is not a directory, holds no
/// run (no `config.toml`, no checkpoint) or holds a run that has not written its first
/// checkpoint yet; [`Error::Checkpoint`] naming the missing file of an incomplete checkpoint
/// (which [`save_checkpoint`] never leaves behind) or a checkpoint without the run's
/// `config.toml`.
pub fn resumable_checkpoint(run_dir: &Path) -> Result<PathBuf> {
    let nothing = |reason| Error::NothingToResume {
        dir: run_dir.to_path_buf(),
        reason,
    };
    if !run_dir.exists() {
        return Err(nothing("the directory does not exist"));
    }
    if !run_dir.is_dir() {
        return Err(nothing("it is not a directory"));
    }
    let config = run_dir.join(crate::CONFIG_FILE);
    let dir = checkpoint_dir(run_dir);
    if !dir.exists() {
        return Err(nothing(if config.exists() {
            "the run has not written a checkpoint yet (the first comes after \
             `checkpoint_every` iterations)"
        } else {
            "it holds no training run (no config.toml, no checkpoint)"
        }));
    }
    for file in CHECKPOINT_FILES {
        let path = dir.join(file);
        if !path.is_file() {
            return Err(Error::Checkpoint {
                path,
                reason: "missing: the checkpoint is incomplete".into(),
            });
        }
    }
    if !config.is_file() {
        return Err(Error::Checkpoint {
            path: config,
            reason: "missing: the run's config is needed to resume".into(),
        });
    }
    Ok(dir)
}

/// Makes the complete checkpoint written into `tmp` (a directory inside `run_dir`) the run's
/// checkpoint, `run_dir/checkpoint`: the previous one is renamed aside (`.checkpoint.old`),
/// `tmp` renamed into place, and the old one removed, with the renames synced. A crash at
/// any point leaves the old or the new checkpoint whole, never a mix, and
/// [`checkpoint_dir`] finds whichever is there. Returns the checkpoint directory.
///
/// # Errors
/// [`Error::Io`].
pub fn swap_in_checkpoint(run_dir: &Path, tmp: &Path) -> Result<PathBuf> {
    sync_dir(tmp);
    let dir = run_dir.join(CHECKPOINT_DIR);
    let old = run_dir.join(OLD_DIR);
    if old.exists() {
        fs::remove_dir_all(&old).map_err(Error::io(&old))?;
    }
    if dir.exists() {
        fs::rename(&dir, &old).map_err(Error::io(&dir))?;
    }
    fs::rename(tmp, &dir).map_err(Error::io(&dir))?;
    sync_dir(run_dir);
    if old.exists() {
        fs::remove_dir_all(&old).map_err(Error::io(&old))?;
    }
    Ok(dir)
}

/// Writes a checkpoint into `run_dir/checkpoint` atomically.
///
/// # Errors
/// [`Error::Io`], [`Error::Json`], candle and agent errors.
pub fn save_checkpoint(
    run_dir: &Path,
    policy: &Policy,
    optimizer: &[(String, Tensor)],
    state: &TrainState,
) -> Result<()> {
    let tmp = run_dir.join(format!(".checkpoint.tmp-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(Error::io(&tmp))?;
    }
    fs::create_dir_all(&tmp).map_err(Error::io(&tmp))?;
    write_synced(&tmp.join("model.safetensors"), &policy.to_safetensors()?)?;
    let meta = json_bytes(&policy.checkpoint_meta(), &tmp.join("agent.json"))?;
    write_synced(&tmp.join("agent.json"), &meta)?;
    let cpu: Vec<(String, Tensor)> = optimizer
        .iter()
        .map(|(n, t)| Ok((n.clone(), t.to_device(&Device::Cpu)?)))
        .collect::<Result<_>>()?;
    let opt_path = tmp.join("optimizer.safetensors");
    let opt =
        safetensors::serialize(cpu.iter().map(|(n, t)| (n.as_str(), t)), None).map_err(|e| {
            Error::Checkpoint {
                path: opt_path.clone(),
                reason: e.to_string(),
            }
        })?;
    write_synced(&opt_path, &opt)?;
    let state_path = tmp.join("state.json");
    write_synced(&state_path, &json_bytes(state, &state_path)?)?;
    let dir = swap_in_checkpoint(run_dir, &tmp)?;
    tracing::info!(dir = %dir.display(), iteration = state.iteration, "checkpoint written");
    Ok(())
}

fn json_bytes<T: Serialize>(value: &T, path: &Path) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(value).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(Error::io(path))?;
    serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })
}

fn read_safetensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    let bytes = fs::read(path).map_err(Error::io(path))?;
    candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).map_err(|e| Error::Checkpoint {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Loads the policy of a checkpoint directory (`model.safetensors` + `agent.json`).
///
/// # Errors
/// [`Error::Io`], [`Error::Json`], [`Error::Checkpoint`], agent errors for mismatched
/// tensors.
pub fn load_policy(dir: &Path, device: &Device) -> Result<Policy> {
    let meta: CheckpointMeta = read_json(&dir.join("agent.json"))?;
    let tensors = read_safetensors(&dir.join("model.safetensors"))?;
    Ok(Policy::from_tensors(&meta.config, &tensors, device)?)
}

/// Loads a whole checkpoint directory.
///
/// # Errors
/// As [`load_policy`], plus [`Error::Checkpoint`] for a foreign `state.json`.
pub fn load_checkpoint(dir: &Path, device: &Device) -> Result<LoadedCheckpoint> {
    let policy = load_policy(dir, device)?;
    let optimizer = read_safetensors(&dir.join("optimizer.safetensors"))?;
    let state_path = dir.join("state.json");
    let state: TrainState = read_json(&state_path)?;
    if state.format != STATE_FORMAT {
        return Err(Error::Checkpoint {
            path: state_path,
            reason: format!("format {:?}, expected {STATE_FORMAT:?}", state.format),
        });
    }
    Ok(LoadedCheckpoint {
        policy,
        optimizer,
        state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("mrl-ppo-resume-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn reason(err: Error) -> &'static str {
        match err {
            Error::NothingToResume { reason, .. } => reason,
            other => panic!("expected NothingToResume, got {other}"),
        }
    }

    #[test]
    fn resuming_where_there_is_no_checkpoint_says_so() {
        let run = tempdir("cases");
        // No directory at all.
        let err = resumable_checkpoint(&run).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "nothing to resume in {}: the directory does not exist; start a new run there \
                 instead of resuming",
                run.display()
            )
        );
        // An empty directory.
        fs::create_dir_all(&run).unwrap();
        assert_eq!(
            reason(resumable_checkpoint(&run).unwrap_err()),
            "it holds no training run (no config.toml, no checkpoint)"
        );
        // A run stopped before its first checkpoint: config.toml but no weights.
        fs::write(run.join(crate::CONFIG_FILE), "").unwrap();
        let err = resumable_checkpoint(&run).unwrap_err();
        assert!(reason(err).starts_with("the run has not written a checkpoint yet"));
        // A file where the directory should be.
        let file = run.join(crate::CONFIG_FILE);
        assert_eq!(
            reason(resumable_checkpoint(&file).unwrap_err()),
            "it is not a directory"
        );
        // A checkpoint directory without its weights: a bad checkpoint, naming the file.
        let dir = run.join(CHECKPOINT_DIR);
        fs::create_dir_all(&dir).unwrap();
        for file in &CHECKPOINT_FILES[1..] {
            fs::write(dir.join(file), "").unwrap();
        }
        match resumable_checkpoint(&run).unwrap_err() {
            Error::Checkpoint { path, reason } => {
                assert_eq!(path, dir.join("model.safetensors"));
                assert_eq!(reason, "missing: the checkpoint is incomplete");
            }
            other => panic!("{other}"),
        }
        // Complete: the checkpoint directory; without config.toml it cannot be resumed.
        fs::write(dir.join("model.safetensors"), "").unwrap();
        assert_eq!(resumable_checkpoint(&run).unwrap(), dir);
        fs::remove_file(run.join(crate::CONFIG_FILE)).unwrap();
        assert!(matches!(
            resumable_checkpoint(&run),
            Err(Error::Checkpoint { path, .. }) if path == run.join(crate::CONFIG_FILE)
        ));
        // An interrupted swap leaves `.checkpoint.old`: that one is resumed.
        fs::write(run.join(crate::CONFIG_FILE), "").unwrap();
        fs::rename(&dir, run.join(OLD_DIR)).unwrap();
        assert_eq!(resumable_checkpoint(&run).unwrap(), run.join(OLD_DIR));
        fs::remove_dir_all(&run).unwrap();
    }

    #[test]
    fn train_with_resume_and_no_checkpoint_is_nothing_to_resume() {
        let run = tempdir("train");
        let config = crate::TrainConfig {
            iterations: 1,
            n_envs: 2,
            ..crate::TrainConfig::default()
        };
        let err = crate::train(&config, &run, true, |_| {}).unwrap_err();
        assert!(
            matches!(err, Error::NothingToResume { ref dir, .. } if *dir == run),
            "{err}"
        );
        assert!(!run.exists(), "a failed resume creates nothing");
    }
}
