//! A room's `allowed` list (the tokens its participants must show), as Janus's videoroom and
//! audiobridge keep it: the proxy applies each successful `allowed` request to the settings it
//! keeps for the room, so that a room re-created elsewhere checks the same tokens.

use janus_protocol::JsonMap;
use serde_json::{json, Value};

/// Applies a successful `allowed` request (`body`) to a room's `settings`: `enable` checks
/// tokens (an empty list until some are added), `disable` drops the list, `add` and `remove`
/// change it; another action changes nothing.
pub fn apply(settings: &mut JsonMap, body: &JsonMap) {
    let action = body.get("action").and_then(Value::as_str).unwrap_or("");
    let tokens = tokens_of(body);
    let mut current = tokens_of(settings);
    match action {
        "enable" => {
            if !settings.contains_key("allowed") {
                settings.insert("allowed".into(), json!([]));
            }
            return;
        }
        "disable" => {
            settings.shift_remove("allowed");
            return;
        }
        "add" => {
            for t in tokens {
                if !current.contains(&t) {
                    current.push(t);
                }
            }
        }
        "remove" => current.retain(|t| !tokens.contains(t)),
        _ => return,
    }
    settings.insert("allowed".into(), json!(current));
}

/// The strings of an `allowed` list.
fn tokens_of(map: &JsonMap) -> Vec<String> {
    map.get("allowed")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::test_body as map;

    fn apply_all(steps: &[Value]) -> JsonMap {
        let mut settings = map(json!({"description": "r"}));
        for step in steps {
            apply(&mut settings, &map(step.clone()));
        }
        settings
    }

    #[test]
    fn add_and_remove_keep_one_copy_of_each_token_in_order() {
        let s = apply_all(&[
            json!({"action": "add", "allowed": ["x", "y"]}),
            json!({"action": "add", "allowed": ["y", "z"]}),
            json!({"action": "remove", "allowed": ["x"]}),
        ]);
        assert_eq!(s.get("allowed"), Some(&json!(["y", "z"])));
    }

    #[test]
    fn enable_checks_tokens_without_dropping_the_list_and_disable_drops_it() {
        let s = apply_all(&[json!({"action": "enable"})]);
        assert_eq!(s.get("allowed"), Some(&json!([])));
        let s = apply_all(&[
            json!({"action": "add", "allowed": ["x"]}),
            json!({"action": "enable"}),
        ]);
        assert_eq!(s.get("allowed"), Some(&json!(["x"])));
        let s = apply_all(&[
            json!({"action": "add", "allowed": ["x"]}),
            json!({"action": "disable"}),
        ]);
        assert_eq!(s.get("allowed"), None);
        assert_eq!(s.get("description"), Some(&json!("r")));
    }

    #[test]
    fn an_unknown_action_or_a_list_of_non_strings_changes_nothing_it_should_not() {
        let s = apply_all(&[
            json!({"action": "add", "allowed": ["x"]}),
            json!({"action": "shuffle", "allowed": ["y"]}),
            json!({"action": "add", "allowed": [1, null, "w"]}),
        ]);
        assert_eq!(s.get("allowed"), Some(&json!(["x", "w"])));
    }
}
