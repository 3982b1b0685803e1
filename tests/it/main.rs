//! Integration tests of the `mrl` package: workspace invariants and the CLI.

mod cli;
mod configs;
mod fewshot;
mod llm;
mod study;
mod tidy;
