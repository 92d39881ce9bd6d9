//! The handle and its room's coordinator (spanning rooms): what the handle tells it (its
//! participant joined, publishing, gone, out of the room; a list over the room's servers) and
//! what it hears from it ([`RoomNotice`]s: events of the room's other servers, and how to read
//! the next events of its own).

use actix::prelude::*;
use janus_protocol::JsonMap;
use serde_json::{json, Value};

use super::placement::{NoWay, RoomRequest};
use super::VideoRoomHandle;
use crate::messages::cluster::{ParticipantRecord, RoomKind};
use crate::plugin::kit::request;
use crate::plugin::videoroom::coordinator::{
    remote_streams_with_levels, Departure, ListParticipants, ParticipantJoined, ParticipantLeft,
    PublisherActive, PublisherGone, RoomNotice,
};

impl VideoRoomHandle {
    /// Spanning rooms: an event the coordinator said means something else is delivered as Janus
    /// says that to the publisher's own server: a mirror's `leaving: id` as `unpublished` or
    /// `kicked`, the `publishers` event of a mirror's update as the display-name event.
    pub(super) fn apply_rename(&mut self, frame: &mut JsonMap) {
        if self.renames.is_empty() && self.display_changes.is_empty() {
            return;
        }
        let Some(data) = request::plugin_data_mut(frame) else {
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

    /// Spanning rooms: this handle's publisher `joined` (the answer in `frame`): the room's
    /// coordinator counts it, and the participants of the room's other servers that its own
    /// server does not know of join its `attendees` (when the room lists them). The frame
    /// goes out once the coordinator answered; the handle handles nothing else meanwhile, so
    /// that no later event overtakes it. False: nothing to do, the caller sends the frame.
    pub(super) fn join_roster(&mut self, ctx: &mut Context<Self>, frame: &JsonMap) -> bool {
        let data = request::plugin_data(frame);
        if data
            .and_then(|d| d.get("videoroom"))
            .and_then(Value::as_str)
            != Some("joined")
        {
            return false;
        }
        let joined = self.joined().and_then(|j| match j.feed {
            Some(id) if j.publisher && j.confirmed && !j.in_roster => Some(ParticipantJoined {
                handle: self.core.handle_id,
                server: j.server.clone(),
                id,
                display: j.display.clone(),
                notify: ctx.address().recipient(),
            }),
            _ => None,
        });
        let (Some(msg), Some(c)) = (
            joined,
            self.joined().and_then(|j| self.shared.coordinator(j.room)),
        ) else {
            return false;
        };
        if let Some(j) = self.joined_mut() {
            j.in_roster = true;
        }
        // The handle waits for nothing else meanwhile: never longer than a request may take.
        let ask = tokio::time::timeout(self.shared.env.request_timeout, c.send(msg));
        let mut frame = frame.clone();
        let fut = ask.into_actor(self).map(move |attendees, act, _| {
            let listed = request::plugin_data_mut(&mut frame)
                .and_then(|d| d.get_mut("attendees"))
                .and_then(Value::as_array_mut);
            if let (Some(list), Ok(Ok(more))) = (listed, attendees) {
                list.extend(more);
            }
            act.core.send(&frame, None);
        });
        ctx.wait(fut);
        true
    }

    /// This handle's publisher is (still) publishing: mirrored to the room's other servers.
    pub(super) fn mirror_active(&self) {
        let Some(j) = self.joined().filter(|j| j.active) else {
            return;
        };
        let (Some(id), Some(c)) = (j.feed, self.shared.coordinator(j.room)) else {
            return;
        };
        c.do_send(PublisherActive {
            server: j.server.clone(),
            id,
            display: j.display.clone(),
            streams: remote_streams_with_levels(&j.streams, self.audio_level_ext),
        });
    }

    /// This handle's publisher stopped publishing: its mirrors go.
    pub(super) fn mirror_gone(&mut self) {
        let Some(j) = self.joined_mut().filter(|j| j.active) else {
            return;
        };
        j.active = false;
        let (room, feed) = (j.room, j.feed);
        if let (Some(id), Some(c)) = (feed, self.shared.coordinator(room)) {
            c.do_send(PublisherGone { id });
        }
    }

    /// This handle is out of its room.
    pub(super) fn left_room(&mut self) {
        self.left_room_as(Departure::Left);
    }

    /// Out of the room (a spanning room's other servers are told how).
    pub(super) fn left_room_as(&mut self, how: Departure) {
        self.renames.clear();
        self.display_changes.clear();
        let Some(j) = self.take_joined() else {
            return;
        };
        if j.publisher {
            self.shared
                .rooms
                .lock()
                .publisher_left(j.room, self.core.handle_id);
            self.share_publisher(j.room, None);
        }
        // Only a running coordinator has anything to undo (and none is started while the
        // system stops).
        let running = self.shared.running(j.room);
        if let Some(c) = running {
            if j.in_roster {
                // The coordinator also takes down its mirrors if it was publishing.
                c.do_send(ParticipantLeft {
                    handle: self.core.handle_id,
                    how,
                });
            } else if let (true, Some(id), false) =
                (j.active, j.feed, how == Departure::RoomDestroyed)
            {
                c.do_send(PublisherGone { id });
            }
        }
    }

    /// Spanning rooms: `listparticipants` of a room on several servers, merged by its coordinator
    /// (each participant once; the mirrors are not told apart).
    pub(super) fn list_everywhere(&mut self, ctx: &mut Context<Self>, req: RoomRequest) {
        let Some(c) = self.shared.coordinator(req.room) else {
            return;
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        c.do_send(ListParticipants { reply: tx });
        let limit = self.shared.env.request_timeout;
        let fut = async move { tokio::time::timeout(limit, rx).await }
            .into_actor(self)
            .map(move |got, act: &mut Self, _| match got {
                Ok(Ok(participants)) => {
                    let data = json!({"videoroom": "participants", "room": req.room,
                        "participants": participants});
                    act.core.success(&req.transaction, &req.reply_to, data);
                }
                _ => act.fail_request(&req, &NoWay::NotAllAnswered),
            });
        ctx.spawn(fut);
    }

    /// Records this handle, a subscriber joined on `server`, in the shared store: other
    /// proxies then do not expire its room (views and placement skip it).
    pub(super) fn share_subscriber(&self, room: u64, server: &str) {
        let Some(store) = &self.shared.env.cluster.rooms else {
            return;
        };
        let p = ParticipantRecord {
            id: serde_json::Value::Null,
            display: None,
            server: server.to_owned(),
            subscriber: true,
        };
        store.participant_joined(RoomKind::VideoRoom, room, self.core.handle_id, p);
    }

    /// Records this handle's publisher (or its end) in the shared store, for views.
    pub(super) fn share_publisher(&self, room: u64, joined: Option<(u64, &str)>) {
        let Some(store) = &self.shared.env.cluster.rooms else {
            return;
        };
        match joined {
            Some((feed, server)) => {
                let display = self.joined().and_then(|j| j.display.clone());
                let p = ParticipantRecord {
                    id: feed.into(),
                    display,
                    server: server.to_owned(),
                    subscriber: false,
                };
                store.participant_joined(RoomKind::VideoRoom, room, self.core.handle_id, p);
            }
            None => store.participant_left(RoomKind::VideoRoom, room, self.core.handle_id),
        }
    }
}

impl Handler<RoomNotice> for VideoRoomHandle {
    type Result = ();

    fn handle(&mut self, msg: RoomNotice, _: &mut Context<Self>) {
        if !self.joined().is_some_and(|j| j.in_roster) {
            return;
        }
        match msg {
            RoomNotice::Event(data) => self.core.event(None, data, None),
            RoomNotice::Rename { id, as_key } => {
                self.renames.insert(id, as_key);
            }
            RoomNotice::Display { id, display } => {
                self.display_changes.insert(id, display);
            }
        }
    }
}
