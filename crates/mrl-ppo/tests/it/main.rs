//! Integration tests of mrl-ppo.

mod belief;
mod belief_golden;
mod gae_golden;
mod json;
mod loss_golden;
mod normalize;
mod train;
mod update_golden;
