//! Integration tests of mrl-agent.
