//! Videoroom rooms: list, show, create, destroy, and their participants as the backends
//! list them. Reads need read access (rooms name their participants' servers), changes the
//! admin token.

use actix_web::{web, HttpResponse};
use janus_protocol::JsonMap;
use serde_json::json;

use super::access::{CanChange, CanRead};
use super::{error_response, read_body, State};
use crate::error::ProxyError;
use crate::plugin::videoroom::admin as videoroom_admin;
use crate::plugin::videoroom::SharedRoomBook;
use crate::state::ProxyState;

/// The videoroom book, or the admin API's answer when the plugin is off.
fn rooms_of(state: &ProxyState) -> Result<SharedRoomBook, Box<HttpResponse>> {
    state.session().plugins.videoroom.clone().ok_or_else(|| {
        Box::new(HttpResponse::NotFound().json(json!({"error": "the videoroom plugin is off"})))
    })
}

fn no_such_room(room: u64) -> HttpResponse {
    HttpResponse::NotFound().json(json!({"error": format!("no such room {room}")}))
}

pub async fn list_rooms(_: CanRead, state: State) -> HttpResponse {
    match rooms_of(&state) {
        Ok(book) => HttpResponse::Ok().json(json!({"rooms": videoroom_admin::list(&book)})),
        Err(response) => *response,
    }
}

pub async fn get_room(_: CanRead, state: State, room: web::Path<u64>) -> HttpResponse {
    let book = match rooms_of(&state) {
        Ok(d) => d,
        Err(response) => return *response,
    };
    match videoroom_admin::show(&book, *room) {
        Some(view) => HttpResponse::Ok().json(view),
        None => no_such_room(*room),
    }
}

pub async fn create_room(_: CanChange, state: State, payload: web::Payload) -> HttpResponse {
    let book = match rooms_of(&state) {
        Ok(d) => d,
        Err(response) => return *response,
    };
    let body = match read_body(&state, payload).await {
        Ok(body) => body,
        Err(e) => return error_response(&e),
    };
    let params: JsonMap = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return error_response(&ProxyError::BadRequest(format!("body: {e}"))),
    };
    match videoroom_admin::create(&book, state.session().plugins.rooms_file.as_ref(), &params) {
        Ok((room, permanent)) => {
            videoroom_admin_changed(&state, room, true);
            HttpResponse::Ok().json(json!({
                "created": room,
                "permanent": permanent,
                "room": videoroom_admin::show(&book, room),
            }))
        }
        Err(videoroom_admin::CreateError::Exists(room)) => {
            HttpResponse::Conflict().json(json!({"error": format!("room {room} already exists")}))
        }
        Err(videoroom_admin::CreateError::Invalid(e)) => {
            error_response(&ProxyError::BadRequest(e.text))
        }
    }
}

pub async fn destroy_room(_: CanChange, state: State, room: web::Path<u64>) -> HttpResponse {
    let book = match rooms_of(&state) {
        Ok(d) => d,
        Err(response) => return *response,
    };
    let state = state.get_ref().clone();
    match videoroom_admin::destroy(state.session().plugin_env.clone(), book, *room).await {
        None => no_such_room(*room),
        Some(Ok(())) => {
            videoroom_admin_changed(&state, *room, false);
            HttpResponse::Ok().json(json!({"destroyed": *room}))
        }
        Some(Err(why)) => HttpResponse::BadGateway().json(json!({
            "error": format!("room {room} could not be destroyed on its backend: {why}")
        })),
    }
}

pub async fn room_participants(_: CanRead, state: State, room: web::Path<u64>) -> HttpResponse {
    let book = match rooms_of(&state) {
        Ok(d) => d,
        Err(response) => return *response,
    };
    match videoroom_admin::participants(state.session().plugin_env.clone(), book, *room).await {
        None => no_such_room(*room),
        Some(Ok(list)) => HttpResponse::Ok().json(json!({"room": *room, "participants": list})),
        Some(Err(why)) => HttpResponse::BadGateway().json(json!({
            "error": format!("room {room}: a backend did not list its participants: {why}")
        })),
    }
}

/// The admin API created (`Some`) or destroyed (`None`) videoroom `id` in this proxy's
/// book: the shared store follows (no-op without one).
fn videoroom_admin_changed(state: &ProxyState, id: u64, created: bool) {
    let (Some(store), Some(book)) = (state.store.rooms(), &state.session().plugins.videoroom)
    else {
        return;
    };
    match book.lock().record(id).filter(|_| created) {
        Some(record) => store.adopt(crate::messages::cluster::RoomKind::VideoRoom, record),
        None => store.destroyed(crate::messages::cluster::RoomKind::VideoRoom, id),
    }
}
