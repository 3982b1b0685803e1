//! [`RolloutWorkspace`]: one policy step for `B` trials at a time, without an autograd
//! graph and without per-step allocation of large buffers, with action sampling.

use candle_core::{Device, Tensor};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, check_len};
use crate::input::{InputLayout, PolicyInputs};
use crate::kernels::fused::{FusedNet, Rows, Scratch, Simd, forward_parallel};
use crate::kernels::math::softmax_row;
use crate::nets::Policy;
use crate::sampling::{argmax, draw};

/// Tuning knobs of the fused CPU step. Defaults suit H = 128 on a few cores.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RolloutOptions {
    /// Threads (row blocks) per step; 0 = the size of the current rayon pool. Default 0.
    pub threads: usize,
    /// Fewest rows a thread gets; smaller batches use fewer threads. Default 64.
    pub min_rows_per_thread: usize,
    /// Rows per tile: the GEMM outputs of one tile stay in cache. Default 128.
    pub tile_rows: usize,
}

impl Default for RolloutOptions {
    fn default() -> Self {
        Self {
            threads: 0,
            min_rows_per_thread: 64,
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
}

/// Rollout state and buffers for `B` parallel trials: the hidden states, the input rows and
/// the per-step outputs. One [`step`](Self::step) builds the input rows, runs the network,
/// samples one action per trial and returns a [`StepView`].
///
/// On a CPU policy the step runs the fused f32 path (pre-transposed weight snapshot, GEMMs
/// through the `gemm` crate, gate arithmetic, heads and softmax fused per row, rows split
/// over rayon threads); call [`refresh`](Self::refresh) after every optimiser step. On other
/// devices (CUDA), or with [`new_candle`](Self::new_candle), it runs [`Policy::step`] on
/// candle tensors and copies only logits and values back.
///
/// Hidden states start at zero; reset a trial with [`reset`](Self::reset) when a new trial
/// starts in that slot (never at episode ends inside a trial).
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
        if !policy.device().is_cpu() {
            return Self::new_candle(policy, batch_size);
        }
        let net = policy.fused_snapshot()?;
        let threads = if options.threads == 0 {
            rayon::current_num_threads()
        } else {
            options.threads
        };
        let blocks = threads
            .min(batch_size / options.min_rows_per_thread.max(1))
            .max(1);
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
    /// [`Error::InvalidConfig`] for `batch_size` 0.
    pub fn new_candle(policy: &Policy, batch_size: usize) -> Result<Self> {
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
            Backend::Candle { .. } => 1,
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
        }
        Ok(())
    }

    /// Zeroes every hidden state (all trials start).
    ///
    /// # Errors
    /// Candle errors (candle path).
    pub fn reset_all(&mut self) -> Result<()> {
        self.h.fill(0.0);
        if let Backend::Candle { h, .. } = &mut self.backend {
            *h = None;
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
        if let Backend::Candle { h: Some(h), .. } = &mut self.backend {
            let (device, dims) = (h.device().clone(), h.dims().to_vec());
            let mut host = h.flatten_all()?.to_vec1::<f32>()?;
            host[trial * s..(trial + 1) * s].fill(0.0);
            *h = Tensor::from_vec(host, dims, &device)?;
        }
        self.h[trial * s..(trial + 1) * s].fill(0.0);
        Ok(())
    }

    /// The hidden states `(B, H)` row-major (empty for a memory-less policy). On the candle
    /// path this copies them from the device.
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
