//! mrl-ppo: see the crate description in its manifest.
