//! `P2pCallHandle`: one actor per p2pcall handle, built on the handle kit's [`HandleCore`]. It
//! answers the client's requests ([`client`]) and talks to the peer's handle actor with one
//! message per intent ([`peers`]). Every peer message carries its call id: a message about a
//! call that is already over on this side is dropped.
//!
//! Ordering: every change of the shared user book and the peer message it implies happen under
//! its lock, so a peer never sees a new call before the hangup of the previous one.
//!
//! A peer on another proxy ([`peers::Peer::Remote`]) gets the same intents over the bus (see
//! [`super::remote`]), and its proxy hands them to its handle as these same messages.
//! Registering (with a shared store) and calling a user of another proxy wait for Redis / the
//! other proxy with `ctx.wait`: the handle takes nothing else meanwhile, not even its peers'
//! messages (a call that reaches a name while its claim is under way must find it registered),
//! as Janus's plugin handles one request of a handle at a time. So its requests go through a
//! [`CommandQueue`] that never shuts: the actor's mailbox keeps them waiting, in order.

mod client;
pub mod peers;

use std::collections::VecDeque;
use std::sync::Arc;

use actix::prelude::*;
use janus_protocol::{JsonMap, Trickle};
use serde_json::{json, Value};

use super::remote::{self, P2pRemote};
use super::users::{Ended, Reach};
use super::Shared;
use crate::messages::ReplyTo;
use crate::plugin::env::PluginEnv;
use crate::plugin::kit::{ClientRequests, CommandQueue, HandleCore, PluginError, Trickles};
use crate::plugin::AttachContext;
use peers::{Peer, PeerHangup};

/// Reasons the peer reads in its `hangup` event when the call ends without a `hangup` message.
pub const REASON_WEBRTC_HANGUP: &str = "Remote WebRTC hangup";
pub const REASON_DETACHED: &str = "Remote handle detached";
pub const REASON_SESSION_CLOSED: &str = "Remote session closed";
pub const REASON_EXPLICIT: &str = "Explicit hangup";
pub const REASON_BUSY: &str = "User busy";

/// Candidates a handle keeps while its call is not established. A client trickles a few dozen
/// at most; the bound only protects the proxy from a client that trickles without ever calling.
const MAX_PENDING_CANDIDATES: usize = 512;

/// The key of the plugin data: janus-cloud's p2pcall speaks as videocall.
const KEY: &str = "videocall";

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
    core: HandleCore,
    env: Arc<PluginEnv>,
    shared: Arc<Shared>,
    /// Proxy-wide key of this handle in the user book.
    key: u64,
    /// Never shut: the handle's waits are `ctx.wait`s (see the module documentation).
    queue: CommandQueue,
    username: Option<String>,
    call: Option<Call>,
    /// The client's candidates, in order, until the call is established.
    pending: VecDeque<Value>,
}

impl P2pCallHandle {
    pub fn new(shared: Arc<Shared>, key: u64, ctx: AttachContext) -> Self {
        P2pCallHandle {
            core: HandleCore::attached(&ctx, KEY),
            env: ctx.env,
            queue: CommandQueue::new(Trickles::InOrder),
            shared,
            key,
            username: None,
            call: None,
            pending: VecDeque::new(),
        }
    }

    fn result(&self, transaction: Option<&str>, result: Value, jsep: Option<JsonMap>) {
        let data = json!({ KEY: "event", "result": result });
        self.core.event(transaction, data, jsep.map(Value::Object));
    }

    /// The event answering request `transaction` (acked already).
    fn answer(&self, transaction: &str, reply_to: &ReplyTo, outcome: Result<Value, PluginError>) {
        match outcome {
            Ok(result) => self.result(Some(transaction), result, None),
            Err(e) => self.core.plugin_error(transaction, reply_to, false, &e),
        }
    }

    fn phase(&self) -> Option<Phase> {
        self.call.as_ref().map(|c| c.phase)
    }

    /// True when `call_id` is our current call.
    fn is_current(&self, call_id: u64) -> bool {
        self.call.as_ref().is_some_and(|c| c.id == call_id)
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

    /// Ends our call, if any: frees both sides in the user book and tells the peer, with
    /// `reason`. Local state is reset; the client is not told (the caller of this decides).
    fn end_call(&mut self, reason: &str) {
        self.pending.clear();
        let (Some(call), Some(name)) = (self.call.take(), self.username.as_deref()) else {
            return;
        };
        let remote = self.shared.remote();
        let mut users = self.shared.users.lock();
        if let Some(ended) = users.hang_up(name, call.id) {
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
        let mut users = self.shared.users.lock();
        if let Some(ended) = users.unregister(&name, self.key) {
            tell_hangup(ended, &name, reason, remote.as_deref());
        }
        drop(users);
        self.env.cluster.users.user_down(remote::TOPIC, &name);
    }
}

/// Tells the other side of an ended call (called under the user book's lock, see the module
/// doc).
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

crate::plugin::kit::take_requests!(P2pCallHandle);

impl ClientRequests for P2pCallHandle {
    fn queue(&mut self) -> &mut CommandQueue {
        &mut self.queue
    }

    /// Until the handle leaves: it stops then, and its mailbox is not read any more.
    fn takes_requests(&self) -> bool {
        true
    }

    fn message(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: String,
        body: JsonMap,
        jsep: Option<JsonMap>,
        reply_to: ReplyTo,
    ) {
        // Every request is asynchronous, as in videocall: ack now, event later.
        self.core.ack(&transaction, &reply_to);
        let was_established = self.phase() == Some(Phase::Established);
        self.on_message(ctx, &transaction, body, jsep, &reply_to);
        if self.phase() == Some(Phase::Established) && !was_established {
            // We just accepted: the answer is on its way to the caller.
            self.core.webrtcup();
        }
    }

    fn trickle(
        &mut self,
        _: &mut Context<Self>,
        transaction: String,
        trickle: Trickle,
        reply_to: ReplyTo,
    ) {
        self.core.ack(&transaction, &reply_to);
        self.on_trickle(trickle);
    }

    fn hangup(&mut self, _: &mut Context<Self>, transaction: String, reply_to: ReplyTo) {
        // The client closed its PeerConnection: the call is over for the peer too.
        self.end_call(REASON_WEBRTC_HANGUP);
        self.core.ok(&transaction, &reply_to);
    }

    fn leave(&mut self, ctx: &mut Context<Self>, detach: Option<(String, ReplyTo)>) {
        match detach {
            Some((transaction, reply_to)) => {
                self.unregister(REASON_DETACHED);
                self.core.detach_done(&transaction, &reply_to);
            }
            None => self.unregister(REASON_SESSION_CLOSED),
        }
        ctx.stop();
    }
}
