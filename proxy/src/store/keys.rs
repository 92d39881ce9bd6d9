//! The names of the shared store's keys and channels, all under the configured prefix
//! (`januscloud`, janus-cloud's own, by default). The layout is described in `docs/cluster.md`.

use crate::messages::cluster::RoomKind;

#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    // ---- servers ----

    /// A reported server's hash (janus-cloud's key).
    pub fn server(&self, name: &str) -> String {
        format!("{}:backend_servers:{name}", self.prefix)
    }

    /// The set of reported servers' names (the hashes expire; the set is cleaned on read).
    pub fn server_index(&self) -> String {
        format!("{}:backend_server_index", self.prefix)
    }

    // ---- proxies ----

    /// A proxy's heartbeat (expires `heartbeat_ttl_s` after its last write).
    pub fn proxy(&self, id: &str) -> String {
        format!("{}:proxies:{id}", self.prefix)
    }

    /// The set of the proxies that wrote a heartbeat and were not yet cleaned up after.
    pub fn proxy_index(&self) -> String {
        format!("{}:proxy_index", self.prefix)
    }

    /// A proxy's backend sessions (see `reaper`).
    pub fn sessions(&self, id: &str) -> String {
        format!("{}:proxy_sessions:{id}", self.prefix)
    }

    /// A proxy's client sessions as a survivor adopts them: a hash, session id → JSON
    /// `SessionRecord` (see `messages::adoption`).
    pub fn adoptable(&self, id: &str) -> String {
        format!("{}:proxy_client_sessions:{id}", self.prefix)
    }

    /// The backend handles a proxy's links hold: a set of `<server>/<backend session>/<handle>`.
    pub fn backend_handles(&self, id: &str) -> String {
        format!("{}:proxy_backend_handles:{id}", self.prefix)
    }

    /// The lock of the survivor that cleans up after dead proxy `id`.
    pub fn reaping(&self, id: &str) -> String {
        format!("{}:reaping:{id}", self.prefix)
    }

    /// The rooms in which proxy `id` recorded participants (`<plugin>:<room>`).
    pub fn proxy_rooms(&self, id: &str) -> String {
        format!("{}:proxy_rooms:{id}", self.prefix)
    }

    /// A proxy's channel: the bus messages for it.
    pub fn channel(&self, id: &str) -> String {
        format!("{}:proxy:{id}", self.prefix)
    }

    // ---- the change feed ----

    /// The version of the shared state (`INCR` with every notice).
    pub fn version(&self) -> String {
        format!("{}:version", self.prefix)
    }

    /// The channel of the notices, to every proxy.
    pub fn changes(&self) -> String {
        format!("{}:changes", self.prefix)
    }

    // ---- users ----

    /// A user's hash (janus-cloud's key for videocall).
    pub fn user(&self, topic: &str, name: &str) -> String {
        format!("{}:{topic}_users:{name}", self.prefix)
    }

    /// A topic's users: name → proxy id, one hash (read whole by a resync only).
    pub fn user_index(&self, topic: &str) -> String {
        format!("{}:{topic}_user_index", self.prefix)
    }

    // ---- rooms ----

    pub fn room(&self, kind: RoomKind, id: u64) -> String {
        format!("{}:{}_rooms:{id}", self.prefix, kind.name())
    }

    pub fn participants(&self, kind: RoomKind, id: u64) -> String {
        format!("{}:{}_participants:{id}", self.prefix, kind.name())
    }

    /// The set of a plugin's room ids.
    pub fn room_index(&self, kind: RoomKind) -> String {
        format!("{}:{}_room_index", self.prefix, kind.name())
    }

    /// The proxy coordinating a room that spans servers.
    pub fn owner(&self, kind: RoomKind, id: u64) -> String {
        format!("{}:{}_owner:{id}", self.prefix, kind.name())
    }

    // ---- homes ----

    /// The backend server of a plugin with cluster affinity (`plugins.affinity`).
    pub fn home(&self, package: &str) -> String {
        format!("{}:home:{package}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn janus_cloud_names_are_kept() {
        let k = Keys::new("januscloud");
        assert_eq!(k.server("j1"), "januscloud:backend_servers:j1");
        assert_eq!(k.user("videocall", "bob"), "januscloud:videocall_users:bob");
        assert_eq!(
            k.room(RoomKind::AudioBridge, 7),
            "januscloud:audiobridge_rooms:7"
        );
        assert_eq!(k.channel("p1"), "januscloud:proxy:p1");
        assert_eq!(k.changes(), "januscloud:changes");
    }
}
