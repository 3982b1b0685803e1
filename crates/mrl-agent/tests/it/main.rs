//! Integration tests of mrl-agent: golden parity with the PyTorch reference, the fused
//! rollout step against the candle step, checkpoints and seeding.

mod agent_golden;
mod checkpoint;
mod golden;
mod gru_golden;
mod gru_seq;
mod layering;
mod norm;
mod rollout;
mod task_inference;
mod transformer;
