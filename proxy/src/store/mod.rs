//! The state store shared by several proxies: nothing (one proxy, `store.url` empty) or Redis.
//!
//! Shared: the server registry, the proxies' liveness and the videocall users:
//!
//! * `<prefix>:backend_servers:<name>` — a hash per reported server, janus-cloud's own key and
//!   field names (`name, url, status, session_timeout, location, isp, session_num, handle_num,
//!   expire, start_time, utime, ctime`) plus janus-sentinel's `load, cpu_percent,
//!   memory_percent`; `EXPIRE <expire>` when `expire` ≠ 0, as janus-cloud's Redis DAO does.
//!   The proxy that receives a report (REST or sentinel) writes it; every proxy reads all of
//!   them every `sync_interval_ms` and hands them to its [`ServerRegistry`], where the newer
//!   `utime` wins. Static servers from a proxy's configuration are never written.
//! * `<prefix>:proxies:<proxy_id>` — this proxy's heartbeat (JSON: id, admin and client
//!   addresses), `EX heartbeat_ttl_s`, rewritten every `sync_interval_ms`, together with
//!   `<prefix>:proxy_sessions:<proxy_id>`, its backend sessions: when a heartbeat expires, one
//!   survivor destroys the dead proxy's sessions on their Janus servers ([`reaper`]).
//!
//! All Redis work happens in one task ([`run`]): the admin API queues writes on a channel and
//! never waits for Redis. When Redis does not answer within `timeout_ms` the store is
//! *degraded*: every proxy keeps serving from its own registry, `/readyz` and the
//! `store_up` metric say so, writes wait in a queue (the latest per server) and the task
//! reconnects; once Redis answers again the queue is written, the reports this proxy received
//! recently are written again (Redis may have restarted empty) and the registry re-reads.
//!
//! * Users of the call plugins (`<prefix>:videocall_users:<name>`, `<prefix>:p2pcall_users:<name>`)
//!   and the messages between proxies: see [`bus`]. A name is claimed atomically ([`CLAIM`]:
//!   one Lua script, so of two proxies registering the same name at once exactly one wins);
//!   this task claims, writes and reads the users and publishes the messages, another one
//!   subscribes.
//!
//! * Videoroom and audiobridge rooms: see [`rooms`] (its own task and connection).

pub mod bus;
pub mod connection;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;
use janus_protocol::{JsonMap, ServerReport};
use parking_lot::Mutex;
use redis::aio::ConnectionManager;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::config::StoreConfig;
use crate::metrics::Metrics;
use crate::registry::{ServerRegistry, SharedReport, SyncShared};
use bus::Bus;
use connection::RedisTarget;

pub mod reaper;
use reaper::{SessionReaper, SessionsRecord, StoreExit};

pub mod rooms;

/// What the rest of the proxy sees of the store.
pub struct StoreHandle {
    shared: bool,
    bus: Option<Arc<Bus>>,
    /// Videoroom and audiobridge rooms (see [`rooms`]).
    rooms: Option<Arc<rooms::RoomStore>>,
    proxy_id: String,
    tx: Option<mpsc::UnboundedSender<StoreCommand>>,
    health: Arc<StoreHealth>,
    exit: Option<StoreExit>,
    /// How long a handle waits for a name claim before registering it locally only.
    claim_limit: Duration,
}

/// The outcome of claiming a user name in the shared store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The name is this proxy's (or there is no shared store).
    Won,
    /// A live proxy has it: Janus's 476.
    Taken,
    /// Redis is away: registered on this proxy only, written when Redis returns (where, if
    /// another proxy took the name meanwhile, it stays this proxy's only).
    LocalOnly,
}

#[derive(Default)]
struct StoreHealth {
    up: AtomicBool,
    /// This proxy's channel is subscribed: other proxies' messages reach it. Until then (at
    /// start, after a Redis gap) the store counts as degraded, as messages would be lost.
    subscribed: AtomicBool,
    proxies: AtomicUsize,
    last_error: Mutex<String>,
    /// Dead proxies whose backend sessions this proxy reaped.
    reaped: AtomicU64,
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
}

#[derive(Debug)]
enum StoreCommand {
    /// A report this proxy accepted, with the `utime`/`ctime` its registry gave it.
    Report(Box<SharedReport>),
    /// `DELETE /backend_servers/{name}` on this proxy.
    Remove(String),
    /// Claim a user name of a topic for this proxy; the outcome is sent back.
    ClaimUser {
        topic: String,
        name: String,
        reply: tokio::sync::oneshot::Sender<Claim>,
    },
    /// The proxy stops: the sync task ends (no heartbeat after this), then says so.
    Leave(tokio::sync::oneshot::Sender<()>),
    /// Write again a user name this proxy holds (after a Redis gap), claimed the same way.
    UserUp { topic: String, name: String },
    /// A user registered here left.
    UserDown { topic: String, name: String },
    /// A message to another proxy (dropped while Redis is away: signalling does not wait).
    Publish { channel: String, payload: String },
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
            proxy_id: String::new(),
            tx: None,
            health,
            exit: None,
            claim_limit: Duration::ZERO,
        }
    }

    pub fn is_shared(&self) -> bool {
        self.shared
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

    /// Shares a report this proxy's registry accepted (no-op in memory).
    pub fn report(&self, report: ServerReport, utime: f64, ctime: f64) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(StoreCommand::Report(Box::new(SharedReport {
                report,
                utime,
                ctime,
            })));
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
    /// already reserved the name in its own directory, so the proxy itself never claims a name
    /// twice; a claimed name is released with [`StoreHandle::user_down`].
    pub fn claim_user(
        &self,
        topic: &str,
        username: &str,
    ) -> impl std::future::Future<Output = Claim> + 'static {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let sent = self.tx.as_ref().map(|tx| {
            tx.send(StoreCommand::ClaimUser {
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
                // Not answered in time: the store task still writes it if it can.
                Some(true) => match tokio::time::timeout(limit, answer).await {
                    Ok(Ok(claim)) => claim,
                    _ => Claim::LocalOnly,
                },
            }
        }
    }

    /// Releases a name claimed with [`StoreHandle::claim_user`] (only if still this proxy's).
    pub fn user_down(&self, topic: &str, username: &str) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(StoreCommand::UserDown {
                topic: topic.to_owned(),
                name: username.to_owned(),
            });
        }
    }

    /// Stops the sync task (bounded): no heartbeat is written after this returns.
    pub async fn stop_syncing(&self) {
        let (Some(tx), Some(exit)) = (&self.tx, &self.exit) else {
            return;
        };
        let (done, stopped) = tokio::sync::oneshot::channel();
        if tx.send(StoreCommand::Leave(done)).is_ok() {
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
        if let Some(tx) = &self.tx {
            let _ = tx.send(StoreCommand::Remove(name.to_owned()));
        }
    }
}

/// Key names under the configured prefix.
#[derive(Clone, Debug)]
struct Keys {
    prefix: String,
}

impl Keys {
    fn server(&self, name: &str) -> String {
        format!("{}:backend_servers:{name}", self.prefix)
    }
    fn servers_pattern(&self) -> String {
        format!("{}:backend_servers:*", self.prefix)
    }
    fn proxy(&self, id: &str) -> String {
        format!("{}:proxies:{id}", self.prefix)
    }
    fn proxies_pattern(&self) -> String {
        format!("{}:proxies:*", self.prefix)
    }
    fn user(&self, topic: &str, username: &str) -> String {
        Bus::user_key(&self.prefix, topic, username)
    }
    fn users_pattern(&self, topic: &str) -> String {
        Bus::user_key(&self.prefix, topic, "*")
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

/// The store for `config`: the handle the proxy uses, and (with Redis) the task that syncs,
/// to be started with [`Syncer::spawn`] once the listen addresses are known.
pub fn open(
    config: &StoreConfig,
    registry: Addr<ServerRegistry>,
    metrics: Arc<Metrics>,
) -> Result<(StoreHandle, Option<Syncer>), crate::error::ProxyError> {
    if !config.is_shared() {
        metrics.store_up.set(1);
        metrics.store_proxies.set(1);
        return Ok((StoreHandle::memory(), None));
    }
    let client = Arc::new(
        connection::RedisTarget::parse(&config.url)
            .map_err(|e| crate::error::ProxyError::Config(format!("store.url: {e}")))?,
    );
    let proxy_id = if config.proxy_id.is_empty() {
        format!("{:016x}", rand::random::<u64>())
    } else {
        config.proxy_id.clone()
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let publisher = tx.clone();
    let bus = Bus::new(
        proxy_id.clone(),
        config.key_prefix.clone(),
        Box::new(move |channel, payload| {
            let _ = publisher.send(StoreCommand::Publish { channel, payload });
        }),
    );
    // The plugins with users register their topics at their first attach; their users are
    // read (and a dead proxy's deleted) from the start.
    bus.declare(crate::plugin::videocall::remote::TOPIC);
    bus.declare(crate::plugin::p2pcall::remote::TOPIC);
    let rooms = rooms::RoomStore::new(client.clone(), config, proxy_id.clone());
    let health = Arc::new(StoreHealth::default());
    *health.last_error.lock() = "not connected yet".into();
    let keys = Keys {
        prefix: config.key_prefix.clone(),
    };
    let timeout = Duration::from_millis(config.timeout_ms);
    let exit = StoreExit::new(client.clone(), keys.clone(), proxy_id.clone(), timeout);
    let syncer = Syncer {
        reaper: None,
        fresh: true,
        client,
        conn: None,
        keys: Keys {
            prefix: config.key_prefix.clone(),
        },
        proxy_id: proxy_id.clone(),
        heartbeat: String::new(),
        interval: Duration::from_millis(config.sync_interval_ms),
        timeout: Duration::from_millis(config.timeout_ms),
        heartbeat_ttl: config.heartbeat_ttl_s,
        registry,
        metrics,
        health: health.clone(),
        pending: Vec::new(),
        own: HashMap::new(),
        was_up: false,
        attempted: false,
        recovered_at: None,
        rx,
        bus: bus.clone(),
        own_users: HashSet::new(),
    };
    // A claim waits behind at most one sync round (a reconnection: twice the timeout, then a
    // few round trips).
    let claim_limit = Duration::from_millis(config.timeout_ms) * 4 + Duration::from_secs(1);
    Ok((
        StoreHandle {
            shared: true,
            bus: Some(bus),
            rooms: Some(rooms),
            proxy_id,
            tx: Some(tx),
            health,
            exit: Some(exit),
            claim_limit,
        },
        Some(syncer),
    ))
}

/// The task that keeps this proxy and the shared store in step.
pub struct Syncer {
    client: Arc<RedisTarget>,
    conn: Option<ConnectionManager>,
    keys: Keys,
    proxy_id: String,
    heartbeat: String,
    interval: Duration,
    timeout: Duration,
    heartbeat_ttl: u64,
    registry: Addr<ServerRegistry>,
    metrics: Arc<Metrics>,
    health: Arc<StoreHealth>,
    /// Writes not yet done, oldest first.
    pending: Vec<StoreCommand>,
    /// The last report this proxy received per server, with when: written again after Redis
    /// comes back, while still within its `expire`.
    own: HashMap<String, (SharedReport, Instant)>,
    was_up: bool,
    /// A sync round has been tried since the proxy started.
    attempted: bool,
    /// When Redis last came back: removals wait a heartbeat lifetime after that.
    recovered_at: Option<Instant>,
    rx: mpsc::UnboundedReceiver<StoreCommand>,
    bus: Arc<Bus>,
    /// User names (topic, name) this proxy holds (written again after a Redis gap).
    own_users: HashSet<(String, String)>,
    /// Records this proxy's backend sessions and destroys those of dead proxies.
    reaper: Option<SessionReaper>,
    /// No round has succeeded yet in this run: a sessions record under this proxy's id is an
    /// earlier run's.
    fresh: bool,
}

type RedisResult<T> = Result<T, String>;

impl Syncer {
    /// Starts syncing on the current runtime; the heartbeat names these addresses, `reaper`
    /// gives this proxy's backend sessions (recorded with it) and reaps dead proxies' ones.
    pub fn spawn(
        mut self,
        ws: SocketAddr,
        admin: SocketAddr,
        reaper: SessionReaper,
    ) -> tokio::task::JoinHandle<()> {
        self.reaper = Some(reaper);
        self.heartbeat = json!({
            "id": self.proxy_id,
            "ws": ws.to_string(),
            "admin": admin.to_string(),
        })
        .to_string();
        actix_rt::spawn(subscribe(
            self.client.clone(),
            self.bus.clone(),
            self.health.clone(),
            self.metrics.clone(),
            self.interval,
            self.timeout,
        ));
        actix_rt::spawn(self.run())
    }

    async fn run(mut self) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = self.rx.recv() => match command {
                    Some(StoreCommand::Leave(done)) => {
                        let _ = done.send(());
                        return;
                    }
                    Some(command) => {
                        // Batch what else is waiting, then write at once: a report should reach
                        // the other proxies without waiting for the next tick. A claim writes
                        // what was queued before it, then itself.
                        let mut next = Some(command);
                        while let Some(command) = next.take() {
                            match command {
                                StoreCommand::ClaimUser { topic, name, reply } => {
                                    let claim = self.claim(topic, name).await;
                                    let _ = reply.send(claim);
                                }
                                other => self.queue(other),
                            }
                            next = self.rx.try_recv().ok();
                        }
                        if self.was_up {
                            if let Err(e) = self.flush().await {
                                self.degraded(e);
                            }
                        }
                    }
                    None => return, // the proxy stopped
                },
                _ = tick.tick() => self.round().await,
            }
        }
    }

    fn queue(&mut self, command: StoreCommand) {
        match &command {
            StoreCommand::Report(shared) => {
                let name = shared.report.name.clone();
                self.pending
                    .retain(|c| !matches!(c, StoreCommand::Report(s) if s.report.name == name));
                self.own.insert(name, ((**shared).clone(), Instant::now()));
            }
            StoreCommand::Remove(name) => {
                self.own.remove(name);
            }
            StoreCommand::UserUp { topic, name } => {
                self.own_users.insert((topic.clone(), name.clone()));
            }
            StoreCommand::UserDown { topic, name } => {
                self.own_users.remove(&(topic.clone(), name.clone()));
            }
            // Handled by `run` (never queued).
            StoreCommand::ClaimUser { .. } => return,
            StoreCommand::Publish { .. } if !self.was_up => return,
            StoreCommand::Publish { .. } => {}
            StoreCommand::Leave(_) => return, // handled by `run`
        }
        self.pending.push(command);
    }

    /// Claims a user name in Redis, after writing what was queued before (a release of the
    /// same name, typically). Redis away: the name is this proxy's alone until it returns.
    async fn claim(&mut self, topic: String, name: String) -> Claim {
        if !self.attempted {
            // Just started (the claim came before the first round): connect now rather than
            // register locally only. Later, Redis away means local only, without waiting.
            self.round().await;
        }
        if self.was_up {
            match self.try_claim(&topic, &name).await {
                Ok(true) => {
                    self.own_users.insert((topic, name));
                    return Claim::Won;
                }
                Ok(false) => return Claim::Taken,
                Err(e) => self.degraded(e),
            }
        }
        self.queue(StoreCommand::UserUp { topic, name });
        Claim::LocalOnly
    }

    async fn try_claim(&mut self, topic: &str, name: &str) -> RedisResult<bool> {
        self.flush().await?;
        let mut conn = self.connection().await?;
        let won: i64 = self
            .bounded(
                "claim",
                self.claim_command(topic, name).query_async(&mut conn),
            )
            .await?;
        Ok(won == 1)
    }

    fn claim_command(&self, topic: &str, name: &str) -> redis::Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(CLAIM)
            .arg(1)
            .arg(self.keys.user(topic, name))
            .arg(&self.proxy_id)
            .arg(self.keys.proxy(""))
            .arg(name)
            .arg(crate::registry::record::unix_now().to_string());
        cmd
    }

    /// One sync round: connect if need be, write, heartbeat, read.
    async fn round(&mut self) {
        self.attempted = true;
        match self.try_round().await {
            Ok(()) => {
                if !self.was_up {
                    log::info!("store: Redis answers; shared state in sync");
                }
                self.was_up = true;
                self.health.up.store(true, Ordering::Relaxed);
                self.health.show(&self.metrics);
            }
            Err(e) => self.degraded(e),
        }
    }

    fn degraded(&mut self, error: String) {
        if self.was_up || self.health.last_error.lock().as_str() != error {
            log::warn!("store: Redis unavailable ({error}); serving local state");
        }
        self.was_up = false;
        self.conn = None;
        *self.health.last_error.lock() = error;
        self.health.up.store(false, Ordering::Relaxed);
        self.health.show(&self.metrics);
    }

    async fn connection(&mut self) -> RedisResult<ConnectionManager> {
        if let Some(conn) = &self.conn {
            return Ok(conn.clone());
        }
        let conn = self.client.manager(self.timeout).await?;
        self.conn = Some(conn.clone());
        Ok(conn)
    }

    async fn bounded<T>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> RedisResult<T> {
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| format!("{what}: timed out"))?
            .map_err(|e| format!("{what}: {e}"))
    }

    async fn try_round(&mut self) -> RedisResult<()> {
        let mut conn = self.connection().await?;
        // The heartbeat first, fetching the previous one: if it is gone, Redis lost its data
        // (restarted empty, possibly unnoticed: the connection reconnects by itself).
        // With it, atomically, this proxy's backend sessions (see `reaper`): a record never
        // exists without its heartbeat, and outlives it.
        let key = self.keys.proxy(&self.proxy_id);
        let sessions_key = self.keys.sessions(&self.proxy_id);
        let record = SessionsRecord {
            proxy: self.proxy_id.clone(),
            sessions: self.reaper.as_ref().map(|r| r.live()).unwrap_or_default(),
        };
        let ttl = self.heartbeat_ttl.max(1);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(&key)
            .arg(&self.heartbeat)
            .arg("EX")
            .arg(ttl)
            .arg("GET")
            .cmd("SET")
            .arg(&sessions_key)
            .arg(record.to_json())
            .arg("EX")
            .arg(ttl + reaper::RECORD_OUTLIVES_HEARTBEAT.as_secs())
            .arg("GET");
        let (previous, previous_sessions): (Option<String>, Option<String>) = self
            .bounded("heartbeat", pipe.query_async(&mut conn))
            .await?;
        if std::mem::take(&mut self.fresh) {
            if let (Some(previous), Some(reaper)) = (&previous_sessions, &self.reaper) {
                reaper::reap_previous_run(previous, &sessions_key, reaper);
            }
        }
        if !self.was_up || previous.is_none() {
            if self.was_up {
                log::warn!("store: Redis lost this proxy's keys (restarted?); writing them again");
            }
            self.recovered_at = Some(Instant::now());
            self.rewrite_own();
        }
        self.flush().await?;
        let proxies = self.scan(&mut conn, &self.keys.proxies_pattern()).await?;
        self.health.proxies.store(proxies.len(), Ordering::Relaxed);
        self.metrics.store_proxies.set(proxies.len() as i64);
        let cut = self.keys.proxy("").len();
        let alive: HashSet<String> = proxies
            .iter()
            .filter_map(|k| k.get(cut..))
            .map(str::to_owned)
            .collect();
        // After a gap, the other proxies need a round to write their heartbeats, reports and
        // users again (Redis may have come back empty): what is missing is not taken for
        // removed or dead before then.
        let settle = Duration::from_secs(self.heartbeat_ttl.max(1));
        let remove_missing = self.recovered_at.is_none_or(|at| at.elapsed() >= settle);
        if let (true, Some(reaper)) = (remove_missing, &self.reaper) {
            reaper::reap_dead(
                &mut conn,
                &self.keys,
                &self.proxy_id,
                &alive,
                reaper,
                &self.health,
                self.timeout,
            )
            .await?;
        }
        self.sync_users(&mut conn, remove_missing.then_some(&alive))
            .await?;
        let reports = self.read_servers(&mut conn).await?;
        self.registry
            .send(SyncShared {
                reports,
                remove_missing,
            })
            .await
            .map_err(|_| "registry stopped".to_string())
    }

    /// Queues again what this proxy wrote lately: its reports still within their `expire`, and
    /// its videocall users.
    fn rewrite_own(&mut self) {
        let now = Instant::now();
        for (shared, at) in self.own.values() {
            let expire = shared.report.expire.unwrap_or(0);
            if expire == 0 || now.duration_since(*at) < Duration::from_secs(expire) {
                let name = shared.report.name.clone();
                let already = self
                    .pending
                    .iter()
                    .any(|c| matches!(c, StoreCommand::Report(s) if s.report.name == name));
                if !already {
                    self.pending
                        .push(StoreCommand::Report(Box::new(shared.clone())));
                }
            }
        }
        for (topic, name) in &self.own_users {
            self.pending.push(StoreCommand::UserUp {
                topic: topic.clone(),
                name: name.clone(),
            });
        }
    }

    /// Writes the queued commands, in order; what fails stays queued.
    async fn flush(&mut self) -> RedisResult<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut conn = self.connection().await?;
        while let Some(command) = self.pending.first() {
            if let StoreCommand::UserUp { topic, name } = command {
                let won: i64 = self
                    .bounded(
                        "write",
                        self.claim_command(topic, name).query_async(&mut conn),
                    )
                    .await?;
                if won != 1 {
                    log::warn!(
                        "store: {topic} user {name} was taken by another proxy while Redis was \
                         away; it stays registered on this proxy only"
                    );
                }
                self.pending.remove(0);
                continue;
            }
            let mut pipe = redis::pipe();
            pipe.atomic();
            match command {
                StoreCommand::Report(shared) => {
                    let key = self.keys.server(&shared.report.name);
                    pipe.del(&key).ignore();
                    pipe.hset_multiple(&key, &report_fields(shared)).ignore();
                    if let Some(expire) = shared.report.expire.filter(|e| *e > 0) {
                        pipe.expire(&key, expire as i64).ignore();
                    }
                }
                StoreCommand::Remove(name) => {
                    pipe.del(self.keys.server(name)).ignore();
                }
                // Written above; never queued.
                StoreCommand::UserUp { .. } | StoreCommand::ClaimUser { .. } => {}
                StoreCommand::UserDown { topic, name } => {
                    pipe.add_command(delete_if_owned(
                        &self.keys.user(topic, name),
                        &self.proxy_id,
                    ))
                    .ignore();
                }
                StoreCommand::Publish { channel, payload } => {
                    pipe.publish(channel, payload).ignore();
                }
                StoreCommand::Leave(_) => {}
            }
            self.bounded("write", pipe.query_async::<()>(&mut conn))
                .await?;
            self.pending.remove(0);
        }
        Ok(())
    }

    async fn scan(&self, conn: &mut ConnectionManager, pattern: &str) -> RedisResult<Vec<String>> {
        scan_keys(conn, pattern, self.timeout).await
    }

    /// Reads every proxy's users of every topic of the bus: those of other live proxies go to
    /// the bus, those of dead proxies are deleted; then the topics learn who is alive. `alive`
    /// None: liveness is not known yet (just after a Redis gap): every user counts, nobody is
    /// dead.
    async fn sync_users(
        &self,
        conn: &mut ConnectionManager,
        alive: Option<&HashSet<String>>,
    ) -> RedisResult<()> {
        for topic in self.bus.topics() {
            let users = self.read_users(conn, &topic, alive).await?;
            self.bus.update_users(&topic, users);
        }
        if let Some(alive) = alive {
            self.bus.proxies_alive(alive);
        }
        Ok(())
    }

    async fn read_users(
        &self,
        conn: &mut ConnectionManager,
        topic: &str,
        alive: Option<&HashSet<String>>,
    ) -> RedisResult<BTreeMap<String, String>> {
        let keys = self.scan(conn, &self.keys.users_pattern(topic)).await?;
        let cut = self.keys.user(topic, "").len();
        let mut users = BTreeMap::new();
        for chunk in keys.chunks(64) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.hget(key, "proxy_uuid");
            }
            let owners: Vec<Option<String>> =
                self.bounded("read users", pipe.query_async(conn)).await?;
            for (key, owner) in chunk.iter().zip(owners) {
                let (Some(owner), Some(name)) = (owner, key.get(cut..)) else {
                    continue;
                };
                if owner == self.proxy_id {
                    if !self
                        .own_users
                        .contains(&(topic.to_owned(), name.to_owned()))
                    {
                        // Left over from an earlier run of this proxy (same `proxy_id`).
                        let _: redis::RedisResult<i64> = delete_if_owned(key, &owner)
                            .query_async(&mut conn.clone())
                            .await;
                    }
                    continue;
                }
                if alive.is_none_or(|alive| alive.contains(&owner)) {
                    users.insert(name.to_owned(), owner);
                } else {
                    // Its proxy died: nobody else will remove it.
                    let _: redis::RedisResult<i64> = delete_if_owned(key, &owner)
                        .query_async(&mut conn.clone())
                        .await;
                }
            }
        }
        Ok(users)
    }

    async fn read_servers(&self, conn: &mut ConnectionManager) -> RedisResult<Vec<SharedReport>> {
        let keys = self.scan(conn, &self.keys.servers_pattern()).await?;
        let mut reports = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(32) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.hgetall(key);
            }
            let hashes: Vec<HashMap<String, String>> =
                self.bounded("read", pipe.query_async(conn)).await?;
            for (key, hash) in chunk.iter().zip(hashes) {
                // Expired between SCAN and HGETALL: an empty hash.
                if hash.is_empty() {
                    continue;
                }
                reports.extend(parse_report(key, hash));
            }
        }
        Ok(reports)
    }
}

/// Every key matching `pattern`, sorted, each Redis call bounded by `timeout`.
async fn scan_keys(
    conn: &mut ConnectionManager,
    pattern: &str,
    timeout: Duration,
) -> RedisResult<Vec<String>> {
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = tokio::time::timeout(
            timeout,
            redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(500)
                .query_async(conn),
        )
        .await
        .map_err(|_| "scan: timed out".to_string())?
        .map_err(|e| format!("scan: {e}"))?;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}
/// Claims a user name: `KEYS[1]` the user's key; `ARGV`: this proxy's id, the heartbeat key
/// prefix (`<prefix>:proxies:`), the name, the time. The key is (re)written unless another
/// proxy owns it and that proxy's heartbeat is alive (a dead proxy's names are free at once,
/// before anyone sweeps them). One script: Redis runs it atomically, so two proxies claiming
/// the same name at the same moment cannot both win. Returns 1 when won, 0 when taken.
pub const CLAIM: &str = "local owner = redis.call('HGET', KEYS[1], 'proxy_uuid') \
    if owner and owner ~= ARGV[1] and redis.call('EXISTS', ARGV[2] .. owner) == 1 then \
    return 0 end \
    redis.call('DEL', KEYS[1]) \
    redis.call('HSET', KEYS[1], 'username', ARGV[3], 'proxy_uuid', ARGV[1], 'incall', '', \
    'peer_name', '', 'ctime', ARGV[4]) \
    return 1";

/// `DEL key` if its `proxy_uuid` is `owner` (a user registered again elsewhere stays).
fn delete_if_owned(key: &str, owner: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(
        "if redis.call('HGET', KEYS[1], 'proxy_uuid') == ARGV[1] then \
         return redis.call('DEL', KEYS[1]) end return 0",
    )
    .arg(1)
    .arg(key)
    .arg(owner);
    cmd
}

/// Receives the messages other proxies send this one, for as long as the proxy runs;
/// resubscribes after a Redis gap.
async fn subscribe(
    client: Arc<RedisTarget>,
    bus: Arc<Bus>,
    health: Arc<StoreHealth>,
    metrics: Arc<Metrics>,
    retry: Duration,
    timeout: Duration,
) {
    use futures_util::StreamExt;
    let channel = bus.channel();
    loop {
        let connected = async {
            let mut pubsub = client.pubsub(timeout).await?;
            tokio::time::timeout(timeout, pubsub.subscribe(&channel))
                .await
                .map_err(|_| "subscribe: timed out".to_string())?
                .map_err(|e| format!("subscribe: {e}"))?;
            Ok::<_, String>(pubsub)
        }
        .await;
        if let Ok(mut pubsub) = connected {
            health.subscribed.store(true, Ordering::Relaxed);
            health.show(&metrics);
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                match message.get_payload::<String>() {
                    Ok(payload) => bus.deliver(&payload),
                    Err(e) => log::warn!("store: unreadable message on {channel}: {e}"),
                }
            }
            health.subscribed.store(false, Ordering::Relaxed);
            health.show(&metrics);
            log::warn!("store: subscription to {channel} lost; resubscribing");
        }
        // Reconnect pace while Redis is away (not a synchronisation).
        tokio::time::sleep(retry).await;
    }
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
