//! `P2pCallHandle`: one actor per p2pcall handle. It answers the client's requests and talks to
//! the peer's handle actor with one message per intent ([`IncomingCall`], [`CallAccepted`],
//! [`PeerTrickle`], [`PeerUpdate`], [`PeerHangup`]). Every peer message carries its call id:
//! a message about a call that is already over on this side is dropped.
//!
//! Ordering: every change of the shared directory and the peer message it implies happen under
//! the directory lock, so a peer never sees a new call before the hangup of the previous one.

use std::collections::VecDeque;
use std::sync::Arc;

use actix::prelude::*;
use janus_protocol::frames::{HandleNotice, PluginData, PluginEvent, TrickleEvent};
use janus_protocol::{JsonMap, ServerMessage, Trickle};
use serde_json::{json, Value};

use super::directory::{CallRefused, Ended};
use super::{
    check_set, hangup_reason, has_sdp, username, verb, PluginError, Shared, Verb,
    ERROR_ALREADY_IN_CALL, ERROR_ALREADY_REGISTERED, ERROR_MISSING_SDP, ERROR_NO_CALL,
    ERROR_NO_SUCH_USERNAME, ERROR_REGISTER_FIRST, ERROR_USERNAME_TAKEN, ERROR_USE_ECHO_TEST,
    PACKAGE,
};
use crate::plugin::{AttachContext, HandleCommand};
use crate::session::{ClientSession, Deliver};
use crate::state::ProxyState;
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

/// The caller's offer reaches the callee.
#[derive(Message)]
#[rtype(result = "()")]
pub struct IncomingCall {
    pub call_id: u64,
    pub caller: String,
    pub caller_addr: Addr<P2pCallHandle>,
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
    peer: Addr<P2pCallHandle>,
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
        let mut directory = self.shared.directory.lock();
        if let Some(ended) = directory.hang_up(name, call.id) {
            tell_hangup(ended, name, reason);
        }
    }

    /// Ends the call and frees the username (detach, session gone, actor stopped).
    fn unregister(&mut self, reason: &str) {
        self.pending.clear();
        self.call = None;
        let Some(name) = self.username.take() else {
            return;
        };
        let mut directory = self.shared.directory.lock();
        if let Some(ended) = directory.unregister(&name, self.key) {
            tell_hangup(ended, &name, reason);
        }
    }

    fn on_message(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: &str,
        body: JsonMap,
        jsep: Option<JsonMap>,
    ) {
        let outcome = match verb(&body) {
            Ok(Verb::List) => {
                let list = self.shared.directory.lock().list();
                Ok(json!({ "list": list }))
            }
            Ok(Verb::Register) => self.register(ctx, &body),
            Ok(Verb::Call) => self.place_call(ctx, &body, jsep),
            Ok(Verb::Accept) => self.accept(jsep),
            Ok(Verb::Set) => self.set(&body, jsep),
            Ok(Verb::Hangup) => {
                let reason = hangup_reason(&body);
                self.end_call(&reason);
                Ok(json!({"event": "hangup", "username": self.username,
                    "reason": REASON_EXPLICIT}))
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(result) => self.result(Some(transaction), result, None),
            Err(e) => self.error(transaction, e),
        }
        if self.call.as_ref().map(|c| c.phase) == Some(Phase::Established) {
            self.flush_pending();
        }
    }

    fn register(&mut self, ctx: &mut Context<Self>, body: &JsonMap) -> Result<Value, PluginError> {
        if let Some(name) = &self.username {
            return Err(PluginError::new(
                ERROR_ALREADY_REGISTERED,
                format!("Already registered ({name})"),
            ));
        }
        let name = username(body)?;
        let taken = self
            .shared
            .directory
            .lock()
            .register(&name, self.key, ctx.address())
            .is_err();
        if taken {
            return Err(PluginError::new(
                ERROR_USERNAME_TAKEN,
                format!("Username '{name}' already taken"),
            ));
        }
        self.username = Some(name.clone());
        Ok(json!({"event": "registered", "username": name}))
    }

    fn place_call(
        &mut self,
        ctx: &mut Context<Self>,
        body: &JsonMap,
        jsep: Option<JsonMap>,
    ) -> Result<Value, PluginError> {
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
            Err(refused) => {
                drop(directory);
                return match refused {
                    CallRefused::Busy => Ok(json!({"event": "hangup", "username": me,
                        "reason": REASON_BUSY})),
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
            caller_addr: ctx.address(),
            jsep,
        });
        drop(directory);
        self.call = Some(Call {
            id: call_id,
            peer: callee_addr,
            phase: Phase::Calling,
        });
        Ok(json!({"event": "calling"}))
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
            call.peer.do_send(CallAccepted {
                call_id: call.id,
                callee: me.clone(),
                jsep,
            });
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
                call.peer.do_send(PeerUpdate {
                    call_id: call.id,
                    jsep,
                });
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
            call.peer.do_send(PeerTrickle {
                call_id: call.id,
                candidate,
            });
        }
    }

    /// True when `call_id` is our current call.
    fn is_current(&self, call_id: u64) -> bool {
        self.call.as_ref().is_some_and(|c| c.id == call_id)
    }
}

/// Tells the other side of an ended call (called under the directory lock, see the module doc).
fn tell_hangup(ended: Ended<Addr<P2pCallHandle>>, me: &str, reason: &str) {
    ended.to.do_send(PeerHangup {
        call_id: ended.call_id,
        username: me.to_owned(),
        reason: reason.to_owned(),
    });
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
        // The directory paired us with the caller, so any call we still had locally is over
        // (its PeerHangup came first). Our client trickles for this call only once it has
        // the offer, so anything still queued is stale.
        self.pending.clear();
        self.call = Some(Call {
            id: msg.call_id,
            peer: msg.caller_addr,
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
