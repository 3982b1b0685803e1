//! Integration tests of mrl-fewshot: adapters, the inner loop, Reptile, first-order MAML and
//! meta-training and the few-shot benchmark on tiny networks and short synthetic markets.

mod adapter;
mod benchmark;
mod classes;
mod common;
mod embedding;
mod inner;
mod meta;
mod online;
mod transfer;
