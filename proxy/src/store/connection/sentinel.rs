//! The master of a Redis Sentinel set: asked of the sentinels, kept until a connection to it
//! fails or the sentinels name another one, then asked again.
//!
//! Two ways a master stops being the one to use:
//!
//! * it dies (`kill -9`, a host lost): the store's connections to it fail, the store drops
//!   them and asks for new ones; the master is forgotten when connecting to it fails, and
//!   looked up again (the sentinels name the promoted replica once they have failed over);
//! * it is replaced while alive (`SENTINEL FAILOVER`, a partition that heals): Sentinel
//!   turns it into a replica only some 10 s after promoting another, and until then it
//!   still takes writes that nobody else reads. A watch asks the sentinels every
//!   [`WATCH_EVERY`]; when they name another master (checked with `ROLE`), it becomes the
//!   one to use and this proxy's connections to the old one are closed on that server
//!   (`CLIENT KILL`): the store sees them fail and reconnects to the new master. Once the old
//!   master is a replica, anything still connected to it gets `READONLY` on its writes and
//!   `ROLE` says `slave` on a new connection: forgotten as well.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use redis::aio::MultiplexedConnection;
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use tokio::sync::Mutex;

use super::address::SentinelAddress;

/// How often the sentinels are asked whether the master changed.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);

/// At most this many of this proxy's connections are remembered (to be closed on a master
/// that was replaced); the store opens a handful, and new ones only after errors.
const REMEMBERED: usize = 64;

/// The sentinels of one master, and the master they last named.
pub struct SentinelSet {
    shared: Arc<Shared>,
    watching: AtomicBool,
}

struct Shared {
    address: SentinelAddress,
    node: SentinelNodeConnectionInfo,
    /// One `Sentinel` per sentinel (each keeps its own connection), asked side by side: a
    /// sentinel that does not answer costs no more than the time limit, and does not hide
    /// the others.
    sentinels: Vec<Mutex<Sentinel>>,
    /// The watch's connection to each sentinel.
    watch: Vec<(redis::Client, Mutex<Option<MultiplexedConnection>>)>,
    /// The master last found. Its lock is held while one is looked up, so that the store's
    /// connections, failing together, wait for one lookup rather than making one each.
    master: Mutex<Option<Master>>,
    /// This proxy's connections, with the generation of the master each was made to.
    connections: parking_lot::Mutex<Vec<(u64, Connection)>>,
    /// The store's time limit on a Redis call (the watch uses it too).
    timeout_ms: AtomicU64,
}

/// A master found through the sentinels.
#[derive(Clone)]
pub struct Master {
    /// Which lookup found it: a failure reported for an older one is stale.
    pub generation: u64,
    pub client: redis::Client,
    /// Found just now (not kept from an earlier lookup).
    pub fresh: bool,
}

impl Master {
    fn addr(&self) -> String {
        self.client.get_connection_info().addr.to_string()
    }
}

/// How a connection of this proxy is known to the server it is connected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// `CLIENT ID`.
    Id(u64),
    /// The client's address (`ip:port`), for a subscription, which takes no `CLIENT ID`.
    Addr(String),
}

impl SentinelSet {
    pub fn new(address: SentinelAddress) -> Result<SentinelSet, String> {
        let mut sentinels = Vec::with_capacity(address.sentinels.len());
        let mut watch = Vec::with_capacity(address.sentinels.len());
        for index in 0..address.sentinels.len() {
            let info = address
                .sentinel_info(index)
                .ok_or_else(|| "sentinel index out of range".to_string())?;
            watch.push((
                redis::Client::open(info.clone()).map_err(|e| e.to_string())?,
                Mutex::new(None),
            ));
            sentinels.push(Mutex::new(
                Sentinel::build(vec![info]).map_err(|e| e.to_string())?,
            ));
        }
        if sentinels.is_empty() {
            return Err("no sentinel".into());
        }
        let node = address.node_info();
        Ok(SentinelSet {
            shared: Arc::new(Shared {
                address,
                node,
                sentinels,
                watch,
                master: Mutex::new(None),
                connections: parking_lot::Mutex::new(Vec::new()),
                timeout_ms: AtomicU64::new(1000),
            }),
            watching: AtomicBool::new(false),
        })
    }

    /// The master to use now: the one found last, or (none, or it failed) the one the
    /// sentinels name, looked up within `timeout`.
    pub async fn master(&self, timeout: Duration) -> Result<Master, String> {
        let millis = u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        self.shared.timeout_ms.store(millis, Ordering::Relaxed);
        // The watch runs on the runtime of the store's tasks, from their first connection.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            if !self.watching.swap(true, Ordering::Relaxed) {
                runtime.spawn(watch(Arc::downgrade(&self.shared)));
            }
        }
        let mut cached = self.shared.master.lock().await;
        if let Some(master) = cached.as_ref() {
            return Ok(Master {
                fresh: false,
                ..master.clone()
            });
        }
        let client = self.shared.look_up(timeout).await?;
        let master = self.shared.found(client);
        *cached = Some(master.clone());
        Ok(master)
    }

    /// A connection to the master of `generation` failed (or it is not a master any more):
    /// the next [`SentinelSet::master`] asks the sentinels again.
    pub async fn forget(&self, generation: u64, why: &str) {
        let mut cached = self.shared.master.lock().await;
        if cached.as_ref().is_some_and(|m| m.generation == generation) {
            if let Some(master) = cached.take() {
                log::warn!(
                    "store: Redis master {} of {} failed ({why}); asking the sentinels again",
                    master.addr(),
                    self.shared.address.master
                );
            }
        }
        self.shared
            .connections
            .lock()
            .retain(|(g, _)| *g != generation);
    }

    /// A connection made to the master of `generation`, to be closed if that master is
    /// replaced while alive.
    pub fn opened(&self, generation: u64, connection: Connection) {
        let mut connections = self.shared.connections.lock();
        connections.push((generation, connection));
        if connections.len() > REMEMBERED {
            connections.remove(0);
        }
    }
}

impl Shared {
    fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.load(Ordering::Relaxed))
    }

    /// `client` becomes the master to use, in a new generation.
    fn found(&self, client: redis::Client) -> Master {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let master = Master {
            generation: NEXT.fetch_add(1, Ordering::Relaxed),
            client,
            fresh: true,
        };
        log::info!(
            "store: Redis Sentinel names {} as master {}",
            master.addr(),
            self.address.master
        );
        master
    }

    /// Asks every sentinel at once; the first master one of them names *and* that says it is
    /// a master (`ROLE`, checked by the crate) wins. A sentinel that has not yet seen a
    /// failover names the old master, which fails that check (dead, or a replica now).
    async fn look_up(&self, timeout: Duration) -> Result<redis::Client, String> {
        let name = self.address.master.as_str();
        let mut asks: FuturesUnordered<_> = self
            .sentinels
            .iter()
            .enumerate()
            .map(|(index, sentinel)| async move {
                let mut sentinel = sentinel.lock().await;
                let found = sentinel.async_master_for(name, Some(&self.node)).await;
                (index, found)
            })
            .collect();
        let deadline = tokio::time::Instant::now() + timeout;
        // Per sentinel, in the URL's order: the same situation gives the same message (the
        // store logs a new message, not the same one every round).
        let mut errors: Vec<Option<String>> = vec![None; self.sentinels.len()];
        while let Ok(Some((index, found))) = tokio::time::timeout_at(deadline, asks.next()).await {
            match found {
                Ok(client) => return Ok(client),
                Err(e) => errors[index] = Some(describe(&e)),
            }
        }
        let errors: Vec<String> = self
            .address
            .sentinels
            .iter()
            .zip(errors)
            .map(|((host, port), error)| {
                let error = error.unwrap_or_else(|| format!("no answer within {timeout:?}"));
                format!("{host}:{port}: {error}")
            })
            .collect();
        Err(format!(
            "no master {name} found through the sentinels ({})",
            errors.join("; ")
        ))
    }

    /// The master's address as each sentinel names it (None: no answer).
    async fn named(&self, timeout: Duration) -> Vec<Option<String>> {
        let asks = self.watch.iter().map(|(client, conn)| async move {
            let mut conn = conn.lock().await;
            let attempt = async {
                if conn.is_none() {
                    *conn = Some(client.get_multiplexed_async_connection().await.ok()?);
                }
                let mut cmd = redis::cmd("SENTINEL");
                cmd.arg("get-master-addr-by-name").arg(&self.address.master);
                let answer: Option<(String, u16)> = cmd.query_async(conn.as_mut()?).await.ok()?;
                answer.map(|(host, port)| format!("{host}:{port}"))
            };
            let named = tokio::time::timeout(timeout, attempt).await.ok().flatten();
            if named.is_none() {
                // Connect again next time (a sentinel that restarted, or a broken socket).
                *conn = None;
            }
            named
        });
        futures_util::future::join_all(asks).await
    }

    /// One look at the sentinels: when one of them names a master other than the one in
    /// use, and a lookup confirms it, the new one is used and this proxy's connections to
    /// the old one are closed.
    async fn check(&self) {
        let timeout = self.timeout();
        let Some(current) = self.master.lock().await.clone() else {
            return; // none in use: the store looks one up when it connects
        };
        let old = current.addr();
        if !self
            .named(timeout)
            .await
            .iter()
            .flatten()
            .any(|named| *named != old)
        {
            return;
        }
        let mut cached = self.master.lock().await;
        if cached.as_ref().map(|m| m.generation) != Some(current.generation) {
            return; // changed meanwhile
        }
        let Ok(client) = self.look_up(timeout).await else {
            return; // not settled yet
        };
        if client.get_connection_info().addr.to_string() == old {
            return; // a sentinel that has not seen the last failover yet
        }
        log::warn!(
            "store: Redis Sentinel replaced master {} ({old}); leaving it",
            self.address.master
        );
        *cached = Some(self.found(client));
        drop(cached);
        self.leave(&current, timeout).await;
    }

    /// Closes this proxy's connections to `old` (a master that was replaced while alive):
    /// the store sees them fail and reconnects, to the new master.
    async fn leave(&self, old: &Master, timeout: Duration) {
        let mine: Vec<Connection> = {
            let mut connections = self.connections.lock();
            let mine = connections
                .iter()
                .filter(|(g, _)| *g == old.generation)
                .map(|(_, c)| c.clone())
                .collect();
            connections.retain(|(g, _)| *g != old.generation);
            mine
        };
        if mine.is_empty() {
            return;
        }
        let connected =
            tokio::time::timeout(timeout, old.client.get_multiplexed_async_connection()).await;
        let Ok(Ok(mut conn)) = connected else {
            log::info!(
                "store: the old master {} is unreachable; its connections fail by themselves",
                old.addr()
            );
            return;
        };
        let closed = async {
            let mut closed = 0;
            for connection in &mine {
                let mut cmd = redis::cmd("CLIENT");
                cmd.arg("KILL");
                match connection {
                    Connection::Id(id) => cmd.arg("ID").arg(*id),
                    Connection::Addr(addr) => cmd.arg("ADDR").arg(addr),
                };
                let killed: i64 = cmd
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                closed += killed;
            }
            Ok::<_, String>(closed)
        };
        match tokio::time::timeout(timeout, closed).await {
            Ok(Ok(closed)) => log::info!(
                "store: closed {closed} connection(s) to the old master {}",
                old.addr()
            ),
            // CLIENT KILL not allowed to this proxy's user, typically: they fail once
            // Sentinel makes the old master a replica.
            Ok(Err(e)) => log::warn!(
                "store: cannot close the connections to the old master {} ({e}); they are \
                 left when Sentinel makes it a replica",
                old.addr()
            ),
            Err(_) => log::warn!(
                "store: the old master {} did not answer; its connections are left when they fail",
                old.addr()
            ),
        }
    }
}

/// Asks the sentinels every [`WATCH_EVERY`] whether the master changed, for as long as the
/// set exists.
async fn watch(shared: Weak<Shared>) {
    loop {
        // The pace of the watch (not a synchronisation).
        tokio::time::sleep(WATCH_EVERY).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        shared.check().await;
    }
}

/// A sentinel's answer, in the store's words.
fn describe(error: &redis::RedisError) -> String {
    match error.kind() {
        // Named none, or named one that is down or does not say it is a master.
        redis::ErrorKind::MasterNameNotFoundBySentinel => {
            "knows no reachable master by that name (a wrong name, or a failover in progress)"
                .into()
        }
        _ => error.to_string(),
    }
}
