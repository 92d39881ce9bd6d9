//! `RoomCoordinator` (phase 2, `plugins.videoroom_publishers_per_backend > 0`): one actor per
//! room that spans several servers. It owns the room's [`RoomMirror`] and one control leg (a
//! backend videoroom handle that never joins) per server, and carries out the mirror's
//! requests there: `add_remote_publisher` on the targets, `publish_remotely` on the source,
//! `update_remote_publisher`, `unpublish_remotely`, `remove_remote_publisher`. Handles tell it
//! what happens to their publishers and servers; room-wide requests (`edit`, `destroy`,
//! `allowed`, `enable_recording`) answered by the room's first server are repeated on the
//! others through it.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use janus_protocol::JsonMap;
use parking_lot::Mutex;
use serde_json::{json, Value};

use super::mirror::{MirrorOp, Notice, RoomMirror, Roster};
use super::{SharedDirectory, PACKAGE};
use crate::backend::BackendIncoming;
use crate::plugin::backend_handle::{request, BackendLeg};
use crate::registry::PlaceOn;
use crate::state::ProxyState;

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
        legs: HashMap::new(),
        next_leg: 1,
        lists: HashMap::new(),
        next_list: 1,
    }
    .start();
    map.insert(room, addr.clone());
    addr
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
    /// Where to tell each participant handle of the roster.
    members: HashMap<u64, Recipient<RoomNotice>>,
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
                    BackendLeg::new(p).end_placement(&act.state.registry);
                }
                return;
            };
            match placement {
                Ok(Some(p)) => {
                    leg.host = rtp_host(p.rtp_host.as_deref(), &p.status.url);
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
        if failed {
            log::warn!(
                "videoroom room {}: backend refused {tag}: {}",
                self.room,
                data.get("error").and_then(Value::as_str).unwrap_or("error")
            );
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
                backend.end_placement(&self.state.registry);
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
                if let Some(to) = self.members.get(h) {
                    to.do_send(RoomNotice::Event(n.data.clone()));
                }
            }
        }
    }

    /// Tells the participants on the servers publisher `id` is mirrored to that the removal
    /// of its mirror (`leaving` from their server) means `as_key`.
    fn rename_removal(&self, id: u64, as_key: &'static str) {
        let targets = self.mirror.targets(id);
        log::debug!("videoroom room {}: {id} {as_key} on {targets:?}", self.room);
        for h in self.roster.on(&targets) {
            if let Some(to) = self.members.get(&h) {
                to.do_send(RoomNotice::Rename { id, as_key });
            }
        }
    }

    /// No participant and no publisher left: the coordinator ends (its control legs are
    /// detached). It leaves the map at once, under its lock, so that whoever needs the room
    /// from now on starts a new one; what was sent to it before is still handled (the
    /// `EndIfEmpty` comes after in its mailbox).
    fn end_if_empty(&mut self, ctx: &mut Context<Self>) {
        if !(self.roster.is_empty() && self.mirror.is_empty()) {
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
        if self.roster.is_empty() && self.mirror.is_empty() && self.lists.is_empty() {
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
    type Result = MessageResult<ParticipantJoined>;

    fn handle(&mut self, msg: ParticipantJoined, _: &mut Context<Self>) -> Self::Result {
        let notify_joining = self
            .directory
            .lock()
            .get(self.room)
            .and_then(|r| r.settings.get("notify_joining").and_then(Value::as_bool))
            .unwrap_or(false);
        let mirror = &self.mirror;
        let (notice, attendees) = self.roster.joined(
            msg.handle,
            &msg.server,
            msg.id,
            msg.display,
            notify_joining,
            |id| mirror.is_active(id),
        );
        self.members.insert(msg.handle, msg.notify);
        self.deliver(notice.into_iter().collect());
        MessageResult(attendees)
    }
}

impl Handler<ParticipantLeft> for RoomCoordinator {
    type Result = ();

    fn handle(&mut self, msg: ParticipantLeft, ctx: &mut Context<Self>) {
        self.members.remove(&msg.handle);
        let Some(id) = self.roster.member_id(msg.handle) else {
            return self.end_if_empty(ctx);
        };
        let mirrored = self.mirror.is_active(id);
        let kicked = msg.how == Departure::Kicked;
        if msg.how == Departure::RoomDestroyed {
            self.roster.left(msg.handle, false, true);
            self.mirror.publisher_gone(id);
            return self.end_if_empty(ctx);
        }
        if let Some((_, notice)) = self.roster.left(msg.handle, kicked, mirrored) {
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
        let servers = self.directory.lock().servers(self.room);
        if servers.is_empty() {
            let _ = msg.reply.send(Vec::new());
            return;
        }
        let n = self.next_list;
        self.next_list += 1;
        self.lists.insert(
            n,
            PendingList {
                remaining: servers.len(),
                entries: Vec::new(),
                reply: msg.reply,
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

    fn stopped(&mut self, _: &mut Self::Context) {
        for (_, mut leg) in self.legs.drain() {
            if let Some(backend) = leg.backend.as_mut() {
                backend.release();
                backend.end_placement(&self.state.registry);
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
        let ops = self.mirror.server_added(&msg.server);
        self.run(ctx, ops);
    }
}

impl Handler<ServerLost> for RoomCoordinator {
    type Result = ();

    fn handle(&mut self, msg: ServerLost, ctx: &mut Context<Self>) {
        self.server_gone(ctx, &msg.server);
    }
}

impl Handler<PublisherActive> for RoomCoordinator {
    type Result = ();

    fn handle(&mut self, msg: PublisherActive, ctx: &mut Context<Self>) {
        // A new display name of a mirrored publisher: its mirrors' servers say it as Janus.
        if let Some((live, old)) = self.mirror.live(msg.id) {
            if let Some(display) = msg.display.as_deref().filter(|d| Some(*d) != old) {
                for h in self.roster.on(&live) {
                    if let Some(to) = self.members.get(&h) {
                        to.do_send(RoomNotice::Display {
                            id: msg.id,
                            display: display.to_owned(),
                        });
                    }
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
            BackendIncoming::Event { frame } => {
                if frame.get("janus").and_then(Value::as_str) == Some("detached") {
                    if let Some(b) = self.legs.get_mut(&server).and_then(|l| l.backend.as_mut()) {
                        b.handle = None;
                    }
                    self.leg_lost(ctx, msg.leg);
                }
            }
            BackendIncoming::LinkLost => self.leg_lost(ctx, msg.leg),
        }
    }
}

/// The streams of a publisher as `add_remote_publisher` takes them, from the `streams` of its
/// `configured` / `joined` event (the keys the target needs; unknown ones dropped).
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
    fn remote_streams_keep_what_the_target_needs() {
        let s = json!([{"type":"video","mindex":1,"mid":"1","codec":"h264","h264_profile":"42e01f",
            "talking":true,"moderated":false}]);
        assert_eq!(
            remote_streams(&s),
            json!([{"type":"video","mindex":1,"mid":"1","codec":"h264","h264-profile":"42e01f"}])
        );
    }
}
