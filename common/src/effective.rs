//! What `--check-config` needs: the effective configuration as TOML with its secrets masked,
//! and the key a deserialization error is about (the `config` crate's messages often name only
//! the field, or nothing: "invalid socket address syntax").

use serde::de::DeserializeOwned;
use serde::Serialize;

/// What a masked secret shows.
pub const MASK: &str = "***";

/// Query parameters of a URL that carry a secret.
const SECRET_PARAMS: [&str; 4] = ["token", "password", "sentinel_password", "apisecret"];

/// Whether a key holds a secret: tokens, secrets (`api_secret`, `admin_secret`,
/// `token_auth_secret`, a room's `secret`), admin keys, PINs, passwords, a private room's
/// `allowed` tokens.
fn is_secret_key(key: &str) -> bool {
    matches!(key, "token" | "secret" | "pin" | "allowed")
        || key.ends_with("_secret")
        || (key.ends_with("_key") && key.contains("admin"))
        || key.contains("password")
}

/// `config` as TOML in its own order, secrets masked: a secret key's non-empty value becomes
/// `***` (an empty one stays empty, so that "not set" still shows), and so do the password of
/// a URL's user part and the values of its `token`/`password` query parameters, wherever a
/// URL appears.
pub fn masked_toml<T: Serialize>(config: &T) -> Result<String, String> {
    // Through JSON (its maps keep their order), since TOML's own tables sort their keys.
    let mut value = serde_json::to_value(config).map_err(|e| e.to_string())?;
    mask(&mut value, None);
    toml::to_string_pretty(&value).map_err(|e| e.to_string())
}

fn mask(value: &mut serde_json::Value, key: Option<&str>) {
    use serde_json::Value;
    match value {
        // An empty secret stays empty: "not set" shows.
        Value::String(s) if key.is_some_and(is_secret_key) && !s.is_empty() => *s = MASK.into(),
        Value::String(s) if key.is_some_and(is_secret_key) => {}
        Value::String(s) => {
            if let Some(masked) = mask_url(s) {
                *s = masked;
            }
        }
        // A list of tokens, say: every item is a secret.
        Value::Array(items) => items.iter_mut().for_each(|item| mask(item, key)),
        Value::Object(table) => {
            // TOML has no null: an unset optional value is left out.
            table.retain(|_, v| !v.is_null());
            for (k, v) in table.iter_mut() {
                mask(v, Some(k));
            }
        }
        _ => {}
    }
}

/// The URL with its secrets masked, if it has any (None: nothing to mask, or not a URL).
pub fn mask_url(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, password)) if !password.is_empty() => format!("{name}:{MASK}@{host}"),
            _ => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let (query, fragment) = match query.split_once('#') {
                Some((q, f)) => (q, Some(f)),
                None => (query, None),
            };
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, v)) if SECRET_PARAMS.contains(&k) && !v.is_empty() => {
                        format!("{k}={MASK}")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            let fragment = fragment.map(|f| format!("#{f}")).unwrap_or_default();
            format!("{path}?{}{fragment}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    let masked = format!("{scheme}://{authority}{tail}");
    (masked != url).then_some(masked)
}

/// The dotted key (`ws.listen`, `backend.servers`) whose value makes `built` fail to
/// deserialize as `T`: the key whose removal (it then takes its default) makes the error go,
/// or else changes it (not into a missing field). None when no single key does.
pub fn failing_key<T: DeserializeOwned>(built: &config::Config) -> Option<String> {
    built.clone().try_deserialize::<T>().err()?;
    // The tree as the layers built it, deserialized as JSON from here on: rebuilding a
    // `config::Config` from it would split keys that contain dots ("janus.plugin.textroom").
    let tree: serde_json::Value = built.clone().try_deserialize().ok()?;
    let error = error_of::<T>(&tree)?;
    let mut path = Vec::new();
    let found = narrow::<T>(&tree, &mut path, &error, Culprit::Fixes)
        || narrow::<T>(&tree, &mut path, &error, Culprit::Changes);
    found.then(|| path.join("."))
}

#[derive(Clone, Copy, PartialEq)]
enum Culprit {
    /// Without the key, the tree deserializes.
    Fixes,
    /// Without the key, the error is another one (several bad keys).
    Changes,
}

/// Looks for the key under `path` (a table of `tree`) whose removal fixes or changes `error`;
/// leaves the deepest such key in `path`.
fn narrow<T: DeserializeOwned>(
    tree: &serde_json::Value,
    path: &mut Vec<String>,
    error: &str,
    culprit: Culprit,
) -> bool {
    let Some(table) = lookup(tree, path).and_then(serde_json::Value::as_object) else {
        return false;
    };
    for key in table.keys() {
        path.push(key.clone());
        let mut without = tree.clone();
        remove(&mut without, path);
        let is_culprit = match (error_of::<T>(&without), culprit) {
            (None, _) => true,
            (Some(other), Culprit::Changes) => {
                other != error && !other.starts_with("missing field")
            }
            (Some(_), Culprit::Fixes) => false,
        };
        if is_culprit {
            // The culprit is this key or one below it.
            narrow::<T>(tree, path, error, culprit);
            return true;
        }
        path.pop();
    }
    false
}

fn lookup<'a>(tree: &'a serde_json::Value, path: &[String]) -> Option<&'a serde_json::Value> {
    path.iter().try_fold(tree, |node, key| node.get(key))
}

fn remove(tree: &mut serde_json::Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let parent = parents.iter().try_fold(tree, |node, key| node.get_mut(key));
    if let Some(serde_json::Value::Object(table)) = parent {
        table.remove(last);
    }
}

fn error_of<T: DeserializeOwned>(tree: &serde_json::Value) -> Option<String> {
    T::deserialize(tree).err().map(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[test]
    fn secrets_are_masked_wherever_they_are() {
        let config: toml::Value = toml::from_str(
            r#"
[admin]
token = "t0ken"
listen = "127.0.0.1:8200"
[backend]
api_secret = ""
token = "b"
[[backend.servers]]
name = "a"
url = "wss://u:p4ss@janus:8989/ws?x=1&token=abc#f"
[store]
url = "redis+sentinel://:s3cret@10.0.0.1:26379,10.0.0.2/m/0?sentinel_password=s2"
[auth]
token_auth_secret = "k"
[plugins]
videoroom_admin_key = "admin"
[[plugins.videoroom_rooms]]
room = 1234
secret = "adminpwd"
pin = "1"
description = "Demo Room"
"#,
        )
        .expect("toml");
        let text = masked_toml(&config).expect("render");
        for secret in [
            "t0ken",
            "p4ss",
            "abc",
            "s3cret",
            "s2",
            "adminpwd",
            "\"admin\"",
        ] {
            assert!(!text.contains(secret), "{secret} shown:\n{text}");
        }
        let back: toml::Value = toml::from_str(&text).expect("the output is TOML");
        assert_eq!(back["admin"]["token"].as_str(), Some(MASK));
        assert_eq!(back["admin"]["listen"].as_str(), Some("127.0.0.1:8200"));
        assert_eq!(
            back["backend"]["api_secret"].as_str(),
            Some(""),
            "unset shows"
        );
        assert_eq!(
            back["backend"]["servers"][0]["url"].as_str(),
            Some("wss://u:***@janus:8989/ws?x=1&token=***#f")
        );
        assert_eq!(
            back["store"]["url"].as_str(),
            Some("redis+sentinel://:***@10.0.0.1:26379,10.0.0.2/m/0?sentinel_password=***")
        );
        let room = &back["plugins"]["videoroom_rooms"][0];
        assert_eq!(room["secret"].as_str(), Some(MASK));
        assert_eq!(room["pin"].as_str(), Some(MASK));
        assert_eq!(room["description"].as_str(), Some("Demo Room"));
        assert_eq!(room["room"].as_integer(), Some(1234));
    }

    #[test]
    fn urls_without_secrets_are_left_alone() {
        for url in [
            "ws://127.0.0.1:8188",
            "redis://10.0.0.5:6379/1",
            "redis://user@host/0",
            "http://x/cb?tokens=1&a=b",
            "not a url",
        ] {
            assert_eq!(mask_url(url), None, "{url}");
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Section {
        #[serde(default)]
        listen: Option<std::net::SocketAddr>,
        #[serde(default)]
        port: u16,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Conf {
        #[serde(default)]
        ws: Option<Section>,
        #[serde(default)]
        other: Option<Section>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Loose {
        #[serde(default)]
        ws: Option<Section>,
        other: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u8>>,
    }

    fn built(toml_text: &str) -> config::Config {
        config::Config::builder()
            .add_source(config::File::from_str(toml_text, config::FileFormat::Toml))
            .build()
            .expect("builds")
    }

    #[test]
    fn the_failing_key_is_found() {
        let cases = [
            ("[ws]\nlisten = \"nonsense\"\n", "ws.listen"),
            ("[ws]\nport = 1\nlisen = 3\n", "ws.lisen"),
            ("[other]\nport = \"x\"\n[ws]\nport = 2\n", "other.port"),
            ("[colour]\nx = 1\n", "colour"),
        ];
        for (text, key) in cases {
            assert_eq!(
                failing_key::<Conf>(&built(text)).as_deref(),
                Some(key),
                "{text}"
            );
        }
        // A key with dots in a table of its own, as plugins.affinity has them.
        let dotted = "[ws]\nlisten = \"x\"\n[other.\"a.b\"]\n";
        assert_eq!(
            failing_key::<Loose>(&built(dotted)).as_deref(),
            Some("ws.listen")
        );
        assert_eq!(failing_key::<Conf>(&built("[ws]\nport = 2\n")), None);
    }
}
