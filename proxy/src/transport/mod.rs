//! The client WebSocket endpoint: subprotocol `janus-protocol` (any other handshake is refused,
//! as Janus does), one `ClientConnection` actor per socket. The connection parses and checks
//! each request, answers the session-less ones (`info`, `ping`, `create`) and hands the rest
//! to the session actor.

pub mod env;
pub mod listener;
pub mod settings;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use janus_protocol::{
    ApiError, ErrorCode, Incoming, RootRequest, ServerMessage, Target, JANUS_PROTOCOL,
};

use crate::session::{ClientSession, OwnerGone, SessionRequest};
use crate::wsframes::MessageAssembler;
use env::TransportEnv;

pub use crate::messages::{ClientFrame, ReplyTo};
use crate::messages::{ConnPort, SessionOwnership};

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
}

impl ClientConnection {
    pub fn new(state: Arc<TransportEnv>, peer: Option<std::net::IpAddr>) -> Self {
        let rate = state.limits.requests_per_second;
        ClientConnection {
            id: state.next_connection_id(),
            peer,
            limiter: (rate > 0).then(|| crate::limits::RateLimiter::new(rate, Instant::now())),
            owned: HashSet::new(),
            assembler: MessageAssembler::new(state.ws.max_message_size),
            port: None,
            state,
        }
    }

    fn port(&mut self, ctx: &mut ws::WebsocketContext<Self>) -> ConnPort {
        let id = self.id;
        self.port
            .get_or_insert_with(|| ConnPort {
                id,
                frames: ReplyTo::new(ctx.address().recipient()),
                ownership: Arc::new(ctx.address().recipient()),
            })
            .clone()
    }

    fn send(&self, ctx: &mut ws::WebsocketContext<Self>, frame: &ServerMessage) {
        if let ServerMessage::Error(e) = frame {
            self.state.session.metrics.error(e.error.code);
        }
        ctx.text(self.state.session.encode(frame));
    }

    /// One WebSocket message, text or binary: the requests it holds, answered in order, or
    /// the one error that refuses them all (`Incoming::parse_frame`, as Janus reads it).
    fn on_message(&mut self, ctx: &mut ws::WebsocketContext<Self>, data: &[u8]) {
        for request in Incoming::parse_frame(data) {
            self.on_request(ctx, request);
        }
    }

    fn on_request(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        request: Result<Incoming, ApiError>,
    ) {
        let result = request.and_then(|incoming| {
            self.state.session.metrics.request(&incoming.request);
            let target = incoming.target()?;
            Ok((incoming, target))
        });
        let (incoming, target) = match result {
            Ok(ok) => ok,
            Err(e) => return self.send(ctx, &ServerMessage::error(&e)),
        };
        if let Some(limiter) = self.limiter.as_mut() {
            if !limiter.allow(Instant::now()) {
                let rate = self.state.limits.requests_per_second;
                let err = incoming.error(ApiError::new(
                    ErrorCode::Unknown,
                    format!("Too many requests: more than {rate} a second on this connection"),
                ));
                return self.send(ctx, &ServerMessage::error(&err));
            }
        }
        match target {
            Target::Root(RootRequest::Ping) => {
                self.send(ctx, &ServerMessage::pong(&incoming.transaction))
            }
            Target::Root(RootRequest::Info) => {
                let info = crate::session::info::server_info(
                    &self.state.session,
                    Some(&incoming.transaction),
                );
                self.send(ctx, &ServerMessage::ServerInfo(info));
            }
            Target::Root(RootRequest::Create { .. }) | Target::Session { .. }
                if !self.state.session.authorizes(&incoming) =>
            {
                let err = incoming.error(ApiError::default_for(ErrorCode::Unauthorized));
                self.send(ctx, &ServerMessage::error(&err));
            }
            Target::Root(RootRequest::Create { id }) => self.create(ctx, &incoming, id),
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
                        self.send(ctx, &ServerMessage::error(&err));
                    }
                }
            }
        }
    }

    fn create(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        incoming: &Incoming,
        id: Option<u64>,
    ) {
        let limit = self.state.limits.sessions_per_connection;
        if limit > 0 && self.owned.len() >= limit {
            let err = ApiError::new(
                ErrorCode::NotAcceptingSessions,
                format!("Too many sessions on this connection (limit {limit})"),
            )
            .with_transaction(incoming.transaction.clone());
            self.send(ctx, &ServerMessage::error(&err));
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
                self.send(ctx, &reply);
            }
            Err(_) => {
                let err = ApiError::default_for(ErrorCode::SessionConflict)
                    .with_session(id.unwrap_or(0))
                    .with_transaction(incoming.transaction.clone());
                self.send(ctx, &ServerMessage::error(&err));
            }
        }
    }
}

impl Actor for ClientConnection {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        self.state.session.metrics.client_connections.inc();
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.state.session.metrics.client_connections.dec();
        if let Some(ip) = self.peer {
            self.state.connections.close(ip);
        }
        let reclaim = self.state.session.general.reclaim_session_timeout > 0;
        for session_id in self.owned.drain() {
            let mut sessions = self.state.session.sessions.lock();
            if !sessions.orphan(session_id, self.id) {
                continue;
            }
            let addr = if reclaim {
                sessions.get(session_id)
            } else {
                sessions.remove(session_id)
            };
            drop(sessions);
            if let Some(addr) = addr {
                addr.do_send(OwnerGone {
                    conn_id: self.id,
                    destroy: !reclaim,
                });
            }
        }
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for ClientConnection {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        let msg = match msg {
            Ok(msg) => msg,
            Err(e) => {
                log::debug!("client connection {}: protocol error: {e}", self.id);
                // A frame over ws.max_message_size is "message too big" (1009).
                let code = match e {
                    ws::ProtocolError::Overflow => ws::CloseCode::Size,
                    _ => ws::CloseCode::Protocol,
                };
                ctx.close(Some(ws::CloseReason {
                    code,
                    description: Some(e.to_string()),
                }));
                ctx.stop();
                return;
            }
        };
        let data = match msg {
            ws::Message::Text(text) => text.into_bytes(),
            ws::Message::Binary(data) => data,
            ws::Message::Continuation(item) => match self.assembler.push(item) {
                Ok(Some(data)) => data,
                Ok(None) => return,
                Err(e) => {
                    ctx.close(Some(ws::CloseReason {
                        code: ws::CloseCode::Size,
                        description: Some(e.to_string()),
                    }));
                    ctx.stop();
                    return;
                }
            },
            ws::Message::Ping(data) => {
                ctx.pong(&data);
                return;
            }
            ws::Message::Pong(_) | ws::Message::Nop => return,
            ws::Message::Close(reason) => {
                ctx.close(reason);
                ctx.stop();
                return;
            }
        };
        // Bytes that are not UTF-8 (a binary message) get jansson's error for them.
        self.on_message(ctx, &data);
    }
}

impl Handler<ClientFrame> for ClientConnection {
    type Result = ();

    fn handle(&mut self, msg: ClientFrame, ctx: &mut Self::Context) {
        ctx.text(msg.0);
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

/// Does the handshake offer `janus-protocol`?
fn offers_janus_protocol(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(actix_web::http::header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == JANUS_PROTOCOL)
}

/// The client's address: the connection's (the TCP peer, or the PROXY protocol header of a
/// trusted load balancer, see `listener`), or, when that is a trusted proxy, what its
/// `limits.forwarded_header` says.
fn client_ip(req: &HttpRequest, state: &TransportEnv) -> Option<std::net::IpAddr> {
    let peer = req.peer_addr()?;
    let header = state.limits.forwarded_header;
    let values: Vec<&[u8]> = match header.header_name() {
        Some(name) => req.headers().get_all(name).map(|v| v.as_bytes()).collect(),
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

/// The WebSocket route (any path).
pub async fn ws_endpoint(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<Arc<TransportEnv>>,
) -> Result<HttpResponse, actix_web::Error> {
    if !offers_janus_protocol(&req) {
        return Ok(HttpResponse::BadRequest()
            .content_type("text/plain")
            .body("WebSocket subprotocol 'janus-protocol' required\n"));
    }
    let state = state.get_ref().clone();
    let peer = client_ip(&req, &state);
    if let Some(ip) = peer {
        let limit = state.limits.connections_per_ip;
        if !state.connections.try_open(ip, limit) {
            log::info!("client connection from {ip} refused: {limit} connections from it already");
            state
                .session
                .metrics
                .refused(crate::metrics::Refusal::ConnectionsPerIp);
            return Ok(HttpResponse::TooManyRequests()
                .content_type("text/plain")
                .body(format!("Too many connections from {ip} (limit {limit})\n")));
        }
    }
    let max = state.ws.max_message_size;
    let connection = ClientConnection::new(state.clone(), peer);
    let response = ws::WsResponseBuilder::new(connection, &req, stream)
        .protocols(&[JANUS_PROTOCOL])
        .frame_size(max)
        .start();
    if response.is_err() {
        // The handshake failed, so the actor that would release the count never ran.
        if let Some(ip) = peer {
            state.connections.close(ip);
        }
    }
    response
}
