//! Integration tests of the `mrl` package: workspace invariants and the CLI.

mod cli;
mod tidy;
