//! Networks: layers with PyTorch's parameter names and the policies built from them,
//! each network kind in one place. They call the numeric kernels ([`crate::kernels`]),
//! never the other way round.

mod layers;
mod policy;
mod task_inference;
mod transformer;

pub use layers::{Gru, Linear};
pub use policy::{MLP_PARAM_NAMES, Policy, RL2_PARAM_NAMES, SeqOutput, StepOutput};
pub use task_inference::{Belief, DECODER_PARAM_NAMES, TASK_INFERENCE_PARAM_NAMES};
