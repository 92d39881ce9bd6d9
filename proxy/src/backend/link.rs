//! `BackendLink`: one actor per backend Janus server. It keeps one WebSocket to that Janus and
//! one backend session on it; every client handle placed on this server is a backend handle in
//! that session. Replies are matched by transaction, events are routed by the backend handle
//! id (`sender`) to the client handle's actor, in the order Janus sent them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::io::{SinkWrite, WriteHandler};
use actix::prelude::*;
use actix_codec::Framed;
use actix_http::ws::ProtocolError;
use awc::ws::{Codec, Frame, Message as WsMessage};
use awc::BoxedSocket;
use futures_util::stream::{self, SplitSink, StreamExt};
use janus_protocol::{JsonMap, JANUS_PROTOCOL};
use parking_lot::RwLock;
use serde_json::{json, Value};

use super::backoff::Backoff;
use super::connector::backend_client;
use super::transactions::{backend_transaction, split_transaction, TransactionTable};
use crate::config::BackendConfig;
use crate::transport::ReplyTo;
use crate::wsframes::MessageAssembler;

type WsSink = SplitSink<Framed<BoxedSocket, Codec>, WsMessage>;

/// What the rest of the proxy may read about a link without messaging it.
#[derive(Debug)]
pub struct LinkStatus {
    pub name: String,
    pub url: String,
    ready: AtomicBool,
    handles: AtomicU64,
    /// `plugins` of the backend's `info` reply: package → descriptor.
    plugins: RwLock<JsonMap>,
}

impl LinkStatus {
    pub fn new(name: &str, url: &str) -> Self {
        LinkStatus {
            name: name.to_owned(),
            url: url.to_owned(),
            ready: AtomicBool::new(false),
            handles: AtomicU64::new(0),
            plugins: RwLock::new(JsonMap::new()),
        }
    }

    /// Connected, with a backend session: new handles can be placed here.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn handle_count(&self) -> u64 {
        self.handles.load(Ordering::Relaxed)
    }

    pub fn has_plugin(&self, package: &str) -> bool {
        self.plugins.read().contains_key(package)
    }

    pub fn plugin_descriptor(&self, package: &str) -> Option<Value> {
        self.plugins.read().get(package).cloned()
    }
}

/// News from a link to the client handle that owns a backend handle (or sent a request).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub enum BackendIncoming {
    /// The first reply to a request (`ack`, `success` or `error`; an `error` is made up by the
    /// link when the backend is unreachable or too slow).
    Reply {
        frame: JsonMap,
        client_transaction: Option<String>,
        reply_to: Option<ReplyTo>,
    },
    /// Anything Janus sent about the backend handle on its own: `event`, `webrtcup`, `media`,
    /// `slowlink`, `hangup`, `detached`, `trickle`, …
    Event { frame: JsonMap },
    /// The link to the backend failed: the backend handle is gone.
    LinkLost,
}

/// Sends a Janus API request on the link's backend session.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LinkRequest {
    /// The request without ids: `{"janus": "message", "body": …}`.
    pub request: JsonMap,
    /// Backend handle the request is for, if handle-level.
    pub backend_handle: Option<u64>,
    pub client_transaction: Option<String>,
    /// Who gets the reply (None: nobody waits for it).
    pub reply: Option<(Recipient<BackendIncoming>, Option<ReplyTo>)>,
    /// An `attach`: on success, events of the new backend handle go to the reply recipient.
    pub attach: bool,
}

/// Stop routing events of this backend handle (its client handle is gone).
#[derive(Message)]
#[rtype(result = "()")]
pub struct UnrouteHandle(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Internal {
    CreateSession,
    Info,
    Keepalive,
}

enum Pending {
    Internal(Internal),
    Client {
        to: Option<Recipient<BackendIncoming>>,
        reply_to: Option<ReplyTo>,
        client_transaction: Option<String>,
        attach: bool,
    },
}

/// Items of the backend socket's stream, tagged with the connection they belong to so that a
/// late item from a replaced connection is ignored.
enum LinkItem {
    Frame(u64, Result<Frame, ProtocolError>),
    Closed(u64),
}

struct Connection {
    sink: SinkWrite<WsMessage, WsSink>,
    session_id: Option<u64>,
}

pub struct BackendLink {
    status: Arc<LinkStatus>,
    config: BackendConfig,
    conn: Option<Connection>,
    generation: u64,
    pending: TransactionTable<Pending>,
    routes: HashMap<u64, Recipient<BackendIncoming>>,
    assembler: MessageAssembler,
    backoff: Backoff,
    keepalive_every: Duration,
    last_keepalive: Instant,
}

const TICK: Duration = Duration::from_millis(100);

impl BackendLink {
    pub fn new(status: Arc<LinkStatus>, config: BackendConfig) -> Self {
        BackendLink {
            status,
            pending: TransactionTable::new(config.request_timeout()),
            assembler: MessageAssembler::new(config.max_message_size),
            backoff: Backoff::new(
                Duration::from_millis(config.reconnect_min_ms),
                Duration::from_millis(config.reconnect_max_ms),
            ),
            config,
            conn: None,
            generation: 0,
            routes: HashMap::new(),
            keepalive_every: Duration::from_secs(15),
            last_keepalive: Instant::now(),
        }
    }

    fn name(&self) -> &str {
        &self.status.name
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        self.generation += 1;
        let generation = self.generation;
        let client = backend_client(Duration::from_millis(self.config.connect_timeout_ms));
        let request = client
            .ws(self.status.url.as_str())
            .protocols([JANUS_PROTOCOL])
            .max_frame_size(self.config.max_message_size);
        log::debug!("backend {}: connecting to {}", self.name(), self.status.url);
        let fut = async move { request.connect().await };
        ctx.spawn(fut.into_actor(self).map(move |result, act, ctx| {
            if generation != act.generation {
                return;
            }
            match result {
                Ok((_response, framed)) => {
                    let (sink, stream) = framed.split();
                    let items = stream
                        .map(move |f| LinkItem::Frame(generation, f))
                        .chain(stream::once(async move { LinkItem::Closed(generation) }));
                    ctx.add_stream(items);
                    act.conn = Some(Connection {
                        sink: SinkWrite::new(sink, ctx),
                        session_id: None,
                    });
                    log::info!("backend {}: connected to {}", act.name(), act.status.url);
                    act.send_internal(Internal::CreateSession, json!({"janus": "create"}));
                }
                Err(e) => {
                    log::warn!(
                        "backend {}: cannot connect to {}: {e}",
                        act.name(),
                        act.status.url
                    );
                    act.schedule_reconnect(ctx);
                }
            }
        }));
    }

    fn schedule_reconnect(&mut self, ctx: &mut Context<Self>) {
        let delay = self.backoff.next_delay(rand::random::<f64>() * 0.5 + 0.5);
        let generation = self.generation;
        ctx.run_later(delay, move |act, ctx| {
            if act.generation == generation && act.conn.is_none() {
                act.connect(ctx);
            }
        });
    }

    /// The link failed: every waiting request gets an error, every routed handle is told, and
    /// a reconnect is scheduled.
    fn lost(&mut self, ctx: &mut Context<Self>, why: &str) {
        if let Some(mut conn) = self.conn.take() {
            conn.sink.close();
        }
        self.generation += 1;
        self.status.ready.store(false, Ordering::Release);
        log::warn!("backend {}: link lost ({why})", self.name());
        let reason = format!("connection to backend server {} lost", self.name());
        for (_, pending) in self.pending.drain() {
            self.fail(pending, &reason);
        }
        for (_, route) in self.routes.drain() {
            route.do_send(BackendIncoming::LinkLost);
        }
        self.status.handles.store(0, Ordering::Relaxed);
        self.schedule_reconnect(ctx);
    }

    /// Answers a waiting client request with a Janus `error` (490) made up by the proxy.
    fn fail(&self, pending: Pending, reason: &str) {
        if let Pending::Client {
            to: Some(to),
            reply_to,
            client_transaction,
            ..
        } = pending
        {
            let frame = json!({"janus": "error", "error": {"code": 490, "reason": reason}});
            if let Value::Object(frame) = frame {
                to.do_send(BackendIncoming::Reply {
                    frame,
                    client_transaction,
                    reply_to,
                });
            }
        }
    }

    fn send_internal(&mut self, kind: Internal, request: Value) {
        let Value::Object(request) = request else {
            return;
        };
        let id = self.pending.insert(Pending::Internal(kind), Instant::now());
        // `info` is a session-less request (with a session id Janus answers 453).
        let with_session = kind != Internal::Info;
        self.write(request, None, &backend_transaction(id, None), with_session);
    }

    /// Writes a request with the link's session id, the handle id and the transaction, in
    /// Janus's key order.
    fn write(
        &mut self,
        request: JsonMap,
        handle: Option<u64>,
        transaction: &str,
        with_session: bool,
    ) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        let mut frame = JsonMap::with_capacity(request.len() + 3);
        let mut rest = request;
        if let Some(janus) = rest.shift_remove("janus") {
            frame.insert("janus".into(), janus);
        }
        if let Some(session_id) = conn.session_id.filter(|_| with_session) {
            frame.insert("session_id".into(), session_id.into());
        }
        if let Some(handle) = handle {
            frame.insert("handle_id".into(), handle.into());
        }
        frame.insert("transaction".into(), transaction.into());
        for (k, v) in rest {
            if k != "session_id" && k != "handle_id" && k != "transaction" {
                frame.insert(k, v);
            }
        }
        let text = Value::Object(frame).to_string();
        log::trace!("backend {} <- {text}", self.status.name);
        conn.sink.write(WsMessage::Text(text.into())).is_ok()
    }

    fn on_message(&mut self, ctx: &mut Context<Self>, data: &[u8]) {
        log::trace!(
            "backend {} -> {}",
            self.name(),
            String::from_utf8_lossy(data)
        );
        let frame: JsonMap = match serde_json::from_slice(data) {
            Ok(frame) => frame,
            Err(e) => {
                log::warn!("backend {}: unparsable frame: {e}", self.name());
                return;
            }
        };
        let kind = frame.get("janus").and_then(Value::as_str).unwrap_or("");
        match kind {
            "ack" | "success" | "error" | "server_info" | "pong" => self.on_reply(ctx, frame),
            "timeout" => {
                let ours = self.conn.as_ref().and_then(|c| c.session_id);
                if ours.is_some() && frame.get("session_id").and_then(Value::as_u64) == ours {
                    self.lost(ctx, "backend session timed out");
                }
            }
            _ => self.on_event(frame),
        }
    }

    fn on_reply(&mut self, ctx: &mut Context<Self>, frame: JsonMap) {
        let Some((id, _)) = frame
            .get("transaction")
            .and_then(Value::as_str)
            .and_then(split_transaction)
        else {
            log::debug!("backend {}: reply without our transaction", self.name());
            return;
        };
        match self.pending.take(id) {
            Some(Pending::Internal(kind)) => self.on_internal_reply(ctx, kind, frame),
            Some(Pending::Client {
                to,
                reply_to,
                client_transaction,
                attach,
            }) => {
                let Some(to) = to else { return };
                if attach && frame.get("janus").and_then(Value::as_str) == Some("success") {
                    if let Some(handle) = frame
                        .get("data")
                        .and_then(|d| d.get("id"))
                        .and_then(Value::as_u64)
                    {
                        self.routes.insert(handle, to.clone());
                        self.status
                            .handles
                            .store(self.routes.len() as u64, Ordering::Relaxed);
                    }
                }
                to.do_send(BackendIncoming::Reply {
                    frame,
                    client_transaction,
                    reply_to,
                });
            }
            None => log::debug!("backend {}: late or unknown reply {id}", self.name()),
        }
    }

    fn on_internal_reply(&mut self, ctx: &mut Context<Self>, kind: Internal, frame: JsonMap) {
        let success = matches!(
            frame.get("janus").and_then(Value::as_str),
            Some("success" | "server_info" | "ack")
        );
        match kind {
            Internal::CreateSession => {
                let id = frame
                    .get("data")
                    .and_then(|d| d.get("id"))
                    .and_then(Value::as_u64);
                match (success, id, self.conn.as_mut()) {
                    (true, Some(id), Some(conn)) => {
                        conn.session_id = Some(id);
                        self.backoff.reset();
                        self.last_keepalive = Instant::now();
                        self.send_internal(Internal::Info, json!({"janus": "info"}));
                    }
                    _ => self.lost(ctx, "backend refused to create a session"),
                }
            }
            Internal::Info => {
                if let Some(Value::Object(plugins)) = frame.get("plugins") {
                    *self.status.plugins.write() = plugins.clone();
                }
                let timeout = frame
                    .get("session-timeout")
                    .and_then(Value::as_u64)
                    .unwrap_or(60);
                // Keep the backend session alive well within its timeout.
                self.keepalive_every = match timeout {
                    0 => Duration::from_secs(25),
                    t => Duration::from_millis((t * 1000 / 3).clamp(500, 25_000)),
                };
                self.status.ready.store(true, Ordering::Release);
                log::info!("backend {}: ready", self.name());
            }
            Internal::Keepalive => {
                if !success {
                    self.lost(ctx, "keepalive refused");
                }
            }
        }
    }

    fn on_event(&mut self, frame: JsonMap) {
        let Some(sender) = frame.get("sender").and_then(Value::as_u64) else {
            log::debug!("backend {}: event without sender dropped", self.name());
            return;
        };
        let detached = frame.get("janus").and_then(Value::as_str) == Some("detached");
        let route = if detached {
            let route = self.routes.remove(&sender);
            self.status
                .handles
                .store(self.routes.len() as u64, Ordering::Relaxed);
            route
        } else {
            self.routes.get(&sender).cloned()
        };
        match route {
            Some(route) => route.do_send(BackendIncoming::Event { frame }),
            None => log::debug!("backend {}: event for unknown handle {sender}", self.name()),
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let expired = self.pending.expire(now);
        if !expired.is_empty() {
            let reason = format!("backend server {} did not answer in time", self.name());
            let mut internal_failed = false;
            for (_, pending) in expired {
                internal_failed |= matches!(pending, Pending::Internal(_));
                self.fail(pending, &reason);
            }
            if internal_failed {
                self.lost(ctx, "backend did not answer the link's own request");
                return;
            }
        }
        let has_session = self.conn.as_ref().is_some_and(|c| c.session_id.is_some());
        if has_session && now.duration_since(self.last_keepalive) >= self.keepalive_every {
            self.last_keepalive = now;
            self.send_internal(Internal::Keepalive, json!({"janus": "keepalive"}));
        }
    }
}

impl Actor for BackendLink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(TICK, |act, ctx| act.tick(ctx));
        self.connect(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.status.ready.store(false, Ordering::Release);
        for (_, route) in self.routes.drain() {
            route.do_send(BackendIncoming::LinkLost);
        }
    }
}

impl StreamHandler<LinkItem> for BackendLink {
    fn handle(&mut self, item: LinkItem, ctx: &mut Context<Self>) {
        match item {
            LinkItem::Closed(generation) if generation == self.generation => {
                self.lost(ctx, "socket closed");
            }
            LinkItem::Closed(_) => {}
            LinkItem::Frame(generation, _) if generation != self.generation => {}
            LinkItem::Frame(_, Err(e)) => self.lost(ctx, &format!("protocol error: {e}")),
            LinkItem::Frame(_, Ok(frame)) => match frame {
                Frame::Text(data) | Frame::Binary(data) => {
                    match self.assembler.check_whole(data.len()) {
                        Ok(()) => self.on_message(ctx, &data),
                        Err(e) => self.lost(ctx, &e.to_string()),
                    }
                }
                Frame::Continuation(item) => match self.assembler.push(item) {
                    Ok(Some(data)) => self.on_message(ctx, &data),
                    Ok(None) => {}
                    Err(e) => self.lost(ctx, &e.to_string()),
                },
                Frame::Ping(data) => {
                    if let Some(conn) = self.conn.as_mut() {
                        let _ = conn.sink.write(WsMessage::Pong(data));
                    }
                }
                Frame::Pong(_) => {}
                Frame::Close(reason) => {
                    self.lost(ctx, &format!("closed by backend: {reason:?}"));
                }
            },
        }
    }

    /// The stream of one connection ended: handled through `LinkItem::Closed`; the actor
    /// itself lives on and reconnects.
    fn finished(&mut self, _: &mut Context<Self>) {}
}

impl WriteHandler<ProtocolError> for BackendLink {
    fn error(&mut self, err: ProtocolError, ctx: &mut Self::Context) -> Running {
        self.lost(ctx, &format!("write failed: {err}"));
        Running::Continue
    }

    fn finished(&mut self, _: &mut Self::Context) {}
}

impl Handler<LinkRequest> for BackendLink {
    type Result = ();

    fn handle(&mut self, msg: LinkRequest, _: &mut Context<Self>) {
        let ready = self.conn.as_ref().is_some_and(|c| c.session_id.is_some());
        let pending = Pending::Client {
            to: msg.reply.as_ref().map(|(to, _)| to.clone()),
            reply_to: msg.reply.and_then(|(_, r)| r),
            client_transaction: msg.client_transaction.clone(),
            attach: msg.attach,
        };
        if !ready {
            let reason = format!("backend server {} is not connected", self.name());
            self.fail(pending, &reason);
            return;
        }
        let id = self.pending.insert(pending, Instant::now());
        let transaction = backend_transaction(id, msg.client_transaction.as_deref());
        if !self.write(msg.request, msg.backend_handle, &transaction, true) {
            if let Some(pending) = self.pending.take(id) {
                let reason = format!("connection to backend server {} lost", self.name());
                self.fail(pending, &reason);
            }
        }
    }
}

impl Handler<UnrouteHandle> for BackendLink {
    type Result = ();

    fn handle(&mut self, msg: UnrouteHandle, _: &mut Context<Self>) {
        self.routes.remove(&msg.0);
        self.status
            .handles
            .store(self.routes.len() as u64, Ordering::Relaxed);
    }
}
