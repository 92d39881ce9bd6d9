//! `P2pCallHandle`: one actor per p2pcall handle. It answers the client's requests and talks to
//! the peer's handle actor with one message per intent ([`IncomingCall`], [`CallAccepted`],
//! [`PeerTrickle`], [`PeerUpdate`], [`PeerHangup`]). Every peer message carries its call id:
//! a message about a call that is already over on this side is dropped.
//!
//! Ordering: every change of the shared directory and the peer message it implies happen under
//! the directory lock, so a peer never sees a new call before the hangup of the previous one.
//!
//! A peer on another proxy ([`Peer::Remote`]) gets the same intents over the bus (see
//! [`super::remote`]), and its proxy hands them to its handle as these same messages.
//! Registering (with a shared store) and calling a user of another proxy wait for Redis / the
//! other proxy with `ctx.wait`: the handle takes its next request only after, as Janus's
//! plugin handles one request of a handle at a time.

use std::collections::VecDeque;
use std::sync::Arc;

use actix::prelude::*;
use janus_protocol::frames::{HandleNotice, PluginData, PluginEvent, TrickleEvent};
use janus_protocol::{JsonMap, ServerMessage, Trickle};
use serde_json::{json, Value};

use super::directory::{CallRefused, Ended, Reach};
use super::remote::{self, CallAnswer, P2pRemote};
use super::{
    check_set, hangup_reason, has_sdp, username, verb, PluginError, Shared, Verb,
    ERROR_ALREADY_IN_CALL, ERROR_ALREADY_REGISTERED, ERROR_MISSING_SDP, ERROR_NO_CALL,
    ERROR_NO_SUCH_USERNAME, ERROR_REGISTER_FIRST, ERROR_USERNAME_TAKEN, ERROR_USE_ECHO_TEST,
    PACKAGE,
};
use crate::plugin::{AttachContext, HandleCommand};
use crate::session::{ClientSession, Deliver};
use crate::state::ProxyState;
use crate::store::Claim;
use crate::transport::{ClientFrame, ReplyTo};

/// Reasons the peer reads in its `hangup` event when the call ends without a `hangup` message.
pub const REASON_WEBRTC_HANGUP: &str = "Remote WebRTC hangup";
pub const REASON_DETACHED: &str = "Remote handle detached";
pub const REASON_SESSION_CLOSED: &str = "Remote session closed";
pub const REASON_EXPLICIT: &str = "Explicit hangup";
pub const REASON_BUSY: &str = "User busy";

/// Candidates a handle keeps while its call is not established. A client trickles a few dozen
/// at most; the bound only protects the proxy from a client that trickles without ever calling.
const MAX_PENDING_CANDIDATES: usize = 512;

/// The other side of a call: a handle of this proxy, or a user of another one.
#[derive(Clone)]
pub enum Peer {
    Local(Addr<P2pCallHandle>),
    Remote {
        remote: Arc<P2pRemote>,
        proxy: String,
        username: String,
    },
}

impl Peer {
    fn accepted(&self, call_id: u64, callee: &str, jsep: JsonMap) {
        match self {
            Peer::Local(addr) => addr.do_send(CallAccepted {
                call_id,
                callee: callee.to_owned(),
                jsep,
            }),
            Peer::Remote {
                remote,
                proxy,
                username,
            } => remote.accepted(proxy, username, call_id, callee, jsep),
        }
    }

    fn trickle(&self, call_id: u64, candidate: Value) {
        match self {
            Peer::Local(addr) => addr.do_send(PeerTrickle { call_id, candidate }),
            Peer::Remote {
                remote,
                proxy,
                username,
            } => remote.trickle(proxy, username, call_id, candidate),
        }
    }

    fn update(&self, call_id: u64, jsep: JsonMap) {
        match self {
            Peer::Local(addr) => addr.do_send(PeerUpdate { call_id, jsep }),
            Peer::Remote {
                remote,
                proxy,
                username,
            } => remote.update(proxy, username, call_id, jsep),
        }
    }
}

/// The caller's offer reaches the callee.
#[derive(Message)]
#[rtype(result = "()")]
pub struct IncomingCall {
    pub call_id: u64,
    pub caller: String,
    pub peer: Peer,
    pub jsep: JsonMap,
}

/// The callee's answer reaches the caller.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CallAccepted {
    pub call_id: u64,
    pub callee: String,
    pub jsep: JsonMap,
}

/// One ICE candidate (or `{"completed": true}`) for the peer's client.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PeerTrickle {
    pub call_id: u64,
    pub candidate: Value,
}

/// A renegotiation offer or answer (`set` with a jsep).
#[derive(Message)]
#[rtype(result = "()")]
pub struct PeerUpdate {
    pub call_id: u64,
    pub jsep: JsonMap,
}

/// The call is over; the directory has already freed both sides.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PeerHangup {
    pub call_id: u64,
    pub username: String,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// We called; waiting for the answer.
    Calling,
    /// We were called; the client has the offer and may accept.
    Ringing,
    /// The answer was relayed: candidates flow, `set` re-offers reach the peer.
    Established,
}

struct Call {
    id: u64,
    peer: Peer,
    phase: Phase,
}

pub struct P2pCallHandle {
    shared: Arc<Shared>,
    /// Proxy-wide key of this handle in the directory.
    key: u64,
    state: Arc<ProxyState>,
    session: Addr<ClientSession>,
    session_id: u64,
    handle_id: u64,
    opaque_id: Option<String>,
    username: Option<String>,
    call: Option<Call>,
    /// The client's candidates, in order, until the call is established.
    pending: VecDeque<Value>,
}

impl P2pCallHandle {
    pub fn new(shared: Arc<Shared>, key: u64, ctx: AttachContext) -> Self {
        P2pCallHandle {
            shared,
            key,
            state: ctx.state,
            session: ctx.session,
            session_id: ctx.session_id,
            handle_id: ctx.handle_id,
            opaque_id: ctx.opaque_id,
            username: None,
            call: None,
            pending: VecDeque::new(),
        }
    }

    fn reply(&self, reply_to: &ReplyTo, frame: &ServerMessage) {
        reply_to.do_send(ClientFrame(self.state.encode(frame)));
    }

    /// Events go to whoever owns the session now, as Janus pushes them to the session.
    fn deliver(&self, frame: &ServerMessage) {
        self.session.do_send(Deliver(self.state.encode(frame)));
    }

    fn plugin_event(&self, transaction: Option<&str>, data: Value, jsep: Option<JsonMap>) {
        self.deliver(&ServerMessage::Event(PluginEvent {
            session_id: self.session_id,
            transaction: transaction.map(str::to_owned),
            sender: self.handle_id,
            opaque_id: self.opaque_id.clone(),
            plugindata: PluginData {
                plugin: PACKAGE.to_owned(),
                data,
            },
            jsep: jsep.map(Value::Object),
            extra: JsonMap::new(),
        }));
    }

    fn result(&self, transaction: Option<&str>, result: Value, jsep: Option<JsonMap>) {
        let data = json!({"videocall": "event", "result": result});
        self.plugin_event(transaction, data, jsep);
    }

    fn error(&self, transaction: &str, err: PluginError) {
        let data = json!({"videocall": "event", "error_code": err.code, "error": err.reason});
        self.plugin_event(Some(transaction), data, None);
    }

    fn webrtcup(&self) {
        self.deliver(&ServerMessage::Webrtcup(HandleNotice {
            session_id: self.session_id,
            sender: self.handle_id,
            opaque_id: self.opaque_id.clone(),
            extra: JsonMap::new(),
        }));
    }

    fn trickle_event(&self, candidate: Value) {
        self.deliver(&ServerMessage::Trickle(TrickleEvent {
            session_id: self.session_id,
            sender: self.handle_id,
            candidate,
            extra: JsonMap::new(),
        }));
    }

    /// Ends our call, if any: frees both sides in the directory and tells the peer, with
    /// `reason`. Local state is reset; the client is not told (the caller of this decides).
    fn end_call(&mut self, reason: &str) {
        self.pending.clear();
        let (Some(call), Some(name)) = (self.call.take(), self.username.as_deref()) else {
            return;
        };
        let remote = self.shared.remote();
        let mut directory = self.shared.directory.lock();
        if let Some(ended) = directory.hang_up(name, call.id) {
            tell_hangup(ended, name, reason, remote.as_deref());
        }
    }

    /// Ends the call and frees the username (detach, session gone, actor stopped).
    fn unregister(&mut self, reason: &str) {
        self.pending.clear();
        self.call = None;
        let Some(name) = self.username.take() else {
            return;
        };
        let remote = self.shared.remote();
        let mut directory = self.shared.directory.lock();
        if let Some(ended) = directory.unregister(&name, self.key) {
            tell_hangup(ended, &name, reason, remote.as_deref());
        }
        drop(directory);
        self.state.store.user_down(remote::TOPIC, &name);
    }

    fn on_message(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: &str,
        body: JsonMap,
        jsep: Option<JsonMap>,
    ) {
        // Ok(None): answered later (the request waits for Redis or another proxy).
        let outcome = match verb(&body) {
            Ok(Verb::List) => {
                let mut list = self.shared.directory.lock().list();
                if let Some(remote) = self.shared.remote() {
                    list.extend(remote.remote_users());
                    list.sort();
                    list.dedup();
                }
                Ok(Some(json!({ "list": list })))
            }
            Ok(Verb::Register) => self.register(ctx, transaction, &body),
            Ok(Verb::Call) => self.place_call(ctx, transaction, &body, jsep),
            Ok(Verb::Accept) => self.accept(jsep).map(Some),
            Ok(Verb::Set) => self.set(&body, jsep).map(Some),
            Ok(Verb::Hangup) => {
                let reason = hangup_reason(&body);
                self.end_call(&reason);
                Ok(Some(json!({"event": "hangup", "username": self.username,
                    "reason": REASON_EXPLICIT})))
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(Some(result)) => self.result(Some(transaction), result, None),
            Ok(None) => {}
            Err(e) => self.error(transaction, e),
        }
        if self.call.as_ref().map(|c| c.phase) == Some(Phase::Established) {
            self.flush_pending();
        }
    }

    /// Registers the name here, then (with a shared store) claims it in Redis: of two
    /// proxies registering one name at once, exactly one wins.
    fn register(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: &str,
        body: &JsonMap,
    ) -> Result<Option<Value>, PluginError> {
        if let Some(name) = &self.username {
            return Err(PluginError::new(
                ERROR_ALREADY_REGISTERED,
                format!("Already registered ({name})"),
            ));
        }
        let name = username(body)?;
        let taken = || {
            PluginError::new(
                ERROR_USERNAME_TAKEN,
                format!("Username '{name}' already taken"),
            )
        };
        // Redis away: the last view of the other proxies' users is the best there is.
        let remote = self.shared.remote();
        if self.state.store.is_degraded() && remote.is_some_and(|r| r.remote_user(&name).is_some())
        {
            return Err(taken());
        }
        let reserved = self
            .shared
            .directory
            .lock()
            .register(&name, self.key, ctx.address())
            .is_ok();
        if !reserved {
            return Err(taken());
        }
        if !self.state.store.is_shared() {
            self.username = Some(name.clone());
            return Ok(Some(json!({"event": "registered", "username": name})));
        }
        let transaction = transaction.to_owned();
        let claim = self.state.store.claim_user(remote::TOPIC, &name);
        let fut = claim.into_actor(self).map(move |claim, act: &mut Self, _| {
            if claim == Claim::Taken {
                // Reserved for the claim's duration only: a call that reached the name
                // meanwhile ends (its IncomingCall is ignored, we are not registered).
                let remote = act.shared.remote();
                let ended = act.shared.directory.lock().unregister(&name, act.key);
                if let Some(ended) = ended {
                    tell_hangup(ended, &name, REASON_DETACHED, remote.as_deref());
                }
                let err = PluginError::new(
                    ERROR_USERNAME_TAKEN,
                    format!("Username '{name}' already taken"),
                );
                return act.error(&transaction, err);
            }
            act.username = Some(name.clone());
            let result = json!({"event": "registered", "username": name});
            act.result(Some(&transaction), result, None);
        });
        ctx.wait(fut);
        Ok(None)
    }

    fn place_call(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: &str,
        body: &JsonMap,
        jsep: Option<JsonMap>,
    ) -> Result<Option<Value>, PluginError> {
        let Some(me) = self.username.clone() else {
            return Err(PluginError::new(
                ERROR_REGISTER_FIRST,
                "Register a username first",
            ));
        };
        if self.call.is_some() {
            return Err(PluginError::new(ERROR_ALREADY_IN_CALL, "Already in a call"));
        }
        let callee = username(body)?;
        let mut directory = self.shared.directory.lock();
        // Janus checks the SDP only once the callee is known to be free: pair, check, undo.
        let (call_id, callee_addr) = match directory.call(&me, &callee) {
            Ok(paired) => paired,
            Err(CallRefused::NoSuchUser) if self.shared.remote().is_some() => {
                drop(directory);
                return self.place_remote_call(ctx, transaction, me, callee, jsep);
            }
            Err(refused) => {
                drop(directory);
                return match refused {
                    CallRefused::Busy => Ok(Some(json!({"event": "hangup", "username": me,
                        "reason": REASON_BUSY}))),
                    CallRefused::AlreadyInCall => {
                        Err(PluginError::new(ERROR_ALREADY_IN_CALL, "Already in a call"))
                    }
                    CallRefused::Yourself => Err(PluginError::new(
                        ERROR_USE_ECHO_TEST,
                        "You can't call yourself... use the EchoTest for that",
                    )),
                    CallRefused::NoSuchUser => Err(PluginError::new(
                        ERROR_NO_SUCH_USERNAME,
                        format!("Username '{callee}' doesn't exist"),
                    )),
                    // Our own registration is gone: only possible while the handle ends.
                    CallRefused::NotRegistered => Err(PluginError::new(
                        ERROR_REGISTER_FIRST,
                        "Register a username first",
                    )),
                };
            }
        };
        let Some(jsep) = jsep.filter(|j| has_sdp(Some(j))) else {
            // Nobody has been told yet: undo the pairing silently.
            directory.hang_up(&me, call_id);
            return Err(PluginError::new(ERROR_MISSING_SDP, "Missing SDP"));
        };
        callee_addr.do_send(IncomingCall {
            call_id,
            caller: me,
            peer: Peer::Local(ctx.address()),
            jsep,
        });
        drop(directory);
        self.call = Some(Call {
            id: call_id,
            peer: Peer::Local(callee_addr),
            phase: Phase::Calling,
        });
        Ok(Some(json!({"event": "calling"})))
    }

    /// A call to a user of another proxy: our side is paired here, the callee's proxy checks
    /// and rings the callee, and answers (at most [`crate::store::bus::REQUEST_TIMEOUT`]).
    fn place_remote_call(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: &str,
        me: String,
        callee: String,
        jsep: Option<JsonMap>,
    ) -> Result<Option<Value>, PluginError> {
        let no_such_user = |callee: &str| {
            PluginError::new(
                ERROR_NO_SUCH_USERNAME,
                format!("Username '{callee}' doesn't exist"),
            )
        };
        let Some(remote) = self.shared.remote() else {
            return Err(no_such_user(&callee));
        };
        let Some(proxy) = remote.remote_user(&callee) else {
            if self.state.store.is_degraded() {
                return Err(no_such_user(&callee));
            }
            // Not in this proxy's view (yet): Redis itself says whether someone has it.
            let lookup = self.state.store.lookup_user(remote::TOPIC, &callee);
            let transaction = transaction.to_owned();
            let fut = lookup
                .into_actor(self)
                .map(move |owner, act: &mut Self, ctx| {
                    let outcome = match owner {
                        Some(proxy) => {
                            act.call_on_proxy(ctx, &transaction, me, callee, jsep, remote, proxy)
                        }
                        None => Err(no_such_user(&callee)),
                    };
                    match outcome {
                        Ok(Some(result)) => act.result(Some(&transaction), result, None),
                        Ok(None) => {}
                        Err(e) => act.error(&transaction, e),
                    }
                });
            ctx.wait(fut);
            return Ok(None);
        };
        self.call_on_proxy(ctx, transaction, me, callee, jsep, remote, proxy)
    }

    /// [`Self::place_remote_call`] to the user `callee` of `proxy`.
    #[allow(clippy::too_many_arguments)]
    fn call_on_proxy(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: &str,
        me: String,
        callee: String,
        jsep: Option<JsonMap>,
        remote: Arc<P2pRemote>,
        proxy: String,
    ) -> Result<Option<Value>, PluginError> {
        if self.state.store.is_degraded() {
            // The other proxies cannot be reached: say so rather than time out.
            return Err(PluginError::new(
                ERROR_NO_SUCH_USERNAME,
                format!("Username '{callee}' unreachable (the shared store is unavailable)"),
            ));
        }
        let offer = jsep.filter(|j| has_sdp(Some(j)));
        let call_id = match &offer {
            // Janus checks the SDP only once the callee is known to be free: ask first.
            None => 0,
            Some(_) => {
                let paired = self
                    .shared
                    .directory
                    .lock()
                    .call_remote(&me, &callee, &proxy);
                match paired {
                    Ok(call_id) => call_id,
                    Err(CallRefused::AlreadyInCall) => {
                        return Err(PluginError::new(ERROR_ALREADY_IN_CALL, "Already in a call"))
                    }
                    Err(_) => {
                        return Err(PluginError::new(
                            ERROR_REGISTER_FIRST,
                            "Register a username first",
                        ))
                    }
                }
            }
        };
        if offer.is_some() {
            self.call = Some(Call {
                id: call_id,
                peer: Peer::Remote {
                    remote: remote.clone(),
                    proxy: proxy.clone(),
                    username: callee.clone(),
                },
                phase: Phase::Calling,
            });
        }
        let transaction = transaction.to_owned();
        let asking = remote.clone();
        let question = (proxy, callee.clone(), me.clone());
        let fut = async move {
            let (proxy, callee, me) = question;
            asking.call(&proxy, &callee, &me, call_id, offer).await
        };
        let fut = fut.into_actor(self).map(move |answer, act: &mut Self, _| {
            let outcome = match answer {
                Ok(CallAnswer::Ringing) => Ok(json!({"event": "calling"})),
                Ok(refused) => {
                    // Our side only: the callee's proxy paired nothing.
                    act.cancel_remote_call(None);
                    match refused {
                        CallAnswer::Busy => Ok(json!({"event": "hangup", "username": me,
                            "reason": REASON_BUSY})),
                        CallAnswer::Free => Err(PluginError::new(ERROR_MISSING_SDP, "Missing SDP")),
                        _ => Err(PluginError::new(
                            ERROR_NO_SUCH_USERNAME,
                            format!("Username '{callee}' doesn't exist"),
                        )),
                    }
                }
                Err(_) => {
                    // No answer in time: the callee's proxy may still ring it; it is told.
                    act.cancel_remote_call(Some(REASON_WEBRTC_HANGUP));
                    Err(PluginError::new(
                        ERROR_NO_SUCH_USERNAME,
                        format!("Username '{callee}' unreachable (its proxy did not answer)"),
                    ))
                }
            };
            match outcome {
                Ok(result) => act.result(Some(&transaction), result, None),
                Err(e) => act.error(&transaction, e),
            }
        });
        ctx.wait(fut);
        Ok(None)
    }

    /// Undoes our side of a call to another proxy that did not get through; with a reason,
    /// the callee's side is told too (it may have been rung after all).
    fn cancel_remote_call(&mut self, tell: Option<&str>) {
        let (Some(call), Some(name)) = (self.call.take(), self.username.as_deref()) else {
            return;
        };
        self.shared.directory.lock().cancel(name, call.id);
        if let (
            Some(reason),
            Peer::Remote {
                remote,
                proxy,
                username,
            },
        ) = (tell, &call.peer)
        {
            self.pending.clear();
            remote.hangup(proxy, username, call.id, name, reason);
        }
    }

    fn accept(&mut self, jsep: Option<JsonMap>) -> Result<Value, PluginError> {
        let no_call = || PluginError::new(ERROR_NO_CALL, "No incoming call to accept");
        let (Some(call), Some(me)) = (&mut self.call, &self.username) else {
            return Err(no_call());
        };
        if call.phase != Phase::Ringing {
            return Err(no_call());
        }
        let Some(jsep) = jsep.filter(|j| has_sdp(Some(j))) else {
            return Err(PluginError::new(ERROR_MISSING_SDP, "Missing SDP"));
        };
        {
            let directory = self.shared.directory.lock();
            // The caller may have hung up already; its PeerHangup is on its way to us.
            if directory.call_of(me).map(|p| p.call_id) != Some(call.id) {
                return Err(no_call());
            }
            call.peer.accepted(call.id, me, jsep);
        }
        call.phase = Phase::Established;
        // Our own result first, then webrtcup (sent by `on_message` order below).
        Ok(json!({"event": "accepted"}))
    }

    fn set(&mut self, body: &JsonMap, jsep: Option<JsonMap>) -> Result<Value, PluginError> {
        check_set(body)?;
        if let Some(jsep) = jsep {
            if !has_sdp(Some(&jsep)) {
                return Err(PluginError::new(ERROR_MISSING_SDP, "Missing SDP"));
            }
            // A re-offer (or its answer) only means something to an established call.
            if let Some(call) = self.call.as_ref().filter(|c| c.phase == Phase::Established) {
                call.peer.update(call.id, jsep);
            }
        }
        Ok(json!({"event": "set"}))
    }

    fn on_trickle(&mut self, trickle: Trickle) {
        let candidates = match trickle {
            Trickle::Candidate(c) => vec![c],
            Trickle::Candidates(Value::Array(list)) => list,
            Trickle::Candidates(other) => vec![other],
        };
        for candidate in candidates {
            if self.pending.len() == MAX_PENDING_CANDIDATES {
                self.pending.pop_front();
            }
            self.pending.push_back(candidate);
        }
        if self.call.as_ref().map(|c| c.phase) == Some(Phase::Established) {
            self.flush_pending();
        }
    }

    /// Sends the queued candidates to the peer, in order.
    fn flush_pending(&mut self) {
        let Some(call) = &self.call else {
            return;
        };
        for candidate in self.pending.drain(..) {
            call.peer.trickle(call.id, candidate);
        }
    }

    /// True when `call_id` is our current call.
    fn is_current(&self, call_id: u64) -> bool {
        self.call.as_ref().is_some_and(|c| c.id == call_id)
    }
}

/// Tells the other side of an ended call (called under the directory lock, see the module doc).
fn tell_hangup(
    ended: Ended<Addr<P2pCallHandle>>,
    me: &str,
    reason: &str,
    remote: Option<&P2pRemote>,
) {
    match ended.to {
        Reach::Local(addr) => addr.do_send(PeerHangup {
            call_id: ended.call_id,
            username: me.to_owned(),
            reason: reason.to_owned(),
        }),
        Reach::Remote(proxy) => {
            if let Some(remote) = remote {
                remote.hangup(&proxy, &ended.peer, ended.call_id, me, reason);
            }
        }
    }
}

impl Actor for P2pCallHandle {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        // Normally done already (detach, session closing); this covers a system shutdown.
        self.unregister(REASON_SESSION_CLOSED);
    }
}

impl Handler<HandleCommand> for P2pCallHandle {
    type Result = ();

    fn handle(&mut self, cmd: HandleCommand, ctx: &mut Context<Self>) {
        match cmd {
            HandleCommand::Message {
                transaction,
                body,
                jsep,
                reply_to,
            } => {
                // Every request is asynchronous, as in videocall: ack now, event later.
                self.reply(
                    &reply_to,
                    &ServerMessage::ack(self.session_id, &transaction),
                );
                let was_established =
                    self.call.as_ref().map(|c| c.phase) == Some(Phase::Established);
                self.on_message(ctx, &transaction, body, jsep);
                let established = self.call.as_ref().map(|c| c.phase) == Some(Phase::Established);
                if established && !was_established {
                    // We just accepted: the answer is on its way to the caller.
                    self.webrtcup();
                }
            }
            HandleCommand::Trickle {
                transaction,
                trickle,
                reply_to,
            } => {
                self.reply(
                    &reply_to,
                    &ServerMessage::ack(self.session_id, &transaction),
                );
                self.on_trickle(trickle);
            }
            HandleCommand::Hangup {
                transaction,
                reply_to,
            } => {
                // The client closed its PeerConnection: the call is over for the peer too.
                self.end_call(REASON_WEBRTC_HANGUP);
                self.reply(
                    &reply_to,
                    &ServerMessage::success(self.session_id, &transaction),
                );
            }
            HandleCommand::Detach {
                transaction,
                reply_to,
            } => {
                self.unregister(REASON_DETACHED);
                self.reply(
                    &reply_to,
                    &ServerMessage::success(self.session_id, &transaction),
                );
                self.deliver(&ServerMessage::detached(
                    self.session_id,
                    self.handle_id,
                    self.opaque_id.clone(),
                ));
                ctx.stop();
            }
            HandleCommand::SessionClosing => {
                self.unregister(REASON_SESSION_CLOSED);
                ctx.stop();
            }
        }
    }
}

impl Handler<IncomingCall> for P2pCallHandle {
    type Result = ();

    fn handle(&mut self, msg: IncomingCall, _: &mut Context<Self>) {
        if self.username.is_none() {
            // Rung while our name was being claimed, and the claim failed: the directory has
            // ended that call already.
            return;
        }
        // The directory paired us with the caller, so any call we still had locally is over
        // (its PeerHangup came first). Our client trickles for this call only once it has
        // the offer, so anything still queued is stale.
        self.pending.clear();
        self.call = Some(Call {
            id: msg.call_id,
            peer: msg.peer,
            phase: Phase::Ringing,
        });
        let result = json!({"event": "incomingcall", "username": msg.caller});
        self.result(None, result, Some(msg.jsep));
    }
}

impl Handler<CallAccepted> for P2pCallHandle {
    type Result = ();

    fn handle(&mut self, msg: CallAccepted, _: &mut Context<Self>) {
        let Some(call) = self.call.as_mut().filter(|c| c.id == msg.call_id) else {
            return;
        };
        if call.phase != Phase::Calling {
            return;
        }
        call.phase = Phase::Established;
        let result = json!({"event": "accepted", "username": msg.callee});
        self.result(None, result, Some(msg.jsep));
        self.webrtcup();
        self.flush_pending();
    }
}

impl Handler<PeerTrickle> for P2pCallHandle {
    type Result = ();

    fn handle(&mut self, msg: PeerTrickle, _: &mut Context<Self>) {
        if self.is_current(msg.call_id) {
            self.trickle_event(msg.candidate);
        }
    }
}

impl Handler<PeerUpdate> for P2pCallHandle {
    type Result = ();

    fn handle(&mut self, msg: PeerUpdate, _: &mut Context<Self>) {
        if self.is_current(msg.call_id) {
            self.result(None, json!({"event": "update"}), Some(msg.jsep));
        }
    }
}

impl Handler<PeerHangup> for P2pCallHandle {
    type Result = ();

    fn handle(&mut self, msg: PeerHangup, _: &mut Context<Self>) {
        if !self.is_current(msg.call_id) {
            return;
        }
        self.call = None;
        self.pending.clear();
        let result = json!({"event": "hangup", "username": msg.username, "reason": msg.reason});
        self.result(None, result, None);
    }
}
