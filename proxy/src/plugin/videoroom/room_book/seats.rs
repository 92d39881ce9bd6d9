//! Who sits where in a room that spans servers: this proxy's participant and subscriber
//! handles by server, counted from the moment their `join` is sent (so that joins sent at the
//! same instant see each other), and the mirrors each server carries (as the room's
//! coordinator last reported them). From them, where the next publisher or subscriber would
//! rather go ([`RoomBook::publisher_preference`], [`RoomBook::subscriber_preference`]: the
//! registry takes the first of those servers that has room, else spans the room to a new one)
//! and which servers no longer serve anyone ([`RoomBook::idle_servers`]).

use std::collections::BTreeMap;

use super::{Room, RoomBook};

/// A handle's seat: its server, and whether it joined as a publisher (a participant) or as a
/// subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    pub server: String,
    pub publisher: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Seats {
    /// By client handle id.
    pub by_handle: BTreeMap<u64, Seat>,
    /// Mirrored publishers per server (from the coordinator; empty without one).
    pub mirrors: BTreeMap<String, usize>,
}

/// A room's load on one server, for the admin API and the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSeats {
    pub server: String,
    /// This proxy's participants there, and other proxies' publishers (shared store).
    pub publishers: usize,
    pub mirrors: usize,
    /// This proxy's subscribers there.
    pub subscribers: usize,
}

impl Seats {
    fn count(&self, server: &str, publisher: bool) -> usize {
        self.by_handle
            .values()
            .filter(|s| s.server == server && s.publisher == publisher)
            .count()
    }

    /// Forgets the seats on `server` (lost, or left by the room).
    pub fn forget_server(&mut self, server: &str) {
        self.by_handle.retain(|_, s| s.server != server);
        self.mirrors.remove(server);
    }
}

impl RoomBook {
    /// Handle `handle` sent its `join` to room `id` on `server`.
    pub fn seat_taken(&mut self, id: u64, handle: u64, server: &str, publisher: bool) {
        if let Some(room) = self.rooms.get_mut(&id) {
            let seat = Seat {
                server: server.to_owned(),
                publisher,
            };
            room.seats.by_handle.insert(handle, seat);
        }
    }

    /// Handle `handle` is out of room `id` (its join refused, it left, its server is lost).
    pub fn seat_freed(&mut self, id: u64, handle: u64) {
        if let Some(room) = self.rooms.get_mut(&id) {
            room.seats.by_handle.remove(&handle);
        }
    }

    /// The mirrored publishers on each of room `id`'s servers (the coordinator's plan).
    pub fn set_mirrors(&mut self, id: u64, mirrors: BTreeMap<String, usize>) {
        if let Some(room) = self.rooms.get_mut(&id) {
            room.seats.mirrors = mirrors;
        }
    }

    /// Publishers of room `id` on `server`: this proxy's participants (joined or joining) and
    /// other proxies' publishers there.
    pub fn publishers_on(&self, id: u64, server: &str) -> usize {
        self.rooms.get(&id).map_or(0, |room| {
            room.seats.count(server, true)
                + room.remote_feeds.values().filter(|s| **s == server).count()
        })
    }

    /// This proxy's subscribers of room `id` on `server` (joined or joining).
    pub fn subscribers_on(&self, id: u64, server: &str) -> usize {
        self.rooms
            .get(&id)
            .map_or(0, |room| room.seats.count(server, false))
    }

    /// Where a publisher of room `id` would rather go: the room's servers with fewer than
    /// `limit` publishers (0: no limit), fewest first (ties in the room's order, so a small
    /// room stays on its first server).
    pub fn publisher_preference(&self, id: u64, limit: usize) -> Vec<String> {
        let mut servers: Vec<(usize, usize, String)> = self
            .servers(id)
            .into_iter()
            .enumerate()
            .map(|(i, s)| (self.publishers_on(id, &s), i, s))
            .filter(|(n, _, _)| limit == 0 || *n < limit)
            .collect();
        servers.sort();
        servers.into_iter().map(|(_, _, s)| s).collect()
    }

    /// Where a subscriber of room `id` would rather go, among the room's servers with fewer
    /// than `limit` subscribers (0: no limit): its own participant's server (`own`), then the
    /// server of the feed it names first (`feed`), then the others with the fewest
    /// subscribers first. Every active publisher is mirrored to every server of the room, so
    /// each of them carries the feed.
    pub fn subscriber_preference(
        &self,
        id: u64,
        own: Option<String>,
        feed: Option<u64>,
        limit: usize,
    ) -> Vec<String> {
        let has_seat = |s: &String| limit == 0 || self.subscribers_on(id, s) < limit;
        let servers = self.servers(id);
        let mut preferred: Vec<String> = Vec::new();
        let feed_server = feed.and_then(|f| self.feed_server(id, f));
        for s in [own, feed_server].into_iter().flatten() {
            if servers.contains(&s) && has_seat(&s) && !preferred.contains(&s) {
                preferred.push(s);
            }
        }
        let mut others: Vec<(usize, usize, String)> = servers
            .into_iter()
            .enumerate()
            .filter(|(_, s)| has_seat(s) && !preferred.contains(s))
            .map(|(i, s)| (self.subscribers_on(id, &s), i, s))
            .collect();
        others.sort();
        preferred.extend(others.into_iter().map(|(_, _, s)| s));
        preferred
    }

    /// Room `id`'s servers other than its first (room-wide requests go there) where nobody
    /// of this proxy sits and no other proxy's publisher is.
    pub fn idle_servers(&self, id: u64) -> Vec<String> {
        let Some(room) = self.rooms.get(&id) else {
            return Vec::new();
        };
        room.servers
            .iter()
            .skip(1)
            .map(|p| &p.server)
            .filter(|s| !room.seats.by_handle.values().any(|seat| seat.server == **s))
            .filter(|s| !room.remote_feeds.values().any(|f| f == *s))
            .cloned()
            .collect()
    }

    /// Room `id` per server: publishers, mirrors, subscribers.
    pub fn seats_per_server(&self, id: u64) -> Vec<ServerSeats> {
        self.rooms
            .get(&id)
            .map(Room::per_server)
            .unwrap_or_default()
    }
}

impl Room {
    /// The room per server: publishers (this proxy's participants and other proxies'
    /// publishers), mirrors, this proxy's subscribers.
    pub fn per_server(&self) -> Vec<ServerSeats> {
        self.servers
            .iter()
            .map(|p| ServerSeats {
                server: p.server.clone(),
                publishers: self.seats.count(&p.server, true)
                    + self
                        .remote_feeds
                        .values()
                        .filter(|s| **s == p.server)
                        .count(),
                mirrors: self.seats.mirrors.get(&p.server).copied().unwrap_or(0),
                subscribers: self.seats.count(&p.server, false),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn book(servers: &[&str]) -> RoomBook {
        let mut d = RoomBook::default();
        let body = json!({"publishers": 10});
        d.create(1, body.as_object().expect("object"))
            .expect("room");
        for s in servers {
            if d.placement(1).is_none() {
                d.place(1, s);
            } else {
                d.add_server(1, s);
            }
        }
        d
    }

    #[test]
    fn publishers_fill_the_room_in_order_and_count_from_their_join() {
        let mut d = book(&["a", "b"]);
        assert_eq!(d.publisher_preference(1, 0), ["a", "b"]);
        // A join sent counts at once (two joins at the same instant see each other).
        d.seat_taken(1, 10, "a", true);
        assert_eq!(d.publisher_preference(1, 0), ["b", "a"]);
        assert_eq!(d.publisher_preference(1, 1), ["b"]);
        d.seat_taken(1, 11, "b", true);
        assert!(d.publisher_preference(1, 1).is_empty(), "both full");
        d.seat_freed(1, 10);
        assert_eq!(d.publisher_preference(1, 1), ["a"]);
        // Subscribers are not publishers.
        d.seat_taken(1, 12, "a", false);
        assert_eq!(d.publisher_preference(1, 1), ["a"]);
    }

    #[test]
    fn a_subscriber_prefers_its_own_server_then_the_feed_then_the_emptiest() {
        let mut d = book(&["a", "b", "c"]);
        d.publisher_joined(1, 10, "b", 500);
        d.seat_taken(1, 10, "b", true);
        d.seat_taken(1, 20, "a", false);
        d.seat_taken(1, 21, "a", false);
        d.seat_taken(1, 22, "c", false);
        assert_eq!(
            d.subscriber_preference(1, Some("c".into()), Some(500), 0),
            ["c", "b", "a"]
        );
        assert_eq!(
            d.subscriber_preference(1, None, Some(500), 0),
            ["b", "c", "a"]
        );
        assert_eq!(d.subscriber_preference(1, None, None, 0), ["b", "c", "a"]);
        // At the limit a server takes no more: not even its own participant's subscriber.
        assert_eq!(
            d.subscriber_preference(1, Some("a".into()), None, 2),
            ["b", "c"]
        );
        // Unknown servers are not the room's.
        assert_eq!(d.subscriber_preference(1, Some("z".into()), None, 1), ["b"]);
    }

    #[test]
    fn idle_servers_are_those_nobody_uses_but_the_first_never() {
        let mut d = book(&["a", "b", "c"]);
        assert_eq!(d.idle_servers(1), ["b", "c"]);
        d.seat_taken(1, 20, "b", false);
        assert_eq!(d.idle_servers(1), ["c"]);
        d.set_mirrors(1, [("b".to_owned(), 1), ("c".to_owned(), 1)].into());
        let per_server = d.seats_per_server(1);
        assert_eq!(
            per_server[1],
            ServerSeats {
                server: "b".into(),
                publishers: 0,
                mirrors: 1,
                subscribers: 1
            }
        );
        d.forget_placement(1, "b");
        assert_eq!(d.idle_servers(1), ["c"]);
        assert_eq!(d.subscribers_on(1, "b"), 0);
    }
}
