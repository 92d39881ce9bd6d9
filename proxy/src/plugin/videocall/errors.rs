//! The VideoCall plugin's error codes and texts, and its checks of request elements, worded
//! exactly as Janus 1.1.2's `janus_videocall.c` words them (checked against a real Janus by
//! `actors-tests/tests/videocall.rs`).

use janus_protocol::JsonMap;
use serde_json::Value;

/// Failures the proxy itself causes (no backend server, backend lost during call setup).
pub const UNKNOWN_ERROR: u16 = 499;
/// Unreachable through the Janus API (the core refuses a message without a body object).
pub const NO_MESSAGE: u16 = 470;
pub const INVALID_JSON: u16 = 471;
pub const INVALID_REQUEST: u16 = 472;
pub const REGISTER_FIRST: u16 = 473;
pub const INVALID_ELEMENT: u16 = 474;
pub const MISSING_ELEMENT: u16 = 475;
pub const USERNAME_TAKEN: u16 = 476;
pub const ALREADY_REGISTERED: u16 = 477;
pub const NO_SUCH_USERNAME: u16 = 478;
pub const USE_ECHO_TEST: u16 = 479;
pub const ALREADY_IN_CALL: u16 = 480;
pub const NO_CALL: u16 = 481;
pub const MISSING_SDP: u16 = 482;

/// A videocall error: `{"videocall":"event","error_code":code,"error":text}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcError {
    pub code: u16,
    pub text: String,
}

impl VcError {
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        VcError {
            code,
            text: text.into(),
        }
    }

    pub fn missing(element: &str) -> Self {
        VcError::new(
            MISSING_ELEMENT,
            format!("Missing mandatory element ({element})"),
        )
    }

    pub fn wrong_type(element: &str, expected: &str) -> Self {
        VcError::new(
            INVALID_ELEMENT,
            format!("Invalid element type ({element} should be {expected})"),
        )
    }

    pub fn unknown_request(request: &str) -> Self {
        VcError::new(INVALID_REQUEST, format!("Unknown request ({request})"))
    }

    pub fn register_first() -> Self {
        VcError::new(REGISTER_FIRST, "Register a username first")
    }

    pub fn taken(username: &str) -> Self {
        VcError::new(
            USERNAME_TAKEN,
            format!("Username '{username}' already taken"),
        )
    }

    pub fn already_registered(username: &str) -> Self {
        VcError::new(
            ALREADY_REGISTERED,
            format!("Already registered ({username})"),
        )
    }

    pub fn no_such_username(username: &str) -> Self {
        VcError::new(
            NO_SUCH_USERNAME,
            format!("Username '{username}' doesn't exist"),
        )
    }

    pub fn use_echo_test() -> Self {
        VcError::new(
            USE_ECHO_TEST,
            "You can't call yourself... use the EchoTest for that",
        )
    }

    pub fn already_in_call() -> Self {
        VcError::new(ALREADY_IN_CALL, "Already in a call")
    }

    pub fn no_call() -> Self {
        VcError::new(NO_CALL, "No incoming call to accept")
    }

    pub fn missing_sdp() -> Self {
        VcError::new(MISSING_SDP, "Missing SDP")
    }
}

/// The `request` of a message body, lower-cased (Janus compares it case-insensitively), and
/// as the client wrote it (for the 472 text).
pub fn request_of(body: &JsonMap) -> Result<(String, String), VcError> {
    match body.get("request") {
        None => Err(VcError::missing("request")),
        Some(Value::String(s)) => Ok((s.to_ascii_lowercase(), s.clone())),
        Some(_) => Err(VcError::wrong_type("request", "a string")),
    }
}

/// A mandatory string element (`username`).
pub fn required_string<'a>(body: &'a JsonMap, element: &str) -> Result<&'a str, VcError> {
    match body.get(element) {
        None => Err(VcError::missing(element)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(VcError::wrong_type(element, "a string")),
    }
}

/// The checks of a `set` request, in Janus's order.
pub fn check_set(body: &JsonMap) -> Result<(), VcError> {
    let non_negative = |v: &Value| v.is_u64() || v.as_i64().is_some_and(|i| i >= 0);
    const BOOLEANS: [&str; 2] = ["audio", "video"];
    for element in BOOLEANS {
        if body.get(element).is_some_and(|v| !v.is_boolean()) {
            return Err(VcError::wrong_type(element, "a boolean"));
        }
    }
    if body.get("bitrate").is_some_and(|v| !non_negative(v)) {
        return Err(VcError::wrong_type("bitrate", "a positive integer"));
    }
    if body.get("record").is_some_and(|v| !v.is_boolean()) {
        return Err(VcError::wrong_type("record", "a boolean"));
    }
    if body.get("filename").is_some_and(|v| !v.is_string()) {
        return Err(VcError::wrong_type("filename", "a string"));
    }
    if body.get("restart").is_some_and(|v| !v.is_boolean()) {
        return Err(VcError::wrong_type("restart", "a boolean"));
    }
    let layer_ok = |v: &Value| v.as_i64().is_some_and(|i| (0..=2).contains(&i));
    if body.get("substream").is_some_and(|v| !layer_ok(v)) {
        return Err(VcError::new(
            INVALID_ELEMENT,
            "Invalid value (substream should be 0, 1 or 2)",
        ));
    }
    if body.get("temporal").is_some_and(|v| !layer_ok(v)) {
        return Err(VcError::new(
            INVALID_ELEMENT,
            "Invalid value (temporal should be 0, 1 or 2)",
        ));
    }
    if body.get("fallback").is_some_and(|v| !non_negative(v)) {
        return Err(VcError::new(
            INVALID_ELEMENT,
            "Invalid value (fallback should be a positive integer)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::plugin::test_body as body;

    #[test]
    fn request_and_username_checks() {
        assert_eq!(
            request_of(&body(json!({}))).unwrap_err().text,
            "Missing mandatory element (request)"
        );
        assert_eq!(
            request_of(&body(json!({"request": 5}))).unwrap_err().code,
            474
        );
        assert_eq!(
            request_of(&body(json!({"request": "LIST"}))).unwrap(),
            ("list".to_owned(), "LIST".to_owned())
        );
        let e = required_string(&body(json!({"username": 7})), "username").unwrap_err();
        assert_eq!(e.text, "Invalid element type (username should be a string)");
    }

    #[test]
    fn set_checks_in_janus_order() {
        let text = |v: Value| check_set(&body(v)).map_err(|e| (e.code, e.text));
        assert_eq!(text(json!({"bitrate": 128000, "audio": false})), Ok(()));
        assert_eq!(
            text(json!({"bitrate": "x", "audio": "x"})),
            Err((
                474,
                "Invalid element type (audio should be a boolean)".into()
            ))
        );
        assert_eq!(
            text(json!({"bitrate": -1})),
            Err((
                474,
                "Invalid element type (bitrate should be a positive integer)".into()
            ))
        );
        assert_eq!(
            text(json!({"substream": 5})),
            Err((474, "Invalid value (substream should be 0, 1 or 2)".into()))
        );
        assert_eq!(
            text(json!({"temporal": "a"})),
            Err((474, "Invalid value (temporal should be 0, 1 or 2)".into()))
        );
        assert_eq!(
            text(json!({"fallback": -1})),
            Err((
                474,
                "Invalid value (fallback should be a positive integer)".into()
            ))
        );
    }
}
