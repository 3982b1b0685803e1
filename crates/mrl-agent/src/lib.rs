//! mrl-agent: see the crate description in its manifest.
