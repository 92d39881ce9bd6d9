//! What to do with a dead proxy's sessions: a plain function of what the store read and of
//! which plugins can rebuild a handle, tested without a runtime; the [`super::Adopter`] carries
//! it out.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::messages::adoption::{AdoptDead, BackendSession, HandleRecord, HeldHandle};

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
    pub detach: Vec<HeldHandle>,
    /// The backend session of each handle to rebuild, by (server, backend handle): a proxy
    /// that adopted another's sessions before it died holds several on one server.
    pub on: HashMap<(String, u64), u64>,
}

/// The plan for `dead`; `adoptable(plugin)` says whether a plugin here can rebuild a handle;
/// `taken(session)` whether a client session id is in use here already.
pub fn plan(
    dead: &AdoptDead,
    adoptable: impl Fn(&str) -> bool,
    taken: impl Fn(u64) -> bool,
) -> Plan {
    let mut sessions_on: HashMap<&str, Vec<u64>> = HashMap::new();
    for b in &dead.backend {
        sessions_on
            .entry(b.server.as_str())
            .or_default()
            .push(b.session_id);
    }
    let held_in: HashMap<(&str, u64), u64> = dead
        .held
        .iter()
        .map(|h| ((h.server.as_str(), h.handle), h.session))
        .collect();
    // A handle's backend session: as its link recorded it; else the server's only one.
    let session_of = |server: &str, backend_handle: u64| -> Option<u64> {
        let on_server = sessions_on.get(server)?;
        match held_in.get(&(server, backend_handle)) {
            Some(session) => on_server.contains(session).then_some(*session),
            None => match on_server[..] {
                [only] => Some(only),
                _ => None,
            },
        }
    };
    let mut sessions = Vec::new();
    let mut on = HashMap::new();
    for (id, record) in &dead.sessions {
        if taken(*id) {
            log::warn!(
                "adopt: session {id} of proxy {} is in use here; not adopted",
                dead.proxy
            );
            continue;
        }
        let mut handles = Vec::new();
        let mut lost = Vec::new();
        for h in &record.handles {
            if !adoptable(&h.plugin) {
                lost.push(h.id);
                continue;
            }
            let Some(backend_handle) = h.backend_handle else {
                // A handle with no backend handle needs no backend session.
                handles.push(h.clone());
                continue;
            };
            match session_of(&h.server, backend_handle) {
                Some(session) => {
                    on.insert((h.server.clone(), backend_handle), session);
                    handles.push(h.clone());
                }
                None => lost.push(h.id),
            }
        }
        lost.extend(&record.others);
        sessions.push((*id, handles, lost));
    }
    let held_sessions: BTreeSet<(&str, u64)> = on
        .iter()
        .map(|((server, _), session)| (server.as_str(), *session))
        .collect();
    let (hold, reap): (Vec<BackendSession>, Vec<BackendSession>) = dead
        .backend
        .iter()
        .cloned()
        .partition(|b| held_sessions.contains(&(b.server.as_str(), b.session_id)));
    let adopted: HashSet<&(String, u64)> = on.keys().collect();
    let detach = dead
        .held
        .iter()
        .filter(|h| {
            held_sessions.contains(&(h.server.as_str(), h.session))
                && !adopted.contains(&(h.server.clone(), h.handle))
        })
        .cloned()
        .collect();
    Plan {
        hold,
        reap,
        sessions,
        detach,
        on,
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

    fn held(server: &str, session: u64, handle: u64) -> HeldHandle {
        HeldHandle {
            server: server.into(),
            session,
            handle,
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
                held("j1", 11, 100),
                held("j1", 11, 101), // a videoroom leg of the dead proxy's
                held("j1", 11, 400),
                held("j2", 22, 200),
                held("j3", 33, 300),
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
        assert_eq!(p.detach, vec![held("j1", 11, 101), held("j1", 11, 400)]);
        assert_eq!(p.on, HashMap::from([(("j1".to_owned(), 100), 11)]));
    }

    #[test]
    fn a_proxy_that_had_adopted_has_two_sessions_on_a_server_each_handle_on_its_own() {
        let dead = AdoptDead {
            proxy: "p2".into(),
            // Its own session on j1 and the one it adopted from p1.
            backend: vec![backend("j1", 11), backend("j1", 77)],
            sessions: vec![
                (
                    1,
                    SessionRecord {
                        handles: vec![handle(10, ECHO, "j1", 100)],
                        others: vec![],
                    },
                ),
                (
                    2,
                    SessionRecord {
                        handles: vec![handle(20, ECHO, "j1", 700)],
                        others: vec![],
                    },
                ),
                // Its handle's session is not known (no link recorded it): with two sessions
                // on the server, it cannot be told which.
                (
                    3,
                    SessionRecord {
                        handles: vec![handle(30, ECHO, "j1", 999)],
                        others: vec![],
                    },
                ),
            ],
            held: vec![
                held("j1", 11, 100),
                held("j1", 77, 700),
                held("j1", 77, 701),
            ],
        };
        let p = plan(&dead, |plugin| plugin == ECHO, |_| false);
        assert_eq!(p.hold, vec![backend("j1", 11), backend("j1", 77)]);
        assert!(p.reap.is_empty());
        assert_eq!(
            p.on,
            HashMap::from([(("j1".to_owned(), 100), 11), (("j1".to_owned(), 700), 77)])
        );
        assert_eq!(p.detach, vec![held("j1", 77, 701)]);
        assert_eq!(p.sessions[2], (3, vec![], vec![30]));
        // With one session on the server, an unrecorded handle is on that one.
        let one = AdoptDead {
            backend: vec![backend("j1", 11)],
            held: vec![],
            ..dead
        };
        let p = plan(&one, |plugin| plugin == ECHO, |_| false);
        assert_eq!(p.on.get(&("j1".to_owned(), 999)), Some(&11));
        assert_eq!(p.hold, vec![backend("j1", 11)]);
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
            held: vec![held("j1", 11, 100)],
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
            held: vec![
                held("j1", 11, 100),
                held("j2", 22, 200),
                held("j2", 22, 201),
            ],
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
        assert_eq!(p.detach, vec![held("j2", 22, 201)]);
    }
}
