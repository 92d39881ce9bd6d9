//! How the rooms the proxy creates on its backends are told from an operator's own, and kept
//! destroyable by janus-sentinel's sweeper when a crashed proxy leaves them behind.
//!
//! * The mark (`plugins.backend_room_mark`, janus-cloud's `januscloud-` by default): their
//!   description starts with it. Clients never see it: what the proxy sends a backend
//!   (`create`, an `edit`'s `new_description`) is marked, what it relays from a backend
//!   (`joined`, a `list`'s entries) is unmarked. Empty mark: nothing is marked (and nothing is
//!   swept).
//! * The backend secret (`plugins.backend_room_secret`, shared with the sweeper's
//!   `room_secret`): when set, every backend room is created with it instead of the client's
//!   `secret`, because Janus 1.1.2 asks for a room's own secret to destroy it, whatever its
//!   `admin_key`. The proxy then checks the client's secret itself: a client request that
//!   carries the room's secret (or any request of a room without one) goes on with the
//!   backend secret; a wrong or missing one goes on unchanged (an unusable string if it
//!   happens to be the backend secret), so that Janus answers it with its own 429/430/433 (or
//!   the audiobridge's), in its own order. Empty: the backend rooms have the clients' secrets.
//!
//! Plain functions on JSON, unit-tested without a runtime.

use janus_protocol::JsonMap;
use serde_json::Value;

use super::kit::request;

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
    let Some(data) = request::plugin_data_mut(frame) else {
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

/// A backend `create` body: its `secret` the backend secret, when there is one (a secret
/// that is not a string is left for Janus to refuse).
pub fn secure_create(body: &mut JsonMap, backend_secret: &str) {
    if backend_secret.is_empty() || body.get("secret").is_some_and(|s| !s.is_string()) {
        return;
    }
    body.insert("secret".into(), backend_secret.into());
}

/// The secret the proxy's own requests about a backend room carry (a `destroy`, a spanning
/// room's control requests): the backend secret when there is one, else the room's.
pub fn own_secret<'a>(backend_secret: &'a str, room_secret: Option<&'a str>) -> Option<&'a str> {
    if backend_secret.is_empty() {
        room_secret
    } else {
        Some(backend_secret)
    }
}

/// A client's room request on its way to a backend, with `room_secret` the secret the client
/// created (or last edited) the room with. With a backend secret: the right secret (or any,
/// for a room without one) becomes the backend secret; a wrong string stays wrong (Janus's
/// 433 / 489); a missing or non-string one is left for Janus to refuse; and an `edit`'s
/// `new_secret` stays with the proxy (the room book keeps it; the backend room keeps the
/// backend secret).
pub fn swap_secret(body: &mut JsonMap, room_secret: Option<&str>, backend_secret: &str) {
    if backend_secret.is_empty() {
        return;
    }
    body.remove("new_secret");
    let replacement = match (room_secret, body.get("secret")) {
        // Janus checks nothing of a room without a secret.
        (None, _) => backend_secret,
        (Some(room), Some(Value::String(given))) if same(room, given) => backend_secret,
        // Wrong: Janus must find it wrong too, even if it is the backend secret.
        (Some(_), Some(Value::String(given))) if same(given, backend_secret) => "",
        (Some(_), _) => return,
    };
    body.insert("secret".into(), replacement.into());
}

/// Constant-time string comparison (a secret's length is not hidden).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
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

    #[test]
    fn with_a_backend_secret_the_room_is_created_with_it() {
        let mut body = map(json!({"request": "create", "room": 7, "secret": "client"}));
        secure_create(&mut body, "proxy");
        assert_eq!(body["secret"], "proxy");
        let mut bad = map(json!({"room": 7, "secret": 5}));
        secure_create(&mut bad, "proxy");
        assert_eq!(bad["secret"], 5);
        let mut none = map(json!({"room": 7}));
        secure_create(&mut none, "");
        assert!(!none.contains_key("secret"));
        assert_eq!(own_secret("proxy", Some("client")), Some("proxy"));
        assert_eq!(own_secret("", Some("client")), Some("client"));
        assert_eq!(own_secret("", None), None);
    }

    #[test]
    fn a_client_request_carries_the_backend_secret_only_when_its_own_is_right() {
        let swapped = |body: Value, room: Option<&str>| {
            let mut body = map(body);
            swap_secret(&mut body, room, "proxy");
            Value::Object(body)
        };
        // Right, or a room without a secret: the backend's.
        assert_eq!(
            swapped(json!({"secret": "s"}), Some("s")),
            json!({"secret": "proxy"})
        );
        assert_eq!(swapped(json!({}), None), json!({"secret": "proxy"}));
        assert_eq!(
            swapped(json!({"secret": 5}), None),
            json!({"secret": "proxy"})
        );
        // Wrong, missing or not a string: as sent, for Janus to refuse.
        assert_eq!(
            swapped(json!({"secret": "x"}), Some("s")),
            json!({"secret": "x"})
        );
        assert_eq!(swapped(json!({}), Some("s")), json!({}));
        assert_eq!(
            swapped(json!({"secret": 5}), Some("s")),
            json!({"secret": 5})
        );
        // Guessing the backend secret does not open a room that has its own.
        assert_eq!(
            swapped(json!({"secret": "proxy"}), Some("s")),
            json!({"secret": ""})
        );
        // A new secret is the proxy's to keep.
        assert_eq!(
            swapped(json!({"secret": "s", "new_secret": "t"}), Some("s")),
            json!({"secret": "proxy"})
        );
        // No backend secret: nothing changes.
        let mut plain = map(json!({"secret": "x", "new_secret": "t"}));
        swap_secret(&mut plain, Some("s"), "");
        assert_eq!(
            Value::Object(plain),
            json!({"secret": "x", "new_secret": "t"})
        );
    }
}
