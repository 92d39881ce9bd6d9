//! The audiobridge plugin: Janus's AudioBridge API served through the proxy, each room mixed by
//! one backend Janus.
//!
//! The proxy owns the room book ([`book::RoomBook`]): every room created through it, with
//! its settings, and the backend server its mixer lives on, if any. A
//! `create` is sent as it is to a server (so every validation error and `admin_key` check is
//! Janus's own); once Janus created the room it is destroyed there again and recorded
//! without a server. The first `join` (or any request about the room) places it on a server
//! chosen by the registry's policy and creates it there with the same id and settings; the
//! backend room then checks `secret` and `pin` itself. Every request about a room goes to
//! the room's server through the client handle's backend handle there (a *leg* of the kit's
//! [`Legs`](crate::plugin::kit::Legs)), including the `join` that makes the handle a
//! participant: its PeerConnection is with that server. A room whose server was lost is
//! placed again the same way by the next request about it.
//!
//! `list` and `exists` are answered by the proxy (from the book and the rooms' servers).
//!
//! The files: `book.rs` (the rooms), `verb.rs` (requests and where they go), `answers.rs`
//! (what Janus's answers say, the bodies the proxy sends), `errors.rs` (the proxy's own
//! errors), `handle/` (the handle actor).

pub mod answers;
pub mod book;
pub mod errors;
pub mod handle;
pub mod verb;

use std::sync::Arc;

use actix::prelude::*;
use futures_util::future::LocalBoxFuture;
use parking_lot::Mutex;
use serde_json::{json, Value};

use super::kit::BackendLeg;
use super::{AdoptContext, AdoptedHandle, AttachContext, AttachResult, AttachedHandle, Plugin};
use crate::messages::Route;
use book::RoomBook;
use handle::AudioBridgeHandle;

pub const PACKAGE: &str = "janus.plugin.audiobridge";

/// The room book all audiobridge handles of this proxy share (the shared store keeps it in
/// step with the other proxies' through [`LocalRooms`](crate::messages::cluster::LocalRooms)).
pub type SharedRoomBook = Arc<Mutex<RoomBook>>;

#[derive(Default)]
pub struct AudioBridgePlugin {
    rooms: SharedRoomBook,
}

impl AudioBridgePlugin {
    /// The plugin, with the rooms of `plugins.audiobridge_rooms` (not on any backend yet).
    pub fn new(static_rooms: &[janus_protocol::JsonMap]) -> Self {
        let plugin = Self::default();
        {
            let mut rooms = plugin.rooms.lock();
            for config in static_rooms {
                if let Some(id) = config.get("room").and_then(Value::as_u64) {
                    let mut config = config.clone();
                    config.remove("request");
                    config.remove("permanent");
                    rooms.add_unplaced(id, config);
                }
            }
        }
        plugin
    }

    /// The room book (shared with the other proxies by the store, if any).
    pub fn rooms(&self) -> SharedRoomBook {
        self.rooms.clone()
    }
}

impl Plugin for AudioBridgePlugin {
    fn package(&self) -> &str {
        PACKAGE
    }

    fn descriptor(&self, env: &crate::plugin::env::PluginEnv) -> Option<Value> {
        Some((env.descriptors)(PACKAGE).unwrap_or_else(|| {
            json!({
                "name": "JANUS AudioBridge plugin",
                "author": "Meetecho s.r.l.",
                "description": "This is a plugin implementing an audio conference bridge for Janus, mixing Opus streams.",
                "version_string": "0.0.12",
                "version": 12
            })
        }))
    }

    /// An audiobridge handle needs no backend until it asks something of a room.
    fn attach(&self, ctx: AttachContext) -> LocalBoxFuture<'static, AttachResult> {
        let rooms = self.rooms.clone();
        Box::pin(async move {
            let handle = AudioBridgeHandle::new(ctx, rooms).start();
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

    /// A participant (joined, with its leg) is rebuilt on its leg; nothing else is kept.
    fn adopt(&self, ctx: AdoptContext) -> Option<AdoptedHandle> {
        let AdoptContext {
            attach,
            server,
            link,
            backend_handle,
            state,
        } = ctx;
        let leg = BackendLeg::adopted(server.clone(), link, backend_handle);
        let (handle, token) = AudioBridgeHandle::adopted(attach, self.rooms.clone(), leg, &state)?;
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
