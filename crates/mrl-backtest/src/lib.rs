//! mrl-backtest: see the crate description in its manifest.
