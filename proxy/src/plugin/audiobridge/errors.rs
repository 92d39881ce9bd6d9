//! The audiobridge errors the proxy makes itself, with Janus 1.1.2's codes and wordings where
//! Janus has them; every other error a client sees is the backend's own, relayed.

use janus_protocol::ApiError;
use serde_json::json;

use crate::messages::BackendFrame;
use crate::plugin::admin_key::AdminKeyError;
use crate::plugin::kit::PluginError;

/// Janus's code for errors that fit no other (the proxy's own failures).
pub const UNKNOWN_ERROR: u16 = 499;
/// `JANUS_AUDIOBRIDGE_ERROR_ROOM_EXISTS`.
pub const ROOM_EXISTS: u16 = 486;
/// `JANUS_AUDIOBRIDGE_ERROR_MISSING_ELEMENT`, `…_INVALID_ELEMENT`, `…_UNAUTHORIZED`: the
/// codes of a missing, mistyped or wrong `admin_key`.
pub const MISSING_ELEMENT: u16 = 483;
pub const INVALID_ELEMENT: u16 = 484;
pub const UNAUTHORIZED: u16 = 489;

/// The proxy could not serve a request (no server, a server lost, …): `why` says it.
pub fn failed(why: impl Into<String>) -> PluginError {
    PluginError::new(UNKNOWN_ERROR, why)
}

/// A room the proxy does not know (any more).
pub fn no_such_room(room: u64) -> PluginError {
    failed(format!("No such room ({room})"))
}

/// The server a room lives on left the registry.
pub fn server_gone(server: &str) -> PluginError {
    failed(format!("backend server {server} is gone"))
}

/// The proxy stops.
pub fn shutting_down() -> PluginError {
    failed("the proxy is shutting down")
}

/// Janus's answer to a `create` of a room id that is taken.
pub fn room_exists(room: u64) -> PluginError {
    PluginError::new(ROOM_EXISTS, format!("Room {room} already exists"))
}

/// Janus's refusal of a request without the right `admin_key`.
pub fn admin_key(e: AdminKeyError) -> PluginError {
    let code = match e {
        AdminKeyError::Missing => MISSING_ELEMENT,
        AdminKeyError::NotAString => INVALID_ELEMENT,
        AdminKeyError::Wrong => UNAUTHORIZED,
    };
    PluginError::new(code, e.text())
}

/// The words for a link that went away before it answered.
fn lost_text(server: &str) -> String {
    format!("connection to backend server {server} lost")
}

/// A leg that could not be opened on `server`: Janus's reason, or the link gone.
pub fn leg_failed(server: &str, e: ApiError) -> PluginError {
    // The kit's words for an answer that never came (the link went away).
    if e.reason == "backend handle lost" {
        return failed(lost_text(server));
    }
    failed(e.reason)
}

/// The error frame for a request whose reply never came, as the link words it.
pub fn lost_reply(server: &str) -> BackendFrame {
    let frame = json!({"janus": "error", "error": {"code": 490, "reason": lost_text(server)}});
    BackendFrame::from(crate::plugin::kit::request::object(frame))
}

#[cfg(test)]
mod tests {
    use super::*;
    use janus_protocol::ErrorCode;

    #[test]
    fn janus_codes_and_words() {
        assert_eq!(room_exists(7).to_string(), "486 Room 7 already exists");
        assert_eq!(no_such_room(7).to_string(), "499 No such room (7)");
        assert_eq!(admin_key(AdminKeyError::Missing).code, 483);
        assert_eq!(admin_key(AdminKeyError::NotAString).code, 484);
        assert_eq!(admin_key(AdminKeyError::Wrong).code, 489);
        let lost = ApiError::new(ErrorCode::Unknown, "backend handle lost");
        assert_eq!(
            leg_failed("j1", lost).text,
            "connection to backend server j1 lost"
        );
        let janus = ApiError::new(ErrorCode::Unknown, "No such session");
        assert_eq!(leg_failed("j1", janus).text, "No such session");
        let frame = lost_reply("janus-a");
        assert_eq!(frame.kind(), "error");
        assert_eq!(
            crate::plugin::kit::request::api_error_of(&frame).reason,
            "connection to backend server janus-a lost"
        );
    }
}
