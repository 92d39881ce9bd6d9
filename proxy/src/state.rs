//! The whole proxy as the admin API and the start-up see it: the configuration, the client
//! side (transport → sessions → plugins, each with its own environment), the registry and its
//! links, the shared store. Nothing below the admin API and `server` imports this.

use std::sync::Arc;
use std::time::Instant;

use actix::Addr;
use parking_lot::Mutex;

use crate::auth::Authenticator;
use crate::config::ProxyConfig;
use crate::messages::ServersPort;
use crate::metrics::Metrics;
use crate::plugin::env::PluginEnv;
use crate::plugin::kit::Frames;
use crate::plugin::PluginRegistry;
use crate::registry::{LinkTable, ServerRegistry};
use crate::session::env::SessionEnv;
use crate::session::table::SessionTable;
use crate::store::StoreHandle;
use crate::transport::env::TransportEnv;

pub struct ProxyState {
    pub config: ProxyConfig,
    /// Client connections (and, inside, the sessions and the plugins).
    pub transport: Arc<TransportEnv>,
    /// Servers and the choice among them.
    pub registry: Addr<ServerRegistry>,
    /// The registry as handles use it.
    pub servers: ServersPort,
    /// The servers' links, readable without asking the registry.
    pub links: Arc<LinkTable>,
    pub metrics: Arc<Metrics>,
    pub started: Instant,
    /// The state shared with other proxies (Redis), or this proxy's alone.
    pub store: Arc<StoreHandle>,
    /// The console's recent past (`GET /history`), sampled while the state lives.
    pub history: Arc<crate::admin::history::History>,
}

impl ProxyState {
    pub fn new(
        config: ProxyConfig,
        plugins: PluginRegistry,
        registry: Addr<ServerRegistry>,
        links: Arc<LinkTable>,
        metrics: Arc<Metrics>,
        store: StoreHandle,
    ) -> Arc<Self> {
        let store = Arc::new(store);
        let servers = ServersPort {
            select: registry.clone().recipient(),
            place_on: registry.clone().recipient(),
            ended: registry.clone().recipient(),
        };
        let descriptor_links = links.clone();
        let plugin_env = Arc::new(PluginEnv {
            frames: Frames {
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
            adopt_window: match store.adoption() {
                Some(_) => std::time::Duration::from_secs(config.store.adopt_window_s),
                None => std::time::Duration::ZERO,
            },
        });
        let session = Arc::new(SessionEnv {
            general: config.general.clone(),
            handles_per_session: config.limits.handles_per_session,
            sessions: Mutex::new(SessionTable::default()),
            plugins,
            plugin_env,
            auth: Authenticator::new(&config.auth),
            metrics: metrics.clone(),
            adoption: store.adoption(),
            adopter: std::sync::OnceLock::new(),
            handing_over: Default::default(),
        });
        // `start` validated the configuration: the ranges parse.
        let trusted_proxies = config.limits.trusted_proxies().unwrap_or_default();
        let transport = Arc::new(TransportEnv::new(
            session,
            config.ws.clone(),
            config.limits.clone(),
            trusted_proxies,
        ));
        let history = crate::admin::history::History::new(&config.admin);
        Arc::new(ProxyState {
            config,
            transport,
            registry,
            servers,
            links,
            metrics,
            started: Instant::now(),
            store,
            history,
        })
    }

    /// The sessions, the plugins, authentication.
    pub fn session(&self) -> &SessionEnv {
        &self.transport.session
    }

    pub fn is_draining(&self) -> bool {
        self.transport.is_draining()
    }

    /// Serialises a frame for clients in the configured style.
    pub fn encode<T: serde::Serialize + ?Sized>(&self, frame: &T) -> String {
        self.session().encode(frame)
    }
}
