//! What the tests of rooms shared by two proxies through Redis (`tests/redis_rooms*.rs`)
//! share: a real Redis and two real Janus servers, the proxies' shared configuration, their
//! `/readyz`, and a client's requests and events (videoroom and audiobridge) with the
//! waits they need.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use serde_json::{json, Value};

use crate::redis_server::{self, RedisServer};
use crate::scenario::{peer_on, Peer};
use crate::videoroom_client::OFFER;
use crate::{http, proxy_config, JanusServer, ProxyConfig};

/// How long anything the tests wait for may take.
pub const WAIT: Duration = Duration::from_secs(15);

/// True (after a `SKIP:` line) where no redis-server is installed.
pub fn skip() -> bool {
    if redis_server::available() {
        return false;
    }
    println!("SKIP: redis-server is not installed (apt-get install redis-server)");
    true
}

/// The two Janus servers, as both proxies name them.
fn servers(j1: &JanusServer, j2: &JanusServer) -> Vec<(&'static str, String)> {
    vec![("j1", j1.ws_url()), ("j2", j2.ws_url())]
}

/// The configuration of proxy `id` in front of `backends`, sharing `redis` (a sync round every
/// 200 ms, a heartbeat that expires after 2 s).
pub fn shared_config(redis: &RedisServer, backends: &[(&str, String)], id: &str) -> ProxyConfig {
    let mut config = proxy_config(backends);
    config.store.url = redis.url();
    config.store.proxy_id = id.to_owned();
    config.store.sync_interval_ms = 200;
    config.store.heartbeat_ttl_s = 2;
    config.store.timeout_ms = 500;
    config
}

/// Polls `/readyz` on `admin` until `check` holds on its JSON body.
pub async fn wait_readyz(
    admin: std::net::SocketAddr,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(response) = http::get(admin, "/readyz").await {
            if response.status == 200 && check(&response.json()) {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("/readyz of {admin} never showed {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `/readyz` check: the shared store is in `state` with `proxies` live proxies.
pub fn store_is(state: &'static str, proxies: u64) -> impl Fn(&Value) -> bool {
    move |b| b["store"]["state"] == state && b["store"]["proxies"] == proxies
}

/// A client of `url` with a `plugin` handle (retried while the proxy starts).
pub async fn user(url: &str, plugin: &str) -> anyhow::Result<Peer> {
    let deadline = Instant::now() + WAIT;
    loop {
        match peer_on(url, plugin).await {
            Ok(u) => return Ok(u),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn next_transaction() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    format!("t{}", N.fetch_add(1, Ordering::Relaxed))
}

/// Sends a plugin request (with the test offer if `offer`) and returns the plugin data of its
/// answer: the `success` of a synchronous request, the `event` of an asynchronous one (with
/// the jsep under `"jsep"`). Frames in between are skipped.
pub async fn answer(u: &mut Peer, body: Value, offer: bool) -> anyhow::Result<Value> {
    let transaction = next_transaction();
    let mut m = json!({"janus": "message", "session_id": u.session, "handle_id": u.handle,
        "transaction": transaction, "body": body});
    if offer {
        m["jsep"] = json!({"type": "offer", "sdp": OFFER});
    }
    u.client.send(&m).await?;
    let frames = u
        .client
        .recv_until(WAIT, |f| {
            f["transaction"] == transaction
                && (f["janus"] == "success" || f["janus"] == "event" || f["janus"] == "error")
        })
        .await
        .with_context(|| format!("answer to {body}"))?;
    let last = frames.last().context("no answer")?;
    ensure!(last["janus"] != "error", "{body}: {last}");
    let mut data = last["plugindata"]["data"].clone();
    if let Some(jsep) = last.get("jsep") {
        data["jsep"] = jsep.clone();
    }
    Ok(data)
}

/// Waits for a plugin event on `u` (no transaction) for which `pred` holds on its data.
pub async fn event(
    u: &mut Peer,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let frames = u
        .client
        .recv_until(WAIT, |f| {
            f["janus"] == "event" && pred(&f["plugindata"]["data"])
        })
        .await
        .with_context(|| format!("waiting for {what}"))?;
    Ok(frames.last().context("no frame")?["plugindata"]["data"].clone())
}

/// What `exists` answers for `room`.
pub async fn exists(u: &mut Peer, room: u64) -> anyhow::Result<bool> {
    let data = answer(u, json!({"request": "exists", "room": room}), false).await?;
    data["exists"].as_bool().context("no exists")
}

/// Polls `exists` on `u` until it is `expected`.
pub async fn wait_exists(u: &mut Peer, room: u64, expected: bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    while exists(u, room).await? != expected {
        if Instant::now() > deadline {
            bail!("room {room}: exists never {expected}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The participant ids `listparticipants` gives, sorted.
pub async fn participant_ids(u: &mut Peer, room: u64) -> anyhow::Result<Vec<u64>> {
    let data = answer(
        u,
        json!({"request": "listparticipants", "room": room}),
        false,
    )
    .await?;
    let mut ids: Vec<u64> = data["participants"]
        .as_array()
        .with_context(|| format!("listparticipants: {data}"))?
        .iter()
        .filter_map(|p| p["id"].as_u64())
        .collect();
    ids.sort();
    Ok(ids)
}

/// Field `field` of the Redis hash `key` (empty if none).
pub fn redis_field(redis: &RedisServer, key: &str, field: &str) -> anyhow::Result<String> {
    Ok(redis.cli(&["HGET", key, field])?.trim().to_owned())
}

/// Joins videoroom `room` as publisher `id` called `name`; the `joined` event's data.
pub async fn join_videoroom(u: &mut Peer, room: u64, id: u64, name: &str) -> anyhow::Result<Value> {
    let data = answer(
        u,
        json!({"request": "join", "room": room, "ptype": "publisher", "id": id,
            "display": name}),
        false,
    )
    .await?;
    ensure!(data["videoroom"] == "joined", "{name} joins {room}: {data}");
    Ok(data)
}

/// Ids in a `joined`'s `publishers` and `attendees`.
pub fn present(joined: &Value) -> Vec<u64> {
    let mut ids: Vec<u64> = ["publishers", "attendees"]
        .iter()
        .filter_map(|k| joined[k].as_array())
        .flatten()
        .filter_map(|p| p["id"].as_u64())
        .collect();
    ids.sort();
    ids
}

/// A real Redis and two real Janus servers for the proxies to share.
pub struct Cluster {
    pub redis: RedisServer,
    /// The servers as both proxies name them (`j1`, `j2`) with their URLs.
    pub janus: Vec<(&'static str, String)>,
    pub j1: JanusServer,
    pub j2: JanusServer,
}

/// Starts a [`Cluster`].
pub async fn cluster() -> anyhow::Result<Cluster> {
    let redis = RedisServer::start().await?;
    let j1 = JanusServer::start().await?;
    let j2 = JanusServer::start().await?;
    Ok(Cluster {
        redis,
        janus: servers(&j1, &j2),
        j1,
        j2,
    })
}
