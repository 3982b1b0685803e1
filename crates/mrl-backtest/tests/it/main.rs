//! Integration tests of mrl-backtest.

mod common;
mod metrics;
mod reports;
mod rules;
mod walk_forward;
