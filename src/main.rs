//! The `mrl` command-line interface.

fn main() {}
