//! The videocall plugin: Janus's VideoCall API (`list`, `register`, `call`, `accept`, `set`,
//! `hangup`) served by the proxy, with calls bridged by one backend Janus.
//!
//! Users register with the proxy: the [`users::UserBook`] maps usernames to the
//! [`handle::VideoCallHandle`] actors that own them, whatever backend their calls will use.
//! A call is placed on one backend server chosen by the registry when the caller calls; both
//! handles then open a backend videocall handle there (a *leg*), register their usernames on
//! it, and the caller's `call` with its offer goes to the backend, which bridges the media and
//! sends the callee's leg the `incomingcall`. From then on the backend is the authority on the
//! call: requests go to its legs ([`route`]), its events come back with the client's ids.
//!
//! With adoption on, a dead proxy's users and their live calls are rebuilt by a survivor
//! ([`Plugin::adopt`], docs/adoption.md "Videocall"); their peers wait for it ([`calls`]).
//!
//! The handle is built on the handle kit ([`crate::plugin::kit`]); [`errors`] holds the
//! VideoCall API's codes and wordings, which p2pcall shares.

pub mod calls;
pub mod errors;
pub mod handle;
pub mod remote;
pub mod route;
pub mod users;

use std::sync::{Arc, OnceLock};

use actix::prelude::*;
use futures_util::future::LocalBoxFuture;
use parking_lot::Mutex;
use serde_json::{json, Value};

use super::env::PluginEnv;
use super::kit::BackendLeg;
use super::{AdoptContext, AdoptedHandle, AttachContext, AttachResult, AttachedHandle, Plugin};
use crate::messages::Route;
use handle::VideoCallHandle;
use users::UserBook;

pub const PACKAGE: &str = "janus.plugin.videocall";

/// The users all videocall handles of this proxy share.
pub type SharedUserBook = Arc<Mutex<UserBook<Addr<VideoCallHandle>>>>;

#[derive(Default)]
pub struct VideoCallPlugin {
    users: SharedUserBook,
    /// The plugin's side of the bus between proxies, made at the first attach (the plugins
    /// get the store's ports with their first handle); None without a shared store.
    remote: OnceLock<Option<Arc<remote::VideoCallRemote>>>,
}

impl VideoCallPlugin {
    pub fn new() -> Self {
        Self::default()
    }

    /// The registered users (for the admin console).
    pub fn users(&self) -> SharedUserBook {
        self.users.clone()
    }

    /// The plugin's side of the bus (made once, with the first handle).
    fn remote(&self, env: &PluginEnv) -> Option<Arc<remote::VideoCallRemote>> {
        self.remote
            .get_or_init(|| {
                let bus = env.cluster.bus.as_ref()?;
                // A call whose peer's proxy died waits for its adoption: the window, and the
                // time it takes to find the death and adopt (as a `claim` waits for it).
                let wait = match env.adopt_window.is_zero() {
                    true => std::time::Duration::ZERO,
                    false => {
                        env.adopt_window
                            + env.heartbeat_ttl
                            + env.sync_interval * 3
                            + std::time::Duration::from_secs(2)
                    }
                };
                Some(remote::VideoCallRemote::register(bus, &self.users, wait))
            })
            .clone()
    }
}

impl Plugin for VideoCallPlugin {
    fn package(&self) -> &str {
        PACKAGE
    }

    /// The backend's own descriptor when one is connected (so `info` reads as a Janus's);
    /// Janus 1.1.2's otherwise: the plugin is the proxy's and always available.
    fn descriptor(&self, env: &crate::plugin::env::PluginEnv) -> Option<Value> {
        Some((env.descriptors)(PACKAGE).unwrap_or_else(|| {
            json!({
                "name": "JANUS VideoCall plugin",
                "author": "Meetecho s.r.l.",
                "description": "This is a simple video call plugin for Janus, allowing two WebRTC peers to call each other through a server.",
                "version_string": "0.0.6",
                "version": 6
            })
        }))
    }

    /// A videocall handle needs no backend until it is in a call: attaching always works.
    fn attach(&self, ctx: AttachContext) -> LocalBoxFuture<'static, AttachResult> {
        let users = self.users.clone();
        let remote = self.remote(&ctx.env);
        Box::pin(async move {
            let handle = VideoCallHandle::new(ctx, users, remote).start();
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

    /// A user in a live call, rebuilt on her call's leg.
    fn adopt(&self, ctx: AdoptContext) -> Option<AdoptedHandle> {
        let AdoptContext {
            attach,
            server,
            link,
            backend_handle,
            state,
        } = ctx;
        let remote = self.remote(&attach.env);
        let leg = BackendLeg::adopted(server.clone(), link, backend_handle);
        let (addr, token) =
            VideoCallHandle::adopted(attach, self.users.clone(), remote, &state, Some(leg))?;
        Some(AdoptedHandle {
            route: Route {
                to: addr.clone().recipient(),
                token,
            },
            handle: AttachedHandle {
                commands: addr.recipient(),
                backend: Some(server),
                // Its state is in the proxy: it says itself what a survivor needs.
                backend_handle: None,
            },
        })
    }

    /// A registered user not in a call: her name.
    fn adopt_unbound(&self, attach: AttachContext, state: Value) -> Option<AttachedHandle> {
        let remote = self.remote(&attach.env);
        let (addr, _) = VideoCallHandle::adopted(attach, self.users.clone(), remote, &state, None)?;
        Some(AttachedHandle {
            commands: addr.recipient(),
            backend: None,
            backend_handle: None,
        })
    }
}
