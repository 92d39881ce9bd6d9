//! Shared pieces of the plugin tests (videocall, videoroom, audiobridge): two real Janus
//! servers behind the proxy, and the comparison of a three-user script's frames, step by
//! step, between a Janus and the proxy.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use serde_json::Value;

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

/// The frames each of the three `users` gets for one step of a script: `expect[i]` for user
/// `i`, read within `limit`, each normalised by `normalise`, each user's list sorted (Janus's
/// order between an answer and events is a race). With `only` set, frames of other
/// transactions are skipped. `STEP_DEBUG=1` prints every frame.
pub async fn collect_step(
    url: &str,
    users: &mut [Peer],
    step: &str,
    expect: [usize; 3],
    only: Option<&str>,
    limit: Duration,
    normalise: impl Fn(&Value) -> String,
) -> anyhow::Result<[Vec<String>; 3]> {
    let debug = std::env::var_os("STEP_DEBUG").is_some();
    let deadline = Instant::now() + limit;
    let mut got: [Vec<String>; 3] = Default::default();
    for (i, u) in users.iter_mut().enumerate().take(3) {
        while got[i].len() < expect[i] {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(f) = u.client.recv_within(left).await? else {
                bail!(
                    "{url}: step {step:?}: user {i} got {} of {} frames: {:?}",
                    got[i].len(),
                    expect[i],
                    got[i]
                );
            };
            let skipped = only.is_some_and(|t| f["transaction"] != t);
            if debug {
                let what = if skipped { "skipped" } else { "got" };
                eprintln!("{url} {step:?} user {i} {what} {f}");
            }
            if !skipped {
                got[i].push(normalise(&f));
            }
        }
        got[i].sort();
    }
    Ok(got)
}

/// Backend handles per server, from the proxy's admin API (`link.handles`).
pub async fn backend_handles(proxy: &ProxyUnderTest) -> anyhow::Result<HashMap<String, u64>> {
    Ok(proxy
        .servers()
        .await?
        .iter()
        .filter_map(|s| {
            Some((
                s["name"].as_str()?.to_owned(),
                s["link"]["handles"].as_u64()?,
            ))
        })
        .collect())
}

/// Waits until the backend handle counts satisfy `check` (bounded by `limit`).
pub async fn wait_handles(
    proxy: &ProxyUnderTest,
    limit: Duration,
    check: impl Fn(&HashMap<String, u64>) -> bool,
) -> anyhow::Result<HashMap<String, u64>> {
    let deadline = Instant::now() + limit;
    loop {
        let handles = backend_handles(proxy).await?;
        if check(&handles) {
            return Ok(handles);
        }
        if Instant::now() > deadline {
            bail!("backend handles not as expected within {limit:?}: {handles:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
