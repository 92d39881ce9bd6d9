//! Backend faults, as a client of the proxy sees them: a backend that never answers, a plugin
//! that stops answering after the core's `ack` (and a link lost at that moment), one that
//! answers slowly, one that splits its frames into continuation frames, a real Janus killed
//! with `kill -9`, a link that drops and comes back, and backends that cannot be reached.
//! The faulty backends are `actors_tests::fake_janus::FakeJanus`, except for the kill test.

use std::time::{Duration, Instant};

use actors_tests::fake_janus::{Behaviour, FakeJanus};
use actors_tests::scenario::{
    ack_and_event, detach, echotest_ok, expect_backend_lost, keepalive_acked, message, peer, Peer,
    BACKEND_LOST, ECHOTEST,
};
use actors_tests::{init_logging, proxy_config, JanusClient, JanusServer, ProxyUnderTest};
use anyhow::ensure;
use futures_util::future::join_all;
use janus_proxy::config::BackendConfig;
use serde_json::{json, Value};

/// A fake Janus behaving as `behaviour` and a proxy in front of it, its backend config
/// changed by `tweak`.
async fn fake_and_proxy(
    behaviour: Behaviour,
    tweak: impl FnOnce(&mut BackendConfig),
) -> anyhow::Result<(FakeJanus, ProxyUnderTest)> {
    let fake = FakeJanus::start(behaviour).await?;
    let mut config = proxy_config(&[("fake", fake.ws_url())]);
    tweak(&mut config.backend);
    let proxy = ProxyUnderTest::start(config).await?;
    Ok((fake, proxy))
}

/// `reply` is the proxy's 490 for `transaction` of `session`, its reason naming `why`.
fn assert_490(reply: &Value, session: u64, transaction: &str, why: &str) {
    assert_eq!(reply["janus"], "error", "{reply}");
    assert_eq!(reply["session_id"], session, "{reply}");
    assert_eq!(reply["transaction"], transaction, "{reply}");
    assert_eq!(reply["error"]["code"], 490, "{reply}");
    let reason = reply["error"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(why), "{reply}");
}

/// (a) A backend that never answers a `message`: the client gets a Janus error 490 for that
/// request once `request_timeout_ms` is over, and the connection, the session and the handle
/// keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_backend_gives_error_490_not_a_hang() -> anyhow::Result<()> {
    init_logging();
    let stall = Behaviour {
        stall_messages: true,
        ..Behaviour::default()
    };
    let (fake, proxy) = fake_and_proxy(stall, |b| b.request_timeout_ms = 500).await?;
    let Peer {
        mut client,
        session,
        handle,
    } = peer(&proxy.ws_url()).await?;

    // Two requests in flight at once: each gets its own error.
    let sent = Instant::now();
    client
        .send(&message(
            session,
            handle,
            "stalled-1",
            json!({"audio": true}),
        ))
        .await?;
    client
        .send(&message(
            session,
            handle,
            "stalled-2",
            json!({"video": false}),
        ))
        .await?;
    for transaction in ["stalled-1", "stalled-2"] {
        let reply = client.recv().await?;
        let waited = sent.elapsed();
        assert_490(&reply, session, transaction, "did not answer in time");
        assert!(
            waited >= Duration::from_millis(450),
            "error before the timeout: {waited:?}"
        );
        assert!(
            waited < Duration::from_secs(2),
            "error too late: {waited:?}"
        );
    }
    // The backend did get both (they were stalled, not lost on the way).
    assert_eq!(fake.stats().messages, 2);

    // The socket is open and nothing else was queued before the pong.
    client
        .send(&json!({"janus": "ping", "transaction": "p"}))
        .await?;
    assert_eq!(
        client.recv().await?,
        json!({"janus": "pong", "transaction": "p"})
    );
    keepalive_acked(&mut client, session).await?;

    // Once the backend answers again, the same handle works.
    fake.update(|b| b.stall_messages = false);
    echotest_ok(&mut client, session, handle, "after-stall").await?;
    detach(&mut client, session, handle).await?;
    client.close().await
}

/// (a2) A plugin that stopped answering while the core still acks (its handler thread
/// stuck): after `event_timeout_ms` the client gets a 490 for the acked `message` instead of
/// waiting for ever; a handle detached meanwhile is owed nothing; once the plugin answers
/// again the same handle works, and a message answered event-first is owed nothing either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_plugin_gives_error_490_after_the_ack() -> anyhow::Result<()> {
    init_logging();
    let ack_only = Behaviour {
        ack_only_messages: true,
        ..Behaviour::default()
    };
    let (fake, proxy) = fake_and_proxy(ack_only, |b| b.event_timeout_ms = 500).await?;
    let Peer {
        mut client,
        session,
        handle,
    } = peer(&proxy.ws_url()).await?;

    let sent = Instant::now();
    let body = json!({"audio": true});
    client
        .send(&message(session, handle, "stuck", body))
        .await?;
    let ack = client.recv().await?;
    assert_eq!(ack["janus"], "ack", "{ack}");
    assert_eq!(ack["transaction"], "stuck", "{ack}");
    let reply = client.recv().await?;
    let waited = sent.elapsed();
    assert_490(&reply, session, "stuck", "did not answer in time");
    assert!(
        waited >= Duration::from_millis(450),
        "too early: {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "too late: {waited:?}");

    // A second handle sends a message and detaches before the timeout: nothing follows.
    let other = client.attach(session, ECHOTEST).await?;
    client
        .send(&message(session, other, "then-detach", json!({})))
        .await?;
    let ack = client.recv().await?;
    assert_eq!(ack["janus"], "ack", "{ack}");
    detach(&mut client, session, other).await?;
    let after = client.recv_within(Duration::from_secs(1)).await?;
    assert!(after.is_none(), "a detached handle got {after:?}");

    fake.update(|b| b.ack_only_messages = false);
    echotest_ok(&mut client, session, handle, "answering-again").await?;

    // The event before the ack (as Janus sends them now and then): answered, nothing follows.
    fake.update(|b| b.event_before_ack = true);
    echotest_ok(&mut client, session, handle, "event-first").await?;
    let after = client.recv_within(Duration::from_secs(1)).await?;
    assert!(after.is_none(), "an answered message got {after:?}");
    detach(&mut client, session, handle).await?;
    client.close().await
}

/// (a3) The link to a backend drops after Janus acked a `message` and before the plugin's
/// event (which went to the dead socket): the client gets a 490 for it, then `hangup` and
/// `detached` as for any handle on a lost backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_lost_after_the_ack_gives_error_490() -> anyhow::Result<()> {
    init_logging();
    let ack_only = Behaviour {
        ack_only_messages: true,
        ..Behaviour::default()
    };
    let (fake, proxy) = fake_and_proxy(ack_only, |_| {}).await?;
    let mut p = peer(&proxy.ws_url()).await?;
    let body = json!({"audio": true});
    p.client
        .send(&message(p.session, p.handle, "in-flight", body))
        .await?;
    let ack = p.client.recv().await?;
    assert_eq!(ack["janus"], "ack", "{ack}");

    fake.update(|b| b.refuse_connections = true);
    fake.drop_connections();
    let reply = p.client.recv_within(Duration::from_secs(2)).await?;
    let reply = reply.ok_or_else(|| anyhow::anyhow!("no answer for the acked message"))?;
    assert_490(&reply, p.session, "in-flight", "lost");
    expect_backend_lost(&mut p, Instant::now() + Duration::from_secs(3)).await
}

/// (a') A backend slower than usual but within `request_timeout_ms`: no error, the real replies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_backend_within_the_timeout_is_fine() -> anyhow::Result<()> {
    init_logging();
    let (fake, proxy) =
        fake_and_proxy(Behaviour::default(), |b| b.request_timeout_ms = 1500).await?;
    let Peer {
        mut client,
        session,
        handle,
    } = peer(&proxy.ws_url()).await?;

    fake.update(|b| b.reply_delay = Duration::from_millis(300));
    let sent = Instant::now();
    echotest_ok(&mut client, session, handle, "slow").await?;
    let waited = sent.elapsed();
    assert!(
        waited >= Duration::from_millis(300),
        "the delay knob did not delay: {waited:?}"
    );
    keepalive_acked(&mut client, session).await?;
    client.close().await
}

/// (b) A backend that sends every frame in 7-byte pieces (a text frame, then continuation
/// frames, splitting UTF-8 characters too): the link still works, and a large plugin event
/// reaches the client whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_frames_are_reassembled() -> anyhow::Result<()> {
    init_logging();
    let fake = FakeJanus::start(Behaviour {
        split_frames: Some(7),
        ..Behaviour::default()
    })
    .await?;
    // Ready means the split `create` and `server_info` replies were understood.
    let proxy = ProxyUnderTest::start(proxy_config(&[("fake", fake.ws_url())])).await?;
    let Peer {
        mut client,
        session,
        handle,
    } = peer(&proxy.ws_url()).await?;

    // The plugin descriptor came from the reassembled server_info.
    let info = client
        .request(json!({"janus": "info", "transaction": "i"}))
        .await?;
    assert_eq!(
        info["plugins"][ECHOTEST]["version_string"], "0.0.7",
        "{info}"
    );

    let pieces = ["abc", "é", "€", "😀", "\"", "\\", "\n", "{x}"];
    let echo: String = pieces.iter().cycle().take(1600).copied().collect();
    assert!(echo.len() > 2800, "{}", echo.len());
    client
        .send(&message(session, handle, "big", json!({"echo": echo})))
        .await?;
    let event = ack_and_event(&mut client, "big").await?;
    assert!(event.to_string().len() > 2800);
    assert_eq!(event["session_id"], session);
    assert_eq!(event["sender"], handle);
    assert_eq!(event["plugindata"]["plugin"], ECHOTEST);
    assert_eq!(event["plugindata"]["data"]["result"], "ok");
    assert!(
        event["plugindata"]["data"]["echo"] == echo.as_str(),
        "echo differs"
    );

    keepalive_acked(&mut client, session).await?;
    detach(&mut client, session, handle).await?;
    client.close().await
}

/// (c) Two real Janus servers, 60 clients with a handle each; one Janus is killed with
/// `kill -9`. Exactly the handles that were on it get `hangup` + `detached` within a second;
/// the others notice nothing and keep working; every session stays usable and every new
/// attach succeeds, on the surviving server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_janus_hangs_up_only_its_handles() -> anyhow::Result<()> {
    init_logging();
    let (mut doomed, survivor) = tokio::try_join!(JanusServer::start(), JanusServer::start())?;
    let proxy = ProxyUnderTest::start(proxy_config(&[
        ("doomed", doomed.ws_url()),
        ("survivor", survivor.ws_url()),
    ]))
    .await?;
    // Both links ready, so that round-robin spreads the handles over both.
    for name in ["doomed", "survivor"] {
        proxy
            .wait_server(name, Duration::from_secs(10), |s| {
                s["link"]["ready"] == true
            })
            .await?;
    }

    // Round-robin: 30 handles on each server.
    let mut peers = Vec::new();
    for _ in 0..60 {
        peers.push(peer(&proxy.ws_url()).await?);
    }

    let killed_at = Instant::now();
    doomed.kill();
    let limit = killed_at + Duration::from_secs(1);
    // Every client at once: either the two frames before the limit, or silence until the
    // limit and 300 ms more.
    let outcomes = join_all(peers.iter_mut().map(|p| async move {
        match p
            .client
            .recv_within(limit.saturating_duration_since(Instant::now()))
            .await?
        {
            None => {
                let late = p.client.recv_within(Duration::from_millis(300)).await?;
                ensure!(late.is_none(), "unaffected client got {late:?}");
                Ok(None)
            }
            Some(first) => {
                let hangup = json!({"janus": "hangup", "session_id": p.session,
                    "sender": p.handle, "reason": BACKEND_LOST});
                ensure!(first == hangup, "expected {hangup}, got {first}");
                let detached =
                    json!({"janus": "detached", "session_id": p.session, "sender": p.handle});
                let second = p
                    .client
                    .recv_within(limit.saturating_duration_since(Instant::now()))
                    .await?;
                ensure!(
                    second.as_ref() == Some(&detached),
                    "expected {detached} within 1 s of the kill, got {second:?}"
                );
                Ok(Some(killed_at.elapsed()))
            }
        }
    }))
    .await;
    let mut affected = Vec::new();
    let mut unaffected = Vec::new();
    let mut slowest = Duration::ZERO;
    for (peer, outcome) in peers.into_iter().zip(outcomes) {
        match outcome? {
            Some(latency) => {
                slowest = slowest.max(latency);
                affected.push(peer);
            }
            None => unaffected.push(peer),
        }
    }
    eprintln!("kill -9 to the last `detached`: {slowest:?}");
    assert_eq!(
        (affected.len(), unaffected.len()),
        (30, 30),
        "affected, unaffected"
    );

    for (i, p) in unaffected.iter_mut().enumerate() {
        echotest_ok(&mut p.client, p.session, p.handle, &format!("still-{i}")).await?;
        let handle = p.client.attach(p.session, ECHOTEST).await?;
        echotest_ok(&mut p.client, p.session, handle, &format!("also-{i}")).await?;
    }
    for (i, p) in affected.iter_mut().enumerate() {
        keepalive_acked(&mut p.client, p.session).await?;
        // The lost handle is gone, as after a `detached` from Janus.
        let reply = p
            .client
            .request(message(p.session, p.handle, "old", json!({"audio": true})))
            .await?;
        assert_eq!(reply["janus"], "error", "{reply}");
        assert_eq!(reply["error"]["code"], 459, "{reply}");
        // A new handle works, on the surviving server.
        let handle = p.client.attach(p.session, ECHOTEST).await?;
        echotest_ok(&mut p.client, p.session, handle, &format!("new-{i}")).await?;
    }
    let doomed = proxy.server("doomed").await?;
    assert_eq!(doomed["link"]["ready"], false, "{doomed}");
    assert_eq!(doomed["link"]["handles"], 0, "{doomed}");
    assert_eq!(doomed["selectable"], false, "{doomed}");
    let survivor = proxy.server("survivor").await?;
    assert_eq!(survivor["link"]["handles"], 90, "{survivor}");
    Ok(())
}

/// (d) The backend drops every connection and refuses new ones for a while: the handles on it
/// are hung up, attaches fail fast meanwhile, and once it accepts again the proxy reconnects
/// by itself and new handles work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_blip_hangs_up_then_reconnects() -> anyhow::Result<()> {
    init_logging();
    let (fake, proxy) = fake_and_proxy(Behaviour::default(), |b| {
        b.reconnect_min_ms = 50;
        b.reconnect_max_ms = 200;
    })
    .await?;
    let mut peers = Vec::new();
    for _ in 0..3 {
        peers.push(peer(&proxy.ws_url()).await?);
    }
    assert_eq!(fake.stats().accepted, 1, "one link, one connection");

    fake.update(|b| b.refuse_connections = true);
    fake.drop_connections();
    let deadline = Instant::now() + Duration::from_secs(2);
    for p in &mut peers {
        expect_backend_lost(p, deadline).await?;
    }

    // The proxy keeps trying; meanwhile nothing is ready and an attach fails at once.
    fake.wait_for(Duration::from_secs(3), |s| s.refused >= 2)
        .await?;
    assert!(!proxy.state.links.any_ready());
    let p = &mut peers[0];
    let reply = p
        .client
        .request(
            json!({"janus": "attach", "session_id": p.session, "plugin": ECHOTEST,
            "transaction": "no-backend"}),
        )
        .await?;
    assert_eq!(reply["janus"], "error", "{reply}");
    assert_eq!(reply["session_id"], p.session, "{reply}");
    assert_eq!(reply["error"]["code"], 461, "{reply}");

    fake.update(|b| b.refuse_connections = false);
    proxy.wait_ready(Duration::from_secs(3)).await?;
    let stats = fake.stats();
    assert_eq!(stats.accepted, 2, "{stats:?}");
    assert_eq!(stats.creates, 2, "a new backend session: {stats:?}");

    for (i, p) in peers.iter_mut().enumerate() {
        keepalive_acked(&mut p.client, p.session).await?;
        let handle = p.client.attach(p.session, ECHOTEST).await?;
        echotest_ok(&mut p.client, p.session, handle, &format!("back-{i}")).await?;
    }
    Ok(())
}

/// (e) Of three backends, one port has no listener and one fake resets every connection: all
/// handles go to the one good backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_backends_are_not_used() -> anyhow::Result<()> {
    init_logging();
    // A bound socket that never listens: the port stays ours, connecting to it is refused.
    let dead = tokio::net::TcpSocket::new_v4()?;
    dead.bind("127.0.0.1:0".parse()?)?;
    let dead_url = format!("ws://{}", dead.local_addr()?);
    let refusing = FakeJanus::start(Behaviour {
        refuse_connections: true,
        ..Behaviour::default()
    })
    .await?;
    let good = FakeJanus::start(Behaviour::default()).await?;
    let proxy = ProxyUnderTest::start(proxy_config(&[
        ("dead", dead_url),
        ("refusing", refusing.ws_url()),
        ("good", good.ws_url()),
    ]))
    .await?;
    // The proxy did try the refusing one.
    refusing
        .wait_for(Duration::from_secs(3), |s| s.refused >= 1)
        .await?;

    let mut client = JanusClient::connect(&proxy.ws_url()).await?;
    let session = client.create_session().await?;
    for i in 0..10 {
        let handle = client.attach(session, ECHOTEST).await?;
        echotest_ok(&mut client, session, handle, &format!("m-{i}")).await?;
    }
    let stats = good.stats();
    assert_eq!((stats.attaches, stats.messages), (10, 10), "{stats:?}");
    assert_eq!(refusing.stats().accepted, 0);
    let ready: Vec<String> = proxy
        .servers()
        .await?
        .iter()
        .filter(|s| s["link"]["ready"] == true)
        .filter_map(|s| s["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(ready, ["good"]);
    client.close().await
}
