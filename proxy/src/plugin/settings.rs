//! The `[plugins]` section of the configuration: which plugins the proxy offers and their
//! settings. Here, not in the configuration loader, so that the plugins read their settings
//! without importing it.

use serde::{Deserialize, Serialize};

use super::affinity::{Affinity, CLUSTER_BY_DEFAULT};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Janus plugins relayed as they are to one backend per handle.
    pub relay: Vec<String>,
    /// How each relayed plugin's handles are placed (`[plugins.affinity]`, package →
    /// `"none"` or `"cluster"`): `cluster` puts every handle of the plugin on one backend,
    /// the same for every proxy (see `plugin::affinity`). A plugin not listed: `cluster` for
    /// textroom, `none` for the others.
    pub affinity: std::collections::BTreeMap<String, Affinity>,
    /// janus-cloud's signalling-only call plugin `janus.plugin.p2pcall` (videocall API; the
    /// proxy relays SDP and candidates between the two peers, no backend involved).
    pub p2pcall: bool,
    /// The proxy's own `janus.plugin.videocall` (users register with the proxy, each call is
    /// bridged by one backend). Takes precedence over a relay of the same package.
    pub videocall: bool,
    /// The proxy's own `janus.plugin.audiobridge` (a room book in the proxy, each room
    /// mixed by one backend chosen when it is first joined, re-created elsewhere if that
    /// backend is lost). Takes precedence over a relay of the same package.
    pub audiobridge: bool,
    /// AudioBridge rooms the proxy offers from the start, like the `room-<id>` sections of
    /// Janus's `janus.plugin.audiobridge.jcfg` (e.g. the demo's room 1234): each is the
    /// fields of a `create` request (`room` required; `description`, `secret`, `pin`,
    /// `sampling_rate`, `is_private`, `allowed`, …). Created on a backend at the first join.
    pub audiobridge_rooms: Vec<janus_protocol::JsonMap>,
    /// The proxy's own `janus.plugin.videoroom` (rooms owned by the proxy, each room on one
    /// backend chosen at its first join). Takes precedence over a relay of the same package.
    pub videoroom: bool,
    /// Videoroom rooms that exist from start-up, each a table of `create` parameters with a
    /// non-zero `room` (`[[plugins.videoroom_rooms]]`). Like rooms created through the API,
    /// each is created on a backend when it is first needed.
    pub videoroom_rooms: Vec<janus_protocol::JsonMap>,
    /// Rooms spanning servers: a videoroom room lives on one server until that server cannot
    /// take its next publisher or subscriber (drained, breaker open, full by
    /// `registry.handle_capacity` or its reported load, or at a limit below); it then spans
    /// to another server, every publisher mirrored there with Janus's remote publishers.
    /// False: every room stays on the server it was placed on.
    pub videoroom_spanning: bool,
    /// Spanning rooms: at most N of a room's publishers per server (0: no fixed limit, only
    /// the server's capacity).
    pub videoroom_publishers_per_backend: usize,
    /// Spanning rooms: at most N of a room's subscribers per server (0: no fixed limit).
    pub videoroom_subscribers_per_backend: usize,
    /// Spanning rooms: seconds a server of a room (not its first) stays without any of the
    /// room's participants or subscribers before the room leaves it (its mirrors removed,
    /// its backend room destroyed there). One proxy only: with a shared store another
    /// proxy's subscribers there are not known, so the room keeps its servers.
    pub videoroom_mirror_grace_s: f64,
    /// Janus VideoRoom's `admin_key` (empty: none): when set, `create` must carry it (429
    /// missing, 433 wrong) and `list` with it also shows private rooms.
    pub videoroom_admin_key: String,
    /// Janus AudioBridge's `admin_key` (empty: none): as for the videoroom (483, 489).
    pub audiobridge_admin_key: String,
    /// Janus's `lock_rtp_forward` (with an admin key only): `rtp_forward` and
    /// `stop_rtp_forward` need the plugin's `admin_key` too.
    pub videoroom_lock_rtp_forward: bool,
    pub audiobridge_lock_rtp_forward: bool,
    /// Where the rooms created or edited with `permanent: true` are kept across restarts
    /// (a JSON file the proxy rewrites atomically; empty: `permanent` saves nothing).
    pub rooms_file: std::path::PathBuf,
    /// The start of the description of every videoroom and audiobridge room the proxy creates
    /// on a backend (janus-cloud's `januscloud-`), so that janus-sentinel's sweeper can tell
    /// them from an operator's own rooms. Clients never see it. Empty: rooms are created as
    /// the clients describe them, and no sentinel sweeps them.
    pub backend_room_mark: String,
    /// The `secret` of every room the proxy creates on a backend, instead of the client's
    /// (the proxy checks the client's itself), so that janus-sentinel's sweeper (its
    /// `sweeper.room_secret`, the same value) can destroy the rooms a crashed proxy left
    /// behind: Janus asks for a room's own secret to destroy it. Empty: the backend rooms
    /// have the clients' secrets, and those with one are not swept.
    pub backend_room_secret: String,
    /// Rooms that clients created (videoroom and audiobridge `create` without `permanent`)
    /// are destroyed, in the room book, the shared store and on their backends, once they
    /// have had no participant for this long (seconds, fractions allowed; janus-cloud's
    /// `room_auto_destroy_timeout`). 0: never. Configured, saved, permanent and admin-API
    /// rooms are kept. See `plugin::room_expiry`.
    pub room_auto_destroy_s: f64,
}

/// As janus-cloud's default `room_auto_destroy_timeout`: long enough for a meeting's people to
/// come back after a dropped connection or a reload, short enough that abandoned rooms do not
/// pile up in the book, in Redis and on the backends.
pub const DEFAULT_ROOM_AUTO_DESTROY_S: f64 = 600.0;

/// The longest idle time taken (a year): beyond, say 0 (never).
const MAX_ROOM_AUTO_DESTROY_S: f64 = 365.0 * 24.0 * 3600.0;

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            relay: [
                "janus.plugin.echotest",
                "janus.plugin.streaming",
                "janus.plugin.recordplay",
                "janus.plugin.textroom",
                "janus.plugin.nosip",
                "janus.plugin.sip",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            affinity: Default::default(),
            p2pcall: true,
            videocall: true,
            audiobridge: true,
            audiobridge_rooms: Vec::new(),
            videoroom: true,
            videoroom_rooms: Vec::new(),
            videoroom_spanning: true,
            videoroom_publishers_per_backend: 0,
            videoroom_subscribers_per_backend: 0,
            videoroom_mirror_grace_s: 30.0,
            videoroom_admin_key: String::new(),
            audiobridge_admin_key: String::new(),
            videoroom_lock_rtp_forward: false,
            audiobridge_lock_rtp_forward: false,
            rooms_file: std::path::PathBuf::new(),
            backend_room_mark: super::backend_mark::DEFAULT_MARK.to_owned(),
            backend_room_secret: String::new(),
            room_auto_destroy_s: DEFAULT_ROOM_AUTO_DESTROY_S,
        }
    }
}

impl PluginsConfig {
    /// How `package`'s handles are placed when relayed.
    pub fn affinity_of(&self, package: &str) -> Affinity {
        match self.affinity.get(package) {
            Some(affinity) => *affinity,
            None if CLUSTER_BY_DEFAULT.contains(&package) => Affinity::Cluster,
            None => Affinity::None,
        }
    }

    /// `room_auto_destroy_s` as a duration (None: rooms never expire).
    pub fn room_auto_destroy(&self) -> Option<std::time::Duration> {
        let s = self.room_auto_destroy_s;
        (s.is_finite() && s > 0.0 && s <= MAX_ROOM_AUTO_DESTROY_S)
            .then(|| std::time::Duration::from_secs_f64(s))
    }

    /// Checks what the plugins cannot take; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        let expiry = self.room_auto_destroy_s;
        if !expiry.is_finite() || !(0.0..=MAX_ROOM_AUTO_DESTROY_S).contains(&expiry) {
            return Err(format!(
                "plugins.room_auto_destroy_s: seconds from 0 (never) to {MAX_ROOM_AUTO_DESTROY_S}, not {expiry}"
            ));
        }
        if let Some(package) = self.affinity.keys().find(|p| !self.relay.contains(p)) {
            return Err(format!(
                "plugins.affinity: {package} is not relayed (add it to plugins.relay)"
            ));
        }
        let mark = &self.backend_room_mark;
        if mark.chars().count() > 64 || mark.chars().any(char::is_control) {
            return Err(
                "plugins.backend_room_mark: at most 64 characters, no control characters".into(),
            );
        }
        if !(self.videoroom_mirror_grace_s.is_finite() && self.videoroom_mirror_grace_s >= 0.0) {
            return Err("plugins.videoroom_mirror_grace_s: a number of seconds, 0 or more".into());
        }
        let secret = &self.backend_room_secret;
        if secret.chars().count() > 256 || secret.chars().any(char::is_control) {
            return Err(
                "plugins.backend_room_secret: at most 256 characters, no control characters".into(),
            );
        }
        let mut rooms = std::collections::HashSet::new();
        for (i, room) in self.videoroom_rooms.iter().enumerate() {
            let id = super::videoroom::checks::check_config_room(room)
                .map_err(|e| format!("plugins.videoroom_rooms[{i}]: {}", e.text))?;
            if !rooms.insert(id) {
                return Err(format!("plugins.videoroom_rooms: room {id} appears twice"));
            }
        }
        Ok(())
    }
}
