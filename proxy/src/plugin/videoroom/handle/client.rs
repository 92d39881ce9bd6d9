//! The client's requests, one at a time through the [`CommandQueue`]: the ones the proxy
//! answers itself (`create`, `list`, `exists`, the checks Janus makes first), the room
//! requests (see [`super::placement`]), a participant's requests, trickles and the core
//! requests.
//!
//! [`CommandQueue`]: crate::plugin::kit::CommandQueue

use std::sync::Arc;

use actix::prelude::*;
use janus_protocol::{JsonMap, ServerMessage, Trickle};
use serde_json::{json, Value};

use super::placement::RoomRequest;
use super::{Life, VideoRoomHandle};
use crate::messages::cluster::{RoomKind, RoomOrigin, SharedRooms};
use crate::messages::{ReplyRoute, ReplyTo};
use crate::plugin::kit::{request, requests, ClientRequests, CommandQueue, PluginError};
use crate::plugin::videoroom::checks;
use crate::plugin::videoroom::coordinator::audio_level_ext_id;
use crate::plugin::videoroom::room_book::RoomBook;
use crate::plugin::videoroom::routing::Verb;
use crate::plugin::{admin_key, rooms_file};

crate::plugin::kit::take_requests!(VideoRoomHandle);

impl ClientRequests for VideoRoomHandle {
    fn queue(&mut self) -> &mut CommandQueue {
        &mut self.queue
    }

    fn takes_requests(&self) -> bool {
        !self.is_gone()
    }

    fn message(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: String,
        body: JsonMap,
        jsep: Option<JsonMap>,
        reply_to: ReplyTo,
    ) {
        self.on_message(ctx, transaction, body, jsep, reply_to);
    }

    fn trickle(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: String,
        trickle: Trickle,
        reply_to: ReplyTo,
    ) {
        self.on_trickle(ctx, transaction, trickle, reply_to);
    }

    fn hangup(&mut self, ctx: &mut Context<Self>, transaction: String, reply_to: ReplyTo) {
        self.on_core_hangup(ctx, transaction, reply_to);
    }

    /// The handle is going away (detach, or its session ended).
    fn leave(&mut self, ctx: &mut Context<Self>, detach: Option<(String, ReplyTo)>) {
        self.left_room();
        self.life = Life::Gone;
        self.owed = None;
        self.queue.clear();
        // Detaching the legs makes Janus tell the others (`leaving` / `unpublished`).
        self.legs.release_all(&self.shared.env.servers);
        if let Some((transaction, reply_to)) = detach {
            self.core.detach_done(&transaction, &reply_to);
        }
        ctx.stop();
    }
}

impl VideoRoomHandle {
    fn on_message(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: String,
        body: JsonMap,
        jsep: Option<JsonMap>,
        reply_to: ReplyTo,
    ) {
        let verb = match Verb::of(&body) {
            Ok(v) => v,
            Err(e) => return self.refuse(&transaction, &reply_to, false, &e),
        };
        let offer = jsep
            .as_ref()
            .filter(|j| j.get("type").and_then(Value::as_str) == Some("offer"))
            .and_then(|j| j.get("sdp").and_then(Value::as_str));
        if let Some(id) = offer.and_then(audio_level_ext_id) {
            self.audio_level_ext = Some(id);
        }
        match verb {
            Verb::Create => match self.shared.env.cluster.rooms.clone() {
                Some(store) => self.create_shared(ctx, transaction, reply_to, body, store),
                None => self.create(&transaction, &reply_to, &body),
            },
            Verb::List => {
                let key = &self.shared.env.settings.videoroom_admin_key;
                let all = match admin_key::unlocks_private(key, &body) {
                    Ok(all) => all,
                    Err(e) => {
                        let e = checks::admin_key_error(e);
                        return self.refuse(&transaction, &reply_to, false, &e);
                    }
                };
                let list = self.shared.rooms.lock().list(all);
                let data = json!({"videoroom": "success", "list": list});
                self.core.success(&transaction, &reply_to, data);
            }
            Verb::Exists => {
                let room = match checks::room_of(&body) {
                    Ok(room) => room,
                    Err(e) => return self.refuse(&transaction, &reply_to, false, &e),
                };
                if !self.shared.rooms.lock().exists(room) {
                    let cmd = (transaction, body, jsep, reply_to);
                    if let Some((transaction, reply_to)) = self.read_through(ctx, room, cmd) {
                        let data = json!({"videoroom": "success", "room": room, "exists": false});
                        self.core.success(&transaction, &reply_to, data);
                    }
                    return;
                }
                let data = json!({"videoroom": "success", "room": room, "exists": true});
                self.core.success(&transaction, &reply_to, data);
            }
            v if v.is_join() && self.joined().is_some() => {
                // Janus answers a second join itself (425) on the joined handle.
                if let Some(token) = self.joined_leg() {
                    let req = request::message(body, jsep);
                    self.legs
                        .forward(token, ctx.address().recipient(), req, transaction, reply_to);
                }
            }
            v if v.is_join() || v.is_sync_room_request() => {
                let asynchronous = v.is_join();
                let room = match checks::room_of(&body) {
                    Ok(r) => r,
                    Err(e) => return self.refuse(&transaction, &reply_to, asynchronous, &e),
                };
                if let Err(e) = self.check_rtp_forward_lock(v, &body) {
                    return self.refuse(&transaction, &reply_to, asynchronous, &e);
                }
                if !self.shared.rooms.lock().exists(room) {
                    let cmd = (transaction, body, jsep, reply_to);
                    if let Some((transaction, reply_to)) = self.read_through(ctx, room, cmd) {
                        let e = checks::no_such_room(room);
                        self.refuse(&transaction, &reply_to, asynchronous, &e);
                    }
                    return;
                }
                let req = RoomRequest {
                    room,
                    verb: v,
                    transaction,
                    body,
                    jsep,
                    reply_to,
                    asynchronous,
                };
                self.route_to_room(ctx, req);
            }
            v if v.is_participant_request() => {
                self.participant_request(ctx, v, transaction, body, jsep, reply_to)
            }
            _ => {
                let written = body
                    .get("request")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let e = checks::unknown_request(&written);
                self.refuse(&transaction, &reply_to, false, &e);
            }
        }
    }

    /// A participant's request: to the leg it joined with.
    fn participant_request(
        &mut self,
        ctx: &mut Context<Self>,
        verb: Verb,
        transaction: String,
        body: JsonMap,
        jsep: Option<JsonMap>,
        reply_to: ReplyTo,
    ) {
        let Some(token) = self.joined_leg() else {
            return self.refuse(&transaction, &reply_to, true, &checks::join_first());
        };
        if let Some(j) = self.joined_mut() {
            j.media |= jsep.is_some();
            // A new display name reaches the mirrors with the next update.
            if let Some(d) = body.get("display").and_then(Value::as_str) {
                if matches!(verb, Verb::Configure | Verb::Publish) {
                    j.display = Some(d.to_owned());
                }
            }
        }
        let req = request::message(body, jsep);
        self.legs
            .forward(token, ctx.address().recipient(), req, transaction, reply_to);
    }

    // ---- the shared store (several proxies) ----

    /// A request about `room`, unknown here, may be about another proxy's room: read it from
    /// the shared store once, then run the request again (the gate shut meanwhile). Some:
    /// nothing to read (no shared store, or read already): the request's transaction and
    /// connection, for its answer.
    fn read_through(
        &mut self,
        ctx: &mut Context<Self>,
        room: u64,
        (transaction, body, jsep, reply_to): (String, JsonMap, Option<JsonMap>, ReplyTo),
    ) -> Option<(String, ReplyTo)> {
        let looked_up = self.looked_up.take() == Some(room);
        let store = self.shared.env.cluster.rooms.clone();
        let Some(store) = store.filter(|_| !looked_up) else {
            return Some((transaction, reply_to));
        };
        self.queue.shut();
        let read = store.fetch(RoomKind::VideoRoom, room).into_actor(self);
        ctx.spawn(read.map(move |_, act, ctx| {
            if act.is_gone() {
                return;
            }
            act.looked_up = Some(room);
            act.queue.open();
            act.on_message(ctx, transaction, body, jsep, reply_to);
            requests::drain(act, ctx);
        }));
        None
    }

    /// `create` with a shared store: the room is written there first, if its id is free on
    /// every proxy (else 427); Redis away, this proxy's room book decides.
    fn create_shared(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: String,
        reply_to: ReplyTo,
        body: JsonMap,
        store: Arc<dyn SharedRooms>,
    ) {
        if let Err(e) = self.check_create(&body) {
            return self.refuse(&transaction, &reply_to, false, &e);
        }
        let requested = body.get("room").and_then(Value::as_u64).unwrap_or(0);
        if requested != 0 && self.shared.rooms.lock().exists(requested) {
            let e = checks::room_exists(requested);
            return self.refuse(&transaction, &reply_to, false, &e);
        }
        let id = if requested == 0 {
            self.shared.rooms.lock().fresh_id()
        } else {
            requested
        };
        let record = {
            let mut scratch = RoomBook::default();
            let _ = scratch.create(id, &body);
            scratch.record(id).map(|mut r| {
                r.creator = store.proxy_id().to_owned();
                r.origin = RoomOrigin::of_create(r.permanent);
                r
            })
        };
        let Some(record) = record else {
            let e = checks::unknown_error("room not recorded");
            return self.refuse(&transaction, &reply_to, false, &e);
        };
        self.queue.shut();
        let (creator, origin) = (record.creator.clone(), record.origin);
        let write = store.create(RoomKind::VideoRoom, record).into_actor(self);
        ctx.spawn(write.map(move |written, act, ctx| {
            match written {
                Ok(false) => act.refuse(&transaction, &reply_to, false, &checks::room_exists(id)),
                // Written (or Redis away: written when it returns). A sync round may have
                // brought it here already.
                _ => {
                    {
                        let mut rooms = act.shared.rooms.lock();
                        let _ = rooms.create(id, &body);
                        if let Some(room) = rooms.get_mut(id) {
                            room.creator = creator;
                            room.origin = origin;
                        }
                    }
                    // The shared store keeps every room; `permanent` is recorded there (and
                    // saved in the rooms file too, if there is one).
                    let permanent = body
                        .get("permanent")
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    if permanent {
                        act.save_room(id, Some(&body));
                    }
                    let data = json!({"videoroom": "created", "room": id, "permanent": permanent});
                    act.core.success(&transaction, &reply_to, data);
                }
            }
            act.resume(ctx);
        }));
    }

    /// `create`: recorded in the room book; the backend room comes with the first handle
    /// that needs it.
    fn create(&self, transaction: &str, reply_to: &ReplyTo, body: &JsonMap) {
        if let Err(e) = self.check_create(body) {
            return self.refuse(transaction, reply_to, false, &e);
        }
        let requested = body.get("room").and_then(Value::as_u64).unwrap_or(0);
        let created = self.shared.rooms.lock().create(requested, body);
        match created {
            Ok(room) => {
                // As Janus: `"permanent": true` only once the room is saved.
                let asked = body.get("permanent").and_then(Value::as_bool) == Some(true);
                let permanent = asked && self.save_room(room, Some(body));
                if let Some(r) = self.shared.rooms.lock().get_mut(room) {
                    r.permanent = permanent;
                    // Asked permanent, saved or not: kept when empty.
                    r.origin = RoomOrigin::of_create(asked);
                }
                let data = json!({"videoroom": "created", "room": room, "permanent": permanent});
                self.core.success(transaction, reply_to, data);
            }
            Err(_) => {
                let e = checks::room_exists(requested);
                self.refuse(transaction, reply_to, false, &e)
            }
        }
    }

    /// Janus's checks of `create`: its parameters, then the plugin's `admin_key` (if set).
    fn check_create(&self, body: &JsonMap) -> Result<(), PluginError> {
        checks::check_create(body)?;
        let key = &self.shared.env.settings.videoroom_admin_key;
        admin_key::check_required(key, body).map_err(checks::admin_key_error)
    }

    /// `lock_rtp_forward`: `rtp_forward` and `stop_rtp_forward` need the `admin_key` too,
    /// checked (as Janus) after the publisher's id and before the room is looked up.
    fn check_rtp_forward_lock(&self, verb: Verb, body: &JsonMap) -> Result<(), PluginError> {
        let settings = &self.shared.env.settings;
        if !settings.videoroom_lock_rtp_forward || !verb.forwards_rtp() {
            return Ok(());
        }
        match body.get("publisher_id") {
            None => return Err(checks::missing("publisher_id")),
            Some(v) if !v.is_u64() => {
                return Err(checks::invalid_type(
                    "publisher_id",
                    checks::Kind::PositiveInt,
                ))
            }
            Some(_) => {}
        }
        admin_key::check_required(&settings.videoroom_admin_key, body)
            .map_err(checks::admin_key_error)
    }

    /// Saves room `id` (`settings`: a `create` or the room's settings) in the rooms file, or
    /// removes it (None). Whether it is saved now.
    pub(super) fn save_room(&self, id: u64, settings: Option<&JsonMap>) -> bool {
        let file = self.shared.env.rooms_file.as_ref();
        rooms_file::apply(file, RoomKind::VideoRoom, id, settings)
    }

    // ---- trickles and core requests ----

    /// The trickles kept until the handle joined go to its leg.
    pub(super) fn flush_trickles(&mut self) {
        let trickles = std::mem::take(&mut self.trickles);
        let leg = self.joined_leg().and_then(|token| self.legs.get(token));
        if let Some(leg) = leg {
            for t in trickles {
                let reply: Option<ReplyRoute> = None;
                leg.backend.send(request::trickle(t), None, reply);
            }
        }
    }

    fn on_trickle(
        &mut self,
        ctx: &Context<Self>,
        transaction: String,
        trickle: Trickle,
        reply_to: ReplyTo,
    ) {
        if let Some(token) = self.joined_leg() {
            let req = request::trickle(trickle);
            return self
                .legs
                .forward(token, ctx.address().recipient(), req, transaction, reply_to);
        }
        // Janus acks a trickle it cannot use yet: kept until the handle joins.
        self.core.ack(&transaction, &reply_to);
        self.trickles.push(trickle);
    }

    fn on_core_hangup(&mut self, ctx: &Context<Self>, transaction: String, reply_to: ReplyTo) {
        match self.joined_leg() {
            Some(token) => {
                let req = request::request("hangup");
                self.legs
                    .forward(token, ctx.address().recipient(), req, transaction, reply_to);
            }
            None => {
                let success = ServerMessage::success(self.core.session_id, &transaction);
                self.core.send(&success, Some(&reply_to));
            }
        }
    }
}
