//! `VideoCallHandle`: one actor per client videocall handle.
//!
//! State machine, per handle:
//!
//! * **idle** (maybe registered): `list`, `register`, `set`, `hangup`, `accept` are answered
//!   by the proxy itself, with Janus's events and errors.
//! * **setting up** a call: the caller checked the callee (Janus's checks and order), the
//!   registry chose a server, the callee agreed ([`IncomingCall`]) and both handles open a
//!   *leg* there — a backend videocall handle with their username registered. The caller's
//!   `call` waits (later requests of the caller queue behind it; trickles are queued) until
//!   both legs are ready ([`PeerLegReady`]), then goes to the backend with the offer.
//! * **live**: the backend knows the call (the caller sent `call`, the callee got
//!   `incomingcall`). `accept`, `set`, `hangup`, trickles and core `hangup` go to the leg;
//!   the leg's events come back with the client's ids. The backend's `hangup` event ends it.
//! * after a call the leg **lingers** for [`LEG_LINGER`] so that Janus's own trailing events
//!   of the call (the PeerConnection teardown: the peer's "Remote WebRTC hangup", core
//!   `hangup`) still reach the client, as they would from a Janus; then it is detached (which
//!   frees the username on the backend). A new call on the same server reuses it.
//!
//! The peer handle is told when this side cannot go on ([`PeerLeft`]); when the backend is
//! lost both sides get the `hangup` event.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use janus_protocol::frames::PluginEvent;
use janus_protocol::{JsonMap, PluginData, ServerMessage, Trickle};
use serde_json::{json, Value};

use super::errors::{self, VcError};
use super::remote::{self, VideoCallRemote};
use super::{SharedDirectory, PACKAGE};
use crate::messages::transaction::split_transaction;
use crate::messages::BackendIncoming;
use crate::plugin::backend_handle::{request, BackendLeg, LegForwarder, LegIncoming};
use crate::plugin::relay::BACKEND_LOST_REASON;
use crate::plugin::rewrite::{rewrite, Transaction};
use crate::plugin::{AttachContext, HandleCommand};
use crate::registry::{PlaceOn, Placement, SelectServer};
use crate::session::{ClientSession, Deliver};
use crate::state::ProxyState;
use crate::store::Claim;
use crate::transport::{ClientFrame, ReplyTo};
use futures_util::future::LocalBoxFuture;

/// How long a leg stays after its call ended (see the module documentation). Janus tears
/// the PeerConnections down within about half a second of a hangup.
pub const LEG_LINGER: Duration = Duration::from_secs(2);

/// Reason of the `hangup` event when the peer's proxy died mid-call: what Janus says when the
/// peer's handle goes away.
const PEER_PROXY_GONE_REASON: &str = "Remote WebRTC hangup";

/// Reason of the core `hangup` Janus sends when the plugin closes a PeerConnection.
const CLOSE_PC: &str = "Close PC";

// ---- messages between handles ---------------------------------------------------------------

/// Is this user in a call (or setting one up)? Janus answers "User busy" before it checks
/// that a `call` carries an SDP; without one, nothing is reserved.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct IsBusy;

/// A registered user calls this one, on `server`. The callee reserves itself and opens its
/// leg there, or says it is busy.
#[derive(Message)]
#[rtype(result = "Ringing")]
pub struct IncomingCall {
    pub call: u64,
    pub caller: Peer,
    pub caller_username: String,
    pub server: String,
}

/// The callee's answer to [`IncomingCall`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, MessageResponse)]
pub enum Ringing {
    Yes,
    Busy,
}

/// The callee's leg is attached and registered on the call's server.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PeerLegReady {
    pub call: u64,
}

/// The other side of call `call` is out of it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PeerLeft {
    pub call: u64,
    pub cause: LeftCause,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeftCause {
    /// Its handle went away (detach, session destroyed or timed out, socket closed).
    Gone,
    /// Its call setup failed (no leg on the server, backend refused the call).
    Failed(String),
    /// The backend server of the call is gone.
    BackendLost,
    /// The backend ended the call (it tells both legs itself).
    Ended,
    /// The peer's proxy died (its heartbeat expired): the backend may not know for a while.
    ProxyGone,
}

/// The other handle of a call: on this proxy, or on another one (through the shared store).
#[derive(Clone)]
pub enum Peer {
    Local(Addr<VideoCallHandle>),
    Remote {
        remote: Arc<VideoCallRemote>,
        proxy: String,
    },
}

impl Peer {
    fn left(&self, call: u64, cause: LeftCause) {
        match self {
            Peer::Local(addr) => addr.do_send(PeerLeft { call, cause }),
            Peer::Remote { remote, proxy } => remote.left(proxy, call, &cause),
        }
    }

    fn leg_ready(&self, call: u64) {
        match self {
            Peer::Local(addr) => addr.do_send(PeerLegReady { call }),
            Peer::Remote { remote, proxy } => remote.leg_ready(proxy, call),
        }
    }

    fn is_busy(&self, username: String) -> LocalBoxFuture<'static, Result<bool, ()>> {
        match self.clone() {
            Peer::Local(addr) => Box::pin(async move { addr.send(IsBusy).await.map_err(|_| ()) }),
            Peer::Remote { remote, proxy } => {
                Box::pin(async move { remote.is_busy(&proxy, &username).await })
            }
        }
    }

    fn ring(
        &self,
        msg: IncomingCall,
        username: String,
        me: Addr<VideoCallHandle>,
    ) -> LocalBoxFuture<'static, Result<Ringing, ()>> {
        match self.clone() {
            Peer::Local(addr) => Box::pin(async move { addr.send(msg).await.map_err(|_| ()) }),
            Peer::Remote { remote, proxy } => Box::pin(remote.ring(proxy, username, msg, me)),
        }
    }
}

// ---- the handle ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LegPhase {
    Attaching,
    Registering,
    Ready,
}

struct Leg {
    id: u64,
    backend: BackendLeg,
    forwarder: Recipient<BackendIncoming>,
    phase: LegPhase,
    /// Its call ended; detached at the end of the linger time unless reused.
    lingering: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Caller,
    Callee,
}

struct Call {
    id: u64,
    role: Role,
    peer: Peer,
    peer_username: String,
    /// The backend knows the call: requests go to the leg.
    live: bool,
    /// Caller: the callee's leg is ready.
    peer_ready: bool,
    /// The server of the call.
    server: String,
}

/// A `call` request on its way to a known peer.
struct Outgoing {
    transaction: String,
    body: JsonMap,
    jsep: Option<JsonMap>,
    reply_to: ReplyTo,
    /// It carries an SDP offer.
    offer: bool,
}

/// The caller's `call` request, held until both legs are ready.
struct OutgoingCall {
    transaction: String,
    body: JsonMap,
    jsep: JsonMap,
    reply_to: ReplyTo,
}

pub struct VideoCallHandle {
    session_id: u64,
    handle_id: u64,
    state: Arc<ProxyState>,
    session: Addr<ClientSession>,
    opaque_id: Option<String>,
    directory: SharedDirectory,
    /// Users and peers on other proxies (None without a shared store).
    remote: Option<Arc<VideoCallRemote>>,
    username: Option<String>,
    /// Client requests wait here while one is in progress (as Janus's plugin queue does).
    queue: VecDeque<HandleCommand>,
    busy: bool,
    outgoing: Option<OutgoingCall>,
    /// The transaction of the `call` sent to the backend (its errors end the call).
    call_transaction: Option<String>,
    call: Option<Call>,
    leg: Option<Leg>,
    next_leg: u64,
    /// `set` elements sent before the call: applied to the leg once registered, as Janus
    /// applies them to the call that follows (and forgets them after it).
    pending_set: JsonMap,
    /// Trickles that arrived before the call reached the backend, in order.
    trickles: Vec<Trickle>,
    /// Detached or its session ended.
    gone: bool,
}

/// What a local answer to a message is.
enum Outcome {
    Result(Value),
    Error(VcError),
}

impl VideoCallHandle {
    pub fn new(
        ctx: AttachContext,
        directory: SharedDirectory,
        remote: Option<Arc<VideoCallRemote>>,
    ) -> Self {
        VideoCallHandle {
            session_id: ctx.session_id,
            handle_id: ctx.handle_id,
            state: ctx.state,
            session: ctx.session,
            opaque_id: ctx.opaque_id,
            directory,
            remote,
            username: None,
            queue: VecDeque::new(),
            busy: false,
            outgoing: None,
            call_transaction: None,
            call: None,
            leg: None,
            next_leg: 1,
            pending_set: JsonMap::new(),
            trickles: Vec::new(),
            gone: false,
        }
    }

    // ---- frames to the client ----

    fn send_frame(&self, frame: &impl serde::Serialize, reply_to: Option<&ReplyTo>) {
        let text = self.state.encode(frame);
        match reply_to {
            Some(conn) => conn.do_send(ClientFrame(text)),
            None => self.session.do_send(Deliver(text)),
        }
    }

    fn ack(&self, transaction: &str, reply_to: &ReplyTo) {
        self.send_frame(
            &ServerMessage::ack(self.session_id, transaction),
            Some(reply_to),
        );
    }

    /// A plugin event `{"videocall":"event", …}`, with Janus's key order.
    fn event(&self, transaction: Option<&str>, data: Value, jsep: Option<Value>) {
        let frame = ServerMessage::Event(PluginEvent {
            session_id: self.session_id,
            transaction: transaction.map(str::to_owned),
            sender: self.handle_id,
            opaque_id: None,
            plugindata: PluginData {
                plugin: PACKAGE.to_owned(),
                data,
            },
            jsep,
            extra: JsonMap::new(),
        });
        self.send_frame(&frame, None);
    }

    fn answer(&self, transaction: &str, outcome: Outcome) {
        let data = match outcome {
            Outcome::Result(result) => json!({"videocall": "event", "result": result}),
            Outcome::Error(e) => {
                json!({"videocall": "event", "error_code": e.code, "error": e.text})
            }
        };
        self.event(Some(transaction), data, None);
    }

    /// `ack` then the event, as Janus answers every VideoCall request.
    fn reply(&self, transaction: &str, reply_to: &ReplyTo, outcome: Outcome) {
        self.ack(transaction, reply_to);
        self.answer(transaction, outcome);
    }

    /// Janus closes the PeerConnection an offer opened when it refuses the call.
    fn close_pc(&self) {
        let frame = ServerMessage::hangup(self.session_id, self.handle_id, None, CLOSE_PC);
        self.send_frame(&frame, None);
    }

    fn hangup_result(&self, username: Option<&str>, reason: &str) -> Value {
        let mut result = JsonMap::new();
        result.insert("event".into(), "hangup".into());
        if let Some(username) = username {
            result.insert("username".into(), username.into());
        }
        result.insert("reason".into(), reason.into());
        Value::Object(result)
    }

    // ---- client commands ----

    fn enqueue(&mut self, ctx: &mut Context<Self>, cmd: HandleCommand) {
        self.queue.push_back(cmd);
        self.drain(ctx);
    }

    fn drain(&mut self, ctx: &mut Context<Self>) {
        while !self.busy && !self.gone {
            let Some(cmd) = self.queue.pop_front() else {
                return;
            };
            match cmd {
                HandleCommand::Message {
                    transaction,
                    body,
                    jsep,
                    reply_to,
                } => self.on_message(ctx, transaction, body, jsep, reply_to),
                HandleCommand::Hangup {
                    transaction,
                    reply_to,
                } => self.on_core_hangup(ctx, transaction, reply_to),
                // Trickles, detach and session end are not queued (see `handle`).
                _ => {}
            }
        }
    }

    fn live_leg(&self) -> Option<&Leg> {
        let live = self.call.as_ref().is_some_and(|c| c.live);
        self.leg.as_ref().filter(|_| live)
    }

    fn forward(
        &self,
        ctx: &Context<Self>,
        leg: &Leg,
        request: JsonMap,
        transaction: String,
        reply_to: ReplyTo,
    ) {
        let _ = ctx;
        let route = (leg.forwarder.clone(), Some(reply_to));
        leg.backend.send(request, Some(transaction), Some(route));
    }

    fn message_request(body: JsonMap, jsep: Option<JsonMap>) -> JsonMap {
        let mut req = request("message");
        req.insert("body".into(), Value::Object(body));
        if let Some(jsep) = jsep {
            req.insert("jsep".into(), Value::Object(jsep));
        }
        req
    }

    fn on_message(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: String,
        body: JsonMap,
        jsep: Option<JsonMap>,
        reply_to: ReplyTo,
    ) {
        let (request_name, as_written) = match errors::request_of(&body) {
            Ok(r) => r,
            Err(e) => return self.reply(&transaction, &reply_to, Outcome::Error(e)),
        };
        match request_name.as_str() {
            "list" => {
                let mut list = self.directory.lock().list();
                if let Some(remote) = &self.remote {
                    list.extend(remote.remote_users());
                    list.sort();
                    list.dedup();
                }
                let outcome = Outcome::Result(json!({ "list": list }));
                self.reply(&transaction, &reply_to, outcome);
            }
            "register" => self.register(ctx, transaction, &body, reply_to),
            // In a call the backend answers, as Janus would: a second `call` gets 480 there,
            // and Janus's 480 also closes the caller's PeerConnection, ending the call.
            "call" | "accept" | "set" | "hangup" if self.live_leg().is_some() => {
                if let Some(leg) = self.live_leg() {
                    let req = Self::message_request(body, jsep);
                    self.forward(ctx, leg, req, transaction, reply_to);
                }
            }
            "call" => self.call(ctx, transaction, body, jsep, reply_to),
            "accept" => {
                if jsep
                    .as_ref()
                    .and_then(|j| j.get("type"))
                    .and_then(Value::as_str)
                    == Some("answer")
                {
                    // The Janus core refuses an answer to an offer it never made.
                    let err = janus_protocol::ApiError::new(
                        janus_protocol::ErrorCode::UnexpectedAnswer,
                        "Unexpected ANSWER (did we offer?)",
                    )
                    .with_session(self.session_id)
                    .with_transaction(transaction);
                    self.send_frame(&ServerMessage::error(&err), Some(&reply_to));
                    return;
                }
                self.reply(&transaction, &reply_to, Outcome::Error(VcError::no_call()));
            }
            "set" => {
                let outcome = match errors::check_set(&body) {
                    Ok(()) => {
                        for (k, v) in body {
                            if k != "request" && k != "restart" {
                                self.pending_set.insert(k, v);
                            }
                        }
                        Outcome::Result(json!({"event": "set"}))
                    }
                    Err(e) => Outcome::Error(e),
                };
                self.reply(&transaction, &reply_to, outcome);
            }
            "hangup" => {
                // Not in a call (as far as the backend knows): Janus answers all the same,
                // and always with this reason.
                let result = self.hangup_result(self.username.as_deref(), "Explicit hangup");
                self.reply(&transaction, &reply_to, Outcome::Result(result));
            }
            _ => {
                let err = VcError::unknown_request(&as_written);
                self.reply(&transaction, &reply_to, Outcome::Error(err));
            }
        }
    }

    /// Registers the name here, then (with a shared store) claims it in Redis: of two
    /// proxies registering one name at once, exactly one wins. The handle waits for the claim
    /// (as Janus's plugin handles one request of a handle at a time).
    fn register(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: String,
        body: &JsonMap,
        reply_to: ReplyTo,
    ) {
        if let Some(username) = &self.username {
            let err = VcError::already_registered(username);
            return self.reply(&transaction, &reply_to, Outcome::Error(err));
        }
        let username = match errors::required_string(body, "username") {
            Ok(u) => u.to_owned(),
            Err(e) => return self.reply(&transaction, &reply_to, Outcome::Error(e)),
        };
        // Redis away: the last view of the other proxies' users is the best there is.
        let elsewhere = self.state.store.is_degraded()
            && self
                .remote
                .as_ref()
                .is_some_and(|r| r.remote_user(&username).is_some());
        let reserved = !elsewhere
            && self
                .directory
                .lock()
                .register(&username, self.handle_id, ctx.address())
                .is_ok();
        if !reserved {
            let err = VcError::taken(&username);
            return self.reply(&transaction, &reply_to, Outcome::Error(err));
        }
        if !self.state.store.is_shared() {
            self.username = Some(username.clone());
            let result = json!({"event": "registered", "username": username});
            return self.reply(&transaction, &reply_to, Outcome::Result(result));
        }
        self.ack(&transaction, &reply_to);
        // Queued requests wait for the claim too (`drain` stops while busy).
        self.busy = true;
        let claim = self.state.store.claim_user(remote::TOPIC, &username);
        let fut = claim
            .into_actor(self)
            .map(move |claim, act: &mut Self, ctx| {
                let outcome = if claim == Claim::Taken {
                    act.directory.lock().unregister(&username, act.handle_id);
                    Outcome::Error(VcError::taken(&username))
                } else {
                    act.username = Some(username.clone());
                    Outcome::Result(json!({"event": "registered", "username": username}))
                };
                act.answer(&transaction, outcome);
                act.busy = false;
                act.drain(ctx);
            });
        ctx.wait(fut);
    }

    /// Janus's checks of `call`, in its order; the ones after the callee's busy check need
    /// the callee actor and run asynchronously.
    fn call(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: String,
        body: JsonMap,
        jsep: Option<JsonMap>,
        reply_to: ReplyTo,
    ) {
        let offer = jsep
            .as_ref()
            .is_some_and(|j| j.get("sdp").and_then(Value::as_str).is_some());
        let refuse = |act: &Self, e: VcError| {
            act.reply(&transaction, &reply_to, Outcome::Error(e));
            if offer {
                act.close_pc();
            }
        };
        let Some(me) = self.username.clone() else {
            return refuse(self, VcError::register_first());
        };
        if self.call.is_some() {
            return refuse(self, VcError::already_in_call());
        }
        let callee = match errors::required_string(&body, "username") {
            Ok(u) => u.to_owned(),
            Err(e) => return refuse(self, e),
        };
        if callee == me {
            return refuse(self, VcError::use_echo_test());
        }
        let local = self.directory.lock().lookup(&callee);
        let peer = match local {
            Some((_, addr)) => Some(Peer::Local(addr)),
            None => self.remote.clone().and_then(|remote| {
                let proxy = remote.remote_user(&callee)?;
                Some(Peer::Remote { remote, proxy })
            }),
        };
        let call = Outgoing {
            transaction,
            body,
            jsep,
            reply_to,
            offer,
        };
        let Some(peer) = peer else {
            let Some(remote) = self.remote.clone() else {
                return self.refuse_call(&call, VcError::no_such_username(&callee));
            };
            // Not in this proxy's view (yet): Redis itself says whether someone has it.
            self.busy = true;
            let lookup = self.state.store.lookup_user(remote::TOPIC, &callee);
            let fut = lookup
                .into_actor(self)
                .map(move |owner, act: &mut Self, ctx| {
                    act.busy = false;
                    match owner {
                        Some(proxy) => {
                            let peer = Peer::Remote { remote, proxy };
                            act.call_peer(ctx, call, me, callee, peer);
                        }
                        None => act.refuse_call(&call, VcError::no_such_username(&callee)),
                    }
                    act.drain(ctx);
                });
            ctx.spawn(fut);
            return;
        };
        self.call_peer(ctx, call, me, callee, peer);
    }

    /// Answers a `call` with an error; Janus also closes the PeerConnection of one that
    /// carried an offer.
    fn refuse_call(&self, call: &Outgoing, e: VcError) {
        self.reply(&call.transaction, &call.reply_to, Outcome::Error(e));
        if call.offer {
            self.close_pc();
        }
    }

    /// `call` to a known `peer`: its busy check, then (with an offer) a server for the call
    /// and the callee rung.
    fn call_peer(
        &mut self,
        ctx: &mut Context<Self>,
        call: Outgoing,
        me: String,
        callee: String,
        peer: Peer,
    ) {
        let Outgoing {
            transaction,
            body,
            jsep,
            reply_to,
            offer,
        } = call;
        self.busy = true;
        let Some(jsep) = jsep.filter(|_| offer) else {
            // No SDP: "User busy" still wins over "Missing SDP".
            let fut = peer.is_busy(callee.clone()).into_actor(self).map(
                move |busy, act: &mut Self, ctx: &mut Context<Self>| {
                    let outcome = match busy {
                        Ok(true) => Outcome::Result(act.hangup_result(Some(&me), "User busy")),
                        Ok(false) => Outcome::Error(VcError::missing_sdp()),
                        Err(_) => Outcome::Error(VcError::no_such_username(&callee)),
                    };
                    act.reply(&transaction, &reply_to, outcome);
                    act.busy = false;
                    act.drain(ctx);
                },
            );
            ctx.spawn(fut);
            return;
        };
        // Random: call ids travel between proxies (see `remote`).
        let call_id = rand::random::<u64>();
        // Reserved now, so that a call to this user while we set up finds it busy.
        self.call = Some(Call {
            id: call_id,
            role: Role::Caller,
            peer: peer.clone(),
            peer_username: callee.clone(),
            live: false,
            peer_ready: false,
            server: String::new(),
        });
        self.outgoing = Some(OutgoingCall {
            transaction,
            body,
            jsep,
            reply_to,
        });
        let registry = self.state.registry.clone();
        let select = SelectServer {
            package: PACKAGE.to_owned(),
            avoid: Vec::new(),
        };
        let fut = async move { registry.send(select).await }
            .into_actor(self)
            .map(move |placement, act: &mut Self, ctx: &mut Context<Self>| {
                if act.call.as_ref().map(|c| c.id) != Some(call_id) {
                    // Ended meanwhile (the handle left).
                    if let Ok(Ok(p)) = placement {
                        BackendLeg::new(p).end_placement(&act.state.servers.ended);
                    }
                    return;
                }
                let placement = match placement {
                    Ok(Ok(p)) => p,
                    Ok(Err(e)) => return act.fail_outgoing(ctx, &e.to_string()),
                    Err(_) => return act.fail_outgoing(ctx, "the proxy is shutting down"),
                };
                act.ring(ctx, call_id, peer, me, placement);
            });
        ctx.spawn(fut);
    }

    /// Asks the callee to join the call on the chosen server.
    fn ring(
        &mut self,
        ctx: &mut Context<Self>,
        call_id: u64,
        peer: Peer,
        me: String,
        placement: Placement,
    ) {
        let server = placement.server.clone();
        if let Some(call) = self.call.as_mut() {
            call.server = server.clone();
        }
        let callee = self
            .call
            .as_ref()
            .map(|c| c.peer_username.clone())
            .unwrap_or_default();
        let incoming = IncomingCall {
            call: call_id,
            caller: Peer::Local(ctx.address()),
            caller_username: me.clone(),
            server,
        };
        let fut = peer
            .ring(incoming, callee, ctx.address())
            .into_actor(self)
            .map(move |ringing, act: &mut Self, ctx: &mut Context<Self>| {
                let still_ours = act.call.as_ref().map(|c| c.id) == Some(call_id);
                match ringing {
                    Ok(Ringing::Yes) if still_ours => act.use_leg(ctx, placement),
                    Ok(Ringing::Yes) => {
                        // We left meanwhile: `PeerLeft` already told the callee.
                        BackendLeg::new(placement).end_placement(&act.state.servers.ended);
                    }
                    Ok(Ringing::Busy) | Err(_) => {
                        BackendLeg::new(placement).end_placement(&act.state.servers.ended);
                        if !still_ours {
                            return;
                        }
                        let outcome = match ringing {
                            Ok(_) => Outcome::Result(act.hangup_result(Some(&me), "User busy")),
                            Err(_) => {
                                let callee = act
                                    .call
                                    .as_ref()
                                    .map(|c| c.peer_username.clone())
                                    .unwrap_or_default();
                                Outcome::Error(VcError::no_such_username(&callee))
                            }
                        };
                        act.call = None;
                        act.finish_outgoing(ctx, outcome, true);
                    }
                }
            });
        ctx.spawn(fut);
    }

    /// Answers the held `call` request itself (refused or failed) and takes the next one.
    fn finish_outgoing(&mut self, ctx: &mut Context<Self>, outcome: Outcome, close_pc: bool) {
        if let Some(out) = self.outgoing.take() {
            self.reply(&out.transaction, &out.reply_to, outcome);
            if close_pc {
                self.close_pc();
            }
        }
        self.trickles.clear();
        self.busy = false;
        self.drain(ctx);
    }

    /// The caller's setup failed: the callee is let go, the client gets an error.
    fn fail_outgoing(&mut self, ctx: &mut Context<Self>, why: &str) {
        if let Some(call) = self.call.take() {
            call.peer.left(call.id, LeftCause::Failed(why.to_owned()));
        }
        self.linger(ctx);
        let err = VcError::new(errors::UNKNOWN_ERROR, why);
        self.finish_outgoing(ctx, Outcome::Error(err), true);
    }

    /// Opens (or reuses) this handle's leg on the server of the call.
    fn use_leg(&mut self, ctx: &mut Context<Self>, placement: Placement) {
        log::debug!(
            "videocall {}: leg on {} (current: {:?})",
            self.handle_id,
            placement.server,
            self.leg
                .as_ref()
                .map(|l| (&l.backend.server, l.phase, l.lingering, l.backend.handle))
        );
        if let Some(leg) = self.leg.as_mut() {
            if leg.backend.server == placement.server && leg.backend.handle.is_some() {
                // Same server: the lingering leg is registered there already.
                leg.lingering = false;
                BackendLeg::new(placement).end_placement(&self.state.servers.ended);
                if leg.phase == LegPhase::Ready {
                    if !self.pending_set.is_empty() {
                        let mut body = std::mem::take(&mut self.pending_set);
                        body.insert("request".into(), "set".into());
                        leg.backend.send(
                            Self::message_request(body, None),
                            None,
                            None::<crate::messages::ReplyRoute>,
                        );
                    }
                    self.leg_ready(ctx);
                }
                return;
            }
        }
        self.release_leg();
        let id = self.next_leg;
        self.next_leg += 1;
        let forwarder = LegForwarder::start_for(id, ctx.address().recipient());
        let backend = BackendLeg::new(placement);
        backend.attach(PACKAGE, self.opaque_id.as_deref(), forwarder.clone());
        self.leg = Some(Leg {
            id,
            backend,
            forwarder,
            phase: LegPhase::Attaching,
            lingering: false,
        });
    }

    fn release_leg(&mut self) {
        if let Some(mut leg) = self.leg.take() {
            leg.backend.release();
            leg.backend.end_placement(&self.state.servers.ended);
        }
    }

    /// The call is over for this handle: its leg lingers, then goes.
    fn linger(&mut self, ctx: &mut Context<Self>) {
        self.pending_set.clear();
        self.trickles.clear();
        self.call_transaction = None;
        let Some(leg) = self.leg.as_mut() else {
            return;
        };
        leg.lingering = true;
        let id = leg.id;
        ctx.run_later(LEG_LINGER, move |act, _| {
            let still = act.leg.as_ref().is_some_and(|l| l.id == id && l.lingering);
            if still && act.call.is_none() {
                act.release_leg();
            }
        });
    }

    /// This handle's leg is attached and registered.
    fn leg_ready(&mut self, ctx: &mut Context<Self>) {
        log::debug!(
            "videocall {}: leg ready (call {:?})",
            self.handle_id,
            self.call.as_ref().map(|c| (c.id, c.role, c.peer_ready))
        );
        let Some(call) = self.call.as_mut() else {
            // The call ended while the leg was being set up.
            self.linger(ctx);
            return;
        };
        match call.role {
            Role::Callee => call.peer.leg_ready(call.id),
            Role::Caller if call.peer_ready => self.place_call(ctx),
            Role::Caller => {}
        }
    }

    /// Both legs are ready: the caller's `call` goes to the backend.
    fn place_call(&mut self, ctx: &mut Context<Self>) {
        let (Some(out), Some(leg), Some(call)) =
            (self.outgoing.take(), self.leg.as_ref(), self.call.as_mut())
        else {
            return;
        };
        call.live = true;
        self.call_transaction = Some(out.transaction.clone());
        let req = Self::message_request(out.body, Some(out.jsep));
        let route = (leg.forwarder.clone(), Some(out.reply_to));
        leg.backend.send(req, Some(out.transaction), Some(route));
        self.flush_trickles();
        self.busy = false;
        self.drain(ctx);
    }

    fn trickle_request(trickle: Trickle) -> JsonMap {
        let mut req = request("trickle");
        match trickle {
            Trickle::Candidate(c) => req.insert("candidate".into(), c),
            Trickle::Candidates(c) => req.insert("candidates".into(), c),
        };
        req
    }

    fn flush_trickles(&mut self) {
        let Some(leg) = self.leg.as_ref() else {
            return;
        };
        for trickle in std::mem::take(&mut self.trickles) {
            leg.backend.send(
                Self::trickle_request(trickle),
                None,
                None::<crate::messages::ReplyRoute>,
            );
        }
    }

    fn on_trickle(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: String,
        trickle: Trickle,
        reply_to: ReplyTo,
    ) {
        if let Some(leg) = self.live_leg() {
            let req = Self::trickle_request(trickle);
            self.forward(ctx, leg, req, transaction, reply_to);
            return;
        }
        // Janus acks a trickle it cannot use yet and keeps it: so does the proxy, until the
        // call's offer or answer went to the backend (then in order, before later ones).
        self.ack(&transaction, &reply_to);
        if self.call.is_some() {
            self.trickles.push(trickle);
        }
    }

    fn on_core_hangup(&mut self, ctx: &mut Context<Self>, transaction: String, reply_to: ReplyTo) {
        match self.leg.as_ref() {
            Some(leg) => self.forward(ctx, leg, request("hangup"), transaction, reply_to),
            None => self.send_frame(
                &ServerMessage::success(self.session_id, &transaction),
                Some(&reply_to),
            ),
        }
    }

    /// The handle is going away (detach, or its session ended).
    fn leave(&mut self, ctx: &mut Context<Self>, detach: Option<(String, ReplyTo)>) {
        self.gone = true;
        if let Some(username) = self.username.take() {
            if self.directory.lock().unregister(&username, self.handle_id) {
                self.state.store.user_down(remote::TOPIC, &username);
            }
        }
        if let Some(call) = self.call.take() {
            call.peer.left(call.id, LeftCause::Gone);
        }
        // Detaching the leg makes Janus tell the peer's leg ("Remote WebRTC hangup").
        self.release_leg();
        if let Some((transaction, reply_to)) = detach {
            self.send_frame(
                &ServerMessage::success(self.session_id, &transaction),
                Some(&reply_to),
            );
            let detached = ServerMessage::detached(self.session_id, self.handle_id, None);
            self.send_frame(&detached, None);
        }
        ctx.stop();
    }

    // ---- backend news ----

    fn on_leg(&mut self, ctx: &mut Context<Self>, msg: BackendIncoming) {
        match msg {
            BackendIncoming::Reply {
                frame,
                client_transaction,
                reply_to,
                ..
            } => self.on_leg_reply(ctx, frame.into_map(), client_transaction, reply_to),
            BackendIncoming::Event { frame, .. } => self.on_leg_event(ctx, frame.into_map()),
            BackendIncoming::LinkLost { .. } => self.on_leg_lost(ctx),
        }
    }

    fn on_leg_reply(
        &mut self,
        ctx: &mut Context<Self>,
        frame: JsonMap,
        client_transaction: Option<String>,
        reply_to: Option<ReplyTo>,
    ) {
        let is_error = frame.get("janus").and_then(Value::as_str) == Some("error");
        let Some(leg) = self.leg.as_mut() else {
            return;
        };
        match (leg.phase, client_transaction) {
            (LegPhase::Attaching, _) => match leg.backend.on_attach_reply(&frame) {
                Ok(_) => {
                    leg.phase = LegPhase::Registering;
                    let username = self.username.clone().unwrap_or_default();
                    let mut body = JsonMap::new();
                    body.insert("request".into(), "register".into());
                    body.insert("username".into(), username.into());
                    let route = (leg.forwarder.clone(), None);
                    leg.backend
                        .send(Self::message_request(body, None), None, Some(route));
                }
                Err(e) => {
                    self.leg = None;
                    let why = format!("backend server could not attach: {}", e.reason);
                    self.setup_failed(ctx, &why);
                }
            },
            (_, None) => {
                // The proxy's own requests (register, a pending `set`): their `ack`s are
                // nobody's business; an error means the leg is unusable.
                if is_error && leg.phase == LegPhase::Registering {
                    let reason = janus_protocol_reason(&frame);
                    self.release_leg();
                    self.setup_failed(ctx, &format!("backend server refused: {reason}"));
                }
            }
            (_, Some(transaction)) => {
                if is_error {
                    let code = frame
                        .get("error")
                        .and_then(|e| e.get("code"))
                        .and_then(Value::as_u64)
                        .unwrap_or(490);
                    self.state.metrics.error(u16::try_from(code).unwrap_or(490));
                }
                let ids = leg.backend.ids(self.session_id, self.handle_id);
                let out = rewrite(frame, ids, Transaction::Client(Some(&transaction)));
                self.send_frame(&out, reply_to.as_ref());
                if is_error && self.call_transaction.as_deref() == Some(transaction.as_str()) {
                    // The backend refused the call (bad SDP, …): it is over for both.
                    self.end_call(
                        ctx,
                        LeftCause::Failed("the backend refused the call".into()),
                    );
                }
            }
        }
    }

    fn on_leg_event(&mut self, ctx: &mut Context<Self>, frame: JsonMap) {
        let Some(leg) = self.leg.as_mut() else {
            return;
        };
        let kind = frame.get("janus").and_then(Value::as_str).unwrap_or("");
        if kind == "detached" {
            // Janus dropped the leg on its own (the link no longer routes it).
            leg.backend.handle = None;
            self.on_leg_lost(ctx);
            return;
        }
        let transaction = frame.get("transaction").and_then(Value::as_str);
        let internal = transaction
            .and_then(split_transaction)
            .is_some_and(|(_, client)| client.is_none());
        let data = frame
            .get("plugindata")
            .and_then(|p| p.get("data"))
            .cloned()
            .unwrap_or(Value::Null);
        if internal {
            // The result of the proxy's own `register` (or pending `set`).
            if leg.phase == LegPhase::Registering {
                if data.get("error_code").is_some() {
                    let why = data
                        .get("error")
                        .and_then(Value::as_str)
                        .unwrap_or("register failed")
                        .to_owned();
                    self.release_leg();
                    self.setup_failed(ctx, &format!("backend server refused: {why}"));
                    return;
                }
                leg.phase = LegPhase::Ready;
                if !self.pending_set.is_empty() {
                    let mut body = std::mem::take(&mut self.pending_set);
                    body.insert("request".into(), "set".into());
                    leg.backend.send(
                        Self::message_request(body, None),
                        None,
                        None::<crate::messages::ReplyRoute>,
                    );
                }
                self.leg_ready(ctx);
            }
            return;
        }
        let from_call_request = self.call_transaction.is_some()
            && transaction.and_then(split_transaction).and_then(|(_, c)| c)
                == self.call_transaction.as_deref();
        let ids = leg.backend.ids(self.session_id, self.handle_id);
        let lingering = leg.lingering;
        let out = rewrite(frame, ids, Transaction::FromBackend).into_map();
        if lingering && self.call.is_some() && out.get("transaction").is_none() {
            // An old call's leg while a new call is being set up elsewhere: its teardown
            // would confuse the client's new PeerConnection.
            return;
        }
        self.send_frame(&out, None);
        let event = data
            .get("result")
            .and_then(|r| r.get("event"))
            .and_then(Value::as_str);
        match event {
            Some("incomingcall") => {
                if let Some(call) = self.call.as_mut().filter(|c| c.role == Role::Callee) {
                    call.live = true;
                    self.flush_trickles();
                }
            }
            Some("hangup") => self.end_call(ctx, LeftCause::Ended),
            _ if from_call_request && data.get("error_code").is_some() => self.end_call(
                ctx,
                LeftCause::Failed("the backend refused the call".into()),
            ),
            _ => {}
        }
    }

    /// The backend ended the call (or refused it): the peer is told, in case its own leg does
    /// not hear it from Janus, and this leg lingers.
    fn end_call(&mut self, ctx: &mut Context<Self>, cause: LeftCause) {
        if let Some(call) = self.call.take() {
            call.peer.left(call.id, cause);
        }
        self.linger(ctx);
    }

    /// A leg could not be set up.
    fn setup_failed(&mut self, ctx: &mut Context<Self>, why: &str) {
        let Some(call) = self.call.as_ref() else {
            return;
        };
        match call.role {
            Role::Caller => self.fail_outgoing(ctx, why),
            Role::Callee => {
                if let Some(call) = self.call.take() {
                    call.peer.left(call.id, LeftCause::Failed(why.to_owned()));
                }
                self.linger(ctx);
            }
        }
    }

    /// The backend server of this handle's leg is gone.
    fn on_leg_lost(&mut self, ctx: &mut Context<Self>) {
        if let Some(mut leg) = self.leg.take() {
            leg.backend.forget();
            leg.backend.end_placement(&self.state.servers.ended);
        }
        if let Some(call) = self.call.as_ref() {
            call.peer.left(call.id, LeftCause::BackendLost);
        }
        self.backend_lost(ctx);
    }

    /// Ends the call because its backend went away, telling the client as the backend can't.
    fn backend_lost(&mut self, ctx: &mut Context<Self>) {
        let Some(call) = self.call.take() else {
            return;
        };
        if call.role == Role::Caller && self.outgoing.is_some() {
            let why = format!("backend server {} unavailable", call.server);
            self.linger(ctx);
            let err = VcError::new(errors::UNKNOWN_ERROR, why);
            self.finish_outgoing(ctx, Outcome::Error(err), true);
            return;
        }
        if call.live {
            let result = self.hangup_result(Some(&call.peer_username), BACKEND_LOST_REASON);
            self.event(None, json!({"videocall": "event", "result": result}), None);
            let frame =
                ServerMessage::hangup(self.session_id, self.handle_id, None, BACKEND_LOST_REASON);
            self.send_frame(&frame, None);
        }
        self.linger(ctx);
    }
}

fn janus_protocol_reason(frame: &JsonMap) -> String {
    crate::plugin::backend_handle::api_error_of(frame).reason
}

impl Actor for VideoCallHandle {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        // Also reached when the system shuts down.
        if let Some(username) = self.username.take() {
            if self.directory.lock().unregister(&username, self.handle_id) {
                self.state.store.user_down(remote::TOPIC, &username);
            }
        }
        if let Some(call) = self.call.take() {
            call.peer.left(call.id, LeftCause::Gone);
        }
        self.release_leg();
    }
}

impl Handler<HandleCommand> for VideoCallHandle {
    type Result = ();

    fn handle(&mut self, cmd: HandleCommand, ctx: &mut Context<Self>) {
        if self.gone {
            return;
        }
        match cmd {
            HandleCommand::Trickle {
                transaction,
                trickle,
                reply_to,
            } => self.on_trickle(ctx, transaction, trickle, reply_to),
            HandleCommand::Detach {
                transaction,
                reply_to,
            } => self.leave(ctx, Some((transaction, reply_to))),
            HandleCommand::SessionClosing => self.leave(ctx, None),
            cmd => self.enqueue(ctx, cmd),
        }
    }
}

impl Handler<LegIncoming> for VideoCallHandle {
    type Result = ();

    fn handle(&mut self, msg: LegIncoming, ctx: &mut Context<Self>) {
        if self.gone || self.leg.as_ref().map(|l| l.id) != Some(msg.leg) {
            // A leg this handle already let go of.
            return;
        }
        self.on_leg(ctx, msg.msg);
    }
}

impl Handler<IsBusy> for VideoCallHandle {
    type Result = bool;

    fn handle(&mut self, _: IsBusy, _: &mut Context<Self>) -> bool {
        self.call.is_some()
    }
}

impl Handler<IncomingCall> for VideoCallHandle {
    type Result = Ringing;

    fn handle(&mut self, msg: IncomingCall, ctx: &mut Context<Self>) -> Ringing {
        if self.gone || self.call.is_some() || self.username.is_none() {
            return Ringing::Busy;
        }
        self.call = Some(Call {
            id: msg.call,
            role: Role::Callee,
            peer: msg.caller,
            peer_username: msg.caller_username,
            live: false,
            peer_ready: false,
            server: msg.server.clone(),
        });
        let call_id = msg.call;
        let place = self.state.registry.send(PlaceOn { server: msg.server });
        let fut = place.into_actor(self).map(move |placement, act, ctx| {
            let still_ours = act.call.as_ref().map(|c| c.id) == Some(call_id);
            match (placement, still_ours) {
                (Ok(Some(p)), true) => act.use_leg(ctx, p),
                (Ok(Some(p)), false) => BackendLeg::new(p).end_placement(&act.state.servers.ended),
                (_, true) => act.setup_failed(ctx, "the call's backend server is gone"),
                (_, false) => {}
            }
        });
        ctx.spawn(fut);
        Ringing::Yes
    }
}

impl Handler<PeerLegReady> for VideoCallHandle {
    type Result = ();

    fn handle(&mut self, msg: PeerLegReady, ctx: &mut Context<Self>) {
        let Some(call) = self.call.as_mut().filter(|c| c.id == msg.call) else {
            return;
        };
        call.peer_ready = true;
        if self
            .leg
            .as_ref()
            .is_some_and(|l| l.phase == LegPhase::Ready && !l.lingering)
        {
            self.place_call(ctx);
        }
    }
}

impl Handler<PeerLeft> for VideoCallHandle {
    type Result = ();

    fn handle(&mut self, msg: PeerLeft, ctx: &mut Context<Self>) {
        let Some(call) = self.call.as_ref().filter(|c| c.id == msg.call) else {
            return;
        };
        let setting_up = call.role == Role::Caller && self.outgoing.is_some();
        match msg.cause {
            LeftCause::BackendLost => {
                // Our leg is on the same server: let it go now rather than wait for the link.
                if let Some(mut leg) = self.leg.take() {
                    leg.backend.release();
                    leg.backend.end_placement(&self.state.servers.ended);
                }
                self.backend_lost(ctx);
            }
            LeftCause::ProxyGone if call.live => {
                // The peer's leg may live on in Janus for a long while (until its session times
                // out): this side ends the call now, as Janus would on the peer's hangup.
                let peer = call.peer_username.clone();
                if let Some(leg) = self.leg.as_ref() {
                    let mut body = JsonMap::new();
                    body.insert("request".into(), "hangup".into());
                    leg.backend.send(
                        Self::message_request(body, None),
                        None,
                        None::<crate::messages::ReplyRoute>,
                    );
                }
                self.call = None;
                let result = self.hangup_result(Some(&peer), PEER_PROXY_GONE_REASON);
                self.event(None, json!({"videocall": "event", "result": result}), None);
                self.linger(ctx);
            }
            cause if setting_up => {
                let why = match cause {
                    LeftCause::Failed(why) => why,
                    _ => String::new(),
                };
                let callee = call.peer_username.clone();
                self.call = None;
                self.linger(ctx);
                let err = if why.is_empty() {
                    VcError::no_such_username(&callee)
                } else {
                    VcError::new(errors::UNKNOWN_ERROR, why)
                };
                self.finish_outgoing(ctx, Outcome::Error(err), true);
            }
            _ => {
                // Live: the backend tells this side itself (it bridges both legs). Setting
                // up as callee: the client never heard of the call.
                self.call = None;
                self.linger(ctx);
            }
        }
    }
}
