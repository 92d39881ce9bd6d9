//! Each configured limit hit and answered: a clear Janus error (or a close code, or an HTTP
//! status), the connection and every other client still healthy.

use std::time::{Duration, Instant};

use actors_tests::fake_janus::{Behaviour, FakeJanus};
use actors_tests::http;
use actors_tests::scenario::{echotest_ok, message, ECHOTEST};
use actors_tests::{init_logging, proxy_config, JanusClient, JanusServer, ProxyUnderTest};
use anyhow::ensure;
use serde_json::json;

async fn ping_ok(client: &mut JanusClient) -> anyhow::Result<()> {
    let pong = client
        .request(json!({"janus": "ping", "transaction": "alive"}))
        .await?;
    ensure!(pong["janus"] == "pong", "{pong}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_per_connection_and_handles_per_session() -> anyhow::Result<()> {
    init_logging();
    let janus = JanusServer::start().await?;
    let mut config = proxy_config(&[("j", janus.ws_url())]);
    config.limits.sessions_per_connection = 2;
    config.limits.handles_per_session = 2;
    let proxy = ProxyUnderTest::start(config).await?;
    let mut client = JanusClient::connect(&proxy.ws_url()).await?;
    let session = client.create_session().await?;
    client.create_session().await?;
    let third = client
        .request(json!({"janus": "create", "transaction": "c3"}))
        .await?;
    assert_eq!(
        third,
        json!({"janus": "error", "transaction": "c3", "error": {"code": 472,
            "reason": "Too many sessions on this connection (limit 2)"}})
    );
    let h1 = client.attach(session, ECHOTEST).await?;
    client.attach(session, ECHOTEST).await?;
    let over = client
        .request(
            json!({"janus": "attach", "session_id": session, "plugin": ECHOTEST,
            "transaction": "a3"}),
        )
        .await?;
    assert_eq!(over["error"]["code"], 461, "{over}");
    assert_eq!(
        over["error"]["reason"],
        "Couldn't attach to plugin: too many handles in this session (limit 2)"
    );
    // Nothing broke: the handles work; destroying a session frees a slot.
    echotest_ok(&mut client, session, h1, "still").await?;
    let destroyed = client
        .request(json!({"janus": "destroy", "session_id": session, "transaction": "d"}))
        .await?;
    assert_eq!(destroyed["janus"], "success");
    client.create_session().await?;
    client.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_second_per_connection() -> anyhow::Result<()> {
    init_logging();
    let mut config = proxy_config(&[]);
    config.limits.requests_per_second = 5;
    let proxy = ProxyUnderTest::start(config).await?;
    let mut noisy = JanusClient::connect(&proxy.ws_url()).await?;
    let mut quiet = JanusClient::connect(&proxy.ws_url()).await?;
    for i in 0..30 {
        noisy
            .send(&json!({"janus": "ping", "transaction": format!("p{i}")}))
            .await?;
    }
    let (mut pongs, mut refused) = (0, 0);
    for _ in 0..30 {
        let frame = noisy.recv().await?;
        match frame["janus"].as_str() {
            Some("pong") => pongs += 1,
            Some("error") => {
                assert_eq!(frame["error"]["code"], 490, "{frame}");
                assert_eq!(
                    frame["error"]["reason"],
                    "Too many requests: more than 5 a second on this connection"
                );
                assert!(
                    frame["transaction"].is_string(),
                    "transaction echoed: {frame}"
                );
                refused += 1;
            }
            _ => anyhow::bail!("unexpected {frame}"),
        }
    }
    // The burst allowance is twice the rate; a few more tokens may refill meanwhile.
    assert!(
        (10..=13).contains(&pongs),
        "{pongs} answered, {refused} refused"
    );
    // The other connection has its own budget.
    ping_ok(&mut quiet).await?;
    // The noisy one recovers once tokens refill (bounded wait, no fixed sleep).
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let reply = noisy
            .request(json!({"janus": "ping", "transaction": "again"}))
            .await?;
        if reply["janus"] == "pong" {
            break;
        }
        ensure!(Instant::now() < deadline, "never recovered: {reply}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    quiet.close().await?;
    noisy.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_client_address() -> anyhow::Result<()> {
    init_logging();
    let mut config = proxy_config(&[]);
    config.limits.connections_per_ip = 3;
    let proxy = ProxyUnderTest::start(config).await?;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(JanusClient::connect(&proxy.ws_url()).await?);
    }
    let refused = JanusClient::connect(&proxy.ws_url()).await;
    let err = refused.err().map(|e| format!("{e:#}")).unwrap_or_default();
    assert!(err.contains("429"), "the 4th handshake must get 429: {err}");
    for client in &mut open {
        ping_ok(client).await?;
    }
    // Closing one frees its slot (the count drops when the actor stops: poll briefly).
    if let Some(client) = open.pop() {
        client.close().await?;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut again = loop {
        match JanusClient::connect(&proxy.ws_url()).await {
            Ok(client) => break client,
            Err(e) => {
                ensure!(Instant::now() < deadline, "slot never freed: {e:#}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    ping_ok(&mut again).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_are_closed_with_1009() -> anyhow::Result<()> {
    init_logging();
    let mut config = proxy_config(&[]);
    config.ws.max_message_size = 4096;
    let proxy = ProxyUnderTest::start(config).await?;
    let mut big = JanusClient::connect(&proxy.ws_url()).await?;
    let mut other = JanusClient::connect(&proxy.ws_url()).await?;
    let padding = "x".repeat(8192);
    big.send_text(&format!(r#"{{"janus":"ping","transaction":"{padding}"}}"#))
        .await?;
    assert_eq!(big.closed_with(Duration::from_secs(5)).await?, Some(1009));
    ping_ok(&mut other).await?;
    other.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_requests_per_backend_are_bounded() -> anyhow::Result<()> {
    init_logging();
    let stalling = FakeJanus::start(Behaviour {
        stall_messages: true,
        ..Default::default()
    })
    .await?;
    let mut config = proxy_config(&[("stalling", stalling.ws_url())]);
    config.backend.max_pending = 3;
    config.backend.request_timeout_ms = 5_000;
    let proxy = ProxyUnderTest::start(config).await?;
    let mut client = JanusClient::connect(&proxy.ws_url()).await?;
    let session = client.create_session().await?;
    let handle = client.attach(session, ECHOTEST).await?;
    for i in 0..5 {
        client
            .send(&message(
                session,
                handle,
                &format!("m{i}"),
                json!({"audio": true}),
            ))
            .await?;
    }
    // Three wait for the stalled backend; the 4th and 5th are refused at once.
    for i in 3..5 {
        let frame = client.recv().await?;
        assert_eq!(frame["janus"], "error", "{frame}");
        assert_eq!(frame["transaction"], format!("m{i}"), "{frame}");
        assert_eq!(frame["error"]["code"], 490);
        let reason = frame["error"]["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("overloaded"), "{reason}");
    }
    ping_ok(&mut client).await?;
    client.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_bodies_are_bounded() -> anyhow::Result<()> {
    init_logging();
    let mut config = proxy_config(&[]);
    config.limits.admin_body_bytes = 1024;
    let proxy = ProxyUnderTest::start(config).await?;
    let body = json!({"name": "x", "url": "ws://h:1", "status": 0, "isp": "y".repeat(4096)});
    let response = proxy.admin_post("/backend_servers", &body).await?;
    assert_eq!(response.status, 413, "{}", response.body);
    assert!(response.json()["error"].is_string(), "{}", response.body);
    assert!(proxy.servers().await?.is_empty());
    assert_eq!(http::get(proxy.admin_addr, "/livez").await?.status, 200);
    Ok(())
}
