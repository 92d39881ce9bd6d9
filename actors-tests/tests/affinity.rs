//! Placement affinity (`plugins.affinity`): every textroom handle on one backend, for every
//! proxy of a cluster, against two real Janus servers. A textroom room is a room of one Janus,
//! so "the same room" is what shows it: a room created through one handle exists for every
//! other handle only when they share a backend. With `none` (the control) round-robin spreads
//! the handles and some do not see the room.

use std::time::{Duration, Instant};

use actors_tests::proxy_process::ProxyProcess;
use actors_tests::redis_server::{self, RedisServer};
use actors_tests::scenario::{expect_backend_lost, peer_on, Peer};
use actors_tests::{init_logging, JanusServer};
use anyhow::{ensure, Context as _};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);
const TEXTROOM: &str = "janus.plugin.textroom";
const PROXY: &str = env!("CARGO_BIN_EXE_proxy-under-test");
const ROOM: u64 = 4242;

/// A plugin request over the Janus API and its synchronous answer's `plugindata.data`.
async fn request(peer: &mut Peer, body: Value) -> anyhow::Result<Value> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    let transaction = format!("t{}", N.fetch_add(1, Ordering::Relaxed));
    let m = json!({"janus": "message", "session_id": peer.session, "handle_id": peer.handle,
        "transaction": transaction, "body": body});
    peer.client.send(&m).await?;
    let frames = peer
        .client
        .recv_until(WAIT, |f| f["transaction"] == transaction)
        .await
        .with_context(|| format!("answer to {body}"))?;
    let answer = frames.last().cloned().context("no answer")?;
    ensure!(answer["janus"] == "success", "{body}: {answer}");
    Ok(answer["plugindata"]["data"].clone())
}

async fn create_room(peer: &mut Peer) -> anyhow::Result<()> {
    let created = request(peer, json!({"request": "create", "room": ROOM})).await?;
    ensure!(created["textroom"] == "created", "create: {created}");
    Ok(())
}

async fn sees_room(peer: &mut Peer) -> anyhow::Result<bool> {
    let exists = request(peer, json!({"request": "exists", "room": ROOM})).await?;
    exists["exists"].as_bool().context("no `exists`")
}

/// Two proxy-side servers `j1` and `j2`, round-robin, and `affinity` for textroom.
fn toml(janus: &[JanusServer; 2], affinity: &str) -> String {
    format!(
        "[registry]\npolicy = \"round-robin\"\n\n[plugins.affinity]\n\"{TEXTROOM}\" = \"{affinity}\"\n\n\
         [[backend.servers]]\nname = \"j1\"\nurl = \"{}\"\n\n\
         [[backend.servers]]\nname = \"j2\"\nurl = \"{}\"\n",
        janus[0].ws_url(),
        janus[1].ws_url()
    )
}

async fn ready(proxy: &ProxyProcess) -> anyhow::Result<()> {
    for name in ["j1", "j2"] {
        proxy.wait_selectable(name, WAIT).await?;
    }
    Ok(())
}

/// Whether Janus `janus` has the room (asked directly, not through a proxy).
async fn has_room(janus: &JanusServer) -> anyhow::Result<bool> {
    let mut peer = peer_on(&janus.ws_url(), TEXTROOM).await?;
    sees_room(&mut peer).await
}

#[tokio::test]
async fn textroom_handles_share_one_backend_until_it_is_lost() -> anyhow::Result<()> {
    init_logging();
    let mut janus = [JanusServer::start().await?, JanusServer::start().await?];

    // The control: per-handle placement spreads the handles, and some miss the room.
    let spread = ProxyProcess::start(PROXY, &toml(&janus, "none"))?;
    ready(&spread).await?;
    let mut first = peer_on(&spread.url(), TEXTROOM).await?;
    create_room(&mut first).await?;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let mut peer = peer_on(&spread.url(), TEXTROOM).await?;
        seen.push(sees_room(&mut peer).await?);
    }
    ensure!(
        seen.contains(&false),
        "round-robin put every handle on one server: {seen:?}"
    );
    // Destroyed again, wherever it was (the backends are reused below).
    let destroyed = request(&mut first, json!({"request": "destroy", "room": ROOM})).await?;
    ensure!(destroyed["textroom"] == "destroyed", "destroy: {destroyed}");
    drop(spread);

    // Cluster affinity: every handle sees the room the first one created.
    let proxy = ProxyProcess::start(PROXY, &toml(&janus, "cluster"))?;
    ready(&proxy).await?;
    let mut peers = vec![peer_on(&proxy.url(), TEXTROOM).await?];
    create_room(&mut peers[0]).await?;
    for _ in 0..4 {
        let mut peer = peer_on(&proxy.url(), TEXTROOM).await?;
        ensure!(
            sees_room(&mut peer).await?,
            "a handle off the plugin's home"
        );
        peers.push(peer);
    }
    let home = if has_room(&janus[0]).await? { 0 } else { 1 };
    ensure!(
        has_room(&janus[home]).await?,
        "the room is on neither server"
    );

    // The home is lost: its handles end as Janus would tell them, and the next attach goes
    // to the other server, the new home, where the room is not.
    janus[home].kill();
    let deadline = Instant::now() + WAIT;
    for peer in &mut peers {
        expect_backend_lost(peer, deadline).await?;
    }
    let mut moved = peer_on(&proxy.url(), TEXTROOM).await?;
    ensure!(
        !sees_room(&mut moved).await?,
        "the new home has the old room"
    );
    create_room(&mut moved).await?;
    let mut next = peer_on(&proxy.url(), TEXTROOM).await?;
    ensure!(sees_room(&mut next).await?, "a handle off the new home");
    ensure!(
        has_room(&janus[1 - home]).await?,
        "the new home is not the other server"
    );
    Ok(())
}

#[tokio::test]
async fn every_proxy_of_a_cluster_uses_the_same_home() -> anyhow::Result<()> {
    if !redis_server::available() {
        println!("SKIP: redis-server is not installed (apt-get install redis-server)");
        return Ok(());
    }
    init_logging();
    let janus = [JanusServer::start().await?, JanusServer::start().await?];
    let redis = RedisServer::start().await?;
    let servers = [("j1", janus[0].ws_url()), ("j2", janus[1].ws_url())];
    let extra = "[registry]\npolicy = \"round-robin\"\n";
    let one = ProxyProcess::start_shared_with(PROXY, &redis.url(), "one", &servers, extra)?;
    let two = ProxyProcess::start_shared_with(PROXY, &redis.url(), "two", &servers, extra)?;
    ready(&one).await?;
    ready(&two).await?;

    // Handles attached on both proxies, alternately, all on the home the first one chose.
    let mut creator = peer_on(&one.url(), TEXTROOM).await?;
    create_room(&mut creator).await?;
    for (i, proxy) in [&two, &one, &two, &two, &one].into_iter().enumerate() {
        let mut peer = peer_on(&proxy.url(), TEXTROOM).await?;
        ensure!(
            sees_room(&mut peer).await?,
            "handle {i} off the plugin's home"
        );
    }
    let on_first = has_room(&janus[0]).await?;
    let on_second = has_room(&janus[1]).await?;
    ensure!(
        on_first != on_second,
        "the room must be on exactly one server"
    );
    Ok(())
}
