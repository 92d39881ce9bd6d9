//! The videoroom plugin: Janus's VideoRoom API (1.1.x multistream) served by the proxy, with
//! the rooms owned by the proxy, each living on one backend Janus (phase 1) or, optionally,
//! spread over several (phase 2).
//!
//! * The [`directory::Directory`] holds every room created through the proxy (`create`,
//!   `list`, `exists` are answered from it) and the backend server each room lives on.
//! * A room gets a server when a handle first needs it on one (a `join`, or a room request
//!   only the room's Janus can answer, such as `listparticipants` or `kick`): the registry
//!   picks one (`SelectServer`), the backend room is created there with the client's room id
//!   and settings, and every later handle of the room goes to the same server (`PlaceOn`).
//!   Publisher ids, private ids and feed ids are the backend's own, identical for every
//!   participant since the whole room is on one Janus.
//! * Each [`handle::VideoRoomHandle`] opens one backend videoroom handle (a *leg*) per server
//!   it needs; requests go to the leg of the room's server unchanged, replies and events come
//!   back with the client's ids.
//! * When a room's server is lost, its participants are told (see the handle) and the room
//!   forgets its placement: the next join creates it again on a server the registry picks.
//! * Phase 2 (`plugins.videoroom_publishers_per_backend > 0`): a room may span servers,
//!   publishers filling one before the next is used; the [`coordinator::RoomCoordinator`] of
//!   the room mirrors every publisher to the room's other servers with Janus's remote
//!   publishers, following the plan of [`mirror::RoomMirror`].

pub mod admin;
pub mod checks;
pub mod coordinator;
pub mod directory;
pub mod handle;
pub mod mirror;
pub mod remote;

use std::sync::Arc;

use actix::prelude::*;
use futures_util::future::LocalBoxFuture;
use parking_lot::Mutex;
use serde_json::{json, Value};

use super::{AttachContext, AttachResult, AttachedHandle, Plugin};
use directory::Directory;
use handle::VideoRoomHandle;

pub const PACKAGE: &str = "janus.plugin.videoroom";

/// The room directory all videoroom handles of this proxy share.
pub type SharedDirectory = Arc<Mutex<Directory>>;

#[derive(Default)]
pub struct VideoRoomPlugin {
    directory: SharedDirectory,
    coordinators: coordinator::Coordinators,
    /// The plugin's side of the bus (phase 2 with a shared store; set at the first attach).
    remote: std::sync::OnceLock<Option<Arc<remote::VrRemote>>>,
}

impl VideoRoomPlugin {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn directory(&self) -> SharedDirectory {
        self.directory.clone()
    }
}

impl Plugin for VideoRoomPlugin {
    fn package(&self) -> &str {
        PACKAGE
    }

    fn descriptor(&self, env: &crate::plugin::env::PluginEnv) -> Option<Value> {
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
        let directory = self.directory.clone();
        let coordinators = self.coordinators.clone();
        if ctx.state.config.plugins.videoroom_publishers_per_backend > 0 {
            directory.lock().spans_servers = true;
            // Phase 2 with several proxies: the coordinators talk over the bus.
            self.remote.get_or_init(|| {
                let bus = ctx.state.store.bus()?;
                Some(remote::VrRemote::register(
                    &bus,
                    &ctx.state,
                    &directory,
                    &coordinators,
                ))
            });
        }
        Box::pin(async move {
            let handle = VideoRoomHandle::new(ctx, directory, coordinators).start();
            Ok(AttachedHandle {
                commands: handle.recipient(),
                backend: None,
            })
        })
    }
}
