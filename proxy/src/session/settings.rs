//! The `[general]` section of the configuration: what Janus's own `general` section says of
//! sessions, and the wire format.

use janus_protocol::JsonStyle;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeneralConfig {
    /// Shown as `server-name` in `info`.
    pub server_name: String,
    /// Seconds without a request before a client session times out (0: never), as Janus's
    /// `session_timeout`.
    pub session_timeout: u64,
    /// Seconds a session outlives its WebSocket, waiting to be `claim`ed (0: destroyed at
    /// once), as Janus's `reclaim_session_timeout`.
    pub reclaim_session_timeout: u64,
    /// Wire format of frames sent to clients: indented (Janus's default), plain or compact.
    pub json: JsonStyle,
}

impl Default for GeneralConfig {
    fn default() -> Self {
        GeneralConfig {
            server_name: "janus-proxy".into(),
            session_timeout: 60,
            reclaim_session_timeout: 0,
            json: JsonStyle::Indented,
        }
    }
}
