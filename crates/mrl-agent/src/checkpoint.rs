//! Checkpoints: the weights as safetensors under their PyTorch names, plus a JSON sidecar
//! (`<name>.json` next to `<name>.safetensors`) with the config, the dimensions, the kind
//! and the crate version. Both files are written atomically.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::config::{AgentConfig, PolicyKind};
use crate::error::{Error, Result};
use crate::nets::Policy;

/// Format tag written into every sidecar.
pub const CHECKPOINT_FORMAT: &str = "mrl-agent-checkpoint";

/// The JSON sidecar of a checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Always [`CHECKPOINT_FORMAT`].
    pub format: String,
    /// Version of mrl-agent that wrote the checkpoint.
    pub crate_version: String,
    /// Network kind (duplicated from `config` for readers that only want to know that).
    pub kind: PolicyKind,
    /// The network configuration.
    pub config: AgentConfig,
    /// Derived sizes, for humans and other tools.
    pub dims: CheckpointDims,
}

/// Derived sizes recorded in a sidecar.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointDims {
    /// Input row width.
    pub input: usize,
    /// Hidden width.
    pub hidden: usize,
    /// Number of actions.
    pub n_actions: usize,
    /// Scalar parameter count.
    pub n_params: usize,
}

/// The sidecar path of a checkpoint: `path` with its extension replaced by `json`.
pub fn sidecar_path(path: &Path) -> PathBuf {
    path.with_extension("json")
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, `fsync`,
/// then `rename` over `path` (and a best-effort `fsync` of the directory). Readers see
/// either the old file or the new one, never a torn write.
///
/// # Errors
/// [`Error::Io`] naming the operation and path.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
        move |source| Error::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp).map_err(io("create", &tmp))?;
        f.write_all(bytes).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("fsync", &tmp))?;
        fs::rename(&tmp, path).map_err(io("rename", path))
    })();
    if result.is_err() {
        // Best effort: do not leave the temporary file behind.
        let _ = fs::remove_file(&tmp);
        return result;
    }
    if let Ok(d) = fs::File::open(&dir) {
        // Persist the rename; not every platform supports fsync on a directory.
        let _ = d.sync_all();
    }
    Ok(())
}

impl Policy {
    /// The sidecar describing this policy.
    pub fn checkpoint_meta(&self) -> CheckpointMeta {
        let c = self.config();
        CheckpointMeta {
            format: CHECKPOINT_FORMAT.to_string(),
            crate_version: env!("CARGO_PKG_VERSION").to_string(),
            kind: c.kind,
            config: c.clone(),
            dims: CheckpointDims {
                input: c.input_dim(),
                hidden: c.hidden,
                n_actions: c.n_actions,
                n_params: self.n_params(),
            },
        }
    }

    /// The weights as safetensors bytes (PyTorch names, f32, little endian). Deterministic:
    /// the same weights give the same bytes.
    ///
    /// # Errors
    /// [`Error::Safetensors`] or candle errors (copying weights off a GPU).
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let tensors: Vec<(String, candle_core::Tensor)> = self
            .parameters()
            .into_iter()
            .map(|(n, v)| Ok((n.to_string(), v.as_tensor().to_device(&Device::Cpu)?)))
            .collect::<Result<_>>()?;
        safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), None).map_err(|e| {
            Error::Safetensors {
                path: PathBuf::from("<memory>"),
                reason: e.to_string(),
            }
        })
    }

    /// Saves the weights to `path` (conventionally `*.safetensors`) and the sidecar to
    /// [`sidecar_path`]`(path)`, each atomically (weights first).
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::Json`], [`Error::Safetensors`].
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = self.to_safetensors().map_err(|e| match e {
            Error::Safetensors { reason, .. } => Error::Safetensors {
                path: path.into(),
                reason,
            },
            other => other,
        })?;
        write_atomic(path, &bytes)?;
        let side = sidecar_path(path);
        let json =
            serde_json::to_vec_pretty(&self.checkpoint_meta()).map_err(|source| Error::Json {
                path: side.clone(),
                source,
            })?;
        write_atomic(&side, &json)?;
        tracing::debug!(path = %path.display(), kind = self.kind().as_str(), "saved policy checkpoint");
        Ok(())
    }

    /// Loads a checkpoint written by [`Policy::save`] onto `device`. The sidecar gives the
    /// config; every tensor name and shape in the file is checked against it.
    ///
    /// # Errors
    /// [`Error::BadSidecar`] for a missing or foreign sidecar, [`Error::ParameterMismatch`]
    /// listing every missing, unexpected or mis-shaped tensor (e.g.
    /// `gru.weight_hh_l0: shape [384, 128] in file, expected [96, 32]`), [`Error::Io`],
    /// [`Error::Json`], [`Error::Safetensors`].
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let meta = read_meta(&sidecar_path(path))?;
        let bytes = fs::read(path).map_err(|source| Error::Io {
            op: "read",
            path: path.into(),
            source,
        })?;
        let tensors: HashMap<String, candle_core::Tensor> =
            candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).map_err(|e| {
                Error::Safetensors {
                    path: path.into(),
                    reason: e.to_string(),
                }
            })?;
        let mut policy = Policy::new(&meta.config, device, 0)?;
        policy.set_tensors(&tensors, &path.display().to_string())?;
        Ok(policy)
    }
}

impl Policy {
    /// As [`Policy::load`], for a caller that needs one kind of network: the sidecar's kind
    /// is checked before any weight is read.
    ///
    /// # Errors
    /// [`Error::WrongKind`] naming the checkpoint, the kind asked for and the kind found;
    /// otherwise as [`Policy::load`].
    pub fn load_kind(path: &Path, kind: PolicyKind, device: &Device) -> Result<Self> {
        let meta = read_meta(&sidecar_path(path))?;
        if meta.kind != kind {
            return Err(Error::WrongKind {
                path: path.to_path_buf(),
                expected: kind.as_str(),
                found: meta.kind.as_str(),
            });
        }
        Self::load(path, device)
    }
}

/// Reads and checks a sidecar.
fn read_meta(side: &Path) -> Result<CheckpointMeta> {
    let bad = |reason: String| Error::BadSidecar {
        path: side.to_path_buf(),
        reason,
    };
    let text = fs::read(side).map_err(|e| bad(format!("cannot read: {e}")))?;
    let meta: CheckpointMeta = serde_json::from_slice(&text).map_err(|source| Error::Json {
        path: side.into(),
        source,
    })?;
    if meta.format != CHECKPOINT_FORMAT {
        return Err(bad(format!(
            "format {:?}, expected {CHECKPOINT_FORMAT:?}",
            meta.format
        )));
    }
    if meta.kind != meta.config.kind {
        return Err(bad(format!(
            "kind {} disagrees with config kind {}",
            meta.kind.as_str(),
            meta.config.kind.as_str()
        )));
    }
    meta.config.validate()?;
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.bin");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn write_atomic_into_missing_dir_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing").join("x.bin");
        match write_atomic(&p, b"x") {
            Err(Error::Io { op: "create", .. }) => {}
            other => panic!("expected an io error, got {other:?}"),
        }
    }

    #[test]
    fn sidecar_sits_next_to_the_weights() {
        assert_eq!(
            sidecar_path(Path::new("a/b.safetensors")),
            PathBuf::from("a/b.json")
        );
    }
}
