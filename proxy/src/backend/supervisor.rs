//! `BackendSupervisor`: the actor that owns the backend links — one [`BackendLink`] per
//! registered server — and restarts a link that stopped while its server is still registered
//! (capped, jittered backoff). A link rides out socket failures itself (reconnect, claim after a
//! blip); the supervisor is the second line: the actor's own end. The tree:
//!
//! ```text
//! ServerRegistry ──StartLink/RetireLink/LinkServerDown/ApplyBreaker──▶ BackendSupervisor
//!        ▲                                                             │ starts, restarts
//!        └──────────── LinkStarted, LinkHealth (forwarded) ◀───────────┤
//!                                                                      ▼
//!                                                       BackendLink (one per server)
//! ```
//!
//! The registry decides which servers exist and keeps their breakers (selection reads them);
//! the supervisor starts and stops links, applies the breaker state to each link's status, and
//! tells the registry about every link it starts and every health event of a link.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;

use super::backoff::Backoff;
use super::link::{
    BackendCredentials, BackendLink, HealthEvent, HealthReporter, LinkHealth, RetireLink,
    ServerDown,
};
use crate::config::BackendConfig;
use crate::messages::adoption::AdoptionBook;
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

/// Start the link of server `name` (replacing any, which retires).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StartLink {
    pub name: String,
    pub url: String,
    /// The server is reported down (its link learns it at once).
    pub down: bool,
}

/// The server left the registry: its link takes no new handles and closes once the last one
/// is gone.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RetireServerLink(pub String);

/// The server's reported status changed to or from abnormal.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LinkServerDown {
    pub name: String,
    pub down: bool,
}

/// The registry's breaker of the server is closed (or not): the link's status says so.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ApplyBreaker {
    pub name: String,
    pub closed: bool,
}

/// A link started (or restarted) for server `name`: the registry uses it from now on.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LinkStarted {
    pub name: String,
    pub link: SupervisedLink,
}

struct Supervised {
    link: SupervisedLink,
    url: String,
    down: bool,
    /// Restart backoff, for a link that keeps stopping.
    restarts: Backoff,
}

pub struct BackendSupervisor {
    config: BackendConfig,
    metrics: Arc<Metrics>,
    next_id: u64,
    credentials: CredentialBook,
    tls: Arc<rustls::ClientConfig>,
    links: HashMap<String, Supervised>,
    /// The registry: told of every link started and every health event.
    started_to: Recipient<LinkStarted>,
    health_to: Recipient<LinkHealth>,
    /// Given to every link: where it records its backend handles for a survivor.
    adoption: Option<Arc<dyn AdoptionBook>>,
}

impl BackendSupervisor {
    pub fn new(
        config: BackendConfig,
        metrics: Arc<Metrics>,
        tls: Arc<rustls::ClientConfig>,
        started_to: Recipient<LinkStarted>,
        health_to: Recipient<LinkHealth>,
    ) -> Self {
        BackendSupervisor {
            credentials: CredentialBook::new(&config),
            config,
            metrics,
            next_id: 1,
            tls,
            links: HashMap::new(),
            started_to,
            health_to,
            adoption: None,
        }
    }

    /// Links record their backend handles there (docs/adoption.md).
    pub fn with_adoption(mut self, adoption: Option<Arc<dyn AdoptionBook>>) -> Self {
        self.adoption = adoption;
        self
    }

    fn start_link(
        &mut self,
        ctx: &mut Context<Self>,
        name: &str,
        url: &str,
        down: bool,
    ) -> SupervisedLink {
        let id = self.next_id;
        self.next_id += 1;
        let status = Arc::new(LinkStatus::new(name, url));
        let addr = BackendLink::new(status.clone(), self.config.clone(), self.tls.clone())
            .with_health(HealthReporter {
                to: ctx.address().recipient(),
                link_id: id,
            })
            .with_latency(self.metrics.backend_latency(name))
            .with_credentials(self.credentials.get(name).clone())
            .with_adoption(self.adoption.clone())
            .start();
        if down {
            addr.do_send(ServerDown(true));
        }
        let link = SupervisedLink { id, addr, status };
        self.started_to.do_send(LinkStarted {
            name: name.to_owned(),
            link: link.clone(),
        });
        link
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(
            std::time::Duration::from_millis(self.config.reconnect_min_ms),
            std::time::Duration::from_millis(self.config.reconnect_max_ms),
        )
    }
}

impl Actor for BackendSupervisor {
    type Context = Context<Self>;
}

impl Handler<StartLink> for BackendSupervisor {
    type Result = ();

    fn handle(&mut self, msg: StartLink, ctx: &mut Context<Self>) {
        let link = self.start_link(ctx, &msg.name, &msg.url, msg.down);
        let restarts = self.backoff();
        let old = self.links.insert(
            msg.name,
            Supervised {
                link,
                url: msg.url,
                down: msg.down,
                restarts,
            },
        );
        if let Some(old) = old {
            // A server that moved: handles on the old link finish there.
            old.link.addr.do_send(RetireLink);
        }
    }
}

impl Handler<RetireServerLink> for BackendSupervisor {
    type Result = ();

    fn handle(&mut self, msg: RetireServerLink, _: &mut Context<Self>) {
        if let Some(old) = self.links.remove(&msg.0) {
            old.link.addr.do_send(RetireLink);
        }
    }
}

impl Handler<LinkServerDown> for BackendSupervisor {
    type Result = ();

    fn handle(&mut self, msg: LinkServerDown, _: &mut Context<Self>) {
        if let Some(s) = self.links.get_mut(&msg.name) {
            s.down = msg.down;
            s.link.addr.do_send(ServerDown(msg.down));
        }
    }
}

impl Handler<ApplyBreaker> for BackendSupervisor {
    type Result = ();

    fn handle(&mut self, msg: ApplyBreaker, _: &mut Context<Self>) {
        if let Some(s) = self.links.get(&msg.name) {
            s.link.status.set_breaker_closed(msg.closed);
        }
    }
}

impl Handler<LinkHealth> for BackendSupervisor {
    type Result = ();

    fn handle(&mut self, msg: LinkHealth, ctx: &mut Context<Self>) {
        let current = self
            .links
            .get(&msg.server)
            .is_some_and(|s| s.link.id == msg.link_id);
        if !current {
            return; // a retired link of a server that moved or left
        }
        match msg.event {
            HealthEvent::Stopped => {
                // The link actor ended while its server is registered: start another.
                let name = msg.server.clone();
                let Some(s) = self.links.get_mut(&name) else {
                    return;
                };
                let delay = s.restarts.next_delay(rand::random::<f64>() * 0.5 + 0.5);
                log::warn!("backend supervisor: link of {name} stopped; restarting in {delay:?}");
                let stopped = msg.link_id;
                ctx.run_later(delay, move |act, ctx| {
                    let Some((url, down)) = act
                        .links
                        .get(&name)
                        .filter(|s| s.link.id == stopped)
                        .map(|s| (s.url.clone(), s.down))
                    else {
                        return;
                    };
                    let link = act.start_link(ctx, &name, &url, down);
                    if let Some(s) = act.links.get_mut(&name) {
                        s.link = link;
                    }
                });
            }
            HealthEvent::Recovered => {
                // Healthy again: its restart history is forgotten.
                let restarts = self.backoff();
                if let Some(s) = self.links.get_mut(&msg.server) {
                    s.restarts = restarts;
                }
                self.health_to.do_send(msg);
            }
            _ => self.health_to.do_send(msg),
        }
    }
}
