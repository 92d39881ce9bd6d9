//! The videoroom plugin: Janus's VideoRoom API (1.1.x multistream) served by the proxy, with
//! the rooms owned by the proxy, each living on one backend Janus or, with spanning rooms,
//! spread over several.
//!
//! * The [`room_book::RoomBook`] holds every room created through the proxy (`create`,
//!   `list`, `exists` are answered from it) and the backend servers each room lives on.
//! * A room gets a server when a handle first needs it on one (a `join`, or a room request
//!   only the room's Janus can answer, such as `listparticipants` or `kick`): the registry
//!   picks one (`SelectServer`), the backend room is created there with the client's room id
//!   and settings, and every later handle of the room goes to the same server (`PlaceOn`).
//!   Publisher ids, private ids and feed ids are the backend's own, identical for every
//!   participant since the whole room is on one Janus.
//! * Each [`handle::VideoRoomHandle`] opens one backend videoroom handle (a *leg*) per server
//!   it needs; requests go to the leg of the room's server unchanged, replies and events come
//!   back with the client's ids. Where a request goes is decided by [`routing`].
//! * When a room's server is lost, its participants are told (see the handle) and the room
//!   forgets its placement: the next join creates it again on a server the registry picks.
//! * Spanning rooms (`plugins.videoroom_spanning`, on by default): a room lives on one server
//!   until that server cannot take its next publisher or subscriber, then spans to another;
//!   the
//!   [`coordinator::RoomCoordinator`] of the room mirrors every publisher to the room's other
//!   servers with Janus's remote publishers, following the plan of [`mirror::RoomMirror`].

pub mod admin;
pub mod checks;
pub mod coordinator;
pub mod handle;
pub mod mirror;
pub mod remote;
pub mod room_book;
pub mod routing;

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use futures_util::future::LocalBoxFuture;
use parking_lot::Mutex;
use serde_json::{json, Value};

use super::env::PluginEnv;
use super::kit::BackendLeg;
use super::{AdoptContext, AdoptedHandle, AttachContext, AttachResult, AttachedHandle, Plugin};
use crate::messages::Route;
use coordinator::RoomCoordinator;
use handle::VideoRoomHandle;
use room_book::RoomBook;

pub const PACKAGE: &str = "janus.plugin.videoroom";

/// The short name in the plugin's data (`{"videoroom": …}`).
pub const KEY: &str = "videoroom";

/// The room book all videoroom handles of this proxy share.
pub type SharedRoomBook = Arc<Mutex<RoomBook>>;

/// The coordinators of this proxy's spanning rooms, by room.
pub type Coordinators = Arc<Mutex<HashMap<u64, Addr<RoomCoordinator>>>>;

/// What the videoroom handles and coordinators of this proxy share.
#[derive(Clone)]
pub struct Shared {
    pub env: Arc<PluginEnv>,
    pub rooms: SharedRoomBook,
    pub coordinators: Coordinators,
}

impl Shared {
    /// `plugins.videoroom_spanning`: rooms may span servers.
    pub fn spans(&self) -> bool {
        self.env.settings.videoroom_spanning
    }

    /// The coordinator of spanning room `room`, started if needed (None: rooms do not span
    /// servers).
    pub fn coordinator(&self, room: u64) -> Option<Addr<RoomCoordinator>> {
        self.spans().then(|| coordinator::start(self, room))
    }

    /// The coordinator of spanning room `room`, if it runs.
    pub fn running(&self, room: u64) -> Option<Addr<RoomCoordinator>> {
        if !self.spans() {
            return None;
        }
        coordinator::running(&self.coordinators, room)
    }
}

#[derive(Default)]
pub struct VideoRoomPlugin {
    rooms: SharedRoomBook,
    coordinators: Coordinators,
    /// The plugin's side of the bus (spanning rooms with a shared store; set at the first
    /// attach).
    remote: std::sync::OnceLock<Option<Arc<remote::VrRemote>>>,
}

impl VideoRoomPlugin {
    pub fn new() -> Self {
        Self::default()
    }

    /// What a new handle shares with the others (the bus registered at the first).
    fn shared(&self, env: &Arc<PluginEnv>) -> Shared {
        let shared = Shared {
            env: env.clone(),
            rooms: self.rooms.clone(),
            coordinators: self.coordinators.clone(),
        };
        if shared.spans() {
            shared.rooms.lock().spans_servers = true;
            // Spanning rooms with several proxies: the coordinators talk over the bus.
            self.remote.get_or_init(|| {
                let bus = shared.env.cluster.bus.clone()?;
                Some(remote::VrRemote::register(&bus, &shared))
            });
        }
        shared
    }

    pub fn rooms(&self) -> SharedRoomBook {
        self.rooms.clone()
    }
}

impl Plugin for VideoRoomPlugin {
    fn package(&self) -> &str {
        PACKAGE
    }

    fn descriptor(&self, env: &PluginEnv) -> Option<Value> {
        Some((env.descriptors)(PACKAGE).unwrap_or_else(|| {
            json!({
                "name": "JANUS VideoRoom plugin",
                "author": "Meetecho s.r.l.",
                "description": "This is a plugin implementing a videoconferencing SFU (Selective Forwarding Unit) for Janus, that is an audio/video router.",
                "version_string": "0.0.9",
                "version": 9
            })
        }))
    }

    /// A videoroom handle needs no backend until it needs a room: attaching always works.
    fn attach(&self, ctx: AttachContext) -> LocalBoxFuture<'static, AttachResult> {
        let shared = self.shared(&ctx.env);
        Box::pin(async move {
            let handle = VideoRoomHandle::new(ctx, shared).start();
            Ok(AttachedHandle {
                commands: handle.recipient(),
                backend: None,
                backend_handle: None,
            })
        })
    }

    fn adoptable(&self) -> bool {
        true
    }

    /// A joined participant (publisher or subscriber, with its leg) of a room on one server is
    /// rebuilt on its leg, in its room; anything else is not (docs/adoption.md, Limits).
    fn adopt(&self, ctx: AdoptContext) -> Option<AdoptedHandle> {
        let AdoptContext {
            attach,
            server,
            link,
            backend_handle,
            state,
        } = ctx;
        let room = state.get("room").and_then(Value::as_u64)?;
        let servers = self.rooms.lock().servers(room);
        if servers.iter().any(|s| *s != server) {
            log::info!("videoroom: room {room} spans {servers:?}: its participant not adopted");
            return None;
        }
        let shared = self.shared(&attach.env);
        let leg = BackendLeg::adopted(server.clone(), link, backend_handle);
        let (handle, token) = VideoRoomHandle::adopted(attach, shared, leg, &state)?;
        let addr = handle.start();
        Some(AdoptedHandle {
            route: Route {
                to: addr.clone().recipient(),
                token,
            },
            handle: AttachedHandle {
                commands: addr.recipient(),
                backend: Some(server),
                backend_handle: Some(backend_handle),
            },
        })
    }
}
