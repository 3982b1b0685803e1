//! Integration tests of mrl-ppo.

mod gae_golden;
mod json;
mod loss_golden;
mod update_golden;
