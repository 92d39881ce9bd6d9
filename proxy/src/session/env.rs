//! What client sessions share: the session table, the plugins, authentication, the
//! `[general]` settings, the metrics. Built once when the proxy starts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use actix::{Addr, Recipient};
use parking_lot::Mutex;

use super::settings::GeneralConfig;
use super::table::SessionTable;
use super::ClientSession;
use crate::auth::Authenticator;
use crate::messages::adoption::{AdoptionBook, AwaitAdoption};
use crate::metrics::Metrics;
use crate::plugin::env::PluginEnv;
use crate::plugin::PluginRegistry;

pub struct SessionEnv {
    pub general: GeneralConfig,
    /// `limits.handles_per_session` (0: none).
    pub handles_per_session: usize,
    /// Looked up on every client request, from every worker thread: a plain locked map is
    /// cheaper than a round trip through an actor.
    pub sessions: Mutex<SessionTable<Addr<ClientSession>>>,
    pub plugins: PluginRegistry,
    /// What the plugins get of the proxy (passed to every attach).
    pub plugin_env: Arc<PluginEnv>,
    /// `api_secret` / token checks, and the stored tokens.
    pub auth: Authenticator,
    pub metrics: Arc<Metrics>,
    /// Where sessions write their records for a survivor that would adopt them
    /// (docs/adoption.md); None without a shared store or with `store.adopt_window_s` 0.
    pub adoption: Option<Arc<dyn AdoptionBook>>,
    /// Asked when a client claims a session unknown here: it may be a dead proxy's being
    /// adopted (set once the adopter runs).
    pub adopter: OnceLock<Recipient<AwaitAdoption>>,
    /// A graceful stop hands the sessions over to a survivor (docs/adoption.md): they are
    /// left as they are, backend handles and all, when their sockets close and the proxy
    /// exits.
    pub handing_over: AtomicBool,
}

impl SessionEnv {
    pub fn is_handing_over(&self) -> bool {
        self.handing_over.load(Ordering::Relaxed)
    }

    /// Unix time in seconds (for signed tokens).
    pub fn unix_now() -> i64 {
        janus_cloud_common::unix_now_secs()
    }

    /// Janus's secret/token check for a request (not asked for `info` and `ping`).
    pub fn authorizes(&self, incoming: &janus_protocol::Incoming) -> bool {
        self.auth.authorizes(&incoming.root, Self::unix_now())
    }

    /// Serialises a frame for clients in the configured style.
    pub fn encode<T: serde::Serialize + ?Sized>(&self, frame: &T) -> String {
        self.general
            .json
            .to_string(frame)
            .unwrap_or_else(|| "{}".to_owned())
    }
}
