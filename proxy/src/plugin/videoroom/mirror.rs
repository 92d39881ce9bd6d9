//! Spanning rooms: the plan for a room that spans several backends (carried out by
//! [`super::coordinator::RoomCoordinator`]). Every publisher whose PeerConnection is up on its
//! server is *mirrored* into the room's backend room on every other server with Janus
//! 1.1.2's remote publishers —
//! `add_remote_publisher` on the target (same id, display and streams; Janus announces it to
//! the target's participants at once and answers the `port`/`rtcp_port` to send to), then
//! `publish_remotely` on the source (the RTP goes there). So every backend room holds every
//! publisher with the same id, each participant sees one consistent room from its own
//! backend's events, and a subscriber on any server subscribes to any feed by its id.
//!
//! [`RoomMirror`] is the plain-struct state machine of one room: fed what happens (servers
//! added and lost, publishers active, updated, gone, remote publishers added), it says which
//! backend requests to make ([`MirrorOp`]). Verified against Janus 1.1.2: a remote publisher
//! is listed by `listparticipants` with `"remote": true` (the proxy must drop that key), is
//! subscribable before media arrives, and `remove_remote_publisher` tells the target's
//! participants `leaving` (not `unpublished`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

/// A backend request the room needs.
#[derive(Debug, Clone, PartialEq)]
pub enum MirrorOp {
    /// `add_remote_publisher {room, id, display, streams}` on `target`; its answer goes to
    /// [`RoomMirror::remote_added`] (or [`RoomMirror::remote_failed`]).
    AddRemote {
        target: String,
        publisher: u64,
        display: Option<String>,
        streams: Value,
    },
    /// `publish_remotely {room, publisher_id, remote_id: target, host, port, rtcp_port}` on
    /// `source`.
    PublishRemotely {
        source: String,
        target: String,
        publisher: u64,
        port: u16,
        rtcp_port: u16,
    },
    /// `update_remote_publisher {room, id, display, streams}` on `target`.
    UpdateRemote {
        target: String,
        publisher: u64,
        display: Option<String>,
        streams: Value,
    },
    /// `unpublish_remotely {room, publisher_id, remote_id: target}` on `source`.
    UnpublishRemotely {
        source: String,
        target: String,
        publisher: u64,
    },
    /// `remove_remote_publisher {room, id}` on `target`.
    RemoveRemote { target: String, publisher: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Remote {
    /// `add_remote_publisher` sent, no answer yet.
    Adding,
    /// Added and published to.
    Live,
}

#[derive(Debug, Clone)]
struct Publisher {
    server: String,
    display: Option<String>,
    streams: Value,
    remotes: BTreeMap<String, Remote>,
}

#[derive(Debug, Default)]
pub struct RoomMirror {
    /// Servers the room has a backend room on.
    servers: BTreeSet<String>,
    /// Active publishers (PeerConnection up), by id.
    publishers: BTreeMap<u64, Publisher>,
}

impl RoomMirror {
    pub fn servers(&self) -> impl Iterator<Item = &String> {
        self.servers.iter()
    }

    /// Active publishers on `server`.
    pub fn publishers_on(&self, server: &str) -> usize {
        self.publishers
            .values()
            .filter(|p| p.server == server)
            .count()
    }

    /// The room got a backend room on `server`: every active publisher elsewhere is
    /// mirrored there.
    pub fn server_added(&mut self, server: &str) -> Vec<MirrorOp> {
        if !self.servers.insert(server.to_owned()) {
            return Vec::new();
        }
        let mut ops = Vec::new();
        for (&id, p) in self.publishers.iter_mut() {
            if p.server != server {
                p.remotes.insert(server.to_owned(), Remote::Adding);
                ops.push(MirrorOp::AddRemote {
                    target: server.to_owned(),
                    publisher: id,
                    display: p.display.clone(),
                    streams: p.streams.clone(),
                });
            }
        }
        ops
    }

    /// `server` is gone: its publishers leave every other backend room, and publishers
    /// elsewhere stop sending there.
    pub fn server_lost(&mut self, server: &str) -> Vec<MirrorOp> {
        self.servers.remove(server);
        let mut ops = Vec::new();
        let gone: Vec<u64> = self
            .publishers
            .iter()
            .filter(|(_, p)| p.server == server)
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            if let Some(p) = self.publishers.remove(&id) {
                for (target, _) in p.remotes {
                    if target != server {
                        ops.push(MirrorOp::RemoveRemote {
                            target,
                            publisher: id,
                        });
                    }
                }
            }
        }
        for (&id, p) in self.publishers.iter_mut() {
            if p.remotes.remove(server) == Some(Remote::Live) {
                ops.push(MirrorOp::UnpublishRemotely {
                    source: p.server.clone(),
                    target: server.to_owned(),
                    publisher: id,
                });
            }
        }
        ops
    }

    /// Publisher `id` on `server` has its PeerConnection up with these streams: mirrored to
    /// every other server of the room. Already active: an update.
    pub fn publisher_active(
        &mut self,
        server: &str,
        id: u64,
        display: Option<String>,
        streams: Value,
    ) -> Vec<MirrorOp> {
        if self.publishers.get(&id).is_some_and(|p| p.server == server) {
            return self.publisher_updated(id, display, streams);
        }
        let mut p = Publisher {
            server: server.to_owned(),
            display,
            streams,
            remotes: BTreeMap::new(),
        };
        let mut ops = Vec::new();
        for target in self.servers.iter().filter(|s| s.as_str() != server) {
            p.remotes.insert(target.clone(), Remote::Adding);
            ops.push(MirrorOp::AddRemote {
                target: target.clone(),
                publisher: id,
                display: p.display.clone(),
                streams: p.streams.clone(),
            });
        }
        self.publishers.insert(id, p);
        ops
    }

    /// A renegotiation or a new display name: every mirror is updated.
    pub fn publisher_updated(
        &mut self,
        id: u64,
        display: Option<String>,
        streams: Value,
    ) -> Vec<MirrorOp> {
        let Some(p) = self.publishers.get_mut(&id) else {
            return Vec::new();
        };
        p.display = display;
        p.streams = streams;
        p.remotes
            .iter()
            .filter(|(_, r)| **r == Remote::Live)
            .map(|(target, _)| MirrorOp::UpdateRemote {
                target: target.clone(),
                publisher: id,
                display: p.display.clone(),
                streams: p.streams.clone(),
            })
            .collect()
    }

    /// The publisher unpublished, left or lost its PeerConnection: its mirrors go.
    pub fn publisher_gone(&mut self, id: u64) -> Vec<MirrorOp> {
        let Some(p) = self.publishers.remove(&id) else {
            return Vec::new();
        };
        let mut ops = Vec::new();
        for (target, remote) in p.remotes {
            if remote == Remote::Live {
                ops.push(MirrorOp::UnpublishRemotely {
                    source: p.server.clone(),
                    target: target.clone(),
                    publisher: id,
                });
            }
            // An `Adding` one is removed when its answer comes (see `remote_added`).
            if remote == Remote::Live {
                ops.push(MirrorOp::RemoveRemote {
                    target,
                    publisher: id,
                });
            }
        }
        ops
    }

    /// `add_remote_publisher` on `target` answered with the ports: the source sends there.
    /// If the publisher went away meanwhile, the remote publisher is removed again.
    pub fn remote_added(
        &mut self,
        target: &str,
        id: u64,
        port: u16,
        rtcp_port: u16,
    ) -> Vec<MirrorOp> {
        let live = self
            .publishers
            .get_mut(&id)
            .and_then(|p| p.remotes.get_mut(target).map(|r| (r, p.server.clone())));
        match live {
            Some((remote, source)) if *remote == Remote::Adding => {
                *remote = Remote::Live;
                vec![MirrorOp::PublishRemotely {
                    source,
                    target: target.to_owned(),
                    publisher: id,
                    port,
                    rtcp_port,
                }]
            }
            Some(_) => Vec::new(),
            None if self.servers.contains(target) => vec![MirrorOp::RemoveRemote {
                target: target.to_owned(),
                publisher: id,
            }],
            None => Vec::new(),
        }
    }

    /// `add_remote_publisher` on `target` found the id there already: a coordinator that took
    /// over the room from another proxy re-adds what that one had mirrored. The mirror is
    /// live (its source still sends there, as the previous coordinator asked it to).
    pub fn remote_exists(&mut self, target: &str, id: u64) {
        if let Some(r) = self
            .publishers
            .get_mut(&id)
            .and_then(|p| p.remotes.get_mut(target))
        {
            *r = Remote::Live;
        }
    }

    /// `add_remote_publisher` failed: that mirror is forgotten.
    pub fn remote_failed(&mut self, target: &str, id: u64) {
        if let Some(p) = self.publishers.get_mut(&id) {
            p.remotes.remove(target);
        }
    }
    /// The servers publisher `id` is mirrored to (added or being added).
    pub fn targets(&self, id: u64) -> Vec<String> {
        self.publishers
            .get(&id)
            .map(|p| p.remotes.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The servers publisher `id` is live on (added and published to), and its display name,
    /// if it is active.
    pub fn live(&self, id: u64) -> Option<(Vec<String>, Option<&str>)> {
        let p = self.publishers.get(&id)?;
        let live = p
            .remotes
            .iter()
            .filter(|(_, r)| **r == Remote::Live)
            .map(|(s, _)| s.clone())
            .collect();
        Some((live, p.display.as_deref()))
    }

    /// Whether feed `id` can be subscribed to on `server`: its own server, a mirror added
    /// there, or nothing to wait for (not an active publisher, or its mirror there failed).
    /// A mirror being added, or a server the plan has not heard of yet, is not ready.
    pub fn feed_ready(&self, id: u64, server: &str) -> bool {
        let Some(p) = self.publishers.get(&id) else {
            return true;
        };
        match p.remotes.get(server) {
            Some(remote) => *remote == Remote::Live,
            None => p.server == server || self.servers.contains(server),
        }
    }

    /// The mirrored publishers (added or being added) on each server.
    pub fn mirrors_per_server(&self) -> BTreeMap<String, usize> {
        let mut per_server = BTreeMap::new();
        for p in self.publishers.values() {
            for target in p.remotes.keys() {
                *per_server.entry(target.clone()).or_insert(0) += 1;
            }
        }
        per_server
    }

    /// Publisher `id` is active (its PeerConnection up), so its mirrors speak for it.
    pub fn is_active(&self, id: u64) -> bool {
        self.publishers.contains_key(&id)
    }

    pub fn is_empty(&self) -> bool {
        self.publishers.is_empty()
    }
}

/// Who is in a room that spans servers: every client handle joined as a participant
/// (`ptype: publisher`, with or without media), by client handle id. Janus tells the
/// participants of its own server about the others' joins, leaves and kicks; the mirrors
/// carry that only for publishers whose PeerConnection is up. For the others the proxy says
/// it itself, to the participants of the room's other servers, in Janus's words
/// ([`Notice`]s; the coordinator delivers them).
#[derive(Debug)]
pub struct Roster {
    room: u64,
    members: BTreeMap<u64, Member>,
}

#[derive(Debug, Clone)]
struct Member {
    server: String,
    id: u64,
    display: Option<String>,
}

/// A videoroom event (plugin data) for some participant handles.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub to: Vec<u64>,
    pub data: Value,
}

impl Roster {
    pub fn new(room: u64) -> Self {
        Roster {
            room,
            members: BTreeMap::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The publisher id of participant `handle`.
    pub fn member_id(&self, handle: u64) -> Option<u64> {
        self.members.get(&handle).map(|m| m.id)
    }

    /// Is publisher id `id` a participant?
    pub fn has_id(&self, id: u64) -> bool {
        self.members.values().any(|m| m.id == id)
    }

    /// Every participant: handle, server, publisher id, display name.
    pub fn members(&self) -> impl Iterator<Item = (u64, &str, u64, Option<&str>)> {
        self.members
            .iter()
            .map(|(&h, m)| (h, m.server.as_str(), m.id, m.display.as_deref()))
    }

    /// Handles of the participants on `servers`.
    pub fn on(&self, servers: &[String]) -> Vec<u64> {
        self.members
            .iter()
            .filter(|(_, m)| servers.contains(&m.server))
            .map(|(&h, _)| h)
            .collect()
    }

    /// Handles of the participants not on `server`.
    fn elsewhere(&self, server: &str) -> Vec<u64> {
        self.members
            .iter()
            .filter(|(_, m)| m.server != server)
            .map(|(&h, _)| h)
            .collect()
    }

    /// `{"id": .., "display": ..}` as Janus lists a participant (`joining`, `attendees`).
    fn entry(m: &Member) -> Value {
        let mut e = serde_json::Map::new();
        e.insert("id".into(), m.id.into());
        if let Some(d) = &m.display {
            e.insert("display".into(), d.clone().into());
        }
        Value::Object(e)
    }

    /// Participant `handle` (publisher id `id`) joined on `server`. Returns the `joining`
    /// notice for the participants elsewhere (only if the room has `notify_joining`, as
    /// Janus) and the attendees elsewhere for the newcomer's `joined` (the participants not
    /// `active`, that is without a mirror on its server).
    pub fn joined(
        &mut self,
        handle: u64,
        server: &str,
        id: u64,
        display: Option<String>,
        notify_joining: bool,
        active: impl Fn(u64) -> bool,
    ) -> (Option<Notice>, Vec<Value>) {
        let attendees = self
            .members
            .values()
            .filter(|m| m.server != server && !active(m.id))
            .map(Self::entry)
            .collect();
        let member = Member {
            server: server.to_owned(),
            id,
            display,
        };
        let notice = notify_joining.then(|| Notice {
            to: self.elsewhere(server),
            data: json!({"videoroom": "event", "room": self.room,
                "joining": Self::entry(&member)}),
        });
        self.members.insert(handle, member);
        (notice.filter(|n| !n.to.is_empty()), attendees)
    }

    /// Participant `handle` left (`kicked`: by a `kick`). Its publisher id, and the notice
    /// for the participants elsewhere: `leaving` (or `kicked`) as Janus says it, unless
    /// `mirrored` (the mirror's removal says it then).
    pub fn left(
        &mut self,
        handle: u64,
        kicked: bool,
        mirrored: bool,
    ) -> Option<(u64, Option<Notice>)> {
        let m = self.members.remove(&handle)?;
        let key = if kicked { "kicked" } else { "leaving" };
        let to = self.elsewhere(&m.server);
        let notice = (!mirrored && !to.is_empty()).then(|| Notice {
            to,
            data: json!({"videoroom": "event", "room": self.room, key: m.id}),
        });
        Some((m.id, notice))
    }

    /// `server` is lost with its participants: those not `active` (mirrored) are seen
    /// leaving by the participants elsewhere.
    pub fn server_lost(&mut self, server: &str, active: impl Fn(u64) -> bool) -> Vec<Notice> {
        let gone: Vec<u64> = self
            .members
            .iter()
            .filter(|(_, m)| m.server == server)
            .map(|(&h, _)| h)
            .collect();
        let mut ids = Vec::new();
        for h in gone {
            if let Some(m) = self.members.remove(&h) {
                ids.push(m.id);
            }
        }
        let to = self.elsewhere(server);
        if to.is_empty() {
            return Vec::new();
        }
        ids.into_iter()
            .filter(|&id| !active(id))
            .map(|id| Notice {
                to: to.clone(),
                data: json!({"videoroom": "event", "room": self.room, "leaving": id}),
            })
            .collect()
    }
}

/// Where a new publisher of a room goes, with room affinity: the room's server with the
/// fewest active publishers while it has fewer than `per_backend`, else a new server
/// (`None`: ask the registry for one the room does not use yet).
pub fn publisher_server(mirror: &RoomMirror, per_backend: usize) -> Option<String> {
    mirror
        .servers()
        .map(|s| (mirror.publishers_on(s), s))
        .filter(|(n, _)| *n < per_backend.max(1))
        .min_by_key(|(n, _)| *n)
        .map(|(_, s)| s.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn streams() -> Value {
        json!([{"type": "audio", "mindex": 0, "mid": "0", "codec": "opus"}])
    }

    fn add(target: &str, publisher: u64) -> MirrorOp {
        MirrorOp::AddRemote {
            target: target.into(),
            publisher,
            display: Some(format!("p{publisher}")),
            streams: streams(),
        }
    }

    #[test]
    fn a_feed_is_ready_for_a_subscriber_once_mirrored_there() {
        let mut m = RoomMirror::default();
        m.server_added("a");
        m.publisher_active("a", 1, Some("p1".into()), streams());
        // Not active: nothing to wait for (Janus answers); on its own server: ready.
        assert!(m.feed_ready(9, "b") && m.feed_ready(1, "a"));
        // A server the plan has not heard of yet: its mirror is to come.
        assert!(!m.feed_ready(1, "b"));
        assert_eq!(m.server_added("b"), [add("b", 1)]);
        assert!(!m.feed_ready(1, "b"), "being added");
        assert_eq!(m.mirrors_per_server(), [("b".to_owned(), 1)].into());
        m.remote_added("b", 1, 10000, 10001);
        assert!(m.feed_ready(1, "b"));
        // A failed mirror: nothing more to wait for.
        m.server_added("c");
        m.remote_failed("c", 1);
        assert!(m.feed_ready(1, "c"));
        // A server that leaves the room takes its mirrors with it.
        m.server_lost("b");
        assert!(m.mirrors_per_server().is_empty());
    }

    #[test]
    fn publishers_are_mirrored_to_every_other_server() {
        let mut m = RoomMirror::default();
        assert!(m.server_added("a").is_empty());
        assert!(m.server_added("b").is_empty());
        assert!(m.server_added("b").is_empty(), "added once");
        let ops = m.publisher_active("a", 1, Some("p1".into()), streams());
        assert_eq!(ops, [add("b", 1)]);
        assert_eq!(
            m.remote_added("b", 1, 10000, 10001),
            [MirrorOp::PublishRemotely {
                source: "a".into(),
                target: "b".into(),
                publisher: 1,
                port: 10000,
                rtcp_port: 10001
            }]
        );
        // A duplicate answer changes nothing.
        assert!(m.remote_added("b", 1, 10000, 10001).is_empty());
        // A third server gets every publisher of the others.
        m.publisher_active("b", 2, Some("p2".into()), streams());
        let mut ops = m.server_added("c");
        ops.sort_by_key(|o| format!("{o:?}"));
        assert_eq!(ops, [add("c", 1), add("c", 2)]);
    }

    #[test]
    fn a_mirror_found_on_its_target_is_adopted_as_live() {
        let mut m = RoomMirror::default();
        m.server_added("a");
        m.server_added("b");
        assert_eq!(
            m.publisher_active("a", 1, Some("p1".into()), streams()),
            [add("b", 1)]
        );
        // The previous coordinator added it already (Janus: 436): live, nothing to send.
        m.remote_exists("b", 1);
        assert_eq!(m.live(1).map(|(l, _)| l), Some(vec!["b".to_owned()]));
        assert!(m.remote_added("b", 1, 1, 2).is_empty());
        // Its departure removes it like any other.
        assert_eq!(
            m.publisher_gone(1),
            [
                MirrorOp::UnpublishRemotely {
                    source: "a".into(),
                    target: "b".into(),
                    publisher: 1
                },
                MirrorOp::RemoveRemote {
                    target: "b".into(),
                    publisher: 1
                }
            ]
        );
    }

    #[test]
    fn updates_and_departures_reach_the_live_mirrors() {
        let mut m = RoomMirror::default();
        m.server_added("a");
        m.server_added("b");
        m.server_added("c");
        m.publisher_active("a", 1, Some("p1".into()), streams());
        m.remote_added("b", 1, 1, 2);
        // c has not answered yet: only b is updated.
        let ops = m.publisher_updated(1, Some("new".into()), json!([]));
        assert_eq!(
            ops,
            [MirrorOp::UpdateRemote {
                target: "b".into(),
                publisher: 1,
                display: Some("new".into()),
                streams: json!([])
            }]
        );
        let ops = m.publisher_gone(1);
        assert_eq!(
            ops,
            [
                MirrorOp::UnpublishRemotely {
                    source: "a".into(),
                    target: "b".into(),
                    publisher: 1
                },
                MirrorOp::RemoveRemote {
                    target: "b".into(),
                    publisher: 1
                }
            ]
        );
        // c answers late: its remote publisher is removed again.
        assert_eq!(
            m.remote_added("c", 1, 1, 2),
            [MirrorOp::RemoveRemote {
                target: "c".into(),
                publisher: 1
            }]
        );
        assert!(m.publisher_gone(1).is_empty());
    }

    #[test]
    fn a_lost_server_takes_its_publishers_out_of_the_others() {
        let mut m = RoomMirror::default();
        for s in ["a", "b", "c"] {
            m.server_added(s);
        }
        m.publisher_active("a", 1, None, streams());
        m.publisher_active("b", 2, None, streams());
        for (target, id) in [("b", 1), ("c", 1), ("a", 2), ("c", 2)] {
            m.remote_added(target, id, 1, 2);
        }
        let mut ops = m.server_lost("a");
        ops.sort_by_key(|o| format!("{o:?}"));
        assert_eq!(
            ops,
            [
                MirrorOp::RemoveRemote {
                    target: "b".into(),
                    publisher: 1
                },
                MirrorOp::RemoveRemote {
                    target: "c".into(),
                    publisher: 1
                },
                MirrorOp::UnpublishRemotely {
                    source: "b".into(),
                    target: "a".into(),
                    publisher: 2
                },
            ]
        );
        assert_eq!(m.publishers_on("a"), 0);
        assert_eq!(m.servers().count(), 2);
        // Publisher 2 is still mirrored to c only.
        assert_eq!(
            m.publisher_gone(2),
            [
                MirrorOp::UnpublishRemotely {
                    source: "b".into(),
                    target: "c".into(),
                    publisher: 2
                },
                MirrorOp::RemoveRemote {
                    target: "c".into(),
                    publisher: 2
                }
            ]
        );
    }

    #[test]
    fn affinity_fills_a_server_before_using_another() {
        let mut m = RoomMirror::default();
        assert_eq!(publisher_server(&m, 2), None, "no server yet");
        m.server_added("a");
        assert_eq!(publisher_server(&m, 2).as_deref(), Some("a"));
        m.publisher_active("a", 1, None, streams());
        assert_eq!(publisher_server(&m, 2).as_deref(), Some("a"));
        m.publisher_active("a", 2, None, streams());
        assert_eq!(publisher_server(&m, 2), None, "a is full: a new server");
        m.server_added("b");
        assert_eq!(publisher_server(&m, 2).as_deref(), Some("b"));
        m.publisher_gone(1);
        // The least-filled server with room left.
        m.publisher_active("b", 3, None, streams());
        assert_eq!(publisher_server(&m, 2).as_deref(), Some("a"));
    }
    #[test]
    fn the_roster_tells_the_other_servers_what_janus_tells_its_own() {
        let mut r = Roster::new(7);
        let none = |_: u64| false;
        // alice on a: nobody to tell yet.
        let (n, att) = r.joined(10, "a", 1, Some("alice".into()), true, none);
        assert_eq!((n, att), (None, vec![]));
        // bob on a too: Janus tells alice itself; carol on b: alice and bob are told by the
        // proxy, and carol's `joined` gets them as attendees.
        assert_eq!(r.joined(11, "a", 2, None, true, none).0, None);
        let (n, att) = r.joined(12, "b", 3, Some("carol".into()), true, none);
        assert_eq!(
            n,
            Some(Notice {
                to: vec![10, 11],
                data: json!({"videoroom": "event", "room": 7,
                    "joining": {"id": 3, "display": "carol"}})
            })
        );
        assert_eq!(
            att,
            vec![json!({"id": 1, "display": "alice"}), json!({"id": 2})]
        );
        // Without notify_joining Janus says nothing of a join.
        assert_eq!(r.joined(13, "b", 4, None, false, |id| id == 1).0, None);
        // A mirrored publisher is not an attendee.
        let (_, att) = r.joined(14, "c", 5, None, false, |id| id == 1);
        assert_eq!(att.len(), 3);
        // Leaving without a mirror: told elsewhere; kicked says so; mirrored: the mirror's
        // removal says it.
        let (id, n) = r.left(11, false, false).unwrap();
        assert_eq!(id, 2);
        assert_eq!(
            n.unwrap(),
            Notice {
                to: vec![12, 13, 14],
                data: json!({"videoroom": "event", "room": 7, "leaving": 2})
            }
        );
        let (_, n) = r.left(12, true, false).unwrap();
        assert_eq!(
            n.unwrap().data,
            json!({"videoroom": "event", "room": 7, "kicked": 3})
        );
        assert_eq!(r.left(10, false, true).unwrap().1, None);
        assert_eq!(r.left(10, false, false), None);
        // Server b lost: its participant (4) leaves for c.
        assert_eq!(
            r.server_lost("b", none),
            vec![Notice {
                to: vec![14],
                data: json!({"videoroom": "event", "room": 7, "leaving": 4})
            }]
        );
        assert_eq!(r.on(&["c".to_owned()]), vec![14]);
        assert!(!r.is_empty());
        r.left(14, false, false);
        assert!(r.is_empty());
    }
}
