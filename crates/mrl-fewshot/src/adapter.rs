//! Low-rank task adapters (LoRA, Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large
//! Language Models"): `W = W_base + (α/r)·B·A` on chosen weight matrices of a frozen policy.
//!
//! # Forward and backward through the existing network
//!
//! The adapter never touches the network code: the effective weights
//! `W_eff = W_base + s·B·A` (`s = α/r`) are written into a working copy of the policy, the
//! existing forward and backward passes (the fused sequence op included) give `∂L/∂W_eff`,
//! and the chain rule pulls it back onto the factors:
//!
//! ```text
//! ∂L/∂B = s · ∂L/∂W_eff · Aᵀ        (out × in)(in × r)  = out × r
//! ∂L/∂A = s · Bᵀ · ∂L/∂W_eff        (r × out)(out × in) = r × in
//! ```
//!
//! `B` starts at zero, so a fresh adapter leaves the policy's outputs unchanged bit for bit;
//! `A` starts as PyTorch's `nn.Linear` weights do (`U(−1/√in, 1/√in)`, the reference
//! implementation's Kaiming-uniform choice), drawn from a seeded `ChaCha8Rng`.
//!
//! # Files
//!
//! An adapter is `NAME.safetensors` (tensors `<parameter>.lora_a` `(r, in)` and
//! `<parameter>.lora_b` `(out, r)`, f32) with a JSON sidecar `NAME.json` ([`AdapterMeta`]:
//! rank, α, targets and the base policy's sizes), both written atomically. At H = 128 and
//! r = 4 on every weight matrix it holds ≈ 7 k numbers beside the base's 102 k.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use mrl_agent::{CheckpointDims, Policy, sidecar_path, write_atomic};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Format tag of an adapter sidecar.
pub const ADAPTER_FORMAT: &str = "mrl-fewshot-adapter";

/// Settings of the low-rank adapters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank `r` of every adapter, ≥ 1 (default 4).
    pub rank: usize,
    /// Scale numerator `α`: the update is `(α/r)·B·A` (default 4, so the scale is 1 at the
    /// default rank; as in the paper, changing `r` at fixed `α` needs no new learning rate).
    pub alpha: f64,
    /// Parameter names that carry an adapter (PyTorch names, e.g. `gru.weight_hh_l0`);
    /// empty (the default) means every weight matrix: the encoder (or the MLP body), the
    /// GRU's input and hidden weights and both heads. Biases never carry one.
    pub targets: Vec<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: 4,
            alpha: 4.0,
            targets: Vec::new(),
        }
    }
}

impl LoraConfig {
    /// Checks `rank ≥ 1` and a finite `α > 0`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.rank == 0 {
            return Err(Error::invalid(
                "adapter.rank",
                "0".into(),
                "must be at least 1",
            ));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(Error::invalid(
                "adapter.alpha",
                self.alpha.to_string(),
                "must be finite and > 0",
            ));
        }
        Ok(())
    }

    /// The scale `s = α/r`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }
}

/// The JSON sidecar of an adapter file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterMeta {
    /// Always [`ADAPTER_FORMAT`].
    pub format: String,
    /// Version of mrl-fewshot that wrote the file.
    pub crate_version: String,
    /// Rank, α and the targets (resolved: never empty).
    pub config: LoraConfig,
    /// Sizes of the base policy the adapter was trained on.
    pub base: CheckpointDims,
}

/// One adapted matrix: `W_eff = W + s·B·A`.
#[derive(Debug)]
struct Factor {
    name: String,
    /// `(r, in)`.
    a: Var,
    /// `(out, r)`.
    b: Var,
}

/// Low-rank adapters on some weight matrices of a policy (see the module docs).
///
/// Not `Clone`: its factors are `Var`s, which a clone would share; use
/// [`LowRankAdapter::detached`] for an independent copy.
#[derive(Debug)]
pub struct LowRankAdapter {
    config: LoraConfig,
    factors: Vec<Factor>,
}

impl LowRankAdapter {
    /// Fresh adapters for `base`: `A` drawn from `rng`, `B = 0` (the policy is unchanged).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a bad config, [`Error::AdapterMismatch`] for a target
    /// that is not a weight matrix of `base`.
    pub fn new(config: &LoraConfig, base: &Policy, rng: &mut ChaCha8Rng) -> Result<Self> {
        config.validate()?;
        let shapes = base.param_shapes();
        let targets = resolve_targets(config, &shapes, "config")?;
        let device = base.device();
        let mut factors = Vec::with_capacity(targets.len());
        for name in &targets {
            let (out, input) = matrix_shape(&shapes, name);
            let bound = 1.0 / (input as f32).sqrt();
            let a: Vec<f32> = (0..config.rank * input)
                .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * bound)
                .collect();
            factors.push(Factor {
                name: name.clone(),
                a: Var::from_tensor(&Tensor::from_vec(a, (config.rank, input), device)?)?,
                b: Var::from_tensor(&Tensor::zeros((out, config.rank), DType::F32, device)?)?,
            });
        }
        Ok(Self {
            config: LoraConfig {
                targets,
                ..config.clone()
            },
            factors,
        })
    }

    /// An independent copy: the same factors in new `Var`s.
    ///
    /// # Errors
    /// Candle errors.
    pub fn detached(&self) -> Result<Self> {
        let copy = |v: &Var| -> Result<Var> { Ok(Var::from_tensor(&v.as_tensor().copy()?)?) };
        let factors = self
            .factors
            .iter()
            .map(|f| {
                Ok(Factor {
                    name: f.name.clone(),
                    a: copy(&f.a)?,
                    b: copy(&f.b)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            config: self.config.clone(),
            factors,
        })
    }

    /// The settings, with the targets resolved.
    pub fn config(&self) -> &LoraConfig {
        &self.config
    }

    /// The trainable factors as `Var`s, `[A₀, B₀, A₁, B₁, …]` in target order; updating them
    /// updates the adapter.
    pub fn vars(&self) -> Vec<Var> {
        self.factors
            .iter()
            .flat_map(|f| [f.a.clone(), f.b.clone()])
            .collect()
    }

    /// Names of [`LowRankAdapter::vars`]: `<parameter>.lora_a`, `<parameter>.lora_b`.
    pub fn names(&self) -> Vec<String> {
        self.factors
            .iter()
            .flat_map(|f| [format!("{}.lora_a", f.name), format!("{}.lora_b", f.name)])
            .collect()
    }

    /// Number of trainable scalars.
    pub fn n_params(&self) -> usize {
        self.vars().iter().map(|v| v.elem_count()).sum()
    }

    /// The effective parameters `W + s·B·A` for the targets, the others as they are.
    ///
    /// # Errors
    /// [`Error::AdapterMismatch`] when `base` lacks a target; candle errors.
    pub fn merge(&self, base: &HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
        let mut merged = base.clone();
        for f in &self.factors {
            let w = base.get(&f.name).ok_or_else(|| Error::AdapterMismatch {
                source_name: "base tensors".into(),
                problems: vec![format!("{}: missing", f.name)],
            })?;
            let delta = (f.b.as_tensor().matmul(f.a.as_tensor())? * self.config.scale())?;
            merged.insert(f.name.clone(), (w + delta)?); // (out, in)
        }
        Ok(merged)
    }

    /// A new policy with the effective weights ([`LowRankAdapter::merge`] of `base`'s).
    ///
    /// # Errors
    /// As [`LowRankAdapter::merge`], agent errors.
    pub fn merged_policy(&self, base: &Policy) -> Result<Policy> {
        let merged = self.merge(&base.tensors())?;
        Ok(Policy::from_tensors(base.config(), &merged, base.device())?)
    }

    /// Pulls gradients of the effective weights back onto the factors, in
    /// [`LowRankAdapter::vars`] order: `∂L/∂A = s·Bᵀ·G`, `∂L/∂B = s·G·Aᵀ` with `G = ∂L/∂W_eff`.
    ///
    /// # Errors
    /// [`Error::AdapterMismatch`] when `grads` lacks a target; candle errors.
    pub fn pullback(&self, grads: &[(String, Tensor)]) -> Result<Vec<Tensor>> {
        let s = self.config.scale();
        let mut out = Vec::with_capacity(2 * self.factors.len());
        for f in &self.factors {
            let g = grads
                .iter()
                .find(|(n, _)| *n == f.name)
                .map(|(_, g)| g)
                .ok_or_else(|| Error::AdapterMismatch {
                    source_name: "gradients".into(),
                    problems: vec![format!("{}: missing", f.name)],
                })?; // (out, in)
            let (a, b) = (f.a.as_tensor(), f.b.as_tensor());
            out.push((b.t()?.matmul(g)? * s)?); // (r, in)
            out.push((g.matmul(&a.t()?)? * s)?); // (out, r)
        }
        Ok(out)
    }

    /// The adapter as safetensors bytes (deterministic: the same factors give the same
    /// bytes).
    ///
    /// # Errors
    /// [`Error::BadAdapterFile`] from the serialiser, candle errors.
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let tensors: Vec<(String, Tensor)> = self
            .names()
            .into_iter()
            .zip(self.vars())
            .map(|(n, v)| Ok((n, v.as_tensor().to_device(&Device::Cpu)?)))
            .collect::<Result<_>>()?;
        safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), None).map_err(|e| {
            Error::BadAdapterFile {
                path: "<memory>".into(),
                reason: e.to_string(),
            }
        })
    }

    /// Saves the factors to `path` (`*.safetensors`) and the [`AdapterMeta`] sidecar next to
    /// it (`*.json`), each atomically, weights first.
    ///
    /// # Errors
    /// I/O, JSON and serialiser errors naming the file.
    pub fn save(&self, path: &Path, base: &Policy) -> Result<()> {
        write_atomic(path, &self.to_safetensors()?)?;
        let meta = AdapterMeta {
            format: ADAPTER_FORMAT.to_owned(),
            crate_version: env!("CARGO_PKG_VERSION").to_owned(),
            config: self.config.clone(),
            base: base.checkpoint_meta().dims,
        };
        let side = sidecar_path(path);
        let json = serde_json::to_vec_pretty(&meta).map_err(|source| Error::Json {
            path: side.clone(),
            source,
        })?;
        write_atomic(&side, &json)?;
        tracing::debug!(path = %path.display(), targets = self.factors.len(), "saved adapter");
        Ok(())
    }

    /// Loads an adapter saved by [`LowRankAdapter::save`] for `base`, checking the format,
    /// the base's sizes and every factor's shape.
    ///
    /// # Errors
    /// [`Error::BadAdapterFile`] for a missing or foreign sidecar or unreadable tensors,
    /// [`Error::AdapterMismatch`] listing every tensor that is missing, unexpected or of the
    /// wrong shape.
    pub fn load(path: &Path, base: &Policy) -> Result<Self> {
        let bad = |reason: String| Error::BadAdapterFile {
            path: path.to_path_buf(),
            reason,
        };
        let side = sidecar_path(path);
        let text =
            std::fs::read(&side).map_err(|e| bad(format!("sidecar {}: {e}", side.display())))?;
        let meta: AdapterMeta = serde_json::from_slice(&text).map_err(|source| Error::Json {
            path: side.clone(),
            source,
        })?;
        if meta.format != ADAPTER_FORMAT {
            return Err(bad(format!(
                "format {:?}, expected {ADAPTER_FORMAT:?}",
                meta.format
            )));
        }
        meta.config.validate()?;
        let source_name = path.display().to_string();
        let dims = base.checkpoint_meta().dims;
        if meta.base != dims {
            return Err(Error::AdapterMismatch {
                source_name,
                problems: vec![format!(
                    "trained on a base of {:?}, this policy is {:?}",
                    meta.base, dims
                )],
            });
        }
        let shapes = base.param_shapes();
        let targets = resolve_targets(&meta.config, &shapes, &source_name)?;
        let bytes = std::fs::read(path).map_err(Error::io(path))?;
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| bad(e.to_string()))?;
        let rank = meta.config.rank;
        let mut problems = Vec::new();
        let mut factors = Vec::new();
        for name in &targets {
            let (out, input) = matrix_shape(&shapes, name);
            let mut get = |suffix: &str, shape: [usize; 2]| {
                let key = format!("{name}.{suffix}");
                match tensors.get(&key) {
                    None => {
                        problems.push(format!("{key}: missing"));
                        None
                    }
                    Some(t) if t.dims() != shape || t.dtype() != DType::F32 => {
                        problems.push(format!(
                            "{key}: {:?} {:?} in file, expected F32 {shape:?}",
                            t.dtype(),
                            t.dims()
                        ));
                        None
                    }
                    Some(t) => Some(t.clone()),
                }
            };
            let a = get("lora_a", [rank, input]);
            let b = get("lora_b", [out, rank]);
            if let (Some(a), Some(b)) = (a, b) {
                factors.push(Factor {
                    name: name.clone(),
                    a: Var::from_tensor(&a.to_device(base.device())?)?,
                    b: Var::from_tensor(&b.to_device(base.device())?)?,
                });
            }
        }
        let mut unexpected: Vec<&String> = tensors
            .keys()
            .filter(|k| {
                !targets
                    .iter()
                    .any(|t| **k == format!("{t}.lora_a") || **k == format!("{t}.lora_b"))
            })
            .collect();
        unexpected.sort();
        problems.extend(
            unexpected
                .into_iter()
                .map(|k| format!("{k}: unexpected tensor")),
        );
        if !problems.is_empty() {
            return Err(Error::AdapterMismatch {
                source_name,
                problems,
            });
        }
        Ok(Self {
            config: LoraConfig {
                targets,
                ..meta.config
            },
            factors,
        })
    }
}

/// The configured targets, or every 2-D parameter of the policy; each checked to be one.
fn resolve_targets<S: AsRef<str>>(
    config: &LoraConfig,
    shapes: &[(S, Vec<usize>)],
    source_name: &str,
) -> Result<Vec<String>> {
    if config.targets.is_empty() {
        return Ok(shapes
            .iter()
            .filter(|(_, s)| s.len() == 2)
            .map(|(n, _)| n.as_ref().to_owned())
            .collect());
    }
    let problems: Vec<String> = config
        .targets
        .iter()
        .filter_map(|t| match shapes.iter().find(|(n, _)| n.as_ref() == t) {
            None => Some(format!("{t}: no such parameter")),
            Some((_, s)) if s.len() != 2 => Some(format!("{t}: shape {s:?} is not a matrix")),
            Some(_) => None,
        })
        .collect();
    if problems.is_empty() {
        Ok(config.targets.clone())
    } else {
        Err(Error::AdapterMismatch {
            source_name: source_name.to_owned(),
            problems,
        })
    }
}

/// `(out, in)` of a parameter already checked to be a matrix.
fn matrix_shape<S: AsRef<str>>(shapes: &[(S, Vec<usize>)], name: &str) -> (usize, usize) {
    shapes
        .iter()
        .find(|(n, _)| n.as_ref() == name)
        .map_or((0, 0), |(_, s)| (s[0], s[1]))
}
