//! What every actor of one proxy shares: configuration, the session directory, the plugins and
//! the backend servers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix::Addr;
use parking_lot::Mutex;

use crate::auth::Authenticator;
use crate::config::ProxyConfig;
use crate::metrics::Metrics;
use crate::plugin::PluginRegistry;
use crate::registry::{LinkDirectory, ServerRegistry};
use crate::session::directory::SessionTable;
use crate::session::ClientSession;

pub struct ProxyState {
    pub config: ProxyConfig,
    /// Looked up on every client request, from every worker thread: a plain locked map is
    /// cheaper than a round trip through an actor.
    pub sessions: Mutex<SessionTable<Addr<ClientSession>>>,
    pub plugins: PluginRegistry,
    /// Servers and the choice among them.
    pub registry: Addr<ServerRegistry>,
    /// The registry as handles use it.
    pub servers: crate::messages::ServersPort,
    /// What the plugins get of the proxy.
    pub plugin_env: Arc<crate::plugin::env::PluginEnv>,
    /// The servers' links, readable without asking the registry.
    pub links: Arc<LinkDirectory>,
    pub metrics: Arc<Metrics>,
    /// `api_secret` / token checks, and the stored tokens.
    pub auth: Authenticator,
    pub started: Instant,
    /// Open client connections per address (`limits.connections_per_ip`).
    pub connections: crate::limits::ConnectionCounter,
    /// `limits.trusted_proxies`, parsed.
    pub trusted_proxies: crate::client_addr::TrustedProxies,
    /// Shutting down: `/readyz` says 503 so load balancers send new clients elsewhere.
    pub draining: AtomicBool,
    /// The state shared with other proxies (Redis), or this proxy's alone.
    pub store: Arc<crate::store::StoreHandle>,
    next_connection: AtomicU64,
}

impl ProxyState {
    pub fn new(
        config: ProxyConfig,
        plugins: PluginRegistry,
        registry: Addr<ServerRegistry>,
        links: Arc<LinkDirectory>,
        metrics: Arc<Metrics>,
        store: crate::store::StoreHandle,
    ) -> Arc<Self> {
        let store = Arc::new(store);
        let auth = Authenticator::new(&config.auth);
        let servers = crate::messages::ServersPort {
            select: registry.clone().recipient(),
            place_on: registry.clone().recipient(),
            ended: registry.clone().recipient(),
        };
        let descriptor_links = links.clone();
        let plugin_env = Arc::new(crate::plugin::env::PluginEnv {
            frames: crate::plugin::kit::Frames {
                json: config.general.json,
                metrics: metrics.clone(),
            },
            servers: servers.clone(),
            descriptors: Arc::new(move |package| descriptor_links.plugin_descriptor(package)),
            cluster: crate::store::ports(&store),
            settings: config.plugins.clone(),
            rooms_file: plugins.rooms_file.clone(),
            request_timeout: config.backend.request_timeout(),
            sync_interval: std::time::Duration::from_millis(config.store.sync_interval_ms),
            heartbeat_ttl: std::time::Duration::from_secs(config.store.heartbeat_ttl_s),
        });
        // `start` validated the configuration: the ranges parse.
        let trusted_proxies = config.limits.trusted_proxies().unwrap_or_default();
        Arc::new(ProxyState {
            trusted_proxies,
            auth,
            config,
            sessions: Mutex::new(SessionTable::default()),
            plugins,
            servers,
            plugin_env,
            registry,
            links,
            metrics,
            started: Instant::now(),
            connections: Default::default(),
            draining: AtomicBool::new(false),
            store,
            next_connection: AtomicU64::new(1),
        })
    }

    /// Unix time in seconds (for signed tokens).
    pub fn unix_now() -> i64 {
        janus_cloud_common::unix_now_secs()
    }

    /// Janus's secret/token check for a request (not asked for `info` and `ping`).
    pub fn authorizes(&self, incoming: &janus_protocol::Incoming) -> bool {
        self.auth.authorizes(&incoming.root, Self::unix_now())
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
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
