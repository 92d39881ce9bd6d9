//! What the handle's legs say: replies to the client's requests (rewritten with the client's
//! ids; a room-wide change is followed by the room book, the rooms file and a spanning room's
//! other servers), events (the handle follows its own membership in them), and the loss of a
//! leg or of its server.

use actix::prelude::*;
use janus_protocol::JsonMap;
use serde_json::{json, Value};

use super::placement::NoWay;
use super::VideoRoomHandle;
use crate::messages::cluster::RoomKind;
use crate::messages::{BackendIncoming, ReplyTo};
use crate::plugin::backend_mark;
use crate::plugin::kit::{request, BACKEND_LOST_REASON};
use crate::plugin::rewrite::{rewrite, Transaction};
use crate::plugin::videoroom::coordinator::{Broadcast, Departure, ServerLost};
use crate::plugin::videoroom::routing::Verb;

impl Handler<BackendIncoming> for VideoRoomHandle {
    type Result = ();

    fn handle(&mut self, msg: BackendIncoming, ctx: &mut Context<Self>) {
        if self.is_gone() {
            return;
        }
        match msg {
            BackendIncoming::Reply {
                token,
                frame,
                client_transaction,
                reply_to,
            } => {
                // The proxy's own requests are answered through their one-shots.
                if let Some(transaction) = client_transaction {
                    self.on_reply(token, frame.into_map(), transaction, reply_to);
                }
            }
            BackendIncoming::Event { token, frame } => self.on_event(ctx, token, frame.into_map()),
            BackendIncoming::LinkLost { token } => self.on_leg_lost(ctx, token, true),
        }
        // Joined, left, publishing or not: a survivor's record follows.
        self.share_adoptable();
    }
}

impl VideoRoomHandle {
    /// A leg's reply to a client request.
    fn on_reply(
        &mut self,
        token: u64,
        mut frame: JsonMap,
        transaction: String,
        reply_to: Option<ReplyTo>,
    ) {
        let Some(server) = self.legs.get(token).map(|l| l.server().to_owned()) else {
            return;
        };
        let data = request::plugin_data(&frame).cloned().unwrap_or(Value::Null);
        let error_code = request::error_code_of(&frame);
        if let Some(code) = error_code {
            self.core.metrics().error(code);
        }
        let is_error = error_code.is_some();
        if let Some((verb, room, body)) = self.updates.remove(&transaction) {
            if !is_error && data.get("error_code").is_none() {
                // A spanning room: its other servers do the same.
                if let Some(c) = self.shared.coordinator(room) {
                    let mut sent = body.clone();
                    self.to_backend(verb, room, &mut sent);
                    c.do_send(Broadcast {
                        body: sent,
                        servers: self.shared.rooms.lock().servers(room),
                        except: server.clone(),
                        last: verb == Verb::Destroy,
                    });
                }
                self.apply_update(verb, room, &body, &data);
                if let Some(saved) = self.save_update(verb, room, &body) {
                    if let Some(d) = request::plugin_data_mut(&mut frame) {
                        d.insert("permanent".into(), saved.into());
                    }
                }
            }
        }
        strip_remote_marks(&mut frame);
        backend_mark::strip(&mut frame, self.mark());
        if is_error
            && self
                .joined()
                .is_some_and(|j| j.join_transaction == transaction)
        {
            // The core refused the join (bad jsep, …): not in the room.
            self.take_joined();
        }
        let Some(leg) = self.legs.get(token) else {
            return;
        };
        let ids = leg.backend.ids(self.core.session_id, self.core.handle_id);
        let out = rewrite(frame, ids, Transaction::Client(Some(&transaction)));
        self.core.send(&out, reply_to.as_ref());
    }

    /// `plugins.backend_room_mark`.
    fn mark(&self) -> &str {
        &self.shared.env.settings.backend_room_mark
    }

    /// A successful `edit`, `destroy`, `allowed` or `enable_recording`: the room book
    /// follows.
    fn apply_update(&mut self, verb: Verb, room: u64, body: &JsonMap, data: &Value) {
        let mut rooms = self.shared.rooms.lock();
        match verb {
            Verb::Destroy => {
                rooms.remove(room);
            }
            Verb::Edit => {
                if let Some(r) = rooms.get_mut(room) {
                    r.apply_edit(body);
                }
            }
            Verb::Allowed => {
                if let Some(r) = rooms.get_mut(room) {
                    r.apply_allowed(body);
                    if let Some(list) = data.get("allowed") {
                        r.settings.insert("allowed".into(), list.clone());
                    }
                }
            }
            Verb::EnableRecording => {
                if let (Some(r), Some(record)) = (rooms.get_mut(room), body.get("record")) {
                    r.settings.insert("record".into(), record.clone());
                }
            }
            _ => {}
        }
        // Shared store: every proxy's room book follows.
        if let Some(store) = &self.shared.env.cluster.rooms {
            match rooms.get(room) {
                None => store.destroyed(RoomKind::VideoRoom, room),
                Some(r) => store.settings_changed(RoomKind::VideoRoom, room, r.settings.clone()),
            }
        }
    }

    /// An `edit` or `destroy` with `permanent: true` done: the rooms file follows, as Janus's
    /// jcfg does. Some(saved) for Janus's `"permanent"` in the answer.
    fn save_update(&mut self, verb: Verb, room: u64, body: &JsonMap) -> Option<bool> {
        if !matches!(verb, Verb::Edit | Verb::Destroy) {
            return None;
        }
        if body.get("permanent").and_then(Value::as_bool) != Some(true) {
            return Some(false);
        }
        let settings = self
            .shared
            .rooms
            .lock()
            .get(room)
            .map(|r| r.settings.clone());
        let saved = match (verb, settings) {
            (Verb::Edit, Some(settings)) => self.save_room(room, Some(&settings)),
            (Verb::Destroy, _) => self.save_room(room, None),
            _ => false,
        };
        if let Some(r) = self.shared.rooms.lock().get_mut(room) {
            r.permanent |= saved;
        }
        Some(saved)
    }

    /// Something Janus says about a leg on its own.
    fn on_event(&mut self, ctx: &mut Context<Self>, token: u64, frame: JsonMap) {
        let Some(leg) = self.legs.get_mut(token) else {
            return;
        };
        let kind = frame.get("janus").and_then(Value::as_str).unwrap_or("");
        if kind == "detached" {
            // Janus dropped the leg on its own (the link no longer routes it).
            leg.backend.handle = None;
            self.on_leg_lost(ctx, token, false);
            return;
        }
        let ids = leg.backend.ids(self.core.session_id, self.core.handle_id);
        let mut out = rewrite(frame, ids, Transaction::FromBackend).into_map();
        // `joined` names the room: as the client described it.
        backend_mark::strip(&mut out, self.mark());
        if self.joined().is_some_and(|j| j.leg == token) {
            self.track_room(&out);
            self.apply_rename(&mut out);
            if self.join_roster(ctx, &out) {
                return;
            }
        }
        self.core.send(&out, None);
    }

    /// Follows the handle's own membership from its leg's events.
    fn track_room(&mut self, frame: &JsonMap) {
        let session_id = self.core.session_id;
        let handle_id = self.core.handle_id;
        let Some(j) = self.joined_mut() else {
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
        let data = request::plugin_data(frame).cloned().unwrap_or(Value::Null);
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
        let Some(j) = self.joined_mut() else {
            return;
        };
        let is_join_answer = transaction == Some(j.join_transaction.as_str()) && !j.confirmed;
        if is_join_answer {
            if data.get("error_code").is_some() {
                self.take_joined();
                return;
            }
            if what == "joined" || what == "attached" {
                j.confirmed = true;
                let (room, server, publisher) = (j.room, j.server.clone(), j.publisher);
                if !publisher {
                    self.share_subscriber(room, &server);
                }
                let Some(j) = self.joined_mut() else {
                    return;
                };
                if what == "joined" && j.publisher {
                    j.feed = data.get("id").and_then(Value::as_u64);
                    let (room, server) = (j.room, j.server.clone());
                    let feed = j.feed.unwrap_or(0);
                    let private_id = data.get("private_id").and_then(Value::as_u64);
                    j.private_id = private_id;
                    let mut rooms = self.shared.rooms.lock();
                    rooms.publisher_joined(room, handle_id, &server, feed);
                    rooms.participant_owner(room, handle_id, session_id, private_id);
                    drop(rooms);
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

    /// A leg's server is gone (`server_lost`), or Janus dropped the leg.
    fn on_leg_lost(&mut self, ctx: &mut Context<Self>, token: u64, server_lost: bool) {
        let Some(leg) = self.legs.remove(token, &self.shared.env.servers) else {
            return;
        };
        let server = leg.server().to_owned();
        // This handle's publisher leaves the shared participants before the placement is
        // cleared (the store keeps a placement while other proxies' participants are recorded
        // there: each proxy's clear comes after its own removals, so the last one clears it).
        if let Some(room) = self
            .joined()
            .filter(|j| j.leg == token && j.publisher)
            .map(|j| j.room)
        {
            self.share_publisher(room, None);
        }
        if server_lost {
            // Every room there is gone with it: the next join creates it again elsewhere.
            let rooms = self.shared.rooms.lock().forget_server(&server);
            if let Some(store) = &self.shared.env.cluster.rooms {
                for room in &rooms {
                    store.clear_placement(RoomKind::VideoRoom, *room, &server);
                }
            }
            if self.shared.spans() {
                let coordinators = self.shared.coordinators.lock();
                for room in rooms {
                    if let Some(c) = coordinators.get(&room) {
                        c.do_send(ServerLost {
                            server: server.clone(),
                        });
                    }
                }
            }
        }
        if self.owed.as_ref().and_then(|o| o.leg) == Some(token) {
            self.fail_owed(ctx, NoWay::Unavailable(server.clone()));
        }
        if self.joined().is_none_or(|j| j.leg != token) {
            // Another leg's server: this handle's room is elsewhere.
            return;
        }
        let Some(j) = self.take_joined() else {
            return;
        };
        if j.media {
            self.core.hangup(BACKEND_LOST_REASON);
        }
        let data = if j.publisher {
            json!({"videoroom": "event", "room": j.room, "leaving": "ok",
                "reason": BACKEND_LOST_REASON})
        } else {
            json!({"videoroom": "event", "room": j.room, "left": "ok",
                "reason": BACKEND_LOST_REASON})
        };
        self.core.event(None, data, None);
        log::info!(
            "videoroom handle {}: room {} lost with backend server {}",
            self.core.handle_id,
            j.room,
            j.server
        );
    }
}

/// Janus marks mirrored publishers `"remote": true` in `listparticipants`: the proxy's
/// mirrors are ordinary participants for the client.
fn strip_remote_marks(frame: &mut JsonMap) {
    let participants = request::plugin_data_mut(frame)
        .and_then(|d| d.get_mut("participants"))
        .and_then(Value::as_array_mut);
    for p in participants.into_iter().flatten() {
        if let Some(p) = p.as_object_mut() {
            p.shift_remove("remote");
        }
    }
}
