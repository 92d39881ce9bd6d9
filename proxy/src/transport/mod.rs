//! The client WebSocket endpoint: subprotocol `janus-protocol` (any other handshake is refused,
//! as Janus does), one `ClientConnection` actor per socket. The connection parses and checks
//! each request, answers the session-less ones (`info`, `ping`, `create`) and hands the rest
//! to the session actor.
//!
//! The handshake is answered from actix-http's upgrade hook (`upgrade`); after it the actor
//! owns the bare stream (`wsio`), so an idle connection holds no HTTP dispatcher and no buffer
//! (docs/performance.md).

pub mod env;
pub mod listener;
pub mod settings;
pub mod stream;
pub mod upgrade;
pub mod wsio;

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_http::ws::{CloseCode, CloseReason, Frame, Message, ProtocolError};
use actix_web::{web, HttpRequest, HttpResponse};
use janus_protocol::{ApiError, ErrorCode, Incoming, RootRequest, ServerMessage, Target};

use crate::session::{ClientSession, SessionRequest};
use crate::wsframes::MessageAssembler;
use env::TransportEnv;
use stream::ClientStream;
use wsio::WsIo;

use crate::messages::adoption::{AwaitAdoption, ClaimOutcome};
pub use crate::messages::{ClientFrame, ReplyTo};
use crate::messages::{ConnPort, SessionOwnership};
use crate::session::remote::RelayLost;

/// How long a closing connection may take to write its last frames (its close frame) before
/// it is dropped: actix-http's `client_disconnect_timeout`, as before.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

pub struct ClientConnection {
    id: u64,
    state: Arc<TransportEnv>,
    /// The client's real address (see `client_ip`), counted against
    /// `limits.connections_per_ip`.
    peer: Option<std::net::IpAddr>,
    limiter: Option<crate::limits::RateLimiter>,
    /// Sessions created or claimed here; they end (or wait to be reclaimed) when it closes.
    owned: HashSet<u64>,
    assembler: MessageAssembler,
    /// This connection as its sessions know it (made when the actor starts).
    port: Option<ConnPort>,
    /// The socket, its codec and its (idle: empty) buffers.
    io: WsIo<ClientStream>,
    /// A close frame is sent (or the client is gone): nothing more is read or written but
    /// what is queued, then the actor stops.
    closing: bool,
    /// Sessions another proxy holds, with that proxy (see `session::remote`); None for
    /// almost every connection.
    relayed: Option<Box<Relayed>>,
}

/// A connection's sessions held by other proxies, with the proxy holding each (boxed: a
/// pointer on every connection rather than a map).
#[derive(Default)]
struct Relayed(HashMap<u64, String>);

impl ClientConnection {
    pub fn new(
        state: Arc<TransportEnv>,
        peer: Option<std::net::IpAddr>,
        io: WsIo<ClientStream>,
    ) -> Self {
        let rate = state.limits.requests_per_second;
        ClientConnection {
            id: state.next_connection_id(),
            peer,
            limiter: (rate > 0).then(|| crate::limits::RateLimiter::new(rate, Instant::now())),
            owned: HashSet::new(),
            assembler: MessageAssembler::new(state.ws.max_message_size),
            port: None,
            io,
            closing: false,
            relayed: None,
            state,
        }
    }

    fn port(&mut self, ctx: &mut Context<Self>) -> ConnPort {
        let id = self.id;
        self.port
            .get_or_insert_with(|| ConnPort {
                id,
                frames: ReplyTo::new(ctx.address().recipient()),
                ownership: Arc::new(ctx.address().recipient()),
            })
            .clone()
    }

    fn send(&mut self, frame: &ServerMessage) {
        if let ServerMessage::Error(e) = frame {
            self.state.session.metrics.error(e.error.code);
        }
        self.text(self.state.session.encode(frame));
    }

    /// Queues a text frame (written by the `IoDriver`, which runs after every message the
    /// actor handles). Nothing is written after the close frame.
    fn text(&mut self, text: String) {
        if !self.closing {
            self.io.send(Message::Text(text.into()));
        }
    }

    /// Sends a close frame (`None`: an empty one), then the actor stops once it is written.
    fn close(&mut self, ctx: &mut Context<Self>, reason: Option<CloseReason>) {
        if !self.closing {
            self.io.send(Message::Close(reason));
            self.closing = true;
            ctx.run_later(CLOSE_TIMEOUT, |_, ctx| ctx.stop());
        }
    }

    /// The client is gone: stop once what is queued is written (or cannot be).
    fn ended(&mut self, ctx: &mut Context<Self>) {
        if !self.closing {
            self.closing = true;
            ctx.run_later(CLOSE_TIMEOUT, |_, ctx| ctx.stop());
        }
    }

    /// One WebSocket message, text or binary: the requests it holds, answered in order, or
    /// the one error that refuses them all (`Incoming::parse_frame`, as Janus reads it).
    fn on_message(&mut self, ctx: &mut Context<Self>, data: &[u8]) {
        for request in Incoming::parse_frame(data) {
            self.on_request(ctx, request);
        }
    }

    fn on_request(&mut self, ctx: &mut Context<Self>, request: Result<Incoming, ApiError>) {
        let result = request.and_then(|incoming| {
            self.state.session.metrics.request(&incoming.request);
            let target = incoming.target()?;
            Ok((incoming, target))
        });
        let (incoming, target) = match result {
            Ok(ok) => ok,
            Err(e) => return self.send(&ServerMessage::error(&e)),
        };
        if let Some(limiter) = self.limiter.as_mut() {
            if !limiter.allow(Instant::now()) {
                let rate = self.state.limits.requests_per_second;
                let err = incoming.error(ApiError::new(
                    ErrorCode::Unknown,
                    format!("Too many requests: more than {rate} a second on this connection"),
                ));
                return self.send(&ServerMessage::error(&err));
            }
        }
        if let (Target::Session { session_id, .. }, Some(relayed)) = (&target, &self.relayed) {
            if let (Some(holder), Some(relay)) = (relayed.0.get(session_id), self.state.relay.get())
            {
                return relay.forward(holder, self.id, &incoming);
            }
        }
        match target {
            Target::Root(RootRequest::Ping) => {
                self.send(&ServerMessage::pong(&incoming.transaction))
            }
            Target::Root(RootRequest::Info) => {
                let info = crate::session::info::server_info(
                    &self.state.session,
                    Some(&incoming.transaction),
                );
                self.send(&ServerMessage::ServerInfo(info));
            }
            Target::Root(RootRequest::Create { .. }) | Target::Session { .. }
                if !self.state.session.authorizes(&incoming) =>
            {
                let err = incoming.error(ApiError::default_for(ErrorCode::Unauthorized));
                self.send(&ServerMessage::error(&err));
            }
            Target::Root(RootRequest::Create { id }) => self.create(ctx, &incoming, id),
            Target::Session {
                session_id,
                handle_id: 0,
            } if incoming.is("keepalive") => {
                // Answered here, as Janus's core does: all a keepalive does is keep the
                // session alive (no hop to the session and back: idle clients send little
                // else, and it is most of what an idle proxy does).
                let alive = self
                    .state
                    .session
                    .sessions
                    .lock()
                    .refresh(session_id, Instant::now());
                let reply = match alive {
                    true => ServerMessage::ack(session_id, &incoming.transaction),
                    false => {
                        ServerMessage::error(&incoming.error(ApiError::no_such_session(session_id)))
                    }
                };
                self.send(&reply);
            }
            Target::Session {
                session_id,
                handle_id: 0,
            } if incoming.is("claim") && self.state.session.adopter.get().is_some() => {
                self.claim(ctx, incoming, session_id)
            }
            Target::Session { session_id, .. } => {
                let session = self
                    .state
                    .session
                    .sessions
                    .lock()
                    .touch(session_id, Instant::now());
                match session {
                    Some(session) => session.do_send(SessionRequest {
                        incoming,
                        conn: self.port(ctx),
                        client_ip: self.peer,
                    }),
                    None => {
                        let err = incoming.error(ApiError::no_such_session(session_id));
                        self.send(&ServerMessage::error(&err));
                    }
                }
            }
        }
    }

    /// `claim`: of a session here, or of a dead proxy's that is (being) adopted here
    /// (docs/adoption.md); Janus's 458 when neither.
    fn claim(&mut self, ctx: &mut Context<Self>, incoming: Incoming, session_id: u64) {
        let touch = move |state: &TransportEnv| {
            state
                .session
                .sessions
                .lock()
                .touch(session_id, Instant::now())
        };
        if let Some(session) = touch(&self.state) {
            return session.do_send(SessionRequest {
                incoming,
                conn: self.port(ctx),
                client_ip: self.peer,
            });
        }
        let Some(adopter) = self.state.session.adopter.get() else {
            return;
        };
        let asked = adopter.send(AwaitAdoption(session_id));
        ctx.spawn(asked.into_actor(self).map(move |outcome, act, ctx| {
            let outcome = outcome.unwrap_or(ClaimOutcome::Unknown);
            if let (ClaimOutcome::Held(holder), Some(relay)) = (&outcome, act.state.relay.get()) {
                let addr = ctx.address();
                relay.near(act.id, holder, addr.clone().recipient(), addr.recipient());
                act.relayed
                    .get_or_insert_with(Box::default)
                    .0
                    .insert(session_id, holder.clone());
                log::debug!(
                    session_id;
                    "client connection {}: session {session_id} is held by proxy {holder}",
                    act.id
                );
                return relay.forward(holder, act.id, &incoming);
            }
            let here = (outcome == ClaimOutcome::Here).then(|| touch(&act.state));
            match here.flatten() {
                Some(session) => session.do_send(SessionRequest {
                    incoming,
                    conn: act.port(ctx),
                    client_ip: act.peer,
                }),
                None => {
                    let err = incoming.error(ApiError::no_such_session(session_id));
                    act.state.session.metrics.error(err.code.code());
                    // Through the mailbox: the socket is served after a message, not after
                    // a spawned future.
                    let frame = act.state.session.encode(&ServerMessage::error(&err));
                    ctx.address().do_send(ClientFrame(frame));
                }
            }
        }));
    }

    fn create(&mut self, ctx: &mut Context<Self>, incoming: &Incoming, id: Option<u64>) {
        let limit = self.state.limits.sessions_per_connection;
        if limit > 0 && self.owned.len() >= limit {
            let err = ApiError::new(
                ErrorCode::NotAcceptingSessions,
                format!("Too many sessions on this connection (limit {limit})"),
            )
            .with_transaction(incoming.transaction.clone());
            self.send(&ServerMessage::error(&err));
            return;
        }
        let state = self.state.session.clone();
        let owner = self.port(ctx);
        let client_ip = self.peer;
        let created =
            self.state
                .session
                .sessions
                .lock()
                .insert(id, self.id, Instant::now(), |sid| {
                    ClientSession::new(sid, state, owner, client_ip).start()
                });
        match created {
            Ok(session_id) => {
                self.owned.insert(session_id);
                let reply = ServerMessage::created(0, &incoming.transaction, session_id);
                self.send(&reply);
            }
            Err(_) => {
                let err = ApiError::default_for(ErrorCode::SessionConflict)
                    .with_session(id.unwrap_or(0))
                    .with_transaction(incoming.transaction.clone());
                self.send(&ServerMessage::error(&err));
            }
        }
    }
}

impl Actor for ClientConnection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.state.session.metrics.client_connections.inc();
        ctx.spawn(IoDriver);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.state.session.metrics.client_connections.dec();
        if let Some(ip) = self.peer {
            self.state.connections.close(ip);
        }
        crate::session::release_owned(&self.state.session, self.id, self.owned.drain());
        if self.relayed.is_some() {
            if let Some(relay) = self.state.relay.get() {
                relay.gone(self.id);
            }
        }
    }
}

impl ClientConnection {
    /// One frame from the client, or why none could be read (answered as actix-web-actors'
    /// WebSocket stream and this handler answered them before).
    fn on_frame(&mut self, ctx: &mut Context<Self>, frame: Result<Frame, ProtocolError>) {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                log::debug!("client connection {}: protocol error: {e}", self.id);
                // A frame over ws.max_message_size is "message too big" (1009).
                let code = match e {
                    ProtocolError::Overflow => CloseCode::Size,
                    _ => CloseCode::Protocol,
                };
                let reason = CloseReason {
                    code,
                    description: Some(e.to_string()),
                };
                return self.close(ctx, Some(reason));
            }
        };
        let data = match frame {
            Frame::Text(data) => match std::str::from_utf8(&data) {
                Ok(_) => data,
                Err(e) => {
                    // What the WebSocket stream made of a text frame that is not UTF-8.
                    let e = ProtocolError::Io(std::io::Error::other(e.to_string()));
                    return self.on_frame(ctx, Err(e));
                }
            },
            Frame::Binary(data) => data,
            Frame::Continuation(item) => match self.assembler.push(item) {
                Ok(Some(data)) => {
                    // A fresh assembler (no allocation): the old one's buffer still holds the
                    // room of the largest message it gathered, which an idle connection
                    // should not keep.
                    self.assembler = MessageAssembler::new(self.state.ws.max_message_size);
                    data
                }
                Ok(None) => return,
                Err(e) => {
                    let reason = CloseReason {
                        code: CloseCode::Size,
                        description: Some(e.to_string()),
                    };
                    return self.close(ctx, Some(reason));
                }
            },
            Frame::Ping(data) => {
                if !self.closing {
                    self.io.send(Message::Pong(data));
                }
                return;
            }
            Frame::Pong(_) => return,
            Frame::Close(reason) => return self.close(ctx, reason),
        };
        // Bytes that are not UTF-8 (a binary message) get jansson's error for them.
        self.on_message(ctx, &data);
    }
}

/// The connection's socket work, polled by the actor's context after every message it
/// handles: writes what is queued, reads and handles frames, and once closing, writes the
/// rest, ends the stream and stops the actor.
struct IoDriver;

impl ActorFuture<ClientConnection> for IoDriver {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut ClientConnection,
        ctx: &mut Context<ClientConnection>,
        task: &mut std::task::Context<'_>,
    ) -> Poll<()> {
        loop {
            if act.closing {
                return match act.io.poll_shutdown(task) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(_) => {
                        ctx.stop();
                        Poll::Ready(())
                    }
                };
            }
            if let Poll::Ready(Err(e)) = act.io.poll_flush(task) {
                log::debug!("client connection {}: write failed: {e}", act.id);
                ctx.stop();
                return Poll::Ready(());
            }
            match act.io.poll_frame(task) {
                Poll::Ready(Some(frame)) => act.on_frame(ctx, frame),
                Poll::Ready(None) => act.ended(ctx),
                // Replies queued by the frames handled are written by the flush above, on
                // the next turn; with none pending there is nothing left to do.
                Poll::Pending if act.io.has_pending_writes() => {
                    return match act.io.poll_flush(task) {
                        Poll::Ready(Err(e)) => {
                            log::debug!("client connection {}: write failed: {e}", act.id);
                            ctx.stop();
                            Poll::Ready(())
                        }
                        _ => Poll::Pending,
                    };
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Handler<ClientFrame> for ClientConnection {
    type Result = ();

    fn handle(&mut self, msg: ClientFrame, _: &mut Self::Context) {
        self.text(msg.0);
    }
}

impl Handler<RelayLost> for ClientConnection {
    type Result = ();

    /// The proxy holding a session of this client died: closing the socket makes janus.js
    /// reconnect and claim it again (from the proxy that adopts it).
    fn handle(&mut self, _: RelayLost, ctx: &mut Self::Context) {
        let reason = CloseReason {
            code: CloseCode::Away,
            description: Some("the proxy holding the session is gone".into()),
        };
        self.close(ctx, Some(reason));
    }
}

impl Handler<SessionOwnership> for ClientConnection {
    type Result = ();

    fn handle(&mut self, msg: SessionOwnership, _: &mut Self::Context) {
        match msg {
            SessionOwnership::Claimed(id) => self.owned.insert(id),
            SessionOwnership::Released(id) => self.owned.remove(&id),
        };
    }
}

/// The client's address: the connection's (the TCP peer, or the PROXY protocol header of a
/// trusted load balancer, see `listener`), or, when that is a trusted proxy, what its
/// `limits.forwarded_header` says.
fn client_ip(
    head: &actix_http::RequestHead,
    peer: Option<std::net::SocketAddr>,
    state: &TransportEnv,
) -> Option<std::net::IpAddr> {
    let peer = peer?;
    let header = state.limits.forwarded_header;
    let values: Vec<&[u8]> = match header.header_name() {
        Some(name) => head.headers().get_all(name).map(|v| v.as_bytes()).collect(),
        None => Vec::new(),
    };
    let (ip, error) =
        crate::client_addr::forwarded::resolve(peer.ip(), header, &values, &state.trusted_proxies);
    if let Some(e) = error {
        log::warn!(
            "client connection from {peer}: {} ignored, the client is taken to be the peer: {e}",
            header.header_name().unwrap_or_default()
        );
    }
    Some(ip)
}

/// The route (any path) of requests that are not WebSocket upgrades: those go to
/// `upgrade::serve` before any route. What comes here is refused as the handshake refuses it.
pub async fn ws_endpoint(req: HttpRequest, state: web::Data<Arc<TransportEnv>>) -> HttpResponse {
    let state = state.get_ref();
    let client = client_ip(req.head(), req.peer_addr(), state);
    let refusal = match upgrade::admit(req.head(), state, client) {
        Err(refusal) => refusal,
        // Upgrade headers actix-http's parser did not take for a WebSocket upgrade (e.g.
        // `Upgrade: websocket, h2c`): not served, as by a stock Janus (libwebsockets).
        Ok(_) => {
            if let Some(ip) = client {
                state.connections.close(ip);
            }
            upgrade::HandshakeRefusal::Handshake(actix_http::ws::HandshakeError::NoWebsocketUpgrade)
        }
    };
    let (res, body) = refusal.response();
    HttpResponse::from(res.set_body(body).map_into_boxed_body())
}
