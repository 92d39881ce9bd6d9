//! `BackendLink`: one actor per backend Janus server. It keeps one WebSocket to that Janus and
//! one backend session on it; every client handle placed on this server is a backend handle in
//! that session. Replies are matched by transaction, events are routed by the backend handle
//! id (`sender`) to the client handle's actor, in the order Janus sent them.
//!
//! When the socket drops but the Janus is still there, the link reconnects at once and
//! `claim`s its backend session, so the handles survive and clients notice nothing; requests
//! sent meanwhile wait for the claim (at most `request_timeout_ms`). How long the handles
//! wait is [`Reclaimer`]'s decision: a dead Janus (refused, reset, reported down by its
//! sentinel) loses them at once, a closed socket gets `reclaim_window_ms`, an unreachable
//! Janus (timeouts, or silence noticed by [`Liveness`]) as long as it keeps the session.
//! Then every handle is told the link is lost. Successes and failures are reported to the
//! registry, whose circuit breaker keeps new handles off a failing server.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
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
use prometheus_client::metrics::histogram::Histogram;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::backoff::Backoff;
use super::connector::backend_client;
use super::liveness::{keepalive_every, Check, Liveness};
use super::reclaim::{Decision, GiveUp, Loss, ReclaimPolicy, Reclaimer};
use super::transactions::{backend_transaction, split_transaction, TransactionTable};
use crate::config::BackendConfig;
use crate::messages::{
    BackendFrame, BackendIncoming, LinkPhase, LinkRequest, LinkStatus, ReplyRoute, Route,
    UnrouteHandle,
};
use crate::wsframes::MessageAssembler;

type WsSink = SplitSink<Framed<BoxedSocket, Codec>, WsMessage>;

/// The server left the registry: take no new handles, close once the last one is gone.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RetireLink;

/// The server's reported status (sentinel reports, the admin API): `true` while it is
/// abnormal (its Janus down or not answering its sentinel). A lost socket is then a dead
/// Janus: its handles are told at once.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ServerDown(pub bool);

/// What a link tells the registry about its server's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthEvent {
    /// The backend answered (any reply, Janus errors included).
    Succeeded,
    /// The link (re-)established a backend session.
    Recovered,
    /// Connect failed, the socket was lost, or a request timed out.
    Failed,
    /// The link actor stopped (retired, or unexpectedly).
    Stopped,
}

#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct LinkHealth {
    pub server: String,
    pub link_id: u64,
    pub event: HealthEvent,
}

/// What a backend Janus wants in every request: its `api_secret` and/or a token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendCredentials {
    pub api_secret: Option<String>,
    pub token: Option<String>,
}

/// Where a link reports its health, and under which id.
pub struct HealthReporter {
    pub to: Recipient<LinkHealth>,
    pub link_id: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Internal {
    CreateSession,
    Claim,
    Info,
    Keepalive,
    Destroy,
}

enum Pending {
    Internal(Internal),
    Client {
        reply: Option<ReplyRoute>,
        client_transaction: Option<String>,
        attach: bool,
        /// A plugin `message`: an `ack` is not its answer.
        message: bool,
        /// A `message` to this backend handle: after the `ack`, the plugin's event answers it.
        awaits_event: Option<u64>,
        sent: Instant,
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
    /// The socket's read half: cancelled when the link gives the socket up, so that a
    /// socket whose peer went silent is closed now rather than when TCP gives up.
    stream: SpawnHandle,
    session_id: Option<u64>,
}

pub struct BackendLink {
    status: Arc<LinkStatus>,
    config: BackendConfig,
    conn: Option<Connection>,
    generation: u64,
    pending: TransactionTable<Pending>,
    /// `message`s acked by Janus whose plugin event has not come yet (same ids as
    /// `pending`; None: not watched, `backend.event_timeout_ms` = 0).
    awaiting_event: Option<TransactionTable<Pending>>,
    routes: HashMap<u64, Route>,
    /// One-off requests acknowledged by Janus, waiting for their plugin's event (by
    /// transaction), with when they were acked.
    once_events: HashMap<u64, (oneshot::Sender<BackendFrame>, Instant)>,
    assembler: MessageAssembler,
    backoff: Backoff,
    keepalive_every: Duration,
    last_keepalive: Instant,
    /// The backend session lost with a socket, if being claimed on a new one, and until when.
    reclaim: Reclaimer,
    liveness: Liveness,
    /// Requests of existing handles that arrived while reclaiming, with their arrival;
    /// sent after the claim, or failed after `request_timeout_ms`.
    queued: Vec<(LinkRequest, Instant)>,
    health: Option<HealthReporter>,
    /// A failure was reported and no success since.
    failing: bool,
    latency: Option<Histogram>,
    retiring: bool,
    /// A retiring link sent `destroy` for its backend session.
    destroying: bool,
    /// Connected at least once (so a later connection counts as a reconnect).
    was_ready: bool,
    credentials: BackendCredentials,
    tls: Arc<rustls::ClientConfig>,
}

const TICK: Duration = Duration::from_millis(100);
/// Requests queued while reclaiming, at most (beyond that they fail at once).
const MAX_QUEUED: usize = 10_000;

impl BackendLink {
    pub fn new(
        status: Arc<LinkStatus>,
        config: BackendConfig,
        tls: Arc<rustls::ClientConfig>,
    ) -> Self {
        let now = Instant::now();
        BackendLink {
            reclaim: Reclaimer::new(ReclaimPolicy {
                window: Duration::from_millis(config.reclaim_window_ms),
                partition_max: Duration::from_millis(config.partition_reclaim_max_ms),
                retry_gap: Duration::from_millis(config.reconnect_min_ms),
            }),
            liveness: Liveness::new(config.liveness_timeout(), TICK * 3, now),
            queued: Vec::new(),
            health: None,
            failing: false,
            latency: None,
            retiring: false,
            destroying: false,
            was_ready: false,
            credentials: BackendCredentials::default(),
            tls,
            status,
            pending: TransactionTable::new(config.request_timeout()),
            awaiting_event: config.event_timeout().map(TransactionTable::new),
            assembler: MessageAssembler::new(config.max_message_size),
            backoff: Backoff::new(
                Duration::from_millis(config.reconnect_min_ms),
                Duration::from_millis(config.reconnect_max_ms),
            ),
            config,
            conn: None,
            generation: 0,
            routes: HashMap::new(),
            once_events: HashMap::new(),
            keepalive_every: Duration::from_secs(15),
            last_keepalive: now,
        }
    }

    /// Reports health events to the registry.
    pub fn with_health(mut self, health: HealthReporter) -> Self {
        self.health = Some(health);
        self
    }

    /// Sends the backend's own secret/token with every request.
    pub fn with_credentials(mut self, credentials: BackendCredentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// Observes each request's time to first reply.
    pub fn with_latency(mut self, latency: Histogram) -> Self {
        self.latency = Some(latency);
        self
    }

    fn name(&self) -> &str {
        &self.status.name
    }

    fn report(&mut self, event: HealthEvent) {
        match event {
            HealthEvent::Failed => self.failing = true,
            HealthEvent::Succeeded => {
                // Successes matter only to end a run of failures or to close a breaker;
                // the rest would be one message per request for nothing.
                if !self.failing && self.status.breaker_closed.load(Ordering::Relaxed) {
                    return;
                }
                self.failing = false;
            }
            HealthEvent::Recovered => self.failing = false,
            HealthEvent::Stopped => {}
        }
        if let Some(health) = &self.health {
            health.to.do_send(LinkHealth {
                server: self.status.name.clone(),
                link_id: health.link_id,
                event,
            });
        }
    }

    fn set_error(&self, why: &str) {
        let mut last = self.status.last_error.write();
        last.clear();
        last.push_str(why);
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        self.generation += 1;
        let generation = self.generation;
        let mut timeout = Duration::from_millis(self.config.connect_timeout_ms);
        if let Some(reclaim) = self.reclaim.active() {
            timeout = timeout.min(reclaim.deadline.saturating_duration_since(Instant::now()));
        }
        let client = backend_client(timeout, self.tls.clone());
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
                    let stream = ctx.add_stream(items);
                    act.conn = Some(Connection {
                        sink: SinkWrite::new(sink, ctx),
                        stream,
                        session_id: None,
                    });
                    act.liveness.connected(Instant::now());
                    log::info!("backend {}: connected to {}", act.name(), act.status.url);
                    match act.reclaim.session() {
                        Some(session_id) => {
                            let claim = json!({"janus": "claim", "session_id": session_id});
                            act.send_internal(Internal::Claim, claim);
                        }
                        None => {
                            act.send_internal(Internal::CreateSession, json!({"janus": "create"}))
                        }
                    }
                }
                Err(e) => {
                    let loss = Loss::of_connect_error(&e);
                    let why = format!("cannot connect to {}: {e}", act.status.url);
                    log::warn!("backend {}: {why} ({loss:?})", act.name());
                    act.set_error(&why);
                    act.report(HealthEvent::Failed);
                    let now = Instant::now();
                    match act.decide(|r| r.attempt_failed(loss, now)) {
                        // Not reclaiming: retry with backoff.
                        Decision::Wait => act.down(ctx),
                        decision => act.follow(ctx, decision),
                    }
                }
            }
        }));
    }

    /// Connects at `at` (now if it has passed), unless something else connected meanwhile.
    fn connect_at(&mut self, ctx: &mut Context<Self>, at: Instant) {
        let delay = at.saturating_duration_since(Instant::now());
        if delay.is_zero() {
            self.connect(ctx);
            return;
        }
        self.generation += 1;
        let generation = self.generation;
        ctx.run_later(delay, move |act, ctx| {
            if act.generation == generation && act.conn.is_none() {
                act.connect(ctx);
            }
        });
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

    /// Carries out what the reclaimer decided after a loss, a failed attempt, a sentinel
    /// report or its deadline.
    fn follow(&mut self, ctx: &mut Context<Self>, decision: Decision) {
        match decision {
            Decision::Reconnect { at } => {
                self.status.set_phase(LinkPhase::Reclaiming);
                self.connect_at(ctx, at);
            }
            Decision::GiveUp(why) => {
                self.give_up(why);
                if self.conn.as_ref().is_none_or(|c| c.session_id.is_none()) {
                    self.down(ctx);
                }
            }
            Decision::Wait => {}
        }
    }

    /// Asks the reclaimer, counting the reclaims that become "unreachable".
    fn decide(&mut self, ask: impl FnOnce(&mut Reclaimer) -> Decision) -> Decision {
        let before = self.reclaim.active().is_some_and(|a| a.unreachable);
        let decision = ask(&mut self.reclaim);
        if !before && self.reclaim.active().is_some_and(|a| a.unreachable) {
            self.status.unreachable.fetch_add(1, Ordering::Relaxed);
        }
        decision
    }

    /// No usable socket and nothing to claim: reconnect with backoff for a new session.
    fn down(&mut self, ctx: &mut Context<Self>) {
        if let Some(conn) = self.conn.take() {
            self.close(ctx, conn);
        }
        self.generation += 1;
        self.status.set_backend_session(None);
        self.drop_routes();
        if !self.retiring {
            self.status.set_phase(LinkPhase::Down);
        }
        self.schedule_reconnect(ctx);
        self.stop_if_retired(ctx);
    }

    fn close(&mut self, ctx: &mut Context<Self>, mut conn: Connection) {
        conn.sink.close();
        ctx.cancel_future(conn.stream);
    }

    /// The socket failed. Requests waiting for a reply get an error (their replies went to the
    /// dead socket). If there was a backend session, the reclaimer says whether the link
    /// reconnects to claim it while the handles wait; otherwise it reconnects with backoff.
    fn lost(&mut self, ctx: &mut Context<Self>, loss: Loss, why: &str) {
        let session = self.conn.take().and_then(|conn| {
            let session = conn.session_id;
            self.close(ctx, conn);
            session
        });
        self.generation += 1;
        log::warn!("backend {}: link lost ({why})", self.name());
        self.set_error(why);
        self.report(HealthEvent::Failed);
        let reason = format!("connection to backend server {} lost", self.name());
        for (_, pending) in self.pending.drain() {
            self.fail(pending, &reason);
        }
        // Acked `message`s: their events went to the dead socket (even a claimed session
        // does not replay them).
        let acked = self.awaiting_event.as_mut().map(TransactionTable::drain);
        for (_, pending) in acked.into_iter().flatten() {
            self.fail(pending, &reason);
        }
        for (_, (once, _)) in std::mem::take(&mut self.once_events) {
            Self::fail_once(once, &reason);
        }
        let now = Instant::now();
        let reclaiming = self.reclaim.active().is_some();
        let last_heard = self.liveness.last_heard();
        let decision = self.decide(|r| r.lost(session, loss, last_heard, now));
        if let (false, Some(active)) = (reclaiming, self.reclaim.active()) {
            log::info!(
                "backend {}: reconnecting to claim session {} (handles held {:?}{})",
                self.name(),
                active.session,
                active.deadline.saturating_duration_since(now),
                if active.unreachable {
                    ", backend unreachable"
                } else {
                    ""
                }
            );
        }
        self.follow(ctx, decision);
    }

    /// Every handle on the backend is gone: their actors are told.
    fn drop_routes(&mut self) {
        for (_, route) in self.routes.drain() {
            route
                .to
                .do_send(BackendIncoming::LinkLost { token: route.token });
        }
        self.status.handles.store(0, Ordering::Relaxed);
    }

    /// The backend session could not be claimed: the handles are lost, queued requests fail.
    fn give_up(&mut self, why: GiveUp) {
        self.status.set_backend_session(None);
        if why != GiveUp::NoSession {
            log::warn!(
                "backend {}: session not reclaimed ({why}); its {} handles are lost",
                self.name(),
                self.routes.len()
            );
        }
        self.drop_routes();
        let reason = format!("connection to backend server {} lost", self.name());
        for (request, _) in std::mem::take(&mut self.queued) {
            self.fail(Self::pending_of(request, Instant::now()), &reason);
        }
    }

    fn pending_of(msg: LinkRequest, now: Instant) -> Pending {
        let message = msg.request.get("janus").and_then(Value::as_str) == Some("message");
        Pending::Client {
            reply: msg.reply,
            client_transaction: msg.client_transaction,
            attach: msg.attach,
            message,
            awaits_event: None,
            sent: now,
        }
    }

    /// Answers a waiting client request with a Janus `error` (490) made up by the proxy.
    /// A handle is gone: its plugin owes nobody an answer any more.
    fn forget_awaiting(&mut self, handle: u64) {
        if let Some(awaiting) = self.awaiting_event.as_mut() {
            awaiting.retain(
                |p| !matches!(p, Pending::Client { awaits_event: Some(h), .. } if *h == handle),
            );
        }
    }

    /// A Janus `error` (490) made up by the proxy.
    fn error_frame(reason: &str) -> BackendFrame {
        let mut error = JsonMap::new();
        error.insert("code".into(), 490.into());
        error.insert("reason".into(), reason.into());
        let mut frame = JsonMap::new();
        frame.insert("janus".into(), "error".into());
        frame.insert("error".into(), Value::Object(error));
        BackendFrame::from_map(frame)
    }

    fn fail(&self, pending: Pending, reason: &str) {
        let Pending::Client {
            reply: Some(reply),
            client_transaction,
            ..
        } = pending
        else {
            return;
        };
        match reply {
            ReplyRoute::Handle { route, reply_to } => {
                route.to.do_send(BackendIncoming::Reply {
                    token: route.token,
                    frame: Self::error_frame(reason),
                    client_transaction,
                    reply_to,
                });
            }
            ReplyRoute::Once(once) | ReplyRoute::Attach { answer: once, .. } => {
                Self::fail_once(once, reason)
            }
        }
    }

    fn fail_once(once: oneshot::Sender<BackendFrame>, reason: &str) {
        let _ = once.send(Self::error_frame(reason));
    }

    fn send_internal(&mut self, kind: Internal, request: Value) {
        let Value::Object(request) = request else {
            return;
        };
        let id = self.pending.insert(Pending::Internal(kind), Instant::now());
        // `info` is a session-less request (with a session id Janus answers 453); `claim`
        // names its session itself.
        let session = match kind {
            Internal::Info => None,
            Internal::Claim => self.reclaim.session(),
            _ => self.conn.as_ref().and_then(|c| c.session_id),
        };
        self.write(request, session, None, &backend_transaction(id, None));
    }

    /// Writes a request with the session id, the handle id and the transaction, in Janus's key
    /// order.
    fn write(
        &mut self,
        request: JsonMap,
        session: Option<u64>,
        handle: Option<u64>,
        transaction: &str,
    ) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        let frame = Outgoing {
            request: &request,
            session,
            handle,
            transaction,
            credentials: &self.credentials,
        };
        let Ok(text) = serde_json::to_string(&frame) else {
            return false;
        };
        log::trace!("backend {} <- {text}", self.status.name);
        conn.sink.write(WsMessage::Text(text.into())).is_ok()
    }

    fn on_message(&mut self, ctx: &mut Context<Self>, data: bytes::Bytes) {
        log::trace!(
            "backend {} -> {}",
            self.name(),
            String::from_utf8_lossy(&data)
        );
        let frame = match bytestring::ByteString::try_from(data) {
            Ok(text) => BackendFrame::parse(text).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                log::warn!("backend {}: unparsable frame: {e}", self.name());
                return;
            }
        };
        match frame.kind() {
            "ack" | "success" | "error" | "server_info" | "pong" => self.on_reply(ctx, frame),
            "timeout" => {
                let ours = self.conn.as_ref().and_then(|c| c.session_id);
                if ours.is_some() && frame.session_id() == ours {
                    // The session is gone on the backend: nothing to claim.
                    if let Some(conn) = self.conn.as_mut() {
                        conn.session_id = None;
                    }
                    self.lost(ctx, Loss::Closed, "backend session timed out");
                }
            }
            _ => self.on_event(ctx, frame),
        }
    }

    fn on_reply(&mut self, ctx: &mut Context<Self>, frame: BackendFrame) {
        let Some((id, _)) = frame.transaction().and_then(split_transaction) else {
            log::debug!("backend {}: reply without our transaction", self.name());
            return;
        };
        match self.pending.take(id) {
            Some(Pending::Internal(kind)) => self.on_internal_reply(ctx, kind, frame),
            Some(Pending::Client {
                reply,
                client_transaction,
                attach,
                message,
                awaits_event,
                sent,
            }) => {
                if let Some(latency) = &self.latency {
                    latency.observe(sent.elapsed().as_secs_f64());
                }
                self.report(HealthEvent::Succeeded);
                let (route, reply_to) = match reply {
                    None => return,
                    Some(ReplyRoute::Once(once)) => {
                        if message && frame.kind() == "ack" {
                            // The answer is the plugin's event with this transaction.
                            self.once_events.insert(id, (once, Instant::now()));
                        } else {
                            let _ = once.send(frame);
                        }
                        return;
                    }
                    Some(ReplyRoute::Attach { events, answer }) => {
                        if attach && frame.kind() == "success" {
                            if let Some(handle) = frame.data_id() {
                                self.routes.insert(handle, events);
                                self.status
                                    .handles
                                    .store(self.routes.len() as u64, Ordering::Relaxed);
                            }
                        }
                        let _ = answer.send(frame);
                        return;
                    }
                    Some(ReplyRoute::Handle { route, reply_to }) => (route, reply_to),
                };
                if let Some(awaiting) = self.awaiting_event.as_mut() {
                    if awaits_event.is_some() && frame.kind() == "ack" {
                        // The answer is the plugin's event with this transaction.
                        let waits = Pending::Client {
                            reply: Some(ReplyRoute::Handle {
                                route: route.clone(),
                                reply_to: reply_to.clone(),
                            }),
                            client_transaction: client_transaction.clone(),
                            attach,
                            message,
                            awaits_event,
                            sent,
                        };
                        awaiting.adopt(id, waits, Instant::now());
                    }
                }
                let new_handle = match attach && frame.kind() == "success" {
                    true => frame.data_id(),
                    false => None,
                };
                route.to.do_send(BackendIncoming::Reply {
                    token: route.token,
                    frame,
                    client_transaction,
                    reply_to,
                });
                // The new handle's events go to the same route (moved, not cloned: a clone of
                // a recipient is an allocation, kept for the handle's life).
                if let Some(handle) = new_handle {
                    self.routes.insert(handle, route);
                    self.status
                        .handles
                        .store(self.routes.len() as u64, Ordering::Relaxed);
                }
            }
            None => log::debug!("backend {}: late or unknown reply {id}", self.name()),
        }
    }

    fn on_internal_reply(&mut self, ctx: &mut Context<Self>, kind: Internal, frame: BackendFrame) {
        let success = matches!(frame.kind(), "success" | "server_info" | "ack");
        match kind {
            Internal::CreateSession => {
                let id = frame.data_id();
                match (success, id, self.conn.as_mut()) {
                    (true, Some(id), Some(conn)) => {
                        conn.session_id = Some(id);
                        self.status.set_backend_session(Some(id));
                        self.backoff.reset();
                        self.last_keepalive = Instant::now();
                        self.send_internal(Internal::Info, json!({"janus": "info"}));
                    }
                    _ => self.lost(ctx, Loss::Closed, "backend refused to create a session"),
                }
            }
            Internal::Claim => {
                let Some(session_id) = self.reclaim.session() else {
                    return;
                };
                if success {
                    self.reclaim.claimed();
                    if let Some(conn) = self.conn.as_mut() {
                        conn.session_id = Some(session_id);
                    }
                    log::info!(
                        "backend {}: session {session_id} reclaimed, {} handles kept",
                        self.name(),
                        self.routes.len()
                    );
                    self.status.reclaims.fetch_add(1, Ordering::Relaxed);
                    self.backoff.reset();
                    self.last_keepalive = Instant::now();
                    self.became_ready(ctx);
                    for (request, _) in std::mem::take(&mut self.queued) {
                        self.send_request(request);
                    }
                } else {
                    log::warn!(
                        "backend {}: claim of session {session_id} refused: {}",
                        self.name(),
                        frame.get("error").map(Value::to_string).unwrap_or_default()
                    );
                    // The socket is fine: a new session on it.
                    if let Decision::GiveUp(why) = self.reclaim.claim_refused() {
                        self.give_up(why);
                    }
                    self.send_internal(Internal::CreateSession, json!({"janus": "create"}));
                }
            }
            Internal::Destroy => ctx.stop(),
            Internal::Info => {
                if let Some(Value::Object(plugins)) = frame.get("plugins") {
                    *self.status.plugins.write() = plugins.clone();
                }
                let timeout = frame
                    .get("session-timeout")
                    .and_then(Value::as_u64)
                    .unwrap_or(60);
                let reclaim = frame.get("reclaim-session-timeout").and_then(Value::as_u64);
                self.reclaim
                    .set_janus_reclaim_timeout(reclaim.map(Duration::from_secs));
                self.status
                    .reclaim_timeout_s
                    .store(reclaim.unwrap_or(u64::MAX), Ordering::Relaxed);
                self.keepalive_every = keepalive_every(timeout, reclaim.unwrap_or(0));
                self.became_ready(ctx);
                log::info!("backend {}: ready", self.name());
            }
            Internal::Keepalive => {
                if !success {
                    self.lost(ctx, Loss::Closed, "keepalive refused");
                }
            }
        }
    }

    fn became_ready(&mut self, ctx: &mut Context<Self>) {
        if self.was_ready {
            self.status.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        self.was_ready = true;
        self.status.last_error.write().clear();
        self.report(HealthEvent::Recovered);
        if self.retiring {
            self.status.set_phase(LinkPhase::Retiring);
            self.stop_if_retired(ctx);
        } else {
            self.status.set_phase(LinkPhase::Ready);
        }
    }

    /// A retiring link closes its backend session once no handle uses it, then stops.
    fn stop_if_retired(&mut self, ctx: &mut Context<Self>) {
        if !self.retiring || !self.routes.is_empty() || self.destroying {
            return;
        }
        if self.conn.as_ref().is_some_and(|c| c.session_id.is_some()) {
            // Stops when Janus confirms (or the request times out).
            self.destroying = true;
            self.send_internal(Internal::Destroy, json!({"janus": "destroy"}));
        } else {
            ctx.stop();
        }
    }

    fn on_event(&mut self, ctx: &mut Context<Self>, frame: BackendFrame) {
        if let Some((id, _)) = frame.transaction().and_then(split_transaction) {
            // A one-off request's answer (after its ack, or before it: Janus sends them in
            // either order) goes to its waiter only.
            if let Some((once, _)) = self.once_events.remove(&id) {
                let _ = once.send(frame);
                return;
            }
            if let Some(Pending::Client {
                reply: reply @ Some(ReplyRoute::Once(_)),
                message: true,
                ..
            }) = self.pending.get_mut(id)
            {
                if let Some(ReplyRoute::Once(once)) = reply.take() {
                    let _ = once.send(frame);
                }
                return;
            }
        }
        if let Some(awaiting) = self.awaiting_event.as_mut() {
            if let Some((id, _)) = frame.transaction().and_then(split_transaction) {
                if awaiting.take(id).is_none() {
                    // Janus may send the plugin's event before the core's `ack`: the ack
                    // then finds the request answered.
                    if let Some(Pending::Client { awaits_event, .. }) = self.pending.get_mut(id) {
                        *awaits_event = None;
                    }
                }
            }
        }
        let Some(sender) = frame.sender() else {
            log::debug!("backend {}: event without sender dropped", self.name());
            return;
        };
        let detached = frame.kind() == "detached";
        if detached {
            self.forget_awaiting(sender);
        }
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
            Some(route) => route.to.do_send(BackendIncoming::Event {
                token: route.token,
                frame,
            }),
            None => log::debug!("backend {}: event for unknown handle {sender}", self.name()),
        }
        if detached {
            self.stop_if_retired(ctx);
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let stuck = self.awaiting_event.as_mut().map(|a| a.expire(now));
        for (_, pending) in stuck.into_iter().flatten() {
            let reason = format!(
                "backend server {}: its plugin did not answer in time",
                self.name()
            );
            self.report(HealthEvent::Failed);
            self.fail(pending, &reason);
        }
        let expired = self.pending.expire(now);
        if !expired.is_empty() {
            let reason = format!("backend server {} did not answer in time", self.name());
            let mut internal_failed = false;
            for (_, pending) in expired {
                if let Pending::Internal(Internal::Destroy) = pending {
                    ctx.stop();
                    return;
                }
                internal_failed |= matches!(pending, Pending::Internal(_));
                self.report(HealthEvent::Failed);
                self.fail(pending, &reason);
            }
            if internal_failed {
                let why = "backend did not answer the link's own request";
                self.lost(ctx, Loss::TimedOut, why);
                return;
            }
        }
        self.expire_queued(now);
        if let Decision::GiveUp(why) = self.reclaim.tick(now) {
            // Still no claimed session: stop holding the handles; keep reconnecting.
            self.follow(ctx, Decision::GiveUp(why));
            return;
        }
        if self.conn.is_some() {
            match self.liveness.check(now) {
                Check::Fine => {}
                Check::Ping => {
                    if let Some(conn) = self.conn.as_mut() {
                        let _ = conn.sink.write(WsMessage::Ping(bytes::Bytes::new()));
                    }
                }
                Check::Silent(quiet) => {
                    let why = format!("nothing heard from the backend for {quiet:?}");
                    self.lost(ctx, Loss::TimedOut, &why);
                    return;
                }
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
        self.status.set_phase(LinkPhase::Retiring);
        // The backend session id stays: an actor dropped with its system (a proxy stopping)
        // leaves its session on Janus, and the stop guard reads the id to destroy it.
        self.status.ready.store(false, Ordering::Release);
        self.drop_routes();
        let reason = format!("backend server {} was removed", self.name());
        for (_, pending) in self.pending.drain() {
            self.fail(pending, &reason);
        }
        for (request, _) in std::mem::take(&mut self.queued) {
            self.fail(Self::pending_of(request, Instant::now()), &reason);
        }
        self.report(HealthEvent::Stopped);
    }
}

impl StreamHandler<LinkItem> for BackendLink {
    fn handle(&mut self, item: LinkItem, ctx: &mut Context<Self>) {
        match item {
            LinkItem::Closed(generation) if generation == self.generation => {
                self.lost(ctx, Loss::Closed, "socket closed");
            }
            LinkItem::Closed(_) => {}
            LinkItem::Frame(generation, _) if generation != self.generation => {}
            LinkItem::Frame(_, Err(e)) => {
                self.lost(ctx, Loss::Closed, &format!("protocol error: {e}"))
            }
            LinkItem::Frame(_, Ok(frame)) => {
                self.liveness.heard(Instant::now());
                self.on_frame(ctx, frame);
            }
        }
    }

    /// The stream of one connection ended: handled through `LinkItem::Closed`; the actor
    /// itself lives on and reconnects.
    fn finished(&mut self, _: &mut Context<Self>) {}
}

impl BackendLink {
    fn on_frame(&mut self, ctx: &mut Context<Self>, frame: Frame) {
        match frame {
            Frame::Text(data) | Frame::Binary(data) => {
                match self.assembler.check_whole(data.len()) {
                    Ok(()) => self.on_message(ctx, data),
                    Err(e) => self.lost(ctx, Loss::Closed, &e.to_string()),
                }
            }
            Frame::Continuation(item) => match self.assembler.push(item) {
                Ok(Some(data)) => self.on_message(ctx, data),
                Ok(None) => {}
                Err(e) => self.lost(ctx, Loss::Closed, &e.to_string()),
            },
            Frame::Ping(data) => {
                if let Some(conn) = self.conn.as_mut() {
                    let _ = conn.sink.write(WsMessage::Pong(data));
                }
            }
            Frame::Pong(_) => {}
            Frame::Close(reason) => {
                self.lost(ctx, Loss::Closed, &format!("closed by backend: {reason:?}"));
            }
        }
    }

    /// Requests queued for a claim wait no longer than a request sent to Janus would.
    fn expire_queued(&mut self, now: Instant) {
        let limit = self.config.request_timeout();
        let waited = |at: &Instant| now.saturating_duration_since(*at) >= limit;
        // Queued in arrival order: the first is the oldest.
        if !self.queued.first().is_some_and(|(_, at)| waited(at)) {
            return;
        }
        let (expired, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.queued)
            .into_iter()
            .partition(|(_, at)| waited(at));
        self.queued = kept;
        let reason = format!("backend server {} did not answer in time", self.name());
        for (request, _) in expired {
            self.fail(Self::pending_of(request, now), &reason);
        }
    }
}

impl WriteHandler<ProtocolError> for BackendLink {
    fn error(&mut self, err: ProtocolError, ctx: &mut Self::Context) -> Running {
        self.lost(ctx, Loss::Closed, &format!("write failed: {err}"));
        Running::Continue
    }

    fn finished(&mut self, _: &mut Self::Context) {}
}

/// A request as written to the backend: `janus`, the session id, the handle id, the
/// transaction (Janus's key order), the request's other members, then the backend's own
/// credentials; whatever ids, transaction or credentials a client sent are never forwarded.
/// Serialised straight from the request, without building another map.
struct Outgoing<'a> {
    request: &'a JsonMap,
    session: Option<u64>,
    handle: Option<u64>,
    transaction: &'a str,
    credentials: &'a BackendCredentials,
}

impl Serialize for Outgoing<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        if let Some((_, janus)) = self.request.iter().find(|(k, _)| *k == "janus") {
            map.serialize_entry("janus", janus)?;
        }
        if let Some(session_id) = self.session {
            map.serialize_entry("session_id", &session_id)?;
        }
        if let Some(handle) = self.handle {
            map.serialize_entry("handle_id", &handle)?;
        }
        map.serialize_entry("transaction", self.transaction)?;
        for (k, v) in self.request {
            let ours = matches!(
                k.as_str(),
                "janus" | "session_id" | "handle_id" | "transaction" | "apisecret" | "token"
            );
            if !ours {
                map.serialize_entry(k, v)?;
            }
        }
        if let Some(secret) = &self.credentials.api_secret {
            map.serialize_entry("apisecret", secret)?;
        }
        if let Some(token) = &self.credentials.token {
            map.serialize_entry("token", token)?;
        }
        map.end()
    }
}

impl BackendLink {
    /// Writes a client request, or answers it with an error when it cannot be sent.
    fn send_request(&mut self, msg: LinkRequest) {
        let now = Instant::now();
        let ready = self.conn.as_ref().is_some_and(|c| c.session_id.is_some());
        let full = self.config.max_pending > 0 && self.pending.len() >= self.config.max_pending;
        if !ready || full || (msg.attach && self.retiring) {
            let reason = if full {
                format!(
                    "backend server {} is overloaded: {} requests waiting",
                    self.name(),
                    self.pending.len()
                )
            } else if self.retiring {
                format!("backend server {} was removed", self.name())
            } else {
                format!("backend server {} is not connected", self.name())
            };
            self.fail(Self::pending_of(msg, now), &reason);
            return;
        }
        let LinkRequest {
            request,
            backend_handle,
            client_transaction,
            reply,
            attach,
        } = msg;
        let transaction_of_client = client_transaction.clone();
        let message = request.get("janus").and_then(Value::as_str) == Some("message");
        let awaits_event = backend_handle.filter(|_| {
            self.awaiting_event.is_some()
                && message
                && matches!(reply, Some(ReplyRoute::Handle { .. }))
        });
        let pending = Pending::Client {
            reply,
            client_transaction,
            attach,
            message,
            awaits_event,
            sent: now,
        };
        let id = self.pending.insert(pending, now);
        let transaction = backend_transaction(id, transaction_of_client.as_deref());
        let session = self.conn.as_ref().and_then(|c| c.session_id);
        if !self.write(request, session, backend_handle, &transaction) {
            if let Some(pending) = self.pending.take(id) {
                let reason = format!("connection to backend server {} lost", self.name());
                self.fail(pending, &reason);
            }
        }
    }
}

impl Handler<LinkRequest> for BackendLink {
    type Result = ();

    fn handle(&mut self, msg: LinkRequest, _: &mut Context<Self>) {
        // While reclaiming, existing handles' requests wait for the claimed session; new
        // attaches go elsewhere (the registry does not pick a link that is not ready).
        if self.reclaim.active().is_some() && !msg.attach && self.queued.len() < MAX_QUEUED {
            self.queued.push((msg, Instant::now()));
            return;
        }
        self.send_request(msg);
    }
}

impl Handler<UnrouteHandle> for BackendLink {
    type Result = ();

    fn handle(&mut self, msg: UnrouteHandle, ctx: &mut Context<Self>) {
        self.routes.remove(&msg.0);
        self.forget_awaiting(msg.0);
        self.status
            .handles
            .store(self.routes.len() as u64, Ordering::Relaxed);
        self.stop_if_retired(ctx);
    }
}

impl Handler<ServerDown> for BackendLink {
    type Result = ();

    fn handle(&mut self, msg: ServerDown, ctx: &mut Context<Self>) {
        if let Decision::GiveUp(why) = self.reclaim.sentinel(msg.0) {
            self.follow(ctx, Decision::GiveUp(why));
        }
    }
}

impl Handler<RetireLink> for BackendLink {
    type Result = ();

    fn handle(&mut self, _: RetireLink, ctx: &mut Context<Self>) {
        log::info!(
            "backend {}: retiring with {} handles",
            self.name(),
            self.routes.len()
        );
        self.retiring = true;
        self.status.set_phase(LinkPhase::Retiring);
        self.stop_if_retired(ctx);
    }
}
