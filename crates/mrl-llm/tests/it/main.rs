//! Integration tests of mrl-llm (one binary).

mod embedded;
#[cfg(feature = "real-model")]
mod parity;
mod server;
