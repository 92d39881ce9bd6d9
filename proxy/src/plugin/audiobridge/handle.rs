//! `AudioBridgeHandle`: one actor per client audiobridge handle.
//!
//! The handle owns at most one *leg* — a backend audiobridge handle — per backend server it
//! has business with: the server of the room it joined (where its PeerConnection is), and the
//! servers of the rooms it asked about. Every request but `list` and `exists` goes to one
//! leg, and the backend's reply and events come back with the client's ids, so errors, texts
//! and events are Janus's own. Requests are processed one at a time, in order (as Janus's
//! plugin does per handle); trickles keep their place in that order.
//!
//! Which server a request goes to:
//!
//! * `create`: any server validates it (Janus's checks and answer); once Janus created the
//!   room it is destroyed there again and recorded in the directory without a server.
//! * `join` and the room-level requests (`edit`, `destroy`, `kick`, `rtp_forward`, …) about a
//!   room of the directory: the room's server. A room without one (never joined yet, or its
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

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::Arc;

use actix::prelude::*;
use janus_protocol::{JsonMap, ServerMessage, Trickle};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::directory::Whereabouts;
use super::{SharedRooms, PACKAGE};
use crate::messages::LinkPhase;
use crate::messages::{BackendIncoming, LinkRequest, UnrouteHandle};
use crate::plugin::backend_handle::{attached_id, request, BackendLeg, LegIncoming};
use crate::plugin::relay::BACKEND_LOST_REASON;
use crate::plugin::rewrite::{rewrite, IdMap, Transaction};
use crate::plugin::{admin_key, rooms_file, AttachContext, HandleCommand};
use crate::registry::{PlaceOn, Placement, SelectServer};
use crate::session::{ClientSession, Deliver};
use crate::state::ProxyState;
use crate::store::rooms::{ParticipantRecord, RoomKind, RoomRecord};
use crate::transport::{ClientFrame, ReplyTo};

/// Janus's code for errors that fit no other (the proxy's own failures).
const UNKNOWN_ERROR: u16 = 499;

/// Requests Janus's AudioBridge answers synchronously (a `success` with the result) that are
/// about one room: they go to the room's server.
const ROOM_REQUESTS: &[&str] = &[
    "edit",
    "destroy",
    "allowed",
    "kick",
    "kick_all",
    "listparticipants",
    "resetdecoder",
    "rtp_forward",
    "stop_rtp_forward",
    "listforwarders",
    "enable_recording",
    "enable_mjrs",
    "play_file",
    "is_playing",
    "stop_file",
    "mute",
    "unmute",
    "mute_room",
    "unmute_room",
    "suspend",
    "resume",
];

/// Every synchronous request (for the shape of the proxy's own errors).
fn is_sync(request: &str) -> bool {
    matches!(request, "create" | "list" | "exists") || ROOM_REQUESTS.contains(&request)
}

// ---- plumbing: a link's news about one leg, replies to one request ------------------------

/// Receives what a link sends about one leg: the attach reply goes to whoever waits for it,
/// the rest to the handle. If nobody waits any more, the new backend handle is detached.
struct LegForwarder {
    leg: u64,
    to: Addr<AudioBridgeHandle>,
    link: crate::messages::LinkPort,
    attach_reply: Option<oneshot::Sender<JsonMap>>,
}

impl Actor for LegForwarder {
    type Context = Context<Self>;
}

impl Handler<BackendIncoming> for LegForwarder {
    type Result = ();

    fn handle(&mut self, msg: BackendIncoming, _: &mut Context<Self>) {
        if let Some(tx) = self.attach_reply.take() {
            if let BackendIncoming::Reply { frame, .. } = msg {
                if let Err(frame) = tx.send(frame.into_map()) {
                    // The handle went away meanwhile: the backend handle is nobody's.
                    if let Some(id) = attached_id(&frame) {
                        self.link.unroute.do_send(UnrouteHandle(id));
                        self.link.requests.do_send(LinkRequest {
                            request: request("detach"),
                            backend_handle: Some(id),
                            client_transaction: None,
                            reply: None,
                            attach: false,
                        });
                    }
                }
            }
            return;
        }
        self.to.do_send(LegIncoming { leg: self.leg, msg });
    }
}

/// Takes the reply to one request.
struct OneReply {
    tx: Option<oneshot::Sender<JsonMap>>,
}

impl Actor for OneReply {
    type Context = Context<Self>;
}

impl Handler<BackendIncoming> for OneReply {
    type Result = ();

    fn handle(&mut self, msg: BackendIncoming, ctx: &mut Context<Self>) {
        if let BackendIncoming::Reply { frame, .. } = msg {
            if let Some(tx) = self.tx.take() {
                let _ = tx.send(frame.into_map());
            }
        }
        ctx.stop();
    }
}

/// The error frame for a request whose reply never came.
fn lost_reply(server: &str) -> JsonMap {
    let frame = json!({"janus": "error", "error": {"code": 490,
        "reason": format!("connection to backend server {server} lost")}});
    match frame {
        Value::Object(m) => m,
        _ => JsonMap::new(),
    }
}

/// Sends `request` on `leg`; resolves to the backend's first reply.
fn backend_call(
    leg: &BackendLeg,
    request: JsonMap,
    client_transaction: Option<String>,
) -> impl Future<Output = JsonMap> {
    let (tx, rx) = oneshot::channel();
    let to = OneReply { tx: Some(tx) }.start().recipient();
    leg.send(request, client_transaction, Some((to, None)));
    let server = leg.server.clone();
    async move { rx.await.unwrap_or_else(|_| lost_reply(&server)) }
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

/// `plugindata.data` of a frame.
fn plugin_data(frame: &JsonMap) -> Option<&JsonMap> {
    frame
        .get("plugindata")
        .and_then(|p| p.get("data"))
        .and_then(Value::as_object)
}

fn is_error(frame: &JsonMap) -> bool {
    frame.get("janus").and_then(Value::as_str) == Some("error")
}

fn error_reason(frame: &JsonMap) -> String {
    if is_error(frame) {
        return crate::plugin::backend_handle::api_error_of(frame).reason;
    }
    plugin_data(frame)
        .and_then(|d| d.get("error"))
        .and_then(Value::as_str)
        .unwrap_or("unexpected reply")
        .to_owned()
}

/// The room a body names, when it is a numeric id.
fn room_of(body: &JsonMap, key: &str) -> Option<u64> {
    body.get(key).and_then(Value::as_u64)
}

// ---- the handle ---------------------------------------------------------------------------

struct Leg {
    id: u64,
    backend: BackendLeg,
}

/// The room this handle is a participant of, as its server told it.
struct Participant {
    server: String,
    room: Value,
    id: Option<Value>,
}

/// What a successful reply changes in the directory.
enum After {
    Nothing,
    Edited(u64, JsonMap),
    Allowed(u64, JsonMap),
    /// With `permanent` as asked (the rooms file follows).
    Destroyed(u64, bool),
}

type Then<T> = Box<dyn FnOnce(&mut AudioBridgeHandle, &mut Context<AudioBridgeHandle>, T)>;

pub struct AudioBridgeHandle {
    session_id: u64,
    handle_id: u64,
    state: Arc<ProxyState>,
    session: Addr<ClientSession>,
    opaque_id: Option<String>,
    rooms: SharedRooms,
    legs: BTreeMap<String, Leg>,
    next_leg: u64,
    participant: Option<Participant>,
    /// The server of the handle's PeerConnection (where an SDP went).
    media: Option<String>,
    queue: VecDeque<HandleCommand>,
    busy: bool,
    gone: bool,
    /// A room id reserved by this handle's `create` in progress (freed if the handle goes).
    reserving: Option<u64>,
    /// The `list` being made shows private rooms (the right `admin_key`).
    listing_private: bool,
    /// Shared store: the room just read from it (a second miss is final).
    looked_up: Option<u64>,
    /// Shared store: the room this handle just took off a server it could not use, and that
    /// server (its next placement replaces that one in the store).
    unplaced: Option<(u64, String)>,
    /// Shared store: the participation this handle recorded there (room, id).
    shared_participant: Option<(u64, Value)>,
    /// The display name of the handle's last `join` (for the shared store's views).
    display: Option<String>,
}

impl AudioBridgeHandle {
    pub fn new(ctx: AttachContext, rooms: SharedRooms) -> Self {
        AudioBridgeHandle {
            session_id: ctx.session_id,
            handle_id: ctx.handle_id,
            state: ctx.state,
            session: ctx.session,
            opaque_id: ctx.opaque_id,
            rooms,
            legs: BTreeMap::new(),
            next_leg: 1,
            participant: None,
            media: None,
            queue: VecDeque::new(),
            busy: false,
            gone: false,
            reserving: None,
            listing_private: false,
            looked_up: None,
            unplaced: None,
            shared_participant: None,
            display: None,
        }
    }

    // ---- the shared store (several proxies) ----

    /// The room could not be used on `server`: unplaced here and, compare-and-delete, in the
    /// shared store.
    fn unplace(&mut self, room: u64, server: &str) {
        self.rooms.lock().unplace(room, server);
        if let Some(store) = self.state.store.rooms() {
            store.clear_placement(RoomKind::AudioBridge, room, server);
            self.unplaced = Some((room, server.to_owned()));
        }
    }

    /// Places an unplaced room on `server`, through the shared store first (the first proxy
    /// wins): `then` gets where the room lives (None: no such room any more).
    fn claim(
        &mut self,
        ctx: &mut Context<Self>,
        room: u64,
        server: String,
        then: Then<Option<String>>,
    ) {
        let Some(store) = self.state.store.rooms() else {
            let placed = self.rooms.lock().place(room, &server);
            return then(self, ctx, placed);
        };
        let dead = self
            .unplaced
            .take()
            .filter(|(r, _)| *r == room)
            .map(|(_, s)| s);
        let fut = async move {
            store
                .place(RoomKind::AudioBridge, room, &server, dead.as_deref())
                .await
                .map_err(|_| server)
        };
        self.after(
            ctx,
            fut,
            Box::new(move |act, ctx, placed| {
                let placed = match placed {
                    Ok(Some(winner)) => act
                        .rooms
                        .lock()
                        .set_placement(room, &winner)
                        .then_some(winner),
                    Ok(None) => None,
                    // Redis away: this proxy's directory decides.
                    Err(server) => act.rooms.lock().place(room, &server),
                };
                then(act, ctx, placed)
            }),
        );
    }

    /// A request about `room`, unknown here, may be about another proxy's room: read it from
    /// the shared store once, then handle the request again. Some: nothing to read, the
    /// request back.
    fn read_through(
        &mut self,
        ctx: &mut Context<Self>,
        room: u64,
        request: (String, JsonMap, Option<JsonMap>, ReplyTo),
    ) -> Option<(String, JsonMap, Option<JsonMap>, ReplyTo)> {
        let looked_up = self.looked_up.take() == Some(room);
        let store = self.state.store.rooms();
        let (Some(store), false) = (store, looked_up || self.rooms.lock().contains(room)) else {
            return Some(request);
        };
        let fut = async move { store.fetch(RoomKind::AudioBridge, room).await };
        self.after(
            ctx,
            fut,
            Box::new(move |act, ctx, _| {
                act.looked_up = Some(room);
                let (transaction, body, jsep, reply_to) = request;
                act.on_message(ctx, transaction, body, jsep, reply_to);
            }),
        );
        None
    }

    /// Records this handle's participation (or its end) in the shared store.
    fn share_participant(&mut self) {
        let Some(store) = self.state.store.rooms() else {
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
            store.participant_left(RoomKind::AudioBridge, room, self.handle_id);
        }
        self.shared_participant = now.as_ref().map(|(r, id, _)| (*r, id.clone()));
        if let Some((room, id, server)) = now {
            let participant = ParticipantRecord {
                id,
                display: self.display.clone(),
                server,
            };
            store.participant_joined(RoomKind::AudioBridge, room, self.handle_id, participant);
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

    fn ids(&self, server: &str) -> IdMap {
        IdMap {
            frontend_session: self.session_id,
            frontend_handle: self.handle_id,
            backend_handle: self.legs.get(server).and_then(|l| l.backend.handle),
        }
    }

    /// A plugin frame (`success` or `event`) made by the proxy, in Janus's key order.
    fn plugin_frame(&self, janus: &str, transaction: Option<&str>, data: Value) -> JsonMap {
        let mut f = JsonMap::new();
        f.insert("janus".into(), janus.into());
        f.insert("session_id".into(), self.session_id.into());
        if let Some(t) = transaction {
            f.insert("transaction".into(), t.into());
        }
        f.insert("sender".into(), self.handle_id.into());
        f.insert(
            "plugindata".into(),
            json!({"plugin": PACKAGE, "data": data}),
        );
        f
    }

    /// The proxy's own failure to serve a request, shaped as Janus answers the request.
    fn fail(&self, transaction: &str, reply_to: &ReplyTo, sync: bool, why: &str) {
        self.state.metrics.error(UNKNOWN_ERROR);
        let data = json!({"audiobridge": "event", "error_code": UNKNOWN_ERROR, "error": why});
        if sync {
            let f = self.plugin_frame("success", Some(transaction), data);
            self.send_frame(&f, Some(reply_to));
        } else {
            self.send_frame(
                &ServerMessage::ack(self.session_id, transaction),
                Some(reply_to),
            );
            let f = self.plugin_frame("event", Some(transaction), data);
            self.send_frame(&f, None);
        }
    }

    // ---- the command queue ----

    fn enqueue(&mut self, ctx: &mut Context<Self>, cmd: HandleCommand) {
        self.queue.push_back(cmd);
        self.drain(ctx);
    }

    fn drain(&mut self, ctx: &mut Context<Self>) {
        while !self.busy && !self.gone {
            let Some(cmd) = self.queue.pop_front() else {
                return;
            };
            self.busy = true;
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
                } => self.on_trickle(ctx, transaction, trickle, reply_to),
                HandleCommand::Hangup {
                    transaction,
                    reply_to,
                } => self.on_core_hangup(ctx, transaction, reply_to),
                _ => self.busy = false,
            }
        }
    }

    fn done(&mut self, ctx: &mut Context<Self>) {
        self.busy = false;
        self.drain(ctx);
    }

    fn after<T: 'static>(
        &mut self,
        ctx: &mut Context<Self>,
        fut: impl Future<Output = T> + 'static,
        then: Then<T>,
    ) {
        ctx.spawn(
            fut.into_actor(self)
                .map(move |t, act: &mut Self, ctx: &mut Context<Self>| then(act, ctx, t)),
        );
    }

    // ---- legs ----

    /// Makes sure this handle has a leg on `server` (using `placement` if it has one for it).
    fn ensure_leg(
        &mut self,
        ctx: &mut Context<Self>,
        server: String,
        placement: Option<Placement>,
        then: Then<Result<(), String>>,
    ) {
        if self.legs.contains_key(&server) {
            if let Some(p) = placement {
                BackendLeg::new(p).end_placement(&self.state.servers.ended);
            }
            return then(self, ctx, Ok(()));
        }
        let registry = self.state.registry.clone();
        let wanted = server.clone();
        let fut = async move {
            match placement {
                Some(p) => Some(p),
                None => registry
                    .send(PlaceOn { server: wanted })
                    .await
                    .ok()
                    .flatten(),
            }
        };
        self.after(
            ctx,
            fut,
            Box::new(move |act, ctx, placement| {
                let Some(p) = placement else {
                    return then(act, ctx, Err(format!("backend server {server} is gone")));
                };
                if act.legs.contains_key(&server) {
                    BackendLeg::new(p).end_placement(&act.state.servers.ended);
                    return then(act, ctx, Ok(()));
                }
                act.attach_leg(ctx, p, then);
            }),
        );
    }

    fn attach_leg(
        &mut self,
        ctx: &mut Context<Self>,
        placement: Placement,
        then: Then<Result<(), String>>,
    ) {
        let id = self.next_leg;
        self.next_leg += 1;
        let (tx, rx) = oneshot::channel();
        let forwarder = LegForwarder {
            leg: id,
            to: ctx.address(),
            link: placement.link.clone(),
            attach_reply: Some(tx),
        }
        .start()
        .recipient();
        let mut backend = BackendLeg::new(placement);
        backend.attach(PACKAGE, self.opaque_id.as_deref(), forwarder);
        self.after(
            ctx,
            rx,
            Box::new(move |act, ctx, frame| {
                let server = backend.server.clone();
                let result = match frame {
                    Ok(frame) => backend.on_attach_reply(&frame).map_err(|e| e.reason),
                    Err(_) => Err(format!("connection to backend server {server} lost")),
                };
                match result {
                    Ok(_) if !act.legs.contains_key(&server) => {
                        act.legs.insert(server, Leg { id, backend });
                        then(act, ctx, Ok(()))
                    }
                    Ok(_) => {
                        // Another attach to the same server won the race.
                        backend.release();
                        backend.end_placement(&act.state.servers.ended);
                        then(act, ctx, Ok(()))
                    }
                    Err(why) => {
                        backend.end_placement(&act.state.servers.ended);
                        then(act, ctx, Err(why))
                    }
                }
            }),
        );
    }

    fn release_legs(&mut self) {
        for (_, mut leg) in std::mem::take(&mut self.legs) {
            leg.backend.release();
            leg.backend.end_placement(&self.state.servers.ended);
        }
    }

    /// Sends `request` on the leg on `server` (which must exist); `then` gets the reply.
    fn call(
        &mut self,
        ctx: &mut Context<Self>,
        server: &str,
        request: JsonMap,
        client_transaction: Option<String>,
        then: Then<JsonMap>,
    ) {
        let Some(leg) = self.legs.get(server) else {
            return then(self, ctx, lost_reply(server));
        };
        let fut = backend_call(&leg.backend, request, client_transaction);
        self.after(ctx, fut, then);
    }

    // ---- where requests go ----

    /// Any server this handle can ask: its room's, its PeerConnection's, any of its legs',
    /// else one chosen by the policy.
    fn any_server(&mut self, ctx: &mut Context<Self>, then: Then<Result<String, String>>) {
        let known = self
            .participant
            .as_ref()
            .map(|p| p.server.clone())
            .or_else(|| self.media.clone())
            .filter(|s| self.legs.contains_key(s))
            .or_else(|| self.legs.keys().next().cloned());
        if let Some(server) = known {
            return then(self, ctx, Ok(server));
        }
        self.select(ctx, then);
    }

    /// A server chosen by the registry's policy, with a leg on it.
    fn select(&mut self, ctx: &mut Context<Self>, then: Then<Result<String, String>>) {
        let registry = self.state.registry.clone();
        let select = SelectServer {
            package: PACKAGE.to_owned(),
            avoid: Vec::new(),
        };
        self.after(
            ctx,
            async move { registry.send(select).await },
            Box::new(move |act, ctx, placement| {
                let p = match placement {
                    Ok(Ok(p)) => p,
                    Ok(Err(e)) => return then(act, ctx, Err(e.to_string())),
                    Err(_) => return then(act, ctx, Err("the proxy is shutting down".into())),
                };
                let server = p.server.clone();
                act.ensure_leg(
                    ctx,
                    server.clone(),
                    Some(p),
                    Box::new(move |act, ctx, r| then(act, ctx, r.map(|_| server))),
                );
            }),
        );
    }

    /// The server of a room of the directory, with a leg on it and the room created there.
    /// A room without a server (or on a server whose link is down) is placed by the policy,
    /// or on `prefer`.
    ///
    /// A placement that fails because its server cannot be reached (the room is unplaced
    /// then) is tried once more on a server chosen by the policy: a room whose server died
    /// unseen (no handle had a leg there) is created elsewhere at once.
    fn room_server(
        &mut self,
        ctx: &mut Context<Self>,
        room: u64,
        prefer: Option<String>,
        then: Then<Result<String, String>>,
    ) {
        let retry: Then<Result<String, String>> = Box::new(move |act, ctx, r| match r {
            Err(why) if act.rooms.lock().whereabouts(room) == Whereabouts::Unplaced => {
                log::info!("audiobridge room {room}: {why}; placing it again");
                act.place_room(ctx, room, None, then)
            }
            r => then(act, ctx, r),
        });
        self.place_room(ctx, room, prefer, retry)
    }

    fn place_room(
        &mut self,
        ctx: &mut Context<Self>,
        room: u64,
        prefer: Option<String>,
        then: Then<Result<String, String>>,
    ) {
        let whereabouts = self.rooms.lock().whereabouts(room);
        match whereabouts {
            Whereabouts::Unknown => then(self, ctx, Err(format!("No such room ({room})"))),
            Whereabouts::On { server, ready } => {
                let down = !self.legs.contains_key(&server)
                    && self
                        .state
                        .links
                        .status(&server)
                        .is_none_or(|s| s.phase() == LinkPhase::Down);
                if down {
                    log::info!("audiobridge room {room}: server {server} is down, placing again");
                    self.unplace(room, &server);
                    return self.place_room(ctx, room, prefer, then);
                }
                if ready {
                    self.ensure_leg(
                        ctx,
                        server.clone(),
                        None,
                        Box::new(move |act, ctx, r| match r {
                            Ok(()) => then(act, ctx, Ok(server)),
                            Err(why) => {
                                act.unplace(room, &server);
                                then(act, ctx, Err(why))
                            }
                        }),
                    );
                } else {
                    self.create_on(ctx, room, server, then);
                }
            }
            Whereabouts::Unplaced => {
                if let Some(server) = prefer {
                    return self.claim(
                        ctx,
                        room,
                        server.clone(),
                        Box::new(move |act, ctx, placed| match placed {
                            Some(s) if s == server => act.create_on(ctx, room, s, then),
                            Some(_) => act.place_room(ctx, room, None, then),
                            None => then(act, ctx, Err(format!("No such room ({room})"))),
                        }),
                    );
                }
                self.select(
                    ctx,
                    Box::new(move |act, ctx, chosen| {
                        let chosen = match chosen {
                            Ok(s) => s,
                            Err(why) => return then(act, ctx, Err(why)),
                        };
                        act.claim(
                            ctx,
                            room,
                            chosen.clone(),
                            Box::new(move |act, ctx, placed| match placed {
                                Some(s) if s == chosen => act.create_on(ctx, room, s, then),
                                // Placed elsewhere meanwhile (or destroyed): ask again.
                                _ => act.place_room(ctx, room, None, then),
                            }),
                        );
                    }),
                );
            }
        }
    }

    /// Creates `room` on `server` with its settings (486, "already exists", is fine).
    fn create_on(
        &mut self,
        ctx: &mut Context<Self>,
        room: u64,
        server: String,
        then: Then<Result<String, String>>,
    ) {
        log::info!("audiobridge room {room}: creating it on {server}");
        self.ensure_leg(
            ctx,
            server.clone(),
            None,
            Box::new(move |act, ctx, r| {
                if let Err(why) = r {
                    act.unplace(room, &server);
                    return then(act, ctx, Err(why));
                }
                let Some(mut body) = act.rooms.lock().config(room) else {
                    return then(act, ctx, Err(format!("No such room ({room})")));
                };
                body.insert("request".into(), "create".into());
                body.insert("room".into(), room.into());
                // Backends that have the same `admin_key` (harmless for those without one).
                let key = &act.state.config.plugins.audiobridge_admin_key;
                if !key.is_empty() {
                    body.insert("admin_key".into(), key.as_str().into());
                }
                let req = message_request(body, None);
                act.call(
                    ctx,
                    &server.clone(),
                    req,
                    None,
                    Box::new(move |act, ctx, frame| {
                        let data = plugin_data(&frame);
                        let created = data
                            .and_then(|d| d.get("audiobridge"))
                            .and_then(Value::as_str)
                            == Some("created");
                        let exists = data
                            .and_then(|d| d.get("error_code"))
                            .and_then(Value::as_u64)
                            == Some(486);
                        if created || exists {
                            act.rooms.lock().mark_ready(room, &server);
                            then(act, ctx, Ok(server))
                        } else {
                            if is_error(&frame) {
                                act.unplace(room, &server);
                            }
                            let why = error_reason(&frame);
                            log::warn!("audiobridge room {room}: not created on {server}: {why}");
                            then(act, ctx, Err(why))
                        }
                    }),
                );
            }),
        )
    }

    // ---- client requests ----

    fn on_message(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: String,
        body: JsonMap,
        jsep: Option<JsonMap>,
        reply_to: ReplyTo,
    ) {
        let name = body
            .get("request")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        let sync = is_sync(&name);
        let about = match name.as_str() {
            "exists" | "join" | "changeroom" | "create" => room_of(&body, "room"),
            n if ROOM_REQUESTS.contains(&n) => room_of(&body, "room"),
            _ => None,
        };
        let (transaction, body, jsep, reply_to) = match about.filter(|r| *r != 0) {
            Some(room) => match self.read_through(ctx, room, (transaction, body, jsep, reply_to)) {
                None => return,
                Some(request) => request,
            },
            None => (transaction, body, jsep, reply_to),
        };
        if name == "join" {
            self.display = body
                .get("display")
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
        match name.as_str() {
            "create" => self.create(ctx, transaction, body, reply_to),
            "list" => self.list(ctx, transaction, body, reply_to),
            "exists" if room_of(&body, "room").is_some() => {
                let room = room_of(&body, "room").unwrap_or_default();
                let exists = self.rooms.lock().whereabouts(room) != Whereabouts::Unknown;
                let data = json!({"audiobridge": "success", "room": room, "exists": exists});
                let f = self.plugin_frame("success", Some(&transaction), data);
                self.send_frame(&f, Some(&reply_to));
                self.done(ctx);
            }
            "changeroom" => {
                let prefer = self.participant.as_ref().map(|p| p.server.clone());
                let target = room_of(&body, "room")
                    .filter(|r| self.rooms.lock().contains(*r))
                    .filter(|_| prefer.is_some());
                match (target, prefer) {
                    (Some(room), Some(current)) => {
                        let whereabouts = self.rooms.lock().whereabouts(room);
                        if let Whereabouts::On { server, .. } = whereabouts {
                            if server != current {
                                return self.move_room_then_change(
                                    ctx,
                                    room,
                                    server,
                                    current,
                                    (transaction, body, jsep, reply_to),
                                );
                            }
                        }
                        self.send_to_room(
                            ctx,
                            room,
                            Some(current),
                            transaction,
                            body,
                            jsep,
                            reply_to,
                        )
                    }
                    _ => self.send_to_any(ctx, transaction, body, jsep, reply_to, sync),
                }
            }
            "rtp_forward" | "stop_rtp_forward" if self.rtp_forward_locked(&body) => {
                let key = &self.state.config.plugins.audiobridge_admin_key;
                let e = admin_key::check_required(key, &body)
                    .err()
                    .unwrap_or(admin_key::AdminKeyError::Wrong);
                let refusal = self.admin_key_refusal(e, &transaction);
                self.refuse_after_janus_checks(ctx, transaction, body, reply_to, refusal);
            }
            n if n == "join" || ROOM_REQUESTS.contains(&n) => {
                match room_of(&body, "room").filter(|r| self.rooms.lock().contains(*r)) {
                    // Janus refuses a second join: the current server says so.
                    Some(_) if n == "join" && self.participant.is_some() => {
                        self.send_to_any(ctx, transaction, body, jsep, reply_to, false)
                    }
                    Some(room) => {
                        self.send_to_room(ctx, room, None, transaction, body, jsep, reply_to)
                    }
                    None => self.send_to_any(ctx, transaction, body, jsep, reply_to, sync),
                }
            }
            _ => self.send_to_any(ctx, transaction, body, jsep, reply_to, sync),
        }
    }

    /// `changeroom` to a room that lives on another server than the participant's
    /// PeerConnection: an empty room moves to the participant's server (destroyed on its
    /// server, created again here); a room with participants stays, and the participant's
    /// server answers (485, as Janus does for a room it does not have).
    fn move_room_then_change(
        &mut self,
        ctx: &mut Context<Self>,
        room: u64,
        from: String,
        to: String,
        request: (String, JsonMap, Option<JsonMap>, ReplyTo),
    ) {
        self.ensure_leg(
            ctx,
            from.clone(),
            None,
            Box::new(move |act, ctx, r| {
                let (transaction, body, jsep, reply_to) = request;
                if r.is_err() {
                    // Its server is unreachable: place it here.
                    act.unplace(room, &from);
                    return act.send_to_room(
                        ctx,
                        room,
                        Some(to),
                        transaction,
                        body,
                        jsep,
                        reply_to,
                    );
                }
                let mut ask = JsonMap::new();
                ask.insert("request".into(), "listparticipants".into());
                ask.insert("room".into(), room.into());
                act.call(
                    ctx,
                    &from.clone(),
                    message_request(ask, None),
                    None,
                    Box::new(move |act, ctx, frame| {
                        let empty = plugin_data(&frame)
                            .and_then(|d| d.get("participants"))
                            .and_then(Value::as_array)
                            .is_some_and(Vec::is_empty);
                        if !empty {
                            return act.forward(
                                ctx,
                                to,
                                transaction,
                                body,
                                jsep,
                                reply_to,
                                After::Nothing,
                            );
                        }
                        log::info!("audiobridge room {room}: moving it from {from} to {to}");
                        let mut destroy = JsonMap::new();
                        destroy.insert("request".into(), "destroy".into());
                        destroy.insert("room".into(), room.into());
                        if let Some(secret) = act
                            .rooms
                            .lock()
                            .config(room)
                            .and_then(|c| c.get("secret").cloned())
                        {
                            destroy.insert("secret".into(), secret);
                        }
                        act.unplace(room, &from);
                        act.call(
                            ctx,
                            &from.clone(),
                            message_request(destroy, None),
                            None,
                            Box::new(move |act, ctx, _| {
                                act.send_to_room(
                                    ctx,
                                    room,
                                    Some(to),
                                    transaction,
                                    body,
                                    jsep,
                                    reply_to,
                                )
                            }),
                        );
                    }),
                );
            }),
        );
    }

    /// A request about a room of the directory: to its server.
    #[allow(clippy::too_many_arguments)]
    fn send_to_room(
        &mut self,
        ctx: &mut Context<Self>,
        room: u64,
        prefer: Option<String>,
        transaction: String,
        body: JsonMap,
        jsep: Option<JsonMap>,
        reply_to: ReplyTo,
    ) {
        let name = body
            .get("request")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        let after = match name.as_str() {
            "edit" => After::Edited(room, body.clone()),
            "allowed" => After::Allowed(room, body.clone()),
            "destroy" => After::Destroyed(room, body.get("permanent") == Some(&Value::Bool(true))),
            _ => After::Nothing,
        };
        // `permanent` is the proxy's (its rooms file), never a backend's jcfg.
        let mut body = body;
        if matches!(name.as_str(), "edit" | "destroy") {
            body.remove("permanent");
        }
        let sync = is_sync(&name);
        self.room_server(
            ctx,
            room,
            prefer,
            Box::new(move |act, ctx, server| match server {
                Ok(server) => act.forward(ctx, server, transaction, body, jsep, reply_to, after),
                Err(why) => {
                    act.fail(&transaction, &reply_to, sync, &why);
                    act.done(ctx);
                }
            }),
        );
    }

    /// A request any backend can answer as Janus would.
    fn send_to_any(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: String,
        body: JsonMap,
        jsep: Option<JsonMap>,
        reply_to: ReplyTo,
        sync: bool,
    ) {
        self.any_server(
            ctx,
            Box::new(move |act, ctx, server| match server {
                Ok(server) => act.forward(
                    ctx,
                    server,
                    transaction,
                    body,
                    jsep,
                    reply_to,
                    After::Nothing,
                ),
                Err(why) => {
                    act.fail(&transaction, &reply_to, sync, &why);
                    act.done(ctx);
                }
            }),
        );
    }

    /// Sends the client's request to its leg on `server` and relays the reply.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &mut self,
        ctx: &mut Context<Self>,
        server: String,
        transaction: String,
        body: JsonMap,
        jsep: Option<JsonMap>,
        reply_to: ReplyTo,
        after: After,
    ) {
        let with_sdp = jsep.is_some();
        let req = message_request(body, jsep);
        self.call(
            ctx,
            &server.clone(),
            req,
            Some(transaction.clone()),
            Box::new(move |act, ctx, mut frame| {
                let data = plugin_data(&frame);
                let ok = !is_error(&frame) && data.is_some_and(|d| d.get("error_code").is_none());
                if ok {
                    act.save_update(&after, &mut frame);
                    let changed = {
                        let mut rooms = act.rooms.lock();
                        match &after {
                            After::Edited(room, edit) => rooms.edited(*room, edit),
                            After::Allowed(room, b) => rooms.allowed(*room, b),
                            After::Destroyed(room, _) => rooms.remove(*room),
                            After::Nothing => {}
                        }
                        match &after {
                            After::Edited(room, _) | After::Allowed(room, _) => {
                                rooms.config(*room).map(|c| (*room, Some(c)))
                            }
                            After::Destroyed(room, _) => Some((*room, None)),
                            After::Nothing => None,
                        }
                    };
                    if let (Some(store), Some((room, config))) = (act.state.store.rooms(), changed)
                    {
                        match config {
                            Some(config) => {
                                store.settings_changed(RoomKind::AudioBridge, room, config)
                            }
                            None => store.destroyed(RoomKind::AudioBridge, room),
                        }
                    }
                }
                if with_sdp && !is_error(&frame) {
                    act.media = Some(server.clone());
                }
                if is_error(&frame) {
                    let code = frame
                        .get("error")
                        .and_then(|e| e.get("code"))
                        .and_then(Value::as_u64)
                        .unwrap_or(490);
                    act.state.metrics.error(u16::try_from(code).unwrap_or(490));
                }
                let ids = act.ids(&server);
                let out = rewrite(frame, ids, Transaction::Client(Some(&transaction)));
                act.send_frame(&out, Some(&reply_to));
                act.done(ctx);
            }),
        );
    }

    /// A successful `edit` or `destroy`: with `permanent: true`, the rooms file follows (as
    /// Janus's jcfg), and Janus's `"permanent"` in the answer says whether it did.
    fn save_update(&self, after: &After, frame: &mut JsonMap) {
        let file = self.state.session().plugins.rooms_file.as_ref();
        let saved = match after {
            After::Edited(room, edit) if edit.get("permanent") == Some(&Value::Bool(true)) => {
                let config = self.rooms.lock().config(*room);
                config.is_some_and(|c| {
                    rooms_file::apply(file, RoomKind::AudioBridge, *room, Some(&c))
                })
            }
            After::Destroyed(room, true) => {
                rooms_file::apply(file, RoomKind::AudioBridge, *room, None)
            }
            After::Edited(..) | After::Destroyed(..) => false,
            After::Allowed(..) | After::Nothing => return,
        };
        set_permanent(frame, saved);
    }

    /// Janus's checks of `create` that the proxy makes itself: the plugin's `admin_key`.
    fn check_admin_key(&self, body: &JsonMap, transaction: &str) -> Result<(), JsonMap> {
        let key = &self.state.config.plugins.audiobridge_admin_key;
        admin_key::check_required(key, body).map_err(|e| self.admin_key_refusal(e, transaction))
    }

    fn admin_key_refusal(&self, e: admin_key::AdminKeyError, transaction: &str) -> JsonMap {
        let code: u16 = match e {
            admin_key::AdminKeyError::Missing => 483,
            admin_key::AdminKeyError::NotAString => 484,
            admin_key::AdminKeyError::Wrong => 489,
        };
        self.state.metrics.error(code);
        let data = json!({"audiobridge": "event", "error_code": code, "error": e.text()});
        self.plugin_frame("success", Some(transaction), data)
    }

    /// `lock_rtp_forward` (with an `admin_key`) and the request's key is not the right one.
    fn rtp_forward_locked(&self, body: &JsonMap) -> bool {
        let plugins = &self.state.config.plugins;
        plugins.audiobridge_lock_rtp_forward
            && admin_key::check_required(&plugins.audiobridge_admin_key, body).is_err()
    }

    /// A `create` (or locked `rtp_forward`) without the right `admin_key`. Janus checks the
    /// parameters' types (and the room's) first: a Janus answers the same body with an
    /// invalid `room`, which it refuses without doing anything — with its own error if a
    /// parameter was wrong, else with the room's, and then the admin key's refusal is the
    /// answer.
    fn refuse_after_janus_checks(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: String,
        mut body: JsonMap,
        reply_to: ReplyTo,
        refusal: JsonMap,
    ) {
        let room_is_wrong = body.get("room").is_some_and(|r| r.as_u64().is_none());
        if !room_is_wrong {
            body.insert("room".into(), "".into());
        }
        self.any_server(
            ctx,
            Box::new(move |act, ctx, server| {
                let Ok(server) = server else {
                    act.send_frame(&refusal, Some(&reply_to));
                    return act.done(ctx);
                };
                act.call(
                    ctx,
                    &server.clone(),
                    message_request(body, None),
                    Some(transaction.clone()),
                    Box::new(move |act, ctx, frame| {
                        let room_refused = plugin_data(&frame).is_some_and(|d| {
                            d.get("error_code").and_then(Value::as_u64) == Some(484)
                                && d.get("error")
                                    .and_then(Value::as_str)
                                    .is_some_and(|e| e.contains("(room "))
                        });
                        let janus_error =
                            plugin_data(&frame).is_some_and(|d| d.get("error_code").is_some());
                        if (room_refused && !room_is_wrong) || !janus_error {
                            act.send_frame(&refusal, Some(&reply_to));
                        } else {
                            let ids = act.ids(&server);
                            let out = rewrite(frame, ids, Transaction::Client(Some(&transaction)));
                            act.send_frame(&out, Some(&reply_to));
                        }
                        act.done(ctx);
                    }),
                );
            }),
        );
    }

    /// `create`: recorded in the directory once a server chosen by the policy created it.
    fn create(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: String,
        mut body: JsonMap,
        reply_to: ReplyTo,
    ) {
        // `permanent` would write one backend's config file: the room lives in the proxy's
        // directory instead, and Janus answers `"permanent": false`.
        let permanent = body.remove("permanent").and_then(|p| p.as_bool()) == Some(true);
        if let Err(refusal) = self.check_admin_key(&body, &transaction) {
            return self.refuse_after_janus_checks(ctx, transaction, body, reply_to, refusal);
        }
        let id = match body.get("room") {
            None => Some(self.fresh_room_id()),
            Some(v) if v.as_u64() == Some(0) => Some(self.fresh_room_id()),
            Some(v) => v.as_u64(),
        };
        if let Some(id) = id {
            body.insert("room".into(), id.into());
            let whereabouts = self.rooms.lock().whereabouts(id);
            match whereabouts {
                // The room's server answers (486, or its validation error first).
                Whereabouts::On { .. } => {
                    return self.room_server(
                        ctx,
                        id,
                        None,
                        Box::new(move |act, ctx, r| match r {
                            Ok(server) => act.forward(
                                ctx,
                                server,
                                transaction,
                                body,
                                None,
                                reply_to,
                                After::Nothing,
                            ),
                            Err(_) => act.room_exists(ctx, id, &transaction, &reply_to),
                        }),
                    );
                }
                Whereabouts::Unplaced => {
                    return self.room_exists(ctx, id, &transaction, &reply_to);
                }
                _ if self.rooms.lock().contains(id) => {
                    // Being created by another request.
                    return self.room_exists(ctx, id, &transaction, &reply_to);
                }
                _ => {}
            }
        }
        self.select(
            ctx,
            Box::new(move |act, ctx, server| {
                let server = match server {
                    Ok(s) => s,
                    Err(why) => {
                        act.fail(&transaction, &reply_to, true, &why);
                        return act.done(ctx);
                    }
                };
                if let Some(id) = id {
                    if !act.rooms.lock().reserve(id, &server) {
                        return act.room_exists(ctx, id, &transaction, &reply_to);
                    }
                    act.reserving = Some(id);
                }
                let config = body.clone();
                let req = message_request(body, None);
                act.call(
                    ctx,
                    &server.clone(),
                    req,
                    Some(transaction.clone()),
                    Box::new(move |act, ctx, frame| {
                        let created = plugin_data(&frame)
                            .and_then(|d| d.get("audiobridge"))
                            .and_then(Value::as_str)
                            == Some("created");
                        let ids = act.ids(&server);
                        let mut out =
                            rewrite(frame, ids, Transaction::Client(Some(&transaction))).into_map();
                        let Some(id) = id else {
                            act.send_frame(&out, Some(&reply_to));
                            return act.done(ctx);
                        };
                        if !created {
                            act.reserving = None;
                            act.rooms.lock().unreserve(id);
                            act.send_frame(&out, Some(&reply_to));
                            return act.done(ctx);
                        }
                        // Janus validated the room. Its mixer waits for the first join,
                        // on a server the policy picks then: it is taken off this one
                        // before the client hears of it (until then it stays reserved).
                        let mut config = config;
                        config.remove("request");
                        // A credential of the request, not a setting of the room.
                        config.remove("admin_key");
                        let mut destroy = JsonMap::new();
                        destroy.insert("request".into(), "destroy".into());
                        destroy.insert("room".into(), id.into());
                        if let Some(secret) = config.get("secret") {
                            destroy.insert("secret".into(), secret.clone());
                        }
                        act.call(
                            ctx,
                            &server.clone(),
                            message_request(destroy, None),
                            None,
                            Box::new(move |act, ctx, _| {
                                log::info!(
                                    "audiobridge room {id}: created (validated on {server})"
                                );
                                act.reserving = None;
                                act.rooms.lock().created_unplaced(id, config.clone());
                                // As Janus: `"permanent": true` once the room is saved.
                                let file = act.state.session().plugins.rooms_file.as_ref();
                                let saved = permanent
                                    && rooms_file::apply(
                                        file,
                                        RoomKind::AudioBridge,
                                        id,
                                        Some(&config),
                                    );
                                set_permanent(&mut out, saved);
                                act.rooms.lock().set_origin(id, permanent);
                                let Some(store) = act.state.store.rooms() else {
                                    act.send_frame(&out, Some(&reply_to));
                                    return act.done(ctx);
                                };
                                // Shared: the first proxy to write the id has the room.
                                let record = RoomRecord {
                                    id,
                                    settings: config,
                                    creator: store.proxy_id().to_owned(),
                                    permanent,
                                    server: None,
                                };
                                let fut = async move {
                                    store.create(RoomKind::AudioBridge, &record).await
                                };
                                act.after(
                                    ctx,
                                    fut,
                                    Box::new(move |act, ctx, written| {
                                        if written == Ok(false) {
                                            act.rooms.lock().remove(id);
                                            act.looked_up = None;
                                            return act.room_exists(
                                                ctx,
                                                id,
                                                &transaction,
                                                &reply_to,
                                            );
                                        }
                                        act.send_frame(&out, Some(&reply_to));
                                        act.done(ctx);
                                    }),
                                );
                            }),
                        );
                    }),
                );
            }),
        );
    }

    /// Janus's 486 for a room id that is taken.
    fn room_exists(&mut self, ctx: &mut Context<Self>, id: u64, transaction: &str, to: &ReplyTo) {
        let data = json!({"audiobridge": "event", "error_code": 486,
            "error": format!("Room {id} already exists")});
        self.state.metrics.error(486);
        let f = self.plugin_frame("success", Some(transaction), data);
        self.send_frame(&f, Some(to));
        self.done(ctx);
    }

    fn fresh_room_id(&self) -> u64 {
        loop {
            // Below 2^53, like the ids Janus makes, so that JavaScript clients keep them exact.
            let id = rand::random::<u64>() & ((1 << 53) - 1);
            if id != 0 && !self.rooms.lock().contains(id) {
                return id;
            }
        }
    }

    /// `list`: the directory's rooms; for the placed ones, their servers' own entries.
    fn list(&mut self, ctx: &mut Context<Self>, transaction: String, body: JsonMap, to: ReplyTo) {
        let key = &self.state.config.plugins.audiobridge_admin_key;
        let all = match admin_key::unlocks_private(key, &body) {
            Ok(all) => all,
            Err(e) => {
                let refusal = self.admin_key_refusal(e, &transaction);
                self.send_frame(&refusal, Some(&to));
                return self.done(ctx);
            }
        };
        self.listing_private = all;
        // The servers list their private rooms only to the same key (when they have it).
        let mut body = body;
        body.remove("admin_key");
        if all {
            body.insert("admin_key".into(), key.as_str().into());
        }
        let servers = self.rooms.lock().servers();
        self.list_from(ctx, transaction, body, to, servers, Vec::new());
    }

    fn list_from(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: String,
        body: JsonMap,
        to: ReplyTo,
        mut servers: Vec<String>,
        mut entries: Vec<(String, Value)>,
    ) {
        let Some(server) = servers.pop() else {
            return self.finish_list(ctx, &transaction, &to, entries);
        };
        let mut list_body = body.clone();
        list_body.insert("request".into(), "list".into());
        self.ensure_leg(
            ctx,
            server.clone(),
            None,
            Box::new(move |act, ctx, r| {
                if r.is_err() {
                    return act.list_from(ctx, transaction, body, to, servers, entries);
                }
                act.call(
                    ctx,
                    &server.clone(),
                    message_request(list_body, None),
                    None,
                    Box::new(move |act, ctx, frame| {
                        if let Some(list) = plugin_data(&frame)
                            .and_then(|d| d.get("list"))
                            .and_then(Value::as_array)
                        {
                            entries.extend(list.iter().map(|e| (server.clone(), e.clone())));
                        }
                        act.list_from(ctx, transaction, body, to, servers, entries);
                    }),
                );
            }),
        );
    }

    fn finish_list(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: &str,
        to: &ReplyTo,
        entries: Vec<(String, Value)>,
    ) {
        let rooms = self.rooms.lock().rooms();
        let mut list = Vec::new();
        for (id, room) in rooms {
            let from_server = room.server.as_ref().and_then(|s| {
                entries
                    .iter()
                    .find(|(srv, e)| srv == s && e.get("room").and_then(Value::as_u64) == Some(id))
                    .map(|(_, e)| e.clone())
            });
            match from_server {
                Some(entry) => list.push(entry),
                None if room.server.is_none() => {
                    let private = room.config.get("is_private").and_then(Value::as_bool);
                    if private != Some(true) || self.listing_private {
                        list.push(unplaced_entry(id, &room.config));
                    }
                }
                // Private (the server did not list it) or not answered.
                None => {}
            }
        }
        let data = json!({"audiobridge": "success", "list": list});
        let f = self.plugin_frame("success", Some(transaction), data);
        self.send_frame(&f, Some(to));
        self.done(ctx);
    }

    fn on_trickle(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: String,
        trickle: Trickle,
        reply_to: ReplyTo,
    ) {
        let server = self.media.clone().filter(|s| self.legs.contains_key(s));
        let Some(server) = server else {
            // No PeerConnection anywhere yet: acknowledged, as Janus does.
            self.send_frame(
                &ServerMessage::ack(self.session_id, &transaction),
                Some(&reply_to),
            );
            return self.done(ctx);
        };
        self.call(
            ctx,
            &server.clone(),
            trickle_request(trickle),
            Some(transaction.clone()),
            Box::new(move |act, ctx, frame| {
                let ids = act.ids(&server);
                let out = rewrite(frame, ids, Transaction::Client(Some(&transaction)));
                act.send_frame(&out, Some(&reply_to));
                act.done(ctx);
            }),
        );
    }

    fn on_core_hangup(&mut self, ctx: &mut Context<Self>, transaction: String, reply_to: ReplyTo) {
        let server = self.media.clone().filter(|s| self.legs.contains_key(s));
        let Some(server) = server else {
            self.send_frame(
                &ServerMessage::success(self.session_id, &transaction),
                Some(&reply_to),
            );
            return self.done(ctx);
        };
        self.call(
            ctx,
            &server.clone(),
            request("hangup"),
            Some(transaction.clone()),
            Box::new(move |act, ctx, frame| {
                let ids = act.ids(&server);
                let out = rewrite(frame, ids, Transaction::Client(Some(&transaction)));
                act.send_frame(&out, Some(&reply_to));
                act.done(ctx);
            }),
        );
    }

    /// Detach, or the session ended.
    fn leave(&mut self, ctx: &mut Context<Self>, detach: Option<(String, ReplyTo)>) {
        self.gone = true;
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

    // ---- backend news ----

    fn on_leg_event(&mut self, server: &str, frame: JsonMap) {
        let kind = frame.get("janus").and_then(Value::as_str).unwrap_or("");
        if kind == "detached" {
            // Janus dropped the leg itself.
            if let Some(mut leg) = self.legs.remove(server) {
                leg.backend.forget();
                leg.backend.end_placement(&self.state.servers.ended);
            }
            return;
        }
        if kind == "hangup" {
            // The PeerConnection is gone: Janus takes the participant out of its room.
            if self.media.as_deref() == Some(server) {
                self.media = None;
            }
            if self
                .participant
                .as_ref()
                .is_some_and(|p| p.server == server)
            {
                self.participant = None;
            }
        }
        if let Some(data) = plugin_data(&frame) {
            self.track(server, data);
        }
        self.share_participant();
        let ids = self.ids(server);
        let out = rewrite(frame, ids, Transaction::FromBackend);
        self.send_frame(&out, None);
    }

    /// Follows the handle's own participation from its server's events.
    fn track(&mut self, server: &str, data: &JsonMap) {
        let what = data
            .get("audiobridge")
            .and_then(Value::as_str)
            .unwrap_or("");
        let own_id = self.participant.as_ref().and_then(|p| p.id.clone());
        match what {
            // Only the joiner's own `joined` carries its id.
            "joined" | "roomchanged" if data.contains_key("id") => {
                self.participant = Some(Participant {
                    server: server.to_owned(),
                    room: data.get("room").cloned().unwrap_or(Value::Null),
                    id: data.get("id").cloned(),
                });
                self.media = Some(server.to_owned());
            }
            "left" | "destroyed"
                if self
                    .participant
                    .as_ref()
                    .is_some_and(|p| p.server == server) =>
            {
                self.participant = None;
            }
            "event" => {
                let kicked = data.get("kicked").or_else(|| data.get("kicked_all"));
                if kicked.is_some() && kicked.cloned() == own_id {
                    self.participant = None;
                }
            }
            _ => {}
        }
    }

    /// The link to `server` is gone, and with it this handle's leg there.
    fn on_leg_lost(&mut self, server: &str) {
        let Some(mut leg) = self.legs.remove(server) else {
            return;
        };
        leg.backend.forget();
        leg.backend.end_placement(&self.state.servers.ended);
        let unplaced = self.rooms.lock().server_lost(server);
        if !unplaced.is_empty() {
            log::warn!(
                "audiobridge: backend server {server} lost, {} room(s) unplaced",
                unplaced.len()
            );
        }

        if let Some(p) = self.participant.take_if(|p| p.server == server) {
            let data = json!({"audiobridge": "destroyed", "room": p.room});
            let f = self.plugin_frame("event", None, data);
            self.send_frame(&f, None);
        }
        if self.media.as_deref() == Some(server) {
            self.media = None;
            let frame =
                ServerMessage::hangup(self.session_id, self.handle_id, None, BACKEND_LOST_REASON);
            self.send_frame(&frame, None);
        }
        // This handle leaves the shared participants before it clears the placements (the
        // store keeps a placement while other proxies' participants are recorded there: each
        // proxy's last clear then sees every proxy's participants gone).
        self.share_participant();
        if let Some(store) = self.state.store.rooms() {
            for room in unplaced {
                store.clear_placement(RoomKind::AudioBridge, room, server);
            }
        }
    }
}

/// A `list` entry for a room that has no server at the moment, as Janus lists an empty room.
/// Janus's `"permanent"` in an answer (`created`, `edited`, `destroyed`) set to what the proxy did.
fn set_permanent(frame: &mut JsonMap, saved: bool) {
    if let Some(d) = frame
        .get_mut("plugindata")
        .and_then(|p| p.get_mut("data"))
        .and_then(Value::as_object_mut)
        .filter(|d| d.contains_key("permanent"))
    {
        d.insert("permanent".into(), saved.into());
    }
}

fn unplaced_entry(id: u64, config: &JsonMap) -> Value {
    let description = config
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("Room {id}"));
    let flag = |k: &str| config.get(k).and_then(Value::as_bool).unwrap_or(false);
    let sampling = config
        .get("sampling_rate")
        .or_else(|| config.get("sampling"))
        .and_then(Value::as_u64)
        .unwrap_or(16000);
    json!({
        "room": id,
        "description": description,
        "sampling_rate": sampling,
        "spatial_audio": flag("spatial_audio"),
        "pin_required": config.contains_key("pin"),
        "record": flag("record"),
        "muted": false,
        "num_participants": 0
    })
}

impl Actor for AudioBridgeHandle {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        // Also reached when the system shuts down.
        if let Some(id) = self.reserving.take() {
            self.rooms.lock().unreserve(id);
        }
        self.participant = None;
        self.share_participant();
        self.release_legs();
    }
}

crate::plugin::queued_handle_commands!(AudioBridgeHandle);

impl Handler<LegIncoming> for AudioBridgeHandle {
    type Result = ();

    fn handle(&mut self, msg: LegIncoming, _: &mut Context<Self>) {
        if self.gone {
            return;
        }
        let Some(server) = self
            .legs
            .iter()
            .find(|(_, l)| l.id == msg.leg)
            .map(|(s, _)| s.clone())
        else {
            return;
        };
        match msg.msg {
            BackendIncoming::Event { frame, .. } => self.on_leg_event(&server, frame.into_map()),
            BackendIncoming::LinkLost { .. } => self.on_leg_lost(&server),
            // Replies go to the request's own recipient.
            BackendIncoming::Reply { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unplaced_rooms_are_listed_as_janus_lists_an_empty_room() {
        let config = match json!({"room": 7, "pin": "x", "sampling_rate": 24000, "record": true}) {
            Value::Object(m) => m,
            _ => JsonMap::new(),
        };
        // Janus 1.1.2's keys, in its order.
        assert_eq!(
            unplaced_entry(7, &config).to_string(),
            r#"{"room":7,"description":"Room 7","sampling_rate":24000,"spatial_audio":false,"pin_required":true,"record":true,"muted":false,"num_participants":0}"#
        );
        let entry = unplaced_entry(8, &JsonMap::new());
        assert_eq!(entry["sampling_rate"], 16000);
        assert_eq!(entry["pin_required"], false);
    }

    #[test]
    fn requests_janus_answers_synchronously() {
        for r in [
            "create",
            "list",
            "exists",
            "kick_all",
            "rtp_forward",
            "stop_file",
        ] {
            assert!(is_sync(r), "{r}");
        }
        for r in [
            "join",
            "configure",
            "changeroom",
            "leave",
            "hangup",
            "foo",
            "",
        ] {
            assert!(!is_sync(r), "{r}");
        }
    }

    #[test]
    fn made_up_frames() {
        let lost = lost_reply("janus-a");
        assert!(is_error(&lost));
        assert_eq!(
            error_reason(&lost),
            "connection to backend server janus-a lost"
        );
        let body = match json!({"room": 5, "bad": "x"}) {
            Value::Object(m) => m,
            _ => JsonMap::new(),
        };
        assert_eq!(room_of(&body, "room"), Some(5));
        assert_eq!(room_of(&body, "bad"), None);
    }
}
