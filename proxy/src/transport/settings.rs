//! The `[ws]` and `[limits]` sections of the configuration: the client listener and what one
//! client may ask for. Here, next to what uses them, so that the transport does not import the
//! configuration loader.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WsConfig {
    /// Client WebSocket listen address (subprotocol `janus-protocol`, any path).
    pub listen: SocketAddr,
    /// Largest client message, continuation frames included, in bytes.
    pub max_message_size: usize,
    /// Client worker threads (0: one per CPU core). With exactly one (the default), the
    /// registry and the backend links run on that thread too, so relayed requests and their
    /// replies never cross threads; with more, client connections are spread over them and
    /// the registry and links run on the main thread.
    pub workers: usize,
    /// PEM certificate chain and private key: serve `wss://` (empty: plain `ws://`, e.g.
    /// behind a load balancer that terminates TLS). Reloaded on SIGHUP.
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// Connections from `limits.trusted_proxies` must start with a PROXY protocol header
    /// (v2, or v1 text; HAProxy `send-proxy-v2`), before TLS: the client's address is the one
    /// it gives. Other peers are served as direct clients; a header from them is refused.
    pub proxy_protocol: bool,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8288)),
            max_message_size: 1 << 20,
            workers: 1,
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            proxy_protocol: false,
        }
    }
}

/// Limits on what one client may ask for; each is answered with a Janus error (or, for the
/// frame size, a close code), never a crash. 0 = no limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Sessions one WebSocket connection may create.
    pub sessions_per_connection: usize,
    /// Handles one session may attach.
    pub handles_per_session: usize,
    /// Requests per second one connection may send (token bucket, burst of twice this).
    /// Off by default: the proxy's own benchmark drives thousands a second over one
    /// connection; `deploy/janus-proxy.toml` sets a value fit for browsers.
    pub requests_per_second: u32,
    /// Open WebSocket connections from one client IP address.
    pub connections_per_ip: usize,
    /// Largest admin API request body, in bytes.
    pub admin_body_bytes: usize,
    /// Load balancers and HTTP proxies (CIDR ranges, IPv4 or IPv6; a bare address is one
    /// host) whose word about the client's address is believed: a PROXY protocol header
    /// (`ws.proxy_protocol`) or `forwarded_header`. Empty: nobody's, each client is its TCP
    /// peer. See docs/load-balancer.md.
    pub trusted_proxies: Vec<String>,
    /// The header a trusted HTTP proxy appends the client's address to: `x-forwarded-for`,
    /// `forwarded` (RFC 7239) or `none`. Only this one is read.
    pub forwarded_header: crate::client_addr::ForwardedHeader,
}

impl LimitsConfig {
    /// The trusted ranges, parsed; the error names the key.
    pub fn trusted_proxies(&self) -> Result<crate::client_addr::TrustedProxies, String> {
        crate::client_addr::TrustedProxies::parse(&self.trusted_proxies)
            .map_err(|e| format!("limits.trusted_proxies: {e}"))
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            sessions_per_connection: 100,
            handles_per_session: 100,
            requests_per_second: 0,
            connections_per_ip: 1000,
            admin_body_bytes: 64 * 1024,
            trusted_proxies: Vec::new(),
            forwarded_header: Default::default(),
        }
    }
}
