//! [`AgentConfig`]: the sizes and kind of a policy network, saved beside every checkpoint.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::norm::InputNorm;

/// Which network a [`Policy`](crate::Policy) is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    /// RL² actor-critic: Linear + ReLU encoder → GRU → policy and value heads. Its hidden
    /// state carries what it learned about the task across the episodes of a trial.
    #[default]
    Rl2,
    /// Memory-less baseline: Linear + ReLU → Linear + ReLU → policy and value heads, on the
    /// same input row (so it still sees the previous action, reward and done flag).
    Mlp,
    /// Causal Transformer over the trial's input rows (pre-norm blocks, rotary positions,
    /// a sliding causal window of [`TransformerConfig::context`] steps): its memory is the
    /// keys and values of the last `context` steps of the trial.
    Transformer,
    /// Task-inference (context) agent after VariBAD (Zintgraf et al. 2020, "VariBAD: A Very
    /// Good Method for Bayes-Adaptive Deep RL via Meta-Learning"): a GRU context encoder over
    /// the same input rows as RL² produces a belief `z_t` about the task (a diagonal Gaussian
    /// or a point estimate, [`TaskInferenceConfig`]), and the policy and value heads read
    /// only `[s_t, z_t]`. Trained with PPO plus an auxiliary belief loss.
    #[serde(rename = "task_inference")]
    TaskInference,
}

impl PolicyKind {
    /// Short lowercase name, as written in checkpoint sidecars (`"rl2"`, `"mlp"`,
    /// `"transformer"`, `"task_inference"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rl2 => "rl2",
            Self::Mlp => "mlp",
            Self::Transformer => "transformer",
            Self::TaskInference => "task_inference",
        }
    }
}

/// The form of a task-inference agent's belief `z_t` ([`PolicyKind::TaskInference`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BeliefKind {
    /// A diagonal Gaussian `N(μ_t, diag(exp(log σ²_t)))` as VariBAD's posterior: the belief
    /// head outputs `latent` means and `latent` log-variances, and the policy and value
    /// heads read both (`[s_t, μ_t, log σ²_t]`), so the agent sees how unsure it is.
    /// Supervised training minimises the Gaussian negative log-likelihood of the task's
    /// true parameters.
    #[default]
    Gaussian,
    /// A point estimate `z_t` (`latent` values), trained by mean squared error; the heads
    /// read `[s_t, z_t]`.
    Point,
}

/// What the auxiliary loss of a task-inference agent trains its belief on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BeliefTarget {
    /// Supervised: the task's hidden parameters, which the task distribution knows
    /// (`mrl_env::Env::task_parameters`: AR(1) `φ`; a Markov regime market's current state
    /// as its drift in bp and volatility in % per bar; a bandit's arm means); the belief is
    /// `latent` = the number of parameters wide and is read directly as the estimate of them.
    #[default]
    Task,
    /// Reconstruction, for tasks whose parameters are unknown (real assets): a decoder
    /// predicts the step's reward `r_t` from `[b_{t−1}, s_t, one_hot(a_t)]`, where
    /// `b_{t−1}` is the belief before the step (mean and log-variance for a Gaussian; at
    /// `t = 0` the belief of the zero state, the prior), trained by squared error. The
    /// belief width `latent` is free. Deterministic: no sample of `z` and no KL term
    /// (VariBAD's ELBO samples `z` and pulls each posterior towards the previous one).
    Reward,
}

/// Settings of the task-inference agent ([`PolicyKind::TaskInference`]); its encoder and
/// GRU width is [`AgentConfig::hidden`].
///
/// Defaults: a Gaussian belief (VariBAD, Zintgraf et al. 2020) of width 1 trained on the
/// task's hidden parameters (one for the AR(1) family's `φ`; set `latent` to `k` for
/// `k`-armed bandits).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskInferenceConfig {
    /// Gaussian (mean and log-variance) or point belief. Default Gaussian.
    pub belief: BeliefKind,
    /// Width of the belief `z_t` (per moment for a Gaussian). Default 1.
    pub latent: usize,
    /// What the auxiliary loss predicts. Default the task's hidden parameters.
    pub target: BeliefTarget,
    /// Hidden layers (Linear + ReLU, width `hidden`) between `[s_t, belief_t]` and the heads:
    /// 1 or 2. Default 2, the depth of the MLP baseline's body: the action of an AR(1)
    /// trader depends on the product of the belief and the last return, which one ReLU
    /// layer approximates poorly (measured on `configs/synthetic-ar1-belief.toml`, seed 1,
    /// 16 held-out markets: held-out Sharpe 6.8 with one layer, 13.7 with two; RL² 15.1).
    pub body_layers: usize,
}

impl Default for TaskInferenceConfig {
    fn default() -> Self {
        Self {
            belief: BeliefKind::Gaussian,
            latent: 1,
            target: BeliefTarget::Task,
            body_layers: 2,
        }
    }
}

impl TaskInferenceConfig {
    /// Whether every field has its default value (such a section is not written out).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Width of what the belief head outputs and the heads read: `2 · latent` for a
    /// Gaussian (means and log-variances), `latent` for a point belief.
    pub fn belief_width(&self) -> usize {
        match self.belief {
            BeliefKind::Gaussian => 2 * self.latent,
            BeliefKind::Point => self.latent,
        }
    }
}

/// Sizes of the causal Transformer ([`PolicyKind::Transformer`]); its model width is
/// [`AgentConfig::hidden`].
///
/// Defaults follow the small decision-transformer style policies of the meta-RL literature
/// (TrMRL, Melo 2022: a few layers and heads over the recent history): 2 layers, 4 heads,
/// a feed-forward width of 4 × the model width (Vaswani et al. 2017), a 256-step context.
///
/// **Trials longer than the context** use a sliding causal window: step `t` attends to
/// steps `t − context + 1 ..= t` of its trial. Positions are rotary (Su et al. 2021,
/// "RoFormer"), which encode only the distance between two steps, so the same weights
/// apply at every offset of the window and the rollout's ring-buffer KV cache computes
/// exactly what the full-sequence forward does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransformerConfig {
    /// Number of pre-norm blocks. Default 2.
    pub layers: usize,
    /// Attention heads; must divide the model width, and the head width must be even
    /// (rotary positions rotate pairs). Default 4.
    pub heads: usize,
    /// Feed-forward width as a multiple of the model width. Default 4.
    pub ff_mult: usize,
    /// Steps of the trial one step attends to (itself included). Default 256.
    pub context: usize,
}

impl Default for TransformerConfig {
    fn default() -> Self {
        Self {
            layers: 2,
            heads: 4,
            ff_mult: 4,
            context: 256,
        }
    }
}

impl TransformerConfig {
    /// Whether every field has its default value (such a section is not written out).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Sizes and kind of a policy network.
///
/// The input row of the network is `obs_dim + n_actions + 2` wide (see
/// [`InputLayout`](crate::InputLayout)). Build with `..Default::default()`:
///
/// ```
/// use mrl_agent::{AgentConfig, PolicyKind};
/// let config = AgentConfig { hidden: 64, kind: PolicyKind::Mlp, ..Default::default() };
/// assert_eq!(config.input_dim(), 14 + 3 + 2);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Network kind. Default [`PolicyKind::Rl2`].
    pub kind: PolicyKind,
    /// Observation width. Default 14: the trading env's 11 market features, position,
    /// episode P&L and fraction of the episode elapsed.
    pub obs_dim: usize,
    /// Number of discrete actions. Default 3 (Buy, Sell, Hold).
    pub n_actions: usize,
    /// Hidden width of the encoder, the GRU and (for the MLP) both hidden layers.
    /// Default 128, as in the design document and the PyTorch reference.
    pub hidden: usize,
    /// Input statistics fitted on training data ([`InputNorm`]), applied to every input row
    /// the policy reads. `None` (the default, and what a checkpoint written without them
    /// reads as) is the explicit identity: rows enter the network as the env wrote them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_norm: Option<InputNorm>,
    /// Sizes of the Transformer (read only when `kind` is [`PolicyKind::Transformer`]).
    #[serde(skip_serializing_if = "TransformerConfig::is_default")]
    pub transformer: TransformerConfig,
    /// Settings of the task-inference agent (read only when `kind` is
    /// [`PolicyKind::TaskInference`]).
    #[serde(skip_serializing_if = "TaskInferenceConfig::is_default")]
    pub task_inference: TaskInferenceConfig,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            kind: PolicyKind::Rl2,
            obs_dim: 14,
            n_actions: 3,
            hidden: 128,
            input_norm: None,
            transformer: TransformerConfig::default(),
            task_inference: TaskInferenceConfig::default(),
        }
    }
}

impl AgentConfig {
    /// Width of one input row: `obs_dim + n_actions + 2`.
    pub fn input_dim(&self) -> usize {
        self.obs_dim + self.n_actions + 2
    }

    /// Checks that every size is usable (all non-zero, at least 2 actions).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, value: usize, reason| {
            Err(Error::InvalidConfig {
                field,
                value: value.to_string(),
                reason,
            })
        };
        if self.obs_dim == 0 {
            return bad("obs_dim", self.obs_dim, "must be at least 1");
        }
        if self.n_actions < 2 {
            return bad("n_actions", self.n_actions, "must be at least 2");
        }
        if self.hidden == 0 {
            return bad("hidden", self.hidden, "must be at least 1");
        }
        if let Some(norm) = &self.input_norm {
            norm.validate(self.obs_dim)?;
        }
        if self.kind == PolicyKind::Transformer {
            let t = &self.transformer;
            if t.layers == 0 {
                return bad("transformer.layers", t.layers, "must be at least 1");
            }
            if t.heads == 0 || !self.hidden.is_multiple_of(t.heads) {
                return bad("transformer.heads", t.heads, "must divide hidden");
            }
            if !(self.hidden / t.heads).is_multiple_of(2) {
                return bad(
                    "transformer.heads",
                    t.heads,
                    "hidden / heads must be even (rotary positions rotate pairs)",
                );
            }
            if t.ff_mult == 0 {
                return bad("transformer.ff_mult", t.ff_mult, "must be at least 1");
            }
            if t.context == 0 {
                return bad("transformer.context", t.context, "must be at least 1");
            }
        }
        if self.kind == PolicyKind::TaskInference {
            let ti = &self.task_inference;
            if ti.latent == 0 {
                return bad("task_inference.latent", ti.latent, "must be at least 1");
            }
            if !(1..=2).contains(&ti.body_layers) {
                return bad(
                    "task_inference.body_layers",
                    ti.body_layers,
                    "must be 1 or 2",
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_reference_model() {
        let c = AgentConfig::default();
        assert_eq!(
            (c.obs_dim, c.n_actions, c.hidden, c.input_dim()),
            (14, 3, 128, 19)
        );
        assert_eq!(c.kind, PolicyKind::Rl2);
        c.validate().unwrap();
    }

    #[test]
    fn serde_fills_defaults_and_rejects_unknown_fields() {
        let c: AgentConfig = serde_json::from_str(r#"{"hidden": 32, "kind": "mlp"}"#).unwrap();
        assert_eq!(
            c,
            AgentConfig {
                hidden: 32,
                kind: PolicyKind::Mlp,
                ..Default::default()
            }
        );
        assert!(serde_json::from_str::<AgentConfig>(r#"{"hiden": 32}"#).is_err());
        let c: AgentConfig = serde_json::from_str(
            r#"{"kind": "task_inference", "task_inference": {"belief": "point", "latent": 5}}"#,
        )
        .unwrap();
        assert_eq!(c.kind, PolicyKind::TaskInference);
        assert_eq!(c.task_inference.belief, BeliefKind::Point);
        assert_eq!(c.task_inference.belief_width(), 5);
        assert_eq!(TaskInferenceConfig::default().belief_width(), 2);
        assert_eq!(
            serde_json::to_string(&c.kind).unwrap(),
            "\"task_inference\""
        );
    }

    #[test]
    fn validate_names_the_field() {
        for (c, field) in [
            (
                AgentConfig {
                    obs_dim: 0,
                    ..Default::default()
                },
                "obs_dim",
            ),
            (
                AgentConfig {
                    n_actions: 1,
                    ..Default::default()
                },
                "n_actions",
            ),
            (
                AgentConfig {
                    hidden: 0,
                    ..Default::default()
                },
                "hidden",
            ),
            (
                AgentConfig {
                    kind: PolicyKind::Transformer,
                    hidden: 12,
                    transformer: TransformerConfig {
                        heads: 5,
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "transformer.heads",
            ),
            (
                AgentConfig {
                    kind: PolicyKind::Transformer,
                    hidden: 12,
                    transformer: TransformerConfig {
                        heads: 4, // head width 3 is odd
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "transformer.heads",
            ),
            (
                AgentConfig {
                    kind: PolicyKind::Transformer,
                    transformer: TransformerConfig {
                        context: 0,
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "transformer.context",
            ),
            (
                AgentConfig {
                    kind: PolicyKind::TaskInference,
                    task_inference: TaskInferenceConfig {
                        latent: 0,
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "task_inference.latent",
            ),
            (
                AgentConfig {
                    kind: PolicyKind::TaskInference,
                    task_inference: TaskInferenceConfig {
                        body_layers: 3,
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "task_inference.body_layers",
            ),
        ] {
            match c.validate() {
                Err(Error::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected InvalidConfig for {field}, got {other:?}"),
            }
        }
    }
}
