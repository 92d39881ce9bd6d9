//! The `admin_key` of Janus's VideoRoom and AudioBridge plugins (`admin_key` in their jcfg;
//! here `plugins.videoroom_admin_key` / `plugins.audiobridge_admin_key`): when one is set,
//! `create` must carry it, and `list` with it also shows private rooms. Janus checks it with
//! `JANUS_CHECK_SECRET`; each plugin maps the outcome to its own error codes.

use janus_protocol::JsonMap;
use serde_json::Value;

/// Why a request does not pass the admin key check, with Janus's texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminKeyError {
    /// The plugin's "missing element" code.
    Missing,
    /// The plugin's "invalid element" code.
    NotAString,
    /// The plugin's "unauthorized" code.
    Wrong,
}

impl AdminKeyError {
    pub fn text(self) -> &'static str {
        match self {
            AdminKeyError::Missing => "Missing mandatory element (admin_key)",
            AdminKeyError::NotAString => "Invalid element type (admin_key should be a string)",
            AdminKeyError::Wrong => "Unauthorized (wrong admin_key)",
        }
    }
}

/// `create`'s check: with a key configured (non-empty), the request must carry it.
pub fn check_required(configured: &str, body: &JsonMap) -> Result<(), AdminKeyError> {
    if configured.is_empty() {
        return Ok(());
    }
    match body.get("admin_key") {
        None => Err(AdminKeyError::Missing),
        Some(Value::String(given)) if same_secret(configured, given) => Ok(()),
        Some(Value::String(_)) => Err(AdminKeyError::Wrong),
        Some(_) => Err(AdminKeyError::NotAString),
    }
}

/// `list`'s check: a non-empty string `admin_key` is checked (a wrong one is refused) and,
/// when right, unlocks the private rooms; anything else lists the public rooms only.
pub fn unlocks_private(configured: &str, body: &JsonMap) -> Result<bool, AdminKeyError> {
    if configured.is_empty() {
        return Ok(false);
    }
    match body.get("admin_key") {
        Some(Value::String(given)) if !given.is_empty() => {
            check_required(configured, body).map(|()| true)
        }
        _ => Ok(false),
    }
}

/// Compares without stopping at the first difference (Janus's `janus_strcmp_const_time`), so
/// that the time taken does not tell how much of a guess was right.
fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::plugin::test_body as body;

    #[test]
    fn create_needs_the_key_when_one_is_set() {
        assert_eq!(check_required("", &JsonMap::new()), Ok(()));
        assert_eq!(
            check_required("k", &JsonMap::new()),
            Err(AdminKeyError::Missing)
        );
        assert_eq!(
            check_required("k", &body(json!({"admin_key": 1}))),
            Err(AdminKeyError::NotAString)
        );
        assert_eq!(
            check_required("k", &body(json!({"admin_key": "x"}))),
            Err(AdminKeyError::Wrong)
        );
        assert_eq!(
            check_required("k", &body(json!({"admin_key": ""}))),
            Err(AdminKeyError::Wrong)
        );
        assert_eq!(
            check_required("key", &body(json!({"admin_key": "kex"}))),
            Err(AdminKeyError::Wrong)
        );
        assert_eq!(
            check_required("k", &body(json!({"admin_key": "k"}))),
            Ok(())
        );
    }

    #[test]
    fn list_checks_only_a_non_empty_string() {
        assert_eq!(
            unlocks_private("", &body(json!({"admin_key": "k"}))),
            Ok(false)
        );
        assert_eq!(unlocks_private("k", &JsonMap::new()), Ok(false));
        assert_eq!(
            unlocks_private("k", &body(json!({"admin_key": ""}))),
            Ok(false)
        );
        assert_eq!(
            unlocks_private("k", &body(json!({"admin_key": 5}))),
            Ok(false)
        );
        assert_eq!(
            unlocks_private("k", &body(json!({"admin_key": "j"}))),
            Err(AdminKeyError::Wrong)
        );
        assert_eq!(
            unlocks_private("k", &body(json!({"admin_key": "k"}))),
            Ok(true)
        );
    }
}
