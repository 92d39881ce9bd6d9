//! Plain helpers shared by janus-proxy and janus-sentinel: no actors, no runtime, no Janus API
//! types (those are in janus-protocol).

pub mod backoff;
pub mod config;
pub mod time;

pub use backoff::Backoff;
pub use time::{unix_now, unix_now_secs};
