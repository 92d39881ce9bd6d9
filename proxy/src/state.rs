//! What every actor of one proxy shares: configuration, the session directory, the plugins and
//! the backend servers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix::Addr;
use parking_lot::Mutex;

use crate::config::ProxyConfig;
use crate::plugin::PluginRegistry;
use crate::registry::BackendPool;
use crate::session::directory::SessionTable;
use crate::session::ClientSession;

pub struct ProxyState {
    pub config: ProxyConfig,
    /// Looked up on every client request, from every worker thread: a plain locked map is
    /// cheaper than a round trip through an actor.
    pub sessions: Mutex<SessionTable<Addr<ClientSession>>>,
    pub plugins: PluginRegistry,
    pub backends: BackendPool,
    pub started: Instant,
    next_connection: AtomicU64,
}

impl ProxyState {
    pub fn new(config: ProxyConfig, plugins: PluginRegistry, backends: BackendPool) -> Arc<Self> {
        Arc::new(ProxyState {
            config,
            sessions: Mutex::new(SessionTable::default()),
            plugins,
            backends,
            started: Instant::now(),
            next_connection: AtomicU64::new(1),
        })
    }

    pub fn next_connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// Serialises a frame for clients in the configured style.
    pub fn encode<T: serde::Serialize + ?Sized>(&self, frame: &T) -> String {
        self.config
            .general
            .json
            .to_string(frame)
            .unwrap_or_else(|| "{}".to_owned())
    }
}
