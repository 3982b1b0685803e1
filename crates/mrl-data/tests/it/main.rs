//! Integration tests of mrl-data.

#[cfg(feature = "bybit")]
mod bybit;
mod calendar;
mod fixtures;
mod io;
mod resample;
mod synthetic;
mod timestamps;
