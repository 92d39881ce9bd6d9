//! `GET /overview`: what the console shows besides the servers and their history, in one
//! answer: this proxy, its readiness (as `/readyz`, without a 503) and its peers in the shared store, client sessions and handles per
//! plugin, videoroom and audiobridge rooms with their servers, p2pcall calls. Everything comes
//! from the proxy's own books (no backend is asked), so polling it is cheap; the one cost
//! that grows is the sessions, each asked for its handles, at most [`SESSIONS_COUNTED`].

use std::collections::{BTreeMap, HashSet};

use actix_web::HttpResponse;
use futures_util::future::join_all;
use serde::Serialize;
use serde_json::{json, Value};

use super::access::CanRead;
use super::State;
use crate::plugin::videoroom::admin::room_view;
use crate::plugin::videoroom::room_book::Room;
use crate::session::DescribeSession;
use crate::state::ProxyState;

/// Sessions whose handles are counted per plugin; beyond, `counted` says how many were.
pub const SESSIONS_COUNTED: usize = 10_000;
/// Rooms listed per plugin; beyond, `total` says how many there are.
pub const ROOMS_LISTED: usize = 500;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PluginCount {
    /// Sessions with at least one handle of the plugin.
    pub sessions: usize,
    pub handles: usize,
}

/// A videoroom room's publishers on one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerPublishers {
    pub server: String,
    /// Publishers joined there through this proxy.
    pub here: usize,
    /// Publishers joined there through other proxies (shared store).
    pub elsewhere: usize,
    /// Mirrors of the room's publishers on other servers (a room spanning servers).
    pub mirrors: usize,
}

/// Publishers of `room` per server it lives on, mirrors included. Its other proxies'
/// publishers are known by server in a spanning room (`remote_feeds`), by count alone
/// otherwise (on its one server).
pub fn publishers_by_server(room: &Room) -> Vec<ServerPublishers> {
    let mut by_server: BTreeMap<&str, (usize, usize)> = room
        .servers
        .iter()
        .map(|p| (p.server.as_str(), (0, 0)))
        .collect();
    for (server, _) in room.publishers.values() {
        by_server.entry(server).or_default().0 += 1;
    }
    if room.remote_feeds.is_empty() {
        if let Some(first) = room.placement() {
            by_server.entry(&first.server).or_default().1 += room.remote_publishers;
        }
    } else {
        for server in room.remote_feeds.values() {
            by_server.entry(server).or_default().1 += 1;
        }
    }
    let total: usize = by_server.values().map(|(h, e)| h + e).sum();
    let spans = by_server.len() > 1;
    by_server
        .into_iter()
        .map(|(server, (here, elsewhere))| ServerPublishers {
            server: server.to_owned(),
            here,
            elsewhere,
            mirrors: if spans { total - here - elsewhere } else { 0 },
        })
        .collect()
}

/// Calls of the p2pcall user book, each once: `(call id, user here, peer, peer's proxy)`.
pub fn distinct_calls(
    calls: Vec<(String, crate::plugin::p2pcall::users::Pairing)>,
) -> Vec<(u64, String, String, Option<String>)> {
    let mut seen = HashSet::new();
    calls
        .into_iter()
        .filter(|(_, p)| seen.insert(p.call_id))
        .map(|(user, p)| (p.call_id, user, p.peer, p.proxy))
        .collect()
}

async fn sessions_by_plugin(state: &ProxyState) -> Value {
    let (total, addrs) = {
        let table = state.session().sessions.lock();
        let all = table.addresses();
        let total = all.len();
        let addrs: Vec<_> = all
            .into_iter()
            .take(SESSIONS_COUNTED)
            .map(|(_, a)| a)
            .collect();
        (total, addrs)
    };
    let views = join_all(addrs.into_iter().map(|a| a.send(DescribeSession))).await;
    let mut by_plugin: BTreeMap<String, PluginCount> = BTreeMap::new();
    let (mut counted, mut connected) = (0, 0);
    for view in views.into_iter().flatten() {
        counted += 1;
        connected += usize::from(view.connected);
        let mut plugins = HashSet::new();
        for h in &view.handles {
            let count = by_plugin.entry(h.plugin.clone()).or_default();
            count.handles += 1;
            if plugins.insert(h.plugin.as_str()) {
                count.sessions += 1;
            }
        }
    }
    json!({"total": total, "counted": counted, "connected": connected, "by_plugin": by_plugin})
}

fn videoroom_rooms(state: &ProxyState) -> Value {
    let Some(book) = &state.session().plugins.videoroom else {
        return Value::Null;
    };
    let book = book.lock();
    let ids: Vec<u64> = book
        .list(true)
        .iter()
        .filter_map(|e| e["room"].as_u64())
        .collect();
    let rooms: Vec<Value> = ids
        .iter()
        .take(ROOMS_LISTED)
        .filter_map(|id| book.get(*id))
        .map(|room| {
            let mut view = room_view(room);
            view["publishers_by_server"] = json!(publishers_by_server(room));
            view
        })
        .collect();
    json!({"total": ids.len(), "rooms": rooms})
}

fn audiobridge_rooms(state: &ProxyState) -> Value {
    let Some(book) = &state.session().plugins.audiobridge else {
        return Value::Null;
    };
    let book = book.lock();
    let all = book.rooms();
    let rooms: Vec<Value> = all
        .iter()
        .take(ROOMS_LISTED)
        .map(|(id, room)| {
            json!({
                "room": id,
                "description": room.config.get("description").cloned()
                    .unwrap_or_else(|| json!(format!("Room {id}"))),
                "server": room.server,
                "ready": room.ready,
                "permanent": room.permanent,
                "participants_by_server": book.participants_by_server(*id),
                "participants_elsewhere": book.remote_participants(*id),
            })
        })
        .collect();
    json!({"total": all.len(), "rooms": rooms})
}

fn calls(state: &ProxyState) -> Value {
    let plugins = &state.session().plugins;
    let p2pcall = plugins.p2pcall.as_ref().map(|shared| {
        let users = shared.users.lock();
        let calls: Vec<Value> = distinct_calls(users.calls())
            .into_iter()
            .map(|(id, user, peer, proxy)| {
                json!({"call_id": id, "users": [user, peer], "peer_proxy": proxy})
            })
            .collect();
        json!({"registered": users.list().len(), "calls": calls})
    });
    // Each call of a user of this proxy, once (a peer on another proxy is named as it is).
    let videocall = plugins.videocall.as_ref().map(|users| {
        let users = users.lock();
        let calls: Vec<Value> = users
            .calls()
            .into_iter()
            .map(|(id, user, peer)| json!({"call_id": id, "users": [user, peer]}))
            .collect();
        json!({"registered": users.len(), "calls": calls})
    });
    json!({"p2pcall": p2pcall, "videocall": videocall})
}

pub async fn overview(_: CanRead, state: State) -> HttpResponse {
    let ready = super::health::readiness(&state).await.map(|(_, body)| body);
    let sessions = sessions_by_plugin(&state).await;
    let status = state.store.status();
    HttpResponse::Ok().json(json!({
        "proxy": {
            "id": status.proxy_id,
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": state.started.elapsed().as_secs(),
            "draining": state.is_draining(),
            "policy": state.config.registry.policy,
        },
        "ready": ready,
        "store": {"status": status, "peers": state.store.peers()},
        "sessions": sessions,
        "rooms": {
            "videoroom": videoroom_rooms(&state),
            "audiobridge": audiobridge_rooms(&state),
        },
        "calls": calls(&state),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::p2pcall::users::Pairing;
    use crate::plugin::videoroom::room_book::RoomPlacement;

    fn room(servers: &[&str]) -> Room {
        Room {
            id: 1,
            settings: Default::default(),
            servers: servers
                .iter()
                .map(|s| RoomPlacement {
                    server: (*s).to_owned(),
                    created: true,
                })
                .collect(),
            publishers: Default::default(),
            remote_publishers: 0,
            remote_feeds: Default::default(),
            seats: Default::default(),
            permanent: false,
            creator: String::new(),
            origin: Default::default(),
        }
    }

    #[test]
    fn a_spanning_room_counts_publishers_and_mirrors_per_server() {
        let mut r = room(&["a", "b"]);
        r.publishers.insert(10, ("a".into(), 100));
        r.publishers.insert(11, ("a".into(), 101));
        r.remote_feeds.insert(200, "b".into());
        r.remote_publishers = 1;
        let by = publishers_by_server(&r);
        assert_eq!(
            by,
            [
                ServerPublishers {
                    server: "a".into(),
                    here: 2,
                    elsewhere: 0,
                    mirrors: 1
                },
                ServerPublishers {
                    server: "b".into(),
                    here: 0,
                    elsewhere: 1,
                    mirrors: 2
                },
            ]
        );
    }

    #[test]
    fn a_one_server_room_has_no_mirrors_and_counts_other_proxies_there() {
        let mut r = room(&["a"]);
        r.publishers.insert(10, ("a".into(), 100));
        r.remote_publishers = 3;
        let by = publishers_by_server(&r);
        assert_eq!(
            by,
            [ServerPublishers {
                server: "a".into(),
                here: 1,
                elsewhere: 3,
                mirrors: 0
            }]
        );
        assert!(publishers_by_server(&room(&[])).iter().all(|s| s.here == 0));
    }

    #[test]
    fn a_call_between_two_local_users_is_listed_once() {
        let pairing = |call_id, peer: &str, proxy: Option<&str>| Pairing {
            call_id,
            peer: peer.into(),
            proxy: proxy.map(str::to_owned),
        };
        let calls = vec![
            ("alice".to_owned(), pairing(7, "bob", None)),
            ("bob".to_owned(), pairing(7, "alice", None)),
            ("carol".to_owned(), pairing(9, "dave", Some("p2"))),
        ];
        assert_eq!(
            distinct_calls(calls),
            [
                (7, "alice".into(), "bob".into(), None),
                (9, "carol".into(), "dave".into(), Some("p2".into())),
            ]
        );
    }
}
