//! A videoroom client for the signalling tests of the proxy's videoroom plugin
//! (`tests/videoroom*.rs`): a handle, a request and its answer, a publisher's join, and whether
//! a Janus has a room (asked directly, not through the proxy).

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure};
use serde_json::{json, Value};

use crate::scenario::{peer_on, Peer};

pub const VIDEOROOM: &str = "janus.plugin.videoroom";
/// A real SDP offer (audio + video) from a browser.
pub const OFFER: &str = include_str!("../tests/data/videocall-offer.sdp");
/// How long one request, or the event it causes, may take.
pub const STEP_LIMIT: Duration = Duration::from_secs(8);

/// A client of `url` with a videoroom handle.
pub async fn user(url: &str) -> anyhow::Result<Peer> {
    peer_on(url, VIDEOROOM).await
}

/// Sends `body` as a plugin message with transaction `tx` (with [`OFFER`] when `offer`).
pub async fn message(u: &mut Peer, tx: &str, body: Value, offer: bool) -> anyhow::Result<()> {
    let mut m = json!({"janus": "message", "session_id": u.session, "handle_id": u.handle,
        "transaction": tx, "body": body});
    if offer {
        m["jsep"] = json!({"type": "offer", "sdp": OFFER});
    }
    u.client.send(&m).await
}

/// The plugin data of the reply (sync) or event (async) to `tx`; for an asynchronous request
/// its `ack` is consumed too (it may come before or after the event).
pub async fn answer(u: &mut Peer, tx: &str, body: Value, offer: bool) -> anyhow::Result<Value> {
    message(u, tx, body, offer).await?;
    let deadline = Instant::now() + STEP_LIMIT;
    let (mut acked, mut data) = (false, None);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(f) = u.client.recv_within(left).await? else {
            bail!("no answer to {tx} within {STEP_LIMIT:?}");
        };
        if f["transaction"] != tx {
            continue;
        }
        match f["janus"].as_str() {
            Some("success") => return Ok(f["plugindata"]["data"].clone()),
            Some("ack") => acked = true,
            Some("event") => data = Some(f["plugindata"]["data"].clone()),
            _ => bail!("{tx}: {f}"),
        }
        if let (true, Some(d)) = (acked, data.as_ref()) {
            return Ok(d.clone());
        }
    }
}

/// Does `room` exist on this Janus (asked directly)?
pub async fn exists_on(url: &str, room: u64) -> anyhow::Result<bool> {
    let mut u = user(url).await?;
    let data = answer(
        &mut u,
        "e",
        json!({"request": "exists", "room": room}),
        false,
    )
    .await?;
    let _ = u.client.close().await;
    data["exists"]
        .as_bool()
        .ok_or_else(|| anyhow!("exists: {data}"))
}

/// Joins `room` as publisher `id` (display `p<id>`); the `joined` event's plugin data.
pub async fn join_publisher(u: &mut Peer, room: u64, id: u64) -> anyhow::Result<Value> {
    let data = answer(
        u,
        &format!("join-{id}"),
        json!({"request": "join", "room": room, "ptype": "publisher", "id": id,
            "display": format!("p{id}")}),
        false,
    )
    .await?;
    ensure!(data["videoroom"] == "joined", "join {id}: {data}");
    Ok(data)
}
