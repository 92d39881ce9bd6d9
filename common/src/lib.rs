//! Plain helpers shared by janus-proxy and janus-sentinel: no actors, no runtime, no Janus API
//! types (those are in janus-protocol). The command line, configuration loading and checking,
//! and the logger are the same for both binaries.

pub mod backoff;
pub mod cli;
pub mod config;
pub mod effective;
pub mod logging;
pub mod time;

pub use backoff::Backoff;
pub use time::{unix_now, unix_now_secs};
