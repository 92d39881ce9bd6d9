//! `VideoRoomHandle`: one actor per client videoroom handle.
//!
//! * Requests the proxy answers itself: `create`, `list`, `exists`, the request checks Janus
//!   makes before it looks at a room (429/430), 426 for a room the proxy does not know, 423
//!   for an unknown request, 424 for a participant request before `join`.
//! * Every other room request (`join`, `joinandconfigure`, `edit`, `destroy`, `allowed`,
//!   `kick`, `moderate`, `enable_recording`, `listparticipants`, `listforwarders`,
//!   `rtp_forward`, `stop_rtp_forward`) goes, unchanged, to a *leg* — a backend videoroom
//!   handle — on the room's server; the room is placed and created there first if it is
//!   not yet. Successful `edit`, `destroy`, `allowed` and `enable_recording` replies update
//!   the room book, so that a room created again elsewhere has the same settings.
//! * Once the handle joined (as publisher or subscriber), participant requests
//!   (`configure`, `publish`, `unpublish`, `start`, `pause`, `switch`, `update`, `leave`, …),
//!   trickles and the core `hangup` go to the leg it joined with; that leg's events come back
//!   with the client's ids.
//!
//! Requests are processed one at a time, in order (as Janus's plugin queue does): a request
//! that waits for its room's placement shuts the [`CommandQueue`]'s gate and holds the later
//! ones.
//!
//! **Backend lost.** When the server of the room a handle joined goes away, the client gets
//! what a participant gets when Janus itself removes it from a room: a core `hangup` (reason
//! `Backend server unavailable`) if a PeerConnection was negotiated, then the videoroom
//! event of a participant that left — `{"videoroom":"event","room":R,"leaving":"ok",
//! "reason":"Backend server unavailable"}` for a publisher (the shape of Janus's `kicked`
//! notice), `{"videoroom":"event","room":R,"left":"ok","reason":…}` for a subscriber. The
//! handle stays attached and can join again: the room is created again on another server.
//!
//! **Spanning rooms** (`plugins.videoroom_publishers_per_backend > 0`): where a join or a
//! request about one publisher goes is [`super::routing::target_of`]'s; the handle tells the
//! room's [`RoomCoordinator`](super::coordinator::RoomCoordinator) when its publisher's
//! PeerConnection is up (`webrtcup`), renegotiates, stops publishing or leaves, and when a
//! server is lost.
//!
//! The actor is split by where its messages come from: [`client`] (the client's requests),
//! [`placement`] (getting a room request to its room's server), [`backend`] (its legs' replies
//! and events), [`peers`] (the room's coordinator); [`adopt`] rebuilds a dead proxy's
//! participant (docs/adoption.md).

mod adopt;
mod backend;
mod client;
mod peers;
mod placement;

use std::collections::HashMap;

use actix::prelude::*;
use janus_protocol::{JsonMap, Trickle};
use serde_json::Value;

use super::routing::Verb;
use super::{Shared, KEY};
use crate::messages::adoption::AdoptableState;
use crate::messages::{ReplyTo, ServersPort};
use crate::plugin::kit::{CommandQueue, HandleCore, Legs, PluginError, Trickles, WithLegs};
use crate::plugin::AttachContext;
pub use placement::RoomRequest;

/// Where a handle is in its life.
enum Life {
    /// In no room.
    Out,
    /// Joining or joined a room.
    In(Joined),
    /// Detached, or its session ended: nothing more is handled.
    Gone,
}

/// The room this handle joined (or is joining) and through which leg.
struct Joined {
    room: u64,
    /// The leg's token.
    leg: u64,
    server: String,
    publisher: bool,
    /// A PeerConnection was negotiated (a jsep went either way).
    media: bool,
    /// The backend confirmed the join (`joined` / `attached`).
    confirmed: bool,
    join_transaction: String,
    /// Publisher: its id, display name, streams (from `joined` / `configured`), and whether
    /// its PeerConnection is up (a spanning room mirrors it to the room's other servers then).
    feed: Option<u64>,
    display: Option<String>,
    streams: Value,
    active: bool,
    /// Spanning rooms: the room's coordinator counts this participant (it tells it what
    /// happens on the room's other servers).
    in_roster: bool,
    /// A publisher's private id (from `joined`), for a survivor (adoption).
    private_id: Option<u64>,
}

/// A room request on its way to its room's server (placing the room, attaching a leg there,
/// creating the backend room): the queue's gate stays shut until it is answered, by the end of
/// its way, its deadline, or the loss of the leg it waits for, whichever comes first.
struct Owed {
    /// Which way this is (a late step of an earlier one finds another serial).
    serial: u64,
    req: RoomRequest,
    /// The leg it waits for, once it has one.
    leg: Option<u64>,
}

pub struct VideoRoomHandle {
    core: HandleCore,
    shared: Shared,
    legs: Legs,
    queue: CommandQueue,
    life: Life,
    owed: Option<Owed>,
    /// The serial of the last [`Owed`].
    ways: u64,
    /// Trickles that came before the handle joined, in order.
    trickles: Vec<Trickle>,
    /// Room requests whose success changes the room book: transaction → (request, room,
    /// body).
    updates: HashMap<String, (Verb, u64, JsonMap)>,
    /// Spanning rooms: `leaving: id` events from the room's server that mean something else
    /// (a mirror removed because its publisher unpublished or was kicked).
    renames: HashMap<u64, &'static str>,
    /// Spanning rooms: a `publishers` event listing only this mirrored publisher is its new
    /// display name.
    display_changes: HashMap<u64, String>,
    /// Shared store: the room just read from it (a second miss is final).
    looked_up: Option<u64>,
    /// The audio-level RTP extension id of the client's last offer (spanning rooms: its
    /// mirrors' targets need it for their `talking` events).
    audio_level_ext: Option<u64>,
    /// What the session was last told a survivor needs to rebuild this handle.
    adoptable: Option<AdoptableState>,
}

impl VideoRoomHandle {
    pub fn new(ctx: AttachContext, shared: Shared) -> Self {
        let core = HandleCore::new(
            ctx.session_id,
            ctx.handle_id,
            ctx.opaque_id,
            super::PACKAGE.into(),
            KEY,
            ctx.session_port,
            shared.env.frames.clone(),
        );
        VideoRoomHandle {
            core,
            shared,
            legs: Legs::default(),
            queue: CommandQueue::new(Trickles::InOrder),
            life: Life::Out,
            owed: None,
            ways: 0,
            trickles: Vec::new(),
            updates: HashMap::new(),
            renames: HashMap::new(),
            display_changes: HashMap::new(),
            looked_up: None,
            audio_level_ext: None,
            adoptable: None,
        }
    }

    fn is_gone(&self) -> bool {
        matches!(self.life, Life::Gone)
    }

    fn joined(&self) -> Option<&Joined> {
        match &self.life {
            Life::In(j) => Some(j),
            _ => None,
        }
    }

    fn joined_mut(&mut self) -> Option<&mut Joined> {
        match &mut self.life {
            Life::In(j) => Some(j),
            _ => None,
        }
    }

    /// Out of the room (if in one): what it was.
    fn take_joined(&mut self) -> Option<Joined> {
        match std::mem::replace(&mut self.life, Life::Out) {
            Life::In(j) => {
                // No longer counts where it was, nor keeps its room from expiring.
                let handle = self.core.handle_id;
                self.shared.rooms.lock().seat_freed(j.room, handle);
                if !j.publisher {
                    if let Some(store) = &self.shared.env.cluster.rooms {
                        let kind = crate::messages::cluster::RoomKind::VideoRoom;
                        store.participant_left(kind, j.room, self.core.handle_id);
                    }
                }
                Some(j)
            }
            other => {
                self.life = other;
                None
            }
        }
    }

    /// The ready leg the handle joined with.
    fn joined_leg(&self) -> Option<u64> {
        let token = self.joined()?.leg;
        self.legs
            .get(token)
            .filter(|l| l.is_ready())
            .map(|l| l.token)
    }

    /// The ready leg on `server`.
    fn ready_leg(&self, server: &str) -> Option<u64> {
        self.legs
            .iter()
            .find(|l| l.server() == server && l.is_ready())
            .map(|l| l.token)
    }

    /// A plugin error for a request: in the `success` (`asynchronous` false) or as the event
    /// after an `ack`.
    fn refuse(&self, transaction: &str, reply_to: &ReplyTo, asynchronous: bool, e: &PluginError) {
        if asynchronous {
            self.core.ack(transaction, reply_to);
        }
        self.core
            .plugin_error(transaction, reply_to, !asynchronous, e);
    }
}

impl Actor for VideoRoomHandle {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Only an adopted handle starts in a room.
        self.settle_adopted(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        // Also reached when the system shuts down.
        self.left_room();
        self.legs.release_all(&self.shared.env.servers);
    }
}

impl WithLegs for VideoRoomHandle {
    fn core(&self) -> &HandleCore {
        &self.core
    }

    fn legs(&mut self) -> &mut Legs {
        &mut self.legs
    }

    fn servers(&self) -> &ServersPort {
        &self.shared.env.servers
    }
}
