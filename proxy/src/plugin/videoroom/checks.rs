//! Janus VideoRoom's request checks that the proxy makes itself (on requests it answers
//! without a backend): the same codes and texts as Janus 1.1.2's JSON validation.

use janus_protocol::JsonMap;
use serde_json::Value;

use crate::plugin::kit::PluginError;

pub const UNKNOWN_ERROR: u16 = 499;
pub const INVALID_REQUEST: u16 = 423;
pub const JOIN_FIRST: u16 = 424;
pub const NO_SUCH_ROOM: u16 = 426;
pub const ROOM_EXISTS: u16 = 427;
pub const MISSING_ELEMENT: u16 = 429;
pub const ID_EXISTS: u16 = 436;
pub const INVALID_ELEMENT: u16 = 430;
pub const UNAUTHORIZED: u16 = 433;

/// A VideoRoom error of the proxy's own (`{"videoroom":"event","error_code":…,"error":…}`):
/// these build them with Janus's codes and texts.
pub fn missing(element: &str) -> PluginError {
    PluginError::new(
        MISSING_ELEMENT,
        format!("Missing mandatory element ({element})"),
    )
}

pub fn invalid_type(element: &str, kind: Kind) -> PluginError {
    PluginError::new(
        INVALID_ELEMENT,
        format!("Invalid element type ({element} should be {})", kind.name()),
    )
}

pub fn no_such_room(room: u64) -> PluginError {
    PluginError::new(NO_SUCH_ROOM, format!("No such room ({room})"))
}

pub fn room_exists(room: u64) -> PluginError {
    PluginError::new(ROOM_EXISTS, format!("Room {room} already exists"))
}

pub fn unknown_request(request: &str) -> PluginError {
    PluginError::new(INVALID_REQUEST, format!("Unknown request '{request}'"))
}

pub fn id_exists(id: u64) -> PluginError {
    PluginError::new(ID_EXISTS, format!("User ID {id} already exists"))
}

pub fn join_first() -> PluginError {
    PluginError::new(JOIN_FIRST, "Invalid request on unconfigured participant")
}

/// A request the proxy could not get answered (no server, a backend refused the room, …).
pub fn unknown_error(why: &str) -> PluginError {
    PluginError::new(UNKNOWN_ERROR, why)
}

/// The plugin's `admin_key` refused, in VideoRoom's codes.
pub fn admin_key_error(e: crate::plugin::admin_key::AdminKeyError) -> PluginError {
    use crate::plugin::admin_key::AdminKeyError;
    let code = match e {
        AdminKeyError::Missing => MISSING_ELEMENT,
        AdminKeyError::NotAString => INVALID_ELEMENT,
        AdminKeyError::Wrong => UNAUTHORIZED,
    };
    PluginError::new(code, e.text())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Bool,
    /// Janus's `JSON_INTEGER` with `JANUS_JSON_PARAM_POSITIVE` (zero included).
    PositiveInt,
    Array,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Str => "a string",
            Kind::Bool => "a boolean",
            Kind::PositiveInt => "a positive integer",
            Kind::Array => "an array",
        }
    }

    fn accepts(self, v: &Value) -> bool {
        match self {
            Kind::Str => v.is_string(),
            Kind::Bool => v.is_boolean(),
            Kind::PositiveInt => v.is_u64(),
            Kind::Array => v.is_array(),
        }
    }
}

/// `create`'s parameters as Janus 1.1.2 checks them, in its order.
const CREATE: &[(&str, Kind)] = &[
    ("room", Kind::PositiveInt),
    ("description", Kind::Str),
    ("is_private", Kind::Bool),
    ("allowed", Kind::Array),
    ("secret", Kind::Str),
    ("pin", Kind::Str),
    ("require_pvtid", Kind::Bool),
    ("signed_tokens", Kind::Bool),
    ("bitrate", Kind::PositiveInt),
    ("bitrate_cap", Kind::Bool),
    ("fir_freq", Kind::PositiveInt),
    ("publishers", Kind::PositiveInt),
    ("audiocodec", Kind::Str),
    ("videocodec", Kind::Str),
    ("vp9_profile", Kind::Str),
    ("h264_profile", Kind::Str),
    ("opus_fec", Kind::Bool),
    ("opus_dtx", Kind::Bool),
    ("video_svc", Kind::Bool),
    ("audiolevel_ext", Kind::Bool),
    ("audiolevel_event", Kind::Bool),
    ("audio_active_packets", Kind::PositiveInt),
    ("audio_level_average", Kind::PositiveInt),
    ("videoorient_ext", Kind::Bool),
    ("playoutdelay_ext", Kind::Bool),
    ("transport_wide_cc_ext", Kind::Bool),
    ("record", Kind::Bool),
    ("rec_dir", Kind::Str),
    ("lock_record", Kind::Bool),
    ("permanent", Kind::Bool),
    ("notify_joining", Kind::Bool),
    ("require_e2ee", Kind::Bool),
    ("dummy_publisher", Kind::Bool),
    ("dummy_streams", Kind::Array),
];

fn check(body: &JsonMap, params: &[(&str, Kind)]) -> Result<(), PluginError> {
    for (name, kind) in params {
        if let Some(v) = body.get(*name) {
            if !kind.accepts(v) {
                return Err(invalid_type(name, *kind));
            }
        }
    }
    Ok(())
}

pub fn check_create(body: &JsonMap) -> Result<(), PluginError> {
    check(body, CREATE)
}

/// A room of the configuration (or of the admin API): `create`'s checks, and a non-zero
/// `room`. Its id.
pub fn check_config_room(body: &JsonMap) -> Result<u64, PluginError> {
    check_create(body)?;
    match room_of(body)? {
        0 => Err(PluginError::new(
            INVALID_ELEMENT,
            "room must be a positive integer (not 0)",
        )),
        id => Ok(id),
    }
}

/// The request name, lower-cased (Janus compares names case-insensitively).
pub fn request_of(body: &JsonMap) -> Result<String, PluginError> {
    match body.get("request") {
        None => Err(missing("request")),
        Some(Value::String(r)) => Ok(r.to_ascii_lowercase()),
        Some(_) => Err(invalid_type("request", Kind::Str)),
    }
}

/// The mandatory `room` of a room request.
pub fn room_of(body: &JsonMap) -> Result<u64, PluginError> {
    match body.get("room") {
        None => Err(missing("room")),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| invalid_type("room", Kind::PositiveInt)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::plugin::test_body as body;

    #[test]
    fn janus_texts() {
        assert_eq!(
            room_of(&body(json!({"room":"x"}))),
            Err(PluginError::new(
                430,
                "Invalid element type (room should be a positive integer)"
            ))
        );
        assert_eq!(
            room_of(&JsonMap::new()),
            Err(PluginError::new(429, "Missing mandatory element (room)"))
        );
        assert_eq!(room_of(&body(json!({"room":0}))), Ok(0));
        assert_eq!(
            check_create(&body(json!({"bitrate":-1}))),
            Err(PluginError::new(
                430,
                "Invalid element type (bitrate should be a positive integer)"
            ))
        );
        assert_eq!(
            check_create(&body(json!({"is_private":"yes"}))),
            Err(PluginError::new(
                430,
                "Invalid element type (is_private should be a boolean)"
            ))
        );
        assert_eq!(
            check_create(&body(json!({"room":5,"description":"d"}))),
            Ok(())
        );
        assert_eq!(
            request_of(&body(json!({"request":"JOIN"}))),
            Ok("join".into())
        );
        assert_eq!(
            request_of(&body(json!({"request":1}))),
            Err(PluginError::new(
                430,
                "Invalid element type (request should be a string)"
            ))
        );
    }
}
