//! An audiobridge handle that goes while the proxy attaches its backend handle (a *leg*) for
//! its first request: the backend handle Janus creates afterwards is detached again, not left
//! on the server for the life of the proxy's backend session. The path to the real Janus
//! goes through a `TcpRelay` whose partition holds the attach until the client has detached.

use std::time::{Duration, Instant};

use actors_tests::scenario::{peer_on, Peer};
use actors_tests::tcp_relay::TcpRelay;
use actors_tests::{init_logging, proxy_config, JanusServer, ProxyUnderTest};
use anyhow::{anyhow, bail, ensure};
use serde_json::{json, Value};

const AUDIOBRIDGE: &str = "janus.plugin.audiobridge";
const WAIT: Duration = Duration::from_secs(10);
/// A room of `plugins.audiobridge_rooms`: on no server until its first join.
const ROOM: u64 = 4242;

fn message(p: &Peer, transaction: &str, body: Value) -> Value {
    json!({"janus": "message", "session_id": p.session, "handle_id": p.handle,
        "transaction": transaction, "body": body})
}

/// Polls `count` until it gives `want` (bounded by [`WAIT`]).
async fn wait_count<F, Fut>(what: &str, want: u64, mut count: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<u64>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        let now = count().await?;
        if now == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what}: {now}, not {want}, after {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_detached_while_its_leg_attaches_leaves_no_backend_handle() -> anyhow::Result<()> {
    init_logging();
    let janus = JanusServer::start().await?;
    let janus_addr = janus
        .ws_url()
        .trim_start_matches("ws://")
        .parse()
        .map_err(|e| anyhow!("janus address: {e}"))?;
    let relay = TcpRelay::start(janus_addr).await?;
    let mut config = proxy_config(&[("j", relay.ws_url())]);
    // The partition is silence on a live link: not to be taken for a lost Janus.
    config.backend.liveness_timeout_ms = 0;
    if let Value::Object(room) = json!({"room": ROOM}) {
        config.plugins.audiobridge_rooms.push(room);
    }
    let proxy = ProxyUnderTest::start(config).await?;
    proxy
        .wait_server("j", WAIT, |s| s["selectable"] == true)
        .await?;
    let url = proxy.ws_url();
    let (mut leaver, mut marker) = (
        peer_on(&url, AUDIOBRIDGE).await?,
        peer_on(&url, AUDIOBRIDGE).await?,
    );
    let placed = || async {
        let server = proxy.wait_server("j", WAIT, |_| true).await?;
        server["placed_since_report"]
            .as_u64()
            .ok_or_else(|| anyhow!("no placed_since_report: {server}"))
    };
    ensure!(placed().await? == 0, "placed before any request");

    relay.partition();
    // The first join places the room on `j` and attaches the leaver's leg there: the registry
    // counts the placement as the attach goes out (held by the partition).
    leaver
        .client
        .send(&message(
            &leaver,
            "join",
            json!({"request": "join", "room": ROOM}),
        ))
        .await?;
    wait_count("placements", 1, placed).await?;
    let detached = leaver
        .client
        .request(json!({"janus": "detach", "session_id": leaver.session,
            "handle_id": leaver.handle, "transaction": "detach"}))
        .await?;
    ensure!(detached["janus"] == "success", "{detached}");
    // Another handle's request through the same link, sent after the held attach: once it is
    // answered, Janus has answered that attach too.
    marker
        .client
        .send(&message(
            &marker,
            "marker",
            json!({"request": "join", "room": 999_999}),
        ))
        .await?;
    relay.heal();
    let frames = marker
        .client
        .recv_until(WAIT, |f| {
            f["transaction"] == "marker" && f["janus"] == "event"
        })
        .await?;
    let answer = frames
        .last()
        .map(|f| f["plugindata"]["data"].clone())
        .unwrap_or_default();
    ensure!(answer["error_code"] == 485, "{answer}");

    // Only the marker's leg is left: on Janus, on the proxy's link, in the registry's count.
    wait_count("handles on janus", 1, || async {
        Ok(janus.handle_count().await? as u64)
    })
    .await?;
    wait_count("handles on the link", 1, || async {
        let server = proxy.wait_server("j", WAIT, |_| true).await?;
        server["link"]["handles"]
            .as_u64()
            .ok_or_else(|| anyhow!("no link handles: {server}"))
    })
    .await?;
    wait_count("placements", 1, placed).await?;
    Ok(())
}
