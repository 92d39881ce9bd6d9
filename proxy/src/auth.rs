//! Janus's client authentication, with Janus's semantics, so stock clients that send
//! `apisecret` / `token` work unchanged:
//!
//! * `api_secret`: every request but `info` and `ping` must carry `"apisecret"` (403 otherwise);
//! * token auth (`token_auth`): requests must carry a valid `"token"`; either a valid secret or
//!   a valid token lets a request in (as in Janus). Tokens are either **stored** (added, listed
//!   and removed through the admin API, each with the plugins it may attach to; no plugin list =
//!   every plugin) or, when `token_auth_secret` is set, **signed**: Janus's HMAC-SHA1 format
//!   `<expiry>,janus,<plugin>[,<plugin>…]:<base64 signature>`, which an application backend
//!   mints without calling the proxy.
//!
//! A plain struct: the time is an argument, the stored tokens sit behind a lock because every
//! connection thread reads them.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha1::Sha1;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Every request but `info` and `ping` must carry `"apisecret": <this>` (empty: off).
    pub api_secret: String,
    /// Requests must carry a valid `"token"` (a valid `apisecret` also does).
    pub token_auth: bool,
    /// With `token_auth`: tokens are HMAC-SHA1 signed with this secret (Janus's
    /// `token_auth_secret`); empty: tokens are stored, managed through the admin API.
    pub token_auth_secret: String,
}

/// The realm Janus signs tokens for.
pub const REALM: &str = "janus";

/// A stored token and the plugins it may attach to (None: all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredToken {
    pub token: String,
    pub allowed_plugins: Option<BTreeSet<String>>,
}

pub struct Authenticator {
    api_secret: Option<String>,
    token_auth: bool,
    signing_secret: Option<String>,
    stored: RwLock<BTreeMap<String, Option<BTreeSet<String>>>>,
}

impl Authenticator {
    pub fn new(config: &AuthConfig) -> Self {
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Authenticator {
            api_secret: non_empty(&config.api_secret),
            token_auth: config.token_auth,
            signing_secret: non_empty(&config.token_auth_secret).filter(|_| config.token_auth),
            stored: RwLock::new(BTreeMap::new()),
        }
    }

    pub fn api_secret_enabled(&self) -> bool {
        self.api_secret.is_some()
    }

    pub fn token_auth_enabled(&self) -> bool {
        self.token_auth
    }

    /// Signed tokens (HMAC) rather than stored ones.
    pub fn signed_mode(&self) -> bool {
        self.signing_secret.is_some()
    }

    /// Janus's `janus_request_check_secret`: with neither mechanism on, everything passes;
    /// otherwise a valid `apisecret` or a valid `token` must be in the request.
    pub fn authorizes(&self, root: &Map<String, Value>, now_unix: i64) -> bool {
        if self.api_secret.is_none() && !self.token_auth {
            return true;
        }
        if let Some(secret) = &self.api_secret {
            if let Some(given) = root.get("apisecret").and_then(Value::as_str) {
                if constant_time_eq(given.as_bytes(), secret.as_bytes()) {
                    return true;
                }
            }
        }
        if self.token_auth {
            if let Some(token) = root.get("token").and_then(Value::as_str) {
                return self.token_is_valid(token, now_unix);
            }
        }
        false
    }

    fn token_is_valid(&self, token: &str, now_unix: i64) -> bool {
        match &self.signing_secret {
            Some(secret) => check_signature(token, secret, now_unix, None),
            None => self.stored.read().contains_key(token),
        }
    }

    /// Janus's `janus_auth_check_plugin` for an `attach` that carries `token`: false when the
    /// token may not use `plugin` (→ 405). Only asked when token auth is on.
    pub fn token_allows_plugin(&self, token: &str, plugin: &str, now_unix: i64) -> bool {
        match &self.signing_secret {
            Some(secret) => check_signature(token, secret, now_unix, Some(plugin)),
            None => match self.stored.read().get(token) {
                Some(None) => true,
                Some(Some(plugins)) => plugins.contains(plugin),
                None => false,
            },
        }
    }

    /// Adds (or replaces) a stored token; `plugins` None lets it attach to any plugin.
    pub fn add_token(&self, token: &str, plugins: Option<BTreeSet<String>>) {
        self.stored.write().insert(token.to_owned(), plugins);
    }

    pub fn remove_token(&self, token: &str) -> bool {
        self.stored.write().remove(token).is_some()
    }

    pub fn tokens(&self) -> Vec<StoredToken> {
        self.stored
            .read()
            .iter()
            .map(|(token, plugins)| StoredToken {
                token: token.clone(),
                allowed_plugins: plugins.clone(),
            })
            .collect()
    }
}

/// Mints a signed token the way Janus expects it (for tests and tools).
pub fn sign_token(secret: &str, expiry_unix: i64, plugins: &[&str]) -> String {
    let mut data = format!("{expiry_unix},{REALM}");
    for plugin in plugins {
        data.push(',');
        data.push_str(plugin);
    }
    let signature = hmac_base64(secret, &data);
    format!("{data}:{signature}")
}

fn hmac_base64(secret: &str, data: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha1>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Janus's `janus_auth_check_signature` (and `_contains` when `plugin` is given): exactly one
/// `:`-separated signature, an expiry not in the past, the realm, the HMAC, and the plugin among
/// the descriptors after the realm.
fn check_signature(token: &str, secret: &str, now_unix: i64, plugin: Option<&str>) -> bool {
    let Some((data, signature)) = token.split_once(':') else {
        return false;
    };
    let mut fields = data.split(',');
    let (Some(expiry), Some(realm)) = (fields.next(), fields.next()) else {
        return false;
    };
    // strtoll: leading digits (and sign) count, the rest is ignored; no digits means 0.
    let expiry = leading_integer(expiry);
    if expiry < 0 || now_unix > expiry || realm != REALM {
        return false;
    }
    if let Some(plugin) = plugin {
        if !fields.any(|d| d == plugin) {
            return false;
        }
    }
    constant_time_eq(signature.as_bytes(), hmac_base64(secret, data).as_bytes())
}

fn leading_integer(s: &str) -> i64 {
    let s = s.trim_start();
    let (sign, digits) = match s.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, s.strip_prefix('+').unwrap_or(s)),
    };
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end]
        .parse::<i64>()
        .map(|v| sign * v)
        .unwrap_or(if end == 0 { 0 } else { i64::MAX })
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn config(secret: &str, token_auth: bool, signing: &str) -> AuthConfig {
        AuthConfig {
            api_secret: secret.into(),
            token_auth,
            token_auth_secret: signing.into(),
        }
    }

    fn root(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn nothing_configured_lets_everything_in() {
        let auth = Authenticator::new(&AuthConfig::default());
        assert!(auth.authorizes(&root(json!({"janus": "create"})), NOW));
    }

    #[test]
    fn api_secret_or_token_is_enough() {
        let auth = Authenticator::new(&config("s3cret", true, ""));
        auth.add_token("tok", None);
        assert!(!auth.authorizes(&root(json!({})), NOW));
        assert!(!auth.authorizes(&root(json!({"apisecret": "nope"})), NOW));
        assert!(!auth.authorizes(&root(json!({"apisecret": 5})), NOW));
        assert!(auth.authorizes(&root(json!({"apisecret": "s3cret"})), NOW));
        assert!(auth.authorizes(&root(json!({"token": "tok"})), NOW));
        assert!(!auth.authorizes(&root(json!({"token": "other"})), NOW));
        assert!(auth.remove_token("tok"));
        assert!(!auth.authorizes(&root(json!({"token": "tok"})), NOW));
    }

    #[test]
    fn stored_tokens_limit_plugins() {
        let auth = Authenticator::new(&config("", true, ""));
        let echo: BTreeSet<String> = ["janus.plugin.echotest".to_owned()].into();
        auth.add_token("limited", Some(echo));
        auth.add_token("all", None);
        assert!(auth.token_allows_plugin("limited", "janus.plugin.echotest", NOW));
        assert!(!auth.token_allows_plugin("limited", "janus.plugin.videoroom", NOW));
        assert!(auth.token_allows_plugin("all", "janus.plugin.videoroom", NOW));
        assert!(!auth.token_allows_plugin("unknown", "janus.plugin.echotest", NOW));
        assert_eq!(auth.tokens().len(), 2);
    }

    #[test]
    fn signed_tokens_like_janus() {
        let auth = Authenticator::new(&config("", true, "hmac-secret"));
        let token = sign_token("hmac-secret", NOW + 60, &["janus.plugin.echotest"]);
        assert!(auth.authorizes(&root(json!({"token": token})), NOW));
        assert!(auth.token_allows_plugin(&token, "janus.plugin.echotest", NOW));
        assert!(!auth.token_allows_plugin(&token, "janus.plugin.videoroom", NOW));
        // Expired, wrong secret, wrong realm, tampered, malformed.
        assert!(!auth.authorizes(&root(json!({"token": token})), NOW + 61));
        let other = sign_token("other", NOW + 60, &[]);
        assert!(!auth.authorizes(&root(json!({"token": other})), NOW));
        let data = format!("{},other", NOW + 60);
        let wrong_realm = format!("{data}:{}", hmac_base64("hmac-secret", &data));
        assert!(!auth.authorizes(&root(json!({"token": wrong_realm})), NOW));
        let tampered = token.replace("echotest", "videoroom");
        assert!(!auth.authorizes(&root(json!({"token": tampered})), NOW));
        for bad in ["", "nocolon", ":", "x:y", "123:sig"] {
            assert!(!auth.authorizes(&root(json!({"token": bad})), NOW), "{bad}");
        }
    }

    #[test]
    fn known_vector() {
        // HMAC-SHA1("key", "1800000000,janus,janus.plugin.echotest"), base64.
        let token = sign_token("key", 1_800_000_000, &["janus.plugin.echotest"]);
        let (data, sig) = token.split_once(':').expect("colon");
        assert_eq!(data, "1800000000,janus,janus.plugin.echotest");
        assert_eq!(sig.len(), 28, "base64 of 20 bytes");
        assert_eq!(leading_integer("123abc"), 123);
        assert_eq!(leading_integer("abc"), 0);
        assert_eq!(leading_integer("-5"), -5);
    }
}
