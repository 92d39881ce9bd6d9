//! `BackendSupervisor`: starts one [`BackendLink`] per registered server and restarts a link
//! actor that stopped while its server is still registered. A link rides out socket failures
//! itself (reconnect with capped, jittered backoff, claim after a blip); the supervisor is the
//! second line: the actor's own end. Owned by the registry actor, which decides which servers
//! exist, so it is a plain struct rather than an actor of its own.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::backoff::Backoff;
use super::link::{BackendCredentials, BackendLink, HealthReporter, LinkHealth, RetireLink};
use crate::config::BackendConfig;
use crate::messages::{LinkPort, LinkStatus};
use crate::metrics::Metrics;

/// A running link and what the rest of the proxy reads of it.
#[derive(Clone)]
pub struct SupervisedLink {
    pub id: u64,
    pub addr: Addr<BackendLink>,
    pub status: Arc<LinkStatus>,
}

impl SupervisedLink {
    /// The link as the layers above know it.
    pub fn port(&self) -> LinkPort {
        LinkPort {
            requests: self.addr.clone().recipient(),
            unroute: self.addr.clone().recipient(),
            status: self.status.clone(),
        }
    }
}

pub struct BackendSupervisor {
    config: BackendConfig,
    metrics: Arc<Metrics>,
    next_id: u64,
    /// Restart backoff per server, for links that keep stopping.
    restarts: HashMap<String, Backoff>,
    credentials: CredentialBook,
    tls: Arc<rustls::ClientConfig>,
}

/// The credentials a backend server wants, by server name: its own from
/// `backend.servers`, else `backend.api_secret` / `backend.token`. Shared by the links and the
/// reaper of dead proxies' sessions (`store::reaper`), which must speak to a server as a link
/// does.
#[derive(Debug, Clone, Default)]
pub struct CredentialBook {
    /// Secrets of the servers from the configuration, by name.
    by_name: HashMap<String, BackendCredentials>,
    default: BackendCredentials,
}

impl CredentialBook {
    pub fn new(config: &BackendConfig) -> Self {
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let default = BackendCredentials {
            api_secret: non_empty(&config.api_secret),
            token: non_empty(&config.token),
        };
        let by_name = config
            .servers
            .iter()
            .map(|s| {
                let own = BackendCredentials {
                    api_secret: s.api_secret.clone().or_else(|| default.api_secret.clone()),
                    token: s.token.clone().or_else(|| default.token.clone()),
                };
                (s.name.clone(), own)
            })
            .collect();
        CredentialBook { by_name, default }
    }

    pub fn get(&self, server: &str) -> &BackendCredentials {
        self.by_name.get(server).unwrap_or(&self.default)
    }
}

impl BackendSupervisor {
    pub fn new(
        config: BackendConfig,
        metrics: Arc<Metrics>,
        tls: Arc<rustls::ClientConfig>,
    ) -> Self {
        BackendSupervisor {
            credentials: CredentialBook::new(&config),
            config,
            metrics,
            next_id: 1,
            restarts: HashMap::new(),
            tls,
        }
    }

    /// Starts a link to `url` that reports its health to `health`.
    pub fn start(
        &mut self,
        name: &str,
        url: &str,
        health: Recipient<LinkHealth>,
    ) -> SupervisedLink {
        let id = self.next_id;
        self.next_id += 1;
        let status = Arc::new(LinkStatus::new(name, url));
        let addr = BackendLink::new(status.clone(), self.config.clone(), self.tls.clone())
            .with_health(HealthReporter {
                to: health,
                link_id: id,
            })
            .with_latency(self.metrics.backend_latency(name))
            .with_credentials(self.credentials.get(name).clone())
            .start();
        SupervisedLink { id, addr, status }
    }

    /// The link's server left the registry: it closes once its last handle is gone.
    pub fn retire(&mut self, link: &SupervisedLink) {
        link.addr.do_send(RetireLink);
    }

    /// How long to wait before restarting the link of `name`, which stopped on its own.
    pub fn restart_delay(&mut self, name: &str) -> Duration {
        let min = Duration::from_millis(self.config.reconnect_min_ms);
        let max = Duration::from_millis(self.config.reconnect_max_ms);
        self.restarts
            .entry(name.to_owned())
            .or_insert_with(|| Backoff::new(min, max))
            .next_delay(rand::random::<f64>() * 0.5 + 0.5)
    }

    /// The server is healthy again (or gone): forget its restart history.
    pub fn forget(&mut self, name: &str) {
        self.restarts.remove(name);
    }
}
