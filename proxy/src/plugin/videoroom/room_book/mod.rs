//! The videoroom room book: the rooms this proxy owns, their settings (as `create` gave
//! them, kept up to date by `edit`, `allowed` and `enable_recording`), the backend server each
//! room lives on (if any yet) and who is in it. A plain map shared by every videoroom handle
//! behind a lock, unit-tested without a runtime.
//!
//! One server per room (the default): a room lives on ONE backend server. It gets one when a handle
//! first needs it there (a `join`, or a room request only the backend can answer); the first handle
//! to [`RoomBook::place`] it wins, every later one goes to the same server. When that server is
//! lost the placement is forgotten ([`RoomBook::forget_placement`]) and the next handle that needs
//! the room creates it again on whatever server the registry picks.
//!
//! Several proxies (`store.url`): the book is this proxy's cache of the shared rooms (kept in
//! step through [`LocalRooms`]): a room another proxy created is learnt on a local miss or at the
//! next sync round, placement goes through the store first (the first proxy wins), and each
//! sync round brings the other proxies' creations, edits, destructions, placements and
//! publisher counts.

use std::collections::{BTreeMap, HashMap, HashSet};

use janus_protocol::JsonMap;
use parking_lot::Mutex;
use serde_json::Value;

use crate::messages::cluster::{LocalRooms, ParticipantRecord, RoomOrigin, RoomRecord};
use crate::plugin::room_expiry::RoomSeen;

mod room;
mod seats;
pub use room::{Room, RoomPlacement, NOT_FORWARDED};
pub use seats::{Seat, Seats, ServerSeats};

#[derive(Debug, Default)]
pub struct RoomBook {
    rooms: BTreeMap<u64, Room>,
    /// Spanning rooms: who each joined participant handle is (its room, client session and Janus
    /// `private_id`), so that its own subscriptions go to its server (see [`Self::own_server`]).
    owners: BTreeMap<u64, Owner>,
    /// Rooms may span servers (spanning rooms): the servers other proxies' publishers are on are
    /// the room's servers too.
    pub spans_servers: bool,
}

/// A participant handle's identity, for placing the subscriptions of the same client.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owner {
    room: u64,
    session: u64,
    private_id: Option<u64>,
}

/// `create` for a room id that exists.
#[derive(Debug, PartialEq, Eq)]
pub struct RoomExists;

impl RoomBook {
    /// Records a room (`id` 0: a random one, as Janus). The body is `create`'s, already checked.
    pub fn create(&mut self, id: u64, body: &JsonMap) -> Result<u64, RoomExists> {
        let id = if id == 0 { self.random_id() } else { id };
        if self.rooms.contains_key(&id) {
            return Err(RoomExists);
        }
        let settings = body
            .iter()
            .filter(|(k, _)| !NOT_FORWARDED.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let permanent = body
            .get("permanent")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        self.rooms.insert(
            id,
            Room {
                id,
                settings,
                servers: Vec::new(),
                publishers: BTreeMap::new(),
                remote_publishers: 0,
                remote_feeds: BTreeMap::new(),
                seats: Seats::default(),
                permanent,
                creator: String::new(),
                // The caller says otherwise for a client's or the admin API's room.
                origin: RoomOrigin::Config,
            },
        );
        Ok(id)
    }

    /// A random free room id (Janus's, for `room` 0).
    pub fn fresh_id(&self) -> u64 {
        self.random_id()
    }

    /// The room as the shared store keeps it.
    pub fn record(&self, id: u64) -> Option<RoomRecord> {
        let room = self.rooms.get(&id)?;
        Some(RoomRecord {
            id,
            settings: room.settings.clone(),
            creator: room.creator.clone(),
            permanent: room.permanent,
            origin: room.origin,
            server: room.placement().map(|p| p.server.clone()),
        })
    }

    /// A room another proxy created (read from the shared store): added unless known.
    pub fn learn(&mut self, record: RoomRecord) {
        if self.rooms.contains_key(&record.id) {
            return;
        }
        self.rooms.insert(record.id, Self::room_of(record));
    }

    fn room_of(record: RoomRecord) -> Room {
        Room {
            id: record.id,
            settings: record.settings,
            servers: record
                .server
                .map(|server| RoomPlacement {
                    server,
                    created: false,
                })
                .into_iter()
                .collect(),
            publishers: BTreeMap::new(),
            remote_publishers: 0,
            remote_feeds: BTreeMap::new(),
            seats: Seats::default(),
            permanent: record.permanent,
            creator: record.creator,
            origin: record.origin,
        }
    }

    /// The room lives on `server` (the shared store says so): its first server becomes
    /// `server`, not created yet unless it was that already. False: no such room.
    pub fn set_placement(&mut self, id: u64, server: &str) -> bool {
        let Some(room) = self.rooms.get_mut(&id) else {
            return false;
        };
        if room.placement().is_some_and(|p| p.server == server) {
            return true;
        }
        let moved = RoomPlacement {
            server: server.to_owned(),
            created: false,
        };
        room.servers.retain(|p| p.server != server);
        match room.servers.first_mut() {
            Some(first) => *first = moved,
            None => room.servers.push(moved),
        }
        true
    }

    /// One sync round of the shared store (see [`LocalRooms::apply`]): the store is the
    /// authority for which rooms exist, their settings and their (first) server.
    pub fn apply_shared(
        &mut self,
        rooms: &[RoomRecord],
        remote: &HashMap<u64, usize>,
        keep: &dyn Fn(u64) -> bool,
    ) {
        let known: HashSet<u64> = rooms.iter().map(|r| r.id).collect();
        let gone: Vec<u64> = self
            .rooms
            .keys()
            .filter(|id| !known.contains(id))
            .copied()
            .collect();
        for id in gone {
            self.apply_shared_room(id, None, 0, keep(id));
        }
        for record in rooms {
            let remote_publishers = remote.get(&record.id).copied().unwrap_or(0);
            self.apply_shared_room(record.id, Some(record), remote_publishers, keep(record.id));
        }
    }

    /// Room `id` as the shared store has it (None: not there), with its publishers on other
    /// live proxies; with `keep` (changed here meanwhile) only the count is taken.
    pub fn apply_shared_room(
        &mut self,
        id: u64,
        record: Option<&RoomRecord>,
        remote_publishers: usize,
        keep: bool,
    ) {
        let Some(record) = record else {
            if !keep {
                self.rooms.remove(&id);
            }
            return;
        };
        match self.rooms.get_mut(&id) {
            None => {
                let mut room = Self::room_of(record.clone());
                room.remote_publishers = remote_publishers;
                self.rooms.insert(id, room);
            }
            Some(room) => {
                room.remote_publishers = remote_publishers;
                if keep {
                    return;
                }
                room.settings = record.settings.clone();
                room.permanent = record.permanent;
                room.creator = record.creator.clone();
                room.origin = record.origin;
                match &record.server {
                    Some(server) => {
                        self.set_placement(id, server);
                    }
                    None => room.servers.clear(),
                }
            }
        }
    }

    /// Spanning rooms: where other proxies' publishers are (one sync round). A server the room
    /// uses through another proxy becomes one of its servers here too (its backend room
    /// exists: someone joined it there).
    pub fn apply_remote_feeds(&mut self, remote: &HashMap<u64, Vec<ParticipantRecord>>) {
        let ids: Vec<u64> = self.rooms.keys().copied().collect();
        for id in ids {
            self.apply_room_feeds(id, remote.get(&id).map(Vec::as_slice).unwrap_or(&[]));
        }
    }

    /// Where the publishers of room `id` on other proxies are (see
    /// [`RoomBook::apply_remote_feeds`]).
    pub fn apply_room_feeds(&mut self, id: u64, remote: &[ParticipantRecord]) {
        let spans = self.spans_servers;
        let Some(room) = self.rooms.get_mut(&id) else {
            return;
        };
        let feeds: BTreeMap<u64, String> = remote
            .iter()
            .filter_map(|p| Some((p.id.as_u64()?, p.server.clone())))
            .collect();
        for server in feeds.values() {
            if room.servers.is_empty() || !spans {
                continue;
            }
            if !room.servers.iter().any(|p| p.server == *server) {
                room.servers.push(RoomPlacement {
                    server: server.clone(),
                    created: false,
                });
            }
        }
        room.remote_feeds = feeds;
    }

    fn random_id(&self) -> u64 {
        loop {
            // Janus's random room ids are below 2^53 (JavaScript-safe).
            let id = rand::random::<u64>() & ((1 << 53) - 1);
            if id != 0 && !self.rooms.contains_key(&id) {
                return id;
            }
        }
    }

    pub fn get(&self, id: u64) -> Option<&Room> {
        self.rooms.get(&id)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut Room> {
        self.rooms.get_mut(&id)
    }

    pub fn exists(&self, id: u64) -> bool {
        self.rooms.contains_key(&id)
    }

    pub fn remove(&mut self, id: u64) -> Option<Room> {
        self.rooms.remove(&id)
    }

    /// What the room expiry needs of every room: who may expire, who is occupied (this
    /// proxy's handles in it — their join sent, see [`Seats`] — and other live proxies'
    /// publishers).
    pub fn expiry_view(&self) -> Vec<RoomSeen> {
        self.rooms
            .values()
            .map(|r| RoomSeen {
                id: r.id,
                expires: r.origin.expires(),
                occupants: r.seats.by_handle.len() + r.remote_publishers,
            })
            .collect()
    }

    /// Public rooms (every room with `all`), in id order.
    /// Every room, in id order.
    pub fn rooms(&self) -> impl Iterator<Item = &Room> {
        self.rooms.values()
    }

    pub fn list(&self, all: bool) -> Vec<Value> {
        self.rooms
            .values()
            .filter(|r| all || !r.is_private())
            .map(Room::list_entry)
            .collect()
    }

    /// Where the room lives (its first server), if anywhere yet.
    pub fn placement(&self, id: u64) -> Option<RoomPlacement> {
        self.rooms.get(&id).and_then(|r| r.placement().cloned())
    }

    /// Puts the room on `server` unless it lives somewhere already: the (first) server it
    /// lives on (None: no such room).
    pub fn place(&mut self, id: u64, server: &str) -> Option<String> {
        let room = self.rooms.get_mut(&id)?;
        if room.servers.is_empty() {
            room.servers.push(RoomPlacement {
                server: server.to_owned(),
                created: false,
            });
        }
        room.placement().map(|p| p.server.clone())
    }

    /// One more server for a room that spans servers. False: no such room, or
    /// already there.
    pub fn add_server(&mut self, id: u64, server: &str) -> bool {
        let Some(room) = self.rooms.get_mut(&id) else {
            return false;
        };
        if room.servers.iter().any(|p| p.server == server) {
            return false;
        }
        room.servers.push(RoomPlacement {
            server: server.to_owned(),
            created: false,
        });
        true
    }

    /// Does the room live on `server` (its backend room created)?
    pub fn is_created_on(&self, id: u64, server: &str) -> bool {
        self.rooms
            .get(&id)
            .is_some_and(|r| r.servers.iter().any(|p| p.server == server && p.created))
    }

    /// Is `server` one of the room's servers?
    pub fn is_on(&self, id: u64, server: &str) -> bool {
        self.rooms
            .get(&id)
            .is_some_and(|r| r.servers.iter().any(|p| p.server == server))
    }

    /// The room exists on `server` now.
    pub fn mark_created(&mut self, id: u64, server: &str) {
        if let Some(room) = self.rooms.get_mut(&id) {
            for p in room.servers.iter_mut().filter(|p| p.server == server) {
                p.created = true;
            }
        }
    }

    /// `server` is lost: every room there forgets it (and its publishers, who were there).
    /// Returns the rooms that lived there.
    pub fn forget_server(&mut self, server: &str) -> Vec<u64> {
        let mut forgotten = Vec::new();
        for room in self.rooms.values_mut() {
            if room.servers.iter().any(|p| p.server == server) {
                room.servers.retain(|p| p.server != server);
                room.publishers.retain(|_, (s, _)| s != server);
                room.remote_feeds.retain(|_, s| s != server);
                room.seats.forget_server(server);
                forgotten.push(room.id);
            }
        }
        forgotten
    }

    /// One room forgets `server` (if it lives there).
    pub fn forget_placement(&mut self, id: u64, server: &str) {
        if let Some(room) = self.rooms.get_mut(&id) {
            room.servers.retain(|p| p.server != server);
            room.publishers.retain(|_, (s, _)| s != server);
            room.remote_feeds.retain(|_, s| s != server);
            room.seats.forget_server(server);
        }
    }

    pub fn publisher_joined(&mut self, id: u64, handle: u64, server: &str, feed: u64) {
        if let Some(room) = self.rooms.get_mut(&id) {
            room.publishers.insert(handle, (server.to_owned(), feed));
        }
    }

    pub fn publisher_left(&mut self, id: u64, handle: u64) {
        if let Some(room) = self.rooms.get_mut(&id) {
            room.publishers.remove(&handle);
        }
        self.owners.remove(&handle);
    }

    /// Participant `handle` (joined in room `id`) belongs to client session `session` and got
    /// `private_id` from Janus.
    pub fn participant_owner(
        &mut self,
        id: u64,
        handle: u64,
        session: u64,
        private_id: Option<u64>,
    ) {
        let owner = Owner {
            room: id,
            session,
            private_id,
        };
        self.owners.insert(handle, owner);
    }

    /// Spanning rooms: the server of the participant a subscription belongs to — the participant
    /// whose Janus `private_id` the subscriber's `join` carries (janus.js sends it), else one
    /// of the same client session — if it is joined in room `id` on a server the room still
    /// has. A subscriber placed there lives and dies with its own participant, not with
    /// whichever publisher it happens to name first (every active publisher is mirrored to
    /// every server of the room).
    pub fn own_server(&self, id: u64, session: u64, private_id: Option<u64>) -> Option<String> {
        let room = self.rooms.get(&id)?;
        let joined = |wanted: &dyn Fn(&Owner) -> bool| {
            room.publishers
                .iter()
                .filter(|(handle, (server, _))| {
                    self.owners
                        .get(handle)
                        .is_some_and(|o| o.room == id && wanted(o))
                        && room.servers.iter().any(|p| p.server == *server)
                })
                .map(|(_, (server, _))| server.clone())
                .next()
        };
        private_id
            .and_then(|pvt| joined(&|o: &Owner| o.private_id == Some(pvt)))
            .or_else(|| joined(&|o: &Owner| o.session == session))
    }

    /// The server of publisher `feed` in the room (this proxy's, or, with a shared store,
    /// another's as of the last sync round).
    pub fn feed_server(&self, id: u64, feed: u64) -> Option<String> {
        let room = self.rooms.get(&id)?;
        room.publishers
            .values()
            .find(|(_, f)| *f == feed)
            .map(|(s, _)| s.clone())
            .or_else(|| room.remote_feeds.get(&feed).cloned())
    }

    /// The room's servers.
    pub fn servers(&self, id: u64) -> Vec<String> {
        self.rooms
            .get(&id)
            .map(|r| r.servers.iter().map(|p| p.server.clone()).collect())
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }
}

/// With a shared store (several proxies), the room book is a cache of the store's rooms.
impl LocalRooms for Mutex<RoomBook> {
    fn record(&self, id: u64) -> Option<RoomRecord> {
        self.lock().record(id)
    }

    fn records(&self) -> Vec<RoomRecord> {
        let book = self.lock();
        book.rooms
            .keys()
            .filter_map(|id| book.record(*id))
            .collect()
    }

    fn learn(&self, record: RoomRecord) {
        self.lock().learn(record);
    }

    fn apply_room(&self, id: u64, record: Option<&RoomRecord>, remote: usize, keep: bool) {
        self.lock().apply_shared_room(id, record, remote, keep);
    }

    fn apply_feeds(&self, id: u64, remote: &[ParticipantRecord]) {
        self.lock().apply_room_feeds(id, remote);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::plugin::test_body as body;

    #[test]
    fn create_exists_remove() {
        let mut d = RoomBook::default();
        assert_eq!(d.create(1234, &body(json!({"request":"create"}))), Ok(1234));
        assert_eq!(d.create(1234, &JsonMap::new()), Err(RoomExists));
        let random = d.create(0, &JsonMap::new()).expect("random id");
        assert!(random != 0 && random < (1 << 53) && random != 1234);
        assert!(d.exists(1234) && d.exists(random));
        assert!(d.remove(1234).is_some());
        assert!(!d.exists(1234));
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn list_matches_janus_defaults_and_hides_private_rooms() {
        let mut d = RoomBook::default();
        d.create(1234, &JsonMap::new()).expect("create");
        d.create(
            1235,
            &body(json!({"is_private": true, "pin": "p", "publishers": 6})),
        )
        .expect("create");
        let list = d.list(false);
        assert_eq!(
            list,
            [
                json!({"room":1234,"description":"Room 1234","pin_required":false,"is_private":false,
                "max_publishers":3,"bitrate":0,"fir_freq":0,"require_pvtid":false,
                "require_e2ee":false,"dummy_publisher":false,"notify_joining":false,
                "audiocodec":"opus","videocodec":"vp8","opus_fec":true,"record":false,
                "lock_record":false,"num_participants":0,"audiolevel_ext":true,
                "audiolevel_event":false,"videoorient_ext":true,"playoutdelay_ext":true,
                "transport_wide_cc_ext":true})
            ]
        );
        // key order as Janus's
        let keys: Vec<String> = list[0]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        assert_eq!(
            keys[..4],
            ["room", "description", "pin_required", "is_private"]
        );
        assert_eq!(d.list(true).len(), 2);
        assert_eq!(d.list(true)[1]["pin_required"], true);
        assert_eq!(d.list(true)[1]["max_publishers"], 6);
    }

    #[test]
    fn first_placement_wins_and_a_lost_server_is_forgotten() {
        let mut d = RoomBook::default();
        d.create(1, &JsonMap::new()).expect("create");
        d.create(2, &JsonMap::new()).expect("create");
        assert_eq!(d.place(1, "janus-a").as_deref(), Some("janus-a"));
        assert_eq!(d.place(1, "janus-b").as_deref(), Some("janus-a"));
        assert_eq!(d.place(2, "janus-b").as_deref(), Some("janus-b"));
        assert_eq!(d.place(3, "janus-b"), None);
        assert!(!d.placement(1).expect("placed").created);
        d.mark_created(1, "janus-b"); // not where it lives: ignored
        assert!(!d.placement(1).expect("placed").created);
        d.mark_created(1, "janus-a");
        assert!(d.placement(1).expect("placed").created);
        d.publisher_joined(1, 77, "janus-a", 5);
        assert_eq!(d.list(false)[0]["num_participants"], 1);
        assert_eq!(d.forget_server("janus-a"), [1]);
        assert_eq!(d.placement(1), None);
        assert_eq!(d.list(false)[0]["num_participants"], 0);
        assert_eq!(d.placement(2).map(|p| p.server).as_deref(), Some("janus-b"));
        // forget_placement only forgets the server the room lives on
        d.forget_placement(2, "janus-a");
        assert!(d.placement(2).is_some());
        d.forget_placement(2, "janus-b");
        assert!(d.placement(2).is_none());
        // the next placement may be anywhere
        assert_eq!(d.place(1, "janus-b").as_deref(), Some("janus-b"));
    }

    #[test]
    fn rooms_spanning_servers_fill_one_before_the_next() {
        let mut d = RoomBook::default();
        d.create(1, &JsonMap::new()).expect("create");
        assert!(d.publisher_preference(1, 2).is_empty(), "no server yet");
        d.place(1, "a");
        d.mark_created(1, "a");
        assert_eq!(d.publisher_preference(1, 2), ["a"]);
        for (handle, feed) in [(10, 100), (11, 101)] {
            d.seat_taken(1, handle, "a", true);
            d.publisher_joined(1, handle, "a", feed);
        }
        assert!(d.publisher_preference(1, 2).is_empty(), "a is full");
        assert!(d.add_server(1, "b"));
        assert!(!d.add_server(1, "b"));
        assert!(d.is_on(1, "b") && !d.is_created_on(1, "b"));
        d.mark_created(1, "b");
        assert_eq!(d.publisher_preference(1, 2), ["b"]);
        d.seat_taken(1, 12, "b", true);
        d.publisher_joined(1, 12, "b", 102);
        assert_eq!(d.feed_server(1, 102).as_deref(), Some("b"));
        assert_eq!(d.feed_server(1, 999), None);
        assert_eq!(d.servers(1), ["a", "b"]);
        assert_eq!(d.list(false)[0]["num_participants"], 3);
        // Losing a drops its publishers; b becomes the first server.
        d.forget_server("a");
        assert_eq!(d.placement(1).map(|p| p.server).as_deref(), Some("b"));
        assert_eq!(d.list(false)[0]["num_participants"], 1);
        d.publisher_left(1, 12);
        assert_eq!(d.list(false)[0]["num_participants"], 0);
    }

    #[test]
    fn a_subscription_goes_to_its_own_participant_server() {
        let mut d = RoomBook::default();
        d.create(1, &JsonMap::new()).expect("create");
        d.create(2, &JsonMap::new()).expect("create");
        d.place(1, "a");
        d.add_server(1, "b");
        d.place(2, "b");
        // Handle 10 (session 100, private id 7) on a; handle 11 (session 101) on b.
        d.publisher_joined(1, 10, "a", 1000);
        d.participant_owner(1, 10, 100, Some(7));
        d.publisher_joined(1, 11, "b", 1001);
        d.participant_owner(1, 11, 101, Some(8));
        // By private id, whatever the session (janus.js: another session is fine).
        assert_eq!(d.own_server(1, 555, Some(7)).as_deref(), Some("a"));
        assert_eq!(d.own_server(1, 100, Some(8)).as_deref(), Some("b"));
        // By session when the private id is absent or unknown.
        assert_eq!(d.own_server(1, 100, None).as_deref(), Some("a"));
        assert_eq!(d.own_server(1, 101, Some(99)).as_deref(), Some("b"));
        // Nobody of the client in that room: none (the first feed's server then).
        assert_eq!(d.own_server(1, 555, None), None);
        assert_eq!(d.own_server(2, 100, Some(7)), None);
        assert_eq!(d.own_server(3, 100, Some(7)), None);
        // A lost server no longer counts; a participant that left neither.
        d.forget_server("a");
        assert_eq!(d.own_server(1, 100, Some(7)), None);
        d.publisher_left(1, 11);
        assert_eq!(d.own_server(1, 101, Some(8)), None);
        assert!(!d.owners.contains_key(&11));
    }

    #[test]
    fn other_proxies_publishers_count_for_placement_and_routing() {
        let participant = |id: u64, server: &str| ParticipantRecord {
            id: json!(id),
            display: None,
            server: server.to_owned(),
            subscriber: false,
        };
        let mut d = RoomBook::default();
        d.create(1, &JsonMap::new()).expect("create");
        d.place(1, "a");
        d.mark_created(1, "a");
        let remote = HashMap::from([(1, vec![participant(100, "a")])]);
        // One server per room: only routing knows of them.
        d.apply_remote_feeds(&remote);
        assert_eq!(d.feed_server(1, 100).as_deref(), Some("a"));
        assert_eq!(d.servers(1), ["a"]);
        // Spanning rooms: a is full (1 per backend) with the other proxy's publisher, and a server
        // another proxy opened for the room is one of its servers here too.
        d.spans_servers = true;
        d.apply_remote_feeds(&remote);
        assert!(d.publisher_preference(1, 1).is_empty(), "a is full");
        let remote = HashMap::from([(1, vec![participant(100, "a"), participant(101, "b")])]);
        d.apply_remote_feeds(&remote);
        assert_eq!(d.servers(1), ["a", "b"]);
        assert!(
            !d.is_created_on(1, "b"),
            "created there by this proxy's first use"
        );
        assert_eq!(d.feed_server(1, 101).as_deref(), Some("b"));
        assert_eq!(d.publisher_preference(1, 2), ["a", "b"]);
        // They left (or their proxy died): the places are free again, the servers stay.
        d.apply_remote_feeds(&HashMap::new());
        assert_eq!(d.feed_server(1, 101), None);
        assert_eq!(d.publisher_preference(1, 1), ["a", "b"]);
        assert_eq!(d.servers(1), ["a", "b"]);
        // A lost server is forgotten with the publishers there.
        d.apply_remote_feeds(&HashMap::from([(1, vec![participant(101, "b")])]));
        d.forget_server("b");
        assert_eq!(d.feed_server(1, 101), None);
    }

    fn record(id: u64, server: Option<&str>, description: &str) -> RoomRecord {
        RoomRecord {
            id,
            settings: body(json!({"description": description})),
            creator: "other".into(),
            permanent: false,
            origin: RoomOrigin::Client,
            server: server.map(str::to_owned),
        }
    }

    #[test]
    fn the_shared_store_is_the_authority_except_for_fresh_local_changes() {
        let mut d = RoomBook::default();
        d.create(1, &JsonMap::new()).expect("create");
        d.create(2, &JsonMap::new()).expect("create");
        d.create(3, &JsonMap::new()).expect("create");
        d.place(1, "j1");
        d.mark_created(1, "j1");
        d.publisher_joined(1, 77, "j1", 5);
        // Room 2 is gone from the store (destroyed elsewhere), room 3 too but it changed here
        // since the round began; room 4 is another proxy's; room 1 was edited elsewhere.
        let rooms = [
            record(1, Some("j1"), "edited"),
            record(4, Some("j2"), "theirs"),
        ];
        let remote = HashMap::from([(1, 2)]);
        d.apply_shared(&rooms, &remote, &|id| id == 3);
        assert!(d.exists(1) && !d.exists(2) && d.exists(3) && d.exists(4));
        assert_eq!(d.get(1).expect("room").settings["description"], "edited");
        assert!(d.is_created_on(1, "j1"), "same server: still created there");
        assert_eq!(d.list(false)[0]["num_participants"], 3);
        assert_eq!(d.placement(4).map(|p| p.server).as_deref(), Some("j2"));
        assert!(
            !d.is_created_on(4, "j2"),
            "created there by this proxy's first use"
        );
        // Another proxy placed room 1 elsewhere (its server was lost); then nowhere.
        d.apply_shared(&[record(1, Some("j2"), "edited")], &HashMap::new(), &|_| {
            false
        });
        assert_eq!(d.placement(1).map(|p| p.server).as_deref(), Some("j2"));
        assert!(!d.is_created_on(1, "j2"));
        d.apply_shared(&[record(1, None, "edited")], &HashMap::new(), &|_| false);
        assert_eq!(d.placement(1), None);
        // A room learnt on a local miss does not overwrite a known one.
        d.learn(record(1, Some("j9"), "stale"));
        assert_eq!(d.get(1).expect("room").settings["description"], "edited");
        assert_eq!(d.record(1).map(|r| r.creator), Some("other".into()));
        assert!(d.set_placement(1, "j1") && !d.set_placement(99, "j1"));
    }
}
