//! The audiobridge room book: every room created through this proxy, with the settings it was
//! created with (kept up to date by `edit` and `allowed`), and the backend server its mixer
//! currently lives on, if any. A plain map shared by the audiobridge handles behind a lock,
//! unit-tested without a runtime.
//!
//! A room is *placed* on one server at a time. It is *ready* there once a `create` with its
//! settings succeeded on that server (or found it existing). When the server is lost the room
//! is unplaced; the next request about it places it again, usually elsewhere.
//!
//! Several proxies (`store.url`): the book is this proxy's cache of the shared rooms (the
//! store's [`SharedRooms`](crate::messages::cluster::SharedRooms), which keeps it in step
//! through [`LocalRooms`]); placement goes through the store first (the first proxy wins).

use std::collections::{BTreeMap, HashSet};

use janus_protocol::JsonMap;
use parking_lot::Mutex;

use crate::messages::cluster::{LocalRooms, RoomOrigin, RoomRecord};
use crate::plugin::allowed;
use crate::plugin::room_expiry::RoomSeen;

#[derive(Debug, Clone)]
pub struct Room {
    /// The `create` body as the client sent it (without `request` and `permanent`), with the
    /// room id filled in, and edits applied: what re-creating it elsewhere sends.
    pub config: JsonMap,
    pub server: Option<String>,
    pub ready: bool,
    /// Reserved by a `create` that has not been answered yet.
    pub creating: bool,
    /// `permanent` as asked at `create` (kept in the shared store; not on the backends).
    pub permanent: bool,
    /// The proxy that created it (shared store; empty: this one, or the configuration).
    pub creator: String,
    /// Where it came from: only a client's room expires when it stays empty.
    pub origin: RoomOrigin,
}

#[derive(Debug, Default)]
pub struct RoomBook {
    rooms: BTreeMap<u64, Room>,
    /// This proxy's joined participants, for the operators' view: handle → (room, server).
    participants: BTreeMap<u64, (u64, String)>,
    /// Shared store: each room's participants on other live proxies (as of the last read).
    remote_participants: BTreeMap<u64, usize>,
}

/// Where a room-level request goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Whereabouts {
    /// Not a room of this proxy.
    Unknown,
    /// Known, no backend server at the moment.
    Unplaced,
    /// On this server; `ready`: created there.
    On { server: String, ready: bool },
}

impl RoomBook {
    pub fn whereabouts(&self, room: u64) -> Whereabouts {
        match self.rooms.get(&room) {
            None => Whereabouts::Unknown,
            Some(r) if r.creating => Whereabouts::Unknown,
            Some(r) => match &r.server {
                None => Whereabouts::Unplaced,
                Some(s) => Whereabouts::On {
                    server: s.clone(),
                    ready: r.ready,
                },
            },
        }
    }

    pub fn contains(&self, room: u64) -> bool {
        self.rooms.contains_key(&room)
    }

    /// Reserves `room` for a `create` in progress; false when it exists (or is reserved).
    pub fn reserve(&mut self, room: u64, server: &str) -> bool {
        if self.rooms.contains_key(&room) {
            return false;
        }
        self.rooms.insert(
            room,
            Room {
                config: JsonMap::new(),
                server: Some(server.to_owned()),
                ready: false,
                creating: true,
                permanent: false,
                creator: String::new(),
                origin: RoomOrigin::Client,
            },
        );
        true
    }

    /// A room known from the configuration: no server until it is first used.
    pub fn add_unplaced(&mut self, room: u64, config: JsonMap) {
        self.rooms.insert(
            room,
            Room {
                config,
                server: None,
                ready: false,
                creating: false,
                permanent: false,
                creator: String::new(),
                origin: RoomOrigin::Config,
            },
        );
    }

    /// The reserved room was created on its server.
    pub fn created(&mut self, room: u64, config: JsonMap) {
        if let Some(r) = self.rooms.get_mut(&room) {
            r.config = config;
            r.ready = true;
            r.creating = false;
        }
    }

    /// The reserved room was validated by a server (created there, then destroyed again): it
    /// waits for its first use to be placed.
    pub fn created_unplaced(&mut self, room: u64, config: JsonMap) {
        if let Some(r) = self.rooms.get_mut(&room) {
            r.config = config;
            r.server = None;
            r.ready = false;
            r.creating = false;
        }
    }

    /// The `create` failed: the reservation goes.
    pub fn unreserve(&mut self, room: u64) {
        if self.rooms.get(&room).is_some_and(|r| r.creating) {
            self.rooms.remove(&room);
        }
    }

    /// Places an unplaced room on `server`; returns where the room is now (another handle may
    /// have placed it first). None when the room is unknown.
    pub fn place(&mut self, room: u64, server: &str) -> Option<String> {
        let r = self.rooms.get_mut(&room).filter(|r| !r.creating)?;
        if r.server.is_none() {
            r.server = Some(server.to_owned());
            r.ready = false;
        }
        r.server.clone()
    }

    /// The room's settings, to create it on its server.
    pub fn config(&self, room: u64) -> Option<JsonMap> {
        self.rooms.get(&room).map(|r| r.config.clone())
    }

    /// The `secret` the room was created (or last edited) with, if any.
    pub fn secret(&self, room: u64) -> Option<String> {
        let config = &self.rooms.get(&room)?.config;
        config
            .get("secret")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    }

    /// The room exists on `server` now.
    pub fn mark_ready(&mut self, room: u64, server: &str) {
        if let Some(r) = self.rooms.get_mut(&room) {
            if r.server.as_deref() == Some(server) {
                r.ready = true;
            }
        }
    }

    /// The room could not be used on `server`: forget that placement.
    pub fn unplace(&mut self, room: u64, server: &str) {
        if let Some(r) = self.rooms.get_mut(&room) {
            if r.server.as_deref() == Some(server) && !r.creating {
                r.server = None;
                r.ready = false;
            }
        }
    }

    /// `server` is gone: every room on it is unplaced. Returns them.
    pub fn server_lost(&mut self, server: &str) -> Vec<u64> {
        let mut lost = Vec::new();
        for (id, r) in self.rooms.iter_mut() {
            if r.server.as_deref() == Some(server) && !r.creating {
                r.server = None;
                r.ready = false;
                lost.push(*id);
            }
        }
        lost
    }

    /// The room lives on `server` (the shared store says so); not ready there unless it was
    /// already. False: no such room (or being created).
    pub fn set_placement(&mut self, room: u64, server: &str) -> bool {
        let Some(r) = self.rooms.get_mut(&room).filter(|r| !r.creating) else {
            return false;
        };
        if r.server.as_deref() != Some(server) {
            r.server = Some(server.to_owned());
            r.ready = false;
        }
        true
    }

    /// Records how the room was created (for the shared store and the room expiry).
    pub fn set_origin(&mut self, room: u64, origin: RoomOrigin, permanent: bool) {
        if let Some(r) = self.rooms.get_mut(&room) {
            r.origin = origin;
            r.permanent = permanent;
        }
    }

    /// The room as the shared store keeps it (None: unknown, or being created).
    pub fn record(&self, id: u64) -> Option<RoomRecord> {
        let r = self.rooms.get(&id).filter(|r| !r.creating)?;
        Some(RoomRecord {
            id,
            settings: r.config.clone(),
            creator: r.creator.clone(),
            permanent: r.permanent,
            origin: r.origin,
            server: r.server.clone(),
        })
    }

    fn room_of(record: RoomRecord) -> Room {
        Room {
            config: record.settings,
            server: record.server,
            ready: false,
            creating: false,
            permanent: record.permanent,
            creator: record.creator,
            origin: record.origin,
        }
    }

    /// A room another proxy created (read from the shared store): added unless known.
    pub fn learn(&mut self, record: RoomRecord) {
        self.rooms
            .entry(record.id)
            .or_insert_with(|| Self::room_of(record));
    }

    /// One sync round of the shared store (each room as [`LocalRooms::apply_room`] takes it).
    pub fn apply_shared(&mut self, rooms: &[RoomRecord], keep: &dyn Fn(u64) -> bool) {
        let known: HashSet<u64> = rooms.iter().map(|r| r.id).collect();
        let gone: Vec<u64> = self
            .rooms
            .keys()
            .filter(|id| !known.contains(id))
            .copied()
            .collect();
        for id in gone {
            self.apply_shared_room(id, None, keep(id));
        }
        for record in rooms {
            self.apply_shared_room(record.id, Some(record), keep(record.id));
        }
    }

    /// Room `id` as the shared store has it (None: not there); not applied with `keep`
    /// (changed here meanwhile) or while the room is being created here.
    pub fn apply_shared_room(&mut self, id: u64, record: Option<&RoomRecord>, keep: bool) {
        let Some(record) = record else {
            if !keep && !self.rooms.get(&id).is_some_and(|r| r.creating) {
                self.rooms.remove(&id);
            }
            return;
        };
        match self.rooms.get_mut(&id) {
            None => {
                self.rooms.insert(id, Self::room_of(record.clone()));
            }
            Some(r) if r.creating || keep => {}
            Some(r) => {
                r.config = record.settings.clone();
                r.permanent = record.permanent;
                r.creator = record.creator.clone();
                r.origin = record.origin;
                match &record.server {
                    Some(server) => {
                        if r.server.as_deref() != Some(server) {
                            r.server = Some(server.clone());
                            r.ready = false;
                        }
                    }
                    None => {
                        r.server = None;
                        r.ready = false;
                    }
                }
            }
        }
    }

    pub fn remove(&mut self, room: u64) {
        self.rooms.remove(&room);
    }

    /// Applies a successful `edit` to the stored settings.
    pub fn edited(&mut self, room: u64, edit: &JsonMap) {
        let Some(r) = self.rooms.get_mut(&room) else {
            return;
        };
        for (from, to) in [
            ("new_description", "description"),
            ("new_secret", "secret"),
            ("new_pin", "pin"),
            ("new_is_private", "is_private"),
            ("new_record_dir", "record_dir"),
            ("new_mjrs_dir", "mjrs_dir"),
        ] {
            if let Some(v) = edit.get(from) {
                // Janus removes the PIN when the new one is empty.
                if to == "pin" && v.as_str() == Some("") {
                    r.config.remove("pin");
                } else {
                    r.config.insert(to.into(), v.clone());
                }
            }
        }
    }

    /// Applies a successful `allowed` to the stored settings (see [`allowed::apply`]).
    pub fn allowed(&mut self, room: u64, body: &JsonMap) {
        if let Some(r) = self.rooms.get_mut(&room) {
            allowed::apply(&mut r.config, body);
        }
    }

    /// Rooms and where they are, in id order.
    pub fn rooms(&self) -> Vec<(u64, Room)> {
        self.rooms
            .iter()
            .filter(|(_, r)| !r.creating)
            .map(|(id, r)| (*id, r.clone()))
            .collect()
    }

    /// Servers that hold at least one room.
    pub fn servers(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .rooms
            .values()
            .filter(|r| !r.creating)
            .filter_map(|r| r.server.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    /// Handle `handle` is joined in a room on a server (None: in none).
    pub fn set_participant(&mut self, handle: u64, joined: Option<(u64, String)>) {
        match joined {
            Some(joined) => self.participants.insert(handle, joined),
            None => self.participants.remove(&handle),
        };
    }

    /// How many participants room `room` has on other proxies (shared store).
    pub fn remote_participants(&self, room: u64) -> usize {
        self.remote_participants.get(&room).copied().unwrap_or(0)
    }

    /// How many of this proxy's participants room `room` has, per server.
    pub fn participants_by_server(&self, room: u64) -> BTreeMap<String, usize> {
        let mut by_server = BTreeMap::new();
        for (r, server) in self.participants.values() {
            if *r == room {
                *by_server.entry(server.clone()).or_insert(0) += 1;
            }
        }
        by_server
    }

    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }

    /// What the room expiry needs of every room (being created: not yet a room): who may
    /// expire, who is occupied (this proxy's joined participants, other live proxies').
    pub fn expiry_view(&self) -> Vec<RoomSeen> {
        let mut occupants: BTreeMap<u64, usize> = BTreeMap::new();
        for (room, _) in self.participants.values() {
            *occupants.entry(*room).or_insert(0) += 1;
        }
        self.rooms
            .iter()
            .filter(|(_, r)| !r.creating)
            .map(|(id, r)| RoomSeen {
                id: *id,
                expires: r.origin.expires(),
                occupants: occupants.get(id).copied().unwrap_or(0) + self.remote_participants(*id),
            })
            .collect()
    }
}

/// With a shared store (several proxies), the book is a cache of the store's rooms.
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
        let mut book = self.lock();
        book.apply_shared_room(id, record, keep);
        match record {
            Some(_) if remote > 0 => book.remote_participants.insert(id, remote),
            _ => book.remote_participants.remove(&id),
        };
    }
}

#[cfg(test)]
mod participant_tests {
    use super::*;

    #[test]
    fn participants_are_counted_per_room_and_server_until_they_leave() {
        let mut book = RoomBook::default();
        book.set_participant(1, Some((7, "j1".into())));
        book.set_participant(2, Some((7, "j1".into())));
        book.set_participant(3, Some((7, "j2".into())));
        book.set_participant(4, Some((8, "j1".into())));
        let seven = book.participants_by_server(7);
        assert_eq!(seven.get("j1"), Some(&2));
        assert_eq!(seven.get("j2"), Some(&1));
        // A change of room moves the handle; leaving removes it.
        book.set_participant(1, Some((8, "j1".into())));
        book.set_participant(3, None);
        assert_eq!(book.participants_by_server(7).get("j1"), Some(&1));
        assert_eq!(book.participants_by_server(7).get("j2"), None);
        assert_eq!(book.participants_by_server(8).get("j1"), Some(&2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    use crate::plugin::test_body as map;

    #[test]
    fn create_reserves_then_records() {
        let mut d = RoomBook::default();
        assert!(d.reserve(7, "a"));
        assert!(!d.reserve(7, "b"));
        // a reservation is nobody's room yet
        assert_eq!(d.whereabouts(7), Whereabouts::Unknown);
        assert_eq!(d.place(7, "b"), None);
        d.created(7, map(json!({"room": 7, "pin": "x"})));
        assert_eq!(
            d.whereabouts(7),
            Whereabouts::On {
                server: "a".into(),
                ready: true
            }
        );
        assert!(d.reserve(8, "a"));
        d.unreserve(8);
        assert!(!d.contains(8));
        // unreserve never removes a real room
        d.unreserve(7);
        assert!(d.contains(7));
        // validated by a server, placed at first use
        assert!(d.reserve(9, "a"));
        d.created_unplaced(9, map(json!({"room": 9})));
        assert_eq!(d.whereabouts(9), Whereabouts::Unplaced);
        assert_eq!(d.place(9, "b").as_deref(), Some("b"));
    }

    #[test]
    fn lost_server_unplaces_and_first_placer_wins() {
        let mut d = RoomBook::default();
        for (room, server) in [(1, "a"), (2, "b"), (3, "a")] {
            assert!(d.reserve(room, server));
            d.created(room, JsonMap::new());
        }
        assert_eq!(d.servers(), ["a", "b"]);
        assert_eq!(d.server_lost("a").len(), 2);
        assert_eq!(d.whereabouts(1), Whereabouts::Unplaced);
        assert_eq!(d.servers(), ["b"]);
        assert_eq!(d.place(1, "b").as_deref(), Some("b"));
        assert_eq!(d.place(1, "c").as_deref(), Some("b"));
        assert_eq!(
            d.whereabouts(1),
            Whereabouts::On {
                server: "b".into(),
                ready: false
            }
        );
        d.mark_ready(1, "c");
        assert!(!matches!(
            d.whereabouts(1),
            Whereabouts::On { ready: true, .. }
        ));
        d.mark_ready(1, "b");
        assert!(matches!(
            d.whereabouts(1),
            Whereabouts::On { ready: true, .. }
        ));
        d.unplace(1, "c");
        assert!(matches!(d.whereabouts(1), Whereabouts::On { .. }));
        d.unplace(1, "b");
        assert_eq!(d.whereabouts(1), Whereabouts::Unplaced);
        d.remove(1);
        assert_eq!(d.whereabouts(1), Whereabouts::Unknown);
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn edits_and_tokens_are_kept_for_recreation() {
        let mut d = RoomBook::default();
        d.reserve(1, "a");
        d.created(1, map(json!({"room": 1, "secret": "s", "pin": "p"})));
        d.edited(
            1,
            &map(json!({"new_secret": "t", "new_pin": "", "new_description": "D"})),
        );
        let c = d.config(1).unwrap_or_default();
        assert_eq!(c.get("secret"), Some(&json!("t")));
        assert_eq!(c.get("pin"), None);
        assert_eq!(c.get("description"), Some(&json!("D")));
        d.allowed(1, &map(json!({"action": "add", "allowed": ["x", "y"]})));
        d.allowed(1, &map(json!({"action": "remove", "allowed": ["x"]})));
        assert_eq!(
            d.config(1).unwrap_or_default().get("allowed"),
            Some(&json!(["y"]))
        );
        d.allowed(1, &map(json!({"action": "disable"})));
        assert_eq!(d.config(1).unwrap_or_default().get("allowed"), None);
        d.allowed(1, &map(json!({"action": "enable"})));
        assert_eq!(
            d.config(1).unwrap_or_default().get("allowed"),
            Some(&json!([]))
        );
    }

    #[test]
    fn the_shared_store_is_the_authority_except_for_fresh_local_changes() {
        let record = |id: u64, server: Option<&str>| RoomRecord {
            id,
            settings: JsonMap::from_iter([("description".to_owned(), Value::from("x"))]),
            creator: "other".into(),
            permanent: true,
            origin: RoomOrigin::Permanent,
            server: server.map(str::to_owned),
        };
        let mut d = RoomBook::default();
        d.add_unplaced(1, JsonMap::new());
        d.add_unplaced(2, JsonMap::new());
        assert!(d.reserve(3, "j1"), "a create in progress");
        d.place(1, "j1");
        d.mark_ready(1, "j1");
        d.apply_shared(&[record(1, Some("j1")), record(4, Some("j2"))], &|_| false);
        assert!(d.contains(1) && !d.contains(2) && d.contains(3) && d.contains(4));
        assert_eq!(
            d.whereabouts(1),
            Whereabouts::On {
                server: "j1".into(),
                ready: true
            }
        );
        assert_eq!(
            d.whereabouts(4),
            Whereabouts::On {
                server: "j2".into(),
                ready: false
            }
        );
        assert_eq!(d.record(4), Some(record(4, Some("j2"))));
        assert_eq!(d.record(3), None, "not shared while being created");
        d.apply_shared(&[record(1, None)], &|id| id == 4);
        assert_eq!(d.whereabouts(1), Whereabouts::Unplaced);
        assert!(d.contains(4), "changed here since the round began");
        assert!(d.set_placement(1, "j2"));
        assert_eq!(
            d.whereabouts(1),
            Whereabouts::On {
                server: "j2".into(),
                ready: false
            }
        );
    }
}
