//! What the admin API does with videoroom rooms: list, show, create and destroy them, and list
//! their participants. A room that lives on backends is destroyed (its participants get
//! Janus's `destroyed` event) and its participants listed there, each by a one-shot backend
//! handle ([`BackendLeg::open_once`], then [`BackendLeg::ask`]).

use std::sync::Arc;

use janus_protocol::JsonMap;
use serde_json::{json, Value};

use super::room_book::Room;
use super::{checks, SharedRoomBook, PACKAGE};
use crate::messages::cluster::RoomKind;
use crate::messages::PlaceOn;
use crate::plugin::backend_mark;
use crate::plugin::env::PluginEnv;
use crate::plugin::kit::leg::is_lost;
use crate::plugin::kit::{request, BackendLeg, PluginError};
use crate::plugin::rooms_file::{self, SharedRoomsFile};

/// A room as the admin API shows it: Janus's `list` entry plus where it lives.
pub fn room_view(room: &Room) -> Value {
    let mut view = room.list_entry();
    if let Value::Object(map) = &mut view {
        let server = room.placement().map(|p| p.server.clone());
        map.insert("server".into(), json!(server));
        let servers: Vec<&str> = room.servers.iter().map(|p| p.server.as_str()).collect();
        map.insert("servers".into(), json!(servers));
        // This proxy's view of the room's load per server (a spanning room's mirrors too).
        let per_server: Vec<Value> = room
            .per_server()
            .into_iter()
            .map(|s| {
                json!({"server": s.server, "publishers": s.publishers, "mirrors": s.mirrors,
                    "subscribers": s.subscribers})
            })
            .collect();
        map.insert("per_server".into(), per_server.into());
    }
    view
}

/// Every room, public and private, in id order.
pub fn list(rooms: &SharedRoomBook) -> Vec<Value> {
    let rooms = rooms.lock();
    rooms
        .list(true)
        .iter()
        .filter_map(|entry| entry["room"].as_u64())
        .filter_map(|id| rooms.get(id).map(room_view))
        .collect()
}

/// Every placed room per server, for the metrics.
pub fn per_server_rows(rooms: &SharedRoomBook) -> Vec<crate::metrics::RoomOnServer> {
    let rooms = rooms.lock();
    rooms
        .rooms()
        .flat_map(|room| {
            room.per_server()
                .into_iter()
                .map(move |s| crate::metrics::RoomOnServer {
                    room: room.id,
                    server: s.server,
                    publishers: s.publishers,
                    mirrors: s.mirrors,
                    subscribers: s.subscribers,
                })
        })
        .collect()
}

pub fn show(rooms: &SharedRoomBook, id: u64) -> Option<Value> {
    rooms.lock().get(id).map(room_view)
}

#[derive(Debug)]
pub enum CreateError {
    Invalid(PluginError),
    Exists(u64),
}

/// Creates a room from `create` parameters (a non-zero `room` required). With
/// `"permanent": true` it is written to `plugins.rooms_file` too, as a client's `create`
/// does. Ok((id, whether the rooms file has it)).
pub fn create(
    rooms: &SharedRoomBook,
    file: Option<&SharedRoomsFile>,
    body: &JsonMap,
) -> Result<(u64, bool), CreateError> {
    let id = checks::check_config_room(body).map_err(CreateError::Invalid)?;
    rooms
        .lock()
        .create(id, body)
        .map_err(|_| CreateError::Exists(id))?;
    let asked = body.get("permanent").and_then(Value::as_bool) == Some(true);
    let permanent = asked && rooms_file::apply(file, RoomKind::VideoRoom, id, Some(body));
    if let Some(r) = rooms.lock().get_mut(id) {
        r.permanent = permanent;
        r.origin = crate::messages::cluster::RoomOrigin::Admin;
    }
    Ok((id, permanent))
}

/// The backend `destroy` of `room`, with the secret of its backend rooms
/// ([`backend_mark::own_secret`] of `plugins.backend_room_secret`).
pub fn destroy_body(room: &Room, backend_secret: &str) -> JsonMap {
    let mut body = JsonMap::new();
    body.insert("request".into(), "destroy".into());
    body.insert("room".into(), room.id.into());
    if let Some(secret) = backend_mark::own_secret(backend_secret, room.secret()) {
        body.insert("secret".into(), secret.into());
    }
    body
}

/// Destroys a room: on its backend if it lives on one, then in the room book. None: no such
/// room.
pub async fn destroy(
    env: Arc<PluginEnv>,
    rooms: SharedRoomBook,
    id: u64,
) -> Option<Result<(), String>> {
    let (servers, body) = {
        let d = rooms.lock();
        let room = d.get(id)?;
        let backend_secret = &env.settings.backend_room_secret;
        (room.servers.clone(), destroy_body(room, backend_secret))
    };
    let mut outcome = Ok(());
    for p in servers {
        let one = match ask_server(&env, &p.server, body.clone()).await {
            Ok(data) if data.get("videoroom").and_then(Value::as_str) == Some("destroyed") => {
                Ok(())
            }
            Ok(data) => Err(refusal(&data)),
            // The server (and the room with it) is gone, or it no longer has the room.
            Err(Asked::Gone) | Err(Asked::NoSuchRoom) => Ok(()),
            Err(Asked::Failed(why)) => Err(why),
        };
        if one.is_err() {
            outcome = one;
        }
    }
    if outcome.is_ok() {
        // A destroy through the admin API is final: a permanent room leaves the rooms file.
        let removed = rooms.lock().remove(id);
        if removed.is_some_and(|r| r.permanent) {
            let file = env.rooms_file.as_ref();
            rooms_file::apply(file, RoomKind::VideoRoom, id, None);
        }
    }
    Some(outcome)
}

/// The room's participants as its backends list them (`listparticipants`), each once with the
/// `server` it is on: a room spanning servers lists every server's own participants, not the
/// mirrors of the others'. None: no such room.
pub async fn participants(
    env: Arc<PluginEnv>,
    rooms: SharedRoomBook,
    id: u64,
) -> Option<Result<Vec<Value>, String>> {
    let servers = rooms.lock().get(id)?.servers.clone();
    let mut body = JsonMap::new();
    body.insert("request".into(), "listparticipants".into());
    body.insert("room".into(), id.into());
    let mut all = Vec::new();
    for p in servers {
        let data = match ask_server(&env, &p.server, body.clone()).await {
            Ok(data) => data,
            // Nobody there any more.
            Err(Asked::Gone) | Err(Asked::NoSuchRoom) => continue,
            Err(Asked::Failed(why)) => return Some(Err(why)),
        };
        let Some(list) = data.get("participants").and_then(Value::as_array) else {
            return Some(Err(refusal(&data)));
        };
        let own = list
            .iter()
            .filter(|q| q.get("remote").and_then(Value::as_bool) != Some(true));
        for q in own {
            let mut q = q.clone();
            if let Value::Object(m) = &mut q {
                m.insert("server".into(), p.server.clone().into());
            }
            all.push(q);
        }
    }
    Some(Ok(all))
}

/// Why a backend's answer is not the one asked for: its `error`, or the core's.
fn refusal(data: &Value) -> String {
    data.get("error")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("unexpected answer {data}"))
}

/// How asking a backend server went wrong.
enum Asked {
    /// The server is not in the registry, or its link was lost meanwhile.
    Gone,
    /// The backend answered 426: it does not have the room (restarted).
    NoSuchRoom,
    Failed(String),
}

/// One videoroom request on `server` through a one-shot backend handle: its
/// `plugindata.data`.
async fn ask_server(env: &PluginEnv, server: &str, body: JsonMap) -> Result<Value, Asked> {
    let place = PlaceOn {
        server: server.to_owned(),
    };
    let placement = match env.servers.place_on.send(place).await {
        Ok(Some(p)) => p,
        Ok(None) => return Err(Asked::Gone),
        Err(_) => return Err(Asked::Failed("the proxy is shutting down".to_owned())),
    };
    let mut leg = BackendLeg::new(placement);
    let answer = match leg.open_once(PACKAGE, None).await {
        Ok(handle) => {
            leg.opened(handle);
            leg.ask(request::message(body, None)).await
        }
        Err(e) => Err(e),
    };
    leg.release();
    leg.end_placement(&env.servers.ended);
    let frame = answer.map_err(|e| match is_lost(&e) {
        // The link went away meanwhile (and the server with it).
        true => Asked::Gone,
        false => Asked::Failed(e.reason),
    })?;
    let Some(data) = request::plugin_data(&frame) else {
        return Err(Asked::Failed(request::api_error_of(&frame).reason));
    };
    match data.get("error_code").and_then(Value::as_u64) {
        Some(code) if code == u64::from(checks::NO_SUCH_ROOM) => Err(Asked::NoSuchRoom),
        _ => Ok(data.clone()),
    }
}
