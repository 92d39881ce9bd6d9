//! Videoroom rooms that span servers (phase 2) coordinated between proxies: the bus topic
//! `videoroom`. Every message names its room (`"room"`) and goes to that room's
//! [`RoomCoordinator`] on this proxy (see the coordinator for who owns a room and what the
//! messages are):
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

use std::collections::HashSet;
use std::sync::{Arc, Weak};

use serde_json::Value;

use super::coordinator::{self, Coordinators, FromBus, ProxiesAlive, TOPIC};
use super::SharedDirectory;
use crate::state::ProxyState;
use crate::store::bus::{Bus, Reply, Topic};

/// The videoroom plugin's side of the bus.
pub struct VrRemote {
    state: Weak<ProxyState>,
    directory: SharedDirectory,
    coordinators: Coordinators,
}

impl VrRemote {
    /// Registers the topic on `bus` (once per proxy: the plugin keeps it).
    pub fn register(
        bus: &Arc<Bus>,
        state: &Arc<ProxyState>,
        directory: &SharedDirectory,
        coordinators: &Coordinators,
    ) -> Arc<VrRemote> {
        let remote = Arc::new(VrRemote {
            // The state owns the store, which owns the bus, which owns this: weak.
            state: Arc::downgrade(state),
            directory: directory.clone(),
            coordinators: coordinators.clone(),
        });
        let topic = remote.clone();
        bus.register(TOPIC, move || topic);
        remote
    }
}

impl Topic for VrRemote {
    fn deliver(&self, from: String, body: Value, reply: Option<Reply>) {
        let Some(room) = body.get("room").and_then(Value::as_u64) else {
            return log::warn!("videoroom: message without a room from proxy {from}");
        };
        let target = if body.get("t").and_then(Value::as_str) == Some("notice") {
            coordinator::running(&self.coordinators, room)
        } else {
            self.state.upgrade().map(|state| {
                coordinator::coordinator(&self.coordinators, &state, &self.directory, room)
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
