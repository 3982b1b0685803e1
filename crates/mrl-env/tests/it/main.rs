//! Integration tests of mrl-env.
