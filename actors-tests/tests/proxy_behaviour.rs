//! Behaviour of the proxy beyond single request/reply pairs, against a real Janus: handshake
//! rules, fragmented client messages, backend handles released with their client session,
//! and many concurrent clients.

use std::time::{Duration, Instant};

use actors_tests::{init_logging, proxy_config, JanusClient, JanusServer, ProxyUnderTest};
use anyhow::{bail, Context as _};
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_needs_the_janus_protocol_like_janus() -> anyhow::Result<()> {
    init_logging();
    let janus = JanusServer::start().await?;
    let proxy = ProxyUnderTest::start(proxy_config(&[("j", janus.ws_url())])).await?;
    for url in [janus.ws_url(), proxy.ws_url()] {
        assert!(
            JanusClient::connect_with_protocol(&url, None)
                .await
                .is_err(),
            "{url}: no subprotocol accepted"
        );
        assert!(
            JanusClient::connect_with_protocol(&url, Some("janus-admin-protocol"))
                .await
                .is_err(),
            "{url}: admin subprotocol accepted"
        );
        let mut ok = JanusClient::connect(&url).await?;
        let pong = ok
            .request(json!({"janus": "ping", "transaction": "p"}))
            .await?;
        assert_eq!(pong["janus"], "pong");
    }
    Ok(())
}

/// A client message split over continuation frames is reassembled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_client_messages_are_reassembled() -> anyhow::Result<()> {
    init_logging();
    let janus = JanusServer::start().await?;
    let proxy = ProxyUnderTest::start(proxy_config(&[("j", janus.ws_url())])).await?;
    let mut request = proxy.ws_url().into_client_request()?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "janus-protocol".parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await?;
    let text =
        json!({"janus": "create", "transaction": "frag", "padding": "y".repeat(5000)}).to_string();
    let bytes = text.as_bytes();
    let pieces: Vec<&[u8]> = bytes.chunks(700).collect();
    for (i, piece) in pieces.iter().enumerate() {
        let opcode = if i == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        let last = i == pieces.len() - 1;
        ws.send(Message::Frame(Frame::message(piece.to_vec(), opcode, last)))
            .await?;
    }
    use futures_util::StreamExt;
    let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .context("no reply")?
        .context("closed")??;
    let reply: Value = serde_json::from_str(reply.to_text()?)?;
    assert_eq!(reply["janus"], "success", "{reply}");
    assert_eq!(reply["transaction"], "frag");
    assert!(reply["data"]["id"].as_u64().is_some());
    Ok(())
}

async fn wait_for_backend_handles(janus: &JanusServer, want: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n = janus.handle_count().await?;
        if n == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("backend holds {n} handles, expected {want}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every way a client session ends releases its handles on the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_handles_follow_client_sessions() -> anyhow::Result<()> {
    init_logging();
    let janus = JanusServer::start().await?;
    let mut config = proxy_config(&[("j", janus.ws_url())]);
    config.general.session_timeout = 2;
    let proxy = ProxyUnderTest::start(config).await?;
    wait_for_backend_handles(&janus, 0).await?;

    // detach
    let mut c = JanusClient::connect(&proxy.ws_url()).await?;
    let s = c.create_session().await?;
    let h = c.attach(s, "janus.plugin.echotest").await?;
    let h2 = c.attach(s, "janus.plugin.streaming").await?;
    wait_for_backend_handles(&janus, 2).await?;
    c.request(json!({"janus": "detach", "session_id": s, "handle_id": h, "transaction": "d"}))
        .await?;
    wait_for_backend_handles(&janus, 1).await?;

    // destroy
    c.request(json!({"janus": "destroy", "session_id": s, "transaction": "x"}))
        .await?;
    wait_for_backend_handles(&janus, 0).await?;
    let gone = c
        .request(json!({"janus": "detach", "session_id": s, "handle_id": h2, "transaction": "g"}))
        .await?;
    assert_eq!(gone["error"]["code"], 458);

    // socket closed
    let s = c.create_session().await?;
    c.attach(s, "janus.plugin.echotest").await?;
    wait_for_backend_handles(&janus, 1).await?;
    c.close().await?;
    wait_for_backend_handles(&janus, 0).await?;

    // session timeout (2 s without keepalive)
    let mut c = JanusClient::connect(&proxy.ws_url()).await?;
    let s = c.create_session().await?;
    c.attach(s, "janus.plugin.echotest").await?;
    wait_for_backend_handles(&janus, 1).await?;
    let frames = c
        .recv_until(Duration::from_secs(6), |f| f["janus"] == "timeout")
        .await?;
    assert_eq!(
        frames.last().map(|f| f["session_id"].clone()),
        Some(json!(s))
    );
    wait_for_backend_handles(&janus, 0).await?;
    Ok(())
}

/// Many clients at once: every reply and event reaches the right client with its ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_get_their_own_replies() -> anyhow::Result<()> {
    init_logging();
    let janus = JanusServer::start().await?;
    let proxy = ProxyUnderTest::start(proxy_config(&[("j", janus.ws_url())])).await?;
    let url = proxy.ws_url();
    let mut tasks = Vec::new();
    for client in 0..40 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = JanusClient::connect(&url).await?;
            let s = c.create_session().await?;
            let h = c.attach(s, "janus.plugin.echotest").await?;
            for round in 0..5 {
                let t = format!("c{client}-r{round}");
                c.send(&json!({"janus": "message", "session_id": s, "handle_id": h,
                    "transaction": t, "body": {"audio": round % 2 == 0}}))
                    .await?;
                let mut got_ack = false;
                let mut got_event = false;
                while !(got_ack && got_event) {
                    let f = c.recv().await?;
                    assert_eq!(f["transaction"], json!(t), "{f}");
                    assert_eq!(f["session_id"], json!(s));
                    match f["janus"].as_str() {
                        Some("ack") => got_ack = true,
                        Some("event") => {
                            assert_eq!(f["sender"], json!(h));
                            assert_eq!(f["plugindata"]["data"]["result"], "ok");
                            got_event = true;
                        }
                        other => bail!("unexpected {other:?}: {f}"),
                    }
                }
            }
            let d = c
                .request(json!({"janus": "destroy", "session_id": s, "transaction": "end"}))
                .await?;
            assert_eq!(d["janus"], "success");
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    wait_for_backend_handles(&janus, 0).await?;
    Ok(())
}
