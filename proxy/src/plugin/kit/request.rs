//! The requests a handle sends its backend handles, without ids (the link adds them).

use janus_protocol::{JsonMap, Trickle};
use serde_json::Value;

/// `{"janus": <janus>}`.
pub fn request(janus: &str) -> JsonMap {
    let mut map = JsonMap::new();
    map.insert("janus".into(), janus.into());
    map
}

/// `{"janus": "message", "body": …, "jsep": …}`.
pub fn message(body: JsonMap, jsep: Option<JsonMap>) -> JsonMap {
    let mut req = request("message");
    req.insert("body".into(), Value::Object(body));
    if let Some(jsep) = jsep {
        req.insert("jsep".into(), Value::Object(jsep));
    }
    req
}

/// `{"janus": "trickle", "candidate" | "candidates": …}`.
pub fn trickle(trickle: Trickle) -> JsonMap {
    let mut req = request("trickle");
    match trickle {
        Trickle::Candidate(c) => req.insert("candidate".into(), c),
        Trickle::Candidates(c) => req.insert("candidates".into(), c),
    };
    req
}

/// `data.id` of a `success` (an `attach`'s new handle).
pub fn attached_id(frame: &JsonMap) -> Option<u64> {
    frame
        .get("data")
        .and_then(|d| d.get("id"))
        .and_then(Value::as_u64)
}

/// A JSON object as a map (anything else: an empty map).
pub fn object(v: Value) -> JsonMap {
    match v {
        Value::Object(m) => m,
        _ => JsonMap::new(),
    }
}

/// `plugindata.data` of a backend frame (a plugin's answer or event).
pub fn plugin_data(frame: &JsonMap) -> Option<&Value> {
    frame.get("plugindata").and_then(|p| p.get("data"))
}

/// `plugindata.data` of a frame, to change what the client gets.
pub fn plugin_data_mut(frame: &mut JsonMap) -> Option<&mut JsonMap> {
    frame
        .get_mut("plugindata")
        .and_then(|p| p.get_mut("data"))
        .and_then(Value::as_object_mut)
}

/// The code of a backend `error` frame, as the metrics count it (490 when it says none); None
/// for any other frame.
pub fn error_code_of(frame: &JsonMap) -> Option<u16> {
    if frame.get("janus").and_then(Value::as_str) != Some("error") {
        return None;
    }
    let code = frame
        .get("error")
        .and_then(|e| e.get("code"))
        .and_then(Value::as_u64)
        .unwrap_or(490);
    Some(u16::try_from(code).unwrap_or(490))
}

/// A backend `error` frame as an API error (unknown codes become 490).
pub fn api_error_of(frame: &JsonMap) -> janus_protocol::ApiError {
    use janus_protocol::{ApiError, ErrorCode};
    let error = frame.get("error");
    let code = error
        .and_then(|e| e.get("code"))
        .and_then(Value::as_u64)
        .and_then(ErrorCode::from_code)
        .unwrap_or(ErrorCode::Unknown);
    let reason = error
        .and_then(|e| e.get("reason"))
        .and_then(Value::as_str)
        .unwrap_or_else(|| code.default_reason());
    ApiError::new(code, reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_are_built_as_janus_reads_them() {
        let body = crate::plugin::test_body(json!({"request": "list"}));
        let jsep = crate::plugin::test_body(json!({"type": "offer", "sdp": "v=0"}));
        assert_eq!(
            Value::Object(message(body, Some(jsep))),
            json!({"janus": "message", "body": {"request": "list"}, "jsep": {"type": "offer", "sdp": "v=0"}})
        );
        assert_eq!(
            Value::Object(trickle(Trickle::Candidate(json!({"completed": true})))),
            json!({"janus": "trickle", "candidate": {"completed": true}})
        );
        let success = crate::plugin::test_body(json!({"janus": "success", "data": {"id": 7}}));
        assert_eq!(attached_id(&success), Some(7));
        let error = crate::plugin::test_body(
            json!({"janus": "error", "error": {"code": 458, "reason": "gone"}}),
        );
        assert_eq!(api_error_of(&error).code.code(), 458);
        let odd = crate::plugin::test_body(json!({"janus": "error", "error": {"code": 1}}));
        assert_eq!(api_error_of(&odd).code.code(), 490);
        assert_eq!(error_code_of(&error), Some(458));
        assert_eq!(error_code_of(&odd), Some(1));
        let bare = crate::plugin::test_body(json!({"janus": "error"}));
        assert_eq!(error_code_of(&bare), Some(490));
        assert_eq!(error_code_of(&success), None);
        let event = crate::plugin::test_body(
            json!({"janus": "event", "plugindata": {"plugin": "p", "data": {"ok": 1}}}),
        );
        assert_eq!(plugin_data(&event), Some(&json!({"ok": 1})));
        assert_eq!(plugin_data(&success), None);
    }
}
