//! The state store shared by several proxies: nothing (one proxy, `store.url` empty) or Redis.
//!
//! What is shared, and how (the key layout is in `docs/cluster.md`):
//!
//! * **The server registry**: `<prefix>:backend_servers:<name>`, a hash per reported server in
//!   janus-cloud's own layout (plus janus-sentinel's load figures), `EXPIRE <expire>`, listed in
//!   `<prefix>:backend_server_index`. The proxy that receives a report writes it; every proxy
//!   reads them every `sync_interval_ms` and hands them to its [`ServerRegistry`], where the
//!   newer `utime` wins. Static servers from a proxy's configuration are never written.
//! * **Liveness**: `<prefix>:proxies:<proxy_id>`, each proxy's heartbeat (`EX heartbeat_ttl_s`),
//!   with `<prefix>:proxy_sessions:<proxy_id>`, its backend sessions; `<prefix>:proxy_index`
//!   lists the proxies. When a heartbeat expires, one survivor cleans up ([`reaper`]).
//! * **Users of the call plugins** (`<prefix>:<topic>_users:<name>`, janus-cloud's key, and the
//!   index `<prefix>:<topic>_user_index`): a name is claimed atomically, so of two proxies
//!   registering the same name at once exactly one wins.
//! * **Rooms** of videoroom and audiobridge, and their participants: see [`rooms`].
//! * **Messages between proxies**: see [`bus`].
//!
//! Every write that other proxies keep a view of goes with a notice on the change feed
//! ([`feed`]): every proxy's view follows within a Redis round trip, and the sync round reads
//! only the heartbeats, the version and the few server reports, whatever the number of users
//! and rooms ([`sync`], [`follow`]). Writes go in order through one task ([`writer`]) that never
//! waits behind a round.
//!
//! When Redis does not answer within `timeout_ms` the store is *degraded*: every proxy keeps
//! serving from its own state, `/readyz` and the `store_up` metric say so, writes wait (the
//! latest per server, every user name) and are done again when Redis answers, with everything
//! this proxy holds if Redis lost it (restarted empty, or a failover to a replica that lagged).

pub mod bus;
pub mod conn;
pub mod connection;
pub mod exit;
pub mod feed;
mod follow;
mod forget;
mod homes;
pub mod keys;
pub mod reaper;
pub mod rooms;
mod scripts;
mod sync;
pub mod users;
mod writer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use janus_protocol::{JsonMap, ServerReport};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::config::StoreConfig;
use crate::metrics::Metrics;
use crate::registry::{ServerRegistry, SharedReport};
use bus::Bus;
use conn::StoreConn;
use connection::RedisTarget;
use exit::StoreExit;
use keys::Keys;
pub use sync::Syncer;
use writer::{AdoptionWrite, WriterCommand};

/// What the rest of the proxy sees of the store.
pub struct StoreHandle {
    shared: bool,
    bus: Option<Arc<Bus>>,
    /// Videoroom and audiobridge rooms (see [`rooms`]).
    rooms: Option<Arc<rooms::RoomStore>>,
    conn: Option<Arc<StoreConn>>,
    keys: Keys,
    proxy_id: String,
    writer: Option<mpsc::UnboundedSender<WriterCommand>>,
    stop: Mutex<Option<oneshot::Sender<oneshot::Sender<()>>>>,
    health: Arc<StoreHealth>,
    exit: Option<StoreExit>,
    /// How long a handle waits for a name claim before registering it locally only.
    claim_limit: Duration,
    /// `store.adopt_window_s` > 0: sessions write their records for a survivor.
    adopt: bool,
    /// The records are a survivor's now (a graceful stop hands the sessions over): no more
    /// writes, whatever the sessions and links do while the proxy exits.
    adoption_frozen: AtomicBool,
}

use crate::messages::adoption::{AdoptionBook, SessionRecord};
pub use crate::messages::cluster::Claim;
use crate::messages::cluster::{ClusterPorts, SharedUsers, StoreFuture};

#[derive(Default)]
pub struct StoreHealth {
    up: AtomicBool,
    /// This proxy's channel is subscribed: other proxies' messages reach it. Until then (at
    /// start, after a Redis gap) the store counts as degraded, as messages would be lost.
    subscribed: AtomicBool,
    proxies: AtomicUsize,
    last_error: Mutex<String>,
    /// Dead proxies whose backend sessions this proxy reaped.
    reaped: AtomicU64,
    /// The live proxies as of the last sync round (for the admin console).
    peers: Mutex<Vec<PeerView>>,
}

/// A live proxy of the cluster, as the last sync round saw it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PeerView {
    pub id: String,
    /// Subscribed to its channel: messages from the other proxies reach it.
    pub subscribed: bool,
}

impl StoreHealth {
    /// Usable: Redis answers and this proxy's channel is subscribed.
    fn usable(&self) -> bool {
        self.up.load(Ordering::Relaxed) && self.subscribed.load(Ordering::Relaxed)
    }

    /// `store_up` says what `/readyz` says.
    fn show(&self, metrics: &Metrics) {
        metrics.store_up.set(i64::from(self.usable()));
    }

    fn set_peers(&self, alive: &std::collections::HashSet<String>, subscribed: &[String]) {
        let mut peers: Vec<PeerView> = alive
            .iter()
            .map(|id| PeerView {
                id: id.clone(),
                subscribed: subscribed.contains(id),
            })
            .collect();
        peers.sort_by(|a, b| a.id.cmp(&b.id));
        *self.peers.lock() = peers;
    }

    /// A Redis call failed: degraded until a sync round succeeds.
    fn down(&self, error: String) {
        let was_up = self.up.swap(false, Ordering::Relaxed);
        let mut last = self.last_error.lock();
        if was_up || *last != error {
            log::warn!("store: Redis unavailable ({error}); serving local state");
        }
        *last = error;
    }
}

impl SharedUsers for StoreHandle {
    fn is_shared(&self) -> bool {
        StoreHandle::is_shared(self)
    }

    fn is_degraded(&self) -> bool {
        StoreHandle::is_degraded(self)
    }

    fn claim_user(&self, topic: &str, name: &str) -> StoreFuture<Claim> {
        Box::pin(StoreHandle::claim_user(self, topic, name))
    }

    fn user_down(&self, topic: &str, name: &str) {
        StoreHandle::user_down(self, topic, name)
    }

    fn lookup_user(&self, topic: &str, name: &str) -> StoreFuture<Option<String>> {
        Box::pin(StoreHandle::lookup_user(self, topic, name))
    }
}

impl AdoptionBook for StoreHandle {
    fn session(&self, id: u64, record: Option<&SessionRecord>) {
        let record = record.map(SessionRecord::to_json);
        self.write_adoption(AdoptionWrite::Session { id, record });
    }

    fn backend_handle(&self, server: &str, handle: u64, session: Option<u64>) {
        self.write_adoption(AdoptionWrite::BackendHandle {
            server: server.to_owned(),
            handle,
            session,
        });
    }

    fn whose(&self, id: u64) -> StoreFuture<Option<String>> {
        let asked = self.live_conn().map(|conn| {
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(scripts::WHOSE_SESSION)
                .arg(1)
                .arg(self.keys.proxy_index())
                .arg(self.keys.adoptable(""))
                .arg(id);
            (conn, cmd)
        });
        Box::pin(async move {
            let (conn, cmd) = asked?;
            conn.query::<Option<String>>("whose session", &cmd)
                .await
                .ok()
                .flatten()
        })
    }

    fn own_id(&self) -> &str {
        &self.proxy_id
    }
}

/// The shared state as the plugins see it.
pub fn ports(store: &Arc<StoreHandle>) -> ClusterPorts {
    ClusterPorts {
        users: store.clone(),
        homes: store
            .shared
            .then(|| store.clone() as Arc<dyn crate::messages::cluster::SharedHomes>),
        rooms: store
            .rooms
            .clone()
            .map(|r| r as Arc<dyn crate::messages::cluster::SharedRooms>),
        bus: store
            .bus
            .clone()
            .map(|b| b as Arc<dyn crate::messages::cluster::ClusterBus>),
    }
}

/// The store's state for `/readyz`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoreStatus {
    /// `memory` or `redis`.
    pub kind: &'static str,
    /// `ok` or `degraded`.
    pub state: &'static str,
    pub proxy_id: String,
    /// Live proxies in the store (this one included); 1 in memory.
    pub proxies: usize,
    /// Dead proxies whose backend sessions this proxy destroyed.
    pub reaped_proxies: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl StoreHandle {
    /// A store for this proxy alone.
    pub fn memory() -> Self {
        let health = Arc::new(StoreHealth::default());
        health.up.store(true, Ordering::Relaxed);
        health.subscribed.store(true, Ordering::Relaxed);
        health.proxies.store(1, Ordering::Relaxed);
        StoreHandle {
            shared: false,
            bus: None,
            rooms: None,
            conn: None,
            keys: Keys::new(""),
            proxy_id: String::new(),
            writer: None,
            stop: Mutex::new(None),
            health,
            exit: None,
            claim_limit: Duration::ZERO,
            adopt: false,
            adoption_frozen: AtomicBool::new(false),
        }
    }

    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// The connection to ask Redis something now: None in memory, or while Redis is away.
    fn live_conn(&self) -> Option<Arc<StoreConn>> {
        self.conn.clone().filter(|_| !self.is_degraded())
    }

    pub fn is_degraded(&self) -> bool {
        self.shared && !self.health.usable()
    }

    pub fn status(&self) -> StoreStatus {
        let degraded = self.is_degraded();
        StoreStatus {
            kind: if self.shared { "redis" } else { "memory" },
            state: if degraded { "degraded" } else { "ok" },
            proxy_id: self.proxy_id.clone(),
            proxies: self.health.proxies.load(Ordering::Relaxed),
            reaped_proxies: self.health.reaped.load(Ordering::Relaxed),
            error: degraded.then(|| {
                if self.health.up.load(Ordering::Relaxed) {
                    "not subscribed to this proxy's channel yet".to_owned()
                } else {
                    self.health.last_error.lock().clone()
                }
            }),
        }
    }

    /// The live proxies as of the last sync round (empty in memory).
    pub fn peers(&self) -> Vec<PeerView> {
        self.health.peers.lock().clone()
    }

    /// Shares a report this proxy's registry accepted (no-op in memory).
    pub fn report(&self, report: ServerReport, utime: f64, ctime: f64) {
        if let Some(tx) = &self.writer {
            let _ = tx.send(WriterCommand::Report(Box::new(SharedReport {
                report,
                utime,
                ctime,
            })));
        }
    }

    /// Where sessions and links write their records for a survivor (None in memory, or
    /// with `store.adopt_window_s` 0).
    pub fn adoption(self: &Arc<Self>) -> Option<Arc<dyn AdoptionBook>> {
        (self.shared && self.adopt).then(|| self.clone() as Arc<dyn AdoptionBook>)
    }

    /// Stops writing the adoption records: they stay as they are for a survivor.
    pub fn freeze_adoption(&self) {
        self.adoption_frozen.store(true, Ordering::Relaxed);
    }

    fn write_adoption(&self, write: AdoptionWrite) {
        if self.adoption_frozen.load(Ordering::Relaxed) {
            return;
        }
        if let Some(tx) = &self.writer {
            let _ = tx.send(WriterCommand::Adoption(write));
        }
    }

    /// The bus to the other proxies, with their users (None in memory).
    pub fn bus(&self) -> Option<Arc<Bus>> {
        self.bus.clone()
    }

    /// The shared rooms (None in memory).
    pub fn rooms(&self) -> Option<Arc<rooms::RoomStore>> {
        self.rooms.clone()
    }

    /// Claims `username` of `topic` (`videocall`, `p2pcall`) for this proxy. The caller has
    /// already reserved the name in its own users table, so the proxy itself never claims a name
    /// twice; a claimed name is released with [`StoreHandle::user_down`].
    pub fn claim_user(
        &self,
        topic: &str,
        username: &str,
    ) -> impl std::future::Future<Output = Claim> + 'static {
        let (reply, answer) = oneshot::channel();
        let sent = self.writer.as_ref().map(|tx| {
            tx.send(WriterCommand::ClaimUser {
                topic: topic.to_owned(),
                name: username.to_owned(),
                reply,
            })
            .is_ok()
        });
        let limit = self.claim_limit;
        async move {
            match sent {
                None => Claim::Won,
                Some(false) => Claim::LocalOnly,
                // Not answered in time: the writer still writes it if it can.
                Some(true) => match tokio::time::timeout(limit, answer).await {
                    Ok(Ok(claim)) => claim,
                    _ => Claim::LocalOnly,
                },
            }
        }
    }

    /// Releases a name claimed with [`StoreHandle::claim_user`] (only if still this proxy's).
    pub fn user_down(&self, topic: &str, username: &str) {
        if let Some(tx) = &self.writer {
            let _ = tx.send(WriterCommand::UserDown {
                topic: topic.to_owned(),
                name: username.to_owned(),
            });
        }
    }

    /// The live proxy (not this one) that holds `username` of `topic`, asked of Redis itself:
    /// for a name this proxy's view does not have (yet). None in memory, when nobody has it,
    /// or when Redis does not answer.
    pub fn lookup_user(
        &self,
        topic: &str,
        username: &str,
    ) -> impl std::future::Future<Output = Option<String>> + 'static {
        let asked = self.live_conn().map(|conn| {
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(scripts::LOOKUP_USER)
                .arg(1)
                .arg(self.keys.user_index(topic))
                .arg(username)
                .arg(self.keys.proxy(""));
            (conn, cmd)
        });
        let (me, bus) = (self.proxy_id.clone(), self.bus.clone());
        let (topic, username) = (topic.to_owned(), username.to_owned());
        async move {
            let (conn, cmd) = asked?;
            let owner: Option<String> = conn.query("look up user", &cmd).await.ok()?;
            let owner = owner.filter(|o| *o != me)?;
            if let Some(bus) = bus {
                // The notice is on its way; the view need not wait for it.
                bus.users().set(&topic, &username, Some(&owner));
            }
            Some(owner)
        }
    }

    /// Stops the sync round (bounded): no heartbeat is written after this returns.
    pub async fn stop_syncing(&self) {
        let (Some(stop), Some(exit)) = (self.stop.lock().take(), &self.exit) else {
            return;
        };
        let (done, stopped) = oneshot::channel();
        if stop.send(done).is_ok() {
            // A round in progress ends within a few Redis timeouts.
            let _ = tokio::time::timeout(exit.timeout() * 4, stopped).await;
        }
    }

    /// What removes this proxy from the shared store when it stops (None in memory).
    pub fn exit(&self) -> Option<StoreExit> {
        self.exit.clone()
    }

    /// Shares the removal of a server (no-op in memory).
    pub fn remove(&self, name: &str) {
        if let Some(tx) = &self.writer {
            let _ = tx.send(WriterCommand::Remove(name.to_owned()));
        }
    }
}

/// The hash fields of a report (janus-cloud's, plus janus-sentinel's load figures).
fn report_fields(shared: &SharedReport) -> Vec<(&'static str, String)> {
    let mut fields = shared.report.to_form_fields();
    fields.push(("utime", shared.utime.to_string()));
    fields.push(("ctime", shared.ctime.to_string()));
    fields
}

/// A report back from its hash; None (and a log line) for a hash that is not one, e.g.
/// written by something else under the same prefix.
fn parse_report(key: &str, hash: HashMap<String, String>) -> Option<SharedReport> {
    let number = |field: &str| hash.get(field).and_then(|v| v.parse::<f64>().ok());
    let utime = number("utime").unwrap_or(0.0);
    let ctime = number("ctime").unwrap_or(utime);
    let mut params = JsonMap::new();
    for (field, value) in &hash {
        // janus-cloud writes None/False as "", and fields this proxy does not read.
        if value.is_empty() || !janus_protocol::admin::FIELDS.contains(&field.as_str()) {
            continue;
        }
        params.insert(field.clone(), Value::String(value.clone()));
    }
    match ServerReport::from_params(&params) {
        Ok(report) => Some(SharedReport {
            report,
            utime,
            ctime,
        }),
        Err(e) => {
            log::warn!("store: {key} is not a server report ({e}); ignored");
            None
        }
    }
}

/// The store for `config`: the handle the proxy uses, and (with Redis) the tasks that keep it
/// in step, to be started with [`Syncer::spawn`] once the listen addresses are known.
/// `user_topics` are the call plugins' topics with user names (`videocall`, `p2pcall`).
pub fn open(
    config: &StoreConfig,
    registry: Addr<ServerRegistry>,
    metrics: Arc<Metrics>,
    user_topics: &[&str],
) -> Result<(StoreHandle, Option<Syncer>), crate::error::ProxyError> {
    if !config.is_shared() {
        metrics.store_up.set(1);
        metrics.store_proxies.set(1);
        return Ok((StoreHandle::memory(), None));
    }
    let target = Arc::new(
        RedisTarget::parse(&config.url)
            .map_err(|e| crate::error::ProxyError::Config(format!("store.url: {e}")))?,
    );
    let proxy_id = if config.proxy_id.is_empty() {
        format!("{:016x}", rand::random::<u64>())
    } else {
        config.proxy_id.clone()
    };
    let keys = Keys::new(&config.key_prefix);
    let timeout = Duration::from_millis(config.timeout_ms.max(1));
    let interval = Duration::from_millis(config.sync_interval_ms.max(10));
    let settle = Duration::from_secs(config.heartbeat_ttl_s.max(1));
    let conn = Arc::new(StoreConn::new(target.clone(), timeout));
    let health = Arc::new(StoreHealth::default());
    *health.last_error.lock() = "not connected yet".into();
    let topics: Vec<String> = user_topics.iter().map(|t| (*t).to_owned()).collect();

    let (writer_tx, writer_rx) = mpsc::unbounded_channel();
    let publisher = writer_tx.clone();
    let bus = Bus::new(
        proxy_id.clone(),
        config.key_prefix.clone(),
        Box::new(move |channel, payload| {
            let _ = publisher.send(WriterCommand::Publish { channel, payload });
        }),
    );
    let rooms = rooms::RoomStore::new(
        conn.clone(),
        keys.clone(),
        proxy_id.clone(),
        interval,
        settle,
        health.clone(),
    );
    let own_users = writer::OwnUsers::default();
    let writer = writer::Writer::new(
        conn.clone(),
        keys.clone(),
        proxy_id.clone(),
        health.clone(),
        own_users.clone(),
    );
    let (follow_tx, follow_rx) = mpsc::unbounded_channel();
    let follow = follow::Follow {
        conn: conn.clone(),
        keys: keys.clone(),
        proxy_id: proxy_id.clone(),
        // A notice is lost if the view stays behind a stored version for two rounds.
        feed: feed::Feed::new(interval * 2),
        bus: bus.clone(),
        users: bus.users().clone(),
        rooms: rooms.clone(),
        topics: topics.clone(),
        own_users,
        writer: writer_tx.clone(),
        settle,
        subscribed: false,
        alive: None,
        resync_at: None,
    };
    let (stop_tx, stop_rx) = oneshot::channel();
    let mut syncer = Syncer::new(
        conn.clone(),
        keys.clone(),
        proxy_id.clone(),
        interval,
        config.heartbeat_ttl_s,
        registry,
        metrics.clone(),
        health.clone(),
        writer_tx.clone(),
        follow_tx.clone(),
        rooms.clone(),
        topics.clone(),
        stop_rx,
    );
    syncer.tasks = vec![
        Box::pin(writer.run(writer_rx)),
        Box::pin(follow.run(follow_rx)),
        Box::pin(follow::subscribe(
            conn.clone(),
            keys.clone(),
            bus.clone(),
            follow_tx,
            health.clone(),
            metrics,
            interval,
        )),
    ];
    let exit = StoreExit::new(target, keys.clone(), proxy_id.clone(), topics, timeout);
    // A claim waits behind at most a burst of writes and a reconnection.
    let claim_limit = timeout * 4 + Duration::from_secs(1);
    Ok((
        StoreHandle {
            shared: true,
            bus: Some(bus),
            rooms: Some(rooms),
            conn: Some(conn),
            keys,
            proxy_id,
            writer: Some(writer_tx),
            stop: Mutex::new(Some(stop_tx)),
            health,
            exit: Some(exit),
            claim_limit,
            adopt: config.adopt_window_s > 0,
            adoption_frozen: AtomicBool::new(false),
        },
        Some(syncer),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use janus_protocol::ServerStatus;

    #[test]
    fn a_report_survives_its_hash() {
        let mut report = ServerReport::new("janus-1", "ws://10.0.0.1:8188", ServerStatus::Normal);
        report.expire = Some(15);
        report.load = Some(0.25);
        report.location = Some("eu".into());
        let shared = SharedReport {
            report: report.clone(),
            utime: 1_700_000_000.125,
            ctime: 1_699_999_999.5,
        };
        let hash: HashMap<String, String> = report_fields(&shared)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let back = parse_report("k", hash).expect("parses");
        assert_eq!(back.report, report);
        assert_eq!(back.utime, shared.utime);
        assert_eq!(back.ctime, shared.ctime);
    }

    #[test]
    fn janus_cloud_hashes_are_read() {
        // As janus-cloud's rd_server_dao writes them: None as "", extra fields.
        let hash: HashMap<String, String> = [
            ("name", "j1"),
            ("url", "ws://127.0.0.1:8188"),
            ("status", "0"),
            ("session_timeout", "60"),
            ("location", ""),
            ("isp", ""),
            ("session_num", "3"),
            ("handle_num", ""),
            ("expire", "60"),
            ("start_time", "1700000000.5"),
            ("utime", "1700000010.0"),
            ("ctime", "1700000000.0"),
            ("public_url", "ws://x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let back = parse_report("k", hash).expect("parses");
        assert_eq!(back.report.name, "j1");
        assert_eq!(back.report.session_num, Some(3));
        assert_eq!(back.report.handle_num, None);
        assert_eq!(back.utime, 1_700_000_010.0);
    }

    #[test]
    fn garbage_is_ignored() {
        let hash: HashMap<String, String> = [("name", "bad name!"), ("url", "x")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert!(parse_report("k", hash).is_none());
    }
}
