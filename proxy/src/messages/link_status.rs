//! What the rest of the proxy reads about a backend link without messaging it: its phase,
//! counters, backend session and the plugins its Janus offers. Written by the link actor
//! (`link.rs`), read by the registry, the plugins and the admin API.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use janus_protocol::JsonMap;
use parking_lot::RwLock;
use serde::Serialize;
use serde_json::Value;

/// What the rest of the proxy may read about a link without messaging it.
#[derive(Debug)]
pub struct LinkStatus {
    pub name: String,
    pub url: String,
    pub(crate) ready: AtomicBool,
    pub(crate) phase: AtomicU8,
    pub(crate) handles: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) reclaims: AtomicU64,
    /// Losses taken for an unreachable (rather than dead) Janus.
    pub(crate) unreachable: AtomicU64,
    /// `reclaim-session-timeout` of the Janus's `info`, in seconds (u64::MAX: not known).
    pub(crate) reclaim_timeout_s: AtomicU64,
    /// The link's backend session id (0: none), also while a lost socket waits to claim it:
    /// recorded in the shared store so that another proxy can destroy it if this one dies.
    pub(crate) session_id: AtomicU64,
    /// Set by the registry: while the breaker is not closed, the link reports every success.
    pub(crate) breaker_closed: AtomicBool,
    pub(crate) last_error: RwLock<String>,
    /// `plugins` of the backend's `info` reply: package → descriptor.
    pub(crate) plugins: RwLock<JsonMap>,
}

/// Where a link is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkPhase {
    Connecting,
    Ready,
    /// Socket lost; reconnecting to claim the backend session, handles kept.
    Reclaiming,
    /// Connect failed; retrying with backoff.
    Down,
    /// Removed from the registry: serving its last handles, then closing.
    Retiring,
}

impl LinkPhase {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => LinkPhase::Ready,
            2 => LinkPhase::Reclaiming,
            3 => LinkPhase::Down,
            4 => LinkPhase::Retiring,
            _ => LinkPhase::Connecting,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            LinkPhase::Connecting => 0,
            LinkPhase::Ready => 1,
            LinkPhase::Reclaiming => 2,
            LinkPhase::Down => 3,
            LinkPhase::Retiring => 4,
        }
    }
}

/// A link's state for the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct LinkView {
    pub phase: LinkPhase,
    pub ready: bool,
    pub handles: u64,
    pub reconnects: u64,
    pub reclaims: u64,
    pub unreachable: u64,
    /// How long the Janus keeps a session whose transport is gone, as it said.
    pub reclaim_timeout_s: Option<u64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub last_error: String,
    pub plugins: Vec<String>,
}

impl LinkStatus {
    pub fn new(name: &str, url: &str) -> Self {
        LinkStatus {
            name: name.to_owned(),
            url: url.to_owned(),
            ready: AtomicBool::new(false),
            phase: AtomicU8::new(LinkPhase::Connecting.as_u8()),
            handles: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            reclaims: AtomicU64::new(0),
            unreachable: AtomicU64::new(0),
            reclaim_timeout_s: AtomicU64::new(u64::MAX),
            session_id: AtomicU64::new(0),
            breaker_closed: AtomicBool::new(true),
            last_error: RwLock::new(String::new()),
            plugins: RwLock::new(JsonMap::new()),
        }
    }

    pub fn phase(&self) -> LinkPhase {
        LinkPhase::from_u8(self.phase.load(Ordering::Relaxed))
    }

    pub(crate) fn set_phase(&self, phase: LinkPhase) {
        self.phase.store(phase.as_u8(), Ordering::Relaxed);
        self.ready
            .store(phase == LinkPhase::Ready, Ordering::Release);
    }

    pub fn set_breaker_closed(&self, closed: bool) {
        self.breaker_closed.store(closed, Ordering::Relaxed);
    }

    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    pub fn view(&self) -> LinkView {
        LinkView {
            phase: self.phase(),
            ready: self.is_ready(),
            handles: self.handle_count(),
            reconnects: self.reconnects(),
            reclaims: self.reclaims.load(Ordering::Relaxed),
            unreachable: self.unreachable.load(Ordering::Relaxed),
            reclaim_timeout_s: match self.reclaim_timeout_s.load(Ordering::Relaxed) {
                u64::MAX => None,
                s => Some(s),
            },
            last_error: self.last_error.read().clone(),
            plugins: self.plugins.read().keys().cloned().collect(),
        }
    }

    /// Connected, with a backend session: new handles can be placed here.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The backend session this link holds on its Janus, if any.
    pub fn backend_session(&self) -> Option<u64> {
        match self.session_id.load(Ordering::Relaxed) {
            0 => None,
            id => Some(id),
        }
    }

    pub(crate) fn set_backend_session(&self, id: Option<u64>) {
        self.session_id.store(id.unwrap_or(0), Ordering::Relaxed);
    }

    pub fn handle_count(&self) -> u64 {
        self.handles.load(Ordering::Relaxed)
    }

    pub fn has_plugin(&self, package: &str) -> bool {
        self.plugins.read().contains_key(package)
    }

    pub fn plugin_descriptor(&self, package: &str) -> Option<Value> {
        self.plugins.read().get(package).cloned()
    }
}
