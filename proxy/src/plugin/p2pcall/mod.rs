//! p2pcall (`janus.plugin.p2pcall`): janus-cloud's signalling-only call plugin. Two clients
//! call each other with Janus videocall's API (events keep the `videocall` key, as in
//! janus-cloud), but no media server is involved: the proxy relays the offer, the answer, later
//! re-offers and the ICE candidates between the two handles, and tells both sides `webrtcup`
//! once the answer is relayed. The peers' PeerConnections connect to each other directly.
//!
//! Every handle is a [`handle::P2pCallHandle`] actor; the shared [`users::UserBook`] maps
//! registered names to those actors and pairs callers with callees. No backend is used. With a
//! shared store, names are claimed cluster-wide and calls reach users of other proxies
//! ([`remote`]). Requests, codes and wordings are the VideoCall API's
//! ([`crate::plugin::videocall::errors`]); [`checks`] holds what is p2pcall's own.

pub mod checks;
pub mod handle;
pub mod remote;
pub mod users;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use actix::prelude::*;
use futures_util::future::LocalBoxFuture;
use parking_lot::Mutex;
use serde_json::{json, Value};

use super::{AttachContext, AttachResult, AttachedHandle, Plugin};
use handle::P2pCallHandle;
use users::UserBook;

pub const PACKAGE: &str = "janus.plugin.p2pcall";
/// janus-cloud's p2pcall is version 6; the wire format is the same.
const VERSION: u64 = 6;
const VERSION_STRING: &str = "0.0.6";

/// What the handles of one proxy share.
pub struct Shared {
    pub users: Mutex<UserBook<Addr<P2pCallHandle>>>,
    /// Proxy-wide handle keys: handle ids are only unique within a session, and a handle must
    /// never remove a registration that is not its own.
    next_key: AtomicU64,
    /// The plugin's side of the bus between proxies, made at the first attach (the plugins
    /// get the store's ports with their first handle); None without a shared store.
    remote: OnceLock<Option<Arc<remote::P2pRemote>>>,
}

impl Shared {
    fn next_key(&self) -> u64 {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    /// Users and peers on other proxies (None without a shared store).
    pub fn remote(&self) -> Option<Arc<remote::P2pRemote>> {
        self.remote.get().cloned().flatten()
    }
}

pub struct P2pCallPlugin {
    shared: Arc<Shared>,
}

impl P2pCallPlugin {
    /// The users and their calls (for the admin console).
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }
}

impl Default for P2pCallPlugin {
    fn default() -> Self {
        P2pCallPlugin {
            shared: Arc::new(Shared {
                users: Mutex::new(UserBook::default()),
                next_key: AtomicU64::new(1),
                remote: OnceLock::new(),
            }),
        }
    }
}

impl Plugin for P2pCallPlugin {
    fn package(&self) -> &str {
        PACKAGE
    }

    /// Always available: it needs no backend.
    fn descriptor(&self, _: &crate::plugin::env::PluginEnv) -> Option<Value> {
        Some(json!({
            "name": "JANUS P2PCall plugin (janus-proxy)",
            "author": crate::info::AUTHOR,
            "description": "Peer-to-peer calls with the VideoCall API: the proxy relays the signalling, media flows directly between the two peers.",
            "version_string": VERSION_STRING,
            "version": VERSION,
        }))
    }

    fn attach(&self, ctx: AttachContext) -> LocalBoxFuture<'static, AttachResult> {
        self.shared.remote.get_or_init(|| {
            let bus = ctx.env.cluster.bus.as_ref()?;
            Some(remote::P2pRemote::register(bus, &self.shared))
        });
        let handle = P2pCallHandle::new(self.shared.clone(), self.shared.next_key(), ctx).start();
        Box::pin(async move {
            Ok(AttachedHandle {
                commands: handle.recipient(),
                backend: None,
                backend_handle: None,
            })
        })
    }
}
