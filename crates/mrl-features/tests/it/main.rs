//! Integration tests of mrl-features.
