//! mrl-env: see the crate description in its manifest.
