//! Integration tests of mrl-llm (one binary).

mod context;
mod embedded;
mod lora;
#[cfg(feature = "real-model")]
mod parity;
mod reply;
mod server;
mod train;
