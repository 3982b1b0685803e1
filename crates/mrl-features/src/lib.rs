//! mrl-features: see the crate description in its manifest.
