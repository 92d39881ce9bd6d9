//! `RoomCoordinator` (spanning rooms, `plugins.videoroom_spanning`): one actor per room that
//! has participants (it acts once the room spans several servers). It owns the room's [`RoomMirror`] and one control leg (a
//! backend videoroom handle that never joins) per server, and carries out the mirror's requests
//! there: `add_remote_publisher` on the targets, `publish_remotely` on the source,
//! `update_remote_publisher`, `unpublish_remotely`, `remove_remote_publisher`. Handles tell it what
//! happens to their publishers and servers; room-wide requests (`edit`, `destroy`, `allowed`,
//! `enable_recording`) answered by the room's first server are repeated on the others through it.
//!
//! **Several proxies** (a shared store): each room has ONE coordinating proxy, its *owner*,
//! recorded in Redis (`<prefix>:videoroom_owner:<room>`, claimed with
//! `SharedRooms::claim_owner`: held while the owner's heartbeat lives, renewed every
//! `sync_interval_ms`). The coordinator actor runs on every proxy that has handles in the
//! room, in one of two roles:
//!
//! * *owner*: it carries out the plan as above for the participants of every proxy; what it
//!   tells a participant of another proxy goes over the bus (topic `videoroom`, see
//!   [`super::remote`]) to that proxy's coordinator, which hands it to the handle;
//! * *follower*: what its handles tell it (joined, left, publishing, servers) is kept (the
//!   [`Shadow`]) and forwarded over the bus to the owner, in order; `listparticipants` is
//!   asked of the owner; room-wide requests are repeated on the other servers locally.
//!
//! Every coordinator asks Redis who owns the room every `sync_interval_ms`. When the owner's
//! heartbeat is gone (it died or stopped), the first to ask becomes the owner: it rebuilds
//! the roster and mirror plan from its own shadow and from every follower's, which each
//! follower sends again when it sees a new owner; mirrors the previous owner made are
//! adopted (Janus answers 436 to the new `add_remote_publisher`: they are live already).
//! Participants of the previous (dead) owner's proxy are read from the shared participants
//! and removed everywhere: their mirrors are removed (Janus says `leaving`), and where none
//! was, the proxy says `leaving` itself.

//!
//! The actor is split by what it hears from: [`members`] (the room's handles), [`legs`] (its
//! control legs and the backend requests of the plan), [`cluster`] (the other proxies and
//! Redis); [`streams`] holds the plain parts.

mod cluster;
mod demand;
mod legs;
mod members;
pub mod streams;
mod wire;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use janus_protocol::JsonMap;
use serde_json::Value;

use super::mirror::{Notice, RoomMirror, Roster};
use super::{Coordinators, Shared};
use crate::messages::cluster::{BusReply, RoomKind, SharedRooms, StoreDown, StoreFuture};
use crate::plugin::backend_mark;
use crate::plugin::kit::Legs;
use cluster::AskOwner;
use legs::{Opening, PendingList};
use wire::{Shadow, Wire};

pub use streams::{audio_level_ext_id, remote_streams, remote_streams_with_levels};

pub use demand::AwaitFeeds;

/// The bus topic of the videoroom coordinators.
pub const TOPIC: &str = "videoroom";

/// The coordinator of `room`, started if needed.
pub fn start(shared: &Shared, room: u64) -> Addr<RoomCoordinator> {
    let mut map = shared.coordinators.lock();
    if let Some(addr) = map.get(&room).filter(|a| a.connected()) {
        return addr.clone();
    }
    // A coordinator started again (its room emptied once) learns the room's servers anew.
    let mut mirror = RoomMirror::default();
    for server in shared.rooms.lock().servers(room) {
        mirror.server_added(&server);
    }
    let addr = RoomCoordinator {
        room,
        shared: shared.clone(),
        mirror,
        roster: Roster::new(room),
        members: HashMap::new(),
        role: Role::Owner,
        shadow: Shadow::default(),
        legs: Legs::default(),
        opening: HashMap::new(),
        hosts: HashMap::new(),
        next_opening: 0,
        lists: HashMap::new(),
        next_list: 1,
        waiters: Vec::new(),
        idle: demand::Idle::default(),
    }
    .start();
    map.insert(room, addr.clone());
    addr
}

/// The coordinator of `room` if it runs.
pub fn running(coordinators: &Coordinators, room: u64) -> Option<Addr<RoomCoordinator>> {
    coordinators
        .lock()
        .get(&room)
        .filter(|a| a.connected())
        .cloned()
}

/// A message of the bus topic for this room's coordinator.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FromBus {
    pub from: String,
    pub body: Value,
    pub reply: Option<BusReply>,
}

/// The live proxies, after a sync round: an owner drops the participants of dead ones; a
/// follower of a dead owner asks at once who coordinates now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ProxiesAlive(pub HashSet<String>);

/// Where a participant handle of the roster is.
#[derive(Clone)]
enum Member {
    Local(Recipient<RoomNotice>),
    /// On another proxy: notices go there over the bus.
    Remote(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    Owner,
    /// Another proxy coordinates the room.
    Follower(String),
}

/// The room's backend room on `server` exists.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ServerJoined {
    pub server: String,
}

/// `server` is lost.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ServerLost {
    pub server: String,
}

/// A publisher's PeerConnection is up (or it renegotiated).
#[derive(Message)]
#[rtype(result = "()")]
pub struct PublisherActive {
    pub server: String,
    pub id: u64,
    pub display: Option<String>,
    pub streams: Value,
}

/// A publisher stopped publishing but stays in the room (`unpublish`, PeerConnection
/// closed): participants elsewhere see it `unpublished`, as on its own server.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PublisherGone {
    pub id: u64,
}

/// What the coordinator tells a participant handle of the room.
#[derive(Message, Debug, Clone, PartialEq)]
#[rtype(result = "()")]
pub enum RoomNotice {
    /// A videoroom event to deliver (plugin data), as its own server would have sent it.
    Event(Value),
    /// The next `leaving: id` from the handle's server is a mirror's removal that means
    /// `as_key: id` (`unpublished`, `kicked`), as Janus says it to the publisher's own server.
    Rename { id: u64, as_key: &'static str },
    /// The next `publishers` event listing only `id` from the handle's server is the mirror's
    /// update for a new display name: Janus says `{"videoroom":"event","id":id,"display":..}`
    /// to the publisher's own server.
    Display { id: u64, display: String },
}

/// A participant (`ptype: publisher`) joined on `server`. Answered with the attendees on
/// the room's other servers, for the newcomer's `joined` (Janus's `attendees`).
#[derive(Message)]
#[rtype(result = "Vec<Value>")]
pub struct ParticipantJoined {
    pub handle: u64,
    pub server: String,
    pub id: u64,
    pub display: Option<String>,
    pub notify: Recipient<RoomNotice>,
}

/// A participant left the room; publishing or not.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ParticipantLeft {
    pub handle: u64,
    pub how: Departure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure {
    /// `leave`, detach, session gone.
    Left,
    /// By a `kick`.
    Kicked,
    /// The room was destroyed: every server says so itself, and its mirrors went with it.
    RoomDestroyed,
}

/// The coordinator found its room empty: it ends unless someone came meanwhile.
#[derive(Message)]
#[rtype(result = "()")]
struct EndIfEmpty;

/// A room-wide request the first server accepted: repeated on the others.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Broadcast {
    pub body: JsonMap,
    /// The room's servers when it was answered (a `destroy` has removed the room since).
    pub servers: Vec<String>,
    pub except: String,
    /// The room was destroyed: the coordinator ends after this.
    pub last: bool,
}

/// `listparticipants` over every server of the room: the merged list is sent to `reply`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ListParticipants {
    pub reply: tokio::sync::oneshot::Sender<Vec<Value>>,
}

pub struct RoomCoordinator {
    room: u64,
    shared: Shared,
    mirror: RoomMirror,
    roster: Roster,
    /// Where to tell each participant handle of the roster (a follower: its own handles).
    members: HashMap<u64, Member>,
    role: Role,
    shadow: Shadow,
    /// One control leg per server (a backend videoroom handle that never joins).
    legs: Legs,
    /// Servers whose control leg is being placed or attached, with what waits for it.
    opening: HashMap<String, Opening>,
    next_opening: u64,
    /// Where the room's other servers send each server mirrored RTP (see
    /// [`streams::rtp_host`]), from the placement of its control leg.
    hosts: HashMap<String, String>,
    lists: HashMap<u64, PendingList>,
    next_list: u64,
    /// Subscribers' joins waiting for their feeds' mirrors.
    waiters: Vec<demand::FeedWaiter>,
    /// The room's servers nobody uses, since when.
    idle: demand::Idle,
}

impl RoomCoordinator {
    /// The secret of the room's backend rooms (`plugins.backend_room_secret`, else the
    /// client's).
    fn secret(&self) -> Option<String> {
        let rooms = self.shared.rooms.lock();
        let own = rooms.get(self.room).and_then(|r| r.secret());
        backend_mark::own_secret(&self.shared.env.settings.backend_room_secret, own)
            .map(str::to_owned)
    }

    fn body(&self, request_name: &str) -> JsonMap {
        let mut body = JsonMap::new();
        body.insert("request".into(), request_name.into());
        body.insert("room".into(), self.room.into());
        if let Some(secret) = self.secret() {
            body.insert("secret".into(), secret.into());
        }
        body
    }

    fn deliver(&self, notices: Vec<Notice>) {
        for n in notices {
            for h in &n.to {
                self.notify(*h, RoomNotice::Event(n.data.clone()));
            }
        }
    }

    /// Tells participant `handle` (on this proxy, or on another over the bus).
    fn notify(&self, handle: u64, notice: RoomNotice) {
        match self.members.get(&handle) {
            Some(Member::Local(to)) => to.do_send(notice),
            Some(Member::Remote(proxy)) => {
                if let Some(bus) = &self.shared.env.cluster.bus {
                    let body = Wire::Notice { handle, notice }.to_json(self.room);
                    bus.send(proxy, TOPIC, body);
                }
            }
            None => {}
        }
    }

    /// Tells the participants on the servers publisher `id` is mirrored to that the removal
    /// of its mirror (`leaving` from their server) means `as_key`.
    fn rename_removal(&self, id: u64, as_key: &'static str) {
        let targets = self.mirror.targets(id);
        log::debug!("videoroom room {}: {id} {as_key} on {targets:?}", self.room);
        for h in self.roster.on(&targets) {
            self.notify(h, RoomNotice::Rename { id, as_key });
        }
    }

    /// No participant and no publisher left: the coordinator ends (its control legs are
    /// detached). It leaves the map at once, under its lock, so that whoever needs the room
    /// from now on starts a new one; what was sent to it before is still handled (the
    /// `EndIfEmpty` comes after in its mailbox).
    fn end_if_empty(&mut self, ctx: &mut Context<Self>) {
        if !self.is_empty() {
            return;
        }
        let mut map = self.shared.coordinators.lock();
        if map.get(&self.room).is_some_and(|a| *a == ctx.address()) {
            map.remove(&self.room);
            ctx.address().do_send(EndIfEmpty);
        }
    }

    fn is_empty(&self) -> bool {
        match self.role {
            Role::Owner => self.roster.is_empty() && self.mirror.is_empty(),
            Role::Follower(_) => self.shadow.is_empty() && self.members.is_empty(),
        }
    }

    /// The shared store, when spanning rooms are coordinated between proxies.
    fn shared_store(&self) -> Option<Arc<dyn SharedRooms>> {
        if !self.shared.spans() {
            return None;
        }
        self.shared.env.cluster.bus.as_ref()?;
        self.shared.env.cluster.rooms.clone()
    }

    fn me(&self) -> String {
        self.shared
            .env
            .cluster
            .bus
            .as_ref()
            .map(|b| b.proxy_id().to_owned())
            .unwrap_or_default()
    }

    /// Claims (or renews) the coordination of the room for a proxy's heartbeat lifetime:
    /// who coordinates it now (None: no shared store).
    fn claim(&self) -> Option<StoreFuture<Result<String, StoreDown>>> {
        let store = self.shared_store()?;
        let ttl = self.shared.env.heartbeat_ttl.max(Duration::from_secs(1));
        Some(store.claim_owner(RoomKind::VideoRoom, self.room, ttl))
    }

    /// How often Redis is asked who coordinates the room.
    fn sync_interval(&self) -> Duration {
        self.shared.env.sync_interval.max(Duration::from_millis(10))
    }

    fn to_owner(&self, owner: &str, message: Wire) {
        if let Some(bus) = &self.shared.env.cluster.bus {
            bus.send(owner, TOPIC, message.to_json(self.room));
        }
    }
}

impl Handler<EndIfEmpty> for RoomCoordinator {
    type Result = ();

    fn handle(&mut self, _: EndIfEmpty, ctx: &mut Context<Self>) {
        if self.is_empty() && self.lists.is_empty() {
            return ctx.stop();
        }
        // Someone joined through the old address meanwhile: carry on if nobody replaced us.
        let mut map = self.shared.coordinators.lock();
        if !map.get(&self.room).is_some_and(|a| a.connected()) {
            map.insert(self.room, ctx.address());
        }
    }
}

impl Actor for RoomCoordinator {
    type Context = Context<Self>;

    /// With several proxies: who coordinates the room is settled before anything else is
    /// handled, then asked again every `sync_interval_ms`.
    fn started(&mut self, ctx: &mut Self::Context) {
        let (_, period) = self.grace();
        ctx.run_interval(period, |act, ctx| act.leave_idle_servers(ctx));
        let Some(claim) = self.claim() else {
            return;
        };
        ctx.wait(claim.into_actor(self).map(|owner, act, _| {
            if let Ok(owner) = owner {
                if owner != act.me() {
                    log::debug!("videoroom room {}: coordinated by proxy {owner}", act.room);
                    act.role = Role::Follower(owner);
                }
            }
        }));
        ctx.run_interval(self.sync_interval(), |_, ctx| ctx.notify(AskOwner));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let (Role::Owner, Some(store)) = (&self.role, self.shared_store()) {
            actix_rt::spawn(store.release_owner(RoomKind::VideoRoom, self.room));
        }
        self.legs.release_all(&self.shared.env.servers);
        let mut map = self.shared.coordinators.lock();
        if map.get(&self.room).is_some_and(|a| !a.connected()) {
            map.remove(&self.room);
        }
    }
}
