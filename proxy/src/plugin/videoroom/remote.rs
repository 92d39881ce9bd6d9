//! Spanning rooms coordinated between proxies: the bus topic `videoroom`. Every message names
//! its room (`"room"`) and goes to that room's [`RoomCoordinator`] on this proxy (see the
//! coordinator for who owns a room and what the messages are):
//!
//! * to the owner, from a follower: `joined` (a request, answered `{"attendees": [...]}`),
//!   `left`, `active`, `gone`, `server_joined`, `server_lost`, `list` (a request, answered
//!   `{"participants": [...]}`), `resync` (everything the follower's handles said, sent when
//!   it sees a new owner);
//! * to a follower, from the owner: `notice` (for one of its handles: an event to deliver, or
//!   how to read the next event of its server).
//!
//! A `notice` for a room whose coordinator is not running here is dropped (its handles are
//! gone); any other message starts the room's coordinator if needed (an owner whose room
//! emptied a moment ago).
//!
//! [`RoomCoordinator`]: super::coordinator::RoomCoordinator

use std::collections::HashSet;
use std::sync::{Arc, Weak};

use serde_json::Value;

use super::coordinator::{self, FromBus, ProxiesAlive, TOPIC};
use super::{Coordinators, Shared, SharedRoomBook};
use crate::messages::cluster::{BusReply, ClusterBus, Topic};
use crate::plugin::env::PluginEnv;

/// The videoroom plugin's side of the bus.
pub struct VrRemote {
    /// The environment owns the bus, which owns this: weak.
    env: Weak<PluginEnv>,
    rooms: SharedRoomBook,
    coordinators: Coordinators,
}

impl VrRemote {
    /// Registers the topic on `bus` (once per proxy: the plugin keeps it).
    pub fn register(bus: &Arc<dyn ClusterBus>, shared: &Shared) -> Arc<VrRemote> {
        let remote = Arc::new(VrRemote {
            env: Arc::downgrade(&shared.env),
            rooms: shared.rooms.clone(),
            coordinators: shared.coordinators.clone(),
        });
        let topic: Arc<dyn Topic> = remote.clone();
        bus.register(TOPIC, Box::new(move || topic));
        remote
    }
}

impl Topic for VrRemote {
    fn deliver(&self, from: String, body: Value, reply: Option<BusReply>) {
        let Some(room) = body.get("room").and_then(Value::as_u64) else {
            return log::warn!("videoroom: message without a room from proxy {from}");
        };
        let target = if body.get("t").and_then(Value::as_str) == Some("notice") {
            coordinator::running(&self.coordinators, room)
        } else {
            self.env.upgrade().map(|env| {
                let shared = Shared {
                    env,
                    rooms: self.rooms.clone(),
                    coordinators: self.coordinators.clone(),
                };
                coordinator::start(&shared, room)
            })
        };
        if let Some(c) = target {
            c.do_send(FromBus { from, body, reply });
        }
    }

    fn proxies_alive(&self, alive: &HashSet<String>) {
        let running: Vec<_> = self.coordinators.lock().values().cloned().collect();
        for c in running {
            c.do_send(ProxiesAlive(alive.clone()));
        }
    }
}
