//! Plugins: what a client attaches to. A plugin turns an `attach` into a handle actor that
//! takes the handle's requests ([`HandleCommand`]) and sends the client its frames through the
//! session. The relay plugin forwards a stock Janus plugin to one backend; plugins that keep
//! state across backends (videocall, videoroom, …) implement the same trait.

pub mod admin_key;
pub mod affinity;
pub mod allowed;
pub mod audiobridge;
pub mod backend_mark;
pub mod env;
pub mod kit;
pub mod p2pcall;
pub mod relay;
pub mod rewrite;
pub mod room_expiry;
pub mod rooms_file;
pub mod settings;
pub mod videocall;
pub mod videoroom;

use std::collections::BTreeMap;
use std::sync::Arc;

use actix::prelude::*;
use futures_util::future::LocalBoxFuture;
use janus_protocol::ApiError;
use serde_json::Value;

pub use crate::messages::HandleCommand;

/// Everything a plugin needs to create a handle.
pub struct AttachContext {
    pub env: Arc<env::PluginEnv>,
    pub session_port: kit::SessionPort,
    pub session_id: u64,
    pub handle_id: u64,
    pub package: String,
    pub opaque_id: Option<String>,
}

/// A handle a plugin created.
pub struct AttachedHandle {
    pub commands: Recipient<HandleCommand>,
    /// The backend server it lives on, if one (for the admin API).
    pub backend: Option<String>,
    /// Its one backend handle (on `backend`), when a survivor can rebuild the client handle
    /// from it alone ([`Plugin::adopt`]); None for handles with state in the proxy.
    pub backend_handle: Option<u64>,
}

/// A client handle of a dead proxy to rebuild on its backend handle (see `adopt`).
pub struct AdoptContext {
    pub attach: AttachContext,
    /// The adopting link of the handle's server.
    pub server: String,
    pub link: crate::messages::LinkPort,
    pub backend_handle: u64,
    /// The plugin's own state of the handle, as it recorded it (`HandleRecord::state`).
    pub state: Value,
}

/// A rebuilt handle, and where its link sends its backend handle's events.
pub struct AdoptedHandle {
    pub handle: AttachedHandle,
    pub route: crate::messages::Route,
}

pub type AttachResult = Result<AttachedHandle, ApiError>;

pub trait Plugin: Send + Sync {
    /// The Janus package name, e.g. `janus.plugin.echotest`.
    fn package(&self) -> &str;

    /// The entry for `info`'s `plugins`, or None while the plugin is not available.
    fn descriptor(&self, env: &env::PluginEnv) -> Option<Value>;

    /// Creates the handle; resolves once it can take requests.
    fn attach(&self, ctx: AttachContext) -> LocalBoxFuture<'static, AttachResult>;

    /// Whether [`Plugin::adopt`] can rebuild a handle of this plugin.
    fn adoptable(&self) -> bool {
        false
    }

    /// Rebuilds a dead proxy's client handle on its live backend handle (docs/adoption.md),
    /// or None if this plugin cannot (the default: its state was in the dead proxy).
    fn adopt(&self, _ctx: AdoptContext) -> Option<AdoptedHandle> {
        None
    }

    /// Rebuilds a dead proxy's client handle that had no backend handle, from the plugin's
    /// own `state` alone (a videocall user not in a call: her name), or None if it cannot.
    fn adopt_unbound(&self, _attach: AttachContext, _state: Value) -> Option<AttachedHandle> {
        None
    }
}

/// The plugins clients can attach to, by package.
#[derive(Default)]
pub struct PluginRegistry {
    plugins: BTreeMap<String, Arc<dyn Plugin>>,
    /// The videoroom plugin's room book, when the plugin is on (for the admin API).
    pub videoroom: Option<videoroom::SharedRoomBook>,
    /// The audiobridge plugin's room book, when the plugin is on (shared rooms).
    pub audiobridge: Option<audiobridge::SharedRoomBook>,
    /// The p2pcall plugin's users and calls, when the plugin is on (for the admin console).
    pub p2pcall: Option<Arc<p2pcall::Shared>>,
    /// The videocall plugin's registered users, when the plugin is on (for the admin console).
    pub videocall: Option<videocall::SharedUserBook>,
    /// `plugins.rooms_file`, when set: the rooms saved with `permanent: true`.
    pub rooms_file: Option<rooms_file::SharedRoomsFile>,
}

impl PluginRegistry {
    pub fn from_config(config: &settings::PluginsConfig) -> Self {
        let mut registry = PluginRegistry::default();
        for package in &config.relay {
            let affinity = config.affinity_of(package);
            registry.add(Arc::new(relay::RelayPlugin::new(package, affinity)));
        }
        if config.p2pcall {
            let plugin = p2pcall::P2pCallPlugin::default();
            registry.p2pcall = Some(plugin.shared());
            registry.add(Arc::new(plugin));
        }
        // Added after the relayed ones: the proxy's own videocall wins over a relay of the
        // same package (a relayed videocall could only call users on the same backend).
        if config.videocall {
            let plugin = videocall::VideoCallPlugin::new();
            registry.videocall = Some(plugin.users());
            registry.add(Arc::new(plugin));
        }
        // Likewise: a relayed audiobridge could only mix handles that landed on one backend.
        if config.audiobridge {
            let plugin = audiobridge::AudioBridgePlugin::new(&config.audiobridge_rooms);
            registry.audiobridge = Some(plugin.rooms());
            registry.add(Arc::new(plugin));
        }
        // The proxy's own videoroom wins over a relay of the same package too (a relayed
        // room would be one room per backend, each with part of the participants).
        if config.videoroom {
            let plugin = videoroom::VideoRoomPlugin::new();
            let book = plugin.rooms();
            for room in &config.videoroom_rooms {
                // Checked by `ProxyConfig::validate`.
                if let Ok(id) = videoroom::checks::check_config_room(room) {
                    if book.lock().create(id, room).is_err() {
                        log::warn!("videoroom: room {id} configured twice; first kept");
                    }
                }
            }
            registry.videoroom = Some(book);
            registry.add(Arc::new(plugin));
        }
        registry
    }

    /// Reads `plugins.rooms_file` (if set) and adds its rooms to the plugins' room books, as
    /// Janus reads the rooms its plugins saved into their jcfg; they replace configured rooms
    /// of the same id (they are the saved, possibly edited, version).
    pub fn load_rooms_file(
        &mut self,
        config: &settings::PluginsConfig,
    ) -> Result<(), crate::error::ProxyError> {
        use crate::error::ProxyError;
        use crate::messages::cluster::{RoomKind, RoomOrigin};
        if config.rooms_file.as_os_str().is_empty() {
            return Ok(());
        }
        let file = rooms_file::RoomsFile::load(&config.rooms_file).map_err(ProxyError::Config)?;
        if let Some(book) = &self.videoroom {
            let mut book = book.lock();
            for (id, settings) in file.rooms(RoomKind::VideoRoom) {
                videoroom::checks::check_config_room(&settings).map_err(|e| {
                    ProxyError::Config(format!(
                        "plugins.rooms_file {}: videoroom room {id}: {}",
                        file.path().display(),
                        e.text
                    ))
                })?;
                book.remove(id);
                let _ = book.create(id, &settings);
                if let Some(room) = book.get_mut(id) {
                    room.permanent = true;
                    room.origin = crate::messages::cluster::RoomOrigin::File;
                }
            }
        }
        if let Some(rooms) = &self.audiobridge {
            let mut rooms = rooms.lock();
            for (id, settings) in file.rooms(RoomKind::AudioBridge) {
                rooms.add_unplaced(id, settings);
                rooms.set_origin(id, RoomOrigin::File, true);
            }
        }
        log::info!(
            "plugins.rooms_file {}: {} videoroom and {} audiobridge rooms",
            file.path().display(),
            file.rooms(RoomKind::VideoRoom).len(),
            file.rooms(RoomKind::AudioBridge).len()
        );
        self.rooms_file = Some(Arc::new(parking_lot::Mutex::new(file)));
        Ok(())
    }

    pub fn add(&mut self, plugin: Arc<dyn Plugin>) {
        self.plugins.insert(plugin.package().to_owned(), plugin);
    }

    pub fn get(&self, package: &str) -> Option<Arc<dyn Plugin>> {
        self.plugins.get(package).cloned()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Plugin>> {
        self.plugins.values()
    }
}

/// A request body for unit tests, from `json!({...})` (anything else: an empty body).
#[cfg(test)]
pub(crate) fn test_body(v: Value) -> janus_protocol::JsonMap {
    kit::request::object(v)
}
