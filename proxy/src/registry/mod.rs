//! The backend servers this proxy can place handles on, and the choice among them.
//! For now the servers come from the configuration and the choice is round-robin over the
//! servers whose link is ready.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix::Addr;

use crate::backend::{BackendLink, LinkStatus};

#[derive(Clone)]
pub struct BackendEntry {
    pub status: Arc<LinkStatus>,
    pub link: Addr<BackendLink>,
}

#[derive(Default)]
pub struct BackendPool {
    servers: Vec<BackendEntry>,
    next: AtomicUsize,
}

impl BackendPool {
    pub fn new(servers: Vec<BackendEntry>) -> Self {
        BackendPool {
            servers,
            next: AtomicUsize::new(0),
        }
    }

    pub fn servers(&self) -> &[BackendEntry] {
        &self.servers
    }

    pub fn any_ready(&self) -> bool {
        self.servers.iter().any(|s| s.status.is_ready())
    }

    /// Picks the next ready server for a handle of `package`. Servers that reported the plugin
    /// are preferred; if none did, any ready server is used, so that the client gets the
    /// backend's own answer (460) rather than a made-up one.
    pub fn select(&self, package: &str) -> Option<BackendEntry> {
        let ready: Vec<&BackendEntry> = self
            .servers
            .iter()
            .filter(|s| s.status.is_ready())
            .collect();
        let with_plugin: Vec<&BackendEntry> = ready
            .iter()
            .copied()
            .filter(|s| s.status.has_plugin(package))
            .collect();
        let candidates = if with_plugin.is_empty() {
            ready
        } else {
            with_plugin
        };
        if candidates.is_empty() {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Some(candidates[n % candidates.len()].clone())
    }

    /// The descriptor of `package` as a connected backend reported it.
    pub fn plugin_descriptor(&self, package: &str) -> Option<serde_json::Value> {
        self.servers
            .iter()
            .filter(|s| s.status.is_ready())
            .find_map(|s| s.status.plugin_descriptor(package))
    }
}
