//! What the audiobridge handle reads in Janus's answers and the bodies it sends of its own:
//! plain functions on JSON, unit-tested without a runtime.

use janus_protocol::JsonMap;
use serde_json::{json, Value};

use crate::plugin::backend_mark;
use crate::plugin::kit::request;
pub use crate::plugin::kit::request::object;
use crate::plugin::settings::PluginsConfig;

/// `plugindata.data` of a frame.
pub fn plugin_data(frame: &JsonMap) -> Option<&JsonMap> {
    request::plugin_data(frame).and_then(Value::as_object)
}

/// A core-level `error` (Janus's or the link's).
pub fn is_error(frame: &JsonMap) -> bool {
    frame.get("janus").and_then(Value::as_str) == Some("error")
}

/// Neither a core error nor a plugin error: the request did what it asked.
pub fn succeeded(frame: &JsonMap) -> bool {
    !is_error(frame) && plugin_data(frame).is_some_and(|d| d.get("error_code").is_none())
}

/// The plugin error code of an answer, if it is one.
fn error_code(frame: &JsonMap) -> Option<u64> {
    plugin_data(frame)
        .and_then(|d| d.get("error_code"))
        .and_then(Value::as_u64)
}

/// Why a request of the proxy's own failed: the core error's reason, or the plugin's error.
pub fn error_reason(frame: &JsonMap) -> String {
    if is_error(frame) {
        return crate::plugin::kit::request::api_error_of(frame).reason;
    }
    plugin_data(frame)
        .and_then(|d| d.get("error"))
        .and_then(Value::as_str)
        .unwrap_or("unexpected reply")
        .to_owned()
}

/// `{"audiobridge": "created"}`.
pub fn created(frame: &JsonMap) -> bool {
    plugin_data(frame)
        .and_then(|d| d.get("audiobridge"))
        .and_then(Value::as_str)
        == Some("created")
}

/// Janus's 486: the room exists there already (as good as created).
pub fn already_exists(frame: &JsonMap) -> bool {
    error_code(frame) == Some(u64::from(super::errors::ROOM_EXISTS))
}

/// A `listparticipants` answer with nobody in the room.
pub fn nobody_in(frame: &JsonMap) -> bool {
    plugin_data(frame)
        .and_then(|d| d.get("participants"))
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
}

/// The entries of a `list` answer.
pub fn list_entries(frame: &JsonMap) -> Vec<Value> {
    plugin_data(frame)
        .and_then(|d| d.get("list"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Whether a Janus's answer to a body whose `room` the proxy made invalid (`room_is_wrong`:
/// the client's own `room` was invalid already) still leaves the admin key's refusal as the
/// answer: Janus refused the room the proxy spoiled, or accepted everything; a refusal of
/// anything else is Janus's answer.
pub fn refusal_stands(frame: &JsonMap, room_is_wrong: bool) -> bool {
    let room_refused = error_code(frame) == Some(u64::from(super::errors::INVALID_ELEMENT))
        && plugin_data(frame)
            .and_then(|d| d.get("error"))
            .and_then(Value::as_str)
            .is_some_and(|e| e.contains("(room "));
    let janus_error = plugin_data(frame).is_some_and(|d| d.get("error_code").is_some());
    (room_refused && !room_is_wrong) || !janus_error
}

/// The room a body names, when it is a numeric id.
pub fn room_of(body: &JsonMap, key: &str) -> Option<u64> {
    body.get(key).and_then(Value::as_u64)
}

/// The `create` that makes room `room` with its settings on a server (with the proxy's
/// `admin_key`, harmless for backends without one), its description marked and its secret
/// the backend secret when there is one (`plugins.backend_room_mark`,
/// `plugins.backend_room_secret`).
pub fn create_body(mut settings: JsonMap, room: u64, plugins: &PluginsConfig) -> JsonMap {
    settings.insert("request".into(), "create".into());
    settings.insert("room".into(), room.into());
    let admin_key = &plugins.audiobridge_admin_key;
    if !admin_key.is_empty() {
        settings.insert("admin_key".into(), admin_key.as_str().into());
    }
    backend_mark::mark_create(&mut settings, &plugins.backend_room_mark);
    backend_mark::secure_create(&mut settings, &plugins.backend_room_secret);
    settings
}

/// The `destroy` of room `room` on a server, with the secret of its backend room:
/// `backend_secret` (`plugins.backend_room_secret`) when there is one, else the room's own
/// (from its `settings`), if it has one.
pub fn destroy_body(room: u64, settings: Option<&JsonMap>, backend_secret: &str) -> JsonMap {
    let mut destroy = JsonMap::new();
    destroy.insert("request".into(), "destroy".into());
    destroy.insert("room".into(), room.into());
    let own = settings
        .and_then(|s| s.get("secret"))
        .and_then(Value::as_str);
    if let Some(secret) = backend_mark::own_secret(backend_secret, own) {
        destroy.insert("secret".into(), secret.into());
    }
    destroy
}

/// `listparticipants` of room `room`.
pub fn list_participants_body(room: u64) -> JsonMap {
    object(json!({"request": "listparticipants", "room": room}))
}

/// Janus's `"permanent"` in an answer (`created`, `edited`, `destroyed`) set to what the proxy
/// did.
pub fn set_permanent(frame: &mut JsonMap, saved: bool) {
    if let Some(d) = request::plugin_data_mut(frame).filter(|d| d.contains_key("permanent")) {
        d.insert("permanent".into(), saved.into());
    }
}

/// A `list` entry for a room that has no server at the moment, as Janus lists an empty room.
pub fn unplaced_entry(id: u64, config: &JsonMap) -> Value {
    let description = config
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("Room {id}"));
    let flag = |k: &str| config.get(k).and_then(Value::as_bool).unwrap_or(false);
    let sampling = config
        .get("sampling_rate")
        .or_else(|| config.get("sampling"))
        .and_then(Value::as_u64)
        .unwrap_or(16000);
    json!({
        "room": id,
        "description": description,
        "sampling_rate": sampling,
        "spatial_audio": flag("spatial_audio"),
        "pin_required": config.contains_key("pin"),
        "record": flag("record"),
        "muted": false,
        "num_participants": 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(data: Value) -> JsonMap {
        object(
            json!({"janus": "success", "plugindata": {"plugin": "janus.plugin.audiobridge", "data": data}}),
        )
    }

    #[test]
    fn unplaced_rooms_are_listed_as_janus_lists_an_empty_room() {
        let config = object(json!({"room": 7, "pin": "x", "sampling_rate": 24000, "record": true}));
        // Janus 1.1.2's keys, in its order.
        assert_eq!(
            unplaced_entry(7, &config).to_string(),
            r#"{"room":7,"description":"Room 7","sampling_rate":24000,"spatial_audio":false,"pin_required":true,"record":true,"muted":false,"num_participants":0}"#
        );
        let entry = unplaced_entry(8, &JsonMap::new());
        assert_eq!(entry["sampling_rate"], 16000);
        assert_eq!(entry["pin_required"], false);
    }

    #[test]
    fn answers_are_read_as_janus_words_them() {
        let created_ = answer(json!({"audiobridge": "created", "room": 5, "permanent": true}));
        assert!(created(&created_) && succeeded(&created_) && !already_exists(&created_));
        let exists = answer(json!({"audiobridge": "event", "error_code": 486, "error": "x"}));
        assert!(already_exists(&exists) && !succeeded(&exists));
        assert_eq!(error_reason(&exists), "x");
        let core = object(json!({"janus": "error", "error": {"code": 458, "reason": "gone"}}));
        assert!(is_error(&core) && !succeeded(&core));
        assert_eq!(error_reason(&core), "gone");
        assert!(nobody_in(&answer(json!({"participants": []}))));
        assert!(!nobody_in(&answer(json!({"participants": [{"id": 1}]}))));
        assert!(!nobody_in(&core));
        assert_eq!(
            list_entries(&answer(json!({"list": [{"room": 1}]}))).len(),
            1
        );
        let mut saved = created_;
        set_permanent(&mut saved, false);
        assert_eq!(
            plugin_data(&saved).and_then(|d| d.get("permanent")),
            Some(&json!(false))
        );
        let body = object(json!({"room": 5, "bad": "x"}));
        assert_eq!(room_of(&body, "room"), Some(5));
        assert_eq!(room_of(&body, "bad"), None);
    }

    #[test]
    fn the_admin_keys_refusal_comes_after_janus_own_checks() {
        let spoiled = answer(
            json!({"error_code": 484, "error": "Invalid element (room should be a positive integer)"}),
        );
        assert!(refusal_stands(&spoiled, false));
        // The client's own room was wrong: Janus's words.
        assert!(!refusal_stands(&spoiled, true));
        let other =
            answer(json!({"error_code": 484, "error": "Invalid element (pin should be a string)"}));
        assert!(!refusal_stands(&other, false));
        assert!(refusal_stands(
            &answer(json!({"audiobridge": "created"})),
            false
        ));
    }

    #[test]
    fn bodies_of_the_proxys_own() {
        let settings = object(json!({"room": 1, "secret": "s", "pin": "p"}));
        let plugins = |key: &str, mark: &str, secret: &str| PluginsConfig {
            audiobridge_admin_key: key.into(),
            backend_room_mark: mark.into(),
            backend_room_secret: secret.into(),
            ..PluginsConfig::default()
        };
        let create = create_body(settings.clone(), 9, &plugins("k", "m-", ""));
        assert_eq!(create["request"], "create");
        assert_eq!(create["room"], 9);
        assert_eq!(create["admin_key"], "k");
        assert_eq!(create["description"], "m-Room 9");
        assert_eq!(create["secret"], "s");
        let plain = create_body(settings.clone(), 9, &plugins("", "", ""));
        assert!(!plain.contains_key("admin_key") && !plain.contains_key("description"));
        let sealed = create_body(settings.clone(), 9, &plugins("", "", "proxy"));
        assert_eq!(sealed["secret"], "proxy");
        assert_eq!(
            Value::Object(destroy_body(9, Some(&settings), "proxy")),
            json!({"request": "destroy", "room": 9, "secret": "proxy"})
        );
        assert_eq!(
            Value::Object(destroy_body(9, Some(&settings), "")),
            json!({"request": "destroy", "room": 9, "secret": "s"})
        );
        assert_eq!(
            Value::Object(destroy_body(9, None, "")),
            json!({"request": "destroy", "room": 9})
        );
    }
}
