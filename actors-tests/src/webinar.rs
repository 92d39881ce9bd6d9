//! Helpers of the webinar-scale videoroom tests (`tests/videoroom_webinar.rs`,
//! `tests/media_videoroom_webinar.rs`): three Janus servers in a media test's namespace, each
//! with its Admin API on WebSockets (the tests ask every Janus which handles it holds), the
//! proxy's sections for them with an admin token, and the proxy's admin API read and driven
//! with curl inside the namespace (the test process itself is outside it).

use std::time::Duration;

use serde_json::Value;

use crate::netns::{janus_reports, poll_until, JanusInNs, MediaTest};

/// The admin token the webinar tests give the proxy (`[admin] token`).
pub const ADMIN_TOKEN: &str = "webinar-admin-token";

/// One Janus of a webinar test: its name for the proxy, its client and Admin API WebSocket
/// ports inside the namespace.
#[derive(Clone, Copy, Debug)]
pub struct Backend {
    pub name: &'static str,
    pub ws: u16,
    pub admin_ws: u16,
}

impl Backend {
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.ws)
    }

    pub fn admin_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.admin_ws)
    }
}

/// The three servers of the webinar tests (ports free inside a fresh namespace).
pub const BACKENDS: [Backend; 3] = [
    Backend {
        name: "janus-a",
        ws: 8188,
        admin_ws: 7188,
    },
    Backend {
        name: "janus-b",
        ws: 8190,
        admin_ws: 7190,
    },
    Backend {
        name: "janus-c",
        ws: 8192,
        admin_ws: 7192,
    },
];

/// Starts every backend in the namespace with the media tests' templates, the videoroom
/// plugin enabled and the Admin API on `admin_ws` (127.0.0.1, no secret: nothing leaves the
/// namespace).
pub fn spawn_janus_with_admin(media: &MediaTest, backends: &[Backend]) -> Vec<JanusInNs> {
    backends
        .iter()
        .map(|b| {
            let admin = format!(
                "admin_ws = true\n\tadmin_ws_ip = \"127.0.0.1\"\n\tadmin_ws_port = {}",
                b.admin_ws
            );
            let conf = media.write_janus_config(
                &format!("conf-{}", b.name),
                b.ws,
                &[
                    ("libjanus_videoroom.so,", ""),
                    ("janus-media-test", b.name),
                    ("admin_ws = false", &admin),
                ],
            );
            media.spawn_janus(b.name, &conf, b.name)
        })
        .collect()
}

/// The proxy's configuration after `MediaTest::spawn_proxy`'s own `[admin] listen` line: the
/// admin token (so it must come first: it lands in `[admin]`), then `extra` (whole sections),
/// then one `[[backend.servers]]` per backend.
pub fn proxy_sections(backends: &[Backend], extra: &str) -> String {
    let mut text = format!("token = \"{ADMIN_TOKEN}\"\n{extra}\n");
    for b in backends {
        text.push_str(&format!(
            "[[backend.servers]]\nname = \"{}\"\nurl = \"{}\"\n",
            b.name,
            b.ws_url()
        ));
    }
    text
}

/// `NAME=URL,…` of the backends' client WebSockets, for the scripts' `--janus-urls`.
pub fn janus_urls_arg(backends: &[Backend]) -> String {
    backends
        .iter()
        .map(|b| format!("{}={}", b.name, b.ws_url()))
        .collect::<Vec<_>>()
        .join(",")
}

/// `NAME=URL,…` of the backends' Admin API WebSockets, for the scripts' `--janus-admin`.
pub fn janus_admin_arg(backends: &[Backend]) -> String {
    backends
        .iter()
        .map(|b| format!("{}={}", b.name, b.admin_url()))
        .collect::<Vec<_>>()
        .join(",")
}

/// `GET path` of the proxy's admin API on `admin_port` in the namespace, with the token:
/// the JSON body, or why not.
pub fn admin_get(media: &MediaTest, admin_port: u16, path: &str) -> Result<Value, String> {
    let url = format!("http://127.0.0.1:{admin_port}{path}");
    let auth = format!("Authorization: Bearer {ADMIN_TOKEN}");
    let body = media
        .ns
        .exec(&["curl", "-s", "--max-time", "5", "-H", &auth, &url])?;
    serde_json::from_str(&body).map_err(|e| format!("GET {path}: {e}: {body}"))
}

/// Polls the proxy until every backend is selectable (false if not within `within`).
pub fn wait_selectable(
    media: &MediaTest,
    admin_port: u16,
    backends: &[Backend],
    within: Duration,
) -> bool {
    poll_until(within, Duration::from_millis(100), || {
        backends.iter().all(|b| {
            admin_get(media, admin_port, &format!("/backend_servers/{}", b.name))
                .is_ok_and(|s| s["selectable"] == true)
        })
    })
}

/// Whether `port` accepts TCP connections inside the namespace.
pub fn listening(media: &MediaTest, port: u16) -> bool {
    let probe = format!("exec 3<>/dev/tcp/127.0.0.1/{port}");
    media.ns.exec(&["bash", "-c", &probe]).is_ok()
}

/// Polls until every backend listens on its client and Admin API ports.
/// [`spawn_janus_with_admin`], then waits until every one listens (panics, with their logs,
/// if one does not within 20 s).
pub fn start_janus(media: &MediaTest, backends: &[Backend]) -> Vec<JanusInNs> {
    let mut janus = spawn_janus_with_admin(media, backends);
    assert!(
        wait_listening(media, backends, Duration::from_secs(20)),
        "{}: the Janus servers do not listen\n{}",
        media.test,
        janus_reports(&mut janus)
    );
    janus
}

pub fn wait_listening(media: &MediaTest, backends: &[Backend], within: Duration) -> bool {
    poll_until(within, Duration::from_millis(50), || {
        backends
            .iter()
            .all(|b| listening(media, b.ws) && listening(media, b.admin_ws))
    })
}
