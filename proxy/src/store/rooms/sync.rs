//! Keeping the locals in step with Redis: the whole read of a resync, the read again of
//! the rooms that notices name, liveness, the rewrite after a gap, and the clean-up after a
//! dead proxy. Called by the store's follow task (one at a time) and sync round.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Instant;

use super::cache::Entry;
use super::{parse_room, RoomKind, RoomRecord, RoomStore};
use crate::store::conn::Failed;
use crate::store::scripts;

/// Rooms read per pipeline.
const CHUNK: usize = 128;

impl RoomStore {
    /// Rooms missing from Redis are not taken for destroyed for a heartbeat lifetime from now
    /// (after a gap other proxies may not have written theirs again yet).
    pub(crate) fn settle(&self) {
        *self.settling_until.lock() = Some(Instant::now() + self.settle);
    }

    /// Before the first recovery (start) and for a while after each.
    fn settling(&self) -> bool {
        self.settling_until
            .lock()
            .is_none_or(|until| Instant::now() < until)
    }

    /// A read that began at `started` may apply to room `id` (not changed here since, nor
    /// waiting to be written).
    fn keep(&self, kind: RoomKind, id: u64, started: Instant) -> bool {
        self.dirty.lock().contains(&(kind, id))
            || self
                .touched
                .lock()
                .get(&(kind, id))
                .is_some_and(|at| *at >= started)
    }

    fn forget_old_touches(&self) {
        let limit = self.interval * 4 + self.conn.timeout() * 4;
        self.touched.lock().retain(|_, at| at.elapsed() < limit);
    }

    /// Hands room `id` as cached to its book.
    fn apply_one(&self, kind: RoomKind, id: u64, keep: bool) {
        let Some(book) = self.local(kind) else {
            return;
        };
        let (record, remote) = {
            let cache = self.cache.lock();
            (cache.room(kind, id).cloned(), cache.remote(kind, id))
        };
        book.apply_room(id, record.as_ref(), remote.len(), keep);
        book.apply_feeds(id, &remote);
    }

    /// Reads every room (through the index) and its participants, in chunks.
    async fn read_kind(
        &self,
        kind: RoomKind,
    ) -> Result<(Vec<RoomRecord>, HashMap<u64, Vec<Entry>>), Failed> {
        let mut members = redis::cmd("SMEMBERS");
        members.arg(self.keys.room_index(kind));
        let ids: Vec<String> = self.conn.query("room index", &members).await?;
        let ids: BTreeSet<u64> = ids.iter().filter_map(|s| s.parse().ok()).collect();
        let ids: Vec<u64> = ids.into_iter().collect();
        let mut rooms = Vec::with_capacity(ids.len());
        let mut participants = HashMap::new();
        let mut missing = Vec::new();
        for chunk in ids.chunks(CHUNK) {
            let (found, entries, gone) = self.read_rooms(kind, chunk, true).await?;
            rooms.extend(found);
            participants.extend(entries);
            missing.extend(gone);
        }
        if !missing.is_empty() {
            // Destroyed without its index entry removed (written by an older proxy): tidy.
            let mut srem = redis::cmd("SREM");
            srem.arg(self.keys.room_index(kind)).arg(&missing);
            self.conn.query::<i64>("room index", &srem).await?;
        }
        Ok((rooms, participants))
    }

    /// Rooms `ids` (and, with `with_participants`, their participants) in one pipeline: the
    /// rooms found, the participants per room, the ids with no room.
    async fn read_rooms(
        &self,
        kind: RoomKind,
        ids: &[u64],
        with_participants: bool,
    ) -> Result<(Vec<RoomRecord>, HashMap<u64, Vec<Entry>>, Vec<u64>), Failed> {
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hgetall(self.keys.room(kind, *id));
            if with_participants {
                pipe.hgetall(self.keys.participants(kind, *id));
            }
        }
        let hashes: Vec<HashMap<String, String>> = self.conn.pipe("read rooms", &pipe).await?;
        let per_room = if with_participants { 2 } else { 1 };
        let mut rooms = Vec::new();
        let mut participants = HashMap::new();
        let mut missing = Vec::new();
        for (id, hashes) in ids.iter().zip(hashes.chunks(per_room)) {
            match parse_room(*id, &hashes[0]) {
                Some(room) => rooms.push(room),
                None if hashes[0].is_empty() => missing.push(*id),
                None => log::warn!(
                    "store: {} is not a room; ignored",
                    self.keys.room(kind, *id)
                ),
            }
            if let Some(entries) = hashes.get(1) {
                participants.insert(*id, parse_entries(entries));
            }
        }
        Ok((rooms, participants, missing))
    }

    async fn read_participants(
        &self,
        kind: RoomKind,
        ids: &[u64],
    ) -> Result<HashMap<u64, Vec<Entry>>, Failed> {
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hgetall(self.keys.participants(kind, *id));
        }
        let hashes: Vec<HashMap<String, String>> =
            self.conn.pipe("read participants", &pipe).await?;
        Ok(ids
            .iter()
            .zip(hashes)
            .map(|(id, hash)| (*id, parse_entries(&hash)))
            .collect())
    }

    /// A resync: every room and participant read again; the locals follow.
    pub(crate) async fn resync(&self) -> Result<(), Failed> {
        let started = Instant::now();
        let settling = self.settling();
        for kind in RoomKind::ALL {
            let Some(book) = self.local(kind) else {
                continue;
            };
            let (rooms, participants) = self.read_kind(kind).await?;
            let stale = {
                let mut cache = self.cache.lock();
                cache.replace(kind, rooms, participants);
                let own = self.participants.lock();
                cache.leftovers(kind, |room, handle| own.contains_key(&(kind, room, handle)))
            };
            if !settling {
                // Left over from an earlier run of this proxy (same `proxy_id`).
                for (room, handle) in stale {
                    let cmd =
                        self.participant_down_cmd(kind, room, &self.participant_field(handle));
                    self.conn.query::<i64>("participants", &cmd).await?;
                }
            }
            let ids = self.cache.lock().ids(kind);
            for id in &ids {
                self.apply_one(kind, *id, settling || self.keep(kind, *id, started));
            }
            // Rooms known here and not in the store: destroyed elsewhere (unless settling,
            // or changed here since the read began).
            for record in book.records() {
                if !ids.contains(&record.id) {
                    self.apply_one(
                        kind,
                        record.id,
                        settling || self.keep(kind, record.id, started),
                    );
                }
            }
        }
        self.forget_old_touches();
        Ok(())
    }

    /// Reads again the rooms and the participants that notices named; the locals follow.
    pub(crate) async fn reread(
        &self,
        rooms: &BTreeSet<(RoomKind, u64)>,
        participants: &BTreeSet<(RoomKind, u64)>,
    ) -> Result<(), Failed> {
        let started = Instant::now();
        let mut touched: BTreeSet<(RoomKind, u64)> = BTreeSet::new();
        for kind in RoomKind::ALL {
            if self.local(kind).is_none() {
                continue;
            }
            let ids: Vec<u64> = rooms
                .iter()
                .filter(|(k, _)| *k == kind)
                .map(|(_, id)| *id)
                .collect();
            for chunk in ids.chunks(CHUNK) {
                let (found, entries, missing) = self.read_rooms(kind, chunk, true).await?;
                let mut cache = self.cache.lock();
                for room in found {
                    let id = room.id;
                    cache.set_room(kind, id, Some(room));
                    cache.set_participants(kind, id, entries.get(&id).cloned().unwrap_or_default());
                }
                for id in missing {
                    cache.set_room(kind, id, None);
                }
                touched.extend(chunk.iter().map(|id| (kind, *id)));
            }
            let ids: Vec<u64> = participants
                .iter()
                .filter(|(k, id)| *k == kind && !rooms.contains(&(kind, *id)))
                .map(|(_, id)| *id)
                .collect();
            for chunk in ids.chunks(CHUNK) {
                let entries = self.read_participants(kind, chunk).await?;
                let mut cache = self.cache.lock();
                for (id, entries) in entries {
                    if cache.room(kind, id).is_some() {
                        cache.set_participants(kind, id, entries);
                    }
                }
                touched.extend(chunk.iter().map(|id| (kind, *id)));
            }
        }
        for (kind, id) in touched {
            // A notice is news of a change: applied unless changed here meanwhile (a room
            // missing now was destroyed, settling or not).
            self.apply_one(kind, id, self.keep(kind, id, started));
        }
        self.forget_old_touches();
        Ok(())
    }

    /// The live proxies now: the rooms whose counts change are handed on again.
    pub(crate) fn set_alive(&self, alive: &HashSet<String>) {
        if self.cache.lock().set_alive(alive) {
            self.recount();
        }
    }

    /// Proxy `id` left: its participants stop counting.
    pub(crate) fn proxy_gone(&self, id: &str) {
        if self.cache.lock().proxy_gone(id) {
            self.recount();
        }
    }

    fn recount(&self) {
        for kind in RoomKind::ALL {
            let ids = self.cache.lock().ids(kind);
            for id in ids {
                // Only the counts and feeds: the records are as they were.
                self.apply_one(kind, id, true);
            }
        }
    }

    /// After a gap: every local room written if absent, the rooms changed meanwhile as they
    /// are here (or deleted), and this proxy's participants.
    pub(crate) async fn recover(&self) -> Result<(), Failed> {
        self.settle();
        let dirty: Vec<(RoomKind, u64)> = self.dirty.lock().iter().copied().collect();
        for kind in RoomKind::ALL {
            let Some(book) = self.local(kind) else {
                continue;
            };
            for record in book.records() {
                if dirty.contains(&(kind, record.id)) {
                    continue;
                }
                let cmd = self.create_cmd(kind, &record, scripts::CREATE_ROOM);
                self.conn.query::<i64>("rewrite room", &cmd).await?;
            }
        }
        for (kind, id) in dirty {
            let record = self.local(kind).and_then(|d| d.record(id));
            let cmd = match record {
                Some(record) => self.create_cmd(kind, &record, scripts::REWRITE_ROOM),
                None => {
                    let (participants, index) =
                        (self.keys.participants(kind, id), self.keys.room_index(kind));
                    let mut cmd = self.room_eval(
                        scripts::DESTROY_ROOM,
                        kind,
                        id,
                        &[participants.as_str(), index.as_str()],
                        Self::room_change(kind, id),
                    );
                    cmd.arg(id);
                    cmd
                }
            };
            self.conn.query::<i64>("rewrite room", &cmd).await?;
            self.dirty.lock().remove(&(kind, id));
        }
        let participants = self.participants.lock().clone();
        for ((kind, room, handle), p) in participants {
            let cmd = self.participant_up_cmd(kind, room, handle, &p);
            self.conn.query::<i64>("rewrite participant", &cmd).await?;
        }
        Ok(())
    }
}

fn parse_entries(hash: &HashMap<String, String>) -> Vec<Entry> {
    let mut entries: Vec<Entry> = hash
        .iter()
        .filter_map(|(field, raw)| Entry::parse(field, raw))
        .collect();
    entries.sort_by(|a, b| (&a.proxy, a.handle).cmp(&(&b.proxy, b.handle)));
    entries
}
