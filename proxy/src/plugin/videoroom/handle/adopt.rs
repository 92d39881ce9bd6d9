//! Adoption (docs/adoption.md, "Videoroom"): what a survivor needs to rebuild a participant
//! of a dead proxy ([`Participation`], the handle's state in its session's record, told to the
//! session whenever it changes), and the participant rebuilt on its live leg: counted in its
//! room by this proxy (room book, shared participants, the room's coordinator) without anyone
//! being told it joined, since for Janus and the room's other participants it never left.

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Joined, Life, VideoRoomHandle};
use crate::messages::adoption::AdoptableState;
use crate::messages::cluster::RoomKind;
use crate::plugin::kit::BackendLeg;
use crate::plugin::videoroom::coordinator::ParticipantJoined;
use crate::plugin::videoroom::Shared;
use crate::plugin::AttachContext;

/// A joined participant as its session records it (`HandleRecord::state`): what the proxy
/// keeps of it besides its leg.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Participation {
    pub room: u64,
    /// Joined as a publisher (else a subscriber).
    pub publisher: bool,
    /// A publisher's id, private id and display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    /// A PeerConnection was negotiated.
    #[serde(default)]
    pub media: bool,
    /// A publisher's PeerConnection is up, with these streams (spanning rooms mirror it).
    #[serde(default)]
    pub active: bool,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub streams: Value,
}

impl Participation {
    /// A participant the backend confirmed (None: not in a room, or not joined yet).
    fn of(j: &Joined) -> Option<Participation> {
        if !j.confirmed || (j.publisher && j.feed.is_none()) {
            return None;
        }
        Some(Participation {
            room: j.room,
            publisher: j.publisher,
            id: j.feed,
            private_id: j.private_id.filter(|_| j.publisher),
            display: j.display.clone(),
            media: j.media,
            active: j.active,
            streams: if j.publisher {
                j.streams.clone()
            } else {
                Value::Null
            },
        })
    }

    /// The recorded state; None (logged) for something else.
    pub fn parse(state: &Value) -> Option<Participation> {
        let p: Participation = serde_json::from_value(state.clone())
            .map_err(|e| log::warn!("videoroom: not a recorded participant ({e}): {state}"))
            .ok()?;
        if p.publisher && p.id.is_none() {
            log::warn!("videoroom: a recorded publisher without its id: {state}");
            return None;
        }
        Some(p)
    }

    /// The joined participant it was, on leg `leg` of `server`.
    fn joined(self, leg: u64, server: String) -> Joined {
        Joined {
            room: self.room,
            leg,
            server,
            publisher: self.publisher,
            media: self.media,
            confirmed: true,
            join_transaction: String::new(),
            feed: self.id,
            display: self.display,
            streams: self.streams,
            active: self.active,
            in_roster: false,
            private_id: self.private_id,
        }
    }
}

impl VideoRoomHandle {
    /// A dead proxy's participant, rebuilt on its live leg: `state` is what
    /// [`Participation`] recorded. None if it is not one.
    pub fn adopted(
        ctx: AttachContext,
        shared: Shared,
        leg: BackendLeg,
        state: &Value,
    ) -> Option<(Self, u64)> {
        let p = Participation::parse(state)?;
        let server = leg.server.clone();
        let mut handle = VideoRoomHandle::new(ctx, shared);
        let token = handle.legs.adopted(leg);
        handle.life = Life::In(p.joined(token, server));
        Some((handle, token))
    }

    /// What a survivor needs to rebuild this handle now: a confirmed participant of a room
    /// on one server, with its leg (a room that spans servers is not adopted: its remote
    /// publishers and mirrors are not rebuilt; docs/adoption.md, Limits).
    fn adoptable_now(&self) -> Option<AdoptableState> {
        let j = self.joined()?;
        let backend_handle = self.legs.get(j.leg)?.backend.handle?;
        if self.shared.rooms.lock().servers(j.room).len() > 1 {
            return None;
        }
        let state = serde_json::to_value(Participation::of(j)?).ok()?;
        Some(AdoptableState {
            server: j.server.clone(),
            backend_handle: Some(backend_handle),
            state,
        })
    }

    /// Tells the session what a survivor needs, if that changed.
    pub(super) fn share_adoptable(&mut self) {
        let now = self.adoptable_now();
        if now != self.adoptable {
            self.core.adoptable(now.clone());
            self.adoptable = now;
        }
    }

    /// An adopted participant (started in its room): counted there once its room is known
    /// here (read from the shared store first if this proxy has not heard of it); nothing
    /// else is handled meanwhile.
    pub(super) fn settle_adopted(&mut self, ctx: &mut Context<Self>) {
        let Some(room) = self.joined().map(|j| j.room) else {
            return;
        };
        let known = self.shared.rooms.lock().exists(room);
        match self.shared.env.cluster.rooms.clone() {
            Some(store) if !known => {
                let read = store.fetch(RoomKind::VideoRoom, room).into_actor(self);
                ctx.wait(read.map(|_, act, ctx| act.count_adopted(ctx)));
            }
            _ => self.count_adopted(ctx),
        }
    }

    /// The adopted participant counts in its room here, as one that joined through this
    /// proxy: the room book (its placement, the seat, the publisher and its owner), the shared
    /// participants, the room's coordinator; and its session records it for a survivor again.
    /// Nobody is told it joined.
    fn count_adopted(&mut self, ctx: &mut Context<Self>) {
        let (session, handle) = (self.core.session_id, self.core.handle_id);
        let Some(j) = self.joined() else {
            return;
        };
        let (room, server, publisher) = (j.room, j.server.clone(), j.publisher);
        let (feed, private_id) = (j.feed.unwrap_or(0), j.private_id);
        {
            let mut rooms = self.shared.rooms.lock();
            // The room lives where its participant is (the store's placement says so too,
            // unless it was cleared meanwhile).
            rooms.place(room, &server);
            rooms.mark_created(room, &server);
            rooms.seat_taken(room, handle, &server, publisher);
            if publisher {
                rooms.publisher_joined(room, handle, &server, feed);
                rooms.participant_owner(room, handle, session, private_id);
            }
        }
        if publisher {
            self.share_publisher(room, Some((feed, &server)));
            self.rejoin_roster(ctx);
        } else {
            self.share_subscriber(room, &server);
        }
        // Told even if unchanged: the session's entry starts as a relayed handle's.
        let now = self.adoptable_now();
        self.core.adoptable(now.clone());
        self.adoptable = now;
    }

    /// Spanning rooms: the room's coordinator here counts the adopted publisher (a follower
    /// tells the owner), as if it had joined through this proxy; its answer (the attendees of
    /// a `joined`) is not needed.
    fn rejoin_roster(&mut self, ctx: &mut Context<Self>) {
        let notify = ctx.address().recipient();
        let handle = self.core.handle_id;
        let Some(j) = self.joined_mut() else {
            return;
        };
        let Some(id) = j.feed else {
            return;
        };
        let msg = ParticipantJoined {
            handle,
            server: j.server.clone(),
            id,
            display: j.display.clone(),
            notify,
        };
        let room = j.room;
        let Some(c) = self.shared.coordinator(room) else {
            return;
        };
        if let Some(j) = self.joined_mut() {
            j.in_roster = true;
        }
        c.do_send(msg);
        // Publishing: its PeerConnection is up (spanning rooms: in the coordinator's plan).
        self.mirror_active();
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn joined(publisher: bool) -> Joined {
        Joined {
            room: 1234,
            leg: 1,
            server: "j1".into(),
            publisher,
            media: true,
            confirmed: true,
            join_transaction: "join".into(),
            feed: publisher.then_some(77),
            display: Some("alice".into()),
            streams: json!([{"type": "video", "mindex": 0, "mid": "0"}]),
            active: publisher,
            in_roster: true,
            private_id: Some(99),
        }
    }

    #[test]
    fn a_publisher_survives_its_record_as_the_participant_it_was() {
        let before = joined(true);
        let p = Participation::of(&before).expect("a confirmed publisher");
        let state = serde_json::to_value(&p).expect("serialises");
        assert_eq!(
            state,
            json!({"room": 1234, "publisher": true, "id": 77, "private_id": 99,
                "display": "alice", "media": true, "active": true,
                "streams": [{"type": "video", "mindex": 0, "mid": "0"}]})
        );
        let after = Participation::parse(&state)
            .expect("parses")
            .joined(5, "j1".into());
        assert_eq!(
            (
                after.room,
                after.leg,
                after.publisher,
                after.feed,
                after.private_id
            ),
            (1234, 5, true, Some(77), Some(99))
        );
        assert!(after.confirmed && after.media && after.active && !after.in_roster);
        assert_eq!(after.display.as_deref(), Some("alice"));
        assert_eq!(after.streams, before.streams);
    }

    #[test]
    fn a_subscriber_records_its_room_only() {
        let p = Participation::of(&joined(false)).expect("a confirmed subscriber");
        let state = serde_json::to_value(&p).expect("serialises");
        assert_eq!(
            state,
            json!({"room": 1234, "publisher": false, "display": "alice", "media": true,
                "active": false})
        );
        assert_eq!(Participation::parse(&state), Some(p));
    }

    #[test]
    fn a_participant_not_confirmed_yet_is_not_adoptable() {
        let mut j = joined(true);
        j.confirmed = false;
        assert_eq!(Participation::of(&j), None);
        let mut j = joined(true);
        j.feed = None;
        assert_eq!(Participation::of(&j), None);
    }

    #[test]
    fn a_bad_record_is_refused_not_a_panic() {
        for bad in [
            json!(null),
            json!({"room": "one", "publisher": true, "id": 1}),
            json!({"publisher": true, "id": 1}),
            json!({"room": 1, "publisher": true}),
            json!([1, 2]),
        ] {
            assert_eq!(Participation::parse(&bad), None, "{bad}");
        }
    }
}
