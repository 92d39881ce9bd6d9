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

mod connection;
mod frames;
mod requests;

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
use crate::messages::adoption::AdoptionBook;
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
    /// Where the backend handles it holds are recorded for a survivor (docs/adoption.md).
    adoption: Option<Arc<dyn AdoptionBook>>,
    /// An adopting link: told whether the dead proxy's session was claimed.
    adopting: Option<oneshot::Sender<bool>>,
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
            adoption: None,
            adopting: None,
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

    /// Records the backend handles it holds, for a survivor that adopts this proxy's sessions.
    pub fn with_adoption(mut self, adoption: Option<Arc<dyn AdoptionBook>>) -> Self {
        self.adoption = adoption;
        self
    }

    /// A link that starts by claiming backend session `session` (a dead proxy's, adopted)
    /// rather than creating one, trying until `deadline`; `claimed` is told whether it did
    /// (a session Janus no longer has is not adopted: the link creates none and stops once
    /// retired). It is retired once it holds its adopted handles ([`AdoptRoute`], then
    /// [`RetireLink`]): it takes no new handles and destroys the session when the last one is
    /// gone.
    pub fn adopting(
        mut self,
        session: u64,
        deadline: Instant,
        claimed: oneshot::Sender<bool>,
    ) -> Self {
        self.reclaim.adopt(session, deadline, Instant::now());
        self.adopting = Some(claimed);
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

    /// A route was added (`live`) or removed: recorded for a survivor.
    fn note_handle(&self, handle: u64, live: bool) {
        if let Some(book) = &self.adoption {
            let session = self.status.backend_session().filter(|_| live);
            if live && session.is_none() {
                // Routes are added on a backend session; nothing to record without one.
                return;
            }
            book.backend_handle(&self.status.name, handle, session);
        }
    }

    /// Routes `handle`'s events to `route`.
    fn add_route(&mut self, handle: u64, route: Route) {
        self.routes.insert(handle, route);
        self.note_handle(handle, true);
        self.status
            .handles
            .store(self.routes.len() as u64, Ordering::Relaxed);
    }

    /// Stops routing `handle`'s events.
    fn remove_route(&mut self, handle: u64) -> Option<Route> {
        let route = self.routes.remove(&handle);
        if route.is_some() {
            self.note_handle(handle, false);
        }
        self.status
            .handles
            .store(self.routes.len() as u64, Ordering::Relaxed);
        route
    }

    fn set_error(&self, why: &str) {
        let mut last = self.status.last_error.write();
        last.clear();
        last.push_str(why);
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
    pub(super) fn expire_queued(&mut self, now: Instant) {
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
impl Handler<ServerDown> for BackendLink {
    type Result = ();

    fn handle(&mut self, msg: ServerDown, ctx: &mut Context<Self>) {
        if let Decision::GiveUp(why) = self.reclaim.sentinel(msg.0) {
            self.follow(ctx, Decision::GiveUp(why));
        }
    }
}

/// An adopted backend handle's events go to `route` (see [`BackendLink::adopting`]).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AdoptRoute {
    pub handle: u64,
    pub route: Route,
}

impl Handler<AdoptRoute> for BackendLink {
    type Result = ();

    fn handle(&mut self, msg: AdoptRoute, _: &mut Context<Self>) {
        self.add_route(msg.handle, msg.route);
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
