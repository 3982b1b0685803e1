//! Integration tests of mrl-data.
