//! Plain helpers shared by janus-proxy and janus-sentinel: no actors, no runtime, no Janus API
//! types (those are in janus-protocol).

pub mod backoff;
pub mod config;

pub use backoff::Backoff;
