//! Integration tests of mrl-backtest.

mod common;
mod issue_cases;
mod metrics;
mod reports;
mod rules;
mod walk_forward;
