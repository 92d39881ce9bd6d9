//! The stock demo rooms: `list` through a proxy configured with `deploy/janus-proxy.toml`'s
//! rooms shows what a stock Janus 1.1.2 shows with its stock plugin configuration (videoroom
//! rooms 1234 and 5678, audiobridge room 1234), entry for entry. The stock sections are kept
//! here as the Debian package installs them (`/etc/janus/janus.plugin.*.jcfg`).

use std::path::Path;

use actors_tests::scenario::peer_on;
use actors_tests::{init_logging, proxy_config, JanusOptions, JanusServer, ProxyUnderTest};
use anyhow::{ensure, Context as _};
use janus_proxy::config::ProxyConfig;
use serde_json::{json, Value};

const STOCK_VIDEOROOM: &str = r#"general: {
}
room-1234: {
	description = "Demo Room"
	secret = "adminpwd"
	publishers = 6
	bitrate = 128000
	fir_freq = 10
	record = false
}
room-5678: {
	description = "VP9-SVC Demo Room"
	secret = "adminpwd"
	publishers = 6
	bitrate = 512000
	fir_freq = 10
	videocodec = "vp9"
	video_svc = true
}
"#;

const STOCK_AUDIOBRIDGE: &str = r#"general: {
}
room-1234: {
	description = "Demo Room"
	secret = "adminpwd"
	sampling_rate = 16000
	record = false
}
"#;

/// `list` of `plugin` at `url`, sorted by room id.
async fn list(url: &str, plugin: &str) -> anyhow::Result<Vec<Value>> {
    let mut peer = peer_on(url, plugin).await?;
    let answer = peer
        .client
        .request(json!({"janus": "message", "session_id": peer.session,
            "handle_id": peer.handle, "transaction": "l", "body": {"request": "list"}}))
        .await?;
    let mut rooms = answer["plugindata"]["data"]["list"]
        .as_array()
        .cloned()
        .with_context(|| format!("{plugin} list: {answer}"))?;
    rooms.sort_by_key(|r| r["room"].as_u64());
    Ok(rooms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deploy_rooms_are_listed_as_a_stock_janus_lists_its_own() -> anyhow::Result<()> {
    init_logging();
    let stock = JanusServer::start_with(JanusOptions {
        plugin_configs: vec![
            ("janus.plugin.videoroom.jcfg".into(), STOCK_VIDEOROOM.into()),
            (
                "janus.plugin.audiobridge.jcfg".into(),
                STOCK_AUDIOBRIDGE.into(),
            ),
        ],
        ..JanusOptions::default()
    })
    .await?;
    // The proxy's backend has no rooms of its own: the proxy's come from the deploy file.
    let backend = JanusServer::start().await?;
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/janus-proxy.toml");
    let rooms = ProxyConfig::load_with_env(Some(&deploy), std::iter::empty())?.plugins;
    let mut config = proxy_config(&[("j1", backend.ws_url())]);
    config.plugins.videoroom_rooms = rooms.videoroom_rooms;
    config.plugins.audiobridge_rooms = rooms.audiobridge_rooms;
    let proxy = ProxyUnderTest::start(config).await?;

    for plugin in ["janus.plugin.videoroom", "janus.plugin.audiobridge"] {
        let janus = list(&stock.ws_url(), plugin).await?;
        let proxied = list(&proxy.ws_url(), plugin).await?;
        ensure!(!janus.is_empty(), "{plugin}: the stock Janus lists nothing");
        ensure!(
            janus == proxied,
            "{plugin}: Janus lists {janus:#?}\nthe proxy lists {proxied:#?}"
        );
    }
    Ok(())
}
