//! Feature embeddings per asset class: a meta-learned linear map from each class's own
//! feature set to the common feature block the shared policy reads, with the task-specific
//! layers (all weights, or low-rank adapters and heads) adapting on top.
//!
//! # The map
//!
//! A class `c` names its features, `d_c` of the eleven of mrl-features (`[classes.NAME]`,
//! [`ClassConfig`]); equities may read six where crypto reads all eleven. Its embedding is
//!
//! ```text
//! z = E_c · x_c + e_c        x_c (d_c): the class's (normalised) features, in its order
//!                            E_c (11 × d_c), e_c (11): the class's parameters
//!                            z (11): the common representation, fed where the shared
//!                                    policy reads its feature block
//! ```
//!
//! `x_c` is read after the policy's input normalisation (z-scores fitted once at warm-up on
//! the config's `[task]` rollouts and shared by every class); a class's different location
//! and scale is the embedding's to absorb.
//!
//! The common width is the policy's feature block, [`N_FEATURES`] (= 11), so the shared base
//! is an ordinary trading policy and a class whose embedding is the identity *is* today's
//! policy. Every other input (position, P&L, elapsed time, the previous action, reward and
//! done flag) reaches the policy as before.
//!
//! # Composition into the policy's first layer
//!
//! The policy's first layer is linear (`encoder.0` of RL², `body.0` of the MLP), so the
//! embedding folds into it and the composed policy is an ordinary [`Policy`] on the env's
//! 14 observations: the existing rollout step, fused sequence ops, checkpoints and `mrl
//! backtest` run it unchanged. With `S_c` (d_c × 11) selecting the class's features from the
//! observation's feature block and `W_f` the first layer's feature columns:
//!
//! ```text
//! M_c          = E_c · S_c                       (11 × 11; zero columns off the class)
//! W_eff[:, F]  = W_f · M_c                       (H × 11)
//! W_eff[:, ¬F] = W[:, ¬F]
//! b_eff        = b + W_f · e_c
//! ```
//!
//! so features outside the class's set have weight exactly zero (never read). Gradients of
//! the composed weights `G = ∂L/∂W_eff`, `g = ∂L/∂b_eff` pull back by the chain rule:
//!
//! ```text
//! ∂L/∂W_f  = G_F · M_cᵀ + g · e_cᵀ       ∂L/∂W[:, ¬F] = G[:, ¬F]      ∂L/∂b = g
//! ∂L/∂E_c  = W_fᵀ · G_F · S_cᵀ           ∂L/∂e_c = W_fᵀ · g
//! ```
//!
//! (the same pull-back pattern as the low-rank adapters of `adapter.rs`).
//!
//! # Initialisation
//!
//! A class's embedding starts as *zero padding*: `E_c[f_j, j] = 1` places its feature `j` in
//! that feature's own slot `f_j` of the common block, the other slots get 0, `e_c = 0`. The
//! composed policy is then the base reading only the class's features (the others held at
//! their normalised mean 0), and with all eleven features it equals the base bit for bit.
//! The initialisation draws nothing; what varies by seed is meta-training and adaptation.
//!
//! # Meta-learning and adaptation
//!
//! Reptile or first-order MAML meta-trains the base and every class's embedding together
//! (`[classes]` in a meta-training config): each task's inner loop trains the base's weights
//! (or adapters) and its class's embedding; Reptile moves the base towards the mean adapted
//! base and each embedding towards the mean over its own class's tasks
//! ([`reptile_step_classes`](crate::reptile_step_classes)), FOMAML steps both along the
//! query gradient pulled back through the adapted embedding
//! ([`fomaml_gradient_classes`](crate::fomaml_gradient_classes)). At adaptation to a new asset the class's embedding is frozen or trains
//! beside the task-specific layers ([`EmbeddingTraining`]); a class with no embedding yet
//! (a class the base was not meta-trained on) starts from zero padding and always trains in
//! the inner loop.
//!
//! # Files
//!
//! Beside the base checkpoint: `embeddings.safetensors` (tensors `<class>.weight` (11 × d_c)
//! and `<class>.bias` (11), f32) and its sidecar `embeddings.json` ([`EmbeddingsMeta`]: the
//! classes and their feature lists), both written atomically. Loading them against a config
//! whose classes name other features is [`Error::EmbeddingMismatch`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use mrl_agent::{Policy, PolicyKind, sidecar_path, write_atomic};
use mrl_features::{FEATURE_NAMES, Feature, N_FEATURES};
use mrl_ppo::TaskKind;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// File name of the class embeddings inside a checkpoint directory.
pub const EMBEDDINGS_FILE: &str = "embeddings.safetensors";
/// Format tag of the embeddings' sidecar.
pub const EMBEDDINGS_FORMAT: &str = "mrl-fewshot-embeddings";
/// Width of the common representation: the policy's feature block.
pub const COMMON_WIDTH: usize = N_FEATURES;

/// One asset class (a `[classes.NAME]` table).
///
/// ```toml
/// [classes.equities]
/// features = ["ret_1", "ret_5", "ret_10", "sma_ratio", "volatility", "rsi"]
/// task = { kind = "multi-asset", interval = "1d", assets = ["AAPL", "MSFT"] }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassConfig {
    /// The class's features, by mrl-features name (`ret_1`, …, `vol_ratio`), in the order
    /// of the embedding's columns; at least one, none repeated.
    pub features: Vec<String>,
    /// The class's training tasks (any trading task kind of `[task]`); absent: the class
    /// trains on the config's `[task]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskKind>,
}

impl ClassConfig {
    /// The features, parsed and checked.
    ///
    /// # Errors
    /// [`Error::EmptyFeatureSet`], [`Error::UnknownFeature`] or [`Error::RepeatedFeature`]
    /// naming `class`.
    pub fn parsed_features(&self, class: &str) -> Result<Vec<Feature>> {
        parse_features(class, &self.features)
    }
}

/// Parses a class's feature names.
///
/// # Errors
/// [`Error::EmptyFeatureSet`] for an empty list, [`Error::UnknownFeature`] for a name that
/// is not a feature of mrl-features, [`Error::RepeatedFeature`] for a name given twice; each
/// names the class.
pub fn parse_features(class: &str, names: &[String]) -> Result<Vec<Feature>> {
    if names.is_empty() {
        return Err(Error::EmptyFeatureSet {
            class: class.to_owned(),
        });
    }
    let mut features: Vec<Feature> = Vec::with_capacity(names.len());
    for name in names {
        let feature: Feature = name.parse().map_err(|_| Error::UnknownFeature {
            class: class.to_owned(),
            feature: name.clone(),
            known: FEATURE_NAMES.join(", "),
        })?;
        if features.contains(&feature) {
            return Err(Error::RepeatedFeature {
                class: class.to_owned(),
                feature: name.clone(),
            });
        }
        features.push(feature);
    }
    Ok(features)
}

/// Checks every class of a config: a non-blank name and a valid feature set.
///
/// # Errors
/// As [`parse_features`]; [`Error::InvalidConfig`] naming `classes` for a blank name.
pub fn validate_classes(classes: &BTreeMap<String, ClassConfig>) -> Result<()> {
    for (name, class) in classes {
        if name.trim().is_empty() {
            return Err(Error::invalid(
                "classes",
                format!("{name:?}"),
                "a class needs a name",
            ));
        }
        class.parsed_features(name)?;
        if matches!(class.task, Some(TaskKind::Bandits { .. })) {
            return Err(Error::invalid(
                "classes.task",
                name.clone(),
                "bandits have no market features to embed",
            ));
        }
    }
    Ok(())
}

/// Whether a class's embedding trains in the inner loop when adapting to a new asset
/// (`[meta.inner] embedding`). Meta-training always trains it (the meta-learner learns it from the
/// adapted copies), and a class without a meta-learned embedding always trains it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddingTraining {
    /// The meta-learned embedding is used as it is; only the task-specific layers adapt.
    #[default]
    Frozen,
    /// The embedding adapts beside the task-specific layers.
    Adapted,
}

impl EmbeddingTraining {
    /// Whether this is [`EmbeddingTraining::Frozen`].
    pub fn is_frozen(&self) -> bool {
        *self == Self::Frozen
    }
}

/// The first linear layer over the input row of a policy kind: `(weight, bias)` names.
fn first_layer(kind: PolicyKind) -> Option<(&'static str, &'static str)> {
    match kind {
        PolicyKind::Rl2 => Some(("encoder.0.weight", "encoder.0.bias")),
        PolicyKind::Mlp => Some(("body.0.weight", "body.0.bias")),
        _ => None,
    }
}

/// Gradients pulled back through a class embedding ([`ClassEmbedding::pullback`]).
#[derive(Debug)]
pub struct EmbeddingGradients {
    /// Gradients of the uncomposed network parameters, by name, in the order given.
    pub base: Vec<(String, Tensor)>,
    /// Gradients of `E_c` `(11, d_c)` and `e_c` `(11)`, in [`ClassEmbedding::vars`] order.
    pub embedding: Vec<Tensor>,
}

/// One class's embedding `z = E_c·x_c + e_c` (see the module docs).
///
/// Not `Clone`: its parameters are `Var`s, which a clone would share; use
/// [`ClassEmbedding::detached`] for an independent copy.
#[derive(Debug)]
pub struct ClassEmbedding {
    class: String,
    features: Vec<Feature>,
    /// `(COMMON_WIDTH, d_c)`.
    weight: Var,
    /// `(COMMON_WIDTH)`.
    bias: Var,
}

impl ClassEmbedding {
    /// The zero-padding embedding of `class` over `features`: each feature in its own slot
    /// of the common block, the other slots 0, no bias.
    ///
    /// # Errors
    /// [`Error::EmptyFeatureSet`] for no features; candle errors.
    pub fn padding(class: &str, features: &[Feature], device: &Device) -> Result<Self> {
        if features.is_empty() {
            return Err(Error::EmptyFeatureSet {
                class: class.to_owned(),
            });
        }
        let d = features.len();
        let mut weight = vec![0f32; COMMON_WIDTH * d];
        for (j, f) in features.iter().enumerate() {
            weight[f.index() * d + j] = 1.0;
        }
        Ok(Self {
            class: class.to_owned(),
            features: features.to_vec(),
            weight: Var::from_tensor(&Tensor::from_vec(weight, (COMMON_WIDTH, d), device)?)?,
            bias: Var::from_tensor(&Tensor::zeros(COMMON_WIDTH, DType::F32, device)?)?,
        })
    }

    /// An embedding with the given parameters.
    ///
    /// # Errors
    /// [`Error::EmbeddingMismatch`] for shapes other than `(11, d_c)` and `(11)`.
    pub fn from_tensors(
        class: &str,
        features: &[Feature],
        weight: &Tensor,
        bias: &Tensor,
    ) -> Result<Self> {
        let d = features.len();
        let mut problems = Vec::new();
        if weight.dims() != [COMMON_WIDTH, d] || weight.dtype() != DType::F32 {
            problems.push(format!(
                "{class}.weight: {:?} {:?}, expected F32 [{COMMON_WIDTH}, {d}]",
                weight.dtype(),
                weight.dims()
            ));
        }
        if bias.dims() != [COMMON_WIDTH] || bias.dtype() != DType::F32 {
            problems.push(format!(
                "{class}.bias: {:?} {:?}, expected F32 [{COMMON_WIDTH}]",
                bias.dtype(),
                bias.dims()
            ));
        }
        if !problems.is_empty() {
            return Err(Error::EmbeddingMismatch {
                source_name: "tensors".into(),
                problems,
            });
        }
        Ok(Self {
            class: class.to_owned(),
            features: features.to_vec(),
            weight: Var::from_tensor(&weight.copy()?)?,
            bias: Var::from_tensor(&bias.copy()?)?,
        })
    }

    /// An independent copy: the same parameters in new `Var`s.
    ///
    /// # Errors
    /// Candle errors.
    pub fn detached(&self) -> Result<Self> {
        Self::from_tensors(
            &self.class,
            &self.features,
            self.weight.as_tensor(),
            self.bias.as_tensor(),
        )
    }

    /// The class's name.
    pub fn class(&self) -> &str {
        &self.class
    }

    /// The class's features, in column order of `E_c`.
    pub fn features(&self) -> &[Feature] {
        &self.features
    }

    /// `E_c` `(11, d_c)` and `e_c` `(11)` as `Var`s; updating them updates the embedding.
    pub fn vars(&self) -> Vec<Var> {
        vec![self.weight.clone(), self.bias.clone()]
    }

    /// Names of [`ClassEmbedding::vars`]: `<class>.weight`, `<class>.bias`.
    pub fn names(&self) -> Vec<String> {
        vec![
            format!("{}.weight", self.class),
            format!("{}.bias", self.class),
        ]
    }

    /// `S_c` `(d_c, 11)`: row `j` selects feature `j` of the class from the feature block.
    fn selection(&self, device: &Device) -> Result<Tensor> {
        let d = self.features.len();
        let mut s = vec![0f32; d * COMMON_WIDTH];
        for (j, f) in self.features.iter().enumerate() {
            s[j * COMMON_WIDTH + f.index()] = 1.0;
        }
        Ok(Tensor::from_vec(s, (d, COMMON_WIDTH), device)?)
    }

    /// The first layer's names of `policy`, checked to carry a feature block.
    fn layer_of(&self, policy: &Policy) -> Result<(&'static str, &'static str)> {
        let config = policy.config();
        let mismatch = |problem: String| Error::EmbeddingMismatch {
            source_name: format!("class {}", self.class),
            problems: vec![problem],
        };
        let Some(names) = first_layer(config.kind) else {
            return Err(mismatch(format!(
                "a {:?} policy has no first linear layer over its input to fold an embedding \
                 into (RL² and the MLP have)",
                config.kind
            )));
        };
        if config.obs_dim < COMMON_WIDTH {
            return Err(mismatch(format!(
                "the policy reads {} observations, fewer than the {COMMON_WIDTH} features of a \
                 trading observation",
                config.obs_dim
            )));
        }
        Ok(names)
    }

    /// The composed parameters of `policy`'s network for weights `tensors` (the base's, or
    /// any of the same shapes): the first layer's weight and bias replaced as in the module
    /// docs, every other tensor as it is.
    ///
    /// # Errors
    /// [`Error::EmbeddingMismatch`] for a policy kind without a first linear layer or
    /// without a feature block; candle errors.
    pub fn compose(
        &self,
        policy: &Policy,
        tensors: &HashMap<String, Tensor>,
    ) -> Result<HashMap<String, Tensor>> {
        let (w_name, b_name) = self.layer_of(policy)?;
        let missing = |name: &str| Error::EmbeddingMismatch {
            source_name: "base tensors".into(),
            problems: vec![format!("{name}: missing")],
        };
        let w = tensors.get(w_name).ok_or_else(|| missing(w_name))?; // (H, in)
        let b = tensors.get(b_name).ok_or_else(|| missing(b_name))?; // (H)
        let input = w.dim(1)?;
        let w_f = w.narrow(1, 0, COMMON_WIDTH)?; // (H, 11)
        let m = self
            .weight
            .as_tensor()
            .matmul(&self.selection(w.device())?)?; // (11, 11)
        let mut parts = vec![w_f.matmul(&m)?];
        if input > COMMON_WIDTH {
            parts.push(w.narrow(1, COMMON_WIDTH, input - COMMON_WIDTH)?);
        }
        let w_eff = Tensor::cat(&parts, 1)?; // (H, in)
        let shift = w_f
            .matmul(&self.bias.as_tensor().unsqueeze(1)?)?
            .squeeze(1)?; // (H)
        let mut out = tensors.clone();
        out.insert(w_name.to_owned(), w_eff);
        out.insert(b_name.to_owned(), (b + shift)?);
        Ok(out)
    }

    /// A new policy with `base`'s weights composed with this embedding.
    ///
    /// # Errors
    /// As [`ClassEmbedding::compose`], agent errors.
    pub fn composed_policy(&self, base: &Policy) -> Result<Policy> {
        let tensors = self.compose(base, &base.tensors())?;
        Ok(Policy::from_tensors(
            base.config(),
            &tensors,
            base.device(),
        )?)
    }

    /// Pulls the gradients of the composed parameters back (module docs): the gradients of
    /// the uncomposed parameters `tensors` (same names and order as `grads`) and those of
    /// [`ClassEmbedding::vars`].
    ///
    /// # Errors
    /// [`Error::EmbeddingMismatch`] when `grads` or `tensors` lack the first layer; candle
    /// errors.
    pub fn pullback(
        &self,
        policy: &Policy,
        tensors: &HashMap<String, Tensor>,
        grads: &[(String, Tensor)],
    ) -> Result<EmbeddingGradients> {
        let (w_name, b_name) = self.layer_of(policy)?;
        let missing = |what: &str, name: &str| Error::EmbeddingMismatch {
            source_name: what.into(),
            problems: vec![format!("{name}: missing")],
        };
        let find = |name: &str| {
            grads
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, g)| g)
                .ok_or_else(|| missing("gradients", name))
        };
        let g_w = find(w_name)?; // (H, in)
        let g_b = find(b_name)?; // (H)
        let w = tensors
            .get(w_name)
            .ok_or_else(|| missing("tensors", w_name))?;
        let input = w.dim(1)?;
        let w_f = w.narrow(1, 0, COMMON_WIDTH)?; // (H, 11)
        let s = self.selection(w.device())?; // (d_c, 11)
        let e = self.weight.as_tensor(); // (11, d_c)
        let m = e.matmul(&s)?; // (11, 11)
        let g_f = g_w.narrow(1, 0, COMMON_WIDTH)?; // (H, 11)
        let g_b_col = g_b.unsqueeze(1)?; // (H, 1)
        let bias_row = self.bias.as_tensor().unsqueeze(0)?; // (1, 11)
        let g_w_f = (g_f.matmul(&m.t()?)? + g_b_col.matmul(&bias_row)?)?; // (H, 11)
        let mut parts = vec![g_w_f];
        if input > COMMON_WIDTH {
            parts.push(g_w.narrow(1, COMMON_WIDTH, input - COMMON_WIDTH)?);
        }
        let g_w_base = Tensor::cat(&parts, 1)?;
        let w_f_t = w_f.t()?; // (11, H)
        let g_e = w_f_t.matmul(&g_f)?.matmul(&s.t()?)?; // (11, d_c)
        let g_e_bias = w_f_t.matmul(&g_b_col)?.squeeze(1)?; // (11)
        let base_grads = grads
            .iter()
            .map(|(n, g)| {
                let g = if n == w_name {
                    g_w_base.clone()
                } else {
                    g.clone()
                };
                (n.clone(), g)
            })
            .collect();
        Ok(EmbeddingGradients {
            base: base_grads,
            embedding: vec![g_e, g_e_bias],
        })
    }
}

/// The sidecar of [`EMBEDDINGS_FILE`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingsMeta {
    /// Always [`EMBEDDINGS_FORMAT`].
    pub format: String,
    /// Version of mrl-fewshot that wrote the file.
    pub crate_version: String,
    /// Width of the common representation ([`COMMON_WIDTH`]).
    pub common_width: usize,
    /// Each class's feature names, in column order.
    pub classes: BTreeMap<String, Vec<String>>,
}

/// The embeddings of every class of a run, by class name.
#[derive(Debug, Default)]
pub struct ClassEmbeddings {
    classes: BTreeMap<String, ClassEmbedding>,
    /// Classes whose embedding is the zero padding it started from, not learned.
    fresh: BTreeSet<String>,
}

impl ClassEmbeddings {
    /// Zero-padding embeddings ([`ClassEmbedding::padding`]) for every class of `classes`.
    ///
    /// # Errors
    /// As [`parse_features`].
    pub fn padding(classes: &BTreeMap<String, ClassConfig>, device: &Device) -> Result<Self> {
        let mut out = BTreeMap::new();
        for (name, class) in classes {
            let features = class.parsed_features(name)?;
            out.insert(
                name.clone(),
                ClassEmbedding::padding(name, &features, device)?,
            );
        }
        let fresh = out.keys().cloned().collect();
        Ok(Self {
            classes: out,
            fresh,
        })
    }

    /// The embedding of `class`.
    pub fn get(&self, class: &str) -> Option<&ClassEmbedding> {
        self.classes.get(class)
    }

    /// Sets (or replaces) the embedding of its class (a trained one: no longer fresh).
    pub fn insert(&mut self, embedding: ClassEmbedding) {
        self.fresh.remove(&embedding.class);
        self.classes.insert(embedding.class.clone(), embedding);
    }

    /// Whether `class`'s embedding is the zero padding it starts from rather than a learned
    /// one (a class [`ClassEmbeddings::load`] found no embedding for, or one of
    /// [`ClassEmbeddings::padding`]): its inner loop should train it.
    pub fn is_fresh(&self, class: &str) -> bool {
        self.fresh.contains(class)
    }

    /// The class names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.classes.keys().map(String::as_str).collect()
    }

    /// Every class's [`ClassEmbedding::vars`], classes in name order.
    pub fn vars(&self) -> Vec<Var> {
        self.classes
            .values()
            .flat_map(ClassEmbedding::vars)
            .collect()
    }

    /// Every class's [`ClassEmbedding::names`], in [`ClassEmbeddings::vars`] order.
    pub fn param_names(&self) -> Vec<String> {
        self.classes
            .values()
            .flat_map(ClassEmbedding::names)
            .collect()
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        self.classes.len()
    }

    /// Whether there is no class.
    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }

    /// The embeddings as safetensors bytes (deterministic: the same parameters give the
    /// same bytes).
    ///
    /// # Errors
    /// [`Error::BadEmbeddingFile`] from the serialiser, candle errors.
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        for e in self.classes.values() {
            for (name, var) in e.names().into_iter().zip(e.vars()) {
                tensors.push((name, var.as_tensor().to_device(&Device::Cpu)?));
            }
        }
        safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), None).map_err(|e| {
            Error::BadEmbeddingFile {
                path: "<memory>".into(),
                reason: e.to_string(),
            }
        })
    }

    /// The sidecar describing these embeddings.
    pub fn meta(&self) -> EmbeddingsMeta {
        EmbeddingsMeta {
            format: EMBEDDINGS_FORMAT.to_owned(),
            crate_version: env!("CARGO_PKG_VERSION").to_owned(),
            common_width: COMMON_WIDTH,
            classes: self
                .classes
                .iter()
                .map(|(n, e)| {
                    (
                        n.clone(),
                        e.features.iter().map(|f| f.name().into()).collect(),
                    )
                })
                .collect(),
        }
    }

    /// Writes [`EMBEDDINGS_FILE`] and its sidecar `embeddings.json` into `dir`, each
    /// atomically, weights first.
    ///
    /// # Errors
    /// I/O, JSON and serialiser errors naming the file.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(EMBEDDINGS_FILE);
        write_atomic(&path, &self.to_safetensors()?)?;
        let side = sidecar_path(&path);
        let json = serde_json::to_vec_pretty(&self.meta()).map_err(|source| Error::Json {
            path: side.clone(),
            source,
        })?;
        write_atomic(&side, &json)?;
        tracing::debug!(dir = %dir.display(), classes = self.len(), "saved class embeddings");
        Ok(())
    }

    /// Loads the embeddings saved in `dir` and checks them against the config's `classes`:
    /// every saved class must be in the config with the same features in the same order. A
    /// class of the config without a saved embedding (one the base was not meta-trained on)
    /// gets the zero-padding embedding, to be trained in the inner loop.
    ///
    /// # Errors
    /// [`Error::BadEmbeddingFile`] for a missing or foreign file, [`Error::EmbeddingMismatch`]
    /// listing every class that is missing from the config, names other features, or has a
    /// tensor of the wrong shape; as [`parse_features`].
    pub fn load(dir: &Path, classes: &BTreeMap<String, ClassConfig>) -> Result<Self> {
        let path = dir.join(EMBEDDINGS_FILE);
        let bad = |reason: String| Error::BadEmbeddingFile {
            path: path.clone(),
            reason,
        };
        let side = sidecar_path(&path);
        let text =
            std::fs::read(&side).map_err(|e| bad(format!("sidecar {}: {e}", side.display())))?;
        let meta: EmbeddingsMeta = serde_json::from_slice(&text).map_err(|source| Error::Json {
            path: side.clone(),
            source,
        })?;
        if meta.format != EMBEDDINGS_FORMAT {
            return Err(bad(format!(
                "format {:?}, expected {EMBEDDINGS_FORMAT:?}",
                meta.format
            )));
        }
        let mut problems = Vec::new();
        if meta.common_width != COMMON_WIDTH {
            problems.push(format!(
                "common width {} in file, expected {COMMON_WIDTH}",
                meta.common_width
            ));
        }
        for (name, saved) in &meta.classes {
            match classes.get(name) {
                None => problems.push(format!(
                    "class {name}: in the checkpoint, not in the config's [classes]"
                )),
                Some(c) if c.features != *saved => problems.push(format!(
                    "class {name}: features [{}] in the checkpoint, [{}] in the config",
                    saved.join(", "),
                    c.features.join(", ")
                )),
                Some(_) => {}
            }
        }
        let bytes = std::fs::read(&path).map_err(Error::io(&path))?;
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| bad(e.to_string()))?;
        let mut out = BTreeMap::new();
        let mut fresh = BTreeSet::new();
        for (name, class) in classes {
            let features = class.parsed_features(name)?;
            if !meta.classes.contains_key(name) {
                fresh.insert(name.clone());
                tracing::info!(class = %name, "no meta-learned embedding: zero padding, trained in the inner loop");
                out.insert(
                    name.clone(),
                    ClassEmbedding::padding(name, &features, &Device::Cpu)?,
                );
                continue;
            }
            let (w, b) = (format!("{name}.weight"), format!("{name}.bias"));
            match (tensors.get(&w), tensors.get(&b)) {
                (Some(w), Some(b)) => match ClassEmbedding::from_tensors(name, &features, w, b) {
                    Ok(e) => {
                        out.insert(name.clone(), e);
                    }
                    Err(Error::EmbeddingMismatch { problems: p, .. }) => problems.extend(p),
                    Err(e) => return Err(e),
                },
                _ => problems.push(format!("class {name}: tensors {w} or {b} missing")),
            }
        }
        if !problems.is_empty() {
            return Err(Error::EmbeddingMismatch {
                source_name: path.display().to_string(),
                problems,
            });
        }
        Ok(Self {
            classes: out,
            fresh,
        })
    }
}

#[cfg(test)]
mod tests {
    use mrl_agent::AgentConfig;

    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn features_are_checked_by_name() {
        assert_eq!(
            parse_features("fx", &names(&["rsi", "ret_1"])).unwrap(),
            vec![Feature::Rsi, Feature::Ret1]
        );
        let err = parse_features("fx", &names(&["ret_1", "carry"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "class fx: unknown feature \"carry\" (known: {})",
                FEATURE_NAMES.join(", ")
            )
        );
        assert_eq!(
            parse_features("fx", &[]).unwrap_err().to_string(),
            "class fx: empty feature set (name at least one feature)"
        );
        assert_eq!(
            parse_features("fx", &names(&["rsi", "rsi"]))
                .unwrap_err()
                .to_string(),
            "class fx: feature \"rsi\" named twice"
        );
    }

    #[test]
    fn padding_places_each_feature_in_its_slot() {
        let e = ClassEmbedding::padding("a", &[Feature::Rsi, Feature::Ret5], &Device::Cpu).unwrap();
        let w: Vec<Vec<f32>> = e.weight.as_tensor().to_vec2().unwrap();
        assert_eq!(w.len(), 11);
        assert_eq!(w[Feature::Rsi.index()], vec![1.0, 0.0]);
        assert_eq!(w[Feature::Ret5.index()], vec![0.0, 1.0]);
        let ones: f32 = w.iter().flatten().sum();
        assert_eq!(ones, 2.0);
    }

    #[test]
    fn transformer_policies_are_refused() {
        let agent = AgentConfig {
            obs_dim: 14,
            hidden: 8,
            kind: PolicyKind::Transformer,
            ..Default::default()
        };
        let policy = Policy::new(&agent, &Device::Cpu, 0).unwrap();
        let e = ClassEmbedding::padding("a", &[Feature::Rsi], &Device::Cpu).unwrap();
        assert!(matches!(
            e.composed_policy(&policy),
            Err(Error::EmbeddingMismatch { .. })
        ));
    }
}
