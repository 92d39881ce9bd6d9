//! Client-side steps shared by the integration tests: echotest requests and their expected
//! frames, a peer with one session and one handle, the frames of a lost backend.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure};
use serde_json::{json, Value};

use crate::JanusClient;

pub const ECHOTEST: &str = "janus.plugin.echotest";
pub const BACKEND_LOST: &str = "Backend server unavailable";

pub fn message(session: u64, handle: u64, transaction: &str, body: Value) -> Value {
    json!({"janus": "message", "session_id": session, "handle_id": handle,
        "transaction": transaction, "body": body})
}

/// Receives the `ack` and the `event` answering `transaction` (in either order, as Janus may
/// send them); any other frame is an error. Returns the event.
pub async fn ack_and_event(client: &mut JanusClient, transaction: &str) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut ack, mut event) = (false, None);
    while !ack || event.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = client
            .recv_within(left)
            .await?
            .ok_or_else(|| anyhow!("no ack + event for {transaction} (ack seen: {ack})"))?;
        ensure!(
            frame["transaction"] == transaction,
            "unexpected frame {frame}"
        );
        match frame["janus"].as_str() {
            Some("ack") if !ack => ack = true,
            Some("event") if event.is_none() => event = Some(frame),
            _ => bail!("unexpected frame for {transaction}: {frame}"),
        }
    }
    Ok(event.expect("loop ends with an event"))
}

/// Sends an echotest message and checks its `ack` + `event` (`result: ok`, from `handle`).
pub async fn echotest_ok(
    client: &mut JanusClient,
    session: u64,
    handle: u64,
    transaction: &str,
) -> anyhow::Result<()> {
    client
        .send(&message(
            session,
            handle,
            transaction,
            json!({"audio": true}),
        ))
        .await?;
    let event = ack_and_event(client, transaction).await?;
    ensure!(event["session_id"] == session, "{event}");
    ensure!(event["sender"] == handle, "{event}");
    ensure!(event["plugindata"]["plugin"] == ECHOTEST, "{event}");
    ensure!(event["plugindata"]["data"]["result"] == "ok", "{event}");
    Ok(())
}

pub async fn keepalive_acked(client: &mut JanusClient, session: u64) -> anyhow::Result<()> {
    let reply = client
        .request(json!({"janus": "keepalive", "session_id": session, "transaction": "ka"}))
        .await?;
    let expected = json!({"janus": "ack", "session_id": session, "transaction": "ka"});
    ensure!(reply == expected, "keepalive: {reply}");
    Ok(())
}

/// `detach` → `success` then `detached`.
pub async fn detach(client: &mut JanusClient, session: u64, handle: u64) -> anyhow::Result<()> {
    client
        .send(
            &json!({"janus": "detach", "session_id": session, "handle_id": handle,
            "transaction": "d"}),
        )
        .await?;
    let frames = client
        .recv_until(Duration::from_secs(5), |f| f["janus"] == "detached")
        .await?;
    ensure!(
        frames.contains(&json!({"janus": "success", "session_id": session, "transaction": "d"})),
        "detach: {frames:?}"
    );
    ensure!(
        frames.last()
            == Some(&json!({"janus": "detached", "session_id": session, "sender": handle})),
        "detach: {frames:?}"
    );
    Ok(())
}

/// A client connection with one session and one echotest handle.
pub struct Peer {
    pub client: JanusClient,
    pub session: u64,
    pub handle: u64,
}

pub async fn peer(url: &str) -> anyhow::Result<Peer> {
    peer_on(url, ECHOTEST).await
}

/// A client connection with one session and one handle of `plugin`.
pub async fn peer_on(url: &str, plugin: &str) -> anyhow::Result<Peer> {
    let mut client = JanusClient::connect(url).await?;
    let session = client.create_session().await?;
    let handle = client.attach(session, plugin).await?;
    Ok(Peer {
        client,
        session,
        handle,
    })
}

/// The two frames a client gets for a handle whose backend went away, in this order, each
/// before `deadline`.
pub async fn expect_backend_lost(peer: &mut Peer, deadline: Instant) -> anyhow::Result<()> {
    let hangup = json!({"janus": "hangup", "session_id": peer.session, "sender": peer.handle,
        "reason": BACKEND_LOST});
    let detached = json!({"janus": "detached", "session_id": peer.session, "sender": peer.handle});
    for expected in [hangup, detached] {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = peer.client.recv_within(left).await?;
        ensure!(
            frame.as_ref() == Some(&expected),
            "expected {expected} in time, got {frame:?}"
        );
    }
    Ok(())
}
