//! [`RolloutWorkspace`]: one policy step for `B` trials at a time, without an autograd
//! graph and without per-step allocation of large buffers, with action sampling.

use candle_core::{Device, Tensor};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, check_len};
use crate::input::{InputLayout, PolicyInputs};
use crate::kernels::fused::{FusedNet, Rows, Scratch, Simd, forward_parallel};
use crate::kernels::math::softmax_row;
use crate::kernels::transformer_step::{CachedStep, StepRows};
use crate::nets::Policy;
use crate::sampling::{argmax, draw};

/// Tuning knobs of the fused CPU step. Defaults suit H = 128 on a few cores.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RolloutOptions {
    /// Threads (row blocks) per step; 0 = the size of the current rayon pool. Default 0.
    pub threads: usize,
    /// Fewest rows a thread gets; smaller batches use fewer threads. 0 (the default)
    /// picks by network: 16 for the GRU, 64 for the MLP. Measured on 2 cores at H = 128
    /// (`mrl train` on `configs/crypto-multi-asset.toml`, B = 32, whose checkpoints come
    /// out byte-identical either way): two threads of 16 rows step the GRU 1.4× faster
    /// than one of 32, while the MLP's cheaper step is 1.8× slower split that way.
    pub min_rows_per_thread: usize,
    /// Rows per tile: the GEMM outputs of one tile stay in cache. Default 128.
    pub tile_rows: usize,
}

impl Default for RolloutOptions {
    fn default() -> Self {
        Self {
            threads: 0,
            min_rows_per_thread: 0,
            tile_rows: 128,
        }
    }
}

/// What a step produced, per trial (row), borrowed from the workspace until the next step.
#[derive(Clone, Copy, Debug)]
pub struct StepView<'a> {
    /// Chosen actions, `(B)`.
    pub actions: &'a [usize],
    /// `log π(a | ·)` of the chosen actions, `(B)`.
    pub log_probs: &'a [f32],
    /// State values `V`, `(B)`.
    pub values: &'a [f32],
    /// Logits, `(B, A)` row-major.
    pub logits: &'a [f32],
    /// Softmax probabilities, `(B, A)` row-major.
    pub probs: &'a [f32],
}

/// How the workspace computes the forward step.
#[derive(Debug)]
enum Backend {
    /// Fused f32 CPU path on a weight snapshot.
    Fused {
        net: FusedNet,
        scratch: Vec<Scratch>,
        simd: Simd,
        threads: usize,
    },
    /// Plain candle tensors on the policy's device (shares the policy's `Var`s).
    Candle { policy: Policy, h: Option<Tensor> },
    /// The Transformer's cached f32 host step on a weight snapshot.
    Transformer(Box<CachedStep>),
}

/// Rollout state and buffers for `B` parallel trials: the hidden states, the input rows and
/// the per-step outputs. One [`step`](Self::step) builds the input rows, runs the network,
/// samples one action per trial and returns a [`StepView`].
///
/// On a CPU policy the step runs the fused f32 path (pre-transposed weight snapshot, GEMMs
/// through the `gemm` crate, gate arithmetic, heads and softmax fused per row, rows split
/// over rayon threads); call [`refresh`](Self::refresh) after every optimiser step, and
/// step from a rayon worker ([`in_worker_pool`](crate::in_worker_pool)) so that each step's
/// split forks in place rather than being handed over from outside the pool. On other
/// devices (CUDA), or with [`new_candle`](Self::new_candle), it runs [`Policy::step`] on
/// candle tensors and copies only logits and values back.
///
/// A task-inference policy steps on candle tensors ([`Policy::step`]) on every device (it
/// has no fused kernel in this version).
///
/// A Transformer policy always steps on the host with a key/value cache of the last
/// `context` steps of every trial (weights snapshotted to the host, as for the fused path;
/// call [`refresh`](Self::refresh) likewise): one step costs the row's matrix products plus
/// attention over at most `context` cached steps, and nothing of the past is recomputed.
///
/// Hidden states (and the Transformer's cache) start empty; reset a trial with
/// [`reset`](Self::reset) when a new trial starts in that slot (never at episode ends
/// inside a trial).
#[derive(Debug)]
pub struct RolloutWorkspace {
    layout: InputLayout,
    batch_size: usize,
    state_size: usize,
    backend: Backend,
    x: Vec<f32>,
    h: Vec<f32>,
    logits: Vec<f32>,
    values: Vec<f32>,
    probs: Vec<f32>,
    lse: Vec<f32>,
    actions: Vec<usize>,
    log_probs: Vec<f32>,
    /// Outputs of [`peek_values`](Self::peek_values): logits and probabilities `(B, A)`,
    /// values and log-sum-exps `(B)`, back to back.
    peek: Vec<f32>,
}

impl RolloutWorkspace {
    /// A workspace for `batch_size` trials with default [`RolloutOptions`]: fused when the
    /// policy lives on the CPU, candle tensors otherwise.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `batch_size` 0; candle errors copying weights.
    pub fn new(policy: &Policy, batch_size: usize) -> Result<Self> {
        Self::with_options(policy, batch_size, &RolloutOptions::default())
    }

    /// As [`new`](Self::new) with explicit options.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn with_options(
        policy: &Policy,
        batch_size: usize,
        options: &RolloutOptions,
    ) -> Result<Self> {
        if let Some(net) = policy.transformer_snapshot()? {
            let backend = Backend::Transformer(Box::new(CachedStep::new(net, batch_size)));
            return Self::build(policy, batch_size, backend);
        }
        if !policy.device().is_cpu() || policy.kind() == crate::PolicyKind::TaskInference {
            return Self::new_candle(policy, batch_size);
        }
        let net = policy.fused_snapshot()?;
        let threads = if options.threads == 0 {
            rayon::current_num_threads()
        } else {
            options.threads
        };
        let min_rows = match options.min_rows_per_thread {
            0 if net.is_recurrent() => 16,
            0 => 64,
            rows => rows,
        };
        let blocks = threads.min(batch_size / min_rows).max(1);
        let tile = options
            .tile_rows
            .max(1)
            .min(batch_size.div_ceil(blocks).max(1));
        let scratch = (0..blocks).map(|_| Scratch::new(&net, tile)).collect();
        let backend = Backend::Fused {
            net,
            scratch,
            simd: Simd::detect(),
            threads: blocks,
        };
        Self::build(policy, batch_size, backend)
    }

    /// A workspace that runs [`Policy::step`] on candle tensors on the policy's device (the
    /// CUDA path; on the CPU, the reference the fused path is checked against).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `batch_size` 0; [`Error::Unsupported`] for a Transformer
    /// (its step needs the cache: use [`new`](Self::new)).
    pub fn new_candle(policy: &Policy, batch_size: usize) -> Result<Self> {
        if policy.kind() == crate::PolicyKind::Transformer {
            return Err(Error::Unsupported {
                kind: policy.kind().as_str(),
                operation: "a candle rollout step",
                reason: "the Transformer steps with its KV cache; use RolloutWorkspace::new",
            });
        }
        Self::build(
            policy,
            batch_size,
            Backend::Candle {
                policy: policy.clone(),
                h: None,
            },
        )
    }

    fn build(policy: &Policy, batch_size: usize, backend: Backend) -> Result<Self> {
        if batch_size == 0 {
            return Err(Error::InvalidConfig {
                field: "batch_size",
                value: "0".into(),
                reason: "a rollout needs at least one trial",
            });
        }
        let c = policy.config();
        let layout = InputLayout::new(c);
        let (b, a, s) = (batch_size, c.n_actions, policy.state_size());
        let width = layout.width();
        tracing::debug!(
            batch_size,
            fused = matches!(backend, Backend::Fused { .. }),
            "rollout workspace"
        );
        Ok(Self {
            layout,
            batch_size,
            state_size: s,
            backend,
            x: vec![0.0; b * width],
            h: vec![0.0; b * s],
            logits: vec![0.0; b * a],
            values: vec![0.0; b],
            probs: vec![0.0; b * a],
            lse: vec![0.0; b],
            actions: vec![0; b],
            log_probs: vec![0.0; b],
            peek: vec![0.0; b * (2 * a + 2)],
        })
    }

    /// Number of parallel trials `B`.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Whether the fused CPU path runs the step.
    pub fn is_fused(&self) -> bool {
        matches!(self.backend, Backend::Fused { .. })
    }

    /// Row blocks (threads) per fused step; 1 for the candle path.
    pub fn threads(&self) -> usize {
        match self.backend {
            Backend::Fused { threads, .. } => threads,
            Backend::Candle { .. } | Backend::Transformer(_) => 1,
        }
    }

    /// Re-reads the weights and the input statistics from `policy` (after an optimiser step):
    /// the fused path copies a fresh snapshot (about 0.4 MB at H = 128); the candle path
    /// shares `policy`'s `Var`s.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `policy` has other sizes or kind than the workspace;
    /// candle errors copying weights.
    pub fn refresh(&mut self, policy: &Policy) -> Result<()> {
        let mismatch = || Error::InvalidConfig {
            field: "policy",
            value: format!("{:?}", policy.config()),
            reason: "differs from the policy the workspace was built for",
        };
        let layout = InputLayout::new(policy.config());
        let same_shape = layout.same_widths(&self.layout) && policy.state_size() == self.state_size;
        if !same_shape {
            return Err(mismatch());
        }
        // The statistics may have changed (running normalisation during training).
        self.layout = layout;
        match &mut self.backend {
            Backend::Fused { net, .. } => {
                let fresh = policy.fused_snapshot()?;
                if fresh.is_recurrent() != net.is_recurrent() || fresh.hidden != net.hidden {
                    return Err(mismatch());
                }
                *net = fresh;
            }
            Backend::Candle { policy: own, .. } => *own = policy.clone(),
            Backend::Transformer(cached) => match policy.transformer_snapshot()? {
                Some(fresh) if fresh.same_sizes(&cached.net) => cached.net = fresh,
                _ => return Err(mismatch()),
            },
        }
        Ok(())
    }

    /// Zeroes every hidden state (all trials start).
    ///
    /// # Errors
    /// Candle errors (candle path).
    pub fn reset_all(&mut self) -> Result<()> {
        self.h.fill(0.0);
        match &mut self.backend {
            Backend::Candle { h, .. } => *h = None,
            Backend::Transformer(cached) => cached.cache.reset_all(),
            Backend::Fused { .. } => {}
        }
        Ok(())
    }

    /// Zeroes the hidden state of one trial (a new trial starts in that slot).
    ///
    /// # Errors
    /// [`Error::TrialOutOfRange`]; candle errors (candle path).
    pub fn reset(&mut self, trial: usize) -> Result<()> {
        if trial >= self.batch_size {
            return Err(Error::TrialOutOfRange {
                trial,
                batch_size: self.batch_size,
            });
        }
        let s = self.state_size;
        if let Backend::Transformer(cached) = &mut self.backend {
            cached.cache.reset(trial);
        }
        if let Backend::Candle { h: Some(h), .. } = &mut self.backend {
            let (device, dims) = (h.device().clone(), h.dims().to_vec());
            let mut host = h.flatten_all()?.to_vec1::<f32>()?;
            host[trial * s..(trial + 1) * s].fill(0.0);
            *h = Tensor::from_vec(host, dims, &device)?;
        }
        self.h[trial * s..(trial + 1) * s].fill(0.0);
        Ok(())
    }

    /// The hidden states `(B, H)` row-major (empty for the MLP and the Transformer, whose
    /// memory is its cache). On the candle path this copies them from the device.
    ///
    /// # Errors
    /// Candle errors (candle path).
    pub fn hidden(&mut self) -> Result<&[f32]> {
        if let Backend::Candle { h: Some(h), .. } = &self.backend {
            let host = h.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
            self.h.copy_from_slice(&host);
        }
        Ok(&self.h)
    }

    /// Overwrites the hidden states with `h` `(B, H)` row-major (e.g. to continue a trial
    /// whose state was saved).
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] when `h` is not `B · H` long; candle errors (candle path).
    pub fn set_hidden(&mut self, h: &[f32]) -> Result<()> {
        check_len("h", h.len(), self.h.len())?;
        self.h.copy_from_slice(h);
        if let Backend::Candle { policy, h: state } = &mut self.backend
            && self.state_size > 0
        {
            let t = Tensor::from_slice(h, (self.batch_size, self.state_size), policy.device())?;
            *state = Some(t);
        }
        Ok(())
    }

    /// One step for all trials: builds the input rows from `inputs` (`B` rows), runs the
    /// network, and samples one action per trial from `softmax(logits)` with one `u32` draw
    /// of `rng` per trial, in trial order (so results do not depend on the thread count).
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] or [`Error::ActionOutOfRange`] for bad inputs,
    /// [`Error::NonFiniteLogits`] naming the first trial whose logits are NaN or infinite.
    pub fn step(
        &mut self,
        inputs: &PolicyInputs<'_>,
        rng: &mut ChaCha8Rng,
    ) -> Result<StepView<'_>> {
        self.forward(inputs)?;
        let a = self.layout.n_actions();
        for i in 0..self.batch_size {
            self.check_finite(i)?;
            let act = draw(&self.probs[i * a..(i + 1) * a], rng);
            self.actions[i] = act;
            self.log_probs[i] = self.logits[i * a + act] - self.lse[i];
        }
        Ok(self.view())
    }

    /// As [`step`](Self::step) but takes the most probable action of every trial (first
    /// on ties); draws no random numbers.
    ///
    /// # Errors
    /// As [`step`](Self::step).
    pub fn step_greedy(&mut self, inputs: &PolicyInputs<'_>) -> Result<StepView<'_>> {
        self.forward(inputs)?;
        let a = self.layout.n_actions();
        for i in 0..self.batch_size {
            self.check_finite(i)?;
            let act = argmax(&self.logits[i * a..(i + 1) * a]);
            self.actions[i] = act;
            self.log_probs[i] = self.logits[i * a + act] - self.lse[i];
        }
        Ok(self.view())
    }

    /// Steps each trial has taken since its start, `(B)`, for a Transformer workspace
    /// (the position of its next step); `None` for the other kinds.
    pub fn positions(&self) -> Option<&[usize]> {
        match &self.backend {
            Backend::Transformer(cached) => Some(cached.cache.positions()),
            _ => None,
        }
    }

    /// State values `V` `(B)` of `inputs` as the next step of every trial, **without**
    /// advancing anything: hidden states, the Transformer's cache and positions, and the
    /// outputs of the last [`step`](Self::step) stay as they were. This is the value of a
    /// bootstrap row (a truncated episode's final observation, or the row after a rollout
    /// cut), computed with the trial's memory.
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] or [`Error::ActionOutOfRange`] for bad inputs; candle
    /// errors (candle path).
    pub fn peek_values(&mut self, inputs: &PolicyInputs<'_>) -> Result<&[f32]> {
        check_len("prev_rewards", inputs.len(), self.batch_size)?;
        self.layout.write_rows(inputs, &mut self.x)?;
        let (b, a) = (self.batch_size, self.layout.n_actions());
        let (logits, rest) = self.peek.split_at_mut(b * a);
        let (probs, rest) = rest.split_at_mut(b * a);
        let (values, lse) = rest.split_at_mut(b);
        match &mut self.backend {
            Backend::Transformer(cached) => {
                let rows = StepRows {
                    logits,
                    values,
                    probs,
                    lse,
                };
                cached.run(&self.x, rows, false);
            }
            Backend::Fused {
                net, scratch, simd, ..
            } => {
                let mut h = self.h.clone();
                let rows = Rows {
                    x: &self.x,
                    h: &mut h,
                    logits,
                    values,
                    probs,
                    lse,
                };
                forward_parallel(net, rows, scratch, *simd);
            }
            Backend::Candle { policy, h } => {
                let x = Tensor::from_slice(&self.x, (b, self.layout.width()), policy.device())?;
                let out = policy.step(&x, h.as_ref())?;
                let host = out.values.to_device(&Device::Cpu)?.to_vec1::<f32>()?;
                values.copy_from_slice(&host);
            }
        }
        Ok(&self.peek[2 * b * a..2 * b * a + b])
    }

    fn check_finite(&self, i: usize) -> Result<()> {
        if self.lse[i].is_finite() {
            return Ok(());
        }
        let a = self.layout.n_actions();
        Err(Error::NonFiniteLogits {
            trial: i,
            logits: self.logits[i * a..(i + 1) * a].to_vec(),
        })
    }

    fn view(&self) -> StepView<'_> {
        StepView {
            actions: &self.actions,
            log_probs: &self.log_probs,
            values: &self.values,
            logits: &self.logits,
            probs: &self.probs,
        }
    }

    /// Input rows, network, softmax: fills logits, values, probs and lse.
    fn forward(&mut self, inputs: &PolicyInputs<'_>) -> Result<()> {
        check_len("prev_rewards", inputs.len(), self.batch_size)?;
        self.layout.write_rows(inputs, &mut self.x)?;
        match &mut self.backend {
            Backend::Fused {
                net, scratch, simd, ..
            } => {
                let rows = Rows {
                    x: &self.x,
                    h: &mut self.h,
                    logits: &mut self.logits,
                    values: &mut self.values,
                    probs: &mut self.probs,
                    lse: &mut self.lse,
                };
                forward_parallel(net, rows, scratch, *simd);
            }
            Backend::Transformer(cached) => {
                let rows = StepRows {
                    logits: &mut self.logits,
                    values: &mut self.values,
                    probs: &mut self.probs,
                    lse: &mut self.lse,
                };
                cached.run(&self.x, rows, true);
            }
            Backend::Candle { policy, h } => {
                let x = Tensor::from_slice(
                    &self.x,
                    (self.batch_size, self.layout.width()),
                    policy.device(),
                )?;
                let out = policy.step(&x, h.as_ref())?;
                // Detached: carrying the graph across steps would keep every past step alive
                // (and overflow the stack when the chain is finally dropped).
                *h = out.h.map(|t| t.detach());
                let logits = out
                    .logits
                    .to_device(&Device::Cpu)?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                let values = out.values.to_device(&Device::Cpu)?.to_vec1::<f32>()?;
                self.logits.copy_from_slice(&logits);
                self.values.copy_from_slice(&values);
                let a = self.layout.n_actions();
                let rows = self
                    .logits
                    .chunks_exact(a)
                    .zip(self.probs.chunks_exact_mut(a));
                for ((l, p), lse) in rows.zip(self.lse.iter_mut()) {
                    *lse = softmax_row(l, p);
                }
            }
        }
        Ok(())
    }
}
