//! Integration tests of mrl-ppo.
