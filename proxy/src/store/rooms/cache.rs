//! This proxy's copy of the shared rooms and their participants, as last read from Redis, and
//! what the plugins' locals get from it: a plain struct, without I/O, unit-tested.
//!
//! The copy is whole after a resync and kept current by the change feed (each notice about a
//! room or its participants makes the store read that key again and hand it here). Participants
//! of proxies that are not alive do not count.

use std::collections::{HashMap, HashSet};

use super::{ParticipantRecord, RoomKind, RoomRecord};

/// One participant entry of a room's hash: the field (`<proxy>:<handle>`) and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub proxy: String,
    pub handle: Option<u64>,
    pub record: ParticipantRecord,
}

impl Entry {
    /// An entry from its field and value; None for something else.
    pub fn parse(field: &str, raw: &str) -> Option<Entry> {
        let (proxy, record) = super::parse_participant(raw)?;
        let handle = field.rsplit_once(':').and_then(|(_, h)| h.parse().ok());
        Some(Entry {
            proxy,
            handle,
            record,
        })
    }
}

#[derive(Debug, Default)]
pub struct RoomCache {
    rooms: HashMap<(RoomKind, u64), RoomRecord>,
    participants: HashMap<(RoomKind, u64), Vec<Entry>>,
    /// The live proxies (participants of others do not count); None: not known yet, all count.
    alive: Option<HashSet<String>>,
    /// This proxy (its own participants are the handles', not counted as remote).
    me: String,
}

impl RoomCache {
    pub fn new(me: &str) -> RoomCache {
        RoomCache {
            me: me.to_owned(),
            ..RoomCache::default()
        }
    }

    /// A resync read every room of `kind` and their participants.
    pub fn replace(
        &mut self,
        kind: RoomKind,
        rooms: Vec<RoomRecord>,
        participants: HashMap<u64, Vec<Entry>>,
    ) {
        self.rooms.retain(|(k, _), _| *k != kind);
        self.participants.retain(|(k, _), _| *k != kind);
        for room in rooms {
            self.rooms.insert((kind, room.id), room);
        }
        for (id, entries) in participants {
            if self.rooms.contains_key(&(kind, id)) && !entries.is_empty() {
                self.participants.insert((kind, id), entries);
            }
        }
    }

    /// Room `id` as read again (None: gone, with its participants).
    pub fn set_room(&mut self, kind: RoomKind, id: u64, record: Option<RoomRecord>) {
        match record {
            Some(record) => {
                self.rooms.insert((kind, id), record);
            }
            None => {
                self.rooms.remove(&(kind, id));
                self.participants.remove(&(kind, id));
            }
        }
    }

    /// The participants of room `id` as read again.
    pub fn set_participants(&mut self, kind: RoomKind, id: u64, entries: Vec<Entry>) {
        if entries.is_empty() {
            self.participants.remove(&(kind, id));
        } else {
            self.participants.insert((kind, id), entries);
        }
    }

    /// The live proxies now; true if that changes who counts.
    pub fn set_alive(&mut self, alive: &HashSet<String>) -> bool {
        if self.alive.as_ref() == Some(alive) {
            return false;
        }
        self.alive = Some(alive.clone());
        true
    }

    /// Proxy `id` left: its participants stop counting.
    pub fn proxy_gone(&mut self, id: &str) -> bool {
        match &mut self.alive {
            Some(alive) => alive.remove(id),
            None => false,
        }
    }

    pub fn room(&self, kind: RoomKind, id: u64) -> Option<&RoomRecord> {
        self.rooms.get(&(kind, id))
    }

    /// Every room of `kind`.
    pub fn rooms(&self, kind: RoomKind) -> Vec<RoomRecord> {
        let mut rooms: Vec<RoomRecord> = self
            .rooms
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|(_, r)| r.clone())
            .collect();
        rooms.sort_by_key(|r| r.id);
        rooms
    }

    pub fn ids(&self, kind: RoomKind) -> HashSet<u64> {
        self.rooms
            .keys()
            .filter(|(k, _)| *k == kind)
            .map(|(_, id)| *id)
            .collect()
    }

    fn counts(&self, entry: &Entry) -> bool {
        entry.proxy != self.me
            && self
                .alive
                .as_ref()
                .is_none_or(|alive| alive.contains(&entry.proxy))
    }

    /// The participants of room `id` on other live proxies (videoroom subscribers left out:
    /// they only keep a room from expiring, which the store itself checks).
    pub fn remote(&self, kind: RoomKind, id: u64) -> Vec<ParticipantRecord> {
        self.participants
            .get(&(kind, id))
            .into_iter()
            .flatten()
            .filter(|e| self.counts(e) && !e.record.subscriber)
            .map(|e| e.record.clone())
            .collect()
    }

    /// Entries of this proxy in the rooms of `kind` whose handle `own` does not know: left
    /// over from an earlier run with the same proxy id. (room, field) pairs to delete.
    pub fn leftovers(&self, kind: RoomKind, own: impl Fn(u64, u64) -> bool) -> Vec<(u64, u64)> {
        let mut stale = Vec::new();
        for ((k, room), entries) in &self.participants {
            if *k != kind {
                continue;
            }
            for entry in entries {
                if entry.proxy != self.me {
                    continue;
                }
                match entry.handle {
                    Some(handle) if !own(*room, handle) => stale.push((*room, handle)),
                    _ => {}
                }
            }
        }
        stale.sort_unstable();
        stale
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use janus_protocol::JsonMap;
    use serde_json::json;

    fn room(id: u64) -> RoomRecord {
        RoomRecord {
            id,
            settings: JsonMap::new(),
            creator: "two".into(),
            permanent: false,
            origin: Default::default(),
            server: Some("j1".into()),
        }
    }

    fn entry(proxy: &str, handle: u64, id: u64) -> Entry {
        Entry {
            proxy: proxy.into(),
            handle: Some(handle),
            record: ParticipantRecord {
                id: json!(id),
                display: None,
                server: "j1".into(),
                subscriber: false,
            },
        }
    }

    const V: RoomKind = RoomKind::VideoRoom;
    const A: RoomKind = RoomKind::AudioBridge;

    #[test]
    fn a_resync_replaces_one_kind_and_changes_apply_one_room() {
        let mut cache = RoomCache::new("me");
        cache.replace(A, vec![room(9)], HashMap::new());
        cache.replace(
            V,
            vec![room(1), room(2)],
            HashMap::from([
                (1, vec![entry("two", 5, 50)]),
                (3, vec![entry("two", 6, 60)]),
            ]),
        );
        assert_eq!(cache.ids(V), HashSet::from([1, 2]));
        assert_eq!(cache.ids(A), HashSet::from([9]));
        // Participants of a room that is not there are not kept.
        assert!(cache.remote(V, 3).is_empty());
        assert_eq!(cache.remote(V, 1).len(), 1);
        cache.set_room(V, 1, None);
        assert!(cache.room(V, 1).is_none());
        assert!(cache.remote(V, 1).is_empty());
        cache.set_room(V, 4, Some(room(4)));
        cache.set_participants(V, 4, vec![entry("me", 1, 10), entry("two", 2, 20)]);
        // Own participants are not remote.
        assert_eq!(cache.remote(V, 4).len(), 1);
        assert_eq!(
            cache.rooms(V).iter().map(|r| r.id).collect::<Vec<_>>(),
            [2, 4]
        );
    }

    #[test]
    fn only_live_proxies_count() {
        let mut cache = RoomCache::new("me");
        cache.replace(
            V,
            vec![room(1)],
            HashMap::from([(1, vec![entry("two", 1, 10), entry("three", 2, 20)])]),
        );
        // Liveness unknown: everyone counts.
        assert_eq!(cache.remote(V, 1).len(), 2);
        assert!(cache.set_alive(&HashSet::from(["me".into(), "two".into()])));
        assert!(!cache.set_alive(&HashSet::from(["me".into(), "two".into()])));
        assert_eq!(cache.remote(V, 1).len(), 1);
        assert!(cache.proxy_gone("two"));
        assert!(!cache.proxy_gone("two"));
        assert!(cache.remote(V, 1).is_empty());
    }

    #[test]
    fn an_earlier_runs_entries_are_found() {
        let mut cache = RoomCache::new("me");
        cache.replace(
            V,
            vec![room(1), room(2)],
            HashMap::from([
                (
                    1,
                    vec![entry("me", 7, 70), entry("me", 8, 80), entry("two", 7, 1)],
                ),
                (2, vec![entry("me", 9, 90)]),
            ]),
        );
        assert_eq!(
            cache.leftovers(V, |room, handle| room == 1 && handle == 7),
            [(1, 8), (2, 9)]
        );
        assert!(cache.leftovers(A, |_, _| false).is_empty());
    }

    #[test]
    fn entries_are_parsed_from_their_field_and_value() {
        let e = Entry::parse(
            "two:42",
            r#"{"id":7,"display":"x","proxy":"two","server":"j2"}"#,
        )
        .expect("entry");
        assert_eq!(e.proxy, "two");
        assert_eq!(e.handle, Some(42));
        assert_eq!(e.record.server, "j2");
        assert!(Entry::parse("two:1", "garbage").is_none());
    }
}
