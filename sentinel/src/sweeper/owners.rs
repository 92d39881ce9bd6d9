//! Which rooms the live proxies have on this Janus: each proxy the sentinel reports to is
//! asked on its admin API (`GET /plugins/videoroom/rooms`, `GET /plugins/audiobridge/rooms`,
//! with the report's token), at the address of its report URL. The answer counts only when
//! every proxy gave it.

use std::collections::BTreeSet;

use serde_json::Value;

use super::idle::RoomPlugin;
use crate::config::ResolvedTarget;

/// Largest rooms listing read from a proxy.
const MAX_LISTING: usize = 16 << 20;

/// Where a proxy's admin API is, from a report URL: its path without the last segment
/// (`http://10.0.0.9:8200/sentinel_callback` → `http://10.0.0.9:8200`), and the `token`
/// query parameter if the URL carries one (janus-cloud style).
pub fn admin_base(report_url: &str) -> (String, Option<String>) {
    let (url, query) = match report_url.split_once('?') {
        Some((url, query)) => (url, Some(query)),
        None => (report_url, None),
    };
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let base = match url[after_scheme..].find('/') {
        Some(path) => {
            let path = after_scheme + path;
            let last = url[path..].rfind('/').map_or(path, |i| path + i);
            &url[..last]
        }
        None => url,
    };
    let token = query.and_then(|q| {
        q.split('&')
            .find(|pair| pair.starts_with("token="))
            .map(str::to_owned)
    });
    (base.to_owned(), token)
}

/// The URL of a proxy's rooms listing of `plugin`.
pub fn rooms_url(report_url: &str, plugin: RoomPlugin) -> String {
    let (base, token) = admin_base(report_url);
    let path = format!("{base}/plugins/{}/rooms", plugin.name());
    match token {
        Some(token) => format!("{path}?{token}"),
        None => path,
    }
}

/// The rooms a proxy's listing (HTTP `status`, JSON `body`) says it has on `server`: a
/// videoroom room whose `servers` (or `server`) name it, an audiobridge room whose `server`
/// is it. A proxy with the plugin off has none; any other answer is an error.
pub fn owned_rooms(
    plugin: RoomPlugin,
    server: &str,
    status: u16,
    body: &Value,
) -> Result<BTreeSet<u64>, String> {
    let error = body.get("error").and_then(Value::as_str);
    if status == 404 && error.is_some_and(|e| e.ends_with("plugin is off")) {
        return Ok(BTreeSet::new());
    }
    if status != 200 {
        return Err(format!(
            "HTTP {status}: {}",
            error.unwrap_or("no rooms listing")
        ));
    }
    let rooms = body
        .get("rooms")
        .and_then(Value::as_array)
        .ok_or_else(|| "no rooms array in the answer".to_owned())?;
    let here = |room: &Value| {
        let first = room.get("server").and_then(Value::as_str) == Some(server);
        let any = room
            .get("servers")
            .and_then(Value::as_array)
            .is_some_and(|all| all.iter().any(|s| s.as_str() == Some(server)));
        first || (plugin == RoomPlugin::VideoRoom && any)
    };
    rooms
        .iter()
        .filter(|room| here(room))
        .map(|room| {
            room.get("room")
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("a room without a numeric id: {room}"))
        })
        .collect()
}

/// Asks one proxy.
async fn ask(
    client: &awc::Client,
    target: &ResolvedTarget,
    plugin: RoomPlugin,
    server: &str,
) -> Result<BTreeSet<u64>, String> {
    let mut request = client.get(rooms_url(&target.url, plugin));
    if let Some(token) = &target.token {
        request = request.insert_header(("Authorization", format!("Bearer {token}")));
    }
    let mut response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .body()
        .limit(MAX_LISTING)
        .await
        .map_err(|e| format!("HTTP {status}: body: {e}"))?;
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    owned_rooms(plugin, server, status, &body)
}

/// The rooms of `plugin` some proxy has on `server`; an error (naming the proxy) when a proxy
/// did not answer, or there is no proxy to ask.
pub async fn owned_by_any(
    client: &awc::Client,
    targets: &[ResolvedTarget],
    plugin: RoomPlugin,
    server: &str,
) -> Result<BTreeSet<u64>, String> {
    if targets.is_empty() {
        return Err("no report URL: no proxy to ask".to_owned());
    }
    let answers = futures_util::future::join_all(
        targets
            .iter()
            .map(|target| ask(client, target, plugin, server)),
    )
    .await;
    let mut owned = BTreeSet::new();
    for (target, answer) in targets.iter().zip(answers) {
        match answer {
            Ok(rooms) => owned.extend(rooms),
            Err(why) => {
                let url = rooms_url(&target.display_url(), plugin);
                return Err(format!("{url}: {why}"));
            }
        }
    }
    Ok(owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_admin_api_is_where_the_reports_go() {
        let cases = [
            (
                "http://10.0.0.9:8200/sentinel_callback",
                "http://10.0.0.9:8200",
                None,
            ),
            (
                "http://h/proxy-a/sentinel_callback",
                "http://h/proxy-a",
                None,
            ),
            ("http://h:8200/", "http://h:8200", None),
            ("http://h:8200", "http://h:8200", None),
            (
                "http://h:8200/sentinel_callback?a=1&token=t0k&b=2",
                "http://h:8200",
                Some("token=t0k"),
            ),
        ];
        for (url, base, token) in cases {
            assert_eq!(
                admin_base(url),
                (base.to_owned(), token.map(str::to_owned)),
                "{url}"
            );
        }
        assert_eq!(
            rooms_url(
                "http://h:8200/sentinel_callback?token=t",
                RoomPlugin::AudioBridge
            ),
            "http://h:8200/plugins/audiobridge/rooms?token=t"
        );
        assert_eq!(
            rooms_url("http://h:8200/sentinel_callback", RoomPlugin::VideoRoom),
            "http://h:8200/plugins/videoroom/rooms"
        );
    }

    #[test]
    fn a_proxy_owns_the_rooms_it_has_on_this_server() {
        let videorooms = json!({"rooms": [
            {"room": 1, "server": "j1", "servers": ["j1"]},
            {"room": 2, "server": "j2", "servers": ["j2", "j1"]},
            {"room": 3, "server": "j2", "servers": ["j2"]},
            {"room": 4, "server": null, "servers": []}
        ]});
        let owned = owned_rooms(RoomPlugin::VideoRoom, "j1", 200, &videorooms);
        assert_eq!(owned, Ok(BTreeSet::from([1, 2])));
        let audiobridges = json!({"rooms": [
            {"room": 5, "server": "j1"}, {"room": 6, "server": null}, {"room": 7, "server": "j2"}
        ]});
        let owned = owned_rooms(RoomPlugin::AudioBridge, "j1", 200, &audiobridges);
        assert_eq!(owned, Ok(BTreeSet::from([5])));
    }

    #[test]
    fn only_a_proxy_with_the_plugin_off_owns_nothing_for_sure() {
        let off = json!({"error": "the audiobridge plugin is off"});
        assert_eq!(
            owned_rooms(RoomPlugin::AudioBridge, "j1", 404, &off),
            Ok(BTreeSet::new())
        );
        // An older proxy, another product, a refused token, a broken answer: unknown.
        for (status, body) in [
            (
                404,
                json!({"error": "no route GET /plugins/audiobridge/rooms"}),
            ),
            (404, Value::Null),
            (401, json!({"error": "unauthorized"})),
            (500, json!({})),
            (200, json!({"list": []})),
            (200, json!({"rooms": [{"room": "x", "server": "j1"}]})),
        ] {
            assert!(
                owned_rooms(RoomPlugin::AudioBridge, "j1", status, &body).is_err(),
                "{status} {body}"
            );
        }
    }
}
