//! What the admin API does with videoroom rooms: list, show, create and destroy them. A room
//! that lives on a backend is destroyed there too (its participants get Janus's `destroyed`
//! event) by a one-shot backend handle, `RoomDestroyer`.

use std::sync::Arc;

use actix::prelude::*;
use janus_protocol::JsonMap;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::checks::{self, VrError};
use super::directory::Room;
use super::{SharedDirectory, PACKAGE};
use crate::backend::BackendIncoming;
use crate::plugin::backend_handle::{request, BackendLeg};
use crate::plugin::rooms_file::{self, SharedRoomsFile};
use crate::registry::PlaceOn;
use crate::state::ProxyState;
use crate::store::rooms::RoomKind;

/// A room as the admin API shows it: Janus's `list` entry plus where it lives.
pub fn room_view(room: &Room) -> Value {
    let mut view = room.list_entry();
    if let Value::Object(map) = &mut view {
        let server = room.placement().map(|p| p.server.clone());
        map.insert("server".into(), json!(server));
        let servers: Vec<&str> = room.servers.iter().map(|p| p.server.as_str()).collect();
        map.insert("servers".into(), json!(servers));
    }
    view
}

/// Every room, public and private, in id order.
pub fn list(directory: &SharedDirectory) -> Vec<Value> {
    let directory = directory.lock();
    directory
        .list(true)
        .iter()
        .filter_map(|entry| entry["room"].as_u64())
        .filter_map(|id| directory.get(id).map(room_view))
        .collect()
}

pub fn show(directory: &SharedDirectory, id: u64) -> Option<Value> {
    directory.lock().get(id).map(room_view)
}

#[derive(Debug)]
pub enum CreateError {
    Invalid(VrError),
    Exists(u64),
}

/// Creates a room from `create` parameters (a non-zero `room` required). With
/// `"permanent": true` it is written to `plugins.rooms_file` too, as a client's `create`
/// does. Ok((id, whether the rooms file has it)).
pub fn create(
    directory: &SharedDirectory,
    file: Option<&SharedRoomsFile>,
    body: &JsonMap,
) -> Result<(u64, bool), CreateError> {
    let id = checks::check_config_room(body).map_err(CreateError::Invalid)?;
    directory
        .lock()
        .create(id, body)
        .map_err(|_| CreateError::Exists(id))?;
    let asked = body.get("permanent").and_then(Value::as_bool) == Some(true);
    let permanent = asked && rooms_file::apply(file, RoomKind::VideoRoom, id, Some(body));
    if let Some(r) = directory.lock().get_mut(id) {
        r.permanent = permanent;
    }
    Ok((id, permanent))
}

/// Destroys a room: on its backend if it lives on one, then in the directory. None: no such
/// room.
pub async fn destroy(
    state: Arc<ProxyState>,
    directory: SharedDirectory,
    id: u64,
) -> Option<Result<(), String>> {
    let (servers, secret) = {
        let d = directory.lock();
        let room = d.get(id)?;
        (room.servers.clone(), room.secret().map(str::to_owned))
    };
    let mut outcome = Ok(());
    for p in servers {
        let one = match state.registry.send(PlaceOn { server: p.server }).await {
            // The server is gone from the registry: so is the room on it.
            Ok(None) => Ok(()),
            Err(_) => Err("the proxy is shutting down".to_owned()),
            Ok(Some(placement)) => {
                let (tx, rx) = oneshot::channel();
                RoomDestroyer {
                    state: state.clone(),
                    leg: BackendLeg::new(placement),
                    room: id,
                    secret: secret.clone(),
                    attached: false,
                    done: Some(tx),
                }
                .start();
                rx.await
                    .unwrap_or_else(|_| Err("backend handle lost".to_owned()))
            }
        };
        if one.is_err() {
            outcome = one;
        }
    }
    if outcome.is_ok() {
        // A destroy through the admin API is final: a permanent room leaves the rooms file.
        let removed = directory.lock().remove(id);
        if removed.is_some_and(|r| r.permanent) {
            let file = state.plugins.rooms_file.as_ref();
            rooms_file::apply(file, RoomKind::VideoRoom, id, None);
        }
    }
    Some(outcome)
}

/// A one-shot backend videoroom handle that destroys one room and goes.
struct RoomDestroyer {
    state: Arc<ProxyState>,
    leg: BackendLeg,
    room: u64,
    secret: Option<String>,
    attached: bool,
    done: Option<oneshot::Sender<Result<(), String>>>,
}

impl RoomDestroyer {
    fn finish(&mut self, ctx: &mut Context<Self>, outcome: Result<(), String>) {
        if let Some(done) = self.done.take() {
            let _ = done.send(outcome);
        }
        self.leg.release();
        ctx.stop();
    }
}

impl Actor for RoomDestroyer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.leg.attach(PACKAGE, None, ctx.address().recipient());
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.leg.release();
        self.leg.end_placement(&self.state.registry);
        if let Some(done) = self.done.take() {
            let _ = done.send(Err("stopped".to_owned()));
        }
    }
}

impl Handler<BackendIncoming> for RoomDestroyer {
    type Result = ();

    fn handle(&mut self, msg: BackendIncoming, ctx: &mut Context<Self>) {
        match msg {
            BackendIncoming::Reply { frame, .. } if !self.attached => {
                match self.leg.on_attach_reply(&frame) {
                    Ok(_) => {
                        self.attached = true;
                        let mut body = JsonMap::new();
                        body.insert("request".into(), "destroy".into());
                        body.insert("room".into(), self.room.into());
                        if let Some(secret) = &self.secret {
                            body.insert("secret".into(), secret.clone().into());
                        }
                        let mut req = request("message");
                        req.insert("body".into(), Value::Object(body));
                        self.leg
                            .send(req, None, Some((ctx.address().recipient(), None)));
                    }
                    Err(e) => self.finish(ctx, Err(e.reason)),
                }
            }
            BackendIncoming::Reply { frame, .. } => {
                let data = frame
                    .get("plugindata")
                    .and_then(|p| p.get("data"))
                    .cloned()
                    .unwrap_or(Value::Null);
                let destroyed = data.get("videoroom").and_then(Value::as_str) == Some("destroyed");
                // 426: the backend no longer has it (restarted): destroyed all the same.
                let gone = data.get("error_code").and_then(Value::as_u64)
                    == Some(u64::from(checks::NO_SUCH_ROOM));
                if destroyed || gone {
                    self.finish(ctx, Ok(()));
                } else {
                    let why = data
                        .get("error")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .unwrap_or_else(|| {
                            crate::plugin::backend_handle::api_error_of(&frame).reason
                        });
                    self.finish(ctx, Err(why));
                }
            }
            BackendIncoming::Event { .. } => {}
            // The backend is gone, and the room with it.
            BackendIncoming::LinkLost => {
                self.leg.forget();
                self.finish(ctx, Ok(()));
            }
        }
    }
}
