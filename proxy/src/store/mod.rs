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
//!   addresses), `EX heartbeat_ttl_s`, rewritten every `sync_interval_ms`.
//!
//! All Redis work happens in one task ([`run`]): the admin API queues writes on a channel and
//! never waits for Redis. When Redis does not answer within `timeout_ms` the store is
//! *degraded*: every proxy keeps serving from its own registry, `/readyz` and the
//! `store_up` metric say so, writes wait in a queue (the latest per server) and the task
//! reconnects; once Redis answers again the queue is written, the reports this proxy received
//! recently are written again (Redis may have restarted empty) and the registry re-reads.
//!
//! * Videocall users and peer messages: see [`crate::plugin::videocall::remote`]; this task
//!   writes and reads the users and publishes the messages, another one subscribes.
//!
//! * Videoroom and audiobridge rooms: see [`rooms`] (its own task and connection).
//!
//! Next (issue 9): p2pcall between proxies (its pairing state and every signalling event over
//! pub/sub, on the same channels).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;
use janus_protocol::{JsonMap, ServerReport};
use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::config::StoreConfig;
use crate::metrics::Metrics;
use crate::plugin::videocall::remote::Bus;
use crate::registry::{ServerRegistry, SharedReport, SyncShared};

pub mod rooms;

/// What the rest of the proxy sees of the store.
pub struct StoreHandle {
    shared: bool,
    videocall: Option<Arc<Bus>>,
    /// Videoroom and audiobridge rooms (see [`rooms`]).
    rooms: Option<Arc<rooms::RoomStore>>,
    proxy_id: String,
    tx: Option<mpsc::UnboundedSender<StoreCommand>>,
    health: Arc<StoreHealth>,
}

#[derive(Default)]
struct StoreHealth {
    up: AtomicBool,
    proxies: AtomicUsize,
    last_error: Mutex<String>,
}

#[derive(Debug)]
enum StoreCommand {
    /// A report this proxy accepted, with the `utime`/`ctime` its registry gave it.
    Report(Box<SharedReport>),
    /// `DELETE /backend_servers/{name}` on this proxy.
    Remove(String),
    /// A videocall user registered here / left.
    UserUp(String),
    UserDown(String),
    /// A message to another proxy (dropped while Redis is away: signalling does not wait).
    Publish {
        channel: String,
        payload: String,
    },
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl StoreHandle {
    /// A store for this proxy alone.
    pub fn memory() -> Self {
        let health = Arc::new(StoreHealth::default());
        health.up.store(true, Ordering::Relaxed);
        health.proxies.store(1, Ordering::Relaxed);
        StoreHandle {
            shared: false,
            videocall: None,
            rooms: None,
            proxy_id: String::new(),
            tx: None,
            health,
        }
    }

    pub fn is_shared(&self) -> bool {
        self.shared
    }

    pub fn is_degraded(&self) -> bool {
        self.shared && !self.health.up.load(Ordering::Relaxed)
    }

    pub fn status(&self) -> StoreStatus {
        let degraded = self.is_degraded();
        StoreStatus {
            kind: if self.shared { "redis" } else { "memory" },
            state: if degraded { "degraded" } else { "ok" },
            proxy_id: self.proxy_id.clone(),
            proxies: self.health.proxies.load(Ordering::Relaxed),
            error: degraded.then(|| self.health.last_error.lock().clone()),
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

    /// The videocall users and messages of other proxies (None in memory).
    pub fn videocall(&self) -> Option<Arc<Bus>> {
        self.videocall.clone()
    }

    /// The shared rooms (None in memory).
    pub fn rooms(&self) -> Option<Arc<rooms::RoomStore>> {
        self.rooms.clone()
    }

    pub fn user_up(&self, username: &str) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(StoreCommand::UserUp(username.to_owned()));
        }
    }

    pub fn user_down(&self, username: &str) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(StoreCommand::UserDown(username.to_owned()));
        }
    }

    /// Shares the removal of a server (no-op in memory).
    pub fn remove(&self, name: &str) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(StoreCommand::Remove(name.to_owned()));
        }
    }
}

/// Key names under the configured prefix.
#[derive(Clone)]
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
    fn user(&self, username: &str) -> String {
        Bus::user_key(&self.prefix, username)
    }
    fn users_pattern(&self) -> String {
        Bus::user_key(&self.prefix, "*")
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
    let client = redis::Client::open(config.url.as_str())
        .map_err(|e| crate::error::ProxyError::Config(format!("store.url: {e}")))?;
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
    let rooms = rooms::RoomStore::new(client.clone(), config, proxy_id.clone());
    let health = Arc::new(StoreHealth::default());
    *health.last_error.lock() = "not connected yet".into();
    let syncer = Syncer {
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
        recovered_at: None,
        rx,
        bus: bus.clone(),
        own_users: HashSet::new(),
    };
    Ok((
        StoreHandle {
            shared: true,
            videocall: Some(bus),
            rooms: Some(rooms),
            proxy_id,
            tx: Some(tx),
            health,
        },
        Some(syncer),
    ))
}

/// The task that keeps this proxy and the shared store in step.
pub struct Syncer {
    client: redis::Client,
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
    /// When Redis last came back: removals wait a heartbeat lifetime after that.
    recovered_at: Option<Instant>,
    rx: mpsc::UnboundedReceiver<StoreCommand>,
    bus: Arc<Bus>,
    /// Videocall users registered here (written again after a Redis gap).
    own_users: HashSet<String>,
}

type RedisResult<T> = Result<T, String>;

impl Syncer {
    /// Starts syncing on the current runtime; the heartbeat names these addresses.
    pub fn spawn(mut self, ws: SocketAddr, admin: SocketAddr) -> tokio::task::JoinHandle<()> {
        self.heartbeat = json!({
            "id": self.proxy_id,
            "ws": ws.to_string(),
            "admin": admin.to_string(),
        })
        .to_string();
        actix_rt::spawn(subscribe(
            self.client.clone(),
            self.bus.clone(),
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
                    Some(command) => {
                        self.queue(command);
                        // Batch what else is waiting, then write at once: a report should reach
                        // the other proxies without waiting for the next tick.
                        while let Ok(more) = self.rx.try_recv() {
                            self.queue(more);
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
            StoreCommand::UserUp(name) => {
                self.own_users.insert(name.clone());
            }
            StoreCommand::UserDown(name) => {
                self.own_users.remove(name);
            }
            StoreCommand::Publish { .. } if !self.was_up => return,
            StoreCommand::Publish { .. } => {}
        }
        self.pending.push(command);
    }

    /// One sync round: connect if need be, write, heartbeat, read.
    async fn round(&mut self) {
        match self.try_round().await {
            Ok(()) => {
                if !self.was_up {
                    log::info!("store: Redis answers; shared state in sync");
                }
                self.was_up = true;
                self.health.up.store(true, Ordering::Relaxed);
                self.metrics.store_up.set(1);
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
        self.metrics.store_up.set(0);
    }

    async fn connection(&mut self) -> RedisResult<ConnectionManager> {
        if let Some(conn) = &self.conn {
            return Ok(conn.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout)
            .set_number_of_retries(1);
        let conn = tokio::time::timeout(
            self.timeout * 2,
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
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
        let key = self.keys.proxy(&self.proxy_id);
        let previous: Option<String> = self
            .bounded(
                "heartbeat",
                redis::cmd("SET")
                    .arg(&key)
                    .arg(&self.heartbeat)
                    .arg("EX")
                    .arg(self.heartbeat_ttl.max(1))
                    .arg("GET")
                    .query_async(&mut conn),
            )
            .await?;
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
        for user in &self.own_users {
            self.pending.push(StoreCommand::UserUp(user.clone()));
        }
    }

    /// Writes the queued commands, in order; what fails stays queued.
    async fn flush(&mut self) -> RedisResult<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut conn = self.connection().await?;
        while let Some(command) = self.pending.first() {
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
                StoreCommand::UserUp(name) => {
                    let key = self.keys.user(name);
                    pipe.del(&key).ignore();
                    pipe.hset_multiple(
                        &key,
                        &[
                            ("username", name.clone()),
                            ("proxy_uuid", self.proxy_id.clone()),
                            ("incall", String::new()),
                            ("peer_name", String::new()),
                            ("ctime", crate::registry::record::unix_now().to_string()),
                        ],
                    )
                    .ignore();
                }
                StoreCommand::UserDown(name) => {
                    pipe.add_command(delete_if_owned(&self.keys.user(name), &self.proxy_id))
                        .ignore();
                }
                StoreCommand::Publish { channel, payload } => {
                    pipe.publish(channel, payload).ignore();
                }
            }
            self.bounded("write", pipe.query_async::<()>(&mut conn))
                .await?;
            self.pending.remove(0);
        }
        Ok(())
    }

    async fn scan(&self, conn: &mut ConnectionManager, pattern: &str) -> RedisResult<Vec<String>> {
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = self
                .bounded(
                    "scan",
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(500)
                        .query_async(conn),
                )
                .await?;
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

    /// Reads every proxy's videocall users: those of other live proxies go to the bus, those
    /// of dead proxies are deleted. `alive` None: liveness is not known yet (just after a
    /// Redis gap): every user counts, nobody is dead.
    async fn sync_users(
        &self,
        conn: &mut ConnectionManager,
        alive: Option<&HashSet<String>>,
    ) -> RedisResult<()> {
        let keys = self.scan(conn, &self.keys.users_pattern()).await?;
        let cut = self.keys.user("").len();
        let mut users = HashMap::new();
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
                    if !self.own_users.contains(name) {
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
        self.bus.update(users, alive);
        Ok(())
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
async fn subscribe(client: redis::Client, bus: Arc<Bus>, retry: Duration, timeout: Duration) {
    use futures_util::StreamExt;
    let channel = bus.channel();
    loop {
        let connected = tokio::time::timeout(timeout * 2, async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        if let Ok(Ok(mut pubsub)) = connected {
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                match message.get_payload::<String>() {
                    Ok(payload) => bus.deliver(&payload),
                    Err(e) => log::warn!("store: unreadable message on {channel}: {e}"),
                }
            }
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
