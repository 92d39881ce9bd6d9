//! `GET /plugins/audiobridge/rooms`: the audiobridge room book, read-only. Each room with the
//! backend server its mixer lives on (null: none at the moment), for operators and for
//! janus-sentinel's sweeper, which destroys a marked room on its Janus only when no proxy has
//! it there.

use actix_web::HttpResponse;
use serde_json::{json, Value};

use super::access::CanRead;
use super::State;
use crate::plugin::audiobridge::book::Room;

pub async fn list_rooms(_: CanRead, state: State) -> HttpResponse {
    let Some(book) = state.session().plugins.audiobridge.clone() else {
        return HttpResponse::NotFound().json(json!({"error": "the audiobridge plugin is off"}));
    };
    let rooms: Vec<Value> = book
        .lock()
        .rooms()
        .iter()
        .map(|(id, room)| room_view(*id, room))
        .collect();
    HttpResponse::Ok().json(json!({"rooms": rooms}))
}

/// One room: its id, description and privacy as the client created it, where it lives.
fn room_view(id: u64, room: &Room) -> Value {
    let description = room
        .config
        .get("description")
        .and_then(Value::as_str)
        .filter(|d| !d.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("Room {id}"));
    let private = room.config.get("is_private").and_then(Value::as_bool);
    json!({
        "room": id,
        "description": description,
        "is_private": private == Some(true),
        "server": room.server,
        "ready": room.ready,
        "permanent": room.permanent,
    })
}
