//! Integration tests of mrl-backtest.
