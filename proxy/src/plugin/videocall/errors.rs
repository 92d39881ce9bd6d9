//! The VideoCall API's requests, error codes and texts, worded exactly as Janus 1.1.2's
//! `janus_videocall.c` words them (checked against a real Janus by
//! `actors-tests/tests/videocall.rs`). Two plugins speak this API and share what is here:
//! videocall, with Janus's codes, and p2pcall, with janus-cloud's, which numbers the two
//! element errors the other way round ([`ElementCodes`]).

use janus_protocol::JsonMap;
use serde_json::Value;

use crate::plugin::kit::PluginError;

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

/// The requests of the API (names are case-insensitive, as in Janus).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    List,
    Register,
    Call,
    Accept,
    Set,
    Hangup,
}

/// The codes of a malformed element: what a plugin's clients know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElementCodes {
    /// A mandatory element is missing.
    pub missing: u16,
    /// An element has the wrong type or value.
    pub invalid: u16,
}

/// Janus's videocall: 475 missing, 474 invalid.
pub const JANUS_CODES: ElementCodes = ElementCodes {
    missing: MISSING_ELEMENT,
    invalid: INVALID_ELEMENT,
};

impl ElementCodes {
    pub fn missing(self, element: &str) -> PluginError {
        PluginError::new(
            self.missing,
            format!("Missing mandatory element ({element})"),
        )
    }

    pub fn wrong_type(self, element: &str, expected: &str) -> PluginError {
        PluginError::new(
            self.invalid,
            format!("Invalid element type ({element} should be {expected})"),
        )
    }

    /// `Invalid value (<what>)`.
    pub fn invalid_value(self, what: &str) -> PluginError {
        PluginError::new(self.invalid, format!("Invalid value ({what})"))
    }

    /// The request of a message body.
    pub fn verb(self, body: &JsonMap) -> Result<Verb, PluginError> {
        let request = match body.get("request") {
            None => return Err(self.missing("request")),
            Some(Value::String(s)) => s,
            Some(_) => return Err(self.wrong_type("request", "a string")),
        };
        Ok(match request.to_ascii_lowercase().as_str() {
            "list" => Verb::List,
            "register" => Verb::Register,
            "call" => Verb::Call,
            "accept" => Verb::Accept,
            "set" => Verb::Set,
            "hangup" => Verb::Hangup,
            // The text names the request as the client wrote it.
            _ => return Err(unknown_request(request)),
        })
    }

    /// A mandatory string element (`username`).
    pub fn required_string<'a>(
        self,
        body: &'a JsonMap,
        element: &str,
    ) -> Result<&'a str, PluginError> {
        match body.get(element) {
            None => Err(self.missing(element)),
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(self.wrong_type(element, "a string")),
        }
    }
}

pub fn unknown_request(request: &str) -> PluginError {
    PluginError::new(INVALID_REQUEST, format!("Unknown request ({request})"))
}

pub fn register_first() -> PluginError {
    PluginError::new(REGISTER_FIRST, "Register a username first")
}

pub fn taken(username: &str) -> PluginError {
    PluginError::new(
        USERNAME_TAKEN,
        format!("Username '{username}' already taken"),
    )
}

pub fn already_registered(username: &str) -> PluginError {
    PluginError::new(
        ALREADY_REGISTERED,
        format!("Already registered ({username})"),
    )
}

pub fn no_such_username(username: &str) -> PluginError {
    PluginError::new(
        NO_SUCH_USERNAME,
        format!("Username '{username}' doesn't exist"),
    )
}

pub fn use_echo_test() -> PluginError {
    PluginError::new(
        USE_ECHO_TEST,
        "You can't call yourself... use the EchoTest for that",
    )
}

pub fn already_in_call() -> PluginError {
    PluginError::new(ALREADY_IN_CALL, "Already in a call")
}

pub fn no_call() -> PluginError {
    PluginError::new(NO_CALL, "No incoming call to accept")
}

pub fn missing_sdp() -> PluginError {
    PluginError::new(MISSING_SDP, "Missing SDP")
}

/// A failure of the proxy's own (a call's backend server gone, …).
pub fn unknown(why: impl Into<String>) -> PluginError {
    PluginError::new(UNKNOWN_ERROR, why)
}

/// The checks of a `set` request, in Janus's order.
pub fn check_set(body: &JsonMap) -> Result<(), PluginError> {
    let codes = JANUS_CODES;
    let non_negative = |v: &Value| v.is_u64() || v.as_i64().is_some_and(|i| i >= 0);
    const BOOLEANS: [&str; 2] = ["audio", "video"];
    for element in BOOLEANS {
        if body.get(element).is_some_and(|v| !v.is_boolean()) {
            return Err(codes.wrong_type(element, "a boolean"));
        }
    }
    if body.get("bitrate").is_some_and(|v| !non_negative(v)) {
        return Err(codes.wrong_type("bitrate", "a positive integer"));
    }
    if body.get("record").is_some_and(|v| !v.is_boolean()) {
        return Err(codes.wrong_type("record", "a boolean"));
    }
    if body.get("filename").is_some_and(|v| !v.is_string()) {
        return Err(codes.wrong_type("filename", "a string"));
    }
    if body.get("restart").is_some_and(|v| !v.is_boolean()) {
        return Err(codes.wrong_type("restart", "a boolean"));
    }
    let layer_ok = |v: &Value| v.as_i64().is_some_and(|i| (0..=2).contains(&i));
    if body.get("substream").is_some_and(|v| !layer_ok(v)) {
        return Err(codes.invalid_value("substream should be 0, 1 or 2"));
    }
    if body.get("temporal").is_some_and(|v| !layer_ok(v)) {
        return Err(codes.invalid_value("temporal should be 0, 1 or 2"));
    }
    if body.get("fallback").is_some_and(|v| !non_negative(v)) {
        return Err(codes.invalid_value("fallback should be a positive integer"));
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
        let verb = |v: Value| JANUS_CODES.verb(&body(v));
        assert_eq!(
            verb(json!({})).unwrap_err().text,
            "Missing mandatory element (request)"
        );
        assert_eq!(verb(json!({})).unwrap_err().code, 475);
        assert_eq!(verb(json!({"request": 5})).unwrap_err().code, 474);
        assert_eq!(verb(json!({"request": "LIST"})), Ok(Verb::List));
        assert_eq!(
            verb(json!({"request": "Dance"})),
            Err(PluginError::new(472, "Unknown request (Dance)"))
        );
        let e = JANUS_CODES
            .required_string(&body(json!({"username": 7})), "username")
            .unwrap_err();
        assert_eq!(e.text, "Invalid element type (username should be a string)");
    }

    #[test]
    fn element_codes_follow_the_plugin() {
        let cloud = ElementCodes {
            missing: 474,
            invalid: 475,
        };
        assert_eq!(cloud.verb(&body(json!({}))).unwrap_err().code, 474);
        assert_eq!(cloud.wrong_type("x", "a string").code, 475);
        assert_eq!(JANUS_CODES.missing("x").code, 475);
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
