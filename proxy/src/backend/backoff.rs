//! Capped, jittered exponential backoff for reconnecting a backend link: the shared
//! implementation (with its tests) is in `janus-cloud-common`.

pub use janus_cloud_common::backoff::Backoff;
