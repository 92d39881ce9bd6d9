//! The `info` reply: the proxy describes itself in Janus's `server_info` shape, listing the
//! plugins a client can attach to right now.

use janus_protocol::frames::ServerInfo;
use janus_protocol::JsonMap;
use serde_json::{json, Value};

use super::env::SessionEnv;

use crate::info::{numeric_version, AUTHOR, NAME, VERSION_STRING};

pub fn server_info(state: &SessionEnv, transaction: Option<&str>) -> ServerInfo {
    let general = &state.general;
    let mut extra = JsonMap::new();
    let mut put = |k: &str, v: Value| {
        extra.insert(k.to_owned(), v);
    };
    put("data_channels", json!(true));
    put("accepting-new-sessions", json!(true));
    put("session-timeout", json!(general.session_timeout));
    put(
        "reclaim-session-timeout",
        json!(general.reclaim_session_timeout),
    );
    put("server-name", json!(general.server_name));
    put("api_secret", json!(state.auth.api_secret_enabled()));
    put("auth_token", json!(state.auth.token_auth_enabled()));
    put("event_handlers", json!(false));
    put("opaqueid_in_api", json!(false));
    put(
        "transports",
        json!({
            "janus.transport.websockets": {
                "name": "janus-proxy WebSockets transport",
                "author": AUTHOR,
                "description": "Janus API over WebSockets (subprotocol janus-protocol), relayed to a cluster of Janus servers.",
                "version_string": VERSION_STRING,
                "version": numeric_version(),
            }
        }),
    );
    put("events", json!({}));
    put("loggers", json!({}));
    let plugins = state
        .plugins
        .iter()
        .filter_map(|p| Some((p.package().to_owned(), p.descriptor(&state.plugin_env)?)))
        .collect();
    ServerInfo {
        transaction: transaction.map(str::to_owned),
        name: NAME.to_owned(),
        version: numeric_version(),
        version_string: VERSION_STRING.to_owned(),
        author: AUTHOR.to_owned(),
        extra,
        plugins,
    }
}
