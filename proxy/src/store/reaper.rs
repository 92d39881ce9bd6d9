//! A proxy's backend sessions after it is gone.
//!
//! Each proxy holds one backend session per backend Janus (its [`BackendLink`]s), and the
//! Janus servers keep a session whose socket closed for `reclaim_session_timeout` (then
//! `session_timeout`) so that a link can claim it after a blip. So when a proxy dies, Janus
//! keeps its handles — videoroom and audiobridge participants, videocall legs — and their
//! peers on other proxies hear nothing for that long. Hence:
//!
//! * **The record.** With its heartbeat, in the same `MULTI`, each proxy writes
//!   `<prefix>:proxy_sessions:<proxy_id>`: JSON `{proxy, sessions: [{server, url,
//!   session_id}]}`, its links' current backend sessions (kept current every sync round, so a
//!   session a link re-created is recorded within `sync_interval_ms`). It expires
//!   [`RECORD_OUTLIVES_HEARTBEAT`] after the heartbeat would, so it is still there when the
//!   heartbeat is gone.
//! * **The reaper.** Every round tells each proxy which proxies of the index
//!   (`<prefix>:proxy_index`) have no heartbeat any more. One Lua script checks that the heartbeat is still absent and takes
//!   `<prefix>:reaping:<dead_id>` (`SET NX EX`), atomically, so exactly one survivor reaps,
//!   and a proxy whose record and heartbeat appear together is never taken for dead. The
//!   winner opens a WebSocket to each of the dead proxy's servers (the recorded URL; its own
//!   credentials for that server name, as its links use them: credentials are never written
//!   to Redis), `claim`s the session and `destroy`s it, so Janus tells every peer at once
//!   (`leaving`, `hangup`, …). Bounded by [`REAP_LIMIT`]; a session already gone (458) is
//!   fine; errors are logged. Then it releases the dead proxy's user names and, a while later,
//!   its participant entries, and removes it from the index ([`super::forget`]). A reaper that
//!   dies mid-way leaves the lock to expire ([`LOCK_TTL`]) and another survivor does it again.
//! * **Graceful stop** reaps this proxy's own sessions the same way (bounded by
//!   [`STOP_LIMIT`]) and removes itself from the store ([`super::exit::StoreExit`]), so the
//!   others see it gone at once.
//! * **A restart with the same `proxy_id`** finds its previous run's record (the heartbeat
//!   `SET … GET` returns it) and reaps the sessions that are not its own now.
//!
//! A proxy cut off from Redis (not from Janus) longer than `heartbeat_ttl_s` is taken for
//! dead like one that died: its sessions are reaped and its clients' handles get hangup +
//! detached while its links create new sessions. `heartbeat_ttl_s` is the line between a
//! blip and a death; rounds just after Redis came back never reap (as they never take a
//! proxy for dead).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use std::collections::HashMap;

use actix::Recipient;
use futures_util::{SinkExt, StreamExt};
use janus_protocol::JANUS_PROTOCOL;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::conn::StoreConn;
use super::forget::Forget;
use super::keys::Keys;
use super::scripts::{self, Notify};
use super::StoreHealth;
use crate::backend::connector::backend_client;
use crate::backend::{BackendCredentials, CredentialBook};
use crate::config::BackendConfig;
use crate::messages::adoption::{parse_held, AdoptDead, AdoptedLinks, SessionRecord};
use crate::registry::LinkTable;

/// How long a dead proxy's record stays after its last heartbeat write would have expired:
/// long enough for a survivor (or a later proxy, if none survived) to find it; beyond that
/// Janus has timed the sessions out anyway unless its `session_timeout` is 0.
pub const RECORD_OUTLIVES_HEARTBEAT: Duration = Duration::from_secs(3600);
/// The reaping of one dead proxy, all its servers together.
pub const REAP_LIMIT: Duration = Duration::from_secs(5);
/// The lock outlives a reaping comfortably; if its holder died, another survivor retries.
pub const LOCK_TTL: Duration = Duration::from_secs(30);
/// A graceful stop's destroying of this proxy's own sessions, all servers together.
pub const STOP_LIMIT: Duration = Duration::from_secs(2);

/// One backend session of a proxy, as recorded.
pub use crate::messages::adoption::BackendSession;

/// `<prefix>:proxy_sessions:<proxy_id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionsRecord {
    pub proxy: String,
    pub sessions: Vec<BackendSession>,
}

impl SessionsRecord {
    /// The record in a Redis value; None (logged) for something else under the key.
    pub fn parse(key: &str, text: &str) -> Option<SessionsRecord> {
        serde_json::from_str(text)
            .map_err(|e| log::warn!("store: {key} is not a sessions record ({e}); ignored"))
            .ok()
    }

    pub fn to_json(&self) -> String {
        // A struct of strings and integers always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What became of one backend session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reaped {
    /// Claimed and destroyed: Janus told the peers.
    Destroyed,
    /// Janus no longer had it (458): nothing to do.
    AlreadyGone,
    Failed(String),
}

/// Claims and destroys backend sessions as this proxy's links would speak to their servers.
#[derive(Clone)]
pub struct SessionReaper {
    links: Arc<LinkTable>,
    credentials: Arc<CredentialBook>,
    tls: Arc<rustls::ClientConfig>,
    connect_timeout: Duration,
    /// Takes a dead proxy's sessions over for its clients, when they are recorded
    /// (docs/adoption.md); what it does not take is destroyed at once.
    adopter: Option<Recipient<AdoptDead>>,
    /// The links holding the sessions it adopted: this proxy's too.
    adopted_links: AdoptedLinks,
}

impl SessionReaper {
    pub fn new(
        config: &BackendConfig,
        links: Arc<LinkTable>,
        tls: Arc<rustls::ClientConfig>,
    ) -> Self {
        SessionReaper {
            links,
            credentials: Arc::new(CredentialBook::new(config)),
            tls,
            connect_timeout: Duration::from_millis(config.connect_timeout_ms),
            adopter: None,
            adopted_links: AdoptedLinks::default(),
        }
    }

    /// Dead proxies' sessions go to `adopter` first; the sessions it holds on
    /// `adopted_links` are this proxy's too.
    pub fn with_adopter(
        mut self,
        adopter: Option<Recipient<AdoptDead>>,
        adopted_links: AdoptedLinks,
    ) -> Self {
        self.adopter = adopter;
        self.adopted_links = adopted_links;
        self
    }

    /// This proxy's backend sessions now: its links' and those it adopted (several on one
    /// server, then).
    pub fn live(&self) -> Vec<BackendSession> {
        let adopted = self.adopted_links.lock().clone();
        self.links
            .all()
            .iter()
            .chain(&adopted)
            .filter_map(|link| {
                Some(BackendSession {
                    server: link.name.clone(),
                    url: link.url.clone(),
                    session_id: link.backend_session()?,
                })
            })
            .collect()
    }

    /// Claims and destroys each session, all at once, within `limit`; logs every outcome.
    pub async fn reap(&self, whose: &str, sessions: &[BackendSession], limit: Duration) -> usize {
        let each = sessions.iter().map(|s| async move {
            let credentials = self.credentials.get(&s.server);
            let outcome = tokio::time::timeout(
                limit,
                claim_and_destroy(s, credentials, &self.tls, self.connect_timeout.min(limit)),
            )
            .await
            .unwrap_or_else(|_| Reaped::Failed(format!("no answer within {limit:?}")));
            match &outcome {
                Reaped::Destroyed => log::info!(
                    "reaper: {whose}'s session {} on {} destroyed",
                    s.session_id,
                    s.server
                ),
                Reaped::AlreadyGone => log::info!(
                    "reaper: {whose}'s session {} on {} was already gone",
                    s.session_id,
                    s.server
                ),
                Reaped::Failed(why) => log::warn!(
                    "reaper: {whose}'s session {} on {} ({}) not destroyed: {why}",
                    s.session_id,
                    s.server,
                    s.url
                ),
            }
            outcome
        });
        futures_util::future::join_all(each)
            .await
            .iter()
            .filter(|o| **o == Reaped::Destroyed)
            .count()
    }
}

/// `claim`, then `destroy`, on a socket of our own; the events Janus sends meanwhile (the
/// handles' `hangup`, `detached`, plugin events) are the dead proxy's and are dropped.
async fn claim_and_destroy(
    session: &BackendSession,
    credentials: &BackendCredentials,
    tls: &Arc<rustls::ClientConfig>,
    connect_timeout: Duration,
) -> Reaped {
    let client = backend_client(connect_timeout, tls.clone());
    let (_, mut socket) = match client
        .ws(session.url.as_str())
        .protocols([JANUS_PROTOCOL])
        .connect()
        .await
    {
        Ok(connected) => connected,
        Err(e) => return Reaped::Failed(format!("cannot connect: {e}")),
    };
    let mut outcome = Reaped::Destroyed;
    for verb in ["claim", "destroy"] {
        let transaction = format!("reaper-{verb}");
        let mut request = json!({"janus": verb, "session_id": session.session_id,
            "transaction": transaction});
        if let Some(secret) = &credentials.api_secret {
            request["apisecret"] = json!(secret);
        }
        if let Some(token) = &credentials.token {
            request["token"] = json!(token);
        }
        let sent = socket
            .send(awc::ws::Message::Text(request.to_string().into()))
            .await;
        if let Err(e) = sent {
            outcome = Reaped::Failed(format!("{verb}: {e}"));
            break;
        }
        match reply_to(&mut socket, &transaction).await {
            Ok(reply) if reply["janus"] == "success" => {}
            Ok(reply) if reply["error"]["code"] == 458 => {
                outcome = Reaped::AlreadyGone;
                break;
            }
            Ok(reply) => {
                outcome = Reaped::Failed(format!("{verb} refused: {}", reply["error"]));
                break;
            }
            Err(why) => {
                outcome = Reaped::Failed(format!("{verb}: {why}"));
                break;
            }
        }
    }
    let _ = socket.send(awc::ws::Message::Close(None)).await;
    outcome
}

/// The next frame answering `transaction`; frames that are not (events, continuation pieces
/// of large events) are skipped.
async fn reply_to<S>(socket: &mut S, transaction: &str) -> Result<Value, String>
where
    S: futures_util::Stream<Item = Result<awc::ws::Frame, awc::error::WsProtocolError>> + Unpin,
{
    while let Some(frame) = socket.next().await {
        match frame.map_err(|e| e.to_string())? {
            awc::ws::Frame::Text(text) => {
                let Ok(reply) = serde_json::from_slice::<Value>(&text) else {
                    continue;
                };
                if reply["transaction"] == transaction {
                    return Ok(reply);
                }
            }
            awc::ws::Frame::Close(reason) => return Err(format!("closed: {reason:?}")),
            _ => {}
        }
    }
    Err("socket closed".into())
}

/// The clean-up after dead proxies, in a sync round: for each dead proxy whose lock this
/// proxy takes, in the background (the round does not wait for Janus): its backend sessions
/// destroyed, its user names released, and, two heartbeat lifetimes later (a videoroom
/// coordinator taking over from it reads them meanwhile), its participant entries; then it is
/// forgotten.
pub(super) async fn reap_dead(dead: &[String], ctx: &DeadCleanup) -> Result<(), String> {
    for id in dead {
        if *id == ctx.own_id {
            continue;
        }
        let mut take = redis::cmd("EVAL");
        take.arg(scripts::TAKE_DEAD)
            .arg(3)
            .arg(ctx.keys.proxy(id))
            .arg(ctx.keys.reaping(id))
            .arg(ctx.keys.sessions(id))
            .arg(&ctx.own_id)
            .arg(LOCK_TTL.as_secs());
        let taken: redis::Value = ctx.conn.query("take dead", &take).await?;
        let record = match taken {
            redis::Value::Array(items) if items.len() == 2 => match &items[1] {
                redis::Value::BulkString(text) => String::from_utf8_lossy(text).into_owned(),
                _ => String::new(),
            },
            _ => continue,
        };
        let record = SessionsRecord::parse(&ctx.keys.sessions(id), &record);
        let sessions = record.map(|r| r.sessions).unwrap_or_default();
        let (ctx, id) = (ctx.clone(), id.clone());
        actix_rt::spawn(async move {
            let sessions = match &ctx.reaper.adopter {
                Some(adopter) => adopt(&ctx, adopter, &id, sessions).await,
                None => sessions,
            };
            log::info!(
                "reaper: proxy {id} is gone; destroying {} of its backend session(s)",
                sessions.len()
            );
            ctx.reaper
                .reap(&format!("proxy {id}"), &sessions, REAP_LIMIT)
                .await;
            ctx.health.reaped.fetch_add(1, Ordering::Relaxed);
            let forget = Forget {
                conn: &ctx.conn,
                keys: &ctx.keys,
                notify: &ctx.notify,
                topics: &ctx.topics,
                id: &id,
            };
            if let Err(e) = forget.users().await {
                log::warn!("reaper: proxy {id}'s users not released: {e}");
            }
            // Not a synchronisation: the entries must outlive the dead proxy a while.
            tokio::time::sleep(ctx.participants_grace).await;
            let done = async {
                forget.participants().await?;
                forget.proxy().await
            };
            if let Err(e) = done.await {
                // The lock expires and another survivor (or this one) does it again.
                log::warn!("reaper: proxy {id} not forgotten yet: {e}");
            }
        });
    }
    Ok(())
}

/// Hands dead proxy `id`'s records to the adopter; gives back the backend sessions it did not
/// take (all of them if its records cannot be read).
async fn adopt(
    ctx: &DeadCleanup,
    adopter: &Recipient<AdoptDead>,
    id: &str,
    backend: Vec<BackendSession>,
) -> Vec<BackendSession> {
    let mut pipe = redis::pipe();
    pipe.hgetall(ctx.keys.adoptable(id))
        .smembers(ctx.keys.backend_handles(id));
    let read: Result<(HashMap<String, String>, Vec<String>), _> =
        ctx.conn.pipe("adoption records", &pipe).await;
    let (records, held) = match read {
        Ok(read) => read,
        Err(e) => {
            log::warn!("reaper: proxy {id}'s sessions cannot be adopted: {e}");
            return backend;
        }
    };
    let sessions = records
        .iter()
        .filter_map(|(session, text)| {
            Some((session.parse().ok()?, SessionRecord::parse(session, text)?))
        })
        .collect();
    let dead = AdoptDead {
        proxy: id.to_owned(),
        backend: backend.clone(),
        sessions,
        held: parse_held(&held),
    };
    let left = adopter.send(dead).await.unwrap_or(backend);
    // The adopted sessions are the adopter's now (it records them as its own); a claim of one
    // that was not adopted must not wait for an adoption that will not come.
    let mut del = redis::cmd("DEL");
    del.arg(ctx.keys.adoptable(id));
    if let Err(e) = ctx.conn.query::<i64>("adoption records", &del).await {
        log::warn!("reaper: proxy {id}'s session records not deleted: {e}");
    }
    left
}

/// What the clean-up after dead proxies needs.
#[derive(Clone)]
pub(super) struct DeadCleanup {
    pub conn: Arc<StoreConn>,
    pub keys: Keys,
    pub notify: Notify,
    pub own_id: String,
    pub topics: Vec<String>,
    pub reaper: SessionReaper,
    pub health: Arc<StoreHealth>,
    pub participants_grace: Duration,
}

/// The previous run of this proxy (same `proxy_id`) left `previous`: its sessions that are
/// not this run's are reaped in the background.
pub(super) fn reap_previous_run(previous: &str, key: &str, reaper: &SessionReaper) {
    let Some(record) = SessionsRecord::parse(key, previous) else {
        return;
    };
    let now = reaper.live();
    let stale: Vec<BackendSession> = record
        .sessions
        .into_iter()
        .filter(|s| !now.contains(s))
        .collect();
    if stale.is_empty() {
        return;
    }
    log::info!(
        "reaper: destroying {} backend session(s) of this proxy's previous run",
        stale.len()
    );
    let reaper = reaper.clone();
    actix_rt::spawn(async move {
        reaper.reap("previous run", &stale, REAP_LIMIT).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_survives_its_json() {
        let record = SessionsRecord {
            proxy: "p1".into(),
            sessions: vec![BackendSession {
                server: "j1".into(),
                url: "ws://127.0.0.1:8188".into(),
                session_id: 8_000_000_000_000_001,
            }],
        };
        let text = record.to_json();
        assert_eq!(SessionsRecord::parse("k", &text), Some(record));
        assert_eq!(SessionsRecord::parse("k", "{\"name\":1}"), None);
        assert_eq!(SessionsRecord::parse("k", "not json"), None);
    }
}
