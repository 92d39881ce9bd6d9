//! What client connections share: the sessions' environment, the `[ws]` and `[limits]`
//! settings, the count of connections per address, the trusted proxies, whether the proxy is
//! shutting down.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use super::settings::{LimitsConfig, WsConfig};
use crate::client_addr::TrustedProxies;
use crate::limits::ConnectionCounter;
use crate::session::env::SessionEnv;
use crate::session::remote::SessionRelay;

pub struct TransportEnv {
    pub session: Arc<SessionEnv>,
    pub ws: WsConfig,
    pub limits: LimitsConfig,
    /// Open client connections per address (`limits.connections_per_ip`).
    pub connections: ConnectionCounter,
    /// `limits.trusted_proxies`, parsed.
    pub trusted_proxies: TrustedProxies,
    /// Shutting down: `/readyz` says 503 so load balancers send new clients elsewhere.
    pub draining: AtomicBool,
    /// Sessions held by other proxies, relayed over the bus (with adoption on).
    pub relay: OnceLock<Arc<SessionRelay>>,
    next_connection: AtomicU64,
}

impl TransportEnv {
    pub fn new(
        session: Arc<SessionEnv>,
        ws: WsConfig,
        limits: LimitsConfig,
        trusted_proxies: TrustedProxies,
    ) -> Self {
        TransportEnv {
            session,
            ws,
            limits,
            connections: ConnectionCounter::default(),
            trusted_proxies,
            draining: AtomicBool::new(false),
            relay: OnceLock::new(),
            next_connection: AtomicU64::new(1),
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn next_connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }
}
