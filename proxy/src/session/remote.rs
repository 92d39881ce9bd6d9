//! Sessions held by another proxy, reached over the bus (docs/adoption.md, "Three or more
//! proxies"). A dead proxy's sessions are adopted by one survivor (Janus's `claim` moves a whole
//! backend session, every client's handles, to one socket), but each of its clients reconnects
//! wherever the load balancer sends it. A client whose `claim` lands on a proxy that does not
//! hold its session is served through the one that does: its requests for that session go to
//! the holder on the bus, and the frames for it come back the same way.
//!
//! Both ends are here. On the **holder**, a [`FarConnection`] actor stands for the client's
//! connection on the other proxy: to the session it is a connection like any other (a
//! `ConnPort`), and what the session sends it is published to that proxy. On the **client's
//! proxy**, [`SessionRelay::near`] gives each such frame to the client's connection, and a
//! holder that dies closes the client's socket, so that it reconnects and claims again.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use actix::prelude::*;
use janus_protocol::{ApiError, Incoming, ServerMessage, Target};
use parking_lot::Mutex;
use serde_json::{json, Value};

use super::env::SessionEnv;
use super::SessionRequest;
use crate::messages::cluster::{BusReply, ClusterBus, Topic};
use crate::messages::{ClientFrame, ConnPort, ReplyTo, SessionOwnership};

/// The bus topic of relayed sessions.
pub const TOPIC: &str = "client_sessions";

/// The holder of a session relayed through this proxy died: the client's socket is closed,
/// so that it reconnects and claims its session again (from the proxy that adopts it).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RelayLost;

/// A connection of this proxy with sessions held elsewhere.
struct Near {
    frames: Recipient<ClientFrame>,
    lost: Recipient<RelayLost>,
    /// The proxies holding its sessions.
    holders: HashSet<String>,
}

/// This proxy's end of the relay: the holder side's far connections, the client side's
/// connections.
pub struct SessionRelay {
    env: Weak<SessionEnv>,
    bus: Arc<dyn ClusterBus>,
    /// Holder side: by (the client's proxy, its connection id there).
    far: Mutex<HashMap<(String, u64), Addr<FarConnection>>>,
    /// Client side: by connection id.
    near: Mutex<HashMap<u64, Near>>,
    /// The next far connection's number.
    next_far: AtomicU64,
}

/// Far connection ids: apart from this proxy's own connections' (which count up from 1).
const FAR_IDS: u64 = 1 << 62;

impl SessionRelay {
    /// The relay on `bus`, registered as its topic.
    pub fn register(env: &Arc<SessionEnv>, bus: Arc<dyn ClusterBus>) -> Arc<SessionRelay> {
        let relay = Arc::new(SessionRelay {
            env: Arc::downgrade(env),
            bus: bus.clone(),
            far: Mutex::default(),
            near: Mutex::default(),
            next_far: AtomicU64::new(FAR_IDS),
        });
        let topic = relay.clone() as Arc<dyn Topic>;
        bus.register(TOPIC, Box::new(move || topic));
        relay
    }

    /// Client side: does `proxy` hold session `id` now? (Bounded by the bus's timeout.)
    pub async fn holds(bus: Arc<dyn ClusterBus>, proxy: String, id: u64) -> bool {
        let asked = bus.ask(proxy, TOPIC.into(), json!({"op": "holds", "session": id}));
        matches!(asked.await, Ok(answer) if answer["held"] == true)
    }

    /// Client side: connection `conn` sends its requests for a session to `holder` (see
    /// [`SessionRelay::forward`]) and gets its frames back.
    pub fn near(
        &self,
        conn: u64,
        holder: &str,
        frames: Recipient<ClientFrame>,
        lost: Recipient<RelayLost>,
    ) {
        self.near
            .lock()
            .entry(conn)
            .or_insert_with(|| Near {
                frames,
                lost,
                holders: HashSet::new(),
            })
            .holders
            .insert(holder.to_owned());
    }

    /// Client side: a request of connection `conn` for a session `holder` holds.
    pub fn forward(&self, holder: &str, conn: u64, request: &Incoming) {
        // The request as the client sent it (its envelope was read out of `root`).
        let mut root = request.root.clone();
        root.insert("janus".into(), request.request.clone().into());
        root.insert("transaction".into(), request.transaction.clone().into());
        root.insert("session_id".into(), request.session_id.into());
        if request.handle_id != 0 {
            root.insert("handle_id".into(), request.handle_id.into());
        }
        let text = serde_json::to_string(&root).unwrap_or_default();
        let body = json!({"op": "request", "conn": conn, "text": text});
        self.bus.send(holder, TOPIC, body);
    }

    /// Client side: connection `conn` closed; its far ends are told.
    pub fn gone(&self, conn: u64) {
        let Some(near) = self.near.lock().remove(&conn) else {
            return;
        };
        for holder in near.holders {
            self.bus
                .send(&holder, TOPIC, json!({"op": "gone", "conn": conn}));
        }
    }

    /// Holder side: a request from connection `conn` of proxy `from`.
    fn request(&self, from: String, conn: u64, text: &str) {
        let Some(env) = self.env.upgrade() else {
            return;
        };
        let far = self
            .far
            .lock()
            .entry((from.clone(), conn))
            .or_insert_with(|| {
                let id = self.next_far.fetch_add(1, Ordering::Relaxed);
                FarConnection {
                    id,
                    env: env.clone(),
                    bus: self.bus.clone(),
                    proxy: from,
                    conn,
                    owned: HashSet::new(),
                }
                .start()
            })
            .clone();
        far.do_send(FarRequest(text.to_owned()));
    }

    fn end_far(&self, key: &(String, u64)) {
        if let Some(far) = self.far.lock().remove(key) {
            far.do_send(FarGone);
        }
    }
}

impl Topic for SessionRelay {
    fn deliver(&self, from: String, body: Value, reply: Option<BusReply>) {
        let conn = body["conn"].as_u64().unwrap_or(0);
        match body["op"].as_str() {
            Some("holds") => {
                let session = body["session"].as_u64().unwrap_or(0);
                let held = self.env.upgrade().is_some_and(|env| {
                    !env.is_handing_over() && env.sessions.lock().get(session).is_some()
                });
                if let Some(reply) = reply {
                    reply.send(json!({"held": held}));
                }
            }
            Some("request") => match body["text"].as_str() {
                Some(text) => self.request(from, conn, text),
                None => log::warn!("session relay: a request without text from {from}"),
            },
            Some("gone") => self.end_far(&(from, conn)),
            Some("frame") => {
                let (Some(text), Some(near)) = (
                    body["text"].as_str(),
                    self.near.lock().get(&conn).map(|n| n.frames.clone()),
                ) else {
                    return;
                };
                near.do_send(ClientFrame(text.to_owned()));
            }
            _ => log::warn!("session relay: unknown message from {from}: {body:.200}"),
        }
    }

    fn proxies_alive(&self, alive: &HashSet<String>) {
        let dead: Vec<(String, u64)> = self
            .far
            .lock()
            .keys()
            .filter(|(proxy, _)| !alive.contains(proxy))
            .cloned()
            .collect();
        for key in dead {
            self.end_far(&key);
        }
        let lost: Vec<Recipient<RelayLost>> = {
            let mut near = self.near.lock();
            let conns: Vec<u64> = near
                .iter()
                .filter(|(_, n)| n.holders.iter().any(|h| !alive.contains(h)))
                .map(|(id, _)| *id)
                .collect();
            conns
                .into_iter()
                .filter_map(|id| near.remove(&id).map(|n| n.lost))
                .collect()
        };
        for conn in lost {
            conn.do_send(RelayLost);
        }
    }
}

/// The client's connection on another proxy, as the sessions here know it.
pub struct FarConnection {
    id: u64,
    env: Arc<SessionEnv>,
    bus: Arc<dyn ClusterBus>,
    proxy: String,
    conn: u64,
    /// Sessions it created or claimed (as a connection's).
    owned: HashSet<u64>,
}

#[derive(Message)]
#[rtype(result = "()")]
struct FarRequest(String);

#[derive(Message)]
#[rtype(result = "()")]
struct FarGone;

impl FarConnection {
    fn port(&self, ctx: &mut Context<Self>) -> ConnPort {
        ConnPort {
            id: self.id,
            frames: ReplyTo::new(ctx.address().recipient()),
            ownership: Arc::new(ctx.address().recipient()),
        }
    }

    fn reply(&self, frame: &ServerMessage) {
        let text = self.env.encode(frame);
        let body = json!({"op": "frame", "conn": self.conn, "text": text});
        self.bus.send(&self.proxy, TOPIC, body);
    }
}

impl Actor for FarConnection {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        let owned = std::mem::take(&mut self.owned);
        super::release_owned(&self.env, self.id, owned);
    }
}

impl Handler<FarRequest> for FarConnection {
    type Result = ();

    /// Only requests for a session come this way (the client's proxy answers the rest).
    fn handle(&mut self, msg: FarRequest, ctx: &mut Context<Self>) {
        for request in Incoming::parse_frame(msg.0.as_bytes()) {
            let incoming = match request {
                Ok(incoming) => incoming,
                Err(e) => return self.reply(&ServerMessage::error(&e)),
            };
            let session_id = match incoming.target() {
                Ok(Target::Session { session_id, .. }) => session_id,
                _ => {
                    let err = incoming.error(ApiError::unhandled_at_path(&incoming.request));
                    self.reply(&ServerMessage::error(&err));
                    continue;
                }
            };
            let session = self
                .env
                .sessions
                .lock()
                .touch(session_id, std::time::Instant::now());
            match session {
                Some(session) => session.do_send(SessionRequest {
                    incoming,
                    conn: self.port(ctx),
                    client_ip: None,
                }),
                None => {
                    let err = incoming.error(ApiError::no_such_session(session_id));
                    self.reply(&ServerMessage::error(&err));
                }
            }
        }
    }
}

impl Handler<FarGone> for FarConnection {
    type Result = ();

    fn handle(&mut self, _: FarGone, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<ClientFrame> for FarConnection {
    type Result = ();

    fn handle(&mut self, msg: ClientFrame, _: &mut Context<Self>) {
        let body = json!({"op": "frame", "conn": self.conn, "text": msg.0});
        self.bus.send(&self.proxy, TOPIC, body);
    }
}

impl Handler<SessionOwnership> for FarConnection {
    type Result = ();

    fn handle(&mut self, msg: SessionOwnership, _: &mut Context<Self>) {
        match msg {
            SessionOwnership::Claimed(id) => self.owned.insert(id),
            SessionOwnership::Released(id) => self.owned.remove(&id),
        };
    }
}
