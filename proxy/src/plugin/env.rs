//! What the plugins get from the proxy below them, as plain values and recipients: how to
//! write frames, the registry's messages, the backend plugins' descriptors. Built once when
//! the proxy starts; the plugins import nothing of the registry, the links, the store or the
//! configuration loader.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::kit::Frames;
use super::rooms_file::SharedRoomsFile;
use super::settings::PluginsConfig;
use crate::messages::cluster::ClusterPorts;
use crate::messages::ServersPort;

/// The descriptor of a backend plugin (for `info`), from a ready link that has it.
pub type Descriptors = Arc<dyn Fn(&str) -> Option<Value> + Send + Sync>;

pub struct PluginEnv {
    pub frames: Frames,
    pub servers: ServersPort,
    pub descriptors: Descriptors,
    /// The state shared with other proxies (one proxy alone: every name its own).
    pub cluster: ClusterPorts,
    /// `[plugins]`.
    pub settings: PluginsConfig,
    /// `plugins.rooms_file`, when set: the rooms saved with `permanent: true`.
    pub rooms_file: Option<SharedRoomsFile>,
    /// `backend.request_timeout_ms`: how long a backend has to answer a request.
    pub request_timeout: Duration,
    /// `store.sync_interval_ms` and `store.heartbeat_ttl_s`: the pace of the shared store
    /// (a room's coordination is renewed at it, and lapses after a heartbeat lifetime).
    pub sync_interval: Duration,
    pub heartbeat_ttl: Duration,
    /// `store.adopt_window_s` when a dead proxy's sessions are adopted (docs/adoption.md);
    /// zero when they are not (no shared store, or adoption off).
    pub adopt_window: Duration,
}
