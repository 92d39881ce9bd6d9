//! The control plane against real Janus servers: registration through the admin REST API (JSON
//! and janus-cloud's form encoding), expiry, the selection policies' spread, drain, a link cut
//! while Janus stays up (claimed, invisible to clients), circuit breakers with fake Janus
//! servers that refuse or stall, metrics and health endpoints.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actors_tests::fake_janus::{Behaviour, FakeJanus};
use actors_tests::http;
use actors_tests::scenario::{echotest_ok, message, peer, ECHOTEST};
use actors_tests::tcp_relay::TcpRelay;
use actors_tests::{
    init_logging, proxy_config, JanusClient, JanusOptions, JanusServer, ProxyUnderTest,
    TEST_ADMIN_TOKEN,
};
use anyhow::{anyhow, bail, ensure};
use janus_proxy::registry::selection::SelectionPolicy;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

fn is_selectable(server: &Value) -> bool {
    server["selectable"] == true
}

/// How many handles of the proxy's sessions live on each backend server (admin `/sessions`).
async fn handles_per_server(proxy: &ProxyUnderTest) -> anyhow::Result<BTreeMap<String, usize>> {
    let response = http::get_auth(
        proxy.admin_addr,
        "/sessions?limit=10000",
        actors_tests::TEST_ADMIN_TOKEN,
    )
    .await?;
    ensure!(response.status == 200, "{}", response.body);
    let mut counts = BTreeMap::new();
    for session in response.json()["sessions"].as_array().into_iter().flatten() {
        for handle in session["handles"].as_array().into_iter().flatten() {
            let server = handle["backend_server"].as_str().unwrap_or("?").to_owned();
            *counts.entry(server).or_insert(0) += 1;
        }
    }
    Ok(counts)
}

/// A client attaches `n` echotest handles in one session.
async fn attach_many(proxy: &ProxyUnderTest, n: usize) -> anyhow::Result<JanusClient> {
    let mut client = JanusClient::connect(&proxy.ws_url()).await?;
    let session = client.create_session().await?;
    for _ in 0..n {
        client.attach(session, ECHOTEST).await?;
    }
    Ok(client)
}

/// An attach that must fail: returns the Janus error.
async fn attach_error(client: &mut JanusClient, session: u64) -> anyhow::Result<Value> {
    let reply = client
        .request(
            json!({"janus": "attach", "session_id": session, "plugin": ECHOTEST,
            "transaction": "must-fail"}),
        )
        .await?;
    ensure!(reply["janus"] == "error", "attach should fail: {reply}");
    Ok(reply["error"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_register_through_the_rest_api_in_json_and_form_encoding() -> anyhow::Result<()> {
    init_logging();
    let janus = JanusServer::start().await?;
    let proxy = ProxyUnderTest::start(proxy_config(&[])).await?;
    let admin = proxy.admin_addr;
    assert!(proxy.servers().await?.is_empty());
    let ready = http::get(admin, "/readyz").await?;
    assert_eq!(ready.status, 503, "no server yet: {}", ready.body);

    // JSON, as janus-sentinel posts it.
    let created = proxy
        .admin_post(
            "/backend_servers",
            &json!({"name": "j1", "url": janus.ws_url(), "status": 0, "expire": 0,
                "location": "here", "load": 0.25}),
        )
        .await?;
    assert_eq!(created.status, 200, "{}", created.body);
    assert_eq!(created.json()["created"], true, "{}", created.body);
    let server = proxy.wait_server("j1", WAIT, is_selectable).await?;
    assert_eq!(server["location"], "here");
    assert_eq!(server["load"], 0.25);
    assert_eq!(server["link"]["phase"], "ready");
    assert_eq!(http::get(admin, "/readyz").await?.status, 200);

    // The server takes handles, and /sessions says where each lives.
    let mut client = JanusClient::connect(&proxy.ws_url()).await?;
    let session = client.create_session().await?;
    let handle = client.attach(session, ECHOTEST).await?;
    echotest_ok(&mut client, session, handle, "via-j1").await?;
    let sessions = http::get_auth(admin, "/sessions", actors_tests::TEST_ADMIN_TOKEN)
        .await?
        .json();
    assert_eq!(sessions["total"], 1, "{sessions}");
    assert_eq!(
        sessions["sessions"][0]["handles"][0],
        json!({"id": handle, "plugin": ECHOTEST, "backend_server": "j1"})
    );

    // Form-encoded, as janus-cloud's sentinel posts it, with the token in the URL: status 2
    // (maintenance) takes the server out of selection; existing handles keep working.
    let path = format!("/sentinel_callback?token={TEST_ADMIN_TOKEN}");
    let url = janus.ws_url();
    let fields = [
        ("name", "j1"),
        ("url", url.as_str()),
        ("status", "2"),
        ("session_num", "3"),
        ("handle_num", ""),
        ("isp", ""),
        ("expire", "0"),
        ("start_time", "1700000000.5"),
    ];
    let updated = http::post_form(admin, &path, &fields).await?;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.json()["created"], false);
    let server = proxy.server("j1").await?;
    assert_eq!(server["status"], 2);
    assert_eq!(server["session_num"], 3);
    assert_eq!(server["location"], "here", "fields not sent are kept");
    assert_eq!(server["unselectable_because"], "status maintenance");
    let error = attach_error(&mut client, session).await?;
    assert_eq!(error["code"], 461, "{error}");
    echotest_ok(&mut client, session, handle, "still-on-j1").await?;
    assert_eq!(http::get(admin, "/readyz").await?.status, 503);

    // Bad input: 400 naming the field, and nothing changes.
    let bad = [
        json!({"name": "j1", "url": url, "status": 0, "colour": "red"}),
        json!({"name": "j1", "url": "http://127.0.0.1:1", "status": 0}),
        json!({"name": "x".repeat(65), "url": url, "status": 0}),
        json!({"name": "j1", "url": url, "status": 9}),
        json!(["not", "an", "object"]),
    ];
    for body in bad {
        let response = proxy.admin_post("/backend_servers", &body).await?;
        assert_eq!(response.status, 400, "{body}: {}", response.body);
        assert!(
            response.json()["error"].as_str().is_some(),
            "{}",
            response.body
        );
    }
    let garbage = http::request(
        admin,
        "POST",
        "/backend_servers",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &format!("Bearer {TEST_ADMIN_TOKEN}")),
        ],
        "{not json",
    )
    .await?;
    assert_eq!(garbage.status, 400, "{}", garbage.body);
    let servers = proxy.servers().await?;
    assert_eq!(servers.len(), 1);
    assert_eq!(servers[0]["status"], 2, "unchanged by the refused posts");

    // Mutations need the token.
    let body = json!({"name": "j2", "url": url, "status": 0}).to_string();
    let none = http::request(
        admin,
        "POST",
        "/backend_servers",
        &[("Content-Type", "application/json")],
        &body,
    )
    .await?;
    assert_eq!(none.status, 401, "{}", none.body);
    let wrong = http::post_json(admin, "/backend_servers", "nope", &json!({})).await?;
    assert_eq!(wrong.status, 401);
    let delete = http::request(admin, "DELETE", "/backend_servers/j1", &[], "").await?;
    assert_eq!(delete.status, 401);
    assert_eq!(proxy.servers().await?.len(), 1);

    // Delete: gone from the list; deleting again is not an error (janus-cloud).
    let auth = format!("Bearer {TEST_ADMIN_TOKEN}");
    let headers = [("Authorization", auth.as_str())];
    let delete = http::request(admin, "DELETE", "/backend_servers/j1", &headers, "").await?;
    assert_eq!(
        (delete.status, delete.json()),
        (200, json!({"removed": true}))
    );
    let again = http::request(admin, "DELETE", "/backend_servers/j1", &headers, "").await?;
    assert_eq!(
        (again.status, again.json()),
        (200, json!({"removed": false}))
    );
    assert_eq!(
        http::get_auth(admin, "/backend_servers/j1", actors_tests::TEST_ADMIN_TOKEN)
            .await?
            .status,
        404
    );
    assert!(proxy.servers().await?.is_empty());
    // The handle already on the removed server finishes its life there.
    echotest_ok(&mut client, session, handle, "after-delete").await?;

    // janus-cloud's other routes, and JSON errors for unknown ones.
    assert_eq!(http::get(admin, "/ping").await?.json(), json!("pong"));
    let info = http::get_auth(admin, "/info", actors_tests::TEST_ADMIN_TOKEN)
        .await?
        .json();
    assert_eq!(info["janus"], "server_info", "{info}");
    let unknown = http::get(admin, "/nope").await?;
    assert_eq!(unknown.status, 404);
    assert!(unknown.json()["error"].is_string());
    let openapi = http::get(admin, "/openapi.json").await?.json();
    assert_eq!(openapi["openapi"], "3.0.3");
    client.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_configured_token_changes_are_refused() -> anyhow::Result<()> {
    init_logging();
    let mut config = proxy_config(&[]);
    config.admin.token = String::new();
    let proxy = ProxyUnderTest::start(config).await?;
    let body = json!({"name": "j1", "url": "ws://127.0.0.1:1", "status": 0});
    let response = proxy.admin_post("/backend_servers", &body).await?;
    assert_eq!(response.status, 403, "{}", response.body);
    // Reads are refused too (no token could be given); the registry says nothing was added.
    let read = http::get_auth(proxy.admin_addr, "/backend_servers", "").await?;
    assert_eq!(read.status, 403, "{}", read.body);
    let servers = proxy
        .state
        .registry
        .send(janus_proxy::registry::ListServers)
        .await?;
    assert!(servers.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_that_is_not_refreshed_expires_then_goes() -> anyhow::Result<()> {
    init_logging();
    let janus = JanusServer::start().await?;
    let mut config = proxy_config(&[]);
    config.registry.remove_after_s = 1;
    let proxy = ProxyUnderTest::start(config).await?;
    let report = json!({"name": "short", "url": janus.ws_url(), "status": 0, "expire": 2});
    let registered_at = Instant::now();
    proxy.admin_post("/backend_servers", &report).await?;
    proxy.wait_server("short", WAIT, is_selectable).await?;
    // Refreshed once: still fresh past the first report's expiry.
    tokio::time::sleep_until((registered_at + Duration::from_millis(1500)).into()).await;
    let refreshed_at = Instant::now();
    proxy.admin_post("/backend_servers", &report).await?;
    tokio::time::sleep_until((registered_at + Duration::from_millis(2500)).into()).await;
    let server = proxy.server("short").await?;
    if refreshed_at.elapsed() < Duration::from_secs(2) {
        assert!(is_selectable(&server), "refreshed, still fresh: {server}");
    }
    // Then no more reports: unselectable, then removed.
    let stale = proxy
        .wait_server("short", WAIT, |s| {
            s["unselectable_because"] == "report expired"
        })
        .await?;
    assert!(refreshed_at.elapsed() >= Duration::from_secs(2), "{stale}");
    let deadline = Instant::now() + WAIT;
    while !proxy.servers().await?.is_empty() {
        ensure!(Instant::now() < deadline, "expired server never removed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refreshed_at.elapsed() >= Duration::from_secs(3));
    Ok(())
}

/// Two real Janus servers and each selection policy: how 40 attaches spread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_selection_policy_spreads_attaches_as_documented() -> anyhow::Result<()> {
    init_logging();
    let (a, b) = tokio::try_join!(JanusServer::start(), JanusServer::start())?;
    let servers = [("a", a.ws_url()), ("b", b.ws_url())];
    let cases = [
        SelectionPolicy::RoundRobin,
        SelectionPolicy::Random,
        SelectionPolicy::Weighted,
        SelectionPolicy::LeastLoaded,
    ];
    for policy in cases {
        let mut config = proxy_config(&servers);
        config.registry.policy = policy;
        let proxy = ProxyUnderTest::start(config).await?;
        for (name, _) in &servers {
            proxy.wait_server(name, WAIT, is_selectable).await?;
        }
        // Least-loaded: a at 0.3 for 30 handles, b at 0.1 for 10 (0.01 a handle on both).
        // Weighted: a at 0.9, b at 0.1 (0.001 a handle), so weights ~1.1 and ~9.9.
        let (reports, attaches) = match policy {
            SelectionPolicy::Weighted => ([(0.9, 900), (0.1, 100)], 100),
            _ => ([(0.3, 30), (0.1, 10)], 40),
        };
        for ((name, url), (load, handles)) in servers.iter().zip(reports) {
            let report = json!({"name": name, "url": url, "status": 0,
                "load": load, "handle_num": handles});
            let response = proxy.admin_post("/backend_servers", &report).await?;
            ensure!(response.status == 200, "{}", response.body);
        }
        let client = attach_many(&proxy, attaches).await?;
        let counts = handles_per_server(&proxy).await?;
        let on = |name: &str| counts.get(name).copied().unwrap_or(0);
        eprintln!("{policy:?}: {counts:?}");
        assert_eq!(on("a") + on("b"), attaches, "{policy:?}: {counts:?}");
        match policy {
            SelectionPolicy::RoundRobin => assert_eq!((on("a"), on("b")), (20, 20)),
            // Both used (all 40 on one: probability 2^-39).
            SelectionPolicy::Random => assert!(on("a") > 0 && on("b") > 0, "{counts:?}"),
            // ~90 % to b: a gets 10 ± 3 (none at all: probability 3e-5).
            SelectionPolicy::Weighted => {
                assert!(on("b") >= 75 && on("a") >= 1, "{counts:?}")
            }
            // b until it reaches a's load (20 attaches), then alternating: 30 and 10 — not
            // all 40 on the server that looked idlest.
            SelectionPolicy::LeastLoaded => {
                assert!((29..=31).contains(&on("b")), "{counts:?}")
            }
        }
        let listed = proxy.server("b").await?;
        assert_eq!(listed["placed_since_report"], on("b"), "{listed}");
        client.close().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_server_takes_no_new_handles_but_keeps_its_own() -> anyhow::Result<()> {
    init_logging();
    let (a, b) = tokio::try_join!(JanusServer::start(), JanusServer::start())?;
    let proxy =
        ProxyUnderTest::start(proxy_config(&[("a", a.ws_url()), ("b", b.ws_url())])).await?;
    for name in ["a", "b"] {
        proxy.wait_server(name, WAIT, is_selectable).await?;
    }
    let mut peers = Vec::new();
    for _ in 0..4 {
        peers.push(peer(&proxy.ws_url()).await?);
    }
    assert_eq!(
        handles_per_server(&proxy).await?,
        BTreeMap::from([("a".to_owned(), 2), ("b".to_owned(), 2)])
    );

    let drained = proxy
        .admin_post("/backend_servers/a/drain", &json!({}))
        .await?;
    assert_eq!(drained.status, 200, "{}", drained.body);
    assert_eq!(drained.json()["draining"], true);
    assert_eq!(drained.json()["unselectable_because"], "draining");
    let client = attach_many(&proxy, 6).await?;
    assert_eq!(
        handles_per_server(&proxy).await?,
        BTreeMap::from([("a".to_owned(), 2), ("b".to_owned(), 8)])
    );
    // The handles already on a still work.
    for (i, p) in peers.iter_mut().enumerate() {
        echotest_ok(&mut p.client, p.session, p.handle, &format!("drained-{i}")).await?;
    }

    let undrained = proxy
        .admin_post("/backend_servers/a/undrain", &json!({}))
        .await?;
    assert_eq!(undrained.json()["selectable"], true, "{}", undrained.body);
    let again = attach_many(&proxy, 2).await?;
    assert_eq!(handles_per_server(&proxy).await?["a"], 3);
    let missing = proxy
        .admin_post("/backend_servers/nope/drain", &json!({}))
        .await?;
    assert_eq!(missing.status, 404, "{}", missing.body);
    client.close().await?;
    again.close().await
}

/// The TCP connection to the backend is cut while Janus runs on: the link reconnects, claims
/// its backend session, and the clients see nothing at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_cut_with_janus_alive_is_invisible_to_clients() -> anyhow::Result<()> {
    init_logging();
    let janus = JanusServer::start_with(JanusOptions {
        reclaim_session_timeout: Some(10),
        ..Default::default()
    })
    .await?;
    let janus_addr = janus
        .ws_url()
        .trim_start_matches("ws://")
        .parse()
        .map_err(|e| anyhow!("janus address: {e}"))?;
    let relay = TcpRelay::start(janus_addr).await?;
    let proxy = ProxyUnderTest::start(proxy_config(&[("j", relay.ws_url())])).await?;
    let mut peers = Vec::new();
    for _ in 0..5 {
        peers.push(peer(&proxy.ws_url()).await?);
    }
    for (i, p) in peers.iter_mut().enumerate() {
        echotest_ok(&mut p.client, p.session, p.handle, &format!("before-{i}")).await?;
    }
    assert_eq!(relay.cut(), 1, "one link, one connection");
    let server = proxy
        .wait_server("j", WAIT, |s| {
            s["link"]["reclaims"] == 1 && s["link"]["phase"] == "ready"
        })
        .await?;
    assert_eq!(server["link"]["handles"], 5, "{server}");
    assert_eq!(relay.accepted(), 2);
    // Nothing reached the clients, and their handles work as before.
    for (i, p) in peers.iter_mut().enumerate() {
        let frame = p.client.recv_within(Duration::from_millis(100)).await?;
        ensure!(frame.is_none(), "client {i} saw {frame:?}");
        echotest_ok(&mut p.client, p.session, p.handle, &format!("after-{i}")).await?;
    }
    // Messages sent right after a second cut wait for the claim instead of failing.
    relay.cut();
    let p = &mut peers[0];
    p.client
        .send(&message(
            p.session,
            p.handle,
            "during",
            json!({"audio": true}),
        ))
        .await?;
    let frames = p
        .client
        .recv_until(WAIT, |f| f["janus"] == "event" || f["janus"] == "error")
        .await?;
    let last = frames.last().cloned().unwrap_or(Value::Null);
    // Either the request was queued for the claim (ack + event), or it was already on the
    // wire when the socket died (a 490 for that one request) — never a lost handle.
    match last["janus"].as_str() {
        // Janus may send the event before the ack: both come, in either order.
        Some("event") if !frames.iter().any(|f| f["janus"] == "ack") => {
            let acked = p.client.recv_until(WAIT, |f| f["janus"] == "ack").await?;
            ensure!(
                acked.iter().all(|f| f["transaction"] == "during"),
                "{acked:?}"
            );
        }
        Some("event") => {}
        Some("error") => assert_eq!(last["error"]["code"], 490, "{last}"),
        _ => bail!("unexpected {frames:?}"),
    }
    proxy
        .wait_server("j", WAIT, |s| {
            s["link"]["reclaims"] == 2 && s["link"]["phase"] == "ready"
        })
        .await?;
    echotest_ok(&mut p.client, p.session, p.handle, "after-second").await?;
    Ok(())
}

/// Without `reclaim_session_timeout` on the Janus, the backend session dies with the socket:
/// the claim fails and the handles are hung up (then the link carries on with a new session).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_cut_without_reclaim_on_janus_hangs_up_the_handles() -> anyhow::Result<()> {
    init_logging();
    let janus = JanusServer::start().await?;
    let janus_addr = janus
        .ws_url()
        .trim_start_matches("ws://")
        .parse()
        .map_err(|e| anyhow!("janus address: {e}"))?;
    let relay = TcpRelay::start(janus_addr).await?;
    let proxy = ProxyUnderTest::start(proxy_config(&[("j", relay.ws_url())])).await?;
    let mut p = peer(&proxy.ws_url()).await?;
    relay.cut();
    let deadline = Instant::now() + Duration::from_secs(2);
    actors_tests::scenario::expect_backend_lost(&mut p, deadline).await?;
    proxy
        .wait_server("j", WAIT, |s| s["link"]["phase"] == "ready")
        .await?;
    let handle = p.client.attach(p.session, ECHOTEST).await?;
    echotest_ok(&mut p.client, p.session, handle, "new").await?;
    Ok(())
}

/// A backend whose messages stall: timeouts open its breaker, new handles go elsewhere; after
/// the ejection time one probe is let through, and its success closes the breaker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_open_the_breaker_and_a_probe_closes_it() -> anyhow::Result<()> {
    init_logging();
    let stalling = FakeJanus::start(Behaviour {
        stall_messages: true,
        ..Default::default()
    })
    .await?;
    let good = FakeJanus::start(Behaviour::default()).await?;
    let mut config = proxy_config(&[("stalling", stalling.ws_url()), ("good", good.ws_url())]);
    config.backend.request_timeout_ms = 200;
    config.breaker.failure_threshold = 2;
    config.breaker.ejection_ms = 1000;
    let proxy = ProxyUnderTest::start(config).await?;
    for name in ["stalling", "good"] {
        proxy.wait_server(name, WAIT, is_selectable).await?;
    }
    // Round-robin puts one handle on each server.
    let mut client = JanusClient::connect(&proxy.ws_url()).await?;
    let session = client.create_session().await?;
    for _ in 0..2 {
        client.attach(session, ECHOTEST).await?;
    }
    let sessions = http::get_auth(
        proxy.admin_addr,
        "/sessions",
        actors_tests::TEST_ADMIN_TOKEN,
    )
    .await?
    .json();
    let stalled_handle = sessions["sessions"][0]["handles"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|h| h["backend_server"] == "stalling")
        .and_then(|h| h["id"].as_u64())
        .ok_or_else(|| anyhow!("no handle on the stalling server: {sessions}"))?;
    // Its messages time out (490 each); two in a row trip the breaker.
    let mut failures = 0;
    let mut n = 0;
    while failures < 2 {
        n += 1;
        let t = format!("more-{n}");
        client
            .send(&message(
                session,
                stalled_handle,
                &t,
                json!({"audio": true}),
            ))
            .await?;
        let frames = client
            .recv_until(WAIT, |f| {
                f["transaction"] == t.as_str() && f["janus"] == "error"
            })
            .await?;
        ensure!(
            frames.last().is_some_and(|f| f["error"]["code"] == 490),
            "{frames:?}"
        );
        failures = proxy.server("stalling").await?["breaker"]["consecutive_failures"]
            .as_u64()
            .unwrap_or(0);
        ensure!(n < 5, "breaker never counted the timeouts");
    }
    let open = proxy.server("stalling").await?;
    assert_eq!(open["breaker"]["state"], "open", "{open}");
    assert_eq!(
        open["unselectable_because"], "circuit breaker open",
        "{open}"
    );
    let opened_at = Instant::now();
    let metrics = http::get(proxy.admin_addr, "/metrics").await?.body;
    assert!(
        metrics.contains("janus_proxy_backend_breaker_state{backend=\"stalling\"} 2"),
        "{metrics}"
    );
    // While open, every new handle goes to `good`.
    let before = handles_per_server(&proxy).await?;
    for _ in 0..6 {
        client.attach(session, ECHOTEST).await?;
    }
    let after = handles_per_server(&proxy).await?;
    assert_eq!(after.get("stalling"), before.get("stalling"), "{after:?}");

    // After the ejection: half-open, one probe. Drain `good` so the probe must go to
    // `stalling`; its attach succeeds (the fake answers attaches) and closes the breaker.
    let half = proxy
        .wait_server("stalling", WAIT, |s| s["breaker"]["state"] == "half-open")
        .await?;
    assert!(opened_at.elapsed() >= Duration::from_millis(900), "{half}");
    proxy
        .admin_post("/backend_servers/good/drain", &json!({}))
        .await?;
    client.attach(session, ECHOTEST).await?;
    let closed = proxy
        .wait_server("stalling", WAIT, |s| s["breaker"]["state"] == "closed")
        .await?;
    assert_eq!(closed["breaker"]["trips"], 1, "{closed}");
    assert!(is_selectable(&closed), "{closed}");
    client.close().await
}

/// A backend that refuses connections: connect failures open its breaker; it shows in the
/// server's state and in the metrics, and attaches go to the healthy server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_open_the_breaker() -> anyhow::Result<()> {
    init_logging();
    let refusing = FakeJanus::start(Behaviour {
        refuse_connections: true,
        ..Default::default()
    })
    .await?;
    let good = FakeJanus::start(Behaviour::default()).await?;
    let mut config = proxy_config(&[("refusing", refusing.ws_url()), ("good", good.ws_url())]);
    config.backend.reconnect_min_ms = 20;
    config.backend.reconnect_max_ms = 50;
    config.breaker.failure_threshold = 3;
    let proxy = ProxyUnderTest::start(config).await?;
    let server = proxy
        .wait_server("refusing", WAIT, |s| s["breaker"]["state"] == "open")
        .await?;
    assert_eq!(server["link"]["ready"], false, "{server}");
    assert!(
        server["link"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot connect")),
        "{server}"
    );
    let client = attach_many(&proxy, 5).await?;
    assert_eq!(
        handles_per_server(&proxy).await?,
        BTreeMap::from([("good".to_owned(), 5)])
    );
    let metrics = http::get(proxy.admin_addr, "/metrics").await?.body;
    for expected in [
        "janus_proxy_backend_breaker_state{backend=\"refusing\"} 2",
        "janus_proxy_backend_breaker_state{backend=\"good\"} 0",
        "janus_proxy_backend_link_up{backend=\"refusing\"} 0",
        "janus_proxy_backend_selectable{backend=\"good\"} 1",
        "janus_proxy_client_requests_total{janus=\"attach\"} 5",
        "janus_proxy_handles 5",
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing in\n{metrics}"
        );
    }
    client.close().await
}

/// Metrics count requests by type, errors by code, sessions, and backend latency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_errors_and_backend_latency() -> anyhow::Result<()> {
    init_logging();
    let janus = JanusServer::start().await?;
    let proxy = ProxyUnderTest::start(proxy_config(&[("j", janus.ws_url())])).await?;
    let mut p = peer(&proxy.ws_url()).await?;
    echotest_ok(&mut p.client, p.session, p.handle, "m").await?;
    let reply = p
        .client
        .request(json!({"janus": "keepalive", "session_id": 12345, "transaction": "x"}))
        .await?;
    assert_eq!(reply["error"]["code"], 458);
    let response = http::get(proxy.admin_addr, "/metrics").await?;
    assert_eq!(response.status, 200);
    assert!(response
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/openmetrics-text")));
    let text = response.body;
    for expected in [
        "janus_proxy_client_requests_total{janus=\"create\"} 1",
        "janus_proxy_client_requests_total{janus=\"attach\"} 1",
        "janus_proxy_client_requests_total{janus=\"message\"} 1",
        "janus_proxy_client_requests_total{janus=\"keepalive\"} 1",
        "janus_proxy_client_errors_total{code=\"458\"} 1",
        "janus_proxy_sessions 1",
        "janus_proxy_handles 1",
        "janus_proxy_client_connections 1",
        "janus_proxy_backend_link_up{backend=\"j\"} 1",
    ] {
        assert!(text.contains(expected), "{expected} missing in\n{text}");
    }
    // create session + info + attach + message (+ keepalives) were timed.
    let count = text
        .lines()
        .find(|l| {
            l.starts_with("janus_proxy_backend_request_duration_seconds_count{backend=\"j\"}")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(count >= 2, "{text}");
    p.client.close().await
}
