//! `AudioBridgeHandle`: one actor per client audiobridge handle.
//!
//! The handle owns at most one *leg* — a backend audiobridge handle — per backend server it
//! has business with: the server of the room it joined (where its PeerConnection is), and the
//! servers of the rooms it asked about. Every request but `list` and `exists` goes to one
//! leg, and the backend's reply and events come back with the client's ids, so errors, texts
//! and events are Janus's own. Requests are processed one at a time, in order (as Janus's
//! plugin does per handle; the kit's [`CommandQueue`]); trickles keep their place in that
//! order.
//!
//! Which server a request goes to ([`super::verb::target_of`]):
//!
//! * `create`: any server validates it (Janus's checks and answer); once Janus created the
//!   room it is destroyed there again and recorded in the book without a server.
//! * `join` and the room-level requests (`edit`, `destroy`, `kick`, `rtp_forward`, …) about a
//!   room of the book: the room's server. A room without one (never joined yet, or its
//!   server was lost) is first created, with its id and settings, on a server chosen by the
//!   policy.
//! * `changeroom`: the server the handle is in a room on (a PeerConnection cannot move); a
//!   target room without a server is created there first.
//! * anything else (`configure`, `leave`, `hangup`, unknown requests, unknown rooms): the
//!   server of the handle's room or PeerConnection, else any leg, else a server chosen by the
//!   policy — Janus answers.
//!
//! When the server of a leg is lost, the rooms on it are unplaced, and a participant there
//! gets `{"audiobridge":"destroyed","room":R}` (its mixer is gone) and a core `hangup`.
//!
//! The files: this one (the actor, its state, the helpers every flow uses), `client.rs` (the
//! client's requests), `place.rs` (legs and rooms on servers), `rooms.rs` (`create`, `list`,
//! a room that moves, the admin key's refusal), `backend.rs` (what the links say).

mod backend;
mod client;
mod place;
mod rooms;

use std::sync::Arc;

use actix::fut::LocalBoxActorFuture;
use actix::prelude::*;
use janus_protocol::JsonMap;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::{errors, SharedRoomBook, PACKAGE};
use crate::messages::adoption::AdoptableState;
use crate::messages::cluster::RoomKind;
use crate::messages::{BackendFrame, ReplyRoute, ReplyTo, ServersPort};
use crate::plugin::env::PluginEnv;
use crate::plugin::kit::{
    BackendLeg, CommandQueue, HandleCore, Legs, PluginError, Trickles, WithLegs,
};
use crate::plugin::rewrite::IdMap;
use crate::plugin::AttachContext;

/// What an audiobridge handle does over several turns of its actor.
type Flow<T> = LocalBoxActorFuture<AudioBridgeHandle, T>;

/// Which shared rooms the handle's book is about.
const KIND: RoomKind = RoomKind::AudioBridge;

/// Where the handle is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    Live,
    /// The client detached (or its session ended) while a leg was being attached: its request
    /// is dropped, and the handle stops once the backend answers the attach, so that the new
    /// backend handle is detached too rather than left on its server.
    Leaving,
}

/// How a request's turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// Answered (or dropped): the next request may run.
    Answered,
    /// Sent to a backend: its reply ends the request ([`Forwarded`]).
    Forwarded,
}

/// The room this handle is a participant of, as its server told it.
struct Participant {
    server: String,
    room: Value,
    id: Option<Value>,
}

/// What a successful answer to a forwarded request changes in the book.
#[derive(Debug)]
enum RoomChange {
    Nothing,
    Edited(u64, JsonMap),
    Allowed(u64, JsonMap),
    /// With `permanent` as asked (the rooms file follows).
    Destroyed(u64, bool),
}

/// Tokens of forwarded requests' replies: apart from the legs' (which count from 1).
const FORWARD_TOKENS: u64 = 1 << 62;

/// A client request sent to a leg, waiting for its first reply.
struct Forwarded {
    /// The token its reply comes back with: one per request, so that a late answer to an
    /// earlier one (the link's 490 for a plugin event that never came) is not taken for it.
    token: u64,
    /// The leg's server.
    server: String,
    transaction: String,
    /// A `message`: what its success changes, and whether it carried an SDP (the handle's
    /// PeerConnection is then on that server). Trickles and hangups change nothing.
    message: Option<(RoomChange, bool)>,
}

/// A client `message`, as the flows pass it along.
struct Request {
    transaction: String,
    body: JsonMap,
    jsep: Option<JsonMap>,
    reply_to: ReplyTo,
}

pub struct AudioBridgeHandle {
    core: HandleCore,
    env: Arc<PluginEnv>,
    book: SharedRoomBook,
    legs: Legs,
    queue: CommandQueue,
    /// The running request's flow (dropped when the handle leaves).
    flow: Option<SpawnHandle>,
    life: Life,
    /// The request sent to a leg whose reply is awaited.
    forwarded: Option<Forwarded>,
    /// Requests forwarded so far (their reply tokens).
    forwards: u64,
    participant: Option<Participant>,
    /// The server of the handle's PeerConnection (where an SDP went).
    media: Option<String>,
    /// A room id reserved by this handle's `create` in progress (freed if the handle goes).
    reserving: Option<u64>,
    /// Shared store: the room this handle just took off a server it could not use, and that
    /// server (its next placement replaces that one in the store).
    unplaced: Option<(u64, String)>,
    /// Shared store: the participation this handle recorded there (room, id).
    shared_participant: Option<(u64, Value)>,
    /// The display name of the handle's last `join` (for the shared store's views).
    display: Option<String>,
    /// What the session was last told a survivor needs to rebuild this handle.
    adoptable: Option<AdoptableState>,
}

impl AudioBridgeHandle {
    pub fn new(ctx: AttachContext, book: SharedRoomBook) -> Self {
        let core = HandleCore::new(
            ctx.session_id,
            ctx.handle_id,
            ctx.opaque_id,
            PACKAGE.into(),
            "audiobridge",
            ctx.session_port,
            ctx.env.frames.clone(),
        );
        AudioBridgeHandle {
            core,
            env: ctx.env,
            book,
            legs: Legs::default(),
            queue: CommandQueue::new(Trickles::InOrder),
            flow: None,
            life: Life::Live,
            forwarded: None,
            forwards: 0,
            participant: None,
            media: None,
            reserving: None,
            unplaced: None,
            shared_participant: None,
            display: None,
            adoptable: None,
        }
    }

    /// A dead proxy's participant, rebuilt on its live leg (docs/adoption.md): `state` is
    /// what [`AudioBridgeHandle::adoptable_now`] recorded. None if the state is not one.
    pub fn adopted(
        ctx: AttachContext,
        book: SharedRoomBook,
        leg: BackendLeg,
        state: &Value,
    ) -> Option<(Self, u64)> {
        let server = leg.server.clone();
        let room = state.get("room").filter(|r| r.is_u64())?.clone();
        let mut handle = AudioBridgeHandle::new(ctx, book);
        let token = handle.legs.adopted(leg);
        handle.participant = Some(Participant {
            server: server.clone(),
            room,
            id: state.get("id").cloned(),
        });
        handle.display = state.get("display").and_then(Value::as_str).map(Into::into);
        if state.get("media") == Some(&Value::Bool(true)) {
            handle.media = Some(server);
        }
        Some((handle, token))
    }

    /// What a survivor needs to rebuild this handle: a participant's room, id and leg; built
    /// only when it differs from what the session was last told (`share_participant` runs on
    /// every event of a leg, `talking` ones included).
    fn adoptable_if_changed(&self) -> Option<Option<AdoptableState>> {
        let now = self.participant.as_ref().and_then(|p| {
            let handle = self.legs.on(&p.server)?.backend.handle?;
            Some((p, handle, self.media.as_deref() == Some(p.server.as_str())))
        });
        let same = match (&now, &self.adoptable) {
            (None, None) => true,
            (Some((p, handle, media)), Some(sent)) => {
                sent.server == p.server
                    && sent.backend_handle == Some(*handle)
                    && sent.state["room"] == p.room
                    && sent.state["id"] == *p.id.as_ref().unwrap_or(&Value::Null)
                    && sent.state["display"].as_str() == self.display.as_deref()
                    && sent.state["media"] == *media
            }
            _ => false,
        };
        if same {
            return None;
        }
        Some(now.map(|(p, backend_handle, media)| AdoptableState {
            server: p.server.clone(),
            backend_handle: Some(backend_handle),
            state: json!({"room": p.room, "id": p.id, "display": self.display, "media": media}),
        }))
    }

    fn is_live(&self) -> bool {
        self.life == Life::Live
    }

    /// The ready leg on `server`.
    fn leg_token(&self, server: &str) -> Option<u64> {
        self.legs
            .on(server)
            .filter(|l| l.is_ready())
            .map(|l| l.token)
    }

    /// The server of leg `token`.
    fn server_of(&self, token: u64) -> Option<String> {
        self.legs.get(token).map(|l| l.server().to_owned())
    }

    fn ids(&self, server: &str) -> IdMap {
        IdMap {
            frontend_session: self.core.session_id,
            frontend_handle: self.core.handle_id,
            backend_handle: self.legs.on(server).and_then(|l| l.backend.handle),
        }
    }

    /// Sends a request of the proxy's own (`client_transaction`: the client request it serves)
    /// on the leg on `server`; resolves to the backend's answer (for a plugin message Janus
    /// acknowledges, its event), or the link's error.
    fn call(
        &self,
        server: &str,
        request: JsonMap,
        client_transaction: Option<String>,
    ) -> Flow<BackendFrame> {
        let Some(leg) = self.legs.on(server).filter(|l| l.is_ready()) else {
            return actix::fut::ready(errors::lost_reply(server)).boxed_local();
        };
        let (tx, rx) = oneshot::channel();
        leg.backend
            .send(request, client_transaction, Some(ReplyRoute::Once(tx)));
        let server = server.to_owned();
        async move { rx.await.unwrap_or_else(|_| errors::lost_reply(&server)) }
            .into_actor(self)
            .boxed_local()
    }

    /// A frame for the connection that asked.
    fn reply(&self, frame: &impl serde::Serialize, reply_to: &ReplyTo) {
        self.core.send(frame, Some(reply_to));
    }

    /// A plugin error as Janus answers the request: a `success` for a synchronous one, else an
    /// `ack` and an event.
    fn refuse(&self, transaction: &str, reply_to: &ReplyTo, sync: bool, error: &PluginError) {
        if !sync {
            self.core.ack(transaction, reply_to);
        }
        self.core.plugin_error(transaction, reply_to, sync, error);
    }

    // ---- the shared store (several proxies) ----

    /// The room could not be used on `server`: unplaced here and, compare-and-delete, in the
    /// shared store.
    fn unplace(&mut self, room: u64, server: &str) {
        self.book.lock().unplace(room, server);
        if let Some(store) = &self.env.cluster.rooms {
            store.clear_placement(KIND, room, server);
            self.unplaced = Some((room, server.to_owned()));
        }
    }

    /// Records this handle's participation (or its end) in the room book (the operators'
    /// view) and in the shared store.
    fn share_participant(&mut self) {
        if let Some(adoptable) = self.adoptable_if_changed() {
            self.core.adoptable(adoptable.clone());
            self.adoptable = adoptable;
        }
        let joined = self
            .participant
            .as_ref()
            .filter(|p| p.id.is_some())
            .and_then(|p| Some((p.room.as_u64()?, p.server.clone())));
        self.book
            .lock()
            .set_participant(self.core.handle_id, joined);
        let Some(store) = self.env.cluster.rooms.clone() else {
            return;
        };
        let now = self
            .participant
            .as_ref()
            .and_then(|p| Some((p.room.as_u64()?, p.id.clone()?, p.server.clone())));
        let before = self.shared_participant.clone();
        if now.as_ref().map(|(r, id, _)| (*r, id.clone())) == before {
            return;
        }
        if let Some((room, _)) = before {
            store.participant_left(KIND, room, self.core.handle_id);
        }
        self.shared_participant = now.as_ref().map(|(r, id, _)| (*r, id.clone()));
        if let Some((room, id, server)) = now {
            let participant = crate::messages::cluster::ParticipantRecord {
                id,
                display: self.display.clone(),
                server,
                subscriber: false,
            };
            store.participant_joined(KIND, room, self.core.handle_id, participant);
        }
    }
}

impl Actor for AudioBridgeHandle {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        if self.participant.is_some() {
            // Adopted: recorded as this proxy's participant, and for a survivor again.
            self.share_participant();
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        // Also reached when the system shuts down.
        if let Some(id) = self.reserving.take() {
            self.book.lock().unreserve(id);
        }
        self.participant = None;
        self.share_participant();
        self.legs.release_all(&self.env.servers);
    }
}

impl WithLegs for AudioBridgeHandle {
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
