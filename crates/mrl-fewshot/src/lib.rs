//! # mrl-fewshot
//!
//! Few-shot adaptation of the agents of [`mrl_agent`] by gradient steps, beside RL²'s
//! adaptation by forward passes: a new asset is mastered from a few weeks of its own bars
//! with K gradient steps from a meta-learned initialisation.
//!
//! ```text
//! inner loop   K PPO gradient steps on one task's own rollouts          adapt
//!                (all parameters, or low-rank adapters on a frozen base)
//! Reptile      θ ← θ + ε · mean_i (θ'_i − θ)                            reptile_step
//! FOMAML       θ ← Adam(θ, mean_i ∇θ' L(θ'_i) on a fresh query rollout) fomaml_gradient
//! adapters     W = W_base + (α/r)·B·A on encoder, GRU and heads         LowRankAdapter
//! online       while trading walk-forward: every N bars, adapt on the   trade_online
//!                recent bars, θ ← θ + clip(ε·(θ' − θ)), keep it only if
//!                the most recent bars' return does not degrade
//! classes      z = E_c·x_c + e_c: class c's own d_c features to the     ClassEmbedding
//!                policy's 11-wide feature block, folded into its first
//!                layer; meta-learned with the base (Reptile), frozen or
//!                adapted with the task-specific layers at adaptation
//! ```
//!
//! Full MAML would differentiate through the inner steps; candle's backward pass records
//! no graph of its own, so second-order terms are out of reach and only the first-order
//! learners exist here.
//!
//! ## Central types
//!
//! - [`adapt`] / [`InnerConfig`] / [`AdaptSetup`]: the inner loop on any
//!   [`TaskDistribution`](mrl_env::TaskDistribution), usually a [`FixedTask`] (one
//!   synthetic market, or the first N bars of a real asset: [`FixedTask::first_bars`]).
//! - [`LowRankAdapter`] / [`LoraConfig`]: adapters, their merge and gradient pull-back,
//!   and their files (safetensors + JSON sidecar).
//! - [`reptile_step`], [`fomaml_gradient`], [`MetaLearner`], [`meta_train`]: the
//!   meta-learners and the training loop ([`MetaTrainConfig`]: an `mrl train` config plus
//!   a `[meta]` table).
//! - [`ClassEmbedding`] / [`ClassEmbeddings`] / [`ClassConfig`]: per-class feature sets
//!   (`[classes.NAME]` tables) and their embeddings, [`adapt_class`] through one,
//!   [`reptile_step_classes`] / [`fomaml_gradient_classes`] to meta-learn them, their files
//!   beside a checkpoint.
//! - [`trade_online`] / [`OnlineConfig`]: online adaptation while a policy trades a
//!   held-out series walk-forward, with a step-norm limit and rollback on a validation
//!   window of the most recent bars.
//! - [`run_benchmark`] / [`FewshotReport`]: the few-shot benchmark (`mrl eval fewshot`):
//!   meta, pretrain-then-fine-tune and scratch after K steps on held-out tasks beside RL²
//!   with zero steps and the baselines, pooled over seeds × tasks, steps to reach a target
//!   Sharpe.
//!
//! ## Example
//!
//! ```
//! use std::sync::Arc;
//! use mrl_agent::{AgentConfig, Policy};
//! use mrl_env::{BanditDistribution, Split};
//! use mrl_fewshot::{AdaptSetup, FixedTask, InnerConfig, adapt};
//! use mrl_ppo::TrainConfig;
//!
//! # fn main() -> mrl_fewshot::Result<()> {
//! let dist = BanditDistribution::new(3, 10)?;
//! let task = Arc::new(FixedTask::sample(&dist, Split::Test, 7)?); // one new task
//! let agent = AgentConfig { obs_dim: 1, hidden: 8, ..Default::default() };
//! let base = Policy::new(&agent, &candle_core::Device::Cpu, 0)?;
//! let inner = InnerConfig { steps: 3, n_envs: 4, ..Default::default() };
//! let setup = AdaptSetup::from_train(&TrainConfig::default(), 1.0);
//! let adapted = adapt(&base, task, &inner, &setup, 42)?;
//! assert_eq!(adapted.steps.len(), 3);
//! # Ok(())
//! # }
//! ```

mod adapter;
mod bench_report;
mod benchmark;
mod embedding;
mod error;
mod inner;
mod meta;
mod online;
mod task;
mod transfer;

pub use adapter::{ADAPTER_FORMAT, AdapterMeta, LoraConfig, LowRankAdapter};
pub use bench_report::{
    CellSummary, FewshotReport, Interval, MethodSummary, OnlineGain, Reach, steps_to_reach,
};
pub use benchmark::{
    BENCHMARK_FORMAT, BenchmarkConfig, BenchmarkProgress, BenchmarkRaw, BenchmarkSettings, Cell,
    DEFAULT_KS, GivenPolicy, HeldOutTask, Method, MethodRaw, OnlineTally, RowKind, evaluate_policy,
    held_out_class, held_out_tasks, run_benchmark,
};
pub use embedding::{
    COMMON_WIDTH, ClassConfig, ClassEmbedding, ClassEmbeddings, EMBEDDINGS_FILE, EMBEDDINGS_FORMAT,
    EmbeddingGradients, EmbeddingTraining, EmbeddingsMeta, parse_features, validate_classes,
};
pub use error::{Error, Result};
pub use inner::{
    AdaptSetup, Adapted, InnerConfig, InnerOptimizer, InnerStep, TaskRollouts, TaskSeeds, adapt,
    adapt_class, adapt_class_snapshots, adapt_snapshots, detached_copy, sgd_step,
};
pub use meta::{
    CLASSES_FILE, FEWSHOT_STATE_FILE, FEWSHOT_STATE_FORMAT, FewshotState, META_FILE, META_LOG_FILE,
    META_OPTIMIZER_FILE, MetaAlgorithm, MetaConfig, MetaIterationStats, MetaLearner, MetaSummary,
    MetaTrainConfig, TaskGradient, class_tasks, fomaml_gradient, fomaml_gradient_classes,
    fomaml_task_gradient, meta_train, meta_train_on, meta_train_resume, meta_train_resume_on,
    reptile_step, reptile_step_classes, return_scale_of,
};
pub use online::{
    OnlineConfig, OnlineRun, OnlineSetup, OnlineUpdate, UpdateOutcome, limited_step, trade_online,
};
pub use task::{DEFAULT_ADAPTATION_BARS, FixedTask};
pub use transfer::TransferConfig;
