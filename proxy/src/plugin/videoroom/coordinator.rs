//! `RoomCoordinator` (phase 2, `plugins.videoroom_publishers_per_backend > 0`): one actor per
//! room that spans several servers. It owns the room's [`RoomMirror`] and one control leg (a
//! backend videoroom handle that never joins) per server, and carries out the mirror's
//! requests there: `add_remote_publisher` on the targets, `publish_remotely` on the source,
//! `update_remote_publisher`, `unpublish_remotely`, `remove_remote_publisher`. Handles tell it
//! what happens to their publishers and servers; room-wide requests (`edit`, `destroy`,
//! `allowed`, `enable_recording`) answered by the room's first server are repeated on the
//! others through it.
//!
//! **Several proxies** (a shared store): each room has ONE coordinating proxy, its *owner*,
//! recorded in Redis (`<prefix>:videoroom_owner:<room>`, claimed with [`RoomStore::claim_owner`]:
//! held while the owner's heartbeat lives, renewed every `sync_interval_ms`). The coordinator
//! actor runs on every proxy that has handles in the room, in one of two roles:
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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use janus_protocol::JsonMap;
use parking_lot::Mutex;
use serde_json::{json, Value};

use super::mirror::{MirrorOp, Notice, RoomMirror, Roster};
use super::{SharedDirectory, PACKAGE};
use crate::messages::BackendIncoming;
use crate::plugin::backend_handle::{request, BackendLeg};
use crate::registry::PlaceOn;
use crate::state::ProxyState;
use crate::store::bus::Reply;
use crate::store::rooms::{RoomKind, RoomStore};

/// The bus topic of the videoroom coordinators.
pub const TOPIC: &str = "videoroom";

/// The coordinators of this proxy's rooms that span servers.
pub type Coordinators = Arc<Mutex<HashMap<u64, Addr<RoomCoordinator>>>>;

/// The coordinator of `room`, started if needed.
pub fn coordinator(
    coordinators: &Coordinators,
    state: &Arc<ProxyState>,
    directory: &SharedDirectory,
    room: u64,
) -> Addr<RoomCoordinator> {
    let mut map = coordinators.lock();
    if let Some(addr) = map.get(&room).filter(|a| a.connected()) {
        return addr.clone();
    }
    // A coordinator started again (its room emptied once) learns the room's servers anew.
    let mut mirror = RoomMirror::default();
    for server in directory.lock().servers(room) {
        mirror.server_added(&server);
    }
    let addr = RoomCoordinator {
        room,
        state: state.clone(),
        directory: directory.clone(),
        coordinators: coordinators.clone(),
        mirror,
        roster: Roster::new(room),
        members: HashMap::new(),
        role: Role::Owner,
        shadow: Shadow::default(),
        legs: HashMap::new(),
        next_leg: 1,
        lists: HashMap::new(),
        next_list: 1,
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
    pub reply: Option<Reply>,
}

/// The live proxies, after a sync round: an owner drops the participants of dead ones; a
/// follower of a dead owner asks at once who coordinates now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ProxiesAlive(pub HashSet<String>);

/// Time to ask Redis who coordinates the room.
#[derive(Message)]
#[rtype(result = "()")]
struct AskOwner;

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

/// What this proxy's own handles told the coordinator, whatever its role: what a new owner
/// is told again.
#[derive(Default)]
struct Shadow {
    /// Participant handles: server, publisher id, display name.
    members: BTreeMap<u64, (String, u64, Option<String>)>,
    /// Active publishers: server, display name, streams.
    active: BTreeMap<u64, (String, Option<String>, Value)>,
    servers: BTreeSet<String>,
}

impl Shadow {
    fn resync(&self, room: u64) -> Value {
        let members: Vec<Value> = self
            .members
            .iter()
            .map(|(h, (server, id, display))| {
                json!({"handle": h, "server": server, "id": id, "display": display})
            })
            .collect();
        let active: Vec<Value> = self
            .active
            .iter()
            .map(|(id, (server, display, streams))| {
                json!({"id": id, "server": server, "display": display, "streams": streams})
            })
            .collect();
        json!({"t": "resync", "room": room, "members": members, "active": active,
            "servers": self.servers})
    }

    fn is_empty(&self) -> bool {
        self.members.is_empty() && self.active.is_empty()
    }
}

impl RoomNotice {
    fn to_json(&self) -> Value {
        match self {
            RoomNotice::Event(data) => json!({ "event": data }),
            RoomNotice::Rename { id, as_key } => json!({"rename": id, "as": as_key}),
            RoomNotice::Display { id, display } => json!({"display": display, "id": id}),
        }
    }

    fn from_json(v: &Value) -> Option<RoomNotice> {
        if let Some(data) = v.get("event") {
            return Some(RoomNotice::Event(data.clone()));
        }
        if let Some(id) = v.get("rename").and_then(Value::as_u64) {
            let as_key = match v.get("as").and_then(Value::as_str)? {
                "unpublished" => "unpublished",
                "kicked" => "kicked",
                _ => return None,
            };
            return Some(RoomNotice::Rename { id, as_key });
        }
        Some(RoomNotice::Display {
            id: v.get("id")?.as_u64()?,
            display: v.get("display")?.as_str()?.to_owned(),
        })
    }
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
#[derive(Message)]
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

struct PendingList {
    remaining: usize,
    entries: Vec<Value>,
    reply: tokio::sync::oneshot::Sender<Vec<Value>>,
}

/// Merges the participant lists of several servers: each participant once, its own server's
/// entry rather than a mirror's, without Janus's `remote` mark.
pub fn merge_participants(entries: Vec<Value>) -> Vec<Value> {
    let mut merged: Vec<Value> = Vec::new();
    for mut e in entries {
        let remote = e.get("remote").and_then(Value::as_bool) == Some(true);
        if let Some(m) = e.as_object_mut() {
            m.shift_remove("remote");
        }
        let id = e.get("id").cloned();
        match merged.iter_mut().find(|m| m.get("id").cloned() == id) {
            Some(existing) if !remote => *existing = e,
            Some(_) => {}
            None => merged.push(e),
        }
    }
    merged
}

#[derive(Message)]
#[rtype(result = "()")]
struct CtlIncoming {
    leg: u64,
    msg: BackendIncoming,
}

struct CtlForwarder {
    leg: u64,
    to: Addr<RoomCoordinator>,
}

impl Actor for CtlForwarder {
    type Context = Context<Self>;
}

impl Handler<BackendIncoming> for CtlForwarder {
    type Result = ();

    fn handle(&mut self, msg: BackendIncoming, _: &mut Context<Self>) {
        self.to.do_send(CtlIncoming { leg: self.leg, msg });
    }
}

struct CtlLeg {
    id: u64,
    backend: Option<BackendLeg>,
    forwarder: Option<Recipient<BackendIncoming>>,
    /// Where other servers send this server RTP (see [`rtp_host`]).
    host: String,
    attached: bool,
    /// Requests waiting for the attach: body and tag.
    queue: Vec<(JsonMap, String)>,
}

pub struct RoomCoordinator {
    room: u64,
    state: Arc<ProxyState>,
    directory: SharedDirectory,
    coordinators: Coordinators,
    mirror: RoomMirror,
    roster: Roster,
    /// Where to tell each participant handle of the roster (a follower: its own handles).
    members: HashMap<u64, Member>,
    role: Role,
    shadow: Shadow,
    legs: HashMap<String, CtlLeg>,
    next_leg: u64,
    lists: HashMap<u64, PendingList>,
    next_list: u64,
}

/// The host part of a `ws://host:port/path` URL.
pub fn url_host(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = authority
        .rsplit_once('@')
        .map(|(_, a)| a)
        .unwrap_or(authority);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6).to_owned();
    }
    authority.split(':').next().unwrap_or(authority).to_owned()
}

/// Where the room's other Janus servers send a server mirrored RTP (`publish_remotely`'s
/// `host`): its `rtp_host` (from `backend.servers` or its reports) when it has one, else the
/// host of its WebSocket URL `url`.
pub fn rtp_host(rtp_host: Option<&str>, url: &str) -> String {
    rtp_host.map_or_else(|| url_host(url), str::to_owned)
}

impl RoomCoordinator {
    fn secret(&self) -> Option<String> {
        self.directory
            .lock()
            .get(self.room)
            .and_then(|r| r.secret().map(str::to_owned))
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

    fn run(&mut self, ctx: &mut Context<Self>, ops: Vec<MirrorOp>) {
        for op in ops {
            let (server, body, tag) = match op {
                MirrorOp::AddRemote {
                    target,
                    publisher,
                    display,
                    streams,
                } => {
                    let mut b = self.body("add_remote_publisher");
                    b.insert("id".into(), publisher.into());
                    if let Some(d) = display {
                        b.insert("display".into(), d.into());
                    }
                    b.insert("streams".into(), streams);
                    let tag = format!("add:{publisher}:{target}");
                    (target, b, tag)
                }
                MirrorOp::PublishRemotely {
                    source,
                    target,
                    publisher,
                    port,
                    rtcp_port,
                } => {
                    let host = self
                        .legs
                        .get(&target)
                        .map(|l| l.host.clone())
                        .unwrap_or_else(|| "127.0.0.1".to_owned());
                    let mut b = self.body("publish_remotely");
                    b.insert("publisher_id".into(), publisher.into());
                    b.insert("remote_id".into(), target.clone().into());
                    b.insert("host".into(), host.into());
                    b.insert("port".into(), port.into());
                    b.insert("rtcp_port".into(), rtcp_port.into());
                    (source, b, format!("publish:{publisher}:{target}"))
                }
                MirrorOp::UpdateRemote {
                    target,
                    publisher,
                    display,
                    streams,
                } => {
                    let mut b = self.body("update_remote_publisher");
                    b.insert("id".into(), publisher.into());
                    if let Some(d) = display {
                        b.insert("display".into(), d.into());
                    }
                    b.insert("streams".into(), streams);
                    (target, b, format!("update:{publisher}"))
                }
                MirrorOp::UnpublishRemotely {
                    source,
                    target,
                    publisher,
                } => {
                    let mut b = self.body("unpublish_remotely");
                    b.insert("publisher_id".into(), publisher.into());
                    b.insert("remote_id".into(), target.into());
                    (source, b, format!("unpublish:{publisher}"))
                }
                MirrorOp::RemoveRemote { target, publisher } => {
                    let mut b = self.body("remove_remote_publisher");
                    b.insert("id".into(), publisher.into());
                    (target, b, format!("remove:{publisher}"))
                }
            };
            log::debug!("videoroom room {}: {tag} on {server}", self.room);
            self.send(ctx, &server, body, tag);
        }
    }

    /// Sends a request on the control leg of `server` (attached first if needed).
    fn send(&mut self, ctx: &mut Context<Self>, server: &str, body: JsonMap, tag: String) {
        if let Some(leg) = self.legs.get_mut(server) {
            match (&leg.backend, &leg.forwarder, leg.attached) {
                (Some(backend), Some(forwarder), true) => {
                    let mut req = request("message");
                    req.insert("body".into(), Value::Object(body));
                    backend.send(req, Some(tag), Some((forwarder.clone(), None)));
                }
                _ => leg.queue.push((body, tag)),
            }
            return;
        }
        let id = self.next_leg;
        self.next_leg += 1;
        self.legs.insert(
            server.to_owned(),
            CtlLeg {
                id,
                backend: None,
                forwarder: None,
                host: String::new(),
                attached: false,
                queue: vec![(body, tag)],
            },
        );
        let place = self.state.registry.send(PlaceOn {
            server: server.to_owned(),
        });
        let server = server.to_owned();
        let fut = place.into_actor(self).map(move |placement, act, ctx| {
            let Some(leg) = act.legs.get_mut(&server).filter(|l| l.id == id) else {
                if let Ok(Some(p)) = placement {
                    BackendLeg::new(p).end_placement(&act.state.servers.ended);
                }
                return;
            };
            match placement {
                Ok(Some(p)) => {
                    leg.host = rtp_host(p.rtp_host.as_deref(), &p.link.status.url);
                    let forwarder = CtlForwarder {
                        leg: id,
                        to: ctx.address(),
                    }
                    .start()
                    .recipient();
                    let backend = BackendLeg::new(p);
                    backend.attach(PACKAGE, None, forwarder.clone());
                    leg.backend = Some(backend);
                    leg.forwarder = Some(forwarder);
                }
                _ => act.server_gone(ctx, &server),
            }
        });
        ctx.spawn(fut);
    }

    fn on_reply(&mut self, ctx: &mut Context<Self>, tag: &str, frame: &JsonMap) {
        let data = frame
            .get("plugindata")
            .and_then(|p| p.get("data"))
            .cloned()
            .unwrap_or(Value::Null);
        let failed = data.get("error_code").is_some()
            || frame.get("janus").and_then(Value::as_str) == Some("error");
        // A mirror found there already (436) after a hand-over, an orphan that had none:
        // expected, not worth a warning.
        let expected = (tag.starts_with("add:")
            && data.get("error_code").and_then(Value::as_u64) == Some(436))
            || tag.starts_with("orphan:")
            || tag.starts_with("ghost:");
        if failed {
            let why = data.get("error").and_then(Value::as_str).unwrap_or("error");
            if expected {
                log::info!("videoroom room {}: {tag}: {why}", self.room);
            } else {
                log::warn!("videoroom room {}: backend refused {tag}: {why}", self.room);
            }
        }
        let mut parts = tag.splitn(3, ':');
        let kind = parts.next();
        if kind == Some("list") {
            let Some(n) = parts.next().and_then(|n| n.parse::<u64>().ok()) else {
                return;
            };
            let got = data
                .get("participants")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            self.list_part(n, got);
            return;
        }
        if kind == Some("sweep") {
            // After a hand-over: a mirror no active publisher of the plan stands for (its
            // publisher left while nobody coordinated the room) goes.
            let Some(server) = tag.strip_prefix("sweep:").map(str::to_owned) else {
                return;
            };
            let listed = data
                .get("participants")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for p in listed {
                let Some(id) = p.get("id").and_then(Value::as_u64) else {
                    continue;
                };
                let remote = p.get("remote").and_then(Value::as_bool) == Some(true);
                if remote && !self.mirror.is_active(id) {
                    log::info!(
                        "videoroom room {}: mirror of {id} on {server} left behind; removed",
                        self.room
                    );
                    let mut body = self.body("remove_remote_publisher");
                    body.insert("id".into(), id.into());
                    self.send(ctx, &server, body, format!("ghost:{id}"));
                }
            }
            return;
        }
        if kind == Some("orphan") {
            // A dead owner's participant: where no mirror of it was removed (Janus said
            // `leaving` there), the proxy says it.
            let (Some(id), Some(server)) = (
                parts.next().and_then(|i| i.parse::<u64>().ok()),
                parts.next(),
            ) else {
                return;
            };
            if failed {
                let to = self.roster.on(&[server.to_owned()]);
                let data = json!({"videoroom": "event", "room": self.room, "leaving": id});
                self.deliver(vec![Notice { to, data }]);
            }
            return;
        }
        if kind != Some("add") {
            return;
        }
        let (Some(id), Some(target)) = (parts.next().and_then(|i| i.parse().ok()), parts.next())
        else {
            return;
        };
        let ports = (
            data.get("port").and_then(Value::as_u64),
            data.get("rtcp_port").and_then(Value::as_u64),
        );
        match ports {
            (Some(port), rtcp) if !failed => {
                let port = u16::try_from(port).unwrap_or(0);
                let rtcp = rtcp.and_then(|r| u16::try_from(r).ok()).unwrap_or(0);
                let ops = self.mirror.remote_added(target, id, port, rtcp);
                self.run(ctx, ops);
            }
            // There already: made by the coordinator this one took over from.
            _ if data.get("error_code").and_then(Value::as_u64) == Some(436) => {
                self.mirror.remote_exists(target, id)
            }
            _ => self.mirror.remote_failed(target, id),
        }
    }

    fn leg_lost(&mut self, ctx: &mut Context<Self>, leg_id: u64) {
        let server = self
            .legs
            .iter()
            .find(|(_, l)| l.id == leg_id)
            .map(|(s, _)| s.clone());
        if let Some(server) = server {
            self.server_gone(ctx, &server);
        }
    }

    /// `server` is lost (its link, or the control leg there): its participants leave the
    /// room for everyone elsewhere, its publishers' mirrors go, and the others stop sending
    /// there.
    fn server_gone(&mut self, ctx: &mut Context<Self>, server: &str) {
        if let Some(mut leg) = self.legs.remove(server) {
            if let Some(backend) = leg.backend.as_mut() {
                backend.forget();
                backend.end_placement(&self.state.servers.ended);
            }
        }
        // Mirrored publishers are seen leaving through the mirrors' removal.
        let mirror = &self.mirror;
        let notices = self.roster.server_lost(server, |id| mirror.is_active(id));
        self.deliver(notices);
        let ops = self.mirror.server_lost(server);
        self.run(ctx, ops);
        self.end_if_empty(ctx);
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
                if let Some(bus) = self.state.store.bus() {
                    let body = json!({"t": "notice", "room": self.room, "handle": handle,
                        "notice": notice.to_json()});
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
        let mut map = self.coordinators.lock();
        if map.get(&self.room).is_some_and(|a| *a == ctx.address()) {
            map.remove(&self.room);
            ctx.address().do_send(EndIfEmpty);
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
        let mut map = self.coordinators.lock();
        if !map.get(&self.room).is_some_and(|a| a.connected()) {
            map.insert(self.room, ctx.address());
        }
    }
}

impl Handler<ParticipantJoined> for RoomCoordinator {
    type Result = ResponseActFuture<Self, Vec<Value>>;

    fn handle(&mut self, msg: ParticipantJoined, _: &mut Context<Self>) -> Self::Result {
        self.shadow.members.insert(
            msg.handle,
            (msg.server.clone(), msg.id, msg.display.clone()),
        );
        self.members.insert(msg.handle, Member::Local(msg.notify));
        let Role::Follower(owner) = &self.role else {
            let attendees = self.joined(msg.handle, &msg.server, msg.id, msg.display);
            return Box::pin(fut::ready(attendees));
        };
        // The owner answers with the attendees elsewhere (none if it does not in time).
        let body = json!({"t": "joined", "room": self.room, "handle": msg.handle,
            "server": msg.server, "id": msg.id, "display": msg.display});
        let (owner, bus) = (owner.clone(), self.state.store.bus());
        Box::pin(
            async move {
                let Some(bus) = bus else {
                    return Vec::new();
                };
                match bus.request(&owner, TOPIC, body).await {
                    Ok(answer) => answer
                        .get("attendees")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                    Err(_) => Vec::new(),
                }
            }
            .into_actor(self),
        )
    }
}

impl RoomCoordinator {
    /// Owner: participant `handle` joined on `server` (the member is recorded already).
    fn joined(
        &mut self,
        handle: u64,
        server: &str,
        id: u64,
        display: Option<String>,
    ) -> Vec<Value> {
        let notify_joining = self
            .directory
            .lock()
            .get(self.room)
            .and_then(|r| r.settings.get("notify_joining").and_then(Value::as_bool))
            .unwrap_or(false);
        let mirror = &self.mirror;
        let (notice, attendees) =
            self.roster
                .joined(handle, server, id, display, notify_joining, |id| {
                    mirror.is_active(id)
                });
        self.deliver(notice.into_iter().collect());
        attendees
    }
}

impl Handler<ParticipantLeft> for RoomCoordinator {
    type Result = ();

    fn handle(&mut self, msg: ParticipantLeft, ctx: &mut Context<Self>) {
        if let Some((_, id, _)) = self.shadow.members.remove(&msg.handle) {
            self.shadow.active.remove(&id);
        }
        if let Role::Follower(owner) = &self.role {
            self.members.remove(&msg.handle);
            let how = match msg.how {
                Departure::Left => "left",
                Departure::Kicked => "kicked",
                Departure::RoomDestroyed => "destroyed",
            };
            let body = json!({"t": "left", "room": self.room, "handle": msg.handle, "how": how});
            self.to_owner(owner, body);
            return self.end_if_empty(ctx);
        }
        self.left(ctx, msg.handle, msg.how);
    }
}

impl RoomCoordinator {
    /// Owner: participant `handle` left.
    fn left(&mut self, ctx: &mut Context<Self>, handle: u64, how: Departure) {
        self.members.remove(&handle);
        let Some(id) = self.roster.member_id(handle) else {
            return self.end_if_empty(ctx);
        };
        let mirrored = self.mirror.is_active(id);
        let kicked = how == Departure::Kicked;
        if how == Departure::RoomDestroyed {
            self.roster.left(handle, false, true);
            self.mirror.publisher_gone(id);
            return self.end_if_empty(ctx);
        }
        if let Some((_, notice)) = self.roster.left(handle, kicked, mirrored) {
            self.deliver(notice.into_iter().collect());
        }
        if mirrored {
            if kicked {
                self.rename_removal(id, "kicked");
            }
            let ops = self.mirror.publisher_gone(id);
            self.run(ctx, ops);
        }
        self.end_if_empty(ctx);
    }
}

impl RoomCoordinator {
    /// One server's part of a merged `listparticipants` (empty when it failed).
    fn list_part(&mut self, n: u64, got: Vec<Value>) {
        let done = match self.lists.get_mut(&n) {
            Some(p) => {
                p.entries.extend(got);
                p.remaining = p.remaining.saturating_sub(1);
                p.remaining == 0
            }
            None => false,
        };
        if done {
            if let Some(p) = self.lists.remove(&n) {
                let _ = p.reply.send(merge_participants(p.entries));
            }
        }
    }
}

impl Handler<ListParticipants> for RoomCoordinator {
    type Result = ();

    fn handle(&mut self, msg: ListParticipants, ctx: &mut Context<Self>) {
        if let Role::Follower(owner) = &self.role {
            // The owner knows the room's servers best (and has legs there).
            let (owner, bus, room) = (owner.clone(), self.state.store.bus(), self.room);
            let ask = async move {
                let bus = bus?;
                let answer = bus
                    .request(&owner, TOPIC, json!({"t": "list", "room": room}))
                    .await
                    .ok()?;
                answer
                    .get("participants")
                    .and_then(Value::as_array)
                    .cloned()
            };
            actix_rt::spawn(async move {
                if let Some(list) = ask.await {
                    let _ = msg.reply.send(list);
                }
            });
            return;
        }
        self.list(ctx, msg.reply);
    }
}

impl RoomCoordinator {
    /// Owner: `listparticipants` asked of every server of the room, merged.
    fn list(&mut self, ctx: &mut Context<Self>, reply: tokio::sync::oneshot::Sender<Vec<Value>>) {
        let servers = self.directory.lock().servers(self.room);
        if servers.is_empty() {
            let _ = reply.send(Vec::new());
            return;
        }
        let n = self.next_list;
        self.next_list += 1;
        self.lists.insert(
            n,
            PendingList {
                remaining: servers.len(),
                entries: Vec::new(),
                reply,
            },
        );
        for server in servers {
            let mut body = JsonMap::new();
            body.insert("request".into(), "listparticipants".into());
            body.insert("room".into(), self.room.into());
            self.send(ctx, &server, body, format!("list:{n}"));
        }
    }
}

impl Actor for RoomCoordinator {
    type Context = Context<Self>;

    /// With several proxies: who coordinates the room is settled before anything else is
    /// handled, then asked again every `sync_interval_ms`.
    fn started(&mut self, ctx: &mut Self::Context) {
        let Some(store) = self.shared_store() else {
            return;
        };
        let (room, ttl) = (self.room, self.owner_ttl());
        let claim = async move { store.claim_owner(RoomKind::VideoRoom, room, ttl).await };
        ctx.wait(claim.into_actor(self).map(|owner, act, _| {
            if let Ok(owner) = owner {
                if owner != act.me() {
                    log::debug!("videoroom room {}: coordinated by proxy {owner}", act.room);
                    act.role = Role::Follower(owner);
                }
            }
        }));
        let every = Duration::from_millis(self.state.config.store.sync_interval_ms.max(10));
        ctx.run_interval(every, |_, ctx| ctx.notify(AskOwner));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let (Role::Owner, Some(store)) = (&self.role, self.shared_store()) {
            let room = self.room;
            actix_rt::spawn(async move { store.release_owner(RoomKind::VideoRoom, room).await });
        }
        for (_, mut leg) in self.legs.drain() {
            if let Some(backend) = leg.backend.as_mut() {
                backend.release();
                backend.end_placement(&self.state.servers.ended);
            }
        }
        let mut map = self.coordinators.lock();
        if map.get(&self.room).is_some_and(|a| !a.connected()) {
            map.remove(&self.room);
        }
    }
}

impl Handler<ServerJoined> for RoomCoordinator {
    type Result = ();

    fn handle(&mut self, msg: ServerJoined, ctx: &mut Context<Self>) {
        self.shadow.servers.insert(msg.server.clone());
        if let Role::Follower(owner) = &self.role {
            let body = json!({"t": "server_joined", "room": self.room, "server": msg.server});
            return self.to_owner(owner, body);
        }
        let ops = self.mirror.server_added(&msg.server);
        self.run(ctx, ops);
    }
}

impl Handler<ServerLost> for RoomCoordinator {
    type Result = ();

    fn handle(&mut self, msg: ServerLost, ctx: &mut Context<Self>) {
        self.shadow.servers.remove(&msg.server);
        let lost: Vec<u64> = self
            .shadow
            .members
            .iter()
            .filter(|(_, (s, _, _))| *s == msg.server)
            .map(|(h, _)| *h)
            .collect();
        self.shadow.members.retain(|_, (s, _, _)| *s != msg.server);
        self.shadow.active.retain(|_, (s, _, _)| *s != msg.server);
        if let Role::Follower(owner) = &self.role {
            // Its handles there are out of the room (the owner tells the others).
            for h in lost {
                self.members.remove(&h);
            }
            let body = json!({"t": "server_lost", "room": self.room, "server": msg.server});
            self.to_owner(owner, body);
            self.drop_leg(&msg.server);
            return self.end_if_empty(ctx);
        }
        self.server_gone(ctx, &msg.server);
    }
}

impl Handler<PublisherActive> for RoomCoordinator {
    type Result = ();

    fn handle(&mut self, msg: PublisherActive, ctx: &mut Context<Self>) {
        self.shadow.active.insert(
            msg.id,
            (msg.server.clone(), msg.display.clone(), msg.streams.clone()),
        );
        if let Role::Follower(owner) = &self.role {
            let body = json!({"t": "active", "room": self.room, "server": msg.server,
                "id": msg.id, "display": msg.display, "streams": msg.streams});
            return self.to_owner(owner, body);
        }
        self.active(ctx, msg);
    }
}

impl RoomCoordinator {
    /// Owner: a publisher's PeerConnection is up (or it renegotiated).
    fn active(&mut self, ctx: &mut Context<Self>, msg: PublisherActive) {
        // A new display name of a mirrored publisher: its mirrors' servers say it as Janus.
        if let Some((live, old)) = self.mirror.live(msg.id) {
            if let Some(display) = msg.display.as_deref().filter(|d| Some(*d) != old) {
                for h in self.roster.on(&live) {
                    self.notify(
                        h,
                        RoomNotice::Display {
                            id: msg.id,
                            display: display.to_owned(),
                        },
                    );
                }
            }
        }
        // The publisher's own server counts as a server of the room.
        let mut ops = self.mirror.server_added(&msg.server);
        ops.extend(
            self.mirror
                .publisher_active(&msg.server, msg.id, msg.display, msg.streams),
        );
        self.run(ctx, ops);
    }
}

impl Handler<PublisherGone> for RoomCoordinator {
    type Result = ();

    fn handle(&mut self, msg: PublisherGone, ctx: &mut Context<Self>) {
        self.shadow.active.remove(&msg.id);
        if let Role::Follower(owner) = &self.role {
            let body = json!({"t": "gone", "room": self.room, "id": msg.id});
            self.to_owner(owner, body);
            return self.end_if_empty(ctx);
        }
        self.gone(ctx, msg.id);
    }
}

impl RoomCoordinator {
    /// Owner: publisher `id` stopped publishing.
    fn gone(&mut self, ctx: &mut Context<Self>, id: u64) {
        let msg = PublisherGone { id };
        self.rename_removal(msg.id, "unpublished");
        let ops = self.mirror.publisher_gone(msg.id);
        self.run(ctx, ops);
        self.end_if_empty(ctx);
    }
}

impl Handler<Broadcast> for RoomCoordinator {
    type Result = ();

    fn handle(&mut self, msg: Broadcast, ctx: &mut Context<Self>) {
        for server in msg.servers.iter().filter(|s| **s != msg.except) {
            self.send(ctx, server, msg.body.clone(), "broadcast".to_owned());
        }
        if msg.last {
            // Let the requests go out, then end (the legs are released on stop).
            ctx.run_later(std::time::Duration::from_secs(2), |_, ctx| ctx.stop());
        }
    }
}

impl Handler<CtlIncoming> for RoomCoordinator {
    type Result = ();

    fn handle(&mut self, msg: CtlIncoming, ctx: &mut Context<Self>) {
        let Some(server) = self
            .legs
            .iter()
            .find(|(_, l)| l.id == msg.leg)
            .map(|(s, _)| s.clone())
        else {
            return;
        };
        match msg.msg {
            BackendIncoming::Reply {
                frame,
                client_transaction,
                ..
            } => {
                let attached_now = self.legs.get(&server).is_some_and(|l| !l.attached);
                if attached_now {
                    let Some(leg) = self.legs.get_mut(&server) else {
                        return;
                    };
                    let ok = leg
                        .backend
                        .as_mut()
                        .is_some_and(|b| b.on_attach_reply(&frame).is_ok());
                    if !ok {
                        let id = leg.id;
                        return self.leg_lost(ctx, id);
                    }
                    leg.attached = true;
                    let queue = std::mem::take(&mut leg.queue);
                    for (body, tag) in queue {
                        self.send(ctx, &server, body, tag);
                    }
                    return;
                }
                if let Some(tag) = client_transaction {
                    self.on_reply(ctx, &tag, &frame);
                }
            }
            BackendIncoming::Event { frame, .. } => {
                if frame.get("janus").and_then(Value::as_str) == Some("detached") {
                    if let Some(b) = self.legs.get_mut(&server).and_then(|l| l.backend.as_mut()) {
                        b.handle = None;
                    }
                    self.leg_lost(ctx, msg.leg);
                }
            }
            BackendIncoming::LinkLost { .. } => self.leg_lost(ctx, msg.leg),
        }
    }
}

// ---- several proxies: ownership and the bus ----

impl RoomCoordinator {
    /// The shared store, when rooms that span servers are coordinated between proxies.
    fn shared_store(&self) -> Option<Arc<RoomStore>> {
        if self.state.config.plugins.videoroom_publishers_per_backend == 0 {
            return None;
        }
        self.state.store.bus()?;
        self.state.store.rooms()
    }

    fn me(&self) -> String {
        self.state
            .store
            .bus()
            .map(|b| b.proxy_id().to_owned())
            .unwrap_or_default()
    }

    /// How long an owner's claim lasts unrenewed (a proxy's heartbeat lifetime).
    fn owner_ttl(&self) -> Duration {
        Duration::from_secs(self.state.config.store.heartbeat_ttl_s.max(1))
    }

    fn is_empty(&self) -> bool {
        match self.role {
            Role::Owner => self.roster.is_empty() && self.mirror.is_empty(),
            Role::Follower(_) => self.shadow.is_empty() && self.members.is_empty(),
        }
    }

    fn to_owner(&self, owner: &str, body: Value) {
        if let Some(bus) = self.state.store.bus() {
            bus.send(owner, TOPIC, body);
        }
    }

    fn drop_leg(&mut self, server: &str) {
        if let Some(mut leg) = self.legs.remove(server) {
            if let Some(backend) = leg.backend.as_mut() {
                backend.forget();
                backend.end_placement(&self.state.servers.ended);
            }
        }
    }

    /// Redis says `owner` coordinates the room now.
    fn owner_is(&mut self, ctx: &mut Context<Self>, owner: String) {
        let me = self.me();
        let previous = self.role.clone();
        match previous {
            Role::Owner if owner == me => {}
            Role::Follower(ref o) if *o == owner => {}
            _ if owner == me => {
                let Role::Follower(previous) = previous else {
                    return;
                };
                log::info!(
                    "videoroom room {}: coordinated here now (was proxy {previous})",
                    self.room
                );
                self.become_owner(ctx, previous);
            }
            _ => {
                log::info!(
                    "videoroom room {}: coordinated by proxy {owner} now",
                    self.room
                );
                if previous == Role::Owner {
                    // Another proxy took the room over (this one was cut off from Redis):
                    // it rebuilds the plan; here only this proxy's own handles stay.
                    self.roster = Roster::new(self.room);
                    self.mirror = RoomMirror::default();
                    self.members.retain(|_, m| matches!(m, Member::Local(_)));
                }
                self.role = Role::Follower(owner.clone());
                self.to_owner(&owner, self.shadow.resync(self.room));
            }
        }
    }

    /// This proxy coordinates the room from now on: the plan is rebuilt from what its own
    /// handles said (the followers send theirs when they see the new owner), then the
    /// previous owner's participants are removed everywhere.
    fn become_owner(&mut self, ctx: &mut Context<Self>, previous: String) {
        self.role = Role::Owner;
        self.roster = Roster::new(self.room);
        self.mirror = RoomMirror::default();
        self.members.retain(|_, m| matches!(m, Member::Local(_)));
        let mut ops = Vec::new();
        let mut servers = self.directory.lock().servers(self.room);
        servers.extend(self.shadow.servers.iter().cloned());
        for server in servers {
            ops.extend(self.mirror.server_added(&server));
        }
        let members: Vec<_> = self
            .shadow
            .members
            .iter()
            .map(|(h, (s, id, d))| (*h, s.clone(), *id, d.clone()))
            .collect();
        for (handle, server, id, display) in members {
            self.roster
                .joined(handle, &server, id, display, false, |_| false);
        }
        let active: Vec<_> = self
            .shadow
            .active
            .iter()
            .map(|(id, (s, d, st))| (*id, s.clone(), d.clone(), st.clone()))
            .collect();
        for (id, server, display, streams) in active {
            ops.extend(self.mirror.publisher_active(&server, id, display, streams));
        }
        self.run(ctx, ops);
        // The followers' resyncs come within a round or two: then the orphans.
        let wait = Duration::from_millis(self.state.config.store.sync_interval_ms.max(10) * 3);
        ctx.run_later(wait, move |act, ctx| act.remove_orphans(ctx, previous));
    }

    /// The participants of `dead` (the previous owner's proxy), as the shared participants
    /// list them, that no live proxy reported: their mirrors go, and where there was none,
    /// the participants there are told they left. Then every server's mirrors are listed and
    /// those of publishers the plan does not have are removed (a publisher of a follower that
    /// left while nobody coordinated the room).
    fn remove_orphans(&mut self, ctx: &mut Context<Self>, dead: String) {
        let Some(store) = self.shared_store() else {
            return;
        };
        let room = self.room;
        let read = async move { store.participants_of(RoomKind::VideoRoom, room).await };
        ctx.spawn(read.into_actor(self).map(move |entries, act, ctx| {
            let Ok(entries) = entries else {
                return;
            };
            if act.role != Role::Owner {
                return;
            }
            let servers: Vec<String> = act.mirror.servers().cloned().collect();
            for (proxy, p) in entries {
                let Some(id) = p.id.as_u64() else {
                    continue;
                };
                if proxy != dead || act.roster.has_id(id) || act.mirror.is_active(id) {
                    continue;
                }
                log::info!(
                    "videoroom room {}: participant {id} of proxy {dead} is gone",
                    act.room
                );
                for server in servers.iter().filter(|s| **s != p.server) {
                    let mut body = act.body("remove_remote_publisher");
                    body.insert("id".into(), id.into());
                    act.send(ctx, server, body, format!("orphan:{id}:{server}"));
                }
            }
            // Then every mirror that nobody stands for any more (after the removals above:
            // one control leg per server, requests answered in order).
            for server in &servers {
                let mut body = JsonMap::new();
                body.insert("request".into(), "listparticipants".into());
                body.insert("room".into(), act.room.into());
                act.send(ctx, server, body, format!("sweep:{server}"));
            }
            act.end_if_empty(ctx);
        }));
    }

    /// Owner: another proxy's handles, as its coordinator had them (it sees this proxy as
    /// the owner for the first time).
    fn resync(&mut self, ctx: &mut Context<Self>, from: &str, body: &Value) {
        let list = |key: &str| body.get(key).and_then(Value::as_array).cloned();
        let mut ops = Vec::new();
        for server in list("servers").unwrap_or_default() {
            if let Some(server) = server.as_str() {
                ops.extend(self.mirror.server_added(server));
            }
        }
        let mut reported = HashSet::new();
        for m in list("members").unwrap_or_default() {
            let (Some(handle), Some(server), Some(id)) = (
                m.get("handle").and_then(Value::as_u64),
                m.get("server").and_then(Value::as_str),
                m.get("id").and_then(Value::as_u64),
            ) else {
                continue;
            };
            reported.insert(handle);
            if self.roster.member_id(handle).is_none() {
                let display = m.get("display").and_then(Value::as_str).map(str::to_owned);
                self.roster
                    .joined(handle, server, id, display, false, |_| false);
            }
            self.members.insert(handle, Member::Remote(from.to_owned()));
        }
        for p in list("active").unwrap_or_default() {
            let (Some(id), Some(server)) = (
                p.get("id").and_then(Value::as_u64),
                p.get("server").and_then(Value::as_str),
            ) else {
                continue;
            };
            if !self.mirror.is_active(id) {
                let display = p.get("display").and_then(Value::as_str).map(str::to_owned);
                let streams = p.get("streams").cloned().unwrap_or(Value::Null);
                ops.extend(self.mirror.publisher_active(server, id, display, streams));
            }
        }
        self.run(ctx, ops);
        // Its handles that left meanwhile.
        let gone: Vec<u64> = self
            .members
            .iter()
            .filter(|(h, m)| matches!(m, Member::Remote(p) if p == from) && !reported.contains(h))
            .map(|(h, _)| *h)
            .collect();
        for handle in gone {
            self.left(ctx, handle, Departure::Left);
        }
    }
}

impl Handler<AskOwner> for RoomCoordinator {
    type Result = ();

    fn handle(&mut self, _: AskOwner, ctx: &mut Context<Self>) {
        let Some(store) = self.shared_store() else {
            return;
        };
        let (room, ttl) = (self.room, self.owner_ttl());
        let claim = async move { store.claim_owner(RoomKind::VideoRoom, room, ttl).await };
        // Waited for: no message is handled under an owner that is no longer one.
        ctx.wait(claim.into_actor(self).map(|owner, act, ctx| {
            if let Ok(owner) = owner {
                act.owner_is(ctx, owner);
            }
        }));
    }
}

impl Handler<ProxiesAlive> for RoomCoordinator {
    type Result = ();

    fn handle(&mut self, msg: ProxiesAlive, ctx: &mut Context<Self>) {
        match &self.role {
            Role::Follower(owner) if !msg.0.contains(owner) => ctx.notify(AskOwner),
            Role::Follower(_) => {}
            Role::Owner => {
                // Participants of a dead proxy left (Janus tells their own servers once the
                // dead proxy's sessions are reaped; the others are told here).
                let dead: Vec<u64> = self
                    .members
                    .iter()
                    .filter(|(_, m)| matches!(m, Member::Remote(p) if !msg.0.contains(p)))
                    .map(|(h, _)| *h)
                    .collect();
                for handle in dead {
                    self.left(ctx, handle, Departure::Left);
                }
            }
        }
    }
}

impl Handler<FromBus> for RoomCoordinator {
    type Result = ();

    /// A message from another proxy's coordinator of this room. Bad input is logged and
    /// dropped; a message for the owner that reaches a follower (the room changed hands
    /// meanwhile) is dropped too: its sender sends everything again to the new owner.
    fn handle(&mut self, msg: FromBus, ctx: &mut Context<Self>) {
        let FromBus { from, body, reply } = msg;
        let kind = body.get("t").and_then(Value::as_str).unwrap_or("");
        let u64_of = |key: &str| body.get(key).and_then(Value::as_u64);
        let str_of = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_owned);
        if kind == "notice" {
            let notice = body.get("notice").and_then(RoomNotice::from_json);
            if let (Some(handle), Some(notice)) = (u64_of("handle"), notice) {
                if let Some(Member::Local(to)) = self.members.get(&handle) {
                    to.do_send(notice);
                }
            }
            return;
        }
        if self.role != Role::Owner {
            log::debug!(
                "videoroom room {}: {kind:?} from proxy {from} for the owner dropped",
                self.room
            );
            return;
        }
        match kind {
            "joined" => {
                let (Some(handle), Some(server), Some(id)) =
                    (u64_of("handle"), str_of("server"), u64_of("id"))
                else {
                    return log::warn!("videoroom: malformed {kind:?} from proxy {from}");
                };
                self.members.insert(handle, Member::Remote(from));
                let attendees = self.joined(handle, &server, id, str_of("display"));
                if let Some(reply) = reply {
                    reply.send(json!({ "attendees": attendees }));
                }
            }
            "left" => {
                let how = match str_of("how").as_deref() {
                    Some("kicked") => Departure::Kicked,
                    Some("destroyed") => Departure::RoomDestroyed,
                    _ => Departure::Left,
                };
                if let Some(handle) = u64_of("handle") {
                    self.left(ctx, handle, how);
                }
            }
            "active" => {
                let (Some(server), Some(id)) = (str_of("server"), u64_of("id")) else {
                    return log::warn!("videoroom: malformed {kind:?} from proxy {from}");
                };
                let streams = body.get("streams").cloned().unwrap_or(Value::Null);
                let display = str_of("display");
                self.active(
                    ctx,
                    PublisherActive {
                        server,
                        id,
                        display,
                        streams,
                    },
                );
            }
            "gone" => {
                if let Some(id) = u64_of("id") {
                    self.gone(ctx, id);
                }
            }
            "server_joined" => {
                if let Some(server) = str_of("server") {
                    let ops = self.mirror.server_added(&server);
                    self.run(ctx, ops);
                }
            }
            "server_lost" => {
                if let Some(server) = str_of("server") {
                    self.server_gone(ctx, &server);
                }
            }
            "list" => {
                let Some(reply) = reply else {
                    return;
                };
                let (tx, rx) = tokio::sync::oneshot::channel();
                self.list(ctx, tx);
                actix_rt::spawn(async move {
                    if let Ok(participants) = rx.await {
                        reply.send(json!({ "participants": participants }));
                    }
                });
            }
            "resync" => self.resync(ctx, &from, &body),
            _ => log::warn!("videoroom: unknown message {kind:?} from proxy {from}"),
        }
    }
}

/// The streams of a publisher as `add_remote_publisher` takes them, from the `streams` of its
/// `configured` / `joined` event (the keys the target needs; unknown ones dropped).
/// The id of the audio-level RTP header extension (`ssrc-audio-level`) negotiated in `sdp`:
/// the mirrors' target Janus needs it to find the levels in the relayed audio (its
/// `talking` events and `listparticipants`' `talking`).
pub fn audio_level_ext_id(sdp: &str) -> Option<u64> {
    sdp.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("a=extmap:")?;
        let (id, uri) = rest.split_once(' ')?;
        if uri.trim() != "urn:ietf:params:rtp-hdrext:ssrc-audio-level" {
            return None;
        }
        // `<id>` or `<id>/<direction>`.
        id.split('/')
            .next()?
            .parse()
            .ok()
            .filter(|id| (1..=14).contains(id))
    })
}

/// `remote_streams` with the audio-level extension id on the audio streams, when known.
pub fn remote_streams_with_levels(streams: &Value, audio_level_ext: Option<u64>) -> Value {
    let mut list = remote_streams(streams);
    if let (Some(id), Some(list)) = (audio_level_ext, list.as_array_mut()) {
        for s in list.iter_mut().filter_map(Value::as_object_mut) {
            if s.get("type").and_then(Value::as_str) == Some("audio") {
                s.insert("audiolevel_ext_id".into(), id.into());
            }
        }
    }
    list
}

pub fn remote_streams(streams: &Value) -> Value {
    const KEYS: [&str; 12] = [
        "type",
        "mindex",
        "mid",
        "disabled",
        "codec",
        "description",
        "stereo",
        "fec",
        "dtx",
        "h264-profile",
        "vp9-profile",
        "simulcast",
    ];
    let list = streams
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_object)
                .map(|s| {
                    let mut out = JsonMap::new();
                    for k in KEYS {
                        if let Some(v) = s.get(k) {
                            out.insert(k.into(), v.clone());
                        }
                    }
                    // Janus's events say h264_profile / vp9_profile.
                    for (from, to) in [
                        ("h264_profile", "h264-profile"),
                        ("vp9_profile", "vp9-profile"),
                    ] {
                        if let Some(v) = s.get(from) {
                            out.insert(to.into(), v.clone());
                        }
                    }
                    Value::Object(out)
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    json!(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn participants_are_merged_once_each_without_remote_marks() {
        let merged = merge_participants(vec![
            json!({"id": 1, "display": "alice", "publisher": true}),
            json!({"id": 2, "display": "bob", "remote": true, "publisher": true}),
            json!({"id": 3, "publisher": false}),
            json!({"id": 1, "display": "alice", "remote": true, "publisher": true}),
            json!({"id": 2, "display": "bob", "publisher": true, "talking": false}),
        ]);
        assert_eq!(
            merged,
            [
                json!({"id": 1, "display": "alice", "publisher": true}),
                json!({"id": 2, "display": "bob", "publisher": true, "talking": false}),
                json!({"id": 3, "publisher": false}),
            ]
        );
    }

    #[test]
    fn notices_cross_the_bus_unchanged() {
        let notices = [
            RoomNotice::Event(json!({"videoroom": "event", "room": 1, "leaving": 7})),
            RoomNotice::Rename {
                id: 7,
                as_key: "unpublished",
            },
            RoomNotice::Rename {
                id: 8,
                as_key: "kicked",
            },
            RoomNotice::Display {
                id: 9,
                display: "new".into(),
            },
        ];
        for n in notices {
            let back = RoomNotice::from_json(&n.to_json()).map(|b| b.to_json());
            assert_eq!(back, Some(n.to_json()));
        }
        // Nothing but Janus's own keys becomes a rename; garbage is dropped.
        assert!(RoomNotice::from_json(&json!({"rename": 1, "as": "destroyed"})).is_none());
        assert!(RoomNotice::from_json(&json!({"id": "x"})).is_none());
        assert!(RoomNotice::from_json(&json!(3)).is_none());
    }

    #[test]
    fn a_shadow_is_what_a_new_owner_needs() {
        let mut shadow = Shadow::default();
        assert!(shadow.is_empty());
        shadow
            .members
            .insert(11, ("j1".into(), 1, Some("alice".into())));
        shadow.active.insert(
            1,
            ("j1".into(), Some("alice".into()), json!([{"mid": "0"}])),
        );
        shadow.servers.insert("j1".into());
        assert!(!shadow.is_empty());
        assert_eq!(
            shadow.resync(5),
            json!({"t": "resync", "room": 5,
                "members": [{"handle": 11, "server": "j1", "id": 1, "display": "alice"}],
                "active": [{"id": 1, "server": "j1", "display": "alice",
                    "streams": [{"mid": "0"}]}],
                "servers": ["j1"]})
        );
    }

    #[test]
    fn hosts_of_urls() {
        assert_eq!(url_host("ws://127.0.0.1:8188"), "127.0.0.1");
        assert_eq!(url_host("wss://janus.example.com/ws"), "janus.example.com");
        assert_eq!(url_host("ws://[::1]:8188/"), "::1");
        assert_eq!(url_host("ws://user:pw@10.0.0.2:8188"), "10.0.0.2");
    }

    #[test]
    fn mirrored_rtp_goes_to_the_rtp_host_when_set() {
        // Set (configured or reported): used, whatever the URL says.
        assert_eq!(
            rtp_host(Some("10.0.0.1"), "ws://127.0.0.1:8188"),
            "10.0.0.1"
        );
        assert_eq!(rtp_host(Some("fd00::1"), "ws://127.0.0.1:8188"), "fd00::1");
        // Unset: the host of the URL.
        assert_eq!(
            rtp_host(None, "wss://janus-b.example.com:8989/ws"),
            "janus-b.example.com"
        );
        assert_eq!(rtp_host(None, "ws://[fd00::2]:8188"), "fd00::2");
    }

    #[test]
    fn the_audio_level_extension_is_found_and_given_to_audio_streams() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
            a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
            a=extmap:1/sendonly urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n";
        assert_eq!(audio_level_ext_id(sdp), Some(1));
        assert_eq!(
            audio_level_ext_id("a=extmap:x urn:ietf:params:rtp-hdrext:ssrc-audio-level"),
            None
        );
        assert_eq!(
            audio_level_ext_id("a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid"),
            None
        );
        let s = json!([{"type":"audio","mindex":0,"mid":"0","codec":"opus"},
            {"type":"video","mindex":1,"mid":"1","codec":"vp8"}]);
        assert_eq!(
            remote_streams_with_levels(&s, Some(1)),
            json!([{"type":"audio","mindex":0,"mid":"0","codec":"opus","audiolevel_ext_id":1},
                {"type":"video","mindex":1,"mid":"1","codec":"vp8"}])
        );
        assert_eq!(remote_streams_with_levels(&s, None), remote_streams(&s));
    }

    #[test]
    fn remote_streams_keep_what_the_target_needs() {
        let s = json!([{"type":"video","mindex":1,"mid":"1","codec":"h264","h264_profile":"42e01f",
            "talking":true,"moderated":false}]);
        assert_eq!(
            remote_streams(&s),
            json!([{"type":"video","mindex":1,"mid":"1","codec":"h264","h264-profile":"42e01f"}])
        );
    }
}
