//! `VideoCallHandle`: one actor per client videocall handle, built on the handle kit. Split by
//! where its messages come from: [`client`] (the client's requests), [`backend`] (its leg's
//! news, and the leg's life), [`peers`] (the other handle of a call, here or on another
//! proxy).
//!
//! A call, per handle ([`Stage`]):
//!
//! * **no call** (maybe registered): `list`, `register`, `set`, `hangup`, `accept` are answered
//!   by the proxy itself, with Janus's events and errors.
//! * **dialing** (the caller): Janus's checks passed, the registry chose a server, the callee
//!   agreed ([`peers::IncomingCall`]) and both handles open a *leg* there — a backend videocall
//!   handle with their username registered. The caller's `call` waits (later requests of the
//!   caller queue behind it; candidates are acked and kept) until both legs are ready
//!   ([`peers::PeerLegReady`]), then goes to the backend with the offer.
//! * **joining** (the callee): its leg is being set up, until the backend's `incomingcall`.
//! * **live**: the backend knows the call (the caller sent `call`, the callee got
//!   `incomingcall`). `accept`, `set`, `hangup`, trickles and core `hangup` go to the leg; the
//!   leg's events come back with the client's ids. The backend's `hangup` event ends it.
//! * after a call the leg **lingers** for [`LEG_LINGER`] so that Janus's own trailing events of
//!   the call (the PeerConnection teardown: the peer's "Remote WebRTC hangup", core `hangup`)
//!   still reach the client, as they would from a Janus; then it is detached (which frees the
//!   username on the backend). A new call on the same server reuses it.
//!
//! The peer handle is told when this side cannot go on ([`peers::PeerLeft`]); when the backend
//! is lost both sides get the `hangup` event.
//!
//! With adoption on, the handle tells its session what a survivor needs ([`adopt`]): its
//! name, and its live call with its leg; a survivor rebuilds it from that.

mod adopt;
mod backend;
mod client;
pub mod peers;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use janus_protocol::{JsonMap, Trickle};
use serde_json::Value;

use super::errors;
use super::remote::{self, VideoCallRemote};
use super::route::LegPhase;
use super::SharedUserBook;
use crate::messages::{Placement, ReplyTo, ServersPort};
use crate::plugin::env::PluginEnv;
use crate::plugin::kit::{
    BackendLeg, ClientRequests, CommandQueue, HandleCore, Legs, PluginError, Trickles, WithLegs,
};
use crate::plugin::AttachContext;
use peers::{LeftCause, Peer};

/// How long a leg stays after its call ended (see the module documentation). Janus tears
/// the PeerConnections down within about half a second of a hangup.
pub const LEG_LINGER: Duration = Duration::from_secs(2);

/// Reason of the `hangup` event when the peer's proxy died mid-call: what Janus says when the
/// peer's handle goes away.
const PEER_PROXY_GONE_REASON: &str = "Remote WebRTC hangup";

/// Reason of the core `hangup` Janus sends when the plugin closes a PeerConnection.
const CLOSE_PC: &str = "Close PC";

/// The short name in plugin data.
const KEY: &str = "videocall";

/// Where the handle is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    Live,
    /// Detached, or its session ended: nothing more is taken.
    Gone,
}

/// How far a call is, for this handle.
enum Stage {
    /// The caller's `call` waits until the callee agreed and both legs are ready.
    Dialing { held: HeldCall, peer_ready: bool },
    /// The callee agreed; its leg is being set up, until the backend's `incomingcall`.
    Joining,
    /// The backend knows the call. `placed`: the transaction of the caller's `call` (its
    /// errors end the call).
    Live { placed: Option<String> },
}

struct Call {
    /// Random: call ids travel between proxies (see `remote`).
    id: u64,
    peer: Peer,
    peer_username: String,
    /// The server of the call (once chosen).
    server: String,
    stage: Stage,
    /// The call in the operators' list for as long as it lives.
    _listed: CallListing,
}

/// A call in the user book's list of calls (the admin console's), taken out of it when the
/// call is dropped, whichever way the call ends.
struct CallListing {
    users: SharedUserBook,
    user: String,
    call_id: u64,
}

impl CallListing {
    fn new(users: &SharedUserBook, user: &str, call_id: u64, peer: &str) -> Self {
        users.lock().call_began(user, call_id, peer);
        CallListing {
            users: users.clone(),
            user: user.to_owned(),
            call_id,
        }
    }
}

impl Drop for CallListing {
    fn drop(&mut self) {
        self.users.lock().call_ended(&self.user, self.call_id);
    }
}

impl Call {
    /// The caller's `call` request, if it still waits.
    fn into_held(self) -> Option<HeldCall> {
        match self.stage {
            Stage::Dialing { held, .. } => Some(held),
            _ => None,
        }
    }
}

/// The caller's `call` request, held until both legs are ready.
struct HeldCall {
    transaction: String,
    body: JsonMap,
    jsep: JsonMap,
    reply_to: ReplyTo,
}

/// This handle's leg (in [`Legs`] under `token`).
struct CallLeg {
    token: u64,
    server: String,
    phase: LegPhase,
    /// Its call ended; detached at the end of the linger time unless reused.
    lingering: bool,
}

/// What the proxy answers a request with itself: a result, or an error.
type Outcome = Result<Value, PluginError>;

pub struct VideoCallHandle {
    core: HandleCore,
    env: Arc<PluginEnv>,
    users: SharedUserBook,
    /// Users and peers on other proxies (None without a shared store).
    remote: Option<Arc<VideoCallRemote>>,
    /// Client requests wait here while one is in progress (as Janus's plugin queue does);
    /// trickles pass at once (they are kept aside until the leg exists).
    queue: CommandQueue,
    life: Life,
    username: Option<String>,
    call: Option<Call>,
    legs: Legs,
    leg: Option<CallLeg>,
    /// `set` elements sent before the call: applied to the leg once registered, as Janus
    /// applies them to the call that follows (and forgets them after it).
    pending_set: JsonMap,
    /// Trickles that arrived before the call reached the backend, in order.
    trickles: Vec<Trickle>,
    /// What the session was last told a survivor needs to rebuild this handle.
    adoptable: Option<crate::messages::adoption::AdoptableState>,
    /// Rebuilt from a dead proxy's record: what is left to do once started.
    adopted: Option<adopt::Restored>,
}

impl VideoCallHandle {
    pub fn new(
        ctx: AttachContext,
        users: SharedUserBook,
        remote: Option<Arc<VideoCallRemote>>,
    ) -> Self {
        VideoCallHandle {
            core: HandleCore::attached(&ctx, KEY),
            env: ctx.env,
            users,
            remote,
            queue: CommandQueue::new(Trickles::AtOnce),
            life: Life::Live,
            username: None,
            call: None,
            legs: Legs::default(),
            leg: None,
            pending_set: JsonMap::new(),
            trickles: Vec::new(),
            adoptable: None,
            adopted: None,
        }
    }

    // ---- frames to the client ----

    fn result_data(result: Value) -> Value {
        serde_json::json!({ KEY: "event", "result": result })
    }

    /// The event answering request `transaction` (its `ack` went already).
    fn event_of(&self, transaction: &str, reply_to: &ReplyTo, outcome: Outcome) {
        match outcome {
            Ok(result) => self
                .core
                .event(Some(transaction), Self::result_data(result), None),
            Err(e) => self.core.plugin_error(transaction, reply_to, false, &e),
        }
    }

    /// `ack` then the event, as Janus answers every VideoCall request.
    fn answer(&self, transaction: &str, reply_to: &ReplyTo, outcome: Outcome) {
        self.core.ack(transaction, reply_to);
        self.event_of(transaction, reply_to, outcome);
    }

    fn hangup_result(username: Option<&str>, reason: &str) -> Value {
        let mut result = JsonMap::new();
        result.insert("event".into(), "hangup".into());
        if let Some(username) = username {
            result.insert("username".into(), username.into());
        }
        result.insert("reason".into(), reason.into());
        Value::Object(result)
    }

    // ---- the call and the leg ----

    fn call_id(&self) -> Option<u64> {
        self.call.as_ref().map(|c| c.id)
    }

    /// The leg, while the backend knows the call.
    fn live_leg(&self) -> Option<u64> {
        let live = self
            .call
            .as_ref()
            .is_some_and(|c| matches!(c.stage, Stage::Live { .. }));
        self.leg.as_ref().filter(|_| live).map(|l| l.token)
    }

    /// The transaction of the `call` this handle placed on the backend, while live.
    fn placed_transaction(&self) -> Option<&str> {
        match &self.call.as_ref()?.stage {
            Stage::Live { placed } => placed.as_deref(),
            _ => None,
        }
    }

    /// A placement the handle does not use, given back to the registry.
    fn give_back(&self, placement: Placement) {
        BackendLeg::new(placement).end_placement(&self.env.servers.ended);
    }

    fn release_leg(&mut self) {
        if let Some(leg) = self.leg.take() {
            self.legs.release(leg.token, &self.env.servers);
        }
    }

    /// The call is over for this handle: its leg lingers, then goes.
    fn linger(&mut self, ctx: &mut Context<Self>) {
        self.pending_set.clear();
        self.trickles.clear();
        let Some(leg) = self.leg.as_mut() else {
            return;
        };
        leg.lingering = true;
        let token = leg.token;
        ctx.run_later(LEG_LINGER, move |act, _| {
            let still = act
                .leg
                .as_ref()
                .is_some_and(|l| l.token == token && l.lingering);
            if still && act.call.is_none() {
                act.release_leg();
            }
        });
    }

    /// The caller's held `call` is answered by the proxy (refused or failed; Janus also
    /// closes the PeerConnection its offer opened), and the next request runs.
    fn finish_dialing(
        &mut self,
        ctx: &mut Context<Self>,
        held: Option<HeldCall>,
        outcome: Outcome,
    ) {
        if let Some(held) = held {
            self.answer(&held.transaction, &held.reply_to, outcome);
            self.core.hangup(CLOSE_PC);
        }
        self.trickles.clear();
        self.resume(ctx);
    }

    /// The caller's setup failed: the callee is let go, the client gets an error.
    fn fail_outgoing(&mut self, ctx: &mut Context<Self>, why: &str) {
        let call = self.call.take();
        if let Some(call) = &call {
            call.peer.left(call.id, LeftCause::Failed(why.to_owned()));
        }
        self.linger(ctx);
        let held = call.and_then(Call::into_held);
        self.finish_dialing(ctx, held, Err(errors::unknown(why)));
    }

    /// A leg could not be set up.
    fn setup_failed(&mut self, ctx: &mut Context<Self>, why: &str) {
        let Some(call) = self.call.as_ref() else {
            return;
        };
        if matches!(call.stage, Stage::Dialing { .. }) {
            return self.fail_outgoing(ctx, why);
        }
        if let Some(call) = self.call.take() {
            call.peer.left(call.id, LeftCause::Failed(why.to_owned()));
        }
        self.linger(ctx);
    }

    /// The backend ended the call (or refused it): the peer is told, in case its own leg does
    /// not hear it from Janus, and this leg lingers.
    fn end_call(&mut self, ctx: &mut Context<Self>, cause: LeftCause) {
        let held = self.call.take().and_then(|call| {
            call.peer.left(call.id, cause.clone());
            call.into_held()
        });
        self.linger(ctx);
        if held.is_some() {
            // A leg reused for this call heard the end of the one before: the held `call`
            // cannot go on.
            let why = "the backend ended the call";
            self.finish_dialing(ctx, held, Err(errors::unknown(why)));
        }
    }

    /// Ends the call because its backend went away, telling the client as the backend can't.
    fn backend_lost(&mut self, ctx: &mut Context<Self>) {
        let Some(call) = self.call.take() else {
            return;
        };
        match call.stage {
            Stage::Dialing { held, .. } => {
                let why = format!("backend server {} unavailable", call.server);
                self.linger(ctx);
                self.finish_dialing(ctx, Some(held), Err(errors::unknown(why)));
            }
            Stage::Live { .. } => {
                let reason = crate::plugin::kit::BACKEND_LOST_REASON;
                let result = Self::hangup_result(Some(&call.peer_username), reason);
                self.core.event(None, Self::result_data(result), None);
                self.core.hangup(reason);
                self.linger(ctx);
            }
            Stage::Joining => self.linger(ctx),
        }
    }

    /// Frees the username, here and in the shared store.
    fn unregister(&mut self) {
        if let Some(username) = self.username.take() {
            if self.users.lock().unregister(&username, self.core.handle_id) {
                self.env.cluster.users.user_down(remote::TOPIC, &username);
            }
        }
    }
}

impl WithLegs for VideoCallHandle {
    fn core(&self) -> &HandleCore {
        &self.core
    }

    fn legs(&mut self) -> &mut Legs {
        &mut self.legs
    }

    fn servers(&self) -> &ServersPort {
        &self.env.servers
    }
}

impl Actor for VideoCallHandle {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(restored) = self.adopted.take() {
            self.restored(ctx, restored);
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        // Done already when the handle left; this covers the system shutting down.
        self.unregister();
        if let Some(call) = self.call.take() {
            call.peer.left(call.id, LeftCause::Gone);
        }
        self.leg = None;
        self.legs.release_all(&self.env.servers);
    }
}
