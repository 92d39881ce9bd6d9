//! Shared pieces of the plugin tests (videocall, videoroom, audiobridge): two real Janus
//! servers behind the proxy, and the comparison of a three-user script's frames, step by
//! step, between a Janus and the proxy.

use std::time::Duration;

use anyhow::ensure;

use crate::scenario::{peer_on, Peer};
use crate::{proxy_config, JanusServer, ProxyUnderTest};
use janus_proxy::config::ProxyConfig;

/// What each of the three users received in one step (frames normalised, sorted).
pub type StepFrames = (String, [Vec<String>; 3]);

/// The steps must be the same, in number and in content.
pub fn compare(direct: &[StepFrames], proxied: &[StepFrames]) -> anyhow::Result<()> {
    let mut diffs = Vec::new();
    for (d, p) in direct.iter().zip(proxied) {
        if d != p {
            diffs.push(format!(
                "step {:?}\n  janus: {:#?}\n  proxy: {:#?}",
                d.0, d.1, p.1
            ));
        }
    }
    ensure!(direct.len() == proxied.len(), "step counts differ");
    ensure!(diffs.is_empty(), "differences:\n{}", diffs.join("\n"));
    Ok(())
}

/// Two real Janus servers (`janus-a`, `janus-b`) and the proxy in front of both, each server
/// selectable.
pub async fn cluster() -> anyhow::Result<(JanusServer, JanusServer, ProxyUnderTest)> {
    cluster_with(|_| {}).await
}

/// [`cluster`], with the proxy's configuration changed by `configure` first.
pub async fn cluster_with(
    configure: impl FnOnce(&mut ProxyConfig),
) -> anyhow::Result<(JanusServer, JanusServer, ProxyUnderTest)> {
    let (a, b) = tokio::try_join!(JanusServer::start(), JanusServer::start())?;
    let mut config = proxy_config(&[("janus-a", a.ws_url()), ("janus-b", b.ws_url())]);
    configure(&mut config);
    let proxy = ProxyUnderTest::start(config).await?;
    for name in ["janus-a", "janus-b"] {
        proxy
            .wait_server(name, Duration::from_secs(10), |s| s["selectable"] == true)
            .await?;
    }
    Ok((a, b, proxy))
}

/// Three users on `url`, each with a `plugin` handle, and the names of their ids for
/// normalising (`<session0>`, `<handle0>`, …).
pub async fn open_users(
    url: &str,
    plugin: &str,
) -> anyhow::Result<(Vec<Peer>, Vec<(u64, String)>)> {
    let mut users = Vec::with_capacity(3);
    for _ in 0..3 {
        users.push(peer_on(url, plugin).await?);
    }
    let mut ids = Vec::new();
    for (i, u) in users.iter().enumerate() {
        ids.push((u.session, format!("<session{i}>")));
        ids.push((u.handle, format!("<handle{i}>")));
    }
    Ok((users, ids))
}

/// `frame` as text with the ids replaced by their names.
pub fn named_ids(frame: &serde_json::Value, ids: &[(u64, String)]) -> String {
    let mut text = frame.to_string();
    for (id, name) in ids {
        text = text.replace(&id.to_string(), name);
    }
    text
}
