//! The mark on the rooms the proxy creates on its backends (`plugins.backend_room_mark`,
//! janus-cloud's `januscloud-` by default): their description starts with it, so that
//! janus-sentinel's sweeper can tell them from the rooms an operator made on the Janus
//! directly, and destroy those a crashed proxy left behind. Clients never see it: what the
//! proxy sends a backend (`create`, an `edit`'s `new_description`) is marked, what it relays
//! from a backend (`joined`, a `list`'s entries) is unmarked. Empty mark: nothing is marked
//! (and nothing is swept).
//!
//! Plain functions on JSON, unit-tested without a runtime.

use janus_protocol::JsonMap;
use serde_json::Value;

/// janus-cloud's mark (its sentinel's `des_filter`).
pub const DEFAULT_MARK: &str = "januscloud-";

/// A backend `create` body: its `description` marked. Janus names a room without a
/// description (or with an empty one) `Room <id>`: that name is marked, so that the client
/// still sees Janus's default. A description that is not a string is left for Janus to refuse.
pub fn mark_create(body: &mut JsonMap, mark: &str) {
    if mark.is_empty() {
        return;
    }
    let description = match body.get("description") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        None | Some(Value::String(_)) => match body.get("room").and_then(Value::as_u64) {
            Some(id) => format!("Room {id}"),
            // Janus picks the id (or refuses the room): nothing to name.
            None => return,
        },
        Some(_) => return,
    };
    body.insert("description".into(), format!("{mark}{description}").into());
}

/// A backend `edit` body: its `new_description` marked. Janus ignores an empty one (the
/// description stays): it stays empty.
pub fn mark_edit(body: &mut JsonMap, mark: &str) {
    if mark.is_empty() {
        return;
    }
    if let Some(Value::String(s)) = body.get_mut("new_description") {
        if !s.is_empty() {
            *s = format!("{mark}{s}");
        }
    }
}

/// A frame from a backend: the room's `description` (a `joined` event) and the descriptions
/// of a `list`'s entries unmarked (one mark each: a client's own description may start with
/// the mark too).
pub fn strip(frame: &mut JsonMap, mark: &str) {
    if mark.is_empty() {
        return;
    }
    let Some(data) = frame
        .get_mut("plugindata")
        .and_then(|p| p.get_mut("data"))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    strip_description(data, mark);
    let entries = data.get_mut("list").and_then(Value::as_array_mut);
    for entry in entries.into_iter().flatten() {
        if let Some(entry) = entry.as_object_mut() {
            strip_description(entry, mark);
        }
    }
}

/// One `list` entry (or a room's `description` holder) unmarked.
pub fn strip_description(map: &mut JsonMap, mark: &str) {
    if mark.is_empty() {
        return;
    }
    if let Some(Value::String(s)) = map.get_mut("description") {
        if let Some(rest) = s.strip_prefix(mark) {
            *s = rest.to_owned();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> JsonMap {
        match v {
            Value::Object(m) => m,
            _ => JsonMap::new(),
        }
    }

    #[test]
    fn a_create_is_marked_and_a_missing_description_is_janus_default() {
        let mut body = map(json!({"request": "create", "room": 7, "description": "Ours"}));
        mark_create(&mut body, DEFAULT_MARK);
        assert_eq!(body["description"], "januscloud-Ours");
        for without in [json!({"room": 7}), json!({"room": 7, "description": ""})] {
            let mut body = map(without);
            mark_create(&mut body, DEFAULT_MARK);
            assert_eq!(body["description"], "januscloud-Room 7");
        }
        // Janus's own errors stay Janus's: a bad type, or no id to name the room by.
        let mut bad = map(json!({"room": 7, "description": 5}));
        mark_create(&mut bad, DEFAULT_MARK);
        assert_eq!(bad["description"], 5);
        let mut no_id = map(json!({"room": "x"}));
        mark_create(&mut no_id, DEFAULT_MARK);
        assert!(!no_id.contains_key("description"));
        // No mark: the body as it was.
        let mut plain = map(json!({"room": 7}));
        mark_create(&mut plain, "");
        assert_eq!(Value::Object(plain), json!({"room": 7}));
    }

    #[test]
    fn an_edit_marks_its_new_description_only_when_it_changes_it() {
        let mut body = map(json!({"request": "edit", "room": 7, "new_description": "New"}));
        mark_edit(&mut body, "m-");
        assert_eq!(body["new_description"], "m-New");
        let mut empty = map(json!({"new_description": ""}));
        mark_edit(&mut empty, "m-");
        assert_eq!(empty["new_description"], "");
        let mut other = map(json!({"new_pin": "p"}));
        mark_edit(&mut other, "m-");
        assert_eq!(Value::Object(other), json!({"new_pin": "p"}));
    }

    #[test]
    fn frames_from_a_backend_are_unmarked_once() {
        let mut joined = map(
            json!({"janus": "event", "plugindata": {"plugin": "p", "data":
            {"videoroom": "joined", "room": 7, "description": "m-m-Ours",
             "publishers": [{"id": 1, "streams": [{"description": "m-cam"}]}]}}}),
        );
        strip(&mut joined, "m-");
        let data = &joined["plugindata"]["data"];
        assert_eq!(data["description"], "m-Ours");
        // A stream's description is the client's, not a room's.
        assert_eq!(data["publishers"][0]["streams"][0]["description"], "m-cam");
        let mut list = map(json!({"plugindata": {"data": {"list": [
            {"room": 1, "description": "m-A"}, {"room": 2, "description": "B"}]}}}));
        strip(&mut list, "m-");
        assert_eq!(list["plugindata"]["data"]["list"][0]["description"], "A");
        assert_eq!(list["plugindata"]["data"]["list"][1]["description"], "B");
        let mut untouched = map(json!({"plugindata": {"data": {"description": "m-A"}}}));
        strip(&mut untouched, "");
        assert_eq!(untouched["plugindata"]["data"]["description"], "m-A");
    }
}
