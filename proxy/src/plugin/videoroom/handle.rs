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
//!   the directory, so that a room created again elsewhere has the same settings.
//! * Once the handle joined (as publisher or subscriber), participant requests
//!   (`configure`, `publish`, `unpublish`, `start`, `pause`, `switch`, `update`, `leave`, …),
//!   trickles and the core `hangup` go to the leg it joined with; that leg's events come back
//!   with the client's ids.
//!
//! Requests are processed one at a time, in order (as Janus's plugin queue does): a request
//! that waits for its room's placement holds the later ones.
//!
//! **Backend lost.** When the server of the room a handle joined goes away, the client gets
//! what a participant gets when Janus itself removes it from a room: a core `hangup` (reason
//! `Backend server unavailable`) if a PeerConnection was negotiated, then the videoroom
//! event of a participant that left — `{"videoroom":"event","room":R,"leaving":"ok",
//! "reason":"Backend server unavailable"}` for a publisher (the shape of Janus's `kicked`
//! notice), `{"videoroom":"event","room":R,"left":"ok","reason":…}` for a subscriber. The
//! handle stays attached and can join again: the room is created again on another server.
//!
//! **Phase 2** (`plugins.videoroom_publishers_per_backend > 0`): a publisher's join goes to
//! the room's least-filled server with room left (or one more server), a subscriber's to its
//! own participant's server (the publisher whose `private_id` it sends, or one of the same
//! client session), else to its first feed's server, a request about one publisher to that
//! publisher's server; the handle tells the room's [`RoomCoordinator`] when its publisher's
//! PeerConnection is up (`webrtcup`), renegotiates, stops publishing or leaves, and when a
//! server is lost.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use actix::prelude::*;
use janus_protocol::frames::{PluginEvent, Success};
use janus_protocol::{JsonMap, PluginData, ServerMessage, Trickle};
use serde_json::{json, Value};

use super::checks::{self, VrError};
use super::coordinator::{
    self, Broadcast, Coordinators, Departure, ListParticipants, ParticipantJoined, ParticipantLeft,
    PublisherActive, PublisherGone, RoomCoordinator, RoomNotice, ServerJoined, ServerLost,
};
use super::{SharedDirectory, PACKAGE};
use crate::messages::BackendIncoming;
use crate::plugin::backend_handle::{request, BackendLeg, LegForwarder, LegIncoming};
use crate::plugin::relay::BACKEND_LOST_REASON;
use crate::plugin::rewrite::{rewrite, Transaction};
use crate::plugin::{admin_key, rooms_file};
use crate::plugin::{AttachContext, HandleCommand};
use crate::registry::{PlaceOn, Placement, SelectServer};
use crate::session::{ClientSession, Deliver};
use crate::state::ProxyState;
use crate::store::rooms::{ParticipantRecord, RoomKind, RoomStore};
use crate::transport::{ClientFrame, ReplyTo};

/// Requests Janus answers at once, in the `success` reply.
const SYNC_ROOM_REQUESTS: &[&str] = &[
    "edit",
    "destroy",
    "allowed",
    "kick",
    "moderate",
    "enable_recording",
    "listparticipants",
    "listforwarders",
    "rtp_forward",
    "stop_rtp_forward",
];

/// Asynchronous requests of a participant (after `join`).
const PARTICIPANT_REQUESTS: &[&str] = &[
    "configure",
    "publish",
    "unpublish",
    "start",
    "pause",
    "switch",
    "update",
    "subscribe",
    "unsubscribe",
    "leave",
];

struct Leg {
    id: u64,
    backend: BackendLeg,
    forwarder: Recipient<BackendIncoming>,
    attached: bool,
}

/// A client request on its way to a room's server.
struct RoomRequest {
    room: u64,
    request: String,
    transaction: String,
    body: JsonMap,
    jsep: Option<JsonMap>,
    reply_to: ReplyTo,
    /// Asynchronous (ack + event) rather than answered in the `success`.
    asynchronous: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for the registry.
    Placing,
    /// Waiting for the leg's attach.
    Attaching,
    /// Waiting for the backend room's `create`.
    Creating,
}

struct Waiting {
    /// Which wait this is (for its deadline).
    serial: u64,
    req: RoomRequest,
    server: String,
    leg: Option<u64>,
    stage: Stage,
}

/// The room this handle joined (or is joining) and through which leg.
struct Joined {
    room: u64,
    leg: u64,
    server: String,
    publisher: bool,
    /// A PeerConnection was negotiated (a jsep went either way).
    media: bool,
    /// The backend confirmed the join (`joined` / `attached`).
    confirmed: bool,
    join_transaction: String,
    /// Publisher: its id, display name, streams (from `joined` / `configured`), and whether
    /// its PeerConnection is up (phase 2 mirrors it to the room's other servers then).
    feed: Option<u64>,
    display: Option<String>,
    streams: Value,
    active: bool,
    /// Phase 2: the room's coordinator counts this participant (it tells it what happens on
    /// the room's other servers).
    in_roster: bool,
}

pub struct VideoRoomHandle {
    session_id: u64,
    handle_id: u64,
    state: Arc<ProxyState>,
    session: Addr<ClientSession>,
    opaque_id: Option<String>,
    directory: SharedDirectory,
    coordinators: Coordinators,
    legs: Vec<Leg>,
    next_leg: u64,
    queue: VecDeque<HandleCommand>,
    waiting: Option<Waiting>,
    joined: Option<Joined>,
    /// Trickles that came before the handle joined, in order.
    trickles: Vec<Trickle>,
    /// Sync requests whose success changes the directory: transaction → (request, room, body).
    updates: HashMap<String, (String, u64, JsonMap)>,
    /// Phase 2: `leaving: id` events from the room's server that mean something else
    /// (a mirror removed because its publisher unpublished or was kicked).
    renames: HashMap<u64, &'static str>,
    /// Phase 2: a `publishers` event listing only this mirrored publisher is its new display
    /// name.
    display_changes: HashMap<u64, String>,
    gone: bool,
    /// Shared store: a request waits for a room to be read from (or written to) the store.
    fetching: bool,
    /// Shared store: the room just read from it (a second miss is final).
    looked_up: Option<u64>,
    /// The serial of the last [`Waiting`].
    waits: u64,
    /// The audio-level RTP extension id of the client's last offer (phase 2: its mirrors'
    /// targets need it for their `talking` events).
    audio_level_ext: Option<u64>,
}

impl VideoRoomHandle {
    pub fn new(ctx: AttachContext, directory: SharedDirectory, coordinators: Coordinators) -> Self {
        VideoRoomHandle {
            session_id: ctx.session_id,
            handle_id: ctx.handle_id,
            state: ctx.state,
            session: ctx.session,
            opaque_id: ctx.opaque_id,
            directory,
            coordinators,
            legs: Vec::new(),
            next_leg: 1,
            queue: VecDeque::new(),
            waiting: None,
            joined: None,
            trickles: Vec::new(),
            updates: HashMap::new(),
            renames: HashMap::new(),
            display_changes: HashMap::new(),
            gone: false,
            fetching: false,
            looked_up: None,
            waits: 0,
            audio_level_ext: None,
        }
    }

    // ---- the shared store (several proxies) ----

    /// A request about `room`, unknown here, may be about another proxy's room: read it from
    /// the shared store once, then handle the request again. Some: nothing to read (no
    /// shared store, or read already), the request back.
    fn read_through(
        &mut self,
        ctx: &mut Context<Self>,
        room: u64,
        cmd: HandleCommand,
    ) -> Option<HandleCommand> {
        let looked_up = self.looked_up.take() == Some(room);
        let Some(store) = self.state.store.rooms().filter(|_| !looked_up) else {
            return Some(cmd);
        };
        self.fetching = true;
        let fut = async move { store.fetch(RoomKind::VideoRoom, room).await }
            .into_actor(self)
            .map(move |_, act: &mut Self, ctx: &mut Context<Self>| {
                act.fetching = false;
                act.looked_up = Some(room);
                act.queue.push_front(cmd);
                act.drain(ctx);
            });
        ctx.spawn(fut);
        None
    }

    /// `create` with a shared store: the room is written there first, if its id is free on
    /// every proxy (else 427); Redis away, this proxy's directory decides.
    fn create_shared(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: String,
        reply_to: ReplyTo,
        body: JsonMap,
        store: Arc<RoomStore>,
    ) {
        if let Err(e) = self.check_create(&body) {
            return self.refuse(&transaction, &reply_to, false, &e);
        }
        let requested = body.get("room").and_then(Value::as_u64).unwrap_or(0);
        if requested != 0 && self.directory.lock().exists(requested) {
            return self.refuse(
                &transaction,
                &reply_to,
                false,
                &VrError::room_exists(requested),
            );
        }
        let id = if requested == 0 {
            self.directory.lock().fresh_id()
        } else {
            requested
        };
        let record = {
            let mut scratch = super::directory::Directory::default();
            let _ = scratch.create(id, &body);
            scratch.record(id).map(|mut r| {
                r.creator = store.proxy_id().to_owned();
                r
            })
        };
        let Some(record) = record else {
            return self.fail_request_sync(&transaction, &reply_to, "room not recorded");
        };
        self.fetching = true;
        let record_creator = record.creator.clone();
        let fut = async move { store.create(RoomKind::VideoRoom, &record).await }
            .into_actor(self)
            .map(move |written, act: &mut Self, ctx: &mut Context<Self>| {
                act.fetching = false;
                match written {
                    Ok(false) => {
                        act.refuse(&transaction, &reply_to, false, &VrError::room_exists(id))
                    }
                    // Written (or Redis away: written when it returns). A sync round may
                    // have brought it here already.
                    _ => {
                        {
                            let mut directory = act.directory.lock();
                            let _ = directory.create(id, &body);
                            if let Some(room) = directory.get_mut(id) {
                                room.creator = record_creator;
                            }
                        }
                        // The shared store keeps every room; `permanent` is recorded there
                        // (and saved in the rooms file too, if there is one).
                        let asked = body
                            .get("permanent")
                            .and_then(Value::as_bool)
                            .unwrap_or(false);
                        if asked {
                            act.save_permanent(id, &body);
                        }
                        let permanent = asked;
                        let data =
                            json!({"videoroom": "created", "room": id, "permanent": permanent});
                        act.sync_reply(&transaction, &reply_to, data);
                    }
                }
                act.drain(ctx);
            });
        ctx.spawn(fut);
    }

    fn fail_request_sync(&self, transaction: &str, reply_to: &ReplyTo, why: &str) {
        let e = VrError::new(checks::UNKNOWN_ERROR, why);
        self.refuse(transaction, reply_to, false, &e);
    }

    /// Records this handle's publisher (or its end) in the shared store, for views.
    fn share_publisher(&self, room: u64, joined: Option<(u64, &str)>) {
        let Some(store) = self.state.store.rooms() else {
            return;
        };
        match joined {
            Some((feed, server)) => {
                let display = self.joined.as_ref().and_then(|j| j.display.clone());
                let p = ParticipantRecord {
                    id: feed.into(),
                    display,
                    server: server.to_owned(),
                };
                store.participant_joined(RoomKind::VideoRoom, room, self.handle_id, p);
            }
            None => store.participant_left(RoomKind::VideoRoom, room, self.handle_id),
        }
    }

    // ---- frames to the client ----

    fn send_frame(&self, frame: &impl serde::Serialize, reply_to: Option<&ReplyTo>) {
        let text = self.state.encode(frame);
        match reply_to {
            Some(conn) => conn.do_send(ClientFrame(text)),
            None => self.session.do_send(Deliver(text)),
        }
    }

    fn plugindata(data: Value) -> PluginData {
        PluginData {
            plugin: PACKAGE.to_owned(),
            data,
        }
    }

    /// A synchronous answer: `success` with the plugin data.
    fn sync_reply(&self, transaction: &str, reply_to: &ReplyTo, data: Value) {
        let frame = ServerMessage::Success(Success {
            session_id: Some(self.session_id),
            transaction: Some(transaction.to_owned()),
            sender: Some(self.handle_id),
            data: None,
            plugindata: Some(Self::plugindata(data)),
            extra: JsonMap::new(),
        });
        self.send_frame(&frame, Some(reply_to));
    }

    /// An asynchronous answer: `ack`, then the event.
    fn async_reply(&self, transaction: &str, reply_to: &ReplyTo, data: Value) {
        self.send_frame(
            &ServerMessage::ack(self.session_id, transaction),
            Some(reply_to),
        );
        self.event(Some(transaction), data);
    }

    fn event(&self, transaction: Option<&str>, data: Value) {
        let frame = ServerMessage::Event(PluginEvent {
            session_id: self.session_id,
            transaction: transaction.map(str::to_owned),
            sender: self.handle_id,
            opaque_id: None,
            plugindata: Self::plugindata(data),
            jsep: None,
            extra: JsonMap::new(),
        });
        self.send_frame(&frame, None);
    }

    fn error_data(e: &VrError) -> Value {
        json!({"videoroom": "event", "error_code": e.code, "error": e.text})
    }

    fn refuse(&self, transaction: &str, reply_to: &ReplyTo, asynchronous: bool, e: &VrError) {
        self.state.metrics.error(e.code);
        let data = Self::error_data(e);
        if asynchronous {
            self.async_reply(transaction, reply_to, data);
        } else {
            self.sync_reply(transaction, reply_to, data);
        }
    }

    // ---- client commands, in order ----

    fn enqueue(&mut self, ctx: &mut Context<Self>, cmd: HandleCommand) {
        self.queue.push_back(cmd);
        self.drain(ctx);
    }

    fn drain(&mut self, ctx: &mut Context<Self>) {
        while self.waiting.is_none() && !self.fetching && !self.gone {
            let Some(cmd) = self.queue.pop_front() else {
                return;
            };
            match cmd {
                HandleCommand::Message {
                    transaction,
                    body,
                    jsep,
                    reply_to,
                } => self.on_message(ctx, transaction, body, jsep, reply_to),
                HandleCommand::Trickle {
                    transaction,
                    trickle,
                    reply_to,
                } => self.on_trickle(transaction, trickle, reply_to),
                HandleCommand::Hangup {
                    transaction,
                    reply_to,
                } => self.on_core_hangup(transaction, reply_to),
                // Detach and session end are not queued (see `handle`).
                _ => {}
            }
        }
    }

    fn leg(&self, id: u64) -> Option<&Leg> {
        self.legs.iter().find(|l| l.id == id)
    }

    fn joined_leg(&self) -> Option<&Leg> {
        self.joined.as_ref().and_then(|j| self.leg(j.leg))
    }

    fn message_request(body: JsonMap, jsep: Option<JsonMap>) -> JsonMap {
        let mut req = request("message");
        req.insert("body".into(), Value::Object(body));
        if let Some(jsep) = jsep {
            req.insert("jsep".into(), Value::Object(jsep));
        }
        req
    }

    fn trickle_request(trickle: Trickle) -> JsonMap {
        let mut req = request("trickle");
        match trickle {
            Trickle::Candidate(c) => req.insert("candidate".into(), c),
            Trickle::Candidates(c) => req.insert("candidates".into(), c),
        };
        req
    }

    /// Sends a client request to a leg; its replies go to the client's connection.
    fn forward_to(&self, leg: &Leg, req: JsonMap, transaction: String, reply_to: ReplyTo) {
        let route = (leg.forwarder.clone(), Some(reply_to));
        leg.backend.send(req, Some(transaction), Some(route));
    }

    fn on_message(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: String,
        body: JsonMap,
        jsep: Option<JsonMap>,
        reply_to: ReplyTo,
    ) {
        let name = match checks::request_of(&body) {
            Ok(n) => n,
            Err(e) => return self.refuse(&transaction, &reply_to, false, &e),
        };
        let offer = jsep
            .as_ref()
            .filter(|j| j.get("type").and_then(Value::as_str) == Some("offer"))
            .and_then(|j| j.get("sdp").and_then(Value::as_str));
        if let Some(id) = offer.and_then(coordinator::audio_level_ext_id) {
            self.audio_level_ext = Some(id);
        }
        match name.as_str() {
            "create" => match self.state.store.rooms() {
                Some(store) => self.create_shared(ctx, transaction, reply_to, body, store),
                None => self.create(&transaction, &reply_to, &body),
            },
            "list" => {
                let key = &self.state.config.plugins.videoroom_admin_key;
                let all = match admin_key::unlocks_private(key, &body) {
                    Ok(all) => all,
                    Err(e) => {
                        let e = checks::admin_key_error(e);
                        return self.refuse(&transaction, &reply_to, false, &e);
                    }
                };
                let list = self.directory.lock().list(all);
                self.sync_reply(
                    &transaction,
                    &reply_to,
                    json!({"videoroom": "success", "list": list}),
                );
            }
            "exists" => match checks::room_of(&body) {
                Ok(room) if !self.directory.lock().exists(room) => {
                    let cmd = HandleCommand::Message {
                        transaction,
                        body,
                        jsep,
                        reply_to,
                    };
                    let (transaction, reply_to) = match self.read_through(ctx, room, cmd) {
                        Some(HandleCommand::Message {
                            transaction,
                            reply_to,
                            ..
                        }) => (transaction, reply_to),
                        _ => return,
                    };
                    let data = json!({"videoroom": "success", "room": room, "exists": false});
                    self.sync_reply(&transaction, &reply_to, data);
                }
                Ok(room) => {
                    let exists = self.directory.lock().exists(room);
                    let data = json!({"videoroom": "success", "room": room, "exists": exists});
                    self.sync_reply(&transaction, &reply_to, data);
                }
                Err(e) => self.refuse(&transaction, &reply_to, false, &e),
            },
            "join" | "joinandconfigure" if self.joined.is_some() => {
                // Janus answers a second join itself (425) on the joined handle.
                if let Some(leg) = self.joined_leg() {
                    let req = Self::message_request(body, jsep);
                    self.forward_to(leg, req, transaction, reply_to);
                }
            }
            n if n == "join" || n == "joinandconfigure" || SYNC_ROOM_REQUESTS.contains(&n) => {
                let asynchronous = n.starts_with("join");
                let room = match checks::room_of(&body) {
                    Ok(r) => r,
                    Err(e) => return self.refuse(&transaction, &reply_to, asynchronous, &e),
                };
                if let Err(e) = self.check_rtp_forward_lock(n, &body) {
                    return self.refuse(&transaction, &reply_to, asynchronous, &e);
                }
                if !self.directory.lock().exists(room) {
                    let cmd = HandleCommand::Message {
                        transaction,
                        body,
                        jsep,
                        reply_to,
                    };
                    if let Some(HandleCommand::Message {
                        transaction,
                        reply_to,
                        ..
                    }) = self.read_through(ctx, room, cmd)
                    {
                        let e = VrError::no_such_room(room);
                        self.refuse(&transaction, &reply_to, asynchronous, &e);
                    }
                    return;
                }
                let req = RoomRequest {
                    room,
                    request: name.clone(),
                    transaction,
                    body,
                    jsep,
                    reply_to,
                    asynchronous,
                };
                self.route_to_room(ctx, req);
            }
            n if PARTICIPANT_REQUESTS.contains(&n) => {
                if self.joined_leg().is_none() {
                    return self.refuse(&transaction, &reply_to, true, &VrError::join_first());
                }
                if let Some(j) = self.joined.as_mut() {
                    j.media |= jsep.is_some();
                    // A new display name reaches the mirrors with the next update.
                    if let Some(d) = body.get("display").and_then(Value::as_str) {
                        if n == "configure" || n == "publish" {
                            j.display = Some(d.to_owned());
                        }
                    }
                }
                if let Some(leg) = self.joined_leg() {
                    let req = Self::message_request(body, jsep);
                    self.forward_to(leg, req, transaction, reply_to);
                }
            }
            _ => {
                let written = body
                    .get("request")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                self.refuse(
                    &transaction,
                    &reply_to,
                    false,
                    &VrError::unknown_request(&written),
                );
            }
        }
    }

    /// `create`: recorded in the directory; the backend room comes with the first handle
    /// that needs it.
    fn create(&self, transaction: &str, reply_to: &ReplyTo, body: &JsonMap) {
        if let Err(e) = self.check_create(body) {
            return self.refuse(transaction, reply_to, false, &e);
        }
        let requested = body.get("room").and_then(Value::as_u64).unwrap_or(0);
        let created = self.directory.lock().create(requested, body);
        match created {
            Ok(room) => {
                // As Janus: `"permanent": true` only once the room is saved.
                let asked = body.get("permanent").and_then(Value::as_bool) == Some(true);
                let permanent = asked && self.save_permanent(room, body);
                if let Some(r) = self.directory.lock().get_mut(room) {
                    r.permanent = permanent;
                }
                let data = json!({"videoroom": "created", "room": room, "permanent": permanent});
                self.sync_reply(transaction, reply_to, data);
            }
            Err(_) => self.refuse(
                transaction,
                reply_to,
                false,
                &VrError::room_exists(requested),
            ),
        }
    }

    /// Janus's checks of `create`: its parameters, then the plugin's `admin_key` (if set).
    fn check_create(&self, body: &JsonMap) -> Result<(), VrError> {
        checks::check_create(body)?;
        let key = &self.state.config.plugins.videoroom_admin_key;
        admin_key::check_required(key, body).map_err(checks::admin_key_error)
    }

    /// `lock_rtp_forward`: `rtp_forward` and `stop_rtp_forward` need the `admin_key` too,
    /// checked (as Janus) after the publisher's id and before the room is looked up.
    fn check_rtp_forward_lock(&self, request: &str, body: &JsonMap) -> Result<(), VrError> {
        let plugins = &self.state.config.plugins;
        if !plugins.videoroom_lock_rtp_forward
            || !matches!(request, "rtp_forward" | "stop_rtp_forward")
        {
            return Ok(());
        }
        match body.get("publisher_id") {
            None => return Err(VrError::missing("publisher_id")),
            Some(v) if !v.is_u64() => {
                return Err(VrError::invalid_type(
                    "publisher_id",
                    checks::Kind::PositiveInt,
                ))
            }
            Some(_) => {}
        }
        admin_key::check_required(&plugins.videoroom_admin_key, body)
            .map_err(checks::admin_key_error)
    }

    /// Saves room `id` (`settings`: a `create` or the room's settings) in the rooms file, or
    /// removes it (None). Whether it is saved now.
    fn save_room(&self, id: u64, settings: Option<&JsonMap>) -> bool {
        let file = self.state.session().plugins.rooms_file.as_ref();
        rooms_file::apply(file, RoomKind::VideoRoom, id, settings)
    }

    fn save_permanent(&self, id: u64, body: &JsonMap) -> bool {
        self.save_room(id, Some(body))
    }

    // ---- getting a request to its room's server ----

    /// Phase 2: `listparticipants` of a room on several servers, merged by its coordinator
    /// (each participant once; the mirrors are not told apart).
    fn list_everywhere(&mut self, ctx: &mut Context<Self>, req: RoomRequest) {
        let Some(c) = self.coordinator(req.room) else {
            return;
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        c.do_send(ListParticipants { reply: tx });
        let limit = std::time::Duration::from_millis(self.state.config.backend.request_timeout_ms);
        let fut = async move { tokio::time::timeout(limit, rx).await }
            .into_actor(self)
            .map(move |got, act: &mut Self, _| match got {
                Ok(Ok(participants)) => {
                    let data = json!({"videoroom": "participants", "room": req.room,
                        "participants": participants});
                    act.sync_reply(&req.transaction, &req.reply_to, data);
                }
                _ => act.fail_request(&req, "the room's servers did not all answer"),
            });
        ctx.spawn(fut);
    }

    /// `plugins.videoroom_publishers_per_backend` (0: a room on one server).
    fn per_backend(&self) -> usize {
        self.state.config.plugins.videoroom_publishers_per_backend
    }

    /// Where a room request goes: `Ok(server)`, or `Err(true)` when the room needs one more
    /// server (phase 2), `Err(false)` when it has none yet.
    fn target_of(&self, req: &RoomRequest) -> Result<String, bool> {
        let directory = self.directory.lock();
        let Some(first) = directory.placement(req.room).map(|p| p.server) else {
            return Err(false);
        };
        let per_backend = self.per_backend();
        if per_backend == 0 {
            return Ok(first);
        }
        let body = &req.body;
        let publisher = req.request == "joinandconfigure"
            || (req.request == "join"
                && body.get("ptype").and_then(Value::as_str) == Some("publisher"));
        if publisher {
            return directory
                .server_for_publisher(req.room, per_backend)
                .ok_or(true);
        }
        // A subscriber goes to its own participant's server (its `private_id`, or a participant
        // of the same session): it then keeps every stream still alive as long as its own
        // participant's server lives, whichever feed it named first.
        if req.request == "join" {
            let private_id = body.get("private_id").and_then(Value::as_u64);
            if let Some(own) = directory.own_server(req.room, self.session_id, private_id) {
                return Ok(own);
            }
        }
        // Requests about one publisher go to its server; a subscriber with no participant of
        // its own in the room to its first feed's (so that at least that feed is local).
        let feed = match req.request.as_str() {
            "join" => body
                .get("streams")
                .and_then(Value::as_array)
                .and_then(|s| s.first())
                .and_then(|s| s.get("feed"))
                .or_else(|| body.get("feed"))
                .and_then(Value::as_u64),
            "kick" | "moderate" => body.get("id").and_then(Value::as_u64),
            "rtp_forward" | "stop_rtp_forward" => body.get("publisher_id").and_then(Value::as_u64),
            _ => None,
        };
        Ok(feed
            .and_then(|f| directory.feed_server(req.room, f))
            .unwrap_or(first))
    }

    /// Sends `req` to its room's server, placing and creating the room there first if needed.
    fn route_to_room(&mut self, ctx: &mut Context<Self>, req: RoomRequest) {
        if self.per_backend() > 0 && req.request.starts_with("join") {
            // A publisher id is unique in the whole room, not only on one server.
            let id = req.body.get("id").and_then(Value::as_u64);
            let publisher = req.request == "joinandconfigure"
                || req.body.get("ptype").and_then(Value::as_str) == Some("publisher");
            if let Some(id) = id.filter(|_| publisher) {
                if self.directory.lock().feed_server(req.room, id).is_some() {
                    let e = VrError::id_exists(id);
                    return self.refuse(&req.transaction, &req.reply_to, true, &e);
                }
            }
        }
        if self.per_backend() > 0
            && req.request == "listparticipants"
            && self.directory.lock().servers(req.room).len() > 1
        {
            return self.list_everywhere(ctx, req);
        }
        let target = self.target_of(&req);
        if let Ok(server) = &target {
            if self.directory.lock().is_created_on(req.room, server) {
                if let Some(leg) = self.legs.iter().find(|l| &l.backend.server == server) {
                    if leg.attached {
                        let leg_id = leg.id;
                        return self.send_room_request(leg_id, req);
                    }
                }
            }
        }
        let room = req.room;
        self.waits += 1;
        let serial = self.waits;
        self.waiting = Some(Waiting {
            serial,
            req,
            server: String::new(),
            leg: None,
            stage: Stage::Placing,
        });
        // Each stage ends in an answer or in the link's own request timeout; this bounds the
        // whole, so that the client is answered and the handle's queue moves on whatever
        // goes wrong.
        let deadline = self.state.config.backend.request_timeout() * 3;
        ctx.run_later(deadline, move |act, ctx| {
            if act.waiting.as_ref().is_some_and(|w| w.serial == serial) {
                act.fail_waiting(ctx, "the room's backend server did not answer in time");
            }
        });
        let (registry, servers) = (
            self.state.registry.clone(),
            self.state.servers.ended.clone(),
        );
        let directory = self.directory.clone();
        let store = self.state.store.rooms();
        let fut = async move {
            // The room's server, found unreachable here (the shared placement replaces it).
            let mut dead = None;
            let one_more = match target {
                Ok(server) => {
                    match registry
                        .send(PlaceOn {
                            server: server.clone(),
                        })
                        .await
                    {
                        Ok(Some(p)) => return Ok(p),
                        Ok(None) => {
                            directory.lock().forget_placement(room, &server);
                            dead = Some(server);
                        }
                        Err(_) => return Err("the proxy is shutting down".to_owned()),
                    }
                    false
                }
                Err(one_more) => one_more,
            };
            let avoid = if one_more {
                directory.lock().servers(room)
            } else {
                Vec::new()
            };
            let select = SelectServer {
                package: PACKAGE.to_owned(),
                avoid,
            };
            let mine = match registry.send(select).await {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => return Err("the proxy is shutting down".to_owned()),
            };
            if one_more {
                // The room spreads to this server (or, with no other server, fills it more).
                let mut d = directory.lock();
                if !d.exists(room) {
                    drop(d);
                    BackendLeg::new(mine).end_placement(&servers);
                    return Err(format!("room {room} was destroyed"));
                }
                if d.placement(room).is_none() {
                    d.place(room, &mine.server);
                } else {
                    d.add_server(room, &mine.server);
                }
                return Ok(mine);
            }
            let winner = match &store {
                Some(store) => place_shared(store, &directory, room, &mine.server, dead).await,
                None => directory.lock().place(room, &mine.server),
            };
            match winner {
                None => {
                    BackendLeg::new(mine).end_placement(&servers);
                    Err(format!("room {room} was destroyed"))
                }
                Some(w) if w == mine.server => Ok(mine),
                Some(w) => {
                    // Another handle (or proxy) placed the room meanwhile: go there.
                    if let Ok(Some(p)) = registry.send(PlaceOn { server: w.clone() }).await {
                        BackendLeg::new(mine).end_placement(&servers);
                        return Ok(p);
                    }
                    // That server is unreachable from here: the shared placement is replaced.
                    let again = match &store {
                        Some(store) => {
                            let dead = Some(w.clone());
                            place_shared(store, &directory, room, &mine.server, dead).await
                        }
                        None => None,
                    };
                    if again.as_deref() == Some(mine.server.as_str()) {
                        return Ok(mine);
                    }
                    BackendLeg::new(mine).end_placement(&servers);
                    Err(format!("backend server {w} is gone"))
                }
            }
        }
        .into_actor(self)
        .map(
            |placed, act: &mut Self, ctx: &mut Context<Self>| match placed {
                Ok(p) => act.placed(ctx, p),
                Err(why) => act.fail_waiting(ctx, &why),
            },
        );
        ctx.spawn(fut);
    }

    /// The waiting request's room has a server: a leg there, then the room.
    fn placed(&mut self, ctx: &mut Context<Self>, placement: Placement) {
        if self.gone || self.waiting.is_none() {
            BackendLeg::new(placement).end_placement(&self.state.servers.ended);
            return;
        }
        let server = placement.server.clone();
        if let Some(w) = self.waiting.as_mut() {
            w.server = server.clone();
        }
        if let Some(leg) = self.legs.iter().find(|l| l.backend.server == server) {
            // One leg per server is enough.
            BackendLeg::new(placement).end_placement(&self.state.servers.ended);
            let (id, attached) = (leg.id, leg.attached);
            if let Some(w) = self.waiting.as_mut() {
                w.leg = Some(id);
                w.stage = Stage::Attaching;
            }
            if attached {
                self.ensure_room(ctx);
            }
            return;
        }
        let id = self.next_leg;
        self.next_leg += 1;
        let forwarder = LegForwarder::start_for(id, ctx.address().recipient());
        let backend = BackendLeg::new(placement);
        backend.attach(PACKAGE, self.opaque_id.as_deref(), forwarder.clone());
        self.legs.push(Leg {
            id,
            backend,
            forwarder,
            attached: false,
        });
        if let Some(w) = self.waiting.as_mut() {
            w.leg = Some(id);
            w.stage = Stage::Attaching;
        }
    }

    /// The waiting request's leg is attached: the room must exist on its server.
    fn ensure_room(&mut self, ctx: &mut Context<Self>) {
        let Some(w) = self.waiting.as_mut() else {
            return;
        };
        let Some(leg_id) = w.leg else {
            return;
        };
        let (created, create) = {
            let directory = self.directory.lock();
            match directory.get(w.req.room) {
                None => (false, None),
                Some(room) => (
                    directory.is_created_on(w.req.room, &w.server),
                    Some(room.create_request()),
                ),
            }
        };
        // Backends that have the same `admin_key` (harmless for those without one).
        let create = create.map(|mut c| {
            let key = &self.state.config.plugins.videoroom_admin_key;
            if !key.is_empty() {
                c.insert("admin_key".into(), key.as_str().into());
            }
            c
        });
        let Some(create) = create else {
            let why = format!("room {} was destroyed", w.req.room);
            return self.fail_waiting(ctx, &why);
        };
        if created {
            return self.release_waiting(ctx);
        }
        w.stage = Stage::Creating;
        if let Some(leg) = self.leg(leg_id) {
            let route = (leg.forwarder.clone(), None);
            leg.backend
                .send(Self::message_request(create, None), None, Some(route));
        }
    }

    /// The room is ready on the waiting request's server: the request goes there.
    fn release_waiting(&mut self, ctx: &mut Context<Self>) {
        let Some(w) = self.waiting.take() else {
            return;
        };
        match w.leg {
            Some(leg) => self.send_room_request(leg, w.req),
            None => self.fail_request(&w.req, "no backend handle"),
        }
        self.drain(ctx);
    }

    fn send_room_request(&mut self, leg_id: u64, req: RoomRequest) {
        let RoomRequest {
            room,
            request: name,
            transaction,
            body,
            jsep,
            reply_to,
            ..
        } = req;
        let Some(leg) = self.leg(leg_id) else {
            return;
        };
        let server = leg.backend.server.clone();
        if name.starts_with("join") {
            let publisher = body.get("ptype").and_then(Value::as_str) == Some("publisher");
            self.joined = Some(Joined {
                room,
                leg: leg_id,
                server,
                publisher,
                media: jsep.is_some(),
                confirmed: false,
                join_transaction: transaction.clone(),
                feed: None,
                display: body
                    .get("display")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                streams: Value::Null,
                active: false,
                in_roster: false,
            });
        } else if matches!(
            name.as_str(),
            "edit" | "destroy" | "allowed" | "enable_recording"
        ) {
            self.updates
                .insert(transaction.clone(), (name, room, body.clone()));
        }
        let mut body = body;
        // `permanent` is the proxy's (its rooms file), never a backend's jcfg.
        body.remove("permanent");
        let req = Self::message_request(body, jsep);
        let Some(leg) = self.leg(leg_id) else {
            return;
        };
        self.forward_to(leg, req, transaction, reply_to);
        if self.joined.as_ref().is_some_and(|j| j.leg == leg_id) {
            self.flush_trickles();
        }
    }

    fn fail_request(&self, req: &RoomRequest, why: &str) {
        let e = VrError::new(checks::UNKNOWN_ERROR, why);
        self.refuse(&req.transaction, &req.reply_to, req.asynchronous, &e);
    }

    /// The waiting request cannot reach its room.
    fn fail_waiting(&mut self, ctx: &mut Context<Self>, why: &str) {
        if let Some(w) = self.waiting.take() {
            self.fail_request(&w.req, why);
        }
        self.drain(ctx);
    }

    // ---- trickles and core requests ----

    fn flush_trickles(&mut self) {
        let trickles = std::mem::take(&mut self.trickles);
        if let Some(leg) = self.joined_leg() {
            for t in trickles {
                leg.backend.send(
                    Self::trickle_request(t),
                    None,
                    None::<crate::messages::ReplyRoute>,
                );
            }
        }
    }

    fn on_trickle(&mut self, transaction: String, trickle: Trickle, reply_to: ReplyTo) {
        if let Some(leg) = self.joined_leg() {
            let req = Self::trickle_request(trickle);
            self.forward_to(leg, req, transaction, reply_to);
            return;
        }
        // Janus acks a trickle it cannot use yet: kept until the handle joins.
        self.send_frame(
            &ServerMessage::ack(self.session_id, &transaction),
            Some(&reply_to),
        );
        self.trickles.push(trickle);
    }

    fn on_core_hangup(&mut self, transaction: String, reply_to: ReplyTo) {
        match self.joined_leg() {
            Some(leg) => self.forward_to(leg, request("hangup"), transaction, reply_to),
            None => self.send_frame(
                &ServerMessage::success(self.session_id, &transaction),
                Some(&reply_to),
            ),
        }
    }

    /// The handle is going away (detach, or its session ended).
    fn leave(&mut self, ctx: &mut Context<Self>, detach: Option<(String, ReplyTo)>) {
        self.gone = true;
        self.left_room();
        // Detaching the legs makes Janus tell the others (`leaving` / `unpublished`).
        self.release_legs();
        if let Some((transaction, reply_to)) = detach {
            self.send_frame(
                &ServerMessage::success(self.session_id, &transaction),
                Some(&reply_to),
            );
            let detached = ServerMessage::detached(self.session_id, self.handle_id, None);
            self.send_frame(&detached, None);
        }
        ctx.stop();
    }

    fn release_legs(&mut self) {
        for mut leg in self.legs.drain(..) {
            leg.backend.release();
            leg.backend.end_placement(&self.state.servers.ended);
        }
    }

    /// This handle is out of its room.
    fn left_room(&mut self) {
        self.left_room_as(Departure::Left);
    }

    /// Out of the room (phase 2: the room's other servers are told how).
    fn left_room_as(&mut self, how: Departure) {
        self.renames.clear();
        self.display_changes.clear();
        let Some(j) = self.joined.take() else {
            return;
        };
        if j.publisher {
            self.directory.lock().publisher_left(j.room, self.handle_id);
            self.share_publisher(j.room, None);
        }
        // Only a running coordinator has anything to undo (and none is started while the
        // system stops).
        let running = (self.per_backend() > 0)
            .then(|| coordinator::running(&self.coordinators, j.room))
            .flatten();
        if let Some(c) = running {
            if j.in_roster {
                // The coordinator also takes down its mirrors if it was publishing.
                c.do_send(ParticipantLeft {
                    handle: self.handle_id,
                    how,
                });
            } else if let (true, Some(id), false) =
                (j.active, j.feed, how == Departure::RoomDestroyed)
            {
                c.do_send(PublisherGone { id });
            }
        }
    }

    // ---- backend news ----

    fn on_leg(&mut self, ctx: &mut Context<Self>, leg_id: u64, msg: BackendIncoming) {
        match msg {
            BackendIncoming::Reply {
                frame,
                client_transaction,
                reply_to,
                ..
            } => self.on_leg_reply(ctx, leg_id, frame.into_map(), client_transaction, reply_to),
            BackendIncoming::Event { frame, .. } => {
                self.on_leg_event(ctx, leg_id, frame.into_map())
            }
            BackendIncoming::LinkLost { .. } => self.on_leg_lost(ctx, leg_id, true),
        }
    }

    fn on_leg_reply(
        &mut self,
        ctx: &mut Context<Self>,
        leg_id: u64,
        mut frame: JsonMap,
        client_transaction: Option<String>,
        reply_to: Option<ReplyTo>,
    ) {
        let Some(idx) = self.legs.iter().position(|l| l.id == leg_id) else {
            return;
        };
        if !self.legs[idx].attached {
            match self.legs[idx].backend.on_attach_reply(&frame) {
                Ok(_) => {
                    self.legs[idx].attached = true;
                    if self.waiting.as_ref().and_then(|w| w.leg) == Some(leg_id) {
                        self.ensure_room(ctx);
                    }
                }
                Err(e) => {
                    let mut leg = self.legs.remove(idx);
                    leg.backend.end_placement(&self.state.servers.ended);
                    if self.waiting.as_ref().and_then(|w| w.leg) == Some(leg_id) {
                        let why = format!("backend server could not attach: {}", e.reason);
                        self.fail_waiting(ctx, &why);
                    }
                }
            }
            return;
        }
        let data = frame
            .get("plugindata")
            .and_then(|p| p.get("data"))
            .cloned()
            .unwrap_or(Value::Null);
        let Some(transaction) = client_transaction else {
            // The proxy's own `create` of the backend room.
            let waiting_here = self
                .waiting
                .as_ref()
                .is_some_and(|w| w.leg == Some(leg_id) && w.stage == Stage::Creating);
            if !waiting_here {
                return;
            }
            let code = data.get("error_code").and_then(Value::as_u64);
            let created = data.get("videoroom").and_then(Value::as_str) == Some("created");
            if created || code == Some(u64::from(checks::ROOM_EXISTS)) {
                if let Some(w) = self.waiting.as_ref() {
                    self.directory.lock().mark_created(w.req.room, &w.server);
                    if let Some(c) = self.coordinator(w.req.room) {
                        c.do_send(ServerJoined {
                            server: w.server.clone(),
                        });
                    }
                }
                self.release_waiting(ctx);
            } else {
                let why = match (code, data.get("error").and_then(Value::as_str)) {
                    (_, Some(e)) => format!("backend server refused the room: {e}"),
                    _ => {
                        let e = crate::plugin::backend_handle::api_error_of(&frame);
                        format!("backend server refused the room: {}", e.reason)
                    }
                };
                self.fail_waiting(ctx, &why);
            }
            return;
        };
        let is_error = frame.get("janus").and_then(Value::as_str) == Some("error");
        if is_error {
            let code = frame
                .get("error")
                .and_then(|e| e.get("code"))
                .and_then(Value::as_u64)
                .unwrap_or(490);
            self.state.metrics.error(u16::try_from(code).unwrap_or(490));
        }
        if let Some((name, room, body)) = self.updates.remove(&transaction) {
            if !is_error && data.get("error_code").is_none() {
                // Phase 2: the room's other servers do the same.
                if let Some(c) = self.coordinator(room) {
                    c.do_send(Broadcast {
                        body: body.clone(),
                        servers: self.directory.lock().servers(room),
                        except: self.legs[idx].backend.server.clone(),
                        last: name == "destroy",
                    });
                }
                self.apply_update(&name, room, &body, &data);
                if let Some(saved) = self.save_update(&name, room, &body) {
                    if let Some(d) = frame
                        .get_mut("plugindata")
                        .and_then(|p| p.get_mut("data"))
                        .and_then(Value::as_object_mut)
                    {
                        d.insert("permanent".into(), saved.into());
                    }
                }
            }
        }
        strip_remote_marks(&mut frame);
        if is_error
            && self
                .joined
                .as_ref()
                .is_some_and(|j| j.join_transaction == transaction)
        {
            // The core refused the join (bad jsep, …): not in the room.
            self.joined = None;
        }
        let ids = self.legs[idx].backend.ids(self.session_id, self.handle_id);
        let out = rewrite(frame, ids, Transaction::Client(Some(&transaction)));
        self.send_frame(&out, reply_to.as_ref());
    }

    /// A successful `edit`, `destroy`, `allowed` or `enable_recording`: the directory follows.
    fn apply_update(&mut self, name: &str, room: u64, body: &JsonMap, data: &Value) {
        let mut directory = self.directory.lock();
        match name {
            "destroy" => {
                directory.remove(room);
            }
            "edit" => {
                if let Some(r) = directory.get_mut(room) {
                    r.apply_edit(body);
                }
            }
            "allowed" => {
                if let Some(r) = directory.get_mut(room) {
                    r.apply_allowed(body);
                    if let Some(list) = data.get("allowed") {
                        r.settings.insert("allowed".into(), list.clone());
                    }
                }
            }
            "enable_recording" => {
                if let (Some(r), Some(record)) = (directory.get_mut(room), body.get("record")) {
                    r.settings.insert("record".into(), record.clone());
                }
            }
            _ => {}
        }
        // Shared store: every proxy's directory follows.
        if let Some(store) = self.state.store.rooms() {
            match directory.get(room) {
                None => store.destroyed(RoomKind::VideoRoom, room),
                Some(r) => store.settings_changed(RoomKind::VideoRoom, room, r.settings.clone()),
            }
        }
    }

    /// An `edit` or `destroy` with `permanent: true` done: the rooms file follows, as Janus's
    /// jcfg does. Some(saved) for Janus's `"permanent"` in the answer.
    fn save_update(&mut self, name: &str, room: u64, body: &JsonMap) -> Option<bool> {
        if !matches!(name, "edit" | "destroy") {
            return None;
        }
        if body.get("permanent").and_then(Value::as_bool) != Some(true) {
            return Some(false);
        }
        let settings = self.directory.lock().get(room).map(|r| r.settings.clone());
        let saved = match (name, settings) {
            ("edit", Some(settings)) => self.save_room(room, Some(&settings)),
            ("destroy", _) => self.save_room(room, None),
            _ => false,
        };
        if let Some(r) = self.directory.lock().get_mut(room) {
            r.permanent |= saved;
        }
        Some(saved)
    }

    fn on_leg_event(&mut self, ctx: &mut Context<Self>, leg_id: u64, frame: JsonMap) {
        let Some(idx) = self.legs.iter().position(|l| l.id == leg_id) else {
            return;
        };
        let kind = frame.get("janus").and_then(Value::as_str).unwrap_or("");
        if kind == "detached" {
            // Janus dropped the leg on its own (the link no longer routes it).
            self.legs[idx].backend.handle = None;
            self.on_leg_lost(ctx, leg_id, false);
            return;
        }
        let ids = self.legs[idx].backend.ids(self.session_id, self.handle_id);
        let mut out = rewrite(frame, ids, Transaction::FromBackend).into_map();
        let is_joined_leg = self.joined.as_ref().is_some_and(|j| j.leg == leg_id);
        if is_joined_leg {
            self.track_room(&out);
            self.apply_rename(&mut out);
            if self.join_roster(ctx, &out) {
                return;
            }
        }
        self.send_frame(&out, None);
    }

    /// Phase 2: an event the coordinator said means something else is delivered as Janus
    /// says that to the publisher's own server: a mirror's `leaving: id` as `unpublished` or
    /// `kicked`, the `publishers` event of a mirror's update as the display-name event.
    fn apply_rename(&mut self, frame: &mut JsonMap) {
        if self.renames.is_empty() && self.display_changes.is_empty() {
            return;
        }
        let Some(data) = frame
            .get_mut("plugindata")
            .and_then(|p| p.get_mut("data"))
            .and_then(Value::as_object_mut)
        else {
            return;
        };
        let only = match data.get("publishers").and_then(Value::as_array) {
            Some(list) if list.len() == 1 => list[0].get("id").and_then(Value::as_u64),
            _ => None,
        };
        if let Some((id, display)) =
            only.and_then(|id| self.display_changes.remove(&id).map(|d| (id, d)))
        {
            *data = JsonMap::new();
            data.insert("videoroom".into(), "event".into());
            data.insert("id".into(), id.into());
            data.insert("display".into(), display.into());
            return;
        }
        let Some(id) = data.get("leaving").and_then(Value::as_u64) else {
            return;
        };
        if let Some(key) = self.renames.remove(&id) {
            data.shift_remove("leaving");
            data.insert(key.into(), id.into());
        }
    }

    /// Phase 2: this handle's publisher `joined` (the answer in `frame`): the room's
    /// coordinator counts it, and the participants of the room's other servers that its own
    /// server does not know of join its `attendees` (when the room lists them). The frame
    /// goes out once the coordinator answered; the handle handles nothing else meanwhile, so
    /// that no later event overtakes it. False: nothing to do, the caller sends the frame.
    fn join_roster(&mut self, ctx: &mut Context<Self>, frame: &JsonMap) -> bool {
        let data = frame.get("plugindata").and_then(|p| p.get("data"));
        if data
            .and_then(|d| d.get("videoroom"))
            .and_then(Value::as_str)
            != Some("joined")
        {
            return false;
        }
        let joined = self.joined.as_ref().and_then(|j| match j.feed {
            Some(id) if j.publisher && j.confirmed && !j.in_roster => Some(ParticipantJoined {
                handle: self.handle_id,
                server: j.server.clone(),
                id,
                display: j.display.clone(),
                notify: ctx.address().recipient(),
            }),
            _ => None,
        });
        let (Some(msg), Some(c)) = (
            joined,
            self.joined.as_ref().and_then(|j| self.coordinator(j.room)),
        ) else {
            return false;
        };
        if let Some(j) = self.joined.as_mut() {
            j.in_roster = true;
        }
        // The handle waits for nothing else meanwhile: never longer than a request may take.
        let ask = tokio::time::timeout(self.state.config.backend.request_timeout(), c.send(msg));
        let mut frame = frame.clone();
        let fut = ask.into_actor(self).map(move |attendees, act, _| {
            let listed = frame
                .get_mut("plugindata")
                .and_then(|p| p.get_mut("data"))
                .and_then(|d| d.get_mut("attendees"))
                .and_then(Value::as_array_mut);
            if let (Some(list), Ok(Ok(more))) = (listed, attendees) {
                list.extend(more);
            }
            act.send_frame(&frame, None);
        });
        ctx.wait(fut);
        true
    }

    /// Follows the handle's own membership from its leg's events.
    fn track_room(&mut self, frame: &JsonMap) {
        let Some(j) = self.joined.as_mut() else {
            return;
        };
        if frame.get("jsep").is_some() {
            j.media = true;
        }
        let kind = frame.get("janus").and_then(Value::as_str).unwrap_or("");
        if kind == "webrtcup" {
            if j.publisher && j.confirmed && j.streams.is_array() {
                j.active = true;
                self.mirror_active();
            }
            return;
        }
        if kind == "hangup" {
            // The PeerConnection is closed: a publisher no longer publishes.
            self.mirror_gone();
            return;
        }
        let data = frame
            .get("plugindata")
            .and_then(|p| p.get("data"))
            .cloned()
            .unwrap_or(Value::Null);
        let transaction = frame.get("transaction").and_then(Value::as_str);
        let what = data.get("videoroom").and_then(Value::as_str).unwrap_or("");
        if let Some(streams) = data
            .get("streams")
            .filter(|_| j.publisher && what != "attached")
        {
            if what == "joined" || data.get("configured").is_some() {
                j.streams = streams.clone();
            }
        }
        if data.get("configured").is_some() && j.active {
            // A renegotiation or a new display name: the mirrors are updated at once.
            self.mirror_active();
        }
        let Some(j) = self.joined.as_mut() else {
            return;
        };
        let is_join_answer = transaction == Some(j.join_transaction.as_str()) && !j.confirmed;
        if is_join_answer {
            if data.get("error_code").is_some() {
                self.joined = None;
                return;
            }
            if what == "joined" || what == "attached" {
                j.confirmed = true;
                if what == "joined" && j.publisher {
                    j.feed = data.get("id").and_then(Value::as_u64);
                    let (room, handle, server) = (j.room, self.handle_id, j.server.clone());
                    let feed = j.feed.unwrap_or(0);
                    let private_id = data.get("private_id").and_then(Value::as_u64);
                    let mut directory = self.directory.lock();
                    directory.publisher_joined(room, handle, &server, feed);
                    directory.participant_owner(room, handle, self.session_id, private_id);
                    drop(directory);
                    self.share_publisher(room, Some((feed, &server)));
                }
            }
            return;
        }
        if data.get("unpublished").and_then(Value::as_str) == Some("ok") {
            self.mirror_gone();
        }
        if what == "destroyed" {
            return self.left_room_as(Departure::RoomDestroyed);
        }
        let left = data.get("leaving").and_then(Value::as_str) == Some("ok")
            || data.get("left").and_then(Value::as_str) == Some("ok");
        if left {
            let kicked = data.get("reason").and_then(Value::as_str) == Some("kicked");
            self.left_room_as(if kicked {
                Departure::Kicked
            } else {
                Departure::Left
            });
        }
    }

    /// Phase 2: the coordinator of this handle's room, if rooms may span servers.
    fn coordinator(&self, room: u64) -> Option<Addr<RoomCoordinator>> {
        (self.per_backend() > 0).then(|| {
            coordinator::coordinator(&self.coordinators, &self.state, &self.directory, room)
        })
    }

    /// This handle's publisher is (still) publishing: mirrored to the room's other servers.
    fn mirror_active(&self) {
        let Some(j) = self.joined.as_ref().filter(|j| j.active) else {
            return;
        };
        let (Some(id), Some(c)) = (j.feed, self.coordinator(j.room)) else {
            return;
        };
        c.do_send(PublisherActive {
            server: j.server.clone(),
            id,
            display: j.display.clone(),
            streams: coordinator::remote_streams_with_levels(&j.streams, self.audio_level_ext),
        });
    }

    /// This handle's publisher stopped publishing: its mirrors go.
    fn mirror_gone(&mut self) {
        let Some(j) = self.joined.as_mut().filter(|j| j.active) else {
            return;
        };
        j.active = false;
        let (room, feed) = (j.room, j.feed);
        if let (Some(id), Some(c)) = (feed, self.coordinator(room)) {
            c.do_send(PublisherGone { id });
        }
    }

    /// A leg's server is gone (`server_lost`), or Janus dropped the leg.
    fn on_leg_lost(&mut self, ctx: &mut Context<Self>, leg_id: u64, server_lost: bool) {
        let Some(idx) = self.legs.iter().position(|l| l.id == leg_id) else {
            return;
        };
        let mut leg = self.legs.remove(idx);
        leg.backend.forget();
        leg.backend.end_placement(&self.state.servers.ended);
        let server = leg.backend.server.clone();
        // This handle's publisher leaves the shared participants before the placement is
        // cleared (the store keeps a placement while other proxies' participants are recorded
        // there: each proxy's clear comes after its own removals, so the last one clears it).
        if let Some(j) = self
            .joined
            .as_ref()
            .filter(|j| j.leg == leg_id && j.publisher)
        {
            self.share_publisher(j.room, None);
        }
        if server_lost {
            // Every room there is gone with it: the next join creates it again elsewhere.
            let rooms = self.directory.lock().forget_server(&server);
            if let Some(store) = self.state.store.rooms() {
                for room in &rooms {
                    store.clear_placement(RoomKind::VideoRoom, *room, &server);
                }
            }
            if self.per_backend() > 0 {
                let coordinators = self.coordinators.lock();
                for room in rooms {
                    if let Some(c) = coordinators.get(&room) {
                        c.do_send(ServerLost {
                            server: server.clone(),
                        });
                    }
                }
            }
        }
        if self.waiting.as_ref().and_then(|w| w.leg) == Some(leg_id) {
            let why = format!("backend server {server} unavailable");
            self.fail_waiting(ctx, &why);
        }
        if let Some(j) = self.joined.take().filter(|j| j.leg == leg_id) {
            if j.media {
                let frame = ServerMessage::hangup(
                    self.session_id,
                    self.handle_id,
                    None,
                    BACKEND_LOST_REASON,
                );
                self.send_frame(&frame, None);
            }
            let data = if j.publisher {
                json!({"videoroom": "event", "room": j.room, "leaving": "ok",
                    "reason": BACKEND_LOST_REASON})
            } else {
                json!({"videoroom": "event", "room": j.room, "left": "ok",
                    "reason": BACKEND_LOST_REASON})
            };
            self.event(None, data);
            log::info!(
                "videoroom handle {}: room {} lost with backend server {}",
                self.handle_id,
                j.room,
                j.server
            );
        } else if let Some(j) = self.joined.take() {
            // Another leg's server: this handle's room is elsewhere.
            self.joined = Some(j);
        }
    }
}

/// Places `room` on `server` through the shared store (the first proxy wins; `dead`, a
/// server found unreachable, is replaced); the directory follows. Redis away: the directory
/// decides. None: the room is gone.
async fn place_shared(
    store: &RoomStore,
    directory: &SharedDirectory,
    room: u64,
    server: &str,
    dead: Option<String>,
) -> Option<String> {
    match store
        .place(RoomKind::VideoRoom, room, server, dead.as_deref())
        .await
    {
        Ok(Some(winner)) => directory
            .lock()
            .set_placement(room, &winner)
            .then_some(winner),
        Ok(None) => None,
        Err(_) => directory.lock().place(room, server),
    }
}

/// Janus marks mirrored publishers `"remote": true` in `listparticipants`: the proxy's
/// mirrors are ordinary participants for the client.
fn strip_remote_marks(frame: &mut JsonMap) {
    let participants = frame
        .get_mut("plugindata")
        .and_then(|p| p.get_mut("data"))
        .and_then(|d| d.get_mut("participants"))
        .and_then(Value::as_array_mut);
    for p in participants.into_iter().flatten() {
        if let Some(p) = p.as_object_mut() {
            p.shift_remove("remote");
        }
    }
}

impl Actor for VideoRoomHandle {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        // Also reached when the system shuts down.
        self.left_room();
        self.release_legs();
    }
}

crate::plugin::queued_handle_commands!(VideoRoomHandle);

impl Handler<RoomNotice> for VideoRoomHandle {
    type Result = ();

    fn handle(&mut self, msg: RoomNotice, _: &mut Context<Self>) {
        if self.gone || !self.joined.as_ref().is_some_and(|j| j.in_roster) {
            return;
        }
        match msg {
            RoomNotice::Event(data) => self.event(None, data),
            RoomNotice::Rename { id, as_key } => {
                self.renames.insert(id, as_key);
            }
            RoomNotice::Display { id, display } => {
                self.display_changes.insert(id, display);
            }
        }
    }
}

impl Handler<LegIncoming> for VideoRoomHandle {
    type Result = ();

    fn handle(&mut self, msg: LegIncoming, ctx: &mut Context<Self>) {
        if self.gone {
            return;
        }
        self.on_leg(ctx, msg.leg, msg.msg);
    }
}
