//! Integration tests of mrl-backtest.

mod common;
mod metrics;
mod reports;
mod walk_forward;
