//! The other side of a call, and what it tells this handle: one message per intent, each
//! with its call id. A peer on another proxy gets the same intents over the bus
//! ([`crate::plugin::p2pcall::remote`]), and its proxy hands them to its handle as these
//! messages.

use std::sync::Arc;

use actix::prelude::*;
use janus_protocol::JsonMap;
use serde_json::{json, Value};

use super::{Call, P2pCallHandle, Phase};
use crate::plugin::p2pcall::remote::P2pRemote;

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
    pub(super) fn accepted(&self, call_id: u64, callee: &str, jsep: JsonMap) {
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

    pub(super) fn trickle(&self, call_id: u64, candidate: Value) {
        match self {
            Peer::Local(addr) => addr.do_send(PeerTrickle { call_id, candidate }),
            Peer::Remote {
                remote,
                proxy,
                username,
            } => remote.trickle(proxy, username, call_id, candidate),
        }
    }

    pub(super) fn update(&self, call_id: u64, jsep: JsonMap) {
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

/// The call is over; the user book has already freed both sides.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PeerHangup {
    pub call_id: u64,
    pub username: String,
    pub reason: String,
}

impl Handler<IncomingCall> for P2pCallHandle {
    type Result = ();

    fn handle(&mut self, msg: IncomingCall, _: &mut Context<Self>) {
        if self.username.is_none() {
            // Rung while our name was being claimed, and the claim failed: the users table has
            // ended that call already.
            return;
        }
        // The users table paired us with the caller, so any call we still had locally is over
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
        self.core.webrtcup();
        self.flush_pending();
    }
}

impl Handler<PeerTrickle> for P2pCallHandle {
    type Result = ();

    fn handle(&mut self, msg: PeerTrickle, _: &mut Context<Self>) {
        if self.is_current(msg.call_id) {
            self.core.trickle(msg.candidate);
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
