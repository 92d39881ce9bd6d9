//! p2pcall's checks of request elements. The requests, codes and wordings are the VideoCall
//! API's ([`crate::plugin::videocall::errors`]); the element codes are janus-cloud's (474
//! missing, 475 invalid: [`CODES`]), and so are the username rule and the `set` checks'
//! order.

use janus_protocol::JsonMap;
use serde_json::Value;

use crate::plugin::kit::PluginError;
use crate::plugin::videocall::errors::{self, ElementCodes, Verb};

/// janus-cloud's p2pcall numbers the element errors the other way round from Janus.
pub const CODES: ElementCodes = ElementCodes {
    missing: 474,
    invalid: 475,
};

/// The request of a message body.
pub fn verb(body: &JsonMap) -> Result<Verb, PluginError> {
    CODES.verb(body)
}

/// `username` of `register` and `call`: janus-cloud's `^\w{1,128}$`.
pub fn username(body: &JsonMap) -> Result<String, PluginError> {
    let name = CODES.required_string(body, "username")?;
    let valid = (1..=128).contains(&name.chars().count())
        && name.chars().all(|c| c.is_alphanumeric() || c == '_');
    if !valid {
        return Err(PluginError::new(
            CODES.invalid,
            "Invalid element (username should be 1 to 128 letters, digits or underscores)",
        ));
    }
    Ok(name.to_owned())
}

/// Checks the optional fields of `set` as Janus's videocall does. They change nothing here
/// (the media does not cross the proxy) but a client gets the same errors.
pub fn check_set(body: &JsonMap) -> Result<(), PluginError> {
    for key in ["audio", "video", "record", "restart"] {
        if body.get(key).is_some_and(|v| !v.is_boolean()) {
            return Err(CODES.wrong_type(key, "a boolean"));
        }
    }
    if body.get("filename").is_some_and(|v| !v.is_string()) {
        return Err(CODES.wrong_type("filename", "a string"));
    }
    for key in ["bitrate", "fallback"] {
        if body.get(key).is_some_and(|v| v.as_u64().is_none()) {
            return Err(CODES.wrong_type(key, "a positive integer"));
        }
    }
    for key in ["substream", "temporal"] {
        if body
            .get(key)
            .is_some_and(|v| v.as_u64().is_none_or(|n| n > 2))
        {
            return Err(CODES.invalid_value(&format!("{key} should be 0, 1 or 2")));
        }
    }
    Ok(())
}

/// The reason of a `hangup` request for the peer (Janus's default when none, or not a string).
pub fn hangup_reason(body: &JsonMap) -> String {
    body.get("reason")
        .and_then(Value::as_str)
        .unwrap_or("We did the hangup")
        .to_owned()
}

/// A jsep with an SDP in it (`call`, `accept` and a re-offering `set` need one).
pub fn has_sdp(jsep: Option<&JsonMap>) -> bool {
    jsep.and_then(|j| j.get("sdp"))
        .is_some_and(Value::is_string)
}

/// A user of another proxy while the shared store is away.
pub fn unreachable_store(callee: &str) -> PluginError {
    PluginError::new(
        errors::NO_SUCH_USERNAME,
        format!("Username '{callee}' unreachable (the shared store is unavailable)"),
    )
}

/// A user of another proxy whose proxy did not answer.
pub fn unreachable_proxy(callee: &str) -> PluginError {
    PluginError::new(
        errors::NO_SUCH_USERNAME,
        format!("Username '{callee}' unreachable (its proxy did not answer)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::plugin::test_body as body;

    #[test]
    fn verbs_and_their_errors() {
        assert_eq!(verb(&body(json!({"request": "LIST"}))), Ok(Verb::List));
        assert_eq!(verb(&body(json!({}))).unwrap_err().code, 474);
        assert_eq!(verb(&body(json!({"request": 3}))).unwrap_err().code, 475);
        let e = verb(&body(json!({"request": "dance"}))).unwrap_err();
        assert_eq!(e, PluginError::new(472, "Unknown request (dance)"));
    }

    #[test]
    fn usernames() {
        assert_eq!(
            username(&body(json!({"username": "al_1"}))).unwrap(),
            "al_1"
        );
        assert_eq!(username(&body(json!({}))).unwrap_err().code, 474);
        assert_eq!(
            username(&body(json!({"username": 1}))).unwrap_err().code,
            475
        );
        for bad in ["", "a b", "a-b", &"x".repeat(129)] {
            let e = username(&body(json!({ "username": bad }))).unwrap_err();
            assert_eq!(e.code, 475, "{bad:?}");
        }
    }

    #[test]
    fn set_fields() {
        assert!(check_set(&body(
            json!({"request": "set", "audio": true, "bitrate": 1000})
        ))
        .is_ok());
        assert_eq!(
            check_set(&body(json!({"audio": "yes"}))).unwrap_err().code,
            475
        );
        assert_eq!(
            check_set(&body(json!({"bitrate": -1}))).unwrap_err().code,
            475
        );
        let e = check_set(&body(json!({"substream": 3}))).unwrap_err();
        assert_eq!(
            e,
            PluginError::new(475, "Invalid value (substream should be 0, 1 or 2)")
        );
    }

    #[test]
    fn sdp_presence() {
        assert!(!has_sdp(None));
        assert!(!has_sdp(Some(&body(json!({"type": "offer"})))));
        assert!(has_sdp(Some(&body(json!({"type": "offer", "sdp": "v=0"})))));
    }
}
