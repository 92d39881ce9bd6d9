//! What to do with a dead proxy's sessions: a plain function of what the store read and of
//! which plugins can rebuild a handle, tested without a runtime; the [`super::Adopter`] carries
//! it out.

use std::collections::{BTreeSet, HashSet};

use crate::messages::adoption::{AdoptDead, BackendSession, HandleRecord};

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Backend sessions to claim and hold: those with at least one handle to adopt.
    pub hold: Vec<BackendSession>,
    /// Backend sessions to destroy at once (nothing on them to adopt), as before adoption.
    pub reap: Vec<BackendSession>,
    /// The client sessions to rebuild, each with the handles to rebuild (on held sessions)
    /// and the ids of those it loses.
    pub sessions: Vec<(u64, Vec<HandleRecord>, Vec<u64>)>,
    /// Backend handles on held sessions that nobody adopts (proxy-side plugins' legs,
    /// handles whose client session is taken here already): detached once claimed, so that
    /// their peers are told at once, as before.
    pub detach: Vec<(String, u64)>,
}

/// The plan for `dead`; `adoptable(plugin)` says whether a plugin here can rebuild a handle;
/// `taken(session)` whether a client session id is in use here already.
pub fn plan(
    dead: &AdoptDead,
    adoptable: impl Fn(&str) -> bool,
    taken: impl Fn(u64) -> bool,
) -> Plan {
    let backend: HashSet<&str> = dead.backend.iter().map(|b| b.server.as_str()).collect();
    let mut sessions = Vec::new();
    let mut held_servers: BTreeSet<String> = BTreeSet::new();
    for (id, record) in &dead.sessions {
        if taken(*id) {
            log::warn!(
                "adopt: session {id} of proxy {} is in use here; not adopted",
                dead.proxy
            );
            continue;
        }
        let (handles, lost): (Vec<HandleRecord>, Vec<HandleRecord>) =
            record.handles.iter().cloned().partition(|h| {
                // A handle with no backend handle needs no backend session.
                let placed = h.backend_handle.is_none() || backend.contains(h.server.as_str());
                placed && adoptable(&h.plugin)
            });
        let bound = handles.iter().filter(|h| h.backend_handle.is_some());
        held_servers.extend(bound.map(|h| h.server.clone()));
        let mut lost: Vec<u64> = lost.iter().map(|h| h.id).collect();
        lost.extend(&record.others);
        sessions.push((*id, handles, lost));
    }
    let (hold, reap): (Vec<BackendSession>, Vec<BackendSession>) = dead
        .backend
        .iter()
        .cloned()
        .partition(|b| held_servers.contains(&b.server));
    let adopted: HashSet<(&str, u64)> = sessions
        .iter()
        .flat_map(|(_, handles, _)| handles.iter())
        .filter_map(|h| Some((h.server.as_str(), h.backend_handle?)))
        .collect();
    let detach = dead
        .held
        .iter()
        .filter(|(server, handle)| {
            held_servers.contains(server) && !adopted.contains(&(server.as_str(), *handle))
        })
        .cloned()
        .collect();
    Plan {
        hold,
        reap,
        sessions,
        detach,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::adoption::SessionRecord;

    fn backend(server: &str, session_id: u64) -> BackendSession {
        BackendSession {
            server: server.into(),
            url: format!("ws://{server}"),
            session_id,
        }
    }

    fn handle(id: u64, plugin: &str, server: &str, backend_handle: u64) -> HandleRecord {
        HandleRecord {
            id,
            plugin: plugin.into(),
            opaque_id: None,
            server: server.into(),
            backend_handle: Some(backend_handle),
            state: serde_json::Value::Null,
        }
    }

    /// A handle with no backend handle (only the plugin's state).
    fn unbound(id: u64, plugin: &str) -> HandleRecord {
        HandleRecord {
            id,
            plugin: plugin.into(),
            opaque_id: None,
            server: String::new(),
            backend_handle: None,
            state: serde_json::json!({"username": "alice"}),
        }
    }

    const ECHO: &str = "janus.plugin.echotest";
    const ROOM: &str = "janus.plugin.videoroom";

    #[test]
    fn relayed_handles_are_held_the_rest_detached_and_empty_servers_reaped() {
        let dead = AdoptDead {
            proxy: "p1".into(),
            backend: vec![backend("j1", 11), backend("j2", 22), backend("j3", 33)],
            sessions: vec![
                (
                    1,
                    SessionRecord {
                        handles: vec![handle(10, ECHO, "j1", 100), handle(11, ROOM, "j2", 200)],
                        others: vec![12],
                    },
                ),
                (2, SessionRecord::default()),
                // Its server is not among the dead proxy's backend sessions (a stale record).
                (
                    3,
                    SessionRecord {
                        handles: vec![handle(30, ECHO, "j9", 900)],
                        others: vec![],
                    },
                ),
                // Taken here already.
                (
                    4,
                    SessionRecord {
                        handles: vec![handle(40, ECHO, "j1", 400)],
                        others: vec![],
                    },
                ),
            ],
            held: vec![
                ("j1".into(), 100),
                ("j1".into(), 101), // a videoroom leg of the dead proxy's
                ("j1".into(), 400),
                ("j2".into(), 200),
                ("j3".into(), 300),
            ],
        };
        let p = plan(&dead, |plugin| plugin == ECHO, |id| id == 4);
        assert_eq!(p.hold, vec![backend("j1", 11)]);
        assert_eq!(p.reap, vec![backend("j2", 22), backend("j3", 33)]);
        assert_eq!(
            p.sessions,
            vec![
                (1, vec![handle(10, ECHO, "j1", 100)], vec![11, 12]),
                (2, vec![], vec![]),
                (3, vec![], vec![30]),
            ]
        );
        assert_eq!(
            p.detach,
            vec![("j1".to_owned(), 101), ("j1".to_owned(), 400)]
        );
    }

    #[test]
    fn nothing_adoptable_reaps_everything() {
        let dead = AdoptDead {
            proxy: "p1".into(),
            backend: vec![backend("j1", 11)],
            sessions: vec![(
                1,
                SessionRecord {
                    handles: vec![handle(10, ROOM, "j1", 100)],
                    others: vec![],
                },
            )],
            held: vec![("j1".into(), 100)],
        };
        let p = plan(&dead, |_| false, |_| false);
        assert!(p.hold.is_empty() && p.detach.is_empty());
        assert_eq!(p.reap, vec![backend("j1", 11)]);
        // The session itself is still claimed back (without the handle).
        assert_eq!(p.sessions, vec![(1, vec![], vec![10])]);
    }

    #[test]
    fn a_handle_without_a_backend_handle_is_kept_and_holds_no_backend_session() {
        const CALL: &str = "janus.plugin.videocall";
        let dead = AdoptDead {
            proxy: "p1".into(),
            backend: vec![backend("j1", 11), backend("j2", 22)],
            sessions: vec![
                (
                    1,
                    SessionRecord {
                        handles: vec![unbound(10, CALL), unbound(11, ROOM)],
                        others: vec![],
                    },
                ),
                // A user in a call: her leg is held.
                (
                    2,
                    SessionRecord {
                        handles: vec![handle(20, CALL, "j2", 200)],
                        others: vec![],
                    },
                ),
            ],
            held: vec![("j1".into(), 100), ("j2".into(), 200), ("j2".into(), 201)],
        };
        let p = plan(&dead, |plugin| plugin == CALL, |_| false);
        // j1 has nothing bound to adopt: reaped (its legs go with it), as before.
        assert_eq!(p.hold, vec![backend("j2", 22)]);
        assert_eq!(p.reap, vec![backend("j1", 11)]);
        assert_eq!(
            p.sessions,
            vec![
                (1, vec![unbound(10, CALL)], vec![11]),
                (2, vec![handle(20, CALL, "j2", 200)], vec![]),
            ]
        );
        assert_eq!(p.detach, vec![("j2".to_owned(), 201)]);
    }
}
