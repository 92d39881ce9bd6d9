//! `ServerRegistry`: the backend servers this proxy can place handles on — from the
//! configuration, from sentinel reports and from the admin API — and the choice among them.
//!
//! A server is selectable when its status is normal, its last report is fresh, it is not
//! draining, its link has a live backend session and its circuit breaker admits traffic.
//! Reports that stop coming make a server unselectable after `expire` seconds and remove it
//! `registry.remove_after_s` later; removing a server retires its link, which closes once its
//! last handle is gone.

pub mod record;
pub mod selection;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use janus_protocol::{ServerReport, ServerStatus};
use parking_lot::RwLock;
use serde::Serialize;
use serde_json::Value;

use crate::backend::breaker::{BreakerConfig, BreakerPhase, BreakerView, CircuitBreaker};
use crate::backend::supervisor::{
    ApplyBreaker, LinkServerDown, LinkStarted, RetireServerLink, StartLink,
};
use crate::backend::{BackendSupervisor, HealthEvent, LinkHealth, SupervisedLink};
use crate::config::ProxyConfig;
use crate::error::ProxyError;
use crate::messages::{LinkStatus, LinkView};
pub use crate::messages::{PlaceOn, Placement, PlacementEnded, SelectServer};
use crate::metrics::{BackendLabels, Metrics};
use record::ServerRecord;
use selection::{Candidate, SelectionPolicy, Selector};

/// The links of all registered servers, readable without messaging the registry (for `info`'s
/// plugin list and health checks).
#[derive(Default)]
pub struct LinkTable {
    links: RwLock<Vec<Arc<LinkStatus>>>,
}

impl LinkTable {
    fn set(&self, links: Vec<Arc<LinkStatus>>) {
        *self.links.write() = links;
    }

    /// Every registered server's link.
    pub fn all(&self) -> Vec<Arc<LinkStatus>> {
        self.links.read().clone()
    }

    pub fn any_ready(&self) -> bool {
        self.links.read().iter().any(|l| l.is_ready())
    }

    /// The link status of server `name`, if it is registered.
    pub fn status(&self, name: &str) -> Option<Arc<LinkStatus>> {
        self.links.read().iter().find(|l| l.name == name).cloned()
    }

    /// The descriptor of `package` as a connected backend reported it.
    pub fn plugin_descriptor(&self, package: &str) -> Option<Value> {
        self.links
            .read()
            .iter()
            .filter(|l| l.is_ready())
            .find_map(|l| l.plugin_descriptor(package))
    }
}

struct ServerEntry {
    record: ServerRecord,
    /// Seen in the shared store: when its key is gone from there, it is gone here too.
    shared: bool,
    breaker: CircuitBreaker,
    /// Its link, once the supervisor started it.
    link: Option<SupervisedLink>,
}

/// One server as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ServerView {
    #[serde(flatten)]
    pub record: ServerRecord,
    pub selectable: bool,
    /// Why new handles do not go there, when they do not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unselectable_because: Option<&'static str>,
    pub effective_load: f64,
    pub link: LinkView,
    pub breaker: BreakerView,
}

pub struct ServerRegistry {
    servers: BTreeMap<String, ServerEntry>,
    selector: Selector,
    /// Owns the links (started with the registry, on its thread: the links are the
    /// registry's neighbours).
    supervisor: Option<Addr<BackendSupervisor>>,
    /// What the supervisor is made from, until it starts.
    links_config: Option<(crate::config::BackendConfig, Arc<rustls::ClientConfig>)>,
    breaker: BreakerConfig,
    capacity: f64,
    remove_after: Duration,
    links: Arc<LinkTable>,
    metrics: Arc<Metrics>,
    /// `backend.servers`: name, URL, `rtp_host`.
    static_servers: Vec<(String, String, Option<String>)>,
    /// Handed to the links (see `BackendSupervisor::with_adoption`).
    adoption: Option<Arc<dyn crate::messages::adoption::AdoptionBook>>,
}

const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Reasons starting with this are the breaker's alone.
const BREAKER_REASON_PREFIX: &str = "circuit breaker";

impl ServerRegistry {
    /// The links record their backend handles there, for a survivor (set before it starts).
    pub fn with_adoption(
        mut self,
        adoption: Option<Arc<dyn crate::messages::adoption::AdoptionBook>>,
    ) -> Self {
        self.adoption = adoption;
        self
    }

    pub fn new(
        config: &ProxyConfig,
        links: Arc<LinkTable>,
        metrics: Arc<Metrics>,
        backend_tls: Arc<rustls::ClientConfig>,
    ) -> Self {
        ServerRegistry {
            servers: BTreeMap::new(),
            selector: Selector::new(config.registry.policy),
            supervisor: None,
            links_config: Some((config.backend.clone(), backend_tls)),
            breaker: config
                .breaker
                .breaker_config(config.backend.request_timeout() * 2),
            capacity: config.registry.handle_capacity as f64,
            remove_after: Duration::from_secs(config.registry.remove_after_s),
            links,
            metrics,
            static_servers: config
                .backend
                .servers
                .iter()
                .map(|s| (s.name.clone(), s.url.clone(), s.rtp_host.clone()))
                .collect(),
            adoption: None,
        }
    }

    pub fn policy(&self) -> SelectionPolicy {
        self.selector.policy()
    }

    fn publish_links(&self) {
        self.links.set(
            self.servers
                .values()
                .filter_map(|e| e.link.as_ref().map(|l| l.status.clone()))
                .collect(),
        );
    }

    fn insert(&mut self, record: ServerRecord) {
        log::info!(
            server = record.name.as_str();
            "registry: server {} at {} added",
            record.name,
            record.url
        );
        self.start_link(&record);
        let entry = ServerEntry {
            shared: false,
            breaker: CircuitBreaker::new(self.breaker),
            record,
            link: None,
        };
        self.servers.insert(entry.record.name.clone(), entry);
    }

    /// Asks the supervisor for a link to `record`'s server (a new link of a server reported
    /// down learns it at once).
    fn start_link(&self, record: &ServerRecord) {
        if let Some(supervisor) = &self.supervisor {
            supervisor.do_send(StartLink {
                name: record.name.clone(),
                url: record.url.clone(),
                down: record.status == ServerStatus::Abnormal,
            });
        }
    }

    fn remove(&mut self, name: &str) -> bool {
        let Some(entry) = self.servers.remove(name) else {
            return false;
        };
        log::info!(server = name; "registry: server {name} removed");
        drop(entry);
        if let Some(supervisor) = &self.supervisor {
            supervisor.do_send(RetireServerLink(name.to_owned()));
        }
        self.metrics.forget_backend(name);
        self.publish_links();
        true
    }

    /// Why `entry` takes no new handles now, or None if it does.
    fn unselectable_because(entry: &mut ServerEntry, now: Instant) -> Option<&'static str> {
        if entry.record.status != ServerStatus::Normal {
            return Some(match entry.record.status {
                ServerStatus::Abnormal => "status abnormal",
                ServerStatus::Maintenance => "status maintenance",
                _ => "status high-water-mark",
            });
        }
        if !entry.record.is_fresh(now) {
            return Some("report expired");
        }
        if entry.record.draining {
            return Some("draining");
        }
        if !entry.link.as_ref().is_some_and(|l| l.status.is_ready()) {
            return Some("link not ready");
        }
        if !entry.breaker.admits(now) {
            // Keep in step with BREAKER_REASON_PREFIX.
            return Some(match entry.breaker.phase(now) {
                BreakerPhase::Open => "circuit breaker open",
                _ => "circuit breaker half-open, probe in flight",
            });
        }
        None
    }

    fn view(entry: &mut ServerEntry, capacity: f64, now: Instant) -> ServerView {
        let because = Self::unselectable_because(entry, now);
        ServerView {
            record: entry.record.clone(),
            selectable: because.is_none(),
            unselectable_because: because,
            effective_load: entry.record.effective_load(capacity),
            link: entry
                .link
                .as_ref()
                .map(|l| l.status.view())
                .unwrap_or_else(|| LinkStatus::new(&entry.record.name, &entry.record.url).view()),
            breaker: entry.breaker.view(now),
        }
    }

    fn select(&mut self, msg: &SelectServer, now: Instant) -> Result<Placement, ProxyError> {
        let (package, avoid) = (msg.package.as_str(), &msg.avoid);
        let capacity = self.capacity;
        let mut selectable: Vec<&mut ServerEntry> = Vec::new();
        let mut breaker_blocked: Vec<&mut ServerEntry> = Vec::new();
        for entry in self.servers.values_mut() {
            match Self::unselectable_because(entry, now) {
                None => selectable.push(entry),
                Some(why) if why.starts_with(BREAKER_REASON_PREFIX) => breaker_blocked.push(entry),
                Some(_) => {}
            }
        }
        // When breakers hold back every server that is otherwise up, trying one beats failing
        // every attach for sure (Envoy's "panic mode"): a lone server recovers at once.
        if selectable.is_empty() {
            selectable = breaker_blocked;
        }
        // Prefer servers whose Janus has the plugin; if none reported it, any will do, so that
        // the client gets that Janus's own answer.
        let has = |e: &&mut ServerEntry| {
            e.link
                .as_ref()
                .is_some_and(|l| l.status.has_plugin(package))
        };
        if selectable.iter().any(has) {
            selectable.retain(has);
        }
        let preferred = |roomy: bool, selectable: &[&mut ServerEntry]| {
            msg.prefer.iter().find_map(|name| {
                selectable
                    .iter()
                    .position(|e| e.record.name == *name && (!roomy || e.record.has_room(capacity)))
            })
        };
        let chosen = match preferred(msg.roomy, &selectable) {
            Some(chosen) => chosen,
            None => {
                if selectable.iter().any(|e| !avoid.contains(&e.record.name)) {
                    selectable.retain(|e| !avoid.contains(&e.record.name));
                }
                let roomy = |e: &&mut ServerEntry| e.record.has_room(capacity);
                if msg.roomy && selectable.iter().any(roomy) {
                    selectable.retain(roomy);
                } else if msg.roomy {
                    // Every server is full: the caller's own first, rather than one more.
                    // (`selectable` lost the avoided servers: look again among all.)
                    return self.select_full(msg, now);
                }
                let candidates: Vec<Candidate<'_>> = selectable
                    .iter()
                    .map(|e| Candidate {
                        name: &e.record.name,
                        load: e.record.effective_load(capacity),
                        unit: e.record.unit_load(capacity),
                    })
                    .collect();
                self.selector
                    .pick(&candidates, rand::random::<f64>())
                    .ok_or_else(|| ProxyError::NoBackend(package.to_owned()))?
            }
        };
        let entry = &mut selectable[chosen];
        entry.breaker.on_placed(now);
        // Selectable: its link is ready, so it exists.
        let Some(link) = entry.link.as_ref().map(SupervisedLink::port) else {
            return Err(ProxyError::NoBackend(package.to_owned()));
        };
        let epoch = entry.record.placed();
        Ok(Placement {
            server: entry.record.name.clone(),
            epoch,
            link,
            rtp_host: entry.record.rtp_host.clone(),
        })
    }

    /// [`Self::select`] when no server has room: the first selectable preferred server, else
    /// the policy over every selectable one.
    fn select_full(&mut self, msg: &SelectServer, now: Instant) -> Result<Placement, ProxyError> {
        let first = msg.prefer.iter().find(|name| {
            self.servers
                .get_mut(name.as_str())
                .is_some_and(|e| Self::unselectable_because(e, now).is_none())
        });
        let relaxed = SelectServer {
            package: msg.package.clone(),
            avoid: Vec::new(),
            prefer: first.into_iter().cloned().collect(),
            roomy: false,
        };
        self.select(&relaxed, now)
    }

    fn sweep(&mut self, now: Instant) {
        let dead: Vec<String> = self
            .servers
            .values()
            .filter(|e| e.record.is_dead(now, self.remove_after))
            .map(|e| e.record.name.clone())
            .collect();
        for name in dead {
            log::info!(server = name.as_str(); "registry: server {name} stopped reporting; removing it");
            self.remove(&name);
        }
    }

    /// Refreshes the per-backend gauges (called at each scrape).
    fn refresh_metrics(&mut self, now: Instant) {
        let _guard = self.metrics.scrape.lock();
        let m = self.metrics.clone();
        for family in [
            &m.backend_up,
            &m.backend_selectable,
            &m.backend_breaker,
            &m.backend_handles,
            &m.backend_reconnects,
            &m.backend_reported_sessions,
            &m.backend_reported_handles,
        ] {
            family.clear();
        }
        m.backend_load.clear();
        let capacity = self.capacity;
        for entry in self.servers.values_mut() {
            let labels = BackendLabels {
                backend: entry.record.name.clone(),
            };
            let selectable = Self::unselectable_because(entry, now).is_none();
            let ready = entry.link.as_ref().is_some_and(|l| l.status.is_ready());
            m.backend_up.get_or_create(&labels).set(i64::from(ready));
            m.backend_selectable
                .get_or_create(&labels)
                .set(i64::from(selectable));
            m.backend_breaker
                .get_or_create(&labels)
                .set(entry.breaker.phase(now).gauge());
            let (handles, reconnects) = entry
                .link
                .as_ref()
                .map(|l| (l.status.handle_count(), l.status.reconnects()))
                .unwrap_or_default();
            m.backend_handles.get_or_create(&labels).set(handles as i64);
            m.backend_reconnects
                .get_or_create(&labels)
                .set(reconnects as i64);
            m.backend_load
                .get_or_create(&labels)
                .set(entry.record.effective_load(capacity));
            if let Some(n) = entry.record.session_num {
                m.backend_reported_sessions
                    .get_or_create(&labels)
                    .set(n as i64);
            }
            if let Some(n) = entry.record.handle_num {
                m.backend_reported_handles
                    .get_or_create(&labels)
                    .set(n as i64);
            }
        }
    }
}

impl Actor for ServerRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some((config, tls)) = self.links_config.take() {
            let supervisor = BackendSupervisor::new(
                config,
                self.metrics.clone(),
                tls,
                ctx.address().recipient(),
                ctx.address().recipient(),
            )
            .with_adoption(self.adoption.take());
            self.supervisor = Some(supervisor.start());
        }
        let now = Instant::now();
        for (name, url, rtp_host) in std::mem::take(&mut self.static_servers) {
            let mut record = ServerRecord::from_config(&name, &url, now);
            record.rtp_host = rtp_host;
            self.insert(record);
        }
        ctx.run_interval(SWEEP_EVERY, |act, _| act.sweep(Instant::now()));
    }
}

/// Create or update a server (janus-cloud's `POST /backend_servers`).
#[derive(Message)]
#[rtype(result = "Result<Upserted, ProxyError>")]
pub struct UpsertServer(pub ServerReport);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Upserted {
    Created,
    Updated,
}

impl Handler<UpsertServer> for ServerRegistry {
    type Result = Result<Upserted, ProxyError>;

    fn handle(&mut self, msg: UpsertServer, _: &mut Context<Self>) -> Self::Result {
        Ok(self.upsert(&msg.0, Instant::now()))
    }
}

impl ServerRegistry {
    fn upsert(&mut self, report: &ServerReport, now: Instant) -> Upserted {
        let Some(entry) = self.servers.get_mut(&report.name) else {
            self.insert(ServerRecord::from_report(report, now));
            return Upserted::Created;
        };
        let url_changed = entry.record.url != report.url;
        let was_down = entry.record.status == ServerStatus::Abnormal;
        entry.record.apply(report, now);
        let down = entry.record.status == ServerStatus::Abnormal;
        if down != was_down && !url_changed {
            // Its Janus down (or up again) as its sentinel sees it: a link that lost its
            // socket to a dead Janus stops holding the handles.
            if let Some(supervisor) = &self.supervisor {
                supervisor.do_send(LinkServerDown {
                    name: report.name.clone(),
                    down,
                });
            }
        }
        if url_changed {
            // A server that moved gets a fresh link; handles on the old one finish there.
            log::info!("registry: server {} moved to {}", report.name, report.url);
            entry.breaker = CircuitBreaker::new(self.breaker);
            entry.link = None;
            let record = entry.record.clone();
            self.start_link(&record);
            self.publish_links();
        }
        Upserted::Updated
    }
}

/// A report as the shared store holds it: written by whichever proxy received it.
#[derive(Debug, Clone)]
pub struct SharedReport {
    pub report: ServerReport,
    /// Unix time of the report (janus-cloud's `utime`): newer ones win.
    pub utime: f64,
    pub ctime: f64,
}

/// Every server report in the shared store, read just now. Newer reports are applied as if
/// they had come here; servers seen there before and gone now (expired or deleted through
/// another proxy) are removed, unless `remove_missing` is false (just after Redis came back,
/// possibly empty, before every proxy has written its reports again). Servers from this
/// proxy's configuration are left alone, and so are selection, breakers and links: those stay
/// each proxy's own.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SyncShared {
    pub reports: Vec<SharedReport>,
    pub remove_missing: bool,
}

impl Handler<SyncShared> for ServerRegistry {
    type Result = ();

    fn handle(&mut self, msg: SyncShared, _: &mut Context<Self>) {
        let now = Instant::now();
        let mut present = std::collections::HashSet::new();
        for shared in msg.reports {
            let name = shared.report.name.clone();
            present.insert(name.clone());
            let newer = match self.servers.get(&name) {
                Some(entry) if entry.record.from_config => continue,
                Some(entry) => shared.utime > entry.record.utime,
                None => true,
            };
            if newer {
                self.upsert(&shared.report, now);
            }
            if let Some(entry) = self.servers.get_mut(&name) {
                if newer {
                    entry.record.utime = shared.utime;
                    entry.record.ctime = shared.ctime.min(entry.record.ctime);
                }
                entry.shared = true;
            }
        }
        if !msg.remove_missing {
            return;
        }
        let gone: Vec<String> = self
            .servers
            .values()
            .filter(|e| e.shared && !e.record.from_config && !present.contains(&e.record.name))
            .map(|e| e.record.name.clone())
            .collect();
        for name in gone {
            log::info!(
                server = name.as_str();
                "registry: server {name} is gone from the shared store; removing it"
            );
            self.remove(&name);
        }
    }
}

/// Forget a server (`DELETE /backend_servers/{name}`); answers whether it existed.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct RemoveServer(pub String);

impl Handler<RemoveServer> for ServerRegistry {
    type Result = bool;

    fn handle(&mut self, msg: RemoveServer, _: &mut Context<Self>) -> bool {
        self.remove(&msg.0)
    }
}

/// Stop (or resume) placing new handles on a server; existing handles stay.
#[derive(Message)]
#[rtype(result = "Result<ServerView, ProxyError>")]
pub struct SetDraining {
    pub server: String,
    pub draining: bool,
}

impl Handler<SetDraining> for ServerRegistry {
    type Result = Result<ServerView, ProxyError>;

    fn handle(&mut self, msg: SetDraining, _: &mut Context<Self>) -> Self::Result {
        let now = Instant::now();
        let capacity = self.capacity;
        let entry = self
            .servers
            .get_mut(&msg.server)
            .ok_or_else(|| ProxyError::UnknownServer(msg.server.clone()))?;
        entry.record.draining = msg.draining;
        log::info!(
            "registry: server {} {}",
            msg.server,
            if msg.draining {
                "draining"
            } else {
                "undrained"
            }
        );
        Ok(Self::view(entry, capacity, now))
    }
}

impl Handler<SelectServer> for ServerRegistry {
    type Result = Result<Placement, ProxyError>;

    fn handle(&mut self, msg: SelectServer, _: &mut Context<Self>) -> Self::Result {
        self.select(&msg, Instant::now())
    }
}

impl Handler<PlaceOn> for ServerRegistry {
    type Result = Option<Placement>;

    fn handle(&mut self, msg: PlaceOn, _: &mut Context<Self>) -> Self::Result {
        let entry = self.servers.get_mut(&msg.server)?;
        let link = entry.link.as_ref()?.port();
        let epoch = entry.record.placed();
        Some(Placement {
            server: entry.record.name.clone(),
            epoch,
            link,
            rtp_host: entry.record.rtp_host.clone(),
        })
    }
}

impl Handler<PlacementEnded> for ServerRegistry {
    type Result = ();

    fn handle(&mut self, msg: PlacementEnded, _: &mut Context<Self>) {
        if let Some(entry) = self.servers.get_mut(&msg.server) {
            entry.record.released(msg.epoch);
        }
    }
}

impl Handler<LinkHealth> for ServerRegistry {
    type Result = ();

    fn handle(&mut self, msg: LinkHealth, _: &mut Context<Self>) {
        let now = Instant::now();
        let Some(entry) = self.servers.get_mut(&msg.server) else {
            return;
        };
        if entry.link.as_ref().map(|l| l.id) != Some(msg.link_id) {
            return; // a retired link of a server that moved
        }
        match msg.event {
            HealthEvent::Succeeded => entry.breaker.on_success(now),
            HealthEvent::Recovered => entry.breaker.on_recovered(now),
            HealthEvent::Failed => {
                let before = entry.breaker.phase(now);
                entry.breaker.on_failure(now);
                if before != BreakerPhase::Open && entry.breaker.phase(now) == BreakerPhase::Open {
                    log::warn!(
                        server = msg.server.as_str();
                        "registry: circuit breaker of {} opened",
                        msg.server
                    );
                }
            }
            // The supervisor restarts stopped links; it does not forward their end.
            HealthEvent::Stopped => return,
        }
        let closed = entry.breaker.phase(now) == BreakerPhase::Closed;
        if let Some(supervisor) = &self.supervisor {
            supervisor.do_send(ApplyBreaker {
                name: msg.server,
                closed,
            });
        }
    }
}

impl Handler<LinkStarted> for ServerRegistry {
    type Result = ();

    fn handle(&mut self, msg: LinkStarted, _: &mut Context<Self>) {
        let Some(entry) = self.servers.get_mut(&msg.name) else {
            return; // removed meanwhile: the supervisor retires the link
        };
        if entry.record.url != msg.link.status.url {
            return; // a link of its old address
        }
        // A new link starts with a closed breaker of its own; the registry's is applied.
        let closed = entry.breaker.phase(Instant::now()) == BreakerPhase::Closed;
        msg.link.status.set_breaker_closed(closed);
        entry.link = Some(msg.link);
        self.publish_links();
    }
}

/// Every server, by name.
#[derive(Message)]
#[rtype(result = "Vec<ServerView>")]
pub struct ListServers;

impl Handler<ListServers> for ServerRegistry {
    type Result = MessageResult<ListServers>;

    fn handle(&mut self, _: ListServers, _: &mut Context<Self>) -> Self::Result {
        let now = Instant::now();
        let capacity = self.capacity;
        MessageResult(
            self.servers
                .values_mut()
                .map(|e| Self::view(e, capacity, now))
                .collect(),
        )
    }
}

/// One server.
#[derive(Message)]
#[rtype(result = "Option<ServerView>")]
pub struct GetServer(pub String);

impl Handler<GetServer> for ServerRegistry {
    type Result = Option<ServerView>;

    fn handle(&mut self, msg: GetServer, _: &mut Context<Self>) -> Self::Result {
        let capacity = self.capacity;
        let entry = self.servers.get_mut(&msg.0)?;
        Some(Self::view(entry, capacity, Instant::now()))
    }
}

/// How many servers take new handles now (for `/readyz`), after refreshing the metrics.
#[derive(Message)]
#[rtype(result = "RegistrySummary")]
pub struct Summarize {
    pub refresh_metrics: bool,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct RegistrySummary {
    pub servers: usize,
    pub selectable: usize,
    pub policy: SelectionPolicy,
}

impl Handler<Summarize> for ServerRegistry {
    type Result = MessageResult<Summarize>;

    fn handle(&mut self, msg: Summarize, _: &mut Context<Self>) -> Self::Result {
        let now = Instant::now();
        if msg.refresh_metrics {
            self.refresh_metrics(now);
        }
        let selectable = self
            .servers
            .values_mut()
            .filter_map(|e| Self::unselectable_because(e, now).is_none().then_some(()))
            .count();
        MessageResult(RegistrySummary {
            servers: self.servers.len(),
            selectable,
            policy: self.policy(),
        })
    }
}
