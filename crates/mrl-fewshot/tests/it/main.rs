//! Integration tests of mrl-fewshot: adapters, the inner loop, Reptile, first-order MAML and
//! meta-training on tiny networks and short synthetic markets.

mod adapter;
mod common;
mod inner;
mod meta;
